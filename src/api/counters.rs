//! The API's own metrics, as `prometheus` collectors the metrics endpoint can register
//! ([`ApiCounters::register`]): the waiters of `await`, the event-stream subscribers, the
//! `lagged` events sent, the time to answer each route, and how soon an `await` returns
//! after the message it waited for arrived.
//!
//! What it does not do: serve them (the `--metrics` endpoint does), or count the store (its
//! [`crate::capture::Stats`] does).

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntGauge, Opts, Registry};
use std::sync::Arc;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The API's collectors; clones share their values.
#[derive(Debug, Clone)]
pub struct ApiCounters {
    /// `fastsmtpd_api_waiters`: `await` requests waiting now.
    pub waiters: IntGauge,
    /// `fastsmtpd_api_event_subscribers`: event streams open now.
    pub subscribers: IntGauge,
    /// `fastsmtpd_api_lagged_events_total`: `lagged` and `gone-lagged` events sent.
    pub lagged: IntCounter,
    /// `fastsmtpd_api_request_duration_seconds{route}`: from the request head to the
    /// response head (an await's wait included; an event stream's life not).
    pub requests: HistogramVec,
    /// `fastsmtpd_api_await_return_seconds`: from the arrival (`received_at`) of the message
    /// that completed a waiting `await` to its answer.
    pub await_return: Histogram,
}

impl ApiCounters {
    /// New collectors, all zero.
    pub fn new() -> ApiCounters {
        let buckets = BUCKETS.to_vec();
        ApiCounters {
            waiters: IntGauge::new("fastsmtpd_api_waiters", "await requests waiting now")
                .expect("a valid name"),
            subscribers: IntGauge::new(
                "fastsmtpd_api_event_subscribers",
                "server-sent event streams open now",
            )
            .expect("a valid name"),
            lagged: IntCounter::new(
                "fastsmtpd_api_lagged_events_total",
                "lagged events sent to event-stream subscribers",
            )
            .expect("a valid name"),
            requests: HistogramVec::new(
                HistogramOpts::from(Opts::new(
                    "fastsmtpd_api_request_duration_seconds",
                    "time from an API request's head to its response's head, by route",
                ))
                .buckets(buckets.clone()),
                &["route"],
            )
            .expect("a valid name"),
            await_return: Histogram::with_opts(
                HistogramOpts::new(
                    "fastsmtpd_api_await_return_seconds",
                    "time from the arrival of the message that completed an await to its answer",
                )
                .buckets(buckets),
            )
            .expect("a valid name"),
        }
    }

    /// Every collector, for the metrics endpoint's registry ([`crate::metrics::Collectors`]).
    pub fn collectors(&self) -> crate::metrics::Collectors {
        crate::metrics::Collectors(vec![
            Arc::new(self.waiters.clone()),
            Arc::new(self.subscribers.clone()),
            Arc::new(self.lagged.clone()),
            Arc::new(self.requests.clone()),
            Arc::new(self.await_return.clone()),
        ])
    }

    /// Registers every collector in `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.waiters.clone()))?;
        registry.register(Box::new(self.subscribers.clone()))?;
        registry.register(Box::new(self.lagged.clone()))?;
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.await_return.clone()))
    }
}

impl Default for ApiCounters {
    fn default() -> Self {
        ApiCounters::new()
    }
}
