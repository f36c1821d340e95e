//! Shared helpers for integration tests: start a server on loopback, talk to it byte-exactly.
//!
//! Every helper is `#[track_caller]` so a failure points at the test line, not here.
#![allow(dead_code)] // each test file uses a different subset

pub mod process;
pub mod relay;

use fastsmtpd::config::Config;
use fastsmtpd::server::{self, ServerHandle};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a test waits for any single expected reply before failing (never a timing
/// assertion: only a bound so a broken server fails the test instead of hanging it).
pub const REPLY_WAIT: Duration = Duration::from_secs(10);

/// A fresh, empty directory under the system's temporary directory, unique to this test
/// process and call (`name` says whose it is).
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("fastsmtpd-test-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts the real binary on a free loopback port with `threads` workers and host name
/// `mx.test`, followed by `args`; returns once it printed its listening line (no probe
/// connection, which would count as a session).
#[track_caller]
pub fn start_binary(threads: usize, args: &[&str]) -> (process::ChildGuard, SocketAddr) {
    let listen = free_local_addr();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command
        .args(["--listen", &listen, "--threads", &threads.to_string()])
        .args(["--hostname", "mx.test"])
        .args(args);
    let mut child = process::ChildGuard::spawn(command);
    let line = child.next_line(REPLY_WAIT);
    assert!(line.starts_with("fastsmtpd listening on "), "{line:?}");
    (child, listen.parse().unwrap())
}

/// Starts the real binary with `--api API_HOST:PORT` (and `args`), on ports free when picked:
/// another test may take a picked port before the binary binds it, so a start that fails
/// with "Address already in use" is tried again with new ports (five times at most).
/// Returns the child, the SMTP address and the API's `host:port` as given.
pub fn start_binary_with_api(
    threads: usize,
    api_host: &str,
    args: &[&str],
) -> (process::ChildGuard, SocketAddr, String) {
    for _ in 0..5 {
        let port = free_local_addr().rsplit_once(':').unwrap().1.to_owned();
        let api = format!("{api_host}:{port}");
        let listen = free_local_addr();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
        command
            .args(["--listen", &listen, "--threads", &threads.to_string()])
            .args(["--hostname", "mx.test", "--api", &api])
            .args(args);
        let mut child = process::ChildGuard::spawn(command);
        match child.try_next_line(REPLY_WAIT) {
            Some(line) if line.starts_with("fastsmtpd listening on ") => {
                return (child, listen.parse().unwrap(), api);
            }
            _ if child.stderr().contains("Address already in use") => continue,
            line => panic!("the server did not start: {line:?}\n{}", child.stderr()),
        }
    }
    panic!("no free pair of ports in five tries")
}

/// A loopback address (`127.0.0.1:PORT`) nobody listens on right now, for starting the real
/// binary (which cannot report an ephemeral port back to the test).
pub fn free_local_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port();
    format!("127.0.0.1:{port}")
}

/// A config for tests: one worker, an ephemeral port on 127.0.0.1, hostname `mx.test`.
pub fn test_config() -> Config {
    Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        hostname: "mx.test".into(),
        shutdown_grace: Duration::from_secs(2),
        ..Config::default()
    }
}

/// A running server that is stopped when dropped.
pub struct TestServer {
    /// The handle (taken on stop).
    pub handle: Option<ServerHandle>,
    /// The first bound address.
    pub addr: SocketAddr,
}

impl TestServer {
    /// Starts a server with `config`.
    #[track_caller]
    pub fn start(config: Config) -> TestServer {
        let handle = server::start(&config).expect("server starts");
        let addr = handle.local_addrs()[0];
        TestServer {
            handle: Some(handle),
            addr,
        }
    }

    /// Starts a server with [`test_config`].
    #[track_caller]
    pub fn default_config() -> TestServer {
        Self::start(test_config())
    }

    /// Connects a client and reads the greeting.
    #[track_caller]
    pub fn client(&self) -> Client {
        let mut client = Client::connect(self.addr);
        client.expect("220 mx.test ESMTP fastsmtpd\r\n");
        client
    }

    /// The server's summed counters right now.
    pub fn stats(&self) -> fastsmtpd::stats::Stats {
        self.handle.as_ref().unwrap().stats()
    }

