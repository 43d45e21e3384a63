//! One worker per pod, as an explicit state machine (one file per state):
//!
//! ```text
//!   Sandbox ──▶ Init ──▶ Running ──▶ Completed
//!     ▲ │        │ ▲ │      │             │
//!     │ ▼        ▼ │ │      │             │
//!   BackOff ◀────┘ │ │      │             │
//!     └────────────┘ ▼      ▼             ▼
//!   (any state) ──────────────────▶ Terminating ──▶ Done
//! ```
//!
//! - [`sandbox`]: volumes, then adopt the pod's ready sandbox or run a new
//!   one; the pod IP.
//! - [`init`]: init containers one at a time, each to exit 0 (sidecars,
//!   `restartPolicy: Always`, only to start).
//! - [`running`]: app and ephemeral containers, restarts with back-off,
//!   probes, volume refresh.
//! - [`backoff`]: the pod cannot progress until a back-off window ends
//!   (sandbox creation failed, an init container crash-loops).
//! - [`completed`]: nothing more will run: containers and sandbox stopped,
//!   the object kept.
//! - [`terminating`]: graceful deletion: preStop, stop with the grace
//!   period, remove the sandbox and volumes, delete the pod object.
//!
//! The worker wakes on pod updates from the watch and on the timer each
//! state asks for; after every step that stays, it writes the pod status
//! if it changed. The shared steps (observing the runtime, starting a
//! container, writing status) are in [`common`].

mod backoff;
mod common;
mod completed;
mod init;
mod running;
mod sandbox;
mod terminating;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use crate::backoff::BackOff;
use crate::context::{Agent, Handle};
use crate::probes::ContainerProbes;
use crate::status::Waiting;

/// The states of a pod worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Preparing volumes and the sandbox.
    Sandbox,
    /// Running init containers.
    Init,
    /// Running app containers.
    Running,
    /// Waiting out a back-off, then back to `resume`.
    BackOff {
        /// The state to go back to.
        resume: Resume,
        /// When the window ends.
        until: Instant,
    },
    /// Finished for good (Succeeded or Failed): stopped, object kept.
    Completed,
    /// Being deleted.
    Terminating,
    /// Gone: the worker ends.
    Done,
}

/// Where a back-off returns to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Retry the sandbox.
    Sandbox,
    /// Retry the failed init container.
    Init,
}

/// What a step asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Stay in this state; step again after at most this long (or on an
    /// update of the pod).
    Stay(Duration),
    /// Move to another state now.
    Go(State),
}

/// Whether the machine may move from `from` to `to`.
pub fn allowed(from: State, to: State) -> bool {
    use State::*;
    match (from, to) {
        (Done, _) => false,
        (Terminating, Done) => true,
        (Terminating, _) => false,
        (_, Terminating) => true,
        (
            Sandbox,
            Init
            | BackOff {
                resume: Resume::Sandbox,
                ..
            },
        ) => true,
        (
            Init,
            Running
            | Completed
            | Sandbox
            | BackOff {
                resume: Resume::Init,
                ..
            },
        ) => true,
        (Running, Completed | Sandbox) => true,
        (
            BackOff {
                resume: Resume::Sandbox,
                ..
            },
            Sandbox,
        ) => true,
        (
            BackOff {
                resume: Resume::Init,
                ..
            },
            Init | Sandbox,
        ) => true,
        _ => false,
    }
}

/// The first state of a worker for `pod`.
pub fn initial_state(pod: &Pod) -> State {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if pod.metadata.deletion_timestamp.is_some() {
        State::Terminating
    } else if matches!(phase, Some("Succeeded" | "Failed")) {
        State::Completed
    } else {
        State::Sandbox
    }
}

/// Probes of one running container, keyed by container name.
pub(crate) struct Probes {
    pub container_id: String,
    pub probes: ContainerProbes,
    pub ready: bool,
}

/// What a worker knows about its pod beyond the runtime's state.
pub(crate) struct Worker {
    pub agent: Arc<Agent>,
    pub pod: Pod,
    pub uid: String,
    /// The pod object is gone from the API.
    pub gone: bool,
    /// The current sandbox and whether it is ready.
    pub sandbox: Option<String>,
    pub sandbox_ready: bool,
    pub pod_ip: String,
    pub volumes: Option<crate::volumes::PodVolumes>,
    pub volumes_refreshed: Option<Instant>,
    pub backoff: BackOff,
    pub waiting: HashMap<String, Waiting>,
    pub probes: HashMap<String, Probes>,
    /// The last observation of the runtime (None: stale).
    pub observed: Option<common::Observed>,
    /// Cached ContainerStatus by (id, state).
    pub status_cache: HashMap<(String, i32), rkube_cri::api::ContainerStatus>,
    /// The status as last written (JSON, to compare) and typed.
    pub last_status: Option<serde_json::Value>,
    pub last_written: Option<PodStatus>,
    /// Nothing more will run (status phase is final).
    pub terminal: bool,
    /// The status was final when the worker started: leave it alone.
    pub status_frozen: bool,
    /// When termination began.
    pub deleting_since: Option<Instant>,
    /// Completed's one-time work is done.
    pub completed: bool,
    /// The agent failed the pod itself (reason, message), e.g. when
    /// `activeDeadlineSeconds` passed: the phase is Failed with these.
    pub failure: Option<(String, String)>,
}

