//! One client connection: its transport, its session, and the bytes in flight either way.
//!
//! What it does: one boundary with a few entry points, modelled on rustls's mio server:
//! [`Conn::ready`] (the poller said something) reads from the transport into the worker's
//! scratch buffer (after the few bytes of an incomplete command line carried over from the
//! last read), hands the bytes to the [`Session`], writes the replies it produced, all of them
//! at once, and tells the worker what it now wants ([`Outcome`]: look again soon, wait, or
//! close; and by when). The other entry points ([`Conn::on_deadline`],
//! [`Conn::on_store_complete`], [`Conn::on_budget`], [`Conn::on_shutdown`]) change the
//! session's situation and then do the same. The worker never reaches into the session, the
//! transport or the sink.
//!
//! The contract with the session: every call into it ([`Session::on_input`], and
//! [`Session::resume`] for each outside event) returns a [`Progress`] that says what it now
//! waits for ([`Wait`]) and which deadline applies ([`Clock`]); the connection turns that into
//! its one `Blocked` state and never asks the session a question after a call. Whether the
//! connection may read now is answered in one place, `Conn::next_step`.
//!
//! The rooms: this module has the entry points, the read loop and the bookkeeping after each
//! call into the session; `auth` the AUTH check; `tls` the handshake's turn, the STARTTLS
//! upgrade and the report of a finished handshake; `output` the reply buffer and its writes;
//! `transcript` the SMTP transcript of each message, recorded only with the capture store.
//!
//! What it does not do: decide protocol matters (the session does), keep the timer heap or
//! the loop (the worker does), or know what the transport is: the TLS state, the handshake's
//! included, lives in [`super::transport`], which reports a finished handshake once.
//!
//! Memory: a connection owns only `carry` (an incomplete command line, bounded by the line
//! limit; or, while a message is being stored, a pause holds the output or the output budget
//! is spent, the rest of one read: at most the scratch buffer) and `out` (replies not yet
//! written: the session stops taking commands at [`OUT_HIGH_WATER`], so at most that plus one
//! reply). Whatever a client sends, that is about 128 KiB at most. `out` is borrowed from the worker while
//! replies are built and written, and kept only while bytes are pending, so an idle
//! connection owns no output buffer. Both keep their capacity between messages, so the steady
//! state allocates nothing. Message content is not kept here: the sink streams it to the
//! storage threads, and while their budget of bytes in flight is spent, a connection in
//! message content reads nothing more (backpressure) until [`Conn::on_budget`].

mod auth;
mod output;
mod tls;
mod transcript;

use super::handshakes::HandshakeTurns;
use super::timer::{ConnDeadline, Deadlines, Due, QUIT_WINDOW};
use super::transport::Transport;
use crate::auth::{Authenticator, Ticket};
use crate::fault::FaultGate;
use crate::proto::reply::{self, Replies, ReplyTally};
use crate::proto::session::{Clock, Progress, Resume, Session, SessionConfig, Wait};
use crate::stats::{HandshakeFailure, Stats};
use crate::store::StoreSink;
use crate::txlog::Logged;
use crate::wake::Mailbox;
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tls::HandshakeTurn;
use transcript::Recorder;

/// The output budget: once this many reply bytes wait to be written, the session takes no
/// further command and nothing more is read: the client is not reading its replies, so TCP
/// flow control pushes back on it instead of the server buffering more. (A reply in progress
/// is finished, so the buffer ends at most one reply past it.)
pub const OUT_HIGH_WATER: usize = 64 * 1024;
/// Input kept for later (behind a pending store, a pause or a full output budget) may take up
/// to one read's worth; a carry buffer that grew past this is shrunk back once it holds no
/// more than a partial line, so an idle connection does not keep it.
const CARRY_KEEP_CAPACITY: usize = 16 * 1024;
/// An output buffer that grew past this (a client pipelining far ahead) is shrunk back once
/// drained, so an idle connection does not keep a large allocation.
const OUT_KEEP_CAPACITY: usize = 16 * 1024;
/// Reads per connection per loop turn before others get their turn.
pub const MAX_READS_PER_TURN: usize = 8;
/// Input read from a closed session before closing, so the close sends FIN, not RST.
const MAX_DRAIN_READS: usize = 4;

