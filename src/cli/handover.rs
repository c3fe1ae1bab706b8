//! Handing a request to the `watch` that holds a pair's state: a file left beside the state,
//! taken (removed) by the running agent, awaited a little by the command that left it; and the
//! one-object outcome such a command prints.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::exit::ExitCode;

/// How long a command waits for the running watch to take its request.
pub const WAIT: Duration = Duration::from_secs(10);

/// What becomes of a request the running watch did not take within [`WAIT`].
pub enum Untaken {
    /// Left in place: the agent takes it later (a failover, before its next pass).
    Leave,
    /// Withdrawn, so that it cannot act later on something nobody looked at again (a
    /// confirmation of a regression).
    Withdraw,
}

/// Writes the request at `request` with `write`, then waits up to [`WAIT`] (on the runtime's
/// timer) for the agent to take it. `Ok(true)` when it was taken; `Ok(false)` when it was not
/// (left or withdrawn as `untaken` says); `Err` when it could not be written.
pub async fn hand_to_watch(
    request: &Path,
    write: impl FnOnce() -> io::Result<()>,
    untaken: Untaken,
) -> io::Result<bool> {
    write()?;
    let deadline = Instant::now() + WAIT;
    while request.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !request.exists() {
        return Ok(true);
    }
    Ok(match untaken {
        Untaken::Leave => false,
        // Gone already when withdrawn: the agent took it just now.
        Untaken::Withdraw => {
            matches!(std::fs::remove_file(request), Err(e) if e.kind() == io::ErrorKind::NotFound)
        }
    })
}

/// Prints a command's outcome, `out` as one JSON object with `--json`, else its `message`;
/// exit 0.
pub fn report(out: &impl Serialize, message: &str, json: bool) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::to_string(out).unwrap_or_else(|_| "{}".into())
        );
    } else {
        println!("{message}");
    }
    ExitCode::InSync
}
