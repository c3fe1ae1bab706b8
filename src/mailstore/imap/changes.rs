//! What changed in the open folder since earlier tokens: CONDSTORE/QRESYNC where offered, a
//! flag rescan otherwise.
//!
//! - Tokens equal to the earlier ones with a HIGHESTMODSEQ: nothing changed, no command.
//! - New messages: `UID FETCH u0:* (UID FLAGS INTERNALDATE RFC822.SIZE)`, only when UIDNEXT
//!   moved, responses below u0 dropped.
//! - Old messages with QRESYNC enabled: `UID FETCH 1:u0-1 (UID FLAGS) (CHANGEDSINCE m0
//!   VANISHED)`: changed flags plus exactly the UIDs expunged since m0.
//! - With CONDSTORE only: the same without VANISHED; whether old messages are gone is decided by
//!   counting (MESSAGES - new == what the caller knows), and only a mismatch costs a
//!   `UID SEARCH UID 1:u0-1` (the old UIDs present).
//! - Without CONDSTORE (or in a `[NOMODSEQ]` folder): every old message's flags with one
//!   `UID FETCH 1:u0-1 (UID FLAGS)`, which also says which are gone.
//!
//! The commands are pipelined: one round trip however many are needed. Sequence numbers are
//! never used as identities: every FETCH asks for UID and responses without one are dropped.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use imap_proto::{AttributeValue, MailboxDatum, Response};

use super::connection::{Completion, Ctx, ImapResponse, Part};
use super::fetch::parse_meta;
use super::ImapStore;
use crate::mailstore::{FolderChanges, FolderTokens, Gone, StoreError};
use crate::model::FlagSet;

/// What the old-message part of a change listing asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OldQuery {
    /// Nothing to ask: no old message, or nothing changed.
    None,
    /// CHANGEDSINCE with VANISHED (QRESYNC enabled).
    Vanished(u64),
    /// CHANGEDSINCE; gone messages by counting, then SEARCH.
    ChangedSince(u64),
    /// Every old message's flags.
    Rescan,
}

