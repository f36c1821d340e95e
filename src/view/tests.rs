//! Views of real-world shaped messages, broken ones, the search over a store, and a property
//! test: any bytes give a view, never a panic.

use super::*;
use crate::capture::{query, Arrival, Capture, Direction, EnvelopeParts, Limits, OnFull, Query};
use crate::proto::sink::QueueId;
use bytes::Bytes;
use std::time::{Duration, SystemTime};

/// `text` with LF line ends made CR LF.
fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

const ALTERNATIVE: &str = "From: Shop <shop@example.com>
To: Ann <ann@example.org>, bob@example.org
Subject: =?UTF-8?B?WW91ciBjb2RlOiDinJM=?= ready
Message-ID: <alt-1@example.com>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=\"b1\"

--b1
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Hallo J=FCrgen, your verification code is 482913.
Confirm: https://shop.example/confirm?token=XyZ-42&lang=3Dde
--b1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PHA+SGFsbG8gSsO8cmdlbiwgPGEgaHJlZj0iaHR0cHM6Ly9zaG9wLmV4YW1wbGUvY29uZmlybT90
b2tlbj1YeVotNDImYW1wO2xhbmc9ZGUiPmNvbmZpcm08L2E+PC9wPg==
--b1--
";

#[test]
fn multipart_alternative_with_qp_and_base64() {
    let view = MessageView::parse(&crlf(ALTERNATIVE));
    assert!(!view.unparsed);
    assert_eq!(view.subject.as_deref(), Some("Your code: ✓ ready"));
    let names: Vec<&str> = view.headers.iter().map(|h| &h.name[..]).collect();
    assert_eq!(
        names,
        [
            "From",
            "To",
            "Subject",
            "Message-ID",
            "MIME-Version",
            "Content-Type"
        ]
    );
    assert_eq!(
        view.headers[2].raw,
        "=?UTF-8?B?WW91ciBjb2RlOiDinJM=?= ready"
    );
    assert_eq!(view.headers[2].decoded, "Your code: ✓ ready");
    let text = view.text.as_deref().unwrap();
    assert!(
        text.starts_with("Hallo Jürgen, your verification code is 482913."),
        "{text:?}"
    );
    let html = view.html.as_deref().unwrap();
    assert!(html.contains("<p>Hallo Jürgen, <a href="), "{html:?}");
    assert_eq!(view.body_text(), text);
    assert_eq!(
        view.parts
            .iter()
            .map(|p| (p.number, &p.content_type[..], p.charset.as_deref()))
            .collect::<Vec<_>>(),
        [
            (1, "text/plain", Some("iso-8859-1")),
            (2, "text/html", Some("utf-8"))
        ]
    );
    assert_eq!(
        view.links,
        ["https://shop.example/confirm?token=XyZ-42&lang=de"]
    );
    assert_eq!(
        view.codes
            .iter()
            .map(|c| (&c.code[..], c.source))
            .collect::<Vec<_>>(),
        [("482913", CodeSource::Text), ("XyZ-42", CodeSource::Link)]
    );
    let raw = crlf(ALTERNATIVE);
    let html_part = MessageView::part(&raw, 2).unwrap();
    assert_eq!(html_part.content_type, "text/html; charset=utf-8");
    assert_eq!(html_part.bytes.len(), view.parts[1].size);
    assert!(MessageView::part(&raw, 3).is_none());
    assert!(MessageView::part(&raw, 0).is_none());
}

const MIXED: &str = "From: a@x
Subject: =?ISO-8859-1?Q?Rapport_f=E9vrier?= =?KOI8-R?B?8NLJ18XU?=
Content-Type: multipart/mixed; boundary=outer

preamble
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain

plain body
--inner
Content-Type: text/html

<b>html body</b>
--inner--
--outer
Content-Type: application/pdf; name=\"ignored.pdf\"
Content-Disposition: attachment;
 filename*=UTF-8''r%C3%A9sum%C3%A9%20final.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer
Content-Type: image/png
Content-Disposition: inline
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--outer
Content-Type: message/rfc822

From: inner@x
Subject: inside

inner text
--outer--
";

