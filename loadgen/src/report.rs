//! Results: merging thread reports, the human summary, JSON, HdrHistogram interval logs, SLOs.
//!
//! What it does: collect every thread's one-second [`Recorder`]s into totals (warm-up excluded)
//! and a per-second series; print the summary; write `--json` (with each stage's histogram as
//! base64 V2-deflate) and `--hdr-log` (an interval log tagged per stage that Java's
//! HistogramLogProcessor reads); read logs back for `report` and `merge`; check `--slo`s.
//!
//! What it does not do: measure (the engine does).

use crate::client::Stage;
use crate::record::{new_histogram, ErrorKind, Recorder};
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::time::{Duration, SystemTime};

/// Percentiles shown everywhere.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
];

/// One finished second of a run (all threads merged): the counts and p99s the series and the
/// progress line show, and each non-empty histogram encoded for the interval log. Kept
/// compact on purpose: a run of hours keeps one of these per second.
#[derive(Debug, Clone)]
pub struct IntervalSummary {
    /// Whether the interval is (partly) inside the warm-up.
    pub warmup: bool,
    /// Messages started.
    pub started: u64,
    /// Messages accepted.
    pub accepted: u64,
    /// Messages that failed.
    pub failed: u64,
    /// Bytes of accepted messages.
    pub bytes: u64,
    /// Connection-level errors.
    pub errors: u64,
    /// End-of-data p99 in nanoseconds.
    pub eod_p99: u64,
    /// BDAT LAST p99 in nanoseconds.
    pub bdat_p99: u64,
    /// Message service time p99 in nanoseconds.
    pub message_p99: u64,
    /// `(tag, V2-deflate base64)` of every non-empty histogram, for `--hdr-log`.
    pub histograms: Vec<(&'static str, String)>,
}

impl IntervalSummary {
    fn of(warmup: bool, r: &Recorder) -> IntervalSummary {
        let named = Stage::ALL.iter().map(|s| (s.name(), r.stage(*s))).chain([
            ("message", &r.message),
            ("message_corrected", &r.message_corrected),
        ]);
        IntervalSummary {
            warmup,
            started: r.started,
            accepted: r.accepted,
            failed: r.failed,
            bytes: r.accepted_bytes,
            errors: r.error_count(),
            eod_p99: r.stage(Stage::Eod).value_at_percentile(99.0),
            bdat_p99: r.stage(Stage::Bdat).value_at_percentile(99.0),
            message_p99: r.message.value_at_percentile(99.0),
            histograms: named
                .filter(|(_, h)| !h.is_empty())
                .map(|(tag, h)| (tag, encode_histogram(h)))
                .collect(),
        }
    }
}

/// The merged results of a run.
#[derive(Debug)]
pub struct Results {
    /// Everything after the warm-up.
    pub total: Recorder,
    /// Finished seconds (every thread has reported them), warm-up included and flagged.
    pub intervals: BTreeMap<u64, IntervalSummary>,
    /// Seconds some thread may still report, merged so far.
    open: BTreeMap<u64, (bool, Recorder)>,
    /// Per thread: the last interval it reported (`None`: none yet; `Some(u64::MAX)`: done).
    reported: Vec<Option<u64>>,
    /// Measured time after the warm-up.
    pub measured: Duration,
    /// Open-loop slots that were due but never sent.
    pub backlog: u64,
}

impl Results {
    /// Empty results for a run of `threads` threads.
    pub fn new(threads: usize) -> Results {
        Results {
            total: Recorder::new(),
            intervals: BTreeMap::new(),
            open: BTreeMap::new(),
            reported: vec![None; threads],
            measured: Duration::ZERO,
            backlog: 0,
        }
    }

