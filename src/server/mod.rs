//! The server: sockets, threads, time. Moves bytes between sockets and the protocol.
//!
//! What it does: bind the listeners ([`listener`]), start one [`worker`] thread per core, each
//! running its own event loop over its own connections ([`conn`]) and deadlines ([`timer`]);
//! stop them gracefully on request; reopen the store files on request (log rotation); report
//! counters. [`run`] maps signals to those requests.
//!
//! What it does not do: interpret a single byte of SMTP. That is [`crate::proto`]'s job.
//!
//! ```text
//!                 SO_REUSEPORT: the kernel spreads connections
//!        ┌──────────────────────┬──────────────────────┐
//!   listener 0             listener 1       ...   listener N-1
//!        │                      │                      │
//!   worker 0 (thread)      worker 1 (thread)      worker N-1
//!   mio Poll + Slab<Conn>  mio Poll + Slab<Conn>  ...
//!   timers, scratch buf    timers, scratch buf
//!        │ bytes in / replies out
//!   Conn ── Session (proto, sans I/O) ── Sink (discard, ...)
//! ```

pub mod conn;
pub mod descriptors;
pub mod handshakes;
mod heap;
pub mod listener;
pub mod per_client;
mod signals;
pub mod timer;
pub mod tls;
pub mod transport;
pub mod worker;

use crate::api::{ApiOptions, ApiServer};
use crate::capture::Capture;
use crate::config::{Config, ValidConfig};
use crate::fault::Plans;
use crate::metrics::{MetricsServer, MetricsSource, ReplyCounts};
use crate::stats::{SharedStats, Stats};
use crate::store::{CaptureTarget, StoreHub};
use crate::wake::Mailbox;
use mio::{Poll, Waker};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use timer::Deadlines;
use worker::{ExitAfter, ShutdownSignal, Worker, WorkerLinks, MAX_LISTENERS, WAKER};

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    /// The addresses actually bound (port 0 resolved).
    addrs: Vec<SocketAddr>,
    /// Stops the workers.
    shutdown: Arc<ShutdownSignal>,
    /// The worker threads.
    threads: Vec<JoinHandle<io::Result<Stats>>>,
    /// Each worker's published counters.
    stats: Vec<Arc<SharedStats>>,
    /// The storage threads, if any file store is configured (finished after the workers).
    store: Option<Arc<StoreHub>>,
    /// The capture store, with `--store memory` or `--api`.
    capture: Option<Arc<CaptureTarget>>,
    /// What was indexed at start from the `.eml` directory the capture reads bodies from.
    reindexed: Option<(PathBuf, crate::store::reindex::Reindexed)>,
    /// The fault plans: with startup rules, or with `--api` (which can set rules at run
    /// time).
    faults: Option<Arc<Plans>>,
    /// The metrics endpoint, if served.
    metrics: Option<MetricsServer>,
    /// The capture API (`--api`), if served.
    api: Option<ApiServer>,
    /// The transaction log writer, with `--log-sessions`.
    txlog: Option<Arc<crate::txlog::TxLog>>,
    /// The TLS certificate, when TLS is configured (SIGHUP reloads it).
    certificates: Option<Arc<tls::Certificates>>,
    /// The AUTH back end, with `--auth` (SIGHUP reloads a password file).
    auth: Option<Arc<crate::auth::Authenticator>>,
    /// The relay's spool, with `--spool` (shared with the storage threads).
    relay: Option<Arc<crate::relay::queue::RelayQueue>>,
    /// The relay's delivery loop, with `--spool` (stopped after the workers and storage
    /// threads, so the last committed messages are in the spool first).
    delivery: Option<crate::relay::deliver::DeliveryHandle>,
}

/// Checks `config` ([`Config::validate`]: a refusal is an `InvalidInput` error carrying the
/// [`crate::config::ConfigError`]), then starts the server from it ([`start_valid`]).
pub fn start(config: &Config) -> io::Result<ServerHandle> {
    start_valid(config.clone().validate()?)
}

