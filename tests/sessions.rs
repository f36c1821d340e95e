//! Whole sessions one command at a time over loopback: EHLO and HELO, the simple commands
//! (RSET, NOOP, VRFY, HELP, QUIT), accepted path forms, and 100 messages on one connection.
//! The first test spells every reply out literally, independently of the constants in `util`.

mod util;
use util::*;

/// The simplest whole session, every reply spelled out literally.
#[test]
fn one_message_then_quit() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip("MAIL FROM:<a@example.org>\r\n", "250 2.1.0 Ok\r\n");
    client.roundtrip("RCPT TO:<b@example.org>\r\n", "250 2.1.5 Ok\r\n");
    client.roundtrip("DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
    client.roundtrip(
        "Subject: hi\r\n\r\nbody\r\n.\r\n",
        "250 2.0.0 Ok: queued as [queue id]\r\n",
    );
    client.roundtrip("QUIT\r\n", "221 2.0.0 Bye\r\n");
    client.expect_closed();
    server.wait_for_stats(|s| s.messages == 1 && s.open_connections == 0);
    let stats = server.stop();
    assert_eq!(stats.messages, 1);
    assert_eq!(stats.bytes, b"Subject: hi\r\n\r\nbody\r\n".len() as u64);
}

#[test]
fn ehlo_session_with_two_messages() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.deliver("Subject: one\r\n\r\nfirst\r\n");
    client.deliver("Subject: two\r\n\r\nsecond\r\n");
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!(stats.messages, 2);
    assert_eq!(
        stats.bytes,
        ("Subject: one\r\n\r\nfirst\r\n".len() + "Subject: two\r\n\r\nsecond\r\n".len()) as u64
    );
    assert_eq!(stats.errors, 0);
}

#[test]
fn helo_session() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.helo();
    client.roundtrip("MAIL FROM:<a@example.org>\r\n", MAIL_OK);
    client.roundtrip("RCPT TO:<b@example.org>\r\n", RCPT_OK);
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.roundtrip("hello\r\n.\r\n", QUEUED);
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn repeated_ehlo_and_helo_switch_modes() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.helo();
    client.ehlo();
    // After EHLO, parameters are fine again.
    client.roundtrip("MAIL FROM:<a@b> SIZE=10\r\n", MAIL_OK);
    // A new HELO resets the transaction (RFC 5321 §4.1.4) and drops the extensions.
    client.helo();
    client.roundtrip("RCPT TO:<c@d>\r\n", NEED_MAIL);
    client.roundtrip(
        "MAIL FROM:<a@b> SIZE=10\r\n",
        "555 5.5.4 Error: parameters not supported after HELO\r\n",
    );
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
}

#[test]
fn simple_commands() {
    let server = TestServer::default_config();
    let mut client = server.client();
    // They work before HELO too.
    client.roundtrip("NOOP\r\n", OK);
    client.roundtrip("NOOP anything at all\r\n", OK);
    client.roundtrip("RSET\r\n", OK);
    client.roundtrip(
        "VRFY postmaster\r\n",
        "252 2.5.0 Cannot VRFY user, but will accept message\r\n",
    );
    client.roundtrip("VRFY\r\n", "501 5.5.4 Syntax: VRFY address\r\n");
    client.roundtrip("HELP\r\n", "214 2.0.0 fastsmtpd: see RFC 5321\r\n");
    client.roundtrip("HELP MAIL\r\n", "214 2.0.0 fastsmtpd: see RFC 5321\r\n");
    client.roundtrip(
        "RSET now\r\n",
        "501 5.5.4 Syntax: command takes no argument\r\n",
    );
    client.roundtrip(
        "QUIT now\r\n",
        "501 5.5.4 Syntax: command takes no argument\r\n",
    );
    // Verbs are case-insensitive.
    client.roundtrip("noop\r\n", OK);
    client.roundtrip("qUiT\r\n", BYE);
    client.expect_closed();
}

#[test]
fn rset_ends_the_transaction() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.begin_transaction();
    client.roundtrip("RSET\r\n", OK);
    client.roundtrip("RCPT TO:<c@d>\r\n", NEED_MAIL);
    client.roundtrip("DATA\r\n", NEED_MAIL);
    // And a new EHLO does too.
    client.begin_transaction();
    client.ehlo();
    client.roundtrip("DATA\r\n", NEED_MAIL);
    client.deliver("x\r\n");
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn accepted_path_forms() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    // Lower case, as Python's smtplib sends it; null sender.
    client.roundtrip("mail from:<>\r\n", MAIL_OK);
    client.roundtrip("rcpt to:<Postmaster>\r\n", RCPT_OK);
    client.roundtrip("RSET\r\n", OK);
    // A space after the colon (Postfix accepts it); a source route (ignored).
    client.roundtrip("MAIL FROM: <a@example.org>\r\n", MAIL_OK);
    client.roundtrip(
        "RCPT TO:<@relay.example,@b.example:user@example.org>\r\n",
        RCPT_OK,
    );
    client.roundtrip("RCPT TO: <\"quoted local\"@example.org>\r\n", RCPT_OK);
    client.roundtrip("RCPT TO:<user@[192.0.2.1]>\r\n", RCPT_OK);
    client.roundtrip(
        "MAIL FROM:<x@y>\r\n",
        "503 5.5.1 Error: nested MAIL command\r\n",
    );
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.roundtrip(".\r\n", QUEUED);
}

#[test]
fn hundred_messages_on_one_connection() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    let mut bytes = 0;
    for i in 0..100 {
        let content = format!("Subject: {i}\r\n\r\nmessage number {i}\r\n");
        bytes += content.len() as u64;
        client.deliver(&content);
    }
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let stats = server.stop();
    assert_eq!((stats.messages, stats.bytes), (100, bytes));
}

#[test]
fn dot_stuffing_is_undone() {
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    let content = "..leading dot\r\n.\tx\r\n..\r\nmid.dle\r\n. \r\n";
    client.deliver(content);
    let stats = server.stats_when(|s| s.messages == 1);
    // Four lines start with a stuffed dot.
    assert_eq!(stats.bytes, content.len() as u64 - 4);
    assert_eq!(stats.bytes, unstuffed_len(content.as_bytes()));
}
