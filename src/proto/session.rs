//! The SMTP session state machine: bytes in, replies and sink calls out. No I/O, no clock.
//!
//! What it does: frame the input (command lines, message data, BDAT chunks), apply the command
//! sequence rules of RFC 5321 §4.1.4 and §3.3 and of the extensions we advertise, write every
//! reply into the caller's output buffer, and stream message content into a [`Sink`].
//! [`Session::on_input`] processes *every* complete command in the input, in order (RFC 2920
//! §3.1: a pipelining server must not lose input), so the caller can flush all the replies of
//! one read with one write (RFC 2920 §3.2).
//!
//! What it does not do: read or write sockets, keep time (the server calls [`Session::on_timeout`]
//! when a deadline passes), or own message storage.
//!
//! The state is split in two on purpose. [`Mode`] says how the next bytes are framed (command
//! line, overlong line being skipped, DATA content, BDAT octets, nothing more); [`Stage`] says
//! where the mail transaction stands. They are independent: a line skipped for being too long
//! in the middle of a transaction leaves the transaction as it was (RFC 5321 §4.1.4: a failed
//! command changes no state). Each is one enum whose variants own their data; transitions are
//! in `match`es with no catch-all arm.
//!
//! Memory: the input is borrowed, never copied; the envelope is kept in a few buffers that
//! are cleared, not freed, between messages, so after warm-up a session allocates nothing.

use super::command::{parse_command, Body, Command, CommandError, MailParams};
use super::data::DataScanner;
use super::line::{find_line_end, next_line, LineError, Status};
use super::reply::{self, Banner};
use crate::fault::{FaultAction, FaultContext, FaultPoint};
use crate::sink::{Envelope, Sink, Transfer, Verdict};
use std::time::Duration;

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
    /// What to do with bare CR / bare LF in message content.
    pub bare_lf: BareLfPolicy,
}

impl SessionConfig {
    /// Refused BDAT octets read and thrown away before the connection is closed instead.
    fn max_discard(&self) -> u64 {
        self.max_message_size
            .saturating_add(self.max_message_size / 2)
    }
}

/// How the next input bytes are framed.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Reading command lines.
    Command,
    /// Skipping the rest of an overlong command line; `saw_cr` tells whether the last byte
    /// skipped was a CR (the line end may straddle two reads).
    SkippingLongLine { saw_cr: bool },
    /// Reading DATA content.
    Data(DataTransfer),
    /// Reading the octets of a BDAT chunk.
    Chunk(ChunkTransfer),
    /// The sink is storing a complete message elsewhere; its final reply (and everything the
    /// client pipelined behind it) waits for [`Session::on_store_complete`]. RFC 5321
    /// §4.1.1.4: `250` means the receiver has taken responsibility, so it cannot come sooner.
    AwaitingStore {
        /// The message's content octets, counted once it is stored.
        size: u64,
    },
    /// The session is over; input is ignored.
    Closed,
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

/// Progress through one BDAT chunk. RFC 3030 §2: the octets are always consumed before any
/// reply, also when the chunk is refused, or framing would be lost.
#[derive(Debug, Clone, Copy)]
struct ChunkTransfer {
    /// Octets of the chunk still to come.
    remaining: u64,
    /// The chunk size as announced.
    size: u64,
    /// Whether the chunk was `BDAT n LAST`.
    last: bool,
    /// `None` to store the octets; `Some(reply)` to drop them and refuse the chunk.
    refusal: Option<&'static [u8]>,
    /// The refusal was injected by a fault rule (it does not count as a client error).
    injected: bool,
}

/// Where the mail transaction stands (RFC 5321 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// No HELO/EHLO yet.
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
#[derive(Debug)]
pub struct Session {
    /// Framing of the next bytes.
    mode: Mode,
    /// The transaction's progress.
    stage: Stage,
    /// Whether the client greeted with EHLO (and may use extensions).
    esmtp: bool,
    /// The HELO/EHLO argument.
    helo: Vec<u8>,
    /// The reverse path of the open transaction.
    sender: Vec<u8>,
    /// The MAIL parameters of the open transaction.
    params: MailParams,
    /// Accepted recipients, back to back.
    recipient_bytes: Vec<u8>,
    /// End offset of each recipient in `recipient_bytes`.
    recipient_ends: Vec<u32>,
    /// Recipients refused in this transaction (for `554` versus `503` on DATA, RFC 5321 §3.3).
    recipients_refused: u32,
    /// BDAT content octets accepted in this transaction (RFC 3030 + RFC 1870 size check).
    chunked_size: u64,
    /// Refused BDAT octets thrown away since the last accepted message.
    discarded: u64,
    /// Whether the sink has an open message (started, neither ended nor aborted).
    message_open: bool,
    /// Failed commands so far.
    errors: u32,
    /// Commands processed (for the server's per-command deadline).
    commands: u64,
    /// The server is shutting down: close as soon as no transaction is open.
    draining: bool,
    /// Messages accepted (answered `250`) since the server last took the counters.
    accepted_messages: u64,
    /// Content octets of those messages.
    accepted_bytes: u64,
    /// A fault rule delays the output: `(offset in the output buffer, duration)`. Output from
    /// the offset on waits, and no input is processed, until [`Session::release_hold`].
    hold: Option<(usize, Duration)>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A new session. The caller sends [`Session::greeting`] first.
    pub fn new() -> Session {
        Session {
            mode: Mode::Command,
            stage: Stage::Connected,
            esmtp: false,
            helo: Vec::new(),
            sender: Vec::new(),
            params: MailParams::default(),
            recipient_bytes: Vec::new(),
            recipient_ends: Vec::new(),
            recipients_refused: 0,
            chunked_size: 0,
            discarded: 0,
            message_open: false,
            errors: 0,
            commands: 0,
            draining: false,
            accepted_messages: 0,
            accepted_bytes: 0,
            hold: None,
        }
    }

    /// Appends the `220` greeting (RFC 5321 §4.2, §3.1).
    pub fn greeting_into(&self, config: &SessionConfig, out: &mut Vec<u8>) {
        out.extend_from_slice(&config.banner.greeting);
    }

    /// Whether the session has ended (after QUIT, a closing `421`/`221`, or a framing error):
    /// flush the output, then close the connection.
    pub fn is_closed(&self) -> bool {
        matches!(self.mode, Mode::Closed)
    }

    /// Whether message content (DATA or BDAT octets) is being received, when the server
    /// applies its minimum data rate instead of the per-command deadline.
    pub fn in_message_content(&self) -> bool {
        matches!(self.mode, Mode::Data(_) | Mode::Chunk(_))
    }

