//! `mailreplica status`: what the state knows, without touching any server.

use std::path::PathBuf;

use serde::Serialize;

use super::args::StatusArgs;
use super::exit::ExitCode;
use crate::engine::probe::{stored_fidelity, FidelityRecord};
use crate::engine::sync::MAX_ATTEMPTS;
use crate::engine::watch::{status_path, StatusCopy, WatchRecord, WATCH_META};
use crate::engine::Frozen;
use crate::state::StateError;
use crate::state::StateFile;

pub struct StatusCommand {
    pub args: StatusArgs,
}

#[derive(Debug, Serialize, Default)]
struct PairStatus {
    /// The pair's name in the configuration file.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Set while a process holds the state (a running watch or sync): the rest of this entry
    /// is what that watch last recorded (its status file), not the state itself.
    running: Option<String>,
    /// What the watch agent recorded: last successful pass, lag, last error, outage.
    watch: Option<WatchStatus>,
    state_file: String,
    pair_id: String,
    /// Set when the pair is frozen (the primary went back in time): why, and what to do.
    frozen: Option<FrozenStatus>,
    /// Set while the pair is failed over (from `failover` until `failback` finishes).
    failed_over: Option<FailedOverStatus>,
    /// `failover` left a request a running agent has not taken yet.
    failover_requested: bool,
    /// The summary of the last completed run, as `sync --json` printed it.
    last_pass: Option<serde_json::Value>,
    held_removals: Vec<Held>,
    gave_up: Vec<GaveUp>,
    /// Messages the target refused, with its words; tried again a day after the refusal.
    refused: Vec<RefusedEntry>,
    quarantined: Vec<QuarantineEntry>,
    /// Folders with an upload batch a run left unfinished (the next run resolves it).
    interrupted_batches: Vec<String>,
    /// Each probed side's fidelity class, as `check` stored it (`target`, `source`).
    fidelity: std::collections::BTreeMap<String, FidelityRecord>,
    /// Fidelity notes: keywords the target refuses (replicated without them), with its words.
    refused_keywords: std::collections::BTreeMap<String, String>,
    /// Fidelity notes: messages the target stores otherwise than sent, per folder and note.
    fidelity_notes: Vec<NoteGroup>,
}

#[derive(Debug, Serialize)]
struct NoteGroup {
    folder: String,
    note: String,
    messages: u64,
}

#[derive(Debug, Serialize)]
struct WatchStatus {
    /// Unix seconds when the last successful pass ended.
    last_success: Option<u64>,
    /// Seconds since the start of the last successful pass: every change older than this is
    /// on the recovery side.
    lag_seconds: Option<u64>,
    last_error: Option<String>,
    /// Unix seconds when the current outage began, if one is under way.
    outage_since: Option<u64>,
    failures: u32,
    passes: u64,
    passes_with_changes: u64,
}

