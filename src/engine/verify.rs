//! Verify: compare two sides folder by folder, message by message (fingerprint, flags,
//! INTERNALDATE), and list every difference. Both sides are only read.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::EngineError;
use crate::mailstore::{FolderInfo, MailStore, MessageMeta};
use crate::model::{Fingerprint, Flag, FolderPath};

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
    verify_with(source, target, batch_bytes, &|_| false).await
}

/// Like [`verify`], leaving out of every comparison the flags `ignored` says (the keywords a
/// pair's fidelity notes say the target refuses).
pub async fn verify_with<S: MailStore, T: MailStore>(
    source: &mut S,
    target: &mut T,
    batch_bytes: u64,
    ignored: &dyn Fn(&Flag) -> bool,
) -> Result<VerifyReport, EngineError> {
    let mut report = VerifyReport {
        source: source.endpoint().to_string(),
        target: target.endpoint().to_string(),
        ..Default::default()
    };
    let src_list = source.list_folders().await?;
    let tgt_list = target.list_folders().await?;
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
    for path in src_folders.union(&tgt_folders) {
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
                report
                    .differences
                    .push(diff("folder exists only on the target".into()));
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
            let settable = can_mark || use_b.is_some();
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
        let a = snapshot(source, path, batch_bytes, ignored).await?;
        let b = snapshot(target, path, batch_bytes, ignored).await?;
        report.messages += a.values().map(|v| v.len() as u64).sum::<u64>();
        compare(&a, &b, &mut |what| report.differences.push(diff(what)));
    }
    Ok(report)
}

/// Per identity, the flag sets of its instances (as printable lists), sorted.
type Snapshot = BTreeMap<Key, Vec<(String, u32)>>;

async fn snapshot<M: MailStore>(
    store: &mut M,
    path: &FolderPath,
    batch_bytes: u64,
    ignored: &dyn Fn(&Flag) -> bool,
) -> Result<Snapshot, EngineError> {
    store.open_folder(path).await?;
    let metas = store.list_messages().await?;
    let by_uid: BTreeMap<u32, &MessageMeta> = metas.iter().map(|m| (m.uid, m)).collect();
    let mut out: Snapshot = BTreeMap::new();
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
                out.entry(key).or_default().push((
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
    for v in out.values_mut() {
        v.sort();
    }
    Ok(out)
}

fn compare(a: &Snapshot, b: &Snapshot, report: &mut dyn FnMut(String)) {
    let keys: BTreeSet<&Key> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let mut left: Vec<(String, u32)> = a.get(key).cloned().unwrap_or_default();
        let mut right: Vec<(String, u32)> = b.get(key).cloned().unwrap_or_default();
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
            report(format!(
                "message {fp}: flags differ: source uid {lu} {lf}, target uid {ru} {rf}"
            ));
        }
        for (flags, uid) in left.iter().skip(pairs) {
            report(format!(
                "message {fp} (source uid {uid}, flags {flags}) is missing on the target"
            ));
        }
        for (flags, uid) in right.iter().skip(pairs) {
            report(format!(
                "message {fp} (target uid {uid}, flags {flags}) is only on the target"
            ));
        }
    }
}
