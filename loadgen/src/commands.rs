//! Each command's steps: a load run (or a rate sweep) from settings to outputs and verdict,
//! `merge` and `report` over interval logs; and the exit code each ends with.
//!
//! What it does not do: parse the command line (`cli`), check it as a whole (`settings`),
//! drive connections (`drive`), or compute and render figures (`report`); the binary
//! (`src/main.rs`) only parses and calls [`execute`].
//!
//! Exit codes: 0 success; 1 the run completed but an SLO was breached or no message was
//! accepted (a sweep: no step passed); 2 the command line or a file was wrong, or the run
//! could not be carried out; 3 fewer connections than `--connections` were alive for more
//! than 1% of the measured time (refused by the server, or failed and not back), unless
//! `--allow-fewer-connections` (the figures are not those of the run asked for).

use crate::cli::{Cli, Command, RunArgs};
use crate::cli_charts::ChartArgs;
use crate::drive::record::ErrorKind;
use crate::report::chart::{self, Chart};
use crate::report::figures::RunFigures;
use crate::report::provenance::{Kind, Provenance};
use crate::report::warmup::{Source, Warmup};
use crate::report::{charts, html, interval_log, render, Results};
use crate::settings::Settings;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The exit status of a run in which fewer connections than asked for were alive.
const EXIT_FEWER_CONNECTIONS: u8 = 3;
use crate::stdout::{say, say_line};
use crate::{report, runner, stdout, sweep};
use std::time::{Duration, SystemTime};

/// Runs the command `cli` names; an error is printed and exits 2.
pub fn execute(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Some(Command::Merge { logs, output }) => merge_command(&logs, &output),
        Some(Command::Report {
            logs,
            warmup,
            charts,
        }) => report_command(&logs, warmup, &charts),
        None => run(cli.run),
    };
    let code = match result {
        Ok(code) => code,
        Err(message) => {
            crate::warn_line!("smtp-loadgen: error: {message}");
            ExitCode::from(2)
        }
    };
    if let Some(error) = stdout::write_error() {
        // The output asked for is lost: never a silent success.
        crate::warn_line!("smtp-loadgen: error: writing standard output: {error} (output lost)");
        if code == ExitCode::SUCCESS {
            return ExitCode::FAILURE;
        }
    }
    code
}

/// A load run (or a sweep): settings, the run, its outputs, the verdict.
fn run(mut args: RunArgs) -> Result<ExitCode, String> {
    let chart_args = std::mem::take(&mut args.charts);
    if chart_args.label.len() > 1 {
        return Err("a run takes one --label (several are for `report` with several logs)".into());
    }
    let rates = args.sweep.rates()?;
    if rates.is_some() && args.duration.is_none() {
        args.duration = Some(sweep::DEFAULT_STEP_DURATION);
    }
    let mut settings = Settings::from_args(args)?;
    // Every output is checked before any load is sent: a typo in a path should not cost a run.
    check_file("--json", settings.json.as_deref())?;
    check_file("--hdr-log", settings.hdr_log.as_deref())?;
    check_chart_outputs(&chart_args)?;
    if let Some(rates) = rates {
        return run_sweep(&mut settings, rates, &chart_args);
    }
    let header = settings.header();
    if let (Some(corpus), false) = (settings.corpus(), settings.quiet) {
        // Said before the run: what the corpus holds and what sending it changes.
        crate::warn_line!("{}", corpus.description());
    }
    let finished = runner::run(&settings, &header)?;
    let provenance = Provenance::capture(
        Kind::Run,
        finished.wall_start,
        &header,
        settings.config_json(),
        settings.warmup.as_secs_f64(),
    );
    write_outputs(&settings, &provenance, &finished)?;
    if chart_args.any() {
        let label = report::printable(
            &chart_args
                .label
                .first()
                .cloned()
                .unwrap_or_else(|| settings.target_text.clone()),
        );
        let figures = run_figures(&label, &provenance, &finished.results, finished.wall_start)?;
        let list = charts::run_charts(std::slice::from_ref(&figures));
        write_charts(&chart_args, &list, || {
            html::run_page(std::slice::from_ref(&figures), &list)
        })?;
    }
    Ok(verdict(&settings, &finished.results))
}

