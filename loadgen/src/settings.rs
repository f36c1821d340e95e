//! The settings of a load run: the command line checked as a whole and turned into what the
//! engine and the reports need.
//!
//! What it does: resolve the targets, check the source addresses (each is bound once, so an
//! address not on this host fails here and not at every connect), check flags against each
//! other (in a fixed order, so a command line with several mistakes always gets the same
//! message), parse the SLOs, index the corpus and read the recipient list, build the shared
//! [`Workload`] and the one TLS configuration, split the work into per-thread
//! [`ThreadPlan`]s, and describe the run (the header line, the corpus line, the `config`
//! object of `--json`; they say plainly when certificates are not verified).
//!
//! What it does not do: parse single values (`cli`), start threads (`runner`), or report.

use crate::cli::{greeting, parse_duration, AuthMechArg, OnOff, OrderArg, PipeliningArg, RunArgs};
use crate::drive::corpus::Corpus;
use crate::drive::engine::{Target, ThreadPlan};
use crate::drive::tls::{client_config, describe_name, server_name, TlsClient, TlsOptions};
use crate::drive::watch::{Via, DEFAULT_DRAIN};
use crate::drive::workload::{
    AddressPattern, Auth, AuthMech, Generated, Order, Pipelining, RecipientList, Security, Sizes,
    Workload,
};
use crate::report::slo::Slo;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages sent when neither `--messages` nor `--duration` is given.
const DEFAULT_MESSAGES: u64 = 10_000;
/// Most recipients per message (`--rcpts`).
const MAX_RCPTS: usize = 10_000;
/// The shortest `--duration`: results are kept per one-second interval, and a session may
/// take up to [`SETUP_GRACE`](crate::drive::slots::SETUP_GRACE) (1 s) to set up, so a shorter run
/// could measure nothing but set-up.
const MIN_DURATION: Duration = Duration::from_secs(1);
/// The shortest `--timeout`: the loop checks reply timeouts after each wait, which lasts up
/// to a millisecond; a shorter timeout would fail replies that came in time.
const MIN_REPLY_TIMEOUT: Duration = Duration::from_millis(1);

/// A checked load run.
#[derive(Debug)]
pub struct Settings {
    /// `--target` as given (several: joined by `, `; shown in the header and `--json`).
    pub target_text: String,
    /// Every `--target`, resolved, with its TLS server name.
    pub targets: Vec<Target>,
    /// `--source` addresses (port 0), in the order given.
    pub sources: Vec<SocketAddr>,
    /// Concurrent connections over all threads.
    pub connections: usize,
    /// `--allow-fewer-connections`: a shortfall of connections does not fail the run.
    pub allow_fewer_connections: bool,
    /// Event-loop threads (never more than connections).
    pub threads: usize,
    /// Messages to send (`None`: for `duration`).
    pub messages: Option<u64>,
    /// How long to send (`None`: until `messages` are sent).
    pub duration: Option<Duration>,
    /// The warm-up, rounded up to whole seconds (results come in whole seconds).
    pub warmup: Duration,
    /// Open loop: messages per second over all threads (`None`: closed loop).
    pub rate: Option<f64>,
    /// `--sweep`: every run is an open-loop step at a rate the sweep sets in `rate`.
    pub sweep: bool,
    /// Spread the initial connects over this long.
    pub stagger: Duration,
    /// A reply not received within this is a timeout.
    pub reply_timeout: Duration,
    /// How much of each wait for a deadline is spun (`--pace-spin`).
    pub pace_spin: Duration,
    /// The send lateness p99 past which a rate reached is not "sustained on time"
    /// (`--late-send-limit`).
    pub late_send_limit: Duration,
    /// Seed for message sizes.
    pub seed: u64,
    /// What each connection sends.
    pub workload: Arc<Workload>,
    /// `--pipelining` as given (the header and `--json` show the flag, not the outcome).
    pub pipelining: PipeliningArg,
    /// `--inflight` as given.
    pub inflight: usize,
    /// The objectives to check at the end.
    pub slos: Vec<Slo>,
    /// Where to write `--json`.
    pub json: Option<PathBuf>,
    /// Where to write `--hdr-log`.
    pub hdr_log: Option<PathBuf>,
    /// No progress output.
    pub quiet: bool,
    /// The TLS options as given (`None`: no TLS).
    pub tls_options: Option<TlsOptions>,
    /// The TLS configuration every connection shares, and the server name (of the first
    /// target; each target has its own name in `targets`).
    pub tls: Option<TlsClient>,
    /// `--delivered-via`: the far sink's capture API, watched for each message's arrival.
    pub delivered: Option<Via>,
}

