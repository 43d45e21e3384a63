//! Steps every state shares: observing the pod's sandboxes and containers
//! in the runtime, pulling an image per its policy, creating and starting
//! one container (with events and the postStart hook), stopping one, the
//! crash-loop back-off of a container, ticking probes, refreshing volumes,
//! and writing the pod status when it changed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::{Patch, PatchParams};
use kube::Api;
use rkube_cri::api as cri;
use serde_json::json;

use super::{Probes, Worker};
use crate::cri_config::{self, ContainerRun, LABEL_POD_UID};
use crate::events::Kind;
use crate::probes::{ContainerProbes, ProbeEvent};
use crate::pull::{self, PullDecision};
use crate::status::{self, restart_count, Waiting};

/// CRI container states.
pub const CREATED: i32 = cri::ContainerState::ContainerCreated as i32;
/// Running.
pub const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
/// Exited.
pub const EXITED: i32 = cri::ContainerState::ContainerExited as i32;
/// Ready sandbox.
pub const SANDBOX_READY: i32 = cri::PodSandboxState::SandboxReady as i32;

/// How often volumes are re-rendered.
pub const VOLUME_REFRESH: Duration = Duration::from_secs(10);

/// The runtime's view of one pod.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Its sandboxes.
    pub sandboxes: Vec<cri::PodSandbox>,
    /// Its containers, in every sandbox.
    pub containers: Vec<cri::ContainerStatus>,
    /// Container id → sandbox id.
    pub sandbox_of: HashMap<String, String>,
}

impl Observed {
    /// The newest container named `name` in sandbox `sb`.
    pub fn latest_in(&self, sb: &str, name: &str) -> Option<&cri::ContainerStatus> {
        self.containers
            .iter()
            .filter(|c| {
                status::container_name(c) == name
                    && self.sandbox_of.get(&c.id).map(String::as_str) == Some(sb)
            })
            .max_by_key(|c| (restart_count(c), c.created_at))
    }

    /// The restart count of the next run of `name`: one more than any
    /// before (in any sandbox), or 0.
    pub fn next_attempt(&self, name: &str) -> u32 {
        self.containers
            .iter()
            .filter(|c| status::container_name(c) == name)
            .map(|c| restart_count(c) + 1)
            .max()
            .unwrap_or(0)
    }

    /// The newest ready sandbox.
    pub fn ready_sandbox(&self) -> Option<&cri::PodSandbox> {
        self.sandboxes
            .iter()
            .filter(|s| s.state == SANDBOX_READY)
            .max_by_key(|s| s.created_at)
    }
}

/// Reads the pod's sandboxes and containers from the runtime (cached until
/// the worker acts). `None` when the runtime does not answer.
pub async fn observe(w: &mut Worker) -> Option<&Observed> {
    if w.observed.is_none() {
        let o = read_runtime(w).await?;
        w.sandbox_ready = match &w.sandbox {
            Some(id) => o
                .sandboxes
                .iter()
                .any(|s| &s.id == id && s.state == SANDBOX_READY),
            None => false,
        };
        w.observed = Some(o);
    }
    w.observed.as_ref()
}

/// Marks the observation stale (after an action).
pub fn invalidate(w: &mut Worker) {
    w.observed = None;
}

async fn read_runtime(w: &mut Worker) -> Option<Observed> {
    let mut rt = w.agent.cri.runtime.clone();
    let labels = HashMap::from([(LABEL_POD_UID.to_string(), w.uid.clone())]);
    let sandboxes = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: labels.clone(),
                ..Default::default()
            }),
        })
        .await
        .ok()?
        .into_inner()
        .items;
    let list = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: labels,
                ..Default::default()
            }),
        })
        .await
        .ok()?
        .into_inner()
        .containers;
    let mut out = Observed {
        sandboxes,
        ..Default::default()
    };
    let mut cache = HashMap::new();
    for c in list {
        // A container's status only changes with its state: ask once per
        // (id, state).
        let key = (c.id.clone(), c.state);
        let st = match w.status_cache.remove(&key) {
            Some(s) => s,
            None => match rt
                .container_status(cri::ContainerStatusRequest {
                    container_id: c.id.clone(),
                    verbose: false,
                })
                .await
                .ok()
                .and_then(|r| r.into_inner().status)
            {
                Some(s) => s,
                None => continue,
            },
        };
        out.sandbox_of
            .insert(c.id.clone(), c.pod_sandbox_id.clone());
        cache.insert(key, st.clone());
        out.containers.push(st);
    }
    w.status_cache = cache;
    Some(out)
}

