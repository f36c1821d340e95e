//! Fault injection seen by real clients: each kind of rule fires as configured, Python's
//! smtplib raises the matching exception, smtp-loadgen-style raw clients see the exact
//! bytes, and seeded probabilities repeat exactly.

mod util;

use fastsmtpd::config::{Config, Faults};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use util::process::{run_bounded, ChildGuard, CHILD_LIMIT};
use util::{test_config, TestServer, MAIL_OK, REPLY_WAIT};

fn with_faults(rules: &[&str], seed: u64) -> TestServer {
    TestServer::start(Config {
        faults: Faults {
            rules: rules.iter().map(|r| r.to_string()).collect(),
            seed,
            ..Faults::default()
        },
        ..test_config()
    })
}

/// Runs a Python snippet with `smtplib` imported and `PORT` set; returns its stdout lines.
fn python(addr: SocketAddr, body: &str) -> Vec<String> {
    let script = format!("import smtplib, sys, time\nPORT = {}\n{body}", addr.port());
    util::process::run_python(&script)
}

/// A Python function `send(s, n, to)` that sends message `n` and prints the outcome as one
/// line: `ok`, or the exception class and SMTP code.
const SEND: &str = r#"
def reset(s):
    try: s.rset()
    except smtplib.SMTPException: pass

def send(s, n, to="rcpt@example.net", sender="sender@example.org"):
    msg = f"Subject: {n}\r\n\r\nbody {n}\r\n"
    try:
        s.sendmail(sender, [to], msg)
        print("ok")
    except smtplib.SMTPRecipientsRefused as e:
        print("SMTPRecipientsRefused", list(e.recipients.values())[0][0])
        reset(s)
    except smtplib.SMTPSenderRefused as e:
        print("SMTPSenderRefused", e.smtp_code)
        reset(s)
    except smtplib.SMTPDataError as e:
        print("SMTPDataError", e.smtp_code)
        # smtplib leaves the transaction open when DATA itself is refused.
        reset(s)
    except smtplib.SMTPServerDisconnected as e:
        print("SMTPServerDisconnected")
"#;

#[test]
fn recipient_pattern_rejects_only_matching_recipients() {
    let server = with_faults(&["rcpt to=*@bad.example reply=550 5.1.1 No such user"], 0);
    let lines = python(
        server.addr,
        &format!(
            "{SEND}\ns = smtplib.SMTP('127.0.0.1', PORT)\nsend(s, 1)\nsend(s, 2, to='x@bad.example')\nsend(s, 3)\ns.quit()"
        ),
    );
    assert_eq!(lines, ["ok", "SMTPRecipientsRefused 550", "ok"]);
    assert_eq!(server.stop().messages, 2);
}

#[test]
fn sender_data_and_end_of_data_refusals_raise_the_right_exceptions() {
    let server = with_faults(
        &[
            "mail from=spam*@* reply=553 5.7.1 Sender rejected",
            "data nth=2 reply=554 5.3.0 No data today",
            "eod nth=3 reply=451 4.3.0 Could not queue",
        ],
        0,
    );
    let lines = python(
        server.addr,
        &format!(
            "{SEND}\ns = smtplib.SMTP('127.0.0.1', PORT)\nsend(s, 1, sender='spam1@x.example')\n\
             for n in range(2, 6): send(s, n)\ns.quit()"
        ),
    );
    // Message 1 never gets to DATA; message 3 is the second DATA (refused, so it has no end
    // of data); message 5 brings the third end of data.
    assert_eq!(
        lines,
        [
            "SMTPSenderRefused 553",
            "ok",
            "SMTPDataError 554",
            "ok",
            "SMTPDataError 451",
        ]
    );
    let stats = server.stop();
    assert_eq!(stats.messages, 2);
}

#[test]
fn disconnects_with_and_without_421() {
    let server = with_faults(&["rcpt nth=2 disconnect", "mail nth=3 disconnect=421"], 0);
    let lines = python(
        server.addr,
        &format!(
            "{SEND}\nfor n in range(1, 4):\n    s = smtplib.SMTP('127.0.0.1', PORT)\n    send(s, n)\n    try: s.quit()\n    except Exception: pass\n"
        ),
    );
    // The 421 to MAIL: smtplib reports it as a refused sender with code 421 and closes.
    assert_eq!(
        lines,
        ["ok", "SMTPServerDisconnected", "SMTPSenderRefused 421"]
    );
    // The raw bytes of both: nothing at all, then the 421 line.
    let server = with_faults(&["rcpt disconnect", "mail nth=2 disconnect=421"], 0);
    let mut client = server.client();
    client.ehlo();
    client.roundtrip("MAIL FROM:<a@b.example>\r\n", MAIL_OK);
    client.send("RCPT TO:<c@d.example>\r\n");
    client.expect_closed();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip(
        "MAIL FROM:<a@b.example>\r\n",
        "421 4.3.0 Service not available, closing transmission channel\r\n",
    );
    client.expect_closed();
}