/// `--delivered-via` with its companions, checked (`None` without it).
fn delivered_via(args: &RunArgs) -> Result<Option<Via>, String> {
    let Some(url) = &args.delivered_via else {
        if args.delivered_drain.is_some() || args.delivered_token.is_some() {
            return Err("--delivered-drain and --delivered-token need --delivered-via URL".into());
        }
        return Ok(None);
    };
    if args.message_dir.is_some() || args.mbox.is_some() {
        return Err(
            "--delivered-via tags generated messages; it cannot be used with --message-dir or \
             --mbox"
                .into(),
        );
    }
    let drain = args.delivered_drain.unwrap_or(DEFAULT_DRAIN);
    Via::new(url, args.delivered_token.clone(), drain).map(Some)
}

/// What the output says when certificates are not checked.
pub const NOT_VERIFIED: &str = "certificate not verified";

impl Settings {
    /// Checks the command line of a load run.
    pub fn from_args(args: RunArgs) -> Result<Settings, String> {
        if args.target.is_empty() {
            return Err("--target HOST:PORT is required".into());
        }
        let target_text = args.target.join(", ");
        let addrs: Vec<SocketAddr> = args
            .target
            .iter()
            .map(|t| resolve(t))
            .collect::<Result<_, _>>()?;
        let sources = check_sources(&args.source, &addrs)?;
        if args.connections == 0 || args.threads == 0 {
            return Err("--connections and --threads must be at least 1".into());
        }
        if args.messages == Some(0) {
            return Err("--messages must be at least 1".into());
        }
        if args.duration.is_some_and(|d| d < MIN_DURATION) {
            return Err(
                "--duration must be at least 1s (results are kept per one-second interval)".into(),
            );
        }
        if args.inflight == 0 {
            return Err("--inflight must be at least 1 (BDAT transactions in flight)".into());
        }
        if args.timeout < MIN_REPLY_TIMEOUT {
            return Err("--timeout must be at least 1ms".into());
        }
        if args.rcpts == 0 || args.rcpts > MAX_RCPTS {
            return Err(format!("--rcpts must be between 1 and {MAX_RCPTS}"));
        }
        if let Some(rate) = args.rate {
            if !(rate > 0.0 && rate.is_finite()) {
                return Err("--rate must be a positive number of messages per second".into());
            }
        }
        let sweep = args.sweep.range.is_some();
        check_pacing(&args, sweep)?;
        let (helo, greeting_name) = greeting(&args)?;
        if args.bdat && helo {
            return Err("--bdat needs EHLO (CHUNKING); drop --helo".into());
        }
        let security = match (args.starttls, args.tls) {
            (true, _) => Security::StartTls,
            (false, true) => Security::Implicit,
            (false, false) => Security::Plain,
        };
        if args.starttls && helo {
            return Err("--starttls needs EHLO; drop --helo".into());
        }
        if security == Security::Plain
            && (args.tls_verify
                || args.ca.is_some()
                || args.sni.is_some()
                || args.tls_resume.is_some())
        {
            return Err(
                "--tls-verify, --ca, --sni and --tls-resume need --starttls or --tls".into(),
            );
        }
        let auth = match &args.auth {
            None if args.auth_mech.is_some() => {
                return Err("--auth-mech needs --auth USER:PASS".into())
            }
            None => None,
            Some(_) if helo => return Err("--auth needs EHLO; drop --helo".into()),
            Some(credentials) => Some(parse_auth(credentials, args.auth_mech)?),
        };
        let tls_options = (security != Security::Plain).then(|| TlsOptions {
            verify: args.tls_verify || args.ca.is_some(),
            ca: args.ca.clone(),
            sni: args.sni.clone(),
            resume: args.tls_resume != Some(OnOff::Off),
        });
        // One configuration (and session store) for every target; a server name each.
        let config = tls_options.as_ref().map(client_config).transpose()?;
        let mut targets = Vec::with_capacity(addrs.len());
        for (text, addr) in args.target.iter().zip(addrs) {
            let tls = match (&config, &tls_options) {
                (Some(config), Some(options)) => Some(TlsClient {
                    config: config.clone(),
                    server_name: server_name(text, options.sni.as_deref())?,
                }),
                _ => None,
            };
            targets.push(Target {
                text: text.clone(),
                addr,
                tls,
            });
        }
        let tls = targets[0].tls.clone();
        let slos: Vec<Slo> = args
            .slo
            .iter()
            .map(|text| Slo::parse(text, parse_duration))
            .collect::<Result<_, _>>()?;
        let messages = match (args.messages, args.duration) {
            (Some(_), Some(_)) => return Err("give --messages or --duration, not both".into()),
            (None, None) => Some(DEFAULT_MESSAGES),
            (messages, _) => messages,
        };
        let pipelining = match args.pipelining {
            PipeliningArg::Auto => Pipelining::Auto,
            PipeliningArg::On => Pipelining::On,
            PipeliningArg::Off => Pipelining::Off,
        };
        if args.order.is_some() && args.message_dir.is_none() && args.mbox.is_none() {
            return Err("--order needs --message-dir or --mbox".into());
        }
        let delivered = delivered_via(&args)?;
        let corpus = match (&args.message_dir, &args.mbox) {
            (Some(dir), _) => Some(Corpus::open_dir(dir)?),
            (None, Some(mbox)) => Some(Corpus::open_mbox(mbox)?),
            (None, None) => None,
        };
        let recipients = args
            .rcpt_file
            .as_deref()
            .map(RecipientList::read)
            .transpose()?;
        if let Some(list) = &recipients {
            if list.len() < args.rcpts {
                return Err(format!(
                    "--rcpts {} is more than the {} address(es) of --rcpt-file {}: a message \
                     would name one recipient twice",
                    args.rcpts,
                    list.len(),
                    list.path.display()
                ));
            }
        }
        let order = match args.order {
            None | Some(OrderArg::Sequential) => Order::Sequential,
            Some(OrderArg::Random) => Order::Random,
        };
        let workload = Workload {
            rcpts: args.rcpts,
            msgs_per_conn: args.msgs_per_conn,
            pipelining,
            bdat: args.bdat,
            inflight: args.inflight,
            helo,
            ehlo_name: greeting_name,
            from: AddressPattern::new(&args.from)?,
            to: AddressPattern::new(&args.to)?,
            generated: Generated::new(args.size, delivered.is_some()),
            security,
            auth,
            corpus: corpus.map(Arc::new),
            order,
            recipients,
            tag_run: delivered.as_ref().map(|_| Arc::new(AtomicU32::new(0))),
        };
        if delivered.is_some() {
            let min = match args.size {
                Sizes::Fixed(n) | Sizes::Range(n, _) => n,
            };
            if min < workload.generated.header_len() {
                return Err(format!(
                    "--delivered-via needs messages of at least {} bytes (--size), so that \
                     every message keeps its tagged Subject",
                    workload.generated.header_len()
                ));
            }
        }
        Ok(Settings {
            target_text,
            targets,
            sources,
            connections: args.connections,
            allow_fewer_connections: args.allow_fewer_connections,
            threads: args.threads.min(args.connections),
            messages,
            duration: args.duration,
            warmup: Duration::from_secs(args.warmup.as_secs_f64().ceil() as u64),
            rate: args.rate,
            sweep,
            stagger: args.stagger,
            reply_timeout: args.timeout,
            pace_spin: args.pace_spin.unwrap_or(crate::drive::pacer::SPIN),
            late_send_limit: args
                .late_send_limit
                .unwrap_or(crate::report::render::LATE_SEND_LIMIT),
            seed: args.seed,
            workload: Arc::new(workload),
            pipelining: args.pipelining,
            inflight: args.inflight,
            slos,
            json: args.json,
            hdr_log: args.hdr_log,
            quiet: args.quiet,
            tls_options,
            tls,
            delivered,
        })
    }

