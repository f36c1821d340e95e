//! What the charts show, computed from one interval log: per tag the whole run's histogram
//! and its p50/p99/max per interval, and the throughput per interval.
//!
//! What it does: decode each interval's histogram once, add it to its tag's total (warm-up
//! intervals left out of the totals when the log says which they are) and keep the
//! interval's p50, p99 and max; take throughput from the log's counts lines, or, in logs
//! without them (older smtp-loadgen, other tools), from the number of values in each
//! interval's `message` histogram (messages finished, accepted or not); and turn a histogram
//! into its percentile spectrum, the points HdrHistogram's plotter draws.
//!
//! What it does not do: draw (`chart`), choose which charts a report has (`charts`), or
//! read files (the caller passes a parsed log).

use super::interval_log::{LogNotes, LoggedInterval};
use crate::client::Stage;
use crate::record::new_histogram;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// Points per halving of the distance to 100% in a percentile spectrum (HdrHistogram's
/// `outputPercentileDistribution` uses 5).
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// One interval's latency figures, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalLatency {
    /// Seconds from the log's first interval to this interval's end.
    pub t: f64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest value.
    pub max: u64,
}

/// One tag's figures.
#[derive(Debug, Clone)]
pub struct TagFigures {
    /// The tag (stage name, `message`, `message_corrected`, or another tool's tag).
    pub tag: String,
    /// Every interval added up (warm-up left out when the log marks it).
    pub total: Histogram<u64>,
    /// Per interval, in time order (warm-up included).
    pub over_time: Vec<IntervalLatency>,
}

/// One interval's throughput, in messages per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalThroughput {
    /// Seconds from the log's first interval to this interval's end.
    pub t: f64,
    /// Messages accepted per second (from histograms: messages finished per second).
    pub accepted: f64,
    /// Messages started per second (the offered load in open loop); counts lines only.
    pub started: Option<f64>,
    /// Failed messages plus connection errors per second; counts lines only.
    pub failed: Option<f64>,
}

/// Where the throughput figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThroughputSource {
    /// The log's `#smtp-loadgen-counts` lines.
    Counts,
    /// The number of values per interval in this tag's histograms (logs without counts).
    Histogram(&'static str),
    /// Neither: no throughput figures.
    None,
}

/// Everything the charts need from one log.
#[derive(Debug, Clone)]
pub struct RunFigures {
    /// The run's name in legends and tables.
    pub label: String,
    /// The log's first comment (for smtp-loadgen logs, the run's header line).
    pub description: Option<String>,
    /// The log's warning comments (fewer connections than asked for were alive).
    pub warnings: Vec<String>,
    /// Per tag, in stage order, then `message`, `message_corrected`, then others by name.
    pub tags: Vec<TagFigures>,
    /// Per interval, in time order.
    pub throughput: Vec<IntervalThroughput>,
    /// Where `throughput` comes from.
    pub throughput_source: ThroughputSource,
    /// Warm-up intervals as `(from, to)` seconds from the log's first interval.
    pub warmup: Vec<(f64, f64)>,
    /// Seconds of load the totals cover: without the warm-up and the drain after the last
    /// send when the log has counts; every interval otherwise.
    pub measured_seconds: f64,
    /// Messages accepted in the measured intervals (counts lines only).
    pub accepted: Option<u64>,
    /// Failed messages plus connection errors in the measured intervals (counts lines only).
    pub errors: Option<u64>,
}