    /// Whether the session waits for its sink to report a stored message (and so consumes
    /// no input: the server should stop reading until [`Session::on_store_complete`]).
    pub fn is_awaiting_store(&self) -> bool {
        matches!(self.mode, Mode::AwaitingStore { .. })
    }

    /// The sink reports the outcome of the message it answered [`Verdict::Pending`] for:
    /// appends `250` or `451 4.3.0` and resumes reading commands. The caller then presents
    /// the input it kept again. Ignored when the session is not waiting (it timed out or
    /// closed meanwhile).
    pub fn on_store_complete<S: Sink>(&mut self, stored: bool, out: &mut Vec<u8>, sink: &mut S) {
        let Mode::AwaitingStore { size } = self.mode else {
            return;
        };
        self.mode = Mode::Command;
        let reply = if stored {
            self.count_accepted(size);
            reply::MESSAGE_ACCEPTED
        } else {
            reply::STORE_FAILED
        };
        out.extend_from_slice(reply);
        sink.on_outcome(None, size, reply);
        self.close_if_draining(out, sink);
    }

    /// The output hold a fault rule asked for: output from this offset of the caller's
    /// buffer waits this long (and input waits too).
    pub fn held(&self) -> Option<(usize, Duration)> {
        self.hold
    }

    /// Holds output from `from` for `duration` (the server uses it for a delayed greeting).
    pub fn hold_output(&mut self, from: usize, duration: Duration) {
        self.hold = Some((from, duration));
    }

    /// The hold is over: output may go and input is processed again.
    pub fn release_hold(&mut self) {
        self.hold = None;
    }

