//! TLS and AUTH toward the next hop (`--relay-tls`, `--relay-ca`, `--relay-auth`), against
//! real next hops over loopback: fastsmtpd sinks started as child processes, with STARTTLS
//! (`--tls-cert` of a certificate signed by a CA made here, or `--tls-self-signed`) or
//! without, with `--auth file:` or without, keeping what arrives as `.eml` files with their
//! JSON sidecars (`tls`, `auth_user`) and as Maildir files (whose `Received:` line says
//! `with ESMTP`, `ESMTPS` or `ESMTPSA`, RFC 3848). A recording proxy in front of the sink
//! keeps every octet the relay sends, so the tests can say what never went out in clear.
//!
//! Most tests drive the library's delivery loop (`Deliverer`) on a spool of their own, so
//! they can read each recipient's state and last reply; two run the relay binary, for the
//! flags (`file:` credentials end to end; the start refusals). Bounded waits only, no timed
//! assertion.

mod util;

use fastsmtpd::proto::dsn::Notify;
use fastsmtpd::relay::client::session::{Credentials, TlsPolicy};
use fastsmtpd::relay::deliver::{Deliverer, DeliveryConfig, DeliveryHandle};
use fastsmtpd::relay::queue::RelayQueue;
use fastsmtpd::relay::schedule::RetryPolicy;
use fastsmtpd::relay::spool::{Envelope, Recipient, RecipientState, SpoolLimits};
use rustls::pki_types::CertificateDer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use util::process::ChildGuard;

/// The most any test waits for the mail to settle (a bound, not a measurement).
const SETTLE_WAIT: Duration = Duration::from_secs(60);

/// A CA made for one test, and a next hop certificate it signed for `localhost` and
/// `127.0.0.1`, as PEM files in `dir`.
struct Pki {
    /// The CA's certificate (PEM), for `--relay-ca`.
    ca_file: PathBuf,
    /// The CA's certificate (DER), for the library's `DeliveryConfig::ca`.
    ca: CertificateDer<'static>,
    /// The next hop's certificate and key (PEM), for the sink's `--tls-cert`/`--tls-key`.
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("relay test CA {}", dir.display()),
        );
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let ca_file = dir.join("ca.pem");
        let cert_file = dir.join("hop.pem");
        let key_file = dir.join("hop.key");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        std::fs::write(&cert_file, leaf.pem()).unwrap();
        std::fs::write(&key_file, leaf_key.serialize_pem()).unwrap();
        Pki {
            ca_file,
            ca: ca.der().clone(),
            cert_file,
            key_file,
        }
    }
}

/// A password file for the sink's `--auth file:`: `relay` with the password `s3cret`.
fn users_file(dir: &Path) -> PathBuf {
    let path = dir.join("users");
    std::fs::write(&path, "relay:{PLAIN}s3cret\n").unwrap();
    path
}

/// A sink next hop keeping every message as `.eml` (+ `.json` sidecar) and in a Maildir.
struct Sink {
    _child: ChildGuard,
    addr: SocketAddr,
    eml: PathBuf,
    maildir: PathBuf,
}

impl Sink {
    /// Starts a sink with `extra` flags (TLS, AUTH) in `dir`.
    fn start(dir: &Path, extra: &[&str]) -> Sink {
        let eml = dir.join("eml");
        let maildir = dir.join("maildir");
        let eml_store = format!("eml:{}", eml.display());
        let maildir_store = format!("maildir:{}", maildir.display());
        let mut args = vec!["--store", &eml_store, "--store", &maildir_store];
        args.extend_from_slice(extra);
        let (child, addr) = util::start_binary(1, &args);
        Sink {
            _child: child,
            addr,
            eml,
            maildir,
        }
    }

