//! DSN (RFC 3461) through the relay end to end: the fastsmtpd binary as the relay (`--spool
//! DIR --relay-to HOP`), a raw socket as the sender, and as the next hop either a second
//! fastsmtpd (a sink: it does not relay, so it does not offer DSN) keeping what arrives, or a
//! small scripted SMTP server in this file when the next hop must offer DSN or lack
//! 8BITMIME / SMTPUTF8 (a fastsmtpd always offers those two).
//!
//! Checks: the parameters arrive at a DSN-offering hop unchanged; `NOTIFY=NEVER` keeps a
//! refused recipient from making a notification; `NOTIFY=SUCCESS` toward a hop without DSN
//! gets one `relayed` notification (with `ORCPT` and `ENVID` in it); `RET=FULL` returns the
//! whole message; `--delay-warning` sends one `delayed` notification, then the expiry one
//! `failed`; an 8-bit or SMTPUTF8 message toward a hop lacking the extension is bounced with
//! `5.6.3` / `5.6.7`. Bounded waits only (polling), no timed assertion.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::process::ChildGuard;
use util::relay::{self, Sink, SETTLE_WAIT};
use util::Client;

/// How long a test looks for mail that must not come, after what must has come.
const QUIET_WAIT: Duration = Duration::from_millis(700);

/// Starts the relay spooling in `DIR/spool`, delivering to `next_hop` with quick retries
/// (`util::relay::start_relay`), with `extra` flags.
fn start_relay(dir: &Path, next_hop: SocketAddr, extra: &[&str]) -> (ChildGuard, SocketAddr) {
    let mut args = vec!["--retry", "200ms", "--queue-lifetime", "5s"];
    args.extend_from_slice(extra);
    relay::start_relay(dir, &[next_hop], &args)
}

/// Sends one message over a raw socket: `mail` and `rcpts` are whole command lines without
/// CR LF (parameters and all), `content` the DATA (no line starts with a dot). Asserts every
/// reply is positive and returns the final one.
fn send(addr: SocketAddr, mail: &str, rcpts: &[&str], content: &[u8]) -> String {
    let mut client = Client::connect(addr);
    assert!(client.read_reply().starts_with("220 "));
    client.send("EHLO client.test\r\n");
    let ehlo = client.read_reply();
    assert!(ehlo.contains("250-DSN"), "a relay offers DSN: {ehlo}");
    client.send(format!("{mail}\r\n"));
    let reply = client.read_reply();
    assert!(reply.starts_with("250 "), "{mail}: {reply}");
    for rcpt in rcpts {
        client.send(format!("{rcpt}\r\n"));
        let reply = client.read_reply();
        assert!(reply.starts_with("250 "), "{rcpt}: {reply}");
    }
    client.send("DATA\r\n");
    assert!(client.read_reply().starts_with("354 "));
    client.send(content);
    client.send(".\r\n");
    let reply = client.read_reply();
    client.send("QUIT\r\n");
    reply
}

/// The notifications among `found` (reverse path `<>`), as text.
fn notifications(found: &[(serde_json::Value, Vec<u8>)]) -> Vec<String> {
    found
        .iter()
        .filter(|(record, _)| record["mail_from"] == "")
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
        .collect()
}

/// One transaction as the scripted hop saw it.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// The `MAIL` command line.
    mail: String,
    /// The `RCPT` command lines.
    rcpts: Vec<String>,
    /// The content, dot-stuffed as received.
    data: Vec<u8>,
}

/// A scripted next hop: its EHLO lists `extensions` (e.g. `DSN`, `8BITMIME`), it accepts
/// every command and message, and records the transactions.
struct ScriptedHop {
    /// Where it listens.
    addr: SocketAddr,
    /// What it saw.
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl ScriptedHop {
    fn start(extensions: &'static [&'static str]) -> ScriptedHop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    let _ = serve(stream, extensions, &record);
                });
            }
        });
        ScriptedHop { addr, seen }
    }

    /// Waits (bounded) until `n` transactions were seen, and returns them.
    fn wait_for(&self, n: usize) -> Vec<Seen> {
        let start = Instant::now();
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                start.elapsed() < SETTLE_WAIT,
                "{} of {n} transactions",
                seen.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One connection of the scripted hop (bounded by a read timeout).
fn serve(stream: TcpStream, extensions: &[&str], record: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 hop.test ESMTP scripted\r\n")?;
    let mut current = Seen::default();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let verb = command
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                let mut reply = String::from("250-hop.test\r\n250-PIPELINING\r\n");
                for extension in extensions {
                    reply.push_str(&format!("250-{extension}\r\n"));
                }
                reply.push_str("250 ENHANCEDSTATUSCODES\r\n");
                reply
            }
            "MAIL" => {
                current = Seen {
                    mail: command,
                    ..Seen::default()
                };
                "250 2.1.0 Ok\r\n".to_string()
            }
            "RCPT" => {
                current.rcpts.push(command);
                "250 2.1.5 Ok\r\n".to_string()
            }
            "DATA" => {
                out.write_all(b"354 go on\r\n")?;
                let mut data = Vec::new();
                loop {
                    let mut piece = Vec::new();
                    if lines.read_until(b'\n', &mut piece)? == 0 {
                        return Ok(());
                    }
                    if piece == b".\r\n" {
                        break;
                    }
                    data.extend_from_slice(&piece);
                }
                current.data = data;
                record.lock().unwrap().push(std::mem::take(&mut current));
                "250 2.0.0 Ok: queued\r\n".to_string()
            }
            "QUIT" => {
                out.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            _ => "250 2.0.0 Ok\r\n".to_string(),
        };
        out.write_all(reply.as_bytes())?;
    }
}

