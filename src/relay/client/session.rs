//! The relay's SMTP client session, sans I/O: the next hop's replies in, commands and events
//! out, from the greeting to `QUIT`, with any number of transactions in between.
//!
//! What it does: [`ClientSession`] greets the next hop (`EHLO`, `HELO` when `EHLO` is not
//! recognised, RFC 5321 §4.1.4), encrypts when the TLS policy says so (`STARTTLS`, RFC 3207,
//! then `EHLO` again with everything the next hop said before forgotten, §4.2), authenticates
//! inside TLS only (AUTH PLAIN, RFC 4616; LOGIN), and carries transactions: `MAIL`, `RCPT`s and
//! `DATA` as one group when the next hop offers PIPELINING (RFC 2920), one command per reply
//! when it does not; content dot-stuffed after `354` (RFC 5321 §4.5.2) or framed as `BDAT`
//! chunks when it offers CHUNKING (RFC 3030). It keeps each recipient's outcome (accepted and
//! then delivered by the message reply, deferred by a `4yz`, failed by a `5yz`) and hands the
//! driver one [`TransactionReport`] per transaction, whatever happens to the connection.
//!
//! The contract with the driver (a future mio delivery loop, which owns the socket, TLS and
//! the clock): it hands every octet read to [`ClientSession::on_input`] (which consumes
//! complete replies and leaves a partial one for the next call), writes whatever
//! [`ClientSession::commands_into`] appends, and acts on every [`Event`] from
//! [`ClientSession::next_event`]: [`Event::StartTls`] (handshake, then
//! [`ClientSession::on_tls_established`]), [`Event::Ready`] (idle: give it a transaction with
//! [`ClientSession::start_transaction`], or end with [`ClientSession::finish`]),
//! [`Event::Content`] (feed the body through [`ClientSession::content_into`] while
//! [`ClientSession::accepts_content`]), [`Event::TransactionDone`], [`Event::Closed`] (flush
//! what is left to write, then close). It times the wait [`ClientSession::waiting_for`] names
//! (RFC 5321 §4.5.3.2's limits, [`Wait::limit`]) and says when it ran out with
//! [`ClientSession::on_timeout`], or that the connection is gone with
//! [`ClientSession::on_disconnect`]. A pipelined group can be long (a thousand `RCPT`s): the
//! driver keeps reading replies while it writes, or each end can wait for the other to read
//! (Postfix, which writes blocking, bounds its groups by the send buffer for that reason).
//! Every transaction started ends in exactly one [`Event::TransactionDone`], also when the
//! session ends under it (its pending recipients are then deferred).
//!
//! Decisions, so the driver and the notifications can rely on them:
//! - Checked before anything is sent (issue 19's decisions, no downgrading): a message larger
//!   than the next hop's `SIZE` fails every recipient with `5.3.4` (RFC 1870 §6.1); an 8-bit
//!   message toward a hop without 8BITMIME fails with `5.6.3`, an SMTPUTF8 one toward a hop
//!   without SMTPUTF8 with `5.6.7` (RFC 6531's code for it).
//! - DSN parameters (`RET`, `ENVID`, `NOTIFY`, `ORCPT`) go out only when the next hop offers
//!   DSN (RFC 3461 §4); otherwise the relay itself owes the notifications they ask for.
//! - All recipients refused: no content is sent. With PIPELINING the `DATA` already went out;
//!   RFC 2920 §3.1 says the client must still read its reply, `RSET` if it was refused, and
//!   send a single `.` if it was accepted (`354`) anyway. Postfix's client does the same
//!   (smtp_proto.c: "just send "." as per RFC 2197") and so do we: the `.` ends an empty
//!   message whose reply is read and ignored, and no recipient counts as delivered.
//! - A transaction that ends on anything but the reply to its end of data (`MAIL` refused,
//!   every recipient refused, `DATA` or a `BDAT` chunk refused) is followed by `RSET` (RFC
//!   5321 §4.1.1.5) before the session says [`Event::Ready`] again; after a message reply
//!   none is needed (§4.1.1.4: the end of data ends the transaction either way).
//! - With CHUNKING the `BDAT` chunks wait for the `RCPT` replies (RFC 3030 §2: "after all
//!   MAIL and RCPT responses are collected and processed, the message is sent using a series
//!   of BDAT commands"; and no content goes to a hop that refused every recipient); that costs
//!   nothing against `DATA`, whose `354` is a round trip too. With PIPELINING the chunks then
//!   go out without waiting; without it each `BDAT` waits for the previous one's reply, as
//!   every command does in lock-step SMTP. A refused chunk fails the message, and nothing more
//!   is sent of it (RFC 3030 §2).
//! - A `421` at any point (RFC 5321 §3.8: the service is closing) ends the session: every
//!   pending recipient is deferred with that reply. A greeting other than `2yz` ends it too.
//! - Out of sync (a [`ReplyError`], a reply when none is awaited, a `3yz` where none may come,
//!   any octet between the `220` to `STARTTLS` and the handshake) ends the session at once:
//!   pending recipients are deferred, never guessed at, and no `QUIT` is sent on a channel we
//!   no longer understand. Where the channel is sound (a refused `EHLO`/`HELO`, TLS required
//!   but not offered, AUTH refused or impossible) a `QUIT` is left to flush before closing.
//! - Credentials are never sent outside TLS: with credentials configured and no TLS (the next
//!   hop offered no STARTTLS, or refused it under `opportunistic`), the session ends with
//!   [`LocalReason::AuthWithoutTls`] and the driver defers.
//!
//! There is no event per recipient as its `RCPT` reply comes: an accepted recipient has no
//! outcome until the message reply, so the driver would only have to merge two kinds of news;
//! [`Event::TransactionDone`] carries every recipient's final outcome at once. Errors are
//! events too ([`Event::Closed`] with a reason), not a `Result` from `on_input`: the driver
//! learns of every end in one place, after the reports of what it ended.
//!
//! Memory: a transaction allocates a few small vectors (its recipients' standing, their
//! `RCPT` lines) and each kept reply its text; nothing grows with the input beyond one
//! reply's limits, which the driver's read buffer holds.
//!
//! What it does not do: touch a socket, read a clock, keep a message (the driver feeds the
//! content, in chunks, from the spool), decide to retry or bounce (the scheduler does, from
//! the outcomes), or share code with the server's session or the load generator's client.

use core::time::Duration;
use std::collections::VecDeque;

use base64::Engine as _;

use super::capabilities::Capabilities;
use super::content::{bdat_into, DotStuffer};
use super::reply::{
    next_reply, EnhancedStatus, Reply, ReplyError, MAX_REPLY_LINES, MAX_REPLY_LINE_LEN,
};
use crate::proto::dsn::{Notify, Ret};

/// The most octets of a next hop's reply text kept in a [`RemoteReply`] (lines joined by a
/// space): enough for any real rejection, and what a notification's `Diagnostic-Code` (RFC
/// 3464 §2.3.6) can carry on a few folded lines.
pub const MAX_REPLY_TEXT_LEN: usize = 512;

