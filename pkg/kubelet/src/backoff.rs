//! Exponential back-off as the kubelet applies it to container restarts
//! (CrashLoopBackOff) and image pulls (ImagePullBackOff): the first retry
//! waits 10 s, each further one doubles up to 5 min, and a container that
//! ran for 10 min without failing starts over at 10 s. Pure: the caller
//! passes the clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// First delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// Largest delay.
pub const MAX: Duration = Duration::from_secs(300);
/// A run this long resets the back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// The back-off of one key (a container, or a container's image).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// The delay of the current window (zero before the first failure).
    pub delay: Duration,
    /// When the current window ends.
    pub until: Option<Instant>,
}

/// Back-off windows by key.
#[derive(Clone, Debug, Default)]
pub struct BackOff {
    entries: HashMap<String, Entry>,
}

impl BackOff {
    /// Time left in `key`'s window at `now` (None: free to go).
    pub fn remaining(&self, key: &str, now: Instant) -> Option<Duration> {
        let until = self.entries.get(key)?.until?;
        (until > now).then(|| until - now)
    }

    /// Records a failure (or a restart) of `key` at `now`: opens the next
    /// window and returns its delay.
    pub fn next(&mut self, key: &str, now: Instant) -> Duration {
        let e = self.entries.entry(key.to_string()).or_default();
        e.delay = if e.delay.is_zero() {
            INITIAL
        } else {
            (e.delay * 2).min(MAX)
        };
        e.until = Some(now + e.delay);
        e.delay
    }

    /// The delay of `key`'s current window (zero if none).
    pub fn delay(&self, key: &str) -> Duration {
        self.entries.get(key).map(|e| e.delay).unwrap_or_default()
    }

    /// Forgets `key` (after a successful pull, or a long enough run).
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Resets `key` when its container has been running for `ran`.
    pub fn reset_if_stable(&mut self, key: &str, ran: Duration) {
        if ran >= RESET_AFTER {
            self.reset(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_five_minutes() {
        let mut b = BackOff::default();
        let t = Instant::now();
        let delays: Vec<u64> = (0..7).map(|_| b.next("c", t).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn window_and_reset() {
        let mut b = BackOff::default();
        let t = Instant::now();
        assert_eq!(b.remaining("c", t), None);
        b.next("c", t);
        assert_eq!(b.remaining("c", t), Some(Duration::from_secs(10)));
        assert_eq!(
            b.remaining("c", t + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(b.remaining("c", t + Duration::from_secs(10)), None);
        b.next("c", t);
        b.reset_if_stable("c", Duration::from_secs(599));
        assert_eq!(b.delay("c"), Duration::from_secs(20));
        b.reset_if_stable("c", Duration::from_secs(600));
        assert_eq!(b.delay("c"), Duration::ZERO);
        assert_eq!(b.next("c", t), INITIAL);
        assert_eq!(b.remaining("other", t), None);
    }
}
