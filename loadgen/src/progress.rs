//! Progress output on standard error while a run goes on.
//!
//! What it does: show one line at a time, as a live line (indicatif spinner) on a terminal or
//! as plain lines otherwise (a log file or a CI job keeps every second).
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

    /// Shows `text`: replaces the live line, or prints a line.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(text.to_string()),
            None => eprintln!("{text}"),
        }
    }

    /// Clears the live line (plain lines stay).
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
