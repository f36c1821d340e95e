//! The capture API over the durable stores (issue 18: "raw read from the file"), over real
//! sockets: the real binary with `--store eml:DIR --api`. Each message's `/raw` is the
//! bytes sent after dot-unstuffing and the `.eml` file's bytes (a 5 MB message, dot-stuffed
//! lines, and a property test over generated messages the server accepts); the store
//! charges each message its header block and index, not its body (`/api/v1/stats`); a file
//! removed behind the server's back answers `410` with `"reason": "file_missing"`; `DELETE`
//! removes the message from the index and leaves its file; a Maildir store alone keeps the
//! API's copy in memory (its files are not the bytes received) and reads back exact too; a
//! server restarted on the directory answers for the earlier mail (ids, envelopes, `/raw`),
//! skipping and counting what cannot be read back.

mod api_client;
mod util;

use api_client::*;
use proptest::prelude::*;
use std::net::SocketAddr;
use std::path::Path;

/// Sends one message with `content` (unstuffed; dot-stuffed here, ending in CR LF) to
/// `rcpt` on a greeted connection; the id its `250` named.
fn send(client: &mut util::Client, rcpt: &str, content: &[u8]) -> String {
    client.roundtrip("MAIL FROM:<s@test>\r\n", util::MAIL_OK);
    client.roundtrip(format!("RCPT TO:<{rcpt}>\r\n"), util::RCPT_OK);
    client.roundtrip("DATA\r\n", util::GO_AHEAD);
    let mut stuffed = Vec::with_capacity(content.len() + 64);
    for line in content.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    client.send(&stuffed);
    client.roundtrip(".\r\n", util::QUEUED).remove(0)
}

/// A greeted client of `smtp`.
fn client(smtp: SocketAddr) -> util::Client {
    let mut client = util::Client::connect(smtp);
    client.read_reply();
    client.send("EHLO client.test\r\n");
    client.read_reply();
    client
}

