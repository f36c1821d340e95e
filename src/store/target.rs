//! What a store is: its spec (`--store`) and the opened store ([`Target`]).
//!
//! What it does: parse and print [`StoreSpec`]; open each store once at start (each creates
//! its directories durably, see `durable`); answer what kind of store it is (writes a JSON
//! record, writes to a stream, renames into a directory), reopen it (SIGHUP) and report its
//! errors by name.
//!
//! What it does not do: write messages (the storage thread does, through each store's own
//! module: `maildir`, `eml`, `jsonl`), or decide what is durable when (`commit` does).

use super::{eml, jsonl, maildir};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where to keep messages (`--store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `maildir:DIR`.
    Maildir(PathBuf),
    /// `eml:DIR`.
    Eml(PathBuf),
    /// `jsonl:FILE`.
    Jsonl(PathBuf),
    /// `jsonl:-`: standard output (a stream, not durable; a file named `-` is `jsonl:./-`).
    JsonlStdout,
    /// `memory`: the capture store ([`crate::capture::Capture`]), in memory under its budget
    /// (not durable); the storage threads never see it (`super::memory`).
    Memory,
}

impl StoreSpec {
    /// Whether the storage threads write this store (every kind but `memory`).
    pub fn is_file(&self) -> bool {
        *self != StoreSpec::Memory
    }
}

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<StoreSpec, String> {
        if text == "memory" {
            return Ok(StoreSpec::Memory);
        }
        let (kind, path) = text.split_once(':').ok_or_else(|| {
            format!("{text:?}: expected memory, maildir:DIR, eml:DIR or jsonl:FILE")
        })?;
        if path.is_empty() {
            return Err(format!("{text:?}: the path is empty"));
        }
        if kind == "jsonl" && path == "-" {
            return Ok(StoreSpec::JsonlStdout);
        }
        let path = PathBuf::from(path);
        match kind {
            "maildir" => Ok(StoreSpec::Maildir(path)),
            "eml" => Ok(StoreSpec::Eml(path)),
            "jsonl" => Ok(StoreSpec::Jsonl(path)),
            _ => Err(format!(
                "{text:?}: unknown store {kind:?} (memory, maildir, eml or jsonl)"
            )),
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Maildir(p) => write!(f, "maildir:{}", p.display()),
            StoreSpec::Eml(p) => write!(f, "eml:{}", p.display()),
            StoreSpec::Jsonl(p) => write!(f, "jsonl:{}", p.display()),
            StoreSpec::JsonlStdout => f.write_str("jsonl:-"),
            StoreSpec::Memory => f.write_str("memory"),
        }
    }
}

/// An opened store.
#[derive(Debug)]
pub(super) enum Target {
    Maildir(maildir::Maildir),
    Eml(eml::EmlDir),
    Jsonl(jsonl::JsonLines),
    /// The relay's spool (`--spool DIR` with `--relay-to`): opened by the server, shared with
    /// the delivery side.
    Spool(SpoolTarget),
}

/// The relay's spool as a store: messages are appended to it and the batch committed once
/// (`super::commit`), with the relay's `Received:` line in front of each.
#[derive(Debug)]
pub(super) struct SpoolTarget {
    /// The spool and the delivery side's list of committed messages.
    pub(super) queue: std::sync::Arc<crate::relay::queue::RelayQueue>,
    /// Our host name, for the `Received:` line.
    pub(super) hostname: String,
    /// The spool directory, for errors (read without taking the spool's lock).
    pub(super) dir: std::path::PathBuf,
    /// Which recipients are relayed (`--relay-domains`); `None`: every one.
    pub(super) domains: Option<crate::relay::domains::RelayDomains>,
    /// When a failure was last said, and the failures not said since: a full disk fails
    /// every batch, and one line per batch would flood the log (thousands a second).
    pub(super) said: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

/// How often a failing spool says so at most (then with the count of failures not said).
const SPOOL_FAILURE_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl SpoolTarget {
    /// Says that the spool failed and its batch got `452 4.3.1` (without the spool's lock:
    /// the caller may hold it): at once, then at most once per
    /// [`SPOOL_FAILURE_REPORT_INTERVAL`] with the count of failures not said in between.
    pub(super) fn say_failure(&self, error: &io::Error) {
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        if said
            .0
            .is_some_and(|at| now.duration_since(at) < SPOOL_FAILURE_REPORT_INTERVAL)
        {
            said.1 += 1;
            return;
        }
        let more = std::mem::take(&mut said.1);
        *said = (Some(now), 0);
        drop(said);
        let more = if more > 0 {
            format!("; {more} more failures since the last line")
        } else {
            String::new()
        };
        crate::warn_line!(
            "fastsmtpd: --spool {}: {error} (refused with 452 4.3.1{more})",
            self.dir.display()
        );
    }

    /// Whether recipient `address` is relayed.
    pub(super) fn relays(&self, address: &[u8]) -> bool {
        self.domains
            .as_ref()
            .is_none_or(|domains| domains.matches(address))
    }
}

impl Target {
    pub(super) fn open(spec: &StoreSpec, hostname: &str) -> io::Result<Target> {
        let opened = match spec {
            StoreSpec::Maildir(dir) => maildir::Maildir::open(dir, hostname).map(Target::Maildir),
            StoreSpec::Eml(dir) => eml::EmlDir::open(dir).map(Target::Eml),
            StoreSpec::Jsonl(file) => jsonl::JsonLines::open(file).map(Target::Jsonl),
            StoreSpec::JsonlStdout => jsonl::JsonLines::stdout().map(Target::Jsonl),
            StoreSpec::Memory => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "kept by the capture store, not by a storage thread",
            )),
        };
        opened.map_err(|e| io::Error::new(e.kind(), format!("--store {spec}: {e}")))
    }

    /// Whether the store writes a JSON record (and so needs the content's digest).
    pub(super) fn needs_record(&self) -> bool {
        matches!(self, Target::Eml(_) | Target::Jsonl(_))
    }

    /// Opens again what the store keeps open by path (log rotation): only a JSON-lines file;
    /// Maildir and `.eml` open each file by name as they write it. Whether there was one.
    pub(super) fn reopen(&self) -> io::Result<bool> {
        match self {
            Target::Jsonl(t) => t.reopen(),
            Target::Maildir(_) | Target::Eml(_) | Target::Spool(_) => Ok(false),
        }
    }

    /// Whether the store writes to a stream (standard output, a FIFO, a device): nothing it
    /// wrote can be taken back or made durable.
    pub(super) fn is_stream(&self) -> bool {
        matches!(self, Target::Jsonl(t) if t.is_stream())
    }

    /// For a store of one file per message (Maildir, `.eml`): the directory its messages are
    /// renamed into (synced once per batch).
    pub(super) fn final_dir(&self) -> Option<&Path> {
        match self {
            Target::Maildir(t) => Some(t.final_dir()),
            Target::Eml(t) => Some(t.final_dir()),
            Target::Jsonl(_) | Target::Spool(_) => None,
        }
    }

    /// Says what went wrong, naming the store; the client sees only `451 4.3.0` (`452 4.3.1`
    /// for the spool).
    pub(super) fn report(&self, error: &io::Error) {
        match self {
            Target::Maildir(t) => t.report(error),
            Target::Eml(t) => t.report(error),
            Target::Jsonl(t) => t.report(error),
            Target::Spool(t) => t.say_failure(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs_parse() {
        assert_eq!(
            "maildir:/var/mail/x".parse::<StoreSpec>(),
            Ok(StoreSpec::Maildir("/var/mail/x".into()))
        );
        assert_eq!(
            "jsonl:out.jsonl".parse::<StoreSpec>(),
            Ok(StoreSpec::Jsonl("out.jsonl".into()))
        );
        assert_eq!("eml:d".parse::<StoreSpec>(), Ok(StoreSpec::Eml("d".into())));
        assert!("mbox:x"
            .parse::<StoreSpec>()
            .unwrap_err()
            .contains("unknown store"));
        assert!("maildir:"
            .parse::<StoreSpec>()
            .unwrap_err()
            .contains("empty"));
        assert!("maildir".parse::<StoreSpec>().is_err());
        assert_eq!("memory".parse::<StoreSpec>(), Ok(StoreSpec::Memory));
        assert_eq!(StoreSpec::Memory.to_string(), "memory");
        assert!(!StoreSpec::Memory.is_file());
        assert!("memory:x"
            .parse::<StoreSpec>()
            .unwrap_err()
            .contains("unknown store"));
        assert_eq!(
            "maildir:a:b".parse::<StoreSpec>().unwrap().to_string(),
            "maildir:a:b"
        );
    }
}
