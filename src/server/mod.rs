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
pub mod listener;
pub mod per_client;
pub mod timer;
pub mod tls;
pub mod transport;
pub mod worker;

use crate::config::Config;
use crate::metrics::{MetricsServer, MetricsSource, ReplyCounts};
use crate::stats::{SharedStats, Stats};
use crate::store::{Completions, StoreHub};
use mio::{Poll, Waker};
use std::io;
use std::net::SocketAddr;
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
    /// The storage threads, if any store is configured (finished after the workers).
    store: Option<Arc<StoreHub>>,
    /// The fault rules, if any.
    faults: Option<Arc<crate::fault::FaultRules>>,
    /// The metrics endpoint, if served.
    metrics: Option<MetricsServer>,
    /// The transaction log writer, with `--log-sessions`.
    txlog: Option<Arc<crate::txlog::TxLog>>,
    /// The TLS certificate, when TLS is configured (SIGHUP reloads it).
    certificates: Option<Arc<tls::Certificates>>,
    /// The AUTH back end, with `--auth` (SIGHUP reloads a password file).
    auth: Option<Arc<crate::auth::Authenticator>>,
}

/// Starts the server: binds every address (an error names the address) and starts the
/// workers. Returns once all are listening.
pub fn start(config: &Config) -> io::Result<ServerHandle> {
    config
        .validate()
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
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
        config.stores.len(),
        config.store_batch,
        config.store_threads,
        config.metrics.is_some(),
    );
    let max_connections = descriptors::fit_connection_cap(config.max_connections, limit, reserved);
    if max_connections < config.max_connections {
        eprintln!(
            "fastsmtpd: --max-connections lowered from {} to {max_connections}: the descriptor limit is {limit} ({reserved} kept for the server); raise it with `ulimit -n`",
            config.max_connections
        );
    }
    let tls = match &config.tls {
        Some(source) => Some(tls::server_config(source, &config.hostname)?),
        None => None,
    };
    let auth = match &config.auth {
        Some(source) => Some(
            crate::auth::Authenticator::start(source.clone())
                .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?,
        ),
        None => None,
    };
    // Plain listeners first, then the implicit-TLS ones: a worker tells them apart by index.
    let all_addresses: Vec<SocketAddr> = config
        .listen
        .iter()
        .chain(&config.listen_tls)
        .copied()
        .collect();
    let (listeners, addrs) = listener::bind_all(&all_addresses, config.threads, config.backlog)?;
    let session_config = Arc::new(config.session_config());
    let open_connections = Arc::new(AtomicUsize::new(0));
    let per_client = Arc::new(per_client::PerClientConnections::new(
        config.max_connections_per_ip,
    ));
    let deadlines = Deadlines {
        idle_timeout: config.idle_timeout,
        min_data_rate: config.min_data_rate,
        shutdown_grace: config.shutdown_grace,
        tls_handshake_timeout: config.tls_handshake_timeout,
    };

    let faults = crate::fault::FaultRules::parse(&config.faults, config.seed)
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
    let faults = (!faults.is_empty()).then(|| Arc::new(faults));
    let store = StoreHub::start(
        &config.stores,
        config.store_threads,
        config.store_batch,
        config.store_buffer,
        &config.hostname,
    )?;
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
        // One waker per poll: shutdown and storage completions share it.
        wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
        polls.push(poll);
    }
    let shutdown = Arc::new(ShutdownSignal::new(wakers.clone()));

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
            per_client: Arc::clone(&per_client),
            stats: shared,
            store: store.clone(),
            completions: Arc::new(Completions::new(waker)),
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
    let metrics = match config.metrics {
        None => None,
        Some(addr) => Some(MetricsServer::start(
            addr,
            MetricsSource {
                workers: stats.clone(),
                replies: reply_counts,
                store: store.as_ref().map(|hub| Arc::clone(&hub.latency)),
                faults: faults.clone(),
            },
        )?),
    };
    Ok(ServerHandle {
        addrs,
        shutdown,
        threads,
        stats,
        store,
        faults,
        metrics,
        txlog,
        certificates: tls.map(|settings| settings.certificates),
        auth,
    })
}

