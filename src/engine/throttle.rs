//! The run's rate limits on what is written to the target (`--max-bytes-per-second`,
//! `--max-messages-per-second`): one token bucket per limit, shared by every connection to
//! the target account, so several folder workers share one budget.
//!
//! Each bucket is kept as a virtual clock (GCRA): `due` is when everything admitted so far is
//! paid for at the limit. Admitting `n` units moves `due` on by `n / rate` and waits until
//! `due` is at most `slack` ahead of now: a unit waits for its own turn, so over any window
//! of `T` seconds at most `rate * (T + slack)` units go out, whatever their sizes, and the
//! long-run rate is exactly the limit. `slack` is small (a tenth of a second of the rate, or
//! one message): it lets a batch's messages go out back to back, pipelined, instead of one
//! round trip each.
//!
//! What counts: APPEND counts one message and the bytes of its literal; UID COPY and UID MOVE
//! on the target count one message per UID and no bytes (no message crosses the wire, but the
//! provider stores a message: its message limits count them). Flag changes, listings and
//! removals are not limited.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The limits asked for; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateLimits {
    pub bytes_per_second: Option<u64>,
    pub messages_per_second: Option<f64>,
}

impl RateLimits {
    pub fn is_unlimited(&self) -> bool {
        self.bytes_per_second.is_none() && self.messages_per_second.is_none()
    }

    /// `5.0 MiB/s and 50 messages/s`, for the one line that says which limit is in effect.
    pub fn describe(&self) -> String {
        let bytes = self
            .bytes_per_second
            .map(|b| format!("{}/s", human_rate(b)));
        let messages = self
            .messages_per_second
            .map(|m| format!("{} messages/s", trim_float(m)));
        match (bytes, messages) {
            (Some(b), Some(m)) => format!("{b} and {m}"),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => "unlimited".into(),
        }
    }
}

fn human_rate(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{} GiB", trim_float(n as f64 / (1u64 << 30) as f64)),
        n if n >= 1 << 20 => format!("{} MiB", trim_float(n as f64 / (1u64 << 20) as f64)),
        n if n >= 1 << 10 => format!("{} KiB", trim_float(n as f64 / 1024.0)),
        n => format!("{n} B"),
    }
}

