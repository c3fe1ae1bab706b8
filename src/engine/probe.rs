//! The fidelity probe on one writable side: append the probe message to a folder of its own,
//! read it back, classify it (`reconcile::fidelity`), and remove every trace of it.
//!
//! Where: a dedicated top-level folder, [`PROBE_FOLDER`], created by the probe and deleted after
//! it, so no folder of the user is written and no other message is ever expunged (only the
//! probe's own UID, by `UID EXPUNGE` where UIDPLUS is offered). A folder of that name that
//! existed before the probe is used but left in place, and the probe says so.
//!
//! Cleanup runs on every path once anything may have been written: after a refusal, a failed
//! fetch, or a connection lost mid-APPEND (then the probe is looked up by its Message-ID on a
//! new connection, see [`Trace`]). A cleanup that fails is reported, never silent.

use serde::{Deserialize, Serialize};

use crate::mailstore::{AppendRequest, MailStore, StoreError};
use crate::model::{FlagSet, FolderPath, InternalDate};
use crate::reconcile::fidelity::{self, FidelityClass, Transform, Verdict};

/// The folder the probe writes to (and deletes after).
pub const PROBE_FOLDER: &str = "mailreplica-probe";

/// The META key under which a side's probe result is stored (`fidelity:target`).
pub fn meta_key(role: &str) -> String {
    format!("fidelity:{role}")
}

/// The fidelity record stored for a side (`source`, `target`), if any; an unreadable one reads
/// as none (the side is probed or learned again).
pub fn stored_fidelity(
    state: &crate::state::StateFile,
    role: &str,
) -> Result<Option<FidelityRecord>, crate::state::StateError> {
    Ok(state
        .meta(&meta_key(role))?
        .and_then(|json| serde_json::from_slice(&json).ok()))
}

/// A side's fidelity as stored in the state (JSON in META) and shown by `check` and `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FidelityRecord {
    pub class: FidelityClass,
    pub transforms: Vec<Transform>,
    pub detail: String,
    /// Unix seconds.
    pub probed_at: u64,
    /// `imap://user@host:port` of the side probed (no secret).
    pub endpoint: String,
}

impl FidelityRecord {
    pub fn new(verdict: &Verdict, endpoint: &str, probed_at: u64) -> FidelityRecord {
        FidelityRecord {
            class: verdict.class,
            transforms: verdict.transforms.clone(),
            detail: verdict.detail.clone(),
            probed_at,
            endpoint: endpoint.to_string(),
        }
    }
}

/// What the probe found.
#[derive(Debug)]
pub enum ProbeOutcome {
    Classified(Verdict),
    /// The side refused to store the probe (a NO to CREATE or APPEND): its own words are in the
    /// error.
    Refused(StoreError),
    /// Something else failed (connection lost, timeout, an answer we could not use).
    Failed(StoreError),
}

/// What the probe left on the side, so that cleanup can be retried on a new connection.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The probe's Message-ID (to find it when the APPEND's answer was lost).
    pub message_id: String,
    /// The probe folder existed before: it is not deleted.
    pub folder_existed: bool,
    /// The probe created the folder.
    pub folder_created: bool,
    /// An APPEND was sent: the message may be there even without an answer.
    pub appended: bool,
    /// The probe's UID, when known.
    pub uid: Option<u32>,
}

impl Trace {
    fn is_empty(&self) -> bool {
        !self.folder_created && !self.appended
    }
}

/// How cleanup went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cleanup {
    /// True when nothing of the probe is left on the side (a folder that existed before aside).
    pub clean: bool,
    /// What was removed, or what failed and what to do.
    pub detail: String,
}

/// A probe's result and its cleanup.
#[derive(Debug)]
pub struct ProbeReport {
    pub outcome: ProbeOutcome,
    pub cleanup: Cleanup,
    /// Set when cleanup could not finish because the connection was lost: retry with
    /// [`clean_up`] on a new connection.
    pub retry_cleanup: Option<Trace>,
}

