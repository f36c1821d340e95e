//! What the charts and the `report` tables show, computed from one interval log: per tag
//! the whole run's histogram and its p50/p99/max per interval, and the throughput per
//! interval.
//!
//! What it does: decode each interval's histogram once, add it to its tag's total unless the
//! warm-up rule ([`Warmup`]) leaves it out, and keep the interval's p50, p99 and max; take
//! throughput from the log's counts lines, or, in logs without them (older smtp-loadgen,
//! other tools), from the number of values in each interval's `message` histogram (messages
//! finished, accepted or not); find tags whose histograms are identical (mail, rcpt and data
//! of one pipelined group), so charts draw them once; and turn a histogram into its
//! percentile spectrum, the points HdrHistogram's plotter draws. `report`'s text table, its
//! HTML tables and its charts all come from one [`RunFigures`], so they agree.
//!
//! What it does not do: draw (`chart`), choose which charts a report has (`charts`), or
//! read files (the caller passes a parsed log).

use super::interval_log::{LogNotes, LoggedInterval};
use super::provenance::Provenance;
use super::warmup::Warmup;
use crate::drive::client::Stage;
use crate::drive::record::new_histogram;
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
    /// Every interval after the warm-up added up (the drain included: its replies answer
    /// messages sent in the measured time).
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
    /// What made the run (`None`: the log does not say).
    pub provenance: Option<Provenance>,
    /// The warm-up rule applied.
    pub warmup_rule: Warmup,
    /// Seconds from the run's start to the first measured interval.
    pub measured_from: f64,
    /// Per tag, in stage order, then `message`, `message_corrected`, then others by name.
    pub tags: Vec<TagFigures>,
    /// Per interval, in time order.
    pub throughput: Vec<IntervalThroughput>,
    /// Where `throughput` comes from.
    pub throughput_source: ThroughputSource,
    /// The warm-up, shaded in charts over time: `(from, to)` seconds from the run's start.
    pub warmup: Vec<(f64, f64)>,
    /// The drain, shaded in charts over time: `(from, to)` seconds from the run's start, the
    /// intervals after the last one that started a message (they only carry replies to
    /// earlier sends, and QUIT). Known only from a log's counts lines (empty otherwise).
    pub drain: Vec<(f64, f64)>,
    /// Seconds of load (the measured time): the intervals after the warm-up, without the
    /// drain (as the run's own summary measures it). A log without counts lines: every
    /// interval after the warm-up.
    pub measured_seconds: f64,
    /// Messages accepted in the measured intervals (counts lines only).
    pub accepted: Option<u64>,
    /// Failed messages plus connection errors in the measured intervals (counts lines only).
    pub errors: Option<u64>,
}

impl RunFigures {
    /// The figures of one log: its histogram lines and its comments and counts, with the
    /// warm-up rule `warmup` (see [`Warmup::of_log`]).
    pub fn from_log(
        label: &str,
        intervals: &[LoggedInterval],
        notes: &LogNotes,
        warmup: Warmup,
    ) -> Result<RunFigures, String> {
        let t0 = warmup.origin;
        let starts: Vec<f64> = intervals
            .iter()
            .map(|i| i.start)
            .chain(notes.counts.iter().map(|c| c.start))
            .collect();
        let measured_from = warmup.measured_from(starts.iter().copied());

        // The drain: with counts, everything after the end of the last interval that started
        // a message (the run's --duration ends there).
        let last_sending_end = notes
            .counts
            .iter()
            .filter(|c| c.counts.started > 0)
            .map(|c| c.start + c.duration)
            .fold(f64::NEG_INFINITY, f64::max);
        let log_end = intervals
            .iter()
            .map(|i| i.start + i.duration)
            .chain(notes.counts.iter().map(|c| c.start + c.duration))
            .fold(f64::NEG_INFINITY, f64::max);
        let drain = if last_sending_end.is_finite() && log_end > last_sending_end + 1e-9 {
            vec![(last_sending_end - t0, log_end - t0)]
        } else {
            Vec::new()
        };

        let mut per_tag: BTreeMap<(usize, String), TagFigures> = BTreeMap::new();
        let mut measured: BTreeMap<i64, f64> = BTreeMap::new();
        for interval in intervals {
            let histogram = interval.histogram()?;
            let key = (tag_rank(&interval.tag), interval.tag.clone());
            let entry = per_tag.entry(key.clone()).or_insert_with(|| TagFigures {
                tag: interval.tag.clone(),
                total: new_histogram(),
                over_time: Vec::new(),
            });
            if !warmup.excludes(interval.start) {
                entry.total.add(&histogram).map_err(|e| {
                    format!(
                        "adding up {}: {}",
                        super::quoted(&interval.tag),
                        super::codec::addition_error(&e)
                    )
                })?;
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
            // The drain's points stay: shaded as the drain, they do not read as a collapse.
            points.sort_by(|a, b| a.t.total_cmp(&b.t));
            (points, ThroughputSource::Counts)
        };
        let measured_counts = notes.counts.iter().filter(|c| !warmup.excludes(c.start));
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
        let measured_seconds = if notes.counts.is_empty() {
            measured.values().sum()
        } else {
            notes
                .counts
                .iter()
                .filter(|c| !warmup.excludes(c.start) && c.start < last_sending_end)
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
            provenance: notes.provenance.clone(),
            warmup_rule: warmup,
            measured_from,
            tags,
            throughput,
            throughput_source,
            warmup: if warmup.seconds > 0.0 {
                vec![(0.0, measured_from)]
            } else {
                Vec::new()
            },
            drain,
            measured_seconds,
            accepted,
            errors,
        })
    }

