//! Which messages of this run are still awaited at the far end, sans I/O and sans clock.
//!
//! What it does: pair each accepted message (its number and its clock origin: the intended
//! send time, see the `delivered` module) with its arrival event, in whichever order the two
//! come (the far end may report an arrival before the generator has read the `250` that
//! preceded it), and say what each arrival was: delivered (with its latency), early (its
//! `250` is not read yet), a duplicate, late or unknown. At the end it counts the messages
//! that got a `250` and never arrived.
//!
//! Memory is bounded for runs of any length. Messages are numbered densely (thread `i` of
//! `T` sends `i`, `i + T`, ...), so the state is a window of slots by number: from the oldest
//! undecided message up, at most [`MAX_OUTSTANDING`] slots (16 octets each); slots retire
//! from the front as their messages are decided. When the window would grow past it (a
//! next hop that lost a message long ago while the run went on), the oldest slot is written
//! off: an accepted message there counts as never delivered. Duplicates are found with one
//! bit per message number ever sent (a run of 100 million messages: 12.5 MB), so a second
//! arrival is seen however late it comes.
//!
//! What it does not do: read the event stream (the watcher), parse tags (`tag`), or look
//! at a clock: times are nanoseconds from one epoch, passed in.

use std::collections::VecDeque;

/// Most message numbers the window holds (undecided messages and the ones between them).
pub const MAX_OUTSTANDING: usize = 1 << 20;

/// What is known of one message number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Nothing yet (not sent, or in flight).
    Unknown,
    /// It got a `250`; its clock origin, in nanoseconds from the epoch, and whether it
    /// counts in the figures (its `250` came after the warm-up). Awaited.
    Accepted(u64, bool),
    /// It arrived (at this time, nanoseconds from the epoch) before its `250` was read.
    Arrived(u64),
    /// Decided: delivered, or refused (no arrival is awaited).
    Closed,
}

/// What an arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The awaited arrival of an accepted message, this many nanoseconds after its origin,
    /// and whether it counts (see [`Tracker::on_accepted`]).
    Delivered(u64, bool),
    /// First arrival of a message whose `250` is not read yet: the latency is recorded when
    /// it is ([`Tracker::on_accepted`] returns it).
    Early,
    /// A second (or later) arrival of a message.
    Duplicate,
    /// An arrival after a `reset` of the stream of a message already seen: the far end's
    /// replay, not a duplicate delivery.
    Replayed,
    /// The first arrival of a message already written off (outside the window).
    Late,
    /// A number this run has not sent (far beyond the window): not counted as ours.
    Unknown,
}

/// The set of awaited messages.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// The message number of `window[0]`.
    base: u64,
    /// Slots from `base` up.
    window: VecDeque<Slot>,
    /// Most slots in `window`.
    capacity: usize,
    /// One bit per message number: it has arrived at least once.
    seen: Vec<u64>,
    /// Accepted messages not arrived yet (the `Accepted` slots).
    awaited: u64,
    /// Accepted messages written off when the window was full.
    written_off: u64,
    /// After a `reset` of the stream: second arrivals are replays.
    replaying: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new(MAX_OUTSTANDING)
    }
}

impl Tracker {
    /// An empty tracker whose window holds at most `capacity` (at least 1) message numbers.
    pub fn new(capacity: usize) -> Tracker {
        Tracker {
            base: 0,
            window: VecDeque::new(),
            capacity: capacity.max(1),
            seen: Vec::new(),
            awaited: 0,
            written_off: 0,
            replaying: false,
        }
    }

    /// Accepted messages still awaited.
    pub fn awaited(&self) -> u64 {
        self.awaited
    }

    /// Message `seq` got its `250`; `origin` is its clock origin; `counts`: whether its
    /// latency goes into the figures (the `250` came after the warm-up, as for every other
    /// figure of a message). Returns its latency when it had arrived already.
    pub fn on_accepted(&mut self, seq: u64, origin: u64, counts: bool) -> Option<u64> {
        let slot = self.slot(seq)?;
        let latency = match *slot {
            Slot::Unknown => {
                *slot = Slot::Accepted(origin, counts);
                self.awaited += 1;
                None
            }
            Slot::Arrived(at) => {
                *slot = Slot::Closed;
                Some(at.saturating_sub(origin))
            }
            Slot::Accepted(..) | Slot::Closed => None,
        };
        self.retire();
        latency
    }

    /// Message `seq` ended without a `250`: no arrival is awaited (one that comes anyway is
    /// still seen for duplicates).
    pub fn on_refused(&mut self, seq: u64) {
        if let Some(slot) = self.slot(seq) {
            if *slot == Slot::Unknown || matches!(*slot, Slot::Arrived(_)) {
                *slot = Slot::Closed;
            }
        }
        self.retire();
    }

    /// The stream was reset (the far end restarted and replays what it keeps): from now on
    /// an arrival of a message already seen is a replay.
    pub fn on_reset(&mut self) {
        self.replaying = true;
    }

    /// Message `seq` arrived at `at`.
    pub fn on_arrival(&mut self, seq: u64, at: u64) -> Arrival {
        let past_window = self.base.saturating_add(self.capacity as u64);
        if seq >= past_window.saturating_add(self.capacity as u64) {
            return Arrival::Unknown;
        }
        if self.mark_seen(seq) {
            return if self.replaying {
                Arrival::Replayed
            } else {
                Arrival::Duplicate
            };
        }
        let Some(slot) = self.slot(seq) else {
            return Arrival::Late;
        };
        let arrival = match *slot {
            Slot::Accepted(origin, counts) => {
                *slot = Slot::Closed;
                self.awaited -= 1;
                Arrival::Delivered(at.saturating_sub(origin), counts)
            }
            Slot::Unknown => {
                *slot = Slot::Arrived(at);
                Arrival::Early
            }
            // Refused, yet it arrived (the server kept it and said otherwise): no latency.
            Slot::Closed | Slot::Arrived(_) => Arrival::Early,
        };
        self.retire();
        arrival
    }

