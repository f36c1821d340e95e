//! The relay's metrics: its queue by state, the oldest message's age, delivery attempts by
//! outcome, notifications, connections per next hop, connect failures, the accept→delivered
//! latency histogram and the spool's bytes on disk.
//!
//! What it does: read the delivery loop's [`DeliveryStats`] (counters where the loop counts,
//! gauges it publishes once a second) and `stat` the spool's files at each scrape. What it
//! does not do: count, or touch the delivery loop or the spool's lock.

use super::collect::{counter, desc, family, gauge, labels};
use super::RelaySource;
use crate::relay::deliver::{DeliveryStats, DELIVERED_BUCKETS_SECONDS};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Gauge, Histogram, Metric, MetricFamily, MetricType};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The relay's collector.
#[derive(Debug)]
pub(super) struct RelayCollector {
    /// What it reads.
    source: RelaySource,
    /// `fastsmtpd_relay_queue_messages{state}`.
    queue: Desc,
    /// `fastsmtpd_relay_queue_oldest_age_seconds`.
    oldest: Desc,
    /// `fastsmtpd_relay_delivery_attempts_total{outcome}`.
    attempts: Desc,
    /// `fastsmtpd_relay_notifications_total`.
    notifications: Desc,
    /// `fastsmtpd_relay_messages_done_total`.
    done: Desc,
    /// `fastsmtpd_relay_connections{hop}`.
    connections: Desc,
    /// `fastsmtpd_relay_connections_opened_total`.
    opened: Desc,
    /// `fastsmtpd_relay_connect_failures_total`.
    connect_failures: Desc,
    /// `fastsmtpd_relay_delivered_latency_seconds`.
    latency: Desc,
    /// `fastsmtpd_relay_spool_bytes`.
    spool_bytes: Desc,
}

impl RelayCollector {
    /// The collector of `source`.
    pub(super) fn new(source: RelaySource) -> prometheus::Result<RelayCollector> {
        Ok(RelayCollector {
            source,
            queue: desc(
                "fastsmtpd_relay_queue_messages",
                "Messages in the relay's queue by state: active (a connection has it), ready (due, waiting for a connection), deferred (waiting for a retry), held (on disk beyond the in-memory active set).",
                &["state"],
            )?,
            oldest: desc(
                "fastsmtpd_relay_queue_oldest_age_seconds",
                "Age of the oldest message in the relay's queue (0 when empty).",
                &[],
            )?,
            attempts: desc(
                "fastsmtpd_relay_delivery_attempts_total",
                "Recipient delivery attempts by outcome (delivered, deferred, failed for good).",
                &["outcome"],
            )?,
            notifications: desc(
                "fastsmtpd_relay_notifications_total",
                "Failure notifications (RFC 3464) spooled.",
                &[],
            )?,
            done: desc(
                "fastsmtpd_relay_messages_done_total",
                "Messages that left the queue with every recipient delivered or failed.",
                &[],
            )?,
            connections: desc(
                "fastsmtpd_relay_connections",
                "Connections open to each next hop.",
                &["hop"],
            )?,
            opened: desc(
                "fastsmtpd_relay_connections_opened_total",
                "Connections opened to next hops.",
                &[],
            )?,
            connect_failures: desc(
                "fastsmtpd_relay_connect_failures_total",
                "Connections to next hops that failed before their session was ready (refused, timed out, greeted with 421/554).",
                &[],
            )?,
            latency: desc(
                "fastsmtpd_relay_delivered_latency_seconds",
                "Time from a message's acceptance (its spool arrival time) to a recipient's delivering 250.",
                &[],
            )?,
            spool_bytes: desc(
                "fastsmtpd_relay_spool_bytes",
                "Bytes of the spool on disk (segments and journal).",
                &[],
            )?,
        })
    }

    /// The latency histogram, kept valid (cumulative, `+Inf` = count) when a scrape lands
    /// between an observation's bucket and count updates.
    fn histogram(&self) -> Metric {
        let latency = &self.source.stats.delivered_latency;
        let mut running = 0;
        let buckets = DELIVERED_BUCKETS_SECONDS
            .iter()
            .zip(&latency.buckets)
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
        histogram.set_sample_count(running.max(latency.count.load(Ordering::Relaxed)));
        histogram.set_sample_sum(latency.sum_ms.load(Ordering::Relaxed) as f64 / 1e3);
        let mut metric = Metric::default();
        metric.set_histogram(histogram);
        metric
    }
}

