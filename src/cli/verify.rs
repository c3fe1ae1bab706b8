//! `mailreplica verify`: compare the two sides and list every difference.

use super::args::VerifyArgs;
use super::exit::ExitCode;
use super::pair::connect;
use crate::engine::verify::verify;
use crate::mailstore::{Access, MailStore};

pub struct VerifyCommand {
    pub args: VerifyArgs,
}

impl VerifyCommand {
    pub async fn execute(self) -> ExitCode {
        let pair = match self.args.pair.resolve() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::of_config(&e);
            }
        };
        let mut source = match connect(&pair.source, Access::ReadOnly, "source").await {
            Ok(s) => s,
            Err(code) => return code,
        };
        let mut target = match connect(&pair.target, Access::ReadOnly, "target").await {
            Ok(s) => s,
            Err(code) => return code,
        };
        let result = verify(&mut source, &mut target, 16 << 20).await;
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
