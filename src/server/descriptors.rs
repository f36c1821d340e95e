//! File descriptors: the limit that decides how many connections the process can hold.
//!
//! What it does: at start, raise the soft `RLIMIT_NOFILE` to the hard limit
//! ([`raise_limit`]); work out how many descriptors the server needs besides connections
//! ([`reserved`]); and, when `--max-connections` does not fit what is left, lower it and say so
//! once ([`fit_connection_cap`]). A worker also keeps one spare descriptor ([`Spare`]): when
//! `accept` fails for want of descriptors, it gives the spare up, accepts the waiting
//! connection, tells it `421 4.7.0` and closes it, then takes the spare back, so a client is
//! never left without a word (nginx and libuv do the same).
//!
//! What it does not do: count connections (the workers do) or retry anything.

use std::fs::File;
use std::io;

/// The process's descriptor limit after raising the soft limit as far as the hard one.
/// Returns the soft limit now in force (`u64::MAX` when unlimited).
#[allow(unsafe_code)]
pub fn raise_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we own and pass by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one `rlimit` from the struct we own and pass by pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    Ok(if limit.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        limit.rlim_cur
    })
}

/// Descriptors the server needs besides one per connection: standard streams and the signal
/// pipe; per worker its poller, waker, spare and listening sockets; the storage threads'
/// files of one batch (two per message for `.eml`) and directory syncs; the metrics
/// endpoint's poller and its connections; the capture API's (`--api`, its connection cap
/// and some); and some slack for the runtime.
pub fn reserved(
    threads: usize,
    listen_addresses: usize,
    stores: usize,
    store_batch: usize,
    store_threads: usize,
    metrics: bool,
    api: bool,
) -> usize {
    let workers = threads * (3 + listen_addresses);
    let storage = if stores > 0 {
        stores * (2 * store_batch + 2) * store_threads.max(1)
    } else {
        0
    };
    let endpoint = if metrics { 140 } else { 0 };
    let api = if api {
        crate::api::MAX_CONNECTIONS + 16
    } else {
        0
    };
    32 + workers + storage + endpoint + api
}

/// The connection cap that fits `limit` descriptors with `reserved` of them kept for the
/// server itself: `wanted` if it fits, less otherwise (at least 1).
pub fn fit_connection_cap(wanted: usize, limit: u64, reserved: usize) -> usize {
    let available = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserved)
        .max(1);
    wanted.min(available)
}

/// One descriptor held back so that a connection can still be accepted, answered and
/// closed when the process has no other descriptor left.
#[derive(Debug)]
pub struct Spare {
    /// `/dev/null`, open; `None` while given up.
    file: Option<File>,
}

impl Spare {
    /// Takes the spare descriptor.
    pub fn new() -> Spare {
        Spare {
            file: File::open("/dev/null").ok(),
        }
    }

    /// Gives the descriptor up; false if there was none to give.
    pub fn release(&mut self) -> bool {
        self.file.take().is_some()
    }

    /// Takes the descriptor back (best effort: if the process is still out of descriptors,
    /// the next shortage is met by pausing accepts instead).
    pub fn restore(&mut self) {
        if self.file.is_none() {
            self.file = File::open("/dev/null").ok();
        }
    }
}

impl Default for Spare {
    fn default() -> Self {
        Spare::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_lowered_to_what_the_limit_leaves() {
        assert_eq!(fit_connection_cap(10_000, 1024, 100), 924);
        assert_eq!(fit_connection_cap(500, 1024, 100), 500);
        assert_eq!(fit_connection_cap(10_000, u64::MAX, 100), 10_000);
        assert_eq!(fit_connection_cap(10_000, 50, 100), 1);
        assert!(reserved(2, 1, 0, 256, 2, false, false) < reserved(2, 1, 1, 256, 2, true, false));
        assert!(
            reserved(2, 1, 0, 256, 2, false, false) + 1024 < reserved(2, 1, 0, 256, 2, false, true)
        );
    }

    #[test]
    fn the_spare_can_be_given_up_and_taken_back() {
        let mut spare = Spare::new();
        assert!(spare.release());
        assert!(!spare.release());
        spare.restore();
        assert!(spare.release());
    }
}