/// RFC 5321 §4.5.3.2.1: the initial `220` message, 5 minutes.
const GREETING_TIMEOUT_SECS: u64 = 5 * 60;
/// RFC 5321 §4.5.3.2.2 and .3: `MAIL` and `RCPT`, 5 minutes each; also used for the commands
/// §4.5.3.2 gives no figure for (`EHLO`, `STARTTLS`, `AUTH`, `RSET`, `QUIT`), as Postfix does.
const COMMAND_TIMEOUT_SECS: u64 = 5 * 60;
/// RFC 5321 §4.5.3.2.4: the `354` to `DATA`, 2 minutes.
const DATA_INITIATION_TIMEOUT_SECS: u64 = 2 * 60;
/// RFC 5321 §4.5.3.2.5: each block of content (each `BDAT` chunk's reply too), 3 minutes.
const DATA_BLOCK_TIMEOUT_SECS: u64 = 3 * 60;
/// RFC 5321 §4.5.3.2.6: the reply to the end of data, 10 minutes.
const DATA_TERMINATION_TIMEOUT_SECS: u64 = 10 * 60;
/// The TLS handshake after `220` to `STARTTLS` (RFC 5321 names none; Postfix's
/// `smtp_starttls_timeout` is 5 minutes).
const HANDSHAKE_TIMEOUT_SECS: u64 = 5 * 60;

/// When to encrypt the connection to the next hop (`--relay-tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Encrypt or do not deliver: a next hop that offers no STARTTLS, or refuses it, ends the
    /// session ([`LocalReason::TlsUnavailable`], or its reply), and the driver defers. The
    /// certificate check is the driver's (its TLS configuration).
    Required,
    /// Encrypt when STARTTLS is offered; go on in plain text when it is not, or is refused.
    Opportunistic,
    /// Never encrypt.
    Off,
}

/// AUTH credentials for the next hop (`--relay-auth USER:PASS`). `Debug` never shows the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (the authentication identity of RFC 4616).
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// What a session needs to know about us; shared by every session toward a next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The name we give in `EHLO`/`HELO` (RFC 5321 §4.1.1.1: our fully qualified domain name
    /// or an address literal). Printable ASCII without spaces.
    pub helo_name: String,
    /// When to use STARTTLS.
    pub tls: TlsPolicy,
    /// Credentials to authenticate with, inside TLS only.
    pub credentials: Option<Credentials>,
    /// The longest reply line taken from the next hop, CR LF included.
    pub max_reply_line: usize,
    /// The most lines in one reply.
    pub max_reply_lines: usize,
}

impl ClientConfig {
    /// A configuration with our name, opportunistic TLS, no credentials and the reply
    /// parser's limits ([`MAX_REPLY_LINE_LEN`], [`MAX_REPLY_LINES`]).
    pub fn new(helo_name: &str) -> ClientConfig {
        ClientConfig {
            helo_name: helo_name.to_owned(),
            tls: TlsPolicy::Opportunistic,
            credentials: None,
            max_reply_line: MAX_REPLY_LINE_LEN,
            max_reply_lines: MAX_REPLY_LINES,
        }
    }
}

/// One recipient of an [`Envelope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient<'a> {
    /// The forward path without its angle brackets (RFC 5321 §4.1.2 `Forward-path`).
    pub forward_path: &'a [u8],
    /// `NOTIFY`, passed on when the next hop offers DSN ([`Notify::ABSENT`]: none).
    pub notify: Notify,
    /// `ORCPT`'s value as received (`addr-type ";" xtext`, RFC 3461 §4.2), passed on when the
    /// next hop offers DSN.
    pub orcpt: Option<&'a [u8]>,
}

/// What a transaction sends: the envelope and what the content needs of the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The reverse path without its angle brackets; empty for the null sender `<>` (a
    /// notification, RFC 5321 §4.5.5).
    pub reverse_path: &'a [u8],
    /// The recipients, at least one; outcomes come back in this order.
    pub recipients: &'a [Recipient<'a>],
    /// The content's size in octets, as kept (before dot-stuffing): `SIZE=` (RFC 1870).
    pub size: u64,
    /// The content has octets above 127: `BODY=8BITMIME` (RFC 6152).
    pub eight_bit: bool,
    /// `BODY=BINARYMIME` (RFC 3030 §3): the content may hold any octet and lines of any
    /// length, so it goes only to a next hop offering BINARYMIME and CHUNKING (`BDAT`, never
    /// `DATA`); otherwise every recipient fails with `5.6.3` (no downgrading).
    pub binary: bool,
    /// The envelope or headers need SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// `RET`, passed on when the next hop offers DSN.
    pub ret: Option<Ret>,
    /// `ENVID`'s value as received (xtext, RFC 3461 §4.4), passed on when DSN is offered.
    pub envid: Option<&'a [u8]>,
}

/// A reply of the next hop, kept: what goes into a notification's `Diagnostic-Code` and the
/// queue's "last reply".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReply {
    /// The reply code, 200 to 559.
    pub code: u16,
    /// Its enhanced status code (RFC 3463), when it had one.
    pub enhanced: Option<EnhancedStatus>,
    /// The text of its lines joined by a space, the enhanced code left in; made printable
    /// (controls and invalid UTF-8 become `?`) and cut to [`MAX_REPLY_TEXT_LEN`] octets.
    pub text: String,
}

impl RemoteReply {
    /// Keeps a framed reply: printable, bounded, owned.
    pub fn from_reply(reply: &Reply<'_>) -> RemoteReply {
        let mut text = String::new();
        for (index, line) in reply.lines().enumerate() {
            if index > 0 {
                text.push(' ');
            }
            for chunk in line.utf8_chunks() {
                for c in chunk.valid().chars() {
                    text.push(if c.is_control() { '?' } else { c });
                }
                if !chunk.invalid().is_empty() {
                    text.push('?');
                }
            }
            if text.len() >= MAX_REPLY_TEXT_LEN {
                break;
            }
        }
        let mut end = text.len().min(MAX_REPLY_TEXT_LEN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        RemoteReply {
            code: reply.code(),
            enhanced: reply.enhanced(),
            text,
        }
    }
}

impl std::fmt::Display for RemoteReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// Why the session is out of sync with the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncError {
    /// The bytes are not an SMTP reply.
    Reply(ReplyError),
    /// A reply came when none was awaited, or a `3yz` where none may come (only `DATA` and
    /// AUTH expect one), or a `2yz` to `DATA`: the reply code.
    Unexpected(u16),
    /// Octets arrived after the `220` to `STARTTLS`, before the handshake: they would be
    /// taken as protected when they are not (the client's side of CVE-2011-0411).
    InputBeforeHandshake,
}

impl std::fmt::Display for SyncError {
    /// In words, for a kept reply and a notification's `Diagnostic-Code` (never Rust's debug
    /// text).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncError::Reply(error) => write!(f, "the next hop sent {error}"),
            SyncError::Unexpected(code) => {
                write!(f, "the next hop sent an unexpected {code} reply")
            }
            SyncError::InputBeforeHandshake => f.write_str(
                "the next hop sent octets after its 220 to STARTTLS, before the TLS handshake",
            ),
        }
    }
}

