//! The client state machine of one connection, sans I/O: replies in, commands out.
//!
//! What it does: greet (EHLO, or HELO with `--helo`); with `--starttls` send `STARTTLS`
//! after the first EHLO and, once its `220` is in, ask the engine to start TLS (nothing is
//! pipelined behind `STARTTLS`: RFC 3207 §4, RFC 2920 §3.1), then say EHLO again inside TLS
//! and use that reply's extensions (RFC 3207 §4.2: what was learnt before TLS is forgotten);
//! with `--auth` authenticate after the last EHLO (RFC 4954: PLAIN with its initial
//! response, or LOGIN answering two `334` challenges) before the first transaction; run mail
//! transactions the way the workload asks (step by step, or pipelined in RFC 2920 groups: `MAIL`, every `RCPT` and
//! `DATA` in one write, the content after `354`, and the next group written right behind the
//! end-of-data dot; or whole `BDAT n LAST` transactions, several in flight), check every reply
//! against the step it answers, time each step, and finally `QUIT`. A refusal (4yz, 5yz)
//! fails the message and the session goes on; a reply that is neither the step's success nor
//! a refusal, or one nobody asked for, means the replies no longer line up with the commands:
//! the connection ends as a desync instead of both sides waiting for each other.
//!
//! What it does not do: sockets, TLS, the clock, the schedule, or files (a corpus message's
//! content goes into the [`Output`] as a reference, which the engine streams from its file). The engine owns the
//! transport: it starts the TLS handshake when [`Client::tls_requested`] says so (or at
//! connect for implicit TLS) and reports its end with [`Client::on_tls_established`]; it
//! decides when a message may start and passes `now` in.

use crate::drive::output::Output;
use crate::drive::reply::Reply;
use crate::drive::workload::{Content, Pipelining, Security, Workload};
use std::collections::VecDeque;
use std::time::Instant;

/// The steps whose replies are timed, each with its own histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// TCP connect (measured by the engine).
    Connect,
    /// The `220` greeting, from connect.
    Greeting,
    /// The TLS handshake: from `STARTTLS` written (or, for implicit TLS, from the TCP connect
    /// completed) to the handshake complete. Only completed handshakes are timed; the reply
    /// codes to `STARTTLS` are counted here.
    Tls,
    /// `EHLO`/`HELO` (both of them with STARTTLS).
    Ehlo,
    /// `AUTH` to its final reply (`235`), challenges included; the `334`s are counted here.
    Auth,
    /// `MAIL FROM`.
    Mail,
    /// Each `RCPT TO`.
    Rcpt,
    /// `DATA` to its `354`.
    Data,
    /// The end-of-data dot to its `250`: the message is accepted.
    Eod,
    /// `BDAT n LAST` with its content to its `250`: the message is accepted.
    Bdat,
    /// `RSET` after a refused transaction.
    Rset,
    /// `QUIT`.
    Quit,
    /// End to end (`--delivered-via`): from the message's clock origin (its intended send
    /// time in an open loop, its first command otherwise) to its arrival at the far sink.
    /// Not a reply: timed by the watcher (`drive::watch`) or, when the arrival came first, by the engine.
    Delivered,
}

impl Stage {
    /// Every stage, in protocol order: the order every table, chart and JSON list shows
    /// them in. `tls` comes after `greeting` and before `ehlo` as in a STARTTLS session
    /// (greeting, EHLO, STARTTLS and its handshake, EHLO again: both EHLOs share one row);
    /// with implicit TLS the handshake comes before the greeting, but one order for every
    /// run keeps tables comparable.
    pub const ALL: [Stage; 13] = [
        Stage::Connect,
        Stage::Greeting,
        Stage::Tls,
        Stage::Ehlo,
        Stage::Auth,
        Stage::Mail,
        Stage::Rcpt,
        Stage::Data,
        Stage::Eod,
        Stage::Bdat,
        Stage::Rset,
        Stage::Quit,
        Stage::Delivered,
    ];

