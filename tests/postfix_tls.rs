//! Postfix as the sending MTA: a private Postfix instance relays through fastsmtpd with
//! `smtp_tls_security_level = encrypt` and SASL AUTH, and the server requires both
//! (`--require-tls --auth-required`, an Argon2id password file).
//!
//! The instance is Postfix's own: its configuration, queue and data directories are under a
//! scratch directory (`postfix -c DIR`), its `master.cf` has no listener at all (mail goes in
//! through its `sendmail -C DIR`, which drops it in the instance's maildrop for `pickup`), and
//! it logs to a file of its own (`maillog_file` through `postlogd`, Postfix 3.4 and later). It
//! runs as root, as Postfix must (its master starts the daemons as `mail_owner`), and is
//! stopped at the end, or by its guard when the test fails.
//!
//! Each message must arrive byte for byte: what fastsmtpd keeps (`eml:` store) is what was
//! injected, LF made CR LF, under the one `Received:` header Postfix's pickup adds (naming the
//! queue id Postfix logged for that Message-ID); the JSON line's SHA-256 and size are those
//! bytes, and it names the TLS version and the authenticated user. Postfix's log must say
//! `status=sent` for each, relayed to fastsmtpd's address over TLS.
//!
//! Postfix must be installed, without letting the package start its system daemon (Debian:
//! see [`INSTALL`]). A machine without it fails the test, saying how to install it.

mod util;

use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::process::{run_bounded, ChildGuard};

/// How to install what this test needs on Debian, without starting a mail daemon.
const INSTALL: &str = "printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d && \
    chmod +x /usr/sbin/policy-rc.d && DEBIAN_FRONTEND=noninteractive apt-get install -y \
    postfix libsasl2-modules (policy-rc.d keeps the package from starting its daemon; \
    libsasl2-modules has the PLAIN and LOGIN mechanisms Postfix's SMTP client needs)";

/// The user Postfix authenticates as, and its password.
const USER: &str = "mailer";
const PASSWORD: &str = "Relay-pa55word";

/// The name Postfix gives itself (`myhostname`): in its `EHLO` and its `Received:` header.
const POSTFIX_NAME: &str = "postfix-client.test";

/// Bound on the wait for every message to arrive (a hang guard, not a timing assertion).
const DELIVERY_WAIT: Duration = Duration::from_secs(60);

/// Bound on Postfix's own commands and on the wait for its log lines.
const POSTFIX_WAIT: Duration = Duration::from_secs(30);

/// `postconf`, looked for in `PATH` and where Postfix installs it (`/usr/sbin` is not in every
/// user's `PATH`). Fails the test, saying how to install Postfix, when there is none.
fn postconf_program() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("postconf"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Postfix is not installed (no `postconf` in PATH, /usr/sbin or /usr/local/sbin): \
                 this test needs it as the sending MTA; install it with: {INSTALL}"
            )
        })
}

/// `main.cf` of the private instance relaying everything to `relay`.
fn main_cf(dir: &Path, relay: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        "# A private instance for tests/postfix_tls.rs: no listener, no local delivery.
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {POSTFIX_NAME}
mydomain = client.test
myorigin = $myhostname
mydestination =
local_transport = error:local delivery is disabled in this instance
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
biff = no
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
# Retry soon if the first attempt fails (the test also flushes the queue).
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
relayhost = [{ip}]:{port}
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = inline:{{ [{ip}]:{port}={USER}:{PASSWORD} }}
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
",
        ip = relay.ip(),
        port = relay.port(),
    )
}

/// `master.cf`: the daemons that take mail from the maildrop and relay it, and `postlog` for
/// `maillog_file`. No `inet` service: the instance listens on nothing. Nothing is chrooted.
const MASTER_CF: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
flush     unix  n       -       n       1000?   0       flush
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
scache    unix  -       -       n       -       1       scache
anvil     unix  -       -       n       -       1       anvil
postlog   unix-dgram n  -       n       -       1       postlogd
";

/// A private Postfix instance, stopped when dropped.
struct Postfix {
    /// Its configuration directory (`-c`).
    config_dir: PathBuf,
    /// `postfix`, `postqueue` (from `command_directory`) and its `sendmail`.
    postfix: PathBuf,
    postqueue: PathBuf,
    sendmail: PathBuf,
    /// Its log file.
    maillog: PathBuf,
    /// Whether it may still be running.
    running: bool,
}

