//! `jsonl:FILE`: one JSON line per accepted message (time, client, HELO, envelope, size,
//! SHA-256 of the body, Message-ID, Subject). With discard it is a verifiable record of
//! everything accepted, at full speed.
//!
//! What it does: append a whole batch's lines (their size, hash and header fields computed
//! as the content streamed past: the content itself is never held) with one write and make them durable with one
//! `fdatasync` (group commit). Storage threads share the file behind a lock, so lines never
//! interleave. If the write or the sync fails, the file is cut back to where the batch began:
//! no torn line stays behind, and no message of the batch counts as stored.
//!
//! It follows the path, not the file it first opened: a line is only ever confirmed once it
//! is in the file that `FILE` names. Before each batch, one `stat` of the path is compared
//! (device and inode) with the open file. A file that was deleted or renamed away (log
//! rotation by rename) is closed without another byte, and `FILE` is opened again, created if
//! missing; its directory is then synced, so the file's name is durable before any line in
//! it is confirmed. When no file can be opened (its directory is gone), the batch is refused
//! (`451 4.3.0`) and the next batch tries again. After the `fdatasync` the open file's link
//! count is checked too, so a file deleted while its batch was being written does not
//! confirm that batch. [`JsonLines::reopen`] (SIGHUP) opens the path again at once, without
//! waiting for a batch, as log rotation tools expect.
//!
//! What it does not do: rotate or compress the file (rename it away, then send SIGHUP or
//! simply let the next batch start the new file), or create a missing directory after start.

use super::sync_dir;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A JSON-lines target.
#[derive(Debug)]
pub struct JsonLines {
    /// The file's path, as given.
    path: PathBuf,
    /// The directory holding it, synced after each open so a new file's name is durable.
    dir: PathBuf,
    /// The open file; `None` after a failed (re)open, until a batch or a reopen succeeds.
    file: Mutex<Option<File>>,
}

impl JsonLines {
    /// Opens `path` for appending, creating it if needed (its directory must exist).
    pub fn open(path: &Path) -> io::Result<JsonLines> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file = open_durably(path, &dir)?;
        Ok(JsonLines {
            path: path.to_path_buf(),
            dir,
            file: Mutex::new(Some(file)),
        })
    }

    /// Closes the file and opens the path again now (creating the file if missing), for log
    /// rotation (SIGHUP). On failure the old file stays closed all the same, and each batch
    /// tries to open the path again (answering `451 4.3.0` until that works).
    pub fn reopen(&self) -> io::Result<()> {
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // Dropped first: whatever happens next, the old file gets no more lines.
        *slot = None;
        let file = open_durably(&self.path, &self.dir)
            .map_err(|e| io::Error::new(e.kind(), format!("jsonl {}: {e}", self.path.display())))?;
        *slot = Some(file);
        Ok(())
    }

    /// Stores a batch: `lines` holds the record line of each message still `ok`. Clears every
    /// `ok[i]` if the lines are not durable.
    pub(super) fn commit(&self, lines: &[u8], ok: &mut [bool]) {
        if lines.is_empty() {
            return;
        }
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.append_durably(&mut slot, lines) {
            eprintln!("fastsmtpd: jsonl {}: {e}", self.path.display());
            ok.iter_mut().for_each(|ok| *ok = false);
        }
    }

    /// Appends `lines` to the file the path names now (reopening it if that is no longer the
    /// open file) and makes them durable; on failure nothing of `lines` stays in the file.
    fn append_durably(&self, slot: &mut Option<File>, lines: &[u8]) -> io::Result<()> {
        // One stat of the path and one fstat of the open file per batch (not per message).
        // `metadata` follows symlinks, as opening the path does.
        let at_path = fs::metadata(&self.path).ok();
        let open = slot.as_ref().map(File::metadata).transpose()?;
        let start = match (open, at_path) {
            (Some(open), Some(at_path)) if same_file(&open, &at_path) => open.len(),
            (open, _) => {
                if open.is_some() {
                    eprintln!(
                        "fastsmtpd: jsonl {}: the file was renamed or deleted; opening the path again",
                        self.path.display()
                    );
                }
                // Never another byte to the old inode: if the open fails, no file is open.
                *slot = None;
                let file = open_durably(&self.path, &self.dir)?;
                let len = file.metadata()?.len();
                *slot = Some(file);
                len
            }
        };
        let Some(file) = slot.as_ref() else {
            return Err(io::Error::other("no file open")); // set just above
        };
        let written = (&*file).write_all(lines).and_then(|()| file.sync_data());
        if written.is_err() {
            // Cut a torn batch off, so every line in the file stays a whole record.
            let _ = file.set_len(start);
            return written;
        }
        // Deleted between the stat and the sync: the lines went nowhere, so no `250`. (A
        // file renamed meanwhile still holds them durably under its new name: that is fine.)
        if file.metadata()?.nlink() == 0 {
            *slot = None;
            return Err(io::Error::other(
                "the file was deleted while the batch was written",
            ));
        }
        Ok(())
    }
}

/// Whether two `stat` results describe the same file.
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Opens `path` for appending (creating it if missing), then syncs `dir`.
fn open_durably(path: &Path, dir: &Path) -> io::Result<File> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    // Whoever created the file (this store, or a rotation tool's `create`), its name must
    // survive a crash before any line in it is confirmed. Opens are rare (start, rotation,
    // SIGHUP), so the directory is synced on every one rather than guessing who created it.
    sync_dir(dir)?;
    Ok(file)
}
