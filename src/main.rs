//! `fastsmtpd`: command line -> [`Config`] -> [`fastsmtpd::server::run`]. Nothing else.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use clap::{Parser, ValueEnum};
use fastsmtpd::config::{
    self, ApiSettings, Auth, CaptureSettings, Config, ConfigError, Faults, Limits, Stores, Tls,
    TlsSource,
};
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
    args_conflicts_with_subcommands = true,
    after_help = "Durations (DURATION): a number, fractions allowed, and a unit: ns, us (or µs), ms, s, \
                  m, h, d (30s, 1.5m, 200ms); a bare number is seconds. Sizes (SIZE): a whole \
                  number and a unit, any case: B, K/KB/KiB, M/MB/MiB, G/GB/GiB, all powers of 1024 \
                  (10M = 10 MiB); a bare number is bytes.\n\n\
                  Signals: SIGINT/SIGTERM shut down gracefully (a second one exits at once with \
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
    /// How long a TLS handshake (implicit, or after STARTTLS) may take; then the connection
    /// is closed. From 1s to 1h.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = config::parse_duration,
          allow_hyphen_values = true)]
    tls_handshake_timeout: Duration,
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
    /// Password checks queued or running at once per client address (IPv4, IPv6 /64); more
    /// get "454 4.7.0". Keep it above the connection pools your senders open from one host.
    #[arg(long, value_name = "N", default_value_t = fastsmtpd::auth::DEFAULT_MAX_PENDING_PER_CLIENT,
          value_parser = count::<u32>(1, u32::MAX as u64), allow_hyphen_values = true)]
    auth_max_pending_per_ip: u32,
    /// Failed AUTH attempts per client address within --auth-failure-window (a burst of N,
    /// then one more per window/N); past it every AUTH of that address gets "454 4.7.0" at
    /// once, unchecked (0: no limit).
    #[arg(long, value_name = "N", default_value_t = fastsmtpd::auth::DEFAULT_MAX_FAILURES,
          value_parser = count::<u32>(0, u32::MAX as u64), allow_hyphen_values = true)]
    auth_max_failures_per_ip: u32,
    /// The window of --auth-max-failures-per-ip. From 1s to 1d.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = config::parse_duration,
          allow_hyphen_values = true)]
    auth_failure_window: Duration,
    /// Threads that check password hashes (--auth file:), 1 to 64. A bcrypt of cost 12 takes
    /// about a quarter of a second of one core: N threads answer N logins at a time.
    #[arg(long, value_name = "N", default_value_t = fastsmtpd::auth::DEFAULT_THREADS,
          value_parser = count::<usize>(1, fastsmtpd::auth::MAX_THREADS as u64),
          allow_hyphen_values = true)]
    auth_threads: usize,
    /// TLS handshakes in progress at once per client address on each worker; its further
    /// connections wait their turn.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_TLS_MAX_HANDSHAKES_PER_IP,
          value_parser = count::<u32>(1, u32::MAX as u64), allow_hyphen_values = true)]
    tls_max_handshakes_per_ip: u32,
    /// Full (not resumed) TLS handshakes per client address and second, a burst of as many;
    /// past it a connection is closed without a byte (0: no limit, e.g. to measure
    /// handshakes/s from one host).
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_TLS_HANDSHAKE_RATE_PER_IP,
          value_parser = count::<u32>(0, u32::MAX as u64), allow_hyphen_values = true)]
    tls_handshake_rate_per_ip: u32,
    /// Worker threads (event loops) [default: number of cores].
    #[arg(long, value_name = "N", value_parser = count::<u16>(1, 1024), allow_hyphen_values = true)]
    threads: Option<u16>,
    /// Name used in the greeting, the EHLO reply and Received: headers (printable ASCII, no
    /// spaces).
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    hostname: String,
    /// Largest message accepted (advertised with SIZE), at least 1 byte.
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = config::parse_bytes,
          allow_hyphen_values = true)]
    max_message_size: u64,
    /// Most recipients per message (RFC 5321 asks for at least 100), 1 to 100000; more get
    /// "452 4.5.3".
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_RECIPIENTS,
          value_parser = count::<usize>(1, config::MAX_MAX_RECIPIENTS as u64),
          allow_hyphen_values = true)]
    max_recipients: usize,
    /// Most connections at once; more get "421 4.7.0" and are closed. Lowered at start to
    /// fit the open-file limit (said on stderr).
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_CONNECTIONS,
          value_parser = count::<usize>(1, u32::MAX as u64), allow_hyphen_values = true)]
    max_connections: usize,
    /// Idle and per-command timeout (RFC 5321 asks for at least 5m). From 1s to 1d.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = config::parse_duration,
          allow_hyphen_values = true)]
    idle_timeout: Duration,
    /// Minimum data rate during DATA/BDAT, bytes per second: a SIZE, optionally with /s
    /// (500, 1K/s); 0: no rate check.
    #[arg(long, value_name = "RATE", default_value = "500", value_parser = config::parse_data_rate,
          allow_hyphen_values = true)]
    min_data_rate: u64,
    /// Longest command line, CRLF included: 512 bytes to 64KiB (a partial line is kept per
    /// connection, so this bounds what one costs).
    #[arg(long, value_name = "SIZE", default_value = "2048", value_parser = config::parse_bytes,
          allow_hyphen_values = true)]
    max_line_length: u64,
    /// Failed commands tolerated per session before "421 4.7.0".
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_ERRORS,
          value_parser = count::<u32>(1, u32::MAX as u64), allow_hyphen_values = true)]
    max_errors: u32,
    /// Junk commands (HELO, EHLO, RSET, NOOP, VRFY, HELP, empty BDAT chunks, refused messages)
    /// tolerated between accepted messages before "421 4.7.0", so no client holds a slot for ever.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_JUNK_COMMANDS,
          value_parser = count::<u32>(1, u32::MAX as u64), allow_hyphen_values = true)]
    max_junk_commands: u32,
    /// Connections at once from one client address (IPv4, or IPv6 /64); more get "421 4.7.0"
    /// and are closed. A load generator on one host connects from one address: raise this
    /// above its connection count.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_CONNECTIONS_PER_IP as u64,
          value_parser = count::<u64>(1, u32::MAX as u64), allow_hyphen_values = true)]
    max_connections_per_ip: u64,
    /// Bare CR or LF inside message data: refuse the message ("550 5.5.2 ... (see --bare-lf
    /// keep)") or keep the bytes.
    #[arg(long, value_enum, default_value_t = BareLf::Reject)]
    bare_lf: BareLf,
    /// How long a message in flight may take to finish after SIGINT/SIGTERM (a second signal
    /// exits at once). Up to 1d.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = config::parse_duration,
          allow_hyphen_values = true)]
    shutdown_grace: Duration,
    /// Print a one-line summary this often: 0 (exactly: off) or from 100ms to 1d.
    #[arg(long, value_name = "DURATION", default_value = "0",
          value_parser = config::parse_stats_interval, allow_hyphen_values = true)]
    stats_interval: Duration,
    /// Keep accepted messages (repeatable): maildir:DIR (LF line ends, X-Original-To per
    /// recipient), eml:DIR (the bytes as received) or jsonl:FILE; missing directories are
    /// created. A 250 is sent only once every store has the message on disk. A jsonl FILE
    /// renamed or deleted is started anew at the path (SIGHUP does it at once). jsonl:- writes
    /// to stdout (the server's own lines then go to stderr) and jsonl:FIFO to a pipe: not
    /// durable (no fsync), a 250 means the line was written. `memory` keeps messages in the
    /// capture store (not durable; see --capture-memory, --api), each visible before its 250;
    /// beside file stores it keeps a copy of what they stored. Default: discard (memory with
    /// --api).
    #[arg(long = "store", value_name = "memory|KIND:PATH")]
    stores: Vec<fastsmtpd::store::StoreSpec>,
    /// The capture store's budget (--store memory, --api): raw messages plus the index
    /// overhead charged per message (~200 bytes), at least 64KiB [default: 256MiB]. Enforced
    /// at each insert (see --on-full).
    #[arg(long, value_name = "SIZE", value_parser = config::parse_bytes, allow_hyphen_values = true)]
    capture_memory: Option<u64>,
    /// The most messages the capture store keeps [default: no limit but the budget].
    #[arg(long, value_name = "N", value_parser = count::<usize>(1, u32::MAX as u64),
          allow_hyphen_values = true)]
    capture_max_messages: Option<usize>,
    /// Drop captured messages older than this, from 1s to 365d [default: no age limit].
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration,
          allow_hyphen_values = true)]
    capture_max_age: Option<Duration>,
    /// When the capture store is full: evict the oldest messages (counted, their ids then
    /// answer 410 Gone), or tempfail the new one with "452 4.3.1" (the sender retries) [default:
    /// evict].
    #[arg(long, value_enum, value_name = "evict|tempfail")]
    on_full: Option<OnFull>,
    /// Serve the HTTP API over the capture store on ADDR (--api alone: 127.0.0.1:8025);
    /// without --store it means --store memory. Beyond loopback, give --api-token (else a
    /// loud warning says it is open).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8025")]
    api: Option<SocketAddr>,
    /// The bearer token every API request must carry (also from the environment variable
    /// FASTSMTPD_API_TOKEN, so it need not show in `ps`; the flag wins).
    #[arg(long, value_name = "TOKEN")]
    api_token: Option<String>,
    /// The one origin allowed to call the API cross-origin, e.g. http://localhost:3000
    /// [default: same origin only].
    #[arg(long, value_name = "ORIGIN")]
    api_cors: Option<String>,
    /// Threads that write the stores (and group their fsyncs), 1 to 64.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_STORE_THREADS,
          value_parser = count::<usize>(1, config::MAX_STORE_THREADS as u64),
          allow_hyphen_values = true)]
    store_threads: usize,
    /// Most messages a storage thread makes durable together (1: no group commit).
    #[arg(long, value_name = "N", default_value_t = fastsmtpd::store::DEFAULT_MAX_BATCH,
          value_parser = count::<usize>(1, u32::MAX as u64), allow_hyphen_values = true)]
    store_batch: usize,
    /// Message content in flight to the storage threads at most, at least 64KiB: past it,
    /// connections receiving content are not read until the threads catch up (TCP
    /// backpressure; nobody is refused for it).
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = config::parse_bytes,
          allow_hyphen_values = true)]
    store_buffer: u64,
    /// The relay's spool directory (created if missing): every accepted message, with a
    /// Received: line in front, is on disk there (written, fdatasync, directory fsync) before
    /// its 250; "452 4.3.1" when it cannot be. Needs --relay-to.
    #[arg(long, value_name = "DIR")]
    spool: Option<std::path::PathBuf>,
    /// Relay every accepted message to these next hops, in order (a smarthost): HOST:PORT
    /// items separated by commas, names resolved at start. Needs --spool.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT...]", value_parser = parse_relay_to)]
    relay_to: Option<NextHops>,
    /// The relay's delays between delivery attempts, e.g. 1s,2s,4s (the last one repeats
    /// until --queue-lifetime ends; at most ±10% jitter) [default: 300s doubling, at most
    /// 4000s].
    #[arg(long, value_name = "LIST", value_parser = parse_retry)]
    retry: Option<fastsmtpd::relay::schedule::Backoff>,
    /// How long after its arrival the relay keeps trying a message; then its failed
    /// recipients are reported to the sender.
    #[arg(long, value_name = "DURATION", default_value = "5d", value_parser = config::parse_duration,
          allow_hyphen_values = true)]
    queue_lifetime: Duration,
    /// Send delivery status notifications (RFC 3464) to the sender of relayed mail that
    /// failed, or as its NOTIFY asks, and offer DSN (RFC 3461) to clients (off: none, and no
    /// DSN offered, for benchmarks).
    #[arg(long, value_enum, value_name = "on|off", default_value = "on")]
    dsn: OnOff,
    /// STARTTLS toward the next hops: required (encrypt and verify the certificate against
    /// the system roots or --relay-ca and the --relay-to name; else the mail waits),
    /// opportunistic (encrypt when offered, any certificate), off.
    #[arg(
        long,
        value_enum,
        value_name = "required|opportunistic|off",
        default_value = "opportunistic"
    )]
    relay_tls: RelayTls,
    /// The roots trusted by --relay-tls required instead of the system's (a PEM bundle).
    #[arg(long, value_name = "FILE")]
    relay_ca: Option<std::path::PathBuf>,
    /// AUTH toward the next hops, inside TLS only: USER:PASSWORD, or file:PATH naming a file
    /// with that line (keeps the password out of ps).
    #[arg(long, value_name = "USER:PASS|file:PATH")]
    relay_auth: Option<String>,
    /// Once a relayed message has waited this long with a recipient deferred, send its sender
    /// one delay warning ("Action: delayed", RFC 3464) for the recipients whose NOTIFY allows
    /// DELAY (absent NOTIFY does) [default: none].
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration,
          allow_hyphen_values = true)]
    delay_warning: Option<Duration>,
    /// Relay only the recipients at these domains (commas between; example.com is that
    /// domain, .example.com its subdomains); the stores still keep every message, and a
    /// message with no such recipient is not relayed [default: every recipient]. Needs
    /// --relay-to.
    #[arg(long, value_name = "DOMAIN[,DOMAIN...]", value_parser = parse_relay_domains)]
    relay_domains: Option<fastsmtpd::relay::domains::RelayDomains>,
    /// Relay only the mail that arrives on these listeners (each one of --listen or
    /// --listen-tls, as given there; commas between); mail on the others is kept by the
    /// stores, or discarded, as a sink's [default: every listener]. Needs --relay-to.
    #[arg(long, value_name = "ADDR[,ADDR...]", value_parser = parse_relay_listen)]
    relay_listen: Option<RelayListeners>,
    /// How new relay connections choose among the --relay-to hops: in-order (later hops are
    /// fallbacks) or spread (round the healthy ones in turn).
    #[arg(
        long,
        value_enum,
        value_name = "in-order|spread",
        default_value = "in-order"
    )]
    relay_order: RelayOrder,
    /// The most connections the relay opens to one next hop (1 to 1000).
    #[arg(long, value_name = "N", default_value = "16", value_parser = count::<usize>(1, 1000),
          allow_hyphen_values = true)]
    relay_connections: usize,
    /// The most messages one relay connection carries before its QUIT (1 to 100000).
    #[arg(long, value_name = "N", default_value = "100",
          value_parser = count::<usize>(1, 100_000), allow_hyphen_values = true)]
    relay_messages_per_connection: usize,
    /// Shut down gracefully after this many accepted messages.
    #[arg(long, value_name = "N", value_parser = count::<u64>(1, u64::MAX),
          allow_hyphen_values = true)]
    exit_after_messages: Option<u64>,
    /// Shut down gracefully after this many ended sessions.
    #[arg(long, value_name = "N", value_parser = count::<u64>(1, u64::MAX),
          allow_hyphen_values = true)]
    exit_after_sessions: Option<u64>,
    /// Inject a fault (repeatable): POINT [SELECTOR...] ACTION. POINT: connect, helo, ehlo,
    /// mail, rcpt, data, eod (end of data, before its 250), bdat, rset, noop, quit.
    /// SELECTORs, all optional, all must hold: from=GLOB, to=GLOB (not at connect; `*` any
    /// text, case-insensitive), nth=N (only the Nth occurrence that reaches this rule and
    /// passes its other selectors; an earlier rule that fired takes the occurrence), every=N, p=P
    /// (probability 0..1, see --seed), rate=N/PERIOD (only while this client address goes
    /// beyond N per PERIOD, with a burst of N: a bucket of N refilled at N per PERIOD, as
    /// Postfix's anvil counts; PERIOD s, m, h, d or a DURATION: 100/m, 5/10s). ACTION:
    /// reply=CODE [X.Y.Z] TEXT (a 4xx/5xx instead of the command; takes the rest of the rule;
    /// without X.Y.Z the reply gets X.0.0 of its class), disconnect (close without a word),
    /// disconnect=421, delay=DURATION or delay=D1..D2 (up to 1h; optionally followed by
    /// reply=), or at rcpt greylist=DURATION (451 4.7.1 to each new client, sender and
    /// recipient until it has passed, up to 1d; optionally followed by reply=). A rule is
    /// asked only about a command or message the server would accept: the protocol's syntax,
    /// sequence and limit checks come first, so a sender's bug still gets its 503. Rules are
    /// tried in order, those of --fault-file first, and the first that fires wins, so a file's
    /// scenario runs as written (its nth/every/p counts included): a --fault rule acts only
    /// where no file rule fired, it cannot override one. A rule that does not parse stops the
    /// server at start. E.g. 'rcpt to=*@bad.example reply=550 5.1.1 No such user'.
    #[arg(long = "fault", value_name = "RULE")]
    faults: Vec<String>,
    /// Fault rules from a TOML file: rules = ["...", ...] and an optional seed = N. Its rules
    /// come before the --fault rules (see --fault); --seed wins over its seed.
    #[arg(long, value_name = "FILE")]
    fault_file: Option<std::path::PathBuf>,
    /// Seed for probabilistic faults and random delays (same seed, same faults) [default:
    /// the --fault-file's seed, else 0].
    #[arg(long, value_name = "N", value_parser = count::<u64>(0, u64::MAX),
          allow_hyphen_values = true)]
    seed: Option<u64>,
    /// Serve Prometheus text metrics over HTTP on this address (e.g. 127.0.0.1:9025), at
    /// GET /metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Print one line per message attempt (client, envelope, size, final reply) on stdout
    /// (SIGHUP cannot reopen stdout: rotate it outside, e.g. with copytruncate).
    #[arg(long)]
    log_sessions: bool,
    /// A subcommand instead of the server (`fastsmtpd await ...`, `fastsmtpd ready ...`,
    /// `fastsmtpd queue ...`).
    #[command(subcommand)]
    probe: Option<Probe>,
}

