//! Committing a batch of messages to every store at once: all stores keep a message, or none
//! does.
//!
//! What it does: [`Staged`] is one file (Maildir, `.eml`) being written under a temporary
//! name as the content streams in, with writeback started early so the final sync has little
//! left to wait for. [`commit_batch`] takes a batch of messages whose content is complete in
//! every store and decides, per message, kept everywhere or kept nowhere, in two phases:
//!
//! 1. Prepare, where nothing is visible yet and a failure costs nothing to undo: one
//!    [`sync_files`] per file store for the contents of every staged file (group commit).
//! 2. Commit, each step undoable: the renames into place (each message's files in the order
//!    staged, so its last file is its commit point); one `fsync` per file store's directory;
//!    then each regular JSON-lines file gets the batch's lines in one write and one
//!    `fdatasync`, remembering its length before; then, last, the stream (standard output, a
//!    FIFO, a device), the only step that cannot be taken back.
//!
//! A message that fails at any step is undone in every store that already has it: its files
//! are removed (under either name) and their directories synced again, and the JSON-lines
//! files are cut back to where its line began (each is held, locked, until the batch is
//! decided, so no other batch's lines come after). A stream that stops part way keeps the
//! lines it wrote whole (their messages are kept everywhere: a `250`); the messages after
//! them are undone. So a `250` means every durable store has the message on disk and the
//! stream has its line; a `451` means no store kept any of it, and the client's retry makes
//! no second copy. The syncs stay one per store and batch: undoing costs I/O only on failure.
//!
//! What it does not do: decide names or contents (the stores do), or retry (a failed message
//! is `451 4.3.0` and the client retries). A crash (no reply at all) between two stores'
//! steps can leave a message in some stores only; its sender, told nothing, sends it again
//! (RFC 5321 §6.1: at least once).

use super::jsonl::Appended;
use super::target::{sync_dir, sync_files, Target};
use super::thread::Finished;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

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

/// Removes every staged file of a message, under either name; says what could not be removed
/// (a file that is already gone is fine).
pub(super) fn remove_all(staged: &[Staged], target: &Target) {
    for file in staged {
        if let Err(e) = file.remove() {
            target.report(&io::Error::new(
                e.kind(),
                format!("could not remove a refused message's file: {e}"),
            ));
        }
    }
}

/// Commits a batch to every store (see the module docs): `ok[i]` says whether message `i`
/// is still on its way to being kept; on return it says whether it was kept, by every store.
/// `whole_fs_sync`: the contents may be synced with one `syncfs` per store (no stream of a
/// large message is being written meanwhile).
pub(super) fn commit_batch(
    targets: &[Target],
    finished: &mut [Finished],
    ok: &mut [bool],
    whole_fs_sync: bool,
) {
    let mut batch = Batch {
        targets,
        finished,
        ok,
        resync: vec![false; targets.len()],
    };
    batch.prepare(whole_fs_sync);
    batch.rename();
    batch.sync_dirs();
    let mut appended: Vec<Appended<'_>> = Vec::new();
    for target in targets {
        let Target::Jsonl(jsonl) = target else {
            continue;
        };
        if jsonl.is_stream() {
            continue;
        }
        let (lines, members) = batch.lines();
        if members.is_empty() {
            continue;
        }
        match jsonl.append(&lines, members) {
            Ok(held) => appended.push(held),
            Err(members) => {
                // Nothing of the batch is in this file: none of its messages is kept.
                for (i, _) in members {
                    batch.ok[i] = false;
                }
                batch.undo(&mut appended);
            }
        }
    }
    if let Some(stream) = targets.iter().find_map(|t| match t {
        Target::Jsonl(jsonl) if jsonl.is_stream() => Some(jsonl),
        _ => None,
    }) {
        let (lines, members) = batch.lines();
        if !members.is_empty() {
            let emitted = stream.emit(&lines);
            // The lines written whole are out: those messages are kept. The rest are not.
            for &(i, end) in &members {
                if end > emitted {
                    batch.ok[i] = false;
                }
            }
            batch.undo(&mut appended);
        }
    }
    drop(appended);
    batch.resync_dirs();
}

/// A batch being committed.
struct Batch<'t, 'f> {
    /// The stores.
    targets: &'t [Target],
    /// The messages (their staged files are taken as they are committed or removed).
    finished: &'f mut [Finished],
    /// Per message: still on its way to being kept.
    ok: &'f mut [bool],
    /// Per store: files were removed from its directory after it was synced.
    resync: Vec<bool>,
}

