//! One client connection: its transport, its session, and the bytes in flight either way.
//!
//! What it does: one boundary with a few entry points, modelled on rustls's mio server:
//! [`Conn::ready`] (the poller said something) reads from the transport into the worker's
//! scratch buffer (after the few bytes of an incomplete command line carried over from the
//! last read), hands the bytes to the [`Session`], writes the replies it produced, all of them
//! at once, and tells the worker what it now wants ([`Outcome`]: look again soon, wait, or
//! close; and by when). The other entry points ([`Conn::on_deadline`],
//! [`Conn::on_store_complete`], [`Conn::on_budget`], [`Conn::on_shutdown`]) change the session's situation and
//! then do the same. The worker never reaches into the session, the transport or the sink.
//!
//! What it does not do: decide protocol matters (the session does), keep the timer heap or
//! the loop (the worker does), or know what the transport is (TLS would live in
//! [`super::transport`]).
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

use super::handshakes::HandshakeTurns;
use super::timer::{ConnDeadline, Deadlines, Due, QUIT_WINDOW};
use super::transport::Transport;
use crate::auth::{Authenticator, Check, Ticket, Verdict};
use crate::fault::FaultGate;
use crate::proto::reply::{self, Replies, ReplyTally};
use crate::proto::session::{Progress, Session, SessionConfig};
use crate::stats::{HandshakeFailure, Stats};
use crate::store::StoreSink;
use crate::txlog::Logged;
use crate::wake::{Mailbox, Notify};
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

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

/// Where the connection stands with TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsPhase {
    /// Plaintext (STARTTLS may still come).
    Plain,
    /// A handshake is under way (implicit TLS from accept, or after `220` to STARTTLS).
    Handshaking,
    /// The handshake is complete.
    Established,
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
    /// `carry` holds commands the session declined because the output budget was spent: they
    /// are processed, before anything more is read, once replies have drained.
    input_stalled: bool,
    /// Reading stopped because the stores' budget was spent, until [`Conn::on_budget`].
    budget_wait: bool,
    /// What the poller told about the read side.
    read: ReadSide,
    /// The interest registered with the poller.
    registered: Interest,
    /// When the worker must next look at this connection, and why.
    deadline: ConnDeadline,
    /// TLS, if any.
    tls: TlsPhase,
    /// An AUTH verdict is being computed on a verifier thread (dropping the ticket, as closing
    /// the connection does, cancels it).
    auth_pending: Option<Ticket>,
    /// The poller reported the connection reset (or closed both ways): nothing sent from now
    /// on can arrive. A connection that only waits (for an AUTH verdict, or a pause) closes
    /// at once instead of holding its place until then.
    hung_up: bool,
    /// Where the TLS handshake stands with the worker's turns.
    handshake: HandshakeTurn,
    /// When replies were last handed to the socket: during shutdown a session between
    /// transactions waits for its `QUIT` until [`QUIT_WINDOW`] after that, no longer.
    replied_at: Instant,
}

