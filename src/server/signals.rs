//! Signals for [`run`](super::run): a thread takes SIGINT, SIGTERM, SIGHUP, SIGUSR1 and
//! SIGUSR2 (signal-hook's iterator, so no code runs in a signal handler) and turns each into
//! a [`Request`] for `run`'s loop. Nothing here touches an event loop or a session: the loop
//! acts on the requests through the [`ServerHandle`](super::ServerHandle).
//!
//! What it does not do: decide what a request does (that is `run`'s loop), or print anything
//! but the one line before a second SIGINT/SIGTERM ends the process at once.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use std::io;
use std::sync::mpsc;

/// What the signal thread asks of [`run`](super::run)'s loop.
#[derive(Debug, Clone, Copy)]
pub(super) enum Request {
    /// SIGINT or SIGTERM (the first one): shut down gracefully.
    Shutdown,
    /// SIGHUP: reopen the files written by path
    /// ([`ServerHandle::reopen`](super::ServerHandle::reopen)).
    Reopen,
    /// SIGUSR1: print the stats line.
    Report,
}

/// Catches the signals and starts the thread that turns them into requests. A second
/// SIGINT or SIGTERM exits at once with status 128 + its number (130, 143), as a shell
/// reports a process killed by it. SIGUSR2 is caught only so that it does not kill.
pub(super) fn catch() -> io::Result<mpsc::Receiver<Request>> {
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
                        crate::warn_line!("fastsmtpd: second {name}, exiting now");
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
                // Once run's loop has ended nobody listens, and nothing needs to.
                let _ = requests_tx.send(request);
            }
        })?;
    Ok(requests)
}
