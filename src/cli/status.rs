//! `mailreplica status`: what the state knows, without touching any server.

use std::path::PathBuf;

use serde::Serialize;

use super::args::StatusArgs;
use super::exit::ExitCode;
use crate::engine::probe::{meta_key, FidelityRecord};
use crate::engine::sync::MAX_ATTEMPTS;
use crate::engine::Frozen;
use crate::state::StateFile;

pub struct StatusCommand {
    pub args: StatusArgs,
}

#[derive(Debug, Serialize)]
struct PairStatus {
    state_file: String,
    pair_id: String,
    /// Set when the pair is frozen (the primary went back in time): why, and what to do.
    frozen: Option<FrozenStatus>,
    /// Set while the pair is failed over (from `failover` until `failback` finishes).
    failed_over: Option<FailedOverStatus>,
    /// The summary of the last completed run, as `sync --json` printed it.
    last_pass: Option<serde_json::Value>,
    held_removals: Vec<Held>,
    gave_up: Vec<GaveUp>,
    quarantined: Vec<QuarantineEntry>,
    /// Folders with an upload batch a run left unfinished (the next run resolves it).
    interrupted_batches: Vec<String>,
    /// Each probed side's fidelity class, as `check` stored it (`target`, `source`).
    fidelity: std::collections::BTreeMap<String, FidelityRecord>,
    /// Fidelity notes: keywords the target refuses (replicated without them), with its words.
    refused_keywords: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct FrozenStatus {
    folder: String,
    detail: String,
    since: u64,
    message: String,
}

#[derive(Debug, Serialize)]
struct FailedOverStatus {
    since: u64,
    phase: crate::engine::failover::Phase,
    message: String,
}

#[derive(Debug, Serialize)]
struct Held {
    folder: String,
    source_uid: u32,
    target_uid: u32,
    since: u64,
    reason: String,
    released: bool,
}

#[derive(Debug, Serialize)]
struct QuarantineEntry {
    folder: String,
    source_uid: u32,
    message_id: Option<String>,
    size: u32,
    class: String,
    reason: String,
    first_seen: u64,
    attempts: u32,
}

#[derive(Debug, Serialize)]
struct GaveUp {
    folder: String,
    source_uid: u32,
    attempts: u32,
    last_error: String,
}

impl StatusCommand {
    pub fn execute(self) -> ExitCode {
        let files = match &self.args.state {
            Some(f) => vec![f.clone()],
            None => default_state_files(),
        };
        if files.is_empty() {
            eprintln!("error: no state file found; pass --state FILE");
            return ExitCode::Usage;
        }
        let mut all = Vec::new();
        for file in files {
            match pair_status(&file) {
                Ok(s) => all.push(s),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::of_state(&e);
                }
            }
        }
        let attention = all.iter().any(|s| {
            s.frozen.is_some()
                || s.failed_over.is_some()
                || !s.held_removals.is_empty()
                || !s.gave_up.is_empty()
                || !s.quarantined.is_empty()
        });
        if self.args.json {
            let out = if all.len() == 1 {
                serde_json::to_string(&all[0])
            } else {
                serde_json::to_string(&all)
            };
            println!("{}", out.unwrap_or_else(|_| "{}".into()));
        } else {
            for s in &all {
                print_status(s);
            }
        }
        if attention {
            ExitCode::Attention
        } else {
            ExitCode::InSync
        }
    }
}

