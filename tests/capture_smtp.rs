//! The SMTP side of the capture store (`--store memory`, issue 18), over real sockets on
//! loopback: a server started in-process, so the test holds `server.capture()` and asks it,
//! at the moment the client has read its `250`, whether the message named there is kept
//! (the record must be visible before the `250` is written). Byte-exact content after
//! dot-unstuffing, no `Bcc:` added, the whole envelope; DATA and BDAT; 100 pipelined
//! messages in order; `--on-full tempfail` (`452 4.3.1`), eviction (the evicted id is gone),
//! a message over the budget (`552 5.3.4`); memory beside a Maildir store; TLS and AUTH in
//! the envelope through Python's smtplib; the metrics.

mod util;

use fastsmtpd::capture::{Capture, GoneReason, Lookup, OnFull, Snapshot};
use fastsmtpd::config::{CaptureSettings, Config, Stores};
use fastsmtpd::proto::sink::QueueId;
use fastsmtpd::store::StoreSpec;
use std::sync::Arc;
use util::{scratch_dir, test_config, Client, TestServer, GO_AHEAD, MAIL_OK, RCPT_OK};

/// A test server keeping mail in memory, with `capture`'s limits.
fn memory_server(capture: CaptureSettings) -> (TestServer, Arc<Capture>) {
    let config = Config {
        stores: Stores {
            specs: vec![StoreSpec::Memory],
            ..Stores::default()
        },
        capture,
        ..test_config()
    };
    let server = TestServer::start(config);
    let capture = server.handle().capture().expect("a capture store");
    (server, capture)
}

/// The id a `250 2.0.0 Ok: queued as ID` names.
#[track_caller]
fn queued_id(reply: &str) -> QueueId {
    let id = reply
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .and_then(|rest| rest.strip_suffix("\r\n"))
        .unwrap_or_else(|| panic!("not a 250 naming an id: {reply:?}"));
    QueueId::new(id.as_bytes()).unwrap()
}

/// The kept message named `id`, asked now.
#[track_caller]
fn kept(capture: &Capture, id: &QueueId) -> Snapshot {
    match capture.get(id) {
        Lookup::Found(snapshot) => snapshot,
        other => panic!("{id} is not kept: {other:?}"),
    }
}

/// Sends one message by DATA on a greeted connection (content already dot-stuffed and
/// ending in CR LF) and returns its final reply.
#[track_caller]
fn send_data(client: &mut Client, rcpt: &str, stuffed: &[u8]) -> String {
    client.roundtrip("MAIL FROM:<s@example.org>\r\n", MAIL_OK);
    client.roundtrip(format!("RCPT TO:<{rcpt}>\r\n"), RCPT_OK);
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.send(stuffed);
    client.send(".\r\n");
    client.read_reply()
}

