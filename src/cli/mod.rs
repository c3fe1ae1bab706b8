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

/// Where a command's `--json` document goes instead of stdout, when another command prints
/// one document for both (`migrate`: the copy's summary with verify's report inside).
pub type JsonSink = std::sync::Arc<std::sync::Mutex<Option<serde_json::Value>>>;

/// Prints `value` as the command's `--json` document, or leaves it in `sink`.
pub fn emit_json<T: serde::Serialize>(value: &T, sink: Option<&JsonSink>) {
    match sink {
        Some(sink) => {
            let json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
            *sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(json);
        }
        None => println!(
            "{}",
            serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
        ),
    }
}

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Sync(args) => {
            sync::SyncCommand {
                args,
                selection: Default::default(),
                keep_target_messages: false,
                folder_rules: Default::default(),
                json_sink: None,
            }
            .execute()
            .await
        }
        Command::Migrate(args) => migrate::MigrateCommand { args }.execute().await,
        Command::Verify(args) => {
            verify::VerifyCommand {
                args,
                folder_rules: Default::default(),
                json_sink: None,
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
