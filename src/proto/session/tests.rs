//! The session's unit tests: whole conversations as byte strings, cut at every split point.

use super::*;
use crate::proto::gate::Open;
use crate::proto::gate::{Checkpoint, Decision, Gate, GateContext, GateReply};
use crate::proto::reply::ReplyTally;

use crate::proto::testkit::RecordingSink;

/// `on_input` with an open gate and a throwaway tally; returns the bytes consumed.
fn feed(
    session: &mut Session,
    config: &SessionConfig,
    input: &[u8],
    out: &mut Vec<u8>,
    sink: &mut RecordingSink,
) -> usize {
    let mut tally = ReplyTally::default();
    session
        .on_input(
            config,
            input,
            &mut Replies::new(out, &mut tally),
            sink,
            &mut Open,
        )
        .consumed
}

fn store_complete(
    session: &mut Session,
    stored: bool,
    out: &mut Vec<u8>,
    sink: &mut RecordingSink,
) {
    session.resume(
        &config(),
        Resume::Stored(stored),
        &mut Replies::new(out, &mut ReplyTally::default()),
        sink,
    );
}

fn timeout(
    session: &mut Session,
    reply: &'static [u8],
    out: &mut Vec<u8>,
    sink: &mut RecordingSink,
) {
    session.resume(
        &config(),
        Resume::Expired(reply),
        &mut Replies::new(out, &mut ReplyTally::default()),
        sink,
    );
}

fn shutdown(session: &mut Session, sink: &mut RecordingSink) {
    let progress = session.resume(
        &config(),
        Resume::Shutdown,
        &mut Replies::new(&mut Vec::new(), &mut ReplyTally::default()),
        sink,
    );
    assert_eq!(progress.clock == Clock::Quit, session.awaits_quit());
}

fn config() -> SessionConfig {
    SessionConfig {
        banner: Banner::new("mx.test", 1000),
        max_line_len: 128,
        max_message_size: 1000,
        max_recipients: 3,
        max_errors: 20,
        max_junk_commands: 100,
        bare_lf: BareLfPolicy::Reject,
        security: SecurityPolicy::default(),
        dsn: false,
    }
}

/// Feeds `input` in pieces cut at `cuts`, carrying unconsumed bytes like the server does.
fn run_split(
    config: &SessionConfig,
    input: &[u8],
    cuts: &[usize],
) -> (String, RecordingSink, Session) {
    let mut session = Session::new();
    let mut sink = RecordingSink::default();
    let mut out = Vec::new();
    session.on_connect(
        config,
        &mut Replies::new(&mut out, &mut ReplyTally::default()),
        &mut sink,
        &mut Open,
    );
    let mut carry: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
    ends.sort_unstable();
    ends.push(input.len());
    for end in ends {
        if end < start {
            continue;
        }
        carry.extend_from_slice(&input[start..end]);
        let consumed = feed(&mut session, config, &carry, &mut out, &mut sink);
        assert!(
            carry.len() - consumed < config.max_line_len,
            "carry unbounded"
        );
        carry.drain(..consumed);
        start = end;
    }
    (String::from_utf8(out).unwrap(), sink, session)
}

fn session_after(input: &[u8]) -> Session {
    run_split(&config(), input, &[]).2
}

fn run(input: &[u8]) -> String {
    let (out, _, _) = run_split(&config(), input, &[]);
    out.strip_prefix("220 mx.test ESMTP fastsmtpd\r\n")
        .unwrap()
        .to_string()
}

fn ehlo(rest: &str) -> String {
    run(format!("EHLO c\r\n{rest}").as_bytes())
        .strip_prefix(std::str::from_utf8(&config().banner.ehlo).unwrap())
        .unwrap()
        .to_string()
}

#[test]
fn whole_session_pipelined() {
    let input = b"EHLO client\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\nSubject: x\r\n\r\n..hi\r\n.\r\nQUIT\r\n";
    let config = config();
    let (out, sink, session) = run_split(&config, input, &[]);
    let want = format!(
        "220 mx.test ESMTP fastsmtpd\r\n{}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n",
        std::str::from_utf8(&config.banner.ehlo).unwrap()
    );
    assert_eq!(out, want);
    assert!(session.is_closed());
    assert_eq!(sink.messages.len(), 1);
    assert_eq!(sink.messages[0].0, b"a@b");
    assert_eq!(sink.messages[0].1, vec![b"c@d".to_vec(), b"e@f".to_vec()]);
    assert_eq!(sink.messages[0].2, b"Subject: x\r\n\r\n.hi\r\n");
    // The same bytes split at every point, and one byte at a time, give the same result.
    for cut in 0..input.len() {
        let (split_out, split_sink, _) = run_split(&config, input, &[cut]);
        assert_eq!(split_out, want, "cut at {cut}");
        assert_eq!(split_sink.messages, sink.messages, "cut at {cut}");
    }
    let every: Vec<usize> = (0..input.len()).collect();
    let (split_out, split_sink, _) = run_split(&config, input, &every);
    assert_eq!(split_out, want);
    assert_eq!(split_sink.messages, sink.messages);
}

#[test]
fn helo_gets_one_line_and_no_parameters() {
    assert_eq!(run(b"HELO c\r\n"), "250 mx.test\r\n");
    assert_eq!(
        run(b"HELO c\r\nMAIL FROM:<a@b> SIZE=10\r\nMAIL FROM:<a@b>\r\n"),
        "250 mx.test\r\n555 5.5.4 Error: parameters not supported after HELO\r\n250 2.1.0 Ok\r\n"
    );
}

