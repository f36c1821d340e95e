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
    use fastsmtpd::config::Config;
    use fastsmtpd::store::StoreSpec;
    use std::time::{Duration, Instant};
    let dir = std::env::temp_dir().join(format!("fastsmtpd-eod-pause-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = util::TestServer::start(Config {
        stores: vec![StoreSpec::Maildir(dir.clone())],
        faults: vec!["eod delay=300ms".into()],
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