    /// Adds one thread's interval (`last`: the thread's final report). Returns the seconds
    /// that this report finished, oldest first (each is now in `intervals`).
    pub fn add(
        &mut self,
        thread: usize,
        interval: u64,
        warmup: bool,
        recorder: &Recorder,
        last: bool,
    ) -> Vec<u64> {
        if !warmup {
            self.total.merge(recorder);
        }
        let entry = self
            .open
            .entry(interval)
            .or_insert_with(|| (warmup, Recorder::new()));
        entry.0 |= warmup;
        entry.1.merge(recorder);
        if let Some(slot) = self.reported.get_mut(thread) {
            *slot = Some(if last { u64::MAX } else { interval });
        }
        // Threads report their intervals in increasing order, so a second is finished once
        // every thread has reported it or a later one.
        let done_below = self
            .reported
            .iter()
            .map(|r| r.map_or(0, |i| i.saturating_add(1)))
            .min()
            .unwrap_or(u64::MAX);
        let finished: Vec<u64> = self.open.range(..done_below).map(|(k, _)| *k).collect();
        for second in &finished {
            if let Some((warm, recorder)) = self.open.remove(second) {
                self.intervals
                    .insert(*second, IntervalSummary::of(warm, &recorder));
            }
        }
        finished
    }

    /// Accepted messages per second over the measured time.
    pub fn msgs_per_sec(&self) -> f64 {
        self.total.accepted as f64 / self.measured.as_secs_f64().max(1e-9)
    }
}

fn millis(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

/// One table row: count and percentiles in milliseconds.
fn latency_row(name: &str, h: &Histogram<u64>) -> String {
    let mut row = format!("{name:<18}{:>10}", h.len());
    for (_, q) in PERCENTILES {
        let _ = write!(row, "{:>10.3}", millis(h.value_at_percentile(q)));
    }
    let _ = write!(row, "{:>10.3}", millis(h.max()));
    row
}

/// The latency table of a recorder (stages with data only).
pub fn latency_table(recorder: &Recorder, open_loop: bool) -> String {
    let mut table = format!("{:<18}{:>10}", "latency (ms)", "count");
    for (name, _) in PERCENTILES {
        let _ = write!(table, "{name:>10}");
    }
    let _ = writeln!(table, "{:>10}", "max");
    for stage in Stage::ALL {
        let h = recorder.stage(stage);
        if !h.is_empty() {
            let _ = writeln!(table, "{}", latency_row(stage.name(), h));
        }
    }
    if !recorder.message.is_empty() {
        let _ = writeln!(table, "{}", latency_row("message", &recorder.message));
    }
    if open_loop {
        let _ = writeln!(
            table,
            "{}",
            latency_row("message corrected", &recorder.message_corrected)
        );
        let _ = writeln!(
            table,
            "{}",
            latency_row("send lateness", &recorder.send_lateness)
        );
    }
    table
}

/// The human summary printed at the end of a run.
pub fn summary(results: &Results, header: &str, target_rate: Option<f64>) -> String {
    let total = &results.total;
    let secs = results.measured.as_secs_f64();
    let mut out = String::new();
    let _ = writeln!(out, "{header}");
    let _ = writeln!(
        out,
        "measured {secs:.2} s: messages started {}, accepted {}, failed {}",
        total.started, total.accepted, total.failed
    );
    let _ = writeln!(
        out,
        "throughput: {:.1} msgs/s, {:.2} MB/s",
        results.msgs_per_sec(),
        total.accepted_bytes as f64 / secs.max(1e-9) / 1e6
    );
    if let Some(rate) = target_rate {
        let achieved = results.msgs_per_sec();
        if achieved < 0.99 * rate || results.backlog > 0 {
            let _ = writeln!(
                out,
                "WARNING: target rate {rate:.1} msgs/s NOT sustained: achieved {achieved:.1} msgs/s \
                 ({:.1}%), {} sends never started, send lateness p99 {:.3} ms",
                100.0 * achieved / rate,
                results.backlog,
                millis(total.send_lateness.value_at_percentile(99.0))
            );
        } else {
            let _ = writeln!(out, "target rate {rate:.1} msgs/s sustained");
        }
    }
    out.push_str(&latency_table(total, target_rate.is_some()));
    let mut codes = String::new();
    for stage in Stage::ALL {
        let line: Vec<String> = total
            .codes
            .iter()
            .filter(|((s, _), _)| *s == stage.index())
            .map(|((_, code), n)| format!("{code}={n}"))
            .collect();
        if !line.is_empty() {
            let _ = write!(codes, " {}[{}]", stage.name(), line.join(" "));
        }
    }
    let _ = writeln!(out, "reply codes:{codes}");
    let errors: Vec<String> = ErrorKind::ALL
        .iter()
        .filter_map(|kind| {
            let n = total.errors.get(kind).copied().unwrap_or(0);
            (n > 0).then(|| format!("{}={n}", kind.name()))
        })
        .collect();
    let _ = writeln!(
        out,
        "errors: {}",
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(" ")
        }
    );
    out
}

/// A histogram serialised as V2 with deflate, base64 (what HdrHistogram logs carry).
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serialising into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads a histogram written by [`encode_histogram`] (or any HdrHistogram implementation).
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("bad base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("bad histogram: {e:?}"))
}

fn percentiles_json(h: &Histogram<u64>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("count".into(), h.len().into());
    for (name, q) in PERCENTILES {
        map.insert(
            format!("{name}_ms"),
            millis(h.value_at_percentile(q)).into(),
        );
    }
    map.insert("max_ms".into(), millis(h.max()).into());
    map.insert("mean_ms".into(), (h.mean() / 1e6).into());
    map.into()
}

/// The `--json` document.
pub fn json(results: &Results, config: serde_json::Value) -> serde_json::Value {
    let total = &results.total;
    let mut stages = serde_json::Map::new();
    let mut histograms = serde_json::Map::new();
    let named: Vec<(&str, &Histogram<u64>)> = Stage::ALL
        .iter()
        .map(|s| (s.name(), total.stage(*s)))
        .chain([
            ("message", &total.message),
            ("message_corrected", &total.message_corrected),
            ("send_lateness", &total.send_lateness),
        ])
        .collect();
    for (name, h) in named {
        if h.is_empty() {
            continue;
        }
        stages.insert(name.into(), percentiles_json(h));
        histograms.insert(name.into(), encode_histogram(h).into());
    }
    let mut codes = serde_json::Map::new();
    for ((stage, code), n) in &total.codes {
        let key = format!("{}:{code}", Stage::ALL[*stage].name());
        codes.insert(key, (*n).into());
    }
    let errors: serde_json::Map<String, serde_json::Value> = total
        .errors
        .iter()
        .map(|(kind, n)| (kind.name().to_string(), (*n).into()))
        .collect();
    let series: Vec<serde_json::Value> = results
        .intervals
        .iter()
        .map(|(second, i)| {
            serde_json::json!({
                "second": second,
                "warmup": i.warmup,
                "started": i.started,
                "accepted": i.accepted,
                "failed": i.failed,
                "bytes": i.bytes,
                "errors": i.errors,
                "eod_p99_ms": millis(i.eod_p99),
                "bdat_p99_ms": millis(i.bdat_p99),
                "message_p99_ms": millis(i.message_p99),
            })
        })
        .collect();
    serde_json::json!({
        "config": config,
        "totals": {
            "measured_seconds": results.measured.as_secs_f64(),
            "started": total.started,
            "accepted": total.accepted,
            "failed": total.failed,
            "bytes": total.accepted_bytes,
            "msgs_per_sec": results.msgs_per_sec(),
            "mb_per_sec": total.accepted_bytes as f64 / results.measured.as_secs_f64().max(1e-9) / 1e6,
            "errors": errors,
            "codes": codes,
            "backlog": results.backlog,
        },
        "latency": stages,
        "histograms_v2_deflate_base64": histograms,
        "series": series,
    })
}

/// One interval histogram from a log.
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    /// Seconds since the Unix epoch when the interval began.
    pub start: f64,
    /// Interval length in seconds.
    pub duration: f64,
    /// The tag (stage name).
    pub tag: String,
    /// The measurements, V2-deflate base64 as in the log (decoded one at a time when used,
    /// so a long log never has all its histograms in memory at once).
    pub encoded: String,
}

