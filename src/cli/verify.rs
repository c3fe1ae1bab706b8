//! `mailreplica verify`: compare the two sides and list every difference.

use super::args::VerifyArgs;
use super::exit::ExitCode;
use super::pair::connect;
use crate::engine::mapped::{folder_map, Mapped};
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
        // Compared through the folder mapping sync uses (special-use folders named apart).
        let result = match folder_map(&mut source, &mut target).await {
            Ok((map, _, listing)) => {
                let mut mapped = Mapped::with_listing(target, std::sync::Arc::new(map), listing);
                let r = verify(&mut source, &mut mapped, 16 << 20).await;
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