#[test]
fn nested_multipart_mixed_with_attachments_in_tree_order() {
    let raw = crlf(MIXED);
    let view = MessageView::parse(&raw);
    assert_eq!(view.subject.as_deref(), Some("Rapport févrierПривет"));
    assert_eq!(view.text.as_deref(), Some("plain body"));
    assert_eq!(view.html.as_deref(), Some("<b>html body</b>"));
    type Row<'a> = (
        usize,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        usize,
    );
    let parts: Vec<Row<'_>> = view
        .parts
        .iter()
        .map(|p| {
            (
                p.number,
                &p.content_type[..],
                p.filename.as_deref(),
                p.disposition.as_deref(),
                p.content_id.as_deref(),
                p.size,
            )
        })
        .collect();
    assert_eq!(
        parts,
        [
            (1, "text/plain", None, None, None, 10),
            (2, "text/html", None, None, None, 16),
            (
                3,
                "application/pdf",
                Some("résumé final.pdf"),
                Some("attachment"),
                None,
                9
            ),
            (4, "image/png", None, Some("inline"), Some("logo@x"), 8),
            (5, "message/rfc822", None, None, None, view.parts[4].size),
            (6, "text/plain", None, None, None, 10),
        ]
    );
    assert_eq!(view.parts_omitted, 0);
    let pdf = MessageView::part(&raw, 3).unwrap();
    assert_eq!(pdf.content_type, "application/pdf");
    assert_eq!(pdf.bytes, b"%PDF-1.4\n");
    assert_eq!(pdf.filename.as_deref(), Some("résumé final.pdf"));
    let png = MessageView::part(&raw, 4).unwrap();
    assert_eq!(png.bytes, b"\x89PNG\r\n\x1a\n");
    let inner = MessageView::part(&raw, 5).unwrap();
    assert_eq!(inner.content_type, "message/rfc822");
    assert!(inner.bytes.starts_with(b"From: inner@x"));
    assert_eq!(MessageView::part(&raw, 6).unwrap().bytes, b"inner text");
}

#[test]
fn subjects_in_several_charsets_decode_as_the_json_record_does() {
    for (raw, want) in [
        ("=?iso-2022-jp?B?GyRCJEYkOSRIGyhC?=", "てすと"),
        ("=?windows-1252?Q?Caf=E9?= au lait", "Café au lait"),
        ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),
        ("=?gb2312?B?1tDOxA==?=", "中文"),
        ("plain  two spaces", "plain  two spaces"),
        ("=?unknown?Q?x?=", "=?unknown?Q?x?="),
    ] {
        let message = crlf(&format!("Subject: {raw}\n\nbody\n"));
        let view = MessageView::parse(&message);
        assert_eq!(view.subject.as_deref(), Some(want), "{raw}");
        assert_eq!(
            view.subject.as_deref(),
            Some(&decode_unstructured(raw.as_bytes())[..])
        );
    }
}

#[test]
fn broken_mime_still_gives_a_view() {
    // A multipart with no boundary parameter: the body is text.
    let view = MessageView::parse(&crlf(
        "Subject: s\nContent-Type: multipart/mixed\n\n--x\nContent-Type: text/plain\n\nhello\n--x--\n",
    ));
    assert!(view.body_text().contains("hello"), "{view:?}");
    assert!(!view.parts.is_empty());
    // Truncated inside a base64 part, with no closing boundary.
    let view = MessageView::parse(&crlf(
        "Subject: t\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nfirst\n--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAEC",
    ));
    assert_eq!(view.subject.as_deref(), Some("t"));
    assert_eq!(view.text.as_deref(), Some("first"));
    assert_eq!(view.parts.len(), 2);
    // No header block at all, and nothing.
    let view = MessageView::parse(b"\r\njust a body https://x.example/a");
    assert!(view.headers.is_empty());
    assert_eq!(view.links, ["https://x.example/a"]);
    MessageView::parse(b"just some bytes, no colon, no line end");
    let view = MessageView::parse(b"");
    assert!(view.parts.len() <= 1);
}

