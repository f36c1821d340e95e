//! Which messages of this run, and which of their recipients, are still awaited at the far
//! end, sans I/O and sans clock.
//!
//! What it does: pair each accepted message (its number, its clock origin: the intended send
//! time, see the `delivered` module, and which of its recipients the server under test
//! accepted) with the arrival events that carry it, in whichever order they come (the far end
//! may report an arrival before the generator has read the `250` that preceded it), and say
//! what each arrival was. A relay delivers a message's recipients in as many transactions as
//! it needs (a recipient the next hop deferred with a `4yz` reply is tried again later
//! without the others, RFC 5321 §4.5.4.1; a next hop may limit recipients per transaction,
//! §4.5.3.1.8), so an arrival carries some of the message's recipients:
//! each recipient's first arrival is new, a recipient arriving again is a **duplicate**
//! (RFC 5321 §6.1's tolerated failure), and the message is **delivered** when the last of
//! its accepted recipients arrived: its latency is to that arrival (the time until the whole
//! message is through the MTA under test). At the end it counts the accepted messages of
//! which no recipient arrived (never delivered), those of which some did but not all (partly
//! delivered), and the recipients that never arrived; and it counts the recipients arrived
//! of the messages that count (their `250` came after the warm-up, as for `accepted`): the
//! tracker alone knows which those are, even for an arrival before its `250`.
//!
//! Recipients are told apart by address: the watcher maps the addresses an arrival names to
//! the message's recipient numbers ([`Recipients::Named`]). The sink's event summary lists
//! at most [`IDENTIFIED_RCPTS_MAX`] recipients (`docs/api.md`, "Summaries"), so with more
//! recipients per message the tracker only counts them ([`Recipients::Counted`]): a message
//! is delivered when as many recipient arrivals as it has accepted recipients came, and
//! arrivals past that are duplicates, which cannot tell a recipient delivered twice while
//! another is missing from one delivered once each.
//!
//! Memory is bounded for runs of any length. Messages are numbered densely (thread `i` of
//! `T` sends `i`, `i + T`, ...), so the state is a window of slots by number: from the oldest
//! undecided message up, at most [`MAX_OUTSTANDING`] slots (32 octets each); slots retire
//! from the front as their messages are decided. When the window would grow past it (a
//! next hop that lost a message long ago while the run went on), the oldest slot is written
//! off: its missing recipients count as never delivered. Duplicates are found with one bit
//! per recipient ever sent (per message when counted: a run of 100 million messages of
//! three recipients: 37.5 MB), so a second arrival is seen however late it comes.
//!
//! What it does not do: read the event stream or compare addresses (the watcher), parse
//! tags (`tag`), or look at a clock: times are nanoseconds from one epoch, passed in.

use std::collections::VecDeque;

/// Most message numbers the window holds (undecided messages and the ones between them).
pub const MAX_OUTSTANDING: usize = 1 << 20;

/// Most recipients per message told apart by address: the sink's event summary lists at
/// most this many (`SUMMARY_RECIPIENTS_MAX` of fastsmtpd's `api::render`, `docs/api.md`).
pub const IDENTIFIED_RCPTS_MAX: usize = 20;

/// Where a message number stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing known of its outcome yet (not sent, or in flight); arrivals may have come.
    Unknown,
    /// It got a `250`; awaited until its accepted recipients have all arrived.
    Accepted,
    /// Decided: delivered whole, or refused (no arrival is awaited).
    Closed,
}

/// What is known of one message number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// Where it stands.
    state: State,
    /// Whether its latency counts in the figures (its `250` came after the warm-up).
    counts: bool,
    /// Recipients arrived at least once (named: distinct recipients; counted: arrivals, at
    /// most the number awaited).
    got: u32,
    /// Its clock origin, nanoseconds from the epoch (once accepted).
    origin: u64,
    /// The recipients awaited (once accepted): named, a bit per recipient number; counted,
    /// their number.
    want: u64,
    /// When the latest new recipient arrived, nanoseconds from the epoch.
    last: u64,
}

