//! The command line: what `smtp-loadgen` accepts (clap definitions) and the value parsers
//! for durations and sizes.
//!
//! What it does: declare every flag with its help text and default, and parse the values
//! that are more than numbers (`500ms`, `64k`, `1k..64k`: durations and sizes with the
//! grammar of [`crate::units`]). Errors are the texts users see.
//!
//! What it does not do: check flags against each other or build the run's settings
//! (`settings`), or run anything.

use crate::cli_charts::{parse_rate, ChartArgs, SweepArgs, MAX_SWEEP_RATE};
use crate::drive::workload::{self, Sizes};
use crate::units;
use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// An SMTP load generator: pipelining, open or closed loop, HdrHistogram latency per stage.
#[derive(Debug, Parser)]
#[command(
    name = "smtp-loadgen",
    // The commit too (build.rs), as every report's provenance states it.
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SMTP_LOADGEN_COMMIT"), ")"),
    about,
    args_conflicts_with_subcommands = true,
    after_help = "Exit status: 0 success; 1 an --slo breached or no message was accepted (a sweep: \
                  no step passed); 2 a wrong command line or file, or the run could not be \
                  carried out; 3 fewer connections than --connections were alive for more than \
                  1% of the measured time (the server refused some, or they failed and did not \
                  come back), unless --allow-fewer-connections."
)]
pub struct Cli {
    /// A subcommand; none means a load run.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The load run's flags.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The subcommands, which read interval logs back.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Merge interval logs from several load hosts (aligned by absolute time).
    Merge {
        /// Logs to merge.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// Where to write the merged log.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print percentiles per tag of interval logs; with --html, --svg or --png, chart them
    /// (several logs are overlaid, named by --label).
    Report {
        /// The logs to read.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// Leave out every interval that starts before this much time from the run's start
        /// (500ms, 1s, 2m), in every table and chart [default: the warm-up the log records,
        /// as the run itself left out; none for logs that record none].
        #[arg(long, value_name = "D", value_parser = parse_duration, allow_hyphen_values = true)]
        warmup: Option<Duration>,
        /// Chart outputs.
        #[command(flatten)]
        charts: ChartArgs,
    },
}

/// `--pipelining`: whether to pipeline.
///
/// `ValueEnum` is written out rather than derived: the derive would turn these doc comments
/// into help text for each value and change `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeliningArg {
    /// Pipeline if the server advertises PIPELINING.
    Auto,
    /// Always pipeline.
    On,
    /// Never pipeline.
    Off,
}

impl PipeliningArg {
    /// The flag's value as typed (`auto`, `on`, `off`): the header's and JSON's word for it.
    pub fn name(self) -> &'static str {
        match self {
            PipeliningArg::Auto => "auto",
            PipeliningArg::On => "on",
            PipeliningArg::Off => "off",
        }
    }
}

impl ValueEnum for PipeliningArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[PipeliningArg::Auto, PipeliningArg::On, PipeliningArg::Off]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

/// `--tls-resume`: on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

impl ValueEnum for OnOff {
    fn value_variants<'a>() -> &'a [Self] {
        &[OnOff::On, OnOff::Off]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            OnOff::On => "on",
            OnOff::Off => "off",
        }))
    }
}

/// `--auth-mech`: the SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechArg {
    /// PLAIN with the initial response.
    Plain,
    /// LOGIN with its two challenges.
    Login,
}

impl ValueEnum for AuthMechArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[AuthMechArg::Plain, AuthMechArg::Login]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            AuthMechArg::Plain => "plain",
            AuthMechArg::Login => "login",
        }))
    }
}

/// `--order`: which corpus message each transaction sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderArg {
    /// In order.
    Sequential,
    /// Seeded random.
    Random,
}

impl ValueEnum for OrderArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[OrderArg::Sequential, OrderArg::Random]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            OrderArg::Sequential => "sequential",
            OrderArg::Random => "random",
        }))
    }
}

