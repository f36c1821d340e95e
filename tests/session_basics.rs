//! Full sessions over a real loopback socket, replies compared byte for byte.

mod util;
use util::*;

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
        "250 2.0.0 Ok: queued\r\n",
    );
    client.roundtrip("QUIT\r\n", "221 2.0.0 Bye\r\n");
    client.expect_closed();
    server.wait_for_stats(|s| s.messages == 1 && s.open_connections == 0);
    let stats = server.stop();
    assert_eq!(stats.messages, 1);
    assert_eq!(stats.bytes, b"Subject: hi\r\n\r\nbody\r\n".len() as u64);
}
