//! A rate sweep's results: each step judged, the highest rate that passed, and the sweep as
//! text, JSON and charts.
//!
//! A step passes when it met every `--slo` and achieved at least [`SUSTAINED_FRACTION`] of
//! its offered rate (with at least one message accepted). Latency here is the corrected
//! message latency (`message_corrected`: from each message's intended send time, so a server
//! that falls behind shows its queue, coordinated omission excluded).
//!
//! What it does: judge a step, render the step table (header, rows as steps finish, the
//! failing step's reasons, the result line), the `--json` document and the sweep charts
//! (`sweep-latency`: p50/p99/p99.9 against offered rate; `sweep-throughput`: achieved
//! against offered; `percentiles-message_corrected`: every step's spectrum overlaid), and
//! the HTML page.
//!
//! What it does not do: run the steps (`sweep`), or write files.

use super::chart::{Chart, Mark, Scale, Series};
use super::charts::percentile_chart;
use super::figures::{tag_title, RunFigures};
use super::html::{self, Block};
use super::interval_log::{run_counts, run_intervals, LogNotes};
use super::provenance::Provenance;
use super::render;
use super::results::Results;
use super::slo::{Slo, SloValue};
use super::warmup::{Source, Warmup};
use std::fmt::Write as _;
use std::time::SystemTime;

/// A step whose achieved rate is below this fraction of its offered rate fell short: the
/// server (or the generator: see the send lateness in `--json`) could not keep up. 95%, not
/// the 99% of a single run's warning: a sweep's steps are short, and a few messages still in
/// flight at the end of a step already cost a percent at low rates.
pub const SUSTAINED_FRACTION: f64 = 0.95;

/// A step whose achieved rate is above this fraction of its offered rate caught up: the
/// generator fell behind (a stalled warm-up, a busy machine) and sent the backlog late, so
/// its rate and latency are not those of a steady load at the offered rate.
pub const CATCH_UP_FRACTION: f64 = 1.05;

/// One finished step.
#[derive(Debug)]
pub struct Step {
    /// The offered (intended) rate in messages per second.
    pub offered: f64,
    /// The step's header line (as a run's).
    pub header: String,
    /// What it measured.
    pub results: Results,
    /// When it started (its interval log's base time).
    pub wall_start: SystemTime,
    /// Each SLO's verdict line: `Ok` met, `Err` breached.
    pub verdicts: Vec<Result<String, String>>,
    /// Each SLO's measured value and verdict, in `--slo` order.
    pub slo_values: Vec<SloValue>,
    /// Whether this is the re-try of a step that failed at the same rate.
    pub retry: bool,
    /// What made the step (a run at its rate), as its interval log records it.
    pub provenance: Provenance,
}

impl Step {
    /// Accepted messages per second over the step's measured time.
    pub fn achieved(&self) -> f64 {
        self.results.msgs_per_sec()
    }

    /// Whether the step kept up with its offered rate, over the connections asked for
    /// (unless `--allow-fewer-connections`).
    pub fn sustained(&self) -> bool {
        self.results.total.accepted > 0
            && self.achieved() >= SUSTAINED_FRACTION * self.offered
            && !self.results.connections.fails(self.results.measured)
    }

    /// Whether the step achieved more than [`CATCH_UP_FRACTION`] of its offered rate:
    /// the generator fell behind and caught up (its figures are suspect).
    pub fn catch_up(&self) -> bool {
        self.achieved() > CATCH_UP_FRACTION * self.offered
    }

    /// Whether every SLO held.
    pub fn slos_met(&self) -> bool {
        self.verdicts.iter().all(Result::is_ok)
    }

    /// End to end (`--delivered-via`): whether every message the step's MTA accepted
    /// arrived whole (every accepted recipient) at the far sink within the drain (`never
    /// delivered` and `partly delivered` 0). Always true without the mode.
    pub fn delivered_all(&self) -> bool {
        self.not_through() == 0
    }

    /// End to end: accepted messages that did not arrive whole within the drain (never
    /// delivered, or partly: some recipients missing).
    fn not_through(&self) -> u64 {
        let d = &self.results.total.delivery;
        d.never_delivered + d.partly_delivered
    }

    /// `N never delivered`, and how many of them partly when some were.
    fn not_through_words(&self) -> String {
        let partly = self.results.total.delivery.partly_delivered;
        let mut words = format!("{} never delivered", self.not_through());
        if partly > 0 {
            words.push_str(&format!(" ({partly} partly)"));
        }
        words
    }

