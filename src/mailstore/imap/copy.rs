//! UID COPY and UID MOVE into another folder of the same account, the new UIDs read from
//! COPYUID (UIDPLUS).

use std::collections::HashMap;

use imap_proto::rfc4315::UidSetMember;
use imap_proto::{Outcome, Response, ResponseCode, Status};

use super::connection::{Completion, Ctx};
use super::list::quote_mailbox;
use super::ImapStore;
use crate::mailstore::{uid_set, StoreError};
use crate::model::FolderPath;

impl ImapStore {
    /// Copies UIDs of the open folder to `to` in one `UID COPY`. Each source UID is paired with
    /// the UID the server gave its copy, when the server said (COPYUID); UIDs the server did not
    /// copy (expunged meanwhile) and every UID on a server without UIDPLUS get `None`.
    pub(super) async fn copy_uids(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        self.transfer("UID COPY", uids, to).await
    }

    /// `UID COPY` or `UID MOVE` of `uids` to `to`, each UID paired with its copy's from COPYUID.
    async fn transfer(
        &mut self,
        verb: &str,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        self.selected_name(verb)?;
        let wire = self.wire_name(to)?;
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let display = to.to_string();
        let cmd = format!("{verb} {} {}", uid_set(uids), quote_mailbox(&wire));
        let done = self.conn.run_text(&cmd, Ctx::on(verb, &display)).await?;
        Ok(match copy_uid(&done) {
            Some((src, dst)) => map_copied(uids, src, dst),
            None => uids.iter().map(|u| (*u, None)).collect(),
        })
    }
}

impl ImapStore {
    /// Moves UIDs of the open folder to `to` with one `UID MOVE` (RFC 6851); the new UIDs come
    /// from the COPYUID the server sends before its expunge responses. Without MOVE: UID COPY,
    /// then only the copied UIDs are removed (never a UID whose copy is not confirmed, when
    /// the server says which were copied).
    pub(super) async fn move_uids(
        &mut self,
        uids: &[u32],
        to: &FolderPath,
    ) -> Result<Vec<(u32, Option<u32>)>, StoreError> {
        if !self.caps.move_ {
            let copied = self.copy_uids(uids, to).await?;
            let done: Vec<u32> = if self.caps.uidplus {
                copied
                    .iter()
                    .filter(|(_, new)| new.is_some())
                    .map(|(uid, _)| *uid)
                    .collect()
            } else {
                uids.to_vec()
            };
            self.expunge_uids(&done).await?;
            return Ok(copied);
        }
        self.transfer("UID MOVE", uids, to).await
    }
}

/// The source and destination sets of the COPYUID code: in the tagged OK, or (as some servers
/// send it, and async-imap's parser then leaves it) in an untagged `* OK [COPYUID ...]`.
fn copy_uid(done: &Completion) -> Option<(&[UidSetMember], &[UidSetMember])> {
    if let Some(ResponseCode::CopyUid(_, src, dst)) = done.code() {
        return Some((src, dst));
    }
    done.untagged.iter().find_map(|r| match r.parsed() {
        Response::Data {
            status: Status::Ok,
            outcome:
                Outcome {
                    code: Some(ResponseCode::CopyUid(_, src, dst)),
                    ..
                },
        } => Some((src.as_slice(), dst.as_slice())),
        _ => None,
    })
}

/// Pairs each requested UID (in input order) with its copy's UID. Per RFC 4315 the n-th UID of
/// the source set was copied to the n-th UID of the destination set. A UID absent from the
/// source set, or without a counterpart because the sets differ in length, gets `None`; so do
/// all of them when a set holds more UIDs than were asked for (a bogus answer, never expanded).
pub(crate) fn map_copied(
    uids: &[u32],
    src: &[UidSetMember],
    dst: &[UidSetMember],
) -> Vec<(u32, Option<u32>)> {
    let limit = uids.len();
    let pairs: HashMap<u32, u32> = match (expand(src, limit), expand(dst, limit)) {
        (Some(src), Some(dst)) => src
            .into_iter()
            .zip(dst)
            .filter(|(s, d)| *s != 0 && *d != 0)
            .collect(),
        _ => HashMap::new(),
    };
    uids.iter().map(|u| (*u, pairs.get(u).copied())).collect()
}

/// The UIDs of a set in its order, ranges ascending; `None` when there are more than `limit`.
fn expand(set: &[UidSetMember], limit: usize) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for member in set {
        let (start, end) = match member {
            UidSetMember::Uid(u) => (*u, *u),
            UidSetMember::UidRange(r) => (*r.start(), *r.end()),
        };
        let count = u64::from(end.saturating_sub(start)) + 1;
        if out.len() as u64 + count > limit as u64 {
            return None;
        }
        out.extend(start..=end);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> Vec<UidSetMember> {
        text.split(',')
            .map(|m| match m.split_once(':') {
                Some((a, b)) => {
                    let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
                    UidSetMember::UidRange(a.min(b)..=a.max(b))
                }
                None => UidSetMember::Uid(m.parse().unwrap()),
            })
            .collect()
    }

    #[test]
    fn ranges_expand_and_pair_in_order() {
        let got = map_copied(&[7, 1, 2, 3], &set("1:3,7"), &set("10:13"));
        assert_eq!(
            got,
            [(7, Some(13)), (1, Some(10)), (2, Some(11)), (3, Some(12))]
        );
        let got = map_copied(&[4, 9], &set("4,9"), &set("20,22"));
        assert_eq!(got, [(4, Some(20)), (9, Some(22))]);
    }

    #[test]
    fn uids_not_copied_map_to_none() {
        // 5 was expunged before the COPY: absent from the source set.
        let got = map_copied(&[4, 5, 6], &set("4,6"), &set("30:31"));
        assert_eq!(got, [(4, Some(30)), (5, None), (6, Some(31))]);
    }

    #[test]
    fn mismatched_lengths_leave_the_unmatched_ones_none() {
        let got = map_copied(&[1, 2, 3, 7], &set("1:3,7"), &set("10:12"));
        assert_eq!(
            got,
            [(1, Some(10)), (2, Some(11)), (3, Some(12)), (7, None)]
        );
        let got = map_copied(&[1, 2], &set("1"), &set("10:11"));
        assert_eq!(got, [(1, Some(10)), (2, None)]);
    }

    #[test]
    fn oversized_sets_are_not_expanded() {
        let got = map_copied(&[1, 2], &set("1:4294967295"), &set("1:2"));
        assert_eq!(got, [(1, None), (2, None)]);
        let got = map_copied(&[1, 2], &set("1:2"), &set("1:4294967295"));
        assert_eq!(got, [(1, None), (2, None)]);
        assert_eq!(expand(&set("3:5"), 3), Some(vec![3, 4, 5]));
        assert_eq!(expand(&set("3:5"), 2), None);
    }

    #[test]
    fn duplicate_requests_get_the_same_copy() {
        let got = map_copied(&[2, 2], &set("2"), &set("8"));
        assert_eq!(got, [(2, Some(8)), (2, Some(8))]);
    }
}