fn probe_folder() -> FolderPath {
    FolderPath::new(vec![PROBE_FOLDER.to_string()])
}

/// Probes one writable side. `nonce` makes the probe's Message-ID unique (ASCII letters,
/// digits, `-`).
pub async fn run_probe<S: MailStore>(store: &mut S, nonce: &str) -> ProbeReport {
    let bytes = fidelity::probe_message(nonce);
    let mut trace = Trace {
        message_id: fidelity::probe_message_id(nonce),
        ..Trace::default()
    };
    let outcome = match probe_steps(store, &bytes, &mut trace).await {
        Ok(verdict) => ProbeOutcome::Classified(verdict),
        Err(Step::Refused(e)) => ProbeOutcome::Refused(e),
        Err(Step::Failed(e)) => ProbeOutcome::Failed(e),
    };
    let (cleanup, retry) = match clean_up(store, &trace).await {
        Ok(c) => (c, None),
        Err(c) => (c, Some(trace)),
    };
    ProbeReport {
        outcome,
        cleanup,
        retry_cleanup: retry,
    }
}

enum Step {
    Refused(StoreError),
    Failed(StoreError),
}

impl From<StoreError> for Step {
    fn from(e: StoreError) -> Step {
        Step::Failed(e)
    }
}

async fn probe_steps<S: MailStore>(
    store: &mut S,
    bytes: &[u8],
    trace: &mut Trace,
) -> Result<Verdict, Step> {
    let folder = probe_folder();
    trace.folder_existed = store.list_folders().await?.iter().any(|f| f.path == folder);
    if !trace.folder_existed {
        match store.create_folder(&folder, None).await {
            Ok(()) => trace.folder_created = true,
            Err(e @ StoreError::No { .. }) => return Err(Step::Refused(e)),
            Err(e) => {
                // The CREATE may have happened: cleanup looks.
                trace.folder_created = true;
                return Err(Step::Failed(e));
            }
        }
    }
    let flags = FlagSet::new();
    let date = InternalDate::parse("01-Jan-2024 00:00:00 +0000").ok_or_else(|| {
        Step::Failed(StoreError::Protocol {
            endpoint: store.endpoint().to_string(),
            command: "APPEND".into(),
            detail: "the probe's INTERNALDATE does not parse (a mailreplica bug)".into(),
        })
    })?;
    trace.appended = true;
    let results = store
        .append(
            &folder,
            &[AppendRequest {
                flags: &flags,
                internaldate: &date,
                bytes,
            }],
        )
        .await?;
    match results.into_iter().next() {
        Some(Ok(uid)) => trace.uid = uid,
        Some(Err(e)) => {
            trace.appended = false;
            return Err(Step::Refused(e));
        }
        None => {
            return Err(Step::Failed(StoreError::Protocol {
                endpoint: store.endpoint().to_string(),
                command: "APPEND".into(),
                detail: "no result for the probe message (a mailreplica bug)".into(),
            }))
        }
    }
    store.open_folder(&folder).await?;
    let uid = match trace.uid {
        Some(uid) => uid,
        None => {
            let found = find_probe(store, &trace.message_id).await?;
            trace.uid = found.first().copied();
            trace.uid.ok_or_else(|| StoreError::Protocol {
                endpoint: store.endpoint().to_string(),
                command: "APPEND".into(),
                detail: format!(
                    "the probe was accepted but folder {PROBE_FOLDER} does not show it"
                ),
            })?
        }
    };
    let size = store
        .list_messages()
        .await?
        .into_iter()
        .find(|m| m.uid == uid)
        .map(|m| m.size)
        .ok_or_else(|| StoreError::Protocol {
            endpoint: store.endpoint().to_string(),
            command: "UID FETCH".into(),
            detail: format!("the probe (UID {uid}) is not listed in folder {PROBE_FOLDER}"),
        })?;
    let bodies = store.fetch_bodies(&[uid]).await?;
    let served = bodies
        .iter()
        .find(|b| b.uid == uid)
        .ok_or_else(|| StoreError::Protocol {
            endpoint: store.endpoint().to_string(),
            command: "UID FETCH".into(),
            detail: format!("no body served for the probe (UID {uid})"),
        })?;
    Ok(fidelity::classify(bytes, served.bytes(), u64::from(size)))
}