/// Starts the server: binds every address (an error names the address) and starts the
/// workers. Returns once all are listening. The fault rules are the ones `config` holds,
/// parsed when it was checked: nothing is parsed here.
pub fn start_valid(config: ValidConfig) -> io::Result<ServerHandle> {
    let (config, faults) = config.into_parts();
    if config.keeps_capture() {
        heap::one_arena(); // before any thread of ours starts (server::heap)
    }
    if config.listen.len() > MAX_LISTENERS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_LISTENERS} --listen addresses"),
        ));
    }
    // Descriptors decide how many connections fit: take what the hard limit allows, and
    // lower the connection cap (once, said on stderr) if even that is not enough, so that
    // no connection is ever accepted into silence.
    let limit = descriptors::raise_limit()?;
    let reserved = descriptors::reserved(
        config.threads,
        config.listen.len(),
        config.stores.specs.len(),
        config.stores.batch,
        config.stores.threads,
        config.metrics.is_some(),
        config.api.is_some(),
    );
    let max_connections =
        descriptors::fit_connection_cap(config.limits.max_connections, limit, reserved);
    if max_connections < config.limits.max_connections {
        crate::warn_line!(
            "fastsmtpd: --max-connections lowered from {} to {max_connections}: the descriptor limit is {limit} ({reserved} kept for the server); raise it with `ulimit -n`",
            config.limits.max_connections
        );
    }
    let tls = match &config.tls.source {
        Some(source) => Some(tls::server_config(source, &config.hostname)?),
        None => None,
    };
    // Written now (a path that cannot be written is refused before anything is bound), put
    // in place only once every listener is bound: a start that fails (the address is in use
    // by a running fastsmtpd) must not replace the certificate that server's senders trust.
    let certificate_out = match (&config.tls.self_signed_out, &tls) {
        (Some(path), Some(settings)) => Some(tls::stage_certificate_pem(
            &settings.certificates.leaf(),
            path,
        )?),
        _ => None,
    };
    let auth = match &config.auth.source {
        Some(source) => Some(
            crate::auth::Authenticator::start(
                source.clone(),
                config.auth.limits,
                config.auth.threads,
            )
            .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?,
        ),
        None => None,
    };
    // Plain listeners first, then the implicit-TLS ones: a worker tells them apart by index.
    let all_addresses: Vec<SocketAddr> = config
        .listen
        .iter()
        .chain(&config.tls.listen)
        .copied()
        .collect();
    let (listeners, addrs) = listener::bind_all(&all_addresses, config.threads, config.backlog)?;
    // `--relay-listen`: which of them (by index, as the workers number them) relay.
    let relay_listeners: Option<Arc<[bool]>> = config.relay.listeners.as_ref().map(|chosen| {
        all_addresses
            .iter()
            .map(|address| chosen.contains(address))
            .collect()
    });
    let session_config = Arc::new(config.session_config());
    let open_connections = Arc::new(AtomicUsize::new(0));
    let per_client = Arc::new(per_client::PerClientConnections::new(
        config.limits.max_connections_per_ip,
    ));
    let handshake_rates = Arc::new(handshakes::HandshakeRates::new(
        config.tls.handshake_rate_per_ip,
    ));
    let deadlines = Deadlines {
        idle_timeout: config.limits.idle_timeout,
        min_data_rate: config.limits.min_data_rate,
        shutdown_grace: config.shutdown_grace,
        tls_handshake_timeout: config.tls.handshake_timeout,
    };

    // Without rules and without the API nothing can ever fire: no gate at all (the
    // discard path stays as it was). With the API, every connection gets a gate, which
    // reads one atomic number per command while no runtime rule exists.
    let faults = (!faults.is_empty() || config.api.is_some()).then(|| Arc::new(Plans::new(faults)));
    // The relay's spool (`--spool`), opened and recovered before anything is accepted; the
    // storage threads append to it, the delivery loop (started below) takes from it.
    let (relay, recovered) =
        match &config.relay.spool {
            Some(dir) => {
                let (queue, recovered) = crate::relay::queue::RelayQueue::open(
                    dir,
                    crate::relay::spool::SpoolLimits::default(),
                )
                .map_err(|e| io::Error::new(e.kind(), format!("--spool {}: {e}", dir.display())))?;
                let report = queue.spool().recovery_report().clone();
                if report.live_messages > 0 || report.repairs().is_some() {
                    crate::warn_line!(
                    "fastsmtpd: --spool {}: {} messages to relay recovered ({} segments read){}",
                    dir.display(),
                    report.live_messages,
                    report.segments_read,
                    report.repairs().map(|r| format!("; {r}")).unwrap_or_default()
                );
                }
                (Some(queue), recovered)
            }
            None => (None, Vec::new()),
        };
    let store = StoreHub::start(
        &config.stores.specs,
        config.stores.threads,
        config.stores.batch,
        config.stores.buffer,
        &config.hostname,
        relay.clone().map(|queue| crate::store::RelayInto {
            queue,
            domains: config.relay.domains.clone(),
        }),
    )?;
    // Messages being received for the capture may hold as much as its budget together.
    let capture = config.keeps_capture().then(|| {
        let limits = config.capture_limits();
        let store = Arc::new(Capture::new(limits, config.capture.on_full()));
        let target = CaptureTarget::new(store, limits.max_bytes);
        Arc::new(match capture_files(&config.stores.specs) {
            Some(dir) => target.with_files(dir),
            None => target,
        })
    });
    // Before any worker names a message: the directory's mail keeps the oldest seqs, and
    // its ids are reserved (`crate::store::reindex`).
    let reindexed = capture.as_ref().and_then(|target| {
        let dir = target.files()?;
        let report = crate::store::reindex::reindex(target.capture(), dir, config.capture_limits());
        Some((dir.to_path_buf(), report))
    });
    let exit_after = (config.exit_after_messages.is_some() || config.exit_after_sessions.is_some())
        .then(|| {
            Arc::new(ExitAfter::new(
                config.exit_after_messages,
                config.exit_after_sessions,
            ))
        });

    let mut polls = Vec::with_capacity(config.threads);
    let mut wakers = Vec::with_capacity(config.threads);
    for _ in 0..config.threads {
        let poll = Poll::new()?;
        // One waker per poll: shutdown and the mailbox (`crate::wake`) share it.
        wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
        polls.push(poll);
    }
    let shutdown = Arc::new(ShutdownSignal::new(
        wakers.clone(),
        store.clone(),
        config.shutdown_grace,
    ));

    let mut threads = Vec::with_capacity(config.threads);
    let mut stats = Vec::with_capacity(config.threads);
    let mut reply_counts = Vec::new();
    let txlog = if config.log_sessions {
        Some(Arc::new(crate::txlog::TxLog::start()?))
    } else {
        None
    };
    for (index, ((poll, listeners), waker)) in
        polls.into_iter().zip(listeners).zip(wakers).enumerate()
    {
        let shared = Arc::new(SharedStats::default());
        stats.push(Arc::clone(&shared));
        let replies = config.metrics.map(|_| Arc::new(ReplyCounts::default()));
        reply_counts.extend(replies.clone());
        let links = WorkerLinks {
            session_config: Arc::clone(&session_config),
            deadlines,
            max_connections,
            open_connections: Arc::clone(&open_connections),
            tls: tls.as_ref().map(|settings| Arc::clone(&settings.config)),
            auth: auth.clone(),
            first_tls_listener: config.listen.len(),
            relay_listeners: relay_listeners.clone(),
            per_client: Arc::clone(&per_client),
            handshake_rates: Arc::clone(&handshake_rates),
            max_handshakes_per_client: config.tls.max_handshakes_per_ip,
            stats: shared,
            store: store.clone(),
            capture: capture.clone(),
            mailbox: Arc::new(Mailbox::new(waker)),
            exit_after: exit_after.clone(),
            faults: faults.clone(),
            replies,
            txlog: txlog.clone(),
        };
        let worker = Worker::new(index, poll, listeners, links, Arc::clone(&shutdown))?;
        threads.push(
            std::thread::Builder::new()
                .name(format!("fastsmtpd-worker-{index}"))
                .spawn(move || worker.run())?,
        );
    }
    // The API comes up before the metrics endpoint, which exports its counters.
    let api = match (&config.api, &capture) {
        (Some(settings), Some(target)) => Some(ApiServer::start(
            settings.addr,
            Arc::clone(target.capture()),
            ApiOptions {
                token: settings.token.clone(),
                cors_origin: settings.cors.clone(),
                hostname: config.hostname.clone(),
                faults: faults.clone().unwrap_or_default(),
                max_message_size: Some(session_config.max_message_size),
                max_line_len: Some(session_config.max_line_len),
                view_cache: usize::try_from(config.capture.view_cache_bytes(true))
                    .unwrap_or(usize::MAX),
            },
        )?),
        _ => None,
    };
    // The relay's delivery loop: what the spool recovered now, what the storage threads
    // commit as it comes (`crate::relay::queue`). Started before the metrics endpoint,
    // which exports its counters.
    let delivery = match &relay {
        Some(queue) => {
            let mut settings = crate::relay::deliver::DeliveryConfig::new(
                config.relay.next_hops.iter().map(|hop| hop.addr).collect(),
                &config.hostname,
            );
            settings.retry = config.relay.retry.clone();
            settings.dsn = config.relay.dsn;
            settings.hop_names = config
                .relay
                .next_hops
                .iter()
                .map(|hop| hop.name.clone())
                .collect();
            settings.tls = config.relay.tls;
            settings.ca = config.relay.ca.clone();
            settings.credentials = config.relay.credentials.clone();
            settings.delay_warning = config.relay.delay_warning;
            settings.hop_order = config.relay.hop_order;
            settings.connections_per_hop = config.relay.connections_per_hop;
            settings.messages_per_connection = config.relay.messages_per_connection;
            Some(
                crate::relay::deliver::Deliverer::start(Arc::clone(queue), recovered, settings)
                    .map_err(|e| io::Error::new(e.kind(), format!("--relay-to: {e}")))?,
            )
        }
        None => None,
    };
    let metrics = match config.metrics {
        None => None,
        Some(addr) => Some(MetricsServer::start(
            addr,
            MetricsSource {
                workers: stats.clone(),
                replies: reply_counts,
                store: store.as_ref().map(|hub| Arc::clone(&hub.latency)),
                faults: faults.clone(),
                capture: capture.as_ref().map(|target| Arc::clone(target.capture())),
                relay: match (&delivery, &config.relay.spool) {
                    (Some(delivery), Some(spool)) => Some(crate::metrics::RelaySource {
                        stats: delivery.shared_stats(),
                        spool: spool.clone(),
                        hops: config
                            .relay
                            .next_hops
                            .iter()
                            .map(|hop| hop.addr.to_string())
                            .collect(),
                    }),
                    _ => None,
                },
                collectors: api
                    .as_ref()
                    .map(|api| api.counters().collectors())
                    .unwrap_or_default(),
            },
        )?),
    };
    let handle = ServerHandle {
        addrs,
        shutdown,
        threads,
        stats,
        store,
        capture,
        reindexed,
        faults,
        metrics,
        api,
        txlog,
        certificates: tls.map(|settings| settings.certificates),
        auth,
        relay,
        delivery,
    };
    if let Some(certificate) = certificate_out {
        if let Err(e) = certificate.publish() {
            let _ = handle.stop();
            return Err(e);
        }
    }
    Ok(handle)
}

