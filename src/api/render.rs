//! A kept message as JSON: the summary a list, an await and an event carry (never the body),
//! and the whole record of `GET /api/v1/messages/{id}` (envelope and top headers).
//!
//! Text the client sent is shown as UTF-8, invalid sequences replaced (U+FFFD); the subject
//! decoded (RFC 2047, as the JSON record of the file stores decodes it) with its raw value
//! beside it; times in RFC 3339 UTC.
//!
//! A summary and a removal are written two ways: as serde values (a list's, an await's, a
//! `410`'s) and by hand straight into octets for the event stream, which writes one per
//! message ([`write_summary`], [`write_removal`], escaping strings as `render/json.rs`
//! does); a property test holds the two equal octet for octet.
//!
//! What it does not do: parse MIME (no text, HTML or parts yet), or choose which messages.

mod json;

use crate::capture::{Field, Gone, GoneReason, Snapshot};
use crate::store::record::{rfc3339, rfc3339_octets};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

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
    crate::view::search::decoded_subject(message)
        .map_or(Value::Null, |subject| Value::String(subject.into_owned()))
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

/// [`summary`]'s JSON appended to `out` as one line, written straight from the message by
/// hand: no [`Value`], no serde (the event stream writes one per message, and serde_json's
/// map entries and string escaping cost half the stream's instructions; see
/// docs/benchmarks/2026-12-06-capture-ingest.md, rounds 4 and 7). The same fields, values
/// and escapes as [`Summary`] (the test `the_hand_written_summary_is_serdes` holds them
/// equal).
pub fn write_summary(message: &Snapshot, times: &mut Times, out: &mut Vec<u8>) {
    let envelope = message.envelope();
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(b"{\"id\":");
    // The id's octets from the view at hand (`Snapshot::id` would unpack the envelope
    // again); only printable ASCII gets into a queue id.
    json::string(out, std::str::from_utf8(envelope.id).unwrap_or_default());
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(number.format(message.seq).as_bytes());
    out.extend_from_slice(b",\"received_at\":\"");
    // Digits and ASCII punctuation only: nothing to escape.
    out.extend_from_slice(&times.rfc3339(message.received_at));
    out.extend_from_slice(b"\",\"size\":");
    out.extend_from_slice(number.format(message.body.len()).as_bytes());
    out.extend_from_slice(b",\"mail_from\":");
    write_short(out, envelope.sender);
    out.extend_from_slice(b",\"rcpt_to\":[");
    for (n, recipient) in envelope
        .recipients
        .iter()
        .take(SUMMARY_RECIPIENTS_MAX)
        .enumerate()
    {
        if n > 0 {
            out.push(b',');
        }
        write_short(out, recipient);
    }
    out.extend_from_slice(b"],\"rcpt_count\":");
    out.extend_from_slice(number.format(envelope.recipients.len()).as_bytes());
    out.extend_from_slice(b",\"from\":");
    match message.header(Field::From) {
        Some(raw) => write_short(out, crate::capture::headers::unfold(raw).trim_ascii()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"subject\":");
    match crate::view::search::decoded_subject(message) {
        Some(subject) if subject.len() <= SUMMARY_TEXT_MAX => json::string(out, &subject),
        Some(subject) => json::string(out, &short(subject.as_bytes())),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"mailboxes\":[");
    for (n, id) in message.mailboxes.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        json::string(out, id.as_str());
    }
    out.extend_from_slice(b"]}");
}

/// RFC 3339 times ([`rfc3339_octets`]) written for a run of summaries, the date and time
/// of day kept from the last whole second written: messages that arrive together share it,
/// and only the microseconds are written for each (the calendar arithmetic, ~300
/// instructions, is done once a second).
#[derive(Debug, Default)]
pub struct Times {
    /// The whole second since the epoch the text is for, and its text.
    last: Option<(u64, [u8; 27])>,
}

impl Times {
    /// `time` as [`rfc3339_octets`] writes it.
    pub fn rfc3339(&mut self, time: SystemTime) -> [u8; 27] {
        let Ok(since) = time.duration_since(UNIX_EPOCH) else {
            return rfc3339_octets(time);
        };
        let second = since.as_secs();
        match &mut self.last {
            Some((last, text)) if *last == second => {
                let mut micros = since.subsec_micros();
                for octet in text[20..26].iter_mut().rev() {
                    *octet = b'0' + (micros % 10) as u8;
                    micros /= 10;
                }
                *text
            }
            last => {
                let text = rfc3339_octets(time);
                *last = Some((second, text));
                text
            }
        }
    }
}

/// [`short`]'s text as a JSON string; valid UTF-8 of at most [`SUMMARY_TEXT_MAX`] octets
/// (most text) is written as it is, without [`short`]'s character count.
fn write_short(out: &mut Vec<u8>, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.len() <= SUMMARY_TEXT_MAX => json::string(out, text),
        _ => json::string(out, &short(bytes)),
    }
}

/// A message seen as its summary, for serde: [`summary`]'s value (a list's, an await's).
/// [`write_summary`] writes the same by hand.
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

/// [`removal`]'s JSON appended to `out`, written by hand as [`write_summary`] is (an
/// evicting store has one removal per message for each event stream).
pub fn write_removal(gone: &Gone, times: &mut Times, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(gone.seq).as_bytes());
    out.extend_from_slice(b",\"at\":\"");
    // Digits and ASCII punctuation only, as the reasons are: nothing to escape.
    out.extend_from_slice(&times.rfc3339(gone.at));
    out.extend_from_slice(b"\",\"reason\":\"");
    out.extend_from_slice(reason(gone).as_bytes());
    out.extend_from_slice(b"\"}");
}

