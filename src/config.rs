//! Server settings and their defaults.
//!
//! What it does: hold every knob of the server in one plain struct, with defaults chosen from
//! the RFCs (cited per field), and build the protocol-level [`SessionConfig`] from it.
//!
//! The grammar of every duration and size (flags, fault rules) is [`crate::units`]'s,
//! re-exported here as [`parse_duration`], [`parse_bytes`] and [`parse_data_rate`]; the
//! bounds of each setting are checked in [`Config::validate`].
//!
//! What it does not do: parse the command line (that is `main.rs`, with clap) or open sockets.

use crate::proto::reply::Banner;
use crate::proto::session::{BareLfPolicy, SecurityPolicy, SessionConfig};
use crate::store::StoreSpec;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::units::{format_duration, parse_bytes, parse_data_rate, parse_duration};

/// Default command-line limit, `CR LF` included. RFC 5321 §4.5.3.1.4 requires 512 octets;
/// RFC 1870 (SIZE) adds 26 and RFC 6531 (SMTPUTF8) 10; long source routes and parameter lists
/// from real clients fit comfortably in 2048.
pub const DEFAULT_MAX_LINE_LEN: usize = 2048;
/// The shortest `--max-line-length`: RFC 5321 §4.5.3.1.4's 512 octets.
pub const MIN_MAX_LINE_LEN: usize = 512;
/// The longest `--max-line-length`: 64 KiB. A connection keeps room for one partial command
/// line (and each worker a read buffer of twice the limit), so the limit is what a silent
/// client that sends a long line without its CR LF costs the server, per connection: 64 KiB
/// is the size of the reply budget (`server::conn::OUT_HIGH_WATER`), 32 times the default,
/// and far above the longest lines real clients send (an `AUTH` with a large initial
/// response, such as a Kerberos or OAuth token, is a few KiB; RFC 4954 §4 asks servers to
/// take at least 12288 octets for AUTH lines).
pub const MAX_MAX_LINE_LEN: usize = 64 * 1024;
/// Default message size limit, advertised in `SIZE` (RFC 1870): 32 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 32 * 1024 * 1024;
/// Default recipients per transaction; RFC 5321 §4.5.3.1.8 requires at least 100.
pub const DEFAULT_MAX_RECIPIENTS: usize = 1000;
/// The most `--max-recipients` may be. A transaction keeps its accepted recipients (each
/// path at most 256 octets, RFC 5321 §4.5.3.1.3) until it ends: 100 000 of them are at most
/// 25.6 MB per connection, and their offsets stay far inside the `u32` the envelope keeps
/// them in. 100 times Postfix's default (`smtpd_recipient_limit` = 1000) and 1000 times
/// what RFC 5321 asks a server to take.
pub const MAX_MAX_RECIPIENTS: usize = 100_000;
/// Failed commands before `421 4.7.0` (Postfix's `smtpd_hard_error_limit` is also 20).
pub const DEFAULT_MAX_ERRORS: u32 = 20;
/// Junk commands (HELO, EHLO, RSET, NOOP, VRFY, HELP, empty BDAT chunks, refused messages) tolerated per session between
/// accepted messages before `421 4.7.0` (Postfix's `smtpd_junk_command_limit` is also 100).
pub const DEFAULT_MAX_JUNK_COMMANDS: u32 = 100;
/// Connections at once from one client address (Postfix's
/// `smtpd_client_connection_count_limit` is also 50).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 50;
/// Idle and per-command timeout: RFC 5321 §4.5.3.2.7 asks a server to wait at least 5 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Minimum data rate during DATA/BDAT, in bytes per second (Postfix's `smtpd_min_data_rate`).
pub const DEFAULT_MIN_DATA_RATE: u64 = 500;
/// How long a message in flight may take to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The TLS handshake deadline: a client that opens TLS (or sends STARTTLS) and stalls is
/// closed after this, long before the idle timeout (Postfix's `smtpd_starttls_timeout` is
/// 300 s, scaled by message size; a handshake on loopback or a LAN takes milliseconds).
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Full TLS handshakes in progress at once per client address on each worker, by default
/// (`--tls-max-handshakes-per-ip`); more wait their turn (see `server::handshakes`).
pub const DEFAULT_TLS_MAX_HANDSHAKES_PER_IP: u32 = 8;
/// Full TLS handshakes per client address and second, by default
/// (`--tls-handshake-rate-per-ip`; a burst of as many): an RSA-4096 handshake costs the
/// server about 5 ms of CPU, so one address may take at most about half a core; a resumed
/// handshake does not count.
pub const DEFAULT_TLS_HANDSHAKE_RATE_PER_IP: u32 = 100;
/// The shortest window of `--auth-max-failures-per-ip`.
pub const MIN_AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(1);
/// The shortest idle timeout: a second (RFC 5321 §4.5.3.2.7 asks for minutes; shorter makes
/// sense only in tests).
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest idle timeout, shutdown grace or stats interval: a day (a deadline that far off
/// is "never", and a bounded one cannot overflow the clock).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The shortest TLS handshake timeout.
pub const MIN_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest TLS handshake timeout.
pub const MAX_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3600);
/// The shortest stats interval: the server checks whether one is due every 100 ms.
pub const MIN_STATS_INTERVAL: Duration = Duration::from_millis(100);

