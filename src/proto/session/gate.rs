//! Asking the gate about a command the protocol would carry out, and doing what only the
//! gate decides: a refusal in place of the command's reply, a hang-up, a close with the
//! gate's `421`, a pause of the output.
//!
//! What it does not do: decide what a fault does ([`crate::proto::gate::Gate`]'s owner does)
//! or ask before the protocol's own checks: a fault never hides a sender's bug.

use super::{Io, Mode, Session};
use crate::proto::gate::{Checkpoint, Decision, Gate, GateContext, GateReply};
use crate::proto::reply::{self, Origin};
use crate::proto::sink::MessageSink;

/// The gate's answer about a command the protocol would carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gated {
    /// Carry it out.
    Proceed,
    /// Answer with this reply (a fault's) instead.
    Refuse(GateReply),
    /// The session is over (the gate hung up, or closed with a `421`).
    Ended,
}

impl Session {
    /// Asks the gate about `checkpoint`. `sender` and `recipient` are the ones being given
    /// by the command, if it gives one. Always inlined: with no gate, or no rule at the
    /// point, it is one test on the discard path (callgrind: out of line it cost ~100
    /// instructions per message).
    #[inline(always)]
    pub(super) fn ask_gate<S: MessageSink, G: Gate>(
        &self,
        checkpoint: Checkpoint,
        sender: Option<&[u8]>,
        recipient: &[u8],
        io: &mut Io<'_, '_, S, G>,
    ) -> Decision {
        if !io.gate.watches(checkpoint) {
            return Decision::Proceed;
        }
        let context = GateContext {
            sender: sender.unwrap_or(self.envelope.sender()),
            recipient,
            accepted: self.envelope.recipients(),
            auth_user: self.envelope.auth_user(),
        };
        io.gate.check(checkpoint, &context)
    }

    /// Asks the gate about a command (at `checkpoint`) that the protocol would carry out, and
    /// does what only the gate decides: a hang-up, a close with its `421`, the start of a
    /// pause. `sender` is the sender the command gives (`MAIL`), `recipient` the recipient
    /// (`RCPT`).
    #[inline(always)]
    pub(super) fn ask_gate_about<S: MessageSink, G: Gate>(
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
    pub(super) fn gate_passes<S: MessageSink, G: Gate>(
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

    /// A reply the gate gave instead of carrying a command out (counted as a fault's, not
    /// ours). A `421` closes the session after it, as the server's own `421`s do: RFC 5321
    /// §3.8 lets a server close the connection "after detecting the need to shut down the
    /// SMTP service and returning a 421 response code", and §4.2.2 defines 421 as "Service
    /// not available, closing transmission channel": a client that hears it expects no
    /// further reply.
    pub(super) fn push_fault_reply<S: MessageSink, G: Gate>(
        &mut self,
        reply: GateReply,
        io: &mut Io<'_, '_, S, G>,
    ) {
        let text = io.gate.text(reply);
        if reply::is_closing(text) {
            self.close_injected(reply, io);
        } else {
            io.out.push_from(text, Origin::Fault);
        }
    }

    /// Closes the session with a reply the gate gave (counted as a fault's, not ours).
    pub(super) fn close_injected<S: MessageSink, G: Gate>(
        &mut self,
        reply: GateReply,
        io: &mut Io<'_, '_, S, G>,
    ) {
        self.abort_message(io.sink);
        io.out.push_from(io.gate.text(reply), Origin::Fault);
        self.mode = Mode::Closed;
    }
}
