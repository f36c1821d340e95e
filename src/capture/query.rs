//! The search grammar (issue 18, "Decisions already taken"): a query string parsed into the
//! part the store evaluates on its index ([`Query::index`], a [`Filter`]) and the part that
//! needs the decoded message ([`Query::residual`]: decoded subject, body, headers the insert
//! did not locate), evaluated later on parsed views outside the store's lock.
//!
//! # The grammar
//!
//! A query is terms separated by white space, all required (AND). A term is `KEY OP VALUE`;
//! keys are ASCII case-insensitive; a value is a run of non-white-space characters or a
//! quoted phrase (`"a b"`, with `\"` and `\\` as escapes inside).
//!
//! | term | meaning | evaluated |
//! |---|---|---|
//! | `rcpt:A` `rcpt=A` | an envelope recipient is address A | index |
//! | `rcpt~T` | an envelope recipient contains T (ASCII case-insensitive) | index |
//! | `from:A` `from=A` | the envelope sender (MAIL FROM) is A (`from:<>`: the null sender) | index |
//! | `from~T` | the envelope sender contains T | index |
//! | `to:A` `to=A` | an address of the (first) `To:` header is A | index |
//! | `to~T` | the raw `To:` value contains T | index |
//! | `subject:S` `subject=S` | the decoded subject (RFC 2047) is S, exactly | view |
//! | `subject~T` | the decoded subject contains T (case-insensitive) | view |
//! | `message-id:I` | the `Message-ID` is I (angle brackets optional) | index |
//! | `header:NAME=V` | a field NAME's raw value, unfolded and trimmed, is V | index (located fields) or view |
//! | `header:NAME~T` | a field NAME's raw value contains T (case-insensitive) | index or view |
//! | `body:T` `body~T` | the decoded body text contains T (case-insensitive) | view |
//! | `before:W` | received strictly before W | index |
//! | `after:W` | received at or after W | index |
//! | `size>N` `size<N` | the raw message is more / fewer than N octets | index |
//! | `mailbox:ID` `mailbox=ID` | the message is in per-test mailbox ID ([`super::mailbox`]) | index |
//! | a bare word or `"phrase"` | the decoded subject or the body text contains it | view |
//!
//! Addresses (`:`/`=` on `rcpt`, `from`, `to`) compare as [`super::same_address`] does: the
//! local part exactly as sent, the domain ASCII case-insensitively; `a@x` never matches
//! `ba@x`; a quoted local part is written as in the address (`rcpt:"john doe"@x`), and a
//! whole address in quotes (`rcpt:"a@x"`) is the address inside. `W` is an RFC 3339 time (`2026-12-06T18:00:00Z`, an offset `+01:00` or a fraction
//! allowed), a date (`2026-12-06`, midnight UTC) or a duration ago in the grammar of
//! [`crate::units::parse_duration`] (`after:5m`). `N` is a size in the grammar of
//! [`crate::units::parse_bytes`] (`size>10K`). A bare word cannot contain `:`, `=`, `~`, `<`
//! or `>` (it would read as a term): quote it (`"re: hello"`).
//!
//! Bounds: at most [`QUERY_MAX_LEN`] octets and [`QUERY_MAX_TERMS`] terms.
//!
//! # Errors
//!
//! An unknown key, an operator a key does not take, a bad value, an empty value (unless
//! quoted: `subject:""`), an unbalanced quote or a query over the bounds is a [`QueryError`]
//! naming the term and its byte offset (from 0): the HTTP side answers `400`.
//!
//! What it does not do: evaluate anything (the store evaluates the index part; the view
//! room the residual), or check that a mailbox named is live (the API answers `404`/`410`).

use super::filter::{Filter, Match, Term};
use super::headers::Field;
use super::mailbox::MailboxId;
use std::time::{Duration, SystemTime};

/// The longest query, in octets.
pub const QUERY_MAX_LEN: usize = 4096;

/// The most terms in a query.
pub const QUERY_MAX_TERMS: usize = 32;

/// A parsed query: the index part and the residual part, both required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// The terms the store evaluates on its index, under its lock.
    pub index: Filter,
    /// The terms that need the decoded message, evaluated on parsed views.
    pub residual: Vec<Residual>,
}

impl Query {
    /// Whether every term is evaluated on the index (no view needed).
    pub fn index_only(&self) -> bool {
        self.residual.is_empty()
    }
}

