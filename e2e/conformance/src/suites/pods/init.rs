//! Init containers (success and failure under each restart policy) and
//! ephemeral containers.

use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::PostParams;
use serde_json::{json, Value};

use super::{condition, uid, wait_pod_until};
use crate::conformance;
use crate::ctx::{from_json, phase, pod, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!(
            "init-container-starts-app-restartnever-pod",
            init_restart_never
        ),
        conformance!(
            "init-container-starts-app-restartalways-pod",
            init_restart_always
        ),
        conformance!(
            "init-container-fails-stops-app-restartalways-pod",
            init_fail_restart_always
        ),
        conformance!(
            "init-container-fails-stops-app-restartnever-pod",
            init_fail_restart_never
        ),
        conformance!("Ephemeral Container Creation", ephemeral_start),
        conformance!(
            "Ephemeral Container, update ephemeral containers",
            ephemeral_update
        ),
    ]
}

fn bb(c: &Ctx, name: &str, cmd: &str) -> Value {
    json!({"name": name, "image": c.env.images.busybox, "command": [cmd]})
}

fn init_pod(policy: &str, init: Vec<Value>, app: Value) -> (String, Value) {
    let name = format!("pod-init-{}", uid());
    let mut p = pod(
        &name,
        json!({"restartPolicy": policy, "initContainers": init, "containers": [app]}),
    );
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    p["metadata"]["labels"] = json!({"name": "foo", "time": t.to_string()});
    (name, p)
}

fn init_statuses(p: &Pod) -> &[ContainerStatus] {
    p.status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or(&[])
}

fn app_statuses(p: &Pod) -> &[ContainerStatus] {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or(&[])
}

fn exit_code(s: &ContainerStatus) -> Option<i32> {
    s.state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .map(|t| t.exit_code)
}

fn waiting_reason(s: &ContainerStatus) -> Option<&str> {
    s.state
        .as_ref()
        .and_then(|st| st.waiting.as_ref())
        .map(|w| w.reason.as_deref().unwrap_or(""))
}

/// Both init containers ran to completion with exit code 0.
fn check_inits_ok(p: &Pod) -> Result<()> {
    let inits = init_statuses(p);
    ensure!(
        inits.len() == 2,
        "{} init container statuses, want 2",
        inits.len()
    );
    for s in inits {
        ensure!(
            exit_code(s) == Some(0),
            "init container {} did not exit 0: {:?}",
            s.name,
            s.state
        );
    }
    let init = condition(p, "Initialized");
    ensure!(
        init.as_ref().is_some_and(|(s, _)| s == "True"),
        "Initialized condition is {init:?}"
    );
    Ok(())
}

async fn init_restart_never(c: Ctx) -> Result<()> {
    let (name, p) = init_pod(
        "Never",
        vec![bb(&c, "init1", "/bin/true"), bb(&c, "init2", "/bin/true")],
        bb(&c, "run1", "/bin/true"),
    );
    c.create_pod(p).await?;
    let p = wait_pod_until(&c, &name, "completed", c.env.pod_start, |p| {
        Ok(matches!(phase(p), "Succeeded" | "Failed"))
    })
    .await?;
    ensure!(phase(&p) == "Succeeded", "pod ended {}", phase(&p));
    check_inits_ok(&p)
}

async fn init_restart_always(c: Ctx) -> Result<()> {
    let app = json!({
        "name": "run1",
        "image": c.env.images.pause,
        "resources": {"limits": {"cpu": "100m", "memory": "52428800"}},
    });
    let (name, p) = init_pod(
        "Always",
        vec![bb(&c, "init1", "/bin/true"), bb(&c, "init2", "/bin/true")],
        app,
    );
    c.create_pod(p).await?;
    let p = wait_pod_until(&c, &name, "running", c.env.pod_start, |p| {
        Ok(phase(p) == "Running")
    })
    .await?;
    check_inits_ok(&p)
}

async fn init_fail_restart_always(c: Ctx) -> Result<()> {
    let app = json!({
        "name": "run1",
        "image": c.env.images.pause,
        "resources": {"limits": {"cpu": "100m", "memory": "52428800"}},
    });
    let (name, p) = init_pod(
        "Always",
        vec![bb(&c, "init1", "/bin/false"), bb(&c, "init2", "/bin/true")],
        app,
    );
    c.create_pod(p).await?;
    // Until the first init container has failed 3 times, nothing else runs.
    let p = wait_pod_until(
        &c,
        &name,
        "init1 restarted 3 times",
        Duration::from_secs(300),
        |p| {
            for s in app_statuses(p) {
                match waiting_reason(s) {
                    None => bail!(
                        "container {} should not be out of waiting: {:?}",
                        s.name,
                        s.state
                    ),
                    Some("PodInitializing") => {}
                    Some(r) => bail!(
                        "container {} should be waiting with PodInitializing, not {r}",
                        s.name
                    ),
                }
            }
            let inits = init_statuses(p);
            if inits.len() != 2 {
                return Ok(false);
            }
            match waiting_reason(&inits[1]) {
                None => bail!(
                    "second init container should not be out of waiting: {:?}",
                    inits[1].state
                ),
                Some("PodInitializing") => {}
                Some(r) => {
                    bail!("second init container should be waiting with PodInitializing, not {r}")
                }
            }
            Ok(inits[0].restart_count >= 3)
        },
    )
    .await?;
    ensure!(
        phase(&p) == "Pending",
        "pod phase is {}, want Pending",
        phase(&p)
    );
    let init = condition(&p, "Initialized");
    ensure!(
        init.as_ref()
            .is_some_and(|(s, r)| s == "False" && r == "ContainersNotInitialized"),
        "Initialized condition is {init:?}"
    );
    Ok(())
}