/// `GET /raw` of `id`, which must answer `200`.
fn raw(api: SocketAddr, id: &str) -> Vec<u8> {
    let r = get(api, &format!("/api/v1/messages/{id}/raw"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("message/rfc822"));
    r.body
}

/// `/api/v1/stats`.
fn stats(api: SocketAddr) -> serde_json::Value {
    let r = get(api, "/api/v1/stats");
    assert_eq!(r.status, 200);
    r.json()
}

/// A message of about `len` octets whose body lines start with dots now and then.
fn message(subject: &str, len: usize) -> Vec<u8> {
    let mut m = format!("From: a@test\r\nTo: b@test\r\nSubject: {subject}\r\n\r\n").into_bytes();
    let mut n = 0u64;
    while m.len() < len {
        n += 1;
        let line = match n % 5 {
            0 => format!(".line {n} began with a dot\r\n"),
            1 => "..two dots\r\n".to_string(),
            _ => format!(
                "line {n} of the body, {}\r\n",
                "x".repeat((n % 70) as usize)
            ),
        };
        m.extend_from_slice(line.as_bytes());
    }
    m
}

#[test]
fn eml_bodies_are_read_back_from_the_files_byte_exact_and_not_charged() {
    let dir = util::scratch_dir("durable-eml");
    let eml = format!("eml:{}", dir.display());
    let (_child, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &["--store", &eml]);
    let api: SocketAddr = api.parse().unwrap();
    let mut client = client(smtp);

    let small = message("small", 2_000);
    let big = message("big", 5 << 20);
    let first = send(&mut client, "a@test", &small);
    let second = send(&mut client, "b@test", &big);
    for (id, content) in [(&first, &small), (&second, &big)] {
        let file = std::fs::read(dir.join(format!("{id}.eml"))).unwrap();
        assert!(file == *content, "the file is the bytes received");
        let got = raw(api, id);
        assert_eq!(got.len(), content.len());
        assert!(got == *content, "/raw is the bytes received");
    }
    let head = request(api, "HEAD", &format!("/api/v1/messages/{second}/raw"), &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(big.len().to_string().as_str())
    );
    // The parsed view and the list read from the file too.
    let r = get(api, &format!("/api/v1/messages/{second}"));
    assert_eq!(r.status, 200);
    let json = r.json();
    assert_eq!(json["size"], big.len());
    assert!(json["text"].as_str().unwrap().contains(".line 5 began"));
    let r = get(
        api,
        "/api/v1/search?q=body:%22line%2012%20of%20the%20body%22",
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["messages"][0]["id"], second.as_str());

    // The store charges the header block and the index, not the 5 MB body.
    let s = stats(api);
    assert_eq!(s["messages"], 2);
    let charged = s["bytes"].as_u64().unwrap();
    assert!(charged < 8_000, "charged {charged} octets for two messages");
}

#[test]
fn a_file_removed_behind_the_server_answers_410_file_missing_and_delete_leaves_files() {
    let dir = util::scratch_dir("durable-rm");
    let eml = format!("eml:{}", dir.display());
    let (_child, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &["--store", &eml]);
    let api: SocketAddr = api.parse().unwrap();
    let mut client = client(smtp);
    let gone = send(&mut client, "a@test", &message("gone", 500));
    let kept = send(&mut client, "a@test", &message("kept", 500));

    std::fs::remove_file(dir.join(format!("{gone}.eml"))).unwrap();
    for path in [
        format!("/api/v1/messages/{gone}/raw"),
        format!("/api/v1/messages/{gone}"),
        format!("/api/v1/messages/{gone}/links"),
        format!("/api/v1/messages/{gone}/parts/1"),
    ] {
        let r = get(api, &path);
        assert_eq!(
            r.status,
            410,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let json = r.json();
        assert_eq!(json["reason"], "file_missing", "{path}");
        assert_eq!(json["error"]["status"], 410);
    }
    // The summary needs no file: the list still shows it.
    let r = get(api, "/api/v1/messages");
    assert_eq!(r.json()["messages"].as_array().unwrap().len(), 2);
    // Mailpit's raw says so too (as text).
    let r = get(api, &format!("/compat/mailpit/api/v1/message/{gone}/raw"));
    assert_eq!(r.status, 410);
    assert!(String::from_utf8_lossy(&r.body).starts_with("file_missing"));

    // DELETE removes the index entries only: the files are the durable record.
    let r = request(api, "DELETE", &format!("/api/v1/messages/{kept}"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        get(api, &format!("/api/v1/messages/{kept}/raw")).status,
        410
    );
    assert!(dir.join(format!("{kept}.eml")).exists());
    assert!(dir.join(format!("{kept}.json")).exists());
    let r = request(api, "DELETE", "/api/v1/messages", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(stats(api)["messages"], 0);
    assert!(dir.join(format!("{kept}.eml")).exists());
}

#[test]
fn a_file_cut_behind_the_server_answers_410_file_changed() {
    let dir = util::scratch_dir("durable-cut");
    let eml = format!("eml:{}", dir.display());
    let (_child, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &["--store", &eml]);
    let api: SocketAddr = api.parse().unwrap();
    let mut client = client(smtp);
    let id = send(&mut client, "a@test", &message("cut", 500));
    std::fs::write(dir.join(format!("{id}.eml")), b"Subject: other\r\n\r\n").unwrap();
    let r = get(api, &format!("/api/v1/messages/{id}/raw"));
    assert_eq!(r.status, 410);
    assert_eq!(r.json()["reason"], "file_changed");
}

#[test]
fn beside_memory_or_maildir_alone_the_api_keeps_its_copy_in_memory() {
    for store in ["maildir", "memory+eml"] {
        let dir = util::scratch_dir("durable-copy");
        let spec = format!("{}:{}", store.trim_start_matches("memory+"), dir.display());
        let mut args = vec!["--store", &spec];
        if store.starts_with("memory+") {
            args.extend(["--store", "memory"]);
        }
        let (_child, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &args);
        let api: SocketAddr = api.parse().unwrap();
        let mut client = client(smtp);
        let content = message("copy", 100_000);
        let id = send(&mut client, "a@test", &content);
        assert!(raw(api, &id) == content, "{store}");
        // The copy is in memory: its body is charged.
        assert!(stats(api)["bytes"].as_u64().unwrap() > 100_000, "{store}");
        // And answers with the file gone (Maildir: `new/NAME`; eml: `ID.eml`).
        remove_files(&dir);
        assert!(raw(api, &id) == content, "{store}");
    }
}

/// Removes every regular file under `dir`.
fn remove_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            remove_files(&path);
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
}

/// One line of a generated message: any octets but CR and LF (8-bit, NUL-free; leading dots
/// are common), so that the session accepts it under the default `--bare-lf reject`.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(1u8..=255, 0..200).prop_map(|l| l
            .into_iter()
            .filter(|b| !matches!(b, b'\r' | b'\n'))
            .collect()),
        "\\.{1,3}[ -~]{0,20}".prop_map(String::into_bytes),
    ]
}

