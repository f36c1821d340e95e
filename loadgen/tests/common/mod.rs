//! Shared helpers for smtp-loadgen's integration tests: run the real binary as a child, read
//! its `--json` results, and a scripted stub SMTP server whose behaviour each test chooses
//! (STARTTLS with a self-signed certificate and AUTH PLAIN/LOGIN included, until fastsmtpd
//! has its own).
//!
//! Every wait is bounded (a broken generator fails the test instead of hanging it); no
//! assertion here is about speed.
#![allow(dead_code)] // each test file uses a different subset

use base64::Engine as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a single smtp-loadgen run may take before the test kills it and fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(90);

/// What a finished smtp-loadgen run left behind.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output (the summary).
    pub stdout: String,
    /// Standard error (progress lines, errors).
    pub stderr: String,
    /// The `--json` document, when the run wrote one.
    pub json: Option<serde_json::Value>,
}

impl Run {
    /// The JSON document; panics with the run's output if there is none.
    #[track_caller]
    pub fn json(&self) -> &serde_json::Value {
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON written; run: {self:#?}"))
    }

    /// `totals.<key>` as a number.
    #[track_caller]
    pub fn total(&self, key: &str) -> u64 {
        self.json()["totals"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("totals.{key} missing in {:#}", self.json()["totals"]))
    }

    /// How many replies `code` the stage `stage` got (`totals.codes["stage:code"]`), 0 if none.
    pub fn code_count(&self, stage: &str, code: u16) -> u64 {
        self.json()["totals"]["codes"][format!("{stage}:{code}")]
            .as_u64()
            .unwrap_or(0)
    }

    /// Errors of `kind` counted, 0 if none.
    pub fn errors(&self, kind: &str) -> u64 {
        self.json()["totals"]["errors"][kind].as_u64().unwrap_or(0)
    }

    /// A latency figure in milliseconds: `latency.<stage>.<field>` (e.g. `p99_ms`).
    #[track_caller]
    pub fn latency_ms(&self, stage: &str, field: &str) -> f64 {
        self.json()["latency"][stage][field]
            .as_f64()
            .unwrap_or_else(|| panic!("latency.{stage}.{field} missing: {:#}", self.json()))
    }

    /// Asserts the run succeeded with no connection-level errors.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert_eq!(self.code, 0, "run failed: {self:#?}");
        let errors = &self.json()["totals"]["errors"];
        assert!(
            errors.as_object().is_none_or(|e| e.is_empty()),
            "errors: {errors}\n{}",
            self.stdout
        );
    }
}

/// A unique scratch path for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("smtp-loadgen-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir.join(name)
}

/// Runs the binary with `args` and waits (bounded by [`RUN_LIMIT`]).
#[track_caller]
pub fn run_binary(args: &[String]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_smtp-loadgen"));
    command.args(args);
    let (status, stdout, stderr) = run_bounded(command, RUN_LIMIT);
    (status.code().unwrap_or(-1), stdout, stderr)
}

/// Runs `command` (stdin null) to its exit and returns its status, stdout and stderr. Past
/// `limit` the child is killed and the test fails, naming the program and its stderr. A
/// program that cannot be started fails the test too.
#[track_caller]
pub fn run_bounded(command: Command, limit: Duration) -> (ExitStatus, String, String) {
    let program = format!("{:?}", command.get_program());
    try_run_bounded(command, limit).unwrap_or_else(|e| panic!("could not start {program}: {e}"))
}

