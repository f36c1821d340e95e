//! The delivery loop: the relay's side that takes messages out of the spool and hands them
//! to the next hops, on its own thread with one mio `Poll` (as a server worker has).
//!
//! What it does: [`Deliverer::start`] takes the shared [`RelayQueue`], the messages the
//! spool recovered and a [`DeliveryConfig`], and runs the loop (`run`) until
//! [`DeliveryHandle::stop`]:
//! - **Which messages**: the recovered ones at start, then every id the accepting side
//!   commits ([`RelayQueue::committed`] wakes the loop). At most
//!   [`DeliveryConfig::active_max`] messages, with at most
//!   [`DeliveryConfig::active_recipients_max`] recipients among them, are in memory
//!   (envelope and recipient states, never a body); the ids beyond it wait in a list and are
//!   read from the spool as room appears (Postfix's bounded active queue).
//! - **When**: a message is due when a recipient was never tried, or at its deferred
//!   recipients' earliest next attempt (`schedule::DueQueue`); due messages wait in the
//!   ready queue for a connection.
//! - **Where**: [`Hops::pick`](crate::relay::schedule::Hops::pick) names the next hop for a new connection (in order or spread,
//!   each hop with its connection limit and its own back-off); a connection carries up to
//!   [`DeliveryConfig::messages_per_connection`] messages one transaction after another
//!   (those ready when it opened, then more from the ready queue), the body read from the
//!   spool (the lock held for the read only) when its transaction starts. A connection with
//!   nothing to carry stays open for 2 s (Postfix's connection cache time) and takes the
//!   next ready message before any new connection is opened; then it says `QUIT`.
//! - **Outcomes** (per recipient, from the session's `TransactionReport`): delivered and
//!   failed (`5yz`) are final; deferred (`4yz`, a timeout, a lost connection) counts an
//!   attempt and is retried by the [`RetryPolicy`], or fails with its last reply once the
//!   queue lifetime is over. Each state goes to the spool's journal as it is known, with
//!   the name of the next hop whose session gave its reply (`Remote-MTA` in a notification,
//!   RFC 3464 §2.3.5; none when no next hop sent a reply: `Conn::replied`).
//! - **A connection that fails before its session is ready** (refused, timed out, greeted
//!   with `421`/`554`): the hop is backed off (`HopHealth::on_connect_failed`) and its
//!   messages go back to the front of the ready queue *without* using an attempt, so another
//!   hop takes them. Decision: when every hop is then backed off, the batch's recipients are
//!   deferred *with* an attempt (`4.4.1 no next hop answered`), so a message whose every next
//!   hop stays dead still reaches its queue lifetime and a notification, instead of waiting
//!   forever.
//! - **When every recipient is final**: if any failed, `dsn` is on and the sender is not
//!   `<>`, the failure notification (RFC 3464, [`crate::relay::dsn`]) is appended to the spool
//!   and committed as a new message from `<>` to the sender, *before* the original is marked
//!   done (RFC 5321 §6.1: a message leaves the spool only once any notification is itself
//!   queued). The notification is then delivered like any message; its own failure never
//!   makes another (its reverse path is `<>`, §4.5.5).
//! - **Success and delay notifications** ([`notify`]): recipients that asked for `SUCCESS` and
//!   were accepted by a next hop without DSN get a `relayed` notification (RFC 3461 §5.2.2),
//!   spooled before their state; with [`DeliveryConfig::delay_warning`], a message deferred
//!   that long gets one `delayed` notification (its sending is remembered in memory only: a
//!   restart may send one more). A next hop that offers DSN gets `RET`, `ENVID`, `NOTIFY`
//!   and `ORCPT` unchanged (§5.2.1) and reports itself.
//! - **The queue tools** (`fastsmtpd queue`, [`crate::relay::admin`]) reach the loop through
//!   a Unix-domain socket in the spool directory that the loop serves in its own `Poll`
//!   (`run::control`: the design and its bounds); the loop's gauges for `--metrics` are
//!   counted at most once a second (`run::gauges`) into [`DeliveryStats`].
//! - The journal is synced at most every [`JOURNAL_SYNC_INTERVAL`] while it has news, and at
//!   stop. A state lost in a crash means a recipient tried again: a duplicate, never a loss.
//!
//! - **TLS and AUTH** ([`DeliveryConfig::tls`], [`tls`]): STARTTLS when the policy says so,
//!   the certificate verified under `required`; credentials only inside TLS (the session's
//!   rule). A session that ends before it is ready for a reason of its own (TLS required and
//!   not offered, or refused; a handshake or certificate that fails; AUTH refused, not
//!   offered, or impossible without TLS) is handled as a connection that failed: the hop is
//!   backed off and, when no other hop is open, the messages are deferred with that reason
//!   as their last reply (`4.7.4 TLS is required, but was not offered`, `4.7.5 TLS
//!   handshake with the next hop failed: certificate not verified: ...`, the next hop's
//!   `535 ...`), which a notification's `Diagnostic-Code` carries at expiry. Nothing of a
//!   message has been sent at that point. Except under `opportunistic`: a handshake that
//!   fails there is followed at once by a new connection in plain text (no attempt used, the
//!   hop not backed off), and that hop is reached in plain text for a while, as Postfix does
//!   (`run::PLAIN_FALLBACK`); credentials still need TLS.
//!
//! What it does not do (yet): MX lookups (next hops are addresses). The `Received:` line
//! (RFC 5321 §4.4) is the accepting side's: it is in the spooled body, which goes out as it
//! is.
//!
//! Types: DSN's `Notify` and `Ret` are one definition, [`crate::proto::dsn`], shared by the
//! server's parser, the spool, the client and the notifications. The spool, the client and
//! the notifications each keep their own `Envelope` and `Recipient` (owned, or borrowed);
//! [`convert`] is the one place they meet.
//! A stop leaves in-flight transactions unfinished: their messages stay in the spool and
//! are sent again after a restart (at-least-once, §6.1); so may a notification whose
//! original was not yet marked done when the process died.

