//! A `mailreplica watch` process run in the background by a test (output in a log file,
//! SIGTERM to stop, killed on drop), and waiting, with a deadline, until it has brought a
//! recovery account in step with its primary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::mr::{account, assert_same_accounts};
use crate::support::imap_client::TestImap;
use crate::support::servers::{ca_file, TestServer};

/// A `mailreplica watch` running in the background, its output in a file.
pub struct Watch {
    child: Option<Child>,
    log: PathBuf,
}

impl Watch {
    /// Starts `mailreplica watch ARGS` with the test password in the environment (both sides,
    /// and `MR_WATCH_TEST_PASSWORD` for config files), short retry delays and debug logs.
    pub fn spawn(args: &[&str], log: &Path) -> Watch {
        Watch::spawn_with(args, log, &[])
    }

    /// `watch --source SOURCE --target TARGET --state STATE --ca-file <the test CA> EXTRA…`: one
    /// pair named on the command line.
    pub fn spawn_pair(
        source: &str,
        target: &str,
        state: &Path,
        extra: &[&str],
        log: &Path,
    ) -> Watch {
        let state = state.display().to_string();
        let ca = ca_file().display().to_string();
        let mut args = vec![
            "--source",
            source,
            "--target",
            target,
            "--state",
            &state,
            "--ca-file",
            &ca,
        ];
        args.extend_from_slice(extra);
        Watch::spawn(&args, log)
    }

    /// Like [`Watch::spawn`], with more environment variables (those `spawn` sets override
    /// these).
    pub fn spawn_with(args: &[&str], log: &Path, env: &[(&str, &str)]) -> Watch {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mailreplica"))
            .envs(env.iter().copied())
            .arg("watch")
            .args(args)
            .env("MAILREPLICA_SOURCE_PASSWORD", "test")
            .env("MAILREPLICA_TARGET_PASSWORD", "test")
            .env("MR_WATCH_TEST_PASSWORD", "test")
            .env("MAILREPLICA_BACKOFF_MS", "200")
            .env("RUST_LOG", "mailreplica=debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Watch {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Polls `ready` until it holds; panics with the log when the process exits first or
    /// `deadline` passes (a deadline, not a measure).
    pub async fn wait_until(
        &mut self,
        what: &str,
        deadline: Duration,
        mut ready: impl FnMut(&Watch) -> bool,
    ) {
        self.poll(what, deadline, async |w: &Watch| {
            if ready(w) {
                Ok(())
            } else {
                Err(String::new())
            }
        })
        .await
    }

    /// Runs `probe` every 200 ms until it gives a value (`Err`: not yet, and what it saw);
    /// panics with what it saw last and the log when the process exits first or `deadline`
    /// passes (a deadline, not a measure).
    pub async fn poll<T>(
        &mut self,
        what: &str,
        deadline: Duration,
        mut probe: impl AsyncFnMut(&Watch) -> Result<T, String>,
    ) -> T {
        let start = Instant::now();
        loop {
            let seen = match probe(self).await {
                Ok(value) => return value,
                Err(seen) if seen.is_empty() => seen,
                Err(seen) => format!(" (last seen: {seen})"),
            };
            assert!(
                self.is_running(),
                "watch exited while waiting for {what}{seen}; log:\n{}",
                self.log()
            );
            assert!(
                start.elapsed() < deadline,
                "{what}: not within {} s{seen}; watch log:\n{}",
                deadline.as_secs(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit (at most `wait`); the exit code.
    pub async fn terminate(&mut self, wait: Duration) -> i32 {
        let mut child = self.child.take().expect("running");
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on the pid of the child this test spawned.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if start.elapsed() > wait {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "watch did not exit within {} s of SIGTERM; log:\n{}",
                    wait.as_secs(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One account on one test server.
#[derive(Clone, Copy)]
pub struct Account<'a> {
    pub server: &'a TestServer,
    pub user: &'a str,
}

impl Account<'_> {
    pub async fn connect(&self) -> TestImap {
        TestImap::connect(self.server, self.user).await
    }
}

/// Folder -> message count (STATUS), over the whole account: cheap enough to poll.
async fn counts(imap: &mut TestImap) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for folder in imap.folders().await {
        let (_, _, n) = imap.status(&folder).await;
        out.push((folder, n));
    }
    out
}

/// Polls until the recovery account equals the primary account (folders, and per folder the
/// multiset of content, flags and INTERNALDATE), or fails after `deadline` with the
/// difference and the watch's log. Counts are compared first, so a large account is read in
/// full only once the counts agree.
pub async fn wait_in_step(
    primary: Account<'_>,
    recovery: Account<'_>,
    watch: &mut Watch,
    what: &str,
    deadline: Duration,
) {
    let start = Instant::now();
    let mut p = primary.connect().await;
    let mut r = recovery.connect().await;
    loop {
        if counts(&mut p).await == counts(&mut r).await
            && account(&mut p).await == account(&mut r).await
        {
            p.logout().await;
            r.logout().await;
            return;
        }
        assert!(
            watch.is_running(),
            "watch exited while waiting for {what}; log:\n{}",
            watch.log()
        );
        if start.elapsed() > deadline {
            eprintln!("watch log:\n{}", watch.log());
            assert_same_accounts(&account(&mut p).await, &account(&mut r).await);
            panic!("{what}: accounts differ (in content, flags or dates)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