/// RFC 3461 §5.2.1: toward a next hop that offers DSN the relay passes `RET`, `ENVID`,
/// `NOTIFY` and `ORCPT` on unchanged, and owes no notification of its own.
#[test]
fn dsn_parameters_arrive_unchanged_at_a_hop_that_offers_dsn() {
    let dir = util::scratch_dir("relay-dsn-pass");
    let hop = ScriptedHop::start(&["DSN", "8BITMIME", "SMTPUTF8"]);
    let (_relay, relay_addr) = start_relay(&dir, hop.addr, &[]);
    let reply = send(
        relay_addr,
        "MAIL FROM:<a@x.test> RET=FULL ENVID=QQ+2B314159",
        &[
            "RCPT TO:<r@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;R+2Bx@y.test",
            "RCPT TO:<s@y.test>",
            "RCPT TO:<t@y.test> NOTIFY=NEVER",
        ],
        b"Subject: passed on\r\n\r\nbody\r\n",
    );
    assert!(reply.starts_with("250 "), "{reply:?}");
    let seen = hop.wait_for(1);
    let sent = &seen[0];
    assert_eq!(sent.mail, "MAIL FROM:<a@x.test> RET=FULL ENVID=QQ+2B314159");
    assert_eq!(
        sent.rcpts,
        [
            "RCPT TO:<r@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;R+2Bx@y.test",
            "RCPT TO:<s@y.test>",
            "RCPT TO:<t@y.test> NOTIFY=NEVER",
        ]
    );
    // The hop offers DSN: it reports from here on, so no `relayed` notification comes.
    std::thread::sleep(QUIET_WAIT);
    assert_eq!(hop.seen.lock().unwrap().len(), 1, "no notification");
}

/// `NOTIFY=NEVER` on a refused recipient: no notification; the same refusal without NOTIFY
/// (FAILURE by default) gets one, which shows the first would have come by then.
#[test]
fn notify_never_keeps_a_refused_recipient_from_making_a_notification() {
    let dir = util::scratch_dir("relay-dsn-never");
    let sink = Sink::start(&dir, &["rcpt to=bad@* reply=550 5.1.1 No such user"], &[]);
    let (_relay, relay_addr) = start_relay(&dir, sink.addr, &[]);
    let reply = send(
        relay_addr,
        "MAIL FROM:<a@x.test>",
        &["RCPT TO:<good@y.test>", "RCPT TO:<bad@y.test> NOTIFY=NEVER"],
        b"Subject: never\r\n\r\nbody\r\n",
    );
    assert!(reply.starts_with("250 "), "{reply:?}");
    sink.wait_for(1);
    let reply = send(
        relay_addr,
        "MAIL FROM:<a@x.test>",
        &["RCPT TO:<bad@y.test>"],
        b"Subject: default\r\n\r\nbody\r\n",
    );
    assert!(reply.starts_with("250 "), "{reply:?}");
    let found = sink.wait_for(2);
    std::thread::sleep(QUIET_WAIT);
    let found = if sink.arrived().len() > found.len() {
        sink.arrived()
    } else {
        found
    };
    let notices = notifications(&found);
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert!(notices[0].contains("Subject: default"), "{}", notices[0]);
    assert!(notices[0].contains("Action: failed"), "{}", notices[0]);
}