/// Records an event in the background.
pub fn event(w: &Worker, container: Option<&str>, kind: Kind, reason: &str, message: String) {
    let agent = w.agent.clone();
    let pod = w.pod.clone();
    let container = container.map(String::from);
    let reason = reason.to_string();
    tokio::spawn(async move {
        agent
            .events
            .emit(&pod, container.as_deref(), kind, &reason, &message)
            .await;
    });
}

/// `<name>_<ns>(<uid>)` as upstream names pods in messages.
pub fn pod_ref(pod: &Pod) -> String {
    let (ns, name, uid) = cri_config::pod_key(pod);
    format!("{name}_{ns}({uid})")
}

/// The CrashLoopBackOff message.
pub fn crash_loop_message(delay: Duration, container: &str, pod: &Pod) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={}",
        fmt_delay(delay),
        pod_ref(pod)
    )
}

/// A delay as Go prints it (10s, 1m20s, 5m0s).
pub fn fmt_delay(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

/// A failed container is to run again: restart it now (as run `attempt`),
/// or report CrashLoopBackOff while its back-off window lasts. Returns the
/// time left.
pub async fn restart_with_backoff(
    w: &mut Worker,
    c: &Container,
    sandbox: &str,
    attempt: u32,
) -> Option<Duration> {
    let now = Instant::now();
    if let Some(left) = w.backoff.remaining(&c.name, now) {
        let msg = crash_loop_message(w.backoff.delay(&c.name), &c.name, &w.pod);
        let first = w.waiting.get(&c.name).map(|x| x.reason.as_str()) != Some("CrashLoopBackOff");
        if first {
            event(
                w,
                Some(&c.name),
                Kind::Warning,
                "BackOff",
                "Back-off restarting failed container".into(),
            );
        }
        w.waiting
            .insert(c.name.clone(), Waiting::new("CrashLoopBackOff", msg));
        return Some(left);
    }
    w.backoff.next(&c.name, now);
    start_container(w, c, sandbox, attempt).await;
    None
}

/// The image credentials of the pod's imagePullSecrets for `image`.
async fn pull_auth(w: &Worker, image: &str) -> Option<cri::AuthConfig> {
    let refs = w.pod.spec.as_ref()?.image_pull_secrets.clone()?;
    let ns = w.pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(w.agent.cfg.client.clone(), &ns);
    let mut payloads = Vec::new();
    for r in refs {
        if let Ok(Some(s)) = api.get_opt(&r.name).await {
            let data = s.data.unwrap_or_default();
            for k in [".dockerconfigjson", ".dockercfg"] {
                if let Some(v) = data.get(k) {
                    payloads.push(v.0.clone());
                }
            }
        }
    }
    pull::auth_for(image, &payloads)
}

/// Makes sure the container's image is there per its pull policy; sets the
/// waiting reason and returns false when it is not.
async fn ensure_image(w: &mut Worker, c: &Container) -> bool {
    let image = c.image.clone().unwrap_or_default();
    let key = format!("pull/{}", c.name);
    if w.backoff.remaining(&key, Instant::now()).is_some() {
        // As kubelet 1.32: the back-off message carries the last pull error.
        let message = match w.waiting.get(&c.name) {
            Some(x) if x.reason == "ImagePullBackOff" => x.message.clone(),
            Some(x) if x.reason == "ErrImagePull" => {
                format!(
                    "Back-off pulling image \"{image}\": ErrImagePull: {}",
                    x.message
                )
            }
            _ => format!("Back-off pulling image \"{image}\""),
        };
        if w.waiting.get(&c.name).map(|x| x.reason.as_str()) != Some("ImagePullBackOff") {
            event(
                w,
                Some(&c.name),
                Kind::Normal,
                "BackOff",
                format!("Back-off pulling image \"{image}\""),
            );
        }
        w.waiting
            .insert(c.name.clone(), Waiting::new("ImagePullBackOff", message));
        return false;
    }
    let policy = pull::effective_policy(c.image_pull_policy.as_deref(), &image);
    let mut img = w.agent.cri.image.clone();
    let spec = cri::ImageSpec {
        image: image.clone(),
        ..Default::default()
    };
    let present = img
        .image_status(cri::ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: false,
        })
        .await
        .map(|r| r.into_inner().image.is_some())
        .unwrap_or(false);
    match pull::decide(policy, present) {
        PullDecision::UsePresent => {
            if !w.waiting.contains_key(&c.name) {
                event(
                    w,
                    Some(&c.name),
                    Kind::Normal,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                );
            }
            true
        }
        PullDecision::NeverPullMissing => {
            let msg = pull::never_pull_message(&image);
            if w.waiting.get(&c.name).map(|x| x.reason.as_str()) != Some("ErrImageNeverPull") {
                event(
                    w,
                    Some(&c.name),
                    Kind::Warning,
                    "ErrImageNeverPull",
                    msg.clone(),
                );
            }
            w.waiting
                .insert(c.name.clone(), Waiting::new("ErrImageNeverPull", msg));
            false
        }
        PullDecision::Pull => {
            event(
                w,
                Some(&c.name),
                Kind::Normal,
                "Pulling",
                format!("Pulling image \"{image}\""),
            );
            let auth = pull_auth(w, &image).await;
            let sandbox_config = cri_config::sandbox_config(&w.agent.node, &w.pod, 0);
            let started = Instant::now();
            match img
                .pull_image(cri::PullImageRequest {
                    image: Some(spec),
                    auth,
                    sandbox_config: Some(sandbox_config),
                })
                .await
            {
                Ok(_) => {
                    w.backoff.reset(&key);
                    event(
                        w,
                        Some(&c.name),
                        Kind::Normal,
                        "Pulled",
                        format!(
                            "Successfully pulled image \"{image}\" in {:.3}s",
                            started.elapsed().as_secs_f64()
                        ),
                    );
                    true
                }
                Err(e) => {
                    let msg = format!("failed to pull image \"{image}\": {}", e.message());
                    event(
                        w,
                        Some(&c.name),
                        Kind::Warning,
                        "Failed",
                        format!("Failed to pull image \"{image}\": {}", e.message()),
                    );
                    w.backoff.next(&key, Instant::now());
                    w.waiting
                        .insert(c.name.clone(), Waiting::new("ErrImagePull", msg));
                    false
                }
            }
        }
    }
}

