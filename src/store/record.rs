//! What a stored message carries besides its bytes: the envelope in owned form, and the
//! derived texts the stores write (the JSON record, the `Received:` trace header, dates).
//!
//! What it does: format. [`next_queue_id`] names every message and [`MessageMeta::new`]
//! copies the envelope for the storage thread; both run on the event loop, once per message,
//! when its content begins. [`ContentDigest`] follows the content as it streams past; the
//! rest (the JSON record, with the `Subject:` decoded from RFC 2047 encoded-words, and the
//! trace headers) runs on the storage threads.
//!
//! What the record's `size` and `sha256` cover: the message content exactly as received,
//! after DATA's dot-unstuffing (BDAT: the chunks' octets), without the end-of-data `.` line and
//! without any line this server adds. That is the `.eml` file byte for byte; a Maildir file
//! holds more (`Return-Path:`, `X-Original-To:`, `Received:`) and has LF line ends.
//!
//! What it does not do: touch files (see the store modules) or parse SMTP.

use crate::proto::command::{Body, MailParams};
use crate::proto::dsn::Notify;
use crate::proto::envelope::{Envelope, TlsInfo, Transfer};
use crate::proto::sink::QueueId;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// A message's envelope and identity, owned so it can travel to a storage thread.
#[derive(Debug, Clone)]
pub struct MessageMeta {
    /// Unique within this host ([`next_queue_id`]): the `250` reply, the JSON record's `id`,
    /// the `.eml` file's name and the start of the Maildir file's name all carry it.
    pub id: QueueId,
    /// When the message began: its first content arrived (`354` sent or first `BDAT`).
    pub received_at: SystemTime,
    /// The client's address.
    pub client: SocketAddr,
    /// The `HELO`/`EHLO` argument.
    pub helo: Vec<u8>,
    /// Whether the client used `EHLO`.
    pub esmtp: bool,
    /// The reverse path without brackets (empty for `<>`).
    pub sender: Vec<u8>,
    /// The `MAIL FROM` parameters.
    pub params: MailParams,
    /// The accepted recipients.
    pub recipients: Vec<Vec<u8>>,
    /// `ENVID` as given, in xtext (RFC 3461 §4.4), when given (only where DSN is offered).
    pub envid: Option<Vec<u8>>,
    /// Each recipient's `NOTIFY` and `ORCPT` (as given, `addr-type;xtext`; RFC 3461 §4.1,
    /// §4.2), in the order of `recipients`; empty when no recipient had one (the common
    /// case, which then allocates nothing for them).
    pub recipient_dsn: Vec<(Notify, Option<Vec<u8>>)>,
    /// DATA or BDAT.
    pub transfer: Transfer,
    /// The TLS session, if the message came over TLS.
    pub tls: Option<TlsInfo>,
    /// The authenticated user (RFC 4954), if any.
    pub auth_user: Option<Vec<u8>>,
    /// Whether its recipients may be relayed: it came on a listener that relays
    /// (`--relay-listen`; every listener without it). `--relay-domains` then chooses among
    /// the recipients.
    pub relays: bool,
}

