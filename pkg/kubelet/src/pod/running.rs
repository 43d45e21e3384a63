//! State `Running`: keeps the app containers (and native sidecars) going
//! per the pod's restartPolicy: missing ones are started, exited ones
//! restarted (Always; OnFailure after a failure) with the crash-loop
//! back-off, which resets after 10 min of running. Probes are ticked
//! (a failed liveness probe kills the container), ephemeral containers
//! (`kubectl debug`) are started once and never restarted, and
//! configMap/secret/projected volumes are refreshed every 10 s. When no
//! app container runs or will run again the pod is `Completed`; a dead
//! sandbox sends it back to `Sandbox`.

use std::time::Duration;

use super::common::{self, CREATED, EXITED, RUNNING};
use super::init::is_sidecar;
use super::{State, Step, Worker};

/// What to do with one app container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// None in this sandbox: start it.
    Start,
    /// Created, never started: start it.
    Resume(String),
    /// Running: tick its probes.
    Keep,
    /// Exited and to run again.
    Restart,
    /// Exited for good.
    Done,
}

/// Whether a container that exited with `exit` runs again under `policy`.
pub fn restarts(policy: &str, exit: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit != 0,
        _ => true,
    }
}

/// Decides for one container from its latest run (id, state, exit) (pure).
pub fn decide(policy: &str, latest: Option<(&str, i32, i32)>) -> Action {
    match latest {
        None => Action::Start,
        Some((id, CREATED, _)) => Action::Resume(id.to_string()),
        Some((_, RUNNING, _)) => Action::Keep,
        Some((_, EXITED, exit)) if restarts(policy, exit) => Action::Restart,
        Some((_, EXITED, _)) => Action::Done,
        Some(_) => Action::Keep,
    }
}

/// One step of the state.
pub(super) async fn step(w: &mut Worker) -> Step {
    common::invalidate(w);
    if common::observe(w).await.is_none() {
        return Step::Stay(Duration::from_secs(2));
    }
    if !w.sandbox_ready {
        tracing::info!("{}: sandbox is gone, recreating it", w.key());
        return Step::Go(State::Sandbox);
    }
    let Some(sb) = w.sandbox.clone() else {
        return Step::Go(State::Sandbox);
    };
    common::refresh_volumes(w).await;
    let spec = w.pod.spec.clone().unwrap_or_default();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let mut wait = Duration::from_secs(1);
    let mut all_done = !spec.containers.is_empty();
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c))
        .cloned()
        .map(|c| (c, true));
    let app: Vec<_> = spec
        .containers
        .iter()
        .cloned()
        .map(|c| (c, false))
        .chain(sidecars)
        .collect();
    // Decide from one snapshot: actions make `w.observed` stale.
    let snapshot = w.observed.clone().unwrap_or_default();
    for (c, sidecar) in app {
        let latest = snapshot.latest_in(&sb, &c.name).cloned();
        let policy = if sidecar { "Always" } else { policy.as_str() };
        let action = decide(
            policy,
            latest
                .as_ref()
                .map(|l| (l.id.as_str(), l.state, l.exit_code)),
        );
        if !sidecar && action != Action::Done {
            all_done = false;
        }
        match action {
            Action::Start => {
                let attempt = snapshot.next_attempt(&c.name);
                if common::start_container(w, &c, &sb, attempt).await.is_some() {
                    wait = Duration::from_millis(200);
                }
            }
            Action::Resume(id) => {
                common::resume_created(w, &id).await;
                wait = Duration::from_millis(200);
            }
            Action::Keep => {
                w.waiting.remove(&c.name);
                if let Some(l) = &latest {
                    let ran = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - l.started_at;
                    w.backoff
                        .reset_if_stable(&c.name, Duration::from_nanos(ran.max(0) as u64));
                    wait = wait.min(common::tick_probes(w, &c, l).await);
                }
            }
            Action::Restart => {
                w.probes.remove(&c.name);
                let attempt = snapshot.next_attempt(&c.name);
                match common::restart_with_backoff(w, &c, &sb, attempt).await {
                    Some(left) => wait = wait.min(left),
                    None => wait = Duration::from_millis(200),
                }
            }
            Action::Done => {
                w.probes.remove(&c.name);
            }
        }
    }
    // Ephemeral containers: started once, never restarted.
    for e in spec.ephemeral_containers.iter().flatten() {
        let Some(c) = crate::status::ephemeral_as_container(e) else {
            continue;
        };
        if snapshot.latest_in(&sb, &c.name).is_none()
            && common::start_container(w, &c, &sb, 0).await.is_some()
        {
            wait = Duration::from_millis(200);
        }
    }
    if all_done {
        w.terminal = true;
        return Step::Go(State::Completed);
    }
    Step::Stay(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policy() {
        assert!(restarts("Always", 0));
        assert!(restarts("Always", 1));
        assert!(restarts("OnFailure", 1));
        assert!(!restarts("OnFailure", 0));
        assert!(!restarts("Never", 1));
    }

    #[test]
    fn decisions() {
        assert_eq!(decide("Always", None), Action::Start);
        assert_eq!(
            decide("Always", Some(("x", CREATED, 0))),
            Action::Resume("x".into())
        );
        assert_eq!(decide("Never", Some(("x", RUNNING, 0))), Action::Keep);
        assert_eq!(decide("Always", Some(("x", EXITED, 0))), Action::Restart);
        assert_eq!(decide("OnFailure", Some(("x", EXITED, 0))), Action::Done);
        assert_eq!(
            decide("OnFailure", Some(("x", EXITED, 137))),
            Action::Restart
        );
        assert_eq!(decide("Never", Some(("x", EXITED, 1))), Action::Done);
    }
}
