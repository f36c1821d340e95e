//! Several stores keep a message together or not at all (review of issue 16, F1): a `250`
//! means every durable store has the message (and a stream has its line), a `451` means no
//! store kept anything of it, so the client's retry leaves exactly one copy everywhere.
//!
//! Before, the stores committed one after the other and stopped at the first failure: those
//! already committed kept the message while the client was told `451`, and its retry made a
//! second copy there. Here every store order is tried with a failure in every position:
//! a directory removed, a store made read-only, a FIFO whose reader went away. After the
//! `451` no store holds the message (nor a temporary file of it); after the repair, the retry
//! gets `250` and each store holds it exactly once.

mod util;

use fastsmtpd::config::{Config, Stores};
use fastsmtpd::store::StoreSpec;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use util::{scratch_dir, test_config, Client, TestServer, QUEUED};

/// The reply to a message no store kept.
const NOT_STORED: &str = "451 4.3.0 Error: could not store message, try again later\r\n";

/// The kinds of store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `maildir:DIR`.
    Maildir,
    /// `eml:DIR`.
    Eml,
    /// `jsonl:DIR/m.jsonl` (a regular file: durable).
    Jsonl,
    /// `jsonl:FIFO` (a stream).
    Fifo,
}

/// How a store is made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Its directory is removed (Maildir: `new/`, so the failure comes at the rename, after
    /// the file was written; `.eml`: the directory; JSON lines: the file's directory).
    Removed,
    /// It becomes read-only (Maildir: `new/`; `.eml`: the directory; JSON lines: the path
    /// names a read-only file, as after a rotation by someone else).
    ReadOnly,
    /// The FIFO's reader goes away.
    NoReader,
}

/// One configured store and where it keeps things.
struct Store {
    kind: Kind,
    /// The Maildir or `.eml` directory, the JSON-lines file or the FIFO.
    path: PathBuf,
}

impl Store {
    fn new(kind: Kind, root: &Path) -> Store {
        let path = match kind {
            Kind::Maildir => root.join("Maildir"),
            Kind::Eml => root.join("eml"),
            Kind::Jsonl => root.join("jsonl").join("m.jsonl"),
            Kind::Fifo => {
                let fifo = root.join("records");
                let made = std::process::Command::new("mkfifo")
                    .arg(&fifo)
                    .status()
                    .unwrap();
                assert!(made.success(), "mkfifo {}", fifo.display());
                fifo
            }
        };
        Store { kind, path }
    }

    fn spec(&self) -> StoreSpec {
        match self.kind {
            Kind::Maildir => StoreSpec::Maildir(self.path.clone()),
            Kind::Eml => StoreSpec::Eml(self.path.clone()),
            Kind::Jsonl | Kind::Fifo => StoreSpec::Jsonl(self.path.clone()),
        }
    }

    /// The directory a fault acts on.
    fn fault_dir(&self) -> PathBuf {
        match self.kind {
            Kind::Maildir => self.path.join("new"),
            Kind::Eml => self.path.clone(),
            Kind::Jsonl | Kind::Fifo => self.path.parent().unwrap().to_path_buf(),
        }
    }

    /// Makes the store fail (the FIFO's reader is the caller's).
    fn break_it(&self, fault: Fault) {
        match (fault, self.kind) {
            (Fault::Removed, Kind::Maildir | Kind::Eml | Kind::Jsonl) => {
                std::fs::remove_dir_all(self.fault_dir()).unwrap();
            }
            (Fault::ReadOnly, Kind::Maildir | Kind::Eml) => read_only(&self.fault_dir(), true),
            (Fault::ReadOnly, Kind::Jsonl) => {
                // Rotated away, and the path now names a file nobody may write.
                std::fs::rename(&self.path, self.path.with_extension("jsonl.1")).unwrap();
                std::fs::write(&self.path, b"").unwrap();
                read_only(&self.path, true);
            }
            (fault, kind) => panic!("no {fault:?} for {kind:?}"),
        }
    }

    /// Undoes [`Store::break_it`].
    fn repair(&self, fault: Fault) {
        match (fault, self.kind) {
            (Fault::Removed, _) => std::fs::create_dir(self.fault_dir()).unwrap(),
            (Fault::ReadOnly, Kind::Maildir | Kind::Eml) => read_only(&self.fault_dir(), false),
            (Fault::ReadOnly, _) => {
                read_only(&self.path, false);
                std::fs::remove_file(&self.path).unwrap();
            }
            (Fault::NoReader, _) => {}
        }
    }