/// The flags of a load run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Server to load, HOST:PORT (repeatable: connections go to the targets in turn, and the
    /// results have a section per target).
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Vec<String>,
    /// Local address to connect from, port chosen by the system (repeatable: each new
    /// connection binds the next one in turn, e.g. 127.0.0.2 and 127.0.0.3 for more ephemeral
    /// ports toward one server) [default: the system's choice].
    #[arg(long, value_name = "ADDR")]
    pub source: Vec<std::net::IpAddr>,
    /// Concurrent connections.
    #[arg(long, short = 'c', value_name = "C", default_value_t = 10)]
    pub connections: usize,
    /// Accept a run in which fewer than --connections were alive for more than 1% of the
    /// measured time (the server refused some, or they failed and did not come back): the
    /// shortfall is still reported first, but the exit status is not 3.
    #[arg(long)]
    pub allow_fewer_connections: bool,
    /// Event-loop threads; connections are spread over them.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// Messages to send, at least 1 (default 10000 unless --duration is given).
    #[arg(long, short = 'n', value_name = "N")]
    pub messages: Option<u64>,
    /// Run for this long instead of a message count, at least 1s (10s, 1.5m, 1h; a bare
    /// number is seconds; with --sweep, each step's length, default 10s).
    #[arg(long, short = 'd', value_name = "D", value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
    /// Exclude this first part of the run from the results (a duration, e.g. 2s; rounded up
    /// to whole seconds).
    #[arg(long, value_name = "D", value_parser = parse_duration, allow_hyphen_values = true, default_value = "0s")]
    pub warmup: Duration,
    /// Message size (1024, 64K, 1M, 1MiB: K, M, G are 1024-multiples) or a range (1k..64k,
    /// seeded by --seed), headers included; 32 bytes to 1 GiB.
    #[arg(long, short = 's', value_name = "SIZE", value_parser = parse_sizes, allow_hyphen_values = true, default_value = "1k",
          conflicts_with_all = ["message_dir", "mbox"])]
    pub size: Sizes,
    /// Send the messages of this directory's *.eml files (one per file) instead of generated
    /// ones, each as it is: bare LF sent as CR LF, a missing last line end added, dot-stuffed
    /// for DATA, the exact octets for BDAT; sizes come from the files. Indexed once at start
    /// and read as sent: the corpus may be bigger than memory.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "mbox",
        help_heading = "Real messages"
    )]
    pub message_dir: Option<PathBuf>,
    /// Send the messages of this mbox file instead of generated ones, as --message-dir does
    /// (read as mboxrd: one > taken off >From lines).
    #[arg(long, value_name = "FILE", help_heading = "Real messages")]
    pub mbox: Option<PathBuf>,
    /// Which corpus message each transaction sends: sequential (in order, over and over;
    /// files sorted by name) or random (seeded by --seed) [default: sequential].
    #[arg(
        long,
        value_enum,
        value_name = "sequential|random",
        hide_possible_values = true,
        help_heading = "Real messages"
    )]
    pub order: Option<OrderArg>,
    /// Recipient addresses, one per line (blank lines and # comments skipped); each message
    /// takes the next --rcpts of them, cycling through the file (instead of --to).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "to",
        help_heading = "Real messages"
    )]
    pub rcpt_file: Option<PathBuf>,
    /// Recipients per message, 1 to 10000.
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub rcpts: usize,
    /// Messages per connection before QUIT (1: a new connection per message; 0: for ever).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub msgs_per_conn: u64,
    /// RFC 2920 pipelining: auto (if advertised), on, off.
    #[arg(long, value_enum, default_value_t = PipeliningArg::Auto)]
    pub pipelining: PipeliningArg,
    /// Send content with BDAT (CHUNKING) instead of DATA.
    #[arg(long)]
    pub bdat: bool,
    /// BDAT transactions in flight per connection (with pipelining); at least 1.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub inflight: usize,
    /// Greet with HELO NAME instead of EHLO (servers without ESMTP: no pipelining, BDAT,
    /// STARTTLS or AUTH) [NAME default: loadgen.example.org].
    #[arg(long, value_name = "NAME", num_args = 0..=1, conflicts_with = "ehlo")]
    pub helo: Option<Option<String>>,
    /// Greet with EHLO NAME (EHLO is the default greeting) [default: loadgen.example.org].
    #[arg(long, value_name = "NAME")]
    pub ehlo: Option<String>,
    /// The old spelling of the greeting's name: EHLO NAME, or HELO NAME with a bare --helo.
    #[arg(long, value_name = "NAME", hide = true, conflicts_with = "ehlo")]
    pub ehlo_name: Option<String>,
    /// STARTTLS after EHLO (RFC 3207), then EHLO again inside TLS.
    #[arg(long, conflicts_with = "tls", help_heading = "TLS and AUTH")]
    pub starttls: bool,
    /// Implicit TLS: the handshake first, the greeting inside TLS (RFC 8314, port 465 style).
    #[arg(long, help_heading = "TLS and AUTH")]
    pub tls: bool,
    /// Verify the server's certificate (chain and name) against --ca or the system's roots.
    /// Without it the certificate is NOT verified (self-signed test servers; the handshake
    /// signatures still are), and the output says so.
    #[arg(long, help_heading = "TLS and AUTH")]
    pub tls_verify: bool,
    /// Trusted root certificates for --tls-verify, PEM (implies --tls-verify).
    #[arg(long, value_name = "FILE", help_heading = "TLS and AUTH")]
    pub ca: Option<PathBuf>,
    /// TLS server name to ask for (SNI) and verify [default: the --target host; an IP
    /// address sends no SNI].
    #[arg(long, value_name = "NAME", help_heading = "TLS and AUTH")]
    pub sni: Option<String>,
    /// Resume TLS sessions (tickets, session ids) on later connections [default: on].
    #[arg(
        long,
        value_enum,
        value_name = "on|off",
        hide_possible_values = true,
        help_heading = "TLS and AUTH"
    )]
    pub tls_resume: Option<OnOff>,
    /// AUTH after the (last) EHLO with these credentials (RFC 4954); the password is never
    /// shown, but the command line is visible to other local users: use a test account.
    #[arg(long, value_name = "USER:PASS", help_heading = "TLS and AUTH")]
    pub auth: Option<String>,
    /// SASL mechanism for --auth: plain (initial response, one round trip) or login (two
    /// challenges) [default: plain].
    #[arg(
        long,
        value_enum,
        value_name = "plain|login",
        hide_possible_values = true,
        help_heading = "TLS and AUTH"
    )]
    pub auth_mech: Option<AuthMechArg>,
    /// Open loop: intended send rate in messages per second over all threads (500, 5k,
    /// 2.5k, 1m; k = 1000, m = 1000000; 0.001 to 10m).
    #[arg(long, value_name = "R", value_parser = parse_open_rate, allow_hyphen_values = true)]
    pub rate: Option<f64>,
    /// Spread the initial connects over this long (a duration, e.g. 500ms); connections not
    /// opened yet count as missing, so give a --warmup at least as long.
    #[arg(long, value_name = "D", value_parser = parse_duration, allow_hyphen_values = true, default_value = "0s")]
    pub stagger: Duration,
    /// A reply not received within this counts as a timeout error (a duration, e.g. 30s; at
    /// least 1ms).
    #[arg(long, value_name = "D", value_parser = parse_duration, allow_hyphen_values = true, default_value = "30s")]
    pub timeout: Duration,
    /// Open loop (--rate or --sweep; refused without): how much of each wait for a send is
    /// spun on the clock instead of slept on the timer: less makes the generator's CPU
    /// cheaper and its sends later by the machine's wake-up latency (0: no spin)
    /// [default: 50us].
    #[arg(long, value_name = "D", value_parser = parse_duration, allow_hyphen_values = true)]
    pub pace_spin: Option<Duration>,
    /// Open loop (--rate; refused without, and with --sweep): the send lateness p99 above
    /// which a run that reached its rate is reported NOT sustained on time (its sends went
    /// out late and caught up, as after a server stall); raise it on a machine whose
    /// wake-ups are slow (a duration, more than 0) [default: 10ms].
    #[arg(long, value_name = "D", value_parser = parse_duration, allow_hyphen_values = true)]
    pub late_send_limit: Option<Duration>,
    /// Sender pattern; the letter n in braces becomes the message number.
    #[arg(long, default_value = "loadgen{n}@example.org")]
    pub from: String,
    /// Recipient pattern; n in braces becomes the message number, r in braces the recipient index.
    #[arg(long, default_value = "sink{r}@example.net")]
    pub to: String,
    /// Seed for message sizes and --order random.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the results as JSON here (with --sweep: every step, and the rate found).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write an HdrHistogram interval log here (one tag per stage; with --sweep, one log per
    /// step: NAME.RATE.hlog).
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// Chart outputs of the run (or of the sweep).
    #[command(flatten)]
    pub charts: ChartArgs,
    /// The rate sweep.
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// End to end: the capture API of a fastsmtpd sink (--api) that the server under test
    /// relays to (http://HOST:PORT): each message is tagged in its subject and its arrival
    /// there timed as the stage `delivered`, from its intended send time to its last
    /// recipient's arrival; messages never (or partly) delivered and duplicate recipients
    /// are counted (a message whose recipients arrive in two transactions is no duplicate).
    #[arg(long, value_name = "URL")]
    pub delivered_via: Option<String>,
    /// With --delivered-via: how long to wait after the send phase for messages not arrived
    /// yet before counting them never delivered (a duration, e.g. 30s) [default: 10s].
    #[arg(long, value_name = "D", value_parser = parse_duration, allow_hyphen_values = true)]
    pub delivered_drain: Option<Duration>,
    /// With --delivered-via: the sink's --api-token, sent as a bearer token.
    #[arg(long, value_name = "TOKEN")]
    pub delivered_token: Option<String>,
    /// Fail (exit 1) unless this holds: STAGE:pNN<D (eod:p99<5ms), STAGE:max<D, errors<N%
    /// or errors<N (repeatable; with --sweep, a step passes only if every one holds).
    #[arg(long, value_name = "EXPR")]
    pub slo: Vec<String>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

