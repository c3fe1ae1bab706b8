//! `mailreplica check`: log in to both sides and show what a sync would meet: capabilities,
//! folders, the target's fidelity class (from the probe), the folder mapping, the connection cap.
//!
//! It writes nothing but the probe (`engine::probe`: one message in a folder of its own, removed
//! at once) and the probe's result in the state file. The source is the user's live mailbox and
//! stays read-only unless `--probe-source` asks for its class too.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::args::CheckArgs;
use super::exit::ExitCode;
use crate::config::SideConfig;
use crate::engine::probe::{self, Cleanup, FidelityRecord, ProbeOutcome};
use crate::mailstore::any::AnyStore;
use crate::mailstore::{Access, FolderInfo, MailStore};
use crate::model::FolderPath;
use crate::reconcile::fidelity::{FidelityClass, Transform};
use crate::reconcile::folder_map::FolderMap;
use crate::state::StateFile;

/// Connections per side a one-shot run may use (DESIGN.md "Connections, speed, memory").
pub const CONNECTION_CAP: u32 = 4;
/// Connections per side `sync` opens by default: one per folder worked on at once, up to the
/// cap (`--connections`).
const CONNECTIONS_USED: u32 = 4;

/// The capabilities that change what mailreplica does, in the order they are shown.
const CAPABILITIES: [&str; 13] = [
    "UIDPLUS",
    "LITERAL+",
    "MULTIAPPEND",
    "MOVE",
    "CONDSTORE",
    "QRESYNC",
    "SPECIAL-USE",
    "LIST-STATUS",
    "BINARY",
    "COMPRESS=DEFLATE",
    "IDLE",
    "NOTIFY",
    "OBJECTID",
];

pub struct CheckCommand {
    pub args: CheckArgs,
}

#[derive(Debug, Serialize)]
struct CheckReport {
    source: SideReport,
    target: SideReport,
    /// Source folder -> target folder as `sync` would use them today (same path). `None` when a
    /// side could not be listed.
    mapping: Option<Vec<MappingRow>>,
    state_file: String,
    /// State keys this run wrote.
    stored: Vec<String>,
    exit_code: i32,
}

#[derive(Debug, Serialize)]
struct SideReport {
    role: &'static str,
    endpoint: String,
    /// True when the login succeeded.
    login: bool,
    /// The first error on this side, with what to do.
    error: Option<String>,
    capabilities: BTreeMap<&'static str, bool>,
    /// Everything the server advertised after login.
    advertised: Vec<String>,
    separator: Option<String>,
    /// The personal namespace prefix (`INBOX.`), left out of folder paths; empty when none.
    prefix: String,
    /// Selectable folders.
    folders: Option<usize>,
    special_use: Vec<SpecialUse>,
    fidelity: FidelityReport,
    connection_cap: u32,
    connections_used_by_sync: u32,
}

#[derive(Debug, Serialize)]
struct SpecialUse {
    folder: String,
    #[serde(rename = "use")]
    use_: String,
}

#[derive(Debug, Serialize)]
struct FidelityReport {
    /// `probed`, `not_probed`, `refused` or `failed`.
    status: &'static str,
    class: Option<FidelityClass>,
    transforms: Vec<Transform>,
    detail: String,
    probed_at: Option<u64>,
    cleanup: Option<Cleanup>,
}

#[derive(Debug, Serialize)]
struct MappingRow {
    source: Option<String>,
    target: String,
    /// `both`, `create` (only on the source: sync creates it), `special_use` (goes into the
    /// target's folder of the same special-use, under its name), `target_only` (left alone)
    /// or `cannot_name` (the target cannot hold this name as it is).
    status: &'static str,
}

