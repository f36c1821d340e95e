//! The notification checked from outside: every one parses with mail-parser as a
//! `multipart/report` of the right three parts, its delivery-status part parses as groups of
//! `Name: value` fields (a small checker below), and no line breaks the rules however hostile
//! the input.

use super::field::{self, MAX_LINE_LEN};
use super::*;
use crate::proto::dsn::decode_xtext;
use mail_parser::{MessageParser, MimeHeaders};
use proptest::prelude::*;

const ORIGINAL: &[u8] = b"From: Alice <alice@client.test>\r\nTo: bob@far.test\r\n\
Subject: lunch\r\nMessage-ID: <1@client.test>\r\n\r\nSee you at noon.\r\n";

/// 2026-12-07 06:20:10 UTC.
const NOW: u64 = 1_796_624_410;

fn status(class: u8, subject: u16, detail: u16) -> EnhancedStatus {
    EnhancedStatus {
        class,
        subject,
        detail,
    }
}

fn failed(address: &str) -> RecipientOutcome<'_> {
    RecipientOutcome {
        address,
        original: None,
        notify: Notify::ABSENT,
        action: Action::Failed,
        status: status(5, 1, 1),
        remote_mta: Some("mx.far.test"),
        diagnostic: Some(Diagnostic::Smtp(
            b"550 5.1.1 <bob@far.test>: no such user\r\n",
        )),
        last_attempt: Some(NOW - 5),
        will_retry_until: None,
    }
}

fn envelope() -> OriginalEnvelope<'static> {
    OriginalEnvelope {
        reverse_path: "alice@client.test",
        envid: None,
        ret: None,
        smtputf8: false,
        arrival: NOW - 60,
        received_from: Some("client.test"),
    }
}

fn report<'a>(recipients: &'a [RecipientOutcome<'a>]) -> Report<'a> {
    Report {
        reporting_mta: "relay.test",
        envelope: envelope(),
        recipients,
        original: ORIGINAL,
        now: NOW,
        token: "Q123-4",
    }
}

fn write(report: &Report<'_>) -> (Vec<u8>, Notification) {
    let mut out = Vec::new();
    let notification = notification_into(report, &mut out).expect("a notification is due");
    check_lines(&out);
    (out, notification)
}

/// Every line ends in CR LF, holds no other CR or LF and no NUL, and is at most 998 octets.
fn check_lines(message: &[u8]) {
    assert!(message.ends_with(b"\r\n"), "the message ends in CR LF");
    for (number, line) in message.split(|&b| b == b'\n').enumerate() {
        if number + 1 == message.split(|&b| b == b'\n').count() {
            assert!(line.is_empty());
            break;
        }
        let line = line
            .strip_suffix(b"\r")
            .unwrap_or_else(|| panic!("line {number} ends in a bare LF"));
        assert!(!line.contains(&b'\r'), "line {number} holds a bare CR");
        assert!(!line.contains(&0), "line {number} holds a NUL");
        assert!(
            line.len() <= MAX_LINE_LEN,
            "line {number} is {} octets",
            line.len()
        );
    }
}

/// The parts of a parsed notification: (type/subtype, raw contents).
struct Parsed {
    /// The top-level content type and its report-type and boundary.
    top: (String, Option<String>, Option<String>),
    /// Each part's `type/subtype` and contents.
    parts: Vec<(String, Vec<u8>)>,
    /// The top-level header fields asked for by the tests.
    subject: String,
    /// `Auto-Submitted`.
    auto_submitted: String,
    /// `To`.
    to: String,
}

fn parse(message: &[u8]) -> Parsed {
    let parsed = MessageParser::default()
        .parse(message)
        .expect("mail-parser reads it");
    let ct = parsed.content_type().expect("a content type");
    let top = (
        format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")),
        ct.attribute("report-type").map(str::to_string),
        ct.attribute("boundary").map(str::to_string),
    );
    let root = parsed.root_part();
    let ids = root.sub_parts().expect("a multipart");
    let parts = ids
        .iter()
        .map(|&id| {
            let part = parsed.part(id).expect("the part exists");
            let ct = part.content_type().expect("a part content type");
            (
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")),
                part.contents().to_vec(),
            )
        })
        .collect();
    Parsed {
        top,
        parts,
        subject: parsed.subject().unwrap_or("").to_string(),
        auto_submitted: parsed
            .header_raw("Auto-Submitted")
            .unwrap_or("")
            .trim()
            .to_string(),
        to: parsed.header_raw("To").unwrap_or("").trim().to_string(),
    }
}

/// The delivery-status syntax (RFC 3464 §2.1): groups separated by one blank line, each a run
/// of `Name: value` fields with folded continuations; returns the unfolded fields per group.
fn status_groups(body: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).expect("the report is UTF-8");
    let text = text.strip_suffix("\r\n").expect("the report ends in CR LF");
    let mut groups = Vec::new();
    for group in text.split("\r\n\r\n") {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in group.split("\r\n") {
            assert!(!line.is_empty(), "an empty line inside a group: {text:?}");
            if line.starts_with(' ') || line.starts_with('\t') {
                let last = fields.last_mut().expect("a continuation after a field");
                last.1.push_str(line);
                continue;
            }
            let (name, value) = line.split_once(':').expect("Name: value");
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "a field name: {name:?}"
            );
            fields.push((name.to_string(), value.trim_start().to_string()));
        }
        groups.push(fields);
    }
    groups
}

