//! HdrHistogram interval logs (`--hdr-log`, `report`, `merge`).
//!
//! What it does: turn a run's finished
//! seconds into log entries, one per (second, tag) with a tag per stage; write a log that
//! Java's HistogramLogProcessor reads (StartTime and BaseTime headers, relative timestamps);
//! read any HdrHistogram tool's log back with absolute times, with its provenance line.
//!
//! Message counts per interval (started, accepted, failed, errors, bytes, warm-up: what the
//! throughput chart needs and a histogram does not hold) travel as comment lines,
//! `#smtp-loadgen-counts: START,LENGTH,started=N,accepted=N,...`, START relative to BaseTime
//! as on the histogram lines. HdrHistogram readers skip comments, so the logs stay readable
//! by every tool; logs without them (older ones, other tools') read as having no counts.
//!
//! What it does not do: open files (the caller passes bytes or a writer), render the
//! `report` table (`render`, from `figures`), or keep decoded histograms around: a [`LoggedInterval`] holds
//! its histogram encoded and decodes it only when asked, so a long log never has all its
//! histograms in memory at once.

use super::codec::{decode_histogram, encode_histogram};
use super::provenance::Provenance;
use super::results::Results;
use super::warmup::{Source, Warmup};
use crate::drive::record::new_histogram;
use hdrhistogram::errors::RecordError;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriter, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::io;
use std::time::{Duration, SystemTime};

impl Warmup {
    /// The warm-up of a log whose intervals start at `starts` (absolute): `flag` (report
    /// `--warmup`, seconds) if given, else what the log records (see the module doc). The
    /// origin is the log's StartTime, else its first interval.
    pub fn of_log(notes: &LogNotes, starts: &[f64], flag: Option<f64>) -> Warmup {
        let origin = notes.start_time.unwrap_or_else(|| {
            let first = starts
                .iter()
                .copied()
                .chain(notes.counts.iter().map(|c| c.start))
                .fold(f64::INFINITY, f64::min);
            if first.is_finite() {
                first
            } else {
                0.0
            }
        });
        if let Some(seconds) = flag {
            return Warmup::new(seconds, origin, Source::Flag);
        }
        if let Some(p) = &notes.provenance {
            return Warmup::new(p.warmup_seconds, origin, Source::Log);
        }
        let flagged_end = notes
            .counts
            .iter()
            .filter(|c| c.counts.warmup)
            .map(|c| c.start + c.duration - origin)
            .fold(f64::NEG_INFINITY, f64::max);
        if flagged_end.is_finite() {
            Warmup::new(flagged_end, origin, Source::Counts)
        } else {
            Warmup::new(0.0, origin, Source::None)
        }
    }
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

/// The comment that starts a counts line.
const COUNTS_PREFIX: &str = "#smtp-loadgen-counts: ";

/// The comment that starts the provenance line: the JSON of [`Provenance::json`].
const PROVENANCE_PREFIX: &str = "#smtp-loadgen-provenance: ";

/// The message counts of one interval (all threads, or all hosts once merged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntervalCounts {
    /// Whether the interval is (partly) inside the warm-up.
    pub warmup: bool,
    /// Messages started.
    pub started: u64,
    /// Messages accepted.
    pub accepted: u64,
    /// Messages that failed.
    pub failed: u64,
    /// Connection-level errors.
    pub errors: u64,
    /// Bytes of accepted messages.
    pub bytes: u64,
}

impl IntervalCounts {
    /// Adds `other` into `self` (warm-up if either is).
    pub fn add(&mut self, other: &IntervalCounts) {
        self.warmup |= other.warmup;
        self.started += other.started;
        self.accepted += other.accepted;
        self.failed += other.failed;
        self.errors += other.errors;
        self.bytes += other.bytes;
    }

    /// The counts as the comment line carries them, after START,LENGTH.
    fn fields(&self) -> String {
        format!(
            "started={},accepted={},failed={},errors={},bytes={},warmup={}",
            self.started,
            self.accepted,
            self.failed,
            self.errors,
            self.bytes,
            u8::from(self.warmup)
        )
    }
}