/// Sequence number shared by every connection of the process, for unique names.
static NEXT_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The process id, asked once (`getpid` is a system call in current glibc).
fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// A new message id for a message that began at `received_at`:
/// `<seconds>.M<microseconds>P<pid>Q<sequence>`, the unique part of a Maildir file name as the
/// Maildir convention describes it (cr.yp.to/proto/maildir.html: `M` microseconds, `P`
/// process id, `Q` deliveries by this process). Unique on this host: the sequence is the
/// process's, the process id tells processes apart within a second, and the microseconds keep
/// a restarted server that got the same process id (PID 1 in a container) from repeating
/// the names of its previous run within the same second. Made on the event loop for every
/// message (the discard store's too), without allocating: about 600 instructions
/// (callgrind, `benches/proto.rs` `session/pipelined_named`), the digits by `itoa`.
pub fn next_queue_id(received_at: SystemTime) -> QueueId {
    let since = received_at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let sequence = NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    // At most 20 + 2 + 6 + 1 + 10 + 1 + 20 = 60 octets.
    let mut text = [0u8; QueueId::MAX_LEN];
    let mut len = 0;
    for part in [
        itoa::Buffer::new().format(since.as_secs()).as_bytes(),
        b".M",
        itoa::Buffer::new().format(since.subsec_micros()).as_bytes(),
        b"P",
        itoa::Buffer::new().format(pid()).as_bytes(),
        b"Q",
        itoa::Buffer::new().format(sequence).as_bytes(),
    ] {
        text[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    QueueId::new(&text[..len]).unwrap_or_else(|| unreachable!("digits, a dot and letters"))
}

/// The parts of an id [`next_queue_id`] made: `<seconds>.M<microseconds>P<pid>Q<sequence>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueIdParts {
    /// Seconds since the Unix epoch when the message began.
    pub secs: u64,
    /// The microseconds within that second.
    pub micros: u32,
    /// The id of the process that made it.
    pub pid: u32,
    /// The process's sequence number.
    pub sequence: u64,
}

impl QueueIdParts {
    /// Reads an id [`next_queue_id`] made; `None` for any other text.
    pub fn parse(id: &str) -> Option<QueueIdParts> {
        let (secs, rest) = id.split_once(".M")?;
        let (micros, rest) = rest.split_once('P')?;
        let (pid, sequence) = rest.split_once('Q')?;
        /// Decimal digits only (`u64::from_str` also takes a `+`).
        fn number<T: std::str::FromStr>(digits: &str) -> Option<T> {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        }
        let micros: u32 = number(micros)?;
        (micros < 1_000_000).then_some(())?;
        Some(QueueIdParts {
            secs: number(secs)?,
            micros,
            pid: number(pid)?,
            sequence: number(sequence)?,
        })
    }

    /// When the message began, as the id says (to the microsecond).
    pub fn began(&self) -> SystemTime {
        UNIX_EPOCH
            + std::time::Duration::from_secs(self.secs)
            + std::time::Duration::from_micros(u64::from(self.micros))
    }
}

/// Makes every later [`next_queue_id`] of this process differ from `existing`, an id found
/// on disk at start (a restarted server reads its `.eml` directory: issue 18, "ids are never
/// reused"). An id from another process id, or whose sequence is already behind ours, could
/// never be made again by this process but by a clock stepped back to the same microsecond;
/// for one of ours (a restart that got the same process id, PID 1 in a container), the
/// sequence moves past its. Call before the first message is named.
pub fn reserve_past(existing: &QueueIdParts) {
    if existing.pid == pid() {
        NEXT_SEQUENCE.fetch_max(existing.sequence.saturating_add(1), Ordering::Relaxed);
    }
}

impl MessageMeta {
    /// Copies `envelope`, for the message named `id` that began at `received_at`, which may
    /// be relayed when `relays`.
    pub fn new(
        envelope: &Envelope<'_>,
        client: SocketAddr,
        id: QueueId,
        received_at: SystemTime,
        relays: bool,
    ) -> MessageMeta {
        MessageMeta {
            id,
            received_at,
            client,
            helo: envelope.helo.to_vec(),
            esmtp: envelope.esmtp,
            sender: envelope.sender.to_vec(),
            params: envelope.params,
            recipients: envelope.recipients().map(<[u8]>::to_vec).collect(),
            envid: envelope.envid.map(<[u8]>::to_vec),
            recipient_dsn: if envelope.recipients.dsn().any(|params| params.any()) {
                envelope
                    .recipients
                    .dsn()
                    .map(|params| (params.notify, params.orcpt.map(<[u8]>::to_vec)))
                    .collect()
            } else {
                Vec::new()
            },
            transfer: envelope.transfer,
            tls: envelope.tls.cloned(),
            auth_user: envelope.auth_user.map(<[u8]>::to_vec),
            relays,
        }
    }
}

/// Bytes as text for records: UTF-8 where valid, U+FFFD elsewhere.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The body of the first header field `name` (case-insensitive) in the message's header
/// section, as it is in the message: from after the colon to the end of the field, its folding
/// line breaks included, the final one not (RFC 5322 §2.2: the header section ends at the
/// first empty line; §2.2.3: a line starting with white space continues the field before it).
pub fn header_field_raw<'m>(message: &'m [u8], name: &str) -> Option<&'m [u8]> {
    let mut start = None;
    let mut offset = 0;
    for line in message.split_inclusive(|&b| b == b'\n') {
        let at = offset;
        offset += line.len();
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            // The end of the header section (a message cut at the limit ends anyway).
            return start
                .map(|start| &message[start..at.max(start)])
                .map(strip_line_end);
        }
        let continuation = matches!(content[0], b' ' | b'\t');
        match (start, continuation) {
            (Some(_), true) | (None, true) => {}
            (Some(start), false) => return Some(strip_line_end(&message[start..at])),
            (None, false) => {
                if let Some(colon) = content.iter().position(|&b| b == b':') {
                    if content[..colon]
                        .trim_ascii()
                        .eq_ignore_ascii_case(name.as_bytes())
                    {
                        start = Some(at + colon + 1);
                    }
                }
            }
        }
    }
    start.map(|start| strip_line_end(&message[start..]))
}

