//! NoExecuteTaintManager [Serial] [Disruptive]: pods tolerating a NoExecute
//! taint for a while are evicted when the time is up, and removing the
//! taint before then cancels the eviction. These taint the node: every
//! other pod on it that does not tolerate the taint is evicted too.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Value};

use super::{add_taint, finish, node_label, nodes, not_found, remove_taint, wait_running_in};
use crate::conformance;
use crate::ctx::{pod, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Pod Eviction, Toleration limits", min_toleration_seconds),
        conformance!(
            "Taint, Pod Eviction on taint removal",
            removing_taint_cancels_eviction
        ),
    ]
}

const KUBELET_POD_DELETION_DELAY: u64 = 60;
const ADDITIONAL_WAIT_PER_DELETE: u64 = 5;
const TAINT_KEY: &str = "kubernetes.io/e2e-evict-taint-key";
const TAINT_VALUE: &str = "evictTaintVal";

/// Upstream's getTestTaint.
fn test_taint() -> Taint {
    Taint {
        key: TAINT_KEY.into(),
        value: Some(TAINT_VALUE.into()),
        effect: "NoExecute".into(),
        time_added: Some(Time(k8s_openapi::jiff::Timestamp::now())),
    }
}

/// Upstream's createPodForTaintsTest with a toleration of the test taint
/// for `seconds`.
fn tolerating_pod(c: &Ctx, name: &str, group: &str, seconds: i64) -> Value {
    let mut p = pod(
        name,
        json!({
            "containers": [{"name": "pause", "image": c.env.images.pause}],
            "tolerations": [{
                "key": TAINT_KEY, "value": TAINT_VALUE, "effect": "NoExecute",
                "tolerationSeconds": seconds,
            }],
        }),
    );
    p["metadata"]["labels"] = json!({"group": group});
    p
}

/// Whether the pod is gone (404).
async fn gone(c: &Ctx, name: &str) -> Result<bool> {
    match c.pods().get(name).await {
        Err(e) if not_found(&e) => Ok(true),
        Err(e) => Err(e.into()),
        Ok(_) => Ok(false),
    }
}

/// Fails as soon as pod `name` is deleted (or being deleted) within `d`.
async fn stays(c: &Ctx, name: &str, d: Duration) -> Result<()> {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        match c.pods().get(name).await {
            Err(e) if not_found(&e) => bail!("pod {name} was evicted despite toleration"),
            Err(e) => return Err(e.into()),
            Ok(p) if p.metadata.deletion_timestamp.is_some() => {
                bail!("pod {name} was evicted despite toleration")
            }
            Ok(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Runs pod `p` and returns its node (upstream's RunPodAndGetNodeName).
async fn run_pod(c: &Ctx, p: Value) -> Result<String> {
    let created = c.create_pod(p).await?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let p = wait_running_in(c, &c.ns, &name).await?;
    p.spec
        .and_then(|s| s.node_name)
        .filter(|n| !n.is_empty())
        .with_context(|| format!("running pod {name} has no node"))
}

async fn removing_taint_cancels_eviction(c: Ctx) -> Result<()> {
    let name = "taint-eviction-4";
    let node = run_pod(
        &c,
        tolerating_pod(&c, name, name, 2 * ADDITIONAL_WAIT_PER_DELETE as i64),
    )
    .await?;
    let taint = test_taint();
    let mut removed = false;
    let res = async {
        add_taint(&c, &node, &taint).await?;
        // Short enough that the pod's 10 s toleration has not run out.
        stays(&c, name, Duration::from_secs(ADDITIONAL_WAIT_PER_DELETE)).await?;
        remove_taint(&c, &node, &taint).await?;
        removed = true;
        stays(
            &c,
            name,
            Duration::from_secs(KUBELET_POD_DELETION_DELAY + 3 * ADDITIONAL_WAIT_PER_DELETE),
        )
        .await
    }
    .await;
    let cleanup = if removed {
        Ok(())
    } else {
        remove_taint(&c, &node, &taint).await
    };
    finish(res, cleanup)
}

async fn min_toleration_seconds(c: Ctx) -> Result<()> {
    let group = "taint-eviction-b";
    let (n1, n2) = (format!("{group}1"), format!("{group}2"));
    let node = run_pod(
        &c,
        tolerating_pod(&c, &n1, group, ADDITIONAL_WAIT_PER_DELETE as i64),
    )
    .await?;
    let node_obj = nodes(&c).get(&node).await?;
    let hostname = node_label(&node_obj, "kubernetes.io/hostname")
        .with_context(|| format!("error getting kubernetes.io/hostname label on node {node}"))?;
    let mut p2 = tolerating_pod(&c, &n2, group, 5 * ADDITIONAL_WAIT_PER_DELETE as i64);
    p2["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": hostname});
    run_pod(&c, p2).await?;

    let taint = test_taint();
    let res = async {
        add_taint(&c, &node, &taint).await?;
        // Both pods are evicted once their tolerations (5 s and 25 s) run out.
        let deadline = Instant::now()
            + Duration::from_secs(KUBELET_POD_DELETION_DELAY + 10 * ADDITIONAL_WAIT_PER_DELETE);
        loop {
            let left: Vec<&String> = {
                let mut v = Vec::new();
                for n in [&n1, &n2] {
                    if !gone(&c, n).await? {
                        v.push(n);
                    }
                }
                v
            };
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("failed to evict all pods: {left:?} not evicted");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    .await;
    finish(res, remove_taint(&c, &node, &taint).await)
}
