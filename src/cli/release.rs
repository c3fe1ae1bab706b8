//! `mailreplica release`: let the next sync apply removals the removal budget held.

use super::args::ReleaseArgs;
use super::exit::ExitCode;
use crate::state::StateFile;

pub struct ReleaseCommand {
    pub args: ReleaseArgs,
}

impl ReleaseCommand {
    pub fn execute(self) -> ExitCode {
        let path = &self.args.state;
        let opened = StateFile::open_read_only(path)
            .and_then(|ro| ro.pair_id())
            .and_then(|id| StateFile::open(path, &id));
        let state = match opened {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::of_state(&e);
            }
        };
        match state.release(self.args.folder.as_deref()) {
            Ok(n) => {
                println!("released {n} held removal(s); the next sync applies them");
                ExitCode::InSync
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::of_state(&e)
            }
        }
    }
}
