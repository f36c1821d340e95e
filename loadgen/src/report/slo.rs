//! Service-level objectives (`--slo`): each parsed once into a [`Metric`] and a bound, then
//! checked against a run's totals.
//!
//! Grammar: `STAGE:STAT<BOUND` where STAGE is a stage name (`eod`, `mail`, ...), `message`
//! (service time) or `message_corrected` (from the intended start: coordinated-omission
//! corrected, open loop only), STAT is `pNN` or `max`, and BOUND a duration; or `errors<N%`
//! (failed messages plus connection errors over messages started) or `errors<N` (a count).
//! `<=` is read as `<`: a bound is always strict.
//!
//! What it does: parse the text (errors name the text), and say whether the figure is below
//! the bound, with the measured figure in the verdict line.
//!
//! What it does not do: parse durations (the caller passes its parser, so `--slo` and the
//! other flags read durations alike), print verdicts or choose the exit code (`main`).

use super::render::millis;
use crate::drive::client::Stage;
use crate::drive::record::Recorder;
use hdrhistogram::Histogram;
use std::time::Duration;

/// A latency histogram an SLO can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyOf {
    /// One stage's reply latency (`eod`, `mail`, ...).
    Stage(Stage),
    /// Message latency: service time from the first command (`message`), or with
    /// `corrected` from the intended start of the open-loop schedule (`message_corrected`).
    Message {
        /// Whether it is the coordinated-omission corrected histogram.
        corrected: bool,
    },
}

impl LatencyOf {
    /// Parses a histogram name as the output uses it.
    fn parse(name: &str) -> Option<LatencyOf> {
        match name {
            "message" => Some(LatencyOf::Message { corrected: false }),
            "message_corrected" => Some(LatencyOf::Message { corrected: true }),
            _ => Stage::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .map(LatencyOf::Stage),
        }
    }

    /// The histogram in `total`.
    fn histogram(self, total: &Recorder) -> &Histogram<u64> {
        match self {
            LatencyOf::Stage(stage) => total.stage(stage),
            LatencyOf::Message { corrected: false } => &total.message,
            LatencyOf::Message { corrected: true } => &total.message_corrected,
        }
    }
}

/// Which value of a latency histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    /// A percentile below 100 (`p50`, `p99.9`, ...).
    Percentile(f64),
    /// The largest value (`max`, or `p100`).
    Max,
}

/// What an SLO bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A statistic of a latency histogram, in nanoseconds.
    Latency {
        /// The histogram.
        of: LatencyOf,
        /// The value taken from it.
        statistic: Statistic,
    },
    /// Failed messages plus connection errors, over messages started (a fraction).
    ErrorRate,
    /// Failed messages plus connection errors (a count).
    ErrorCount,
}

impl Metric {
    /// The metric's value in `total`, in its unit; `None` if there is nothing to measure.
    fn measure(self, total: &Recorder) -> Option<f64> {
        let errors = (total.failed + total.error_count()) as f64;
        match self {
            Metric::Latency { of, statistic } => {
                let h = of.histogram(total);
                if h.is_empty() {
                    return None;
                }
                let nanos = match statistic {
                    Statistic::Percentile(p) => h.value_at_percentile(p),
                    Statistic::Max => h.max(),
                };
                // Exact: recorded values stay below 2^53 ns (see `record::MAX_NANOS`).
                Some(nanos as f64)
            }
            Metric::ErrorRate => Some(errors / (total.started.max(1)) as f64),
            Metric::ErrorCount => Some(errors),
        }
    }

    /// A measured value as the verdict line shows it.
    fn show(self, value: f64) -> String {
        match self {
            Metric::Latency { .. } => format!("{:.3} ms", millis(value as u64)),
            Metric::ErrorRate => format!("{:.4}%", value * 100.0),
            Metric::ErrorCount => format!("{value}"),
        }
    }
}

/// One objective measured on one run (or sweep step).
#[derive(Debug, Clone, PartialEq)]
pub struct SloValue {
    /// The objective as given.
    pub slo: String,
    /// The measured value in `unit` (`None`: nothing to measure, a breach).
    pub value: Option<f64>,
    /// `ms`, `%` or `errors`.
    pub unit: &'static str,
    /// Whether the objective held.
    pub pass: bool,
}

impl SloValue {
    /// The value and verdict as a table cell: `7.200 ms ✗`, `0.0100% ✓`, `- ✗`.
    pub fn cell(&self) -> String {
        let mark = if self.pass { '✓' } else { '✗' };
        match (self.value, self.unit) {
            (None, _) => format!("- {mark}"),
            (Some(v), "ms") => format!("{v:.3} ms {mark}"),
            (Some(v), "%") => format!("{v:.4}% {mark}"),
            (Some(v), _) => format!("{v} {mark}"),
        }
    }
}

