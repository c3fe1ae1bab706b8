//! `mailreplica verify`: compare the two sides and list every difference.

use std::collections::BTreeMap;

use super::args::VerifyArgs;
use super::exit::ExitCode;
use super::pair::connect;
use crate::engine::keywords::{is_refused, refused};
use crate::engine::mapped::{folder_map, Mapped};
use crate::engine::verify::verify_with;
use crate::mailstore::{Access, MailStore};
use crate::model::Flag;
use crate::state::StateFile;

pub struct VerifyCommand {
    pub args: VerifyArgs,
}

impl VerifyCommand {
    pub async fn execute(self) -> ExitCode {
        let (pair, id, state_path) = match self
            .args
            .pair
            .resolve_with_state(self.args.state.as_deref())
        {
            Ok(r) => r,
            Err(code) => return code,
        };
        let refused = refused_keywords(&state_path, &id);
        let mut source = match connect(&pair.source, Access::ReadOnly, "source").await {
            Ok(s) => s,
            Err(code) => return code,
        };
        let mut target = match connect(&pair.target, Access::ReadOnly, "target").await {
            Ok(s) => s,
            Err(code) => return code,
        };
        // Compared through the folder mapping sync uses (special-use folders named apart).
        let result = match folder_map(&mut source, &mut target).await {
            Ok((map, _, listing)) => {
                let mut mapped = Mapped::with_listing(target, std::sync::Arc::new(map), listing);
                let ignored = |f: &Flag| is_refused(&refused, f);
                let r = verify_with(&mut source, &mut mapped, 16 << 20, &ignored).await;
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
            println!(
                "{}",
                serde_json::to_string(&report).unwrap_or_else(|_| "{}".into())
            );
        } else {
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

/// The keywords the pair's state notes as refused by the target; none when there is no state
/// file (or it cannot be read now, e.g. a sync holds it: then verify says so).
fn refused_keywords(path: &std::path::Path, pair_id: &str) -> BTreeMap<String, String> {
    if !path.exists() {
        return BTreeMap::new();
    }
    match StateFile::open(path, pair_id).and_then(|s| refused(&s)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "warning: fidelity notes not read from {}: {e}",
                path.display()
            );
            BTreeMap::new()
        }
    }
}
