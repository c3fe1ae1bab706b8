//! Verify: compare two sides folder by folder, message by message (fingerprint, flags,
//! INTERNALDATE), and list every difference. Both sides are only read.
//!
//! What the pair's fidelity notes say the target cannot hold is accepted, each said once as a
//! note rather than a difference ([`Accepted`]): keywords it refuses, identical copies over its
//! limit, and, on a side that does not keep bytes, a copy that matches by the tolerant key.
//!
//! Across protocols (either side JMAP), both sides are compared through the projection of
//! DESIGN.md: a content's flags are the union over every copy of it in the account (JMAP keeps
//! one keyword set per email), lowercase; a message marked `\Deleted` is absent; copies of one content in one
//! folder count once (one email per content per mailbox); dates are instants.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::EngineError;
use crate::mailstore::{FolderInfo, MailStore, MessageMeta};
use crate::model::tolerant_key::{tolerant_key, TolerantKey};
use crate::model::{Fingerprint, Flag, FolderPath};
use crate::reconcile::gmail;

/// One difference between the sides, readable as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub folder: String,
    pub what: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub source: String,
    pub target: String,
    pub folders: u64,
    pub messages: u64,
    pub differences: Vec<Difference>,
    /// Differences the pair's fidelity notes account for (not failures).
    pub notes: Vec<Difference>,
}

/// What the pair's state says the target cannot hold, so verify accepts it.
pub struct Accepted<'a> {
    /// Keywords the target refuses: left out of every comparison.
    pub ignored: &'a dyn Fn(&Flag) -> bool,
    /// The target does not keep bytes (its fidelity class is not `exact`): a source message
    /// missing by fingerprint is matched by the tolerant key.
    pub tolerant: bool,
    /// Per (folder, fingerprint): copies the target refused as over its identical-message limit.
    pub capped: BTreeMap<(String, Fingerprint), u32>,
    /// Folders only on the target are differences (`verify --strict`); otherwise notes (one-way
    /// modes leave them alone, e.g. the folders Cyrus creates for every account).
    pub strict: bool,
    /// The source is Gmail, copied with `migrate --preset gmail`: its views are not compared,
    /// and its All Mail only for the messages no other folder holds (see reconcile/gmail.rs).
    pub gmail: bool,
}

impl Accepted<'_> {
    pub fn nothing() -> Accepted<'static> {
        Accepted {
            ignored: &|_| false,
            tolerant: false,
            capped: BTreeMap::new(),
            strict: true,
            gmail: false,
        }
    }
}

/// A message's identity for comparison: content and INTERNALDATE instant.
type Key = (Fingerprint, i64);

/// Compares every selectable folder of both sides. Bodies are fetched in batches of at most
/// `batch_bytes` and only hashed, never kept.
pub async fn verify<S: MailStore, T: MailStore>(
    source: &mut S,
    target: &mut T,
    batch_bytes: u64,
) -> Result<VerifyReport, EngineError> {
    verify_with(source, target, batch_bytes, &Accepted::nothing()).await
}