impl RunFigures {
    /// The figures of one log: its histogram lines and its comments and counts.
    pub fn from_log(
        label: &str,
        intervals: &[LoggedInterval],
        notes: &LogNotes,
    ) -> Result<RunFigures, String> {
        let t0 = intervals
            .iter()
            .map(|i| i.start)
            .chain(notes.counts.iter().map(|c| c.start))
            .fold(f64::INFINITY, f64::min);
        let t0 = if t0.is_finite() { t0 } else { 0.0 };
        // Warm-up seconds, by whole second of absolute time (as `merge` aligns them).
        let warm: Vec<(f64, f64)> = notes
            .counts
            .iter()
            .filter(|c| c.counts.warmup)
            .map(|c| (c.start, c.start + c.duration))
            .collect();
        let in_warmup = |start: f64| warm.iter().any(|(a, b)| start >= *a && start < *b);

        let mut per_tag: BTreeMap<(usize, String), TagFigures> = BTreeMap::new();
        let mut measured: BTreeMap<i64, f64> = BTreeMap::new();
        for interval in intervals {
            let histogram = interval.histogram()?;
            let entry = per_tag
                .entry((tag_rank(&interval.tag), interval.tag.clone()))
                .or_insert_with(|| TagFigures {
                    tag: interval.tag.clone(),
                    total: new_histogram(),
                    over_time: Vec::new(),
                });
            if !in_warmup(interval.start) {
                entry
                    .total
                    .add(&histogram)
                    .map_err(|e| format!("adding up {}: {e:?}", interval.tag))?;
                let slot = measured.entry(interval.start.floor() as i64).or_default();
                *slot = slot.max(interval.duration);
            }
            if !histogram.is_empty() {
                entry.over_time.push(IntervalLatency {
                    t: interval.start + interval.duration - t0,
                    p50: histogram.value_at_quantile(0.5),
                    p99: histogram.value_at_quantile(0.99),
                    max: histogram.max(),
                });
            }
        }
        let mut tags: Vec<TagFigures> = per_tag.into_values().collect();
        for tag in &mut tags {
            tag.over_time.sort_by(|a, b| a.t.total_cmp(&b.t));
        }

        let (throughput, throughput_source) = if notes.counts.is_empty() {
            throughput_from_histograms(intervals, t0)
        } else {
            let mut points: Vec<IntervalThroughput> = notes
                .counts
                .iter()
                .map(|c| {
                    let per_sec = |n: u64| n as f64 / c.duration.max(1e-9);
                    IntervalThroughput {
                        t: c.start + c.duration - t0,
                        accepted: per_sec(c.counts.accepted),
                        started: Some(per_sec(c.counts.started)),
                        failed: Some(per_sec(c.counts.failed + c.counts.errors)),
                    }
                })
                .collect();
            points.sort_by(|a, b| a.t.total_cmp(&b.t));
            // The intervals after the last one that started a message only drain replies (a
            // run's last second is cut short): as throughput they would read as a collapse.
            let last_sending = points
                .iter()
                .rposition(|p| p.started.is_some_and(|s| s > 0.0));
            points.truncate(last_sending.map_or(points.len(), |i| i + 1));
            (points, ThroughputSource::Counts)
        };
        let measured_counts = notes.counts.iter().filter(|c| !c.counts.warmup);
        let (accepted, errors) = if notes.counts.is_empty() {
            (None, None)
        } else {
            let (a, e) = measured_counts.fold((0, 0), |(a, e), c| {
                (a + c.counts.accepted, e + c.counts.failed + c.counts.errors)
            });
            (Some(a), Some(e))
        };
        // With counts, the measured time is the sending intervals after the warm-up (as a
        // run measures it: the drain after the last send is not time the load ran).
        let last_sending_end = notes
            .counts
            .iter()
            .filter(|c| c.counts.started > 0)
            .map(|c| c.start + c.duration)
            .fold(f64::NEG_INFINITY, f64::max);
        let measured_seconds = if notes.counts.is_empty() {
            measured.values().sum()
        } else {
            notes
                .counts
                .iter()
                .filter(|c| !c.counts.warmup && c.start < last_sending_end)
                .map(|c| c.duration)
                .sum()
        };
        Ok(RunFigures {
            label: label.to_string(),
            description: notes.comments.first().cloned(),
            warnings: notes
                .comments
                .iter()
                .filter(|c| c.starts_with(super::connections::WARNING_PREFIX))
                .cloned()
                .collect(),
            tags,
            throughput,
            throughput_source,
            warmup: merge_spans(warm.iter().map(|(a, b)| (a - t0, b - t0)).collect()),
            measured_seconds,
            accepted,
            errors,
        })
    }

