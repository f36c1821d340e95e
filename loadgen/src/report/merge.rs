//! `merge`: several load hosts' interval logs added up into one, on a common grid of whole
//! seconds, with one warm-up.
//!
//! What it does: put every input interval (histograms and counts lines) into the second
//! of the merged log it starts in, counted from the earliest input's start (its StartTime):
//! intervals of one tag in the same second are added. The merged warm-up follows the one
//! rule ([`Warmup`]) from each input's side: a merged second is warm-up when an interval in
//! it is one its input's own `report` leaves out, and so is every second before it (the
//! hosts ran at the same time). So the warm-up and the grid agree: merging one log, or logs
//! that started within the same second with the same warm-up, counts exactly the intervals
//! `report` counts on each input; an interval one input counts and another's warm-up covers
//! is left out.
//!
//! What it does not do: read or write files (the caller passes parsed logs and writes
//! [`Merged`] with `interval_log::write_hlog`), or keep decoded histograms beyond the one
//! being added.

use super::codec::{addition_error, encode_histogram};
use super::interval_log::{LoggedCounts, LoggedInterval};
use super::warmup::{Source, Warmup};
use crate::drive::record::new_histogram;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// One input log: its intervals, counts lines and the warm-up its `report` applies
/// ([`Warmup::of_log`]).
#[derive(Debug, Clone)]
pub struct Input {
    /// The histogram lines, absolute start times.
    pub intervals: Vec<LoggedInterval>,
    /// The counts lines, absolute start times (none in other tools' logs).
    pub counts: Vec<LoggedCounts>,
    /// The warm-up `report` would apply to this log alone.
    pub warmup: Warmup,
}

/// The merged log.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Its start (StartTime and BaseTime), seconds since the epoch: the earliest input's.
    pub origin: f64,
    /// Histograms, one per (second, tag), in time order then tag.
    pub intervals: Vec<LoggedInterval>,
    /// Counts, one per second, their warm-up flags set by `warmup`.
    pub counts: Vec<LoggedCounts>,
    /// The merged warm-up: whole seconds from `origin`.
    pub warmup: Warmup,
}

/// The second of the merged grid `start` falls in, counted from `origin`. Log timestamps
/// have millisecond resolution: an offset within half a millisecond of a whole second is
/// that second.
fn second_of(start: f64, origin: f64) -> i64 {
    (((start - origin) * 1000.0).round() / 1000.0).floor() as i64
}

