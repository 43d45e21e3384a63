//! Pod status as the kubelet reports it, computed purely from the pod, the
//! runtime's container statuses and what the pod worker knows (waiting
//! reasons such as CrashLoopBackOff or ErrImagePull, probe results, the
//! pod IP): container states with lastState and restartCount, the phase
//! (upstream's `getPhase`), and the conditions PodReadyToStartContainers,
//! Initialized, ContainersReady, Ready and PodScheduled (kept), whose
//! lastTransitionTime only moves on a transition.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use rkube_cri::api as cri;

use crate::cri_config::{ANN_RESTART_COUNT, ANN_TERMINATION_HOST_PATH, ANN_TERMINATION_POLICY};

/// Longest termination message kept.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Lines of log taken by FallbackToLogsOnError.
pub const FALLBACK_LOG_LINES: usize = 80;
/// Bytes of log taken by FallbackToLogsOnError.
pub const FALLBACK_LOG_BYTES: usize = 2048;

/// Why a container is waiting, as the worker knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Reason (CrashLoopBackOff, ErrImagePull, ...).
    pub reason: String,
    /// Message.
    pub message: String,
}

impl Waiting {
    /// A waiting reason with a message.
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Waiting {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Everything the status depends on.
pub struct StatusInput<'a> {
    /// The pod (spec and previous status).
    pub pod: &'a Pod,
    /// Runtime name for container IDs (`containerd`).
    pub runtime: &'a str,
    /// Every container of the pod the runtime knows (all sandboxes).
    pub containers: &'a [cri::ContainerStatus],
    /// Waiting reasons by container name.
    pub waiting: &'a HashMap<String, Waiting>,
    /// (started, ready) by container name from probes; absent = (true, true).
    pub probes: &'a HashMap<String, (bool, bool)>,
    /// Pod IP ("" until known).
    pub pod_ip: &'a str,
    /// Node IP.
    pub host_ip: &'a str,
    /// Whether the sandbox is ready.
    pub sandbox_ready: bool,
    /// The pod will run nothing more (deleted, or finished for good).
    pub terminal: bool,
    /// The current time.
    pub now: Timestamp,
    /// The termination message of an exited container.
    pub message: &'a dyn Fn(&cri::ContainerStatus) -> Option<String>,
}

fn time(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
        .map(|t| Time(Timestamp::from_second(t.as_second()).unwrap_or(t)))
}

fn now_time(now: &Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(*now))
}

/// The restart count of a runtime container (annotation, else attempt).
pub fn restart_count(c: &cri::ContainerStatus) -> u32 {
    c.annotations
        .get(ANN_RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0))
}

/// The container name of a runtime container.
pub fn container_name(c: &cri::ContainerStatus) -> &str {
    c.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")
}

/// The newest and the one before of the runtime containers named `name`.
pub fn latest<'a>(
    all: &'a [cri::ContainerStatus],
    name: &str,
) -> (
    Option<&'a cri::ContainerStatus>,
    Option<&'a cri::ContainerStatus>,
) {
    let mut v: Vec<&cri::ContainerStatus> =
        all.iter().filter(|c| container_name(c) == name).collect();
    v.sort_by_key(|c| (restart_count(c), c.created_at));
    let last = v.pop();
    (last, v.pop())
}

const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
const EXITED: i32 = cri::ContainerState::ContainerExited as i32;

fn terminated(
    c: &cri::ContainerStatus,
    runtime: &str,
    message: &dyn Fn(&cri::ContainerStatus) -> Option<String>,
) -> ContainerStateTerminated {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let msg = message(c)
        .filter(|m| !m.is_empty())
        .or_else(|| Some(c.message.clone()).filter(|m| !m.is_empty()));
    ContainerStateTerminated {
        exit_code: c.exit_code,
        reason: Some(reason),
        message: msg,
        started_at: time(c.started_at),
        finished_at: time(c.finished_at),
        container_id: Some(format!("{runtime}://{}", c.id)),
        signal: None,
    }
}

fn waiting_state(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: Some(message.to_string()).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    }
}

