//! Fault injection: rules that make chosen commands fail, hang up or answer late, on purpose,
//! so senders can be tested against a misbehaving receiver.
//!
//! What it does: parse `--fault` rules (`rule`, from the command line or a TOML file,
//! `file`) and decide, for each [`Checkpoint`] a session reaches, whether a rule fires. A
//! rule names the point (a command, `connect` or `eod`, the end of message content), optional
//! selectors (sender or recipient pattern, the Nth or every Nth matching occurrence, a
//! probability, a per-client rate: N per period with a burst of N) and one action:
//!
//! ```text
//! rcpt to=*@bad.example reply=550 5.1.1 No such user
//! mail from=spam*@* nth=3 disconnect
//! eod p=0.1 reply=451 4.3.0 Try again later
//! data every=2 delay=200ms..1s
//! connect disconnect=421
//! rcpt greylist=5m
//! mail rate=100/m reply=450 4.7.0 Slow down
//! rcpt reply=550 No such user          (sent as "550 5.0.0 No such user")
//! ```
//!
//! A rule is asked only about what the protocol would accept: the session checks syntax,
//! sequence and limits first (a `RCPT` without `MAIL` gets `503` whatever the rules say), so
//! injected faults never hide a sender's own bugs. Durations and rates use the server's one
//! grammar ([`crate::units`]). A rule that does not parse is refused at start, with the rule
//! and the reason.
//!
//! The session reaches the rules through [`FaultGate`], this module's implementation of the
//! protocol's [`crate::proto::gate::Gate`]: the session asks in protocol terms, the gate adds
//! what only the server knows (the client's address, the time) and keeps the length of a
//! delay for the connection, which owns the timer.
//!
//! Occurrences are counted per rule over the whole server. An occurrence counts for a rule
//! only when it reaches that rule (no earlier rule fired on it) and passes the rule's
//! selectors, `rate=` and `greylist=`; so `nth=3` is the third such command, and rules
//! `nth=1`, `nth=2`, `nth=3` at one point fire on its 1st, 3rd and 5th occurrence. Probabilities come from a hash of (`--seed`, rule, occurrence), so
//! a run repeats exactly for the same sequence of commands. Greylisting and rate limits keep
//! per-client state behind a lock (`limiter`), taken only by rules that use them.
//!
//! Three enums, one per layer: a rule's configured `RuleAction` (which may hold a range
//! of delays), the [`FaultAction`] decided for one occurrence (a drawn delay), and the
//! protocol's `Decision` that [`FaultGate`] turns it into (no time in it: the gate keeps the
//! delay's length for the connection). A `reply=` text is parsed once, when the server's
//! configuration is checked, and owned by its rule: a [`FaultAction`] borrows it, and a
//! `Decision` names it by the rule's number (`GateReply::Kept`), so the session reads it
//! from the rules when it sends it. Nothing is copied per reply, and nothing outlives the
//! rules.
//!
//! What it does not do: carry the action out (the session replies or closes; the connection
//! times a delay) or read the clock for anyone but its own limiters.

mod file;
mod gate;
mod glob;
mod limiter;
mod plans;
mod rule;

pub use file::{RulesFile, MAX_FAULT_FILE};
pub use gate::FaultGate;
pub use glob::glob;
pub use plans::{PlanError, Plans, Scope, MAX_RULES_PER_SET, MAX_RULE_TEXT, MAX_SCOPED_PLANS};

use crate::proto::envelope::Recipients;
use crate::proto::gate::Checkpoint;
use rule::{Rule, RuleAction};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What a firing rule does, as decided for one occurrence. A reply is borrowed from the rule
/// that owns it, so an action cannot outlive the rules:
///
/// ```compile_fail
/// # use fastsmtpd::fault::{FaultContext, FaultRules};
/// # use fastsmtpd::proto::gate::Checkpoint;
/// let action = {
///     let rules = FaultRules::parse(&["helo reply=550 No".to_string()], 0).unwrap();
///     rules.decide(Checkpoint::Helo, &FaultContext::default())
/// }; // the rules are dropped here, and with them the reply's text
/// println!("{action:?}");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction<'r> {
    /// Answer with this reply (CR LF included) instead of carrying the command out.
    Reply(&'r [u8]),
    /// Close the connection without a word.
    Disconnect,
    /// Say `421 4.3.0` and close.
    Disconnect421,
    /// Hold the reply (and everything after it) this long; the command is carried out
    /// normally, unless `then` gives the reply to send instead.
    Delay {
        /// How long.
        hold: Duration,
        /// The reply after the delay, instead of carrying the command out.
        then: Option<&'r [u8]>,
    },
}

