//! `POST /api/v1/messages` over real sockets: a message seeded with curl and with Python's
//! `urllib` is kept byte for byte (bare LF too) with its envelope, wakes an `await`, and gets
//! a fresh id; bad requests get their status (`400` naming the address, `415`, `413` from
//! `Content-Length` before the body and from a chunked body's count, `507` when full).

mod api_client;
mod util;

use api_client::*;
use fastsmtpd::api::ApiOptions;
use fastsmtpd::capture::{Capture, Limits, Lookup, OnFull};
use fastsmtpd::proto::sink::QueueId;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// Sends `head` (request line and fields, without the blank line) then `body`, reads the
/// whole response.
fn post(addr: SocketAddr, head: &str, body: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut bytes = format!("{head}\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    parse(&answer, false)
}

/// `POST path` with a `message/rfc822` body of `body`.
fn seed(addr: SocketAddr, path: &str, body: &[u8]) -> Response {
    request_with_body(addr, "POST", path, &["Content-Type: message/rfc822"], body)
}

/// The kept message named in a `201`.
fn kept(capture: &Capture, created: &Response) -> fastsmtpd::capture::Snapshot {
    let id = created.json()["id"].as_str().unwrap().to_owned();
    match capture.get(&QueueId::new(id.as_bytes()).unwrap()) {
        Lookup::Found(message) => message,
        other => panic!("{id}: {other:?}"),
    }
}

#[test]
fn curl_seeds_a_message_kept_byte_for_byte_with_its_envelope() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    let dir = util::scratch_dir("api_seed_curl");
    let file = dir.join("m.eml");
    // Bare LF and a line with a lone dot: kept as given (nothing is rewritten).
    let message = b"From: a@test\nTo: b@test\r\nSubject: seeded\r\n\r\nline\n.\r\nend\r\n";
    std::fs::write(&file, message).unwrap();
    let url = format!(
        "http://{addr}/api/v1/messages?from=app%40test&rcpt=alice@test&rcpt=%3Cbob%2Btag@test%3E&helo=seed.test"
    );
    let output = Command::new("curl")
        .args(["-sS", "-f", "-i", "--max-time", "60", "-H"])
        .arg("Content-Type: message/rfc822")
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(&url)
        .output()
        .expect("curl is installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created = parse(&output.stdout, false);
    assert_eq!(created.status, 201);
    let answer = created.json();
    let id = answer["id"].as_str().unwrap();
    assert!(util::is_queue_id(id), "{id}");
    assert_eq!(answer["seq"], 1);
    let at = format!("/api/v1/messages/{id}");
    assert_eq!(created.header("location"), Some(at.as_str()));
    assert_eq!(answer["links"]["self"], at.as_str());
    assert_eq!(answer["links"]["raw"], format!("{at}/raw").as_str());

    let raw = get(addr, &format!("{at}/raw"));
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, message);
    let record = get(addr, &at).json();
    let envelope = &record["envelope"];
    assert_eq!(envelope["mail_from"], "app@test");
    assert_eq!(
        envelope["rcpt_to"],
        serde_json::json!(["alice@test", "bob+tag@test"])
    );
    assert_eq!(envelope["helo"], "seed.test");
    assert_eq!(envelope["client"], serde_json::Value::Null);
    assert_eq!(record["headers"]["subject"], "seeded");
    assert_eq!(
        kept(&capture, &created).body.memory().unwrap().as_ref(),
        message
    );
}

