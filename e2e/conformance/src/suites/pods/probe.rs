//! Probing container: readiness and liveness probes (exec, HTTP, TCP, gRPC)
//! and the restarts they cause.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::{json, Value};

use super::{restart_count, uid, wait_pod_until};
use crate::conformance;
use crate::ctx::{phase, pod, ready, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!(
            "Pod readiness probe, with initial delay",
            readiness_initial_delay
        ),
        conformance!("Pod readiness probe, failure", readiness_failure),
        conformance!(
            "Pod liveness probe, using local file, restart",
            exec_restart
        ),
        conformance!(
            "Pod liveness probe, using local file, no restart",
            exec_no_restart
        ),
        conformance!(
            "Pod liveness probe, using http endpoint, restart",
            http_restart
        ),
        conformance!(
            "Pod liveness probe, using http endpoint, failure",
            http_no_restart
        ),
        conformance!(
            "Pod liveness probe, using tcp socket, no restart",
            tcp_no_restart
        ),
        conformance!(
            "Pod liveness probe, using http endpoint, multiple restarts (slow)",
            monotonic_restarts
        ),
        conformance!(
            "Pod liveness probe, using grpc call, success",
            grpc_no_restart
        ),
        conformance!("Pod liveness probe, using grpc call, failure", grpc_restart),
    ]
}

/// Upstream's probeTestInitialDelaySeconds.
const INITIAL_DELAY: i64 = 15;
/// Upstream's defaultObservationTimeout.
const OBSERVATION: Duration = Duration::from_secs(4 * 60);