impl Postfix {
    /// Configures an instance under `dir` that relays to `relay`, and starts it.
    #[track_caller]
    fn start(dir: &Path, relay: SocketAddr) -> Postfix {
        let postconf = postconf_program();
        let config_dir = dir.join("etc");
        for sub in ["etc", "queue", "data"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(config_dir.join("main.cf"), main_cf(dir, relay)).unwrap();
        std::fs::write(config_dir.join("master.cf"), MASTER_CF).unwrap();
        let mut query = Command::new(&postconf);
        query.arg("-c").arg(&config_dir).arg("-h");
        query.args([
            "mail_version",
            "command_directory",
            "sendmail_path",
            "mail_owner",
        ]);
        let output = run_bounded(query, None, POSTFIX_WAIT);
        output.assert_success("postconf");
        let values = output.stdout_lines();
        let [version, commands, sendmail, owner] = values.as_slice() else {
            panic!("postconf printed {values:?}");
        };
        let numbers: Vec<u32> = version
            .split('.')
            .take(2)
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        assert!(
            numbers.as_slice() >= [3, 4].as_slice(),
            "Postfix {version} is too old: this test needs 3.4 or later (maillog_file, \
             postlogd); install a newer one with: {INSTALL}"
        );
        // The master refuses to start unless the data directory is the mail owner's.
        let mut chown = Command::new("chown");
        chown.arg(owner).arg(dir.join("data"));
        run_bounded(chown, None, POSTFIX_WAIT).assert_success(&format!(
            "chown {owner} (a private Postfix instance must be started as root)"
        ));
        let mut postfix = Postfix {
            config_dir,
            postfix: Path::new(commands).join("postfix"),
            postqueue: Path::new(commands).join("postqueue"),
            sendmail: PathBuf::from(sendmail),
            maillog: dir.join("maillog"),
            running: false,
        };
        // `check` creates the queue directories with their owners and modes.
        let output = run_bounded(postfix.command(&["check"]), None, POSTFIX_WAIT);
        output.assert_success(&format!("postfix check\n{}", postfix.log()));
        postfix.running = true;
        let output = run_bounded(postfix.command(&["start"]), None, POSTFIX_WAIT);
        output.assert_success(&format!("postfix start\n{}", postfix.log()));
        postfix
    }

    /// `postfix -c DIR ARGS`.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.postfix);
        command.arg("-c").arg(&self.config_dir).args(args);
        command
    }

