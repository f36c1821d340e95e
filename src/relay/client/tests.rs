//! The client session's scripted conversations: the next hop's replies in turns, a driver that
//! acts on every event as the delivery loop will, and the exact octets the client wrote and
//! the events it gave. Every script is run whole, with each turn cut at every offset, and
//! byte by byte: the octets written and the events must not change.

use std::collections::VecDeque;

use super::reply::{next_reply, EnhancedStatus, MAX_REPLY_LINES, MAX_REPLY_LINE_LEN};
use super::session::*;
use crate::proto::dsn::{Notify, Ret};

/// A body with a line that starts with a dot: 10 octets, 11 once stuffed.
const BODY: &[u8] = b"Hi\r\n.dot\r\n";

const GREETING: &[u8] = b"220 mx.test ESMTP\r\n";
/// No PIPELINING: one command per reply.
const EHLO_PLAIN: &[u8] = b"250-mx.test\r\n250-SIZE 1000\r\n250 8BITMIME\r\n";
const EHLO_PIPELINING: &[u8] =
    b"250-mx.test greets you\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
const EHLO_CHUNKING: &[u8] = b"250-mx.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
const EHLO_CHUNKING_ALONE: &[u8] = b"250-mx.test\r\n250 CHUNKING\r\n";
const EHLO_DSN: &[u8] =
    b"250-mx.test\r\n250-PIPELINING\r\n250-DSN\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n";
const BYE: &[u8] = b"221 2.0.0 bye\r\n";

/// One message the test driver sends.
#[derive(Debug, Clone)]
struct Message {
    /// The reverse path.
    from: &'static str,
    /// The forward paths.
    to: Vec<&'static str>,
    /// The content.
    body: &'static [u8],
    /// `Envelope::eight_bit`.
    eight_bit: bool,
    /// `Envelope::binary`.
    binary: bool,
    /// `Envelope::smtputf8`.
    smtputf8: bool,
    /// `Envelope::size` when not the body's length.
    size: Option<u64>,
    /// Ask for DSN parameters (RET=HDRS, ENVID, NOTIFY=SUCCESS,FAILURE, ORCPT).
    dsn: bool,
}