#[test]
fn a_seeded_message_wakes_an_await_and_gets_a_new_id_each_time() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    let waiting = std::thread::spawn(move || {
        get(
            addr,
            "/api/v1/await?rcpt=Carol@TEST.example&after=0&timeout=60s",
        )
    });
    // The waiter registers before or after the insert: either way it finds the message.
    let first = seed(
        addr,
        "/api/v1/messages?from=&rcpt=Carol@test.example",
        &mail("one"),
    );
    assert_eq!(
        first.status,
        201,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let found = waiting.join().unwrap();
    assert_eq!(found.status, 200);
    assert_eq!(found.json()["messages"][0]["id"], first.json()["id"]);
    assert_eq!(found.json()["messages"][0]["mail_from"], "");
    let second = seed(addr, "/api/v1/messages?from=&rcpt=c@test", &mail("one"));
    assert_ne!(first.json()["id"], second.json()["id"]);
    assert_eq!(second.json()["seq"], 2);
    assert_eq!(capture.stats().messages, 2);
}

#[test]
fn bad_seeds_get_their_status_and_a_clear_message() {
    let (capture, server) = serve(ApiOptions {
        max_message_size: Some(1000),
        ..ApiOptions::default()
    });
    let addr = server.local_addr();
    let message = |r: &Response| r.json()["error"]["message"].as_str().unwrap().to_owned();

    let r = seed(addr, "/api/v1/messages?from=a@test", &mail("x"));
    assert_eq!(r.status, 400);
    assert!(message(&r).contains("rcpt= is required"), "{}", message(&r));
    let r = seed(
        addr,
        "/api/v1/messages?from=a@test&rcpt=b@@test",
        &mail("x"),
    );
    assert_eq!(r.status, 400);
    assert!(message(&r).contains("rcpt=\"b@@test\""), "{}", message(&r));
    let r = seed(
        addr,
        "/api/v1/messages?from=a@test&rcpt=b+tag@test",
        &mail("x"),
    );
    assert_eq!(r.status, 400);
    assert!(message(&r).contains("%2B"), "{}", message(&r));

    for content_type in ["Content-Type: text/plain\r\n", ""] {
        let r = post(
            addr,
            &format!(
                "POST /api/v1/messages?from=a@test&rcpt=b@test HTTP/1.1\r\n{content_type}Content-Length: 3"
            ),
            b"x\r\n",
        );
        assert_eq!(r.status, 415, "{content_type:?}");
    }
    let r = post(
        addr,
        "POST /api/v1/messages?from=a@test&rcpt=b@test HTTP/1.1\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 0",
        b"",
    );
    assert_eq!(r.status, 400);
    assert!(message(&r).contains("empty"), "{}", message(&r));

    // Content-Length over the limit: 413 at once, no body sent (the server answers without
    // waiting for it).
    let r = post(
        addr,
        "POST /api/v1/messages?from=a@test&rcpt=b@test HTTP/1.1\r\n\
         Content-Type: message/rfc822\r\nContent-Length: 1001",
        b"",
    );
    assert_eq!(r.status, 413);
    assert!(message(&r).contains("1000 octets"), "{}", message(&r));
    // A chunked body is counted as it comes: 413 once past the limit (the chunks that pass
    // it are the last octets sent: nothing is left unread to turn the close into a reset).
    let mut chunked = Vec::new();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("190\r\n{}\r\n", "x".repeat(400)).as_bytes());
    }
    let r = post(
        addr,
        "POST /api/v1/messages?from=a@test&rcpt=b@test HTTP/1.1\r\n\
         Content-Type: message/rfc822\r\nTransfer-Encoding: chunked",
        &chunked,
    );
    assert_eq!(r.status, 413);
    // Exactly at the limit, chunked: kept.
    let mut chunked = format!("3e8\r\n{}\r\n0\r\n\r\n", "y".repeat(1000)).into_bytes();
    let r = post(
        addr,
        "POST /api/v1/messages?from=a@test&rcpt=b@test HTTP/1.1\r\n\
         Content-Type: message/rfc822; charset=utf-8\r\nTransfer-Encoding: chunked",
        &chunked,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(kept(&capture, &r).body.len(), 1000);
    chunked.clear();
    assert_eq!(capture.stats().messages, 1);
}

