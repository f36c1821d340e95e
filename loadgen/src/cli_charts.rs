//! The command-line flags of charts (`--html`, `--svg`, `--png`, `--label`) and of the rate
//! sweep (`--sweep`, `--step`, `--steps`), flattened into the load run's flags and (charts)
//! the `report` subcommand's.
//!
//! What it does: declare those flags with their help texts, parse rates (`5k`, `2.5k`,
//! `1m`: decimal multiples, as rates are counted) and rate ranges (`5k..100k`), and turn the
//! sweep flags into the list of rates to run.
//!
//! What it does not do: run a sweep (`sweep`) or draw (`report::chart`). It is apart from
//! `cli` so that these flags, added together, stay out of the way of the other flags.

use clap::Args;
use std::path::PathBuf;

/// Steps of a sweep when neither `--step` nor `--steps` is given.
pub const DEFAULT_STEPS: u32 = 10;
/// Most steps a sweep may have.
const MAX_STEPS: usize = 1000;
/// The lowest rate a sweep may start at, in msgs/s.
pub const MIN_SWEEP_RATE: f64 = 1.0;
/// The highest rate a sweep may reach, in msgs/s (far above what one generator sends).
pub const MAX_SWEEP_RATE: f64 = 10_000_000.0;

/// Where to write charts, and what to call the runs in them.
#[derive(Debug, Clone, Default, Args)]
pub struct ChartArgs {
    /// Write a self-contained HTML report here: charts (inline SVG) and tables, no network
    /// needed to open it.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write each chart as an SVG file into this directory (created if missing), named by
    /// chart: percentiles-eod.svg, throughput.svg, ...
    #[arg(long, value_name = "DIR")]
    pub svg: Option<PathBuf>,
    /// Write each chart as a PNG file (960 pixels wide, 440 high plus the legend below the
    /// plot) into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub png: Option<PathBuf>,
    /// Name of a run in charts and tables; `report`: one per log, in order, or none
    /// (default: the log's file name without extension; for a load run, the target).
    /// Repeated names get " (2)", " (3)", ... in legends.
    #[arg(long, value_name = "TEXT")]
    pub label: Vec<String>,
}

impl ChartArgs {
    /// Whether any chart output is asked for.
    pub fn any(&self) -> bool {
        self.html.is_some() || self.svg.is_some() || self.png.is_some()
    }
}

/// A range of rates in messages per second, `LOW..HIGH`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRange {
    /// The first step's rate.
    pub low: f64,
    /// The highest rate a step may have.
    pub high: f64,
}

/// The rate sweep's flags.
#[derive(Debug, Clone, Default, Args)]
pub struct SweepArgs {
    /// Rate sweep: open-loop steps from LOW to HIGH msgs/s (5k..100k; k = 1000; LOW at
    /// least 1, HIGH at most 10m), each
    /// --duration long (default 10s) after its own --warmup, with fresh connections. A step
    /// that breaches an --slo or achieves less than 95% of its rate is run once more; the
    /// sweep stops when that re-try fails too, and reports the highest rate that met every
    /// SLO (text, and --json/--html/--svg/--png).
    #[arg(
        long = "sweep",
        value_name = "LOW..HIGH",
        value_parser = parse_rate_range,
        allow_hyphen_values = true,
        conflicts_with_all = ["rate", "messages"]
    )]
    pub range: Option<RateRange>,
    /// Sweep step in msgs/s (5k): LOW, LOW+STEP, ... below HIGH, then HIGH itself.
    #[arg(
        long,
        value_name = "R",
        value_parser = parse_rate,
        allow_hyphen_values = true,
        requires = "range",
        conflicts_with = "steps"
    )]
    pub step: Option<f64>,
    /// Number of sweep steps, LOW and HIGH included, evenly spaced (1 runs LOW and HIGH)
    /// [default: 10].
    #[arg(long, value_name = "N", requires = "range")]
    pub steps: Option<u32>,
}

impl SweepArgs {
    /// The rates of the sweep, if one is asked for.
    pub fn rates(&self) -> Result<Option<Vec<f64>>, String> {
        let Some(RateRange { low, high }) = self.range else {
            return Ok(None);
        };
        let mut rates: Vec<f64> = match (self.step, self.steps) {
            (Some(step), _) => {
                let count = ((high - low) / step + 1e-9).floor();
                if count >= MAX_STEPS as f64 {
                    return Err(format!(
                        "--step {step} makes more than {MAX_STEPS} steps; at most {MAX_STEPS}"
                    ));
                }
                (0..=count as usize)
                    .map(|i| low + step * i as f64)
                    .collect()
            }
            (None, steps) => {
                let steps = steps.unwrap_or(DEFAULT_STEPS) as usize;
                if steps == 0 || steps > MAX_STEPS {
                    return Err(format!("--steps must be between 1 and {MAX_STEPS}"));
                }
                (0..steps.max(2))
                    .map(|i| low + (high - low) * i as f64 / (steps.max(2) - 1) as f64)
                    .collect()
            }
        };
        // HIGH is always tested, as the last step (a --step that does not land on it, one
        // larger than the range, --steps 1).
        rates.retain(|r| *r < high * (1.0 - 1e-9));
        rates.push(high);
        rates.dedup();
        Ok(Some(rates))
    }
}