/// One entry of containerStatuses (or init/ephemeral statuses).
#[allow(clippy::too_many_arguments)]
pub fn container_status(
    spec: &Container,
    last: Option<&cri::ContainerStatus>,
    prev: Option<&cri::ContainerStatus>,
    waiting: Option<&Waiting>,
    runtime: &str,
    (started, ready): (bool, bool),
    default_waiting: &str,
    message: &dyn Fn(&cri::ContainerStatus) -> Option<String>,
) -> ContainerStatus {
    let term = |c: &cri::ContainerStatus| ContainerState {
        terminated: Some(terminated(c, runtime, message)),
        ..Default::default()
    };
    let prev_state = prev.filter(|p| p.state == EXITED).map(term);
    let mut out = ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: last.map(|l| l.image_ref.clone()).unwrap_or_default(),
        restart_count: last.map(restart_count).unwrap_or(0) as i32,
        container_id: last.map(|l| format!("{runtime}://{}", l.id)),
        ready: false,
        started: Some(false),
        ..Default::default()
    };
    match (last, waiting) {
        (Some(l), _) if l.state == RUNNING => {
            out.state = Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time(l.started_at),
                }),
                ..Default::default()
            });
            out.started = Some(started);
            out.ready = started && ready;
            out.last_state = prev_state;
        }
        (Some(l), Some(w)) if l.state == EXITED => {
            out.state = Some(waiting_state(&w.reason, &w.message));
            out.last_state = Some(term(l));
        }
        (Some(l), None) if l.state == EXITED => {
            out.state = Some(term(l));
            out.last_state = prev_state;
        }
        (_, Some(w)) => {
            out.state = Some(waiting_state(&w.reason, &w.message));
            out.last_state = prev_state;
        }
        (Some(_), None) => {
            out.state = Some(waiting_state("ContainerCreating", ""));
            out.last_state = prev_state;
        }
        (None, None) => out.state = Some(waiting_state(default_waiting, "")),
    }
    out
}

fn is_restartable(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn find<'a>(st: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    st.iter().find(|s| s.name == name)
}

fn state_kind(s: &ContainerStatus) -> (bool, Option<i32>, bool) {
    let st = s.state.clone().unwrap_or_default();
    (
        st.running.is_some(),
        st.terminated.map(|t| t.exit_code),
        st.waiting.is_some(),
    )
}

fn last_exit(s: &ContainerStatus) -> Option<i32> {
    s.last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .map(|t| t.exit_code)
}

