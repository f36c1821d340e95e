//! Exim as the relay's next hop: the relay (the binary, `--spool DIR --relay-to
//! 127.0.0.1:PORT`) hands messages to a private Exim daemon listening on loopback, which
//! delivers each recipient's copy into a maildir of its own (`DIR/mail/LOCAL_PART/new/`,
//! lines ending in CR LF as received). Checked in Exim's files: the message byte for byte as
//! the client sent it, dot-unstuffed (lines beginning with dots, a line of 998 octets and one
//! of 998 beginning with a dot, an 8-bit body sent with `BODY=8BITMIME`, several recipients:
//! one copy each), behind exactly two `Received:` lines, Exim's own on top (`from
//! [127.0.0.1] (helo=mx.test) by exim-hop.test with esmtp (Exim ...)`), then the relay's
//! (`from client.test ... by mx.test`), and nothing else added but Exim's `Return-path:`;
//! Exim's log shows each arrival from the relay (`M8S=8` for the 8-bit one, `K` for BDAT);
//! the relay's queue drains and nothing arrives twice. Run twice: Exim offering CHUNKING (the
//! relay sends `BDAT`) and not (`DATA`, dot-stuffed again). A recipient Exim refuses at
//! `RCPT` (`550 5.1.1`) gets its sender exactly one delivery status notification, which the
//! relay sends through Exim with `MAIL FROM:<>` (Exim writes `Return-path: <>`): a
//! `multipart/report` with `Action: failed` for that recipient alone and Exim's reply.
//!
//! Exim is not installed: `.ci/run` unpacks Debian's `exim4-daemon-light` with `dpkg -x` and
//! exports the binary's path as `FASTSMTPD_EXIM`; with it set the tests must run (a daemon
//! that cannot start fails them). Without it they say so and pass without running.
//! The daemon runs in the foreground (`-bdf`) in a process group of its own, with its
//! configuration (`-C`), spool, logs and pid file in the test's directory, no DNS, no ident
//! and no TLS; a guard stops the whole group (the daemon and its delivery processes) when the
//! test ends, even by a panic. Started as root, Exim runs as `Debian-exim` (the user its
//! Debian build looks up before reading any configuration, so it must exist; `.ci/run`
//! creates it) and writes its pid file where `-oP` says; started by another user it runs as
//! that user, without `-oP` (which Exim allows only root and its own user) and logging to
//! its standard error. Bounded waits only (polling), no timed assertion.

mod util;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use util::process::{run_bounded, ChildGuard};
use util::relay::{self, SETTLE_WAIT};
use util::Client;

/// The environment variable naming the Exim binary (`.../usr/sbin/exim4`).
const EXIM_ENV: &str = "FASTSMTPD_EXIM";
/// Bound on Exim's start and stop (a hang guard, not a timing assertion).
const EXIM_WAIT: Duration = Duration::from_secs(30);
/// How long a test looks for mail that must not come, after what must has come.
const QUIET_WAIT: Duration = Duration::from_millis(700);
/// Exim's host name (`primary_hostname`), in the `Received:` line it writes.
const EXIM_HOST: &str = "exim-hop.test";
/// The local parts Exim keeps a maildir for (in `x.test` and `y.test`); `bad` is refused at
/// `RCPT` with a 550, any other with a 550 too.
const MAILBOXES: &[&str] = &["a", "r", "s", "t"];
/// The longest line RFC 5322 §2.1.1 allows, in octets without its CR LF (and Exim's default
/// `message_linelength_limit`).
const LONGEST_LINE: usize = 998;

/// Exim's binary from [`EXIM_ENV`], or `None` (the test skips) when it is not set.
fn exim_program() -> Option<PathBuf> {
    let program = PathBuf::from(std::env::var_os(EXIM_ENV)?);
    assert!(
        program.is_file(),
        "{EXIM_ENV}={} is not a file (.ci/run unpacks Exim there)",
        program.display()
    );
    Some(program)
}