fn get<'g>(group: &'g [(String, String)], name: &str) -> Option<&'g str> {
    group
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn one_failed_recipient_is_a_multipart_report_of_three_parts() {
    let recipients = [failed("bob@far.test")];
    let (message, notification) = write(&report(&recipients));
    assert_eq!(
        notification,
        Notification {
            recipient: "alice@client.test".into(),
            smtputf8: false,
            eight_bit: false,
            kind: Kind::Failure,
            reported: 1,
            returned: Returned::Headers,
        }
    );
    assert_eq!(notification.reverse_path(), "");
    assert!(message.is_ascii());
    let text = String::from_utf8(message.clone()).unwrap();
    assert!(text.starts_with("From: Mail Delivery System <MAILER-DAEMON@relay.test>\r\n"));
    assert!(text.contains("\r\nDate: Mon, 7 Dec 2026 06:20:10 +0000\r\n"));
    assert!(text.contains("\r\nMessage-ID: <Q1234.dsn@relay.test>\r\n"));
    assert!(text.contains("\r\nMIME-Version: 1.0\r\n"));

    let parsed = parse(&message);
    assert_eq!(parsed.top.0, "multipart/report");
    assert_eq!(parsed.top.1.as_deref(), Some("delivery-status"));
    assert_eq!(parsed.subject, "Undelivered Mail Returned to Sender");
    assert_eq!(parsed.auto_submitted, "auto-replied");
    assert_eq!(parsed.to, "<alice@client.test>");
    let types: Vec<&str> = parsed.parts.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    let human = String::from_utf8_lossy(&parsed.parts[0].1);
    assert!(
        human.contains("<bob@far.test>: delivery failed (5.1.1)"),
        "{human}"
    );
    assert!(human.contains("mx.far.test said: 550 5.1.1 <bob@far.test>: no such user"));

    let groups = status_groups(&parsed.parts[1].1);
    assert_eq!(groups.len(), 2);
    let message_fields: Vec<&str> = groups[0].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        message_fields,
        ["Reporting-MTA", "Received-From-MTA", "Arrival-Date"]
    );
    assert_eq!(get(&groups[0], "Reporting-MTA"), Some("dns; relay.test"));
    assert_eq!(
        get(&groups[0], "Received-From-MTA"),
        Some("dns; client.test")
    );
    assert_eq!(
        get(&groups[0], "Arrival-Date"),
        Some("Mon, 7 Dec 2026 06:19:10 +0000")
    );
    let names: Vec<&str> = groups[1].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Final-Recipient",
            "Action",
            "Status",
            "Remote-MTA",
            "Diagnostic-Code",
            "Last-Attempt-Date"
        ]
    );
    assert_eq!(
        get(&groups[1], "Final-Recipient"),
        Some("rfc822; bob@far.test")
    );
    assert_eq!(get(&groups[1], "Action"), Some("failed"));
    assert_eq!(get(&groups[1], "Status"), Some("5.1.1"));
    assert_eq!(get(&groups[1], "Remote-MTA"), Some("dns; mx.far.test"));
    assert_eq!(
        get(&groups[1], "Diagnostic-Code"),
        Some("smtp; 550 5.1.1 <bob@far.test>: no such user")
    );

    let headers = &parsed.parts[2].1;
    assert!(headers.starts_with(b"From: Alice <alice@client.test>\r\n"));
    assert!(headers.ends_with(b"Message-ID: <1@client.test>\r\n"));
    assert!(!headers.windows(4).any(|w| w == b"noon"));
}

