//! One load-generating thread: a mio event loop driving many client connections.
//!
//! What it does: open its share of the connections (staggered if asked), start messages when
//! the load model allows, move bytes between sockets and each connection's [`Client`], time
//! connects, hand a [`Recorder`] for every one-second interval to the reporter, and stop when
//! its share of the work is done.
//!
//! Load models:
//! * **closed loop** (no `--rate`): a connection starts its next message as soon as the client
//!   allows (for pipelining: right behind the previous end-of-data dot).
//! * **open loop** (`--rate R`): the thread's share of messages has intended start times
//!   `start + i / rate`, shared by all its connections. A due message waits for a free
//!   connection; its latency counts from the intended time (as wrk2 does), so a server stall
//!   shows in the corrected histogram even though the generator sent nothing meanwhile.
//!
//! What it does not do: parse replies (see `reply`) or aggregate across threads (`runner`,
//! `report::results`).

use crate::client::{Client, Event, Failure, Stage};
use crate::record::{record, ErrorKind, Recorder};
use crate::reply::parse_reply;
use crate::workload::{Rng, Workload};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Length of a reporting interval.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Wait before reconnecting after a failed connect.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Consecutive failed connects (with none succeeding) after which a thread gives up.
const MAX_CONNECT_FAILURES: u64 = 20;

/// What one thread is asked to do.
#[derive(Debug, Clone)]
pub struct ThreadPlan {
    /// The thread's number.
    pub index: usize,
    /// Where to connect.
    pub target: SocketAddr,
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
    /// Seed for message sizes.
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
    /// The socket.
    stream: TcpStream,
    /// `None` while the TCP connect is in progress.
    client: Option<Client>,
    /// When the connect started.
    connect_started: Instant,
    /// Bytes to write.
    out: Vec<u8>,
    /// Written part of `out`.
    out_pos: usize,
    /// Received bytes not yet parsed.
    input: Vec<u8>,
    /// When the last reply (or the connect) happened, for the reply timeout.
    last_progress: Instant,
    /// Registered interest.
    interest: Interest,
}

/// The thread's state.
struct Engine {
    /// What this thread is asked to do.
    plan: ThreadPlan,
    /// What every connection sends.
    workload: Arc<Workload>,
    /// The event loop's poller.
    poll: Poll,
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
    /// Connections still to open at given times (staggering, reconnect backoff).
    pending_connects: Vec<Instant>,
    /// Connects that failed in a row without any success.
    connect_failures: u64,
    /// Whether any connect ever succeeded.
    ever_connected: bool,
    /// Reports go here.
    reports: Sender<IntervalReport>,
}