/// The subcommands: probes of a running server, for shells and compose health checks
/// (without one, `fastsmtpd` runs the server).
#[derive(Debug, clap::Subcommand)]
enum Probe {
    /// Wait for mail through the capture API (GET /api/v1/await) and print the JSON result.
    /// Exit 0 when satisfied, 1 on a timeout (408), with --expect-none a match (409), or
    /// when the --mailbox expired or was deleted (410), 2 on a usage or connection error (a
    /// line on stderr says which).
    Await(AwaitCli),
    /// Poll the API's /readyz (and with --smtp an SMTP greeting 220) until ready. Exit 0
    /// when ready, 1 when not by --timeout.
    Ready(ReadyCli),
    /// The relay's queue (--spool DIR): list, show, shape, retry, bounce, delete, on a
    /// running server (through DIR/control.sock) or a stopped one's spool. Exit 0 when
    /// done, 1 when no message has the id, 2 on a usage or I/O error (a line on stderr).
    Queue(QueueCli),
}

/// `fastsmtpd queue`.
#[derive(Debug, clap::Args)]
struct QueueCli {
    /// The relay's spool directory (the server's --spool).
    #[arg(long, value_name = "DIR", global = true)]
    spool: Option<std::path::PathBuf>,
    /// Print JSON lines (one object per message) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// What to do.
    #[command(subcommand)]
    command: QueueCommandCli,
}

