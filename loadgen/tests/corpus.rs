//! Real messages (`--message-dir`, `--mbox`), recipient lists (`--rcpt-file`), source
//! addresses (`--source`) and several targets, against fastsmtpd started in this process with
//! a `jsonl:` store: every message must arrive byte-exact, which the SHA-256 in each JSON
//! line shows. The expected bytes are computed here, independently of the generator's
//! encoder: CR LF line ends (a bare LF becomes CR LF, a last line without one gets one), and
//! for DATA the server's un-stuffing must give back exactly that.

mod common;

use common::{loadgen, scratch, Run};
use fastsmtpd::config::{Config, Stores};
use fastsmtpd::server::{self, ServerHandle};
use fastsmtpd::stats::Stats;
use fastsmtpd::store::record::sha256_hex;
use fastsmtpd::store::StoreSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A server on 127.0.0.1 keeping a JSON line per message in `jsonl`.
fn start_server(jsonl: &Path) -> ServerHandle {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        hostname: "mx.test".into(),
        shutdown_grace: Duration::from_secs(5),
        stores: Stores {
            specs: vec![StoreSpec::Jsonl(jsonl.to_path_buf())],
            ..Stores::default()
        },
        ..Config::default()
    };
    server::start(&config).expect("fastsmtpd starts")
}

/// The JSON lines of a stopped server's store, in the order they were written.
fn records(jsonl: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(jsonl)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// Runs `args` against a fresh server; returns the run, the server's counters and records.
fn against_server(args: &[&str]) -> (Run, Stats, Vec<serde_json::Value>) {
    let jsonl = scratch("store.jsonl");
    let server = start_server(&jsonl);
    let run = loadgen(server.local_addrs()[0], args);
    let stats = server.stop().expect("fastsmtpd stops");
    (run, stats, records(&jsonl))
}

/// The test corpus: every awkward case, each message with its own Subject.
fn messages() -> Vec<Vec<u8>> {
    let mut big = b"Subject: big\r\nMessage-ID: <big@test>\r\n\r\n".to_vec();
    for i in 0..12_000 {
        // Dot lines of every kind, across every read and staging boundary.
        match i % 5 {
            0 => big.extend_from_slice(b".\r\n"),
            1 => big.extend_from_slice(format!("..{i} two dots\n").as_bytes()),
            2 => big.extend_from_slice(format!(".{i} one dot\r\n").as_bytes()),
            3 => {
                big.extend_from_slice("caf\u{e9} na\u{ef}ve ".as_bytes());
                big.extend_from_slice(b"\xe9\n");
            }
            _ => big.extend_from_slice(b"plain text line\r\n"),
        }
    }
    vec![
        b"Subject: dots\r\nMessage-ID: <dots@test>\r\n\r\nbefore\r\n.\r\n..two\r\n.one\r\n...\r\nafter\r\n"
            .to_vec(),
        b"Subject: bare lf\nMessage-ID: <lf@test>\n\nline one\nline two\r\nline three\n".to_vec(),
        [
            &b"Subject: 8bit\r\nMessage-ID: <8bit@test>\r\n\r\nUTF-8: Gr\xc3\xbc\xc3\x9fe, \xe2\x82\xac\r\n"[..],
            b"Latin-1: caf\xe9 na\xefve \xff\xfe\r\n",
        ]
        .concat(),
        b"Subject: no final line end\r\nMessage-ID: <nofinal@test>\r\n\r\nlast line".to_vec(),
        b"Subject: dot at the end\nMessage-ID: <dotend@test>\n\ntext\n.".to_vec(),
        b"Subject: from lines\r\nMessage-ID: <from@test>\r\n\r\nFrom the start\r\n>From quoted\r\n>>From twice\r\n"
            .to_vec(),
        big,
    ]
}

/// How the message must arrive: every line ended by CR LF (a bare LF becomes CR LF, a last
/// line without an end gets one). Written apart from the generator's code, line by line.
fn normalised(message: &[u8]) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = message.split(|&b| b == b'\n').collect();
    if lines.last() == Some(&&b""[..]) {
        lines.pop();
    }
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// How many test messages have a bare LF.
fn with_bare_lf(messages: &[Vec<u8>]) -> usize {
    messages
        .iter()
        .filter(|m| {
            m.iter()
                .enumerate()
                .any(|(i, &b)| b == b'\n' && (i == 0 || m[i - 1] != b'\r'))
        })
        .count()
}

/// A directory of the test messages as `m00.eml`, `m01.eml`, ...
fn message_dir(messages: &[Vec<u8>]) -> PathBuf {
    let dir = scratch("corpus");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, m) in messages.iter().enumerate() {
        std::fs::write(dir.join(format!("m{i:02}.eml")), m).unwrap();
    }
    // Not messages: skipped.
    std::fs::write(dir.join("README.txt"), b"not a message").unwrap();
    dir
}

