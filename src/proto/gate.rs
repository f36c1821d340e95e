//! The gate: the question the session asks before it carries out a command ("may this
//! proceed, or what instead?"), as a trait in protocol terms.
//!
//! What it does: define the [`Checkpoint`]s where the session asks (the connection's start,
//! each command, the end of message content: always after the protocol's own checks, about
//! a command or message the session would otherwise accept), what the asker may look at ([`GateContext`]:
//! the envelope so far and the recipient being given), and the answers ([`Decision`]):
//! proceed, refuse with a reply, close with or without a reply, or pause the output first.
//! A reply is named ([`GateReply`]), not carried: the gate keeps its texts and the session
//! reads one ([`Gate::text`]) when it sends it.
//! [`Open`] always says proceed.
//!
//! What it does not do: hold rules, clocks or client addresses. Fault injection
//! (the `fault` module) implements [`Gate`] outside `proto`, with whatever state it needs. A
//! pause has no length here: the session only says where the output must stop
//! ([`super::session::Progress::pause_at`]); the gate that asked for the pause tells its
//! owner (the connection, which owns the timer) how long.
//!
//! This is Postfix `smtp-sink`'s shape: faults are data consulted at one gate, and the
//! protocol code does not know what a fault is.

use super::envelope::Recipients;

/// Where in a session the gate is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// A new connection, before the greeting.
    Connect,
    /// `HELO`.
    Helo,
    /// `EHLO`.
    Ehlo,
    /// `MAIL FROM`.
    Mail,
    /// `RCPT TO`.
    Rcpt,
    /// `DATA`.
    Data,
    /// The end of message content (the final dot, or `BDAT ... LAST`), before the sink's
    /// verdict.
    EndOfData,
    /// `BDAT`.
    Bdat,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
}

/// What a gate may look at (borrowed from the session, nothing copied).
#[derive(Debug, Clone, Copy, Default)]
pub struct GateContext<'a> {
    /// The transaction's reverse path (at `MAIL`: the one being given; empty before `MAIL`
    /// and for `<>`).
    pub sender: &'a [u8],
    /// At `RCPT`: the recipient being given. Empty elsewhere.
    pub recipient: &'a [u8],
    /// The recipients accepted so far in this transaction.
    pub accepted: Recipients<'a>,
    /// The user the client authenticated as (RFC 4954), if it did.
    pub auth_user: Option<&'a [u8]>,
}

/// A reply a gate answers with, by name: `Copy`, so the session can keep one while it reads on
/// (a refused `BDAT` chunk's reply waits for the chunk's last octet, RFC 3030 §2), and turned
/// into bytes ([`Gate::text`]) only when it is sent. The gate keeps its own texts (a fault
/// rule owns its `reply=` text), so none has to live for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateReply {
    /// A text that is part of the program (such as [`super::reply::FAULT_CLOSING`]).
    Fixed(&'static [u8]),
    /// The gate's own text number `n`, which the gate keeps ([`Gate::kept_text`]).
    Kept(usize),
}

/// The gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Carry the command out as usual.
    Proceed,
    /// Do not carry it out; answer with this reply (a whole 4xx/5xx reply, CR LF included).
    /// A refused `BDAT` still has its octets read (RFC 3030 §2).
    Refuse(GateReply),
    /// Say this reply (a `421`), then close the session.
    Close(GateReply),
    /// Close the connection at once, without a word.
    Hangup,
    /// Stop the output here for a while (the gate's owner knows how long), then carry the
    /// command out, or with `Some(reply)` answer with that reply instead.
    Pause(Option<GateReply>),
}

/// Asked by the session before it carries out each [`Checkpoint`], once the protocol's own
/// checks (syntax, sequence, limits) have passed it: a gate never sees a command the session
/// refuses by itself.
pub trait Gate {
    /// Whether the gate may decide anything at `checkpoint`: when it says no, the session
    /// proceeds without building a [`GateContext`] or asking [`Gate::check`] (no gate at
    /// all, or no rule at that point, costs a test per command and nothing else).
    #[inline]
    fn watches(&mut self, _checkpoint: Checkpoint) -> bool {
        true
    }

    /// Decides for one occurrence of `checkpoint`.
    fn check(&mut self, checkpoint: Checkpoint, context: &GateContext<'_>) -> Decision;

    /// The text (CR LF included) of the reply this gate gave as [`GateReply::Kept`]`(n)`. A
    /// gate that answers only with [`GateReply::Fixed`] texts keeps none, and returns an
    /// empty slice (it is never asked).
    fn kept_text(&self, n: usize) -> &[u8];

    /// The bytes of `reply`.
    #[inline]
    fn text(&self, reply: GateReply) -> &[u8] {
        match reply {
            GateReply::Fixed(text) => text,
            GateReply::Kept(n) => self.kept_text(n),
        }
    }
}

/// A gate that lets everything through.
#[derive(Debug, Default, Clone, Copy)]
pub struct Open;

impl Gate for Open {
    fn check(&mut self, _checkpoint: Checkpoint, _context: &GateContext<'_>) -> Decision {
        Decision::Proceed
    }

    fn kept_text(&self, _n: usize) -> &[u8] {
        &[] // it never answers but `Proceed`
    }
}

/// No gate configured: everything proceeds.
impl<G: Gate> Gate for Option<G> {
    #[inline(always)] // no gate: one test per command on the discard path
    fn watches(&mut self, checkpoint: Checkpoint) -> bool {
        self.as_mut().is_some_and(|gate| gate.watches(checkpoint))
    }

    #[inline]
    fn check(&mut self, checkpoint: Checkpoint, context: &GateContext<'_>) -> Decision {
        match self {
            Some(gate) => gate.check(checkpoint, context),
            None => Decision::Proceed,
        }
    }

    fn kept_text(&self, n: usize) -> &[u8] {
        self.as_ref().map_or(&[], |gate| gate.kept_text(n))
    }
}

impl<G: Gate + ?Sized> Gate for Box<G> {
    #[inline(always)]
    fn watches(&mut self, checkpoint: Checkpoint) -> bool {
        (**self).watches(checkpoint)
    }

    fn check(&mut self, checkpoint: Checkpoint, context: &GateContext<'_>) -> Decision {
        (**self).check(checkpoint, context)
    }

    fn kept_text(&self, n: usize) -> &[u8] {
        (**self).kept_text(n)
    }
}