    /// Waits (bounded) until `check` holds for the server's counters.
    #[track_caller]
    pub fn wait_for_stats(&self, check: impl Fn(&fastsmtpd::stats::Stats) -> bool) {
        let start = Instant::now();
        while !check(&self.stats()) {
            assert!(
                start.elapsed() < REPLY_WAIT,
                "stats never matched: {:?}",
                self.stats()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Shuts down and returns the final counters.
    pub fn stop(mut self) -> fastsmtpd::stats::Stats {
        self.handle.take().unwrap().stop().expect("clean shutdown")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = handle.stop();
        }
    }
}

/// A raw TCP client that compares replies byte for byte.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes received but not yet matched.
    pending: Vec<u8>,
}

impl Client {
    /// A connection greeted with `EHLO client.test`, a transaction open from
    /// `MAIL FROM:<app@test>` (each reply checked for success).
    #[track_caller]
    pub fn in_transaction(addr: SocketAddr) -> Client {
        let mut client = Client::connect(addr);
        assert!(client.read_reply().starts_with("220 "));
        client.send("EHLO client.test\r\n");
        assert!(client.read_reply().starts_with("250"));
        client.send("MAIL FROM:<app@test>\r\n");
        assert!(client.read_reply().starts_with("250 "));
        client
    }

    /// The reply to `RCPT TO:<to>` in a new transaction ([`Client::in_transaction`]).
    #[track_caller]
    pub fn rcpt_reply(addr: SocketAddr, to: &str) -> String {
        let mut client = Client::in_transaction(addr);
        client.send(format!("RCPT TO:<{to}>\r\n"));
        client.read_reply()
    }

    /// Connects (no greeting read).
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(REPLY_WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    /// Connects from the loopback address `source` (any 127.0.0.0/8 address: Linux routes the
    /// whole /8 to loopback), so one test can play several client addresses.
    #[track_caller]
    pub fn connect_from(addr: SocketAddr, source: std::net::Ipv4Addr) -> Client {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let local = SocketAddr::from((source, 0));
        socket
            .bind(&local.into())
            .expect("bind to a loopback address");
        socket.connect(&addr.into()).expect("connect");
        let stream = TcpStream::from(socket);
        stream.set_read_timeout(Some(REPLY_WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    /// Closes with a TCP reset (`SO_LINGER` 0), as a client that gives up does.
    pub fn reset(self) {
        let socket = socket2::Socket::from(self.stream);
        let _ = socket.set_linger(Some(Duration::ZERO));
    }

    /// Sends raw bytes.
    #[track_caller]
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("send");
    }

    /// Reads until exactly `want` has arrived (or fails if anything else arrives). Each
    /// [`QUEUE_ID`] in `want` stands for one message id as the server makes them
    /// (`<seconds>.M<micros>P<pid>Q<sequence>`, see [`is_queue_id`]); the ids found there are
    /// returned in order.
    #[track_caller]
    pub fn expect(&mut self, want: impl AsRef<[u8]>) -> Vec<String> {
        let want = want.as_ref();
        let mut buf = [0u8; 65536];
        loop {
            match match_with_ids(&self.pending, want) {
                Match::Done { consumed, ids } => {
                    self.pending.drain(..consumed);
                    return ids;
                }
                Match::Mismatch => break,
                Match::NeedMore => {}
            }
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) => panic!(
                    "reading reply: {e}; got so far {:?}, want {:?}",
                    String::from_utf8_lossy(&self.pending),
                    String::from_utf8_lossy(want)
                ),
            }
        }
        panic!(
            "reply mismatch\n  got: {:?}\n want: {:?}",
            String::from_utf8_lossy(&self.pending),
            String::from_utf8_lossy(want)
        );
    }

    /// Reads one whole reply (every line up to the one with a space after its code).
    #[track_caller]
    pub fn read_reply(&mut self) -> String {
        let mut buf = [0u8; 65536];
        loop {
            let mut start = 0;
            while let Some(end) = self.pending[start..].windows(2).position(|w| w == b"\r\n") {
                let line = &self.pending[start..start + end];
                start += end + 2;
                if line.get(3) == Some(&b' ') || line.len() == 3 {
                    let reply: Vec<u8> = self.pending.drain(..start).collect();
                    return String::from_utf8_lossy(&reply).into_owned();
                }
            }
            match self.stream.read(&mut buf) {
                Ok(0) => panic!(
                    "closed mid-reply: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) => panic!(
                    "reading reply: {e}; got {:?}",
                    String::from_utf8_lossy(&self.pending)
                ),
            }
        }
    }

    /// Sends `command` and expects `reply` (see [`Client::expect`]); returns the message
    /// ids the reply named.
    #[track_caller]
    pub fn roundtrip(&mut self, command: impl AsRef<[u8]>, reply: impl AsRef<[u8]>) -> Vec<String> {
        self.send(command);
        self.expect(reply)
    }

    /// Expects the server to close the connection with nothing more to say.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        assert!(
            self.pending.is_empty(),
            "unread: {:?}",
            String::from_utf8_lossy(&self.pending)
        );
        let mut buf = [0u8; 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected close, got {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected close, got error {e}"),
        }
    }

