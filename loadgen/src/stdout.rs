//! Standard output that a closed pipe does not crash: `smtp-loadgen report x.hlog | head -1`
//! closes the pipe after one line, and `print!` would then panic ("failed printing to
//! stdout: Broken pipe"). Without unsafe code the SIGPIPE default cannot be restored, so
//! every write goes through [`say`]: once the reader has gone, further output is dropped and
//! the command carries on to its normal end and exit status (files are still written).
//! Any other write error (a full disk, `>/dev/full`) also stops the output, but is kept
//! ([`write_error`]): the command says so at its end and does not exit 0, since the summary
//! it was run for is lost.
//!
//! Standard error (the progress lines, warnings and errors) goes through [`warn`]: a
//! failed write there is dropped (`smtp-loadgen ... 2>&1 | head -1` closes both), since
//! `eprintln!` would panic and end the run with exit status 101.

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

/// Writes `args` and a line end to standard error; a failed write (a closed pipe) is
/// dropped, never a panic as with `eprintln!`.
pub fn warn(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `eprintln!` that never panics: see [`warn`].
#[macro_export]
macro_rules! warn_line {
    ($($arg:tt)*) => {
        $crate::stdout::warn(format_args!($($arg)*))
    };
}