impl ServerHandle {
    /// The relay's spool and the list of newly committed messages, with `--spool` (see
    /// [`crate::relay::queue`]), which the delivery loop started with the server takes from.
    pub fn relay_queue(&self) -> Option<&Arc<crate::relay::queue::RelayQueue>> {
        self.relay.as_ref()
    }

    /// The relay's delivery counters, with `--spool` (delivered, deferred, failed,
    /// notifications; for tests and, later, metrics).
    pub fn delivery_stats(&self) -> Option<&crate::relay::deliver::DeliveryStats> {
        self.delivery.as_ref().map(|d| d.stats())
    }

    /// The bound addresses, in `--listen` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Asks the workers to shut down (returns at once; see [`ServerHandle::join`]).
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Whether shutdown was asked for (by [`ServerHandle::shutdown`] or an exit condition).
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_requested()
    }

    /// The counters as last published by each worker.
    pub fn worker_stats(&self) -> Vec<Stats> {
        self.stats.iter().map(|shared| shared.snapshot()).collect()
    }

    /// The sum of the workers' counters.
    pub fn stats(&self) -> Stats {
        Stats::sum(&self.worker_stats())
    }

    /// Waits for every worker to finish, then for the storage threads to write what is
    /// queued; returns the summed final counters.
    pub fn join(mut self) -> io::Result<Stats> {
        let mut total = Stats::default();
        let mut first_error = None;
        for thread in self.threads {
            match thread.join() {
                Ok(Ok(stats)) => total.merge(&stats),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(io::Error::other("a worker thread panicked"));
                }
            }
        }
        if let Some(store) = &self.store {
            store.finish();
        }
        // After the storage threads: every message they committed is in the spool, which the
        // next start recovers; in-flight deliveries are dropped (sent again: at least once).
        if let Some(delivery) = self.delivery.take() {
            delivery.stop();
        }
        if let Some(metrics) = &mut self.metrics {
            metrics.stop();
        }
        // The API stops after the workers: a test may read what arrived until the end.
        if let Some(api) = &mut self.api {
            api.stop();
        }
        if let Some(txlog) = &self.txlog {
            txlog.finish();
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    /// The stores that write to a stream (`jsonl:-`, a FIFO, a device), as given: they are
    /// not durable (see [`crate::store::jsonl`]).
    pub fn not_durable_stores(&self) -> &[String] {
        self.store.as_ref().map_or(&[], |store| store.not_durable())
    }

    /// What was indexed at start from the `.eml` directory the capture reads bodies from
    /// (`--store eml:DIR --api`), and the directory.
    pub fn reindexed(&self) -> Option<(&Path, &crate::store::reindex::Reindexed)> {
        self.reindexed
            .as_ref()
            .map(|(dir, report)| (dir.as_path(), report))
    }

    /// The capture store (`--store memory` or `--api`; `None` without either), for whoever
    /// serves the API over it.
    pub fn capture(&self) -> Option<Arc<Capture>> {
        self.capture
            .as_ref()
            .map(|target| Arc::clone(target.capture()))
    }

    /// Where the capture API listens, if `--api` was given.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(ApiServer::local_addr)
    }

    /// Where the metrics endpoint listens, if `--metrics` was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    /// The fault plans (with startup rules or `--api`), to change the runtime rules.
    pub fn faults(&self) -> Option<Arc<Plans>> {
        self.faults.clone()
    }

    /// Each fault rule (startup, then runtime) with the times it fired.
    pub fn faults_fired(&self) -> Vec<(String, u64)> {
        self.faults.as_ref().map_or_else(Vec::new, |f| f.fired())
    }

    /// Opens again every file the server writes by path, for log rotation (what SIGHUP does
    /// in [`run`]): the JSON-lines store files, each created if missing. Sessions and
    /// messages in flight are not disturbed: the storage threads take the store's lock
    /// between batches. Standard output and error (`--log-sessions`, the server's own lines)
    /// are inherited descriptors and cannot be reopened. Returns how many files were
    /// reopened, or the first error after trying them all (a store that could not reopen
    /// answers `451 4.3.0` until a batch manages to open its path).
    pub fn reopen(&self) -> io::Result<usize> {
        self.store.as_ref().map_or(Ok(0), |store| store.reopen())
    }

    /// What SIGHUP does besides reopening files: reads the TLS certificate and key files
    /// again (new connections get the new certificate; on error the old one stays) and the
    /// `--auth file:` password file (on error the old users stay). Returns one line per thing
    /// reloaded or failed, for the server to print.
    pub fn reload(&self) -> Vec<Result<String, String>> {
        let mut said = Vec::new();
        if let Some(certificates) = &self.certificates {
            said.push(match certificates.reload() {
                Ok(true) => Ok("reloaded the TLS certificate".to_string()),
                Ok(false) => Ok("kept the self-signed TLS certificate".to_string()),
                Err(e) => Err(format!("{e} (the old certificate stays)")),
            });
        }
        if let Some(auth) = &self.auth {
            match auth.reload() {
                Ok(Some(users)) => {
                    said.push(Ok(format!("reloaded the password file ({users} users)")));
                    if let Some(warning) = auth.mixed_costs() {
                        said.push(Err(format!("warning: --auth: {warning}")));
                    }
                }
                Ok(None) => {}
                Err(e) => said.push(Err(format!("{e} (the old users stay)"))),
            }
        }
        said
    }

    /// Shuts down and waits (for tests and embedding).
    pub fn stop(self) -> io::Result<Stats> {
        self.shutdown();
        self.join()
    }
}

