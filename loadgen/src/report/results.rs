//! The results of a run: every thread's one-second figures merged into totals and a series.
//!
//! What it does: add each [`Recorder`] a thread reports into the run's totals (warm-up
//! excluded) and into its second; once every thread has reported a second, shrink that
//! second to an [`IntervalSummary`] (counts, p99s and encoded histograms), so a run of hours
//! keeps little per second.
//!
//! What it does not do: measure (the engine does), print or write files (`render`,
//! `interval_log`), or judge the figures (`slo`).

use super::codec::encode_histogram;
use super::warmup::{Source, Warmup};
use crate::drive::client::Stage;
use crate::drive::record::Recorder;
use crate::drive::slots::SlotFigures;
use std::collections::BTreeMap;
use std::time::Duration;

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
    /// Corrected message latency p99 in nanoseconds (open loop; 0 otherwise).
    pub corrected_p99: u64,
    /// TLS handshakes completed.
    pub handshakes: u64,
    /// `(tag, V2-deflate base64)` of every non-empty histogram, for `--hdr-log`.
    pub histograms: Vec<(&'static str, String)>,
}

impl IntervalSummary {
    /// The summary of one second's merged recorder.
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
            corrected_p99: r.message_corrected.value_at_percentile(99.0),
            handshakes: r.handshakes(),
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
    /// Seconds some thread may still report, merged so far: `(warm-up, figures)`.
    open: BTreeMap<u64, (bool, Recorder)>,
    /// Per thread: the last interval it reported (`None`: none yet; `Some(u64::MAX)`: done).
    reported: Vec<Option<u64>>,
    /// Measured time after the warm-up.
    pub measured: Duration,
    /// Open-loop slots that were due but never sent.
    pub backlog: u64,
    /// The connections asked for and how many were alive over the measured time.
    pub connections: SlotFigures,
    /// The warm-up (whole seconds): the intervals flagged `warmup` are inside it.
    pub warmup: Duration,
    /// The end-to-end mode's run id (in every message's tag; `None` without it).
    pub run_id: Option<u32>,
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
            connections: SlotFigures::default(),
            warmup: Duration::ZERO,
            run_id: None,
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
        if warmup {
            // Set-up failures count whenever they happen: the connections section says
            // what the run asked for and never had (issue 16, item 1).
            self.total.merge_never_ready(recorder);
        } else {
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

    /// The warm-up rule's sentence for this run (`warm-up 1 s excluded: intervals from
    /// 1.0 s`): the same rule `report` applies to the run's interval log.
    pub fn warmup_rule(&self) -> (Warmup, f64) {
        let rule = Warmup::new(self.warmup.as_secs_f64(), 0.0, Source::Run);
        let from = rule.measured_from(self.intervals.keys().map(|s| *s as f64));
        (rule, from)
    }

    /// Messages accepted inside the warm-up (left out of `total`).
    pub fn warmup_accepted(&self) -> u64 {
        self.intervals
            .values()
            .filter(|i| i.warmup)
            .map(|i| i.accepted)
            .sum()
    }

    /// Accepted messages per second over the measured time.
    pub fn msgs_per_sec(&self) -> f64 {
        self.total.accepted as f64 / self.measured.as_secs_f64().max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