fn fail(w: &mut Worker, c: &Container, reason: &str, msg: String) {
    event(
        w,
        Some(&c.name),
        Kind::Warning,
        "Failed",
        format!("Error: {msg}"),
    );
    w.waiting.insert(c.name.clone(), Waiting::new(reason, msg));
}

/// Pulls (per policy), creates and starts one run of `c` in `sandbox`,
/// then runs its postStart hook. Returns the container id once started.
pub async fn start_container(
    w: &mut Worker,
    c: &Container,
    sandbox: &str,
    attempt: u32,
) -> Option<String> {
    invalidate(w);
    if !ensure_image(w, c).await {
        return None;
    }
    let agent = w.agent.clone();
    let env_ctx = crate::env::EnvContext {
        api_host: agent.cfg.api_host.clone(),
        api_port: agent.cfg.api_port,
        node_allocatable: agent.allocatable.clone(),
        pod_ip: w.pod_ip.clone(),
        host_ip: agent.cfg.node_ip.to_string(),
    };
    let envs = match crate::env::container_env(&agent.cfg.client, &w.pod, c, &env_ctx).await {
        Ok(e) => e,
        Err(e) => {
            fail(w, c, "CreateContainerConfigError", e.to_string());
            return None;
        }
    };
    let term = agent
        .volumes
        .termination_log(&w.uid, &c.name, attempt as i32)
        .ok();
    let vols = w.volumes.clone().unwrap_or_default();
    let mounts = match agent.volumes.mounts_for(
        &w.pod,
        &vols,
        c,
        term.as_deref().unwrap_or(std::path::Path::new("")),
    ) {
        Ok(m) => m,
        Err(e) => {
            fail(w, c, "CreateContainerConfigError", e.to_string());
            return None;
        }
    };
    let config = cri_config::container_config(
        &w.pod,
        c,
        &ContainerRun {
            attempt,
            envs,
            mounts,
            termination_host_path: term,
            memory_bytes: agent.node.memory_bytes,
        },
    );
    let mut rt = agent.cri.runtime.clone();
    let sandbox_config = cri_config::sandbox_config(&agent.node, &w.pod, 0);
    let id = match rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        })
        .await
    {
        Ok(r) => r.into_inner().container_id,
        Err(e) => {
            fail(w, c, "CreateContainerError", e.message().to_string());
            return None;
        }
    };
    event(
        w,
        Some(&c.name),
        Kind::Normal,
        "Created",
        format!("Created container {}", c.name),
    );
    if let Err(e) = rt
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
    {
        fail(w, c, "RunContainerError", e.message().to_string());
        return None;
    }
    w.waiting.remove(&c.name);
    event(
        w,
        Some(&c.name),
        Kind::Normal,
        "Started",
        format!("Started container {}", c.name),
    );
    if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
        let grace = grace_seconds(&w.pod);
        if let Err(msg) = crate::hooks::run_handler(
            &agent.cri,
            h,
            c,
            &id,
            &w.pod_ip,
            Duration::from_secs(grace.max(1) as u64),
        )
        .await
        {
            tracing::info!("{}: postStart hook of {} failed: {msg}", w.key(), c.name);
            event(
                w,
                Some(&c.name),
                Kind::Warning,
                "FailedPostStartHook",
                msg.clone(),
            );
            event(
                w,
                Some(&c.name),
                Kind::Normal,
                "Killing",
                format!("FailedPostStartHook: container {} will be killed", c.name),
            );
            stop_container(w, &id, grace).await;
            w.waiting
                .insert(c.name.clone(), Waiting::new("PostStartHookError", msg));
        }
    }
    Some(id)
}

