//! Fault plans: the rules given at start, a server-wide set that can be replaced while the
//! server runs, and plans scoped to part of the mail (a mailbox), each with rules of its own.
//!
//! What it does: keep three kinds of rule sets and let the runtime set and the scoped plans
//! be replaced at any time ([`Plans::set_runtime`], [`Plans::set_scoped`]), each change
//! published as a new immutable snapshot ([`Live`]) and a new generation number. A session's
//! [`super::FaultGate`] reads the generation (one atomic load) at each checkpoint, and takes
//! the new snapshot (a read lock and an `Arc` clone) only when it changed: with no runtime
//! rule and no scoped plan, a gate costs what it cost before any of this existed.
//!
//! The order of evaluation at a checkpoint: the scoped plans, in the order they were
//! created (a plan replaced keeps its place), then the runtime set, then the startup rules;
//! the first rule that fires wins. A scoped plan applies at `rcpt` when its [`Scope`] covers
//! the recipient being given, and at `data`, `eod` and `bdat` when it covers any recipient
//! accepted so far; a rule at another point (`connect`, `helo`, `ehlo`, `mail`, `rset`,
//! `noop`, `quit`) is refused for a scoped plan, since which mailbox the mail is for is not
//! known there.
//!
//! Counters (`nth=`, `every=`) and limiters (`rate=`, `greylist=`) belong to a rule set:
//! replacing a set (even with the same texts) starts them afresh, and a set that is not
//! replaced keeps them.
//!
//! Bounds (bad input gets an error, never unbounded memory): at most [`MAX_SCOPED_PLANS`]
//! scoped plans, [`MAX_RULES_PER_SET`] rules in a runtime set or a plan, each rule text at
//! most [`MAX_RULE_TEXT`] octets. The startup rules are the operator's and keep their own
//! bounds (`--fault-file` size).
//!
//! What it does not do: know what a mailbox is (a [`Scope`] says whether it covers a
//! recipient), read rules from HTTP (the API does, and hands texts here), or carry an action
//! out (the gate and the session do).

use super::file::shown;
use super::rule::Rule;
use super::{point_bit, FaultAction, FaultContext, FaultRules};
use crate::lock::{read, write};
use crate::proto::gate::Checkpoint;
use std::fmt::{self, Debug};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Most scoped plans at once.
pub const MAX_SCOPED_PLANS: usize = 10_000;
/// Most rules in a runtime set or a scoped plan.
pub const MAX_RULES_PER_SET: usize = 1_000;
/// Longest rule text, in octets.
pub const MAX_RULE_TEXT: usize = 1024;

/// Which mail a scoped plan is about: a mailbox's route, seen from the fault engine.
pub trait Scope: Send + Sync + Debug {
    /// Whether mail to `recipient` (a path as the client gave it), from a client that
    /// authenticated as `auth_user` (if it did), is this scope's.
    fn covers(&self, recipient: &[u8], auth_user: Option<&[u8]>) -> bool;
}

