//! Garbage collector [Serial]: foreground deletion keeps a
//! ReplicationController until its pods are gone, a pod with a second,
//! valid owner survives the foreground deletion of the first, and orphaning
//! leaves the pods of a deleted ReplicationController alone. Each uses as
//! many replicas as upstream: half the cluster's pod capacity, 10 to 100.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use serde_json::{json, Value};

use super::{not_found, ready_schedulable_nodes, suffix_label};
use crate::conformance;
use crate::ctx::{wait_for, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!(
            "Garbage Collector, delete replication controller, after owned pods",
            rc_foreground
        ),
        conformance!("Garbage Collector, multiple owners", multiple_owners),
        conformance!(
            "Garbage Collector, delete replication controller, propagation policy orphan",
            rc_orphan
        ),
    ]
}

/// Upstream's estimateMaximumPods: half the ready nodes' pod capacity,
/// bounded to [min, max].
async fn estimate_maximum_pods(c: &Ctx, min: i32, max: i32) -> Result<i32> {
    let mut pods = 0i64;
    for n in ready_schedulable_nodes(c).await? {
        let cap = n
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get("pods"))
            .and_then(|q| q.0.parse::<i64>().ok());
        pods += cap.unwrap_or(10);
    }
    Ok(((pods as f64 * 0.5) as i32).clamp(min, max))
}

/// Upstream's newOwnerRC: nginx pods with grace period 0.
fn owner_rc(c: &Ctx, name: &str, replicas: i32, labels: &Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": labels,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "nginx", "image": c.env.images.nginx}],
                },
            },
        },
    })
}

/// Upstream's waitForReplicas: status.replicas reaches the spec.
async fn wait_for_replicas(c: &Ctx, name: &str, want: i32) -> Result<()> {
    let rcs = c.api::<ReplicationController>();
    wait_for(
        &format!("rc {name} status.replicas to reach {want}"),
        Duration::from_secs(120),
        || {
            let rcs = rcs.clone();
            async move {
                let rc = rcs.get(name).await?;
                let got = rc.status.map(|s| s.replicas).unwrap_or(0);
                if got == want {
                    Ok(Some(()))
                } else {
                    bail!("status.replicas is {got}")
                }
            }
        },
    )
    .await
}

fn delete_with(policy: PropagationPolicy, uid: Option<String>) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..Default::default()
    }
}

async fn all_pods(c: &Ctx) -> Result<Vec<Pod>> {
    Ok(c.pods().list(&ListParams::default()).await?.items)
}

/// Waits until rc `name` is gone, reporting the pods left when it is not.
async fn wait_rc_gone(c: &Ctx, name: &str, timeout: Duration) -> Result<()> {
    let rcs = c.api::<ReplicationController>();
    wait_for(&format!("rc {name} to be deleted"), timeout, || {
        let rcs = rcs.clone();
        async move {
            match rcs.get(name).await {
                Err(e) if not_found(&e) => Ok(Some(())),
                Err(e) => Err(e.into()),
                Ok(_) => {
                    let pods = all_pods(c).await?;
                    let live = pods
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .count();
                    bail!(
                        "rc still exists; {} pods remain, {live} without deletionTimestamp",
                        pods.len()
                    )
                }
            }
        }
    })
    .await
}

/// Deletes the pods with grace period 0 (upstream's DeletePodsWithGracePeriod).
async fn delete_pods_now(c: &Ctx, pods: &[Pod]) {
    for p in pods {
        if let Some(n) = &p.metadata.name {
            let _ = c
                .pods()
                .delete(n, &DeleteParams::default().grace_period(0))
                .await;
        }
    }
}