/// Runs the server until SIGINT or SIGTERM: prints the listening line ([`start_line`]), the
/// periodic stats line if asked, and a summary at the end, on standard output (on standard
/// error with `--store jsonl:-`, whose records have standard output to themselves).
///
/// Signals (taken by a signal thread and acted on here, never in an event loop, so no session
/// notices them):
/// * SIGINT, SIGTERM: graceful shutdown; a second one of either exits at once with status
///   128 + its number (130 for SIGINT, 143 for SIGTERM), as a shell reports a process killed
///   by it.
/// * SIGHUP: reopens the JSON-lines store files (log rotation; see [`ServerHandle::reopen`]),
///   reloads the TLS certificate and the `--auth file:` password file
///   ([`ServerHandle::reload`]), and says so on stdout (failures on stderr). Nothing else is written by path: `--log-sessions` and the
///   server's own lines go to the stdout and stderr it was started with, which it cannot
///   reopen. Ignored once shutdown has begun.
/// * SIGUSR1: prints the stats line (counters and rates since start).
/// * SIGUSR2: ignored (caught, so it does not kill the server as it would by default).
pub fn run(config: ValidConfig) -> io::Result<Stats> {
    // The settings this loop and its lines read; the server takes the checked config.
    let settings = Config::clone(&config);
    let server = start_valid(config)?;
    let config = &settings;
    let started = Instant::now();
    // Caught before the listening line: whoever waits for that line may signal at once.
    let requests = signals::catch()?;
    // Standard output belongs to the records with `jsonl:-`: the server's lines go to stderr.
    let console = if config
        .stores
        .specs
        .contains(&crate::store::StoreSpec::JsonlStdout)
    {
        Console::Stderr
    } else {
        Console::Stdout
    };
    let say = |line: &str| console.say(line);
    if let Some(warning) = server.auth.as_ref().and_then(|auth| auth.mixed_costs()) {
        crate::warn_line!("fastsmtpd: warning: --auth: {warning}");
    }
    if let Some(warning) = config.api.as_ref().and_then(|api| api.open_warning()) {
        crate::warn_line!("{warning}");
    }
    for store in server.not_durable_stores() {
        crate::warn_line!(
            "fastsmtpd: {store} is not durable: it writes to a stream (standard output, a FIFO or a device) without fsync; a 250 means its line was written to the stream, not that it is on disk"
        );
    }
    say(&start_line(
        config,
        server.local_addrs(),
        server.not_durable_stores(),
    ));
    if let Some((dir, report)) = server.reindexed() {
        say(&report.line(dir));
        if let Some(warning) = report.warning(dir) {
            crate::warn_line!("{warning}");
        }
    }
    if let Some(addr) = server.metrics_addr() {
        say(&format!("fastsmtpd: metrics on http://{addr}/metrics"));
    }
    if let Some(addr) = server.api_addr() {
        say(&format!(
            "fastsmtpd: capture API on http://{addr}/api/v1/ (web UI at http://{addr}/)"
        ));
    }

    let mut last = (started, Stats::default());
    // Wake often enough to notice an exit condition the workers met.
    const CHECK_EXIT: Duration = Duration::from_millis(100);
    loop {
        match requests.recv_timeout(CHECK_EXIT) {
            Ok(signals::Request::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                say(&format!(
                    "fastsmtpd: shutting down (grace {})",
                    crate::units::format_duration(config.shutdown_grace)
                ));
                break;
            }
            Ok(signals::Request::Reopen) => {
                match server.reopen() {
                    Ok(reopened) => say(&format!(
                        "fastsmtpd: SIGHUP: reopened {reopened} store file{}",
                        if reopened == 1 { "" } else { "s" }
                    )),
                    Err(e) => crate::warn_line!(
                        "fastsmtpd: SIGHUP: {e} (each batch tries again; until then its messages get 451)"
                    ),
                }
                for line in server.reload() {
                    match line {
                        Ok(done) => say(&format!("fastsmtpd: SIGHUP: {done}")),
                        Err(failed) => crate::warn_line!("fastsmtpd: SIGHUP: {failed}"),
                    }
                }
            }
            Ok(signals::Request::Report) => {
                say(&stats_line(
                    &server.stats(),
                    &Stats::default(),
                    started.elapsed(),
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if server.is_shutting_down() {
            say("fastsmtpd: exit condition reached, shutting down");
            break;
        }
        if let Some(interval) = config.stats_interval {
            let now = Instant::now();
            if now - last.0 >= interval {
                let stats = server.stats();
                say(&stats_line(&stats, &last.1, now - last.0));
                last = (now, stats);
            }
        }
    }
    let faults = server.faults.clone();
    let total = server.stop()?;
    for (rule, count) in faults.map_or_else(Vec::new, |f| f.fired()) {
        say(&format!("fastsmtpd: fault {rule:?} fired {count} times"));
    }
    say(&format!(
        "fastsmtpd: done: messages={} bytes={} connections={} refused_connections={} {} timeouts={}",
        total.messages,
        total.bytes,
        total.connections,
        total.refused_connections,
        errors_fields(&total.error_replies),
        total.timeouts
    ));
    Ok(total)
}

/// Where the server's own lines go (the listening line, stats, SIGHUP results, the
/// summary): standard output, or standard error while a store writes its records to
/// standard output (`--store jsonl:-`), so that stream holds nothing but JSON lines.
#[derive(Debug, Clone, Copy)]
enum Console {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Console {
    /// Prints `line` and a newline.
    fn say(self, line: &str) {
        match self {
            Console::Stdout => crate::say!("{line}"),
            Console::Stderr => crate::warn_line!("{line}"),
        }
    }
}

/// The line the server prints once it listens: every address (and which speaks implicit TLS,
/// which offers STARTTLS), the workers, then what is on: TLS (and where a self-signed
/// certificate was written), AUTH (its source, where it is offered, whether required), and
/// the stores (those in `not_durable` marked so). It always starts with
/// `fastsmtpd listening on `.
pub fn start_line(config: &Config, addrs: &[SocketAddr], not_durable: &[String]) -> String {
    let tls = config.tls.source.is_some();
    let listeners: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(index, addr)| match (index < config.listen.len(), tls) {
            (false, _) => format!("{addr} (implicit TLS)"),
            (true, true) if config.tls.require => format!("{addr} (STARTTLS, required)"),
            (true, true) => format!("{addr} (STARTTLS)"),
            (true, false) => addr.to_string(),
        })
        .collect();
    let tls_text = match (&config.tls.source, &config.tls.self_signed_out) {
        (None, _) => "off".to_string(),
        (Some(crate::config::TlsSource::Files { cert, .. }), _) => format!("{}", cert.display()),
        (Some(crate::config::TlsSource::SelfSigned), None) => {
            format!("self-signed for {}", config.hostname)
        }
        (Some(crate::config::TlsSource::SelfSigned), Some(out)) => format!(
            "self-signed for {}, certificate written to {}",
            config.hostname,
            out.display()
        ),
    };
    let auth_text = match &config.auth.source {
        None => "off".to_string(),
        Some(source) => {
            let source = match source {
                crate::auth::AuthSource::Any => "any".to_string(),
                crate::auth::AuthSource::File(path) => format!("file:{}", path.display()),
            };
            let offered = match (config.auth.plaintext && !config.tls.require, tls) {
                (false, _) => "inside TLS only",
                (true, true) => "inside TLS and on plaintext",
                (true, false) => "on plaintext",
            };
            let required = if config.auth.required {
                ", required"
            } else {
                ""
            };
            format!("{source} (PLAIN LOGIN, {offered}{required})")
        }
    };
    let capture_text = || {
        let budget = config.capture.limits().max_bytes;
        let views = config.capture.view_cache_bytes(config.api.is_some());
        let on_full = match config.capture.on_full() {
            crate::capture::OnFull::EvictOldest => "evict oldest",
            crate::capture::OnFull::Refuse => "tempfail",
        };
        if views > 0 {
            format!("{budget} bytes, {views} of them for parsed views, when full: {on_full}")
        } else {
            format!("{budget} bytes, when full: {on_full}")
        }
    };
    let relay_text = config.relay.spool.as_ref().map(|dir| {
        let hops: Vec<String> = config
            .relay
            .next_hops
            .iter()
            .map(|hop| {
                if hop.name == hop.addr.ip().to_string() {
                    hop.addr.to_string()
                } else {
                    format!("{}:{} = {}", hop.name, hop.addr.port(), hop.addr)
                }
            })
            .collect();
        // The TLS policy, so an operator sees at start whether mail may go out in clear.
        let tls = match config.relay.tls {
            crate::relay::client::session::TlsPolicy::Required => match config.relay.ca {
                Some(_) => "TLS required, verified with --relay-ca",
                None => "TLS required, verified with the system roots",
            },
            crate::relay::client::session::TlsPolicy::Opportunistic => "TLS opportunistic",
            crate::relay::client::session::TlsPolicy::Off => "TLS off",
        };
        let auth = if config.relay.credentials.is_some() {
            ", AUTH"
        } else {
            ""
        };
        // What is relayed when not everything is, and what becomes of the rest: a user who
        // limits relaying and keeps no store should see at start that the rest is dropped.
        let mut only = Vec::new();
        if config.relay.domains.is_some() {
            only.push(", only recipients at --relay-domains".to_string());
        }
        if let Some(listeners) = &config.relay.listeners {
            let listeners: Vec<String> = listeners.iter().map(SocketAddr::to_string).collect();
            only.push(format!(", only mail on {}", listeners.join(", ")));
        }
        if !only.is_empty() && config.stores.specs.is_empty() && !config.keeps_capture() {
            only.push("; the rest is discarded (no --store)".to_string());
        }
        format!(
            "spool {} (relaying to {}, {tls}{auth}{})",
            dir.display(),
            hops.join(", "),
            only.concat()
        )
    });
    let stores_text = if config.stores.specs.is_empty() && !config.keeps_capture() {
        relay_text
            .clone()
            .unwrap_or_else(|| "none (messages are discarded)".to_string())
    } else {
        let mut stores: Vec<String> = config
            .stores
            .specs
            .iter()
            .map(|spec| {
                let text = spec.to_string();
                if *spec == crate::store::StoreSpec::Memory {
                    format!("memory ({})", capture_text())
                } else if not_durable.contains(&text) {
                    format!("{text} (not durable)")
                } else {
                    text
                }
            })
            .collect();
        if config.keeps_capture()
            && !config
                .stores
                .specs
                .contains(&crate::store::StoreSpec::Memory)
        {
            stores.push(if stores.is_empty() {
                format!("memory ({})", capture_text())
            } else if let Some(dir) = capture_files(&config.stores.specs) {
                format!(
                    "an index for the API, bodies read from {} ({})",
                    dir.display(),
                    capture_text()
                )
            } else {
                format!("memory copies for the API ({})", capture_text())
            });
        }
        stores.extend(relay_text);
        stores.join(", ")
    };
    format!(
        "fastsmtpd listening on {} with {} worker{}; TLS: {tls_text}; AUTH: {auth_text}; stores: {stores_text}",
        listeners.join(", "),
        config.threads,
        if config.threads == 1 { "" } else { "s" },
    )
}

/// The periodic one-line report.
fn stats_line(now: &Stats, before: &Stats, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let messages = now.messages - before.messages;
    format!(
        "stats: connections open={} total={} messages={} bytes={} msgs/s={:.1} MB/s={:.2} {}",
        now.open_connections,
        now.connections,
        now.messages,
        now.bytes,
        messages as f64 / secs,
        (now.bytes - before.bytes) as f64 / secs / 1e6,
        errors_fields(&now.error_replies)
    )
}

/// The error replies in the summary and stats lines: `errors=` counts every 4xx/5xx reply,
/// then by class, then those fault rules made (already in the total).
fn errors_fields(errors: &crate::proto::reply::ErrorReplies) -> String {
    format!(
        "errors={} errors_4xx={} errors_5xx={} fault_errors={}",
        errors.total(),
        errors.protocol[0] + errors.fault[0],
        errors.protocol[1] + errors.fault[1],
        errors.fault[0] + errors.fault[1]
    )
}

/// Where the capture's message bodies are (issue 18: "the API also works over the durable
/// stores"): `None` (in memory) when `--store memory` is one of the stores, or when no
/// `eml:DIR` is; else the first `eml:DIR` (its files hold exactly the bytes received, so
/// `/raw` reads them back byte for byte). A Maildir file is not the message as received
/// (trace lines on top, CR LF made LF, which cannot be undone exactly for a message with a
/// bare CR or LF) and a JSON-lines record holds no content: beside those alone the capture
/// keeps its copy in memory.
fn capture_files(specs: &[crate::store::StoreSpec]) -> Option<std::path::PathBuf> {
    if specs.contains(&crate::store::StoreSpec::Memory) {
        return None;
    }
    specs.iter().find_map(|spec| match spec {
        // The store made the directory at start; its absolute name survives a change of
        // the working directory.
        crate::store::StoreSpec::Eml(dir) => {
            Some(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone()))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Auth, Stores, Tls};
    use crate::store::StoreSpec;

    /// The start line says which listener speaks implicit TLS and which offers STARTTLS,
    /// whether AUTH is on (its source, where, required), and which stores are active, the
    /// ones that are not durable marked so.
    #[test]
    fn the_start_line_says_what_is_on() {
        let plain: SocketAddr = "127.0.0.1:2525".parse().unwrap();
        let implicit: SocketAddr = "127.0.0.1:4650".parse().unwrap();
        let quiet = Config {
            listen: vec![plain],
            threads: 1,
            ..Config::default()
        };
        assert_eq!(
            start_line(&quiet, &[plain], &[]),
            "fastsmtpd listening on 127.0.0.1:2525 with 1 worker; TLS: off; AUTH: off; stores: none (messages are discarded)"
        );
        let mut memory = quiet.clone();
        memory.stores.specs = vec![StoreSpec::Memory];
        memory.capture.on_full = Some(crate::capture::OnFull::Refuse);
        assert_eq!(
            start_line(&memory, &[plain], &[]),
            "fastsmtpd listening on 127.0.0.1:2525 with 1 worker; TLS: off; AUTH: off; stores: memory (268435456 bytes, when full: tempfail)"
        );
        let mut api_alone = quiet.clone();
        api_alone.api = Some(crate::config::ApiSettings {
            addr: crate::config::DEFAULT_API_ADDR,
            token: None,
            cors: None,
        });
        assert!(start_line(&api_alone, &[plain], &[])
            .ends_with("stores: memory (268435456 bytes, 33554432 of them for parsed views, when full: evict oldest)"));
        let mut copies = quiet.clone();
        copies.stores.specs = vec![StoreSpec::Maildir("m".into())];
        copies.api = Some(crate::config::ApiSettings {
            addr: crate::config::DEFAULT_API_ADDR,
            token: None,
            cors: None,
        });
        assert_eq!(
            start_line(&copies, &[plain], &[]),
            "fastsmtpd listening on 127.0.0.1:2525 with 1 worker; TLS: off; AUTH: off; stores: maildir:m, memory copies for the API (268435456 bytes, 33554432 of them for parsed views, when full: evict oldest)"
        );
        let busy = Config {
            listen: vec![plain],
            threads: 2,
            hostname: "mx.test".into(),
            tls: Tls {
                source: Some(crate::config::TlsSource::SelfSigned),
                listen: vec![implicit],
                self_signed_out: Some("cert.pem".into()),
                ..Tls::default()
            },
            auth: Auth {
                source: Some(crate::auth::AuthSource::File("users".into())),
                required: true,
                ..Auth::default()
            },
            stores: Stores {
                specs: vec![StoreSpec::Maildir("Maildir".into()), StoreSpec::JsonlStdout],
                ..Stores::default()
            },
            ..Config::default()
        };
        assert_eq!(
            start_line(&busy, &[plain, implicit], &["jsonl:-".to_string()]),
            "fastsmtpd listening on 127.0.0.1:2525 (STARTTLS), 127.0.0.1:4650 (implicit TLS) \
             with 2 workers; TLS: self-signed for mx.test, certificate written to cert.pem; \
             AUTH: file:users (PLAIN LOGIN, inside TLS only, required); \
             stores: maildir:Maildir, jsonl:- (not durable)"
        );
        let files = Config {
            tls: Tls {
                source: Some(crate::config::TlsSource::Files {
                    cert: "c.pem".into(),
                    key: "k.pem".into(),
                }),
                require: true,
                ..Tls::default()
            },
            auth: Auth {
                source: Some(crate::auth::AuthSource::Any),
                plaintext: true,
                ..Auth::default()
            },
            threads: 1,
            ..Config::default()
        };
        assert_eq!(
            start_line(&files, &[plain], &[]),
            "fastsmtpd listening on 127.0.0.1:2525 (STARTTLS, required) with 1 worker; \
             TLS: c.pem; AUTH: any (PLAIN LOGIN, inside TLS only); stores: none (messages are discarded)"
        );
    }

    /// Relaying limited to some domains or listeners, with no store: the start line says
    /// the rest is discarded; with a store it does not.
    #[test]
    fn the_start_line_says_what_limited_relaying_leaves_out() {
        let addr: SocketAddr = "127.0.0.1:2525".parse().unwrap();
        let mut config = Config::default();
        config.relay.spool = Some("q".into());
        config.relay.next_hops = crate::config::parse_next_hops("127.0.0.1:26").unwrap();
        config.relay.domains = crate::relay::domains::RelayDomains::parse("a.test").ok();
        config.relay.listeners = Some(vec![addr]);
        let line = start_line(&config, &[addr], &[]);
        assert!(
            line.ends_with(
                "stores: spool q (relaying to 127.0.0.1:26, TLS opportunistic, only recipients \
                 at --relay-domains, only mail on 127.0.0.1:2525; the rest is discarded (no --store))"
            ),
            "{line}"
        );
        config.stores.specs = vec![StoreSpec::Eml("kept".into())];
        let line = start_line(&config, &[addr], &[]);
        assert!(!line.contains("discarded"), "{line}");
    }

    #[test]
    fn jsonl_dash_is_standard_output_and_excludes_log_sessions() {
        assert_eq!("jsonl:-".parse::<StoreSpec>(), Ok(StoreSpec::JsonlStdout));
        assert_eq!(StoreSpec::JsonlStdout.to_string(), "jsonl:-");
        assert_eq!(
            "jsonl:./-".parse::<StoreSpec>(),
            Ok(StoreSpec::Jsonl("./-".into()))
        );
        let both = Config {
            stores: Stores {
                specs: vec![StoreSpec::JsonlStdout],
                ..Stores::default()
            },
            log_sessions: true,
            ..Config::default()
        };
        assert!(both
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--log-sessions"));
        let out_without_self_signed = Config {
            tls: Tls {
                self_signed_out: Some("cert.pem".into()),
                ..Tls::default()
            },
            ..Config::default()
        };
        assert!(out_without_self_signed
            .validate()
            .unwrap_err()
            .to_string()
            .contains("needs --tls-self-signed"));
    }

    /// Two streams cannot both be kept: a line one has emitted cannot be taken back if the
    /// other refuses the message.
    #[test]
    fn at_most_one_store_may_be_a_stream() {
        let specs = [StoreSpec::JsonlStdout, StoreSpec::Jsonl("/dev/null".into())];
        let error = StoreHub::start(&specs, 1, 16, crate::store::MIN_STORE_BUFFER, "h", None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--store jsonl:-, --store jsonl:/dev/null: at most one store"),
            "{error}"
        );
    }
}