    /// Message sizes (generated messages).
    fn size(&self) -> Sizes {
        self.workload.generated.sizes()
    }

    /// The corpus, if messages come from one.
    pub fn corpus(&self) -> Option<&Corpus> {
        self.workload.corpus.as_deref()
    }

    /// The header line(s) of the summary: the header, and the corpus line if there is one.
    pub fn summary_header(&self, header: &str) -> String {
        match self.corpus() {
            Some(corpus) => format!("{header}\n{}", corpus.description()),
            None => header.to_string(),
        }
    }

    /// The targets' names, when there are several (the per-target figures); empty for one.
    pub fn target_names(&self) -> Vec<String> {
        if self.targets.len() > 1 {
            self.targets.iter().map(|t| t.text.clone()).collect()
        } else {
            Vec::new()
        }
    }

    /// The plan of thread `index` for a run starting at `start`: an even share of the
    /// connections, messages and rate (the first threads take one more of a remainder).
    pub fn thread_plan(&self, index: usize, start: Instant) -> ThreadPlan {
        let threads = self.threads as u64;
        let share = |total: u64| total / threads + u64::from((index as u64) < total % threads);
        ThreadPlan {
            index,
            targets: self.targets.clone(),
            sources: self.sources.clone(),
            connections: share(self.connections as u64) as usize,
            messages: self.messages.map(share),
            rate: self.rate.map(|r| r / self.threads as f64),
            start,
            warmup_end: start + self.warmup,
            end: self.end(start),
            stagger: self.stagger,
            reply_timeout: self.reply_timeout,
            pace_spin: self.pace_spin,
            seed: self.seed,
            delivered: None,
        }
    }

    /// When a run starting at `start` stops starting messages (duration mode).
    pub fn end(&self, start: Instant) -> Option<Instant> {
        self.duration.map(|d| start + self.warmup + d)
    }

