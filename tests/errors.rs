//! Every error path over loopback, byte for byte: sequence errors (RFC 5321 §4.1.4), bad
//! paths and parameters (§4.1.2, §4.5.3.1; SIZE: RFC 1870 §6), non-ASCII addresses without
//! SMTPUTF8 (RFC 6531 §3.5) and invalid UTF-8, bare CR/LF/NUL in command lines (§2.3.8),
//! unknown and unimplemented commands (§4.2.4), non-SMTP peers, and the error cap. Where the
//! RFCs leave the choice (the reply to a non-SMTP peer, the error cap), the policy is the one
//! stated in docs/protocol.md.

mod util;
use fastsmtpd::config::Limits;
use util::*;

const NEED_HELO: &str = "503 5.5.1 Error: send HELO/EHLO first\r\n";
const NESTED_MAIL: &str = "503 5.5.1 Error: nested MAIL command\r\n";
const NO_VALID_RECIPIENTS: &str = "554 5.5.1 Error: no valid recipients\r\n";
const BAD_SENDER: &str = "501 5.1.7 Error: bad sender address syntax\r\n";
const BAD_RECIPIENT: &str = "501 5.1.3 Error: bad recipient address syntax\r\n";
const BAD_PARAMETER: &str = "501 5.5.4 Error: bad parameter syntax\r\n";
const UNKNOWN_PARAMETER: &str = "555 5.5.4 Error: unsupported parameter\r\n";
const PARAMS_AFTER_HELO: &str = "555 5.5.4 Error: parameters not supported after HELO\r\n";
const BAD_KEYWORD: &str = "501 5.5.4 Syntax: MAIL FROM:<address> / RCPT TO:<address>\r\n";
const SENDER_NEEDS_UTF8: &str = "550 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n";
const RECIPIENT_NEEDS_UTF8: &str = "553 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n";
const INVALID_UTF8: &str = "500 5.5.2 Error: invalid UTF-8 in command line\r\n";
const NOT_IMPLEMENTED: &str = "502 5.5.1 Error: command not implemented\r\n";
const NOT_SMTP: &str = "221 2.7.0 Error: this is an SMTP server, closing\r\n";
const TOO_MANY_RECIPIENTS: &str = "452 4.5.3 Error: too many recipients\r\n";

#[test]
fn sequence_errors_before_helo() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.roundtrip("MAIL FROM:<a@b>\r\n", NEED_HELO);
    client.roundtrip("RCPT TO:<c@d>\r\n", NEED_MAIL);
    client.roundtrip("DATA\r\n", NEED_MAIL);
    // A failed DATA does not switch to content: the next line is a command.
    client.roundtrip("NOOP\r\n", OK);
    client.roundtrip("EHLO\r\n", "501 5.5.4 Syntax: HELO/EHLO domain\r\n");
    client.roundtrip("HELO   \r\n", "501 5.5.4 Syntax: HELO/EHLO domain\r\n");
    client.roundtrip("MAIL FROM:<a@b>\r\n", NEED_HELO);
    client.ehlo();
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
}

#[test]
fn sequence_errors_in_a_transaction() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip("RCPT TO:<c@d>\r\n", NEED_MAIL);
    client.roundtrip("DATA\r\n", NEED_MAIL);
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
    client.roundtrip("DATA\r\n", NEED_RCPT);
    client.roundtrip("MAIL FROM:<a@b>\r\n", NESTED_MAIL);
    client.roundtrip(
        "DATA x\r\n",
        "501 5.5.4 Syntax: command takes no argument\r\n",
    );
    // None of the failures above changed the state.
    client.roundtrip("RCPT TO:<c@d>\r\n", RCPT_OK);
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.roundtrip(".\r\n", QUEUED);
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn all_recipients_refused_gives_554() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
    client.roundtrip("RCPT TO:<no domain>\r\n", BAD_RECIPIENT);
    client.roundtrip("RCPT TO:<\u{e9}@example.org>\r\n", RECIPIENT_NEEDS_UTF8);
    client.roundtrip("DATA\r\n", NO_VALID_RECIPIENTS);
    client.roundtrip("BDAT 3 LAST\r\nabc", NO_VALID_RECIPIENTS);
    // One good recipient after refused ones is enough.
    client.roundtrip("RCPT TO:<c@d>\r\n", RCPT_OK);
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.roundtrip("x\r\n.\r\n", QUEUED);
    // The count of refusals starts over with the next transaction.
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
    client.roundtrip("DATA\r\n", NEED_RCPT);
}