/// [`run_bounded`], but a program that cannot be started is an `Err` (for optional tools).
#[track_caller]
pub fn try_run_bounded(
    mut command: Command,
    limit: Duration,
) -> std::io::Result<(ExitStatus, String, String)> {
    let program = format!("{:?}", command.get_program());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{program} {:?} ran past {limit:?} and was killed; stderr: {}",
                command.get_args().collect::<Vec<_>>(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok((status, stdout, stderr))
}

/// Runs a load against `target` with `args`, collecting the `--json` results.
#[track_caller]
pub fn loadgen(target: SocketAddr, args: &[&str]) -> Run {
    loadgen_within(target, args, RUN_LIMIT)
}

/// [`loadgen`], killed (and the test failed) past `limit`: for runs that must end by
/// themselves well before it (a hang is the failure, not a slow machine).
#[track_caller]
pub fn loadgen_within(target: SocketAddr, args: &[&str], limit: Duration) -> Run {
    let json_path = scratch("results.json");
    let mut all: Vec<String> = vec![
        "--target".into(),
        target.to_string(),
        "--quiet".into(),
        "--json".into(),
        json_path.display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_smtp-loadgen"));
    command.args(&all);
    let (status, stdout, stderr) = run_bounded(command, limit);
    let code = status.code().unwrap_or(-1);
    let json = std::fs::read_to_string(&json_path)
        .ok()
        .map(|text| serde_json::from_str(&text).expect("the --json file is valid JSON"));
    Run {
        code,
        stdout,
        stderr,
        json,
    }
}

/// What the stub server does; each test sets what it needs.
#[derive(Debug, Clone)]
pub struct StubScript {
    /// Write every reply in small pieces with pauses between them, so the client sees
    /// multi-line replies (and single lines) split across reads.
    pub split_replies: bool,
    /// Refuse every Nth `RCPT` (counted over the whole server, from 1) with this reply.
    pub refuse_rcpt: Option<(u64, &'static str)>,
    /// After the Nth accepted message (over the whole server), hold every reply on every
    /// connection for this long, once: a whole-server stall.
    pub stall: Option<(u64, Duration)>,
    /// Advertise PIPELINING.
    pub pipelining: bool,
    /// Offer STARTTLS (a self-signed certificate for `stub.test`); AUTH is then offered only
    /// inside TLS, as servers do.
    pub starttls: bool,
    /// Reply to STARTTLS with this instead of `220` (and stay in plaintext).
    pub starttls_refusal: Option<&'static str>,
    /// Send these bytes right behind the `220` to STARTTLS, in the same write.
    pub after_starttls: Option<&'static str>,
    /// Offer AUTH with these mechanisms (`"PLAIN LOGIN"`); MAIL then needs AUTH first.
    pub auth: Option<&'static str>,
    /// The password AUTH accepts for the user `user`.
    pub password: &'static str,
    /// Serve at most this many messages per second: each end-of-data reply waits for its
    /// turn at one server-wide worker taking 1/capacity seconds per message (in arrival
    /// order). Below this rate replies come at once; past it they queue without bound: a
    /// designed knee.
    pub capacity: Option<f64>,
    /// Answer `QUIT` with `221` and keep the connection open until the client closes it
    /// (RFC 5321 §4.1.1.10 has the server close; this one does not).
    pub hold_after_quit: bool,
    /// Never greet: accept and hold the connection until the client closes it.
    pub silent: bool,
}

impl Default for StubScript {
    fn default() -> Self {
        StubScript {
            split_replies: false,
            refuse_rcpt: None,
            stall: None,
            pipelining: true,
            starttls: false,
            starttls_refusal: None,
            after_starttls: None,
            auth: None,
            password: "pass",
            capacity: None,
            hold_after_quit: false,
            silent: false,
        }
    }
}

/// What the stub saw.
#[derive(Debug, Default)]
pub struct StubCounts {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Messages accepted with 250 after the dot.
    pub messages: AtomicU64,
    /// `RCPT` commands received.
    pub rcpts: AtomicU64,
    /// `RCPT` commands refused by the script.
    pub refused_rcpts: AtomicU64,
    /// TLS sessions begun after STARTTLS (handshake done, a command read inside).
    pub tls_sessions: AtomicU64,
    /// Successful AUTH exchanges.
    pub auths: AtomicU64,
    /// Connections the client closed after the `221` ([`StubScript::hold_after_quit`]) or
    /// while waiting for the greeting ([`StubScript::silent`]).
    pub closed_by_client: AtomicU64,
}

/// A scripted SMTP server on 127.0.0.1: one thread per connection, plain blocking I/O,
/// written to be obviously right rather than fast.
pub struct Stub {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub counts: Arc<StubCounts>,
}

/// The time until which every reply is held (a stall in progress), shared by connections.
type StallClock = Arc<Mutex<Option<Instant>>>;

/// When the server-wide worker of [`StubScript::capacity`] is next free.
type CapacityClock = Arc<Mutex<Instant>>;

impl Stub {
    /// Starts a stub following `script`. It runs until the test process ends.
    pub fn start(script: StubScript) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind stub");
        let addr = listener.local_addr().expect("stub address");
        let counts = Arc::new(StubCounts::default());
        let stall_until: StallClock = Arc::new(Mutex::new(None));
        let worker_free: CapacityClock = Arc::new(Mutex::new(Instant::now()));
        let shared = Arc::clone(&counts);
        let tls = script.starttls.then(stub_tls_config);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                shared.connections.fetch_add(1, Ordering::Relaxed);
                let script = script.clone();
                let counts = Arc::clone(&shared);
                let stall_until = Arc::clone(&stall_until);
                let tls = tls.clone();
                let worker_free = Arc::clone(&worker_free);
                std::thread::spawn(move || {
                    let _ = serve(stream, &script, &counts, &stall_until, &worker_free, tls);
                });
            }
        });
        Stub { addr, counts }
    }

    /// Messages the stub accepted.
    pub fn messages(&self) -> u64 {
        self.counts.messages.load(Ordering::SeqCst)
    }
}