    /// Commands processed so far; a change means the client made progress.
    pub fn commands_processed(&self) -> u64 {
        self.commands
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

    /// Processes `input`, appending replies to `out` and content to `sink`. Returns how many
    /// bytes were consumed: everything except an incomplete command line, which is always
    /// shorter than `config.max_line_len`. The caller keeps those bytes and presents them
    /// again, followed by more input.
    pub fn on_input<S: Sink>(
        &mut self,
        config: &SessionConfig,
        input: &[u8],
        out: &mut Vec<u8>,
        sink: &mut S,
    ) -> usize {
        let mut pos = 0;
        loop {
            if self.hold.is_some() {
                return pos;
            }
            match self.mode {
                Mode::Closed => return input.len(),
                Mode::AwaitingStore { .. } => return pos,
                Mode::Command => {
                    match next_line(&input[pos..], config.max_line_len) {
                        Ok(Status::Complete { line, consumed }) => {
                            pos += consumed;
                            self.commands += 1;
                            self.on_command_line(config, line, out, sink);
                            self.close_if_draining(out, sink);
                        }
                        Ok(Status::Partial) => return pos,
                        // RFC 5321 §4.5.3.1.4: too long. Drop it up to its CR LF, then reply.
                        Err(LineError::TooLong) => {
                            self.mode = Mode::SkippingLongLine { saw_cr: false };
                        }
                    }
                }
                Mode::SkippingLongLine { saw_cr } => {
                    let rest = &input[pos..];
                    match find_line_end(rest, saw_cr) {
                        Some(end) => {
                            pos += end;
                            self.commands += 1;
                            self.mode = Mode::Command;
                            self.reply_error(config, reply::LINE_TOO_LONG, out, sink);
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
                    let scan = transfer.scanner.scan(&input[pos..], |piece| {
                        transfer.size += piece.len() as u64;
                        if transfer.size > max {
                            transfer.too_big = true;
                        } else if message_open {
                            sink.on_message_data(piece);
                        }
                    });
                    pos += scan.consumed;
                    if scan.done {
                        self.commands += 1;
                        self.mode = Mode::Command;
                        self.on_data_end(config, transfer, out, sink);
                        self.close_if_draining(out, sink);
                    } else {
                        self.mode = Mode::Data(transfer);
                        return pos;
                    }
                }
                Mode::Chunk(mut transfer) => {
                    let available = (input.len() - pos) as u64;
                    let take = transfer.remaining.min(available) as usize;
                    if take > 0 && transfer.refusal.is_none() {
                        sink.on_message_data(&input[pos..pos + take]);
                    }
                    pos += take;
                    transfer.remaining -= take as u64;
                    if transfer.remaining > 0 {
                        self.mode = Mode::Chunk(transfer);
                        return pos;
                    }
                    self.mode = Mode::Command;
                    self.on_chunk_end(config, transfer, out, sink);
                    self.close_if_draining(out, sink);
                }
            }
        }
    }

    /// The server's deadline for this session passed: reply `reply` (a `421`) and close.
    pub fn on_timeout<S: Sink>(&mut self, reply: &'static [u8], out: &mut Vec<u8>, sink: &mut S) {
        if !self.is_closed() {
            self.close_with(reply, out, sink);
        }
    }

    /// The server is shutting down. An idle session gets `421 4.3.2` now; one with a
    /// transaction open may finish it and gets the `421` after its final reply.
    pub fn on_shutdown<S: Sink>(&mut self, out: &mut Vec<u8>, sink: &mut S) {
        self.draining = true;
        if !self.is_closed() && self.is_idle() {
            self.close_with(reply::SHUTTING_DOWN, out, sink);
        }
    }

    /// The connection is gone: a message in progress is abandoned (never accepted).
    pub fn on_disconnect<S: Sink>(&mut self, sink: &mut S) {
        self.abort_message(sink);
        self.mode = Mode::Closed;
    }

    /// No transaction is open and commands are being read.
    fn is_idle(&self) -> bool {
        matches!(self.mode, Mode::Command | Mode::SkippingLongLine { .. })
            && matches!(self.stage, Stage::Connected | Stage::Greeted)
    }

    /// During shutdown, closes the session once its transaction is over.
    fn close_if_draining<S: Sink>(&mut self, out: &mut Vec<u8>, sink: &mut S) {
        if self.draining && !self.is_closed() && self.is_idle() {
            self.close_with(reply::SHUTTING_DOWN, out, sink);
        }
    }

    fn close_with<S: Sink>(&mut self, reply: &'static [u8], out: &mut Vec<u8>, sink: &mut S) {
        self.abort_message(sink);
        out.extend_from_slice(reply);
        self.mode = Mode::Closed;
    }

    /// Appends a 4xx/5xx reply to a command and applies the error cap.
    fn reply_error<S: Sink>(
        &mut self,
        config: &SessionConfig,
        reply: &'static [u8],
        out: &mut Vec<u8>,
        sink: &mut S,
    ) {
        out.extend_from_slice(reply);
        self.errors += 1;
        if self.errors >= config.max_errors {
            self.close_with(reply::TOO_MANY_ERRORS, out, sink);
        }
    }

    fn envelope(&self, transfer: Transfer) -> Envelope<'_> {
        Envelope {
            helo: &self.helo,
            sender: &self.sender,
            params: self.params,
            recipient_bytes: &self.recipient_bytes,
            recipient_ends: &self.recipient_ends,
            transfer,
            esmtp: self.esmtp,
        }
    }

    fn start_message<S: Sink>(&mut self, transfer: Transfer, sink: &mut S) {
        sink.on_message_start(&self.envelope(transfer));
        self.message_open = true;
    }

    fn abort_message<S: Sink>(&mut self, sink: &mut S) {
        if self.message_open {
            self.message_open = false;
            sink.on_message_abort();
        }
    }

    /// Ends the transaction (RFC 5321 §4.1.1.5 for RSET; also after the final reply).
    fn reset_transaction<S: Sink>(&mut self, sink: &mut S) {
        self.abort_message(sink);
        self.sender.clear();
        self.params = MailParams::default();
        self.recipient_bytes.clear();
        self.recipient_ends.clear();
        self.recipients_refused = 0;
        self.chunked_size = 0;
        self.stage = match self.stage {
            Stage::Connected => Stage::Connected,
            Stage::Greeted | Stage::MailGiven | Stage::Chunking | Stage::ChunkingFailed => {
                Stage::Greeted
            }
        };
    }

    /// Ends an accepted-or-refused message: the final reply, then a clean transaction.
    fn finish_message<S: Sink>(
        &mut self,
        transfer: Transfer,
        size: u64,
        accept: bool,
        refusal: &'static [u8],
        out: &mut Vec<u8>,
        sink: &mut S,
    ) {
        if accept && self.message_open {
            let context = self.fault_context(&self.sender, b"");
            match sink.fault(FaultPoint::Eod, &context) {
                None => {}
                Some(FaultAction::Reply(reply)) => {
                    return self.end_message_with(transfer, size, reply, out, sink);
                }
                Some(FaultAction::Disconnect) => {
                    sink.on_outcome(Some(&self.envelope(transfer)), size, b"(disconnected)");
                    return self.on_disconnect(sink);
                }
                Some(FaultAction::Disconnect421) => {
                    sink.on_outcome(Some(&self.envelope(transfer)), size, reply::FAULT_CLOSING);
                    return self.close_with(reply::FAULT_CLOSING, out, sink);
                }
                Some(FaultAction::Delay { hold, then }) => {
                    self.hold = Some((out.len(), hold));
                    if let Some(reply) = then {
                        return self.end_message_with(transfer, size, reply, out, sink);
                    }
                }
            }
        }
        let verdict = if accept && self.message_open {
            self.message_open = false;
            sink.on_message_end(&self.envelope(transfer))
        } else {
            Verdict::Failed
        };
        let reply = match (accept, verdict) {
            (true, Verdict::Stored) => {
                self.count_accepted(size);
                reply::MESSAGE_ACCEPTED
            }
            (true, Verdict::Failed) => reply::STORE_FAILED,
            // The transaction is over either way; only the reply waits.
            (true, Verdict::Pending) => {
                self.mode = Mode::AwaitingStore { size };
                return self.reset_transaction(sink);
            }
            (false, _) => refusal,
        };
        self.end_message_with(transfer, size, reply, out, sink);
    }

    /// The final reply of a message attempt, then a clean transaction.
    fn end_message_with<S: Sink>(
        &mut self,
        transfer: Transfer,
        size: u64,
        reply: &'static [u8],
        out: &mut Vec<u8>,
        sink: &mut S,
    ) {
        out.extend_from_slice(reply);
        sink.on_outcome(Some(&self.envelope(transfer)), size, reply);
        self.reset_transaction(sink);
    }

    fn count_accepted(&mut self, size: u64) {
        self.discarded = 0;
        self.accepted_messages += 1;
        self.accepted_bytes += size;
    }

    fn on_data_end<S: Sink>(
        &mut self,
        config: &SessionConfig,
        transfer: DataTransfer,
        out: &mut Vec<u8>,
        sink: &mut S,
    ) {
        let bare = transfer.scanner.saw_bare_cr_or_lf() && config.bare_lf == BareLfPolicy::Reject;
        let refusal = if transfer.too_big {
            reply::MESSAGE_TOO_BIG
        } else {
            reply::BARE_CR_LF_IN_DATA
        };
        let accept = !transfer.too_big && !bare;
        self.finish_message(Transfer::Data, transfer.size, accept, refusal, out, sink);
    }

    fn on_chunk_end<S: Sink>(
        &mut self,
        config: &SessionConfig,
        transfer: ChunkTransfer,
        out: &mut Vec<u8>,
        sink: &mut S,
    ) {
        match transfer.refusal {
            Some(refusal) if transfer.injected => out.extend_from_slice(refusal),
            Some(refusal) => {
                if transfer.last && self.stage == Stage::ChunkingFailed {
                    // RFC 3030 §2: the refused message ends with its LAST chunk.
                    self.reset_transaction(sink);
                }
                self.reply_error(config, refusal, out, sink);
            }
            None if transfer.last => {
                let size = self.chunked_size;
                self.finish_message(
                    Transfer::Bdat,
                    size,
                    true,
                    reply::MESSAGE_ACCEPTED,
                    out,
                    sink,
                );
            }
            None => reply::chunk_received_into(transfer.size, out),
        }
    }

    fn on_command_line<S: Sink>(
        &mut self,
        config: &SessionConfig,
        line: &[u8],
        out: &mut Vec<u8>,
        sink: &mut S,
    ) {
        let command = match parse_command(line) {
            Ok(command) => command,
            Err(error) => return self.on_command_error(config, error, out, sink),
        };
        if let Some(action) = self.command_fault(&command, sink) {
            match action {
                FaultAction::Reply(reply) => return self.inject_reply(&command, reply, out, sink),
                FaultAction::Disconnect => return self.on_disconnect(sink),
                FaultAction::Disconnect421 => {
                    return self.close_with(reply::FAULT_CLOSING, out, sink)
                }
                FaultAction::Delay { hold, then } => {
                    self.hold = Some((out.len(), hold));
                    if let Some(reply) = then {
                        return self.inject_reply(&command, reply, out, sink);
                    }
                }
            }
        }
        match command {
            Command::Helo { domain } | Command::Ehlo { domain } => {
                // RFC 5321 §4.1.4: a HELO/EHLO mid-session resets the transaction like RSET.
                self.reset_transaction(sink);
                self.stage = Stage::Greeted;
                self.esmtp = matches!(command, Command::Ehlo { .. });
                self.helo.clear();
                self.helo.extend_from_slice(domain);
                out.extend_from_slice(if self.esmtp {
                    &config.banner.ehlo
                } else {
                    &config.banner.helo
                });
            }
            Command::Mail { path, params } => self.on_mail(config, path, params, out, sink),
            Command::Rcpt { path } => self.on_rcpt(config, path, out, sink),
            Command::Data => self.on_data(config, out, sink),
            Command::Bdat { size, last } => self.on_bdat(config, size, last, out, sink),
            Command::Rset => {
                self.reset_transaction(sink);
                out.extend_from_slice(reply::OK);
            }
            Command::Noop => out.extend_from_slice(reply::OK),
            Command::Vrfy => out.extend_from_slice(reply::VRFY_CANNOT),
            Command::Help => out.extend_from_slice(reply::HELP),
            Command::Quit => self.close_with(reply::BYE, out, sink),
        }
    }

    /// Asks the sink's fault rules about a command about to be carried out.
    fn command_fault<S: Sink>(&self, command: &Command<'_>, sink: &mut S) -> Option<FaultAction> {
        let (point, recipient) = match command {
            Command::Helo { .. } => (FaultPoint::Helo, &b""[..]),
            Command::Ehlo { .. } => (FaultPoint::Ehlo, &b""[..]),
            Command::Mail { .. } => (FaultPoint::Mail, &b""[..]),
            Command::Rcpt { path } => (FaultPoint::Rcpt, *path),
            Command::Data => (FaultPoint::Data, &b""[..]),
            Command::Bdat { .. } => (FaultPoint::Bdat, &b""[..]),
            Command::Rset => (FaultPoint::Rset, &b""[..]),
            Command::Noop => (FaultPoint::Noop, &b""[..]),
            Command::Quit => (FaultPoint::Quit, &b""[..]),
            Command::Vrfy | Command::Help => return None,
        };
        // MAIL's own sender is the one a `from=` pattern means.
        let sender = match command {
            Command::Mail { path, .. } => path,
            _ => &self.sender[..],
        };
        sink.fault(point, &self.fault_context(sender, recipient))
    }

    fn fault_context<'a>(&'a self, sender: &'a [u8], recipient: &'a [u8]) -> FaultContext<'a> {
        FaultContext {
            sender,
            recipient,
            accepted: &self.recipient_bytes,
            accepted_ends: &self.recipient_ends,
            // The session knows no address and keeps no clock: the sink fills these in.
            client: None,
            now: None,
        }
    }

