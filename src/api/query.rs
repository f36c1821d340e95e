//! A request's query string read into what the routes need: the filter parameters
//! (`rcpt=`, `from=`, `subject=`, `subject~=`, `header.NAME=`, `header.NAME~=`) as a
//! [`Selection`], and the bounded numbers (`count`, `limit`, `timeout`, cursors).
//!
//! `rcpt=` and `from=` compare addresses as [`crate::capture::same_address`] does (local part
//! as sent, domain case-insensitive: `a@x` never matches `ba@x`), from the store's index.
//! `subject=` is the decoded subject (RFC 2047, as the JSON record decodes it), trimmed, equal
//! octet for octet; `subject~=` a case-insensitive substring of it (ASCII letters and, for
//! other scripts, Unicode lower case). `header.NAME=` compares a located field's unfolded,
//! trimmed raw value (From, To, Cc, Subject, Message-ID, Date); `header.NAME~=` a
//! case-insensitive substring of it. `mailbox=ID` selects a per-test mailbox's messages (from
//! its own index). Every parameter given must hold (AND); a parameter given twice must hold
//! twice.
//!
//! Bad input (an unknown parameter, a value out of its bounds, a header the store does not
//! locate, bad percent-encoding) is a [`BadRequest`]: the route answers `400` with its text.
//!
//! What it does not do: parse the search grammar (`q=`, another room's job), or evaluate the
//! decoded subject under the store's lock (that runs on snapshots, see [`Selection::admits`]).

use crate::capture::{Field, Filter, MailboxId, Match, Snapshot, Term, WaitKey};
use crate::units::parse_duration;
use crate::view::search::{decoded_subject, subject_holds};
use std::time::Duration;

/// The longest `timeout` of an `await`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// The `timeout` of an `await` without one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most messages an `await` waits for (`count`).
pub const MAX_COUNT: usize = 500;
/// The most summaries on one page of `messages` (`limit`).
pub const MAX_LIMIT: usize = 500;
/// The page size of `messages` without a `limit`.
pub const DEFAULT_LIMIT: usize = 50;

/// A `400`'s message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// The query string's pairs, percent-decoded (`+` is a space).
pub fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, BadRequest> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

/// `text` percent-decoded, `+` as a space; it must be UTF-8.
fn decode(text: &str) -> Result<String, BadRequest> {
    let bad = || BadRequest(format!("bad percent-encoding in {text:?}"));
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next().ok_or_else(bad)?, bytes.next().ok_or_else(bad)?];
                let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| BadRequest(format!("{text:?} is not UTF-8 once decoded")))
}

/// Which messages a request means: a [`Filter`] the store evaluates on its index, and
/// conditions on the decoded subject evaluated on snapshots.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The index part.
    pub filter: Filter,
    /// The first `rcpt=`, for the waiter's key.
    recipient: Option<String>,
    /// `subject=` (exact) and `subject~=` (contains) values: each must hold of the decoded
    /// subject ([`crate::view::search::subject_holds`]).
    subject: Vec<(String, Match)>,
    /// `mailbox=` values as given (the route answers `404`/`410` for one not live before
    /// the store is asked).
    mailboxes: Vec<String>,
}

impl Selection {
    /// Whether there are conditions beyond the index's.
    pub fn has_residual(&self) -> bool {
        !self.subject.is_empty()
    }

    /// Whether a message the filter matched meets the decoded-subject conditions too.
    pub fn admits(&self, message: &Snapshot) -> bool {
        if !self.has_residual() {
            return true;
        }
        let Some(subject) = decoded_subject(message) else {
            return false;
        };
        self.subject
            .iter()
            .all(|(text, how)| subject_holds(&subject, text, *how))
    }

    /// What a waiter for these messages waits on: their mailbox if one is named, else their
    /// recipient if one is named.
    pub fn wait_key(&self) -> WaitKey {
        if let Some(id) = self.filter.mailboxes().next() {
            return WaitKey::Mailbox(*id);
        }
        match &self.recipient {
            Some(address) => WaitKey::Recipient(address.as_bytes().to_vec()),
            None => WaitKey::Any,
        }
    }

