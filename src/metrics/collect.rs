//! Prometheus collectors that read what the workers publish, at scrape time.
//!
//! What it does: implement the `prometheus` crate's [`Collector`] for each source of numbers
//! (the workers' [`SharedStats`], their [`ReplyCounts`], the store's [`StoreLatency`], the
//! fault rules' fired counts, the capture store's [`crate::capture::Stats`]) and register them in a [`Registry`]. Each scrape calls
//! [`Collector::collect`], which loads the atomics once and builds the metric families; the
//! registry sorts them and `prometheus::TextEncoder` writes the text exposition (format 0.0.4).
//!
//! What it does not do: count anything (the workers and storage threads do, without locks),
//! keep state between scrapes, or format text by hand.

use super::{ReplyCounts, StoreLatency, STORE_BUCKETS};
use crate::capture::Capture;
use crate::fault::Plans;
use crate::proto::reply::FIRST_CODE;
use crate::stats::{SharedStats, Stats};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::Registry;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A metric's fixed name, help and label names, checked by `prometheus` ([`Desc::new`]).
pub(super) fn desc(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Desc> {
    Desc::new(
        name.to_owned(),
        help.to_owned(),
        labels.iter().map(|l| (*l).to_owned()).collect(),
        HashMap::new(),
    )
}

/// One family: `desc`'s name and help, of `kind`, with `metrics` as its samples.
pub(super) fn family(desc: &Desc, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

/// A sample's labels, in the order of its family's label names.
pub(super) fn labels(pairs: &[(&str, String)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value(value.clone());
            pair
        })
        .collect()
}

/// A counter sample.
pub(super) fn counter(value: u64, pairs: &[(&str, String)]) -> Metric {
    let mut counter = Counter::default();
    counter.set_value(value as f64);
    let mut metric = Metric::from_label(labels(pairs));
    metric.set_counter(counter);
    metric
}

/// A gauge sample without labels.
pub(super) fn gauge(value: u64) -> Metric {
    let mut gauge = Gauge::default();
    gauge.set_value(value as f64);
    Metric::from_gauge(gauge)
}

/// One of the workers' [`Stats`] as a metric.
struct WorkerMetric {
    /// The metric's name.
    name: &'static str,
    /// Its help text.
    help: &'static str,
    /// Gauge or counter.
    kind: MetricType,
    /// Which field of [`Stats`] it shows.
    field: fn(&Stats) -> u64,
}

/// The workers' [`Stats`], each as a metric (the error replies, which have labels, are
/// [`ERROR_REPLIES_HELP`]'s family).
const WORKER_METRICS: [WorkerMetric; 6] = [
    WorkerMetric {
        name: "fastsmtpd_connections_open",
        help: "Connections open now.",
        kind: MetricType::GAUGE,
        field: |s| s.open_connections,
    },
    WorkerMetric {
        name: "fastsmtpd_connections_total",
        help: "Connections accepted.",
        kind: MetricType::COUNTER,
        field: |s| s.connections,
    },
    WorkerMetric {
        name: "fastsmtpd_connections_refused_total",
        help: "Connections refused with 421 at the connection limit.",
        kind: MetricType::COUNTER,
        field: |s| s.refused_connections,
    },
    WorkerMetric {
        name: "fastsmtpd_messages_total",
        help: "Messages accepted with 250.",
        kind: MetricType::COUNTER,
        field: |s| s.messages,
    },
    WorkerMetric {
        name: "fastsmtpd_message_bytes_total",
        help: "Content octets of accepted messages.",
        kind: MetricType::COUNTER,
        field: |s| s.bytes,
    },
    WorkerMetric {
        name: "fastsmtpd_timeouts_total",
        help: "Sessions closed by a timeout.",
        kind: MetricType::COUNTER,
        field: |s| s.timeouts,
    },
];

/// `fastsmtpd_command_errors_total{class, origin}`: what it counts, for whoever reads a scrape.
const ERROR_REPLIES_HELP: &str = "Every 4xx/5xx reply sent in SMTP sessions (to commands, at the end of a message, and 421 when a session is closed), by class (4xx, 5xx) and origin (protocol: the server's own rules, limits, stores and timeouts; fault: a --fault rule). Connections refused at accept are fastsmtpd_connections_refused_total.";

/// The error-reply counters as samples of `fastsmtpd_command_errors_total{class, origin}`.
fn error_samples(errors: &crate::proto::reply::ErrorReplies) -> Vec<Metric> {
    let mut samples = Vec::new();
    for (origin, counts) in [("protocol", &errors.protocol), ("fault", &errors.fault)] {
        for (class, count) in ["4xx", "5xx"].iter().zip(counts) {
            samples.push(counter(
                *count,
                &[
                    ("class", (*class).to_string()),
                    ("origin", origin.to_string()),
                ],
            ));
        }
    }
    samples
}

/// The TLS and AUTH families (from [`crate::stats::SecurityStats`]).
#[derive(Debug)]
struct SecurityDescs {
    /// `fastsmtpd_tls_handshakes_total{version, resumed}`.
    handshakes: Desc,
    /// `fastsmtpd_tls_handshake_failures_total{reason}`.
    failures: Desc,
    /// `fastsmtpd_starttls_total`.
    starttls: Desc,
    /// `fastsmtpd_starttls_discarded_input_total`.
    discarded: Desc,
    /// `fastsmtpd_auth_attempts_total{result}`.
    auth: Desc,
    /// `fastsmtpd_auth_abandoned_total`.
    abandoned: Desc,
    /// `fastsmtpd_tls_handshakes_refused_total`.
    handshakes_refused: Desc,
}

impl SecurityDescs {
    fn new() -> prometheus::Result<SecurityDescs> {
        Ok(SecurityDescs {
            handshakes: desc(
                "fastsmtpd_tls_handshakes_total",
                "TLS handshakes completed (implicit TLS and STARTTLS), by protocol version and whether the session was resumed.",
                &["version", "resumed"],
            )?,
            failures: desc(
                "fastsmtpd_tls_handshake_failures_total",
                "TLS handshakes that failed, by reason: timeout, closed, alert, incompatible, garbage.",
                &["reason"],
            )?,
            starttls: desc(
                "fastsmtpd_starttls_total",
                "STARTTLS commands answered 220.",
                &[],
            )?,
            discarded: desc(
                "fastsmtpd_starttls_discarded_input_total",
                "STARTTLS commands with plaintext behind them in the same read, which was discarded (RFC 3207 4.2).",
                &[],
            )?,
            auth: desc(
                "fastsmtpd_auth_attempts_total",
                "AUTH attempts answered, by result: success (235), failure (535), busy (454: the checks pending for the client or in all are at their limit), rate_limited (454: the client failed too often within the window).",
                &["result"],
            )?,
            abandoned: desc(
                "fastsmtpd_auth_abandoned_total",
                "AUTH attempts whose connection closed before the verdict (the client hung up or timed out while its password was being checked).",
                &[],
            )?,
            handshakes_refused: desc(
                "fastsmtpd_tls_handshakes_refused_total",
                "TLS handshakes refused, the connection closed without a byte, because the client address started more full handshakes per second than --tls-handshake-rate-per-ip.",
                &[],
            )?,
        })
    }

    fn collect(&self, security: &crate::stats::SecurityStats) -> Vec<MetricFamily> {
        use crate::stats::{HandshakeFailure, TlsVersion};
        let mut handshakes = Vec::new();
        for version in TlsVersion::ALL {
            let counts = security.handshakes_of(version);
            for (resumed, count) in ["false", "true"].iter().zip(counts) {
                handshakes.push(counter(
                    count,
                    &[
                        ("version", version.name().to_string()),
                        ("resumed", (*resumed).to_string()),
                    ],
                ));
            }
        }
        let failures = HandshakeFailure::ALL
            .iter()
            .map(|why| {
                counter(
                    security.failures_of(*why),
                    &[("reason", why.name().to_string())],
                )
            })
            .collect();
        let auth = vec![
            counter(
                security.auth_successes,
                &[("result", "success".to_string())],
            ),
            counter(security.auth_failures, &[("result", "failure".to_string())]),
            counter(security.auth_busy, &[("result", "busy".to_string())]),
            counter(
                security.auth_limited,
                &[("result", "rate_limited".to_string())],
            ),
        ];
        vec![
            family(&self.handshakes, MetricType::COUNTER, handshakes),
            family(&self.failures, MetricType::COUNTER, failures),
            family(
                &self.starttls,
                MetricType::COUNTER,
                vec![counter(security.starttls, &[])],
            ),
            family(
                &self.discarded,
                MetricType::COUNTER,
                vec![counter(security.starttls_discarded, &[])],
            ),
            family(&self.auth, MetricType::COUNTER, auth),
            family(
                &self.abandoned,
                MetricType::COUNTER,
                vec![counter(security.auth_abandoned, &[])],
            ),
            family(
                &self.handshakes_refused,
                MetricType::COUNTER,
                vec![counter(security.handshakes_refused, &[])],
            ),
        ]
    }
}

/// The counters each worker publishes once per loop turn, summed over workers.
#[derive(Debug)]
struct WorkerCollector {
    /// Each worker's published counters.
    workers: Vec<Arc<SharedStats>>,
    /// One per entry of [`WORKER_METRICS`], in its order.
    descs: Vec<Desc>,
    /// `fastsmtpd_command_errors_total{class, origin}`.
    errors: Desc,
    /// The TLS and AUTH families.
    security: SecurityDescs,
}

impl WorkerCollector {
    fn new(workers: Vec<Arc<SharedStats>>) -> prometheus::Result<Self> {
        let descs = WORKER_METRICS
            .iter()
            .map(|metric| desc(metric.name, metric.help, &[]))
            .collect::<prometheus::Result<_>>()?;
        Ok(WorkerCollector {
            workers,
            descs,
            errors: desc(
                "fastsmtpd_command_errors_total",
                ERROR_REPLIES_HELP,
                &["class", "origin"],
            )?,
            security: SecurityDescs::new()?,
        })
    }
}

impl Collector for WorkerCollector {
    fn desc(&self) -> Vec<&Desc> {
        let security = &self.security;
        self.descs
            .iter()
            .chain([
                &self.errors,
                &security.handshakes,
                &security.failures,
                &security.starttls,
                &security.discarded,
                &security.auth,
                &security.abandoned,
                &security.handshakes_refused,
            ])
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshots: Vec<Stats> = self.workers.iter().map(|w| w.snapshot()).collect();
        let stats = Stats::sum(&snapshots);
        let security = self.security.collect(&stats.security);
        WORKER_METRICS
            .iter()
            .zip(&self.descs)
            .map(|(metric, desc)| {
                let value = (metric.field)(&stats);
                let sample = match metric.kind {
                    MetricType::GAUGE => gauge(value),
                    _ => counter(value, &[]),
                };
                family(desc, metric.kind, vec![sample])
            })
            .chain([family(
                &self.errors,
                MetricType::COUNTER,
                error_samples(&stats.error_replies),
            )])
            .chain(security)
            .collect()
    }
}

/// Replies issued (as sessions produce them), by code, summed over workers; codes never issued are left out.
#[derive(Debug)]
struct ReplyCollector {
    /// Each worker's reply counts.
    replies: Vec<Arc<ReplyCounts>>,
    /// `fastsmtpd_replies_total{code}`.
    desc: Desc,
}

impl Collector for ReplyCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut totals = vec![0u64; ReplyCounts::LEN];
        for worker in &self.replies {
            worker.add_into(&mut totals);
        }
        let samples = totals
            .iter()
            .zip(FIRST_CODE..)
            .filter(|(n, _)| **n > 0)
            .map(|(n, code)| counter(*n, &[("code", code.to_string())]))
            .collect();
        // An empty family is left out of the exposition by the registry.
        vec![family(&self.desc, MetricType::COUNTER, samples)]
    }
}