/// The test messages as an mboxrd file: a `From ` line before each, `>`*`From ` lines quoted
/// with one more `>`, a line end after a last line without one, an empty line after each.
fn mbox_file(messages: &[Vec<u8>]) -> PathBuf {
    let path = scratch("corpus.mbox");
    let mut mbox = Vec::new();
    for m in messages {
        mbox.extend_from_slice(b"From loadgen@example.org Mon Jan  1 00:00:00 2024\n");
        for line in m.split_inclusive(|&b| b == b'\n') {
            let gts = line.iter().take_while(|&&b| b == b'>').count();
            if line[gts..].starts_with(b"From ") {
                mbox.push(b'>');
            }
            mbox.extend_from_slice(line);
        }
        if !m.ends_with(b"\n") {
            mbox.push(b'\n');
        }
        mbox.push(b'\n');
    }
    std::fs::write(&path, mbox).unwrap();
    path
}

/// SHA-256 -> count of the expected messages, `times` each.
fn expected_hashes(messages: &[Vec<u8>], times: usize) -> BTreeMap<String, usize> {
    let mut hashes = BTreeMap::new();
    for m in messages {
        *hashes.entry(sha256_hex(&normalised(m))).or_default() += times;
    }
    hashes
}

/// SHA-256 -> count of the stored messages.
fn stored_hashes(records: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut hashes = BTreeMap::new();
    for r in records {
        *hashes
            .entry(r["sha256"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    hashes
}

/// Sends the corpus (`corpus_args`, whose files hold `as_stored`: the test messages as the
/// corpus files have them) twice over by DATA and by BDAT, and checks that every message
/// arrived byte-exact, as often as it was sent, with the sizes and changes counted right.
#[track_caller]
fn assert_corpus_arrives_exact(corpus_args: &[&str], as_stored: &[Vec<u8>]) {
    let messages = messages();
    let total: u64 = messages.iter().map(|m| normalised(m).len() as u64).sum();
    let n = (2 * messages.len()).to_string();
    for mode in [
        &["--pipelining", "on"][..],
        &["--pipelining", "off"],
        &["--bdat", "--inflight", "3"],
    ] {
        let mut args = vec!["-c", "3", "-n", &n];
        args.extend_from_slice(corpus_args);
        args.extend_from_slice(mode);
        let (run, stats, records) = against_server(&args);
        run.assert_clean();
        assert_eq!(
            run.total("accepted"),
            2 * messages.len() as u64,
            "{mode:?}: {}",
            run.stdout
        );
        assert_eq!(stats.messages, 2 * messages.len() as u64);
        assert_eq!(
            stored_hashes(&records),
            expected_hashes(&messages, 2),
            "{mode:?}: stored messages differ from the corpus normalised"
        );
        // The sizes counted are the messages' as stored, on both sides.
        assert_eq!(run.total("bytes"), 2 * total, "{mode:?}");
        assert_eq!(stats.bytes, 2 * total, "{mode:?}");
        // RFC 6152: 8-bit messages go with BODY=8BITMIME (fastsmtpd offers it), 7-bit ones
        // without a BODY parameter.
        for record in &records {
            let hash = record["sha256"].as_str().unwrap();
            let original = messages
                .iter()
                .find(|m| sha256_hex(&normalised(m)) == hash)
                .expect("a corpus message");
            let want = if original.is_ascii() {
                serde_json::Value::Null
            } else {
                "8BITMIME".into()
            };
            assert_eq!(record["mail_params"]["body"], want, "{mode:?}");
        }
        let transfer = if mode[0] == "--bdat" { "BDAT" } else { "DATA" };
        assert!(
            records.iter().all(|r| r["transfer"] == transfer),
            "{:#?}",
            records[0]
        );
        // The output says what the corpus is and what was changed in it.
        let corpus = &run.json()["config"]["corpus"];
        assert_eq!(corpus["messages"], messages.len());
        assert_eq!(corpus["bytes"], total);
        assert_eq!(
            corpus["bare_lf_converted"],
            with_bare_lf(as_stored),
            "{corpus}"
        );
        let unterminated = as_stored.iter().filter(|m| !m.ends_with(b"\n")).count();
        assert_eq!(corpus["final_line_end_added"], unterminated, "{corpus}");
        // Typed: the corpus's smallest and largest message, in bytes.
        let size = &run.json()["config"]["size"]["corpus"];
        assert_eq!(size["min"], corpus["size_min"], "{size}");
        assert_eq!(size["max"], corpus["size_max"], "{size}");
        assert!(size["min"].as_u64().unwrap() <= size["max"].as_u64().unwrap());
        assert!(
            run.stdout
                .contains(&format!("{} messages, {total} bytes", messages.len())),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains(&format!(
                "bare LF converted to CR LF in {}",
                with_bare_lf(as_stored)
            )),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn a_message_dir_arrives_byte_exact_by_data_and_by_bdat() {
    let dir = message_dir(&messages());
    assert_corpus_arrives_exact(&["--message-dir", dir.to_str().unwrap()], &messages());
}

#[test]
fn an_mbox_arrives_byte_exact_by_data_and_by_bdat() {
    let mbox = mbox_file(&messages());
    // The mbox writer ends every last line with LF.
    let as_stored: Vec<Vec<u8>> = messages()
        .into_iter()
        .map(|mut m| {
            if !m.ends_with(b"\n") {
                m.push(b'\n');
            }
            m
        })
        .collect();
    assert_corpus_arrives_exact(&["--mbox", mbox.to_str().unwrap()], &as_stored);
}

#[test]
fn messages_go_in_name_order_or_seeded_random_order() {
    let messages = messages();
    let dir = message_dir(&messages);
    let subjects = |records: &[serde_json::Value]| -> Vec<String> {
        records
            .iter()
            .map(|r| r["subject"].as_str().unwrap().to_string())
            .collect()
    };
    // One connection without pipelining: the store's order is the send order.
    let base = [
        "-c",
        "1",
        "--pipelining",
        "off",
        "--message-dir",
        dir.to_str().unwrap(),
    ];
    let (run, _, records) = against_server(&[&base[..], &["-n", "9"]].concat());
    run.assert_clean();
    let in_order = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                let text = String::from_utf8_lossy(&messages[i % messages.len()]).into_owned();
                text.lines()
                    .next()
                    .unwrap()
                    .trim_start_matches("Subject: ")
                    .to_string()
            })
            .collect()
    };
    assert_eq!(subjects(&records), in_order(9));
    let random = [&base[..], &["-n", "12", "--order", "random", "--seed", "7"]].concat();
    let (first, _, a) = against_server(&random);
    let (second, _, b) = against_server(&random);
    first.assert_clean();
    second.assert_clean();
    assert_eq!(subjects(&a), subjects(&b), "the same seed, the same choice");
    assert_ne!(subjects(&a), in_order(12));
    assert_eq!(first.json()["config"]["corpus"]["order"], "random");
}

#[test]
fn recipients_come_from_the_rcpt_file() {
    let dir = message_dir(&messages());
    let list = scratch("rcpts.txt");
    std::fs::write(
        &list,
        "# test recipients\nalice@a.test\n\nbob@b.test\r\n  carol@c.test  \n",
    )
    .unwrap();
    let (run, _, records) = against_server(&[
        "-c",
        "1",
        "-n",
        "3",
        "--rcpts",
        "2",
        "--pipelining",
        "off",
        "--message-dir",
        dir.to_str().unwrap(),
        "--rcpt-file",
        list.to_str().unwrap(),
    ]);
    run.assert_clean();
    let rcpts: Vec<Vec<&str>> = records
        .iter()
        .map(|r| {
            r["rcpt_to"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        rcpts,
        [
            ["alice@a.test", "bob@b.test"],
            ["carol@c.test", "alice@a.test"],
            ["bob@b.test", "carol@c.test"]
        ]
    );
    assert_eq!(run.json()["config"]["rcpt_file"]["addresses"], 3);
    // More recipients per message than addresses, or --to beside it, is a usage error.
    let (code, _, stderr) = common::run_binary(&[
        "--target".into(),
        "127.0.0.1:9".into(),
        "--rcpts".into(),
        "4".into(),
        "--rcpt-file".into(),
        list.display().to_string(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("more than the 3 address(es)"), "{stderr}");
    let (code, _, stderr) = common::run_binary(&[
        "--target".into(),
        "127.0.0.1:9".into(),
        "--to".into(),
        "x@y.test".into(),
        "--rcpt-file".into(),
        list.display().to_string(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn connections_come_from_every_source_address() {
    let (run, stats, records) = against_server(&[
        "-c",
        "4",
        "-n",
        "200",
        "--source",
        "127.0.0.2",
        "--source",
        "127.0.0.3",
    ]);
    run.assert_clean();
    assert_eq!(stats.messages, 200);
    let mut clients: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        let client: std::net::SocketAddr = r["client"].as_str().unwrap().parse().unwrap();
        *clients.entry(client.ip().to_string()).or_default() += 1;
    }
    // Four connections, the two sources in turn: two each, the same share of messages each
    // is not promised (closed loop), but both carry some.
    assert_eq!(
        clients.keys().collect::<Vec<_>>(),
        ["127.0.0.2", "127.0.0.3"],
        "{clients:?}"
    );
    assert!(
        run.stdout.contains("from 127.0.0.2 127.0.0.3"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.json()["config"]["sources"],
        serde_json::json!(["127.0.0.2", "127.0.0.3"])
    );
    // An address not on this host fails at start, saying so (nothing is sent: the bind
    // fails). 192.0.2.1 is TEST-NET-1, never a local address.
    let (code, _, stderr) = common::run_binary(&[
        "--target".into(),
        "127.0.0.1:9".into(),
        "--source".into(),
        "192.0.2.1".into(),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--source 192.0.2.1: cannot bind") && stderr.contains("on this host"),
        "{stderr}"
    );
}

#[test]
fn connections_are_spread_over_several_targets_with_figures_per_target() {
    let jsonl = [scratch("a.jsonl"), scratch("b.jsonl")];
    let servers = [start_server(&jsonl[0]), start_server(&jsonl[1])];
    let second = servers[1].local_addrs()[0].to_string();
    let run = loadgen(
        servers[0].local_addrs()[0],
        &[
            "-c",
            "4",
            "--threads",
            "2",
            "-n",
            "400",
            "--target",
            &second,
        ],
    );
    let [a, b] = servers.map(|s| s.stop().expect("fastsmtpd stops"));
    run.assert_clean();
    assert_eq!(run.total("accepted"), 400);
    assert!(a.messages > 0 && b.messages > 0, "{a:?} {b:?}");
    assert_eq!(a.messages + b.messages, 400);
    assert_eq!((a.connections, b.connections), (2, 2));
    let targets = run.json()["targets"]
        .as_array()
        .expect("per-target figures")
        .clone();
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[1]["target"], second);
    assert_eq!(targets[0]["accepted"], a.messages);
    assert_eq!(targets[1]["accepted"], b.messages);
    for key in ["started", "accepted", "failed", "bytes"] {
        let sum: u64 = targets.iter().map(|t| t[key].as_u64().unwrap()).sum();
        assert_eq!(sum, run.total(key), "{key}");
    }
    let eod: u64 = targets
        .iter()
        .map(|t| t["eod_count"].as_u64().unwrap())
        .sum();
    assert_eq!(eod, 400);
    assert!(targets
        .iter()
        .all(|t| t["eod_p99_ms"].as_f64().unwrap() > 0.0));
    let msgs_per_sec: f64 = targets
        .iter()
        .map(|t| t["msgs_per_sec"].as_f64().unwrap())
        .sum();
    let total = run.json()["totals"]["msgs_per_sec"].as_f64().unwrap();
    assert!(
        (msgs_per_sec - total).abs() < 1e-6 * total.max(1.0),
        "{msgs_per_sec} {total}"
    );
    assert!(run.stdout.contains("eod p99 ms"), "{}", run.stdout);
    assert!(run.stdout.contains(&second), "{}", run.stdout);
    assert_eq!(records(&jsonl[0]).len() as u64, a.messages);
}

#[test]
fn corpus_errors_are_usage_errors() {
    let empty = scratch("empty-dir");
    std::fs::create_dir_all(&empty).unwrap();
    let not_mbox = scratch("not.mbox");
    std::fs::write(&not_mbox, "Subject: x\n\nbody\n").unwrap();
    for (args, expected) in [
        (
            vec!["--message-dir", empty.to_str().unwrap()],
            "no *.eml files",
        ),
        (
            vec!["--mbox", not_mbox.to_str().unwrap()],
            "not an mbox file",
        ),
        (
            vec!["--order", "random"],
            "--order needs --message-dir or --mbox",
        ),
        (
            vec!["--mbox", not_mbox.to_str().unwrap(), "--size", "4k"],
            "cannot be used with",
        ),
    ] {
        let mut all: Vec<String> = vec!["--target".into(), "127.0.0.1:9".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        let (code, _, stderr) = common::run_binary(&all);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
