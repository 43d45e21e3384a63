//! Pod status as the kubelet reports it, computed from the pod spec and the
//! runtime's container statuses: container states, phase and conditions.

use k8s_openapi::api::core::v1::{Container, Pod};
use rkube_cri::api as cri;
use serde_json::{json, Value};

fn ts(nanos: i64) -> Value {
    if nanos <= 0 {
        return Value::Null;
    }
    let secs = nanos / 1_000_000_000;
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null)
}

fn terminated(c: &cri::ContainerStatus, runtime: &str) -> Value {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let mut t = json!({
        "exitCode": c.exit_code, "reason": reason,
        "startedAt": ts(c.started_at), "finishedAt": ts(c.finished_at),
        "containerID": format!("{runtime}://{}", c.id),
    });
    let msg = c
        .annotations
        .get("io.kubernetes.container.terminationMessageHostPath")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .filter(|m| !m.is_empty())
        .map(|m| m.chars().take(4096).collect::<String>())
        .unwrap_or_else(|| c.message.clone());
    if !msg.is_empty() {
        t["message"] = json!(msg);
    }
    t
}

/// One containerStatuses entry.
#[allow(clippy::too_many_arguments)]
pub(crate) fn container_status(
    spec: &Container,
    last: Option<&cri::ContainerStatus>,
    prev: Option<&cri::ContainerStatus>,
    waiting: Option<&(String, String)>,
    runtime: &str,
    started: bool,
    ready: bool,
    default_waiting: &str,
) -> Value {
    const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
    const EXITED: i32 = cri::ContainerState::ContainerExited as i32;
    let restart = last
        .and_then(|l| l.metadata.as_ref())
        .map(|m| m.attempt)
        .unwrap_or(0);
    let mut out = json!({
        "name": spec.name,
        "image": spec.image.clone().unwrap_or_default(),
        "imageID": last.map(|l| l.image_ref.clone()).unwrap_or_default(),
        "restartCount": restart,
        "ready": false,
        "started": false,
        "lastState": {},
    });
    if let Some(l) = last {
        out["containerID"] = json!(format!("{runtime}://{}", l.id));
    }
    let waiting_state = |r: &str, m: &str| {
        let mut w = json!({"reason": r});
        if !m.is_empty() {
            w["message"] = json!(m);
        }
        json!({"waiting": w})
    };
    match (last, waiting) {
        (Some(l), Some((r, m))) if l.state == EXITED => {
            out["state"] = waiting_state(r, m);
            out["lastState"] = json!({"terminated": terminated(l, runtime)});
        }
        (None, Some((r, m))) => out["state"] = waiting_state(r, m),
        (Some(l), _) if l.state == RUNNING => {
            out["state"] = json!({"running": {"startedAt": ts(l.started_at)}});
            out["started"] = json!(started);
            out["ready"] = json!(ready && started);
            if let Some(p) = prev.filter(|p| p.state == EXITED) {
                out["lastState"] = json!({"terminated": terminated(p, runtime)});
            }
        }
        (Some(l), _) if l.state == EXITED => {
            out["state"] = json!({"terminated": terminated(l, runtime)});
            if let Some(p) = prev.filter(|p| p.state == EXITED) {
                out["lastState"] = json!({"terminated": terminated(p, runtime)});
            }
        }
        (Some(_), Some((r, m))) => out["state"] = waiting_state(r, m),
        _ => out["state"] = waiting_state(default_waiting, ""),
    }
    out
}

/// What the phase depends on.
pub struct PodPhaseInput<'a> {
    /// restartPolicy.
    pub restart_policy: &'a str,
    /// Whether an init container failed for good.
    pub init_failed: bool,
    /// Whether every init container completed.
    pub initialized: bool,
    /// The app containers' statuses.
    pub statuses: &'a [Value],
}