/// What a decision may look at (borrowed from the session, nothing copied), plus what only
/// the server knows.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultContext<'a> {
    /// The client's address (greylisting and rate limits are per client).
    pub client: Option<IpAddr>,
    /// The time of the decision (greylisting and rate limits need it; the caller reads the
    /// clock).
    pub now: Option<Instant>,
    /// The transaction's sender (empty before `MAIL`, and for `<>`).
    pub sender: &'a [u8],
    /// At `RCPT`: the recipient being given. Empty elsewhere.
    pub recipient: &'a [u8],
    /// The recipients accepted so far.
    pub accepted: Recipients<'a>,
}

impl FaultContext<'_> {
    /// The recipients a `to=` pattern is matched against: the one being given at `RCPT`,
    /// the accepted ones later.
    fn any_recipient(&self, mut matches: impl FnMut(&[u8]) -> bool) -> bool {
        if !self.recipient.is_empty() {
            return matches(self.recipient);
        }
        self.accepted.iter().any(matches)
    }
}

/// One set of rules (the server's startup rules, the runtime set, or a scoped plan's), shared
/// by every session. Its counters (`nth=`, `every=`) and limiters (`rate=`, `greylist=`)
/// belong to the set: a set that replaces it starts them afresh.
#[derive(Debug, Default)]
pub struct FaultRules {
    /// In order: the first rule that fires wins.
    rules: Vec<Rule>,
    /// `--seed`, for probabilities and delay ranges.
    seed: u64,
    /// The points some rule names, one bit per [`Checkpoint`] ([`point_bit`]), so that
    /// [`FaultRules::watches`] is one test whatever the number of rules.
    points: u16,
}

/// The bit of `point` in [`FaultRules::points`].
fn point_bit(point: Checkpoint) -> u16 {
    1 << (point as u16)
}

impl FaultRules {
    /// Parses rules (the `--fault` syntax, in order: the first that fires wins).
    pub fn parse(texts: &[String], seed: u64) -> Result<FaultRules, String> {
        FaultRules::parse_from(texts, seed, None)
    }

