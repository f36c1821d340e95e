//! Stores stream message content to the storage threads in chunks, within a global budget of
//! bytes in flight (`--store-buffer`). Against the real binary with a small budget (1 MiB) and
//! a few senders of a few MiB each, so the budget is actually spent: every stored byte is
//! exact in every store, the server's memory stays bounded (the child's VmRSS), nobody is
//! refused for the budget, a small message is not held behind big ones, and a message that is
//! cut off, reset, too large or fails to write leaves no file behind.

mod util;
use util::scratch_dir;

use fastsmtpd::store::record::sha256_hex;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::process::ChildGuard;
use util::REPLY_WAIT;

/// How long one big transfer may take on a slow shared machine (a hang guard).
const TRANSFER_LIMIT: Duration = Duration::from_secs(120);
const MIB: usize = 1024 * 1024;

struct Spawned {
    child: ChildGuard,
    addr: SocketAddr,
}

/// Starts the real binary with `args` (and two workers); returns once it listens.
#[track_caller]
fn spawn_server(mut command: Command, args: &[&str]) -> Spawned {
    let addr: SocketAddr = util::free_local_addr().parse().unwrap();
    command
        .args(["--listen", &addr.to_string(), "--threads", "2"])
        .args(["--hostname", "mx.test"])
        .args(args);
    let mut child = ChildGuard::spawn(command);
    let line = child.next_line(REPLY_WAIT);
    assert!(line.starts_with("fastsmtpd listening on "), "{line:?}");
    Spawned { child, addr }
}

fn server(args: &[&str]) -> Spawned {
    spawn_server(Command::new(env!("CARGO_BIN_EXE_fastsmtpd")), args)
}

/// The content of big message `n`, `len` bytes or a little more: its number in the header
/// section, then lines of varying length, some starting with a dot (so dot-stuffing is
/// undone across chunk edges).
fn content(n: usize, len: usize) -> Vec<u8> {
    let mut m =
        format!("Subject: big {n}\r\nMessage-ID: <big{n}@test.example>\r\n\r\n").into_bytes();
    let mut line = 0usize;
    while m.len() < len {
        if line % 5 == 0 {
            m.push(b'.');
        }
        m.extend_from_slice(format!("message {n} line {line} ").as_bytes());
        m.extend(std::iter::repeat_n(
            b'a' + (line % 26) as u8,
            line * 7 % 300,
        ));
        m.extend_from_slice(b"\r\n");
        line += 1;
    }
    m
}

/// `content` as sent after DATA: dot-stuffed, with the final dot.
fn stuffed(content: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(content.len() + content.len() / 50 + 5);
    for line in content.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

/// A raw client: greeted, EHLO'd, with generous timeouts (its writes block while the
/// server holds it back).
fn connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TRANSFER_LIMIT)).unwrap();
    stream.set_write_timeout(Some(TRANSFER_LIMIT)).unwrap();
    read_reply(&mut stream); // greeting
    stream.write_all(b"EHLO c.test\r\n").unwrap();
    read_reply(&mut stream);
    stream
}

/// Reads one whole reply (up to its last line `NNN text`).
fn read_reply(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            Ok(_) => panic!("closed after {:?}", String::from_utf8_lossy(&got)),
            Err(e) => panic!("{e} after {:?}", String::from_utf8_lossy(&got)),
        }
        if got.ends_with(b"\r\n") {
            let last = got[..got.len() - 2]
                .rsplit(|&b| b == b'\n')
                .next()
                .unwrap_or_default();
            if last.len() >= 4 && last[3] == b' ' {
                return String::from_utf8_lossy(&got).into_owned();
            }
        }
    }
}

fn roundtrip(stream: &mut TcpStream, command: &[u8], want: &str) {
    stream.write_all(command).unwrap();
    let reply = read_reply(stream);
    assert!(reply.starts_with(want), "{command:?}: {reply:?}");
}

/// Sends one message with DATA; returns the final reply.
fn send_data(stream: &mut TcpStream, content: &[u8]) -> String {
    roundtrip(stream, b"MAIL FROM:<a@b.example>\r\n", "250 ");
    roundtrip(stream, b"RCPT TO:<c@d.example>\r\n", "250 ");
    roundtrip(stream, b"DATA\r\n", "354 ");
    stream.write_all(&stuffed(content)).unwrap();
    read_reply(stream)
}

/// Sends one message in BDAT chunks of `chunk` bytes; returns the final reply.
fn send_bdat(stream: &mut TcpStream, content: &[u8], chunk: usize) -> String {
    roundtrip(stream, b"MAIL FROM:<a@b.example>\r\n", "250 ");
    roundtrip(stream, b"RCPT TO:<c@d.example>\r\n", "250 ");
    let pieces: Vec<&[u8]> = content.chunks(chunk).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let last = if i + 1 == pieces.len() { " LAST" } else { "" };
        stream
            .write_all(format!("BDAT {}{last}\r\n", piece.len()).as_bytes())
            .unwrap();
        stream.write_all(piece).unwrap();
        let reply = read_reply(stream);
        if i + 1 == pieces.len() {
            return reply;
        }
        assert!(reply.starts_with("250 "), "BDAT {i}: {reply:?}");
    }
    unreachable!("content is not empty")
}

