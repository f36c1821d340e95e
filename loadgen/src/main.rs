//! `smtp-loadgen`: measure sustained messages/second and reply latency of any SMTP server.
//!
//! Layout: `reply` (its own reply parser), `client` (one connection's state machine, sans
//! I/O), `workload` (what is sent), `engine` (one mio loop per thread), `record` (histograms
//! and counters), `report` (summary, JSON, interval logs, SLOs). This file: the command line,
//! the threads, the reporter loop.

mod client;
mod engine;
mod record;
mod reply;
mod report;
mod workload;

use clap::{Args, Parser, Subcommand, ValueEnum};
use engine::{IntervalReport, ThreadPlan};
use report::interval_log;
use report::render;
use report::slo::Slo;
use report::Results;
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};
use workload::{AddressPattern, Pipelining, Sizes, Workload};

/// An SMTP load generator: pipelining, open or closed loop, HdrHistogram latency per stage.
#[derive(Debug, Parser)]
#[command(
    name = "smtp-loadgen",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Merge interval logs from several load hosts (aligned by absolute time).
    Merge {
        /// Logs to merge.
        #[arg(required = true)]
        logs: Vec<std::path::PathBuf>,
        /// Where to write the merged log.
        #[arg(short, long)]
        output: std::path::PathBuf,
    },
    /// Print percentiles per tag of an interval log.
    Report {
        /// The log to read.
        log: std::path::PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PipeliningArg {
    Auto,
    On,
    Off,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Server to load, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    target: Option<String>,
    /// Concurrent connections.
    #[arg(long, short = 'c', value_name = "C", default_value_t = 10)]
    connections: usize,
    /// Event-loop threads; connections are spread over them.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// Messages to send (default 10000 unless --duration is given).
    #[arg(long, short = 'n', value_name = "N")]
    messages: Option<u64>,
    /// Run for this long instead of a message count (500ms, 10s, 2m).
    #[arg(long, short = 'd', value_name = "D", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Exclude this first part of the run from the results (rounded up to whole seconds).
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "0s")]
    warmup: Duration,
    /// Message size in bytes (1024, 64k, 1m) or a range (1k..64k), headers included.
    #[arg(long, short = 's', value_name = "SIZE", value_parser = parse_sizes, default_value = "1k")]
    size: Sizes,
    /// Recipients per message.
    #[arg(long, value_name = "R", default_value_t = 1)]
    rcpts: usize,
    /// Messages per connection before QUIT (1: a new connection per message; 0: for ever).
    #[arg(long, value_name = "K", default_value_t = 0)]
    msgs_per_conn: u64,
    /// RFC 2920 pipelining: auto (if advertised), on, off.
    #[arg(long, value_enum, default_value_t = PipeliningArg::Auto)]
    pipelining: PipeliningArg,
    /// Send content with BDAT (CHUNKING) instead of DATA.
    #[arg(long)]
    bdat: bool,
    /// BDAT transactions in flight per connection (with pipelining).
    #[arg(long, value_name = "K", default_value_t = 1)]
    inflight: usize,
    /// Greet with HELO (servers without ESMTP); implies no pipelining.
    #[arg(long)]
    helo: bool,
    /// Open loop: intended send rate in messages per second over all threads.
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Spread the initial connects over this long.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "0s")]
    stagger: Duration,
    /// A reply not received within this counts as a timeout error.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Sender pattern; the letter n in braces becomes the message number.
    #[arg(long, default_value = "loadgen{n}@example.org")]
    from: String,
    /// Recipient pattern; n in braces becomes the message number, r in braces the recipient index.
    #[arg(long, default_value = "sink{r}@example.net")]
    to: String,
    /// EHLO/HELO name.
    #[arg(long, default_value = "loadgen.example.org")]
    ehlo_name: String,
    /// Seed for message sizes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Write an HdrHistogram interval log here (one tag per stage).
    #[arg(long, value_name = "FILE")]
    hdr_log: Option<std::path::PathBuf>,
    /// Fail (exit 1) unless this holds: STAGE:pNN<DURATION or errors<N% (repeatable).
    #[arg(long, value_name = "EXPR")]
    slo: Vec<String>,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