/// UIDs of the open folder whose Message-ID is the probe's. Stores give Message-IDs without
/// their angle brackets (`model::message_id`).
async fn find_probe<S: MailStore>(store: &mut S, message_id: &str) -> Result<Vec<u32>, StoreError> {
    let wanted = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let uids: Vec<u32> = store.list_messages().await?.iter().map(|m| m.uid).collect();
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(store
        .fetch_message_ids(&uids)
        .await?
        .into_iter()
        .filter(|(_, id)| id.as_deref() == Some(wanted))
        .map(|(uid, _)| uid)
        .collect())
}

/// Removes what the probe left: its message (by UID, or found by Message-ID), then the folder
/// if the probe created it and it is empty. `Err` carries the report when the connection was
/// lost, so the caller can retry on a new one.
pub async fn clean_up<S: MailStore>(store: &mut S, trace: &Trace) -> Result<Cleanup, Cleanup> {
    if trace.is_empty() {
        return Ok(Cleanup {
            clean: true,
            detail: "nothing was written".into(),
        });
    }
    let endpoint = store.endpoint().to_string();
    match clean_steps(store, trace).await {
        Ok(detail) => Ok(Cleanup {
            clean: true,
            detail,
        }),
        Err(e) => {
            let lost = e.is_connection_lost()
                || matches!(e, StoreError::Connect { .. } | StoreError::Timeout { .. });
            let c = Cleanup {
                clean: false,
                detail: format!(
                    "cleanup failed: {e}. The probe message {} may remain in folder {PROBE_FOLDER} on {endpoint}: delete that folder by hand",
                    trace.message_id
                ),
            };
            if lost {
                Err(c)
            } else {
                Ok(c)
            }
        }
    }
}