    /// Whether the step passed: sustained, every SLO met, and (end to end) nothing never
    /// delivered: an MTA that accepts faster than it delivers has not sustained the rate.
    pub fn passed(&self) -> bool {
        self.sustained() && self.slos_met() && self.delivered_all()
    }

    /// The corrected latency at percentile `p`, in milliseconds (`None`: no message).
    fn corrected_ms(&self, p: f64) -> Option<f64> {
        let h = &self.results.total.message_corrected;
        (!h.is_empty()).then(|| h.value_at_percentile(p) as f64 / 1e6)
    }

    /// The step's name in charts: its offered rate.
    pub fn label(&self) -> String {
        format!("{} msgs/s", rate(self.offered))
    }

    /// The step's figures, as a report of its interval log would have them.
    pub fn figures(&self) -> Result<RunFigures, String> {
        let intervals = run_intervals(&self.results, self.wall_start);
        let start = self
            .wall_start
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let notes = LogNotes {
            comments: [self.header.clone()]
                .into_iter()
                .chain(super::connections::warning(&self.results))
                .collect(),
            counts: run_counts(&self.results, self.wall_start),
            start_time: Some(start),
            provenance: Some(self.provenance.clone()),
        };
        let warmup = Warmup::new(self.results.warmup.as_secs_f64(), start, Source::Run);
        RunFigures::from_log(&self.label(), &intervals, &notes, warmup)
    }
}

/// A rate as shown: whole numbers without decimals.
pub fn rate(r: f64) -> String {
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// A whole sweep.
#[derive(Debug)]
pub struct Sweep {
    /// The rates planned, in order.
    pub planned: Vec<f64>,
    /// The steps run, re-tries included (the sweep stops when a re-try fails).
    pub steps: Vec<Step>,
    /// Measured seconds per step.
    pub step_seconds: f64,
    /// Warm-up seconds per step.
    pub warmup_seconds: f64,
    /// The target, as given.
    pub target: String,
    /// The `--slo`s every step is judged by.
    pub slos: Vec<Slo>,
    /// What made the sweep: date, version and commit, command line, host, settings.
    pub provenance: Provenance,
}

impl Sweep {
    /// Whether the sweep found a knee: it stopped at a step that failed (twice). Without
    /// one, [`Sweep::max_rate`] is only a lower bound.
    pub fn knee_found(&self) -> bool {
        self.steps.last().is_some_and(|s| !s.passed())
    }

    /// The highest offered rate of a step that passed.
    pub fn max_rate(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter(|s| s.passed())
            .map(|s| s.offered)
            .reduce(f64::max)
    }

    /// The result, as one sentence (the text output's last line).
    pub fn result_line(&self) -> String {
        let failed = self.steps.last().filter(|s| !s.passed());
        match (self.max_rate(), failed) {
            (Some(max), Some(next)) => format!(
                "max sustainable rate: {} msgs/s (the highest step that met every SLO and \
                 achieved at least {:.0}% of its rate; the next, {} msgs/s, did not, twice)",
                rate(max),
                SUSTAINED_FRACTION * 100.0,
                rate(next.offered)
            ),
            (Some(max), None) => format!(
                "max sustainable rate: at least {} msgs/s (no step failed: a lower bound, no \
                 knee below the top of --sweep; raise it to find one)",
                rate(max)
            ),
            (None, Some(first)) => format!(
                "max sustainable rate: none: the first step, {} msgs/s, already failed (twice)",
                rate(first.offered)
            ),
            (None, None) => "max sustainable rate: none: no step ran".into(),
        }
    }
}

/// The step table's first lines (printed before the first step runs).
pub fn table_header(sweep: &Sweep) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sweep: {} steps planned, {}..{} msgs/s, each {} s after a {} s warm-up; latency is \
         message corrected (from the intended send time)",
        sweep.planned.len(),
        rate(sweep.planned.first().copied().unwrap_or(0.0)),
        rate(sweep.planned.last().copied().unwrap_or(0.0)),
        sweep.step_seconds,
        sweep.warmup_seconds
    );
    let _ = write!(
        out,
        "{:>10}{:>11}{:>8}{:>10}{:>10}{:>10}{:>9}",
        "offered", "achieved", "%", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
    for slo in &sweep.slos {
        let _ = write!(out, "  {:>w$}", slo.text(), w = slo_width(slo.text()));
    }
    let _ = writeln!(out, "  verdict");
    out
}

