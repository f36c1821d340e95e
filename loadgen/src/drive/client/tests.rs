//! The client without sockets: a [`Conversation`] feeds it reply bytes the way the engine
//! does and keeps everything it writes and records; a [`Server`] model answers its
//! commands, so whole sessions run in memory and can be replayed cut anywhere.

use super::*;
use crate::drive::corpus::wire::Form;
use crate::drive::output::{Body, Output};
use crate::drive::reply::{parse_reply, ReplyError};
use crate::drive::workload::{
    AddressPattern, Auth, AuthMech, Content, Generated, Order, Rng, Sizes, MIN_SIZE,
};
use std::time::Duration;

/// A workload with tiny messages (`MIN_SIZE` bytes), so transcripts stay readable.
fn workload(rcpts: usize, pipelining: Pipelining, bdat: bool, inflight: usize) -> Workload {
    Workload {
        rcpts,
        msgs_per_conn: 0,
        pipelining,
        bdat,
        inflight: inflight.max(1),
        helo: false,
        ehlo_name: "lg.test".into(),
        from: AddressPattern::new("s{n}@a.test").unwrap(),
        to: AddressPattern::new("r{r}@b.test").unwrap(),
        generated: Generated::new(Sizes::Fixed(MIN_SIZE), false),
        security: Security::Plain,
        auth: None,
        corpus: None,
        order: Order::Sequential,
        recipients: None,
        tag_run: None,
    }
}

/// [`workload`] secured by `security`, authenticating as `user`/`pass` with `mech`.
fn session_workload(
    security: Security,
    mech: Option<AuthMech>,
    pipelining: Pipelining,
    bdat: bool,
) -> Workload {
    Workload {
        security,
        auth: mech.map(|m| Auth::new(m, "user", "pass")),
        ..workload(1, pipelining, bdat, 2)
    }
}

/// base64 of `text`.
fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The content of a `MIN_SIZE` message as DATA sends it (the dot included).
fn data_content(w: &Workload) -> String {
    let mut out = Output::default();
    w.write_data_content(Content::Generated(MIN_SIZE), 0, &mut out);
    String::from_utf8(out.written().to_vec()).unwrap()
}

/// `BDAT n LAST` and a `MIN_SIZE` message.
fn bdat_content(w: &Workload) -> String {
    let mut out = Output::default();
    w.write_bdat(Content::Generated(MIN_SIZE), 0, &mut out);
    String::from_utf8(out.written().to_vec()).unwrap()
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
    /// Bytes arrived behind the `220` to STARTTLS (the engine ends the connection).
    Injected,
}

/// The client's side of a connection, driven as `Engine::process_replies` and
/// `Engine::start_messages` drive it: bytes are buffered and every complete reply is
/// handed over; after each reply, messages are started while the client allows (the
/// engine does it after each read; a server never answers a command before it was
/// sent, so for a real reply stream this is the same). When the client asks for TLS the
/// handshake "happens" at once (after the bytes fed so far; bytes behind the `220` in the
/// same feed are an injection, as in the engine); with implicit TLS before anything else.
struct Conversation<'w> {
    /// What is sent.
    workload: &'w Workload,
    /// The state machine under test.
    client: Client,
    /// Received bytes not yet parsed.
    input: Vec<u8>,
    /// Everything the client wrote.
    out: Output,
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
    /// Bytes came behind the 220 to STARTTLS.
    injected: bool,
    /// TLS handshakes completed.
    handshakes: u32,
    /// What each message carries.
    content: Content,
}

impl<'w> Conversation<'w> {
    fn new(workload: &'w Workload, messages: u64) -> Conversation<'w> {
        let base = Instant::now();
        let mut conversation = Conversation {
            workload,
            client: Client::new(workload, base, base),
            input: Vec::new(),
            out: Output::default(),
            sent: 0,
            events: Vec::new(),
            base,
            replies: 0,
            messages_left: messages,
            seq: 0,
            hold: false,
            garbage: None,
            injected: false,
            handshakes: 0,
            content: Content::Generated(MIN_SIZE),
        };
        if conversation.client.tls_requested() {
            // Implicit TLS: the transport's handshake comes before any reply.
            conversation.establish_tls();
        }
        conversation
    }

    /// The transport completed the handshake, half a millisecond after the last reply.
    fn establish_tls(&mut self) {
        let now = self.base + Duration::from_millis(self.replies) + Duration::from_micros(500);
        let events = &mut self.events;
        self.client
            .on_tls_established(self.workload, now, &mut self.out, |e| events.push(e));
        self.handshakes += 1;
        self.pump(now);
    }

    /// Bytes from the server.
    fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        let mut pos = 0;
        while !self.client.is_closed() && self.garbage.is_none() && !self.client.tls_requested() {
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
        if self.client.tls_requested() && !self.injected {
            if self.input.is_empty() {
                self.establish_tls();
            } else {
                self.injected = true;
            }
        }
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
            self.client.start_message(
                self.workload,
                self.seq,
                self.content,
                None,
                now,
                &mut self.out,
            );
            self.seq += 1;
            self.messages_left -= 1;
        }
    }