/// One interval's counts from a log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedCounts {
    /// Seconds since the Unix epoch when the interval began.
    pub start: f64,
    /// Interval length in seconds.
    pub duration: f64,
    /// The counts.
    pub counts: IntervalCounts,
}

/// Writes an interval log: one histogram per (interval, tag), timestamps relative to
/// `base` (written as both StartTime and BaseTime, as the Java tools expect); each
/// interval's `counts` line goes before its histograms. The header comments say what made
/// it (`provenance`: the description, date, version and commit, command line, host, a
/// merge's inputs), its warm-up rule, and carry the provenance as one JSON line that
/// `report` and `merge` read back.
pub fn write_hlog(
    out: &mut impl io::Write,
    base: SystemTime,
    provenance: &Provenance,
    intervals: &[LoggedInterval],
    counts: &[LoggedCounts],
) -> io::Result<()> {
    write_hlog_with(out, base, provenance, &[], intervals, counts)
}

/// [`write_hlog`], with `warnings` (fewer connections than asked for...) as comments right
/// under the description, where `report` and the HTML page find them.
pub fn write_hlog_with(
    out: &mut impl io::Write,
    base: SystemTime,
    provenance: &Provenance,
    warnings: &[String],
    intervals: &[LoggedInterval],
    counts: &[LoggedCounts],
) -> io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    let base_secs = base
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let warmup = Warmup::new(provenance.warmup_seconds, base_secs, Source::Run);
    let from = warmup.measured_from(
        intervals
            .iter()
            .map(|i| i.start)
            .chain(counts.iter().map(|c| c.start)),
    );
    // One line each: a comment cannot hold a line end.
    let one_line = |text: &str| super::printable(text);
    let mut comments = vec![one_line(&provenance.description)];
    comments.extend(warnings.iter().map(|w| one_line(w)));
    comments.extend(provenance.lines().iter().map(|l| one_line(l)));
    comments.push(warmup.statement(from));
    comments.push("values are nanoseconds; max column in milliseconds".into());
    if !counts.is_empty() {
        comments.push(
            "smtp-loadgen-counts lines: interval start and length as on the histogram lines, \
             then the interval's message counts"
                .into(),
        );
    }
    // The writer adds the `#`; serde_json writes the JSON on one line, control characters
    // escaped.
    comments.push(format!("{}{}", &PROVENANCE_PREFIX[1..], provenance.json()));
    for comment in &comments {
        builder.add_comment(comment);
    }
    builder
        .with_start_time(base)
        .with_base_time(base)
        .with_max_value_divisor(1e6);
    let mut writer = builder.begin_log_with(out, &mut serializer)?;
    let mut counts: Vec<&LoggedCounts> = counts.iter().collect();
    counts.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut counts = counts.into_iter().peekable();
    for interval in intervals {
        while let Some(c) = counts.next_if(|c| c.start <= interval.start) {
            write_counts_line(&mut writer, c, base_secs)?;
        }
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
    for c in counts {
        write_counts_line(&mut writer, c, base_secs)?;
    }
    Ok(())
}

/// Writes one `#smtp-loadgen-counts` line, its start relative to `base_secs`.
fn write_counts_line<W: io::Write, S: Serializer>(
    writer: &mut IntervalLogWriter<'_, '_, W, S>,
    c: &LoggedCounts,
    base_secs: f64,
) -> io::Result<()> {
    // The writer adds the `#`.
    writer.write_comment(&format!(
        "{}{:.3},{:.3},{}",
        &COUNTS_PREFIX[1..],
        (c.start - base_secs).max(0.0),
        c.duration,
        c.counts.fields()
    ))
}

/// The counts of a run's finished seconds, as [`run_intervals`] logs their histograms.
pub fn run_counts(results: &Results, run_start: SystemTime) -> Vec<LoggedCounts> {
    let start = run_start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    results
        .intervals
        .iter()
        .map(|(second, summary)| LoggedCounts {
            start: start + *second as f64,
            duration: 1.0,
            counts: IntervalCounts {
                warmup: summary.warmup,
                started: summary.started,
                accepted: summary.accepted,
                failed: summary.failed,
                errors: summary.errors,
                bytes: summary.bytes,
            },
        })
        .collect()
}