#[test]
fn bad_paths() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    for bad in [
        "MAIL FROM:a@b\r\n",
        "MAIL FROM:<a@b\r\n",
        "MAIL FROM:<a@>\r\n",
        "MAIL FROM:<@b>\r\n",
        "MAIL FROM:<a b@c>\r\n",
        "MAIL FROM:<Postmaster>\r\n",
        "MAIL FROM:<a@b>junk\r\n",
        "MAIL FROM:\r\n",
    ] {
        client.roundtrip(bad, BAD_SENDER);
    }
    client.roundtrip("MAIL <a@b>\r\n", BAD_KEYWORD);
    client.roundtrip("MAIL FROM <a@b>\r\n", BAD_KEYWORD);
    client.roundtrip("MAIL\r\n", BAD_KEYWORD);
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
    for bad in [
        "RCPT TO:<>\r\n",
        "RCPT TO:c@d\r\n",
        "RCPT TO:<c@>\r\n",
        "RCPT TO:<c@d>junk\r\n",
        "RCPT TO:<\"unterminated@d>\r\n",
    ] {
        client.roundtrip(bad, BAD_RECIPIENT);
    }
    client.roundtrip("RCPT <c@d>\r\n", BAD_KEYWORD);
    client.roundtrip("RCPT TO:<c@d>\r\n", RCPT_OK);
}

#[test]
fn parameters() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip("MAIL FROM:<a@b> FOO=bar\r\n", UNKNOWN_PARAMETER);
    client.roundtrip("MAIL FROM:<a@b> AUTH=<>\r\n", UNKNOWN_PARAMETER);
    client.roundtrip("MAIL FROM:<a@b> RET=HDRS\r\n", UNKNOWN_PARAMETER);
    for bad in [
        "SIZE",
        "SIZE=",
        "SIZE=abc",
        "SIZE=-1",
        "SIZE=123456789012345678901",
        "SIZE=1 SIZE=2",
        "BODY",
        "BODY=9BIT",
        "BODY=7BIT BODY=8BITMIME",
        "SMTPUTF8=yes",
        "=x",
    ] {
        client.roundtrip(format!("MAIL FROM:<a@b> {bad}\r\n"), BAD_PARAMETER);
    }
    // RCPT takes no parameters (no DSN offered).
    client.roundtrip(
        "MAIL FROM:<a@b> size=10 body=8bitmime smtputf8\r\n",
        MAIL_OK,
    );
    client.roundtrip("RCPT TO:<c@d> NOTIFY=NEVER\r\n", UNKNOWN_PARAMETER);
    client.roundtrip("RCPT TO:<c@d>\r\n", RCPT_OK);
    client.roundtrip("RSET\r\n", OK);
    client.roundtrip("MAIL FROM:<a@b> BODY=7BIT\r\n", MAIL_OK);
    client.roundtrip("RSET\r\n", OK);
    // BINARYMIME only with BDAT.
    client.roundtrip("MAIL FROM:<a@b> BODY=BINARYMIME\r\n", MAIL_OK);
    client.roundtrip("RCPT TO:<c@d>\r\n", RCPT_OK);
    client.roundtrip(
        "DATA\r\n",
        "503 5.5.1 Error: BODY=BINARYMIME requires BDAT\r\n",
    );
    client.roundtrip("BDAT 2 LAST\r\nhi", QUEUED);
}

#[test]
fn parameters_after_helo() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.helo();
    for params in ["SIZE=10", "BODY=8BITMIME", "SMTPUTF8", "SIZE=1 BODY=7BIT"] {
        client.roundtrip(format!("MAIL FROM:<a@b> {params}\r\n"), PARAMS_AFTER_HELO);
    }
    // An unknown parameter is refused by the parser first: still 555 5.5.4.
    client.roundtrip("MAIL FROM:<a@b> FOO=bar\r\n", UNKNOWN_PARAMETER);
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
}

#[test]
fn size_over_the_limit() {
    let limit = fastsmtpd::config::DEFAULT_MAX_MESSAGE_SIZE;
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip(format!("MAIL FROM:<a@b> SIZE={}\r\n", limit + 1), TOO_BIG);
    // Twenty digits is valid syntax (RFC 1870 §3) even past u64: over the limit, not 501.
    client.roundtrip("MAIL FROM:<a@b> SIZE=18446744073709551615\r\n", TOO_BIG);
    client.roundtrip("MAIL FROM:<a@b> SIZE=99999999999999999999\r\n", TOO_BIG);
    client.roundtrip("MAIL FROM:<a@b> SIZE=00000000000000000001\r\n", MAIL_OK);
    client.roundtrip("RSET\r\n", OK);
    client.roundtrip(format!("MAIL FROM:<a@b> SIZE={limit}\r\n"), MAIL_OK);
}