/// Upstream's RunLivenessTest: start the pod, then watch its restart count
/// for `timeout`; it must reach `expect` (or stay 0 when `expect` is 0) and
/// never decrease.
async fn run_liveness(
    c: &Ctx,
    p: Value,
    container: &str,
    expect: i32,
    timeout: Duration,
) -> Result<()> {
    let name = p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    c.create_pod(p).await?;
    let pods = c.pods();
    // Wait until the pod is not pending.
    let p = wait_pod_until(c, &name, "not pending", c.env.pod_start, |p| {
        Ok(!matches!(phase(p), "Pending" | ""))
    })
    .await?;
    let count = |p: &k8s_openapi::api::core::v1::Pod| {
        super::container_status(p, container).map_or(0, |s| s.restart_count)
    };
    let initial = count(&p);
    let mut last = initial;
    let mut observed = 0;
    let start = Instant::now();
    while start.elapsed() < timeout {
        let p = pods.get(&name).await.context("get pod")?;
        let n = count(&p);
        ensure!(
            n >= last,
            "restart count of pod {name} went down from {last} to {n}"
        );
        last = n;
        observed = n - initial;
        if expect > 0 && observed >= expect {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if expect == 0 && observed > 0 {
        bail!("pod {name} was restarted {observed} times, expected none");
    }
    if expect > 0 && observed < expect {
        bail!(
            "pod {name} was restarted {observed} times in {timeout:?}, expected at least {expect}"
        );
    }
    Ok(())
}

/// Upstream's testWebServerPodSpec: agnhost test-webserver on port 80.
fn webserver_pod(c: &Ctx, readiness: Option<Value>, liveness: Option<Value>) -> Value {
    let mut ct = json!({
        "name": "test-webserver",
        "image": c.env.images.agnhost,
        "args": ["test-webserver"],
        "ports": [{"containerPort": 80}],
    });
    if let Some(r) = readiness {
        ct["readinessProbe"] = r;
    }
    if let Some(l) = liveness {
        ct["livenessProbe"] = l;
    }
    pod(
        &format!("test-webserver-{}", uid()),
        json!({"containers": [ct]}),
    )
}

/// Upstream's livenessPodSpec: one container with the given probe.
fn liveness_pod(name: &str, image: &str, container: Value, probe: Value) -> Value {
    let mut ct = json!({"name": "agnhost-container", "image": image, "livenessProbe": probe});
    if let (Some(d), Some(s)) = (ct.as_object_mut(), container.as_object()) {
        for (k, v) in s {
            d.insert(k.clone(), v.clone());
        }
    }
    let mut p = pod(name, json!({"containers": [ct]}));
    p["metadata"]["labels"] = json!({"test": "liveness"});
    p
}

/// Seconds since the epoch of an API time.
fn rfc3339(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_second()
}

async fn readiness_initial_delay(c: Ctx) -> Result<()> {
    let probe = json!({
        "httpGet": {"path": "/", "port": 80},
        "initialDelaySeconds": INITIAL_DELAY,
    });
    let p = webserver_pod(&c, Some(probe), None);
    let name = p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    c.create_pod(p).await?;
    let p = c.wait_running(&name).await?;
    let ready_time = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(rfc3339)
        .context("no Ready transition time")?;
    let st = super::container_status(&p, "test-webserver").context("no container status")?;
    let started = st
        .state
        .as_ref()
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.as_ref())
        .map(rfc3339)
        .context("container is not running")?;
    let delay = ready_time - started;
    ensure!(
        delay >= INITIAL_DELAY,
        "pod became ready {delay}s after its container started, before the initial delay of {INITIAL_DELAY}s"
    );
    ensure!(
        st.restart_count == 0,
        "pod restarted {} times",
        st.restart_count
    );
    Ok(())
}

async fn readiness_failure(c: Ctx) -> Result<()> {
    let probe = json!({"exec": {"command": ["/bin/false"]}, "initialDelaySeconds": INITIAL_DELAY});
    let p = webserver_pod(&c, Some(probe), None);
    let name = p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    c.create_pod(p).await?;
    // Never ready for a minute.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let p = c.pods().get(&name).await?;
        ensure!(
            !ready(&p),
            "pod became ready although its readiness probe fails"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let p = c.pods().get(&name).await?;
    ensure!(
        !ready(&p),
        "pod is ready although its readiness probe fails"
    );
    ensure!(
        restart_count(&p) == 0,
        "pod restarted {} times",
        restart_count(&p)
    );
    Ok(())
}

fn cat_health_probe() -> Value {
    json!({
        "exec": {"command": ["cat", "/tmp/health"]},
        "initialDelaySeconds": INITIAL_DELAY,
        "timeoutSeconds": 5,
        "failureThreshold": 1,
    })
}

async fn exec_restart(c: Ctx) -> Result<()> {
    let cmd = "echo ok >/tmp/health; sleep 10; rm -rf /tmp/health; sleep 600";
    let p = liveness_pod(
        &format!("busybox-{}", uid()),
        &c.env.images.busybox,
        json!({"command": ["/bin/sh", "-c", cmd]}),
        cat_health_probe(),
    );
    run_liveness(&c, p, "agnhost-container", 1, OBSERVATION).await
}

async fn exec_no_restart(c: Ctx) -> Result<()> {
    let cmd = "echo ok >/tmp/health; sleep 600";
    let p = liveness_pod(
        &format!("busybox-{}", uid()),
        &c.env.images.busybox,
        json!({"command": ["/bin/sh", "-c", cmd]}),
        cat_health_probe(),
    );
    run_liveness(&c, p, "agnhost-container", 0, OBSERVATION).await
}

fn healthz_probe(initial: i64) -> Value {
    json!({
        "httpGet": {"path": "/healthz", "port": 8080},
        "initialDelaySeconds": initial,
        "failureThreshold": 1,
    })
}

async fn http_restart(c: Ctx) -> Result<()> {
    let p = liveness_pod(
        &format!("liveness-{}", uid()),
        &c.env.images.agnhost,
        json!({"args": ["liveness"]}),
        healthz_probe(INITIAL_DELAY),
    );
    run_liveness(&c, p, "agnhost-container", 1, OBSERVATION).await
}

async fn http_no_restart(c: Ctx) -> Result<()> {
    let probe = json!({
        "httpGet": {"path": "/", "port": 80},
        "initialDelaySeconds": INITIAL_DELAY,
        "timeoutSeconds": 5,
        "failureThreshold": 5,
    });
    let p = webserver_pod(&c, None, Some(probe));
    run_liveness(&c, p, "test-webserver", 0, OBSERVATION).await
}

async fn tcp_no_restart(c: Ctx) -> Result<()> {
    let probe = json!({
        "tcpSocket": {"port": 8080},
        "initialDelaySeconds": INITIAL_DELAY,
        "failureThreshold": 1,
    });
    let p = liveness_pod(
        &format!("liveness-{}", uid()),
        &c.env.images.agnhost,
        json!({"args": ["liveness"]}),
        probe,
    );
    run_liveness(&c, p, "agnhost-container", 0, OBSERVATION).await
}

async fn monotonic_restarts(c: Ctx) -> Result<()> {
    let p = liveness_pod(
        &format!("liveness-{}", uid()),
        &c.env.images.agnhost,
        json!({"args": ["liveness"]}),
        healthz_probe(5),
    );
    run_liveness(&c, p, "agnhost-container", 5, Duration::from_secs(5 * 60)).await
}

/// Upstream's gRPCServerPodSpec: agnhost grpc-health-checking.
fn grpc_pod(c: &Ctx, probe: Value) -> Value {
    let ct = json!({
        "name": "agnhost",
        "image": c.env.images.agnhost,
        "command": ["/agnhost", "grpc-health-checking"],
        "ports": [{"containerPort": 5000}, {"containerPort": 8080}],
        "livenessProbe": probe,
    });
    pod(&format!("test-grpc-{}", uid()), json!({"containers": [ct]}))
}

async fn grpc_no_restart(c: Ctx) -> Result<()> {
    let probe = json!({
        "grpc": {"port": 5000},
        "initialDelaySeconds": INITIAL_DELAY,
        "timeoutSeconds": 5,
        "failureThreshold": 1,
    });
    run_liveness(&c, grpc_pod(&c, probe), "agnhost", 0, OBSERVATION).await
}

async fn grpc_restart(c: Ctx) -> Result<()> {
    let probe = json!({
        "grpc": {"port": 2333},
        "initialDelaySeconds": INITIAL_DELAY * 4,
        "timeoutSeconds": 5,
        "failureThreshold": 1,
    });
    run_liveness(&c, grpc_pod(&c, probe), "agnhost", 1, OBSERVATION).await
}