/// Parses a rate: `500`, `2.5k` (2 500), `1m` (1 000 000); positive and finite.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, multiplier) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1e3),
        Some((i, 'm' | 'M')) => (&text[..i], 1e6),
        _ => (text, 1.0),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate (e.g. 500, 5k, 2.5k, 1m msgs/s)"))?;
    let rate = value * multiplier;
    if !(rate > 0.0 && rate.is_finite()) {
        return Err(format!("{text:?}: a rate must be positive"));
    }
    Ok(rate)
}

/// Parses `LOW..HIGH` rates, LOW at most HIGH.
pub fn parse_rate_range(text: &str) -> Result<RateRange, String> {
    let (low, high) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?}: expected LOW..HIGH (e.g. 5k..100k)"))?;
    let (low, high) = (parse_rate(low)?, parse_rate(high)?);
    if low > high {
        return Err(format!("{text:?}: the range is empty"));
    }
    if low < MIN_SWEEP_RATE {
        return Err(format!(
            "{text:?}: a sweep starts at {MIN_SWEEP_RATE} msg/s or more (an open-loop step \
             below 1 msg/s measures next to nothing)"
        ));
    }
    if high > MAX_SWEEP_RATE {
        return Err(format!(
            "{text:?}: HIGH is at most {} msgs/s",
            MAX_SWEEP_RATE as u64
        ));
    }
    Ok(RateRange { low, high })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(range: &str, step: Option<&str>, steps: Option<u32>) -> Result<Vec<f64>, String> {
        SweepArgs {
            range: Some(parse_rate_range(range)?),
            step: step.map(|s| parse_rate(s).unwrap()),
            steps,
        }
        .rates()
        .map(Option::unwrap)
    }

    #[test]
    fn rates_and_ranges() {
        assert_eq!(parse_rate("500"), Ok(500.0));
        assert_eq!(parse_rate("5k"), Ok(5000.0));
        assert_eq!(parse_rate("2.5K"), Ok(2500.0));
        assert_eq!(parse_rate("1m"), Ok(1e6));
        for bad in ["", "k", "0", "-5k", "5x", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_rate_range("5k..100k"),
            Ok(RateRange {
                low: 5e3,
                high: 1e5
            })
        );
        for bad in ["5k", "100k..5k", "..5k", "5k.."] {
            assert!(parse_rate_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sweep_steps() {
        assert_eq!(
            sweep("5k..20k", Some("5k"), None).unwrap(),
            [5e3, 10e3, 15e3, 20e3]
        );
        // HIGH is always the last step, even where --step does not land on it.
        assert_eq!(
            sweep("200..900", Some("200"), None).unwrap(),
            [200.0, 400.0, 600.0, 800.0, 900.0]
        );
        assert_eq!(sweep("1k..2k", Some("5k"), None).unwrap(), [1e3, 2e3]);
        assert_eq!(sweep("1k..2k", None, Some(3)).unwrap(), [1e3, 1.5e3, 2e3]);
        // --steps 1: LOW and HIGH are still both tested.
        assert_eq!(sweep("1k..2k", None, Some(1)).unwrap(), [1e3, 2e3]);
        assert_eq!(sweep("1k..1k", None, None).unwrap(), [1e3]);
        assert_eq!(sweep("1k..1k", None, Some(1)).unwrap(), [1e3]);
        // Silly ranges are refused.
        for bad in ["1..1e308", "1..10000001", "0.5..1", "0.001..5"] {
            assert!(parse_rate_range(bad).is_err(), "{bad}");
        }
        assert!(parse_rate_range("1..10m").is_ok());
        assert_eq!(
            sweep("1k..10k", None, None).unwrap().len(),
            DEFAULT_STEPS as usize
        );
        assert!(sweep("1..1m", Some("1"), None).is_err());
        assert!(sweep("1..2", None, Some(0)).is_err());
        assert_eq!(SweepArgs::default().rates(), Ok(None));
    }
}