/// A rate sweep: the steps (table printed as they finish), why the last one failed, the
/// result line, `--json`, per-step `--hdr-log`s and the charts. Exits 1 if no step passed.
fn run_sweep(
    settings: &mut Settings,
    rates: Vec<f64>,
    chart_args: &ChartArgs,
) -> Result<ExitCode, String> {
    let hdr_log = settings.hdr_log.clone();
    let sweep = sweep::run(settings, rates, |step| match &hdr_log {
        Some(path) => write_hlog_file(
            &step_log_path(path, step.offered, step.retry),
            &step.provenance,
            &step.results,
            step.wall_start,
        ),
        None => Ok(()),
    })?;
    for step in &sweep.steps {
        say(&report::sweep::failure_lines(step));
    }
    say_line(&sweep.result_line());
    if let Some(path) = &settings.json {
        let mut doc = report::sweep::json(&sweep, settings.config_json());
        doc["provenance"] = sweep.provenance.json();
        let text = serde_json::to_string_pretty(&doc).expect("JSON values serialise");
        std::fs::write(path, text).map_err(|e| file_error(path, e))?;
    }
    if chart_args.any() {
        let list = report::sweep::charts(&sweep)?;
        write_charts(chart_args, &list, || report::sweep::page(&sweep, &list))?;
    }
    Ok(if sweep.max_rate().is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A sweep step's interval log: `NAME.RATE.EXT` beside `--hdr-log NAME.EXT`
/// (`NAME.RATE.retry.EXT` for a step's re-try). RATE has every digit the rate has (the
/// shortest text that reads back as the same number), so two steps never share a name.
fn step_log_path(path: &Path, rate: f64, retry: bool) -> PathBuf {
    let rate = format!("{rate}");
    let rate = if retry { format!("{rate}.retry") } else { rate };
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{rate}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{rate}"),
    };
    path.with_file_name(name)
}

/// The chart figures of a finished run, as a report of its interval log would have them.
fn run_figures(
    label: &str,
    provenance: &Provenance,
    results: &Results,
    wall_start: SystemTime,
) -> Result<RunFigures, String> {
    let intervals = interval_log::run_intervals(results, wall_start);
    let start = wall_start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let notes = interval_log::LogNotes {
        comments: [provenance.description.clone()]
            .into_iter()
            .chain(report::connections::warning(results))
            .collect(),
        counts: interval_log::run_counts(results, wall_start),
        start_time: Some(start),
        provenance: Some(provenance.clone()),
    };
    let warmup = Warmup::new(results.warmup.as_secs_f64(), start, Source::Run);
    RunFigures::from_log(label, &intervals, &notes, warmup)
}

/// Writes what `args` asks for: the HTML page (made by `page` only then), one SVG and one
/// PNG file per chart, named by chart id.
fn write_charts(
    args: &ChartArgs,
    list: &[Chart],
    page: impl FnOnce() -> Result<String, String>,
) -> Result<(), String> {
    if let Some(path) = &args.html {
        std::fs::write(path, page()?).map_err(|e| file_error(path, e))?;
    }
    if let Some(dir) = &args.svg {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        for c in list {
            let path = dir.join(format!("{}.svg", c.id));
            std::fs::write(&path, chart::svg(c)?.text).map_err(|e| file_error(&path, e))?;
        }
    }
    if let Some(dir) = &args.png {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        for c in list {
            let path = dir.join(format!("{}.png", c.id));
            std::fs::write(&path, chart::png(c)?).map_err(|e| file_error(&path, e))?;
        }
    }
    Ok(())
}

/// Writes a run's interval log (with its counts lines, provenance, and the warning of fewer
/// connections than asked for if there is one) to `path`.
fn write_hlog_file(
    path: &Path,
    provenance: &Provenance,
    results: &Results,
    wall_start: SystemTime,
) -> Result<(), String> {
    let mut file = std::fs::File::create(path).map_err(|e| file_error(path, e))?;
    let intervals = interval_log::run_intervals(results, wall_start);
    let counts = interval_log::run_counts(results, wall_start);
    let warnings: Vec<String> = report::connections::warning(results).into_iter().collect();
    interval_log::write_hlog_with(
        &mut file, wall_start, provenance, &warnings, &intervals, &counts,
    )
    .map_err(|e| file_error(path, e))
}

/// The summary on standard output (the header, the provenance lines, the figures), and the
/// `--json` and `--hdr-log` files if asked for.
fn write_outputs(
    settings: &Settings,
    provenance: &Provenance,
    finished: &runner::Finished,
) -> Result<(), String> {
    let results = &finished.results;
    let names = settings.target_names();
    // The header; right under it what went wrong with the connections (before anything
    // else: the figures are not those of the run asked for); then the provenance.
    let mut header = settings.summary_header(&provenance.description);
    let connections = report::connections::lines(results);
    if !connections.is_empty() {
        header.push('\n');
        header.push_str(connections.trim_end());
    }
    for line in provenance.lines() {
        header.push('\n');
        header.push_str(&line);
    }
    say(&render::summary(
        results,
        &header,
        settings.rate,
        settings.late_send_limit,
    ));
    say(&render::targets(results, &names));
    if let Some(path) = &settings.json {
        let mut doc = render::json(results, settings.config_json());
        doc["provenance"] = provenance.json();
        if let Some(totals) = doc["totals"].as_object_mut() {
            totals.extend(report::connections::json_fields(results));
        }
        if !names.is_empty() {
            doc["targets"] = render::targets_json(results, &names);
        }
        let text = serde_json::to_string_pretty(&doc).expect("JSON values serialise");
        std::fs::write(path, text).map_err(|e| file_error(path, e))?;
    }
    if let Some(path) = &settings.hdr_log {
        write_hlog_file(path, provenance, results, finished.wall_start)?;
    }
    Ok(())
}

/// Prints each SLO's verdict; fails the run (exit 1) on a breach or if no message was
/// accepted, and (exit 3) when fewer connections than asked for were alive, unless allowed.
fn verdict(settings: &Settings, results: &Results) -> ExitCode {
    let mut breached = false;
    for slo in &settings.slos {
        match slo.check(&results.total) {
            Ok(line) => say_line(&format!("SLO ok: {line}")),
            Err(line) => {
                say_line(&format!("SLO BREACHED: {line}"));
                breached = true;
            }
        }
    }
    let auth_refused: u64 = results
        .total
        .never_ready
        .iter()
        .filter(|(reason, _)| reason.starts_with("auth 5"))
        .map(|(_, n)| n)
        .sum();
    if auth_refused > 0 {
        crate::warn_line!(
            "smtp-loadgen: the server refused the --auth credentials on {auth_refused} \
             connection(s); no connection was opened after that, so as not to spend the \
             server's failure allowance for this host (fastsmtpd --auth-max-failures-per-ip, \
             Postfix smtpd_client_auth_rate_limit) and lock out its other senders"
        );
    }
    if results.total.accepted == 0 {
        // A run that moved no mail measured nothing: say why, and fail, so a script notices.
        let refused = results
            .total
            .errors
            .get(&ErrorKind::Refused)
            .copied()
            .unwrap_or(0);
        let in_warmup = results.warmup_accepted();
        if in_warmup > 0 {
            // A -n run that ended inside its warm-up (a -d run is measured after it).
            crate::warn_line!(
                "smtp-loadgen: nothing was measured: all {in_warmup} accepted message(s) went \
                 out inside the {} s warm-up, which is left out; send more (-n), shorten \
                 --warmup, or give --duration (measured after the warm-up)",
                results.warmup.as_secs()
            );
        } else if refused > 0 && results.total.started == 0 {
            let targets: Vec<String> = settings
                .targets
                .iter()
                .map(|t| t.addr.to_string())
                .collect();
            crate::warn_line!(
                "smtp-loadgen: no message was accepted: {refused} connect(s) to {} failed (is a server listening there?)",
                targets.join(", ")
            );
        } else {
            crate::warn_line!("smtp-loadgen: no message was accepted");
        }
        // Say why, most frequent first (a TLS certificate that does not verify, AUTH refused,
        // an extension the server lacks ...).
        let mut details: Vec<(&String, &u64)> = results.total.details.iter().collect();
        details.sort_by(|a, b| b.1.cmp(a.1));
        for (detail, n) in details.iter().take(3) {
            crate::warn_line!("smtp-loadgen: {detail} ({n} connection(s))");
        }
        return ExitCode::FAILURE;
    }
    let connections = &results.connections;
    if connections.fewer(results.measured) {
        if connections.fails(results.measured) {
            for line in report::connections::failure_message(results).lines() {
                crate::warn_line!("smtp-loadgen: {line}");
            }
            return ExitCode::from(EXIT_FEWER_CONNECTIONS);
        }
        crate::warn_line!(
            "smtp-loadgen: fewer connections than asked for were alive (allowed by \
             --allow-fewer-connections)"
        );
    }
    if breached {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `merge`: several hosts' interval logs into one, on one grid of whole seconds from the
/// earliest input's start; a merged second is warm-up when it holds an interval its input's
/// own `report` leaves out, and so is every second before it (see [`report::merge`]). The
/// merged log's counts lines flag it so, and its provenance keeps each input's.
fn merge_command(logs: &[PathBuf], output: &Path) -> Result<ExitCode, String> {
    let mut all = Vec::new();
    let mut inputs = Vec::new();
    for path in logs {
        let (intervals, unit_note) = read_log(path)?;
        if let Some(note) = unit_note {
            crate::warn_line!("smtp-loadgen: {note}");
        }
        let notes = read_notes(path)?;
        let starts: Vec<f64> = intervals.iter().map(|i| i.start).collect();
        let warmup = Warmup::of_log(&notes, &starts, None);
        inputs.extend(notes.provenance.clone());
        all.push(report::merge::Input {
            intervals,
            counts: notes.counts,
            warmup,
        });
    }
    let merged = report::merge::merge(&all)?;
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(merged.origin.max(0.0));
    let names: Vec<String> = logs
        .iter()
        .map(|p| report::printable(&p.display().to_string()))
        .collect();
    let mut provenance = Provenance::capture(
        Kind::Merge,
        SystemTime::now(),
        &format!(
            "smtp-loadgen merge of {} logs: {}",
            logs.len(),
            names.join(", ")
        ),
        serde_json::Value::Null,
        merged.warmup.seconds,
    );
    provenance.inputs = inputs;
    let mut file = std::fs::File::create(output).map_err(|e| file_error(output, e))?;
    interval_log::write_hlog(
        &mut file,
        base,
        &provenance,
        &merged.intervals,
        &merged.counts,
    )
    .map_err(|e| file_error(output, e))?;
    let warmup = merged.warmup;
    say_line(&format!(
        "merged {} logs, {} intervals -> {}; {}",
        logs.len(),
        merged.intervals.len(),
        output.display(),
        warmup.statement(warmup.measured_from(merged.intervals.iter().map(|i| i.start)))
    ));
    Ok(ExitCode::SUCCESS)
}

/// `report`: the percentiles per tag of each interval log (with several logs, each table
/// under its label), and the charts if asked for.
fn report_command(
    paths: &[PathBuf],
    warmup: Option<Duration>,
    chart_args: &ChartArgs,
) -> Result<ExitCode, String> {
    check_chart_outputs(chart_args)?;
    if !chart_args.label.is_empty() && chart_args.label.len() != paths.len() {
        return Err(format!(
            "{} --label for {} log(s): give one per log, in order, or none (each log is then \
             named by its file name)",
            chart_args.label.len(),
            paths.len()
        ));
    }
    let labels = report::unique_labels(
        paths
            .iter()
            .enumerate()
            .map(|(i, path)| {
                report::printable(&chart_args.label.get(i).cloned().unwrap_or_else(|| {
                    path.file_stem()
                        .unwrap_or(path.as_os_str())
                        .to_string_lossy()
                        .into_owned()
                }))
            })
            .collect(),
    );
    let mut runs = Vec::new();
    for (path, label) in paths.iter().zip(labels) {
        let (intervals, unit_note) = read_log(path)?;
        let notes = read_notes(path)?;
        let starts: Vec<f64> = intervals.iter().map(|i| i.start).collect();
        let rule = Warmup::of_log(&notes, &starts, warmup.map(|d| d.as_secs_f64()));
        // One set of figures for the text table, the HTML tables and the charts.
        let figures = RunFigures::from_log(&label, &intervals, &notes, rule)
            .map_err(|e| file_error(path, e))?;
        if figures.tags.iter().all(|t| t.total.is_empty()) {
            return Err(format!(
                "{}: every interval is inside the warm-up ({}); give a shorter --warmup",
                report::printable(&path.display().to_string()),
                figures.warmup_statement()
            ));
        }
        if let Some(note) = unit_note {
            say_line(&note);
        }
        if paths.len() > 1 {
            say_line(&format!(
                "== {label} ({})",
                report::printable(&path.display().to_string())
            ));
        }
        say(&render::log_report(&figures));
        if chart_args.any() {
            runs.push(figures);
        }
    }
    if chart_args.any() {
        let list = charts::run_charts(&runs);
        write_charts(chart_args, &list, || html::run_page(&runs, &list))?;
        for (what, path) in [
            ("report", &chart_args.html),
            ("SVG charts", &chart_args.svg),
            ("PNG charts", &chart_args.png),
        ] {
            if let Some(path) = path {
                say_line(&format!(
                    "wrote {what}: {}",
                    report::printable(&path.display().to_string())
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads an interval log file; errors name the file. Returns its intervals (values in
/// nanoseconds) and, for a log whose header does not give its values' unit, the note that
/// says which unit they were read in and why.
/// A log with no interval is an error; a last line cut short (a killed run) is left out
/// with a warning naming it.
fn read_log(path: &Path) -> Result<(Vec<interval_log::LoggedInterval>, Option<String>), String> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let (intervals, warnings) =
        interval_log::read_hlog_lenient(&bytes).map_err(|e| file_error(path, e))?;
    let shown = report::printable(&path.display().to_string());
    if let Some(line) = warnings.cut_line {
        crate::warn_line!(
            "smtp-loadgen: warning: {shown}: line {line} is cut short (a killed run?); read up \
             to line {}",
            line - 1
        );
    }
    if intervals.is_empty() {
        return Err(format!("no intervals in {shown}"));
    }
    Ok((intervals, warnings.unit.note(&shown)))
}

/// Reads the comments and message counts of an interval log file.
fn read_notes(path: &Path) -> Result<interval_log::LogNotes, String> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    interval_log::read_notes(&bytes).map_err(|e| file_error(path, e))
}

/// Checks that the output file `path` (of `flag`) can be written, before the run: opened
/// for writing (not truncated) if it exists, else created and removed again.
fn check_file(flag: &str, path: Option<&Path>) -> Result<(), String> {
    let Some(path) = path else {
        return Ok(());
    };
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| {
            format!(
                "cannot write {flag} {}: {e}",
                report::printable(&path.display().to_string())
            )
        })?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Checks that the output directory `dir` (of `flag`) exists or can be created, and that a
/// file can be written in it, before the run.
fn check_dir(flag: &str, dir: Option<&Path>) -> Result<(), String> {
    let Some(dir) = dir else {
        return Ok(());
    };
    let fail = |e: std::io::Error| {
        format!(
            "cannot write {flag} {}: {e}",
            report::printable(&dir.display().to_string())
        )
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".smtp-loadgen-check-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(fail)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Checks the chart outputs `args` asks for (see [`check_file`], [`check_dir`]).
fn check_chart_outputs(args: &ChartArgs) -> Result<(), String> {
    check_file("--html", args.html.as_deref())?;
    check_dir("--svg", args.svg.as_deref())?;
    check_dir("--png", args.png.as_deref())
}

/// An error about a file, as shown to the user: `PATH: ERROR`.
fn file_error(path: &Path, error: impl std::fmt::Display) -> String {
    format!(
        "{}: {error}",
        report::printable(&path.display().to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli_charts;

    #[test]
    fn step_log_names_do_not_collide() {
        let base = Path::new("/tmp/sweep.hlog");
        let name = |rate, retry| step_log_path(base, rate, retry);
        assert_eq!(name(1000.0, false), Path::new("/tmp/sweep.1000.hlog"));
        assert_eq!(name(1000.0, true), Path::new("/tmp/sweep.1000.retry.hlog"));
        // 1000.01 and 1000.04 both showed as 1000.0.
        assert_ne!(name(1000.01, false), name(1000.04, false));
        let rates = cli_charts::SweepArgs {
            range: Some(cli_charts::parse_rate_range("1k..1001").unwrap()),
            step: None,
            steps: Some(1000),
        }
        .rates()
        .unwrap()
        .unwrap();
        let names: std::collections::BTreeSet<PathBuf> =
            rates.iter().map(|r| name(*r, false)).collect();
        assert_eq!(names.len(), rates.len());
    }
}