#[test]
fn deep_nesting_and_many_parts_are_bounded() {
    let mut deep = String::from("Subject: deep\n");
    for level in 0..DEPTH_MAX + 10 {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=l{level}\n\n--l{level}\n"
        ));
    }
    deep.push_str("Content-Type: text/plain\n\nbottom\n");
    let view = MessageView::parse(&crlf(&deep));
    assert!(
        view.parts.is_empty() && view.parts_omitted == 1,
        "{:?}",
        view.parts
    );
    // Attached messages nested past the depth: the rest counts as one omitted part.
    let mut nested = String::new();
    for _ in 0..DEPTH_MAX + 8 {
        nested.push_str("Subject: wrap\nContent-Type: message/rfc822\n\n");
    }
    nested.push_str("Subject: core\nContent-Type: text/plain\n\nbottom\n");
    let view = MessageView::parse(&crlf(&nested));
    assert!(view.parts.len() <= DEPTH_MAX + 1, "{}", view.parts.len());
    assert_eq!(view.parts_omitted, 1, "{:?}", view.parts.len());
    let mut many = String::from("Subject: many\nContent-Type: multipart/mixed; boundary=m\n\n");
    for n in 0..PARTS_MAX + 20 {
        many.push_str(&format!("--m\nContent-Type: text/plain\n\npart {n}\n"));
    }
    many.push_str("--m--\n");
    let raw = crlf(&many);
    let view = MessageView::parse(&raw);
    assert_eq!(view.parts.len(), PARTS_MAX);
    assert_eq!(view.parts_omitted, 20);
    assert!(MessageView::part(&raw, PARTS_MAX).is_some());
    assert!(MessageView::part(&raw, PARTS_MAX + 1).is_none());
}

/// A store holding `messages` (raw texts), seqs from 1; message `n` received `n` s after
/// the epoch.
fn store(messages: &[String]) -> Capture {
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    for (i, text) in messages.iter().enumerate() {
        let id = QueueId::new(format!("v{i}").as_bytes()).unwrap();
        let arrival = Arrival::new(
            id,
            SystemTime::UNIX_EPOCH + Duration::from_secs(i as u64 + 1),
            Bytes::from(crlf(text)),
            &EnvelopeParts {
                sender: b"s@x",
                ..EnvelopeParts::default()
            },
            [&b"r@x"[..]],
        );
        capture.insert(arrival).unwrap();
    }
    capture
}

fn parse(text: &str) -> Query {
    query::parse(text, SystemTime::UNIX_EPOCH + Duration::from_secs(1000)).unwrap()
}

fn seqs(page: &SearchPage) -> Vec<u64> {
    page.items.iter().map(|s| s.seq).collect()
}

#[test]
fn search_applies_the_decoded_terms_after_the_index() {
    let messages: Vec<String> = (1..=6)
        .map(|n| {
            let subject = if n % 2 == 0 {
                "=?UTF-8?Q?R=C3=A9sum=C3=A9?="
            } else {
                "plain"
            };
            format!(
                "Subject: {subject}\nX-Tag: t{n}\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nbody number {n} caf=C3=A9\n"
            )
        })
        .collect();
    let capture = store(&messages);
    let cache = ViewCache::new(1 << 20);
    let run = |q: &str| {
        seqs(&search(
            &capture,
            &parse(q),
            None,
            Direction::Older,
            50,
            &cache,
        ))
    };
    assert_eq!(run("subject:Résumé"), [6, 4, 2]);
    assert_eq!(run("subject:résumé"), Vec::<u64>::new());
    assert_eq!(run("subject~RÉSU"), [6, 4, 2]);
    assert_eq!(run("body:CAFÉ after:1970-01-01T00:00:03Z"), [6, 5, 4, 3]);
    assert_eq!(run("body:\"number 5\""), [5]);
    assert_eq!(run("header:x-tag=t3"), [3]);
    assert_eq!(run("header:X-Tag~T"), [6, 5, 4, 3, 2, 1]);
    assert_eq!(run("plain number"), [5, 3, 1]);
    assert_eq!(run("rcpt:r@X size>1"), [6, 5, 4, 3, 2, 1]);
    // Through the recipient index, then the body.
    assert_eq!(run("rcpt:r@x body:\"number 4\""), [4]);
    assert_eq!(
        run("rcpt:r@x from:s@X message-id:nope body:number"),
        Vec::<u64>::new()
    );
    // The local part is compared as sent.
    assert_eq!(run("rcpt:R@x"), Vec::<u64>::new());
    assert_eq!(run("rcpt:xr@x"), Vec::<u64>::new());
    // Pages: limit 2, newest first, next continues; oldest first too.
    let query = parse("subject~sum");
    let first = search(&capture, &query, None, Direction::Older, 2, &cache);
    assert_eq!((seqs(&first), first.next), (vec![6, 4], Some(4)));
    let second = search(&capture, &query, first.next, Direction::Older, 2, &cache);
    assert_eq!(seqs(&second), [2]);
    let newer = search(&capture, &query, Some(2), Direction::Newer, 5, &cache);
    assert_eq!((seqs(&newer), newer.next), (vec![4, 6], None));
    assert!(cache.stats().views > 0);
}

