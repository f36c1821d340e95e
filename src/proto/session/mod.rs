//! The SMTP session state machine: bytes in, replies and sink calls out. No I/O, no clock.
//!
//! What it does: frame the input (command lines, message data, BDAT chunks), apply the command
//! sequence rules of RFC 5321 §4.1.4 and §3.3 and of the extensions we advertise, write every
//! reply into the caller's [`Replies`], stream message content into a [`MessageSink`], and ask
//! a [`Gate`] whether a command may proceed, once the protocol's own checks (syntax, then
//! sequence, then limits) have passed it: a fault never replaces the reply a sender's bug
//! deserves. [`Session::on_input`] processes
//! *every* complete command in the input, in order (RFC 2920 §3.1: a pipelining server must
//! not lose input), so the caller can flush all the replies of one read with one write
//! (RFC 2920 §3.2). It stops early only where the output must wait: a message whose sink
//! stores it elsewhere ([`Verdict::Pending`](super::sink::Verdict::Pending)), a pause the gate asked for
//! ([`Progress::pause_at`]), or replies piling up past the caller's budget
//! ([`Wait::Output`]).
//!
//! The contract with the caller: every call returns a [`Progress`] that says what the
//! session now waits for ([`Wait`]: the output, a store, an AUTH verdict, a TLS handshake,
//! nothing more) and which of the caller's deadlines applies ([`Clock`]); the events that end
//! a wait, and the server's own (shutdown, an expired deadline), come back through one entry
//! point, [`Session::resume`] with a [`Resume`]. The caller never asks what state the
//! session is in.
//!
//! What it does not do: read or write sockets, keep time (the caller gives
//! [`Resume::Expired`] when a deadline passes, and times a pause), or own message storage.
//!
//! The state is split in two on purpose. `Mode` says how the next bytes are framed (command
//! line, overlong line being skipped, DATA content, BDAT octets, waiting for a store, nothing
//! more); `Stage` says where the mail transaction stands. They are independent: a line
//! skipped for being too long in the middle of a transaction leaves the transaction as it was
//! (RFC 5321 §4.1.4: a failed command changes no state). Each is one enum whose variants own
//! their data; transitions are in `match`es with no catch-all arm. Whether the sink has a
//! message open is read from the two, never kept beside them: `Mode::Data` (DATA content,
//! until its end is answered) or `Stage::Chunking` (a BDAT message between its first chunk
//! and `LAST`, RFC 3030 §2, while commands are read between chunks).
//!
//! The rooms, by sub-protocol: this module frames the input, dispatches commands, keeps the
//! contract with the caller and the error and junk caps; `mail` has MAIL and RCPT; `message`
//! DATA content and the end of every message (the final reply, a store's wait); `bdat` the
//! BDAT chunks (RFC 3030); `auth` the AUTH exchange (RFC 4954); `starttls` STARTTLS (RFC
//! 3207); `gate` what only the gate decides. The envelope's storage is [`super::envelope`].
//!
//! Memory: the input is borrowed, never copied; the envelope is kept in a few buffers that
//! are cleared, not freed, between messages, so after warm-up a session allocates nothing.

mod auth;
mod bdat;
mod gate;
mod mail;
mod message;
#[cfg(test)]
mod security_tests;
mod starttls;
#[cfg(test)]
mod tests;

use super::command::{parse_command, Command, CommandError};
use super::envelope::EnvelopeBuf;
use super::gate::{Checkpoint, Decision, Gate, GateContext};
use super::line::{find_line_end, next_line, LineError, Status};
use super::reply::{self, Banner, Origin, Replies};
use super::sink::MessageSink;
pub use auth::AuthVerdict;
use bdat::ChunkTransfer;
use gate::Gated;
use message::DataTransfer;

/// What to do with a bare CR or bare LF in message content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLfPolicy {
    /// Read to the real end of data, then refuse the message with `550 5.5.2`.
    Reject,
    /// Keep the bytes untouched (they still never end a line or the data).
    Keep,
}