    /// The first line of the progress output and of the summary (and the interval log's
    /// comment): target, connections, load model, transfer mode (and, open loop, the pacing
    /// flags in use), recipients, size.
    pub fn header(&self) -> String {
        let mode = format!(
            "{}, {}{}",
            match self.rate {
                Some(rate) => format!("open loop at {rate} msgs/s"),
                None => "closed loop".to_string(),
            },
            if self.workload.bdat {
                format!("BDAT (inflight {})", self.inflight)
            } else {
                "DATA".to_string()
            },
            match self.pipelining {
                PipeliningArg::Auto => ", pipelining if offered",
                PipeliningArg::On => ", pipelining",
                PipeliningArg::Off => ", no pipelining",
            }
        );
        let mut pacing = String::new();
        if let Some(spin) = self.pace_spin_in_use() {
            pacing.push_str(&format!(", pace spin {spin:?}"));
        }
        if let Some(limit) = self.late_send_limit_in_use() {
            pacing.push_str(&format!(", late-send limit {limit:?}"));
        }
        let mode = mode + &pacing;
        let content = match self.corpus() {
            Some(corpus) => format!(
                "{} {} ({} messages{})",
                corpus.kind_name(),
                corpus.path.display(),
                corpus.len(),
                match self.workload.order {
                    Order::Sequential => ", in order",
                    Order::Random => ", random order",
                }
            ),
            None => format!("size {}", self.size().text()),
        };
        let recipients = match &self.workload.recipients {
            Some(list) => format!(" from {} ({} addresses)", list.path.display(), list.len()),
            None => String::new(),
        };
        let sources = if self.sources.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = self.sources.iter().map(|s| s.ip().to_string()).collect();
            format!(", from {}", list.join(" "))
        };
        let delivered = match &self.delivered {
            Some(via) => format!(", delivered via {} (drain {:?})", via.url, via.drain),
            None => String::new(),
        };
        format!(
            "smtp-loadgen -> {}: {} connections on {} thread(s){sources}, {mode}, {} rcpt(s){recipients}, {content}{}{delivered}",
            self.target_text,
            self.connections,
            self.threads,
            self.workload.rcpts,
            self.session_description()
        )
    }

    /// TLS and AUTH as the header shows them (empty for plain SMTP without AUTH), e.g.
    /// `, STARTTLS (certificate not verified, no SNI, resumption on), AUTH PLAIN as u`.
    fn session_description(&self) -> String {
        let mut out = String::new();
        if let (Some(options), Some(tls)) = (&self.tls_options, &self.tls) {
            let mode = match self.workload.security {
                Security::Implicit => "implicit TLS",
                _ => "STARTTLS",
            };
            out.push_str(&format!(
                ", {mode} ({}, {}, resumption {})",
                self.verification(),
                describe_name(&tls.server_name),
                if options.resume { "on" } else { "off" }
            ));
        }
        if let Some(auth) = &self.workload.auth {
            out.push_str(&format!(", AUTH {} as {}", auth.mech.name(), auth.user));
        }
        out
    }

    /// How the server's certificate is checked, in words.
    fn verification(&self) -> String {
        match &self.tls_options {
            Some(TlsOptions { verify: false, .. }) | None => NOT_VERIFIED.to_string(),
            Some(TlsOptions { ca: Some(ca), .. }) => {
                format!("certificate verified against {}", ca.display())
            }
            Some(TlsOptions { ca: None, .. }) => {
                "certificate verified against the system's roots".to_string()
            }
        }
    }

    /// `--pace-spin` (or its default) where sends are paced: open loop (`--rate`, `--sweep`).
    fn pace_spin_in_use(&self) -> Option<Duration> {
        (self.rate.is_some() || self.sweep).then_some(self.pace_spin)
    }

    /// `--late-send-limit` (or its default) where the summary's "sustained" verdict uses it:
    /// a single open-loop run (a sweep step passes on its achieved rate and its `--slo`).
    fn late_send_limit_in_use(&self) -> Option<Duration> {
        (self.rate.is_some() && !self.sweep).then_some(self.late_send_limit)
    }

    /// The `config` object of `--json`: the run's settings as given.
    pub fn config_json(&self) -> serde_json::Value {
        let workload = &self.workload;
        let mut config = serde_json::json!({
            "target": self.target_text,
            "connections": self.connections,
            "threads": self.threads,
            "messages": self.messages,
            "duration_seconds": self.duration.map(|d| d.as_secs_f64()),
            "warmup_seconds": self.warmup.as_secs_f64(),
            "size": self.size().json(),
            "rcpts": workload.rcpts,
            "msgs_per_conn": workload.msgs_per_conn,
            "pipelining": self.pipelining.name(),
            "bdat": workload.bdat,
            "inflight": self.inflight,
            "helo": workload.helo,
            "rate": self.rate,
            "seed": self.seed,
            "tls": self.tls_options.as_ref().map(|options| serde_json::json!({
                "mode": match self.workload.security {
                    Security::Implicit => "implicit",
                    _ => "starttls",
                },
                "certificate": self.verification(),
                "verified": options.verify,
                "ca": options.ca.as_ref().map(|p| p.display().to_string()),
                "sni": self.tls.as_ref().and_then(|tls| match &tls.server_name {
                    rustls::pki_types::ServerName::DnsName(name) => Some(name.as_ref().to_string()),
                    _ => None,
                }),
                "resumption": options.resume,
            })),
            "auth": workload.auth.as_ref().map(|auth| serde_json::json!({
                "mechanism": auth.mech.name(),
                "user": auth.user,
            })),
        });
        // Only when used, so a run without them keeps the same document.
        let extra = [
            (
                "targets",
                (self.targets.len() > 1).then(|| {
                    serde_json::json!(self.targets.iter().map(|t| &t.text).collect::<Vec<_>>())
                }),
            ),
            (
                "sources",
                (!self.sources.is_empty()).then(|| {
                    serde_json::json!(self
                        .sources
                        .iter()
                        .map(|s| s.ip().to_string())
                        .collect::<Vec<_>>())
                }),
            ),
            (
                "corpus",
                self.corpus().map(|corpus| {
                    let mut json = corpus.json();
                    json["order"] = match workload.order {
                        Order::Sequential => "sequential",
                        Order::Random => "random",
                    }
                    .into();
                    json
                }),
            ),
            (
                "delivered_via",
                self.delivered.as_ref().map(|via| {
                    serde_json::json!({
                        "url": via.url,
                        "drain_seconds": via.drain.as_secs_f64(),
                    })
                }),
            ),
            (
                "pace_spin_seconds",
                self.pace_spin_in_use()
                    .map(|spin| serde_json::json!(spin.as_secs_f64())),
            ),
            (
                "late_send_limit_seconds",
                self.late_send_limit_in_use()
                    .map(|limit| serde_json::json!(limit.as_secs_f64())),
            ),
            (
                "rcpt_file",
                workload.recipients.as_ref().map(|list| {
                    serde_json::json!({
                        "path": list.path.display().to_string(),
                        "addresses": list.len(),
                    })
                }),
            ),
        ];
        for (key, value) in extra {
            if let Some(value) = value {
                config[key] = value;
            }
        }
        if let Some(corpus) = self.corpus() {
            // Sizes come from the corpus: typed like the others, one key saying which.
            let json = corpus.json();
            config["size"] = serde_json::json!({ "corpus": {
                "min": json["size_min"],
                "median": json["size_median"],
                "max": json["size_max"],
            }});
        }
        config
    }
}

