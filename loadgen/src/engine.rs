//! One load-generating thread: a mio event loop driving many client connections.
//!
//! What it does: open its share of the connections (staggered if asked; each new connection
//! to the next `--target` in turn, from the next `--source` address in turn, bound with
//! socket2 before the non-blocking connect), start messages when the load model allows, move
//! bytes between sockets and each connection's [`Client`] through the connection's
//! [`Transport`] (plain, or TLS: started at connect for implicit TLS, or when the client asks
//! after the `220` to `STARTTLS`), time connects, hand a [`Recorder`] for every one-second
//! interval to the reporter (with per-target figures when there are several targets), and
//! stop when its share of the work is done.
//!
//! Output: commands (and generated content) are written from the connection's [`Output`] as
//! they are. A corpus message in it is streamed: the connection's staging buffer is filled
//! with the wire form of at most [`STAGING`] bytes' worth of the message at a time (read
//! from the file by the thread's [`CorpusReader`], with the commands around it), only when
//! the socket has taken the previous piece; so a connection holds a few KiB of a message
//! whatever its size. File reads happen on the loop (small `pread`s, usually from the page
//! cache).
//! A thread gives up when its first connections all fail before getting ready (refused,
//! TLS or AUTH failing, ...): a run against a server that never lets a session through ends
//! and says why instead of retrying for ever.
//!
//! Connections asked for: each of the thread's connections is a slot in the run's
//! [`SlotAccount`] (shared by the threads): the engine moves it to alive or down as sessions
//! are set up, fail, take too long to set up, or close cleanly, and counts the connections
//! that never got ready by reason (see `slots`).
//!
//! Time: the loop waits with its [`Pacer`], a timer of nanosecond resolution (the poll's own
//! timeout is whole milliseconds), until the nearest deadline: the next open-loop send, a
//! pending connect, the interval's end.
//!
//! Load models:
//! * **closed loop** (no `--rate`): a connection starts its next message as soon as the client
//!   allows (for pipelining: right behind the previous end-of-data dot).
//! * **open loop** (`--rate R`): the thread's share of messages has intended start times
//!   `start + i / rate`, shared by all its connections. A due message waits for a free
//!   connection; its latency counts from the intended time (as wrk2 does), so a server stall
//!   shows in the corrected histogram even though the generator sent nothing meanwhile.
//!
//! What it does not do: parse replies (see `reply`), decide SMTP steps (the client), speak
//! TLS itself (`transport`, with the configuration of `tls`), or aggregate across threads
//! (`runner`, `report::results`).

use crate::client::{describe_failure, Client, Event, Failure, Stage};
use crate::corpus::{BodyStream, CorpusReader};
use crate::output::{Next, Output};
use crate::pacer::{self, Pacer};
use crate::record::{record, ErrorKind, Recorder};
use crate::reply::parse_reply;
use crate::slots::{Slot, SlotAccount, SETUP_GRACE};
use crate::tls::TlsClient;
use crate::transport::{tls_error, Transport};
use crate::workload::{Rng, Security, Workload};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Length of a reporting interval.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Bytes read from a socket (or out of rustls) in one go.
const READ_CHUNK: usize = 64 * 1024;
/// Wait before reconnecting after a failed connect.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Connects started in one turn of the loop at most. Between turns the loop polls, so a
/// connect's completion is seen (and timed) soon after it happens, not after the thread
/// has issued every other connect of a large `-c` (which would time the generator).
const CONNECTS_PER_TURN: usize = 16;
/// Connections that failed before getting ready (connect refused, greeting, TLS, AUTH ...),
/// with none ever ready, after which a thread gives up.
const MAX_SETUP_FAILURES: u64 = 20;
/// How much of a corpus message's wire form a connection's staging buffer is filled with at
/// a time (a little more when a piece ends in dot-stuffed lines or the message's end).
pub const STAGING: usize = 16 * 1024;

/// A server to load.
#[derive(Debug, Clone)]
pub struct Target {
    /// `--target` as given.
    pub text: String,
    /// Its address.
    pub addr: SocketAddr,
    /// TLS (`--starttls`, `--tls`): the shared configuration and this target's server name.
    pub tls: Option<TlsClient>,
}

/// What one thread is asked to do.
#[derive(Debug, Clone)]
pub struct ThreadPlan {
    /// The thread's number.
    pub index: usize,
    /// Where to connect: each new connection to the next in turn.
    pub targets: Vec<Target>,
    /// Local addresses to bind (port 0), each new connection the next in turn; empty: the
    /// system chooses.
    pub sources: Vec<SocketAddr>,
    /// Connections this thread keeps open.
    pub connections: usize,
    /// Messages to send (`None`: until `end`).
    pub messages: Option<u64>,
    /// Open-loop rate for this thread in messages per second (`None`: closed loop).
    pub rate: Option<f64>,
    /// When the run starts (shared by all threads).
    pub start: Instant,
    /// Measurements before this instant are warm-up.
    pub warmup_end: Instant,
    /// When to stop starting messages (duration mode).
    pub end: Option<Instant>,
    /// Spread the initial connects over this long.
    pub stagger: Duration,
    /// A reply not received within this is a timeout.
    pub reply_timeout: Duration,
    /// How much of each wait for a deadline is spun rather than slept (see `pacer`).
    pub pace_spin: Duration,
    /// Seed for message sizes and random corpus order.
    pub seed: u64,
}

