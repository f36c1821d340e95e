//! What a run measures: per-stage latency histograms, reply codes, errors, message counts.
//!
//! What it does: one [`Recorder`] per engine thread and interval, filled without locks; the
//! reporter merges them with `Histogram::add` at interval ends. All latencies are in
//! nanoseconds. Besides the counts of errors per kind it keeps a few distinct descriptions of
//! what went wrong ("TLS: invalid peer certificate: unknown issuer ...", "AUTH PLAIN refused:
//! 535 ..."), at most [`MAX_DETAILS`], so a run that fails says why.
//!
//! What it does not do: merge across threads, print or serialise (see `report`).

use crate::drive::client::Stage;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// Highest trackable latency: one hour in nanoseconds.
const MAX_NANOS: u64 = 3_600_000_000_000;
/// Significant decimal digits kept (0.1% resolution).
const SIGFIGS: u8 = 3;
/// Most distinct error descriptions kept; later new ones are counted under [`OTHER_DETAIL`].
pub const MAX_DETAILS: usize = 16;
/// Where error descriptions past [`MAX_DETAILS`] are counted.
pub const OTHER_DETAIL: &str = "(other errors)";

/// Kinds of connection-level failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The connection was refused (or could not be made).
    Refused,
    /// The connection was reset, or closed while replies were awaited.
    Reset,
    /// No reply within the reply timeout.
    Timeout,
    /// A reply that does not parse or was not expected: client and server are out of step.
    Desync,
    /// The server closed the session with `421`.
    ServiceClosing,
    /// The greeting, EHLO, STARTTLS or AUTH was refused, or the server lacks a needed
    /// extension.
    Rejected,
    /// The TLS handshake failed (a certificate that does not verify, an alert, a protocol
    /// error), or TLS failed later in the session.
    Tls,
    /// A corpus message could not be read, or changed since it was indexed.
    Corpus,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Refused,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::Desync,
        ErrorKind::ServiceClosing,
        ErrorKind::Rejected,
        ErrorKind::Tls,
        ErrorKind::Corpus,
    ];

    /// The name used in output.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Desync => "desync",
            ErrorKind::ServiceClosing => "service_closing",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Tls => "tls",
            ErrorKind::Corpus => "corpus",
        }
    }
}

/// A new empty latency histogram. It grows to cover the largest value recorded (at most
/// [`MAX_NANOS`], see [`record`]) instead of allocating the whole range up front: a
/// millisecond-scale histogram takes ~90 KiB, not the ~500 KiB of a 1 ns..1 h one, and one
/// exists per stage, per thread and per second.
pub fn new_histogram() -> Histogram<u64> {
    let mut histogram = Histogram::new(SIGFIGS).expect("valid significant figures");
    histogram.auto(true);
    histogram
}

/// Measurements of one thread over one interval (or, merged, of a whole run).
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Reply latency per stage, from the moment the command was written.
    pub stages: Vec<Histogram<u64>>,
    /// Message service time: first command written to final reply.
    pub message: Histogram<u64>,
    /// Message latency from the intended start (open loop; coordinated-omission safe).
    pub message_corrected: Histogram<u64>,
    /// How late the generator itself started messages relative to the schedule (open loop).
    pub send_lateness: Histogram<u64>,
    /// Replies per (stage, code).
    pub codes: BTreeMap<(usize, u16), u64>,
    /// Errors per kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Error descriptions and how often each occurred (at most [`MAX_DETAILS`] + 1 keys).
    pub details: BTreeMap<String, u64>,
    /// TLS handshakes completed in full (a HelloRetryRequest round trip included).
    pub handshakes_full: u64,
    /// TLS handshakes that resumed an earlier session (ticket or session id).
    pub handshakes_resumed: u64,
    /// Messages started.
    pub started: u64,
    /// Messages accepted (every step succeeded, final 250).
    pub accepted: u64,
    /// Messages that ended refused.
    pub failed: u64,
    /// Bytes of accepted messages.
    pub accepted_bytes: u64,
    /// Per target, by target number (only with several `--target`s; empty otherwise).
    pub targets: Vec<TargetFigures>,
    /// Connections that ended before their session was set up (never ready for a message),
    /// per reason: `connect failed`, `greeting 421`, `closed before greeting`, `auth 535`,
    /// ... (a step name and a reply code at most, so the keys are few).
    pub never_ready: BTreeMap<String, u64>,
    /// The end-to-end mode's counts (`--delivered-via`; the latencies are the `delivered`
    /// stage).
    pub delivery: DeliveryFigures,
}