impl SideReport {
    fn new(role: &'static str, endpoint: String) -> SideReport {
        SideReport {
            role,
            endpoint,
            login: false,
            error: None,
            capabilities: BTreeMap::new(),
            advertised: Vec::new(),
            separator: None,
            prefix: String::new(),
            folders: None,
            special_use: Vec::new(),
            fidelity: FidelityReport {
                status: "not_probed",
                class: None,
                transforms: Vec::new(),
                detail: String::new(),
                probed_at: None,
                cleanup: None,
            },
            connection_cap: CONNECTION_CAP,
            connections_used_by_sync: CONNECTIONS_USED,
        }
    }
}

/// The worst outcome so far: the first failure decides the exit code.
struct Outcome(ExitCode);

impl Outcome {
    fn fail(&mut self, code: ExitCode) {
        if self.0 == ExitCode::InSync {
            self.0 = code;
        }
    }
}

impl CheckCommand {
    pub async fn execute(self) -> ExitCode {
        let args = self.args;
        let (pair, id, state_path) = match args.pair.resolve_with_state(args.state.as_deref()) {
            Ok(r) => r,
            Err(code) => return code,
        };
        // Opened first: a foreign or locked state file stops the check before any server is
        // written to.
        let state = match StateFile::open(&state_path, &id) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::of_state(&e);
            }
        };
        let mut outcome = Outcome(ExitCode::InSync);
        let source_access = if args.probe_source {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let mut source = SideReport::new("source", pair.source.endpoint.to_string());
        let mut target = SideReport::new("target", pair.target.endpoint.to_string());
        let mut source_store = login(&pair.source, source_access, &mut source, &mut outcome).await;
        let mut target_store =
            login(&pair.target, Access::ReadWrite, &mut target, &mut outcome).await;
        let source_folders = match &mut source_store {
            Some(s) => describe(s, &mut source, &mut outcome).await,
            None => None,
        };
        let target_folders = match &mut target_store {
            Some(s) => describe(s, &mut target, &mut outcome).await,
            None => None,
        };
        let mapping = match (&source_folders, &target_folders, &target_store) {
            (Some(s), Some(t), Some(store)) => Some(mapping(s, t, store.delimiter())),
            _ => None,
        };

        let now = unix_now();
        let mut stored = Vec::new();
        let mut probes: Vec<(&mut SideReport, &mut Option<AnyStore>, &SideConfig)> =
            vec![(&mut target, &mut target_store, &pair.target)];
        if args.probe_source {
            probes.insert(0, (&mut source, &mut source_store, &pair.source));
        } else {
            source.fidelity.detail =
                "not probed: the source is the live mailbox and is only read; \
--probe-source probes it too (one message in a folder of its own, removed at once)"
                    .into();
        }
        for (side, store, config) in probes {
            let Some(s) = store.as_mut() else {
                side.fidelity.detail = "not probed: no login".into();
                continue;
            };
            let nonce = format!("{now}-{}-{}", std::process::id(), side.role);
            let mut report = probe::run_probe(s, &nonce).await;
            if let Some(trace) = report.retry_cleanup.take() {
                // The connection was lost mid-probe: clean up on a new one.
                match AnyStore::connect(config, Access::ReadWrite).await {
                    Ok(mut fresh) => {
                        let first = report.cleanup.detail.clone();
                        report.cleanup = match probe::clean_up(&mut fresh, &trace).await {
                            Ok(c) | Err(c) => c,
                        };
                        report.cleanup.detail = format!(
                            "{} (on a new connection, after: {first})",
                            report.cleanup.detail
                        );
                        fresh.logout().await;
                    }
                    Err(e) => {
                        report.cleanup.detail = format!(
                            "{} (reconnecting to clean up failed: {e})",
                            report.cleanup.detail
                        )
                    }
                }
            }
            if !report.cleanup.clean {
                outcome.fail(ExitCode::Attention);
            }
            let f = &mut side.fidelity;
            f.cleanup = Some(report.cleanup);
            f.probed_at = Some(now);
            match report.outcome {
                ProbeOutcome::Classified(verdict) => {
                    f.status = "probed";
                    f.class = Some(verdict.class);
                    f.transforms = verdict.transforms.clone();
                    f.detail = verdict.detail.clone();
                    let record = FidelityRecord::new(&verdict, &side.endpoint, now);
                    let key = probe::meta_key(side.role);
                    match serde_json::to_vec(&record)
                        .map_err(|e| e.to_string())
                        .and_then(|json| state.set_meta(&key, &json).map_err(|e| e.to_string()))
                    {
                        Ok(()) => stored.push(key),
                        Err(e) => {
                            eprintln!(
                                "error: could not store the {} fidelity class in {}: {e}",
                                side.role,
                                state_path.display()
                            );
                            outcome.fail(ExitCode::Usage);
                        }
                    }
                }
                ProbeOutcome::Refused(e) => {
                    f.status = "refused";
                    f.detail = format!("the server refused the probe message: {e}");
                    outcome.fail(ExitCode::of_store(&e));
                }
                ProbeOutcome::Failed(e) => {
                    f.status = "failed";
                    f.detail = format!("the probe failed: {e}");
                    side.error.get_or_insert_with(|| e.to_string());
                    outcome.fail(ExitCode::of_store(&e));
                }
            }
        }
        if let Some(s) = source_store.as_mut() {
            s.logout().await;
        }
        if let Some(t) = target_store.as_mut() {
            t.logout().await;
        }

        let report = CheckReport {
            source,
            target,
            mapping,
            state_file: state_path.display().to_string(),
            stored,
            exit_code: outcome.0 as i32,
        };
        // Problems also go to stderr, as every command reports them, whatever stdout carries.
        for side in [&report.source, &report.target] {
            if let Some(e) = &side.error {
                eprintln!("error: {}: {e}", side.role);
            }
            if matches!(side.fidelity.status, "refused" | "failed") {
                eprintln!("error: {}: {}", side.role, side.fidelity.detail);
            }
            if let Some(c) = side.fidelity.cleanup.as_ref().filter(|c| !c.clean) {
                eprintln!("attention: {}: {}", side.role, c.detail);
            }
        }
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&report).unwrap_or_else(|_| "{}".into())
            );
        } else {
            print_report(&report);
        }
        outcome.0
    }
}

