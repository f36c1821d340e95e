//! Regressions: one test per bug found, named for the bug, each with a comment saying what was
//! wrong. A bug found from now on gets its test here (unless a concern's own file is the
//! obvious home), so the list of what once broke stays in one place.

mod util;

use std::net::SocketAddr;
use std::process::Command;
use util::process::{ChildGuard, CHILD_LIMIT};
use util::{Client, BYE, GREETING, MAIL_OK, REPLY_WAIT};

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
        .args(["--exit-after-sessions", "1"])
        .args(["--fault", command_line_rule])
        .arg("--fault-file")
        .arg(&file);
    let mut server = ChildGuard::spawn(command);
    let line = server.next_line(REPLY_WAIT);
    assert!(line.starts_with("fastsmtpd listening on "), "{line}");

    let addr: SocketAddr = listen.parse().unwrap();
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