#[test]
fn non_ascii_without_smtputf8() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip("MAIL FROM:<j\u{f6}rg@example.org>\r\n", SENDER_NEEDS_UTF8);
    client.roundtrip("MAIL FROM:<a@b\u{fc}cher.example>\r\n", SENDER_NEEDS_UTF8);
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
    client.roundtrip(
        "RCPT TO:<\u{e9}l\u{e8}ve@example.org>\r\n",
        RECIPIENT_NEEDS_UTF8,
    );
    client.roundtrip("RCPT TO:<c@d>\r\n", RCPT_OK);
    client.roundtrip("RSET\r\n", OK);
    // With SMTPUTF8 both are fine.
    client.roundtrip("MAIL FROM:<j\u{f6}rg@example.org> SMTPUTF8\r\n", MAIL_OK);
    client.roundtrip("RCPT TO:<\u{e9}l\u{e8}ve@\u{e9}cole.example>\r\n", RCPT_OK);
}

#[test]
fn invalid_utf8_in_a_command() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip(b"NOOP \xff\r\n", INVALID_UTF8);
    // An address that is not UTF-8 is a bad address (RFC 6531 §3.3), answered as such
    // rather than as a bad command line.
    client.roundtrip(
        b"MAIL FROM:<\xc3@b> SMTPUTF8\r\n",
        "501 5.1.7 Error: bad sender address syntax\r\n",
    );
    client.roundtrip(b"MAIL FROM:<a@b> SMTPUTF8\r\n", MAIL_OK);
    client.roundtrip(
        b"RCPT TO:<\xc3@b>\r\n",
        "553 5.6.7 Error: recipient address is not valid UTF-8\r\n",
    );
    client.roundtrip("RSET\r\n", OK);
    client.roundtrip(b"\xed\xa0\x80\r\n", INVALID_UTF8);
    client.roundtrip("NOOP\r\n", OK);
}

#[test]
fn bare_cr_lf_or_nul_in_a_command_line() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    // `NOOP\nNOOP\r\n` is ONE line and gets ONE reply; the NOOP after it is answered normally.
    client.send("NOOP\nNOOP\r\nNOOP\r\n");
    client.expect(format!("{BAD_BYTES}{OK}"));
    for line in [
        &b"NOOP\rNOOP\r\n"[..],
        b"NOOP\0\r\n",
        b"\n\r\n",
        b"\r\r\n",
        b"\0\r\n",
        b"MAIL FROM:<a@b>\nRCPT TO:<c@d>\r\n",
        b"QUIT\n\r\n",
    ] {
        client.roundtrip(line, BAD_BYTES);
        client.roundtrip("NOOP\r\n", OK);
    }
    // None of them started a transaction.
    client.roundtrip("RCPT TO:<c@d>\r\n", NEED_MAIL);
    // A bare LF inside a transaction leaves it as it was.
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
    client.roundtrip("RCPT TO:<c@d>\nDATA\r\n", BAD_BYTES);
    client.roundtrip("RCPT TO:<c@d>\r\n", RCPT_OK);
}

#[test]
fn unknown_and_unimplemented_commands() {
    let server = TestServer::default_config();
    let mut client = server.client();
    for line in [
        "FOO\r\n",
        "MAILX FROM:<a@b>\r\n",
        "\r\n",
        " NOOP\r\n",
        "X\r\n",
    ] {
        client.roundtrip(line, UNRECOGNIZED);
    }
    for verb in [
        "EXPN list",
        "TURN",
        "ETRN example.org",
        "SEND FROM:<a@b>",
        "SOML FROM:<a@b>",
        "SAML FROM:<a@b>",
        "expn x",
        "STARTTLS",
        "AUTH PLAIN",
    ] {
        client.roundtrip(format!("{verb}\r\n"), NOT_IMPLEMENTED);
    }
    // Never a disconnect for these.
    client.roundtrip("NOOP\r\n", OK);
}

#[test]
fn not_smtp_closes_the_connection() {
    let server = TestServer::default_config();
    for request in [
        "GET / HTTP/1.1\r\nHost: mx.test\r\nUser-Agent: test\r\n\r\n",
        "POST /submit HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "CONNECT mx.test:25 HTTP/1.1\r\n\r\n",
        "Subject: hello\r\n",
        "From: a@example.org\r\n",
    ] {
        let mut client = server.client();
        client.ehlo();
        client.send(request);
        client.expect(NOT_SMTP);
        client.expect_closed();
    }
    // Also before HELO, and mid-transaction.
    let mut client = server.client();
    client.roundtrip("GET /\r\n", NOT_SMTP);
    client.expect_closed();
    let mut client = server.client();
    client.ehlo();
    client.begin_transaction();
    client.roundtrip("To: b@example.org\r\n", NOT_SMTP);
    client.expect_closed();
    assert_eq!(server.wait_idle().messages, 0);
}

