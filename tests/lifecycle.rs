//! Connection lifecycle over loopback: clients vanishing mid-DATA and mid-BDAT, several
//! workers sharing the port (SO_REUSEPORT), graceful shutdown, the connection cap, and IPv6.

mod util;
use fastsmtpd::config::{Config, Limits};
use std::io::ErrorKind;
use std::time::Duration;
use util::*;

#[test]
fn disconnect_mid_data_is_not_a_message() {
    let server = TestServer::default_config();
    // A client that stays all along and must keep being served.
    let mut steady = server.client();
    steady.ehlo();
    {
        let mut gone = server.client();
        gone.ehlo();
        gone.begin_transaction();
        gone.roundtrip("DATA\r\n", GO_AHEAD);
        gone.send("Subject: never finished\r\n\r\npart of a body\r\n.");
        steady.roundtrip("NOOP\r\n", OK);
    } // dropped: the socket closes mid-DATA
    server.wait_for_stats(|s| s.open_connections == 1);
    steady.deliver("complete\r\n");
    {
        let mut gone = server.client();
        gone.ehlo();
        gone.begin_transaction();
        gone.roundtrip("DATA\r\n", GO_AHEAD);
        // Everything but the final LF of the end of data.
        gone.send("almost\r\n.\r");
    }
    server.wait_for_stats(|s| s.open_connections == 1);
    steady.roundtrip("QUIT\r\n", BYE);
    steady.expect_closed();
    let stats = server.stats_when(|s| s.open_connections == 0 && s.messages >= 1);
    assert_eq!((stats.messages, stats.bytes), (1, 10));
    let stats = server.stop();
    assert_eq!((stats.messages, stats.open_connections), (1, 0));
}

