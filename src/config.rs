//! Server settings, their defaults and their bounds.
//!
//! What it does: hold every knob of the server in one [`Config`], grouped by job ([`Limits`],
//! [`Tls`], [`Auth`], [`Stores`], [`Faults`], and beside them, in `config/capture.rs`,
//! [`CaptureSettings`] and [`ApiSettings`]; the few that belong to none at the top), with
//! defaults chosen from the RFCs (cited per constant); check it once, in
//! [`Config::validate`], which refuses with a typed [`ConfigError`] or returns the
//! [`ValidConfig`] the server starts from, holding the fault rules parsed (they are parsed
//! there and nowhere else); and build the protocol-level [`SessionConfig`] from it.
//!
//! The grammar of every duration and size (flags, fault rules) is [`crate::units`]'s,
//! re-exported here as [`parse_duration`], [`parse_bytes`] and [`parse_data_rate`].
//!
//! What it does not do: parse the command line (that is `main.rs`, with clap), read the fault
//! file (`main.rs` with [`crate::fault::FaultRules::read_file`]; its rules are parsed here,
//! with the file kept beside them to name it in errors) or open sockets.

mod capture;

pub use capture::{
    ApiSettings, CaptureSettings, DEFAULT_API_ADDR, DEFAULT_CAPTURE_MEMORY, MAX_CAPTURE_MAX_AGE,
    MIN_CAPTURE_MAX_AGE, MIN_CAPTURE_MEMORY, VIEW_CACHE_MAX,
};

use crate::proto::reply::Banner;
use crate::proto::session::{BareLfPolicy, SecurityPolicy, SessionConfig};
use crate::relay::client::session::{Credentials, TlsPolicy};
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
/// The most `--store-threads` may be.
pub const MAX_STORE_THREADS: usize = 64;
/// Connections at once over all workers, by default (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

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

/// Everything the server needs to run, in five groups ([`Limits`], [`Tls`], [`Auth`],
/// [`Stores`], [`Faults`]) and the few settings that belong to none. Checked and made ready
/// by [`Config::validate`], which returns the [`ValidConfig`] the server starts from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on (`--listen`); each worker binds each of them with
    /// `SO_REUSEPORT`. At least one.
    pub listen: Vec<SocketAddr>,
    /// Worker threads (`--threads`), each with its own event loop and listening sockets. At
    /// least 1.
    pub threads: usize,
    /// The name in the greeting and the EHLO reply (`--hostname`): printable ASCII, no spaces.
    pub hostname: String,
    /// Listen backlog per listening socket.
    pub backlog: i32,
    /// Bare CR / bare LF in message content (`--bare-lf`).
    pub bare_lf: BareLfPolicy,
    /// How long messages in flight may take to finish after shutdown begins
    /// (`--shutdown-grace`): up to [`MAX_TIMEOUT`].
    pub shutdown_grace: Duration,
    /// Interval of the one-line statistics report (`--stats-interval`; `None`: no report):
    /// from [`MIN_STATS_INTERVAL`] to [`MAX_TIMEOUT`].
    pub stats_interval: Option<Duration>,
    /// Shut down gracefully once this many messages were accepted (`--exit-after-messages`,
    /// at least 1).
    pub exit_after_messages: Option<u64>,
    /// Shut down gracefully once this many sessions have ended (`--exit-after-sessions`, at
    /// least 1).
    pub exit_after_sessions: Option<u64>,
    /// Where to serve Prometheus metrics over HTTP (`--metrics`; `None`: not served).
    pub metrics: Option<SocketAddr>,
    /// Print one line per message attempt on standard output (`--log-sessions`).
    pub log_sessions: bool,
    /// What one client and one session may take.
    pub limits: Limits,
    /// TLS: the certificate, implicit-TLS listeners, handshake limits.
    pub tls: Tls,
    /// SMTP AUTH: who may log in, where it is offered, its limits.
    pub auth: Auth,
    /// Where accepted messages are kept, and the threads that write them.
    pub stores: Stores,
    /// Fault injection.
    pub faults: Faults,
    /// The capture store's limits (`--capture-*`, `--on-full`; it exists with `--store
    /// memory` or `--api`).
    pub capture: CaptureSettings,
    /// The HTTP API (`--api`; `None`: not served).
    pub api: Option<ApiSettings>,
    /// The relay: its spool and next hops, and its delivery settings.
    pub relay: Relay,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            hostname: "localhost".to_string(),
            backlog: DEFAULT_BACKLOG,
            bare_lf: BareLfPolicy::Reject,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            stats_interval: None,
            exit_after_messages: None,
            exit_after_sessions: None,
            metrics: None,
            log_sessions: false,
            limits: Limits::default(),
            tls: Tls::default(),
            auth: Auth::default(),
            stores: Stores::default(),
            faults: Faults::default(),
            capture: CaptureSettings::default(),
            api: None,
            relay: Relay::default(),
        }
    }
}

/// What one client and one session may take: sizes, counts, connections and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line, `CR LF` included (`--max-line-length`, bytes): from
    /// [`MIN_MAX_LINE_LEN`] to [`MAX_MAX_LINE_LEN`].
    pub max_line_len: usize,
    /// Largest message, in content octets (`--max-message-size`, bytes; advertised in `SIZE`,
    /// RFC 1870): at least 1.
    pub max_message_size: u64,
    /// Most recipients per transaction (`--max-recipients`): from 1 to [`MAX_MAX_RECIPIENTS`].
    pub max_recipients: usize,
    /// Failed commands tolerated per session (`--max-errors`).
    pub max_errors: u32,
    /// Junk commands tolerated per session between accepted messages
    /// (`--max-junk-commands`).
    pub max_junk_commands: u32,
    /// Most connections open at once from one client address (`--max-connections-per-ip`);
    /// more get `421 4.7.0`.
    pub max_connections_per_ip: usize,
    /// Most connections open at once over all workers (`--max-connections`, at least 1);
    /// more get `421 4.7.0` and are closed.
    pub max_connections: usize,
    /// Idle and per-command timeout (`--idle-timeout`): a command line must complete within
    /// this of the previous. From [`MIN_IDLE_TIMEOUT`] to [`MAX_TIMEOUT`].
    pub idle_timeout: Duration,
    /// Minimum data rate during DATA/BDAT (`--min-data-rate`, bytes per second; 0: only the
    /// idle timeout).
    pub min_data_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_errors: DEFAULT_MAX_ERRORS,
            max_junk_commands: DEFAULT_MAX_JUNK_COMMANDS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            min_data_rate: DEFAULT_MIN_DATA_RATE,
        }
    }
}