    /// The figures of `tag`, if the log has it.
    pub fn tag(&self, tag: &str) -> Option<&TagFigures> {
        self.tags.iter().find(|t| t.tag == tag)
    }

    /// Whether the run was open loop (it has the corrected histogram).
    pub fn open_loop(&self) -> bool {
        self.tag("message_corrected")
            .is_some_and(|t| !t.total.is_empty())
    }
}

/// Throughput from histogram value counts: the `message` tag (messages finished), else
/// `eod` and `bdat` added (messages whose content was answered).
fn throughput_from_histograms(
    intervals: &[LoggedInterval],
    t0: f64,
) -> (Vec<IntervalThroughput>, ThroughputSource) {
    let has = |tag: &str| intervals.iter().any(|i| i.tag == tag);
    let (tags, source): (&[&str], _) = if has("message") {
        (&["message"], ThroughputSource::Histogram("message"))
    } else if has("eod") || has("bdat") {
        (&["eod", "bdat"], ThroughputSource::Histogram("eod"))
    } else {
        return (Vec::new(), ThroughputSource::None);
    };
    // (end time in ms, to key on) -> (length, values)
    let mut per_interval: BTreeMap<i64, (f64, f64, u64)> = BTreeMap::new();
    for interval in intervals.iter().filter(|i| tags.contains(&i.tag.as_str())) {
        let Ok(h) = interval.histogram() else {
            continue;
        };
        let end = interval.start + interval.duration - t0;
        let entry = per_interval
            .entry((end * 1000.0).round() as i64)
            .or_insert((end, interval.duration, 0));
        entry.2 += h.len();
    }
    let points = per_interval
        .into_values()
        .map(|(t, duration, n)| IntervalThroughput {
            t,
            accepted: n as f64 / duration.max(1e-9),
            started: None,
            failed: None,
        })
        .collect();
    (points, source)
}

