//! What a user opens: Maildir files read by a real reader (Python's `mailbox`), JSON lines
//! streamed to standard output (`--store jsonl:-`) and into a FIFO, the message id a `250`
//! names found in each, and a `jsonl:` path whose directories do not exist yet.

mod util;

use fastsmtpd::config::{Config, Stores};
use fastsmtpd::store::StoreSpec;
use std::path::Path;
use std::time::{Duration, Instant};
use util::process::{run_bounded, ChildGuard, CHILD_LIMIT, PYTHON3};
use util::{test_config, Client, TestServer, QUEUED, REPLY_WAIT};

/// The 451 a store failure gets.
const NOT_STORED: &str = "451 4.3.0 Error: could not store message, try again later\r\n";

/// Sends one message (`Subject: <subject>`) from `a@b.example` to `recipients` over DATA;
/// expects `reply` after the dot and returns the ids it named.
#[track_caller]
fn send(client: &mut Client, recipients: &[&str], subject: &str, reply: &str) -> Vec<String> {
    let mut commands = String::from("MAIL FROM:<a@b.example>\r\n");
    let mut replies = String::from("250 2.1.0 Ok\r\n");
    for rcpt in recipients {
        commands.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
        replies.push_str("250 2.1.5 Ok\r\n");
    }
    commands.push_str("DATA\r\n");
    replies.push_str("354 End data with <CR><LF>.<CR><LF>\r\n");
    client.roundtrip(commands, replies);
    client.roundtrip(
        format!(
            "From: a@b.example\r\nTo: {}\r\nSubject: {subject}\r\n\r\nfirst line\r\n..dot line\r\nlast line\r\n.\r\n",
            recipients[0]
        ),
        reply,
    )
}

/// Bug (issue 16): Maildir files were written with the wire's CR LF, so mutt showed `^M` at
/// the end of every header line; and nothing in the file said who the recipients were, so a
/// BCC could not be checked. Now Python's `mailbox.Maildir` (a real reader) finds LF-only
/// lines, an `X-Original-To:` per recipient (a BCC recipient included) and the content as
/// sent; the file name starts with the id the 250 named.
#[test]
fn python_mailbox_reads_lf_only_headers_and_an_x_original_to_per_recipient() {
    PYTHON3.require();
    let dir = util::scratch_dir("maildir-reader")
        .join("deep")
        .join("Maildir");
    let server = TestServer::start(Config {
        stores: Stores {
            specs: vec![StoreSpec::Maildir(dir.clone())],
            ..Stores::default()
        },
        ..test_config()
    });
    let mut client = server.client();
    client.ehlo();
    let recipients = ["to@c.example", "cc@c.example", "hidden-bcc@c.example"];
    let ids = send(&mut client, &recipients, "for three", QUEUED);
    client.roundtrip("QUIT\r\n", util::BYE);
    server.stop();

    let script = r#"
import mailbox, sys
box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
for key in box.keys():
    raw = box.get_bytes(key)
    message = box[key]
    print("KEY", key)
    print("CR", b"\r" in raw)
    print("RETURN_PATH", message["Return-Path"])
    print("ORIGINAL_TO", ",".join(message.get_all("X-Original-To")))
    print("SUBJECT", message["Subject"])
    print("RECEIVED_CR", any("\r" in value for value in message.get_all("Received")))
    print("HEADER_CR", any("\r" in name + value for name, value in message.items()))
    print("BODY", repr(message.get_payload()))
"#;
    let mut command = PYTHON3.command();
    command.args(["-c", script]).arg(&dir);
    let output = run_bounded(command, None, CHILD_LIMIT);
    output.assert_success("python3 mailbox.Maildir");
    let lines = output.stdout_lines();
    assert_eq!(lines.len(), 8, "one message: {}", output.dump());
    assert!(
        lines[0].starts_with(&format!("KEY {}.mx.test,S=", ids[0])),
        "{lines:?}"
    );
    assert_eq!(
        &lines[1..],
        [
            "CR False",
            "RETURN_PATH <a@b.example>",
            "ORIGINAL_TO to@c.example,cc@c.example,hidden-bcc@c.example",
            "SUBJECT for three",
            "RECEIVED_CR False",
            "HEADER_CR False",
            "BODY 'first line\\n.dot line\\nlast line\\n'",
        ]
    );
}