    /// The `mailbox=` values, as given.
    pub fn mailboxes(&self) -> impl Iterator<Item = &str> + '_ {
        self.mailboxes.iter().map(String::as_str)
    }

    /// Takes `key=value` if it is a filter parameter: `Ok(true)` if it was, `Ok(false)` if
    /// it is something else.
    fn take(&mut self, key: &str, value: &str) -> Result<bool, BadRequest> {
        if matches!(key, "rcpt" | "from") && value.contains(' ') && !value.contains('"') {
            return Err(BadRequest(format!(
                "{key}={value:?}: an address has no space here; a + in a query string reads \
                 as a space (HTML form encoding): write + as %2B (user%2Btag@example.com)"
            )));
        }
        let term = match key {
            "rcpt" => {
                // An empty value (an unset shell variable) would match nothing, and so pass
                // an `expect=none` falsely; an empty local part is no address either (RFC
                // 5321 §4.1.2: a Local-part has at least one character; `""@x` is one).
                if value.is_empty() || value.starts_with('@') {
                    return Err(BadRequest(format!(
                        "rcpt={value:?}: not an address (a local part, then @ and a domain: \
                         user@example.com; or a bare local part such as postmaster)"
                    )));
                }
                if self.recipient.is_none() {
                    self.recipient = Some(value.to_owned());
                }
                Term::Recipient(value.as_bytes().to_vec())
            }
            "from" => Term::Sender(value.as_bytes().to_vec()),
            "mailbox" => {
                self.mailboxes.push(value.to_owned());
                match MailboxId::parse(value.as_bytes()) {
                    Some(id) => Term::Mailbox(id),
                    // Not an id: the route answers 404 before the filter is used.
                    None => return Ok(true),
                }
            }
            "subject" => {
                self.subject.push((value.to_owned(), Match::Exact));
                return Ok(true);
            }
            "subject~" => {
                self.subject.push((value.to_owned(), Match::Contains));
                return Ok(true);
            }
            _ => {
                let Some(name) = key.strip_prefix("header.") else {
                    return Ok(false);
                };
                let (name, how) = match name.strip_suffix('~') {
                    Some(name) => (name, Match::Contains),
                    None => (name, Match::Exact),
                };
                let field = Field::from_name(name.as_bytes()).ok_or_else(|| {
                    BadRequest(format!(
                        "{key}: only these header fields can be matched: From, To, Cc, \
                         Subject, Message-ID, Date"
                    ))
                })?;
                let value = match how {
                    Match::Exact => value.trim(),
                    Match::Contains => value,
                };
                Term::Header {
                    field,
                    value: value.as_bytes().to_vec(),
                    how,
                }
            }
        };
        self.filter = std::mem::take(&mut self.filter).and(term);
        Ok(true)
    }
}

/// What `await` was asked.
#[derive(Debug, Clone)]
pub struct AwaitQuery {
    /// Which messages.
    pub selection: Selection,
    /// How many must match (`count`, 1 to [`MAX_COUNT`]).
    pub count: usize,
    /// Only messages after this cursor (`after`, default 0: everything kept).
    pub after: u64,
    /// How long to wait (`timeout`, up to [`MAX_TIMEOUT`]).
    pub timeout: Duration,
    /// `expect=none`: success is that nothing matches by the timeout.
    pub expect_none: bool,
}

impl AwaitQuery {
    /// Reads the parameters of `GET /api/v1/await`.
    pub fn parse(query: Option<&str>) -> Result<AwaitQuery, BadRequest> {
        let mut q = AwaitQuery {
            selection: Selection::default(),
            count: 1,
            after: 0,
            timeout: DEFAULT_TIMEOUT,
            expect_none: false,
        };
        let mut seen = Vec::new();
        for (key, value) in pairs(query)? {
            if q.selection.take(&key, &value)? {
                continue;
            }
            once(&mut seen, &key)?;
            match key.as_str() {
                "count" => q.count = number(&key, &value, 1, MAX_COUNT as u64)? as usize,
                "after" => q.after = cursor(&key, &value)?,
                "timeout" => q.timeout = timeout(&value)?,
                "expect" => match value.as_str() {
                    "none" => q.expect_none = true,
                    _ => return Err(BadRequest(format!("expect={value}: only expect=none"))),
                },
                _ => return Err(unknown(&key)),
            }
        }
        // `expect=none` fails at the first match: a `count` would be silently ignored.
        if q.expect_none && seen.iter().any(|k| k == "count") {
            return Err(BadRequest(
                "count does not go with expect=none (it fails at the first match)".into(),
            ));
        }
        Ok(q)
    }
}

/// What `GET /api/v1/messages` (or a filtered `DELETE`) was asked.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Which messages.
    pub selection: Selection,
    /// Page size (`limit`, 1 to [`MAX_LIMIT`]).
    pub limit: usize,
    /// Only messages older than this cursor (`before`).
    pub before: Option<u64>,
    /// Only messages newer than this cursor (`after`).
    pub after: Option<u64>,
}

impl ListQuery {
    /// Reads the parameters of `GET /api/v1/messages`; `paged`: `limit`, `before` and
    /// `after` are allowed (not on `DELETE`).
    pub fn parse(query: Option<&str>, paged: bool) -> Result<ListQuery, BadRequest> {
        let mut q = ListQuery {
            selection: Selection::default(),
            limit: DEFAULT_LIMIT,
            before: None,
            after: None,
        };
        let mut seen = Vec::new();
        for (key, value) in pairs(query)? {
            if q.selection.take(&key, &value)? {
                continue;
            }
            once(&mut seen, &key)?;
            match key.as_str() {
                "limit" if paged => q.limit = number(&key, &value, 1, MAX_LIMIT as u64)? as usize,
                "before" if paged => q.before = Some(cursor(&key, &value)?),
                "after" if paged => q.after = Some(cursor(&key, &value)?),
                _ => return Err(unknown(&key)),
            }
        }
        Ok(q)
    }
}