/// A server configuration with a certificate for `stub.test`, signed by its own key.
fn stub_tls_config() -> Arc<rustls::ServerConfig> {
    let made = rcgen::generate_simple_self_signed(vec!["stub.test".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(made.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .unwrap();
    Arc::new(config)
}

/// One stub connection: a plaintext session, then the TLS one if it said STARTTLS.
fn serve(
    stream: TcpStream,
    script: &StubScript,
    counts: &StubCounts,
    stall_until: &StallClock,
    worker_free: &CapacityClock,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut stub = Session {
        script,
        counts,
        stall_until,
        worker_free,
        in_tls: false,
        authenticated: false,
    };
    if let Some(tcp) = stub.run(stream, true)? {
        // RFC 3207 §4.2: whatever the client sent behind STARTTLS is gone with the plaintext
        // reader; the TLS session starts over without a greeting.
        let connection = rustls::ServerConnection::new(tls.expect("STARTTLS offered"))
            .map_err(std::io::Error::other)?;
        stub.in_tls = true;
        stub.run(rustls::StreamOwned::new(connection, tcp), false)?;
    }
    Ok(())
}

/// One stub session's state.
struct Session<'a> {
    /// What the stub does.
    script: &'a StubScript,
    /// What it saw.
    counts: &'a StubCounts,
    /// A whole-server stall in progress.
    stall_until: &'a StallClock,
    /// When the capacity-limited worker is next free.
    worker_free: &'a CapacityClock,
    /// Whether the session runs inside TLS.
    in_tls: bool,
    /// Whether AUTH succeeded.
    authenticated: bool,
}

impl Session<'_> {
    /// Writes a reply (held during a stall, cut into pieces with `split_replies`).
    fn reply<S: Write>(&self, writer: &mut S, text: &str) -> std::io::Result<()> {
        // A stall in progress holds every reply, as a server stuck in a GC pause or on a
        // disk would.
        let until = *self.stall_until.lock().unwrap();
        if let Some(until) = until {
            let now = Instant::now();
            if until > now {
                std::thread::sleep(until - now);
            }
        }
        if self.script.split_replies {
            // Cut inside the code, inside the text, and at each line break.
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = vec![0, 2.min(bytes.len())];
            cuts.extend(
                bytes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &b)| (b == b'\n' && i + 1 < bytes.len()).then_some(i + 1)),
            );
            cuts.push(bytes.len().saturating_sub(3));
            cuts.push(bytes.len());
            cuts.sort_unstable();
            cuts.dedup();
            for pair in cuts.windows(2) {
                writer.write_all(&bytes[pair[0]..pair[1]])?;
                writer.flush()?;
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        } else {
            writer.write_all(text.as_bytes())?;
            writer.flush()
        }
    }

    /// Runs a session over `stream` (greeting first if `greet`) until QUIT or the end of the
    /// stream; returns the stream if the client said STARTTLS and got its `220`.
    fn run<S: Read + Write>(&mut self, stream: S, greet: bool) -> std::io::Result<Option<S>> {
        let script = self.script;
        let counts = self.counts;
        let mut reader = BufReader::new(stream);
        if greet && script.silent {
            self.wait_for_close(&mut reader)?;
            return Ok(None);
        }
        if greet {
            self.reply(
                reader.get_mut(),
                "220-stub.test greets you\r\n220 stub.test ESMTP stub\r\n",
            )?;
        }
        let mut line = Vec::new();
        let mut recipients = 0u32;
        let mut first_command = true;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(None);
            }
            if first_command && self.in_tls {
                counts.tls_sessions.fetch_add(1, Ordering::SeqCst);
            }
            first_command = false;
            let text = String::from_utf8_lossy(&line).into_owned();
            let upper = text.to_ascii_uppercase();
            let verb = upper.split([' ', '\r', '\n']).next().unwrap_or("");
            match verb {
                "EHLO" => {
                    let mut ehlo = String::from("250-stub.test\r\n250-8BITMIME\r\n");
                    if script.pipelining {
                        ehlo.push_str("250-PIPELINING\r\n");
                    }
                    if script.starttls && !self.in_tls {
                        ehlo.push_str("250-STARTTLS\r\n");
                    }
                    if let Some(mechanisms) = script.auth {
                        if self.in_tls || !script.starttls {
                            ehlo.push_str(&format!("250-AUTH {mechanisms}\r\n"));
                        }
                    }
                    ehlo.push_str("250 ENHANCEDSTATUSCODES\r\n");
                    self.reply(reader.get_mut(), &ehlo)?;
                }
                "HELO" => self.reply(reader.get_mut(), "250 stub.test\r\n")?,
                "STARTTLS" if script.starttls && !self.in_tls => {
                    if let Some(refusal) = script.starttls_refusal {
                        self.reply(reader.get_mut(), refusal)?;
                        continue;
                    }
                    let mut ready = String::from("220 2.0.0 Ready to start TLS\r\n");
                    ready.push_str(script.after_starttls.unwrap_or(""));
                    self.reply(reader.get_mut(), &ready)?;
                    return Ok(Some(reader.into_inner()));
                }
                "AUTH" if script.auth.is_some() && !self.authenticated => {
                    let ok = self.auth(&mut reader, &text)?;
                    if ok {
                        self.authenticated = true;
                        counts.auths.fetch_add(1, Ordering::SeqCst);
                        self.reply(reader.get_mut(), "235 2.7.0 Authentication successful\r\n")?;
                    } else {
                        self.reply(
                            reader.get_mut(),
                            "535 5.7.8 Authentication credentials invalid\r\n",
                        )?;
                    }
                }
                "MAIL" if script.auth.is_some() && !self.authenticated => {
                    self.reply(reader.get_mut(), "530 5.7.0 Authentication required\r\n")?;
                }
                "MAIL" => {
                    recipients = 0;
                    self.reply(reader.get_mut(), "250 2.1.0 Ok\r\n")?;
                }
                "RCPT" => {
                    let n = counts.rcpts.fetch_add(1, Ordering::SeqCst) + 1;
                    match script.refuse_rcpt {
                        Some((every, refusal)) if n % every == 0 => {
                            counts.refused_rcpts.fetch_add(1, Ordering::SeqCst);
                            self.reply(reader.get_mut(), refusal)?;
                        }
                        _ => {
                            recipients += 1;
                            self.reply(reader.get_mut(), "250 2.1.5 Ok\r\n")?;
                        }
                    }
                }
                "DATA" => {
                    if recipients == 0 {
                        // RFC 2920 §3.1: with no valid recipient, DATA is refused.
                        self.reply(reader.get_mut(), "554 5.5.1 No valid recipients\r\n")?;
                        continue;
                    }
                    self.reply(reader.get_mut(), "354 End data with <CR><LF>.<CR><LF>\r\n")?;
                    loop {
                        line.clear();
                        if reader.read_until(b'\n', &mut line)? == 0 {
                            return Ok(None);
                        }
                        if line == b".\r\n" {
                            break;
                        }
                    }
                    let n = counts.messages.fetch_add(1, Ordering::SeqCst) + 1;
                    if let Some((after, pause)) = script.stall {
                        if n == after {
                            *self.stall_until.lock().unwrap() = Some(Instant::now() + pause);
                        }
                    }
                    if let Some(capacity) = script.capacity {
                        let done = {
                            let mut free = self.worker_free.lock().unwrap();
                            *free = (*free).max(Instant::now())
                                + Duration::from_secs_f64(1.0 / capacity);
                            *free
                        };
                        std::thread::sleep(done.saturating_duration_since(Instant::now()));
                    }
                    recipients = 0;
                    self.reply(reader.get_mut(), "250 2.0.0 Ok: queued\r\n")?;
                }
                "RSET" => {
                    recipients = 0;
                    self.reply(reader.get_mut(), "250 2.0.0 Ok\r\n")?;
                }
                "NOOP" => self.reply(reader.get_mut(), "250 2.0.0 Ok\r\n")?,
                "QUIT" => {
                    self.reply(reader.get_mut(), "221 2.0.0 Bye\r\n")?;
                    if script.hold_after_quit {
                        self.wait_for_close(&mut reader)?;
                    }
                    return Ok(None);
                }
                _ => self.reply(reader.get_mut(), "502 5.5.2 Command not recognised\r\n")?,
            }
        }
    }

    /// Holds the connection, reading and dropping whatever comes, until the client closes
    /// it (counted) or the read timeout ends the wait.
    fn wait_for_close<S: Read>(&self, reader: &mut BufReader<S>) -> std::io::Result<()> {
        let mut sink = [0u8; 512];
        while reader.read(&mut sink)? > 0 {}
        self.counts.closed_by_client.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The AUTH exchange (RFC 4954) for the command line `command`: PLAIN with or without an
    /// initial response, LOGIN with its two challenges. Whether the credentials are
    /// `user` and the script's password.
    fn auth<S: Read + Write>(
        &self,
        reader: &mut BufReader<S>,
        command: &str,
    ) -> std::io::Result<bool> {
        let decode = |text: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .unwrap_or_default()
        };
        let mut response = |challenge: &str| -> std::io::Result<Vec<u8>> {
            self.reply(reader.get_mut(), challenge)?;
            let mut line = String::new();
            reader.read_line(&mut line)?;
            Ok(decode(&line))
        };
        let mut words = command.split_whitespace().skip(1);
        let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
        let offered = self
            .script
            .auth
            .unwrap_or("")
            .split(' ')
            .any(|m| m == mechanism);
        let password = self.script.password.as_bytes();
        Ok(match (offered, mechanism.as_str(), words.next()) {
            (true, "PLAIN", initial) => {
                let plain = match initial {
                    Some(initial) => decode(initial),
                    None => response("334 \r\n")?,
                };
                plain == [&b"\0user\0"[..], password].concat()
            }
            (true, "LOGIN", None) => {
                let user = response("334 VXNlcm5hbWU6\r\n")?;
                let pass = response("334 UGFzc3dvcmQ6\r\n")?;
                user == b"user" && pass == password
            }
            _ => false,
        })
    }
}

/// The longest a headless Chromium may take to load and dump a page.
pub const CHROMIUM_LIMIT: Duration = Duration::from_secs(120);

/// The headless Chromium to use; fails the test, saying what to install, if there is none.
pub fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser"] {
        let works = Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success());
        if works {
            return name;
        }
    }
    panic!(
        "headless Chromium is needed to check the HTML report and was not found on PATH: \
         install it (Debian: `apt-get install chromium`; CI's .ci/run installs it)"
    );
}

/// Opens `page` in headless Chromium; returns the DOM after its scripts ran and what
/// Chromium logged (console messages appear as `INFO:CONSOLE` lines).
pub fn dump_dom(page: &std::path::Path) -> (String, String) {
    let profile = scratch("chromium-profile");
    let mut command = Command::new(chromium());
    command.args([
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        &format!("--user-data-dir={}", profile.display()),
        "--dump-dom",
        &format!("file://{}", page.display()),
    ]);
    let (status, stdout, stderr) = run_bounded(command, CHROMIUM_LIMIT);
    assert!(status.success(), "chromium failed: {status}\n{stderr}");
    (stdout, stderr)
}