/// Starts the real binary with `args` and waits (bounded) for its listening line on standard
/// error (with `jsonl:-` its standard output holds nothing but records).
#[track_caller]
fn spawn_streaming(args: &[&str], cwd: &Path) -> (ChildGuard, std::net::SocketAddr) {
    let listen = util::free_local_addr();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command
        .current_dir(cwd)
        .args([
            "--listen",
            &listen,
            "--threads",
            "1",
            "--hostname",
            "mx.test",
        ])
        .args(args);
    let child = ChildGuard::spawn(command);
    let start = Instant::now();
    while !child.stderr().contains("fastsmtpd listening on ") {
        assert!(
            start.elapsed() < REPLY_WAIT,
            "no listening line on stderr: {}",
            child.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, listen.parse().unwrap())
}

/// Bug (issue 16): `--store jsonl:-` created a file named `-`. Now the records go to standard
/// output, one JSON line per message and nothing else (the server's own lines go to stderr,
/// which says plainly that the store is not durable); each record's id is the one its `250`
/// named.
#[test]
fn jsonl_dash_streams_records_to_stdout_and_nothing_else() {
    let cwd = util::scratch_dir("jsonl-stdout");
    let (mut child, addr) = spawn_streaming(&["--store", "jsonl:-"], &cwd);
    let stderr = child.stderr();
    assert!(
        stderr.contains("; stores: jsonl:- (not durable)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fastsmtpd: jsonl:- is not durable: "),
        "{stderr}"
    );
    let mut client = Client::connect(addr);
    client.expect(util::GREETING);
    client.ehlo();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.extend(send(
            &mut client,
            &["x@y.example"],
            &format!("n{n}"),
            QUEUED,
        ));
        let line = child.next_line(REPLY_WAIT);
        let record: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}"));
        assert_eq!(record["id"], ids[n], "{line}");
        assert_eq!(record["subject"], format!("n{n}"), "{line}");
    }
    client.roundtrip("QUIT\r\n", util::BYE);
    child.signal(libc::SIGTERM);
    let exited = child.wait(Duration::from_secs(20));
    assert!(exited.status.success(), "{}", exited.dump());
    // After the records, standard output got nothing: the summary went to stderr.
    assert_eq!(exited.stdout, "", "{}", exited.dump());
    assert!(exited.stderr.contains("fastsmtpd: done: messages=3 "));
    assert!(!cwd.join("-").exists(), "a file named '-' was created");
}

/// `--log-sessions` writes to standard output too: with `jsonl:-` the two would share one
/// stream, so the combination is refused at start with a message that says what to do.
#[test]
fn jsonl_dash_with_log_sessions_is_refused_with_a_clear_error() {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command.args([
        "--listen",
        &util::free_local_addr(),
        "--store",
        "jsonl:-",
        "--log-sessions",
    ]);
    let output = run_bounded(command, None, CHILD_LIMIT);
    assert_eq!(output.status.code(), Some(2), "{}", output.dump());
    assert!(
        output
            .stderr
            .contains("--log-sessions and --store jsonl:- would both write to standard output"),
        "{}",
        output.dump()
    );
}

/// The reading end of a FIFO, opened read-write so that opening never waits for a writer
/// and a read never sees end of file; dropping it closes the only reader.
struct FifoReader {
    /// The FIFO.
    file: std::fs::File,
    /// Bytes read past the last whole line.
    pending: Vec<u8>,
}

impl FifoReader {
    fn open(fifo: &Path) -> FifoReader {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(fifo)
            .unwrap();
        FifoReader {
            file,
            pending: Vec::new(),
        }
    }

    /// The next line (without its `\n`), or `None` if none is whole within `wait`.
    #[allow(unsafe_code)]
    fn line(&mut self, wait: Duration) -> Option<String> {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let until = Instant::now() + wait;
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Some(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            let left = until.checked_duration_since(Instant::now())?;
            let mut poll = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the duration of the call.
            let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis() as libc::c_int) };
            if ready <= 0 {
                return None;
            }
            let mut buf = [0u8; 4096];
            let n = self.file.read(&mut buf).unwrap();
            self.pending.extend_from_slice(&buf[..n]);
        }
    }
}

/// Bug (issue 16): `jsonl:` on a FIFO wrote the line, then `fdatasync` failed (EINVAL), the
/// client got 451 and its retry put the record in the stream twice. Now a FIFO is a stream:
/// no sync, the 250 once the line is written, and never a 451 for a line that went out. With
/// no reader the store refuses (nothing emitted, so a retry duplicates nothing) and the
/// server does not hang; a reader that comes later gets every line after that exactly once.
#[test]
fn a_fifo_gets_each_record_once_and_no_reader_means_451_not_a_hang() {
    let dir = util::scratch_dir("jsonl-fifo");
    let fifo = dir.join("records");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // No reader yet: the server starts all the same (an open that waited for a reader would
    // hang here: the start runs on a thread, with a bound).
    let config = Config {
        stores: Stores {
            specs: vec![StoreSpec::Jsonl(fifo.clone())],
            ..Stores::default()
        },
        ..test_config()
    };
    let (started, start) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = started.send(TestServer::start(config));
    });
    let server = start
        .recv_timeout(REPLY_WAIT)
        .expect("the server did not start: opening the FIFO waited for a reader");
    let mut client = server.client();
    client.ehlo();
    send(&mut client, &["x@y.example"], "nobody reads", NOT_STORED);

    let mut reader = FifoReader::open(&fifo);
    let first = send(&mut client, &["x@y.example"], "one", QUEUED);
    let second = send(&mut client, &["x@y.example"], "two", QUEUED);
    for (id, subject) in [(&first[0], "one"), (&second[0], "two")] {
        let line = reader.line(REPLY_WAIT).expect("a record in the FIFO");
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(record["id"], id.as_str(), "{line}");
        assert_eq!(record["subject"], subject, "{line}");
    }

    // The reader goes away: the next message is refused, and the one after that reaches
    // the next reader, once.
    drop(reader);
    send(&mut client, &["x@y.example"], "gone", NOT_STORED);
    let mut reader = FifoReader::open(&fifo);
    let third = send(&mut client, &["x@y.example"], "three", QUEUED);
    let line = reader.line(REPLY_WAIT).expect("a record in the FIFO");
    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["id"], third[0].as_str(), "{line}");
    assert_eq!(
        reader.line(Duration::from_millis(300)),
        None,
        "one line per accepted message"
    );
    client.roundtrip("QUIT\r\n", util::BYE);
    assert_eq!(server.stop().messages, 3);
}