/// What the end-to-end mode counted besides the `delivered` latencies (see
/// `drive::delivered`). All zero, and `watched` false, without `--delivered-via`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryFigures {
    /// Whether the far end was watched (the run had `--delivered-via`).
    pub watched: bool,
    /// Messages that got a `250` of which not one recipient arrived at the far end within
    /// the drain time.
    pub never_delivered: u64,
    /// Messages that got a `250` of which some accepted recipients arrived, not all.
    pub partly_delivered: u64,
    /// Recipients accepted at `RCPT` (of messages that got a `250`) that never arrived.
    pub never_delivered_rcpts: u64,
    /// Recipients that arrived at least once, of the messages counted in `accepted` (their
    /// `250` came after the warm-up), accepted at `RCPT`, not `late` (see
    /// `delivered::tracker::Tracker::rcpts_arrived`); the watcher's final report carries it.
    pub rcpts_arrived: u64,
    /// Recipients that arrived again, having arrived already (a message whose recipients
    /// came in two transactions has none).
    pub duplicates: u64,
    /// Arrivals without a tag of this run (other mail reaching the sink), or naming none of
    /// the tagged message's recipients; ignored.
    pub foreign: u64,
    /// First arrivals of recipients of messages that had been written off (past the
    /// tracker's window): delivered, but too late to be timed.
    pub late: u64,
    /// Arrivals the sink no longer kept when the watcher came to read them (its `lagged`
    /// events): unattributed, so `never_delivered` may count them.
    pub lagged: u64,
    /// `reset` events: the sink restarted and replayed what it keeps.
    pub resets: u64,
    /// Recipients replayed after a `reset` that had arrived already (not duplicates).
    pub replayed: u64,
    /// Times the event stream was reopened after it dropped.
    pub reconnects: u64,
}

impl DeliveryFigures {
    /// Adds `other` into `self`.
    fn merge(&mut self, other: &DeliveryFigures) {
        self.watched |= other.watched;
        self.never_delivered += other.never_delivered;
        self.partly_delivered += other.partly_delivered;
        self.never_delivered_rcpts += other.never_delivered_rcpts;
        self.rcpts_arrived += other.rcpts_arrived;
        self.duplicates += other.duplicates;
        self.foreign += other.foreign;
        self.late += other.late;
        self.lagged += other.lagged;
        self.resets += other.resets;
        self.replayed += other.replayed;
        self.reconnects += other.reconnects;
    }
}

/// One target's share of a recorder's figures (several `--target`s).
#[derive(Debug, Clone)]
pub struct TargetFigures {
    /// Messages started on its connections.
    pub started: u64,
    /// Messages it accepted.
    pub accepted: u64,
    /// Messages that failed on its connections.
    pub failed: u64,
    /// Bytes of accepted messages.
    pub accepted_bytes: u64,
    /// Connection-level errors with it.
    pub errors: u64,
    /// The reply to the end of the content: the end-of-data dot (DATA) or `BDAT LAST`.
    pub eod: Histogram<u64>,
}

impl Default for TargetFigures {
    fn default() -> Self {
        TargetFigures {
            started: 0,
            accepted: 0,
            failed: 0,
            accepted_bytes: 0,
            errors: 0,
            eod: new_histogram(),
        }
    }
}

impl TargetFigures {
    /// Adds `other` into `self`.
    fn merge(&mut self, other: &TargetFigures) {
        self.started += other.started;
        self.accepted += other.accepted;
        self.failed += other.failed;
        self.accepted_bytes += other.accepted_bytes;
        self.errors += other.errors;
        self.eod.add(&other.eod).expect("same histogram bounds");
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder {
            stages: Stage::ALL.iter().map(|_| new_histogram()).collect(),
            message: new_histogram(),
            message_corrected: new_histogram(),
            send_lateness: new_histogram(),
            codes: BTreeMap::new(),
            errors: BTreeMap::new(),
            details: BTreeMap::new(),
            handshakes_full: 0,
            handshakes_resumed: 0,
            started: 0,
            accepted: 0,
            failed: 0,
            accepted_bytes: 0,
            targets: Vec::new(),
            never_ready: BTreeMap::new(),
            delivery: DeliveryFigures::default(),
        }
    }

    /// Target `index`'s figures (made on first use).
    pub fn target(&mut self, index: usize) -> &mut TargetFigures {
        if self.targets.len() <= index {
            self.targets.resize_with(index + 1, TargetFigures::default);
        }
        &mut self.targets[index]
    }

    /// Records one reply.
    pub fn reply(&mut self, stage: Stage, code: u16, nanos: u64) {
        record(&mut self.stages[stage.index()], nanos);
        *self.codes.entry((stage.index(), code)).or_default() += 1;
    }

    /// Records a finished message.
    pub fn message_done(
        &mut self,
        accepted: bool,
        size: usize,
        service_nanos: u64,
        corrected: Option<u64>,
    ) {
        if accepted {
            self.accepted += 1;
            self.accepted_bytes += size as u64;
        } else {
            self.failed += 1;
        }
        record(&mut self.message, service_nanos);
        if let Some(nanos) = corrected {
            record(&mut self.message_corrected, nanos);
        }
    }

    /// Records a reply that is counted but not timed.
    pub fn code(&mut self, stage: Stage, code: u16) {
        *self.codes.entry((stage.index(), code)).or_default() += 1;
    }

