//! Running the mailreplica binary from tests, and comparing whole accounts through the
//! independent test client.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::support::imap_client::TestImap;
use crate::support::servers::ca_file;

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `--json` summary printed on stdout.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn count(&self, key: &str) -> u64 {
        self.json()[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {}", self.stdout))
    }
}

/// Both passwords set to the test password.
pub const PASSWORDS: [(&str, &str); 2] = [
    ("MAILREPLICA_SOURCE_PASSWORD", "test"),
    ("MAILREPLICA_TARGET_PASSWORD", "test"),
];

/// Runs `mailreplica ARGS` with both passwords set to the test password and the test CA.
pub async fn mailreplica(args: &[&str]) -> Run {
    mailreplica_env(args, &PASSWORDS).await
}

pub async fn mailreplica_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailreplica"));
    cmd.args(args)
        .env_remove("MAILREPLICA_SOURCE_PASSWORD")
        .env_remove("MAILREPLICA_TARGET_PASSWORD");
    if args.first().is_some_and(|a| {
        matches!(
            *a,
            "sync" | "verify" | "check" | "failover" | "failback" | "migrate"
        )
    }) {
        cmd.arg("--ca-file").arg(ca_file());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `mailreplica COMMAND --source SOURCE --target TARGET --state STATE EXTRA…` with only `env`
/// set (no password unless `env` has one; the test CA as [`mailreplica_env`] adds it).
pub async fn on_pair(
    command: &str,
    source: &str,
    target: &str,
    state: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let state = state.to_string_lossy().into_owned();
    let mut args = vec![
        command, "--source", source, "--target", target, "--state", &state,
    ];
    args.extend_from_slice(extra);
    mailreplica_env(&args, env).await
}

/// `sync --json` between two URLs with a state file.
pub async fn sync(source: &str, target: &str, state: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    on_pair("sync", source, target, state, &args, &PASSWORDS).await
}

pub async fn verify(source: &str, target: &str) -> Run {
    mailreplica(&["verify", "--source", source, "--target", target]).await
}

/// One message as compared across servers: content, flags (case-folded), INTERNALDATE instant.
pub type Key = (String, String, i64);

/// Every selectable folder of an account with its messages as a sorted multiset of keys.
pub async fn account(imap: &mut TestImap) -> BTreeMap<String, Vec<Key>> {
    let mut out = BTreeMap::new();
    for folder in imap.folders().await {
        let mut keys: Vec<Key> = imap
            .messages(&folder)
            .await
            .into_iter()
            .map(|m| {
                let flags: Vec<String> = m.flags.iter().map(|f| f.to_ascii_lowercase()).collect();
                let ts = m.internaldate_timestamp();
                (m.sha256, flags.join(" "), ts)
            })
            .collect();
        keys.sort();
        out.insert(folder, keys);
    }
    out
}

/// Asserts two accounts are equal folder by folder, with a readable diff of what differs.
pub fn assert_same_accounts(a: &BTreeMap<String, Vec<Key>>, b: &BTreeMap<String, Vec<Key>>) {
    let fa: Vec<&String> = a.keys().collect();
    let fb: Vec<&String> = b.keys().collect();
    assert_eq!(fa, fb, "folder lists differ");
    for (folder, ka) in a {
        let kb = &b[folder];
        if ka != kb {
            let only_a: Vec<&Key> = ka.iter().filter(|k| !kb.contains(k)).collect();
            let only_b: Vec<&Key> = kb.iter().filter(|k| !ka.contains(k)).collect();
            panic!("folder {folder}: {} vs {} messages; only in first: {only_a:?}; only in second: {only_b:?}", ka.len(), kb.len());
        }
    }
}
