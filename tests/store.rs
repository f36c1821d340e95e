//! Keeping mail: Maildir, `.eml` and JSON-lines stores over real sockets. Every stored body
//! must equal what the client sent (dot-stuffing undone, bytes exact), a `250` must mean the
//! message is on disk, and a store that cannot write must answer `451` and leave nothing
//! partial in `new/`.

mod util;
use util::scratch_dir;

use fastsmtpd::config::{Config, Stores};
use fastsmtpd::store::record::sha256_hex;
use fastsmtpd::store::StoreSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use util::process::{run_bounded, ChildGuard, PYTHON3};
use util::{test_config, TestServer, REPLY_WAIT};

/// Bound on one smtplib run of up to 1000 messages with fsync (a hang guard for a shared,
/// slow machine, not a speed check).
const SMTPLIB_LIMIT: Duration = Duration::from_secs(300);

fn config_with(stores: Vec<StoreSpec>) -> Config {
    Config {
        stores: Stores {
            specs: stores,
            ..Stores::default()
        },
        ..test_config()
    }
}

/// Message number `n`: headers with its number, a body whose lines sometimes start with a dot
/// (so dot-stuffing is exercised) and whose size varies up to ~40 KiB.
fn message(n: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender{n}@example.org\r\nTo: rcpt@example.net\r\nSubject: message {n}\r\n\
         Message-ID: <{n}@test.example>\r\n\r\n"
    )
    .into_bytes();
    for line in 0..(n * 37 % 900) {
        if line % 7 == 0 {
            m.extend_from_slice(b".");
        }
        if line % 13 == 0 {
            m.extend_from_slice(b"..double dot ");
        }
        m.extend_from_slice(format!("line {line} of message {n}\r\n").as_bytes());
    }
    m.extend_from_slice(b"end\r\n");
    m
}

/// The Maildir files in `dir/new`, by their `X`-independent key: the Message-ID number; each
/// is the content after the lines the delivery added (LF line ends, as Maildir readers want).
fn maildir_messages(dir: &Path) -> BTreeMap<usize, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("new")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let body = strip_trace_headers(&bytes);
        out.insert(message_number(body), body.to_vec());
    }
    out
}

/// `bytes` with every CR LF turned into LF: what a Maildir file holds of the content sent.
fn lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if !(b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}

/// The content after the `Return-Path:`, `X-Original-To:` and `Received:` lines a Maildir
/// delivery adds (each ending in LF, never CR LF).
fn strip_trace_headers(file: &[u8]) -> &[u8] {
    assert!(
        file.starts_with(b"Return-Path: <"),
        "{:?}",
        String::from_utf8_lossy(&file[..80.min(file.len())])
    );
    let mut rest = file;
    // Return-Path line, then X-Original-To lines, then Received: with its continuation
    // lines (starting with a tab).
    let mut first = true;
    loop {
        let end = rest.iter().position(|&b| b == b'\n').unwrap() + 1;
        let line = &rest[..end];
        let added = first
            || line.starts_with(b"X-Original-To: ")
            || line.starts_with(b"Received:")
            || line.starts_with(b"\t");
        if !added {
            return rest;
        }
        assert!(!line.contains(&b'\r'), "a CR in {line:?}");
        first = false;
        rest = &rest[end..];
    }
}

/// The number in `Message-ID: <N@test.example>`.
fn message_number(body: &[u8]) -> usize {
    let text = String::from_utf8_lossy(body);
    let start = text.find("Message-ID: <").expect("a Message-ID") + "Message-ID: <".len();
    let end = text[start..].find('@').unwrap() + start;
    text[start..end].parse().unwrap()
}

