//! The client without sockets: a [`Conversation`] feeds it reply bytes the way the engine
//! does and keeps everything it writes and records; a [`Server`] model answers its
//! commands, so whole sessions run in memory and can be replayed cut anywhere.

use super::*;
use crate::reply::{parse_reply, ReplyError};
use crate::workload::{AddressPattern, Rng, Sizes, MIN_SIZE};
use std::time::Duration;

/// A workload with tiny messages (`MIN_SIZE` bytes), so transcripts stay readable.
fn workload(rcpts: usize, pipelining: Pipelining, bdat: bool, inflight: usize) -> Workload {
    Workload::new(
        rcpts,
        0,
        pipelining,
        bdat,
        inflight,
        false,
        "lg.test".into(),
        AddressPattern::new("s{n}@a.test").unwrap(),
        AddressPattern::new("r{r}@b.test").unwrap(),
        Sizes::Fixed(MIN_SIZE),
    )
}

/// The content of a `MIN_SIZE` message as DATA sends it (the dot included).
fn data_content(w: &Workload) -> String {
    let mut out = Vec::new();
    w.write_data_content(MIN_SIZE, &mut out);
    String::from_utf8(out).unwrap()
}

/// `BDAT n LAST` and a `MIN_SIZE` message.
fn bdat_content(w: &Workload) -> String {
    let mut out = Vec::new();
    w.write_bdat(MIN_SIZE, &mut out);
    String::from_utf8(out).unwrap()
}

/// How a conversation ended (or did not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// `QUIT` answered.
    Clean,
    /// The client ended the connection.
    Failed(Failure),
    /// The parser refused the input (the engine counts this as a desync).
    Garbage(ReplyError),
    /// The client waits for replies.
    Waiting,
    /// Nothing outstanding: the client waits for the engine to start a message.
    Idle,
}

/// The client's side of a connection, driven as `Engine::process_replies` and
/// `Engine::start_messages` drive it: bytes are buffered and every complete reply is
/// handed over; after each reply, messages are started while the client allows (the
/// engine does it after each read; a server never answers a command before it was
/// sent, so for a real reply stream this is the same).
struct Conversation<'w> {
    /// What is sent.
    workload: &'w Workload,
    /// The state machine under test.
    client: Client,
    /// Received bytes not yet parsed.
    input: Vec<u8>,
    /// Everything the client wrote.
    out: Vec<u8>,
    /// How much of `out` the server model has read.
    sent: usize,
    /// Everything the client recorded.
    events: Vec<Event>,
    /// The clock: reply `k` arrives at `base + k` milliseconds.
    base: Instant,
    /// Replies handled.
    replies: u64,
    /// Messages the engine may still start.
    messages_left: u64,
    /// Sequence number of the next message.
    seq: u64,
    /// Whether the engine holds new messages back (an open loop waiting for its slot).
    hold: bool,
    /// The parser's verdict on input that is not a reply.
    garbage: Option<ReplyError>,
}

impl<'w> Conversation<'w> {
    fn new(workload: &'w Workload, messages: u64) -> Conversation<'w> {
        let base = Instant::now();
        Conversation {
            workload,
            client: Client::new(base),
            input: Vec::new(),
            out: Vec::new(),
            sent: 0,
            events: Vec::new(),
            base,
            replies: 0,
            messages_left: messages,
            seq: 0,
            hold: false,
            garbage: None,
        }
    }

    /// Bytes from the server.
    fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        let mut pos = 0;
        while !self.client.is_closed() && self.garbage.is_none() {
            match parse_reply(&self.input[pos..]) {
                Ok(Some((reply, used))) => {
                    self.replies += 1;
                    let now = self.base + Duration::from_millis(self.replies);
                    let raw = &self.input[pos..pos + used];
                    let events = &mut self.events;
                    self.client
                        .on_reply(self.workload, reply, raw, now, &mut self.out, |e| {
                            events.push(e)
                        });
                    pos += used;
                    self.pump(now);
                }
                Ok(None) => break,
                Err(e) => self.garbage = Some(e),
            }
        }
        self.input.drain(..pos);
    }

    /// Starts messages while the client allows, or says QUIT when all are done.
    fn pump(&mut self, now: Instant) {
        if self.hold {
            return;
        }
        loop {
            let no_more = self.messages_left == 0;
            if self.client.should_quit(self.workload, no_more) {
                self.client.quit(now, &mut self.out);
                return;
            }
            if no_more || !self.client.can_start(self.workload) {
                return;
            }
            self.client
                .start_message(self.workload, self.seq, MIN_SIZE, None, now, &mut self.out);
            self.seq += 1;
            self.messages_left -= 1;
        }
    }

    /// What the client wrote since the last call.
    fn take_sent(&mut self) -> Vec<u8> {
        let new = self.out[self.sent..].to_vec();
        self.sent = self.out.len();
        new
    }