    /// The stage's short name (used in output, tags and SLO expressions).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Tls => "tls",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "ehlo",
            Stage::Auth => "auth",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::Eod => "eod",
            Stage::Bdat => "bdat",
            Stage::Rset => "rset",
            Stage::Quit => "quit",
            Stage::Delivered => "delivered",
        }
    }

    /// Index into per-stage arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The code that means success at this stage.
    fn expected_code(self) -> u16 {
        match self {
            Stage::Connect | Stage::Greeting | Stage::Tls => 220,
            Stage::Auth => 235,
            Stage::Data => 354,
            Stage::Quit => 221,
            Stage::Ehlo
            | Stage::Mail
            | Stage::Rcpt
            | Stage::Eod
            | Stage::Bdat
            | Stage::Rset
            | Stage::Delivered => 250,
        }
    }
}

/// A message in flight on this connection.
#[derive(Debug, Clone, Copy)]
struct Message {
    /// When the schedule wanted it sent (open loop), for the corrected latency.
    intended: Option<Instant>,
    /// When its first command was written.
    started: Instant,
    /// What it carries (its size counts in the statistics).
    content: Content,
    /// Its sequence number (for address patterns).
    seq: u64,
    /// Whether `MAIL` was accepted.
    mail_ok: bool,
    /// Recipients accepted so far.
    rcpts_ok: u16,
    /// `RCPT` replies read so far (replies come in the order of the commands, RFC 5321
    /// §4.1.1.3 and RFC 2920 §3.1, so the next one answers recipient `rcpts_answered`).
    rcpts_answered: u16,
    /// Bit `n`: `RCPT` number `n` was refused (for `n` below 64).
    rcpts_refused: u64,
    /// Replies still awaited for it.
    awaiting: u16,
    /// Whether something was refused (the message will not count as accepted).
    failed: bool,
}

/// A reply we wait for.
#[derive(Debug, Clone, Copy)]
struct Expected {
    /// What it answers.
    stage: Stage,
    /// When the command went out.
    sent_at: Instant,
    /// The message it belongs to (its position in `messages` counted from `first_message`).
    message: Option<u64>,
    /// For the non-pipelined mode: the step to write once this reply arrived.
    then: Option<Step>,
}

/// A step written once the previous reply arrived (the non-pipelined mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `RCPT TO` number `n`.
    Rcpt(u16),
    /// `DATA`, or `BDAT n LAST` with the content.
    Content,
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The TLS handshake is under way in the engine's transport (implicit TLS from the
    /// start; STARTTLS after its `220`). No reply can arrive meanwhile.
    Handshake,
    /// Waiting for the greeting.
    Greeting,
    /// `EHLO` sent.
    Ehlo,
    /// `STARTTLS` sent, nothing behind it.
    StartTls,
    /// `AUTH` sent; `challenges_left` more `334`s to answer.
    Auth,
    /// Ready for transactions.
    Ready,
    /// `QUIT` sent.
    Quitting,
    /// Done (after `221`, or after an error).
    Closed,
}

/// What the engine should record after a reply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// A reply counted but not timed: the reply to `STARTTLS` (its stage is timed to the end
    /// of the handshake) and `334` challenges (the stage is timed to the final reply).
    Code {
        /// Which step it answered.
        stage: Stage,
        /// The reply code.
        code: u16,
    },
    /// A TLS handshake completed.
    Handshake {
        /// Nanoseconds from its start (`STARTTLS` written, or the TCP connect for implicit
        /// TLS) to its end.
        nanos: u64,
    },
    /// A timed reply.
    Reply {
        /// Which step it answered.
        stage: Stage,
        /// The reply code.
        code: u16,
        /// Nanoseconds from sending to the reply.
        nanos: u64,
    },
    /// A message ended (accepted or not).
    Message {
        /// Whether every step succeeded and the final reply was 250.
        accepted: bool,
        /// Its size.
        size: usize,
        /// When its first command went out.
        started: Instant,
        /// When the schedule wanted it to start (open loop only).
        intended: Option<Instant>,
        /// Its sequence number (its tag's, in the end-to-end mode).
        seq: u64,
        /// Its recipients accepted at `RCPT`.
        rcpts_ok: u16,
        /// Bit `n`: its `RCPT` number `n` was refused (for `n` below 64); the end-to-end
        /// mode awaits only the others at the far end.
        rcpts_refused: u64,
    },
}