#[test]
fn a_data_message_is_kept_byte_exact_with_its_envelope_before_the_250() {
    let (server, capture) = memory_server(CaptureSettings::default());
    let mut client = server.client();
    client.ehlo();
    client.send(
        "MAIL FROM:<Sender@Example.org> SIZE=200 BODY=8BITMIME\r\nRCPT TO:<To@x.test>\r\n\
         RCPT TO:<hidden@y.test>\r\nDATA\r\n",
    );
    client.expect(format!("{MAIL_OK}{RCPT_OK}{RCPT_OK}{GO_AHEAD}"));
    // `hidden@y.test` is a Bcc recipient: in the envelope only.
    client.send(
        "From: Sender@Example.org\r\nTo: To@x.test\r\nSubject: hello\r\n\r\n\
         ..a line that began with a dot\r\n.\r\n",
    );
    let id = queued_id(&client.read_reply());
    // Asked the moment the 250 is read: it was in the store before the 250 was written.
    let message = kept(&capture, &id);
    assert_eq!(
        &message.body.memory().unwrap()[..],
        b"From: Sender@Example.org\r\nTo: To@x.test\r\nSubject: hello\r\n\r\n\
          .a line that began with a dot\r\n"
    );
    assert!(!String::from_utf8_lossy(message.body.memory().unwrap()).contains("Bcc"));
    let envelope = message.envelope();
    assert_eq!(envelope.id, id.as_bytes());
    assert_eq!(envelope.sender, b"Sender@Example.org");
    assert_eq!(envelope.params, b"SIZE=200 BODY=8BITMIME");
    assert_eq!(envelope.helo, b"client.test");
    let recipients: Vec<&[u8]> = envelope.recipients.iter().collect();
    assert_eq!(recipients, [&b"To@x.test"[..], b"hidden@y.test"]);
    assert_eq!(
        envelope.client_addr(),
        Some(client.stream.local_addr().unwrap())
    );
    assert_eq!((envelope.tls, envelope.auth_user), (None, None));
    assert_eq!(
        message.header(fastsmtpd::capture::Field::Subject),
        Some(&b"hello"[..])
    );
    drop(client);
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn a_bdat_message_is_kept_byte_for_byte() {
    let (server, capture) = memory_server(CaptureSettings::default());
    let mut client = server.client();
    client.ehlo();
    client.roundtrip("MAIL FROM:<s@x.test> BODY=BINARYMIME\r\n", MAIL_OK);
    client.roundtrip("RCPT TO:<r@x.test>\r\n", RCPT_OK);
    // Binary content: a lone dot line, bare LF and NUL stay as sent.
    let first = b"Subject: bin\r\n\r\n.\r\n\0\n";
    client.send(format!("BDAT {}\r\n", first.len()));
    client.send(first);
    client.expect("250 2.0.0 Ok: 21 octets received\r\n".replace("21", &first.len().to_string()));
    let last = b"end\r\n";
    client.send(format!("BDAT {} LAST\r\n", last.len()));
    client.send(last);
    let id = queued_id(&client.read_reply());
    let message = kept(&capture, &id);
    assert_eq!(
        &message.body.memory().unwrap()[..],
        [&first[..], last].concat()
    );
    assert_eq!(message.envelope().params, b"BODY=BINARYMIME");
}

#[test]
fn a_hundred_pipelined_messages_are_all_kept_in_order() {
    let (server, capture) = memory_server(CaptureSettings::default());
    let mut client = server.client();
    client.ehlo();
    let mut burst = Vec::new();
    for n in 0..100 {
        burst.extend_from_slice(
            format!(
                "MAIL FROM:<s@x.test>\r\nRCPT TO:<r{n}@x.test>\r\nDATA\r\nSubject: {n}\r\n\r\nmessage {n}\r\n.\r\n"
            )
            .as_bytes(),
        );
    }
    client.send(&burst);
    let mut seqs = Vec::new();
    for n in 0..100 {
        assert_eq!(client.read_reply(), MAIL_OK);
        assert_eq!(client.read_reply(), RCPT_OK);
        assert_eq!(client.read_reply(), GO_AHEAD);
        let id = queued_id(&client.read_reply());
        let message = kept(&capture, &id);
        assert_eq!(
            &message.body.memory().unwrap()[..],
            format!("Subject: {n}\r\n\r\nmessage {n}\r\n").as_bytes()
        );
        let rcpt = format!("r{n}@x.test");
        assert_eq!(
            message.envelope().recipients.iter().collect::<Vec<_>>(),
            [rcpt.as_bytes()]
        );
        seqs.push(message.seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert_eq!(capture.stats().messages, 100);
}

#[test]
fn tempfail_answers_452_when_full_and_250_again_after_a_delete() {
    let (server, capture) = memory_server(CaptureSettings {
        memory: Some(64 << 10),
        on_full: Some(OnFull::Refuse),
        ..CaptureSettings::default()
    });
    let mut client = server.client();
    client.ehlo_size(64 << 10); // SIZE is the budget
    let body = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(40 << 10));
    let first = queued_id(&send_data(&mut client, "r@x.test", body.as_bytes()));
    let full = send_data(&mut client, "r@x.test", body.as_bytes());
    assert_eq!(
        full,
        "452 4.3.1 Error: capture store full, try again later\r\n"
    );
    assert_eq!(capture.stats().refused_full, 1);
    assert_eq!(capture.delete(&first).seqs.len(), 1);
    let again = queued_id(&send_data(&mut client, "r@x.test", body.as_bytes()));
    kept(&capture, &again);
    assert!(matches!(capture.get(&first), Lookup::Gone(_)));
}

#[test]
fn evict_mode_drops_the_oldest_and_its_id_is_gone() {
    let (server, capture) = memory_server(CaptureSettings {
        memory: Some(64 << 10),
        ..CaptureSettings::default()
    });
    let mut client = server.client();
    client.ehlo_size(64 << 10); // SIZE is the budget
    let body = format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(25 << 10));
    let ids: Vec<QueueId> = (0..3)
        .map(|_| queued_id(&send_data(&mut client, "r@x.test", body.as_bytes())))
        .collect();
    // Two fit in 64 KiB; the third evicted the first.
    match capture.get(&ids[0]) {
        Lookup::Gone(gone) => assert_eq!(gone.reason, GoneReason::EvictedBytes),
        other => panic!("the oldest should be gone: {other:?}"),
    }
    kept(&capture, &ids[1]);
    kept(&capture, &ids[2]);
    let stats = capture.stats();
    assert_eq!((stats.messages, stats.evicted_bytes), (2, 1));
    assert!(stats.bytes <= stats.max_bytes);
}

#[test]
fn a_message_larger_than_the_budget_gets_552() {
    let (server, capture) = memory_server(CaptureSettings {
        memory: Some(64 << 10),
        ..CaptureSettings::default()
    });
    let mut client = server.client();
    client.ehlo_size(64 << 10); // SIZE is the budget
                                // Larger than the budget, which the server advertised as its SIZE: refused as any
                                // message over the size limit is (RFC 1870), before the capture sees it.
    let body = format!("Subject: huge\r\n\r\n{}\r\n", "z".repeat(70 << 10));
    assert_eq!(
        send_data(&mut client, "r@x.test", body.as_bytes()),
        "552 5.3.4 Error: message size exceeds fixed limit\r\n"
    );
    // The session goes on.
    let small = queued_id(&send_data(
        &mut client,
        "r@x.test",
        b"Subject: s\r\n\r\nok\r\n",
    ));
    kept(&capture, &small);
    // Refused by the session: the store never saw it.
    assert_eq!(capture.stats().refused_too_large, 0);
    // Within the budget in flight, over it with the index overhead: the store refuses it.
    let body = format!("Subject: huge\r\n\r\n{}\r\n", "z".repeat((64 << 10) - 200));
    assert_eq!(
        send_data(&mut client, "r@x.test", body.as_bytes()),
        "552 5.3.4 Error: message larger than the capture store's budget\r\n"
    );
    assert_eq!(capture.stats().refused_too_large, 1);
}

#[test]
fn memory_beside_maildir_keeps_what_the_maildir_stored_before_the_250() {
    let dir = scratch_dir("capture-maildir");
    let config = Config {
        stores: Stores {
            specs: vec![StoreSpec::Maildir(dir.clone()), StoreSpec::Memory],
            ..Stores::default()
        },
        ..test_config()
    };
    let server = TestServer::start(config);
    let capture = server.handle().capture().unwrap();
    let mut client = server.client();
    client.ehlo();
    for n in 0..5 {
        // Past one chunk (64 KiB) for the last ones: streamed to the storage thread.
        let body = format!("Subject: {n}\r\n\r\n{}\r\n", "m".repeat(n * 30_000));
        let id = queued_id(&send_data(&mut client, "r@x.test", body.as_bytes()));
        assert_eq!(
            &kept(&capture, &id).body.memory().unwrap()[..],
            body.as_bytes()
        );
        let files: Vec<_> = std::fs::read_dir(dir.join("new"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(id.as_str()))
            .collect();
        assert_eq!(files.len(), 1, "{id} in new/");
    }
    assert_eq!(capture.stats().messages, 5);
    drop(client);
    server.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_message_the_file_stores_refuse_is_not_captured() {
    // A Maildir whose directory cannot be made (a file is in the way): every message 451.
    let dir = scratch_dir("capture-maildir-broken");
    std::fs::create_dir_all(&dir).unwrap();
    let blocked = dir.join("maildir");
    let config = Config {
        stores: Stores {
            specs: vec![StoreSpec::Maildir(blocked.clone()), StoreSpec::Memory],
            ..Stores::default()
        },
        ..test_config()
    };
    let server = TestServer::start(config);
    let capture = server.handle().capture().unwrap();
    // Break it after start: `new/` replaced by a file.
    std::fs::remove_dir_all(blocked.join("new")).unwrap();
    std::fs::write(blocked.join("new"), b"in the way").unwrap();
    let mut client = server.client();
    client.ehlo();
    let reply = send_data(&mut client, "r@x.test", b"Subject: s\r\n\r\nx\r\n");
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    assert_eq!(capture.stats().messages, 0);
    drop(client);
    server.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn api_alone_means_a_memory_store_and_no_store_means_no_capture() {
    let server = TestServer::default_config();
    assert!(server.handle().capture().is_none());
    drop(server);
    let config = Config {
        api: Some(fastsmtpd::config::ApiSettings {
            addr: fastsmtpd::config::DEFAULT_API_ADDR,
            token: None,
            cors: None,
        }),
        ..test_config()
    };
    let server = TestServer::start(config);
    let capture = server.handle().capture().expect("--api keeps a capture");
    let mut client = server.client();
    client.ehlo();
    let id = queued_id(&send_data(
        &mut client,
        "r@x.test",
        b"Subject: a\r\n\r\nx\r\n",
    ));
    kept(&capture, &id);
}

#[test]
fn tls_and_auth_user_are_in_the_envelope() {
    use fastsmtpd::auth::AuthSource;
    use fastsmtpd::config::{Auth, Tls, TlsSource};
    let config = Config {
        stores: Stores {
            specs: vec![StoreSpec::Memory],
            ..Stores::default()
        },
        tls: Tls {
            source: Some(TlsSource::SelfSigned),
            ..Tls::default()
        },
        auth: Auth {
            source: Some(AuthSource::Any),
            ..Auth::default()
        },
        ..test_config()
    };
    let server = TestServer::start(config);
    let capture = server.handle().capture().unwrap();
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl._create_unverified_context()
s = smtplib.SMTP("127.0.0.1", {port}, timeout=10)
s.ehlo("tls.client")
s.starttls(context=ctx)
s.ehlo("tls.client")
s.login("ann", "pw")
s.mail("s@x.test")
s.rcpt("r@x.test")
code, text = s.data(b"Subject: over tls\r\n\r\nbody\r\n")
print(code, text.decode())
s.quit()
"#,
        port = server.addr.port()
    );
    let lines = util::process::run_python(&script);
    let (code, text) = lines[0].split_once(' ').unwrap();
    assert_eq!(code, "250");
    let id = text.strip_prefix("2.0.0 Ok: queued as ").unwrap();
    let message = kept(&capture, &QueueId::new(id.as_bytes()).unwrap());
    let envelope = message.envelope();
    assert_eq!(envelope.auth_user, Some(&b"ann"[..]));
    let (version, cipher) = envelope.tls.expect("TLS in the envelope");
    assert!(version.starts_with("TLSv1."), "{version}");
    assert!(!cipher.is_empty());
    assert_eq!(envelope.helo, b"tls.client");
    assert_eq!(
        &message.body.memory().unwrap()[..],
        b"Subject: over tls\r\n\r\nbody\r\n"
    );
}

#[test]
fn the_capture_gauges_reach_the_metrics_endpoint() {
    let config = Config {
        stores: Stores {
            specs: vec![StoreSpec::Memory],
            ..Stores::default()
        },
        capture: CaptureSettings {
            memory: Some(1 << 20),
            ..CaptureSettings::default()
        },
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        api: Some(fastsmtpd::config::ApiSettings {
            addr: "127.0.0.1:0".parse().unwrap(),
            token: None,
            cors: None,
        }),
        ..test_config()
    };
    let server = TestServer::start(config);
    let mut client = server.client();
    // SIZE is the store's share of the budget: with the API on, an eighth goes to the views.
    client.ehlo_size((1 << 20) - (1 << 17));
    queued_id(&send_data(
        &mut client,
        "r@x.test",
        b"Subject: m\r\n\r\nx\r\n",
    ));
    let addr = server.handle().metrics_addr().unwrap();
    let mut http = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read, Write};
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    http.read_to_string(&mut text).unwrap();
    for line in [
        "fastsmtpd_capture_messages 1\n",
        "fastsmtpd_capture_budget_bytes 917504\n",
        "fastsmtpd_capture_inserted_total 1\n",
        "fastsmtpd_capture_evictions_total{reason=\"budget\"} 0\n",
        "fastsmtpd_capture_refused_total{reason=\"full\"} 0\n",
        "fastsmtpd_api_waiters 0\n",
        "fastsmtpd_api_event_subscribers 0\n",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    assert!(text.contains("fastsmtpd_capture_bytes "), "{text}");
}

#[test]
fn the_binary_refuses_capture_flags_without_a_capture_store() {
    use util::process::{run_bounded, CHILD_LIMIT};
    for (args, message) in [
        (
            &["--capture-memory", "1MiB"][..],
            "--capture-memory sets a limit of the capture store, and there is none: add --store memory (or --api, which reads it)",
        ),
        (
            &["--store", "maildir:/nonexistent/x", "--on-full", "tempfail"],
            "--on-full sets a limit of the capture store",
        ),
        (
            &["--api-token", "t"],
            "--api-token and --api-cors need --api [ADDR]",
        ),
        (
            &["--store", "memory", "--store", "memory"],
            "--store memory given twice",
        ),
        (
            &["--api", "--api-cors", "*"],
            "--api-cors \"*\": must be one origin",
        ),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        let output = run_bounded(command, None, CHILD_LIMIT);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", output.dump());
        assert!(
            output.stderr.contains(&format!("fastsmtpd: error: {message}")),
            "{args:?}: {}",
            output.stderr
        );
    }
}

#[test]
fn an_open_api_is_said_loudly_and_a_loopback_one_is_not() {
    // Ports of their own: 8025 may be taken on the machine that runs the tests.
    let (mut child, _addr, _api) = util::start_binary_with_api(1, "0.0.0.0", &[]);
    let start = std::time::Instant::now();
    while !child.stderr().contains("is OPEN") {
        assert!(start.elapsed() < util::REPLY_WAIT, "{}", child.stderr());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill();
    let (mut child, _addr, _api) = util::start_binary_with_api(1, "127.0.0.1", &[]);
    child.kill();
    assert!(!child.stderr().contains("is OPEN"), "{}", child.stderr());
}
