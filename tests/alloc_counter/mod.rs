//! The counting allocator and the pipelined workload shared by the zero-allocation tests
//! (`zero_alloc.rs`, plaintext; `zero_alloc_tls.rs`, implicit TLS). Each of those files holds
//! a single test and installs [`CountingAllocator`] as its `#[global_allocator]`: the counter
//! sees every thread of the process, so no other test may run beside it.
//!
//! Where allocations come from: with `FASTSMTPD_ALLOC_TRACE=N` in the environment, every
//! N-th allocation made while [`Tracing::start`] is in force records a backtrace (at most
//! [`MAX_TRACES`]), and [`Tracing::finish`] prints them grouped by the innermost frame
//! outside the standard library: ours (this repository's `src/`) or a dependency's (rustls,
//! ...), with the frame of ours that called into it.
#![allow(dead_code)] // each test file uses a different subset

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Counts calls to `alloc`, `alloc_zeroed` and `realloc` (frees are not interesting: a free
/// without an allocation cannot happen).
pub struct CountingAllocator;

/// Allocations so far, in every thread.
pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Most backtraces kept by one [`Tracing`].
pub const MAX_TRACES: usize = 2000;
/// Backtraces are being recorded.
static TRACING: AtomicBool = AtomicBool::new(false);
/// Record every this many allocations.
static TRACE_EVERY: AtomicU64 = AtomicU64::new(1);
/// The recorded backtraces.
static TRACES: Mutex<Vec<Backtrace>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread is recording a backtrace: its own allocations are neither counted nor
    /// traced.
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if IN_TRACE.with(Cell::get) {
        return;
    }
    let n = ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    if TRACING.load(Ordering::Relaxed) && n % TRACE_EVERY.load(Ordering::Relaxed) == 0 {
        IN_TRACE.with(|flag| flag.set(true));
        let trace = Backtrace::force_capture();
        if let Ok(mut traces) = TRACES.lock() {
            if traces.len() < MAX_TRACES {
                traces.push(trace);
            }
        }
        IN_TRACE.with(|flag| flag.set(false));
    }
}

// SAFETY: defers every operation to the system allocator unchanged; only counts (and, when
// tracing, records a backtrace first, whose own allocations go straight through).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Backtrace recording over a stretch of the test, if `FASTSMTPD_ALLOC_TRACE` asks for it.
pub struct Tracing {
    /// Whether it is on.
    on: bool,
}

impl Tracing {
    /// Starts recording when `FASTSMTPD_ALLOC_TRACE=N` (N >= 1) is set. Call it before the
    /// counted stretch begins (reading the environment allocates).
    pub fn start() -> Tracing {
        let every = std::env::var("FASTSMTPD_ALLOC_TRACE")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&n| n >= 1);
        if let Some(every) = every {
            TRACES.lock().unwrap().reserve(MAX_TRACES);
            TRACE_EVERY.store(every, Ordering::SeqCst);
            TRACING.store(true, Ordering::SeqCst);
        }
        Tracing {
            on: every.is_some(),
        }
    }

    /// Stops recording and prints what was recorded, grouped by origin.
    pub fn finish(self) {
        TRACING.store(false, Ordering::SeqCst);
        if !self.on {
            return;
        }
        let traces = std::mem::take(&mut *TRACES.lock().unwrap());
        // Paths under the working directory (the package's, for tests) print as `./src/...`.
        let ours = [concat!(env!("CARGO_MANIFEST_DIR"), "/src/"), "./src/"];
        let mut groups: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for trace in &traces {
            let frames = frames(&trace.to_string());
            let origin = frames.iter().find(|(name, file)| !is_plumbing(name, file));
            let (owner, site) = match origin {
                Some((name, file)) => (owner(name, file, &ours), name.clone()),
                None => ("unknown".to_string(), String::new()),
            };
            let caller = frames
                .iter()
                .find(|(_, file)| is_ours(file, &ours))
                .map_or_else(String::new, |(name, _)| name.clone());
            *groups.entry((owner, site, caller)).or_default() += 1;
        }
        let mut sorted: Vec<_> = groups.into_iter().collect();
        sorted.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        println!(
            "{} allocations traced (every {} of the counted stretch): count, owner, \
             allocating frame, <- our nearest frame",
            traces.len(),
            TRACE_EVERY.load(Ordering::SeqCst)
        );
        for ((owner, site, caller), n) in sorted {
            println!("{n:6}  {owner:8}  {site}\n                  <- {caller}");
        }
    }
}

/// `(function, file)` of each frame of a rendered backtrace (file empty when unknown).
fn frames(rendered: &str) -> Vec<(String, String)> {
    let mut frames: Vec<(String, String)> = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if let Some(file) = line.strip_prefix("at ") {
            if let Some(last) = frames.last_mut() {
                last.1 = file.to_string();
            }
        } else if let Some((index, name)) = line.split_once(": ") {
            if index.chars().all(|c| c.is_ascii_digit()) {
                frames.push((name.to_string(), String::new()));
            }
        }
    }
    frames
}

