//! The queue tools on a stopped relay's spool: opened directly (taking its lock, so no
//! server starts meanwhile), acted on, closed.
//!
//! What it does: [`execute`] answers a [`Request`] with the same [`Reply`] lines a running
//! relay's control socket sends. Opening runs the spool's recovery (torn tails cut, finished
//! segments deleted), exactly what the next start would do. `retry` and `bounce` write the
//! recipients' new states to the journal; the server acts on them at its next start (a
//! bounced message's failure notification is spooled then, by that server's `--dsn` and
//! `--hostname`: the normal rules). `delete` marks the message done, no notification.
//!
//! What it does not do: deliver, build notifications, or wait for a lock a running server
//! holds (that spool is answered through its control socket instead, and a lock without a
//! socket is an error for the caller to report).

use super::model::{message_info, queue_state_of, Reply};
use super::request::{Request, Target, BOUNCE_REPLY};
use crate::relay::spool::{Envelope, RecipientState, RecoveryReport, Spool, SpoolId};
use std::collections::HashMap;
use std::io;
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;

/// Answers `request` on the stopped spool in `dir` at `now_ms` (Unix milliseconds), one
/// reply at a time to `emit`, and returns what opening the spool repaired or found damaged
/// (for the caller to say: the next start would do and say the same). An `Err` is the
/// spool's (it cannot be opened, read or written) or `emit`'s.
pub fn execute(
    dir: &Path,
    request: &Request,
    now_ms: u64,
    emit: &mut dyn FnMut(Reply) -> io::Result<()>,
) -> io::Result<RecoveryReport> {
    let (mut spool, recovered) = Spool::open(dir)?;
    let report = spool.recovery_report().clone();
    answer(&mut spool, recovered, request, now_ms, emit)?;
    Ok(report)
}

/// [`execute`]'s answer, on the opened spool.
fn answer(
    spool: &mut Spool,
    recovered: Vec<crate::relay::spool::Recovered>,
    request: &Request,
    now_ms: u64,
    emit: &mut dyn FnMut(Reply) -> io::Result<()>,
) -> io::Result<()> {
    let envelopes: HashMap<SpoolId, Envelope> = recovered
        .into_iter()
        .map(|message| (message.spool_ref.id, message.envelope))
        .collect();
    let ids: Vec<SpoolId> = spool.live_after(None).map(|l| l.spool_ref.id).collect();
    let not_found = |id: SpoolId| Reply::NotFound {
        error: format!("no message {id} in the queue"),
    };
    let done = |count: u64| Reply::Done {
        count,
        next_hops: Vec::new(),
    };
    let info = |spool: &Spool, id: SpoolId| {
        let listed = spool.get(id)?;
        let envelope = envelopes.get(&id)?;
        let queue = queue_state_of(listed.recipients, now_ms);
        Some(message_info(&listed, envelope, queue))
    };
    match *request {
        Request::List => {
            let mut count = 0;
            for &id in &ids {
                if let Some(message) = info(spool, id) {
                    emit(Reply::Message(message))?;
                    count += 1;
                }
            }
            emit(done(count))
        }
        Request::Show(id) => match info(spool, id) {
            Some(message) => {
                emit(Reply::Message(message))?;
                emit(done(1))
            }
            None => emit(not_found(id)),
        },
        Request::Retry(target) | Request::Delete(target) => {
            let chosen = match target {
                Target::One(id) if spool.get(id).is_none() => return emit(not_found(id)),
                Target::One(id) => vec![id],
                Target::All => ids,
            };
            let retry = matches!(request, Request::Retry(_));
            let mut count = 0;
            for &id in &chosen {
                if retry {
                    // Counted only when it has recipients left to deliver (deferred, made
                    // due now, or pending, due already): a finishing message is not.
                    count += u64::from(retry_now(spool, id, now_ms)?);
                } else {
                    spool.mark_done(id)?;
                    count += 1;
                }
            }
            spool.sync_journal()?;
            emit(done(count))
        }
        Request::Bounce(id) => {
            let Some(listed) = spool.get(id) else {
                return emit(not_found(id));
            };
            let open: Vec<usize> = listed
                .recipients
                .iter()
                .enumerate()
                .filter(|(_, state)| !state.is_final())
                .map(|(index, _)| index)
                .collect();
            for index in open {
                spool.set_recipient_state(
                    id,
                    index,
                    RecipientState::Failed {
                        reply: BOUNCE_REPLY.to_vec(),
                        remote_mta: Vec::new(),
                    },
                )?;
            }
            spool.sync_journal()?;
            emit(done(1))
        }
    }
}

