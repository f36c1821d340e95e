//! `smtp-loadgen`: measure sustained messages/second and reply latency of any SMTP server.
//!
//! The binary only parses the command line and runs the command it names
//! ([`smtp_loadgen::commands::execute`]); everything else is the library (`src/lib.rs`), where
//! tests and benches reach it too.

#![forbid(unsafe_code)]

use clap::Parser;
use smtp_loadgen::cli::Cli;
use std::process::ExitCode;

/// Runs the command the command line names; an error is printed and exits 2.
fn main() -> ExitCode {
    smtp_loadgen::commands::execute(Cli::parse())
}
