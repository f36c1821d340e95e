//! `--metrics ADDR`: Prometheus text metrics over HTTP, for watching a sink while senders
//! run against it.
//!
//! What it does: keep the counters the workers and storage threads do not already publish
//! (replies sent, by code; store latency), and serve every counter on a small blocking HTTP
//! endpoint on its own thread: any `GET` gets the whole text exposition (format 0.0.4).
//!
//! What it does not do: run on an event loop (a scrape never delays mail), keep history, or
//! speak more HTTP than a scraper needs (one request per connection, `Connection: close`).

use crate::fault::FaultRules;
use crate::stats::{SharedStats, Stats};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::proto::reply::{FIRST_CODE, LAST_CODE};

/// Replies issued by one worker's sessions, per code: published by that worker from its
/// tally once per loop turn, read by scrapes.
#[derive(Debug)]
pub struct ReplyCounts {
    counts: Box<[AtomicU64]>,
}

impl Default for ReplyCounts {
    fn default() -> Self {
        ReplyCounts {
            counts: (FIRST_CODE..=LAST_CODE)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl ReplyCounts {
    /// Publishes the total of replies with `code` (written by the worker that owns these
    /// counts, from its [`crate::proto::reply::ReplyTally`]).
    pub fn set(&self, code: u16, total: u64) {
        if (FIRST_CODE..=LAST_CODE).contains(&code) {
            self.counts[usize::from(code - FIRST_CODE)].store(total, Ordering::Relaxed);
        }
    }

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
    buckets: [AtomicU64; STORE_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
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
    /// Fault rules, when configured.
    pub faults: Option<Arc<FaultRules>>,
}

/// Escapes a label value (Prometheus text format: backslash, quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl MetricsSource {
    /// The text exposition.
    pub fn render(&self) -> String {
        let stats = Stats::sum(
            &self
                .workers
                .iter()
                .map(|w| w.snapshot())
                .collect::<Vec<_>>(),
        );
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "fastsmtpd_connections_open",
            "gauge",
            "Connections open now.",
            stats.open_connections,
        );
        metric(
            "fastsmtpd_connections_total",
            "counter",
            "Connections accepted.",
            stats.connections,
        );
        metric(
            "fastsmtpd_connections_refused_total",
            "counter",
            "Connections refused with 421 at the connection limit.",
            stats.refused_connections,
        );
        metric(
            "fastsmtpd_messages_total",
            "counter",
            "Messages accepted with 250.",
            stats.messages,
        );
        metric(
            "fastsmtpd_message_bytes_total",
            "counter",
            "Content octets of accepted messages.",
            stats.bytes,
        );
        metric(
            "fastsmtpd_command_errors_total",
            "counter",
            "Failed commands (4xx/5xx replies) in sessions that have ended.",
            stats.errors,
        );
        metric(
            "fastsmtpd_timeouts_total",
            "counter",
            "Sessions closed by a timeout.",
            stats.timeouts,
        );
        let mut codes = vec![0u64; usize::from(LAST_CODE - FIRST_CODE) + 1];
        for worker in &self.replies {
            worker.add_into(&mut codes);
        }
        let _ = writeln!(
            out,
            "# HELP fastsmtpd_replies_total Replies issued, by code.\n# TYPE fastsmtpd_replies_total counter"
        );
        for (i, n) in codes.iter().enumerate().filter(|(_, n)| **n > 0) {
            let _ = writeln!(
                out,
                "fastsmtpd_replies_total{{code=\"{}\"}} {n}",
                FIRST_CODE as usize + i
            );
        }
        if let Some(faults) = &self.faults {
            let _ = writeln!(
                out,
                "# HELP fastsmtpd_faults_fired_total Times each fault rule fired.\n# TYPE fastsmtpd_faults_fired_total counter"
            );
            for (rule, n) in faults.fired() {
                let _ = writeln!(
                    out,
                    "fastsmtpd_faults_fired_total{{rule=\"{}\"}} {n}",
                    label(&rule)
                );
            }
        }
        if let Some(store) = &self.store {
            let _ = writeln!(
                out,
                "# HELP fastsmtpd_store_seconds Time from end of data to the storage verdict.\n# TYPE fastsmtpd_store_seconds histogram"
            );
            for (bound, bucket) in STORE_BUCKETS.iter().zip(&store.buckets) {
                let _ = writeln!(
                    out,
                    "fastsmtpd_store_seconds_bucket{{le=\"{bound}\"}} {}",
                    bucket.load(Ordering::Relaxed)
                );
            }
            let count = store.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "fastsmtpd_store_seconds_bucket{{le=\"+Inf\"}} {count}");
            let _ = writeln!(
                out,
                "fastsmtpd_store_seconds_sum {}",
                store.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
            );
            let _ = writeln!(out, "fastsmtpd_store_seconds_count {count}");
            let _ = writeln!(
                out,
                "# HELP fastsmtpd_store_failures_total Messages a store could not keep (451).\n# TYPE fastsmtpd_store_failures_total counter\nfastsmtpd_store_failures_total {}",
                store.failures.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// The metrics endpoint's thread.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long a scrape may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_REQUEST: usize = 8192;

impl MetricsServer {
    /// Binds `addr` and serves `source` until [`MetricsServer::stop`].
    pub fn start(addr: SocketAddr, source: MetricsSource) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("--metrics {addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("fastsmtpd-metrics".into())
            .spawn(move || {
                while !stopping.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = answer(stream, &source);
                        }
                        // Nothing waiting (or a transient error): look again shortly.
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request head and answers it.
fn answer(mut stream: TcpStream, source: &MetricsSource) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() > MAX_REQUEST || Instant::now() > deadline {
            return respond(&mut stream, "431 Request Header Fields Too Large", "");
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    if !head.starts_with(b"GET ") && !head.starts_with(b"HEAD ") {
        return respond(&mut stream, "405 Method Not Allowed", "only GET\n");
    }
    let body = source.render();
    if head.starts_with(b"HEAD ") {
        return respond(&mut stream, "200 OK", "");
    }
    respond(&mut stream, "200 OK", &body)
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
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
        };
        let text = source.render();
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
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