async fn login(
    config: &SideConfig,
    access: Access,
    side: &mut SideReport,
    outcome: &mut Outcome,
) -> Option<AnyStore> {
    match AnyStore::connect(config, access).await {
        Ok(store) => {
            side.login = true;
            let caps = store.capabilities();
            side.capabilities = CAPABILITIES.iter().map(|c| (*c, caps.has(c))).collect();
            side.advertised = caps.raw.clone();
            side.separator = store.delimiter().map(String::from);
            side.prefix = store.namespace_prefix().to_string();
            Some(store)
        }
        Err(e) => {
            side.error = Some(e.to_string());
            outcome.fail(ExitCode::of_store(&e));
            None
        }
    }
}

/// Lists the side's folders into the report; `None` when the listing failed.
async fn describe(
    store: &mut AnyStore,
    side: &mut SideReport,
    outcome: &mut Outcome,
) -> Option<Vec<FolderInfo>> {
    match store.list_folders().await {
        Ok(folders) => {
            side.folders = Some(folders.iter().filter(|f| f.selectable).count());
            side.special_use = folders
                .iter()
                .filter_map(|f| {
                    Some(SpecialUse {
                        folder: f.path.to_string(),
                        use_: f.special_use.clone()?,
                    })
                })
                .collect();
            Some(folders)
        }
        Err(e) => {
            side.error.get_or_insert_with(|| e.to_string());
            outcome.fail(ExitCode::of_store(&e));
            None
        }
    }
}