/// Why a connection ends badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server said something we did not expect at this point, or nothing parseable.
    Desync,
    /// The server closed the session with a `421`.
    ServiceClosing,
    /// A step of the session's setup was refused: the greeting, EHLO, `STARTTLS` or `AUTH`
    /// (4yz or 5yz; the code is counted under the stage).
    Refused(Stage),
    /// The server lacks an extension we were told to use.
    MissingExtension(Extension),
}

/// An extension the workload needs from the server's EHLO reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// `STARTTLS` (`--starttls`, RFC 3207).
    StartTls,
    /// `AUTH` with the `--auth-mech` mechanism (RFC 4954).
    Auth,
    /// `CHUNKING` (`--bdat`, RFC 3030).
    Chunking,
}

/// One connection's client state.
#[derive(Debug)]
pub struct Client {
    /// Where we are.
    phase: Phase,
    /// Whether transactions are pipelined.
    pipelining: bool,
    /// Replies awaited, in order.
    expected: VecDeque<Expected>,
    /// Messages in flight, oldest first.
    messages: VecDeque<Message>,
    /// Number of the oldest message in `messages`.
    first_message: u64,
    /// Messages started on this connection.
    started: u64,
    /// Whether a message's content is waiting for its `354`.
    awaiting_354: bool,
    /// Set when the connection must end.
    failure: Option<Failure>,
    /// Whether the session runs inside TLS (the handshake completed).
    tls_active: bool,
    /// When the TLS handshake began (the stage `tls` is timed from it).
    handshake_started: Option<Instant>,
    /// `334` challenges of the AUTH exchange still to answer.
    challenges_left: u8,
    /// Whether the session reached [`Phase::Ready`] (set up: greeted, TLS, AUTH).
    was_ready: bool,
    /// Whether the server offered 8BITMIME (RFC 6152) in its last EHLO reply.
    eight_bit_mime: bool,
    /// The last reply's step and code (why a session that never got ready ended).
    last_reply: Option<(Stage, u16)>,
}

impl Client {
    /// A client for a connection whose TCP connect began at `connect_started` and completed
    /// at `connected_at`. The greeting is timed from the start of the connect (what a client
    /// waits, implicit TLS's handshake included); with implicit TLS the session starts in
    /// the handshake, timed from the connect's completion.
    pub fn new(workload: &Workload, connect_started: Instant, connected_at: Instant) -> Client {
        let mut expected = VecDeque::with_capacity(16);
        expected.push_back(Expected {
            stage: Stage::Greeting,
            sent_at: connect_started,
            message: None,
            then: None,
        });
        let implicit = workload.security == Security::Implicit;
        Client {
            phase: if implicit {
                Phase::Handshake
            } else {
                Phase::Greeting
            },
            pipelining: false,
            expected,
            messages: VecDeque::with_capacity(8),
            first_message: 0,
            started: 0,
            awaiting_354: false,
            failure: None,
            tls_active: false,
            handshake_started: implicit.then_some(connected_at),
            challenges_left: 0,
            was_ready: false,
            eight_bit_mime: false,
            last_reply: None,
        }
    }

    /// Whether the engine must run (or is running) a TLS handshake now: from the start with
    /// implicit TLS, after the `220` to `STARTTLS` otherwise. Nothing was written behind
    /// `STARTTLS`, and every reply byte after its `220` is a protocol violation (RFC 3207 §4:
    /// the server sends nothing more before the handshake).
    pub fn tls_requested(&self) -> bool {
        self.phase == Phase::Handshake
    }

