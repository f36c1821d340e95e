//! Running the load: the engine threads and the reporter loop that merges what they report.
//!
//! What it does: fix the run's start (a moment ahead, so every thread begins together),
//! start one engine thread per share of the work, receive every thread's one-second
//! reports into [`Results`] (showing each second once all threads have reported it), join
//! the threads, and set the measured time and the connections alive over it (the
//! [`SlotAccount`] every thread keeps). End to end (`--delivered-via`), it first subscribes
//! to the far sink's event stream, gives the run a fresh tag id, and starts the watcher
//! thread, which reports like one more thread until its drain ends; the measured time then
//! ends with the send phase, not the drain.
//!
//! What it does not do: drive connections (`engine`), check the command line (`settings`),
//! or print results (`report`).

use crate::drive::delivered::DeliveryLink;
use crate::drive::engine::{self, IntervalReport};
use crate::drive::slots::SlotAccount;
use crate::drive::watch::{self, WatchPlan};
use crate::progress::Progress;
use crate::report::{render, Results};
use crate::settings::Settings;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// How far ahead of now a run starts: time for every thread to be up at the start.
const START_DELAY: Duration = Duration::from_millis(10);

/// A finished run.
#[derive(Debug)]
pub struct Finished {
    /// Everything the threads measured, merged.
    pub results: Results,
    /// The wall-clock time of the run's start (the interval log's base time).
    pub wall_start: SystemTime,
}

/// Runs the load `settings` describe, with progress on standard error unless quiet.
pub fn run(settings: &Settings, header: &str) -> Result<Finished, String> {
    run_step(settings, header, "")
}

/// [`run`], with `step` (a sweep's step, e.g. `step 2/5 at 400 msgs/s  `) before the live
/// line on a terminal.
pub fn run_step(settings: &Settings, header: &str, step: &str) -> Result<Finished, String> {
    // The end-to-end mode subscribes to the far sink before the first message is sent.
    let subscription = settings
        .delivered
        .as_ref()
        .map(watch::subscribe)
        .transpose()?;
    let run_id = new_run_id();
    if let Some(tag) = &settings.workload.tag_run {
        tag.store(run_id, Ordering::Relaxed);
    }
    let link = subscription
        .as_ref()
        .map(|_| Arc::new(DeliveryLink::new(settings.threads, settings.workload.rcpts)));
    // The watcher reports like one more thread.
    let reporters = settings.threads + usize::from(link.is_some());
    let start = Instant::now() + START_DELAY;
    let wall_start = SystemTime::now() + START_DELAY;
    let (reports_tx, reports) = mpsc::channel::<IntervalReport>();
    let slots = Arc::new(Mutex::new(SlotAccount::new(
        settings.connections,
        start + settings.warmup,
        settings.end(start),
        !settings.stagger.is_zero(),
    )));
    let mut handles = start_threads(settings, start, &reports_tx, &slots, link.as_ref())?;
    if let (Some(subscription), Some(link), Some(via)) = (subscription, &link, &settings.delivered)
    {
        let plan = WatchPlan {
            index: settings.threads,
            start,
            warmup_end: start + settings.warmup,
            run: run_id,
        };
        let (via, link, tx) = (via.clone(), Arc::clone(link), reports_tx.clone());
        let workload = Arc::clone(&settings.workload);
        let handle = std::thread::Builder::new()
            .name("loadgen-watch".into())
            .spawn(move || watch::run_watch(subscription, &via, link, plan, &workload, tx))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        handles.push(handle);
    }
    drop(reports_tx);

    let progress = (!settings.quiet).then(|| Progress::new(std::io::stderr().is_terminal()));
    if let Some(p) = &progress {
        p.show(header, &format!("{step}{header}"));
    }
    let view = progress.as_ref().map(|p| View {
        progress: p,
        step,
        open_loop: settings.rate.is_some(),
    });
    let mut results = collect(reporters, &reports, view.as_ref());
    // The send phase ended when the last engine thread did (the drain after it is not
    // measured time).
    let run_end = link
        .as_ref()
        .and_then(|l| l.senders_done_at())
        .unwrap_or_else(Instant::now);
    join(handles)?;
    if let Some(p) = progress {
        p.finish();
    }
    let measured_end = settings.end(start).map_or(run_end, |e| e.min(run_end));
    results.measured = measured_end.saturating_duration_since(start + settings.warmup);
    let mut account = slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    results.connections = account.finish(measured_end);
    results.connections.allowed = settings.allow_fewer_connections;
    results.warmup = settings.warmup;
    results.run_id = link.as_ref().map(|_| run_id);
    Ok(Finished {
        results,
        wall_start,
    })
}

/// A run id for the end-to-end mode's tags: different for every run (and sweep step), so
/// mail of an earlier run reaching the same sink is foreign.
fn new_run_id() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u32) ^ ((nanos >> 32) as u32) ^ std::process::id().rotate_left(16)
}

/// Tells the link an engine thread is done, however it ends (an error or a panic too), so
/// the watcher never waits for a thread that is gone.
struct SenderDone(Option<Arc<DeliveryLink>>);

impl Drop for SenderDone {
    fn drop(&mut self) {
        if let Some(link) = &self.0 {
            link.sender_done();
        }
    }
}

/// Starts one engine thread per plan; each reports to `reports` (and, end to end, tells
/// `link` of each message's end).
fn start_threads(
    settings: &Settings,
    start: Instant,
    reports: &mpsc::Sender<IntervalReport>,
    slots: &Arc<Mutex<SlotAccount>>,
    link: Option<&Arc<DeliveryLink>>,
) -> Result<Vec<JoinHandle<std::io::Result<()>>>, String> {
    let threads = settings.threads;
    (0..threads)
        .map(|index| {
            let mut plan = settings.thread_plan(index, start);
            plan.delivered = link.cloned();
            let done = SenderDone(link.cloned());
            let workload = Arc::clone(&settings.workload);
            let tx = reports.clone();
            let slots = Arc::clone(slots);
            std::thread::Builder::new()
                .name(format!("loadgen-{index}"))
                .spawn(move || {
                    let _done = done;
                    engine::run_thread(plan, threads, workload, tx, slots)
                })
                .map_err(|e| format!("cannot start a thread: {e}"))
        })
        .collect()
}

/// Where and how the reporter loop shows each second.
struct View<'a> {
    /// The progress output.
    progress: &'a Progress,
    /// The sweep step, before the live line (empty outside sweeps).
    step: &'a str,
    /// Whether the run is open loop (the live line then has the corrected p99).
    open_loop: bool,
}

/// The reporter loop: merges reports until every thread has sent its last one (or all
/// senders are gone), showing each finished second.
fn collect(
    threads: usize,
    reports: &mpsc::Receiver<IntervalReport>,
    view: Option<&View<'_>>,
) -> Results {
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
        if let Some(v) = view {
            for second in finished {
                let summary = &results.intervals[&second];
                v.progress.show(
                    &render::progress_line(second, summary),
                    &render::live_line(v.step, second, summary, v.open_loop),
                );
            }
        }
    }
    results
}

/// Waits for every thread; the first failure is the run's error.
fn join(handles: Vec<JoinHandle<std::io::Result<()>>>) -> Result<(), String> {
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("a load thread failed: {e}")),
            Err(_) => return Err("a load thread panicked".into()),
        }
    }
    Ok(())
}
