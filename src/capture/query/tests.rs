//! The grammar: every term, quoting, errors with their positions, times and sizes.

use super::*;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn q(text: &str) -> Query {
    parse(text, now()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn err(text: &str) -> QueryError {
    parse(text, now()).expect_err(text)
}

fn terms(text: &str) -> Vec<Term> {
    q(text).index.terms().to_vec()
}

#[test]
fn an_empty_query_matches_everything() {
    assert_eq!(q(""), Query::default());
    assert_eq!(q("   \t "), Query::default());
    assert!(q("").index.is_all() && q("").index_only());
}

#[test]
fn address_terms_are_exact_with_colon_or_equals_and_substring_with_tilde() {
    assert_eq!(terms("rcpt:a@x"), [Term::Recipient(b"a@x".to_vec())]);
    assert_eq!(terms("RCPT=a@x"), [Term::Recipient(b"a@x".to_vec())]);
    assert_eq!(
        terms("rcpt~@example.com"),
        [Term::RecipientContains(b"@example.com".to_vec())]
    );
    assert_eq!(terms("from:<>"), [Term::Sender(b"<>".to_vec())]);
    assert_eq!(
        terms("from~bounce"),
        [Term::SenderContains(b"bounce".to_vec())]
    );
    assert_eq!(
        terms("to:Ann@X"),
        [Term::HeaderAddress {
            field: Field::To,
            address: b"Ann@X".to_vec()
        }]
    );
    assert_eq!(
        terms("to~example"),
        [Term::Header {
            field: Field::To,
            value: b"example".to_vec(),
            how: Match::Contains
        }]
    );
}

#[test]
fn message_id_size_and_times_go_to_the_index() {
    assert_eq!(
        terms("message-id:<1@x>"),
        [Term::MessageId(b"<1@x>".to_vec())]
    );
    assert_eq!(
        terms("size>10K size<1M"),
        [Term::SizeAbove(10 << 10), Term::SizeBelow(1 << 20)]
    );
    assert_eq!(
        terms("after:5m"),
        [Term::ReceivedAfter(now() - Duration::from_secs(300))]
    );
    assert_eq!(
        terms("before:2026-12-06T18:00:00Z"),
        [Term::ReceivedBefore(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_580_000)
        )]
    );
}

#[test]
fn rfc3339_times_with_offsets_fractions_and_dates() {
    let at = |s: u64, n: u32| SystemTime::UNIX_EPOCH + Duration::new(s, n);
    assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Ok(at(0, 0)));
    assert_eq!(rfc3339("1970-01-01"), Ok(at(0, 0)));
    assert_eq!(rfc3339("1970-01-01T01:00:00+01:00"), Ok(at(0, 0)));
    assert_eq!(rfc3339("1969-12-31T23:00:00-01:00"), Ok(at(0, 0)));
    assert_eq!(
        rfc3339("2000-02-29t12:30:15.25z"),
        Ok(at(951_827_415, 250_000_000))
    );
    assert_eq!(rfc3339("2026-12-06T18:00:00Z"), Ok(at(1_796_580_000, 0)));
    for bad in [
        "2026-13-01",
        "2026-02-29",
        "2026-12-06T24:00:00Z",
        "2026-12-06T18:00:00",
        "2026-12-06T18:00Z",
        "2026-12-06T18:00:00+0100",
        "2026-12-06T18:00:00.Z",
        "1969-12-31",
        "2026-1-06",
    ] {
        assert!(rfc3339(bad).is_err(), "{bad}");
    }
}

#[test]
fn subject_body_bare_words_and_other_headers_are_residual() {
    let query = q(
        r#"subject:"Your code" body:"reset password" hello "two words" header:X-Tag~Blue subject~Code header:subject=raw"#,
    );
    assert_eq!(
        query.residual,
        [
            Residual::Subject {
                text: "Your code".into(),
                how: Match::Exact
            },
            Residual::Body("reset password".into()),
            Residual::Text("hello".into()),
            Residual::Text("two words".into()),
            Residual::Header {
                name: "X-Tag".into(),
                value: "Blue".into(),
                how: Match::Contains
            },
            Residual::Subject {
                text: "Code".into(),
                how: Match::Contains
            },
        ]
    );
    // A located field's header term is matched on the index, raw.
    assert_eq!(
        query.index.terms(),
        [Term::Header {
            field: Field::Subject,
            value: b"raw".to_vec(),
            how: Match::Exact
        }]
    );
    assert!(!query.index_only());
}