/// The pod phase from its container statuses (upstream `getPhase`).
pub fn phase(
    pod: &Pod,
    init: &[ContainerStatus],
    app: &[ContainerStatus],
    terminal: bool,
) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let mut pending_init = 0;
    let mut pending_sidecars = 0;
    let mut failed_init = 0;
    for c in spec.init_containers.iter().flatten() {
        let Some(s) = find(init, &c.name) else {
            if is_restartable(c) {
                pending_sidecars += 1;
            } else {
                pending_init += 1;
            }
            continue;
        };
        let (running, exit, waiting) = state_kind(s);
        if is_restartable(c) {
            if (running && s.started != Some(true)) || (waiting && last_exit(s).is_none()) {
                pending_sidecars += 1;
            }
            continue;
        }
        match (running, exit, waiting) {
            (true, _, _) => pending_init += 1,
            (_, Some(code), _) => failed_init += usize::from(code != 0),
            (_, _, true) => match last_exit(s) {
                Some(code) => failed_init += usize::from(code != 0),
                None => pending_init += 1,
            },
            _ => pending_init += 1,
        }
    }
    let initialized_before = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Initialized"))
        .is_some_and(|c| c.status == "True");
    let (mut unknown, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &spec.containers {
        let Some(s) = find(app, &c.name) else {
            unknown += 1;
            continue;
        };
        match state_kind(s) {
            (true, _, _) => running += 1,
            (_, Some(code), _) => {
                stopped += 1;
                succeeded += usize::from(code == 0);
            }
            (_, _, true) => {
                if last_exit(s).is_some() {
                    stopped += 1;
                }
            }
            _ => unknown += 1,
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecars > 0 && !initialized_before) {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(
    prev: &PodStatus,
    now: &Timestamp,
    type_: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let at = prev
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now_time(now));
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        last_transition_time: Some(at),
        reason,
        message,
        ..Default::default()
    }
}

/// The whole pod status.
pub fn pod_status(i: &StatusInput<'_>) -> PodStatus {
    let pod = i.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let prev = pod.status.clone().unwrap_or_default();
    let probe = |n: &str| i.probes.get(n).copied().unwrap_or((true, true));
    let one = |c: &Container, default_waiting: &str| {
        let (last, prev) = latest(i.containers, &c.name);
        container_status(
            c,
            last,
            prev,
            i.waiting.get(&c.name),
            i.runtime,
            probe(&c.name),
            default_waiting,
            i.message,
        )
    };
    let init: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let mut s = one(c, "PodInitializing");
            if !is_restartable(c) {
                // A regular init container is ready once it exited 0.
                s.ready = s
                    .state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0);
            }
            s
        })
        .collect();
    let has_init = spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| !is_restartable(c));
    let app_default = if has_init {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let app: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| one(c, app_default))
        .collect();
    let eph: Vec<ContainerStatus> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .filter_map(ephemeral_as_container)
        .map(|c| {
            let mut s = one(&c, "ContainerCreating");
            s.ready = false;
            s
        })
        .collect();
    let phase = phase(pod, &init, &app, i.terminal);
    let completed = phase == "Succeeded" || phase == "Failed";

    let not_init: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| {
            let s = find(&init, &c.name);
            if is_restartable(c) {
                s.and_then(|s| s.started) != Some(true)
            } else {
                !s.is_some_and(|s| s.ready)
            }
        })
        .map(|c| c.name.clone())
        .collect();
    let unready: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_restartable(c))
        .chain(spec.containers.iter())
        .filter(|c| {
            !find(&init, &c.name)
                .or_else(|| find(&app, &c.name))
                .is_some_and(|s| s.ready)
        })
        .map(|c| c.name.clone())
        .collect();
    let list = |v: &[String]| format!("[{}]", v.join(" "));
    // Once an app container has run, the pod stays initialized (sidecars
    // may stop later).
    let app_started = app.iter().any(|s| s.container_id.is_some());
    let initialized = not_init.is_empty() || app_started;
    let (init_reason, init_msg) = if initialized {
        (None, None)
    } else {
        (
            Some("ContainersNotInitialized".to_string()),
            Some(format!(
                "containers with incomplete status: {}",
                list(&not_init)
            )),
        )
    };
    let containers_ready = unready.is_empty() && !completed;
    let (ready_reason, ready_msg) = if containers_ready {
        (None, None)
    } else if completed {
        (Some("PodCompleted".to_string()), None)
    } else {
        (
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: {}",
                list(&unready)
            )),
        )
    };
    // Readiness gates: each named condition must be True.
    let missing_gate = spec.readiness_gates.iter().flatten().find(|g| {
        !prev
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == g.condition_type && c.status == "True")
    });
    let (ready, r_reason, r_msg) = match missing_gate {
        Some(g) if containers_ready => (
            false,
            Some("ReadinessGatesNotReady".to_string()),
            Some(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                g.condition_type
            )),
        ),
        _ => (containers_ready, ready_reason.clone(), ready_msg.clone()),
    };
    let host_net = spec.host_network == Some(true);
    let sandbox_ok = i.sandbox_ready && (host_net || !i.pod_ip.is_empty()) && !completed;
    let now = &i.now;
    let mut conditions = vec![
        condition(
            &prev,
            now,
            "PodReadyToStartContainers",
            sandbox_ok,
            None,
            None,
        ),
        condition(
            &prev,
            now,
            "Initialized",
            initialized,
            init_reason,
            init_msg,
        ),
        condition(&prev, now, "Ready", ready, r_reason, r_msg),
        condition(
            &prev,
            now,
            "ContainersReady",
            containers_ready,
            ready_reason,
            ready_msg,
        ),
    ];
    // Conditions owned by others (PodScheduled, readiness gates) stay.
    for c in prev.conditions.iter().flatten() {
        if !conditions.iter().any(|x| x.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }
    let start = prev.start_time.clone().unwrap_or_else(|| now_time(now));
    let pod_ip = if host_net { i.host_ip } else { i.pod_ip };
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(i.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: i.host_ip.to_string(),
        }]),
        pod_ip: Some(pod_ip.to_string()).filter(|p| !p.is_empty()),
        pod_ips: Some(vec![PodIP {
            ip: pod_ip.to_string(),
        }])
        .filter(|_| !pod_ip.is_empty()),
        qos_class: prev
            .qos_class
            .clone()
            .or_else(|| Some(crate::cri_config::qos(pod).as_str().to_string())),
        start_time: Some(start),
        container_statuses: Some(app),
        init_container_statuses: Some(init).filter(|v| !v.is_empty()),
        ephemeral_container_statuses: Some(eph).filter(|v| !v.is_empty()),
        ..Default::default()
    }
}