#[test]
fn a_partial_outcome_reports_the_failure_and_the_success_asked_for_only() {
    let success = Notify::SUCCESS.union(Notify::FAILURE);
    let recipients = [
        failed("bob@far.test"),
        RecipientOutcome {
            address: "carol@far.test",
            notify: success,
            action: Action::Delivered,
            status: status(2, 0, 0),
            diagnostic: Some(Diagnostic::Smtp(b"250 2.0.0 ok: queued as 42\r\n")),
            ..failed("carol@far.test")
        },
        // Delivered but SUCCESS not asked for: not reported.
        RecipientOutcome {
            address: "dave@far.test",
            action: Action::Delivered,
            status: status(2, 0, 0),
            ..failed("dave@far.test")
        },
    ];
    let (message, notification) = write(&report(&recipients));
    assert_eq!(notification.kind, Kind::Failure);
    assert_eq!(notification.reported, 2);
    let parsed = parse(&message);
    let groups = status_groups(&parsed.parts[1].1);
    assert_eq!(groups.len(), 3);
    assert_eq!(get(&groups[1], "Action"), Some("failed"));
    assert_eq!(
        get(&groups[2], "Final-Recipient"),
        Some("rfc822; carol@far.test")
    );
    assert_eq!(get(&groups[2], "Action"), Some("delivered"));
    assert_eq!(get(&groups[2], "Status"), Some("2.0.0"));
    assert!(!String::from_utf8_lossy(&message).contains("dave@"));
}

#[test]
fn a_delay_warning_says_until_when_it_is_retried() {
    let recipients = [RecipientOutcome {
        action: Action::Delayed,
        status: status(4, 4, 1),
        diagnostic: Some(Diagnostic::Local(
            b"connect to mx.far.test: Connection refused",
        )),
        will_retry_until: Some(NOW + 86_400),
        ..failed("bob@far.test")
    }];
    let (message, notification) = write(&report(&recipients));
    assert_eq!(notification.kind, Kind::Delay);
    let parsed = parse(&message);
    assert_eq!(parsed.subject, "Delayed Mail (still being retried)");
    let groups = status_groups(&parsed.parts[1].1);
    assert_eq!(get(&groups[1], "Action"), Some("delayed"));
    assert_eq!(get(&groups[1], "Status"), Some("4.4.1"));
    assert_eq!(
        get(&groups[1], "Will-Retry-Until"),
        Some("Tue, 8 Dec 2026 06:20:10 +0000")
    );
    assert_eq!(
        get(&groups[1], "Diagnostic-Code"),
        Some("x-fastsmtpd; connect to mx.far.test: Connection refused")
    );
    let human = String::from_utf8_lossy(&parsed.parts[0].1);
    assert!(human.contains("Will be retried until Tue, 8 Dec 2026 06:20:10 +0000."));

    // A failed recipient never carries Will-Retry-Until, even when the caller passes one.
    let recipients = [RecipientOutcome {
        will_retry_until: Some(NOW + 86_400),
        ..failed("bob@far.test")
    }];
    let (message, _) = write(&report(&recipients));
    assert!(!String::from_utf8_lossy(&message).contains("Will-Retry-Until"));
}