/// The width of an SLO's column in the step table.
fn slo_width(text: &str) -> usize {
    text.chars().count().max(12)
}

/// A step's verdict word(s).
fn verdict(step: &Step) -> String {
    let mut words = match (step.slos_met(), step.sustained()) {
        (true, true) => "ok",
        (false, true) => "SLO breached",
        (true, false) => "short of rate",
        (false, false) => "SLO breached, short of rate",
    }
    .to_string();
    if !step.delivered_all() {
        words = format!("{words}, {}", step.not_through_words());
    }
    if step.catch_up() {
        words.push_str(" (catch-up: achieved > offered)");
    }
    if step.results.connections.fails(step.results.measured) {
        words.push_str(" (fewer connections)");
    }
    if step.retry {
        words.push_str(" (re-try)");
    } else if !step.passed() {
        words.push_str(" (re-trying)");
    }
    words
}

/// A step's row in the table (printed as the step finishes).
pub fn table_row(step: &Step) -> String {
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    let total = &step.results.total;
    let mut row = format!(
        "{:>10}{:>11.1}{:>8.1}{:>10}{:>10}{:>10}{:>9}",
        rate(step.offered),
        step.achieved(),
        100.0 * step.achieved() / step.offered,
        cell(step.corrected_ms(50.0)),
        cell(step.corrected_ms(99.0)),
        cell(step.corrected_ms(99.9)),
        total.failed + total.error_count(),
    );
    for value in &step.slo_values {
        let _ = write!(row, "  {:>w$}", value.cell(), w = slo_width(&value.slo));
    }
    let _ = writeln!(row, "  {}", verdict(step));
    row
}

/// Why a step failed, one line per reason (for a step that passed: empty, or the warning
/// of fewer connections that `--allow-fewer-connections` let pass).
pub fn failure_lines(step: &Step) -> String {
    let mut out = String::new();
    for line in step.verdicts.iter().filter_map(|v| v.as_ref().err()) {
        let _ = writeln!(out, "  {} msgs/s: SLO BREACHED: {line}", rate(step.offered));
    }
    if let Some(warning) = super::connections::warning(&step.results) {
        let _ = writeln!(out, "  {} msgs/s: {warning}", rate(step.offered));
    }
    if !step.delivered_all() {
        let _ = writeln!(
            out,
            "  {} msgs/s: {} accepted messages never delivered (whole) within the drain \
             (--delivered-drain)",
            rate(step.offered),
            step.not_through()
        );
    }
    if step.results.total.accepted == 0 || step.achieved() < SUSTAINED_FRACTION * step.offered {
        let _ = writeln!(
            out,
            "  {} msgs/s: achieved {:.1} msgs/s, below {:.0}% of the offered rate ({} sends \
             never started, send lateness p99 {:.3} ms)",
            rate(step.offered),
            step.achieved(),
            SUSTAINED_FRACTION * 100.0,
            step.results.backlog,
            render::millis(step.results.total.send_lateness.value_at_percentile(99.0))
        );
    }
    out
}

/// A percentile as a series name: `p99`, `p99.9`, `max`.
fn percentile_name(p: f64) -> String {
    if p >= 100.0 {
        "max".into()
    } else {
        format!("p{p}")
    }
}