/// An ephemeral container as a plain container (same fields).
pub fn ephemeral_as_container(
    e: &k8s_openapi::api::core::v1::EphemeralContainer,
) -> Option<Container> {
    let mut v = serde_json::to_value(e).ok()?;
    v.as_object_mut()?.remove("targetContainerName");
    serde_json::from_value(v).ok()
}

/// Reads an exited container's termination message: the file the
/// container wrote (`File`), or with `FallbackToLogsOnError` and a failure
/// and no file content, the end of its log (80 lines, 2048 bytes).
pub fn read_termination_message(c: &cri::ContainerStatus) -> Option<String> {
    let from_file = c
        .annotations
        .get(ANN_TERMINATION_HOST_PATH)
        .and_then(|p| read_bytes(std::path::Path::new(p), MAX_MESSAGE_BYTES, true))
        .filter(|m| !m.is_empty());
    if from_file.is_some() {
        return from_file;
    }
    let fallback = c
        .annotations
        .get(ANN_TERMINATION_POLICY)
        .map(String::as_str)
        == Some("FallbackToLogsOnError");
    if fallback && c.exit_code != 0 && !c.log_path.is_empty() {
        let raw = read_bytes(std::path::Path::new(&c.log_path), 64 * 1024, false)?;
        return Some(log_tail(&raw, FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES));
    }
    None
}

/// At most `max` bytes of a file, from its start (`head`) or its end.
fn read_bytes(path: &std::path::Path, max: usize, head: bool) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if !head && len > max as u64 {
        f.seek(SeekFrom::Start(len - max as u64)).ok()?;
    }
    let mut buf = Vec::new();
    f.take(max as u64).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The message text of the last `lines` CRI log lines, at most `bytes`.
