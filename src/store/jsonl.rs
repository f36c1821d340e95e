//! `jsonl:FILE` and `jsonl:-`: one JSON line per accepted message (time, client, HELO,
//! envelope, size, SHA-256 of the content, Message-ID, Subject). With discard it is a
//! verifiable record of everything accepted, at full speed.
//!
//! What it does: append a whole batch's lines (their size, hash and header fields computed
//! as the content streamed past: the content itself is never held) with one write. Storage
//! threads share the output behind a lock, so lines never interleave.
//!
//! Two kinds of output, told apart when the output is opened:
//! * A regular file is durable: the batch is made durable with one `fdatasync` (group
//!   commit). If the write or the sync fails, the file is cut back to where the batch began:
//!   no torn line stays behind, and no message of the batch counts as stored.
//! * A stream is not: standard output (`jsonl:-`), a FIFO, a character device (a terminal,
//!   `/dev/null`), for piping records into `jq` or a test harness. Nothing can make a pipe's
//!   bytes durable (`fdatasync` fails on it with `EINVAL`), so none is asked for: a line
//!   counts as stored once it was written to the stream, and the start line says the store
//!   is not durable. What was written cannot be taken back, so a stream never answers `451`
//!   for a line it emitted: when a write fails part way (the reader went away), the messages
//!   whose lines were written whole are confirmed, the others refused. The storage threads
//!   commit a stream after every other store ([`JsonLines::is_stream`]), so no later store
//!   can refuse a message whose line is already out; and at most one stream is allowed.
//!   A full pipe holds the writer back (the `250`s wait for the reader).
//!
//! A FIFO is opened without waiting for a reader: with none yet, the output stays closed
//! and each batch tries again, its messages answered `451 4.3.0` (nothing was emitted, so
//! the client's retry duplicates nothing). After a failed write the FIFO is closed (so no
//! later reader sees the torn line) and opened again the same way.
//!
//! A path is followed, not the file it first opened: a line is only ever confirmed once it
//! is in the file that `FILE` names. Before each batch, one `stat` of the path is compared
//! (device and inode) with the open file. A file that was deleted or renamed away (log
//! rotation by rename) is closed without another byte, and `FILE` is opened again, created if
//! missing; its directory is then synced, so the file's name is durable before any line in
//! it is confirmed. When no file can be opened (its directory is gone), the batch is refused
//! (`451 4.3.0`) and the next batch tries again. After the `fdatasync` the open file's link
//! count is checked too, so a file deleted while its batch was being written does not
//! confirm that batch. [`JsonLines::reopen`] (SIGHUP) opens the path again at once, without
//! waiting for a batch, as log rotation tools expect. Missing parent directories are created
//! at start, as `maildir:` and `eml:` create theirs.
//!
//! What it does not do: rotate or compress the file (rename it away, then send SIGHUP or
//! simply let the next batch start the new file), reopen standard output, or create a
//! missing directory after start.

use super::{create_dir_all_durably, parent_dir, sync_dir};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where a JSON-lines store writes.
#[derive(Debug)]
enum Place {
    /// A path (a regular file, a FIFO or a device), followed across renames.
    Path {
        /// The path, as given.
        path: PathBuf,
        /// The directory holding it, synced after each open of a regular file so a new
        /// file's name is durable.
        dir: PathBuf,
    },
    /// The standard output the server was started with (`jsonl:-`).
    Stdout,
}

/// The open output.
#[derive(Debug)]
struct Output {
    /// The descriptor written to.
    file: File,
    /// A regular file: synced, and cut back after a failed batch. Otherwise a stream.
    durable: bool,
    /// A write to standard output failed (its reader is gone): every later batch is
    /// refused without another try or another word.
    broken: bool,
}

/// A JSON-lines target.
#[derive(Debug)]
pub struct JsonLines {
    /// Where the lines go.
    place: Place,
    /// The output was a stream when the store was opened: not durable, committed last.
    stream: bool,
    /// The open output; `None` after a failed (re)open, until a batch or a reopen succeeds.
    file: Mutex<Option<Output>>,
}