/// How often each fault rule fired: the startup and runtime rules one by one, labelled by
/// their set and text; the mailboxes' plans together (there may be 10 000 of them).
#[derive(Debug)]
struct FaultCollector {
    /// The server's fault plans and their counters.
    plans: Arc<Plans>,
    /// `fastsmtpd_faults_fired_total{set, rule}`.
    fired: Desc,
    /// `fastsmtpd_mailbox_faults_fired_total`.
    mailbox_fired: Desc,
    /// `fastsmtpd_mailbox_fault_plans`.
    mailbox_plans: Desc,
}

impl Collector for FaultCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.fired, &self.mailbox_fired, &self.mailbox_plans]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let sets = [
            ("startup", self.plans.startup().fired()),
            ("runtime", self.plans.runtime_fired()),
        ];
        let samples = sets
            .into_iter()
            .flat_map(|(set, fired)| {
                fired
                    .into_iter()
                    .map(move |(rule, n)| counter(n, &[("set", set.to_owned()), ("rule", rule)]))
            })
            .collect();
        vec![
            family(&self.fired, MetricType::COUNTER, samples),
            family(
                &self.mailbox_fired,
                MetricType::COUNTER,
                vec![counter(self.plans.scoped_fired(), &[])],
            ),
            family(
                &self.mailbox_plans,
                MetricType::GAUGE,
                vec![gauge(self.plans.scoped_count() as u64)],
            ),
        ]
    }
}