    /// Records a completed TLS handshake: its time (stage `tls`) and whether it resumed.
    pub fn handshake(&mut self, nanos: u64, resumed: bool) {
        record(&mut self.stages[Stage::Tls.index()], nanos);
        if resumed {
            self.handshakes_resumed += 1;
        } else {
            self.handshakes_full += 1;
        }
    }

    /// Counts an error.
    pub fn error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Counts a connection that ended before its session was set up, for `reason`.
    pub fn not_ready(&mut self, reason: String) {
        *self.never_ready.entry(reason).or_default() += 1;
    }

    /// Counts an error with its description.
    pub fn error_with(&mut self, kind: ErrorKind, detail: String) {
        self.error(kind);
        self.note(detail);
    }

    /// Counts one occurrence of an error description (the error itself is counted apart).
    pub fn note(&mut self, detail: String) {
        self.add_detail(detail, 1);
    }

    /// Counts `n` occurrences of a description (past [`MAX_DETAILS`] distinct ones, under
    /// [`OTHER_DETAIL`]).
    fn add_detail(&mut self, detail: String, n: u64) {
        let kept = self.details.len() - usize::from(self.details.contains_key(OTHER_DETAIL));
        if let Some(count) = self.details.get_mut(&detail) {
            *count += n;
        } else if kept < MAX_DETAILS && detail != OTHER_DETAIL {
            self.details.insert(detail, n);
        } else {
            *self.details.entry(OTHER_DETAIL.to_string()).or_default() += n;
        }
    }

    /// TLS handshakes completed.
    pub fn handshakes(&self) -> u64 {
        self.handshakes_full + self.handshakes_resumed
    }

    /// All errors counted.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in self.stages.iter_mut().zip(&other.stages) {
            mine.add(theirs).expect("same histogram bounds");
        }
        self.message.add(&other.message).expect("same bounds");
        self.message_corrected
            .add(&other.message_corrected)
            .expect("same bounds");
        self.send_lateness
            .add(&other.send_lateness)
            .expect("same bounds");
        for (key, count) in &other.codes {
            *self.codes.entry(*key).or_default() += count;
        }
        for (key, count) in &other.errors {
            *self.errors.entry(*key).or_default() += count;
        }
        for (detail, count) in &other.details {
            self.add_detail(detail.clone(), *count);
        }
        self.handshakes_full += other.handshakes_full;
        self.handshakes_resumed += other.handshakes_resumed;
        self.started += other.started;
        self.accepted += other.accepted;
        self.failed += other.failed;
        self.accepted_bytes += other.accepted_bytes;
        for (index, figures) in other.targets.iter().enumerate() {
            self.target(index).merge(figures);
        }
        self.merge_never_ready(other);
        self.delivery.merge(&other.delivery);
    }

    /// Adds `other`'s connections that never got ready. Apart from [`Recorder::merge`] for
    /// the warm-up: its latencies and counts are left out of the run's totals, but a
    /// connection refused during the warm-up is still one the run asked for and never had.
    pub fn merge_never_ready(&mut self, other: &Recorder) {
        for (reason, count) in &other.never_ready {
            *self.never_ready.entry(reason.clone()).or_default() += count;
        }
    }

    /// The histogram for `stage`.
    pub fn stage(&self, stage: Stage) -> &Histogram<u64> {
        &self.stages[stage.index()]
    }
}

/// Records a value, clamped into 1 ns ..= [`MAX_NANOS`].
pub fn record(histogram: &mut Histogram<u64>, nanos: u64) {
    let value = nanos.clamp(1, MAX_NANOS);
    // `record` grows an auto-resizing histogram (`saturating_record` would clamp to its
    // current top instead); growing can only fail on allocation failure.
    if histogram.record(value).is_err() {
        histogram.saturating_record(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_grow_to_the_values_recorded_and_clamp_at_the_top() {
        let mut h = new_histogram();
        record(&mut h, 1_000_000);
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 3);
        assert_eq!(h.min(), 1);
        assert!(h.equivalent(h.value_at_quantile(0.5), 1_000_000));
        assert!(h.equivalent(h.max(), MAX_NANOS));
        // Merging keeps what either side saw.
        let mut other = new_histogram();
        record(&mut other, 5_000);
        h.add(&other).unwrap();
        assert_eq!(h.len(), 4);
    }

    #[test]
    fn error_details_are_bounded() {
        let mut r = Recorder::new();
        for i in 0..MAX_DETAILS + 5 {
            r.error_with(ErrorKind::Tls, format!("detail {i}"));
        }
        r.error_with(ErrorKind::Tls, "detail 0".into());
        assert_eq!(r.details.len(), MAX_DETAILS + 1);
        assert_eq!(r.details["detail 0"], 2);
        assert_eq!(r.details[OTHER_DETAIL], 5);
        let mut merged = Recorder::new();
        merged.merge(&r);
        merged.merge(&r);
        assert_eq!(merged.details.len(), MAX_DETAILS + 1);
        assert_eq!(merged.details[OTHER_DETAIL], 10);
        assert_eq!(merged.errors[&ErrorKind::Tls], 2 * (MAX_DETAILS as u64 + 6));
    }
}