/// The sink every connection uses: its store (or discard), with `--log-sessions` records.
pub type ConnSink = Logged<StoreSink>;

/// What the worker lends a connection while it is driven: settings, buffers and counters
/// that belong to the worker.
#[derive(Debug)]
pub struct Driver<'a> {
    /// The protocol settings.
    pub config: &'a SessionConfig,
    /// The time limits.
    pub deadlines: &'a Deadlines,
    /// The worker's poller, to change what the connection is registered for.
    pub registry: &'a Registry,
    /// The worker's read buffer.
    pub scratch: &'a mut [u8],
    /// The worker's spare output buffer (see [`Conn`]'s memory notes).
    pub spare_out: &'a mut Vec<u8>,
    /// The worker's reply counts.
    pub tally: &'a mut ReplyTally,
    /// The worker's counters.
    pub stats: &'a mut Stats,
    /// The worker's TLS handshake turns (see `super::handshakes`).
    pub handshakes: &'a mut HandshakeTurns,
    /// The TLS configuration, when TLS is configured (for STARTTLS).
    pub tls: Option<&'a Arc<rustls::ServerConfig>>,
    /// The AUTH back end, with `--auth`.
    pub auth: Option<&'a Authenticator>,
    /// The worker's mailbox (AUTH verdicts from the verifier thread come back there).
    pub mailbox: &'a Arc<Mailbox>,
}

/// Why the connection reads no input now, or must do something else first: what the session
/// waits for ([`Wait`]), and the connection's own waits. A pause the gate asked for holds the
/// output apart from this (`Conn::held_from`): it can overlap a store wait.
/// [`Conn::next_step`] is the one place that answers "may this connection read now?".
#[derive(Debug)]
enum Blocked {
    /// Nothing: input is read as the poller reports it.
    No,
    /// `carry` holds commands the session has not taken yet (the output budget was spent,
    /// or they came behind an AUTH verdict): they go first, before anything more is read,
    /// once the replies are under the budget.
    Backlog,
    /// The session waits for the stores' verdict on its message.
    Store,
    /// The session waits for its AUTH verdict, being computed on a verifier thread (dropping
    /// the ticket, as closing the connection does, cancels it).
    Verdict(Ticket),
    /// `220` to STARTTLS is in the output: once it is written, the transport becomes TLS.
    StartTls,
    /// The transport became TLS after STARTTLS: reads drive the handshake, and the session
    /// hears when it finished ([`Resume::TlsStarted`]).
    Handshake,
    /// The stores' budget of bytes in flight is spent: message content stays in the socket
    /// until [`Conn::on_budget`].
    Budget,
    /// The session is over: what the client still sends is read and dropped.
    Closed,
}

/// What [`Conn::next_step`] says the read loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Read from the transport.
    Read,
    /// Present the commands kept in `carry` again.
    Backlog,
    /// Stop: replies are past the output budget (more may be waiting).
    Full,
    /// Stop: the poller reported nothing more to read.
    Idle,
    /// Stop: a wait (see [`Blocked`]) or a pause; reading resumes when it is over.
    Wait,
}

/// What the worker should do with the connection next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for the poller or the deadline.
    Wait,
    /// Drive it again next turn: it had more input than one turn allows.
    Revisit,
    /// Close it now.
    Close,
}

/// What a connection tells the worker after each entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// What next.
    pub next: Next,
    /// When the worker must look at it at the latest.
    pub deadline: Instant,
    /// Messages accepted in this call (for `--exit-after-messages`).
    pub accepted: u64,
}

/// The read side of the connection, as far as the poller has told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadSide {
    /// No readiness known: wait for an event.
    Idle,
    /// Readable: read until a short read or `WouldBlock`.
    Ready,
    /// The peer closed its side: read until end of stream, not stopping at a short read.
    ReadyToEnd,
    /// End of stream reached (or the connection failed).
    Ended,
}

/// What one round of reading produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadStatus {
    /// The transport has no more data for now (or the peer's side is closed).
    Drained,
    /// The per-turn read budget ran out, or replies piled up: more may be waiting.
    MoreLater,
    /// The session waits (a pending store or a pause), or the stores' budget is spent;
    /// reading resumes when that is over.
    Paused,
}