/// Adjacent or overlapping spans joined, in order.
fn merge_spans(mut spans: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 + 1e-6 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The order tags are shown in: stages in protocol order, then `message`,
/// `message_corrected`, then any other tag.
pub fn tag_rank(tag: &str) -> usize {
    match Stage::ALL.iter().position(|s| s.name() == tag) {
        Some(i) => i,
        None => match tag {
            "message" => 100,
            "message_corrected" => 101,
            _ => 200,
        },
    }
}

/// A histogram's percentile spectrum as `(1/(1-p), milliseconds)` points, p from 0 up to
/// the last value: the x axis of HdrHistogram's plotter, on which each decade to the right
/// is one more nine (90%, 99%, 99.9%, ...). The largest value is placed at x = count
/// (p = 1 - 1/count), the finest resolution `count` values give.
pub fn spectrum(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    if h.is_empty() {
        return points;
    }
    let top = (h.len() as f64).max(1.0);
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        let q = v.quantile_iterated_to();
        if q >= 1.0 {
            break;
        }
        let x = (1.0 / (1.0 - q)).min(top);
        points.push((x, h.highest_equivalent(v.value_iterated_to()) as f64 / 1e6));
    }
    points.push((top, h.max() as f64 / 1e6));
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::interval_log::{
        encode_histogram, IntervalCounts, LoggedCounts, LoggedInterval,
    };

    fn interval(start: f64, tag: &str, values: &[u64]) -> LoggedInterval {
        let mut h = new_histogram();
        for v in values {
            h.record(*v).unwrap();
        }
        LoggedInterval {
            start,
            duration: 1.0,
            tag: tag.into(),
            encoded: encode_histogram(&h),
        }
    }

    #[test]
    fn the_spectrum_rises_to_the_max_at_x_equal_to_the_count() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1_000_000).unwrap();
        }
        let points = spectrum(&h);
        assert_eq!(points[0].0, 1.0);
        let last = *points.last().unwrap();
        assert_eq!(last.0, 1000.0);
        assert!((last.1 - 1000.0).abs() < 1.0, "{last:?}");
        // x grows and so does latency; x = 100 (p99) is near 990 ms.
        assert!(points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let p99 = points.iter().find(|p| p.0 >= 100.0).unwrap();
        assert!((p99.1 - 990.0).abs() < 10.0, "{p99:?}");
        assert!(spectrum(&new_histogram()).is_empty());
    }

    #[test]
    fn figures_from_a_log_with_counts_leave_warmup_out_of_the_totals() {
        let intervals = [
            interval(100.0, "eod", &[1_000_000, 2_000_000]),
            interval(100.0, "message", &[3_000_000, 3_000_000]),
            interval(101.0, "eod", &[5_000_000]),
            interval(101.0, "message_corrected", &[6_000_000]),
            interval(101.0, "mail", &[1_000]),
        ];
        let count = |start: f64, warmup: bool, accepted: u64| LoggedCounts {
            start,
            duration: 1.0,
            counts: IntervalCounts {
                warmup,
                started: accepted + 1,
                accepted,
                failed: 1,
                errors: 0,
                bytes: 0,
            },
        };
        let mut drain = count(102.0, false, 1);
        drain.counts.started = 0;
        let notes = LogNotes {
            comments: vec!["smtp-loadgen -> x".into()],
            counts: vec![count(100.0, true, 2), count(101.0, false, 1), drain],
        };
        let f = RunFigures::from_log("run", &intervals, &notes).unwrap();
        let tags: Vec<&str> = f.tags.iter().map(|t| t.tag.as_str()).collect();
        assert_eq!(tags, ["mail", "eod", "message", "message_corrected"]);
        assert_eq!(f.tag("eod").unwrap().total.len(), 1);
        assert_eq!(f.tag("eod").unwrap().over_time.len(), 2);
        assert_eq!(f.tag("eod").unwrap().over_time[1].t, 2.0);
        assert!(f.tag("message").unwrap().total.is_empty());
        assert!(f.open_loop());
        assert_eq!(f.warmup, [(0.0, 1.0)]);
        assert_eq!(f.measured_seconds, 1.0);
        assert_eq!((f.accepted, f.errors), (Some(2), Some(2)));
        assert_eq!(f.throughput_source, ThroughputSource::Counts);
        // The drain-only last interval is left out of the throughput series.
        assert_eq!(f.throughput.len(), 2);
        assert_eq!(f.throughput[0].accepted, 2.0);
        assert_eq!(f.throughput[0].started, Some(3.0));
        assert_eq!(f.description.as_deref(), Some("smtp-loadgen -> x"));
    }

    #[test]
    fn logs_without_counts_take_throughput_from_histograms() {
        let intervals = [
            interval(10.0, "eod", &[1_000, 2_000]),
            interval(10.0, "message", &[3_000, 3_000, 4_000]),
            interval(11.0, "message", &[3_000]),
        ];
        let f = RunFigures::from_log("old", &intervals, &LogNotes::default()).unwrap();
        assert_eq!(f.throughput_source, ThroughputSource::Histogram("message"));
        let accepted: Vec<f64> = f.throughput.iter().map(|p| p.accepted).collect();
        assert_eq!(accepted, [3.0, 1.0]);
        assert_eq!(f.throughput[0].started, None);
        assert!(f.warmup.is_empty());
        assert_eq!(f.tag("eod").unwrap().total.len(), 2);
        assert_eq!(f.measured_seconds, 2.0);
        assert!(!f.open_loop());
        let eod_only = [
            interval(10.0, "eod", &[1_000]),
            interval(10.0, "bdat", &[1]),
        ];
        let f = RunFigures::from_log("old", &eod_only, &LogNotes::default()).unwrap();
        assert_eq!(f.throughput[0].accepted, 2.0);
    }
}