/// The `--json` document of a sweep; `config` is the run's settings as given.
pub fn json(sweep: &Sweep, config: serde_json::Value) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = sweep
        .steps
        .iter()
        .map(|step| {
            let verdicts: Vec<serde_json::Value> = step
                .verdicts
                .iter()
                .map(|v| match v {
                    Ok(line) => serde_json::json!({"ok": true, "verdict": line}),
                    Err(line) => serde_json::json!({"ok": false, "verdict": line}),
                })
                .collect();
            let mut step_config = config.clone();
            step_config["rate"] = step.offered.into();
            serde_json::json!({
                "offered_rate": step.offered,
                "achieved_rate": step.achieved(),
                "sustained": step.sustained(),
                "slos_met": step.slos_met(),
                "passed": step.passed(),
                "catch_up": step.catch_up(),
                "retry": step.retry,
                "slo": verdicts,
                "slo_values": step.slo_values.iter().map(|v| serde_json::json!({
                    "slo": v.slo,
                    "value": v.value,
                    "unit": v.unit,
                    "pass": v.pass,
                })).collect::<Vec<_>>(),
                "corrected_latency_ms": {
                    "p50": step.corrected_ms(50.0),
                    "p99": step.corrected_ms(99.0),
                    "p99.9": step.corrected_ms(99.9),
                },
                "results": render::json(&step.results, step_config),
            })
        })
        .collect();
    serde_json::json!({
        "config": config,
        "sweep": {
            "planned_rates": sweep.planned,
            "step_seconds": sweep.step_seconds,
            "warmup_seconds": sweep.warmup_seconds,
            "sustained_fraction": SUSTAINED_FRACTION,
            "catch_up_fraction": CATCH_UP_FRACTION,
            "stop_rule": "a step that breaches an SLO or achieves less than sustained_fraction \
                          of its offered rate is run once more (retry: true); the sweep stops \
                          when the re-try fails too",
            "steps_run": sweep.steps.len(),
            "max_sustainable_rate": sweep.max_rate(),
            "knee_found": sweep.knee_found(),
            "result": sweep.result_line(),
        },
        "steps": steps,
    })
}

/// The sweep's charts: latency and achieved rate against offered rate, and each step's
/// corrected-latency spectrum.
pub fn charts(sweep: &Sweep) -> Result<Vec<Chart>, String> {
    let percentile_series = |name: &str, color: usize, p: f64| Series {
        name: name.into(),
        color,
        mark: Mark::Points,
        points: sweep
            .steps
            .iter()
            .filter_map(|s| Some((s.offered, s.corrected_ms(p)?)))
            .collect(),
    };
    let mut latency = vec![
        percentile_series("p50", 0, 50.0),
        percentile_series("p99", 1, 99.0),
        percentile_series("p99.9", 4, 99.9),
    ];
    let x_low = sweep.planned.first().copied().unwrap_or(0.0);
    let x_high = sweep.steps.last().map_or(x_low, |s| s.offered);
    // Each latency SLO: its stage's percentile per step (unless plotted already), and its
    // bound as a horizontal line.
    for (i, slo) in sweep.slos.iter().enumerate() {
        let Some((stage, p, bound)) = slo.latency_bound() else {
            continue;
        };
        let plotted = stage == "message_corrected" && [50.0, 99.0, 99.9].contains(&p);
        let color = 5 + (i % 4);
        if !plotted {
            latency.push(Series {
                name: format!("{} {}", tag_title(&stage), percentile_name(p)),
                color,
                mark: Mark::Points,
                points: sweep
                    .steps
                    .iter()
                    .filter_map(|s| Some((s.offered, s.slo_values.get(i)?.value?)))
                    .collect(),
            });
        }
        latency.push(Series {
            name: format!("SLO {}", slo.text()),
            color,
            mark: Mark::Dashed,
            points: vec![(x_low.min(x_high), bound), (x_high, bound)],
        });
    }
    let failed: Vec<(f64, f64)> = sweep
        .steps
        .iter()
        .filter(|s| !s.passed())
        .filter_map(|s| Some((s.offered, s.corrected_ms(99.0)?)))
        .collect();
    if !failed.is_empty() {
        latency.push(Series {
            name: "failed step (at its p99)".into(),
            color: 2,
            mark: Mark::Crosses,
            points: failed,
        });
    }
    let x_label = "offered rate (msgs/s)".to_string();
    let low = sweep.planned.first().copied().unwrap_or(0.0);
    let high = sweep.steps.last().map_or(low, |s| s.offered);
    let mut charts = vec![
        Chart {
            id: "sweep-latency".into(),
            title: "Corrected latency against offered rate".into(),
            caption: format!(
                "p50, p99 and p99.9 of message latency from the intended send time at each \
                 step's offered rate (log scale); each latency --slo's bound is a dashed line \
                 (with its stage's percentile as points when it is not one of those); crosses \
                 mark steps that breached an SLO or fell short of their rate. {}",
                sweep.result_line()
            ),
            x_label: x_label.clone(),
            y_label: "latency (ms)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Log,
            series: latency,
            shaded: Vec::new(),
        },
        Chart {
            id: "sweep-throughput".into(),
            title: "Achieved against offered rate".into(),
            caption: format!(
                "Messages accepted per second at each step (points) against the offered rate \
                 (dashed: achieved = offered). A step below {:.0}% of its rate failed.",
                SUSTAINED_FRACTION * 100.0
            ),
            x_label,
            y_label: "achieved (msgs/s)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![
                Series {
                    name: "offered".into(),
                    color: 9,
                    mark: Mark::Dashed,
                    points: vec![(low.min(high), low.min(high)), (high, high)],
                },
                Series {
                    name: "achieved".into(),
                    color: 0,
                    mark: Mark::Points,
                    points: sweep
                        .steps
                        .iter()
                        .map(|s| (s.offered, s.achieved()))
                        .collect(),
                },
            ],
            shaded: Vec::new(),
        },
    ];
    let figures = step_figures(sweep)?;
    let mut spectrum = percentile_chart(&figures, "message_corrected");
    spectrum.title = "Corrected latency by percentile, per step".into();
    charts.push(spectrum);
    Ok(charts)
}