/// The folder mapping `sync` uses: every selectable source folder under the same path, but
/// special-use folders named apart (see `reconcile::folder_map`).
fn mapping(
    source: &[FolderInfo],
    target: &[FolderInfo],
    target_delimiter: Option<char>,
) -> Vec<MappingRow> {
    let map = FolderMap::build(source, target);
    let selectable = |list: &[FolderInfo]| -> BTreeSet<FolderPath> {
        list.iter()
            .filter(|f| f.selectable)
            .map(|f| f.path.clone())
            .collect()
    };
    let (on_source, on_target) = (selectable(source), selectable(target));
    let mut rows: Vec<MappingRow> = on_source
        .iter()
        .map(|p| (p, map.to_target(p)))
        .map(|(p, t)| MappingRow {
            source: Some(p.to_string()),
            target: t.to_string(),
            status: if &t != p {
                "special_use"
            } else if on_target.contains(p) {
                "both"
            } else if p.to_server_name(target_delimiter).is_none() {
                "cannot_name"
            } else {
                "create"
            },
        })
        .collect();
    let reached: BTreeSet<FolderPath> = on_source.iter().map(|p| map.to_target(p)).collect();
    rows.extend(on_target.difference(&reached).map(|p| MappingRow {
        source: None,
        target: p.to_string(),
        status: "target_only",
    }));
    rows
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn print_report(r: &CheckReport) {
    for side in [&r.source, &r.target] {
        println!("{} {}", side.role, side.endpoint);
        if !side.login {
            println!(
                "  login: FAILED: {}",
                side.error.as_deref().unwrap_or("unknown error")
            );
            continue;
        }
        println!("  login: ok");
        let caps: Vec<String> = CAPABILITIES
            .iter()
            .map(|c| {
                let yes = side.capabilities.get(c).copied().unwrap_or(false);
                format!("{c} {}", if yes { "yes" } else { "no" })
            })
            .collect();
        println!("  capabilities: {}", caps.join(", "));
        println!(
            "  separator: {}",
            side.separator
                .as_deref()
                .map(|s| format!("{s:?}"))
                .unwrap_or_else(|| "none (flat)".into())
        );
        if !side.prefix.is_empty() {
            println!(
                "  namespace prefix: {:?} (left out of folder paths)",
                side.prefix
            );
        }
        match side.folders {
            Some(n) => println!("  folders: {n}"),
            None => println!("  folders: not listed"),
        }
        if !side.special_use.is_empty() {
            let list: Vec<String> = side
                .special_use
                .iter()
                .map(|s| format!("{} ({})", s.folder, s.use_))
                .collect();
            println!("  special-use: {}", list.join(", "));
        }
        let f = &side.fidelity;
        match f.class {
            Some(class) => println!("  fidelity: {class}: {}", f.detail),
            None => println!("  fidelity: {}", f.detail),
        }
        if let Some(c) = &f.cleanup {
            println!(
                "  probe cleanup: {}{}",
                if c.clean { "" } else { "ATTENTION: " },
                c.detail
            );
        }
        println!(
            "  connections: at most {} (one-shot cap per side); sync opens up to {} by default (--connections)",
            side.connection_cap, side.connections_used_by_sync
        );
        if let Some(e) = &side.error {
            println!("  error: {e}");
        }
    }
    match &r.mapping {
        Some(rows) => {
            println!("folder mapping (source -> target):");
            for row in rows {
                match (&row.source, row.status) {
                    (Some(s), "both") => println!("  {s} -> {} (exists on both)", row.target),
                    (Some(s), "create") => println!("  {s} -> {} (would be created)", row.target),
                    (Some(s), "special_use") => {
                        println!(
                            "  {s} -> {} (the target's folder of the same special-use)",
                            row.target
                        )
                    }
                    (Some(s), _) => println!(
                        "  {s} -> cannot be named on the target (a component holds its separator)"
                    ),
                    (None, _) => println!("  {} (only on the target; left alone)", row.target),
                }
            }
        }
        None => println!("folder mapping: not available (a side could not be listed)"),
    }
    if !r.stored.is_empty() {
        println!("state {}: stored {}", r.state_file, r.stored.join(", "));
    }
}