/// A removal as the API shows it, for serde: [`removal`]'s value. [`write_removal`] writes
/// the same by hand.
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
        GoneReason::MailboxExpired => "mailbox_expired",
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
    // A mailbox's end is an expiry too: its time is `expired_at`, as on the mailbox's `410`.
    let key = match gone.reason {
        GoneReason::MailboxExpired => "expired_at".to_owned(),
        _ => format!("{why}_at"),
    };
    body[key] = Value::String(at);
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Arrival, Capture, EnvelopeParts, Limits, OnFull};
    use crate::proto::sink::QueueId;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::time::Duration;

    /// A kept message with these header values and envelope, as the store snapshots it.
    fn kept(from: &[u8], subject: &[u8], sender: &[u8], recipients: &[Vec<u8>]) -> Snapshot {
        let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
        let mut raw = b"From: ".to_vec();
        raw.extend_from_slice(from);
        raw.extend_from_slice(b"\r\nSubject: ");
        raw.extend_from_slice(subject);
        raw.extend_from_slice(b"\r\n\r\nbody\r\n");
        let parts = EnvelopeParts {
            sender,
            ..EnvelopeParts::default()
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_796_000_000_123_456_789);
        let arrival = Arrival::new(
            QueueId::new(b"Q1a2b3c").unwrap(),
            at,
            Bytes::from(raw),
            &parts,
            recipients.iter().map(|r| &r[..]),
        );
        capture.insert(arrival).unwrap();
        capture.get_seq(1).unwrap()
    }

    /// The summary both ways: by hand and through serde.
    fn both(message: &Snapshot) -> (Vec<u8>, Vec<u8>) {
        let mut by_hand = Vec::new();
        write_summary(message, &mut Times::default(), &mut by_hand);
        (by_hand, serde_json::to_vec(&Summary(message)).unwrap())
    }

    /// Pieces of header text that make JSON escaping, UTF-8 repair, folding, RFC 2047
    /// decoding and cutting go wrong if anything does.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => "[a-zA-Z0-9 .@<>]{1,12}".prop_map(String::into_bytes),
            1 => Just(b"\"".to_vec()),
            1 => Just(b"\\".to_vec()),
            1 => (0u8..0x20).prop_map(|c| vec![c]),
            1 => Just(vec![0x7f]),
            1 => Just("é€😀".as_bytes().to_vec()),
            1 => Just("\u{2028}\u{2029}".as_bytes().to_vec()),
            1 => Just(vec![0xff]),
            1 => Just(vec![0xc3]),
            1 => Just(vec![0xe2, 0x80]),
            1 => Just(b"\r\n ".to_vec()),
            1 => Just(b"=?utf-8?q?caf=C3=A9_\"x\"?=".to_vec()),
            1 => Just(b"=?iso-8859-1?b?4+k=?=".to_vec()),
            1 => Just(vec![b'x'; 250]),
            1 => Just("ü".repeat(130).into_bytes()),
        ]
    }

    fn text() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(piece(), 0..8).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// The event stream's summary is serde's, octet for octet, whatever the message
        /// carries.
        #[test]
        fn the_hand_written_summary_is_serdes(
            from in text(),
            subject in text(),
            sender in text(),
            recipients in prop::collection::vec(text(), 0..25),
        ) {
            let message = kept(&from, &subject, &sender, &recipients);
            let (by_hand, by_serde) = both(&message);
            prop_assert_eq!(
                String::from_utf8_lossy(&by_hand),
                String::from_utf8_lossy(&by_serde)
            );
            let parsed: Value = serde_json::from_slice(&by_hand).unwrap();
            prop_assert_eq!(parsed, summary(&message));
        }
    }

    #[test]
    fn times_of_one_second_share_its_text_and_each_is_rfc3339s() {
        let mut times = Times::default();
        let start = UNIX_EPOCH + Duration::from_nanos(1_796_000_000_999_000_000);
        for nanos in [0, 1_000, 999_999, 1_000_000, 1_000_001, 5_000_000_000, 0, 7] {
            let time = start + Duration::from_nanos(nanos);
            assert_eq!(times.rfc3339(time), rfc3339_octets(time), "{nanos}");
        }
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(times.rfc3339(before), rfc3339_octets(before));
    }

    #[test]
    fn a_summary_without_from_or_subject_but_in_mailboxes_and_a_removal_are_serdes() {
        let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
        let ttl = Duration::from_secs(60);
        let one = capture.create_mailbox(None, ttl, "one".into()).unwrap();
        let two = capture.create_mailbox(None, ttl, "two".into()).unwrap();
        let (one, two) = (one.id.as_str(), two.id.as_str());
        let arrival = Arrival::new(
            QueueId::new(b"Q9").unwrap(),
            SystemTime::now(),
            Bytes::from_static(b"X-Other: 1\r\n\r\nbody\r\n"),
            &EnvelopeParts::default(),
            [
                format!("a+{one}@test").as_bytes(),
                format!("b+{two}@test").as_bytes(),
            ],
        );
        capture.insert(arrival).unwrap();
        let message = capture.get_seq(1).unwrap();
        let (by_hand, by_serde) = both(&message);
        assert_eq!(by_hand, by_serde);
        let parsed: Value = serde_json::from_slice(&by_hand).unwrap();
        assert_eq!(parsed["from"], Value::Null);
        assert_eq!(parsed["subject"], Value::Null);
        assert_eq!(parsed["mailboxes"].as_array().unwrap().len(), 2);

        capture.delete(&QueueId::new(b"Q9").unwrap());
        let (_, gone) = capture.removals_after(0, 1).items.remove(0);
        let mut by_hand = Vec::new();
        write_removal(&gone, &mut Times::default(), &mut by_hand);
        assert_eq!(by_hand, serde_json::to_vec(&Removal(&gone)).unwrap());
    }
}
