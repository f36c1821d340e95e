//! Command-line length limits over loopback: a line over the limit gets `500 5.5.2 Line too
//! long` once its CRLF arrives and the session stays in sync, also for 1 MiB without any CRLF;
//! a line of exactly the limit is fine.

mod util;
use util::*;

#[test]
fn overlong_line_then_in_sync() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip(format!("NOOP {}\r\n", "x".repeat(5000)), LINE_TOO_LONG);
    client.roundtrip("NOOP\r\n", OK);
    // Pipelined: the commands around it are answered in order.
    client.send(format!(
        "NOOP\r\nMAIL FROM:<{}@b>\r\nNOOP\r\n",
        "a".repeat(5000)
    ));
    client.expect(format!("{OK}{LINE_TOO_LONG}{OK}"));
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
}

#[test]
fn overlong_line_leaves_the_transaction_as_it_was() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
    client.roundtrip(
        format!("RCPT TO:<{}@d>\r\n", "c".repeat(5000)),
        LINE_TOO_LONG,
    );
    client.roundtrip("RCPT TO:<c@d>\r\n", RCPT_OK);
    client.roundtrip("DATA\r\n", GO_AHEAD);
    // Inside DATA, long lines are content, not errors.
    client.send("z".repeat(5000) + "\r\n");
    client.roundtrip(".\r\n", QUEUED);
    assert_eq!(server.stop().bytes, 5002);
}

#[test]
fn line_of_exactly_the_limit() {
    let server = TestServer::default_config();
    let mut client = server.client();
    let limit = fastsmtpd::config::DEFAULT_MAX_LINE_LEN;
    // `limit` octets, CRLF included, is accepted; one more is not.
    let mut line = "NOOP ".to_string() + &"x".repeat(limit - 2 - 5);
    client.roundtrip(format!("{line}\r\n"), OK);
    line.push('x');
    client.roundtrip(format!("{line}\r\n"), LINE_TOO_LONG);
    // RFC 5321 §4.5.3.1.4: 512 octets plus 26 (SIZE) and 10 (SMTPUTF8) must fit.
    client.ehlo();
    // The longest path RFC 5321 §4.5.3.1 allows: local part 64, path 256 with brackets.
    let local = "l".repeat(64);
    let label = "d".repeat(63);
    let domain = format!("{label}.{label}.{}", "d".repeat(61));
    assert_eq!(local.len() + 1 + domain.len() + 2, 256);
    client.roundtrip(
        format!(
            "MAIL FROM:<{local}@{domain}> SIZE=00000000000000001000 BODY=8BITMIME SMTPUTF8\r\n"
        ),
        MAIL_OK,
    );
}

#[test]
fn one_mebibyte_without_crlf() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    // Nothing is said until the line ends, however long it gets.
    let junk = "j".repeat(1 << 20);
    client.send(&junk);
    client.roundtrip("NOOP\r\n", LINE_TOO_LONG);
    client.roundtrip("NOOP\r\n", OK);
    // Again, with the CR and the LF in separate writes, and bare LFs and CRs inside.
    client.send(&junk);
    client.send("\n\r \n\r\r");
    client.send(&junk);
    client.send("\r");
    client.send("\nNOOP\r\n");
    client.expect(format!("{LINE_TOO_LONG}{OK}"));
    // The session is still fully usable.
    client.deliver("after the junk\r\n");
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn overlong_lines_count_as_errors() {
    let server = TestServer::default_config();
    let mut client = server.client();
    let long = format!("{}\r\n", "q".repeat(3000));
    client.send(long.repeat(20));
    client.expect(LINE_TOO_LONG.repeat(20) + TOO_MANY_ERRORS);
    client.expect_closed();
}

#[test]
fn other_clients_are_served_while_one_sends_junk() {
    let server = TestServer::default_config();
    let mut junk_client = server.client();
    let mut client = server.client();
    let junk = "k".repeat(256 * 1024);
    for _ in 0..8 {
        junk_client.send(&junk);
        client.roundtrip("NOOP\r\n", OK);
    }
    junk_client.roundtrip("\r\n", LINE_TOO_LONG);
}
