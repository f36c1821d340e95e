//! The JSON-lines store follows its path: a file that was deleted (with its directory) or
//! renamed away (log rotation) is never written again; the next batch goes to a new file at
//! the path, or gets `451 4.3.0` when no file can be created there. A `250` always means the
//! record is in the file the path names.
//!
//! In-process servers; SIGHUP (which reopens the file without waiting for a batch) is tested
//! on the real binary in `tests/signals.rs`.

mod util;
use util::scratch_dir;

use fastsmtpd::config::{Config, Stores};
use fastsmtpd::store::StoreSpec;
use std::path::Path;
use util::{test_config, Client, TestServer, QUEUED};

/// A message that could not be stored.
const NOT_STORED: &str = "451 4.3.0 Error: could not store message, try again later\r\n";

fn jsonl_server(file: &Path) -> TestServer {
    TestServer::start(Config {
        stores: Stores {
            specs: vec![StoreSpec::Jsonl(file.to_path_buf())],
            ..Stores::default()
        },
        ..test_config()
    })
}

/// Sends message `n` (its number in the Subject) and expects `reply` after the dot.
#[track_caller]
fn send(client: &mut Client, n: usize, reply: &str) {
    client.begin_transaction();
    client.roundtrip("DATA\r\n", util::GO_AHEAD);
    client.roundtrip(format!("Subject: message {n}\r\n\r\nbody\r\n.\r\n"), reply);
}

/// The Subjects of the records in `file`, in order (every line must be a whole record).
#[track_caller]
fn subjects(file: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    text.lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a whole record: {line:?}: {e}"));
            record["subject"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn a_deleted_directory_gets_451_and_a_recreated_one_gets_a_new_file() {
    let dir = scratch_dir("deleted").join("spool");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("m.jsonl");
    let server = jsonl_server(&file);
    let mut client = server.client();
    client.ehlo();
    send(&mut client, 1, QUEUED);
    assert_eq!(subjects(&file), ["message 1"]);

    std::fs::remove_dir_all(&dir).unwrap();
    // Nowhere to write: the record would go nowhere, so no 250 (and the session goes on).
    send(&mut client, 2, NOT_STORED);
    send(&mut client, 3, NOT_STORED);
    assert!(!dir.exists(), "the store must not recreate the directory");

    std::fs::create_dir(&dir).unwrap();
    send(&mut client, 4, QUEUED);
    assert_eq!(subjects(&file), ["message 4"]);
    client.roundtrip("QUIT\r\n", util::BYE);
    assert_eq!(server.stop().messages, 2);
    assert_eq!(subjects(&file), ["message 4"]);
}

#[test]
fn a_deleted_file_is_recreated_by_the_next_batch() {
    let dir = scratch_dir("unlinked");
    let file = dir.join("m.jsonl");
    let server = jsonl_server(&file);
    let mut client = server.client();
    client.ehlo();
    send(&mut client, 1, QUEUED);
    std::fs::remove_file(&file).unwrap();
    send(&mut client, 2, QUEUED);
    assert_eq!(subjects(&file), ["message 2"]);
    client.roundtrip("QUIT\r\n", util::BYE);
    server.stop();
}

#[test]
fn a_renamed_file_keeps_its_records_and_the_next_batch_starts_a_new_one() {
    let dir = scratch_dir("rotated");
    let file = dir.join("m.jsonl");
    let rotated = dir.join("m.jsonl.1");
    let server = jsonl_server(&file);
    let mut client = server.client();
    client.ehlo();
    send(&mut client, 1, QUEUED);
    send(&mut client, 2, QUEUED);
    // Rotation by rename, as logrotate does without `copytruncate`.
    std::fs::rename(&file, &rotated).unwrap();
    send(&mut client, 3, QUEUED);
    // A second rotation, this time to a name in the way of nothing.
    std::fs::rename(&file, dir.join("m.jsonl.0")).unwrap();
    send(&mut client, 4, QUEUED);
    client.roundtrip("QUIT\r\n", util::BYE);
    assert_eq!(server.stop().messages, 4);
    assert_eq!(subjects(&rotated), ["message 1", "message 2"]);
    assert_eq!(subjects(&dir.join("m.jsonl.0")), ["message 3"]);
    assert_eq!(subjects(&file), ["message 4"]);
}
