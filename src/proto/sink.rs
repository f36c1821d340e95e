//! The message sink: the question the session asks about each message's content ("is it
//! safe now?"), as a trait in protocol terms.
//!
//! What it does: define [`MessageSink`], which the session calls as a message starts, as its
//! content arrives (already dot-unstuffed, in pieces, never buffered whole by the session)
//! and as it ends; the sink's [`Verdict`] decides the final reply: `250` only if the sink
//! says the message is safe, `451 4.3.0` otherwise (RFC 5321 §4.1.1.4: on `250` the receiver
//! has taken responsibility for the message).
//!
//! A sink may name each message it takes ([`MessageSink::queue_id`], a [`QueueId`]); the
//! `250` then says `250 2.0.0 Ok: queued as <id>`, as Postfix does, so a sender's log can be
//! joined with what the sink kept.
//!
//! What it does not do: store anything. Implementations live outside `proto`: the server's
//! stores (the `store` module) and the per-message log (`txlog`). [`Discard`] keeps
//! nothing, for benchmarks and tests.

use super::envelope::Envelope;
use std::fmt;

/// A message's name as its sink gives it, for the `250` reply (`queued as <id>`): 1 to
/// [`QueueId::MAX_LEN`] octets of printable ASCII without spaces (checked when made, so the
/// reply stays ours and printable, never anything a client sent). Copied by value: making
/// and reading one allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct QueueId {
    /// Octets used in `bytes`.
    len: u8,
    /// The text, then zeros.
    bytes: [u8; QueueId::MAX_LEN],
}

impl QueueId {
    /// The longest id, in octets.
    pub const MAX_LEN: usize = 63;

    /// `text` as an id; `None` if it is empty, longer than [`QueueId::MAX_LEN`], or holds
    /// anything but printable ASCII other than space (`!` to `~`).
    pub fn new(text: &[u8]) -> Option<QueueId> {
        if text.is_empty()
            || text.len() > QueueId::MAX_LEN
            || !text.iter().all(|b| (b'!'..=b'~').contains(b))
        {
            return None;
        }
        let mut bytes = [0; QueueId::MAX_LEN];
        bytes[..text.len()].copy_from_slice(text);
        Some(QueueId {
            len: text.len() as u8,
            bytes,
        })
    }

    /// The id's octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII gets in (`QueueId::new`).
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueId({:?})", self.as_str())
    }
}

/// The sink's answer when a message's content is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The message is safe now: the client gets `250`.
    Stored,
    /// The sink could not take responsibility for it: the client gets `451 4.3.0`.
    Failed,
    /// The sink refuses it with this final reply (a `4yz` or `5yz` of the sink's own, such as
    /// a full capture store's `452 4.3.1`); the client does not get `250`.
    Refused(&'static [u8]),
    /// The sink is storing it elsewhere (a storage thread) and will report the outcome; the
    /// session holds the final reply, and all later input, until
    /// [`super::session::Resume::Stored`] is given.
    Pending,
}

/// Where accepted messages go. Every `on_message_start` is followed by exactly one
/// `on_message_end` or `on_message_abort`.
pub trait MessageSink {
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
    /// The DATA content just read ended (its `CR LF . CR LF`, RFC 5321 §4.1.1.4) at offset
    /// `input_end` of the input of the current call into the session (just past the end
    /// line), after `octets` content octets as kept (dot-stuffing undone, the size limit not
    /// applied). Called at every end of DATA content, before the message is ended or
    /// refused, so that a transcript recorder never scans content again. Default: nothing.
    fn on_content_end(&mut self, _input_end: usize, _octets: u64) {}
    /// The id of the message last ended (asked right after a [`Verdict::Stored`], or when a
    /// [`Verdict::Pending`] message's outcome is reported): the `250` says
    /// `queued as <id>`. `None` (the default): the `250` says `queued` alone.
    fn queue_id(&self) -> Option<QueueId> {
        None
    }
}

/// Throws every message away (and so never fails to "store" one). The session counts what
/// was accepted, so this sink has no work to do at all.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl MessageSink for Discard {
    fn on_message_start(&mut self, _envelope: &Envelope<'_>) {}

    fn on_message_data(&mut self, _piece: &[u8]) {}

    fn on_message_end(&mut self, _envelope: &Envelope<'_>) -> Verdict {
        Verdict::Stored
    }

    fn on_message_abort(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_id_is_printable_ascii_without_spaces_and_short() {
        let id = QueueId::new(b"1764393906.M123456P4242Q17").unwrap();
        assert_eq!(id.as_str(), "1764393906.M123456P4242Q17");
        assert_eq!(id.to_string(), "1764393906.M123456P4242Q17");
        assert!(QueueId::new(b"").is_none());
        assert!(QueueId::new(b"a b").is_none());
        assert!(QueueId::new(b"a\r\nb").is_none());
        assert!(QueueId::new("\u{e9}".as_bytes()).is_none());
        assert!(QueueId::new(&[b'x'; QueueId::MAX_LEN]).is_some());
        assert!(QueueId::new(&[b'x'; QueueId::MAX_LEN + 1]).is_none());
    }
}