pub use crate::units::parse_duration;

/// The name said in EHLO or HELO when none is given.
pub const DEFAULT_GREETING_NAME: &str = "loadgen.example.org";

/// The greeting a run uses: `(helo, name)` from `--helo [NAME]`, `--ehlo NAME` and the old
/// `--ehlo-name NAME`. Two names (`--helo A --ehlo-name B`) are an error, as is a name that
/// could not be a domain or an address literal (RFC 5321 §4.1.1.1: `EHLO SP Domain /
/// address-literal`; white space or a line end would end the command early).
pub fn greeting(args: &RunArgs) -> Result<(bool, String), String> {
    let (helo, name) = match (&args.helo, &args.ehlo, &args.ehlo_name) {
        (Some(Some(_)), _, Some(_)) => {
            return Err(
                "give the HELO name once: --helo NAME (--ehlo-name is its old \
                        spelling)"
                    .into(),
            )
        }
        (Some(name), _, old) => (true, name.clone().or_else(|| old.clone())),
        (None, name, old) => (false, name.clone().or_else(|| old.clone())),
    };
    let name = name.unwrap_or_else(|| DEFAULT_GREETING_NAME.to_string());
    let flag = if helo { "--helo" } else { "--ehlo" };
    if name.is_empty() {
        return Err(format!("{flag} NAME: the name is empty"));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{flag} {name:?}: {c:?} cannot be part of a domain or address literal (printable \
             ASCII without spaces)"
        ));
    }
    Ok((helo, name))
}

