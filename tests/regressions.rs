//! Regressions: one test per bug found, named for the bug, each with a comment saying what was
//! wrong. A bug found from now on gets its test here (unless a concern's own file is the
//! obvious home), so the list of what once broke stays in one place.

mod util;

use util::process::CHILD_LIMIT;
use util::{Client, BYE, GREETING, MAIL_OK};

/// Bug: `--fault` rules were tried before the `--fault-file` rules, while the README said the
/// command-line rules come after the file's. With "the first rule that fires wins", that let
/// a command-line rule override a file's rule (and shift the occurrences its `nth`/`every`/`p`
/// count). Now the file's rules come first: where both match, the file's reply wins, and the
/// command-line rule acts only where no file rule fired.
#[test]
fn fault_file_rules_come_before_command_line_fault_rules() {
    let dir = std::env::temp_dir().join(format!("fastsmtpd-fault-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("faults.toml");
    let file_rule = "rcpt to=*@both.example reply=550 5.7.1 From the file";
    let command_line_rule = "rcpt reply=450 4.7.1 From the command line";
    std::fs::write(&file, format!("rules = [\"{file_rule}\"]\n")).unwrap();

    let file_arg = file.to_str().expect("a UTF-8 temporary path");
    let (server, addr) = util::start_binary(
        1,
        &[
            "--exit-after-sessions",
            "1",
            "--fault",
            command_line_rule,
            "--fault-file",
            file_arg,
        ],
    );
    let mut client = Client::connect(addr);
    client.expect(GREETING);
    client.helo();
    client.roundtrip("MAIL FROM:<a@example.org>\r\n", MAIL_OK);
    // Both rules match: the file's fires.
    client.roundtrip(
        "RCPT TO:<x@both.example>\r\n",
        "550 5.7.1 From the file\r\n",
    );
    // Only the command-line rule matches: it fires.
    client.roundtrip(
        "RCPT TO:<y@other.example>\r\n",
        "450 4.7.1 From the command line\r\n",
    );
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();

    let exited = server.wait(CHILD_LIMIT);
    assert!(exited.status.success(), "{}", exited.dump());
    // The exit summary lists the rules in the order they are tried, each fired once.
    let position = |rule: &str| {
        exited
            .stdout
            .find(&format!("fault {rule:?} fired 1 times"))
            .unwrap_or_else(|| panic!("no summary line for {rule:?}\n{}", exited.dump()))
    };
    assert!(position(file_rule) < position(command_line_rule));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bug (found in review of the connection refactor): with a store, a pause asked for at the
/// end of data (`eod delay=`) did not hold the final reply once input was pipelined. The
/// pause point was an offset into the output buffer, and the buffer was cleared when the
/// replies before it had been written; the store's `250`, arriving later at offset 0, went
/// out at once. A store reporting during a pause also let the input behind it be processed
/// (and a second pause be lost). Now the pause point moves with the buffer, and kept input
/// waits for the pause's end.
#[test]
fn an_end_of_data_pause_holds_the_reply_of_a_stored_message() {
    use fastsmtpd::config::{Config, Faults, Stores};
    use fastsmtpd::store::StoreSpec;
    use std::time::{Duration, Instant};
    let dir = std::env::temp_dir().join(format!("fastsmtpd-eod-pause-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = util::TestServer::start(Config {
        stores: Stores {
            specs: vec![StoreSpec::Maildir(dir.clone())],
            ..Stores::default()
        },
        faults: Faults {
            rules: vec!["eod delay=300ms".into()],
            ..Faults::default()
        },
        ..util::test_config()
    });
    let mut client = server.client();
    client.ehlo();
    let message =
        "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n";
    let start = Instant::now();
    // Two transactions and a NOOP in one write: each end of data pauses 300 ms.
    client.send(format!("{message}{message}NOOP\r\n"));
    let transaction = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n";
    client.expect(transaction);
    client.expect("250 2.0.0 Ok: queued as [queue id]\r\n");
    // Lower bounds only: the pauses cannot have been skipped.
    assert!(
        start.elapsed() >= Duration::from_millis(290),
        "{:?}",
        start.elapsed()
    );
    client.expect(transaction);
    client.expect("250 2.0.0 Ok: queued as [queue id]\r\n250 2.0.0 Ok\r\n");
    assert!(
        start.elapsed() >= Duration::from_millis(590),
        "{:?}",
        start.elapsed()
    );
    client.roundtrip("QUIT\r\n", BYE);
    assert_eq!(server.stop().messages, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bug (found by the `command_parse` fuzz target): a source route (`<@a,@b:c@d>`, RFC 5321
/// §4.1.2, parsed and then dropped) was checked for syntax but not for UTF-8, so MAIL and
/// RCPT lines that are not UTF-8 (RFC 6531 §3.3) were accepted when the bad octets were in
/// the route, while the same octets in the mailbox were refused. Now the whole path, route
/// included, must be UTF-8.
#[test]
fn a_source_route_that_is_not_utf8_is_refused_like_the_mailbox() {
    let server = util::TestServer::default_config();
    let mut client = server.client();
    client.ehlo();
    client.send(b"MAIL FROM:<@\xe9.example:a@b.example>\r\n");
    client.expect("501 5.1.7 Error: bad sender address syntax\r\n");
    client.roundtrip("MAIL FROM:<@r.example:a@b.example>\r\n", MAIL_OK);
    client.send(b"RCPT TO:<@a.example,@b\xff.example:c@d.example>\r\n");
    client.expect("553 5.6.7 Error: recipient address is not valid UTF-8\r\n");
    client.roundtrip("QUIT\r\n", BYE);
    drop(server);
}

/// Bug (issue 16): fault rules were asked before the protocol's sequence check, so a sender
/// with a sequence bug was told something else: `RCPT` without `MAIL` got the injected `550`
/// instead of `503`, and a second (nested) `MAIL` the injected `553`. A fault now acts only
/// on a command the protocol would accept; the rule still fires where it should.
#[test]
fn a_fault_rule_never_hides_a_sequence_error() {
    let server = util::TestServer::start(fastsmtpd::config::Config {
        faults: fastsmtpd::config::Faults {
            rules: vec![
                "rcpt reply=550 5.1.1 No such user".into(),
                "mail from=second@* reply=553 5.7.1 Sender rejected".into(),
                "data disconnect".into(),
            ],
            ..fastsmtpd::config::Faults::default()
        },
        ..util::test_config()
    });
    let mut client = server.client();
    client.roundtrip(
        "MAIL FROM:<second@a.example>\r\n",
        "503 5.5.1 Error: send HELO/EHLO first\r\n",
    );
    client.ehlo();
    client.roundtrip("RCPT TO:<c@d.example>\r\n", util::NEED_MAIL);
    client.roundtrip("DATA\r\n", util::NEED_MAIL);
    client.roundtrip("MAIL FROM:<first@a.example>\r\n", MAIL_OK);
    client.roundtrip(
        "MAIL FROM:<second@a.example>\r\n",
        "503 5.5.1 Error: nested MAIL command\r\n",
    );
    client.roundtrip("DATA\r\n", util::NEED_RCPT);
    // Where the protocol accepts, the rules fire.
    client.roundtrip("RCPT TO:<c@d.example>\r\n", "550 5.1.1 No such user\r\n");
    client.roundtrip("RSET\r\n", util::OK);
    client.roundtrip(
        "MAIL FROM:<second@a.example>\r\n",
        "553 5.7.1 Sender rejected\r\n",
    );
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    drop(server);
}

/// Bug (issue 16): `rate=100/m` was a bucket of max(100/60, 1) = 1 token refilled every
/// 0.6 s, so 8 MAILs 0.1 s apart got 250, 450, 250, 450, ... A rate `N/m` is N per minute
/// with a burst of N, as Postfix's anvil counts: 8 MAILs at once pass under `rate=100/m`, and
/// under `rate=3/m` three pass, then the rule fires (one more token comes after 20 s).
#[test]
fn a_rate_per_minute_allows_a_burst_of_its_count() {
    let mail_rset = "MAIL FROM:<a@b.example>\r\nRSET\r\n";
    let slow_down = "450 4.7.0 Slow down\r\n";
    let server = util::TestServer::start(fastsmtpd::config::Config {
        faults: fastsmtpd::config::Faults {
            rules: vec![format!("mail rate=100/m reply={}", slow_down.trim_end())],
            ..fastsmtpd::config::Faults::default()
        },
        ..util::test_config()
    });
    let mut client = server.client();
    client.ehlo();
    client.send(mail_rset.repeat(8));
    client.expect(format!("{MAIL_OK}{}", util::OK).repeat(8));
    drop(server);

    let server = util::TestServer::start(fastsmtpd::config::Config {
        faults: fastsmtpd::config::Faults {
            rules: vec![format!("mail rate=3/m reply={}", slow_down.trim_end())],
            ..fastsmtpd::config::Faults::default()
        },
        ..util::test_config()
    });
    let mut client = server.client();
    client.ehlo();
    client.send(mail_rset.repeat(5));
    let accepted = format!("{MAIL_OK}{}", util::OK).repeat(3);
    let refused = format!("{slow_down}{}", util::OK).repeat(2);
    client.expect(format!("{accepted}{refused}"));
    drop(server);
}

/// Bug (issue 16): a fault `reply=` without an enhanced status code (`reply=550 No such
/// user`) went out as written, although the server advertises ENHANCEDSTATUSCODES and every
/// other reply carries one (RFC 2034 §4). Now the rule's reply gets `X.0.0` of its class
/// (RFC 3463 §3.1: the code to use when only the class is known), from `--fault` and
/// `--fault-file` alike; a code that contradicts the reply's class is refused at start.
#[test]
fn a_fault_reply_without_an_enhanced_code_gets_one() {
    let dir = util::scratch_dir("fault-enhanced");
    let file = dir.join("faults.toml");
    std::fs::write(
        &file,
        "rules = [\"rcpt to=*@bad.example reply=550 No such user\"]\n",
    )
    .unwrap();
    let file_arg = file.to_str().expect("a UTF-8 temporary path");
    let (server, addr) = util::start_binary(
        1,
        &[
            "--exit-after-sessions",
            "1",
            "--fault",
            "mail from=later@* reply=451 Try again later",
            "--fault",
            "data reply=554",
            "--fault-file",
            file_arg,
        ],
    );
    let mut client = Client::connect(addr);
    client.expect(GREETING);
    client.helo();
    client.roundtrip(
        "MAIL FROM:<later@a.example>\r\n",
        "451 4.0.0 Try again later\r\n",
    );
    client.roundtrip("MAIL FROM:<a@a.example>\r\n", MAIL_OK);
    client.roundtrip("RCPT TO:<c@bad.example>\r\n", "550 5.0.0 No such user\r\n");
    client.roundtrip("RCPT TO:<c@d.example>\r\n", util::RCPT_OK);
    // A code alone gets its class's enhanced code and a text.
    client.roundtrip("DATA\r\n", "554 5.0.0 Fault injected\r\n");
    client.roundtrip("QUIT\r\n", BYE);
    client.expect_closed();
    let exited = server.wait(CHILD_LIMIT);
    assert!(exited.status.success(), "{}", exited.dump());

    // A code of the wrong class stops the server at start, naming the rule.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--fault",
        "rcpt reply=550 4.1.1 No such user",
    ]);
    let output = util::process::run_bounded(command, None, CHILD_LIMIT);
    assert_eq!(output.status.code(), Some(2), "{}", output.stderr);
    assert!(
        output.stderr.contains("rcpt reply=550 4.1.1 No such user")
            && output.stderr.contains("class"),
        "{}",
        output.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bug (review F12): with `--exit-after-messages`, the client's `QUIT` after its last `250`
/// got `421 4.3.2` (swaks showed `<** 421`) and the summary counted `errors=1`: reaching the
/// limit began the shutdown, which closed every session between transactions at once. Now a
/// session between transactions during shutdown takes only `QUIT`, answered `221` as usual,
/// for a moment after its last reply; a clean run counts no error. Any other command still
/// gets the `421`.
#[test]
fn a_quit_after_the_last_message_of_exit_after_messages_gets_221() {
    use fastsmtpd::config::Config;
    let server = util::TestServer::start(Config {
        exit_after_messages: Some(2),
        ..util::test_config()
    });
    let mut polite = server.client();
    polite.ehlo();
    let mut eager = server.client();
    eager.ehlo();
    polite.deliver("one\r\n");
    polite.deliver("two\r\n");
    // The limit is reached: the shutdown has begun before the QUIT is sent.
    let start = std::time::Instant::now();
    while !server.handle().is_shutting_down() {
        assert!(
            start.elapsed() < util::REPLY_WAIT,
            "no shutdown after 2 messages"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    polite.roundtrip("QUIT\r\n", BYE);
    polite.expect_closed();
    // Nothing new starts during shutdown: a MAIL is answered 421 and the session closes.
    eager.roundtrip("MAIL FROM:<a@b.example>\r\n", util::SHUTTING_DOWN);
    eager.expect_closed();
    let stats = server.stop();
    assert_eq!(stats.messages, 2);
    assert_eq!(
        stats.errors, 1,
        "only the refused MAIL's 421 is an error: {:?}",
        stats.error_replies
    );
}

/// Bug (review F11): a store path beneath a regular file gave a different error per store and
/// per depth: `jsonl:FILE/m.jsonl` said `File exists (os error 17)`, `maildir:FILE/md`
/// `Not a directory (os error 20)`, neither naming the culprit. Now every store (and any
/// depth, and the store's own directory being a file) says which path is not a directory.
#[test]
fn a_store_path_beneath_a_regular_file_is_refused_naming_that_file() {
    let dir = util::scratch_dir("store-under-a-file");
    let file = dir.join("plain");
    std::fs::write(&file, b"not a directory\n").unwrap();
    let f = file.display();
    for spec in [
        format!("jsonl:{f}/m.jsonl"),
        format!("jsonl:{f}/deeper/m.jsonl"),
        format!("maildir:{f}/Maildir"),
        format!("maildir:{f}"),
        format!("eml:{f}/eml"),
        format!("eml:{f}"),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
        command.args(["--listen", "127.0.0.1:0", "--store", &spec]);
        let output = util::process::run_bounded(command, None, CHILD_LIMIT);
        assert_eq!(output.status.code(), Some(1), "{spec}: {}", output.stderr);
        assert_eq!(
            output.stderr,
            format!("fastsmtpd: error: --store {spec}: {f} is a regular file, not a directory\n"),
            "{spec}"
        );
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bug (review F2): `--shutdown-grace` was ignored while a stream store's reader took
/// nothing: the storage thread sat in a blocking `write` to the full pipe, the workers left,
/// and the server stayed up until the reader died. Now, when the grace period ends, the
/// stalled write gives up: the message whose line was not written whole gets `451 4.3.0`
/// (then `421`), and the server stops. Only the messages told `250` have whole lines in the
/// stream. (The wait for the server to stop is bounded, a hang guard, not a timing check.)
#[test]
#[allow(unsafe_code)]
fn shutdown_grace_is_kept_while_a_stream_stores_reader_takes_nothing() {
    use fastsmtpd::config::{Config, Stores};
    use fastsmtpd::store::StoreSpec;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};
    let dir = util::scratch_dir("stalled-fifo");
    let fifo = dir.join("records");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // The reader: it opens the FIFO and never reads. (Read-write, so opening does not wait.)
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    // SAFETY: fcntl on a descriptor we own, no memory passed.
    let size = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(
        size >= 4096,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    let in_pipe = || {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int, to `n`.
        unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONREAD, &mut n) };
        n as usize
    };
    // Not dropped if an assertion fails first: dropping stops the server, which is what
    // never returned before the fix (the test must fail, not hang).
    let server = std::mem::ManuallyDrop::new(util::TestServer::start(Config {
        shutdown_grace: Duration::from_millis(300),
        stores: Stores {
            specs: vec![StoreSpec::Jsonl(fifo.clone())],
            ..Stores::default()
        },
        ..util::test_config()
    }));
    let mut client = server.client();
    client.ehlo();
    client.deliver("Subject: small\r\n\r\nfits in the pipe\r\n");
    let first_line = in_pipe();
    assert!(first_line > 0);
    // A record larger than the whole pipe: its write stalls part way.
    let big = format!("Subject: {}\r\n\r\nbody\r\n", "x".repeat(size as usize * 2));
    client.begin_transaction();
    client.roundtrip("DATA\r\n", util::GO_AHEAD);
    client.send(format!("{big}.\r\n"));
    let start = Instant::now();
    while in_pipe() <= first_line {
        assert!(
            start.elapsed() < util::REPLY_WAIT,
            "the big record never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.handle().shutdown();
    client.expect(format!(
        "451 4.3.0 Error: could not store message, try again later\r\n{}",
        util::SHUTTING_DOWN
    ));
    client.expect_closed();
    let (done, stopped) = std::sync::mpsc::channel();
    let server = std::mem::ManuallyDrop::into_inner(server);
    std::thread::spawn(move || {
        let _ = done.send(server.stop());
    });
    let stats = stopped
        .recv_timeout(util::REPLY_WAIT)
        .expect("the server did not stop: the storage thread is stuck on the pipe");
    assert_eq!(stats.messages, 1);
    // The stream holds the first record whole; the second, given up, was not confirmed.
    let mut bytes = vec![0u8; in_pipe()];
    std::io::Read::read_exact(&mut &reader, &mut bytes).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let whole: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .collect();
    assert_eq!(whole.len(), 1, "{text}");
    assert!(whole[0].contains("\"subject\":\"small\""), "{}", whole[0]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `fastsmtpd ARGS` (bounded) with a listen address nobody uses, for refusals at start.
fn refused_at_start(args: &[&str]) -> util::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
    command.args(["--listen", "127.0.0.1:0"]).args(args);
    util::process::run_bounded(command, None, CHILD_LIMIT)
}

/// Bug (reviewer A, B7): `--max-line-length 18446744073709551615` panicked ("capacity
/// overflow", exit 101), `16G` aborted on a failed allocation (exit 134), and `1G` made each
/// worker allocate 2 GB at start; `--max-recipients` had no bound either. Both are bounded
/// now (64 KiB, 100 000: what one connection may hold stays bounded) and a value past the
/// bound is a clear error with exit status 2.
#[test]
fn line_length_and_recipient_limits_past_their_bounds_are_refused_with_exit_2() {
    for (args, needle) in [
        (
            ["--max-line-length", "18446744073709551615"],
            "--max-line-length 18446744073709551615: must be between 512",
        ),
        (
            ["--max-line-length", "16G"],
            "--max-line-length 17179869184: must be between 512",
        ),
        (["--max-line-length", "65537"], "and 65536 bytes"),
        (
            ["--max-recipients", "100001"],
            "must be between 1 and 100000",
        ),
        (
            ["--max-recipients", "18446744073709551615"],
            "must be between 1 and 100000",
        ),
    ] {
        let output = refused_at_start(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", output.dump());
        assert!(
            output.stderr.contains(needle),
            "{args:?}: {}",
            output.stderr
        );
        assert!(!output.stderr.contains("panicked"), "{}", output.stderr);
    }
}

/// Bug (reviewer A, D2 and N7): refusals of numbers spoke Rust (`0 is not in
/// 1..=4294967295`), a duration with a leading hyphen given as a separate word never reached
/// the parser (clap: "unexpected argument '-1' found"), and `--stats-interval
/// 0.0000000001ns`, which the grammar rounds to zero, was taken as "off" while `5us` was
/// refused. Now counts say "between 1 and N", "-1s" is a negative duration, and only an
/// exact 0 turns the stats line off.
#[test]
fn command_line_refusals_speak_plainly() {
    for (args, needle) in [
        (
            &["--idle-timeout", "-1s"][..],
            r#"invalid value '-1s' for '--idle-timeout <DURATION>': "-1s": a duration cannot be negative"#,
        ),
        (
            &["--max-message-size", "-5M"],
            r#""-5M": a size cannot be negative"#,
        ),
        (
            &["--max-connections-per-ip", "0"],
            r#""0": must be between 1 and 4294967295"#,
        ),
        (
            &["--max-errors", "-3"],
            r#""-3": cannot be negative (a whole number between 1 and 4294967295)"#,
        ),
        (
            &["--threads", "2000"],
            r#""2000": must be between 1 and 1024"#,
        ),
        (
            &["--stats-interval", "0.0000000001ns"],
            r#""0.0000000001ns": must be 0 (off) or from 100ms to 1d"#,
        ),
        (
            &["--stats-interval", "5us"],
            "--stats-interval 5us: must be 0 (off) or from 100ms to 1d",
        ),
        (
            &["--idle-timeout", "5μs"],
            "--idle-timeout 5us: must be from 1s to 1d",
        ),
        (&["--auth-threads", "0"], r#""0": must be between 1 and 64"#),
    ] {
        let output = refused_at_start(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", output.dump());
        assert!(
            output.stderr.contains(needle),
            "{args:?}: {}",
            output.stderr
        );
        assert!(!output.stderr.contains("..="), "{}", output.stderr);
    }
}

/// Bug (issue 16 review): `fastsmtpd ... | head -1` panicked on the main thread at the next
/// line it printed (a stats line, or the shutdown lines), `failed printing to stdout: Broken
/// pipe`, exit status 101, with messages in flight answered by nothing. The same for stderr
/// (`2>&1 | head -1`). The server's own lines are a courtesy now: a failed write is dropped,
/// mail goes on, the shutdown is as graceful as ever.
#[test]
fn a_closed_stdout_or_stderr_pipe_does_not_stop_the_server() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    for closed in ["stdout", "stderr"] {
        let listen = util::free_local_addr();
        let mut command = Command::new(env!("CARGO_BIN_EXE_fastsmtpd"));
        command
            .args([
                "--listen",
                &listen,
                "--threads",
                "1",
                "--hostname",
                "mx.test",
            ])
            .args(["--stats-interval", "100ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        /// Kills the server if the test fails half-way (no process outlives the test).
        struct KillOnDrop(std::process::Child);
        impl Drop for KillOnDrop {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut guard = KillOnDrop(command.spawn().expect("fastsmtpd starts"));
        let child = &mut guard.0;
        // A reader that takes one line and goes away, as `head -1` does.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        assert!(first.starts_with("fastsmtpd listening on "), "{first:?}");
        let stderr = child.stderr.take().unwrap();
        let _kept_open = if closed == "stdout" {
            drop(stdout);
            Some(stderr)
        } else {
            drop(stderr);
            None
        };
        let addr: std::net::SocketAddr = listen.parse().unwrap();
        let mut client = Client::connect(addr);
        client.expect(GREETING);
        client.ehlo();
        // Several stats lines go out (and fail) while the session runs.
        std::thread::sleep(std::time::Duration::from_millis(350));
        client.deliver("Subject: still here\r\n\r\nhello\r\n");
        client.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n");
        client.expect(MAIL_OK);
        client.read_reply();
        client.read_reply();
        // SIGTERM while a message is in flight: it is finished and answered, then 421.
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        #[allow(unsafe_code)]
        // SAFETY: kill(2) takes two integers and touches no memory; the pid is our own
        // child, not yet reaped.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0);
        std::thread::sleep(std::time::Duration::from_millis(200));
        client.send("in flight\r\n.\r\n");
        let reply = client.read_reply();
        assert!(
            reply.starts_with("250 2.0.0 Ok: queued as "),
            "{closed}: {reply:?}"
        );
        let deadline = std::time::Instant::now() + CHILD_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{closed}: fastsmtpd did not exit after SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert!(status.success(), "{closed} closed: exit {status:?}");
    }
}