async fn init_fail_restart_never(c: Ctx) -> Result<()> {
    let (name, p) = init_pod(
        "Never",
        vec![bb(&c, "init1", "/bin/true"), bb(&c, "init2", "/bin/false")],
        json!({"name": "run1", "image": c.env.images.busybox, "command": ["/bin/true"]}),
    );
    c.create_pod(p).await?;
    let p = wait_pod_until(&c, &name, "failed", c.env.pod_start, |p| {
        for s in app_statuses(p) {
            match waiting_reason(s) {
                None => bail!(
                    "container {} should not be out of waiting: {:?}",
                    s.name,
                    s.state
                ),
                Some("PodInitializing") => {}
                Some(r) => bail!(
                    "container {} should be waiting with PodInitializing, not {r}",
                    s.name
                ),
            }
        }
        Ok(match phase(p) {
            "Failed" => true,
            "Succeeded" => bail!("pod succeeded although an init container failed"),
            _ => false,
        })
    })
    .await?;
    let inits = init_statuses(&p);
    ensure!(
        inits.len() == 2,
        "{} init container statuses, want 2",
        inits.len()
    );
    ensure!(
        exit_code(&inits[0]) == Some(0),
        "init1 did not exit 0: {:?}",
        inits[0].state
    );
    ensure!(
        exit_code(&inits[1]).is_some_and(|c| c != 0),
        "init2 did not fail: {:?}",
        inits[1].state
    );
    let init = condition(&p, "Initialized");
    ensure!(
        init.as_ref()
            .is_some_and(|(s, r)| s == "False" && r == "ContainersNotInitialized"),
        "Initialized condition is {init:?}"
    );
    Ok(())
}

const EC_POD: &str = "ephemeral-containers-target-pod";

async fn ephemeral_target(c: &Ctx) -> Result<()> {
    c.create_pod(pod(
        EC_POD,
        json!({"containers": [{
            "name": "test-container-1",
            "image": c.env.images.busybox,
            "command": ["/bin/sleep"],
            "args": ["10000"],
        }]}),
    ))
    .await?;
    c.wait_running(EC_POD).await?;
    Ok(())
}

fn debugger(c: &Ctx, name: &str) -> Value {
    json!({
        "name": name,
        "image": c.env.images.busybox,
        "command": ["/bin/sh"],
        "stdin": true,
        "tty": true,
    })
}

/// Adds ephemeral container `ec` through the ephemeralcontainers subresource.
async fn add_ephemeral(c: &Ctx, ec: Value) -> Result<Pod> {
    let pods = c.pods();
    let mut p = pods.get_ephemeral_containers(EC_POD).await?;
    let spec = p.spec.as_mut().context("spec")?;
    spec.ephemeral_containers
        .get_or_insert_with(Vec::new)
        .push(from_json(ec)?);
    pods.replace_ephemeral_containers(EC_POD, &PostParams::default(), &p)
        .await
        .context("add ephemeral container")
}

async fn wait_ephemeral_running(c: &Ctx, name: &str) -> Result<()> {
    wait_pod_until(
        c,
        EC_POD,
        &format!("ephemeral container {name} running"),
        c.env.pod_start,
        |p| {
            Ok(p.status
                .as_ref()
                .and_then(|s| s.ephemeral_container_statuses.as_ref())
                .and_then(|v| v.iter().find(|s| s.name == name))
                .and_then(|s| s.state.as_ref())
                .is_some_and(|s| s.running.is_some()))
        },
    )
    .await?;
    Ok(())
}

async fn ephemeral_start(c: Ctx) -> Result<()> {
    ephemeral_target(&c).await?;
    add_ephemeral(&c, debugger(&c, "debugger")).await?;
    wait_ephemeral_running(&c, "debugger").await?;
    let out = c
        .exec(EC_POD, Some("debugger"), &["/bin/echo", "marco"])
        .await?;
    ensure!(
        out.contains("marco"),
        "exec in the ephemeral container printed {out:?}"
    );
    Ok(())
}

async fn ephemeral_update(c: Ctx) -> Result<()> {
    ephemeral_target(&c).await?;
    add_ephemeral(&c, debugger(&c, "debugger")).await?;
    wait_ephemeral_running(&c, "debugger").await?;
    let out = c
        .exec(EC_POD, Some("debugger"), &["/bin/echo", "marco"])
        .await?;
    ensure!(
        out.contains("marco"),
        "exec in the ephemeral container printed {out:?}"
    );

    let p = c.pods().get(EC_POD).await?;
    let n = p
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .map_or(0, Vec::len);
    ensure!(n == 1, "{n} ephemeral containers, want 1");

    add_ephemeral(&c, debugger(&c, "debugger2")).await?;
    let p = c.pods().get(EC_POD).await?;
    let n = p
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .map_or(0, Vec::len);
    ensure!(n == 2, "{n} ephemeral containers, want 2");
    Ok(())
}