impl ImapStore {
    pub(super) async fn changes_since(
        &mut self,
        since: &FolderTokens,
        old_known: u32,
    ) -> Result<FolderChanges, StoreError> {
        self.selected_name("UID FETCH")?;
        let display = self.selected_display();
        let Some(now) = self.selected_tokens else {
            return Err(self.conn.protocol_error(
                Ctx::on("UID FETCH", &display),
                "no folder tokens (a mailreplica bug)".into(),
            ));
        };
        if now.uidvalidity != since.uidvalidity {
            return Err(self.conn.protocol_error(
                Ctx::on("UID FETCH", &display),
                format!(
                    "changes asked since UIDVALIDITY {} but the folder has {} (a mailreplica bug)",
                    since.uidvalidity, now.uidvalidity
                ),
            ));
        }
        if now.proves_unchanged(since) {
            return Ok(FolderChanges::default());
        }
        let u0 = since.uidnext.max(1);
        let old = match (since.highest_modseq, now.highest_modseq) {
            _ if u0 <= 1 => OldQuery::None,
            (Some(m0), Some(m1)) if self.caps.condstore => {
                if m1 == m0 {
                    OldQuery::None
                } else if self.qresync_enabled {
                    OldQuery::Vanished(m0)
                } else {
                    OldQuery::ChangedSince(m0)
                }
            }
            _ => OldQuery::Rescan,
        };
        let want_new = now.uidnext == 0 || now.uidnext > u0;

        let ctx = Ctx::on("UID FETCH", &display);
        let new_cmd = format!("UID FETCH {u0}:* (UID FLAGS INTERNALDATE RFC822.SIZE)");
        let old_cmd = match old {
            OldQuery::None => None,
            OldQuery::Vanished(m0) => Some(format!(
                "UID FETCH 1:{} (UID FLAGS) (CHANGEDSINCE {m0} VANISHED)",
                u0 - 1
            )),
            OldQuery::ChangedSince(m0) => Some(format!(
                "UID FETCH 1:{} (UID FLAGS) (CHANGEDSINCE {m0})",
                u0 - 1
            )),
            OldQuery::Rescan => Some(format!("UID FETCH 1:{} (UID FLAGS)", u0 - 1)),
        };
        // Pipelined: both commands go out before either answer is read.
        let old_tag = match &old_cmd {
            Some(cmd) => Some(self.conn.send(&[Part::Text(cmd)], ctx).await?),
            None => None,
        };
        let new_tag = if want_new {
            Some(self.conn.send(&[Part::Text(&new_cmd)], ctx).await?)
        } else {
            None
        };
        let old_done = match &old_tag {
            Some(tag) => Some(self.conn.finish(tag, ctx).await),
            None => None,
        };
        let new_done = match &new_tag {
            Some(tag) => Some(self.conn.finish(tag, ctx).await),
            None => None,
        };
        let old_done = old_done.transpose()?;
        let new_done = new_done.transpose()?;

        let mut changes = FolderChanges::default();
        let mut vanished: Vec<RangeInclusive<u32>> = Vec::new();
        let mut flags: BTreeMap<u32, FlagSet> = BTreeMap::new();
        // A server may run pipelined FETCHes together (Dovecot does): untagged responses are
        // told apart by what they carry and by UID, never by which completion they came with.
        let untagged: Vec<&ImapResponse> = [&old_done, &new_done]
            .into_iter()
            .flatten()
            .flat_map(|done| done.untagged.iter())
            .collect();
        collect_flags_and_vanished(untagged.iter().copied(), &mut flags, &mut vanished);
        if want_new {
            changes.new = parse_meta(untagged.iter().copied(), u0);
        }
        // A flag change seen in either answer counts for old messages only; a new message's
        // flags are in its full response.
        changes.flags = flags.into_iter().filter(|(uid, _)| *uid < u0).collect();
        changes.gone = match (old, &old_done) {
            // The rescan returned every old message still there (sorted: from a BTreeMap).
            (OldQuery::Rescan, Some(_)) => Gone::AllBut(
                changes
                    .flags
                    .iter()
                    .map(|(uid, _)| *uid)
                    .filter(|u| !vanished.iter().any(|r| r.contains(u)))
                    .collect(),
            ),
            (OldQuery::ChangedSince(_), _) => {
                let old_now = now.messages.saturating_sub(changes.new.len() as u32);
                if old_now == old_known && vanished.is_empty() {
                    Gone::Ranges(Vec::new())
                } else {
                    let cmd = format!("UID SEARCH UID 1:{}", u0 - 1);
                    let done = self
                        .conn
                        .run_text(&cmd, Ctx::on("UID SEARCH", &display))
                        .await?;
                    Gone::AllBut(searched_uids(&done, u0))
                }
            }
            _ => Gone::Ranges(vanished),
        };
        // A message that came and went since the last pass is not new.
        if let FolderChanges {
            new,
            gone: gone @ Gone::Ranges(_),
            ..
        } = &mut changes
        {
            new.retain(|m| !gone.removes(m.uid));
        }
        Ok(changes)
    }
}

/// Flags of FETCH responses that carry a UID, and the UIDs of every VANISHED response (EARLIER
/// or unsolicited).
fn collect_flags_and_vanished<'a>(
    untagged: impl IntoIterator<Item = &'a ImapResponse>,
    flags: &mut BTreeMap<u32, FlagSet>,
    vanished: &mut Vec<RangeInclusive<u32>>,
) {
    for r in untagged {
        match r.parsed() {
            Response::Fetch(_, attrs) => {
                let mut uid = None;
                let mut f = None;
                for a in attrs {
                    match a {
                        AttributeValue::Uid(u) => uid = Some(*u),
                        AttributeValue::Flags(x) => {
                            f = Some(FlagSet::from_raw(x.iter().map(|s| s.as_ref())))
                        }
                        _ => {}
                    }
                }
                if let (Some(uid), Some(f)) = (uid, f) {
                    flags.insert(uid, f);
                }
            }
            // Kept as ranges: they may cover huge spans of UIDs never seen.
            Response::Vanished { uids, .. } => vanished.extend(uids.iter().cloned()),
            _ => {}
        }
    }
}

/// UIDs below `u0` from a `UID SEARCH` answer.
fn searched_uids(done: &Completion, u0: u32) -> Vec<u32> {
    let mut uids: Vec<u32> = done
        .untagged
        .iter()
        .filter_map(|r| match r.parsed() {
            Response::MailboxData(MailboxDatum::Search(found)) => Some(found.clone()),
            _ => None,
        })
        .flatten()
        .filter(|u| *u < u0)
        .collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}
