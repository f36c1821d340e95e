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
//!   A full pipe holds the writer back (the `250`s wait for the reader), but not past the
//!   shutdown: a pipe is written without blocking (a FIFO is opened `O_NONBLOCK`, a pipe on
//!   standard output is opened again, `O_NONBLOCK`, through `/proc/self/fd/1`, so the shell's
//!   descriptor is left as it was), waiting for room with `poll`; once the shutdown grace
//!   period is over ([`JsonLines::give_up_at`]) a write that finds no room gives up, and the
//!   messages whose lines were not written whole are refused (`451 4.3.0`), so a reader that
//!   never reads cannot keep the server from exiting.
//!
//! A FIFO is opened without waiting for a reader: with none yet, the output stays closed
//! and each batch tries again, its messages answered `451 4.3.0` (nothing was emitted, so
//! the client's retry duplicates nothing). After a failed write the FIFO is closed and
//! opened again the same way.
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

use super::durable::{create_dir_all_durably, parent_dir, sync_dir};
use crate::lock::lock;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest single wait for room in a stream, so a give-up time set meanwhile (the
/// shutdown began) is noticed soon.
const ROOM_WAIT_SLICE: Duration = Duration::from_millis(50);

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
    /// When a write to a stream that finds no room gives up (the end of the shutdown grace
    /// period); `None` while the server runs.
    give_up: Mutex<Option<Instant>>,
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
                crate::warn_line!(
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
            give_up: Mutex::new(None),
        })
    }

    /// Writes to the standard output the server was started with (`jsonl:-`): a stream,
    /// whatever it is connected to.
    pub fn stdout() -> io::Result<JsonLines> {
        use std::os::fd::AsFd;
        let stdout = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        // A pipe is opened again as a description of our own, non-blocking (see the module
        // docs); setting `O_NONBLOCK` on the inherited one would change the shell's too.
        let is_pipe = stdout.metadata().is_ok_and(|m| m.file_type().is_fifo());
        let own = is_pipe
            .then(|| {
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open("/proc/self/fd/1")
                    .ok()
            })
            .flatten();
        Ok(JsonLines {
            place: Place::Stdout,
            stream: true,
            file: Mutex::new(Some(Output {
                file: own.unwrap_or(stdout),
                durable: false,
                broken: false,
            })),
            give_up: Mutex::new(None),
        })
    }

    /// From `at` on, a write to a stream that finds no room gives up instead of waiting for
    /// the reader (the shutdown grace period ends then). The first time set wins.
    pub fn give_up_at(&self, at: Instant) {
        lock(&self.give_up).get_or_insert(at);
    }

    /// When a stream write gives up, if set.
    fn give_up(&self) -> Option<Instant> {
        *lock(&self.give_up)
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
        let mut slot = lock(&self.file);
        // Dropped first: whatever happens next, the old file gets no more lines.
        *slot = None;
        let output = open_path(path, dir)
            .map_err(|e| io::Error::new(e.kind(), format!("jsonl {}: {e}", path.display())))?;
        *slot = Some(output);
        Ok(true)
    }

    /// Appends a batch to a regular file (not a stream) and makes it durable: `lines` holds
    /// the record lines of the messages `members` names, in order, each as `(message index,
    /// offset just past its line)`. On success the file stays locked until the returned
    /// [`Appended`] is dropped, so the caller can still take the lines back (a later store
    /// refused some of the messages) without another batch's lines in the way. On failure
    /// nothing of `lines` is in the file (cut back, and said on stderr), and `members` comes
    /// back.
    pub(super) fn append<'a>(
        &'a self,
        lines: &[u8],
        members: Vec<(usize, usize)>,
    ) -> Result<Appended<'a>, Vec<(usize, usize)>> {
        let mut slot = lock(&self.file);
        let Place::Path { path, dir } = &self.place else {
            return Err(members); // standard output is a stream: never here
        };
        match append_durably(path, dir, &mut slot, lines) {
            Ok(start) => Ok(Appended {
                store: self,
                slot,
                start,
                members,
            }),
            Err(e) => {
                crate::warn_line!("fastsmtpd: jsonl {}: {e}", self.name());
                Err(members)
            }
        }
    }

    /// Writes a batch's lines to a stream (after every durable store has kept their
    /// messages). Returns how many bytes of `lines` were written (all, unless the stream
    /// failed part way: the reader went away, or none is there); the lines written whole are
    /// out, and their messages kept.
    pub(super) fn emit(&self, lines: &[u8]) -> usize {
        let mut slot = lock(&self.file);
        let written = match &self.place {
            Place::Path { path, dir } => emit_at_path(path, dir, &mut slot, lines, self),
            Place::Stdout => append_to_stdout(&mut slot, lines, self),
        };
        match written {
            Ok(()) => lines.len(),
            Err((written, e)) => {
                if let Some(e) = e {
                    crate::warn_line!("fastsmtpd: jsonl {}: {e}", self.name());
                }
                written
            }
        }
    }

    /// Says what went wrong, naming the store; the client sees only `451 4.3.0`.
    pub(super) fn report(&self, error: &io::Error) {
        crate::warn_line!("fastsmtpd: jsonl {}: {error}", self.name());
    }

    /// The store as the user named it, for messages.
    fn name(&self) -> String {
        match &self.place {
            Place::Path { path, .. } => path.display().to_string(),
            Place::Stdout => "-".to_string(),
        }
    }
}

