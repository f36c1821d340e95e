//! Sinks: what happens to a message once the protocol has accepted its bytes.
//!
//! What it does: define the seam between the protocol state machine and storage. The session
//! ([`crate::proto::session`]) calls a [`Sink`] as a message starts, as content arrives (already
//! dot-unstuffed, in pieces, never buffered whole by the session) and as it ends, and turns the
//! sink's verdict into the reply: `250` only if the sink says the message is safe,
//! `451 4.3.0` otherwise (RFC 5321 §4.1.1.4: the receiver takes responsibility on `250`).
//!
//! What it does not do: touch sockets or parse SMTP. [`DiscardSink`] keeps nothing; the
//! storing sink (Maildir, `.eml`, JSON lines, on storage threads) is [`crate::store`]. The server keeps one sink
//! instance per connection, so a stateful sink (an open file) never sees two messages interleave.

mod discard;

pub use discard::DiscardSink;

use crate::fault::{FaultAction, FaultContext, FaultPoint};
use crate::proto::command::MailParams;

/// How the message content arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// `DATA`, dot-stuffed and terminated by `CR LF . CR LF` (RFC 5321 §4.1.1.4).
    Data,
    /// `BDAT` chunks, counted octets (RFC 3030).
    Bdat,
}

/// The envelope of the message being received, borrowed from the session.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The `HELO`/`EHLO` argument.
    pub helo: &'a [u8],
    /// The reverse path without brackets; empty for `<>`.
    pub sender: &'a [u8],
    /// The `MAIL FROM` parameters.
    pub params: MailParams,
    /// All accepted recipients, back to back.
    pub(crate) recipient_bytes: &'a [u8],
    /// The end offset of each recipient in `recipient_bytes`.
    pub(crate) recipient_ends: &'a [u32],
    /// DATA or BDAT.
    pub transfer: Transfer,
    /// Whether the client greeted with EHLO (for the `with` clause of a `Received:` header).
    pub esmtp: bool,
}

impl<'a> Envelope<'a> {
    /// The accepted recipients, in the order given.
    pub fn recipients(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let bytes = self.recipient_bytes;
        let mut start = 0usize;
        self.recipient_ends.iter().map(move |&end| {
            let recipient = &bytes[start..end as usize];
            start = end as usize;
            recipient
        })
    }

    /// How many recipients were accepted.
    pub fn recipient_count(&self) -> usize {
        self.recipient_ends.len()
    }
}

/// The sink's answer when a message's content is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The message is safe now: the client gets `250`.
    Stored,
    /// The sink could not take responsibility for it: the client gets `451 4.3.0`.
    Failed,
    /// The sink is storing it elsewhere (a storage thread) and will report the outcome; the
    /// session holds the final reply, and all later input, until
    /// [`crate::proto::session::Session::on_store_complete`] is called.
    Pending,
}

/// Where accepted messages go. Every `on_message_start` is followed by exactly one
/// `on_message_end` or `on_message_abort`.
pub trait Sink {
    /// A message begins (`354` was sent, or the first BDAT chunk was accepted).
    fn on_message_start(&mut self, envelope: &Envelope<'_>);
    /// The next piece of content (dot-stuffing already undone).
    fn on_message_data(&mut self, piece: &[u8]);
    /// The content is complete; the verdict decides the reply.
    fn on_message_end(&mut self, envelope: &Envelope<'_>) -> Verdict;
    /// The message will not be accepted (refused, reset, or the client went away).
    fn on_message_abort(&mut self);
    /// A message attempt ended with `reply` (its final reply, or `(disconnected)`), for
    /// per-transaction logs. `envelope` is `None` when the reply came after a
    /// [`Verdict::Pending`] (the sink saw the envelope at `on_message_end`). Default: nothing.
    fn on_outcome(&mut self, _envelope: Option<&Envelope<'_>>, _size: u64, _reply: &[u8]) {}
    /// Fault injection: asked before the session carries out `point` (see [`crate::fault`]).
    /// The default injects nothing.
    fn fault(&mut self, _point: FaultPoint, _context: &FaultContext<'_>) -> Option<FaultAction> {
        None
    }
}