#[test]
fn every_accepted_message_reads_back_from_its_file_exactly() {
    let dir = util::scratch_dir("durable-prop");
    let eml = format!("eml:{}", dir.display());
    let (_child, smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &["--store", &eml]);
    let api: SocketAddr = api.parse().unwrap();
    let client = std::cell::RefCell::new(client(smtp));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    let strategy = (
        proptest::collection::vec(line(), 0..12),
        proptest::collection::vec(line(), 0..40),
    );
    runner
        .run(&strategy, |(head, body)| {
            let mut content = Vec::new();
            for l in &head {
                content.extend_from_slice(b"X-H: ");
                content.extend_from_slice(l);
                content.extend_from_slice(b"\r\n");
            }
            content.extend_from_slice(b"\r\n");
            for l in &body {
                content.extend_from_slice(l);
                content.extend_from_slice(b"\r\n");
            }
            let id = send(&mut client.borrow_mut(), "p@test", &content);
            prop_assert!(raw(api, &id) == content);
            let file = std::fs::read(dir.join(format!("{id}.eml"))).unwrap();
            prop_assert!(file == content);
            Ok(())
        })
        .unwrap();
}

/// `GET /api/v1/messages` (newest first): each message's id and seq.
fn listed(api: SocketAddr) -> Vec<(String, u64)> {
    let r = get(api, "/api/v1/messages");
    assert_eq!(r.status, 200);
    r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Issue 18 (D2): a sink restarted on the same `eml:DIR` answers for the mail it received
/// before, whether it was killed (SIGKILL) or stopped (SIGTERM): the list shows it with its
/// ids, in arrival order, with the envelope it had; `/raw` is byte-exact; the start says how
/// many were indexed; a message after the restart gets a new id and a higher seq.
#[test]
fn a_restarted_eml_sink_answers_for_its_earlier_mail() {
    for signal in [libc::SIGKILL, libc::SIGTERM] {
        let dir = util::scratch_dir("durable-restart");
        let eml = format!("eml:{}", dir.display());
        let (mut child, smtp, api) =
            util::start_binary_with_api(1, "127.0.0.1", &["--store", &eml]);
        let api: SocketAddr = api.parse().unwrap();
        let mut client = client(smtp);
        let contents: Vec<Vec<u8>> = (0..3)
            .map(|n| message(&format!("before {n}"), 300 + 10_000 * n))
            .collect();
        let ids: Vec<String> = contents
            .iter()
            .enumerate()
            .map(|(n, content)| send(&mut client, &format!("r{n}@test"), content))
            .collect();
        let envelope = |api: SocketAddr, id: &str| {
            let r = get(api, &format!("/api/v1/messages/{id}"));
            assert_eq!(r.status, 200, "{id}: {}", String::from_utf8_lossy(&r.body));
            let json = r.json();
            (
                json["envelope"].clone(),
                json["subject"].clone(),
                json["size"].clone(),
            )
        };
        let before: Vec<_> = ids.iter().map(|id| envelope(api, id)).collect();
        drop(client);
        if signal == libc::SIGKILL {
            child.kill();
        } else {
            child.signal(signal);
            child.wait(util::REPLY_WAIT);
        }

        let (mut child, smtp, api) =
            util::start_binary_with_api(1, "127.0.0.1", &["--store", &eml]);
        let api: SocketAddr = api.parse().unwrap();
        let line = child.next_line(util::REPLY_WAIT);
        assert!(
            line.starts_with(&format!(
                "fastsmtpd: indexed 3 messages from {}",
                dir.display()
            )),
            "{line}"
        );
        let list = listed(api);
        let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
        assert_eq!(
            list.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            newest_first,
            "signal {signal}"
        );
        assert!(
            list.windows(2).all(|w| w[0].1 > w[1].1),
            "seqs follow arrival"
        );
        for ((id, content), before) in ids.iter().zip(&contents).zip(&before) {
            assert_eq!(&envelope(api, id), before, "{id}: the envelope as it was");
            assert!(raw(api, id) == *content, "{id}: /raw byte-exact");
        }
        // Await's scan of kept mail sees them too.
        let r = get(api, "/api/v1/await?rcpt=r1@test&timeout=1s");
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["messages"][0]["id"], ids[1].as_str());

        let mut client = self::client(smtp);
        let new = send(&mut client, "r0@test", &message("after", 500));
        assert!(!ids.contains(&new), "a new id: {new}");
        let list = listed(api);
        assert_eq!(list[0].0, new);
        assert!(list[0].1 > list[1].1, "a higher seq");
        assert!(!child.stderr().contains("warning"), "{}", child.stderr());
    }
}