/// Every step's figures.
fn step_figures(sweep: &Sweep) -> Result<Vec<RunFigures>, String> {
    let mut figures: Vec<RunFigures> = sweep
        .steps
        .iter()
        .map(Step::figures)
        .collect::<Result<_, _>>()?;
    // A step run once more (its retry) has its rate's name again: ` (2)` tells them apart.
    let labels = super::unique_labels(figures.iter().map(|f| f.label.clone()).collect());
    for (f, label) in figures.iter_mut().zip(labels) {
        f.label = label;
    }
    Ok(figures)
}

/// The sweep's HTML page.
pub fn page(sweep: &Sweep, charts: &[Chart]) -> Result<String, String> {
    let rows = sweep
        .steps
        .iter()
        .map(|s| {
            let cell = |p| s.corrected_ms(p).map_or("-".into(), |v| format!("{v:.3}"));
            let total = &s.results.total;
            let mut row = vec![
                rate(s.offered),
                format!("{:.1}", s.achieved()),
                format!("{:.1}", 100.0 * s.achieved() / s.offered),
                cell(50.0),
                cell(99.0),
                cell(99.9),
                (total.failed + total.error_count()).to_string(),
            ];
            row.extend(s.slo_values.iter().map(SloValue::cell));
            row.push(verdict(s));
            row
        })
        .collect();
    let mut head: Vec<String> = [
        "offered msgs/s",
        "achieved msgs/s",
        "%",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "failed + errors",
    ]
    .map(String::from)
    .to_vec();
    head.extend(sweep.slos.iter().map(|s| s.text().to_string()));
    head.push("verdict".into());
    let warmup = Warmup::new(sweep.warmup_seconds, 0.0, Source::Run);
    let mut blocks = vec![
        Block::Text(sweep.result_line()),
        html::provenance_table(
            "provenance",
            &format!("How the sweep was made: {}", sweep.provenance.description),
            &sweep.provenance,
            &format!(
                "each step: {}",
                warmup.statement(warmup.measured_from([0.0, sweep.warmup_seconds]))
            ),
        ),
        Block::Text(format!(
            "Open-loop steps of {} s each after a {} s warm-up, with fresh connections; \
             latency counted from each message's intended send time (coordinated-omission \
             corrected). A step that breaches an SLO or achieves less than {:.0}% of its \
             offered rate is run once more; the sweep stops when that re-try fails too.",
            sweep.step_seconds,
            sweep.warmup_seconds,
            SUSTAINED_FRACTION * 100.0
        )),
        Block::Table {
            id: "steps".into(),
            caption: "Steps".into(),
            head,
            rows,
            figures: true,
        },
    ];
    for chart in charts {
        blocks.push(Block::Chart(chart));
    }
    blocks.push(html::made_by());
    html::page(
        &format!("smtp-loadgen rate sweep: {}", sweep.target),
        &blocks,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::client::Stage;
    use crate::drive::record::Recorder;
    use std::time::Duration;

    /// A step at `offered` msgs/s that accepted `accepted` messages a second for 2 seconds,
    /// with corrected latency `ms`.
    fn step(offered: f64, accepted: u64, ms: u64, slo_ok: bool) -> Step {
        let mut results = Results::new(1);
        for second in 0..2u64 {
            let mut r = Recorder::new();
            for _ in 0..accepted {
                r.started += 1;
                r.reply(Stage::Eod, 250, ms * 500_000);
                r.message_done(true, 1024, ms * 1_000_000, Some(ms * 1_000_000));
            }
            results.add(0, second, false, &r, second == 1);
        }
        results.measured = Duration::from_secs(2);
        Step {
            offered,
            header: format!("open loop at {offered}"),
            results,
            wall_start: SystemTime::UNIX_EPOCH,
            verdicts: vec![if slo_ok {
                Ok("eod:p99<5ms: measured 1 ms".into())
            } else {
                Err("eod:p99<5ms: measured 9 ms".into())
            }],
            slo_values: vec![SloValue {
                slo: "eod:p99<5ms".into(),
                value: Some(if slo_ok { 1.0 } else { 9.0 }),
                unit: "ms",
                pass: slo_ok,
            }],
            retry: false,
            provenance: test_provenance(),
        }
    }

    fn test_provenance() -> Provenance {
        Provenance::capture(
            crate::report::provenance::Kind::Sweep,
            SystemTime::UNIX_EPOCH,
            "smtp-loadgen rate sweep -> 127.0.0.1:2525",
            serde_json::json!({"target": "127.0.0.1:2525", "connections": 4}),
            1.0,
        )
    }

    fn sweep(steps: Vec<Step>) -> Sweep {
        Sweep {
            planned: vec![100.0, 200.0, 300.0, 400.0],
            steps,
            step_seconds: 2.0,
            warmup_seconds: 1.0,
            target: "127.0.0.1:2525".into(),
            slos: vec![Slo::parse("eod:p99<5ms", |_| Ok(Duration::from_millis(5))).unwrap()],
            provenance: test_provenance(),
        }
    }

    #[test]
    fn an_end_to_end_step_with_mail_never_delivered_fails() {
        let mut lossy = step(100.0, 100, 1, true);
        lossy.results.total.delivery.watched = true;
        lossy.results.total.delivery.never_delivered = 3;
        assert!(lossy.sustained() && lossy.slos_met());
        assert!(!lossy.passed());
        assert!(table_row(&lossy).contains("ok, 3 never delivered"));
        assert!(failure_lines(&lossy).contains("3 accepted messages never delivered"));
        // A message with a recipient missing has not got through either.
        lossy.results.total.delivery.partly_delivered = 2;
        assert!(!lossy.passed());
        assert!(table_row(&lossy).contains("ok, 5 never delivered (2 partly)"));
        assert!(failure_lines(&lossy).contains("5 accepted messages never delivered"));
        lossy.results.total.delivery.never_delivered = 0;
        assert!(!lossy.passed());
    }

    #[test]
    fn steps_are_judged_by_slo_and_achieved_rate() {
        assert!(step(100.0, 100, 1, true).passed());
        // 95 of 100 is enough, 94 is not.
        assert!(step(100.0, 95, 1, true).sustained());
        assert!(!step(100.0, 94, 1, true).sustained());
        assert!(!step(100.0, 100, 1, false).passed());
        let s = sweep(vec![
            step(100.0, 100, 1, true),
            step(200.0, 200, 2, true),
            step(300.0, 250, 50, false),
        ]);
        assert_eq!(s.max_rate(), Some(200.0));
        assert!(s
            .result_line()
            .starts_with("max sustainable rate: 200 msgs/s"));
        assert!(s.result_line().contains("the next, 300 msgs/s, did not"));
        let row = table_row(&s.steps[2]);
        assert!(row.contains("SLO breached, short of rate"), "{row}");
        // Every row shows each SLO's measured value and verdict, under the SLO's text.
        assert!(row.contains("9.000 ms ✗"), "{row}");
        assert!(table_row(&s.steps[0]).contains("1.000 ms ✓"));
        assert!(table_header(&s).contains("eod:p99<5ms"));
        let why = failure_lines(&s.steps[2]);
        assert!(
            why.contains("300 msgs/s: SLO BREACHED: eod:p99<5ms"),
            "{why}"
        );
        assert!(why.contains("below 95% of the offered rate"), "{why}");
        assert!(failure_lines(&s.steps[0]).is_empty());
        assert!(table_header(&s).contains("4 steps planned, 100..400 msgs/s"));

        let none = sweep(vec![step(100.0, 10, 1, true)]);
        assert_eq!(none.max_rate(), None);
        assert!(none
            .result_line()
            .contains("none: the first step, 100 msgs/s"));
        let all = sweep(vec![step(100.0, 100, 1, true)]);
        assert!(all
            .result_line()
            .contains("at least 100 msgs/s (no step failed"));
        assert!(!all.knee_found());
        assert!(s.knee_found());
        assert_eq!(
            json(&all, serde_json::json!({}))["sweep"]["knee_found"],
            false
        );
        assert_eq!(json(&s, serde_json::json!({}))["sweep"]["knee_found"], true);
    }

    #[test]
    fn a_failed_step_passed_on_its_retry_is_no_knee_and_catch_up_is_flagged() {
        let mut retried = step(200.0, 200, 1, true);
        retried.retry = true;
        let s = sweep(vec![
            step(100.0, 100, 1, true),
            step(200.0, 200, 9, false),
            retried,
        ]);
        assert!(!s.knee_found());
        assert_eq!(s.max_rate(), Some(200.0));
        assert!(table_row(&s.steps[1]).contains("(re-trying)"));
        assert!(table_row(&s.steps[2]).contains("(re-try)"));
        // N2: the re-try's spectrum is told apart in the legend, as repeated labels are.
        let charts = charts(&s).unwrap();
        let spectrum = charts
            .iter()
            .find(|c| c.id == "percentiles-message_corrected")
            .unwrap();
        let names: Vec<&str> = spectrum.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["100 msgs/s", "200 msgs/s", "200 msgs/s (2)"]);
        // N10: texts name the corrected latency in words.
        assert!(
            spectrum
                .caption
                .starts_with("message corrected latency of the whole run"),
            "{}",
            spectrum.caption
        );
        assert!(table_header(&s).contains("latency is message corrected"));
        // 106 of 100 a second: the generator caught up after falling behind.
        let fast = step(100.0, 106, 1, true);
        assert!(fast.catch_up() && fast.passed());
        assert!(!step(100.0, 105, 1, true).catch_up());
        assert!(table_row(&fast).contains("catch-up"));
        let doc = json(&sweep(vec![fast]), serde_json::json!({}));
        assert_eq!(doc["steps"][0]["catch_up"], true);
        assert_eq!(doc["steps"][0]["retry"], false);
    }

    #[test]
    fn json_charts_and_page() {
        let s = sweep(vec![step(100.0, 100, 1, true), step(200.0, 150, 40, false)]);
        let doc = json(&s, serde_json::json!({"target": "x", "rate": null}));
        assert_eq!(doc["sweep"]["max_sustainable_rate"], 100.0);
        assert_eq!(doc["steps"][1]["passed"], false);
        assert_eq!(doc["steps"][1]["slo"][0]["ok"], false);
        let value = &doc["steps"][1]["slo_values"][0];
        assert_eq!(value["slo"], "eod:p99<5ms");
        assert_eq!(value["value"], 9.0);
        assert_eq!(value["unit"], "ms");
        assert_eq!(value["pass"], false);
        assert_eq!(doc["steps"][0]["slo_values"][0]["pass"], true);
        assert_eq!(doc["steps"][0]["results"]["config"]["rate"], 100.0);
        assert!(
            doc["steps"][0]["corrected_latency_ms"]["p99"]
                .as_f64()
                .unwrap()
                > 0.9
        );
        let charts = charts(&s).unwrap();
        let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "sweep-latency",
                "sweep-throughput",
                "percentiles-message_corrected"
            ]
        );
        // p50, p99, p99.9, the SLO's eod p99 (not plotted otherwise), its bound, the failed.
        let names: Vec<&str> = charts[0].series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "p50",
                "p99",
                "p99.9",
                "eod p99",
                "SLO eod:p99<5ms",
                "failed step (at its p99)"
            ]
        );
        assert_eq!(charts[0].series[3].points, [(100.0, 1.0), (200.0, 9.0)]);
        assert_eq!(charts[0].series[4].points, [(100.0, 5.0), (200.0, 5.0)]);
        assert_eq!(charts[0].series.last().unwrap().points.len(), 1);
        assert_eq!(charts[2].series.len(), 2);
        let page = page(&s, &charts).unwrap();
        assert!(page.contains("<table id=\"steps\">"));
        assert!(page.contains("<th>eod:p99&lt;5ms</th>"), "{page}");
        assert!(page.contains("9.000 ms ✗"));
        assert!(page.contains("id=\"sweep-latency\""));
    }
}