    /// Answers a command with a fault rule's reply instead of carrying it out. A refused
    /// `BDAT` still has its octets read (RFC 3030 §2) and ends the transaction.
    fn inject_reply<S: Sink>(
        &mut self,
        command: &Command<'_>,
        reply: &'static [u8],
        out: &mut Vec<u8>,
        sink: &mut S,
    ) {
        match *command {
            Command::Bdat { size, last } => {
                self.reset_transaction(sink);
                self.mode = Mode::Chunk(ChunkTransfer {
                    remaining: size,
                    size,
                    last,
                    refusal: Some(reply),
                    injected: true,
                });
            }
            Command::Rcpt { .. } => {
                // A refused recipient, as far as DATA is concerned (554, not 503: RFC 2920
                // §3.1 wants a pipelining client told there was no valid recipient).
                self.recipients_refused += 1;
                out.extend_from_slice(reply);
            }
            _ => out.extend_from_slice(reply),
        }
    }

    fn on_command_error<S: Sink>(
        &mut self,
        config: &SessionConfig,
        error: CommandError,
        out: &mut Vec<u8>,
        sink: &mut S,
    ) {
        let reply = reply::command_error(error);
        match error {
            // Not SMTP at all, or BDAT whose octets can no longer be framed: reply and close.
            CommandError::NotSmtp | CommandError::BadBdat => self.close_with(reply, out, sink),
            CommandError::BadRecipientPath if self.stage == Stage::MailGiven => {
                self.recipients_refused += 1;
                self.reply_error(config, reply, out, sink);
            }
            CommandError::Unrecognized
            | CommandError::InvalidBytes
            | CommandError::InvalidUtf8
            | CommandError::NotImplemented
            | CommandError::MissingDomain
            | CommandError::MissingArgument
            | CommandError::UnexpectedArgument
            | CommandError::BadKeyword
            | CommandError::BadSenderPath
            | CommandError::BadRecipientPath
            | CommandError::BadParameter
            | CommandError::UnknownParameter => self.reply_error(config, reply, out, sink),
        }
    }

    fn on_mail<S: Sink>(
        &mut self,
        config: &SessionConfig,
        path: &[u8],
        params: MailParams,
        out: &mut Vec<u8>,
        sink: &mut S,
    ) {
        let refusal = match self.stage {
            Stage::Connected => Some(reply::NEED_HELO),
            Stage::MailGiven => Some(reply::NESTED_MAIL),
            Stage::Chunking | Stage::ChunkingFailed => Some(reply::NOT_DURING_BDAT),
            // RFC 1869 §4.5 (HELO means no extensions): parameters are an error.
            Stage::Greeted if params.any && !self.esmtp => Some(reply::PARAMS_AFTER_HELO),
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
            return self.reply_error(config, refusal, out, sink);
        }
        self.stage = Stage::MailGiven;
        self.sender.clear();
        self.sender.extend_from_slice(path);
        self.params = params;
        out.extend_from_slice(reply::MAIL_OK);
    }

    fn on_rcpt<S: Sink>(
        &mut self,
        config: &SessionConfig,
        path: &[u8],
        out: &mut Vec<u8>,
        sink: &mut S,
    ) {
        match self.stage {
            Stage::Connected | Stage::Greeted => {
                return self.reply_error(config, reply::NEED_MAIL, out, sink)
            }
            Stage::Chunking | Stage::ChunkingFailed => {
                return self.reply_error(config, reply::NOT_DURING_BDAT, out, sink)
            }
            Stage::MailGiven => {}
        }
        if self.recipient_ends.len() >= config.max_recipients {
            // RFC 5321 §4.5.3.1.10: 452, and the recipients so far stay accepted. Not counted
            // as a client error: a legitimate client with a long list hits this.
            out.extend_from_slice(reply::TOO_MANY_RECIPIENTS);
            return;
        }
        if !path.is_ascii() && !self.params.smtputf8 {
            self.recipients_refused += 1;
            return self.reply_error(config, reply::RECIPIENT_NEEDS_SMTPUTF8, out, sink);
        }
        self.recipient_bytes.extend_from_slice(path);
        // Recipient bytes are bounded by max_recipients * max_line_len, far below u32::MAX
        // for any sane configuration; the conversion saturates rather than wraps otherwise.
        self.recipient_ends
            .push(u32::try_from(self.recipient_bytes.len()).unwrap_or(u32::MAX));
        out.extend_from_slice(reply::RCPT_OK);
    }