#[test]
fn disconnect_mid_bdat_is_not_a_message() {
    let server = TestServer::default_config();
    let mut steady = server.client();
    steady.ehlo();
    {
        let mut gone = server.client();
        gone.ehlo();
        gone.begin_transaction();
        gone.roundtrip("BDAT 5\r\nhello", "250 2.0.0 Ok: 5 octets received\r\n");
        // The LAST chunk is one octet short.
        gone.send("BDAT 6 LAST\r\nworld");
        steady.roundtrip("NOOP\r\n", OK);
    }
    server.wait_for_stats(|s| s.open_connections == 1);
    steady.begin_transaction();
    steady.roundtrip("BDAT 2 LAST\r\nok", QUEUED);
    steady.roundtrip("QUIT\r\n", BYE);
    steady.expect_closed();
    let stats = server.stats_when(|s| s.open_connections == 0 && s.messages >= 1);
    assert_eq!((stats.messages, stats.bytes), (1, 2));
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn abrupt_disconnects_with_reset() {
    // SO_LINGER 0 makes the close an RST; the server must shrug it off.
    let server = TestServer::default_config();
    for _ in 0..10 {
        let mut gone = server.client();
        gone.ehlo();
        gone.begin_transaction();
        gone.roundtrip("DATA\r\n", GO_AHEAD);
        gone.send("partial");
        socket2::SockRef::from(&gone.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    let stats = server.wait_idle();
    assert_eq!((stats.messages, stats.connections), (0, 10));
    let mut client = server.client();
    client.ehlo();
    client.deliver("still here\r\n");
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn several_workers_share_the_port() {
    for threads in [2, 4] {
        let server = TestServer::start(Config {
            threads,
            ..test_config()
        });
        // All connections are open at once, then each delivers one message.
        let mut clients: Vec<Client> = (0..40).map(|_| server.client()).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            client.ehlo();
            client.deliver(&format!("message {i:02}\r\n"));
        }
        for client in &mut clients {
            client.roundtrip("QUIT\r\n", BYE);
            client.expect_closed();
        }
        server.stats_when(|s| s.open_connections == 0 && s.messages == 40);
        let per_worker = server.handle().worker_stats();
        assert_eq!(per_worker.len(), threads);
        let busy = per_worker.iter().filter(|w| w.connections > 0).count();
        assert!(
            busy > 1,
            "SO_REUSEPORT should spread 40 connections: {per_worker:?}"
        );
        let stats = server.stop();
        assert_eq!(
            (stats.messages, stats.bytes, stats.connections),
            (40, 40 * 12, 40)
        );
    }
}

#[test]
fn shutdown_closes_idle_sessions_and_lets_a_message_finish() {
    let server = TestServer::default_config();
    let mut fresh = server.client();
    let mut greeted = server.client();
    greeted.ehlo();
    let mut busy = server.client();
    busy.ehlo();
    busy.begin_transaction();
    busy.roundtrip("DATA\r\n", GO_AHEAD);
    busy.send("Subject: in flight\r\n\r\n");
    // Make sure the content so far has been processed before shutting down.
    greeted.roundtrip("NOOP\r\n", OK);

    server.handle().shutdown();
    // Sessions between transactions take only QUIT now: anything else gets the 421 (and
    // silence gets it too, a moment after their last reply).
    fresh.roundtrip("EHLO client.test\r\n", SHUTTING_DOWN);
    fresh.expect_closed();
    greeted.expect(SHUTTING_DOWN);
    greeted.expect_closed();
    // The message in flight finishes: 250; its QUIT right after gets 221, not 421.
    busy.send("the end\r\n.\r\n");
    busy.expect(QUEUED);
    busy.roundtrip("QUIT\r\n", BYE);
    busy.expect_closed();

    let addr = server.addr;
    let stats = server.stop();
    assert_eq!((stats.messages, stats.open_connections), (1, 0));
    // Nobody listens any more.
    let refused = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn shutdown_closes_a_transaction_without_data_after_its_reply() {
    // A session with an open transaction (MAIL given) may go on until the transaction ends.
    let server = TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip("MAIL FROM:<a@b>\r\n", MAIL_OK);
    server.handle().shutdown();
    // Give the worker its wake-up; nothing may be said to a client mid-transaction.
    client.expect_silence(Duration::from_millis(100));
    // The transaction ends: the session then takes only QUIT, and gets the 421 a moment
    // after its last reply if none comes.
    client.roundtrip("RSET\r\n", format!("{OK}{SHUTTING_DOWN}"));
    client.expect_closed();
}

#[test]
fn shutdown_grace_runs_out() {
    let server = TestServer::start(Config {
        shutdown_grace: Duration::from_millis(300),
        ..test_config()
    });
    let mut client = server.client();
    client.ehlo();
    client.begin_transaction();
    client.roundtrip("DATA\r\n", GO_AHEAD);
    client.send("never finished\r\n");
    server.handle().shutdown();
    // The grace period ends: 421 and close, the message is not counted.
    client.expect(SHUTTING_DOWN);
    client.expect_closed();
    assert_eq!(server.stop().messages, 0);
}

#[test]
fn connection_cap() {
    let server = TestServer::start(Config {
        limits: Limits {
            max_connections: 2,
            ..Limits::default()
        },
        ..test_config()
    });
    let mut first = server.client();
    let mut second = server.client();
    let mut third = Client::connect(server.addr);
    third.expect(TOO_MANY_CONNECTIONS);
    third.expect_closed();
    // The two admitted sessions work normally.
    first.ehlo();
    second.ehlo();
    // After one closes, a new one is admitted.
    first.roundtrip("QUIT\r\n", BYE);
    first.expect_closed();
    let mut fourth = server.client();
    fourth.ehlo();
    fourth.deliver("admitted\r\n");
    let mut fifth = Client::connect(server.addr);
    fifth.expect(TOO_MANY_CONNECTIONS);
    fifth.expect_closed();
    second.roundtrip("NOOP\r\n", OK);
    let stats = server.stop();
    assert_eq!(
        (stats.connections, stats.refused_connections, stats.messages),
        (3, 2, 1)
    );
}

#[test]
fn connection_cap_over_several_workers() {
    let server = TestServer::start(Config {
        threads: 4,
        limits: Limits {
            max_connections: 3,
            ..Limits::default()
        },
        ..test_config()
    });
    let admitted: Vec<Client> = (0..3).map(|_| server.client()).collect();
    for _ in 0..10 {
        let mut refused = Client::connect(server.addr);
        refused.expect(TOO_MANY_CONNECTIONS);
        refused.expect_closed();
    }
    drop(admitted);
    server.wait_for_stats(|s| s.open_connections == 0);
    let mut client = server.client();
    client.ehlo();
    let stats = server.stop();
    assert_eq!((stats.connections, stats.refused_connections), (4, 10));
}

#[test]
fn ipv6_loopback() {
    let config = Config {
        listen: vec!["[::1]:0".parse().unwrap()],
        ..test_config()
    };
    let handle = match fastsmtpd::server::start(&config) {
        Ok(handle) => handle,
        Err(e) if e.kind() == ErrorKind::AddrNotAvailable => {
            println!("note: skipping ipv6_loopback: cannot bind [::1]: {e}");
            return;
        }
        Err(e) => panic!("server start on [::1]: {e}"),
    };
    let addr = handle.local_addrs()[0];
    assert!(addr.is_ipv6());
    let server = TestServer {
        handle: Some(handle),
        addr,
    };
    let mut client = server.client();
    client.ehlo();
    client.deliver("over IPv6\r\n");
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn ipv4_and_ipv6_listeners_together() {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()],
        threads: 2,
        ..test_config()
    };
    let handle = match fastsmtpd::server::start(&config) {
        Ok(handle) => handle,
        Err(e) if e.kind() == ErrorKind::AddrNotAvailable => {
            println!("note: skipping ipv4_and_ipv6_listeners_together: {e}");
            return;
        }
        Err(e) => panic!("server start: {e}"),
    };
    let addrs = handle.local_addrs().to_vec();
    let server = TestServer {
        handle: Some(handle),
        addr: addrs[0],
    };
    for addr in addrs {
        let mut client = Client::connect(addr);
        client.expect(GREETING);
        client.ehlo();
        client.deliver("hi\r\n");
    }
    assert_eq!(server.stop().messages, 2);
}
