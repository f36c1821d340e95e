//! One worker: a thread with its own mio `Poll`, its own listening sockets and a slab of
//! connections. Workers share nothing on the hot path (one atomic counts open connections for
//! the global connection cap, touched only at accept and close).
//!
//! # The loop, in order
//!
//! 1. `poll`, with the timeout set by the nearest deadline (0 if a connection still has input
//!    we did not get to last turn).
//! 2. For each event (every event is only a hint: stale tokens and spurious wake-ups are
//!    harmless):
//!    * the waker: letters arrived in the mailbox (`crate::wake`: storage outcomes, room in
//!      the stores' budget for connections that stopped reading for it, AUTH verdicts), or
//!      shutdown was requested (`shutdown`);
//!    * a listener: accept until `WouldBlock` (`accept`), greet each client at once;
//!    * a connection: [`Conn::ready`] reads until drained (at most
//!      [`super::conn::MAX_READS_PER_TURN`] reads, for fairness), lets the session process
//!      every complete command, writes all replies in one write (RFC 2920 §3.2), and says
//!      what it wants next; the worker arms its deadline and, if asked, revisits it.
//! 3. Connections that still had input after their read budget get another turn.
//! 4. TLS handshakes waiting to start get turns, round-robin per client address, until this
//!    turn's handshake work is spent (`super::handshakes`); the rest wait for the next turn
//!    (the poll then does not wait), so established sessions are served in between.
//! 5. Deadlines that are due go to their connections ([`Conn::on_deadline`]): a pause ends,
//!    or the client gets `421` and is closed.
//! 6. Publish the counters; during shutdown, exit once all sessions ended or the grace period
//!    is over.
//!
//! What it does not do: parse SMTP (the session does), touch a connection's socket or
//! session (the connection does), or touch another worker's connections.

mod accept;
mod shutdown;

pub use shutdown::{ExitAfter, ShutdownSignal};