/// Like [`verify`], accepting what the pair's fidelity notes account for.
pub async fn verify_with<S: MailStore, T: MailStore>(
    source: &mut S,
    target: &mut T,
    batch_bytes: u64,
    accepted: &Accepted<'_>,
) -> Result<VerifyReport, EngineError> {
    let ignored = accepted.ignored;
    let mut report = VerifyReport {
        source: source.endpoint().to_string(),
        target: target.endpoint().to_string(),
        ..Default::default()
    };
    let mut src_list = source.list_folders().await?;
    let tgt_list = target.list_folders().await?;
    // Gmail: views (and `[Gmail]` itself) are not copied; All Mail is compared last, against
    // what the other folders hold.
    let mut views: BTreeSet<FolderPath> = BTreeSet::new();
    let mut all_mail: Option<FolderPath> = None;
    if accepted.gmail {
        gmail::annotate(&mut src_list);
        for f in &src_list {
            if gmail::is_view(f.special_use.as_deref()) || gmail::is_container(&f.path) {
                views.insert(f.path.clone());
            } else if f.special_use.as_deref() == Some(gmail::ALL) {
                all_mail = Some(f.path.clone());
            }
        }
        src_list.retain(|f| !views.contains(&f.path));
    }
    // Keys of the messages the source's other folders hold (for All Mail).
    let mut elsewhere: BTreeSet<Key> = BTreeSet::new();
    let selectable = |list: &[FolderInfo]| -> BTreeSet<FolderPath> {
        list.iter()
            .filter(|f| f.selectable)
            .map(|f| f.path.clone())
            .collect()
    };
    let (src_folders, tgt_folders) = (selectable(&src_list), selectable(&tgt_list));
    let attributes = |list: &[FolderInfo]| -> BTreeMap<FolderPath, (bool, Option<String>)> {
        list.iter()
            .map(|f| (f.path.clone(), (f.subscribed, f.special_use.clone())))
            .collect()
    };
    let (src_attrs, tgt_attrs) = (attributes(&src_list), attributes(&tgt_list));
    let can_mark = target.capabilities().has("CREATE-SPECIAL-USE");
    let projected = source.capabilities().has("X-JMAP") || target.capabilities().has("X-JMAP");
    // Read first, compared at the end: the projection needs the whole account.
    let mut read: Vec<(String, Snapshot, Snapshot)> = Vec::new();
    for path in &views {
        report.notes.push(Difference {
            folder: path.to_string(),
            what:
                "a Gmail view, not copied: its messages are compared in the folders that hold them"
                    .into(),
        });
    }
    let mut order: Vec<&FolderPath> = src_folders.union(&tgt_folders).collect();
    // All Mail last, once every other folder was read.
    order.sort_by_key(|p| Some(*p) == all_mail.as_ref());
    for path in order {
        let is_all_mail = Some(path) == all_mail.as_ref();
        let folder = path.to_string();
        let diff = |what: String| Difference {
            folder: folder.clone(),
            what,
        };
        match (src_folders.contains(path), tgt_folders.contains(path)) {
            (true, false) => {
                report
                    .differences
                    .push(diff("folder missing on the target".into()));
                continue;
            }
            (false, true) => {
                let what = "folder exists only on the target".to_string();
                if accepted.strict {
                    report.differences.push(diff(what));
                } else {
                    report
                        .notes
                        .push(diff(format!("{what}; left alone (--strict counts it)")));
                }
                continue;
            }
            _ => {}
        }
        report.folders += 1;
        if let (Some((sub_a, use_a)), Some((sub_b, use_b))) =
            (src_attrs.get(path), tgt_attrs.get(path))
        {
            if sub_a != sub_b {
                let (on, off) = if *sub_a {
                    ("source", "target")
                } else {
                    ("target", "source")
                };
                report
                    .differences
                    .push(diff(format!("subscribed on the {on}, not on the {off}")));
            }
            // A target that cannot mark folders (no CREATE-SPECIAL-USE) is only wrong when it
            // marks this one otherwise.
            let settable = (can_mark || use_b.is_some()) && !is_all_mail;
            if let Some(u) = use_a
                .as_ref()
                .filter(|u| settable && use_b.as_ref() != Some(*u))
            {
                report.differences.push(diff(format!(
                    "special-use {u} on the source, {} on the target",
                    use_b.as_deref().unwrap_or("none")
                )));
            }
        }
        let mut a = snapshot(source, path, batch_bytes, ignored).await?;
        let b = snapshot(target, path, batch_bytes, ignored).await?;
        if is_all_mail {
            // Only archived mail (held by no other folder) was copied; a message that is
            // also elsewhere and was copied here anyway is compared as well.
            let before: usize = a.by_key.values().map(Vec::len).sum();
            a.by_key
                .retain(|k, _| !elsewhere.contains(k) || b.by_key.contains_key(k));
            let kept: usize = a.by_key.values().map(Vec::len).sum();
            report.notes.push(Difference {
                folder: folder.clone(),
                what: format!(
                    "Gmail's All Mail: {kept} archived message(s) compared; {} held by other folders were compared there",
                    before - kept
                ),
            });
        } else {
            elsewhere.extend(a.by_key.keys().copied());
        }
        report.messages += a.by_key.values().map(|v| v.len() as u64).sum::<u64>();
        read.push((folder, a, b));
    }
    if projected {
        let (mut sides_a, mut sides_b): (Vec<&mut Snapshot>, Vec<&mut Snapshot>) =
            read.iter_mut().map(|(_, a, b)| (a, b)).unzip();
        let collapsed = project(&mut sides_a) + project(&mut sides_b);
        report.notes.push(Difference {
            folder: String::new(),
            what: format!(
                "compared across protocols: each content's flags as the union over its copies (a JMAP email has one keyword set), messages marked \\Deleted absent; {collapsed} identical copy(ies) in one folder counted once (one email per content per mailbox)"
            ),
        });
    }
    let limit = target.capabilities().append_limit();
    for (folder, a, b) in &read {
        let mut differences = Vec::new();
        let mut notes = Vec::new();
        compare(a, b, folder, accepted, limit, &mut differences, &mut notes);
        let diff = |what: String| Difference {
            folder: folder.clone(),
            what,
        };
        report.differences.extend(differences.into_iter().map(diff));
        report.notes.extend(notes.into_iter().map(diff));
    }
    Ok(report)
}