impl Slot {
    /// Nothing known.
    const EMPTY: Slot = Slot {
        state: State::Unknown,
        counts: false,
        got: 0,
        origin: 0,
        want: 0,
        last: 0,
    };
}

/// The recipients of one arrival event that are this message's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients {
    /// Told apart (at most [`IDENTIFIED_RCPTS_MAX`] recipients per message): bit `r` is the
    /// message's recipient number `r`.
    Named(u64),
    /// Only counted (more recipients per message): how many the arrival carries.
    Counted(u64),
}

/// What one arrival event was, in recipients (each of its recipients is exactly one of
/// `new`, `duplicates`, `replayed` or `late`) and, when it completed a message, in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arrival {
    /// It completed an accepted message: the message's latency (from its origin to the
    /// arrival of its last recipient) in nanoseconds, and whether it counts (see
    /// [`Tracker::on_accepted`]).
    pub delivered: Option<(u64, bool)>,
    /// First arrivals of recipients.
    pub new: u64,
    /// Recipients that had arrived already.
    pub duplicates: u64,
    /// Recipients already seen arriving again after a `reset` of the stream: the far end's
    /// replay, not duplicate deliveries.
    pub replayed: u64,
    /// First arrivals of recipients of a message already written off (outside the window).
    pub late: u64,
    /// A number this run has not sent (far beyond the window): not counted as ours.
    pub unknown: bool,
}

/// Recipients and messages that did not get through by the end (see
/// [`Tracker::missing`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Missing {
    /// Accepted messages of which no recipient arrived.
    pub never_delivered: u64,
    /// Accepted messages of which some recipients arrived, not all.
    pub partly_delivered: u64,
    /// Accepted recipients that never arrived (of both kinds of message).
    pub recipients: u64,
}

impl Missing {
    /// Adds what a message that ended with `got` of its `want` recipients arrived misses.
    fn add(&mut self, got: u64, want: u64) {
        if got >= want {
            return;
        }
        if got == 0 {
            self.never_delivered += 1;
        } else {
            self.partly_delivered += 1;
        }
        self.recipients += want - got;
    }
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
    /// Recipients per message (`--rcpts`).
    rcpts: u64,
    /// Whether recipients are told apart (at most [`IDENTIFIED_RCPTS_MAX`] per message).
    named: bool,
    /// One bit per recipient number (named; `seq * rcpts + r`) or per message number
    /// (counted): it has arrived at least once.
    seen: Vec<u64>,
    /// Accepted messages not arrived whole yet (the `Accepted` slots).
    awaited: u64,
    /// What the messages written off when the window was full missed.
    written_off: Missing,
    /// After a `reset` of the stream: second arrivals are replays.
    replaying: bool,
    /// Awaited recipients of counted messages that arrived (see [`Tracker::rcpts_arrived`]).
    rcpts_arrived: u64,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new(MAX_OUTSTANDING, 1)
    }
}

impl Tracker {
    /// An empty tracker whose window holds at most `capacity` (at least 1) message numbers
    /// of `rcpts` (at least 1) recipients each.
    pub fn new(capacity: usize, rcpts: usize) -> Tracker {
        let rcpts = rcpts.max(1);
        Tracker {
            base: 0,
            window: VecDeque::new(),
            capacity: capacity.max(1),
            rcpts: rcpts as u64,
            named: rcpts <= IDENTIFIED_RCPTS_MAX,
            seen: Vec::new(),
            awaited: 0,
            written_off: Missing::default(),
            replaying: false,
            rcpts_arrived: 0,
        }
    }

    /// Whether recipients are told apart by address ([`Recipients::Named`]) rather than
    /// counted.
    pub fn names_recipients(&self) -> bool {
        self.named
    }

    /// Accepted messages still awaited (not arrived whole).
    pub fn awaited(&self) -> u64 {
        self.awaited
    }

