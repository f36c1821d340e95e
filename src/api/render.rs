//! A kept message as JSON: the summary a list, an await and an event carry (never the body),
//! and the whole record of `GET /api/v1/messages/{id}` (envelope and top headers).
//!
//! Text the client sent is shown as UTF-8, invalid sequences replaced (U+FFFD); the subject
//! decoded (RFC 2047, as the JSON record of the file stores decodes it) with its raw value
//! beside it; times in RFC 3339 UTC.
//!
//! What it does not do: parse MIME (no text, HTML or parts yet), or choose which messages.

use crate::capture::{Field, Gone, GoneReason, Snapshot};
use crate::store::record::{rfc3339, rfc3339_octets};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::{json, Value};
use std::borrow::Cow;

/// Octets as text (invalid UTF-8 replaced).
fn text(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

/// A located header's value, unfolded and trimmed, or `null`.
fn header(message: &Snapshot, field: Field) -> Value {
    match message.header(field) {
        Some(raw) => {
            let unfolded = crate::capture::headers::unfold(raw);
            text(unfolded.trim_ascii())
        }
        None => Value::Null,
    }
}

/// The decoded subject, or `null`.
fn subject(message: &Snapshot) -> Value {
    crate::view::search::decoded_subject(message).map_or(Value::Null, Value::String)
}

/// The most characters of `from` and `subject` in a summary, and of recipients listed in
/// its `rcpt_to`: a summary stays small whatever a message carries (a list of 500 is never
/// inbox-sized); the whole record has everything.
pub const SUMMARY_TEXT_MAX: usize = 256;
/// The most recipients a summary lists (`rcpt_count` has them all).
pub const SUMMARY_RECIPIENTS_MAX: usize = 20;

/// The summary: `id`, `seq`, `received_at`, `size`, `mail_from`, `rcpt_to` (at most
/// [`SUMMARY_RECIPIENTS_MAX`]), `rcpt_count`, `from`, `subject` (each text cut to
/// [`SUMMARY_TEXT_MAX`] characters, ending `…` when cut), `mailboxes` (the ids of the
/// per-test mailboxes it is in), as a JSON value.
pub fn summary(message: &Snapshot) -> Value {
    serde_json::to_value(Summary(message)).unwrap_or(Value::Null)
}

/// [`summary`]'s JSON appended to `out` as one line, written straight from the message (no
/// [`Value`] in between: the event stream writes one per message, and building the value
/// cost more than the SMTP side's whole work on the message; see
/// docs/benchmarks/2026-12-06-capture-ingest.md, round 4).
pub fn write_summary(message: &Snapshot, out: &mut Vec<u8>) {
    // Writing into a `Vec` cannot fail, and every value here serialises.
    let _ = serde_json::to_writer(out, &Summary(message));
}

/// A message seen as its summary: the one definition of the summary's fields, serialised
/// into a [`Value`] ([`summary`]) or straight into octets ([`write_summary`]).
struct Summary<'a>(&'a Snapshot);

/// Text cut to [`SUMMARY_TEXT_MAX`] characters (`…` when cut), invalid UTF-8 replaced;
/// borrowed when it is valid and short (the common case: nothing allocated).
fn short(bytes: &[u8]) -> Cow<'_, str> {
    let text = String::from_utf8_lossy(bytes);
    // A character is at least one octet: no more octets, no more characters.
    if text.len() <= SUMMARY_TEXT_MAX || text.chars().count() <= SUMMARY_TEXT_MAX {
        return text;
    }
    let mut cut: String = text.chars().take(SUMMARY_TEXT_MAX).collect();
    cut.push('…');
    Cow::Owned(cut)
}

/// The recipients a summary lists, as a JSON array.
struct Recipients<'a>(&'a Snapshot);

impl Serialize for Recipients<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let envelope = self.0.envelope();
        let listed = envelope.recipients.len().min(SUMMARY_RECIPIENTS_MAX);
        let mut seq = serializer.serialize_seq(Some(listed))?;
        for recipient in envelope.recipients.iter().take(listed) {
            seq.serialize_element(&short(recipient))?;
        }
        seq.end()
    }
}