impl Worker {
    fn new(agent: Arc<Agent>, uid: String, pod: Pod) -> Self {
        Worker {
            agent,
            pod,
            uid,
            gone: false,
            sandbox: None,
            sandbox_ready: false,
            pod_ip: String::new(),
            volumes: None,
            volumes_refreshed: None,
            backoff: BackOff::default(),
            waiting: HashMap::new(),
            probes: HashMap::new(),
            observed: None,
            status_cache: HashMap::new(),
            last_status: None,
            last_written: None,
            terminal: false,
            status_frozen: false,
            deleting_since: None,
            completed: false,
            failure: None,
        }
    }

    /// Time left before `spec.activeDeadlineSeconds` runs out, counted
    /// from the pod's start time; `None` without a deadline or a start.
    pub fn deadline_left(&self) -> Option<Duration> {
        let secs = self.pod.spec.as_ref()?.active_deadline_seconds?;
        let start = self
            .last_written
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .or_else(|| self.pod.status.as_ref()?.start_time.clone())?;
        let elapsed = k8s_openapi::jiff::Timestamp::now().duration_since(start.0);
        let left = k8s_openapi::jiff::SignedDuration::from_secs(secs.max(0)) - elapsed;
        Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
    }

    /// `ns/name` for logs.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or(""),
            self.pod.metadata.name.as_deref().unwrap_or("")
        )
    }
}

/// Runs the worker of pod `uid` until it is deleted (or the agent stops).
pub(crate) async fn run(agent: Arc<Agent>, uid: String, handle: Arc<Handle>) {
    let pod = handle.pod();
    let mut state = initial_state(&pod);
    let mut w = Worker::new(agent.clone(), uid.clone(), pod);
    w.status_frozen = state == State::Completed;
    tracing::debug!("{}: worker starts in {state:?}", w.key());
    let mut hops = 0;
    loop {
        if handle.is_stopped() {
            return;
        }
        w.pod = handle.pod();
        w.gone = handle.is_gone();
        if (w.gone || w.pod.metadata.deletion_timestamp.is_some())
            && !matches!(state, State::Terminating | State::Done)
        {
            state = State::Terminating;
        }
        let active = matches!(
            state,
            State::Sandbox | State::Init | State::Running | State::BackOff { .. }
        );
        let deadline = if active { w.deadline_left() } else { None };
        if deadline == Some(Duration::ZERO) {
            // activeDeadlineSeconds: the pod fails and its containers stop.
            tracing::info!("{}: active deadline exceeded", w.key());
            w.failure = Some((
                "DeadlineExceeded".into(),
                "Pod was active on the node longer than the specified deadline".into(),
            ));
            state = State::Completed;
            continue;
        }
        let step = match state {
            State::Sandbox => sandbox::step(&mut w).await,
            State::Init => init::step(&mut w).await,
            State::Running => running::step(&mut w).await,
            State::BackOff { resume, until } => backoff::step(&mut w, resume, until).await,
            State::Completed => completed::step(&mut w).await,
            State::Terminating => terminating::step(&mut w).await,
            State::Done => break,
        };
        let wait = match step {
            Step::Go(next) if allowed(state, next) && hops < 8 => {
                tracing::debug!("{}: {state:?} -> {next:?}", w.key());
                state = next;
                hops += 1;
                continue;
            }
            Step::Go(next) => {
                if allowed(state, next) {
                    state = next;
                } else {
                    tracing::error!("{}: refusing transition {state:?} -> {next:?}", w.key());
                }
                Duration::from_secs(1)
            }
            Step::Stay(d) => d,
        };
        let wait = deadline.map_or(wait, |left| wait.min(left));
        hops = 0;
        if !matches!(state, State::Completed | State::Terminating | State::Done) {
            common::sync_status(&mut w).await;
        }
        tokio::select! {
            _ = handle.woken() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    agent.events.forget(&uid);
    agent.workers.lock().await.remove(&uid);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transitions() {
        use State::*;
        let b = |resume| BackOff {
            resume,
            until: Instant::now(),
        };
        assert!(allowed(Sandbox, Init));
        assert!(allowed(Sandbox, b(Resume::Sandbox)));
        assert!(!allowed(Sandbox, b(Resume::Init)));
        assert!(!allowed(Sandbox, Running));
        assert!(allowed(Init, Running));
        assert!(allowed(Init, Completed));
        assert!(allowed(b(Resume::Init), Init));
        assert!(allowed(Running, Sandbox));
        assert!(!allowed(Running, Init));
        assert!(!allowed(Completed, Running));
        assert!(!allowed(Completed, Sandbox));
        for s in [Sandbox, Init, Running, Completed, b(Resume::Init)] {
            assert!(allowed(s, Terminating));
        }
        assert!(allowed(Terminating, Done));
        assert!(!allowed(Terminating, Running));
        assert!(!allowed(Done, Sandbox));
    }

    #[test]
    fn initial_states() {
        let p = |v| serde_json::from_value::<Pod>(v).unwrap();
        assert_eq!(initial_state(&p(json!({"metadata": {}}))), State::Sandbox);
        assert_eq!(
            initial_state(&p(
                json!({"metadata": {}, "status": {"phase": "Succeeded"}})
            )),
            State::Completed
        );
        assert_eq!(
            initial_state(&p(
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"},
                                   "status": {"phase": "Running"}})
            )),
            State::Terminating
        );
    }
}
