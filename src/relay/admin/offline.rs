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
use crate::relay::spool::{Envelope, RecipientState, Spool, SpoolId};
use std::collections::HashMap;
use std::io;
use std::path::Path;

/// Answers `request` on the stopped spool in `dir` at `now_ms` (Unix milliseconds), one
/// reply at a time to `emit`. An `Err` is the spool's (it cannot be opened, read or
/// written) or `emit`'s.
pub fn execute(
    dir: &Path,
    request: &Request,
    now_ms: u64,
    emit: &mut dyn FnMut(Reply) -> io::Result<()>,
) -> io::Result<()> {
    let (mut spool, recovered) = Spool::open(dir)?;
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
                if let Some(message) = info(&spool, id) {
                    emit(Reply::Message(message))?;
                    count += 1;
                }
            }
            emit(done(count))
        }
        Request::Show(id) => match info(&spool, id) {
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
            for &id in &chosen {
                if retry {
                    retry_now(&mut spool, id, now_ms)?;
                } else {
                    spool.mark_done(id)?;
                }
            }
            spool.sync_journal()?;
            emit(done(chosen.len() as u64))
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
                    },
                )?;
            }
            spool.sync_journal()?;
            emit(done(1))
        }
    }
}

/// Makes message `id`'s deferred recipients due at `now_ms`.
fn retry_now(spool: &mut Spool, id: SpoolId, now_ms: u64) -> io::Result<()> {
    let updates: Vec<(usize, RecipientState)> = match spool.get(id) {
        None => return Ok(()),
        Some(listed) => listed
            .recipients
            .iter()
            .enumerate()
            .filter_map(|(index, state)| match state {
                RecipientState::Deferred {
                    attempts,
                    last_reply,
                    ..
                } => Some((
                    index,
                    RecipientState::Deferred {
                        attempts: *attempts,
                        next_attempt_unix_ms: now_ms,
                        last_reply: last_reply.clone(),
                    },
                )),
                _ => None,
            })
            .collect(),
    };
    for (index, state) in updates {
        spool.set_recipient_state(id, index, state)?;
    }
    Ok(())
}
