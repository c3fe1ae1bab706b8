//! `mailreplica migrate`: a one-way copy to another provider, on the sync engine: the source
//! only read, the target only gaining messages, a folder and message selection, verify at the
//! end.

use super::args::{MigrateArgs, Preset, VerifyArgs};
use super::exit::ExitCode;
use super::sync::SyncCommand;
use super::verify::VerifyCommand;
use super::JsonSink;
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
        // With --json, one document: the copy's summary, with verify's report as `verify`.
        let summary: JsonSink = Default::default();
        let copied = SyncCommand {
            args: args.sync,
            selection,
            keep_target_messages: true,
            folder_rules: rules.clone(),
            json_sink: Some(summary.clone()),
        }
        .execute()
        .await;
        let verify = !(dry_run || args.no_verify || !matches!(copied, ExitCode::InSync));
        if verify && !everything && !json {
            println!(
                "verify skipped: the selection leaves folders or messages out, so the accounts differ on purpose"
            );
        }
        if !verify || !everything {
            print_json(json, &summary, None);
            return copied;
        }
        if !json {
            println!("verifying both accounts...");
        }
        let report: JsonSink = Default::default();
        let verified = VerifyCommand {
            args: VerifyArgs {
                pair,
                state,
                json,
                strict: false,
            },
            folder_rules: rules,
            json_sink: Some(report.clone()),
        }
        .execute()
        .await;
        print_json(json, &summary, Some(&report));
        verified
    }
}

/// Prints the `--json` document of a migration: the copy's summary (when the copy got as
/// far as one), with verify's report under `verify` when verify ran.
fn print_json(json: bool, summary: &JsonSink, report: Option<&JsonSink>) {
    let take = |sink: &JsonSink| sink.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(mut doc) = take(summary) else {
        return;
    };
    if let (Some(report), Some(object)) = (report.and_then(take), doc.as_object_mut()) {
        object.insert("verify".into(), report);
    }
    if json {
        println!("{doc}");
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
