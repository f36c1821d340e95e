//! The delivery loop's decisions, pure: what a recipient's state becomes after an attempt,
//! when a message is due again, and which of its recipients an attempt sends.
//!
//! What it does not do: keep anything, read a clock (instants are Unix milliseconds or a
//! [`Duration`] since the Unix epoch, as the spool keeps them) or draw random numbers (the
//! jitter's sample is the caller's).

use crate::relay::client::session::Verdict;
use crate::relay::schedule::{Next, RetryPolicy};
use crate::relay::spool::RecipientState;
use std::time::Duration;

/// `instant` as the spool's Unix milliseconds (saturating).
pub fn unix_ms(instant: Duration) -> u64 {
    u64::try_from(instant.as_millis()).unwrap_or(u64::MAX)
}

/// A recipient's state after an attempt at `now` that ended with `verdict` and `reply` (the
/// next hop's reply or our reason, as the spool keeps it) in a session with the next hop
/// `remote_mta` (empty: none was reached): delivered and failed are final; a
/// deferral counts an attempt and is retried by the policy, or fails for good once the
/// queue lifetime since `arrived` is over, with the last reply (RFC 5321 §4.5.4.1; issue 19:
/// an expired recipient gets `Action: failed` with the last attempt's reply).
#[allow(clippy::too_many_arguments)] // each is one fact of the attempt; a struct would only rename them
pub fn state_after(
    previous: &RecipientState,
    verdict: Verdict,
    reply: Vec<u8>,
    remote_mta: &[u8],
    arrived: Duration,
    now: Duration,
    policy: &RetryPolicy,
    sample: u64,
) -> RecipientState {
    let remote_mta = remote_mta.to_vec();
    match verdict {
        Verdict::Delivered => RecipientState::Delivered { reply, remote_mta },
        Verdict::Failed => RecipientState::Failed { reply, remote_mta },
        Verdict::Deferred => {
            let attempts = match previous {
                RecipientState::Deferred { attempts, .. } => attempts.saturating_add(1),
                _ => 1,
            };
            match policy.after_failure(arrived, now, attempts, sample) {
                Next::RetryAt(at) => RecipientState::Deferred {
                    attempts,
                    next_attempt_unix_ms: unix_ms(at),
                    last_reply: reply,
                    remote_mta,
                },
                Next::GiveUp => RecipientState::Failed { reply, remote_mta },
            }
        }
    }
}

/// When a message with these recipient states is due (Unix milliseconds): `now_ms` when a
/// recipient was never tried, else the earliest next attempt of its deferred recipients;
/// `None` when every recipient is final.
pub fn due_at(states: &[RecipientState], now_ms: u64) -> Option<u64> {
    states
        .iter()
        .filter_map(|state| match state {
            RecipientState::Pending => Some(now_ms),
            RecipientState::Deferred {
                next_attempt_unix_ms,
                ..
            } => Some(*next_attempt_unix_ms),
            RecipientState::Delivered { .. } | RecipientState::Failed { .. } => None,
        })
        .min()
}

/// The recipients an attempt sends (their indexes in the envelope): every one not final.
/// A deferred recipient whose own time has not come goes along with the others: one
/// transaction per message, the next hop sees the message once per attempt.
pub fn to_send(states: &[RecipientState]) -> Vec<usize> {
    states
        .iter()
        .enumerate()
        .filter(|(_, state)| !state.is_final())
        .map(|(index, _)| index)
        .collect()
}

/// Whether any recipient failed (so a failure notification may be due).
pub fn any_failed(states: &[RecipientState]) -> bool {
    states
        .iter()
        .any(|state| matches!(state, RecipientState::Failed { .. }))
}

/// A small pseudo-random stream for the jitter's samples (splitmix64): no dependency, and
/// the schedule's tests pass their own samples anyway.
#[derive(Debug, Clone)]
pub struct Samples {
    /// The generator's state.
    state: u64,
}

impl Samples {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Samples {
        Samples { state: seed }
    }

    /// The next sample.
    pub fn next_sample(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::schedule::Backoff;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(
            Backoff::List(vec![Duration::from_secs(1), Duration::from_secs(2)]),
            Duration::from_secs(10),
        )
        .unwrap()
    }

    /// The jitter's middle: a sample of half the range moves a delay by (almost) nothing.
    const MIDDLE: u64 = u64::MAX / 2;