#[test]
fn quotes_take_escapes_and_may_be_empty() {
    assert_eq!(
        q(r#"subject:"say \"hi\" \\ now""#).residual,
        [Residual::Subject {
            text: r#"say "hi" \ now"#.into(),
            how: Match::Exact
        }]
    );
    assert_eq!(
        q(r#"subject:"""#).residual,
        [Residual::Subject {
            text: String::new(),
            how: Match::Exact
        }]
    );
    assert_eq!(q(r#"from:"""#).index.terms(), [Term::Sender(Vec::new())]);
    assert_eq!(
        q("\"ünïcödé wörds\"").residual,
        [Residual::Text("ünïcödé wörds".into())]
    );
}

#[test]
fn a_quoted_local_part_stays_in_the_address() {
    assert_eq!(
        terms(r#"rcpt:"john doe"@x from:"a@x" to:"x\" y"@z"#),
        [
            Term::Recipient(br#""john doe"@x"#.to_vec()),
            Term::Sender(b"a@x".to_vec()),
            Term::HeaderAddress {
                field: Field::To,
                address: br#""x\" y"@z"#.to_vec()
            },
        ]
    );
    let e = err(r#"rcpt:"john doe"@x"unclosed"#);
    assert!(e.message.contains("unbalanced"), "{e}");
}

#[test]
fn errors_name_the_term_and_its_offset() {
    let e = err("rcpt:a@x  subject:\"unclosed");
    assert_eq!((e.position, e.term.as_str()), (18, "subject"));
    assert!(e.message.contains("unbalanced quote"), "{e}");
    let e = err("rcpt:a@x colour:blue");
    assert_eq!((e.position, e.term.as_str()), (9, "colour"));
    assert!(e.message.contains("unknown term"), "{e}");
    let e = err("size>ten");
    assert_eq!((e.position, e.term.as_str()), (0, "size"));
    let e = err("a size:10");
    assert_eq!(e.position, 2);
    assert!(e.message.contains("`>` or `<`"), "{e}");
    let e = err("mailbox:abc");
    assert!(e.message.contains("not a mailbox id"), "{e}");
    let q = parse("mailbox:ABCDEF123456 rcpt:a@x", SystemTime::now()).unwrap();
    assert_eq!(
        q.index.terms()[0],
        Term::Mailbox(crate::capture::MailboxId::parse(b"abcdef123456").unwrap())
    );
    let e = err("before:yesterday");
    assert!(e.message.contains("RFC 3339"), "{e}");
    let e = err("subject:");
    assert!(e.message.contains("empty value"), "{e}");
    let e = err("header:X-Tag");
    assert!(e.message.contains("NAME=VALUE"), "{e}");
    let e = err("header:=v");
    assert!(e.message.contains("header field name"), "{e}");
    let e = err("rcpt>a@x");
    assert!(e.message.contains("takes"), "{e}");
    let e = err(":x");
    assert!(e.message.contains("needs a key"), "{e}");
    let e = err("subject:\"a\"b");
    assert!(e.message.contains("closing quote"), "{e}");
    let e = err("wo\"rd");
    assert!(e.message.contains("quote inside"), "{e}");
    let e = err("http://example.com");
    assert!(e.message.contains("\"http://example.com\""), "{e}");
    assert_eq!(e.to_string().split(':').next(), Some("at offset 0, `http`"));
}

#[test]
fn the_bounds_hold() {
    let long = "a".repeat(QUERY_MAX_LEN + 1);
    assert!(err(&long).message.contains("longer than"));
    let many = "a ".repeat(QUERY_MAX_TERMS + 1);
    assert!(err(&many).message.contains("more than"));
    assert!(parse(&"a ".repeat(QUERY_MAX_TERMS), now()).is_ok());
}

proptest::proptest! {
    /// Arbitrary text never panics, and an error's offset is inside the text.
    #[test]
    fn arbitrary_text_parses_or_errs_in_bounds(text in "[ a-z:=~<>\"\\\\@.0-9é-]{0,60}") {
        match parse(&text, now()) {
            Ok(_) => {}
            Err(e) => proptest::prop_assert!(e.position <= text.len()),
        }
    }
}