/// A term evaluated on the decoded message, outside the store's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Residual {
    /// The decoded subject (RFC 2047, as the JSON record decodes it; absent: empty) is the
    /// text ([`Match::Exact`], after trimming) or contains it ([`Match::Contains`],
    /// case-insensitive: Unicode lower case).
    Subject {
        /// The text.
        text: String,
        /// How.
        how: Match,
    },
    /// The decoded body text contains the text (case-insensitive: Unicode lower case).
    Body(String),
    /// A header field the insert did not locate: one occurrence of `name` (ASCII
    /// case-insensitive) has a raw value, unfolded and trimmed, equal to `value`, or
    /// containing it case-insensitively.
    Header {
        /// The field name.
        name: String,
        /// The text.
        value: String,
        /// How.
        how: Match,
    },
    /// A bare word or phrase: the decoded subject or the body text contains it
    /// (case-insensitive).
    Text(String),
}

impl Residual {
    /// Whether evaluating it needs the parsed message (else the subject alone does).
    pub fn needs_view(&self) -> bool {
        !matches!(self, Residual::Subject { .. })
    }
}

/// A query that does not parse: which term, where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// The byte offset of the term in the query, from 0.
    pub position: usize,
    /// The term as written (or its key).
    pub term: String,
    /// Why it was refused.
    pub message: String,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at offset {}, `{}`: {}",
            self.position, self.term, self.message
        )
    }
}

impl std::error::Error for QueryError {}

/// The operator between a key and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `:` or `=`: exact.
    Exact,
    /// `~`: substring.
    Contains,
    /// `>`.
    Above,
    /// `<`.
    Below,
}

impl Op {
    /// The operator that `c` spells.
    fn of(c: char) -> Option<Op> {
        match c {
            ':' | '=' => Some(Op::Exact),
            '~' => Some(Op::Contains),
            '>' => Some(Op::Above),
            '<' => Some(Op::Below),
            _ => None,
        }
    }
}

/// The reader over the query text.
struct Reader<'a> {
    /// The query.
    text: &'a str,
    /// The next byte offset.
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The next character, if any.
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    /// Skips white space.
    fn skip_space(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    /// Reads while `keep` holds.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek().filter(|&c| keep(c)) {
            self.pos += c.len_utf8();
        }
        &self.text[start..self.pos]
    }

    /// Reads a value: a quoted phrase (`quoted` true) or a run of non-white-space.
    fn value(&mut self, term_start: usize, key: &str) -> Result<(String, bool), QueryError> {
        if self.peek() != Some('"') {
            return Ok((self.take_while(|c| !c.is_whitespace()).to_string(), false));
        }
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(QueryError {
                    position: open,
                    term: key.to_string(),
                    message: "unbalanced quote: no closing `\"`".to_string(),
                });
            };
            self.pos += c.len_utf8();
            match c {
                '"' => break,
                '\\' => match self.peek() {
                    Some(e @ ('"' | '\\')) => {
                        self.pos += 1;
                        out.push(e);
                    }
                    _ => out.push('\\'),
                },
                c => out.push(c),
            }
        }
        // A closing quote must end the term.
        if self.peek().is_some_and(|c| !c.is_whitespace()) {
            return Err(QueryError {
                position: term_start,
                term: self.text[term_start..self.pos].to_string(),
                message: "text right after a closing quote (put a space between terms)".to_string(),
            });
        }
        Ok((out, true))
    }
}

impl Reader<'_> {
    /// Reads an address value: like [`Reader::value`], except that a quoted local part may
    /// be followed by the rest of the address (`"john doe"@x` is the address as written,
    /// quotes kept, as addresses are compared).
    fn address(&mut self, term_start: usize, key: &str) -> Result<(String, bool), QueryError> {
        let from = self.pos;
        match self.value(term_start, key) {
            Err(e) if e.message.starts_with("text right after a closing quote") => {
                self.pos = from;
                let mut quoted = false;
                let mut escaped = false;
                while let Some(c) = self.peek() {
                    if !quoted && c.is_whitespace() {
                        break;
                    }
                    self.pos += c.len_utf8();
                    match c {
                        _ if escaped => escaped = false,
                        '\\' if quoted => escaped = true,
                        '"' => quoted = !quoted,
                        _ => {}
                    }
                }
                if quoted {
                    return Err(QueryError {
                        position: from,
                        term: key.to_string(),
                        message: "unbalanced quote: no closing `\"`".to_string(),
                    });
                }
                Ok((self.text[from..self.pos].to_string(), false))
            }
            other => other,
        }
    }
}

