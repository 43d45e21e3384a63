//! When to try an unschedulable pod again.
//!
//! A pod that fit nowhere is parked with the fingerprint of what it was
//! checked against (nodes, bound pods, its own spec). It is retried when that
//! fingerprint changes and its back-off (1 s doubling to 10 s, as upstream's
//! pod back-off) has passed, or unconditionally after the resync period. A
//! status write to the pod itself does not change the fingerprint, so the
//! scheduler never loops on its own updates.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// First back-off after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Entry {
    attempts: u32,
    last_attempt: Instant,
    fingerprint: u64,
}

/// Unschedulable pods by uid.
#[derive(Debug, Default)]
pub struct Unschedulable {
    entries: HashMap<String, Entry>,
}

/// Back-off after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
}

impl Unschedulable {
    /// Whether the pod should be attempted now.
    pub fn due(&self, uid: &str, fingerprint: u64, now: Instant, resync: Duration) -> bool {
        match self.entries.get(uid) {
            None => true,
            Some(e) => {
                let since = now.saturating_duration_since(e.last_attempt);
                since >= resync || (e.fingerprint != fingerprint && since >= backoff(e.attempts))
            }
        }
    }

    /// Records a failed attempt.
    pub fn failed(&mut self, uid: &str, fingerprint: u64, now: Instant) {
        let e = self.entries.entry(uid.to_string()).or_insert(Entry {
            attempts: 0,
            last_attempt: now,
            fingerprint,
        });
        e.attempts = e.attempts.saturating_add(1);
        e.last_attempt = now;
        e.fingerprint = fingerprint;
    }

    /// Forgets a pod (bound, deleted, or no longer ours).
    pub fn forget(&mut self, uid: &str) {
        self.entries.remove(uid);
    }

    /// Keeps only the pods for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.entries.retain(|uid, _| keep(uid));
    }

    /// Whether a pod is parked.
    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    /// The earliest instant at which a parked pod becomes due without any
    /// cluster change, or after its back-off if `fingerprint_of(uid)` already
    /// differs from the recorded one.
    pub fn next_due(
        &self,
        resync: Duration,
        fingerprint_of: impl Fn(&str) -> Option<u64>,
    ) -> Option<Instant> {
        self.entries
            .iter()
            .map(|(uid, e)| match fingerprint_of(uid) {
                Some(fp) if fp != e.fingerprint => e.last_attempt + backoff(e.attempts).min(resync),
                _ => e.last_attempt + resync,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESYNC: Duration = Duration::from_secs(30);

    #[test]
    fn backoff_doubles_to_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(5), Duration::from_secs(10));
        assert_eq!(backoff(100), Duration::from_secs(10));
    }

    #[test]
    fn new_pods_are_due() {
        assert!(Unschedulable::default().due("u", 1, Instant::now(), RESYNC));
    }

    #[test]
    fn unchanged_cluster_waits_for_resync() {
        let mut q = Unschedulable::default();
        let t0 = Instant::now();
        q.failed("u", 7, t0);
        assert!(!q.due("u", 7, t0 + Duration::from_secs(29), RESYNC));
        assert!(q.due("u", 7, t0 + RESYNC, RESYNC));
        assert_eq!(q.next_due(RESYNC, |_| Some(7)), Some(t0 + RESYNC));
    }

    #[test]
    fn changed_cluster_retries_after_backoff() {
        let mut q = Unschedulable::default();
        let t0 = Instant::now();
        q.failed("u", 7, t0);
        assert!(!q.due("u", 8, t0 + Duration::from_millis(500), RESYNC));
        assert!(q.due("u", 8, t0 + Duration::from_secs(1), RESYNC));
        assert_eq!(
            q.next_due(RESYNC, |_| Some(8)),
            Some(t0 + Duration::from_secs(1))
        );
        let t1 = t0 + Duration::from_secs(1);
        q.failed("u", 8, t1);
        assert!(!q.due("u", 9, t1 + Duration::from_millis(1500), RESYNC));
        assert!(q.due("u", 9, t1 + Duration::from_secs(2), RESYNC));
    }

    #[test]
    fn forget_and_retain() {
        let mut q = Unschedulable::default();
        let t0 = Instant::now();
        q.failed("a", 1, t0);
        q.failed("b", 1, t0);
        q.forget("a");
        assert!(!q.contains("a"));
        q.retain(|u| u != "b");
        assert!(!q.contains("b"));
        assert_eq!(q.next_due(RESYNC, |_| None), None);
    }
}