/// Makes message `id`'s deferred recipients due at `now_ms`; whether it has any recipient
/// left to deliver (deferred or pending: what `retry` counts).
fn retry_now(spool: &mut Spool, id: SpoolId, now_ms: u64) -> io::Result<bool> {
    let Some(listed) = spool.get(id) else {
        return Ok(false);
    };
    let left = listed.recipients.iter().any(|state| !state.is_final());
    let updates: Vec<(usize, RecipientState)> = listed
        .recipients
        .iter()
        .enumerate()
        .filter_map(|(index, state)| Some((index, state.due_at(now_ms)?)))
        .collect();
    for (index, state) in updates {
        spool.set_recipient_state(id, index, state)?;
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dsn::Notify;
    use crate::relay::spool::Recipient;

    /// A stopped spool in a fresh directory with three messages: the first never tried, the
    /// second with one recipient deferred and one delivered, the third from `<>`.
    fn stopped_spool(name: &str) -> (PathBuf, [SpoolId; 3]) {
        let dir = std::env::temp_dir().join(format!(
            "fastsmtpd-admin-offline-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut spool, _) = Spool::open(&dir).unwrap();
        let envelope = |from: &str, to: &[&str]| Envelope {
            arrival_unix_ms: 1_000,
            reverse_path: from.as_bytes().to_vec(),
            recipients: to
                .iter()
                .map(|address| Recipient {
                    address: address.as_bytes().to_vec(),
                    notify: Notify::default(),
                    orcpt: None,
                })
                .collect(),
            ..Envelope::default()
        };
        let ids = [
            spool
                .append(&envelope("a@x", &["r@y"]), b"one\r\n")
                .unwrap(),
            spool
                .append(&envelope("b@x", &["s@y", "t@z"]), b"two\r\n")
                .unwrap(),
            spool.append(&envelope("", &["a@x"]), b"three\r\n").unwrap(),
        ];
        spool.commit().unwrap();
        spool
            .set_recipient_state(
                ids[1],
                0,
                RecipientState::Deferred {
                    attempts: 2,
                    next_attempt_unix_ms: 9_000,
                    last_reply: b"451 4.3.0 later".to_vec(),
                    remote_mta: b"mx.test".to_vec(),
                },
            )
            .unwrap();
        spool
            .set_recipient_state(
                ids[1],
                1,
                RecipientState::Delivered {
                    reply: b"250 2.0.0 ok".to_vec(),
                    remote_mta: b"mx.test".to_vec(),
                },
            )
            .unwrap();
        spool.sync_journal().unwrap();
        (dir, ids)
    }

    /// The replies to `request` at `now_ms`.
    fn answer(dir: &Path, request: Request, now_ms: u64) -> Vec<Reply> {
        let mut replies = Vec::new();
        execute(dir, &request, now_ms, &mut |reply| {
            replies.push(reply);
            Ok(())
        })
        .unwrap();
        replies
    }

    /// The messages of a `list`.
    fn listed(dir: &Path, now_ms: u64) -> Vec<crate::relay::admin::model::MessageInfo> {
        answer(dir, Request::List, now_ms)
            .into_iter()
            .filter_map(|reply| match reply {
                Reply::Message(message) => Some(message),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn list_show_and_the_actions_on_a_stopped_spool() {
        use crate::relay::admin::model::QueueState;
        let (dir, [first, second, third]) = stopped_spool("actions");
        let list = listed(&dir, 5_000);
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].queue, QueueState::Ready);
        assert_eq!(list[1].queue, QueueState::Deferred);
        assert_eq!(list[1].next_attempt_unix_ms, Some(9_000));
        assert_eq!(list[1].recipients[0].attempts, 2);
        assert_eq!(list[1].recipients[1].state, "delivered");
        assert_eq!(list[2].sender, "");
        let shown = answer(&dir, Request::Show(second), 5_000);
        assert!(
            matches!(&shown[..], [Reply::Message(m), Reply::Done { count: 1, .. }] if m.id == second.to_string())
        );
        let missing = answer(&dir, Request::Show(SpoolId(99)), 5_000);
        assert!(matches!(&missing[..], [Reply::NotFound { .. }]));

        // retry: the deferred recipient is due now; attempts stay. Every message with a
        // recipient left to deliver counts (the pending ones are due already).
        let retried = answer(&dir, Request::Retry(Target::One(second)), 5_000);
        assert!(matches!(&retried[..], [Reply::Done { count: 1, .. }]));
        let retried = answer(&dir, Request::Retry(Target::All), 5_000);
        assert!(
            matches!(&retried[..], [Reply::Done { count: 3, .. }]),
            "{retried:?}"
        );
        let list = listed(&dir, 5_000);
        assert_eq!(list[1].queue, QueueState::Ready);
        assert_eq!(list[1].recipients[0].next_attempt_unix_ms, Some(5_000));
        assert_eq!(list[1].recipients[0].attempts, 2);

        // bounce: every recipient not final fails; the message waits for the next start.
        answer(&dir, Request::Bounce(second), 5_000);
        let list = listed(&dir, 5_000);
        assert_eq!(list[1].queue, QueueState::Finishing);
        assert_eq!(list[1].recipients[0].state, "failed");
        assert_eq!(
            list[1].recipients[0].last_reply.as_deref(),
            Some("5.0.0 bounced by the administrator")
        );
        assert_eq!(list[1].recipients[1].state, "delivered");
        // A finishing message has nothing to retry: not counted.
        let retried = answer(&dir, Request::Retry(Target::One(second)), 5_000);
        assert!(matches!(&retried[..], [Reply::Done { count: 0, .. }]));
        let retried = answer(&dir, Request::Retry(Target::All), 5_000);
        assert!(
            matches!(&retried[..], [Reply::Done { count: 2, .. }]),
            "the two others, not the finishing one: {retried:?}"
        );

        // delete: gone; delete all: the rest gone.
        let deleted = answer(&dir, Request::Delete(Target::One(first)), 5_000);
        assert!(matches!(&deleted[..], [Reply::Done { count: 1, .. }]));
        assert_eq!(listed(&dir, 5_000).len(), 2);
        let deleted = answer(&dir, Request::Delete(Target::All), 5_000);
        assert!(matches!(&deleted[..], [Reply::Done { count: 2, .. }]));
        assert!(listed(&dir, 5_000).is_empty());
        let missing = answer(&dir, Request::Bounce(third), 5_000);
        assert!(matches!(&missing[..], [Reply::NotFound { .. }]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_spool_another_process_holds_is_refused_not_waited_for() {
        let (dir, _) = stopped_spool("locked");
        let (_held, _) = Spool::open(&dir).unwrap();
        let error = execute(&dir, &Request::List, 0, &mut |_| Ok(())).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