/// The header comments, provenance and `#smtp-loadgen-counts` lines of a log, in one pass.
#[derive(Debug, Clone, Default)]
pub struct LogNotes {
    /// The free-text comment lines before the first interval, without the `#` (ours start
    /// with the run's header line).
    pub comments: Vec<String>,
    /// The counts lines, with absolute start times.
    pub counts: Vec<LoggedCounts>,
    /// The log's `#[StartTime]` (else its `#[BaseTime]`), seconds since the epoch.
    pub start_time: Option<f64>,
    /// What made the log (none in older smtp-loadgen logs and other tools' logs).
    pub provenance: Option<Provenance>,
}

/// Reads the comments and counts lines of a log (none in older logs or other tools' logs).
/// A counts line that does not parse is an error naming its line.
pub fn read_notes(bytes: &[u8]) -> Result<LogNotes, String> {
    // A last line without its line end was cut short (a killed run): left out.
    let bytes = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(end) if !bytes.ends_with(b"\n") => &bytes[..=end],
        _ => bytes,
    };
    let text = String::from_utf8_lossy(bytes);
    let mut notes = LogNotes::default();
    let (mut start_time, mut base_time) = (None, None);
    let mut in_header = true;
    let header_time = |line: &str, prefix: &str| -> Option<f64> {
        line.strip_prefix(prefix)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if let Some(t) = header_time(line, "#[StartTime: ") {
            start_time = Some(t);
        } else if let Some(t) = header_time(line, "#[BaseTime: ") {
            base_time = Some(t);
        } else if let Some(rest) = line.strip_prefix(PROVENANCE_PREFIX) {
            let value: serde_json::Value = serde_json::from_str(rest)
                .map_err(|e| format!("line {}: bad provenance line: {e}", number + 1))?;
            notes.provenance = Some(
                Provenance::from_json(&value)
                    .ok_or_else(|| format!("line {}: bad provenance line", number + 1))?,
            );
        } else if let Some(rest) = line.strip_prefix(COUNTS_PREFIX) {
            let base = base_time.or(start_time).unwrap_or(0.0);
            let counts = parse_counts(rest, base).ok_or_else(|| {
                format!(
                    "line {}: bad counts line {}",
                    number + 1,
                    super::quoted(line)
                )
            })?;
            notes.counts.push(counts);
        } else if let Some(comment) = line.strip_prefix('#') {
            if in_header && !comment.starts_with('[') {
                notes.comments.push(comment.to_string());
            }
        } else if !line.is_empty() && !line.starts_with("\"StartTimestamp\"") {
            in_header = false;
        }
    }
    notes.start_time = start_time.or(base_time);
    Ok(notes)
}

