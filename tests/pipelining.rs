//! PIPELINING (RFC 2920) over loopback: whole sessions in one write, many messages in one
//! write, content right after `DATA`, commands right after the end of data, and pipelined
//! BDAT transactions. Every reply must come back, in order, byte for byte.

mod util;
use fastsmtpd::config::Limits;
use util::*;

#[test]
fn whole_session_in_one_write() {
    let server = TestServer::default_config();
    let mut client = Client::connect(server.addr);
    client.send(
        "EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n\
         RCPT TO:<c@example.org>\r\nDATA\r\nSubject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    );
    let want = format!(
        "{GREETING}{}{MAIL_OK}{RCPT_OK}{RCPT_OK}{GO_AHEAD}{QUEUED}{BYE}",
        ehlo_reply(fastsmtpd::config::DEFAULT_MAX_MESSAGE_SIZE)
    );
    client.expect(want);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!(stats.messages, 1);
    assert_eq!(
        stats.bytes,
        b"Subject: pipelined\r\n\r\nbody\r\n".len() as u64
    );
}

#[test]
fn helo_session_in_one_write() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.send("HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n");
    let want = format!("{HELO_OK}{MAIL_OK}{RCPT_OK}{GO_AHEAD}{QUEUED}{BYE}");
    client.expect(want);
    client.expect_closed();
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn hundred_messages_in_one_write() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    let mut input = String::new();
    let mut want = String::new();
    let mut bytes = 0;
    for i in 0..100 {
        let content = format!("Subject: {i}\r\n\r\n.dot-stuffed line {i}\r\n");
        bytes += unstuffed_len(content.as_bytes());
        input += &format!(
            "MAIL FROM:<s{i}@example.org>\r\nRCPT TO:<r{i}@example.org>\r\nDATA\r\n{content}.\r\n"
        );
        want += &format!("{MAIL_OK}{RCPT_OK}{GO_AHEAD}{QUEUED}");
    }
    input += "QUIT\r\n";
    want += BYE;
    client.send(input);
    client.expect(want);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (100, bytes));
}

#[test]
fn errors_in_a_pipeline_keep_their_place() {
    // A failed command changes nothing, and every command still gets its reply in order.
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.send(
        "MAIL FROM:<a@b>\r\nFOO\r\nRCPT TO:<bad>\r\nRCPT TO:<c@d>\r\nMAIL FROM:<x@y>\r\n\
         DATA\r\nhi\r\n.\r\nRCPT TO:<c@d>\r\nNOOP\r\n",
    );
    client.expect(format!(
        "{MAIL_OK}{UNRECOGNIZED}501 5.1.3 Error: bad recipient address syntax\r\n{RCPT_OK}\
         503 5.5.1 Error: nested MAIL command\r\n{GO_AHEAD}{QUEUED}{NEED_MAIL}{OK}"
    ));
}

#[test]
fn content_may_follow_data_before_354() {
    // RFC 2920 §3.1: content sent before the 354 went out is content, not commands. Commands
    // after the end of data in the same packet are answered in order.
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.send(
        "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nNOOP\r\nQUIT\r\n.\r\n\
         MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\nNOOP\r\n",
    );
    client.expect(format!(
        "{MAIL_OK}{RCPT_OK}{GO_AHEAD}{QUEUED}{MAIL_OK}{RCPT_OK}{GO_AHEAD}{QUEUED}{OK}"
    ));
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (2, 12));
}

#[test]
fn pipelined_bdat_transactions() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    let mut input = String::new();
    let mut want = String::new();
    let mut bytes = 0;
    for i in 0..20 {
        // Chunks hold things that look like commands and end-of-data markers: BDAT has no
        // framing inside the octets.
        let first = format!("Subject: {i}\r\n\r\n.\r\nQUIT\r\n");
        let second = format!("chunk {i}\n\r.\r\n");
        bytes += (first.len() + second.len()) as u64;
        input += &format!(
            "MAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\nBDAT {}\r\n{first}BDAT {} LAST\r\n{second}",
            first.len(),
            second.len()
        );
        want += &format!(
            "{MAIL_OK}{RCPT_OK}250 2.0.0 Ok: {} octets received\r\n{QUEUED}",
            first.len()
        );
    }
    // BDAT 0 LAST ends a message too.
    input += "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3\r\nabcBDAT 0 LAST\r\nQUIT\r\n";
    want += &format!("{MAIL_OK}{RCPT_OK}250 2.0.0 Ok: 3 octets received\r\n{QUEUED}{BYE}");
    bytes += 3;
    client.send(input);
    client.expect(want);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (21, bytes));
}

#[test]
fn data_and_bdat_mixed_in_one_write() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.send(
        "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 5 LAST\r\nhelloMAIL FROM:<a@b>\r\n\
         RCPT TO:<c@d>\r\nDATA\r\nworld\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1 LAST\r\n!",
    );
    client.expect(format!(
        "{MAIL_OK}{RCPT_OK}{QUEUED}{MAIL_OK}{RCPT_OK}{GO_AHEAD}{QUEUED}{MAIL_OK}{RCPT_OK}{QUEUED}"
    ));
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (3, 5 + 7 + 1));
}

#[test]
fn large_pipeline_keeps_every_reply_in_order() {
    // Far more commands than fit in the socket buffers, written by one thread while another
    // reads: the server must push back when replies pile up (not drop, not reorder). NOOPs
    // outside a transaction are junk commands; the limit on those is lifted here.
    let server = TestServer::start(fastsmtpd::config::Config {
        limits: Limits {
            max_junk_commands: u32::MAX,
            ..Limits::default()
        },
        ..test_config()
    });
    let mut client = server.client();
    client.ehlo();
    let count = 20_000;
    let input = "NOOP\r\n".repeat(count);
    let writer_stream = client.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut stream = writer_stream;
        stream.write_all(input.as_bytes()).unwrap();
        stream.write_all(b"QUIT\r\n").unwrap();
    });
    client.expect(OK.repeat(count) + BYE);
    client.expect_closed();
    writer.join().unwrap();
}