/// A reason of our own, not the next hop's reply, for an outcome or for the session's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalReason {
    /// The message is larger than the next hop's `SIZE` limit (in octets).
    TooBig {
        /// The next hop's limit.
        limit: u64,
    },
    /// An 8-bit message toward a next hop without 8BITMIME (no downgrading).
    EightBitRefused,
    /// An SMTPUTF8 message toward a next hop without SMTPUTF8 (no downgrading).
    Utf8Refused,
    /// A `BODY=BINARYMIME` message toward a next hop without BINARYMIME and CHUNKING (RFC
    /// 3030 §3: such content cannot go with `DATA`; no downgrading).
    BinaryRefused,
    /// The driver's timer for this wait ran out.
    Timeout(Wait),
    /// The session lost sync with the next hop.
    OutOfSync(SyncError),
    /// The connection closed under the session.
    ConnectionLost,
    /// TLS is required and the next hop offers no STARTTLS.
    TlsUnavailable,
    /// Credentials are configured and the connection is not encrypted.
    AuthWithoutTls,
    /// Credentials are configured and the next hop offers neither PLAIN nor LOGIN.
    AuthUnavailable,
}

impl LocalReason {
    /// The enhanced status code (RFC 3463) that stands for it in a notification.
    pub fn status(&self) -> EnhancedStatus {
        let (class, subject, detail) = match self {
            // RFC 3463 §3.4: X.3.4 message too big for system.
            LocalReason::TooBig { .. } => (5, 3, 4),
            // §3.7: X.6.3 conversion required but not supported; X.6.7 is RFC 6531's.
            LocalReason::EightBitRefused | LocalReason::BinaryRefused => (5, 6, 3),
            LocalReason::Utf8Refused => (5, 6, 7),
            // §3.5: X.4.2 bad connection.
            LocalReason::Timeout(_) | LocalReason::ConnectionLost => (4, 4, 2),
            // §3.6: X.5.0 other or undefined protocol status.
            LocalReason::OutOfSync(_) => (4, 5, 0),
            // As Postfix says it: "4.7.4 TLS is required, but was not offered".
            LocalReason::TlsUnavailable => (4, 7, 4),
            // §3.8: X.7.0 other or undefined security status.
            LocalReason::AuthWithoutTls | LocalReason::AuthUnavailable => (4, 7, 0),
        };
        EnhancedStatus {
            class,
            subject,
            detail,
        }
    }
}

impl std::fmt::Display for LocalReason {
    /// Our words for it, as a kept reply and a notification's `Diagnostic-Code` carry them
    /// after its [`LocalReason::status`] (never Rust's debug text).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalReason::TooBig { limit } => {
                write!(
                    f,
                    "message larger than the next hop's limit of {limit} octets"
                )
            }
            LocalReason::EightBitRefused => {
                f.write_str("8-bit message and the next hop lacks 8BITMIME")
            }
            LocalReason::BinaryRefused => f.write_str(
                "binary message (BODY=BINARYMIME) and the next hop lacks BINARYMIME or CHUNKING",
            ),
            LocalReason::Utf8Refused => {
                f.write_str("SMTPUTF8 message and the next hop lacks SMTPUTF8")
            }
            LocalReason::Timeout(wait) => write!(f, "timed out waiting for {wait}"),
            LocalReason::OutOfSync(error) => write!(f, "lost sync with the next hop: {error}"),
            LocalReason::ConnectionLost => f.write_str("connection to the next hop lost"),
            LocalReason::TlsUnavailable => f.write_str("TLS is required, but was not offered"),
            LocalReason::AuthWithoutTls => f.write_str("credentials are never sent without TLS"),
            LocalReason::AuthUnavailable => f.write_str("the next hop offers no usable AUTH"),
        }
    }
}

/// Why a recipient got its outcome, or why the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The next hop's reply.
    Remote(RemoteReply),
    /// Our own.
    Local(LocalReason),
}

/// What became of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next hop took responsibility (RFC 5321 §4.1.1.4: `250` to the end of data).
    Delivered,
    /// Not delivered, may be tried again (a `4yz`, or the session ended under it).
    Deferred,
    /// Not delivered, never will be (a `5yz`, or a check before sending).
    Failed,
}

/// One recipient's outcome, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Delivered, deferred or failed.
    pub verdict: Verdict,
    /// The reply (or our reason) it rests on.
    pub reason: Reason,
}

impl Outcome {
    /// The outcome a final reply gives: `2yz` delivered, `4yz` deferred, `5yz` failed.
    fn from_reply(reply: RemoteReply) -> Outcome {
        let verdict = match reply.code / 100 {
            2 => Verdict::Delivered,
            4 => Verdict::Deferred,
            _ => Verdict::Failed,
        };
        Outcome {
            verdict,
            reason: Reason::Remote(reply),
        }
    }
}

/// How one transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionReport {
    /// Each recipient's outcome, in the envelope's order.
    pub recipients: Vec<Outcome>,
    /// The message reply (to the end of data, to `BDAT LAST`, or the refusal of `DATA` or a
    /// chunk) when there was one for an accepted recipient.
    pub message: Option<RemoteReply>,
}

/// What the driver must know or do now (see the module's contract). Events queue up: one
/// read can hold several replies, so a [`Event::Ready`] or [`Event::StartTls`] may be
/// followed by [`Event::Closed`] from the same read; the call it prompted then returns
/// [`UsageError::NotNow`] and changes nothing (a message stays with the driver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `220` to STARTTLS: flush the output, run the TLS handshake, then call
    /// [`ClientSession::on_tls_established`]. No octet may be read as plain text meanwhile.
    StartTls,
    /// Idle: the session takes a transaction ([`ClientSession::start_transaction`]) or ends
    /// ([`ClientSession::finish`]).
    Ready,
    /// Send the content now: feed it through [`ClientSession::content_into`] while
    /// [`ClientSession::accepts_content`]. Without PIPELINING a `BDAT` session says this
    /// again for every chunk.
    Content,
    /// A transaction ended: every recipient's outcome.
    TransactionDone(TransactionReport),
    /// The session is over: flush what is left to write, then close. `None`: after `QUIT`.
    Closed {
        /// Why it ended early, if it did.
        error: Option<Reason>,
    },
}

/// Which of RFC 5321 §4.5.3.2's timeouts applies to what the session waits for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The greeting (§4.5.3.2.1).
    Greeting,
    /// The reply to a command outside a transaction (`EHLO`, `STARTTLS`, `AUTH`, `RSET`,
    /// `QUIT`).
    Command,
    /// The TLS handshake (the driver's).
    Handshake,
    /// The reply to `MAIL` (§4.5.3.2.2).
    Mail,
    /// The reply to a `RCPT` (§4.5.3.2.3).
    Rcpt,
    /// The `354` to `DATA` (§4.5.3.2.4).
    DataInitiation,
    /// Sending a block of content, or a `BDAT` chunk's reply (§4.5.3.2.5).
    DataBlock,
    /// The reply to the end of data or to `BDAT LAST` (§4.5.3.2.6).
    DataTermination,
}