    /// The engine's transport completed the TLS handshake at `now`: records its time, and
    /// after STARTTLS writes EHLO again (RFC 3207 §4.2: the session is back at the state
    /// after the greeting, so the extensions are learnt anew). With implicit TLS the
    /// greeting comes next.
    pub fn on_tls_established(
        &mut self,
        workload: &Workload,
        now: Instant,
        out: &mut Output,
        mut record: impl FnMut(Event),
    ) {
        if self.phase != Phase::Handshake {
            return self.fail(Failure::Desync);
        }
        self.tls_active = true;
        if let Some(started) = self.handshake_started.take() {
            record(Event::Handshake {
                nanos: now.saturating_duration_since(started).as_nanos() as u64,
            });
        }
        if self
            .expected
            .front()
            .is_some_and(|e| e.stage == Stage::Greeting)
        {
            self.phase = Phase::Greeting;
        } else {
            self.write_ehlo(workload, now, out);
        }
    }

    /// Whether the session was ever ready for transactions (the greeting, EHLO, TLS and AUTH
    /// all went through).
    pub fn was_ready(&self) -> bool {
        self.was_ready
    }

    /// The step and code of the last reply (`None` before the first).
    pub fn last_reply(&self) -> Option<(Stage, u16)> {
        self.last_reply
    }

    /// The step whose reply is awaited next (`Tls` during a handshake; `None`: nothing).
    pub fn awaiting(&self) -> Option<Stage> {
        if self.phase == Phase::Handshake {
            return Some(Stage::Tls);
        }
        self.expected.front().map(|e| e.stage)
    }