/// A service-level objective: a metric that must stay strictly below a bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// The text as given (the verdict line starts with it).
    text: String,
    /// What is measured.
    metric: Metric,
    /// The bound, in the metric's unit (nanoseconds for latencies).
    bound: f64,
}

impl Slo {
    /// Parses `eod:p99<5ms`, `message:p99.9<20ms`, `mail:max<1s`, `errors<0.1%`, `errors<10`.
    pub fn parse(
        text: &str,
        parse_duration: impl Fn(&str) -> Result<Duration, String>,
    ) -> Result<Slo, String> {
        let bad = || {
            format!("bad --slo {text:?}: expected STAGE:pNN<DURATION (e.g. eod:p99<5ms) or errors<N% / errors<N")
        };
        let (left, right) = text.split_once('<').ok_or_else(bad)?;
        let right = right.strip_prefix('=').unwrap_or(right).trim();
        if left.trim() == "errors" {
            let (metric, bound) = match right.strip_suffix('%') {
                Some(pct) => (
                    Metric::ErrorRate,
                    pct.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
                ),
                None => (Metric::ErrorCount, right.parse::<f64>().map_err(|_| bad())?),
            };
            return Ok(Slo {
                text: text.into(),
                metric,
                bound,
            });
        }
        let (histogram, which) = left.trim().split_once(':').ok_or_else(bad)?;
        let of = LatencyOf::parse(histogram)
            .ok_or_else(|| format!("bad --slo {text:?}: unknown stage {histogram:?}"))?;
        let statistic = match which {
            "max" => Statistic::Max,
            p => match p
                .strip_prefix('p')
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|n| (0.0..=100.0).contains(n))
                .ok_or_else(bad)?
            {
                100.0 => Statistic::Max,
                percentile => Statistic::Percentile(percentile),
            },
        };
        let bound = parse_duration(right).map_err(|e| format!("bad --slo {text:?}: {e}"))?;
        Ok(Slo {
            text: text.into(),
            metric: Metric::Latency { of, statistic },
            bound: bound.as_nanos() as u64 as f64,
        })
    }

    /// The objective as given on the command line.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The objective measured on `total`: its value in the unit it is shown in, and
    /// whether it held.
    pub fn evaluate(&self, total: &Recorder) -> SloValue {
        let raw = self.metric.measure(total);
        let (value, unit) = match (self.metric, raw) {
            (Metric::Latency { .. }, v) => (v.map(|v| v / 1e6), "ms"),
            (Metric::ErrorRate, v) => (v.map(|v| v * 100.0), "%"),
            (Metric::ErrorCount, v) => (v, "errors"),
        };
        SloValue {
            slo: self.text.clone(),
            value,
            unit,
            pass: raw.is_some_and(|v| v < self.bound),
        }
    }

    /// For a latency objective: the histogram name (`eod`, `message_corrected`, ...), the
    /// percentile (100 for max) and the bound in milliseconds.
    pub fn latency_bound(&self) -> Option<(String, f64, f64)> {
        let Metric::Latency { of, statistic } = self.metric else {
            return None;
        };
        let name = match of {
            LatencyOf::Stage(stage) => stage.name().to_string(),
            LatencyOf::Message { corrected: false } => "message".into(),
            LatencyOf::Message { corrected: true } => "message_corrected".into(),
        };
        let p = match statistic {
            Statistic::Percentile(p) => p,
            Statistic::Max => 100.0,
        };
        Some((name, p, self.bound / 1e6))
    }

    /// Checks the objective against the totals: `Ok` with the verdict line if it holds,
    /// `Err` describing the breach (a latency with no measurements is a breach).
    pub fn check(&self, total: &Recorder) -> Result<String, String> {
        let Some(value) = self.metric.measure(total) else {
            return Err(format!("{}: no measurements", self.text));
        };
        let line = format!("{}: measured {}", self.text, self.metric.show(value));
        if value < self.bound {
            Ok(line)
        } else {
            Err(line)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ms(s: &str) -> Result<Duration, String> {
        s.strip_suffix("ms")
            .and_then(|n| n.parse().ok())
            .map(Duration::from_millis)
            .ok_or_else(|| "bad".to_string())
    }

    #[test]
    fn slo_parsing_and_checks() {
        let slo = Slo::parse("eod:p99<5ms", parse_ms).unwrap();
        let mut r = Recorder::new();
        for _ in 0..100 {
            r.reply(Stage::Eod, 250, 1_000_000);
        }
        assert!(slo.check(&r).is_ok());
        r.reply(Stage::Eod, 250, 50_000_000);
        r.reply(Stage::Eod, 250, 50_000_000);
        assert!(slo.check(&r).is_err());
        let errors = Slo::parse("errors<1%", parse_ms).unwrap();
        r.started = 1000;
        r.failed = 5;
        assert!(errors.check(&r).is_ok());
        r.failed = 10;
        assert!(errors.check(&r).is_err());
        assert!(Slo::parse("nope:p99<5ms", parse_ms).is_err());
        assert!(Slo::parse("eod:p101<5ms", parse_ms).is_err());
        assert!(Slo::parse("eod p99 5ms", parse_ms).is_err());
    }

    #[test]
    fn the_text_is_parsed_into_a_metric() {
        let metric = |text: &str| Slo::parse(text, parse_ms).unwrap().metric;
        let latency = |of, statistic| Metric::Latency { of, statistic };
        let table = [
            (
                "eod:p99<5ms",
                latency(LatencyOf::Stage(Stage::Eod), Statistic::Percentile(99.0)),
            ),
            (
                "connect:p50<5ms",
                latency(
                    LatencyOf::Stage(Stage::Connect),
                    Statistic::Percentile(50.0),
                ),
            ),
            (
                "mail:max<5ms",
                latency(LatencyOf::Stage(Stage::Mail), Statistic::Max),
            ),
            (
                "rcpt:p100<=5ms",
                latency(LatencyOf::Stage(Stage::Rcpt), Statistic::Max),
            ),
            (
                "message:p99.9<5ms",
                latency(
                    LatencyOf::Message { corrected: false },
                    Statistic::Percentile(99.9),
                ),
            ),
            (
                "message_corrected:p0<5ms",
                latency(
                    LatencyOf::Message { corrected: true },
                    Statistic::Percentile(0.0),
                ),
            ),
            ("errors<0.1%", Metric::ErrorRate),
            ("errors <= 3", Metric::ErrorCount),
        ];
        for (text, expected) in table {
            assert_eq!(metric(text), expected, "{text}");
        }
        for bad in [
            "eod:p99",
            "eod:p-1<5ms",
            "eod:pxx<5ms",
            "eod:99<5ms",
            "eod:p99<5 parsecs",
            "errors<x%",
            "errors<",
            "send_lateness:p99<5ms",
            "message corrected:p99<5ms",
        ] {
            assert!(Slo::parse(bad, parse_ms).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_are_strict_and_empty_histograms_breach() {
        let mut r = Recorder::new();
        let slo = Slo::parse("mail:max<1ms", parse_ms).unwrap();
        assert_eq!(
            slo.check(&r),
            Err("mail:max<1ms: no measurements".to_string())
        );
        r.reply(Stage::Mail, 250, 999_000);
        assert_eq!(slo.check(&r), Ok("mail:max<1ms: measured 0.999 ms".into()));
        // Recorded values are kept to 3 significant digits: 1 ms is 1 ms, not below.
        r.reply(Stage::Mail, 250, 1_000_000);
        assert!(slo.check(&r).is_err());
        let count = Slo::parse("errors<2", parse_ms).unwrap();
        r.failed = 1;
        assert_eq!(count.check(&r), Ok("errors<2: measured 1".into()));
        r.failed = 2;
        assert_eq!(count.check(&r), Err("errors<2: measured 2".into()));
        // No message started: the rate is over at least one.
        let rate = Slo::parse("errors<50%", parse_ms).unwrap();
        r.failed = 0;
        assert_eq!(rate.check(&r), Ok("errors<50%: measured 0.0000%".into()));
    }

    #[test]
    fn evaluated_values_carry_unit_and_verdict() {
        let mut r = Recorder::new();
        let slo = Slo::parse("eod:p99<5ms", parse_ms).unwrap();
        assert_eq!(slo.evaluate(&r).cell(), "- ✗");
        r.reply(Stage::Eod, 250, 7_200_000);
        let v = slo.evaluate(&r);
        assert_eq!((v.unit, v.pass), ("ms", false));
        assert_eq!(v.cell(), "7.201 ms ✗"); // 3 significant digits, highest equivalent
        assert_eq!(slo.latency_bound(), Some(("eod".to_string(), 99.0, 5.0)));
        let errors = Slo::parse("errors<1%", parse_ms).unwrap();
        r.started = 100;
        let v = errors.evaluate(&r);
        assert_eq!((v.value, v.unit, v.pass), (Some(0.0), "%", true));
        assert_eq!(errors.latency_bound(), None);
    }
}
