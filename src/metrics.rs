//! `--metrics ADDR`: Prometheus metrics over HTTP, for watching a sink while senders run
//! against it.
//!
//! What it does: keep the counters the workers and storage threads do not already publish
//! (replies issued, by code: [`ReplyCounts`]; store latency: [`StoreLatency`]), gather them with
//! everything else a scrape reads ([`MetricsSource`]), and serve the text exposition (format
//! 0.0.4) on `GET /metrics` from a thread of its own ([`MetricsServer`]).
//!
//! | submodule | job |
//! |---|---|
//! | `collect` | `prometheus` collectors that read the published counters at scrape time; the `prometheus` crate encodes the text |
//! | `http` | the one route, served by [`crate::control`]'s HTTP server (deadlines, a connection cap) |
//! | `relay` | the relay's queue, delivery counters, connections and latency, from the delivery loop's [`DeliveryStats`] and the spool's size on disk |
//!
//! What it does not do: run on an SMTP event loop or make one wait (workers publish atomics
//! and never see the metrics thread), keep history, or write HTTP or the exposition format
//! by hand.

mod collect;
mod http;
mod relay;

pub use crate::control::{HEADER_READ_TIMEOUT, REQUEST_TIMEOUT};
pub use http::{MetricsServer, MAX_CONNECTIONS};

use crate::fault::Plans;
use crate::proto::reply::{FIRST_CODE, LAST_CODE};
use crate::relay::deliver::DeliveryStats;
use crate::stats::SharedStats;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Replies issued by one worker's sessions, per code: published by that worker from its
/// tally once per loop turn, read by scrapes.
#[derive(Debug)]
pub struct ReplyCounts {
    /// The total for each code from [`FIRST_CODE`] to [`LAST_CODE`], in order.
    counts: Box<[AtomicU64]>,
}

impl Default for ReplyCounts {
    fn default() -> Self {
        ReplyCounts {
            counts: (0..Self::LEN).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl ReplyCounts {
    /// How many codes there are, from [`FIRST_CODE`] to [`LAST_CODE`].
    const LEN: usize = (LAST_CODE - FIRST_CODE) as usize + 1;

    /// Publishes the total of replies with `code` (written by the worker that owns these
    /// counts, from its [`crate::proto::reply::ReplyTally`]).
    pub fn set(&self, code: u16, total: u64) {
        if (FIRST_CODE..=LAST_CODE).contains(&code) {
            self.counts[usize::from(code - FIRST_CODE)].store(total, Ordering::Relaxed);
        }
    }

    /// Adds each code's total into `totals` (indexed from [`FIRST_CODE`]).
    fn add_into(&self, totals: &mut [u64]) {
        for (total, count) in totals.iter_mut().zip(self.counts.iter()) {
            *total += count.load(Ordering::Relaxed);
        }
    }
}

/// Upper bounds of the store-latency histogram buckets, in seconds.
const STORE_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Time from a message's hand-over to the storage threads to their verdict.
#[derive(Debug, Default)]
pub struct StoreLatency {
    /// Cumulative: messages stored within each of [`STORE_BUCKETS`]' bounds.
    buckets: [AtomicU64; STORE_BUCKETS.len()],
    /// Messages observed (the `+Inf` bucket).
    count: AtomicU64,
    /// Their store times added up, in nanoseconds.
    sum_nanos: AtomicU64,
    /// Messages a store could not keep.
    failures: AtomicU64,
}

impl StoreLatency {
    /// Records one message's store time and outcome.
    pub fn observe(&self, took: Duration, stored: bool) {
        let seconds = took.as_secs_f64();
        for (bound, bucket) in STORE_BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        if !stored {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Everything a scrape reads.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    /// Each worker's published counters.
    pub workers: Vec<Arc<SharedStats>>,
    /// Each worker's reply counts.
    pub replies: Vec<Arc<ReplyCounts>>,
    /// Store latency, when a store is configured.
    pub store: Option<Arc<StoreLatency>>,
    /// The fault plans (startup rules, runtime set, mailboxes' plans), when any can exist
    /// (`--fault`, `--fault-file` or `--api`).
    pub faults: Option<Arc<Plans>>,
    /// The capture store, when kept (`--store memory`, `--api`).
    pub capture: Option<Arc<crate::capture::Capture>>,
    /// The relay, with `--spool`.
    pub relay: Option<RelaySource>,
    /// Collectors that rooms above this one own and fill (the API's), gathered with these.
    pub collectors: Collectors,
}

/// What a scrape reads of the relay.
#[derive(Debug, Clone)]
pub struct RelaySource {
    /// The delivery loop's counters and gauges.
    pub stats: Arc<DeliveryStats>,
    /// The spool directory (its size on disk is read at each scrape).
    pub spool: PathBuf,
    /// The next hops, `HOST:PORT`, in `--relay-to` order (the `hop` label).
    pub hops: Vec<String>,
}

/// Collectors owned by a room above `metrics` (which cannot name their types), shared so the
/// owner keeps updating them.
#[derive(Clone, Default)]
pub struct Collectors(pub Vec<Arc<dyn prometheus::core::Collector>>);

impl std::fmt::Debug for Collectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Collectors({})", self.0.len())
    }
}

impl MetricsSource {
    /// A `prometheus` registry whose collectors read this source at each gather.
    fn registry(&self) -> prometheus::Result<prometheus::Registry> {
        let registry = collect::registry(self)?;
        if let Some(source) = &self.relay {
            registry.register(Box::new(relay::RelayCollector::new(source.clone())?))?;
        }
        Ok(registry)
    }

    /// The text exposition (format 0.0.4) of everything the source holds now. Builds the
    /// collectors on each call; [`MetricsServer`] builds them once.
    pub fn render(&self) -> prometheus::Result<String> {
        http::encode(&self.registry()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_totals_add_up_over_workers() {
        let (first, second) = (ReplyCounts::default(), ReplyCounts::default());
        first.set(250, 7);
        first.set(250, 9);
        first.set(421, 1);
        second.set(250, 2);
        second.set(199, 5);
        let mut totals = vec![0; 400];
        first.add_into(&mut totals);
        second.add_into(&mut totals);
        assert_eq!((totals[50], totals[221]), (11, 1));
        assert_eq!(totals.iter().sum::<u64>(), 12);
    }

    #[test]
    fn store_latency_buckets_are_cumulative() {
        let latency = StoreLatency::default();
        latency.observe(Duration::from_micros(300), true);
        latency.observe(Duration::from_millis(30), false);
        let source = MetricsSource {
            workers: vec![],
            replies: vec![],
            store: Some(Arc::new(latency)),
            faults: None,
            capture: None,
            relay: None,
            collectors: Default::default(),
        };
        let text = source.render().unwrap();
        assert!(
            text.contains("fastsmtpd_store_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("fastsmtpd_store_seconds_bucket{le=\"0.05\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("fastsmtpd_store_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("fastsmtpd_store_failures_total 1\n"),
            "{text}"
        );
    }
}