/// The user and group Exim runs as, in its configuration's words: `Debian-exim` when the
/// test runs as root (Exim refuses to deliver as root: `never_users` is fixed to root),
/// else the caller's own uid and gid (an unprivileged Exim cannot change them).
fn exim_identity(dir: &Path) -> (String, String) {
    let meta = std::fs::metadata(dir).expect("the test's directory");
    if meta.uid() == 0 {
        ("Debian-exim".into(), "Debian-exim".into())
    } else {
        (meta.uid().to_string(), meta.gid().to_string())
    }
}

/// Exim's configuration: listen on 127.0.0.1, no DNS, no ident, no TLS, CHUNKING offered or
/// not; accept recipients in [`MAILBOXES`] at `x.test` and `y.test`, refuse `bad` (and any
/// other) with a 550, deliver each recipient's copy to `DIR/mail/LOCAL_PART` (a maildir,
/// lines ending in CR LF as received, only `Return-path:` added at delivery).
fn exim_conf(program: &Path, dir: &Path, user: &str, group: &str, chunking: bool) -> String {
    format!(
        "# A private Exim for tests/relay_exim.rs: the relay's next hop.
primary_hostname = {EXIM_HOST}
exim_path = {program}
exim_user = {user}
exim_group = {group}
keep_environment =
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
log_selector = +8bitmime +subject +received_recipients
pid_file_path = {dir}/exim.pid
local_interfaces = 127.0.0.1
host_lookup =
rfc1413_hosts =
rfc1413_query_timeout = 0s
tls_advertise_hosts =
chunking_advertise_hosts = {chunking}
domainlist local_domains = x.test : y.test
localpartlist mailboxes = {mailboxes}
acl_smtp_rcpt = check_rcpt

begin acl
check_rcpt:
  deny    local_parts = bad
          message = 5.1.1 no such user here
  accept  domains = +local_domains
          local_parts = +mailboxes
  deny    message = 5.1.1 not a mailbox of this test

begin routers
to_maildir:
  driver = accept
  domains = +local_domains
  local_parts = +mailboxes
  transport = maildir_per_recipient

begin transports
maildir_per_recipient:
  driver = appendfile
  directory = {dir}/mail/$local_part_data
  maildir_format = true
  create_directory = true
  use_crlf = true
  return_path_add = true
  envelope_to_add = false
  delivery_date_add = false
  user = {user}
  group = {group}
  mode = 0644

begin retry
*   *   F,1m,10s
",
        program = program.display(),
        dir = dir.display(),
        chunking = if chunking { "*" } else { "" },
        mailboxes = MAILBOXES.join(" : "),
    )
}

/// A private Exim daemon (`-bdf`, in a process group of its own), stopped with all its
/// processes when dropped.
struct Exim {
    /// The daemon, our child.
    child: Child,
    /// Where it listens.
    addr: SocketAddr,
    /// Its directory: configuration, spool, logs, pid file, maildirs.
    dir: PathBuf,
}