/// Bug (reviewer B, F6): `reply=421` answered the command and left the session open (the
/// NOOP behind it got `250`). A 421 closes the channel (RFC 5321 §3.8), as `disconnect=421`
/// and the server's own 421s do.
#[test]
fn a_fault_reply_421_closes_the_session() {
    let server = with_faults(
        &["rset reply=421 rset fault", "helo reply=421 4.3.2 bye"],
        0,
    );
    let mut client = server.client();
    client.ehlo();
    client.send("RSET\r\nNOOP\r\n");
    assert_eq!(
        String::from_utf8(client.read_to_close()).unwrap(),
        "421 4.0.0 rset fault\r\n"
    );
    let mut client = server.client();
    client.send("HELO client.test\r\nNOOP\r\n");
    assert_eq!(
        String::from_utf8(client.read_to_close()).unwrap(),
        "421 4.3.2 bye\r\n"
    );
    let stats = server.stop();
    assert_eq!(stats.error_replies.fault, [2, 0]);
}

/// Bug (reviewer B, F7): `connect reply=554` closed at once. RFC 5321 §3.1: after a 554
/// greeting the server "MUST still wait for the client to send a QUIT ... and SHOULD
/// respond to any intervening commands with "503 bad sequence of commands"".
#[test]
fn a_554_greeting_waits_for_quit_and_answers_503_to_the_rest() {
    let server = with_faults(&["connect nth=1 reply=554 5.7.1 No service for you"], 0);
    let mut client = util::Client::connect(server.addr);
    client.expect("554 5.7.1 No service for you\r\n");
    let refused = "503 5.5.1 Error: this session was refused, send QUIT\r\n";
    client.roundtrip("EHLO client.test\r\n", refused);
    client.roundtrip("MAIL FROM:<a@b.example>\r\n", refused);
    client.roundtrip("QUIT\r\n", util::BYE);
    client.expect_closed();
    // The rule fired once: the next connection is greeted.
    let mut client = server.client();
    client.roundtrip("QUIT\r\n", util::BYE);
}

#[test]
fn a_refused_connection_and_a_late_greeting() {
    let server = with_faults(&["connect nth=1 reply=554 5.7.1 No service for you"], 0);
    let lines = python(
        server.addr,
        "try:\n    smtplib.SMTP('127.0.0.1', PORT)\n    print('connected')\nexcept smtplib.SMTPConnectError as e:\n    print('SMTPConnectError', e.smtp_code)\ns = smtplib.SMTP('127.0.0.1', PORT)\nprint(s.noop()[0])\ns.quit()",
    );
    assert_eq!(lines, ["SMTPConnectError 554", "250"]);

    let server = with_faults(&["connect delay=300ms"], 0);
    let start = Instant::now();
    let client = server.client();
    // The greeting cannot arrive before the delay (a lower bound, not a speed check).
    assert!(
        start.elapsed() >= Duration::from_millis(290),
        "{:?}",
        start.elapsed()
    );
    drop(client);
}

