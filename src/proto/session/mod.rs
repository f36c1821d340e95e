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
//! stores it elsewhere ([`Verdict::Pending`]), a pause the gate asked for
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
//! their data; transitions are in `match`es with no catch-all arm. BDAT's framing and policy
//! (RFC 3030) are in `bdat`; the envelope's storage is [`super::envelope`].
//!
//! Memory: the input is borrowed, never copied; the envelope is kept in a few buffers that
//! are cleared, not freed, between messages, so after warm-up a session allocates nothing.

mod bdat;
#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;

use super::command::{parse_command, Body, Command, CommandError, MailParams};
use super::data::DataScanner;
use super::envelope::{EnvelopeBuf, Transfer};
use super::gate::{Checkpoint, Decision, Gate, GateContext};
use super::line::{find_line_end, next_line, LineError, Status};
use super::reply::{self, Banner, Origin, Replies};
use super::sink::{MessageSink, Verdict};
use bdat::ChunkTransfer;

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
}

/// What the server offers and demands about TLS and AUTH. The EHLO replies in
/// [`SessionConfig::banner`] must advertise the same (see [`reply::Advertised`]).
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
    /// The sink is storing a message elsewhere ([`Verdict::Pending`]): its reply, and
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
    /// The sink's outcome for the message it answered [`Verdict::Pending`] for: stored
    /// (`250`) or not (`451 4.3.0`). Ignored unless the session waits for [`Wait::Store`].
    Stored(bool),
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

/// The caller's verdict on an AUTH attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVerdict {
    /// The credentials are right: `235 2.7.0` (unless the session found the attempt invalid
    /// itself).
    Accepted,
    /// They are wrong: `535 5.7.8`.
    Rejected,
    /// Not checked now: this `454 4.7.0` reply (RFC 4954 §6: the checkers are saturated, or
    /// the client failed too often).
    Unavailable(&'static [u8]),
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
    /// Reading DATA content.
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
    AuthResponse(AuthStep),
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

/// Which response an AUTH exchange waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthStep {
    /// The PLAIN message, after an empty `334` challenge.
    Plain,
    /// LOGIN's user name.
    LoginUser,
    /// LOGIN's password.
    LoginPassword,
}