/// `field` without the line break that ends it.
fn strip_line_end(field: &[u8]) -> &[u8] {
    let field = field.strip_suffix(b"\n").unwrap_or(field);
    field.strip_suffix(b"\r").unwrap_or(field)
}

/// A field body unfolded (RFC 5322 §2.2.3: its CR LF / LF line breaks removed, the white
/// space after them kept) and trimmed, as text (UTF-8 where valid, U+FFFD elsewhere):
/// encoded-words (RFC 2047) are left as they are.
fn unfold(raw: &[u8]) -> String {
    let mut value = Vec::with_capacity(raw.len());
    for piece in raw.split(|&b| b == b'\n') {
        value.extend_from_slice(piece.strip_suffix(b"\r").unwrap_or(piece));
    }
    text(value.trim_ascii())
}

/// The value of the first header field `name` (see [`header_field_raw`]), unfolded (its line
/// breaks removed, the white space after them kept) and trimmed.
pub fn header_field(message: &[u8], name: &str) -> Option<String> {
    header_field_raw(message, name).map(unfold)
}

pub use super::rfc2047::decode_unstructured;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    out
}

/// A civil date and time in UTC.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
}

/// Splits a time into its UTC calendar fields (days-from-civil inverted, proleptic
/// Gregorian; valid for every year a clock can show).
fn civil(time: SystemTime) -> Civil {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        micros: since.subsec_micros(),
    }
}

/// RFC 3339 UTC with microseconds: `2026-11-29T04:05:06.123456Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let octets = rfc3339_octets(time);
    // Digits and ASCII punctuation only.
    String::from_utf8_lossy(&octets).into_owned()
}

