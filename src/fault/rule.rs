//! One fault rule: its grammar, and what it selects.
//!
//! What it does: parse the `--fault` text (`POINT [selectors] ACTION`) into a [`Rule`] whose
//! action is one [`RuleAction`], refusing combinations that mean nothing (a delay with a
//! disconnect, greylisting anywhere but `rcpt`) with a message that says what is wrong.
//!
//! What it does not do: decide whether a rule fires for an occurrence (that is
//! [`super::FaultRules::decide`]) or keep per-client state ([`super::limiter`]).

use super::glob::glob;
use super::limiter::{Greylist, Rate, RateLimiter};
use super::FaultContext;
use crate::proto::gate::Checkpoint;
use crate::units::{format_duration, parse_duration};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The longest `delay=`: a pause holds a connection's output, and longer than this is a hang.
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// The longest `greylist=` wait: greylisting forgets a triplet after a day.
const MAX_GREYLIST: Duration = Duration::from_secs(24 * 3600);
/// The longest `rate=` period.
const MAX_RATE_PERIOD: Duration = Duration::from_secs(24 * 3600);

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
    Reply(Box<[u8]>),
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
        then: Option<Box<[u8]>>,
    },
    /// `greylist=D` (at `rcpt`): refuse a (client, sender, recipient) until D after its first
    /// attempt (RFC 6647), with `reply=` or [`GREYLISTED`].
    Greylist {
        /// The triplets seen and when.
        list: Greylist,
        /// `reply=`, the refusal ([`GREYLISTED`] without one).
        reply: Option<Box<[u8]>>,
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
    /// `rate=N/PERIOD`: only for a client beyond this rate.
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
        let strange_greeting = parts
            .reply
            .as_deref()
            .is_some_and(|reply| !(reply.starts_with(b"554") || reply.starts_with(b"421")));
        let action = parts.into_action(point)?;
        // Before MAIL (and HELO/EHLO reset a transaction, RFC 5321 §4.1.4) there is no
        // sender or recipient; at MAIL, no recipient yet: such a selector could never hold.
        let before_mail = matches!(
            point,
            Checkpoint::Connect | Checkpoint::Helo | Checkpoint::Ehlo
        );
        if before_mail && (selectors.to.is_some() || selectors.from.is_some()) {
            return Err(format!(
                "{} has no sender or recipient to match (from= and to= apply from mail and \
                 rcpt on)",
                point_name.to_ascii_lowercase()
            ));
        }
        if point == Checkpoint::Mail && selectors.to.is_some() {
            return Err("mail has no recipient to match yet (to= applies from rcpt on)".into());
        }
        if point == Checkpoint::Connect && strange_greeting {
            // RFC 5321 §3.1 and §4.3.2: a server greets with 220, refuses the session with
            // 554 (then waits for QUIT), or says 421 and closes; no other greeting exists.
            return Err(
                "at connect, reply= is 554 (the session is refused: the server answers 503 until QUIT, RFC 5321 §3.1) or 421 (said, then the connection is closed)"
                    .into(),
            );
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

    /// The rule's reply text (CR LF included), if its action says one: `reply=`, or for
    /// greylisting [`GREYLISTED`] without it.
    pub fn reply(&self) -> Option<&[u8]> {
        match &self.action {
            RuleAction::Reply(reply) => Some(reply),
            RuleAction::Delay { then, .. } => then.as_deref(),
            RuleAction::Greylist { reply, .. } => Some(reply.as_deref().unwrap_or(GREYLISTED)),
            RuleAction::Disconnect | RuleAction::Disconnect421 => None,
        }
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
    /// `rate=`.
    rate: Option<Rate>,
}

/// The action words of a rule being parsed; [`Parts::into_action`] makes one action of them.
#[derive(Debug, Default)]
struct Parts {
    reply: Option<Box<[u8]>>,
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
                    reply,
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
                Some((a, b)) => (parse_delay(a)?, parse_delay(b)?),
                None => (parse_delay(v)?, parse_delay(v)?),
            };
            if low > high {
                return Err(format!("delay={v}: the range is empty"));
            }
            parts.delay = Some((low, high));
        }
        ("greylist", v) => {
            let wait = parse_duration(v).map_err(|e| format!("greylist={v}: {e}"))?;
            if wait.is_zero() || wait > MAX_GREYLIST {
                return Err(format!(
                    "greylist={v}: a wait from 1s to {}",
                    format_duration(MAX_GREYLIST)
                ));
            }
            parts.greylist = Some(wait);
        }
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

/// `N/PERIOD`: N (a whole number, at least 1) commands per PERIOD, PERIOD a unit (`s`, `m`,
/// `h`, `d`: one of it) or a duration (`10s`, `1.5m`); `N` alone is per second.
pub(super) fn parse_rate(text: &str) -> Result<Rate, String> {
    let (count, per) = text.split_once('/').unwrap_or((text, "s"));
    let count: u32 = count.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        format!(
            "rate={text:?}: N/PERIOD with N a whole number of commands, at least 1 (100/m, 5/10s)"
        )
    })?;
    let period = match per {
        "s" | "m" | "h" | "d" => parse_duration(&format!("1{per}")),
        _ => parse_duration(per),
    }
    .map_err(|e| format!("rate={text:?}: the period is a unit (s, m, h, d) or a duration: {e}"))?;
    if period < Duration::from_millis(1) || period > MAX_RATE_PERIOD {
        return Err(format!(
            "rate={text:?}: a period from 1ms to {}",
            format_duration(MAX_RATE_PERIOD)
        ));
    }
    if (period / count).is_zero() {
        return Err(format!("rate={text:?}: more than one per nanosecond"));
    }
    Ok(Rate { count, period })
}