#[test]
fn search_examines_a_bounded_number_of_messages_per_call() {
    let messages: Vec<String> = (0..SEARCH_EXAMINE_MAX + 5)
        .map(|n| format!("Subject: s\n\n{}\n", if n == 0 { "needle" } else { "hay" }))
        .collect();
    let capture = store(&messages);
    let cache = ViewCache::new(1 << 16);
    let query = parse("body:needle");
    let first = search(&capture, &query, None, Direction::Older, 10, &cache);
    assert!(first.items.is_empty());
    assert_eq!(first.scanned, SEARCH_EXAMINE_MAX);
    assert_eq!(first.next, Some(6));
    let second = search(&capture, &query, first.next, Direction::Older, 10, &cache);
    assert_eq!(
        (seqs(&second), second.next, second.scanned),
        (vec![1], None, 5)
    );
    let stats = cache.stats();
    assert!(stats.bytes <= stats.max_bytes);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Any bytes give a view, and every listed part can be read back with its size.
    #[test]
    fn any_bytes_give_a_view(
        head in proptest::sample::select(vec![
            "",
            "Subject: =?utf-8?B?w6k=?=\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n",
            "Content-Type: multipart/alternative; boundary=\"q\"\r\n\r\n--q\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            "Content-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n",
        ]),
        tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
    ) {
        let mut raw = head.as_bytes().to_vec();
        raw.extend_from_slice(&tail);
        let view = MessageView::parse(&raw);
        proptest::prop_assert!(view.parts.len() <= PARTS_MAX);
        for part in &view.parts {
            let content = MessageView::part(&raw, part.number);
            proptest::prop_assert_eq!(content.map(|c| c.bytes.len()), Some(part.size));
        }
        proptest::prop_assert!(view.charge() >= std::mem::size_of::<MessageView>());
    }
}

/// Figures for the report, not a timed assertion: `cargo test --release -p fastsmtpd --lib
/// -- --ignored --nocapture view::tests::measure`.
#[test]
#[ignore]
fn measure() {
    use std::time::Instant;
    let raw = crlf(ALTERNATIVE);
    let rounds = 20_000;
    let start = Instant::now();
    let mut charge = 0;
    for _ in 0..rounds {
        charge = MessageView::parse(&raw).charge();
    }
    let per = start.elapsed() / rounds;
    println!(
        "parse: {} octets -> {per:?} per view, charged {charge} octets",
        raw.len()
    );
    // 100 000 messages of ~1 KiB, one in 10 000 with the needle.
    let messages: Vec<String> = (0..100_000)
        .map(|n| {
            let word = if n % 10_000 == 0 { "needle" } else { "hay" };
            format!(
                "From: s@x\nTo: r{n}@x\nSubject: message {n}\nContent-Type: text/plain\n\n{}{word}\n",
                "lorem ipsum dolor sit amet ".repeat(36)
            )
        })
        .collect();
    let capture = Capture::new(Limits::default(), OnFull::EvictOldest);
    for (i, text) in messages.iter().enumerate() {
        let arrival = Arrival::new(
            QueueId::new(format!("m{i}").as_bytes()).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(i as u64 + 1),
            Bytes::from(crlf(text)),
            &EnvelopeParts {
                sender: b"s@x",
                ..EnvelopeParts::default()
            },
            [format!("r{i}@x").as_bytes()],
        );
        capture.insert(arrival).unwrap();
    }
    let cache = ViewCache::new(32 << 20);
    for (name, q) in [
        ("rcpt (index only)", "rcpt:r4242@x"),
        ("size (index only, full scan)", "size>1M"),
        (
            "subject~ (decodes subjects only)",
            "subject~\"message 99999\"",
        ),
        ("body: cold cache", "body:needle"),
        ("body: warm cache", "body:needle"),
    ] {
        let query = parse(q);
        let start = Instant::now();
        let page = search(&capture, &query, None, Direction::Older, 50, &cache);
        println!(
            "{name}: first call {:?}, {} items, scanned {}, next {:?}",
            start.elapsed(),
            page.items.len(),
            page.scanned,
            page.next
        );
    }
    println!("cache: {:?}", cache.stats());
    // Hostile shapes: many parts, deep nesting, one long line of HTML.
    let mut many = String::from("Subject: many\nContent-Type: multipart/mixed; boundary=m\n\n");
    for n in 0..50_000 {
        many.push_str(&format!("--m\nContent-Type: text/plain\n\npart {n}\n"));
    }
    let mut deep = String::from("Subject: deep\n");
    for level in 0..5_000 {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=l{level}\n\n--l{level}\n"
        ));
    }
    let html = format!(
        "Subject: h\nContent-Type: text/html\n\n{}",
        "<a href=\"https://x.example/?token=1\">code 123456</a>".repeat(50_000)
    );
    for (name, text) in [
        ("50 000 parts", many),
        ("5 000 levels", deep),
        ("2.5 MB of HTML", html),
    ] {
        let raw = crlf(&text);
        let start = Instant::now();
        let view = MessageView::parse(&raw);
        println!(
            "{name}: {} octets parsed in {:?}, {} parts listed, {} omitted, charged {}",
            raw.len(),
            start.elapsed(),
            view.parts.len(),
            view.parts_omitted,
            view.charge()
        );
    }
}

