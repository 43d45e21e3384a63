//! SchedulerPredicates [Serial]: pods are not scheduled beyond the nodes'
//! CPU, follow node selectors, and a hostPort bound on 0.0.0.0 conflicts
//! with the same port on the node's address.

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use serde_json::{json, Value};

use super::{
    add_node_label, cpu_milli, finish, node_name, node_ready, node_that_can_run_pod, pause_pod,
    ready_schedulable_nodes, remove_node_label, uuid, verify_result, wait_not_pending,
    wait_running_in, wait_scheduling_failed, wait_stable_cluster, with_resources, SHORT_WAIT,
};
use crate::conformance;
use crate::ctx::{phase, pod, wait_for, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Scheduler, resource limits", resource_limits),
        conformance!("Scheduler, node selector not matching", node_selector_not_matching),
        conformance!("Scheduler, node selector matching", node_selector_matching),
        conformance!(
            "Scheduling, HostPort and Protocol match, HostIPs different but one is default HostIP (0.0.0.0)",
            host_port_conflict
        ),
    ]
}

/// CPU requested by the pod's containers, in milli-units.
fn requested_cpu(p: &Pod) -> Result<i64> {
    let mut sum = 0;
    for c in p
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
    {
        if let Some(q) = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("cpu"))
        {
            sum += cpu_milli(&q.0)?;
        }
    }
    Ok(sum)
}

/// A required node affinity: label `key` in `values`.
fn label_affinity(key: &str, values: &[&str]) -> Value {
    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": key, "operator": "In", "values": values}
        ]}]
    }}})
}

async fn resource_limits(c: Ctx) -> Result<()> {
    wait_stable_cluster(&c).await?;
    let nodes: Vec<_> = ready_schedulable_nodes(&c)
        .await?
        .into_iter()
        .filter(node_ready)
        .collect();
    let mut labelled = Vec::new();
    let res = resource_limits_on(&c, &nodes, &mut labelled).await;
    let mut cleanup = Ok(());
    for n in &labelled {
        if let Err(e) = remove_node_label(&c, n, "node").await {
            cleanup = Err(e);
        }
    }
    finish(res, cleanup)
}

async fn resource_limits_on(
    c: &Ctx,
    nodes: &[k8s_openapi::api::core::v1::Node],
    labelled: &mut Vec<String>,
) -> Result<()> {
    let mut left: Vec<(String, i64)> = Vec::new();
    let mut max_allocatable = 0;
    for n in nodes {
        let name = node_name(n);
        labelled.push(name.clone());
        add_node_label(c, &name, "node", &name).await?;
        let cpu = n
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get("cpu"))
            .with_context(|| format!("node {name} has no allocatable cpu"))?;
        let milli = cpu_milli(&cpu.0)?;
        max_allocatable = max_allocatable.max(milli);
        left.push((name, milli));
    }
    for p in c.all::<Pod>().list(&ListParams::default()).await?.items {
        if phase(&p) == "Succeeded" || phase(&p) == "Failed" {
            continue;
        }
        let on = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        if let Some(entry) = left.iter_mut().find(|(n, _)| *n == on) {
            entry.1 -= requested_cpu(&p)?;
        }
    }

    // One filler pod per node takes 70% of the CPU left.
    let mut fillers = Vec::new();
    for (node, cpu) in &left {
        let want = cpu * 7 / 10;
        let name = format!("filler-pod-{}", uuid());
        let p = with_resources(
            pause_pod(
                c,
                &name,
                json!({}),
                json!({"affinity": label_affinity("node", &[node])}),
            ),
            json!({"cpu": format!("{want}m")}),
        );
        c.create_pod(p).await?;
        fillers.push(name);
    }
    for f in &fillers {
        wait_running_in(c, &c.ns, f).await?;
    }

    // Half of the largest node's CPU no longer fits anywhere.
    let p = with_resources(
        pause_pod(
            c,
            "additional-pod",
            json!({"name": "additional"}),
            json!({}),
        ),
        json!({"cpu": format!("{}m", max_allocatable * 5 / 10)}),
    );
    c.create_pod(p).await?;
    wait_scheduling_failed(c, "additional-pod").await?;
    verify_result(c, fillers.len(), 1).await
}

async fn node_selector_not_matching(c: Ctx) -> Result<()> {
    wait_stable_cluster(&c).await?;
    let p = pause_pod(
        &c,
        "restricted-pod",
        json!({"name": "restricted"}),
        json!({"nodeSelector": {"label": "nonempty"}}),
    );
    c.create_pod(p).await?;
    wait_scheduling_failed(&c, "restricted-pod").await?;
    verify_result(&c, 0, 1).await
}