impl std::fmt::Display for Wait {
    /// What was awaited, in words (`timed out waiting for the next hop's greeting`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Wait::Greeting => "the next hop's greeting",
            Wait::Command => "the next hop's reply to a command",
            Wait::Handshake => "the TLS handshake with the next hop",
            Wait::Mail => "the next hop's reply to MAIL",
            Wait::Rcpt => "the next hop's reply to RCPT",
            Wait::DataInitiation => "the next hop's 354 to DATA",
            Wait::DataBlock => "the next hop to take the message content",
            Wait::DataTermination => "the next hop's reply to the end of the message",
        })
    }
}

impl Wait {
    /// RFC 5321 §4.5.3.2's figure for this wait.
    pub fn limit(self) -> Duration {
        Duration::from_secs(match self {
            Wait::Greeting => GREETING_TIMEOUT_SECS,
            Wait::Command | Wait::Mail | Wait::Rcpt => COMMAND_TIMEOUT_SECS,
            Wait::Handshake => HANDSHAKE_TIMEOUT_SECS,
            Wait::DataInitiation => DATA_INITIATION_TIMEOUT_SECS,
            Wait::DataBlock => DATA_BLOCK_TIMEOUT_SECS,
            Wait::DataTermination => DATA_TERMINATION_TIMEOUT_SECS,
        })
    }
}

/// The driver called a method the session cannot take now, or gave it something it cannot
/// send. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageError {
    /// The call needs another state (a transaction while not [`Event::Ready`], a TLS
    /// handshake that was not asked for, `finish` mid-transaction).
    NotNow,
    /// Content is not awaited now ([`ClientSession::accepts_content`] is false).
    NoContentAwaited,
    /// A transaction without recipients.
    NoRecipients,
    /// An address with a control octet, an angle bracket, or (without SMTPUTF8) an octet
    /// above 127.
    BadAddress,
    /// An `ENVID` or `ORCPT` value that is not printable ASCII without spaces (xtext).
    BadParameter,
    /// The `EHLO` name is not printable ASCII without spaces.
    BadHeloName,
    /// A user name or password with a NUL (AUTH PLAIN separates them with NULs, RFC 4616 §2).
    BadCredentials,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UsageError::NotNow => "the session cannot take this call in its state",
            UsageError::NoContentAwaited => "the session awaits no content now",
            UsageError::NoRecipients => "a transaction without recipients",
            UsageError::BadAddress => "an address that cannot be sent",
            UsageError::BadParameter => "an ENVID or ORCPT that is not xtext",
            UsageError::BadHeloName => "an EHLO name that is not printable ASCII",
            UsageError::BadCredentials => "a user name or password with a NUL",
        })
    }
}

impl std::error::Error for UsageError {}

/// Where the AUTH exchange stands: which reply is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthStep {
    /// `AUTH PLAIN <initial response>` sent (RFC 4954 §4): `235` awaited.
    Plain,
    /// `AUTH LOGIN` sent: `334` (the user name prompt) awaited.
    LoginStart,
    /// The user name sent: `334` (the password prompt) awaited.
    LoginUser,
    /// The password sent: `235` awaited.
    LoginPassword,
}

/// How the content goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// After `354`, dot-stuffed, ended by `CRLF.CRLF`.
    Data(DotStuffer),
    /// In `BDAT` chunks (RFC 3030).
    Chunks,
}

/// Where a transaction's content stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Envelope replies are awaited; no content yet.
    Envelope,
    /// The driver feeds content ([`Event::Content`] was given).
    Content,
    /// Without PIPELINING, a `BDAT` chunk went out and its reply is awaited before the next.
    ChunkSent,
    /// The end of data or `BDAT LAST` went out (or a refused chunk made the rest moot): only
    /// replies are awaited.
    Ended,
    /// Every recipient was refused but `DATA` got `354`: an empty message (`.`) went out and
    /// its reply is awaited, then ignored.
    Emptied,
}

/// A command sent whose reply is awaited, in order (RFC 2920 §3.1: replies come in the order
/// of the commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// `MAIL`.
    Mail,
    /// The `RCPT` of this recipient.
    Rcpt(usize),
    /// `DATA`.
    Data,
    /// The end of data (`.`).
    DataEnd,
    /// A `BDAT` chunk; `last` for `BDAT ... LAST`.
    Bdat {
        /// The chunk was the last.
        last: bool,
    },
}

/// One recipient while its transaction lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rcpt {
    /// Its `RCPT` is unsent or unanswered.
    Waiting,
    /// `RCPT` got `2yz`; the message reply decides.
    Accepted,
    /// Decided.
    Done(Outcome),
}

/// One transaction in flight.
#[derive(Debug)]
struct Transaction {
    /// Each recipient's standing.
    rcpts: Vec<Rcpt>,
    /// The `RCPT` command lines, rendered at the start (the envelope is borrowed only then).
    rcpt_lines: Vec<u8>,
    /// Where each `RCPT` line ends in `rcpt_lines`.
    rcpt_ends: Vec<usize>,
    /// Commands sent whose replies are awaited, oldest first.
    sent: VecDeque<Sent>,
    /// `MAIL` was refused: this reply is every recipient's outcome, and later replies of the
    /// group only have to be in sync.
    mail_refused: bool,
    /// How the content goes.
    body: Body,
    /// Where the content stands.
    phase: Phase,
    /// The message reply, once known (a refused chunk's comes before the others).
    message: Option<RemoteReply>,
    /// Commands go out as one group (RFC 2920).
    pipelining: bool,
}

impl Transaction {
    /// The `RCPT` line of recipient `index`.
    fn rcpt_line(&self, index: usize) -> &[u8] {
        let start = index
            .checked_sub(1)
            .and_then(|before| self.rcpt_ends.get(before))
            .copied()
            .unwrap_or(0);
        let end = self.rcpt_ends.get(index).copied().unwrap_or(start);
        self.rcpt_lines.get(start..end).unwrap_or_default()
    }

    /// Whether some recipient's `RCPT` was accepted.
    fn any_accepted(&self) -> bool {
        self.rcpts.contains(&Rcpt::Accepted)
    }

    /// Gives every recipient still undecided (waiting or accepted) the outcome `outcome`.
    fn settle(&mut self, outcome: &Outcome) {
        for rcpt in &mut self.rcpts {
            if !matches!(rcpt, Rcpt::Done(_)) {
                *rcpt = Rcpt::Done(outcome.clone());
            }
        }
    }

    /// Gives every accepted recipient the outcome of the message reply `reply`, and keeps it.
    fn settle_message(&mut self, reply: RemoteReply) {
        let outcome = Outcome::from_reply(reply.clone());
        for rcpt in &mut self.rcpts {
            if *rcpt == Rcpt::Accepted {
                *rcpt = Rcpt::Done(outcome.clone());
            }
        }
        self.message.get_or_insert(reply);
    }

