//! Turns a configuration file into the pairs `watch` and `status` work on.

use std::collections::BTreeMap;
use std::path::Path;

use super::exit::ExitCode;
use super::watch::PairPlan;
use crate::config::{ConfigFile, WatchSection};

/// The pairs of a file and its settings.
pub struct Planned {
    pub pairs: Vec<PairPlan>,
    pub watch: WatchSection,
    /// `max_connections` per server name.
    pub max_connections: BTreeMap<String, u32>,
}

/// Every pair of the file, resolved; with `secrets`, passwords are read (not for `status`,
/// which reaches no server). Errors are printed here.
pub fn plans(path: &Path, secrets: bool) -> Result<Planned, ExitCode> {
    let config = ConfigFile::load(path)
        .and_then(|file| file.validate(path, secrets))
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::of_config(&e)
        })?;
    let mut pairs = Vec::with_capacity(config.pairs.len());
    for pair in config.pairs {
        let id = crate::engine::pair::pair_id(&pair.source.endpoint, &pair.target.endpoint);
        let Some(state) = pair
            .state
            .clone()
            .or_else(|| crate::engine::pair::default_state_path(&id))
        else {
            eprintln!(
                "error: pair {}: no state file location: set state_dir in [watch], state in the pair, or XDG_STATE_HOME",
                pair.name
            );
            return Err(ExitCode::Usage);
        };
        pairs.push(PairPlan {
            name: pair.name,
            id,
            source: pair.source,
            target: pair.target,
            source_server: Some(pair.source_server),
            target_server: Some(pair.target_server),
            state,
            allow_deletions: pair.allow_deletions,
        });
    }
    Ok(Planned {
        pairs,
        watch: config.watch,
        max_connections: config.max_connections,
    })
}
