//! The engine's clock: waiting in the poll until the next thing is due, with a timer finer
//! than the poll's own timeout.
//!
//! epoll's timeout, and so mio's, is whole milliseconds (rounded up): an open-loop slot due
//! in 300 µs was started about 1 ms late, and at 200 msgs/s the corrected latency measured
//! that, not the server. So on Linux a `timerfd` (nanosecond resolution, no timer slack) is
//! armed for the next due instant and registered with the poll under [`TIMER`]; the poll's
//! own timeout (rounded up by mio) stays as the fallback and as the cap ([`MAX_WAIT`]: reply
//! timeouts are checked after each poll). The timer is armed [`SPIN`] early (at most half
//! the wait early) and, when it alone woke the thread, the rest is spun on the clock:
//! polling without waiting, so replies are still read at once, and yielding, so a server
//! thread ready on the same CPU still runs. A wake-up from the timer interrupt costs tens of
//! microseconds of scheduling (more in a virtual machine), which the spin does not.
//!
//! What it does not do: decide what is due (the engine computes the next deadline), or
//! handle any other event. Elsewhere than on Linux it falls back to the poll's timeout.

use mio::{Events, Poll, Token};
use std::io;
use std::time::{Duration, Instant};

/// The poll token of the timer (slab keys, the connections' tokens, never reach it).
pub const TIMER: Token = Token(usize::MAX);
/// The longest the engine waits in one poll, whatever is due.
pub const MAX_WAIT: Duration = Duration::from_millis(100);
/// How early the timer is armed before a deadline, the rest being spun (polling for events
/// meanwhile): above the wake-up latency of a virtual machine's timer interrupt, so that a
/// send is not late by it, at a cost of at most this much CPU per send where the thread
/// would otherwise sleep (about 10% of a core at 2 000 msgs/s; measured in
/// docs/benchmarks/2026-12-06-send-lateness.md; `--pace-spin` changes it).
pub const SPIN: Duration = Duration::from_micros(50);

/// How to wait for a deadline (the pure part of [`Pacer::wait`], tested without a clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Arm the timer to fire at this instant (`None`: no timer needed, the poll's own
    /// timeout comes first or the deadline has passed).
    pub timer: Option<Instant>,
    /// The poll's timeout (mio rounds it up to whole milliseconds).
    pub poll: Duration,
    /// How much before the deadline the timer fires, to be spun.
    pub spin: Duration,
}

/// How to wait at `now` for `deadline`, with the timer armed `spin` early, or half the wait
/// early if that is less: the thread never spins longer than it sleeps, so at rates where
/// sends are closer together than twice the spin it does not spin all the time (and a
/// thread at a real-time priority does not starve the server on its CPU).
pub fn plan_wait(now: Instant, deadline: Instant, spin: Duration) -> Wait {
    let until = deadline.saturating_duration_since(now);
    if until.is_zero() {
        return Wait {
            timer: None,
            poll: Duration::ZERO,
            spin: Duration::ZERO,
        };
    }
    if until > MAX_WAIT {
        // The poll's own timeout comes back first; the next round arms the timer.
        return Wait {
            timer: None,
            poll: MAX_WAIT,
            spin: Duration::ZERO,
        };
    }
    let spin = spin.min(until / 2);
    Wait {
        timer: Some(deadline - spin),
        // The fallback: later than the timer, since mio rounds up to whole milliseconds.
        poll: until,
        spin,
    }
}

/// The engine's clock for one thread.
#[derive(Debug)]
pub struct Pacer {
    /// The timer, registered with the poll (`None`: not on Linux, or it could not be made).
    #[cfg(target_os = "linux")]
    timer: Option<rustix::fd::OwnedFd>,
    /// The instant the timer is armed for (armed again only when the deadline changes).
    armed: Option<Instant>,
    /// How early the timer fires before a deadline, the rest spun ([`SPIN`] unless
    /// `--pace-spin` says otherwise).
    spin: Duration,
}

impl Pacer {
    /// A clock for the thread polling with `poll` (its timer registered there), spinning
    /// the last `spin` before each deadline.
    pub fn new(poll: &Poll, spin: Duration) -> Pacer {
        Pacer {
            #[cfg(target_os = "linux")]
            timer: linux::timer(poll),
            armed: None,
            spin,
        }
    }