/// Progress through DATA content.
#[derive(Debug, Clone, Copy)]
struct DataTransfer {
    /// Finds the end of data and undoes dot-stuffing.
    scanner: DataScanner,
    /// Content octets so far.
    size: u64,
    /// Whether `size` passed the limit (the rest is read and dropped; RFC 1870 §6.3 lets us
    /// refuse only after the end of data).
    too_big: bool,
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
    /// At least one BDAT chunk accepted; more chunks follow until `LAST`.
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
    /// Whether the sink has an open message (started, neither ended nor aborted).
    message_open: bool,
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

/// The gate's answer about a command the protocol would carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gated {
    /// Carry it out.
    Proceed,
    /// Answer with this reply (a fault's) instead.
    Refuse(&'static [u8]),
    /// The session is over (the gate hung up, or closed with a `421`).
    Ended,
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

    /// The credentials of the AUTH attempt waiting for a verdict ([`Wait::Credentials`]),
    /// `(user, password)`: the caller checks them and answers with [`Resume::Auth`]. `None`
    /// when no attempt is waiting.
    pub fn credentials(&self) -> Option<(&[u8], &[u8])> {
        match self.mode {
            Mode::AwaitingAuth => self
                .credentials
                .as_deref()
                .map(|c| (&c.user[..], &c.password[..])),
            _ => None,
        }
    }

    /// Whether the client has authenticated (RFC 4954) in this session.
    pub fn authenticated(&self) -> bool {
        self.envelope.authenticated
    }

    /// Failed AUTH attempts so far.
    pub fn auth_failures(&self) -> u32 {
        self.auth_failures
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
            Resume::Stored(stored) => self.on_stored(stored, out, sink),
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

    /// The handshake finished: `info` goes into every later message's envelope. After
    /// STARTTLS, the session is back at the state right after the greeting (RFC 3207 §4.2):
    /// the EHLO name, the envelope and any authentication are forgotten, and the client must
    /// send EHLO again. Nothing is sent (no second greeting). During shutdown the session
    /// ends with `421` at once.
    fn on_tls_started<S: MessageSink>(
        &mut self,
        info: crate::proto::envelope::TlsInfo,
        out: &mut Replies<'_>,
        sink: &mut S,
    ) {
        if matches!(self.mode, Mode::StartingTls) {
            self.abort_message(sink);
            self.envelope.forget_all();
            self.wipe_credentials();
            self.chunked_size = 0;
            self.stage = Stage::Connected;
            self.tls_active = true;
            self.mode = Mode::Command;
            if self.draining {
                self.close_for_shutdown(out, sink);
            }
        }
        self.envelope.tls = Some(Box::new(info));
    }

    /// Forgets the AUTH attempt's user and password (wiping the password).
    fn wipe_credentials(&mut self) {
        if let Some(credentials) = &mut self.credentials {
            credentials.wipe();
        }
    }

    /// The caller's verdict on [`Session::credentials`]. Accepted: `235 2.7.0` and the user is
    /// recorded; rejected: `535 5.7.8` (counted toward the error cap, RFC 4954 §6). An
    /// attempt the session found invalid itself (an authorization identity other than the
    /// user, an empty user or password, a user name that is not printable UTF-8) fails
    /// whatever the caller says: it is handed over like any other only so it takes as long.
    /// Unavailable: the `454` given is not a failed attempt, but a failed command: it counts
    /// toward the error cap like any other (else a client could send `AUTH` for ever for
    /// free). The password is wiped either way. Ignored when no attempt is waiting.
    fn on_auth_verdict<S: MessageSink>(
        &mut self,
        config: &SessionConfig,
        verdict: AuthVerdict,
        out: &mut Replies<'_>,
        sink: &mut S,
    ) {
        if !matches!(self.mode, Mode::AwaitingAuth) {
            return;
        }
        self.mode = Mode::Command;
        let accepted = verdict == AuthVerdict::Accepted
            && self.credentials.as_ref().is_some_and(|c| !c.refused);
        let reply = match verdict {
            _ if accepted => {
                if let Some(credentials) = &self.credentials {
                    self.envelope.set_auth_user(&credentials.user);
                }
                reply::AUTH_OK
            }
            AuthVerdict::Accepted | AuthVerdict::Rejected => {
                self.auth_failures = self.auth_failures.saturating_add(1);
                reply::AUTH_FAILED
            }
            AuthVerdict::Unavailable(reply) => reply,
        };
        self.wipe_credentials();
        out.push(reply);
        if !accepted {
            self.errors += 1;
            if self.errors >= config.max_errors {
                self.end_with(reply::TOO_MANY_ERRORS, out, sink);
            }
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
            Some(reply) if reply::is_closing(reply) => self.close_injected(reply, &mut io),
            // RFC 5321 §3.1: "a 554 response MAY be given in the initial connection opening
            // message instead of the 220. A server taking this approach MUST still wait for
            // the client to send a QUIT (see Section 4.1.1.10) before closing the connection
            // and SHOULD respond to any intervening commands with "503 bad sequence of
            // commands"." The idle timeout and the error cap still bound the wait.
            Some(reply) => {
                io.out.push_from(reply, Origin::Fault);
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

    /// The sink's outcome for the message it answered [`Verdict::Pending`] for: appends `250`
    /// or `451 4.3.0` and resumes reading commands. Ignored when the session is not waiting
    /// (it timed out or closed meanwhile).
    fn on_stored<S: MessageSink>(&mut self, stored: bool, out: &mut Replies<'_>, sink: &mut S) {
        let Mode::AwaitingStore { size } = self.mode else {
            return;
        };
        self.mode = Mode::Command;
        let accepted;
        let reply = if stored {
            self.count_accepted(size);
            accepted = reply::message_accepted(sink.queue_id());
            accepted.as_bytes()
        } else {
            reply::STORE_FAILED
        };
        out.push(reply);
        sink.on_outcome(None, size, reply);
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
                Mode::Data(mut transfer) => {
                    let max = config.max_message_size;
                    let message_open = self.message_open;
                    let sink = &mut *io.sink;
                    let scan = transfer.scanner.scan(&input[pos..], |piece| {
                        transfer.size += piece.len() as u64;
                        if transfer.size > max {
                            transfer.too_big = true;
                        } else if message_open {
                            sink.on_message_data(piece);
                        }
                    });
                    pos += scan.consumed;
                    if !scan.done {
                        self.mode = Mode::Data(transfer);
                        return pos;
                    }
                    io.completed += 1;
                    self.mode = Mode::Command;
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

    /// A reply the gate gave instead of carrying a command out (counted as a fault's, not
    /// ours). A `421` closes the session after it, as the server's own `421`s do: RFC 5321
    /// §3.8 lets a server close the connection "after detecting the need to shut down the
    /// SMTP service and returning a 421 response code", and §4.2.2 defines 421 as "Service
    /// not available, closing transmission channel": a client that hears it expects no
    /// further reply.
    fn push_fault_reply<S: MessageSink, G: Gate>(
        &mut self,
        reply: &'static [u8],
        io: &mut Io<'_, '_, S, G>,
    ) {
        if reply::is_closing(reply) {
            self.close_injected(reply, io);
        } else {
            io.out.push_from(reply, Origin::Fault);
        }
    }

    /// Closes the session with a reply the gate gave (counted as a fault's, not ours).
    fn close_injected<S: MessageSink, G: Gate>(
        &mut self,
        reply: &'static [u8],
        io: &mut Io<'_, '_, S, G>,
    ) {
        self.abort_message(io.sink);
        io.out.push_from(reply, Origin::Fault);
        self.mode = Mode::Closed;
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

    fn start_message<S: MessageSink>(&mut self, transfer: Transfer, sink: &mut S) {
        sink.on_message_start(&self.envelope.view(transfer));
        self.message_open = true;
    }

    fn abort_message<S: MessageSink>(&mut self, sink: &mut S) {
        if self.message_open {
            self.message_open = false;
            sink.on_message_abort();
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

    /// Asks the gate about `checkpoint`. `sender` and `recipient` are the ones being given
    /// by the command, if it gives one.
    #[inline]
    fn ask_gate<S: MessageSink, G: Gate>(
        &self,
        checkpoint: Checkpoint,
        sender: Option<&[u8]>,
        recipient: &[u8],
        io: &mut Io<'_, '_, S, G>,
    ) -> Decision {
        let context = GateContext {
            sender: sender.unwrap_or(self.envelope.sender()),
            recipient,
            accepted: self.envelope.recipients(),
        };
        io.gate.check(checkpoint, &context)
    }

    /// Ends an accepted-or-refused message: the final reply, then a clean transaction.
    fn finish_message<S: MessageSink, G: Gate>(
        &mut self,
        transfer: Transfer,
        size: u64,
        refusal: Option<&'static [u8]>,
        io: &mut Io<'_, '_, S, G>,
    ) {
        let accept = refusal.is_none() && self.message_open;
        if accept {
            // The message is complete and the protocol would accept it (no size or bare-LF
            // refusal): only now may a fault rule decide otherwise.
            match self.ask_gate(Checkpoint::EndOfData, None, b"", io) {
                Decision::Proceed => {}
                Decision::Refuse(reply) => {
                    return self.end_message_with(transfer, size, reply, Origin::Fault, io)
                }
                Decision::Hangup => {
                    let envelope = self.envelope.view(transfer);
                    io.sink.on_outcome(Some(&envelope), size, b"(disconnected)");
                    return self.on_disconnect(io.sink);
                }
                Decision::Close(reply) => {
                    let envelope = self.envelope.view(transfer);
                    io.sink.on_outcome(Some(&envelope), size, reply);
                    return self.close_injected(reply, io);
                }
                Decision::Pause(then) => {
                    io.pause_here();
                    if let Some(reply) = then {
                        return self.end_message_with(transfer, size, reply, Origin::Fault, io);
                    }
                }
            }
        }
        let accepted;
        let reply = match refusal {
            Some(refusal) => refusal,
            None if !accept => reply::STORE_FAILED,
            None => {
                self.message_open = false;
                match io.sink.on_message_end(&self.envelope.view(transfer)) {
                    Verdict::Stored => {
                        self.count_accepted(size);
                        // `250 2.0.0 Ok: queued as <id>`, with the sink's name for it.
                        accepted = reply::message_accepted(io.sink.queue_id());
                        accepted.as_bytes()
                    }
                    Verdict::Failed => reply::STORE_FAILED,
                    // The transaction is over either way; only the reply waits.
                    Verdict::Pending => {
                        self.mode = Mode::AwaitingStore { size };
                        return self.reset_transaction(io.sink);
                    }
                }
            }
        };
        self.end_message_with(transfer, size, reply, Origin::Protocol, io);
    }

    /// The final reply of a message attempt (made by `origin`), then a clean transaction.
    fn end_message_with<S: MessageSink, G: Gate>(
        &mut self,
        transfer: Transfer,
        size: u64,
        reply: &[u8],
        origin: Origin,
        io: &mut Io<'_, '_, S, G>,
    ) {
        io.out.push_from(reply, origin);
        io.sink
            .on_outcome(Some(&self.envelope.view(transfer)), size, reply);
        self.reset_transaction(io.sink);
        if origin == Origin::Fault && reply::is_closing(reply) {
            // RFC 5321 §3.8, as in `push_fault_reply`.
            self.mode = Mode::Closed;
        }
    }

    fn count_accepted(&mut self, size: u64) {
        self.discarded = 0;
        self.junk = 0;
        self.accepted_messages += 1;
        self.accepted_bytes += size;
    }

    fn on_data_end<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        transfer: DataTransfer,
        io: &mut Io<'_, '_, S, G>,
    ) {
        let bare = transfer.scanner.saw_bare_cr_or_lf() && config.bare_lf == BareLfPolicy::Reject;
        let refusal = if transfer.too_big {
            Some(reply::MESSAGE_TOO_BIG)
        } else if bare {
            Some(reply::BARE_CR_LF_IN_DATA)
        } else {
            None
        };
        self.finish_message(Transfer::Data, transfer.size, refusal, io);
        if refusal.is_some() && self.is_junk(config) && !self.is_closed() {
            self.close_with(reply::TOO_MANY_JUNK_COMMANDS, io);
        }
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
            Command::Mail { path, params } => self.on_mail(config, path, params, io),
            Command::Rcpt { path } => self.on_rcpt(config, path, io),
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

    /// Asks the gate about a command (at `checkpoint`) that the protocol would carry out, and
    /// does what only the gate decides: a hang-up, a close with its `421`, the start of a
    /// pause. `sender` is the sender the command gives (`MAIL`), `recipient` the recipient
    /// (`RCPT`).
    #[inline]
    fn ask_gate_about<S: MessageSink, G: Gate>(
        &mut self,
        checkpoint: Checkpoint,
        sender: Option<&[u8]>,
        recipient: &[u8],
        io: &mut Io<'_, '_, S, G>,
    ) -> Gated {
        match self.ask_gate(checkpoint, sender, recipient, io) {
            Decision::Proceed => Gated::Proceed,
            Decision::Refuse(reply) => Gated::Refuse(reply),
            Decision::Hangup => {
                self.on_disconnect(io.sink);
                Gated::Ended
            }
            Decision::Close(reply) => {
                self.close_injected(reply, io);
                Gated::Ended
            }
            Decision::Pause(then) => {
                io.pause_here();
                then.map_or(Gated::Proceed, Gated::Refuse)
            }
        }
    }

    /// [`Session::ask_gate_about`] for a command other than `BDAT`: true when it is to be
    /// carried out; otherwise the gate's answer was given. A refusal leaves the state as it
    /// was (RFC 5321 §4.1.4); a refused `RCPT` counts as a refused recipient for `DATA` (554,
    /// not 503: RFC 2920 §3.1 wants a pipelining client told there was no valid recipient).
    /// Injected refusals do not count toward the error cap: the client did nothing wrong.
    fn gate_passes<S: MessageSink, G: Gate>(
        &mut self,
        checkpoint: Checkpoint,
        sender: Option<&[u8]>,
        recipient: &[u8],
        io: &mut Io<'_, '_, S, G>,
    ) -> bool {
        match self.ask_gate_about(checkpoint, sender, recipient, io) {
            Gated::Proceed => true,
            Gated::Refuse(reply) => {
                if checkpoint == Checkpoint::Rcpt {
                    self.envelope.recipients_refused += 1;
                }
                self.push_fault_reply(reply, io);
                false
            }
            Gated::Ended => false,
        }
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

    fn on_mail<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        path: &[u8],
        params: MailParams,
        io: &mut Io<'_, '_, S, G>,
    ) {
        let policy = config.security;
        let refusal = match self.stage {
            Stage::Connected => Some(reply::NEED_HELO),
            Stage::MailGiven => Some(reply::NESTED_MAIL),
            // RFC 3207 §4: a server may demand TLS before any transaction.
            Stage::Greeted if policy.require_tls && !self.tls_active => Some(reply::MUST_STARTTLS),
            // RFC 4954 §6: 530 when authentication is required.
            Stage::Greeted if policy.auth_required && !self.envelope.authenticated => {
                Some(reply::AUTH_REQUIRED)
            }
            // RFC 4954 §5: AUTH= is a parameter of the AUTH extension, unknown without it.
            Stage::Greeted if params.auth && !self.auth_offered(config) => {
                Some(reply::command_error(CommandError::UnknownParameter))
            }
            Stage::Chunking | Stage::ChunkingFailed => Some(reply::NOT_DURING_BDAT),
            // RFC 1869 §4.5 (HELO means no extensions): parameters are an error.
            Stage::Greeted if params.any && !self.envelope.esmtp => Some(reply::PARAMS_AFTER_HELO),
            // RFC 6531 §3.5: a UTF-8 address needs the SMTPUTF8 parameter.
            Stage::Greeted if !path.is_ascii() && !params.smtputf8 => {
                Some(reply::SENDER_NEEDS_SMTPUTF8)
            }
            // RFC 1870 §6.1: a declared size over the limit is refused at once.
            Stage::Greeted
                if params
                    .size
                    .is_some_and(|size| size > config.max_message_size) =>
            {
                Some(reply::MESSAGE_TOO_BIG)
            }
            Stage::Greeted => None,
        };
        if let Some(refusal) = refusal {
            return self.reply_error(config, refusal, io);
        }
        if !self.gate_passes(Checkpoint::Mail, Some(path), b"", io) {
            return;
        }
        self.stage = Stage::MailGiven;
        self.envelope.set_sender(path, params);
        io.out.push(reply::MAIL_OK);
    }

    fn on_rcpt<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        path: &[u8],
        io: &mut Io<'_, '_, S, G>,
    ) {
        match self.stage {
            Stage::Connected | Stage::Greeted => {
                return self.reply_error(config, reply::NEED_MAIL, io)
            }
            Stage::Chunking | Stage::ChunkingFailed => {
                return self.reply_error(config, reply::NOT_DURING_BDAT, io)
            }
            Stage::MailGiven => {}
        }
        if self.envelope.recipients().len() >= config.max_recipients {
            // RFC 5321 §4.5.3.1.10: 452, and the recipients so far stay accepted. Not counted
            // as a client error: a legitimate client with a long list hits this.
            io.out.push(reply::TOO_MANY_RECIPIENTS);
            return;
        }
        if !path.is_ascii() && !self.envelope.params.smtputf8 {
            self.envelope.recipients_refused += 1;
            return self.reply_error(config, reply::RECIPIENT_NEEDS_SMTPUTF8, io);
        }
        if !self.gate_passes(Checkpoint::Rcpt, None, path, io) {
            return;
        }
        self.envelope.add_recipient(path);
        io.out.push(reply::RCPT_OK);
    }

    /// The reply for DATA/BDAT when no message may start, if any.
    fn content_refusal(&self) -> Option<&'static [u8]> {
        match self.stage {
            Stage::Connected | Stage::Greeted => Some(reply::NEED_MAIL),
            Stage::MailGiven if self.envelope.recipients().is_empty() => {
                Some(if self.envelope.recipients_refused > 0 {
                    reply::NO_VALID_RECIPIENTS
                } else {
                    reply::NEED_RCPT
                })
            }
            Stage::MailGiven | Stage::Chunking => None,
            Stage::ChunkingFailed => Some(reply::MESSAGE_TOO_BIG),
        }
    }

    /// Whether AUTH is offered on this connection now (RFC 4954 §3).
    fn auth_offered(&self, config: &SessionConfig) -> bool {
        let policy = config.security;
        policy.auth && (self.tls_active || policy.auth_plaintext)
    }

    /// `STARTTLS` (RFC 3207 §4): `220`, then the caller starts TLS.
    fn on_starttls<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        io: &mut Io<'_, '_, S, G>,
    ) {
        let refusal = if !config.security.starttls {
            Some(reply::command_error(CommandError::NotImplemented))
        } else if self.tls_active {
            Some(reply::TLS_ALREADY_ACTIVE)
        } else {
            match self.stage {
                Stage::MailGiven | Stage::Chunking | Stage::ChunkingFailed => {
                    Some(reply::NOT_IN_TRANSACTION)
                }
                Stage::Connected | Stage::Greeted => None,
            }
        };
        if let Some(refusal) = refusal {
            return self.reply_error(config, refusal, io);
        }
        io.out.push(reply::READY_TO_START_TLS);
        self.mode = Mode::StartingTls;
    }

    /// `AUTH mechanism [initial-response]` (RFC 4954 §4).
    fn on_auth<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        mechanism: &[u8],
        initial: Option<&[u8]>,
        io: &mut Io<'_, '_, S, G>,
    ) {
        use crate::proto::sasl::Mechanism;
        let policy = config.security;
        let refusal = if !policy.auth {
            Some(reply::command_error(CommandError::NotImplemented))
        } else if self.stage == Stage::Connected || !self.envelope.esmtp {
            Some(reply::NEED_EHLO)
        } else if self.envelope.authenticated {
            Some(reply::ALREADY_AUTHENTICATED)
        } else if self.stage != Stage::Greeted {
            Some(reply::NOT_IN_TRANSACTION)
        } else if policy.require_tls && !self.tls_active {
            Some(reply::MUST_STARTTLS)
        } else if !self.auth_offered(config) {
            Some(reply::AUTH_NEEDS_TLS)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return self.reply_error(config, refusal, io);
        }
        let Some(mechanism) = Mechanism::from_name(mechanism) else {
            return self.reply_error(config, reply::AUTH_UNKNOWN_MECHANISM, io);
        };
        self.wipe_credentials();
        let step = match mechanism {
            Mechanism::Plain => AuthStep::Plain,
            Mechanism::Login => AuthStep::LoginUser,
        };
        match initial {
            Some(response) => self.on_auth_response(config, step, response, true, io),
            None => {
                io.out.push(match step {
                    AuthStep::Plain => reply::PLAIN_CHALLENGE,
                    AuthStep::LoginUser | AuthStep::LoginPassword => reply::LOGIN_USERNAME,
                });
                self.mode = Mode::AuthResponse(step);
            }
        }
    }

    /// One client response in an AUTH exchange: the next challenge, a refusal, or complete
    /// credentials for the caller to check ([`Mode::AwaitingAuth`]).
    fn on_auth_response<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        step: AuthStep,
        line: &[u8],
        initial: bool,
        io: &mut Io<'_, '_, S, G>,
    ) {
        use crate::proto::sasl::{decode_response, is_acceptable_user, split_plain, Response};
        self.mode = Mode::Command;
        let credentials = self.credentials.get_or_insert_with(Box::default);
        let refusal = match decode_response(line, initial, &mut credentials.decoded) {
            Response::Cancel => Some(reply::AUTH_CANCELLED),
            Response::Undecodable => Some(reply::AUTH_UNDECODABLE),
            Response::Decoded => match step {
                AuthStep::Plain => match split_plain(&credentials.decoded) {
                    None => Some(reply::AUTH_UNDECODABLE),
                    Some((authzid, user, password)) => {
                        // Acting for someone else (an authorization identity other than
                        // the user) is not supported: the attempt fails like a wrong password
                        // (and is decided like one, by the caller, in the same time).
                        let valid =
                            (authzid.is_empty() || authzid == user) && is_acceptable_user(user);
                        credentials.user.extend_from_slice(user);
                        credentials.password.extend_from_slice(password);
                        credentials.refused = !valid;
                        None
                    }
                },
                AuthStep::LoginUser => {
                    // A user name we would not keep still gets the password challenge: the
                    // reply to a user name never tells whether it could exist.
                    credentials.user.extend_from_slice(&credentials.decoded);
                    credentials.refused = !is_acceptable_user(&credentials.user);
                    crate::proto::sasl::wipe(&mut credentials.decoded);
                    io.out.push(reply::LOGIN_PASSWORD);
                    self.mode = Mode::AuthResponse(AuthStep::LoginPassword);
                    return;
                }
                AuthStep::LoginPassword => {
                    credentials.password.extend_from_slice(&credentials.decoded);
                    credentials.refused |= credentials.password.is_empty();
                    None
                }
            },
        };
        crate::proto::sasl::wipe(&mut credentials.decoded);
        match refusal {
            None => self.mode = Mode::AwaitingAuth,
            Some(refusal) => {
                self.wipe_credentials();
                self.reply_error(config, refusal, io);
            }
        }
    }

    fn on_data<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        io: &mut Io<'_, '_, S, G>,
    ) {
        let refusal = match self.stage {
            // RFC 3030 §2: DATA may not follow BDAT in one transaction.
            Stage::Chunking | Stage::ChunkingFailed => Some(reply::DATA_AFTER_BDAT),
            // RFC 3030 §3: BINARYMIME content cannot be dot-stuffed text.
            Stage::MailGiven if self.envelope.params.body == Some(Body::BinaryMime) => self
                .content_refusal()
                .or(Some(reply::BINARYMIME_NEEDS_BDAT)),
            Stage::Connected | Stage::Greeted | Stage::MailGiven => self.content_refusal(),
        };
        if let Some(refusal) = refusal {
            if refusal == reply::NO_VALID_RECIPIENTS {
                // A transaction that ends here is a message attempt too: the log hears it.
                let envelope = self.envelope.view(Transfer::Data);
                io.sink.on_outcome(Some(&envelope), 0, refusal);
            }
            return self.reply_error(config, refusal, io);
        }
        if !self.gate_passes(Checkpoint::Data, None, b"", io) {
            return;
        }
        self.start_message(Transfer::Data, io.sink);
        self.mode = Mode::Data(DataTransfer {
            scanner: DataScanner::new(),
            size: 0,
            too_big: false,
        });
        io.out.push(reply::DATA_GO_AHEAD);
    }
}
