//! `mailreplica failback`: merge both sides three ways, print the plan, apply it, resume sync.

use super::args::FailbackArgs;
use super::exit::ExitCode;

pub struct FailbackCommand {
    pub args: FailbackArgs,
}

impl FailbackCommand {
    pub async fn execute(self) -> ExitCode {
        let _ = self.args;
        eprintln!("error: failback is not built yet");
        ExitCode::Usage
    }
}
