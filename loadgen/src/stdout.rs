//! Standard output that a closed pipe does not crash: `smtp-loadgen report x.hlog | head -1`
//! closes the pipe after one line, and `print!` would then panic ("failed printing to
//! stdout: Broken pipe"). Without unsafe code the SIGPIPE default cannot be restored, so
//! every write goes through [`say`]: once the reader has gone, further output is dropped and
//! the command carries on to its normal end and exit status (files are still written).
//! Any other write error (a full disk, `>/dev/full`) also stops the output, but is kept
//! ([`write_error`]): the command says so at its end and does not exit 0, since the summary
//! it was run for is lost.
//!
//! What it does not do: standard error (the progress line and errors).

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Set once a write failed (the reader gone, or another error).
static CLOSED: AtomicBool = AtomicBool::new(false);
/// The first write error that was not a closed pipe.
static ERROR: OnceLock<String> = OnceLock::new();

/// Writes `text` to standard output and flushes; a write error stops all further output
/// (a broken pipe quietly; any other is kept for [`write_error`]).
pub fn say(text: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let _ = ERROR.set(e.to_string());
        }
    }
}

/// The first error writing standard output other than a closed pipe, if any.
pub fn write_error() -> Option<&'static str> {
    ERROR.get().map(String::as_str)
}

/// [`say`] with a line end.
pub fn say_line(text: &str) {
    say(&format!("{text}\n"));
}