/// RFC 3461 §5.2.2: `NOTIFY=SUCCESS` toward a next hop without DSN (a sink) gets one
/// `relayed` notification, which names the `ORCPT` and the `ENVID` decoded (§6.3).
#[test]
fn notify_success_toward_a_hop_without_dsn_gets_one_relayed_notification() {
    let dir = util::scratch_dir("relay-dsn-relayed");
    let sink = Sink::start(&dir, &[], &[]);
    let (_relay, relay_addr) = start_relay(&dir, sink.addr, &[]);
    let reply = send(
        relay_addr,
        "MAIL FROM:<a@x.test> ENVID=ENV+2B1",
        &[
            "RCPT TO:<r@y.test> NOTIFY=SUCCESS ORCPT=rfc822;orig+2Bx@y.test",
            "RCPT TO:<q@y.test>",
        ],
        b"Subject: tell me\r\n\r\nbody\r\n",
    );
    assert!(reply.starts_with("250 "), "{reply:?}");
    let found = sink.wait_for(2);
    std::thread::sleep(QUIET_WAIT);
    assert_eq!(sink.arrived().len(), 2, "one copy and one notification");
    let notices = notifications(&found);
    assert_eq!(notices.len(), 1, "{found:#?}");
    let text = &notices[0];
    assert!(text.contains("Action: relayed"), "{text}");
    assert!(text.contains("Final-Recipient: rfc822; r@y.test"), "{text}");
    assert!(
        !text.contains("q@y.test"),
        "only the one that asked: {text}"
    );
    assert!(
        text.contains("Original-Recipient: rfc822; orig+x@y.test"),
        "{text}"
    );
    assert!(text.contains("Original-Envelope-Id: ENV+1"), "{text}");
    assert!(text.contains("Status: 2."), "{text}");
    assert!(
        text.contains("Subject: tell me"),
        "the original's header: {text}"
    );
    // The notification itself asks for nothing (its reverse path is `<>`).
    let (record, _) = found
        .iter()
        .find(|(record, _)| record["mail_from"] == "")
        .unwrap();
    assert_eq!(record["rcpt_to"], serde_json::json!(["a@x.test"]));
}

/// `RET=FULL` (RFC 3461 §4.3): the failure notification holds the whole original.
#[test]
fn ret_full_returns_the_whole_message_in_the_failure_notification() {
    let dir = util::scratch_dir("relay-dsn-full");
    let sink = Sink::start(&dir, &["rcpt to=bad@* reply=550 5.1.1 No such user"], &[]);
    let (_relay, relay_addr) = start_relay(&dir, sink.addr, &[]);
    for (ret, subject) in [(" RET=FULL", "full"), ("", "headers")] {
        let reply = send(
            relay_addr,
            &format!("MAIL FROM:<a@x.test>{ret}"),
            &["RCPT TO:<bad@y.test>"],
            format!("Subject: {subject}\r\n\r\nthe body of {subject}\r\n").as_bytes(),
        );
        assert!(reply.starts_with("250 "), "{reply:?}");
    }
    let found = sink.wait_for(2);
    let notices = notifications(&found);
    assert_eq!(notices.len(), 2);
    let full = notices
        .iter()
        .find(|n| n.contains("Subject: full"))
        .unwrap();
    assert!(full.contains("message/rfc822"), "{full}");
    assert!(full.contains("the body of full"), "{full}");
    let headers = notices
        .iter()
        .find(|n| n.contains("Subject: headers"))
        .unwrap();
    assert!(headers.contains("text/rfc822-headers"), "{headers}");
    assert!(!headers.contains("the body of headers"), "{headers}");
}

/// `--delay-warning 1s` with a recipient the next hop always defers: one `delayed`
/// notification (not one per attempt), then at the queue lifetime's end one `failed`.
#[test]
fn a_delay_warning_comes_once_then_the_expiry_notification() {
    let dir = util::scratch_dir("relay-dsn-delay");
    let sink = Sink::start(
        &dir,
        &["rcpt to=slow@* reply=451 4.2.0 try again later"],
        &[],
    );
    let (_relay, relay_addr) = start_relay(&dir, sink.addr, &["--delay-warning", "1s"]);
    let reply = send(
        relay_addr,
        "MAIL FROM:<a@x.test>",
        &["RCPT TO:<slow@y.test>"],
        b"Subject: slow\r\n\r\nbody\r\n",
    );
    assert!(reply.starts_with("250 "), "{reply:?}");
    let found = sink.wait_for(2);
    std::thread::sleep(QUIET_WAIT);
    let found = if sink.arrived().len() > found.len() {
        sink.arrived()
    } else {
        found
    };
    let notices = notifications(&found);
    assert_eq!(notices.len(), 2, "{notices:#?}");
    let delayed = notices
        .iter()
        .find(|n| n.contains("Action: delayed"))
        .expect("a delay warning");
    assert!(delayed.contains("Will-Retry-Until:"), "{delayed}");
    assert!(delayed.contains("Status: 4.2.0"), "{delayed}");
    assert!(delayed.contains("451"), "{delayed}");
    assert!(
        delayed.contains("Remote-MTA: dns; 127.0.0.1\r\n"),
        "{delayed}"
    );
    let failed = notices
        .iter()
        .find(|n| n.contains("Action: failed"))
        .expect("the expiry notification");
    assert!(failed.contains("451 4.2.0 try again later"), "{failed}");
    assert!(
        failed.contains("Remote-MTA: dns; 127.0.0.1\r\n"),
        "{failed}"
    );
}

