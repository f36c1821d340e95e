//! `--relay-domains` and `--relay-listen`: one server relays the recipients at some domains,
//! or the mail of some listeners, and keeps every message in its own store. The relay binary
//! with `--relay-domains y.test,.sub.test --store eml:LOCAL` (or two listeners and
//! `--relay-listen`), a sink binary as the next hop, loopback only, bounded waits.

mod util;

use std::process::Command;
use std::time::Duration;
use util::relay::{arrived, send, start_relay, Sink};

#[test]
fn only_the_listed_domains_are_relayed_and_the_store_keeps_every_message() {
    let dir = util::scratch_dir("relay-domains");
    let sink = Sink::start(&dir.join("next"), &[], &[]);
    let local = dir.join("local");
    let store = format!("eml:{}", local.display());
    let (_relay, relay) = start_relay(
        &dir,
        &[sink.addr],
        &["--relay-domains", "y.test,.sub.test", "--store", &store],
    );
    // Nothing to relay: kept here only.
    let reply = send(
        relay,
        "a@x.test",
        &["z@z.test", "w@sub.test"],
        "Subject: local\r\n\r\nx\r\n",
    );
    assert!(reply.starts_with("250 "), "{reply}");
    // Three recipients, two relayed (one exactly at y.test, one under sub.test).
    let reply = send(
        relay,
        "a@x.test",
        &["r@Y.test", "z@z.test", "s@a.sub.test"],
        "Subject: mixed\r\n\r\ny\r\n",
    );
    assert!(reply.starts_with("250 "), "{reply}");
    let found = sink.wait_for(1);
    std::thread::sleep(Duration::from_millis(500)); // a wrongly relayed message would show now
    let found = if sink.arrived().len() == found.len() {
        found
    } else {
        sink.arrived()
    };
    assert_eq!(found.len(), 1, "only the mixed message is relayed");
    let (record, bytes) = &found[0];
    assert_eq!(
        record["rcpt_to"],
        serde_json::json!(["r@Y.test", "s@a.sub.test"]),
        "with its relayed recipients only"
    );
    assert!(String::from_utf8_lossy(bytes).contains("Subject: mixed"));
    // The local store kept both messages, each with every recipient.
    let kept = arrived(&local);
    assert_eq!(kept.len(), 2);
    let mut recipients: Vec<_> = kept.iter().map(|(r, _)| r["rcpt_to"].clone()).collect();
    recipients.sort_by_key(|r| r.to_string());
    assert_eq!(
        recipients,
        [
            serde_json::json!(["r@Y.test", "z@z.test", "s@a.sub.test"]),
            serde_json::json!(["z@z.test", "w@sub.test"]),
        ]
    );
}

/// Two listeners, one relaying (`--relay-listen`): its mail goes to the next hop; the other's
/// is kept by the store only, with no `Received:` loop check applied to it either.
#[test]
fn only_the_listed_listeners_relay_and_the_store_keeps_every_message() {
    let dir = util::scratch_dir("relay-listen");
    let sink = Sink::start(&dir.join("next"), &[], &[]);
    let local = dir.join("local");
    let store = format!("eml:{}", local.display());
    let inside = util::free_local_addr();
    let (_relay, outside) = start_relay(
        &dir,
        &[sink.addr],
        &[
            "--listen",
            &inside,
            "--relay-listen",
            &inside,
            "--store",
            &store,
        ],
    );
    let inside: std::net::SocketAddr = inside.parse().unwrap();
    let reply = send(
        outside,
        "a@x.test",
        &["r@y.test"],
        "Subject: outside\r\n\r\nx\r\n",
    );
    assert!(reply.starts_with("250 "), "{reply}");
    // 60 Received: fields: a loop for a relaying listener, not for a sink's.
    let looping = "Received: from a\r\n".repeat(60) + "Subject: many hops\r\n\r\nz\r\n";
    let reply = send(outside, "a@x.test", &["r@y.test"], &looping);
    assert!(reply.starts_with("250 "), "{reply}");
    let reply = send(inside, "b@x.test", &["r@y.test"], &looping);
    assert!(reply.starts_with("554 5.4.6"), "{reply}");
    let reply = send(
        inside,
        "b@x.test",
        &["r@y.test"],
        "Subject: inside\r\n\r\ny\r\n",
    );
    assert!(reply.starts_with("250 "), "{reply}");
    let found = sink.wait_for(1);
    std::thread::sleep(Duration::from_millis(500)); // a wrongly relayed message would show now
    let found = if sink.arrived().len() == found.len() {
        found
    } else {
        sink.arrived()
    };
    assert_eq!(
        found.len(),
        1,
        "only the inside listener's message is relayed"
    );
    assert!(String::from_utf8_lossy(&found[0].1).contains("Subject: inside"));
    let mut subjects: Vec<String> = arrived(&local)
        .iter()
        .map(|(_, bytes)| {
            let text = String::from_utf8_lossy(bytes);
            let at = text.find("Subject: ").unwrap();
            text[at..].lines().next().unwrap().to_owned()
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        ["Subject: inside", "Subject: many hops", "Subject: outside"],
        "the store keeps every message accepted"
    );
}

#[test]
fn bad_relay_domains_stop_the_server_at_start_with_the_reason() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"))
            .args(["--listen", &util::free_local_addr()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--relay-domains", "a.test"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--relay-domains needs --relay-to"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--relay-domains", "a..test"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("empty label"), "{stderr}");
    let (code, stderr) = run(&["--relay-domains", ""]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("an item is empty"), "{stderr}");
    let spool = util::scratch_dir("relay-listen-refused").join("spool");
    let spool = spool.to_str().unwrap();
    let (code, stderr) = run(&["--relay-listen", "127.0.0.1:1"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--relay-listen needs --relay-to"),
        "{stderr}"
    );
    let (code, stderr) = run(&[
        "--spool",
        spool,
        "--relay-to",
        "127.0.0.1:9",
        "--relay-listen",
        "127.0.0.1:1",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--relay-listen 127.0.0.1:1: not one of the --listen"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--relay-listen", "localhost:25"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not an address with a port"), "{stderr}");
}