/// `50`, `0.5`, `2.25`: at most two decimals, none when whole.
fn trim_float(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One limit as a virtual clock (see the module docs).
#[derive(Debug)]
struct Bucket {
    /// Units per second.
    rate: f64,
    /// How far `due` may run ahead of now without waiting.
    slack: Duration,
    /// When everything admitted so far is paid for; `None` before the first admission.
    due: Option<Instant>,
}

impl Bucket {
    fn new(rate: f64, slack_units: f64) -> Bucket {
        let slack = (slack_units / rate).max(0.1);
        Bucket {
            rate,
            slack: Duration::from_secs_f64(slack),
            due: None,
        }
    }

    /// Where `due` would be after admitting `n` units now, and how long they must wait.
    fn peek(&self, n: f64, now: Instant) -> (Instant, Duration) {
        let start = self.due.map_or(now, |d| d.max(now));
        let due = start + Duration::from_secs_f64(n / self.rate);
        (due, due.saturating_duration_since(now + self.slack))
    }
}

/// The shared limiter of one target account.
#[derive(Debug)]
pub struct Throttle {
    limits: RateLimits,
    inner: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    bytes: Option<Bucket>,
    messages: Option<Bucket>,
    /// Time spent waiting for the limits, summed over the connections.
    waited: Duration,
}

impl Throttle {
    /// A limiter for these limits; `None` when there is none (nothing to pace).
    pub fn new(limits: RateLimits) -> Option<Throttle> {
        if limits.is_unlimited() {
            return None;
        }
        Some(Throttle {
            limits,
            inner: Mutex::new(Buckets {
                bytes: limits
                    .bytes_per_second
                    .map(|b| Bucket::new(b.max(1) as f64, 0.0)),
                messages: limits.messages_per_second.map(|m| Bucket::new(m, 1.0)),
                waited: Duration::ZERO,
            }),
        })
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Time spent waiting for the limits so far, summed over the connections.
    pub fn waited(&self) -> Duration {
        self.lock().waited
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        // The buckets are plain numbers: a panic elsewhere cannot leave them half changed.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits `messages` messages of `bytes` bytes: reserves their turn at once (so other
    /// connections queue behind them), then waits for it.
    pub async fn admit(&self, messages: u64, bytes: u64) {
        let wait = self.reserve(messages, bytes, false);
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Admits them only if they need not wait; false (and nothing reserved) otherwise. For
    /// joining more messages to a pipelined batch while the limits allow it.
    pub fn try_admit(&self, messages: u64, bytes: u64) -> bool {
        self.reserve(messages, bytes, true).is_some()
    }

    /// Reserves both limits at once; the wait is the longer of the two. With `only_if_free`,
    /// reserves nothing and returns `None` when there would be a wait.
    fn reserve(&self, messages: u64, bytes: u64, only_if_free: bool) -> Option<Duration> {
        let now = Instant::now();
        let mut b = self.lock();
        let by_bytes = b.bytes.as_ref().map(|k| k.peek(bytes as f64, now));
        let by_messages = b.messages.as_ref().map(|k| k.peek(messages as f64, now));
        let wait = [by_bytes, by_messages]
            .iter()
            .flatten()
            .map(|(_, w)| *w)
            .max()
            .unwrap_or(Duration::ZERO);
        if only_if_free && !wait.is_zero() {
            return None;
        }
        if let (Some(k), Some((due, _))) = (b.bytes.as_mut(), by_bytes) {
            k.due = Some(due);
        }
        if let (Some(k), Some((due, _))) = (b.messages.as_mut(), by_messages) {
            k.due = Some(due);
        }
        b.waited += wait;
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(bytes: Option<u64>, messages: Option<f64>) -> Throttle {
        Throttle::new(RateLimits {
            bytes_per_second: bytes,
            messages_per_second: messages,
        })
        .expect("limited")
    }

    #[test]
    fn no_limit_no_limiter() {
        assert!(Throttle::new(RateLimits::default()).is_none());
    }

    #[test]
    fn limits_are_described() {
        let l = |b, m| RateLimits {
            bytes_per_second: b,
            messages_per_second: m,
        };
        assert_eq!(l(Some(5 << 20), None).describe(), "5 MiB/s");
        assert_eq!(
            l(Some(1536), Some(50.0)).describe(),
            "1.5 KiB/s and 50 messages/s"
        );
        assert_eq!(l(None, Some(0.5)).describe(), "0.5 messages/s");
    }

    /// Sends `sizes` one after another through the limiter (paused clock) and returns how
    /// long the whole took.
    async fn run(t: &Throttle, sizes: &[u64]) -> Duration {
        let start = Instant::now();
        for &s in sizes {
            t.admit(1, s).await;
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_go_out_at_the_limit() {
        let t = limits(Some(1_000_000), None);
        // 60 MB in 100 KB messages at 1 MB/s: 60 s, less the slack of the start.
        let took = run(&t, &[100_000; 600]).await;
        let secs = took.as_secs_f64();
        assert!((59.8..=60.0).contains(&secs), "{secs}");
        // Uneven sizes: the rate holds whatever the mix.
        let t = limits(Some(1_000_000), None);
        let sizes: Vec<u64> = (0..500).map(|i| 10_000 + (i * 7919) % 200_000).collect();
        let total: u64 = sizes.iter().sum();
        let secs = run(&t, &sizes).await.as_secs_f64();
        let expected = total as f64 / 1e6;
        assert!(
            (expected - 0.2..=expected).contains(&secs),
            "{secs} s for {expected} s of bytes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn messages_go_out_at_the_limit_also_fractional() {
        let t = limits(None, Some(50.0));
        let secs = run(&t, &[1; 3000]).await.as_secs_f64();
        assert!((59.8..=60.0).contains(&secs), "{secs}");
        // Half a message per second: the first goes at once (a slack of one message), then
        // one every two seconds.
        let t = limits(None, Some(0.5));
        let secs = run(&t, &[1; 5]).await.as_secs_f64();
        assert!((7.9..=8.0).contains(&secs), "{secs}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_tighter_limit_wins() {
        // 10 messages/s of 1 MB each against 2 MB/s: the bytes decide (2 messages/s).
        let t = limits(Some(2_000_000), Some(10.0));
        let secs = run(&t, &[1_000_000; 20]).await.as_secs_f64();
        assert!((9.8..=10.0).contains(&secs), "{secs}");
    }

    #[tokio::test(start_paused = true)]
    async fn connections_share_one_budget() {
        // Four workers sending at once get a quarter of the limit each.
        let t = limits(Some(1_000_000), None);
        let start = Instant::now();
        let worker = |_| run(&t, &[50_000; 100]);
        futures::future::join_all((0..4).map(worker)).await;
        let secs = start.elapsed().as_secs_f64();
        assert!((19.8..=20.0).contains(&secs), "{secs}");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_is_not_saved_up() {
        // A pause does not let a burst out afterwards: at most the slack goes at once.
        let t = limits(Some(1_000_000), None);
        run(&t, &[100_000; 10]).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let secs = run(&t, &[100_000; 10]).await.as_secs_f64();
        assert!((0.8..=1.0).contains(&secs), "{secs}");
    }

    #[tokio::test(start_paused = true)]
    async fn joining_a_batch_takes_only_what_is_free() {
        let t = limits(None, Some(10.0));
        // A slack of a tenth of a second at 10/s is one message: the first is free, the
        // second would wait.
        assert!(t.try_admit(1, 0));
        assert!(!t.try_admit(1, 0));
        assert_eq!(t.waited(), Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(t.try_admit(1, 0));
    }
}