#[test]
fn sequence_errors() {
    assert_eq!(
        run(b"MAIL FROM:<a@b>\r\n"),
        "503 5.5.1 Error: send HELO/EHLO first\r\n"
    );
    assert_eq!(
        ehlo("RCPT TO:<a@b>\r\n"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    assert_eq!(ehlo("DATA\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
    assert_eq!(
        ehlo("MAIL FROM:<a@b>\r\nDATA\r\n"),
        "250 2.1.0 Ok\r\n503 5.5.1 Error: need RCPT command\r\n"
    );
    assert_eq!(
        ehlo("MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\n"),
        "250 2.1.0 Ok\r\n503 5.5.1 Error: nested MAIL command\r\n"
    );
    // All recipients refused: 554 (RFC 5321 §3.3).
    assert_eq!(
        ehlo("MAIL FROM:<a@b>\r\nRCPT TO:<x>\r\nDATA\r\n"),
        "250 2.1.0 Ok\r\n501 5.1.3 Error: bad recipient address syntax\r\n554 5.5.1 Error: no valid recipients\r\n"
    );
    // A failed command changes nothing: the transaction goes on.
    assert_eq!(
        ehlo("MAIL FROM:<a@b>\r\nFOO\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\n"),
        "250 2.1.0 Ok\r\n500 5.5.2 Error: command not recognized\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n"
    );
    // RSET ends the transaction.
    assert_eq!(
        ehlo("MAIL FROM:<a@b>\r\nRSET\r\nRCPT TO:<c@d>\r\n"),
        "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n503 5.5.1 Error: need MAIL command\r\n"
    );
    // So does a new EHLO (RFC 5321 §4.1.4).
    let config = config();
    let ehlo_reply = std::str::from_utf8(&config.banner.ehlo).unwrap();
    assert_eq!(
        ehlo("MAIL FROM:<a@b>\r\nEHLO again\r\nRCPT TO:<c@d>\r\n"),
        format!("250 2.1.0 Ok\r\n{ehlo_reply}503 5.5.1 Error: need MAIL command\r\n")
    );
}

#[test]
fn simple_commands() {
    assert_eq!(
        run(b"NOOP\r\nRSET\r\nVRFY x\r\nHELP\r\nEXPN x\r\nFOO\r\nQUIT\r\nNOOP\r\n"),
        "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n252 2.5.0 Cannot VRFY user, but will accept message\r\n214 2.0.0 fastsmtpd: see RFC 5321\r\n502 5.5.1 Error: command not implemented\r\n500 5.5.2 Error: command not recognized\r\n221 2.0.0 Bye\r\n"
    );
}

#[test]
fn bare_lf_in_command_is_one_line_one_reply() {
    assert_eq!(
        run(b"NOOP\nNOOP\r\nNOOP\r\n"),
        "500 5.5.2 Error: bare CR, LF or NUL in command line\r\n250 2.0.0 Ok\r\n"
    );
}

#[test]
fn not_smtp_closes() {
    assert_eq!(
        run(b"GET / HTTP/1.1\r\nHost: x\r\n"),
        "221 2.7.0 Error: this is an SMTP server, closing\r\n"
    );
}

#[test]
fn overlong_line_is_skipped_and_session_stays_in_sync() {
    let config = config();
    let mut input = vec![b'N'; 1000];
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let want = "220 mx.test ESMTP fastsmtpd\r\n500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n";
    for cut in [0, 1, 127, 128, 129, 999, 1000, 1001, 1002] {
        assert_eq!(run_split(&config, &input, &[cut]).0, want, "cut {cut}");
    }
    let every: Vec<usize> = (0..input.len()).collect();
    assert_eq!(run_split(&config, &input, &every).0, want);
    // A line of exactly the limit is fine; one more byte is not.
    let mut exact = b"NOOP ".to_vec();
    exact.resize(config.max_line_len - 2, b'x');
    exact.extend_from_slice(b"\r\n");
    assert_eq!(run(&exact), "250 2.0.0 Ok\r\n");
    exact.insert(5, b'x');
    assert_eq!(run(&exact), "500 5.5.2 Line too long\r\n");
}

#[test]
fn error_cap_closes() {
    let input = "FOO\r\n".repeat(25);
    let out = run(input.as_bytes());
    assert_eq!(out.matches("500 5.5.2").count(), 20);
    assert!(out.ends_with("421 4.7.0 Error: too many errors, closing connection\r\n"));
}

#[test]
fn recipient_limit() {
    let out = ehlo("MAIL FROM:<a@b>\r\nRCPT TO:<1@d>\r\nRCPT TO:<2@d>\r\nRCPT TO:<3@d>\r\nRCPT TO:<4@d>\r\nDATA\r\n.\r\n");
    assert_eq!(
        out,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n452 4.5.3 Error: too many recipients\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n"
    );
}

#[test]
fn size_limits() {
    assert_eq!(
        ehlo("MAIL FROM:<a@b> SIZE=1001\r\nMAIL FROM:<a@b> SIZE=1000\r\n"),
        "552 5.3.4 Error: message size exceeds fixed limit\r\n250 2.1.0 Ok\r\n"
    );
    // Oversize content: nothing said during DATA, 552 after the end, nothing stored.
    let body = "x".repeat(100) + "\r\n";
    let input = format!(
        "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n{}.\r\nNOOP\r\n",
        body.repeat(20)
    );
    let (out, sink, _) = run_split(&config(), input.as_bytes(), &[]);
    assert!(out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n552 5.3.4 Error: message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n"), "{out}");
    assert!(sink.messages.is_empty());
    assert_eq!(sink.aborted, 1);
}

#[test]
fn utf8_addresses() {
    assert_eq!(
        ehlo("MAIL FROM:<j\u{f6}rg@example.org>\r\nMAIL FROM:<j\u{f6}rg@example.org> SMTPUTF8\r\nRCPT TO:<\u{e9}@example.org>\r\n"),
        "550 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
    );
    assert_eq!(
        ehlo("MAIL FROM:<a@b>\r\nRCPT TO:<\u{e9}@example.org>\r\n"),
        "250 2.1.0 Ok\r\n553 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n"
    );
}

#[test]
fn bare_lf_policy() {
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nline\nwith bare LF\r\n.\r\nNOOP\r\n";
    let (out, sink, _) = run_split(&config(), input, &[]);
    assert!(out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n550 5.5.2 Error: bare CR or LF in message data (see --bare-lf keep)\r\n250 2.0.0 Ok\r\n"), "{out}");
    assert!(sink.messages.is_empty());
    let keep = SessionConfig {
        bare_lf: BareLfPolicy::Keep,
        ..config()
    };
    let (out, sink, _) = run_split(&keep, input, &[]);
    assert!(
        out.ends_with("250 2.0.0 Ok: queued\r\n250 2.0.0 Ok\r\n"),
        "{out}"
    );
    assert_eq!(sink.messages[0].2, b"line\nwith bare LF\r\n");
}

#[test]
fn smuggled_message_is_content() {
    // The classic smuggling attempt: `\n.\n` then a second transaction. One message, one
    // 250 (well, 550: bare LF) after the real end, no second transaction.
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhello\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nevil\r\n.\r\n";
    let keep = SessionConfig {
        bare_lf: BareLfPolicy::Keep,
        ..config()
    };
    let (out, sink, _) = run_split(&keep, input, &[]);
    assert!(
        out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n"),
        "{out}"
    );
    assert_eq!(sink.messages.len(), 1);
    assert_eq!(
        sink.messages[0].2,
        b"hello\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nevil\r\n"
    );
}

#[test]
fn store_failure_gives_451() {
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n";
    let config = config();
    let mut session = Session::new();
    let mut sink = RecordingSink {
        fail_store: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    feed(&mut session, &config, input, &mut out, &mut sink);
    assert!(out.ends_with(b"451 4.3.0 Error: could not store message, try again later\r\n"));
}

#[test]
fn pending_store_holds_the_reply_and_the_pipelined_input() {
    let config = config();
    let mut session = Session::new();
    let mut sink = RecordingSink {
        defer_store: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    let first = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\none\r\n.\r\n";
    let rest = b"MAIL FROM:<e@f>\r\nRCPT TO:<g@h>\r\nBDAT 3 LAST\r\ntwoQUIT\r\n";
    let input = [&first[..], &rest[..]].concat();
    let consumed = feed(&mut session, &config, &input, &mut out, &mut sink);
    // Processing stops right after the first message: its reply and the rest wait.
    assert_eq!(consumed, first.len());
    assert!(session.is_awaiting_store());
    assert!(out.ends_with(reply::DATA_GO_AHEAD));
    assert_eq!(feed(&mut session, &config, rest, &mut out, &mut sink), 0);
    assert_eq!(session.take_accepted(), (0, 0));

    out.clear();
    store_complete(&mut session, true, &mut out, &mut sink);
    assert_eq!(out, reply::MESSAGE_ACCEPTED);
    assert_eq!(session.take_accepted(), (1, 5));
    let consumed = feed(&mut session, &config, rest, &mut out, &mut sink);
    assert_eq!(&rest[consumed..], b"QUIT\r\n");
    assert!(session.is_awaiting_store());

    out.clear();
    store_complete(&mut session, false, &mut out, &mut sink);
    assert_eq!(out, reply::STORE_FAILED);
    assert_eq!(session.take_accepted(), (0, 0));
    feed(
        &mut session,
        &config,
        &rest[consumed..],
        &mut out,
        &mut sink,
    );
    assert!(out.ends_with(b"221 2.0.0 Bye\r\n"));
    assert!(session.is_closed());
    assert_eq!(sink.pending, 2);
    assert_eq!(sink.aborted, 0);
}

/// A pending message refused by the sink with a reply of its own (a relay spool's `452
/// 4.3.1`) gets that reply, counts as not accepted, and the session reads on; a refusal
/// that comes when nothing is pending is ignored.
#[test]
fn a_pending_store_refused_with_its_own_reply_gives_that_reply() {
    const SPOOL_FULL: &[u8] = b"452 4.3.1 Error: could not spool message, try again later\r\n";
    let config = config();
    let mut session = Session::new();
    let mut sink = RecordingSink {
        defer_store: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\none\r\n.\r\n";
    feed(&mut session, &config, input, &mut out, &mut sink);
    assert!(session.is_awaiting_store());
    out.clear();
    let refuse = |session: &mut Session, out: &mut Vec<u8>, sink: &mut RecordingSink| {
        session.resume(
            &config,
            Resume::Refused(SPOOL_FULL),
            &mut Replies::new(out, &mut ReplyTally::default()),
            sink,
        );
    };
    refuse(&mut session, &mut out, &mut sink);
    assert_eq!(out, SPOOL_FULL);
    assert_eq!(session.take_accepted(), (0, 0));
    assert!(!session.is_awaiting_store());
    out.clear();
    refuse(&mut session, &mut out, &mut sink);
    assert!(out.is_empty(), "nothing pending: ignored");
    feed(&mut session, &config, b"NOOP\r\n", &mut out, &mut sink);
    assert!(out.starts_with(b"250 "));
}

#[test]
fn timeout_while_a_store_is_pending_closes_and_ignores_the_late_outcome() {
    let config = config();
    let mut session = Session::new();
    let mut sink = RecordingSink {
        defer_store: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n";
    feed(&mut session, &config, input, &mut out, &mut sink);
    assert!(session.is_awaiting_store());
    out.clear();
    timeout(&mut session, reply::TIMEOUT, &mut out, &mut sink);
    assert_eq!(out, reply::TIMEOUT);
    out.clear();
    store_complete(&mut session, true, &mut out, &mut sink);
    assert!(out.is_empty());
    assert!(session.is_closed());
    assert_eq!(session.take_accepted(), (0, 0));
}

#[test]
fn bdat_messages() {
    let input = b"EHLO c\r\nMAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\nBDAT 5\r\nhel\r\nBDAT 3 LAST\r\nlo\nQUIT\r\n";
    let config = config();
    let (out, sink, _) = run_split(&config, input, &[]);
    let ehlo_reply = std::str::from_utf8(&config.banner.ehlo).unwrap();
    let want = format!("220 mx.test ESMTP fastsmtpd\r\n{ehlo_reply}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 5 octets received\r\n250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n");
    assert_eq!(out, want);
    assert_eq!(sink.messages[0].2, b"hel\r\nlo\n");
    for cut in 0..input.len() {
        let (split_out, split_sink, _) = run_split(&config, input, &[cut]);
        assert_eq!(split_out, want, "cut {cut}");
        assert_eq!(split_sink.messages, sink.messages);
    }
    // BDAT 0 LAST ends a message.
    assert_eq!(
        ehlo("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 2\r\nhiBDAT 0 LAST\r\n"),
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 2 octets received\r\n250 2.0.0 Ok: queued\r\n"
    );
}

#[test]
fn bdat_octets_consumed_before_any_reply() {
    // Without a transaction, the 12 octets (which look like commands) are swallowed and
    // exactly one 503 comes back.
    assert_eq!(
        ehlo("BDAT 12 LAST\r\nNOOP\r\nNOOP\r\n"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    assert_eq!(
        run(b"BDAT 6\r\nQUIT\r\nNOOP\r\n"),
        "503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n"
    );
}

#[test]
fn bdat_sequence_errors() {
    // DATA after BDAT.
    assert_eq!(
        ehlo("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1\r\nxDATA\r\nMAIL FROM:<a@b>\r\nRCPT TO:<e@f>\r\nRSET\r\nBDAT 1 LAST\r\ny"),
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 1 octets received\r\n503 5.5.1 Error: DATA not allowed after BDAT\r\n503 5.5.1 Error: command not allowed during BDAT\r\n503 5.5.1 Error: command not allowed during BDAT\r\n250 2.0.0 Ok\r\n503 5.5.1 Error: need MAIL command\r\n"
    );
    // BDAT after LAST has no transaction.
    assert_eq!(
        ehlo("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1 LAST\r\nxBDAT 1 LAST\r\ny"),
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued\r\n503 5.5.1 Error: need MAIL command\r\n"
    );
    // BINARYMIME needs BDAT.
    assert_eq!(
        ehlo("MAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n503 5.5.1 Error: BODY=BINARYMIME requires BDAT\r\n"
    );
    // Malformed BDAT closes.
    let (out, _, session) = run_split(&config(), b"EHLO c\r\nBDAT x\r\nNOOP\r\n", &[]);
    assert!(out.ends_with("501 5.5.4 Syntax: BDAT size [LAST], closing connection\r\n"));
    assert!(session.is_closed());
}

#[test]
fn bdat_over_size_refuses_until_last_then_recovers() {
    let big = "x".repeat(600);
    let input = format!(
        "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 600\r\n{big}BDAT 600\r\n{big}BDAT 10 LAST\r\n0123456789MAIL FROM:<a@b>\r\n"
    );
    let (out, sink, _) = run_split(&config(), input.as_bytes(), &[]);
    assert!(out.ends_with("250 2.0.0 Ok: 600 octets received\r\n552 5.3.4 Error: message size exceeds fixed limit\r\n552 5.3.4 Error: message size exceeds fixed limit\r\n250 2.1.0 Ok\r\n"), "{out}");
    assert!(sink.messages.is_empty());
    assert_eq!(sink.aborted, 1);
    // Discarding far past the limit closes instead of reading on.
    let (out, _, session) = run_split(&config(), b"EHLO c\r\nBDAT 2000\r\n", &[]);
    assert!(out.ends_with("421 4.7.0 Error: too much refused message data, closing connection\r\n"));
    assert!(session.is_closed());
}

#[test]
fn many_messages_on_one_session() {
    let mut input = b"EHLO c\r\n".to_vec();
    for i in 0..100 {
        input.extend_from_slice(
            format!("MAIL FROM:<a{i}@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nmessage {i}\r\n.\r\n")
                .as_bytes(),
        );
    }
    let (out, sink, _) = run_split(&config(), &input, &[7, 500, 501, 2000]);
    assert_eq!(out.matches("250 2.0.0 Ok: queued").count(), 100);
    assert_eq!(sink.messages.len(), 100);
    assert_eq!(sink.messages[42].2, b"message 42\r\n");
    let mut session = session_after(&input);
    assert_eq!(
        session.take_accepted(),
        (100, sink.messages.iter().map(|m| m.2.len() as u64).sum())
    );
    assert_eq!(session.take_accepted(), (0, 0));
}

#[test]
fn shutdown_lets_a_message_finish_then_takes_only_quit() {
    let config = config();
    let mut session = Session::new();
    let mut sink = RecordingSink::default();
    let mut out = Vec::new();
    feed(
        &mut session,
        &config,
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npart",
        &mut out,
        &mut sink,
    );
    out.clear();
    shutdown(&mut session, &mut sink);
    assert!(!session.awaits_quit() && !session.is_closed());
    // The message finishes; then only QUIT is taken: a NOOP (any command but QUIT) is
    // answered 421 and closes, unexecuted.
    feed(
        &mut session,
        &config,
        b"\r\n.\r\nNOOP\r\nQUIT\r\n",
        &mut out,
        &mut sink,
    );
    assert_eq!(
        out,
        b"250 2.0.0 Ok: queued\r\n421 4.3.2 Error: service shutting down, closing connection\r\n"
    );
    assert!(session.is_closed());
    // A QUIT right behind the last reply gets its 221, as on any day (review F12: a client
    // of --exit-after-messages was told 421 for its QUIT).
    let mut polite = Session::new();
    out.clear();
    feed(
        &mut polite,
        &config,
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n",
        &mut out,
        &mut sink,
    );
    shutdown(&mut polite, &mut sink);
    assert!(polite.awaits_quit());
    out.clear();
    feed(&mut polite, &config, b"QUIT\r\n", &mut out, &mut sink);
    assert_eq!(out, reply::BYE);
    assert!(polite.is_closed() && !polite.awaits_quit());
    // An idle one says nothing until the caller ends it (its QUIT window is the caller's).
    let mut idle = Session::new();
    out.clear();
    shutdown(&mut idle, &mut sink);
    assert!(out.is_empty() && idle.awaits_quit());
    timeout(&mut idle, reply::SHUTTING_DOWN, &mut out, &mut sink);
    assert_eq!(out, reply::SHUTTING_DOWN);
    assert!(idle.is_closed());
}

#[test]
fn timeout_and_disconnect_abort_the_message() {
    let config = config();
    let mut session = Session::new();
    let mut sink = RecordingSink::default();
    let mut out = Vec::new();
    feed(
        &mut session,
        &config,
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npart",
        &mut out,
        &mut sink,
    );
    out.clear();
    timeout(&mut session, reply::TIMEOUT, &mut out, &mut sink);
    assert_eq!(out, reply::TIMEOUT);
    assert_eq!(sink.aborted, 1);
    let mut session = Session::new();
    feed(
        &mut session,
        &config,
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 10\r\npart",
        &mut out,
        &mut sink,
    );
    session.on_disconnect(&mut sink);
    assert_eq!(sink.aborted, 2);
    assert!(sink.messages.is_empty());
}

#[test]
fn never_panics_and_keeps_carry_bounded_on_noise() {
    use proptest::prelude::*;
    let config = config();
    let alphabet = prop_oneof![
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b".".to_vec()),
        Just(b"EHLO x\r\n".to_vec()),
        Just(b"MAIL FROM:<a@b>\r\n".to_vec()),
        Just(b"RCPT TO:<c@d>\r\n".to_vec()),
        Just(b"DATA\r\n".to_vec()),
        Just(b"BDAT 3\r\n".to_vec()),
        Just(b"BDAT 2 LAST\r\n".to_vec()),
        Just(b"RSET\r\n".to_vec()),
        Just(vec![b'x'; 50]),
        Just(vec![0xff]),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(2000));
    runner
        .run(
            &(
                prop::collection::vec(alphabet, 0..40),
                prop::collection::vec(0usize..400, 0..5),
            ),
            |(parts, cuts)| {
                let input: Vec<u8> = parts.concat();
                let whole = run_split(&config, &input, &[]);
                let split = run_split(&config, &input, &cuts);
                prop_assert_eq!(&whole.0, &split.0);
                prop_assert_eq!(&whole.1.messages, &split.1.messages);
                Ok(())
            },
        )
        .unwrap();
}

/// A gate that answers from a script: the first unused entry for the checkpoint asked about,
/// else proceed. Records every question.
#[derive(Default)]
struct ScriptedGate {
    script: Vec<(Checkpoint, Decision)>,
    asked: Vec<(Checkpoint, Vec<u8>, Vec<u8>, usize)>,
}

impl Gate for ScriptedGate {
    fn check(&mut self, checkpoint: Checkpoint, context: &GateContext<'_>) -> Decision {
        self.asked.push((
            checkpoint,
            context.sender.to_vec(),
            context.recipient.to_vec(),
            context.accepted.len(),
        ));
        match self.script.iter().position(|(at, _)| *at == checkpoint) {
            Some(i) => self.script.remove(i).1,
            None => Decision::Proceed,
        }
    }

    fn kept_text(&self, _n: usize) -> &[u8] {
        &[] // every reply in these tests is a `Fixed` one
    }
}

/// Runs `input` in one piece with `gate`; returns the output, each call's progress, and the
/// sink. After a pause, the caller's part is played: the rest is presented again.
fn run_gated(input: &[u8], gate: &mut ScriptedGate) -> (String, Vec<Progress>, RecordingSink) {
    let config = config();
    let mut session = Session::new();
    let mut sink = RecordingSink::default();
    let mut out = Vec::new();
    let mut tally = ReplyTally::default();
    let mut calls = vec![session.on_connect(
        &config,
        &mut Replies::new(&mut out, &mut tally),
        &mut sink,
        gate,
    )];
    let mut rest = input;
    while !session.is_closed() {
        let progress = session.on_input(
            &config,
            rest,
            &mut Replies::new(&mut out, &mut tally),
            &mut sink,
            gate,
        );
        calls.push(progress);
        rest = &rest[progress.consumed..];
        if progress.pause_at.is_none() {
            break;
        }
    }
    (String::from_utf8(out).unwrap(), calls, sink)
}

#[test]
fn the_gate_is_asked_in_protocol_terms_and_its_refusals_are_replies() {
    let mut gate = ScriptedGate {
        script: vec![
            (
                Checkpoint::Rcpt,
                Decision::Refuse(GateReply::Fixed(b"550 5.1.1 No such user\r\n")),
            ),
            (
                Checkpoint::EndOfData,
                Decision::Refuse(GateReply::Fixed(b"451 4.3.0 Later\r\n")),
            ),
        ],
        ..ScriptedGate::default()
    };
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\nRCPT TO:<z@y>\r\nDATA\r\nhi\r\n.\r\nVRFY x\r\n";
    let (out, _, sink) = run_gated(input, &mut gate);
    let ehlo_reply = std::str::from_utf8(&config().banner.ehlo)
        .unwrap()
        .to_string();
    assert_eq!(
        out,
        format!("220 mx.test ESMTP fastsmtpd\r\n{ehlo_reply}250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n554 5.5.1 Error: no valid recipients\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n451 4.3.0 Later\r\n252 2.5.0 Cannot VRFY user, but will accept message\r\n")
    );
    assert!(sink.messages.is_empty());
    assert_eq!(sink.aborted, 1, "the refused message is abandoned");
    let asked: Vec<_> = gate
        .asked
        .iter()
        .map(|(c, s, r, n)| {
            (
                *c,
                String::from_utf8_lossy(s).into_owned(),
                String::from_utf8_lossy(r).into_owned(),
                *n,
            )
        })
        .collect();
    let q = |c, s: &str, r: &str, n| (c, s.to_string(), r.to_string(), n);
    assert_eq!(
        asked,
        [
            q(Checkpoint::Connect, "", "", 0),
            q(Checkpoint::Ehlo, "", "", 0),
            q(Checkpoint::Mail, "a@b", "", 0),
            q(Checkpoint::Rcpt, "a@b", "x@y", 0),
            // The first DATA (no valid recipient) was the protocol's to refuse: not asked.
            q(Checkpoint::Rcpt, "a@b", "z@y", 0),
            q(Checkpoint::Data, "a@b", "", 1),
            q(Checkpoint::EndOfData, "a@b", "", 1),
        ],
        "VRFY is not a checkpoint, and a refused DATA is not asked about"
    );
}

#[test]
fn a_pause_stops_the_output_where_it_begins_and_the_input_behind_it() {
    let mut gate = ScriptedGate {
        script: vec![(Checkpoint::Mail, Decision::Pause(None))],
        ..ScriptedGate::default()
    };
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nQUIT\r\n";
    let (out, calls, _) = run_gated(input, &mut gate);
    let greeting_and_ehlo = "220 mx.test ESMTP fastsmtpd\r\n".len() + config().banner.ehlo.len();
    // The MAIL was carried out; its reply is where the held output begins, and the RCPT
    // behind it was not read.
    assert_eq!(calls[1].pause_at, Some(greeting_and_ehlo));
    assert_eq!(&input[calls[1].consumed..], b"RCPT TO:<c@d>\r\nQUIT\r\n");
    assert_eq!(calls[1].completed, 2);
    assert_eq!(calls[2].pause_at, None);
    assert!(out.ends_with("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n221 2.0.0 Bye\r\n"));
    // A pause with a reply: held, then the reply instead of the command.
    let mut gate = ScriptedGate {
        script: vec![(
            Checkpoint::Rcpt,
            Decision::Pause(Some(GateReply::Fixed(b"450 4.2.0 Busy\r\n"))),
        )],
        ..ScriptedGate::default()
    };
    let (out, calls, _) = run_gated(input, &mut gate);
    assert!(calls[1].pause_at.is_some());
    assert!(out.ends_with("250 2.1.0 Ok\r\n450 4.2.0 Busy\r\n221 2.0.0 Bye\r\n"));
}

#[test]
fn a_gate_can_close_or_hang_up_at_connect_and_at_end_of_data() {
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nNOOP\r\n";
    let mut gate = ScriptedGate {
        script: vec![(
            Checkpoint::Connect,
            Decision::Close(GateReply::Fixed(reply::FAULT_CLOSING)),
        )],
        ..ScriptedGate::default()
    };
    let (out, _, _) = run_gated(input, &mut gate);
    assert_eq!(
        out.as_bytes(),
        reply::FAULT_CLOSING,
        "no greeting, and nothing read"
    );
    let mut gate = ScriptedGate {
        script: vec![(Checkpoint::Connect, Decision::Hangup)],
        ..ScriptedGate::default()
    };
    assert_eq!(run_gated(input, &mut gate).0, "");
    let mut gate = ScriptedGate {
        script: vec![(Checkpoint::Connect, Decision::Pause(None))],
        ..ScriptedGate::default()
    };
    let (_, calls, _) = run_gated(input, &mut gate);
    assert_eq!(calls[0].pause_at, Some(0), "the greeting itself is held");
    let mut gate = ScriptedGate {
        script: vec![(Checkpoint::EndOfData, Decision::Hangup)],
        ..ScriptedGate::default()
    };
    let (out, _, sink) = run_gated(input, &mut gate);
    assert!(
        out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"),
        "{out}"
    );
    assert!(sink.messages.is_empty());
    assert_eq!(sink.aborted, 1);
}

/// Bug (reviewer B, F6): a fault's `421` instead of a command left the session open (RSET
/// got `421`, the NOOP behind it `250`). A 421 means the server is closing (RFC 5321 §3.8),
/// so the session now ends after it, wherever the gate gives it: for a command, after a
/// pause, for a BDAT chunk (its octets read first) and at the end of data.
#[test]
fn a_fault_421_closes_the_session_after_it() {
    const CLOSING: &[u8] = b"421 4.3.2 bye\r\n";
    let ehlo = std::str::from_utf8(&config().banner.ehlo)
        .unwrap()
        .to_string();
    let greeting = "220 mx.test ESMTP fastsmtpd\r\n";
    for (checkpoint, decision, input, before) in [
        (
            Checkpoint::Rset,
            Decision::Refuse(GateReply::Fixed(CLOSING)),
            &b"EHLO c\r\nRSET\r\nNOOP\r\n"[..],
            ehlo.clone(),
        ),
        (
            Checkpoint::Helo,
            Decision::Refuse(GateReply::Fixed(CLOSING)),
            b"HELO c\r\nNOOP\r\n",
            String::new(),
        ),
        (
            Checkpoint::Mail,
            Decision::Pause(Some(GateReply::Fixed(CLOSING))),
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nNOOP\r\n",
            ehlo.clone(),
        ),
        (
            Checkpoint::Bdat,
            Decision::Refuse(GateReply::Fixed(CLOSING)),
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 6 LAST\r\nNOOP\r\nNOOP\r\n",
            format!("{ehlo}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"),
        ),
        (
            Checkpoint::EndOfData,
            Decision::Refuse(GateReply::Fixed(CLOSING)),
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nNOOP\r\n",
            format!(
                "{ehlo}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
            ),
        ),
    ] {
        let mut gate = ScriptedGate {
            script: vec![(checkpoint, decision)],
            ..ScriptedGate::default()
        };
        let (out, _, sink) = run_gated(input, &mut gate);
        assert_eq!(
            out,
            format!("{greeting}{before}421 4.3.2 bye\r\n"),
            "{checkpoint:?}: nothing after the 421"
        );
        assert!(sink.messages.is_empty(), "{checkpoint:?}");
    }
    // Any other refusal leaves the session open, as before.
    let mut gate = ScriptedGate {
        script: vec![(
            Checkpoint::Rset,
            Decision::Refuse(GateReply::Fixed(b"450 4.3.2 not now\r\n")),
        )],
        ..ScriptedGate::default()
    };
    let (out, _, _) = run_gated(b"EHLO c\r\nRSET\r\nNOOP\r\n", &mut gate);
    assert!(
        out.ends_with("450 4.3.2 not now\r\n250 2.0.0 Ok\r\n"),
        "{out}"
    );
}

/// Bug (reviewer B, F7): a `554` greeting closed the connection at once. RFC 5321 §3.1: a
/// server that refuses the session with 554 "MUST still wait for the client to send a QUIT
/// ... and SHOULD respond to any intervening commands with "503 bad sequence of
/// commands"". Now it does: 503 to everything but QUIT (BDAT's octets read first), 221 to
/// QUIT, and the error cap still ends a client that never says QUIT.
#[test]
fn a_554_greeting_waits_for_quit_and_answers_503_meanwhile() {
    const REFUSED: &[u8] = b"554 5.7.1 No service\r\n";
    let refused = std::str::from_utf8(reply::SESSION_REFUSED).unwrap();
    let mut gate = ScriptedGate {
        script: vec![(
            Checkpoint::Connect,
            Decision::Refuse(GateReply::Fixed(REFUSED)),
        )],
        ..ScriptedGate::default()
    };
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nBDAT 6 LAST\r\nNOOP\r\nNOOP\r\nSTARTTLS\r\nAUTH PLAIN\r\nGET / HTTP/1.1\r\nQUIT\r\nNOOP\r\n";
    let (out, calls, sink) = run_gated(input, &mut gate);
    assert_eq!(
        out,
        format!(
            "554 5.7.1 No service\r\n{}221 2.0.0 Bye\r\n",
            refused.repeat(7)
        )
    );
    assert_eq!(calls.last().unwrap().consumed, input.len());
    assert!(sink.messages.is_empty());
    assert_eq!(gate.asked.len(), 1, "only the connection was asked about");
    // A client that never says QUIT meets the error cap.
    let mut gate = ScriptedGate {
        script: vec![(
            Checkpoint::Connect,
            Decision::Refuse(GateReply::Fixed(REFUSED)),
        )],
        ..ScriptedGate::default()
    };
    let max = config().max_errors as usize;
    let (out, _, _) = run_gated("NOOP\r\n".repeat(max + 5).as_bytes(), &mut gate);
    assert_eq!(
        out,
        format!(
            "554 5.7.1 No service\r\n{}{}",
            refused.repeat(max),
            std::str::from_utf8(reply::TOO_MANY_ERRORS).unwrap()
        )
    );
}

#[test]
fn every_reply_is_counted_once_as_it_is_produced() {
    let config = config();
    let mut session = Session::new();
    let mut out = Vec::new();
    let mut tally = ReplyTally::default();
    let mut sink = RecordingSink::default();
    session.on_connect(
        &config,
        &mut Replies::new(&mut out, &mut tally),
        &mut sink,
        &mut Open,
    );
    session.on_input(
        &config,
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 2\r\nhiBDAT 1 LAST\r\n!FOO\r\nQUIT\r\n",
        &mut Replies::new(&mut out, &mut tally),
        &mut sink,
        &mut Open,
    );
    let finals = String::from_utf8(out)
        .unwrap()
        .lines()
        .filter(|line| line.as_bytes().get(3) == Some(&b' '))
        .count() as u64;
    let counted: u64 = (200..600).map(|code| tally.get(code)).sum();
    assert_eq!(counted, finals);
    assert_eq!(
        [
            tally.get(220),
            tally.get(250),
            tally.get(500),
            tally.get(221)
        ],
        [1, 5, 1, 1]
    );
}

#[test]
fn every_smuggling_vector_is_content_of_one_message() {
    use crate::proto::data::reference::SMUGGLING_VECTORS;
    let keep = SessionConfig {
        bare_lf: BareLfPolicy::Keep,
        ..config()
    };
    for vector in SMUGGLING_VECTORS {
        // A second transaction hidden behind the vector: it must stay content.
        let mut input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhello".to_vec();
        input.extend_from_slice(vector.bytes);
        input.extend_from_slice(b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nevil\r\n.\r\n");
        for policy in [&keep, &config()] {
            let (out, sink, _) = run_split(policy, &input, &[]);
            assert_eq!(
                out.matches("354 ").count(),
                1,
                "{}: a second DATA was executed",
                vector.name
            );
            assert_eq!(
                out.matches("250 2.1.0").count(),
                1,
                "{}: a second MAIL was executed",
                vector.name
            );
            assert!(sink.messages.len() <= 1, "{}", vector.name);
        }
        let (_, sink, _) = run_split(&keep, &input, &[]);
        assert_eq!(sink.messages.len(), 1, "{}", vector.name);
        assert!(
            sink.messages[0].2.ends_with(b"DATA\r\nevil\r\n"),
            "{}: the hidden transaction is the message's content",
            vector.name
        );
    }
}

#[test]
fn a_spent_output_budget_stops_taking_commands_and_loses_none() {
    let config = config();
    let mut session = Session::new();
    let mut sink = RecordingSink::default();
    let mut tally = ReplyTally::default();
    let input = "NOOP\r\n".repeat(10) + "QUIT\r\n";
    let mut rest = input.as_bytes();
    let mut wire = Vec::new();
    let mut calls = 0;
    while !session.is_closed() {
        // The caller writes everything out between calls; the budget is 40 octets.
        let mut out = Vec::new();
        let progress = session.on_input(
            &config,
            rest,
            &mut Replies::with_limit(&mut out, &mut tally, 40),
            &mut sink,
            &mut Open,
        );
        assert!(
            out.len() < 40 + reply::OK.len(),
            "at most one reply past the budget"
        );
        assert_eq!(progress.wait == Some(Wait::Output), !session.is_closed());
        rest = &rest[progress.consumed..];
        wire.extend_from_slice(&out);
        calls += 1;
        assert!(calls < 10, "no progress");
    }
    assert_eq!(
        String::from_utf8(wire).unwrap(),
        "250 2.0.0 Ok\r\n".repeat(10) + "221 2.0.0 Bye\r\n"
    );
    assert_eq!(
        calls, 4,
        "three replies (42 octets) fill each call's budget"
    );
    assert!(rest.is_empty());
}

#[test]
fn junk_commands_are_limited_and_an_accepted_message_resets_the_count() {
    let config = SessionConfig {
        max_junk_commands: 3,
        ..config()
    };
    // EHLO, NOOP and RSET are answered; VRFY is the fourth and closes.
    let (out, _, session) = run_split(
        &config,
        b"EHLO c\r\nNOOP\r\nRSET\r\nVRFY x\r\nHELP\r\n",
        &[],
    );
    assert!(out.ends_with("250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n421 4.7.0 Error: too many commands without mail, closing connection\r\n"), "{out}");
    assert!(session.is_closed());
    // HELO/EHLO loops and MAIL + RSET loops count too (RSET in a transaction as well).
    let (out, _, session) = run_split(&config, b"EHLO a\r\nHELO b\r\nEHLO c\r\nEHLO d\r\n", &[]);
    assert!(
        out.ends_with("421 4.7.0 Error: too many commands without mail, closing connection\r\n"),
        "{out}"
    );
    assert!(session.is_closed());
    let (out, _, session) = run_split(&config, b"EHLO a\r\nMAIL FROM:<a@b>\r\nRSET\r\nMAIL FROM:<a@b>\r\nRSET\r\nMAIL FROM:<a@b>\r\nRSET\r\n", &[]);
    assert!(
        out.ends_with("421 4.7.0 Error: too many commands without mail, closing connection\r\n"),
        "{out}"
    );
    assert!(session.is_closed());
    // An accepted message resets the count.
    let input = b"EHLO c\r\nNOOP\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nNOOP\r\nNOOP\r\nNOOP\r\nQUIT\r\n";
    let (out, sink, _) = run_split(&config, input, &[]);
    assert!(out.ends_with("250 2.0.0 Ok: queued\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"), "{out}");
    assert_eq!(sink.messages.len(), 1);
    // Messages the session refuses count: the third refused one (after EHLO) closes.
    let refused = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nbare\nLF\r\n.\r\n";
    let input = format!("EHLO c\r\n{}", refused.repeat(3));
    let (out, _, session) = run_split(&config, input.as_bytes(), &[]);
    assert_eq!(out.matches("550 5.5.2").count(), 3, "{out}");
    assert!(out.ends_with("550 5.5.2 Error: bare CR or LF in message data (see --bare-lf keep)\r\n421 4.7.0 Error: too many commands without mail, closing connection\r\n"), "{out}");
    assert!(session.is_closed());
    // BDAT 0 without LAST is answered but counts as junk, even inside a transaction.
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 0\r\nBDAT 0\r\nBDAT 0\r\n";
    let (out, _, session) = run_split(&config, input, &[]);
    assert_eq!(out.matches("250 2.0.0 Ok: 0 octets received").count(), 2);
    assert!(
        out.ends_with("421 4.7.0 Error: too many commands without mail, closing connection\r\n")
    );
    assert!(session.is_closed());
}

#[test]
fn bdat_after_helo_is_read_and_refused() {
    let (out, sink, _) = run_split(
        &config(),
        b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 6 LAST\r\nNOOP\r\nDATA\r\nhi\r\n.\r\n",
        &[],
    );
    assert!(
        out.ends_with("250 2.1.5 Ok\r\n503 5.5.1 Error: BDAT requires EHLO\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n"),
        "the chunk's octets (NOOP) are not a command, and the transaction survives: {out}"
    );
    assert_eq!(sink.messages.len(), 1);
}

#[test]
fn a_transaction_whose_recipients_were_all_refused_is_an_outcome() {
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<\xc3\xa9@d>\r\nDATA\r\nRSET\r\nMAIL FROM:<e@f>\r\nRCPT TO:<\xc3\xa9@d>\r\nBDAT 1\r\nxBDAT 1 LAST\r\ny";
    let (out, sink, _) = run_split(&config(), input, &[]);
    assert_eq!(out.matches("554 5.5.1").count(), 3, "{out}");
    let replies: Vec<&[u8]> = sink.outcomes.iter().map(|o| &o.2[..]).collect();
    assert_eq!(
        replies,
        [reply::NO_VALID_RECIPIENTS, reply::NO_VALID_RECIPIENTS],
        "DATA, and BDAT's LAST chunk"
    );
    assert_eq!(sink.outcomes[0].0, b"a@b");
    assert_eq!(sink.outcomes[1].0, b"e@f");
    assert_eq!(sink.outcomes[0].1, 0);
}

/// The `250` after DATA's dot, after `BDAT ... LAST` and after a pending store names the
/// message with the sink's id (`queued as <id>`, as Postfix says it), and the outcome the sink
/// hears (for `--log-sessions`) is that same reply.
#[test]
fn the_250_names_the_message_with_the_sinks_queue_id() {
    let config = config();
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\none\r\n.\r\n\
MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 2\r\ntwBDAT 1 LAST\r\no\
MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 0 LAST\r\n";
    let mut session = Session::new();
    let mut sink = RecordingSink {
        names_messages: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    feed(&mut session, &config, input, &mut out, &mut sink);
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.ends_with(
            "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as Q1\r\n\
             250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 2 octets received\r\n\
             250 2.0.0 Ok: queued as Q2\r\n\
             250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as Q3\r\n"
        ),
        "{out}"
    );
    let heard: Vec<&[u8]> = sink.outcomes.iter().map(|o| &o.2[..]).collect();
    assert_eq!(
        heard,
        [
            &b"250 2.0.0 Ok: queued as Q1\r\n"[..],
            b"250 2.0.0 Ok: queued as Q2\r\n",
            b"250 2.0.0 Ok: queued as Q3\r\n"
        ]
    );

    // Pending: the id comes with the late `250`; a failed store names nothing.
    let mut session = Session::new();
    let mut sink = RecordingSink {
        names_messages: true,
        defer_store: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    let first = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3 LAST\r\none";
    feed(&mut session, &config, first, &mut out, &mut sink);
    out.clear();
    store_complete(&mut session, true, &mut out, &mut sink);
    assert_eq!(out, b"250 2.0.0 Ok: queued as Q1\r\n");
    assert_eq!(sink.outcomes.last().unwrap().2, out);
    let again = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\ntwo\r\n.\r\n";
    feed(&mut session, &config, again, &mut out, &mut sink);
    out.clear();
    store_complete(&mut session, false, &mut out, &mut sink);
    assert_eq!(out, reply::STORE_FAILED);
}

/// A gate that lets everything through until it is armed, then answers every question with
/// its decision and records where it was asked.
#[derive(Default)]
struct ArmedGate {
    /// The answer once armed (`None`: not armed, everything proceeds).
    armed: Option<Decision>,
    /// The checkpoints asked about while armed.
    asked: Vec<Checkpoint>,
}

impl Gate for ArmedGate {
    fn check(&mut self, checkpoint: Checkpoint, _context: &GateContext<'_>) -> Decision {
        match self.armed {
            Some(decision) => {
                self.asked.push(checkpoint);
                decision
            }
            None => Decision::Proceed,
        }
    }

    fn kept_text(&self, _n: usize) -> &[u8] {
        &[] // every reply in these tests is a `Fixed` one
    }
}

/// Runs `setup` with the gate letting everything through, then arms it with `decision` and
/// runs `probe`; returns the replies to the probe and the checkpoints asked during it.
fn probe_armed(
    config: &SessionConfig,
    setup: &[u8],
    probe: &[u8],
    decision: Decision,
) -> (String, Vec<Checkpoint>) {
    let mut session = Session::new();
    let mut sink = RecordingSink::default();
    let mut tally = ReplyTally::default();
    let mut gate = ArmedGate::default();
    let mut out = Vec::new();
    session.on_connect(
        config,
        &mut Replies::new(&mut out, &mut tally),
        &mut sink,
        &mut gate,
    );
    let progress = session.on_input(
        config,
        setup,
        &mut Replies::new(&mut out, &mut tally),
        &mut sink,
        &mut gate,
    );
    assert_eq!(progress.consumed, setup.len(), "the setup runs whole");
    gate.armed = Some(decision);
    let mut out = Vec::new();
    session.on_input(
        config,
        probe,
        &mut Replies::new(&mut out, &mut tally),
        &mut sink,
        &mut gate,
    );
    (String::from_utf8(out).unwrap(), gate.asked)
}

/// Issue 16: a fault rule was asked before the protocol's own checks, so `RCPT` without
/// `MAIL` got the injected reply instead of `503`, and a nested `MAIL` the injected `553`.
/// The protocol's checks (syntax, then sequence, then limits) come first; the gate is asked
/// only about a command (or a message) the protocol would accept, at every checkpoint, and
/// whatever it would answer (refuse, close, hang up, pause).
#[test]
fn the_gate_is_asked_only_about_what_the_protocol_would_accept() {
    let plain = config();
    let junk = SessionConfig {
        max_junk_commands: 1,
        ..config()
    };
    let tls_required = SessionConfig {
        security: SecurityPolicy {
            starttls: true,
            require_tls: true,
            ..SecurityPolicy::default()
        },
        ..config()
    };
    let auth_required = SessionConfig {
        security: SecurityPolicy {
            auth: true,
            auth_plaintext: true,
            auth_required: true,
            ..SecurityPolicy::default()
        },
        ..config()
    };
    let mail = "EHLO c\r\nMAIL FROM:<a@b>\r\n";
    let rcpt = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n";
    let data = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n";
    let too_big = format!("{}\r\n.\r\n", "x".repeat(1001));
    let over_limit = format!("BDAT 1001 LAST\r\n{}", "x".repeat(1001));
    let need_mail = "503 5.5.1 Error: need MAIL command\r\n";
    // (config, setup, probe, the protocol's reply to the probe)
    let cases: Vec<(&SessionConfig, &str, &str, &str)> = vec![
        // Syntax.
        (
            &plain,
            "",
            "EHLO\r\n",
            "501 5.5.4 Syntax: HELO/EHLO domain\r\n",
        ),
        (
            &plain,
            "EHLO c\r\n",
            "MAIL FROM:a@b\r\n",
            "501 5.1.7 Error: bad sender address syntax\r\n",
        ),
        (
            &plain,
            mail,
            "RCPT TO:<c@d\r\n",
            "501 5.1.3 Error: bad recipient address syntax\r\n",
        ),
        (
            &plain,
            "EHLO c\r\n",
            "RSET x\r\n",
            "501 5.5.4 Syntax: command takes no argument\r\n",
        ),
        // Sequence.
        (
            &plain,
            "",
            "MAIL FROM:<a@b>\r\n",
            "503 5.5.1 Error: send HELO/EHLO first\r\n",
        ),
        (
            &plain,
            mail,
            "MAIL FROM:<e@f>\r\n",
            "503 5.5.1 Error: nested MAIL command\r\n",
        ),
        (&plain, "EHLO c\r\n", "RCPT TO:<c@d>\r\n", need_mail),
        (&plain, "EHLO c\r\n", "DATA\r\n", need_mail),
        (
            &plain,
            mail,
            "DATA\r\n",
            "503 5.5.1 Error: need RCPT command\r\n",
        ),
        (&plain, "EHLO c\r\n", "BDAT 2 LAST\r\nhi", need_mail),
        (
            &plain,
            "HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
            "BDAT 2 LAST\r\nhi",
            "503 5.5.1 Error: BDAT requires EHLO\r\n",
        ),
        (
            &plain,
            "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 2\r\nhi",
            "DATA\r\n",
            "503 5.5.1 Error: DATA not allowed after BDAT\r\n",
        ),
        (
            &plain,
            "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 2\r\nhi",
            "RCPT TO:<e@f>\r\n",
            "503 5.5.1 Error: command not allowed during BDAT\r\n",
        ),
        (
            &plain,
            "HELO c\r\n",
            "MAIL FROM:<a@b> BODY=8BITMIME\r\n",
            "555 5.5.4 Error: parameters not supported after HELO\r\n",
        ),
        (
            &plain,
            "EHLO c\r\nMAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\n",
            "DATA\r\n",
            "503 5.5.1 Error: BODY=BINARYMIME requires BDAT\r\n",
        ),
        (
            &tls_required,
            "EHLO c\r\n",
            "MAIL FROM:<a@b>\r\n",
            "530 5.7.0 Must issue a STARTTLS command first\r\n",
        ),
        (
            &tls_required,
            "",
            "HELO c\r\n",
            "530 5.7.0 Must issue a STARTTLS command first\r\n",
        ),
        (
            &tls_required,
            "EHLO c\r\n",
            "RSET\r\n",
            "530 5.7.0 Must issue a STARTTLS command first\r\n",
        ),
        (
            &auth_required,
            "EHLO c\r\n",
            "MAIL FROM:<a@b>\r\n",
            "530 5.7.0 Error: authentication required\r\n",
        ),
        // Limits.
        (
            &plain,
            "EHLO c\r\n",
            "MAIL FROM:<a@b> SIZE=1001\r\n",
            "552 5.3.4 Error: message size exceeds fixed limit\r\n",
        ),
        (
            &plain,
            "EHLO c\r\n",
            "MAIL FROM:<\u{e9}@b>\r\n",
            "550 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n",
        ),
        (
            &plain,
            mail,
            "RCPT TO:<\u{e9}@d>\r\n",
            "553 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n",
        ),
        (
            &plain,
            "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<1@d>\r\nRCPT TO:<2@d>\r\nRCPT TO:<3@d>\r\n",
            "RCPT TO:<4@d>\r\n",
            "452 4.5.3 Error: too many recipients\r\n",
        ),
        (
            &plain,
            rcpt,
            &over_limit,
            "552 5.3.4 Error: message size exceeds fixed limit\r\n",
        ),
        (
            &plain,
            data,
            &too_big,
            "552 5.3.4 Error: message size exceeds fixed limit\r\n",
        ),
        (
            &plain,
            data,
            "bare\nLF\r\n.\r\n",
            std::str::from_utf8(reply::BARE_CR_LF_IN_DATA).unwrap(),
        ),
        (
            &junk,
            "EHLO c\r\n",
            "NOOP\r\n",
            "421 4.7.0 Error: too many commands without mail, closing connection\r\n",
        ),
        (
            &junk,
            "EHLO c\r\n",
            "RSET\r\n",
            "421 4.7.0 Error: too many commands without mail, closing connection\r\n",
        ),
        (
            &junk,
            "EHLO c\r\n",
            "EHLO c\r\n",
            "421 4.7.0 Error: too many commands without mail, closing connection\r\n",
        ),
        (
            &junk,
            "EHLO c\r\n",
            "HELO c\r\n",
            "421 4.7.0 Error: too many commands without mail, closing connection\r\n",
        ),
        (
            &junk,
            rcpt,
            "BDAT 0\r\n",
            "421 4.7.0 Error: too many commands without mail, closing connection\r\n",
        ),
    ];
    let injected: &'static [u8] = b"550 5.7.1 Injected\r\n";
    let decisions = [
        Decision::Refuse(GateReply::Fixed(injected)),
        Decision::Close(GateReply::Fixed(reply::FAULT_CLOSING)),
        Decision::Hangup,
        Decision::Pause(Some(GateReply::Fixed(injected))),
    ];
    for (config, setup, probe, expected) in &cases {
        for decision in decisions {
            let (out, asked) = probe_armed(config, setup.as_bytes(), probe.as_bytes(), decision);
            assert_eq!(
                (out.as_str(), asked.as_slice()),
                (*expected, &[][..]),
                "{setup:?} then {probe:?} with the gate answering {decision:?}"
            );
        }
    }
    // Where the protocol accepts, the armed gate is asked and its answer stands (at every
    // checkpoint a command reaches), so the cases above are not passing by accident.
    let accepted: Vec<(&str, &str, Checkpoint)> = vec![
        ("", "HELO c\r\n", Checkpoint::Helo),
        ("", "EHLO c\r\n", Checkpoint::Ehlo),
        ("EHLO c\r\n", "MAIL FROM:<a@b>\r\n", Checkpoint::Mail),
        (mail, "RCPT TO:<c@d>\r\n", Checkpoint::Rcpt),
        (rcpt, "DATA\r\n", Checkpoint::Data),
        (rcpt, "BDAT 2 LAST\r\nhi", Checkpoint::Bdat),
        (data, "hi\r\n.\r\n", Checkpoint::EndOfData),
        ("EHLO c\r\n", "RSET\r\n", Checkpoint::Rset),
        ("EHLO c\r\n", "NOOP\r\n", Checkpoint::Noop),
        ("EHLO c\r\n", "QUIT\r\n", Checkpoint::Quit),
    ];
    for (setup, probe, checkpoint) in accepted {
        let (out, asked) = probe_armed(
            &plain,
            setup.as_bytes(),
            probe.as_bytes(),
            Decision::Refuse(GateReply::Fixed(injected)),
        );
        assert_eq!(
            (out.as_bytes(), asked.as_slice()),
            (injected, &[checkpoint][..]),
            "{setup:?} then {probe:?}"
        );
    }
}

#[test]
fn every_end_of_data_content_is_reported_where_it_ends_in_its_call() {
    // Two messages pipelined in one call: each end is the offset just past its `.` line,
    // with the octets as kept; a refused (oversized) message's end is reported too.
    let first = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n..x\r\n.\r\n";
    let mut input = b"EHLO c\r\n".to_vec();
    input.extend_from_slice(first);
    let end_one = input.len();
    input.extend_from_slice(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    input.extend_from_slice(&[b'y'; 1200]);
    input.extend_from_slice(b"\r\n.\r\n");
    let end_two = input.len();
    let (out, sink, _) = run_split(&config(), &input, &[]);
    assert!(
        out.ends_with("552 5.3.4 Error: message size exceeds fixed limit\r\n"),
        "{out}"
    );
    assert_eq!(sink.content_ends, vec![(end_one, 4), (end_two, 1202)]);
    // Cut inside the second content: its end is reported in the call that took it, at its
    // offset in that call's input (content is consumed as it comes: that input starts at
    // the cut).
    let cut = end_one + 100;
    let (_, sink, _) = run_split(&config(), &input, &[cut]);
    assert_eq!(sink.content_ends, vec![(end_one, 4), (end_two - cut, 1202)]);
}

use crate::proto::dsn::{Notify, Ret};
use crate::proto::testkit::StoredDsn;

/// A relay's configuration: DSN offered (RFC 3461), listed in EHLO.
fn dsn_config() -> SessionConfig {
    SessionConfig {
        banner: Banner::with(
            "mx.test",
            1000,
            crate::proto::reply::Advertised {
                dsn: true,
                ..SecurityPolicy::default().advertised()
            },
        ),
        dsn: true,
        ..config()
    }
}

#[test]
fn dsn_is_listed_only_when_offered() {
    let ehlo = |config: &SessionConfig| String::from_utf8(config.banner.ehlo.to_vec()).unwrap();
    assert!(ehlo(&dsn_config()).contains("250-DSN\r\n"));
    assert!(!ehlo(&config()).contains("DSN"));
    assert!(!String::from_utf8(dsn_config().banner.ehlo_tls.to_vec())
        .unwrap()
        .is_empty());
}

/// RFC 3461's parameters reach the sink when DSN is offered, unchanged (as given), at every
/// split point of the input.
#[test]
fn dsn_parameters_reach_the_sink_when_offered() {
    let input = b"EHLO c\r\nMAIL FROM:<a@b> RET=FULL ENVID=QQ+2B1\r\nRCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;C+2Bx@d\r\nRCPT TO:<e@f>\r\nRCPT TO:<g@h> notify=never\r\nDATA\r\nhi\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nagain\r\n.\r\n";
    let config = dsn_config();
    let (out, sink, _) = run_split(&config, input, &[]);
    let want = format!(
        "220 mx.test ESMTP fastsmtpd\r\n{}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n",
        std::str::from_utf8(&config.banner.ehlo).unwrap()
    );
    assert_eq!(out, want);
    let first: StoredDsn = (
        Some(Ret::Full),
        Some(b"QQ+2B1".to_vec()),
        vec![
            (
                Notify::SUCCESS.union(Notify::FAILURE),
                Some(b"rfc822;C+2Bx@d".to_vec()),
            ),
            (Notify::ABSENT, None),
            (Notify::NEVER, None),
        ],
    );
    // The next transaction forgets them (RFC 5321 §4.1.1.5's reset of the envelope).
    let second: StoredDsn = (None, None, vec![(Notify::ABSENT, None)]);
    assert_eq!(sink.dsn, [first, second]);
    for cut in 0..input.len() {
        let (split_out, split_sink, _) = run_split(&config, input, &[cut]);
        assert_eq!(split_out, want, "cut at {cut}");
        assert_eq!(split_sink.dsn, sink.dsn, "cut at {cut}");
    }
    let every: Vec<usize> = (0..input.len()).collect();
    let (split_out, split_sink, _) = run_split(&config, input, &every);
    assert_eq!(split_out, want);
    assert_eq!(split_sink.dsn, sink.dsn);
}

/// Without DSN offered (a sink, or after HELO), the parameters are unknown (`555 5.5.4`);
/// bad syntax is `501 5.5.4` either way; a refused RCPT leaves the transaction as it was.
#[test]
fn dsn_parameters_are_refused_where_dsn_is_not_offered() {
    const UNKNOWN: &str = "555 5.5.4 Error: unsupported parameter\r\n";
    const BAD: &str = "501 5.5.4 Error: bad parameter syntax\r\n";
    let unknown = reply::command_error(CommandError::UnknownParameter);
    assert_eq!(std::str::from_utf8(unknown).unwrap(), UNKNOWN);
    let bad = reply::command_error(CommandError::BadParameter);
    assert_eq!(std::str::from_utf8(bad).unwrap(), BAD);
    let ok_mail = "250 2.1.0 Ok\r\n";
    let table: &[(&str, &str, &str)] = &[
        // (commands after EHLO, replies without DSN, replies with DSN)
        ("MAIL FROM:<a@b> RET=HDRS\r\n", UNKNOWN, ok_mail),
        ("MAIL FROM:<a@b> ENVID=x\r\n", UNKNOWN, ok_mail),
        ("MAIL FROM:<a@b> RET=BODY\r\n", BAD, BAD),
        ("MAIL FROM:<a@b> ENVID=a=b\r\n", BAD, BAD),
        ("MAIL FROM:<a@b> RET=FULL RET=FULL\r\n", BAD, BAD),
        (
            "MAIL FROM:<a@b>\r\nRCPT TO:<c@d> NOTIFY=NEVER\r\n",
            "250 2.1.0 Ok\r\n555 5.5.4 Error: unsupported parameter\r\n",
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n",
        ),
        (
            "MAIL FROM:<a@b>\r\nRCPT TO:<c@d> ORCPT=rfc822;c@d\r\n",
            "250 2.1.0 Ok\r\n555 5.5.4 Error: unsupported parameter\r\n",
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n",
        ),
        (
            "MAIL FROM:<a@b>\r\nRCPT TO:<c@d> NOTIFY=NEVER,DELAY\r\n",
            "250 2.1.0 Ok\r\n501 5.5.4 Error: bad parameter syntax\r\n",
            "250 2.1.0 Ok\r\n501 5.5.4 Error: bad parameter syntax\r\n",
        ),
        (
            // A condition twice: refused, as Postfix does (`proto::dsn::parse_notify`).
            "MAIL FROM:<a@b>\r\nRCPT TO:<c@d> NOTIFY=DELAY,DELAY\r\n",
            "250 2.1.0 Ok\r\n501 5.5.4 Error: bad parameter syntax\r\n",
            "250 2.1.0 Ok\r\n501 5.5.4 Error: bad parameter syntax\r\n",
        ),
        (
            "MAIL FROM:<a@b>\r\nRCPT TO:<c@d> NOTIFY=SUCCESS NOTIFY=FAILURE\r\n",
            "250 2.1.0 Ok\r\n501 5.5.4 Error: bad parameter syntax\r\n",
            "250 2.1.0 Ok\r\n501 5.5.4 Error: bad parameter syntax\r\n",
        ),
        (
            "MAIL FROM:<a@b>\r\nRCPT TO:<c@d> X-NOTIFY=1\r\n",
            "250 2.1.0 Ok\r\n555 5.5.4 Error: unsupported parameter\r\n",
            "250 2.1.0 Ok\r\n555 5.5.4 Error: unsupported parameter\r\n",
        ),
    ];
    let with_dsn = dsn_config();
    let ehlo_with_dsn = |rest: &str| {
        let (out, _, _) = run_split(&with_dsn, format!("EHLO c\r\n{rest}").as_bytes(), &[]);
        let head = format!(
            "220 mx.test ESMTP fastsmtpd\r\n{}",
            std::str::from_utf8(&with_dsn.banner.ehlo).unwrap()
        );
        out.strip_prefix(&head).unwrap().to_string()
    };
    for &(commands, without, with) in table {
        assert_eq!(ehlo(commands), without, "without DSN: {commands:?}");
        assert_eq!(ehlo_with_dsn(commands), with, "with DSN: {commands:?}");
    }
    // After HELO nothing is offered, DSN neither (RFC 1869 §4.5).
    let (out, _, _) = run_split(
        &with_dsn,
        b"HELO c\r\nMAIL FROM:<a@b> RET=FULL\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d> NOTIFY=NEVER\r\nRCPT TO:<c@d>\r\n",
        &[],
    );
    assert_eq!(
        out,
        "220 mx.test ESMTP fastsmtpd\r\n250 mx.test\r\n555 5.5.4 Error: parameters not supported after HELO\r\n250 2.1.0 Ok\r\n555 5.5.4 Error: unsupported parameter\r\n250 2.1.5 Ok\r\n"
    );
}
