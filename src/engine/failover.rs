//! The failed-over mark of a pair: set by `failover`, cleared by `failback`; while it is set the
//! base is frozen and every one-way command refuses to write.
//!
//! The mark lives in the state's `meta` table under [`META_KEY`] as JSON. It has two phases:
//! [`Phase::Frozen`] from `failover` until a failback applied its whole plan, then
//! [`Phase::Rebuilding`] while failback throws the old base away (the next base is rebuilt
//! by a one-way pass that adopts, by identity, what both sides now hold). A one-way pass
//! refuses in both phases: the old base no longer describes either side.
//!
//! A running `watch` holds the state file, so `failover` cannot write the mark there. It then
//! leaves a request file beside the state (`<state>.failover`, see [`request_path`]); every
//! one-way pass looks for it before anything else ([`refuse_if_failed_over`]), records the mark
//! in the state it holds and removes the file, which is how `failover` learns the running
//! agent took it. (DESIGN.md names a control socket; a file needs no listener, survives a
//! restart of the agent, and is checked at the same point a socket message would be.)

use serde::{Deserialize, Serialize};

use super::EngineError;
use crate::state::StateFile;

/// The `meta` key of the mark.
pub const META_KEY: &str = "failed_over";

/// Where a failed-over pair stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Failed over: the base is frozen, both sides may change freely.
    Frozen,
    /// A failback applied its plan to both sides; the old base is being replaced.
    Rebuilding,
}

/// The mark as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedOver {
    /// Unix seconds of the `failover` call.
    pub since: u64,
    pub phase: Phase,
}

impl std::fmt::Display for FailedOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.phase {
            Phase::Frozen => write!(
                f,
                "the pair is failed over since {} (unix {}): one-way replication is stopped so that nothing overwrites the recovery side; run `mailreplica failback` to merge both sides and resume replication (`failback --dry-run` shows the plan first)",
                format_utc(self.since),
                self.since
            ),
            Phase::Rebuilding => write!(
                f,
                "the pair was failed over since {} (unix {}) and a failback merged both sides but stopped before it finished; run `mailreplica failback` again to finish it",
                format_utc(self.since),
                self.since
            ),
        }
    }
}

/// The mark, if the pair is failed over. An unreadable mark still reads as failed over (the
/// safe reading: nothing one-way is written).
pub fn failed_over(state: &StateFile) -> Result<Option<FailedOver>, EngineError> {
    Ok(state
        .meta(META_KEY)?
        .filter(|raw| !raw.is_empty())
        .map(|raw| {
            serde_json::from_slice(&raw).unwrap_or(FailedOver {
                since: 0,
                phase: Phase::Frozen,
            })
        }))
}

/// Records the mark (one durable commit).
pub fn set_failed_over(state: &StateFile, mark: &FailedOver) -> Result<(), EngineError> {
    let raw = serde_json::to_vec(mark).map_err(|e| {
        EngineError::State(crate::state::StateError::Io {
            path: state.path().to_path_buf(),
            detail: format!("cannot encode the failover mark: {e}"),
        })
    })?;
    Ok(state.set_meta(META_KEY, &raw)?)
}

/// Clears the mark: the pair is back to one-way replication.
pub fn clear_failed_over(state: &StateFile) -> Result<(), EngineError> {
    Ok(state.set_meta(META_KEY, &[])?)
}

/// The failover request left beside a state file a running agent holds.
pub fn request_path(state: &std::path::Path) -> std::path::PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".failover");
    std::path::PathBuf::from(name)
}

/// Leaves a failover request for the agent holding the state (written whole, then renamed).
pub fn write_request(state: &std::path::Path, since: u64) -> std::io::Result<()> {
    let path = request_path(state);
    let tmp = path.with_extension("failover.tmp");
    let raw = serde_json::to_vec(&FailedOver {
        since,
        phase: Phase::Frozen,
    })
    .unwrap_or_default();
    std::fs::write(&tmp, raw)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// A request left by `failover` becomes the mark in the state (kept when the pair is already
/// failed over), then the request file goes.
pub fn take_request(state: &StateFile) -> Result<(), EngineError> {
    let path = request_path(state.path());
    let Ok(raw) = std::fs::read(&path) else {
        return Ok(());
    };
    if failed_over(state)?.is_none() {
        let mark = serde_json::from_slice(&raw).unwrap_or(FailedOver {
            since: unix_now(),
            phase: Phase::Frozen,
        });
        set_failed_over(state, &mark)?;
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Every one-way pass starts here: a failed-over pair (or one with a failover request) is
/// refused before anything is read.
pub fn refuse_if_failed_over(state: &StateFile) -> Result<(), EngineError> {
    take_request(state)?;
    match failed_over(state)? {
        Some(mark) => Err(EngineError::FailedOver(mark)),
        None => Ok(()),
    }
}

/// `2024-05-01 10:00:00 UTC`, from unix seconds (no time zone database needed).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_civil() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_714_557_600), "2024-05-01 10:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn the_mark_round_trips_and_refuses_one_way_passes() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::open(&dir.path().join("s.redb"), "pair").unwrap();
        assert!(refuse_if_failed_over(&state).is_ok());
        let mark = FailedOver {
            since: 1_714_557_600,
            phase: Phase::Frozen,
        };
        set_failed_over(&state, &mark).unwrap();
        assert_eq!(failed_over(&state).unwrap(), Some(mark));
        let err = refuse_if_failed_over(&state).unwrap_err().to_string();
        assert!(err.contains("failed over since 2024-05-01"), "{err}");
        assert!(err.contains("mailreplica failback"), "{err}");
        clear_failed_over(&state).unwrap();
        assert_eq!(failed_over(&state).unwrap(), None);
    }

    #[test]
    fn a_request_left_beside_the_state_becomes_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let state = StateFile::open(&path, "pair").unwrap();
        write_request(&path, 1_714_557_600).unwrap();
        assert!(request_path(&path).exists());
        let err = refuse_if_failed_over(&state).unwrap_err().to_string();
        assert!(err.contains("failed over since 2024-05-01"), "{err}");
        assert!(!request_path(&path).exists(), "the request is taken once");
        assert_eq!(failed_over(&state).unwrap().unwrap().since, 1_714_557_600);
    }
}
