//! Interop: SMTP clients that nobody on this project wrote (Python's `smtplib`, `curl`,
//! `swaks`, the `lettre` crate) deliver mail to an in-process server over real loopback
//! sockets. Each client must see the right reply, and the server's own counters must then show
//! exactly the messages (and, where the client's bytes are predictable, the content octets)
//! that were delivered.
//!
//! `python3`, `curl` and `swaks` must be installed: a missing tool FAILS the test with a message
//! naming the package (CI installs them; see `.ci/run`). Nothing here is skipped silently.
//!
//! Every external process is bounded ([`CHILD_LIMIT`]) and is also given its own client
//! timeout, so a broken server fails a test instead of hanging it. No timing is asserted.

mod util;
use fastsmtpd::config::Limits;
use util::process::{run_bounded, Output, CURL, PYTHON3, SWAKS};
use util::{test_config, TestServer};

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bound on any one external client run (only a hang guard, never a timing assertion).
const CHILD_LIMIT: Duration = Duration::from_secs(30);

/// The reply that ends a successful DATA, with its message id masked (see [`masked`]).
const QUEUED_LINE: &str = "250 2.0.0 Ok: queued as [queue id]";

/// `text` with the id of every `queued as <id>` replaced by `[queue id]`, once checked to be
/// an id as the server makes them (so replies compare as text; any other id fails the test).
#[track_caller]
fn mask_queue_ids(text: &str) -> String {
    const QUEUED_AS: &str = "queued as ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(QUEUED_AS) {
        let (before, after) = rest.split_at(at + QUEUED_AS.len());
        out.push_str(before);
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .unwrap_or(after.len());
        assert!(util::is_queue_id(&after[..end]), "not an id: {after:?}");
        out.push_str(util::QUEUE_ID);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `output` with its message ids masked ([`mask_queue_ids`]).
#[track_caller]
fn masked(mut output: Output) -> Output {
    output.stdout = mask_queue_ids(&output.stdout);
    output.stderr = mask_queue_ids(&output.stderr);
    output
}
/// The reply to an oversize message (at MAIL with `SIZE=`, or after the data).
const TOO_BIG_LINE: &str = "552 5.3.4 Error: message size exceeds fixed limit";

/// A file under the temp directory with a unique name, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(label: &str, contents: &[u8]) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "fastsmtpd-real-clients-{}-{}-{label}.eml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `text` with every LF turned into CR LF (what `curl --crlf` and swaks put on the wire).
fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

// ---------------------------------------------------------------------------------------------
// Python smtplib

/// Shared by every Python script: the port from `sys.argv[1]`, an `smtplib.SMTP` that records
/// each end-of-data reply and the content octets the server should count, and helpers.
const PY_PRELUDE: &str = r#"
import smtplib, socket, sys
from email.message import EmailMessage

PORT = int(sys.argv[1])

class Recording(smtplib.SMTP):
    """smtplib.SMTP recording each end-of-data reply, and the content octets of the accepted
    messages as the server must count them: smtplib dot-stuffs on the wire, the server
    unstuffs, so that is the flattened message plus CRLF if it lacks a final one."""

    def __init__(self):
        super().__init__('127.0.0.1', PORT, local_hostname='client.test', timeout=10)
        self.data_replies = []
        self.content_octets = 0

    def data(self, msg):
        code, text = super().data(msg)
        self.data_replies.append((code, text))
        if code == 250:
            if isinstance(msg, str):
                msg = smtplib._fix_eols(msg).encode('ascii')
            self.content_octets += len(msg) + (0 if msg.endswith(b'\r\n') else 2)
        return code, text

def message(sender, to, subject, body, **content_options):
    m = EmailMessage()
    m['From'] = sender
    m['To'] = to
    m['Subject'] = subject
    m.set_content(body, **content_options)
    return m

def report(s):
    for code, text in s.data_replies:
        print('DATA', code, text.decode('ascii', 'backslashreplace'))
    print('OCTETS', s.content_octets)
"#;

/// Runs `script` (after [`PY_PRELUDE`]) with `python3 -c SCRIPT PORT`.
#[track_caller]
fn python(server: &TestServer, script: &str) -> Output {
    let mut command = PYTHON3.command();
    command
        .arg("-c")
        .arg([PY_PRELUDE, script].concat())
        .arg(server.addr.port().to_string())
        .env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    masked(run_bounded(command, None, CHILD_LIMIT))
}

/// The lines of `out` starting with `prefix` (prefix removed).
fn lines_with<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .collect()
}

