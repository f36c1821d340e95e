//! Shared helpers for integration tests: start a server on loopback, talk to it byte-exactly.
//!
//! Every helper is `#[track_caller]` so a failure points at the test line, not here.
#![allow(dead_code)] // each test file uses a different subset

use fastsmtpd::config::Config;
use fastsmtpd::server::{self, ServerHandle};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a test waits for any single expected reply before failing (never a timing
/// assertion: only a bound so a broken server fails the test instead of hanging it).
pub const REPLY_WAIT: Duration = Duration::from_secs(10);

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

    /// Sends raw bytes.
    #[track_caller]
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("send");
    }

    /// Reads until exactly `want` has arrived (or fails if anything else arrives).
    #[track_caller]
    pub fn expect(&mut self, want: impl AsRef<[u8]>) {
        let want = want.as_ref();
        let mut buf = [0u8; 65536];
        while self.pending.len() < want.len() {
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
        let got: Vec<u8> = self
            .pending
            .drain(..want.len().min(self.pending.len()))
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "reply mismatch"
        );
    }

    /// Sends `command` and expects `reply`.
    #[track_caller]
    pub fn roundtrip(&mut self, command: impl AsRef<[u8]>, reply: impl AsRef<[u8]>) {
        self.send(command);
        self.expect(reply);
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
        self.roundtrip(
            "EHLO client.test\r\n",
            ehlo_reply(fastsmtpd::config::DEFAULT_MAX_MESSAGE_SIZE),
        );
    }
}

/// The exact EHLO reply of a test server with the given size limit.
pub fn ehlo_reply(max_size: u64) -> String {
    format!(
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE {max_size}\r\n250-8BITMIME\r\n250-BINARYMIME\r\n\
         250-CHUNKING\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n"
    )
}