/// Sends messages `numbers` with Python's smtplib over `connections` connections.
fn send_with_smtplib(addr: SocketAddr, numbers: std::ops::Range<usize>, connections: usize) {
    let dir = scratch_dir("sent");
    for n in numbers.clone() {
        std::fs::write(dir.join(format!("{n}.eml")), message(n)).unwrap();
    }
    let script = r#"
import smtplib, sys, os, threading
port, folder, first, last, conns = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
errors = []
def worker(k):
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            for n in range(first + k, last, conns):
                with open(os.path.join(folder, f"{n}.eml"), "rb") as f:
                    body = f.read()
                refused = s.sendmail(f"sender{n}@example.org", ["rcpt@example.net"], body)
                assert not refused, refused
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    print("\n".join(errors)); sys.exit(1)
"#;
    let mut command = PYTHON3.command();
    command
        .args(["-c", script])
        .arg(addr.port().to_string())
        .arg(&dir)
        .arg(numbers.start.to_string())
        .arg(numbers.end.to_string())
        .arg(connections.to_string());
    run_bounded(command, None, SMTPLIB_LIMIT).assert_success("smtplib");
}

/// Reads one SMTP reply (all its lines) from `stream` (whose read timeout bounds the wait).
fn read_reply(stream: &mut TcpStream, pending: &mut Vec<u8>) -> String {
    read_reply_opt(stream, pending)
        .unwrap_or_else(|| panic!("no reply; have {:?}", String::from_utf8_lossy(pending)))
}

/// Sends messages `numbers` on one connection as pipelined `BDAT` transactions (each body in
/// two chunks); returns the final reply of each.
fn send_with_bdat(addr: SocketAddr, numbers: std::ops::Range<usize>) -> Vec<String> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    let mut pending = Vec::new();
    assert!(read_reply(&mut stream, &mut pending).starts_with("220 "));
    stream.write_all(b"EHLO bdat.test\r\n").unwrap();
    assert!(read_reply(&mut stream, &mut pending).starts_with("250-"));
    let mut finals = Vec::new();
    // Ten transactions per write, then all their replies.
    let numbers: Vec<usize> = numbers.collect();
    for group in numbers.chunks(10) {
        let mut out = Vec::new();
        for &n in group {
            let body = message(n);
            let cut = body.len() / 3;
            out.extend_from_slice(format!("MAIL FROM:<sender{n}@example.org> BODY=BINARYMIME\r\nRCPT TO:<rcpt@example.net>\r\n").as_bytes());
            out.extend_from_slice(format!("BDAT {cut}\r\n").as_bytes());
            out.extend_from_slice(&body[..cut]);
            out.extend_from_slice(format!("BDAT {} LAST\r\n", body.len() - cut).as_bytes());
            out.extend_from_slice(&body[cut..]);
        }
        stream.write_all(&out).unwrap();
        for _ in group {
            for expected in ["250 2.1.0", "250 2.1.5", "250 2.0.0"] {
                let reply = read_reply(&mut stream, &mut pending);
                assert!(reply.starts_with(expected), "{reply}");
            }
            finals.push(read_reply(&mut stream, &mut pending));
        }
    }
    stream.write_all(b"QUIT\r\n").unwrap();
    assert!(read_reply(&mut stream, &mut pending).starts_with("221 "));
    finals
}