/// The number after `OCTETS ` in a script's output.
#[track_caller]
fn octets(ran: &Output) -> u64 {
    let found = lines_with(&ran.stdout, "OCTETS ");
    assert_eq!(found.len(), 1, "no OCTETS line\n{}", ran.dump());
    found[0].parse().expect("OCTETS value")
}

#[test]
fn smtplib_several_messages_on_one_connection_with_dot_stuffing() {
    let server = TestServer::start(test_config());
    let ran = python(
        &server,
        r#"
with Recording() as s:
    s.ehlo()
    assert s.has_extn('pipelining') and s.has_extn('size') and s.has_extn('8bitmime'), s.esmtp_features
    refused = s.send_message(message('alice@example.org', 'bob@example.org', 'plain', 'Hello Bob.\n'))
    assert refused == {}, refused
    # Lines starting with '.', a lone '.' line (which would end the data if smtplib did not
    # stuff it) and a trailing one; two recipients.
    refused = s.send_message(message('alice@example.org', 'bob@example.org, carol@example.org', 'dots',
        '.leading dot\n..two dots\n.\nafter a lone dot\n...\n.\n'))
    assert refused == {}, refused
    # A bounce: null reverse-path, to the domain-less postmaster (RFC 5321 4.5.1).
    refused = s.send_message(message('MAILER-DAEMON@example.org', 'postmaster', 'bounce', 'undeliverable\n'),
        from_addr='', to_addrs=['postmaster'])
    assert refused == {}, refused
    code, _ = s.noop()
    assert code == 250, code
report(s)
"#,
    );
    ran.assert_success("python smtplib send_message x3");
    assert_eq!(
        lines_with(&ran.stdout, "DATA "),
        vec![QUEUED_LINE; 3],
        "{}",
        ran.dump()
    );
    let octets = octets(&ran);
    server.wait_for_stats(|s| s.messages == 3 && s.bytes == octets && s.open_connections == 0);
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (3, octets));
}

#[test]
fn smtplib_smtputf8_and_8bit_bodies() {
    let server = TestServer::start(test_config());
    let ran = python(
        &server,
        r#"
utf8_body = 'héllo wörld ☃\n.ünïcode after a dot\nend\n'
with Recording() as s:
    # The documented spelling: SMTPUTF8 passed explicitly. smtplib then also adds its own
    # SMTPUTF8 and BODY=8BITMIME for the UTF-8 envelope, so the server sees the keyword twice.
    s.send_message(message('jörg@exämple.org', 'josé@exämple.org', 'grüße', utf8_body, cte='8bit'),
        mail_options=['SMTPUTF8'])
    # smtplib adding SMTPUTF8 on its own.
    s.send_message(message('jörg@exämple.org', 'josé@exämple.org', 'grüße 2', utf8_body, cte='8bit'))
    # ASCII envelope, raw 8-bit UTF-8 body, declared with BODY=8BITMIME (RFC 6152).
    s.send_message(message('a@example.org', 'b@example.org', '8bit', utf8_body, cte='8bit'),
        mail_options=['BODY=8BITMIME'])
report(s)
"#,
    );
    ran.assert_success("python smtplib SMTPUTF8 / 8BITMIME");
    assert_eq!(
        lines_with(&ran.stdout, "DATA "),
        vec![QUEUED_LINE; 3],
        "{}",
        ran.dump()
    );
    let octets = octets(&ran);
    server.wait_for_stats(|s| s.messages == 3 && s.bytes == octets && s.open_connections == 0);
}