/// TLS (RFC 3207 STARTTLS, RFC 8314 implicit TLS): where the certificate comes from, which
/// addresses speak TLS from the first byte, and what a handshake may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Where the certificate comes from (`--tls-cert`/`--tls-key` or `--tls-self-signed`;
    /// `None`: no TLS). With a certificate, plaintext listeners offer STARTTLS (RFC 3207).
    pub source: Option<TlsSource>,
    /// Addresses that speak implicit TLS (`--listen-tls`; RFC 8314, "port 465 style"); each
    /// needs a [`Tls::source`].
    pub listen: Vec<SocketAddr>,
    /// Where to write the self-signed certificate (PEM) made at start, so a sender that
    /// verifies can be told to trust it (`--tls-self-signed-out`; needs
    /// [`TlsSource::SelfSigned`]).
    pub self_signed_out: Option<PathBuf>,
    /// A TLS handshake must complete within this, then the connection is closed
    /// (`--tls-handshake-timeout`): from [`MIN_TLS_HANDSHAKE_TIMEOUT`] to
    /// [`MAX_TLS_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// Full TLS handshakes in progress at once per client address on each worker; more wait
    /// (`--tls-max-handshakes-per-ip`, at least 1).
    pub max_handshakes_per_ip: u32,
    /// Full TLS handshakes per client address and second (`--tls-handshake-rate-per-ip`; 0:
    /// no limit); past it the connection is closed without a byte.
    pub handshake_rate_per_ip: u32,
    /// `MAIL` and `AUTH` on plaintext get `530 5.7.0 Must issue a STARTTLS command first`
    /// (`--require-tls`, RFC 3207 §4; needs a [`Tls::source`]).
    pub require: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            source: None,
            listen: Vec::new(),
            self_signed_out: None,
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            max_handshakes_per_ip: DEFAULT_TLS_MAX_HANDSHAKES_PER_IP,
            handshake_rate_per_ip: DEFAULT_TLS_HANDSHAKE_RATE_PER_IP,
            require: false,
        }
    }
}

/// SMTP AUTH (RFC 4954), PLAIN and LOGIN: who may log in, where it is offered, and what one
/// client may ask of the password checkers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Who may log in (`--auth any|file:PATH`; `None`: AUTH is not offered).
    pub source: Option<crate::auth::AuthSource>,
    /// Offer AUTH on plaintext connections too (`--auth-plaintext`; otherwise only inside
    /// TLS, `538 5.7.11`). Needs [`Auth::source`].
    pub plaintext: bool,
    /// `MAIL` without a successful AUTH gets `530 5.7.0` (`--auth-required`). Needs
    /// [`Auth::source`].
    pub required: bool,
    /// What one client may ask of the password checkers (`--auth-max-pending-per-ip`, at
    /// least 1; `--auth-max-failures-per-ip`; `--auth-failure-window`, from
    /// [`MIN_AUTH_FAILURE_WINDOW`] to [`MAX_TIMEOUT`]).
    pub limits: crate::auth::AuthLimits,
    /// Threads that check password hashes for `--auth file:` (`--auth-threads`): from 1 to
    /// [`crate::auth::MAX_THREADS`].
    pub threads: usize,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            source: None,
            plaintext: false,
            required: false,
            limits: crate::auth::AuthLimits::default(),
            threads: crate::auth::DEFAULT_THREADS,
        }
    }
}

/// Where accepted messages are kept, and how the storage threads write them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stores {
    /// The stores (`--store KIND:PATH`, repeatable; none: messages are discarded).
    pub specs: Vec<StoreSpec>,
    /// Storage threads writing the stores; they also batch fsyncs (`--store-threads`): from 1
    /// to [`MAX_STORE_THREADS`].
    pub threads: usize,
    /// Most messages a storage thread makes durable together (`--store-batch`, at least 1;
    /// 1: no group commit).
    pub batch: usize,
    /// Bytes of message content in flight to the storage threads at most (`--store-buffer`,
    /// at least [`crate::store::MIN_STORE_BUFFER`]): past it, connections receiving content
    /// stop reading until the threads catch up.
    pub buffer: usize,
}

impl Default for Stores {
    fn default() -> Self {
        Stores {
            specs: Vec::new(),
            threads: DEFAULT_STORE_THREADS,
            batch: crate::store::DEFAULT_MAX_BATCH,
            buffer: crate::store::DEFAULT_STORE_BUFFER,
        }
    }
}

/// The relay (issue 19): where mail for the next hop is kept (`--spool`), where it goes
/// (`--relay-to`), and what the delivery side reads from here: the retry schedule
/// (`--retry`, `--queue-lifetime`) and whether failures are reported (`--dsn`). In this
/// increment every accepted message is relayed when `--relay-to` is given (per domain
/// relaying, `--relay-domains`, comes later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// The spool directory (`--spool DIR`): every message is appended to it and committed
    /// before its `250`. Needed by, and only with, `--relay-to`.
    pub spool: Option<PathBuf>,
    /// The next hops, in order (`--relay-to HOST:PORT[,HOST:PORT...]`, names resolved at
    /// start, kept for TLS); empty: no relaying.
    pub next_hops: Vec<NextHop>,
    /// When to try again and when to give up (`--retry`, `--queue-lifetime`; Postfix-like by
    /// default, RFC 5321 §4.5.4.1).
    pub retry: crate::relay::schedule::RetryPolicy,
    /// Send delivery status notifications for failed recipients (`--dsn on|off`, on by
    /// default; RFC 5321 §6.1 asks for them, `off` is for benchmarks).
    pub dsn: bool,
    /// When to use STARTTLS toward the next hops (`--relay-tls`): opportunistic by default,
    /// as a smarthost user expects encryption whenever the next hop offers it, and as
    /// Postfix's `smtp_tls_security_level = may` does; `required` verifies the certificate.
    pub tls: TlsPolicy,
    /// The roots trusted under `--relay-tls required` (`--relay-ca FILE`, read at start as
    /// DER certificates); `None`: the system's.
    pub ca: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
    /// AUTH credentials for the next hops (`--relay-auth`), sent inside TLS only.
    pub credentials: Option<Credentials>,
    /// `--delay-warning DURATION`: once a message has waited this long with a recipient
    /// deferred, one `Action: delayed` notification (RFC 3464 §2.3.3) to its sender, for the
    /// recipients whose `NOTIFY` allows `DELAY` (RFC 3461 §4.1); `None`, the default: never.
    pub delay_warning: Option<Duration>,
    /// Which recipients are relayed (`--relay-domains`); `None`: every recipient. A message
    /// is spooled with its relayed recipients only, and not at all when it has none; the
    /// stores keep every message whatever this says.
    pub domains: Option<crate::relay::domains::RelayDomains>,
    /// The listeners whose mail is relayed (`--relay-listen`, each one of `--listen` or
    /// `--listen-tls` as given); `None`: every listener. Mail on the others is kept by the
    /// stores, or discarded, as a sink's.
    pub listeners: Option<Vec<SocketAddr>>,
    /// How new connections choose among the next hops (`--relay-order`): in the order given
    /// (later ones are fallbacks), or spread over the healthy ones.
    pub hop_order: crate::relay::schedule::HopOrder,
    /// The most connections open to one next hop (`--relay-connections`).
    pub connections_per_hop: usize,
    /// The most messages one connection carries before its `QUIT`
    /// (`--relay-messages-per-connection`).
    pub messages_per_connection: usize,
}