/// One side's snapshots through the cross-protocol projection: an instance marked `\Deleted`
/// is absent (RFC 8621: a JMAP email so marked is gone), every other instance of a content
/// gets the union of the flags of all its instances in the account, and a folder keeps one
/// instance per content. Returns how many instances were folded away.
fn project(side: &mut [&mut Snapshot]) -> usize {
    let tokens = |list: &str| -> BTreeSet<String> {
        list.trim_matches(|c| c == '(' || c == ')')
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    for snapshot in side.iter_mut() {
        for instances in snapshot.by_key.values_mut() {
            instances.retain(|(list, _)| !tokens(list).contains("\\deleted"));
        }
        snapshot.by_key.retain(|_, instances| !instances.is_empty());
    }
    let mut union: BTreeMap<Fingerprint, BTreeSet<String>> = BTreeMap::new();
    for snapshot in side.iter() {
        for ((fp, _), instances) in &snapshot.by_key {
            let flags = union.entry(*fp).or_default();
            for (list, _) in instances {
                flags.extend(tokens(list));
            }
        }
    }
    let mut folded = 0;
    for snapshot in side.iter_mut() {
        for ((fp, _), instances) in snapshot.by_key.iter_mut() {
            let list = union
                .get(fp)
                .map(|f| format!("({})", f.iter().cloned().collect::<Vec<_>>().join(" ")))
                .unwrap_or_else(|| "()".into());
            folded += instances.len().saturating_sub(1);
            instances.truncate(1);
            for (flags, _) in instances.iter_mut() {
                *flags = list.clone();
            }
        }
    }
    folded
}

/// A folder's messages: per identity, the flag sets of its instances (as printable lists),
/// sorted; and each identity's tolerant key.
#[derive(Default)]
struct Snapshot {
    by_key: BTreeMap<Key, Vec<(String, u32)>>,
    tolerant: BTreeMap<Key, TolerantKey>,
    /// UID -> size.
    sizes: BTreeMap<u32, u32>,
}

async fn snapshot<M: MailStore>(
    store: &mut M,
    path: &FolderPath,
    batch_bytes: u64,
    ignored: &dyn Fn(&Flag) -> bool,
) -> Result<Snapshot, EngineError> {
    store.open_folder(path).await?;
    let metas = store.list_messages().await?;
    let by_uid: BTreeMap<u32, &MessageMeta> = metas.iter().map(|m| (m.uid, m)).collect();
    let mut out = Snapshot {
        sizes: metas.iter().map(|m| (m.uid, m.size)).collect(),
        ..Snapshot::default()
    };
    let mut i = 0;
    while i < metas.len() {
        let mut j = i;
        let mut bytes = 0u64;
        while j < metas.len()
            && (j == i || bytes + metas[j].size as u64 <= batch_bytes)
            && j - i < 500
        {
            bytes += metas[j].size as u64;
            j += 1;
        }
        let uids: Vec<u32> = metas[i..j].iter().map(|m| m.uid).collect();
        for body in store.fetch_bodies(&uids).await? {
            if let Some(m) = by_uid.get(&body.uid) {
                let key = (Fingerprint::of(body.bytes()), m.internaldate.epoch());
                out.tolerant
                    .entry(key)
                    .or_insert_with(|| tolerant_key(body.bytes(), m.internaldate.epoch()));
                out.by_key.entry(key).or_default().push((
                    m.flags
                        .filtered(|f| !ignored(f))
                        .to_imap_list()
                        .to_ascii_lowercase(),
                    m.uid,
                ));
            }
        }
        i = j;
    }
    for v in out.by_key.values_mut() {
        v.sort();
    }
    Ok(out)
}

/// One instance left unmatched by fingerprint: (identity, flags, UID).
type Unmatched = (Key, String, u32);

fn compare(
    a: &Snapshot,
    b: &Snapshot,
    folder: &str,
    accepted: &Accepted<'_>,
    append_limit: Option<u32>,
    differences: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let keys: BTreeSet<&Key> = a.by_key.keys().chain(b.by_key.keys()).collect();
    let mut missing: Vec<Unmatched> = Vec::new();
    let mut extra: Vec<Unmatched> = Vec::new();
    for key in keys {
        let mut left: Vec<(String, u32)> = a.by_key.get(key).cloned().unwrap_or_default();
        let mut right: Vec<(String, u32)> = b.by_key.get(key).cloned().unwrap_or_default();
        // Pair instances with equal flags first; what remains differs.
        left.retain(
            |(flags, _)| match right.iter().position(|(f, _)| f == flags) {
                Some(pos) => {
                    right.remove(pos);
                    false
                }
                None => true,
            },
        );
        let (fp, _) = key;
        let pairs = left.len().min(right.len());
        for ((lf, lu), (rf, ru)) in left.iter().zip(right.iter()).take(pairs) {
            differences.push(format!(
                "message {fp}: flags differ: source uid {lu} {lf}, target uid {ru} {rf}"
            ));
        }
        missing.extend(left.into_iter().skip(pairs).map(|(f, u)| (*key, f, u)));
        extra.extend(right.into_iter().skip(pairs).map(|(f, u)| (*key, f, u)));
    }
    // Copies over the target's identical-message limit, as the state recorded them.
    let mut capped = accepted.capped.clone();
    missing.retain(|((fp, _), _, uid)| {
        match capped.get_mut(&(folder.to_string(), *fp)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                notes.push(format!(
                    "message {fp} (source uid {uid}): a copy over the target's limit on identical messages (refused, noted)"
                ));
                false
            }
            _ => true,
        }
    });
    // Messages larger than the target accepts (APPENDLIMIT) cannot be there.
    if let Some(limit) = append_limit {
        missing.retain(|((fp, _), _, uid)| {
            let size = a.sizes.get(uid).copied().unwrap_or(0);
            if size <= limit {
                return true;
            }
            notes.push(format!(
                "message {fp} (source uid {uid}, {size} bytes): larger than the target's APPENDLIMIT ({limit} bytes), cannot be copied"
            ));
            false
        });
    }
    // On a side that does not keep bytes, the copy is found by the tolerant key.
    if accepted.tolerant {
        missing.retain(|(key, flags, uid)| {
            let Some(want) = a.tolerant.get(key) else {
                return true;
            };
            let Some(pos) = extra
                .iter()
                .position(|(k, _, _)| b.tolerant.get(k) == Some(want))
            else {
                return true;
            };
            let ((tfp, _), tflags, tuid) = extra.remove(pos);
            if &tflags == flags {
                notes.push(format!(
                    "message {} (source uid {uid}) is stored rewritten as {tfp} (target uid {tuid}): matched by the tolerant key",
                    key.0
                ));
            } else {
                differences.push(format!(
                    "message {} (matched by the tolerant key): flags differ: source uid {uid} {flags}, target uid {tuid} {tflags}",
                    key.0
                ));
            }
            false
        });
    }
    for ((fp, _), flags, uid) in missing {
        differences.push(format!(
            "message {fp} (source uid {uid}, flags {flags}) is missing on the target"
        ));
    }
    for ((fp, _), flags, uid) in extra {
        differences.push(format!(
            "message {fp} (target uid {uid}, flags {flags}) is only on the target"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(entries: &[(u8, &[&str])]) -> Snapshot {
        let mut s = Snapshot::default();
        for (i, (content, flags)) in entries.iter().enumerate() {
            let key = (Fingerprint([*content; 32]), 1_700_000_000);
            s.by_key
                .entry(key)
                .or_default()
                .push((format!("({})", flags.join(" ")), i as u32 + 1));
        }
        s
    }

    fn flags_of(s: &Snapshot, content: u8) -> Vec<String> {
        s.by_key
            .iter()
            .filter(|((fp, _), _)| fp.0[0] == content)
            .flat_map(|(_, v)| v.iter().map(|(f, _)| f.clone()))
            .collect()
    }

    #[test]
    fn the_projection_unions_flags_per_content_drops_deleted_and_folds_copies() {
        // Content 1 twice in INBOX and once in Archive; content 2 once, and once \Deleted;
        // content 3 only \Deleted.
        let mut inbox = snapshot(&[
            (1, &["\\seen"]),
            (1, &["\\flagged"]),
            (2, &["$label"]),
            (2, &["\\answered", "\\deleted"]),
            (3, &["\\deleted"]),
        ]);
        let mut archive = snapshot(&[(1, &["$work"])]);
        let folded = project(&mut [&mut inbox, &mut archive]);
        assert_eq!(folded, 1);
        assert!(flags_of(&inbox, 3).is_empty());
        let all = "($work \\flagged \\seen)".to_string();
        assert_eq!(flags_of(&inbox, 1), vec![all.clone()]);
        assert_eq!(flags_of(&archive, 1), vec![all]);
        assert_eq!(flags_of(&inbox, 2), vec!["($label)".to_string()]);
    }
}