#[test]
fn a_full_store_under_tempfail_answers_507_and_a_message_over_the_budget_413() {
    let limits = Limits {
        max_messages: 1,
        max_bytes: 4096,
        ..Limits::default()
    };
    let capture = Arc::new(Capture::new(limits, OnFull::Refuse));
    let mut server = fastsmtpd::api::ApiServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::clone(&capture),
        ApiOptions::default(),
    )
    .unwrap();
    let addr = server.local_addr();
    let path = "/api/v1/messages?from=a@test&rcpt=b@test";
    assert_eq!(seed(addr, path, &mail("1")).status, 201);
    let full = seed(addr, path, &mail("2"));
    assert_eq!(full.status, 507);
    assert_eq!(full.header("retry-after"), Some("1"));
    assert!(full.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("full"));
    capture.delete_all();
    let big = seed(addr, path, &vec![b'z'; 5000]);
    assert_eq!(big.status, 413);
    assert_eq!(capture.stats().messages, 0);
    server.stop();
}

const PYTHON: &str = r#"
import json, sys, urllib.parse, urllib.request
api = sys.argv[1]
message = b"Subject: from python\r\n\r\nhello\n"
query = urllib.parse.urlencode([("from", "py@test"), ("rcpt", "dev+1@test"), ("rcpt", "ops@test")])
request = urllib.request.Request(api + "/messages?" + query, data=message, method="POST",
                                 headers={"Content-Type": "message/rfc822"})
with urllib.request.urlopen(request, timeout=60) as r:
    created = json.load(r)
    print("status", r.status, r.headers["Location"] == created["links"]["self"], flush=True)
with urllib.request.urlopen(api + "/messages/" + created["id"] + "/raw", timeout=60) as r:
    print("raw", r.read() == message, flush=True)
with urllib.request.urlopen(api + "/messages/" + created["id"], timeout=60) as r:
    print("rcpt", " ".join(json.load(r)["envelope"]["rcpt_to"]), flush=True)
"#;

#[test]
fn python_urllib_seeds_a_message() {
    let (_capture, server) = serve(ApiOptions::default());
    let api = format!("http://{}/api/v1", server.local_addr());
    let mut python = Command::new("python3");
    python.args(["-c", PYTHON, &api]).stdin(Stdio::null());
    let output = util::process::run_bounded(python, None, util::process::CHILD_LIMIT);
    assert!(output.status.success(), "{}", output.dump());
    assert_eq!(
        output.stdout_lines(),
        ["status 201 True", "raw True", "rcpt dev+1@test ops@test"]
    );
}

/// The real binary: the limit is the SIZE its EHLO advertises, and a seeded message and one
/// sent over SMTP get ids from the one generator.
#[test]
fn the_binary_bounds_seeds_by_its_smtp_size_and_never_reuses_an_id() {
    let (_child, smtp, api) =
        util::start_binary_with_api(1, "127.0.0.1", &["--max-message-size", "2000"]);
    let api: SocketAddr = api.parse().unwrap();
    let mut client = util::Client::connect(smtp);
    assert!(client.read_reply().starts_with("220 "));
    client.ehlo_size(2000);
    client.send("MAIL FROM:<s@test>\r\nRCPT TO:<r@test>\r\nDATA\r\n");
    client.expect(util::MAIL_OK);
    client.expect(util::RCPT_OK);
    client.expect(util::GO_AHEAD);
    let ids = client.roundtrip("Subject: smtp\r\n\r\nx\r\n.\r\n", util::QUEUED);
    let smtp_id = &ids[0];
    let path = "/api/v1/messages?from=s@test&rcpt=r@test";
    let seeded = seed(api, path, &mail("seeded"));
    assert_eq!(seeded.status, 201);
    assert_ne!(seeded.json()["id"].as_str().unwrap(), smtp_id.as_str());
    assert_eq!(seed(api, path, &vec![b'a'; 2001]).status, 413);
    let list = get(api, "/api/v1/messages").json();
    assert_eq!(list["total"], 2);
}