/// Parses `text` into a [`Query`]; `now` is the time durations (`after:5m`) count back
/// from. An empty query matches everything.
pub fn parse(text: &str, now: SystemTime) -> Result<Query, QueryError> {
    if text.len() > QUERY_MAX_LEN {
        return Err(QueryError {
            position: QUERY_MAX_LEN,
            term: String::new(),
            message: format!("the query is longer than {QUERY_MAX_LEN} octets"),
        });
    }
    let mut reader = Reader { text, pos: 0 };
    let mut query = Query::default();
    let mut terms = 0;
    loop {
        reader.skip_space();
        let start = reader.pos;
        let Some(first) = reader.peek() else {
            return Ok(query);
        };
        terms += 1;
        if terms > QUERY_MAX_TERMS {
            return Err(QueryError {
                position: start,
                term: String::new(),
                message: format!("more than {QUERY_MAX_TERMS} terms"),
            });
        }
        if first == '"' {
            let (phrase, _) = reader.value(start, "\"")?;
            if !phrase.is_empty() {
                query.residual.push(Residual::Text(phrase));
            }
            continue;
        }
        let key = reader.take_while(|c| !c.is_whitespace() && Op::of(c).is_none() && c != '"');
        let op = match reader.peek() {
            Some(c) => Op::of(c),
            None => None,
        };
        let Some(op) = op else {
            if reader.peek() == Some('"') {
                return Err(QueryError {
                    position: start,
                    term: key.to_string(),
                    message: "a quote inside a word (quote the whole phrase, or write KEY:\"...\")"
                        .to_string(),
                });
            }
            query.residual.push(Residual::Text(key.to_string()));
            continue;
        };
        reader.pos += 1;
        term(&mut reader, &mut query, start, key, op, now)?;
    }
}

/// Reads the value of the term `key op` that starts at `start`, and adds the term.
fn term(
    reader: &mut Reader<'_>,
    query: &mut Query,
    start: usize,
    key: &str,
    op: Op,
    now: SystemTime,
) -> Result<(), QueryError> {
    let lower = key.to_ascii_lowercase();
    let error = |message: String| QueryError {
        position: start,
        term: key.to_string(),
        message,
    };
    let ops_of = |wanted: &[Op], spelled: &str| -> Result<(), QueryError> {
        if wanted.contains(&op) {
            Ok(())
        } else {
            Err(error(format!("takes {spelled}")))
        }
    };
    let known = [
        "rcpt",
        "from",
        "to",
        "subject",
        "message-id",
        "header",
        "body",
        "mailbox",
        "before",
        "after",
        "size",
    ];
    if !known.contains(&lower.as_str()) {
        let message = if key.is_empty() {
            "a term needs a key before its operator (quote a phrase: \"...\")".to_string()
        } else {
            format!(
                "unknown term (known: rcpt from to subject message-id header body mailbox \
                 before after size; quote a phrase to search for it: \"{}\")",
                &reader.text[start..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
            )
        };
        return Err(error(message));
    }
    if lower == "header" {
        ops_of(&[Op::Exact], "`:` then NAME=VALUE or NAME~VALUE")?;
        let name = reader.take_while(|c| !c.is_whitespace() && c != '=' && c != '~');
        let how = match reader.peek() {
            Some('=') => Match::Exact,
            Some('~') => Match::Contains,
            _ => {
                return Err(error(
                    "takes NAME=VALUE or NAME~VALUE (header:X-Tag=blue)".to_string(),
                ))
            }
        };
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
            return Err(error(format!(
                "{name:?} is not a header field name (RFC 5322 §3.6.8: printable ASCII, no colon)"
            )));
        }
        reader.pos += 1;
        let (value, quoted) = reader.value(start, key)?;
        if value.is_empty() && !quoted {
            return Err(error(
                "an empty value (write \"\" to mean empty)".to_string(),
            ));
        }
        match Field::from_name(name.as_bytes()) {
            Some(field) => {
                query.index = std::mem::take(&mut query.index).and(Term::Header {
                    field,
                    value: value.into_bytes(),
                    how,
                })
            }
            None => query.residual.push(Residual::Header {
                name: name.to_string(),
                value,
                how,
            }),
        }
        return Ok(());
    }
    let (value, quoted) = if ["rcpt", "from", "to"].contains(&lower.as_str()) {
        reader.address(start, key)?
    } else {
        reader.value(start, key)?
    };
    if value.is_empty() && !quoted {
        return Err(error(
            "an empty value (write \"\" to mean empty)".to_string(),
        ));
    }
    let index = |query: &mut Query, term: Term| {
        query.index = std::mem::take(&mut query.index).and(term);
    };
    let how = if op == Op::Contains {
        Match::Contains
    } else {
        Match::Exact
    };
    match lower.as_str() {
        "rcpt" | "from" | "to" => {
            ops_of(&[Op::Exact, Op::Contains], "`:`, `=` or `~`")?;
            let bytes = value.into_bytes();
            index(
                query,
                match (lower.as_str(), how) {
                    ("rcpt", Match::Exact) => Term::Recipient(bytes),
                    ("rcpt", Match::Contains) => Term::RecipientContains(bytes),
                    ("from", Match::Exact) => Term::Sender(bytes),
                    ("from", Match::Contains) => Term::SenderContains(bytes),
                    (_, Match::Exact) => Term::HeaderAddress {
                        field: Field::To,
                        address: bytes,
                    },
                    (_, Match::Contains) => Term::Header {
                        field: Field::To,
                        value: bytes,
                        how: Match::Contains,
                    },
                },
            );
        }
        "subject" => {
            ops_of(&[Op::Exact, Op::Contains], "`:`, `=` or `~`")?;
            query.residual.push(Residual::Subject { text: value, how });
        }
        "message-id" => {
            ops_of(&[Op::Exact, Op::Contains], "`:`, `=` or `~`")?;
            let bytes = value.into_bytes();
            index(
                query,
                match how {
                    Match::Exact => Term::MessageId(bytes),
                    Match::Contains => Term::Header {
                        field: Field::MessageId,
                        value: bytes,
                        how,
                    },
                },
            );
        }
        "body" => {
            ops_of(
                &[Op::Exact, Op::Contains],
                "`:`, `=` or `~` (all substring)",
            )?;
            if !value.is_empty() {
                query.residual.push(Residual::Body(value));
            }
        }
        "mailbox" => {
            ops_of(&[Op::Exact], "`:` or `=`")?;
            let id = MailboxId::parse(value.as_bytes()).ok_or_else(|| {
                error(format!(
                    "{value:?} is not a mailbox id (12 letters and digits)"
                ))
            })?;
            index(query, Term::Mailbox(id));
        }
        "before" | "after" => {
            ops_of(&[Op::Exact], "`:` or `=`")?;
            let at = time_value(&value, now).map_err(error)?;
            index(
                query,
                if lower == "before" {
                    Term::ReceivedBefore(at)
                } else {
                    Term::ReceivedAfter(at)
                },
            );
        }
        _ => {
            // "size"
            ops_of(&[Op::Above, Op::Below], "`>` or `<` (size>10K)")?;
            let n = crate::units::parse_bytes(&value).map_err(error)?;
            index(
                query,
                if op == Op::Above {
                    Term::SizeAbove(n)
                } else {
                    Term::SizeBelow(n)
                },
            );
        }
    }
    Ok(())
}