/// Why a rule set was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// Rule number `index` (from 0, in the order given) does not parse or is not allowed
    /// there; the message names it and says why.
    Rule {
        /// Its place in the list.
        index: usize,
        /// `rules[i] "TEXT": why`.
        message: String,
    },
    /// Too many rules, or too many scoped plans.
    TooMany(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Rule { message, .. } | PlanError::TooMany(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for PlanError {}

/// Every fault rule set of the server, shared by every connection's gate and by the API.
#[derive(Debug, Default)]
pub struct Plans {
    /// `--fault` and `--fault-file`, parsed at start; never replaced.
    startup: Arc<FaultRules>,
    /// The runtime set and the scoped plans (`None` while there are none).
    live: RwLock<Option<Arc<Live>>>,
    /// Bumped (while `live` is write-locked, after it is replaced) at every change: a gate
    /// that saw this number holds the snapshot of that change or a later one.
    generation: AtomicU64,
    /// Times a scoped plan's rule fired, all plans together, since start (kept here, not in
    /// the plans, so that it never goes back when a plan is replaced or removed).
    scoped_fired: Arc<AtomicU64>,
}

/// One snapshot of the rules that can change: the scoped plans in creation order, then the
/// runtime set. Never changed once published; a change makes another.
#[derive(Debug, Default)]
pub struct Live {
    /// The scoped plans, in creation order.
    scoped: Vec<ScopedPlan>,
    /// The server-wide runtime rules.
    runtime: Arc<FaultRules>,
    /// The number of each scoped plan's first rule, counting the plans' rules in order
    /// (the runtime set's first rule is number `rules`).
    firsts: Vec<usize>,
    /// How many rules the scoped plans have together.
    rules: usize,
    /// The points some scoped plan's rule names ([`FaultRules::points`]'s bits), so that a
    /// command no plan watches costs one test, not one per plan.
    scoped_points: u16,
    /// [`Plans`]'s count of scoped rules fired, shared by every snapshot.
    scoped_fired: Arc<AtomicU64>,
}

/// A scoped plan.
#[derive(Debug, Clone)]
struct ScopedPlan {
    /// The key it was set under (a mailbox id).
    key: Arc<str>,
    /// Which mail it applies to.
    scope: Arc<dyn Scope>,
    /// Its rules.
    rules: Arc<FaultRules>,
}

impl Plans {
    /// Plans with `startup` as the startup rules, and nothing else yet.
    pub fn new(startup: FaultRules) -> Plans {
        Plans {
            startup: Arc::new(startup),
            ..Plans::default()
        }
    }

    /// The startup rules (`--fault`, `--fault-file`).
    pub fn startup(&self) -> &Arc<FaultRules> {
        &self.startup
    }

    /// The number of the last change (0: none yet). A gate compares it with the one it saw.
    #[inline]
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot of the runtime set and scoped plans, `None` while there are none.
    pub(super) fn live(&self) -> Option<Arc<Live>> {
        read(&self.live).clone()
    }

    /// The runtime rules as given, in order.
    pub fn runtime(&self) -> Vec<String> {
        self.live()
            .map_or_else(Vec::new, |live| live.runtime.texts())
    }

    /// Replaces the runtime set with `texts` (the `--fault` syntax, in order; none clears
    /// it). Its counters and limiters start afresh. On an error nothing changed.
    pub fn set_runtime(&self, texts: &[String]) -> Result<(), PlanError> {
        let rules = self.parse(texts, false)?;
        self.change(|live| live.runtime = Arc::new(rules));
        Ok(())
    }

    /// Clears the runtime set.
    pub fn clear_runtime(&self) {
        self.change(|live| live.runtime = Arc::default());
    }

    /// Gives the mail `scope` covers the plan `texts`, under `key`: a plan already under
    /// `key` is replaced (its place in the order kept, its counters started afresh), else
    /// the plan is added after the others. Rules at points where the mailbox is not known
    /// yet are refused ([`PlanError::Rule`]), as is a plan past [`MAX_SCOPED_PLANS`]; on an
    /// error nothing changed.
    pub fn set_scoped(
        &self,
        key: &str,
        scope: Arc<dyn Scope>,
        texts: &[String],
    ) -> Result<(), PlanError> {
        let rules = Arc::new(self.parse(texts, true)?);
        let mut refused = None;
        self.change(|live| {
            let plan = ScopedPlan {
                key: key.into(),
                scope,
                rules,
            };
            match live.scoped.iter().position(|p| &*p.key == key) {
                Some(old) => live.scoped[old] = plan,
                None if live.scoped.len() >= MAX_SCOPED_PLANS => {
                    refused = Some(PlanError::TooMany(format!(
                        "at most {MAX_SCOPED_PLANS} scoped fault plans at once"
                    )));
                }
                None => live.scoped.push(plan),
            }
        });
        refused.map_or(Ok(()), Err)
    }

    /// Removes the plan under `key`; false if there was none.
    pub fn clear_scoped(&self, key: &str) -> bool {
        let mut found = false;
        self.change(|live| {
            let before = live.scoped.len();
            live.scoped.retain(|p| &*p.key != key);
            found = live.scoped.len() != before;
        });
        found
    }

    /// The rules of the plan under `key`, as given, if there is one.
    pub fn scoped(&self, key: &str) -> Option<Vec<String>> {
        let live = self.live()?;
        let plan = live.scoped.iter().find(|p| &*p.key == key)?;
        Some(plan.rules.texts())
    }

    /// The keys of the scoped plans, in order (empty while there are none).
    pub fn scoped_keys(&self) -> Vec<String> {
        self.live().map_or_else(Vec::new, |live| {
            live.scoped.iter().map(|p| p.key.to_string()).collect()
        })
    }

    /// `(rule text, times fired)` for the runtime set's rules (the set in force: a replaced
    /// set's counts go with it).
    pub fn runtime_fired(&self) -> Vec<(String, u64)> {
        self.live()
            .map_or_else(Vec::new, |live| live.runtime.fired())
    }

    /// How many times a scoped plan's rule fired, all plans together, since start (it never
    /// goes back: replacing or removing a plan keeps what its rules counted).
    pub fn scoped_fired(&self) -> u64 {
        self.scoped_fired.load(Ordering::Relaxed)
    }

    /// How many scoped plans there are.
    pub fn scoped_count(&self) -> usize {
        self.live().map_or(0, |live| live.scoped.len())
    }

    /// `(rule text, times fired)` for the startup rules, then the runtime ones, for reports
    /// (scoped plans are left out: there may be thousands).
    pub fn fired(&self) -> Vec<(String, u64)> {
        let mut fired = self.startup.fired();
        if let Some(live) = self.live() {
            fired.extend(live.runtime.fired());
        }
        fired
    }

    /// Parses a runtime set or a scoped plan within the bounds; for a plan (`scoped`), only
    /// rules at points where the recipients are known.
    fn parse(&self, texts: &[String], scoped: bool) -> Result<FaultRules, PlanError> {
        if texts.len() > MAX_RULES_PER_SET {
            return Err(PlanError::TooMany(format!(
                "{} rules: at most {MAX_RULES_PER_SET} in a set",
                texts.len()
            )));
        }
        let mut rules = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let refused = |why: &str| PlanError::Rule {
                index,
                message: format!("rules[{index}] {:?}: {why}", shown(text)),
            };
            if text.len() > MAX_RULE_TEXT {
                return Err(refused(&format!(
                    "{} octets, more than the {MAX_RULE_TEXT} a rule may have",
                    text.len()
                )));
            }
            let rule = Rule::parse(text).map_err(|why| refused(&why))?;
            if scoped && !knows_recipients(rule.point) {
                return Err(refused(
                    "a mailbox's plan applies only at rcpt, data, eod and bdat: the mailbox \
                     is not known before the recipients are",
                ));
            }
            rules.push(rule);
        }
        Ok(FaultRules::new(rules, self.startup.seed))
    }

    /// Publishes a snapshot made from the current one by `edit`, under the write lock (so
    /// changes never lose one another), then the next generation.
    fn change(&self, edit: impl FnOnce(&mut Live)) {
        let mut slot = write(&self.live);
        let mut live = slot.as_deref().map_or_else(Live::default, Live::copy);
        edit(&mut live);
        live.scoped_fired = Arc::clone(&self.scoped_fired);
        live.number();
        *slot = (!live.is_empty()).then(|| Arc::new(live));
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// Whether the recipients are known at `point`, so that a scope can be asked.
fn knows_recipients(point: Checkpoint) -> bool {
    matches!(
        point,
        Checkpoint::Rcpt | Checkpoint::Data | Checkpoint::EndOfData | Checkpoint::Bdat
    )
}

impl Live {
    /// Another snapshot sharing every set with this one (their counters go on).
    fn copy(&self) -> Live {
        Live {
            scoped: self.scoped.clone(),
            runtime: Arc::clone(&self.runtime),
            ..Live::default()
        }
    }

    /// Numbers the scoped plans' rules ([`Live::firsts`]).
    fn number(&mut self) {
        self.firsts.clear();
        self.rules = 0;
        self.scoped_points = 0;
        for plan in &self.scoped {
            self.firsts.push(self.rules);
            self.rules += plan.rules.len();
            self.scoped_points |= plan.rules.points;
        }
    }

    /// Whether it holds no rule at all.
    fn is_empty(&self) -> bool {
        self.rules == 0 && self.runtime.is_empty()
    }

    /// Whether any of its rules applies at `point`.
    pub(super) fn watches(&self, point: Checkpoint) -> bool {
        self.runtime.watches(point) || self.scoped_points & point_bit(point) != 0
    }

    /// Decides for one occurrence of `point`: the scoped plans whose scope covers the mail,
    /// in order, then the runtime set. Returns the number of the rule that fired (counting
    /// the scoped plans' rules, then the runtime set's) and its action.
    pub(super) fn decide(
        &self,
        point: Checkpoint,
        context: &FaultContext<'_>,
        auth_user: Option<&[u8]>,
    ) -> Option<(usize, FaultAction<'_>)> {
        if knows_recipients(point) {
            for (plan, first) in self.scoped.iter().zip(&self.firsts) {
                if !plan.rules.watches(point) || !covers(plan, point, context, auth_user) {
                    continue;
                }
                if let Some((n, action)) = plan.rules.decide_rule(point, context) {
                    self.scoped_fired.fetch_add(1, Ordering::Relaxed);
                    return Some((first + n, action));
                }
            }
        }
        let (n, action) = self.runtime.decide_rule(point, context)?;
        Some((self.rules + n, action))
    }

    /// The reply text of rule number `n` ([`Live::decide`]'s numbering).
    pub(super) fn reply_text(&self, n: usize) -> &[u8] {
        if n >= self.rules {
            return self.runtime.reply_text(n - self.rules);
        }
        let plan = self.firsts.partition_point(|first| *first <= n) - 1;
        self.scoped[plan].rules.reply_text(n - self.firsts[plan])
    }
}

/// Whether `plan`'s scope covers the mail at `point`: the recipient being given at `rcpt`,
/// any accepted one later.
fn covers(
    plan: &ScopedPlan,
    point: Checkpoint,
    context: &FaultContext<'_>,
    auth_user: Option<&[u8]>,
) -> bool {
    if point == Checkpoint::Rcpt {
        return plan.scope.covers(context.recipient, auth_user);
    }
    context
        .accepted
        .iter()
        .any(|recipient| plan.scope.covers(recipient, auth_user))
}

#[cfg(test)]
mod tests;
