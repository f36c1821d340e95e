//! [`FaultGate`]: the fault rules as the protocol's [`Gate`], one per connection.
//!
//! What it does: answer the session's question at each checkpoint with the rules' decision,
//! adding what the session does not know (the client's address, the time), and keep the
//! length of a delay until the connection, which owns the timer, takes it
//! ([`FaultGate::take_pause`]). A rule's reply goes to the session by the rule's number
//! ([`GateReply::Kept`]); the session reads the text, which the rule owns, when it sends it.
//!
//! What it does not do: time the pause, or hold state shared with other connections (the
//! rules and their limiters are shared, behind [`Arc`]).

use super::{FaultAction, FaultContext, FaultRules};
use crate::proto::gate::{Checkpoint, Decision, Gate, GateContext, GateReply};
use crate::proto::reply;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The fault rules seen from one connection.
#[derive(Debug)]
pub struct FaultGate {
    /// The server's rules.
    rules: Arc<FaultRules>,
    /// The client's address, for greylisting and rate limits.
    client: IpAddr,
    /// The length of the pause last decided, until the connection takes it.
    pause: Option<Duration>,
}

impl FaultGate {
    /// The rules, applied to the connection from `client`.
    pub fn new(rules: Arc<FaultRules>, client: IpAddr) -> FaultGate {
        FaultGate {
            rules,
            client,
            pause: None,
        }
    }

    /// How long the pause the session just reported lasts (once: the value is taken).
    pub fn take_pause(&mut self) -> Option<Duration> {
        self.pause.take()
    }
}

impl Gate for FaultGate {
    fn check(&mut self, checkpoint: Checkpoint, context: &GateContext<'_>) -> Decision {
        if !self.rules.watches(checkpoint) {
            return Decision::Proceed; // no clock read for points no rule names
        }
        let context = FaultContext {
            client: Some(self.client),
            now: Some(Instant::now()),
            sender: context.sender,
            recipient: context.recipient,
            accepted: context.accepted,
        };
        // A reply is named by its rule, which keeps the text ([`Gate::kept_text`]).
        match self.rules.decide_rule(checkpoint, &context) {
            None => Decision::Proceed,
            Some((rule, FaultAction::Reply(_))) => Decision::Refuse(GateReply::Kept(rule)),
            Some((_, FaultAction::Disconnect)) => Decision::Hangup,
            Some((_, FaultAction::Disconnect421)) => {
                Decision::Close(GateReply::Fixed(reply::FAULT_CLOSING))
            }
            Some((rule, FaultAction::Delay { hold, then })) => {
                self.pause = Some(hold);
                Decision::Pause(then.map(|_| GateReply::Kept(rule)))
            }
        }
    }

    /// Rule `n`'s reply text, owned by the rule: nothing is copied.
    fn kept_text(&self, n: usize) -> &[u8] {
        self.rules.reply_text(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_map_to_the_protocol_and_a_delay_is_kept_for_the_connection() {
        let texts = [
            "rcpt to=*@bad.example reply=550 5.1.1 No such user",
            "mail disconnect",
            "data disconnect=421",
            "eod delay=250ms",
        ]
        .map(String::from);
        let rules = Arc::new(FaultRules::parse(&texts, 1).unwrap());
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
        let other = FaultGate::new(Arc::new(other), IpAddr::from([127, 0, 0, 1]));
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