/// A client connection.
#[derive(Debug)]
pub struct Conn {
    /// The byte stream.
    transport: Transport,
    /// The client's address (for the per-address connection count).
    client: SocketAddr,
    /// The poller token (the worker's slab key).
    token: Token,
    /// Unique per worker (slab keys are reused).
    id: u64,
    /// The protocol state.
    session: Session,
    /// Where this connection's messages go.
    sink: ConnSink,
    /// Fault rules, when configured.
    gate: Option<Box<FaultGate>>,
    /// An incomplete command line kept from the previous read (or input held behind a
    /// pending store or a pause).
    carry: Vec<u8>,
    /// Replies not yet written.
    out: Vec<u8>,
    /// How much of `out` is already written.
    out_pos: usize,
    /// While a pause holds the output: replies from this offset of `out` wait.
    held_from: Option<usize>,
    /// Why no input is read now (see [`Blocked`]).
    blocked: Blocked,
    /// Which deadline the session's state calls for (from its last [`Progress`]).
    clock: Clock,
    /// What the poller told about the read side.
    read: ReadSide,
    /// The interest registered with the poller.
    registered: Interest,
    /// When the worker must next look at this connection, and why.
    deadline: ConnDeadline,
    /// The poller reported the connection reset (or closed both ways): nothing sent from now
    /// on can arrive. A connection that only waits (for an AUTH verdict, or a pause) closes
    /// at once instead of holding its place until then.
    hung_up: bool,
    /// Where the TLS handshake stands with the worker's turns.
    handshake: HandshakeTurn,
    /// When replies were last handed to the socket: during shutdown a session between
    /// transactions waits for its `QUIT` until [`QUIT_WINDOW`] after that, no longer.
    replied_at: Instant,
    /// The SMTP transcript recorder, only when the capture store is on (see `transcript`).
    transcript: Option<Box<Recorder>>,
}