    /// How many copies of the message with `subject` the store holds (a FIFO's lines are
    /// counted by the caller).
    fn copies(&self, subject: &str) -> usize {
        match self.kind {
            Kind::Maildir => ["new", "cur"]
                .iter()
                .flat_map(|sub| files(&self.path.join(sub)))
                .filter(|file| contains(file, format!("\nSubject: {subject}\n").as_bytes()))
                .count(),
            Kind::Eml => {
                let emls = files(&self.path)
                    .into_iter()
                    .filter(|f| f.extension().is_some_and(|e| e == "eml"))
                    .filter(|f| contains(f, format!("Subject: {subject}\r\n").as_bytes()))
                    .count();
                let sidecars = files(&self.path)
                    .into_iter()
                    .filter(|f| f.extension().is_some_and(|e| e == "json"))
                    .filter(|f| record_subjects(f).iter().any(|s| s == subject))
                    .count();
                assert_eq!(emls, sidecars, "every .eml has its sidecar, and only then");
                emls
            }
            Kind::Jsonl => record_subjects(&self.path)
                .iter()
                .filter(|s| *s == subject)
                .count(),
            Kind::Fifo => 0,
        }
    }

    /// Temporary files left behind (none may outlive a message's verdict).
    fn leftovers(&self) -> Vec<PathBuf> {
        match self.kind {
            Kind::Maildir => files(&self.path.join("tmp")),
            Kind::Eml => files(&self.path)
                .into_iter()
                .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with('.'))
                .collect(),
            Kind::Jsonl | Kind::Fifo => Vec::new(),
        }
    }
}

