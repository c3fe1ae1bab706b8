//! `mailreplica sync`: one one-way pass from the source to the target.

use super::args::SyncArgs;
use super::exit::ExitCode;
use super::pair::connect;
use super::progress::{human_bytes, Progress};
use crate::engine::pair::{default_state_path, pair_id};
use crate::engine::sync::{sync, SyncOptions};
use crate::engine::SyncSummary;
use crate::mailstore::{Access, MailStore};
use crate::reconcile::Policy;
use crate::state::StateFile;

pub struct SyncCommand {
    pub args: SyncArgs,
}

impl SyncCommand {
    pub async fn execute(self) -> ExitCode {
        let args = self.args;
        let pair = match args.pair.resolve() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::of_config(&e);
            }
        };
        let id = pair_id(&pair.source.endpoint, &pair.target.endpoint);
        let Some(state_path) = args.state.clone().or_else(|| default_state_path(&id)) else {
            eprintln!(
                "error: no state file location: set XDG_STATE_HOME or HOME, or pass --state FILE"
            );
            return ExitCode::Usage;
        };
        let state = match StateFile::open(&state_path, &id) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::of_state(&e);
            }
        };
        let mut source = match connect(&pair.source, Access::ReadOnly, "source").await {
            Ok(s) => s,
            Err(code) => return code,
        };
        let target_access = if args.dry_run {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        let mut target = match connect(&pair.target, target_access, "target").await {
            Ok(s) => s,
            Err(code) => return code,
        };
        let progress = Progress::new(args.json);
        let options = SyncOptions {
            dry_run: args.dry_run,
            policy: Policy {
                allow_deletions: args.allow_deletions,
            },
            ..SyncOptions::default()
        };
        let result = sync(&mut source, &mut target, &state, &options, &progress).await;
        source.logout().await;
        target.logout().await;
        match result {
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!("nothing already synced was lost; run the same command again to resume");
                ExitCode::of_engine(&e)
            }
            Ok(summary) => {
                if let Ok(json) = serde_json::to_vec(&summary) {
                    let _ = state.set_meta("last_pass", &json);
                }
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string(&summary).unwrap_or_else(|_| "{}".into())
                    );
                } else {
                    print_summary(&summary);
                }
                if summary.needs_attention() {
                    ExitCode::Attention
                } else {
                    ExitCode::InSync
                }
            }
        }
    }
}

fn print_summary(s: &SyncSummary) {
    for action in &s.actions {
        println!("would {action}");
    }
    let verb = if s.dry_run { "dry run" } else { "synced" };
    println!(
        "{verb} {} -> {}: {} folder(s), {} created; {} message(s) copied ({}), {} adopted, {} flag update(s), {} removed, {} removal(s) held; {:.1} s",
        s.source,
        s.target,
        s.folders,
        s.folders_created,
        s.copied,
        human_bytes(s.bytes_uploaded),
        s.adopted,
        s.flags_updated,
        s.removed,
        s.removals_held,
        s.seconds
    );
    if s.target_only > 0 {
        println!(
            "{} message(s) exist only on the target and were left alone",
            s.target_only
        );
    }
    for note in &s.notices {
        println!("note: {note}");
    }
    for r in &s.refused {
        println!("refused: {r}");
    }
    if s.removals_held > 0 {
        println!("attention: removals were held; check the source, then run again with --allow-deletions to apply them");
    }
}
