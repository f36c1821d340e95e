//! `smtp-loadgen`: measure sustained messages/second and reply latency of any SMTP server.
//!
//! A load run goes command line -> [`settings`] -> [`runner`] (the [`engine`] threads) ->
//! [`report`]. The `report` and `merge` subcommands read interval logs back.
//!
//! # Layout
//! * [`cli`]: the command line (clap) and the duration and size parsers.
//! * [`settings`]: the command line checked as a whole; per-thread plans; the run's header.
//! * [`runner`]: starts the engine threads and merges their reports (the reporter loop).
//! * [`progress`]: the progress line on standard error.
//! * [`engine`]: one mio event loop per thread, driving many connections.
//! * [`client`]: one connection's SMTP client state machine, sans I/O.
//! * [`tls`]: the TLS client configuration every connection shares, and the server name.
//! * [`transport`]: a connection's bytes, plain or through rustls.
//! * [`reply`]: the generator's own SMTP reply parser.
//! * [`workload`]: what is sent: commands and message content.
//! * [`record`]: histograms and counters of one thread and interval.
//! * [`report`]: results merged, rendered as text and JSON, interval logs, SLOs.
//!
//! This file: the entry point, each command's steps, and the exit code.
//!
//! Exit codes: 0 success; 1 the run completed but an SLO was breached or no message was
//! accepted; 2 the command line or a file was wrong, or the run could not be carried out.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]
#![warn(clippy::missing_docs_in_private_items)]

pub mod cli;
pub mod client;
pub mod engine;
pub mod progress;
pub mod record;
pub mod reply;
pub mod report;
pub mod runner;
pub mod settings;
pub mod tls;
pub mod transport;
pub mod workload;

use clap::Parser;
use cli::{Cli, Command, RunArgs};
use record::ErrorKind;
use report::{interval_log, render, Results};
use settings::Settings;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Runs the command the command line names; an error is printed and exits 2.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Merge { logs, output }) => merge_command(&logs, &output),
        Some(Command::Report { log }) => report_command(&log),
        None => run(cli.run),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("smtp-loadgen: error: {message}");
            ExitCode::from(2)
        }
    }
}

/// A load run: settings, the run, its outputs, the verdict.
fn run(args: RunArgs) -> Result<ExitCode, String> {
    let settings = Settings::from_args(args)?;
    let header = settings.header();
    let finished = runner::run(&settings, &header)?;
    write_outputs(&settings, &header, &finished)?;
    Ok(verdict(&settings, &finished.results))
}

/// The summary on standard output, and the `--json` and `--hdr-log` files if asked for.
fn write_outputs(
    settings: &Settings,
    header: &str,
    finished: &runner::Finished,
) -> Result<(), String> {
    let results = &finished.results;
    print!("{}", render::summary(results, header, settings.rate));
    if let Some(path) = &settings.json {
        let doc = render::json(results, settings.config_json());
        let text = serde_json::to_string_pretty(&doc).expect("JSON values serialise");
        std::fs::write(path, text).map_err(|e| file_error(path, e))?;
    }
    if let Some(path) = &settings.hdr_log {
        let mut file = std::fs::File::create(path).map_err(|e| file_error(path, e))?;
        let intervals = interval_log::run_intervals(results, finished.wall_start);
        interval_log::write_hlog(&mut file, finished.wall_start, header, &intervals)
            .map_err(|e| file_error(path, e))?;
    }
    Ok(())
}

/// Prints each SLO's verdict; fails the run (exit 1) on a breach or if no message was
/// accepted.
fn verdict(settings: &Settings, results: &Results) -> ExitCode {
    let mut breached = false;
    for slo in &settings.slos {
        match slo.check(&results.total) {
            Ok(line) => println!("SLO ok: {line}"),
            Err(line) => {
                println!("SLO BREACHED: {line}");
                breached = true;
            }
        }
    }
    if results.total.accepted == 0 {
        // A run that moved no mail measured nothing: say why, and fail, so a script notices.
        let refused = results
            .total
            .errors
            .get(&ErrorKind::Refused)
            .copied()
            .unwrap_or(0);
        if refused > 0 && results.total.started == 0 {
            eprintln!(
                "smtp-loadgen: no message was accepted: {refused} connect(s) to {} failed (is a server listening there?)",
                settings.target
            );
        } else {
            eprintln!("smtp-loadgen: no message was accepted");
        }
        // Say why, most frequent first (a TLS certificate that does not verify, AUTH refused,
        // an extension the server lacks ...).
        let mut details: Vec<(&String, &u64)> = results.total.details.iter().collect();
        details.sort_by(|a, b| b.1.cmp(a.1));
        for (detail, n) in details.iter().take(3) {
            eprintln!("smtp-loadgen: {detail} ({n} connection(s))");
        }
        return ExitCode::FAILURE;
    }
    if breached {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `merge`: several hosts' interval logs into one, aligned on whole seconds.
fn merge_command(logs: &[PathBuf], output: &Path) -> Result<ExitCode, String> {
    let mut all = Vec::new();
    for path in logs {
        all.push(read_log(path)?);
    }
    let merged = interval_log::merge_logs(&all)?;
    let first = merged.iter().map(|i| i.start).fold(f64::MAX, f64::min);
    let base = SystemTime::UNIX_EPOCH
        + Duration::from_secs_f64(if first == f64::MAX { 0.0 } else { first });
    let mut file = std::fs::File::create(output).map_err(|e| file_error(output, e))?;
    interval_log::write_hlog(&mut file, base, "smtp-loadgen merge", &merged)
        .map_err(|e| file_error(output, e))?;
    println!(
        "merged {} logs, {} intervals -> {}",
        logs.len(),
        merged.len(),
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `report`: the percentiles per tag of an interval log.
fn report_command(path: &Path) -> Result<ExitCode, String> {
    let intervals = read_log(path)?;
    let totals = interval_log::totals_per_tag(&intervals)?;
    print!("{}", render::log_table(&totals));
    Ok(ExitCode::SUCCESS)
}

/// Reads an interval log file; errors name the file.
fn read_log(path: &Path) -> Result<Vec<interval_log::LoggedInterval>, String> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    interval_log::read_hlog(&bytes).map_err(|e| file_error(path, e))
}

/// An error about a file, as shown to the user: `PATH: ERROR`.
fn file_error(path: &Path, error: impl std::fmt::Display) -> String {
    format!("{}: {error}", path.display())
}