/// One interval's measurements from one thread.
#[derive(Debug)]
pub struct IntervalReport {
    /// The reporting thread's number.
    pub thread: usize,
    /// Interval number since the run start.
    pub interval: u64,
    /// Whether the interval is (partly) inside the warm-up.
    pub warmup: bool,
    /// The measurements.
    pub recorder: Recorder,
    /// Set on the thread's last report.
    pub last: bool,
    /// Open-loop messages that were due but never started (the thread's final report).
    pub backlog: u64,
}

/// A connection and its buffers.
struct Conn {
    /// The socket, plain or with TLS over it.
    transport: Transport,
    /// `None` while the TCP connect is in progress.
    client: Option<Client>,
    /// Its target's number in the plan.
    target: usize,
    /// When the connect started.
    connect_started: Instant,
    /// What to write: commands, generated content, corpus messages to stream.
    out: Output,
    /// Wire bytes of a corpus message (and the commands around it) to write before `out`.
    staging: Vec<u8>,
    /// Written part of `staging`.
    staging_pos: usize,
    /// The corpus message being streamed into `staging`.
    body: Option<BodyStream>,
    /// Received bytes not yet parsed.
    input: Vec<u8>,
    /// When the last reply (or the connect) happened, for the reply timeout.
    last_progress: Instant,
    /// Registered interest.
    interest: Interest,
    /// Its slot in the run's account: alive or down (see `slots`).
    slot: Slot,
    /// Whether its session was set up (counted in the account's sessions).
    ready: bool,
}

/// The thread's state.
struct Engine {
    /// What this thread is asked to do.
    plan: ThreadPlan,
    /// What every connection sends.
    workload: Arc<Workload>,
    /// The event loop's poller.
    poll: Poll,
    /// The clock the loop waits with (a timer finer than the poll's milliseconds).
    pacer: Pacer,
    /// Open connections; slab keys are poll tokens.
    conns: Slab<Conn>,
    /// Current interval's measurements.
    recorder: Recorder,
    /// Number of the current interval.
    interval: u64,
    /// Messages started by this thread.
    started: u64,
    /// Open loop: the next slot number.
    next_slot: u64,
    /// Sizes.
    rng: Rng,
    /// Sequence numbers for address patterns (unique over threads: thread index in low bits).
    threads: u64,
    /// Connections still to open at given times (staggering, reconnect backoff), with the
    /// state of the slot each one fills.
    pending_connects: Vec<(Instant, Slot)>,
    /// Connections that failed before getting ready.
    setup_failures: u64,
    /// Whether any connection ever got ready for transactions.
    ever_ready: bool,
    /// Whether the server refused the credentials (`5xx` to `AUTH`): no new connection is
    /// opened then. A wrong `--auth` is a mistake of the run, not a load to keep offering,
    /// and each retry would spend the server's failure allowance for this host
    /// (fastsmtpd's `--auth-max-failures-per-ip`, Postfix's `smtpd_client_auth_rate_limit`),
    /// locking out every other sender on it.
    credentials_refused: bool,
    /// Reports go here.
    reports: Sender<IntervalReport>,
    /// The read buffer every connection of the thread shares ([`READ_CHUNK`] bytes, made
    /// once: a buffer on the stack would be zeroed on every read event).
    scratch: Vec<u8>,
    /// The corpus files, when messages come from a corpus.
    reader: Option<CorpusReader>,
    /// Connections opened so far (the round robin over targets and sources).
    connects: usize,
    /// The run's account of connections alive (shared by every thread).
    slots: Arc<Mutex<SlotAccount>>,
}

/// Runs one thread's plan to completion.
pub fn run_thread(
    plan: ThreadPlan,
    threads: usize,
    workload: Arc<Workload>,
    reports: Sender<IntervalReport>,
    slots: Arc<Mutex<SlotAccount>>,
) -> io::Result<()> {
    let stagger_step = if plan.connections > 0 {
        plan.stagger / plan.connections as u32
    } else {
        Duration::ZERO
    };
    let pending_connects = (0..plan.connections)
        .map(|i| (plan.start + stagger_step * i as u32, Slot::New))
        .collect();
    let reader = match &workload.corpus {
        Some(corpus) => Some(CorpusReader::new(Arc::clone(corpus))?),
        None => None,
    };
    let connects = plan.index;
    let poll = Poll::new()?;
    let pacer = Pacer::new(&poll, plan.pace_spin);
    let mut engine = Engine {
        rng: Rng::new(plan.seed.wrapping_add(plan.index as u64)),
        threads: threads as u64,
        plan,
        workload,
        poll,
        pacer,
        conns: Slab::new(),
        recorder: Recorder::new(),
        interval: 0,
        started: 0,
        next_slot: 0,
        pending_connects,
        setup_failures: 0,
        ever_ready: false,
        credentials_refused: false,
        reports,
        scratch: vec![0; READ_CHUNK],
        reader,
        connects,
        slots,
    };
    engine.run()
}

