//! The server's own lines on standard output and standard error: the listening line, stats,
//! SIGHUP results, warnings, the summary.
//!
//! `println!` and `eprintln!` panic when the write fails, and a closed pipe is an ordinary
//! way for it to fail (`fastsmtpd | head -1`, `fastsmtpd 2>&1 | logger` whose reader died):
//! a panic on the main thread would end the server with messages in flight. These lines are
//! a courtesy to whoever reads them, so a failed write is dropped and the server goes on.
//! Rust ignores `SIGPIPE` in its programs, so the write returns `EPIPE` rather than killing
//! the process. This module does not carry mail: a store's stream (`--store jsonl:-`)
//! has its own writer, which reports a failed write to the client as `451`.

use std::fmt;
use std::io::Write;

/// Writes `args` and a newline to standard output; a failed write is dropped.
pub fn out(args: fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"));
    let _ = stdout.flush();
}

/// Writes `args` and a newline to standard error; a failed write is dropped.
pub fn err(args: fmt::Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_fmt(args)
        .and_then(|()| stderr.write_all(b"\n"));
}

/// `println!` that never panics: see [`console`](crate::console).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::out(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: see [`console`](crate::console).
#[macro_export]
macro_rules! warn_line {
    ($($arg:tt)*) => {
        $crate::console::err(format_args!($($arg)*))
    };
}
