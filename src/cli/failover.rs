//! `mailreplica failover`: freeze the pair's base at switch-over; sync refuses until failback.

use serde::Serialize;

use super::args::FailoverArgs;
use super::exit::ExitCode;
use super::handover::{hand_to_watch, report, Untaken};
use crate::engine::failover::{
    failed_over, format_utc, request_path, set_failed_over, take_request, unix_now, write_request,
    FailedOver, Phase,
};
use crate::state::{StateError, StateFile};

pub struct FailoverCommand {
    pub args: FailoverArgs,
}

#[derive(Debug, Serialize)]
struct Outcome {
    state_file: String,
    since: u64,
    /// False when the pair was already failed over (nothing changed).
    changed: bool,
    message: String,
}

impl FailoverCommand {
    /// Touches no server: the switch-over is a decision about the pair, recorded in its state.
    pub async fn execute(self) -> ExitCode {
        let args = self.args;
        let (id, path) = match args.pair.state_only(args.state.as_deref()) {
            Ok(r) => r,
            Err(code) => return code,
        };
        if !path.is_file() {
            eprintln!(
                "error: no state file at {}: this pair was never synced, so there is no base to freeze; fail over only a pair that `mailreplica sync` has replicated (or pass the --state FILE it used)",
                path.display()
            );
            return ExitCode::Usage;
        }
        let state = match StateFile::open(&path, &id) {
            Ok(s) => s,
            // A running watch holds the state: it takes the request before its next pass.
            Err(StateError::Locked { holder, .. }) => {
                return request(&path, &holder, args.json).await
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::of_state(&e);
            }
        };
        if let Err(e) = take_request(&state) {
            eprintln!("error: {e}");
            return ExitCode::of_engine(&e);
        }
        let (mark, changed) = match failed_over(&state) {
            Ok(Some(mark)) => (mark, false),
            Ok(None) => {
                let mark = FailedOver {
                    since: unix_now(),
                    phase: Phase::Frozen,
                };
                if let Err(e) = set_failed_over(&state, &mark) {
                    eprintln!("error: cannot record the failover in {}: {e}; nothing changed, run the command again", path.display());
                    return ExitCode::of_engine(&e);
                }
                (mark, true)
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::of_engine(&e);
            }
        };
        let message = if changed {
            format!(
                "pair failed over at {}: its base is frozen and sync refuses to run; point users at the recovery side, and run `mailreplica failback` when the primary is back",
                format_utc(mark.since)
            )
        } else {
            format!("already failed over: {mark}")
        };
        print_outcome(
            Outcome {
                state_file: path.display().to_string(),
                since: mark.since,
                changed,
                message,
            },
            args.json,
        )
    }
}

/// Prints what failover did (one JSON object with --json) and returns exit 0.
fn print_outcome(out: Outcome, json: bool) -> ExitCode {
    report(&out, &out.message, json)
}

/// Leaves the failover request for the agent holding the state and waits a little for it to
/// take it (it does before its next pass, so nothing one-way is written after that).
async fn request(path: &std::path::Path, holder: &str, json: bool) -> ExitCode {
    let since = unix_now();
    let request = request_path(path);
    let taken = match hand_to_watch(&request, || write_request(path, since), Untaken::Leave).await {
        Ok(taken) => taken,
        Err(e) => {
            eprintln!(
                "error: {holder} holds {} and the failover request could not be written beside it ({e}); stop that process, then run failover again",
                path.display()
            );
            return ExitCode::Usage;
        }
    };
    let message = if taken {
        format!(
            "pair failed over at {}: {holder} took the request and stopped one-way replication; point users at the recovery side, and run `mailreplica failback` when the primary is back (stop {holder} first)",
            format_utc(since)
        )
    } else {
        format!(
            "failover requested at {}: {holder} holds the state and takes the request before its next pass ({} until then); nothing one-way is written after that",
            format_utc(since),
            request.display()
        )
    };
    print_outcome(
        Outcome {
            state_file: path.display().to_string(),
            since,
            changed: true,
            message,
        },
        json,
    )
}