/// What cannot be read back is skipped and counted in one warning line, and the server
/// starts: a torn sidecar, a sidecar whose `.eml` is missing (a crash between the renames),
/// an `.eml` without its sidecar, an `.eml` cut short, a file of another name; temporary
/// files are not mentioned. With `--capture-max-messages`, the newest that fit are indexed.
#[test]
fn a_restart_skips_what_cannot_be_read_back_and_keeps_the_newest_that_fit() {
    let dir = util::scratch_dir("durable-damaged");
    let eml = format!("eml:{}", dir.display());
    let (mut child, smtp, _api) = util::start_binary_with_api(1, "127.0.0.1", &["--store", &eml]);
    let mut client = client(smtp);
    let ids: Vec<String> = (0..6)
        .map(|n| send(&mut client, "a@test", &message(&format!("m{n}"), 400)))
        .collect();
    drop(client);
    child.kill();
    let torn = dir.join(format!("{}.json", ids[0]));
    let whole = std::fs::read(&torn).unwrap();
    std::fs::write(&torn, &whole[..whole.len() / 2]).unwrap();
    std::fs::remove_file(dir.join(format!("{}.eml", ids[1]))).unwrap();
    std::fs::remove_file(dir.join(format!("{}.json", ids[2]))).unwrap();
    let cut = dir.join(format!("{}.eml", ids[3]));
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..100]).unwrap();
    std::fs::write(dir.join("notes.txt"), b"not mail").unwrap();
    std::fs::write(dir.join(".9.M1P1Q1.eml.tmp"), b"Subject: half").unwrap();

    let (mut child, _smtp, api) = util::start_binary_with_api(1, "127.0.0.1", &["--store", &eml]);
    let api: SocketAddr = api.parse().unwrap();
    let line = child.next_line(util::REPLY_WAIT);
    assert!(line.contains("indexed 2 messages from"), "{line}");
    let newest_first = vec![ids[5].clone(), ids[4].clone()];
    let list = listed(api);
    assert_eq!(
        list.into_iter().map(|(id, _)| id).collect::<Vec<_>>(),
        newest_first
    );
    until("the warning line", || {
        child.stderr().contains("not indexed")
    });
    let stderr = child.stderr();
    assert!(
        stderr.contains(&format!(
            "{}: 5 not indexed for the API (1 sidecar without its .eml, 1 .eml without its sidecar, \
             1 sidecar torn or unreadable, 1 .eml whose length is not its sidecar's size, \
             1 file not named by this server)",
            dir.display()
        )),
        "{stderr}"
    );
    drop(child);

    // Under a limit, the newest that fit; the older files are not read at all (the torn and
    // the cut one are counted as left out, not as damaged).
    let (mut child, _smtp, api) = util::start_binary_with_api(
        1,
        "127.0.0.1",
        &["--store", &eml, "--capture-max-messages", "1"],
    );
    let api: SocketAddr = api.parse().unwrap();
    let line = child.next_line(util::REPLY_WAIT);
    assert!(
        line.contains("indexed 1 message from")
            && line
                .trim_end()
                .ends_with("; 3 older left out by the capture limits"),
        "{line}"
    );
    assert_eq!(listed(api)[0].0, ids[5]);
}
