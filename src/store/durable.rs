//! Writing files so that they survive a crash: what every store does on the filesystem.
//!
//! What it does: [`Staged`] is one file (Maildir, `.eml`) being written under a temporary
//! name as the content streams in, with writeback started early (`sync_file_range`) so the
//! final sync has little left to wait for; [`sync_files`] makes a batch's files durable with
//! one `syncfs` where that is cheaper than one `fdatasync` each; [`sync_dir`] makes the names
//! created in a directory durable; [`create_dir_all_durably`] creates a store's directories
//! and syncs their parents, so their names survive a crash before anything in them is
//! confirmed.
//!
//! What it does not do: decide names or contents (the stores do), or what is committed when
//! (`commit` does).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Bytes written to a file before its writeback is started (`sync_file_range`), so a large
/// message's data goes to disk as it arrives rather than all at its final sync, and dirty
/// pages do not pile up behind the syncs of other messages.
const WRITEBACK_EVERY: u64 = 1024 * 1024;

/// One file written for a message under a temporary name, waiting to be committed.
#[derive(Debug)]
pub(super) struct Staged {
    /// The open file (for the batch's sync).
    file: File,
    /// Where it is written.
    temporary: PathBuf,
    /// Where it goes once durable.
    destination: PathBuf,
    /// Bytes written so far.
    written: u64,
    /// Bytes whose writeback was started.
    kicked: u64,
}

impl Staged {
    /// Creates `temporary` (which must not exist), bound for `destination`.
    pub(super) fn create(temporary: PathBuf, destination: PathBuf) -> io::Result<Staged> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        Ok(Staged {
            file,
            temporary,
            destination,
            written: 0,
            kicked: 0,
        })
    }

    /// Creates `temporary` (which must not exist), writes `parts` into it one after another,
    /// and remembers `destination`. On failure nothing stays behind.
    pub(super) fn write(
        temporary: PathBuf,
        destination: PathBuf,
        parts: &[&[u8]],
    ) -> io::Result<Staged> {
        let mut staged = Staged::create(temporary, destination)?;
        for part in parts {
            if let Err(e) = staged.append(part) {
                let _ = staged.remove(); // created just now, by this thread
                return Err(e);
            }
        }
        Ok(staged)
    }

    /// Appends `bytes`; past every [`WRITEBACK_EVERY`] bytes, starts (does not wait for)
    /// their writeback.
    pub(super) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        if self.written - self.kicked >= WRITEBACK_EVERY {
            start_writeback(&self.file, self.kicked, self.written - self.kicked);
            self.kicked = self.written;
        }
        Ok(())
    }

    /// The open file (for the batch's sync).
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// Bytes written so far.
    pub(super) fn len(&self) -> u64 {
        self.written
    }

    /// Changes where the file goes once durable (a name that depends on the final size).
    pub(super) fn set_destination(&mut self, destination: PathBuf) {
        self.destination = destination;
    }

    /// Moves the file to its final name (the commit point of a file store).
    pub(super) fn rename(&self) -> io::Result<()> {
        fs::rename(&self.temporary, &self.destination)
    }

    /// Removes the file, under either name (nothing is left of an abandoned message). A name
    /// that does not exist is fine; the first other failure is returned.
    pub(super) fn remove(&self) -> io::Result<()> {
        let mut result = Ok(());
        for path in [&self.temporary, &self.destination] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound && result.is_ok() => result = Err(e),
                _ => {}
            }
        }
        result
    }
}

/// Starts writeback of `len` bytes of `file` from `offset`, without waiting: a hint, so a
/// failure changes nothing (the final sync reports real errors).
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range takes a file descriptor and touches no memory of ours; `file`
    // is open for the duration of the call.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
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

    use std::path::Path;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A staged file is written in pieces under its temporary name, renamed to its final
    /// name, and removed under whichever name it has (a name already gone is no error, so
    /// an undo after a partial commit can remove every file of a message alike).
    #[test]
    fn a_staged_file_is_renamed_and_removed_under_either_name() {
        let dir = std::env::temp_dir().join(format!("fastsmtpd-commit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut staged =
            Staged::write(dir.join(".a.tmp"), dir.join("a.final"), &[b"head "]).unwrap();
        for piece in b"message\r\n".chunks(3) {
            staged.append(piece).unwrap();
        }
        assert_eq!(staged.len(), 14);
        assert_eq!(names(&dir), [".a.tmp"]);
        staged.set_destination(dir.join("a.eml"));
        staged.rename().unwrap();
        assert_eq!(names(&dir), ["a.eml"]);
        assert_eq!(fs::read(dir.join("a.eml")).unwrap(), b"head message\r\n");
        staged.remove().unwrap();
        assert!(names(&dir).is_empty());
        staged.remove().unwrap(); // gone under both names: nothing to say
        let unrenamed = Staged::create(dir.join(".b.tmp"), dir.join("b")).unwrap();
        unrenamed.remove().unwrap();
        assert!(names(&dir).is_empty());
        // Renaming into a directory that is gone fails, and leaves the temporary file.
        let lost = Staged::create(dir.join(".c.tmp"), dir.join("gone").join("c")).unwrap();
        assert!(lost.rename().is_err());
        assert_eq!(names(&dir), [".c.tmp"]);
        lost.remove().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
