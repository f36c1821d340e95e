//! Helpers for the relay's tests over real binaries: a next hop (a fastsmtpd sink keeping
//! what arrives as `.eml` files with JSON sidecars), a relay (`--spool DIR --relay-to ...`),
//! sending a message, and bounded waits for what arrived. Waits are bounds, never
//! measurements.

use super::process::ChildGuard;
use super::Client;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The most a test waits for mail to settle (a bound, not a measurement).
pub const SETTLE_WAIT: Duration = Duration::from_secs(60);

/// A next hop keeping every message in `mail` as `<id>.eml` plus its `<id>.json` record.
pub struct Sink {
    /// The running binary.
    pub child: ChildGuard,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it keeps mail.
    pub mail: PathBuf,
}

impl Sink {
    /// Starts a sink keeping mail in `dir/mail`, with `--fault` rules and other `args`.
    #[track_caller]
    pub fn start(dir: &Path, faults: &[&str], args: &[&str]) -> Sink {
        let listen = super::free_local_addr();
        Sink::start_at(dir, &listen, faults, args)
    }

    /// As [`Sink::start`], on `listen` (to start one again where another was).
    #[track_caller]
    pub fn start_at(dir: &Path, listen: &str, faults: &[&str], args: &[&str]) -> Sink {
        let mail = dir.join("mail");
        let store = format!("eml:{}", mail.display());
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
        command
            .args([
                "--listen",
                listen,
                "--threads",
                "1",
                "--hostname",
                "next.test",
            ])
            .args(["--store", &store]);
        for fault in faults {
            command.args(["--fault", fault]);
        }
        command.args(args);
        let mut child = ChildGuard::spawn(command);
        let line = child.next_line(super::REPLY_WAIT);
        assert!(
            line.starts_with("fastsmtpd listening on "),
            "{line:?} {}",
            child.stderr()
        );
        Sink {
            child,
            addr: listen.parse().unwrap(),
            mail,
        }
    }

    /// Stops the sink (SIGTERM) and returns how often its fault rules fired, in all (from
    /// the lines it prints at shutdown), so a test knows its faults happened.
    #[track_caller]
    pub fn stop_counting_faults(self) -> u64 {
        self.child.signal(libc::SIGTERM);
        let exited = self.child.wait(Duration::from_secs(30));
        exited
            .stdout
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.rsplit_once(" fired ")?;
                rest.strip_suffix(" times")?.parse::<u64>().ok()
            })
            .sum()
    }

    /// Every complete message kept so far: (sidecar record, bytes).
    pub fn arrived(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        arrived(&self.mail)
    }

    /// Waits (bounded) until at least `n` messages are kept, and returns them all.
    #[track_caller]
    pub fn wait_for(&self, n: usize) -> Vec<(serde_json::Value, Vec<u8>)> {
        let start = Instant::now();
        loop {
            let found = self.arrived();
            if found.len() >= n {
                return found;
            }
            assert!(
                start.elapsed() < SETTLE_WAIT,
                "{} of {n} messages arrived",
                found.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The messages kept in `mail` so far: (sidecar record, bytes).
pub fn arrived(mail: &Path) -> Vec<(serde_json::Value, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(mail) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with('.'));
        if path.extension().is_some_and(|ext| ext == "eml") && !hidden {
            let Ok(record) = std::fs::read(path.with_extension("json")) else {
                continue; // the sidecar is written next: look again later
            };
            let Ok(record) = serde_json::from_slice(&record) else {
                continue;
            };
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            found.push((record, bytes));
        }
    }
    found
}

/// Starts a relay spooling in `dir/spool`, delivering to `hops`, with `args` after.
#[track_caller]
pub fn start_relay(dir: &Path, hops: &[SocketAddr], args: &[&str]) -> (ChildGuard, SocketAddr) {
    let spool = dir.join("spool");
    let hops: Vec<String> = hops.iter().map(SocketAddr::to_string).collect();
    let hops = hops.join(",");
    let mut all = vec!["--spool", spool.to_str().unwrap(), "--relay-to", &hops];
    all.extend_from_slice(args);
    super::start_binary(1, &all)
}

/// Sends one message (`content` as the DATA, no line starting with a dot) and returns the
/// final reply.
#[track_caller]
pub fn send(addr: SocketAddr, from: &str, to: &[&str], content: &str) -> String {
    let mut client = Client::connect(addr);
    assert!(client.read_reply().starts_with("220 "));
    client.send("EHLO client.test\r\n");
    assert!(client.read_reply().starts_with("250"));
    client.send(format!("MAIL FROM:<{from}>\r\n"));
    assert!(client.read_reply().starts_with("250 "));
    for rcpt in to {
        client.send(format!("RCPT TO:<{rcpt}>\r\n"));
        assert!(client.read_reply().starts_with("250 "));
    }
    client.send("DATA\r\n");
    assert!(client.read_reply().starts_with("354 "));
    client.send(content);
    client.send(".\r\n");
    let reply = client.read_reply();
    client.send("QUIT\r\n");
    reply
}

/// The number in a `Subject: message N` line of `bytes`.
pub fn message_number(bytes: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(bytes)
        .lines()
        .find_map(|line| line.strip_prefix("Subject: message "))
        .and_then(|n| n.trim().parse().ok())
}

/// A small message numbered `n` (see [`message_number`]).
pub fn numbered(n: usize) -> String {
    format!("From: <a@x.test>\r\nSubject: message {n}\r\n\r\nbody of {n}\r\n")
}