/// One next hop of `--relay-to`: the host as given and the address it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// The host as given (`mx.example`, or an IP literal without its brackets, `::1`): the
    /// TLS server name, which the next hop's certificate is verified against.
    pub name: String,
    /// Its address (the first the name resolved to at start).
    pub addr: SocketAddr,
}

impl NextHop {
    /// A next hop given as an address: named by its IP.
    pub fn from_addr(addr: SocketAddr) -> NextHop {
        NextHop {
            name: addr.ip().to_string(),
            addr,
        }
    }
}

/// The largest `--relay-auth file:PATH` read, in octets: one `USER:PASSWORD` line.
pub const MAX_RELAY_AUTH_FILE_BYTES: u64 = 4096;

/// Reads `--relay-auth`: `USER:PASSWORD` (split at the first colon: a password may hold
/// colons, a user name may not), or `file:PATH` naming a regular file with that one line
/// (a trailing line end is dropped), which keeps the password out of `ps` and shell history.
/// Errors never repeat the value (it holds a password).
pub fn parse_relay_auth(text: &str) -> Result<Credentials, String> {
    let (line, source) = match text.strip_prefix("file:") {
        Some(path) => {
            let content = crate::named_file::read_text(
                std::path::Path::new(path),
                MAX_RELAY_AUTH_FILE_BYTES,
                "one USER:PASSWORD line",
            )
            .map_err(|e| format!("--relay-auth file:{path}: {e}"))?;
            let line = content.trim_end_matches(['\r', '\n']).to_owned();
            if line.contains(['\r', '\n']) {
                return Err(format!(
                    "--relay-auth file:{path}: expected one USER:PASSWORD line, found more"
                ));
            }
            (line, format!("--relay-auth file:{path}"))
        }
        None => (text.to_owned(), "--relay-auth".to_owned()),
    };
    let Some((user, password)) = line.split_once(':') else {
        return Err(format!(
            "{source}: expected USER:PASSWORD (or file:PATH), found no colon"
        ));
    };
    if user.is_empty() || password.is_empty() {
        return Err(format!(
            "{source}: expected USER:PASSWORD with neither empty"
        ));
    }
    if line.contains('\0') {
        return Err(format!(
            "{source}: a NUL octet cannot be sent in AUTH (RFC 4616 §2)"
        ));
    }
    Ok(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            spool: None,
            next_hops: Vec::new(),
            retry: crate::relay::schedule::RetryPolicy::default(),
            dsn: true,
            tls: TlsPolicy::Opportunistic,
            ca: None,
            credentials: None,
            delay_warning: None,
            domains: None,
            listeners: None,
            hop_order: crate::relay::schedule::HopOrder::InOrder,
            connections_per_hop: crate::relay::deliver::CONNECTIONS_PER_HOP_DEFAULT,
            messages_per_connection: crate::relay::deliver::MESSAGES_PER_CONNECTION_DEFAULT,
        }
    }
}

impl Relay {
    /// Whether the server relays (and so has a spool).
    pub fn is_on(&self) -> bool {
        !self.next_hops.is_empty()
    }
}

/// Reads `--relay-to`: `HOST:PORT` items separated by commas (`127.0.0.1:25`, `[::1]:25`,
/// `mx.example:25`; a name is resolved now, its first address taken), in order, none twice.
pub fn parse_next_hops(text: &str) -> Result<Vec<NextHop>, String> {
    use std::net::ToSocketAddrs;
    let mut hops = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "{text:?}: expected HOST:PORT[,HOST:PORT...] (an item is empty)"
            ));
        }
        let hop = match item.parse::<SocketAddr>() {
            Ok(addr) => NextHop::from_addr(addr),
            Err(_) => {
                let (host, port) = item.rsplit_once(':').ok_or_else(|| {
                    format!("{item:?}: expected HOST:PORT (e.g. 127.0.0.1:25 or [::1]:25)")
                })?;
                if host.is_empty() || port.parse::<u16>().is_err() {
                    return Err(format!(
                        "{item:?}: expected HOST:PORT with a port from 1 to 65535"
                    ));
                }
                let addr = item
                    .to_socket_addrs()
                    .map_err(|e| format!("{item:?}: cannot resolve {host:?}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("{item:?}: {host:?} has no address"))?;
                NextHop {
                    name: host.to_owned(),
                    addr,
                }
            }
        };
        if hop.addr.port() == 0 {
            return Err(format!("{item:?}: port 0 is no next hop"));
        }
        if hops.iter().any(|known: &NextHop| known.addr == hop.addr) {
            return Err(format!("{item:?}: given twice"));
        }
        hops.push(hop);
    }
    Ok(hops)
}

/// Fault injection ([`crate::fault`]): the rules as written, with where the first came from,
/// parsed once by [`Config::validate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// The rules in the order they are tried (`--fault-file`'s rules, then the `--fault`
    /// ones; the first that fires wins).
    pub rules: Vec<String>,
    /// Seed for probabilistic faults and random delays (`--seed`).
    pub seed: u64,
    /// The `--fault-file` the first [`Faults::rules`] came from, if any: a rule of it that
    /// does not parse is named by the file and its place (`rules[i]`).
    pub file: Option<crate::fault::RulesFile>,
}

