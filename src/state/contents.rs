//! The contents table: where the target holds each content, kept beside the instances (schema
//! version 3) so that a pass that places new mail looks up its fingerprints instead of reading
//! every instance of the account (20-30 ms per pass at 20 000 instances, and growing with the
//! account, not with the change).
//!
//! Every write of an instance goes through [`update`] in the same transaction, with the record
//! it replaces: the table holds exactly one entry per instance that has a fingerprint and a
//! target UID. [`rebuild`] fills it from the instances (files written before version 3).
//! The key is content, folder, NUL, source UID (big-endian), so the copies of one content come
//! in the instances table's order.

use std::collections::HashMap;
use std::sync::Arc;

use redb::{ReadTransaction, ReadableTable, Table, WriteTransaction};

use super::instance_codec;
use super::schema::{CONTENTS, INSTANCES};
use crate::model::Fingerprint;

/// Target copies of one content: (folder, target UID, INTERNALDATE instant).
pub type Copies = Vec<(Arc<str>, u32, i64)>;

/// A folder name holds no NUL (IMAP names cannot), so it ends there.
fn key(fp: &Fingerprint, folder: &str, source_uid: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(37 + folder.len());
    k.extend_from_slice(&fp.0);
    k.extend_from_slice(folder.as_bytes());
    k.push(0);
    k.extend_from_slice(&source_uid.to_be_bytes());
    k
}

fn value(target_uid: u32, date: i64) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..4].copy_from_slice(&target_uid.to_le_bytes());
    v[4..].copy_from_slice(&date.to_le_bytes());
    v
}

/// The instance `(folder, source_uid)` changed from `old` to `new` (encoded records; `None`
/// when absent): its entry follows.
pub fn update(
    table: &mut Table<&[u8], &[u8]>,
    folder: &str,
    source_uid: u32,
    old: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<(), String> {
    let placed = |bytes: Option<&[u8]>| -> Result<Option<(Fingerprint, u32, i64)>, String> {
        bytes.map_or(Ok(None), instance_codec::decode_placed)
    };
    let (old, new) = (placed(old)?, placed(new)?);
    if old == new {
        return Ok(());
    }
    if let Some((fp, _, _)) = old {
        table
            .remove(key(&fp, folder, source_uid).as_slice())
            .map_err(|e| e.to_string())?;
    }
    if let Some((fp, tuid, date)) = new {
        table
            .insert(
                key(&fp, folder, source_uid).as_slice(),
                value(tuid, date).as_slice(),
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Fills the table anew from every instance.
pub fn rebuild(txn: &WriteTransaction) -> Result<(), String> {
    txn.delete_table(CONTENTS).map_err(|e| e.to_string())?;
    let instances = txn.open_table(INSTANCES).map_err(|e| e.to_string())?;
    let mut table = txn.open_table(CONTENTS).map_err(|e| e.to_string())?;
    for entry in instances.iter().map_err(|e| e.to_string())? {
        let (k, v) = entry.map_err(|e| e.to_string())?;
        let (folder, uid) = k.value();
        update(&mut table, folder, uid, None, Some(v.value()))?;
    }
    Ok(())
}

/// The target copies of each of `fps` (only those it has), copies of one content in (folder,
/// source UID) order.
pub fn copies_of(
    txn: &ReadTransaction,
    fps: &[Fingerprint],
) -> Result<HashMap<Fingerprint, Copies>, String> {
    let table = txn.open_table(CONTENTS).map_err(|e| e.to_string())?;
    let mut out: HashMap<Fingerprint, Copies> = HashMap::new();
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    for fp in fps {
        for entry in table.range(fp.0.as_slice()..).map_err(|e| e.to_string())? {
            let (k, v) = entry.map_err(|e| e.to_string())?;
            let (k, v) = (k.value(), v.value());
            if k.get(..32) != Some(fp.0.as_slice()) {
                break;
            }
            let (Some(folder), Ok(tuid), Ok(date)) = (
                k.get(32..k.len().saturating_sub(5))
                    .and_then(|f| std::str::from_utf8(f).ok()),
                <[u8; 4]>::try_from(&v[..v.len().min(4)]),
                <[u8; 8]>::try_from(v.get(4..12).unwrap_or_default()),
            ) else {
                return Err("a damaged entry in the contents table".into());
            };
            let folder = names
                .entry(folder.to_string())
                .or_insert_with(|| folder.into())
                .clone();
            out.entry(*fp).or_default().push((
                folder,
                u32::from_le_bytes(tuid),
                i64::from_le_bytes(date),
            ));
        }
    }
    Ok(out)
}
