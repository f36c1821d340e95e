//! [`FairQueue`]: work queued per client, handed out one item per client in turn.
//!
//! What it does: keep a first-in first-out lane per client key and a ring of the clients
//! that have something queued. [`FairQueue::pop`] serves the client whose turn it is, then
//! puts it at the back of the ring: a client with a thousand items queued gets one turn per
//! round like a client with one, so a new client's item waits for at most one item of each
//! other client (a first-come queue made it wait for all of them). The caller may rank
//! clients (e.g. "no recent failure" before "failed recently") or hold one back for now;
//! within a rank, turn order holds. Items handed out are counted as running per client until
//! [`FairQueue::finish`], so [`FairQueue::pending`] tells how much a client has in hand.
//!
//! What it does not do: bound itself (the caller refuses before [`FairQueue::push`]), lock,
//! or know what an item is.

use super::ClientKey;
use std::collections::{HashMap, VecDeque};

/// One client's queued items and how many of its items are being worked on.
#[derive(Debug)]
struct Lane<T> {
    /// Items not handed out yet, oldest first, each with the caller's id.
    items: VecDeque<(u64, T)>,
    /// Items handed out by [`FairQueue::pop`] and not yet [`FairQueue::finish`]ed.
    running: u32,
}

/// Work queued per client key, served round-robin (see the module docs).
#[derive(Debug)]
pub struct FairQueue<T> {
    /// Every client with an item queued or running.
    lanes: HashMap<ClientKey, Lane<T>>,
    /// The clients with an item queued, in the order of their next turn.
    ring: VecDeque<ClientKey>,
    /// Items queued over all clients.
    queued: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue {
            lanes: HashMap::new(),
            ring: VecDeque::new(),
            queued: 0,
        }
    }
}

impl<T> FairQueue<T> {
    /// An empty queue.
    pub fn new() -> FairQueue<T> {
        FairQueue::default()
    }

    /// Items queued (not handed out) over all clients.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Items of `client` queued or running.
    pub fn pending(&self, client: ClientKey) -> u32 {
        self.lanes.get(&client).map_or(0, |lane| {
            lane.running + u32::try_from(lane.items.len()).unwrap_or(u32::MAX)
        })
    }

    /// Items of `client` queued (not running).
    pub fn queued_of(&self, client: ClientKey) -> usize {
        self.lanes.get(&client).map_or(0, |lane| lane.items.len())
    }