#[test]
fn ret_full_returns_the_whole_message_and_hdrs_or_none_the_header_only() {
    let recipients = [failed("bob@far.test")];
    for (ret, returned) in [
        (Some(Ret::Full), Returned::Full),
        (Some(Ret::Headers), Returned::Headers),
        (None, Returned::Headers),
    ] {
        let mut report = report(&recipients);
        report.envelope.ret = ret;
        let (message, notification) = write(&report);
        assert_eq!(notification.returned, returned, "{ret:?}");
        let parsed = parse(&message);
        match returned {
            Returned::Full => {
                assert_eq!(parsed.parts[2].0, "message/rfc822");
                assert_eq!(parsed.parts[2].1, ORIGINAL);
                let nested = MessageParser::default().parse(&parsed.parts[2].1).unwrap();
                assert_eq!(nested.subject(), Some("lunch"));
            }
            Returned::Headers => {
                assert_eq!(parsed.parts[2].0, "text/rfc822-headers");
                assert!(!parsed.parts[2].1.windows(4).any(|w| w == b"noon"));
            }
        }
    }
    // RFC 3461 §4.3: a report with no failure in it returns the header only.
    let recipients = [RecipientOutcome {
        notify: Notify::SUCCESS,
        action: Action::Relayed,
        status: status(2, 0, 0),
        ..failed("bob@far.test")
    }];
    let mut success = report(&recipients);
    success.envelope.ret = Some(Ret::Full);
    let (message, notification) = write(&success);
    assert_eq!(notification.kind, Kind::Success);
    assert_eq!(notification.returned, Returned::Headers);
    assert_eq!(parse(&message).subject, "Successful Mail Delivery Report");
}

#[test]
fn ret_full_falls_back_to_the_header_when_the_original_cannot_go_back_whole() {
    let recipients = [failed("bob@far.test")];
    let long_line = [ORIGINAL, &[b'x'; 1200][..], b"\r\n"].concat();
    let bare_lf = [ORIGINAL, b"a bare\nline feed\r\n"].concat();
    let too_large = [
        ORIGINAL,
        &b"0123456789\r\n".repeat(MAX_RETURNED_MESSAGE_LEN / 12 + 1),
    ]
    .concat();
    for original in [&long_line, &bare_lf, &too_large] {
        let mut report = report(&recipients);
        report.envelope.ret = Some(Ret::Full);
        report.original = original;
        let (message, notification) = write(&report);
        assert_eq!(notification.returned, Returned::Headers);
        let parsed = parse(&message);
        assert_eq!(parsed.parts[2].0, "text/rfc822-headers");
        assert!(String::from_utf8_lossy(&parsed.parts[0].1).contains("returned whole"));
    }
    // An original without a final CR LF goes back whole, completed by one.
    let mut report = report(&recipients);
    report.envelope.ret = Some(Ret::Full);
    report.original = b"Subject: cut\r\n\r\nno end";
    let (message, notification) = write(&report);
    assert_eq!(notification.returned, Returned::Full);
    assert_eq!(
        parse(&message).parts[2].1,
        b"Subject: cut\r\n\r\nno end\r\n"
    );
}

#[test]
fn envid_and_orcpt_appear_decoded() {
    let orcpt = decode_xtext(b"Bob+2BLists@far.test").unwrap();
    let orcpt = String::from_utf8(orcpt).unwrap();
    let envid = decode_xtext(b"QQ+2B314159").unwrap();
    let recipients = [RecipientOutcome {
        original: Some(OriginalRecipient {
            address_type: "rfc822",
            address: &orcpt,
        }),
        ..failed("bob@far.test")
    }];
    let mut report = report(&recipients);
    report.envelope.envid = Some(&envid);
    let (message, _) = write(&report);
    let groups = status_groups(&parse(&message).parts[1].1);
    assert_eq!(groups[0][0].0, "Original-Envelope-Id");
    assert_eq!(get(&groups[0], "Original-Envelope-Id"), Some("QQ+314159"));
    assert_eq!(groups[1][0].0, "Original-Recipient");
    assert_eq!(
        get(&groups[1], "Original-Recipient"),
        Some("rfc822; Bob+Lists@far.test")
    );
    // Without ORCPT there is no Original-Recipient, without ENVID no Original-Envelope-Id.
    let recipients = [failed("bob@far.test")];
    let (message, _) = write(&self::report(&recipients));
    let text = String::from_utf8_lossy(&message);
    assert!(!text.contains("Original-Recipient"));
    assert!(!text.contains("Original-Envelope-Id"));
}

#[test]
fn nothing_is_sent_to_a_null_reverse_path_or_with_notify_never() {
    let recipients = [failed("bob@far.test")];
    let mut null_sender = report(&recipients);
    null_sender.envelope.reverse_path = "";
    let mut out = b"kept".to_vec();
    assert_eq!(notification_into(&null_sender, &mut out), None);
    assert_eq!(out, b"kept");

    let never = [RecipientOutcome {
        notify: Notify::NEVER,
        ..failed("bob@far.test")
    }];
    assert_eq!(notification_into(&report(&never), &mut out), None);
    assert_eq!(out, b"kept");
}