/// Checks `--pace-spin` and `--late-send-limit`: both pace or judge an open loop's send
/// schedule, so a closed-loop run (no `--rate` or `--sweep`), which has none, refuses them
/// rather than ignore them; a sweep refuses `--late-send-limit` (its steps pass on their
/// achieved rate and `--slo`, not on send lateness); and a zero limit is refused, as no run
/// could meet it (a send lateness is recorded as at least 1 ns).
fn check_pacing(args: &RunArgs, sweep: bool) -> Result<(), String> {
    if let Some(limit) = args.late_send_limit {
        if limit.is_zero() {
            return Err(format!(
                "--late-send-limit {limit:?}: must be more than 0 (a send lateness is \
                 recorded as at least 1 ns, so no run would be sustained on time)"
            ));
        }
        if sweep {
            return Err(format!(
                "--late-send-limit {limit:?}: applies to a single open-loop run (--rate) \
                 only; a --sweep step passes on its achieved rate and its --slo"
            ));
        }
        if args.rate.is_none() {
            return Err(format!(
                "--late-send-limit {limit:?}: applies to open-loop runs (--rate) only; a \
                 closed-loop run sends each message when a connection is free, on no schedule \
                 to be late for"
            ));
        }
    }
    if let Some(spin) = args.pace_spin {
        if args.rate.is_none() && !sweep {
            return Err(format!(
                "--pace-spin {spin:?}: applies to open-loop runs (--rate or --sweep) only; a \
                 closed-loop run sends each message when a connection is free, on no schedule \
                 to wait for"
            ));
        }
    }
    Ok(())
}

/// `--auth USER:PASS` (split at the first colon: the password may hold colons).
fn parse_auth(credentials: &str, mech: Option<AuthMechArg>) -> Result<Auth, String> {
    let (user, pass) = credentials
        .split_once(':')
        .ok_or("--auth wants USER:PASS")?;
    if user.is_empty() {
        return Err("--auth USER:PASS: the user name is empty".into());
    }
    if pass.is_empty() {
        // RFC 4616 §2: PLAIN's password is one or more octets; servers refuse an empty one.
        return Err("--auth USER:PASS: the password is empty".into());
    }
    if credentials.contains('\0') {
        // RFC 4616 §2: NUL separates PLAIN's fields and may not appear in them.
        return Err("--auth USER:PASS: no NUL characters".into());
    }
    let mech = match mech {
        None | Some(AuthMechArg::Plain) => AuthMech::Plain,
        Some(AuthMechArg::Login) => AuthMech::Login,
    };
    Ok(Auth::new(mech, user, pass))
}