impl LoggedInterval {
    /// The histogram.
    pub fn histogram(&self) -> Result<Histogram<u64>, String> {
        decode_histogram(&self.encoded)
    }
}

/// Writes an interval log: one histogram per (interval, tag), timestamps relative to
/// `base` (written as both StartTime and BaseTime, as the Java tools expect).
pub fn write_hlog(
    out: &mut impl io::Write,
    base: SystemTime,
    comment: &str,
    intervals: &[LoggedInterval],
) -> io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment(comment)
        .add_comment("values are nanoseconds; max column in milliseconds")
        .with_start_time(base)
        .with_base_time(base)
        .with_max_value_divisor(1e6);
    let mut writer = builder.begin_log_with(out, &mut serializer)?;
    let base_secs = base
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    for interval in intervals {
        let offset = Duration::from_secs_f64((interval.start - base_secs).max(0.0));
        let histogram = interval.histogram().map_err(io::Error::other)?;
        writer
            .write_histogram(
                &histogram,
                offset,
                Duration::from_secs_f64(interval.duration),
                Tag::new(&interval.tag),
            )
            .map_err(|e| io::Error::other(format!("writing the interval log: {e}")))?;
    }
    Ok(())
}

/// The intervals of a run as log entries (warm-up included: it is logged, not summarised).
pub fn run_intervals(results: &Results, run_start: SystemTime) -> Vec<LoggedInterval> {
    let start = run_start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let mut out = Vec::new();
    for (second, summary) in &results.intervals {
        for (tag, encoded) in &summary.histograms {
            out.push(LoggedInterval {
                start: start + *second as f64,
                duration: 1.0,
                tag: tag.to_string(),
                encoded: encoded.clone(),
            });
        }
    }
    out
}