#[test]
fn error_cap_one_at_a_time() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    // Successful commands in between do not reset the count.
    for _ in 0..19 {
        client.roundtrip("FOO\r\n", UNRECOGNIZED);
        client.roundtrip("NOOP\r\n", OK);
    }
    client.roundtrip("RCPT TO:<c@d>\r\n", format!("{NEED_MAIL}{TOO_MANY_ERRORS}"));
    client.expect_closed();
    // Every 4xx/5xx reply is counted: the 20 refused commands and the closing 421.
    let stats = server.stop();
    assert_eq!(stats.errors, 21);
    let by_class = stats.error_replies;
    assert_eq!((by_class.protocol, by_class.fault), ([1, 20], [0, 0]));
}

#[test]
fn error_cap_pipelined() {
    let server = TestServer::default_config();
    let mut client = server.client();
    // Different kinds of errors all count.
    let mut input = String::new();
    for _ in 0..5 {
        input += "FOO\r\nEXPN x\r\nMAIL FROM:<a@b>\r\nNOOP\nx\r\n";
    }
    input += "NOOP\r\nQUIT\r\n";
    client.send(input);
    let round = format!(
        "{UNRECOGNIZED}{NOT_IMPLEMENTED}503 5.5.1 Error: send HELO/EHLO first\r\n{BAD_BYTES}"
    );
    client.expect(round.repeat(5) + TOO_MANY_ERRORS);
    client.expect_closed();
}

#[test]
fn recipients_over_the_default_limit() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    let limit = fastsmtpd::config::DEFAULT_MAX_RECIPIENTS;
    let mut input = "MAIL FROM:<a@b>\r\n".to_string();
    for i in 0..limit + 2 {
        input += &format!("RCPT TO:<r{i}@example.org>\r\n");
    }
    input += "DATA\r\nhi\r\n.\r\n";
    client.send(input);
    client.expect(format!(
        "{MAIL_OK}{}{}{GO_AHEAD}{QUEUED}",
        RCPT_OK.repeat(limit),
        TOO_MANY_RECIPIENTS.repeat(2)
    ));
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn recipients_over_a_small_limit_then_data_works() {
    let server = TestServer::start(fastsmtpd::config::Config {
        limits: Limits {
            max_recipients: 3,
            ..Limits::default()
        },
        ..test_config()
    });
    let mut client = server.client();
    client.ehlo();
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
    for i in 0..3 {
        client.roundtrip(format!("RCPT TO:<r{i}@d>\r\n"), RCPT_OK);
    }
    // 452 is not counted as a client error: a long list is legitimate.
    for i in 3..30 {
        client.roundtrip(format!("RCPT TO:<r{i}@d>\r\n"), TOO_MANY_RECIPIENTS);
    }
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.roundtrip("x\r\n.\r\n", QUEUED);
    // The next transaction starts with an empty list.
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
    client.roundtrip("RCPT TO:<r@d>\r\n", RCPT_OK);
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let stats = server.stop();
    // The cap did not close the session; the 27 replies of 452 are counted as 4xx replies.
    assert_eq!(stats.messages, 1);
    assert_eq!(stats.errors, 27);
    let by_class = stats.error_replies;
    assert_eq!((by_class.protocol, by_class.fault), ([27, 0], [0, 0]));
}

#[test]
fn replies_never_echo_client_bytes() {
    let server = TestServer::default_config();
    let mut client = server.client();
    let mut input = String::new();
    for line in [
        "EHLO INJECTED",
        "INJECTED",
        "MAIL FROM:<INJECTED>",
        "MAIL FROM:<a@b> INJECTED=1",
        "MAIL FROM:<a@b> SIZE=INJECTED",
        "RCPT TO:<INJECTED>",
        "VRFY INJECTED",
        "EXPN INJECTED",
        "HELP INJECTED",
        "DATA INJECTED",
        "BDAT INJECTED",
    ] {
        input += line;
        input += "\r\n";
    }
    client.send(input);
    let transcript = client.read_to_close();
    let transcript = String::from_utf8(transcript).expect("replies are ASCII");
    assert!(!transcript.contains("INJECTED"), "{transcript}");
    assert!(transcript.ends_with("501 5.5.4 Syntax: BDAT size [LAST], closing connection\r\n"));
    // Every reply line is printable ASCII with a status code, and every 2xx/4xx/5xx reply
    // except the EHLO lines carries an enhanced code of the same class (RFC 2034 §4).
    for line in transcript.split_terminator("\r\n") {
        assert!(line.bytes().all(|b| (b' '..=b'~').contains(&b)), "{line:?}");
        let (code, text) = line.split_at(4);
        assert!(code[..3].bytes().all(|b| b.is_ascii_digit()), "{line:?}");
        if code.starts_with("250") && (code.ends_with('-') || !text.starts_with("2.")) {
            continue; // the EHLO reply lines
        }
        let class = &code[..1];
        assert!(text.starts_with(&format!("{class}.")), "{line:?}");
    }
}