/// One end of a `delay=` range: a duration up to [`MAX_DELAY`], zero or at least a
/// millisecond (the worker's timers count whole milliseconds; a shorter pause would be one).
fn parse_delay(text: &str) -> Result<Duration, String> {
    let delay = parse_duration(text).map_err(|e| format!("delay={text}: {e}"))?;
    if delay > MAX_DELAY {
        return Err(format!(
            "delay={text}: delays go up to {}",
            format_duration(MAX_DELAY)
        ));
    }
    if !delay.is_zero() && delay < Duration::from_millis(1) {
        return Err(format!(
            "delay={text}: delays are timed in whole milliseconds: 0 or at least 1ms"
        ));
    }
    Ok(delay)
}

/// The longest reply line, CR LF included (RFC 5321 §4.5.3.1.5).
const MAX_REPLY_LINE: usize = 512;

/// A configured reply: `CODE [X.Y.Z] [TEXT]`, a 4xx or 5xx code; CR LF is added. Since the
/// server advertises ENHANCEDSTATUSCODES, every such reply carries an enhanced status code
/// (RFC 2034 §4): without one, the reply gets `X.0.0` of its class (RFC 3463 §3.1: "Other
/// undefined status", the code for when only the class is known), and one whose class is
/// not the reply's (`550 4.1.1`) is refused. Without text, the text is "Fault injected". The
/// line sent, enhanced code and CR LF included, is at most 512 octets (RFC 5321 §4.5.3.1.5).
/// The rule owns the bytes; a session reads them through its gate when it sends them.
fn parse_reply(text: &str) -> Result<Box<[u8]>, String> {
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
    let rest = text[3..].trim_start();
    let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
    let class = char::from(code.as_bytes()[0]);
    let looks_enhanced =
        first.contains('.') && first.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let (enhanced, words) = if looks_enhanced {
        check_enhanced_code(first, class).map_err(|e| format!("reply={text:?}: {e}"))?;
        (first.to_string(), after.trim_start())
    } else {
        (format!("{class}.0.0"), rest)
    };
    let words = if words.is_empty() {
        "Fault injected"
    } else {
        words
    };
    let line = format!("{code} {enhanced} {words}\r\n");
    if line.len() > MAX_REPLY_LINE {
        return Err(format!(
            "reply= of {} octets: the reply line sent would be {} octets with CR LF, more than the {MAX_REPLY_LINE} RFC 5321 §4.5.3.1.5 allows",
            text.len(),
            line.len()
        ));
    }
    Ok(line.into_bytes().into_boxed_slice())
}

/// Checks an enhanced status code (RFC 3463 §2: `class.subject.detail`, subject and detail
/// of 1 to 3 digits) and that its class is the reply's (RFC 2034 §4).
fn check_enhanced_code(code: &str, class: char) -> Result<(), String> {
    let fields: Vec<&str> = code.split('.').collect();
    let well_formed = fields.len() == 3
        && fields[0].len() == 1
        && fields[1..]
            .iter()
            .all(|f| (1..=3).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return Err(format!(
            "{code:?} is not an enhanced status code (X.Y.Z, RFC 3463: e.g. 5.1.1)"
        ));
    }
    if !fields[0].starts_with(class) {
        return Err(format!(
            "the enhanced code {code} is of another class than the reply (its first digit must be {class})"
        ));
    }
    Ok(())
}