/// Frames that are not where an allocation is decided: the standard library, the
/// allocator shims, this counter, the backtrace machinery.
fn is_plumbing(name: &str, file: &str) -> bool {
    let std_name = [
        "std::", "core::", "alloc::", "<alloc::", "<core::", "<std::", "__rust",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix));
    std_name
        || file.starts_with("/rustc/")
        || file.contains("/library/")
        || file.contains("alloc_counter")
        || name.contains("CountingAllocator")
        || name.contains("alloc_counter::")
}

/// Whether `file` is in this repository's `src/`.
fn is_ours(file: &str, ours: &[&str]) -> bool {
    ours.iter().any(|prefix| file.starts_with(prefix))
}

/// Who owns a frame: `ours` (this repository's `src/`), or the crate whose registry source
/// holds it (`rustls`, ...), or `other`.
fn owner(name: &str, file: &str, ours: &[&str]) -> String {
    if is_ours(file, ours) {
        return "ours".into();
    }
    // `.../registry/src/<index>/<crate>-<version>/src/...`
    if let Some(rest) = file.split("/registry/src/").nth(1) {
        if let Some(dir) = rest.split('/').nth(1) {
            let krate = dir.rsplit_once('-').map_or(dir, |(krate, _)| krate);
            return krate.to_string();
        }
    }
    name.split("::")
        .next()
        .unwrap_or("other")
        .trim_start_matches('<')
        .to_string()
}

/// Messages per pipelined batch of each kind (DATA and BDAT).
pub const BATCH: usize = 50;
/// Batches during warm-up and during measurement.
pub const WARMUP_BATCHES: usize = 10;
pub const MEASURED_BATCHES: usize = 40;

/// Where the expected replies of [`batch`] hold a message id (the `250` after each message
/// names one: `queued as <id>`); see [`ReplyMatcher`].
pub const ID_MARK: u8 = b'*';

/// Compares reply bytes as they arrive against the expected replies, in which each
/// [`ID_MARK`] stands for one message id (one or more of `0-9 A-Z a-z .`); allocates nothing.
pub struct ReplyMatcher<'a> {
    /// The expected replies.
    expected: &'a [u8],
    /// How far they have been matched.
    at: usize,
    /// Characters of the id being matched at `at` (an [`ID_MARK`]).
    id_len: usize,
}

impl<'a> ReplyMatcher<'a> {
    /// A matcher at the start of `expected`.
    pub fn new(expected: &'a [u8]) -> ReplyMatcher<'a> {
        ReplyMatcher {
            expected,
            at: 0,
            id_len: 0,
        }
    }

    /// Takes the next bytes received; `false` as soon as they cannot match.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if self.expected.get(self.at) == Some(&ID_MARK) {
                if b.is_ascii_alphanumeric() || b == b'.' {
                    self.id_len += 1;
                    continue;
                }
                if self.id_len == 0 {
                    return false;
                }
                self.at += 1;
                self.id_len = 0;
            }
            if self.expected.get(self.at) != Some(&b) {
                return false;
            }
            self.at += 1;
        }
        true
    }

    /// Whether all of the expected replies arrived.
    pub fn is_done(&self) -> bool {
        self.at == self.expected.len()
    }
}

/// One batch: BATCH DATA transactions and BATCH BDAT transactions, pipelined, and the exact
/// replies expected (each message's id as an [`ID_MARK`]).
pub fn batch() -> (Vec<u8>, Vec<u8>) {
    let body_line = "x".repeat(70) + "\r\n";
    let body = body_line.repeat(14) + ".dot-stuffed line\r\n";
    let stuffed = body.replace("\r\n.", "\r\n..");
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    for i in 0..BATCH {
        requests.extend_from_slice(
            format!("MAIL FROM:<sender{i}@example.org>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\n{stuffed}.\r\n").as_bytes(),
        );
        replies.extend_from_slice(
            b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as *\r\n",
        );
        requests.extend_from_slice(
            format!("MAIL FROM:<sender{i}@example.org> BODY=BINARYMIME\r\nRCPT TO:<rcpt@example.net>\r\nBDAT {} LAST\r\n{body}", body.len()).as_bytes(),
        );
        replies.extend_from_slice(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as *\r\n");
    }
    (requests, replies)
}

/// Sends one batch and reads exactly its replies into `buf`, comparing without allocating
/// (each message's id included: see [`ReplyMatcher`]).
pub fn run_batch(
    stream: &mut std::net::TcpStream,
    requests: &[u8],
    replies: &[u8],
    buf: &mut [u8],
) {
    use std::io::{Read, Write};
    stream.write_all(requests).unwrap();
    let mut matcher = ReplyMatcher::new(replies);
    while !matcher.is_done() {
        let n = stream.read(buf).unwrap();
        assert!(n > 0, "server closed the connection");
        assert!(matcher.feed(&buf[..n]), "unexpected reply bytes");
    }
}
