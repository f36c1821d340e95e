//! The architecture's one rule, checked: `src/proto` is sans-I/O and stands alone. It imports
//! nothing of the crate outside `proto` (no fault injection, stores, server, metrics or log),
//! no clock type, and no socket or poller crate. A change that bends the rule fails here with
//! the file and line that bent it. The relay's SMTP client (`src/relay/client`) keeps the same
//! rule.

use std::path::Path;

/// What `proto` and the relay's client must never mention, even in a comment: other modules of
/// the crate, time, sockets, pollers, threads.
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
    for entry in
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{} is unreadable: {e}", dir.display()))
    {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The lines of the `.rs` files under `src/<room>` that mention a [`FORBIDDEN`] name, as
/// `file:line: text`, and how many files were read.
fn forbidden_mentions(room: &str) -> (Vec<String>, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(room);
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
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
    (bent, files.len())
}

#[test]
fn proto_depends_on_nothing_outside_proto() {
    let (bent, files) = forbidden_mentions("proto");
    assert!(files >= 8, "found only {files} files");
    assert!(
        bent.is_empty(),
        "proto reaches outside itself:\n{}",
        bent.join("\n")
    );
}

/// The relay's SMTP client is sans-I/O by the same rule as `proto` (DESIGN.md, "The relay"):
/// replies in, commands out, no socket, clock or thread, nothing of the crate's other rooms.
#[test]
fn relay_client_is_sans_io() {
    let (bent, files) = forbidden_mentions("relay/client");
    assert!(files >= 3, "found only {files} files");
    assert!(
        bent.is_empty(),
        "the relay client reaches outside itself:\n{}",
        bent.join("\n")
    );
}

#[path = "layers/mod.rs"]
mod layers;

/// The crate's source.
fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layers named in `src/lib.rs` hold: every top-level room imports only rooms in lower
/// layers, and every room is in the table.
#[test]
fn rooms_import_only_rooms_below_them() {
    let imports = layers::imports(&src());
    let table = layers::layer_table(&src().join("lib.rs"));
    assert!(
        table.len() >= 10,
        "the layer table in src/lib.rs: {table:?}"
    );
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(room) = line.strip_prefix("pub mod ") {
            let room = room.trim_end_matches(';');
            assert!(
                table.contains_key(room),
                "{room} is in no layer of src/lib.rs"
            );
        }
    }
    let bent = layers::layer_violations(&imports, &table);
    assert!(
        bent.is_empty(),
        "imports against the layers of src/lib.rs:\n{}",
        bent.join("\n")
    );
}

/// No circle of imports among the modules of `src/` (under any one parent).
#[test]
fn no_import_cycle_in_src() {
    let imports = layers::imports(&src());
    assert!(imports.len() > 50, "found only {} imports", imports.len());
    let cycles = layers::cycles(&imports);
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// The reader itself: a circle, a layer bent, and what does not count.
#[test]
fn the_reader_finds_a_circle_and_an_upward_import_and_ignores_comments_and_tests() {
    let dir = std::env::temp_dir().join(format!("fastsmtpd-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "lib.rs",
        "//! # Layers\n//!\n//! | layer | rooms |\n//! |---|---|\n//! | 1 | `high` |\n//! | 0 | `low` |\npub mod high;\npub mod low;\n",
    );
    write("high.rs", "use crate::low::Thing;\n");
    write(
        "low/mod.rs",
        "mod a;\nmod b;\n// crate::high in a comment\nfn f() { crate::high::g() }\n#[cfg(test)]\nmod tests { use crate::high::h; }\n",
    );
    write("low/a.rs", "use super::{\n    b::B,\n    self as _,\n};\n");
    write(
        "low/b.rs",
        "pub struct B;\nuse super::super::low::a::A; // crate::high\n",
    );
    let imports = layers::imports(&dir);
    let table = layers::layer_table(&dir.join("lib.rs"));
    assert_eq!(table.len(), 2);
    let bent = layers::layer_violations(&imports, &table);
    assert_eq!(bent.len(), 1, "{bent:?}");
    assert!(bent[0].contains("low/mod.rs:4:"), "{bent:?}");
    let cycles = layers::cycles(&imports);
    assert_eq!(cycles.len(), 2, "{cycles:?}");
    assert!(
        cycles[0].contains("in the crate root: high -> low -> high"),
        "{cycles:?}"
    );
    assert!(cycles[1].contains("in low: a -> b -> a"), "{cycles:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// No circle of imports among the modules of `loadgen/src` either (the same reader; the
/// load generator's own layer rule, drive below report, is `loadgen/tests/architecture.rs`'s).
#[test]
fn no_import_cycle_in_loadgen() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("loadgen/src");
    let cycles = layers::cycles(&layers::imports(&root));
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}