impl Engine {
    /// The loop: open due connections, start due messages, write, poll, handle events, expire
    /// reply timeouts, report at interval ends; until the work is done and every connection
    /// closed. Then the last report.
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            self.open_due_connections(now);
            self.start_messages(now);
            if !self.work_left(now) {
                self.abandon_setups(now);
            }
            self.flush_all();
            if self.finished() {
                break;
            }
            let wake = self.next_wake(Instant::now());
            self.pacer.wait(&mut self.poll, &mut events, wake)?;
            let now = Instant::now();
            for event in events.iter() {
                if event.token() == pacer::TIMER {
                    self.pacer.on_timer();
                    continue;
                }
                let peer_closed = event.is_read_closed() || event.is_error();
                self.on_event(event.token().0, peer_closed, now);
            }
            self.check_timeouts(now);
            if now >= self.interval_end() {
                self.send_report(now, false);
            }
        }
        self.send_report(Instant::now(), true);
        Ok(())
    }

    /// When the current reporting interval ends.
    fn interval_end(&self) -> Instant {
        self.plan.start + INTERVAL * (self.interval as u32 + 1)
    }

    /// Whether more messages may still be started (ignoring whether one is due yet).
    fn work_left(&self, now: Instant) -> bool {
        if self.gave_up() {
            return false;
        }
        let quota_left = self.plan.messages.is_none_or(|quota| self.started < quota);
        let time_left = self.plan.end.is_none_or(|end| now < end);
        quota_left && time_left
    }

    /// Whether the thread gave up: its first connections all failed before getting ready.
    fn gave_up(&self) -> bool {
        self.credentials_refused || (self.setup_failures >= MAX_SETUP_FAILURES && !self.ever_ready)
    }

    /// Moves one slot from `from` to `to` in the run's account.
    fn slot_change(&self, now: Instant, from: Slot, to: Slot) {
        if from != to {
            lock(&self.slots).change(now, from, to);
        }
    }

    /// A slot (in state `slot`) that no connection will fill any more: retired once the
    /// work is done or covered; down for good when the thread gave up (the connections
    /// asked for never came).
    fn release_slot(&self, now: Instant, slot: Slot) {
        let to = if self.gave_up() {
            Slot::Down
        } else {
            Slot::Retired
        };
        self.slot_change(now, slot, to);
    }

    /// Whether the thread is done: no work left and every connection closed.
    fn finished(&self) -> bool {
        !self.work_left(Instant::now()) && self.conns.is_empty()
    }

    /// Open loop: the intended start of the next slot (`None` in closed loop, or when it
    /// lies past what the clock can add up: never due).
    fn next_intended(&self) -> Option<Instant> {
        let rate = self.plan.rate?;
        let offset = Duration::try_from_secs_f64(self.next_slot as f64 / rate).ok()?;
        self.plan.start.checked_add(offset)
    }

    /// When to wake up at the latest: the nearest of the interval end, a pending connect, the
    /// next open-loop slot and the run's end (the pacer waits at most
    /// [`pacer::MAX_WAIT`]: reply timeouts are checked after each poll).
    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = self.interval_end();
        if let Some(next) = self.pending_connects.iter().map(|(at, _)| *at).min() {
            wake = wake.min(next);
        }
        if self.work_left(now) {
            if let Some(intended) = self.next_intended() {
                wake = wake.min(intended);
            }
        }
        if let Some(end) = self.plan.end {
            if now < end {
                wake = wake.min(end);
            }
        }
        wake
    }

    /// Whether one more connection has work to do: with a message quota and a per-connection
    /// limit, the connections open or pending may already cover every message left, and a
    /// new one would only greet and QUIT (and inflate the server's connection count).
    fn connection_needed(&self, now: Instant) -> bool {
        if !self.work_left(now) {
            return false;
        }
        let per_conn = self.workload.msgs_per_conn;
        let Some(quota) = self.plan.messages else {
            return true;
        };
        if per_conn == 0 {
            return true;
        }
        let remaining = quota.saturating_sub(self.started);
        let open_capacity: u64 = self
            .conns
            .iter()
            .map(|(_, conn)| {
                conn.client
                    .as_ref()
                    .map_or(per_conn, |client| per_conn.saturating_sub(client.started()))
            })
            .sum();
        let pending_capacity = self.pending_connects.len() as u64 * per_conn;
        remaining > open_capacity + pending_capacity
    }

    /// Opens the pending connections that are due, if still needed (drops them when not),
    /// at most [`CONNECTS_PER_TURN`] (the rest stay due: the loop comes back at once).
    /// A slot's first connection makes it alive (within [`SETUP_GRACE`]).
    fn open_due_connections(&mut self, now: Instant) {
        let mut i = 0;
        let mut opened = 0;
        while i < self.pending_connects.len() {
            if opened == CONNECTS_PER_TURN {
                break;
            }
            let (at, slot) = self.pending_connects[i];
            if at <= now || !self.work_left(now) {
                self.pending_connects.swap_remove(i);
                // Asked with this connect no longer pending (it counts among the pending).
                if self.connection_needed(now) {
                    opened += 1;
                    let slot = if slot == Slot::New {
                        self.slot_change(now, Slot::New, Slot::Alive);
                        Slot::Alive
                    } else {
                        slot
                    };
                    self.connect(now, slot);
                } else {
                    self.release_slot(now, slot);
                }
            } else {
                i += 1;
            }
        }
    }

    /// Starts a non-blocking connect to the next target from the next source address and
    /// registers the socket, for a slot in state `slot`; a failure is retried later. The
    /// connect is timed from its own start (the clock read here), not from the loop turn's
    /// `now` shared by every connect of the turn.
    fn connect(&mut self, now: Instant, slot: Slot) {
        let started = Instant::now().max(now);
        let turn = self.connects;
        self.connects += 1;
        let target = turn % self.plan.targets.len();
        let source = match self.plan.sources.len() {
            0 => None,
            n => Some(self.plan.sources[turn % n]),
        };
        match open_socket(self.plan.targets[target].addr, source) {
            Ok(mut stream) => {
                let entry = self.conns.vacant_entry();
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut stream, Token(entry.key()), interest)
                    .is_err()
                {
                    self.count_error(ErrorKind::Refused, target);
                    self.recorder.not_ready("connect failed".into());
                    self.slot_change(now, slot, Slot::Down);
                    self.pending_connects
                        .push((now + RECONNECT_BACKOFF, Slot::Down));
                    return;
                }
                entry.insert(Conn {
                    transport: Transport::plain(stream),
                    client: None,
                    target,
                    connect_started: started,
                    out: Output::with_capacity(4096),
                    staging: Vec::new(),
                    staging_pos: 0,
                    body: None,
                    input: Vec::with_capacity(4096),
                    last_progress: started,
                    interest,
                    slot,
                    ready: false,
                });
            }
            Err(e) => {
                if let Some(source) = source {
                    // Binding can fail at run time (the address's ports are all in use).
                    self.recorder
                        .note(format!("connect from {}: {e}", source.ip()));
                }
                self.connect_failed(now, target, slot);
            }
        }
    }

    /// Counts a failed connect to `target` (its slot, in state `slot`, is down) and
    /// schedules another after the backoff.
    fn connect_failed(&mut self, now: Instant, target: usize, slot: Slot) {
        self.count_error(ErrorKind::Refused, target);
        self.recorder.not_ready("connect failed".into());
        self.setup_failures += 1;
        self.slot_change(now, slot, Slot::Down);
        self.pending_connects
            .push((now + RECONNECT_BACKOFF, Slot::Down));
    }

    /// Counts an error of `kind` with `target` (and in its own figures when there are
    /// several targets).
    fn count_error(&mut self, kind: ErrorKind, target: usize) {
        self.recorder.error(kind);
        if self.plan.targets.len() > 1 {
            self.recorder.target(target).errors += 1;
        }
    }

    /// Handles readiness of connection `key`: completes a pending connect (timing it,
    /// starting TLS for implicit TLS, and creating its client), then reads.
    fn on_event(&mut self, key: usize, peer_closed: bool, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.client.is_none() {
            // A connect completes when the socket turns writable without an error.
            let socket = conn.transport.socket();
            match socket.take_error() {
                Ok(None) => {}
                _ => return self.drop_conn(key, Some(ErrorKind::Refused), now),
            }
            match socket.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => return self.drop_conn(key, Some(ErrorKind::Refused), now),
            }
            let _ = socket.set_nodelay(true);
            let nanos = now
                .saturating_duration_since(conn.connect_started)
                .as_nanos() as u64;
            record(&mut self.recorder.stages[Stage::Connect.index()], nanos);
            conn.client = Some(Client::new(&self.workload, conn.connect_started, now));
            conn.last_progress = now;
            if self.workload.security == Security::Implicit && !self.start_tls(key, now) {
                return;
            }
        }
        self.read(key, peer_closed, now);
    }

    /// Starts TLS on connection `key` (its `ClientHello` goes out with the next flush);
    /// returns false if the connection was dropped.
    fn start_tls(&mut self, key: usize, now: Instant) -> bool {
        let Some(tls) = &self.plan.targets[self.conns[key].target].tls else {
            self.fail_conn(
                key,
                ErrorKind::Tls,
                "TLS asked for without a configuration".into(),
                now,
            );
            return false;
        };
        let conn = &mut self.conns[key];
        if let Err(e) = conn.transport.start_tls(&tls.config, &tls.server_name) {
            let words = crate::tls::describe_error(&e);
            self.fail_conn(key, ErrorKind::Tls, format!("TLS: {words}"), now);
            return false;
        }
        true
    }

    /// Reads and handles replies. `peer_closed`: the poller saw the server's FIN (or an
    /// error), so read on to end of file: no later event would announce it again.
    fn read(&mut self, key: usize, peer_closed: bool, now: Instant) {
        let mut buf = std::mem::take(&mut self.scratch);
        self.read_into(key, peer_closed, now, &mut buf);
        self.scratch = buf;
    }

    /// [`Engine::read`] with the thread's read buffer `buf`.
    fn read_into(&mut self, key: usize, peer_closed: bool, now: Instant, buf: &mut [u8]) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let result = conn.transport.try_read(buf, peer_closed);
            // A handshake that completed in this read comes before the plaintext behind it
            // (with implicit TLS the greeting may arrive in the same records).
            if let Some(resumed) = conn.transport.take_handshake_done() {
                if !self.on_handshake(key, resumed, now) {
                    return;
                }
            }
            let conn = &mut self.conns[key];
            match result {
                Ok(0) => {
                    let clean = conn.client.as_ref().is_some_and(Client::is_closed);
                    let error = if clean { None } else { Some(ErrorKind::Reset) };
                    return self.drop_conn(key, error, now);
                }
                Ok(n) => {
                    conn.input.extend_from_slice(&buf[..n]);
                    let tls = conn.transport.is_tls();
                    if !self.process_replies(key, now) {
                        return;
                    }
                    if n < buf.len() && !peer_closed && !tls {
                        // A short read took all the socket had. mio is edge-triggered and any
                        // later arrival raises a new event, so the read that would only say
                        // WouldBlock is skipped: one read per batch of replies. (Not for TLS:
                        // rustls reads the socket in records and may hold plaintext.)
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return match tls_error(&e) {
                        Some(tls) => {
                            let words = crate::tls::describe_error(tls);
                            self.fail_conn(key, ErrorKind::Tls, format!("TLS: {words}"), now)
                        }
                        None => self.drop_conn(key, Some(ErrorKind::Reset), now),
                    }
                }
            }
        }
    }

    /// The handshake of connection `key` completed: counted (full or resumed) and timed by
    /// the client, which may write (EHLO after STARTTLS). Returns false if the connection was
    /// dropped.
    fn on_handshake(&mut self, key: usize, resumed: bool, now: Instant) -> bool {
        let workload = Arc::clone(&self.workload);
        let conn = &mut self.conns[key];
        let Some(client) = conn.client.as_mut() else {
            return true;
        };
        let recorder = &mut self.recorder;
        let target = (self.plan.targets.len() > 1).then_some(conn.target);
        client.on_tls_established(&workload, now, &mut conn.out, |event| {
            record_event(recorder, event, now, resumed, target)
        });
        conn.last_progress = now;
        if client.is_closed() {
            self.fail_conn(
                key,
                ErrorKind::Desync,
                "a TLS handshake the session did not ask for".into(),
                now,
            );
            return false;
        }
        true
    }

    /// Parses and handles every complete reply; returns false if the connection was dropped.
    fn process_replies(&mut self, key: usize, now: Instant) -> bool {
        let workload = Arc::clone(&self.workload);
        let conn = &mut self.conns[key];
        let Some(client) = conn.client.as_mut() else {
            return true;
        };
        let recorder = &mut self.recorder;
        let target = (self.plan.targets.len() > 1).then_some(conn.target);
        let mut pos = 0;
        let mut last = 0..0;
        let mut garbage = None;
        // Replies are handed over until the session ends or asks for TLS: bytes behind the
        // 220 to STARTTLS are not replies (see below).
        while !client.is_closed() && !client.tls_requested() {
            match parse_reply(&conn.input[pos..]) {
                Ok(Some((reply, used))) => {
                    let raw = &conn.input[pos..pos + used];
                    client.on_reply(&workload, reply, raw, now, &mut conn.out, |event| {
                        record_event(recorder, event, now, false, target)
                    });
                    last = pos..pos + used;
                    pos += used;
                    conn.last_progress = now;
                }
                Ok(None) => break,
                Err(e) => {
                    garbage = Some(e);
                    break;
                }
            }
        }
        if client.was_ready() && !conn.ready {
            self.ever_ready = true;
            conn.ready = true;
            let mut slots = lock(&self.slots);
            slots.session(now, true);
            if conn.slot == Slot::Down {
                // A session set up again: its slot is alive.
                slots.change(now, Slot::Down, Slot::Alive);
                conn.slot = Slot::Alive;
            }
        }
        if let Some(error) = garbage {
            let detail = format!("a reply that does not parse ({error})");
            self.fail_conn(key, ErrorKind::Desync, detail, now);
            return false;
        }
        if client.is_closed() {
            if let Some(failure) = client.failure() {
                let kind = match failure {
                    Failure::Desync => ErrorKind::Desync,
                    Failure::ServiceClosing => ErrorKind::ServiceClosing,
                    Failure::Refused(_) | Failure::MissingExtension(_) => ErrorKind::Rejected,
                };
                let detail = describe_failure(failure, &workload, &conn.input[last]);
                self.fail_conn(key, kind, detail, now);
                return false;
            }
            // QUIT answered: close now. RFC 5321 §4.1.1.10 has the server close after its
            // 221 and lets the client close once it has the reply, as smtp-source, swaks
            // and smtplib do; waiting for the server's FIN would hang on a server that
            // never sends one (no reply is awaited, so no reply timeout would end it).
            self.drop_conn(key, None, now);
            return false;
        }
        conn.input.drain(..pos);
        if client.tls_requested() && !conn.transport.is_tls() {
            if !conn.input.is_empty() {
                // RFC 3207 §4: the server sends nothing between its 220 and the handshake.
                // Bytes there would be read as if they came through TLS (a man in the middle
                // could inject replies that way): end the connection instead.
                self.fail_conn(
                    key,
                    ErrorKind::Desync,
                    "bytes after the 220 to STARTTLS, before the TLS handshake".into(),
                    now,
                );
                return false;
            }
            return self.start_tls(key, now);
        }
        true
    }

    /// Starts every message the load model allows now, and QUITs finished connections.
    fn start_messages(&mut self, now: Instant) {
        let workload = Arc::clone(&self.workload);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            loop {
                let work_left = self.work_left(now);
                let conn = &mut self.conns[key];
                let Some(client) = conn.client.as_mut() else {
                    break;
                };
                if client.should_quit(&workload, !work_left) {
                    client.quit(now, &mut conn.out);
                    break;
                }
                if !work_left || !client.can_start(&workload) {
                    break;
                }
                let intended = match self.plan.rate {
                    None => None,
                    Some(_) => {
                        let Some(intended) = self.next_intended().filter(|at| *at <= now) else {
                            break;
                        };
                        self.next_slot += 1;
                        record(
                            &mut self.recorder.send_lateness,
                            now.saturating_duration_since(intended).as_nanos() as u64,
                        );
                        Some(intended)
                    }
                };
                let seq = self.started * self.threads + self.plan.index as u64;
                let content = workload.pick_content(seq, &mut self.rng);
                self.started += 1;
                self.recorder.started += 1;
                let conn = &mut self.conns[key];
                if self.plan.targets.len() > 1 {
                    self.recorder.target(conn.target).started += 1;
                }
                let client = conn.client.as_mut().expect("checked above");
                if !client.is_waiting() {
                    conn.last_progress = now;
                }
                client.start_message(&workload, seq, content, intended, now, &mut conn.out);
            }
        }
    }

    /// Writes pending output on every connection that has some (commands, or TLS records).
    fn flush_all(&mut self) {
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.has_output() || conn.transport.wants_write())
            .map(|(key, _)| key)
            .collect();
        let now = Instant::now();
        for key in keys {
            self.flush(key, now);
        }
    }

    /// Writes what connection `key` has pending until done or `WouldBlock` (for TLS: into
    /// rustls, then its records to the socket), and asks for WRITABLE only while output
    /// remains. Commands go out from the output as they are; around a corpus message, the
    /// staging buffer is filled with the next piece once the socket took the last.
    fn flush(&mut self, key: usize, now: Instant) {
        let conn = &mut self.conns[key];
        loop {
            let result = if conn.staging_pos < conn.staging.len() {
                conn.transport
                    .try_write(&conn.staging[conn.staging_pos..])
                    .map(|n| (n, true))
            } else if conn.body.is_none() && !conn.out.has_bodies() {
                let Next::Bytes(bytes) = conn.out.next() else {
                    break;
                };
                conn.transport.try_write(bytes).map(|n| (n, false))
            } else {
                match fill_staging(conn, self.reader.as_mut()) {
                    Ok(()) if conn.staging.is_empty() => break,
                    Ok(()) => continue,
                    Err(e) => {
                        let detail = format!("corpus: {e}");
                        return self.fail_conn(key, ErrorKind::Corpus, detail, now);
                    }
                }
            };
            match result {
                Ok((0, _)) => return self.drop_conn(key, Some(ErrorKind::Reset), now),
                Ok((n, true)) => {
                    conn.staging_pos += n;
                    if conn.staging_pos == conn.staging.len() {
                        conn.staging.clear();
                        conn.staging_pos = 0;
                    }
                }
                Ok((n, false)) => conn.out.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.drop_conn(key, Some(ErrorKind::Reset), now),
            }
        }
        if conn.transport.flush_buffered().is_err() {
            return self.drop_conn(key, Some(ErrorKind::Reset), now);
        }
        let wanted = if !conn.has_output() && !conn.transport.wants_write() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if wanted != conn.interest && conn.client.is_some() {
            let _ = self
                .poll
                .registry()
                .reregister(conn.transport.socket(), Token(key), wanted);
            conn.interest = wanted;
        }
    }

    /// Drops connections that waited longer than the reply timeout for a reply (or a
    /// connect); marks down the slots whose session is taking longer than [`SETUP_GRACE`]
    /// to set up (from the moment the grace ran out).
    fn check_timeouts(&mut self, now: Instant) {
        let timeout = self.plan.reply_timeout;
        for (_, conn) in self.conns.iter_mut() {
            let grace_end = conn.connect_started + SETUP_GRACE;
            if !conn.ready && conn.slot == Slot::Alive && now > grace_end {
                lock(&self.slots).change(grace_end, Slot::Alive, Slot::Down);
                conn.slot = Slot::Down;
            }
        }
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| {
                let waiting = conn.client.as_ref().is_none_or(Client::is_waiting);
                waiting && now.saturating_duration_since(conn.last_progress) > timeout
            })
            .map(|(key, _)| key)
            .collect();
        for key in late {
            self.drop_conn(key, Some(ErrorKind::Timeout), now);
        }
    }

    /// Once no work is left, closes the connections whose session has been setting up
    /// (connecting, or awaiting the greeting, EHLO, TLS or AUTH) for longer than
    /// [`SETUP_GRACE`]: no message can go out on them any more, and a server that never
    /// answers them would otherwise hold the run's end for up to `--timeout`. Each counts
    /// as never ready ("awaiting greeting at the run's end"). Younger set-ups (a reconnect
    /// for `--msgs-per-conn` just before the end) are left to finish with QUIT.
    fn abandon_setups(&mut self, now: Instant) {
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| {
                !conn.client.as_ref().is_some_and(Client::was_ready)
                    && now >= conn.connect_started + SETUP_GRACE
            })
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            let conn = self.conns.remove(key);
            let awaiting = conn.client.as_ref().map_or("connect", |client| {
                client.awaiting().map_or("nothing", |s| s.name())
            });
            self.recorder
                .not_ready(format!("awaiting {awaiting} at the run's end"));
            self.release_slot(now, conn.slot);
        }
    }

    /// Closes a connection with an error of `kind` described by `detail`.
    fn fail_conn(&mut self, key: usize, kind: ErrorKind, detail: String, now: Instant) {
        self.recorder.note(detail);
        self.drop_conn(key, Some(kind), now);
    }

    /// Closes a connection, counts `error`, and replaces it if work is left. An error puts
    /// its slot down until a new session is set up; a clean close (after `QUIT`) keeps it as
    /// it was.
    fn drop_conn(&mut self, key: usize, error: Option<ErrorKind>, now: Instant) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        if let Some(kind) = error {
            if let Some((Stage::Auth, 500..=599)) =
                conn.client.as_ref().and_then(Client::last_reply)
            {
                self.credentials_refused = true;
            }
            if !conn.client.as_ref().is_some_and(Client::was_ready) {
                self.setup_failures += 1;
                self.recorder.not_ready(never_ready_reason(&conn, kind));
            }
            self.count_error(kind, conn.target);
        }
        if conn.ready {
            lock(&self.slots).session(now, false);
        }
        let slot = if error.is_some() {
            Slot::Down
        } else {
            conn.slot
        };
        self.slot_change(now, conn.slot, slot);
        // Messages still in flight on a broken connection are lost: count them failed.
        if let Some(client) = &conn.client {
            let lost = client.in_flight() as u64;
            self.recorder.failed += lost;
            if self.plan.targets.len() > 1 {
                self.recorder.target(conn.target).failed += lost;
            }
        }
        if self.connection_needed(now) {
            let delay = if error.is_some() {
                RECONNECT_BACKOFF
            } else {
                Duration::ZERO
            };
            self.pending_connects.push((now + delay, slot));
        } else {
            self.release_slot(now, slot);
        }
    }

    /// Hands the current interval's recorder to the reporter and moves to the interval `now`
    /// is in (`last`: the thread's final report, with the open-loop backlog).
    fn send_report(&mut self, now: Instant, last: bool) {
        let recorder = std::mem::take(&mut self.recorder);
        let interval_start = self.plan.start + INTERVAL * self.interval as u32;
        let backlog = if last {
            self.plan.rate.map_or(0, |rate| {
                // Slots whose intended time passed within the run but never started.
                let end = self.plan.end.unwrap_or(now).min(now);
                let due =
                    (end.saturating_duration_since(self.plan.start).as_secs_f64() * rate) as u64;
                let due = self.plan.messages.map_or(due, |quota| due.min(quota));
                due.saturating_sub(self.next_slot)
            })
        } else {
            0
        };
        let _ = self.reports.send(IntervalReport {
            thread: self.plan.index,
            interval: self.interval,
            warmup: interval_start < self.plan.warmup_end,
            recorder,
            last,
            backlog,
        });
        self.interval = (now.saturating_duration_since(self.plan.start).as_nanos()
            / INTERVAL.as_nanos()) as u64;
    }
}