    /// [`FaultRules::parse`], where the first rules may come from `file`: an error about one
    /// of them names the file and its place (`--fault-file PATH: rules[i] "...": why`).
    pub fn parse_from(
        texts: &[String],
        seed: u64,
        file: Option<&RulesFile>,
    ) -> Result<FaultRules, String> {
        let rules = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Rule::parse(t).map_err(|e| format!("{}: {e}", RulesFile::origin(file, i, t)))
            })
            .collect::<Result<_, _>>()?;
        Ok(FaultRules::new(rules, seed))
    }

    /// The set of `rules`, in order.
    fn new(rules: Vec<Rule>, seed: u64) -> FaultRules {
        let points = rules.iter().fold(0, |bits, r| bits | point_bit(r.point));
        FaultRules {
            rules,
            seed,
            points,
        }
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules as given, in order.
    pub fn texts(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.text.clone()).collect()
    }

    /// Reads rules from a TOML file: `rules = ["...", ...]` (the `--fault` syntax) and an
    /// optional `seed = N`; a regular file of at most [`MAX_FAULT_FILE`] octets. Returns the
    /// rules as written and the seed; the rules are parsed later, once, with the others
    /// ([`FaultRules::parse_from`], given a [`RulesFile`] so errors name the file).
    pub fn read_file(path: &std::path::Path) -> Result<(Vec<String>, Option<u64>), String> {
        file::read_rules(path)
    }

    /// Whether there is any rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule applies at `point` (lets callers skip building a context).
    #[inline]
    pub fn watches(&self, point: Checkpoint) -> bool {
        self.points & point_bit(point) != 0
    }

    /// Decides for one occurrence of `point`: the action of the first rule that fires.
    pub fn decide(&self, point: Checkpoint, context: &FaultContext<'_>) -> Option<FaultAction<'_>> {
        self.decide_rule(point, context).map(|(_, action)| action)
    }

    /// The reply text of rule number `rule` (in the order given; CR LF included), which
    /// [`FaultRules::decide_rule`] names: empty for a rule that says no reply.
    pub fn reply_text(&self, rule: usize) -> &[u8] {
        self.rules
            .get(rule)
            .and_then(Rule::reply)
            .unwrap_or_default()
    }

    /// [`FaultRules::decide`], with the number of the rule that fired (its reply is
    /// [`FaultRules::reply_text`] of that number).
    pub fn decide_rule(
        &self,
        point: Checkpoint,
        context: &FaultContext<'_>,
    ) -> Option<(usize, FaultAction<'_>)> {
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.point != point || !rule.selects(context) {
                continue;
            }
            if let Some(rate) = &rule.rate {
                let over = match (context.client, context.now) {
                    (Some(client), Some(now)) => rate.over(client, now),
                    _ => false,
                };
                if !over {
                    continue;
                }
            }
            if let RuleAction::Greylist { list, .. } = &rule.action {
                if !list.refuses(context) {
                    continue;
                }
            }
            let occurrence = rule.seen.fetch_add(1, Ordering::Relaxed) + 1;
            if rule.nth.is_some_and(|n| occurrence != n)
                || rule.every.is_some_and(|n| occurrence % n != 0)
            {
                continue;
            }
            if let Some(p) = rule.probability {
                if unit(self.seed, index as u64, occurrence, 0) >= p {
                    continue;
                }
            }
            rule.fired.fetch_add(1, Ordering::Relaxed);
            let action = match &rule.action {
                RuleAction::Reply(reply) => FaultAction::Reply(reply),
                RuleAction::Disconnect => FaultAction::Disconnect,
                RuleAction::Disconnect421 => FaultAction::Disconnect421,
                RuleAction::Delay {
                    shortest,
                    longest,
                    then,
                } => {
                    let spread = longest.saturating_sub(*shortest).as_secs_f64();
                    let pick = unit(self.seed, index as u64, occurrence, 1);
                    FaultAction::Delay {
                        hold: *shortest + Duration::from_secs_f64(spread * pick),
                        then: then.as_deref(),
                    }
                }
                RuleAction::Greylist { .. } => FaultAction::Reply(rule.reply().unwrap_or_default()),
            };
            return Some((index, action));
        }
        None
    }

    /// `(rule text, times fired)` for every rule, for reports.
    pub fn fired(&self) -> Vec<(String, u64)> {
        self.rules
            .iter()
            .map(|r| (r.text.clone(), r.fired.load(Ordering::Relaxed)))
            .collect()
    }
}