/// Runs one thread's plan to completion.
pub fn run_thread(
    plan: ThreadPlan,
    threads: usize,
    workload: Arc<Workload>,
    reports: Sender<IntervalReport>,
) -> io::Result<()> {
    let stagger_step = if plan.connections > 0 {
        plan.stagger / plan.connections as u32
    } else {
        Duration::ZERO
    };
    let pending_connects = (0..plan.connections)
        .map(|i| plan.start + stagger_step * i as u32)
        .collect();
    let mut engine = Engine {
        rng: Rng::new(plan.seed.wrapping_add(plan.index as u64)),
        threads: threads as u64,
        plan,
        workload,
        poll: Poll::new()?,
        conns: Slab::new(),
        recorder: Recorder::new(),
        interval: 0,
        started: 0,
        next_slot: 0,
        pending_connects,
        connect_failures: 0,
        ever_connected: false,
        reports,
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
            self.flush_all();
            if self.finished() {
                break;
            }
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let now = Instant::now();
            for event in events.iter() {
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
        if self.connect_failures >= MAX_CONNECT_FAILURES && !self.ever_connected {
            return false;
        }
        let quota_left = self.plan.messages.is_none_or(|quota| self.started < quota);
        let time_left = self.plan.end.is_none_or(|end| now < end);
        quota_left && time_left
    }

    /// Whether the thread is done: no work left and every connection closed.
    fn finished(&self) -> bool {
        !self.work_left(Instant::now()) && self.conns.is_empty()
    }

    /// Open loop: the intended start of the next slot.
    fn next_intended(&self) -> Option<Instant> {
        let rate = self.plan.rate?;
        let offset = Duration::from_secs_f64(self.next_slot as f64 / rate);
        Some(self.plan.start + offset)
    }

    /// How long to poll: until the nearest of the interval end, a pending connect, the next
    /// open-loop slot and the run's end; at most 100 ms (reply timeouts are checked after each poll).
    fn poll_timeout(&self, now: Instant) -> Duration {
        let mut wake = self.interval_end();
        if let Some(next) = self.pending_connects.iter().min() {
            wake = wake.min(*next);
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
        wake.saturating_duration_since(now)
            .min(Duration::from_millis(100))
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

    /// Opens the pending connections that are due, if still needed (drops them when not).
    fn open_due_connections(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending_connects.len() {
            if self.pending_connects[i] <= now || !self.work_left(now) {
                self.pending_connects.swap_remove(i);
                if self.connection_needed(now) {
                    self.connect(now);
                }
            } else {
                i += 1;
            }
        }
    }

    /// Starts a non-blocking connect and registers the socket; a failure is retried later.
    fn connect(&mut self, now: Instant) {
        match TcpStream::connect(self.plan.target) {
            Ok(mut stream) => {
                let entry = self.conns.vacant_entry();
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut stream, Token(entry.key()), interest)
                    .is_err()
                {
                    self.recorder.error(ErrorKind::Refused);
                    self.pending_connects.push(now + RECONNECT_BACKOFF);
                    return;
                }
                entry.insert(Conn {
                    stream,
                    client: None,
                    connect_started: now,
                    out: Vec::with_capacity(4096),
                    out_pos: 0,
                    input: Vec::with_capacity(4096),
                    last_progress: now,
                    interest,
                });
            }
            Err(_) => self.connect_failed(now),
        }
    }

    /// Counts a failed connect and schedules another after the backoff.
    fn connect_failed(&mut self, now: Instant) {
        self.recorder.error(ErrorKind::Refused);
        self.connect_failures += 1;
        self.pending_connects.push(now + RECONNECT_BACKOFF);
    }

    /// Handles readiness of connection `key`: completes a pending connect (timing it and
    /// creating its client), then reads.
    fn on_event(&mut self, key: usize, peer_closed: bool, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.client.is_none() {
            // A connect completes when the socket turns writable without an error.
            match conn.stream.take_error() {
                Ok(None) => {}
                _ => return self.drop_conn(key, Some(ErrorKind::Refused), now),
            }
            match conn.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => return self.drop_conn(key, Some(ErrorKind::Refused), now),
            }
            let _ = conn.stream.set_nodelay(true);
            let nanos = now
                .saturating_duration_since(conn.connect_started)
                .as_nanos() as u64;
            record(&mut self.recorder.stages[Stage::Connect.index()], nanos);
            // The greeting is timed from the start of the connect: what a client waits.
            conn.client = Some(Client::new(conn.connect_started));
            conn.last_progress = now;
            self.ever_connected = true;
            self.connect_failures = 0;
        }
        self.read(key, peer_closed, now);
    }

    /// Reads and handles replies. `peer_closed`: the poller saw the server's FIN (or an
    /// error), so read on to end of file: no later event would announce it again.
    fn read(&mut self, key: usize, peer_closed: bool, now: Instant) {
        let mut buf = [0u8; 65536];
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    let clean = conn.client.as_ref().is_some_and(Client::is_closed);
                    let error = if clean { None } else { Some(ErrorKind::Reset) };
                    return self.drop_conn(key, error, now);
                }
                Ok(n) => {
                    conn.input.extend_from_slice(&buf[..n]);
                    if !self.process_replies(key, now) {
                        return;
                    }
                    if n < buf.len() && !peer_closed {
                        // A short read took all the socket had. mio is edge-triggered and any
                        // later arrival raises a new event, so the read that would only say
                        // WouldBlock is skipped: one read per batch of replies.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.drop_conn(key, Some(ErrorKind::Reset), now),
            }
        }
    }

    /// Parses and handles every complete reply; returns false if the connection was dropped.
    fn process_replies(&mut self, key: usize, now: Instant) -> bool {
        let workload = Arc::clone(&self.workload);
        let conn = &mut self.conns[key];
        let Some(client) = conn.client.as_mut() else {
            return true;
        };
        let recorder = &mut self.recorder;
        let mut pos = 0;
        let mut desync = false;
        while !client.is_closed() {
            match parse_reply(&conn.input[pos..]) {
                Ok(Some((reply, used))) => {
                    let raw = &conn.input[pos..pos + used];
                    client.on_reply(
                        &workload,
                        reply,
                        raw,
                        now,
                        &mut conn.out,
                        |event| match event {
                            Event::Reply { stage, code, nanos } => {
                                recorder.reply(stage, code, nanos)
                            }
                            Event::Message {
                                accepted,
                                size,
                                started,
                                intended,
                            } => {
                                let service =
                                    now.saturating_duration_since(started).as_nanos() as u64;
                                let corrected = intended
                                    .map(|at| now.saturating_duration_since(at).as_nanos() as u64);
                                recorder.message_done(accepted, size, service, corrected);
                            }
                        },
                    );
                    pos += used;
                    conn.last_progress = now;
                }
                Ok(None) => break,
                Err(_) => {
                    desync = true;
                    break;
                }
            }
        }
        conn.input.drain(..pos);
        let failure = client.failure();
        let closed = client.is_closed();
        if desync {
            self.drop_conn(key, Some(ErrorKind::Desync), now);
            return false;
        }
        if closed {
            let error = failure.map(|f| match f {
                Failure::Desync => ErrorKind::Desync,
                Failure::ServiceClosing => ErrorKind::ServiceClosing,
                Failure::Refused | Failure::MissingExtension => ErrorKind::Rejected,
            });
            if error.is_some() {
                self.drop_conn(key, error, now);
                return false;
            }
            // QUIT answered: the server closes; wait for its FIN (read returns 0).
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
                        let intended = self.next_intended().expect("open loop has a rate");
                        if intended > now {
                            break;
                        }
                        self.next_slot += 1;
                        record(
                            &mut self.recorder.send_lateness,
                            now.saturating_duration_since(intended).as_nanos() as u64,
                        );
                        Some(intended)
                    }
                };
                let size = workload.sizes.pick(&mut self.rng);
                let seq = self.started * self.threads + self.plan.index as u64;
                self.started += 1;
                self.recorder.started += 1;
                let conn = &mut self.conns[key];
                let client = conn.client.as_mut().expect("checked above");
                if !client.is_waiting() {
                    conn.last_progress = now;
                }
                client.start_message(&workload, seq, size, intended, now, &mut conn.out);
            }
        }
    }

    /// Writes pending output on every connection that has some.
    fn flush_all(&mut self) {
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.out_pos < conn.out.len())
            .map(|(key, _)| key)
            .collect();
        let now = Instant::now();
        for key in keys {
            self.flush(key, now);
        }
    }

    /// Writes what connection `key` has pending until done or `WouldBlock`, and asks for
    /// WRITABLE only while output remains.
    fn flush(&mut self, key: usize, now: Instant) {
        let conn = &mut self.conns[key];
        while conn.out_pos < conn.out.len() {
            match conn.stream.write(&conn.out[conn.out_pos..]) {
                Ok(0) => return self.drop_conn(key, Some(ErrorKind::Reset), now),
                Ok(n) => conn.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.drop_conn(key, Some(ErrorKind::Reset), now),
            }
        }
        if conn.out_pos == conn.out.len() {
            conn.out.clear();
            conn.out_pos = 0;
        }
        let wanted = if conn.out.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if wanted != conn.interest && conn.client.is_some() {
            let _ = self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(key), wanted);
            conn.interest = wanted;
        }
    }

    /// Drops connections that waited longer than the reply timeout for a reply (or a connect).
    fn check_timeouts(&mut self, now: Instant) {
        let timeout = self.plan.reply_timeout;
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

    /// Closes a connection, counts `error`, and replaces it if work is left.
    fn drop_conn(&mut self, key: usize, error: Option<ErrorKind>, now: Instant) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        let connected = conn.client.is_some();
        if let Some(kind) = error {
            if kind == ErrorKind::Refused && !connected {
                self.connect_failures += 1;
            }
            self.recorder.error(kind);
        }
        // Messages still in flight on a broken connection are lost: count them failed.
        if let Some(client) = &conn.client {
            for _ in 0..client.in_flight() {
                self.recorder.failed += 1;
            }
        }
        if self.connection_needed(now) {
            let delay = if error.is_some() {
                RECONNECT_BACKOFF
            } else {
                Duration::ZERO
            };
            self.pending_connects.push(now + delay);
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