#[test]
fn maildir_eml_and_jsonl_keep_1000_smtplib_and_1000_bdat_messages_exactly() {
    let dir = scratch_dir("all");
    let maildir = dir.join("Maildir");
    let eml = dir.join("eml");
    let jsonl = dir.join("messages.jsonl");
    let server = TestServer::start(config_with(vec![
        StoreSpec::Maildir(maildir.clone()),
        StoreSpec::Eml(eml.clone()),
        StoreSpec::Jsonl(jsonl.clone()),
    ]));
    send_with_smtplib(server.addr, 0..1000, 4);
    let finals = send_with_bdat(server.addr, 1000..2000);
    // Each 250 names its message: the id joins the sender's log with every store.
    let ids: Vec<String> = finals.iter().map(|reply| queued_as(reply)).collect();
    let stats = server.stop();
    assert_eq!(stats.messages, 2000);

    // Maildir: every message, its body as sent with LF line ends.
    let stored = maildir_messages(&maildir);
    assert_eq!(stored.len(), 2000);
    for (n, body) in &stored {
        assert_eq!(body, &lf(&message(*n)), "maildir message {n}");
    }
    assert_eq!(std::fs::read_dir(maildir.join("tmp")).unwrap().count(), 0);
    let maildir_names: Vec<String> = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let n = 1000 + i;
        let eml_file = eml.join(format!("{id}.eml"));
        assert_eq!(std::fs::read(&eml_file).unwrap(), message(n), "{id}");
        let prefix = format!("{id}.mx.test,S=");
        let named: Vec<&String> = maildir_names
            .iter()
            .filter(|name| name.starts_with(&prefix))
            .collect();
        assert_eq!(named.len(), 1, "{id}: {named:?}");
        let file = std::fs::read(maildir.join("new").join(named[0])).unwrap();
        assert_eq!(strip_trace_headers(&file), lf(&message(n)));
    }

    // .eml: the bytes exactly, and a sidecar with the envelope.
    let mut eml_count = 0;
    for entry in std::fs::read_dir(&eml).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "eml") {
            eml_count += 1;
            let body = std::fs::read(&path).unwrap();
            let n = message_number(&body);
            assert_eq!(body, message(n), "eml message {n}");
            let sidecar: serde_json::Value =
                serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap())
                    .unwrap();
            assert_eq!(sidecar["mail_from"], format!("sender{n}@example.org"));
            assert_eq!(sidecar["rcpt_to"], serde_json::json!(["rcpt@example.net"]));
            assert_eq!(sidecar["sha256"], sha256_hex(&body));
        }
    }
    assert_eq!(eml_count, 2000);

    // jsonl: one line per message; the hash matches the stored file and what was sent.
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let mut seen = BTreeSet::new();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let id: String = record["message_id"].as_str().unwrap().to_string();
        let n: usize = id
            .trim_matches(['<', '>'])
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let sent = message(n);
        // size and sha256 cover the content as received: the .eml file's bytes.
        assert_eq!(record["sha256"], sha256_hex(&sent), "message {n}");
        let id = record["id"].as_str().unwrap();
        assert_eq!(
            record["sha256"],
            sha256_hex(&std::fs::read(eml.join(format!("{id}.eml"))).unwrap())
        );
        if n >= 1000 {
            assert_eq!(id, ids[n - 1000], "the 250 named the record's id");
        }
        assert_eq!(record["size"], sent.len());
        assert_eq!(record["subject"], format!("message {n}"));
        assert_eq!(record["mail_from"], format!("sender{n}@example.org"));
        assert_eq!(record["transfer"], if n < 1000 { "DATA" } else { "BDAT" });
        assert_eq!(
            record["client"].as_str().unwrap().split(':').next(),
            Some("127.0.0.1")
        );
        assert!(seen.insert(n), "message {n} recorded twice");
    }
    assert_eq!(seen.len(), 2000);
}