impl Batch<'_, '_> {
    /// Phase 1: the contents of every staged file are made durable, one sync per store. A
    /// store whose sync fails refuses every message with files in it. Messages refused
    /// before or here have their temporary files removed in every store.
    fn prepare(&mut self, whole_fs_sync: bool) {
        for (index, target) in self.targets.iter().enumerate() {
            if target.final_dir().is_none() {
                continue;
            }
            let files: Vec<&File> = self
                .finished
                .iter()
                .zip(self.ok.iter())
                .filter(|(_, ok)| **ok)
                .filter_map(|(message, _)| message.files.get(index))
                .flat_map(|files| files.iter().map(|staged| &staged.file))
                .collect();
            if let Err(e) = sync_files(&files, whole_fs_sync) {
                target.report(&e);
                for (message, ok) in self.finished.iter().zip(self.ok.iter_mut()) {
                    if message.files.get(index).is_some_and(|f| !f.is_empty()) {
                        *ok = false;
                    }
                }
            }
        }
        for i in 0..self.finished.len() {
            if !self.ok[i] {
                self.remove_files(i, false);
            }
        }
    }

    /// Phase 2: every message's files are renamed into place, store by store. A message
    /// whose rename fails is removed from every store (renamed or not yet).
    fn rename(&mut self) {
        for i in 0..self.finished.len() {
            if !self.ok[i] {
                continue;
            }
            let renamed = self
                .targets
                .iter()
                .enumerate()
                .try_for_each(|(index, target)| {
                    let files = self.finished[i]
                        .files
                        .get(index)
                        .map_or(&[][..], |f| &f[..]);
                    files
                        .iter()
                        .try_for_each(Staged::rename)
                        .map_err(|e| target.report(&e))
                });
            if renamed.is_err() {
                self.ok[i] = false;
                self.remove_files(i, false);
            }
        }
    }

    /// Phase 2, continued: each file store's directory is synced once, so the new names
    /// survive a crash. A store whose sync fails cannot vouch for any of them: those
    /// messages are removed from every store.
    fn sync_dirs(&mut self) {
        for (index, target) in self.targets.iter().enumerate() {
            let Some(dir) = target.final_dir() else {
                continue;
            };
            if !self.holds_any(index) {
                continue;
            }
            if let Err(e) = sync_dir(dir) {
                target.report(&e);
                for i in 0..self.finished.len() {
                    if self.ok[i]
                        && self.finished[i]
                            .files
                            .get(index)
                            .is_some_and(|f| !f.is_empty())
                    {
                        self.ok[i] = false;
                        self.remove_files(i, true);
                    }
                }
            }
        }
    }

    /// Whether a message still on its way has files in store `index`.
    fn holds_any(&self, index: usize) -> bool {
        self.finished
            .iter()
            .zip(self.ok.iter())
            .any(|(message, ok)| *ok && message.files.get(index).is_some_and(|f| !f.is_empty()))
    }

    /// The JSON lines of the messages still on their way, and for each `(message, offset
    /// just past its line)`.
    fn lines(&self) -> (Vec<u8>, Vec<(usize, usize)>) {
        let mut lines = Vec::with_capacity(self.finished.len() * 400);
        let mut members = Vec::with_capacity(self.finished.len());
        for (i, message) in self.finished.iter().enumerate() {
            if self.ok[i] {
                lines.extend_from_slice(message.record.as_deref().unwrap_or_default());
                members.push((i, lines.len()));
            }
        }
        (lines, members)
    }

    /// Takes back every message no longer on its way from the stores that committed it:
    /// its files (every store's directory was synced by now: synced again at the end) and its
    /// lines in the JSON-lines files held.
    fn undo(&mut self, appended: &mut [Appended<'_>]) {
        for i in 0..self.finished.len() {
            if !self.ok[i] {
                self.remove_files(i, true);
            }
        }
        for held in appended {
            held.take_back(self.ok);
        }
    }

    /// Removes message `i`'s files from every store, under either name (`renamed`: they may
    /// be in synced directories, which are synced again at the end).
    fn remove_files(&mut self, i: usize, renamed: bool) {
        for (index, target) in self.targets.iter().enumerate() {
            let Some(files) = self.finished[i].files.get_mut(index) else {
                continue;
            };
            if files.is_empty() {
                continue;
            }
            remove_all(files, target);
            files.clear();
            self.resync[index] |= renamed;
        }
    }

    /// After an undo: the directories that lost names are synced, so a removal survives a
    /// crash as the names it removed would have.
    fn resync_dirs(&self) {
        for (target, resync) in self.targets.iter().zip(&self.resync) {
            if let (Some(dir), true) = (target.final_dir(), resync) {
                if let Err(e) = sync_dir(dir) {
                    target.report(&e);
                }
            }
        }
    }
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
