//! The message sink: the question the session asks about each message's content ("is it
//! safe now?"), as a trait in protocol terms.
//!
//! What it does: define [`MessageSink`], which the session calls as a message starts, as its
//! content arrives (already dot-unstuffed, in pieces, never buffered whole by the session)
//! and as it ends; the sink's [`Verdict`] decides the final reply: `250` only if the sink
//! says the message is safe, `451 4.3.0` otherwise (RFC 5321 §4.1.1.4: on `250` the receiver
//! has taken responsibility for the message).
//!
//! What it does not do: store anything. Implementations live outside `proto`: the server's
//! stores (the `store` module) and the per-message log (`txlog`). [`Discard`] keeps
//! nothing, for benchmarks and tests.

use super::envelope::Envelope;

/// The sink's answer when a message's content is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The message is safe now: the client gets `250`.
    Stored,
    /// The sink could not take responsibility for it: the client gets `451 4.3.0`.
    Failed,
    /// The sink is storing it elsewhere (a storage thread) and will report the outcome; the
    /// session holds the final reply, and all later input, until
    /// [`super::session::Session::on_store_complete`] is called.
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