    /// The report, once every recipient is decided (an undecided one, which the state machine
    /// never leaves, counts as deferred for being out of sync rather than panicking).
    fn into_report(self) -> TransactionReport {
        let recipients = self
            .rcpts
            .into_iter()
            .map(|rcpt| match rcpt {
                Rcpt::Done(outcome) => outcome,
                Rcpt::Waiting | Rcpt::Accepted => Outcome {
                    verdict: Verdict::Deferred,
                    reason: Reason::Local(LocalReason::OutOfSync(SyncError::Unexpected(0))),
                },
            })
            .collect();
        TransactionReport {
            recipients,
            message: self.message,
        }
    }
}

/// What a reply inside a transaction leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// More replies are awaited (or the driver feeds content).
    Wait,
    /// The driver may send content now.
    Content,
    /// The transaction is over; `rset`: the next hop may still hold part of it (RFC 5321
    /// §4.1.1.5).
    Done {
        /// Send `RSET` before the next transaction.
        rset: bool,
    },
    /// The reply cannot be an answer to what was sent.
    OutOfSync,
}

/// Where the session stands. Each variant is one wait; transitions are in
/// [`ClientSession::on_reply`]'s `match`.
#[derive(Debug)]
enum State {
    /// Connected; the greeting is awaited.
    Greeting,
    /// `EHLO` sent.
    Ehlo,
    /// `HELO` sent, after `EHLO` was not recognised.
    Helo,
    /// `STARTTLS` sent.
    StartTls,
    /// `220` to `STARTTLS` came: the driver runs the handshake.
    Handshake,
    /// The AUTH exchange.
    Auth(AuthStep),
    /// Idle between transactions.
    Ready,
    /// A transaction in flight.
    Transaction(Box<Transaction>),
    /// `RSET` sent after a transaction that ended early.
    Resetting,
    /// `QUIT` sent.
    Quitting,
    /// Over; input is ignored.
    Closed,
}

/// One SMTP client session toward a next hop (see the module doc for the contract).
#[derive(Debug)]
pub struct ClientSession {
    /// Where the session stands.
    state: State,
    /// What the next hop offered in its last `EHLO` reply (nothing after `HELO`).
    offered: Capabilities,
    /// The connection is encrypted.
    tls_active: bool,
    /// Our name, when TLS, credentials, reply limits.
    config: ClientConfig,
    /// Commands to write, in order, until [`ClientSession::commands_into`] takes them.
    outbox: Vec<u8>,
    /// Events for the driver, oldest first.
    events: VecDeque<Event>,
}

impl ClientSession {
    /// A session on a fresh connection, awaiting the greeting. The `EHLO` name and credentials
    /// are checked here, once, so no command can carry a line break.
    pub fn new(config: &ClientConfig) -> Result<ClientSession, UsageError> {
        let name = config.helo_name.as_bytes();
        if name.is_empty() || !name.iter().all(|byte| byte.is_ascii_graphic()) {
            return Err(UsageError::BadHeloName);
        }
        if let Some(credentials) = &config.credentials {
            if credentials.user.contains('\0') || credentials.password.contains('\0') {
                return Err(UsageError::BadCredentials);
            }
        }
        Ok(ClientSession {
            state: State::Greeting,
            offered: Capabilities::default(),
            tls_active: false,
            config: config.clone(),
            outbox: Vec::new(),
            events: VecDeque::new(),
        })
    }

    /// What the next hop offered (after the last `EHLO`; nothing after `HELO`).
    pub fn capabilities(&self) -> &Capabilities {
        &self.offered
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls_active
    }

    /// Takes the replies at the front of `bytes` and returns how many octets it used; a
    /// partial reply at the end is left for the next call (with more octets behind it). After
    /// the session is closed, everything is used and ignored.
    pub fn on_input(&mut self, bytes: &[u8]) -> usize {
        let mut used = 0;
        loop {
            let rest = &bytes[used..];
            if rest.is_empty() || matches!(self.state, State::Closed) {
                return bytes.len();
            }
            if matches!(self.state, State::Handshake) {
                self.out_of_sync(SyncError::InputBeforeHandshake);
                return bytes.len();
            }
            match next_reply(
                rest,
                self.config.max_reply_line,
                self.config.max_reply_lines,
            ) {
                Ok(None) => return used,
                Ok(Some((reply, length))) => {
                    used += length;
                    self.on_reply(&reply);
                }
                Err(error) => {
                    self.out_of_sync(SyncError::Reply(error));
                    return bytes.len();
                }
            }
        }
    }

