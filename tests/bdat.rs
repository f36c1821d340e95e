//! CHUNKING / BDAT (RFC 3030) over loopback: chunks are raw octets, octets are consumed before
//! any reply (also when refusing), sequence errors, size limits and the discard cap, and
//! malformed BDAT closing the connection.

mod util;
use fastsmtpd::config::Limits;
use util::*;

const NOT_DURING_BDAT: &str = "503 5.5.1 Error: command not allowed during BDAT\r\n";
const DATA_AFTER_BDAT: &str = "503 5.5.1 Error: DATA not allowed after BDAT\r\n";
const BAD_BDAT: &str = "501 5.5.4 Syntax: BDAT size [LAST], closing connection\r\n";
const TOO_MUCH_DISCARDED: &str =
    "421 4.7.0 Error: too much refused message data, closing connection\r\n";

fn chunk_ok(octets: usize) -> String {
    format!("250 2.0.0 Ok: {octets} octets received\r\n")
}

#[test]
fn chunks_one_at_a_time() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip("MAIL FROM:<a@b> BODY=BINARYMIME\r\n", MAIL_OK);
    client.roundtrip("RCPT TO:<c@d>\r\n", RCPT_OK);
    // Binary octets, bare LFs, NULs and a fake end of data are all just content.
    let chunk = b"\0\xff\n.\r\n\r\n.\r\nQUIT\r\n";
    client.send(format!("BDAT {}\r\n", chunk.len()));
    client.roundtrip(chunk, chunk_ok(chunk.len()));
    client.roundtrip("BDAT 0\r\n", chunk_ok(0));
    client.roundtrip("BDAT 4 last\r\nabcd", QUEUED);
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (1, chunk.len() as u64 + 4));
}

#[test]
fn chunk_octets_split_over_many_writes() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.begin_transaction();
    client.send_bytewise("BDAT 10 LAST\r\n0123456789NOOP\r\n");
    client.expect(format!("{QUEUED}{OK}"));
    assert_eq!(server.stop().bytes, 10);
}

#[test]
fn octets_are_consumed_before_refusing() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    // No transaction: the 12 octets look like two commands but are swallowed; ONE reply.
    client.send("BDAT 12 LAST\r\nNOOP\r\nNOOP\r\n");
    client.roundtrip("RSET\r\n", format!("{NEED_MAIL}{OK}"));
    // No recipient yet.
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
    client.roundtrip("BDAT 6\r\nQUIT\r\n", NEED_RCPT);
    // Before HELO too.
    let mut early = server.client();
    early.roundtrip("BDAT 6\r\nQUIT\r\nNOOP\r\n", format!("{NEED_MAIL}{OK}"));
    client.roundtrip("RCPT TO:<c@d>\r\n", RCPT_OK);
    client.roundtrip("BDAT 1 LAST\r\nx", QUEUED);
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn sequence_errors_mid_bdat() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.begin_transaction();
    client.roundtrip("BDAT 3\r\nabc", chunk_ok(3));
    client.roundtrip("DATA\r\n", DATA_AFTER_BDAT);
    client.roundtrip("MAIL FROM:<a@b>\r\n", NOT_DURING_BDAT);
    client.roundtrip("RCPT TO:<e@f>\r\n", NOT_DURING_BDAT);
    // The message goes on after the failed commands.
    client.roundtrip("BDAT 3 LAST\r\ndef", QUEUED);
    // After LAST there is no transaction.
    client.roundtrip("BDAT 1 LAST\r\ng", NEED_MAIL);
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (1, 6));
}

#[test]
fn rset_between_chunks_discards_the_message() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.begin_transaction();
    client.roundtrip("BDAT 5\r\nhello", chunk_ok(5));
    client.roundtrip("RSET\r\n", OK);
    client.roundtrip("BDAT 5 LAST\r\nworld", NEED_MAIL);
    // A new EHLO discards it as well.
    client.begin_transaction();
    client.roundtrip("BDAT 5\r\nhello", chunk_ok(5));
    client.ehlo();
    client.roundtrip("BDAT 5 LAST\r\nworld", NEED_MAIL);
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (0, 0));
}

#[test]
fn malformed_bdat_closes() {
    let server = TestServer::default_config();
    for bad in [
        "BDAT\r\n",
        "BDAT x\r\n",
        "BDAT 12x\r\n",
        "BDAT -1\r\n",
        "BDAT 5 LASTLY\r\n",
        "BDAT 5 LAST x\r\n",
        "BDAT 99999999999999999999\r\n",
        "BDAT 123456789012345678901\r\n",
    ] {
        let mut client = server.client();
        client.ehlo();
        client.begin_transaction();
        client.roundtrip(bad, BAD_BDAT);
        client.expect_closed();
    }
    assert_eq!(server.wait_idle().messages, 0);
}

#[test]
fn over_size_chunks_are_refused_until_last() {
    let max = 1000u64;
    let server = TestServer::start(fastsmtpd::config::Config {
        limits: Limits {
            max_message_size: max,
            ..Limits::default()
        },
        ..test_config()
    });
    let mut client = server.client();
    client.ehlo_sized(max);
    client.begin_transaction();
    let part = "p".repeat(600);
    client.roundtrip(format!("BDAT 600\r\n{part}"), chunk_ok(600));
    // 1200 > 1000: this chunk and the rest of the message are refused, octets consumed.
    client.roundtrip(format!("BDAT 600\r\n{part}"), TOO_BIG);
    client.roundtrip("BDAT 10\r\n0123456789", TOO_BIG);
    client.roundtrip("BDAT 10 LAST\r\n0123456789", TOO_BIG);
    // The session recovers; a message of exactly the limit fits.
    client.begin_transaction();
    client.roundtrip(format!("BDAT 1000 LAST\r\n{}", "q".repeat(1000)), QUEUED);
    // RSET also ends a refused message.
    client.begin_transaction();
    client.roundtrip(format!("BDAT 1001\r\n{}", "r".repeat(1001)), TOO_BIG);
    client.roundtrip("RSET\r\n", OK);
    client.deliver("fine\r\n");
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (2, 1006));
}

#[test]
fn discarding_far_past_the_limit_closes() {
    let max = 1000u64;
    let server = TestServer::start(fastsmtpd::config::Config {
        limits: Limits {
            max_message_size: max,
            ..Limits::default()
        },
        ..test_config()
    });
    // One chunk announced past 1.5 x the limit: closed without reading it.
    let mut client = server.client();
    client.ehlo_sized(max);
    client.begin_transaction();
    client.roundtrip("BDAT 2000\r\n", TOO_MUCH_DISCARDED);
    client.expect_closed();
    // Refused chunks piling up past 1.5 x the limit: the last one tips it over.
    let mut client = server.client();
    client.ehlo_sized(max);
    client.begin_transaction();
    client.roundtrip(format!("BDAT 1001\r\n{}", "x".repeat(1001)), TOO_BIG);
    client.roundtrip(format!("BDAT 400\r\n{}", "x".repeat(400)), TOO_BIG);
    client.roundtrip("BDAT 100\r\n", TOO_MUCH_DISCARDED);
    client.expect_closed();
    assert_eq!(server.wait_idle().messages, 0);
}
