//! One fault rule: its grammar, and what it selects.
//!
//! What it does: parse the `--fault` text (`POINT [selectors] ACTION`) into a [`Rule`] whose
//! action is one [`RuleAction`], refusing combinations that mean nothing (a delay with a
//! disconnect, greylisting anywhere but `rcpt`) with a message that says what is wrong.
//!
//! What it does not do: decide whether a rule fires for an occurrence (that is
//! [`super::FaultRules::decide`]) or keep per-client state ([`super::limiter`]).

use super::glob::glob;
use super::limiter::{Greylist, RateLimiter};
use super::FaultContext;
use crate::proto::gate::Checkpoint;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The reply of a greylisting rule without `reply=` (RFC 6647 §2.1 suggests a 4xx; 4.7.1).
pub(super) const GREYLISTED: &[u8] = b"451 4.7.1 Greylisted, please try again later\r\n";

/// The rule grammar's names for the points where a rule applies.
const POINT_NAMES: [(&str, Checkpoint); 11] = [
    ("connect", Checkpoint::Connect),
    ("helo", Checkpoint::Helo),
    ("ehlo", Checkpoint::Ehlo),
    ("mail", Checkpoint::Mail),
    ("rcpt", Checkpoint::Rcpt),
    ("data", Checkpoint::Data),
    ("eod", Checkpoint::EndOfData),
    ("bdat", Checkpoint::Bdat),
    ("rset", Checkpoint::Rset),
    ("noop", Checkpoint::Noop),
    ("quit", Checkpoint::Quit),
];

/// What a rule does when it fires.
#[derive(Debug)]
pub(super) enum RuleAction {
    /// `reply=CODE TEXT`: answer with this reply instead of carrying the command out.
    Reply(&'static [u8]),
    /// `disconnect`: close without a word.
    Disconnect,
    /// `disconnect=421`: say `421 4.3.0` and close.
    Disconnect421,
    /// `delay=D` or `delay=D1..D2` (optionally with `reply=`): hold the output for a time
    /// drawn from the range, then carry the command out or send `then`.
    Delay {
        /// The shortest hold.
        shortest: Duration,
        /// The longest hold.
        longest: Duration,
        /// `reply=`, sent after the hold instead of carrying the command out.
        then: Option<&'static [u8]>,
    },
    /// `greylist=D` (at `rcpt`): refuse a (client, sender, recipient) until D after its first
    /// attempt (RFC 6647), with `reply=` or [`GREYLISTED`].
    Greylist {
        /// The triplets seen and when.
        list: Greylist,
        /// The refusal.
        reply: &'static [u8],
    },
}

/// One rule.
#[derive(Debug)]
pub(super) struct Rule {
    /// The rule as given, for reports and metrics labels.
    pub text: String,
    /// Where it applies.
    pub point: Checkpoint,
    /// `from=GLOB`: the sender must match.
    pub from: Option<String>,
    /// `to=GLOB`: the recipient being given (or any accepted one) must match.
    pub to: Option<String>,
    /// `nth=N`: only the Nth matching occurrence.
    pub nth: Option<u64>,
    /// `every=N`: every Nth matching occurrence.
    pub every: Option<u64>,
    /// `p=P`: with this probability.
    pub probability: Option<f64>,
    /// `rate=N/s`: only for a client beyond this rate.
    pub rate: Option<RateLimiter>,
    /// What happens.
    pub action: RuleAction,
    /// Matching occurrences seen.
    pub seen: AtomicU64,
    /// Times fired.
    pub fired: AtomicU64,
}

impl Rule {
    /// Parses one rule.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let text = text.trim();
        let (point_name, mut rest) = text.split_once(' ').unwrap_or((text, ""));
        let point = POINT_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(point_name))
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                let names: Vec<&str> = POINT_NAMES.iter().map(|(n, _)| *n).collect();
                format!("unknown point {point_name:?} (one of {})", names.join(", "))
            })?;
        let mut parts = Parts::default();
        let mut selectors = Selectors::default();
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            if let Some(reply) = rest.strip_prefix("reply=") {
                // The reply takes the rest of the rule: its text may contain spaces.
                parts.reply = Some(parse_reply(reply)?);
                break;
            }
            let (word, after) = rest.split_once(' ').unwrap_or((rest, ""));
            rest = after;
            parse_word(word, &mut selectors, &mut parts)?;
        }
        let action = parts.into_action(point)?;
        if point == Checkpoint::Connect && (selectors.to.is_some() || selectors.from.is_some()) {
            return Err("connect has no sender or recipient to match".into());
        }
        Ok(Rule {
            text: text.to_string(),
            point,
            from: selectors.from,
            to: selectors.to,
            nth: selectors.nth,
            every: selectors.every,
            probability: selectors.probability,
            rate: selectors.rate.map(RateLimiter::new),
            action,
            seen: AtomicU64::new(0),
            fired: AtomicU64::new(0),
        })
    }

    /// Whether the sender and recipient patterns match.
    pub fn selects(&self, context: &FaultContext<'_>) -> bool {
        if let Some(pattern) = &self.from {
            if !glob(pattern.as_bytes(), context.sender) {
                return false;
            }
        }
        if let Some(pattern) = &self.to {
            if !context.any_recipient(|r| glob(pattern.as_bytes(), r)) {
                return false;
            }
        }
        true
    }
}

/// The selectors of a rule being parsed.
#[derive(Debug, Default)]
struct Selectors {
    from: Option<String>,
    to: Option<String>,
    nth: Option<u64>,
    every: Option<u64>,
    probability: Option<f64>,
    /// Per second.
    rate: Option<f64>,
}