    /// Appends the commands to send now (with PIPELINING a whole group in one go).
    pub fn commands_into(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.outbox);
        self.outbox.clear();
    }

    /// The next thing the driver must know or do, oldest first.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// What the session waits for, and so which timeout applies; `None` when idle or closed.
    pub fn waiting_for(&self) -> Option<Wait> {
        match &self.state {
            State::Greeting => Some(Wait::Greeting),
            State::Ehlo
            | State::Helo
            | State::StartTls
            | State::Auth(_)
            | State::Resetting
            | State::Quitting => Some(Wait::Command),
            State::Handshake => Some(Wait::Handshake),
            State::Ready | State::Closed => None,
            State::Transaction(tx) => Some(match tx.sent.front() {
                Some(Sent::Mail) => Wait::Mail,
                Some(Sent::Rcpt(_)) => Wait::Rcpt,
                Some(Sent::Data) => Wait::DataInitiation,
                Some(Sent::DataEnd | Sent::Bdat { last: true }) => Wait::DataTermination,
                Some(Sent::Bdat { last: false }) | None => Wait::DataBlock,
            }),
        }
    }

    /// Whether [`ClientSession::content_into`] takes a chunk now.
    pub fn accepts_content(&self) -> bool {
        matches!(&self.state, State::Transaction(tx) if tx.phase == Phase::Content)
    }

    /// The TLS handshake asked for by [`Event::StartTls`] is done: the session forgets what
    /// the next hop offered and says `EHLO` again (RFC 3207 §4.2).
    pub fn on_tls_established(&mut self) -> Result<(), UsageError> {
        if !matches!(self.state, State::Handshake) {
            return Err(UsageError::NotNow);
        }
        self.tls_active = true;
        self.offered = Capabilities::default();
        self.send_hello(b"EHLO ");
        self.state = State::Ehlo;
        Ok(())
    }

    /// Starts a transaction; only after [`Event::Ready`]. A message the next hop cannot take
    /// (too big, 8-bit or SMTPUTF8 where not offered) is failed for every recipient without a
    /// command sent, and the session is ready again.
    pub fn start_transaction(&mut self, envelope: &Envelope<'_>) -> Result<(), UsageError> {
        if !matches!(self.state, State::Ready) {
            return Err(UsageError::NotNow);
        }
        check_envelope(envelope)?;
        if let Some(reason) = self.refusal_before_sending(envelope) {
            let outcome = Outcome {
                verdict: Verdict::Failed,
                reason: Reason::Local(reason),
            };
            self.events
                .push_back(Event::TransactionDone(TransactionReport {
                    recipients: vec![outcome; envelope.recipients.len()],
                    message: None,
                }));
            self.events.push_back(Event::Ready);
            return Ok(());
        }
        let dsn = self.offered.dsn;
        let mut rcpt_lines = Vec::new();
        let mut rcpt_ends = Vec::with_capacity(envelope.recipients.len());
        for recipient in envelope.recipients {
            rcpt_into(recipient, dsn, &mut rcpt_lines);
            rcpt_ends.push(rcpt_lines.len());
        }
        let mut tx = Transaction {
            rcpts: vec![Rcpt::Waiting; envelope.recipients.len()],
            rcpt_lines,
            rcpt_ends,
            sent: VecDeque::new(),
            mail_refused: false,
            body: if self.offered.chunking {
                Body::Chunks
            } else {
                Body::Data(DotStuffer::new())
            },
            phase: Phase::Envelope,
            message: None,
            pipelining: self.offered.pipelining,
        };
        mail_into(envelope, &self.offered, &mut self.outbox);
        tx.sent.push_back(Sent::Mail);
        if tx.pipelining {
            // RFC 2920 §3.1: MAIL, every RCPT and DATA in one group; BDAT waits for the
            // RCPT replies (see the module doc).
            self.outbox.extend_from_slice(&tx.rcpt_lines);
            tx.sent.extend((0..tx.rcpts.len()).map(Sent::Rcpt));
            if matches!(tx.body, Body::Data(_)) {
                self.outbox.extend_from_slice(b"DATA\r\n");
                tx.sent.push_back(Sent::Data);
            }
        }
        self.state = State::Transaction(Box::new(tx));
        Ok(())
    }

    /// Appends a chunk of content (dot-stuffed for `DATA`, as one `BDAT` for CHUNKING); `last`
    /// ends the content (the end of data, or `BDAT n LAST`). Only while
    /// [`ClientSession::accepts_content`]. An empty chunk that is not the last writes nothing.
    pub fn content_into(
        &mut self,
        chunk: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), UsageError> {
        let State::Transaction(tx) = &mut self.state else {
            return Err(UsageError::NoContentAwaited);
        };
        if tx.phase != Phase::Content {
            return Err(UsageError::NoContentAwaited);
        }
        out.extend_from_slice(&self.outbox);
        self.outbox.clear();
        match &mut tx.body {
            Body::Data(stuffer) => {
                stuffer.chunk_into(chunk, out);
                if last {
                    stuffer.end_into(out);
                    tx.sent.push_back(Sent::DataEnd);
                    tx.phase = Phase::Ended;
                }
            }
            Body::Chunks => {
                if chunk.is_empty() && !last {
                    return Ok(());
                }
                bdat_into(chunk, last, out);
                tx.sent.push_back(Sent::Bdat { last });
                if last {
                    tx.phase = Phase::Ended;
                } else if !tx.pipelining {
                    tx.phase = Phase::ChunkSent;
                }
            }
        }
        Ok(())
    }

    /// Ends the session politely: `QUIT`, then [`Event::Closed`] at its reply (or at a
    /// timeout or disconnect, which are then no error). Only when idle.
    pub fn finish(&mut self) -> Result<(), UsageError> {
        if !matches!(self.state, State::Ready) {
            return Err(UsageError::NotNow);
        }
        self.outbox.extend_from_slice(b"QUIT\r\n");
        self.state = State::Quitting;
        Ok(())
    }

    /// The driver's timer for [`ClientSession::waiting_for`] ran out: pending recipients are
    /// deferred and the session ends (no `QUIT`: the next hop is not answering).
    pub fn on_timeout(&mut self) {
        match self.state {
            State::Quitting => self.close(None),
            State::Closed => {}
            _ => {
                let wait = self.waiting_for().unwrap_or(Wait::Command);
                self.fail(Reason::Local(LocalReason::Timeout(wait)), false);
            }
        }
    }

    /// The connection closed (read end of file, or a write failed): pending recipients are
    /// deferred. After `QUIT` this is the normal end.
    pub fn on_disconnect(&mut self) {
        match self.state {
            State::Quitting => self.close(None),
            State::Closed => {}
            _ => self.fail(Reason::Local(LocalReason::ConnectionLost), false),
        }
    }

    /// One complete reply: the one `match` of the session's transitions.
    fn on_reply(&mut self, reply: &Reply<'_>) {
        let code = reply.code();
        if code == 421 && !matches!(self.state, State::Quitting | State::Closed) {
            // RFC 5321 §3.8: the service is closing the channel, whatever was asked.
            self.fail(Reason::Remote(RemoteReply::from_reply(reply)), false);
            return;
        }
        let class = code / 100;
        match &mut self.state {
            State::Greeting => match class {
                2 => {
                    self.send_hello(b"EHLO ");
                    self.state = State::Ehlo;
                }
                3 => self.out_of_sync(SyncError::Unexpected(code)),
                _ => self.fail(Reason::Remote(RemoteReply::from_reply(reply)), true),
            },
            State::Ehlo => match class {
                2 => {
                    self.offered = Capabilities::parse_ehlo(reply).unwrap_or_default();
                    self.after_hello();
                }
                3 => self.out_of_sync(SyncError::Unexpected(code)),
                // RFC 5321 §4.1.4: an EHLO the server does not take gets 500, 501, 502 or
                // 550; the client may then say HELO (and use no extension).
                _ if matches!(code, 500 | 501 | 502 | 550) => {
                    self.send_hello(b"HELO ");
                    self.state = State::Helo;
                }
                _ => self.fail(Reason::Remote(RemoteReply::from_reply(reply)), true),
            },
            State::Helo => match class {
                2 => {
                    self.offered = Capabilities::default();
                    self.after_hello();
                }
                3 => self.out_of_sync(SyncError::Unexpected(code)),
                _ => self.fail(Reason::Remote(RemoteReply::from_reply(reply)), true),
            },
            State::StartTls => match class {
                2 => {
                    self.state = State::Handshake;
                    self.events.push_back(Event::StartTls);
                }
                3 => self.out_of_sync(SyncError::Unexpected(code)),
                _ if self.config.tls == TlsPolicy::Required => {
                    self.fail(Reason::Remote(RemoteReply::from_reply(reply)), true)
                }
                // Opportunistic: a refused STARTTLS leaves the plain session as it was.
                _ => self.after_tls_decided(),
            },
            State::Handshake => self.out_of_sync(SyncError::InputBeforeHandshake),
            State::Auth(step) => match (*step, class) {
                (AuthStep::Plain | AuthStep::LoginPassword, 2) => self.become_ready(),
                (AuthStep::LoginStart, 3) => {
                    let user = self.config.credentials.as_ref().map(|c| c.user.as_bytes());
                    base64_line_into(user.unwrap_or_default(), &mut self.outbox);
                    self.state = State::Auth(AuthStep::LoginUser);
                }
                (AuthStep::LoginUser, 3) => {
                    let password = self
                        .config
                        .credentials
                        .as_ref()
                        .map(|c| c.password.as_bytes());
                    base64_line_into(password.unwrap_or_default(), &mut self.outbox);
                    self.state = State::Auth(AuthStep::LoginPassword);
                }
                (AuthStep::Plain | AuthStep::LoginPassword, 3)
                | (AuthStep::LoginStart | AuthStep::LoginUser, 2) => {
                    self.out_of_sync(SyncError::Unexpected(code))
                }
                // RFC 4954 §6: 535 and the like; the session cannot go on without it.
                (_, _) => self.fail(Reason::Remote(RemoteReply::from_reply(reply)), true),
            },
            State::Ready => self.out_of_sync(SyncError::Unexpected(code)),
            State::Transaction(tx) => {
                let step = on_transaction_reply(tx, reply, &mut self.outbox);
                self.after_step(step, code);
            }
            State::Resetting => match class {
                2 => self.become_ready(),
                3 => self.out_of_sync(SyncError::Unexpected(code)),
                _ => self.fail(Reason::Remote(RemoteReply::from_reply(reply)), true),
            },
            State::Quitting => self.close(None),
            State::Closed => {}
        }
    }

    /// Acts on what a reply inside the transaction led to.
    fn after_step(&mut self, step: Step, code: u16) {
        match step {
            Step::Wait => {}
            Step::Content => self.events.push_back(Event::Content),
            Step::Done { rset } => {
                let state = std::mem::replace(&mut self.state, State::Ready);
                if let State::Transaction(tx) = state {
                    self.events
                        .push_back(Event::TransactionDone(tx.into_report()));
                }
                if rset {
                    self.outbox.extend_from_slice(b"RSET\r\n");
                    self.state = State::Resetting;
                } else {
                    self.become_ready();
                }
            }
            Step::OutOfSync => self.out_of_sync(SyncError::Unexpected(code)),
        }
    }

    /// After a successful `EHLO` or `HELO`: STARTTLS if the policy wants it and it is offered.
    fn after_hello(&mut self) {
        if !self.tls_active && self.config.tls != TlsPolicy::Off {
            if self.offered.starttls {
                self.outbox.extend_from_slice(b"STARTTLS\r\n");
                self.state = State::StartTls;
                return;
            }
            if self.config.tls == TlsPolicy::Required {
                self.fail(Reason::Local(LocalReason::TlsUnavailable), true);
                return;
            }
        }
        self.after_tls_decided();
    }

    /// Once encrypted (or settled for plain text): AUTH if credentials are configured, inside
    /// TLS only; otherwise ready.
    fn after_tls_decided(&mut self) {
        let Some(credentials) = &self.config.credentials else {
            self.become_ready();
            return;
        };
        if !self.tls_active {
            self.fail(Reason::Local(LocalReason::AuthWithoutTls), true);
        } else if self.offered.auth_plain {
            // RFC 4616 §2: authzid NUL authcid NUL passwd, with an empty authzid.
            let mut message = Vec::new();
            message.push(0);
            message.extend_from_slice(credentials.user.as_bytes());
            message.push(0);
            message.extend_from_slice(credentials.password.as_bytes());
            self.outbox.extend_from_slice(b"AUTH PLAIN ");
            base64_line_into(&message, &mut self.outbox);
            self.state = State::Auth(AuthStep::Plain);
        } else if self.offered.auth_login {
            self.outbox.extend_from_slice(b"AUTH LOGIN\r\n");
            self.state = State::Auth(AuthStep::LoginStart);
        } else {
            self.fail(Reason::Local(LocalReason::AuthUnavailable), true);
        }
    }

    /// Idle: the driver may give a transaction.
    fn become_ready(&mut self) {
        self.state = State::Ready;
        self.events.push_back(Event::Ready);
    }

    /// Writes `EHLO name` or `HELO name`.
    fn send_hello(&mut self, verb: &[u8]) {
        self.outbox.extend_from_slice(verb);
        self.outbox
            .extend_from_slice(self.config.helo_name.as_bytes());
        self.outbox.extend_from_slice(b"\r\n");
    }

    /// Why the next hop cannot take this message, checked before anything is sent.
    fn refusal_before_sending(&self, envelope: &Envelope<'_>) -> Option<LocalReason> {
        if let Some(limit) = self.offered.max_size {
            if envelope.size > limit {
                return Some(LocalReason::TooBig { limit });
            }
        }
        if envelope.binary && !(self.offered.binary_mime && self.offered.chunking) {
            return Some(LocalReason::BinaryRefused);
        }
        if envelope.eight_bit && !self.offered.eight_bit_mime {
            return Some(LocalReason::EightBitRefused);
        }
        if envelope.smtputf8 && !self.offered.smtputf8 {
            return Some(LocalReason::Utf8Refused);
        }
        None
    }

    /// The session lost sync: everything pending is deferred, no `QUIT`.
    fn out_of_sync(&mut self, error: SyncError) {
        self.fail(Reason::Local(LocalReason::OutOfSync(error)), false);
    }

    /// The session ends early for `reason`: a transaction in flight reports every undecided
    /// recipient deferred, `QUIT` is left to send when `quit` (the channel is sound).
    fn fail(&mut self, reason: Reason, quit: bool) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        if let State::Transaction(mut tx) = state {
            tx.settle(&Outcome {
                verdict: Verdict::Deferred,
                reason: reason.clone(),
            });
            self.events
                .push_back(Event::TransactionDone(tx.into_report()));
        }
        if quit {
            self.outbox.extend_from_slice(b"QUIT\r\n");
        }
        self.close(Some(reason));
    }

    /// The session is over.
    fn close(&mut self, error: Option<Reason>) {
        self.state = State::Closed;
        self.events.push_back(Event::Closed { error });
    }
}

