//! One writer per state file: a lock file beside it holding the owner's pid.
//!
//! redb's own file lock makes a second process fail, but it cannot say who holds it. The lock
//! file can: `<state>.lock` is created exclusively and holds the pid; a lock whose process is
//! gone (killed, crashed) is stale and taken over.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::StateError;

/// Held for as long as the state file is open; removed on drop.
#[derive(Debug)]
pub struct StateLock {
    path: PathBuf,
}

impl StateLock {
    pub fn acquire(state_path: &Path) -> Result<StateLock, StateError> {
        let path = super::store::lock_path(state_path);
        let io = |detail: String| StateError::Io {
            path: path.clone(),
            detail,
        };
        for _ in 0..3 {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(&path) {
                Ok(mut file) => {
                    file.write_all(std::process::id().to_string().as_bytes())
                        .map_err(|e| io(e.to_string()))?;
                    return Ok(StateLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if pid != std::process::id() && process_alive(pid) => {
                            return Err(StateError::Locked {
                                path: state_path.to_path_buf(),
                                holder: format!("mailreplica process {pid}"),
                            });
                        }
                        // Stale (its process is gone) or unreadable: take it over.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(io(e.to_string())),
            }
        }
        Err(StateError::Locked {
            path: state_path.to_path_buf(),
            holder: "another process".into(),
        })
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            == Some(std::process::id());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.redb");
        let lock = StateLock::acquire(&state).unwrap();
        // Same process: treated as ours (re-acquire after a crash of a previous handle).
        drop(lock);
        assert!(!dir.path().join("s.redb.lock").exists());
        // A live other process (pid 1) holds it.
        std::fs::write(dir.path().join("s.redb.lock"), "1").unwrap();
        match StateLock::acquire(&state) {
            Err(StateError::Locked { holder, .. }) => {
                assert!(holder.contains("process 1"), "{holder}")
            }
            other => panic!("{other:?}"),
        }
        // A dead process: taken over.
        std::fs::write(dir.path().join("s.redb.lock"), "999999999").unwrap();
        let _lock = StateLock::acquire(&state).unwrap();
    }
}