    /// Sends EHLO and checks the whole multi-line reply.
    #[track_caller]
    pub fn ehlo(&mut self) {
        self.ehlo_size(fastsmtpd::config::DEFAULT_MAX_MESSAGE_SIZE);
    }

    /// `EHLO`, expecting `SIZE max_size` (a server whose capture budget is below
    /// `--max-message-size` advertises the budget).
    pub fn ehlo_size(&mut self, max_size: u64) {
        self.roundtrip("EHLO client.test\r\n", ehlo_reply(max_size));
    }
}

/// The exact EHLO reply of a test server with the given size limit.
pub fn ehlo_reply(max_size: u64) -> String {
    format!(
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE {max_size}\r\n250-8BITMIME\r\n250-BINARYMIME\r\n\
         250-CHUNKING\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n"
    )
}

// ---------------------------------------------------------------------------------------------
// Added for the per-concern integration tests (pipelining, errors, limits, bdat, lifecycle,
// timeouts). The reply constants are spelled out here, independently of `proto::reply`, so a
// change to the server's bytes shows up as a test failure.

/// `MAIL` accepted.
pub const MAIL_OK: &str = "250 2.1.0 Ok\r\n";
/// `RCPT` accepted.
pub const RCPT_OK: &str = "250 2.1.5 Ok\r\n";
/// `RSET` / `NOOP`.
pub const OK: &str = "250 2.0.0 Ok\r\n";
/// `DATA` accepted.
pub const GO_AHEAD: &str = "354 End data with <CR><LF>.<CR><LF>\r\n";
/// Where an expected reply holds a message id (see [`Client::expect`], [`is_queue_id`]).
pub const QUEUE_ID: &str = "[queue id]";
/// A message accepted: the `250` names the message's id, as Postfix does.
pub const QUEUED: &str = "250 2.0.0 Ok: queued as [queue id]\r\n";

/// Whether `id` is a message id as the server makes them:
/// `<seconds>.M<microseconds>P<pid>Q<sequence>`, all decimal.
pub fn is_queue_id(id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some((seconds, rest)) = id.split_once(".M") else {
        return false;
    };
    let Some((micros, rest)) = rest.split_once('P') else {
        return false;
    };
    let Some((pid, sequence)) = rest.split_once('Q') else {
        return false;
    };
    [seconds, micros, pid, sequence].into_iter().all(digits)
}

/// How far `got` matches `want` (see [`Client::expect`]).
enum Match {
    /// All of `want`, in the first `consumed` bytes of `got`.
    Done { consumed: usize, ids: Vec<String> },
    /// So far so good: more bytes are needed.
    NeedMore,
    /// `got` cannot match.
    Mismatch,
}

/// Matches `got` against `want`, in which each [`QUEUE_ID`] stands for a message id (the
/// longest run of id characters, checked with [`is_queue_id`]).
fn match_with_ids(got: &[u8], want: &[u8]) -> Match {
    let marker = QUEUE_ID.as_bytes();
    let (mut at, mut rest, mut ids) = (0, want, Vec::new());
    loop {
        let literal_len = rest
            .windows(marker.len())
            .position(|w| w == marker)
            .unwrap_or(rest.len());
        let literal = &rest[..literal_len];
        let have = &got[at.min(got.len())..];
        if have.len() < literal.len() {
            return if literal.starts_with(have) {
                Match::NeedMore
            } else {
                Match::Mismatch
            };
        }
        if &have[..literal.len()] != literal {
            return Match::Mismatch;
        }
        at += literal.len();
        if literal_len == rest.len() {
            return Match::Done { consumed: at, ids };
        }
        rest = &rest[literal_len + marker.len()..];
        let id_len = got[at..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'.'))
            .unwrap_or(got.len() - at);
        if at + id_len == got.len() {
            return Match::NeedMore; // the id may go on
        }
        let id = String::from_utf8_lossy(&got[at..at + id_len]).into_owned();
        if !is_queue_id(&id) {
            return Match::Mismatch;
        }
        ids.push(id);
        at += id_len;
    }
}
/// `QUIT`.
pub const BYE: &str = "221 2.0.0 Bye\r\n";
/// The greeting of a test server.
pub const GREETING: &str = "220 mx.test ESMTP fastsmtpd\r\n";
/// The reply to `HELO` on a test server.
pub const HELO_OK: &str = "250 mx.test\r\n";
/// A message refused for a bare CR or LF in its content.
pub const BARE_IN_DATA: &str =
    "550 5.5.2 Error: bare CR or LF in message data (see --bare-lf keep)\r\n";