/// One reply to a command of the transaction `tx`: the recipients' standing, the commands it
/// calls for (into `outbox`), and what comes next.
fn on_transaction_reply(tx: &mut Transaction, reply: &Reply<'_>, outbox: &mut Vec<u8>) -> Step {
    let Some(sent) = tx.sent.pop_front() else {
        // Nothing awaited (the driver is sending content): a reply now is out of order.
        return Step::OutOfSync;
    };
    let class = reply.code() / 100;
    match sent {
        Sent::Mail => match class {
            2 if !tx.pipelining => {
                outbox.extend_from_slice(tx.rcpt_line(0));
                tx.sent.push_back(Sent::Rcpt(0));
                Step::Wait
            }
            2 => Step::Wait,
            3 => Step::OutOfSync,
            _ => {
                // Every recipient shares MAIL's fate; with PIPELINING the RCPTs and DATA sent
                // behind it are still answered (and must be in sync).
                tx.mail_refused = true;
                tx.settle(&Outcome::from_reply(RemoteReply::from_reply(reply)));
                if tx.sent.is_empty() {
                    Step::Done { rset: true }
                } else {
                    Step::Wait
                }
            }
        },
        Sent::Rcpt(index) => {
            if class == 3 {
                return Step::OutOfSync;
            }
            if !tx.mail_refused {
                if let Some(rcpt) = tx.rcpts.get_mut(index) {
                    *rcpt = if class == 2 {
                        Rcpt::Accepted
                    } else {
                        Rcpt::Done(Outcome::from_reply(RemoteReply::from_reply(reply)))
                    };
                }
            }
            let last = index + 1 == tx.rcpts.len();
            if !tx.pipelining && !last {
                outbox.extend_from_slice(tx.rcpt_line(index + 1));
                tx.sent.push_back(Sent::Rcpt(index + 1));
                return Step::Wait;
            }
            if !last || !tx.sent.is_empty() {
                // PIPELINING: the other RCPT replies, then DATA's, are on their way.
                return Step::Wait;
            }
            if !tx.any_accepted() {
                return Step::Done { rset: true };
            }
            match tx.body {
                Body::Data(_) => {
                    outbox.extend_from_slice(b"DATA\r\n");
                    tx.sent.push_back(Sent::Data);
                    Step::Wait
                }
                Body::Chunks => {
                    tx.phase = Phase::Content;
                    Step::Content
                }
            }
        }
        Sent::Data => match class {
            3 if reply.code() == 354 => {
                if tx.any_accepted() {
                    tx.phase = Phase::Content;
                    Step::Content
                } else {
                    // RFC 2920 §3.1: DATA accepted with no recipient: send a single dot.
                    outbox.extend_from_slice(b".\r\n");
                    tx.sent.push_back(Sent::DataEnd);
                    tx.phase = Phase::Emptied;
                    Step::Wait
                }
            }
            2 | 3 => Step::OutOfSync,
            _ => {
                if tx.any_accepted() {
                    tx.settle_message(RemoteReply::from_reply(reply));
                }
                Step::Done { rset: true }
            }
        },
        Sent::DataEnd => match class {
            3 => Step::OutOfSync,
            _ => {
                if tx.phase != Phase::Emptied {
                    tx.settle_message(RemoteReply::from_reply(reply));
                }
                Step::Done { rset: false }
            }
        },
        Sent::Bdat { last } => match class {
            3 => Step::OutOfSync,
            2 if last => {
                if tx.message.is_some() {
                    // A chunk before it was refused: the message failed already.
                    return Step::Done { rset: true };
                }
                tx.settle_message(RemoteReply::from_reply(reply));
                Step::Done { rset: false }
            }
            2 => {
                if tx.phase == Phase::ChunkSent {
                    tx.phase = Phase::Content;
                    Step::Content
                } else if tx.phase == Phase::Ended && tx.sent.is_empty() {
                    // A refused chunk ended the content; this was the last reply.
                    Step::Done { rset: true }
                } else {
                    Step::Wait
                }
            }
            _ => {
                // RFC 3030 §2: a 4yz or 5yz to a chunk fails the transaction, and no further
                // chunk may be sent; with PIPELINING those already sent are still answered
                // (the server discards them). The first refusal is the message reply. Only a
                // refused `LAST` with nothing refused before it ends the transaction cleanly;
                // otherwise RSET, since the next hop may still hold the failed message.
                let refused_before = tx.message.is_some();
                tx.settle_message(RemoteReply::from_reply(reply));
                tx.phase = Phase::Ended;
                if tx.sent.is_empty() {
                    Step::Done {
                        rset: !last || refused_before,
                    }
                } else {
                    Step::Wait
                }
            }
        },
    }
}

