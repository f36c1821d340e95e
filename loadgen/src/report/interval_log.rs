//! HdrHistogram interval logs (`--hdr-log`, `report`, `merge`) and the histogram encoding
//! they share with `--json`.
//!
//! What it does: encode a histogram as V2-deflate base64 and back; turn a run's finished
//! seconds into log entries, one per (second, tag) with a tag per stage; write a log that
//! Java's HistogramLogProcessor reads (StartTime and BaseTime headers, relative timestamps);
//! read any HdrHistogram tool's log back with absolute times; merge logs from several load
//! hosts on whole seconds of absolute time; add a log up per tag for `report`.
//!
//! What it does not do: open files (the caller passes bytes or a writer), render the
//! `report` table (`render`), or keep decoded histograms around: a [`LoggedInterval`] holds
//! its histogram encoded and decodes it only when asked, so a long log never has all its
//! histograms in memory at once.

use super::results::Results;
use crate::record::new_histogram;
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, SystemTime};

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

/// A whole log's measurements for one tag (a row of the `report` table).
#[derive(Debug)]
pub struct TagTotal {
    /// The tag (empty for untagged intervals).
    pub tag: String,
    /// Every interval of the tag added up.
    pub histogram: Histogram<u64>,
    /// How many intervals carried the tag.
    pub intervals: usize,
    /// Seconds since the Unix epoch when the tag's first interval began.
    pub first_start: f64,
    /// Seconds since the Unix epoch when the tag's last interval ended.
    pub last_end: f64,
}

/// `report`: each tag's intervals added up, in tag order.
pub fn totals_per_tag(intervals: &[LoggedInterval]) -> Result<Vec<TagTotal>, String> {
    let mut per_tag: BTreeMap<&str, TagTotal> = BTreeMap::new();
    for interval in intervals {
        let total = per_tag
            .entry(interval.tag.as_str())
            .or_insert_with(|| TagTotal {
                tag: interval.tag.clone(),
                histogram: new_histogram(),
                intervals: 0,
                first_start: f64::MAX,
                last_end: f64::MIN,
            });
        total
            .histogram
            .add(&interval.histogram()?)
            .map_err(|e| format!("adding up {}: {e:?}", interval.tag))?;
        total.intervals += 1;
        total.first_start = total.first_start.min(interval.start);
        total.last_end = total.last_end.max(interval.start + interval.duration);
    }
    Ok(per_tag.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let totals = totals_per_tag(&merged).unwrap();
        assert_eq!(totals.len(), 2);
        assert_eq!(totals[0].tag, "eod");
        assert_eq!(totals[0].histogram.len(), 4000);
        assert_eq!(totals[0].intervals, 2);
        assert_eq!(totals[0].last_end - totals[0].first_start, 2.0);
    }

    #[test]
    fn broken_histograms_are_errors_not_panics() {
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("aGVsbG8=").is_err());
        let broken = LoggedInterval {
            start: 0.0,
            duration: 1.0,
            tag: "eod".into(),
            encoded: "aGVsbG8=".into(),
        };
        assert!(merge_logs(&[vec![broken.clone()]]).is_err());
        assert!(totals_per_tag(&[broken]).is_err());
    }
}