/// A batch's lines appended to a regular JSON-lines file and synced, the file still locked:
/// [`Appended::take_back`] can cut the lines of refused messages off again until it is
/// dropped.
#[derive(Debug)]
pub(super) struct Appended<'a> {
    /// The store (for messages).
    store: &'a JsonLines,
    /// The open file, locked.
    slot: MutexGuard<'a, Option<Output>>,
    /// The file's length before the batch.
    start: u64,
    /// `(message index, offset just past its line)` of the lines still in the file.
    members: Vec<(usize, usize)>,
}

impl Appended<'_> {
    /// Cuts the file back to where the line of the first message no longer `ok` began (a
    /// later store refused it), and syncs it. Messages are refused from some point of the
    /// batch on (a stream stops part way) or all at once, so what stays are the lines of the
    /// messages still kept.
    pub(super) fn take_back(&mut self, ok: &[bool]) {
        let Some(first) = self.members.iter().position(|&(i, _)| !ok[i]) else {
            return;
        };
        debug_assert!(self.members[first..].iter().all(|&(i, _)| !ok[i]));
        let keep = if first == 0 {
            0
        } else {
            self.members[first - 1].1
        };
        self.members.truncate(first);
        let Some(output) = self.slot.as_ref() else {
            return;
        };
        let cut = output
            .file
            .set_len(self.start + keep as u64)
            .and_then(|()| output.file.sync_data());
        if let Err(e) = cut {
            crate::warn_line!(
                "fastsmtpd: jsonl {}: could not take back the lines of refused messages: {e}",
                self.store.name()
            );
        }
    }
}

/// Appends `lines` to the regular file the path names now (reopening it if that is no
/// longer the open file) and makes them durable; returns the file's length before them. On
/// failure nothing of `lines` stays in it.
fn append_durably(
    path: &Path,
    dir: &Path,
    slot: &mut Option<Output>,
    lines: &[u8],
) -> io::Result<u64> {
    let start = open_current(path, dir, slot)?;
    let Some(output) = slot.as_ref() else {
        return Err(io::Error::other("no file open")); // opened just above
    };
    if !output.durable {
        // The path named a regular file at start and names a stream now: a line written to
        // it could not be taken back if another store refused its message.
        *slot = None;
        return Err(io::Error::other(
            "the path no longer names a regular file; refusing to write to a stream here",
        ));
    }
    let file = &output.file;
    let written = (&*file).write_all(lines).and_then(|()| file.sync_data());
    if let Err(e) = written {
        // Cut a torn batch off, so every line in the file stays a whole record.
        let _ = file.set_len(start);
        return Err(e);
    }
    // Deleted between the stat and the sync: the lines went nowhere, so no `250`. (A file
    // renamed meanwhile still holds them durably under its new name: that is fine.)
    match file.metadata() {
        Ok(meta) if meta.nlink() == 0 => {
            *slot = None;
            Err(io::Error::other(
                "the file was deleted while the batch was written",
            ))
        }
        Ok(_) => Ok(start),
        Err(e) => Err(e),
    }
}

