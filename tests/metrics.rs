//! `--metrics`: the Prometheus endpoint, scraped over HTTP after real traffic; its counters
//! must match the traffic sent.

mod util;

use fastsmtpd::config::Config;
use fastsmtpd::store::StoreSpec;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use util::{test_config, TestServer, MAIL_OK, RCPT_OK};

/// One HTTP exchange; returns the whole response.
fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The value of the sample `name` (with its labels) in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn counters_match_the_traffic_sent() {
    let dir = std::env::temp_dir().join(format!("fastsmtpd-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = TestServer::start(Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        stores: vec![StoreSpec::Maildir(dir.clone())],
        faults: vec!["rcpt to=*@bad.example reply=550 5.1.1 No such user".into()],
        ..test_config()
    });
    let metrics = server.handle.as_ref().unwrap().metrics_addr().unwrap();
    let mut client = server.client();
    client.ehlo();
    for _ in 0..3 {
        client.roundtrip(
            "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 5 LAST\r\nhello",
            format!("{MAIL_OK}{RCPT_OK}250 2.0.0 Ok: queued\r\n"),
        );
    }
    client.roundtrip(
        "MAIL FROM:<a@b.example>\r\nRCPT TO:<x@bad.example>\r\nRSET\r\n",
        format!("{MAIL_OK}550 5.1.1 No such user\r\n250 2.0.0 Ok\r\n"),
    );
    client.roundtrip("QUIT\r\n", "221 2.0.0 Bye\r\n");
    client.expect_closed();
    server.wait_for_stats(|s| s.open_connections == 0);

    let response = http(metrics, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, text) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let value = |name: &str| sample(text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    assert_eq!(value("fastsmtpd_messages_total"), 3.0);
    assert_eq!(value("fastsmtpd_message_bytes_total"), 15.0);
    assert_eq!(value("fastsmtpd_connections_total"), 1.0);
    assert_eq!(value("fastsmtpd_connections_open"), 0.0);
    // 220 greeting; 250: EHLO, 4 MAIL, 3 RCPT, 3 queued, RSET; 550 once; 221 once.
    assert_eq!(value("fastsmtpd_replies_total{code=\"220\"}"), 1.0);
    assert_eq!(value("fastsmtpd_replies_total{code=\"250\"}"), 12.0);
    assert_eq!(value("fastsmtpd_replies_total{code=\"550\"}"), 1.0);
    assert_eq!(value("fastsmtpd_replies_total{code=\"221\"}"), 1.0);
    assert_eq!(
        value("fastsmtpd_faults_fired_total{rule=\"rcpt to=*@bad.example reply=550 5.1.1 No such user\"}"),
        1.0
    );
    assert_eq!(value("fastsmtpd_store_seconds_count"), 3.0);
    assert_eq!(value("fastsmtpd_store_seconds_bucket{le=\"+Inf\"}"), 3.0);
    assert_eq!(value("fastsmtpd_store_failures_total"), 0.0);

    let refused = http(
        metrics,
        "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(refused.starts_with("HTTP/1.1 405 "), "{refused}");
    server.stop();
}

#[test]
fn log_sessions_prints_one_line_per_message_attempt() {
    let listen = util::free_local_addr();
    let dir = std::env::temp_dir().join(format!("fastsmtpd-txlog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command
        .args([
            "--listen",
            &listen,
            "--threads",
            "1",
            "--hostname",
            "mx.test",
        ])
        .args(["--log-sessions", "--exit-after-sessions", "1"])
        .args(["--fault", "eod nth=2 reply=451 4.3.0 Not now"])
        .arg("--store")
        .arg(format!("maildir:{}", dir.display()));
    let mut child = util::process::ChildGuard::spawn(command);
    let line = child.next_line(util::REPLY_WAIT);
    assert!(line.starts_with("fastsmtpd listening on "), "{line}");

    let addr: SocketAddr = listen.parse().unwrap();
    let mut client = util::Client::connect(addr);
    client.expect("220 mx.test ESMTP fastsmtpd\r\n");
    client.send("EHLO c.test\r\n");
    let mut ehlo = [0u8; 512];
    let _ = client.stream.read(&mut ehlo).unwrap();
    for (to, reply) in [
        ("x@y.example", "250 2.0.0 Ok: queued\r\n"),
        ("z@y.example", "451 4.3.0 Not now\r\n"),
    ] {
        client.roundtrip(
            format!("MAIL FROM:<a@b.example>\r\nRCPT TO:<{to}>\r\nBDAT 5 LAST\r\nhello"),
            format!("{MAIL_OK}{RCPT_OK}{reply}"),
        );
    }
    client.roundtrip("QUIT\r\n", "221 2.0.0 Bye\r\n");
    let exited = child.wait(util::process::CHILD_LIMIT);
    assert!(exited.status.success(), "{}", exited.dump());
    let rest = exited.stdout;
    let records: Vec<&str> = rest.lines().filter(|l| l.contains(" client=")).collect();
    assert_eq!(records.len(), 2, "{rest}");
    assert!(
        records[0].contains(" helo=c.test from=<a@b.example> to=<x@y.example> transfer=BDAT size=5 reply=\"250 2.0.0 Ok: queued\""),
        "{}",
        records[0]
    );
    assert!(
        records[1].contains(" to=<z@y.example> ")
            && records[1].ends_with("reply=\"451 4.3.0 Not now\""),
        "{}",
        records[1]
    );
    assert!(records[0].contains("client=127.0.0.1:"), "{}", records[0]);
}