#[test]
fn python_raw_socket_pipelining() {
    let server = TestServer::start(test_config());
    let ran = python(
        &server,
        r#"
sock = socket.create_connection(('127.0.0.1', PORT), timeout=10)
replies = sock.makefile('rb')

def reply():
    lines = []
    while True:
        line = replies.readline()
        if not line.endswith(b'\r\n'):
            sys.exit('connection closed inside a reply: %r %r' % (lines, line))
        lines.append(line.decode('ascii'))
        if line[3:4] == b' ':
            break
    print('REPLY', lines[-1].rstrip('\r\n'))
    return lines

reply()
sock.sendall(b'EHLO client.test\r\n')
assert 'PIPELINING\r\n' in [l[4:] for l in reply()]
# RFC 2920: the whole transaction up to DATA in one write, then the replies in order.
sock.sendall(b'MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n')
for _ in range(4): reply()
# The end of data and the next transaction in one write.
sock.sendall(b'Subject: one\r\n\r\n..dot\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<d@example.org>\r\nDATA\r\n')
for _ in range(4): reply()
sock.sendall(b'Subject: two\r\n\r\nbody\r\n.\r\nRSET\r\nMAIL FROM:<x@example.org>\r\n'
             + 'RCPT TO:<josé@example.org>\r\n'.encode() + b'DATA\r\nQUIT\r\n')
for _ in range(6): reply()
assert replies.read() == b'', 'bytes after QUIT'
"#,
    );
    ran.assert_success("python raw-socket pipelining");
    let want = [
        "220 mx.test ESMTP fastsmtpd",
        "250 ENHANCEDSTATUSCODES",
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "250 2.1.5 Ok",
        "354 End data with <CR><LF>.<CR><LF>",
        QUEUED_LINE,
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "354 End data with <CR><LF>.<CR><LF>",
        QUEUED_LINE,
        "250 2.0.0 Ok",
        "250 2.1.0 Ok",
        "553 5.6.7 Error: non-ASCII address requires SMTPUTF8",
        "554 5.5.1 Error: no valid recipients",
        "221 2.0.0 Bye",
    ];
    assert_eq!(lines_with(&ran.stdout, "REPLY "), want, "{}", ran.dump());
    let octets =
        ("Subject: one\r\n\r\n.dot\r\n".len() + "Subject: two\r\n\r\nbody\r\n".len()) as u64;
    server.wait_for_stats(|s| s.messages == 2 && s.bytes == octets && s.open_connections == 0);
}

#[test]
fn smtplib_oversize_message_is_refused() {
    let server = TestServer::start(fastsmtpd::config::Config {
        limits: Limits {
            max_message_size: 2048,
            ..Limits::default()
        },
        ..test_config()
    });
    let ran = python(
        &server,
        r#"
big = message('a@example.org', 'b@example.org', 'big', ('y' * 70 + '\n') * 100)
with Recording() as s:
    s.ehlo()
    assert s.esmtp_features.get('size') == '2048', s.esmtp_features
    # smtplib declares SIZE= on MAIL when the server offers SIZE: refused at MAIL.
    try:
        s.send_message(big)
        print('UNEXPECTED accepted with SIZE')
    except smtplib.SMTPSenderRefused as e:
        print('SENDER_REFUSED', e.smtp_code, e.smtp_error.decode())
    # Without SIZE (smtplib only sends it when offered): refused after the data.
    del s.esmtp_features['size']
    try:
        s.send_message(big)
        print('UNEXPECTED accepted without SIZE')
    except smtplib.SMTPDataError as e:
        print('DATA_ERROR', e.smtp_code, e.smtp_error.decode())
    # The session is still in sync.
    s.send_message(message('a@example.org', 'b@example.org', 'small', 'fits\n'))
report(s)
"#,
    );
    ran.assert_success("python smtplib oversize");
    assert!(!ran.stdout.contains("UNEXPECTED"), "{}", ran.dump());
    assert_eq!(
        lines_with(&ran.stdout, "SENDER_REFUSED "),
        [format!("552 {}", &TOO_BIG_LINE[4..])]
    );
    assert_eq!(
        lines_with(&ran.stdout, "DATA_ERROR "),
        [format!("552 {}", &TOO_BIG_LINE[4..])]
    );
    assert_eq!(
        lines_with(&ran.stdout, "DATA "),
        [TOO_BIG_LINE, QUEUED_LINE],
        "{}",
        ran.dump()
    );
    let octets = octets(&ran);
    server.wait_for_stats(|s| s.open_connections == 0 && s.connections == 1);
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (1, octets));
}

