//! Container lifecycle hooks (postStart/preStop, exec and HTTP) and the
//! preStop call seen by a server pod.

use std::time::Duration;

use anyhow::{Context as _, Result};
use kube::api::DeleteParams;
use regex::Regex;
use serde_json::{json, Value};

use super::{wait_for, wait_logs};
use crate::conformance;
use crate::ctx::{pod, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Pod Lifecycle, post start exec hook", poststart_exec),
        conformance!("Pod Lifecycle, prestop exec hook", prestop_exec),
        conformance!("Pod Lifecycle, post start http hook", poststart_http),
        conformance!("Pod Lifecycle, prestop http hook", prestop_http),
        conformance!("Pods, prestop hook", prestop_server),
    ]
}

const HANDLER: &str = "pod-handle-http-request";
const HANDLER_CONTAINER: &str = "agnhost-container";

/// Starts the pod that records the hooks' HTTP requests; returns its IP
/// (bracketed when IPv6) and its node.
async fn start_handler(c: &Ctx) -> Result<(String, String, String)> {
    c.create_pod(pod(
        HANDLER,
        json!({"containers": [{
            "name": HANDLER_CONTAINER,
            "image": c.env.images.agnhost,
            "args": ["netexec", "--http-port=8080"],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        }]}),
    ))
    .await?;
    let p = c.wait_running(HANDLER).await?;
    let ip = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("handler pod has no IP")?;
    let node = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let url_host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.clone()
    };
    Ok((ip, url_host, node))
}

/// A pod whose container `name` runs `image` with `lifecycle`.
fn pod_with_hook(name: &str, image: &str, lifecycle: Value, node: Option<&str>) -> Value {
    let mut spec = json!({"containers": [{"name": name, "image": image, "lifecycle": lifecycle}]});
    if let Some(n) = node.filter(|n| !n.is_empty()) {
        spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}],
        }}});
    }
    pod(name, spec)
}

/// Upstream's testPodWithHook: run the pod, check the postStart call,
/// delete the pod (grace 15s), check the preStop call.
async fn run_hook_pod(c: &Ctx, p: Value, post_start: bool, pre_stop: bool) -> Result<()> {
    let name = p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    c.create_pod(p).await?;
    c.wait_running(&name).await?;
    if post_start {
        let re = Regex::new(r"GET /echo\?msg=poststart")?;
        wait_logs(
            c,
            HANDLER,
            Some(HANDLER_CONTAINER),
            Duration::from_secs(120),
            |l| re.is_match(l),
        )
        .await
        .context("the postStart hook was not called")?;
    }
    c.pods()
        .delete(&name, &DeleteParams::default().grace_period(15))
        .await?;
    let pods = c.pods();
    wait_for(
        &format!("pod {name} gone"),
        Duration::from_secs(300),
        || {
            let pods = pods.clone();
            let name = name.clone();
            async move { Ok(pods.get_opt(&name).await?.is_none().then_some(())) }
        },
    )
    .await?;
    if pre_stop {
        let re = Regex::new(r"GET /echo\?msg=prestop")?;
        wait_logs(
            c,
            HANDLER,
            Some(HANDLER_CONTAINER),
            Duration::from_secs(30),
            |l| re.is_match(l),
        )
        .await
        .context("the preStop hook was not called")?;
    }
    Ok(())
}

async fn poststart_exec(c: Ctx) -> Result<()> {
    let (_, host, _) = start_handler(&c).await?;
    // The image has busybox's wget where upstream's has curl.
    let lc = json!({"postStart": {"exec": {"command":
        ["sh", "-c", format!("wget -qO- http://{host}:8080/echo?msg=poststart")]}}});
    let p = pod_with_hook(
        "pod-with-poststart-exec-hook",
        &c.env.images.agnhost,
        lc,
        None,
    );
    run_hook_pod(&c, p, true, false).await
}

async fn prestop_exec(c: Ctx) -> Result<()> {
    let (_, host, _) = start_handler(&c).await?;
    let lc = json!({"preStop": {"exec": {"command":
        ["sh", "-c", format!("wget -qO- http://{host}:8080/echo?msg=prestop")]}}});
    let p = pod_with_hook(
        "pod-with-prestop-exec-hook",
        &c.env.images.agnhost,
        lc,
        None,
    );
    run_hook_pod(&c, p, false, true).await
}

async fn poststart_http(c: Ctx) -> Result<()> {
    let (ip, _, node) = start_handler(&c).await?;
    let lc = json!({"postStart": {"httpGet": {"path": "/echo?msg=poststart", "host": ip, "port": 8080}}});
    let p = pod_with_hook(
        "pod-with-poststart-http-hook",
        &c.env.images.pause,
        lc,
        Some(&node),
    );
    run_hook_pod(&c, p, true, false).await
}

async fn prestop_http(c: Ctx) -> Result<()> {
    let (ip, _, node) = start_handler(&c).await?;
    let lc =
        json!({"preStop": {"httpGet": {"path": "/echo?msg=prestop", "host": ip, "port": 8080}}});
    let p = pod_with_hook(
        "pod-with-prestop-http-hook",
        &c.env.images.pause,
        lc,
        Some(&node),
    );
    run_hook_pod(&c, p, false, true).await
}

async fn prestop_server(c: Ctx) -> Result<()> {
    // The server counts what is POSTed to /write and reports it on /read.
    let mut server = pod(
        "server",
        json!({"containers": [{
            "name": "agnhost-container",
            "image": c.env.images.agnhost,
            "args": ["nettest"],
            "ports": [{"containerPort": 8080}],
        }]}),
    );
    server["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("terminationGracePeriodSeconds");
    c.create_pod(server).await?;
    let sp = c
        .wait_pod("server", "Running", |p| crate::ctx::phase(p) == "Running")
        .await?;
    let ip = sp
        .status
        .and_then(|s| s.pod_ip)
        .context("server pod has no IP")?;
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip
    };

    let mut tester = pod(
        "tester",
        json!({"containers": [{
            "name": "tester",
            "image": c.env.images.busybox,
            "command": ["sleep", "600"],
            "lifecycle": {"preStop": {"exec": {"command": [
                "wget", "-O-", "--post-data={\"Source\": \"prestop\"}",
                format!("http://{host}:8080/write"),
            ]}}},
        }]}),
    );
    tester["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("terminationGracePeriodSeconds");
    c.create_pod(tester).await?;
    c.wait_pod("tester", "Running", |p| crate::ctx::phase(p) == "Running")
        .await?;

    // Delete the pod with the preStop handler.
    c.pods().delete("tester", &DeleteParams::default()).await?;

    // Validate that the server received the web poke.
    let path = format!("/api/v1/namespaces/{}/pods/server/proxy/read", c.ns);
    wait_for(
        "the server to see the preStop call",
        Duration::from_secs(60),
        || {
            let c = &c;
            let path = &path;
            async move {
                let body = c.kubectl(&["get", "--raw", path.as_str()]).await?;
                let state: Value = serde_json::from_str(&body)
                    .with_context(|| format!("parse server state {body:?}"))?;
                let n = state["Received"]["prestop"].as_i64().unwrap_or(0);
                Ok((n != 0).then_some(()))
            }
        },
    )
    .await
}
