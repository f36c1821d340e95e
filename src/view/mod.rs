//! The parsed view of a kept message: what the API shows and searches (issue 18's lazy MIME,
//! parsed at first read, never on ingest).
//!
//! # What it does
//!
//! [`MessageView::parse`] reads raw message bytes with `mail-parser` and keeps, owned:
//! - every header field of the top-level header block, in order, with its raw value as sent
//!   (folded, lossy UTF-8) and its decoded value ([`crate::store::rfc2047`], the decoder the
//!   JSON record uses, so a subject reads the same everywhere);
//! - the decoded subject (the first `Subject:` field, as above);
//! - the text body (the `text/plain` parts mail-parser picks as the message's text, decoded
//!   from quoted-printable or base64 and from their charset to UTF-8, joined by a line break)
//!   and the HTML body likewise (`None` when the message has none: never made up from text);
//! - the parts, numbered from 1 in MIME tree order (depth first, in the order they appear):
//!   every part that holds content is listed (multipart containers are not; a
//!   `message/rfc822` part is listed, then the parts inside it), with its content type,
//!   declared charset, file name (RFC 2231 decoded, as mail-parser reads it), disposition,
//!   content id and decoded size; [`MessageView::part`] gives one part's decoded bytes;
//! - links and one-time codes ([`links`], rules there; with neither a text nor an HTML body,
//!   links are looked for in the body text below), never fetched;
//! - the body text `body:` searches: the text body, or the HTML body as text when there is
//!   no text body, or else the text of every `text/*` part and of a `multipart/*` part
//!   mail-parser could not split (broken MIME: a multipart with no boundary), lossy UTF-8.
//!
//! # Bounds
//!
//! The work is one mail-parser pass over the raw bytes (which the SMTP size limit bounds);
//! mail-parser itself decodes `message/rfc822` parts only 3 levels deep (deeper ones stay
//! binary parts). A message with more than [`DELIMITER_LINES_MAX`] lines that start with
//! `--` is not parsed at all (see there). The part walk lists at most [`PARTS_MAX`] parts and
//! descends at most
//! [`DEPTH_MAX`] levels of multipart nesting; what lies beyond is counted in
//! [`MessageView::parts_omitted`], never listed. Links: see [`links`].
//!
//! Never panics on any bytes (a property test and the `mime_view` fuzz target check it); a
//! panic inside mail-parser would be caught and give a view with [`MessageView::unparsed`]
//! set and the raw bytes as text.
//!
//! # What it does not do
//!
//! Fetch anything, sanitise HTML (the UI shows it in a sandboxed iframe under a strict CSP),
//! parse address fields beyond RFC 2047 words, or cache (see [`cache`]).

pub mod body;
pub mod cache;
pub mod links;
pub mod search;

use crate::store::rfc2047::decode_unstructured;
use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

pub use cache::{ViewCache, VIEW_CACHE_DEFAULT};
pub use links::{Code, CodeSource};
pub use search::{search, SearchPage, SEARCH_EXAMINE_BYTES_MAX, SEARCH_EXAMINE_MAX};

/// The most parts a view lists.
pub const PARTS_MAX: usize = 256;

/// The most lines starting with `--` (MIME boundary delimiters, RFC 2046 §5.1.1) a message
/// may have and still be parsed: mail-parser builds every part before the walk can stop at
/// [`PARTS_MAX`], so a message of a million tiny parts would take ~20 times its size in
/// memory and seconds of CPU. Past it the view is [`MessageView::unparsed`] (the raw bytes
/// as text). Sixteen times [`PARTS_MAX`] leaves room for signature separators (`-- `) and
/// quoted text in a legitimate message.
pub const DELIMITER_LINES_MAX: usize = 16 * PARTS_MAX;

/// The deepest multipart nesting the part walk descends.
pub const DEPTH_MAX: usize = 32;

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLine {
    /// The field name as sent.
    pub name: String,
    /// The value as sent, less the white space after the colon and the line end: folded,
    /// encoded words left encoded (lossy UTF-8).
    pub raw: String,
    /// The value unfolded, RFC 2047 words decoded.
    pub decoded: String,
}