/// A [`Config`] that passed [`Config::validate`], with what checking it made: the parsed
/// fault rules. The server starts from one of these ([`crate::server::start_valid`]), so
/// nothing is parsed twice. Read the settings through `Deref` (they can no longer change).
#[derive(Debug)]
pub struct ValidConfig {
    /// The settings, as checked.
    config: Config,
    /// The fault rules, parsed (with their counters and limiters, fresh for this start).
    faults: crate::fault::FaultRules,
}

impl ValidConfig {
    /// The settings and the parsed fault rules, taken apart.
    pub fn into_parts(self) -> (Config, crate::fault::FaultRules) {
        (self.config, self.faults)
    }
}

impl std::ops::Deref for ValidConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
    }
}

/// Why a [`Config`] was refused. `Display` gives the message the server prints after
/// `fastsmtpd: error: ` (and exits with status 2); each names the flag and the bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// No `--listen` address.
    NoListenAddress,
    /// An address given twice, in `--listen` or `--listen-tls` (the second bind would fail).
    ListenTwice {
        /// The address.
        address: SocketAddr,
        /// Where it was given: `--listen`, `--listen-tls`, or both.
        flags: &'static str,
    },
    /// A count that must be at least 1 is 0 (`--threads`, `--max-message-size`, ...).
    Zero {
        /// The flag.
        flag: &'static str,
    },
    /// A count outside its range (`--auth-threads`, `--store-threads`).
    CountOutOfRange {
        /// The flag.
        flag: &'static str,
        /// The least it may be.
        min: usize,
        /// The most it may be.
        max: usize,
    },
    /// A duration outside its range.
    DurationOutOfRange {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: Duration,
        /// The shortest it may be.
        min: Duration,
        /// The longest it may be.
        max: Duration,
    },
    /// `--stats-interval` is neither 0 nor within its range.
    StatsInterval(Duration),
    /// `--max-line-length` outside [`MIN_MAX_LINE_LEN`]..=[`MAX_MAX_LINE_LEN`].
    MaxLineLength(usize),
    /// `--max-recipients` outside 1..=[`MAX_MAX_RECIPIENTS`].
    MaxRecipients(usize),
    /// `--store-buffer` below [`crate::store::MIN_STORE_BUFFER`].
    StoreBuffer,
    /// `--exit-after-messages 0` or `--exit-after-sessions 0`.
    ExitAfterZero,
    /// `--hostname` is empty or not printable ASCII without spaces.
    Hostname(String),
    /// A flag that needs a certificate was given without one (`--require-tls`,
    /// `--listen-tls`).
    NeedsCertificate {
        /// The flag.
        flag: &'static str,
    },
    /// `--auth` without TLS and without `--auth-plaintext`.
    AuthOutsideTls,
    /// `--auth-plaintext` or `--auth-required` without `--auth`.
    AuthOptionWithoutAuth,
    /// `--auth-plaintext` with `--require-tls`, which refuses AUTH on plaintext anyway.
    AuthPlaintextWithRequireTls,
    /// `--tls-self-signed-out` without `--tls-self-signed`.
    SelfSignedOutWithoutSelfSigned,
    /// `--log-sessions` with `--store jsonl:-`: both would write to standard output.
    StandardOutputTwice,
    /// A fault rule that does not parse (the message names the rule and why).
    FaultRule(String),
    /// `--store memory` more than once.
    MemoryStoreTwice,
    /// A capture flag (`--capture-memory`, `--capture-max-messages`, `--capture-max-age`,
    /// `--on-full`) without a capture store (`--store memory` or `--api`).
    CaptureWithoutStore {
        /// The first such flag given.
        flag: &'static str,
    },
    /// `--capture-memory` below [`MIN_CAPTURE_MEMORY`].
    CaptureMemory(u64),
    /// `--api-token` or `--api-cors` without `--api`.
    ApiOptionWithoutApi,
    /// `--relay-to` without `--spool`: relayed mail would have no durable home.
    RelayWithoutSpool,
    /// `--spool` without `--relay-to`: nothing would ever leave the spool.
    SpoolWithoutRelay,
    /// `--relay-domains` without `--relay-to`: there is nowhere to relay to.
    RelayDomainsWithoutRelay,
    /// `--relay-listen` without `--relay-to`.
    RelayListenWithoutRelay,
    /// A `--relay-listen` address that is none of the listeners.
    RelayListenNotListening(SocketAddr),
    /// `--spool` with `--store jsonl:-`: a line written to a stream cannot be taken back
    /// when the spool's commit fails.
    SpoolWithStream,
    /// `--relay-auth` with `--relay-tls off`: credentials are never sent in clear, so they
    /// could never be used (issue 19's decision: refused at start).
    RelayAuthWithoutTls,
    /// `--relay-ca` without `--relay-tls required`: only `required` verifies certificates,
    /// and a CA given for nothing would look like protection that is not there.
    RelayCaWithoutRequired,
    /// `--relay-ca` or `--relay-auth` without `--relay-to`.
    RelayOptionWithoutRelay,
    /// `--api-token` empty, or not printable ASCII without spaces.
    ApiToken,
    /// `--api-cors` not an origin (`scheme://host[:port]`, printable ASCII), or `*`.
    ApiCors(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::NoListenAddress => f.write_str("at least one --listen address is needed"),
            ConfigError::ListenTwice { address, flags } => write!(
                f,
                "{flags} {address}: given twice (each address is bound once; a second bind would fail with \"Address already in use\")"
            ),
            ConfigError::Zero { flag } => write!(f, "{flag} must be at least 1"),
            ConfigError::CountOutOfRange { flag, min, max } => {
                write!(f, "{flag} must be between {min} and {max}")
            }
            ConfigError::DurationOutOfRange {
                flag,
                value,
                min,
                max,
            } => write!(
                f,
                "{flag} {}: must be from {} to {}",
                format_duration(*value),
                format_duration(*min),
                format_duration(*max)
            ),
            ConfigError::StatsInterval(interval) => write!(
                f,
                "--stats-interval {}: {}",
                format_duration(*interval),
                stats_interval_bounds()
            ),
            ConfigError::MaxLineLength(value) => write!(
                f,
                "--max-line-length {value}: must be between {MIN_MAX_LINE_LEN} (RFC 5321 §4.5.3.1.4) and {MAX_MAX_LINE_LEN} bytes (64KiB: a partial line is kept per connection)"
            ),
            ConfigError::MaxRecipients(value) => write!(
                f,
                "--max-recipients {value}: must be between 1 and {MAX_MAX_RECIPIENTS} (RFC 5321 asks for 100; the recipients of a transaction are kept until it ends)"
            ),
            ConfigError::StoreBuffer => write!(
                f,
                "--store-buffer must be at least {} bytes (one chunk)",
                crate::store::MIN_STORE_BUFFER
            ),
            ConfigError::ExitAfterZero => {
                f.write_str("--exit-after-messages and --exit-after-sessions must be at least 1")
            }
            ConfigError::Hostname(hostname) => write!(
                f,
                "--hostname {hostname:?} must be printable ASCII without spaces (it goes into replies)"
            ),
            ConfigError::NeedsCertificate { flag } => write!(
                f,
                "{flag} needs a certificate: --tls-cert FILE --tls-key FILE, or --tls-self-signed"
            ),
            ConfigError::AuthOutsideTls => f.write_str(
                "--auth is offered only inside TLS: give a certificate (--tls-cert/--tls-key or --tls-self-signed), or allow --auth-plaintext",
            ),
            ConfigError::AuthOptionWithoutAuth => {
                f.write_str("--auth-plaintext and --auth-required need --auth any|file:PATH")
            }
            ConfigError::AuthPlaintextWithRequireTls => f.write_str(
                "--auth-plaintext with --require-tls: --require-tls answers AUTH on plaintext with 530 before STARTTLS (RFC 3207 §4), so --auth-plaintext would do nothing: leave out one of them",
            ),
            ConfigError::SelfSignedOutWithoutSelfSigned => f.write_str(
                "--tls-self-signed-out FILE writes the certificate --tls-self-signed makes: it needs --tls-self-signed (with --tls-cert, give senders that file)",
            ),
            ConfigError::StandardOutputTwice => f.write_str(
                "--log-sessions and --store jsonl:- would both write to standard output: send the records to a file or a FIFO (--store jsonl:PATH), or leave out --log-sessions",
            ),
            ConfigError::FaultRule(message) => f.write_str(message),
            ConfigError::MemoryStoreTwice => f.write_str(
                "--store memory given twice: there is one capture store (size it with --capture-memory)",
            ),
            ConfigError::CaptureWithoutStore { flag } => write!(
                f,
                "{flag} sets a limit of the capture store, and there is none: add --store memory (or --api, which reads it)"
            ),
            ConfigError::CaptureMemory(value) => write!(
                f,
                "--capture-memory {value}: must be at least {MIN_CAPTURE_MEMORY} bytes (64KiB)"
            ),
            ConfigError::RelayWithoutSpool => f.write_str(
                "--relay-to needs --spool DIR: a message is relayed only after it is on disk (RFC 5321 §6.1: after the 250 it must not be lost)",
            ),
            ConfigError::SpoolWithoutRelay => f.write_str(
                "--spool needs --relay-to HOST:PORT: without a next hop nothing would ever leave the spool",
            ),
            ConfigError::RelayDomainsWithoutRelay => f.write_str(
                "--relay-domains needs --relay-to HOST:PORT and --spool DIR: it says which recipients are relayed, and nothing is",
            ),
            ConfigError::RelayListenWithoutRelay => f.write_str(
                "--relay-listen needs --relay-to HOST:PORT and --spool DIR: it says which listeners' mail is relayed, and nothing is",
            ),
            ConfigError::RelayListenNotListening(address) => write!(
                f,
                "--relay-listen {address}: not one of the --listen or --listen-tls addresses (give each as given there)"
            ),
            ConfigError::SpoolWithStream => f.write_str(
                "--spool with --store jsonl:-: a line written to a stream cannot be taken back when the spool cannot keep the message; write the records to a file (--store jsonl:PATH)",
            ),
            ConfigError::ApiOptionWithoutApi => {
                f.write_str("--api-token and --api-cors need --api [ADDR]")
            }
            ConfigError::ApiToken => f.write_str(
                "--api-token (or FASTSMTPD_API_TOKEN) must be printable ASCII without spaces (it is compared with the bearer token of each request)",
            ),
            ConfigError::RelayAuthWithoutTls => f.write_str(
                "--relay-auth with --relay-tls off: credentials are never sent in clear; use --relay-tls opportunistic (the default) or required",
            ),
            ConfigError::RelayCaWithoutRequired => f.write_str(
                "--relay-ca needs --relay-tls required: only required verifies the next hop's certificate (opportunistic takes any)",
            ),
            ConfigError::RelayOptionWithoutRelay => {
                f.write_str("--relay-ca and --relay-auth need --relay-to HOST:PORT")
            }
            ConfigError::ApiCors(origin) => write!(
                f,
                "--api-cors {origin:?}: must be one origin, scheme://host[:port] (e.g. http://localhost:3000), never *"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for std::io::Error {
    fn from(error: ConfigError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, error)
    }
}

impl Config {
    /// The protocol settings every session of this server shares.
    pub fn session_config(&self) -> SessionConfig {
        let security = SecurityPolicy {
            starttls: self.tls.source.is_some(),
            require_tls: self.tls.require,
            auth: self.auth.source.is_some(),
            auth_plaintext: self.auth.plaintext,
            auth_required: self.auth.required,
        };
        let max_message_size = self.max_message_size();
        // RFC 3461: DSN is offered only by a relay that sends notifications; a sink (or
        // `--dsn off`) would promise notifications it never sends.
        let dsn = self.relay.is_on() && self.relay.dsn;
        let advertised = crate::proto::reply::Advertised {
            dsn,
            ..security.advertised()
        };
        SessionConfig {
            banner: Banner::with(&self.hostname, max_message_size, advertised),
            dsn,
            security,
            max_line_len: self.limits.max_line_len,
            max_message_size,
            max_recipients: self.limits.max_recipients,
            max_errors: self.limits.max_errors,
            max_junk_commands: self.limits.max_junk_commands,
            bare_lf: self.bare_lf,
        }
    }

    /// Checks values that would make the server misbehave (the error says which and why) and
    /// parses the fault rules: the only place they are parsed. The checks run in a fixed
    /// order; the first that fails is reported.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        self.check()?;
        let faults = crate::fault::FaultRules::parse_from(
            &self.faults.rules,
            self.faults.seed,
            self.faults.file.as_ref(),
        )
        .map_err(ConfigError::FaultRule)?;
        self.check_stores()?;
        Ok(ValidConfig {
            config: self,
            faults,
        })
    }

    /// The checks before the fault rules are parsed (their order is the order refusals were
    /// always reported in).
    fn check(&self) -> Result<(), ConfigError> {
        let (limits, tls, auth) = (&self.limits, &self.tls, &self.auth);
        if self.listen.is_empty() {
            return Err(ConfigError::NoListenAddress);
        }
        self.check_listen_once()?;
        if self.threads == 0 {
            return Err(ConfigError::Zero { flag: "--threads" });
        }
        if tls.require && tls.source.is_none() {
            return Err(ConfigError::NeedsCertificate {
                flag: "--require-tls",
            });
        }
        if auth.source.is_some() && tls.source.is_none() && !auth.plaintext {
            return Err(ConfigError::AuthOutsideTls);
        }
        if (auth.plaintext || auth.required) && auth.source.is_none() {
            return Err(ConfigError::AuthOptionWithoutAuth);
        }
        if auth.plaintext && tls.require {
            return Err(ConfigError::AuthPlaintextWithRequireTls);
        }
        if !(1..=crate::auth::MAX_THREADS).contains(&auth.threads) {
            return Err(ConfigError::CountOutOfRange {
                flag: "--auth-threads",
                min: 1,
                max: crate::auth::MAX_THREADS,
            });
        }
        if auth.limits.pending_per_client == 0 {
            return Err(ConfigError::Zero {
                flag: "--auth-max-pending-per-ip",
            });
        }
        check_duration(
            "--auth-failure-window",
            auth.limits.failures.window,
            MIN_AUTH_FAILURE_WINDOW,
            MAX_TIMEOUT,
        )?;
        if tls.max_handshakes_per_ip == 0 {
            return Err(ConfigError::Zero {
                flag: "--tls-max-handshakes-per-ip",
            });
        }
        check_duration(
            "--tls-handshake-timeout",
            tls.handshake_timeout,
            MIN_TLS_HANDSHAKE_TIMEOUT,
            MAX_TLS_HANDSHAKE_TIMEOUT,
        )?;
        if tls.self_signed_out.is_some() && tls.source != Some(TlsSource::SelfSigned) {
            return Err(ConfigError::SelfSignedOutWithoutSelfSigned);
        }
        if self.log_sessions && self.stores.specs.contains(&StoreSpec::JsonlStdout) {
            return Err(ConfigError::StandardOutputTwice);
        }
        if !tls.listen.is_empty() && tls.source.is_none() {
            return Err(ConfigError::NeedsCertificate {
                flag: "--listen-tls",
            });
        }
        if self.hostname.is_empty() || !self.hostname.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::Hostname(self.hostname.clone()));
        }
        if !(MIN_MAX_LINE_LEN..=MAX_MAX_LINE_LEN).contains(&limits.max_line_len) {
            return Err(ConfigError::MaxLineLength(limits.max_line_len));
        }
        if !(1..=MAX_MAX_RECIPIENTS).contains(&limits.max_recipients) {
            return Err(ConfigError::MaxRecipients(limits.max_recipients));
        }
        if limits.max_message_size == 0 {
            return Err(ConfigError::Zero {
                flag: "--max-message-size",
            });
        }
        if limits.max_connections == 0 {
            return Err(ConfigError::Zero {
                flag: "--max-connections",
            });
        }
        check_duration(
            "--idle-timeout",
            limits.idle_timeout,
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
                return Err(ConfigError::StatsInterval(interval));
            }
        }
        if !(1..=MAX_STORE_THREADS).contains(&self.stores.threads) {
            return Err(ConfigError::CountOutOfRange {
                flag: "--store-threads",
                min: 1,
                max: MAX_STORE_THREADS,
            });
        }
        Ok(())
    }

    /// Each address at most once over `--listen` and `--listen-tls`: two sockets cannot be
    /// bound to one address (port 0 is left out: each bind of it picks a port of its own).
    fn check_listen_once(&self) -> Result<(), ConfigError> {
        let plain = self.listen.iter().map(|a| (a, "--listen"));
        let tls = self.tls.listen.iter().map(|a| (a, "--listen-tls"));
        let all: Vec<_> = plain.chain(tls).filter(|(a, _)| a.port() != 0).collect();
        for (i, (address, flag)) in all.iter().enumerate() {
            if let Some((_, earlier)) = all[..i].iter().find(|(a, _)| a == address) {
                let flags = if earlier == flag {
                    flag
                } else {
                    "--listen and --listen-tls"
                };
                return Err(ConfigError::ListenTwice {
                    address: **address,
                    flags,
                });
            }
        }
        Ok(())
    }

    /// The checks after the fault rules are parsed.
    fn check_stores(&self) -> Result<(), ConfigError> {
        if self.stores.batch == 0 {
            return Err(ConfigError::Zero {
                flag: "--store-batch",
            });
        }
        if self.stores.buffer < crate::store::MIN_STORE_BUFFER {
            return Err(ConfigError::StoreBuffer);
        }
        if self.exit_after_messages == Some(0) || self.exit_after_sessions == Some(0) {
            return Err(ConfigError::ExitAfterZero);
        }
        let memory_stores = self
            .stores
            .specs
            .iter()
            .filter(|spec| **spec == StoreSpec::Memory)
            .count();
        if memory_stores > 1 {
            return Err(ConfigError::MemoryStoreTwice);
        }
        match (&self.relay.spool, self.relay.is_on()) {
            (None, true) => return Err(ConfigError::RelayWithoutSpool),
            (Some(_), false) => return Err(ConfigError::SpoolWithoutRelay),
            _ => {}
        }
        if self.relay.domains.is_some() && !self.relay.is_on() {
            return Err(ConfigError::RelayDomainsWithoutRelay);
        }
        if let Some(listeners) = &self.relay.listeners {
            if !self.relay.is_on() {
                return Err(ConfigError::RelayListenWithoutRelay);
            }
            if let Some(&stray) = listeners.iter().find(|address| {
                !self.listen.contains(address) && !self.tls.listen.contains(address)
            }) {
                return Err(ConfigError::RelayListenNotListening(stray));
            }
        }
        if self.relay.spool.is_some() && self.stores.specs.contains(&StoreSpec::JsonlStdout) {
            return Err(ConfigError::SpoolWithStream);
        }
        if !self.relay.is_on() && (self.relay.ca.is_some() || self.relay.credentials.is_some()) {
            return Err(ConfigError::RelayOptionWithoutRelay);
        }
        if self.relay.tls == TlsPolicy::Off && self.relay.credentials.is_some() {
            return Err(ConfigError::RelayAuthWithoutTls);
        }
        if self.relay.tls != TlsPolicy::Required && self.relay.ca.is_some() {
            return Err(ConfigError::RelayCaWithoutRequired);
        }
        self.capture.check(self.keeps_capture())?;
        if let Some(api) = &self.api {
            api.check()?;
        }
        Ok(())
    }

    /// Whether the server keeps a capture store: with `--store memory` (the store itself,
    /// or a copy beside file stores) or `--api` (which reads it; with only file stores the
    /// capture keeps copies under its budget).
    pub fn keeps_capture(&self) -> bool {
        self.api.is_some() || self.stores.specs.contains(&StoreSpec::Memory)
    }

    /// The capture store's limits: `--capture-*` less the share of the budget the API's view
    /// cache takes when `--api` is on ([`CaptureSettings::limits_beside`]).
    pub fn capture_limits(&self) -> crate::capture::Limits {
        self.capture.limits_beside(self.api.is_some())
    }

    /// The largest message accepted and advertised (`SIZE`, RFC 1870): `--max-message-size`,
    /// or the capture store's budget when that is smaller and the capture is where mail is
    /// kept (no file store beside it): a larger message could never be kept, so the client
    /// learns it at `EHLO` and `MAIL FROM SIZE=` rather than after sending it all.
    pub fn max_message_size(&self) -> u64 {
        let capture_only = self.keeps_capture()
            && self
                .stores
                .specs
                .iter()
                .all(|spec| *spec == StoreSpec::Memory);
        if capture_only {
            self.limits
                .max_message_size
                .min(self.capture_limits().max_bytes)
        } else {
            self.limits.max_message_size
        }
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

/// Checks that `flag`'s `value` lies within `min..=max`; the refusal gives both bounds.
fn check_duration(
    flag: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::DurationOutOfRange {
            flag,
            value,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--relay-to` keeps each name as given (the TLS server name) beside its address.
    #[test]
    fn next_hops_keep_their_names() {
        let hops = parse_next_hops("127.0.0.1:2525, [::1]:25,localhost:26").unwrap();
        assert_eq!(hops[0].name, "127.0.0.1");
        assert_eq!(hops[0].addr, "127.0.0.1:2525".parse().unwrap());
        assert_eq!(hops[1].name, "::1");
        assert_eq!(hops[2].name, "localhost");
        assert_eq!(hops[2].addr.port(), 26);
        assert!(hops[2].addr.ip().is_loopback());
        assert!(parse_next_hops("localhost:25,127.0.0.1:25")
            .unwrap_err()
            .contains("given twice"));
    }

    /// `--relay-auth USER:PASS` and `file:PATH`; errors never show the password.
    #[test]
    fn relay_auth_takes_a_pair_or_a_file_and_never_echoes_the_password() {
        let pair = |user: &str, password: &str| Credentials {
            user: user.into(),
            password: password.into(),
        };
        assert_eq!(
            parse_relay_auth("alice:s3:cret").unwrap(),
            pair("alice", "s3:cret")
        );
        assert_eq!(
            parse_relay_auth("alice:with space").unwrap(),
            pair("alice", "with space")
        );
        for bad in ["alice", "alice:", ":s3cret", "al\0ice:s3cret"] {
            let error = parse_relay_auth(bad).unwrap_err();
            assert!(error.starts_with("--relay-auth: "), "{bad:?}: {error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
        let path = crate::named_file::scratch::path("relay-auth", "credentials");
        let shown = path.display().to_string();
        for (content, want) in [
            ("bob:pa ss\n", Ok(pair("bob", "pa ss"))),
            ("bob:pass\r\n", Ok(pair("bob", "pass"))),
            ("bob:pass", Ok(pair("bob", "pass"))),
            (
                "bob:pass\nmore\n",
                Err("expected one USER:PASSWORD line, found more"),
            ),
            ("bobpass\n", Err("found no colon")),
        ] {
            std::fs::write(&path, content).unwrap();
            match (parse_relay_auth(&format!("file:{shown}")), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(got), Err(want)) => {
                    assert!(
                        got.starts_with(&format!("--relay-auth file:{shown}: ")),
                        "{got}"
                    );
                    assert!(got.ends_with(want), "{got}");
                    assert!(!got.contains("pass"), "{got}");
                }
                (got, want) => panic!("{content:?}: {got:?}, wanted {want:?}"),
            }
        }
        std::fs::write(&path, "x".repeat(5000)).unwrap();
        assert!(parse_relay_auth(&format!("file:{shown}"))
            .unwrap_err()
            .contains("larger than"));
        let missing = parse_relay_auth("file:/nonexistent/relay-auth").unwrap_err();
        assert!(
            missing.starts_with("--relay-auth file:/nonexistent/relay-auth: "),
            "{missing}"
        );
    }

    /// A next hop for the refusal table.
    fn hop25() -> NextHop {
        NextHop::from_addr(SocketAddr::from(([127, 0, 0, 1], 25)))
    }

    /// Credentials for the refusal table.
    fn user_u() -> Credentials {
        Credentials {
            user: "u".into(),
            password: "p".into(),
        }
    }

    /// Each refusal, as `validate` reports it, word for word as the server has always printed
    /// it (the command-line tests and docs/cli.md quote these).
    #[test]
    fn each_refusal_says_what_it_always_said() {
        let refused = |change: &dyn Fn(&mut Config)| {
            let mut config = Config::default();
            change(&mut config);
            config.validate().unwrap_err().to_string()
        };
        /// A change to the defaults, and the refusal it meets.
        type Case<'a> = (&'a dyn Fn(&mut Config), &'a str);
        let cases: [Case<'_>; 28] = [
            (&|c| c.listen.clear(), "at least one --listen address is needed"),
            (&|c| c.threads = 0, "--threads must be at least 1"),
            (
                &|c| c.tls.require = true,
                "--require-tls needs a certificate: --tls-cert FILE --tls-key FILE, or --tls-self-signed",
            ),
            (
                &|c| c.auth.source = Some(crate::auth::AuthSource::Any),
                "--auth is offered only inside TLS: give a certificate (--tls-cert/--tls-key or --tls-self-signed), or allow --auth-plaintext",
            ),
            (
                &|c| c.auth.required = true,
                "--auth-plaintext and --auth-required need --auth any|file:PATH",
            ),
            (&|c| c.auth.threads = 0, "--auth-threads must be between 1 and 64"),
            (
                &|c| c.auth.limits.pending_per_client = 0,
                "--auth-max-pending-per-ip must be at least 1",
            ),
            (
                &|c| c.auth.limits.failures.window = Duration::from_millis(500),
                "--auth-failure-window 500ms: must be from 1s to 1d",
            ),
            (
                &|c| c.tls.max_handshakes_per_ip = 0,
                "--tls-max-handshakes-per-ip must be at least 1",
            ),
            (
                &|c| c.tls.self_signed_out = Some("cert.pem".into()),
                "--tls-self-signed-out FILE writes the certificate --tls-self-signed makes: it needs --tls-self-signed (with --tls-cert, give senders that file)",
            ),
            (
                &|c| {
                    c.log_sessions = true;
                    c.stores.specs = vec![StoreSpec::JsonlStdout];
                },
                "--log-sessions and --store jsonl:- would both write to standard output: send the records to a file or a FIFO (--store jsonl:PATH), or leave out --log-sessions",
            ),
            (
                &|c| c.tls.listen = vec![SocketAddr::from(([127, 0, 0, 1], 4650))],
                "--listen-tls needs a certificate: --tls-cert FILE --tls-key FILE, or --tls-self-signed",
            ),
            (
                &|c| c.hostname = "mx test".into(),
                "--hostname \"mx test\" must be printable ASCII without spaces (it goes into replies)",
            ),
            (
                &|c| c.limits.max_line_len = 511,
                "--max-line-length 511: must be between 512 (RFC 5321 §4.5.3.1.4) and 65536 bytes (64KiB: a partial line is kept per connection)",
            ),
            (
                &|c| c.limits.max_recipients = 0,
                "--max-recipients 0: must be between 1 and 100000 (RFC 5321 asks for 100; the recipients of a transaction are kept until it ends)",
            ),
            (&|c| c.limits.max_connections = 0, "--max-connections must be at least 1"),
            (
                &|c| c.stats_interval = Some(Duration::from_millis(50)),
                "--stats-interval 50ms: must be 0 (off) or from 100ms to 1d",
            ),
            (&|c| c.stores.threads = 65, "--store-threads must be between 1 and 64"),
            (&|c| c.stores.batch = 0, "--store-batch must be at least 1"),
            (
                &|c| c.relay.next_hops = vec![hop25()],
                "--relay-to needs --spool DIR: a message is relayed only after it is on disk (RFC 5321 §6.1: after the 250 it must not be lost)",
            ),
            (
                &|c| c.relay.spool = Some("q".into()),
                "--spool needs --relay-to HOST:PORT: without a next hop nothing would ever leave the spool",
            ),
            (
                &|c| c.relay.domains = crate::relay::domains::RelayDomains::parse("a.test").ok(),
                "--relay-domains needs --relay-to HOST:PORT and --spool DIR: it says which recipients are relayed, and nothing is",
            ),
            (
                &|c| {
                    c.relay.spool = Some("q".into());
                    c.relay.next_hops = vec![hop25()];
                    c.stores.specs = vec![StoreSpec::JsonlStdout];
                },
                "--spool with --store jsonl:-: a line written to a stream cannot be taken back when the spool cannot keep the message; write the records to a file (--store jsonl:PATH)",
            ),
            (
                &|c| {
                    c.relay.spool = Some("q".into());
                    c.relay.next_hops = vec![hop25()];
                    c.relay.tls = TlsPolicy::Off;
                    c.relay.credentials = Some(user_u());
                },
                "--relay-auth with --relay-tls off: credentials are never sent in clear; use --relay-tls opportunistic (the default) or required",
            ),
            (
                &|c| {
                    c.relay.spool = Some("q".into());
                    c.relay.next_hops = vec![hop25()];
                    c.relay.ca = Some(Vec::new());
                },
                "--relay-ca needs --relay-tls required: only required verifies the next hop's certificate (opportunistic takes any)",
            ),
            (
                &|c| c.relay.credentials = Some(user_u()),
                "--relay-ca and --relay-auth need --relay-to HOST:PORT",
            ),
            (
                &|c| c.stores.buffer = 1,
                "--store-buffer must be at least 65536 bytes (one chunk)",
            ),
            (
                &|c| c.exit_after_sessions = Some(0),
                "--exit-after-messages and --exit-after-sessions must be at least 1",
            ),
        ];
        for (change, message) in cases {
            assert_eq!(refused(change), message);
        }
        assert_eq!(
            refused(&|c| c.limits.max_message_size = 0),
            "--max-message-size must be at least 1"
        );
        // Review of issue 17, F2: `--auth-plaintext` did nothing under `--require-tls`.
        assert_eq!(
            refused(&|c| {
                c.tls.source = Some(TlsSource::SelfSigned);
                c.tls.require = true;
                c.auth.source = Some(crate::auth::AuthSource::Any);
                c.auth.plaintext = true;
            }),
            "--auth-plaintext with --require-tls: --require-tls answers AUTH on plaintext with 530 before STARTTLS (RFC 3207 §4), so --auth-plaintext would do nothing: leave out one of them"
        );
        // Review of issue 17, F9: an address given twice failed at bind, "is another server
        // running?".
        let twice = SocketAddr::from(([127, 0, 0, 1], 2525));
        assert_eq!(
            refused(&|c| c.listen = vec![twice, twice]),
            "--listen 127.0.0.1:2525: given twice (each address is bound once; a second bind would fail with \"Address already in use\")"
        );
        assert_eq!(
            refused(&|c| {
                c.tls.source = Some(TlsSource::SelfSigned);
                c.tls.listen = vec![twice];
            }),
            "--listen and --listen-tls 127.0.0.1:2525: given twice (each address is bound once; a second bind would fail with \"Address already in use\")"
        );
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let config = Config {
            listen: vec![any_port, any_port],
            ..Config::default()
        };
        assert!(config.validate().is_ok(), "port 0 picks a port per bind");
        assert_eq!(
            refused(&|c| c.faults.rules = vec!["helo".into()]),
            "--fault \"helo\": no action: give reply=..., disconnect, disconnect=421, delay=... or greylist=..."
        );
    }

    /// The fault rules are parsed by `validate`, and the checked config holds them: the
    /// server starts from that and parses nothing.
    #[test]
    fn the_checked_config_holds_the_parsed_fault_rules() {
        let config = Config {
            faults: Faults {
                rules: vec![
                    "rcpt reply=550 5.1.1 No such user".into(),
                    "mail disconnect".into(),
                ],
                seed: 3,
                file: None,
            },
            ..Config::default()
        };
        let (config, rules) = config.validate().unwrap().into_parts();
        assert_eq!(config.faults.rules.len(), 2);
        assert_eq!(
            rules.fired(),
            [
                ("rcpt reply=550 5.1.1 No such user".to_string(), 0),
                ("mail disconnect".to_string(), 0)
            ]
        );
    }
}
