//! The API as a Python test suite uses it: `urllib` from the standard library (python3 is a
//! prerequisite of the test suite, docs/testing.md), a cursor taken before the action, an
//! `await` after it, a `408` as `HTTPError`, and an event stream read line by line.

mod api_client;

use api_client::*;
use fastsmtpd::api::ApiOptions;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SCRIPT: &str = r#"
import json, sys, urllib.request, urllib.error
api = sys.argv[1]
def get(path):
    with urllib.request.urlopen(api + path, timeout=60) as r:
        return json.load(r)
cursor = get("/cursor")["cursor"]
print("cursor", cursor, flush=True)
sys.stdin.readline()  # the test triggers the action
found = get(f"/await?rcpt=alice@example.com&after={cursor}&timeout=30s")
print("found", found["messages"][0]["subject"], found["cursor"], flush=True)
try:
    get(f"/await?rcpt=alice@example.com&after={found['cursor']}&timeout=0")
    print("no error", flush=True)
except urllib.error.HTTPError as e:
    print("error", e.code, json.load(e)["error"]["status"], flush=True)
with urllib.request.urlopen(api + "/events?after=0", timeout=60) as r:
    events = []
    for line in r:
        line = line.decode().rstrip("\n")
        if line.startswith("id: "):
            events.append(line[4:])
        if len(events) == 2:
            break
print("events", " ".join(events), flush=True)
"#;

#[test]
fn a_python_urllib_client_awaits_gets_408_as_an_error_and_reads_events() {
    let (capture, server) = serve(ApiOptions::default());
    let api = format!("http://{}/api/v1", server.local_addr());
    let mut child = Killed(
        Command::new("python3")
            .args(["-c", SCRIPT, &api])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is installed"),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut line = || lines.next().expect("a line from python").unwrap();
    assert_eq!(line(), "cursor 0");
    insert(
        &capture,
        "m1",
        "app@example.com",
        &["alice@example.com"],
        &mail("Welcome"),
    );
    use std::io::Write;
    stdin.write_all(b"go\n").unwrap();
    assert_eq!(line(), "found Welcome 1");
    assert_eq!(line(), "error 408 408");
    insert(
        &capture,
        "m2",
        "app@example.com",
        &["bob@example.com"],
        &mail("Second"),
    );
    assert_eq!(line(), "events 1 2");
    drop(stdin);
}