fn msg(to: &[&'static str]) -> Message {
    Message {
        from: "a@x",
        to: to.to_vec(),
        body: BODY,
        eight_bit: false,
        binary: false,
        smtputf8: false,
        size: None,
        dsn: false,
    }
}

/// What the driver does once every turn is fed.
#[derive(Debug, Clone, Copy)]
enum End {
    Nothing,
    Timeout,
    Disconnect,
}

/// A conversation: our side's plan and the next hop's turns.
#[derive(Debug, Clone)]
struct Script {
    config: ClientConfig,
    messages: Vec<Message>,
    /// Content is fed in chunks of this many octets.
    chunk: usize,
    /// `finish()` once no message is left.
    quit: bool,
    /// What the next hop sends, one turn per client write it answers.
    turns: Vec<&'static [u8]>,
    end: End,
}

fn config() -> ClientConfig {
    ClientConfig {
        tls: TlsPolicy::Off,
        ..ClientConfig::new("relay.test")
    }
}

fn script(turns: &[&'static [u8]]) -> Script {
    Script {
        config: config(),
        messages: vec![msg(&["b@y"])],
        chunk: 64,
        quit: true,
        turns: turns.to_vec(),
        end: End::Nothing,
    }
}

/// How the turns are cut.
#[derive(Debug, Clone, Copy)]
enum Split {
    Whole,
    At { turn: usize, offset: usize },
    Bytes,
}

/// The driver: the delivery loop's part, minus sockets and time.
struct Driver {
    session: ClientSession,
    messages: VecDeque<Message>,
    chunk: usize,
    quit: bool,
    /// The body being sent and how much of it went.
    current: Option<(&'static [u8], usize)>,
    /// Everything the client wrote; `[tls]` marks the handshake.
    wire: Vec<u8>,
    /// Each event, summed up.
    events: Vec<String>,
    started: usize,
}

impl Driver {
    fn react(&mut self) {
        loop {
            self.session.commands_into(&mut self.wire);
            let Some(event) = self.session.next_event() else {
                break;
            };
            assert!(
                !self.events.iter().any(|e| e.starts_with("closed")),
                "an event after Closed: {event:?}"
            );
            self.events.push(summary(&event));
            match event {
                // Events can be stale: a Ready or StartTls read after the session closed in
                // the same input is refused (NotNow), and the message stays with the driver.
                Event::Ready => {
                    if let Some(message) = self.messages.front().cloned() {
                        if self.start(&message) {
                            self.messages.pop_front();
                        }
                    } else if self.quit {
                        let _ = self.session.finish();
                    }
                }
                Event::StartTls => {
                    if self.session.on_tls_established().is_ok() {
                        // The EHLO it wrote is taken at the next turn of the loop.
                        self.wire.extend_from_slice(b"[tls]");
                    }
                }
                Event::Content => self.feed(),
                Event::TransactionDone(_) | Event::Closed { .. } => {}
            }
        }
    }

    /// Starts `message`; false when the session cannot take it now.
    fn start(&mut self, message: &Message) -> bool {
        let recipients: Vec<Recipient<'_>> = message
            .to
            .iter()
            .map(|to| Recipient {
                forward_path: to.as_bytes(),
                notify: if message.dsn {
                    Notify::SUCCESS.union(Notify::FAILURE)
                } else {
                    Notify::ABSENT
                },
                orcpt: message.dsn.then_some(&b"rfc822;orig@y"[..]),
            })
            .collect();
        let envelope = Envelope {
            reverse_path: message.from.as_bytes(),
            recipients: &recipients,
            size: message.size.unwrap_or(message.body.len() as u64),
            eight_bit: message.eight_bit,
            binary: message.binary,
            smtputf8: message.smtputf8,
            ret: message.dsn.then_some(Ret::Headers),
            envid: message.dsn.then_some(&b"id+2B1"[..]),
        };
        if self.session.start_transaction(&envelope).is_err() {
            return false;
        }
        self.current = Some((message.body, 0));
        self.started += 1;
        true
    }

    fn feed(&mut self) {
        let Some((body, mut offset)) = self.current else {
            panic!("content asked for without a message");
        };
        while self.session.accepts_content() {
            let end = (offset + self.chunk).min(body.len());
            let last = end == body.len();
            self.session
                .content_into(&body[offset..end], last, &mut self.wire)
                .unwrap();
            offset = end;
            if last {
                break;
            }
        }
        self.current = Some((body, offset));
    }
}

/// An event as one line: `ready`, `content`, `starttls`, `done [...] message N`, `closed ...`.
fn summary(event: &Event) -> String {
    match event {
        Event::Ready => "ready".into(),
        Event::Content => "content".into(),
        Event::StartTls => "starttls".into(),
        Event::TransactionDone(report) => {
            let outcomes: Vec<String> = report
                .recipients
                .iter()
                .map(|outcome| {
                    let verdict = match outcome.verdict {
                        Verdict::Delivered => "delivered",
                        Verdict::Deferred => "deferred",
                        Verdict::Failed => "failed",
                    };
                    format!("{verdict} {}", reason(&outcome.reason))
                })
                .collect();
            let message = match &report.message {
                Some(reply) => format!(" message {}", reply.code),
                None => String::new(),
            };
            format!("done [{}]{message}", outcomes.join(", "))
        }
        Event::Closed { error: None } => "closed".into(),
        Event::Closed { error: Some(why) } => format!("closed {}", reason(why)),
    }
}

fn reason(reason: &Reason) -> String {
    match reason {
        Reason::Remote(reply) => reply.code.to_string(),
        Reason::Local(local) => format!("{local:?}"),
    }
}

/// Runs a script with its turns cut as `split` says: what the client wrote, and the events.
fn run(script: &Script, split: Split) -> (String, Vec<String>) {
    let mut driver = Driver {
        session: ClientSession::new(&script.config).unwrap(),
        messages: script.messages.iter().cloned().collect(),
        chunk: script.chunk,
        quit: script.quit,
        current: None,
        wire: Vec::new(),
        events: Vec::new(),
        started: 0,
    };
    let mut carry: Vec<u8> = Vec::new();
    for (index, turn) in script.turns.iter().enumerate() {
        let pieces: Vec<&[u8]> = match split {
            Split::Whole => vec![turn],
            Split::At { turn: at, offset } if at == index => {
                vec![&turn[..offset], &turn[offset..]]
            }
            Split::At { .. } => vec![turn],
            Split::Bytes => turn.chunks(1).collect(),
        };
        for piece in pieces {
            carry.extend_from_slice(piece);
            let used = driver.session.on_input(&carry);
            assert!(used <= carry.len());
            carry.drain(..used);
            driver.react();
        }
    }
    match script.end {
        End::Nothing => {}
        End::Timeout => driver.session.on_timeout(),
        End::Disconnect => driver.session.on_disconnect(),
    }
    driver.react();
    let done = driver
        .events
        .iter()
        .filter(|e| e.starts_with("done"))
        .count();
    assert_eq!(done, driver.started, "one report per transaction started");
    (
        String::from_utf8_lossy(&driver.wire).into_owned(),
        driver.events,
    )
}

/// Runs a script whole and checks it, then cut at every offset of every turn and byte by
/// byte, which must change nothing.
fn check(script: &Script, wire: &str, events: &[&str]) {
    let whole = run(script, Split::Whole);
    assert_eq!(whole.0, wire, "the client wrote");
    assert_eq!(whole.1, events, "the events");
    for (turn, bytes) in script.turns.iter().enumerate() {
        for offset in 1..bytes.len() {
            assert_eq!(
                run(script, Split::At { turn, offset }),
                whole,
                "turn {turn} cut at {offset}"
            );
        }
    }
    assert_eq!(run(script, Split::Bytes), whole, "byte by byte");
}

/// One command per reply without PIPELINING; the body dot-stuffed; QUIT.
#[test]
fn a_plain_transaction_sends_one_command_per_reply() {
    let script = script(&[
        GREETING,
        EHLO_PLAIN,
        b"250 2.1.0 ok\r\n",
        b"250 2.1.5 ok\r\n",
        b"354 go ahead\r\n",
        b"250 2.0.0 queued as 1\r\n",
        BYE,
    ]);
    check(
        &script,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nDATA\r\n\
         Hi\r\n..dot\r\n.\r\nQUIT\r\n",
        &[
            "ready",
            "content",
            "done [delivered 250] message 250",
            "ready",
            "closed",
        ],
    );
}

/// PIPELINING: MAIL, every RCPT and DATA in one write; one recipient refused, one deferred.
#[test]
fn pipelining_sends_the_envelope_as_one_group_and_keeps_each_recipients_outcome() {
    let mut script = script(&[
        GREETING,
        EHLO_PIPELINING,
        b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n\
          452 4.5.3 too many recipients\r\n354 go\r\n",
        b"250 2.0.0 ok\r\n",
        BYE,
    ]);
    script.messages = vec![msg(&["b@y", "c@y", "d@y"])];
    check(
        &script,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\n\
         RCPT TO:<d@y>\r\nDATA\r\nHi\r\n..dot\r\n.\r\nQUIT\r\n",
        &[
            "ready",
            "content",
            "done [delivered 250, failed 550, deferred 452] message 250",
            "ready",
            "closed",
        ],
    );
}

/// Two transactions on one connection, no RSET between them when the first ended well; the
/// content in small chunks.
#[test]
fn two_transactions_share_a_connection() {
    let mut script = script(&[
        GREETING,
        EHLO_PIPELINING,
        b"250 ok\r\n250 ok\r\n354 go\r\n",
        b"250 ok\r\n",
        b"250 ok\r\n250 ok\r\n354 go\r\n",
        b"451 4.3.0 try later\r\n",
        BYE,
    ]);
    script.messages = vec![msg(&["b@y"]), msg(&["c@y"])];
    script.chunk = 3;
    check(
        &script,
        "EHLO relay.test\r\n\
         MAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nDATA\r\nHi\r\n..dot\r\n.\r\n\
         MAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<c@y>\r\nDATA\r\nHi\r\n..dot\r\n.\r\nQUIT\r\n",
        &[
            "ready",
            "content",
            "done [delivered 250] message 250",
            "ready",
            "content",
            "done [deferred 451] message 451",
            "ready",
            "closed",
        ],
    );
}

/// The message reply decides for every accepted recipient: 554 fails them all.
#[test]
fn a_refused_message_fails_every_accepted_recipient() {
    let mut script = script(&[
        GREETING,
        EHLO_PIPELINING,
        b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
        b"554 5.7.1 spam\r\n",
        BYE,
    ]);
    script.messages = vec![msg(&["b@y", "c@y"])];
    check(
        &script,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\n\
         DATA\r\nHi\r\n..dot\r\n.\r\nQUIT\r\n",
        &[
            "ready",
            "content",
            "done [failed 554, failed 554] message 554",
            "ready",
            "closed",
        ],
    );
}

/// CHUNKING with PIPELINING: the BDAT chunks wait for the RCPT replies, then go out together,
/// unstuffed; the sizes add up.
#[test]
fn chunking_sends_bdat_chunks_after_the_recipients() {
    let mut script = script(&[
        GREETING,
        EHLO_CHUNKING,
        b"250 ok\r\n250 ok\r\n",
        b"250 2.0.0 6 octets\r\n250 2.0.0 queued\r\n",
        BYE,
    ]);
    script.chunk = 6;
    check(
        &script,
        "EHLO relay.test\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n\
         BDAT 6\r\nHi\r\n.dBDAT 4 LAST\r\not\r\nQUIT\r\n",
        &[
            "ready",
            "content",
            "done [delivered 250] message 250",
            "ready",
            "closed",
        ],
    );
}

/// CHUNKING without PIPELINING: each BDAT waits for the last one's reply.
#[test]
fn chunking_without_pipelining_waits_for_each_chunk() {
    let mut script = script(&[
        GREETING,
        EHLO_CHUNKING_ALONE,
        b"250 ok\r\n",
        b"250 ok\r\n",
        b"250 chunk\r\n",
        b"250 queued\r\n",
        BYE,
    ]);
    script.chunk = 6;
    check(
        &script,
        "EHLO relay.test\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n\
         BDAT 6\r\nHi\r\n.dBDAT 4 LAST\r\not\r\nQUIT\r\n",
        &[
            "ready",
            "content",
            "content",
            "done [delivered 250] message 250",
            "ready",
            "closed",
        ],
    );
}

/// A refused BDAT chunk fails the message (RFC 3030 §2); the chunks already sent are still
/// answered, nothing more is sent, and RSET clears what the next hop may hold.
#[test]
fn a_refused_chunk_fails_the_message() {
    let mut pipelined = script(&[
        GREETING,
        EHLO_CHUNKING,
        b"250 ok\r\n250 ok\r\n",
        b"552 5.3.4 too big\r\n503 5.5.1 no\r\n",
        b"250 ok\r\n",
        BYE,
    ]);
    pipelined.chunk = 6;
    check(
        &pipelined,
        "EHLO relay.test\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n\
         BDAT 6\r\nHi\r\n.dBDAT 4 LAST\r\not\r\nRSET\r\nQUIT\r\n",
        &[
            "ready",
            "content",
            "done [failed 552] message 552",
            "ready",
            "closed",
        ],
    );
    let mut one_by_one = script(&[
        GREETING,
        EHLO_CHUNKING_ALONE,
        b"250 ok\r\n",
        b"250 ok\r\n",
        b"452 4.3.1 out of room\r\n",
        b"250 ok\r\n",
        BYE,
    ]);
    one_by_one.chunk = 6;
    check(
        &one_by_one,
        "EHLO relay.test\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 6\r\nHi\r\n.dRSET\r\nQUIT\r\n",
        &[
            "ready",
            "content",
            "done [deferred 452] message 452",
            "ready",
            "closed",
        ],
    );
    // A refused LAST alone ends the transaction: no RSET.
    let last = script(&[
        GREETING,
        EHLO_CHUNKING,
        b"250 ok\r\n250 ok\r\n",
        b"554 5.7.1 spam\r\n",
        BYE,
    ]);
    check(
        &last,
        "EHLO relay.test\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 10 LAST\r\nHi\r\n.dot\r\nQUIT\r\n",
        &["ready", "content", "done [failed 554] message 554", "ready", "closed"],
    );
}

/// STARTTLS, then EHLO again with the old capabilities forgotten (the AUTH offered in plain
/// text is not used there), then AUTH PLAIN inside TLS.
#[test]
fn starttls_then_ehlo_again_then_auth_plain() {
    let mut script = script(&[
        GREETING,
        b"250-mx.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n",
        b"220 2.0.0 go ahead\r\n",
        b"250-mx.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n",
        b"235 2.7.0 ok\r\n",
        b"250 ok\r\n250 ok\r\n354 go\r\n",
        b"250 ok\r\n",
        BYE,
    ]);
    script.config.tls = TlsPolicy::Required;
    script.config.credentials = Some(Credentials {
        user: "user".into(),
        password: "pass".into(),
    });
    check(
        &script,
        "EHLO relay.test\r\nSTARTTLS\r\n[tls]EHLO relay.test\r\nAUTH PLAIN AHVzZXIAcGFzcw==\r\n\
         MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nHi\r\n..dot\r\n.\r\nQUIT\r\n",
        &[
            "starttls",
            "ready",
            "content",
            "done [delivered 250] message 250",
            "ready",
            "closed",
        ],
    );
}

fn tls_with_credentials(tls: TlsPolicy, turns: &[&'static [u8]]) -> Script {
    let mut script = script(turns);
    script.config.tls = tls;
    script.config.credentials = Some(Credentials {
        user: "user".into(),
        password: "pass".into(),
    });
    script.messages.clear();
    script
}

/// AUTH LOGIN when PLAIN is not offered: user name and password each answer a 334.
#[test]
fn auth_login_answers_two_prompts() {
    let script = tls_with_credentials(
        TlsPolicy::Opportunistic,
        &[
            GREETING,
            b"250-mx.test\r\n250 STARTTLS\r\n",
            b"220 go\r\n",
            b"250-mx.test\r\n250 AUTH LOGIN\r\n",
            b"334 VXNlcm5hbWU6\r\n",
            b"334 UGFzc3dvcmQ6\r\n",
            b"235 2.7.0 ok\r\n",
            BYE,
        ],
    );
    check(
        &script,
        "EHLO relay.test\r\nSTARTTLS\r\n[tls]EHLO relay.test\r\nAUTH LOGIN\r\n\
         dXNlcg==\r\ncGFzcw==\r\nQUIT\r\n",
        &["starttls", "ready", "closed"],
    );
}

/// What ends a session before any transaction: each with what it leaves to send.
#[test]
fn sessions_that_cannot_start_end_with_their_reason() {
    /// TLS policy, credentials, QUIT when idle, the next hop's turns, what we write, events.
    type Case = (
        TlsPolicy,
        bool,
        bool,
        &'static [&'static [u8]],
        &'static str,
        &'static str,
    );
    let cases: &[Case] = &[
        // AUTH refused inside TLS: the session fails, QUIT is polite.
        (
            TlsPolicy::Required,
            true,
            true,
            &[
                GREETING,
                b"250-mx\r\n250 STARTTLS\r\n",
                b"220 go\r\n",
                b"250-mx\r\n250 AUTH PLAIN\r\n",
                b"535 5.7.8 bad credentials\r\n",
            ],
            "EHLO relay.test\r\nSTARTTLS\r\n[tls]EHLO relay.test\r\n\
             AUTH PLAIN AHVzZXIAcGFzcw==\r\nQUIT\r\n",
            "starttls|closed 535",
        ),
        // Credentials and no STARTTLS offered: never sent in plain text.
        (
            TlsPolicy::Opportunistic,
            true,
            true,
            &[GREETING, b"250-mx\r\n250 AUTH PLAIN\r\n"],
            "EHLO relay.test\r\nQUIT\r\n",
            "closed AuthWithoutTls",
        ),
        // Opportunistic, STARTTLS refused, credentials: still never in plain text.
        (
            TlsPolicy::Opportunistic,
            true,
            true,
            &[
                GREETING,
                b"250-mx\r\n250 STARTTLS\r\n",
                b"454 4.7.0 no tls now\r\n",
            ],
            "EHLO relay.test\r\nSTARTTLS\r\nQUIT\r\n",
            "closed AuthWithoutTls",
        ),
        // Opportunistic, STARTTLS refused, no credentials: on in plain text.
        (
            TlsPolicy::Opportunistic,
            false,
            true,
            &[
                GREETING,
                b"250-mx\r\n250 STARTTLS\r\n",
                b"454 4.7.0 no tls now\r\n",
                BYE,
            ],
            "EHLO relay.test\r\nSTARTTLS\r\nQUIT\r\n",
            "ready|closed",
        ),
        // Required, STARTTLS refused: its reply ends the session.
        (
            TlsPolicy::Required,
            false,
            true,
            &[
                GREETING,
                b"250-mx\r\n250 STARTTLS\r\n",
                b"454 4.7.0 no tls now\r\n",
            ],
            "EHLO relay.test\r\nSTARTTLS\r\nQUIT\r\n",
            "closed 454",
        ),
        // Required and not offered (after HELO nothing is).
        (
            TlsPolicy::Required,
            false,
            true,
            &[GREETING, b"500 5.5.1 what\r\n", b"250 mx\r\n"],
            "EHLO relay.test\r\nHELO relay.test\r\nQUIT\r\n",
            "closed TlsUnavailable",
        ),
        // Inside TLS, no mechanism we know.
        (
            TlsPolicy::Required,
            true,
            true,
            &[
                GREETING,
                b"250-mx\r\n250 STARTTLS\r\n",
                b"220 go\r\n",
                b"250-mx\r\n250 AUTH CRAM-MD5\r\n",
            ],
            "EHLO relay.test\r\nSTARTTLS\r\n[tls]EHLO relay.test\r\nQUIT\r\n",
            "starttls|closed AuthUnavailable",
        ),
        // Greeting refused (RFC 5321 §3.1: QUIT is still the polite answer).
        (
            TlsPolicy::Off,
            false,
            true,
            &[b"554 5.7.1 go away\r\n"],
            "QUIT\r\n",
            "closed 554",
        ),
        // Greeting 421: the server is closing; nothing is sent.
        (
            TlsPolicy::Off,
            false,
            true,
            &[b"421 4.3.2 busy\r\n"],
            "",
            "closed 421",
        ),
        // EHLO refused other than RFC 5321 §4.1.4's four codes: no HELO.
        (
            TlsPolicy::Off,
            false,
            true,
            &[GREETING, b"554 5.7.1 not you\r\n"],
            "EHLO relay.test\r\nQUIT\r\n",
            "closed 554",
        ),
        // HELO refused too.
        (
            TlsPolicy::Off,
            false,
            true,
            &[GREETING, b"550 5.7.1 what\r\n", b"550 5.7.1 no\r\n"],
            "EHLO relay.test\r\nHELO relay.test\r\nQUIT\r\n",
            "closed 550",
        ),
        // A reply when none is awaited: out of sync, no QUIT.
        (
            TlsPolicy::Off,
            false,
            false,
            &[GREETING, b"250 mx\r\n", b"250 extra\r\n"],
            "EHLO relay.test\r\n",
            "ready|closed OutOfSync(Unexpected(250))",
        ),
        // A 421 while idle (the next hop's own timeout) just ends the session.
        (
            TlsPolicy::Off,
            false,
            false,
            &[GREETING, b"250 mx\r\n", b"421 4.4.2 idle too long\r\n"],
            "EHLO relay.test\r\n",
            "ready|closed 421",
        ),
        // QUIT answered with anything: closed, no error.
        (
            TlsPolicy::Off,
            false,
            true,
            &[GREETING, b"250 mx\r\n", b"500 what\r\n"],
            "EHLO relay.test\r\nQUIT\r\n",
            "ready|closed",
        ),
        // Garbage for a greeting.
        (
            TlsPolicy::Off,
            false,
            true,
            &[b"hello\r\n"],
            "",
            "closed OutOfSync(Reply(BadCode))",
        ),
    ];
    for &(tls, credentials, quit, turns, wire, events) in cases {
        let mut script = script(turns);
        script.messages.clear();
        script.config.tls = tls;
        script.quit = quit;
        if credentials {
            script.config.credentials = Some(Credentials {
                user: "user".into(),
                password: "pass".into(),
            });
        }
        let events: Vec<&str> = events.split('|').collect();
        check(&script, wire, &events);
    }
}

/// EHLO not recognised: HELO, no extension used; an 8-bit message toward it is failed with
/// 5.6.3 before anything is sent, and the next message goes.
/// RFC 3030 §3: `BODY=BINARYMIME` content goes only with `BDAT` to a hop offering
/// BINARYMIME and CHUNKING; a hop without them gets nothing of it (5.6.3, no downgrading to
/// `DATA`), and the next message is carried as usual.
#[test]
fn binary_content_fails_toward_a_hop_without_binarymime_and_chunking() {
    let mut script = script(&[
        GREETING,
        b"250-mx.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n",
        b"250 ok\r\n250 ok\r\n354 go\r\n",
        b"250 ok\r\n",
        BYE,
    ]);
    let mut binary = msg(&["b@y"]);
    binary.binary = true;
    binary.eight_bit = true;
    script.messages = vec![binary, msg(&["d@y"])];
    check(
        &script,
        "EHLO relay.test\r\nMAIL FROM:<a@x>\r\nRCPT TO:<d@y>\r\nDATA\r\n\
         Hi\r\n..dot\r\n.\r\nQUIT\r\n",
        &[
            "ready",
            "done [failed BinaryRefused]",
            "ready",
            "content",
            "done [delivered 250] message 250",
            "ready",
            "closed",
        ],
    );
    assert_eq!(LocalReason::BinaryRefused.status().to_string(), "5.6.3");
}

#[test]
fn helo_fallback_uses_no_extension() {
    let mut script = script(&[
        GREETING,
        b"502 5.5.2 EHLO not recognised\r\n",
        b"250 mx.test\r\n",
        b"250 ok\r\n",
        b"250 ok\r\n",
        b"354 go\r\n",
        b"250 ok\r\n",
        BYE,
    ]);
    let mut eight_bit = msg(&["b@y", "c@y"]);
    eight_bit.eight_bit = true;
    script.messages = vec![eight_bit, msg(&["d@y"])];
    check(
        &script,
        "EHLO relay.test\r\nHELO relay.test\r\nMAIL FROM:<a@x>\r\nRCPT TO:<d@y>\r\nDATA\r\n\
         Hi\r\n..dot\r\n.\r\nQUIT\r\n",
        &[
            "ready",
            "done [failed EightBitRefused, failed EightBitRefused]",
            "ready",
            "content",
            "done [delivered 250] message 250",
            "ready",
            "closed",
        ],
    );
}

/// Checks before sending: too big for SIZE (5.3.4), SMTPUTF8 not offered (5.6.7); nothing is
/// sent for them.
#[test]
fn messages_the_next_hop_cannot_take_fail_before_sending() {
    let mut script = script(&[GREETING, EHLO_PIPELINING, BYE]);
    let mut big = msg(&["b@y"]);
    big.size = Some(1001);
    let mut utf8 = msg(&["b@y"]);
    utf8.smtputf8 = true;
    script.messages = vec![big, utf8];
    check(
        &script,
        "EHLO relay.test\r\nQUIT\r\n",
        &[
            "ready",
            "done [failed TooBig { limit: 1000 }]",
            "ready",
            "done [failed Utf8Refused]",
            "ready",
            "closed",
        ],
    );
    let summaries = |outcome: &Outcome| match &outcome.reason {
        Reason::Local(local) => local.status().to_string(),
        Reason::Remote(_) => unreachable!(),
    };
    let too_big = Outcome {
        verdict: Verdict::Failed,
        reason: Reason::Local(LocalReason::TooBig { limit: 1 }),
    };
    assert_eq!(summaries(&too_big), "5.3.4");
    assert_eq!(LocalReason::EightBitRefused.status().to_string(), "5.6.3");
    assert_eq!(LocalReason::Utf8Refused.status().to_string(), "5.6.7");
}

/// DSN parameters, BODY and SMTPUTF8 go out when offered (RFC 3461 §4, RFC 6152, RFC 6531);
/// without DSN offered they are left out.
#[test]
fn mail_and_rcpt_carry_the_parameters_the_next_hop_offers() {
    let mut full = msg(&["b@y"]);
    full.dsn = true;
    full.eight_bit = true;
    full.smtputf8 = true;
    full.from = "ä@x";
    let mut script = script(&[
        GREETING,
        EHLO_DSN,
        b"250 ok\r\n250 ok\r\n354 go\r\n",
        b"250 ok\r\n",
        BYE,
    ]);
    script.messages = vec![full.clone()];
    check(
        &script,
        "EHLO relay.test\r\nMAIL FROM:<ä@x> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1\r\n\
         RCPT TO:<b@y> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig@y\r\nDATA\r\nHi\r\n..dot\r\n.\r\nQUIT\r\n",
        &["ready", "content", "done [delivered 250] message 250", "ready", "closed"],
    );
    let mut plain = msg(&["b@y"]);
    plain.dsn = true;
    let mut script = script_with(EHLO_PIPELINING, plain);
    script.turns.push(BYE);
    check(
        &script,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nDATA\r\nHi\r\n..dot\r\n.\r\nQUIT\r\n",
        &["ready", "content", "done [delivered 250] message 250", "ready", "closed"],
    );
}

fn script_with(ehlo: &'static [u8], message: Message) -> Script {
    let mut script = script(&[
        GREETING,
        ehlo,
        b"250 ok\r\n250 ok\r\n354 go\r\n",
        b"250 ok\r\n",
    ]);
    script.messages = vec![message];
    script
}

/// Every recipient refused: no content. DATA refused (pipelined) → RSET; DATA accepted
/// anyway → a lone `.` (RFC 2920 §3.1) and no RSET; without PIPELINING no DATA at all.
#[test]
fn when_every_recipient_is_refused_no_content_is_sent() {
    let mut refused = script(&[
        GREETING,
        EHLO_PIPELINING,
        b"250 ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n",
        b"250 2.0.0 reset\r\n",
        BYE,
    ]);
    refused.messages = vec![msg(&["b@y", "c@y"])];
    check(
        &refused,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n\
         RSET\r\nQUIT\r\n",
        &["ready", "done [failed 550, failed 550]", "ready", "closed"],
    );
    let anyway = script(&[
        GREETING,
        EHLO_PIPELINING,
        b"250 ok\r\n450 4.2.1 later\r\n354 go\r\n",
        b"250 2.0.0 empty message\r\n",
        BYE,
    ]);
    check(
        &anyway,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nDATA\r\n.\r\nQUIT\r\n",
        &["ready", "done [deferred 450]", "ready", "closed"],
    );
    let one_by_one = script(&[
        GREETING,
        EHLO_PLAIN,
        b"250 ok\r\n",
        b"550 5.1.1 no\r\n",
        b"250 ok\r\n",
        BYE,
    ]);
    check(
        &one_by_one,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nRSET\r\nQUIT\r\n",
        &["ready", "done [failed 550]", "ready", "closed"],
    );
}

/// MAIL refused: every recipient gets its reply (the RCPT and DATA replies behind it change
/// nothing), then RSET (RFC 5321 §4.1.1.5).
#[test]
fn a_refused_mail_decides_for_every_recipient_then_rset() {
    let mut pipelined = script(&[
        GREETING,
        EHLO_PIPELINING,
        b"451 4.3.0 try later\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no\r\n",
        b"250 ok\r\n",
        BYE,
    ]);
    pipelined.messages = vec![msg(&["b@y", "c@y"])];
    check(
        &pipelined,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n\
         RSET\r\nQUIT\r\n",
        &[
            "ready",
            "done [deferred 451, deferred 451]",
            "ready",
            "closed",
        ],
    );
    let mut one_by_one = script(&[
        GREETING,
        EHLO_PLAIN,
        b"550 5.7.1 not you\r\n",
        b"250 ok\r\n",
        b"250 ok\r\n",
        b"250 ok\r\n",
        b"354 go\r\n",
        b"250 ok\r\n",
        BYE,
    ]);
    one_by_one.messages = vec![msg(&["b@y", "c@y"]), msg(&["d@y"])];
    check(
        &one_by_one,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRSET\r\n\
         MAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<d@y>\r\nDATA\r\nHi\r\n..dot\r\n.\r\nQUIT\r\n",
        &[
            "ready",
            "done [failed 550, failed 550]",
            "ready",
            "content",
            "done [delivered 250] message 250",
            "ready",
            "closed",
        ],
    );
}

/// DATA refused with a recipient accepted: the refusal is the message reply; RSET follows.
#[test]
fn a_refused_data_is_the_message_reply() {
    let script = script(&[
        GREETING,
        EHLO_PIPELINING,
        b"250 ok\r\n250 ok\r\n451 4.3.0 not now\r\n",
        b"250 ok\r\n",
        BYE,
    ]);
    check(
        &script,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nDATA\r\nRSET\r\nQUIT\r\n",
        &[
            "ready",
            "done [deferred 451] message 451",
            "ready",
            "closed",
        ],
    );
}

/// A 421 mid-transaction defers every recipient still pending (RFC 5321 §3.8), keeps those
/// already refused, and ends the session without QUIT.
#[test]
fn a_421_mid_transaction_defers_what_is_pending() {
    let mut pipelined = script(&[
        GREETING,
        EHLO_PIPELINING,
        b"250 ok\r\n550 5.1.1 no\r\n250 ok\r\n421 4.3.2 shutting down\r\n",
    ]);
    pipelined.messages = vec![msg(&["b@y", "c@y", "d@y"])];
    check(
        &pipelined,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\n\
         RCPT TO:<d@y>\r\nDATA\r\n",
        &[
            "ready",
            "done [failed 550, deferred 421, deferred 421]",
            "closed 421",
        ],
    );
    let at_the_end = script(&[
        GREETING,
        EHLO_PLAIN,
        b"250 ok\r\n",
        b"250 ok\r\n",
        b"354 go\r\n",
        b"421 4.4.2 timeout\r\n",
    ]);
    check(
        &at_the_end,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nDATA\r\nHi\r\n..dot\r\n.\r\n",
        &["ready", "content", "done [deferred 421]", "closed 421"],
    );
}

/// Out of sync: garbage, a 354 to MAIL, a bare LF, a 250 to DATA. Pending
/// recipients are deferred, never guessed at; no QUIT.
#[test]
fn out_of_sync_replies_defer_everything_pending() {
    let garbage = script(&[GREETING, EHLO_PIPELINING, b"250 ok\r\nhello there\r\n"]);
    check(
        &garbage,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nDATA\r\n",
        &[
            "ready",
            "done [deferred OutOfSync(Reply(BadCode))]",
            "closed OutOfSync(Reply(BadCode))",
        ],
    );
    let early_354 = script(&[GREETING, EHLO_PLAIN, b"354 go\r\n"]);
    check(
        &early_354,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\n",
        &[
            "ready",
            "done [deferred OutOfSync(Unexpected(354))]",
            "closed OutOfSync(Unexpected(354))",
        ],
    );
    let bare_lf = script(&[GREETING, EHLO_PLAIN, b"250 ok\n"]);
    check(
        &bare_lf,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\n",
        &[
            "ready",
            "done [deferred OutOfSync(Reply(BareLf))]",
            "closed OutOfSync(Reply(BareLf))",
        ],
    );
    // 250 to DATA: not 354, and not a refusal either.
    let data_250 = script(&[GREETING, EHLO_PIPELINING, b"250 ok\r\n250 ok\r\n250 ok\r\n"]);
    check(
        &data_250,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nDATA\r\n",
        &[
            "ready",
            "done [deferred OutOfSync(Unexpected(250))]",
            "closed OutOfSync(Unexpected(250))",
        ],
    );
}

/// A reply while the content is still being sent answers nothing we sent: out of sync.
#[test]
fn a_reply_in_the_middle_of_the_content_is_out_of_sync() {
    let mut session = ClientSession::new(&config()).unwrap();
    session.on_input(GREETING);
    session.on_input(EHLO_PLAIN);
    let recipients = [Recipient {
        forward_path: b"b@y",
        notify: Notify::ABSENT,
        orcpt: None,
    }];
    session
        .start_transaction(&Envelope {
            reverse_path: b"a@x",
            recipients: &recipients,
            size: 10,
            eight_bit: false,
            binary: false,
            smtputf8: false,
            ret: None,
            envid: None,
        })
        .unwrap();
    session.on_input(b"250 ok\r\n250 ok\r\n354 go\r\n");
    let mut out = Vec::new();
    session.content_into(b"Hi\r\n", false, &mut out).unwrap();
    assert_eq!(session.waiting_for(), Some(Wait::DataBlock));
    session.on_input(b"554 5.7.1 changed my mind\r\n");
    let events: Vec<String> = std::iter::from_fn(|| session.next_event())
        .map(|event| summary(&event))
        .collect();
    assert_eq!(
        events,
        [
            "ready",
            "content",
            "done [deferred OutOfSync(Unexpected(554))]",
            "closed OutOfSync(Unexpected(554))"
        ]
    );
    assert!(!session.accepts_content());
    assert_eq!(
        session.content_into(b".\r\n", true, &mut out),
        Err(UsageError::NoContentAwaited)
    );
}

/// Timeouts and a lost connection: pending recipients deferred; after QUIT they are the
/// normal end.
#[test]
fn timeouts_and_disconnects_defer_what_is_pending() {
    let mut waiting_rcpt = script(&[GREETING, EHLO_PLAIN, b"250 ok\r\n"]);
    waiting_rcpt.end = End::Timeout;
    check(
        &waiting_rcpt,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\n",
        &[
            "ready",
            "done [deferred Timeout(Rcpt)]",
            "closed Timeout(Rcpt)",
        ],
    );
    let mut end_of_data = script(&[GREETING, EHLO_PIPELINING, b"250 ok\r\n250 ok\r\n354 go\r\n"]);
    end_of_data.end = End::Disconnect;
    check(
        &end_of_data,
        "EHLO relay.test\r\nMAIL FROM:<a@x> SIZE=10\r\nRCPT TO:<b@y>\r\nDATA\r\nHi\r\n..dot\r\n.\r\n",
        &["ready", "content", "done [deferred ConnectionLost]", "closed ConnectionLost"],
    );
    let mut after_quit = script(&[GREETING, EHLO_PLAIN]);
    after_quit.messages.clear();
    after_quit.end = End::Timeout;
    check(
        &after_quit,
        "EHLO relay.test\r\nQUIT\r\n",
        &["ready", "closed"],
    );
    let mut greeting = script(&[]);
    greeting.end = End::Timeout;
    check(&greeting, "", &["closed Timeout(Greeting)"]);
}

/// Each waiting state names its RFC 5321 §4.5.3.2 timeout.
#[test]
fn each_wait_names_its_timeout() {
    use core::time::Duration;
    let mut session = ClientSession::new(&config()).unwrap();
    assert_eq!(session.waiting_for(), Some(Wait::Greeting));
    session.on_input(GREETING);
    assert_eq!(session.waiting_for(), Some(Wait::Command));
    session.on_input(EHLO_PLAIN);
    assert_eq!(session.waiting_for(), None);
    let recipients = [Recipient {
        forward_path: b"b@y",
        notify: Notify::ABSENT,
        orcpt: None,
    }];
    let envelope = Envelope {
        reverse_path: b"a@x",
        recipients: &recipients,
        size: 10,
        eight_bit: false,
        binary: false,
        smtputf8: false,
        ret: None,
        envid: None,
    };
    session.start_transaction(&envelope).unwrap();
    assert_eq!(session.waiting_for(), Some(Wait::Mail));
    session.on_input(b"250 ok\r\n");
    assert_eq!(session.waiting_for(), Some(Wait::Rcpt));
    session.on_input(b"250 ok\r\n");
    assert_eq!(session.waiting_for(), Some(Wait::DataInitiation));
    session.on_input(b"354 go\r\n");
    assert_eq!(session.waiting_for(), Some(Wait::DataBlock));
    let mut out = Vec::new();
    session.content_into(BODY, true, &mut out).unwrap();
    assert_eq!(session.waiting_for(), Some(Wait::DataTermination));
    let limits = [
        (Wait::Greeting, 300),
        (Wait::Command, 300),
        (Wait::Handshake, 300),
        (Wait::Mail, 300),
        (Wait::Rcpt, 300),
        (Wait::DataInitiation, 120),
        (Wait::DataBlock, 180),
        (Wait::DataTermination, 600),
    ];
    for (wait, seconds) in limits {
        assert_eq!(wait.limit(), Duration::from_secs(seconds), "{wait:?}");
    }
}

/// Octets between the 220 to STARTTLS and the handshake are refused (the client's side of
/// CVE-2011-0411), whether they came in the same read or later.
#[test]
fn octets_before_the_handshake_end_the_session() {
    for split in [false, true] {
        let mut session = ClientSession::new(&ClientConfig::new("relay.test")).unwrap();
        session.on_input(GREETING);
        session.on_input(b"250-mx\r\n250 STARTTLS\r\n");
        let injected: &[u8] = b"220 go\r\n250-mx\r\n250 PIPELINING\r\n";
        if split {
            assert_eq!(session.on_input(&injected[..8]), 8);
            assert_eq!(session.on_input(&injected[8..]), injected.len() - 8);
        } else {
            assert_eq!(session.on_input(injected), injected.len());
        }
        let events: Vec<String> = std::iter::from_fn(|| session.next_event())
            .map(|event| summary(&event))
            .collect();
        assert_eq!(
            events,
            ["starttls", "closed OutOfSync(InputBeforeHandshake)"],
            "split {split}"
        );
        assert_eq!(session.on_tls_established(), Err(UsageError::NotNow));
    }
}

/// Calls the session cannot take change nothing and say why.
#[test]
fn misuse_is_refused_without_a_change() {
    let mut bad_name = config();
    bad_name.helo_name = "relay.test\r\nRSET".into();
    assert_eq!(
        ClientSession::new(&bad_name).unwrap_err(),
        UsageError::BadHeloName
    );
    let mut bad_credentials = config();
    bad_credentials.credentials = Some(Credentials {
        user: "a\0b".into(),
        password: "p".into(),
    });
    assert_eq!(
        ClientSession::new(&bad_credentials).unwrap_err(),
        UsageError::BadCredentials
    );
    assert!(!format!(
        "{:?}",
        Credentials {
            user: "u".into(),
            password: "secret".into()
        }
    )
    .contains("secret"));

    let mut session = ClientSession::new(&config()).unwrap();
    let good = [Recipient {
        forward_path: b"b@y",
        notify: Notify::ABSENT,
        orcpt: None,
    }];
    let envelope = |reverse_path: &'static [u8], recipients| Envelope {
        reverse_path,
        recipients,
        size: 1,
        eight_bit: false,
        binary: false,
        smtputf8: false,
        ret: None,
        envid: None,
    };
    let mut out = Vec::new();
    assert_eq!(
        session.start_transaction(&envelope(b"a@x", &good)),
        Err(UsageError::NotNow)
    );
    assert_eq!(session.finish(), Err(UsageError::NotNow));
    assert_eq!(
        session.content_into(b"x", true, &mut out),
        Err(UsageError::NoContentAwaited)
    );
    session.on_input(GREETING);
    session.on_input(b"250 mx\r\n");
    assert_eq!(session.next_event(), Some(Event::Ready));
    session.commands_into(&mut out);
    assert_eq!(out, b"EHLO relay.test\r\n");
    out.clear();
    let injected = [Recipient {
        forward_path: b"b@y>\r\nRCPT TO:<c@y",
        notify: Notify::ABSENT,
        orcpt: None,
    }];
    let bad_orcpt = [Recipient {
        forward_path: b"b@y",
        notify: Notify::ABSENT,
        orcpt: Some(b"rfc822;b@y x"),
    }];
    let utf8 = [Recipient {
        forward_path: "ü@y".as_bytes(),
        notify: Notify::ABSENT,
        orcpt: None,
    }];
    let cases: &[(Envelope<'_>, UsageError)] = &[
        (envelope(b"a@x", &[]), UsageError::NoRecipients),
        (envelope(b"a@x", &injected), UsageError::BadAddress),
        (envelope(b"a\r\n@x", &good), UsageError::BadAddress),
        (envelope(b"a@x", &bad_orcpt), UsageError::BadParameter),
        (envelope(b"a@x", &utf8), UsageError::BadAddress),
    ];
    for (envelope, error) in cases {
        assert_eq!(session.start_transaction(envelope), Err(*error));
    }
    session.commands_into(&mut out);
    assert!(out.is_empty(), "nothing was sent");
    assert_eq!(session.next_event(), None);
    session.start_transaction(&envelope(b"", &good)).unwrap();
    session.commands_into(&mut out);
    assert_eq!(out, b"MAIL FROM:<>\r\n");
}

/// A reply kept for a notification: lines joined, controls and invalid UTF-8 made `?`, cut
/// at the limit on a character boundary, the enhanced code read.
#[test]
fn a_kept_reply_is_printable_and_bounded() {
    let keep = |wire: &[u8]| {
        let (reply, _) = next_reply(wire, MAX_REPLY_LINE_LEN, MAX_REPLY_LINES)
            .unwrap()
            .unwrap();
        RemoteReply::from_reply(&reply)
    };
    let kept = keep(b"550-5.1.1 no such\r\n550 5.1.1 user \x1b[31m\xff\r\n");
    assert_eq!(kept.code, 550);
    assert_eq!(
        kept.enhanced,
        Some(EnhancedStatus {
            class: 5,
            subject: 1,
            detail: 1
        })
    );
    assert_eq!(kept.text, "5.1.1 no such 5.1.1 user ?[31m?");
    assert_eq!(kept.to_string(), "550 5.1.1 no such 5.1.1 user ?[31m?");
    let mut long = b"451 ".to_vec();
    for _ in 0..(MAX_REPLY_TEXT_LEN / 2 + 10) {
        long.extend_from_slice("é".as_bytes());
    }
    long.extend_from_slice(b"\r\n");
    let kept = keep(&long);
    assert!(kept.text.len() <= MAX_REPLY_TEXT_LEN);
    assert!(kept.text.len() >= MAX_REPLY_TEXT_LEN - 1);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Whatever the next hop sends, in whatever pieces: no panic, every transaction
        /// started gets exactly one report, and nothing follows Closed.
        #[test]
        fn any_replies_keep_the_session_sound(
            turns in proptest::collection::vec(
                prop_oneof![
                    Just(&b"250 ok\r\n"[..]),
                    Just(&b"354 go\r\n"[..]),
                    Just(&b"550 no\r\n"[..]),
                    Just(&b"451 later\r\n"[..]),
                    Just(&b"421 bye\r\n"[..]),
                    Just(&b"220 hi\r\n"[..]),
                    Just(&b"250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n"[..]),
                    Just(&b"250-mx\r\n250 STARTTLS\r\n"[..]),
                    Just(&b"334 x\r\n"[..]),
                    Just(&b"garbage\r\n"[..]),
                ],
                0..16,
            ),
            recipients in 1usize..4,
            bytes in any::<bool>(),
        ) {
            let mut script = script(&turns);
            script.config.tls = TlsPolicy::Opportunistic;
            // The connection ends under whatever is pending: that too must be reported.
            script.end = End::Disconnect;
            let to = ["b@y", "c@y", "d@y"];
            script.messages = vec![msg(&to[..recipients]), msg(&to[..1])];
            // `run` asserts the invariants.
            run(&script, if bytes { Split::Bytes } else { Split::Whole });
        }
    }
}
