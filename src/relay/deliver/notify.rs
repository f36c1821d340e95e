//! Which notifications a message owes besides the failure notification, and spooling any
//! notification (RFC 3461 §4.1 and §6.2, RFC 3464).
//!
//! What it does:
//! - [`relayed_recipients`]: after a transaction, the recipients handed to a next hop that does
//!   not offer DSN whose `NOTIFY` holds `SUCCESS`: RFC 3461 §5.2.2 has the relay report them
//!   (`Action: relayed`), since nothing further will come from beyond that hop. A next hop
//!   that offers DSN got `NOTIFY`/`ORCPT`/`RET`/`ENVID` unchanged (§5.2.1) and reports itself.
//! - [`delay_warning_due`]: whether a message deferred for at least `--delay-warning` has a
//!   recipient whose `NOTIFY` asks for `DELAY` (absent `NOTIFY` does: `FAILURE,DELAY`, our
//!   choice under §4.1), so one `Action: delayed` notification goes out.
//! - [`spool_notification`]: writes a notification ([`super::convert`]) and appends and
//!   commits it to the spool as a new message from `<>`, under the spool's lock.
//!
//! What it does not do: remember that a delay warning was sent (the loop keeps that per
//! message in memory: after a restart a message still deferred past the threshold is warned
//! about once more, the at-least-once cost; no journal entry kind is added for it), or read
//! a clock.

use super::convert::{self, NotificationInput};
use crate::proto::dsn::Notify;
use crate::relay::client::session::Verdict;
use crate::relay::queue::RelayQueue;
use crate::relay::spool::{Envelope, RecipientState, SpoolId, SpoolRef};
use std::io;
use std::time::Duration;

/// Which notification to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which<'a> {
    /// The failed recipients (RFC 5321 §6.1).
    Failure,
    /// The recipients at these indexes were relayed to a next hop without DSN (RFC 3461
    /// §5.2.2).
    Relayed(&'a [usize]),
    /// The deferred recipients, retried until this Unix millisecond (RFC 3464 §2.3.9).
    Delay {
        /// The end of the queue lifetime.
        retry_until_unix_ms: u64,
    },
}

impl Which<'_> {
    /// A letter for the notification's token, so two notifications about one message never
    /// share a `Message-ID` or a boundary.
    fn letter(&self) -> char {
        match self {
            Which::Failure => 'F',
            Which::Relayed(_) => 'R',
            Which::Delay { .. } => 'D',
        }
    }
}

/// The recipients (indexes in `envelope`) of `outcomes` that a next hop without DSN
/// (`hop_offers_dsn` false) accepted and whose `NOTIFY` holds `SUCCESS`; empty when the hop
/// offers DSN or the sender is `<>` (RFC 5321 §4.5.5).
pub fn relayed_recipients(
    envelope: &Envelope,
    outcomes: &[(usize, Verdict, Vec<u8>)],
    hop_offers_dsn: bool,
) -> Vec<usize> {
    if hop_offers_dsn || envelope.reverse_path.is_empty() {
        return Vec::new();
    }
    outcomes
        .iter()
        .filter(|(index, verdict, _)| {
            *verdict == Verdict::Delivered
                && envelope
                    .recipients
                    .get(*index)
                    .is_some_and(|recipient| recipient.notify.wants(Notify::SUCCESS))
        })
        .map(|(index, _, _)| *index)
        .collect()
}

/// Whether a delay warning is due for a message that arrived at `arrival` with `states`:
/// `after` is set (`--delay-warning`), it has waited that long by `now`, the sender is not
/// `<>`, and a recipient still deferred asks for `DELAY` (RFC 3461 §4.1).
pub fn delay_warning_due(
    envelope: &Envelope,
    states: &[RecipientState],
    arrival: Duration,
    now: Duration,
    after: Option<Duration>,
) -> bool {
    let Some(after) = after else {
        return false;
    };
    if envelope.reverse_path.is_empty() || now.saturating_sub(arrival) < after {
        return false;
    }
    envelope
        .recipients
        .iter()
        .zip(states)
        .any(|(recipient, state)| {
            matches!(state, RecipientState::Deferred { .. })
                && recipient.notify.wants(Notify::DELAY)
        })
}

