//! Connection slots: how many of the connections a run asked for (`-c`) were alive, over the
//! measured time. A benchmark whose connections were refused is not the run that was asked
//! for, and must say so.
//!
//! What it does: keep one account for the whole run (every engine thread moves its slots
//! through it, under a mutex: slots change state a few times per connection, never per
//! command), integrate over the measured window (after the warm-up, before the end of a
//! `--duration` run) the number of slots alive and the time during which fewer than all of
//! them were, and judge the result ([`SlotFigures::fewer`]).
//!
//! A slot is one of the `-c` connections. It is **alive** while its session is set up
//! (greeted `220`, EHLO, TLS and AUTH through) and while a new session is being set up for
//! it, for at most [`SETUP_GRACE`] (a first connect, or a reconnect after a clean `QUIT`:
//! `--msgs-per-conn` asks for those). It is **down** from the moment a connect or a session
//! fails (refused, `421`/`554` greeting, reset, timeout, TLS or AUTH refused), or a set-up
//! takes longer than [`SETUP_GRACE`], until a session of it is set up again. A slot the run
//! no longer needs (its share of `-n` is sent, or the run's end) is **retired** and no longer
//! counted. With `--stagger`, a slot not **opened** yet is short as a down one is: during the measured time a connection that was asked for and not there is
//! missing, whatever the reason (the figures say how long some were still unopened, so the
//! message can name `--stagger`).
//!
//! What it does not do: open or close connections (the engine does, and tells it), or print
//! (`report::connections` renders the figures).

use std::time::{Duration, Instant};

/// How long setting up a session (connect, greeting, EHLO, TLS, AUTH) may take before its
/// slot counts as down: long enough for a slow AUTH hash (bcrypt, Argon2) on a busy server,
/// short enough that connections left waiting in a server's listen queue (a process limit)
/// show within a short run.
pub const SETUP_GRACE: Duration = Duration::from_secs(1);

/// The share of the measured time during which fewer connections than asked for may be alive
/// before the run says so and fails (1%: a reset connection back within 100 ms in a 10 s run
/// is tolerated; one refused connection is not).
pub const FEWER_TOLERANCE: f64 = 0.01;

/// Where a slot stands in the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Not opened yet (its first connect is scheduled for later: `--stagger`); short, as
    /// down is.
    New,
    /// Alive: a session set up, or being set up within [`SETUP_GRACE`].
    Alive,
    /// Down: the last connect or session failed, or the set-up is taking too long.
    Down,
    /// No longer needed; not counted.
    Retired,
}

/// What the account found over the measured window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlotFigures {
    /// Connections asked for (`-c`); 0: not tracked (results read back from a log).
    pub requested: usize,
    /// The most sessions set up (ready for a message) at once during the measured window:
    /// the connections the server really established.
    pub most_ready: usize,
    /// The fewest slots alive at once during the measured window (slots not yet opened or
    /// retired left out).
    pub least_alive: usize,
    /// Alive slots integrated over the measured window, in slot-nanoseconds (a slot whose
    /// session is being set up counts, within [`SETUP_GRACE`]).
    pub alive_nanos: u128,
    /// Sessions set up integrated over the measured window, in session-nanoseconds (at
    /// most `most_ready` times the window: comparable with it, as `alive_nanos` is not).
    pub ready_nanos: u128,
    /// Nanoseconds of the measured window during which some slot was down or not opened yet.
    pub fewer_nanos: u128,
    /// Nanoseconds of the measured window during which some slot was not opened yet
    /// (`--stagger` reaching into the measured time; part of `fewer_nanos`).
    pub unopened_nanos: u128,
    /// `--allow-fewer-connections`: a shortfall is reported but does not fail the run.
    pub allowed: bool,
}

impl SlotFigures {
    /// The time-weighted mean of slots alive over `measured`.
    pub fn alive_mean(&self, measured: Duration) -> f64 {
        self.alive_nanos as f64 / (measured.as_nanos() as f64).max(1.0)
    }

    /// The time-weighted mean of sessions set up over `measured`.
    pub fn ready_mean(&self, measured: Duration) -> f64 {
        self.ready_nanos as f64 / (measured.as_nanos() as f64).max(1.0)
    }

    /// The share of `measured` during which fewer slots than asked for were alive (0..=1).
    pub fn fewer_fraction(&self, measured: Duration) -> f64 {
        (self.fewer_nanos as f64 / (measured.as_nanos() as f64).max(1.0)).min(1.0)
    }

    /// Whether fewer connections than asked for were alive for more than
    /// [`FEWER_TOLERANCE`] of `measured` (the run is not the one asked for).
    pub fn fewer(&self, measured: Duration) -> bool {
        self.requested > 0 && self.fewer_fraction(measured) > FEWER_TOLERANCE
    }