/// The store-latency histogram and the store failures.
#[derive(Debug)]
struct StoreCollector {
    /// What the storage threads record.
    store: Arc<StoreLatency>,
    /// `fastsmtpd_store_seconds` (histogram).
    latency: Desc,
    /// `fastsmtpd_store_failures_total`.
    failures: Desc,
}

impl Collector for StoreCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.latency, &self.failures]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let store = &self.store;
        // The storage threads update the buckets, then the count, with no lock: a scrape can
        // land between the two. A running maximum keeps the exposition a valid histogram
        // (cumulative counts never decrease, `+Inf` equals `_count`).
        let mut running = 0;
        let buckets = STORE_BUCKETS
            .iter()
            .zip(&store.buckets)
            .map(|(bound, count)| {
                running = running.max(count.load(Ordering::Relaxed));
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(*bound);
                bucket.set_cumulative_count(running);
                bucket
            })
            .collect();
        let mut histogram = Histogram::default();
        histogram.set_bucket(buckets);
        histogram.set_sample_count(running.max(store.count.load(Ordering::Relaxed)));
        histogram.set_sample_sum(store.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        let mut metric = Metric::default();
        metric.set_histogram(histogram);
        let failures = store.failures.load(Ordering::Relaxed);
        vec![
            family(&self.latency, MetricType::HISTOGRAM, vec![metric]),
            family(
                &self.failures,
                MetricType::COUNTER,
                vec![counter(failures, &[])],
            ),
        ]
    }
}