/// Writes the notification `which` about message `id` (at `place`, with `envelope` and
/// `states`) and commits it to the spool as a new message; its id, or `None` when none is
/// due (every recipient concerned said otherwise with `NOTIFY`).
#[allow(clippy::too_many_arguments)]
pub fn spool_notification(
    queue: &RelayQueue,
    reporting_mta: &str,
    id: SpoolId,
    place: &SpoolRef,
    envelope: &Envelope,
    states: &[RecipientState],
    which: Which<'_>,
    now_unix_ms: u64,
) -> io::Result<Option<SpoolId>> {
    let mut spool = queue.spool();
    let original = spool.read_body(place)?;
    let token = format!("Q{}{}{}", id.0, which.letter(), now_unix_ms);
    let input = NotificationInput {
        reporting_mta,
        envelope,
        states,
        original: &original,
        now_unix_ms,
        token: &token,
    };
    let mut bytes = Vec::new();
    let written = match which {
        Which::Failure => convert::failure_notification_into(&input, &mut bytes),
        Which::Relayed(indexes) => convert::relayed_notification_into(&input, indexes, &mut bytes),
        Which::Delay {
            retry_until_unix_ms,
        } => convert::delay_notification_into(&input, retry_until_unix_ms, &mut bytes),
    };
    let Some(notification) = written else {
        return Ok(None);
    };
    let new_id = spool.append(&notification, &bytes)?;
    spool.commit()?;
    Ok(Some(new_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::spool::Recipient;

    fn envelope(sender: &[u8], notifies: &[Notify]) -> Envelope {
        Envelope {
            reverse_path: sender.to_vec(),
            recipients: notifies
                .iter()
                .enumerate()
                .map(|(i, &notify)| Recipient {
                    address: format!("r{i}@x.test").into_bytes(),
                    notify,
                    orcpt: None,
                })
                .collect(),
            ..Envelope::default()
        }
    }

    #[test]
    fn relayed_only_toward_a_hop_without_dsn_and_only_for_success() {
        let spooled = envelope(
            b"s@x.test",
            &[
                Notify::SUCCESS,
                Notify::ABSENT,
                Notify::SUCCESS.union(Notify::FAILURE),
                Notify::SUCCESS,
            ],
        );
        let outcomes = vec![
            (0, Verdict::Delivered, b"250 ok".to_vec()),
            (1, Verdict::Delivered, b"250 ok".to_vec()),
            (2, Verdict::Delivered, b"250 ok".to_vec()),
            (3, Verdict::Failed, b"550 no".to_vec()),
        ];
        assert_eq!(relayed_recipients(&spooled, &outcomes, false), [0, 2]);
        assert!(relayed_recipients(&spooled, &outcomes, true).is_empty());
        let null = envelope(b"", &[Notify::SUCCESS]);
        assert!(relayed_recipients(&null, &outcomes[..1], false).is_empty());
    }

    #[test]
    fn a_delay_warning_waits_for_its_time_and_for_a_recipient_that_wants_it() {
        let deferred = RecipientState::Deferred {
            attempts: 1,
            next_attempt_unix_ms: 0,
            last_reply: b"451 later".to_vec(),
            remote_mta: b"mx.test".to_vec(),
        };
        let delivered = RecipientState::Delivered {
            reply: b"250 ok".to_vec(),
            remote_mta: b"mx.test".to_vec(),
        };
        let secs = Duration::from_secs;
        let after = Some(secs(10));
        let both = envelope(b"s@x.test", &[Notify::ABSENT, Notify::FAILURE]);
        let states = [deferred.clone(), delivered.clone()];
        assert!(delay_warning_due(
            &both,
            &states,
            secs(100),
            secs(110),
            after
        ));
        assert!(!delay_warning_due(
            &both,
            &states,
            secs(100),
            secs(109),
            after
        ));
        assert!(!delay_warning_due(
            &both,
            &states,
            secs(100),
            secs(999),
            None
        ));
        // The deferred one said FAILURE only; the one that would want it is delivered.
        let states = [delivered, deferred.clone()];
        assert!(!delay_warning_due(&both, &states, secs(0), secs(99), after));
        let never = envelope(b"s@x.test", &[Notify::NEVER]);
        assert!(!delay_warning_due(
            &never,
            std::slice::from_ref(&deferred),
            secs(0),
            secs(99),
            after
        ));
        let null = envelope(b"", &[Notify::DELAY]);
        assert!(!delay_warning_due(
            &null,
            &[deferred],
            secs(0),
            secs(99),
            after
        ));
    }
}