/// A gauge sample with labels.
fn labelled_gauge(value: u64, pairs: &[(&str, String)]) -> Metric {
    let mut sample = Gauge::default();
    sample.set_value(value as f64);
    let mut metric = Metric::from_label(labels(pairs));
    metric.set_gauge(sample);
    metric
}

impl Collector for RelayCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![
            &self.queue,
            &self.oldest,
            &self.attempts,
            &self.notifications,
            &self.done,
            &self.connections,
            &self.opened,
            &self.connect_failures,
            &self.latency,
            &self.spool_bytes,
        ]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = &self.source.stats;
        let get = |counter: &AtomicU64| DeliveryStats::get(counter);
        let queue = [
            ("active", &stats.queue_active),
            ("ready", &stats.queue_ready),
            ("deferred", &stats.queue_deferred),
            ("held", &stats.queue_held),
        ]
        .into_iter()
        .map(|(state, value)| labelled_gauge(get(value), &[("state", state.to_owned())]))
        .collect();
        let oldest = get(&stats.oldest_arrival_unix_ms);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let age = if oldest == 0 {
            0
        } else {
            now_ms.saturating_sub(oldest) / 1000
        };
        let attempts = [
            ("delivered", &stats.delivered),
            ("deferred", &stats.deferred),
            ("failed", &stats.failed),
        ]
        .into_iter()
        .map(|(outcome, value)| counter(get(value), &[("outcome", outcome.to_owned())]))
        .collect();
        let connections = self
            .source
            .hops
            .iter()
            .zip(&stats.hop_connections)
            .map(|(hop, value)| labelled_gauge(get(value), &[("hop", hop.clone())]))
            .collect();
        // A spool that cannot be read now (removed under us) shows 0 rather than failing
        // the whole scrape.
        let spool_bytes = crate::relay::spool::disk_bytes(&self.source.spool).unwrap_or(0);
        vec![
            family(&self.queue, MetricType::GAUGE, queue),
            family(&self.oldest, MetricType::GAUGE, vec![gauge(age)]),
            family(&self.attempts, MetricType::COUNTER, attempts),
            family(
                &self.notifications,
                MetricType::COUNTER,
                vec![counter(get(&stats.notifications), &[])],
            ),
            family(
                &self.done,
                MetricType::COUNTER,
                vec![counter(get(&stats.messages_done), &[])],
            ),
            family(&self.connections, MetricType::GAUGE, connections),
            family(
                &self.opened,
                MetricType::COUNTER,
                vec![counter(get(&stats.connections), &[])],
            ),
            family(
                &self.connect_failures,
                MetricType::COUNTER,
                vec![counter(get(&stats.connect_failures), &[])],
            ),
            family(&self.latency, MetricType::HISTOGRAM, vec![self.histogram()]),
            family(
                &self.spool_bytes,
                MetricType::GAUGE,
                vec![gauge(spool_bytes)],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsSource;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn relay_metrics_render_with_units_and_labels() {
        let stats = Arc::new(DeliveryStats::with_hops(2));
        stats.delivered.store(3, Ordering::Relaxed);
        stats.queue_deferred.store(5, Ordering::Relaxed);
        stats.hop_connections[1].store(4, Ordering::Relaxed);
        stats.delivered_latency.observe(Duration::from_millis(30));
        stats.delivered_latency.observe(Duration::from_secs(7200));
        let source = MetricsSource {
            workers: vec![],
            replies: vec![],
            store: None,
            faults: None,
            capture: None,
            relay: Some(RelaySource {
                stats,
                spool: std::path::PathBuf::from("/nonexistent-spool"),
                hops: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
            }),
            collectors: Default::default(),
        };
        let text = source.render().unwrap();
        for line in [
            "fastsmtpd_relay_delivery_attempts_total{outcome=\"delivered\"} 3\n",
            "fastsmtpd_relay_queue_messages{state=\"deferred\"} 5\n",
            "fastsmtpd_relay_connections{hop=\"127.0.0.1:2\"} 4\n",
            "fastsmtpd_relay_delivered_latency_seconds_bucket{le=\"0.05\"} 1\n",
            "fastsmtpd_relay_delivered_latency_seconds_bucket{le=\"86400\"} 2\n",
            "fastsmtpd_relay_delivered_latency_seconds_count 2\n",
            "fastsmtpd_relay_queue_oldest_age_seconds 0\n",
            "fastsmtpd_relay_spool_bytes 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
