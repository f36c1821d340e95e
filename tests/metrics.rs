//! `--metrics`: the Prometheus endpoint, scraped over HTTP after real traffic; its counters
//! must match the traffic sent, its exposition must pass Prometheus's own `promtool check
//! metrics`, and a scrape must be answered while slow and idle connections hold sockets open.

mod util;

use fastsmtpd::config::{Config, Faults, Limits, Stores};
use fastsmtpd::store::StoreSpec;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::{test_config, TestServer, MAIL_OK, RCPT_OK, REPLY_WAIT};

/// One HTTP exchange on a new connection; returns the whole response (the request must ask
/// for `Connection: close`, or the server keeps the connection open for the next request).
/// Bounded: fails after [`REPLY_WAIT`] instead of hanging.
#[track_caller]
fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, REPLY_WAIT).unwrap();
    stream.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    stream.set_write_timeout(Some(REPLY_WAIT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// `GET /metrics` on a new connection; returns the exposition after checking the status.
#[track_caller]
fn scrape(addr: SocketAddr) -> String {
    let response = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let (head, text) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    text.to_owned()
}

/// Starts a server with a store and a fault rule, sends it mail (three messages, one recipient
/// refused by the rule) and waits until the session has ended.
fn server_after_traffic(dir_name: &str, faults: &[&str]) -> TestServer {
    let dir = std::env::temp_dir().join(format!("{dir_name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = TestServer::start(Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        stores: Stores {
            // The capture store beside it: its families pass promtool too.
            specs: vec![StoreSpec::Maildir(dir), StoreSpec::Memory],
            ..Stores::default()
        },
        faults: Faults {
            rules: faults.iter().map(|f| (*f).to_owned()).collect(),
            ..Faults::default()
        },
        // The capture API too: its families (waiters, request durations) pass promtool.
        api: Some(fastsmtpd::config::ApiSettings {
            addr: "127.0.0.1:0".parse().unwrap(),
            token: None,
            cors: None,
        }),
        ..test_config()
    });
    let mut client = server.client();
    client.ehlo();
    for _ in 0..3 {
        client.roundtrip(
            "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 5 LAST\r\nhello",
            format!("{MAIL_OK}{RCPT_OK}250 2.0.0 Ok: queued as [queue id]\r\n"),
        );
    }
    client.roundtrip(
        "MAIL FROM:<a@b.example>\r\nRCPT TO:<x@bad.example>\r\nRSET\r\n",
        format!("{MAIL_OK}550 5.1.1 No such user\r\n250 2.0.0 Ok\r\n"),
    );
    client.roundtrip("QUIT\r\n", "221 2.0.0 Bye\r\n");
    client.expect_closed();
    server.wait_for_stats(|s| s.open_connections == 0);
    server
}

fn metrics_addr(server: &TestServer) -> SocketAddr {
    server.handle.as_ref().unwrap().metrics_addr().unwrap()
}

/// The value of the sample `name` (with its labels) in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn counters_match_the_traffic_sent() {
    let server = server_after_traffic(
        "fastsmtpd-metrics",
        &["rcpt to=*@bad.example reply=550 5.1.1 No such user"],
    );
    let metrics = metrics_addr(&server);

    let response = http(
        metrics,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
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
        value("fastsmtpd_faults_fired_total{set=\"startup\",rule=\"rcpt to=*@bad.example reply=550 5.1.1 No such user\"}"),
        1.0
    );
    assert_eq!(value("fastsmtpd_store_seconds_count"), 3.0);
    assert_eq!(value("fastsmtpd_store_seconds_bucket{le=\"+Inf\"}"), 3.0);
    assert_eq!(value("fastsmtpd_store_failures_total"), 0.0);

    let refused = http(
        metrics,
        "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(refused.starts_with("HTTP/1.1 405 "), "{refused}");
    server.stop();
}

/// Issue 16: `fastsmtpd_command_errors_total` (and the summary's `errors=`) left out the
/// 4xx/5xx replies of fault rules, and some of the protocol's own (a message refused at its
/// end, a recipient past the limit). Now every 4xx/5xx reply a session sends is counted, by
/// class and by origin, and the counts add up to the 4xx/5xx codes of
/// `fastsmtpd_replies_total`.
/// Covers the recipients whose address starts with `box`: a mailbox's route, as the fault
/// engine sees it.
#[derive(Debug)]
struct Prefix;

impl fastsmtpd::fault::Scope for Prefix {
    fn covers(&self, recipient: &[u8], _auth_user: Option<&[u8]>) -> bool {
        recipient.starts_with(b"box")
    }
}

#[test]
fn runtime_and_mailbox_fault_rules_are_counted_and_a_removed_plan_keeps_its_count() {
    let server = server_after_traffic(
        "fastsmtpd-metrics-plans",
        &["rcpt to=*@bad.example reply=550 5.1.1 No such user"],
    );
    let plans = server.handle.as_ref().unwrap().faults().unwrap();
    plans
        .set_runtime(&["rcpt to=*@runtime.example reply=550 5.1.1 Runtime".to_owned()])
        .unwrap();
    plans
        .set_scoped(
            "mb1",
            Arc::new(Prefix),
            &["rcpt reply=550 5.1.1 Boxed".to_owned()],
        )
        .unwrap();
    let mut client = server.client();
    client.ehlo();
    client.roundtrip(
        "MAIL FROM:<a@b.example>\r\nRCPT TO:<x@runtime.example>\r\nRCPT TO:<box1@d.example>\r\nRCPT TO:<box2@d.example>\r\nRSET\r\n",
        format!("{MAIL_OK}550 5.1.1 Runtime\r\n550 5.1.1 Boxed\r\n550 5.1.1 Boxed\r\n250 2.0.0 Ok\r\n"),
    );
    let text = scrape(metrics_addr(&server));
    let runtime = r#"fastsmtpd_faults_fired_total{set="runtime",rule="rcpt to=*@runtime.example reply=550 5.1.1 Runtime"}"#;
    assert_eq!(sample(&text, runtime), Some(1.0), "{text}");
    let mailbox_samples = |text: &str| {
        (
            sample(text, "fastsmtpd_mailbox_faults_fired_total"),
            sample(text, "fastsmtpd_mailbox_fault_plans"),
        )
    };
    assert_eq!(mailbox_samples(&text), (Some(2.0), Some(1.0)), "{text}");

    // A counter never goes back: the plan's two stay counted once it is gone.
    assert!(plans.clear_scoped("mb1"));
    let text = scrape(metrics_addr(&server));
    assert_eq!(mailbox_samples(&text), (Some(2.0), Some(0.0)), "{text}");
}

#[test]
fn every_error_reply_is_counted_by_class_and_origin() {
    let server = TestServer::start(Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        limits: Limits {
            max_recipients: 1,
            ..Limits::default()
        },
        faults: Faults {
            rules: vec![
                "rcpt to=*@bad.example reply=550 5.1.1 No such user".into(),
                "mail from=later@* reply=451 4.3.0 Later".into(),
            ],
            ..Faults::default()
        },
        ..test_config()
    });
    let mut client = server.client();
    client.ehlo();
    client.roundtrip("FOO\r\n", "500 5.5.2 Error: command not recognized\r\n");
    client.roundtrip("RCPT TO:<c@d.example>\r\n", util::NEED_MAIL);
    client.roundtrip("MAIL FROM:<later@b.example>\r\n", "451 4.3.0 Later\r\n");
    client.roundtrip("MAIL FROM:<a@b.example>\r\n", MAIL_OK);
    client.roundtrip("RCPT TO:<x@bad.example>\r\n", "550 5.1.1 No such user\r\n");
    client.roundtrip("RCPT TO:<c@d.example>\r\n", RCPT_OK);
    client.roundtrip(
        "RCPT TO:<e@d.example>\r\n",
        "452 4.5.3 Error: too many recipients\r\n",
    );
    client.roundtrip("DATA\r\n", util::GO_AHEAD);
    client.roundtrip("bare\nLF\r\n.\r\n", util::BARE_IN_DATA);
    client.roundtrip("QUIT\r\n", "221 2.0.0 Bye\r\n");
    client.expect_closed();
    server.wait_for_stats(|s| s.open_connections == 0);

    let text = scrape(metrics_addr(&server));
    let value = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    let errors = |class: &str, origin: &str| {
        value(&format!(
            "fastsmtpd_command_errors_total{{class=\"{class}\",origin=\"{origin}\"}}"
        ))
    };
    // 500, 503 and the bare-LF 550 from the protocol; 452 past the recipient limit; one
    // refusal of each class from the rules.
    assert_eq!(errors("5xx", "protocol"), 3.0, "{text}");
    assert_eq!(errors("4xx", "protocol"), 1.0, "{text}");
    assert_eq!(errors("5xx", "fault"), 1.0, "{text}");
    assert_eq!(errors("4xx", "fault"), 1.0, "{text}");
    let error_replies: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("fastsmtpd_replies_total{code=\"4")
                || l.starts_with("fastsmtpd_replies_total{code=\"5")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(error_replies, 6.0, "{text}");
    assert!(
        text.contains("# HELP fastsmtpd_command_errors_total Every 4xx/5xx reply"),
        "the help says what is counted: {text}"
    );
    let stats = server.stop();
    assert_eq!(stats.errors, 6);
    assert_eq!(stats.error_replies.fault, [1, 1]);
}