impl WatchStatus {
    fn of(r: &WatchRecord) -> WatchStatus {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        WatchStatus {
            last_success: r.last_success,
            lag_seconds: r.last_success_started.map(|t| now.saturating_sub(t)),
            last_error: r.last_error.clone(),
            outage_since: r.outage_since,
            failures: r.failures,
            passes: r.passes,
            passes_with_changes: r.passes_with_changes,
        }
    }
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
struct RefusedEntry {
    folder: String,
    source_uid: u32,
    size: u32,
    /// Unix seconds of the refusal.
    since: u64,
    error: String,
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
        let mut all = Vec::new();
        if let Some(config) = &self.args.config {
            let planned = match super::watch_config::plans(config, false) {
                Ok(p) => p,
                Err(code) => return code,
            };
            for plan in planned.pairs {
                match configured_pair_status(&plan.name, &plan.state) {
                    Ok(s) => all.push(s),
                    Err(e) => {
                        eprintln!("error: pair {}: {e}", plan.name);
                        return ExitCode::of_state(&e);
                    }
                }
            }
        } else {
            let files = match &self.args.state {
                Some(f) => vec![f.clone()],
                None => default_state_files(),
            };
            if files.is_empty() {
                eprintln!("error: no state file found; pass --state FILE or --config FILE");
                return ExitCode::Usage;
            }
            for file in files {
                match pair_status(&file) {
                    Ok(s) => all.push(s),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::of_state(&e);
                    }
                }
            }
        }
        let attention = all.iter().any(|s| {
            s.frozen.is_some()
                || s.failed_over.is_some()
                || !s.held_removals.is_empty()
                || !s.gave_up.is_empty()
                || !s.quarantined.is_empty()
                || s.watch.as_ref().is_some_and(|w| w.last_error.is_some())
                || s.last_pass.as_ref().is_some_and(|p| {
                    p["removals_held"].as_u64().unwrap_or(0) > 0
                        || p["quarantined"].as_array().is_some_and(|q| !q.is_empty())
                })
        });
        if self.args.json {
            // One object for one state file; with --config always an array, one per pair.
            let out = if all.len() == 1 && self.args.config.is_none() {
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

/// A pair of a configuration file: its state, or while a watch holds it, the status file that
/// watch writes; a pair that never ran has neither.
fn configured_pair_status(name: &str, path: &std::path::Path) -> Result<PairStatus, StateError> {
    let mut status = if !path.exists() {
        PairStatus {
            state_file: path.display().to_string(),
            ..PairStatus::default()
        }
    } else {
        match pair_status(path) {
            Ok(s) => s,
            Err(StateError::Locked { holder, .. }) => from_status_copy(path, holder),
            Err(e) => return Err(e),
        }
    };
    status.name = Some(name.to_string());
    Ok(status)
}

/// What a running watch last wrote beside the state.
fn from_status_copy(path: &std::path::Path, holder: String) -> PairStatus {
    let copy: Option<StatusCopy> = std::fs::read(status_path(path))
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok());
    let mut status = PairStatus {
        state_file: path.display().to_string(),
        running: Some(holder),
        failover_requested: crate::engine::failover::request_path(path).exists(),
        ..PairStatus::default()
    };
    if let Some(copy) = copy {
        status.watch = Some(WatchStatus::of(&copy.watch));
        status.last_pass = copy.last_pass;
        status.frozen = copy.frozen.map(|message| FrozenStatus {
            folder: String::new(),
            detail: String::new(),
            since: 0,
            message,
        });
    }
    status
}

fn pair_status(path: &std::path::Path) -> Result<PairStatus, crate::state::StateError> {
    let state = StateFile::open_read_only(path)?;
    let watch = state
        .meta(WATCH_META)?
        .and_then(|raw| serde_json::from_slice::<WatchRecord>(&raw).ok())
        .map(|r| WatchStatus::of(&r));
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
    let refused = state
        .refused(None)?
        .into_iter()
        .map(|((folder, source_uid), r)| RefusedEntry {
            folder,
            source_uid,
            size: r.size,
            since: r.since,
            error: r.error,
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
        if let Some(record) = stored_fidelity(&state, role)? {
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
        failover_requested: crate::engine::failover::request_path(path).exists(),
        name: None,
        running: None,
        watch,
        fidelity,
        refused_keywords: crate::engine::keywords::refused(&state)?,
        fidelity_notes: note_groups(&state)?,
        state_file: path.display().to_string(),
        pair_id: state.pair_id()?,
        frozen,
        last_pass,
        held_removals,
        gave_up,
        refused,
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
    match &s.name {
        Some(name) => println!("pair {name}: state {}", s.state_file),
        None => println!("state {} (pair {})", s.state_file, s.pair_id),
    }
    if let Some(holder) = &s.running {
        println!("  running: {holder} holds the state; showing what it last recorded");
    }
    if let Some(w) = &s.watch {
        match (w.last_success, w.lag_seconds) {
            (Some(at), Some(lag)) => println!(
                "  last successful pass ended at {at} (unix); lag at most {lag} s; {} pass(es), {} with changes",
                w.passes, w.passes_with_changes
            ),
            _ => println!("  no successful pass yet"),
        }
        if let Some(since) = w.outage_since {
            println!(
                "  OUTAGE since {since} (unix), {} failed attempt(s)",
                w.failures
            );
        }
        if let Some(e) = &w.last_error {
            println!("  last error: {e}");
        }
    } else if s.running.is_some() {
        println!("  no status recorded yet");
    }
    if let Some(f) = &s.frozen {
        println!("  FROZEN since {} (unix): {}", f.since, f.message);
    }
    if let Some(f) = &s.failed_over {
        println!("  FAILED OVER: {}", f.message);
    }
    if s.failover_requested {
        println!("  FAILOVER REQUESTED: the agent holding the state takes it before its next pass");
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
    for r in &s.refused {
        println!(
            "  refused by the target: {} source uid {} ({} bytes) at {} unix: {} (tried again a day later)",
            r.folder, r.source_uid, r.size, r.since, r.error
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
    for g in &s.fidelity_notes {
        println!(
            "  fidelity note: {}: {} message(s): {} (accepted by verify)",
            g.folder, g.messages, g.note
        );
    }
    for f in &s.interrupted_batches {
        println!("  interrupted upload batch in {f} (resolved by the next run)");
    }
}

/// The state's per-message fidelity notes, counted per folder and note.
fn note_groups(state: &StateFile) -> Result<Vec<NoteGroup>, crate::state::StateError> {
    let mut groups: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for ((folder, _), n) in state.notes(None)? {
        *groups.entry((folder, n.note)).or_default() += 1;
    }
    Ok(groups
        .into_iter()
        .map(|((folder, note), messages)| NoteGroup {
            folder,
            note,
            messages,
        })
        .collect())
}