fn pair_status(path: &std::path::Path) -> Result<PairStatus, crate::state::StateError> {
    let state = StateFile::open_read_only(path)?;
    let last_pass = state
        .meta("last_pass")?
        .and_then(|raw| serde_json::from_slice(&raw).ok());
    let held_removals = state
        .held()?
        .into_iter()
        .map(|((folder, source_uid), h)| Held {
            folder,
            source_uid,
            target_uid: h.target_uid,
            since: h.since,
            reason: h.reason,
            released: h.released,
        })
        .collect();
    let gave_up = state
        .all_attempts()?
        .into_iter()
        .filter(|(_, a)| a.count >= MAX_ATTEMPTS)
        .map(|((folder, source_uid), a)| GaveUp {
            folder,
            source_uid,
            attempts: a.count,
            last_error: a.last_error,
        })
        .collect();
    let frozen = state.frozen()?.map(|raw| {
        let f = Frozen::from_raw(&raw);
        FrozenStatus {
            message: f.to_string(),
            folder: f.folder,
            detail: f.detail,
            since: f.since,
        }
    });
    let mut fidelity = std::collections::BTreeMap::new();
    for role in ["source", "target"] {
        if let Some(record) = state
            .meta(&meta_key(role))?
            .and_then(|raw| serde_json::from_slice::<FidelityRecord>(&raw).ok())
        {
            fidelity.insert(role.to_string(), record);
        }
    }
    let failed_over = crate::engine::failover::failed_over(&state)
        .map_err(|e| match e {
            crate::engine::EngineError::State(s) => s,
            other => crate::state::StateError::Io {
                path: path.to_path_buf(),
                detail: other.to_string(),
            },
        })?
        .map(|m| FailedOverStatus {
            since: m.since,
            phase: m.phase,
            message: m.to_string(),
        });
    Ok(PairStatus {
        failed_over,
        fidelity,
        refused_keywords: crate::engine::keywords::refused(&state)?,
        state_file: path.display().to_string(),
        pair_id: state.pair_id()?,
        frozen,
        last_pass,
        held_removals,
        gave_up,
        quarantined: state
            .quarantine(None)?
            .into_iter()
            .map(|((folder, source_uid), q)| QuarantineEntry {
                folder,
                source_uid,
                message_id: q.message_id,
                size: q.size,
                class: q.class,
                reason: q.reason,
                first_seen: q.first_seen,
                attempts: q.attempts,
            })
            .collect(),
        interrupted_batches: state.journaled_folders()?,
    })
}

fn default_state_files() -> Vec<PathBuf> {
    let Some(probe) = crate::engine::pair::default_state_path("x") else {
        return Vec::new();
    };
    let Some(dir) = probe.parent() else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "redb"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn print_status(s: &PairStatus) {
    println!("state {} (pair {})", s.state_file, s.pair_id);
    if let Some(f) = &s.frozen {
        println!("  FROZEN since {} (unix): {}", f.since, f.message);
    }
    if let Some(f) = &s.failed_over {
        println!("  FAILED OVER: {}", f.message);
    }
    match &s.last_pass {
        Some(p) => println!(
            "  last run: {} -> {}, finished at {} (unix): {} copied, {} adopted, {} flag update(s), {} removed, {} held",
            p["source"].as_str().unwrap_or("?"),
            p["target"].as_str().unwrap_or("?"),
            p["finished_at"],
            p["copied"],
            p["adopted"],
            p["flags_updated"],
            p["removed"],
            p["removals_held"]
        ),
        None => println!("  no completed run yet"),
    }
    if !s.held_removals.is_empty() {
        println!(
            "  held removals: {} (released with --allow-deletions or `mailreplica release`)",
            s.held_removals.len()
        );
        let mut by_folder: std::collections::BTreeMap<&str, (usize, &str, bool)> =
            Default::default();
        for h in &s.held_removals {
            let e = by_folder
                .entry(&h.folder)
                .or_insert((0, &h.reason, h.released));
            e.0 += 1;
        }
        for (folder, (n, reason, released)) in by_folder {
            println!(
                "    {folder}: {n} ({reason}){}",
                if released { ", released" } else { "" }
            );
        }
    }
    for g in &s.gave_up {
        println!(
            "  gave up: {} source uid {} after {} attempts: {}",
            g.folder, g.source_uid, g.attempts, g.last_error
        );
    }
    for q in &s.quarantined {
        println!(
            "  quarantined: {} source uid {} ({} bytes, Message-ID {}): {} damage: {} (seen {} time(s) since {})",
            q.folder,
            q.source_uid,
            q.size,
            q.message_id.as_deref().unwrap_or("none"),
            q.class,
            q.reason,
            q.attempts,
            q.first_seen
        );
    }
    for (role, f) in &s.fidelity {
        println!(
            "  fidelity of the {role} ({}): {}: {} (probed at {} unix)",
            f.endpoint, f.class, f.detail, f.probed_at
        );
    }
    if !s.fidelity.contains_key("target") {
        println!("  fidelity of the target: not probed yet (`mailreplica check` probes it)");
    }
    for (keyword, why) in &s.refused_keywords {
        println!("  fidelity note: keyword {keyword} is not kept by the target ({why})");
    }
    for f in &s.interrupted_batches {
        println!("  interrupted upload batch in {f} (resolved by the next run)");
    }
}
