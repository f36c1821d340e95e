//! Signals on the real binary: SIGHUP reopens the JSON-lines files and disturbs no session,
//! SIGUSR1 prints the stats line, SIGUSR2 is ignored, and SIGINT/SIGTERM shut down gracefully
//! with a second one exiting at once with the conventional status (128 + signal number).
//!
//! Every server runs under a [`ChildGuard`] (killed if the test fails) and every wait is
//! bounded.

mod util;
use util::scratch_dir;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use util::process::ChildGuard;
use util::{Client, GO_AHEAD, GREETING, QUEUED, REPLY_WAIT};

/// Bound on a server's exit after the signal that should end it.
const EXIT_WAIT: Duration = Duration::from_secs(20);

/// The real binary, running (killed when dropped).
struct Spawned {
    child: ChildGuard,
    addr: SocketAddr,
}

impl Spawned {
    /// Starts the real binary with one worker; returns once it printed its listening line.
    #[track_caller]
    fn start(args: &[&str]) -> Spawned {
        let (child, addr) = util::start_binary(1, args);
        Spawned { child, addr }
    }

    /// Sends `signal` to the server.
    #[track_caller]
    fn signal(&self, signal: libc::c_int) {
        self.child.signal(signal);
    }

    /// Reads standard output until a line containing `needle` (bounded); returns it.
    #[track_caller]
    fn line_containing(&mut self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let left = REPLY_WAIT.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "no line with {needle:?} within {REPLY_WAIT:?}"
            );
            let line = self.child.next_line(left);
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// A client that has been greeted and sent EHLO.
    #[track_caller]
    fn client(&self) -> Client {
        let mut client = Client::connect(self.addr);
        client.expect(GREETING);
        client.ehlo();
        client
    }
}

/// Sends message `n` (its number in the Subject) and expects `250` after the dot.
#[track_caller]
fn deliver(client: &mut Client, n: usize) {
    client.begin_transaction();
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.roundtrip(format!("Subject: message {n}\r\n\r\nbody\r\n.\r\n"), QUEUED);
}

/// The Subjects of the records in `file`, in order.
#[track_caller]
fn subjects(file: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    text.lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a whole record: {line:?}: {e}"));
            record["subject"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Ends the server with one SIGTERM and checks that it exits cleanly with its summary.
#[track_caller]
fn stop_gracefully(server: Spawned, messages: u64) {
    server.signal(libc::SIGTERM);
    let exited = server.child.wait(EXIT_WAIT);
    assert_eq!(exited.status.code(), Some(0), "{}", exited.dump());
    assert!(
        exited
            .stdout
            .contains(&format!("done: messages={messages} ")),
        "{}",
        exited.dump()
    );
}

#[test]
fn sighup_during_data_does_not_cut_the_message() {
    let dir = scratch_dir("hup-data");
    let file = dir.join("m.jsonl");
    let mut server = Spawned::start(&["--store", &format!("jsonl:{}", file.display())]);
    let mut client = server.client();
    client.begin_transaction();
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.send("Subject: message 1\r\n\r\nfirst half\r\n");
    server.signal(libc::SIGHUP);
    server.line_containing("SIGHUP");
    client.roundtrip("second half\r\n.\r\n", QUEUED);
    client.roundtrip("NOOP\r\n", util::OK);
    // The server still takes new sessions.
    deliver(&mut server.client(), 2);
    client.roundtrip("QUIT\r\n", util::BYE);
    stop_gracefully(server, 2);
    assert_eq!(subjects(&file), ["message 1", "message 2"]);
}

#[test]
fn sighup_recreates_a_renamed_jsonl_file_at_once() {
    let dir = scratch_dir("hup-rotate");
    let file = dir.join("m.jsonl");
    let rotated = dir.join("m.jsonl.1");
    let mut server = Spawned::start(&["--store", &format!("jsonl:{}", file.display())]);
    let mut client = server.client();
    deliver(&mut client, 1);
    // Log rotation: rename, then SIGHUP (logrotate's `postrotate kill -HUP`).
    std::fs::rename(&file, &rotated).unwrap();
    server.signal(libc::SIGHUP);
    let line = server.line_containing("SIGHUP");
    assert!(line.contains("reopened 1 "), "{line:?}");
    // Recreated by the signal, before any message needs it.
    assert_eq!(std::fs::read(&file).unwrap(), b"");
    deliver(&mut client, 2);
    client.roundtrip("QUIT\r\n", util::BYE);
    stop_gracefully(server, 2);
    assert_eq!(subjects(&rotated), ["message 1"]);
    assert_eq!(subjects(&file), ["message 2"]);
}

#[test]
fn sigusr1_prints_the_stats_line_and_sigusr1_and_sigusr2_do_not_kill() {
    let mut server = Spawned::start(&[]);
    deliver(&mut server.client(), 1);
    // The workers publish their counters a loop turn after the reply went out: ask again
    // until the message shows (bounded).
    let start = Instant::now();
    loop {
        server.signal(libc::SIGUSR1);
        let line = server.line_containing("stats:");
        assert!(line.starts_with("stats: connections open="), "{line:?}");
        if line.contains(" messages=1 ") {
            break;
        }
        assert!(
            start.elapsed() < REPLY_WAIT,
            "the message never showed: {line:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.signal(libc::SIGUSR2);
    // A killed server would be gone by now; this one must still serve a whole session.
    std::thread::sleep(Duration::from_millis(300));
    let mut client = server.client();
    deliver(&mut client, 2);
    client.roundtrip("QUIT\r\n", util::BYE);
    stop_gracefully(server, 2);
}

/// Starts a server with a long grace, holds a message in flight so that the first `first`
/// signal leaves it running, sends `first`, waits for it to begin shutting down, then sends
/// each of `between` and finally `second`; returns the exit status code.
fn exit_code_after(first: libc::c_int, between: &[libc::c_int], second: libc::c_int) -> i32 {
    let mut server = Spawned::start(&["--shutdown-grace", "120"]);
    let mut client = server.client();
    client.begin_transaction();
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.send("Subject: in flight\r\n\r\n");
    server.signal(first);
    server.line_containing("shutting down");
    for &signal in between {
        server.signal(signal);
    }
    if !between.is_empty() {
        // Let them arrive first: none of them may end (or count towards ending) the server.
        std::thread::sleep(Duration::from_millis(300));
    }
    server.signal(second);
    let exited = server.child.wait(EXIT_WAIT);
    exited
        .status
        .code()
        .unwrap_or_else(|| panic!("not an exit: {}", exited.dump()))
}

#[test]
fn a_second_sigterm_exits_at_once_with_143() {
    assert_eq!(exit_code_after(libc::SIGTERM, &[], libc::SIGTERM), 143);
}

#[test]
fn a_second_sigint_exits_at_once_with_130_and_other_signals_do_not_count() {
    assert_eq!(
        exit_code_after(
            libc::SIGINT,
            &[libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2],
            libc::SIGINT
        ),
        130
    );
}