    /// Whether the client has finished (QUIT answered, or failed).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Why the connection failed, if it did.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
    }

    /// Whether replies (or the end of a TLS handshake) are outstanding (for the reply
    /// timeout).
    pub fn is_waiting(&self) -> bool {
        !self.expected.is_empty() || self.phase == Phase::Handshake
    }

    /// Messages started on this connection.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.messages.len()
    }

    /// Whether a new message may be written now.
    pub fn can_start(&self, workload: &Workload) -> bool {
        if self.phase != Phase::Ready || self.failure.is_some() {
            return false;
        }
        if workload.msgs_per_conn != 0 && self.started >= workload.msgs_per_conn {
            return false;
        }
        if !self.pipelining {
            // One command, one reply: not even behind an outstanding RSET (RFC 2920 §3.1:
            // no pipelining unless the server offers it).
            return self.expected.is_empty();
        }
        if workload.bdat {
            return self.messages.len() < workload.inflight;
        }
        // DATA: the next group goes out right behind the previous message's dot.
        !self.awaiting_354 && self.messages.len() < 2
    }

    /// Whether this connection has done all it will do and should say QUIT.
    pub fn should_quit(&self, workload: &Workload, no_more_work: bool) -> bool {
        self.phase == Phase::Ready
            && self.messages.is_empty()
            && (self.pipelining || self.expected.is_empty())
            && (no_more_work
                || (workload.msgs_per_conn != 0 && self.started >= workload.msgs_per_conn))
    }

    /// Writes `QUIT`.
    pub fn quit(&mut self, now: Instant, out: &mut Output) {
        out.extend_from_slice(b"QUIT\r\n");
        self.phase = Phase::Quitting;
        self.expect(Stage::Quit, now, None, None);
    }

    /// Starts a message: writes its first command(s).
    pub fn start_message(
        &mut self,
        workload: &Workload,
        seq: u64,
        content: Content,
        intended: Option<Instant>,
        now: Instant,
        out: &mut Output,
    ) {
        let number = self.first_message + self.messages.len() as u64;
        self.messages.push_back(Message {
            intended,
            started: now,
            content,
            seq,
            mail_ok: false,
            rcpts_ok: 0,
            rcpts_answered: 0,
            rcpts_refused: 0,
            awaiting: 0,
            failed: false,
        });
        self.started += 1;
        let eight_bit = self.eight_bit_mime
            && matches!(
                content,
                Content::Corpus {
                    eight_bit: true,
                    ..
                }
            );
        workload.write_mail(seq, eight_bit, out);
        if self.pipelining {
            self.expect(Stage::Mail, now, Some(number), None);
            for n in 0..workload.rcpts {
                workload.write_rcpt(seq, n, out);
                self.expect(Stage::Rcpt, now, Some(number), None);
            }
            self.write_content_command(workload, number, now, out);
        } else {
            let then = if workload.rcpts > 0 {
                Step::Rcpt(0)
            } else {
                Step::Content
            };
            self.expect(Stage::Mail, now, Some(number), Some(then));
        }
    }

    /// Handles one reply at `now`; writes any follow-up to `out`; reports what to record.
    pub fn on_reply(
        &mut self,
        workload: &Workload,
        reply: Reply,
        raw: &[u8],
        now: Instant,
        out: &mut Output,
        mut record: impl FnMut(Event),
    ) {
        if self.phase == Phase::Handshake {
            // Plaintext while TLS is being set up: the engine never hands any over.
            return self.fail(Failure::Desync);
        }
        let Some(expected) = self.expected.pop_front() else {
            if reply.code == 421 {
                // RFC 5321 §3.8: a server shutting down may say 421 at any point, on an idle
                // connection too (nothing asked): it is closing, not out of step.
                return self.fail(Failure::ServiceClosing);
            }
            // Any other reply nobody asked for.
            return self.fail(Failure::Desync);
        };
        self.last_reply = Some((expected.stage, reply.code));
        let untimed =
            expected.stage == Stage::Tls || (expected.stage == Stage::Auth && reply.code == 334);
        if untimed {
            record(Event::Code {
                stage: expected.stage,
                code: reply.code,
            });
        } else {
            let nanos = now.saturating_duration_since(expected.sent_at).as_nanos() as u64;
            record(Event::Reply {
                stage: expected.stage,
                code: reply.code,
                nanos,
            });
        }
        if reply.code == 421 {
            // RFC 5321 §3.8: the server is closing the channel.
            return self.fail(Failure::ServiceClosing);
        }
        let ok = reply.code == expected.stage.expected_code()
            || (expected.stage == Stage::Rcpt && reply.code == 251);
        match expected.stage {
            Stage::Connect | Stage::Delivered => self.fail(Failure::Desync),
            Stage::Greeting => {
                if !ok {
                    return self.fail(Failure::Refused(Stage::Greeting));
                }
                self.write_ehlo(workload, now, out);
            }
            Stage::Ehlo => {
                if !ok {
                    return self.fail(Failure::Refused(Stage::Ehlo));
                }
                self.on_ehlo(workload, raw, now, out);
            }
            Stage::Tls => {
                if !ok {
                    // 454 (TLS not available for now), 5yz, or out of step.
                    let failure = if is_refusal(reply.code) {
                        Failure::Refused(Stage::Tls)
                    } else {
                        Failure::Desync
                    };
                    return self.fail(failure);
                }
                self.phase = Phase::Handshake;
                self.handshake_started = Some(expected.sent_at);
            }
            Stage::Auth => self.on_auth_reply(workload, expected, reply.code, out),
            Stage::Quit => {
                if !ok && !is_refusal(reply.code) {
                    // RFC 5321 §4.1.1.10: QUIT is answered 221. Another success code is most
                    // likely a reply meant for an earlier command (after an extra reply, every
                    // later reply answers the wrong command; with 250s everywhere only here
                    // does it show).
                    return self.fail(Failure::Desync);
                }
                self.phase = Phase::Closed;
            }
            Stage::Mail | Stage::Rcpt | Stage::Data | Stage::Eod | Stage::Bdat | Stage::Rset => {
                if !ok && !in_step(reply.code, expected.stage) {
                    // Neither the step's success nor a refusal (a 354 to MAIL, a 250 to
                    // DATA, any 1xx): the replies no longer line up with the commands, most
                    // likely after an extra reply. Going on would send content the server
                    // reads as commands, or commands it reads as content, and both sides
                    // would wait for each other until the reply timeout.
                    return self.fail(Failure::Desync);
                }
                self.on_transaction_reply(workload, expected, ok, now, out, &mut record);
            }
        }
    }

    /// Writes `EHLO` (or `HELO` with `--helo`).
    fn write_ehlo(&mut self, workload: &Workload, now: Instant, out: &mut Output) {
        let greeting: &[u8] = if workload.helo { b"HELO " } else { b"EHLO " };
        out.extend_from_slice(greeting);
        out.extend_from_slice(workload.ehlo_name.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.phase = Phase::Ehlo;
        self.expect(Stage::Ehlo, now, None, None);
    }

    /// An accepted EHLO: `STARTTLS` if TLS is still to come (the last command of its group,
    /// RFC 2920 §3.1), else the extensions of this reply decide pipelining and CHUNKING, and
    /// `AUTH` goes out if asked for.
    fn on_ehlo(&mut self, workload: &Workload, raw: &[u8], now: Instant, out: &mut Output) {
        if workload.security == Security::StartTls && !self.tls_active {
            if workload.helo || !offers(raw, b"STARTTLS") {
                return self.fail(Failure::MissingExtension(Extension::StartTls));
            }
            out.extend_from_slice(b"STARTTLS\r\n");
            self.phase = Phase::StartTls;
            return self.expect(Stage::Tls, now, None, None);
        }
        self.eight_bit_mime = !workload.helo && offers(raw, b"8BITMIME");
        self.pipelining = match workload.pipelining {
            Pipelining::On => true,
            Pipelining::Off => false,
            Pipelining::Auto => !workload.helo && offers(raw, b"PIPELINING"),
        };
        if workload.bdat && (workload.helo || !offers(raw, b"CHUNKING")) {
            return self.fail(Failure::MissingExtension(Extension::Chunking));
        }
        if let Some(auth) = &workload.auth {
            if workload.helo || !offers_auth(raw, auth.mech.name().as_bytes()) {
                return self.fail(Failure::MissingExtension(Extension::Auth));
            }
            auth.write_command(out);
            self.challenges_left = auth.challenges();
            self.phase = Phase::Auth;
            return self.expect(Stage::Auth, now, None, None);
        }
        self.become_ready();
    }

    /// A reply in the AUTH exchange (RFC 4954 §4): a `334` challenge while one is due gets
    /// the next response (and the stage stays timed from the `AUTH` command); `235` after the
    /// last one ends it; a refusal (535, 538, 501, 504, 454, ...) fails the session's setup.
    /// Anything else (a `334` too many, a `235` too early, another code) is out of step.
    fn on_auth_reply(
        &mut self,
        workload: &Workload,
        expected: Expected,
        code: u16,
        out: &mut Output,
    ) {
        let Some(auth) = &workload.auth else {
            return self.fail(Failure::Desync);
        };
        match code {
            334 if self.challenges_left > 0 => {
                auth.write_response(auth.challenges() - self.challenges_left, out);
                self.challenges_left -= 1;
                self.expect(Stage::Auth, expected.sent_at, None, None);
            }
            235 if self.challenges_left == 0 => self.become_ready(),
            code if is_refusal(code) => self.fail(Failure::Refused(Stage::Auth)),
            _ => self.fail(Failure::Desync),
        }
    }

    /// The session is set up: transactions may start.
    fn become_ready(&mut self) {
        self.phase = Phase::Ready;
        self.was_ready = true;
    }

    /// Handles the reply to a transaction step (`MAIL` ... end of data, `RSET`): accounts it to
    /// its message, writes what follows (content after `354`, the next step without pipelining,
    /// `RSET` after a refusal that leaves a transaction open), and reports finished messages.
    fn on_transaction_reply(
        &mut self,
        workload: &Workload,
        expected: Expected,
        ok: bool,
        now: Instant,
        out: &mut Output,
        record: &mut impl FnMut(Event),
    ) {
        let Some(number) = expected.message else {
            // RSET: nothing to account.
            return;
        };
        let index = match number.checked_sub(self.first_message) {
            Some(i) if (i as usize) < self.messages.len() => i as usize,
            _ => return self.fail(Failure::Desync),
        };
        {
            let message = &mut self.messages[index];
            message.awaiting -= 1;
            match (expected.stage, ok) {
                (Stage::Mail, true) => message.mail_ok = true,
                (Stage::Rcpt, true) => {
                    message.rcpts_ok += 1;
                    message.rcpts_answered += 1;
                }
                (Stage::Rcpt, false) => {
                    if let Some(bit) = 1u64.checked_shl(u32::from(message.rcpts_answered)) {
                        message.rcpts_refused |= bit;
                    }
                    message.rcpts_answered += 1;
                }
                (_, false) => message.failed = true,
                _ => {}
            }
        }
        let message = self.messages[index];
        if expected.stage == Stage::Data {
            self.awaiting_354 = false;
            if ok {
                workload.write_data_content(message.content, message.seq, out);
                self.expect(Stage::Eod, now, Some(number), None);
            }
        }
        // A refused DATA/BDAT leaves the server's transaction open (MAIL was accepted, no
        // recipient was): reset it so the next MAIL is not a nested one.
        if matches!(expected.stage, Stage::Data | Stage::Bdat) && !ok && message.mail_ok {
            self.write_rset(now, out);
        }
        // Step by step (no pipelining): the next command goes out only now.
        match expected.then {
            None => {}
            Some(_) if message.failed => {}
            Some(Step::Rcpt(n)) => {
                workload.write_rcpt(message.seq, usize::from(n), out);
                let next = if usize::from(n) + 1 < workload.rcpts {
                    Step::Rcpt(n + 1)
                } else {
                    Step::Content
                };
                self.expect(Stage::Rcpt, now, Some(number), Some(next));
            }
            Some(Step::Content) if message.rcpts_ok > 0 => {
                self.write_content_command(workload, number, now, out);
            }
            Some(Step::Content) => {
                self.messages[index].failed = true;
                self.write_rset(now, out);
            }
        }
        let message = self.messages[index];
        if message.awaiting == 0 {
            record(Event::Message {
                accepted: !message.failed && message.rcpts_ok > 0,
                size: message.content.size(),
                started: message.started,
                intended: message.intended,
                seq: message.seq,
                rcpts_ok: message.rcpts_ok,
                rcpts_refused: message.rcpts_refused,
            });
        }
        // Forget finished messages at the front.
        while self.messages.front().is_some_and(|m| m.awaiting == 0) {
            self.messages.pop_front();
            self.first_message += 1;
        }
    }

    /// Writes `RSET` (its reply belongs to no message).
    fn write_rset(&mut self, now: Instant, out: &mut Output) {
        out.extend_from_slice(b"RSET\r\n");
        self.expect(Stage::Rset, now, None, None);
    }

    /// Writes `DATA` (content follows its `354`) or `BDAT n LAST` with the content.
    fn write_content_command(
        &mut self,
        workload: &Workload,
        number: u64,
        now: Instant,
        out: &mut Output,
    ) {
        let index = (number - self.first_message) as usize;
        let content = self.messages[index].content;
        let seq = self.messages[index].seq;
        if workload.bdat {
            workload.write_bdat(content, seq, out);
            self.expect(Stage::Bdat, now, Some(number), None);
        } else {
            out.extend_from_slice(b"DATA\r\n");
            self.awaiting_354 = true;
            self.expect(Stage::Data, now, Some(number), None);
        }
    }

    /// Queues the reply a command just written will get; a message's replies are counted so it
    /// is finished when the last one arrives.
    fn expect(&mut self, stage: Stage, sent_at: Instant, message: Option<u64>, then: Option<Step>) {
        if let Some(number) = message {
            let index = (number - self.first_message) as usize;
            self.messages[index].awaiting += 1;
        }
        self.expected.push_back(Expected {
            stage,
            sent_at,
            message,
            then,
        });
    }

    /// Ends the connection with `failure`.
    pub fn fail(&mut self, failure: Failure) {
        self.failure.get_or_insert(failure);
        self.phase = Phase::Closed;
    }
}

