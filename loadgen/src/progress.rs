//! Progress output on standard error while a run goes on.
//!
//! What it does: show one line at a time, as a live line (indicatif spinner) on a terminal or
//! as plain lines otherwise (a log file or a CI job keeps every second). Each second comes
//! in two forms: the live one (richer: the sweep step, the corrected p99) and the plain one,
//! which stays as it always was for logs and scripts.
//!
//! What it does not do: decide what the lines say (`report::render`), or write standard
//! output (the results go there).

use std::time::Duration;

/// How often the live line redraws on a terminal.
const TICK: Duration = Duration::from_millis(200);

/// Progress output: a live line on a terminal (indicatif), plain lines otherwise.
#[derive(Debug)]
pub struct Progress {
    /// The live line, on a terminal.
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Progress output for a terminal (`terminal`) or for plain lines.
    pub fn new(terminal: bool) -> Progress {
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(TICK);
            bar
        });
        Progress { bar }
    }

    /// Shows a line: `live` replaces the live line on a terminal; otherwise `plain` is
    /// printed as a line.
    pub fn show(&self, plain: &str, live: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(live.to_string()),
            None => crate::warn_line!("{plain}"),
        }
    }

    /// Clears the live line (plain lines stay).
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