    /// Whether the shortfall fails the run: [`fewer`](Self::fewer) and not allowed.
    pub fn fails(&self, measured: Duration) -> bool {
        self.fewer(measured) && !self.allowed
    }
}

/// The run's account of its slots (one for all threads).
#[derive(Debug)]
pub struct SlotAccount {
    /// Where the measured window begins (the end of the warm-up).
    window_start: Instant,
    /// Where it ends (`None`: at [`finish`](Self::finish), for a `--messages` run).
    window_end: Option<Instant>,
    /// Slots alive now.
    alive: usize,
    /// Slots down now.
    down: usize,
    /// Slots not opened yet.
    new: usize,
    /// Whether the first connects are spread (`--stagger`): only then is a slot not opened
    /// yet short (without, the first connects all happen at the start, and the moment
    /// before the loop gets to them is set-up, not a missing connection).
    staggered: bool,
    /// Sessions set up now (a subset of the alive slots: those not in a set-up).
    ready: usize,
    /// When `alive` and `down` last changed (integrated up to here).
    since: Instant,
    /// Whether any time of the window has been integrated (for `least_alive`).
    seen: bool,
    /// The figures so far.
    figures: SlotFigures,
}

impl SlotAccount {
    /// An account for `requested` slots, measured from `window_start` to `window_end`
    /// (`staggered`: the first connects are spread over time).
    pub fn new(
        requested: usize,
        window_start: Instant,
        window_end: Option<Instant>,
        staggered: bool,
    ) -> Self {
        SlotAccount {
            window_start,
            window_end,
            alive: 0,
            down: 0,
            new: requested,
            staggered,
            ready: 0,
            since: window_start,
            seen: false,
            figures: SlotFigures {
                requested,
                ..SlotFigures::default()
            },
        }
    }

    /// Moves one slot from `from` to `to` at `now`.
    pub fn change(&mut self, now: Instant, from: Slot, to: Slot) {
        if from == to {
            return;
        }
        self.accrue(now);
        match from {
            Slot::Alive => self.alive = self.alive.saturating_sub(1),
            Slot::Down => self.down = self.down.saturating_sub(1),
            Slot::New => self.new = self.new.saturating_sub(1),
            Slot::Retired => {}
        }
        match to {
            Slot::Alive => self.alive += 1,
            Slot::Down => self.down += 1,
            Slot::New => self.new += 1,
            Slot::Retired => {}
        }
    }

    /// A session was set up (`true`) or a set-up one ended (`false`) at `now`.
    pub fn session(&mut self, now: Instant, ready: bool) {
        self.accrue(now);
        if ready {
            self.ready += 1;
        } else {
            self.ready = self.ready.saturating_sub(1);
        }
    }

    /// The figures, with the window integrated up to `end` (the run's measured end).
    pub fn finish(&mut self, end: Instant) -> SlotFigures {
        self.accrue(end);
        self.figures.clone()
    }