/// Whether `code` can answer a command of `stage` without the two being out of step: a reply
/// of the class of the stage's success code (RFC 5321 §4.2.1: the first digit), or a
/// refusal (4yz, 5yz), which any command may get.
fn in_step(code: u16, stage: Stage) -> bool {
    code / 100 == stage.expected_code() / 100 || is_refusal(code)
}

/// Whether `code` refuses a command: a transient (4yz) or permanent (5yz) negative reply.
fn is_refusal(code: u16) -> bool {
    (400..600).contains(&code)
}

/// The extension lines of an EHLO reply (RFC 5321 §4.1.1.1: one per line after the first),
/// each without its code and CR LF.
fn extension_lines(ehlo_reply: &[u8]) -> impl Iterator<Item = &[u8]> {
    ehlo_reply.split(|&b| b == b'\n').skip(1).map(|line| {
        let text = line.get(4..).unwrap_or(b"");
        text.strip_suffix(b"\r").unwrap_or(text)
    })
}

/// Whether an EHLO reply lists the extension `keyword` (keyword first on its line,
/// case-insensitive).
fn offers(ehlo_reply: &[u8], keyword: &[u8]) -> bool {
    extension_lines(ehlo_reply).any(|text| {
        let word = text.split(|&b| b == b' ').next().unwrap_or(b"");
        word.eq_ignore_ascii_case(keyword)
    })
}