/// Which field of the capture store's [`crate::capture::Stats`] a gauge shows.
type CaptureField = fn(&crate::capture::Stats) -> u64;

/// The capture store's gauges and counters, from [`Capture::stats`] at each scrape.
#[derive(Debug)]
struct CaptureCollector {
    /// The store.
    capture: Arc<Capture>,
    /// Gauges without labels, with the [`crate::capture::Stats`] field each shows.
    gauges: Vec<(Desc, CaptureField)>,
    /// `fastsmtpd_capture_inserted_total`.
    inserted: Desc,
    /// `fastsmtpd_capture_evictions_total{reason}`.
    evictions: Desc,
    /// `fastsmtpd_capture_deleted_total`.
    deleted: Desc,
    /// `fastsmtpd_capture_refused_total{reason}`.
    refused: Desc,
}

impl CaptureCollector {
    fn new(capture: Arc<Capture>) -> prometheus::Result<CaptureCollector> {
        let gauges: [(&str, &str, CaptureField); 5] = [
            (
                "fastsmtpd_capture_messages",
                "Messages kept in the capture store now.",
                |s| s.messages as u64,
            ),
            (
                "fastsmtpd_capture_bytes",
                "Octets the capture store charges now: raw messages plus the index overhead per message (compare with fastsmtpd_capture_budget_bytes).",
                |s| s.bytes,
            ),
            (
                "fastsmtpd_capture_budget_bytes",
                "The capture store's byte budget: --capture-memory less the share of the API's cache of parsed views (an eighth, at most 32 MiB, with --api).",
                |s| s.max_bytes,
            ),
            (
                "fastsmtpd_capture_tombstones",
                "Ids of removed messages remembered (they answer 410 Gone, not 404).",
                |s| s.tombstones as u64,
            ),
            (
                "fastsmtpd_capture_waiters",
                "Waiters registered on the capture store now.",
                |s| s.waiters as u64,
            ),
        ];
        Ok(CaptureCollector {
            capture,
            gauges: gauges
                .into_iter()
                .map(|(name, help, field)| Ok((desc(name, help, &[])?, field)))
                .collect::<prometheus::Result<_>>()?,
            inserted: desc(
                "fastsmtpd_capture_inserted_total",
                "Messages the capture store took.",
                &[],
            )?,
            evictions: desc(
                "fastsmtpd_capture_evictions_total",
                "Messages the capture store dropped to make room or for age, by reason: budget (--capture-memory), count (--capture-max-messages), age (--capture-max-age).",
                &["reason"],
            )?,
            deleted: desc(
                "fastsmtpd_capture_deleted_total",
                "Messages deleted from the capture store by clients.",
                &[],
            )?,
            refused: desc(
                "fastsmtpd_capture_refused_total",
                "Messages the capture store refused, by reason: full (--on-full tempfail, 452 4.3.1), too_large (over the whole budget, 552 5.3.4), duplicate_id (a bug, 451 4.3.0). Beside file stores the client still got 250.",
                &["reason"],
            )?,
        })
    }
}