/// A bare CR, LF or NUL in a command line.
pub const BAD_BYTES: &str = "500 5.5.2 Error: bare CR, LF or NUL in command line\r\n";
/// An unknown command.
pub const UNRECOGNIZED: &str = "500 5.5.2 Error: command not recognized\r\n";
/// A command line over the limit.
pub const LINE_TOO_LONG: &str = "500 5.5.2 Line too long\r\n";
/// Size over the limit.
pub const TOO_BIG: &str = "552 5.3.4 Error: message size exceeds fixed limit\r\n";
/// `RCPT`/`DATA`/`BDAT` without a transaction.
pub const NEED_MAIL: &str = "503 5.5.1 Error: need MAIL command\r\n";
/// `DATA`/`BDAT` without an accepted recipient.
pub const NEED_RCPT: &str = "503 5.5.1 Error: need RCPT command\r\n";
/// Shutdown.
pub const SHUTTING_DOWN: &str = "421 4.3.2 Error: service shutting down, closing connection\r\n";
/// Idle / per-command timeout.
pub const TIMEOUT: &str = "421 4.4.2 Error: timeout exceeded, closing connection\r\n";
/// Minimum data rate not met.
pub const TOO_SLOW: &str = "421 4.4.2 Error: data rate too low, closing connection\r\n";
/// Connection cap.
pub const TOO_MANY_CONNECTIONS: &str = "421 4.7.0 Error: too many connections, try again later\r\n";
/// Error cap.
pub const TOO_MANY_ERRORS: &str = "421 4.7.0 Error: too many errors, closing connection\r\n";