/// The pod's termination grace period in seconds.
pub fn grace_seconds(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
        .max(0)
}

/// StopContainer with `timeout` seconds of grace.
pub async fn stop_container(w: &mut Worker, id: &str, timeout: i64) {
    invalidate(w);
    let mut rt = w.agent.cri.runtime.clone();
    if let Err(e) = rt
        .stop_container(cri::StopContainerRequest {
            container_id: id.to_string(),
            timeout: timeout.max(0),
        })
        .await
    {
        tracing::warn!("{}: stopping container {id}: {}", w.key(), e.message());
    }
}

/// Starts a container that was created but not started (an interrupted
/// start before a restart of the agent).
pub async fn resume_created(w: &mut Worker, id: &str) {
    invalidate(w);
    let mut rt = w.agent.cri.runtime.clone();
    let _ = rt
        .start_container(cri::StartContainerRequest {
            container_id: id.to_string(),
        })
        .await;
}

/// Ticks the probes of a running container; a failed liveness or startup
/// probe kills it (the restart policy decides what follows). Returns how
/// soon the probes want another tick.
pub async fn tick_probes(
    w: &mut Worker,
    c: &Container,
    running: &cri::ContainerStatus,
) -> Duration {
    if c.liveness_probe.is_none() && c.readiness_probe.is_none() && c.startup_probe.is_none() {
        return Duration::from_secs(1);
    }
    let fresh = w
        .probes
        .get(&c.name)
        .is_none_or(|p| p.container_id != running.id);
    if fresh {
        // Delays count from the container's start (which may predate a
        // restart of the agent).
        let since_start =
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - running.started_at;
        let started = Instant::now()
            .checked_sub(Duration::from_nanos(since_start.max(0) as u64))
            .unwrap_or_else(Instant::now);
        let probes =
            ContainerProbes::for_container(&w.agent.cri, c, &running.id, &w.pod_ip, started);
        w.probes.insert(
            c.name.clone(),
            Probes {
                container_id: running.id.clone(),
                probes,
                ready: false,
            },
        );
    }
    let Some(p) = w.probes.get_mut(&c.name) else {
        return Duration::from_secs(1);
    };
    let events = p.probes.tick(Instant::now()).await;
    let interval = p.probes.poll_interval();
    let now_ready = p.probes.ready();
    let became_unready = p.ready && !now_ready;
    p.ready = now_ready;
    let readiness_msg = p
        .probes
        .readiness
        .as_ref()
        .map(|r| r.message().to_string())
        .unwrap_or_default();
    if became_unready && !readiness_msg.is_empty() {
        event(
            w,
            Some(&c.name),
            Kind::Warning,
            "Unhealthy",
            format!("Readiness probe failed: {readiness_msg}"),
        );
    }
    for ev in events {
        if let ProbeEvent::Restart {
            kind,
            message,
            grace_seconds: probe_grace,
        } = ev
        {
            let kind = kind.name();
            let mut probe = kind.to_string();
            if let Some(f) = probe.get_mut(0..1) {
                f.make_ascii_uppercase();
            }
            tracing::info!("{}: {kind} probe of {} failed: {message}", w.key(), c.name);
            event(
                w,
                Some(&c.name),
                Kind::Warning,
                "Unhealthy",
                format!("{probe} probe failed: {message}"),
            );
            event(
                w,
                Some(&c.name),
                Kind::Normal,
                "Killing",
                format!(
                    "Container {} failed {kind} probe, will be restarted",
                    c.name
                ),
            );
            let grace = probe_grace.unwrap_or_else(|| grace_seconds(&w.pod));
            stop_container(w, &running.id, grace).await;
            w.probes.remove(&c.name);
            break;
        }
    }
    interval
}