mod conn;
pub mod convert;
pub mod notify;
pub mod plan;
mod run;
pub mod tls;

use crate::relay::client::session::{ClientConfig, ClientSession, Credentials, TlsPolicy};
use crate::relay::queue::RelayQueue;
use crate::relay::schedule::{
    HopOrder, RetryPolicy, ACTIVE_MAX_DEFAULT, ACTIVE_RECIPIENTS_MAX_DEFAULT,
};
use crate::relay::spool::Recovered;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections per next hop by default (Postfix's `smtp_destination_concurrency_limit` is
/// 20 for a whole destination). Each connection carries one transaction at a time, so this
/// bounds delivery's parallelism: at an offered 10 000 msgs/s, 16 left 1.9–2.1 s of backlog
/// at the end of a 10 s run where 4 left 3.3–3.5 s (`benches/relay_throughput.sh`,
/// docs/benchmarks/2026-12-07-relay-first.md).
pub const CONNECTIONS_PER_HOP_DEFAULT: usize = 16;
/// Messages carried by one connection before it says `QUIT`, by default (Postfix's
/// `smtp_connection_reuse_count_limit` is unlimited with a time limit instead).
pub const MESSAGES_PER_CONNECTION_DEFAULT: usize = 100;
/// How long a connect may take, by default (Postfix's `smtp_connect_timeout`: 30 s).
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// How often the journal is synced while it has news.
pub const JOURNAL_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// What the delivery loop needs to know.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The next hops, in the order given (`--relay-to`); at least one.
    pub hops: Vec<SocketAddr>,
    /// In order (later hops are fallbacks) or spread.
    pub hop_order: HopOrder,
    /// The most connections open to one next hop at a time.
    pub connections_per_hop: usize,
    /// The most messages one connection carries.
    pub messages_per_connection: usize,
    /// When to retry and when to give up.
    pub retry: RetryPolicy,
    /// Our host name: the `EHLO` name and the notifications' `Reporting-MTA`.
    pub hostname: String,
    /// Whether failure notifications are sent (`--dsn off` for pure benchmarks).
    pub dsn: bool,
    /// How long a connect may take.
    pub connect_timeout: Duration,
    /// One limit for every wait of a session instead of RFC 5321 §4.5.3.2's minutes (tests).
    pub session_timeout: Option<Duration>,
    /// The most messages in memory at once ([`ACTIVE_MAX_DEFAULT`]).
    pub active_max: usize,
    /// The most recipients of those messages in memory at once
    /// ([`ACTIVE_RECIPIENTS_MAX_DEFAULT`]; one message is let in whatever its count).
    pub active_recipients_max: usize,
    /// The name of each next hop (by index, as in [`DeliveryConfig::hops`]) as the user gave
    /// it: the TLS server name (SNI when a DNS name) and what its certificate is verified
    /// against under [`TlsPolicy::Required`], and the name kept with the replies it gives
    /// (a notification's `Remote-MTA`, `queue show`'s next hop). A hop without one is named
    /// by its IP address.
    pub hop_names: Vec<String>,
    /// When to use STARTTLS (`--relay-tls`; opportunistic by default).
    pub tls: TlsPolicy,
    /// The roots trusted under [`TlsPolicy::Required`] (`--relay-ca`, DER); `None`: the
    /// system's.
    pub ca: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
    /// AUTH credentials (`--relay-auth`), sent inside TLS only.
    pub credentials: Option<Credentials>,
    /// `--delay-warning`: once a message has waited this long with a recipient deferred, one
    /// `Action: delayed` notification (RFC 3464) to its sender; `None` (the default): never.
    pub delay_warning: Option<Duration>,
}

