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
//! The rooms, by job (each an `impl Engine` block over the state declared here):
//! * this module: what a thread is asked to do ([`ThreadPlan`]) and reports
//!   ([`IntervalReport`]), the engine's and a connection's state, and the loop itself: one
//!   turn after another, and the report at each interval's end;
//! * `schedule`: what the load model allows in a turn: whether work is left, when to wake,
//!   which connections start a message or QUIT, the lists of connections with something to
//!   do, the deadlines (reply timeouts, set-up grace);
//! * `connections`: a connection's life: opening it (socket, bind, connect), completing the
//!   connect, closing it (cleanly or with an error, counted), replacing it, and the run's
//!   slot account;
//! * `wire`: the bytes: reading and handing replies to the client, starting TLS, writing
//!   commands and streamed corpus messages.
//!
//! What it does not do: parse replies (see `reply`), decide SMTP steps (the client), speak
//! TLS itself (`transport`, with the configuration of `tls`), or aggregate across threads
//! (`runner`, `report::results`).

mod connections;
mod schedule;
mod wire;

use crate::drive::client::Client;
use crate::drive::corpus::{BodyStream, CorpusReader};
use crate::drive::delivered::DeliveryLink;
use crate::drive::output::Output;
use crate::drive::pacer::{self, Pacer};
use crate::drive::record::Recorder;
use crate::drive::slots::{Slot, SlotAccount};
use crate::drive::tls::TlsClient;
use crate::drive::transport::Transport;
use crate::drive::workload::{Rng, Workload};
use mio::{Events, Interest, Poll};
use slab::Slab;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Length of a reporting interval.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Bytes read from a socket (or out of rustls) in one go.
const READ_CHUNK: usize = 64 * 1024;
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
    /// The end-to-end mode's tracker (`--delivered-via`), told of each message's end.
    pub delivered: Option<Arc<DeliveryLink>>,
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

/// A connection on a list: its slab key, and its number (a key is reused once its connection
/// is gone; an entry whose number differs is stale and skipped).
type Listed = (usize, u64);

/// What a deadline in the engine's heap is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Deadline {
    /// The reply timeout: the connection's last progress plus `--timeout` (checked again
    /// when progress was made since the entry was pushed).
    Reply,
    /// The set-up grace ([`SETUP_GRACE`]) from the connect's start: a slot whose session is
    /// not set up by then is down.
    ///
    /// [`SETUP_GRACE`]: crate::drive::slots::SETUP_GRACE
    Setup,
}

/// Why [`Engine::serve`] stopped starting messages on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// Nothing more for now: connecting, waiting for replies, quitting, or no work left.
    Waiting,
    /// It may start a message, but none is due yet (open loop): it waits in the queue.
    NotDue,
}

/// A connection and its buffers.
struct Conn {
    /// Its number (unique in the thread): what list entries are checked against.
    id: u64,
    /// Whether it is on the list of connections to flush.
    to_flush: bool,
    /// Whether it is on the list of connections whose client may start a message or QUIT.
    to_serve: bool,
    /// Whether it is in the open loop's queue of connections waiting for a due message.
    queued: bool,
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
    /// Connections that may have output to write (an event, a message started).
    to_flush: Vec<Listed>,
    /// Connections whose client may start a message or QUIT (an event).
    to_serve: Vec<Listed>,
    /// The list being worked through (swapped with `to_flush` or `to_serve`, so that
    /// neither list is allocated again).
    working: Vec<Listed>,
    /// Open loop: connections that may start a message, waiting for one to be due.
    queue: VecDeque<Listed>,
    /// Reply timeouts and set-up grace ends, nearest first (an entry is never later than
    /// the moment it stands for; stale ones are skipped).
    deadlines: BinaryHeap<Reverse<(Instant, Deadline, usize, u64)>>,
    /// Messages the open connections may still carry under `--msgs-per-conn` (the sum, over
    /// open connections, of the limit less what each started).
    open_capacity: u64,
    /// Connections whose session is not set up yet.
    unready: usize,
    /// Whether work was left at the last turn (its end changes what every connection may
    /// do: each is looked at once then).
    work_was_left: bool,
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
        to_flush: Vec::new(),
        to_serve: Vec::new(),
        working: Vec::new(),
        queue: VecDeque::new(),
        deadlines: BinaryHeap::new(),
        open_capacity: 0,
        unready: 0,
        work_was_left: true,
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
                let key = event.token().0;
                let Some(id) = self.conns.get(key).map(|conn| conn.id) else {
                    continue;
                };
                self.on_event(key, peer_closed, now);
                self.mark_flush(key, id);
                self.mark_serve(key, id);
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

/// The run's slot account, locked (a thread that panicked while holding it left counts that
/// are still counts).
fn lock(slots: &Mutex<SlotAccount>) -> std::sync::MutexGuard<'_, SlotAccount> {
    slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Conn {
    /// Whether anything waits to be written (commands, staged bytes, a message's rest).
    fn has_output(&self) -> bool {
        !self.out.is_empty() || self.staging_pos < self.staging.len() || self.body.is_some()
    }
}

/// How many more messages `conn` may carry under a limit of `per_conn` a connection (0: no
/// limit, and no count kept).
fn capacity(conn: &Conn, per_conn: u64) -> u64 {
    conn.client
        .as_ref()
        .map_or(per_conn, |client| per_conn.saturating_sub(client.started()))
}