#[test]
fn notification_due_follows_notify_as_rfc_3461_says() {
    let all = Notify::SUCCESS.union(Notify::FAILURE).union(Notify::DELAY);
    let only_failure = Notify::FAILURE;
    let absent = Notify::ABSENT;
    use Action::*;
    let cases: &[(&str, Notify, Action, bool)] = &[
        ("a@b", absent, Failed, true),
        ("a@b", absent, Delayed, true),
        ("a@b", absent, Delivered, false),
        ("a@b", absent, Relayed, false),
        ("a@b", Notify::NEVER, Failed, false),
        ("a@b", Notify::NEVER, Delayed, false),
        ("a@b", only_failure, Failed, true),
        ("a@b", only_failure, Delayed, false),
        ("a@b", all, Delivered, true),
        ("a@b", all, Relayed, true),
        ("a@b", all, Expanded, true),
        ("", all, Failed, false),
        ("", absent, Delayed, false),
    ];
    for &(sender, notify, action, due) in cases {
        assert_eq!(
            notification_due(sender, notify, action),
            due,
            "{sender:?} {notify:?} {action:?}"
        );
    }
    assert_eq!(handoff_action(false), Some(Action::Relayed));
    assert_eq!(handoff_action(true), None);
}

#[test]
fn a_utf8_recipient_makes_a_global_report_that_needs_smtputf8() {
    let recipients = [failed("jörg@bücher.test")];
    let mut report = report(&recipients);
    report.envelope.smtputf8 = true;
    let (message, notification) = write(&report);
    assert!(notification.smtputf8);
    assert!(notification.eight_bit);
    let parsed = parse(&message);
    let types: Vec<&str> = parsed.parts.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "text/plain",
            "message/global-delivery-status",
            "message/global-headers"
        ]
    );
    let groups = status_groups(&parsed.parts[1].1);
    assert_eq!(
        get(&groups[1], "Final-Recipient"),
        Some("utf-8; jörg@bücher.test")
    );
    assert!(String::from_utf8_lossy(&message).contains("Content-Transfer-Encoding: 8bit"));

    // A UTF-8 sender alone is enough; unitext escapes what QUCHAR leaves out.
    let recipients = [failed("bob@far.test")];
    let mut report = self::report(&recipients);
    report.envelope.reverse_path = "élise@client.test";
    let (_, notification) = write(&report);
    assert!(notification.smtputf8);
    assert_eq!(
        field::unitext("a+b=c\\d é"),
        "a\\x{2B}b\\x{3D}c\\x{5C}d\\x{20}é"
    );

    // An ASCII-only report stays classic even from an SMTPUTF8 message with an ASCII header.
    let recipients = [failed("bob@far.test")];
    let mut report = self::report(&recipients);
    report.envelope.smtputf8 = true;
    let (_, notification) = write(&report);
    assert!(!notification.smtputf8);
}

#[test]
fn an_eight_bit_header_without_smtputf8_needs_8bitmime_only() {
    let recipients = [failed("bob@far.test")];
    let mut report = report(&recipients);
    report.original = "Subject: caf\u{e9}\r\n\r\nbody\r\n".as_bytes();
    let (message, notification) = write(&report);
    assert!(!notification.smtputf8);
    assert!(notification.eight_bit);
    let parsed = parse(&message);
    assert_eq!(parsed.parts[2].0, "text/rfc822-headers");
    assert_eq!(parsed.parts[1].0, "message/delivery-status");
}

