//! The relay's promise under `kill -9` (RFC 5321 §6.1: after the `250` a message must not be
//! lost; duplicates are the tolerated failure): a client sends numbered messages to the
//! relay binary (`--spool DIR --relay-to SINK`), one at a time, counting each `250`; a second
//! thread kills the relay with SIGKILL at random moments and starts it again on the same
//! spool and port. At the end every number that got a `250` must be at the next hop (a
//! fastsmtpd keeping `.eml` files): missing = 0. Duplicates are counted and bounded by what
//! can be in flight at a kill (a transaction the next hop answered whose outcome the relay
//! had not yet written: at most one per delivery connection).
//!
//! Short by default (CI): 400 messages, 4 kills. The long form is `benches/relay_kill9.sh`
//! (`FASTSMTPD_SOAK_MESSAGES=100000 FASTSMTPD_SOAK_KILLS=20`), which prints the figures.
//! Bounded in time throughout; no timed assertion.

mod util;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::process::ChildGuard;

/// Delivery connections per next hop (the delivery loop's default): the most transactions
/// in flight at a kill.
const IN_FLIGHT_PER_KILL: usize = fastsmtpd::relay::deliver::CONNECTIONS_PER_HOP_DEFAULT;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts the relay on `listen` (the same address every time), spooling in `spool`.
fn start_relay(listen: &str, spool: &Path, next_hop: SocketAddr) -> ChildGuard {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command.args([
        "--listen",
        listen,
        "--threads",
        "1",
        "--hostname",
        "relay.test",
        "--spool",
        spool.to_str().unwrap(),
        "--relay-to",
        &next_hop.to_string(),
        "--retry",
        "100ms",
        "--queue-lifetime",
        "10m",
    ]);
    let mut child = ChildGuard::spawn(command);
    let line = child.next_line(util::REPLY_WAIT);
    assert!(
        line.starts_with("fastsmtpd listening on "),
        "{line:?}\n{}",
        child.stderr()
    );
    child
}

/// One message numbered `n` over a new connection; `Ok(())` once it got its `250`, `Err`
/// for anything else (a connection refused or cut by a kill, an error reply): not accepted.
fn send_one(addr: &str, n: u64) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    let mut reply = |expect: &str| -> Result<(), String> {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("closed".into());
            }
            if line.len() >= 4 && &line[3..4] == "-" {
                continue;
            }
            return if line.starts_with(expect) {
                Ok(())
            } else {
                Err(line)
            };
        }
    };
    reply("220")?;
    let content = "EHLO soak.test\r\nMAIL FROM:<soak@x.test>\r\nRCPT TO:<r@y.test>\r\nDATA\r\n";
    writer
        .write_all(content.as_bytes())
        .map_err(|e| e.to_string())?;
    reply("250")?;
    reply("250")?;
    reply("250")?;
    reply("354")?;
    let body = format!(
        "Subject: soak {n}\r\nMessage-ID: <{n}@soak.test>\r\n\r\nmessage {n}\r\n.\r\nQUIT\r\n"
    );
    writer
        .write_all(body.as_bytes())
        .map_err(|e| e.to_string())?;
    reply("250")
}

/// The numbers of the messages the sink kept in `mail`, with how often each came.
fn arrived(mail: &Path) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(mail) else {
        return seen;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with('.'));
        if hidden || path.extension().is_none_or(|ext| ext != "eml") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        if let Some(n) = text
            .lines()
            .find_map(|line| line.strip_prefix("Subject: soak "))
            .and_then(|n| n.trim().parse().ok())
        {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

#[test]
fn every_message_that_got_a_250_arrives_through_kill_9s_of_the_relay() {
    let messages = env_number("FASTSMTPD_SOAK_MESSAGES", 400) as u64;
    let kills = env_number("FASTSMTPD_SOAK_KILLS", 4);
    let dir = util::scratch_dir("relay-kill9");
    let mail = dir.join("mail");
    let store = format!("eml:{}", mail.display());
    let (_sink, sink_addr) = util::start_binary(1, &["--store", &store]);
    let spool = dir.join("spool");
    let listen = util::free_local_addr();
    let relay = Arc::new(Mutex::new(start_relay(&listen, &spool, sink_addr)));

    // The killer: SIGKILL at a random moment, start again, `kills` times while the sender runs.
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let (relay, sent, done, listen, spool) = (
            Arc::clone(&relay),
            Arc::clone(&sent),
            Arc::clone(&done),
            listen.clone(),
            spool.clone(),
        );
        std::thread::spawn(move || {
            let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ u64::from(std::process::id());
            let mut killed = 0;
            for k in 0..kills {
                // Kill once the sender is past the k-th slice of the messages, after a random
                // few milliseconds more (so the moment falls anywhere in a transaction).
                let at = messages * (k as u64 + 1) / (kills as u64 + 1);
                while sent.load(Ordering::SeqCst) < at && !done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if done.load(Ordering::SeqCst) {
                    break;
                }
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                std::thread::sleep(Duration::from_micros(seed % 20_000));
                let mut guard = relay.lock().unwrap();
                guard.kill();
                *guard = start_relay(&listen, &spool, sink_addr);
                killed += 1;
            }
            killed
        })
    };

    // The sender: each number until it gets its 250 (a refused or cut attempt is not
    // accepted, so it is sent again: the relay may then keep it twice, which is allowed).
    let started = Instant::now();
    let mut accepted = Vec::new();
    let mut attempts = 0u64;
    for n in 0..messages {
        loop {
            attempts += 1;
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "the soak ran out of time"
            );
            match send_one(&listen, n) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        accepted.push(n);
        sent.store(n + 1, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    let killed = killer.join().unwrap();

    // Drain: every accepted number at the sink (bounded).
    let drain = Instant::now();
    let mut seen = arrived(&mail);
    while accepted.iter().any(|n| !seen.contains_key(n)) {
        assert!(
            drain.elapsed() < Duration::from_secs(120),
            "missing after 120 s: {:?}",
            accepted
                .iter()
                .filter(|n| !seen.contains_key(n))
                .take(20)
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
        seen = arrived(&mail);
    }
    let duplicates: usize = seen.values().map(|count| count - 1).sum();
    let missing = accepted.iter().filter(|n| !seen.contains_key(n)).count();
    println!(
        "relay kill -9 soak: {} messages accepted ({attempts} attempts), {killed} kills, \
         missing {missing}, duplicates {duplicates}, drained {:.1} s after the last 250",
        accepted.len(),
        drain.elapsed().as_secs_f64()
    );
    assert_eq!(missing, 0);
    // A kill can cut a client's transaction after the relay committed it (the client then
    // sends it again: one duplicate) and a delivery after the next hop kept it (one per
    // delivery connection).
    assert!(
        duplicates <= killed * (IN_FLIGHT_PER_KILL + 1),
        "{duplicates} duplicates for {killed} kills"
    );
    relay.lock().unwrap().kill();
}
