//! The removal budget: which removals a pass applies and which it holds for the user.
//!
//! A primary that fails in a way that reads as "everything was deleted" must not wipe the
//! recovery copy. The rules, in the order they are checked, one sentence each:
//!
//! 1. With `--allow-deletions` every removal is applied.
//! 2. A removal the user released (`mailreplica release`) is applied.
//! 3. A removal held by an earlier pass stays held: only the user releases it, never a later pass.
//! 4. Removals in `\Trash` and `\Junk` are applied: they have their own, unlimited, budget.
//! 5. A folder of 10 or more messages that the source now shows empty has its removals held.
//! 6. The other removals of the pass are applied only if, added to those applied in the last
//!    24 hours, they stay within `max(50, 5 % of the account)`; otherwise all of them are held.
//!
//! Held removals stay in the base and on the target; everything else in the pass goes on.

use std::collections::HashSet;
use std::fmt;

use super::plan::Removal;
use crate::model::FolderPath;

/// A folder's candidate removals, as planned.
#[derive(Debug, Clone)]
pub struct FolderRemovals {
    pub folder: FolderPath,
    /// `\Trash` or `\Junk`: budgeted apart.
    pub exempt: bool,
    /// Base instances of the folder before the pass.
    pub base_count: usize,
    /// Messages the source shows in the folder now.
    pub source_count: usize,
    pub removals: Vec<Removal>,
}

/// Everything the decision needs besides the candidates.
#[derive(Debug, Clone, Default)]
pub struct BudgetContext {
    /// Base instances of the whole account.
    pub account_size: usize,
    /// Removals applied in the last 24 hours (exempt folders not counted).
    pub removed_in_window: u64,
    /// (folder, source UID) held by earlier passes and not released.
    pub held: HashSet<(String, u32)>,
    /// (folder, source UID) held earlier and released by the user.
    pub released: HashSet<(String, u32)>,
    pub allow_deletions: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldReason {
    StillHeld,
    FolderEmptied { messages: usize },
    Budget { budget: u64, would_be: u64 },
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldReason::StillHeld => f.write_str("held by an earlier pass"),
            HoldReason::FolderEmptied { messages } => {
                write!(
                    f,
                    "the folder of {messages} messages reads empty on the source"
                )
            }
            HoldReason::Budget { budget, would_be } => write!(
                f,
                "{would_be} removals in 24 h would exceed the budget of {budget}"
            ),
        }
    }
}

/// What a pass does with its removals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub apply: Vec<(FolderPath, Vec<Removal>)>,
    pub hold: Vec<(FolderPath, Vec<Removal>, HoldReason)>,
}

impl Decision {
    pub fn held_count(&self) -> usize {
        self.hold.iter().map(|(_, r, _)| r.len()).sum()
    }
    pub fn applied_count(&self) -> usize {
        self.apply.iter().map(|(_, r)| r.len()).sum()
    }
}

/// The budget for an account of `account_size` messages.
pub fn budget(account_size: usize) -> u64 {
    50u64.max(account_size as u64 / 20)
}

