//! Mailpit's JSON models (`storage.MessageSummary`, `storage.Message`, `Attachment`,
//! `ListUnsubscribe` in Mailpit v1.30.5's `internal/storage/structs.go`) filled from a kept
//! message and its parsed view: address fields parsed from the header block, the envelope's
//! hidden recipients in `Bcc`, the snippet, the attachment/inline split.
//!
//! What it does not do: choose messages or answer HTTP (the routes in `mailpit` do).

use crate::capture::{same_address, Snapshot};
use crate::store::record::rfc3339;
use crate::view::{body, MessageView, PartInfo, ViewCache};
use mail_parser::{Address, MessageParser};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Longest `Snippet`, in octets, before `...` (Mailpit's `tools.CreateSnippet`).
const SNIPPET_MAX: usize = 200;

/// Octets as text (invalid UTF-8 replaced).
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An address object `{"Name", "Address"}`.
pub fn address(name: Option<&str>, address: Option<&str>) -> Value {
    json!({"Name": name.unwrap_or(""), "Address": address.unwrap_or("")})
}

/// An address list as Mailpit's array (`[]` when absent, never `null`).
pub fn addresses(list: Option<&Address<'_>>) -> Vec<Value> {
    list.map(|list| {
        list.iter()
            .map(|a| address(a.name.as_deref(), a.address.as_deref()))
            .collect()
    })
    .unwrap_or_default()
}

/// What the header block says, parsed once: the address fields, `Message-ID` and `Date`.
pub struct Heads {
    /// `From` (the first address), `{"Name": "", "Address": ""}` without one.
    pub from: Value,
    /// `To`, `Cc`, `Bcc` (with the envelope-only recipients), `ReplyTo`.
    pub to: Vec<Value>,
    /// See `to`.
    pub cc: Vec<Value>,
    /// See `to`.
    pub bcc: Vec<Value>,
    /// See `to`.
    pub reply_to: Vec<Value>,
    /// `Message-ID` without its angle brackets.
    pub message_id: String,
    /// The `Date` field in RFC 3339, if it parses.
    pub date: Option<String>,
}

/// Reads the header block of `message`.
pub fn heads(message: &Snapshot) -> Heads {
    let parsed = MessageParser::new().parse_headers(&message.body.in_memory()[..]);
    let from = parsed
        .as_ref()
        .and_then(|m| m.from())
        .and_then(Address::first)
        .map_or_else(
            || address(None, None),
            |a| address(a.name.as_deref(), a.address.as_deref()),
        );
    let to = addresses(parsed.as_ref().and_then(|m| m.to()));
    let cc = addresses(parsed.as_ref().and_then(|m| m.cc()));
    let mut bcc = addresses(parsed.as_ref().and_then(|m| m.bcc()));
    // Mailpit adds a `Bcc:` for envelope recipients (RFC 5321 §3.3 RCPT) the headers do not
    // name; fastsmtpd keeps the raw bytes as sent and lists them here instead.
    let named = |rcpt: &[u8]| {
        to.iter().chain(&cc).chain(&bcc).any(|a| {
            a["Address"]
                .as_str()
                .is_some_and(|a| same_address(a.as_bytes(), rcpt))
        })
    };
    let hidden: Vec<Value> = message
        .envelope()
        .recipients
        .iter()
        .filter(|rcpt| !named(rcpt))
        .map(|rcpt| address(None, Some(&lossy(rcpt))))
        .collect();
    bcc.extend(hidden);
    let reply_to = addresses(parsed.as_ref().and_then(|m| m.reply_to()));
    let message_id = message
        .header(crate::capture::Field::MessageId)
        .map(|raw| {
            let value = lossy(crate::capture::headers::unfold(raw).trim_ascii());
            value
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
        .unwrap_or_default();
    let date = parsed
        .as_ref()
        .and_then(|m| m.date())
        .filter(|d| d.is_valid())
        .map(|d| d.to_rfc3339());
    Heads {
        from,
        to,
        cc,
        bcc,
        reply_to,
        message_id,
        date,
    }
}

/// The decoded subject (`""` without one).
pub fn subject(view: &MessageView) -> String {
    view.subject.clone().unwrap_or_default()
}

/// Which parts Mailpit would list as attachments and which as inline (enmime's split): an
/// attachment is a part with `Content-Disposition: attachment`, or a file name and no
/// `inline`; inline is a part with a content id or an `inline` disposition and a name that is
/// not the message's text or HTML body.
pub fn split_parts(view: &MessageView) -> (Vec<&PartInfo>, Vec<&PartInfo>) {
    let mut attachments = Vec::new();
    let mut inline = Vec::new();
    for part in &view.parts {
        let disposition = part
            .disposition
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase();
        let kind = part.content_type.to_ascii_lowercase();
        let body = (kind.starts_with("text/plain") || kind.starts_with("text/html"))
            && part.filename.is_none()
            && disposition != "attachment";
        if disposition == "attachment" || (part.filename.is_some() && disposition != "inline") {
            attachments.push(part);
        } else if !body && (part.content_id.is_some() || part.filename.is_some()) {
            inline.push(part);
        }
    }
    (attachments, inline)
}

/// Mailpit's `Snippet`: the HTML body as text if there is one, else the text body, white
/// space collapsed, at most [`SNIPPET_MAX`] octets then `...`.
pub fn snippet(view: &MessageView) -> String {
    let source = match (&view.html, &view.text) {
        (Some(html), _) => mail_parser::decoders::html::html_to_text(html),
        (None, Some(text)) => text.clone(),
        (None, None) => String::new(),
    };
    let mut out = source.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > SNIPPET_MAX {
        let mut end = SNIPPET_MAX;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str("...");
    }
    out
}

/// The view of `message` from the cache; when its file cannot be read (removed behind the
/// server's back, `crate::view::body`), the view of the header block the store keeps, so a
/// list still shows it.
pub fn view(views: &ViewCache, message: &Snapshot) -> Arc<MessageView> {
    body::view(views, message)
        .unwrap_or_else(|_| Arc::new(MessageView::parse(message.body.in_memory())))
}

/// A `MessageSummary`.
pub fn summary(views: &ViewCache, message: &Snapshot) -> Value {
    let view = view(views, message);
    let heads = heads(message);
    let (attachments, _) = split_parts(&view);
    json!({
        "ID": message.id().as_str(),
        "MessageID": heads.message_id,
        "Read": false,
        "From": heads.from,
        "To": heads.to,
        "Cc": heads.cc,
        "Bcc": heads.bcc,
        "ReplyTo": heads.reply_to,
        "Subject": subject(&view),
        "Created": rfc3339(message.received_at),
        "Username": message.envelope().auth_user.map(lossy).unwrap_or_default(),
        "Tags": [],
        "Size": message.body.len(),
        "Attachments": attachments.len(),
        "Snippet": snippet(&view),
    })
}

/// An `Attachment` object (checksums: see the module doc).
pub fn attachment(message: &Snapshot, part: &PartInfo) -> Value {
    let sha256 = body::content(message)
        .ok()
        .and_then(|raw| MessageView::part(&raw, part.number))
        .map(|content| {
            Sha256::digest(&content.bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .unwrap_or_default();
    json!({
        "PartID": part.number.to_string(),
        "FileName": part.filename.clone().unwrap_or_default(),
        "ContentType": part.content_type,
        "ContentID": part.content_id.clone().unwrap_or_default(),
        "Size": part.size,
        "Checksums": {"MD5": "", "SHA1": "", "SHA256": sha256},
    })
}

/// The first header field named `name` (case-insensitive), unfolded and trimmed.
pub fn field(view: &MessageView, name: &str) -> Option<String> {
    view.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| lossy(crate::capture::headers::unfold(h.raw.as_bytes()).trim_ascii()))
}

/// Mailpit's `ListUnsubscribe`: the field, its links (at most one `mailto:` and one
/// `http(s):`, RFC 2369 §2), and `List-Unsubscribe-Post` (RFC 8058).
pub fn list_unsubscribe(view: &MessageView) -> Value {
    let header = field(view, "List-Unsubscribe").unwrap_or_default();
    let mut links: Vec<String> = Vec::new();
    let (mut mailto, mut web) = (false, false);
    for item in header.split(',') {
        let link = item
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim();
        let lower = link.to_ascii_lowercase();
        if lower.starts_with("mailto:") && !mailto {
            mailto = true;
            links.push(link.to_owned());
        } else if (lower.starts_with("http://") || lower.starts_with("https://")) && !web {
            web = true;
            links.push(link.to_owned());
        }
    }
    json!({
        "Header": header,
        "Links": links,
        "Errors": "",
        "HeaderPost": field(view, "List-Unsubscribe-Post").unwrap_or_default(),
    })
}