    /// What the client wrote since the last call.
    fn take_sent(&mut self) -> Vec<u8> {
        let new = self.out.written()[self.sent..].to_vec();
        self.sent = self.out.written().len();
        new
    }

    /// What the client wrote since the last call, as text.
    fn written(&mut self) -> String {
        String::from_utf8(self.take_sent()).unwrap()
    }

    /// Everything the client wrote, as text.
    fn all_written(&self) -> String {
        String::from_utf8(self.out.written().to_vec()).unwrap()
    }

    fn end(&self) -> End {
        if self.injected {
            End::Injected
        } else if let Some(e) = self.garbage {
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

    /// `(code, stage)` of every recorded reply (timed or not), in order.
    fn replies(&self) -> Vec<(Stage, u16)> {
        self.events
            .iter()
            .filter_map(|e| match *e {
                Event::Reply { stage, code, .. } | Event::Code { stage, code } => {
                    Some((stage, code))
                }
                Event::Message { .. } | Event::Handshake { .. } => None,
            })
            .collect()
    }

    /// `(stage, milliseconds)` of every timed reply and handshake, in order.
    fn timings(&self) -> Vec<(Stage, f64)> {
        self.events
            .iter()
            .filter_map(|e| match *e {
                Event::Reply { stage, nanos, .. } => Some((stage, nanos as f64 / 1e6)),
                Event::Handshake { nanos } => Some((Stage::Tls, nanos as f64 / 1e6)),
                Event::Message { .. } | Event::Code { .. } => None,
            })
            .collect()
    }

    /// Whether each finished message was accepted, in order.
    fn messages(&self) -> Vec<bool> {
        self.events
            .iter()
            .filter_map(|e| match *e {
                Event::Message { accepted, .. } => Some(accepted),
                _ => None,
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
    /// Advertise STARTTLS (outside TLS).
    starttls: bool,
    /// Advertise AUTH with these mechanisms (`"PLAIN LOGIN"`); credentials `user`/`pass`.
    auth: Option<&'static str>,
    /// Inside TLS (after the 220 to STARTTLS).
    tls: bool,
    /// AUTH LOGIN: responses still to read (2: the user name, 1: the password).
    login_wait: u8,
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
        if self.login_wait > 0 {
            // RFC 4954 §4: a response line of the AUTH exchange, not a command.
            self.login_wait -= 1;
            match (self.login_wait, line == b64("user"), line == b64("pass")) {
                (1, true, _) => self.reply(out, n, 334, "UGFzc3dvcmQ6"),
                (0, _, true) => self.reply(out, n, 235, "2.7.0 Authentication successful"),
                _ => {
                    self.login_wait = 0;
                    self.reply(out, n, 535, "5.7.8 Authentication credentials invalid");
                }
            }
            return;
        }
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
                if self.starttls && !self.tls {
                    ehlo.push_str("250-STARTTLS\r\n");
                }
                if let Some(mechanisms) = self.auth {
                    ehlo.push_str(&format!("250-AUTH {mechanisms}\r\n"));
                }
                ehlo.push_str("250 8BITMIME\r\n");
                match self.replace {
                    Some((at, bytes)) if at == n => out.extend_from_slice(bytes.as_bytes()),
                    _ => out.extend_from_slice(ehlo.as_bytes()),
                }
            }
            "HELO" => self.reply(out, n, 250, "mx.test"),
            "STARTTLS" => {
                // RFC 3207 §4.2: back to the state after the greeting.
                self.tls = true;
                self.rcpts = 0;
                self.reply(out, n, 220, "2.0.0 Ready to start TLS");
            }
            "AUTH" => {
                let mut words = line.split(' ').skip(1);
                match (words.next(), words.next()) {
                    (Some("PLAIN"), Some(response)) if response == b64("\0user\0pass") => {
                        self.reply(out, n, 235, "2.7.0 Authentication successful")
                    }
                    (Some("PLAIN"), _) => {
                        self.reply(out, n, 535, "5.7.8 Authentication credentials invalid")
                    }
                    (Some("LOGIN"), None) => {
                        self.login_wait = 2;
                        self.reply(out, n, 334, "VXNlcm5hbWU6");
                    }
                    _ => self.reply(out, n, 504, "5.5.4 Unrecognized authentication type"),
                }
            }
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
                seq,
                rcpts_ok,
                rcpts_refused,
            } => Event::Message {
                accepted,
                size,
                started: relative(started, c.base),
                intended,
                seq,
                rcpts_ok,
                rcpts_refused,
            },
            other => other,
        })
        .collect();
    (c.out.written().to_vec(), events, c.end())
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
            _ => None,
        })
        .collect();
    assert_eq!(nanos, [1, 1, 1, 2, 3, 4, 1, 1]);
    match c.events[7] {
        Event::Message {
            accepted: true,
            size: MIN_SIZE,
            started,
            intended: None,
            ..
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
            Some(Failure::MissingExtension(Extension::Chunking)),
        ),
        (
            "550 go away\r\n",
            Pipelining::Auto,
            false,
            false,
            Some(Failure::Refused(Stage::Ehlo)),
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
        ("554 no service\r\n", Failure::Refused(Stage::Greeting)),
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
fn corpus_messages_go_into_the_output_where_their_content_belongs() {
    let corpus = Content::Corpus {
        index: 4,
        size: 1234,
        eight_bit: false,
    };
    let body = |form| Body { message: 4, form };
    // DATA, pipelined: the message after its 354, the next group right behind it.
    let w = workload(1, Pipelining::On, false, 1);
    let mut c = Conversation::new(&w, 2);
    c.content = corpus;
    c.feed(b"220 mx\r\n250-mx\r\n250 PIPELINING\r\n");
    let group =
        |n: u64, last: &str| format!("MAIL FROM:<s{n}@a.test>\r\nRCPT TO:<r0@b.test>\r\n{last}");
    assert_eq!(
        c.written(),
        format!("EHLO lg.test\r\n{}", group(0, "DATA\r\n"))
    );
    assert_eq!(c.out.bodies().count(), 0, "nothing before the 354");
    let before = c.out.written().len();
    c.feed(b"250 ok\r\n250 ok\r\n354 go\r\n");
    assert_eq!(c.written(), group(1, "DATA\r\n"));
    assert_eq!(
        c.out.bodies().collect::<Vec<_>>(),
        [(before, body(Form::Data))]
    );
    c.feed(b"250 queued\r\n");
    assert!(c.events.iter().any(|e| matches!(
        e,
        Event::Message {
            accepted: true,
            size: 1234,
            ..
        }
    )));
    // BDAT: the size of the message as stored in the command, the message right behind it.
    let w = workload(1, Pipelining::On, true, 2);
    let mut c = Conversation::new(&w, 2);
    c.content = corpus;
    c.feed(b"220 mx\r\n250-mx\r\n250 CHUNKING\r\n");
    let ehlo = "EHLO lg.test\r\n";
    let first = group(0, "BDAT 1234 LAST\r\n");
    let second = group(1, "BDAT 1234 LAST\r\n");
    assert_eq!(c.written(), format!("{ehlo}{first}{second}"));
    let at = ehlo.len() + first.len();
    assert_eq!(
        c.out.bodies().collect::<Vec<_>>(),
        [
            (at, body(Form::Bdat)),
            (at + second.len(), body(Form::Bdat))
        ]
    );
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
        // The end-to-end mode awaits only the recipient accepted: the second.
        let refused: Vec<(u16, u64)> = c
            .events
            .iter()
            .filter_map(|e| match *e {
                Event::Message {
                    rcpts_ok,
                    rcpts_refused,
                    ..
                } => Some((rcpts_ok, rcpts_refused)),
                _ => None,
            })
            .collect();
        assert_eq!(refused, [(1, 0b101)], "{pipelining:?}");
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
        assert_eq!(whole.0, live.out.written(), "{name}");
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
fn a_421_at_any_point_is_the_server_closing_not_a_desync() {
    // A server shutting down says 421 on idle connections too (RFC 5321 §3.8): with no
    // reply awaited, after the greeting, in the middle of a transaction, after QUIT.
    let w = workload(1, Pipelining::On, false, 1);
    let mut c = Conversation::new(&w, 1);
    c.hold = true;
    c.feed(b"220 mx\r\n250 mx\r\n");
    assert_eq!(c.end(), End::Idle);
    c.feed(b"421 4.3.2 Error: service shutting down, closing connection\r\n");
    assert_eq!(c.end(), End::Failed(Failure::ServiceClosing));
    let description = describe_failure(
        Failure::ServiceClosing,
        &w,
        b"421 4.3.2 Error: service shutting down, closing connection\r\n",
    );
    assert!(description.starts_with("the server closed the session: 421"));
    for (stream, stage) in [
        (&b"421 busy\r\n"[..], Stage::Greeting),
        (b"220 mx\r\n421 bye\r\n", Stage::Ehlo),
        (b"220 mx\r\n250 PIPELINING\r\n421 bye\r\n", Stage::Mail),
    ] {
        let mut c = Conversation::new(&w, 1);
        c.feed(stream);
        assert_eq!(c.end(), End::Failed(Failure::ServiceClosing), "{stage:?}");
        assert_eq!(c.replies().last(), Some(&(stage, 421)));
    }
    // Any other reply nobody asked for is still a desync.
    let mut c = Conversation::new(&w, 1);
    c.hold = true;
    c.feed(b"220 mx\r\n250 mx\r\n220 again\r\n");
    assert_eq!(c.end(), End::Failed(Failure::Desync));
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

// ---- STARTTLS, implicit TLS and AUTH ----

/// An EHLO reply offering `extensions`, one per line.
fn ehlo_reply(extensions: &[&str]) -> String {
    let mut reply = String::from("250-mx.test\r\n");
    for (i, extension) in extensions.iter().enumerate() {
        let sep = if i + 1 == extensions.len() { ' ' } else { '-' };
        reply.push_str(&format!("250{sep}{extension}\r\n"));
    }
    if extensions.is_empty() {
        reply = "250 mx.test\r\n".into();
    }
    reply
}

#[test]
fn starttls_ends_its_group_and_the_second_ehlo_decides() {
    // Pipelining on: still nothing goes behind STARTTLS (RFC 2920 §3.1, RFC 3207 §4).
    let w = session_workload(
        Security::StartTls,
        Some(AuthMech::Plain),
        Pipelining::Auto,
        false,
    );
    let mut c = Conversation::new(&w, 1);
    assert!(!c.client.tls_requested());
    c.feed(b"220 mx.test ESMTP\r\n");
    assert_eq!(c.written(), "EHLO lg.test\r\n");
    // Before TLS: PIPELINING, AUTH and STARTTLS offered; only STARTTLS is used.
    c.feed(ehlo_reply(&["PIPELINING", "AUTH PLAIN", "STARTTLS"]).as_bytes());
    assert_eq!(c.written(), "STARTTLS\r\n");
    assert!(!c.client.tls_requested());
    assert!(c.client.is_waiting());
    c.hold = true;
    c.feed(b"220 2.0.0 Ready to start TLS\r\n");
    // The conversation's transport ran the handshake; the client said EHLO again.
    assert_eq!(c.handshakes, 1);
    assert!(!c.client.tls_requested());
    assert_eq!(c.written(), "EHLO lg.test\r\n");
    // Inside TLS the server offers no PIPELINING: the session goes step by step.
    c.feed(ehlo_reply(&["AUTH LOGIN PLAIN", "8BITMIME"]).as_bytes());
    assert_eq!(
        c.written(),
        format!("AUTH PLAIN {}\r\n", b64("\0user\0pass"))
    );
    assert!(!c.client.was_ready());
    c.hold = false;
    c.feed(b"235 2.7.0 Authentication successful\r\n");
    assert!(c.client.was_ready());
    assert_eq!(c.written(), "MAIL FROM:<s0@a.test>\r\n", "not pipelined");
    c.feed(b"250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n");
    assert_eq!(c.end(), End::Clean);
    assert_eq!(c.messages(), [true]);
    assert_eq!(
        c.replies()[..6],
        [
            (Stage::Greeting, 220),
            (Stage::Ehlo, 250),
            (Stage::Tls, 220),
            (Stage::Ehlo, 250),
            (Stage::Auth, 235),
            (Stage::Mail, 250),
        ]
    );
    // STARTTLS went out at 2 ms (with the first EHLO's reply), its 220 came at 3 ms and the
    // handshake ended half a millisecond later: the stage `tls` is 1.5 ms (the 220 itself is
    // counted, not timed). The second EHLO went out then and was answered at 4 ms; AUTH went
    // out at 4 ms and its 235 came at 5 ms.
    let timings = c.timings();
    assert_eq!(timings[2], (Stage::Tls, 1.5));
    assert_eq!(timings[3], (Stage::Ehlo, 0.5));
    assert_eq!(timings[4], (Stage::Auth, 1.0));
    assert!(c.events.contains(&Event::Code {
        stage: Stage::Tls,
        code: 220
    }));

    // The other way round: PIPELINING and CHUNKING only inside TLS are used, and --bdat does
    // not fail on the first EHLO that lacks CHUNKING.
    let w = session_workload(Security::StartTls, None, Pipelining::Auto, true);
    let mut c = Conversation::new(&w, 2);
    c.feed(b"220 mx\r\n");
    c.feed(ehlo_reply(&["STARTTLS"]).as_bytes());
    c.feed(b"220 go\r\n");
    assert_eq!(c.written(), "EHLO lg.test\r\nSTARTTLS\r\nEHLO lg.test\r\n");
    c.feed(ehlo_reply(&["PIPELINING", "CHUNKING"]).as_bytes());
    let written = c.written();
    assert_eq!(written.matches("BDAT").count(), 2, "pipelined: {written}");
    assert_eq!(c.client.failure(), None);
}

#[test]
fn the_reply_to_starttls_decides_the_handshake() {
    // (reply to STARTTLS, failure); every reply is counted under `tls`, never timed.
    let cases: &[(&str, Option<Failure>)] = &[
        ("220 2.0.0 Ready to start TLS\r\n", None),
        ("220-multi\r\n220 line\r\n", None),
        (
            "454 4.7.0 TLS not available due to temporary reason\r\n",
            Some(Failure::Refused(Stage::Tls)),
        ),
        (
            "502 5.5.1 Not implemented\r\n",
            Some(Failure::Refused(Stage::Tls)),
        ),
        (
            "503 5.5.1 Already in TLS\r\n",
            Some(Failure::Refused(Stage::Tls)),
        ),
        (
            "501 5.5.4 Syntax error\r\n",
            Some(Failure::Refused(Stage::Tls)),
        ),
        ("421 4.3.2 shutting down\r\n", Some(Failure::ServiceClosing)),
        ("250 2.0.0 Ok\r\n", Some(Failure::Desync)),
        ("354 go ahead\r\n", Some(Failure::Desync)),
    ];
    let w = session_workload(Security::StartTls, None, Pipelining::On, false);
    for &(reply, failure) in cases {
        let mut c = Conversation::new(&w, 1);
        c.feed(b"220 mx\r\n");
        c.feed(ehlo_reply(&["STARTTLS"]).as_bytes());
        c.written();
        c.feed(reply.as_bytes());
        assert_eq!(c.client.failure(), failure, "{reply:?}");
        let code: u16 = reply[..3].parse().unwrap();
        assert_eq!(
            c.events[2],
            Event::Code {
                stage: Stage::Tls,
                code
            },
            "{reply:?}"
        );
        if failure.is_some() {
            assert_eq!(c.handshakes, 0, "{reply:?}");
            assert!(c.client.is_closed());
            assert_eq!(
                c.written(),
                "",
                "nothing after a refused STARTTLS: {reply:?}"
            );
        } else {
            assert_eq!(c.handshakes, 1);
            assert_eq!(c.written(), "EHLO lg.test\r\n");
        }
    }
}

#[test]
fn missing_extensions_fail_before_anything_is_sent() {
    let starttls = session_workload(Security::StartTls, None, Pipelining::Auto, false);
    let plain_auth = session_workload(
        Security::Plain,
        Some(AuthMech::Plain),
        Pipelining::Auto,
        false,
    );
    let login_auth = session_workload(
        Security::StartTls,
        Some(AuthMech::Login),
        Pipelining::Auto,
        false,
    );
    /// (workload, EHLO extensions before TLS, after TLS, failure, description)
    type Case<'a> = (&'a Workload, Vec<&'a str>, Vec<&'a str>, Failure, &'a str);
    let cases: Vec<Case> = vec![
        (
            &starttls,
            vec!["PIPELINING", "STARTTLSX"],
            vec![],
            Failure::MissingExtension(Extension::StartTls),
            "the server does not offer STARTTLS in its EHLO reply",
        ),
        (
            &plain_auth,
            vec!["PIPELINING"],
            vec![],
            Failure::MissingExtension(Extension::Auth),
            "the server does not offer AUTH in its EHLO reply (AUTH PLAIN asked for)",
        ),
        (
            &plain_auth,
            vec!["AUTH LOGIN CRAM-MD5"],
            vec![],
            Failure::MissingExtension(Extension::Auth),
            "the server does not offer AUTH PLAIN (it offers AUTH LOGIN CRAM-MD5)",
        ),
        (
            // AUTH offered before TLS only: the second EHLO is what counts.
            &login_auth,
            vec!["STARTTLS", "AUTH LOGIN"],
            vec!["PIPELINING"],
            Failure::MissingExtension(Extension::Auth),
            "the server does not offer AUTH in its EHLO reply (AUTH LOGIN asked for)",
        ),
    ];
    for (w, before, after, failure, description) in cases {
        let mut c = Conversation::new(w, 1);
        c.feed(b"220 mx\r\n");
        let ehlo = ehlo_reply(&before);
        c.feed(ehlo.as_bytes());
        let mut last = ehlo;
        if c.handshakes == 0 && c.client.failure().is_none() {
            c.feed(b"220 go\r\n");
            last = ehlo_reply(&after);
            c.feed(last.as_bytes());
        }
        assert_eq!(c.end(), End::Failed(failure), "{before:?} {after:?}");
        let written = c.all_written();
        assert!(
            !written.contains("AUTH") && !written.contains("MAIL"),
            "{written}"
        );
        assert_eq!(describe_failure(failure, w, last.as_bytes()), description);
    }
    // The pre-RFC form `AUTH=PLAIN` counts too, and mechanisms are case-insensitive.
    let offers: [&[&str]; 3] = [
        &["AUTH=PLAIN"],
        &["auth login plain"],
        &["AUTH LOGIN", "AUTH=LOGIN PLAIN"],
    ];
    for lines in offers {
        let mut c = Conversation::new(&plain_auth, 1);
        c.feed(b"220 mx\r\n");
        c.feed(ehlo_reply(lines).as_bytes());
        let line = lines.join(" / ");
        assert_eq!(c.client.failure(), None, "{line}");
        assert!(c
            .written()
            .ends_with(&format!("AUTH PLAIN {}\r\n", b64("\0user\0pass"))));
    }
    // HELO has no extensions at all.
    let mut helo = session_workload(
        Security::Plain,
        Some(AuthMech::Plain),
        Pipelining::Auto,
        false,
    );
    helo.helo = true;
    let mut c = Conversation::new(&helo, 1);
    c.feed(b"220 mx\r\n250-mx\r\n250 AUTH PLAIN\r\n");
    assert_eq!(
        c.end(),
        End::Failed(Failure::MissingExtension(Extension::Auth))
    );
}

#[test]
fn auth_login_answers_two_challenges_and_is_timed_to_the_end() {
    let w = session_workload(
        Security::Plain,
        Some(AuthMech::Login),
        Pipelining::Auto,
        false,
    );
    let mut c = Conversation::new(&w, 1);
    c.feed(b"220 mx\r\n");
    c.feed(ehlo_reply(&["PIPELINING", "AUTH PLAIN LOGIN"]).as_bytes());
    assert_eq!(c.written(), "EHLO lg.test\r\nAUTH LOGIN\r\n");
    c.feed(b"334 VXNlcm5hbWU6\r\n");
    assert_eq!(c.written(), format!("{}\r\n", b64("user")));
    c.feed(b"334 UGFzc3dvcmQ6\r\n");
    assert_eq!(c.written(), format!("{}\r\n", b64("pass")));
    assert!(!c.client.can_start(&w));
    c.feed(b"235 2.7.0 Authentication successful\r\n");
    // Ready: the pipelined group goes out.
    assert_eq!(
        c.written(),
        "MAIL FROM:<s0@a.test>\r\nRCPT TO:<r0@b.test>\r\nDATA\r\n"
    );
    assert_eq!(
        c.replies()[2..5],
        [(Stage::Auth, 334), (Stage::Auth, 334), (Stage::Auth, 235)]
    );
    // AUTH went out at 2 ms; the 235 is reply 5: 3 ms, challenges included.
    assert!(
        c.timings().contains(&(Stage::Auth, 3.0)),
        "{:?}",
        c.timings()
    );
    assert_eq!(
        c.events
            .iter()
            .filter(|e| matches!(
                e,
                Event::Reply {
                    stage: Stage::Auth,
                    ..
                }
            ))
            .count(),
        1
    );
}

#[test]
fn every_auth_reply_code_path() {
    // (mechanism, replies from the AUTH command on, outcome, reply codes counted under auth)
    use AuthMech::{Login, Plain};
    let refused = Some(Failure::Refused(Stage::Auth));
    let cases: &[(AuthMech, &[&str], Option<Failure>)] = &[
        (Plain, &["235 2.7.0 ok"], None),
        (
            Plain,
            &["535 5.7.8 Authentication credentials invalid"],
            refused,
        ),
        (Plain, &["538 5.7.11 Encryption required"], refused),
        (Plain, &["501 5.5.2 Cannot decode"], refused),
        (
            Plain,
            &["504 5.5.4 Unrecognized authentication type"],
            refused,
        ),
        (
            Plain,
            &["454 4.7.0 Temporary authentication failure"],
            refused,
        ),
        (Plain, &["534 5.7.9 Mechanism too weak"], refused),
        (
            Plain,
            &["530 5.7.0 Must issue a STARTTLS command first"],
            refused,
        ),
        (Plain, &["503 5.5.1 Already authenticated"], refused),
        (Plain, &["421 4.3.2 bye"], Some(Failure::ServiceClosing)),
        // PLAIN sent its response already: a challenge or another success is out of step.
        (Plain, &["334 "], Some(Failure::Desync)),
        (Plain, &["250 ok"], Some(Failure::Desync)),
        (
            Login,
            &["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "235 2.7.0 ok"],
            None,
        ),
        (
            Login,
            &["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "535 5.7.8 no"],
            refused,
        ),
        (
            Login,
            &["334 VXNlcm5hbWU6", "535 5.7.8 unknown user"],
            refused,
        ),
        (Login, &["504 5.5.4 No LOGIN here"], refused),
        (Login, &["538 5.7.11 Encryption required"], refused),
        (
            Login,
            &["334 VXNlcm5hbWU6", "501 5.5.2 bad base64"],
            refused,
        ),
        // A 235 before the password, or a third challenge: out of step.
        (
            Login,
            &["334 VXNlcm5hbWU6", "235 2.7.0 ok"],
            Some(Failure::Desync),
        ),
        (Login, &["334 a", "334 b", "334 c"], Some(Failure::Desync)),
        (Login, &["250 ok"], Some(Failure::Desync)),
    ];
    for &(mech, replies, outcome) in cases {
        let w = session_workload(Security::Plain, Some(mech), Pipelining::On, false);
        let mut c = Conversation::new(&w, 1);
        c.feed(b"220 mx\r\n");
        c.feed(ehlo_reply(&["AUTH PLAIN LOGIN"]).as_bytes());
        for reply in replies {
            c.feed(format!("{reply}\r\n").as_bytes());
        }
        assert_eq!(c.client.failure(), outcome, "{mech:?} {replies:?}");
        let auth_codes: Vec<u16> = c
            .replies()
            .into_iter()
            .filter(|(s, _)| *s == Stage::Auth)
            .map(|(_, code)| code)
            .collect();
        let expected: Vec<u16> = replies.iter().map(|r| r[..3].parse().unwrap()).collect();
        assert_eq!(auth_codes, expected, "{mech:?} {replies:?}");
        let written = c.all_written();
        match outcome {
            None => assert!(written.contains("MAIL FROM"), "{written}"),
            Some(failure) => {
                assert!(!written.contains("MAIL FROM"), "{written}");
                assert!(c.client.is_closed());
                let last = format!("{}\r\n", replies.last().unwrap());
                let description = describe_failure(failure, &w, last.as_bytes());
                if failure == Failure::Refused(Stage::Auth) {
                    assert_eq!(
                        description,
                        format!("AUTH {} refused: {}", mech.name(), replies.last().unwrap())
                    );
                }
                // Credentials never appear in what is shown.
                assert!(!description.contains(&b64("pass")), "{description}");
            }
        }
    }
}

#[test]
fn implicit_tls_greets_inside_the_handshake() {
    let w = session_workload(
        Security::Implicit,
        Some(AuthMech::Plain),
        Pipelining::Auto,
        false,
    );
    let base = Instant::now();
    // Before the handshake: waiting for it (the reply timeout runs), and no reply can come.
    let mut client = Client::new(&w, base, base + Duration::from_millis(2));
    assert!(client.tls_requested());
    assert!(client.is_waiting());
    let mut out = Output::default();
    let mut events = Vec::new();
    let reply = parse_reply(b"220 mx\r\n").unwrap().unwrap().0;
    client.on_reply(&w, reply, b"220 mx\r\n", base, &mut out, |e| events.push(e));
    assert_eq!(
        client.failure(),
        Some(Failure::Desync),
        "plaintext before the handshake"
    );

    let mut client = Client::new(&w, base, base + Duration::from_millis(2));
    client.on_tls_established(&w, base + Duration::from_millis(5), &mut out, |e| {
        events.push(e)
    });
    assert_eq!(events, [Event::Handshake { nanos: 3_000_000 }]);
    assert!(out.is_empty(), "the server speaks first");
    assert!(!client.tls_requested());
    // A second handshake nobody asked for is out of step.
    client.on_tls_established(&w, base, &mut out, |e| events.push(e));
    assert_eq!(client.failure(), Some(Failure::Desync));

    // A whole session: greeting, EHLO (no STARTTLS inside TLS), AUTH, the transaction.
    let mut c = Conversation::new(&w, 1);
    assert_eq!(c.handshakes, 1);
    c.feed(b"220 mx.test ESMTP\r\n");
    assert_eq!(c.written(), "EHLO lg.test\r\n");
    c.feed(ehlo_reply(&["PIPELINING", "AUTH PLAIN"]).as_bytes());
    assert!(c.written().starts_with("AUTH PLAIN "));
    c.feed(b"235 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n");
    assert_eq!(c.end(), End::Clean);
    assert_eq!(c.messages(), [true]);
    assert!(!c.all_written().contains("STARTTLS"));
    // The greeting is timed from the connect's start, the handshake included.
    assert_eq!(c.timings()[0], (Stage::Tls, 0.5));
    assert_eq!(c.timings()[1], (Stage::Greeting, 1.0));
}

#[test]
fn starttls_never_runs_a_plaintext_reply_as_if_it_came_through_tls() {
    // Bytes behind the 220 in the same read are not handed over (the engine ends the
    // connection); a client in the handshake refuses any reply.
    let w = session_workload(Security::StartTls, None, Pipelining::On, false);
    let mut c = Conversation::new(&w, 1);
    c.feed(b"220 mx\r\n");
    c.feed(ehlo_reply(&["STARTTLS"]).as_bytes());
    c.feed(b"220 go\r\n250-mx\r\n250 PIPELINING\r\n");
    assert_eq!(c.end(), End::Injected);
    assert_eq!(c.handshakes, 0);
    assert!(c.client.tls_requested());
    assert_eq!(
        c.replies().len(),
        3,
        "the injected EHLO reply was not taken"
    );
    assert_eq!(c.all_written(), "EHLO lg.test\r\nSTARTTLS\r\n");
}

#[test]
fn tls_and_auth_sessions_against_the_model_server() {
    use AuthMech::{Login, Plain};
    let cases = [
        (
            "STARTTLS, PLAIN, pipelined DATA",
            Security::StartTls,
            Some(Plain),
            false,
        ),
        (
            "STARTTLS, LOGIN, BDAT",
            Security::StartTls,
            Some(Login),
            true,
        ),
        (
            "implicit TLS, LOGIN",
            Security::Implicit,
            Some(Login),
            false,
        ),
        ("plain SMTP, PLAIN", Security::Plain, Some(Plain), false),
        ("STARTTLS alone", Security::StartTls, None, false),
    ];
    for (name, security, mech, bdat) in cases {
        let w = session_workload(security, mech, Pipelining::Auto, bdat);
        let mut server = Server {
            starttls: true,
            auth: Some("PLAIN LOGIN"),
            ..Server::esmtp()
        };
        let (c, _) = talk(&w, &mut server, 3);
        assert_eq!(c.end(), End::Clean, "{name}");
        assert_eq!(c.messages(), [true; 3], "{name}");
        assert_eq!(server.tls, security == Security::StartTls, "{name}");
        assert_eq!(
            c.handshakes,
            u32::from(security != Security::Plain),
            "{name}"
        );
        let auths = c
            .replies()
            .iter()
            .filter(|r| **r == (Stage::Auth, 235))
            .count();
        assert_eq!(auths, usize::from(mech.is_some()), "{name}");
    }
    // Wrong credentials: the model refuses with 535; the session ends before any MAIL.
    let w = Workload {
        security: Security::StartTls,
        auth: Some(Auth::new(Login, "user", "wrong")),
        ..workload(1, Pipelining::Auto, false, 1)
    };
    let mut server = Server {
        starttls: true,
        auth: Some("LOGIN"),
        ..Server::esmtp()
    };
    let (c, _) = talk(&w, &mut server, 1);
    assert_eq!(c.end(), End::Failed(Failure::Refused(Stage::Auth)));
    assert!(c.replies().contains(&(Stage::Auth, 535)));
    assert!(!c.all_written().contains("MAIL"));
}

#[test]
fn tls_sessions_cut_at_every_offset_give_the_same_session() {
    // The reply stream of a STARTTLS + AUTH LOGIN session, cut anywhere before the 220 to
    // STARTTLS and anywhere after it (never across it: bytes behind the 220 in one read are
    // an injection, tested above).
    for (security, bdat) in [(Security::StartTls, false), (Security::Implicit, true)] {
        let w = session_workload(security, Some(AuthMech::Login), Pipelining::Auto, bdat);
        let mut server = Server {
            starttls: true,
            auth: Some("PLAIN LOGIN"),
            multi_line: true,
            ..Server::esmtp()
        };
        let (live, stream) = talk(&w, &mut server, 2);
        assert_eq!(live.end(), End::Clean, "{security:?}");
        let boundary = match security {
            Security::StartTls => {
                let at = find(&stream, b"220-2.0.0 Ready to start TLS\r\n220 ok\r\n");
                at + "220-2.0.0 Ready to start TLS\r\n220 ok\r\n".len()
            }
            _ => 0,
        };
        let (before, after) = stream.split_at(boundary);
        let whole = replay(&w, 2, &[before, after]);
        assert_eq!(whole.0, live.out.written(), "{security:?}");
        assert_eq!(whole.2, End::Clean, "{security:?}");
        for cut in 0..=before.len() {
            let (a, b) = before.split_at(cut);
            assert_eq!(
                replay(&w, 2, &[a, b, after]),
                whole,
                "{security:?} before, {cut}"
            );
        }
        for cut in 0..=after.len() {
            let (a, b) = after.split_at(cut);
            assert_eq!(
                replay(&w, 2, &[before, a, b]),
                whole,
                "{security:?} after, {cut}"
            );
        }
        let mut bytes: Vec<&[u8]> = before.chunks(1).collect();
        bytes.extend(after.chunks(1));
        assert_eq!(replay(&w, 2, &bytes), whole, "{security:?} byte by byte");
    }
}

/// Where `needle` starts in `haystack`.
#[track_caller]
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in the stream")
}

#[test]
fn failures_are_described_with_the_reply_that_caused_them() {
    let w = session_workload(
        Security::StartTls,
        Some(AuthMech::Plain),
        Pipelining::Auto,
        false,
    );
    let cases: &[(Failure, &[u8], &str)] = &[
        (
            Failure::Refused(Stage::Tls),
            b"454 4.7.0 TLS not available\r\n",
            "STARTTLS refused: 454 4.7.0 TLS not available",
        ),
        (
            Failure::Refused(Stage::Greeting),
            b"554-no\r\n554 5.7.1 go away\r\n",
            "greeting refused: 554 5.7.1 go away",
        ),
        (
            Failure::Refused(Stage::Ehlo),
            b"550 \x01bad\xff\r\n",
            "EHLO refused: 550 ?bad?",
        ),
        (
            Failure::ServiceClosing,
            b"421 4.3.2 shutting down\r\n",
            "the server closed the session: 421 4.3.2 shutting down",
        ),
        (
            Failure::MissingExtension(Extension::Chunking),
            b"250 mx\r\n",
            "the server does not offer CHUNKING in its EHLO reply (needed by --bdat)",
        ),
        (
            Failure::Desync,
            b"354 what\r\n",
            "replies out of step with the commands (last: 354 what)",
        ),
    ];
    for &(failure, reply, text) in cases {
        assert_eq!(describe_failure(failure, &w, reply), text);
    }
    let long = format!("550 {}\r\n", "x".repeat(500));
    assert!(describe_failure(Failure::Refused(Stage::Ehlo), &w, long.as_bytes()).len() < 140);
}

#[test]
fn an_eight_bit_corpus_message_says_body_8bitmime_only_where_offered() {
    let eight_bit = Content::Corpus {
        index: 0,
        size: 100,
        eight_bit: true,
    };
    for (ehlo, want) in [
        (
            &b"220 mx\r\n250-mx\r\n250-8BITMIME\r\n250 PIPELINING\r\n"[..],
            "MAIL FROM:<s0@a.test> BODY=8BITMIME\r\n",
        ),
        (
            b"220 mx\r\n250-mx\r\n250 PIPELINING\r\n",
            "MAIL FROM:<s0@a.test>\r\n",
        ),
    ] {
        let w = workload(1, Pipelining::On, false, 1);
        let mut c = Conversation::new(&w, 1);
        c.content = eight_bit;
        c.feed(ehlo);
        assert!(c.written().contains(want), "{}", c.written());
    }
}
