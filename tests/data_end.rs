//! End of DATA over loopback: only `CR LF . CR LF` ends the data (smuggling variants are
//! content and get exactly one reply after the real end), the bare CR/LF policy, the empty
//! message, one byte per write, and an oversize message (silence during DATA, then 552).

mod util;
use fastsmtpd::config::Limits;
use fastsmtpd::proto::data::reference::{self, SMUGGLING_VECTORS};
use fastsmtpd::proto::session::BareLfPolicy;
use std::time::Duration;
use util::*;

/// Content that hides a second transaction after `fake_end`.
fn smuggling_content(fake_end: &[u8]) -> Vec<u8> {
    let mut content = b"Subject: hi\r\n\r\nhello".to_vec();
    content.extend_from_slice(fake_end);
    content.extend_from_slice(
        b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nsmuggled\r\n",
    );
    content
}

/// Sends one smuggling attempt on a fresh session and checks the single reply after the real
/// end of data; `NOOP` right after proves nothing else was queued in between.
#[track_caller]
fn smuggle(server: &TestServer, fake_end: &[u8], want: &str) {
    let mut client = server.client();
    client.ehlo();
    client.begin_transaction();
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.send(smuggling_content(fake_end));
    client.send(".\r\nNOOP\r\n");
    client.expect(format!("{want}{OK}"));
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
}

#[test]
fn smuggling_endings_are_content_with_default_policy() {
    let server = TestServer::default_config();
    let mut accepted = 0;
    for vector in SMUGGLING_VECTORS {
        let content = smuggling_content(vector.bytes);
        let want = if reference::scan(&content).saw_bare_cr_or_lf {
            BARE_IN_DATA
        } else {
            // The NUL variants hold no bare CR or LF: one ordinary message.
            accepted += 1;
            QUEUED
        };
        smuggle(&server, vector.bytes, want);
    }
    assert_eq!(accepted, 2);
    let stats = server.stop();
    assert_eq!(stats.messages, accepted);
}

#[test]
fn smuggling_endings_are_content_with_bare_lf_kept() {
    let server = TestServer::start(fastsmtpd::config::Config {
        bare_lf: BareLfPolicy::Keep,
        ..test_config()
    });
    let mut messages = 0;
    let mut bytes = 0;
    for vector in SMUGGLING_VECTORS {
        smuggle(&server, vector.bytes, QUEUED);
        messages += 1;
        bytes += unstuffed_len(&smuggling_content(vector.bytes));
        // Exactly one message per attempt: the hidden one was not counted.
        let stats = server.stats_when(|s| s.open_connections == 0 && s.messages >= messages);
        assert_eq!(stats.messages, messages, "after {}", vector.name);
    }
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (10, bytes));
}

#[test]
fn smuggling_in_one_pipelined_write() {
    // The classic attack: the fake end and the hidden transaction arrive in the same packet as
    // the real content. Still one message, one reply.
    let server = TestServer::start(fastsmtpd::config::Config {
        bare_lf: BareLfPolicy::Keep,
        ..test_config()
    });
    let mut client = server.client();
    client.ehlo();
    let mut input = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n".to_vec();
    input.extend_from_slice(&smuggling_content(b"\n.\n"));
    input.extend_from_slice(b".\r\nQUIT\r\n");
    client.send(input);
    client.expect(format!("{MAIL_OK}{RCPT_OK}{GO_AHEAD}{QUEUED}{BYE}"));
    client.expect_closed();
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn bare_cr_and_bare_lf_are_refused_by_default_and_the_session_goes_on() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    for content in ["bare\nLF\r\n", "bare\rCR\r\n", "ends with bare LF\n\r\n"] {
        client.begin_transaction();
        client.roundtrip("DATA\r\n", GO_AHEAD);
        client.send(content);
        client.roundtrip(".\r\n", BARE_IN_DATA);
    }
    // The transaction is over after the refusal.
    client.roundtrip("RCPT TO:<c@d>\r\n", NEED_MAIL);
    client.deliver("clean\r\n");
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (1, 7));
}

#[test]
fn empty_message() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.begin_transaction();
    // The CRLF ending the DATA line counts: `DATA\r\n.\r\n` is an empty message.
    client.send("DATA\r\n.\r\n");
    client.expect(format!("{GO_AHEAD}{QUEUED}"));
    // And once more after a 354 roundtrip.
    client.begin_transaction();
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.roundtrip(".\r\n", QUEUED);
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (2, 0));
}

#[test]
fn one_byte_per_write() {
    let server = TestServer::default_config();
    let mut client = server.client();
    let content = "Subject: slow\r\n\r\n..stuffed\r\n.\r.\r\nx\r\n";
    let session = format!(
        "EHLO client.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n{content}.\r\nNOOP\r\n"
    );
    client.send_bytewise(&session);
    client.expect(format!(
        "{}{MAIL_OK}{RCPT_OK}{GO_AHEAD}{BARE_IN_DATA}{OK}",
        ehlo_reply(fastsmtpd::config::DEFAULT_MAX_MESSAGE_SIZE)
    ));
    // A clean message, byte by byte, with the end of data split at every byte.
    let content = "Subject: slow\r\n\r\n..stuffed\r\n.x\r\n\r\nlast\r\n";
    client.send_bytewise(format!(
        "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n{content}.\r\nQUIT\r\n"
    ));
    client.expect(format!("{MAIL_OK}{RCPT_OK}{GO_AHEAD}{QUEUED}{BYE}"));
    client.expect_closed();
    let stats = server.stop();
    assert_eq!(stats.messages, 1);
    assert_eq!(stats.bytes, unstuffed_len(content.as_bytes()));
    assert_eq!(stats.bytes, content.len() as u64 - 2);
}

#[test]
fn long_text_lines_are_accepted() {
    // Lines over 1000 octets are only limited by the message size.
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    let content = "x".repeat(100_000) + "\r\n";
    client.deliver(&content);
    assert_eq!(server.stop().bytes, content.len() as u64);
}

#[test]
fn oversize_message_is_refused_only_after_the_end() {
    let max = 1000;
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
    client.roundtrip("DATA\r\n", GO_AHEAD);
    let line = "y".repeat(98) + "\r\n";
    client.send(line.repeat(50));
    // RFC 1870 §6.3 lets us refuse only after the end: nothing may come during DATA.
    client.expect_silence(Duration::from_millis(200));
    client.send(line.repeat(50));
    client.expect_silence(Duration::from_millis(100));
    client.roundtrip(".\r\n", TOO_BIG);
    // The session works on, and a message of exactly the limit fits.
    client.roundtrip("NOOP\r\n", OK);
    client.deliver(&line.repeat(10));
    // A declared size over the limit is refused at MAIL.
    client.roundtrip(format!("MAIL FROM:<a@b> SIZE={}\r\n", max + 1), TOO_BIG);
    client.roundtrip(format!("MAIL FROM:<a@b> SIZE={max}\r\n"), MAIL_OK);
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (1, max));
}