impl ServerHandle {
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
        if let Some(metrics) = &mut self.metrics {
            metrics.stop();
        }
        if let Some(txlog) = &self.txlog {
            txlog.finish();
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    /// Where the metrics endpoint listens, if `--metrics` was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    /// Each fault rule with the times it fired.
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
                    said.push(Ok(format!("reloaded the password file ({users} users)")))
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

/// What the signal thread asks of [`run`]'s loop.
#[derive(Debug, Clone, Copy)]
enum Request {
    /// SIGINT or SIGTERM (the first one): shut down gracefully.
    Shutdown,
    /// SIGHUP: reopen the files written by path ([`ServerHandle::reopen`]).
    Reopen,
    /// SIGUSR1: print the stats line.
    Report,
}

/// Runs the server until SIGINT or SIGTERM: prints the listening line, the periodic stats line
/// if asked, and a summary at the end.
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
pub fn run(config: &Config) -> io::Result<Stats> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let server = start(config)?;
    let started = Instant::now();
    // Caught before the listening line: whoever waits for that line may signal at once.
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])?;
    let (requests_tx, requests) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("fastsmtpd-signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                let request = match signal {
                    SIGINT | SIGTERM if stopping => {
                        let name = if signal == SIGINT {
                            "SIGINT"
                        } else {
                            "SIGTERM"
                        };
                        eprintln!("fastsmtpd: second {name}, exiting now");
                        std::process::exit(128 + signal);
                    }
                    SIGINT | SIGTERM => {
                        stopping = true;
                        Request::Shutdown
                    }
                    SIGHUP => Request::Reopen,
                    SIGUSR1 => Request::Report,
                    _ => continue, // SIGUSR2: caught only so that it does not kill
                };
                // Once the loop below has ended nobody listens, and nothing needs to.
                let _ = requests_tx.send(request);
            }
        })?;
    let addrs: Vec<String> = server
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "fastsmtpd listening on {} with {} worker{}",
        addrs.join(", "),
        config.threads,
        if config.threads == 1 { "" } else { "s" }
    );
    if let Some(addr) = server.metrics_addr() {
        println!("fastsmtpd: metrics on http://{addr}/metrics");
    }

    let mut last = (started, Stats::default());
    // Wake often enough to notice an exit condition the workers met.
    const CHECK_EXIT: Duration = Duration::from_millis(100);
    loop {
        match requests.recv_timeout(CHECK_EXIT) {
            Ok(Request::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                println!(
                    "fastsmtpd: shutting down (grace {})",
                    crate::units::format_duration(config.shutdown_grace)
                );
                break;
            }
            Ok(Request::Reopen) => {
                match server.reopen() {
                    Ok(reopened) => println!(
                        "fastsmtpd: SIGHUP: reopened {reopened} store file{}",
                        if reopened == 1 { "" } else { "s" }
                    ),
                    Err(e) => eprintln!(
                        "fastsmtpd: SIGHUP: {e} (each batch tries again; until then its messages get 451)"
                    ),
                }
                for line in server.reload() {
                    match line {
                        Ok(done) => println!("fastsmtpd: SIGHUP: {done}"),
                        Err(failed) => eprintln!("fastsmtpd: SIGHUP: {failed}"),
                    }
                }
            }
            Ok(Request::Report) => {
                println!(
                    "{}",
                    stats_line(&server.stats(), &Stats::default(), started.elapsed())
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if server.is_shutting_down() {
            println!("fastsmtpd: exit condition reached, shutting down");
            break;
        }
        if let Some(interval) = config.stats_interval {
            let now = Instant::now();
            if now - last.0 >= interval {
                let stats = server.stats();
                println!("{}", stats_line(&stats, &last.1, now - last.0));
                last = (now, stats);
            }
        }
    }
    let faults = server.faults.clone();
    let total = server.stop()?;
    for (rule, count) in faults.map_or_else(Vec::new, |f| f.fired()) {
        println!("fastsmtpd: fault {rule:?} fired {count} times");
    }
    println!(
        "fastsmtpd: done: messages={} bytes={} connections={} refused_connections={} {} timeouts={}",
        total.messages,
        total.bytes,
        total.connections,
        total.refused_connections,
        errors_fields(&total.error_replies),
        total.timeouts
    );
    Ok(total)
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
