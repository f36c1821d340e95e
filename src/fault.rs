//! Fault injection: rules that make chosen commands fail, hang up or answer late, on purpose,
//! so senders can be tested against a misbehaving receiver.
//!
//! What it does: parse `--fault` rules and decide, for each command a session is about to
//! carry out, whether a rule fires. A rule names the point (a command, `connect` or `eod`,
//! the end of message content), optional selectors (sender or recipient pattern, the Nth or
//! every Nth matching occurrence, a probability) and what happens:
//!
//! ```text
//! rcpt to=*@bad.example reply=550 5.1.1 No such user
//! mail from=spam*@* nth=3 disconnect
//! eod p=0.1 reply=451 4.3.0 Try again later
//! data every=2 delay=200ms..1s
//! connect disconnect=421
//! ```
//!
//! Occurrences are counted per rule over the whole server, so `nth=3` is the third matching
//! command the server sees. Probabilities come from a hash of (`--seed`, rule, occurrence), so
//! a run repeats exactly for the same sequence of commands.
//!
//! What it does not do: carry the action out (the session replies or closes; the worker keeps
//! the time of a delay) or keep any clock.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most (client, sender, recipient) triplets or client buckets a rule remembers; beyond,
/// entries older than [`FORGET_AFTER`] are dropped, and if that is not enough, all.
const MAX_REMEMBERED: usize = 100_000;
/// How long greylisting remembers a triplet.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The reply of a greylisting rule without `reply=` (RFC 6647 §2.1 suggests a 4xx; 4.7.1).
const GREYLISTED: &[u8] = b"451 4.7.1 Greylisted, please try again later\r\n";

/// Where in a session a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
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
    /// The end of message content (the final dot, or `BDAT ... LAST`), before `250`.
    Eod,
    /// `BDAT`.
    Bdat,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
}

impl FaultPoint {
    const NAMES: [(&'static str, FaultPoint); 11] = [
        ("connect", FaultPoint::Connect),
        ("helo", FaultPoint::Helo),
        ("ehlo", FaultPoint::Ehlo),
        ("mail", FaultPoint::Mail),
        ("rcpt", FaultPoint::Rcpt),
        ("data", FaultPoint::Data),
        ("eod", FaultPoint::Eod),
        ("bdat", FaultPoint::Bdat),
        ("rset", FaultPoint::Rset),
        ("noop", FaultPoint::Noop),
        ("quit", FaultPoint::Quit),
    ];
}

/// What a firing rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this reply (CR LF included) instead of carrying the command out.
    Reply(&'static [u8]),
    /// Close the connection without a word.
    Disconnect,
    /// Say `421 4.7.0` and close.
    Disconnect421,
    /// Hold the reply (and everything after it) this long; the command is carried out
    /// normally, unless `then` gives the reply to send instead.
    Delay {
        /// How long.
        hold: Duration,
        /// The reply after the delay, instead of carrying the command out.
        then: Option<&'static [u8]>,
    },
}

/// What a decision may look at (borrowed from the session, nothing copied).
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultContext<'a> {
    /// The client's address (greylisting and rate limits are per client).
    pub client: Option<IpAddr>,
    /// The time of the decision (greylisting and rate limits need it; the caller reads the
    /// clock so this module keeps none).
    pub now: Option<Instant>,
    /// The transaction's sender (empty before `MAIL`, and for `<>`).
    pub sender: &'a [u8],
    /// At `RCPT`: the recipient being given. Empty elsewhere.
    pub recipient: &'a [u8],
    /// The recipients accepted so far, back to back (see `accepted_ends`).
    pub accepted: &'a [u8],
    /// End offset of each accepted recipient in `accepted`.
    pub accepted_ends: &'a [u32],
}

impl FaultContext<'_> {
    /// The recipients a `to=` pattern is matched against: the one being given at `RCPT`,
    /// the accepted ones later.
    fn any_recipient(&self, mut matches: impl FnMut(&[u8]) -> bool) -> bool {
        if !self.recipient.is_empty() {
            return matches(self.recipient);
        }
        let mut start = 0usize;
        self.accepted_ends.iter().any(|&end| {
            let recipient = &self.accepted[start..end as usize];
            start = end as usize;
            matches(recipient)
        })
    }
}

/// What greylisting keys on: client address, sender, recipient (both lowercased).
type Triplet = (IpAddr, Vec<u8>, Vec<u8>);