/// Parses `500ms`, `10s`, `2m`, `1h`, `250us`, `800ns`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "ns" => value / 1e9,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ns, us, ms, s, m, h)"
            ))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses `1024`, `64k`, `1m` (binary multiples).
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (number, multiplier) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1024),
        Some((i, 'm' | 'M')) => (&text[..i], 1024 * 1024),
        _ => (text, 1),
    };
    let n: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1024, 64k, 1m)"))?;
    let size = n
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if size < workload::MIN_SIZE {
        return Err(format!(
            "{text:?}: messages are at least {} bytes",
            workload::MIN_SIZE
        ));
    }
    if size > 1 << 30 {
        return Err(format!("{text:?}: at most 1 GiB per message"));
    }
    Ok(size)
}

/// Parses a size or a range `LOW..HIGH`.
fn parse_sizes(text: &str) -> Result<Sizes, String> {
    match text.split_once("..") {
        Some((low, high)) => {
            let (low, high) = (parse_size(low)?, parse_size(high)?);
            if low > high {
                return Err(format!("{text:?}: the range is empty"));
            }
            Ok(Sizes::Range(low, high))
        }
        None => Ok(Sizes::Fixed(parse_size(text)?)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Merge { logs, output }) => merge(&logs, &output),
        Some(Command::Report { log }) => report(&log),
        None => run(cli.run),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("smtp-loadgen: error: {message}");
            ExitCode::from(2)
        }
    }
}