// ---------------------------------------------------------------------------------------------
// curl

/// `curl` sending one message to the server from `upload` (a path, or `-` for `stdin`).
#[track_caller]
fn curl(server: &TestServer, rcpts: &[&str], upload: &str, stdin: Option<&[u8]>) -> Output {
    let mut command = CURL.command();
    command
        .args([
            "--silent",
            "--show-error",
            "--verbose",
            "--crlf",
            "--max-time",
            "10",
        ])
        .arg(format!(
            "smtp://127.0.0.1:{}/client.test",
            server.addr.port()
        ))
        .args(["--mail-from", "alice@example.org"]);
    for rcpt in rcpts {
        command.args(["--mail-rcpt", rcpt]);
    }
    command.args(["--upload-file", upload]);
    masked(run_bounded(command, stdin, CHILD_LIMIT))
}

/// The server replies in curl's `--verbose` output (lines `< ...`).
fn curl_replies(ran: &Output) -> Vec<&str> {
    lines_with(&ran.stderr, "< ")
}

/// The commands in curl's `--verbose` output (lines `> ...`).
fn curl_commands(ran: &Output) -> Vec<&str> {
    lines_with(&ran.stderr, "> ")
}

/// A message with dot-stuffing work for curl: leading dots and a lone `.` line.
const CURL_MESSAGE: &str = "From: alice@example.org\nTo: bob@example.org\nSubject: curl\n\n\
                            Hello from curl.\n.leading dot\n.\n..two dots\nlast line\n";

#[test]
fn curl_delivers_a_file() {
    let server = TestServer::start(test_config());
    let file = TempFile::new("curl", CURL_MESSAGE.as_bytes());
    let ran = curl(
        &server,
        &["bob@example.org", "carol@example.org"],
        file.0.to_str().unwrap(),
        None,
    );
    ran.assert_success("curl --upload-file FILE");
    assert!(curl_replies(&ran).contains(&QUEUED_LINE), "{}", ran.dump());
    // curl knows the file's size and declares it (RFC 1870).
    assert!(
        curl_commands(&ran)
            .iter()
            .any(|c| c.starts_with("MAIL FROM:<alice@example.org> SIZE=")),
        "{}",
        ran.dump()
    );
    let octets = crlf(CURL_MESSAGE).len() as u64;
    server.wait_for_stats(|s| s.messages == 1 && s.bytes == octets && s.open_connections == 0);
}

#[test]
fn curl_delivers_stdin() {
    let server = TestServer::start(test_config());
    let ran = curl(
        &server,
        &["bob@example.org"],
        "-",
        Some(CURL_MESSAGE.as_bytes()),
    );
    ran.assert_success("curl --upload-file -");
    assert!(curl_replies(&ran).contains(&QUEUED_LINE), "{}", ran.dump());
    let octets = crlf(CURL_MESSAGE).len() as u64;
    server.wait_for_stats(|s| s.messages == 1 && s.bytes == octets && s.open_connections == 0);
}

