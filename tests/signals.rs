//! Signals on the real binary: SIGHUP reopens the JSON-lines files and disturbs no session,
//! and reloads the TLS certificate and the password file (new connections get the new ones; a
//! broken or mismatched key keeps the old certificate); SIGUSR1 prints the stats line, SIGUSR2
//! is ignored, and SIGINT/SIGTERM shut down gracefully with a second one exiting at once with
//! the conventional status (128 + signal number).
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

/// A new certificate for `mx.test`: its PEM, its key's PEM and its SHA-256 (hex).
fn certificate() -> (String, String, String) {
    use sha2::{Digest, Sha256};
    let made = rcgen::generate_simple_self_signed(vec!["mx.test".to_string()]).unwrap();
    let fingerprint = Sha256::digest(made.cert.der())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    (made.cert.pem(), made.key_pair.serialize_pem(), fingerprint)
}

/// Replaces `path`'s contents at once (written aside, then renamed over it, as an operator
/// or a certificate tool does).
fn replace(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// For each `(user, password)`, a new connection to `addr` that does STARTTLS (Python's
/// `ssl`, not verifying) and AUTH: returns `cert <SHA-256 of the served certificate>` and
/// `<user> <reply code>` lines.
#[track_caller]
fn starttls_logins(addr: SocketAddr, logins: &[(&str, &str)]) -> Vec<String> {
    let script = r#"
import hashlib, smtplib, ssl, sys
ctx = ssl._create_unverified_context()
args = sys.argv[2:]
for user, password in zip(args[0::2], args[1::2]):
    s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
    s.starttls(context=ctx)
    print("cert", hashlib.sha256(s.sock.getpeercert(binary_form=True)).hexdigest())
    try:
        code = s.login(user, password)[0]
    except smtplib.SMTPAuthenticationError as e:
        code = e.smtp_code
    print(user, code)
    s.quit()
"#;
    let mut command = util::process::PYTHON3.command();
    command.args(["-c", script, &addr.port().to_string()]);
    for (user, password) in logins {
        command.args([user, password]);
    }
    let output = util::process::run_bounded(command, None, util::process::CHILD_LIMIT);
    output.assert_success("python3 smtplib STARTTLS + AUTH");
    output.stdout_lines()
}

/// Sends SIGHUP and returns the server's `SIGHUP:` lines up to the password file's, which it
/// prints last.
#[track_caller]
fn sighup_lines(server: &mut Spawned) -> Vec<String> {
    server.signal(libc::SIGHUP);
    let mut lines = Vec::new();
    loop {
        let line = server.line_containing("SIGHUP:").trim_end().to_string();
        let last = line.contains("password file");
        lines.push(line);
        if last {
            return lines;
        }
    }
}

/// Waits (bounded) until the server's stderr holds `needle` `times` times; returns it.
#[track_caller]
fn stderr_with(server: &Spawned, needle: &str, times: usize) -> String {
    let start = Instant::now();
    loop {
        let stderr = server.child.stderr();
        if stderr.matches(needle).count() >= times {
            return stderr;
        }
        assert!(
            start.elapsed() < REPLY_WAIT,
            "stderr never said {needle:?} {times} times: {stderr:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_the_certificate_and_the_password_file_and_keeps_them_on_a_bad_key() {
    let dir = scratch_dir("hup-tls");
    let (cert_path, key_path, users) =
        (dir.join("cert.pem"), dir.join("key.pem"), dir.join("users"));
    let (cert_a, key_a, sha_a) = certificate();
    std::fs::write(&cert_path, &cert_a).unwrap();
    std::fs::write(&key_path, &key_a).unwrap();
    let stays = bcrypt::hash("stays-pass", 4).unwrap();
    std::fs::write(&users, format!("old:{{PLAIN}}old-pass\nstays:{stays}\n")).unwrap();
    let mut server = Spawned::start(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
        "--auth",
        &format!("file:{}", users.display()),
    ]);
    let logins = [
        ("old", "old-pass"),
        ("stays", "stays-pass"),
        ("new", "new-pass"),
    ];
    let served = |sha: &str, codes: [u16; 3]| -> Vec<String> {
        logins
            .iter()
            .zip(codes)
            .flat_map(|((user, _), code)| [format!("cert {sha}"), format!("{user} {code}")])
            .collect()
    };
    assert_eq!(
        starttls_logins(server.addr, &logins),
        served(&sha_a, [235, 235, 535])
    );

    // New certificate and key; `old` removed, `new` added (Argon2id). SIGHUP.
    let (cert_b, key_b, sha_b) = certificate();
    replace(&cert_path, &cert_b);
    replace(&key_path, &key_b);
    let new_hash = {
        use argon2::password_hash::{PasswordHasher as _, SaltString};
        argon2::Argon2::default()
            .hash_password(b"new-pass", &SaltString::encode_b64(b"a new salt").unwrap())
            .unwrap()
            .to_string()
    };
    replace(&users, &format!("stays:{stays}\nnew:{new_hash}\n"));
    let reloaded = [
        "fastsmtpd: SIGHUP: reopened 0 store files",
        "fastsmtpd: SIGHUP: reloaded the TLS certificate",
        "fastsmtpd: SIGHUP: reloaded the password file (2 users)",
    ];
    assert_eq!(sighup_lines(&mut server), reloaded);
    assert_eq!(
        starttls_logins(server.addr, &logins),
        served(&sha_b, [535, 235, 235])
    );

    // A key file that is not a key, with a new certificate: the old pair stays, said on
    // stderr; the password file still reloads.
    let kept_users = [reloaded[0], reloaded[2]];
    let (cert_c, key_c, sha_c) = certificate();
    replace(&cert_path, &cert_c);
    replace(
        &key_path,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    );
    assert_eq!(sighup_lines(&mut server), kept_users);
    // The error names the files (the operator sees nothing else).
    let refused = format!(
        "fastsmtpd: SIGHUP: TLS: --tls-cert {}, --tls-key {}: ",
        cert_path.display(),
        key_path.display()
    );
    let stderr = stderr_with(&server, &refused, 1);
    assert!(
        stderr.contains("(the old certificate stays)\n"),
        "{stderr:?}"
    );
    assert_eq!(
        starttls_logins(server.addr, &logins[1..]),
        served(&sha_b, [535, 235, 235])[2..]
    );

    // A real key, but not the certificate's (a rotation caught half-way): refused the same.
    let (_, key_d, _) = certificate();
    replace(&key_path, &key_d);
    assert_eq!(sighup_lines(&mut server), kept_users);
    stderr_with(&server, &refused, 2);
    assert_eq!(
        starttls_logins(server.addr, &logins[1..2]),
        served(&sha_b, [535, 235, 235])[2..4]
    );

    // The matching key: the new certificate at last.
    replace(&key_path, &key_c);
    assert_eq!(sighup_lines(&mut server), reloaded);
    assert_eq!(
        starttls_logins(server.addr, &logins[1..2]),
        served(&sha_c, [535, 235, 235])[2..4]
    );
    stop_gracefully(server, 0);
}

/// Reviewer B, F9: a password file whose hashes differ in cost lets the answer time tell
/// users apart (bcrypt cost 5 answers in milliseconds, unknown users as slowly as the
/// common cost). The server says so on stderr, naming the users by group, at start and
/// after each SIGHUP that loads such a file (not after one that loads a uniform file).
#[test]
fn a_password_file_of_mixed_costs_is_named_at_start_and_on_sighup() {
    let dir = scratch_dir("hup-costs");
    let users = dir.join("users");
    let (cost4, cost5) = (bcrypt::hash("x", 4).unwrap(), bcrypt::hash("y", 5).unwrap());
    std::fs::write(
        &users,
        format!("alice:{cost4}\nbob:{cost5}\ncarol:{cost4}\n"),
    )
    .unwrap();
    let mut server = Spawned::start(&[
        "--auth",
        &format!("file:{}", users.display()),
        "--auth-plaintext",
    ]);
    let warning = "fastsmtpd: warning: --auth: the password hashes differ in algorithm or cost (bcrypt cost 4: alice, carol; bcrypt cost 5: bob): ";
    stderr_with(&server, warning, 1);
    // All alike: reloaded without a warning.
    replace(&users, &format!("alice:{cost4}\nbob:{cost4}\n"));
    assert_eq!(
        sighup_lines(&mut server),
        [
            "fastsmtpd: SIGHUP: reopened 0 store files",
            "fastsmtpd: SIGHUP: reloaded the password file (2 users)"
        ]
    );
    // Mixed again, with a {PLAIN} entry: the warning comes with the reload.
    replace(&users, &format!("alice:{cost4}\ndave:{{PLAIN}}d\n"));
    sighup_lines(&mut server);
    let stderr = stderr_with(
        &server,
        "fastsmtpd: SIGHUP: warning: --auth: the password hashes differ in algorithm or cost (bcrypt cost 4: alice; {PLAIN}: dave): ",
        1,
    );
    assert_eq!(
        stderr.matches("the password hashes differ").count(),
        2,
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