/// `--source` addresses with port 0, each checked by binding a socket to it once: an address
/// not on this host, or of another family than a target, fails here with a clear message.
fn check_sources(sources: &[IpAddr], targets: &[SocketAddr]) -> Result<Vec<SocketAddr>, String> {
    let mut checked = Vec::with_capacity(sources.len());
    for &ip in sources {
        let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        if ip.is_unspecified() || ip.is_multicast() || broadcast {
            return Err(format!(
                "--source {ip}: not a local unicast address (unspecified, broadcast and \
                 multicast addresses cannot be a TCP connection's source)"
            ));
        }
        let addr = SocketAddr::new(ip, 0);
        if let Some(target) = targets.iter().find(|t| t.is_ipv4() != ip.is_ipv4()) {
            return Err(format!(
                "--source {ip} cannot reach --target {target}: one is IPv4, the other IPv6"
            ));
        }
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(|e| format!("--source {ip}: {e}"))?;
        socket.bind(&addr.into()).map_err(|e| {
            format!("--source {ip}: cannot bind to it ({e}): is the address on this host?")
        })?;
        checked.push(addr);
    }
    Ok(checked)
}

/// The first address `target` resolves to.
fn resolve(target: &str) -> Result<SocketAddr, String> {
    target
        .to_socket_addrs()
        .map_err(|e| format!("--target {target:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--target {target:?}: no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn settings(args: &[&str]) -> Result<Settings, String> {
        let cli =
            Cli::try_parse_from(["smtp-loadgen"].iter().chain(args)).map_err(|e| e.to_string())?;
        Settings::from_args(cli.run)
    }

    #[test]
    fn work_is_shared_evenly_over_threads() {
        let s = settings(&[
            "--target",
            "127.0.0.1:25",
            "-c",
            "5",
            "--threads",
            "2",
            "-n",
            "7",
            "--rate",
            "100",
        ])
        .unwrap();
        let start = Instant::now();
        let plans: Vec<ThreadPlan> = (0..s.threads).map(|i| s.thread_plan(i, start)).collect();
        assert_eq!(plans[0].connections + plans[1].connections, 5);
        assert_eq!((plans[0].connections, plans[1].connections), (3, 2));
        assert_eq!((plans[0].messages, plans[1].messages), (Some(4), Some(3)));
        assert_eq!(plans[1].rate, Some(50.0));
        assert_eq!(plans[0].end, None);
    }

    #[test]
    fn threads_never_outnumber_connections_and_warmup_rounds_up() {
        let s = settings(&[
            "--target",
            "127.0.0.1:25",
            "-c",
            "2",
            "--threads",
            "8",
            "-d",
            "3s",
            "--warmup",
            "1500ms",
        ])
        .unwrap();
        assert_eq!(s.threads, 2);
        assert_eq!(s.messages, None);
        assert_eq!(s.warmup, Duration::from_secs(2));
        let start = Instant::now();
        assert_eq!(s.end(start), Some(start + Duration::from_secs(5)));
    }

    #[test]
    fn empty_runs_and_instant_timeouts_are_usage_errors() {
        let refused = |args: &[&str]| {
            let mut all = vec!["--target", "127.0.0.1:25"];
            all.extend(args);
            settings(&all).unwrap_err()
        };
        assert_eq!(refused(&["-n", "0"]), "--messages must be at least 1");
        // Was accepted, and the header said "BDAT (inflight 0)".
        assert!(
            refused(&["--bdat", "--inflight", "0"]).starts_with("--inflight must be at least 1")
        );
        for args in [&["-d", "0"][..], &["-d", "5µs"], &["-d", "999ms"]] {
            let error = refused(args);
            assert!(
                error.starts_with("--duration must be at least 1s"),
                "{error}"
            );
        }
        for args in [
            &["--timeout", "0"][..],
            &["--timeout", "5µs"],
            &["--timeout", "0.0000000001ns"],
        ] {
            assert_eq!(refused(args), "--timeout must be at least 1ms");
        }
        // The shortest accepted.
        for args in [&["-n", "1"][..], &["-d", "1s"], &["--timeout", "1ms"]] {
            let mut all = vec!["--target", "127.0.0.1:25"];
            all.extend(args);
            assert!(settings(&all).is_ok(), "{args:?}");
        }
    }

    #[test]
    fn header_and_config_describe_the_flags_as_given() {
        let s = settings(&["--target", "127.0.0.1:25", "--bdat", "--inflight", "4"]).unwrap();
        assert_eq!(
            s.header(),
            "smtp-loadgen -> 127.0.0.1:25: 10 connections on 1 thread(s), closed loop, \
             BDAT (inflight 4), pipelining if offered, 1 rcpt(s), size 1 KiB"
        );
        let config = s.config_json();
        assert_eq!(config["pipelining"], "auto");
        assert_eq!(config["size"], serde_json::json!({"fixed": 1024}));
        assert_eq!(config["messages"], 10_000);
        assert_eq!(config["inflight"], 4);
        assert_eq!(config["tls"], serde_json::Value::Null);
        assert_eq!(config["auth"], serde_json::Value::Null);
    }

    #[test]
    fn pacing_flags_are_refused_where_they_do_not_apply_and_recorded_where_they_do() {
        let run = |args: &[&str]| {
            let mut all = vec!["--target", "127.0.0.1:25"];
            all.extend_from_slice(args);
            settings(&all)
        };
        // Closed loop: both were accepted and silently ignored.
        assert_eq!(
            run(&["--late-send-limit", "5ms"]).unwrap_err(),
            "--late-send-limit 5ms: applies to open-loop runs (--rate) only; a closed-loop \
             run sends each message when a connection is free, on no schedule to be late for"
        );
        assert_eq!(
            run(&["--pace-spin", "20us"]).unwrap_err(),
            "--pace-spin 20µs: applies to open-loop runs (--rate or --sweep) only; a \
             closed-loop run sends each message when a connection is free, on no schedule to \
             wait for"
        );
        // A zero limit can never be met: a lateness is recorded as at least 1 ns.
        for args in [
            &["--rate", "100", "--late-send-limit", "0"][..],
            &["--late-send-limit", "0ms"],
        ] {
            let error = run(args).unwrap_err();
            assert!(
                error.starts_with("--late-send-limit 0ns: must be more than 0"),
                "{error}"
            );
        }
        // A sweep paces its steps but judges them on their achieved rate and SLOs.
        let error = run(&["--sweep", "10..20", "--late-send-limit", "5ms"]).unwrap_err();
        assert!(
            error.contains("a --sweep step passes on its achieved rate and its --slo"),
            "{error}"
        );
        let sweep = run(&["--sweep", "10..20", "--pace-spin", "0"]).unwrap();
        assert_eq!(sweep.config_json()["pace_spin_seconds"], 0.0);
        assert!(sweep.config_json().get("late_send_limit_seconds").is_none());

        // Open loop: the values in use, given or not, in the header and the JSON config.
        let open = run(&["--rate", "100"]).unwrap();
        assert!(
            open.header().contains(
                "open loop at 100 msgs/s, DATA, pipelining if offered, pace spin 50µs, \
                           late-send limit 10ms, 1 rcpt(s)"
            ),
            "{}",
            open.header()
        );
        assert_eq!(open.config_json()["pace_spin_seconds"], 50e-6);
        assert_eq!(open.config_json()["late_send_limit_seconds"], 0.01);
        let given = run(&[
            "--rate",
            "100",
            "--pace-spin",
            "0",
            "--late-send-limit",
            "25ms",
        ])
        .unwrap();
        assert_eq!(given.late_send_limit, Duration::from_millis(25));
        assert!(given
            .header()
            .contains(", pace spin 0ns, late-send limit 25ms,"));
        assert_eq!(given.config_json()["pace_spin_seconds"], 0.0);
        assert_eq!(given.config_json()["late_send_limit_seconds"], 0.025);
        // Closed loop: neither (they do not apply), and the document as before.
        let closed = run(&[]).unwrap();
        assert!(!closed.header().contains("pace spin"));
        for key in ["pace_spin_seconds", "late_send_limit_seconds"] {
            assert!(closed.config_json().get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn tls_and_auth_are_described_and_unverified_certificates_said_plainly() {
        let s = settings(&[
            "--target",
            "127.0.0.1:25",
            "--starttls",
            "--auth",
            "user:se:cret",
            "--auth-mech",
            "login",
        ])
        .unwrap();
        let header = s.header();
        assert!(
            header.ends_with(
                ", STARTTLS (certificate not verified, no SNI, resumption on), AUTH LOGIN as user"
            ),
            "{header}"
        );
        assert!(!header.contains("se:cret"));
        let config = s.config_json();
        assert_eq!(config["tls"]["mode"], "starttls");
        assert_eq!(config["tls"]["certificate"], "certificate not verified");
        assert_eq!(config["tls"]["verified"], false);
        assert_eq!(config["auth"]["mechanism"], "LOGIN");
        assert_eq!(config["auth"]["user"], "user");
        assert!(!config.to_string().contains("se:cret"));
        assert_eq!(s.workload.security, Security::StartTls);

        let s = settings(&[
            "--target",
            "127.0.0.1:465",
            "--tls",
            "--sni",
            "mx.test",
            "--tls-resume",
            "off",
        ])
        .unwrap();
        assert!(
            s.header().ends_with(
                ", implicit TLS (certificate not verified, SNI mx.test, resumption off)"
            ),
            "{}",
            s.header()
        );
        assert_eq!(s.config_json()["tls"]["sni"], "mx.test");
        assert_eq!(s.config_json()["tls"]["resumption"], false);
    }

    #[test]
    fn sources_and_targets_are_checked_and_described() {
        let s = settings(&[
            "--target",
            "127.0.0.1:25",
            "--target",
            "127.0.0.1:26",
            "--source",
            "127.0.0.2",
            "--source",
            "127.0.0.3",
        ])
        .unwrap();
        assert!(
            s.header().starts_with(
                "smtp-loadgen -> 127.0.0.1:25, 127.0.0.1:26: 10 connections on 1 thread(s), \
                 from 127.0.0.2 127.0.0.3, closed loop"
            ),
            "{}",
            s.header()
        );
        assert_eq!(s.target_names(), ["127.0.0.1:25", "127.0.0.1:26"]);
        let plan = s.thread_plan(0, Instant::now());
        assert_eq!(plan.targets.len(), 2);
        assert_eq!(plan.sources[1], "127.0.0.3:0".parse().unwrap());
        let config = s.config_json();
        assert_eq!(config["targets"][1], "127.0.0.1:26");
        assert_eq!(config["sources"][0], "127.0.0.2");
        // One target: no per-target section, and the JSON config as before.
        let one = settings(&["--target", "127.0.0.1:25"]).unwrap();
        assert!(one.target_names().is_empty());
        for key in ["targets", "sources", "corpus", "rcpt_file"] {
            assert!(one.config_json().get(key).is_none(), "{key}");
        }
        let error = settings(&["--target", "127.0.0.1:25", "--source", "::1"]).unwrap_err();
        assert!(error.contains("one is IPv4, the other IPv6"), "{error}");
        for bad in ["255.255.255.255", "0.0.0.0", "224.0.0.1", "::", "ff02::1"] {
            let target = if bad.contains(':') {
                "[::1]:25"
            } else {
                "127.0.0.1:25"
            };
            let error = settings(&["--target", target, "--source", bad]).unwrap_err();
            assert!(
                error.contains("not a local unicast address"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn helo_and_ehlo_take_the_name_a_user_gives() {
        let greeting = |args: &[&str]| {
            let mut all = vec!["--target", "127.0.0.1:25"];
            all.extend_from_slice(args);
            settings(&all).map(|s| (s.workload.helo, s.workload.ehlo_name.clone()))
        };
        let ok = |helo: bool, name: &str| Ok((helo, name.to_string()));
        assert_eq!(greeting(&[]), ok(false, "loadgen.example.org"));
        assert_eq!(
            greeting(&["--helo", "client.test"]),
            ok(true, "client.test")
        );
        assert_eq!(greeting(&["--helo"]), ok(true, "loadgen.example.org"));
        assert_eq!(
            greeting(&["--ehlo", "client.test"]),
            ok(false, "client.test")
        );
        assert_eq!(
            greeting(&["--helo", "[192.0.2.1]"]),
            ok(true, "[192.0.2.1]")
        );
        // The old spellings: --ehlo-name NAME alone, and with a bare --helo.
        assert_eq!(
            greeting(&["--ehlo-name", "old.test"]),
            ok(false, "old.test")
        );
        assert_eq!(
            greeting(&["--helo", "--ehlo-name", "old.test"]),
            ok(true, "old.test")
        );
        let error = greeting(&["--helo", "a.test", "--ehlo", "b.test"]).unwrap_err();
        assert!(error.contains("cannot be used with"), "{error}");
        let error = greeting(&["--helo", "a.test", "--ehlo-name", "b.test"]).unwrap_err();
        assert!(error.contains("give the HELO name once"), "{error}");
        let error = greeting(&["--ehlo", "a b"]).unwrap_err();
        assert!(error.contains("cannot be part of a domain"), "{error}");
        let error = greeting(&["--helo", "x\r\nMAIL FROM:<a@b>"]).unwrap_err();
        assert!(error.contains("cannot be part of a domain"), "{error}");
        let error = greeting(&["--ehlo", ""]).unwrap_err();
        assert!(error.contains("the name is empty"), "{error}");
        let error = greeting(&["--helo", "h.test", "--bdat"]).unwrap_err();
        assert!(error.contains("drop --helo"), "{error}");
    }

    #[test]
    fn tls_and_auth_flags_are_checked() {
        let error = |args: &[&str]| {
            let mut all = vec!["--target", "127.0.0.1:25"];
            all.extend_from_slice(args);
            settings(&all).unwrap_err()
        };
        assert!(error(&["--starttls", "--tls"]).contains("cannot be used with"));
        assert!(error(&["--tls-verify"]).contains("need --starttls or --tls"));
        assert!(error(&["--sni", "mx.test"]).contains("need --starttls or --tls"));
        assert!(error(&["--tls-resume", "off"]).contains("need --starttls or --tls"));
        assert!(error(&["--starttls", "--helo"]).contains("drop --helo"));
        assert!(error(&["--auth", "u:p", "--helo"]).contains("drop --helo"));
        assert!(error(&["--auth", "nocolon"]).contains("USER:PASS"));
        assert!(error(&["--auth", ":pass"]).contains("user name is empty"));
        assert!(error(&["--auth-mech", "login"]).contains("needs --auth"));
        assert!(
            error(&["--tls", "--ca", "/nonexistent/ca.pem"]).contains("--ca /nonexistent/ca.pem")
        );
        // --ca implies verification.
        assert!(settings(&[
            "--target",
            "127.0.0.1:25",
            "--tls",
            "--tls-verify",
            "--sni",
            "mx.test"
        ])
        .map(|s| s.tls_options.unwrap().verify)
        .unwrap_or(true));
    }
}