#[test]
fn a_hostile_diagnostic_is_one_bounded_printable_field() {
    let mut hostile =
        b"550 5.1.1 first\r\n550-second\r\nInjected: field\r\n\r\n--boundary\0".to_vec();
    hostile.extend(std::iter::repeat_n(b'A', 5000));
    hostile.extend_from_slice(b" tail \x07\x7f\xff\r\n");
    let recipients = [RecipientOutcome {
        diagnostic: Some(Diagnostic::Smtp(&hostile)),
        ..failed("bob@far.test")
    }];
    let (message, _) = write(&report(&recipients));
    let parsed = parse(&message);
    let groups = status_groups(&parsed.parts[1].1);
    assert_eq!(groups.len(), 2, "no blank line was smuggled in");
    assert!(get(&groups[1], "Injected").is_none());
    let code = get(&groups[1], "Diagnostic-Code").unwrap();
    assert!(code.starts_with("smtp; 550 5.1.1 first 550-second Injected: field --boundary?AAA"));
    assert!(code.ends_with("..."), "{code}");
    // Unfolded, the value is the bounded text, plus the one space each forced break adds.
    assert!(
        code.len() <= "smtp; ".len() + MAX_DIAGNOSTIC_LEN + 2,
        "{}",
        code.len()
    );
    assert!(code.bytes().all(|b| (b' '..=b'~').contains(&b)));
}

#[test]
fn an_original_without_a_blank_line_is_all_header() {
    let recipients = [failed("bob@far.test")];
    let mut report = report(&recipients);
    report.original = b"Subject: only a header\r\nX-Long: yes";
    let (message, _) = write(&report);
    let parsed = parse(&message);
    assert_eq!(
        parsed.parts[2].1,
        b"Subject: only a header\r\nX-Long: yes\r\n"
    );
    // Bare LF, stray CR and NUL in a header block are defused; an empty original is fine.
    report.original = b"Subject: a\rb\0c\nX: y\n\nbody";
    let (message, _) = write(&report);
    assert_eq!(parse(&message).parts[2].1, b"Subject: a b c\r\nX: y\r\n");
    report.original = b"";
    let (message, _) = write(&report);
    assert_eq!(parse(&message).parts[2].1, b"");
}

#[test]
fn the_boundary_never_occurs_in_what_the_parts_hold() {
    let recipients = [RecipientOutcome {
        diagnostic: Some(Diagnostic::Smtp(
            b"550 see --=_dsn_Q1234_1 and =_dsn_Q1234_7",
        )),
        ..failed("bob@far.test")
    }];
    let original = b"Subject: x\r\nX-Trap: =_dsn_Q1234_12\r\n\r\n--=_dsn_Q1234_13\r\n--=_dsn_Q1234_99999999999999999999999\r\n";
    let mut report = report(&recipients);
    report.original = original;
    report.envelope.ret = Some(Ret::Full);
    let (message, _) = write(&report);
    let parsed = parse(&message);
    let boundary = parsed.top.2.clone().expect("a boundary");
    assert!(boundary.len() <= 70);
    assert_eq!(parsed.parts.len(), 3);
    assert_eq!(parsed.parts[2].1, original);
    for (_, contents) in &parsed.parts {
        assert!(memchr::memmem::find(contents, boundary.as_bytes()).is_none());
    }
}