    /// The messages that got a `250` and never arrived: those still awaited and those
    /// written off.
    pub fn never_delivered(&self) -> u64 {
        self.awaited + self.written_off
    }

    /// Sets `seq`'s bit; whether it was set already.
    fn mark_seen(&mut self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        let was = self.seen[word] & bit != 0;
        self.seen[word] |= bit;
        was
    }

    /// The slot of `seq`, growing the window to it (writing off the oldest past the
    /// capacity); `None` when `seq` is below the window (decided or written off) or so far
    /// above it that the whole window would be written off for it.
    fn slot(&mut self, seq: u64) -> Option<&mut Slot> {
        let offset = seq.checked_sub(self.base)?;
        if offset >= 2 * self.capacity as u64 {
            return None;
        }
        let offset = offset as usize;
        while self.window.len() <= offset {
            self.window.push_back(Slot::Unknown);
        }
        while self.window.len() > self.capacity {
            if let Some(Slot::Accepted(..)) = self.window.pop_front() {
                self.awaited -= 1;
                self.written_off += 1;
            }
            self.base += 1;
        }
        let offset = (seq - self.base) as usize;
        self.window.get_mut(offset)
    }

    /// Drops decided slots from the front.
    fn retire(&mut self) {
        while self.window.front() == Some(&Slot::Closed) {
            self.window.pop_front();
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arrival_after_or_before_its_250_is_delivered_once() {
        let mut t = Tracker::new(16);
        assert_eq!(t.on_accepted(0, 100, true), None);
        assert_eq!(t.awaited(), 1);
        assert_eq!(t.on_arrival(0, 350), Arrival::Delivered(250, true));
        // The far end reports message 1 before its 250 is read.
        assert_eq!(t.on_arrival(1, 500), Arrival::Early);
        assert_eq!(t.on_accepted(1, 200, true), Some(300));
        assert_eq!(t.awaited(), 0);
        assert_eq!(t.never_delivered(), 0);
        // Everything decided retired.
        assert!(t.window.is_empty());
        assert_eq!(t.base, 2);
    }

    #[test]
    fn a_warm_up_message_is_delivered_but_not_counted() {
        let mut t = Tracker::new(16);
        t.on_accepted(0, 0, false);
        assert_eq!(t.on_arrival(0, 7), Arrival::Delivered(7, false));
        assert_eq!(t.never_delivered(), 0);
    }

    #[test]
    fn second_arrivals_are_duplicates_however_late() {
        let mut t = Tracker::new(4);
        t.on_accepted(0, 0, true);
        assert_eq!(t.on_arrival(0, 10), Arrival::Delivered(10, true));
        for seq in 1..100 {
            t.on_accepted(seq, seq, true);
            t.on_arrival(seq, seq + 1);
        }
        assert_eq!(t.on_arrival(0, 1000), Arrival::Duplicate);
        assert_eq!(t.on_arrival(99, 1000), Arrival::Duplicate);
        t.on_reset();
        assert_eq!(t.on_arrival(5, 1000), Arrival::Replayed);
    }

    #[test]
    fn accepted_and_never_arrived_is_never_delivered_and_refused_is_not() {
        let mut t = Tracker::new(16);
        t.on_accepted(0, 0, true);
        t.on_refused(1);
        t.on_accepted(2, 0, true);
        t.on_arrival(2, 5);
        assert_eq!(t.never_delivered(), 1);
        // A refused message that arrives anyway is not a delivery, but is seen.
        assert_eq!(t.on_arrival(1, 9), Arrival::Early);
        assert_eq!(t.on_arrival(1, 9), Arrival::Duplicate);
        assert_eq!(t.never_delivered(), 1);
    }

    #[test]
    fn the_window_is_bounded_and_writes_off_the_oldest() {
        let cap = 8;
        let mut t = Tracker::new(cap);
        // Message 0 is lost; the run goes on far past the window.
        t.on_accepted(0, 0, true);
        for seq in 1..1000u64 {
            t.on_accepted(seq, seq, true);
            assert!(t.window.len() <= cap, "window {} at {seq}", t.window.len());
            if seq % 2 == 0 {
                assert_eq!(t.on_arrival(seq, seq + 3), Arrival::Delivered(3, true));
            }
        }
        // Message 0 and the odd ones written off or still awaited: all never delivered.
        assert_eq!(t.never_delivered(), 501);
        assert!(t.window.len() <= cap);
        // Message 1 was written off long ago: its arrival now is late, not a delivery.
        assert_eq!(t.on_arrival(1, 5000), Arrival::Late);
        assert_eq!(t.on_arrival(1, 5000), Arrival::Duplicate);
        // A number far past anything sent is not ours; the bitmap does not grow for it.
        let words = t.seen.len();
        assert_eq!(t.on_arrival(u64::MAX, 1), Arrival::Unknown);
        assert_eq!(t.on_arrival(1_000_000_000, 1), Arrival::Unknown);
        assert_eq!(t.seen.len(), words);
    }

    #[test]
    fn a_message_in_flight_at_the_front_does_not_hold_more_than_the_window() {
        // Message 0 is never reported at all (its connection died); the rest are delivered.
        let mut t = Tracker::new(8);
        for seq in 1..100u64 {
            t.on_accepted(seq, 0, true);
            t.on_arrival(seq, 1);
            assert!(t.window.len() <= 8);
        }
        assert_eq!(t.never_delivered(), 0);
    }
}
