//! The command-line flags of charts (`--html`, `--svg`, `--png`, `--label`), flattened into
//! the load run's flags and the `report` subcommand's.
//!
//! What it does: declare those flags with their help texts.
//!
//! What it does not do: draw (`report::chart`). It is apart from `cli` so that these flags,
//! added together, stay out of the way of the other flags.

use clap::Args;
use std::path::PathBuf;

/// Where to write charts, and what to call the runs in them.
#[derive(Debug, Clone, Default, Args)]
pub struct ChartArgs {
    /// Write a self-contained HTML report here: charts (inline SVG) and tables, no network
    /// needed to open it.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write each chart as an SVG file into this directory (created if missing), named by
    /// chart: percentiles-eod.svg, throughput.svg, ...
    #[arg(long, value_name = "DIR")]
    pub svg: Option<PathBuf>,
    /// Write each chart as a PNG file (960x440) into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub png: Option<PathBuf>,
    /// Name of a run in charts and tables; repeat once per log, in order (default: the log's
    /// file name without extension; for a load run, the target).
    #[arg(long, value_name = "TEXT")]
    pub label: Vec<String>,
}

impl ChartArgs {
    /// Whether any chart output is asked for.
    pub fn any(&self) -> bool {
        self.html.is_some() || self.svg.is_some() || self.png.is_some()
    }
}