impl DeliveryConfig {
    /// A configuration toward `hops` as `hostname`, with the defaults above.
    pub fn new(hops: Vec<SocketAddr>, hostname: &str) -> DeliveryConfig {
        DeliveryConfig {
            hops,
            hop_order: HopOrder::InOrder,
            connections_per_hop: CONNECTIONS_PER_HOP_DEFAULT,
            messages_per_connection: MESSAGES_PER_CONNECTION_DEFAULT,
            retry: RetryPolicy::default(),
            hostname: hostname.to_owned(),
            dsn: true,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            session_timeout: None,
            active_max: ACTIVE_MAX_DEFAULT,
            active_recipients_max: ACTIVE_RECIPIENTS_MAX_DEFAULT,
            hop_names: Vec::new(),
            tls: TlsPolicy::Opportunistic,
            ca: None,
            credentials: None,
            delay_warning: None,
        }
    }

    /// The name of each next hop (TLS, `Remote-MTA`): [`DeliveryConfig::hop_names`], or the
    /// address's IP.
    fn names(&self) -> Vec<String> {
        self.hops
            .iter()
            .enumerate()
            .map(|(index, address)| match self.hop_names.get(index) {
                Some(name) if !name.is_empty() => name.clone(),
                _ => address.ip().to_string(),
            })
            .collect()
    }
}

/// Upper bounds of the accept→delivered latency histogram's buckets, in seconds: from a
/// relay keeping up (tens of milliseconds) to retries over a day.
pub const DELIVERED_BUCKETS_SECONDS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
    86_400.0,
];

/// Time from a message's arrival (its spool time) to a recipient's delivering `250`, one
/// observation per delivered recipient.
#[derive(Debug, Default)]
pub struct DeliveredLatency {
    /// Observations within each of [`DELIVERED_BUCKETS_SECONDS`]' bounds (cumulative).
    pub buckets: [AtomicU64; DELIVERED_BUCKETS_SECONDS.len()],
    /// Observations (the `+Inf` bucket).
    pub count: AtomicU64,
    /// Their times added up, in milliseconds.
    pub sum_ms: AtomicU64,
}