/// Decides, for every candidate removal of a pass, apply or hold. Pure and total.
pub fn decide(folders: &[FolderRemovals], ctx: &BudgetContext) -> Decision {
    let mut decision = Decision::default();
    let mut pending: Vec<(FolderPath, Vec<Removal>)> = Vec::new();
    for f in folders.iter().filter(|f| !f.removals.is_empty()) {
        let name = f.folder.to_string();
        let key = |r: &Removal| (name.clone(), r.source_uid);
        let mut apply = Vec::new();
        let mut still_held = Vec::new();
        let mut rest = Vec::new();
        for r in &f.removals {
            if ctx.allow_deletions || ctx.released.contains(&key(r)) {
                apply.push(r.clone());
            } else if ctx.held.contains(&key(r)) {
                still_held.push(r.clone());
            } else if f.exempt {
                apply.push(r.clone());
            } else {
                rest.push(r.clone());
            }
        }
        if !apply.is_empty() {
            decision.apply.push((f.folder.clone(), apply));
        }
        if !still_held.is_empty() {
            decision
                .hold
                .push((f.folder.clone(), still_held, HoldReason::StillHeld));
        }
        if rest.is_empty() {
            continue;
        }
        if f.base_count >= 10 && f.source_count == 0 {
            decision.hold.push((
                f.folder.clone(),
                rest,
                HoldReason::FolderEmptied {
                    messages: f.base_count,
                },
            ));
        } else {
            pending.push((f.folder.clone(), rest));
        }
    }
    let budget = budget(ctx.account_size);
    let would_be = ctx.removed_in_window + pending.iter().map(|(_, r)| r.len() as u64).sum::<u64>();
    if would_be > budget {
        for (folder, removals) in pending {
            decision
                .hold
                .push((folder, removals, HoldReason::Budget { budget, would_be }));
        }
    } else {
        decision.apply.extend(pending);
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(
        name: &str,
        base: usize,
        source: usize,
        removed: std::ops::Range<u32>,
        exempt: bool,
    ) -> FolderRemovals {
        FolderRemovals {
            folder: FolderPath::from_display(name),
            exempt,
            base_count: base,
            source_count: source,
            removals: removed
                .map(|u| Removal {
                    source_uid: u,
                    target_uid: u + 1000,
                })
                .collect(),
        }
    }

    fn ctx(account: usize) -> BudgetContext {
        BudgetContext {
            account_size: account,
            ..BudgetContext::default()
        }
    }

    #[test]
    fn small_removals_are_applied() {
        let d = decide(&[folder("INBOX", 100, 98, 1..3, false)], &ctx(100));
        assert_eq!((d.applied_count(), d.held_count()), (2, 0));
    }

    #[test]
    fn an_emptied_inbox_is_held_and_stays_held() {
        let d = decide(&[folder("INBOX", 200, 0, 1..201, false)], &ctx(200));
        assert_eq!((d.applied_count(), d.held_count()), (0, 200));
        assert_eq!(d.hold[0].2, HoldReason::FolderEmptied { messages: 200 });
        let mut c = ctx(200);
        c.held = (1..201).map(|u| ("INBOX".to_string(), u)).collect();
        let d = decide(&[folder("INBOX", 200, 0, 1..201, false)], &c);
        assert_eq!(d.hold[0].2, HoldReason::StillHeld);
        c.allow_deletions = true;
        assert_eq!(
            decide(&[folder("INBOX", 200, 0, 1..201, false)], &c).applied_count(),
            200
        );
    }

    #[test]
    fn ten_emptied_folders_in_one_pass_are_held() {
        let folders: Vec<FolderRemovals> = (0..10)
            .map(|i| folder(&format!("F{i}"), 40, 0, 1..41, false))
            .collect();
        assert_eq!(decide(&folders, &ctx(400)).held_count(), 400);
    }

    #[test]
    fn the_pass_that_crosses_the_rolling_budget_is_held() {
        // INBOX of 1000: budget 50; 3 % passes of 30.
        let mut c = ctx(1000);
        let first = decide(&[folder("INBOX", 1000, 970, 1..31, false)], &c);
        assert_eq!(first.applied_count(), 30);
        c.removed_in_window = 30;
        let second = decide(&[folder("INBOX", 970, 940, 31..61, false)], &c);
        assert_eq!(second.held_count(), 30);
        assert!(matches!(
            second.hold[0].2,
            HoldReason::Budget {
                budget: 50,
                would_be: 60
            }
        ));
    }

    #[test]
    fn trash_and_junk_are_budgeted_apart() {
        let d = decide(
            &[
                folder("Trash", 500, 0, 1..501, true),
                folder("INBOX", 100, 99, 1..2, false),
            ],
            &ctx(600),
        );
        assert_eq!((d.applied_count(), d.held_count()), (501, 0));
    }

    #[test]
    fn released_removals_are_applied() {
        let mut c = ctx(200);
        c.released = (1..201).map(|u| ("INBOX".to_string(), u)).collect();
        assert_eq!(
            decide(&[folder("INBOX", 200, 0, 1..201, false)], &c).applied_count(),
            200
        );
    }
}