    /// Integrates the current counts from `since` to `now`, clipped to the window.
    fn accrue(&mut self, now: Instant) {
        // Threads take `now` before they lock: an earlier instant than the last is the same
        // moment for the account.
        let now = now.max(self.since);
        let from = self.since.max(self.window_start);
        let to = self.window_end.map_or(now, |end| now.min(end));
        self.since = now;
        if to <= from {
            return;
        }
        let nanos = (to - from).as_nanos();
        let figures = &mut self.figures;
        figures.alive_nanos += nanos * self.alive as u128;
        figures.ready_nanos += nanos * self.ready as u128;
        let unopened = if self.staggered { self.new } else { 0 };
        if self.down + unopened > 0 {
            figures.fewer_nanos += nanos;
        }
        if unopened > 0 {
            figures.unopened_nanos += nanos;
        }
        figures.most_ready = figures.most_ready.max(self.ready);
        // Only time during which some slot was opened and wanted says how few were alive
        // (not the instant before the first connects).
        if self.alive + self.down > 0 {
            figures.least_alive = if self.seen {
                figures.least_alive.min(self.alive)
            } else {
                self.alive
            };
            self.seen = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_slot_down_for_part_of_the_window_is_counted_from_the_window_start() {
        let t0 = Instant::now();
        // Warm-up of 1 s, then 2 s measured.
        let mut account = SlotAccount::new(3, t0 + ms(1000), Some(t0 + ms(3000)), false);
        for _ in 0..3 {
            account.change(t0, Slot::New, Slot::Alive);
            account.session(t0, true);
        }
        // One slot is refused during the warm-up and comes back 500 ms into the window.
        account.change(t0 + ms(500), Slot::Alive, Slot::Down);
        account.session(t0 + ms(500), false);
        account.change(t0 + ms(1500), Slot::Down, Slot::Alive);
        account.session(t0 + ms(1500), true);
        // Another dies at 2.5 s and never comes back; the run ends at 3.2 s.
        account.change(t0 + ms(2500), Slot::Alive, Slot::Down);
        account.session(t0 + ms(2500), false);
        let figures = account.finish(t0 + ms(3200));
        assert_eq!(figures.requested, 3);
        assert_eq!(figures.most_ready, 3);
        assert_eq!(figures.least_alive, 2);
        assert_eq!(figures.fewer_nanos, ms(1000).as_nanos());
        assert_eq!(
            figures.alive_nanos,
            (ms(500) * 2 + ms(1000) * 3 + ms(500) * 2).as_nanos()
        );
        let measured = ms(2000);
        assert_eq!(figures.fewer_fraction(measured), 0.5);
        assert_eq!(figures.alive_mean(measured), 2.5);
        assert_eq!(figures.ready_mean(measured), 2.5);
        assert!(figures.fewer(measured) && figures.fails(measured));
        let allowed = SlotFigures {
            allowed: true,
            ..figures
        };
        assert!(allowed.fewer(measured) && !allowed.fails(measured));
    }

    #[test]
    fn slots_never_opened_within_the_window_are_short() {
        // --stagger 10s over a 2 s run: 2 of 10 slots open, the other 8 never do.
        let t0 = Instant::now();
        let mut account = SlotAccount::new(10, t0, Some(t0 + ms(2000)), true);
        account.change(t0, Slot::New, Slot::Alive);
        account.change(t0 + ms(1000), Slot::New, Slot::Alive);
        for _ in 0..8 {
            account.change(t0 + ms(2000), Slot::New, Slot::Retired);
        }
        let figures = account.finish(t0 + ms(2000));
        assert_eq!(figures.fewer_nanos, ms(2000).as_nanos());
        assert_eq!(figures.unopened_nanos, ms(2000).as_nanos());
        assert_eq!(figures.least_alive, 1);
        assert_eq!(figures.alive_mean(ms(2000)), 1.5);
        // Opened but never set up (a server that does not greet): alive within the grace,
        // never set up, so the mean of sessions set up stays within the most at once.
        let mut account = SlotAccount::new(1, t0, Some(t0 + ms(2000)), false);
        account.change(t0, Slot::New, Slot::Alive);
        account.change(t0 + ms(1000), Slot::Alive, Slot::Down);
        let figures = account.finish(t0 + ms(2000));
        assert_eq!(figures.alive_mean(ms(2000)), 0.5);
        assert_eq!((figures.most_ready, figures.ready_mean(ms(2000))), (0, 0.0));
        assert!(figures.fails(ms(2000)));
    }

    #[test]
    fn retired_slots_are_not_counted_and_a_short_blip_or_stagger_is_tolerated() {
        let t0 = Instant::now();
        let mut account = SlotAccount::new(2, t0, None, true);
        account.change(t0, Slot::New, Slot::Alive);
        // The second slot opens 30 ms later (--stagger): 0.3% of the time short.
        account.change(t0 + ms(30), Slot::New, Slot::Alive);
        // A reset at 5 s, back 50 ms later: 0.5% of 10 s.
        account.change(t0 + ms(5000), Slot::Alive, Slot::Down);
        account.change(t0 + ms(5050), Slot::Down, Slot::Alive);
        // Its share of --messages sent, one slot retires early.
        account.change(t0 + ms(9000), Slot::Alive, Slot::Retired);
        // Threads read the clock before locking: an instant out of order changes nothing.
        account.change(t0 + ms(8999), Slot::Alive, Slot::Alive);
        let figures = account.finish(t0 + ms(10_000));
        assert_eq!(figures.fewer_nanos, ms(80).as_nanos());
        assert_eq!(figures.unopened_nanos, ms(30).as_nanos());
        assert_eq!(figures.least_alive, 1);
        assert!(!figures.fewer(ms(10_000)));
        // Opened only during the warm-up: not short.
        let mut account = SlotAccount::new(2, t0 + ms(1000), None, true);
        account.change(t0, Slot::New, Slot::Alive);
        account.change(t0 + ms(900), Slot::New, Slot::Alive);
        let figures = account.finish(t0 + ms(3000));
        assert_eq!((figures.fewer_nanos, figures.least_alive), (0, 2));
        // Without --stagger, the moment before the loop opens the first connects is set-up.
        let mut account = SlotAccount::new(2, t0, None, false);
        account.change(t0 + ms(5), Slot::New, Slot::Alive);
        account.change(t0 + ms(5), Slot::New, Slot::Alive);
        let figures = account.finish(t0 + ms(20));
        assert_eq!((figures.fewer_nanos, figures.unopened_nanos), (0, 0));
        // Not tracked at all: never "fewer".
        assert!(!SlotFigures::default().fewer(ms(10_000)));
    }
}
