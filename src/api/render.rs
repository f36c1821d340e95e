//! A kept message as JSON: the summary a list, an await and an event carry (never the body),
//! and the whole record of `GET /api/v1/messages/{id}` (envelope and top headers).
//!
//! Text the client sent is shown as UTF-8, invalid sequences replaced (U+FFFD); the subject
//! decoded (RFC 2047, as the JSON record of the file stores decodes it) with its raw value
//! beside it; times in RFC 3339 UTC.
//!
//! What it does not do: parse MIME (no text, HTML or parts yet), or choose which messages.

use crate::capture::{Field, Gone, GoneReason, Snapshot};
use crate::store::record::rfc3339;
use serde_json::{json, Value};

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

/// `value` cut to [`SUMMARY_TEXT_MAX`] characters, with `…` when cut.
fn cut(value: Value) -> Value {
    match value {
        Value::String(text) if text.chars().count() > SUMMARY_TEXT_MAX => {
            let mut short: String = text.chars().take(SUMMARY_TEXT_MAX).collect();
            short.push('…');
            Value::String(short)
        }
        other => other,
    }
}

/// The summary: `id`, `seq`, `received_at`, `size`, `mail_from`, `rcpt_to` (at most
/// [`SUMMARY_RECIPIENTS_MAX`]), `rcpt_count`, `from`, `subject` (each text cut to
/// [`SUMMARY_TEXT_MAX`] characters, ending `…` when cut), `mailboxes` (the ids of the
/// per-test mailboxes it is in).
pub fn summary(message: &Snapshot) -> Value {
    let envelope = message.envelope();
    json!({
        "id": message.id().as_str(),
        "seq": message.seq,
        "received_at": rfc3339(message.received_at),
        "size": message.raw.len(),
        "mail_from": cut(text(envelope.sender)),
        "rcpt_to": envelope
            .recipients
            .iter()
            .take(SUMMARY_RECIPIENTS_MAX)
            .map(|r| cut(text(r)))
            .collect::<Vec<_>>(),
        "rcpt_count": envelope.recipients.len(),
        "from": cut(header(message, Field::From)),
        "subject": cut(subject(message)),
        "mailboxes": mailboxes(message),
    })
}

/// The whole record: the summary's identity, the envelope and the top headers.
pub fn message(message: &Snapshot) -> Value {
    let envelope = message.envelope();
    json!({
        "id": message.id().as_str(),
        "seq": message.seq,
        "received_at": rfc3339(message.received_at),
        "size": message.raw.len(),
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
    json!({"seq": gone.seq, "at": rfc3339(gone.at), "reason": reason(gone)})
}

/// A removal's reason as the API names it.
fn reason(gone: &Gone) -> &'static str {
    match gone.reason {
        GoneReason::EvictedBytes | GoneReason::EvictedCount => "evicted",
        GoneReason::Expired => "expired",
        GoneReason::Deleted => "deleted",
    }
}

/// A `410`'s body: `{"error": .., "gone": {"seq", "at", "reason"}}` (see [`removal`]).
pub fn gone(gone: &Gone) -> Value {
    json!({
        "error": {"status": 410, "message": format!("message {}", reason(gone))},
        "gone": removal(gone),
    })
}