pub fn log_tail(raw: &str, lines: usize, bytes: usize) -> String {
    // Rebuild the stream: a partial (`P`) entry continues on the next one,
    // so output without a final newline keeps none.
    let mut text = String::new();
    for e in raw
        .lines()
        .filter_map(|l| crate::server::parse_cri_line(l.as_bytes()))
    {
        text.push_str(&String::from_utf8_lossy(e.msg));
        if !e.partial {
            text.push('\n');
        }
    }
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let starts: Vec<usize> = std::iter::once(0)
        .chain(body.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut out = match starts.len().checked_sub(lines) {
        _ if lines == 0 => String::new(),
        Some(first) => text[starts[first]..].to_string(),
        None => text.clone(),
    };
    if out.len() > bytes {
        let mut cut = out.len() - bytes;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = out[cut..].to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": spec}),
        )
        .unwrap()
    }

    fn ctr(name: &str, attempt: u32, state: i32, exit: i32, created: i64) -> cri::ContainerStatus {
        cri::ContainerStatus {
            id: format!("{name}-{attempt}"),
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt,
            }),
            state,
            created_at: created,
            started_at: 1_700_000_000_000_000_000,
            finished_at: if state == EXITED {
                1_700_000_010_000_000_000
            } else {
                0
            },
            exit_code: exit,
            image_ref: "sha256:abc".into(),
            annotations: HashMap::from([(ANN_RESTART_COUNT.to_string(), attempt.to_string())]),
            ..Default::default()
        }
    }

    fn status(
        p: &Pod,
        cs: &[cri::ContainerStatus],
        waiting: &HashMap<String, Waiting>,
    ) -> PodStatus {
        pod_status(&StatusInput {
            pod: p,
            runtime: "containerd",
            containers: cs,
            waiting,
            probes: &HashMap::new(),
            pod_ip: "10.244.0.5",
            host_ip: "192.168.1.2",
            sandbox_ready: true,
            terminal: false,
            now: Timestamp::from_second(1_700_000_100).unwrap(),
            message: &|_| None,
        })
    }

    fn cond(s: &PodStatus, t: &str) -> PodCondition {
        s.conditions
            .clone()
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn running_pod() {
        let p = pod(json!({"containers": [{"name": "a", "image": "busybox"}]}));
        let s = status(&p, &[ctr("a", 0, RUNNING, 0, 1)], &HashMap::new());
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert!(cs.ready);
        assert_eq!(cs.started, Some(true));
        assert_eq!(cs.container_id.as_deref(), Some("containerd://a-0"));
        assert_eq!(cs.image, "busybox");
        assert_eq!(cs.image_id, "sha256:abc");
        assert!(cs.state.as_ref().unwrap().running.is_some());
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "True");
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.5"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v["containerStatuses"][0]["state"]["running"]["startedAt"],
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn crash_loop_shows_waiting_and_last_state() {
        let p = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        let w = HashMap::from([(
            "a".to_string(),
            Waiting::new("CrashLoopBackOff", "back-off 10s"),
        )]);
        let cs = [ctr("a", 0, EXITED, 1, 1), ctr("a", 1, EXITED, 2, 2)];
        let s = status(&p, &cs, &w);
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(c.restart_count, 1);
        let wt = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(wt.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(
            cond(&s, "Ready").reason.as_deref(),
            Some("ContainersNotReady")
        );
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unready status: [a]")
        );
    }

    #[test]
    fn phases() {
        let spec = |policy: &str| json!({"restartPolicy": policy, "containers": [{"name": "a", "image": "i"}]});
        let none = HashMap::new();
        let ok = [ctr("a", 0, EXITED, 0, 1)];
        let bad = [ctr("a", 0, EXITED, 3, 1)];
        let ph = |policy: &str, cs: &[cri::ContainerStatus]| {
            status(&pod(spec(policy)), cs, &none).phase.unwrap()
        };
        assert_eq!(ph("Never", &ok), "Succeeded");
        assert_eq!(ph("Never", &bad), "Failed");
        assert_eq!(ph("OnFailure", &bad), "Running");
        assert_eq!(ph("OnFailure", &ok), "Succeeded");
        assert_eq!(ph("Always", &ok), "Running");
        assert_eq!(ph("Always", &[]), "Pending");
        let s = status(&pod(spec("Never")), &ok, &none);
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        let t = s.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(t.reason.as_deref(), Some("Completed"));
        assert_eq!(t.container_id.as_deref(), Some("containerd://a-0"));
    }

    #[test]
    fn init_containers() {
        let spec = |policy: &str| {
            json!({"restartPolicy": policy,
                   "initContainers": [{"name": "i1", "image": "x"}, {"name": "i2", "image": "x"}],
                   "containers": [{"name": "a", "image": "i"}]})
        };
        let none = HashMap::new();
        let s = status(
            &pod(spec("Always")),
            &[ctr("i1", 0, EXITED, 0, 1), ctr("i2", 0, RUNNING, 0, 2)],
            &none,
        );
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(
            cond(&s, "Initialized").message.as_deref(),
            Some("containers with incomplete status: [i2]")
        );
        let app = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            app.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
        let s = status(&pod(spec("Never")), &[ctr("i1", 0, EXITED, 1, 1)], &none);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let s = status(
            &pod(spec("Always")),
            &[
                ctr("i1", 0, EXITED, 0, 1),
                ctr("i2", 0, EXITED, 0, 2),
                ctr("a", 0, RUNNING, 0, 3),
            ],
            &none,
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Initialized").status, "True");
        assert!(s.init_container_statuses.unwrap().iter().all(|c| c.ready));
    }

    #[test]
    fn sidecar_init_container_counts_as_started() {
        let p = pod(
            json!({"initContainers": [{"name": "side", "image": "x", "restartPolicy": "Always"}],
                   "containers": [{"name": "a", "image": "i"}]}),
        );
        let s = status(
            &p,
            &[ctr("side", 0, RUNNING, 0, 1), ctr("a", 0, RUNNING, 0, 2)],
            &HashMap::new(),
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Initialized").status, "True");
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        // The app container failed for good and the sidecar was stopped:
        // still initialized, Failed.
        let p = pod(json!({"restartPolicy": "Never",
                   "initContainers": [{"name": "side", "image": "x", "restartPolicy": "Always"}],
                   "containers": [{"name": "a", "image": "i"}]}));
        let s = status(
            &p,
            &[ctr("side", 0, EXITED, 137, 1), ctr("a", 0, EXITED, 1, 2)],
            &HashMap::new(),
        );
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(cond(&s, "Initialized").status, "True");
    }

    #[test]
    fn transition_time_kept_without_transition() {
        let mut p = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        p.status = Some(
            serde_json::from_value(json!({"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "Initialized", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2019-01-01T00:00:00Z"}],
            "qosClass": "Burstable", "startTime": "2020-01-01T00:00:00Z"}))
            .unwrap(),
        );
        let s = status(&p, &[ctr("a", 0, RUNNING, 0, 1)], &HashMap::new());
        let v = serde_json::to_value(&s).unwrap();
        let at = |t: &str| {
            v["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()["lastTransitionTime"]
                .clone()
        };
        assert_eq!(at("Ready"), "2020-01-01T00:00:00Z");
        assert_eq!(at("Initialized"), "2023-11-14T22:15:00Z");
        assert_eq!(at("PodScheduled"), "2019-01-01T00:00:00Z");
        assert_eq!(v["qosClass"], "Burstable");
        assert_eq!(v["startTime"], "2020-01-01T00:00:00Z");
    }

    #[test]
    fn waiting_reasons_before_any_container() {
        let p = pod(json!({"containers": [{"name": "a", "image": "nope"}]}));
        let w = HashMap::from([(
            "a".to_string(),
            Waiting::new(
                "ErrImageNeverPull",
                "Container image \"nope\" is not present with pull policy of Never",
            ),
        )]);
        let s = status(&p, &[], &w);
        let c = &s.container_statuses.unwrap()[0];
        let wt = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(wt.reason.as_deref(), Some("ErrImageNeverPull"));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn termination_message_and_log_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let msg = dir.path().join("msg");
        std::fs::write(&msg, "bye").unwrap();
        let log = dir.path().join("0.log");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!(
                "2024-01-01T00:00:00.000000000Z stdout F line {i}\n"
            ));
        }
        std::fs::write(&log, text).unwrap();
        let mut c = ctr("a", 0, EXITED, 1, 1);
        c.log_path = log.to_string_lossy().into_owned();
        c.annotations.insert(
            ANN_TERMINATION_HOST_PATH.into(),
            msg.to_string_lossy().into_owned(),
        );
        assert_eq!(read_termination_message(&c).as_deref(), Some("bye"));
        std::fs::write(&msg, "").unwrap();
        assert_eq!(read_termination_message(&c), None);
        c.annotations.insert(
            ANN_TERMINATION_POLICY.into(),
            "FallbackToLogsOnError".into(),
        );
        let m = read_termination_message(&c).unwrap();
        assert!(
            m.starts_with("line 20\n") && m.ends_with("line 99\n"),
            "{m}"
        );
        assert_eq!(
            log_tail("2024-01-01T00:00:00Z stdout F abcdef\n", 80, 3),
            "ef\n"
        );
        // `echo -n DONE`: a partial entry, no newline added.
        assert_eq!(
            log_tail("2024-01-01T00:00:00Z stdout P DONE\n", 80, 2048),
            "DONE"
        );
        let split = "2024-01-01T00:00:00Z stdout P ab\n2024-01-01T00:00:00Z stdout F cd\n\
                     2024-01-01T00:00:00Z stdout F ef\n";
        assert_eq!(log_tail(split, 1, 2048), "ef\n");
        assert_eq!(log_tail(split, 2, 2048), "abcd\nef\n");
    }
}
