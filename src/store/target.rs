//! What a store is: its spec (`--store`), the opened store ([`Target`]), and the filesystem
//! steps every store shares (creating directories durably, syncing files and directories).
//!
//! What it does: parse and print [`StoreSpec`]; open each store once at start (creating its
//! directories, then syncing their parents, so their names survive a crash); answer what
//! kind of store it is (writes a JSON record, writes to a stream, renames into a directory);
//! `sync_files` and `sync_dir` for the commit.
//!
//! What it does not do: write messages (the storage thread does, through each store's own
//! module: `maildir`, `eml`, `jsonl`), or decide what is durable when (`commit` does).

use super::{eml, jsonl, maildir};
use std::fmt;
use std::fs::File;
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
}

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<StoreSpec, String> {
        let (kind, path) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: expected maildir:DIR, eml:DIR or jsonl:FILE"))?;
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
                "{text:?}: unknown store {kind:?} (maildir, eml or jsonl)"
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
        }
    }
}

/// An opened store.
#[derive(Debug)]
pub(super) enum Target {
    Maildir(maildir::Maildir),
    Eml(eml::EmlDir),
    Jsonl(jsonl::JsonLines),
}

impl Target {
    pub(super) fn open(spec: &StoreSpec, hostname: &str) -> io::Result<Target> {
        let opened = match spec {
            StoreSpec::Maildir(dir) => maildir::Maildir::open(dir, hostname).map(Target::Maildir),
            StoreSpec::Eml(dir) => eml::EmlDir::open(dir).map(Target::Eml),
            StoreSpec::Jsonl(file) => jsonl::JsonLines::open(file).map(Target::Jsonl),
            StoreSpec::JsonlStdout => jsonl::JsonLines::stdout().map(Target::Jsonl),
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
            Target::Maildir(_) | Target::Eml(_) => Ok(false),
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
            Target::Jsonl(_) => None,
        }
    }

    /// Says what went wrong, naming the store; the client sees only `451 4.3.0`.
    pub(super) fn report(&self, error: &io::Error) {
        match self {
            Target::Maildir(t) => t.report(error),
            Target::Eml(t) => t.report(error),
            Target::Jsonl(t) => t.report(error),
        }
    }
}

/// `fsync` a directory, making the entries created in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory that holds `path` (`.` for a bare name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Creates `dir` and every missing parent (as `mkdir -p` does), then syncs the parent of
/// each directory it created, so their names survive a crash before anything in them is
/// confirmed. Every store does this at start (`maildir:` and `eml:` for their directories,
/// `jsonl:` for its file's), and only then: a directory removed while the server runs is a
/// failure (`451 4.3.0`), not something to create again.
pub(crate) fn create_dir_all_durably(dir: &Path) -> io::Result<()> {
    refuse_non_directory_ancestor(dir)?;
    let mut created = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at {
        if path.as_os_str().is_empty() || path.exists() {
            break;
        }
        created.push(path);
        at = path.parent();
    }
    std::fs::create_dir_all(dir)?;
    created
        .iter()
        .try_for_each(|path| sync_dir(parent_dir(path)))
}

/// Refuses `dir` when it, or one of its parents, exists but is not a directory, naming that
/// path: the same clear error for every store, where `mkdir -p` would say `File exists` or
/// `Not a directory` depending on where the file sits.
fn refuse_non_directory_ancestor(dir: &Path) -> io::Result<()> {
    let mut ancestors: Vec<&Path> = dir
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    ancestors.reverse();
    for path in ancestors {
        // Follows symbolic links, as creating and opening beneath the path does.
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => {
                let kind = describe_file_type(&meta.file_type());
                return Err(io::Error::new(
                    io::Error::from_raw_os_error(libc::ENOTDIR).kind(),
                    format!("{} is {kind}, not a directory", path.display()),
                ));
            }
            // Missing (created next), or not for us to judge here: creating says why.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// What a file that is not a directory is, for messages.
fn describe_file_type(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else {
        "neither a file nor a directory"
    }
}

/// Makes the contents of `files` (all on one filesystem: a store's own directory) durable.
///
/// With `whole_fs`, one `syncfs` flushes them all with a single journal commit, where an
/// `fdatasync` per file costs one commit each: this is where group commit pays most for
/// Maildir and `.eml` (new files, so every `fdatasync` has metadata to commit). But `syncfs`
/// also waits for every other dirty file on the filesystem, so while large messages are being
/// streamed to disk the caller asks for one `fdatasync` per file instead. If `syncfs` is
/// refused, each file is synced on its own.
#[allow(unsafe_code)]
pub(crate) fn sync_files(files: &[&File], whole_fs: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let Some(first) = files.first() else {
        return Ok(());
    };
    if whole_fs && files.len() > 1 {
        // SAFETY: syncfs takes a file descriptor and touches no memory of ours; `first` is
        // an open file for the duration of the call.
        if unsafe { libc::syncfs(first.as_raw_fd()) } == 0 {
            return Ok(());
        }
    }
    files.iter().try_for_each(|file| file.sync_data())
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
        assert_eq!(
            "maildir:a:b".parse::<StoreSpec>().unwrap().to_string(),
            "maildir:a:b"
        );
    }
}
