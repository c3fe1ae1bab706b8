//! `mailreplica migrate`: a one-way copy to another provider, on the sync engine: the source
//! only read, the target only gaining messages, a folder and message selection, verify at the
//! end.

use super::args::{MigrateArgs, Preset, VerifyArgs};
use super::exit::ExitCode;
use super::sync::SyncCommand;
use super::verify::VerifyCommand;
use crate::reconcile::folder_map::Rules;
use crate::reconcile::selection::{parse_day, Selection};

pub struct MigrateCommand {
    pub args: MigrateArgs,
}

impl MigrateCommand {
    pub async fn execute(self) -> ExitCode {
        let args = self.args;
        let selection = match selection(&args) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::Usage;
            }
        };
        let rules = match rules(&args) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::Usage;
            }
        };
        let everything = selection.selects_everything();
        let (pair, state, dry_run, json) = (
            args.sync.pair.clone(),
            args.sync.state.clone(),
            args.sync.dry_run,
            args.sync.json,
        );
        let copied = SyncCommand {
            args: args.sync,
            selection,
            keep_target_messages: true,
            folder_rules: rules.clone(),
        }
        .execute()
        .await;
        if dry_run || args.no_verify || !matches!(copied, ExitCode::InSync) {
            return copied;
        }
        if rules.gmail {
            if !json {
                println!(
                    "verify skipped: with --preset gmail, [Gmail]/All Mail is copied only in part (its labelled messages are in their folders), so the accounts differ on purpose"
                );
            }
            return copied;
        }
        if !everything {
            if !json {
                println!(
                    "verify skipped: the selection leaves folders or messages out, so the accounts differ on purpose"
                );
            }
            return copied;
        }
        if !json {
            println!("verifying both accounts...");
        }
        VerifyCommand {
            args: VerifyArgs {
                pair,
                state,
                json,
                strict: false,
            },
            folder_rules: rules,
        }
        .execute()
        .await
    }
}

/// The folder rules of the command line, then those of `--rules FILE`.
fn rules(args: &MigrateArgs) -> Result<Rules, String> {
    let mut rules = Rules::parse(&args.map, args.subfolder.clone())?;
    rules.gmail = args.preset == Some(Preset::Gmail);
    let Some(path) = &args.rules else {
        return Ok(rules);
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the rules file {shown}: {e}"))?;
    rules.with_file(&text, &shown)
}

fn selection(args: &MigrateArgs) -> Result<Selection, String> {
    let mut s = Selection::with_patterns(&args.include, &args.exclude)?;
    s.max_size = args.max_size;
    s.min_date = args.min_date.as_deref().map(parse_day).transpose()?;
    s.max_date = args.max_date.as_deref().map(parse_day).transpose()?;
    Ok(s)
}
