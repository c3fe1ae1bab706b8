//! The command line: argument definitions (clap), one file per subcommand, rendering of
//! progress and summaries. The only layer that prints.

pub mod args;
pub mod check;
pub mod exit;
pub mod failback;
pub mod failover;
pub mod handover;
pub mod man;
pub mod migrate;
pub mod pair;
pub mod progress;
pub mod release;
pub mod status;
pub mod sync;
pub mod verify;
pub mod watch;
pub mod watch_config;

pub use args::{Cli, Command};
pub use exit::ExitCode;

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Sync(args) => {
            sync::SyncCommand {
                args,
                selection: Default::default(),
                keep_target_messages: false,
                folder_rules: Default::default(),
            }
            .execute()
            .await
        }
        Command::Migrate(args) => migrate::MigrateCommand { args }.execute().await,
        Command::Verify(args) => {
            verify::VerifyCommand {
                args,
                folder_rules: Default::default(),
            }
            .execute()
            .await
        }
        Command::Status(args) => status::StatusCommand { args }.execute(),
        Command::Release(args) => release::ReleaseCommand { args }.execute(),
        Command::Check(args) => check::CheckCommand { args }.execute().await,
        Command::Failover(args) => failover::FailoverCommand { args }.execute().await,
        Command::Failback(args) => failback::FailbackCommand { args }.execute().await,
        Command::Watch(args) => watch::WatchCommand { args }.execute().await,
    }
}