impl Conn {
    /// Opens a connection over `transport`: registers it, and lets the session greet (or do
    /// what the gate says instead). Call [`Conn::ready`] next to send the greeting.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        mut transport: Transport,
        client: SocketAddr,
        token: Token,
        id: u64,
        sink: ConnSink,
        gate: Option<Box<FaultGate>>,
        cx: &mut Driver<'_>,
        now: Instant,
    ) -> io::Result<Conn> {
        transport.register(cx.registry, token, Interest::READABLE)?;
        let implicit_tls = transport.is_tls();
        let transcript = sink.inner().capture().map(|capture| {
            Box::new(Recorder::new(
                Arc::clone(capture),
                now,
                cx.config.max_line_len,
            ))
        });
        let mut deadline = ConnDeadline::new(now, cx.deadlines);
        if implicit_tls {
            deadline.start_handshake(now, cx.deadlines);
        }
        let mut conn = Conn {
            transport,
            client,
            token,
            id,
            // RFC 8314 §3.3: the session starts inside TLS.
            session: if implicit_tls {
                Session::over_tls()
            } else {
                Session::new()
            },
            sink,
            gate,
            carry: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            held_from: None,
            blocked: Blocked::No,
            clock: Clock::Command,
            // epoll reports data that arrived before registration, so no read is tried now.
            read: ReadSide::Idle,
            registered: Interest::READABLE,
            deadline,
            hung_up: false,
            handshake: HandshakeTurn::default(),
            replied_at: now,
            transcript,
        };
        conn.borrow_out(cx.spare_out);
        let before = conn.out.len();
        let progress = conn.session.on_connect(
            cx.config,
            &mut Replies::new(&mut conn.out, cx.tally),
            &mut conn.sink,
            &mut conn.gate,
        );
        if let (Some(recorder), Some(marks)) = (
            conn.transcript.as_mut(),
            conn.sink.inner_mut().transcript_marks(),
        ) {
            recorder.on_call(&[], &conn.out[before..], marks, now);
        }
        conn.after_input(progress, 0, now, cx);
        Ok(conn)
    }

    /// The connection's unique id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client's address.
    pub fn client(&self) -> std::net::IpAddr {
        self.client.ip()
    }

    /// The poller reported readiness: `readable`, `peer_closed` (read closed or error), and
    /// `hung_up` (reset, or closed both ways: no reply can reach the client any more).
    pub fn on_event(&mut self, readable: bool, peer_closed: bool, hung_up: bool) {
        self.hung_up |= hung_up;
        self.read = match (self.read, peer_closed, readable) {
            (ReadSide::Ended, _, _) => ReadSide::Ended,
            (_, true, _) => ReadSide::ReadyToEnd,
            (ReadSide::ReadyToEnd, false, _) => ReadSide::ReadyToEnd,
            (_, false, true) => ReadSide::Ready,
            (read, false, false) => read,
        };
    }

    /// The entry point: reads and processes what is available (within the turn's budget),
    /// writes the replies, re-arms the poller, and says what next.
    pub fn ready(&mut self, cx: &mut Driver<'_>, now: Instant) -> Outcome {
        let waiting = matches!(self.blocked, Blocked::Verdict(_)) || self.held_from.is_some();
        if self.hung_up && (waiting || self.handshake.queued) {
            // Nobody is left to hear the verdict or the held reply: free the connection's
            // place (and its per-address slot) now, not when the wait ends.
            return self.outcome(Next::Close, 0);
        }
        let readable = matches!(self.read, ReadSide::Ready | ReadSide::ReadyToEnd);
        if self.transport.in_handshake() && !self.handshake.in_progress {
            if matches!(self.blocked, Blocked::Closed) {
                // Closed before its handshake started (a shutdown): nothing can be said to
                // it, and no handshake work is worth doing for it.
                return self.outcome(Next::Close, 0);
            }
            if !self.handshake_may_go(readable, cx) {
                // The client's first flight waits, unread, for the worker to grant a turn.
                return self.outcome(Next::Wait, 0);
            }
        }
        self.borrow_out(cx.spare_out);
        let status = if readable || matches!(self.blocked, Blocked::Backlog) {
            self.read_and_process(cx, now)
        } else {
            ReadStatus::Drained
        };
        if self.handshake.in_progress
            && !self.handshake.charged
            && self.transport.is_full_handshake()
        {
            // A full handshake (a signature made): it counts toward the client's rate; a
            // resumed one does not.
            self.handshake.charged = true;
            cx.handshakes.charge_full(self.client.ip(), now);
        }
        if self.transport.in_handshake() {
            self.notice_handshake(cx, now);
        }
        let accepted = self.count_accepted(cx.stats);
        if self.pending_out() > 0 {
            self.replied_at = now;
        }
        let mut flushed = match self.flush() {
            Ok(flushed) => flushed,
            Err(_) => return self.outcome(Next::Close, accepted),
        };
        // RFC 3207 §4.2: once the `220` is out, every later byte is TLS. Input behind the
        // STARTTLS line was discarded by the session; nothing more was read since.
        let upgraded = flushed && matches!(self.blocked, Blocked::StartTls);
        if upgraded {
            if self.start_tls(cx, now).is_err() {
                return self.outcome(Next::Close, accepted);
            }
            flushed = match self.flush() {
                Ok(flushed) => flushed,
                Err(_) => return self.outcome(Next::Close, accepted),
            };
        }
        self.return_out(cx.spare_out);
        let verdict_pending = matches!(self.blocked, Blocked::Verdict(_));
        if verdict_pending && self.read == ReadSide::Ended && self.carry.is_empty() {
            // The client closed its side (FIN) right behind its AUTH, with nothing after it:
            // no command can follow, so the verdict could only tell a client that is not
            // waiting for one, or one that left (a guesser hangs up normally as often as with
            // a reset). The check is dropped as for a reset (`on_close` counts it) and the
            // connection's per-address slot is free at once.
            return self.outcome(Next::Close, accepted);
        }
        // A client that half-closed right behind its last message still gets that message's
        // reply once the store reports (and the replies to what it pipelined after it).
        let finished = match self.blocked {
            Blocked::Closed => true,
            Blocked::Store | Blocked::Verdict(_) => false,
            Blocked::No
            | Blocked::Backlog
            | Blocked::StartTls
            | Blocked::Handshake
            | Blocked::Budget => self.read == ReadSide::Ended,
        };
        if finished && flushed {
            if self.read != ReadSide::Ended {
                self.drain_input(cx.scratch);
            }
            return self.outcome(Next::Close, accepted);
        }
        if finished {
            // The last replies are still going out; do not wait for them forever.
            self.deadline.linger(now);
        } else if self.clock == Clock::Quit {
            // Shutting down between transactions: a client that just got its reply gets a
            // moment to say QUIT (`221`, not `421`); then `on_deadline` ends the session.
            self.deadline.close_by(self.replied_at + QUIT_WINDOW);
        }
        let wanted = self.wanted_interest();
        if wanted != self.registered {
            if self
                .transport
                .reregister(cx.registry, self.token, wanted)
                .is_err()
            {
                return self.outcome(Next::Close, accepted);
            }
            self.registered = wanted;
        }
        // After the upgrade the client's handshake may already be waiting: look again.
        let more =
            (status == ReadStatus::MoreLater && self.pending_out() < OUT_HIGH_WATER) || upgraded;
        let next = if more && !finished {
            Next::Revisit
        } else {
            Next::Wait
        };
        if next == Next::Wait
            && self.carry.capacity() > CARRY_KEEP_CAPACITY
            && self.carry.len() < cx.config.max_line_len
        {
            self.carry.shrink_to(CARRY_KEEP_CAPACITY);
        }
        self.outcome(next, accepted)
    }

    /// The connection's deadline came due: a pause ends (held replies go, kept input is
    /// processed), the deadline turns out to have moved later, or the client ran out of
    /// time (`421` and close: "data rate too low" while content arrives too slowly with a
    /// minimum rate set, the plain timeout otherwise).
    pub fn on_deadline(&mut self, cx: &mut Driver<'_>, now: Instant) -> Outcome {
        if matches!(self.blocked, Blocked::Budget) && self.deadline.next() <= now {
            // The stores are behind, not the client: it gets time until they catch up.
            self.deadline.on_input(1, 0, false, now, cx.deadlines);
            return self.outcome(Next::Wait, 0);
        }
        match self.deadline.due(now, cx.deadlines) {
            Due::Later(_) => self.outcome(Next::Wait, 0),
            Due::PauseOver => {
                self.held_from = None;
                self.take_kept(cx, now);
                self.ready(cx, now)
            }
            Due::Expired => {
                if self.transport.in_handshake() {
                    // The handshake did not finish in time: close without a reply (there is
                    // no channel to send one on).
                    cx.stats
                        .security
                        .handshake_failed(HandshakeFailure::Timeout);
                    self.transport.abandon_handshake();
                    cx.stats.timeouts += 1;
                    return self.outcome(Next::Close, 0);
                }
                if self.clock == Clock::Quit {
                    // Shutting down, and no QUIT came in time: not the client's fault.
                    self.end_with(reply::SHUTTING_DOWN, cx);
                    return self.outcome(Next::Close, 0);
                }
                if !matches!(self.blocked, Blocked::Closed) && self.read != ReadSide::Ended {
                    let rate_applies = cx.deadlines.min_data_rate > 0;
                    let reply = if rate_applies && self.clock == Clock::Content {
                        reply::TOO_SLOW
                    } else {
                        reply::TIMEOUT
                    };
                    self.end_with(reply, cx);
                    cx.stats.timeouts += 1;
                }
                self.outcome(Next::Close, 0)
            }
        }
    }

    /// The storage thread reported on the message this session waits for (`outcome`:
    /// [`Resume::Stored`] or [`Resume::Refused`]): its reply goes
    /// out, then the input kept behind it is processed (which may stop at the next stored
    /// message), and reading resumes.
    pub fn on_store_complete(
        &mut self,
        outcome: Resume,
        cx: &mut Driver<'_>,
        now: Instant,
    ) -> Outcome {
        // The capture store, if any, gets the message first: visible before its `250`.
        self.sink
            .inner_mut()
            .on_stores_done(matches!(outcome, Resume::Stored(true)));
        self.resume(outcome, cx, now);
        self.take_kept(cx, now);
        self.ready(cx, now)
    }

    /// The stores' budget of bytes in flight has room again after this connection stopped
    /// reading for it (see [`StoreSink::may_read`]): reading resumes.
    pub fn on_budget(&mut self, cx: &mut Driver<'_>, now: Instant) -> Outcome {
        self.sink.inner().on_budget();
        if matches!(self.blocked, Blocked::Budget) {
            self.blocked = Blocked::No;
        }
        self.ready(cx, now)
    }

    /// The session waits for the stores' verdict on its message.
    pub fn is_awaiting_store(&self) -> bool {
        matches!(self.blocked, Blocked::Store)
    }

    /// The server is shutting down (see [`Resume::Shutdown`]). A session between
    /// transactions may still say `QUIT` (and get `221`) within [`QUIT_WINDOW`] of its last
    /// reply; one idle for longer gets `421 4.3.2` at once. A TLS handshake not finished has
    /// no channel for either: it ends now.
    pub fn on_shutdown(&mut self, cx: &mut Driver<'_>, now: Instant) -> Outcome {
        self.resume(Resume::Shutdown, cx, now);
        if self.transport.in_handshake() {
            self.resume(Resume::Expired(reply::SHUTTING_DOWN), cx, now);
        }
        self.ready(cx, now)
    }

    /// Ends the session with `reply` (a `421`) and writes what the socket takes now, best
    /// effort: the worker closes the connection next.
    pub fn end_with(&mut self, reply: &'static [u8], cx: &mut Driver<'_>) {
        self.borrow_out(cx.spare_out);
        let before = self.out.len();
        let progress = self.session.resume(
            cx.config,
            Resume::Expired(reply),
            &mut Replies::new(&mut self.out, cx.tally),
            &mut self.sink,
        );
        if let (Some(recorder), Some(marks)) = (
            self.transcript.as_mut(),
            self.sink.inner_mut().transcript_marks(),
        ) {
            recorder.on_call(&[], &self.out[before..], marks, Instant::now());
        }
        self.clock = progress.clock;
        // Output held by a pause stays unsent, the closing reply with it.
        let _ = self.flush();
        self.return_out(cx.spare_out);
    }

    /// The connection is being dropped: abandons any message in progress, gives back its
    /// place in the worker's handshake turns, and drops a pending AUTH check (counted).
    pub fn on_close(&mut self, stats: &mut Stats, handshakes: &mut HandshakeTurns) {
        if self.handshake.queued {
            handshakes.cancel(self.client.ip(), self.id);
        }
        if self.handshake.in_progress {
            handshakes.end(self.client.ip());
        }
        if let Blocked::Verdict(ticket) = std::mem::replace(&mut self.blocked, Blocked::Closed) {
            // Dropping the ticket takes the check out of the queue (or silences its verdict).
            drop(ticket);
            stats.security.auth_abandoned += 1;
        }
        if self.transport.in_handshake() {
            // Ended mid-handshake: by a TLS error (its reason), or the client went away.
            let why = self.transport.tls_failure();
            (stats.security).handshake_failed(why.unwrap_or(HandshakeFailure::Closed));
        }
        self.session.on_disconnect(&mut self.sink);
    }

    /// Gives the session an event it waits for (or must hear) and applies what it then says.
    fn resume(&mut self, event: Resume, cx: &mut Driver<'_>, now: Instant) {
        self.borrow_out(cx.spare_out);
        if let (Some(recorder), Resume::TlsStarted(info)) = (&mut self.transcript, &event) {
            recorder.on_tls(info, now);
        }
        let before = self.out.len();
        let progress = self.session.resume(
            cx.config,
            event,
            &mut Replies::new(&mut self.out, cx.tally),
            &mut self.sink,
        );
        if let (Some(recorder), Some(marks)) = (
            self.transcript.as_mut(),
            self.sink.inner_mut().transcript_marks(),
        ) {
            recorder.on_call(&[], &self.out[before..], marks, now);
        }
        self.after_input(progress, 0, now, cx);
    }

    /// What to tell the worker.
    fn outcome(&self, next: Next, accepted: u64) -> Outcome {
        Outcome {
            next,
            deadline: self.deadline.next(),
            accepted,
        }
    }

    /// Moves the session's accepted messages into the worker's counters; returns how many.
    fn count_accepted(&mut self, stats: &mut Stats) -> u64 {
        let (messages, bytes) = self.session.take_accepted();
        stats.messages += messages;
        stats.bytes += bytes;
        messages
    }

    /// Reads and processes input until the transport is drained, the turn's read budget is
    /// spent, replies pile up, or the session waits.
    fn read_and_process(&mut self, cx: &mut Driver<'_>, now: Instant) -> ReadStatus {
        for _ in 0..MAX_READS_PER_TURN {
            match self.next_step(cx.scratch) {
                Step::Read => {}
                Step::Backlog => {
                    self.process_carry(cx, now);
                    continue;
                }
                Step::Full => return ReadStatus::MoreLater,
                Step::Idle => return ReadStatus::Drained,
                Step::Wait => return ReadStatus::Paused,
            }
            let carried = self.carry.len();
            cx.scratch[..carried].copy_from_slice(&self.carry);
            let room = cx.scratch.len() - carried;
            let n = match self.transport.try_read(&mut cx.scratch[carried..]) {
                Ok(0) => {
                    self.read = ReadSide::Ended;
                    return ReadStatus::Drained;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.read = ReadSide::Idle;
                    return ReadStatus::Drained;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.read = ReadSide::Ended;
                    return ReadStatus::Drained;
                }
            };
            if self.transport.in_handshake() {
                // Plaintext after a handshake: the session hears of the handshake first.
                self.notice_handshake(cx, now);
            }
            let budget = self.output_budget();
            let input = &cx.scratch[..carried + n];
            let before = self.out.len();
            let progress = self.session.on_input(
                cx.config,
                input,
                &mut Replies::with_limit(&mut self.out, cx.tally, budget),
                &mut self.sink,
                &mut self.gate,
            );
            if let (Some(recorder), Some(marks)) = (
                self.transcript.as_mut(),
                self.sink.inner_mut().transcript_marks(),
            ) {
                recorder.on_call(&input[..progress.consumed], &self.out[before..], marks, now);
            }
            let rest = &input[progress.consumed..];
            self.carry.clear();
            if rest.len() > self.carry.capacity() {
                // More than a partial line is kept only behind a pending store, a pause or a
                // spent output budget, and it is at most one read: grow once to that, not by
                // doubling past it (a trail of freed buffers counts as memory too).
                // A partial line gets room for the longest line at once: sized to each one
                // as it came, the buffer grew again whenever a read happened to split a
                // longer line than before (an allocation now and then in steady state, seen
                // by tests/zero_alloc.rs about once in 40 runs).
                let want = if rest.len() > cx.config.max_line_len {
                    cx.scratch.len()
                } else {
                    cx.config.max_line_len
                };
                self.carry.reserve_exact(want);
            }
            self.carry.extend_from_slice(rest);
            self.after_input(progress, n as u64, now, cx);
            if matches!(self.blocked, Blocked::Backlog) {
                // Commands kept behind one answered at once (an AUTH refused with `454`
                // without a check) go now; returning here would leave them waiting for an
                // event that may never come.
                continue;
            }
            if n < room && self.read == ReadSide::Ready && !self.transport.has_buffered_input() {
                // A short read took everything the socket had. With edge-triggered epoll any
                // later arrival raises a new event, so the extra read that would only return
                // WouldBlock is skipped: one read per pipelined batch.
                self.read = ReadSide::Idle;
                return ReadStatus::Drained;
            }
        }
        ReadStatus::MoreLater
    }

    /// Whether this connection may read now, the one place that says so (see [`Blocked`]):
    /// not while the session waits for something other than input, nor while a pause holds
    /// the output (input behind a message being stored, an AUTH verdict, a pause, stays in
    /// the socket and in `carry` until its reply can go out: replies stay in order, RFC
    /// 2920 §3.1), nor with replies past the output budget, nor, in message content, while
    /// the stores' budget is spent. Commands kept in `carry` go before anything new is read.
    fn next_step(&mut self, scratch: &mut [u8]) -> Step {
        match self.blocked {
            Blocked::Store | Blocked::StartTls => return Step::Wait,
            Blocked::Verdict(_) => {
                self.notice_end_behind_auth(scratch);
                return Step::Wait;
            }
            Blocked::No
            | Blocked::Backlog
            | Blocked::Handshake
            | Blocked::Budget
            | Blocked::Closed => {}
        }
        if self.held_from.is_some() {
            return Step::Wait;
        }
        if self.pending_out() >= OUT_HIGH_WATER {
            return Step::Full;
        }
        if matches!(self.blocked, Blocked::Backlog) {
            // Replies have drained below the budget: the commands kept go first.
            return Step::Backlog;
        }
        if !matches!(self.read, ReadSide::Ready | ReadSide::ReadyToEnd) {
            return Step::Idle;
        }
        if self.clock == Clock::Content {
            if !self.sink.inner().may_read() {
                // The stores' budget of bytes in flight is spent: the content stays in the
                // socket (TCP flow control holds the sender back) until the storage threads
                // free some and wake this connection (`on_budget`). Nobody is refused for it,
                // nor timed out meanwhile (`on_deadline`).
                self.blocked = Blocked::Budget;
                return Step::Wait;
            }
            if matches!(self.blocked, Blocked::Budget) {
                self.blocked = Blocked::No;
            }
        }
        Step::Read
    }

    /// Processes the input kept while the session waited (a pending store or a pause);
    /// reading resumes afterwards.
    fn take_kept(&mut self, cx: &mut Driver<'_>, now: Instant) {
        self.borrow_out(cx.spare_out);
        if self.held_from.is_some() {
            // A pause is still running (a store reported during a fault delay): the kept
            // input waits for it, as the replies do; the pause's end resumes it.
            return;
        }
        self.process_carry(cx, now);
        if self.read == ReadSide::Idle {
            self.read = ReadSide::Ready;
        }
    }

    /// Presents the kept input to the session again, within the output budget.
    fn process_carry(&mut self, cx: &mut Driver<'_>, now: Instant) {
        let kept = std::mem::take(&mut self.carry);
        let budget = self.output_budget();
        let before = self.out.len();
        let progress = self.session.on_input(
            cx.config,
            &kept,
            &mut Replies::with_limit(&mut self.out, cx.tally, budget),
            &mut self.sink,
            &mut self.gate,
        );
        if let (Some(recorder), Some(marks)) = (
            self.transcript.as_mut(),
            self.sink.inner_mut().transcript_marks(),
        ) {
            recorder.on_call(&kept[..progress.consumed], &self.out[before..], marks, now);
        }
        self.carry = kept;
        self.carry.drain(..progress.consumed);
        self.after_input(progress, 0, now, cx);
    }

    /// Bookkeeping after every call into the session: what it now waits for becomes
    /// [`Blocked`] (credentials are checked at once), the deadline moves with progress, and a
    /// pause the gate asked for starts (its length is the gate's to say).
    fn after_input(&mut self, progress: Progress, bytes: u64, now: Instant, cx: &mut Driver<'_>) {
        self.clock = progress.clock;
        if progress.discarded > 0 {
            cx.stats.security.starttls_discarded += 1;
        }
        // Only a change is written: the common case (no wait, nothing blocked) is a compare.
        let mut check_auth = false;
        match progress.wait {
            None => {
                if !matches!(self.blocked, Blocked::No | Blocked::Budget) {
                    self.blocked = Blocked::No;
                }
            }
            Some(Wait::Output) => self.blocked = Blocked::Backlog,
            Some(Wait::Store) => self.blocked = Blocked::Store,
            Some(Wait::Credentials) => {
                if !matches!(self.blocked, Blocked::Verdict(_)) {
                    self.blocked = Blocked::No;
                    check_auth = true;
                }
            }
            Some(Wait::StartTls) => {
                if !matches!(self.blocked, Blocked::Handshake) {
                    self.blocked = Blocked::StartTls;
                }
            }
            Some(Wait::Closed) => self.blocked = Blocked::Closed,
        }
        self.deadline.on_input(
            progress.completed,
            bytes,
            self.clock == Clock::Content,
            now,
            cx.deadlines,
        );
        if let Some(offset) = progress.pause_at {
            let length = self
                .gate
                .as_mut()
                .and_then(|gate| gate.take_pause())
                .unwrap_or_default();
            self.held_from.get_or_insert(offset);
            self.deadline.pause(now, length);
        }
        if check_auth {
            self.check_auth(cx, now);
        }
    }
}