/// The `after` of `GET /api/v1/events` (or `None`) and its `mailbox=` selection.
pub fn events_after(query: Option<&str>) -> Result<(Option<u64>, Selection), BadRequest> {
    let mut after = None;
    let mut selection = Selection::default();
    for (key, value) in pairs(query)? {
        match key.as_str() {
            "after" => after = Some(cursor(&key, &value)?),
            "mailbox" => {
                selection.take(&key, &value)?;
            }
            _ => return Err(unknown(&key)),
        }
    }
    Ok((after, selection))
}

/// A `400` for a setting given twice (`timeout`, `limit`...: which one was meant?); filter
/// parameters may repeat (each must hold).
pub(super) fn once(seen: &mut Vec<String>, key: &str) -> Result<(), BadRequest> {
    if seen.iter().any(|k| k == key) {
        return Err(BadRequest(format!("{key} is given twice")));
    }
    seen.push(key.to_owned());
    Ok(())
}

/// An unknown parameter's error.
pub(super) fn unknown(key: &str) -> BadRequest {
    BadRequest(format!("unknown parameter {key:?}"))
}

/// A cursor: a sequence number (decimal).
pub fn cursor(key: &str, value: &str) -> Result<u64, BadRequest> {
    value.parse().map_err(|_| {
        BadRequest(format!(
            "{key}={value:?}: a cursor is a decimal sequence number"
        ))
    })
}

/// A whole number from `min` to `max`.
pub(super) fn number(key: &str, value: &str, min: u64, max: u64) -> Result<u64, BadRequest> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(BadRequest(format!(
            "{key}={value:?}: a whole number from {min} to {max}"
        ))),
    }
}

/// A `timeout`: a duration (`30s`, `1.5m`, `500ms`; a bare number is seconds) up to
/// [`MAX_TIMEOUT`].
fn timeout(value: &str) -> Result<Duration, BadRequest> {
    let time = parse_duration(value).map_err(|e| BadRequest(format!("timeout: {e}")))?;
    if time > MAX_TIMEOUT {
        return Err(BadRequest(format!(
            "timeout={value}: at most {}s",
            MAX_TIMEOUT.as_secs()
        )));
    }
    Ok(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_percent_decoded_and_bad_encoding_is_refused() {
        let got = pairs(Some("rcpt=a%2Bb%40x&subject~=hello+world&x")).unwrap();
        assert_eq!(
            got,
            [
                ("rcpt".into(), "a+b@x".into()),
                ("subject~".into(), "hello world".into()),
                ("x".into(), String::new())
            ]
        );
        assert!(pairs(Some("a=%zz")).is_err());
        assert!(pairs(Some("a=%4")).is_err());
        assert!(pairs(Some("a=%ff")).is_err());
    }

    #[test]
    fn await_parameters_are_bounded() {
        for empty in ["rcpt=", "rcpt=@x.test", "rcpt=a@x&rcpt="] {
            let e = AwaitQuery::parse(Some(empty)).unwrap_err();
            assert!(e.0.contains("not an address"), "{empty}: {}", e.0);
        }
        assert!(AwaitQuery::parse(Some("rcpt=postmaster")).is_ok());
        let q = AwaitQuery::parse(Some("rcpt=a@x&count=3&after=7&timeout=1s")).unwrap();
        assert_eq!(
            (q.count, q.after, q.timeout),
            (3, 7, Duration::from_secs(1))
        );
        assert_eq!(q.selection.wait_key(), WaitKey::Recipient(b"a@x".to_vec()));
        for bad in [
            "timeout=301s",
            "timeout=-1",
            "timeout=abc",
            "count=0",
            "count=501",
            "after=x",
            "expect=all",
            "expect=none&count=2",
            "count=1&expect=none",
            "header.X-Mailer=a",
            "nonsense=1",
        ] {
            assert!(AwaitQuery::parse(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            AwaitQuery::parse(None).unwrap().selection.wait_key(),
            WaitKey::Any
        );
    }

    #[test]
    fn list_parameters_are_bounded_and_delete_takes_no_paging() {
        assert_eq!(
            ListQuery::parse(Some("limit=500"), true).unwrap().limit,
            500
        );
        assert!(ListQuery::parse(Some("limit=501"), true).is_err());
        assert!(ListQuery::parse(Some("limit=5"), false).is_err());
    }
}