    /// What the client wrote since the last call, as text.
    fn written(&mut self) -> String {
        String::from_utf8(self.take_sent()).unwrap()
    }

    /// Everything the client wrote, as text.
    fn all_written(&self) -> String {
        String::from_utf8(self.out.clone()).unwrap()
    }

    fn end(&self) -> End {
        if let Some(e) = self.garbage {
            End::Garbage(e)
        } else if let Some(f) = self.client.failure() {
            End::Failed(f)
        } else if self.client.is_closed() {
            End::Clean
        } else if self.client.is_waiting() {
            End::Waiting
        } else {
            End::Idle
        }
    }

    /// `(code, stage)` of every recorded reply, in order.
    fn replies(&self) -> Vec<(Stage, u16)> {
        self.events
            .iter()
            .filter_map(|e| match *e {
                Event::Reply { stage, code, .. } => Some((stage, code)),
                Event::Message { .. } => None,
            })
            .collect()
    }

    /// Whether each finished message was accepted, in order.
    fn messages(&self) -> Vec<bool> {
        self.events
            .iter()
            .filter_map(|e| match *e {
                Event::Message { accepted, .. } => Some(accepted),
                Event::Reply { .. } => None,
            })
            .collect()
    }
}

/// A model SMTP server, good enough to answer this client: every command gets its
/// reply in order; DATA content runs to the dot, a BDAT chunk is counted off.
#[derive(Default)]
struct Server {
    /// Advertise PIPELINING.
    pipelining: bool,
    /// Advertise CHUNKING.
    chunking: bool,
    /// Make every reply two lines (`250-...` then `250 ...`).
    multi_line: bool,
    /// RCPT commands (numbered from 1 over the session) refused with 550.
    refuse_rcpts: Vec<u64>,
    /// Replace the reply to command number N (from 1, the greeting is 0) with these bytes.
    replace: Option<(u64, &'static str)>,
    /// After the reply to command number N, send these bytes too.
    extra: Option<(u64, &'static str)>,
    /// Client bytes not handled yet.
    input: Vec<u8>,
    /// In DATA content.
    in_data: bool,
    /// Bytes of a BDAT chunk still to come.
    chunk_left: usize,
    /// Recipients accepted in the current transaction.
    rcpts: u32,
    /// RCPT commands so far.
    rcpt_count: u64,
    /// Commands so far.
    commands: u64,
    /// After QUIT.
    closed: bool,
}

impl Server {
    /// A server that offers PIPELINING and CHUNKING.
    fn esmtp() -> Server {
        Server {
            pipelining: true,
            chunking: true,
            ..Server::default()
        }
    }

    fn greeting(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.reply(&mut out, 0, 220, "mx.test ESMTP model");
        out
    }

    /// Appends the reply to command `n` (or its replacement, and any extra).
    fn reply(&self, out: &mut Vec<u8>, n: u64, code: u16, text: &str) {
        match self.replace {
            Some((at, bytes)) if at == n => out.extend_from_slice(bytes.as_bytes()),
            _ if self.multi_line => {
                out.extend_from_slice(format!("{code}-{text}\r\n{code} ok\r\n").as_bytes())
            }
            _ => out.extend_from_slice(format!("{code} {text}\r\n").as_bytes()),
        }
        if let Some((at, bytes)) = self.extra {
            if at == n {
                out.extend_from_slice(bytes.as_bytes());
            }
        }
    }

    /// Handles the client's bytes; returns the replies.
    fn on_bytes(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.input.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.closed {
                self.input.clear();
                return out;
            }
            if self.chunk_left > 0 {
                let n = self.chunk_left.min(self.input.len());
                self.input.drain(..n);
                self.chunk_left -= n;
                if self.chunk_left > 0 {
                    return out;
                }
                self.end_of_message(&mut out);
                continue;
            }
            if self.in_data {
                let Some(end) = self.input.windows(5).position(|w| w == b"\r\n.\r\n") else {
                    return out;
                };
                self.input.drain(..end + 5);
                self.in_data = false;
                // The dot counts as a command: its reply can be replaced.
                self.commands += 1;
                self.end_of_message(&mut out);
                continue;
            }
            let Some(lf) = self.input.iter().position(|&b| b == b'\n') else {
                return out;
            };
            let line: Vec<u8> = self.input.drain(..=lf).collect();
            let line = String::from_utf8(line).unwrap();
            self.on_command(line.trim_end(), &mut out);
        }
    }

    fn end_of_message(&mut self, out: &mut Vec<u8>) {
        let n = self.commands;
        if self.rcpts == 0 {
            // RFC 3030 §2: a BDAT with no valid recipient is refused (its chunk read).
            self.reply(out, n, 554, "5.5.1 No valid recipients");
        } else {
            self.reply(out, n, 250, "2.0.0 queued");
        }
        self.rcpts = 0;
    }

    fn on_command(&mut self, line: &str, out: &mut Vec<u8>) {
        self.commands += 1;
        let n = self.commands;
        let verb = line.split(' ').next().unwrap_or("");
        match verb {
            "EHLO" => {
                let mut ehlo = String::from("250-mx.test\r\n");
                if self.pipelining {
                    ehlo.push_str("250-PIPELINING\r\n");
                }
                if self.chunking {
                    ehlo.push_str("250-CHUNKING\r\n");
                }
                ehlo.push_str("250 8BITMIME\r\n");
                match self.replace {
                    Some((at, bytes)) if at == n => out.extend_from_slice(bytes.as_bytes()),
                    _ => out.extend_from_slice(ehlo.as_bytes()),
                }
            }
            "HELO" => self.reply(out, n, 250, "mx.test"),
            "MAIL" => {
                self.rcpts = 0;
                self.reply(out, n, 250, "2.1.0 Ok");
            }
            "RCPT" => {
                self.rcpt_count += 1;
                if self.refuse_rcpts.contains(&self.rcpt_count) {
                    self.reply(out, n, 550, "5.1.1 No such user");
                } else {
                    self.rcpts += 1;
                    self.reply(out, n, 250, "2.1.5 Ok");
                }
            }
            "DATA" => {
                if self.rcpts == 0 {
                    // RFC 2920 §3.1: with no valid recipient, DATA is refused.
                    self.reply(out, n, 554, "5.5.1 No valid recipients");
                } else {
                    self.in_data = true;
                    self.reply(out, n, 354, "End data with <CR><LF>.<CR><LF>");
                }
            }
            "BDAT" => {
                let size: usize = line.split(' ').nth(1).unwrap().parse().unwrap();
                self.chunk_left = size;
                if size == 0 {
                    self.end_of_message(out);
                }
            }
            "RSET" => {
                self.rcpts = 0;
                self.reply(out, n, 250, "2.0.0 Ok");
            }
            "QUIT" => {
                self.closed = true;
                self.reply(out, n, 221, "2.0.0 Bye");
            }
            _ => self.reply(out, n, 500, "5.5.2 What?"),
        }
    }
}

/// Runs a whole session between a client sending `messages` and `server`, in rounds
/// (the client's replies handled, then the server reads what the client wrote), until
/// one side stops. Returns the conversation and every byte the server sent.
fn talk<'w>(
    workload: &'w Workload,
    server: &mut Server,
    messages: u64,
) -> (Conversation<'w>, Vec<u8>) {
    let mut conversation = Conversation::new(workload, messages);
    let mut stream = Vec::new();
    let mut replies = server.greeting();
    for _ in 0..10_000 {
        if replies.is_empty() {
            break;
        }
        stream.extend_from_slice(&replies);
        conversation.feed(&replies);
        if conversation.end() != End::Waiting {
            break;
        }
        let sent = conversation.take_sent();
        replies = server.on_bytes(&sent);
    }
    (conversation, stream)
}

