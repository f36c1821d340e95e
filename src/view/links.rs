//! Links and one-time codes found in a message, for a test that must follow a sign-up link or
//! type a verification code. Extraction only: nothing is ever fetched.
//!
//! # Links
//!
//! - In the text body: every `http://` or `https://` (ASCII case-insensitive) that does not
//!   follow a letter or digit, up to the first white space, control character, `<`, `>`, `"`,
//!   `` ` `` or `'`; then trailing `.` `,` `;` `:` `!` `?` are dropped, and a trailing `)` or
//!   `]` with no opening one inside the link (prose: "(see https://x/a)").
//! - In the HTML body: the values of `href` and `src` attributes (names ASCII
//!   case-insensitive; values in double quotes, single quotes or bare) that start with
//!   `http://` or `https://`, with the entities `&amp;` `&quot;` `&#39;` `&lt;` `&gt;` decoded.
//! - Text links first, then HTML ones, each once (the first occurrence kept, order kept); at
//!   most [`LINKS_MAX`] links of at most [`LINK_LEN_MAX`] octets (longer ones are skipped).
//!
//! # One-time codes
//!
//! - In the decoded subject, then the body text: a run of 4 to 8 ASCII digits that stands
//!   alone (no letter or digit touches it, no `+` precedes it, and no `-` `.` `,` `/` `:`
//!   joins it to another digit: not a part of a phone number, a date, a price, a time or a
//!   longer number; "is 123456." is a code), and with a keyword within
//!   [`CODE_NEAR`] octets before it or after it in the same text (before: between the
//!   keyword's start and the code; after: between the code's end and the keyword's start).
//!   The keywords, ASCII case-insensitive, at the start of a word: `code`, `verification`,
//!   `verify`, `otp`, `pin`, `passcode`, `one-time`, `2fa`, `mfa`, `security`, `login`,
//!   `sign-in`, `confirm`.
//! - In every link: the value of a query parameter named `token`, `code`, `otp` or
//!   `verification_code` (ASCII case-insensitive), as written (not percent-decoded), when it
//!   is 1 to 512 octets.
//! - Each code once, in that order, at most [`CODES_MAX`].

/// The most links kept.
pub const LINKS_MAX: usize = 1000;

/// The longest link kept, in octets.
pub const LINK_LEN_MAX: usize = 4096;

/// The most codes kept.
pub const CODES_MAX: usize = 100;

/// How near a keyword must be to a code, in octets.
pub const CODE_NEAR: usize = 64;

/// The words that make a number nearby a code.
const KEYWORDS: [&str; 13] = [
    "code",
    "verification",
    "verify",
    "otp",
    "pin",
    "passcode",
    "one-time",
    "2fa",
    "mfa",
    "security",
    "login",
    "sign-in",
    "confirm",
];

/// The query parameters whose values are codes.
const TOKEN_PARAMS: [&str; 4] = ["token", "code", "otp", "verification_code"];

/// Where a code was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSource {
    /// In the subject or the body text, near a keyword.
    Text,
    /// In a link's query string.
    Link,
}

/// A one-time code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The code as written.
    pub code: String,
    /// Where it was found.
    pub source: CodeSource,
}

/// The links of a message's text and HTML bodies (see the module doc).
pub fn links(text: Option<&str>, html: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut push = |link: String| {
        if out.len() < LINKS_MAX && link.len() <= LINK_LEN_MAX && seen.insert(link.clone()) {
            out.push(link);
        }
    };
    if let Some(text) = text {
        text_links(text, &mut push);
    }
    if let Some(html) = html {
        html_links(html, &mut push);
    }
    out
}

/// Whether `text[at..]` starts with `http://` or `https://`, ASCII case-insensitively.
fn starts_with_scheme(text: &[u8]) -> bool {
    let has = |p: &[u8]| text.len() >= p.len() && text[..p.len()].eq_ignore_ascii_case(p);
    has(b"http://") || has(b"https://")
}

/// The bare links of `text`.
fn text_links(text: &str, push: &mut dyn FnMut(String)) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let Some(found) = memchr::memchr2(b'h', b'H', &bytes[i..]) else {
            break;
        };
        let start = i + found;
        i = start + 1;
        if !starts_with_scheme(&bytes[start..])
            || start > 0 && bytes[start - 1].is_ascii_alphanumeric()
        {
            continue;
        }
        let len = bytes[start..]
            .iter()
            .take_while(|&&b| {
                !(b.is_ascii_whitespace()
                    || b.is_ascii_control()
                    || matches!(b, b'<' | b'>' | b'"' | b'`' | b'\''))
            })
            .count();
        i = start + len;
        if len > LINK_LEN_MAX {
            continue;
        }
        let mut link = &text[start..start + len];
        // Trimming removes only trailing punctuation and closing brackets, never an opening
        // one: whether the link holds one is known once.
        let (paren, bracket) = (link.contains('('), link.contains('['));
        loop {
            let trimmed = link.trim_end_matches(['.', ',', ';', ':', '!', '?']);
            let trimmed = match trimmed.as_bytes().last() {
                Some(b')') if !paren => &trimmed[..trimmed.len() - 1],
                Some(b']') if !bracket => &trimmed[..trimmed.len() - 1],
                _ => trimmed,
            };
            if trimmed.len() == link.len() {
                break;
            }
            link = trimmed;
        }
        if link.len() > "https://".len() {
            push(link.to_string());
        }
    }
}