/// Writes `lines` to the stream the path names (opening it again after a failure, or when
/// the path now names another file). The error says how many bytes of `lines` were written
/// (from the start), and what went wrong (`None`: said already).
fn emit_at_path(
    path: &Path,
    dir: &Path,
    slot: &mut Option<Output>,
    lines: &[u8],
    store: &JsonLines,
) -> Result<(), (usize, Option<io::Error>)> {
    open_current(path, dir, slot).map_err(|e| (0, Some(e)))?;
    let Some(output) = slot.as_ref() else {
        return Err((0, Some(io::Error::other("no file open")))); // opened just above
    };
    let (written, result) = write_counted(&output.file, lines, store);
    if let Err(e) = result {
        // Closed; the next batch opens the path again.
        *slot = None;
        return Err((written, Some(e)));
    }
    Ok(())
}

/// Makes sure `slot` holds the file `path` names now: one `stat` of the path and one `fstat`
/// of the open file per batch (not per message); a file renamed away or deleted is closed
/// without another byte and the path opened again (created if missing). Returns the open
/// file's length.
fn open_current(path: &Path, dir: &Path, slot: &mut Option<Output>) -> io::Result<u64> {
    // `metadata` follows symlinks, as opening the path does.
    let at_path = fs::metadata(path).ok();
    let open = slot.as_ref().map(|o| o.file.metadata()).transpose()?;
    match (open, at_path) {
        (Some(open), Some(at_path)) if same_file(&open, &at_path) => Ok(open.len()),
        (open, _) => {
            if open.is_some() {
                crate::warn_line!(
                    "fastsmtpd: jsonl {}: the file was renamed or deleted; opening the path again",
                    path.display()
                );
            }
            // Never another byte to the old inode: if the open fails, no file is open.
            *slot = None;
            let output = open_path(path, dir)?;
            let len = output.file.metadata()?.len();
            *slot = Some(output);
            Ok(len)
        }
    }
}

/// Writes `lines` to standard output (under its lock, so no line of the server's own can
/// land inside one). After a failure, later batches are refused without a word.
fn append_to_stdout(
    slot: &mut Option<Output>,
    lines: &[u8],
    store: &JsonLines,
) -> Result<(), (usize, Option<io::Error>)> {
    let Some(output) = slot.as_mut() else {
        return Err((0, None));
    };
    if output.broken {
        return Err((0, None));
    }
    let _stdout = io::stdout().lock();
    let (written, result) = write_counted(&output.file, lines, store);
    result.map_err(|e| {
        output.broken = true;
        if e.kind() == io::ErrorKind::TimedOut {
            // Given up at the end of the shutdown grace period: said as it is.
            return (written, Some(e));
        }
        let said = io::Error::new(
            e.kind(),
            format!("{e}: standard output is closed, every message gets 451 4.3.0 from now on"),
        );
        (written, Some(said))
    })
}

/// Writes all of `bytes` to `file` (a stream), one `write` after another; returns how many
/// were written, and the error that stopped it. A non-blocking stream without room is
/// waited for (`poll`), until `store`'s give-up time, if one is set: then it gives up.
fn write_counted(mut file: &File, bytes: &[u8], store: &JsonLines) -> (usize, io::Result<()>) {
    let mut written = 0;
    while written < bytes.len() {
        match file.write(&bytes[written..]) {
            Ok(0) => return (written, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = wait_for_room(file, store) {
                    return (written, Err(e));
                }
            }
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(()))
}

/// Waits (at most [`ROOM_WAIT_SLICE`]) until `file` takes more bytes; an error once `store`'s
/// give-up time has passed with no room.
#[allow(unsafe_code)]
fn wait_for_room(file: &File, store: &JsonLines) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let wait = match store.give_up() {
        Some(at) => at
            .saturating_duration_since(Instant::now())
            .min(ROOM_WAIT_SLICE),
        None => ROOM_WAIT_SLICE,
    };
    let mut poll = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call; `file` is open meanwhile.
    let ready = unsafe { libc::poll(&mut poll, 1, wait.as_millis() as libc::c_int) };
    if ready < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(())
        } else {
            Err(e)
        };
    }
    if ready == 0 && store.give_up().is_some_and(|at| Instant::now() >= at) {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the reader took nothing within the shutdown grace period: gave up, the messages whose lines were not written get 451 4.3.0",
        ));
    }
    Ok(())
}

/// Whether two `stat` results describe the same file.
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Opens `path` for appending. A FIFO is opened without waiting for a reader (`ENXIO` when
/// there is none), and stays non-blocking: a full pipe holds the writer back in `poll`,
/// where the shutdown can end the wait. Anything else is created if missing; a regular
/// file's directory `dir` is then synced.
fn open_path(path: &Path, dir: &Path) -> io::Result<Output> {
    let fifo = fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    if fifo {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
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
