//! Hostile clients: whatever one client sends, the server holds a small, bounded amount of
//! memory for it and stays correct. Each test starts the real binary (so its RSS is its own)
//! and measures it; the figures the hardening issue quotes at full scale are rerun by
//! `benches/hostile.sh`, not here.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use util::process::ChildGuard;
use util::REPLY_WAIT;

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// Starts the binary on a free port with `args`; returns it and its address.
fn start(args: &[&str]) -> (ChildGuard, SocketAddr) {
    let listen = util::free_local_addr();
    let mut command = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command
        .args([
            "--listen",
            &listen,
            "--threads",
            "1",
            "--hostname",
            "mx.test",
        ])
        .args(args);
    let mut server = ChildGuard::spawn(command);
    let line = server.next_line(REPLY_WAIT);
    assert!(line.starts_with("fastsmtpd listening on "), "{line}");
    (server, listen.parse().unwrap())
}

/// Writes as much of `bytes` as the peer takes before it stops taking any for `stall`.
fn write_until_stalled(stream: &mut TcpStream, bytes: &[u8], stall: Duration) -> usize {
    stream.set_nonblocking(true).unwrap();
    let mut written = 0;
    let mut last_progress = Instant::now();
    while written < bytes.len() && last_progress.elapsed() < stall {
        match stream.write(&bytes[written..]) {
            Ok(n) => {
                written += n;
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write failed after {written} bytes: {e}"),
        }
    }
    stream.set_nonblocking(false).unwrap();
    written
}

/// Bug (hardening issue, item 2): `EHLO x` (8 octets in, 133 out) pipelined by a client that
/// never reads made the server buffer about 1 MiB of replies per connection, because the
/// output limit was checked only between 64 KiB reads. Now the session stops taking commands
/// once 64 KiB of replies wait, and the rest stays unread (TCP pushes back on the client).
#[test]
fn a_client_that_never_reads_its_replies_holds_little_memory() {
    const CONNECTIONS: usize = 20;
    let (server, addr) = start(&[]);
    let pid = server.id();
    let flood = b"EHLO x\r\n".repeat(131_072);
    let before = rss_kib(pid);
    let mut clients: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    for client in &mut clients {
        // Until the server stops reading: its budget is spent and the kernel buffers are full.
        write_until_stalled(client, &flood, Duration::from_millis(300));
    }
    let peak = rss_kib(pid);
    let per_connection = (peak.saturating_sub(before)) / CONNECTIONS as u64;
    assert!(
        per_connection < 256,
        "{per_connection} KiB per connection (RSS {before} -> {peak} KiB); the budget is 64 KiB of replies plus one read"
    );
    drop(clients);
}

/// The other half of the budget: replies held back are not lost. A client that sends 20 000
/// EHLO commands in one go and only then reads gets all 20 000 replies, in order, and then
/// the reply to QUIT.
#[test]
fn replies_held_back_by_the_budget_all_arrive_in_order() {
    const COMMANDS: usize = 20_000;
    let (_server, addr) = start(&[]);
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    let mut input = b"EHLO x\r\n".repeat(COMMANDS);
    input.extend_from_slice(b"QUIT\r\n");
    let reader = {
        let mut client = client.try_clone().unwrap();
        std::thread::spawn(move || {
            // Start reading only once the writer has stalled, so the budget is hit.
            std::thread::sleep(Duration::from_millis(500));
            let mut all = Vec::new();
            client.read_to_end(&mut all).map(|_| all)
        })
    };
    client.write_all(&input).unwrap();
    let all = reader.join().unwrap().expect("replies");
    let text = String::from_utf8(all).unwrap();
    let ehlo_replies = text.matches("250-mx.test\r\n").count();
    assert_eq!(ehlo_replies, COMMANDS);
    assert!(text.starts_with("220 mx.test ESMTP fastsmtpd\r\n250-mx.test\r\n"));
    assert!(text.ends_with("250 ENHANCEDSTATUSCODES\r\n221 2.0.0 Bye\r\n"));
}