#[test]
fn curl_non_ascii_recipient() {
    let server = TestServer::start(test_config());
    let ran = curl(
        &server,
        &["josé@example.org"],
        "-",
        Some(CURL_MESSAGE.as_bytes()),
    );
    let mail = curl_commands(&ran)
        .into_iter()
        .find(|c| c.starts_with("MAIL FROM:"))
        .unwrap_or_else(|| panic!("curl sent no MAIL\n{}", ran.dump()))
        .to_string();
    if mail.split(' ').any(|p| p == "SMTPUTF8") {
        // curl >= 7.71 adds SMTPUTF8 itself when the server offers it and an address needs it.
        ran.assert_success("curl to a UTF-8 recipient with SMTPUTF8");
        assert!(curl_replies(&ran).contains(&QUEUED_LINE), "{}", ran.dump());
        server.wait_for_stats(|s| s.messages == 1 && s.open_connections == 0);
    } else {
        // An older curl: the recipient needs SMTPUTF8 (RFC 6531 §3.5), so curl must fail.
        ran.assert_failure("curl to a UTF-8 recipient without SMTPUTF8");
        assert!(
            curl_replies(&ran).contains(&"553 5.6.7 Error: non-ASCII address requires SMTPUTF8"),
            "{}",
            ran.dump()
        );
        server.wait_for_stats(|s| s.connections == 1 && s.open_connections == 0);
        assert_eq!(server.stats().messages, 0);
    }
}

#[test]
fn curl_fails_on_refusals() {
    let server = TestServer::start(fastsmtpd::config::Config {
        limits: Limits {
            max_message_size: 2048,
            ..Limits::default()
        },
        ..test_config()
    });
    let big = format!(
        "Subject: big\n\n{}",
        format!("{}\n", "z".repeat(70)).repeat(60)
    );

    // A file: curl declares SIZE, the server refuses at MAIL.
    let file = TempFile::new("curl-big", big.as_bytes());
    let ran = curl(
        &server,
        &["bob@example.org"],
        file.0.to_str().unwrap(),
        None,
    );
    ran.assert_failure("curl with an oversize file");
    assert!(curl_replies(&ran).contains(&TOO_BIG_LINE), "{}", ran.dump());

    // stdin: no SIZE, the server reads to the end of the data, then refuses.
    let ran = curl(&server, &["bob@example.org"], "-", Some(big.as_bytes()));
    ran.assert_failure("curl with oversize stdin");
    assert!(curl_replies(&ran).contains(&TOO_BIG_LINE), "{}", ran.dump());
    assert!(curl_commands(&ran).contains(&"DATA"), "{}", ran.dump());

    // The only recipient has bad syntax: 501 5.1.3, and curl gives up.
    let ran = curl(&server, &["no-at-sign"], "-", Some(CURL_MESSAGE.as_bytes()));
    ran.assert_failure("curl with an invalid recipient");
    assert!(
        curl_replies(&ran).contains(&"501 5.1.3 Error: bad recipient address syntax"),
        "{}",
        ran.dump()
    );

    // And a message that fits still goes through.
    let ran = curl(
        &server,
        &["bob@example.org"],
        "-",
        Some(CURL_MESSAGE.as_bytes()),
    );
    ran.assert_success("curl with a message that fits");
    server.wait_for_stats(|s| s.connections == 4 && s.open_connections == 0);
    let stats = server.stop();
    assert_eq!(
        (stats.messages, stats.bytes),
        (1, crlf(CURL_MESSAGE).len() as u64)
    );
}

// ---------------------------------------------------------------------------------------------
// swaks

/// `swaks` sending one message to the server, with `extra` arguments.
#[track_caller]
fn swaks(server: &TestServer, extra: &[&str]) -> Output {
    let mut command = SWAKS.command();
    command
        .arg("--server")
        .arg(format!("127.0.0.1:{}", server.addr.port()))
        .args([
            "--helo",
            "client.test",
            "--from",
            "alice@example.org",
            "--timeout",
            "10",
        ])
        .args(extra);
    masked(run_bounded(command, None, CHILD_LIMIT))
}