impl DeliveredLatency {
    /// Records one delivered recipient, `took` after its message's arrival.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bound, bucket) in DELIVERED_BUCKETS_SECONDS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(
            u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Counters and gauges of the delivery loop, readable while it runs (tests, and
/// `--metrics`, which exports each). Counters grow where the loop counts; the gauges are
/// counted again at most once a second.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Recipients delivered.
    pub delivered: AtomicU64,
    /// Recipient deferrals (one per recipient per failed attempt).
    pub deferred: AtomicU64,
    /// Recipients failed for good (refused, or expired).
    pub failed: AtomicU64,
    /// Failure notifications spooled.
    pub notifications: AtomicU64,
    /// Messages done (every recipient final, any notification spooled).
    pub messages_done: AtomicU64,
    /// Connections opened.
    pub connections: AtomicU64,
    /// Connections that failed before their session was ready.
    pub connect_failures: AtomicU64,
    /// Accept→delivered latency, per delivered recipient.
    pub delivered_latency: DeliveredLatency,
    /// Gauge: messages a connection has taken (in its batch or in flight).
    pub queue_active: AtomicU64,
    /// Gauge: messages in memory and due, waiting for a connection.
    pub queue_ready: AtomicU64,
    /// Gauge: messages in memory waiting for a retry.
    pub queue_deferred: AtomicU64,
    /// Gauge: live messages on disk only, beyond the bounded active set.
    pub queue_held: AtomicU64,
    /// Gauge: the oldest live message's arrival, Unix milliseconds (0: none).
    pub oldest_arrival_unix_ms: AtomicU64,
    /// Gauge: connections open to each next hop, in `--relay-to` order.
    pub hop_connections: Vec<AtomicU64>,
}

impl DeliveryStats {
    /// Counters at zero, with a connection gauge for each of `hops` next hops.
    pub fn with_hops(hops: usize) -> DeliveryStats {
        DeliveryStats {
            hop_connections: (0..hops).map(|_| AtomicU64::new(0)).collect(),
            ..DeliveryStats::default()
        }
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds to a counter.
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Starts delivery loops.
#[derive(Debug)]
pub struct Deliverer;

/// A running delivery loop.
#[derive(Debug)]
pub struct DeliveryHandle {
    /// The loop's thread, until stopped.
    thread: Option<JoinHandle<()>>,
    /// Set to ask the loop to end.
    stop: Arc<AtomicBool>,
    /// Wakes the loop (the one registered with the queue).
    waker: Arc<mio::Waker>,
    /// Its counters.
    stats: Arc<DeliveryStats>,
}

impl Deliverer {
    /// Starts the loop on its own thread. Refused (`InvalidInput`) without a next hop, with
    /// a host name that cannot be an `EHLO` argument, with credentials and TLS off or with a
    /// NUL in them, or when the TLS configuration cannot be built (no usable root, a hop name
    /// that is no DNS name or IP); and (`AlreadyExists`) when a loop already serves `queue`
    /// (one waker per queue).
    pub fn start(
        queue: Arc<RelayQueue>,
        recovered: Vec<Recovered>,
        config: DeliveryConfig,
    ) -> io::Result<DeliveryHandle> {
        if config.hops.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the relay needs at least one next hop",
            ));
        }
        let mut client = ClientConfig::new(&config.hostname);
        client.tls = config.tls;
        client.credentials = config.credentials.clone();
        if config.tls == TlsPolicy::Off && config.credentials.is_some() {
            // Issue 19: credentials are never sent outside TLS, so they could never be used.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--relay-auth needs TLS: credentials are never sent in clear (--relay-tls off)",
            ));
        }
        match ClientSession::new(&client) {
            Ok(_) => {}
            Err(crate::relay::client::session::UsageError::BadCredentials) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "--relay-auth: a user name or password with a NUL octet cannot be sent",
                ))
            }
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{:?} cannot be an EHLO name", config.hostname),
                ))
            }
        }
        let tls = tls::Connector::new(config.tls, config.ca.as_deref(), &config.names())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let poll = mio::Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), run::WAKER)?);
        if !queue.set_waker(Arc::clone(&waker)) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a delivery loop already serves this relay queue",
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(DeliveryStats::with_hops(config.hops.len()));
        let mut lp = run::Loop::new(
            queue,
            config,
            client,
            tls,
            poll,
            Arc::clone(&stop),
            Arc::clone(&stats),
        );
        lp.admit_recovered(recovered);
        let thread = std::thread::Builder::new()
            .name("relay-deliver".into())
            .spawn(move || lp.run())?;
        Ok(DeliveryHandle {
            thread: Some(thread),
            stop,
            waker,
            stats,
        })
    }
}

impl DeliveryHandle {
    /// The loop's counters.
    pub fn stats(&self) -> &DeliveryStats {
        &self.stats
    }

    /// The loop's counters, shared (for `--metrics`).
    pub fn shared_stats(&self) -> Arc<DeliveryStats> {
        Arc::clone(&self.stats)
    }

    /// Stops the loop and waits for its thread; transactions in flight are dropped (their
    /// messages stay in the spool).
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    /// Asks the loop to end and joins it (once).
    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DeliveryHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each next hop is named as `--relay-to` gave it, else by its IP address: the TLS name
    /// and the `Remote-MTA` kept with its replies.
    #[test]
    fn next_hops_are_named_as_given_else_by_their_address() {
        let hops = vec![
            SocketAddr::from(([192, 0, 2, 1], 25)),
            SocketAddr::from(([192, 0, 2, 2], 2525)),
            SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 25)),
        ];
        let mut config = DeliveryConfig::new(hops, "relay.test");
        assert_eq!(config.names(), ["192.0.2.1", "192.0.2.2", "::1"]);
        config.hop_names = vec!["mx.far.test".into(), String::new()];
        assert_eq!(config.names(), ["mx.far.test", "192.0.2.2", "::1"]);
    }
}