/// The server's resident memory now, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Samples the server's VmRSS until `stop`; returns the peak.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    })
}

/// File names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The content after the `Return-Path:`, `X-Original-To:` and `Received:` lines a Maildir
/// delivery adds (each ending in LF, never CR LF).
fn strip_trace_headers(file: &[u8]) -> &[u8] {
    assert!(file.starts_with(b"Return-Path: <"));
    let mut rest = file;
    let mut first = true;
    loop {
        let end = rest.iter().position(|&b| b == b'\n').unwrap() + 1;
        let added = first
            || rest.starts_with(b"\t")
            || rest.starts_with(b"X-Original-To: ")
            || rest.starts_with(b"Received:");
        if !added {
            return rest;
        }
        assert!(!rest[..end].contains(&b'\r'));
        first = false;
        rest = &rest[end..];
    }
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

/// The number in a big message's `Message-ID: <bigN@...>`.
fn big_number(content: &[u8]) -> usize {
    let text = String::from_utf8_lossy(&content[..200.min(content.len())]).into_owned();
    let at = text.find("<big").unwrap() + 4;
    text[at..].split('@').next().unwrap().parse().unwrap()
}

#[test]
fn streamed_content_is_byte_exact_in_every_store_and_memory_stays_within_the_budget() {
    const SENDERS: usize = 8;
    const SIZE: usize = 6 * MIB;
    let dir = scratch_dir("exact");
    let (eml, maildir, jsonl) = (dir.join("eml"), dir.join("Maildir"), dir.join("m.jsonl"));
    let specs = [
        format!("eml:{}", eml.display()),
        format!("maildir:{}", maildir.display()),
        format!("jsonl:{}", jsonl.display()),
    ];
    let mut args = vec!["--store-buffer", "1MiB"];
    for spec in &specs {
        args.extend(["--store", spec]);
    }
    let Spawned { child, addr } = server(&args);
    let pid = child.id();
    // Warm up (a message through every store), then measure.
    let mut warm = connect(addr);
    assert!(send_data(&mut warm, b"Subject: warm-up\r\n\r\nx\r\n").starts_with("250 "));
    let before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(pid, Arc::clone(&stop));
    let senders: Vec<_> = (0..SENDERS)
        .map(|n| {
            std::thread::spawn(move || {
                let content = content(n, SIZE);
                let mut stream = connect(addr);
                // Half DATA, half BDAT in chunks that straddle the server's chunk size.
                let reply = if n % 2 == 0 {
                    send_data(&mut stream, &content)
                } else {
                    send_bdat(&mut stream, &content, 100_000 + n * 12_345)
                };
                assert!(reply.starts_with("250 "), "sender {n}: {reply:?}");
                roundtrip(&mut stream, b"QUIT\r\n", "221 ");
                content
            })
        })
        .collect();
    let sent: Vec<Vec<u8>> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let grown_mib = peak.saturating_sub(before) / 1024;
    // The content was 48 MiB, all in flight at once; held whole it would be at least that.
    // Streamed: the 1 MiB budget, a chunk per connection and per worker, and the allocator's
    // slack.
    assert!(
        grown_mib < 24,
        "server RSS grew by {grown_mib} MiB (from {} KiB to {peak} KiB) for {} MiB of content",
        before,
        SENDERS * SIZE / MIB
    );

    // .eml: exact bytes; its sidecar's size and hash match.
    let mut emls = BTreeMap::new();
    for name in names(&eml) {
        assert!(!name.ends_with(".tmp"), "a temporary file stayed: {name}");
        let Some(id) = name.strip_suffix(".eml") else {
            continue;
        };
        let bytes = std::fs::read(eml.join(&name)).unwrap();
        let sidecar: serde_json::Value =
            serde_json::from_slice(&std::fs::read(eml.join(format!("{id}.json"))).unwrap())
                .unwrap();
        assert_eq!(sidecar["size"], bytes.len());
        assert_eq!(sidecar["sha256"], sha256_hex(&bytes));
        if bytes.starts_with(b"Subject: warm-up") {
            continue;
        }
        let n = big_number(&bytes);
        assert_eq!(sidecar["message_id"], format!("<big{n}@test.example>"));
        assert_eq!(sidecar["subject"], format!("big {n}"));
        emls.insert(n, bytes);
    }
    assert_eq!(emls.len(), SENDERS);
    for (n, bytes) in &emls {
        assert!(
            bytes == &sent[*n],
            "message {n}: the .eml differs from what was sent"
        );
    }
    // Maildir: the trace headers, then the bytes sent with LF line ends (converted as the
    // chunks streamed through, a CR LF cut between two chunks included).
    assert!(names(&maildir.join("tmp")).is_empty());
    let mut found = 0;
    for name in names(&maildir.join("new")) {
        let file = std::fs::read(maildir.join("new").join(&name)).unwrap();
        assert!(name.ends_with(&format!(",S={}", file.len())), "{name}");
        let body = strip_trace_headers(&file);
        if body.starts_with(b"Subject: warm-up") {
            continue;
        }
        let n = big_number(body);
        assert!(
            body == lf(&sent[n]),
            "message {n}: the Maildir file differs"
        );
        found += 1;
    }
    assert_eq!(found, SENDERS);
    // JSON lines: one per message, with the hash of what was sent.
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    let mut hashes: Vec<String> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["subject"] != "warm-up")
        .map(|r| r["sha256"].as_str().unwrap().to_owned())
        .collect();
    let mut want: Vec<String> = sent.iter().map(|c| sha256_hex(c)).collect();
    hashes.sort();
    want.sort();
    assert_eq!(hashes, want);
    drop(child);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_small_message_is_stored_while_big_ones_are_still_streaming() {
    const BIG: usize = 3;
    /// Content each big sender streams at most before it waits to end its message.
    const BIG_CAP: usize = 32 * MIB;
    let dir = scratch_dir("small");
    let spec = format!("eml:{}", dir.display());
    let Spawned { child, addr } = server(&[
        "--store-buffer",
        "1MiB",
        "--max-message-size",
        "50331648",
        "--store",
        &spec,
    ]);
    let progress: Arc<Vec<AtomicUsize>> = Arc::new((0..BIG).map(|_| AtomicUsize::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    // Each big sender streams content, spending the budget, until told to end its message.
    let senders: Vec<_> = (0..BIG)
        .map(|n| {
            let (progress, stop) = (Arc::clone(&progress), Arc::clone(&stop));
            std::thread::spawn(move || {
                let block = content(n, 256 * 1024);
                let wire = stuffed(&block);
                let wire = &wire[..wire.len() - 3]; // without the final dot
                let mut stream = connect(addr);
                roundtrip(&mut stream, b"MAIL FROM:<a@b.example>\r\n", "250 ");
                roundtrip(&mut stream, b"RCPT TO:<c@d.example>\r\n", "250 ");
                roundtrip(&mut stream, b"DATA\r\n", "354 ");
                let mut hash = Sha256::new();
                let mut size = 0;
                let start = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    assert!(start.elapsed() < TRANSFER_LIMIT, "never told to stop");
                    if size >= BIG_CAP {
                        // Enough on disk: hold the end of the message until told.
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    stream.write_all(wire).unwrap();
                    hash.update(&block);
                    size += block.len();
                    progress[n].fetch_add(block.len(), Ordering::SeqCst);
                }
                stream.write_all(b".\r\n").unwrap();
                let reply = read_reply(&mut stream);
                assert!(reply.starts_with("250 "), "big {n}: {reply:?}");
                (size, hash.finalize().to_vec())
            })
        })
        .collect();
    // Once every big one is well under way, a small message from another client.
    let start = Instant::now();
    while progress.iter().any(|p| p.load(Ordering::SeqCst) < MIB) {
        assert!(
            start.elapsed() < TRANSFER_LIMIT,
            "the big senders do not progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut small = connect(addr);
    let sent_at = Instant::now();
    let reply = send_data(&mut small, b"Subject: small\r\n\r\nhello\r\n");
    let took = sent_at.elapsed();
    assert!(reply.starts_with("250 "), "{reply:?}");
    assert!(
        took < Duration::from_secs(10),
        "the small message took {took:?}"
    );
    // The big ones were still streaming when it was stored (spending the budget).
    let streaming = progress
        .iter()
        .filter(|p| p.load(Ordering::SeqCst) < BIG_CAP)
        .count();
    assert!(
        streaming > 0,
        "the big ones were done streaming before the small message ({took:?}) was stored"
    );
    stop.store(true, Ordering::SeqCst);
    let sent: Vec<(usize, Vec<u8>)> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    // Every big one is stored whole and exact (its sidecar's size and hash).
    let mut stored: Vec<(usize, String)> = names(&dir)
        .iter()
        .filter(|name| name.ends_with(".json"))
        .map(|name| {
            let record: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap();
            (
                record["size"].as_u64().unwrap() as usize,
                record["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(size, _)| *size > 1000)
        .collect();
    let mut want: Vec<(usize, String)> = sent
        .iter()
        .map(|(size, hash)| (*size, hash.iter().map(|b| format!("{b:02x}")).collect()))
        .collect();
    stored.sort();
    want.sort();
    assert_eq!(stored, want);
    assert_eq!(names(&dir).len(), 2 * (BIG + 1));
    drop(child);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Waits until `check` holds (the storage threads remove abandoned files soon after).
#[track_caller]
fn eventually(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < REPLY_WAIT, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn cut_off_reset_and_oversize_messages_leave_no_file() {
    let dir = scratch_dir("aborts");
    let (eml, maildir) = (dir.join("eml"), dir.join("Maildir"));
    let (eml_spec, maildir_spec) = (
        format!("eml:{}", eml.display()),
        format!("maildir:{}", maildir.display()),
    );
    let Spawned { child, addr } = server(&[
        "--store-buffer",
        "1MiB",
        "--max-message-size",
        "2097152",
        "--store",
        &eml_spec,
        "--store",
        &maildir_spec,
    ]);
    let content = content(1, 3 * MIB / 2);
    // DATA, 1.5 MiB of content (many chunks, so its files exist), then the client goes away.
    let mut cut = connect(addr);
    roundtrip(&mut cut, b"MAIL FROM:<a@b.example>\r\n", "250 ");
    roundtrip(&mut cut, b"RCPT TO:<c@d.example>\r\n", "250 ");
    roundtrip(&mut cut, b"DATA\r\n", "354 ");
    let wire = stuffed(&content);
    cut.write_all(&wire[..wire.len() - 3]).unwrap();
    // Whatever the server already has of it is written before the next message is sent.
    std::thread::sleep(Duration::from_millis(200));
    drop(cut);
    // BDAT chunks of 1.5 MiB, then RSET.
    let mut reset = connect(addr);
    roundtrip(&mut reset, b"MAIL FROM:<a@b.example>\r\n", "250 ");
    roundtrip(&mut reset, b"RCPT TO:<c@d.example>\r\n", "250 ");
    reset
        .write_all(format!("BDAT {}\r\n", content.len()).as_bytes())
        .unwrap();
    reset.write_all(&content).unwrap();
    assert!(read_reply(&mut reset).starts_with("250 "));
    roundtrip(&mut reset, b"RSET\r\n", "250 ");
    // Over --max-message-size: read to its end, refused.
    let mut oversize = connect(addr);
    let big = self::content(2, 3 * MIB);
    let reply = send_data(&mut oversize, &big);
    assert!(reply.starts_with("552 5.3.4"), "{reply:?}");
    // A small message still goes through: the only one kept.
    let reply = send_data(&mut oversize, b"Subject: kept\r\n\r\nx\r\n");
    assert!(reply.starts_with("250 "), "{reply:?}");
    eventually("the abandoned messages' files are removed", || {
        names(&eml).len() == 2
            && names(&maildir.join("new")).len() == 1
            && names(&maildir.join("tmp")).is_empty()
    });
    let kept = names(&eml);
    assert!(
        kept[0].ends_with(".eml") && kept[1].ends_with(".json"),
        "{kept:?}"
    );
    assert_eq!(
        std::fs::read(eml.join(&kept[0])).unwrap(),
        b"Subject: kept\r\n\r\nx\r\n"
    );
    drop(child);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[allow(unsafe_code)]
fn a_store_that_fails_mid_stream_answers_451_and_leaves_no_partial_file() {
    use std::os::unix::process::CommandExt;
    let dir = scratch_dir("fails");
    let spec = format!("eml:{}", dir.display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    // Files may not grow past 1 MiB: a write past it fails with EFBIG (SIGXFSZ ignored, as
    // the server would see a full disk or quota), in the middle of a streamed message.
    // SAFETY: between fork and exec, only async-signal-safe calls (setrlimit, signal).
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: MIB as libc::rlim_t,
                rlim_max: MIB as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let Spawned { child, addr } =
        spawn_server(command, &["--store-buffer", "1MiB", "--store", &spec]);
    let mut client = connect(addr);
    let reply = send_data(&mut client, &content(3, 3 * MIB));
    assert!(reply.starts_with("451 4.3.0"), "{reply:?}");
    assert!(names(&dir).is_empty(), "left behind: {:?}", names(&dir));
    // The same for BDAT, and the session goes on: a small message is stored.
    let reply = send_bdat(&mut client, &content(4, 3 * MIB), 700_000);
    assert!(reply.starts_with("451 4.3.0"), "{reply:?}");
    assert!(names(&dir).is_empty(), "left behind: {:?}", names(&dir));
    let reply = send_data(&mut client, b"Subject: small\r\n\r\nfits\r\n");
    assert!(reply.starts_with("250 "), "{reply:?}");
    assert_eq!(names(&dir).len(), 2);
    assert!(child.stderr().contains("eml"), "the failure is reported");
    drop(child);
    std::fs::remove_dir_all(&dir).unwrap();
}
