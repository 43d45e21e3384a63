//! EmptyDir wrapper volumes [Serial]: pods with 50 configMap volumes each
//! start reliably (the race fixed in kubernetes#29641 kept some from
//! ever running).

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ReplicationController};
use kube::api::{DeleteParams, ListParams};
use serde_json::{json, Value};

use super::{node_label, ready_schedulable_nodes, uuid, wait_running_in};
use crate::conformance;
use crate::ctx::{wait_for, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![conformance!(
        "EmptyDir Wrapper Volume, ConfigMap volumes, no race",
        configmap_race
    )]
}

const VOLUME_COUNT: usize = 50;
const POD_COUNT: usize = 5;
const ITERATIONS: usize = 3;

async fn configmap_race(c: Ctx) -> Result<()> {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for i in 0..VOLUME_COUNT {
        let name = format!("racey-configmap-{i}");
        c.create::<ConfigMap>(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"data-1": "value-1"},
        }))
        .await
        .with_context(|| format!("create configmap {name}"))?;
        volumes.push(json!({"name": name, "configMap": {
            "name": name, "items": [{"key": "data-1", "path": "data-1"}],
        }}));
        mounts.push(json!({"name": name, "mountPath": format!("/etc/config-{i}")}));
    }
    let mut rcs = Vec::new();
    let mut res = Ok(());
    for _ in 0..ITERATIONS {
        res = no_wrapped_volume_race(&c, &volumes, &mounts, &mut rcs).await;
        if res.is_err() {
            break;
        }
    }
    // Upstream's DeleteRCAndWaitForGC for each RC.
    let cleanup = async {
        for rc in &rcs {
            c.api::<ReplicationController>()
                .delete(rc, &DeleteParams::background())
                .await
                .with_context(|| format!("delete rc {rc}"))?;
        }
        let pods = c.pods();
        wait_for("the RCs' pods to be collected", c.env.pod_start, || async {
            let l = pods.list(&ListParams::default()).await?.items;
            Ok(l.is_empty().then_some(()))
        })
        .await
    }
    .await;
    super::finish(res, cleanup)
}

async fn no_wrapped_volume_race(
    c: &Ctx,
    volumes: &[Value],
    mounts: &[Value],
    rcs: &mut Vec<String>,
) -> Result<()> {
    let name = format!("wrapped-volume-race-{}", uuid());
    let node = ready_schedulable_nodes(c)
        .await?
        .into_iter()
        .next()
        .context("no ready schedulable node")?;
    let hostname = node_label(&node, "kubernetes.io/hostname").unwrap_or_default();
    c.create::<ReplicationController>(json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": name},
        "spec": {
            "replicas": POD_COUNT,
            "selector": {"name": name},
            "template": {
                "metadata": {"labels": {"name": name}},
                "spec": {
                    "containers": [{
                        "name": "test-container",
                        "image": c.env.images.pause,
                        "volumeMounts": mounts,
                    }],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{
                            "key": "kubernetes.io/hostname", "operator": "In", "values": [hostname],
                        }]}],
                    }}},
                    "dnsPolicy": "Default",
                    "volumes": volumes,
                },
            },
        },
    }))
    .await
    .context("error creating replication controller")?;
    rcs.push(name.clone());

    // Upstream's PodsCreated: the RC's pods exist.
    let pods = c.pods();
    let sel = format!("name={name}");
    let created: Vec<Pod> = wait_for(
        &format!("{POD_COUNT} pods of rc {name}"),
        c.env.pod_start,
        || async {
            let l = pods.list(&ListParams::default().labels(&sel)).await?.items;
            let live: Vec<Pod> = l
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            Ok((live.len() == POD_COUNT).then_some(live))
        },
    )
    .await
    .context("error creating pods")?;
    for p in &created {
        let pn = p.metadata.name.clone().unwrap_or_default();
        wait_running_in(c, &c.ns, &pn)
            .await
            .with_context(|| format!("failed waiting for pod {pn} to enter running state"))?;
    }
    Ok(())
}