/// The protocol limits and fixed replies a session works with. Shared by all sessions of a
/// server; passed in on every call so a session holds no pointer to it.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Greeting and HELO/EHLO replies.
    pub banner: Banner,
    /// Longest command line accepted, `CR LF` included (RFC 5321 §4.5.3.1.4 requires 512;
    /// RFC 1870 and 6531 add 26 and 10).
    pub max_line_len: usize,
    /// Largest message accepted, in content octets after dot-unstuffing (RFC 1870).
    pub max_message_size: u64,
    /// Most recipients per transaction (RFC 5321 §4.5.3.1.8 requires at least 100).
    pub max_recipients: usize,
    /// Failed commands tolerated before the session is closed with `421 4.7.0`.
    pub max_errors: u32,
    /// Junk commands (HELO, EHLO, RSET, NOOP, VRFY, HELP, an empty BDAT chunk, a message the
    /// session refused) tolerated between accepted messages before the session is closed with
    /// `421 4.7.0`: a client that only keeps its connection busy cannot hold a slot for ever.
    pub max_junk_commands: u32,
    /// What to do with bare CR / bare LF in message content.
    pub bare_lf: BareLfPolicy,
    /// STARTTLS, AUTH and the policies that go with them.
    pub security: SecurityPolicy,
    /// DSN (RFC 3461) is offered: `RET`/`ENVID` on `MAIL` and `NOTIFY`/`ORCPT` on `RCPT` are
    /// accepted (else refused as unknown, `555 5.5.4`). True only when the server relays
    /// and sends notifications; the banner must list `DSN` then (`reply::Advertised::dsn`).
    pub dsn: bool,
}

/// What the server offers and demands about TLS and AUTH: the one source of what is
/// offered. The EHLO replies in [`SessionConfig::banner`] are built from it
/// ([`SecurityPolicy::advertised`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecurityPolicy {
    /// STARTTLS is offered on plaintext connections (RFC 3207): TLS is configured.
    pub starttls: bool,
    /// `MAIL` and `AUTH` on plaintext get `530 5.7.0` (`--require-tls`).
    pub require_tls: bool,
    /// AUTH PLAIN and LOGIN are offered (RFC 4954): under TLS, and on plaintext too with
    /// `auth_plaintext`.
    pub auth: bool,
    /// AUTH is offered on plaintext connections too (`--auth-plaintext`); without it, `AUTH`
    /// there gets `538 5.7.11`.
    pub auth_plaintext: bool,
    /// `MAIL` without a successful AUTH gets `530 5.7.0` (`--auth-required`).
    pub auth_required: bool,
}

impl SecurityPolicy {
    /// What EHLO lists, on plaintext and inside TLS: STARTTLS when TLS is configured (never
    /// inside TLS, RFC 3207 §4.2, which [`reply::Banner`] knows); AUTH inside TLS, and on
    /// plaintext only with `auth_plaintext` and when TLS is not required first (AUTH there
    /// gets `530`, RFC 3207 §4). Build the banner with this: `Banner::with(name, size,
    /// policy.advertised())`.
    pub fn advertised(&self) -> reply::Advertised {
        reply::Advertised {
            starttls: self.starttls,
            auth_on_plaintext: self.auth && self.auth_plaintext && !self.require_tls,
            auth_under_tls: self.auth,
            // Not a security matter: the caller sets it from `SessionConfig::dsn`.
            dsn: false,
        }
    }
}

/// What one call into the session did, and what the session now waits for: the caller reads
/// its next step from here, never by asking the session questions (as rustls's
/// `process_new_packets` returns its `IoState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Input bytes consumed. The rest (an incomplete command line, shorter than the line
    /// limit; or input behind a pause or a wait) must be presented again, followed by more
    /// input.
    pub consumed: usize,
    /// Commands and messages completed: nonzero means the client made progress (the caller
    /// moves its idle deadline).
    pub completed: u32,
    /// A gate asked for a pause: output from this offset of the caller's buffer on must wait
    /// (the gate's owner knows how long), and the caller presents no input until it is over.
    /// Apart from [`Progress::wait`]: a pause can overlap any wait.
    pub pause_at: Option<usize>,
    /// What the session waits for before it takes more input; `None`: input, as it comes.
    pub wait: Option<Wait>,
    /// Which of the caller's deadlines applies now.
    pub clock: Clock,
    /// Input octets that arrived behind a `STARTTLS` line and were thrown away in this call
    /// (the caller counts them as a protocol violation; RFC 3207 §4.2, CVE-2011-0411).
    pub discarded: usize,
}