/// One rule.
#[derive(Debug)]
struct Rule {
    text: String,
    point: FaultPoint,
    from: Option<String>,
    to: Option<String>,
    nth: Option<u64>,
    every: Option<u64>,
    probability: Option<f64>,
    delay: Option<(Duration, Duration)>,
    action: Option<FaultAction>,
    /// `greylist=D`: refuse a (client, sender, recipient) until D after its first attempt.
    greylist: Option<Duration>,
    /// When each triplet was first seen.
    greylisted: Mutex<HashMap<Triplet, Instant>>,
    /// `rate=N/s`: the rule applies to a client only beyond this many per second.
    rate: Option<f64>,
    /// Per client: (tokens, last refill).
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    /// Matching occurrences seen.
    seen: AtomicU64,
    /// Times fired.
    fired: AtomicU64,
}

/// The server's rules, shared by every session.
#[derive(Debug, Default)]
pub struct FaultRules {
    rules: Vec<Rule>,
    seed: u64,
}

impl FaultRules {
    /// Parses rules (the `--fault` values, in order: the first that fires wins).
    pub fn parse(texts: &[String], seed: u64) -> Result<FaultRules, String> {
        let rules = texts
            .iter()
            .map(|t| parse_rule(t).map_err(|e| format!("--fault {t:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(FaultRules { rules, seed })
    }

    /// Reads rules from a TOML file: `rules = ["...", ...]` (the `--fault` syntax) and an
    /// optional `seed = N`. Returns the rules and the seed.
    pub fn read_file(path: &std::path::Path) -> Result<(Vec<String>, Option<u64>), String> {
        let shown = path.display();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("--fault-file {shown}: {e}"))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| format!("--fault-file {shown}: not TOML: {e}"))?;
        let mut rules = Vec::new();
        let mut seed = None;
        for (key, value) in &table {
            match (key.as_str(), value) {
                ("rules", toml::Value::Array(items)) => {
                    for item in items {
                        match item {
                            toml::Value::String(rule) => rules.push(rule.clone()),
                            other => {
                                return Err(format!(
                                    "--fault-file {shown}: rules holds strings, not {}", other.type_str()
                                ))
                            }
                        }
                    }
                }
                ("seed", toml::Value::Integer(n)) if *n >= 0 => seed = Some(*n as u64),
                _ => {
                    return Err(format!(
                        "--fault-file {shown}: unexpected {key:?} (expected rules = [\"...\"] and seed = N)"
                    ))
                }
            }
        }
        Ok((rules, seed))
    }

    /// Whether there is any rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule applies at `point` (lets callers skip building a context).
    pub fn watches(&self, point: FaultPoint) -> bool {
        self.rules.iter().any(|r| r.point == point)
    }

    /// Decides for one occurrence of `point`: the action of the first rule that fires.
    pub fn decide(&self, point: FaultPoint, context: &FaultContext<'_>) -> Option<FaultAction> {
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.point != point || !rule.selects(context) || !rule.over_rate(context) {
                continue;
            }
            if let Some(wait) = rule.greylist {
                if !rule.greylists(context, wait) {
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
            return Some(match (rule.delay, rule.action) {
                (Some((low, high)), action) => {
                    let spread = high.saturating_sub(low).as_secs_f64();
                    let pick = unit(self.seed, index as u64, occurrence, 1);
                    FaultAction::Delay {
                        hold: low + Duration::from_secs_f64(spread * pick),
                        then: match action {
                            Some(FaultAction::Reply(reply)) => Some(reply),
                            _ => None,
                        },
                    }
                }
                (None, Some(action)) => action,
                (None, None) if rule.greylist.is_some() => FaultAction::Reply(GREYLISTED),
                // Parsing refuses a rule without an action; such a rule never fires.
                (None, None) => continue,
            });
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

impl Rule {
    /// With `rate=`: takes a token from the client's bucket; true when there was none (the
    /// client is over the rate, so the rule applies). Without `rate=`: true.
    fn over_rate(&self, context: &FaultContext<'_>) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let (Some(client), Some(now)) = (context.client, context.now) else {
            return false;
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_REMEMBERED {
            buckets.retain(|_, (_, last)| {
                now.saturating_duration_since(*last) < Duration::from_secs(60)
            });
        }
        // A bucket holds one second's worth (at least one token), refilled continuously.
        let capacity = rate.max(1.0);
        let (tokens, last) = buckets.entry(client).or_insert((capacity, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            false
        } else {
            true
        }
    }

    /// Greylisting (RFC 6647): true while this (client, sender, recipient) must still be
    /// refused: at its first attempt and until `wait` has passed since.
    fn greylists(&self, context: &FaultContext<'_>, wait: Duration) -> bool {
        let (Some(client), Some(now)) = (context.client, context.now) else {
            return false;
        };
        let mut seen = self.greylisted.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, first| now.saturating_duration_since(*first) < FORGET_AFTER);
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
        }
        let key = (
            client,
            context.sender.to_ascii_lowercase(),
            context.recipient.to_ascii_lowercase(),
        );
        let first = *seen.entry(key).or_insert(now);
        now.saturating_duration_since(first) < wait
    }

    fn selects(&self, context: &FaultContext<'_>) -> bool {
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

impl fmt::Display for FaultPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES
            .iter()
            .find(|(_, p)| p == self)
            .map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

/// A number in [0, 1) from (seed, rule, occurrence, purpose): splitmix64 over their mix.
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

/// Case-insensitive match of `text` against `pattern`, where `*` matches any run of bytes.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard matching with one backtrack point (linear in practice).
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p].eq_ignore_ascii_case(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

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

fn parse_rule(text: &str) -> Result<Rule, String> {
    let text = text.trim();
    let (point_name, mut rest) = text.split_once(' ').unwrap_or((text, ""));
    let point = FaultPoint::NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(point_name))
        .map(|(_, p)| *p)
        .ok_or_else(|| {
            let names: Vec<&str> = FaultPoint::NAMES.iter().map(|(n, _)| *n).collect();
            format!("unknown point {point_name:?} (one of {})", names.join(", "))
        })?;
    let mut rule = Rule {
        text: text.to_string(),
        point,
        from: None,
        to: None,
        nth: None,
        every: None,
        probability: None,
        delay: None,
        action: None,
        greylist: None,
        greylisted: Mutex::new(HashMap::new()),
        rate: None,
        buckets: Mutex::new(HashMap::new()),
        seen: AtomicU64::new(0),
        fired: AtomicU64::new(0),
    };
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if let Some(reply) = rest.strip_prefix("reply=") {
            // The reply takes the rest of the rule: its text may contain spaces.
            rule.action = Some(FaultAction::Reply(parse_reply(reply)?));
            break;
        }
        let (word, after) = rest.split_once(' ').unwrap_or((rest, ""));
        rest = after;
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        let count = |v: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{key}={v:?}: a count of at least 1"))
        };
        match (key, value) {
            ("from", v) if !v.is_empty() => rule.from = Some(v.to_string()),
            ("to", v) if !v.is_empty() => rule.to = Some(v.to_string()),
            ("nth", v) => rule.nth = Some(count(v)?),
            ("every", v) => rule.every = Some(count(v)?),
            ("p", v) => {
                let p: f64 = v
                    .parse()
                    .ok()
                    .filter(|p: &f64| (0.0..=1.0).contains(p))
                    .ok_or_else(|| format!("p={v:?}: a probability from 0 to 1"))?;
                rule.probability = Some(p);
            }
            ("delay", v) => {
                let (low, high) = match v.split_once("..") {
                    Some((a, b)) => (parse_duration(a)?, parse_duration(b)?),
                    None => (parse_duration(v)?, parse_duration(v)?),
                };
                if low > high {
                    return Err(format!("delay={v}: the range is empty"));
                }
                rule.delay = Some((low, high));
            }
            ("greylist", v) => rule.greylist = Some(parse_duration(v)?),
            ("rate", v) => {
                let (count, per) = v.split_once('/').unwrap_or((v, "s"));
                let count: f64 = count
                    .parse()
                    .ok()
                    .filter(|n: &f64| *n > 0.0 && n.is_finite())
                    .ok_or_else(|| format!("rate={v:?}: expected N/s or N/m, N > 0"))?;
                let per_second = match per {
                    "s" => count,
                    "m" => count / 60.0,
                    _ => return Err(format!("rate={v:?}: expected N/s or N/m")),
                };
                rule.rate = Some(per_second);
            }
            ("disconnect", "") => rule.action = Some(FaultAction::Disconnect),
            ("disconnect", "421") => rule.action = Some(FaultAction::Disconnect421),
            _ => {
                return Err(format!(
                    "{word:?}: expected from=, to=, nth=, every=, p=, rate=, delay=, greylist=, disconnect, disconnect=421 or reply=CODE TEXT"
                ))
            }
        }
    }
    if rule.action.is_none() && rule.delay.is_none() && rule.greylist.is_none() {
        return Err(
            "no action: give reply=..., disconnect, disconnect=421, delay=... or greylist=..."
                .into(),
        );
    }
    if rule.greylist.is_some() && rule.point != FaultPoint::Rcpt {
        return Err("greylist= applies at rcpt (it keys on client, sender and recipient)".into());
    }
    if rule.greylist.is_some()
        && (rule.delay.is_some()
            || matches!(
                rule.action,
                Some(FaultAction::Disconnect | FaultAction::Disconnect421)
            ))
    {
        return Err("greylist= goes with reply= or alone".into());
    }
    if rule.delay.is_some()
        && matches!(
            rule.action,
            Some(FaultAction::Disconnect | FaultAction::Disconnect421)
        )
    {
        return Err("delay= goes with reply= or alone, not with disconnect".into());
    }
    if rule.point == FaultPoint::Connect && (rule.to.is_some() || rule.from.is_some()) {
        return Err("connect has no sender or recipient to match".into());
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(texts: &[&str]) -> FaultRules {
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        FaultRules::parse(&texts, 7).unwrap()
    }

    fn rcpt(rules: &FaultRules, to: &str) -> Option<FaultAction> {
        rules.decide(
            FaultPoint::Rcpt,
            &FaultContext {
                sender: b"a@b.example",
                recipient: to.as_bytes(),
                ..FaultContext::default()
            },
        )
    }

    #[test]
    fn globs() {
        assert!(glob(b"*@bad.example", b"x@BAD.example"));
        assert!(glob(b"spam*@*", b"spam42@host"));
        assert!(!glob(b"spam*@*", b"ham@host"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"aXXbYYbc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
        assert!(glob(b"exact", b"EXACT"));
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
        assert!(r.watches(FaultPoint::Rcpt) && !r.watches(FaultPoint::Mail));
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
            r.decide(FaultPoint::Data, &context),
            Some(FaultAction::Delay {
                hold: Duration::from_millis(200),
                then: None
            })
        );
        let r = rules(&["data delay=100ms..1s"]);
        for _ in 0..100 {
            let Some(FaultAction::Delay { hold, .. }) = r.decide(FaultPoint::Data, &context) else {
                panic!("no delay");
            };
            assert!(hold >= Duration::from_millis(100) && hold <= Duration::from_secs(1));
        }
        let r = rules(&["eod delay=1s reply=451 4.3.0 slow and failed"]);
        assert_eq!(
            r.decide(FaultPoint::Eod, &context),
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
                FaultPoint::Mail,
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
                FaultPoint::Rcpt,
                &FaultContext {
                    client: Some(IpAddr::from(client)),
                    now: Some(t0 + Duration::from_secs(after)),
                    sender: b"a@b.example",
                    recipient: to.as_bytes(),
                    ..FaultContext::default()
                },
            )
        };
        let refused = Some(FaultAction::Reply(GREYLISTED));
        assert_eq!(attempt([10, 0, 0, 1], "x@y", 0), refused);
        assert_eq!(attempt([10, 0, 0, 1], "x@y", 10), refused);
        assert_eq!(attempt([10, 0, 0, 1], "x@y", 31), None);
        assert_eq!(attempt([10, 0, 0, 1], "X@Y", 32), None, "case-insensitive");
        // Another client, or another recipient, starts its own wait.
        assert_eq!(attempt([10, 0, 0, 2], "x@y", 31), refused);
        assert_eq!(attempt([10, 0, 0, 1], "z@y", 31), refused);
    }

    #[test]
    fn rate_limits_apply_per_client_beyond_the_rate() {
        let r = rules(&["mail rate=2/s reply=450 4.7.0 Slow down"]);
        let t0 = Instant::now();
        let mail = |client: u8, at_ms: u64| {
            r.decide(
                FaultPoint::Mail,
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
        std::fs::write(&bad, "rules = [1]\n").unwrap();
        assert!(FaultRules::read_file(&bad).unwrap_err().contains("strings"));
        std::fs::write(&bad, "rules = [\n").unwrap();
        assert!(FaultRules::read_file(&bad)
            .unwrap_err()
            .contains("not TOML"));
        assert!(FaultRules::read_file(&dir.join("missing.toml")).is_err());
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
        bad("rcpt delay=90m", "one hour");
        bad("rcpt delay=5h", "unknown unit");
        bad("rcpt delay=2s..1s", "empty");
        bad("rcpt frobnicate disconnect", "expected");
        bad("rcpt delay=1s disconnect", "not with disconnect");
        bad("connect to=*@x disconnect", "connect has no");
        bad("mail greylist=30s", "applies at rcpt");
        bad("rcpt rate=0/s disconnect", "N > 0");
        bad("rcpt rate=5/h disconnect", "N/s or N/m");
    }
}