/// The position of the first line of swaks' transcript equal to `line`.
#[track_caller]
fn transcript_position(ran: &Output, line: &str) -> usize {
    ran.stdout
        .lines()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no line {line:?} in swaks' transcript\n{}", ran.dump()))
}

#[test]
fn swaks_with_pipelining() {
    let server = TestServer::start(test_config());
    let ran = swaks(
        &server,
        &["--to", "bob@example.org,carol@example.org", "--pipeline"],
    );
    ran.assert_success("swaks --pipeline");
    let queued = transcript_position(&ran, &format!("<-  {QUEUED_LINE}"));
    // It really pipelined: DATA went out before the reply to MAIL came back.
    assert!(
        transcript_position(&ran, " -> DATA") < transcript_position(&ran, "<-  250 2.1.0 Ok"),
        "swaks did not pipeline\n{}",
        ran.dump()
    );
    assert!(queued < transcript_position(&ran, "<-  221 2.0.0 Bye"));
    server.wait_for_stats(|s| s.messages == 1 && s.open_connections == 0);
}

#[test]
fn swaks_without_pipelining() {
    let server = TestServer::start(test_config());
    let ran = swaks(&server, &["--to", "bob@example.org"]);
    ran.assert_success("swaks");
    transcript_position(&ran, &format!("<-  {QUEUED_LINE}"));
    // Lock-step: RCPT only after MAIL's reply.
    assert!(
        transcript_position(&ran, "<-  250 2.1.0 Ok")
            < transcript_position(&ran, " -> RCPT TO:<bob@example.org>"),
        "{}",
        ran.dump()
    );
    server.wait_for_stats(|s| s.messages == 1 && s.open_connections == 0);
}

#[test]
fn swaks_body_with_a_lone_dot_line() {
    let server = TestServer::start(test_config());
    // swaks dot-stuffs the lone "." into ".." (shown in its transcript); were it taken for the
    // end of data, "after the dot" would arrive as a command and the message would be short.
    let data = "Subject: dots\n\nfirst\n.\n..two\nafter the dot";
    let ran = swaks(&server, &["--to", "bob@example.org", "--data", data]);
    ran.assert_success("swaks --data with a lone dot line");
    assert!(transcript_position(&ran, " -> ..") < transcript_position(&ran, " -> after the dot"));
    transcript_position(&ran, &format!("<-  {QUEUED_LINE}"));
    // swaks sends the data as given, lines ending in CRLF, then CRLF "." CRLF.
    let octets = crlf(data).len() as u64 + 2;
    server.wait_for_stats(|s| s.messages == 1 && s.bytes == octets && s.open_connections == 0);

    // And with --body (swaks builds the headers): the same lone "." inside the body.
    let ran = swaks(
        &server,
        &[
            "--to",
            "bob@example.org",
            "--pipeline",
            "--body",
            "first\n.\nlast",
        ],
    );
    ran.assert_success("swaks --body with a lone dot line");
    transcript_position(&ran, &format!("<-  {QUEUED_LINE}"));
    server.wait_for_stats(|s| s.messages == 2 && s.open_connections == 0);
}

#[test]
fn swaks_oversize_is_refused() {
    let server = TestServer::start(fastsmtpd::config::Config {
        limits: Limits {
            max_message_size: 2048,
            ..Limits::default()
        },
        ..test_config()
    });
    let body = format!("{}\n", "q".repeat(70)).repeat(60);
    let ran = swaks(
        &server,
        &["--to", "bob@example.org", "--pipeline", "--body", &body],
    );
    ran.assert_failure("swaks with an oversize body");
    // swaks marks an unexpected reply with "<**".
    transcript_position(&ran, &format!("<** {TOO_BIG_LINE}"));
    server.wait_for_stats(|s| s.connections == 1 && s.open_connections == 0);
    assert_eq!(server.stop().messages, 0);
}