/// What the session waits for before it takes more input. Each names the one event that
/// ends it: a new wait (a PROXY header, a relay hand-off) is a new variant here and a new
/// [`Resume`] event, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The output reached the caller's budget ([`Replies::with_limit`]) with input left: the
    /// caller presents the rest again once it has written some replies out.
    Output,
    /// The sink is storing a message elsewhere ([`Verdict::Pending`](super::sink::Verdict::Pending)): its reply, and
    /// everything behind it, waits for [`Resume::Stored`].
    Store,
    /// AUTH credentials are complete ([`Session::credentials`]): the caller checks them and
    /// answers with [`Resume::Auth`].
    Credentials,
    /// `220` to STARTTLS is in the output: the caller flushes it, starts TLS, and reports the
    /// finished handshake with [`Resume::TlsStarted`] (RFC 3207 §4.2). Input until then is
    /// discarded (counted in [`Progress::discarded`]).
    StartTls,
    /// The session is over: the caller flushes the output and closes the connection.
    Closed,
}

/// Which of the caller's deadlines applies to the session now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// The per-command idle timeout (RFC 5321 §4.5.3.2).
    #[default]
    Command,
    /// Message content (DATA or BDAT octets) is being received: the server's minimum data
    /// rate applies, if it sets one.
    Content,
    /// The server is shutting down and no transaction is open: the session takes only
    /// `QUIT`, and the caller ends it ([`Resume::Expired`]) if none comes soon.
    Quit,
}