#[test]
fn the_maildir_file_carries_return_path_and_received() {
    let dir = scratch_dir("trace");
    let server = TestServer::start(config_with(vec![StoreSpec::Maildir(dir.clone())]));
    let finals = send_with_bdat(server.addr, 7..8);
    let id = queued_as(&finals[0]);
    server.stop();
    let entry = std::fs::read_dir(dir.join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let name = entry.file_name().into_string().unwrap();
    let file = std::fs::read(entry.path()).unwrap();
    assert!(
        name.contains(&format!("P{}Q", std::process::id())),
        "{name}"
    );
    assert!(name.starts_with(&format!("{id}.mx.test,")), "{name}");
    assert!(name.ends_with(&format!(",S={}", file.len())), "{name}");
    let text = String::from_utf8_lossy(&file);
    assert!(text.starts_with(&format!("Return-Path: <sender7@example.org>\nX-Original-To: rcpt@example.net\nReceived: from bdat.test (127.0.0.1)\n\tby mx.test (fastsmtpd) with ESMTP id {id}\n\tfor <rcpt@example.net>;\n\t")), "{text}");
    assert_eq!(strip_trace_headers(&file), lf(&message(7)));
}

/// The id in `250 2.0.0 Ok: queued as <id>\r\n` (the test fails on any other reply).
#[track_caller]
fn queued_as(reply: &str) -> String {
    let id = reply
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .and_then(|rest| rest.strip_suffix("\r\n"))
        .unwrap_or_else(|| panic!("not a 250 with an id: {reply:?}"));
    assert!(util::is_queue_id(id), "{reply:?}");
    id.to_string()
}

#[test]
fn a_full_disk_answers_451_and_the_session_goes_on() {
    // /dev/full fails every write with ENOSPC, like a disk that filled up.
    let server = TestServer::start(config_with(vec![StoreSpec::Jsonl("/dev/full".into())]));
    let mut client = server.client();
    client.ehlo();
    for _ in 0..2 {
        client.roundtrip(
            "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
        );
        client.roundtrip(
            "Subject: x\r\n\r\nbody\r\n.\r\n",
            "451 4.3.0 Error: could not store message, try again later\r\n",
        );
    }
    client.roundtrip("QUIT\r\n", "221 2.0.0 Bye\r\n");
    assert_eq!(server.stop().messages, 0);
}

#[test]
fn a_maildir_that_becomes_unwritable_answers_451_and_keeps_new_clean() {
    let dir = scratch_dir("unwritable");
    let server = TestServer::start(config_with(vec![StoreSpec::Maildir(dir.clone())]));
    let mut client = server.client();
    client.ehlo();
    let send = |client: &mut util::Client, reply: &str| {
        client.roundtrip(
            "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 14 LAST\r\nSubject: x\r\n\r\n",
            format!("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n{reply}"),
        );
    };
    send(&mut client, util::QUEUED);
    // tmp/ disappears (tests run as root, so permissions would not stop a write).
    std::fs::remove_dir_all(dir.join("tmp")).unwrap();
    send(
        &mut client,
        "451 4.3.0 Error: could not store message, try again later\r\n",
    );
    send(
        &mut client,
        "451 4.3.0 Error: could not store message, try again later\r\n",
    );
    client.roundtrip("QUIT\r\n", "221 2.0.0 Bye\r\n");
    assert_eq!(server.stop().messages, 1);
    assert_eq!(std::fs::read_dir(dir.join("new")).unwrap().count(), 1);
}

#[test]
fn a_client_that_half_closes_behind_its_message_still_gets_its_replies() {
    let dir = scratch_dir("halfclose");
    let server = TestServer::start(config_with(vec![StoreSpec::Maildir(dir.clone())]));
    let mut client = server.client();
    client.ehlo();
    client.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n");
    client.expect("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
    client.send("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    client.stream.shutdown(std::net::Shutdown::Write).unwrap();
    client.expect(format!("{}221 2.0.0 Bye\r\n", util::QUEUED));
    client.expect_closed();
    assert_eq!(server.stop().messages, 1);
    assert_eq!(std::fs::read_dir(dir.join("new")).unwrap().count(), 1);
}

/// The real binary, running (killed when dropped).
struct Spawned {
    child: ChildGuard,
    addr: SocketAddr,
}

/// Starts the real binary; returns once it printed its listening line (no probe connection,
/// which would count as a session).
#[track_caller]
fn spawn_server(args: &[&str]) -> Spawned {
    let (child, addr) = util::start_binary(2, args);
    Spawned { child, addr }
}

#[test]
fn kill_9_loses_no_message_that_got_250_and_leaves_nothing_partial_in_new() {
    let dir = scratch_dir("kill9");
    let spec = format!("maildir:{}", dir.display());
    let Spawned { mut child, addr } = spawn_server(&["--store", &spec]);
    // Four clients send pipelined BDAT messages in a loop and note each one that got 250.
    let clients: Vec<_> = (0..4)
        .map(|k| {
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let Ok(mut stream) = TcpStream::connect(addr) else {
                    return acknowledged;
                };
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut pending = Vec::new();
                let mut step = || -> Option<()> {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).ok()?; // greeting
                    stream.write_all(b"EHLO k.test\r\n").ok()?;
                    for n in (k * 100_000).. {
                        let body = message(n);
                        let command = format!(
                            "MAIL FROM:<s{n}@example.org>\r\nRCPT TO:<r@example.net>\r\nBDAT {} LAST\r\n",
                            body.len()
                        );
                        stream.write_all(&[command.as_bytes(), &body].concat()).ok()?;
                        loop {
                            let reply = read_reply_opt(&mut stream, &mut pending)?;
                            if reply.starts_with("250 2.0.0 Ok: queued") {
                                acknowledged.push(n);
                                break;
                            }
                            if !reply.starts_with("250") {
                                return None;
                            }
                        }
                    }
                    Some(())
                };
                let _ = step();
                acknowledged
            })
        })
        .collect();
    // Let mail flow, then kill without warning.
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let stored = std::fs::read_dir(dir.join("new")).map_or(0, |d| d.count());
        if stored >= 300 || start.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    child.kill(); // SIGKILL
    let acknowledged: Vec<usize> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() >= 100,
        "only {} messages acknowledged",
        acknowledged.len()
    );

    let stored = maildir_messages(&dir);
    let in_tmp = std::fs::read_dir(dir.join("tmp")).unwrap().count();
    eprintln!(
        "kill -9: {} acknowledged, {} complete in new/, {} left in tmp/",
        acknowledged.len(),
        stored.len(),
        in_tmp
    );
    for n in &acknowledged {
        assert_eq!(
            stored.get(n),
            Some(&lf(&message(*n))),
            "message {n} got 250 but is not complete in new/"
        );
    }
    // Whatever is in new/ is whole (messages whose 250 was lost in the kill may be there too).
    for (n, body) in &stored {
        assert_eq!(body, &lf(&message(*n)), "partial message {n} in new/");
    }
}