/// A character device is a stream too: `jsonl:/dev/null` (no sync possible: `fdatasync` on
/// it fails with EINVAL) takes every message.
#[test]
fn jsonl_on_a_character_device_accepts_every_message() {
    let server = TestServer::start(Config {
        stores: Stores {
            specs: vec![StoreSpec::Jsonl("/dev/null".into())],
            ..Stores::default()
        },
        ..test_config()
    });
    assert_eq!(
        server.handle().not_durable_stores(),
        ["jsonl:/dev/null".to_string()]
    );
    let mut client = server.client();
    client.ehlo();
    for _ in 0..3 {
        send(&mut client, &["x@y.example"], "null", QUEUED);
    }
    client.roundtrip("QUIT\r\n", util::BYE);
    assert_eq!(server.stop().messages, 3);
}

/// `maildir:` and `eml:` created missing parent directories; `jsonl:` refused to start. Now
/// all three create them.
#[test]
fn every_store_creates_its_missing_parent_directories() {
    let root = util::scratch_dir("parents");
    let jsonl = root.join("a/b/records.jsonl");
    let (maildir, eml) = (root.join("c/d/Maildir"), root.join("e/f/eml"));
    let server = TestServer::start(Config {
        stores: Stores {
            specs: vec![
                StoreSpec::Jsonl(jsonl.clone()),
                StoreSpec::Maildir(maildir.clone()),
                StoreSpec::Eml(eml.clone()),
            ],
            ..Stores::default()
        },
        ..test_config()
    });
    assert!(server.handle().not_durable_stores().is_empty());
    let mut client = server.client();
    client.ehlo();
    let ids = send(&mut client, &["x@y.example"], "deep", QUEUED);
    client.roundtrip("QUIT\r\n", util::BYE);
    server.stop();
    let record: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&jsonl).unwrap().trim_end()).unwrap();
    assert_eq!(record["id"], ids[0]);
    assert!(eml.join(format!("{}.eml", ids[0])).exists());
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 1);
}

/// The record says what the SHA-256 covers: the content as received (dot-stuffing undone),
/// which is the `.eml` file byte for byte; the Maildir file differs (the lines the delivery
/// adds, LF line ends) and the records do not describe it.
#[test]
fn the_records_size_and_sha256_are_the_eml_files_bytes() {
    let root = util::scratch_dir("sha");
    let (jsonl, eml) = (root.join("m.jsonl"), root.join("eml"));
    let server = TestServer::start(Config {
        stores: Stores {
            specs: vec![StoreSpec::Jsonl(jsonl.clone()), StoreSpec::Eml(eml.clone())],
            ..Stores::default()
        },
        ..test_config()
    });
    let mut client = server.client();
    client.ehlo();
    let ids = send(&mut client, &["x@y.example"], "hash", QUEUED);
    client.roundtrip("QUIT\r\n", util::BYE);
    server.stop();
    let record: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&jsonl).unwrap().trim_end()).unwrap();
    let kept = std::fs::read(eml.join(format!("{}.eml", ids[0]))).unwrap();
    let sent: &[u8] = b"From: a@b.example\r\nTo: x@y.example\r\nSubject: hash\r\n\r\nfirst line\r\n.dot line\r\nlast line\r\n";
    assert_eq!(kept, sent);
    assert_eq!(record["size"], sent.len());
    assert_eq!(record["sha256"], fastsmtpd::store::record::sha256_hex(sent));
}

/// The discard store names its messages too: the id a `250` gives is in the
/// `--log-sessions` line of that message, so a sender's log joins with the server's.
#[test]
fn a_discarded_message_has_an_id_that_log_sessions_shows() {
    let (mut child, addr) = util::start_binary(1, &["--log-sessions"]);
    let mut client = Client::connect(addr);
    client.expect(util::GREETING);
    client.ehlo();
    let first = send(&mut client, &["x@y.example"], "one", QUEUED);
    let second = send(&mut client, &["x@y.example"], "two", QUEUED);
    assert_ne!(first, second);
    for id in [&first[0], &second[0]] {
        let line = child.next_line(REPLY_WAIT);
        assert!(
            line.ends_with(&format!(" reply=\"250 2.0.0 Ok: queued as {id}\"\n")),
            "{line}"
        );
    }
    client.roundtrip("QUIT\r\n", util::BYE);
}
