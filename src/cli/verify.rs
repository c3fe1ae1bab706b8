//! `mailreplica verify`: compare the two sides and list every difference.

use std::collections::BTreeMap;

use super::args::VerifyArgs;
use super::exit::ExitCode;
use super::pair::connect;
use crate::engine::keywords::{is_refused, refused};
use crate::engine::mapped::{folder_map, Mapped};
use crate::engine::probe::stored_fidelity;
use crate::engine::verify::{verify_with, Accepted};
use crate::mailstore::{Access, MailStore};
use crate::model::{Fingerprint, Flag};
use crate::reconcile::fidelity::FidelityClass;
use crate::state::StateFile;

pub struct VerifyCommand {
    pub args: VerifyArgs,
    /// The folder renames the pair was copied with (`migrate`); none for `verify`.
    pub folder_rules: crate::reconcile::folder_map::Rules,
    /// With `--json`: where the report goes instead of stdout (see `cli::JsonSink`).
    pub json_sink: Option<super::JsonSink>,
}

impl VerifyCommand {
    pub async fn execute(self) -> ExitCode {
        let (mut pair, id, state_path) = match self
            .args
            .pair
            .resolve_with_state(self.args.state.as_deref())
        {
            Ok(r) => r,
            Err(code) => return code,
        };
        // A JMAP side is compared as it is (each email's own keywords, through the projection),
        // without the pair's UID map: verify needs no UIDs, and a running watch holds the map.
        pair.source.jmap_ids = None;
        pair.target.jmap_ids = None;
        let notes = fidelity_notes(&state_path, &id);
        let mut source = match connect(&pair.source, Access::ReadOnly, "source").await {
            Ok(s) => s,
            Err(code) => return code,
        };
        let mut target = match connect(&pair.target, Access::ReadOnly, "target").await {
            Ok(s) => s,
            Err(code) => return code,
        };
        // Compared through the folder mapping sync uses (special-use folders named apart).
        let result = match folder_map(&mut source, &mut target, &self.folder_rules).await {
            Ok((map, _, listing)) => {
                let mut mapped = Mapped::with_listing(target, std::sync::Arc::new(map), listing);
                let ignored = |f: &Flag| is_refused(&notes.keywords, f);
                let accepted = Accepted {
                    ignored: &ignored,
                    tolerant: notes.tolerant,
                    capped: notes.capped.clone(),
                    strict: self.args.strict,
                    gmail: self.folder_rules.gmail,
                };
                let r = verify_with(&mut source, &mut mapped, 16 << 20, &accepted).await;
                target = mapped.into_inner();
                r
            }
            Err(e) => Err(e.into()),
        };
        source.logout().await;
        target.logout().await;
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::of_engine(&e);
            }
        };
        if self.args.json {
            super::emit_json(&report, self.json_sink.as_ref());
        } else {
            for d in &report.notes {
                match d.folder.as_str() {
                    "" => println!("note: {}", d.what),
                    folder => println!("note: {folder}: {}", d.what),
                }
            }
            for d in &report.differences {
                println!("{}: {}", d.folder, d.what);
            }
            println!(
                "{} folder(s), {} message(s) compared: {}",
                report.folders,
                report.messages,
                if report.differences.is_empty() {
                    "in sync".to_string()
                } else {
                    format!("{} difference(s)", report.differences.len())
                }
            );
        }
        if report.differences.is_empty() {
            ExitCode::InSync
        } else {
            ExitCode::Differences
        }
    }
}

/// What the pair's state notes about the target (see [`Accepted`]).
#[derive(Default)]
struct Notes {
    keywords: BTreeMap<String, String>,
    tolerant: bool,
    capped: BTreeMap<(String, Fingerprint), u32>,
}

/// The pair's fidelity notes: keywords the target refuses, whether it keeps bytes (its stored
/// fidelity class), and copies refused over its identical-message limit. None when there is no
/// state file (or it cannot be read now, e.g. a sync holds it: then verify says so).
fn fidelity_notes(path: &std::path::Path, pair_id: &str) -> Notes {
    if !path.exists() {
        return Notes::default();
    }
    let read = |state: &StateFile| -> Result<Notes, crate::state::StateError> {
        let mut notes = Notes {
            keywords: refused(state)?,
            ..Notes::default()
        };
        notes.tolerant =
            stored_fidelity(state, "target")?.is_some_and(|r| r.class != FidelityClass::Exact);
        for ((folder, _), r) in state.refused(None)? {
            if let (true, Some(fp)) = (r.identical_copy, r.fingerprint) {
                *notes.capped.entry((folder, fp)).or_default() += 1;
            }
        }
        Ok(notes)
    };
    match StateFile::open(path, pair_id).and_then(|s| read(&s)) {
        Ok(n) => n,
        Err(e) => {
            eprintln!(
                "warning: fidelity notes not read from {}: {e}",
                path.display()
            );
            Notes::default()
        }
    }
}