/// What a replay must reproduce.
type Transcript = (Vec<u8>, Vec<Event>, End);

/// Feeds `chunks` in order to a fresh conversation (not interactive: the stream was
/// recorded) and returns what the client did.
fn replay(workload: &Workload, messages: u64, chunks: &[&[u8]]) -> Transcript {
    let mut c = Conversation::new(workload, messages);
    for chunk in chunks {
        c.feed(chunk);
    }
    // The base instant differs per conversation: compare times relative to it.
    let events = c
        .events
        .iter()
        .map(|e| match *e {
            Event::Message {
                accepted,
                size,
                started,
                intended,
            } => Event::Message {
                accepted,
                size,
                started: relative(started, c.base),
                intended,
            },
            other => other,
        })
        .collect();
    (c.out.clone(), events, c.end())
}

/// `at` moved onto a fixed base, so instants of different conversations compare.
fn relative(at: Instant, base: Instant) -> Instant {
    static FIXED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *FIXED.get_or_init(Instant::now) + at.saturating_duration_since(base)
}

/// Replays `stream` whole, cut once at every offset, cut twice around every offset,
/// and one byte at a time: every replay must match the whole one.
#[track_caller]
fn assert_split_invariant(workload: &Workload, messages: u64, stream: &[u8]) -> Transcript {
    let whole = replay(workload, messages, &[stream]);
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        assert_eq!(replay(workload, messages, &[a, b]), whole, "cut at {cut}");
        let (a, rest) = stream.split_at(cut.saturating_sub(3));
        let (b, c) = rest.split_at(rest.len().min(5));
        assert_eq!(
            replay(workload, messages, &[a, b, c]),
            whole,
            "cut near {cut}"
        );
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(replay(workload, messages, &bytes), whole, "byte by byte");
    whole
}