/// An event from outside the input that the session waited for (or must hear now): the one
/// entry point besides [`Session::on_input`] that changes its state.
#[derive(Debug)]
pub enum Resume {
    /// The sink's outcome for the message it answered [`Verdict::Pending`](super::sink::Verdict::Pending) for: stored
    /// (`250`) or not (`451 4.3.0`). Ignored unless the session waits for [`Wait::Store`].
    Stored(bool),
    /// The sink's outcome for the message it answered [`Verdict::Pending`](super::sink::Verdict::Pending) for: refused
    /// with this final reply of its own (a `4yz` or `5yz`, such as a relay spool's `452
    /// 4.3.1`). Ignored unless the session waits for [`Wait::Store`].
    Refused(&'static [u8]),
    /// The verdict on [`Session::credentials`]. Ignored unless the session waits for
    /// [`Wait::Credentials`].
    Auth(AuthVerdict),
    /// The TLS handshake finished (implicit TLS, or after STARTTLS): what was negotiated goes
    /// into every later message's envelope; after STARTTLS the session is back at the state
    /// right after the greeting (RFC 3207 §4.2).
    TlsStarted(crate::proto::envelope::TlsInfo),
    /// The server is shutting down. A session with a transaction open may finish it; from
    /// then on (or at once, for an idle one) it takes only `QUIT`, answered `221` as usual:
    /// a client that got its last `250` and says `QUIT` is told goodbye, not `421`. Any
    /// other command is answered `421 4.3.2` (RFC 5321 §3.8) and the session closes. Nothing
    /// is said until then: how long the session may wait for its `QUIT` is the caller's
    /// choice ([`Clock::Quit`]; it ends the session with [`Resume::Expired`]).
    Shutdown,
    /// The caller's deadline passed: the session replies with this (a `421`) and closes. A
    /// session that waited for its `QUIT` during shutdown says `421 4.3.2` instead.
    Expired(&'static [u8]),
}

/// How the next input bytes are framed.
#[derive(Debug, Clone, Copy, Default)]
enum Mode {
    /// Reading command lines.
    #[default]
    Command,
    /// Skipping the rest of an overlong command line; `saw_cr` tells whether the last byte
    /// skipped was a CR (the line end may straddle two reads).
    SkippingLongLine { saw_cr: bool },
    /// Reading DATA content, or answering its end: the sink's message is open for as long as
    /// the session is in this mode (it leaves it when the message is stored or aborted).
    Data(DataTransfer),
    /// Reading the octets of a BDAT chunk.
    Chunk(ChunkTransfer),
    /// The sink is storing a complete message elsewhere; its final reply (and everything the
    /// client pipelined behind it) waits for [`Resume::Stored`]. RFC 5321
    /// §4.1.1.4: `250` means the receiver has taken responsibility, so it cannot come sooner.
    AwaitingStore {
        /// The message's content octets, counted once it is stored.
        size: u64,
    },
    /// Reading the client's answer to an AUTH challenge (a base64 line, or `*`).
    AuthResponse(crate::proto::sasl::Step),
    /// AUTH credentials are complete and wait for the caller's verdict
    /// ([`Session::credentials`], [`Resume::Auth`]); input behind them waits.
    AwaitingAuth,
    /// `220` to STARTTLS is out: the caller flushes it, discards every byte received behind
    /// the command (RFC 3207 §4.2, CVE-2011-0411), starts TLS and reports the finished
    /// handshake ([`Resume::TlsStarted`]). No input is processed until then.
    StartingTls,
    /// The session is over; input is ignored.
    Closed,
}

/// Where the mail transaction stands (RFC 5321 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Stage {
    /// No HELO/EHLO yet.
    #[default]
    Connected,
    /// Greeted; no transaction.
    Greeted,
    /// `MAIL` accepted; recipients may follow.
    MailGiven,
    /// At least one BDAT chunk accepted; more chunks follow until `LAST`. The sink's message
    /// is open for as long as the transaction is at this stage (between chunks too, while
    /// commands are read).
    Chunking,
    /// A BDAT chunk was refused mid-message: later chunks are refused until `LAST` or `RSET`.
    ChunkingFailed,
}

/// One SMTP session, from greeting to close.
#[derive(Debug, Default)]
pub struct Session {
    /// Framing of the next bytes.
    mode: Mode,
    /// The transaction's progress.
    stage: Stage,
    /// The greeting and the transaction's envelope.
    envelope: EnvelopeBuf,
    /// BDAT content octets accepted in this transaction (RFC 3030 + RFC 1870 size check).
    chunked_size: u64,
    /// Refused BDAT octets thrown away since the last accepted message.
    discarded: u64,
    /// Failed commands so far.
    errors: u32,
    /// Junk commands (see `is_junk`) since the last accepted message.
    junk: u32,
    /// The server is shutting down: no new transaction starts. Between transactions only
    /// `QUIT` is taken ([`Clock::Quit`]); any other command gets `421 4.3.2`.
    draining: bool,
    /// The connection is encrypted (implicit TLS, or after STARTTLS).
    tls_active: bool,
    /// The credentials of the AUTH exchange in progress (boxed and made at the first AUTH:
    /// most sessions never authenticate, and an idle connection should stay small).
    credentials: Option<Box<crate::proto::sasl::Credentials>>,
    /// Failed AUTH attempts in this session (the caller slows repeated failures down).
    auth_failures: u32,
    /// Messages accepted (answered `250`) since the caller last took the counters.
    accepted_messages: u64,
    /// Content octets of those messages.
    accepted_bytes: u64,
    /// The gate refused the session at the greeting with a `554` (RFC 5321 §3.1): only
    /// `QUIT` is carried out; every other command gets `503 5.5.1`.
    refused: bool,
}

/// The caller's side of one call: where replies, content and questions go, and what the call
/// did so far.
struct Io<'r, 'a, S, G> {
    /// Replies.
    out: &'r mut Replies<'a>,
    /// Message content and verdicts.
    sink: &'r mut S,
    /// Whether commands may proceed.
    gate: &'r mut G,
    /// Commands and messages completed in this call.
    completed: u32,
    /// Where a pause the gate asked for begins in the output.
    pause_at: Option<usize>,
    /// The output budget ran out with input left.
    output_full: bool,
    /// Input discarded behind a `STARTTLS` line.
    discarded: usize,
}

impl<'r, 'a, S: MessageSink, G: Gate> Io<'r, 'a, S, G> {
    /// The caller's side of a call that has done nothing yet.
    fn new(out: &'r mut Replies<'a>, sink: &'r mut S, gate: &'r mut G) -> Self {
        Io {
            out,
            sink,
            gate,
            completed: 0,
            pause_at: None,
            output_full: false,
            discarded: 0,
        }
    }

    /// Marks the output from here on as held by a pause.
    fn pause_here(&mut self) {
        self.pause_at.get_or_insert(self.out.len());
    }
}

impl Session {
    /// A new session. The caller calls [`Session::on_connect`] first.
    pub fn new() -> Session {
        Session::default()
    }

    /// A new session on a connection that is encrypted from the start (implicit TLS, RFC
    /// 8314): STARTTLS is not offered, AUTH is.
    pub fn over_tls() -> Session {
        Session {
            tls_active: true,
            ..Session::default()
        }
    }

    /// Whether the connection is encrypted, as far as the session knows.
    pub fn is_tls(&self) -> bool {
        self.tls_active
    }

    /// Failed commands so far.
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// Returns the messages and content octets accepted since the last call, and resets both.
    pub fn take_accepted(&mut self) -> (u64, u64) {
        let taken = (self.accepted_messages, self.accepted_bytes);
        self.accepted_messages = 0;
        self.accepted_bytes = 0;
        taken
    }