/// Words the generated messages and queries are made of (case and accents as traps).
const WORDS: [&str; 6] = ["alpha", "Beta", "gamma", "Ünï", "ünï", "delta"];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(100))]

    /// Following `next` until it is `None`, in either direction and with any page size,
    /// yields exactly the messages a naive scan of the decoded subjects and bodies finds,
    /// in order, each once.
    #[test]
    fn search_pages_agree_with_a_naive_scan(
        messages in proptest::collection::vec((0..WORDS.len(), 0..WORDS.len(), proptest::prelude::any::<bool>()), 1..30),
        term in 0..4usize,
        word in 0..WORDS.len(),
        limit in 1usize..7,
        newer in proptest::prelude::any::<bool>(),
    ) {
        let texts: Vec<String> = messages
            .iter()
            .map(|&(s, b, encode)| {
                let subject = if encode {
                    format!("=?UTF-8?B?{}?=", base64_of(WORDS[s]))
                } else {
                    WORDS[s].to_string()
                };
                format!("Subject: {subject}\nContent-Type: text/plain; charset=utf-8\n\nsome {} text\n", WORDS[b])
            })
            .collect();
        let capture = store(&texts);
        let cache = ViewCache::new(4096);
        let w = WORDS[word];
        let (q, want): (String, Box<dyn Fn(usize, usize) -> bool>) = match term {
            0 => (format!("subject:{w}"), Box::new(move |s, _| WORDS[s] == w)),
            1 => (format!("subject~{w}"), Box::new(move |s, _| WORDS[s].to_lowercase().contains(&w.to_lowercase()))),
            2 => (format!("body:{w}"), Box::new(move |_, b| WORDS[b].to_lowercase().contains(&w.to_lowercase()))),
            _ => (w.to_string(), Box::new(move |s, b| {
                WORDS[s].to_lowercase().contains(&w.to_lowercase())
                    || WORDS[b].to_lowercase().contains(&w.to_lowercase())
            })),
        };
        let mut expected: Vec<u64> = messages
            .iter()
            .enumerate()
            .filter(|(_, &(s, b, _))| want(s, b))
            .map(|(i, _)| i as u64 + 1)
            .collect();
        let direction = if newer { Direction::Newer } else { Direction::Older };
        if !newer {
            expected.reverse();
        }
        let query = parse(&q);
        let mut found = Vec::new();
        let mut cursor = None;
        for _ in 0..100 {
            let page = search(&capture, &query, cursor, direction, limit, &cache);
            proptest::prop_assert!(page.items.len() <= limit);
            found.extend(seqs(&page));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        proptest::prop_assert_eq!(found, expected, "{}", q);
        let stats = cache.stats();
        proptest::prop_assert!(stats.bytes <= stats.max_bytes);
    }
}

/// `text` in base64.
fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