impl Exim {
    /// Starts Exim in `dir`, offering CHUNKING or not, and waits (bounded) until it answers.
    #[track_caller]
    fn start(program: &Path, dir: &Path, chunking: bool) -> Exim {
        std::fs::create_dir_all(dir.join("log")).unwrap();
        std::fs::create_dir_all(dir.join("spool")).unwrap();
        std::fs::create_dir_all(dir.join("mail")).unwrap();
        let (user, group) = exim_identity(dir);
        if user == "Debian-exim" {
            // Run as root: Exim gives up root for `-C` and works as its user from the start,
            // so its directories are that user's; the configuration stays root's (Exim
            // refuses one owned by anyone else).
            let mut chown = Command::new("chown");
            chown.args(["-R", "Debian-exim:Debian-exim"]).arg(dir);
            run_bounded(chown, None, EXIM_WAIT).assert_success(
                "chown -R Debian-exim (the user must exist: useradd --system --user-group \
                 Debian-exim, as .ci/run does)",
            );
        }
        let conf = dir.join("exim.conf");
        std::fs::write(&conf, exim_conf(program, dir, &user, &group, chunking)).unwrap();
        let listen: SocketAddr = util::free_local_addr().parse().unwrap();
        let stderr = std::fs::File::create(dir.join("exim.stderr")).unwrap();
        let mut command = Command::new(program);
        command
            .arg("-C")
            .arg(&conf)
            .args(["-bdf", "-oX", &listen.port().to_string()]);
        if user == "Debian-exim" {
            // The pid file in our directory, not in /run (Exim lets only root and its own
            // user name one; without `-oP`, `-oX` writes none).
            command.arg("-oP").arg(dir.join("exim.pid"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{EXIM_ENV}={}: {e}", program.display()));
        let mut exim = Exim {
            child,
            addr: listen,
            dir: dir.to_path_buf(),
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(listen).is_err() {
            let exited = exim.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && start.elapsed() < EXIM_WAIT,
                "Exim does not listen on {listen} (exit: {exited:?})\n{}",
                exim.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        exim
    }

    /// Exim's logs and standard error, for failure messages.
    fn log(&self) -> String {
        let mut text = String::new();
        for name in [
            "log/mainlog",
            "log/rejectlog",
            "log/paniclog",
            "exim.stderr",
        ] {
            if let Ok(content) = std::fs::read_to_string(self.dir.join(name)) {
                text.push_str(&format!("--- Exim {name} ---\n{content}"));
            }
        }
        text
    }

    /// Exim's main log: `log/mainlog`, or its standard error when that file is empty (an
    /// Exim started by neither root nor its own user logs there, without message ids).
    fn mainlog(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let file = read("log/mainlog");
        if file.is_empty() {
            read("exim.stderr")
        } else {
            file
        }
    }

    /// The messages delivered to `local_part` so far (its maildir's `new/`: Exim writes each
    /// in `tmp/` and renames it there whole), in no particular order.
    fn mailbox(&self, local_part: &str) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("mail").join(local_part).join("new"))
        else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| std::fs::read(entry.path()).ok())
            .collect()
    }

    /// Waits (bounded) until `local_part` holds at least `n` messages, and returns them all.
    #[track_caller]
    fn wait_for(&self, local_part: &str, n: usize) -> Vec<Vec<u8>> {
        let start = Instant::now();
        loop {
            let found = self.mailbox(local_part);
            if found.len() >= n {
                return found;
            }
            assert!(
                start.elapsed() < SETTLE_WAIT,
                "{} of {n} messages for {local_part}\n{}",
                found.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to Exim's whole process group (the daemon and its deliveries).
    #[allow(unsafe_code)]
    fn signal_group(&self, signal: libc::c_int) {
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        if pid > 1 {
            // SAFETY: kill(2) takes two integers and touches no memory of ours; `-pid` is the
            // process group the daemon leads (spawned with `process_group(0)`), which holds
            // only Exim's processes.
            unsafe { libc::kill(-pid, signal) };
        }
    }
}

impl Drop for Exim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
        // SIGTERM first (the daemon's orderly stop), then SIGKILL for whatever is left.
        self.signal_group(libc::SIGTERM);
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && start.elapsed() < EXIM_WAIT {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Starts the relay spooling in `DIR/spool`, delivering to `next_hop` with quick retries.
fn start_relay(dir: &Path, next_hop: SocketAddr) -> (ChildGuard, SocketAddr) {
    relay::start_relay(
        dir,
        &[next_hop],
        &["--retry", "200ms", "--queue-lifetime", "30s"],
    )
}

/// Sends one message to the relay over a raw socket: `mail` is the whole `MAIL` command
/// line (parameters and all) without CR LF, `content` the DATA as sent (dot-stuffed).
/// Asserts every reply is positive.
#[track_caller]
fn send(addr: SocketAddr, mail: &str, rcpts: &[&str], content: &[u8]) {
    let mut client = Client::connect(addr);
    assert!(client.read_reply().starts_with("220 "));
    client.send("EHLO client.test\r\n");
    let ehlo = client.read_reply();
    assert!(ehlo.contains("8BITMIME"), "{ehlo}");
    client.send(format!("{mail}\r\n"));
    let reply = client.read_reply();
    assert!(reply.starts_with("250 "), "{mail}: {reply}");
    for rcpt in rcpts {
        client.send(format!("RCPT TO:<{rcpt}>\r\n"));
        let reply = client.read_reply();
        assert!(reply.starts_with("250 "), "{rcpt}: {reply}");
    }
    client.send("DATA\r\n");
    assert!(client.read_reply().starts_with("354 "));
    client.send(content);
    client.send(".\r\n");
    let reply = client.read_reply();
    assert!(reply.starts_with("250 "), "end of data: {reply}");
    client.send("QUIT\r\n");
}

/// Undoes dot-stuffing (RFC 5321 §4.5.2): a line's leading dot is dropped.
fn unstuffed(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    for line in content.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

/// Splits off the first header field (folded lines included): (that field, the rest).
#[track_caller]
fn first_field(bytes: &[u8]) -> (String, &[u8]) {
    let mut at = 0;
    loop {
        let end = at
            + bytes[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap_or_else(|| panic!("a CR LF in {:?}", String::from_utf8_lossy(bytes)));
        if !matches!(bytes.get(end + 2), Some(b' ' | b'\t')) {
            return (
                String::from_utf8_lossy(&bytes[..end + 2]).into_owned(),
                &bytes[end + 2..],
            );
        }
        at = end + 2;
    }
}

/// The lines of the header block of `bytes` (up to the first empty line) that begin a
/// `Received:` field.
fn received_count(bytes: &[u8]) -> usize {
    let text = String::from_utf8_lossy(bytes);
    text.split("\r\n")
        .take_while(|line| !line.is_empty())
        .filter(|line| line.starts_with("Received:"))
        .count()
}

/// A message of the test: (`MAIL` command, recipients, DATA as sent).
type Sent = (String, Vec<&'static str>, Vec<u8>);

/// The messages sent in [`relays_to_exim`], each with a `Subject:` naming it.
fn messages() -> Vec<Sent> {
    let header = |subject: &str, to: &str, more: &str| {
        format!(
            "From: Sender <a@x.test>\r\nTo: {to}\r\nSubject: {subject}\r\n\
             Date: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <{subject}@x.test>\r\n{more}\r\n"
        )
    };
    let plain = "MAIL FROM:<a@x.test>".to_string();
    let dots = format!(
        "{}first line\r\n..a line that began with a dot\r\n..\r\n...two dots\r\n\
         .. a dot and a space\r\nlast line\r\n",
        header("dots", "<r@y.test>", "")
    );
    let long_line: String = (0..LONGEST_LINE)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let long = format!(
        "{}before\r\n{long_line}\r\n.{}\r\nafter\r\n",
        header("long", "<r@y.test>", ""),
        &long_line[1..]
    );
    let eight_bit = format!(
        "{}Grüße aus Zürich, ça va ? — 5 €\r\n\u{00ff}\u{00fe} and a tab\there\r\n",
        header(
            "eight-bit",
            "<r@y.test>",
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        )
    );
    let several = format!(
        "{}to three recipients\r\n",
        header("several", "<r@y.test>, <s@y.test>, <t@y.test>", "")
    );
    vec![
        (plain.clone(), vec!["r@y.test"], dots.into_bytes()),
        (plain.clone(), vec!["r@y.test"], long.into_bytes()),
        (
            "MAIL FROM:<a@x.test> BODY=8BITMIME".into(),
            vec!["r@y.test"],
            eight_bit.into_bytes(),
        ),
        (
            plain,
            vec!["r@y.test", "s@y.test", "t@y.test"],
            several.into_bytes(),
        ),
    ]
}

/// The `Subject:` of `bytes`.
fn subject(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .find_map(|line| line.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_string()
}

/// Waits (bounded) until the relay's queue (`fastsmtpd queue list --json`) is empty: every
/// message done. (Its segment file stays: the spool deletes a segment only once it is no
/// longer the one being written.)
#[track_caller]
fn wait_queue_empty(spool: &Path, exim: &Exim) {
    let start = Instant::now();
    loop {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
        command
            .arg("queue")
            .arg("--spool")
            .arg(spool)
            .args(["list", "--json"]);
        let out = run_bounded(command, None, EXIM_WAIT);
        out.assert_success("fastsmtpd queue list --json");
        if out.stdout.trim().is_empty() {
            return;
        }
        assert!(
            start.elapsed() < SETTLE_WAIT,
            "the relay's queue never drained:\n{}\n{}",
            out.stdout,
            exim.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends [`messages`] through the relay to an Exim offering CHUNKING or not, and checks
/// every copy Exim delivered.
fn relays_to_exim(chunking: bool) {
    let Some(program) = exim_program() else {
        println!(
            "skipped: {EXIM_ENV} is not set (the path of an exim4 binary; .ci/run unpacks \
             Debian's exim4-daemon-light and sets it)"
        );
        return;
    };
    let dir = util::scratch_dir(if chunking {
        "relay-exim-bdat"
    } else {
        "relay-exim-data"
    });
    let exim = Exim::start(&program, &dir.join("exim"), chunking);
    let (_relay, relay_addr) = start_relay(&dir, exim.addr);
    let sent = messages();
    for (mail, rcpts, content) in &sent {
        send(relay_addr, mail, rcpts, content);
    }

    // r gets every message, s and t the one sent to three recipients; no duplicates.
    let mut expected_for: Vec<(&str, Vec<&Sent>)> = Vec::new();
    for mailbox in ["r", "s", "t"] {
        let rcpt = format!("{mailbox}@y.test");
        let these = sent
            .iter()
            .filter(|(_, rcpts, _)| rcpts.contains(&rcpt.as_str()))
            .collect();
        expected_for.push((mailbox, these));
    }
    for (mailbox, these) in &expected_for {
        exim.wait_for(mailbox, these.len());
    }
    wait_queue_empty(&dir.join("spool"), &exim);
    std::thread::sleep(QUIET_WAIT);
    for (mailbox, these) in &expected_for {
        let found = exim.mailbox(mailbox);
        assert_eq!(
            found.len(),
            these.len(),
            "{mailbox}: no duplicates on a quiet run"
        );
        for bytes in &found {
            let name = subject(bytes);
            let (_, rcpts, content) = these
                .iter()
                .find(|(_, _, content)| subject(content) == name)
                .unwrap_or_else(|| {
                    panic!(
                        "{mailbox} got an unexpected message: {}",
                        String::from_utf8_lossy(bytes)
                    )
                });
            // Exim's own lines on top: the envelope's reverse path, its Received: line.
            let (return_path, rest) = first_field(bytes);
            assert_eq!(return_path, "Return-path: <a@x.test>\r\n");
            let (exim_received, rest) = first_field(rest);
            assert!(
                exim_received.starts_with("Received: from [127.0.0.1] (helo=mx.test)"),
                "{exim_received}"
            );
            assert!(
                exim_received.contains(&format!("by {EXIM_HOST} with esmtp (Exim ")),
                "{exim_received}"
            );
            // The relay's Received: line, the one it added.
            let (relay_received, rest) = first_field(rest);
            assert!(
                relay_received.starts_with("Received: from client.test ("),
                "{relay_received}"
            );
            assert!(relay_received.contains("by mx.test"), "{relay_received}");
            if let [only] = rcpts.as_slice() {
                assert!(
                    relay_received.contains(&format!("for <{only}>")),
                    "{relay_received}"
                );
            }
            // Then the message exactly as the client sent it, unstuffed.
            assert!(
                rest == unstuffed(content).as_slice(),
                "{name} to {mailbox}: the body differs\n--- delivered ---\n{}\n--- sent ---\n{}",
                String::from_utf8_lossy(rest),
                String::from_utf8_lossy(content)
            );
            assert_eq!(received_count(bytes), 2, "Exim's and the relay's: {name}");
        }
    }
    // Exim's log: every message came from the relay with the relay's name, the 8-bit one
    // declared BODY=8BITMIME (M8S=8), by BDAT when offered (K). That the others were not is
    // not seen there: Exim 4.96 keeps a session's first M8S=8 for its later messages (a
    // 7-bit message after an 8-bit one on the same connection is logged M8S=8 too).
    let log = exim.mainlog();
    let arrivals: Vec<&str> = log.lines().filter(|line| line.contains(" <= ")).collect();
    assert_eq!(arrivals.len(), sent.len(), "{log}");
    for (mail, _, content) in &sent {
        let name = subject(content);
        let line = arrivals
            .iter()
            .find(|line| line.contains(&format!("T=\"{name}\"")))
            .unwrap_or_else(|| panic!("no arrival of {name} in Exim's log\n{log}"));
        assert!(
            line.contains("<= a@x.test H=(mx.test) [127.0.0.1]"),
            "{line}"
        );
        if mail.contains("BODY=8BITMIME") {
            assert!(line.contains(" M8S=8 "), "{line}");
        }
        assert_eq!(line.contains(" K "), chunking, "BDAT iff offered: {line}");
    }
}

#[test]
fn the_relay_delivers_to_exim_by_bdat_byte_for_byte_behind_one_received_line() {
    relays_to_exim(true);
}

#[test]
fn the_relay_delivers_to_exim_by_data_byte_for_byte_behind_one_received_line() {
    relays_to_exim(false);
}

#[test]
fn a_recipient_exim_refuses_gets_its_sender_one_notification_through_exim() {
    let Some(program) = exim_program() else {
        println!("skipped: {EXIM_ENV} is not set (see the other tests of this file)");
        return;
    };
    let dir = util::scratch_dir("relay-exim-dsn");
    let exim = Exim::start(&program, &dir.join("exim"), true);
    let (_relay, relay_addr) = start_relay(&dir, exim.addr);
    let content =
        b"From: <a@x.test>\r\nTo: <r@y.test>, <bad@y.test>\r\nSubject: half\r\n\r\nbody\r\n";
    send(
        relay_addr,
        "MAIL FROM:<a@x.test>",
        &["r@y.test", "bad@y.test"],
        content,
    );
    // The good recipient's copy, and the notification to the sender.
    let copies = exim.wait_for("r", 1);
    let notices = exim.wait_for("a", 1);
    wait_queue_empty(&dir.join("spool"), &exim);
    std::thread::sleep(QUIET_WAIT);
    assert_eq!(exim.mailbox("r").len(), 1);
    assert_eq!(exim.mailbox("a").len(), 1, "exactly one notification");
    let copy = String::from_utf8_lossy(&copies[0]);
    assert!(copy.ends_with("Subject: half\r\n\r\nbody\r\n"), "{copy}");
    let notice = &notices[0];
    let text = String::from_utf8_lossy(notice);
    // RFC 5321 §4.5.5: sent with an empty reverse path, which Exim records.
    let (return_path, rest) = first_field(notice);
    assert_eq!(return_path, "Return-path: <>\r\n", "{text}");
    let (exim_received, _) = first_field(rest);
    assert!(
        exim_received.contains(&format!("by {EXIM_HOST}")),
        "{exim_received}"
    );
    assert!(exim_received.contains("for a@x.test"), "{exim_received}");
    assert_eq!(received_count(notice), 1, "Exim's alone: {text}");
    assert!(
        text.contains("Content-Type: multipart/report; report-type=delivery-status"),
        "{text}"
    );
    assert!(text.contains("Action: failed"), "{text}");
    assert!(
        text.contains("Final-Recipient: rfc822; bad@y.test"),
        "{text}"
    );
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(text.contains("550 5.1.1 no such user here"), "{text}");
    assert!(
        !text.contains("Final-Recipient: rfc822; r@y.test"),
        "{text}"
    );
    assert!(
        text.contains("Subject: half"),
        "the original's header: {text}"
    );
    let log = exim.mainlog();
    assert!(
        log.contains("rejected RCPT <bad@y.test>: 5.1.1 no such user here"),
        "{log}"
    );
    assert!(log.contains("<= <> H=(mx.test) [127.0.0.1]"), "{log}");
}