    /// An event the session waited for, or must hear now (see [`Resume`]): appends the
    /// replies it calls for and says what the session waits for next. The caller then
    /// presents the input it kept again (if the session takes input).
    pub fn resume<S: MessageSink>(
        &mut self,
        config: &SessionConfig,
        event: Resume,
        out: &mut Replies<'_>,
        sink: &mut S,
    ) -> Progress {
        match event {
            Resume::Stored(stored) => {
                self.on_stored(stored.then_some(()).ok_or(reply::STORE_FAILED), out, sink)
            }
            Resume::Refused(refusal) => self.on_stored(Err(refusal), out, sink),
            Resume::Auth(verdict) => self.on_auth_verdict(config, verdict, out, sink),
            Resume::TlsStarted(info) => self.on_tls_started(info, out, sink),
            Resume::Shutdown => self.draining = true,
            Resume::Expired(reply) => {
                if !self.is_closed() {
                    self.end_with(reply, out, sink);
                }
            }
        }
        Progress {
            wait: self.waiting_for(),
            clock: self.clock(),
            ..Progress::default()
        }
    }

    /// The connection is gone: a message in progress is abandoned (never accepted).
    pub fn on_disconnect<S: MessageSink>(&mut self, sink: &mut S) {
        self.abort_message(sink);
        self.mode = Mode::Closed;
    }

    /// What the session waits for, from its framing mode (the output budget is the call's
    /// to tell).
    fn waiting_for(&self) -> Option<Wait> {
        match self.mode {
            Mode::AwaitingStore { .. } => Some(Wait::Store),
            Mode::AwaitingAuth => Some(Wait::Credentials),
            Mode::StartingTls => Some(Wait::StartTls),
            Mode::Closed => Some(Wait::Closed),
            Mode::Command
            | Mode::SkippingLongLine { .. }
            | Mode::Data(_)
            | Mode::Chunk(_)
            | Mode::AuthResponse(_) => None,
        }
    }

    /// Which of the caller's deadlines applies now.
    fn clock(&self) -> Clock {
        if matches!(self.mode, Mode::Data(_) | Mode::Chunk(_)) {
            Clock::Content
        } else if self.awaits_quit() {
            Clock::Quit
        } else {
            Clock::Command
        }
    }

    /// What a call that took input did, having consumed `consumed` bytes. A wait of the
    /// session's own comes before a full output budget: the input waits for it either way.
    #[inline]
    fn progress<S, G>(&self, io: &Io<'_, '_, S, G>, consumed: usize) -> Progress {
        Progress {
            consumed,
            completed: io.completed,
            pause_at: io.pause_at,
            wait: self
                .waiting_for()
                .or(io.output_full.then_some(Wait::Output)),
            clock: self.clock(),
            discarded: io.discarded,
        }
    }

    /// The connection is open: asks the gate about it, then appends the `220` greeting
    /// (RFC 5321 §4.2, §3.1) or whatever the gate said instead.
    pub fn on_connect<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        out: &mut Replies<'_>,
        sink: &mut S,
        gate: &mut G,
    ) -> Progress {
        let mut io = Io::new(out, sink, gate);
        let decision = io.gate.check(Checkpoint::Connect, &GateContext::default());
        let refusal = match decision {
            Decision::Proceed => None,
            Decision::Refuse(reply) | Decision::Close(reply) => Some(reply),
            Decision::Hangup => {
                self.on_disconnect(io.sink);
                return self.progress(&io, 0);
            }
            Decision::Pause(then) => {
                io.pause_here();
                then
            }
        };
        match refusal {
            None => io.out.push(&config.banner.greeting),
            // RFC 5321 §3.8: a 421 closes the connection after it.
            Some(reply) if reply::is_closing(io.gate.text(reply)) => {
                self.close_injected(reply, &mut io)
            }
            // RFC 5321 §3.1: "a 554 response MAY be given in the initial connection opening
            // message instead of the 220. A server taking this approach MUST still wait for
            // the client to send a QUIT (see Section 4.1.1.10) before closing the connection
            // and SHOULD respond to any intervening commands with "503 bad sequence of
            // commands"." The idle timeout and the error cap still bound the wait.
            Some(reply) => {
                io.out.push_from(io.gate.text(reply), Origin::Fault);
                self.refused = true;
            }
        }
        self.progress(&io, 0)
    }

    /// Whether the session has ended (after QUIT, a closing `421`/`221`, or a framing error).
    fn is_closed(&self) -> bool {
        matches!(self.mode, Mode::Closed)
    }

