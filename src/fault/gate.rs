//! [`FaultGate`]: the fault plans as the protocol's [`Gate`], one per connection.
//!
//! What it does: answer the session's question at each checkpoint with the plans' decision
//! (scoped plans, then the runtime set, then the startup rules: [`Plans`]), adding what the
//! session does not know (the client's address, the time), and keep the length of a delay
//! until the connection, which owns the timer, takes it ([`FaultGate::take_pause`]). A
//! rule's reply goes to the session by the rule's number ([`GateReply::Kept`]); the session
//! reads the text, which the rule owns, when it sends it.
//!
//! The runtime set and the scoped plans can be replaced at any time. The gate reads the
//! plans' generation (one atomic load) at each checkpoint and takes the new snapshot only
//! when it changed; it changes its snapshot only there, when the session starts asking
//! ([`Gate::watches`], [`Gate::check`]), so the rule a `Kept(n)` names is read from the
//! snapshot that decided: the session reads a kept text
//! before it asks the gate again (a refused `BDAT` chunk's reply, kept while the chunk's
//! octets are read, is sent before the next command is asked about), and a swap in between
//! never sends another rule's text.
//!
//! What it does not do: time the pause, or hold state shared with other connections (the
//! rules and their limiters are shared, behind [`Arc`]).

use super::plans::Live;
use super::{FaultAction, FaultContext, Plans};
use crate::proto::gate::{Checkpoint, Decision, Gate, GateContext, GateReply};
use crate::proto::reply;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The fault plans seen from one connection.
#[derive(Debug)]
pub struct FaultGate {
    /// The server's plans.
    plans: Arc<Plans>,
    /// The snapshot of the runtime set and scoped plans this gate decides with, and the
    /// generation it was taken at.
    live: (u64, Option<Arc<Live>>),
    /// The client's address, for greylisting and rate limits.
    client: IpAddr,
    /// The length of the pause last decided, until the connection takes it.
    pause: Option<Duration>,
}

impl FaultGate {
    /// The plans, applied to the connection from `client`.
    pub fn new(plans: Arc<Plans>, client: IpAddr) -> FaultGate {
        FaultGate {
            plans,
            live: (0, None),
            client,
            pause: None,
        }
    }

    /// How long the pause the session just reported lasts (once: the value is taken).
    pub fn take_pause(&mut self) -> Option<Duration> {
        self.pause.take()
    }

    /// Takes the plans' current snapshot if they changed since the last one taken.
    #[inline(always)]
    fn refresh(&mut self) {
        let generation = self.plans.generation();
        if generation != self.live.0 {
            self.live = (generation, self.plans.live());
        }
    }

    /// The decision at `checkpoint`, and the length of its pause if it pauses.
    fn decide(
        &self,
        checkpoint: Checkpoint,
        context: &GateContext<'_>,
    ) -> (Decision, Option<Duration>) {
        let startup = self.plans.startup();
        let live = self.live.1.as_deref().filter(|l| l.watches(checkpoint));
        if live.is_none() && !startup.watches(checkpoint) {
            return (Decision::Proceed, None); // no clock read for points no rule names
        }
        let fault = FaultContext {
            client: Some(self.client),
            now: Some(Instant::now()),
            sender: context.sender,
            recipient: context.recipient,
            accepted: context.accepted,
        };
        // A reply is named by its rule, which keeps the text ([`Gate::kept_text`]): the
        // startup rules are numbered first, then the snapshot's.
        let decided = live
            .and_then(|live| live.decide(checkpoint, &fault, context.auth_user))
            .map(|(n, action)| (startup.len() + n, action))
            .or_else(|| startup.decide_rule(checkpoint, &fault));
        match decided {
            None => (Decision::Proceed, None),
            Some((rule, FaultAction::Reply(_))) => (Decision::Refuse(GateReply::Kept(rule)), None),
            Some((_, FaultAction::Disconnect)) => (Decision::Hangup, None),
            Some((_, FaultAction::Disconnect421)) => (
                Decision::Close(GateReply::Fixed(reply::FAULT_CLOSING)),
                None,
            ),
            Some((rule, FaultAction::Delay { hold, then })) => (
                Decision::Pause(then.map(|_| GateReply::Kept(rule))),
                Some(hold),
            ),
        }
    }
}

impl Gate for FaultGate {
    /// Takes the current snapshot if the plans changed (only here and in [`Gate::check`],
    /// before deciding: see the module's doc), then whether any rule names `checkpoint`.
    /// Always inlined: it is the whole cost of a command no rule names (callgrind: out of
    /// line, ~80 instructions per message).
    #[inline(always)]
    fn watches(&mut self, checkpoint: Checkpoint) -> bool {
        self.refresh();
        self.live
            .1
            .as_deref()
            .is_some_and(|l| l.watches(checkpoint))
            || self.plans.startup().watches(checkpoint)
    }

    fn check(&mut self, checkpoint: Checkpoint, context: &GateContext<'_>) -> Decision {
        self.refresh();
        let (decision, pause) = self.decide(checkpoint, context);
        if pause.is_some() {
            self.pause = pause;
        }
        decision
    }

    /// Rule `n`'s reply text, owned by the rule: nothing is copied.
    fn kept_text(&self, n: usize) -> &[u8] {
        let startup = self.plans.startup();
        match n.checked_sub(startup.len()) {
            None => startup.reply_text(n),
            Some(n) => self
                .live
                .1
                .as_deref()
                .map_or(&[], |live| live.reply_text(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultRules;

    #[test]
    fn decisions_map_to_the_protocol_and_a_delay_is_kept_for_the_connection() {
        let texts = [
            "rcpt to=*@bad.example reply=550 5.1.1 No such user",
            "mail disconnect",
            "data disconnect=421",
            "eod delay=250ms",
        ]
        .map(String::from);
        let rules = Arc::new(Plans::new(FaultRules::parse(&texts, 1).unwrap()));
        let mut gate = FaultGate::new(rules, IpAddr::from([127, 0, 0, 1]));
        let bad = GateContext {
            recipient: b"x@bad.example",
            ..GateContext::default()
        };
        // The refusal names rule 0; its text is the rule's own bytes, not a copy.
        let refusal = gate.check(Checkpoint::Rcpt, &bad);
        assert_eq!(refusal, Decision::Refuse(GateReply::Kept(0)));
        let Decision::Refuse(reply) = refusal else {
            unreachable!()
        };
        assert_eq!(gate.text(reply), b"550 5.1.1 No such user\r\n");
        // The same name read through another gate gives that gate's rule's text: the bytes
        // live in the rules (dropped with them), not anywhere shared or `'static`.
        let other = FaultRules::parse(&["rcpt reply=450 4.2.0 Busy".to_string()], 1).unwrap();
        let other = FaultGate::new(Arc::new(Plans::new(other)), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(other.text(reply), b"450 4.2.0 Busy\r\n");
        let quiet = GateContext::default();
        assert_eq!(gate.check(Checkpoint::Helo, &quiet), Decision::Proceed);
        assert_eq!(gate.check(Checkpoint::Mail, &quiet), Decision::Hangup);
        assert_eq!(
            gate.check(Checkpoint::Data, &quiet),
            Decision::Close(GateReply::Fixed(reply::FAULT_CLOSING))
        );
        assert_eq!(gate.take_pause(), None);
        assert_eq!(
            gate.check(Checkpoint::EndOfData, &quiet),
            Decision::Pause(None)
        );
        assert_eq!(gate.take_pause(), Some(Duration::from_millis(250)));
        assert_eq!(gate.take_pause(), None);
    }
}
