//! Listing per-test mailboxes: a page newest first by creation, filtered by label or by text
//! in the label, id or route ([`MailboxFilter`]); the same filter picks the mailboxes a bulk
//! delete ends.
//!
//! What it does not do: end mailboxes (the store does, [`super::Mailboxes::end`]), or JSON.

use super::{info, Live, MailboxId, MailboxInfo, Mailboxes, Route};

impl Mailboxes {
    /// The live mailboxes matching `filter`, newest first, created before the one numbered
    /// `before` (its [`MailboxPage::next`]), at most `limit`.
    pub(in crate::capture) fn page(
        &self,
        before: Option<u64>,
        limit: usize,
        filter: &MailboxFilter,
    ) -> MailboxPage {
        let mut items = Vec::with_capacity(limit.min(512));
        let mut next = None;
        let matching = self
            .order
            .range(..before.unwrap_or(u64::MAX))
            .rev()
            .filter_map(|(serial, id)| self.live.get(id).map(|live| (*serial, id, live)))
            .filter(|(_, id, live)| filter.admits(id, live));
        for (serial, id, live) in matching {
            if items.len() == limit {
                next = items.last().map(|(s, _): &(u64, MailboxInfo)| *s);
                break;
            }
            items.push((serial, info(*id, live)));
        }
        let total = if filter.is_all() {
            self.live.len()
        } else {
            self.live
                .iter()
                .filter(|(id, live)| filter.admits(id, live))
                .count()
        };
        MailboxPage {
            items: items.into_iter().map(|(_, info)| info).collect(),
            next,
            total,
        }
    }

    /// The ids of the live mailboxes matching `filter`.
    pub(in crate::capture) fn matching(&self, filter: &MailboxFilter) -> Vec<MailboxId> {
        self.live
            .iter()
            .filter(|(id, live)| filter.admits(id, live))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Which live mailboxes a listing or a bulk delete means (every field given must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxFilter {
    /// The label is exactly this.
    pub label: Option<String>,
    /// The label, the id or the route's text (address, domain, user, header value) contains
    /// this, ASCII case-insensitively.
    pub contains: Option<String>,
}

impl MailboxFilter {
    /// Whether it admits every mailbox.
    pub fn is_all(&self) -> bool {
        self.label.is_none() && self.contains.is_none()
    }

    /// Whether mailbox `id` is admitted.
    fn admits(&self, id: &MailboxId, live: &Live) -> bool {
        if self.label.as_ref().is_some_and(|l| *l != live.label) {
            return false;
        }
        let Some(needle) = &self.contains else {
            return true;
        };
        let needle = needle.as_bytes();
        let route: &[u8] = match &live.route {
            Route::PlusTag(_) => b"",
            Route::Recipient(t) | Route::Domain(t) | Route::AuthUser(t) => t,
            Route::Header { value, .. } => value,
        };
        [live.label.as_bytes(), id.as_str().as_bytes(), route]
            .iter()
            .any(|hay| contains_ignoring_case(hay, needle))
    }
}

/// Whether `needle` occurs in `hay`, ASCII case-insensitively.
fn contains_ignoring_case(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// A page of live mailboxes, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxPage {
    /// The mailboxes.
    pub items: Vec<MailboxInfo>,
    /// The cursor of the next (older) page: the creation number of the last one here;
    /// `None` when no more match.
    pub next: Option<u64>,
    /// How many live mailboxes match in all.
    pub total: usize,
}