impl Collector for CaptureCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges
            .iter()
            .map(|(desc, _)| desc)
            .chain([
                &self.inserted,
                &self.evictions,
                &self.deleted,
                &self.refused,
            ])
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.capture.stats();
        let by_reason = |pairs: &[(&str, u64)]| -> Vec<Metric> {
            pairs
                .iter()
                .map(|(reason, n)| counter(*n, &[("reason", (*reason).to_string())]))
                .collect()
        };
        self.gauges
            .iter()
            .map(|(desc, field)| family(desc, MetricType::GAUGE, vec![gauge(field(&stats))]))
            .chain([
                family(
                    &self.inserted,
                    MetricType::COUNTER,
                    vec![counter(stats.inserted, &[])],
                ),
                family(
                    &self.evictions,
                    MetricType::COUNTER,
                    by_reason(&[
                        ("budget", stats.evicted_bytes),
                        ("count", stats.evicted_count),
                        ("age", stats.expired),
                    ]),
                ),
                family(
                    &self.deleted,
                    MetricType::COUNTER,
                    vec![counter(stats.deleted, &[])],
                ),
                family(
                    &self.refused,
                    MetricType::COUNTER,
                    by_reason(&[
                        ("full", stats.refused_full),
                        ("too_large", stats.refused_too_large),
                        ("duplicate_id", stats.refused_duplicate),
                    ]),
                ),
            ])
            .collect()
    }
}

/// A collector another room owns, registered by reference.
struct SharedCollector(Arc<dyn Collector>);

impl Collector for SharedCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

/// A registry with a collector for each of `source`'s parts.
pub(super) fn registry(source: &super::MetricsSource) -> prometheus::Result<Registry> {
    let registry = Registry::new();
    for collector in &source.collectors.0 {
        registry.register(Box::new(SharedCollector(Arc::clone(collector))))?;
    }
    registry.register(Box::new(WorkerCollector::new(source.workers.clone())?))?;
    registry.register(Box::new(ReplyCollector {
        replies: source.replies.clone(),
        desc: desc(
            "fastsmtpd_replies_total",
            "Replies issued, by code.",
            &["code"],
        )?,
    }))?;
    if let Some(plans) = &source.faults {
        registry.register(Box::new(FaultCollector {
            plans: Arc::clone(plans),
            fired: desc(
                "fastsmtpd_faults_fired_total",
                "Times each fault rule fired, by set (startup: --fault and --fault-file; runtime: PUT /api/v1/faults, the set in force) and rule text.",
                &["set", "rule"],
            )?,
            mailbox_fired: desc(
                "fastsmtpd_mailbox_faults_fired_total",
                "Times a rule of a mailbox's fault plan fired, all mailboxes together, since start.",
                &[],
            )?,
            mailbox_plans: desc(
                "fastsmtpd_mailbox_fault_plans",
                "Mailboxes with a fault plan now.",
                &[],
            )?,
        }))?;
    }
    if let Some(capture) = &source.capture {
        registry.register(Box::new(CaptureCollector::new(Arc::clone(capture))?))?;
    }
    if let Some(store) = &source.store {
        registry.register(Box::new(StoreCollector {
            store: Arc::clone(store),
            latency: desc(
                "fastsmtpd_store_seconds",
                "Time from end of data to the storage verdict.",
                &[],
            )?,
            failures: desc(
                "fastsmtpd_store_failures_total",
                "Messages a store could not keep (451).",
                &[],
            )?,
        }))?;
    }
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_between_bucket_and_count_updates_still_gives_a_valid_histogram() {
        // As if read while an observation had reached its first bucket but not the others,
        // nor the count.
        let store = Arc::new(StoreLatency::default());
        store.buckets[0].store(3, Ordering::Relaxed);
        store.buckets[1].store(2, Ordering::Relaxed);
        store.count.store(2, Ordering::Relaxed);
        let collector = StoreCollector {
            store,
            latency: desc("fastsmtpd_store_seconds", "h", &[]).unwrap(),
            failures: desc("fastsmtpd_store_failures_total", "h", &[]).unwrap(),
        };
        let families = collector.collect();
        let histogram = families[0].get_metric()[0].get_histogram();
        let counts: Vec<u64> = histogram
            .get_bucket()
            .iter()
            .map(|b| b.cumulative_count())
            .collect();
        assert_eq!(counts, [3; STORE_BUCKETS.len()]);
        assert_eq!(histogram.get_sample_count(), 3);
    }

    #[test]
    fn reply_codes_never_sent_are_left_out() {
        let counts = Arc::new(ReplyCounts::default());
        counts.set(250, 4);
        let source = super::super::MetricsSource {
            workers: vec![Arc::new(SharedStats::default())],
            replies: vec![counts],
            store: None,
            faults: None,
            capture: None,
            relay: None,
            collectors: Default::default(),
        };
        let text = source.render().unwrap();
        let replies: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("fastsmtpd_replies_total"))
            .collect();
        assert_eq!(replies, ["fastsmtpd_replies_total{code=\"250\"} 4"]);
    }
}