async fn node_selector_matching(c: Ctx) -> Result<()> {
    let node = node_that_can_run_pod(&c, "without-label").await?;
    let key = format!("kubernetes.io/e2e-{}", uuid());
    let res = async {
        add_node_label(&c, &node, &key, "42").await?;
        c.create_pod(pause_pod(
            &c,
            "with-labels",
            json!({}),
            json!({"nodeSelector": { key.clone(): "42" }}),
        ))
        .await?;
        // Scheduled and started; upstream does not insist on Running.
        let p = wait_not_pending(&c, "with-labels").await?;
        let on = p.spec.and_then(|s| s.node_name).unwrap_or_default();
        ensure!(on == node, "pod with-labels runs on {on:?}, want {node}");
        Ok(())
    }
    .await;
    finish(res, remove_node_label(&c, &node, &key).await)
}

/// The first InternalIP (IPv4) of the node.
async fn node_host_ip(c: &Ctx, node: &str) -> Result<String> {
    let n = super::nodes(c).get(node).await?;
    n.status
        .and_then(|s| s.addresses)
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.type_ == "InternalIP" && a.address.parse::<std::net::Ipv4Addr>().is_ok())
        .map(|a| a.address)
        .with_context(|| format!("node {node} has no IPv4 InternalIP"))
}

/// Upstream's createHostPortPodOnNode: agnhost netexec on 8080 behind
/// `host_ip`:`port`, pinned by `selector`.
fn host_port_pod(c: &Ctx, name: &str, host_ip: &str, port: i32, selector: &Value) -> Value {
    let mut port_spec = json!({"hostPort": port, "containerPort": 8080, "protocol": "TCP"});
    if !host_ip.is_empty() {
        port_spec["hostIP"] = json!(host_ip);
    }
    let mut p = pod(
        name,
        json!({
            "nodeSelector": selector,
            "containers": [{
                "name": "agnhost",
                "image": c.env.images.agnhost,
                "args": ["netexec", "--http-port=8080", "--udp-port=8080"],
                "ports": [port_spec],
                "readinessProbe": {"httpGet": {"path": "/hostname", "port": 8080, "scheme": "HTTP"}},
            }],
        }),
    );
    // Upstream leaves the default grace period.
    if let Some(s) = p["spec"].as_object_mut() {
        s.remove("terminationGracePeriodSeconds");
    }
    p
}

async fn host_port_conflict(c: Ctx) -> Result<()> {
    let node = node_that_can_run_pod(&c, "without-label").await?;
    let host_ip = node_host_ip(&c, &node).await?;
    let key = format!("kubernetes.io/e2e-{}", uuid());
    let res = async {
        add_node_label(&c, &node, &key, "95").await?;
        let selector = json!({ key.clone(): "95" });
        let port = 54322;
        c.create_pod(host_port_pod(&c, "pod4", "", port, &selector))
            .await?;
        wait_not_pending(&c, "pod4")
            .await
            .context("pod4 (hostPort on 0.0.0.0) should be scheduled and start")?;
        c.create_pod(host_port_pod(&c, "pod5", &host_ip, port, &selector))
            .await?;
        // pod5 asks for the same port and protocol on the node's address,
        // which 0.0.0.0 already covers: the scheduler must refuse it.
        let pods = c.pods();
        let p = wait_for(
            "the scheduler to mark pod5 unschedulable",
            SHORT_WAIT,
            || async {
                let p = pods.get("pod5").await?;
                let node = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default();
                ensure!(
                    node.is_empty(),
                    "pod5 was scheduled onto {node} although pod4 holds {port}/TCP on 0.0.0.0"
                );
                let unschedulable = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "PodScheduled" && c.status == "False")
                    });
                Ok(unschedulable.then_some(p))
            },
        )
        .await;
        // A bind that happens while we wait is a failure, not a timeout.
        let p = match p {
            Ok(p) => p,
            Err(e) => {
                let now = pods.get("pod5").await?;
                let on = now.spec.and_then(|s| s.node_name).unwrap_or_default();
                ensure!(
                    on.is_empty(),
                    "pod5 was scheduled onto {on} although pod4 holds {port}/TCP on 0.0.0.0"
                );
                return Err(e);
            }
        };
        ensure!(
            phase(&p) == "Pending",
            "pod5 is {} instead of Pending",
            phase(&p)
        );
        Ok(())
    }
    .await;
    finish(res, remove_node_label(&c, &node, &key).await)
}