async fn rc_foreground(c: Ctx) -> Result<()> {
    let name = "simpletest.rc";
    let labels = suffix_label("gctest", "delete_pods_foreground");
    let n = estimate_maximum_pods(&c, 10, 100).await?;
    let rc = c
        .create::<ReplicationController>(owner_rc(&c, name, n, &labels))
        .await
        .context("failed to create replication controller")?;
    wait_for_replicas(&c, name, n).await?;
    c.api::<ReplicationController>()
        .delete(
            name,
            &delete_with(PropagationPolicy::Foreground, rc.metadata.uid.clone()),
        )
        .await
        .context("failed to delete the rc")?;
    wait_rc_gone(&c, name, Duration::from_secs(30 + 60)).await?;
    let pods = all_pods(&c).await?;
    ensure!(
        pods.is_empty(),
        "expected no pods once the rc is gone, got {}: {:?}",
        pods.len(),
        pods.iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    Ok(())
}

async fn multiple_owners(c: Ctx) -> Result<()> {
    let rcs = c.api::<ReplicationController>();
    let rc1_name = "simpletest-rc-to-be-deleted";
    let replicas = estimate_maximum_pods(&c, 10, 100).await?;
    let half = (replicas / 2) as usize;
    let labels_d = suffix_label("gctest_d", "valid_and_pending_owners_d");
    let rc1 = c
        .create::<ReplicationController>(owner_rc(&c, rc1_name, replicas, &labels_d))
        .await
        .context("failed to create rc1")?;
    let rc2_name = "simpletest-rc-to-stay";
    let labels_s = suffix_label("gctest_s", "valid_and_pending_owners_s");
    let rc2 = c
        .create::<ReplicationController>(owner_rc(&c, rc2_name, 0, &labels_s))
        .await
        .context("failed to create rc2")?;
    wait_for_replicas(&c, rc1_name, replicas).await?;

    // Half of rc1's pods get rc2 as a second owner.
    let pods = all_pods(&c).await?;
    ensure!(
        pods.len() >= half,
        "expected at least {half} pods, found {}",
        pods.len()
    );
    let patch = json!({"metadata": {"ownerReferences": [{
        "apiVersion": "v1", "kind": "ReplicationController",
        "name": rc2_name, "uid": rc2.metadata.uid,
    }]}});
    for p in pods.iter().take(half) {
        let pn = p.metadata.name.clone().unwrap_or_default();
        c.pods()
            .patch(&pn, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .with_context(|| format!("failed to add rc2 as an owner of pod {pn}"))?;
    }

    rcs.delete(
        rc1_name,
        &delete_with(PropagationPolicy::Foreground, rc1.metadata.uid.clone()),
    )
    .await
    .context("failed to delete rc1")?;
    wait_rc_gone(&c, rc1_name, Duration::from_secs(90)).await?;

    let pods = all_pods(&c).await?;
    let res = (|| {
        ensure!(
            pods.len() == half,
            "expected {half} pods to remain, got {}",
            pods.len()
        );
        for p in &pods {
            let pn = p.metadata.name.clone().unwrap_or_default();
            ensure!(
                p.metadata.deletion_timestamp.is_none(),
                "pod {pn} with a valid owner is being deleted"
            );
            let owners = p.metadata.owner_references.clone().unwrap_or_default();
            ensure!(
                owners.len() == 1,
                "pod {pn} should have only 1 owner left, has {:?}",
                owners.iter().map(|o| o.name.clone()).collect::<Vec<_>>()
            );
        }
        Ok(())
    })();
    delete_pods_now(&c, &pods).await;
    res
}

async fn rc_orphan(c: Ctx) -> Result<()> {
    let name = "simpletest.rc";
    let labels = suffix_label("gctest", "orphan_pods");
    let n = estimate_maximum_pods(&c, 10, 100).await?;
    let rc = c
        .create::<ReplicationController>(owner_rc(&c, name, n, &labels))
        .await
        .context("failed to create replication controller")?;
    wait_for_replicas(&c, name, n).await?;
    c.api::<ReplicationController>()
        .delete(
            name,
            &delete_with(PropagationPolicy::Orphan, rc.metadata.uid.clone()),
        )
        .await
        .context("failed to delete the rc")?;
    wait_rc_gone(&c, name, Duration::from_secs(120 + 60)).await?;

    // For 30 s the collector must leave the orphans alone.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pods = all_pods(&c).await?;
    loop {
        let deleting = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .count();
        if pods.len() != n as usize || deleting > 0 {
            delete_pods_now(&c, &pods).await;
            bail!(
                "expected {n} orphaned pods, got {} ({deleting} being deleted)",
                pods.len()
            );
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        pods = all_pods(&c).await?;
    }
    delete_pods_now(&c, &pods).await;
    Ok(())
}
