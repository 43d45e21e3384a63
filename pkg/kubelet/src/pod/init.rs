//! State `Init`: init containers one at a time, in order. A regular init
//! container must exit 0 before the next starts; on failure the pod fails
//! (restartPolicy Never) or the container is restarted with back-off
//! (`BackOff`). A native sidecar (`restartPolicy: Always`) only has to be
//! started (its startup probe passed) and keeps running beside the app
//! containers. When every init container is done the pod goes `Running`.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;

use super::common::{self, CREATED, EXITED, RUNNING};
use super::{Resume, State, Step, Worker};

/// What the init sequence needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitAction {
    /// Start init container `index` (none in this sandbox yet).
    Start(usize),
    /// Start container `id`, created but never started.
    Resume(usize, String),
    /// Init container `index` runs (or a sidecar awaits its startup probe).
    Wait(usize),
    /// Init container `index` failed and is to run again.
    Restart(usize),
    /// An init container failed with restartPolicy Never.
    Failed,
    /// All done.
    Done,
}

/// The latest run of a container in the current sandbox: (id, state, exit).
pub type Run = (String, i32, i32);

/// Whether an init container is a native sidecar.
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Decides the next init action (pure).
pub fn next_action(
    init: &[Container],
    policy: &str,
    latest: impl Fn(&str) -> Option<Run>,
    sidecar_started: impl Fn(&str) -> bool,
) -> InitAction {
    for (i, c) in init.iter().enumerate() {
        let Some((id, state, exit)) = latest(&c.name) else {
            return InitAction::Start(i);
        };
        match state {
            CREATED => return InitAction::Resume(i, id),
            RUNNING if is_sidecar(c) => {
                if !sidecar_started(&c.name) {
                    return InitAction::Wait(i);
                }
            }
            RUNNING => return InitAction::Wait(i),
            EXITED if is_sidecar(c) => return InitAction::Restart(i),
            EXITED if exit == 0 => {}
            EXITED if policy == "Never" => return InitAction::Failed,
            EXITED => return InitAction::Restart(i),
            _ => return InitAction::Wait(i),
        }
    }
    InitAction::Done
}

/// One step of the state.
pub(super) async fn step(w: &mut Worker) -> Step {
    common::invalidate(w);
    if common::observe(w).await.is_none() {
        return Step::Stay(Duration::from_secs(2));
    }
    if !w.sandbox_ready {
        return Step::Go(State::Sandbox);
    }
    let Some(sb) = w.sandbox.clone() else {
        return Step::Go(State::Sandbox);
    };
    let spec = w.pod.spec.clone().unwrap_or_default();
    let init = spec.init_containers.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    // Decide from one snapshot: actions make `w.observed` stale.
    let snapshot = w.observed.clone().unwrap_or_default();
    let action = {
        let probes = &w.probes;
        next_action(
            &init,
            policy,
            |name| {
                snapshot
                    .latest_in(&sb, name)
                    .map(|c| (c.id.clone(), c.state, c.exit_code))
            },
            |name| probes.get(name).is_none_or(|p| p.probes.started()),
        )
    };
    match action {
        InitAction::Done => Step::Go(State::Running),
        InitAction::Failed => {
            w.terminal = true;
            Step::Go(State::Completed)
        }
        InitAction::Start(i) => {
            let attempt = snapshot.next_attempt(&init[i].name);
            match common::start_container(w, &init[i], &sb, attempt).await {
                Some(_) => Step::Stay(Duration::from_millis(200)),
                None => Step::Stay(Duration::from_secs(1)),
            }
        }
        InitAction::Resume(_, id) => {
            common::resume_created(w, &id).await;
            Step::Stay(Duration::from_millis(200))
        }
        InitAction::Wait(i) => {
            let running = snapshot.latest_in(&sb, &init[i].name).cloned();
            let wait = match running {
                Some(r) if r.state == RUNNING && is_sidecar(&init[i]) => {
                    w.waiting.remove(&init[i].name);
                    common::tick_probes(w, &init[i], &r).await
                }
                _ => Duration::from_millis(500),
            };
            Step::Stay(wait.min(Duration::from_secs(1)))
        }
        InitAction::Restart(i) => {
            let attempt = snapshot.next_attempt(&init[i].name);
            match common::restart_with_backoff(w, &init[i], &sb, attempt).await {
                Some(left) => Step::Go(State::BackOff {
                    resume: Resume::Init,
                    until: Instant::now() + left,
                }),
                None => Step::Stay(Duration::from_millis(200)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn containers(v: serde_json::Value) -> Vec<Container> {
        serde_json::from_value(v).unwrap()
    }

    fn runs(m: HashMap<&'static str, (i32, i32)>) -> impl Fn(&str) -> Option<Run> {
        move |n: &str| m.get(n).map(|(s, e)| (format!("{n}-id"), *s, *e))
    }

    #[test]
    fn order_and_failures() {
        let init = containers(json!([{"name": "a"}, {"name": "b"}]));
        let yes = |_: &str| true;
        let act = |policy: &str, m: HashMap<&'static str, (i32, i32)>| {
            next_action(&init, policy, runs(m), yes)
        };
        assert_eq!(act("Always", HashMap::new()), InitAction::Start(0));
        assert_eq!(
            act("Always", HashMap::from([("a", (RUNNING, 0))])),
            InitAction::Wait(0)
        );
        assert_eq!(
            act("Always", HashMap::from([("a", (EXITED, 0))])),
            InitAction::Start(1)
        );
        assert_eq!(
            act("Always", HashMap::from([("a", (CREATED, 0))])),
            InitAction::Resume(0, "a-id".into())
        );
        assert_eq!(
            act(
                "OnFailure",
                HashMap::from([("a", (EXITED, 0)), ("b", (EXITED, 2))])
            ),
            InitAction::Restart(1)
        );
        assert_eq!(
            act("Never", HashMap::from([("a", (EXITED, 1))])),
            InitAction::Failed
        );
        assert_eq!(
            act(
                "Never",
                HashMap::from([("a", (EXITED, 0)), ("b", (EXITED, 0))])
            ),
            InitAction::Done
        );
    }

    #[test]
    fn sidecars_only_need_to_start() {
        let init = containers(json!([{"name": "side", "restartPolicy": "Always"}, {"name": "b"}]));
        let running = |n: &str| (n == "side").then(|| ("id".to_string(), RUNNING, 0));
        assert_eq!(
            next_action(&init, "Never", running, |_| false),
            InitAction::Wait(0)
        );
        assert_eq!(
            next_action(&init, "Never", running, |_| true),
            InitAction::Start(1)
        );
        let exited = |n: &str| (n == "side").then(|| ("id".to_string(), EXITED, 1));
        assert_eq!(
            next_action(&init, "Never", exited, |_| true),
            InitAction::Restart(0)
        );
    }
}