/// The `href` and `src` links of `html`.
fn html_links(html: &str, push: &mut dyn FnMut(String)) {
    let bytes = html.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let Some(found) = memchr::memchr(b'=', &bytes[i..]) else {
            break;
        };
        let eq = i + found;
        i = eq + 1;
        let name_end = bytes[..eq]
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |p| p + 1);
        let name_start = bytes[..name_end]
            .iter()
            .rposition(|b| !b.is_ascii_alphabetic())
            .map_or(0, |p| p + 1);
        let name = &bytes[name_start..name_end];
        let attribute_start = name_start == 0 || bytes[name_start - 1].is_ascii_whitespace();
        if !attribute_start
            || !(name.eq_ignore_ascii_case(b"href") || name.eq_ignore_ascii_case(b"src"))
        {
            continue;
        }
        let value_start = eq
            + 1
            + bytes[eq + 1..]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        let (from, end) = match bytes.get(value_start) {
            Some(&quote @ (b'"' | b'\'')) => {
                let from = value_start + 1;
                let len = memchr::memchr(quote, &bytes[from..]).unwrap_or(bytes.len() - from);
                (from, from + len)
            }
            Some(_) => {
                let len = bytes[value_start..]
                    .iter()
                    .take_while(|&&b| !(b.is_ascii_whitespace() || b == b'>'))
                    .count();
                (value_start, value_start + len)
            }
            None => break,
        };
        i = end;
        let value = html[from..end].trim();
        if starts_with_scheme(value.as_bytes()) {
            push(unescape(value));
        }
    }
}

/// `value` with the HTML entities links carry decoded.
fn unescape(value: &str) -> String {
    if !value.contains('&') {
        return value.to_string();
    }
    value
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The one-time codes of a message: in its decoded `subject`, its `body` text, and its
/// `links` (see the module doc).
pub fn codes(subject: &str, body: &str, links: &[String]) -> Vec<Code> {
    let mut out: Vec<Code> = Vec::new();
    let mut push = |code: &str, source: CodeSource| {
        if out.len() < CODES_MAX && !out.iter().any(|c| c.code == code) {
            out.push(Code {
                code: code.to_string(),
                source,
            });
        }
    };
    for text in [subject, body] {
        text_codes(text, &mut |code| push(code, CodeSource::Text));
    }
    for link in links {
        let Some((_, query)) = link.split_once('?') else {
            continue;
        };
        let query = query.split('#').next().unwrap_or_default();
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if TOKEN_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name))
                && (1..=512).contains(&value.len())
            {
                push(value, CodeSource::Link);
            }
        }
    }
    out
}

/// Whether the digits `bytes[start..end]` are part of something longer: a letter or digit
/// touches them, a `+` precedes them (a phone number), or one of `-` `.` `,` `/` `:` joins
/// them to another digit (`1-555`, `12:34`, `1,500`, `2026-12`).
fn joined(bytes: &[u8], start: usize, end: usize) -> bool {
    let separator = |b: u8| matches!(b, b'-' | b'.' | b',' | b'/' | b':');
    let before = start.checked_sub(1).map(|i| bytes[i]);
    let after = bytes.get(end).copied();
    before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'+')
        || after.is_some_and(|b| b.is_ascii_alphanumeric())
        || before.is_some_and(separator) && start >= 2 && bytes[start - 2].is_ascii_digit()
        || after.is_some_and(separator) && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
}

/// The codes near a keyword in `text`.
fn text_codes(text: &str, push: &mut dyn FnMut(&str)) {
    let bytes = text.as_bytes();
    let mut keywords: Option<Vec<usize>> = None;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let end = i;
        if !(4..=8).contains(&(end - start)) || joined(bytes, start, end) {
            continue;
        }
        // The keyword starts, found once per text and only when a candidate needs them;
        // ascending, so the nearest one at or after `start - CODE_NEAR` is found by binary
        // search (a scan of them all per candidate made a body of many codes and keywords
        // quadratic). No keyword starts inside the digits, so the first one in the window
        // decides.
        let keywords = keywords.get_or_insert_with(|| keyword_starts(bytes));
        let first = keywords.partition_point(|&k| k < start.saturating_sub(CODE_NEAR));
        let near = keywords.get(first).is_some_and(|&k| k <= end + CODE_NEAR);
        if near {
            push(&text[start..end]);
        }
    }
}