/// A number in [0, 1) from (seed, rule, occurrence, purpose): splitmix64 over their mix, so
/// the same seed gives the same faults for the same sequence of commands.
fn unit(seed: u64, rule: u64, occurrence: u64, purpose: u64) -> f64 {
    let mut z = seed
        ^ rule.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ occurrence.wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ purpose.wrapping_mul(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn rules(texts: &[&str]) -> FaultRules {
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        FaultRules::parse(&texts, 7).unwrap()
    }

    fn rcpt<'r>(rules: &'r FaultRules, to: &str) -> Option<FaultAction<'r>> {
        rules.decide(
            Checkpoint::Rcpt,
            &FaultContext {
                sender: b"a@b.example",
                recipient: to.as_bytes(),
                ..FaultContext::default()
            },
        )
    }

    #[test]
    fn recipient_pattern_and_reply() {
        let r = rules(&["rcpt to=*@bad.example reply=550 5.1.1 No such user"]);
        assert_eq!(
            rcpt(&r, "x@bad.example"),
            Some(FaultAction::Reply(b"550 5.1.1 No such user\r\n"))
        );
        assert_eq!(rcpt(&r, "x@good.example"), None);
        assert_eq!(r.fired()[0].1, 1);
        assert!(r.watches(Checkpoint::Rcpt) && !r.watches(Checkpoint::Mail));
    }

    #[test]
    fn nth_and_every_count_matching_occurrences() {
        let r = rules(&["rcpt nth=3 disconnect"]);
        let fired: Vec<bool> = (0..5).map(|_| rcpt(&r, "x@y").is_some()).collect();
        assert_eq!(fired, [false, false, true, false, false]);
        let r = rules(&["rcpt every=2 disconnect=421"]);
        let fired: Vec<bool> = (0..6).map(|_| rcpt(&r, "x@y").is_some()).collect();
        assert_eq!(fired, [false, true, false, true, false, true]);
        assert_eq!(rcpt(&r, "x@y"), None);
        assert_eq!(rcpt(&r, "x@y"), Some(FaultAction::Disconnect421));
    }

    /// An occurrence a rule never sees (an earlier rule fired on it) is not counted by it:
    /// `nth=1`, `nth=2`, `nth=3` fire on the 1st, 3rd and 5th occurrence, not 1st, 2nd, 3rd.
    #[test]
    fn nth_counts_only_occurrences_that_reach_the_rule() {
        let r = rules(&[
            "rcpt nth=1 reply=550 5.1.1 one",
            "rcpt nth=2 reply=550 5.1.1 two",
            "rcpt nth=3 reply=550 5.1.1 three",
        ]);
        let fired: Vec<Option<FaultAction<'_>>> = (0..6).map(|_| rcpt(&r, "x@y")).collect();
        let reply = |text: &'static [u8]| Some(FaultAction::Reply(text));
        assert_eq!(
            fired,
            [
                reply(b"550 5.1.1 one\r\n"),
                None,
                reply(b"550 5.1.1 two\r\n"),
                None,
                reply(b"550 5.1.1 three\r\n"),
                None,
            ]
        );
        // A selector that does not match is not an occurrence either.
        let r = rules(&["rcpt to=*@bad.example nth=2 disconnect"]);
        assert_eq!(rcpt(&r, "a@bad.example"), None);
        assert_eq!(rcpt(&r, "a@good.example"), None);
        assert_eq!(rcpt(&r, "b@bad.example"), Some(FaultAction::Disconnect));
    }

    #[test]
    fn probabilities_repeat_for_a_seed_and_come_out_near_p() {
        let run = |seed| {
            let texts = vec!["rcpt p=0.3 reply=451 4.3.0 later".to_string()];
            let r = FaultRules::parse(&texts, seed).unwrap();
            (0..2000)
                .map(|_| rcpt(&r, "x@y").is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let hits = run(1).iter().filter(|f| **f).count();
        assert!((500..700).contains(&hits), "{hits} of 2000 at p=0.3");
    }

    #[test]
    fn delays_fixed_and_random() {
        let r = rules(&["data delay=200ms"]);
        let context = FaultContext::default();
        assert_eq!(
            r.decide(Checkpoint::Data, &context),
            Some(FaultAction::Delay {
                hold: Duration::from_millis(200),
                then: None
            })
        );
        let r = rules(&["data delay=100ms..1s"]);
        for _ in 0..100 {
            let Some(FaultAction::Delay { hold, .. }) = r.decide(Checkpoint::Data, &context) else {
                panic!("no delay");
            };
            assert!(hold >= Duration::from_millis(100) && hold <= Duration::from_secs(1));
        }
        let r = rules(&["eod delay=1s reply=451 4.3.0 slow and failed"]);
        assert_eq!(
            r.decide(Checkpoint::EndOfData, &context),
            Some(FaultAction::Delay {
                hold: Duration::from_secs(1),
                then: Some(&b"451 4.3.0 slow and failed\r\n"[..])
            })
        );
    }

    #[test]
    fn first_firing_rule_wins_and_sender_patterns_apply() {
        let r = rules(&[
            "mail from=spam*@* reply=550 5.7.1 No spam",
            "mail reply=451 4.3.0 Everything else later",
        ]);
        let decide = |from: &str| {
            r.decide(
                Checkpoint::Mail,
                &FaultContext {
                    sender: from.as_bytes(),
                    ..FaultContext::default()
                },
            )
        };
        assert_eq!(
            decide("spam1@x"),
            Some(FaultAction::Reply(b"550 5.7.1 No spam\r\n"))
        );
        assert_eq!(
            decide("ham@x"),
            Some(FaultAction::Reply(b"451 4.3.0 Everything else later\r\n"))
        );
    }

    #[test]
    fn greylisting_refuses_first_attempts_until_the_wait_is_over() {
        let r = rules(&["rcpt greylist=30s"]);
        let t0 = Instant::now();
        let attempt = |client: [u8; 4], to: &str, after: u64| {
            r.decide(
                Checkpoint::Rcpt,
                &FaultContext {
                    client: Some(IpAddr::from(client)),
                    now: Some(t0 + Duration::from_secs(after)),
                    sender: b"a@b.example",
                    recipient: to.as_bytes(),
                    ..FaultContext::default()
                },
            )
        };
        let refused = Some(FaultAction::Reply(rule::GREYLISTED));
        assert_eq!(attempt([10, 0, 0, 1], "x@y", 0), refused);
        assert_eq!(attempt([10, 0, 0, 1], "x@y", 10), refused);
        assert_eq!(attempt([10, 0, 0, 1], "x@y", 31), None);
        assert_eq!(attempt([10, 0, 0, 1], "X@Y", 32), None, "case-insensitive");
        // Another client, or another recipient, starts its own wait.
        assert_eq!(attempt([10, 0, 0, 2], "x@y", 31), refused);
        assert_eq!(attempt([10, 0, 0, 1], "z@y", 31), refused);
    }

    #[test]
    fn replies_without_an_enhanced_code_get_one_of_their_class() {
        let reply = |rule: &str| match &rules(&[rule]).rules[0].action {
            RuleAction::Reply(reply) => String::from_utf8(reply.to_vec()).unwrap(),
            ref other => panic!("{other:?}"),
        };
        assert_eq!(
            reply("rcpt reply=550 No such user"),
            "550 5.0.0 No such user\r\n"
        );
        assert_eq!(reply("rcpt reply=451 Later"), "451 4.0.0 Later\r\n");
        assert_eq!(reply("data reply=554"), "554 5.0.0 Fault injected\r\n");
        assert_eq!(
            reply("data reply=554 5.3.0"),
            "554 5.3.0 Fault injected\r\n"
        );
        assert_eq!(
            reply("rcpt reply=550 5.1.1 No such user"),
            "550 5.1.1 No such user\r\n"
        );
        // Text that starts with a number is text.
        assert_eq!(
            reply("mail reply=452 3 messages max"),
            "452 4.0.0 3 messages max\r\n"
        );
        let greylisted = match &rules(&["rcpt greylist=1m reply=450 Wait"]).rules[0].action {
            RuleAction::Greylist { reply, .. } => reply.as_deref().unwrap().to_vec(),
            other => panic!("{other:?}"),
        };
        assert_eq!(greylisted, b"450 4.0.0 Wait\r\n");
    }

    #[test]
    fn rates_count_per_period_with_a_burst_of_n() {
        // Issue 16: rate=100/m was a bucket of max(100/60, 1) tokens; 8 MAILs 0.1 s apart
        // got 250, 450, 250, ... Now a burst of 100 passes, as Postfix's anvil counts.
        let r = rules(&["mail rate=100/m reply=450 4.7.0 Slow down"]);
        let t0 = Instant::now();
        let mail = |r: &FaultRules, at_ms: u64| {
            r.decide(
                Checkpoint::Mail,
                &FaultContext {
                    client: Some(IpAddr::from([10, 0, 0, 1])),
                    now: Some(t0 + Duration::from_millis(at_ms)),
                    ..FaultContext::default()
                },
            )
            .is_some()
        };
        let fired: Vec<bool> = (0..8).map(|i| mail(&r, i * 100)).collect();
        assert_eq!(fired, [false; 8]);
        let r = rules(&["mail rate=3/m reply=450 4.7.0 Slow down"]);
        let fired: Vec<bool> = [0, 0, 0, 0, 20_000].iter().map(|t| mail(&r, *t)).collect();
        assert_eq!(fired, [false, false, false, true, false]);
        // Other periods: hours, days, any duration; N alone is per second.
        for (text, count, period) in [
            ("5/h", 5, 3600),
            ("5/d", 5, 86_400),
            ("5/10s", 5, 10),
            ("5/1.5m", 5, 90),
            ("5", 5, 1),
        ] {
            assert_eq!(
                rule::parse_rate(text),
                Ok(limiter::Rate {
                    count,
                    period: Duration::from_secs(period)
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn rate_limits_apply_per_client_beyond_the_rate() {
        let r = rules(&["mail rate=2/s reply=450 4.7.0 Slow down"]);
        let t0 = Instant::now();
        let mail = |client: u8, at_ms: u64| {
            r.decide(
                Checkpoint::Mail,
                &FaultContext {
                    client: Some(IpAddr::from([10, 0, 0, client])),
                    now: Some(t0 + Duration::from_millis(at_ms)),
                    ..FaultContext::default()
                },
            )
            .is_some()
        };
        // Two per second pass, the third in the same instant is over the rate.
        assert_eq!([mail(1, 0), mail(1, 0), mail(1, 0)], [false, false, true]);
        // Another client has its own bucket.
        assert!(!mail(2, 0));
        // Half a second later one token is back.
        assert_eq!([mail(1, 500), mail(1, 500)], [false, true]);
    }

    #[test]
    fn rules_come_from_a_toml_file() {
        let dir = std::env::temp_dir().join(format!("fastsmtpd-faults-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "# faults for the staging sink\nseed = 7\nrules = [\n  \"rcpt to=*@bad.example reply=550 5.1.1 No such user\",\n  \"eod p=0.1 reply=451 4.3.0 Later\",\n]\n",
        )
        .unwrap();
        let (rules, seed) = FaultRules::read_file(&good).unwrap();
        assert_eq!(seed, Some(7));
        assert_eq!(rules.len(), 2);
        assert!(FaultRules::parse(&rules, 7).is_ok());
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "rule = \"typo\"\n").unwrap();
        assert!(FaultRules::read_file(&bad)
            .unwrap_err()
            .contains("unexpected \"rule\""));
        std::fs::write(
            &bad,
            "rules = [\"rcpt disconnect\", \"rcpt reply=250 fine\"]\n",
        )
        .unwrap();
        // The file's rules are read as written and parsed once, later, with the file
        // named beside them: the error still names the file and the rule's place.
        let (rules, _) = FaultRules::read_file(&bad).unwrap();
        let file = RulesFile {
            path: bad.clone(),
            rules: rules.len(),
        };
        let error = FaultRules::parse_from(&rules, 0, Some(&file)).unwrap_err();
        assert!(
            error.contains("bad.toml: rules[1] \"rcpt reply=250 fine\": reply=")
                && error.contains("4xx or 5xx"),
            "{error}"
        );
        std::fs::write(&bad, "rules = [1]\n").unwrap();
        assert!(FaultRules::read_file(&bad).unwrap_err().contains("strings"));
        std::fs::write(&bad, "rules = [\n").unwrap();
        assert!(FaultRules::read_file(&bad)
            .unwrap_err()
            .contains("not TOML"));
        assert!(FaultRules::read_file(&dir.join("missing.toml")).is_err());
        // A command-line rule after the file's is named as one.
        let texts = [
            "rcpt disconnect".to_string(),
            "rcpt p=2 disconnect".to_string(),
        ];
        let file = RulesFile {
            path: bad.clone(),
            rules: 1,
        };
        let error = FaultRules::parse_from(&texts, 0, Some(&file)).unwrap_err();
        assert!(
            error.starts_with("--fault \"rcpt p=2 disconnect\": "),
            "{error}"
        );
    }

    /// Review of issue 17, F1: `--fault-file /dev/zero` grew memory without end and a FIFO
    /// hung the start; now only a regular file of at most 1 MiB is read, and the error says
    /// which flag, which file and why.
    #[test]
    fn only_a_regular_file_of_bounded_size_is_read() {
        let error = FaultRules::read_file(std::path::Path::new("/dev/zero")).unwrap_err();
        assert!(
            error.starts_with("--fault-file /dev/zero: not a regular file"),
            "{error}"
        );
        let fifo = crate::named_file::scratch::fifo("faults", "faults.fifo");
        let error = FaultRules::read_file(&fifo).unwrap_err();
        assert!(error.contains("faults.fifo: not a regular file"), "{error}");
        std::fs::remove_file(&fifo).unwrap();
        let large = crate::named_file::scratch::path("faults", "large.toml");
        let mut text = String::from("rules = []\n");
        while text.len() as u64 <= MAX_FAULT_FILE {
            text.push_str("# a comment line to make the file larger than the bound\n");
        }
        std::fs::write(&large, text).unwrap();
        let error = FaultRules::read_file(&large).unwrap_err();
        assert!(
            error.contains("large.toml: larger than 1 MiB: a fault file is a few rules"),
            "{error}"
        );
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let bad = |text: &str, needle: &str| {
            let err = FaultRules::parse(&[text.to_string()], 0).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        };
        bad("rcpt", "no action");
        bad("bogus reply=550 x", "unknown point");
        bad("rcpt reply=250 ok", "4xx or 5xx");
        bad("rcpt reply=55x nope", "4xx or 5xx");
        bad("rcpt nth=0 disconnect", "at least 1");
        bad("rcpt p=1.5 disconnect", "probability");
        bad("rcpt delay=90m", "up to 1h");
        bad("rcpt delay=5y", "unknown unit");
        bad("rcpt delay=-1s", "negative");
        bad("rcpt delay=500us", "whole milliseconds");
        bad("rcpt greylist=0s", "from 1s");
        bad("rcpt greylist=2d", "to 1d");
        bad("rcpt delay=2s..1s", "empty");
        bad("rcpt frobnicate disconnect", "expected");
        bad("rcpt delay=1s disconnect", "not with disconnect");
        bad("connect to=*@x disconnect", "connect has no");
        // The same at HELO/EHLO (no transaction yet), and to= at MAIL (no recipient yet).
        bad("helo from=a@x reply=550 5.7.1 No", "helo has no sender");
        bad("EHLO to=*@x disconnect", "ehlo has no sender");
        bad("mail to=*@x reply=550 5.7.1 No", "mail has no recipient");
        bad("connect reply=550 5.7.1 No", "at connect, reply= is 554");
        bad(
            "connect delay=1s reply=450 4.3.0 Later",
            "at connect, reply= is 554",
        );
        bad("mail greylist=30s", "applies at rcpt");
        bad("rcpt rate=0/s disconnect", "at least 1");
        bad("rcpt rate=0.5/s disconnect", "whole number");
        bad(
            "rcpt rate=5/w disconnect",
            "the period is a unit (s, m, h, d)",
        );
        bad("rcpt rate=5/0s disconnect", "from 1ms");
        bad("rcpt rate=5/2d disconnect", "to 1d");
        bad("rcpt reply=550 4.1.1 No such user", "another class");
        bad("rcpt reply=450 4.1 Busy", "not an enhanced status code");
        bad(
            "rcpt reply=450 4.1.1234 Busy",
            "not an enhanced status code",
        );
        bad("rcpt disconnect reply=550 5.7.1 no", "one action");
    }

    /// Review of issue 17, F3: a `reply=` text had no length bound, and a line of 100 000
    /// octets went out. The line sent (the enhanced code added, CR LF included) is at most
    /// 512 octets (RFC 5321 §4.5.3.1.5); the error names the rule by its start only.
    #[test]
    fn a_reply_line_over_512_octets_is_refused() {
        let fits = |words: usize| format!("rcpt reply=550 {}", "x".repeat(words));
        // "550 5.0.0 " is 10 octets, CR LF 2: 500 octets of text make a 512-octet line.
        assert!(FaultRules::parse(&[fits(500)], 0).is_ok());
        let error = FaultRules::parse(&[fits(501)], 0).unwrap_err();
        assert!(
            error.ends_with("the reply line sent would be 513 octets with CR LF, more than the 512 RFC 5321 §4.5.3.1.5 allows"),
            "{error}"
        );
        let error = FaultRules::parse(&[fits(100_000)], 0).unwrap_err();
        assert!(error.len() < 400, "{error}");
        assert!(error.starts_with("--fault \"rcpt reply=550 xxx"), "{error}");
    }
}
