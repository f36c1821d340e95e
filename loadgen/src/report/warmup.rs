//! The warm-up rule: one rule for every output, and the sentence that states it.
//!
//! The rule: an interval that starts before the warm-up ends (partly inside it) is left out
//! of every total, table, percentile and percentile chart; the intervals from the first one
//! that starts at or after the warm-up's end are measured. Charts over time still draw the
//! warm-up, shaded. A run's intervals are whole seconds from its start and its warm-up is
//! rounded up to whole seconds, so a run's own summary, its `--json`, its interval log read
//! by `report` (text, HTML, SVG, PNG) and `merge` count the same intervals. Every output
//! states it: `warm-up 1 s excluded: intervals from 1.0 s`.
//!
//! Which warm-up: a run's `--warmup`; for `report`, its `--warmup` if given, else the one
//! the log records (its provenance line), else (older smtp-loadgen logs) the one its counts
//! lines flag, else none (other tools' logs). That choice for a log, `Warmup::of_log`, is
//! written in `interval_log`, beside the notes it reads.
//!
//! What it does not do: read logs (`interval_log`) or add figures up (`figures`, `results`).

use serde_json::{json, Value};

/// Interval log timestamps have millisecond resolution: a start within this of the
/// warm-up's end is at it, not before it.
const TOLERANCE: f64 = 1e-3;

/// Where a warm-up comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The run's `--warmup` (a run's own outputs).
    Run,
    /// `report --warmup`.
    Flag,
    /// The log's provenance line.
    Log,
    /// An older smtp-loadgen log: its counts lines' warm-up flags.
    Counts,
    /// Nothing recorded (another tool's log): no warm-up.
    None,
}

/// A warm-up: how long, from when, and where that came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warmup {
    /// Seconds of warm-up from `origin`.
    pub seconds: f64,
    /// The run's start, seconds since the Unix epoch (a log's StartTime).
    pub origin: f64,
    /// Where `seconds` comes from.
    pub source: Source,
}

impl Warmup {
    /// `seconds` of warm-up from `origin`.
    pub fn new(seconds: f64, origin: f64, source: Source) -> Warmup {
        Warmup {
            seconds: if seconds.is_finite() {
                seconds.max(0.0)
            } else {
                0.0
            },
            origin,
            source,
        }
    }

    /// Whether the interval starting at `start` (seconds since the epoch) is left out.
    pub fn excludes(&self, start: f64) -> bool {
        start - self.origin < self.seconds - TOLERANCE
    }

    /// Seconds from the run's start to the first measured interval among `starts` (absolute
    /// start times); the warm-up's end when none is measured.
    pub fn measured_from(&self, starts: impl IntoIterator<Item = f64>) -> f64 {
        let first = starts
            .into_iter()
            .filter(|s| !self.excludes(*s))
            .map(|s| s - self.origin)
            .fold(f64::INFINITY, f64::min);
        if first.is_finite() {
            first.max(0.0)
        } else {
            self.seconds
        }
    }

    /// The sentence every output shows: `warm-up 1 s excluded: intervals from 1.0 s`, or
    /// `no warm-up: intervals from 0.0 s`; `from` is [`Warmup::measured_from`].
    pub fn statement(&self, from: f64) -> String {
        let head = if self.seconds > 0.0 {
            format!("warm-up {} s excluded", seconds(self.seconds))
        } else {
            "no warm-up".to_string()
        };
        let source = match self.source {
            Source::Run => "",
            Source::Flag => " (report --warmup)",
            Source::Log => " (as the log records it)",
            Source::Counts => " (as the log's counts lines flag it)",
            Source::None => " (the log records none)",
        };
        format!("{head}: intervals from {from:.1} s{source}")
    }

    /// As JSON: `{"seconds", "measured_from_seconds", "source", "statement"}`.
    pub fn json(&self, from: f64) -> Value {
        json!({
            "seconds": self.seconds,
            "measured_from_seconds": from,
            "source": match self.source {
                Source::Run => "run",
                Source::Flag => "report --warmup",
                Source::Log => "log",
                Source::Counts => "log counts lines",
                Source::None => "none recorded",
            },
            "statement": self.statement(from),
        })
    }
}

/// Seconds as short text: `1`, `1.5`, `0.25`.
fn seconds(s: f64) -> String {
    let text = format!("{s:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_partly_inside_the_warmup_are_left_out() {
        let w = Warmup::new(1.5, 100.0, Source::Flag);
        assert!(w.excludes(100.0) && w.excludes(101.0));
        assert!(!w.excludes(102.0));
        // Millisecond timestamps: 101.9995 is at 102.
        let whole = Warmup::new(2.0, 100.0, Source::Run);
        assert!(!whole.excludes(101.9995) && whole.excludes(101.99));
        let starts = [100.0, 101.0, 102.0, 103.0];
        assert_eq!(w.measured_from(starts), 2.0);
        assert_eq!(
            w.statement(2.0),
            "warm-up 1.5 s excluded: intervals from 2.0 s (report --warmup)"
        );
        let run = Warmup::new(1.0, 100.0, Source::Run);
        assert_eq!(run.measured_from(starts), 1.0);
        assert_eq!(
            run.statement(1.0),
            "warm-up 1 s excluded: intervals from 1.0 s"
        );
        let none = Warmup::new(0.0, 100.0, Source::None);
        assert!(!none.excludes(100.0));
        assert_eq!(none.measured_from(starts), 0.0);
        assert_eq!(
            none.statement(0.0),
            "no warm-up: intervals from 0.0 s (the log records none)"
        );
        // Every interval inside the warm-up: measured from its end.
        assert_eq!(
            Warmup::new(9.0, 100.0, Source::Run).measured_from(starts),
            9.0
        );
        assert_eq!(run.json(1.0)["measured_from_seconds"], 1.0);
        assert_eq!(Warmup::new(f64::NAN, 0.0, Source::Run).seconds, 0.0);
    }
}