/// The mechanisms of the `AUTH` line of an EHLO reply (RFC 4954 §3: `AUTH mech mech ...`;
/// also the `AUTH=mech ...` form some servers still send beside it, from before the RFC).
fn auth_mechanisms(ehlo_reply: &[u8]) -> impl Iterator<Item = &[u8]> {
    extension_lines(ehlo_reply).flat_map(|text| {
        let mut words = text.split(|&b| b == b' ' || b == b'=');
        let is_auth = words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(b"AUTH"));
        words.filter(move |w| is_auth && !w.is_empty())
    })
}

/// Whether an EHLO reply offers AUTH with `mechanism`.
fn offers_auth(ehlo_reply: &[u8], mechanism: &[u8]) -> bool {
    auth_mechanisms(ehlo_reply).any(|m| m.eq_ignore_ascii_case(mechanism))
}

/// Longest reply text a failure's description quotes.
const MAX_QUOTED: usize = 120;

/// What went wrong, for people: the failure and, where it helps, the reply that caused it
/// (`reply`: the raw bytes of the last reply handled; its last line is quoted, printable
/// ASCII only). Never contains credentials: the server's text is all that is quoted.
pub fn describe_failure(failure: Failure, workload: &Workload, reply: &[u8]) -> String {
    let last_line = reply
        .strip_suffix(b"\r\n")
        .unwrap_or(reply)
        .rsplit(|&b| b == b'\n')
        .next()
        .unwrap_or(b"");
    let quoted: String = last_line
        .iter()
        .take(MAX_QUOTED)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    let mechanism = workload.auth.as_ref().map_or("", |a| a.mech.name());
    match failure {
        Failure::Desync => format!("replies out of step with the commands (last: {quoted})"),
        Failure::ServiceClosing => format!("the server closed the session: {quoted}"),
        Failure::Refused(stage) => {
            let step = match stage {
                Stage::Greeting => "greeting".to_string(),
                Stage::Ehlo if workload.helo => "HELO".to_string(),
                Stage::Ehlo => "EHLO".to_string(),
                Stage::Tls => "STARTTLS".to_string(),
                Stage::Auth => format!("AUTH {mechanism}"),
                other => other.name().to_string(),
            };
            format!("{step} refused: {quoted}")
        }
        Failure::MissingExtension(Extension::StartTls) => {
            "the server does not offer STARTTLS in its EHLO reply".to_string()
        }
        Failure::MissingExtension(Extension::Chunking) => {
            "the server does not offer CHUNKING in its EHLO reply (needed by --bdat)".to_string()
        }
        Failure::MissingExtension(Extension::Auth) => {
            let offered: Vec<String> = auth_mechanisms(reply)
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .collect();
            if offered.is_empty() {
                format!(
                    "the server does not offer AUTH in its EHLO reply (AUTH {mechanism} asked for)"
                )
            } else {
                format!(
                    "the server does not offer AUTH {mechanism} (it offers AUTH {})",
                    offered.join(" ")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