    /// The instance's log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.maillog).unwrap_or_else(|e| format!("(no maillog: {e})"))
    }

    /// The log and the queue, for failure messages.
    fn dump(&self) -> String {
        let mut queue = Command::new(&self.postqueue);
        queue.arg("-c").arg(&self.config_dir).arg("-p");
        let queue = run_bounded(queue, None, POSTFIX_WAIT);
        format!(
            "--- Postfix maillog ---\n{}\n--- postqueue -p ---\n{}{}",
            self.log(),
            queue.stdout,
            queue.stderr
        )
    }

    /// Injects `message` (LF line ends, as a local program would) from `sender` to `recipient`
    /// with Postfix's `sendmail -C DIR -i`: a line with a single dot is content.
    #[track_caller]
    fn inject(&self, sender: &str, recipient: &str, message: &[u8]) {
        let mut command = Command::new(&self.sendmail);
        command.arg("-C").arg(&self.config_dir);
        command.args(["-i", "-f", sender, "--", recipient]);
        run_bounded(command, Some(message), POSTFIX_WAIT).assert_success("sendmail");
    }

    /// `postqueue -f`: try every queued message now.
    #[track_caller]
    fn flush(&self) {
        let mut command = Command::new(&self.postqueue);
        command.arg("-c").arg(&self.config_dir).arg("-f");
        run_bounded(command, None, POSTFIX_WAIT).assert_success("postqueue -f");
    }

    /// Whether its master runs (`postfix status`).
    fn is_running(&self) -> bool {
        let mut command = self.command(&["status"]);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let Ok(mut child) = command.spawn() else {
            return false;
        };
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if start.elapsed() < POSTFIX_WAIT => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// Stops the instance and checks that its master is gone.
    #[track_caller]
    fn stop(mut self) {
        run_bounded(self.command(&["stop"]), None, POSTFIX_WAIT).assert_success("postfix stop");
        let start = Instant::now();
        while self.is_running() {
            assert!(
                start.elapsed() < POSTFIX_WAIT,
                "Postfix still runs after `postfix stop`"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.running = false;
    }

    /// The guard's way out (never panics): `postfix stop`, bounded; then, if the master still
    /// runs, SIGKILL to its pid (ours: this test started it), which its children follow.
    fn stop_quietly(&mut self) {
        let mut command = self.command(&["stop"]);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        if let Ok(mut child) = command.spawn() {
            let start = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && start.elapsed() < POSTFIX_WAIT {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.is_running() {
            let pid_file = self.config_dir.join("../queue/pid/master.pid");
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok())
            {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        self.running = false;
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if self.running {
            if std::thread::panicking() {
                eprintln!("--- Postfix maillog ---\n{}", self.log());
            }
            self.stop_quietly();
        }
    }
}

/// A message to inject: its Subject, Message-ID and the whole text (LF line ends).
struct Sample {
    subject: String,
    message_id: String,
    text: Vec<u8>,
}

impl Sample {
    /// Message `n` with `body` (LF line ends, ending with LF).
    fn new(n: usize, body: &[u8]) -> Sample {
        let subject = format!("postfix over TLS, message {n}");
        let message_id = format!("<postfix-tls-{n}.{}@client.test>", std::process::id());
        let mut text = format!(
            "From: Sender <sender@client.test>\nTo: <rcpt@example.org>\nSubject: {subject}\n\
             Message-ID: {message_id}\nDate: Thu, 1 Jan 2026 00:00:00 +0000\n\n"
        )
        .into_bytes();
        text.extend_from_slice(body);
        Sample {
            subject,
            message_id,
            text,
        }
    }

    /// What Postfix sends of it: every LF made CR LF.
    fn on_the_wire(&self) -> Vec<u8> {
        let mut wire = Vec::with_capacity(self.text.len() * 2);
        for &byte in &self.text {
            if byte == b'\n' {
                wire.push(b'\r');
            }
            wire.push(byte);
        }
        wire
    }
}

/// The bodies: plain; dots at line starts (stuffed on the wire with DATA) and 8-bit UTF-8;
/// 200 KiB of lines, many TLS records.
fn samples() -> Vec<Sample> {
    let mut long = Vec::new();
    for line in 0..2600 {
        long.extend_from_slice(format!("{line:05} {}\n", "0123456789".repeat(7)).as_bytes());
    }
    vec![
        Sample::new(1, b"Hello from Postfix.\n"),
        Sample::new(
            2,
            b".\n..two dots\n. one dot and a space\ncaf\xc3\xa9 \xe2\x9c\x89\nend\n",
        ),
        Sample::new(3, &long),
    ]
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The whole JSON lines of `file` so far (none if it does not exist yet).
fn records(file: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    // A line being written has no newline yet: leave it for the next look.
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|line| serde_json::from_str(line).expect("a whole JSON line"))
        .collect()
}

/// Postfix's queue id for the message with `message_id` (cleanup logs `ID: message-id=<..>`).
fn queue_id(log: &str, message_id: &str) -> Option<String> {
    let needle = format!(": message-id={message_id}");
    log.lines()
        .find(|line| line.ends_with(&needle))
        .map(|line| {
            let head = &line[..line.len() - needle.len()];
            head.rsplit(' ').next().unwrap().to_string()
        })
}

#[test]
fn postfix_relays_over_starttls_with_sasl_auth_and_every_message_arrives_byte_exact() {
    let dir = util::scratch_dir("postfix-tls");
    // The server: Argon2id password file, TLS and AUTH both required.
    let users = dir.join("users");
    let hash = {
        use argon2::password_hash::{PasswordHasher as _, SaltString};
        argon2::Argon2::default()
            .hash_password(
                PASSWORD.as_bytes(),
                &SaltString::encode_b64(b"postfix salt").unwrap(),
            )
            .unwrap()
            .to_string()
    };
    std::fs::write(&users, format!("{USER}:{hash}\nother:{{PLAIN}}other\n")).unwrap();
    let jsonl = dir.join("messages.jsonl");
    let eml = dir.join("eml");
    let (server, addr): (ChildGuard, SocketAddr) = util::start_binary(
        1,
        &[
            "--tls-self-signed",
            "--auth",
            &format!("file:{}", users.display()),
            "--auth-required",
            "--require-tls",
            "--store",
            &format!("jsonl:{}", jsonl.display()),
            "--store",
            &format!("eml:{}", eml.display()),
        ],
    );

    let postfix = Postfix::start(&dir.join("postfix"), addr);
    let samples = samples();
    for sample in &samples {
        postfix.inject("sender@client.test", "rcpt@example.org", &sample.text);
    }

    // Every message in the JSON lines (bounded; the queue is flushed now and then in case a
    // first attempt was deferred).
    let start = Instant::now();
    let mut flushed = Instant::now();
    while records(&jsonl).len() < samples.len() {
        assert!(
            start.elapsed() < DELIVERY_WAIT,
            "{} of {} messages arrived within {DELIVERY_WAIT:?}: {:?}\n{}",
            records(&jsonl).len(),
            samples.len(),
            records(&jsonl),
            postfix.dump()
        );
        if flushed.elapsed() > Duration::from_secs(5) {
            postfix.flush();
            flushed = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Postfix logged `status=sent` for each (its log line follows the 250; bounded wait).
    let relay = format!(
        "relay={ip}[{ip}]:{port}",
        ip = addr.ip(),
        port = addr.port()
    );
    let start = Instant::now();
    let (log, ids) = loop {
        let log = postfix.log();
        let ids: Vec<Option<String>> = samples
            .iter()
            .map(|sample| queue_id(&log, &sample.message_id))
            .collect();
        let all_sent = ids.iter().all(|id| {
            id.as_ref().is_some_and(|id| {
                log.lines().any(|line| {
                    line.contains(&format!(": {id}: to=<rcpt@example.org>, {relay},"))
                        && line.contains(", status=sent (250 2.0.0 Ok: queued as ")
                })
            })
        });
        if all_sent {
            break (log, ids.into_iter().map(Option::unwrap).collect::<Vec<_>>());
        }
        assert!(
            start.elapsed() < POSTFIX_WAIT,
            "Postfix never logged status=sent for every message: queue ids {ids:?}\n{}",
            postfix.dump()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Its SMTP client said it used TLS to this server.
    let tls_line = format!(
        "TLS connection established to {}[{}]:{}: TLSv1.",
        addr.ip(),
        addr.ip(),
        addr.port()
    );
    assert!(log.contains(&tls_line), "no {tls_line:?} in\n{log}");

    let records = records(&jsonl);
    assert_eq!(records.len(), samples.len(), "{records:?}");
    for (sample, id) in samples.iter().zip(&ids) {
        let record = records
            .iter()
            .find(|r| r["message_id"] == sample.message_id.as_str())
            .unwrap_or_else(|| panic!("no record for {}: {records:?}", sample.message_id));
        assert_eq!(record["subject"], sample.subject.as_str(), "{record}");
        assert_eq!(record["auth_user"], USER, "{record}");
        let version = record["tls"]["version"].as_str().unwrap_or_default();
        assert!(
            version == "TLSv1.3" || version == "TLSv1.2",
            "not over TLS 1.2/1.3: {record}"
        );
        assert_eq!(record["helo"], POSTFIX_NAME, "{record}");
        assert_eq!(record["mail_from"], "sender@client.test", "{record}");
        assert_eq!(record["rcpt_to"], serde_json::json!(["rcpt@example.org"]));
        // The bytes kept: Postfix's one Received: header (naming the queue id it logged),
        // then exactly what was injected; the JSON line's hash and size are of those bytes.
        let path = eml.join(format!("{}.eml", record["id"].as_str().unwrap()));
        // Postfix logged our 250, which names the record's id: its log joins with the record.
        let sent_line = format!(": {id}: to=<rcpt@example.org>, {relay}, delay=");
        assert!(
            log.lines().any(|line| line.contains(&sent_line)
                && line.ends_with(&format!(
                    "status=sent (250 2.0.0 Ok: queued as {})",
                    record["id"].as_str().unwrap()
                ))),
            "Postfix's log does not name {} for {id}:\n{log}",
            record["id"]
        );
        let kept = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(record["sha256"], sha256_hex(&kept).as_str(), "{record}");
        assert_eq!(record["size"], kept.len() as u64, "{record}");
        let wire = sample.on_the_wire();
        assert!(
            kept.ends_with(&wire),
            "{}: the injected message did not arrive byte for byte:\n{}",
            path.display(),
            String::from_utf8_lossy(&kept)
        );
        let added = String::from_utf8_lossy(&kept[..kept.len() - wire.len()]);
        let pickup = format!("Received: by {POSTFIX_NAME} (Postfix, from userid ");
        assert!(
            added.starts_with(&pickup)
                && added.contains(&format!(")\r\n\tid {id}; "))
                && added.ends_with("\r\n")
                && added.matches("\r\n").count() == 2,
            "Postfix added more (or other) than its Received: header: {added:?}"
        );
    }

    postfix.stop();
    server.signal(libc::SIGTERM);
    let exited = server.wait(Duration::from_secs(20));
    assert_eq!(exited.status.code(), Some(0), "{}", exited.dump());
    assert!(
        exited
            .stdout
            .contains(&format!("done: messages={} ", samples.len())),
        "{}",
        exited.dump()
    );
}