fn merge(logs: &[std::path::PathBuf], output: &std::path::Path) -> Result<ExitCode, String> {
    let mut all = Vec::new();
    for path in logs {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        all.push(interval_log::read_hlog(&bytes).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    let merged = interval_log::merge_logs(&all)?;
    let first = merged.iter().map(|i| i.start).fold(f64::MAX, f64::min);
    let base = SystemTime::UNIX_EPOCH
        + Duration::from_secs_f64(if first == f64::MAX { 0.0 } else { first });
    let mut file =
        std::fs::File::create(output).map_err(|e| format!("{}: {e}", output.display()))?;
    interval_log::write_hlog(&mut file, base, "smtp-loadgen merge", &merged)
        .map_err(|e| format!("{}: {e}", output.display()))?;
    println!(
        "merged {} logs, {} intervals -> {}",
        logs.len(),
        merged.len(),
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn report(path: &std::path::Path) -> Result<ExitCode, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let intervals =
        interval_log::read_hlog(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    print!(
        "{}",
        render::log_table(&interval_log::totals_per_tag(&intervals)?)
    );
    Ok(ExitCode::SUCCESS)
}

fn resolve(target: &str) -> Result<SocketAddr, String> {
    target
        .to_socket_addrs()
        .map_err(|e| format!("--target {target:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--target {target:?}: no address"))
}

fn run(args: RunArgs) -> Result<ExitCode, String> {
    let target_text = args
        .target
        .clone()
        .ok_or("--target HOST:PORT is required")?;
    let target = resolve(&target_text)?;
    if args.connections == 0 || args.threads == 0 {
        return Err("--connections and --threads must be at least 1".into());
    }
    let threads = args.threads.min(args.connections);
    if args.rcpts == 0 || args.rcpts > 10_000 {
        return Err("--rcpts must be between 1 and 10000".into());
    }
    if let Some(rate) = args.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err("--rate must be a positive number of messages per second".into());
        }
    }
    if args.bdat && args.helo {
        return Err("--bdat needs EHLO (CHUNKING); drop --helo".into());
    }
    let slos: Vec<Slo> = args
        .slo
        .iter()
        .map(|text| Slo::parse(text, parse_duration))
        .collect::<Result<_, _>>()?;
    let messages = match (args.messages, args.duration) {
        (Some(_), Some(_)) => return Err("give --messages or --duration, not both".into()),
        (None, None) => Some(10_000),
        (messages, _) => messages,
    };
    let pipelining = match args.pipelining {
        PipeliningArg::Auto => Pipelining::Auto,
        PipeliningArg::On => Pipelining::On,
        PipeliningArg::Off => Pipelining::Off,
    };
    let workload = Arc::new(Workload::new(
        args.rcpts,
        args.msgs_per_conn,
        pipelining,
        args.bdat,
        args.inflight,
        args.helo,
        args.ehlo_name.clone(),
        AddressPattern::new(&args.from)?,
        AddressPattern::new(&args.to)?,
        args.size,
    ));

    let start = Instant::now() + Duration::from_millis(10);
    let wall_start = SystemTime::now() + Duration::from_millis(10);
    let warmup = Duration::from_secs(args.warmup.as_secs_f64().ceil() as u64);
    let end = args.duration.map(|d| start + warmup + d);
    let (reports_tx, reports) = mpsc::channel::<IntervalReport>();
    let mut handles = Vec::new();
    for index in 0..threads {
        let share = |total: u64| {
            total / threads as u64 + u64::from((index as u64) < total % threads as u64)
        };
        let plan = ThreadPlan {
            index,
            target,
            connections: share(args.connections as u64) as usize,
            messages: messages.map(share),
            rate: args.rate.map(|r| r / threads as f64),
            start,
            warmup_end: start + warmup,
            end,
            stagger: args.stagger,
            reply_timeout: args.timeout,
            seed: args.seed,
        };
        let workload = Arc::clone(&workload);
        let tx = reports_tx.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{index}"))
                .spawn(move || engine::run_thread(plan, threads, workload, tx))
                .map_err(|e| format!("cannot start a thread: {e}"))?,
        );
    }
    drop(reports_tx);

    let mode = format!(
        "{}, {}{}",
        match args.rate {
            Some(rate) => format!("open loop at {rate} msgs/s"),
            None => "closed loop".to_string(),
        },
        if args.bdat {
            format!("BDAT (inflight {})", args.inflight)
        } else {
            "DATA".to_string()
        },
        match args.pipelining {
            PipeliningArg::Auto => ", pipelining if offered",
            PipeliningArg::On => ", pipelining",
            PipeliningArg::Off => ", no pipelining",
        }
    );
    let header = format!(
        "smtp-loadgen -> {target_text}: {} connections on {threads} thread(s), {mode}, {} rcpt(s), size {:?}",
        args.connections, args.rcpts, args.size
    );
    let progress = (!args.quiet).then(|| Progress::new(std::io::stderr().is_terminal()));
    if let Some(p) = &progress {
        p.line(&header);
    }

    let mut results = Results::new(threads);
    let mut finished_threads = 0;
    while finished_threads < threads {
        let Ok(report) = reports.recv() else { break };
        let finished = results.add(
            report.thread,
            report.interval,
            report.warmup,
            &report.recorder,
            report.last,
        );
        results.backlog += report.backlog;
        if report.last {
            finished_threads += 1;
        }
        // Each second is shown once every thread has reported it.
        if let Some(p) = &progress {
            for second in finished {
                p.line(&render::progress_line(second, &results.intervals[&second]));
            }
        }
    }
    let run_end = Instant::now();
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("a load thread failed: {e}")),
            Err(_) => return Err("a load thread panicked".into()),
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    let measured_end = end.map_or(run_end, |e| e.min(run_end));
    results.measured = measured_end.saturating_duration_since(start + warmup);

    print!("{}", render::summary(&results, &header, args.rate));

    let config = serde_json::json!({
        "target": target_text,
        "connections": args.connections,
        "threads": threads,
        "messages": messages,
        "duration_seconds": args.duration.map(|d| d.as_secs_f64()),
        "warmup_seconds": warmup.as_secs_f64(),
        "size": format!("{:?}", args.size),
        "rcpts": args.rcpts,
        "msgs_per_conn": args.msgs_per_conn,
        "pipelining": format!("{:?}", args.pipelining),
        "bdat": args.bdat,
        "inflight": args.inflight,
        "helo": args.helo,
        "rate": args.rate,
        "seed": args.seed,
    });
    if let Some(path) = &args.json {
        let doc = render::json(&results, config);
        let text = serde_json::to_string_pretty(&doc).expect("JSON values serialise");
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.hdr_log {
        let mut file =
            std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let intervals = interval_log::run_intervals(&results, wall_start);
        interval_log::write_hlog(&mut file, wall_start, &header, &intervals)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut breached = false;
    for slo in &slos {
        match slo.check(&results.total) {
            Ok(line) => println!("SLO ok: {line}"),
            Err(line) => {
                println!("SLO BREACHED: {line}");
                breached = true;
            }
        }
    }
    if results.total.accepted == 0 {
        // A run that moved no mail measured nothing: say why, and fail, so a script notices.
        let refused = results
            .total
            .errors
            .get(&record::ErrorKind::Refused)
            .copied()
            .unwrap_or(0);
        if refused > 0 && results.total.started == 0 {
            eprintln!(
                "smtp-loadgen: no message was accepted: {refused} connect(s) to {target} failed (is a server listening there?)"
            );
        } else {
            eprintln!("smtp-loadgen: no message was accepted");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(if breached {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Progress output: a live line on a terminal (indicatif), plain lines otherwise.
struct Progress {
    /// The live line, on a terminal.
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(terminal: bool) -> Progress {
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(text.to_string()),
            None => eprintln!("{text}"),
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