impl Serialize for Summary<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let message = self.0;
        let envelope = message.envelope();
        let received_at = rfc3339_octets(message.received_at);
        let from = message
            .header(Field::From)
            .map(|raw| crate::capture::headers::unfold(raw));
        let subject = crate::view::search::decoded_subject(message);
        let mut map = serializer.serialize_map(Some(10))?;
        map.serialize_entry("id", message.id().as_str())?;
        map.serialize_entry("seq", &message.seq)?;
        // Digits and ASCII punctuation only.
        map.serialize_entry("received_at", &*String::from_utf8_lossy(&received_at))?;
        map.serialize_entry("size", &message.body.len())?;
        map.serialize_entry("mail_from", &short(envelope.sender))?;
        map.serialize_entry("rcpt_to", &Recipients(message))?;
        map.serialize_entry("rcpt_count", &envelope.recipients.len())?;
        map.serialize_entry("from", &from.as_ref().map(|f| short(f.trim_ascii())))?;
        map.serialize_entry("subject", &subject.as_deref().map(|s| short(s.as_bytes())))?;
        let mailboxes: Vec<&str> = message.mailboxes.iter().map(|id| id.as_str()).collect();
        map.serialize_entry("mailboxes", &mailboxes)?;
        map.end()
    }
}

/// The whole record: the summary's identity, the envelope and the top headers.
pub fn message(message: &Snapshot) -> Value {
    let envelope = message.envelope();
    json!({
        "id": message.id().as_str(),
        "seq": message.seq,
        "received_at": rfc3339(message.received_at),
        "size": message.body.len(),
        "mailboxes": mailboxes(message),
        "envelope": {
            "mail_from": text(envelope.sender),
            "mail_params": text(envelope.params),
            "rcpt_to": envelope.recipients.iter().map(text).collect::<Vec<_>>(),
            "helo": text(envelope.helo),
            "client": envelope.client.map_or(Value::Null, text),
            "tls": envelope.tls.map_or(Value::Null, |(version, cipher)| json!({
                "version": version, "cipher": cipher,
            })),
            "auth_user": envelope.auth_user.map_or(Value::Null, text),
        },
        "headers": {
            "from": header(message, Field::From),
            "to": header(message, Field::To),
            "cc": header(message, Field::Cc),
            "subject": subject(message),
            "subject_raw": header(message, Field::Subject),
            "message_id": header(message, Field::MessageId),
            "date": header(message, Field::Date),
        },
    })
}

/// The ids of the per-test mailboxes the message is in (usually none).
fn mailboxes(message: &Snapshot) -> Value {
    message
        .mailboxes
        .iter()
        .map(|id| Value::from(id.as_str()))
        .collect()
}

/// A removal: `{"seq", "at", "reason"}`; `reason` is `evicted` (the budget or the message
/// count), `expired` (`max_age`) or `deleted`.
pub fn removal(gone: &Gone) -> Value {
    serde_json::to_value(Removal(gone)).unwrap_or(Value::Null)
}

/// [`removal`]'s JSON appended to `out` (no [`Value`] in between: an evicting store has one
/// removal per message for each event stream).
pub fn write_removal(gone: &Gone, out: &mut Vec<u8>) {
    // Writing into a `Vec` cannot fail, and every value here serialises.
    let _ = serde_json::to_writer(out, &Removal(gone));
}

/// A removal as the API shows it: the one definition of its fields.
struct Removal<'a>(&'a Gone);

impl Serialize for Removal<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let at = rfc3339_octets(self.0.at);
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("seq", &self.0.seq)?;
        // Digits and ASCII punctuation only.
        map.serialize_entry("at", &*String::from_utf8_lossy(&at))?;
        map.serialize_entry("reason", reason(self.0))?;
        map.end()
    }
}

/// A removal's reason as the API names it.
fn reason(gone: &Gone) -> &'static str {
    match gone.reason {
        GoneReason::EvictedBytes | GoneReason::EvictedCount => "evicted",
        GoneReason::Expired => "expired",
        GoneReason::Deleted => "deleted",
    }
}

/// A `410`'s body: `{"error": .., "evicted_at" | "expired_at" | "deleted_at": T, "gone":
/// {"seq", "at", "reason"}}` (see [`removal`]): the time under a name that says why, as the
/// issue's decision and the mailboxes' `410`s have it, and the removal as the event stream
/// shows it.
pub fn gone(gone: &Gone) -> Value {
    let why = reason(gone);
    let at = String::from_utf8_lossy(&rfc3339_octets(gone.at)).into_owned();
    let mut body = json!({
        "error": {"status": 410, "message": format!("message {why}")},
        "gone": removal(gone),
    });
    body[format!("{why}_at")] = Value::String(at);
    body
}
