//! The engine's clock: waiting in the poll until the next thing is due, with a timer finer
//! than the poll's own timeout.
//!
//! epoll's timeout, and so mio's, is whole milliseconds (rounded up): an open-loop slot due
//! in 300 µs was started about 1 ms late, and at 200 msgs/s the corrected latency measured
//! that, not the server. So on Linux a `timerfd` (nanosecond resolution, no timer slack) is
//! armed for the next due instant and registered with the poll under [`TIMER`]; the poll's
//! own timeout (rounded up by mio) stays as the fallback and as the cap ([`MAX_WAIT`]: reply
//! timeouts are checked after each poll). When the timer wakes the thread with the deadline
//! less than [`SPIN`] away (it is armed that much early), the rest is waited by spinning
//! on the clock: a wake-up from the timer interrupt costs tens of microseconds of
//! scheduling, which a spin of a few microseconds does not.
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
/// How early the timer is armed before a deadline, the rest being spun: about the wake-up
/// latency of an idle machine, so that a send is neither late by it nor costs more than a
/// few microseconds of CPU per wait (measured in docs/benchmarks/2026-12-06-send-lateness.md).
pub const SPIN: Duration = Duration::from_micros(20);

/// How to wait for a deadline (the pure part of [`Pacer::wait`], tested without a clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Arm the timer to fire at this instant (`None`: no timer needed, the poll's own
    /// timeout comes first or the deadline has passed).
    pub timer: Option<Instant>,
    /// The poll's timeout (mio rounds it up to whole milliseconds).
    pub poll: Duration,
}

/// How to wait at `now` for `deadline`, with the timer armed `spin` early.
pub fn plan_wait(now: Instant, deadline: Instant, spin: Duration) -> Wait {
    let until = deadline.saturating_duration_since(now);
    if until.is_zero() {
        return Wait {
            timer: None,
            poll: Duration::ZERO,
        };
    }
    if until > MAX_WAIT {
        // The poll's own timeout comes back first; the next round arms the timer.
        return Wait {
            timer: None,
            poll: MAX_WAIT,
        };
    }
    // A timer for 0 ns would disarm it: fire at once instead (and spin the rest).
    let fire = deadline
        .checked_sub(spin)
        .filter(|t| *t > now)
        .unwrap_or(now + Duration::from_nanos(1));
    Wait {
        timer: Some(fire),
        // The fallback: later than the timer, since mio rounds up to whole milliseconds.
        poll: until,
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
    /// How early the timer fires before a deadline, the rest spun ([`SPIN`] unless the
    /// hidden `--pace-spin` says otherwise, for measuring).
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
        let spin = self.spin;
        let mut wait = plan_wait(now, deadline, spin);
        if let Some(at) = wait.timer {
            if self.armed != Some(at) {
                if self.arm(at - now) {
                    self.armed = Some(at);
                } else {
                    wait.timer = None;
                }
            }
        }
        match poll.poll(events, Some(wait.poll)) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
            _ => {}
        }
        let timer_only = events.iter().all(|e| e.token() == TIMER);
        if wait.timer.is_some() && timer_only {
            // Woken by the timer (or by nothing) just before the deadline: spin the rest.
            while Instant::now() < deadline && deadline - Instant::now() <= spin {
                std::hint::spin_loop();
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
        // 300 µs away: the timer fires 20 µs early; the poll's timeout is the fallback.
        assert_eq!(
            plan_wait(now, now + us(300), us(20)),
            Wait {
                timer: Some(now + us(280)),
                poll: us(300)
            }
        );
        // Due, or past: no wait at all.
        let due = Wait {
            timer: None,
            poll: Duration::ZERO,
        };
        assert_eq!(plan_wait(now, now, us(20)), due);
        assert_eq!(plan_wait(now + us(5), now, us(20)), due);
        // Closer than the spin: fire at once, spin the rest.
        assert_eq!(
            plan_wait(now, now + us(10), us(20)).timer,
            Some(now + Duration::from_nanos(1))
        );
        // Past the longest wait: the poll's timeout comes back first, no timer.
        assert_eq!(
            plan_wait(now, now + Duration::from_secs(5), us(20)),
            Wait {
                timer: None,
                poll: MAX_WAIT
            }
        );
        assert_eq!(
            plan_wait(now, now + MAX_WAIT, Duration::ZERO).timer,
            Some(now + MAX_WAIT)
        );
    }
}
