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
//!    * the waker: shutdown was requested, so stop listening and tell each session;
//!    * a listener: accept until `WouldBlock`, send each greeting at once;
//!    * a connection: read until drained (at most [`MAX_READS_PER_TURN`] reads, for fairness),
//!      let the session process every complete command, then write all replies in one write
//!      (RFC 2920 §3.2), register WRITABLE only if that write came back short, re-register
//!      only when the wanted interest changes.
//! 3. Connections that still had input after their read budget get another turn.
//! 4. Expire due deadlines (idle / per-command timeout, data rate): `421`, close.
//! 5. Publish the counters; during shutdown, exit once all sessions ended or the grace period
//!    is over.
//!
//! What it does not do: parse SMTP (the session does) or touch another worker's connections.

use super::conn::{Conn, ReadStatus, OUT_HIGH_WATER};
use super::timer::{Entry, Timers};
use crate::fault::{FaultAction, FaultContext, FaultPoint, FaultRules};
use crate::metrics::ReplyCounts;
use crate::proto::reply;
use crate::proto::session::SessionConfig;
use crate::stats::{SharedStats, Stats};
use crate::store::{Completions, Notify, StoreHub, StoreSink};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The token of the worker's waker.
pub const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE - i`; connections use their slab keys.
const LISTENER_BASE: usize = usize::MAX - 1;
/// Most listening addresses (tokens reserved for listeners).
pub const MAX_LISTENERS: usize = 64;
/// Reads per connection per loop turn before others get their turn.
pub const MAX_READS_PER_TURN: usize = 8;
/// The scratch read buffer shared by the worker's connections.
const SCRATCH_LEN: usize = 64 * 1024;
/// Events handled per `poll` call.
const EVENTS_CAPACITY: usize = 1024;
/// How long a finished session may take to collect its last reply before we close anyway.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// After an accept error such as EMFILE, wait this long before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Input read from a closed session before closing, so the close sends FIN, not RST.
const MAX_DRAIN_READS: usize = 4;

/// Time limits that the worker, not the protocol, enforces.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// A command must complete within this of the previous one (RFC 5321 §4.5.3.2.7).
    pub idle_timeout: Duration,
    /// Bytes per second that DATA/BDAT content must keep up, on average (0: no check).
    pub min_data_rate: u64,
    /// Time given to messages in flight after shutdown begins.
    pub shutdown_grace: Duration,
}

/// Asks every worker to shut down.
#[derive(Debug)]
pub struct ShutdownSignal {
    /// Set once shutdown is requested.
    requested: AtomicBool,
    /// One waker per worker.
    wakers: Vec<Arc<Waker>>,
}

impl ShutdownSignal {
    /// A signal over these workers' wakers.
    pub fn new(wakers: Vec<Arc<Waker>>) -> ShutdownSignal {
        ShutdownSignal {
            requested: AtomicBool::new(false),
            wakers,
        }
    }

    /// Requests shutdown and wakes every worker.
    pub fn trigger(&self) {
        self.requested.store(true, Ordering::Release);
        for waker in &self.wakers {
            // A failed wake means the worker is gone already.
            let _ = waker.wake();
        }
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

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
    /// Where this worker publishes its counters.
    pub stats: Arc<SharedStats>,
    /// The storage threads, when messages are kept.
    pub store: Option<Arc<StoreHub>>,
    /// Where the storage threads report to this worker.
    pub completions: Arc<Completions>,
    /// Exit conditions shared by all workers (`--exit-after-*`).
    pub exit_after: Option<Arc<ExitAfter>>,
    /// Fault-injection rules, if any.
    pub faults: Option<Arc<FaultRules>>,
    /// This worker's reply counts, when metrics are served.
    pub replies: Option<Arc<ReplyCounts>>,
    /// The transaction log, with `--log-sessions`.
    pub txlog: Option<Arc<crate::txlog::TxLog>>,
}

/// `--exit-after-messages` / `--exit-after-sessions`: counts over all workers; the worker
/// whose count reaches a limit asks for a graceful shutdown.
#[derive(Debug)]
pub struct ExitAfter {
    messages_limit: Option<u64>,
    sessions_limit: Option<u64>,
    messages: AtomicU64,
    sessions: AtomicU64,
}

impl ExitAfter {
    /// Limits (`None`: no limit of that kind).
    pub fn new(messages_limit: Option<u64>, sessions_limit: Option<u64>) -> ExitAfter {
        ExitAfter {
            messages_limit,
            sessions_limit,
            messages: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
        }
    }

    /// Counts accepted messages; true when the limit is reached.
    fn add_messages(&self, n: u64) -> bool {
        let total = self.messages.fetch_add(n, Ordering::Relaxed) + n;
        self.messages_limit.is_some_and(|limit| total >= limit)
    }

    /// Counts an ended session; true when the limit is reached.
    fn add_session(&self) -> bool {
        let total = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        self.sessions_limit.is_some_and(|limit| total >= limit)
    }
}

/// One event loop.
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
    /// Read buffer shared by all connections of this worker.
    scratch: Box<[u8]>,
    /// Connections to drive again next turn (they had more input than one turn allows).
    revisit: Vec<(usize, u64)>,
    /// The list being worked through this turn (swapped with `revisit`, to keep capacity).
    revisiting: Vec<(usize, u64)>,
    /// Counters.
    stats: Stats,
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
    /// Storage outcomes being handled (kept for its capacity).
    completed: Vec<(usize, u64, bool)>,
    /// The output buffer lent to each connection while it is driven (see
    /// [`Conn::borrow_out`]); empty between uses.
    spare_out: Vec<u8>,
}

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
            scratch: vec![0; scratch_len].into_boxed_slice(),
            revisit: Vec::with_capacity(64),
            revisiting: Vec::with_capacity(64),
            stats: Stats::default(),
            links,
            shutdown,
            draining_since: None,
            accept_paused_until: None,
            next_id: 0,
            completed: Vec::with_capacity(64),
            spare_out: Vec::with_capacity(16 * 1024),
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
            for event in events.iter() {
                match event.token() {
                    WAKER => self.on_wake(now),
                    Token(token) if LISTENER_BASE - token < self.listeners.len() => {
                        self.accept_all(LISTENER_BASE - token, now);
                    }
                    Token(key) => self.on_conn_event(key, event, now),
                }
            }
            self.run_revisits(now);
            self.expire(now);
            if self.accept_paused_until.is_some_and(|until| now >= until) {
                self.accept_paused_until = None;
                for i in 0..self.listeners.len() {
                    self.accept_all(i, now);
                }
            }
            self.links.stats.publish(&self.stats);
            if let Some(since) = self.draining_since {
                if self.conns.is_empty() {
                    break;
                }
                if now >= since + self.links.deadlines.shutdown_grace {
                    self.close_all(reply::SHUTTING_DOWN);
                    break;
                }
            }
        }
        self.links.stats.publish(&self.stats);
        Ok(self.stats)
    }

    /// The poll timeout: until the nearest deadline, or zero if work is waiting.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.revisit.is_empty() {
            return Some(Duration::ZERO);
        }
        let grace_end = self
            .draining_since
            .map(|since| since + self.links.deadlines.shutdown_grace);
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

    fn on_wake(&mut self, now: Instant) {
        self.on_store_completions(now);
        if !self.shutdown.is_requested() || self.draining_since.is_some() {
            return;
        }
        self.draining_since = Some(now);
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_paused_until = None;
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.on_shutdown();
                self.drive(key, now);
            }
        }
    }

    /// Gives each waiting session its storage outcome, then lets it go on with the input it
    /// kept (see [`Conn::on_store_complete`]).
    fn on_store_completions(&mut self, now: Instant) {
        let mut completed = std::mem::take(&mut self.completed);
        self.links.completions.take_into(&mut completed);
        for &(key, id, stored) in &completed {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.id != id {
                continue; // that connection is gone; its slot was reused
            }
            conn.on_store_complete(stored, &self.links.session_config);
            self.drive(key, now);
        }
        completed.clear();
        self.completed = completed;
    }

    fn accept_all(&mut self, index: usize, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.on_accept(stream, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS...: the pending connection stays queued; try
                    // again shortly instead of spinning on it.
                    eprintln!(
                        "fastsmtpd: worker {}: accept failed: {e}; pausing accepts for {} ms",
                        self.index,
                        ACCEPT_BACKOFF.as_millis()
                    );
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn on_accept(&mut self, stream: TcpStream, peer: std::net::SocketAddr, now: Instant) {
        let connect_fault = self
            .links
            .faults
            .as_ref()
            .filter(|rules| rules.watches(FaultPoint::Connect))
            .and_then(|rules| {
                let context = FaultContext {
                    client: Some(peer.ip()),
                    now: Some(now),
                    ..FaultContext::default()
                };
                rules.decide(FaultPoint::Connect, &context)
            });
        match connect_fault {
            Some(FaultAction::Disconnect) => {
                self.stats.connections += 1;
                return; // dropping the stream closes it without a word
            }
            Some(FaultAction::Disconnect421) => {
                self.stats.connections += 1;
                let _ = (&stream).write(reply::FAULT_CLOSING);
                return;
            }
            _ => {}
        }
        let open = self.links.open_connections.fetch_add(1, Ordering::Relaxed);
        if open >= self.links.max_connections {
            self.links.open_connections.fetch_sub(1, Ordering::Relaxed);
            self.stats.refused_connections += 1;
            // Best effort: a fresh socket's send buffer takes the short reply at once.
            let _ = (&stream).write(reply::TOO_MANY_CONNECTIONS);
            return;
        }
        // Replies are already batched one write per turn; Nagle would only add delay.
        let _ = stream.set_nodelay(true);
        let id = self.next_id;
        self.next_id += 1;
        let deadline = now + self.links.deadlines.idle_timeout;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let sink = match &self.links.store {
            None => StoreSink::discard(),
            Some(hub) => {
                let notify = Notify {
                    completions: Arc::clone(&self.links.completions),
                    key,
                    id,
                };
                StoreSink::storing(hub, notify, peer)
            }
        };
        let sink = sink
            .with_faults(self.links.faults.clone(), peer)
            .with_log(self.links.txlog.as_deref(), peer);
        let mut conn = Conn::new(stream, id, &self.links.session_config, deadline, sink);
        match connect_fault {
            Some(FaultAction::Reply(reply)) => conn.refuse_greeting(reply),
            Some(FaultAction::Delay { hold, then }) => {
                if let Some(reply) = then {
                    conn.refuse_greeting(reply);
                }
                conn.session.hold_output(0, hold);
            }
            _ => {}
        }
        // epoll reports data that arrived before registration, so no read is tried now.
        conn.read_ready = false;
        if self
            .poll
            .registry()
            .register(&mut conn.stream, Token(key), Interest::READABLE)
            .is_err()
        {
            self.links.open_connections.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        entry.insert(conn);
        self.stats.connections += 1;
        self.stats.open_connections += 1;
        self.timers.schedule(Entry {
            at: deadline,
            key,
            id,
        });
        self.drive(key, now);
    }

    fn on_conn_event(&mut self, key: usize, event: &Event, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            conn.read_ready = true;
        }
        if event.is_read_closed() || event.is_error() {
            conn.read_closed_hint = true;
        }
        self.drive(key, now);
    }

    fn run_revisits(&mut self, now: Instant) {
        std::mem::swap(&mut self.revisit, &mut self.revisiting);
        for i in 0..self.revisiting.len() {
            let (key, id) = self.revisiting[i];
            if self.conns.get(key).is_some_and(|conn| conn.id == id) {
                self.drive(key, now);
            }
        }
        self.revisiting.clear();
    }

    /// Reads, processes, writes and re-arms one connection.
    fn drive(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.borrow_out(&mut self.spare_out);
        let (status, bytes) = if conn.read_ready && !conn.eof {
            conn.read_and_process(
                &self.links.session_config,
                &mut self.scratch,
                MAX_READS_PER_TURN,
            )
        } else {
            (ReadStatus::Drained, 0)
        };
        let (messages, message_bytes) = conn.session.take_accepted();
        self.stats.messages += messages;
        self.stats.bytes += message_bytes;
        if messages > 0 {
            if let Some(exit) = &self.links.exit_after {
                if exit.add_messages(messages) {
                    self.shutdown.trigger();
                }
            }
        }
        update_deadline(conn, bytes, now, &self.links.deadlines);
        if let Some((_, hold)) = conn.session.held() {
            // A fault rule holds this session's output: its timer is the release.
            if conn.held_until.is_none() {
                conn.held_until = Some(now + hold);
            }
            conn.deadline = conn.held_until.unwrap_or(conn.deadline);
        }

        let flushed = match conn.flush(self.links.replies.as_deref()) {
            Ok(flushed) => flushed,
            Err(_) => return self.close(key),
        };
        conn.return_out(&mut self.spare_out);
        // A client that half-closed right behind its last message still gets that message's
        // reply once the store reports (and the replies to what it pipelined after it).
        let finished = conn.session.is_closed() || (conn.eof && !conn.session.is_awaiting_store());
        if finished && flushed {
            if !conn.eof {
                drain_input(&mut conn.stream, &mut self.scratch);
            }
            return self.close(key);
        }
        if finished && conn.held_until.is_none() {
            // The last replies are still going out; do not wait for them forever.
            conn.deadline = conn.deadline.min(now + CLOSE_LINGER);
        }

        let wanted = conn.wanted_interest();
        if wanted != conn.registered {
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(key), wanted)
                .is_err()
            {
                return self.close(key);
            }
            conn.registered = wanted;
        }
        if conn.deadline < conn.timer_at {
            conn.timer_at = conn.deadline;
            self.timers.schedule(Entry {
                at: conn.deadline,
                key,
                id: conn.id,
            });
        }
        if status == ReadStatus::MoreLater && conn.pending_out() < OUT_HIGH_WATER && !finished {
            self.revisit.push((key, conn.id));
        }
    }

    /// Handles every deadline that is due.
    fn expire(&mut self, now: Instant) {
        while let Some(entry) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(entry.key) else {
                continue;
            };
            if conn.id != entry.id || conn.timer_at != entry.at {
                continue; // stale entry
            }
            if conn.held_until.is_some_and(|until| until <= now) {
                // A fault delay is over: the held replies go out, input is read again.
                conn.held_until = None;
                conn.timer_at = far_future(now);
                conn.deadline = now + self.links.deadlines.idle_timeout;
                conn.release_hold(&self.links.session_config);
                self.drive(entry.key, now);
                continue;
            }
            if conn.deadline > now {
                // The deadline moved later since this entry was made; look again then.
                conn.timer_at = conn.deadline;
                self.timers.schedule(Entry {
                    at: conn.deadline,
                    key: entry.key,
                    id: conn.id,
                });
                continue;
            }
            if !conn.session.is_closed() && !conn.eof {
                // "Data rate too low" only where a minimum rate applies; otherwise it is the
                // plain idle timeout, also mid-content.
                let rate_applies = self.links.deadlines.min_data_rate > 0;
                let reply = if rate_applies && conn.session.in_message_content() {
                    reply::TOO_SLOW
                } else {
                    reply::TIMEOUT
                };
                conn.on_timeout(reply);
                self.stats.timeouts += 1;
                let _ = conn.flush(self.links.replies.as_deref());
            }
            self.close(entry.key);
        }
    }

    /// Ends every remaining session with `reply`, best effort, and closes it.
    fn close_all(&mut self, reply: &'static [u8]) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.on_timeout(reply);
                let _ = conn.flush(self.links.replies.as_deref());
            }
            self.close(key);
        }
    }

    fn close(&mut self, key: usize) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        conn.on_disconnect();
        self.stats.errors += u64::from(conn.session.errors());
        self.stats.open_connections -= 1;
        self.links.open_connections.fetch_sub(1, Ordering::Relaxed);
        if let Some(exit) = &self.links.exit_after {
            if exit.add_session() {
                self.shutdown.trigger();
            }
        }
        // Dropping the stream closes the socket, which also removes it from epoll.
    }
}

/// A time no timer entry will ever be due at: marks a connection as having no authoritative
/// entry, so the next deadline set is scheduled.
fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// Moves a connection's deadline after a round of input (see [`Deadlines`]).
fn update_deadline(conn: &mut Conn, bytes: u64, now: Instant, deadlines: &Deadlines) {
    let commands = conn.session.commands_processed();
    if commands != conn.commands_seen {
        // A command (or a whole message) completed: the client is making progress.
        conn.commands_seen = commands;
        conn.deadline = now + deadlines.idle_timeout;
    } else if bytes > 0 && conn.session.in_message_content() {
        // Content earns time at the minimum rate, never more than one idle period ahead, so
        // a client that trickles bytes slower than the rate runs out of time (slowloris).
        let latest = now + deadlines.idle_timeout;
        conn.deadline = if deadlines.min_data_rate == 0 {
            latest
        } else {
            let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(deadlines.min_data_rate);
            let credit = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
            conn.deadline
                .checked_add(credit)
                .unwrap_or(latest)
                .min(latest)
        };
    }
    // Bytes of an incomplete command line earn nothing: a command must complete in time.
}

/// Reads and drops what the client still sent, so that closing does not reset the connection
/// (and destroy the final reply in flight).
fn drain_input(stream: &mut TcpStream, scratch: &mut [u8]) {
    for _ in 0..MAX_DRAIN_READS {
        match stream.read(scratch) {
            Ok(n) if n == scratch.len() => {}
            _ => return,
        }
    }
}