    #[test]
    fn final_verdicts_are_kept_with_their_reply() {
        let arrived = Duration::from_secs(100);
        let state = state_after(
            &RecipientState::Pending,
            Verdict::Delivered,
            b"250 ok".to_vec(),
            b"mx.test",
            arrived,
            arrived,
            &policy(),
            MIDDLE,
        );
        assert_eq!(
            state,
            RecipientState::Delivered {
                reply: b"250 ok".to_vec(),
                remote_mta: b"mx.test".to_vec(),
            }
        );
        let state = state_after(
            &RecipientState::Pending,
            Verdict::Failed,
            b"550 no".to_vec(),
            b"mx.test",
            arrived,
            arrived,
            &policy(),
            MIDDLE,
        );
        assert_eq!(
            state,
            RecipientState::Failed {
                reply: b"550 no".to_vec(),
                remote_mta: b"mx.test".to_vec(),
            }
        );
    }

    #[test]
    fn deferrals_count_attempts_follow_the_list_and_give_up_at_the_lifetime() {
        let arrived = Duration::from_secs(100);
        let mut state = RecipientState::Pending;
        let mut now = arrived;
        let mut attempts_seen = Vec::new();
        for _ in 0..20 {
            state = state_after(
                &state,
                Verdict::Deferred,
                b"451 later".to_vec(),
                b"",
                arrived,
                now,
                &policy(),
                MIDDLE,
            );
            match &state {
                RecipientState::Deferred {
                    attempts,
                    next_attempt_unix_ms,
                    last_reply,
                    remote_mta,
                } => {
                    assert_eq!(last_reply, b"451 later");
                    assert!(remote_mta.is_empty());
                    let delay = next_attempt_unix_ms - unix_ms(now);
                    attempts_seen.push((*attempts, delay));
                    now = Duration::from_millis(*next_attempt_unix_ms);
                }
                RecipientState::Failed { reply, .. } => {
                    assert_eq!(reply, b"451 later");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(
            state
                == RecipientState::Failed {
                    reply: b"451 later".to_vec(),
                    remote_mta: Vec::new(),
                }
        );
        // 1 s, then 2 s repeating, the last attempt moved to the lifetime's end (110 s).
        assert_eq!(attempts_seen[0].0, 1);
        assert!(
            (900..=1100).contains(&attempts_seen[0].1),
            "{attempts_seen:?}"
        );
        assert!(
            (1800..=2200).contains(&attempts_seen[1].1),
            "{attempts_seen:?}"
        );
        assert!(now <= arrived + Duration::from_secs(10));
        assert!(now >= arrived + Duration::from_secs(9));
        let counts: Vec<u32> = attempts_seen.iter().map(|(n, _)| *n).collect();
        assert!(
            counts.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "{counts:?}"
        );
    }

    #[test]
    fn a_message_is_due_at_its_earliest_unfinished_recipient() {
        let deferred = |at: u64| RecipientState::Deferred {
            attempts: 1,
            next_attempt_unix_ms: at,
            last_reply: Vec::new(),
            remote_mta: Vec::new(),
        };
        let done = RecipientState::Delivered {
            reply: Vec::new(),
            remote_mta: Vec::new(),
        };
        let failed = RecipientState::Failed {
            reply: Vec::new(),
            remote_mta: Vec::new(),
        };
        assert_eq!(due_at(&[done.clone(), failed.clone()], 5), None);
        assert_eq!(due_at(&[], 5), None);
        assert_eq!(
            due_at(&[deferred(9), deferred(7), done.clone()], 5),
            Some(7)
        );
        assert_eq!(due_at(&[deferred(9), RecipientState::Pending], 5), Some(5));
        assert_eq!(
            to_send(&[
                done.clone(),
                deferred(9),
                failed.clone(),
                RecipientState::Pending
            ]),
            [1, 3]
        );
        assert!(any_failed(&[done.clone(), failed]));
        assert!(!any_failed(&[done, deferred(1)]));
    }

    #[test]
    fn samples_differ_and_repeat_for_a_seed() {
        let mut a = Samples::new(7);
        let mut b = Samples::new(7);
        let first: Vec<u64> = (0..4).map(|_| a.next_sample()).collect();
        let second: Vec<u64> = (0..4).map(|_| b.next_sample()).collect();
        assert_eq!(first, second);
        assert!(first.windows(2).all(|pair| pair[0] != pair[1]));
    }
}