    /// Waits in `poll` for events, at most until `deadline` (and at most [`MAX_WAIT`]).
    /// Returns early on events; when only the timer woke it, spins to the deadline.
    pub fn wait(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        deadline: Instant,
    ) -> io::Result<()> {
        let now = Instant::now();
        let mut wait = plan_wait(now, deadline, self.spin);
        let spin = wait.spin;
        if let Some(at) = wait.timer {
            if self.armed != Some(at) {
                if self.arm(at - now) {
                    self.armed = Some(at);
                } else {
                    wait.timer = None;
                }
            }
        }
        poll_once(poll, events, wait.poll)?;
        let timer_only = events.iter().all(|e| e.token() == TIMER);
        if wait.timer.is_some() && timer_only {
            // Woken by the timer (or by nothing) just before the deadline: spin the rest,
            // polling without waiting, so a reply that comes meanwhile is read at once (a
            // plain spin would hold it up to `spin` and add that to its latency).
            if !events.is_empty() {
                self.on_timer();
                events.clear();
            }
            loop {
                let now = Instant::now();
                if now >= deadline || deadline - now > spin {
                    break;
                }
                poll_once(poll, events, Duration::ZERO)?;
                if !events.is_empty() {
                    break;
                }
                // Let a thread that is ready on this CPU (the server's, on a small machine)
                // run instead of the spin: a yield with nothing else to run returns at once.
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// The timer fired (its event came): it is spent.
    pub fn on_timer(&mut self) {
        self.armed = None;
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.timer {
            linux::drain(fd);
        }
    }

    /// Arms the timer to fire `after` from now; false without a timer.
    fn arm(&mut self, after: Duration) -> bool {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.timer {
            return linux::arm(fd, after);
        }
        let _ = after;
        false
    }
}

/// One poll of at most `timeout`; an interrupted poll is an empty one.
fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Duration) -> io::Result<()> {
    match poll.poll(events, Some(timeout)) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        other => other,
    }
}

/// The timerfd, through rustix (safe).
#[cfg(target_os = "linux")]
mod linux {
    use super::TIMER;
    use mio::unix::SourceFd;
    use mio::{Interest, Poll};
    use rustix::fd::{AsRawFd, OwnedFd};
    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };
    use std::time::Duration;

    /// A non-blocking monotonic timerfd registered with `poll` under [`TIMER`].
    pub fn timer(poll: &Poll) -> Option<OwnedFd> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .ok()?;
        poll.registry()
            .register(&mut SourceFd(&fd.as_raw_fd()), TIMER, Interest::READABLE)
            .ok()?;
        Some(fd)
    }

    /// Arms `fd` to fire once, `after` from now (at least 1 ns: 0 would disarm it).
    pub fn arm(fd: &OwnedFd, after: Duration) -> bool {
        let after = after.max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: after.as_secs() as _,
                tv_nsec: after.subsec_nanos() as _,
            },
        };
        timerfd_settime(fd, TimerfdTimerFlags::empty(), &spec).is_ok()
    }

    /// Reads the expiry count, so the timer's readiness is cleared.
    pub fn drain(fd: &OwnedFd) {
        let mut count = [0u8; 8];
        let _ = rustix::io::read(fd, &mut count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_is_armed_a_spin_early_and_only_when_it_comes_before_the_poll() {
        let now = Instant::now();
        let us = Duration::from_micros;
        // 300 µs away: the timer fires 50 µs early; the poll's timeout is the fallback.
        assert_eq!(
            plan_wait(now, now + us(300), us(50)),
            Wait {
                timer: Some(now + us(250)),
                poll: us(300),
                spin: us(50),
            }
        );
        // Due, or past: no wait at all.
        let due = Wait {
            timer: None,
            poll: Duration::ZERO,
            spin: Duration::ZERO,
        };
        assert_eq!(plan_wait(now, now, us(50)), due);
        assert_eq!(plan_wait(now + us(5), now, us(50)), due);
        // 60 µs away (20 000 msgs/s is one send every 50 µs): spin at most half the wait.
        assert_eq!(
            plan_wait(now, now + us(60), us(50)),
            Wait {
                timer: Some(now + us(30)),
                poll: us(60),
                spin: us(30),
            }
        );
        // Past the longest wait: the poll's timeout comes back first, no timer.
        assert_eq!(
            plan_wait(now, now + Duration::from_secs(5), us(50)),
            Wait {
                timer: None,
                poll: MAX_WAIT,
                spin: Duration::ZERO,
            }
        );
        // No spin: the timer fires at the deadline.
        assert_eq!(
            plan_wait(now, now + MAX_WAIT, Duration::ZERO).timer,
            Some(now + MAX_WAIT)
        );
    }
}