impl JsonLines {
    /// Opens `path` for appending, creating it (and its missing parent directories) if
    /// needed. A FIFO without a reader yet is not an error: the store starts closed (see
    /// the module docs) and says so on stderr.
    pub fn open(path: &Path) -> io::Result<JsonLines> {
        let dir = parent_dir(path).to_path_buf();
        create_dir_all_durably(&dir)?;
        let (output, stream) = match open_path(path, &dir) {
            Ok(output) => {
                let stream = !output.durable;
                (Some(output), stream)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                eprintln!(
                    "fastsmtpd: jsonl:{}: a FIFO with no reader yet: messages get 451 4.3.0 until a reader opens it",
                    path.display()
                );
                (None, true)
            }
            Err(e) => return Err(e),
        };
        Ok(JsonLines {
            place: Place::Path {
                path: path.to_path_buf(),
                dir,
            },
            stream,
            file: Mutex::new(output),
        })
    }

    /// Writes to the standard output the server was started with (`jsonl:-`): a stream,
    /// whatever it is connected to.
    pub fn stdout() -> io::Result<JsonLines> {
        use std::os::fd::AsFd;
        let file = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        Ok(JsonLines {
            place: Place::Stdout,
            stream: true,
            file: Mutex::new(Some(Output {
                file,
                durable: false,
                broken: false,
            })),
        })
    }

    /// Whether the output is a stream (standard output, a FIFO, a device): not durable,
    /// and committed after every other store.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Closes the file and opens the path again now (creating the file if missing), for log
    /// rotation (SIGHUP). On failure the old file stays closed all the same, and each batch
    /// tries to open the path again (answering `451 4.3.0` until that works). Standard
    /// output is never reopened: `Ok(false)`.
    pub fn reopen(&self) -> io::Result<bool> {
        let Place::Path { path, dir } = &self.place else {
            return Ok(false);
        };
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // Dropped first: whatever happens next, the old file gets no more lines.
        *slot = None;
        let output = open_path(path, dir)
            .map_err(|e| io::Error::new(e.kind(), format!("jsonl {}: {e}", path.display())))?;
        *slot = Some(output);
        Ok(true)
    }

    /// Stores a batch: `lines` holds the record lines of the messages `members` names, in
    /// order, each as `(message index, offset just past its line)`. Clears `ok[i]` for each
    /// member whose line is not stored: all of them if the lines are not durable in a
    /// regular file; on a stream, those not written whole.
    pub(super) fn commit(&self, lines: &[u8], members: &[(usize, usize)], ok: &mut [bool]) {
        if lines.is_empty() {
            return;
        }
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let written = match &self.place {
            Place::Path { path, dir } => self.append_at_path(path, dir, &mut slot, lines),
            Place::Stdout => append_to_stdout(&mut slot, lines),
        };
        if let Err((stored, e)) = written {
            if let Some(e) = e {
                eprintln!("fastsmtpd: jsonl {}: {e}", self.name());
            }
            for &(i, end) in members {
                if end > stored {
                    ok[i] = false;
                }
            }
        }
    }

    /// The store as the user named it, for messages.
    fn name(&self) -> String {
        match &self.place {
            Place::Path { path, .. } => path.display().to_string(),
            Place::Stdout => "-".to_string(),
        }
    }