/// One SMTP reply (all its lines), or `None` when the connection ends or the read times out.
fn read_reply_opt(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    loop {
        let mut start = 0;
        while let Some(end) = pending[start..].windows(2).position(|w| w == b"\r\n") {
            let line_end = start + end + 2;
            if pending.get(start + 3) == Some(&b' ') {
                let reply: Vec<u8> = pending.drain(..line_end).collect();
                return Some(String::from_utf8_lossy(&reply).into_owned());
            }
            start = line_end;
        }
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

#[test]
fn exit_after_messages_and_sessions_stop_the_server_gracefully() {
    for (flag, sessions) in [("--exit-after-messages", 1), ("--exit-after-sessions", 3)] {
        let server = spawn_server(&[flag, "3"]);
        let addr = server.addr;
        for _ in 0..sessions {
            let messages = 3 / sessions;
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(REPLY_WAIT)).unwrap();
            let mut pending = Vec::new();
            read_reply(&mut stream, &mut pending);
            stream.write_all(b"EHLO x.test\r\n").unwrap();
            read_reply(&mut stream, &mut pending);
            for _ in 0..messages {
                stream
                    .write_all(
                        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 5 LAST\r\nhello",
                    )
                    .unwrap();
                for _ in 0..3 {
                    assert!(read_reply(&mut stream, &mut pending).starts_with("250"));
                }
            }
            // The server may already be closing this session with 421 (shutdown began).
            let _ = stream.write_all(b"QUIT\r\n");
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
        }
        // The server exits on its own, with its summary.
        let exited = server.child.wait(Duration::from_secs(20));
        let (status, stdout) = (exited.status, exited.stdout);
        assert!(status.success(), "{flag}: {status:?} {stdout}");
        assert!(
            stdout.contains("exit condition reached"),
            "{flag}: {stdout}"
        );
        assert!(stdout.contains("messages=3 "), "{flag}: {stdout}");
    }
}