/// Parses `START,LENGTH,key=value,...` (unknown keys are skipped, for later additions).
fn parse_counts(text: &str, base: f64) -> Option<LoggedCounts> {
    let mut fields = text.split(',');
    let start: f64 = fields.next()?.trim().parse().ok()?;
    let duration: f64 = fields.next()?.trim().parse().ok()?;
    let mut counts = IntervalCounts::default();
    for field in fields {
        let (key, value) = field.split_once('=')?;
        let value: u64 = value.trim().parse().ok()?;
        match key.trim() {
            "started" => counts.started = value,
            "accepted" => counts.accepted = value,
            "failed" => counts.failed = value,
            "errors" => counts.errors = value,
            "bytes" => counts.bytes = value,
            "warmup" => counts.warmup = value != 0,
            _ => {}
        }
    }
    Some(LoggedCounts {
        start: base + start,
        duration,
        counts,
    })
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

/// The factor that turns a log's values into nanoseconds, from its `#[MaxValueDivisor: D]`
/// header: the max column is `max / D` milliseconds, so values are in units of 1 ms / D and
/// one is `1e6 / D` ns (ours: D = 1e6, values in ns). `None`: the log has no such header
/// (Java's `HistogramLogWriter` writes none; see [`ValueUnit`]).
pub fn value_scale(bytes: &[u8]) -> Option<f64> {
    let text = String::from_utf8_lossy(bytes);
    text.lines().find_map(|line| {
        let rest = line.trim_end().strip_prefix("#[MaxValueDivisor:")?;
        let divisor: f64 = rest.trim_end_matches(']').trim().parse().ok()?;
        (divisor.is_finite() && divisor > 0.0).then(|| 1e6 / divisor)
    })
}

/// The ratios an `Interval_Max` column is tried at, with the unit each means: the column is
/// written as `max / ratio` in milliseconds (Java's `outputValueUnitRatio`; 1e6 is its
/// default and ours).
const UNIT_RATIOS: [(f64, &str); 3] = [(1e6, "ns"), (1e3, "µs"), (1.0, "ms")];

/// The unit of a log's values, and how it was found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueUnit {
    /// The log's `#[MaxValueDivisor: D]` header: values are 1 ms / D (smtp-loadgen's own
    /// logs: D = 1e6, nanoseconds).
    Header {
        /// One value in nanoseconds (`1e6 / D`).
        scale: f64,
    },
    /// No header (Java's `HistogramLogWriter` writes none, whatever the unit): every
    /// interval's `Interval_Max` column is its histogram's max divided by `ratio` (1e6:
    /// values in ns, 1e3: µs, 1: ms), within the histogram's precision and the column's
    /// three decimals.
    Inferred {
        /// The ratio the column agrees with.
        ratio: f64,
    },
    /// No header, and the column agrees with none of the ratios in every interval: the
    /// unit is unknown (values read as nanoseconds).
    Unknown,
    /// No header, and no interval with a value to tell the unit by (read as nanoseconds).
    NoEvidence,
}

impl ValueUnit {
    /// One value in nanoseconds.
    pub fn scale(&self) -> f64 {
        match *self {
            ValueUnit::Header { scale } => scale,
            ValueUnit::Inferred { ratio } => 1e6 / ratio,
            ValueUnit::Unknown | ValueUnit::NoEvidence => 1.0,
        }
    }