/// Fills connection `conn`'s empty staging buffer with the next [`STAGING`] bytes or so of
/// its output: commands copied, corpus messages streamed from their files by `reader`.
/// Leaves it empty only when nothing is pending.
fn fill_staging(conn: &mut Conn, mut reader: Option<&mut CorpusReader>) -> io::Result<()> {
    while conn.staging.len() < STAGING {
        let room = STAGING - conn.staging.len();
        if let Some(body) = conn.body.as_mut() {
            let Some(reader) = reader.as_deref_mut() else {
                return Err(io::Error::other("a corpus message without a corpus"));
            };
            if reader.fill(body, &mut conn.staging, room)? {
                conn.body = None;
            }
            continue;
        }
        match conn.out.next() {
            Next::Bytes(bytes) => {
                let n = bytes.len().min(room);
                conn.staging.extend_from_slice(&bytes[..n]);
                conn.out.consume(n);
            }
            Next::Body(body) => {
                let Some(reader) = reader.as_deref_mut() else {
                    return Err(io::Error::other("a corpus message without a corpus"));
                };
                conn.body = Some(reader.open(body.message, body.form)?);
                conn.out.take_body();
            }
            Next::Empty => break,
        }
    }
    Ok(())
}

/// The run's slot account, locked (a thread that panicked while holding it left counts that
/// are still counts).
fn lock(slots: &Mutex<SlotAccount>) -> std::sync::MutexGuard<'_, SlotAccount> {
    slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a connection that never got ready ended (the key of [`Recorder::never_ready`]): a