/// A connection's TLS handshake and the worker's turns (see `super::handshakes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HandshakeTurn {
    /// Waiting in the worker's queue for its turn to start.
    queued: bool,
    /// Started and counted as in progress (until it completes or the connection closes).
    in_progress: bool,
    /// Counted as a full handshake toward the client's rate.
    charged: bool,
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
            input_stalled: false,
            budget_wait: false,
            // epoll reports data that arrived before registration, so no read is tried now.
            read: ReadSide::Idle,
            registered: Interest::READABLE,
            deadline,
            tls: if implicit_tls {
                TlsPhase::Handshaking
            } else {
                TlsPhase::Plain
            },
            auth_pending: None,
            hung_up: false,
            handshake: HandshakeTurn::default(),
            replied_at: now,
        };
        conn.borrow_out(cx.spare_out);
        let progress = conn.session.on_connect(
            cx.config,
            &mut Replies::new(&mut conn.out, cx.tally),
            &mut conn.sink,
            &mut conn.gate,
        );
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
        let waiting = self.auth_pending.is_some() || self.held_from.is_some();
        if self.hung_up && (waiting || self.handshake.queued) {
            // Nobody is left to hear the verdict or the held reply: free the connection's
            // place (and its per-address slot) now, not when the wait ends.
            return self.outcome(Next::Close, 0);
        }
        let readable = matches!(self.read, ReadSide::Ready | ReadSide::ReadyToEnd);
        if self.tls == TlsPhase::Handshaking && !self.handshake.in_progress {
            if self.session.is_closed() {
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
        let status = if readable || self.input_stalled {
            self.read_and_process(cx, now)
        } else {
            ReadStatus::Drained
        };
        let accepted = self.count_accepted(cx.stats);
        if self.handshake.in_progress
            && !self.handshake.charged
            && self.transport.is_full_handshake()
        {
            // A full handshake (a signature made): it counts toward the client's rate; a
            // resumed one does not.
            self.handshake.charged = true;
            cx.handshakes.charge_full(self.client.ip(), now);
        }
        if self.tls == TlsPhase::Handshaking && !self.transport.is_handshaking() {
            self.on_handshake_complete(cx, now);
        }
        if self.pending_out() > 0 {
            self.replied_at = now;
        }
        let mut flushed = match self.flush() {
            Ok(flushed) => flushed,
            Err(_) => return self.outcome(Next::Close, accepted),
        };
        // RFC 3207 §4.2: once the `220` is out, every later byte is TLS. Input behind the
        // STARTTLS line was discarded by the session; nothing more was read since.
        let upgraded = flushed && self.session.is_starting_tls();
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
        if self.auth_pending.is_some() && self.read == ReadSide::Ended && self.carry.is_empty() {
            // The client closed its side (FIN) right behind its AUTH, with nothing after it:
            // no command can follow, so the verdict could only tell a client that is not
            // waiting for one, or one that left (a guesser hangs up normally as often as with
            // a reset). The check is dropped as for a reset (`on_close` counts it) and the
            // connection's per-address slot is free at once.
            return self.outcome(Next::Close, accepted);
        }
        // A client that half-closed right behind its last message still gets that message's
        // reply once the store reports (and the replies to what it pipelined after it).
        let finished = self.session.is_closed()
            || (self.read == ReadSide::Ended
                && !self.session.is_awaiting_store()
                && self.auth_pending.is_none());
        if finished && flushed {
            if self.read != ReadSide::Ended {
                self.drain_input(cx.scratch);
            }
            return self.outcome(Next::Close, accepted);
        }
        if finished {
            // The last replies are still going out; do not wait for them forever.
            self.deadline.linger(now);
        } else if self.session.awaits_quit() {
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
        if self.budget_wait && self.deadline.next() <= now {
            // The stores are behind, not the client: it gets time until they catch up.
            self.deadline.on_input(1, 0, false, now, cx.deadlines);
            return self.outcome(Next::Wait, 0);
        }
        match self.deadline.due(now, cx.deadlines) {
            Due::Later(_) => self.outcome(Next::Wait, 0),
            Due::PauseOver => {
                self.held_from = None;
                self.resume(cx, now);
                self.ready(cx, now)
            }
            Due::Expired => {
                if self.tls == TlsPhase::Handshaking {
                    // The handshake did not finish in time: close without a reply (there is
                    // no channel to send one on).
                    cx.stats
                        .security
                        .handshake_failed(HandshakeFailure::Timeout);
                    self.tls = TlsPhase::Plain;
                    cx.stats.timeouts += 1;
                    return self.outcome(Next::Close, 0);
                }
                if self.session.awaits_quit() {
                    // Shutting down, and no QUIT came in time: not the client's fault.
                    self.end_with(reply::SHUTTING_DOWN, cx);
                    return self.outcome(Next::Close, 0);
                }
                if !self.session.is_closed() && self.read != ReadSide::Ended {
                    let rate_applies = cx.deadlines.min_data_rate > 0;
                    let reply = if rate_applies && self.session.in_message_content() {
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

    /// The storage thread reported on the message this session waits for: its reply goes
    /// out, then the input kept behind it is processed (which may stop at the next stored
    /// message), and reading resumes.
    pub fn on_store_complete(
        &mut self,
        stored: bool,
        cx: &mut Driver<'_>,
        now: Instant,
    ) -> Outcome {
        self.borrow_out(cx.spare_out);
        self.session.on_store_complete(
            stored,
            &mut Replies::new(&mut self.out, cx.tally),
            &mut self.sink,
        );
        self.resume(cx, now);
        self.ready(cx, now)
    }

    /// The stores' budget of bytes in flight has room again after this connection stopped
    /// reading for it (see [`StoreSink::may_read`]): reading resumes.
    pub fn on_budget(&mut self, cx: &mut Driver<'_>, now: Instant) -> Outcome {
        self.sink.inner().on_budget();
        self.budget_wait = false;
        self.ready(cx, now)
    }

    /// The session waits for the stores' verdict on its message.
    pub fn is_awaiting_store(&self) -> bool {
        self.session.is_awaiting_store()
    }

    /// The server is shutting down (see [`Session::on_shutdown`]). A session between
    /// transactions may still say `QUIT` (and get `221`) within [`QUIT_WINDOW`] of its last
    /// reply; one idle for longer gets `421 4.3.2` at once. A TLS handshake not finished has
    /// no channel for either: it ends now.
    pub fn on_shutdown(&mut self, cx: &mut Driver<'_>, now: Instant) -> Outcome {
        self.session.on_shutdown();
        if self.tls == TlsPhase::Handshaking {
            self.borrow_out(cx.spare_out);
            self.session.on_timeout(
                reply::SHUTTING_DOWN,
                &mut Replies::new(&mut self.out, cx.tally),
                &mut self.sink,
            );
        }
        self.ready(cx, now)
    }

    /// Ends the session with `reply` (a `421`) and writes what the socket takes now, best
    /// effort: the worker closes the connection next.
    pub fn end_with(&mut self, reply: &'static [u8], cx: &mut Driver<'_>) {
        self.borrow_out(cx.spare_out);
        self.session.on_timeout(
            reply,
            &mut Replies::new(&mut self.out, cx.tally),
            &mut self.sink,
        );
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
        if self.auth_pending.take().is_some() {
            // Dropping the ticket takes the check out of the queue (or silences its verdict).
            stats.security.auth_abandoned += 1;
        }
        if self.tls == TlsPhase::Handshaking {
            // Ended mid-handshake: by a TLS error (its reason), or the client went away.
            let why = self.transport.tls_failure();
            (stats.security).handshake_failed(why.unwrap_or(HandshakeFailure::Closed));
        }
        self.session.on_disconnect(&mut self.sink);
    }

    /// The verifier thread decided the AUTH attempt this session waits for: the reply goes
    /// out, then the input kept behind it is processed, and reading resumes.
    pub fn on_auth_complete(
        &mut self,
        verdict: Verdict,
        cx: &mut Driver<'_>,
        now: Instant,
    ) -> Outcome {
        if self.auth_pending.take().is_none() {
            return self.outcome(Next::Wait, 0);
        }
        self.borrow_out(cx.spare_out);
        self.finish_auth(verdict, cx);
        self.resume(cx, now);
        self.ready(cx, now)
    }

    /// Checks the credentials the session collected: at once (`--auth any`, a `{PLAIN}`
    /// entry, a client past its limits), or on a verifier thread (hashes;
    /// [`Conn::on_auth_complete`] follows).
    fn check_auth(&mut self, cx: &mut Driver<'_>) {
        let Some((user, password)) = self.session.pending_credentials() else {
            return;
        };
        let notify = || Notify {
            mailbox: Arc::clone(cx.mailbox),
            key: self.token.0,
            id: self.id,
        };
        let check = match cx.auth {
            Some(auth) => auth.check(self.client.ip(), user, password, notify),
            None => Check::Now(Verdict::Rejected),
        };
        match check {
            Check::Now(verdict) => self.finish_auth(verdict, cx),
            Check::Pending(ticket) => self.auth_pending = Some(ticket),
        }
    }

    /// Gives the session its AUTH verdict: `235`, `535`, or a `454` (busy, or too many
    /// failures from this client). Every answer goes out as soon as it is known, so the time
    /// it takes says nothing about the password (`crate::auth` bounds failures per client
    /// instead of slowing them down).
    fn finish_auth(&mut self, verdict: Verdict, cx: &mut Driver<'_>) {
        let mut replies = Replies::new(&mut self.out, cx.tally);
        let security = &mut cx.stats.security;
        match verdict {
            Verdict::Accepted | Verdict::Rejected => {
                let accepted = self.session.on_auth_result(
                    cx.config,
                    verdict == Verdict::Accepted,
                    &mut replies,
                    &mut self.sink,
                );
                if accepted {
                    security.auth_successes += 1;
                } else {
                    security.auth_failures += 1;
                }
            }
            Verdict::Busy => {
                security.auth_busy += 1;
                let reply = reply::AUTH_TEMPORARY_FAILURE;
                (self.session).on_auth_unavailable(cx.config, reply, &mut replies, &mut self.sink);
            }
            Verdict::Limited => {
                security.auth_limited += 1;
                let reply = reply::AUTH_TOO_MANY_FAILURES;
                (self.session).on_auth_unavailable(cx.config, reply, &mut replies, &mut self.sink);
            }
        }
        // The input kept behind the AUTH exchange goes next, before anything more is read.
        self.input_stalled = !self.carry.is_empty();
    }

    /// STARTTLS: the `220` is written; the transport becomes TLS and the session goes back
    /// to the state after the greeting. The handshake must finish within its own deadline.
    fn start_tls(&mut self, cx: &mut Driver<'_>, now: Instant) -> io::Result<()> {
        let config = cx
            .tls
            .ok_or_else(|| io::Error::other("STARTTLS without TLS"))?;
        self.transport.start_tls(config)?;
        self.session
            .on_tls_started(&mut Replies::new(&mut self.out, cx.tally), &mut self.sink);
        self.carry.clear();
        self.input_stalled = false;
        self.tls = TlsPhase::Handshaking;
        self.deadline.start_handshake(now, cx.deadlines);
        cx.stats.security.starttls += 1;
        // Whatever is in the socket now is the client's handshake.
        self.read = ReadSide::Ready;
        Ok(())
    }

    /// The TLS handshake finished: the session learns what was negotiated (for records and
    /// trace headers), and the client gets the usual idle time again.
    fn on_handshake_complete(&mut self, cx: &mut Driver<'_>, now: Instant) {
        self.tls = TlsPhase::Established;
        if std::mem::take(&mut self.handshake.in_progress) {
            cx.handshakes.end(self.client.ip());
        }
        if let Some(info) = self.transport.tls_info() {
            if let Some(version) = self.transport.tls_version() {
                cx.stats.security.handshake_done(version, info.resumed);
            }
            self.session.on_tls_established(info);
        }
        self.deadline.on_input(1, 0, false, now, cx.deadlines);
    }

    /// Whether a connection in its handshake may read now: once started, always; before, only
    /// when the worker granted it a turn (then it starts: counted as in progress). A readable
    /// connection without a turn joins the worker's queue (once).
    fn handshake_may_go(&mut self, readable: bool, cx: &mut Driver<'_>) -> bool {
        if self.handshake.in_progress {
            return true;
        }
        if cx.handshakes.is_granted() {
            self.handshake.queued = false;
            self.handshake.in_progress = true;
            cx.handshakes.begin(self.client.ip());
            return true;
        }
        if readable && !self.handshake.queued {
            self.handshake.queued = true;
            cx.handshakes.wait(self.client.ip(), self.token.0, self.id);
        }
        false
    }

    /// The worker refuses this connection's handshake (its client is past the full-handshake
    /// rate): it is closed next without a byte, counted as refused rather than as a failed
    /// handshake.
    pub fn refuse_handshake(&mut self) {
        self.handshake.queued = false;
        self.tls = TlsPhase::Plain;
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
            if self.session.is_awaiting_store()
                || self.held_from.is_some()
                || self.auth_pending.is_some()
                || self.session.is_starting_tls()
            {
                // Input behind a message being stored (or a pause) stays in the socket and in
                // `carry` until its reply can go out: replies stay in order (RFC 2920 §3.1).
                if self.auth_pending.is_some() {
                    self.notice_end_behind_auth(cx.scratch);
                }
                return ReadStatus::Paused;
            }
            if self.pending_out() >= OUT_HIGH_WATER {
                return ReadStatus::MoreLater;
            }
            if self.input_stalled {
                // Replies have drained below the budget: the commands kept go first.
                self.process_carry(cx, now);
                continue;
            }
            if !matches!(self.read, ReadSide::Ready | ReadSide::ReadyToEnd) {
                return ReadStatus::Drained;
            }
            if self.session.in_message_content() && !self.sink.inner().may_read() {
                // The stores' budget of bytes in flight is spent: the content stays in the
                // socket (TCP flow control holds the sender back) until the storage threads
                // free some and wake this connection (`on_budget`). Nobody is refused for it,
                // nor timed out meanwhile (`on_deadline`).
                self.budget_wait = true;
                return ReadStatus::Paused;
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
            let budget = self.output_budget();
            let input = &cx.scratch[..carried + n];
            let progress = self.session.on_input(
                cx.config,
                input,
                &mut Replies::with_limit(&mut self.out, cx.tally, budget),
                &mut self.sink,
                &mut self.gate,
            );
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
            if self.input_stalled {
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

    /// While an AUTH check is pending and the client has closed its side (FIN): whether
    /// anything follows the AUTH. With nothing kept in `carry`, one read tells: end of
    /// stream (the read side is then `Ended`, and [`Conn::ready`] drops the check), or input
    /// that is kept behind the AUTH, as any pipelined input is (at most one read), and
    /// answered after the verdict.
    fn notice_end_behind_auth(&mut self, scratch: &mut [u8]) {
        if self.read != ReadSide::ReadyToEnd || !self.carry.is_empty() {
            return;
        }
        loop {
            match self.transport.try_read(scratch) {
                Ok(0) => self.read = ReadSide::Ended,
                Ok(n) => self.carry.extend_from_slice(&scratch[..n]),
                // A TLS record not yet whole: its end raises another event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => self.read = ReadSide::Ended,
            }
            return;
        }
    }

    /// Processes the input kept while the session waited (a pending store or a pause);
    /// reading resumes afterwards.
    fn resume(&mut self, cx: &mut Driver<'_>, now: Instant) {
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

    /// The end of the output budget, as an offset in `out`. Replies already written are
    /// dropped from the front first (only after a short write), so the buffer's capacity
    /// stays near the budget.
    fn output_budget(&mut self) -> usize {
        if self.out_pos > 0 && self.held_from.is_none() {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        self.out_pos + OUT_HIGH_WATER
    }

    /// Presents the kept input to the session again, within the output budget.
    fn process_carry(&mut self, cx: &mut Driver<'_>, now: Instant) {
        let kept = std::mem::take(&mut self.carry);
        let budget = self.output_budget();
        let progress = self.session.on_input(
            cx.config,
            &kept,
            &mut Replies::with_limit(&mut self.out, cx.tally, budget),
            &mut self.sink,
            &mut self.gate,
        );
        self.carry = kept;
        self.carry.drain(..progress.consumed);
        self.after_input(progress, 0, now, cx);
    }

    /// Bookkeeping after the session processed input: the deadline moves with progress, and
    /// a pause the gate asked for starts (its length is the gate's to say).
    fn after_input(&mut self, progress: Progress, bytes: u64, now: Instant, cx: &mut Driver<'_>) {
        self.input_stalled = progress.output_full;
        if self.tls == TlsPhase::Handshaking && !self.transport.is_handshaking() {
            self.on_handshake_complete(cx, now);
        }
        let discarded = self.session.take_discarded_after_starttls();
        if discarded > 0 {
            cx.stats.security.starttls_discarded += 1;
        }
        if self.session.pending_credentials().is_some() && self.auth_pending.is_none() {
            self.check_auth(cx);
        }
        self.deadline.on_input(
            progress.completed,
            bytes,
            self.session.in_message_content(),
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
    }

    /// Lends the worker's output buffer (`spare`) to this connection while it has nothing
    /// pending, so replies are built in one warm buffer and an idle connection owns none.
    fn borrow_out(&mut self, spare: &mut Vec<u8>) {
        if self.out.is_empty() && self.out.capacity() == 0 {
            std::mem::swap(&mut self.out, spare);
        }
    }

    /// After a flush: once everything is written, the buffer goes back to the worker (or, if
    /// the worker has one already, is freed). Bytes still pending stay with the connection.
    fn return_out(&mut self, spare: &mut Vec<u8>) {
        if !self.out.is_empty() {
            return;
        }
        if spare.capacity() == 0 {
            std::mem::swap(&mut self.out, spare);
        } else if self.out.capacity() > 0 {
            self.out = Vec::new();
        }
    }

    /// Reply bytes waiting to be written.
    fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// The end of what may be written now: everything, or up to a pause.
    fn write_limit(&self) -> usize {
        self.held_from
            .map_or(self.out.len(), |from| from.min(self.out.len()))
    }

    /// What to ask the poller for: always readable (to notice data and hang-ups), writable
    /// only while a write came back short (or the transport has bytes of its own to send).
    fn wanted_interest(&self) -> Interest {
        if self.write_limit() > self.out_pos || self.transport.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Writes pending replies until done, a pause, or the transport is full. `Ok(true)` when
    /// all is written.
    fn flush(&mut self) -> io::Result<bool> {
        let limit = self.write_limit();
        while self.out_pos < limit {
            match self.transport.try_write(&self.out[self.out_pos..limit]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !self.transport.flush_buffered()? || limit < self.out.len() {
            return Ok(false);
        }
        // Everything before the pause point (if any) is written. A pause that began at the end
        // of the buffer still holds what comes next: its point moves to the new start.
        if let Some(from) = &mut self.held_from {
            *from = from.saturating_sub(self.out.len());
        }
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > OUT_KEEP_CAPACITY {
            self.out.shrink_to(OUT_KEEP_CAPACITY);
        }
        Ok(true)
    }

    /// Reads and drops what the client still sent, so that closing does not reset the
    /// connection (and destroy the final reply in flight).
    fn drain_input(&mut self, scratch: &mut [u8]) {
        for _ in 0..MAX_DRAIN_READS {
            match self.transport.try_read(scratch) {
                Ok(n) if n == scratch.len() => {}
                _ => return,
            }
        }
    }
}