    /// The reply for DATA/BDAT when no message may start, if any.
    fn content_refusal(&self) -> Option<&'static [u8]> {
        match self.stage {
            Stage::Connected | Stage::Greeted => Some(reply::NEED_MAIL),
            Stage::MailGiven if self.recipient_ends.is_empty() => {
                Some(if self.recipients_refused > 0 {
                    reply::NO_VALID_RECIPIENTS
                } else {
                    reply::NEED_RCPT
                })
            }
            Stage::MailGiven | Stage::Chunking => None,
            Stage::ChunkingFailed => Some(reply::MESSAGE_TOO_BIG),
        }
    }

    fn on_data<S: Sink>(&mut self, config: &SessionConfig, out: &mut Vec<u8>, sink: &mut S) {
        let refusal = match self.stage {
            // RFC 3030 §2: DATA may not follow BDAT in one transaction.
            Stage::Chunking | Stage::ChunkingFailed => Some(reply::DATA_AFTER_BDAT),
            // RFC 3030 §3: BINARYMIME content cannot be dot-stuffed text.
            Stage::MailGiven if self.params.body == Some(Body::BinaryMime) => self
                .content_refusal()
                .or(Some(reply::BINARYMIME_NEEDS_BDAT)),
            Stage::Connected | Stage::Greeted | Stage::MailGiven => self.content_refusal(),
        };
        if let Some(refusal) = refusal {
            return self.reply_error(config, refusal, out, sink);
        }
        self.start_message(Transfer::Data, sink);
        self.mode = Mode::Data(DataTransfer {
            scanner: DataScanner::new(),
            size: 0,
            too_big: false,
        });
        out.extend_from_slice(reply::DATA_GO_AHEAD);
    }

    fn on_bdat<S: Sink>(
        &mut self,
        config: &SessionConfig,
        size: u64,
        last: bool,
        out: &mut Vec<u8>,
        sink: &mut S,
    ) {
        let mut refusal = self.content_refusal();
        if refusal.is_none() && self.chunked_size.saturating_add(size) > config.max_message_size {
            // RFC 3030 §4.2 with RFC 1870: over the limit; this and later chunks are refused.
            refusal = Some(reply::MESSAGE_TOO_BIG);
            self.abort_message(sink);
            self.stage = Stage::ChunkingFailed;
        }
        if refusal.is_some() {
            self.discarded = self.discarded.saturating_add(size);
            if self.discarded > config.max_discard() {
                // Reading that much only to refuse it is not worth it: stop here.
                return self.close_with(reply::TOO_MUCH_DISCARDED, out, sink);
            }
        } else {
            if self.stage == Stage::MailGiven {
                self.start_message(Transfer::Bdat, sink);
                self.stage = Stage::Chunking;
            }
            self.chunked_size += size;
        }
        self.mode = Mode::Chunk(ChunkTransfer {
            remaining: size,
            size,
            last,
            refusal,
            injected: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{Envelope, Verdict};

    /// A stored message: (sender, recipients, content).
    type Stored = (Vec<u8>, Vec<Vec<u8>>, Vec<u8>);

    /// A sink that records everything, to check what the session hands over.
    #[derive(Default)]
    struct RecordingSink {
        /// Completed messages: (sender, recipients, content).
        messages: Vec<Stored>,
        current: Vec<u8>,
        open: bool,
        aborted: usize,
        fail_store: bool,
        /// Answer `Pending` and count the messages awaiting completion.
        defer_store: bool,
        pending: usize,
    }

    impl Sink for RecordingSink {
        fn on_message_start(&mut self, _: &Envelope<'_>) {
            assert!(!self.open, "message started twice");
            self.open = true;
            self.current.clear();
        }
        fn on_message_data(&mut self, piece: &[u8]) {
            assert!(self.open, "data outside a message");
            self.current.extend_from_slice(piece);
        }
        fn on_message_end(&mut self, envelope: &Envelope<'_>) -> Verdict {
            assert!(self.open);
            self.open = false;
            if self.fail_store {
                return Verdict::Failed;
            }
            if self.defer_store {
                self.pending += 1;
            }
            self.messages.push((
                envelope.sender.to_vec(),
                envelope.recipients().map(<[u8]>::to_vec).collect(),
                std::mem::take(&mut self.current),
            ));
            if self.defer_store {
                Verdict::Pending
            } else {
                Verdict::Stored
            }
        }
        fn on_message_abort(&mut self) {
            assert!(self.open, "abort without a message");
            self.open = false;
            self.aborted += 1;
        }
    }

    fn config() -> SessionConfig {
        SessionConfig {
            banner: Banner::new("mx.test", 1000),
            max_line_len: 128,
            max_message_size: 1000,
            max_recipients: 3,
            max_errors: 20,
            bare_lf: BareLfPolicy::Reject,
        }
    }

    /// Feeds `input` in pieces cut at `cuts`, carrying unconsumed bytes like the server does.
    fn run_split(
        config: &SessionConfig,
        input: &[u8],
        cuts: &[usize],
    ) -> (String, RecordingSink, Session) {
        let mut session = Session::new();
        let mut sink = RecordingSink::default();
        let mut out = Vec::new();
        session.greeting_into(config, &mut out);
        let mut carry: Vec<u8> = Vec::new();
        let mut start = 0;
        let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
        ends.sort_unstable();
        ends.push(input.len());
        for end in ends {
            if end < start {
                continue;
            }
            carry.extend_from_slice(&input[start..end]);
            let consumed = session.on_input(config, &carry, &mut out, &mut sink);
            assert!(
                carry.len() - consumed < config.max_line_len,
                "carry unbounded"
            );
            carry.drain(..consumed);
            start = end;
        }
        (String::from_utf8(out).unwrap(), sink, session)
    }

    fn session_after(input: &[u8]) -> Session {
        run_split(&config(), input, &[]).2
    }

    fn run(input: &[u8]) -> String {
        let (out, _, _) = run_split(&config(), input, &[]);
        out.strip_prefix("220 mx.test ESMTP fastsmtpd\r\n")
            .unwrap()
            .to_string()
    }

    fn ehlo(rest: &str) -> String {
        run(format!("EHLO c\r\n{rest}").as_bytes())
            .strip_prefix(std::str::from_utf8(&config().banner.ehlo).unwrap())
            .unwrap()
            .to_string()
    }

    #[test]
    fn whole_session_pipelined() {
        let input = b"EHLO client\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\nSubject: x\r\n\r\n..hi\r\n.\r\nQUIT\r\n";
        let config = config();
        let (out, sink, session) = run_split(&config, input, &[]);
        let want = format!(
            "220 mx.test ESMTP fastsmtpd\r\n{}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n",
            std::str::from_utf8(&config.banner.ehlo).unwrap()
        );
        assert_eq!(out, want);
        assert!(session.is_closed());
        assert_eq!(sink.messages.len(), 1);
        assert_eq!(sink.messages[0].0, b"a@b");
        assert_eq!(sink.messages[0].1, vec![b"c@d".to_vec(), b"e@f".to_vec()]);
        assert_eq!(sink.messages[0].2, b"Subject: x\r\n\r\n.hi\r\n");
        // The same bytes split at every point, and one byte at a time, give the same result.
        for cut in 0..input.len() {
            let (split_out, split_sink, _) = run_split(&config, input, &[cut]);
            assert_eq!(split_out, want, "cut at {cut}");
            assert_eq!(split_sink.messages, sink.messages, "cut at {cut}");
        }
        let every: Vec<usize> = (0..input.len()).collect();
        let (split_out, split_sink, _) = run_split(&config, input, &every);
        assert_eq!(split_out, want);
        assert_eq!(split_sink.messages, sink.messages);
    }

    #[test]
    fn helo_gets_one_line_and_no_parameters() {
        assert_eq!(run(b"HELO c\r\n"), "250 mx.test\r\n");
        assert_eq!(
            run(b"HELO c\r\nMAIL FROM:<a@b> SIZE=10\r\nMAIL FROM:<a@b>\r\n"),
            "250 mx.test\r\n555 5.5.4 Error: parameters not supported after HELO\r\n250 2.1.0 Ok\r\n"
        );
    }

    #[test]
    fn sequence_errors() {
        assert_eq!(
            run(b"MAIL FROM:<a@b>\r\n"),
            "503 5.5.1 Error: send HELO/EHLO first\r\n"
        );
        assert_eq!(
            ehlo("RCPT TO:<a@b>\r\n"),
            "503 5.5.1 Error: need MAIL command\r\n"
        );
        assert_eq!(ehlo("DATA\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
        assert_eq!(
            ehlo("MAIL FROM:<a@b>\r\nDATA\r\n"),
            "250 2.1.0 Ok\r\n503 5.5.1 Error: need RCPT command\r\n"
        );
        assert_eq!(
            ehlo("MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\n"),
            "250 2.1.0 Ok\r\n503 5.5.1 Error: nested MAIL command\r\n"
        );
        // All recipients refused: 554 (RFC 5321 §3.3).
        assert_eq!(
            ehlo("MAIL FROM:<a@b>\r\nRCPT TO:<x>\r\nDATA\r\n"),
            "250 2.1.0 Ok\r\n501 5.1.3 Error: bad recipient address syntax\r\n554 5.5.1 Error: no valid recipients\r\n"
        );
        // A failed command changes nothing: the transaction goes on.
        assert_eq!(
            ehlo("MAIL FROM:<a@b>\r\nFOO\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\n"),
            "250 2.1.0 Ok\r\n500 5.5.2 Error: command not recognized\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n"
        );
        // RSET ends the transaction.
        assert_eq!(
            ehlo("MAIL FROM:<a@b>\r\nRSET\r\nRCPT TO:<c@d>\r\n"),
            "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n503 5.5.1 Error: need MAIL command\r\n"
        );
        // So does a new EHLO (RFC 5321 §4.1.4).
        let config = config();
        let ehlo_reply = std::str::from_utf8(&config.banner.ehlo).unwrap();
        assert_eq!(
            ehlo("MAIL FROM:<a@b>\r\nEHLO again\r\nRCPT TO:<c@d>\r\n"),
            format!("250 2.1.0 Ok\r\n{ehlo_reply}503 5.5.1 Error: need MAIL command\r\n")
        );
    }

    #[test]
    fn simple_commands() {
        assert_eq!(
            run(b"NOOP\r\nRSET\r\nVRFY x\r\nHELP\r\nEXPN x\r\nFOO\r\nQUIT\r\nNOOP\r\n"),
            "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n252 2.5.0 Cannot VRFY user, but will accept message\r\n214 2.0.0 fastsmtpd: see RFC 5321\r\n502 5.5.1 Error: command not implemented\r\n500 5.5.2 Error: command not recognized\r\n221 2.0.0 Bye\r\n"
        );
    }

    #[test]
    fn bare_lf_in_command_is_one_line_one_reply() {
        assert_eq!(
            run(b"NOOP\nNOOP\r\nNOOP\r\n"),
            "500 5.5.2 Error: bare CR, LF or NUL in command line\r\n250 2.0.0 Ok\r\n"
        );
    }

    #[test]
    fn not_smtp_closes() {
        assert_eq!(
            run(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            "221 2.7.0 Error: this is an SMTP server, closing\r\n"
        );
    }

    #[test]
    fn overlong_line_is_skipped_and_session_stays_in_sync() {
        let config = config();
        let mut input = vec![b'N'; 1000];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let want = "220 mx.test ESMTP fastsmtpd\r\n500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n";
        for cut in [0, 1, 127, 128, 129, 999, 1000, 1001, 1002] {
            assert_eq!(run_split(&config, &input, &[cut]).0, want, "cut {cut}");
        }
        let every: Vec<usize> = (0..input.len()).collect();
        assert_eq!(run_split(&config, &input, &every).0, want);
        // A line of exactly the limit is fine; one more byte is not.
        let mut exact = b"NOOP ".to_vec();
        exact.resize(config.max_line_len - 2, b'x');
        exact.extend_from_slice(b"\r\n");
        assert_eq!(run(&exact), "250 2.0.0 Ok\r\n");
        exact.insert(5, b'x');
        assert_eq!(run(&exact), "500 5.5.2 Line too long\r\n");
    }

    #[test]
    fn error_cap_closes() {
        let input = "FOO\r\n".repeat(25);
        let out = run(input.as_bytes());
        assert_eq!(out.matches("500 5.5.2").count(), 20);
        assert!(out.ends_with("421 4.7.0 Error: too many errors, closing connection\r\n"));
    }

    #[test]
    fn recipient_limit() {
        let out = ehlo("MAIL FROM:<a@b>\r\nRCPT TO:<1@d>\r\nRCPT TO:<2@d>\r\nRCPT TO:<3@d>\r\nRCPT TO:<4@d>\r\nDATA\r\n.\r\n");
        assert_eq!(
            out,
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n452 4.5.3 Error: too many recipients\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n"
        );
    }

    #[test]
    fn size_limits() {
        assert_eq!(
            ehlo("MAIL FROM:<a@b> SIZE=1001\r\nMAIL FROM:<a@b> SIZE=1000\r\n"),
            "552 5.3.4 Error: message size exceeds fixed limit\r\n250 2.1.0 Ok\r\n"
        );
        // Oversize content: nothing said during DATA, 552 after the end, nothing stored.
        let body = "x".repeat(100) + "\r\n";
        let input = format!(
            "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n{}.\r\nNOOP\r\n",
            body.repeat(20)
        );
        let (out, sink, _) = run_split(&config(), input.as_bytes(), &[]);
        assert!(out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n552 5.3.4 Error: message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n"), "{out}");
        assert!(sink.messages.is_empty());
        assert_eq!(sink.aborted, 1);
    }

    #[test]
    fn utf8_addresses() {
        assert_eq!(
            ehlo("MAIL FROM:<j\u{f6}rg@example.org>\r\nMAIL FROM:<j\u{f6}rg@example.org> SMTPUTF8\r\nRCPT TO:<\u{e9}@example.org>\r\n"),
            "550 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
        );
        assert_eq!(
            ehlo("MAIL FROM:<a@b>\r\nRCPT TO:<\u{e9}@example.org>\r\n"),
            "250 2.1.0 Ok\r\n553 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n"
        );
    }

    #[test]
    fn bare_lf_policy() {
        let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nline\nwith bare LF\r\n.\r\nNOOP\r\n";
        let (out, sink, _) = run_split(&config(), input, &[]);
        assert!(out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n550 5.5.2 Error: bare CR or LF in message data\r\n250 2.0.0 Ok\r\n"), "{out}");
        assert!(sink.messages.is_empty());
        let keep = SessionConfig {
            bare_lf: BareLfPolicy::Keep,
            ..config()
        };
        let (out, sink, _) = run_split(&keep, input, &[]);
        assert!(
            out.ends_with("250 2.0.0 Ok: queued\r\n250 2.0.0 Ok\r\n"),
            "{out}"
        );
        assert_eq!(sink.messages[0].2, b"line\nwith bare LF\r\n");
    }

    #[test]
    fn smuggled_message_is_content() {
        // The classic smuggling attempt: `\n.\n` then a second transaction. One message, one
        // 250 (well, 550: bare LF) after the real end, no second transaction.
        let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhello\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nevil\r\n.\r\n";
        let keep = SessionConfig {
            bare_lf: BareLfPolicy::Keep,
            ..config()
        };
        let (out, sink, _) = run_split(&keep, input, &[]);
        assert!(
            out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n"),
            "{out}"
        );
        assert_eq!(sink.messages.len(), 1);
        assert_eq!(
            sink.messages[0].2,
            b"hello\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nevil\r\n"
        );
    }

    #[test]
    fn store_failure_gives_451() {
        let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n";
        let config = config();
        let mut session = Session::new();
        let mut sink = RecordingSink {
            fail_store: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        session.on_input(&config, input, &mut out, &mut sink);
        assert!(out.ends_with(b"451 4.3.0 Error: could not store message, try again later\r\n"));
    }

    #[test]
    fn pending_store_holds_the_reply_and_the_pipelined_input() {
        let config = config();
        let mut session = Session::new();
        let mut sink = RecordingSink {
            defer_store: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        let first = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\none\r\n.\r\n";
        let rest = b"MAIL FROM:<e@f>\r\nRCPT TO:<g@h>\r\nBDAT 3 LAST\r\ntwoQUIT\r\n";
        let input = [&first[..], &rest[..]].concat();
        let consumed = session.on_input(&config, &input, &mut out, &mut sink);
        // Processing stops right after the first message: its reply and the rest wait.
        assert_eq!(consumed, first.len());
        assert!(session.is_awaiting_store());
        assert!(out.ends_with(reply::DATA_GO_AHEAD));
        assert_eq!(session.on_input(&config, rest, &mut out, &mut sink), 0);
        assert_eq!(session.take_accepted(), (0, 0));

        out.clear();
        session.on_store_complete(true, &mut out, &mut sink);
        assert_eq!(out, reply::MESSAGE_ACCEPTED);
        assert_eq!(session.take_accepted(), (1, 5));
        let consumed = session.on_input(&config, rest, &mut out, &mut sink);
        assert_eq!(&rest[consumed..], b"QUIT\r\n");
        assert!(session.is_awaiting_store());

        out.clear();
        session.on_store_complete(false, &mut out, &mut sink);
        assert_eq!(out, reply::STORE_FAILED);
        assert_eq!(session.take_accepted(), (0, 0));
        session.on_input(&config, &rest[consumed..], &mut out, &mut sink);
        assert!(out.ends_with(b"221 2.0.0 Bye\r\n"));
        assert!(session.is_closed());
        assert_eq!(sink.pending, 2);
        assert_eq!(sink.aborted, 0);
    }

    #[test]
    fn timeout_while_a_store_is_pending_closes_and_ignores_the_late_outcome() {
        let config = config();
        let mut session = Session::new();
        let mut sink = RecordingSink {
            defer_store: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n";
        session.on_input(&config, input, &mut out, &mut sink);
        assert!(session.is_awaiting_store());
        out.clear();
        session.on_timeout(reply::TIMEOUT, &mut out, &mut sink);
        assert_eq!(out, reply::TIMEOUT);
        out.clear();
        session.on_store_complete(true, &mut out, &mut sink);
        assert!(out.is_empty());
        assert!(session.is_closed());
        assert_eq!(session.take_accepted(), (0, 0));
    }

    #[test]
    fn bdat_messages() {
        let input = b"EHLO c\r\nMAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\nBDAT 5\r\nhel\r\nBDAT 3 LAST\r\nlo\nQUIT\r\n";
        let config = config();
        let (out, sink, _) = run_split(&config, input, &[]);
        let ehlo_reply = std::str::from_utf8(&config.banner.ehlo).unwrap();
        let want = format!("220 mx.test ESMTP fastsmtpd\r\n{ehlo_reply}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 5 octets received\r\n250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n");
        assert_eq!(out, want);
        assert_eq!(sink.messages[0].2, b"hel\r\nlo\n");
        for cut in 0..input.len() {
            let (split_out, split_sink, _) = run_split(&config, input, &[cut]);
            assert_eq!(split_out, want, "cut {cut}");
            assert_eq!(split_sink.messages, sink.messages);
        }
        // BDAT 0 LAST ends a message.
        assert_eq!(
            ehlo("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 2\r\nhiBDAT 0 LAST\r\n"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 2 octets received\r\n250 2.0.0 Ok: queued\r\n"
        );
    }

    #[test]
    fn bdat_octets_consumed_before_any_reply() {
        // Without a transaction, the 12 octets (which look like commands) are swallowed and
        // exactly one 503 comes back.
        assert_eq!(
            ehlo("BDAT 12 LAST\r\nNOOP\r\nNOOP\r\n"),
            "503 5.5.1 Error: need MAIL command\r\n"
        );
        assert_eq!(
            run(b"BDAT 6\r\nQUIT\r\nNOOP\r\n"),
            "503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n"
        );
    }

    #[test]
    fn bdat_sequence_errors() {
        // DATA after BDAT.
        assert_eq!(
            ehlo("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1\r\nxDATA\r\nMAIL FROM:<a@b>\r\nRCPT TO:<e@f>\r\nRSET\r\nBDAT 1 LAST\r\ny"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 1 octets received\r\n503 5.5.1 Error: DATA not allowed after BDAT\r\n503 5.5.1 Error: command not allowed during BDAT\r\n503 5.5.1 Error: command not allowed during BDAT\r\n250 2.0.0 Ok\r\n503 5.5.1 Error: need MAIL command\r\n"
        );
        // BDAT after LAST has no transaction.
        assert_eq!(
            ehlo("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1 LAST\r\nxBDAT 1 LAST\r\ny"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued\r\n503 5.5.1 Error: need MAIL command\r\n"
        );
        // BINARYMIME needs BDAT.
        assert_eq!(
            ehlo("MAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n503 5.5.1 Error: BODY=BINARYMIME requires BDAT\r\n"
        );
        // Malformed BDAT closes.
        let (out, _, session) = run_split(&config(), b"EHLO c\r\nBDAT x\r\nNOOP\r\n", &[]);
        assert!(out.ends_with("501 5.5.4 Syntax: BDAT size [LAST], closing connection\r\n"));
        assert!(session.is_closed());
    }

    #[test]
    fn bdat_over_size_refuses_until_last_then_recovers() {
        let big = "x".repeat(600);
        let input = format!(
            "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 600\r\n{big}BDAT 600\r\n{big}BDAT 10 LAST\r\n0123456789MAIL FROM:<a@b>\r\n"
        );
        let (out, sink, _) = run_split(&config(), input.as_bytes(), &[]);
        assert!(out.ends_with("250 2.0.0 Ok: 600 octets received\r\n552 5.3.4 Error: message size exceeds fixed limit\r\n552 5.3.4 Error: message size exceeds fixed limit\r\n250 2.1.0 Ok\r\n"), "{out}");
        assert!(sink.messages.is_empty());
        assert_eq!(sink.aborted, 1);
        // Discarding far past the limit closes instead of reading on.
        let (out, _, session) = run_split(&config(), b"EHLO c\r\nBDAT 2000\r\n", &[]);
        assert!(
            out.ends_with("421 4.7.0 Error: too much refused message data, closing connection\r\n")
        );
        assert!(session.is_closed());
    }

    #[test]
    fn many_messages_on_one_session() {
        let mut input = b"EHLO c\r\n".to_vec();
        for i in 0..100 {
            input.extend_from_slice(
                format!("MAIL FROM:<a{i}@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nmessage {i}\r\n.\r\n")
                    .as_bytes(),
            );
        }
        let (out, sink, _) = run_split(&config(), &input, &[7, 500, 501, 2000]);
        assert_eq!(out.matches("250 2.0.0 Ok: queued").count(), 100);
        assert_eq!(sink.messages.len(), 100);
        assert_eq!(sink.messages[42].2, b"message 42\r\n");
        let mut session = session_after(&input);
        assert_eq!(
            session.take_accepted(),
            (100, sink.messages.iter().map(|m| m.2.len() as u64).sum())
        );
        assert_eq!(session.take_accepted(), (0, 0));
    }

    #[test]
    fn shutdown_lets_a_message_finish() {
        let config = config();
        let mut session = Session::new();
        let mut sink = RecordingSink::default();
        let mut out = Vec::new();
        session.on_input(
            &config,
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npart",
            &mut out,
            &mut sink,
        );
        out.clear();
        session.on_shutdown(&mut out, &mut sink);
        assert!(out.is_empty() && !session.is_closed());
        session.on_input(&config, b"\r\n.\r\nNOOP\r\n", &mut out, &mut sink);
        assert_eq!(out, b"250 2.0.0 Ok: queued\r\n421 4.3.2 Error: service shutting down, closing connection\r\n");
        assert!(session.is_closed());
        // An idle one is closed at once.
        let mut idle = Session::new();
        out.clear();
        idle.on_shutdown(&mut out, &mut sink);
        assert_eq!(out, reply::SHUTTING_DOWN);
    }

    #[test]
    fn timeout_and_disconnect_abort_the_message() {
        let config = config();
        let mut session = Session::new();
        let mut sink = RecordingSink::default();
        let mut out = Vec::new();
        session.on_input(
            &config,
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npart",
            &mut out,
            &mut sink,
        );
        out.clear();
        session.on_timeout(reply::TIMEOUT, &mut out, &mut sink);
        assert_eq!(out, reply::TIMEOUT);
        assert_eq!(sink.aborted, 1);
        let mut session = Session::new();
        session.on_input(
            &config,
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 10\r\npart",
            &mut out,
            &mut sink,
        );
        session.on_disconnect(&mut sink);
        assert_eq!(sink.aborted, 2);
        assert!(sink.messages.is_empty());
    }

    #[test]
    fn never_panics_and_keeps_carry_bounded_on_noise() {
        use proptest::prelude::*;
        let config = config();
        let alphabet = prop_oneof![
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b".".to_vec()),
            Just(b"EHLO x\r\n".to_vec()),
            Just(b"MAIL FROM:<a@b>\r\n".to_vec()),
            Just(b"RCPT TO:<c@d>\r\n".to_vec()),
            Just(b"DATA\r\n".to_vec()),
            Just(b"BDAT 3\r\n".to_vec()),
            Just(b"BDAT 2 LAST\r\n".to_vec()),
            Just(b"RSET\r\n".to_vec()),
            Just(vec![b'x'; 50]),
            Just(vec![0xff]),
        ];
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(2000));
        runner
            .run(
                &(
                    prop::collection::vec(alphabet, 0..40),
                    prop::collection::vec(0usize..400, 0..5),
                ),
                |(parts, cuts)| {
                    let input: Vec<u8> = parts.concat();
                    let whole = run_split(&config, &input, &[]);
                    let split = run_split(&config, &input, &cuts);
                    prop_assert_eq!(&whole.0, &split.0);
                    prop_assert_eq!(&whole.1.messages, &split.1.messages);
                    Ok(())
                },
            )
            .unwrap();
    }
}