// ---------------------------------------------------------------------------------------------
// lettre

mod with_lettre {
    use super::util::{test_config, TestServer};
    use super::QUEUED_LINE;
    use fastsmtpd::config::Limits;
    use lettre::message::header::{ContentTransferEncoding, ContentType};
    use lettre::message::{Body, Message};
    use lettre::transport::smtp::extension::ClientId;
    use lettre::{SmtpTransport, Transport};
    use std::time::Duration;

    fn transport(server: &TestServer) -> SmtpTransport {
        SmtpTransport::builder_dangerous("127.0.0.1")
            .port(server.addr.port())
            .hello_name(ClientId::Domain("client.test".into()))
            .timeout(Some(Duration::from_secs(10)))
            .build()
    }

    fn message(from: &str, to: &str, subject: &str, body: &str) -> Message {
        Message::builder()
            .from(from.parse().unwrap())
            .to(to.parse().unwrap())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(
                Body::new_with_encoding(body.to_string(), ContentTransferEncoding::EightBit)
                    .unwrap(),
            )
            .unwrap()
    }

    /// The content octets the server counts for `message` sent by lettre: lettre dot-stuffs
    /// and always ends with `CRLF . CRLF`, so the server keeps the message plus one CRLF.
    fn octets(message: &Message) -> u64 {
        message.formatted().len() as u64 + 2
    }

    #[test]
    fn lettre_sends_several_messages() {
        let server = TestServer::start(test_config());
        let mailer = transport(&server);
        assert!(mailer.test_connection().expect("lettre test_connection"));
        let messages = [
            message(
                "Alice <alice@example.org>",
                "Bob <bob@example.org>",
                "plain",
                "Hello Bob.\r\n",
            ),
            message(
                "alice@example.org",
                "bob@example.org",
                "dots",
                ".leading dot\r\n.\r\n..two dots\r\nafter a lone dot\r\n",
            ),
            // A UTF-8 envelope: lettre adds SMTPUTF8 (and BODY=8BITMIME for the 8-bit body).
            message(
                "jörg@exämple.org",
                "josé@exämple.org",
                "grüße",
                "héllo wörld ☃\r\n",
            ),
        ];
        let mut total = 0;
        for message in &messages {
            let response = mailer.send(message).expect("lettre send");
            assert_eq!(response.code().to_string(), "250");
            assert_eq!(
                response.first_line().map(super::mask_queue_ids).as_deref(),
                Some(&QUEUED_LINE[4..]),
                "{response:?}"
            );
            total += octets(message);
        }
        server.wait_for_stats(|s| s.messages == 3 && s.bytes == total && s.open_connections == 0);
        let stats = server.stop();
        assert_eq!((stats.messages, stats.bytes), (3, total));
    }

    #[test]
    fn lettre_oversize_message_is_refused() {
        let server = TestServer::start(fastsmtpd::config::Config {
            limits: Limits {
                max_message_size: 2048,
                ..Limits::default()
            },
            ..test_config()
        });
        let mailer = transport(&server);
        let big = message(
            "alice@example.org",
            "bob@example.org",
            "big",
            &format!("{}\r\n", "w".repeat(70)).repeat(60),
        );
        // lettre declares no SIZE, so the refusal comes after the data.
        let error = mailer
            .send(&big)
            .expect_err("an oversize message must be refused");
        assert_eq!(
            error.status().map(|code| code.to_string()).as_deref(),
            Some("552"),
            "{error:?}"
        );
        assert!(error.is_permanent(), "{error:?}");
        let small = message("alice@example.org", "bob@example.org", "small", "fits\r\n");
        mailer.send(&small).expect("a message that fits");
        server.wait_for_stats(|s| s.connections == 2 && s.open_connections == 0);
        let stats = server.stop();
        assert_eq!((stats.messages, stats.bytes), (1, octets(&small)));
    }
}
