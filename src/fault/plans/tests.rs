use super::*;
use crate::fault::FaultGate;
use crate::proto::envelope::EnvelopeBuf;
use crate::proto::gate::{Decision, Gate, GateContext, GateReply};
use std::net::IpAddr;

/// A scope covering the recipients of one domain (a test's stand-in for a mailbox route).
#[derive(Debug)]
struct Domain(&'static str);

impl Scope for Domain {
    fn covers(&self, recipient: &[u8], _auth_user: Option<&[u8]>) -> bool {
        recipient
            .rsplit(|b| *b == b'@')
            .next()
            .is_some_and(|domain| domain.eq_ignore_ascii_case(self.0.as_bytes()))
    }
}

/// A scope covering the mail of one authenticated user.
#[derive(Debug)]
struct User(&'static str);

impl Scope for User {
    fn covers(&self, _recipient: &[u8], auth_user: Option<&[u8]>) -> bool {
        auth_user == Some(self.0.as_bytes())
    }
}

fn texts(rules: &[&str]) -> Vec<String> {
    rules.iter().map(|r| r.to_string()).collect()
}

fn plans(startup: &[&str]) -> Arc<Plans> {
    Arc::new(Plans::new(FaultRules::parse(&texts(startup), 3).unwrap()))
}

fn gate(plans: &Arc<Plans>) -> FaultGate {
    FaultGate::new(Arc::clone(plans), IpAddr::from([127, 0, 0, 1]))
}

fn rcpt(to: &str) -> GateContext<'_> {
    GateContext {
        sender: b"s@x.example",
        recipient: to.as_bytes(),
        ..GateContext::default()
    }
}

/// The text a gate answers at `RCPT TO:<to>`, or `None` if it lets it through.
fn refusal(gate: &mut FaultGate, to: &str) -> Option<String> {
    match gate.check(Checkpoint::Rcpt, &rcpt(to)) {
        Decision::Proceed => None,
        Decision::Refuse(reply) => Some(String::from_utf8(gate.text(reply).to_vec()).unwrap()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn scoped_plans_then_runtime_then_startup_first_firing_wins() {
    let plans = plans(&["rcpt reply=550 5.1.1 startup"]);
    let mut gate = gate(&plans);
    assert_eq!(
        refusal(&mut gate, "a@one.example").as_deref(),
        Some("550 5.1.1 startup\r\n")
    );
    plans
        .set_runtime(&texts(&["rcpt to=*@one.example reply=550 5.1.1 runtime"]))
        .unwrap();
    assert_eq!(
        refusal(&mut gate, "a@one.example").as_deref(),
        Some("550 5.1.1 runtime\r\n")
    );
    assert_eq!(
        refusal(&mut gate, "a@two.example").as_deref(),
        Some("550 5.1.1 startup\r\n"),
        "a runtime rule that does not fire leaves the startup rules their turn"
    );
    plans
        .set_scoped(
            "box-1",
            Arc::new(Domain("one.example")),
            &texts(&["rcpt reply=450 4.2.0 box one"]),
        )
        .unwrap();
    plans
        .set_scoped(
            "box-2",
            Arc::new(Domain("one.example")),
            &texts(&["rcpt reply=450 4.2.0 box two"]),
        )
        .unwrap();
    assert_eq!(
        refusal(&mut gate, "a@one.example").as_deref(),
        Some("450 4.2.0 box one\r\n"),
        "scoped plans in creation order"
    );
    // Replacing a plan keeps its place.
    plans
        .set_scoped(
            "box-1",
            Arc::new(Domain("one.example")),
            &texts(&["rcpt nth=2 reply=450 4.2.0 box one again"]),
        )
        .unwrap();
    assert_eq!(
        refusal(&mut gate, "a@one.example").as_deref(),
        Some("450 4.2.0 box two\r\n")
    );
    assert_eq!(
        refusal(&mut gate, "a@one.example").as_deref(),
        Some("450 4.2.0 box one again\r\n")
    );
    assert_eq!(
        plans.scoped("box-1"),
        Some(texts(&["rcpt nth=2 reply=450 4.2.0 box one again"]))
    );
    assert!(plans.clear_scoped("box-1") && plans.clear_scoped("box-2"));
    assert!(!plans.clear_scoped("box-1"));
    assert_eq!(plans.scoped("box-1"), None);
    assert_eq!(
        refusal(&mut gate, "a@one.example").as_deref(),
        Some("550 5.1.1 runtime\r\n")
    );
    assert_eq!(
        plans.runtime(),
        texts(&["rcpt to=*@one.example reply=550 5.1.1 runtime"])
    );
    plans.clear_runtime();
    assert!(plans.runtime().is_empty());
    assert_eq!(
        refusal(&mut gate, "a@one.example").as_deref(),
        Some("550 5.1.1 startup\r\n")
    );
}

#[test]
fn a_scoped_plan_applies_only_to_the_mail_its_scope_covers() {
    let plans = plans(&[]);
    plans
        .set_scoped(
            "box",
            Arc::new(Domain("one.example")),
            &texts(&["rcpt reply=550 5.1.1 No", "eod reply=554 5.6.0 Refused"]),
        )
        .unwrap();
    let mut gate = gate(&plans);
    assert!(refusal(&mut gate, "a@two.example").is_none());
    assert!(refusal(&mut gate, "a@one.example").is_some());
    // At the end of data: when any accepted recipient is covered.
    let mut only_two = EnvelopeBuf::default();
    only_two.add_recipient(b"a@two.example", Default::default());
    let mut both = EnvelopeBuf::default();
    both.add_recipient(b"a@two.example", Default::default());
    both.add_recipient(b"b@one.example", Default::default());
    let accepted = both.recipients();
    let eod = |accepted| GateContext {
        accepted,
        ..GateContext::default()
    };
    let decision = gate.check(Checkpoint::EndOfData, &eod(accepted));
    let Decision::Refuse(reply) = decision else {
        panic!("{decision:?}")
    };
    assert_eq!(gate.text(reply), b"554 5.6.0 Refused\r\n");
    assert_eq!(
        gate.check(Checkpoint::EndOfData, &eod(only_two.recipients())),
        Decision::Proceed
    );
    // A scope by AUTH user.
    plans
        .set_scoped(
            "user",
            Arc::new(User("alice")),
            &texts(&["rcpt disconnect"]),
        )
        .unwrap();
    let mut alice = rcpt("x@three.example");
    assert_eq!(
        gate.check(Checkpoint::Rcpt, &alice),
        Decision::Proceed,
        "not authenticated"
    );
    alice.auth_user = Some(b"alice");
    assert_eq!(gate.check(Checkpoint::Rcpt, &alice), Decision::Hangup);
}

#[test]
fn a_scoped_plan_refuses_rules_where_the_mailbox_is_not_known() {
    let plans = plans(&[]);
    for point in ["connect", "helo", "ehlo", "mail", "rset", "noop", "quit"] {
        let rules = texts(&["rcpt disconnect", &format!("{point} disconnect")]);
        let error = plans
            .set_scoped("box", Arc::new(Domain("x")), &rules)
            .unwrap_err();
        let PlanError::Rule { index, message } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(*index, 1);
        assert!(
            message.starts_with(&format!("rules[1] \"{point} disconnect\": "))
                && message.contains("only at rcpt, data, eod and bdat"),
            "{message}"
        );
    }
    assert_eq!(plans.scoped("box"), None, "nothing changed");
    for point in ["rcpt", "data", "eod", "bdat"] {
        let rules = texts(&[&format!("{point} disconnect")]);
        assert!(plans
            .set_scoped("box", Arc::new(Domain("x")), &rules)
            .is_ok());
    }
    // The same rules are fine server-wide.
    assert!(plans.set_runtime(&texts(&["connect disconnect"])).is_ok());
}

#[test]
fn a_bad_rule_changes_nothing_and_says_which_and_why() {
    let plans = plans(&[]);
    plans
        .set_runtime(&texts(&["rcpt reply=550 5.1.1 kept"]))
        .unwrap();
    let error = plans
        .set_runtime(&texts(&["rcpt disconnect", "rcpt reply=250 fine"]))
        .unwrap_err();
    assert_eq!(
        error,
        PlanError::Rule {
            index: 1,
            message: "rules[1] \"rcpt reply=250 fine\": reply=\"250 fine\": expected a 4xx or 5xx \
                 code and text, e.g. reply=550 5.1.1 No such user"
                .to_string()
        },
        "{error}"
    );
    assert_eq!(plans.runtime(), texts(&["rcpt reply=550 5.1.1 kept"]));
}

#[test]
fn bounds_on_rules_texts_and_plans() {
    let plans = plans(&[]);
    let many = vec!["rcpt disconnect".to_string(); MAX_RULES_PER_SET + 1];
    let error = plans.set_runtime(&many).unwrap_err();
    assert!(
        matches!(&error, PlanError::TooMany(m) if m.contains("at most 1000")),
        "{error}"
    );
    assert!(plans.set_runtime(&many[1..]).is_ok());
    let long = format!("rcpt reply=550 5.1.1 {}", "x".repeat(MAX_RULE_TEXT));
    let error = plans.set_runtime(&[long]).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("more than the 1024 a rule may have")
            && error.to_string().len() < 300,
        "{error}"
    );
    assert_eq!(plans.runtime().len(), MAX_RULES_PER_SET, "nothing changed");
    let rule = texts(&["rcpt disconnect"]);
    for n in 0..MAX_SCOPED_PLANS {
        plans
            .set_scoped(&n.to_string(), Arc::new(Domain("x")), &rule)
            .unwrap();
    }
    let error = plans
        .set_scoped("one more", Arc::new(Domain("x")), &rule)
        .unwrap_err();
    assert!(matches!(error, PlanError::TooMany(_)), "{error}");
    // Replacing one that exists is still allowed.
    assert!(plans.set_scoped("0", Arc::new(Domain("y")), &rule).is_ok());
    assert!(plans.clear_scoped("17"));
    assert!(plans
        .set_scoped("one more", Arc::new(Domain("x")), &rule)
        .is_ok());
}

/// `GateReply::Kept(n)` names a rule by number: the gate keeps the snapshot that decided
/// until the session has read the text, so a swap between the decision and the reply never
/// sends another rule's text.
#[test]
fn a_swap_between_decision_and_reply_sends_the_deciding_rules_text() {
    let plans = plans(&["rcpt to=*@startup.example reply=550 5.1.1 startup"]);
    plans
        .set_runtime(&texts(&["rcpt reply=550 5.1.1 old runtime rule"]))
        .unwrap();
    let mut gate = gate(&plans);
    let decision = gate.check(Checkpoint::Rcpt, &rcpt("a@b.example"));
    let Decision::Refuse(reply) = decision else {
        panic!("{decision:?}")
    };
    assert_eq!(
        reply,
        GateReply::Kept(1),
        "startup rules are numbered first"
    );
    // The set is replaced (and another rule takes number 1) before the reply is sent.
    plans
        .set_runtime(&texts(&["rcpt reply=451 4.3.0 new runtime rule"]))
        .unwrap();
    assert_eq!(gate.text(reply), b"550 5.1.1 old runtime rule\r\n");
    // The set is cleared: the text is still the deciding rule's, not an empty one.
    plans.clear_runtime();
    assert_eq!(gate.text(reply), b"550 5.1.1 old runtime rule\r\n");
    // The next check sees what is current.
    assert_eq!(
        gate.check(Checkpoint::Rcpt, &rcpt("a@b.example")),
        Decision::Proceed
    );
    // A scoped plan's rule, numbered after the startup rules, likewise.
    plans
        .set_scoped(
            "box",
            Arc::new(Domain("b.example")),
            &texts(&["rcpt disconnect", "rcpt reply=450 4.2.0 scoped"]),
        )
        .unwrap();
    plans
        .set_runtime(&texts(&["rcpt reply=550 5.1.1 runtime"]))
        .unwrap();
    let Decision::Hangup = gate.check(Checkpoint::Rcpt, &rcpt("a@b.example")) else {
        panic!("the plan's first rule")
    };
    plans
        .set_scoped(
            "box",
            Arc::new(Domain("b.example")),
            &texts(&["rcpt reply=450 4.2.0 scoped"]),
        )
        .unwrap();
    let Decision::Refuse(reply) = gate.check(Checkpoint::Rcpt, &rcpt("a@b.example")) else {
        panic!()
    };
    assert_eq!(reply, GateReply::Kept(1));
    plans.clear_scoped("box");
    assert_eq!(gate.text(reply), b"450 4.2.0 scoped\r\n");
    let Decision::Refuse(reply) = gate.check(Checkpoint::Rcpt, &rcpt("a@b.example")) else {
        panic!()
    };
    assert_eq!(gate.text(reply), b"550 5.1.1 runtime\r\n");
}

/// Replacing a set starts its counters and limiters afresh; a set left alone keeps them.
#[test]
fn replacing_a_set_resets_its_counters() {
    let plans = plans(&[]);
    let every_second = texts(&["rcpt every=2 disconnect"]);
    plans.set_runtime(&every_second).unwrap();
    let mut first = gate(&plans);
    let mut fires = || first.check(Checkpoint::Rcpt, &rcpt("a@b")) == Decision::Hangup;
    assert_eq!([fires(), fires(), fires()], [false, true, false]);
    // Adding a scoped plan (that does not cover this mail) keeps the runtime set's count.
    plans
        .set_scoped("box", Arc::new(Domain("elsewhere")), &every_second)
        .unwrap();
    let mut gate2 = gate(&plans);
    assert!(gate2.check(Checkpoint::Rcpt, &rcpt("a@b")) == Decision::Hangup);
    // The same texts again: a new set, counting from the start.
    plans.set_runtime(&every_second).unwrap();
    let hangups: Vec<bool> = (0..3)
        .map(|_| gate2.check(Checkpoint::Rcpt, &rcpt("a@b")) == Decision::Hangup)
        .collect();
    assert_eq!(hangups, [false, true, false]);
    assert_eq!(plans.fired(), vec![("rcpt every=2 disconnect".into(), 1)]);
}

#[test]
fn with_nothing_but_startup_rules_there_is_no_snapshot() {
    let plans = plans(&["mail disconnect"]);
    assert!(plans.live().is_none());
    plans.set_runtime(&texts(&["rcpt disconnect"])).unwrap();
    assert!(plans.live().is_some());
    plans.set_runtime(&[]).unwrap();
    assert!(plans.live().is_none(), "an empty set is no set");
    assert_eq!(plans.generation(), 2);
    let mut one = gate(&plans);
    assert_eq!(one.check(Checkpoint::Mail, &rcpt("")), Decision::Hangup);
}
