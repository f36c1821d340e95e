//! The commit sequence shared by the one-file-per-message stores (Maildir and `.eml`):
//! write under temporary names, sync the contents, rename into place, sync the directory.
//!
//! What it does: [`Staged`] is one file being written under a temporary name as the content
//! streams in (chunk by chunk, with writeback started early so the final sync has little
//! left to wait for). [`commit_staged`] takes a batch of messages whose files are all written
//! and makes them durable together (group commit): one [`sync_files`] for every staged file's
//! contents, the renames (each message's files in the order staged: its last file is its
//! commit point), and one `fsync` of the directory for the new names. A message counts as
//! stored only after all of that. Any failure removes what that message wrote (or every
//! message's files, for a failed sync), so a final name only ever points at complete, durable
//! content, and a client that was not told `250` finds nothing half-kept.
//!
//! What it does not do: decide names or contents (the stores do), or retry (a failed message
//! is `451 4.3.0` and the client retries).

use super::{sync_dir, sync_files};
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
                staged.remove();
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

    /// Removes the file, under either name (nothing is left of an abandoned message).
    pub(super) fn remove(&self) {
        let _ = fs::remove_file(&self.temporary);
        let _ = fs::remove_file(&self.destination);
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

/// Removes every staged file of a message, under either name.
pub(super) fn remove_all(staged: &[Staged]) {
    staged.iter().for_each(Staged::remove);
}

/// Commits a batch: `staged` holds, for each message `i` still `ok`, its files, all written;
/// they are synced together (one `syncfs` when `whole_fs_sync`, else one `fdatasync` each),
/// renamed into place, and `dir` (where the final names are) is synced once. Clears `ok[i]`
/// for each message that is not durably stored (its files removed); `report` is told each
/// failure.
pub(super) fn commit_staged(
    staged: Vec<(usize, Vec<Staged>)>,
    ok: &mut [bool],
    dir: &Path,
    whole_fs_sync: bool,
    report: impl Fn(&io::Error),
) {
    if staged.is_empty() {
        return;
    }
    let synced = {
        let files: Vec<&File> = staged
            .iter()
            .flat_map(|(_, files)| files.iter().map(|s| &s.file))
            .collect();
        sync_files(&files, whole_fs_sync)
    };
    if let Err(e) = synced {
        report(&e);
        for (i, files) in &staged {
            remove_all(files);
            ok[*i] = false;
        }
        return;
    }
    let mut renamed: Vec<(usize, Vec<Staged>)> = Vec::with_capacity(staged.len());
    for (i, files) in staged {
        let moved = files
            .iter()
            .try_for_each(|s| fs::rename(&s.temporary, &s.destination));
        match moved {
            Ok(()) => renamed.push((i, files)),
            Err(e) => {
                report(&e);
                remove_all(&files);
                ok[i] = false;
            }
        }
    }
    if renamed.is_empty() {
        return;
    }
    if let Err(e) = sync_dir(dir) {
        // The names may not survive a crash: take none of them (the clients retry).
        report(&e);
        for (i, files) in &renamed {
            remove_all(files);
            ok[*i] = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn stage(dir: &Path, id: &str, suffix: &str, parts: &[&[u8]]) -> Staged {
        Staged::write(
            dir.join(format!(".{id}.{suffix}")),
            dir.join(format!("{id}.{suffix}")),
            parts,
        )
        .unwrap()
    }

    #[test]
    fn a_message_that_fails_is_refused_alone_and_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("fastsmtpd-commit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // job1 failed while staging (its caller removed its files): it is not in the batch.
        let mut ok = [true, false, true];
        let mut staged = Vec::new();
        for i in [0, 2] {
            let id = format!("job{i}");
            let mut body = stage(&dir, &id, "b", &[b"head "]);
            for piece in format!("message {i}\r\n").as_bytes().chunks(3) {
                body.append(piece).unwrap();
            }
            staged.push((i, vec![stage(&dir, &id, "a", &[b"side"]), body]));
        }
        let failures = std::cell::Cell::new(0);
        commit_staged(staged, &mut ok, &dir, false, |_| {
            failures.set(failures.get() + 1)
        });
        assert_eq!(ok, [true, false, true]);
        assert_eq!(failures.get(), 0);
        assert_eq!(names(&dir), ["job0.a", "job0.b", "job2.a", "job2.b"]);
        assert_eq!(fs::read(dir.join("job2.b")).unwrap(), b"head message 2\r\n");
        // A directory that cannot be synced: no message counts as stored, nothing stays.
        let mut ok = [true; 3];
        let staged = (0..3)
            .map(|i| (i, vec![stage(&dir, &format!("job{i}"), "c", &[b"x"])]))
            .collect();
        commit_staged(staged, &mut ok, &dir.join("missing"), true, |_| {});
        assert_eq!(ok, [false; 3]);
        assert_eq!(names(&dir), ["job0.a", "job0.b", "job2.a", "job2.b"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
