//! The relay end to end, as a user runs it: one fastsmtpd started with `--spool DIR
//! --relay-to SINK` (the binary), a second one as the next hop keeping what arrives
//! (`--store eml:DIR`, with a `--fault` rule refusing one recipient), SMTP clients over
//! loopback. Checks that mail sent to the relay arrives at the next hop byte for byte behind
//! one `Received:` line, and that a recipient the next hop refuses gets its sender exactly
//! one delivery status notification, relayed like any mail with `MAIL FROM:<>`.
//! Bounded waits only (polling the sink's directory), no timed assertion.

mod util;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use util::process::ChildGuard;
use util::relay::{self, send, Sink};

/// Starts the next hop keeping mail in `DIR/mail`, refusing `bad@*` with a 550.
fn start_sink(dir: &Path) -> Sink {
    Sink::start(dir, &["rcpt to=bad@* reply=550 5.1.1 No such user"], &[])
}

/// Starts the relay spooling in `DIR/spool` and delivering to `next_hop`.
fn start_relay(dir: &Path, next_hop: SocketAddr) -> (ChildGuard, SocketAddr) {
    relay::start_relay(
        dir,
        &[next_hop],
        &["--retry", "200ms", "--queue-lifetime", "5s"],
    )
}

/// Splits off the first header field (folded lines included): (that field, the rest).
fn first_field(bytes: &[u8]) -> (String, &[u8]) {
    let mut at = 0;
    loop {
        let end = at
            + bytes[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("a CR LF");
        if !matches!(bytes.get(end + 2), Some(b' ' | b'\t')) {
            return (
                String::from_utf8_lossy(&bytes[..end + 2]).into_owned(),
                &bytes[end + 2..],
            );
        }
        at = end + 2;
    }
}

#[test]
fn mail_sent_to_the_relay_arrives_at_the_next_hop_byte_for_byte_behind_one_received_line() {
    let dir = util::scratch_dir("relay-e2e");
    let sink = start_sink(&dir);
    let (_relay, relay_addr) = start_relay(&dir, sink.addr);
    let content = |n: usize| {
        format!(
            "From: <a@x.test>\r\nTo: <r@y.test>\r\nSubject: message {n}\r\n\r\nline one\r\n\
             ..a line that began with a dot\r\nthe end of {n}\r\n"
        )
    };
    for n in 0..20 {
        let reply = send(relay_addr, "a@x.test", &["r@y.test"], &content(n));
        assert!(reply.starts_with("250 "), "{reply:?}");
    }
    let found = sink.wait_for(20);
    assert_eq!(found.len(), 20, "no duplicates on a quiet run");
    let mut subjects = Vec::new();
    for (record, bytes) in &found {
        assert_eq!(record["mail_from"], "a@x.test");
        assert_eq!(record["rcpt_to"], serde_json::json!(["r@y.test"]));
        let (trace, rest) = first_field(bytes);
        assert!(trace.starts_with("Received: from client.test ("), "{trace}");
        assert!(trace.contains("by mx.test"), "{trace}");
        assert!(trace.contains("for <r@y.test>"), "{trace}");
        let text = String::from_utf8_lossy(rest).into_owned();
        let n: usize = text
            .lines()
            .find_map(|line| line.strip_prefix("Subject: message "))
            .expect("a subject")
            .parse()
            .unwrap();
        // Exactly what was sent, dot-unstuffed by the relay and stuffed again on the way.
        assert_eq!(text, content(n).replace("\r\n..", "\r\n."));
        // One Received: line: the relay's own.
        assert_eq!(text.matches("Received:").count(), 0);
        subjects.push(n);
    }
    subjects.sort_unstable();
    assert_eq!(subjects, (0..20).collect::<Vec<_>>());
}

#[test]
fn a_recipient_the_next_hop_refuses_gets_its_sender_one_notification() {
    let dir = util::scratch_dir("relay-e2e-dsn");
    let sink = start_sink(&dir);
    let (_relay, relay_addr) = start_relay(&dir, sink.addr);
    let reply = send(
        relay_addr,
        "a@x.test",
        &["good@y.test", "bad@y.test"],
        "Subject: half\r\n\r\nbody\r\n",
    );
    assert!(reply.starts_with("250 "), "{reply:?}");
    // The good recipient's copy, and the notification to the sender.
    let found = sink.wait_for(2);
    let (copies, notices): (Vec<_>, Vec<_>) = found
        .iter()
        .partition(|(record, _)| record["mail_from"] != "");
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].0["rcpt_to"], serde_json::json!(["good@y.test"]));
    assert_eq!(notices.len(), 1, "exactly one notification");
    let (record, bytes) = notices[0];
    assert_eq!(record["rcpt_to"], serde_json::json!(["a@x.test"]));
    let text = String::from_utf8_lossy(bytes);
    assert!(text.contains("report-type=delivery-status"), "{text}");
    assert!(text.contains("Action: failed"), "{text}");
    assert!(
        text.contains("Final-Recipient: rfc822; bad@y.test"),
        "{text}"
    );
    assert!(text.contains("550"), "{text}");
    assert!(
        text.contains("Subject: half"),
        "the original's header: {text}"
    );
    // Nothing more comes (no second notification, no notification about the good copy).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.arrived().len(), 2);
}