    /// Message `seq` got its `250`; `origin` is its clock origin; `counts`: whether its
    /// latency goes into the figures (the `250` came after the warm-up, as for every other
    /// figure of a message); `rcpts_ok` of its recipients were accepted at `RCPT`, and bit
    /// `r` of `refused` says recipient `r` was not (it is not awaited). Returns its latency
    /// when all its accepted recipients had arrived already.
    pub fn on_accepted(
        &mut self,
        seq: u64,
        origin: u64,
        counts: bool,
        rcpts_ok: u64,
        refused: u64,
    ) -> Option<u64> {
        let named = self.named;
        let want = if named {
            self.all_recipients() & !refused
        } else {
            rcpts_ok.min(self.rcpts)
        };
        if want == 0 {
            // Nothing accepted, nothing awaited (the engine never reports that as a 250).
            self.on_refused(seq);
            return None;
        }
        let got = if named { self.named_got(seq, want) } else { 0 };
        let slot = self.slot(seq)?;
        let mut latency = None;
        let mut arrived_before = 0;
        if slot.state == State::Unknown {
            if counts {
                // Recipients that arrived before its 250 was read count now.
                arrived_before = if named {
                    u64::from(got.count_ones())
                } else {
                    u64::from(slot.got).min(want)
                };
            }
            slot.origin = origin;
            slot.counts = counts;
            slot.want = want;
            let complete = if named {
                got == want
            } else {
                u64::from(slot.got) >= want
            };
            if complete {
                slot.state = State::Closed;
                latency = Some(slot.last.saturating_sub(origin));
            } else {
                slot.state = State::Accepted;
                self.awaited += 1;
            }
        }
        self.rcpts_arrived += arrived_before;
        self.retire();
        latency
    }

    /// Message `seq` ended without a `250`: no arrival is awaited (one that comes anyway is
    /// still seen for duplicates).
    pub fn on_refused(&mut self, seq: u64) {
        if let Some(slot) = self.slot(seq) {
            if slot.state == State::Unknown {
                slot.state = State::Closed;
            }
        }
        self.retire();
    }

    /// The stream was reset (the far end restarted and replays what it keeps): from now on
    /// an arrival of a recipient already seen is a replay.
    pub fn on_reset(&mut self) {
        self.replaying = true;
    }

    /// An arrival of message `seq` at `at` carrying `recipients` of it (named when
    /// [`Tracker::names_recipients`]; otherwise counted, and named ones are counted).
    pub fn on_arrival(&mut self, seq: u64, at: u64, recipients: Recipients) -> Arrival {
        let recipients = match recipients {
            Recipients::Named(mask) if !self.named => {
                Recipients::Counted(u64::from(mask.count_ones()))
            }
            // Counted where they could be named (not what the watcher does): the first ones.
            Recipients::Counted(n) if self.named => {
                Recipients::Named(self.all_recipients() >> self.rcpts.saturating_sub(n))
            }
            other => other,
        };
        let mut arrival = Arrival::default();
        let past_window = self.base.saturating_add(self.capacity as u64);
        if seq >= past_window.saturating_add(self.capacity as u64) {
            arrival.unknown = true;
            return arrival;
        }
        // Named: which recipients arrived for the first time (counted: all bits).
        let mut fresh_bits = u64::MAX;
        let fresh = match recipients {
            Recipients::Named(mask) => {
                fresh_bits = 0;
                for r in 0..self.rcpts {
                    if mask & (1 << r) == 0 {
                        continue;
                    }
                    if self.mark_seen(seq.saturating_mul(self.rcpts).saturating_add(r)) {
                        self.count_again(&mut arrival, 1);
                    } else {
                        fresh_bits |= 1 << r;
                    }
                }
                u64::from(fresh_bits.count_ones())
            }
            Recipients::Counted(n) => {
                if self.mark_seen(seq) && self.slot(seq).is_none() {
                    // Below the window: the message was decided; every one is again.
                    self.count_again(&mut arrival, n);
                    return arrival;
                }
                n
            }
        };
        if fresh == 0 {
            return arrival;
        }
        let named = self.named;
        let rcpts = self.rcpts;
        let Some(slot) = self.slot(seq) else {
            arrival.late = fresh;
            return arrival;
        };
        let room = if named {
            fresh
        } else {
            let cap = if slot.state == State::Accepted {
                slot.want
            } else {
                rcpts
            };
            fresh.min(cap.saturating_sub(u64::from(slot.got)))
        };
        let again = fresh - room;
        arrival.new = room;
        if room > 0 {
            slot.got = slot.got.saturating_add(room as u32);
            slot.last = at;
        }
        // Awaited recipients of a counted message only (counted: `room` is capped at the
        // awaited number once accepted; before its 250, `on_accepted` counts them).
        let counted_new = match (slot.state == State::Accepted && slot.counts, named) {
            (false, _) => 0,
            (true, true) => u64::from((fresh_bits & slot.want).count_ones()),
            (true, false) => room,
        };
        if slot.state == State::Accepted {
            let complete = if named {
                let want = slot.want;
                self.named_got(seq, want) == want
            } else {
                u64::from(slot.got) >= slot.want
            };
            if complete {
                if let Some(slot) = self.slot(seq) {
                    slot.state = State::Closed;
                    arrival.delivered = Some((at.saturating_sub(slot.origin), slot.counts));
                }
                self.awaited -= 1;
            }
        }
        self.rcpts_arrived += counted_new;
        self.count_again(&mut arrival, again);
        self.retire();
        arrival
    }

