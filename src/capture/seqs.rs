//! The ascending sequence numbers of the kept messages with one recipient (the recipient
//! index's value) or in one per-test mailbox, paged from a cursor either way.
//!
//! What it does not do: know what the numbers are of (the indexes do), or check that they
//! are kept.

use super::Direction;
use std::collections::VecDeque;

/// The ascending seqs of the messages with one recipient (or in one mailbox); one seq inline
/// (the common case of a recipient seen once costs no allocation).
pub(super) enum Seqs {
    /// One message.
    One(u64),
    /// Several, ascending.
    Many(VecDeque<u64>),
}

impl Seqs {
    /// Adds `seq` (the newest), once.
    pub(super) fn push(&mut self, seq: u64) {
        match self {
            Seqs::One(s) if *s == seq => {}
            Seqs::One(s) => *self = Seqs::Many(VecDeque::from([*s, seq])),
            Seqs::Many(v) => {
                if v.back() != Some(&seq) {
                    v.push_back(seq);
                }
            }
        }
    }

    /// How many seqs.
    pub(super) fn len(&self) -> usize {
        match self {
            Seqs::One(_) => 1,
            Seqs::Many(v) => v.len(),
        }
    }

    /// Removes `seq`; true if none are left.
    pub(super) fn remove(&mut self, seq: u64) -> bool {
        match self {
            Seqs::One(s) => *s == seq,
            Seqs::Many(v) => {
                if v.front() == Some(&seq) {
                    v.pop_front();
                } else if let Ok(i) = v.binary_search(&seq) {
                    v.remove(i);
                }
                v.is_empty()
            }
        }
    }

    /// The seqs beyond `cursor` in `direction`.
    pub(super) fn range(
        &self,
        cursor: Option<u64>,
        direction: Direction,
    ) -> Box<dyn Iterator<Item = u64> + '_> {
        match self {
            Seqs::One(s) => {
                let beyond = match (direction, cursor) {
                    (_, None) => true,
                    (Direction::Older, Some(c)) => *s < c,
                    (Direction::Newer, Some(c)) => *s > c,
                };
                Box::new(beyond.then_some(*s).into_iter())
            }
            Seqs::Many(v) => match direction {
                Direction::Older => {
                    let end = cursor.map_or(v.len(), |c| v.partition_point(|&s| s < c));
                    Box::new(v.range(..end).rev().copied())
                }
                Direction::Newer => {
                    let start = cursor.map_or(0, |c| v.partition_point(|&s| s <= c));
                    Box::new(v.range(start..).copied())
                }
            },
        }
    }
}