impl TestServer {
    /// The server handle (panics after `stop`).
    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }

    /// Waits (bounded) until `check` holds, then returns the counters it held for.
    #[track_caller]
    pub fn stats_when(
        &self,
        check: impl Fn(&fastsmtpd::stats::Stats) -> bool,
    ) -> fastsmtpd::stats::Stats {
        let start = Instant::now();
        loop {
            let stats = self.stats();
            if check(&stats) {
                return stats;
            }
            assert!(
                start.elapsed() < REPLY_WAIT,
                "stats never matched: {stats:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (bounded) until no connection is open, then returns the counters. Each counter
    /// is published separately, so the others may lag `open_connections` by one loop turn:
    /// for exact totals use [`TestServer::stop`] or [`TestServer::stats_when`] on them.
    #[track_caller]
    pub fn wait_idle(&self) -> fastsmtpd::stats::Stats {
        self.wait_for_stats(|s| s.open_connections == 0);
        self.stats()
    }
}

impl Client {
    /// Sends EHLO to a server whose message size limit is `max_size`.
    #[track_caller]
    pub fn ehlo_sized(&mut self, max_size: u64) {
        self.roundtrip("EHLO client.test\r\n", ehlo_reply(max_size));
    }

    /// Sends HELO and checks the one-line reply.
    #[track_caller]
    pub fn helo(&mut self) {
        self.roundtrip("HELO client.test\r\n", HELO_OK);
    }

    /// `MAIL FROM:<a@example.org>` then `RCPT TO:<b@example.org>`, both accepted.
    #[track_caller]
    pub fn begin_transaction(&mut self) {
        self.roundtrip("MAIL FROM:<a@example.org>\r\n", MAIL_OK);
        self.roundtrip("RCPT TO:<b@example.org>\r\n", RCPT_OK);
    }

    /// A whole transaction with DATA; `content` must end with CRLF and is sent unstuffed-as-is
    /// followed by `.\r\n`. Expects `250 ... queued`.
    #[track_caller]
    pub fn deliver(&mut self, content: &str) {
        self.begin_transaction();
        self.roundtrip("DATA\r\n", GO_AHEAD);
        self.send(content);
        self.roundtrip(".\r\n", QUEUED);
    }

    /// Sets the read timeout (`None` restores [`REPLY_WAIT`]).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.stream
            .set_read_timeout(Some(timeout.unwrap_or(REPLY_WAIT)))
            .unwrap();
    }

    /// Asserts that nothing arrives for `wait` (and the connection stays open). Only used
    /// where the protocol says the server must be silent; `wait` bounds the check.
    #[track_caller]
    pub fn expect_silence(&mut self, wait: Duration) {
        assert!(
            self.pending.is_empty(),
            "unread: {:?}",
            String::from_utf8_lossy(&self.pending)
        );
        self.set_read_timeout(Some(wait));
        let mut buf = [0u8; 1024];
        let result = self.stream.read(&mut buf);
        self.set_read_timeout(None);
        match result {
            Ok(0) => panic!("expected silence, the server closed the connection"),
            Ok(n) => panic!(
                "expected silence, got {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("expected silence, got error {e}"),
        }
    }

    /// Sends `bytes` one byte per write (TCP_NODELAY is set), so the server sees every split.
    #[track_caller]
    pub fn send_bytewise(&mut self, bytes: impl AsRef<[u8]>) {
        for byte in bytes.as_ref() {
            self.stream
                .write_all(std::slice::from_ref(byte))
                .expect("send");
        }
    }

    /// Sends `bytes` one byte every `interval` until the server says something, and returns
    /// what it said once the connection closes. The writes stop at the first reply; at most
    /// `max_bytes` are sent (the test fails if the server stays silent that long).
    #[track_caller]
    pub fn trickle_until_reply(&mut self, bytes: impl AsRef<[u8]>, interval: Duration) -> Vec<u8> {
        let bytes = bytes.as_ref();
        self.set_read_timeout(Some(interval));
        let mut buf = [0u8; 1024];
        let mut sent = 0;
        loop {
            // A write may fail once the server closed: the reply is what matters.
            if sent < bytes.len() && self.stream.write_all(&bytes[sent..=sent]).is_ok() {
                sent += 1;
            } else if sent >= bytes.len() {
                panic!(
                    "server stayed silent through {} trickled bytes",
                    bytes.len()
                );
            }
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading while trickling: {e}"),
            }
        }
        self.set_read_timeout(None);
        self.read_to_close()
    }

    /// Reads everything until the server closes (bounded by [`REPLY_WAIT`] per read).
    #[track_caller]
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.pending);
        let mut buf = [0u8; 65536];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return all,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
                Err(e) => panic!(
                    "reading until close: {e}; got so far {:?}",
                    String::from_utf8_lossy(&all)
                ),
            }
        }
    }
}

/// The content octets the server keeps for DATA `content` (which ends with CRLF and holds no
/// `CR LF . CR LF`): lines are split at CRLF only, and a line starting with `.` loses that dot
/// (RFC 5321 §4.5.2). Counted by the naive reference, independent of the server's scanner.
#[track_caller]
pub fn unstuffed_len(content: &[u8]) -> u64 {
    let outcome = fastsmtpd::proto::data::reference::scan(content);
    assert_eq!(outcome.end, None, "the content holds an end of data");
    outcome.content.len() as u64
}
