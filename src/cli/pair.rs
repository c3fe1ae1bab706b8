//! Turns the pair arguments into validated side configurations and open connections.

use std::time::Duration;

use super::args::PairArgs;
use super::exit::ExitCode;
use crate::config::{AuthOptions, ConfigError, Endpoint, Mechanism, PasswordSource, SideConfig};
use crate::mailstore::any::AnyStore;
use crate::mailstore::imap::transport::TlsOptions;
use crate::mailstore::Access;

/// Both sides, resolved. Errors are printed by the caller.
pub struct Pair {
    pub source: SideConfig,
    pub target: SideConfig,
}

impl PairArgs {
    /// The pair, its id and its state file (`state`, or the pair's default path); errors are
    /// printed here and returned as the exit code to use.
    pub fn resolve_with_state(
        &self,
        state: Option<&std::path::Path>,
    ) -> Result<(Pair, String, std::path::PathBuf), ExitCode> {
        let mut pair = self.resolve().map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::of_config(&e)
        })?;
        let (id, path) = self.state_only(state)?;
        pair.source.keep_ids_beside(&path, "source");
        pair.target.keep_ids_beside(&path, "target");
        Ok((pair, id, path))
    }

    /// The pair's id and state file without its passwords, for commands that touch no server
    /// (`failover`: at 3 a.m. the primary is down and its password may be out of reach).
    pub fn state_only(
        &self,
        state: Option<&std::path::Path>,
    ) -> Result<(String, std::path::PathBuf), ExitCode> {
        let endpoints =
            Endpoint::parse(&self.source).and_then(|s| Ok((s, Endpoint::parse(&self.target)?)));
        let (source, target) = endpoints.map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::of_config(&e)
        })?;
        let id = crate::engine::pair::pair_id(&source, &target);
        let path = state
            .map(std::path::Path::to_path_buf)
            .or_else(|| crate::engine::pair::default_state_path(&id))
            .ok_or_else(|| {
                eprintln!(
                    "error: no state file location: set XDG_STATE_HOME or HOME, or pass --state FILE"
                );
                ExitCode::Usage
            })?;
        Ok((id, path))
    }

    pub fn resolve(&self) -> Result<Pair, ConfigError> {
        let source = Endpoint::parse(&self.source)?;
        let target = Endpoint::parse(&self.target)?;
        if self.insecure {
            eprintln!("warning: --insecure: TLS certificates are NOT checked; anyone on the path can read the mail and the passwords");
        }
        let tls = TlsOptions {
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
        };
        let timeout = Duration::from_secs(self.timeout.max(1));
        let side = |endpoint: Endpoint,
                    name: &str,
                    file: &Option<std::path::PathBuf>,
                    command: &Option<String>,
                    env: &str,
                    mechanism: Mechanism,
                    admin: &Option<String>| {
            let source = PasswordSource {
                file: file.clone(),
                command: command.clone(),
                env_var: env.to_string(),
            };
            let (auth, password) =
                AuthOptions::resolve(mechanism, admin.clone(), &source, name, &endpoint)?;
            Ok::<_, ConfigError>(SideConfig {
                endpoint,
                password,
                auth,
                tls: tls.clone(),
                allow_plaintext: self.allow_plaintext,
                timeout,
                jmap_ids: None,
            })
        };
        Ok(Pair {
            source: side(
                source,
                "source",
                &self.source_password_file,
                &self.source_password_command,
                "MAILREPLICA_SOURCE_PASSWORD",
                self.source_auth,
                &self.source_admin,
            )?,
            target: side(
                target,
                "target",
                &self.target_password_file,
                &self.target_password_command,
                "MAILREPLICA_TARGET_PASSWORD",
                self.target_auth,
                &self.target_admin,
            )?,
        })
    }
}

/// Connects one side, printing a clear error on failure.
pub async fn connect(
    config: &SideConfig,
    access: Access,
    role: &str,
) -> Result<AnyStore, ExitCode> {
    AnyStore::connect(config, access).await.map_err(|e| {
        eprintln!("error: {role}: {e}");
        ExitCode::of_store(&e)
    })
}