async fn clean_steps<S: MailStore>(store: &mut S, trace: &Trace) -> Result<String, StoreError> {
    let folder = probe_folder();
    let exists = store.list_folders().await?.iter().any(|f| f.path == folder);
    if !exists {
        return Ok(if trace.folder_existed {
            format!("folder {PROBE_FOLDER} is gone")
        } else {
            "nothing was left".to_string()
        });
    }
    let mut done = Vec::new();
    store.open_folder(&folder).await?;
    if trace.appended {
        let mut uids = find_probe(store, &trace.message_id).await?;
        if let Some(uid) = trace.uid {
            if !uids.contains(&uid) {
                uids.push(uid);
            }
        }
        if !uids.is_empty() {
            store.expunge(&uids).await?;
            done.push(format!(
                "removed the probe message (UID {})",
                crate::mailstore::uid_set(&uids)
            ));
        }
    }
    let left = store.list_messages().await?.len();
    if trace.folder_existed {
        done.push(format!(
            "left folder {PROBE_FOLDER} in place: it existed before the probe ({left} message(s) in it; a leftover of an interrupted check? delete it by hand)"
        ));
    } else if left > 0 {
        done.push(format!(
            "left folder {PROBE_FOLDER} in place: it holds {left} message(s) the probe did not write"
        ));
    } else {
        store.close_folder().await?;
        match store.delete_folder(&folder).await {
            // Cyrus's default delayed delete renames a deleted folder to DELETED.<name>.<time in
            // seconds>: a second probe within the same second finds that name taken. The next
            // second it is free.
            Err(StoreError::No { text, .. }) if text.contains("already exists") => {
                tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
                store.delete_folder(&folder).await?;
            }
            other => other?,
        }
        let still = store.list_folders().await?.iter().any(|f| f.path == folder);
        if still {
            return Err(StoreError::Refused {
                endpoint: store.endpoint().to_string(),
                detail: format!("folder {PROBE_FOLDER} is still listed after DELETE"),
            });
        }
        done.push(format!("deleted folder {PROBE_FOLDER}"));
    }
    Ok(done.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailstore::memory::{Fault, MemoryStore, OpKind};
    use crate::mailstore::Access;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn memory_store_is_exact_and_left_clean() {
        let mut m = MemoryStore::new("t", Access::ReadWrite);
        m.add_folder("INBOX");
        let r = block_on(run_probe(&mut m, "n1"));
        match &r.outcome {
            ProbeOutcome::Classified(v) => assert_eq!(v.class, FidelityClass::Exact, "{v:?}"),
            other => panic!("{other:?}"),
        }
        assert!(r.cleanup.clean, "{:?}", r.cleanup);
        assert!(m.folder(PROBE_FOLDER).is_none());
        assert_eq!(m.folder_paths(), vec![FolderPath::inbox()]);
    }

    #[test]
    fn a_refused_append_is_reported_and_the_folder_removed() {
        let mut m = MemoryStore::new("t", Access::ReadWrite);
        m.fail_next(OpKind::Append, Fault::No);
        let r = block_on(run_probe(&mut m, "n2"));
        assert!(matches!(r.outcome, ProbeOutcome::Refused(_)), "{r:?}");
        assert!(r.cleanup.clean, "{:?}", r.cleanup);
        assert!(m.folder(PROBE_FOLDER).is_none());
    }

    #[test]
    fn a_failed_fetch_still_cleans_up() {
        let mut m = MemoryStore::new("t", Access::ReadWrite);
        m.fail_next(OpKind::FetchBodies, Fault::No);
        let r = block_on(run_probe(&mut m, "n3"));
        assert!(matches!(r.outcome, ProbeOutcome::Failed(_)), "{r:?}");
        assert!(r.cleanup.clean, "{:?}", r.cleanup);
        assert!(m.folder(PROBE_FOLDER).is_none());
    }

    #[test]
    fn a_lost_append_answer_is_cleaned_up_on_a_new_connection() {
        let mut m = MemoryStore::new("t", Access::ReadWrite);
        m.fail_next(OpKind::Append, Fault::LostAfter);
        let r = block_on(run_probe(&mut m, "n4"));
        assert!(matches!(r.outcome, ProbeOutcome::Failed(_)), "{r:?}");
        assert!(!r.cleanup.clean);
        let trace = r.retry_cleanup.expect("cleanup to retry");
        m.reconnect();
        let c = block_on(clean_up(&mut m, &trace)).expect("cleanup on a new connection");
        assert!(c.clean, "{c:?}");
        assert!(c.detail.contains("removed the probe message"), "{c:?}");
        assert!(m.folder(PROBE_FOLDER).is_none());
    }

    #[test]
    fn an_existing_probe_folder_is_left_with_only_the_probe_removed() {
        let mut m = MemoryStore::new("t", Access::ReadWrite);
        m.add_folder(PROBE_FOLDER);
        m.add_message(
            PROBE_FOLDER,
            &[],
            "01-Jan-2024 00:00:00 +0000",
            b"Subject: other\r\n\r\nx\r\n",
        );
        let r = block_on(run_probe(&mut m, "n5"));
        assert!(matches!(r.outcome, ProbeOutcome::Classified(_)), "{r:?}");
        assert!(r.cleanup.clean, "{:?}", r.cleanup);
        assert!(
            r.cleanup.detail.contains("existed before"),
            "{:?}",
            r.cleanup
        );
        assert_eq!(m.messages(PROBE_FOLDER).len(), 1);
    }
}
