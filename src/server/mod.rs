//! The server: sockets, threads, time. Moves bytes between sockets and the protocol.
//!
//! What it does: bind the listeners ([`listener`]), start one [`worker`] thread per core, each
//! running its own event loop over its own connections ([`conn`]) and deadlines ([`timer`]);
//! stop them gracefully on request; report counters.
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
pub mod listener;
pub mod timer;
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
    let (listeners, addrs) = listener::bind_all(&config.listen, config.threads, config.backlog)?;
    let session_config = Arc::new(config.session_config());
    let open_connections = Arc::new(AtomicUsize::new(0));
    let deadlines = Deadlines {
        idle_timeout: config.idle_timeout,
        min_data_rate: config.min_data_rate,
        shutdown_grace: config.shutdown_grace,
    };

    let faults = crate::fault::FaultRules::parse(&config.faults, config.seed)
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
    let faults = (!faults.is_empty()).then(|| Arc::new(faults));
    let store = StoreHub::start(
        &config.stores,
        config.store_threads,
        config.store_batch,
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
            max_connections: config.max_connections,
            open_connections: Arc::clone(&open_connections),
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

    /// Shuts down and waits (for tests and embedding).
    pub fn stop(self) -> io::Result<Stats> {
        self.shutdown();
        self.join()
    }
}

/// Runs the server until SIGINT or SIGTERM: prints the listening line, the periodic stats line
/// if asked, and a summary at the end. A second signal exits at once.
pub fn run(config: &Config) -> io::Result<Stats> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let server = start(config)?;
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

    let (signalled_tx, signalled) = mpsc::channel::<()>();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("fastsmtpd-signals".into())
        .spawn(move || {
            let mut received = 0;
            for _ in signals.forever() {
                received += 1;
                if received > 1 {
                    eprintln!("fastsmtpd: second signal, exiting now");
                    std::process::exit(130);
                }
                let _ = signalled_tx.send(());
            }
        })?;

    let mut last = (Instant::now(), Stats::default());
    // Wake often enough to notice an exit condition the workers met.
    const CHECK_EXIT: Duration = Duration::from_millis(100);
    loop {
        match signalled.recv_timeout(CHECK_EXIT) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                println!(
                    "fastsmtpd: shutting down (grace {} s)",
                    config.shutdown_grace.as_secs()
                );
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
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
        }
    }
    let faults = server.faults.clone();
    let total = server.stop()?;
    for (rule, count) in faults.map_or_else(Vec::new, |f| f.fired()) {
        println!("fastsmtpd: fault {rule:?} fired {count} times");
    }
    println!(
        "fastsmtpd: done: messages={} bytes={} connections={} refused_connections={} errors={} timeouts={}",
        total.messages,
        total.bytes,
        total.connections,
        total.refused_connections,
        total.errors,
        total.timeouts
    );
    Ok(total)
}

/// The periodic one-line report.
fn stats_line(now: &Stats, before: &Stats, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let messages = now.messages - before.messages;
    format!(
        "stats: connections open={} total={} messages={} bytes={} msgs/s={:.1} MB/s={:.2} errors={}",
        now.open_connections,
        now.connections,
        now.messages,
        now.bytes,
        messages as f64 / secs,
        (now.bytes - before.bytes) as f64 / secs / 1e6,
        now.errors
    )
}