/// The time `text` names: RFC 3339, a date, or a duration before `now`.
fn time_value(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    if text.as_bytes().first().is_some_and(u8::is_ascii_digit) && text.get(4..5) == Some("-") {
        return rfc3339(text);
    }
    let ago = crate::units::parse_duration(text).map_err(|e| {
        format!("{e}; a time is RFC 3339 (2026-12-06T18:00:00Z), a date or a duration ago (5m)")
    })?;
    now.checked_sub(ago)
        .ok_or_else(|| format!("{text:?}: too far back"))
}

/// Days from 1970-01-01 to the civil date (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 `date-time` (§5.6; `T`/`t` or a lone date, then `Z`/`z` or an offset;
/// a leap second `:60` reads as `:59`).
fn rfc3339(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time (2026-12-06T18:00:00Z)");
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let digits = text.get(range).ok_or_else(bad)?;
        if digits.is_empty() || !digits.bytes().all(|d| d.is_ascii_digit()) {
            return Err(bad());
        }
        digits.parse().map_err(|_| bad())
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b.get(7) != Some(&b'-') {
        return Err(bad());
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] {
        return Err(format!("{text:?}: no such date"));
    }
    let mut seconds = days_from_civil(year, month, day) * 86_400;
    let mut nanos = 0u32;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't') || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
            return Err(bad());
        }
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if hour > 23 || minute > 59 || second > 60 {
            return Err(format!("{text:?}: no such time of day"));
        }
        seconds += hour * 3600 + minute * 60 + second.min(59);
        let mut pos = 19;
        if b.get(pos) == Some(&b'.') {
            let digits = b[pos + 1..]
                .iter()
                .take_while(|d| d.is_ascii_digit())
                .count();
            if digits == 0 {
                return Err(bad());
            }
            let kept = &text[pos + 1..pos + 1 + digits.min(9)];
            nanos = kept.parse::<u32>().map_err(|_| bad())? * 10u32.pow(9 - kept.len() as u32);
            pos += 1 + digits;
        }
        match b.get(pos) {
            Some(b'Z' | b'z') if pos + 1 == b.len() => {}
            Some(sign @ (b'+' | b'-')) if pos + 6 == b.len() && b[pos + 3] == b':' => {
                let (oh, om) = (num(pos + 1..pos + 3)?, num(pos + 4..pos + 6)?);
                if oh > 23 || om > 59 {
                    return Err(bad());
                }
                let offset = oh * 3600 + om * 60;
                // Local time = UTC + offset (RFC 3339 §4.2), so UTC = local - offset.
                seconds -= if *sign == b'+' { offset } else { -offset };
            }
            _ => return Err(bad()),
        }
    }
    let seconds = u64::try_from(seconds).map_err(|_| format!("{text:?}: before 1970"))?;
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::new(seconds, nanos))
        .ok_or_else(|| format!("{text:?}: out of range"))
}

#[cfg(test)]
mod tests;