    /// What `report` and `merge` say about the unit of the log `name`: nothing when its
    /// header says it.
    pub fn note(&self, name: &str) -> Option<String> {
        let ratios = || {
            UNIT_RATIOS
                .iter()
                .map(|(r, _)| format!("{r}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match *self {
            ValueUnit::Header { .. } => None,
            ValueUnit::Inferred { ratio } => {
                let unit = UNIT_RATIOS
                    .iter()
                    .find(|(r, _)| *r == ratio)
                    .map_or("?", |(_, u)| u);
                Some(format!(
                    "note: {name} has no #[MaxValueDivisor] header: values read as {unit}: \
                     Interval_Max column = max / {ratio} in every interval"
                ))
            }
            ValueUnit::Unknown => Some(format!(
                "warning: {name} has no #[MaxValueDivisor] header and its Interval_Max column \
                 is max / none of {} in every interval: the values' unit is unknown; read as \
                 nanoseconds",
                ratios()
            )),
            ValueUnit::NoEvidence => Some(format!(
                "note: {name} has no #[MaxValueDivisor] header and no value to tell the unit \
                 by: read as nanoseconds"
            )),
        }
    }

    /// The unit of a log without a header whose intervals have `(Interval_Max column,
    /// histogram max, histogram significant digits)`: the first of [`UNIT_RATIOS`] every
    /// interval with a value agrees with.
    fn infer(intervals: impl Iterator<Item = (f64, u64, u8)>) -> ValueUnit {
        let mut candidates: Vec<f64> = UNIT_RATIOS.iter().map(|(r, _)| *r).collect();
        let mut evidence = false;
        for (column, max, sigfig) in intervals.filter(|(_, max, _)| *max > 0) {
            evidence = true;
            let max = max as f64;
            // The max is its bucket's highest value: within 10^-sigfig of the value
            // recorded (twice, for the column's own rounding by the writer); the column
            // has three decimals.
            let precision = 2.0 * 10f64.powi(-i32::from(sigfig));
            candidates.retain(|ratio| {
                let expected = max / ratio;
                (column - expected).abs() <= 0.0005 + expected * precision + 1e-12
            });
        }
        match (evidence, candidates.first()) {
            (false, _) => ValueUnit::NoEvidence,
            (true, Some(ratio)) => ValueUnit::Inferred { ratio: *ratio },
            (true, None) => ValueUnit::Unknown,
        }
    }
}

/// `h` with every value multiplied by `scale` (into nanoseconds).
fn rescale(h: &Histogram<u64>, scale: f64) -> Result<Histogram<u64>, String> {
    let mut out = new_histogram();
    for v in h.iter_recorded() {
        let value = (h.median_equivalent(v.value_iterated_to()) as f64 * scale).round();
        out.record_n(value as u64, v.count_at_value())
            .map_err(|e| {
                let why = match e {
                    RecordError::ValueOutOfRangeResizeDisabled => "out of range",
                    RecordError::ResizeFailedUsizeTypeTooSmall => "too large for this machine",
                };
                format!("a value of {value} ns is {why}")
            })?;
    }
    Ok(out)
}

/// What reading a log found besides its intervals.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadWarnings {
    /// The line number of an unfinished last line (a killed run) that was left out.
    pub cut_line: Option<usize>,
    /// The unit its values were read in.
    pub unit: ValueUnit,
}

/// Reads an interval log as [`read_hlog`] does; a last line cut short (no line end, and
/// the log does not parse with it: a run killed while writing) is left out and named in the
/// warnings. An error names the line.
pub fn read_hlog_lenient(bytes: &[u8]) -> Result<(Vec<LoggedInterval>, ReadWarnings), String> {
    match read_hlog_with_unit(bytes) {
        Ok((out, unit)) => Ok((
            out,
            ReadWarnings {
                cut_line: None,
                unit,
            },
        )),
        Err(e) if !bytes.is_empty() && !bytes.ends_with(b"\n") => {
            let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
                return Err(e);
            };
            let line = bytes[..end].iter().filter(|b| **b == b'\n').count() + 2;
            let (out, unit) = read_hlog_with_unit(&bytes[..=end])?;
            Ok((
                out,
                ReadWarnings {
                    cut_line: Some(line),
                    unit,
                },
            ))
        }
        Err(e) => Err(e),
    }
}

/// Reads an interval log (ours or any HdrHistogram tool's). Returns the intervals with
/// absolute start times, values in nanoseconds (see [`read_hlog_with_unit`]).
pub fn read_hlog(bytes: &[u8]) -> Result<Vec<LoggedInterval>, String> {
    read_hlog_with_unit(bytes).map(|(out, _)| out)
}

/// Reads an interval log (ours or any HdrHistogram tool's). Returns the intervals with
/// absolute start times, values scaled to nanoseconds by the unit the log's
/// `MaxValueDivisor` header gives, else the unit its `Interval_Max` column agrees with
/// ([`ValueUnit`]), and that unit. Every histogram is decoded here, so a bad one is found.
pub fn read_hlog_with_unit(bytes: &[u8]) -> Result<(Vec<LoggedInterval>, ValueUnit), String> {
    let (mut out, columns) = read_hlog_raw(bytes)?;
    // Each histogram's max and precision: what tells the unit of a log without a header.
    let mut maxima = Vec::with_capacity(out.len());
    for (i, interval) in out.iter().enumerate() {
        let h = interval.histogram().map_err(|e| {
            format!(
                "interval {} (tag {}): {e}",
                i + 1,
                super::quoted(&interval.tag)
            )
        })?;
        maxima.push((h.max(), h.sigfig()));
    }
    let unit = match value_scale(bytes) {
        Some(scale) => ValueUnit::Header { scale },
        None => ValueUnit::infer(
            columns
                .iter()
                .zip(&maxima)
                .map(|(column, (max, sigfig))| (*column, *max, *sigfig)),
        ),
    };
    let scale = unit.scale();
    if (scale - 1.0).abs() > 1e-9 {
        for interval in &mut out {
            interval.encoded = encode_histogram(&rescale(&interval.histogram()?, scale)?);
        }
    }
    Ok((out, unit))
}