/// Listen backlog per listening socket.
pub const DEFAULT_BACKLOG: i32 = 1024;
/// Storage threads: two let one batch sync while the next gathers.
pub const DEFAULT_STORE_THREADS: usize = 2;

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files: the certificate (and its chain, leaf first) and the private key.
    Files {
        /// `--tls-cert`.
        cert: PathBuf,
        /// `--tls-key`.
        key: PathBuf,
    },
    /// A self-signed certificate made at start for the host name (`--tls-self-signed`).
    SelfSigned,
}

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on; each worker binds each of them with `SO_REUSEPORT`.
    pub listen: Vec<SocketAddr>,
    /// Worker threads, each with its own event loop and listening sockets.
    pub threads: usize,
    /// The name in the greeting and the EHLO reply.
    pub hostname: String,
    /// Longest command line, `CR LF` included.
    pub max_line_len: usize,
    /// Largest message, in content octets.
    pub max_message_size: u64,
    /// Most recipients per transaction.
    pub max_recipients: usize,
    /// Failed commands tolerated per session.
    pub max_errors: u32,
    /// Junk commands tolerated per session between accepted messages.
    pub max_junk_commands: u32,
    /// Most connections open at once from one client address; more get `421 4.7.0`.
    pub max_connections_per_ip: usize,
    /// Most connections open at once over all workers; more get `421 4.7.0` and are closed.
    pub max_connections: usize,
    /// Idle and per-command timeout: a command line must complete within this of the previous.
    pub idle_timeout: Duration,
    /// Minimum data rate in bytes per second during DATA/BDAT (0: only the idle timeout).
    pub min_data_rate: u64,
    /// Bare CR / bare LF in message content.
    pub bare_lf: BareLfPolicy,
    /// How long messages in flight may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Interval of the one-line statistics report (`None`: no report).
    pub stats_interval: Option<Duration>,
    /// Listen backlog.
    pub backlog: i32,
    /// Where accepted messages are kept (none: discard).
    pub stores: Vec<StoreSpec>,
    /// Storage threads writing the stores (they also batch fsyncs).
    pub store_threads: usize,
    /// Most messages a storage thread makes durable together (1: no group commit).
    pub store_batch: usize,
    /// Bytes of message content in flight to the storage threads at most (`--store-buffer`):
    /// past it, connections receiving content stop reading until the threads catch up.
    pub store_buffer: usize,
    /// Shut down gracefully once this many messages were accepted.
    pub exit_after_messages: Option<u64>,
    /// Shut down gracefully once this many sessions have ended.
    pub exit_after_sessions: Option<u64>,
    /// Fault-injection rules in the order they are tried (the `--fault-file` rules, then the
    /// `--fault` ones; the first that fires wins); see [`crate::fault`].
    pub faults: Vec<String>,
    /// Seed for probabilistic faults and random delays.
    pub seed: u64,
    /// Addresses that speak implicit TLS (RFC 8314, "port 465 style"); each needs `tls`.
    pub listen_tls: Vec<SocketAddr>,
    /// Where the TLS certificate comes from (`None`: no TLS). With a certificate, plaintext
    /// listeners offer STARTTLS (RFC 3207).
    pub tls: Option<TlsSource>,
    /// Where to write the self-signed certificate (PEM) made at start, so a sender that
    /// verifies can be told to trust it (`--tls-self-signed-out`; needs
    /// [`TlsSource::SelfSigned`]).
    pub tls_self_signed_out: Option<PathBuf>,
    /// A TLS handshake must complete within this; then the connection is closed.
    pub tls_handshake_timeout: Duration,
    /// `MAIL` and `AUTH` on plaintext get `530 5.7.0 Must issue a STARTTLS command first`.
    pub require_tls: bool,
    /// SMTP AUTH (RFC 4954), PLAIN and LOGIN, and who may log in (`None`: not offered).
    pub auth: Option<crate::auth::AuthSource>,
    /// Offer AUTH on plaintext connections too (otherwise only inside TLS; `538 5.7.11`).
    pub auth_plaintext: bool,
    /// `MAIL` without a successful AUTH gets `530 5.7.0`.
    pub auth_required: bool,
    /// What one client may ask of the password checkers (`--auth-max-pending-per-ip`,
    /// `--auth-max-failures-per-ip`, `--auth-failure-window`).
    pub auth_limits: crate::auth::AuthLimits,
    /// Threads that check password hashes for `--auth file:` (`--auth-threads`).
    pub auth_threads: usize,
    /// Full TLS handshakes in progress at once per client address on each worker; more wait
    /// (`--tls-max-handshakes-per-ip`).
    pub tls_max_handshakes_per_ip: u32,
    /// Full TLS handshakes per client address and second (0: no limit); past it the
    /// connection is closed without a byte (`--tls-handshake-rate-per-ip`).
    pub tls_handshake_rate_per_ip: u32,
    /// Where to serve Prometheus metrics over HTTP (`None`: not served).
    pub metrics: Option<SocketAddr>,
    /// Print one line per message attempt on standard output.
    pub log_sessions: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            hostname: "localhost".to_string(),
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_errors: DEFAULT_MAX_ERRORS,
            max_junk_commands: DEFAULT_MAX_JUNK_COMMANDS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_connections: 10_000,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            min_data_rate: DEFAULT_MIN_DATA_RATE,
            bare_lf: BareLfPolicy::Reject,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            stats_interval: None,
            backlog: DEFAULT_BACKLOG,
            stores: Vec::new(),
            store_threads: DEFAULT_STORE_THREADS,
            store_batch: crate::store::DEFAULT_MAX_BATCH,
            store_buffer: crate::store::DEFAULT_STORE_BUFFER,
            exit_after_messages: None,
            exit_after_sessions: None,
            faults: Vec::new(),
            seed: 0,
            metrics: None,
            listen_tls: Vec::new(),
            tls: None,
            tls_self_signed_out: None,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            require_tls: false,
            auth: None,
            auth_plaintext: false,
            auth_required: false,
            auth_limits: crate::auth::AuthLimits::default(),
            auth_threads: crate::auth::DEFAULT_THREADS,
            tls_max_handshakes_per_ip: DEFAULT_TLS_MAX_HANDSHAKES_PER_IP,
            tls_handshake_rate_per_ip: DEFAULT_TLS_HANDSHAKE_RATE_PER_IP,
            log_sessions: false,
        }
    }
}