    /// The sidecar records of the messages kept so far.
    fn records(&self) -> Vec<serde_json::Value> {
        let Ok(entries) = std::fs::read_dir(&self.eml) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with('.'));
            if path.extension().is_some_and(|ext| ext == "json") && !hidden {
                if let Ok(Ok(record)) =
                    std::fs::read(&path).map(|bytes| serde_json::from_slice(&bytes))
                {
                    found.push(record);
                }
            }
        }
        found
    }

    /// The Maildir files kept so far (`new/`), as text.
    fn maildir_messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| std::fs::read(entry.path()).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect()
    }

    /// Waits (bounded) for `n` messages in both stores; returns the records and Maildir texts.
    #[track_caller]
    fn wait_for(&self, n: usize) -> (Vec<serde_json::Value>, Vec<String>) {
        let start = Instant::now();
        loop {
            let (records, texts) = (self.records(), self.maildir_messages());
            if records.len() >= n && texts.len() >= n {
                return (records, texts);
            }
            assert!(
                start.elapsed() < SETTLE_WAIT,
                "{} of {n} messages arrived",
                records.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A TCP proxy in front of a next hop that keeps every octet the relay sends through it.
struct Recorder {
    addr: SocketAddr,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start(target: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&sent);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                for stream in [&client, &server] {
                    stream.set_read_timeout(Some(SETTLE_WAIT)).unwrap();
                }
                let (mut from_client, mut to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let keep = Arc::clone(&keep);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 16 * 1024];
                    while let Ok(n) = from_client.read(&mut buffer) {
                        if n == 0 {
                            break;
                        }
                        keep.lock().unwrap().extend_from_slice(&buffer[..n]);
                        if to_server.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown(std::net::Shutdown::Write);
                });
                let (mut from_server, mut to_client) = (server, client);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 16 * 1024];
                    while let Ok(n) = from_server.read(&mut buffer) {
                        if n == 0 || to_client.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Recorder { addr, sent }
    }

    /// Everything the relay sent so far.
    fn sent(&self) -> Vec<u8> {
        self.sent.lock().unwrap().clone()
    }

    /// Whether the relay sent `needle` (in clear: TLS records never show it).
    fn saw(&self, needle: &[u8]) -> bool {
        self.sent()
            .windows(needle.len())
            .any(|window| window == needle)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A relay's delivery loop over a spool of its own, toward one next hop.
struct Relay {
    queue: Arc<RelayQueue>,
    handle: DeliveryHandle,
}

impl Relay {
    /// Starts a loop toward `hop` with `adjust` applied to its configuration (TLS, AUTH);
    /// one message `a@x.test` → `r@y.test` is spooled first.
    fn start(dir: &Path, hop: SocketAddr, adjust: impl FnOnce(&mut DeliveryConfig)) -> Relay {
        let (queue, recovered) =
            RelayQueue::open(&dir.join("spool"), SpoolLimits::default()).unwrap();
        let envelope = Envelope {
            arrival_unix_ms: unix_ms(),
            reverse_path: b"a@x.test".to_vec(),
            recipients: vec![Recipient {
                address: b"r@y.test".to_vec(),
                notify: Notify::default(),
                orcpt: None,
            }],
            ..Envelope::default()
        };
        let id = {
            let mut spool = queue.spool();
            let id = spool
                .append(&envelope, b"Subject: over TLS\r\n\r\nsecret body\r\n")
                .unwrap();
            spool.commit().unwrap();
            id
        };
        queue.committed(&[id]);
        let mut config = DeliveryConfig::new(vec![hop], "relay.test");
        config.retry = RetryPolicy::new(
            RetryPolicy::parse_list("30s").unwrap(),
            Duration::from_secs(600),
        )
        .unwrap();
        config.session_timeout = Some(Duration::from_secs(10));
        config.connect_timeout = Duration::from_secs(5);
        adjust(&mut config);
        let handle = Deliverer::start(Arc::clone(&queue), recovered, config).unwrap();
        Relay { queue, handle }
    }

    /// Waits (bounded) until the message's one recipient is deferred; its last reply.
    #[track_caller]
    fn wait_deferred(&self) -> String {
        let start = Instant::now();
        loop {
            let state = self
                .queue
                .spool()
                .live()
                .next()
                .map(|listed| listed.recipients[0].clone());
            match state {
                Some(RecipientState::Deferred { last_reply, .. }) => {
                    return String::from_utf8_lossy(&last_reply).into_owned();
                }
                Some(RecipientState::Pending) => {}
                other => panic!("not deferred: {other:?}"),
            }
            assert!(
                start.elapsed() < SETTLE_WAIT,
                "no deferral after {SETTLE_WAIT:?}: {:?}",
                self.handle.stats()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `Received:` line the next hop put on top of a Maildir file (folded lines joined).
fn received_line(text: &str) -> String {
    let mut field = String::new();
    for line in text
        .lines()
        .skip_while(|line| !line.starts_with("Received:"))
    {
        if !field.is_empty() && !line.starts_with([' ', '\t']) {
            break;
        }
        field.push_str(line.trim());
        field.push(' ');
    }
    field
}

fn credentials(password: &str) -> Option<Credentials> {
    Some(Credentials {
        user: "relay".into(),
        password: password.into(),
    })
}

#[test]
fn required_with_the_hops_ca_delivers_encrypted_and_verified() {
    let dir = util::scratch_dir("relay-tls-required");
    let pki = Pki::new(&dir.join("pki"));
    let sink = Sink::start(
        &dir.join("sink"),
        &[
            "--tls-cert",
            pki.cert_file.to_str().unwrap(),
            "--tls-key",
            pki.key_file.to_str().unwrap(),
        ],
    );
    let relay = Relay::start(&dir, sink.addr, |config| {
        config.tls = TlsPolicy::Required;
        config.ca = Some(vec![pki.ca.clone()]);
        // The name as --relay-to gives it: an IP literal, verified against the IP SAN.
    });
    let (records, texts) = sink.wait_for(1);
    assert_eq!(records[0]["rcpt_to"], serde_json::json!(["r@y.test"]));
    assert!(records[0]["tls"].is_object(), "{}", records[0]);
    assert!(records[0]["auth_user"].is_null());
    let received = received_line(&texts[0]);
    assert!(received.contains("with ESMTPS "), "{received}");
    assert!(texts[0].contains("secret body"));
    drop(relay);
}

#[test]
fn required_with_the_wrong_ca_defers_and_sends_nothing_of_the_message() {
    let dir = util::scratch_dir("relay-tls-wrong-ca");
    let pki = Pki::new(&dir.join("pki"));
    let other = Pki::new(&dir.join("other"));
    let sink = Sink::start(
        &dir.join("sink"),
        &[
            "--tls-cert",
            pki.cert_file.to_str().unwrap(),
            "--tls-key",
            pki.key_file.to_str().unwrap(),
        ],
    );
    let recorder = Recorder::start(sink.addr);
    let relay = Relay::start(&dir, recorder.addr, |config| {
        config.tls = TlsPolicy::Required;
        config.ca = Some(vec![other.ca.clone()]);
    });
    let reply = relay.wait_deferred();
    assert!(
        reply.starts_with("4.7.5 TLS handshake with the next hop failed: certificate not verified: unknown issuer"),
        "{reply}"
    );
    relay.handle.stop();
    assert!(recorder.saw(b"STARTTLS\r\n"));
    for never in [&b"MAIL FROM"[..], b"RCPT TO", b"secret body", b"AUTH"] {
        assert!(
            !recorder.saw(never),
            "{:?} went out: {:?}",
            String::from_utf8_lossy(never),
            String::from_utf8_lossy(&recorder.sent())
        );
    }
    assert!(sink.records().is_empty());
}

#[test]
fn required_toward_a_hop_without_starttls_defers() {
    let dir = util::scratch_dir("relay-tls-required-plain");
    let sink = Sink::start(&dir.join("sink"), &[]);
    let recorder = Recorder::start(sink.addr);
    let relay = Relay::start(&dir, recorder.addr, |config| {
        config.tls = TlsPolicy::Required;
    });
    let reply = relay.wait_deferred();
    assert_eq!(reply, "4.7.4 TLS is required, but was not offered");
    relay.handle.stop();
    assert!(!recorder.saw(b"MAIL FROM"));
    assert!(recorder.saw(b"QUIT\r\n"));
    assert!(sink.records().is_empty());
}

#[test]
fn an_expired_message_tells_its_sender_why_tls_failed_in_the_notification() {
    // TLS required toward a hop without STARTTLS until the lifetime ends: the failure
    // notification (spooled, itself held back by the same hop) names the TLS reason.
    let dir = util::scratch_dir("relay-tls-expiry");
    let sink = Sink::start(&dir.join("sink"), &[]);
    let relay = Relay::start(&dir, sink.addr, |config| {
        config.tls = TlsPolicy::Required;
        config.retry = RetryPolicy::new(
            RetryPolicy::parse_list("200ms").unwrap(),
            Duration::from_secs(2),
        )
        .unwrap();
    });
    let start = Instant::now();
    let notification = loop {
        let found = {
            let spool = relay.queue.spool();
            let places: Vec<_> = spool.live().map(|listed| listed.spool_ref).collect();
            places
                .iter()
                .filter_map(|place| spool.read_message(place).ok())
                .find(|(envelope, _)| envelope.reverse_path.is_empty())
        };
        if let Some((_, body)) = found {
            break String::from_utf8_lossy(&body).into_owned();
        }
        assert!(
            start.elapsed() < SETTLE_WAIT,
            "no notification: {:?}",
            relay.handle.stats()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    relay.handle.stop();
    assert!(notification.contains("Action: failed"), "{notification}");
    assert!(
        notification.contains("4.7.4 TLS is required, but was not offered"),
        "{notification}"
    );
    assert!(sink.records().is_empty(), "nothing went out in clear");
}

#[test]
fn opportunistic_encrypts_toward_a_self_signed_hop_and_goes_plain_without_starttls() {
    let dir = util::scratch_dir("relay-tls-opportunistic");
    let tls_sink = Sink::start(&dir.join("tls-sink"), &["--tls-self-signed"]);
    let relay = Relay::start(&dir.join("a"), tls_sink.addr, |config| {
        assert_eq!(
            config.tls,
            TlsPolicy::Opportunistic,
            "the library's default"
        );
    });
    let (records, texts) = tls_sink.wait_for(1);
    assert!(records[0]["tls"].is_object(), "{}", records[0]);
    assert!(received_line(&texts[0]).contains("with ESMTPS "));
    relay.handle.stop();

    let plain_sink = Sink::start(&dir.join("plain-sink"), &[]);
    let relay = Relay::start(&dir.join("b"), plain_sink.addr, |_| {});
    let (records, texts) = plain_sink.wait_for(1);
    assert!(records[0]["tls"].is_null(), "{}", records[0]);
    assert!(received_line(&texts[0]).contains("with ESMTP "));
    relay.handle.stop();
}

#[test]
fn credentials_authenticate_inside_tls_and_a_wrong_password_defers() {
    let dir = util::scratch_dir("relay-tls-auth");
    let users = users_file(&dir);
    let auth = format!("file:{}", users.display());
    let sink = Sink::start(&dir.join("sink"), &["--tls-self-signed", "--auth", &auth]);
    let relay = Relay::start(&dir.join("good"), sink.addr, |config| {
        config.credentials = credentials("s3cret");
    });
    let (records, texts) = sink.wait_for(1);
    assert_eq!(records[0]["auth_user"], "relay", "{}", records[0]);
    assert!(records[0]["tls"].is_object());
    assert!(received_line(&texts[0]).contains("with ESMTPSA "));
    relay.handle.stop();

    let relay = Relay::start(&dir.join("bad"), sink.addr, |config| {
        config.credentials = credentials("wrong");
    });
    let reply = relay.wait_deferred();
    assert!(reply.starts_with("535 "), "{reply}");
    relay.handle.stop();
    assert_eq!(sink.records().len(), 1, "nothing more arrived");
}

#[test]
fn credentials_toward_a_hop_that_offers_no_auth_defer() {
    let dir = util::scratch_dir("relay-tls-no-auth");
    let sink = Sink::start(&dir.join("sink"), &["--tls-self-signed"]);
    let relay = Relay::start(&dir, sink.addr, |config| {
        config.credentials = credentials("s3cret");
    });
    assert_eq!(
        relay.wait_deferred(),
        "4.7.0 the next hop offers no usable AUTH"
    );
    relay.handle.stop();
    assert!(sink.records().is_empty());
}

#[test]
fn credentials_toward_a_hop_without_tls_defer_and_auth_never_goes_out() {
    let dir = util::scratch_dir("relay-tls-auth-plain");
    let users = users_file(&dir);
    let auth = format!("file:{}", users.display());
    // A sink that offers AUTH in clear (no TLS at all, `--auth-plaintext`).
    let sink = Sink::start(&dir.join("sink"), &["--auth", &auth, "--auth-plaintext"]);
    let recorder = Recorder::start(sink.addr);
    let relay = Relay::start(&dir, recorder.addr, |config| {
        config.credentials = credentials("s3cret");
    });
    let reply = relay.wait_deferred();
    assert_eq!(reply, "4.7.0 credentials are never sent without TLS");
    relay.handle.stop();
    let sent = recorder.sent();
    assert!(sent.starts_with(b"EHLO relay.test\r\n"), "{sent:?}");
    for never in [&b"AUTH"[..], b"s3cret", b"MAIL FROM"] {
        assert!(!recorder.saw(never), "{:?}", String::from_utf8_lossy(&sent));
    }
    assert!(sink.records().is_empty());
}

/// What a [`ScriptedHop`] does after its `STARTTLS` is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStartTls {
    /// `454 4.7.0 TLS not available`, then goes on in plain text (and takes mail).
    Refuse,
    /// `220`, then, after the client's hello, octets that are no TLS record.
    Garbage,
    /// `220` and, in the same write, a reply as if in plain text (CVE-2011-0411's shape).
    Inject,
    /// `220`, then nothing.
    Silent,
}

/// A next hop written here (lock-step SMTP) that offers STARTTLS and then does `after`; it
/// keeps every line the relay sent in clear.
struct ScriptedHop {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ScriptedHop {
    fn start(after: AfterStartTls) -> ScriptedHop {
        use std::io::{BufRead, BufReader};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&lines);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let keep = Arc::clone(&keep);
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(SETTLE_WAIT)).unwrap();
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    let _ = writer.write_all(b"220 scripted.test ready\r\n");
                    let mut in_data = false;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        keep.lock().unwrap().push(line.clone());
                        if in_data {
                            if line == ".\r\n" {
                                in_data = false;
                                let _ = writer.write_all(b"250 2.0.0 kept\r\n");
                            }
                            continue;
                        }
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") {
                            b"250-scripted.test\r\n250 STARTTLS\r\n"
                        } else if upper.starts_with("STARTTLS") {
                            match after {
                                AfterStartTls::Refuse => b"454 4.7.0 TLS not available\r\n",
                                AfterStartTls::Garbage => {
                                    // After the client's hello, an answer that is no TLS.
                                    let _ = writer.write_all(b"220 go ahead\r\n");
                                    let mut hello = [0u8; 4096];
                                    let _ = reader.read(&mut hello);
                                    let _ = writer.write_all(b"this is no TLS record at all\r\n");
                                    while reader.read(&mut hello).unwrap_or(0) > 0 {}
                                    return;
                                }
                                AfterStartTls::Inject => b"220 go ahead\r\n250 injected\r\n",
                                AfterStartTls::Silent => {
                                    let _ = writer.write_all(b"220 go ahead\r\n");
                                    std::thread::sleep(SETTLE_WAIT);
                                    return;
                                }
                            }
                        } else if upper.starts_with("DATA") {
                            in_data = true;
                            b"354 go on\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = writer.write_all(b"221 bye\r\n");
                            return;
                        } else {
                            b"250 ok\r\n"
                        };
                        if writer.write_all(reply).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        ScriptedHop { addr, lines }
    }

    /// Whether a line the relay sent in clear starts with `prefix`.
    fn got(&self, prefix: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.starts_with(prefix))
    }

    /// Waits (bounded) until a line starting with `prefix` came.
    #[track_caller]
    fn wait_for(&self, prefix: &str) {
        let start = Instant::now();
        while !self.got(prefix) {
            assert!(
                start.elapsed() < SETTLE_WAIT,
                "no {prefix:?}: {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_refused_starttls_defers_under_required_and_goes_plain_under_opportunistic() {
    let dir = util::scratch_dir("relay-tls-refused");
    let hop = ScriptedHop::start(AfterStartTls::Refuse);
    let relay = Relay::start(&dir.join("required"), hop.addr, |config| {
        config.tls = TlsPolicy::Required;
    });
    assert_eq!(relay.wait_deferred(), "454 4.7.0 TLS not available");
    relay.handle.stop();
    assert!(hop.got("STARTTLS"));
    assert!(!hop.got("MAIL FROM"));

    let hop = ScriptedHop::start(AfterStartTls::Refuse);
    let relay = Relay::start(&dir.join("opportunistic"), hop.addr, |_| {});
    hop.wait_for("secret body");
    hop.wait_for("QUIT");
    assert!(hop.got("MAIL FROM:<a@x.test>"));
    relay.handle.stop();
}

#[test]
fn under_required_a_handshake_that_fails_is_answered_with_injection_or_times_out_defers() {
    let dir = util::scratch_dir("relay-tls-handshake");
    for (after, want) in [
        (
            AfterStartTls::Garbage,
            "4.7.5 TLS handshake with the next hop failed: ",
        ),
        (
            AfterStartTls::Inject,
            "4.5.0 lost sync with the next hop: the next hop sent octets after its 220 to STARTTLS",
        ),
        (
            AfterStartTls::Silent,
            "4.4.2 timed out waiting for the TLS handshake with the next hop",
        ),
    ] {
        let hop = ScriptedHop::start(after);
        let relay = Relay::start(&dir.join(format!("{after:?}")), hop.addr, |config| {
            config.tls = TlsPolicy::Required;
            config.session_timeout = Some(Duration::from_secs(1));
        });
        let reply = relay.wait_deferred();
        assert!(reply.starts_with(want), "{after:?}: {reply}");
        relay.handle.stop();
        assert!(hop.got("STARTTLS"), "{after:?}");
        assert!(!hop.got("MAIL FROM"), "{after:?}");
    }
}

/// Opportunistic TLS whose handshake fails goes on in plain text on a new connection, as
/// Postfix does; not with credentials, which never go out in clear.
#[test]
fn under_opportunistic_a_failed_handshake_falls_back_to_plain_text_without_credentials() {
    let dir = util::scratch_dir("relay-tls-fallback");
    for after in [AfterStartTls::Garbage, AfterStartTls::Silent] {
        let hop = ScriptedHop::start(after);
        let relay = Relay::start(&dir.join(format!("{after:?}")), hop.addr, |config| {
            config.session_timeout = Some(Duration::from_secs(1));
        });
        hop.wait_for("secret body");
        hop.wait_for("QUIT");
        assert!(hop.got("MAIL FROM:<a@x.test>"), "{after:?}");
        relay.handle.stop();
    }
    let hop = ScriptedHop::start(AfterStartTls::Garbage);
    let relay = Relay::start(&dir.join("credentials"), hop.addr, |config| {
        config.credentials = credentials("s3cret");
    });
    assert_eq!(
        relay.wait_deferred(),
        "4.7.0 credentials are never sent without TLS"
    );
    relay.handle.stop();
    for never in ["AUTH", "MAIL FROM"] {
        assert!(!hop.got(never), "{never}");
    }
}

/// The relay binary: `--relay-tls required --relay-ca FILE --relay-auth file:PATH` toward
/// `localhost:PORT` (a DNS name, verified against the certificate's DNS SAN).
#[test]
fn the_binary_relays_with_required_tls_a_ca_file_and_credentials_from_a_file() {
    let dir = util::scratch_dir("relay-tls-binary");
    let pki = Pki::new(&dir.join("pki"));
    let users = users_file(&dir);
    let auth = format!("file:{}", users.display());
    let sink = Sink::start(
        &dir.join("sink"),
        &[
            "--tls-cert",
            pki.cert_file.to_str().unwrap(),
            "--tls-key",
            pki.key_file.to_str().unwrap(),
            "--auth",
            &auth,
        ],
    );
    let credentials = dir.join("relay-credentials");
    std::fs::write(&credentials, "relay:s3cret\n").unwrap();
    let spool = dir.join("spool");
    let next_hop = format!("localhost:{}", sink.addr.port());
    let relay_auth = format!("file:{}", credentials.display());
    let (relay, relay_addr) = util::start_binary(
        1,
        &[
            "--spool",
            spool.to_str().unwrap(),
            "--relay-to",
            &next_hop,
            "--relay-tls",
            "required",
            "--relay-ca",
            pki.ca_file.to_str().unwrap(),
            "--relay-auth",
            &relay_auth,
            "--retry",
            "200ms",
        ],
    );
    let mut client = util::Client::connect(relay_addr);
    assert!(client.read_reply().starts_with("220 "));
    client.send("EHLO client.test\r\n");
    assert!(client.read_reply().starts_with("250"));
    client.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<r@y.test>\r\nDATA\r\n");
    assert!(client.read_reply().starts_with("250 "));
    assert!(client.read_reply().starts_with("250 "));
    assert!(client.read_reply().starts_with("354 "));
    client.send("Subject: through\r\n\r\nbody\r\n.\r\n");
    assert!(client.read_reply().starts_with("250 "));
    client.send("QUIT\r\n");
    let (records, texts) = sink.wait_for(1);
    assert_eq!(records[0]["auth_user"], "relay");
    assert_eq!(records[0]["tls"]["sni"], "localhost", "{}", records[0]);
    assert!(received_line(&texts[0]).contains("with ESMTPSA "));
    assert!(!relay.stderr().contains("s3cret"));
}

/// The start is refused, with exit status 2 and one line saying why, for `--relay-tls off`
/// with credentials, a CA file that cannot be used, a CA that nothing would use, and
/// credentials that are no pair; the password is never repeated.
#[test]
fn the_binary_refuses_to_start_with_tls_flags_that_cannot_work() {
    let dir = util::scratch_dir("relay-tls-refusals");
    let spool = dir.join("spool");
    let spool = spool.to_str().unwrap();
    let empty_ca = dir.join("empty.pem");
    std::fs::write(&empty_ca, "nothing\n").unwrap();
    let empty_ca = empty_ca.to_str().unwrap();
    let base = ["--spool", spool, "--relay-to", "127.0.0.1:25"];
    let cases: [(&[&str], &str); 6] = [
        (
            &["--relay-tls", "off", "--relay-auth", "relay:s3cret"],
            "fastsmtpd: error: --relay-auth with --relay-tls off: credentials are never sent in clear",
        ),
        (
            &["--relay-tls", "required", "--relay-ca", "/nonexistent/ca.pem"],
            "fastsmtpd: error: --relay-ca /nonexistent/ca.pem: ",
        ),
        (
            &["--relay-tls", "required", "--relay-ca", empty_ca],
            "no certificate in it",
        ),
        (
            &["--relay-ca", empty_ca],
            "no certificate in it",
        ),
        (
            &["--relay-auth", "relays3cret"],
            "fastsmtpd: error: --relay-auth: expected USER:PASSWORD (or file:PATH), found no colon",
        ),
        (
            &["--relay-tls", "sometimes"],
            "--relay-tls",
        ),
    ];
    for (flags, want) in cases {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
        command
            .args(["--listen", &util::free_local_addr()])
            .args(base)
            .args(flags);
        let output = util::process::run_bounded(command, None, Duration::from_secs(30));
        let stderr = &output.stderr;
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(want), "{flags:?}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{flags:?}: {stderr}");
    }
    // A usable CA with a policy that would not use it.
    let pki = Pki::new(&dir.join("pki"));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command
        .args(["--listen", &util::free_local_addr()])
        .args(base)
        .args(["--relay-ca", pki.ca_file.to_str().unwrap()]);
    let output = util::process::run_bounded(command, None, Duration::from_secs(30));
    let stderr = &output.stderr;
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--relay-ca needs --relay-tls required"),
        "{stderr}"
    );
}