/// `fastsmtpd queue`'s commands.
#[derive(Debug, clap::Subcommand)]
enum QueueCommandCli {
    /// One entry per message, as `postqueue -p` prints them (`*` after the id: a connection
    /// has it), with each recipient not yet final under its last reply.
    List,
    /// One message: its envelope, and each recipient's state, attempts and last reply.
    Show {
        /// The message's id, as `queue list` prints it.
        id: String,
    },
    /// Recipients not yet final by age, as `qshape` counts them (buckets in minutes: 5 10
    /// 20 40 80 160 320 640 1280 1280+), a row per recipient domain or next hop, total first.
    Shape {
        /// The rows: recipient domains, or next hops.
        #[arg(long, value_enum, default_value = "domain")]
        by: ShapeByCli,
    },
    /// Try a message's deferred recipients now (or every message's, with --all).
    Retry {
        /// The message's id.
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Every message in the queue.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Fail every recipient of a message not yet delivered or failed ("5.0.0 bounced by the
    /// administrator"); the failure notification follows the usual rules.
    Bounce {
        /// The message's id.
        id: String,
    },
    /// Remove a message (or every message, with --all) from the queue, with no
    /// notification.
    Delete {
        /// The message's id.
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Every message in the queue.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

/// `queue shape --by`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ShapeByCli {
    /// A row per recipient domain.
    Domain,
    /// A row per next hop.
    Hop,
}

/// Runs `fastsmtpd queue`; its exit code.
fn queue(cli: QueueCli) -> ExitCode {
    use fastsmtpd::relay::admin::render::ShapeBy;
    use fastsmtpd::relay::admin::tool::{run_queue, QueueArgs, QueueCommand, EXIT_ERROR};
    let Some(spool) = cli.spool else {
        eprintln!("fastsmtpd queue: --spool DIR is required (the server's spool directory)");
        return ExitCode::from(EXIT_ERROR);
    };
    let command = match cli.command {
        QueueCommandCli::List => QueueCommand::List,
        QueueCommandCli::Show { id } => QueueCommand::Show(id),
        QueueCommandCli::Shape { by } => QueueCommand::Shape(match by {
            ShapeByCli::Domain => ShapeBy::Domain,
            ShapeByCli::Hop => ShapeBy::Hop,
        }),
        QueueCommandCli::Retry { id, .. } => QueueCommand::Retry(id),
        QueueCommandCli::Bounce { id } => QueueCommand::Bounce(id),
        QueueCommandCli::Delete { id, .. } => QueueCommand::Delete(id),
    };
    let args = QueueArgs {
        spool,
        command,
        json: cli.json,
    };
    ExitCode::from(run_queue(
        &args,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    ))
}

/// `fastsmtpd await`.
#[derive(Debug, clap::Args)]
struct AwaitCli {
    /// The API's base URL (plain http).
    #[arg(long, value_name = "URL", default_value = fastsmtpd::probe::DEFAULT_API)]
    api: String,
    /// An envelope recipient the messages must have (repeatable: each must hold).
    #[arg(long, value_name = "ADDRESS")]
    rcpt: Vec<String>,
    /// The envelope sender the messages must have.
    #[arg(long, value_name = "ADDRESS")]
    from: Option<String>,
    /// The decoded subject the messages must have (equal, trimmed).
    #[arg(long, value_name = "TEXT")]
    subject: Option<String>,
    /// A per-test mailbox's id (POST /api/v1/mailboxes): only its messages; exit 1 if it
    /// expired or was deleted, before or while waiting.
    #[arg(long, value_name = "ID")]
    mailbox: Option<String>,
    /// How many matching messages to wait for, 1 to 500.
    #[arg(long, value_name = "N", value_parser = count::<u32>(1, fastsmtpd::api::MAX_COUNT as u64))]
    count: Option<u32>,
    /// A cursor (from GET /api/v1/cursor or an earlier result's "cursor"): only messages after
    /// it count [default: 0, everything kept].
    #[arg(long, value_name = "CURSOR")]
    after: Option<String>,
    /// How long the server waits, up to 5m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = config::parse_duration)]
    timeout: Duration,
    /// Succeed when no matching message arrives by the timeout (exit 1 if one does).
    #[arg(long)]
    expect_none: bool,
    /// The API's bearer token [default: $FASTSMTPD_API_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

/// `fastsmtpd ready`.
#[derive(Debug, clap::Args)]
struct ReadyCli {
    /// The API's base URL (plain http): its /readyz must answer 200.
    #[arg(long, value_name = "URL", default_value = fastsmtpd::probe::DEFAULT_API)]
    api: String,
    /// Also wait for an SMTP greeting 220 on this HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    smtp: Option<String>,
    /// How long to keep trying.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = config::parse_duration)]
    timeout: Duration,
}

/// Runs a probe; its exit code.
fn probe(probe: Probe) -> ExitCode {
    use fastsmtpd::probe::{run_await, run_ready, AwaitArgs, ReadyArgs};
    let code = match probe {
        Probe::Await(cli) => run_await(
            &AwaitArgs {
                api: cli.api,
                rcpt: cli.rcpt,
                from: cli.from,
                subject: cli.subject,
                mailbox: cli.mailbox,
                count: cli.count,
                after: cli.after,
                timeout: cli.timeout,
                expect_none: cli.expect_none,
                token: cli
                    .token
                    .or_else(|| std::env::var(API_TOKEN_ENV).ok().filter(|t| !t.is_empty())),
            },
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        ),
        Probe::Queue(cli) => return queue(cli),
        Probe::Ready(cli) => run_ready(
            &ReadyArgs {
                api: cli.api,
                smtp: cli.smtp,
                timeout: cli.timeout,
            },
            &mut std::io::stderr().lock(),
        ),
    };
    ExitCode::from(code)
}

/// A value parser for a whole number from `min` to `max` of type `T` (clap's own range
/// check says Rust's `1..=4294967295`; this one says "between 1 and 4294967295").
fn count<T: TryFrom<u64>>(
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |text| {
        let n = fastsmtpd::units::parse_count(text, min, max)?;
        T::try_from(n).map_err(|_| format!("{text:?}: must be between {min} and {max}"))
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BareLf {
    Reject,
    Keep,
}

/// `--relay-order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RelayOrder {
    InOrder,
    Spread,
}

/// `--relay-tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RelayTls {
    Required,
    Opportunistic,
    Off,
}

/// The relay's TLS and AUTH into `relay` from `--relay-tls`, `--relay-ca` (read now: a file
/// that cannot be read, or holds no certificate, stops the start with exit status 2) and
/// `--relay-auth` (parsed here, not by clap, whose errors would repeat the password).
fn relay_security(
    relay: &mut config::Relay,
    tls: RelayTls,
    ca: Option<&std::path::Path>,
    auth: Option<&str>,
) -> Result<(), String> {
    use fastsmtpd::relay::client::session::TlsPolicy;
    relay.tls = match tls {
        RelayTls::Required => TlsPolicy::Required,
        RelayTls::Opportunistic => TlsPolicy::Opportunistic,
        RelayTls::Off => TlsPolicy::Off,
    };
    relay.ca = ca
        .map(fastsmtpd::relay::deliver::tls::read_ca_file)
        .transpose()?;
    relay.credentials = auth.map(config::parse_relay_auth).transpose()?;
    Ok(())
}

/// `--dsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// `--relay-to`'s next hops (a type of its own: clap reads a `Vec` field as a repeatable
/// flag).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NextHops(Vec<config::NextHop>);

/// Reads `--relay-to` ([`config::parse_next_hops`]).
fn parse_relay_to(text: &str) -> Result<NextHops, String> {
    config::parse_next_hops(text).map(NextHops)
}

/// `--relay-listen`'s addresses (a newtype: clap takes a `Vec` as a repeated flag).
#[derive(Debug, Clone)]
struct RelayListeners(Vec<std::net::SocketAddr>);

/// Reads `--relay-listen`: socket addresses, commas between.
fn parse_relay_listen(text: &str) -> Result<RelayListeners, String> {
    text.split(',')
        .map(|item| {
            let item = item.trim();
            item.parse::<std::net::SocketAddr>().map_err(|_| {
                format!("{item:?} is not an address with a port (127.0.0.1:2525, [::1]:2525)")
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(RelayListeners)
}

/// Reads `--relay-domains` ([`fastsmtpd::relay::domains::RelayDomains::parse`]).
fn parse_relay_domains(text: &str) -> Result<fastsmtpd::relay::domains::RelayDomains, String> {
    fastsmtpd::relay::domains::RelayDomains::parse(text).map_err(|e| e.to_string())
}

/// Reads `--retry` ([`fastsmtpd::relay::schedule::RetryPolicy::parse_list`]).
fn parse_retry(text: &str) -> Result<fastsmtpd::relay::schedule::Backoff, String> {
    fastsmtpd::relay::schedule::RetryPolicy::parse_list(text).map_err(|e| e.to_string())
}

/// The relay's settings from `--spool`, `--relay-to`, `--retry`, `--queue-lifetime` and
/// `--dsn` (the pairing of `--spool` and `--relay-to` is checked by `Config::validate`).
fn relay_settings(
    spool: Option<std::path::PathBuf>,
    next_hops: Option<NextHops>,
    retry: Option<fastsmtpd::relay::schedule::Backoff>,
    lifetime: Duration,
    dsn: OnOff,
) -> Result<config::Relay, String> {
    use fastsmtpd::relay::schedule::{
        Backoff, RetryPolicy, POSTFIX_FIRST_DELAY, POSTFIX_MAX_DELAY,
    };
    let backoff = retry.unwrap_or(Backoff::Doubling {
        first: POSTFIX_FIRST_DELAY,
        max: POSTFIX_MAX_DELAY,
    });
    let retry = RetryPolicy::new(backoff, lifetime).map_err(|e| e.to_string())?;
    Ok(config::Relay {
        spool,
        next_hops: next_hops.map(|hops| hops.0).unwrap_or_default(),
        retry,
        dsn: dsn == OnOff::On,
        ..config::Relay::default()
    })
}

/// `--on-full`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnFull {
    Evict,
    Tempfail,
}

/// Where `--api-token` may also come from.
const API_TOKEN_ENV: &str = "FASTSMTPD_API_TOKEN";

/// The API's settings from `--api`, `--api-token` (else `env_token`, FASTSMTPD_API_TOKEN's
/// value) and `--api-cors`: `--api-token` and `--api-cors` need `--api` (the environment
/// variable alone is no request for an API, and is ignored without it).
fn api_settings(
    addr: Option<SocketAddr>,
    token: Option<String>,
    cors: Option<String>,
    env_token: Option<String>,
) -> Result<Option<ApiSettings>, ConfigError> {
    match addr {
        None if token.is_some() || cors.is_some() => Err(ConfigError::ApiOptionWithoutApi),
        None => Ok(None),
        Some(addr) => Ok(Some(ApiSettings {
            addr,
            token: token.or(env_token.filter(|t| !t.is_empty())),
            cors,
        })),
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(subcommand) = cli.probe.take() {
        return probe(subcommand);
    }
    let mut config = Config {
        listen: cli.listen,
        hostname: cli.hostname,
        bare_lf: match cli.bare_lf {
            BareLf::Reject => BareLfPolicy::Reject,
            BareLf::Keep => BareLfPolicy::Keep,
        },
        shutdown_grace: cli.shutdown_grace,
        stats_interval: (!cli.stats_interval.is_zero()).then_some(cli.stats_interval),
        exit_after_messages: cli.exit_after_messages,
        exit_after_sessions: cli.exit_after_sessions,
        metrics: cli.metrics,
        log_sessions: cli.log_sessions,
        limits: Limits {
            max_line_len: usize::try_from(cli.max_line_length).unwrap_or(usize::MAX),
            max_message_size: cli.max_message_size,
            max_recipients: cli.max_recipients,
            max_errors: cli.max_errors,
            max_junk_commands: cli.max_junk_commands,
            max_connections_per_ip: usize::try_from(cli.max_connections_per_ip)
                .unwrap_or(usize::MAX),
            max_connections: cli.max_connections,
            idle_timeout: cli.idle_timeout,
            min_data_rate: cli.min_data_rate,
        },
        tls: Tls {
            source: match (cli.tls_cert, cli.tls_key, cli.tls_self_signed) {
                (Some(cert), Some(key), _) => Some(TlsSource::Files { cert, key }),
                (_, _, true) => Some(TlsSource::SelfSigned),
                _ => None,
            },
            listen: cli.listen_tls,
            self_signed_out: cli.tls_self_signed_out,
            handshake_timeout: cli.tls_handshake_timeout,
            max_handshakes_per_ip: cli.tls_max_handshakes_per_ip,
            handshake_rate_per_ip: cli.tls_handshake_rate_per_ip,
            require: cli.require_tls,
        },
        auth: Auth {
            source: cli.auth,
            plaintext: cli.auth_plaintext,
            required: cli.auth_required,
            limits: fastsmtpd::auth::AuthLimits {
                pending_per_client: cli.auth_max_pending_per_ip,
                failures: fastsmtpd::peer::RateLimit {
                    events: cli.auth_max_failures_per_ip,
                    window: cli.auth_failure_window,
                },
            },
            threads: cli.auth_threads,
        },
        stores: Stores {
            specs: cli.stores,
            threads: cli.store_threads,
            batch: cli.store_batch,
            buffer: usize::try_from(cli.store_buffer).unwrap_or(usize::MAX),
        },
        faults: Faults {
            rules: cli.faults,
            seed: cli.seed.unwrap_or(0),
            file: None,
        },
        capture: CaptureSettings {
            memory: cli.capture_memory,
            max_messages: cli.capture_max_messages,
            max_age: cli.capture_max_age,
            on_full: cli.on_full.map(|on_full| match on_full {
                OnFull::Evict => fastsmtpd::capture::OnFull::EvictOldest,
                OnFull::Tempfail => fastsmtpd::capture::OnFull::Refuse,
            }),
        },
        ..Config::default()
    };
    config.api = match api_settings(
        cli.api,
        cli.api_token,
        cli.api_cors,
        std::env::var(API_TOKEN_ENV).ok(),
    ) {
        Ok(api) => api,
        Err(error) => {
            fastsmtpd::warn_line!("fastsmtpd: error: {error}");
            return ExitCode::from(2);
        }
    };
    config.relay = match relay_settings(
        cli.spool,
        cli.relay_to,
        cli.retry,
        cli.queue_lifetime,
        cli.dsn,
    ) {
        Ok(relay) => relay,
        Err(error) => {
            fastsmtpd::warn_line!("fastsmtpd: error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = relay_security(
        &mut config.relay,
        cli.relay_tls,
        cli.relay_ca.as_deref(),
        cli.relay_auth.as_deref(),
    ) {
        fastsmtpd::warn_line!("fastsmtpd: error: {error}");
        return ExitCode::from(2);
    }
    config.relay.delay_warning = cli.delay_warning;
    config.relay.domains = cli.relay_domains;
    config.relay.listeners = cli.relay_listen.map(|listeners| listeners.0);
    config.relay.hop_order = match cli.relay_order {
        RelayOrder::InOrder => fastsmtpd::relay::schedule::HopOrder::InOrder,
        RelayOrder::Spread => fastsmtpd::relay::schedule::HopOrder::Spread,
    };
    config.relay.connections_per_hop = cli.relay_connections;
    config.relay.messages_per_connection = cli.relay_messages_per_connection;
    // `--api` alone reads mail kept in memory (issue 18: memory is the default store then).
    if config.api.is_some() && config.stores.specs.is_empty() {
        config
            .stores
            .specs
            .push(fastsmtpd::store::StoreSpec::Memory);
    }
    if let Some(path) = &cli.fault_file {
        match fastsmtpd::fault::FaultRules::read_file(path) {
            Ok((rules, seed)) => {
                // The file's rules first, then --fault's: the first rule that fires wins, so
                // the file's scenario runs as written and the command line only adds to it.
                // Unparsed: validate parses them once, naming the file for its rules.
                config.faults.file = Some(fastsmtpd::fault::RulesFile {
                    path: path.clone(),
                    rules: rules.len(),
                });
                let command_line = std::mem::replace(&mut config.faults.rules, rules);
                config.faults.rules.extend(command_line);
                // --seed on the command line wins over the file's.
                config.faults.seed = cli.seed.or(seed).unwrap_or(0);
            }
            Err(message) => {
                fastsmtpd::warn_line!("fastsmtpd: error: {message}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(threads) = cli.threads {
        config.threads = usize::from(threads);
    }
    // Checked (and the fault rules parsed) here, once; the server starts from the result.
    let config = match config.validate() {
        Ok(config) => config,
        Err(error) => {
            fastsmtpd::warn_line!("fastsmtpd: error: {error}");
            return ExitCode::from(2);
        }
    };
    match fastsmtpd::server::run(config) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            fastsmtpd::warn_line!("fastsmtpd: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults `--help` shows (as text, in units) are the library's defaults.
    #[test]
    fn command_line_defaults_are_the_config_defaults() {
        let cli = Cli::try_parse_from(["fastsmtpd"]).unwrap();
        let defaults = Config::default();
        assert_eq!(cli.tls_handshake_timeout, defaults.tls.handshake_timeout);
        assert_eq!(cli.max_message_size, defaults.limits.max_message_size);
        assert_eq!(cli.idle_timeout, defaults.limits.idle_timeout);
        assert_eq!(cli.min_data_rate, defaults.limits.min_data_rate);
        assert_eq!(cli.max_line_length, defaults.limits.max_line_len as u64);
        assert_eq!(cli.shutdown_grace, defaults.shutdown_grace);
        assert_eq!(
            (!cli.stats_interval.is_zero()).then_some(cli.stats_interval),
            defaults.stats_interval
        );
        assert_eq!(cli.auth_threads, defaults.auth.threads);
        assert_eq!(cli.max_connections, defaults.limits.max_connections);
        assert_eq!(
            cli.max_connections_per_ip,
            defaults.limits.max_connections_per_ip as u64
        );
        assert_eq!(cli.max_recipients, defaults.limits.max_recipients);
        assert_eq!(cli.max_errors, defaults.limits.max_errors);
        assert_eq!(cli.max_junk_commands, defaults.limits.max_junk_commands);
        assert_eq!(cli.store_threads, defaults.stores.threads);
        assert_eq!(cli.store_batch, defaults.stores.batch);
        assert_eq!(cli.store_buffer, defaults.stores.buffer as u64);
        assert_eq!(
            cli.auth_max_pending_per_ip,
            defaults.auth.limits.pending_per_client
        );
        assert_eq!(
            cli.auth_max_failures_per_ip,
            defaults.auth.limits.failures.events
        );
        assert_eq!(
            cli.auth_failure_window,
            defaults.auth.limits.failures.window
        );
        assert_eq!(
            cli.tls_max_handshakes_per_ip,
            defaults.tls.max_handshakes_per_ip
        );
        assert_eq!(
            cli.tls_handshake_rate_per_ip,
            defaults.tls.handshake_rate_per_ip
        );
    }

    /// The capture and API flags: defaults, `--api` alone, the token from the environment,
    /// and the refusal of `--api-token`/`--api-cors` without `--api`.
    #[test]
    fn capture_and_api_flags() {
        let cli = Cli::try_parse_from(["fastsmtpd"]).unwrap();
        assert_eq!(cli.capture_memory, None);
        assert_eq!(
            CaptureSettings::default().limits().max_bytes,
            config::DEFAULT_CAPTURE_MEMORY
        );
        let cli = Cli::try_parse_from([
            "fastsmtpd",
            "--store",
            "memory",
            "--capture-memory",
            "1MiB",
            "--capture-max-messages",
            "10",
            "--capture-max-age",
            "1h",
            "--on-full",
            "tempfail",
            "--api",
        ])
        .unwrap();
        assert_eq!(cli.stores, [fastsmtpd::store::StoreSpec::Memory]);
        assert_eq!(cli.capture_memory, Some(1 << 20));
        assert_eq!(cli.capture_max_messages, Some(10));
        assert_eq!(cli.capture_max_age, Some(Duration::from_secs(3600)));
        assert!(matches!(cli.on_full, Some(OnFull::Tempfail)));
        assert_eq!(cli.api, Some(config::DEFAULT_API_ADDR));
        let cli = Cli::try_parse_from(["fastsmtpd", "--api", "0.0.0.0:9000"]).unwrap();
        assert_eq!(cli.api, Some("0.0.0.0:9000".parse().unwrap()));
        assert!(Cli::try_parse_from(["fastsmtpd", "--capture-max-messages", "0"]).is_err());
        assert!(Cli::try_parse_from(["fastsmtpd", "--on-full", "drop"]).is_err());

        let addr = Some(config::DEFAULT_API_ADDR);
        let from_env = api_settings(addr, None, None, Some("secret".into())).unwrap();
        assert_eq!(from_env.unwrap().token.as_deref(), Some("secret"));
        let flag_wins = api_settings(addr, Some("flag".into()), None, Some("env".into())).unwrap();
        assert_eq!(flag_wins.unwrap().token.as_deref(), Some("flag"));
        let empty_env = api_settings(addr, None, None, Some(String::new())).unwrap();
        assert_eq!(empty_env.unwrap().token, None);
        assert_eq!(api_settings(None, None, None, Some("env".into())), Ok(None));
        for (token, cors) in [
            (Some("t".to_string()), None),
            (None, Some("http://x".into())),
        ] {
            assert_eq!(
                api_settings(None, token, cors, None)
                    .unwrap_err()
                    .to_string(),
                "--api-token and --api-cors need --api [ADDR]"
            );
        }
    }

    /// The relay's flags: defaults as the library's, a list and a lifetime read into one
    /// policy, the next hops in order.
    #[test]
    fn relay_flags() {
        use fastsmtpd::relay::schedule::{Backoff, RetryPolicy, DEFAULT_QUEUE_LIFETIME};
        let cli = Cli::try_parse_from(["fastsmtpd"]).unwrap();
        assert_eq!(cli.queue_lifetime, DEFAULT_QUEUE_LIFETIME);
        let relay = relay_settings(
            cli.spool,
            cli.relay_to,
            cli.retry,
            cli.queue_lifetime,
            cli.dsn,
        )
        .unwrap();
        assert_eq!(relay, config::Relay::default());
        assert!(!relay.is_on());
        let cli = Cli::try_parse_from([
            "fastsmtpd",
            "--spool",
            "q",
            "--relay-to",
            "127.0.0.1:2526, [::1]:25",
            "--retry",
            "1s,2s",
            "--queue-lifetime",
            "30s",
            "--dsn",
            "off",
        ])
        .unwrap();
        let relay = relay_settings(
            cli.spool,
            cli.relay_to,
            cli.retry,
            cli.queue_lifetime,
            cli.dsn,
        )
        .unwrap();
        assert_eq!(relay.spool, Some("q".into()));
        assert_eq!(
            relay
                .next_hops
                .iter()
                .map(|hop| hop.addr)
                .collect::<Vec<_>>(),
            [
                "127.0.0.1:2526".parse::<SocketAddr>().unwrap(),
                "[::1]:25".parse().unwrap()
            ]
        );
        let want = RetryPolicy::new(
            Backoff::List(vec![Duration::from_secs(1), Duration::from_secs(2)]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(relay.retry, want);
        assert!(!relay.dsn);
        let zero = relay_settings(None, None, None, Duration::ZERO, OnOff::On).unwrap_err();
        assert_eq!(zero, "--queue-lifetime must be more than 0s");
        for bad in ["x", "127.0.0.1", "127.0.0.1:0", ",", "127.0.0.1:99999"] {
            assert!(
                Cli::try_parse_from(["fastsmtpd", "--relay-to", bad]).is_err(),
                "{bad}"
            );
        }
    }

    /// `--relay-tls` (opportunistic by default), `--relay-ca` read at once, `--relay-auth`
    /// parsed outside clap so no error repeats the password.
    #[test]
    fn relay_tls_flags() {
        use fastsmtpd::relay::client::session::{Credentials, TlsPolicy};
        let secure = |tls, ca: Option<&str>, auth: Option<&str>| {
            let mut relay = config::Relay::default();
            relay_security(&mut relay, tls, ca.map(std::path::Path::new), auth).map(|()| relay)
        };
        let cli = Cli::try_parse_from(["fastsmtpd"]).unwrap();
        assert_eq!(cli.relay_tls, RelayTls::Opportunistic);
        let relay = secure(cli.relay_tls, None, None).unwrap();
        assert_eq!(relay, config::Relay::default());
        assert_eq!(relay.tls, TlsPolicy::Opportunistic);
        assert!(relay.ca.is_none() && relay.credentials.is_none());
        for (word, want) in [
            ("required", TlsPolicy::Required),
            ("opportunistic", TlsPolicy::Opportunistic),
            ("off", TlsPolicy::Off),
        ] {
            let cli = Cli::try_parse_from(["fastsmtpd", "--relay-tls", word]).unwrap();
            assert_eq!(secure(cli.relay_tls, None, None).unwrap().tls, want);
        }
        let error = Cli::try_parse_from(["fastsmtpd", "--relay-tls", "maybe"]).unwrap_err();
        assert!(error.to_string().contains("--relay-tls"), "{error}");
        let cli = Cli::try_parse_from(["fastsmtpd", "--relay-auth", "alice:s3cret"]).unwrap();
        let relay = secure(cli.relay_tls, None, cli.relay_auth.as_deref()).unwrap();
        assert_eq!(
            relay.credentials,
            Some(Credentials {
                user: "alice".into(),
                password: "s3cret".into()
            })
        );
        let error = secure(RelayTls::Required, None, Some("alice")).unwrap_err();
        assert_eq!(
            error,
            "--relay-auth: expected USER:PASSWORD (or file:PATH), found no colon"
        );
        let error = secure(RelayTls::Required, Some("/nonexistent/ca.pem"), None).unwrap_err();
        assert!(
            error.starts_with("--relay-ca /nonexistent/ca.pem: "),
            "{error}"
        );
    }

    /// `--delay-warning`: off by default, a duration in the units grammar otherwise.
    #[test]
    fn delay_warning_flag() {
        let cli = Cli::try_parse_from(["fastsmtpd"]).unwrap();
        assert_eq!(cli.delay_warning, None);
        assert_eq!(config::Relay::default().delay_warning, None);
        let cli = Cli::try_parse_from(["fastsmtpd", "--delay-warning", "4h"]).unwrap();
        assert_eq!(cli.delay_warning, Some(Duration::from_secs(4 * 3600)));
        assert!(Cli::try_parse_from(["fastsmtpd", "--delay-warning", "soon"]).is_err());
    }

    /// Durations and sizes take units; bare numbers keep their historical unit.
    #[test]
    fn durations_and_sizes_take_units() {
        let cli = Cli::try_parse_from([
            "fastsmtpd",
            "--idle-timeout",
            "1.5m",
            "--max-message-size",
            "10M",
            "--tls-handshake-timeout",
            "2500ms",
            "--shutdown-grace",
            "30",
            "--stats-interval",
            "1s",
            "--min-data-rate",
            "1K/s",
            "--max-line-length",
            "4K",
            "--store-buffer",
            "16mb",
        ])
        .unwrap();
        assert_eq!(cli.idle_timeout, Duration::from_secs(90));
        assert_eq!(cli.max_message_size, 10 << 20);
        assert_eq!(cli.tls_handshake_timeout, Duration::from_millis(2500));
        assert_eq!(cli.shutdown_grace, Duration::from_secs(30));
        assert_eq!(cli.stats_interval, Duration::from_secs(1));
        assert_eq!(cli.min_data_rate, 1024);
        assert_eq!(cli.max_line_length, 4096);
        assert_eq!(cli.store_buffer, 16 << 20);
        let bare = Cli::try_parse_from(["fastsmtpd", "--idle-timeout", "30"]).unwrap();
        assert_eq!(bare.idle_timeout, Duration::from_secs(30));
        for (flag, value) in [
            ("--idle-timeout", "-5s"),
            ("--idle-timeout", "5 minutes"),
            ("--max-message-size", "1.5M"),
            ("--max-message-size", "10T"),
            ("--stats-interval", "NaN"),
        ] {
            let argument = format!("{flag}={value}");
            let error = Cli::try_parse_from(["fastsmtpd", &argument]).unwrap_err();
            assert!(error.to_string().contains(flag), "{flag} {value}: {error}");
            // As two words too: a value with a leading hyphen reaches the parser.
            let error = Cli::try_parse_from(["fastsmtpd", flag, value]).unwrap_err();
            assert!(error.to_string().contains(flag), "{flag} {value}: {error}");
        }
        let error = Cli::try_parse_from(["fastsmtpd", "--idle-timeout", "-1s"]).unwrap_err();
        assert!(
            error.to_string().contains("a duration cannot be negative"),
            "{error}"
        );
    }
}