/// One part, as the view lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// Its number, from 1, in MIME tree order.
    pub number: usize,
    /// `type/subtype`, lower case (`text/plain` when the part declares none, RFC 2045 §5.2).
    pub content_type: String,
    /// The declared `charset` parameter, as sent.
    pub charset: Option<String>,
    /// The file name (`Content-Disposition` `filename`, else `Content-Type` `name`).
    pub filename: Option<String>,
    /// `attachment`, `inline` or another disposition, lower case.
    pub disposition: Option<String>,
    /// The `Content-ID`, without angle brackets.
    pub content_id: Option<String>,
    /// The length of its decoded bytes ([`MessageView::part`]).
    pub size: usize,
}

/// A part's decoded content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartContent {
    /// The content type to serve it with: `type/subtype`, and for text parts
    /// `; charset=utf-8` (text is decoded to UTF-8 from its charset).
    pub content_type: String,
    /// The file name, if any.
    pub filename: Option<String>,
    /// The bytes: transfer encoding undone; text in UTF-8; a `message/rfc822` part's message.
    pub bytes: Vec<u8>,
}

/// A message parsed for reading (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageView {
    /// The top-level header fields, in order.
    pub headers: Vec<HeaderLine>,
    /// The decoded subject, if there is a `Subject:` field.
    pub subject: Option<String>,
    /// The text body.
    pub text: Option<String>,
    /// The HTML body.
    pub html: Option<String>,
    /// The parts, numbered from 1.
    pub parts: Vec<PartInfo>,
    /// Parts beyond [`PARTS_MAX`] or [`DEPTH_MAX`], not listed.
    pub parts_omitted: usize,
    /// Links found in the text and HTML bodies (see [`links`]).
    pub links: Vec<String>,
    /// One-time codes (see [`links`]).
    pub codes: Vec<Code>,
    /// The text `body:` searches when there is no text body (see [`MessageView::body_text`]);
    /// empty otherwise (the text body is not kept twice).
    fallback_text: String,
    /// Not parsed: mail-parser failed (found no header block, or panicked), or the message
    /// has more than [`DELIMITER_LINES_MAX`] delimiter lines; the view holds the raw bytes
    /// as text only.
    pub unparsed: bool,
}

impl MessageView {
    /// Parses `raw` (see the module doc). Never panics.
    pub fn parse(raw: &[u8]) -> MessageView {
        let delimiters = memchr::memmem::find_iter(raw, b"\n--")
            .take(DELIMITER_LINES_MAX + 1)
            .count();
        let parsed = if delimiters > DELIMITER_LINES_MAX {
            Ok(None)
        } else {
            std::panic::catch_unwind(|| {
                MessageParser::default()
                    .parse(raw)
                    .map(|message| MessageView::of(raw, &message))
            })
        };
        match parsed {
            Ok(Some(view)) => view,
            _ => {
                let text = String::from_utf8_lossy(raw).into_owned();
                MessageView {
                    links: links::links(Some(&text), None),
                    codes: links::codes("", &text, &[]),
                    text: Some(text),
                    unparsed: true,
                    ..MessageView::default()
                }
            }
        }
    }