/// Makes `path` read-only for this process (`true`) or writable again. Tests run as root in
/// CI containers, where permission bits stop nobody: there the immutable attribute does it
/// (`chattr +i`, on ext4, XFS, Btrfs, tmpfs); otherwise the permission bits.
fn read_only(path: &Path, on: bool) {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        let flag = if on { "+i" } else { "-i" };
        let status = std::process::Command::new("chattr")
            .arg(flag)
            .arg(path)
            .status()
            .expect("chattr (e2fsprogs) is needed to make a path read-only as root");
        assert!(
            status.success(),
            "chattr {flag} {} failed: the test needs a file system with the immutable attribute",
            path.display()
        );
    } else {
        let mode = match (on, path.is_dir()) {
            (true, true) => 0o555,
            (true, false) => 0o444,
            (false, true) => 0o755,
            (false, false) => 0o644,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// The files in `dir` (none if it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn contains(file: &Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(file).unwrap_or_default();
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// The subjects of the JSON records in `file` (none if it does not exist); every line must
/// be a whole record.
fn record_subjects(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a torn line in {}: {line:?}: {e}", file.display()));
            record["subject"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// The reading end of a FIFO, opened read-write so that opening never waits and a read
/// never sees end of file; dropping it closes the only reader.
struct FifoReader {
    file: std::fs::File,
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

    /// The subjects of the whole lines that arrived by now (every reply the test waited for
    /// was sent after its stream write, so what that write emitted is in the pipe already).
    #[allow(unsafe_code)]
    fn subjects_so_far(&mut self) -> Vec<String> {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let until = Instant::now() + Duration::from_millis(50);
        loop {
            let mut poll = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let left = until.saturating_duration_since(Instant::now());
            // SAFETY: one valid pollfd, for the duration of the call.
            let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis() as libc::c_int) };
            if ready <= 0 {
                break;
            }
            let mut buf = [0u8; 65536];
            let n = self.file.read(&mut buf).unwrap();
            self.pending.extend_from_slice(&buf[..n]);
        }
        let mut subjects = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let record: serde_json::Value = serde_json::from_slice(&line[..end])
                .unwrap_or_else(|e| panic!("a torn line in the FIFO: {e}"));
            subjects.push(record["subject"].as_str().unwrap().to_string());
        }
        assert!(
            self.pending.is_empty(),
            "a partial line in the FIFO: {:?}",
            String::from_utf8_lossy(&self.pending)
        );
        subjects
    }
}

/// Sends one message with `subject` over DATA and expects `reply` after the dot.
#[track_caller]
fn send(client: &mut Client, subject: &str, reply: &str) {
    client.roundtrip(
        "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
    );
    client.roundtrip(
        format!("Subject: {subject}\r\nMessage-ID: <{subject}@t.example>\r\n\r\nbody\r\n.\r\n"),
        reply,
    );
}

/// Runs one case: stores of `kinds` in that order, `fault` in store `broken`. The first
/// message is kept everywhere; the second gets `451` and is nowhere; after the repair its
/// retry gets `250` and is everywhere exactly once.
fn run_case(kinds: &[Kind], broken: usize, fault: Fault) {
    let case = format!("{kinds:?} with {fault:?} in position {broken}");
    let root = scratch_dir("all-or-nothing");
    let stores: Vec<Store> = kinds.iter().map(|&k| Store::new(k, &root)).collect();
    let fifo = stores.iter().position(|s| s.kind == Kind::Fifo);
    let mut reader = fifo.map(|at| FifoReader::open(&stores[at].path));
    let server = TestServer::start(Config {
        stores: Stores {
            specs: stores.iter().map(Store::spec).collect(),
            ..Stores::default()
        },
        ..test_config()
    });
    let mut client = server.client();
    client.ehlo();
    let held = |reader: &mut Option<FifoReader>, subject: &str| -> Vec<usize> {
        let streamed = reader.as_mut().map(|r| r.subjects_so_far());
        stores
            .iter()
            .map(|store| match (&streamed, store.kind) {
                (Some(lines), Kind::Fifo) => lines.iter().filter(|s| *s == subject).count(),
                _ => store.copies(subject),
            })
            .collect()
    };

    send(&mut client, "first", QUEUED);
    assert_eq!(held(&mut reader, "first"), vec![1; kinds.len()], "{case}");

    match fault {
        Fault::NoReader => drop(reader.take()),
        _ => stores[broken].break_it(fault),
    }
    send(&mut client, "second", NOT_STORED);
    assert_eq!(
        held(&mut reader, "second"),
        vec![0; kinds.len()],
        "{case}: after the 451 no store may hold the message"
    );
    for store in &stores {
        assert_eq!(store.leftovers(), Vec::<PathBuf>::new(), "{case}");
    }

    match fault {
        Fault::NoReader => reader = Some(FifoReader::open(&stores[broken].path)),
        _ => stores[broken].repair(fault),
    }
    send(&mut client, "second", QUEUED);
    assert_eq!(
        held(&mut reader, "second"),
        vec![1; kinds.len()],
        "{case}: after the retry every store holds the message once"
    );
    for store in &stores {
        assert_eq!(store.leftovers(), Vec::<PathBuf>::new(), "{case}");
    }
    client.roundtrip("QUIT\r\n", util::BYE);
    assert_eq!(server.stop().messages, 2, "{case}");
    let _ = std::fs::remove_dir_all(&root);
}

/// Every order of `kinds`.
fn orders(kinds: &[Kind]) -> Vec<Vec<Kind>> {
    if kinds.len() <= 1 {
        return vec![kinds.to_vec()];
    }
    let mut all = Vec::new();
    for (i, &first) in kinds.iter().enumerate() {
        let mut rest = kinds.to_vec();
        rest.remove(i);
        for mut tail in orders(&rest) {
            tail.insert(0, first);
            all.push(tail);
        }
    }
    all
}

#[test]
fn maildir_eml_and_jsonl_keep_a_message_together_or_not_at_all_in_every_order() {
    for order in orders(&[Kind::Maildir, Kind::Eml, Kind::Jsonl]) {
        for broken in 0..order.len() {
            for fault in [Fault::Removed, Fault::ReadOnly] {
                run_case(&order, broken, fault);
            }
        }
    }
}

#[test]
fn a_fifo_emits_only_what_every_durable_store_kept_in_every_order() {
    for order in orders(&[Kind::Maildir, Kind::Jsonl, Kind::Fifo]) {
        for broken in 0..order.len() {
            let faults: &[Fault] = if order[broken] == Kind::Fifo {
                &[Fault::NoReader]
            } else {
                &[Fault::Removed, Fault::ReadOnly]
            };
            for &fault in faults {
                run_case(&order, broken, fault);
            }
        }
    }
}