#[test]
fn dates_are_rfc_5322_in_utc() {
    for (seconds, text) in [
        (0, "Thu, 1 Jan 1970 00:00:00 +0000"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
        (NOW, "Mon, 7 Dec 2026 06:20:10 +0000"),
        (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 +0000"),
        (4_107_542_400, "Mon, 1 Mar 2100 00:00:00 +0000"),
    ] {
        assert_eq!(field::date(seconds), text, "{seconds}");
    }
    // Far future values do not panic.
    let _ = field::date(u64::MAX);
}

#[test]
fn folding_unfolds_to_the_value_and_breaks_long_runs() {
    let value = "smtp; 550 5.1.1 the  mailbox of someone with a long explanation that goes on and on past seventy-eight columns";
    let mut out = Vec::new();
    field::folded_into(&mut out, "Diagnostic-Code: ", value, " ");
    let text = String::from_utf8(out).unwrap();
    assert!(text.lines().count() > 1);
    assert!(text.lines().all(|l| l.len() <= field::FOLD_LEN));
    let unfolded = text.trim_end_matches("\r\n").replace("\r\n", "");
    assert_eq!(unfolded, format!("Diagnostic-Code: {value}"));

    let run = "é".repeat(1000);
    let mut out = Vec::new();
    field::folded_into(&mut out, "X: ", &run, " ");
    check_lines(&out);
    assert!(
        std::str::from_utf8(&out).is_ok(),
        "cut on character boundaries"
    );
}

#[test]
fn one_line_text_is_printable_and_bounded() {
    let cases: &[(&[u8], bool, usize, &str)] = &[
        (b"  a\r\n b\tc  ", false, 100, "a b c"),
        (b"nul\0del\x7f", false, 100, "nul?del?"),
        ("caf\u{e9}".as_bytes(), false, 100, "caf?"),
        ("caf\u{e9}".as_bytes(), true, 100, "caf\u{e9}"),
        (b"bad \xff\xfe utf", true, 100, "bad ?? utf"),
        (b"abcdefghij", false, 8, "abcde..."),
        (b"abcdefgh", false, 8, "abcdefgh"),
    ];
    for &(input, utf8, max, expected) in cases {
        assert_eq!(
            field::one_line_text(input, utf8, max),
            expected,
            "{input:?}"
        );
    }
}

#[test]
fn long_header_lines_are_cut_under_the_limit_on_a_character_boundary() {
    let recipients = [failed("bob@far.test")];
    let mut report = report(&recipients);
    let long_utf8 = format!("Subject: {}\r\n\r\n", "\u{e9}".repeat(700));
    let continuation_only = [b"X: ".as_slice(), &[0x80; 1200], b"\r\nY: z\r\n"].concat();
    for original in [long_utf8.as_bytes(), &continuation_only] {
        report.original = original;
        let (message, _) = write(&report);
        // The raw line (mail-parser would decode the part); write() checked it is <= 998.
        let name = &original[..3];
        let line = message
            .split(|&b| b == b'\n')
            .find(|line| line.starts_with(name) && line.len() > 100)
            .expect("the long line is there");
        assert!(line.len() > MAX_LINE_LEN - 3, "{}", line.len());
    }
    let cut = b"Subject: ".len() + (MAX_LINE_LEN - b"Subject: ".len()) / 2 * 2;
    report.original = long_utf8.as_bytes();
    let (message, _) = write(&report);
    assert!(message.windows(cut + 2).any(|w| w.starts_with(b"Subject: ")
        && w.ends_with(b"\r\n")
        && std::str::from_utf8(&w[..cut]).is_ok()));
    report.original = &continuation_only;
    let (message, _) = write(&report);
    assert!(parse(&message).parts[2].1.ends_with(b"\r\nY: z\r\n"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the original holds (bare CR and LF, NUL, 8-bit, long lines, no blank line),
    /// the notification keeps every rule, and `RET=FULL` returns it whole or not at all.
    #[test]
    fn any_original_keeps_the_structure(
        original in proptest::collection::vec(
            prop_oneof![
                4 => any::<u8>(),
                2 => Just(b'\n'),
                2 => Just(b'\r'),
                1 => Just(b':'),
            ],
            0..4000,
        ),
        full in any::<bool>(),
        smtputf8 in any::<bool>(),
        token in "\\PC{0,80}",
        mta in "\\PC{0,300}",
    ) {
        let recipients = [failed("bob@far.test")];
        let mut report = report(&recipients);
        report.original = &original;
        report.envelope.ret = Some(if full { Ret::Full } else { Ret::Headers });
        report.envelope.smtputf8 = smtputf8;
        report.token = &token;
        report.reporting_mta = &mta;
        let mut out = Vec::new();
        let notification = notification_into(&report, &mut out).expect("due");
        check_lines(&out);
        let parsed = parse(&out);
        prop_assert_eq!(parsed.parts.len(), 3);
        prop_assert_eq!(status_groups(&parsed.parts[1].1).len(), 2);
        if notification.returned == Returned::Full {
            prop_assert!(full);
            let mut expected = original.clone();
            if !expected.ends_with(b"\r\n") {
                expected.extend_from_slice(b"\r\n");
            }
            // mail-parser counts the delimiter's CR LF into a nested message that has no
            // blank line; the bytes written are the original's.
            let returned = &parsed.parts[2].1;
            prop_assert!(returned.starts_with(&expected), "{:?}", returned);
            prop_assert!(matches!(&returned[expected.len()..], b"" | b"\r\n"), "{:?}", returned);
        }
        prop_assert!(parsed.top.2.is_some_and(|b| b.len() <= 70));
    }

    /// Whatever the next hop says and whatever the addresses hold, the notification parses
    /// as three parts, its report as field groups, and every line keeps the rules.
    #[test]
    fn any_diagnostic_and_address_keeps_the_structure(
        diagnostic in proptest::collection::vec(any::<u8>(), 0..3000),
        local in "[^@]{1,80}",
        domain in "[a-z0-9.\u{e9}\u{4e2d}-]{1,60}",
        sender in "\\PC{0,120}",
        spaces in proptest::collection::vec(prop_oneof![Just(b' '), Just(b'a'), Just(b'\n')], 0..1500),
    ) {
        let address = format!("{local}@{domain}");
        let mut diagnostic = diagnostic;
        diagnostic.extend_from_slice(&spaces);
        let recipients = [
            RecipientOutcome {
                diagnostic: Some(Diagnostic::Smtp(&diagnostic)),
                original: Some(OriginalRecipient { address_type: "rfc822", address: &address }),
                ..failed(&address)
            },
            RecipientOutcome {
                action: Action::Delayed,
                diagnostic: Some(Diagnostic::Local(&diagnostic)),
                will_retry_until: Some(NOW + 3600),
                ..failed("x@y.test")
            },
        ];
        let mut report = report(&recipients);
        let sender = format!("s{sender}@client.test");
        report.envelope.reverse_path = &sender;
        report.envelope.ret = Some(Ret::Full);
        let mut out = Vec::new();
        let notification = notification_into(&report, &mut out).expect("due");
        check_lines(&out);
        let parsed = parse(&out);
        prop_assert_eq!(parsed.parts.len(), 3);
        let groups = status_groups(&parsed.parts[1].1);
        prop_assert_eq!(groups.len(), 3);
        prop_assert!(get(&groups[1], "Diagnostic-Code").is_some() || diagnostic.iter().all(|b| b.is_ascii_whitespace()));
        prop_assert_eq!(notification.smtputf8, !address.is_ascii() || !sender.is_ascii());
        prop_assert_eq!(parsed.parts[2].1.as_slice(), ORIGINAL);
    }
}

/// The whole notification for one failed recipient, byte for byte: the format a reader of
/// docs/relay.md can rely on.
#[test]
fn one_notification_byte_for_byte() {
    const EXPECTED: &str = "\
From: Mail Delivery System <MAILER-DAEMON@relay.test>
To: <alice@client.test>
Subject: Undelivered Mail Returned to Sender
Date: Mon, 7 Dec 2026 06:20:10 +0000
Message-ID: <Q1234.dsn@relay.test>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary=\"=_dsn_Q1234_1\"

This is a MIME-encapsulated message.

--=_dsn_Q1234_1
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at relay.test.

Your message could not be delivered to one or more of its recipients. The mail
system gave up on them for the reasons below. A machine-readable report and
the original message's header (or the whole message, if you asked for it) are
attached.

<bob@far.test>: delivery failed (5.1.1)
    mx.far.test said: 550 5.1.1 <bob@far.test>: no such user

--=_dsn_Q1234_1
Content-Description: Delivery report
Content-Type: message/delivery-status

Original-Envelope-Id: QQ+314159
Reporting-MTA: dns; relay.test
Received-From-MTA: dns; client.test
Arrival-Date: Mon, 7 Dec 2026 06:19:10 +0000

Original-Recipient: rfc822; Bob+Lists@far.test
Final-Recipient: rfc822; bob@far.test
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.far.test
Diagnostic-Code: smtp; 550 5.1.1 <bob@far.test>: no such user
Last-Attempt-Date: Mon, 7 Dec 2026 06:20:05 +0000

--=_dsn_Q1234_1
Content-Description: Message Headers
Content-Type: text/rfc822-headers

From: Alice <alice@client.test>
To: bob@far.test
Subject: lunch
Message-ID: <1@client.test>

--=_dsn_Q1234_1--
";
    let recipients = [RecipientOutcome {
        original: Some(OriginalRecipient {
            address_type: "rfc822",
            address: "Bob+Lists@far.test",
        }),
        ..failed("bob@far.test")
    }];
    let mut report = report(&recipients);
    report.envelope.envid = Some(b"QQ+314159");
    let (message, _) = write(&report);
    assert_eq!(
        String::from_utf8(message).unwrap(),
        EXPECTED.replace('\n', "\r\n")
    );
}