/// Where the keywords start in `bytes` (at the start of a word).
fn keyword_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    for i in 0..bytes.len() {
        if i > 0 && bytes[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let rest = &bytes[i..];
        if KEYWORDS
            .iter()
            .any(|k| rest.len() >= k.len() && rest[..k.len()].eq_ignore_ascii_case(k.as_bytes()))
        {
            starts.push(i);
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes_of(text: &str) -> Vec<String> {
        codes("", text, &[]).into_iter().map(|c| c.code).collect()
    }

    #[test]
    fn text_links_stop_at_prose_punctuation_and_keep_balanced_brackets() {
        let text = "Confirm at https://app.example/confirm?token=abc&x=1. Or (see \
                    https://example.com/a), <https://example.com/b> and \
                    https://en.wikipedia.org/wiki/Rust_(language) then ahttps://no.example \
                    and HTTP://UPPER.example/x, again https://example.com/a";
        assert_eq!(
            links(Some(text), None),
            [
                "https://app.example/confirm?token=abc&x=1",
                "https://example.com/a",
                "https://example.com/b",
                "https://en.wikipedia.org/wiki/Rust_(language)",
                "HTTP://UPPER.example/x",
            ]
        );
    }

    #[test]
    fn html_links_come_from_href_and_src_with_entities_decoded() {
        let html = r#"<a HREF="https://x.example/r?a=1&amp;token=T0K">go</a>
            <img src='http://img.example/p.png'> <a href=https://bare.example/x>b</a>
            <a href="mailto:a@x">m</a> <a data-href="https://no.example">n</a>
            <p>see https://text-in-html.example</p><a href="https://x.example/r?a=1&amp;token=T0K">again</a>"#;
        assert_eq!(
            links(Some("first https://t.example"), Some(html)),
            [
                "https://t.example",
                "https://x.example/r?a=1&token=T0K",
                "http://img.example/p.png",
                "https://bare.example/x",
            ]
        );
    }

    #[test]
    fn codes_need_a_keyword_nearby_and_stand_alone() {
        assert_eq!(codes_of("Your verification code is 123456."), ["123456"]);
        assert_eq!(codes_of("482913 is your OTP"), ["482913"]);
        assert_eq!(codes_of("PIN: 0042"), ["0042"]);
        // No keyword near: an order number is not a code.
        assert!(codes_of("Order 123456 shipped").is_empty());
        // Too short, too long, or part of a phone number, date, price or time.
        assert!(codes_of("code 123 and code 123456789").is_empty());
        assert!(
            codes_of("code: call +1-555-1234 on 2026-12-06 for 1,500.00 at 12:3456").is_empty()
        );
        // A keyword inside a word does not count ("barcode" does not start with "code").
        assert!(codes_of("barcode 12345").is_empty());
        let far = format!("code{}12345", " ".repeat(CODE_NEAR));
        assert!(codes_of(&far).is_empty());
    }

    #[test]
    fn adversarial_bodies_cost_linear_time() {
        // A link of closing brackets, a long one, many equal links: each is handled in
        // one pass (these took minutes when trimming rescanned the link).
        let brackets = format!("https://x.example/{}", ")".repeat(200_000));
        assert!(links(Some(&brackets), None).is_empty());
        let short = format!("https://x.example/{} end", ")".repeat(1000));
        assert_eq!(links(Some(&short), None), ["https://x.example/"]);
        let same = "https://same.example/aaaa ".repeat(50_000);
        assert_eq!(links(Some(&same), None).len(), 1);
        let many: String = (0..5000)
            .map(|n| format!("https://x.example/{n} "))
            .collect();
        assert_eq!(links(Some(&many), None).len(), LINKS_MAX);
        // Many codes, each beside a keyword (a review's 1.2 MB body took minutes).
        let codes_and_keywords = "code 123456 ".repeat(100_000);
        assert_eq!(codes_of(&codes_and_keywords), ["123456"]);
    }

    #[test]
    fn link_tokens_are_codes_once_in_order() {
        let links = [
            "https://x.example/verify?token=abc123&utm=1#frag".to_string(),
            "https://x.example/v?CODE=778899".to_string(),
            "https://x.example/v?code=".to_string(),
        ];
        let found = codes("Your code 778899", "", &links);
        assert_eq!(
            found,
            [
                Code {
                    code: "778899".into(),
                    source: CodeSource::Text
                },
                Code {
                    code: "abc123".into(),
                    source: CodeSource::Link
                },
            ]
        );
    }
}