/// Re-renders configMap/secret/projected volumes every 10 s.
pub async fn refresh_volumes(w: &mut Worker) {
    if w.volumes_refreshed
        .is_some_and(|t| t.elapsed() < VOLUME_REFRESH)
    {
        return;
    }
    w.volumes_refreshed = Some(Instant::now());
    if let Some(v) = w.volumes.clone() {
        if let Err(e) = w.agent.volumes.refresh(&w.pod, &v).await {
            tracing::debug!("{}: refreshing volumes: {e}", w.key());
        }
    }
}

/// Computes the pod status and writes it (merge patch of pods/status) when
/// it differs from what was last written.
pub async fn sync_status(w: &mut Worker) {
    if w.status_frozen || w.gone {
        return;
    }
    if observe(w).await.is_none() {
        return;
    }
    let Some(obs) = w.observed.as_ref() else {
        return;
    };
    let mut probes: HashMap<String, (bool, bool)> = w
        .probes
        .iter()
        .filter(|(name, p)| {
            status::latest(&obs.containers, name)
                .0
                .is_some_and(|l| l.id == p.container_id)
        })
        .map(|(name, p)| (name.clone(), (p.probes.started(), p.probes.ready())))
        .collect();
    // A container with a readiness or startup probe is not ready before
    // its probes ran.
    if let Some(spec) = &w.pod.spec {
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let gated = c.readiness_probe.is_some() || c.startup_probe.is_some();
            if gated && !probes.contains_key(&c.name) {
                probes.insert(c.name.clone(), (c.startup_probe.is_none(), false));
            }
        }
    }
    // The watch may lag behind our own writes: our conditions and start
    // time come from what we last wrote, so transition times do not move.
    let mut pod = w.pod.clone();
    if let Some(last) = &w.last_written {
        let st = pod.status.get_or_insert_with(Default::default);
        let ours = last.conditions.clone().unwrap_or_default();
        let mut conds: Vec<_> = st
            .conditions
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !ours.iter().any(|o| o.type_ == c.type_))
            .collect();
        conds.extend(ours);
        st.conditions = Some(conds);
        st.start_time = st.start_time.take().or(last.start_time.clone());
        st.qos_class = st.qos_class.take().or(last.qos_class.clone());
    }
    let runtime = w.agent.runtime_name();
    let host_ip = w.agent.cfg.node_ip.to_string();
    let mut st = status::pod_status(&status::StatusInput {
        pod: &pod,
        runtime: &runtime,
        containers: &obs.containers,
        waiting: &w.waiting,
        probes: &probes,
        pod_ip: &w.pod_ip,
        host_ip: &host_ip,
        sandbox_ready: w.sandbox_ready,
        terminal: w.terminal,
        now: k8s_openapi::jiff::Timestamp::now(),
        message: &status::read_termination_message,
    });
    if let Some((reason, message)) = &w.failure {
        st.phase = Some("Failed".into());
        st.reason = Some(reason.clone());
        st.message = Some(message.clone());
    }
    let Ok(body) = serde_json::to_value(&st) else {
        return;
    };
    if w.last_status.as_ref() == Some(&body) {
        return;
    }
    if w.last_status.is_none()
        && w.pod
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            == Some(body.clone())
    {
        w.last_status = Some(body);
        w.last_written = Some(st);
        return;
    }
    let (ns, name, _) = cri_config::pod_key(&w.pod);
    let api: Api<Pod> = Api::namespaced(w.agent.cfg.client.clone(), &ns);
    match api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": body.clone()})),
        )
        .await
    {
        Ok(_) => {
            w.last_status = Some(body);
            w.last_written = Some(st);
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => tracing::debug!("{}: writing status: {e}", w.key()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctr(name: &str, id: &str, restarts: u32, created: i64) -> cri::ContainerStatus {
        cri::ContainerStatus {
            id: id.into(),
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: restarts,
            }),
            created_at: created,
            annotations: HashMap::from([(
                cri_config::ANN_RESTART_COUNT.to_string(),
                restarts.to_string(),
            )]),
            ..Default::default()
        }
    }

    #[test]
    fn observed_helpers() {
        let sb = |id: &str, state, created| cri::PodSandbox {
            id: id.into(),
            state,
            created_at: created,
            ..Default::default()
        };
        let o = Observed {
            sandboxes: vec![sb("s1", 1, 1), sb("s2", SANDBOX_READY, 2)],
            containers: vec![
                ctr("a", "a0", 0, 1),
                ctr("a", "a1", 1, 2),
                ctr("a", "a2", 2, 3),
            ],
            sandbox_of: HashMap::from([
                ("a0".into(), "s1".into()),
                ("a1".into(), "s1".into()),
                ("a2".into(), "s2".into()),
            ]),
        };
        assert_eq!(o.ready_sandbox().unwrap().id, "s2");
        assert_eq!(o.latest_in("s1", "a").unwrap().id, "a1");
        assert_eq!(o.latest_in("s2", "a").unwrap().id, "a2");
        assert!(o.latest_in("s2", "b").is_none());
        assert_eq!(o.next_attempt("a"), 3);
        assert_eq!(o.next_attempt("b"), 0);
    }

    #[test]
    fn messages() {
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"}}),
        )
        .unwrap();
        assert_eq!(
            crash_loop_message(Duration::from_secs(10), "c", &pod),
            "back-off 10s restarting failed container=c pod=p_d(u)"
        );
        assert_eq!(fmt_delay(Duration::from_secs(300)), "5m0s");
        assert_eq!(fmt_delay(Duration::from_secs(80)), "1m20s");
    }
}