#[test]
fn log_sessions_prints_one_line_per_message_attempt() {
    let dir = std::env::temp_dir().join(format!("fastsmtpd-txlog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = format!("maildir:{}", dir.display());
    let (child, addr) = util::start_binary(
        1,
        &[
            "--log-sessions",
            "--exit-after-sessions",
            "1",
            "--fault",
            "eod nth=2 reply=451 4.3.0 Not now",
            "--store",
            &store,
        ],
    );
    let mut client = util::Client::connect(addr);
    client.expect("220 mx.test ESMTP fastsmtpd\r\n");
    client.send("EHLO c.test\r\n");
    let mut ehlo = [0u8; 512];
    let _ = client.stream.read(&mut ehlo).unwrap();
    let mut ids = Vec::new();
    for (to, reply) in [
        ("x@y.example", "250 2.0.0 Ok: queued as [queue id]\r\n"),
        ("z@y.example", "451 4.3.0 Not now\r\n"),
    ] {
        ids.extend(client.roundtrip(
            format!("MAIL FROM:<a@b.example>\r\nRCPT TO:<{to}>\r\nBDAT 5 LAST\r\nhello"),
            format!("{MAIL_OK}{RCPT_OK}{reply}"),
        ));
    }
    assert_eq!(ids.len(), 1);
    client.roundtrip("QUIT\r\n", "221 2.0.0 Bye\r\n");
    let exited = child.wait(util::process::CHILD_LIMIT);
    assert!(exited.status.success(), "{}", exited.dump());
    let rest = exited.stdout;
    let records: Vec<&str> = rest.lines().filter(|l| l.contains(" client=")).collect();
    assert_eq!(records.len(), 2, "{rest}");
    assert!(
        // The id the client was given is in the log: the two can be joined.
        records[0].contains(&format!(" helo=c.test from=<a@b.example> to=<x@y.example> transfer=BDAT size=5 reply=\"250 2.0.0 Ok: queued as {}\"", ids[0])),
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

/// Runs `program` with `input` on its standard input; kills it and fails the test if it runs
/// longer than `deadline`. Returns its exit status and its stdout and stderr together.
#[track_caller]
fn run_bounded(program: &str, args: &[&str], input: &[u8], deadline: Duration) -> (bool, String) {
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` not found: this test checks the exposition with Prometheus's own \
             linter; install it (Debian: `apt-get install prometheus`, as .ci/run does) or \
             point PROMTOOL at it"
        ),
        Err(e) => panic!("cannot run `{program}`: {e}"),
    };
    // Written from a thread so a child that does not read cannot block the test.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{program}` ran longer than {deadline:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    (status.success(), out.join().unwrap())
}

#[test]
fn exposition_passes_promtool_check_metrics() {
    // Every family present (replies, both fault rules, the store histogram), and a rule
    // whose text needs escaping in a label value.
    let server = server_after_traffic(
        "fastsmtpd-promtool",
        &[
            "rcpt to=*@bad.example reply=550 5.1.1 No such user",
            r#"mail from=*@never.example reply=550 5.7.1 "Quoted" back\slash"#,
        ],
    );
    let text = scrape(metrics_addr(&server));
    assert!(
        text.contains(
            r#"fastsmtpd_faults_fired_total{set="startup",rule="mail from=*@never.example reply=550 5.7.1 \"Quoted\" back\\slash"} 0"#
        ),
        "{text}"
    );
    for family in [
        "fastsmtpd_connections_open gauge",
        "fastsmtpd_replies_total counter",
        "fastsmtpd_store_seconds histogram",
        "fastsmtpd_capture_bytes gauge",
        "fastsmtpd_capture_evictions_total counter",
    ] {
        assert!(text.contains(&format!("# TYPE {family}\n")), "{text}");
    }
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let (ok, output) = run_bounded(
        &promtool,
        &["check", "metrics"],
        text.as_bytes(),
        Duration::from_secs(30),
    );
    // `promtool check metrics` exits non-zero on a malformed exposition and prints lint
    // problems (naming, units, missing help) even when it parses: both fail the test.
    assert!(ok && output.trim().is_empty(), "promtool: {output}\n{text}");
    server.stop();
}

#[test]
fn paths_methods_head_and_keep_alive() {
    let server = TestServer::start(Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..test_config()
    });
    let metrics = metrics_addr(&server);
    let not_found = http(
        metrics,
        "GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(not_found.starts_with("HTTP/1.1 404 "), "{not_found}");
    let refused = http(
        metrics,
        "DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(refused.starts_with("HTTP/1.1 405 "), "{refused}");
    assert!(refused.contains("\r\nAllow: GET, HEAD\r\n"), "{refused}");
    let head = http(
        metrics,
        "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    assert!(scrape(metrics).contains("fastsmtpd_connections_total 0\n"));

    // Two requests on one connection, the second after the first's answer.
    let mut stream = TcpStream::connect_timeout(&metrics, REPLY_WAIT).unwrap();
    stream.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    for close in ["", "Connection: close\r\n"] {
        stream
            .write_all(format!("GET / HTTP/1.1\r\nHost: x\r\n{close}\r\n").as_bytes())
            .unwrap();
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&response).contains("fastsmtpd_timeouts_total 0\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "closed early: {}",
                String::from_utf8_lossy(&response)
            );
            response.extend_from_slice(&buf[..n]);
        }
        assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
    assert_eq!(stream.read(&mut [0u8; 64]).unwrap(), 0, "closed as asked");
    server.stop();
}

/// Slow and idle clients must not delay a scrape: 4 slowloris connections (a header byte a
/// second), 6 idle ones, then a few hundred more idle ones (past the connection cap). The
/// bounds are generous on purpose: this checks that the scrape is answered, not how fast.
#[test]
fn scrape_is_answered_while_slow_and_idle_clients_hold_connections() {
    let server = TestServer::start(Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..test_config()
    });
    let metrics = metrics_addr(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect_timeout(&metrics, REPLY_WAIT).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            .unwrap();
        slow.push(stream);
    }
    let dripping = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for stream in &mut slow {
                    // The server may have closed it by now (header read timeout).
                    let _ = stream.write_all(b"a");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let idle: Vec<TcpStream> = (0..6 + 300)
        .map(|_| TcpStream::connect_timeout(&metrics, REPLY_WAIT).unwrap())
        .collect();

    let start = Instant::now();
    let text = scrape(metrics);
    let took = start.elapsed();
    assert!(text.contains("fastsmtpd_connections_total 0\n"), "{text}");
    assert!(
        took < Duration::from_secs(5),
        "a scrape took {took:?} with slow and idle clients connected"
    );

    // Stopping does not wait for the clients either.
    let start = Instant::now();
    server.stop();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    stop.store(true, Ordering::Relaxed);
    dripping.join().unwrap();
    drop(idle);
}