    /// The sentence that states the warm-up rule for this run.
    pub fn warmup_statement(&self) -> String {
        self.warmup_rule.statement(self.measured_from)
    }

    /// The sentence that states the measured time and the drain rule for this run, the same
    /// figures as the HTML's runs table: `measured 10 s (drain after the last send: 1.0 s,
    /// 10.0 s to 11.0 s, not measured time; its replies are counted): accepted 4000 (400.0
    /// msgs/s), failed + errors 0`.
    pub fn measured_statement(&self) -> String {
        let mut out = format!("measured {}", seconds(self.measured_seconds));
        match self.drain.first() {
            Some((from, to)) => out.push_str(&format!(
                " (drain after the last send: {} from {from:.1} s to {to:.1} s, not measured \
                 time; its replies are counted)",
                seconds(to - from)
            )),
            None if self.accepted.is_none() => {
                out.push_str(" (every interval after the warm-up: the log has no message counts)")
            }
            None => {}
        }
        if let (Some(accepted), Some(errors)) = (self.accepted, self.errors) {
            out.push_str(&format!(
                ": accepted {accepted} ({:.1} msgs/s), failed + errors {errors}",
                accepted as f64 / self.measured_seconds.max(1e-9)
            ));
        }
        out
    }

    /// The tags with intervals only inside the warm-up (no row in the tables), as texts
    /// name them ([`tag_title`]).
    pub fn warmup_only_tags(&self) -> Vec<&str> {
        self.tags
            .iter()
            .filter(|t| t.total.is_empty() && !t.over_time.is_empty())
            .map(|t| tag_title(&t.tag))
            .collect()
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

/// Seconds as every report states them (text and HTML): `10`, `0.5`.
pub fn seconds_figure(s: f64) -> String {
    if (s - s.round()).abs() < 1e-6 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

/// [`seconds_figure`] with its unit: `10 s`.
fn seconds(s: f64) -> String {
    format!("{} s", seconds_figure(s))
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

/// A tag as every text names it (tables, titles, legends), as the run's summary does:
/// `message corrected` and `send lateness` in words (their JSON keys, `--slo` names, chart
/// ids and log tags stay `message_corrected`, `send_lateness`); `(untagged)` for other
/// tools' untagged intervals; any other tag as it is.
pub fn tag_title(tag: &str) -> &str {
    match tag {
        "" => "(untagged)",
        "message_corrected" => "message corrected",
        "send_lateness" => "send lateness",
        other => other,
    }
}

/// The order tags are shown in, in every table, chart and JSON list: stages in protocol
/// order ([`Stage::ALL`]), then `message`, `message_corrected`, `send_lateness`, then any
/// other tag (by name, among themselves).
pub fn tag_rank(tag: &str) -> usize {
    match Stage::ALL.iter().position(|s| s.name() == tag) {
        Some(i) => i,
        None => match tag {
            "message" => 100,
            "message_corrected" => 101,
            "send_lateness" => 102,
            _ => 200,
        },
    }
}

/// Whether two histograms are identical: the same count of values in every bucket (at
/// HdrHistogram's 3 significant digits), hence the same value at every percentile and the
/// same max. Mail, rcpt and data of one pipelined group are: their replies come in one read
/// and are timed from one write.
pub fn identical(a: &Histogram<u64>, b: &Histogram<u64>) -> bool {
    a.len() == b.len()
        && a.max() == b.max()
        && a.iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .eq(b
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value())))
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
    use crate::report::codec::encode_histogram;
    use crate::report::interval_log::{IntervalCounts, LoggedCounts, LoggedInterval};
    use crate::report::warmup::Source;

    fn none(origin: f64) -> Warmup {
        Warmup::new(0.0, origin, Source::None)
    }

    #[test]
    fn stage_indices_follow_the_protocol_order() {
        for (i, stage) in Stage::ALL.iter().enumerate() {
            assert_eq!(stage.index(), i, "{}", stage.name());
        }
        let mut tags = [
            "send_lateness",
            "quit",
            "message",
            "zz",
            "eod",
            "tls",
            "connect",
        ];
        tags.sort_by_key(|t| tag_rank(t));
        assert_eq!(
            tags,
            [
                "connect",
                "tls",
                "eod",
                "quit",
                "message",
                "send_lateness",
                "zz"
            ]
        );
    }

    #[test]
    fn identical_means_the_same_count_in_every_bucket() {
        let of = |values: &[u64]| {
            let mut h = new_histogram();
            for v in values {
                h.record(*v).unwrap();
            }
            h
        };
        assert!(identical(&of(&[1_000, 2_000]), &of(&[2_000, 1_000])));
        // 100 000 and 100 010 share a bucket at 3 significant digits (64 ns wide there);
        // 1000 and 1010 do not (1 ns wide).
        assert!(identical(&of(&[100_000]), &of(&[100_010])));
        assert!(!identical(&of(&[100_000]), &of(&[100_040])));
        assert!(!identical(&of(&[1_000]), &of(&[1_010])));
        assert!(!identical(&of(&[1_000]), &of(&[1_000, 1_000])));
        assert!(identical(&new_histogram(), &new_histogram()));
    }

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
            start_time: None,
            provenance: None,
        };
        // An older log: no provenance, its warm-up from the counts lines' flags.
        let starts: Vec<f64> = intervals.iter().map(|i| i.start).collect();
        let rule = Warmup::of_log(&notes, &starts, None);
        assert_eq!((rule.seconds, rule.origin), (1.0, 100.0));
        assert_eq!(rule.source, Source::Counts);
        let f = RunFigures::from_log("run", &intervals, &notes, rule).unwrap();
        assert_eq!(
            f.warmup_statement(),
            "warm-up 1 s excluded: intervals from 1.0 s (as the log's counts lines flag it)"
        );
        // `message` has an interval only inside the warm-up: no row, but named.
        assert_eq!(f.warmup_only_tags(), ["message"]);
        // report --warmup 0: every interval counted, the same log.
        let all = RunFigures::from_log(
            "run",
            &intervals,
            &notes,
            Warmup::of_log(&notes, &starts, Some(0.0)),
        )
        .unwrap();
        assert_eq!(all.tag("eod").unwrap().total.len(), 3);
        assert_eq!(all.accepted, Some(4));
        assert!(all.warmup.is_empty());
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
        // N1: the drain-only last interval (102: nothing started) is not measured time, and
        // is drawn, shaded as the drain; its replies are counted.
        assert_eq!(f.drain, [(2.0, 3.0)]);
        assert_eq!(
            f.measured_statement(),
            "measured 1 s (drain after the last send: 1 s from 2.0 s to 3.0 s, not measured \
             time; its replies are counted): accepted 2 (2.0 msgs/s), failed + errors 2"
        );
        assert_eq!(f.throughput.len(), 3);
        assert_eq!(f.throughput[2].started, Some(0.0));
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
        let f = RunFigures::from_log("old", &intervals, &LogNotes::default(), none(10.0)).unwrap();
        assert_eq!(f.throughput_source, ThroughputSource::Histogram("message"));
        let accepted: Vec<f64> = f.throughput.iter().map(|p| p.accepted).collect();
        assert_eq!(accepted, [3.0, 1.0]);
        assert_eq!(f.throughput[0].started, None);
        assert!(f.warmup.is_empty());
        assert_eq!(f.tag("eod").unwrap().total.len(), 2);
        assert_eq!(f.measured_seconds, 2.0);
        assert!(f.drain.is_empty());
        assert_eq!(
            f.measured_statement(),
            "measured 2 s (every interval after the warm-up: the log has no message counts)"
        );
        assert!(!f.open_loop());
        let eod_only = [
            interval(10.0, "eod", &[1_000]),
            interval(10.0, "bdat", &[1]),
        ];
        let f = RunFigures::from_log("old", &eod_only, &LogNotes::default(), none(10.0)).unwrap();
        assert_eq!(f.throughput[0].accepted, 2.0);
    }
}