    /// The clients with an item queued, in turn order.
    pub fn waiting_clients(&self) -> impl Iterator<Item = ClientKey> + '_ {
        self.ring.iter().copied()
    }

    /// Queues `item` (with the caller's `id`, for [`FairQueue::remove`]) behind `client`'s
    /// earlier ones. A client with nothing queued joins the ring at the back.
    pub fn push(&mut self, client: ClientKey, id: u64, item: T) {
        let lane = self.lanes.entry(client).or_insert_with(|| Lane {
            items: VecDeque::new(),
            running: 0,
        });
        if lane.items.is_empty() {
            self.ring.push_back(client);
        }
        lane.items.push_back((id, item));
        self.queued += 1;
    }

    /// Hands out the oldest item of the client whose turn it is among those of the best
    /// (lowest) rank; `rank` returns `None` for a client to hold back for now. The client
    /// goes to the back of the ring, and the item counts as running until
    /// [`FairQueue::finish`]. `None` when nothing queued may go.
    pub fn pop(&mut self, rank: impl Fn(ClientKey) -> Option<u8>) -> Option<(ClientKey, u64, T)> {
        let mut best: Option<(usize, u8)> = None;
        for (position, client) in self.ring.iter().enumerate() {
            if let Some(r) = rank(*client) {
                if best.is_none_or(|(_, b)| r < b) {
                    best = Some((position, r));
                    if r == 0 {
                        break;
                    }
                }
            }
        }
        let (position, _) = best?;
        let client = self.ring.remove(position)?;
        let lane = self.lanes.get_mut(&client)?;
        let (id, item) = lane.items.pop_front()?;
        lane.running += 1;
        self.queued -= 1;
        if !lane.items.is_empty() {
            self.ring.push_back(client);
        }
        Some((client, id, item))
    }

    /// An item of `client` handed out by [`FairQueue::pop`] is done.
    pub fn finish(&mut self, client: ClientKey) {
        if let Some(lane) = self.lanes.get_mut(&client) {
            lane.running = lane.running.saturating_sub(1);
            if lane.running == 0 && lane.items.is_empty() {
                self.lanes.remove(&client);
            }
        }
    }

    /// Takes the queued item `id` of `client` out (it is no longer wanted); `None` if it is
    /// not queued (handed out already, or never there).
    pub fn remove(&mut self, client: ClientKey, id: u64) -> Option<T> {
        let lane = self.lanes.get_mut(&client)?;
        let index = lane.items.iter().position(|(queued, _)| *queued == id)?;
        let (_, item) = lane.items.remove(index)?;
        self.queued -= 1;
        self.tidy(client);
        Some(item)
    }

    /// Takes the newest queued item of `client` out (to make room for another client's).
    pub fn remove_newest(&mut self, client: ClientKey) -> Option<(u64, T)> {
        let lane = self.lanes.get_mut(&client)?;
        let newest = lane.items.pop_back()?;
        self.queued -= 1;
        self.tidy(client);
        Some(newest)
    }

    /// After an item of `client` left the queue: a client with nothing queued leaves the
    /// ring, and one with nothing running either is forgotten.
    fn tidy(&mut self, client: ClientKey) {
        let Some(lane) = self.lanes.get(&client) else {
            return;
        };
        if lane.items.is_empty() {
            if let Some(position) = self.ring.iter().position(|c| *c == client) {
                self.ring.remove(position);
            }
            if lane.running == 0 {
                self.lanes.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> ClientKey {
        ClientKey::of(std::net::IpAddr::from([192, 0, 2, last]))
    }

    /// Pops everything with every client ranked alike; returns the items in order.
    fn drain(queue: &mut FairQueue<&'static str>) -> Vec<&'static str> {
        let mut order = Vec::new();
        while let Some((client, _, item)) = queue.pop(|_| Some(0)) {
            queue.finish(client);
            order.push(item);
        }
        order
    }

    #[test]
    fn each_client_gets_one_turn_per_round_whatever_it_queued() {
        let mut queue = FairQueue::new();
        // A flood from `a` first, then one item each from `b` and `c`.
        for (i, item) in ["a1", "a2", "a3", "a4", "a5"].into_iter().enumerate() {
            queue.push(ip(1), i as u64, item);
        }
        queue.push(ip(2), 10, "b1");
        queue.push(ip(3), 20, "c1");
        queue.push(ip(2), 11, "b2");
        assert_eq!(queue.queued(), 8);
        assert_eq!(queue.pending(ip(1)), 5);
        assert_eq!(
            drain(&mut queue),
            ["a1", "b1", "c1", "a2", "b2", "a3", "a4", "a5"]
        );
        assert!(queue.is_empty());
        assert!(queue.lanes.is_empty() && queue.ring.is_empty());
    }

    #[test]
    fn a_late_client_waits_for_at_most_one_item_of_each_other_client() {
        // 64 flooding clients with 20 items each; a 65th client's single item.
        let mut queue = FairQueue::new();
        for round in 0..20u64 {
            for client in 1..=64u8 {
                queue.push(ip(client), round, "flood");
            }
        }
        // A few turns have gone already.
        for _ in 0..10 {
            let (client, _, _) = queue.pop(|_| Some(0)).unwrap();
            queue.finish(client);
        }
        queue.push(ip(200), 0, "late");
        let mut before_it = 0;
        while let Some((client, _, item)) = queue.pop(|_| Some(0)) {
            queue.finish(client);
            if item == "late" {
                break;
            }
            before_it += 1;
        }
        assert!(
            before_it <= 64,
            "{before_it} items went before the late one"
        );
    }

    #[test]
    fn a_better_rank_goes_first_and_held_back_clients_wait() {
        let mut queue = FairQueue::new();
        queue.push(ip(1), 0, "suspect1");
        queue.push(ip(1), 1, "suspect2");
        queue.push(ip(2), 0, "held");
        queue.push(ip(3), 0, "clean");
        let rank = |client: ClientKey| match client {
            c if c == ip(1) => Some(1),
            c if c == ip(2) => None,
            _ => Some(0),
        };
        let mut order = Vec::new();
        while let Some((client, _, item)) = queue.pop(rank) {
            queue.finish(client);
            order.push(item);
        }
        assert_eq!(order, ["clean", "suspect1", "suspect2"]);
        assert_eq!(queue.queued(), 1, "the held-back item stays");
        assert_eq!(drain(&mut queue), ["held"]);
    }

    #[test]
    fn pending_counts_running_items_until_finished_and_removal_tidies_up() {
        let mut queue = FairQueue::new();
        queue.push(ip(1), 7, "x");
        queue.push(ip(1), 8, "y");
        queue.push(ip(1), 9, "z");
        let (client, id, _) = queue.pop(|_| Some(0)).unwrap();
        assert_eq!((client, id), (ip(1), 7));
        assert_eq!(queue.pending(ip(1)), 3, "one running, two queued");
        assert_eq!(queue.remove(ip(1), 8), Some("y"));
        assert_eq!(queue.remove(ip(1), 8), None, "already gone");
        assert_eq!(queue.remove(ip(1), 7), None, "running, not queued");
        assert_eq!(queue.remove_newest(ip(1)), Some((9, "z")));
        assert!(queue.ring.is_empty(), "nothing queued: out of the ring");
        assert_eq!(queue.pending(ip(1)), 1);
        queue.finish(ip(1));
        assert_eq!(queue.pending(ip(1)), 0);
        assert!(queue.lanes.is_empty(), "forgotten once nothing is left");
        queue.finish(ip(1)); // a second finish changes nothing
        assert!(queue.pop(|_| Some(0)).is_none());
    }
}