    /// Recipients that arrived, of the messages counted in the figures (their `250` came
    /// after the warm-up: `counts` of [`Tracker::on_accepted`]): each awaited recipient's
    /// first arrival while its message was in the window, before or after its `250`. Not
    /// counted: recipients of warm-up messages (however late they arrive), of messages
    /// without a `250`, recipients refused at `RCPT`, and first arrivals of a message
    /// already written off (`late`: counted missing when it was). So it is at most the
    /// counted messages' accepted recipients, as `arrived` is at most `accepted`.
    pub fn rcpts_arrived(&self) -> u64 {
        self.rcpts_arrived
    }

    /// What did not get through: the accepted messages still awaited and those written off.
    pub fn missing(&self) -> Missing {
        let mut missing = self.written_off;
        for (offset, slot) in self.window.iter().enumerate() {
            if slot.state == State::Accepted {
                let got = self.slot_got(self.base + offset as u64, slot);
                missing.add(got, self.want_count(slot));
            }
        }
        missing
    }

    /// Counts `n` recipients that had arrived already: duplicates, or replays after a reset.
    fn count_again(&self, arrival: &mut Arrival, n: u64) {
        if self.replaying {
            arrival.replayed += n;
        } else {
            arrival.duplicates += n;
        }
    }

    /// Bit `r` set for each of the message's `rcpts` recipient numbers (named).
    fn all_recipients(&self) -> u64 {
        if self.rcpts >= 64 {
            u64::MAX
        } else {
            (1 << self.rcpts) - 1
        }
    }

    /// The recipients of `want` (named) that have arrived, as bits.
    fn named_got(&self, seq: u64, want: u64) -> u64 {
        (0..self.rcpts)
            .filter(|&r| {
                want & (1 << r) != 0
                    && self.was_seen(seq.saturating_mul(self.rcpts).saturating_add(r))
            })
            .fold(0, |bits, r| bits | (1 << r))
    }

    /// How many awaited recipients of message `seq` (its slot `slot`) have arrived.
    fn slot_got(&self, seq: u64, slot: &Slot) -> u64 {
        if self.named {
            u64::from(self.named_got(seq, slot.want).count_ones())
        } else {
            u64::from(slot.got).min(slot.want)
        }
    }

    /// How many recipients `slot`'s message awaits.
    fn want_count(&self, slot: &Slot) -> u64 {
        if self.named {
            u64::from(slot.want.count_ones())
        } else {
            slot.want
        }
    }