use super::conn::{Conn, Next, Outcome};
use super::handshakes::{HandshakeRates, HandshakeTurns, Turn};
use super::timer::{Deadlines, Timers};
use crate::metrics::ReplyCounts;
use crate::proto::reply::ReplyTally;
use crate::proto::session::{Resume, SessionConfig};
use crate::stats::{SharedStats, Stats};
use crate::store::StoreHub;
use crate::wake::{Letter, Mailbox, Wake};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The token of the worker's waker.
pub const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE - i`; connections use their slab keys.
const LISTENER_BASE: usize = usize::MAX - 1;
/// Most listening addresses (tokens reserved for listeners).
pub const MAX_LISTENERS: usize = 64;
/// The scratch read buffer shared by the worker's connections.
const SCRATCH_LEN: usize = 64 * 1024;
/// Events handled per `poll` call.
const EVENTS_CAPACITY: usize = 1024;

/// What a worker shares with the rest of the server.
#[derive(Debug, Clone)]
pub struct WorkerLinks {
    /// The protocol settings.
    pub session_config: Arc<SessionConfig>,
    /// Timeouts.
    pub deadlines: Deadlines,
    /// The global connection cap.
    pub max_connections: usize,
    /// Connections open over all workers.
    pub open_connections: Arc<AtomicUsize>,
    /// The TLS configuration, when TLS is configured (implicit-TLS listeners, STARTTLS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The AUTH back end, with `--auth`.
    pub auth: Option<Arc<crate::auth::Authenticator>>,
    /// Listeners from this index on speak implicit TLS (RFC 8314).
    pub first_tls_listener: usize,
    /// Which listeners' mail is relayed, by listener index (`--relay-listen`); `None`: all.
    pub relay_listeners: Option<Arc<[bool]>>,
    /// Connections open per client address, over all workers.
    pub per_client: Arc<crate::server::per_client::PerClientConnections>,
    /// Full TLS handshakes per client and second, over all workers.
    pub handshake_rates: Arc<HandshakeRates>,
    /// TLS handshakes in progress at most per client on this worker.
    pub max_handshakes_per_client: u32,
    /// Where this worker publishes its counters.
    pub stats: Arc<SharedStats>,
    /// The storage threads, when messages are kept in files.
    pub store: Option<Arc<StoreHub>>,
    /// The capture store, with `--store memory` or `--api`.
    pub capture: Option<Arc<crate::store::CaptureTarget>>,
    /// Where the storage threads and AUTH's verifier threads report to this worker.
    pub mailbox: Arc<Mailbox>,
    /// Exit conditions shared by all workers (`--exit-after-*`).
    pub exit_after: Option<Arc<ExitAfter>>,
    /// Fault-injection plans, when there are startup rules or the API may set some.
    pub faults: Option<Arc<crate::fault::Plans>>,
    /// Where this worker publishes its reply counts, when metrics are served.
    pub replies: Option<Arc<ReplyCounts>>,
    /// The transaction log, with `--log-sessions`.
    pub txlog: Option<Arc<crate::txlog::TxLog>>,
}

/// What the worker lends its connections: buffers and counters, kept apart from the slab so
/// a connection and these can be borrowed at once.
#[derive(Debug)]
struct Lent {
    /// Read buffer shared by all connections of this worker.
    scratch: Box<[u8]>,
    /// The output buffer lent to each connection while it is driven; empty between uses.
    spare_out: Vec<u8>,
    /// Replies produced by this worker's sessions, by code.
    tally: ReplyTally,
    /// Counters.
    stats: Stats,
    /// Which connection may start its TLS handshake, and this turn's handshake work.
    handshakes: HandshakeTurns,
}

/// One event loop.
#[derive(Debug)]
pub struct Worker {
    /// This worker's number, for messages.
    index: usize,
    /// The poller.
    poll: Poll,
    /// Listening sockets (emptied when shutdown begins).
    listeners: Vec<TcpListener>,
    /// Connection states; the slab key is the mio token.
    conns: Slab<Conn>,
    /// Deadlines.
    timers: Timers,
    /// What connections borrow while driven.
    lent: Lent,
    /// Connections to drive again next turn (they had more input than one turn allows).
    revisit: Vec<(usize, u64)>,
    /// The list being worked through this turn (swapped with `revisit`, to keep capacity).
    revisiting: Vec<(usize, u64)>,
    /// Shared settings and counters.
    links: WorkerLinks,
    /// Shutdown request.
    shutdown: Arc<ShutdownSignal>,
    /// When shutdown began.
    draining_since: Option<Instant>,
    /// Accepting is paused until then after an accept error.
    accept_paused_until: Option<Instant>,
    /// Id for the next connection.
    next_id: u64,
    /// Letters from the mailbox being handled (kept for its capacity).
    letters: Vec<Letter>,
    /// A descriptor held back to answer a connection when none is left.
    spare: crate::server::descriptors::Spare,
    /// Accept failures since the last report, and when that report was.
    accept_errors: (u64, Option<Instant>),
}

/// Builds the [`Driver`](crate::server::conn::Driver) a connection borrows: a macro, not a method, so the borrow of
/// `self.lent` stays apart from the borrow of `self.conns`.
macro_rules! driver {
    ($worker:expr) => {
        $crate::server::conn::Driver {
            config: &$worker.links.session_config,
            deadlines: &$worker.links.deadlines,
            registry: $worker.poll.registry(),
            scratch: &mut $worker.lent.scratch,
            spare_out: &mut $worker.lent.spare_out,
            tally: &mut $worker.lent.tally,
            stats: &mut $worker.lent.stats,
            handshakes: &mut $worker.lent.handshakes,
            tls: $worker.links.tls.as_ref(),
            auth: $worker.links.auth.as_deref(),
            mailbox: &$worker.links.mailbox,
        }
    };
}
use driver;

impl Worker {
    /// A worker over `poll` (whose waker is already registered as [`WAKER`]).
    pub fn new(
        index: usize,
        poll: Poll,
        listeners: Vec<std::net::TcpListener>,
        links: WorkerLinks,
        shutdown: Arc<ShutdownSignal>,
    ) -> io::Result<Worker> {
        let mut mio_listeners = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut listener = TcpListener::from_std(listener);
            poll.registry().register(
                &mut listener,
                Token(LISTENER_BASE - i),
                Interest::READABLE,
            )?;
            mio_listeners.push(listener);
        }
        let scratch_len = SCRATCH_LEN.max(2 * links.session_config.max_line_len);
        Ok(Worker {
            index,
            poll,
            listeners: mio_listeners,
            conns: Slab::with_capacity(1024),
            timers: Timers::with_capacity(1024),
            lent: Lent {
                scratch: vec![0; scratch_len].into_boxed_slice(),
                spare_out: Vec::with_capacity(16 * 1024),
                // Replies are counted only for the metrics endpoint.
                tally: if links.replies.is_some() {
                    ReplyTally::default()
                } else {
                    ReplyTally::disabled()
                },
                stats: Stats::default(),
                handshakes: HandshakeTurns::new(
                    links.max_handshakes_per_client,
                    Arc::clone(&links.handshake_rates),
                ),
            },
            revisit: Vec::with_capacity(64),
            revisiting: Vec::with_capacity(64),
            links,
            shutdown,
            draining_since: None,
            accept_paused_until: None,
            next_id: 0,
            letters: Vec::with_capacity(64),
            spare: crate::server::descriptors::Spare::new(),
            accept_errors: (0, None),
        })
    }

    /// Runs the loop until shutdown completes; returns the worker's final counters.
    pub fn run(mut self) -> io::Result<Stats> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            self.lent.handshakes.new_turn();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.on_wake(now),
                    Token(token) if LISTENER_BASE - token < self.listeners.len() => {
                        self.accept_all(LISTENER_BASE - token, now);
                    }
                    Token(key) => {
                        let Some(conn) = self.conns.get_mut(key) else {
                            continue; // a stale token: that connection is gone
                        };
                        let peer_closed = event.is_read_closed() || event.is_error();
                        // A reset raises EPOLLERR and EPOLLHUP; a FIN (the client may
                        // still read) only EPOLLRDHUP.
                        let hung_up = event.is_error() || event.is_write_closed();
                        conn.on_event(event.is_readable(), peer_closed, hung_up);
                        self.drive(key, now);
                    }
                }
            }
            self.run_revisits(now);
            self.run_handshakes(now);
            self.expire(now);
            self.resume_accepting(now);
            self.publish();
            if self.shutdown_finished(now) {
                break;
            }
        }
        self.publish();
        Ok(self.lent.stats)
    }

    /// The poll timeout: until the nearest deadline, or zero if work is waiting.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.revisit.is_empty() || self.lent.handshakes.has_backlog() {
            return Some(Duration::ZERO);
        }
        // Past the grace period, only sessions waiting for a verdict are left: their verdict
        // wakes the worker, or the wait for it ends.
        let grace_end = self.draining_since.map(|since| {
            let end = since + self.links.deadlines.shutdown_grace;
            if now < end {
                end
            } else {
                end + shutdown::VERDICT_WAIT
            }
        });
        [
            self.timers.next_deadline(),
            self.accept_paused_until,
            grace_end,
        ]
        .into_iter()
        .flatten()
        .min()
        // Round up to whole milliseconds (epoll's unit) so we never wake a hair early.
        .map(|at| {
            let wait = at.saturating_duration_since(now);
            Duration::from_millis(wait.as_nanos().div_ceil(1_000_000) as u64)
        })
    }

    /// Makes this turn's counters visible to reporters (and reply counts to the metrics
    /// endpoint, when served).
    fn publish(&mut self) {
        self.lent.stats.error_replies = self.lent.tally.errors();
        self.lent.stats.errors = self.lent.stats.error_replies.total();
        self.links.stats.publish(&self.lent.stats);
        if let Some(replies) = &self.links.replies {
            self.lent
                .tally
                .take_changed(|code, total| replies.set(code, total));
        }
    }

    /// The waker fired: letters arrived in the mailbox, or shutdown was requested.
    fn on_wake(&mut self, now: Instant) {
        self.on_letters(now);
        self.on_shutdown_request(now);
    }

    /// Takes every letter from the mailbox (`crate::wake`) and hands each to its connection,
    /// in the order they were posted: a store outcome ([`Conn::on_store_complete`]), room in
    /// the stores' budget ([`Conn::on_budget`]) or an AUTH verdict
    /// ([`Conn::on_auth_complete`]). A letter for a connection that has gone is dropped (its
    /// slab key may have been reused; its id was not).
    fn on_letters(&mut self, now: Instant) {
        let mut letters = std::mem::take(&mut self.letters);
        self.links.mailbox.take_into(&mut letters);
        for &Letter { key, id, wake } in &letters {
            let Some(conn) = self.conns.get_mut(key).filter(|conn| conn.id() == id) else {
                continue;
            };
            let outcome = match wake {
                Wake::Stored(stored) => {
                    conn.on_store_complete(Resume::Stored(stored), &mut driver!(self), now)
                }
                Wake::Refused(reply) => {
                    conn.on_store_complete(Resume::Refused(reply), &mut driver!(self), now)
                }
                Wake::BudgetRoom => conn.on_budget(&mut driver!(self), now),
                Wake::Auth(verdict) => conn.on_auth_complete(verdict, &mut driver!(self), now),
            };
            self.apply(key, id, outcome);
        }
        letters.clear();
        self.letters = letters;
    }

    fn run_revisits(&mut self, now: Instant) {
        std::mem::swap(&mut self.revisit, &mut self.revisiting);
        for i in 0..self.revisiting.len() {
            let (key, id) = self.revisiting[i];
            if self.conns.get(key).is_some_and(|conn| conn.id() == id) {
                self.drive(key, now);
            }
        }
        self.revisiting.clear();
    }

    /// Grants TLS handshake turns (see `server::handshakes`): connections waiting to start
    /// their handshake go in turn per client until this turn's handshake work is spent; a
    /// connection whose client is past its full-handshake rate is closed without a byte.
    fn run_handshakes(&mut self, now: Instant) {
        while let Some(turn) = self.lent.handshakes.next(now) {
            match turn {
                Turn::Refuse { key, id } => {
                    let Some(conn) = self.conns.get_mut(key).filter(|conn| conn.id() == id) else {
                        continue;
                    };
                    conn.refuse_handshake();
                    self.lent.stats.security.handshakes_refused += 1;
                    self.close(key);
                }
                Turn::Start { key, id } => {
                    let Some(conn) = self.conns.get_mut(key).filter(|conn| conn.id() == id) else {
                        continue;
                    };
                    let started = Instant::now();
                    self.lent.handshakes.grant(true, Duration::ZERO);
                    let outcome = conn.ready(&mut driver!(self), now);
                    self.lent.handshakes.grant(false, started.elapsed());
                    self.apply(key, id, outcome);
                }
            }
        }
    }

    /// Lets one connection do its work ([`Conn::ready`]).
    fn drive(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let id = conn.id();
        let outcome = conn.ready(&mut driver!(self), now);
        self.apply(key, id, outcome);
    }

    /// Carries out what a connection asked for.
    fn apply(&mut self, key: usize, id: u64, outcome: Outcome) {
        if outcome.accepted > 0 {
            if let Some(exit) = &self.links.exit_after {
                if exit.add_messages(outcome.accepted) {
                    self.shutdown.trigger();
                }
            }
        }
        match outcome.next {
            Next::Close => return self.close(key),
            Next::Revisit => self.revisit.push((key, id)),
            Next::Wait => {}
        }
        self.timers.arm(key, id, outcome.deadline);
    }

    /// Hands every due deadline to its connection.
    fn expire(&mut self, now: Instant) {
        while let Some(entry) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(entry.key).filter(|c| c.id() == entry.id) else {
                continue;
            };
            let outcome = conn.on_deadline(&mut driver!(self), now);
            self.apply(entry.key, entry.id, outcome);
        }
    }

    fn close(&mut self, key: usize) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        self.timers.disarm(key);
        conn.on_close(&mut self.lent.stats, &mut self.lent.handshakes);
        self.lent.stats.open_connections -= 1;
        self.links.open_connections.fetch_sub(1, Ordering::Relaxed);
        self.links.per_client.close(conn.client());
        if let Some(exit) = &self.links.exit_after {
            if exit.add_session() {
                self.shutdown.trigger();
            }
        }
        // Dropping the connection closes the socket, which also removes it from epoll.
    }
}