#[test]
fn delays_hold_the_reply_and_what_follows_it() {
    let server = with_faults(
        &[
            "data delay=300ms",
            "eod delay=200ms reply=451 4.3.0 Slow and failed",
        ],
        0,
    );
    let mut client = server.client();
    client.ehlo();
    let start = Instant::now();
    // Pipelined: the 354 waits 300 ms, and so do the replies queued behind nothing else.
    client.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n");
    client.expect("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
    assert!(
        start.elapsed() >= Duration::from_millis(290),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    client.send("Subject: x\r\n\r\nhello\r\n.\r\nNOOP\r\n");
    client.expect("451 4.3.0 Slow and failed\r\n250 2.0.0 Ok\r\n");
    assert!(
        start.elapsed() >= Duration::from_millis(190),
        "{:?}",
        start.elapsed()
    );
    client.roundtrip("QUIT\r\n", "221 2.0.0 Bye\r\n");
    assert_eq!(server.stop().messages, 0);
}

#[test]
fn an_injected_bdat_refusal_still_reads_the_chunk() {
    let server = with_faults(&["bdat nth=1 reply=552 5.3.4 Chunk refused"], 0);
    let mut client = server.client();
    client.ehlo();
    client.send(
        "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 6 LAST\r\nQUIT\r\nRSET\r\n",
    );
    // "QUIT\r\n" are chunk octets, not a command; RSET is the next command.
    client.expect("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n552 5.3.4 Chunk refused\r\n250 2.0.0 Ok\r\n");
    client.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 5 LAST\r\nhello");
    client.expect("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as [queue id]\r\n");
    assert_eq!(server.stop().messages, 1);
}

/// Which of 60 messages (one connection, in order) got through with `rule` and `seed`.
fn outcomes(rule: &str, seed: u64) -> Vec<String> {
    let server = with_faults(&[rule], seed);
    python(
        server.addr,
        &format!(
            "{SEND}\ns = smtplib.SMTP('127.0.0.1', PORT)\nfor n in range(60): send(s, n)\ns.quit()"
        ),
    )
}

#[test]
fn seeded_probability_faults_repeat_exactly() {
    let rule = "rcpt p=0.3 reply=450 4.2.1 Mailbox busy";
    let first = outcomes(rule, 42);
    assert_eq!(first, outcomes(rule, 42), "same seed, same faults");
    assert_ne!(first, outcomes(rule, 43), "another seed, other faults");
    let refused = first
        .iter()
        .filter(|l| *l == "SMTPRecipientsRefused 450")
        .count();
    assert!(
        (5..=35).contains(&refused),
        "{refused} of 60 refused at p=0.3"
    );
    assert_eq!(refused + first.iter().filter(|l| *l == "ok").count(), 60);
}

#[test]
fn bad_rules_are_refused_at_start() {
    let config = Config {
        faults: Faults {
            rules: vec!["rcpt p=2 disconnect".into()],
            ..Faults::default()
        },
        ..test_config()
    };
    let error = fastsmtpd::server::start(&config).expect_err("refused");
    assert!(error.to_string().contains("probability"), "{error}");
}

#[test]
fn greylisting_refuses_until_the_retry_comes_late_enough() {
    let server = with_faults(&["rcpt greylist=1s"], 0);
    let lines = python(
        server.addr,
        &format!(
            "{SEND}\ns = smtplib.SMTP('127.0.0.1', PORT)\nsend(s, 1)\nsend(s, 2)\ntime.sleep(1.2)\nsend(s, 3)\nsend(s, 4, to='other@example.net')\ns.quit()"
        ),
    );
    assert_eq!(
        lines,
        [
            "SMTPRecipientsRefused 451",
            "SMTPRecipientsRefused 451",
            "ok",
            "SMTPRecipientsRefused 451",
        ]
    );
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn a_per_client_rate_limit_refuses_beyond_the_rate() {
    let server = with_faults(&["mail rate=5/s reply=450 4.7.0 Slow down"], 0);
    let mut client = server.client();
    client.ehlo();
    // Ten MAIL/RSET pairs in one write are handled in microseconds: five tokens, five refusals.
    client.send("MAIL FROM:<a@b.example>\r\nRSET\r\n".repeat(10));
    let mut expected = String::new();
    for i in 0..10 {
        expected.push_str(if i < 5 {
            MAIL_OK
        } else {
            "450 4.7.0 Slow down\r\n"
        });
        expected.push_str("250 2.0.0 Ok\r\n");
    }
    client.expect(expected);
}

#[test]
fn rules_from_a_toml_file() {
    let dir = std::env::temp_dir().join(format!("fastsmtpd-fault-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("faults.toml");
    std::fs::write(
        &file,
        "seed = 3\nrules = [\"rcpt to=*@bad.example reply=550 5.1.1 No such user\"]\n",
    )
    .unwrap();
    let listen = util::free_local_addr();
    let mut command = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command
        .args([
            "--listen",
            &listen,
            "--hostname",
            "mx.test",
            "--exit-after-sessions",
            "1",
        ])
        .arg("--fault-file")
        .arg(&file);
    let mut child = ChildGuard::spawn(command);
    let line = child.next_line(REPLY_WAIT);
    assert!(line.starts_with("fastsmtpd listening on "), "{line}");
    let lines = python(
        listen.parse().unwrap(),
        &format!("{SEND}\ns = smtplib.SMTP('127.0.0.1', PORT)\nsend(s, 1, to='x@bad.example')\nsend(s, 2)\ns.quit()"),
    );
    assert_eq!(lines, ["SMTPRecipientsRefused 550", "ok"]);
    let exited = child.wait(CHILD_LIMIT);
    assert!(exited.status.success(), "{}", exited.dump());
    let rest = exited.stdout;
    assert!(rest.contains("fired 1 times"), "{rest}");

    // A broken file stops the server before it starts, with the reason.
    std::fs::write(&file, "rules = [\"rcpt nth=0 disconnect\"]\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command
        .args(["--listen", "127.0.0.1:0", "--fault-file"])
        .arg(&file);
    let output = run_bounded(command, None, CHILD_LIMIT);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stderr.contains("at least 1"));

    // Review of issue 17, F1: a device filled memory and a FIFO hung the start; both are
    // refused with exit status 2.
    let fifo = dir.join("faults.fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for path in [std::path::Path::new("/dev/zero"), &fifo] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
        command
            .args(["--listen", "127.0.0.1:0", "--fault-file"])
            .arg(path);
        let output = run_bounded(command, None, CHILD_LIMIT);
        assert_eq!(output.status.code(), Some(2), "{}", path.display());
        assert!(
            output.stderr.contains(": not a regular file"),
            "{}",
            output.stderr
        );
    }
    std::fs::remove_file(&fifo).unwrap();
}
