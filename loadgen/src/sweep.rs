//! The rate sweep (`--sweep LOW..HIGH`): open-loop runs at rising rates, to find the
//! highest rate a server sustains within its SLOs (the knee of its latency curve).
//!
//! Each step is a whole open-loop run at one `--rate` (the engine's coordinated-omission-safe
//! schedule: latency counts from each message's intended send time), with its own
//! connections, its own `--warmup` and `--duration`, and its own histograms. After each step
//! its row of the table is printed. A step that fails (see
//! [`report::sweep`](crate::report::sweep) for what passing means) is run once more at the
//! same rate, and the sweep stops when that re-try fails too: past the knee a server's queues
//! grow and every later step only measures that backlog while pushing it further, but a
//! single noisy second on a shared machine should not decide the headline figure.
//!
//! What it does not do: judge or render steps (`report::sweep`), or write files (`main`).

use crate::report::provenance::{Kind, Provenance};
use crate::report::sweep::{rate, table_header, table_row, Step, Sweep};
use crate::runner;
use crate::settings::Settings;
use crate::stdout::{say, say_line};
use std::time::{Duration, SystemTime};

/// How long each step is measured when `--duration` is not given.
pub const DEFAULT_STEP_DURATION: Duration = Duration::from_secs(10);

/// Runs the sweep over `rates` (in order) with `settings` (whose rate each step sets),
/// printing the table as it goes; `on_step` is called with each finished step (to write its
/// interval log). Returns the steps run.
pub fn run(
    settings: &mut Settings,
    rates: Vec<f64>,
    mut on_step: impl FnMut(&Step) -> Result<(), String>,
) -> Result<Sweep, String> {
    let mut config = settings.config_json();
    config["sweep"] = serde_json::json!({
        "low": rates.first(),
        "high": rates.last(),
        "steps": rates.len(),
    });
    let provenance = Provenance::capture(
        Kind::Sweep,
        SystemTime::now(),
        &format!(
            "smtp-loadgen rate sweep -> {}: {} connections, {}..{} msgs/s in {} steps",
            settings.target_text,
            settings.connections,
            rate(rates.first().copied().unwrap_or(0.0)),
            rate(rates.last().copied().unwrap_or(0.0)),
            rates.len()
        ),
        config,
        settings.warmup.as_secs_f64(),
    );
    let mut sweep = Sweep {
        planned: rates.clone(),
        steps: Vec::new(),
        step_seconds: settings
            .duration
            .unwrap_or(DEFAULT_STEP_DURATION)
            .as_secs_f64(),
        warmup_seconds: settings.warmup.as_secs_f64(),
        target: settings.target_text.clone(),
        slos: settings.slos.clone(),
        provenance,
    };
    say_line(&sweep.provenance.description);
    for line in sweep.provenance.lines() {
        say_line(&line);
    }
    say(&table_header(&sweep));
    let count = rates.len();
    for (index, offered) in rates.into_iter().enumerate() {
        let mut retry = false;
        loop {
            let step = run_one(settings, offered, index, count, retry)?;
            say(&table_row(&step));
            on_step(&step)?;
            let passed = step.passed();
            sweep.steps.push(step);
            if passed {
                break;
            }
            if retry {
                settings.rate = None;
                return Ok(sweep);
            }
            // A failing step is run once more before it decides: a single noisy second on
            // a shared machine should not set the headline figure.
            retry = true;
        }
    }
    settings.rate = None;
    Ok(sweep)
}

/// Runs one step (or its re-try) at `offered` msgs/s and judges it.
fn run_one(
    settings: &mut Settings,
    offered: f64,
    index: usize,
    count: usize,
    retry: bool,
) -> Result<Step, String> {
    settings.rate = Some(offered);
    let header = settings.header();
    let label = format!(
        "step {}/{count}{} at {} msgs/s  ",
        index + 1,
        if retry { " (re-try)" } else { "" },
        rate(offered)
    );
    let finished = runner::run_step(settings, &header, &label)?;
    let verdicts = settings
        .slos
        .iter()
        .map(|slo| slo.check(&finished.results.total))
        .collect();
    let slo_values = settings
        .slos
        .iter()
        .map(|slo| slo.evaluate(&finished.results.total))
        .collect();
    let provenance = Provenance::capture(
        Kind::Run,
        finished.wall_start,
        &header,
        settings.config_json(),
        settings.warmup.as_secs_f64(),
    );
    Ok(Step {
        offered,
        header,
        provenance,
        results: finished.results,
        wall_start: finished.wall_start,
        verdicts,
        slo_values,
        retry,
    })
}