    /// Appends `lines` to the file the path names now (reopening it if that is no longer the
    /// open file). A regular file is made durable, and on failure nothing of `lines` stays
    /// in it; a stream keeps what was written. The error says how many bytes of `lines` are
    /// stored (from the start), and what went wrong (`None`: said already).
    fn append_at_path(
        &self,
        path: &Path,
        dir: &Path,
        slot: &mut Option<Output>,
        lines: &[u8],
    ) -> Result<(), (usize, Option<io::Error>)> {
        let fail = |e: io::Error| (0, Some(e));
        // One stat of the path and one fstat of the open file per batch (not per message).
        // `metadata` follows symlinks, as opening the path does.
        let at_path = fs::metadata(path).ok();
        let open = match slot.as_ref().map(|o| o.file.metadata()).transpose() {
            Ok(open) => open,
            Err(e) => return Err(fail(e)),
        };
        let start = match (open, at_path) {
            (Some(open), Some(at_path)) if same_file(&open, &at_path) => open.len(),
            (open, _) => {
                if open.is_some() {
                    eprintln!(
                        "fastsmtpd: jsonl {}: the file was renamed or deleted; opening the path again",
                        path.display()
                    );
                }
                // Never another byte to the old inode: if the open fails, no file is open.
                *slot = None;
                let output = open_path(path, dir).map_err(fail)?;
                let len = output.file.metadata().map_err(fail)?.len();
                *slot = Some(output);
                len
            }
        };
        let Some(output) = slot.as_ref() else {
            return Err(fail(io::Error::other("no file open"))); // set just above
        };
        if !output.durable {
            let (written, result) = write_counted(&output.file, lines);
            if let Err(e) = result {
                // Closed, so a FIFO's next reader never sees the torn line; the next batch
                // opens the path again.
                *slot = None;
                return Err((written, Some(e)));
            }
            return Ok(());
        }
        let file = &output.file;
        let written = (&*file).write_all(lines).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Cut a torn batch off, so every line in the file stays a whole record.
            let _ = file.set_len(start);
            return Err(fail(e));
        }
        // Deleted between the stat and the sync: the lines went nowhere, so no `250`. (A
        // file renamed meanwhile still holds them durably under its new name: that is fine.)
        match file.metadata() {
            Ok(meta) if meta.nlink() == 0 => {
                *slot = None;
                Err(fail(io::Error::other(
                    "the file was deleted while the batch was written",
                )))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(fail(e)),
        }
    }
}

/// Writes `lines` to standard output (under its lock, so no line of the server's own can
/// land inside one). After a failure, later batches are refused without a word.
fn append_to_stdout(
    slot: &mut Option<Output>,
    lines: &[u8],
) -> Result<(), (usize, Option<io::Error>)> {
    let Some(output) = slot.as_mut() else {
        return Err((0, None));
    };
    if output.broken {
        return Err((0, None));
    }
    let _stdout = io::stdout().lock();
    let (written, result) = write_counted(&output.file, lines);
    result.map_err(|e| {
        output.broken = true;
        let said = io::Error::new(
            e.kind(),
            format!("{e}: standard output is closed, every message gets 451 4.3.0 from now on"),
        );
        (written, Some(said))
    })
}

/// Writes all of `bytes` to `file` (a stream), one `write` after another; returns how many
/// were written, and the error that stopped it.
fn write_counted(mut file: &File, bytes: &[u8]) -> (usize, io::Result<()>) {
    let mut written = 0;
    while written < bytes.len() {
        match file.write(&bytes[written..]) {
            Ok(0) => return (written, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(()))
}

/// Whether two `stat` results describe the same file.
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Opens `path` for appending. A FIFO is opened without waiting for a reader (`ENXIO` when
/// there is none), then made blocking again, so a full pipe holds the writer back. Anything
/// else is created if missing; a regular file's directory `dir` is then synced.
fn open_path(path: &Path, dir: &Path) -> io::Result<Output> {
    let fifo = fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    if fifo {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        set_blocking(&file)?;
        return Ok(Output {
            file,
            durable: false,
            broken: false,
        });
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let durable = file.metadata()?.file_type().is_file();
    if durable {
        // Whoever created the file (this store, or a rotation tool's `create`), its name must
        // survive a crash before any line in it is confirmed. Opens are rare (start,
        // rotation, SIGHUP), so the directory is synced on every one rather than guessing
        // who created it.
        sync_dir(dir)?;
    }
    Ok(Output {
        file,
        durable,
        broken: false,
    })
}

/// Clears `O_NONBLOCK` on `file`.
#[allow(unsafe_code)]
fn set_blocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl with F_GETFL/F_SETFL takes a descriptor and an int and touches no memory
    // of ours; `file` is open for the duration of both calls.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
