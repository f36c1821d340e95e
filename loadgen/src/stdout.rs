//! Standard output that a closed pipe does not crash: `smtp-loadgen report x.hlog | head -1`
//! closes the pipe after one line, and `print!` would then panic ("failed printing to
//! stdout: Broken pipe"). Without unsafe code the SIGPIPE default cannot be restored, so
//! every write goes through [`say`]: once the reader has gone, further output is dropped and
//! the command carries on to its normal end and exit status (files are still written).
//!
//! What it does not do: standard error (the progress line and errors).

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found the reader gone.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to standard output and flushes; a broken pipe (or any write error) stops
/// all further output quietly.
pub fn say(text: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// [`say`] with a line end.
pub fn say_line(text: &str) {
    say(&format!("{text}\n"));
}