    /// The view of a parsed message.
    fn of(raw: &[u8], message: &Message<'_>) -> MessageView {
        let root = message.root_part();
        let headers: Vec<HeaderLine> = root
            .headers
            .iter()
            .map(|h| {
                let start = h.offset_start() as usize;
                let end = h.offset_end() as usize;
                let value = raw.get(start..end.max(start)).unwrap_or_default();
                let value = trim_line_end(value).trim_ascii_start();
                HeaderLine {
                    name: h.name().to_string(),
                    raw: String::from_utf8_lossy(value).into_owned(),
                    decoded: decode_unstructured(value),
                }
            })
            .collect();
        let subject = headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("subject"))
            .map(|h| h.decoded.clone());
        let join = |ids: &[u32], html: bool| -> Option<String> {
            let bodies: Vec<&str> = ids
                .iter()
                .filter_map(
                    |&id| match message.parts.get(id as usize).map(|p| &p.body) {
                        Some(PartType::Text(t)) if !html => Some(&t[..]),
                        Some(PartType::Html(t)) if html => Some(&t[..]),
                        _ => None,
                    },
                )
                .collect();
            (!bodies.is_empty()).then(|| bodies.join("\n"))
        };
        let text = join(&message.text_body, false);
        let html = join(&message.html_body, true);
        let fallback_text = match (&text, &html) {
            (Some(_), _) => String::new(),
            (None, Some(html)) => mail_parser::decoders::html::html_to_text(html),
            // Broken MIME (a multipart with no boundary, say): the text mail-parser made of
            // any part.
            (None, None) => message
                .parts
                .iter()
                .filter_map(|p| match &p.body {
                    PartType::Text(t) => Some(t.to_string()),
                    PartType::Binary(b) | PartType::InlineBinary(b)
                        if p.content_type().is_none_or(|ct| {
                            ct.ctype().eq_ignore_ascii_case("text")
                                || ct.ctype().eq_ignore_ascii_case("multipart")
                        }) =>
                    {
                        Some(String::from_utf8_lossy(b).into_owned())
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let mut parts = Vec::new();
        let mut omitted = 0;
        walk(message, &mut |part, omit| {
            if omit {
                omitted += 1;
                return true;
            }
            parts.push(info(parts.len() + 1, part));
            true
        });
        let links = match (&text, &html) {
            (None, None) => links::links(Some(&fallback_text), None),
            _ => links::links(text.as_deref(), html.as_deref()),
        };
        let body_text = text.as_deref().unwrap_or(&fallback_text);
        let codes = links::codes(subject.as_deref().unwrap_or(""), body_text, &links);
        MessageView {
            headers,
            subject,
            text,
            html,
            parts,
            parts_omitted: omitted,
            links,
            codes,
            fallback_text,
            unparsed: false,
        }
    }

    /// Part `number` (from 1, as [`MessageView::parts`] lists it) of the message `raw`:
    /// its decoded bytes and the content type to serve them with. `None` if there is no
    /// such part. Parses `raw` again (a part is read rarely; the view keeps no bytes).
    pub fn part(raw: &[u8], number: usize) -> Option<PartContent> {
        let delimiters = memchr::memmem::find_iter(raw, b"\n--")
            .take(DELIMITER_LINES_MAX + 1)
            .count();
        if delimiters > DELIMITER_LINES_MAX {
            return None; // not parsed, so it lists no parts (see `DELIMITER_LINES_MAX`)
        }
        std::panic::catch_unwind(|| {
            let message = MessageParser::default().parse(raw)?;
            let mut seen = 0;
            let mut found = None;
            walk(&message, &mut |part, omit| {
                if omit {
                    return true;
                }
                seen += 1;
                if seen != number {
                    return true;
                }
                let info = info(seen, part);
                let is_text = matches!(part.body, PartType::Text(_) | PartType::Html(_));
                found = Some(PartContent {
                    content_type: if is_text {
                        format!("{}; charset=utf-8", info.content_type)
                    } else {
                        info.content_type
                    },
                    filename: info.filename,
                    bytes: decoded(part).to_vec(),
                });
                false
            });
            found
        })
        .ok()
        .flatten()
    }

    /// The text `body:` searches: the text body, or the HTML body as text when there is none,
    /// or else the text of the parts (see the module doc).
    pub fn body_text(&self) -> &str {
        self.text.as_deref().unwrap_or(&self.fallback_text)
    }

    /// The octets [`cache::ViewCache`] charges for this view: the struct, the capacity of
    /// every list it owns (each header, part, link and code's struct, spare slots included)
    /// and of every string.
    pub fn charge(&self) -> usize {
        use std::mem::size_of;
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        size_of::<MessageView>()
            + self.headers.capacity() * size_of::<HeaderLine>()
            + self
                .headers
                .iter()
                .map(|h| h.name.capacity() + h.raw.capacity() + h.decoded.capacity())
                .sum::<usize>()
            + opt(&self.subject)
            + opt(&self.text)
            + opt(&self.html)
            + self.parts.capacity() * size_of::<PartInfo>()
            + self
                .parts
                .iter()
                .map(|p| {
                    p.content_type.capacity()
                        + opt(&p.charset)
                        + opt(&p.filename)
                        + opt(&p.disposition)
                        + opt(&p.content_id)
                })
                .sum::<usize>()
            + self.links.capacity() * size_of::<String>()
            + self.links.iter().map(String::capacity).sum::<usize>()
            + self.codes.capacity() * size_of::<Code>()
            + self.codes.iter().map(|c| c.code.capacity()).sum::<usize>()
            + self.fallback_text.capacity()
    }
}

/// `value` without its line ending.
fn trim_line_end(value: &[u8]) -> &[u8] {
    let mut value = value;
    while let Some((b'\r' | b'\n', rest)) = value.split_last() {
        value = rest;
    }
    value
}

/// Calls `visit(part, omitted)` on every content part of `message` in MIME tree order
/// (depth first), within [`PARTS_MAX`] and [`DEPTH_MAX`]; parts beyond them are visited with
/// `omitted` true. Stops when `visit` returns false.
fn walk<'m>(message: &'m Message<'m>, visit: &mut dyn FnMut(&'m MessagePart<'m>, bool) -> bool) {
    let mut listed = 0;
    let mut steps = 0;
    walk_part(message, 0, 0, &mut listed, &mut steps, visit);
}

/// One step of [`walk`]: part `id` of `message` at `depth`; false to stop.
fn walk_part<'m>(
    message: &'m Message<'m>,
    id: usize,
    depth: usize,
    listed: &mut usize,
    steps: &mut usize,
    visit: &mut dyn FnMut(&'m MessagePart<'m>, bool) -> bool,
) -> bool {
    // Each part is reached once from its parent; the step count guards against a malformed
    // tree naming a part twice.
    *steps += 1;
    let Some(part) = message.parts.get(id) else {
        return true;
    };
    if *steps > 4 * (PARTS_MAX + message.parts.len()) {
        return false;
    }
    match &part.body {
        PartType::Multipart(children) => {
            if depth >= DEPTH_MAX {
                // The whole subtree counts as one omitted part.
                return visit(part, true);
            }
            for &child in children {
                // A child numbered before its parent would be a loop: mail-parser numbers
                // children after their parent.
                if child as usize <= id {
                    continue;
                }
                if !walk_part(message, child as usize, depth + 1, listed, steps, visit) {
                    return false;
                }
            }
            true
        }
        body => {
            let omit = *listed >= PARTS_MAX;
            *listed += 1;
            if !visit(part, omit) {
                return false;
            }
            if let PartType::Message(inner) = body {
                if !omit && depth < DEPTH_MAX {
                    return walk_part(inner, 0, depth + 1, listed, steps, visit);
                }
                if !omit {
                    // Too deep to descend: the attached message's content counts as one
                    // omitted part, as a multipart subtree past the depth does.
                    if let Some(root) = inner.parts.first() {
                        return visit(root, true);
                    }
                }
            }
            true
        }
    }
}

/// A part's decoded bytes.
fn decoded<'p>(part: &'p MessagePart<'_>) -> &'p [u8] {
    match &part.body {
        PartType::Text(t) | PartType::Html(t) => t.as_bytes(),
        PartType::Binary(b) | PartType::InlineBinary(b) => b,
        PartType::Message(m) => m.raw_message(),
        PartType::Multipart(_) => &[],
    }
}

/// What the view lists for `part`, numbered `number`.
fn info(number: usize, part: &MessagePart<'_>) -> PartInfo {
    let content_type = match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        },
        None if matches!(part.body, PartType::Message(_)) => "message/rfc822".to_string(),
        None => "text/plain".to_string(),
    }
    .to_ascii_lowercase();
    PartInfo {
        number,
        content_type,
        charset: part
            .content_type()
            .and_then(|ct| ct.attribute("charset"))
            .map(str::to_string),
        filename: part.attachment_name().map(str::to_string),
        disposition: part
            .content_disposition()
            .map(|d| d.ctype().to_ascii_lowercase()),
        content_id: part.content_id().map(|id| {
            id.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        }),
        size: decoded(part).len(),
    }
}

#[cfg(test)]
mod tests;