#[test]
fn a_pipelined_session_step_by_step() {
    let w = workload(2, Pipelining::Auto, false, 1);
    let content = data_content(&w);
    let mut c = Conversation::new(&w, 1);
    c.feed(b"220-mx.test ESMTP\r\n220 welcome\r\n");
    assert_eq!(c.written(), "EHLO lg.test\r\n");
    c.feed(b"250-mx.test\r\n250-SIZE 1000\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
    // PIPELINING offered: MAIL, every RCPT and DATA in one write (RFC 2920 §3.1).
    assert_eq!(
        c.written(),
        "MAIL FROM:<s0@a.test>\r\nRCPT TO:<r0@b.test>\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n"
    );
    c.feed(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n");
    assert_eq!(c.written(), "", "the content waits for 354");
    c.feed(b"354 go ahead\r\n");
    assert_eq!(c.written(), content);
    assert_eq!(c.client.in_flight(), 1);
    c.feed(b"250 2.0.0 queued\r\n");
    assert_eq!(c.written(), "QUIT\r\n");
    assert_eq!(c.end(), End::Waiting);
    c.feed(b"221 2.0.0 Bye\r\n");
    assert_eq!(c.end(), End::Clean);
    assert_eq!(
        c.replies(),
        [
            (Stage::Greeting, 220),
            (Stage::Ehlo, 250),
            (Stage::Mail, 250),
            (Stage::Rcpt, 250),
            (Stage::Rcpt, 250),
            (Stage::Data, 354),
            (Stage::Eod, 250),
            (Stage::Quit, 221),
        ]
    );
    assert_eq!(c.messages(), [true]);
    // Each reply is timed from its command: the greeting from the connect (1 ms), the
    // pipelined RCPTs from the one write (replies 4 and 5 after it went out at 2 ms).
    let nanos: Vec<u64> = c
        .events
        .iter()
        .filter_map(|e| match *e {
            Event::Reply { nanos, .. } => Some(nanos / 1_000_000),
            Event::Message { .. } => None,
        })
        .collect();
    assert_eq!(nanos, [1, 1, 1, 2, 3, 4, 1, 1]);
    match c.events[7] {
        Event::Message {
            accepted: true,
            size: MIN_SIZE,
            started,
            intended: None,
        } => assert_eq!(started, c.base + Duration::from_millis(2)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_pipelining_each_command_waits_for_its_reply() {
    let w = workload(2, Pipelining::Auto, false, 1);
    let mut c = Conversation::new(&w, 1);
    c.feed(b"220 mx\r\n");
    c.written();
    c.feed(b"250-mx.test\r\n250 8BITMIME\r\n");
    assert_eq!(c.written(), "MAIL FROM:<s0@a.test>\r\n");
    c.feed(b"250 ok\r\n");
    assert_eq!(c.written(), "RCPT TO:<r0@b.test>\r\n");
    c.feed(b"250 ok\r\n");
    assert_eq!(c.written(), "RCPT TO:<r1@b.test>\r\n");
    c.feed(b"250 ok\r\n");
    assert_eq!(c.written(), "DATA\r\n");
    c.feed(b"354 go\r\n");
    assert_eq!(c.written(), data_content(&w));
    c.feed(b"250 queued\r\n");
    assert_eq!(c.written(), "QUIT\r\n");
    c.feed(b"221 bye\r\n");
    assert_eq!(c.end(), End::Clean);
    assert_eq!(c.messages(), [true]);
}

#[test]
fn ehlo_keywords_decide_pipelining_and_chunking() {
    // (EHLO reply, --pipelining, --bdat, pipelined?, failure)
    let cases: &[(&str, Pipelining, bool, bool, Option<Failure>)] = &[
        (
            "250-mx\r\n250 PIPELINING\r\n",
            Pipelining::Auto,
            false,
            true,
            None,
        ),
        (
            "250-mx\r\n250-pipelining\r\n250 X\r\n",
            Pipelining::Auto,
            false,
            true,
            None,
        ),
        (
            "250-mx\r\n250 PIPELINING=x\r\n",
            Pipelining::Auto,
            false,
            false,
            None,
        ),
        (
            "250-mx\r\n250 PIPELININGS\r\n",
            Pipelining::Auto,
            false,
            false,
            None,
        ),
        // The first line is the server's name, not a keyword (RFC 5321 §4.1.1.1).
        ("250 PIPELINING\r\n", Pipelining::Auto, false, false, None),
        ("250 mx\r\n", Pipelining::On, false, true, None),
        (
            "250-mx\r\n250 PIPELINING\r\n",
            Pipelining::Off,
            false,
            false,
            None,
        ),
        (
            "250-mx\r\n250 CHUNKING\r\n",
            Pipelining::Auto,
            true,
            false,
            None,
        ),
        (
            "250-mx\r\n250-CHUNKING\r\n250 PIPELINING\r\n",
            Pipelining::Auto,
            true,
            true,
            None,
        ),
        (
            "250 mx\r\n",
            Pipelining::On,
            true,
            true,
            Some(Failure::MissingExtension),
        ),
        (
            "550 go away\r\n",
            Pipelining::Auto,
            false,
            false,
            Some(Failure::Refused),
        ),
        (
            "421 busy\r\n",
            Pipelining::Auto,
            false,
            false,
            Some(Failure::ServiceClosing),
        ),
    ];
    for &(ehlo, pipelining, bdat, pipelined, failure) in cases {
        let w = workload(1, pipelining, bdat, 1);
        let mut c = Conversation::new(&w, 1);
        c.feed(b"220 mx\r\n");
        assert_eq!(c.written(), "EHLO lg.test\r\n");
        c.feed(ehlo.as_bytes());
        assert_eq!(c.client.failure(), failure, "{ehlo:?}");
        if failure.is_some() {
            assert!(c.client.is_closed());
            assert_eq!(c.written(), "", "{ehlo:?}");
            continue;
        }
        let written = c.written();
        assert!(written.starts_with("MAIL FROM:<s0@a.test>\r\n"), "{ehlo:?}");
        assert_eq!(written.contains("RCPT"), pipelined, "{ehlo:?}: {written}");
    }
}

#[test]
fn helo_never_pipelines() {
    let mut w = workload(1, Pipelining::Auto, false, 1);
    w.helo = true;
    let mut c = Conversation::new(&w, 1);
    c.feed(b"220 mx\r\n");
    assert_eq!(c.written(), "HELO lg.test\r\n");
    c.feed(b"250-mx\r\n250 PIPELINING\r\n");
    assert_eq!(c.written(), "MAIL FROM:<s0@a.test>\r\n");
}

#[test]
fn a_refused_greeting_ends_the_connection() {
    let w = workload(1, Pipelining::Auto, false, 1);
    for (greeting, failure) in [
        ("554 no service\r\n", Failure::Refused),
        ("421-closing\r\n421 down\r\n", Failure::ServiceClosing),
    ] {
        let mut c = Conversation::new(&w, 1);
        c.feed(greeting.as_bytes());
        assert_eq!(c.end(), End::Failed(failure), "{greeting:?}");
        assert_eq!(c.written(), "");
    }
}

#[test]
fn whole_sessions_against_the_model_server() {
    // (name, workload, server, messages, accepted per message)
    let w_data = workload(3, Pipelining::Auto, false, 1);
    let w_bdat = workload(2, Pipelining::Auto, true, 3);
    let plain = || Server {
        pipelining: false,
        chunking: true,
        ..Server::default()
    };
    let cases: Vec<(&str, &Workload, Server, u64, Vec<bool>)> = vec![
        ("pipelined DATA", &w_data, Server::esmtp(), 4, vec![true; 4]),
        ("step by step DATA", &w_data, plain(), 3, vec![true; 3]),
        (
            "BDAT, 3 in flight",
            &w_bdat,
            Server::esmtp(),
            5,
            vec![true; 5],
        ),
        ("BDAT step by step", &w_bdat, plain(), 2, vec![true; 2]),
        (
            "multi-line replies",
            &w_data,
            Server {
                multi_line: true,
                ..Server::esmtp()
            },
            2,
            vec![true; 2],
        ),
    ];
    for (name, w, mut server, messages, accepted) in cases {
        let (c, _) = talk(w, &mut server, messages);
        assert_eq!(c.end(), End::Clean, "{name}");
        assert_eq!(c.messages(), accepted, "{name}");
        assert_eq!(c.client.in_flight(), 0, "{name}");
    }
}

#[test]
fn pipelined_data_sends_the_next_group_behind_the_dot() {
    let w = workload(1, Pipelining::On, false, 1);
    let content = data_content(&w);
    let mut c = Conversation::new(&w, 3);
    c.feed(b"220 mx\r\n250 mx\r\n");
    assert_eq!(
        c.written(),
        "EHLO lg.test\r\nMAIL FROM:<s0@a.test>\r\nRCPT TO:<r0@b.test>\r\nDATA\r\n"
    );
    c.feed(b"250 ok\r\n250 ok\r\n354 go\r\n");
    // One write: the content, its dot, and the next transaction's commands.
    assert_eq!(
        c.written(),
        format!("{content}MAIL FROM:<s1@a.test>\r\nRCPT TO:<r0@b.test>\r\nDATA\r\n")
    );
    assert_eq!(c.client.in_flight(), 2);
    // Two messages in flight, the second waiting for its 354: no third yet.
    assert!(!c.client.can_start(&w));
    c.feed(b"250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    assert_eq!(
        c.written(),
        format!("{content}MAIL FROM:<s2@a.test>\r\nRCPT TO:<r0@b.test>\r\nDATA\r\n")
    );
    c.feed(b"250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n");
    assert_eq!(c.written(), format!("{content}QUIT\r\n"));
    c.feed(b"221 bye\r\n");
    assert_eq!(c.end(), End::Clean);
    assert_eq!(c.messages(), [true, true, true]);
}

#[test]
fn pipelined_bdat_keeps_inflight_transactions_going() {
    let w = workload(1, Pipelining::On, true, 2);
    let bdat = bdat_content(&w);
    let group = |n: u64| format!("MAIL FROM:<s{n}@a.test>\r\nRCPT TO:<r0@b.test>\r\n{bdat}");
    let mut c = Conversation::new(&w, 3);
    c.feed(b"220 mx\r\n250-mx\r\n250 CHUNKING\r\n");
    assert_eq!(
        c.written(),
        format!("EHLO lg.test\r\n{}{}", group(0), group(1))
    );
    assert!(!c.client.can_start(&w));
    c.feed(b"250 ok\r\n250 ok\r\n");
    assert_eq!(c.written(), "", "the first message is not done yet");
    c.feed(b"250 queued\r\n");
    assert_eq!(c.written(), group(2));
    c.feed(b"250 ok\r\n250 ok\r\n250 queued\r\n");
    assert_eq!(c.written(), "");
    // A refused chunk (RFC 3030 §2) fails its message; the transaction is reset.
    c.feed(b"250 ok\r\n250 ok\r\n452 4.3.1 full\r\n");
    // Pipelining: QUIT may go right behind the RSET (RFC 2920 §3.1).
    assert_eq!(c.written(), "RSET\r\nQUIT\r\n");
    c.feed(b"250 reset\r\n");
    c.feed(b"221 bye\r\n");
    assert_eq!(c.end(), End::Clean);
    assert_eq!(c.messages(), [true, true, false]);
}

#[test]
fn some_refused_recipients_do_not_stop_the_message() {
    for pipelining in [Pipelining::On, Pipelining::Off] {
        let w = workload(3, pipelining, false, 1);
        let mut server = Server {
            refuse_rcpts: vec![1, 3],
            ..Server::esmtp()
        };
        let (c, _) = talk(&w, &mut server, 1);
        assert_eq!(c.end(), End::Clean, "{pipelining:?}");
        assert_eq!(c.messages(), [true], "{pipelining:?}");
        let rcpts: Vec<u16> = c
            .replies()
            .into_iter()
            .filter(|(s, _)| *s == Stage::Rcpt)
            .map(|(_, code)| code)
            .collect();
        assert_eq!(rcpts, [550, 250, 550], "{pipelining:?}");
        assert!(c.replies().contains(&(Stage::Eod, 250)));
    }
}

#[test]
fn all_refused_recipients_fail_the_message_and_reset() {
    // Pipelined: DATA went out with the RCPTs and is refused (RFC 2920 §3.1); the
    // client resets and the next message goes on.
    let w = workload(2, Pipelining::On, false, 1);
    let mut server = Server {
        refuse_rcpts: vec![1, 2],
        ..Server::esmtp()
    };
    let (c, _) = talk(&w, &mut server, 2);
    assert_eq!(c.end(), End::Clean);
    assert_eq!(c.messages(), [false, true]);
    let replies = c.replies();
    assert_eq!(
        replies[2..7],
        [
            (Stage::Mail, 250),
            (Stage::Rcpt, 550),
            (Stage::Rcpt, 550),
            (Stage::Data, 554),
            (Stage::Rset, 250),
        ]
    );
    let written = c.all_written();
    assert_eq!(written.matches("DATA\r\n").count(), 2);
    assert_eq!(written.matches("RSET\r\n").count(), 1);

    // Step by step: no DATA at all for that message, RSET instead.
    let w = workload(2, Pipelining::Off, false, 1);
    let mut server = Server {
        refuse_rcpts: vec![1, 2],
        ..Server::esmtp()
    };
    let (c, _) = talk(&w, &mut server, 2);
    assert_eq!(c.end(), End::Clean);
    assert_eq!(c.messages(), [false, true]);
    assert_eq!(
        c.replies()[2..6],
        [
            (Stage::Mail, 250),
            (Stage::Rcpt, 550),
            (Stage::Rcpt, 550),
            (Stage::Rset, 250),
        ]
    );
    assert_eq!(c.all_written().matches("DATA\r\n").count(), 1);

    // BDAT: the chunk went out with the commands; the server reads and refuses it.
    let w = workload(1, Pipelining::On, true, 1);
    let mut server = Server {
        refuse_rcpts: vec![2],
        ..Server::esmtp()
    };
    let (c, _) = talk(&w, &mut server, 3);
    assert_eq!(c.end(), End::Clean);
    assert_eq!(c.messages(), [true, false, true]);
    assert!(c.replies().contains(&(Stage::Bdat, 554)));
    assert!(c.replies().contains(&(Stage::Rset, 250)));
}

#[test]
fn without_pipelining_the_next_message_waits_for_the_reset() {
    let w = workload(1, Pipelining::Off, false, 1);
    let mut c = Conversation::new(&w, 2);
    c.feed(b"220 mx\r\n250 mx\r\n250 ok\r\n");
    assert_eq!(
        c.written(),
        "EHLO lg.test\r\nMAIL FROM:<s0@a.test>\r\nRCPT TO:<r0@b.test>\r\n"
    );
    c.feed(b"550 5.1.1 no such user\r\n");
    // One command, one reply: the next MAIL waits for the RSET's reply.
    assert_eq!(c.written(), "RSET\r\n");
    c.feed(b"250 reset\r\n");
    assert_eq!(c.written(), "MAIL FROM:<s1@a.test>\r\n");
    c.feed(b"250 ok\r\n250 ok\r\n354 go\r\n");
    c.written();
    c.feed(b"250 queued\r\n");
    assert_eq!(c.written(), "QUIT\r\n");
    // And QUIT waits for a reset too.
    let mut c = Conversation::new(&w, 1);
    c.feed(b"220 mx\r\n250 mx\r\n250 ok\r\n550 no\r\n");
    assert!(c.written().ends_with("RSET\r\n"));
    c.feed(b"250 reset\r\n");
    assert_eq!(c.written(), "QUIT\r\n");
    assert_eq!(c.messages(), [false]);
}

#[test]
fn a_refused_mail_fails_the_message_without_a_reset() {
    // Pipelined: RCPT and DATA get "bad sequence" too; nothing is open to reset.
    let w = workload(1, Pipelining::On, false, 1);
    let mut c = Conversation::new(&w, 1);
    c.feed(b"220 mx\r\n250 mx\r\n");
    c.written();
    c.feed(b"451 4.3.0 try later\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n");
    assert_eq!(c.written(), "QUIT\r\n");
    assert_eq!(c.messages(), [false]);
    // Step by step: nothing more is sent for the message.
    let w = workload(2, Pipelining::Off, false, 1);
    let mut c = Conversation::new(&w, 1);
    c.feed(b"220 mx\r\n250 mx\r\n");
    assert_eq!(c.written(), "EHLO lg.test\r\nMAIL FROM:<s0@a.test>\r\n");
    c.feed(b"550 5.7.1 not you\r\n");
    assert_eq!(c.written(), "QUIT\r\n");
    assert_eq!(c.messages(), [false]);
}

#[test]
fn a_refused_end_of_data_fails_only_that_message() {
    let w = workload(1, Pipelining::On, false, 1);
    let mut c = Conversation::new(&w, 2);
    c.feed(b"220 mx\r\n250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    c.feed(b"451 4.3.0 queue trouble\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n");
    // The transaction ended with the refusal (RFC 5321 §4.1.1.4): no RSET.
    assert!(!c.written().contains("RSET"));
    assert_eq!(c.messages(), [false, true]);
    c.feed(b"221 bye\r\n");
    assert_eq!(c.end(), End::Clean);
}

#[test]
fn replies_cut_at_every_offset_give_the_same_session() {
    let w_data = workload(2, Pipelining::Auto, false, 1);
    let w_step = workload(2, Pipelining::Off, false, 1);
    let w_bdat = workload(1, Pipelining::Auto, true, 2);
    let scenarios: Vec<(&str, &Workload, Server, u64)> = vec![
        (
            "pipelined DATA, multi-line, a refused recipient",
            &w_data,
            Server {
                multi_line: true,
                refuse_rcpts: vec![2],
                ..Server::esmtp()
            },
            3,
        ),
        (
            "step by step, a message with every recipient refused",
            &w_step,
            Server {
                refuse_rcpts: vec![3, 4],
                ..Server::esmtp()
            },
            3,
        ),
        ("BDAT, two in flight", &w_bdat, Server::esmtp(), 3),
    ];
    for (name, w, mut server, messages) in scenarios {
        let (live, stream) = talk(w, &mut server, messages);
        assert_eq!(live.end(), End::Clean, "{name}");
        let whole = assert_split_invariant(w, messages, &stream);
        // The recorded stream replayed reproduces the live session.
        assert_eq!(whole.0, live.out, "{name}");
        assert_eq!(whole.2, End::Clean, "{name}");
    }
}

#[test]
fn an_extra_reply_is_a_desync_not_a_hang() {
    // An extra reply after command N (0: the greeting). Whatever N, the client must end
    // the connection (a failure) rather than wait for a reply the server never sends.
    let modes = [
        ("pipelined DATA", workload(2, Pipelining::On, false, 1)),
        ("step by step", workload(2, Pipelining::Off, false, 1)),
        ("BDAT", workload(2, Pipelining::On, true, 2)),
    ];
    for (name, w) in &modes {
        for extra in ["250 2.0.0 extra\r\n", "550 5.0.0 extra\r\n"] {
            // Three messages take fewer than 25 commands.
            for after in 0..25 {
                let mut server = Server {
                    extra: Some((after, extra)),
                    ..Server::esmtp()
                };
                let (c, _) = talk(w, &mut server, 3);
                let end = c.end();
                let stuck = matches!(end, End::Waiting | End::Idle);
                assert!(!stuck, "{name}, {extra:?} after command {after}: {end:?}");
                if server.commands > after && !server.closed {
                    assert!(
                        matches!(end, End::Failed(_)),
                        "{name}, {extra:?} after command {after}: {end:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_unexpected_code_is_a_desync() {
    // A reply no server sends at that point: the replies no longer line up.
    let w = workload(1, Pipelining::On, false, 1);
    // Commands: 1 EHLO, 2 MAIL, 3 RCPT, 4 DATA, 5 the dot, 6 QUIT.
    let cases: &[(u64, &str)] = &[
        (2, "354 go ahead\r\n"),
        (3, "150 what\r\n"),
        (4, "250 ok\r\n"),
        (5, "354 more\r\n"),
        (6, "250 ok\r\n"),
    ];
    for &(at, reply) in cases {
        let mut server = Server {
            replace: Some((at, reply)),
            ..Server::esmtp()
        };
        let (c, _) = talk(&w, &mut server, 1);
        assert_eq!(
            c.end(),
            End::Failed(Failure::Desync),
            "{reply:?} to command {at}"
        );
    }
    // A 421 anywhere closes the session (RFC 5321 §3.8).
    for at in 1..=5 {
        let mut server = Server {
            replace: Some((at, "421 4.3.2 shutting down\r\n")),
            ..Server::esmtp()
        };
        let (c, _) = talk(&w, &mut server, 1);
        assert_eq!(c.end(), End::Failed(Failure::ServiceClosing), "{at}");
    }
}

#[test]
fn a_reply_when_none_is_awaited_is_a_desync() {
    let w = workload(1, Pipelining::On, false, 1);
    let mut c = Conversation::new(&w, 1);
    // The engine holds messages back (an open loop before the next slot).
    c.hold = true;
    c.feed(b"220 mx\r\n250 mx\r\n");
    assert_eq!(c.end(), End::Idle);
    c.feed(b"250 unasked\r\n");
    assert_eq!(c.end(), End::Failed(Failure::Desync));
    // Nothing is written after a failure, and nothing more is read.
    assert_eq!(c.written(), "EHLO lg.test\r\n");
    c.feed(b"250 more\r\n");
    assert_eq!(c.events.len(), 2);
}

#[test]
fn garbage_is_an_error_at_every_cut() {
    let w = workload(1, Pipelining::On, false, 1);
    let good = b"220 mx\r\n250-mx\r\n250 PIPELINING\r\n250 ok\r\n";
    for garbage in [
        &b"hello there\r\n"[..],
        b"25\r\n",
        b"250 bare\nLF\r\n",
        b"250-a\r\n251 b\r\n",
        b"\r\n",
        b"\x00\xff\xfe\r\n",
        b"600 out of range\r\n",
    ] {
        let stream = [&good[..], garbage].concat();
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            let (_, _, end) = replay(&w, 1, &[a, b]);
            assert!(
                matches!(end, End::Garbage(_)),
                "{garbage:?} cut at {cut}: {end:?}"
            );
        }
    }
    // A line with no end is an error once it is too long for a reply.
    let mut c = Conversation::new(&w, 1);
    c.feed(b"220 ");
    for _ in 0..100 {
        c.feed(&[b'x'; 100]);
    }
    assert_eq!(c.end(), End::Garbage(ReplyError::TooLong));
}

#[test]
fn random_reply_streams_never_panic() {
    // Replies drawn from every class, cut anywhere: whatever happens, the client
    // neither panics nor loses track of its messages.
    let codes = [
        220, 221, 250, 251, 354, 421, 450, 451, 452, 500, 503, 550, 554, 150, 334,
    ];
    let workloads = [
        workload(1, Pipelining::On, false, 1),
        workload(3, Pipelining::Off, false, 1),
        workload(2, Pipelining::On, true, 3),
        workload(1, Pipelining::Auto, false, 1),
    ];
    let mut rng = Rng::new(42);
    for round in 0..3_000 {
        let w = &workloads[round % workloads.len()];
        let mut stream = Vec::new();
        // Mostly the expected codes, so sessions get somewhere.
        stream.extend_from_slice(b"220 mx\r\n250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
        for _ in 0..30 {
            let pick = rng.next_u64() as usize;
            let code = if pick % 3 == 0 {
                codes[pick / 3 % codes.len()]
            } else {
                [250, 250, 354, 250][pick / 3 % 4]
            };
            if pick % 7 == 0 {
                stream.extend_from_slice(format!("{code}-more\r\n").as_bytes());
            }
            stream.extend_from_slice(format!("{code} x\r\n").as_bytes());
        }
        let cut = rng.next_u64() as usize % stream.len();
        let mut c = Conversation::new(w, 5);
        c.feed(&stream[..cut]);
        c.feed(&stream[cut..]);
        let finished = c.messages().len() as u64;
        assert!(
            finished + c.client.in_flight() as u64 <= c.seq,
            "round {round}"
        );
        let limit = if w.bdat { w.inflight } else { 2 };
        assert!(c.client.in_flight() <= limit, "round {round}");
    }
}
