//! `smtp-loadgen`: an SMTP load generator (skeleton).
//!
//! The engine (mio event loops, its own reply parser, open and closed loop, HdrHistogram
//! latency per stage) is the subject of its own issue; today this binary only parses its
//! target and says so, so the workspace builds and the name is reserved.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--help") | Some("-h") | None => {
            println!("smtp-loadgen: SMTP load generator (not implemented yet; see the README)");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("smtp-loadgen: error: not implemented yet (got {other:?})");
            ExitCode::from(2)
        }
    }
}