/// The lowest `--rate`: one message every 1000 s. Far lower rates put the next send past
/// any run (and past what the clock can add up).
pub const MIN_RATE: f64 = 0.001;

/// Parses `--rate`: a rate as `--sweep` takes it ([`parse_rate`]: `500`, `5k`, `1m`), from
/// [`MIN_RATE`] to [`MAX_SWEEP_RATE`].
fn parse_open_rate(text: &str) -> Result<f64, String> {
    let rate = parse_rate(text)?;
    if !(MIN_RATE..=MAX_SWEEP_RATE).contains(&rate) {
        return Err(format!(
            "{:?}: a rate is between 0.001 (one message every 1000 s) and 10m (10000000) \
             msgs/s",
            text.trim()
        ));
    }
    Ok(rate)
}

/// Parses a message size: `1024`, `64k`, `1M`, `1MiB` ([`units::parse_bytes`]), between
/// [`workload::MIN_SIZE`] bytes and 1 GiB.
fn parse_size(text: &str) -> Result<usize, String> {
    let bytes = units::parse_bytes(text)?;
    let text = text.trim();
    if bytes < workload::MIN_SIZE as u64 {
        return Err(format!(
            "{text:?}: messages are at least {} bytes",
            workload::MIN_SIZE
        ));
    }
    if bytes > 1 << 30 {
        return Err(format!("{text:?}: at most 1 GiB per message"));
    }
    Ok(bytes as usize)
}