impl Config {
    /// The protocol settings every session of this server shares.
    pub fn session_config(&self) -> SessionConfig {
        let security = SecurityPolicy {
            starttls: self.tls.is_some(),
            require_tls: self.require_tls,
            auth: self.auth.is_some(),
            auth_plaintext: self.auth_plaintext,
            auth_required: self.auth_required,
        };
        SessionConfig {
            banner: Banner::with(&self.hostname, self.max_message_size, security.advertised()),
            security,
            max_line_len: self.max_line_len,
            max_message_size: self.max_message_size,
            max_recipients: self.max_recipients,
            max_errors: self.max_errors,
            max_junk_commands: self.max_junk_commands,
            bare_lf: self.bare_lf,
        }
    }

    /// Checks values that would make the server misbehave; the message says which and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.is_empty() {
            return Err("at least one --listen address is needed".into());
        }
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if self.require_tls && self.tls.is_none() {
            return Err(
                "--require-tls needs a certificate: --tls-cert FILE --tls-key FILE, or --tls-self-signed"
                    .into(),
            );
        }
        if self.auth.is_some() && self.tls.is_none() && !self.auth_plaintext {
            return Err(
                "--auth is offered only inside TLS: give a certificate (--tls-cert/--tls-key or --tls-self-signed), or allow --auth-plaintext"
                    .into(),
            );
        }
        if (self.auth_plaintext || self.auth_required) && self.auth.is_none() {
            return Err("--auth-plaintext and --auth-required need --auth any|file:PATH".into());
        }
        if !(1..=crate::auth::MAX_THREADS).contains(&self.auth_threads) {
            return Err(format!(
                "--auth-threads must be between 1 and {}",
                crate::auth::MAX_THREADS
            ));
        }
        if self.auth_limits.pending_per_client == 0 {
            return Err("--auth-max-pending-per-ip must be at least 1".into());
        }
        check_duration(
            "--auth-failure-window",
            self.auth_limits.failures.window,
            MIN_AUTH_FAILURE_WINDOW,
            MAX_TIMEOUT,
        )?;
        if self.tls_max_handshakes_per_ip == 0 {
            return Err("--tls-max-handshakes-per-ip must be at least 1".into());
        }
        check_duration(
            "--tls-handshake-timeout",
            self.tls_handshake_timeout,
            MIN_TLS_HANDSHAKE_TIMEOUT,
            MAX_TLS_HANDSHAKE_TIMEOUT,
        )?;
        if self.tls_self_signed_out.is_some() && self.tls != Some(TlsSource::SelfSigned) {
            return Err(
                "--tls-self-signed-out FILE writes the certificate --tls-self-signed makes: it needs --tls-self-signed (with --tls-cert, give senders that file)"
                    .into(),
            );
        }
        if self.log_sessions && self.stores.contains(&StoreSpec::JsonlStdout) {
            return Err(
                "--log-sessions and --store jsonl:- would both write to standard output: send the records to a file or a FIFO (--store jsonl:PATH), or leave out --log-sessions"
                    .into(),
            );
        }
        if !self.listen_tls.is_empty() && self.tls.is_none() {
            return Err(
                "--listen-tls needs a certificate: --tls-cert FILE --tls-key FILE, or --tls-self-signed"
                    .into(),
            );
        }
        if self.hostname.is_empty() || !self.hostname.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "--hostname {:?} must be printable ASCII without spaces (it goes into replies)",
                self.hostname
            ));
        }
        if !(MIN_MAX_LINE_LEN..=MAX_MAX_LINE_LEN).contains(&self.max_line_len) {
            return Err(format!(
                "--max-line-length {}: must be between {MIN_MAX_LINE_LEN} (RFC 5321 §4.5.3.1.4) and {MAX_MAX_LINE_LEN} bytes (64KiB: a partial line is kept per connection)",
                self.max_line_len
            ));
        }
        if !(1..=MAX_MAX_RECIPIENTS).contains(&self.max_recipients) {
            return Err(format!(
                "--max-recipients {}: must be between 1 and {MAX_MAX_RECIPIENTS} (RFC 5321 asks for 100; the recipients of a transaction are kept until it ends)",
                self.max_recipients
            ));
        }
        if self.max_message_size == 0 {
            return Err("--max-message-size must be at least 1".into());
        }
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        check_duration(
            "--idle-timeout",
            self.idle_timeout,
            MIN_IDLE_TIMEOUT,
            MAX_TIMEOUT,
        )?;
        check_duration(
            "--shutdown-grace",
            self.shutdown_grace,
            Duration::ZERO,
            MAX_TIMEOUT,
        )?;
        if let Some(interval) = self.stats_interval {
            if !(MIN_STATS_INTERVAL..=MAX_TIMEOUT).contains(&interval) {
                return Err(format!(
                    "--stats-interval {}: {}",
                    format_duration(interval),
                    stats_interval_bounds()
                ));
            }
        }
        if self.store_threads == 0 || self.store_threads > 64 {
            return Err("--store-threads must be between 1 and 64".into());
        }
        crate::fault::FaultRules::parse(&self.faults, self.seed)?;
        if self.store_batch == 0 {
            return Err("--store-batch must be at least 1".into());
        }
        if self.store_buffer < crate::store::MIN_STORE_BUFFER {
            return Err(format!(
                "--store-buffer must be at least {} bytes (one chunk)",
                crate::store::MIN_STORE_BUFFER
            ));
        }
        if self.exit_after_messages == Some(0) || self.exit_after_sessions == Some(0) {
            return Err(
                "--exit-after-messages and --exit-after-sessions must be at least 1".into(),
            );
        }
        Ok(())
    }
}

/// What `--stats-interval` may be, for its refusals.
fn stats_interval_bounds() -> String {
    format!(
        "must be 0 (off) or from {} to {}",
        format_duration(MIN_STATS_INTERVAL),
        format_duration(MAX_TIMEOUT)
    )
}

/// Parses `--stats-interval`: a duration ([`parse_duration`]) where only an exact zero means
/// off. A value the grammar rounds down to zero (`0.0000000001ns`: digits below a
/// nanosecond are dropped) is not "off" but below the shortest interval, and refused.
pub fn parse_stats_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text)?;
    let written_as_zero = !text.bytes().any(|b| (b'1'..=b'9').contains(&b));
    if interval.is_zero() && !written_as_zero {
        return Err(format!("{:?}: {}", text.trim(), stats_interval_bounds()));
    }
    Ok(interval)
}

/// Checks that `flag`'s `value` lies within `min..=max`; the message gives both bounds.
fn check_duration(flag: &str, value: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{flag} {}: must be from {} to {}",
            format_duration(value),
            format_duration(min),
            format_duration(max)
        ))
    }
}