    /// Whether bit `index` is set.
    fn was_seen(&self, index: u64) -> bool {
        let word = (index / 64) as usize;
        self.seen
            .get(word)
            .is_some_and(|w| w & (1u64 << (index % 64)) != 0)
    }

    /// Sets bit `index`; whether it was set already.
    fn mark_seen(&mut self, index: u64) -> bool {
        let word = (index / 64) as usize;
        let bit = 1u64 << (index % 64);
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
            self.window.push_back(Slot::EMPTY);
        }
        while self.window.len() > self.capacity {
            if let Some(slot) = self.window.pop_front() {
                if slot.state == State::Accepted {
                    let (got, want) = (self.slot_got(self.base, &slot), self.want_count(&slot));
                    self.awaited -= 1;
                    self.written_off.add(got, want);
                }
            }
            self.base += 1;
        }
        let offset = (seq - self.base) as usize;
        self.window.get_mut(offset)
    }

    /// Drops decided slots from the front.
    fn retire(&mut self) {
        while self
            .window
            .front()
            .is_some_and(|s| s.state == State::Closed)
        {
            self.window.pop_front();
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Recipients::{Counted, Named};

    /// An arrival that is `new` first arrivals and nothing else.
    fn fresh(new: u64) -> Arrival {
        Arrival {
            new,
            ..Arrival::default()
        }
    }

    /// An arrival of `new` recipients that completed a message with this latency.
    fn through(new: u64, latency: u64) -> Arrival {
        Arrival {
            delivered: Some((latency, true)),
            new,
            ..Arrival::default()
        }
    }

    /// An arrival of `n` recipients that had arrived already.
    fn again(n: u64) -> Arrival {
        Arrival {
            duplicates: n,
            ..Arrival::default()
        }
    }

    #[test]
    fn an_arrival_after_or_before_its_250_is_delivered_once() {
        let mut t = Tracker::new(16, 1);
        assert_eq!(t.on_accepted(0, 100, true, 1, 0), None);
        assert_eq!(t.awaited(), 1);
        assert_eq!(t.on_arrival(0, 350, Named(1)), through(1, 250));
        // The far end reports message 1 before its 250 is read.
        assert_eq!(t.on_arrival(1, 500, Named(1)), fresh(1));
        assert_eq!(t.on_accepted(1, 200, true, 1, 0), Some(300));
        assert_eq!(t.awaited(), 0);
        assert_eq!(t.missing(), Missing::default());
        // Everything decided retired.
        assert!(t.window.is_empty());
        assert_eq!(t.base, 2);
    }

    #[test]
    fn recipients_split_over_two_transactions_are_one_delivery_at_the_last() {
        let mut t = Tracker::new(16, 3);
        t.on_accepted(0, 100, true, 3, 0);
        // The next hop deferred recipient 1; the relay delivers it on its retry.
        assert_eq!(t.on_arrival(0, 200, Named(0b101)), fresh(2));
        assert_eq!(t.awaited(), 1);
        assert_eq!(t.on_arrival(0, 900, Named(0b010)), through(1, 800));
        assert_eq!(t.awaited(), 0);
        assert_eq!(t.missing(), Missing::default());
        // Split before the 250 is read: the latency is the last recipient's.
        assert_eq!(t.on_arrival(1, 300, Named(0b001)), fresh(1));
        assert_eq!(t.on_arrival(1, 700, Named(0b110)), fresh(2));
        assert_eq!(t.on_accepted(1, 100, true, 3, 0), Some(600));
        assert!(t.window.is_empty());
    }

    #[test]
    fn the_same_recipient_twice_is_one_duplicate() {
        let mut t = Tracker::new(16, 3);
        t.on_accepted(0, 0, true, 3, 0);
        assert_eq!(t.on_arrival(0, 10, Named(0b011)), fresh(2));
        // Recipient 1 again with the last one: one duplicate, and the message is through.
        assert_eq!(
            t.on_arrival(0, 20, Named(0b110)),
            Arrival {
                duplicates: 1,
                ..through(1, 20)
            }
        );
        // The whole message again (the classic duplicate: a lost 250 after the dot).
        assert_eq!(t.on_arrival(0, 30, Named(0b111)), again(3));
        assert_eq!(t.missing(), Missing::default());
    }

    #[test]
    fn a_recipient_that_never_arrives_leaves_its_message_partly_delivered() {
        let mut t = Tracker::new(16, 3);
        t.on_accepted(0, 0, true, 3, 0);
        t.on_accepted(1, 0, true, 3, 0);
        t.on_accepted(2, 0, true, 3, 0);
        // Message 0: recipient 2 never arrives. Message 1: nothing. Message 2: whole.
        assert_eq!(t.on_arrival(0, 5, Named(0b011)), fresh(2));
        assert_eq!(t.on_arrival(2, 5, Named(0b111)), through(3, 5));
        assert_eq!(t.awaited(), 2);
        assert_eq!(
            t.missing(),
            Missing {
                never_delivered: 1,
                partly_delivered: 1,
                recipients: 4,
            }
        );
    }

    #[test]
    fn a_recipient_refused_at_rcpt_is_not_awaited() {
        let mut t = Tracker::new(16, 3);
        // Recipient 1 refused by the server under test: the message is whole without it.
        t.on_accepted(0, 0, true, 2, 0b010);
        assert_eq!(t.on_arrival(0, 7, Named(0b101)), through(2, 7));
        // Counted: two accepted of three.
        let mut t = Tracker::new(16, 30);
        t.on_accepted(0, 0, true, 2, 0);
        assert_eq!(t.on_arrival(0, 7, Counted(2)), through(2, 7));
    }

    #[test]
    fn more_recipients_than_a_summary_lists_are_counted() {
        let mut t = Tracker::new(16, IDENTIFIED_RCPTS_MAX + 1);
        assert!(!t.names_recipients());
        assert!(Tracker::new(16, IDENTIFIED_RCPTS_MAX).names_recipients());
        t.on_accepted(0, 0, true, 21, 0);
        assert_eq!(t.on_arrival(0, 3, Counted(15)), fresh(15));
        // Six complete it; the rest of the arrival is counted as duplicates.
        assert_eq!(
            t.on_arrival(0, 9, Counted(8)),
            Arrival {
                duplicates: 2,
                ..through(6, 9)
            }
        );
        // Once the message retired, any arrival of it is again.
        assert_eq!(t.on_arrival(0, 9, Counted(21)), again(21));
        t.on_accepted(1, 0, true, 21, 0);
        t.on_arrival(1, 3, Counted(20));
        assert_eq!(
            t.missing(),
            Missing {
                never_delivered: 0,
                partly_delivered: 1,
                recipients: 1,
            }
        );
    }

    #[test]
    fn recipients_given_the_other_way_are_taken_the_tracker_s_way() {
        let mut t = Tracker::new(16, 40);
        t.on_accepted(0, 0, true, 40, 0);
        assert_eq!(
            t.on_arrival(0, 1, Named(u64::MAX)),
            Arrival {
                duplicates: 24,
                ..through(40, 1)
            }
        );
        let mut t = Tracker::new(16, 3);
        t.on_accepted(0, 0, true, 3, 0);
        assert_eq!(t.on_arrival(0, 1, Counted(2)), fresh(2));
        assert_eq!(
            t.on_arrival(0, 2, Counted(9)),
            Arrival {
                duplicates: 2,
                ..through(1, 2)
            }
        );
    }

    #[test]
    fn a_warm_up_message_is_delivered_but_not_counted() {
        let mut t = Tracker::new(16, 1);
        t.on_accepted(0, 0, false, 1, 0);
        assert_eq!(t.on_arrival(0, 7, Named(1)).delivered, Some((7, false)));
        assert_eq!(t.missing(), Missing::default());
    }

    #[test]
    fn recipients_arrived_are_those_of_the_counted_messages_only() {
        let mut t = Tracker::new(4, 3);
        // A warm-up message, arriving late (after the warm-up): not counted.
        t.on_accepted(0, 0, false, 3, 0);
        assert_eq!(t.on_arrival(0, 5, Named(0b011)), fresh(2));
        assert_eq!(t.on_arrival(0, 9, Named(0b100)).delivered, Some((9, false)));
        assert_eq!(t.rcpts_arrived(), 0);
        // A counted message: each awaited recipient once, duplicates not again.
        t.on_accepted(1, 10, true, 3, 0);
        t.on_arrival(1, 11, Named(0b001));
        t.on_arrival(1, 12, Named(0b011));
        assert_eq!(t.rcpts_arrived(), 2);
        // Arrivals before the 250 count once it is read (counted), recipient 1 refused at
        // RCPT is not awaited, and a message of the warm-up arriving early is not counted.
        t.on_arrival(2, 13, Named(0b111));
        t.on_arrival(3, 13, Named(0b111));
        assert_eq!(t.rcpts_arrived(), 2);
        assert_eq!(t.on_accepted(2, 10, true, 2, 0b010), Some(3));
        t.on_accepted(3, 10, false, 3, 0);
        assert_eq!(t.rcpts_arrived(), 4);
        // No 250 (refused): not counted.
        t.on_refused(4);
        t.on_arrival(4, 14, Named(0b111));
        assert_eq!(t.rcpts_arrived(), 4);
        // Message 1's last recipient is counted; then the window moves past message 5 and
        // writes it off: its arrival now is `late`, counted missing, not arrived.
        t.on_arrival(1, 15, Named(0b100));
        t.on_accepted(5, 20, true, 3, 0);
        for seq in 6..20 {
            t.on_accepted(seq, 20, true, 3, 0);
        }
        assert_eq!(t.on_arrival(5, 30, Named(0b111)).late, 3);
        assert_eq!(t.rcpts_arrived(), 5);
        // Counted recipients (more than a summary lists): at most the accepted ones.
        let mut t = Tracker::new(16, IDENTIFIED_RCPTS_MAX + 5);
        t.on_accepted(0, 0, true, 10, 0);
        t.on_arrival(0, 1, Counted(4));
        t.on_arrival(0, 2, Counted(9));
        assert_eq!(t.rcpts_arrived(), 10);
        t.on_arrival(1, 3, Counted(25));
        t.on_accepted(1, 0, true, 20, 0);
        t.on_accepted(2, 0, false, 20, 0);
        t.on_arrival(2, 4, Counted(20));
        assert_eq!(t.rcpts_arrived(), 30);
    }

    #[test]
    fn second_arrivals_are_duplicates_however_late() {
        let mut t = Tracker::new(4, 2);
        t.on_accepted(0, 0, true, 2, 0);
        assert_eq!(t.on_arrival(0, 10, Named(0b11)), through(2, 10));
        for seq in 1..100 {
            t.on_accepted(seq, seq, true, 2, 0);
            t.on_arrival(seq, seq + 1, Named(0b11));
        }
        assert_eq!(t.on_arrival(0, 1000, Named(0b01)), again(1));
        assert_eq!(t.on_arrival(99, 1000, Named(0b11)), again(2));
        t.on_reset();
        assert_eq!(
            t.on_arrival(5, 1000, Named(0b10)),
            Arrival {
                replayed: 1,
                ..Arrival::default()
            }
        );
    }

    #[test]
    fn accepted_and_never_arrived_is_never_delivered_and_refused_is_not() {
        let mut t = Tracker::new(16, 1);
        t.on_accepted(0, 0, true, 1, 0);
        t.on_refused(1);
        t.on_accepted(2, 0, true, 1, 0);
        t.on_arrival(2, 5, Named(1));
        assert_eq!(t.missing().never_delivered, 1);
        // A refused message that arrives anyway is not a delivery, but is seen.
        assert_eq!(t.on_arrival(1, 9, Named(1)), fresh(1));
        assert_eq!(t.on_arrival(1, 9, Named(1)), again(1));
        assert_eq!(
            t.missing(),
            Missing {
                never_delivered: 1,
                partly_delivered: 0,
                recipients: 1,
            }
        );
    }

    #[test]
    fn the_window_is_bounded_and_writes_off_the_oldest() {
        let cap = 8;
        let mut t = Tracker::new(cap, 2);
        // Message 0 is lost; the run goes on far past the window.
        t.on_accepted(0, 0, true, 2, 0);
        for seq in 1..1000u64 {
            t.on_accepted(seq, seq, true, 2, 0);
            assert!(t.window.len() <= cap, "window {} at {seq}", t.window.len());
            if seq % 2 == 0 {
                assert_eq!(t.on_arrival(seq, seq + 3, Named(0b11)), through(2, 3));
            } else if seq % 3 == 0 {
                // Half of it only.
                assert_eq!(t.on_arrival(seq, seq + 3, Named(0b01)), fresh(1));
            }
        }
        // Message 0 and the odd ones written off or still awaited; a third of the odd ones
        // partly.
        let missing = t.missing();
        assert_eq!(missing.never_delivered + missing.partly_delivered, 501);
        assert_eq!(missing.partly_delivered, 167);
        assert_eq!(missing.recipients, 2 * 334 + 167);
        assert!(t.window.len() <= cap);
        // Message 1 was written off long ago: its arrival now is late, not a delivery.
        assert_eq!(
            t.on_arrival(1, 5000, Named(0b11)),
            Arrival {
                late: 2,
                ..Arrival::default()
            }
        );
        assert_eq!(t.on_arrival(1, 5000, Named(0b01)), again(1));
        // A number far past anything sent is not ours; the bitmap does not grow for it.
        let words = t.seen.len();
        assert!(t.on_arrival(u64::MAX, 1, Named(1)).unknown);
        assert!(t.on_arrival(1_000_000_000, 1, Counted(3)).unknown);
        assert_eq!(t.seen.len(), words);
    }

    #[test]
    fn a_message_in_flight_at_the_front_does_not_hold_more_than_the_window() {
        // Message 0 is never reported at all (its connection died); the rest are delivered.
        let mut t = Tracker::new(8, 1);
        for seq in 1..100u64 {
            t.on_accepted(seq, 0, true, 1, 0);
            t.on_arrival(seq, 1, Named(1));
            assert!(t.window.len() <= 8);
        }
        assert_eq!(t.missing(), Missing::default());
    }

    #[test]
    fn every_order_of_250_and_split_arrivals_gives_one_delivery_and_no_duplicate() {
        // Three recipients in transactions {0}, {1, 2}, and the 250: every order of the three.
        let steps = [0usize, 1, 2];
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for order in orders {
            let mut t = Tracker::new(16, 3);
            let mut delivered = Vec::new();
            let mut arrived = 0;
            for (time, step) in order.iter().map(|&i| steps[i]).enumerate() {
                let at = 10 * (time as u64 + 1);
                match step {
                    0 => {
                        let a = t.on_arrival(0, at, Named(0b001));
                        arrived += a.new;
                        assert_eq!(a.duplicates, 0);
                        delivered.extend(a.delivered.map(|d| d.0));
                    }
                    1 => {
                        let a = t.on_arrival(0, at, Named(0b110));
                        arrived += a.new;
                        assert_eq!(a.duplicates, 0);
                        delivered.extend(a.delivered.map(|d| d.0));
                    }
                    _ => delivered.extend(t.on_accepted(0, 5, true, 3, 0)),
                }
            }
            assert_eq!(arrived, 3, "{order:?}");
            // The latency is to the last recipient's arrival.
            let last = 10 * (order.iter().rposition(|&i| i != 2).unwrap() as u64 + 1);
            assert_eq!(delivered, [last - 5], "{order:?}");
            assert_eq!(t.missing(), Missing::default(), "{order:?}");
            assert_eq!(t.awaited(), 0);
        }
    }
}