/// RFC 3464 §2.3.5: a recipient the next hop refused is reported with that next hop as
/// `Remote-MTA` (named as `--relay-to` gave it, here its IP address) beside its reply.
#[test]
fn a_refused_recipient_is_reported_with_the_next_hop_that_refused_it() {
    let dir = util::scratch_dir("relay-dsn-remote-mta");
    let sink = Sink::start(&dir, &["rcpt to=bad@* reply=550 5.1.1 No such user"], &[]);
    let (_relay, relay_addr) = start_relay(&dir, sink.addr, &[]);
    let reply = send(
        relay_addr,
        "MAIL FROM:<a@x.test>",
        &["RCPT TO:<good@y.test>", "RCPT TO:<bad@y.test>"],
        b"Subject: refused\r\n\r\nbody\r\n",
    );
    assert!(reply.starts_with("250 "), "{reply:?}");
    let found = sink.wait_for(2);
    let notices = notifications(&found);
    assert_eq!(notices.len(), 1, "{found:#?}");
    let text = &notices[0];
    assert!(
        text.contains("Final-Recipient: rfc822; bad@y.test"),
        "{text}"
    );
    assert!(text.contains("Action: failed"), "{text}");
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(text.contains("Remote-MTA: dns; 127.0.0.1\r\n"), "{text}");
    assert!(
        text.contains("Diagnostic-Code: smtp; 550 5.1.1 No such user"),
        "{text}"
    );
    assert!(text.contains("127.0.0.1 said: 550 5.1.1"), "{text}");
    assert!(!text.contains("good@y.test"), "{text}");
}

/// RFC 6152 / RFC 6531, no downgrading: an 8-bit message toward a next hop without 8BITMIME
/// fails with `5.6.3`, an SMTPUTF8 one toward a hop without SMTPUTF8 with `5.6.7`; each gets
/// one notification (ASCII, so the same hop takes it). The hop offers DSN: the
/// notifications go `MAIL FROM:<>` with `NOTIFY=NEVER` (the relay's decision, docs/relay.md).
#[test]
fn eight_bit_and_smtputf8_toward_a_hop_lacking_them_are_bounced() {
    let dir = util::scratch_dir("relay-dsn-8bit");
    let hop = ScriptedHop::start(&["DSN"]);
    let (_relay, relay_addr) = start_relay(&dir, hop.addr, &[]);
    let reply = send(
        relay_addr,
        "MAIL FROM:<a@x.test> BODY=8BITMIME",
        &["RCPT TO:<r@y.test>"],
        "Subject: eight\r\n\r\ncaf\u{e9}\r\n".as_bytes(),
    );
    assert!(reply.starts_with("250 "), "{reply:?}");
    let reply = send(
        relay_addr,
        "MAIL FROM:<b@x.test> SMTPUTF8",
        &["RCPT TO:<r@y.test>"],
        b"Subject: utf8\r\n\r\nascii body\r\n",
    );
    assert!(reply.starts_with("250 "), "{reply:?}");
    let seen = hop.wait_for(2);
    std::thread::sleep(QUIET_WAIT);
    let seen = {
        let now = hop.seen.lock().unwrap().clone();
        if now.len() > seen.len() {
            now
        } else {
            seen
        }
    };
    // Only the two notifications reach the hop; neither original does.
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for sent in &seen {
        assert_eq!(sent.mail, "MAIL FROM:<>", "no RET or ENVID of its own");
    }
    let text = |to: &str| {
        let sent = seen
            .iter()
            .find(|s| s.rcpts == [format!("RCPT TO:<{to}> NOTIFY=NEVER")])
            .unwrap_or_else(|| panic!("a notification to {to}: {seen:#?}"));
        String::from_utf8_lossy(&sent.data).into_owned()
    };
    let eight = text("a@x.test");
    assert!(eight.contains("Action: failed"), "{eight}");
    assert!(eight.contains("Status: 5.6.3"), "{eight}");
    assert!(eight.contains("Subject: eight"), "{eight}");
    let utf8 = text("b@x.test");
    assert!(utf8.contains("Action: failed"), "{utf8}");
    assert!(utf8.contains("Status: 5.6.7"), "{utf8}");
    assert!(utf8.contains("Subject: utf8"), "{utf8}");
}
