//! `fastsmtpd`: command line -> [`Config`] -> [`fastsmtpd::server::run`]. Nothing else.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use clap::{Parser, ValueEnum};
use fastsmtpd::config::{self, Config};
use fastsmtpd::proto::session::BareLfPolicy;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// A fast, correct SMTP receiver: accepts mail at line rate and discards it (a sink for
/// testing and benchmarking senders).
#[derive(Debug, Parser)]
#[command(
    name = "fastsmtpd",
    version,
    about,
    after_help = "Signals: SIGINT/SIGTERM shut down gracefully (a second one exits at once with \
                  130/143); SIGHUP reopens the jsonl store files (log rotation) and reloads the TLS \
                  certificate and the --auth password file; SIGUSR1 \
                  prints the stats line; SIGUSR2 is ignored."
)]
struct Cli {
    /// Address to listen on (repeatable), e.g. 127.0.0.1:2525 or [::1]:2525.
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:2525")]
    listen: Vec<SocketAddr>,
    /// Address that speaks implicit TLS (RFC 8314, "port 465 style"; repeatable): the TLS
    /// handshake comes first, then the greeting. Needs --tls-cert/--tls-key or
    /// --tls-self-signed. (With a certificate, the --listen addresses offer STARTTLS.)
    #[arg(long = "listen-tls", value_name = "ADDR")]
    listen_tls: Vec<SocketAddr>,
    /// The TLS certificate, PEM (leaf first, then its chain).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<std::path::PathBuf>,
    /// The TLS private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Make a self-signed certificate for --hostname at start (tests and quick starts only:
    /// senders that verify certificates refuse it).
    #[arg(long)]
    tls_self_signed: bool,
    /// Write the certificate --tls-self-signed made to FILE (PEM, replaced atomically), so a
    /// sender that verifies can trust it (e.g. `openssl s_client -CAfile FILE`, Python's
    /// `cafile=`).
    #[arg(long, value_name = "FILE", requires = "tls_self_signed")]
    tls_self_signed_out: Option<std::path::PathBuf>,
    /// Seconds a TLS handshake (implicit, or after STARTTLS) may take; then the connection
    /// is closed.
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_TLS_HANDSHAKE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    tls_handshake_timeout: u64,
    /// Refuse MAIL and AUTH on plaintext with `530 5.7.0 Must issue a STARTTLS command
    /// first` (RFC 3207 §4). Needs a certificate.
    #[arg(long)]
    require_tls: bool,
    /// Offer SMTP AUTH PLAIN and LOGIN (RFC 4954): `any` accepts every user and password and
    /// records the user (a sink for testing senders); `file:PATH` checks a file of `user:hash`
    /// lines (Argon2 `$argon2id$...`, bcrypt `$2b$...`, or `{PLAIN}password` for tests),
    /// reloaded on SIGHUP. Offered inside TLS only, unless --auth-plaintext.
    #[arg(long, value_name = "any|file:PATH")]
    auth: Option<fastsmtpd::auth::AuthSource>,
    /// Offer AUTH on plaintext connections too (otherwise AUTH there gets `538 5.7.11`).
    #[arg(long, requires = "auth")]
    auth_plaintext: bool,
    /// Refuse MAIL without a successful AUTH (`530 5.7.0`).
    #[arg(long, requires = "auth")]
    auth_required: bool,
    /// Worker threads (event loops) [default: number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Name used in the greeting and the EHLO reply.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    hostname: String,
    /// Largest message accepted, in bytes (advertised with SIZE).
    #[arg(long, value_name = "BYTES", default_value_t = config::DEFAULT_MAX_MESSAGE_SIZE,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_message_size: u64,
    /// Most recipients per message (RFC 5321 asks for at least 100).
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_RECIPIENTS)]
    max_recipients: usize,
    /// Most connections at once; more get "421 4.7.0" and are closed.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,
    /// Idle and per-command timeout in seconds (RFC 5321 asks for at least 300).
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// Minimum data rate during DATA/BDAT in bytes/second (0: no rate check).
    #[arg(long, value_name = "BYTES", default_value_t = config::DEFAULT_MIN_DATA_RATE)]
    min_data_rate: u64,
    /// Longest command line in bytes, CRLF included (at least 512).
    #[arg(long, value_name = "BYTES", default_value_t = config::DEFAULT_MAX_LINE_LEN)]
    max_line_length: usize,
    /// Failed commands tolerated per session before "421 4.7.0".
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_ERRORS,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_errors: u32,
    /// Junk commands (HELO, EHLO, RSET, NOOP, VRFY, HELP, empty BDAT chunks, refused messages)
    /// tolerated between accepted messages before "421 4.7.0", so no client holds a slot for ever.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_JUNK_COMMANDS,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_junk_commands: u32,
    /// Connections at once from one client address; more get "421 4.7.0" and are closed.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_CONNECTIONS_PER_IP as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_connections_per_ip: u64,
    /// Bare CR or LF inside message data: refuse the message (550) or keep the bytes.
    #[arg(long, value_enum, default_value_t = BareLf::Reject)]
    bare_lf: BareLf,
    /// Seconds a message in flight may take to finish after SIGINT/SIGTERM (a second signal
    /// exits at once).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    shutdown_grace: u64,
    /// Print a one-line summary every SECS seconds (0: off).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    stats_interval: u64,
    /// Keep accepted messages (repeatable): maildir:DIR (LF line ends, X-Original-To per
    /// recipient), eml:DIR (the bytes as received) or jsonl:FILE; missing directories are
    /// created. A 250 is sent only once every store has the message on disk. A jsonl FILE
    /// renamed or deleted is started anew at the path (SIGHUP does it at once). jsonl:- writes
    /// to stdout (the server's own lines then go to stderr) and jsonl:FIFO to a pipe: not
    /// durable (no fsync), a 250 means the line was written. Default: discard.
    #[arg(long = "store", value_name = "KIND:PATH")]
    stores: Vec<fastsmtpd::store::StoreSpec>,
    /// Threads that write the stores (and group their fsyncs).
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_STORE_THREADS)]
    store_threads: usize,
    /// Most messages a storage thread makes durable together (1: no group commit).
    #[arg(long, value_name = "N", default_value_t = fastsmtpd::store::DEFAULT_MAX_BATCH)]
    store_batch: usize,
    /// Bytes of message content in flight to the storage threads at most (K, M, G or KiB,
    /// MiB, GiB suffixes): past it, connections receiving content are not read until the
    /// threads catch up (TCP backpressure; nobody is refused for it).
    #[arg(long, value_name = "BYTES", default_value = "64MiB",
          value_parser = fastsmtpd::config::parse_bytes)]
    store_buffer: usize,
    /// Shut down gracefully after this many accepted messages.
    #[arg(long, value_name = "N")]
    exit_after_messages: Option<u64>,
    /// Shut down gracefully after this many ended sessions.
    #[arg(long, value_name = "N")]
    exit_after_sessions: Option<u64>,
    /// Inject a fault (repeatable): POINT [from=GLOB] [to=GLOB] [nth=N] [every=N] [p=P]
    /// ACTION, ACTION one of reply=CODE TEXT, disconnect, disconnect=421, delay=D[..D]
    /// (optionally followed by reply=). POINT: connect, helo, ehlo, mail, rcpt, data, eod,
    /// bdat, rset, noop, quit. Rules are tried in order, those of --fault-file first, and the
    /// first that fires wins, so a file's scenario runs as written (its nth/every/p counts
    /// included): a --fault rule acts only where no file rule fired, it cannot override one.
    #[arg(long = "fault", value_name = "RULE")]
    faults: Vec<String>,
    /// Fault rules from a TOML file: rules = ["...", ...] and an optional seed = N. Its rules
    /// come before the --fault rules (see --fault); --seed wins over its seed.
    #[arg(long, value_name = "FILE")]
    fault_file: Option<std::path::PathBuf>,
    /// Seed for probabilistic faults and random delays (same seed, same faults).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Serve Prometheus text metrics over HTTP on this address (e.g. 127.0.0.1:9025).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Print one line per message attempt (client, envelope, size, final reply) on stdout
    /// (SIGHUP cannot reopen stdout: rotate it outside, e.g. with copytruncate).
    #[arg(long)]
    log_sessions: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BareLf {
    Reject,
    Keep,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = Config {
        listen: cli.listen,
        listen_tls: cli.listen_tls,
        tls: match (cli.tls_cert, cli.tls_key, cli.tls_self_signed) {
            (Some(cert), Some(key), _) => {
                Some(fastsmtpd::server::tls::TlsSource::Files { cert, key })
            }
            (_, _, true) => Some(fastsmtpd::server::tls::TlsSource::SelfSigned),
            _ => None,
        },
        tls_self_signed_out: cli.tls_self_signed_out,
        tls_handshake_timeout: Duration::from_secs(cli.tls_handshake_timeout),
        require_tls: cli.require_tls,
        auth: cli.auth,
        auth_plaintext: cli.auth_plaintext,
        auth_required: cli.auth_required,
        hostname: cli.hostname,
        max_message_size: cli.max_message_size,
        max_recipients: cli.max_recipients,
        max_connections: cli.max_connections,
        idle_timeout: Duration::from_secs(cli.idle_timeout),
        min_data_rate: cli.min_data_rate,
        max_line_len: cli.max_line_length,
        max_errors: cli.max_errors,
        max_junk_commands: cli.max_junk_commands,
        max_connections_per_ip: usize::try_from(cli.max_connections_per_ip).unwrap_or(usize::MAX),
        bare_lf: match cli.bare_lf {
            BareLf::Reject => BareLfPolicy::Reject,
            BareLf::Keep => BareLfPolicy::Keep,
        },
        shutdown_grace: Duration::from_secs(cli.shutdown_grace),
        stats_interval: (cli.stats_interval > 0).then(|| Duration::from_secs(cli.stats_interval)),
        stores: cli.stores,
        store_threads: cli.store_threads,
        store_batch: cli.store_batch,
        store_buffer: cli.store_buffer,
        exit_after_messages: cli.exit_after_messages,
        exit_after_sessions: cli.exit_after_sessions,
        faults: cli.faults,
        seed: cli.seed.unwrap_or(0),
        metrics: cli.metrics,
        log_sessions: cli.log_sessions,
        ..Config::default()
    };
    if let Some(path) = &cli.fault_file {
        match fastsmtpd::fault::FaultRules::read_file(path) {
            Ok((rules, seed)) => {
                // The file's rules first, then --fault's: the first rule that fires wins, so
                // the file's scenario runs as written and the command line only adds to it.
                let command_line = std::mem::replace(&mut config.faults, rules);
                config.faults.extend(command_line);
                // --seed on the command line wins over the file's.
                config.seed = cli.seed.or(seed).unwrap_or(0);
            }
            Err(message) => {
                eprintln!("fastsmtpd: error: {message}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(threads) = cli.threads {
        config.threads = usize::from(threads);
    }
    if let Err(message) = config.validate() {
        eprintln!("fastsmtpd: error: {message}");
        return ExitCode::from(2);
    }
    match fastsmtpd::server::run(&config) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fastsmtpd: error: {e}");
            ExitCode::FAILURE
        }
    }
}