/// [`rfc3339`]'s 27 octets, written digit by digit without `core::fmt` (the event stream
/// writes one per message: `format!` cost ~4 700 instructions, this ~100). Years past 9999
/// are written as 9999.
pub fn rfc3339_octets(time: SystemTime) -> [u8; 27] {
    /// Writes `n`'s last `slot.len()` decimal digits into `slot`.
    fn digits(slot: &mut [u8], mut n: u64) {
        for octet in slot.iter_mut().rev() {
            *octet = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
    let c = civil(time);
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    digits(&mut out[0..4], c.year.clamp(0, 9999) as u64);
    digits(&mut out[5..7], c.month.into());
    digits(&mut out[8..10], c.day.into());
    digits(&mut out[11..13], c.hour.into());
    digits(&mut out[14..16], c.minute.into());
    digits(&mut out[17..19], c.second.into());
    digits(&mut out[20..26], c.micros.into());
    out
}

/// RFC 5322 §3.3 date-time in UTC: `Sun, 29 Nov 2026 04:05:06 +0000` (written by the one
/// formatter the relay's trace field and notifications use too).
pub fn rfc5322_date(time: SystemTime) -> String {
    let seconds = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    crate::relay::dsn::field::date(seconds)
}

/// The HELO argument as it may appear in a `Received:` header's `from` clause (RFC 5321 §4.4:
/// a domain or address literal), as the relay's trace field writes it
/// (`crate::relay::received::helo_into`: ASCII only, a space, parenthesis, `"`, `\\`,
/// control character or byte of 0x80 and up becomes `?`).
fn header_safe(helo: &[u8]) -> String {
    let mut out = Vec::with_capacity(helo.len());
    crate::relay::received::helo_into(&mut out, helo);
    String::from_utf8_lossy(&out).into_owned()
}

/// The `Return-Path:` and `Received:` header lines a delivery adds on top of the message
/// (RFC 5321 §4.4), each line (and each folded part) ended by `eol`: `"\r\n"` as on the
/// wire, `"\n"` for a Maildir file.
pub fn trace_headers(meta: &MessageMeta, hostname: &str, eol: &str) -> String {
    // RFC 5321 §4.4: "with" names the protocol; RFC 3848 defines ESMTP, ESMTPS (TLS),
    // ESMTPA (AUTH), ESMTPSA (both); RFC 6531 §3.7.3 the UTF8SMTP forms of each.
    let protocol = crate::relay::received::protocol_word(
        meta.esmtp,
        meta.params.smtputf8,
        meta.tls.is_some(),
        meta.auth_user.is_some(),
    );
    // RFC 3848 §2 and Postfix's habit: the TLS parameters as a comment after the protocol.
    let tls = match &meta.tls {
        Some(tls) => format!("{eol}\t({} with cipher {})", tls.version, tls.cipher),
        None => String::new(),
    };
    let recipient = match meta.recipients.as_slice() {
        [only] => format!("{eol}\tfor <{}>", text(only)),
        _ => String::new(),
    };
    format!(
        "Return-Path: <{}>{eol}Received: from {} ({}){eol}\tby {hostname} (fastsmtpd) with {protocol} id {}{tls}{recipient};{eol}\t{}{eol}",
        text(&meta.sender),
        header_safe(&meta.helo),
        meta.client.ip(),
        meta.id,
        rfc5322_date(meta.received_at)
    )
}

/// Most bytes of a message's header section kept for [`ContentDigest`] to look up
/// `Message-ID` and `Subject` in: a field that starts past it is not found (real header
/// sections are a few KiB; this bounds what a streamed message holds on its storage thread).
pub const MAX_HEADER_KEEP: usize = 64 * 1024;

/// What the records say about a message's content, computed as the content streams past in
/// pieces: size, SHA-256, and the header section (up to [`MAX_HEADER_KEEP`]) for
/// `Message-ID` and `Subject`. Fed the same bytes, it gives what the whole-buffer functions
/// ([`sha256_hex`], [`header_field`]) give.
#[derive(Debug, Clone, Default)]
pub struct ContentDigest {
    /// Content bytes seen.
    size: u64,
    /// The running hash.
    sha256: Sha256,
    /// The start of the content, up to the end of the header section or the limit.
    head: Vec<u8>,
    /// The header section is complete in `head` (or cut at the limit).
    head_done: bool,
}

impl ContentDigest {
    /// A digest of nothing yet.
    pub fn new() -> ContentDigest {
        ContentDigest::default()
    }

    /// Takes the next piece of content.
    pub fn update(&mut self, piece: &[u8]) {
        self.size += piece.len() as u64;
        self.sha256.update(piece);
        if self.head_done {
            return;
        }
        // The empty line may straddle pieces: look again from two bytes back.
        let from = self.head.len().saturating_sub(2);
        let take = piece.len().min(MAX_HEADER_KEEP - self.head.len());
        self.head.extend_from_slice(&piece[..take]);
        if let Some(end) = header_section_end(&self.head, from) {
            // Nothing past the empty line is looked at.
            self.head.truncate(end);
            self.head_done = true;
        } else if take < piece.len() || self.head.len() == MAX_HEADER_KEEP {
            // Cut at the last whole line, so a field cut short is not taken for a whole one.
            let keep = memchr::memrchr(b'\n', &self.head).map_or(0, |at| at + 1);
            self.head.truncate(keep);
            self.head_done = true;
        }
    }

    /// Content bytes seen.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// Where the empty line that ends a header section (RFC 5322 §2.2) ends in `head`, if it is
/// there, looking at line ends from offset `from` on.
fn header_section_end(head: &[u8], from: usize) -> Option<usize> {
    if head.starts_with(b"\n") {
        return Some(1);
    }
    if head.starts_with(b"\r\n") {
        return Some(2);
    }
    memchr::memchr_iter(b'\n', &head[from..]).find_map(|at| {
        let next = &head[from + at + 1..];
        if next.starts_with(b"\n") {
            Some(from + at + 2)
        } else if next.starts_with(b"\r\n") {
            Some(from + at + 3)
        } else {
            None
        }
    })
}

/// The JSON description of a message (one `jsonl` line, or an `.eml` sidecar).
pub fn json_record(meta: &MessageMeta, body: &[u8]) -> serde_json::Value {
    let mut digest = ContentDigest::new();
    digest.update(body);
    json_record_of(meta, digest)
}

/// The JSON description of a message whose content went through `digest`.
pub fn json_record_of(meta: &MessageMeta, digest: ContentDigest) -> serde_json::Value {
    let body_param = meta.params.body.map(|b| match b {
        Body::SevenBit => "7BIT",
        Body::EightBitMime => "8BITMIME",
        Body::BinaryMime => "BINARYMIME",
    });
    let subject_raw = header_field_raw(&digest.head, "Subject");
    let hash = digest.sha256.finalize();
    let mut sha256 = String::with_capacity(64);
    for byte in hash {
        sha256.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        sha256.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    serde_json::json!({
        "id": meta.id.as_str(),
        "time": rfc3339(meta.received_at),
        "client": meta.client.to_string(),
        "helo": text(&meta.helo),
        "esmtp": meta.esmtp,
        "mail_from": text(&meta.sender),
        "mail_params": {
            "size": meta.params.size,
            "body": body_param,
            "smtputf8": meta.params.smtputf8,
        },
        "rcpt_to": meta.recipients.iter().map(|r| text(r)).collect::<Vec<_>>(),
        "transfer": match meta.transfer {
            Transfer::Data => "DATA",
            Transfer::Bdat => "BDAT",
        },
        "tls": meta.tls.as_ref().map(|tls| serde_json::json!({
            "version": tls.version,
            "cipher": tls.cipher,
            "sni": tls.sni.as_deref(),
            "resumed": tls.resumed,
        })),
        "auth_user": meta.auth_user.as_deref().map(text),
        "size": digest.size,
        "sha256": sha256,
        "message_id": header_field(&digest.head, "Message-ID"),
        "subject": subject_raw.map(decode_unstructured),
        "subject_raw": subject_raw.map(unfold),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn header_fields_are_found_unfolded_and_only_in_the_header_section() {
        let message = b"From: a@b\r\nSubject: first\r\n  and folded\r\nmessage-id: <x@y>\r\n\r\nSubject: body line\r\n";
        assert_eq!(
            header_field(message, "subject").as_deref(),
            Some("first  and folded"),
            "unfolding removes the line break only"
        );
        assert_eq!(
            header_field_raw(message, "subject"),
            Some(&b" first\r\n  and folded"[..])
        );
        assert_eq!(
            header_field(message, "Message-ID").as_deref(),
            Some("<x@y>")
        );
        assert_eq!(header_field(message, "To"), None);
        assert_eq!(header_field(b"\r\nSubject: no\r\n", "Subject"), None);
        assert_eq!(
            header_field(b"Subject: lf only\n\nx", "Subject").as_deref(),
            Some("lf only")
        );
    }

    /// RFC 2047 encoded-words in `Subject:` are decoded for the record's `subject`, in B and
    /// Q encodings and single- and multi-byte charsets; `subject_raw` keeps the field as it
    /// came (unfolded).
    #[test]
    fn subjects_are_decoded_with_the_raw_value_beside_them() {
        let cases: &[(&str, &str)] = &[
            ("=?ISO-8859-1?Q?Caf=E9_cr=E8me?=", "Caf\u{e9} cr\u{e8}me"),
            ("=?UTF-8?B?w6l0w6k=?=", "\u{e9}t\u{e9}"),
            ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),
            ("Hello\r\n =?UTF-8?Q?W=C3=B6rld?=", "Hello W\u{f6}rld"),
            (
                "=?ISO-2022-JP?B?GyRCJEskWyRzGyhC?=",
                "\u{306b}\u{307b}\u{3093}",
            ),
            ("=?windows-1252?Q?=80_5?=", "\u{20ac} 5"),
            ("plain words", "plain words"),
            ("=?bogus?X?abc?=", "=?bogus?X?abc?="),
            // Review F10: white space kept as it is but between encoded-words; nothing
            // decoded inside quotes; unfolding removes the line breaks only; an unknown
            // charset stays as it is.
            (
                "=?utf-8?q?a?= =?utf-8?q?b?=  plain  =?utf-8?q?c?=",
                "ab  plain  c",
            ),
            ("\"=?UTF-8?Q?quoted?=\"", "\"=?UTF-8?Q?quoted?=\""),
            ("multi\r\n\tline\r\n  fold", "multi\tline  fold"),
            ("=?x-unknown?Q?abc?= tail", "=?x-unknown?Q?abc?= tail"),
        ];
        for &(raw, decoded) in cases {
            let message = format!("From: a@b\r\nSubject: {raw}\r\nTo: c@d\r\n\r\nbody\r\n");
            let record = json_record(&meta(), message.as_bytes());
            assert_eq!(record["subject"], decoded, "{raw}");
            assert_eq!(
                record["subject_raw"],
                raw.replace("\r\n", ""),
                "{raw}: the raw value, unfolded"
            );
        }
        let record = json_record(&meta(), b"From: a@b\r\n\r\nSubject: in the body\r\n");
        assert!(record["subject"].is_null() && record["subject_raw"].is_null());
    }

    #[test]
    fn a_helo_in_a_received_header_cannot_forge_a_clause() {
        assert_eq!(header_safe(b"mx.example"), "mx.example");
        assert_eq!(header_safe(b"[192.0.2.1]"), "[192.0.2.1]");
        assert_eq!(
            header_safe(b"evil.example (by bank.example) x"),
            "evil.example??by?bank.example??x"
        );
        assert_eq!(header_safe(b"a\x1bb\xffc"), "a?b?c");
        // ASCII only, as the relay's line (RFC 5321 §4.4): one `?` per octet of UTF-8.
        assert_eq!(header_safe("b\u{fc}cher".as_bytes()), "b??cher");
    }

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_925_106_123_456);
        assert_eq!(rfc3339(t), "2026-11-29T04:05:06.123456Z");
        assert_eq!(rfc5322_date(t), "Sun, 29 Nov 2026 04:05:06 +0000");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
        // The digit writer agrees with `core::fmt` across a century, stepping by a prime
        // number of seconds and microseconds (every field's every digit is exercised).
        for step in 0..20_000u64 {
            let t = UNIX_EPOCH
                + Duration::new(step * 157_783, (step * 7_919 % 1_000_000) as u32 * 1000);
            let c = civil(t);
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                c.year, c.month, c.day, c.hour, c.minute, c.second, c.micros
            );
            assert_eq!(rfc3339(t), expected);
        }
    }

    #[test]
    fn a_digest_fed_in_pieces_matches_the_whole_buffer_functions() {
        let message = b"From: a@b\r\nSubject: split\r\n here\r\nMessage-ID: <m@x>\r\n\r\nSubject: no\r\nbody\r\n";
        for split in 0..=message.len() {
            for step in [1, 2, 3, 7, message.len()] {
                let mut digest = ContentDigest::new();
                let (a, b) = message.split_at(split);
                for piece in a.chunks(step).chain(b.chunks(step)) {
                    digest.update(piece);
                }
                assert_eq!(digest.size(), message.len() as u64);
                assert_eq!(
                    header_field(&digest.head, "Subject").as_deref(),
                    Some("split here")
                );
                assert_eq!(
                    header_field(&digest.head, "Message-ID").as_deref(),
                    Some("<m@x>")
                );
                assert_eq!(
                    sha256_hex(message),
                    json_record_of(&meta(), digest)["sha256"].as_str().unwrap()
                );
            }
        }
        // A header section longer than the limit: cut at a line end, the rest still hashed.
        let mut long = b"Subject: first\r\n".to_vec();
        while long.len() < 3 * MAX_HEADER_KEEP {
            long.extend_from_slice(b"X-Filler: 0123456789\r\n");
        }
        let mut digest = ContentDigest::new();
        long.chunks(65_000).for_each(|piece| digest.update(piece));
        assert!(digest.head.len() <= MAX_HEADER_KEEP && digest.head.ends_with(b"\n"));
        assert_eq!(json_record_of(&meta(), digest)["subject"], "first");
    }

    fn meta() -> MessageMeta {
        MessageMeta {
            id: QueueId::new(b"1.M0P2Q3").unwrap(),
            received_at: UNIX_EPOCH,
            client: "127.0.0.1:25".parse().unwrap(),
            helo: b"c".to_vec(),
            esmtp: true,
            sender: b"a@b".to_vec(),
            params: MailParams::default(),
            recipients: vec![b"c@d".to_vec()],
            envid: None,
            recipient_dsn: Vec::new(),
            transfer: Transfer::Data,
            tls: None,
            auth_user: None,
            relays: true,
        }
    }

    #[test]
    fn queue_ids_are_the_maildir_unique_part_and_never_repeat() {
        let at = UNIX_EPOCH + Duration::from_micros(1_795_925_106_000_042);
        let (a, b) = (next_queue_id(at), next_queue_id(at));
        let pid = std::process::id();
        let prefix = format!("1795925106.M42P{pid}Q");
        assert!(a.as_str().starts_with(&prefix), "{a}");
        let sequence = |id: QueueId| -> u64 { id.as_str()[prefix.len()..].parse().unwrap() };
        assert!(sequence(b) > sequence(a));
        let zero = next_queue_id(UNIX_EPOCH);
        assert!(zero.as_str().starts_with(&format!("0.M0P{pid}Q")), "{zero}");
    }

    #[test]
    fn queue_ids_parse_back_and_an_id_on_disk_is_never_made_again() {
        let at = UNIX_EPOCH + Duration::from_micros(1_795_925_106_000_042);
        let id = next_queue_id(at);
        let parts = QueueIdParts::parse(id.as_str()).expect("our own id");
        assert_eq!((parts.secs, parts.micros), (1_795_925_106, 42));
        assert_eq!(parts.pid, std::process::id());
        assert_eq!(parts.began(), at);
        for bad in [
            "",
            "1.M2P3",
            "1.M2P3Q",
            "x.M2P3Q4",
            "1.M1000000P3Q4",
            "1.M+2P3Q4",
        ] {
            assert_eq!(QueueIdParts::parse(bad), None, "{bad:?}");
        }
        // An id of this process id far ahead (a previous run's): the next one is past it.
        let ahead = QueueIdParts {
            sequence: parts.sequence + 1_000,
            ..parts
        };
        reserve_past(&ahead);
        let next = QueueIdParts::parse(next_queue_id(at).as_str()).unwrap();
        assert!(next.sequence > ahead.sequence, "{next:?}");
        // Another process's id changes nothing.
        reserve_past(&QueueIdParts {
            pid: parts.pid.wrapping_add(1),
            sequence: u64::MAX - 1,
            ..parts
        });
        let after = QueueIdParts::parse(next_queue_id(at).as_str()).unwrap();
        assert!(after.sequence < u64::MAX - 1);
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