    /// Whether the session waits for its sink to report a stored message.
    #[cfg(test)]
    fn is_awaiting_store(&self) -> bool {
        matches!(self.mode, Mode::AwaitingStore { .. })
    }

    /// Processes `input`, appending replies to `out`, content to `sink`, and asking `gate`
    /// before each command. Consumes everything except an incomplete command line (always
    /// shorter than `config.max_line_len`) and, when the call stops early for a pending
    /// store or a pause, the input behind it.
    pub fn on_input<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        input: &[u8],
        out: &mut Replies<'_>,
        sink: &mut S,
        gate: &mut G,
    ) -> Progress {
        let mut io = Io::new(out, sink, gate);
        let consumed = self.take_input(config, input, &mut io);
        self.progress(&io, consumed)
    }

    /// [`Session::on_input`]'s loop: returns the bytes consumed.
    #[inline]
    fn take_input<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        input: &[u8],
        io: &mut Io<'_, '_, S, G>,
    ) -> usize {
        let mut pos = 0;
        loop {
            if io.pause_at.is_some() {
                return pos;
            }
            if io.out.is_full() && pos < input.len() && !self.is_closed() {
                // The client is not reading its replies: take no more commands. Nothing is
                // lost or reordered (the rest is presented again once replies have drained),
                // and the client's TCP window holds back what it sends meanwhile.
                io.output_full = true;
                return pos;
            }
            match self.mode {
                Mode::Closed => return input.len(),
                Mode::StartingTls => {
                    // RFC 3207 §4.2 and RFC 2920 §3.1: STARTTLS ends a pipelined group, so
                    // nothing legal follows it in plaintext. Whatever did is discarded here,
                    // never executed inside TLS (CVE-2011-0411).
                    io.discarded += input.len() - pos;
                    return input.len();
                }
                Mode::AwaitingStore { .. } | Mode::AwaitingAuth => return pos,
                Mode::AuthResponse(step) => match next_line(&input[pos..], config.max_line_len) {
                    Ok(Status::Complete { line, consumed }) => {
                        pos += consumed;
                        io.completed += 1;
                        self.on_auth_response(config, step, line, false, io);
                    }
                    Ok(Status::Partial) => return pos,
                    Err(LineError::TooLong) => {
                        // An overlong response ends the exchange like any overlong line.
                        self.wipe_credentials();
                        self.mode = Mode::SkippingLongLine { saw_cr: false };
                    }
                },
                Mode::Command => match next_line(&input[pos..], config.max_line_len) {
                    Ok(Status::Complete { line, consumed }) => {
                        pos += consumed;
                        io.completed += 1;
                        self.on_command_line(config, line, io);
                    }
                    Ok(Status::Partial) => return pos,
                    // RFC 5321 §4.5.3.1.4: too long. Drop it up to its CR LF, then reply.
                    Err(LineError::TooLong) => {
                        self.mode = Mode::SkippingLongLine { saw_cr: false };
                    }
                },
                Mode::SkippingLongLine { saw_cr } => {
                    let rest = &input[pos..];
                    match find_line_end(rest, saw_cr) {
                        Some(end) => {
                            pos += end;
                            io.completed += 1;
                            self.mode = Mode::Command;
                            self.reply_error(config, reply::LINE_TOO_LONG, io);
                        }
                        None => {
                            let saw_cr = match rest.last() {
                                Some(&last) => last == b'\r',
                                None => saw_cr,
                            };
                            self.mode = Mode::SkippingLongLine { saw_cr };
                            return input.len();
                        }
                    }
                }
                Mode::Data(transfer) => {
                    let (taken, transfer) =
                        self.take_data_octets(config, transfer, &input[pos..], io);
                    pos += taken;
                    let Some(transfer) = transfer else {
                        return pos;
                    };
                    io.completed += 1;
                    io.sink.on_content_end(pos, transfer.size());
                    // The session stays in `Mode::Data` (the message open) until the
                    // message's end leaves it.
                    self.on_data_end(config, transfer, io);
                }
                Mode::Chunk(transfer) => {
                    let (taken, transfer) = self.take_chunk_octets(transfer, &input[pos..], io);
                    pos += taken;
                    let Some(transfer) = transfer else {
                        return pos;
                    };
                    // The BDAT command line counted as progress; its octets earn time at
                    // the minimum data rate like DATA content.
                    self.mode = Mode::Command;
                    self.on_chunk_end(config, transfer, io);
                }
            }
        }
    }

    /// The server is shutting down and this session has no transaction open: it takes only
    /// `QUIT` now.
    fn awaits_quit(&self) -> bool {
        self.draining && !self.is_closed() && self.is_idle()
    }

    /// No transaction is open and commands are being read.
    fn is_idle(&self) -> bool {
        matches!(self.mode, Mode::Command | Mode::SkippingLongLine { .. })
            && matches!(self.stage, Stage::Connected | Stage::Greeted)
    }

    fn close_with<S: MessageSink, G: Gate>(
        &mut self,
        reply: &'static [u8],
        io: &mut Io<'_, '_, S, G>,
    ) {
        self.end_with(reply, io.out, io.sink);
    }

    /// Ends the session with our `reply`: a message in progress is abandoned.
    fn end_with<S: MessageSink>(
        &mut self,
        reply: &'static [u8],
        out: &mut Replies<'_>,
        sink: &mut S,
    ) {
        self.abort_message(sink);
        out.push(reply);
        self.mode = Mode::Closed;
    }

    /// The server is shutting down and the session may not go on (a command other than
    /// `QUIT` between transactions, or a TLS upgrade finishing): `421 4.3.2` and close
    /// (RFC 5321 §3.8).
    fn close_for_shutdown<S: MessageSink>(&mut self, out: &mut Replies<'_>, sink: &mut S) {
        self.end_with(reply::SHUTTING_DOWN, out, sink);
    }

    /// Appends a 4xx/5xx reply to a command and applies the error cap.
    fn reply_error<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        reply: &'static [u8],
        io: &mut Io<'_, '_, S, G>,
    ) {
        io.out.push(reply);
        self.errors += 1;
        if self.errors >= config.max_errors {
            self.close_with(reply::TOO_MANY_ERRORS, io);
        }
    }

    /// Ends the transaction (RFC 5321 §4.1.1.5 for RSET; also after the final reply).
    fn reset_transaction<S: MessageSink>(&mut self, sink: &mut S) {
        self.abort_message(sink);
        self.envelope.clear_transaction();
        self.chunked_size = 0;
        self.stage = match self.stage {
            Stage::Connected => Stage::Connected,
            Stage::Greeted | Stage::MailGiven | Stage::Chunking | Stage::ChunkingFailed => {
                Stage::Greeted
            }
        };
    }

    fn on_command_line<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        line: &[u8],
        io: &mut Io<'_, '_, S, G>,
    ) {
        // The protocol's own checks come first: syntax here, then (below and in each
        // command's handler) sequence, then limits. The gate is asked only about a command
        // the protocol would carry out, so an injected fault never hides a sender's bug (a
        // `503` stays a `503`).
        if self.refused {
            return self.on_refused_session_line(config, line, io);
        }
        let parsed = parse_command(line);
        if self.awaits_quit() && !matches!(parsed, Ok(Command::Quit)) {
            // Shutting down, between transactions: nothing new starts. RFC 5321 §3.8: a
            // server that must close answers `421` to any command but `QUIT`.
            return self.close_for_shutdown(io.out, io.sink);
        }
        let command = match parsed {
            Ok(command) => command,
            Err(error) => return self.on_command_error(config, error, io),
        };
        // RFC 3207 §4: a server that requires TLS answers 530 to every command but NOOP,
        // EHLO, STARTTLS and QUIT until TLS is on. (BDAT keeps its own path: its octets must
        // be read, and without a transaction it is refused anyway.)
        let needs_tls = matches!(
            command,
            Command::Helo { .. }
                | Command::Rset
                | Command::Vrfy
                | Command::Help
                | Command::Mail { .. }
                | Command::Rcpt { .. }
                | Command::Data
                | Command::Auth { .. }
        );
        if needs_tls && config.security.require_tls && !self.tls_active {
            return self.reply_error(config, reply::MUST_STARTTLS, io);
        }
        match command {
            Command::Helo { .. }
            | Command::Ehlo { .. }
            | Command::Rset
            | Command::Noop
            | Command::Vrfy
            | Command::Help
                if self.is_junk(config) =>
            {
                self.close_with(reply::TOO_MANY_JUNK_COMMANDS, io)
            }
            Command::Helo { domain } | Command::Ehlo { domain } => {
                let esmtp = matches!(command, Command::Ehlo { .. });
                let checkpoint = if esmtp {
                    Checkpoint::Ehlo
                } else {
                    Checkpoint::Helo
                };
                if !self.gate_passes(checkpoint, None, b"", io) {
                    return;
                }
                // RFC 5321 §4.1.4: a HELO/EHLO mid-session resets the transaction like RSET.
                self.reset_transaction(io.sink);
                self.stage = Stage::Greeted;
                self.envelope.set_helo(domain, esmtp);
                io.out.push(if esmtp && self.tls_active {
                    &config.banner.ehlo_tls
                } else if esmtp {
                    &config.banner.ehlo
                } else {
                    &config.banner.helo
                });
            }
            Command::Mail {
                path,
                params,
                envid,
            } => self.on_mail(config, path, params, envid, io),
            Command::Rcpt { path, params } => self.on_rcpt(config, path, params, io),
            Command::Data => self.on_data(config, io),
            Command::Bdat { size, last } => self.on_bdat(config, size, last, io),
            Command::Rset => {
                if self.gate_passes(Checkpoint::Rset, None, b"", io) {
                    self.reset_transaction(io.sink);
                    io.out.push(reply::OK);
                }
            }
            Command::Noop => {
                if self.gate_passes(Checkpoint::Noop, None, b"", io) {
                    io.out.push(reply::OK);
                }
            }
            // VRFY, HELP, STARTTLS and AUTH have no checkpoints: faults are for the mail flow.
            Command::Vrfy => io.out.push(reply::VRFY_CANNOT),
            Command::Help => io.out.push(reply::HELP),
            Command::Quit => {
                if self.gate_passes(Checkpoint::Quit, None, b"", io) {
                    self.close_with(reply::BYE, io);
                }
            }
            Command::StartTls => self.on_starttls(config, io),
            Command::Auth { mechanism, initial } => self.on_auth(config, mechanism, initial, io),
        }
    }

    /// A command line after a `554` greeting (RFC 5321 §3.1, see [`Session::on_connect`]):
    /// `QUIT` gets `221` and closes, anything else `503 5.5.1` (counted toward the error
    /// cap, so a client that never says QUIT is closed after `max_errors`, if the idle
    /// timeout does not close it first). `BDAT`'s octets are read before its `503`, as
    /// always (RFC 3030 §2), so they are not taken for commands.
    fn on_refused_session_line<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        line: &[u8],
        io: &mut Io<'_, '_, S, G>,
    ) {
        match parse_command(line) {
            Ok(Command::Quit) => self.close_with(reply::BYE, io),
            Ok(Command::Bdat { size, last }) => self.on_bdat(config, size, last, io),
            _ => self.reply_error(config, reply::SESSION_REFUSED, io),
        }
    }

    /// Counts a command that moves no message forward: HELO, EHLO, RSET, NOOP, VRFY, HELP (as
    /// Postfix's `smtpd_junk_command_limit` counts HELO, EHLO, RSET, NOOP, VRFY), an empty
    /// `BDAT` chunk, or a message the session refused (size, bare CR/LF). True once there were
    /// more than the limit since the last accepted message: a client that only keeps its
    /// connection busy cannot hold a slot for ever.
    #[inline]
    fn is_junk(&mut self, config: &SessionConfig) -> bool {
        self.junk = self.junk.saturating_add(1);
        self.junk > config.max_junk_commands
    }

    fn on_command_error<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        error: CommandError,
        io: &mut Io<'_, '_, S, G>,
    ) {
        let reply = reply::command_error(error);
        match error {
            // Not SMTP at all, or BDAT whose octets can no longer be framed: reply and close.
            CommandError::NotSmtp | CommandError::BadBdat => self.close_with(reply, io),
            CommandError::BadRecipientPath
            | CommandError::RecipientTooLong
            | CommandError::RecipientNotUtf8
                if self.stage == Stage::MailGiven =>
            {
                self.envelope.recipients_refused += 1;
                self.reply_error(config, reply, io);
            }
            CommandError::Unrecognized
            | CommandError::InvalidBytes
            | CommandError::InvalidUtf8
            | CommandError::NotImplemented
            | CommandError::MissingDomain
            | CommandError::ControlInDomain
            | CommandError::MissingArgument
            | CommandError::MissingMechanism
            | CommandError::UnexpectedArgument
            | CommandError::BadKeyword
            | CommandError::BadSenderPath
            | CommandError::BadRecipientPath
            | CommandError::SenderTooLong
            | CommandError::RecipientTooLong
            | CommandError::RecipientNotUtf8
            | CommandError::BadParameter
            | CommandError::UnknownParameter => self.reply_error(config, reply, io),
        }
    }
}