/// Merges `inputs` (see the module doc).
pub fn merge(inputs: &[Input]) -> Result<Merged, String> {
    let origin = inputs
        .iter()
        .flat_map(|input| {
            std::iter::once(input.warmup.origin)
                .chain(input.intervals.iter().map(|i| i.start))
                .chain(input.counts.iter().map(|c| c.start))
        })
        .filter(|t| t.is_finite())
        .fold(f64::INFINITY, f64::min);
    let origin = if origin.is_finite() { origin } else { 0.0 };

    // The end of the merged warm-up: one past the last second holding an interval that its
    // own input leaves out.
    let mut warmup_end = 0i64;
    let mut histograms: BTreeMap<(i64, String), (f64, Histogram<u64>)> = BTreeMap::new();
    let mut counts: BTreeMap<i64, LoggedCounts> = BTreeMap::new();
    for input in inputs {
        for interval in &input.intervals {
            let second = second_of(interval.start, origin);
            if input.warmup.excludes(interval.start) {
                warmup_end = warmup_end.max(second + 1);
            }
            let entry = histograms
                .entry((second, interval.tag.clone()))
                .or_insert_with(|| (interval.duration, new_histogram()));
            entry.0 = entry.0.max(interval.duration);
            // Our histograms grow to fit, so values from any other tool's bounds are taken.
            entry.1.add(&interval.histogram()?).map_err(|e| {
                format!(
                    "merging {}: {}",
                    super::quoted(&interval.tag),
                    addition_error(&e)
                )
            })?;
        }
        for c in &input.counts {
            let second = second_of(c.start, origin);
            if input.warmup.excludes(c.start) {
                warmup_end = warmup_end.max(second + 1);
            }
            let entry = counts.entry(second).or_insert_with(|| LoggedCounts {
                start: origin + second as f64,
                duration: 0.0,
                counts: Default::default(),
            });
            entry.duration = entry.duration.max(c.duration);
            entry.counts.add(&c.counts);
        }
    }
    let warmup = Warmup::new(warmup_end as f64, origin, Source::Run);
    let counts = counts
        .into_values()
        .map(|mut c| {
            c.counts.warmup = warmup.excludes(c.start);
            c
        })
        .collect();
    Ok(Merged {
        origin,
        intervals: histograms
            .into_iter()
            .map(|((second, tag), (duration, histogram))| LoggedInterval {
                start: origin + second as f64,
                duration,
                tag,
                encoded: encode_histogram(&histogram),
            })
            .collect(),
        counts,
        warmup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::interval_log::IntervalCounts;

    /// An interval of `n` values of 1 ms.
    fn interval(start: f64, tag: &str, n: u64) -> LoggedInterval {
        let mut h = new_histogram();
        h.record_n(1_000_000, n).unwrap();
        LoggedInterval {
            start,
            duration: 1.0,
            tag: tag.into(),
            encoded: encode_histogram(&h),
        }
    }

    /// A log that started at `origin` with `seconds` one-second intervals of 10 `eod`
    /// values and 10 accepted messages each, and `warmup` seconds of warm-up as a run
    /// records it.
    fn input(origin: f64, seconds: u64, warmup: f64) -> Input {
        let starts = (0..seconds).map(|k| origin + k as f64);
        Input {
            intervals: starts.clone().map(|s| interval(s, "eod", 10)).collect(),
            counts: starts
                .map(|start| LoggedCounts {
                    start,
                    duration: 1.0,
                    counts: IntervalCounts {
                        warmup: start < origin + warmup,
                        started: 10,
                        accepted: 10,
                        ..Default::default()
                    },
                })
                .collect(),
            warmup: Warmup::new(warmup, origin, Source::Log),
        }
    }

    /// What `report` counts on a log: the `eod` values and accepted messages of the
    /// intervals its warm-up leaves in.
    fn counted(intervals: &[LoggedInterval], counts: &[LoggedCounts], w: &Warmup) -> (u64, u64) {
        let values = intervals
            .iter()
            .filter(|i| !w.excludes(i.start))
            .map(|i| i.histogram().unwrap().len())
            .sum();
        let accepted = counts
            .iter()
            .filter(|c| !w.excludes(c.start))
            .map(|c| c.counts.accepted)
            .sum();
        (values, accepted)
    }

    #[test]
    fn merge_counts_what_report_counts_on_each_input_at_fractional_starts() {
        for warmup in [0.0, 1.0, 2.0] {
            // One log that started at .953 (B6: its first measured second was dropped).
            let one = input(1_700_000_000.953, 5, warmup);
            let alone = counted(&one.intervals, &one.counts, &one.warmup);
            let merged = merge(std::slice::from_ref(&one)).unwrap();
            assert_eq!(merged.origin, 1_700_000_000.953);
            assert_eq!(merged.warmup.seconds, warmup, "warm-up {warmup}");
            assert_eq!(
                counted(&merged.intervals, &merged.counts, &merged.warmup),
                alone,
                "warm-up {warmup}"
            );
            assert_eq!(alone.1, 10 * (5 - warmup as u64));
            // The counts lines say the same.
            let flagged = merged.counts.iter().filter(|c| c.counts.warmup).count();
            assert_eq!(flagged, warmup as usize);

            // Two hosts that started within the same second, the same warm-up.
            let other = input(1_700_000_001.412, 5, warmup);
            let both = merge(&[one.clone(), other.clone()]).unwrap();
            let sum = {
                let b = counted(&other.intervals, &other.counts, &other.warmup);
                (alone.0 + b.0, alone.1 + b.1)
            };
            // .953 and 1.412 are 0.459 s apart: the same grid second.
            assert_eq!(
                counted(&both.intervals, &both.counts, &both.warmup),
                sum,
                "warm-up {warmup}"
            );
            assert_eq!(both.warmup.seconds, warmup);
        }
    }

    #[test]
    fn a_second_inside_any_inputs_warmup_is_warmup() {
        // The second host started 1.5 s later with the same 1 s warm-up: its warm-up
        // interval falls in the first host's second 1 (from 1.5 s), which is left out.
        let a = input(100.0, 4, 1.0);
        let b = input(101.5, 4, 1.0);
        let merged = merge(&[a, b]).unwrap();
        assert_eq!(merged.warmup.seconds, 2.0);
        assert_eq!(merged.origin, 100.0);
        let starts: Vec<f64> = merged.counts.iter().map(|c| c.start).collect();
        assert_eq!(starts, [100.0, 101.0, 102.0, 103.0, 104.0]);
        let flags: Vec<bool> = merged.counts.iter().map(|c| c.counts.warmup).collect();
        assert_eq!(flags, [true, true, false, false, false]);
        // Tags in the same second are added, other tags kept apart.
        let mut c = input(100.2, 2, 0.0);
        c.intervals.push(interval(100.4, "mail", 3));
        let merged = merge(&[input(100.0, 2, 0.0), c]).unwrap();
        let first: Vec<(f64, &str, u64)> = merged
            .intervals
            .iter()
            .map(|i| (i.start, i.tag.as_str(), i.histogram().unwrap().len()))
            .collect();
        assert_eq!(
            first,
            [(100.0, "eod", 20), (100.0, "mail", 3), (101.0, "eod", 20)]
        );
        // No input: nothing, no warm-up.
        let empty = merge(&[]).unwrap();
        assert!(empty.intervals.is_empty() && empty.warmup.seconds == 0.0);
    }

    #[test]
    fn a_broken_histogram_is_an_error() {
        let mut broken = input(0.0, 1, 0.0);
        broken.intervals[0].encoded = "aGVsbG8=".into();
        assert!(merge(&[broken]).is_err());
    }
}
