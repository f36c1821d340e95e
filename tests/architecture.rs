//! The architecture's one rule, checked: `src/proto` is sans-I/O and stands alone. It imports
//! nothing of the crate outside `proto` (no fault injection, stores, server, metrics or log),
//! no clock type, and no socket or poller crate. A change that bends the rule fails here with
//! the file and line that bent it.

use std::path::Path;

/// What `proto` must never mention, even in a comment: other modules of the crate, time,
/// sockets, pollers, threads.
const FORBIDDEN: &[&str] = &[
    "crate::fault",
    "crate::sink",
    "crate::store",
    "crate::server",
    "crate::metrics",
    "crate::txlog",
    "crate::stats",
    "crate::config",
    "std::time",
    "std::net",
    "std::thread",
    "std::sync",
    "mio::",
    "socket2",
];

fn rust_files(dir: &Path, into: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/proto is readable") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

#[test]
fn proto_depends_on_nothing_outside_proto() {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proto");
    let mut files = Vec::new();
    rust_files(&proto, &mut files);
    assert!(files.len() >= 8, "found only {files:?}");
    let mut bent = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            for needle in FORBIDDEN {
                if line.contains(needle) {
                    bent.push(format!(
                        "{}:{}: {}",
                        file.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        bent.is_empty(),
        "proto reaches outside itself:\n{}",
        bent.join("\n")
    );
}