/// The action words of a rule being parsed; [`Parts::into_action`] makes one action of them.
#[derive(Debug, Default)]
struct Parts {
    reply: Option<&'static [u8]>,
    /// `Some(false)`: `disconnect`; `Some(true)`: `disconnect=421`.
    disconnect: Option<bool>,
    delay: Option<(Duration, Duration)>,
    greylist: Option<Duration>,
}

impl Parts {
    fn into_action(self, point: Checkpoint) -> Result<RuleAction, String> {
        match self {
            Parts {
                greylist: Some(wait),
                delay: None,
                disconnect: None,
                reply,
            } => {
                if point != Checkpoint::Rcpt {
                    return Err(
                        "greylist= applies at rcpt (it keys on client, sender and recipient)"
                            .into(),
                    );
                }
                Ok(RuleAction::Greylist {
                    list: Greylist::new(wait),
                    reply: reply.unwrap_or(GREYLISTED),
                })
            }
            Parts {
                greylist: Some(_), ..
            } => Err("greylist= goes with reply= or alone".into()),
            Parts {
                delay: Some(_),
                disconnect: Some(_),
                ..
            } => Err("delay= goes with reply= or alone, not with disconnect".into()),
            Parts {
                delay: Some((shortest, longest)),
                reply,
                ..
            } => Ok(RuleAction::Delay {
                shortest,
                longest,
                then: reply,
            }),
            Parts {
                disconnect: Some(_),
                reply: Some(_),
                ..
            } => Err("disconnect and reply= are two actions: give one action".into()),
            Parts {
                disconnect: Some(with_421),
                ..
            } => Ok(if with_421 {
                RuleAction::Disconnect421
            } else {
                RuleAction::Disconnect
            }),
            Parts {
                reply: Some(reply), ..
            } => Ok(RuleAction::Reply(reply)),
            Parts { .. } => Err(
                "no action: give reply=..., disconnect, disconnect=421, delay=... or greylist=..."
                    .into(),
            ),
        }
    }
}

/// Parses one `key=value` (or bare) word of a rule.
fn parse_word(word: &str, selectors: &mut Selectors, parts: &mut Parts) -> Result<(), String> {
    let (key, value) = word.split_once('=').unwrap_or((word, ""));
    let count = |v: &str| -> Result<u64, String> {
        v.parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{key}={v:?}: a count of at least 1"))
    };
    match (key, value) {
        ("from", v) if !v.is_empty() => selectors.from = Some(v.to_string()),
        ("to", v) if !v.is_empty() => selectors.to = Some(v.to_string()),
        ("nth", v) => selectors.nth = Some(count(v)?),
        ("every", v) => selectors.every = Some(count(v)?),
        ("p", v) => {
            let p: f64 = v
                .parse()
                .ok()
                .filter(|p: &f64| (0.0..=1.0).contains(p))
                .ok_or_else(|| format!("p={v:?}: a probability from 0 to 1"))?;
            selectors.probability = Some(p);
        }
        ("rate", v) => selectors.rate = Some(parse_rate(v)?),
        ("delay", v) => {
            let (low, high) = match v.split_once("..") {
                Some((a, b)) => (parse_duration(a)?, parse_duration(b)?),
                None => (parse_duration(v)?, parse_duration(v)?),
            };
            if low > high {
                return Err(format!("delay={v}: the range is empty"));
            }
            parts.delay = Some((low, high));
        }
        ("greylist", v) => parts.greylist = Some(parse_duration(v)?),
        ("disconnect", "") => parts.disconnect = Some(false),
        ("disconnect", "421") => parts.disconnect = Some(true),
        _ => {
            return Err(format!(
                "{word:?}: expected from=, to=, nth=, every=, p=, rate=, delay=, greylist=, disconnect, disconnect=421 or reply=CODE TEXT"
            ))
        }
    }
    Ok(())
}

/// `N/s` or `N/m` (N > 0) as a rate per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let (count, per) = text.split_once('/').unwrap_or((text, "s"));
    let count: f64 = count
        .parse()
        .ok()
        .filter(|n: &f64| *n > 0.0 && n.is_finite())
        .ok_or_else(|| format!("rate={text:?}: expected N/s or N/m, N > 0"))?;
    match per {
        "s" => Ok(count),
        "m" => Ok(count / 60.0),
        _ => Err(format!("rate={text:?}: expected N/s or N/m")),
    }
}

/// `200ms`, `2s`, `1.5m` (no unit: seconds), up to one hour.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 200ms, 2s)"))?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "s" | "" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit (ms, s, m)")),
    };
    if !seconds.is_finite() || !(0.0..=3600.0).contains(&seconds) {
        return Err(format!("{text:?}: delays go up to one hour"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A configured reply: `CODE TEXT`, a 4xx or 5xx code; CR LF is added. Kept for the life of
/// the process (rules are configuration), so sessions can borrow it as `'static`.
fn parse_reply(text: &str) -> Result<&'static [u8], String> {
    let text = text.trim();
    let code = text.get(..3).unwrap_or("");
    let valid_code = code.len() == 3
        && matches!(code.as_bytes()[0], b'4' | b'5')
        && code.bytes().all(|b| b.is_ascii_digit());
    if !valid_code || text.as_bytes().get(3).is_some_and(|&b| b != b' ') {
        return Err(format!(
            "reply={text:?}: expected a 4xx or 5xx code and text, e.g. reply=550 5.1.1 No such user"
        ));
    }
    if !text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(format!("reply={text:?}: printable ASCII only"));
    }
    let line = if text.len() == 3 {
        format!("{text} Fault injected\r\n")
    } else {
        format!("{text}\r\n")
    };
    Ok(Box::leak(line.into_boxed_str()).as_bytes())
}
