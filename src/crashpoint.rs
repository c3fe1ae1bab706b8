//! Crash points for crash tests: with `MAILREPLICA_CRASH_AT=<point>:<n>` the process kills
//! itself with SIGKILL the n-th time it reaches `<point>`, so a test can stop it at exactly the
//! step it wants (after the journal, inside a literal, after a tagged OK...) and check that a
//! re-run neither loses nor duplicates anything. Without the variable every call is a no-op.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

fn config() -> &'static Option<(String, u64)> {
    static CONFIG: OnceLock<Option<(String, u64)>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let raw = std::env::var("MAILREPLICA_CRASH_AT").ok()?;
        let (point, n) = raw.rsplit_once(':')?;
        Some((point.to_string(), n.parse().ok()?))
    })
}

/// Marks that the process reached `point`; kills it when the crash test asked for this hit.
pub fn hit(point: &str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    let Some((wanted, n)) = config() else { return };
    if wanted != point {
        return;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        // SAFETY: kill(2) on our own pid with SIGKILL has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