/// Parses a size or a range `LOW..HIGH`.
pub fn parse_sizes(text: &str) -> Result<Sizes, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_flags_take_units() {
        // Every duration flag goes through the shared parser (units::cases has the grammar).
        let cli = Cli::try_parse_from([
            "smtp-loadgen",
            "--target",
            "x:25",
            "-d",
            "1.5m",
            "--warmup",
            "1",
            "--stagger",
            "250µs",
            "--timeout",
            "1d",
        ])
        .unwrap();
        assert_eq!(cli.run.duration, Some(Duration::from_secs(90)));
        assert_eq!(cli.run.warmup, Duration::from_secs(1));
        assert_eq!(cli.run.stagger, Duration::from_micros(250));
        assert_eq!(cli.run.timeout, Duration::from_secs(86_400));
        let error = Cli::try_parse_from(["smtp-loadgen", "--target", "x:25", "--duration=-5s"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot be negative"), "{error}");
    }

    #[test]
    fn rates_take_multiples_and_stay_in_bounds() {
        let rate = |text: &str| {
            Cli::try_parse_from(["smtp-loadgen", "--target", "x:25", "--rate", text])
                .map(|cli| cli.run.rate.unwrap())
                .map_err(|e| e.to_string())
        };
        assert_eq!(rate("5k"), Ok(5000.0));
        assert_eq!(rate("2.5k"), Ok(2500.0));
        assert_eq!(rate("0.001"), Ok(0.001));
        assert_eq!(rate("10m"), Ok(1e7));
        for bad in [
            "1e-300", "0.0009", "10000001", "1e300", "0", "-5", "inf", "NaN",
        ] {
            let error = rate(bad).unwrap_err();
            assert!(error.contains("--rate"), "{bad}: {error}");
        }
        let error = rate("1e-300").unwrap_err();
        assert!(error.contains("between 0.001"), "{error}");
    }

    #[test]
    fn sizes_and_ranges() {
        assert_eq!(parse_sizes("1024"), Ok(Sizes::Fixed(1024)));
        assert_eq!(parse_sizes("64k"), Ok(Sizes::Fixed(64 * 1024)));
        assert_eq!(parse_sizes("1M"), Ok(Sizes::Fixed(1 << 20)));
        assert_eq!(parse_sizes("1MiB"), Ok(Sizes::Fixed(1 << 20)));
        assert_eq!(parse_sizes("2KB"), Ok(Sizes::Fixed(2048)));
        assert_eq!(parse_sizes("1G"), Ok(Sizes::Fixed(1 << 30)));
        assert_eq!(parse_sizes("1k..64k"), Ok(Sizes::Range(1024, 65536)));
        assert_eq!(parse_sizes("1k..1k"), Ok(Sizes::Range(1024, 1024)));
        for bad in [
            "10",
            "64x",
            "64k..1k",
            "2m..",
            "1025m",
            "99999999999999999999k",
            "1.5k",
            "2G",
        ] {
            assert!(parse_sizes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slo_help_names_every_form() {
        use clap::CommandFactory;
        let command = Cli::command();
        let help = command
            .get_arguments()
            .find(|a| a.get_id() == "slo")
            .and_then(|a| a.get_help())
            .map(|h| h.to_string())
            .unwrap();
        for form in ["STAGE:pNN<D", "STAGE:max<D", "errors<N%", "errors<N "] {
            assert!(help.contains(form), "{form} in {help}");
        }
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