/// Reads an interval log (ours or any HdrHistogram tool's). Returns the intervals with
/// absolute start times.
pub fn read_hlog(bytes: &[u8]) -> Result<Vec<LoggedInterval>, String> {
    let mut start_time = None;
    let mut base_time = None;
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(bytes) {
        match entry.map_err(|e| format!("unreadable interval log: {e:?}"))? {
            LogEntry::StartTime(t) => start_time = Some(t.as_secs_f64()),
            LogEntry::BaseTime(t) => base_time = Some(t.as_secs_f64()),
            LogEntry::Interval(interval) => {
                let base = base_time.or(start_time).unwrap_or(0.0);
                out.push(LoggedInterval {
                    start: base + interval.start_timestamp().as_secs_f64(),
                    duration: interval.duration().as_secs_f64(),
                    tag: interval
                        .tag()
                        .map_or(String::new(), |t| t.as_str().to_string()),
                    encoded: interval.encoded_histogram().to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// Merges logs from several load hosts: intervals that start in the same whole second (of
/// absolute time) with the same tag are added together.
pub fn merge_logs(logs: &[Vec<LoggedInterval>]) -> Result<Vec<LoggedInterval>, String> {
    let mut merged: BTreeMap<(i64, String), (f64, Histogram<u64>)> = BTreeMap::new();
    for interval in logs.iter().flatten() {
        let second = interval.start.floor() as i64;
        let entry = merged
            .entry((second, interval.tag.clone()))
            .or_insert_with(|| (interval.duration, new_histogram()));
        entry.0 = entry.0.max(interval.duration);
        // Our histograms grow to fit, so values from any other tool's bounds are taken.
        entry
            .1
            .add(&interval.histogram()?)
            .map_err(|e| format!("merging {}: {e:?}", interval.tag))?;
    }
    Ok(merged
        .into_iter()
        .map(|((second, tag), (duration, histogram))| LoggedInterval {
            start: second as f64,
            duration,
            tag,
            encoded: encode_histogram(&histogram),
        })
        .collect())
}

/// `report`: per tag, the whole log's percentiles.
pub fn report_log(intervals: &[LoggedInterval]) -> Result<String, String> {
    let mut per_tag: BTreeMap<&str, (Histogram<u64>, usize, f64, f64)> = BTreeMap::new();
    for interval in intervals {
        let entry = per_tag
            .entry(interval.tag.as_str())
            .or_insert_with(|| (new_histogram(), 0, f64::MAX, f64::MIN));
        entry
            .0
            .add(&interval.histogram()?)
            .map_err(|e| format!("adding up {}: {e:?}", interval.tag))?;
        entry.1 += 1;
        entry.2 = entry.2.min(interval.start);
        entry.3 = entry.3.max(interval.start + interval.duration);
    }
    let mut out = format!("{:<18}{:>10}", "tag (ms)", "count");
    for (name, _) in PERCENTILES {
        let _ = write!(out, "{name:>10}");
    }
    let _ = writeln!(out, "{:>10}{:>11}{:>10}", "max", "intervals", "seconds");
    for (tag, (h, n, first, last)) in &per_tag {
        let name = if tag.is_empty() { "(untagged)" } else { tag };
        let _ = writeln!(out, "{}{n:>11}{:>10.1}", latency_row(name, h), last - first);
    }
    Ok(out)
}

/// A service-level objective: `stage:pNN<duration` or `errors<N%`.
#[derive(Debug, Clone, PartialEq)]
pub enum Slo {
    /// A percentile of a latency histogram must stay below a bound.
    Latency {
        /// The text as given.
        text: String,
        /// `eod`, `mail`, ..., `message`, `message_corrected`.
        histogram: String,
        /// The percentile (0-100), or 100 for `max`.
        percentile: f64,
        /// The bound in nanoseconds.
        bound_nanos: u64,
    },
    /// Failed messages plus connection errors, over messages started, must stay below.
    Errors {
        /// The text as given.
        text: String,
        /// The bound as a fraction (0.001 for `0.1%`), or an absolute count.
        bound: f64,
        /// Whether `bound` is a fraction.
        fraction: bool,
    },
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
            let (number, fraction) = match right.strip_suffix('%') {
                Some(pct) => (pct.trim().parse::<f64>().map_err(|_| bad())? / 100.0, true),
                None => (right.parse::<f64>().map_err(|_| bad())?, false),
            };
            return Ok(Slo::Errors {
                text: text.into(),
                bound: number,
                fraction,
            });
        }
        let (histogram, which) = left.trim().split_once(':').ok_or_else(bad)?;
        let known = Stage::ALL.iter().any(|s| s.name() == histogram)
            || matches!(histogram, "message" | "message_corrected");
        if !known {
            return Err(format!("bad --slo {text:?}: unknown stage {histogram:?}"));
        }
        let percentile = match which {
            "max" => 100.0,
            p => p
                .strip_prefix('p')
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|n| (0.0..=100.0).contains(n))
                .ok_or_else(bad)?,
        };
        let bound = parse_duration(right).map_err(|e| format!("bad --slo {text:?}: {e}"))?;
        Ok(Slo::Latency {
            text: text.into(),
            histogram: histogram.into(),
            percentile,
            bound_nanos: bound.as_nanos() as u64,
        })
    }

    /// Checks the objective against the totals; `Err` describes the breach.
    pub fn check(&self, total: &Recorder) -> Result<String, String> {
        match self {
            Slo::Latency {
                text,
                histogram,
                percentile,
                bound_nanos,
            } => {
                let h = match histogram.as_str() {
                    "message" => &total.message,
                    "message_corrected" => &total.message_corrected,
                    name => total.stage(
                        *Stage::ALL
                            .iter()
                            .find(|s| s.name() == name)
                            .expect("checked at parse"),
                    ),
                };
                let value = if *percentile >= 100.0 {
                    h.max()
                } else {
                    h.value_at_percentile(*percentile)
                };
                let line = format!("{text}: measured {:.3} ms", millis(value));
                if h.is_empty() {
                    Err(format!("{text}: no measurements"))
                } else if value < *bound_nanos {
                    Ok(line)
                } else {
                    Err(line)
                }
            }
            Slo::Errors {
                text,
                bound,
                fraction,
            } => {
                let errors = (total.failed + total.error_count()) as f64;
                let (value, shown) = if *fraction {
                    let v = errors / (total.started.max(1)) as f64;
                    (v, format!("{:.4}%", v * 100.0))
                } else {
                    (errors, format!("{errors}"))
                };
                let line = format!("{text}: measured {shown}");
                if value < *bound {
                    Ok(line)
                } else {
                    Err(line)
                }
            }
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
    fn a_second_is_summarised_once_every_thread_reported_it() {
        let mut results = Results::new(2);
        let mut r = Recorder::new();
        r.accepted = 10;
        r.reply(Stage::Eod, 250, 2_000_000);
        assert!(results.add(0, 0, true, &r, false).is_empty());
        assert!(results.add(0, 1, false, &r, false).is_empty());
        // Thread 1 skipped second 0 (it was busy) and reports second 1: both are done.
        assert_eq!(results.add(1, 1, false, &r, false), vec![0, 1]);
        assert_eq!(results.intervals[&0].accepted, 10);
        assert!(results.intervals[&0].warmup);
        assert_eq!(results.intervals[&1].accepted, 20);
        assert!(results.intervals[&1].eod_p99 >= 1_990_000);
        assert_eq!(results.intervals[&1].histograms[0].0, "eod");
        assert!(results.add(0, 2, false, &r, true).is_empty());
        assert_eq!(results.add(1, 3, false, &r, true), vec![2, 3]);
        // Warm-up seconds stay out of the totals.
        assert_eq!(results.total.accepted, 40);
    }

    /// Deterministic results: two threads, a warm-up second and two measured seconds, every
    /// kind of figure the outputs show.
    fn sample_results() -> Results {
        let mut results = Results::new(2);
        for second in 0..3u64 {
            for thread in 0..2usize {
                let mut r = Recorder::new();
                let base = 1_000 * (second + 1) + thread as u64 * 7;
                for i in 0..50u64 {
                    r.reply(Stage::Greeting, 220, base * 900 + i * 13);
                    r.reply(Stage::Ehlo, 250, base * 800 + i * 17);
                    r.reply(Stage::Mail, 250, base * 300 + i * 19);
                    r.reply(
                        Stage::Rcpt,
                        if i % 10 == 0 { 450 } else { 250 },
                        base * 310 + i,
                    );
                    r.reply(Stage::Data, 354, base * 200 + i * 29);
                    r.reply(Stage::Eod, 250, base * 2_000 + i * 1_000);
                    r.message_done(
                        i % 10 != 0,
                        1024,
                        base * 4_000 + i * 997,
                        Some(base * 5_000),
                    );
                    crate::record::record(&mut r.send_lateness, i * 1_000);
                }
                r.started = 52;
                r.error(ErrorKind::Timeout);
                if thread == 1 {
                    r.error(ErrorKind::Desync);
                    r.reply(Stage::Quit, 221, 120_000);
                }
                results.add(thread, second, second == 0, &r, second == 2);
            }
        }
        results.measured = Duration::from_millis(2_000);
        results.backlog = 3;
        results
    }

    /// Compares `actual` with the file `name` under `src/report/golden/`, or writes it when
    /// `SMTP_LOADGEN_BLESS` is set (after a deliberate format change).
    #[track_caller]
    fn assert_golden(name: &str, actual: &[u8]) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/report/golden")
            .join(name);
        if std::env::var_os("SMTP_LOADGEN_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            expected == actual,
            "{name} changed; expected:\n{}\nactual:\n{}",
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(actual)
        );
    }

    #[test]
    fn output_formats_are_unchanged() {
        let results = sample_results();
        let mut text = summary(&results, "smtp-loadgen -> golden", Some(100.0));
        text.push_str(&summary(&results, "smtp-loadgen -> golden", None));
        for expr in [
            "eod:p99<5ms",
            "eod:p50<1ns",
            "message:p99.9<20ms",
            "message_corrected:max<1s",
            "rcpt:p100<=1ms",
            "quit:p99<1ms",
            "bdat:p99<1ms",
            "errors<1%",
            "errors<10",
            "errors<=2",
        ] {
            let verdict = match Slo::parse(expr, parse_ms_or_ns)
                .unwrap()
                .check(&results.total)
            {
                Ok(line) => format!("SLO ok: {line}\n"),
                Err(line) => format!("SLO BREACHED: {line}\n"),
            };
            text.push_str(&verdict);
        }
        assert_golden("summary.txt", text.as_bytes());

        let config = serde_json::json!({"target": "golden", "rate": 100.0});
        let doc = serde_json::to_string_pretty(&json(&results, config)).unwrap();
        assert_golden("results.json", doc.as_bytes());

        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut log = Vec::new();
        write_hlog(&mut log, base, "golden", &run_intervals(&results, base)).unwrap();
        assert_golden("run.hlog", &log);
        let read = read_hlog(&log).unwrap();
        assert_golden("report.txt", report_log(&read).unwrap().as_bytes());
        let merged = merge_logs(&[read.clone(), read]).unwrap();
        let mut log = Vec::new();
        write_hlog(&mut log, base, "golden merge", &merged).unwrap();
        assert_golden("merged.hlog", &log);
    }

    fn parse_ms_or_ns(s: &str) -> Result<Duration, String> {
        match s.strip_suffix("ms") {
            Some(n) => n.parse().map(Duration::from_millis),
            None => match s.strip_suffix("ns") {
                Some(n) => n.parse().map(Duration::from_nanos),
                None => s
                    .strip_suffix('s')
                    .unwrap_or(s)
                    .parse()
                    .map(Duration::from_secs),
            },
        }
        .map_err(|_| "bad".to_string())
    }

    #[test]
    fn hlog_round_trip_and_merge() {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let intervals = vec![
            LoggedInterval {
                start: 1_700_000_000.0,
                duration: 1.0,
                tag: "eod".into(),
                encoded: encode_histogram(&h),
            },
            LoggedInterval {
                start: 1_700_000_001.0,
                duration: 1.0,
                tag: "eod".into(),
                encoded: encode_histogram(&h),
            },
            LoggedInterval {
                start: 1_700_000_001.0,
                duration: 1.0,
                tag: "mail".into(),
                encoded: encode_histogram(&h),
            },
        ];
        let mut bytes = Vec::new();
        write_hlog(&mut bytes, base, "test", &intervals).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("#[StartTime: 1700000000"), "{text}");
        assert!(text.contains("Tag=eod,"), "{text}");
        let read = read_hlog(&bytes).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[1].start, 1_700_000_001.0);
        assert_eq!(read[2].tag, "mail");
        assert_eq!(read[0].histogram().unwrap(), h);
        // Two hosts' logs, offset by half a second, align on whole seconds.
        let mut other = read.clone();
        for i in &mut other {
            i.start += 0.5;
        }
        let merged = merge_logs(&[read, other]).unwrap();
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[0].histogram().unwrap().len(), 2000);
        let report = report_log(&merged).unwrap();
        assert!(report.contains("eod"), "{report}");
    }
}