/// refusal's step and code (`greeting 421`, `auth 535`), or what went wrong while waiting
/// for a step (`closed awaiting greeting`, `timeout awaiting ehlo`).
fn never_ready_reason(conn: &Conn, kind: ErrorKind) -> String {
    let Some(client) = &conn.client else {
        return match kind {
            ErrorKind::Timeout => "connect timed out".into(),
            _ => "connect failed".into(),
        };
    };
    if let Some((stage, code)) = client.last_reply() {
        if code >= 400 {
            return format!("{} {code}", stage.name());
        }
    }
    let awaiting = client.awaiting().map_or("nothing", |s| s.name());
    match kind {
        ErrorKind::Refused => "connect failed".into(),
        ErrorKind::Reset => format!("closed awaiting {awaiting}"),
        ErrorKind::Timeout => format!("timeout awaiting {awaiting}"),
        ErrorKind::Tls => "TLS failed".into(),
        ErrorKind::Desync => format!("desync awaiting {awaiting}"),
        ErrorKind::ServiceClosing => format!("{awaiting} 421"),
        ErrorKind::Rejected => "a needed extension not offered".into(),
        ErrorKind::Corpus => "corpus".into(),
    }
}

/// Opens a non-blocking TCP connection to `target`, from `source` (port 0: the system picks
/// one) if given. mio's own connect cannot bind first, so the socket is made with socket2.
fn open_socket(target: SocketAddr, source: Option<SocketAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(target);
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.bind(&source.into())?;
    match socket.connect(&target.into()) {
        Ok(()) => {}
        // A non-blocking connect under way; its end is the socket turning writable.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

impl Conn {
    /// Whether anything waits to be written (commands, staged bytes, a message's rest).
    fn has_output(&self) -> bool {
        !self.out.is_empty() || self.staging_pos < self.staging.len() || self.body.is_some()
    }
}

/// Records what the client reports (`resumed`: how a handshake it reports went; `target`:
/// the connection's target, when figures are kept per target).
fn record_event(
    recorder: &mut Recorder,
    event: Event,
    now: Instant,
    resumed: bool,
    target: Option<usize>,
) {
    if let Some(target) = target {
        let figures = recorder.target(target);
        match event {
            Event::Reply {
                stage: Stage::Eod | Stage::Bdat,
                nanos,
                ..
            } => record(&mut figures.eod, nanos),
            Event::Message { accepted, size, .. } => {
                if accepted {
                    figures.accepted += 1;
                    figures.accepted_bytes += size as u64;
                } else {
                    figures.failed += 1;
                }
            }
            _ => {}
        }
    }
    match event {
        Event::Reply { stage, code, nanos } => recorder.reply(stage, code, nanos),
        Event::Code { stage, code } => recorder.code(stage, code),
        Event::Handshake { nanos } => recorder.handshake(nanos, resumed),
        Event::Message {
            accepted,
            size,
            started,
            intended,
        } => {
            let service = now.saturating_duration_since(started).as_nanos() as u64;
            let corrected = intended.map(|at| now.saturating_duration_since(at).as_nanos() as u64);
            recorder.message_done(accepted, size, service, corrected);
        }
    }
}