/// Writes `bytes` in base64 (RFC 4954 §4), then CR LF.
fn base64_line_into(bytes: &[u8], out: &mut Vec<u8>) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    out.extend_from_slice(encoded.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Checks what would go into commands: no line break, no bracket, no 8-bit address without
/// SMTPUTF8, xtext parameters.
fn check_envelope(envelope: &Envelope<'_>) -> Result<(), UsageError> {
    if envelope.recipients.is_empty() {
        return Err(UsageError::NoRecipients);
    }
    let address_ok = |address: &[u8]| {
        address.iter().all(|&byte| {
            !(byte < 0x20 || byte == 0x7f || byte == b'<' || byte == b'>')
                && (byte < 0x80 || envelope.smtputf8)
        })
    };
    let xtext_ok = |value: &[u8]| !value.is_empty() && value.iter().all(u8::is_ascii_graphic);
    if !address_ok(envelope.reverse_path) {
        return Err(UsageError::BadAddress);
    }
    if envelope.envid.is_some_and(|envid| !xtext_ok(envid)) {
        return Err(UsageError::BadParameter);
    }
    for recipient in envelope.recipients {
        if recipient.forward_path.is_empty() || !address_ok(recipient.forward_path) {
            return Err(UsageError::BadAddress);
        }
        if recipient.orcpt.is_some_and(|orcpt| !xtext_ok(orcpt)) {
            return Err(UsageError::BadParameter);
        }
    }
    Ok(())
}

/// Writes `MAIL FROM:<path>` and the parameters the next hop offers (RFC 1870, RFC 6152,
/// RFC 6531, RFC 3461 §4.3 and §4.4).
fn mail_into(envelope: &Envelope<'_>, offered: &Capabilities, out: &mut Vec<u8>) {
    out.extend_from_slice(b"MAIL FROM:<");
    out.extend_from_slice(envelope.reverse_path);
    out.push(b'>');
    if offered.size {
        out.extend_from_slice(b" SIZE=");
        out.extend_from_slice(itoa::Buffer::new().format(envelope.size).as_bytes());
    }
    if envelope.binary {
        out.extend_from_slice(b" BODY=BINARYMIME");
    } else if envelope.eight_bit {
        out.extend_from_slice(b" BODY=8BITMIME");
    }
    if envelope.smtputf8 {
        out.extend_from_slice(b" SMTPUTF8");
    }
    if offered.dsn {
        if let Some(ret) = envelope.ret {
            out.extend_from_slice(b" RET=");
            out.extend_from_slice(ret.as_str().as_bytes());
        }
        if let Some(envid) = envelope.envid {
            out.extend_from_slice(b" ENVID=");
            out.extend_from_slice(envid);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `RCPT TO:<path>` and, when the next hop offers DSN, `NOTIFY` and `ORCPT` (RFC 3461
/// §4.1, §4.2).
fn rcpt_into(recipient: &Recipient<'_>, dsn: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"RCPT TO:<");
    out.extend_from_slice(recipient.forward_path);
    out.push(b'>');
    if dsn {
        // RFC 3461 §5.2.1: passed on unchanged.
        if !recipient.notify.is_empty() {
            out.extend_from_slice(b" NOTIFY=");
            recipient.notify.value_into(out);
        }
        if let Some(orcpt) = recipient.orcpt {
            out.extend_from_slice(b" ORCPT=");
            out.extend_from_slice(orcpt);
        }
    }
    out.extend_from_slice(b"\r\n");
}