/// Pod phase as the kubelet computes it.
pub fn compute_phase(i: &PodPhaseInput<'_>) -> &'static str {
    if i.init_failed {
        return "Failed";
    }
    if !i.initialized {
        return "Pending";
    }
    let mut running = 0;
    let mut succeeded = 0;
    let mut failed = 0;
    let mut waiting = 0;
    let mut restarted_waiting = 0;
    for s in i.statuses {
        let st = &s["state"];
        if st.get("running").is_some() {
            running += 1;
        } else if let Some(t) = st.get("terminated") {
            if t["exitCode"].as_i64() == Some(0) {
                succeeded += 1;
            } else {
                failed += 1;
            }
        } else {
            waiting += 1;
            if s["lastState"].get("terminated").is_some() {
                restarted_waiting += 1;
            }
        }
    }
    if waiting > restarted_waiting {
        return "Pending";
    }
    if running > 0 || restarted_waiting > 0 {
        return "Running";
    }
    if i.statuses.is_empty() {
        return "Pending";
    }
    match i.restart_policy {
        "Always" => "Running",
        "OnFailure" if failed > 0 => "Running",
        _ if failed > 0 => "Failed",
        _ if succeeded > 0 => "Succeeded",
        _ => "Pending",
    }
}

/// The whole `status` of a pod.
pub(crate) fn pod_status(
    pod: &Pod,
    statuses: &[Value],
    init_statuses: &[Value],
    pod_ip: &str,
    host_ip: &str,
    init_failed: bool,
    has_sandbox: bool,
) -> Value {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let prev = pod.status.clone().unwrap_or_default();
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let initialized = init_statuses.iter().all(|s| {
        s["state"]
            .get("terminated")
            .is_some_and(|t| t["exitCode"].as_i64() == Some(0))
    });
    let phase = compute_phase(&PodPhaseInput {
        restart_policy: &policy,
        init_failed,
        initialized,
        statuses,
    });
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s["ready"] == true);
    let prev_cond = |t: &str| {
        prev.conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
            .map(|c| {
                (
                    c.status.clone(),
                    c.last_transition_time
                        .as_ref()
                        .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_default(),
                )
            })
    };
    let cond = |t: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let at = match prev_cond(t) {
            Some((s, at)) if s == status && !at.is_empty() => at,
            _ => now.clone(),
        };
        let mut c =
            json!({"type": t, "status": status, "lastProbeTime": null, "lastTransitionTime": at});
        if let Some(r) = reason.filter(|_| !ok) {
            c["reason"] = json!(r);
        }
        c
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    let mut conditions = vec![
        cond(
            "PodReadyToStartContainers",
            has_sandbox && !pod_ip.is_empty(),
            None,
        ),
        cond("Initialized", initialized, Some("ContainersNotInitialized")),
        cond(
            "Ready",
            all_ready && !terminal,
            Some(if terminal {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            }),
        ),
        cond(
            "ContainersReady",
            all_ready && !terminal,
            Some(if terminal {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            }),
        ),
    ];
    if let Some(ps) = prev
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
    {
        conditions.push(serde_json::to_value(ps).unwrap_or_default());
    }
    let start = prev
        .start_time
        .as_ref()
        .map(|t| json!(t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or_else(|| json!(now));
    let mut out = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start,
        "containerStatuses": statuses,
    });
    if !init_statuses.is_empty() {
        out["initContainerStatuses"] = json!(init_statuses);
    }
    if !pod_ip.is_empty() {
        out["podIP"] = json!(pod_ip);
        out["podIPs"] = json!([{"ip": pod_ip}]);
    }
    if let Some(q) = prev.qos_class {
        out["qosClass"] = json!(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(v: Value) -> Value {
        json!({"state": v, "lastState": {}})
    }

    #[test]
    fn phases() {
        let running = [st(json!({"running": {}}))];
        let ok = [st(json!({"terminated": {"exitCode": 0}}))];
        let bad = [st(json!({"terminated": {"exitCode": 1}}))];
        let waiting = [st(json!({"waiting": {"reason": "ContainerCreating"}}))];
        let p = |policy, s: &[Value], init| {
            compute_phase(&PodPhaseInput {
                restart_policy: policy,
                init_failed: false,
                initialized: init,
                statuses: s,
            })
        };
        assert_eq!(p("Always", &running, true), "Running");
        assert_eq!(p("Never", &ok, true), "Succeeded");
        assert_eq!(p("Never", &bad, true), "Failed");
        assert_eq!(p("OnFailure", &bad, true), "Running");
        assert_eq!(p("Always", &waiting, true), "Pending");
        assert_eq!(p("Always", &running, false), "Pending");
        let crashloop = [
            json!({"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}),
        ];
        assert_eq!(p("Always", &crashloop, true), "Running");
    }
}