/// Reads an interval log's intervals, values as they are, and each one's `Interval_Max`
/// column.
fn read_hlog_raw(bytes: &[u8]) -> Result<(Vec<LoggedInterval>, Vec<f64>), String> {
    let mut start_time = None;
    let mut base_time = None;
    let mut out = Vec::new();
    let mut columns = Vec::new();
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|e| {
            let hdrhistogram::serialization::interval_log::LogIteratorError::ParseError { offset } =
                e;
            let line = bytes[..offset.min(bytes.len())]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            let shown = bytes
                .split(|b| *b == b'\n')
                .nth(line - 1)
                .map_or_else(|| "(none)".to_string(), super::shown_line);
            format!("line {line}: not an interval log line: {shown}")
        })?;
        match entry {
            LogEntry::StartTime(t) => start_time = Some(t.as_secs_f64()),
            LogEntry::BaseTime(t) => base_time = Some(t.as_secs_f64()),
            LogEntry::Interval(interval) => {
                let base = base_time.or(start_time).unwrap_or(0.0);
                columns.push(interval.max());
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
    Ok((out, columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_provenance(description: &str) -> Provenance {
        Provenance::for_tests(description, 1.0)
    }

    #[test]
    fn cut_logs_are_read_to_their_last_line_and_errors_name_the_line() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        h.record(1000).unwrap();
        let encoded = encode_histogram(&h);
        let full = format!(
            "#[StartTime: 1000.000 (seconds since epoch)]\n\
             Tag=eod,0.000,1.000,0.001,{encoded}\n\
             #smtp-loadgen-counts: 1.000,1.000,started=1,accepted=1,failed=0,errors=0,bytes=1,warmup=0\n\
             Tag=eod,1.000,1.000,0.001,{encoded}\n"
        );
        let (all, warnings) = read_hlog_lenient(full.as_bytes()).unwrap();
        assert_eq!((all.len(), warnings.cut_line), (2, None));
        // Killed while writing line 4, and while writing the counts line 3.
        let cut = &full[..full.len() - 10];
        let (read, warnings) = read_hlog_lenient(cut.as_bytes()).unwrap();
        assert_eq!((read.len(), warnings.cut_line), (1, Some(4)));
        let cut_counts = &full[..full.find("bytes=1").unwrap()];
        assert_eq!(read_notes(cut_counts.as_bytes()).unwrap().counts.len(), 0);
        assert_eq!(read_hlog_lenient(cut_counts.as_bytes()).unwrap().0.len(), 1);
        // A bad line in the middle is an error naming its line.
        let bad = full.replace("Tag=eod,1.000", "garbage here\nTag=eod,1.000");
        let e = read_hlog_lenient(bad.as_bytes()).unwrap_err();
        assert!(e.starts_with("line 4: "), "{e}");
        let bad_histogram = full.replacen(&encoded, "HISTFAAAAxyz", 1);
        let e = read_hlog(bad_histogram.as_bytes()).unwrap_err();
        assert!(e.contains("interval 1"), "{e}");
    }

    #[test]
    fn values_are_scaled_by_the_max_value_divisor_or_the_max_column() {
        // A log of one interval whose max is 7200 (in some unit), its Interval_Max column
        // `column`, under `header`.
        let mut h = Histogram::<u64>::new(3).unwrap();
        h.record(7200).unwrap();
        let encoded = encode_histogram(&h);
        let log = |header: &str, column: &str| {
            format!(
                "#[StartTime: 1000.000 (seconds since epoch)]\n{header}\
                 \"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n\
                 Tag=eod,0.000,1.000,{column},{encoded}\n"
            )
        };
        let max_ms = |text: &str| {
            let (read, unit) = read_hlog_with_unit(text.as_bytes()).unwrap();
            (read[0].histogram().unwrap().max() as f64 / 1e6, unit)
        };
        // A header says it: D = 1000, values of 1 µs.
        let micros = log("#[MaxValueDivisor: 1000.000]\n", "7.200");
        assert_eq!(value_scale(micros.as_bytes()), Some(1000.0));
        let (max, unit) = max_ms(&micros);
        assert!((max - 7.2).abs() < 0.01, "{max} ms");
        assert_eq!(unit, ValueUnit::Header { scale: 1000.0 });
        assert_eq!(unit.note("x"), None);
        // Ours: nanoseconds, divisor 1e6: as they are.
        let ours = log("#[MaxValueDivisor: 1000000.000]\n", "0.007");
        assert_eq!(value_scale(ours.as_bytes()), Some(1.0));
        assert_eq!(
            read_hlog(ours.as_bytes()).unwrap()[0].histogram().unwrap(),
            h
        );
        // No header (Java's HistogramLogWriter writes none): the Interval_Max column tells.
        // 7.200 = 7200 / 1000: microseconds (B10: read as ns, 1000 times too small).
        let (max, unit) = max_ms(&log("", "7.200"));
        assert!((max - 7.2).abs() < 0.01, "{max} ms");
        assert_eq!(unit, ValueUnit::Inferred { ratio: 1000.0 });
        assert_eq!(
            unit.note("x.hlog").unwrap(),
            "note: x.hlog has no #[MaxValueDivisor] header: values read as µs: Interval_Max \
             column = max / 1000 in every interval"
        );
        // 0.007 = 7200 / 1e6 to three decimals: nanoseconds.
        let (max, unit) = max_ms(&log("", "0.007"));
        assert_eq!(unit, ValueUnit::Inferred { ratio: 1e6 });
        assert!((max - 0.0072).abs() < 0.0001, "{max} ms");
        // 7200.000 (or 7203, within the bucket): milliseconds.
        for column in ["7200.000", "7203.000"] {
            let (max, unit) = max_ms(&log("", column));
            assert_eq!(unit, ValueUnit::Inferred { ratio: 1.0 }, "{column}");
            assert!((max - 7200.0).abs() < 8.0, "{max} ms");
        }
        // A column that agrees with none: unknown, read as nanoseconds, said so.
        let (max, unit) = max_ms(&log("", "3.000"));
        assert_eq!(unit, ValueUnit::Unknown);
        assert!((max - 0.0072).abs() < 0.0001, "{max} ms");
        assert!(unit
            .note("x")
            .unwrap()
            .contains("the values' unit is unknown"));
        // Every interval must agree: one µs interval and one that fits no ratio.
        let two = log("", "7.200") + &format!("Tag=eod,1.000,1.000,9.000,{encoded}\n");
        assert_eq!(max_ms(&two).1, ValueUnit::Unknown);
        // No value to tell by.
        let empty = encode_histogram(&Histogram::<u64>::new(3).unwrap());
        let none = log("", "0.000").replace(&encoded, &empty);
        assert_eq!(max_ms(&none).1, ValueUnit::NoEvidence);
    }

    #[test]
    fn hlog_round_trip() {
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
        write_hlog(&mut bytes, base, &test_provenance("test"), &intervals, &[]).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("#[StartTime: 1700000000"), "{text}");
        assert!(text.contains("Tag=eod,"), "{text}");
        let read = read_hlog(&bytes).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[1].start, 1_700_000_001.0);
        assert_eq!(read[2].tag, "mail");
        assert_eq!(read[0].histogram().unwrap(), h);
    }

    #[test]
    fn counts_lines_round_trip_and_older_logs_have_none() {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = new_histogram();
        h.record(1_000).unwrap();
        let at = |start: f64| LoggedInterval {
            start,
            duration: 1.0,
            tag: "eod".into(),
            encoded: encode_histogram(&h),
        };
        let counts = |start: f64, accepted: u64| LoggedCounts {
            start,
            duration: 1.0,
            counts: IntervalCounts {
                warmup: start < 1_700_000_001.0,
                started: accepted + 1,
                accepted,
                failed: 1,
                errors: 2,
                bytes: accepted * 1024,
            },
        };
        let written = [counts(1_700_000_000.0, 10), counts(1_700_000_001.0, 20)];
        let mut bytes = Vec::new();
        write_hlog(
            &mut bytes,
            base,
            &test_provenance("header line"),
            &[at(1_700_000_000.0), at(1_700_000_001.0)],
            &written,
        )
        .unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        // Each interval's counts come right before its histograms.
        let lines: Vec<&str> = text.lines().collect();
        let first = lines.iter().position(|l| l.starts_with("Tag=")).unwrap();
        assert_eq!(
            lines[first - 1],
            "#smtp-loadgen-counts: 0.000,1.000,started=11,accepted=10,failed=1,errors=2,bytes=10240,warmup=1"
        );
        assert!(lines[first + 1].starts_with("#smtp-loadgen-counts: 1.000,"));
        let notes = read_notes(&bytes).unwrap();
        assert_eq!(notes.counts, written);
        assert_eq!(notes.comments[0], "header line");
        // The histograms read as before.
        assert_eq!(read_hlog(&bytes).unwrap().len(), 2);
        // A log without counts lines (older smtp-loadgen, other tools) has none.
        let mut old = Vec::new();
        let mut bare = test_provenance("old");
        bare.warmup_seconds = 0.0;
        write_hlog(&mut old, base, &bare, &[at(1_700_000_000.0)], &[]).unwrap();
        assert!(!String::from_utf8_lossy(&old).contains("smtp-loadgen-counts"));
        let notes = read_notes(&old).unwrap();
        assert!(notes.counts.is_empty());
        // The header comments: description, provenance lines, the warm-up rule, units; the
        // provenance JSON line is read back, not kept as a comment.
        assert_eq!(
            notes.comments,
            [
                "old",
                "run 2023-11-14T22:13:20Z by smtp-loadgen 0.0.0-test (commit 0123abc)",
                "command: smtp-loadgen --target 127.0.0.1:2525 -c 2 --warmup 1s",
                "host: Test CPU @ 1.00GHz, 2 cores, Linux 6.1.0-test (x86_64)",
                "no warm-up: intervals from 0.0 s",
                "values are nanoseconds; max column in milliseconds"
            ]
        );
        assert_eq!(notes.provenance, Some(bare));
        assert_eq!(notes.start_time, Some(1_700_000_000.0));
        // A provenance line that does not parse is an error naming its line.
        let e = read_notes(b"#x\n#smtp-loadgen-provenance: {oops\n").unwrap_err();
        assert!(e.starts_with("line 2: bad provenance line"), "{e}");
        // Unknown keys are skipped; a counts line that does not parse is an error.
        let later = b"#smtp-loadgen-counts: 0.000,1.000,accepted=5,future=9\n";
        assert_eq!(read_notes(later).unwrap().counts[0].counts.accepted, 5);
        let bad = b"#smtp-loadgen-counts: 0.000,accepted=x\n";
        assert!(read_notes(bad).unwrap_err().contains("line 1"));
    }

    #[test]
    fn read_errors_are_said_in_words() {
        // A histogram that is base64 but not an HdrHistogram encoding: no `InvalidCookie`.
        let log = "Tag=eod,0.000,1.000,0.001,aGVsbG8gd29ybGQh\n";
        let e = read_hlog(log.as_bytes()).unwrap_err();
        assert_eq!(
            e,
            "interval 1 (tag \"eod\"): the histogram does not decode: it is not an HdrHistogram \
             encoding (its first bytes name no known format)"
        );
        // Random bytes: no `\u{..}` escapes, no noise; text lines are quoted, cut short.
        let e = read_hlog(b"6\xd9d\xc1A\xdd\xd9\x89k\x1c?\n").unwrap_err();
        assert_eq!(
            e,
            "line 1: not an interval log line: 11 bytes that are not text (a binary file?)"
        );
        let e = read_hlog("é\u{749} hello\n".as_bytes()).unwrap_err();
        assert_eq!(e, "line 1: not an interval log line: \"é\u{749} hello\"");
        let e = read_hlog(format!("{}\n", "y".repeat(100)).as_bytes()).unwrap_err();
        assert!(e.ends_with(&format!("\"{}…\"", "y".repeat(60))), "{e}");
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
        assert!(broken.histogram().is_err());
    }
}
