//! Controllers: ReplicationController, ReplicaSet, Deployment scaling
//! (proportional too) and adoption, ResourceQuota accounting, Jobs (pod
//! failure policies), StatefulSets (partitioned updates, recreation of
//! rejected pods) and the garbage collector.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, Pod, ReplicationController, ResourceQuota, Secret, Service,
};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{json, Value};

use crate::conformance;
use crate::ctx::{from_json, phase, pod, ready, wait_for, Ctx};
use crate::suites::pods::watch_until;
use crate::Test;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    vec![
        conformance!("Replication Controller, run basic image", rc_basic),
        conformance!("Replica Set, run basic image", rs_basic),
        conformance!(
            "Replication Controller, get and update ReplicationController scale",
            rc_scale
        ),
        conformance!(
            "ReplicaSet, completes the scaling of a ReplicaSet subresource",
            rs_scale
        ),
        conformance!(
            "Deployment, completes the scaling of a Deployment subresource",
            deploy_scale
        ),
        conformance!("Replication Controller, adopt matching pods", rc_adopt),
        conformance!("Replication Controller, release pods", rc_release),
        conformance!(
            "Replica Set, adopt matching pods and release non matching pods",
            rs_adopt_release
        ),
        conformance!("ResourceQuota, object count quota, configmap", rq_configmap),
        conformance!("ResourceQuota, object count quota, secret", rq_secret),
        conformance!("ResourceQuota, object count quota, service", rq_service),
        conformance!(
            "ResourceQuota, object count quota, replicationController",
            rq_rc
        ),
        conformance!("ResourceQuota, object count quota, replicaSet", rq_rs),
        conformance!(
            "ResourceQuota, object count quota, resourcequotas",
            rq_quotas
        ),
        conformance!("ResourceQuota, object count quota, pod", rq_pod),
        conformance!("Jobs, completion after task failure", job_fail_once),
        conformance!("Jobs, active pods, graceful termination", job_delete),
        conformance!("Jobs, orphan pods, re-adoption", job_readopt),
        conformance!("Jobs, apply changes to status", job_status),
        conformance!("Ensure Pods of an Indexed Job get a unique index.", job_indexed),
        conformance!(
            "Verify Pod Failure policy allows to fail job early on exit code.",
            job_pfp_fail_job
        ),
        conformance!(
            "Ensure that all indexes are executed for an indexed job with backoffLimitPerIndex despite some failing",
            job_backoff_per_index
        ),
        conformance!(
            "Terminate job execution when the maxFailedIndexes is exceeded",
            job_max_failed_indexes
        ),
        conformance!(
            "Mark indexes as failed when the FailIndex action is matched in podFailurePolicy",
            job_fail_index
        ),
        conformance!(
            "Ensure that job with successPolicy succeeded when all indexes succeeded",
            job_success_all
        ),
        conformance!(
            "Ensure that job with successPolicy succeededCount rule succeeded even when some indexes remain pending",
            job_success_count
        ),
        conformance!(
            "Ensure that job with successPolicy succeededIndexes rule succeeded even when some indexes remain pending",
            job_success_indexes
        ),
        conformance!(
            "Garbage Collector, delete replication controller, propagation policy background",
            gc_rc_background
        ),
        conformance!(
            "Garbage Collector, delete deployment,  propagation policy background",
            gc_deploy_background
        ),
        conformance!(
            "Garbage Collector, delete deployment, propagation policy orphan",
            gc_deploy_orphan
        ),
        conformance!("Garbage Collector, dependency cycle", gc_cycle),
        conformance!("ReplicaSet, list and delete a collection of ReplicaSets", rs_collection),
        conformance!("ReplicaSet, status sub-resource", rs_status),
        conformance!("ReplicaSet, is created, Replaced and Patched", rs_replace_patch),
        conformance!("Deployment, status sub-resource", deploy_status),
        conformance!("Deployment RollingUpdate", deploy_rolling),
        conformance!("Deployment Recreate", deploy_recreate),
        conformance!("Deployment RevisionHistoryLimit", deploy_history),
        conformance!("CronJob Suspend", cj_suspend),
        conformance!("CronJob ForbidConcurrent", cj_forbid),
        conformance!("CronJob AllowConcurrent", cj_allow),
        conformance!("CronJob ReplaceConcurrent", cj_replace),
        conformance!("PodDisruptionBudget: update and patch status", pdb_status_patch),
        conformance!(
            "PodDisruptionBudget: block an eviction until the PDB is updated to allow it",
            pdb_block_eviction
        ),
        conformance!("PodDisruptionBudget: Status updates", pdb_status_updates),
        conformance!("RootCA ConfigMap test", root_ca),
        conformance!("StatefulSet resource Replica scaling", sts_scale),
        conformance!(
            "StatefulSet, list, patch and delete a collection of StatefulSets",
            sts_collection
        ),
        conformance!("StatefulSet, status sub-resource", sts_status),
        conformance!("Service, endpoints", svc_endpoints),
        conformance!("Service, endpoints with multiple ports", svc_endpoints_multi),
        conformance!(
            "Replication Controller, check for issues like exceeding allocated quota",
            rc_quota_condition
        ),
        conformance!(
            "ResourceQuota, quota scope, BestEffort and NotBestEffort scope",
            rq_besteffort
        ),
        conformance!(
            "ResourceQuota, quota scope, Terminating and NotTerminating scope",
            rq_terminating
        ),
        conformance!("Replication Controller, lifecycle", rc_lifecycle),
        conformance!("Deployment, completes the lifecycle of a Deployment", deploy_lifecycle),
        conformance!("StatefulSet, Burst Scaling", sts_burst),
        conformance!("StatefulSet, Rolling Update", sts_rolling),
        conformance!("StatefulSet, Scaling", sts_ordered_scaling),
        conformance!("EndpointSlice Mirroring", slice_mirroring),
        conformance!("Deployment Rollover", deploy_rollover),
        conformance!("Deployment Proportional Scaling", deploy_proportional),
        conformance!(
            "Ensure pod failure policy allows to ignore failure matching on the DisruptionTarget condition",
            job_pfp_ignore_disruption
        ),
        conformance!("StatefulSet, Recreate Failed Pod", sts_recreate_evicted),
        conformance!("StatefulSet, Rolling Update with Partition", sts_canary),
    ]
}

// ---------------------------------------------------------------- helpers

/// A bounded wait for controller work.
const CTRL_WAIT: Duration = Duration::from_secs(120);

fn labels_selector(labels: &Value) -> String {
    labels
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A pod template with one container.
fn template(labels: &Value, cname: &str, image: &str, extra: Value) -> Value {
    let mut ctr = json!({"name": cname, "image": image});
    if let (Some(o), Some(e)) = (ctr.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    json!({
        "metadata": {"labels": labels},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [ctr]},
    })
}

fn rc_json(name: &str, replicas: i32, labels: &Value, tpl: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": labels, "template": tpl},
    })
}

fn rs_json(name: &str, replicas: i32, labels: &Value, tpl: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": tpl},
    })
}

fn deploy_json(name: &str, replicas: i32, labels: &Value, tpl: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": tpl},
    })
}

/// Pods of the namespace matching `selector`, not being deleted.
async fn live_pods(c: &Ctx, selector: &str) -> Result<Vec<Pod>> {
    let l = c
        .pods()
        .list(&ListParams::default().labels(selector))
        .await?;
    Ok(l.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Waits until exactly `n` live pods match `selector` and all run ready.
async fn wait_pods_ready(c: &Ctx, selector: &str, n: usize) -> Result<Vec<Pod>> {
    wait_for(
        &format!("{n} ready pods matching {selector}"),
        c.env.pod_start.max(CTRL_WAIT),
        || async {
            let ps = live_pods(c, selector).await?;
            Ok(
                (ps.len() == n && ps.iter().all(|p| phase(p) == "Running" && ready(p)))
                    .then_some(ps),
            )
        },
    )
    .await
}

fn pod_name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// The controller owner reference's (kind, name, uid) of a pod, if any.
fn controller_of(p: &Pod) -> Option<(String, String, String)> {
    p.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.clone(), o.name.clone(), o.uid.clone()))
}

/// GET through the API server's pod proxy (as upstream's PodProxyResponseChecker).
async fn pod_proxy(c: &Ctx, pod: &str, port: u16, path: &str) -> Result<String> {
    let raw = format!("/api/v1/namespaces/{}/pods/{pod}:{port}/proxy{path}", c.ns);
    c.kubectl(&["get", "--raw", &raw]).await
}

/// Every pod of `selector` answers its own name on :9376 (serve-hostname).
async fn check_serve_hostname(c: &Ctx, selector: &str, n: usize) -> Result<()> {
    let pods = wait_pods_ready(c, selector, n).await?;
    for p in &pods {
        let name = pod_name(p);
        wait_for(
            &format!("pod {name} to answer its name through the proxy"),
            Duration::from_secs(60),
            || {
                let name = name.clone();
                async move {
                    let body = pod_proxy(c, &name, 9376, "/").await?;
                    if body.trim() == name {
                        Ok(Some(()))
                    } else {
                        bail!("pod {name} answered {body:?}")
                    }
                }
            },
        )
        .await?;
    }
    Ok(())
}

// ------------------------------------------------------- RC / RS basics

async fn rc_basic(c: Ctx) -> Result<()> {
    let name = c.name("my-hostname-basic");
    let labels = json!({"name": name});
    let tpl = template(
        &labels,
        &name,
        &c.env.images.agnhost,
        json!({"args": ["serve-hostname"], "ports": [{"containerPort": 9376}]}),
    );
    c.create::<ReplicationController>(rc_json(&name, 1, &labels, tpl))
        .await?;
    check_serve_hostname(&c, &labels_selector(&labels), 1).await
}

async fn rs_basic(c: Ctx) -> Result<()> {
    let name = c.name("my-hostname-basic");
    let labels = json!({"name": name});
    let tpl = template(
        &labels,
        &name,
        &c.env.images.agnhost,
        json!({"args": ["serve-hostname"], "ports": [{"containerPort": 9376}]}),
    );
    c.create::<ReplicaSet>(rs_json(&name, 1, &labels, tpl))
        .await?;
    check_serve_hostname(&c, &labels_selector(&labels), 1).await
}

// ------------------------------------------------------------- scaling

async fn rc_scale(c: Ctx) -> Result<()> {
    let name = "e2e-rc-scale".to_string();
    let labels = json!({"name": "e2e-rc-scale"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    let api = c.api::<ReplicationController>();
    api.create(
        &PostParams::default(),
        &from_json(rc_json(&name, 1, &labels, tpl))?,
    )
    .await?;
    wait_for("rc to have 1 ready replica", CTRL_WAIT, || async {
        let rc = api.get(&name).await?;
        let s = rc.status.unwrap_or_default();
        Ok((s.ready_replicas == Some(1)).then_some(()))
    })
    .await?;
    let scale = api.get_scale(&name).await.context("get scale")?;
    ensure!(
        scale.status.as_ref().map(|s| s.replicas) == Some(1),
        "scale status replicas is not 1: {scale:?}"
    );
    let mut scale = scale;
    scale.spec.get_or_insert_with(Default::default).replicas = Some(2);
    api.replace_scale(&name, &PostParams::default(), &scale)
        .await
        .context("update scale")?;
    wait_for("rc spec.replicas to be 2", CTRL_WAIT, || async {
        let rc = api.get(&name).await?;
        Ok((rc.spec.and_then(|s| s.replicas) == Some(2)).then_some(()))
    })
    .await?;
    wait_pods_ready(&c, "name=e2e-rc-scale", 2).await?;
    Ok(())
}

async fn rs_scale(c: Ctx) -> Result<()> {
    let name = "test-rs".to_string();
    let labels = json!({"name": "sample-pod", "pod": "httpd"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    let api = c.api::<ReplicaSet>();
    api.create(
        &PostParams::default(),
        &from_json(rs_json(&name, 1, &labels, tpl))?,
    )
    .await?;
    wait_pods_ready(&c, &labels_selector(&labels), 1).await?;
    let scale = api.get_scale(&name).await.context("get scale")?;
    ensure!(
        scale.status.as_ref().map(|s| s.replicas) == Some(1),
        "scale status replicas is not 1: {scale:?}"
    );
    let mut scale = scale;
    scale.spec.get_or_insert_with(Default::default).replicas = Some(2);
    let got = api
        .replace_scale(&name, &PostParams::default(), &scale)
        .await
        .context("update scale")?;
    ensure!(
        got.spec.and_then(|s| s.replicas) == Some(2),
        "scale update did not set 2 replicas"
    );
    let rs = api.get(&name).await?;
    ensure!(
        rs.spec.and_then(|s| s.replicas) == Some(2),
        "ReplicaSet spec.replicas is not 2 after the scale update"
    );
    // Patch the scale subresource to 4 replicas.
    api.patch_scale(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .context("patch scale")?;
    let rs = api.get(&name).await?;
    ensure!(
        rs.spec.and_then(|s| s.replicas) == Some(4),
        "ReplicaSet spec.replicas is not 4 after the scale patch"
    );
    Ok(())
}

async fn deploy_scale(c: Ctx) -> Result<()> {
    let name = "test-new-deployment".to_string();
    let labels = json!({"name": "httpd"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    let api = c.api::<Deployment>();
    api.create(
        &PostParams::default(),
        &from_json(deploy_json(&name, 1, &labels, tpl))?,
    )
    .await?;
    wait_for("deployment to be available", CTRL_WAIT, || async {
        let d = api.get(&name).await?;
        let s = d.status.unwrap_or_default();
        Ok((s.available_replicas == Some(1) && s.updated_replicas == Some(1)).then_some(()))
    })
    .await?;
    let scale = api.get_scale(&name).await.context("get scale")?;
    ensure!(
        scale.status.as_ref().map(|s| s.replicas) == Some(1),
        "scale status replicas is not 1: {scale:?}"
    );
    let mut scale = scale;
    scale.spec.get_or_insert_with(Default::default).replicas = Some(2);
    let got = api
        .replace_scale(&name, &PostParams::default(), &scale)
        .await
        .context("update scale")?;
    ensure!(
        got.spec.and_then(|s| s.replicas) == Some(2),
        "scale update did not set 2 replicas"
    );
    let d = api.get(&name).await?;
    ensure!(
        d.spec.and_then(|s| s.replicas) == Some(2),
        "Deployment spec.replicas is not 2 after the scale update"
    );
    api.patch_scale(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .context("patch scale")?;
    let d = api.get(&name).await?;
    ensure!(
        d.spec.and_then(|s| s.replicas) == Some(4),
        "Deployment spec.replicas is not 4 after the scale patch"
    );
    Ok(())
}

// ---------------------------------------------------- adoption/release

async fn rc_adopt(c: Ctx) -> Result<()> {
    let labels = json!({"name": "pod-adoption"});
    let mut p = pod(
        "pod-adoption",
        json!({"containers": [{"name": "pod-adoption", "image": c.env.images.httpd}]}),
    );
    p["metadata"]["labels"] = labels.clone();
    c.create_pod(p).await?;
    c.wait_running("pod-adoption").await?;
    let tpl = template(&labels, "pod-adoption", &c.env.images.httpd, json!({}));
    let rc = c
        .create::<ReplicationController>(rc_json("pod-adoption", 1, &labels, tpl))
        .await?;
    let uid = rc.metadata.uid.unwrap_or_default();
    let pods = c.pods();
    wait_for(
        "the orphan pod to be adopted by the rc",
        CTRL_WAIT,
        || async {
            let p = pods.get("pod-adoption").await?;
            Ok(controller_of(&p)
                .is_some_and(|(_, _, u)| u == uid)
                .then_some(()))
        },
    )
    .await
}

async fn rc_release(c: Ctx) -> Result<()> {
    let labels = json!({"name": "pod-release"});
    let tpl = template(&labels, "pod-release", &c.env.images.httpd, json!({}));
    let rc = c
        .create::<ReplicationController>(rc_json("pod-release", 1, &labels, tpl))
        .await?;
    let uid = rc.metadata.uid.unwrap_or_default();
    let ps = wait_pods_ready(&c, "name=pod-release", 1).await?;
    let name = pod_name(&ps[0]);
    c.pods()
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"name": "not-matching-name"}}})),
        )
        .await?;
    let pods = c.pods();
    wait_for("the relabelled pod to be released", CTRL_WAIT, || async {
        let p = pods.get(&name).await?;
        Ok(controller_of(&p)
            .is_none_or(|(_, _, u)| u != uid)
            .then_some(()))
    })
    .await
}

async fn rs_adopt_release(c: Ctx) -> Result<()> {
    let labels = json!({"name": "pod-adoption-release"});
    let mut p = pod(
        "pod-adoption-release",
        json!({"containers": [{"name": "pod-adoption-release", "image": c.env.images.httpd}]}),
    );
    p["metadata"]["labels"] = labels.clone();
    c.create_pod(p).await?;
    c.wait_running("pod-adoption-release").await?;
    let tpl = template(
        &labels,
        "pod-adoption-release",
        &c.env.images.httpd,
        json!({}),
    );
    let rs = c
        .create::<ReplicaSet>(rs_json("pod-adoption-release", 1, &labels, tpl))
        .await?;
    let uid = rs.metadata.uid.unwrap_or_default();
    let pods = c.pods();
    wait_for(
        "the orphan pod to be adopted by the rs",
        CTRL_WAIT,
        || async {
            let p = pods.get("pod-adoption-release").await?;
            Ok(controller_of(&p)
                .is_some_and(|(_, _, u)| u == uid)
                .then_some(()))
        },
    )
    .await?;
    pods.patch(
        "pod-adoption-release",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"name": "pod-adoption-release-released"}}})),
    )
    .await?;
    wait_for("the relabelled pod to be released", CTRL_WAIT, || async {
        let p = pods.get("pod-adoption-release").await?;
        Ok(controller_of(&p)
            .is_none_or(|(_, _, u)| u != uid)
            .then_some(()))
    })
    .await?;
    // The ReplicaSet makes a replacement.
    wait_pods_ready(&c, "name=pod-adoption-release", 1).await?;
    Ok(())
}

// ------------------------------------------------------- ResourceQuota

/// Upstream's test quota: object counts and compute requests.
fn quota_json(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": name},
        "spec": {"hard": {
            "pods": "5",
            "services": "10",
            "services.nodeports": "1",
            "services.loadbalancers": "1",
            "replicationcontrollers": "10",
            "resourcequotas": "1",
            "configmaps": "10",
            "secrets": "10",
            "persistentvolumeclaims": "10",
            "requests.cpu": "1",
            "requests.memory": "500Mi",
            "requests.storage": "10Gi",
            "count/replicasets.apps": "5",
        }},
    })
}

/// Canonical text of a quantity for comparisons ("0" and "0m" alike).
fn qty_norm(s: &str) -> String {
    match s {
        "0" | "0m" | "0Mi" | "0Gi" | "0Ki" => "0".into(),
        o => o.to_string(),
    }
}

/// Waits until the quota's status.used matches `want` for every key given.
async fn wait_quota_used(c: &Ctx, name: &str, want: &[(&str, &str)]) -> Result<()> {
    let api = c.api::<ResourceQuota>();
    wait_for(
        &format!("quota {name} usage {want:?}"),
        Duration::from_secs(60),
        || async {
            let q = api.get(name).await?;
            let used: BTreeMap<String, String> = q
                .status
                .and_then(|s| s.used)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in want {
                let got = used.get(*k).map(|s| qty_norm(s));
                if got.as_deref() != Some(qty_norm(v).as_str()) {
                    bail!("used[{k}] = {got:?}, want {v}");
                }
            }
            Ok(Some(()))
        },
    )
    .await
}

/// Creates the test quota and waits until its usage is calculated.
async fn make_quota(c: &Ctx, name: &str) -> Result<()> {
    c.create::<ResourceQuota>(quota_json(name)).await?;
    wait_quota_used(c, name, &[("resourcequotas", "1")]).await
}

async fn rq_quotas(c: Ctx) -> Result<()> {
    let name = "test-quota";
    make_quota(&c, name).await?;
    c.api::<ResourceQuota>()
        .delete(name, &DeleteParams::default())
        .await?;
    let api = c.api::<ResourceQuota>();
    wait_for("quota gone", Duration::from_secs(60), || async {
        Ok(api.get_opt(name).await?.is_none().then_some(()))
    })
    .await
}

async fn rq_configmap(c: Ctx) -> Result<()> {
    // Configmaps present before (the root CA bundle, if published).
    let before = c
        .api::<ConfigMap>()
        .list(&ListParams::default())
        .await?
        .items
        .len();
    let name = "test-quota";
    make_quota(&c, name).await?;
    let b = before.to_string();
    wait_quota_used(&c, name, &[("configmaps", &b)]).await?;
    c.create::<ConfigMap>(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-configmap"}, "data": {"a": "b"},
    }))
    .await?;
    let b1 = (before + 1).to_string();
    wait_quota_used(&c, name, &[("configmaps", &b1)]).await?;
    c.api::<ConfigMap>()
        .delete("test-configmap", &DeleteParams::default())
        .await?;
    wait_quota_used(&c, name, &[("configmaps", &b)]).await
}

async fn rq_secret(c: Ctx) -> Result<()> {
    let before = c
        .api::<Secret>()
        .list(&ListParams::default())
        .await?
        .items
        .len();
    let name = "test-quota";
    make_quota(&c, name).await?;
    let b = before.to_string();
    wait_quota_used(&c, name, &[("secrets", &b)]).await?;
    c.create::<Secret>(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "test-secret"}, "data": {"a": "YmFy"},
    }))
    .await?;
    let b1 = (before + 1).to_string();
    wait_quota_used(&c, name, &[("secrets", &b1)]).await?;
    c.api::<Secret>()
        .delete("test-secret", &DeleteParams::default())
        .await?;
    wait_quota_used(&c, name, &[("secrets", &b)]).await
}

async fn rq_service(c: Ctx) -> Result<()> {
    let name = "test-quota";
    make_quota(&c, name).await?;
    wait_quota_used(&c, name, &[("services", "0"), ("services.nodeports", "0")]).await?;
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "test-service"},
        "spec": {"ports": [{"port": 80, "targetPort": 80}]},
    }))
    .await?;
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "test-service-np"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 80}]},
    }))
    .await?;
    wait_quota_used(&c, name, &[("services", "2"), ("services.nodeports", "1")]).await?;
    // A second NodePort service exceeds services.nodeports.
    let over: Service = from_json(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "test-service-np-2"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 80}]},
    }))?;
    match c
        .api::<Service>()
        .create(&PostParams::default(), &over)
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        Err(e) => bail!("creating a service over quota: unexpected error {e}"),
        Ok(_) => bail!("a NodePort service over quota was admitted"),
    }
    for s in ["test-service", "test-service-np"] {
        c.api::<Service>()
            .delete(s, &DeleteParams::default())
            .await?;
    }
    wait_quota_used(&c, name, &[("services", "0"), ("services.nodeports", "0")]).await
}

async fn rq_rc(c: Ctx) -> Result<()> {
    let name = "test-quota";
    make_quota(&c, name).await?;
    wait_quota_used(&c, name, &[("replicationcontrollers", "0")]).await?;
    let labels = json!({"name": "test-rc"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    c.create::<ReplicationController>(rc_json("test-rc", 0, &labels, tpl))
        .await?;
    wait_quota_used(&c, name, &[("replicationcontrollers", "1")]).await?;
    c.api::<ReplicationController>()
        .delete("test-rc", &DeleteParams::default())
        .await?;
    wait_quota_used(&c, name, &[("replicationcontrollers", "0")]).await
}

async fn rq_rs(c: Ctx) -> Result<()> {
    let name = "test-quota";
    make_quota(&c, name).await?;
    wait_quota_used(&c, name, &[("count/replicasets.apps", "0")]).await?;
    let labels = json!({"name": "test-rs"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    c.create::<ReplicaSet>(rs_json("test-rs", 0, &labels, tpl))
        .await?;
    wait_quota_used(&c, name, &[("count/replicasets.apps", "1")]).await?;
    c.api::<ReplicaSet>()
        .delete("test-rs", &DeleteParams::default())
        .await?;
    wait_quota_used(&c, name, &[("count/replicasets.apps", "0")]).await
}

fn requests_pod(c: &Ctx, name: &str, cpu: &str, mem: &str) -> Value {
    pod(
        name,
        json!({"containers": [{
            "name": "pause", "image": c.env.images.pause,
            "resources": {"requests": {"cpu": cpu, "memory": mem},
                          "limits": {"cpu": cpu, "memory": mem}},
        }]}),
    )
}

async fn rq_pod(c: Ctx) -> Result<()> {
    let name = "test-quota";
    make_quota(&c, name).await?;
    wait_quota_used(&c, name, &[("pods", "0")]).await?;
    c.create_pod(requests_pod(&c, "test-pod", "500m", "252Mi"))
        .await?;
    wait_quota_used(
        &c,
        name,
        &[
            ("pods", "1"),
            ("requests.cpu", "500m"),
            ("requests.memory", "252Mi"),
        ],
    )
    .await?;
    // A pod whose requests exceed what is left is refused.
    let over: Pod = from_json(requests_pod(&c, "fail-pod", "600m", "100Mi"))?;
    match c.pods().create(&PostParams::default(), &over).await {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        Err(e) => bail!("creating a pod over quota: unexpected error {e}"),
        Ok(_) => bail!("a pod over the cpu quota was admitted"),
    }
    c.pods()
        .delete("test-pod", &DeleteParams::default().grace_period(0))
        .await?;
    wait_quota_used(
        &c,
        name,
        &[
            ("pods", "0"),
            ("requests.cpu", "0"),
            ("requests.memory", "0"),
        ],
    )
    .await
}

// ---------------------------------------------------------------- Jobs

/// A Job running busybox `sh -c script`, with an emptyDir at /data.
fn job_json(
    c: &Ctx,
    name: &str,
    restart: &str,
    par: i32,
    comp: i32,
    spec: Value,
    script: &str,
) -> Value {
    let mut j = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "parallelism": par, "completions": comp, "backoffLimit": 6,
            "template": {
                "metadata": {"labels": {"job": name}},
                "spec": {
                    "restartPolicy": restart,
                    "terminationGracePeriodSeconds": 1,
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "containers": [{
                        "name": "c", "image": c.env.images.busybox,
                        "command": ["sh", "-c", script],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }],
                },
            },
        },
    });
    if let (Some(o), Some(e)) = (j["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    j
}

const JOB_WAIT: Duration = Duration::from_secs(180);

/// Waits until the job has condition `cond` True; returns the job.
async fn wait_job_condition(c: &Ctx, name: &str, cond: &str) -> Result<Job> {
    let api = c.api::<Job>();
    wait_for(
        &format!("job {name} condition {cond}"),
        JOB_WAIT,
        || async {
            let j = api.get(name).await?;
            let has = j
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|x| x.type_ == cond && x.status == "True"));
            Ok(has.then_some(j))
        },
    )
    .await
}

fn job_cond_reason(j: &Job, cond: &str) -> Option<String> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|x| x.type_ == cond)
        .and_then(|x| x.reason.clone())
}

async fn job_fail_once(c: Ctx) -> Result<()> {
    // Fails the first time in each pod, then succeeds on the local restart.
    let script = "if [ -r /data/foo ]; then exit 0; else touch /data/foo; exit 1; fi";
    c.create::<Job>(job_json(
        &c,
        "failonce",
        "OnFailure",
        2,
        4,
        json!({}),
        script,
    ))
    .await?;
    let api = c.api::<Job>();
    wait_for("job to reach 4 completions", JOB_WAIT, || async {
        let j = api.get("failonce").await?;
        Ok((j.status.and_then(|s| s.succeeded) == Some(4)).then_some(()))
    })
    .await
}

/// Waits until `n` pods of job `name` are running; returns them.
async fn wait_job_pods_running(c: &Ctx, name: &str, n: usize) -> Result<Vec<Pod>> {
    wait_for(
        &format!("{n} running pods of job {name}"),
        JOB_WAIT,
        || async {
            let ps = live_pods(c, &format!("job={name}")).await?;
            let running: Vec<Pod> = ps.into_iter().filter(|p| phase(p) == "Running").collect();
            Ok((running.len() == n).then_some(running))
        },
    )
    .await
}

async fn job_delete(c: Ctx) -> Result<()> {
    c.create::<Job>(job_json(
        &c,
        "foo",
        "Never",
        2,
        3,
        json!({}),
        "sleep 1000000",
    ))
    .await?;
    wait_job_pods_running(&c, "foo", 2).await?;
    let api = c.api::<Job>();
    api.delete("foo", &DeleteParams::foreground()).await?;
    wait_for("job gone", JOB_WAIT, || async {
        Ok(api.get_opt("foo").await?.is_none().then_some(()))
    })
    .await?;
    wait_for("job pods gone", JOB_WAIT, || async {
        let l = c
            .pods()
            .list(&ListParams::default().labels("job=foo"))
            .await?;
        Ok(l.items.is_empty().then_some(()))
    })
    .await
}

async fn job_readopt(c: Ctx) -> Result<()> {
    let job = c
        .create::<Job>(job_json(
            &c,
            "adopt-release",
            "Never",
            2,
            2,
            json!({}),
            "sleep 1000000",
        ))
        .await?;
    let uid = job.metadata.uid.unwrap_or_default();
    let ps = wait_job_pods_running(&c, "adopt-release", 2).await?;
    let name = pod_name(&ps[0]);
    let pods = c.pods();
    // Orphan the pod: the job controller adopts it again.
    pods.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"ownerReferences": null}})),
    )
    .await?;
    wait_for("the orphaned pod to be re-adopted", JOB_WAIT, || async {
        let p = pods.get(&name).await?;
        Ok(controller_of(&p)
            .is_some_and(|(_, _, u)| u == uid)
            .then_some(()))
    })
    .await?;
    // Remove the labels: the job controller releases it.
    let p = pods.get(&name).await?;
    let mut patch = json!({"metadata": {"labels": {}}});
    for k in p.metadata.labels.unwrap_or_default().keys() {
        patch["metadata"]["labels"][k] = Value::Null;
    }
    pods.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    wait_for("the unlabelled pod to be released", JOB_WAIT, || async {
        let p = pods.get(&name).await?;
        Ok(controller_of(&p)
            .is_none_or(|(_, _, u)| u != uid)
            .then_some(()))
    })
    .await?;
    Ok(())
}

async fn job_status(c: Ctx) -> Result<()> {
    c.create::<Job>(job_json(
        &c,
        "suspended-job",
        "Never",
        1,
        1,
        json!({"suspend": true}),
        "exit 0",
    ))
    .await?;
    let api = c.api::<Job>();
    let st = api
        .get_status("suspended-job")
        .await
        .context("get status")?;
    ensure!(
        st.metadata.name.as_deref() == Some("suspended-job"),
        "status has the job's name"
    );
    // Patch the status subresource with an annotation and a start time.
    let now = k8s_openapi::jiff::Timestamp::now();
    let start = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let patched = api
        .patch_status(
            "suspended-job",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"patchedstatus": "true"}},
                "status": {"startTime": start},
            })),
        )
        .await
        .context("patch status")?;
    ensure!(
        patched
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("patchedstatus"))
            .map(String::as_str)
            == Some("true"),
        "patched status lacks the annotation"
    );
    ensure!(
        patched
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_some(),
        "patched status lacks startTime"
    );
    // Update the status with a new start time.
    let mut j = api.get_status("suspended-job").await?;
    let later = (now + std::time::Duration::from_secs(60))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    j.status.get_or_insert_with(Default::default).start_time = Some(from_json(json!(later))?);
    let updated = api
        .replace_status("suspended-job", &PostParams::default(), &j)
        .await
        .context("update status")?;
    let got = updated
        .status
        .and_then(|s| s.start_time)
        .map(|t| t.0.to_string());
    ensure!(got.is_some(), "updated status lacks startTime");
    Ok(())
}

/// Completion indexes of the job's succeeded pods.
async fn succeeded_indexes(c: &Ctx, name: &str) -> Result<Vec<String>> {
    let l = c
        .pods()
        .list(&ListParams::default().labels(&format!("job={name}")))
        .await?;
    let mut v: Vec<String> = l
        .items
        .iter()
        .filter(|p| phase(p) == "Succeeded")
        .filter_map(|p| {
            p.metadata
                .annotations
                .as_ref()?
                .get("batch.kubernetes.io/job-completion-index")
                .cloned()
        })
        .collect();
    v.sort();
    Ok(v)
}

async fn job_indexed(c: Ctx) -> Result<()> {
    c.create::<Job>(job_json(
        &c,
        "indexed-job",
        "Never",
        2,
        4,
        json!({"completionMode": "Indexed"}),
        "exit 0",
    ))
    .await?;
    let j = wait_job_condition(&c, "indexed-job", "Complete").await?;
    let s = j.status.unwrap_or_default();
    ensure!(
        s.completed_indexes.as_deref() == Some("0-3"),
        "completedIndexes = {:?}, want 0-3",
        s.completed_indexes
    );
    let idx = succeeded_indexes(&c, "indexed-job").await?;
    ensure!(
        idx == ["0", "1", "2", "3"],
        "succeeded pods' indexes {idx:?}, want 0..3"
    );
    Ok(())
}

async fn job_pfp_fail_job(c: Ctx) -> Result<()> {
    // Every pod exits 1 after a moment; the policy fails the job at once.
    c.create::<Job>(job_json(
        &c,
        "fail-job-early",
        "Never",
        2,
        4,
        json!({"backoffLimit": 6, "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [1]}},
        ]}}),
        "exit 1",
    ))
    .await?;
    let j = wait_job_condition(&c, "fail-job-early", "Failed").await?;
    let r = job_cond_reason(&j, "Failed");
    ensure!(
        r.as_deref() == Some("PodFailurePolicy"),
        "Failed reason {r:?}, want PodFailurePolicy"
    );
    Ok(())
}

/// Odd indexes always fail; even ones succeed.
const FAIL_ODD: &str = "if [ $((JOB_COMPLETION_INDEX % 2)) -eq 1 ]; then exit 1; fi; exit 0";

async fn job_backoff_per_index(c: Ctx) -> Result<()> {
    c.create::<Job>(job_json(
        &c,
        "with-backoff-per-index",
        "Never",
        2,
        4,
        json!({"completionMode": "Indexed", "backoffLimitPerIndex": 1, "backoffLimit": null}),
        FAIL_ODD,
    ))
    .await?;
    let j = wait_job_condition(&c, "with-backoff-per-index", "Failed").await?;
    let s = j.status.unwrap_or_default();
    ensure!(
        s.failed_indexes.as_deref() == Some("1,3"),
        "failedIndexes {:?}, want 1,3",
        s.failed_indexes
    );
    ensure!(
        s.completed_indexes.as_deref() == Some("0,2"),
        "completedIndexes {:?}, want 0,2",
        s.completed_indexes
    );
    ensure!(
        s.failed == Some(4),
        "failed {:?}, want 4 (two tries per failing index)",
        s.failed
    );
    ensure!(
        s.succeeded == Some(2),
        "succeeded {:?}, want 2",
        s.succeeded
    );
    Ok(())
}

async fn job_max_failed_indexes(c: Ctx) -> Result<()> {
    c.create::<Job>(job_json(
        &c,
        "with-max-failed-indexes",
        "Never",
        1,
        4,
        json!({"completionMode": "Indexed", "backoffLimitPerIndex": 0, "maxFailedIndexes": 0, "backoffLimit": null}),
        "exit 1",
    ))
    .await?;
    let j = wait_job_condition(&c, "with-max-failed-indexes", "Failed").await?;
    let r = job_cond_reason(&j, "Failed");
    ensure!(
        r.as_deref() == Some("MaxFailedIndexesExceeded"),
        "Failed reason {r:?}"
    );
    let s = j.status.unwrap_or_default();
    ensure!(
        s.failed_indexes.as_deref() == Some("0"),
        "failedIndexes {:?}, want 0",
        s.failed_indexes
    );
    ensure!(s.failed == Some(1), "failed {:?}, want 1", s.failed);
    Ok(())
}

async fn job_fail_index(c: Ctx) -> Result<()> {
    c.create::<Job>(job_json(
        &c,
        "fail-index",
        "Never",
        2,
        2,
        json!({"completionMode": "Indexed", "backoffLimitPerIndex": 1, "backoffLimit": null,
        "podFailurePolicy": {"rules": [
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}},
        ]}}),
        "exit 1",
    ))
    .await?;
    let j = wait_job_condition(&c, "fail-index", "Failed").await?;
    let s = j.status.unwrap_or_default();
    ensure!(
        s.failed_indexes.as_deref() == Some("0,1"),
        "failedIndexes {:?}, want 0,1",
        s.failed_indexes
    );
    ensure!(
        s.failed == Some(2),
        "failed {:?}, want 2 (no retries)",
        s.failed
    );
    Ok(())
}

async fn job_success_all(c: Ctx) -> Result<()> {
    c.create::<Job>(job_json(
        &c,
        "with-success-policy-all",
        "Never",
        2,
        2,
        json!({"completionMode": "Indexed", "successPolicy": {"rules": [{"succeededCount": 2}]}}),
        "exit 0",
    ))
    .await?;
    let j = wait_job_condition(&c, "with-success-policy-all", "SuccessCriteriaMet").await?;
    let r = job_cond_reason(&j, "SuccessCriteriaMet");
    ensure!(
        r.as_deref() == Some("SuccessPolicy"),
        "SuccessCriteriaMet reason {r:?}"
    );
    let j = wait_job_condition(&c, "with-success-policy-all", "Complete").await?;
    ensure!(
        j.status.and_then(|s| s.succeeded) == Some(2),
        "succeeded is not 2"
    );
    Ok(())
}

/// Index 0 succeeds; the others wait for ever.
const ONLY_ZERO: &str = "if [ \"$JOB_COMPLETION_INDEX\" = 0 ]; then exit 0; fi; sleep 1000000";

async fn success_pending(c: &Ctx, name: &str, policy: Value) -> Result<()> {
    c.create::<Job>(job_json(
        c,
        name,
        "Never",
        3,
        3,
        json!({"completionMode": "Indexed", "successPolicy": {"rules": [policy]}}),
        ONLY_ZERO,
    ))
    .await?;
    let j = wait_job_condition(c, name, "SuccessCriteriaMet").await?;
    let r = job_cond_reason(&j, "SuccessCriteriaMet");
    ensure!(
        r.as_deref() == Some("SuccessPolicy"),
        "SuccessCriteriaMet reason {r:?}"
    );
    let j = wait_job_condition(c, name, "Complete").await?;
    let s = j.status.unwrap_or_default();
    ensure!(
        s.succeeded == Some(1),
        "succeeded {:?}, want 1",
        s.succeeded
    );
    ensure!(
        s.completed_indexes.as_deref() == Some("0"),
        "completedIndexes {:?}, want 0",
        s.completed_indexes
    );
    ensure!(
        s.active.unwrap_or(0) == 0,
        "active {:?} after completion",
        s.active
    );
    Ok(())
}

async fn job_success_count(c: Ctx) -> Result<()> {
    success_pending(&c, "with-success-count", json!({"succeededCount": 1})).await
}

async fn job_success_indexes(c: Ctx) -> Result<()> {
    success_pending(&c, "with-success-indexes", json!({"succeededIndexes": "0"})).await
}

// ---------------------------------------------------- garbage collector

async fn gc_rc_background(c: Ctx) -> Result<()> {
    let labels = json!({"name": "gc-rc-pods"});
    let tpl = template(&labels, "nginx", &c.env.images.nginx, json!({}));
    c.create::<ReplicationController>(rc_json("simpletest.rc", 2, &labels, tpl))
        .await?;
    wait_for("the rc to create 2 pods", CTRL_WAIT, || async {
        Ok((live_pods(&c, "name=gc-rc-pods").await?.len() == 2).then_some(()))
    })
    .await?;
    c.api::<ReplicationController>()
        .delete("simpletest.rc", &DeleteParams::background())
        .await?;
    wait_for("the rc's pods to be collected", CTRL_WAIT, || async {
        let l = c
            .pods()
            .list(&ListParams::default().labels("name=gc-rc-pods"))
            .await?;
        Ok(l.items.is_empty().then_some(()))
    })
    .await?;
    ensure!(
        c.api::<ReplicationController>()
            .get_opt("simpletest.rc")
            .await?
            .is_none(),
        "the rc still exists"
    );
    Ok(())
}

async fn make_gc_deployment(c: &Ctx, labels: &Value) -> Result<()> {
    let tpl = template(labels, "nginx", &c.env.images.nginx, json!({}));
    c.create::<Deployment>(deploy_json("simpletest.deployment", 2, labels, tpl))
        .await?;
    let rss = c.api::<ReplicaSet>();
    wait_for(
        "the deployment to create its replicaset",
        CTRL_WAIT,
        || async { Ok((!rss.list(&ListParams::default()).await?.items.is_empty()).then_some(())) },
    )
    .await
}

async fn gc_deploy_background(c: Ctx) -> Result<()> {
    let labels = json!({"name": "gc-deploy-pods"});
    make_gc_deployment(&c, &labels).await?;
    c.api::<Deployment>()
        .delete("simpletest.deployment", &DeleteParams::background())
        .await?;
    let rss = c.api::<ReplicaSet>();
    wait_for("the replicasets to be collected", CTRL_WAIT, || async {
        Ok(rss
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await?;
    wait_for("the pods to be collected", CTRL_WAIT, || async {
        let l = c
            .pods()
            .list(&ListParams::default().labels("name=gc-deploy-pods"))
            .await?;
        Ok(l.items.is_empty().then_some(()))
    })
    .await
}

async fn gc_deploy_orphan(c: Ctx) -> Result<()> {
    let labels = json!({"name": "gc-orphan-pods"});
    make_gc_deployment(&c, &labels).await?;
    let deps = c.api::<Deployment>();
    deps.delete("simpletest.deployment", &DeleteParams::orphan())
        .await?;
    wait_for("the deployment to be gone", CTRL_WAIT, || async {
        Ok(deps
            .get_opt("simpletest.deployment")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    // For 30 s the collector must leave the orphaned replicaset alone.
    let rss = c.api::<ReplicaSet>();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let l = rss.list(&ListParams::default()).await?;
        ensure!(!l.items.is_empty(), "the orphaned replicaset was deleted");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let l = rss.list(&ListParams::default()).await?;
    for rs in &l.items {
        let owned = rs
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o.kind == "Deployment"));
        ensure!(
            !owned,
            "replicaset still names the deleted deployment as owner"
        );
    }
    Ok(())
}

async fn gc_cycle(c: Ctx) -> Result<()> {
    let pods = c.pods();
    let mut uids = Vec::new();
    for n in ["pod1", "pod2", "pod3"] {
        let p = c
            .create_pod(pod(
                n,
                json!({"containers": [{"name": "nginx", "image": c.env.images.nginx}]}),
            ))
            .await?;
        uids.push(p.metadata.uid.unwrap_or_default());
    }
    // pod1 is owned by pod3, pod2 by pod1, pod3 by pod2.
    for (i, n) in ["pod1", "pod2", "pod3"].iter().enumerate() {
        let (owner, ouid) = match i {
            0 => ("pod3", &uids[2]),
            1 => ("pod1", &uids[0]),
            _ => ("pod2", &uids[1]),
        };
        pods.patch(
            n,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": owner, "uid": ouid,
                "controller": true, "blockOwnerDeletion": true,
            }]}})),
        )
        .await
        .with_context(|| format!("set the owner of {n}"))?;
    }
    pods.delete("pod1", &DeleteParams::background()).await?;
    wait_for(
        "all pods of the cycle to be collected",
        Duration::from_secs(90),
        || async {
            let l = pods.list(&ListParams::default()).await?;
            Ok(l.items.is_empty().then_some(()))
        },
    )
    .await
}

// ------------------------------------------- ReplicaSet / Deployment API

async fn rs_collection(c: Ctx) -> Result<()> {
    let labels = json!({"e2e": "rs-collection", "pod": "httpd"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    c.create::<ReplicaSet>(rs_json("test-rs", 1, &labels, tpl))
        .await?;
    wait_pods_ready(&c, &labels_selector(&labels), 1).await?;
    let all = c.all::<ReplicaSet>();
    let l = all
        .list(&ListParams::default().labels("e2e=rs-collection"))
        .await?;
    ensure!(
        l.items
            .iter()
            .any(|r| r.metadata.namespace.as_deref() == Some(&c.ns)),
        "the ReplicaSet is not listed across namespaces by label"
    );
    let api = c.api::<ReplicaSet>();
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("e2e=rs-collection"),
    )
    .await?;
    wait_for("the ReplicaSets to be gone", CTRL_WAIT, || async {
        let l = api
            .list(&ListParams::default().labels("e2e=rs-collection"))
            .await?;
        Ok(l.items.is_empty().then_some(()))
    })
    .await
}

fn has_condition(v: &Value, t: &str) -> bool {
    v["status"]["conditions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["type"] == t))
}

async fn rs_status(c: Ctx) -> Result<()> {
    let labels = json!({"name": "sample-pod", "pod": "httpd"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    c.create::<ReplicaSet>(rs_json("test-rs", 1, &labels, tpl))
        .await?;
    wait_pods_ready(&c, &labels_selector(&labels), 1).await?;
    let api = c.api::<ReplicaSet>();
    let mut rs = api.get_status("test-rs").await.context("get status")?;
    let st = rs.status.get_or_insert_with(Default::default);
    st.conditions.get_or_insert_with(Vec::new).push(from_json(json!({
        "type": "StatusUpdate", "status": "True", "reason": "E2E", "message": "Set from e2e test",
    }))?);
    let up = api
        .replace_status("test-rs", &PostParams::default(), &rs)
        .await
        .context("update status")?;
    ensure!(
        has_condition(&serde_json::to_value(&up)?, "StatusUpdate"),
        "updated status lacks the condition"
    );
    let pa = api
        .patch_status(
            "test-rs",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"conditions": [{"type": "StatusPatched", "status": "True"}]}}),
            ),
        )
        .await
        .context("patch status")?;
    ensure!(
        has_condition(&serde_json::to_value(&pa)?, "StatusPatched"),
        "patched status lacks the condition"
    );
    Ok(())
}

async fn rs_replace_patch(c: Ctx) -> Result<()> {
    let labels = json!({"name": "sample-pod", "pod": "httpd"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    c.create::<ReplicaSet>(rs_json("test-rs", 1, &labels, tpl))
        .await?;
    wait_pods_ready(&c, &labels_selector(&labels), 1).await?;
    let api = c.api::<ReplicaSet>();
    // Replace: a new label.
    let mut rs = api.get("test-rs").await?;
    rs.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("test-rs".into(), "updated".into());
    api.replace("test-rs", &PostParams::default(), &rs)
        .await
        .context("replace")?;
    // Patch: three replicas of the new image.
    api.patch(
        "test-rs",
        &PatchParams::default(),
        &Patch::Strategic(json!({"metadata": {"labels": {"test-rs": "patched"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "httpd", "image": c.env.images.httpd_new}]}}}})),
    )
    .await
    .context("patch")?;
    wait_for(
        "the patched ReplicaSet to have 3 ready replicas",
        CTRL_WAIT,
        || async {
            let rs = api.get("test-rs").await?;
            let s = rs.status.unwrap_or_default();
            Ok((s.ready_replicas == Some(3) && s.available_replicas == Some(3)).then_some(()))
        },
    )
    .await?;
    let rs = api.get("test-rs").await?;
    ensure!(
        rs.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("test-rs"))
            .map(String::as_str)
            == Some("patched"),
        "label not patched"
    );
    let img = rs
        .spec
        .and_then(|s| s.template)
        .and_then(|t| t.spec)
        .map(|s| s.containers[0].image.clone());
    ensure!(
        img.flatten().as_deref() == Some(c.env.images.httpd_new.as_str()),
        "image not patched"
    );
    Ok(())
}

async fn deploy_status(c: Ctx) -> Result<()> {
    let labels = json!({"e2e": "testing", "name": "httpd"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    c.create::<Deployment>(deploy_json("test-deployment", 1, &labels, tpl))
        .await?;
    let api = c.api::<Deployment>();
    wait_for("deployment available", CTRL_WAIT, || async {
        let d = api.get("test-deployment").await?;
        Ok((d.status.and_then(|s| s.available_replicas) == Some(1)).then_some(()))
    })
    .await?;
    let mut d = api
        .get_status("test-deployment")
        .await
        .context("get status")?;
    d.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new).push(from_json(json!({
        "type": "StatusUpdate", "status": "True", "reason": "E2E", "message": "Set from e2e test",
    }))?);
    let up = api
        .replace_status("test-deployment", &PostParams::default(), &d)
        .await
        .context("update status")?;
    ensure!(
        has_condition(&serde_json::to_value(&up)?, "StatusUpdate"),
        "updated status lacks the condition"
    );
    let pa = api
        .patch_status(
            "test-deployment",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"patchedstatus": "true"}},
                "status": {"conditions": [{"type": "StatusPatched", "status": "True"}]}}),
            ),
        )
        .await
        .context("patch status")?;
    ensure!(
        has_condition(&serde_json::to_value(&pa)?, "StatusPatched"),
        "patched status lacks the condition"
    );
    Ok(())
}

/// Waits until the deployment rolled out: observed, all replicas updated and available.
async fn wait_deploy_complete(c: &Ctx, name: &str) -> Result<Deployment> {
    let api = c.api::<Deployment>();
    wait_for(
        &format!("deployment {name} to complete"),
        CTRL_WAIT,
        || async {
            let d = api.get(name).await?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let s = d.status.clone().unwrap_or_default();
            let ok = s.observed_generation == d.metadata.generation
                && s.updated_replicas == Some(want)
                && s.available_replicas == Some(want)
                && s.replicas == Some(want);
            Ok(ok.then_some(d))
        },
    )
    .await
}

fn revision_of(rs: &ReplicaSet) -> Option<String> {
    rs.metadata
        .annotations
        .as_ref()?
        .get("deployment.kubernetes.io/revision")
        .cloned()
}

async fn deploy_rolling(c: Ctx) -> Result<()> {
    let labels = json!({"name": "sample-pod", "pod": "httpd"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    let mut rs = rs_json("test-rolling-update-controller", 1, &labels, tpl);
    rs["metadata"]["annotations"] =
        json!({"deployment.kubernetes.io/revision": "3546343826724305832"});
    c.create::<ReplicaSet>(rs).await?;
    wait_pods_ready(&c, &labels_selector(&labels), 1).await?;
    let tpl = template(&labels, "agnhost", &c.env.images.agnhost, json!({}));
    let mut d = deploy_json("test-rolling-update-deployment", 1, &labels, tpl);
    d["spec"]["strategy"] = json!({"type": "RollingUpdate"});
    c.create::<Deployment>(d).await?;
    wait_deploy_complete(&c, "test-rolling-update-deployment").await?;
    let rss = c
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await?
        .items;
    let old = rss
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("test-rolling-update-controller"))
        .context("old replicaset gone")?;
    ensure!(
        old.spec.as_ref().and_then(|s| s.replicas) == Some(0),
        "old replicaset not scaled to 0"
    );
    let new: Vec<&ReplicaSet> = rss
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some("test-rolling-update-controller"))
        .collect();
    ensure!(new.len() == 1, "want one new replicaset, got {}", new.len());
    let rev = revision_of(new[0]);
    ensure!(
        rev.as_deref() == Some("3546343826724305833"),
        "new replicaset revision {rev:?}"
    );
    Ok(())
}

async fn deploy_recreate(c: Ctx) -> Result<()> {
    let labels = json!({"name": "sample-pod-3"});
    let tpl = template(&labels, "agnhost", &c.env.images.agnhost, json!({}));
    let mut d = deploy_json("test-recreate-deployment", 1, &labels, tpl);
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    c.create::<Deployment>(d).await?;
    let d = wait_deploy_complete(&c, "test-recreate-deployment").await?;
    let api = c.api::<Deployment>();
    api.patch(
        "test-recreate-deployment",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "agnhost", "image": c.env.images.httpd_new}]}}}})),
    )
    .await?;
    let gen = d.metadata.generation.unwrap_or(0) + 1;
    // While it rolls out, old and new pods never run together.
    wait_for("the Recreate rollout", CTRL_WAIT, || async {
        let ps = live_pods(&c, "name=sample-pod-3").await?;
        let running: Vec<&Pod> = ps.iter().filter(|p| phase(p) == "Running").collect();
        let hashes: std::collections::BTreeSet<String> = running
            .iter()
            .filter_map(|p| {
                p.metadata
                    .labels
                    .as_ref()?
                    .get("pod-template-hash")
                    .cloned()
            })
            .collect();
        if hashes.len() > 1 {
            bail!("pods of two revisions run at once under Recreate");
        }
        let d = api.get("test-recreate-deployment").await?;
        let s = d.status.unwrap_or_default();
        Ok((s.observed_generation >= Some(gen)
            && s.updated_replicas == Some(1)
            && s.available_replicas == Some(1)
            && s.replicas == Some(1))
        .then_some(()))
    })
    .await
}

async fn deploy_history(c: Ctx) -> Result<()> {
    let labels = json!({"name": "cleanup-pod"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    c.create::<ReplicaSet>(rs_json("test-cleanup-controller", 1, &labels, tpl))
        .await?;
    wait_pods_ready(&c, "name=cleanup-pod", 1).await?;
    let tpl = template(&labels, "agnhost", &c.env.images.agnhost, json!({}));
    let mut d = deploy_json("test-cleanup-deployment", 1, &labels, tpl);
    d["spec"]["revisionHistoryLimit"] = json!(0);
    c.create::<Deployment>(d).await?;
    wait_deploy_complete(&c, "test-cleanup-deployment").await?;
    let rss = c.api::<ReplicaSet>();
    wait_for("old replicasets to be cleaned up", CTRL_WAIT, || async {
        let l = rss.list(&ListParams::default()).await?.items;
        Ok(
            (l.len() == 1 && l[0].metadata.name.as_deref() != Some("test-cleanup-controller"))
                .then_some(()),
        )
    })
    .await
}

// ------------------------------------------------------------- CronJob

fn cronjob_json(c: &Ctx, name: &str, policy: &str, suspend: bool, script: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": "*/1 * * * ?",
            "concurrencyPolicy": policy,
            "suspend": suspend,
            "jobTemplate": {"spec": {
                "parallelism": 1, "completions": 1, "backoffLimit": 6,
                "template": {"spec": {
                    "restartPolicy": "OnFailure",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": c.env.images.busybox,
                                    "command": ["sh", "-c", script]}],
                }},
            }},
        },
    })
}

async fn create_cronjob(c: &Ctx, v: Value) -> Result<()> {
    let api: kube::Api<k8s_openapi::api::batch::v1::CronJob> = c.api();
    api.create(&PostParams::default(), &from_json(v)?).await?;
    Ok(())
}

/// Jobs of the namespace that are not finished (no Complete/Failed condition), not being deleted.
async fn active_jobs(c: &Ctx) -> Result<Vec<Job>> {
    let l = c.api::<Job>().list(&ListParams::default()).await?.items;
    Ok(l.into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter(|j| {
            !j.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|x| {
                        (x.type_ == "Complete" || x.type_ == "Failed") && x.status == "True"
                    })
                })
        })
        .collect())
}

fn cj_active(cj: &k8s_openapi::api::batch::v1::CronJob) -> usize {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .map_or(0, Vec::len)
}

const CJ_WAIT: Duration = Duration::from_secs(150);

async fn cj_suspend(c: Ctx) -> Result<()> {
    create_cronjob(
        &c,
        cronjob_json(&c, "suspended", "Allow", true, "sleep 300"),
    )
    .await?;
    let api: kube::Api<k8s_openapi::api::batch::v1::CronJob> = c.api();
    // Over a bit more than one schedule period, nothing is started.
    let deadline = std::time::Instant::now() + Duration::from_secs(70);
    while std::time::Instant::now() < deadline {
        let jobs = c.api::<Job>().list(&ListParams::default()).await?.items;
        ensure!(
            jobs.is_empty(),
            "a suspended cronjob started {} job(s)",
            jobs.len()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let cj = api.get("suspended").await?;
    ensure!(cj_active(&cj) == 0, "suspended cronjob lists active jobs");
    Ok(())
}

async fn cj_forbid(c: Ctx) -> Result<()> {
    create_cronjob(&c, cronjob_json(&c, "forbid", "Forbid", false, "sleep 300")).await?;
    let api: kube::Api<k8s_openapi::api::batch::v1::CronJob> = c.api();
    wait_for("one active job of the cronjob", CJ_WAIT, || async {
        let cj = api.get("forbid").await?;
        Ok((cj_active(&cj) == 1 && active_jobs(&c).await?.len() == 1).then_some(()))
    })
    .await?;
    // Over the next schedule no second job runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(65);
    while std::time::Instant::now() < deadline {
        let n = c
            .api::<Job>()
            .list(&ListParams::default())
            .await?
            .items
            .len();
        ensure!(n == 1, "Forbid: {n} jobs exist at once");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let cj = api.get("forbid").await?;
    ensure!(
        cj_active(&cj) == 1,
        "cronjob lists {} active jobs",
        cj_active(&cj)
    );
    Ok(())
}

async fn cj_allow(c: Ctx) -> Result<()> {
    create_cronjob(
        &c,
        cronjob_json(&c, "concurrent", "Allow", false, "sleep 300"),
    )
    .await?;
    let api: kube::Api<k8s_openapi::api::batch::v1::CronJob> = c.api();
    wait_for("two active jobs of the cronjob", CJ_WAIT, || async {
        let cj = api.get("concurrent").await?;
        Ok((cj_active(&cj) >= 2 && active_jobs(&c).await?.len() >= 2).then_some(()))
    })
    .await?;
    Ok(())
}

async fn cj_replace(c: Ctx) -> Result<()> {
    create_cronjob(
        &c,
        cronjob_json(&c, "replace", "Replace", false, "sleep 300"),
    )
    .await?;
    let api: kube::Api<k8s_openapi::api::batch::v1::CronJob> = c.api();
    let first = wait_for("one active job of the cronjob", CJ_WAIT, || async {
        let cj = api.get("replace").await?;
        let a = active_jobs(&c).await?;
        Ok((cj_active(&cj) == 1 && a.len() == 1)
            .then(|| a[0].metadata.name.clone().unwrap_or_default()))
    })
    .await?;
    // At the next schedule the running job is replaced by a new one.
    wait_for("the active job to be replaced", CJ_WAIT, || async {
        let a = active_jobs(&c).await?;
        Ok((a.len() == 1 && a[0].metadata.name.as_deref() != Some(first.as_str())).then_some(()))
    })
    .await?;
    let jobs = c.api::<Job>();
    wait_for(
        "the replaced job to be gone",
        Duration::from_secs(60),
        || async { Ok(jobs.get_opt(&first).await?.is_none().then_some(())) },
    )
    .await
}

// ----------------------------------------------------------------- PDB

type Pdb = k8s_openapi::api::policy::v1::PodDisruptionBudget;

async fn pdb_status_patch(c: Ctx) -> Result<()> {
    let api: kube::Api<Pdb> = c.api();
    api.create(
        &PostParams::default(),
        &from_json(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "foo"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"foo": "bar"}}},
        }))?,
    )
    .await?;
    wait_for("the pdb status to be processed", CTRL_WAIT, || async {
        let p = api.get("foo").await?;
        let og = p.status.as_ref().and_then(|s| s.observed_generation);
        Ok((og.is_some() && og == p.metadata.generation).then_some(()))
    })
    .await?;
    let mut p = api.get_status("foo").await.context("get status")?;
    p.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new).push(from_json(json!({
        "type": "StatusUpdate", "status": "True", "reason": "E2E", "message": "Set from an e2e test",
        "lastTransitionTime": "2024-01-01T00:00:00Z",
    }))?);
    let up = api
        .replace_status("foo", &PostParams::default(), &p)
        .await
        .context("update status")?;
    ensure!(
        has_condition(&serde_json::to_value(&up)?, "StatusUpdate"),
        "updated status lacks the condition"
    );
    let og = up
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    let pa = api
        .patch_status(
            "foo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": og + 1}})),
        )
        .await
        .context("patch status")?;
    ensure!(
        pa.status.as_ref().and_then(|s| s.observed_generation) == Some(og + 1),
        "patched observedGeneration not stored"
    );
    Ok(())
}

/// Why an eviction was refused.
#[derive(Debug)]
enum EvictError {
    /// 429: the disruption budget forbids it.
    Blocked(String),
    /// Anything else.
    Other(anyhow::Error),
}

/// Posts a policy/v1 Eviction for pod `name` (as client-go's EvictV1),
/// through kubectl's raw mode.
async fn evict(c: &Ctx, name: &str) -> std::result::Result<(), EvictError> {
    let body = json!({
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": name, "namespace": c.ns},
    })
    .to_string();
    let path = format!("/api/v1/namespaces/{}/pods/{name}/eviction", c.ns);
    let args = ["create", "--raw", &path, "-f", "-"];
    let call = c.kubectl_output(&args, Some(&body));
    match tokio::time::timeout(Duration::from_secs(30), call).await {
        Err(_) => Err(EvictError::Other(anyhow::anyhow!(
            "the eviction of {name} got no answer in 30s"
        ))),
        Ok(Err(e)) => Err(EvictError::Other(e)),
        Ok(Ok((true, _, _))) => Ok(()),
        Ok(Ok((false, _, err))) if err.contains("TooManyRequests") => Err(EvictError::Blocked(err)),
        Ok(Ok((false, _, err))) => Err(EvictError::Other(anyhow::anyhow!(
            "eviction of {name}: {}",
            err.trim()
        ))),
    }
}

fn evicted(r: std::result::Result<(), EvictError>) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(EvictError::Blocked(m)) => bail!("eviction refused: {}", m.trim()),
        Err(EvictError::Other(e)) => Err(e),
    }
}

/// A running pod of `selector` not being deleted.
async fn running_pod(c: &Ctx, selector: &str) -> Result<String> {
    let ps = live_pods(c, selector).await?;
    ps.iter()
        .find(|p| phase(p) == "Running")
        .map(pod_name)
        .context("no running pod")
}

async fn pdb_block_eviction(c: Ctx) -> Result<()> {
    let api: kube::Api<Pdb> = c.api();
    api.create(
        &PostParams::default(),
        &from_json(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "foo"},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"foo": "bar"}}},
        }))?,
    )
    .await?;
    let labels = json!({"foo": "bar"});
    let tpl = template(&labels, "donothing", &c.env.images.pause, json!({}));
    c.create::<ReplicaSet>(rs_json("rs", 3, &labels, tpl))
        .await?;
    wait_pods_ready(&c, "foo=bar", 3).await?;
    let observed = |healthy: i32, allowed: i32| {
        let api = api.clone();
        async move {
            wait_for(
                &format!("the pdb to see {healthy} healthy pods, {allowed} disruptions allowed"),
                CTRL_WAIT,
                || async {
                    let p = api.get("foo").await?;
                    let s = p.status.unwrap_or_default();
                    Ok((s.current_healthy == healthy
                        && s.disruptions_allowed == allowed
                        && s.observed_generation == p.metadata.generation)
                        .then_some(()))
                },
            )
            .await
        }
    };
    observed(3, 0).await?;
    let blocked = |name: String| {
        let c = c.clone();
        async move {
            match evict(&c, &name).await {
                Err(EvictError::Blocked(_)) => Ok(()),
                Err(EvictError::Other(e)) => bail!("eviction of {name}: unexpected error {e:#}"),
                Ok(()) => bail!("the eviction of {name} was allowed although the pdb forbids it"),
            }
        }
    };
    blocked(running_pod(&c, "foo=bar").await?).await?;
    // Update: allow one disruption.
    let mut p = api.get("foo").await?;
    if let Some(spec) = p.spec.as_mut() {
        spec.max_unavailable = None;
        spec.min_available =
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2));
    }
    api.replace("foo", &PostParams::default(), &p)
        .await
        .context("update pdb")?;
    observed(3, 1).await?;
    evicted(evict(&c, &running_pod(&c, "foo=bar").await?).await)
        .context("eviction after the update")?;
    // Patch: no disruption allowed again.
    wait_pods_ready(&c, "foo=bar", 3).await?;
    api.patch(
        "foo",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": 3}})),
    )
    .await
    .context("patch pdb")?;
    observed(3, 0).await?;
    blocked(running_pod(&c, "foo=bar").await?).await?;
    // Deleted: eviction allowed.
    api.delete("foo", &DeleteParams::default()).await?;
    wait_for("the pdb to be gone", CTRL_WAIT, || async {
        Ok(api.get_opt("foo").await?.is_none().then_some(()))
    })
    .await?;
    evicted(evict(&c, &running_pod(&c, "foo=bar").await?).await)
        .context("eviction without a pdb")?;
    Ok(())
}

async fn pdb_status_updates(c: Ctx) -> Result<()> {
    let api: kube::Api<Pdb> = c.api();
    api.create(
        &PostParams::default(),
        &from_json(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "foo"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"foo": "bar"}}},
        }))?,
    )
    .await?;
    for i in 0..3 {
        let mut p = pod(
            &format!("pod-{i}"),
            json!({"containers": [{"name": "c", "image": c.env.images.pause}]}),
        );
        p["metadata"]["labels"] = json!({"foo": "bar"});
        c.create_pod(p).await?;
    }
    for i in 0..3 {
        c.wait_running(&format!("pod-{i}")).await?;
    }
    wait_for("the pdb status to count the pods", CTRL_WAIT, || async {
        let p = api.get("foo").await?;
        let s = p.status.unwrap_or_default();
        Ok((s.expected_pods == 3
            && s.current_healthy == 3
            && s.desired_healthy == 1
            && s.disruptions_allowed == 2)
            .then_some(()))
    })
    .await
}

// -------------------------------------------------------------- RootCA

async fn root_ca(c: Ctx) -> Result<()> {
    let api = c.api::<ConfigMap>();
    let name = "kube-root-ca.crt";
    let orig = wait_for("the root CA configmap", Duration::from_secs(60), || async {
        Ok(api.get_opt(name).await?)
    })
    .await?;
    let data = orig.data.clone().unwrap_or_default();
    ensure!(
        data.contains_key("ca.crt"),
        "root CA configmap lacks ca.crt"
    );
    // Changed: reconciled back.
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"ca.crt": "changed", "data": "foo"}})),
    )
    .await?;
    wait_for(
        "the root CA configmap to be reconciled",
        Duration::from_secs(60),
        || async {
            let cm = api.get(name).await?;
            Ok((cm.data.unwrap_or_default() == data).then_some(()))
        },
    )
    .await?;
    // Deleted: recreated.
    api.delete(name, &DeleteParams::default()).await?;
    wait_for(
        "the root CA configmap to be recreated",
        Duration::from_secs(60),
        || async {
            let cm = api.get_opt(name).await?;
            Ok(cm
                .filter(|cm| {
                    cm.metadata.uid != orig.metadata.uid
                        && cm.data.clone().unwrap_or_default() == data
                })
                .map(|_| ()))
        },
    )
    .await
}

// --------------------------------------------------------- StatefulSet

type Sts = k8s_openapi::api::apps::v1::StatefulSet;

async fn make_sts(c: &Ctx, name: &str, replicas: i32, labels: &Value) -> Result<()> {
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "test"},
        "spec": {"clusterIP": "None", "selector": labels, "ports": [{"port": 80, "name": "http"}]},
    }))
    .await?;
    let tpl = template(labels, "webserver", &c.env.images.httpd, json!({}));
    c.create::<Sts>(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "serviceName": "test",
                 "selector": {"matchLabels": labels}, "template": tpl},
    }))
    .await?;
    Ok(())
}

async fn wait_sts_ready(c: &Ctx, name: &str, n: i32) -> Result<()> {
    let api: kube::Api<Sts> = c.api();
    wait_for(
        &format!("statefulset {name} to have {n} ready replicas"),
        CTRL_WAIT,
        || async {
            let s = api.get(name).await?.status.unwrap_or_default();
            Ok((s.ready_replicas.unwrap_or(0) == n && s.replicas == n).then_some(()))
        },
    )
    .await
}

async fn sts_scale(c: Ctx) -> Result<()> {
    let labels = json!({"foo": "bar", "baz": "blah"});
    make_sts(&c, "ss", 1, &labels).await?;
    wait_sts_ready(&c, "ss", 1).await?;
    let api: kube::Api<Sts> = c.api();
    let mut scale = api.get_scale("ss").await.context("get scale")?;
    ensure!(
        scale.status.as_ref().map(|s| s.replicas) == Some(1),
        "scale status replicas is not 1"
    );
    scale.spec.get_or_insert_with(Default::default).replicas = Some(2);
    let got = api
        .replace_scale("ss", &PostParams::default(), &scale)
        .await
        .context("update scale")?;
    ensure!(
        got.spec.and_then(|s| s.replicas) == Some(2),
        "scale update did not set 2"
    );
    let s = api.get("ss").await?;
    ensure!(
        s.spec.and_then(|s| s.replicas) == Some(2),
        "statefulset spec.replicas is not 2"
    );
    api.patch_scale(
        "ss",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .context("patch scale")?;
    let s = api.get("ss").await?;
    ensure!(
        s.spec.and_then(|s| s.replicas) == Some(4),
        "statefulset spec.replicas is not 4 after patch"
    );
    Ok(())
}

async fn sts_collection(c: Ctx) -> Result<()> {
    let labels = json!({"e2e": "sts-collection"});
    make_sts(&c, "ss", 1, &labels).await?;
    wait_sts_ready(&c, "ss", 1).await?;
    let api: kube::Api<Sts> = c.api();
    api.patch(
        "ss",
        &PatchParams::default(),
        &Patch::Strategic(json!({"metadata": {"labels": {"test-ss": "patched"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "webserver", "image": c.env.images.httpd_new}]}}}})),
    )
    .await
    .context("patch")?;
    wait_sts_ready(&c, "ss", 2).await?;
    let s = api.get("ss").await?;
    let img = s
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers[0].image.clone());
    ensure!(
        img.as_deref() == Some(c.env.images.httpd_new.as_str()),
        "image not patched"
    );
    let l = c
        .all::<Sts>()
        .list(&ListParams::default().labels("test-ss=patched"))
        .await?;
    ensure!(
        l.items
            .iter()
            .any(|s| s.metadata.namespace.as_deref() == Some(&c.ns)),
        "patched statefulset not listed by label"
    );
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("test-ss=patched"),
    )
    .await?;
    wait_for("statefulsets gone", CTRL_WAIT, || async {
        Ok(api
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await
}

async fn sts_status(c: Ctx) -> Result<()> {
    let labels = json!({"e2e": "sts-status"});
    make_sts(&c, "ss", 1, &labels).await?;
    wait_sts_ready(&c, "ss", 1).await?;
    let api: kube::Api<Sts> = c.api();
    let mut s = api.get_status("ss").await.context("get status")?;
    s.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new).push(from_json(json!({
        "type": "StatusUpdate", "status": "True", "reason": "E2E", "message": "Set from e2e test",
    }))?);
    let up = api
        .replace_status("ss", &PostParams::default(), &s)
        .await
        .context("update status")?;
    ensure!(
        has_condition(&serde_json::to_value(&up)?, "StatusUpdate"),
        "updated status lacks the condition"
    );
    let pa = api
        .patch_status(
            "ss",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"conditions": [{"type": "StatusPatched", "status": "True"}]}}),
            ),
        )
        .await
        .context("patch status")?;
    ensure!(
        has_condition(&serde_json::to_value(&pa)?, "StatusPatched"),
        "patched status lacks the condition"
    );
    Ok(())
}

// ----------------------------------------------------------- Endpoints

type Eps = k8s_openapi::api::core::v1::Endpoints;

/// The endpoints of service `name` as sorted "pod:port" strings.
async fn endpoints_of(c: &Ctx, name: &str) -> Result<Vec<String>> {
    let Some(e) = c.api::<Eps>().get_opt(name).await? else {
        return Ok(Vec::new());
    };
    let mut v = Vec::new();
    for s in e.subsets.unwrap_or_default() {
        for a in s.addresses.unwrap_or_default() {
            let pod = a.target_ref.and_then(|t| t.name).unwrap_or(a.ip);
            for p in s.ports.clone().unwrap_or_default() {
                v.push(format!("{pod}:{}", p.port));
            }
        }
    }
    v.sort();
    Ok(v)
}

async fn wait_endpoints(c: &Ctx, name: &str, want: &[&str]) -> Result<()> {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    wait_for(
        &format!("endpoints of {name} to be {want:?}"),
        CTRL_WAIT,
        || async {
            let got = endpoints_of(c, name).await?;
            if got == want {
                Ok(Some(()))
            } else {
                bail!("endpoints are {got:?}")
            }
        },
    )
    .await
}

fn port_pod(c: &Ctx, name: &str, labels: &Value, ports: &[i32]) -> Value {
    let ports: Vec<Value> = ports.iter().map(|p| json!({"containerPort": p})).collect();
    let mut p = pod(
        name,
        json!({"containers": [{"name": "pause", "image": c.env.images.pause, "ports": ports}]}),
    );
    p["metadata"]["labels"] = labels.clone();
    p
}

async fn svc_endpoints(c: Ctx) -> Result<()> {
    let labels = json!({"name-of-service": "endpoint-test2"});
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "endpoint-test2"},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 80}]},
    }))
    .await?;
    wait_endpoints(&c, "endpoint-test2", &[]).await?;
    c.create_pod(port_pod(&c, "pod1", &labels, &[80])).await?;
    c.wait_running("pod1").await?;
    wait_endpoints(&c, "endpoint-test2", &["pod1:80"]).await?;
    c.create_pod(port_pod(&c, "pod2", &labels, &[80])).await?;
    c.wait_running("pod2").await?;
    wait_endpoints(&c, "endpoint-test2", &["pod1:80", "pod2:80"]).await?;
    c.delete_pod("pod1").await?;
    wait_endpoints(&c, "endpoint-test2", &["pod2:80"]).await?;
    c.delete_pod("pod2").await?;
    wait_endpoints(&c, "endpoint-test2", &[]).await
}

async fn svc_endpoints_multi(c: Ctx) -> Result<()> {
    let labels = json!({"name-of-service": "multi-endpoint-test"});
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "multi-endpoint-test"},
        "spec": {"selector": labels, "ports": [
            {"name": "portname1", "port": 80, "targetPort": "svc1"},
            {"name": "portname2", "port": 81, "targetPort": "svc2"},
        ]},
    }))
    .await?;
    wait_endpoints(&c, "multi-endpoint-test", &[]).await?;
    let named = |name: &str, port: i32, pname: &str| {
        let mut p = pod(
            name,
            json!({"containers": [{"name": "pause", "image": c.env.images.pause,
            "ports": [{"name": pname, "containerPort": port}]}]}),
        );
        p["metadata"]["labels"] = labels.clone();
        p
    };
    c.create_pod(named("pod1", 100, "svc1")).await?;
    c.wait_running("pod1").await?;
    wait_endpoints(&c, "multi-endpoint-test", &["pod1:100"]).await?;
    c.create_pod(named("pod2", 101, "svc2")).await?;
    c.wait_running("pod2").await?;
    wait_endpoints(&c, "multi-endpoint-test", &["pod1:100", "pod2:101"]).await?;
    c.delete_pod("pod1").await?;
    wait_endpoints(&c, "multi-endpoint-test", &["pod2:101"]).await?;
    c.delete_pod("pod2").await?;
    wait_endpoints(&c, "multi-endpoint-test", &[]).await
}

// ------------------------------------------------ quota conditions/scopes

async fn rc_quota_condition(c: Ctx) -> Result<()> {
    c.create::<ResourceQuota>(json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "condition-test"},
        "spec": {"hard": {"pods": "2"}},
    }))
    .await?;
    wait_quota_used(&c, "condition-test", &[("pods", "0")]).await?;
    let labels = json!({"name": "condition-test"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    c.create::<ReplicationController>(rc_json("condition-test", 3, &labels, tpl))
        .await?;
    let api = c.api::<ReplicationController>();
    let failure = |rc: &ReplicationController| {
        rc.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|x| x.type_ == "ReplicaFailure" && x.status == "True")
            })
    };
    wait_for(
        "the rc to surface a ReplicaFailure condition",
        CTRL_WAIT,
        || async { Ok(failure(&api.get("condition-test").await?).then_some(())) },
    )
    .await?;
    api.patch(
        "condition-test",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await?;
    wait_for(
        "the ReplicaFailure condition to be removed",
        CTRL_WAIT,
        || async { Ok((!failure(&api.get("condition-test").await?)).then_some(())) },
    )
    .await
}

fn scoped_quota(name: &str, scope: &str, hard: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": name},
        "spec": {"hard": hard, "scopes": [scope]},
    })
}

async fn rq_besteffort(c: Ctx) -> Result<()> {
    c.create::<ResourceQuota>(scoped_quota(
        "quota-besteffort",
        "BestEffort",
        json!({"pods": "5"}),
    ))
    .await?;
    c.create::<ResourceQuota>(scoped_quota(
        "quota-not-besteffort",
        "NotBestEffort",
        json!({"pods": "5"}),
    ))
    .await?;
    wait_quota_used(&c, "quota-besteffort", &[("pods", "0")]).await?;
    wait_quota_used(&c, "quota-not-besteffort", &[("pods", "0")]).await?;
    c.create_pod(pod(
        "besteffort",
        json!({"containers": [{"name": "pause", "image": c.env.images.pause}]}),
    ))
    .await?;
    wait_quota_used(&c, "quota-besteffort", &[("pods", "1")]).await?;
    wait_quota_used(&c, "quota-not-besteffort", &[("pods", "0")]).await?;
    c.pods()
        .delete("besteffort", &DeleteParams::default().grace_period(0))
        .await?;
    wait_quota_used(&c, "quota-besteffort", &[("pods", "0")]).await?;
    c.create_pod(requests_pod(&c, "not-besteffort", "500m", "200Mi"))
        .await?;
    wait_quota_used(&c, "quota-not-besteffort", &[("pods", "1")]).await?;
    wait_quota_used(&c, "quota-besteffort", &[("pods", "0")]).await?;
    c.pods()
        .delete("not-besteffort", &DeleteParams::default().grace_period(0))
        .await?;
    wait_quota_used(&c, "quota-not-besteffort", &[("pods", "0")]).await
}

async fn rq_terminating(c: Ctx) -> Result<()> {
    let hard = json!({"pods": "5", "requests.cpu": "1", "requests.memory": "500Mi",
                      "limits.cpu": "2", "limits.memory": "1Gi"});
    c.create::<ResourceQuota>(scoped_quota(
        "quota-terminating",
        "Terminating",
        hard.clone(),
    ))
    .await?;
    c.create::<ResourceQuota>(scoped_quota(
        "quota-not-terminating",
        "NotTerminating",
        hard,
    ))
    .await?;
    wait_quota_used(&c, "quota-terminating", &[("pods", "0")]).await?;
    wait_quota_used(&c, "quota-not-terminating", &[("pods", "0")]).await?;
    let mk = |name: &str, deadline: Option<i64>| {
        let mut p = pod(
            name,
            json!({"containers": [{"name": "pause", "image": c.env.images.pause,
                "resources": {"requests": {"cpu": "500m", "memory": "200Mi"},
                              "limits": {"cpu": "1", "memory": "400Mi"}}}]}),
        );
        if let Some(d) = deadline {
            p["spec"]["activeDeadlineSeconds"] = json!(d);
        }
        p
    };
    let used = [
        ("pods", "1"),
        ("requests.cpu", "500m"),
        ("requests.memory", "200Mi"),
        ("limits.cpu", "1"),
        ("limits.memory", "400Mi"),
    ];
    c.create_pod(mk("test-pod", None)).await?;
    wait_quota_used(&c, "quota-not-terminating", &used).await?;
    wait_quota_used(
        &c,
        "quota-terminating",
        &[("pods", "0"), ("requests.cpu", "0")],
    )
    .await?;
    c.pods()
        .delete("test-pod", &DeleteParams::default().grace_period(0))
        .await?;
    wait_quota_used(
        &c,
        "quota-not-terminating",
        &[("pods", "0"), ("requests.cpu", "0")],
    )
    .await?;
    c.create_pod(mk("terminating-pod", Some(3600))).await?;
    wait_quota_used(&c, "quota-terminating", &used).await?;
    wait_quota_used(
        &c,
        "quota-not-terminating",
        &[("pods", "0"), ("requests.cpu", "0")],
    )
    .await?;
    c.pods()
        .delete("terminating-pod", &DeleteParams::default().grace_period(0))
        .await?;
    wait_quota_used(
        &c,
        "quota-terminating",
        &[("pods", "0"), ("requests.cpu", "0")],
    )
    .await
}

// ------------------------------------------------------ API lifecycles

async fn rc_lifecycle(c: Ctx) -> Result<()> {
    let labels = json!({"test-rc-static": "true"});
    let tpl = template(&labels, "rc-test", &c.env.images.httpd, json!({}));
    c.create::<ReplicationController>(rc_json("rc-test", 1, &labels, tpl))
        .await?;
    let api = c.api::<ReplicationController>();
    let ready_n = |n: i32| {
        let api = api.clone();
        async move {
            wait_for(
                &format!("rc to have {n} ready replicas"),
                CTRL_WAIT,
                || async {
                    let s = api.get("rc-test").await?.status.unwrap_or_default();
                    Ok(
                        (s.ready_replicas == Some(n) && s.available_replicas == Some(n))
                            .then_some(()),
                    )
                },
            )
            .await
        }
    };
    ready_n(1).await?;
    // Patch labels and the replica count.
    api.patch(
        "rc-test",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"rc": "patched"}}, "spec": {"replicas": 2}})),
    )
    .await?;
    ready_n(2).await?;
    // Patch the status subresource.
    let pa = api
        .patch_status(
            "rc-test",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"conditions": [{"type": "StatusPatched", "status": "True"}]}}),
            ),
        )
        .await
        .context("patch status")?;
    ensure!(
        has_condition(&serde_json::to_value(&pa)?, "StatusPatched"),
        "patched status lacks the condition"
    );
    // Scale through the subresource.
    let mut scale = api.get_scale("rc-test").await?;
    scale.spec.get_or_insert_with(Default::default).replicas = Some(3);
    api.replace_scale("rc-test", &PostParams::default(), &scale)
        .await?;
    ready_n(3).await?;
    // Find it across namespaces by label, then delete the collection.
    let l = c
        .all::<ReplicationController>()
        .list(&ListParams::default().labels("test-rc-static=true"))
        .await?;
    ensure!(
        l.items
            .iter()
            .any(|r| r.metadata.namespace.as_deref() == Some(&c.ns)
                && r.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("rc"))
                    .map(String::as_str)
                    == Some("patched")),
        "patched rc not listed by label"
    );
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("test-rc-static=true"),
    )
    .await?;
    wait_for("the rc to be gone", CTRL_WAIT, || async {
        Ok(api.get_opt("rc-test").await?.is_none().then_some(()))
    })
    .await
}

async fn deploy_lifecycle(c: Ctx) -> Result<()> {
    let labels = json!({"test-deployment-static": "true"});
    let tpl = template(&labels, "test-deployment", &c.env.images.httpd, json!({}));
    c.create::<Deployment>(deploy_json("test-deployment", 1, &labels, tpl))
        .await?;
    wait_deploy_complete(&c, "test-deployment").await?;
    let api = c.api::<Deployment>();
    api.patch(
        "test-deployment",
        &PatchParams::default(),
        &Patch::Strategic(
            json!({"metadata": {"labels": {"test-deployment": "patched"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "test-deployment", "image": c.env.images.httpd_new}]}}}}),
        ),
    )
    .await
    .context("patch")?;
    let d = wait_deploy_complete(&c, "test-deployment").await?;
    ensure!(
        d.spec.as_ref().and_then(|s| s.replicas) == Some(2),
        "patched replicas not 2"
    );
    let l = c
        .all::<Deployment>()
        .list(&ListParams::default().labels("test-deployment-static=true"))
        .await?;
    ensure!(
        l.items
            .iter()
            .any(|d| d.metadata.namespace.as_deref() == Some(&c.ns)),
        "deployment not listed by label"
    );
    // Update and read back the status.
    let mut d = api.get_status("test-deployment").await?;
    d.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new).push(from_json(json!({
        "type": "StatusUpdate", "status": "True", "reason": "E2E", "message": "Set from e2e test",
    }))?);
    let up = api
        .replace_status("test-deployment", &PostParams::default(), &d)
        .await
        .context("update status")?;
    ensure!(
        has_condition(&serde_json::to_value(&up)?, "StatusUpdate"),
        "updated status lacks the condition"
    );
    // Update again: one replica of the first image.
    let mut d = api.get("test-deployment").await?;
    if let Some(spec) = d.spec.as_mut() {
        spec.replicas = Some(1);
        if let Some(ps) = spec.template.spec.as_mut() {
            ps.containers[0].image = Some(c.env.images.httpd.clone());
        }
    }
    api.replace("test-deployment", &PostParams::default(), &d)
        .await
        .context("update")?;
    wait_deploy_complete(&c, "test-deployment").await?;
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("test-deployment-static=true"),
    )
    .await?;
    wait_for("the deployment to be gone", CTRL_WAIT, || async {
        Ok(api
            .get_opt("test-deployment")
            .await?
            .is_none()
            .then_some(()))
    })
    .await
}

// ------------------------------------------------ StatefulSet behaviour

/// A headless service and a StatefulSet of httpd pods whose readiness is
/// /index.html being served.
async fn make_probed_sts(
    c: &Ctx,
    name: &str,
    replicas: i32,
    labels: &Value,
    policy: &str,
) -> Result<()> {
    make_probed_sts_with(
        c,
        name,
        replicas,
        labels,
        json!({"podManagementPolicy": policy}),
    )
    .await
}

/// [`make_probed_sts`] with `extra` fields of the StatefulSet's spec.
async fn make_probed_sts_with(
    c: &Ctx,
    name: &str,
    replicas: i32,
    labels: &Value,
    extra: Value,
) -> Result<()> {
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "test"},
        "spec": {"clusterIP": "None", "selector": labels, "ports": [{"port": 80, "name": "http"}]},
    }))
    .await?;
    let tpl = template(
        labels,
        "webserver",
        &c.env.images.httpd,
        json!({"readinessProbe": {"httpGet": {"path": "/index.html", "port": 80},
                                  "periodSeconds": 1, "successThreshold": 1, "failureThreshold": 1}}),
    );
    let mut sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "serviceName": "test",
                 "selector": {"matchLabels": labels}, "template": tpl},
    });
    if let (Some(o), Some(e)) = (sts["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    c.create::<Sts>(sts).await?;
    Ok(())
}

async fn set_pod_ready(c: &Ctx, name: &str, healthy: bool) -> Result<()> {
    let cmd = if healthy {
        "mv -v /tmp/index.html /var/www/ || true"
    } else {
        "mv -v /var/www/index.html /tmp/ || true"
    };
    c.exec(name, None, &["sh", "-c", cmd]).await?;
    c.wait_pod(name, if healthy { "ready" } else { "unready" }, |p| {
        ready(p) == healthy
    })
    .await?;
    Ok(())
}

async fn scale_sts(c: &Ctx, name: &str, n: i32) -> Result<()> {
    let api: kube::Api<Sts> = c.api();
    api.patch_scale(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": n}})),
    )
    .await?;
    Ok(())
}

async fn sts_burst(c: Ctx) -> Result<()> {
    let labels = json!({"foo": "bar", "baz": "blah"});
    make_probed_sts(&c, "ss", 1, &labels, "Parallel").await?;
    wait_sts_ready(&c, "ss", 1).await?;
    set_pod_ready(&c, "ss-0", false).await?;
    // Burst scaling goes on although ss-0 is unhealthy.
    scale_sts(&c, "ss", 3).await?;
    let api: kube::Api<Sts> = c.api();
    wait_for("3 replicas with one unhealthy", CTRL_WAIT, || async {
        let ps = live_pods(&c, "foo=bar,baz=blah").await?;
        let s = api.get("ss").await?.status.unwrap_or_default();
        Ok(
            (ps.len() == 3 && ps.iter().all(|p| phase(p) == "Running") && s.replicas == 3)
                .then_some(()),
        )
    })
    .await?;
    set_pod_ready(&c, "ss-0", true).await?;
    wait_sts_ready(&c, "ss", 3).await?;
    for i in 0..3 {
        set_pod_ready(&c, &format!("ss-{i}"), false).await?;
    }
    // And scaling down goes on although every pod is unhealthy.
    scale_sts(&c, "ss", 0).await?;
    wait_for("the statefulset to scale down to 0", CTRL_WAIT, || async {
        let ps = c
            .pods()
            .list(&ListParams::default().labels("foo=bar,baz=blah"))
            .await?;
        Ok(ps.items.is_empty().then_some(()))
    })
    .await
}

/// Waits until the rollout is done: every pod on the update revision and
/// running `image`.
async fn wait_sts_rolled(c: &Ctx, name: &str, n: i32, image: &str) -> Result<()> {
    let api: kube::Api<Sts> = c.api();
    wait_for(
        &format!("statefulset {name} to roll out {image}"),
        Duration::from_secs(200),
        || async {
            let ss = api.get(name).await?;
            let s = ss.status.unwrap_or_default();
            let Some(upd) = s.update_revision.clone() else {
                return Ok(None);
            };
            if s.current_revision.as_deref() != Some(upd.as_str()) || s.ready_replicas != Some(n) {
                return Ok(None);
            }
            let ps = live_pods(c, "foo=bar,baz=blah").await?;
            let ok = ps.len() == n as usize
                && ps.iter().all(|p| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("controller-revision-hash"))
                        == Some(&upd)
                        && p.spec
                            .as_ref()
                            .and_then(|s| s.containers[0].image.as_deref())
                            == Some(image)
                        && ready(p)
                });
            Ok(ok.then_some(()))
        },
    )
    .await
}

async fn sts_rolling(c: Ctx) -> Result<()> {
    let labels = json!({"foo": "bar", "baz": "blah"});
    make_probed_sts(&c, "ss2", 3, &labels, "OrderedReady").await?;
    wait_sts_ready(&c, "ss2", 3).await?;
    let api: kube::Api<Sts> = c.api();
    let first = api
        .get("ss2")
        .await?
        .status
        .and_then(|s| s.current_revision);
    let set_image = |img: String| {
        let api = api.clone();
        async move {
            api.patch(
                "ss2",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "webserver", "image": img}]}}}})),
            )
            .await
        }
    };
    set_image(c.env.images.httpd_new.clone()).await?;
    wait_sts_rolled(&c, "ss2", 3, &c.env.images.httpd_new).await?;
    let second = api
        .get("ss2")
        .await?
        .status
        .and_then(|s| s.current_revision);
    ensure!(second != first, "the update made no new revision");
    // Roll back to the first template: the first revision again.
    set_image(c.env.images.httpd.clone()).await?;
    wait_sts_rolled(&c, "ss2", 3, &c.env.images.httpd).await?;
    let third = api
        .get("ss2")
        .await?
        .status
        .and_then(|s| s.current_revision);
    ensure!(
        third == first,
        "rollback revision {third:?} is not the first one {first:?}"
    );
    Ok(())
}

/// Names of the live pods of the test's ss StatefulSet, checked to be the
/// ordinals 0..n without gaps (ordered creation and deletion).
async fn ordered_pods(c: &Ctx, name: &str) -> Result<usize> {
    let ps = live_pods(c, "foo=bar,baz=blah").await?;
    let mut ords: Vec<usize> = ps
        .iter()
        .filter_map(|p| pod_name(p).strip_prefix(&format!("{name}-"))?.parse().ok())
        .collect();
    ords.sort();
    for (i, o) in ords.iter().enumerate() {
        ensure!(
            *o == i,
            "pods of {name} are not ordinals 0..{}: {ords:?}",
            ords.len()
        );
    }
    Ok(ords.len())
}

/// For `secs`, the StatefulSet keeps exactly `n` pods.
async fn sts_holds(c: &Ctx, name: &str, n: usize, secs: u64) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        let got = ordered_pods(c, name).await?;
        ensure!(
            got == n,
            "statefulset went from {n} to {got} pods with an unhealthy pod"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Waits until there are `n` pods, checking the ordinal order on the way.
async fn sts_ordered_to(c: &Ctx, name: &str, n: usize, want_ready: bool) -> Result<()> {
    wait_for(
        &format!("{name} to reach {n} pods in order"),
        CTRL_WAIT,
        || async {
            let got = ordered_pods(c, name).await?;
            if got != n {
                return Ok(None);
            }
            if want_ready {
                let ps = live_pods(c, "foo=bar,baz=blah").await?;
                return Ok(ps.iter().all(ready).then_some(()));
            }
            Ok(Some(()))
        },
    )
    .await
}

async fn sts_ordered_scaling(c: Ctx) -> Result<()> {
    let labels = json!({"foo": "bar", "baz": "blah"});
    make_probed_sts(&c, "ss", 1, &labels, "OrderedReady").await?;
    wait_sts_ready(&c, "ss", 1).await?;
    set_pod_ready(&c, "ss-0", false).await?;
    scale_sts(&c, "ss", 3).await?;
    // Scaling up halts while ss-0 is unhealthy.
    sts_holds(&c, "ss", 1, 10).await?;
    set_pod_ready(&c, "ss-0", true).await?;
    sts_ordered_to(&c, "ss", 3, true).await?;
    wait_sts_ready(&c, "ss", 3).await?;
    for i in 0..3 {
        set_pod_ready(&c, &format!("ss-{i}"), false).await?;
    }
    scale_sts(&c, "ss", 0).await?;
    // Scaling down halts while the pods are unhealthy.
    sts_holds(&c, "ss", 3, 10).await?;
    for i in (0..3).rev() {
        set_pod_ready(&c, &format!("ss-{i}"), true).await?;
    }
    sts_ordered_to(&c, "ss", 0, false).await
}

// ------------------------------------------------- EndpointSlice mirroring

type Slice = k8s_openapi::api::discovery::v1::EndpointSlice;

async fn wait_mirrored(c: &Ctx, svc: &str, ip: Option<&str>) -> Result<()> {
    let api = c.api::<Slice>();
    let sel = format!(
        "endpointslice.kubernetes.io/managed-by=endpointslicemirroring-controller.k8s.io,kubernetes.io/service-name={svc}"
    );
    wait_for(
        &format!("mirrored slices of {svc} with {ip:?}"),
        CTRL_WAIT,
        || async {
            let l = api.list(&ListParams::default().labels(&sel)).await?.items;
            match ip {
                None => Ok(l.is_empty().then_some(())),
                Some(ip) => {
                    let ok = l.len() == 1
                        && l[0].endpoints.len() == 1
                        && l[0].endpoints[0].addresses == [ip.to_string()]
                        && l[0].ports.as_ref().is_some_and(|ps| {
                            ps.len() == 1
                                && ps[0].port == Some(8000)
                                && ps[0].name.as_deref() == Some("example")
                        });
                    Ok(ok.then_some(()))
                }
            }
        },
    )
    .await
}

async fn slice_mirroring(c: Ctx) -> Result<()> {
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "example-custom-endpoints"},
        "spec": {"ports": [{"name": "example", "port": 80, "protocol": "TCP"}]},
    }))
    .await?;
    let eps = |ip: &str| {
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "example-custom-endpoints"},
            "subsets": [{"addresses": [{"ip": ip}],
                         "ports": [{"name": "example", "port": 8000, "protocol": "TCP"}]}],
        })
    };
    c.create::<Eps>(eps("10.1.2.3")).await?;
    wait_mirrored(&c, "example-custom-endpoints", Some("10.1.2.3")).await?;
    let api = c.api::<Eps>();
    let mut e = api.get("example-custom-endpoints").await?;
    e.subsets = from_json(eps("10.2.3.4")["subsets"].clone())?;
    api.replace("example-custom-endpoints", &PostParams::default(), &e)
        .await?;
    wait_mirrored(&c, "example-custom-endpoints", Some("10.2.3.4")).await?;
    api.delete("example-custom-endpoints", &DeleteParams::default())
        .await?;
    wait_mirrored(&c, "example-custom-endpoints", None).await
}

async fn deploy_rollover(c: Ctx) -> Result<()> {
    let labels = json!({"name": "rollover-pod"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    c.create::<ReplicaSet>(rs_json("test-rollover-controller", 1, &labels, tpl))
        .await?;
    wait_pods_ready(&c, "name=rollover-pod", 1).await?;
    // A deployment whose first rollout cannot become ready (the image does not exist).
    let tpl = template(
        &labels,
        "redis-slave",
        "rkube.local/e2e/does-not-exist:1",
        json!({}),
    );
    let mut d = deploy_json("test-rollover-deployment", 1, &labels, tpl);
    d["spec"]["minReadySeconds"] = json!(10);
    d["spec"]["strategy"] = json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}});
    c.create::<Deployment>(d).await?;
    let rss = c.api::<ReplicaSet>();
    wait_for("the deployment's first replicaset", CTRL_WAIT, || async {
        let l = rss.list(&ListParams::default()).await?.items;
        Ok((l.len() == 2).then_some(()))
    })
    .await?;
    // Roll over to a working image while the first rollout is stuck.
    c.api::<Deployment>()
        .patch(
            "test-rollover-deployment",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "redis-slave", "image": c.env.images.agnhost}]}}}})),
        )
        .await?;
    let d = wait_deploy_complete(&c, "test-rollover-deployment").await?;
    let l = rss.list(&ListParams::default()).await?.items;
    ensure!(l.len() == 3, "want 3 replicasets, got {}", l.len());
    let img_of = |r: &ReplicaSet| {
        r.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.containers[0].image.clone())
            .unwrap_or_default()
    };
    for r in &l {
        let n = r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        if img_of(r) == c.env.images.agnhost {
            ensure!(n == 1, "new replicaset has {n} replicas");
        } else {
            ensure!(
                n == 0,
                "old replicaset {:?} has {n} replicas",
                r.metadata.name
            );
        }
    }
    ensure!(
        d.status.and_then(|s| s.available_replicas) == Some(1),
        "not available"
    );
    Ok(())
}

// ------------------------------------------ Deployment proportional scaling

/// An image reference nothing can pull (a rollout to it never becomes
/// available); upstream uses "webserver:404".
const UNPULLABLE: &str = "rkube.local/e2e/does-not-exist:1";

fn rs_spec_replicas(r: &ReplicaSet) -> i32 {
    r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_image(r: &ReplicaSet) -> String {
    r.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Upstream's waitForReplicaSetDesiredReplicas: the controller observed
/// the current spec and made .status.replicas match it.
fn rs_desired(r: &ReplicaSet) -> bool {
    let s = r.status.clone().unwrap_or_default();
    s.replicas == rs_spec_replicas(r) && s.observed_generation >= r.metadata.generation
}

/// Waits until ReplicaSet `name` satisfies `ok` (described by `what`).
async fn wait_rs(
    c: &Ctx,
    name: &str,
    what: &str,
    ok: impl Fn(&ReplicaSet) -> bool,
) -> Result<ReplicaSet> {
    let api = c.api::<ReplicaSet>();
    let last = std::sync::Mutex::new(String::new());
    let res = wait_for(&format!("replicaset {name} {what}"), CTRL_WAIT, || {
        let api = api.clone();
        let (ok, last) = (&ok, &last);
        async move {
            let r = api.get(name).await?;
            if let Ok(mut l) = last.lock() {
                *l = format!(
                    "spec.replicas {}, status {:?}",
                    rs_spec_replicas(&r),
                    r.status
                );
            }
            Ok(ok(&r).then_some(r))
        }
    })
    .await;
    res.with_context(|| {
        format!(
            "last seen: {}",
            last.lock().map(|l| l.clone()).unwrap_or_default()
        )
    })
}

/// Waits until the deployment controller observed the latest spec.
async fn wait_deploy_observed(c: &Ctx, name: &str) -> Result<Deployment> {
    let api = c.api::<Deployment>();
    wait_for(
        &format!("deployment {name} to observe its latest generation"),
        CTRL_WAIT,
        || async {
            let d = api.get(name).await?;
            let og = d.status.as_ref().and_then(|s| s.observed_generation);
            Ok((og >= d.metadata.generation).then_some(d))
        },
    )
    .await
}

async fn deploy_proportional(c: Ctx) -> Result<()> {
    let name = "webserver-deployment";
    let labels = json!({"name": "httpd"});
    let tpl = template(&labels, "httpd", &c.env.images.httpd, json!({}));
    let mut d = deploy_json(name, 10, &labels, tpl);
    d["spec"]["strategy"] = json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}});
    c.create::<Deployment>(d).await?;
    wait_deploy_observed(&c, name).await?;
    wait_deploy_complete(&c, name).await?;
    let rss = c.api::<ReplicaSet>();
    let all = rss
        .list(&ListParams::default().labels("name=httpd"))
        .await?
        .items;
    ensure!(
        all.len() == 1,
        "want 1 replicaset after the first rollout, got {}",
        all.len()
    );
    let first = all[0].metadata.name.clone().unwrap_or_default();

    // A rollout to an image that cannot be pulled stays partial.
    let api = c.api::<Deployment>();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "httpd", "image": UNPULLABLE}]}}}})),
    )
    .await
    .context("update the deployment's image")?;
    wait_deploy_observed(&c, name).await?;
    // The first replicaset keeps replicas - maxUnavailable = 8 available.
    wait_rs(&c, &first, "to have 8 available replicas", |r| {
        r.status.as_ref().and_then(|s| s.available_replicas) == Some(8)
            && r.status.as_ref().and_then(|s| s.observed_generation) >= r.metadata.generation
    })
    .await?;
    wait_rs(&c, &first, "to have .spec.replicas = 8", |r| {
        rs_spec_replicas(r) == 8
    })
    .await?;
    wait_rs(&c, &first, "to have its desired replicas", rs_desired).await?;
    // The second gets replicas + maxSurge - 8 = 5, none available.
    let second = wait_for("the second rollout's replicaset", CTRL_WAIT, || async {
        let l = rss
            .list(&ListParams::default().labels("name=httpd"))
            .await?
            .items;
        Ok(l.into_iter().find(|r| rs_image(r) == UNPULLABLE))
    })
    .await?;
    let avail = second
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    ensure!(
        avail == 0,
        "the second replicaset has {avail} available replicas, want 0"
    );
    let second = second.metadata.name.clone().unwrap_or_default();
    wait_rs(&c, &second, "to have .spec.replicas = 5", |r| {
        rs_spec_replicas(r) == 5
    })
    .await?;
    wait_rs(&c, &second, "to have its desired replicas", rs_desired).await?;
    let d = api.get(name).await?;
    let avail = d
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    ensure!(
        avail >= 8,
        "the deployment has {avail} available replicas, want at least 8"
    );

    // Scaling to 30 mid-rollout spreads the 20 new replicas 8:5.
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 30}})),
    )
    .await
    .context("scale the deployment to 30")?;
    wait_rs(
        &c,
        &first,
        "to have .spec.replicas = 20 (8 + 20*8/13)",
        |r| rs_spec_replicas(r) == 20,
    )
    .await?;
    wait_rs(
        &c,
        &second,
        "to have .spec.replicas = 13 (5 + 20*5/13)",
        |r| rs_spec_replicas(r) == 13,
    )
    .await?;
    Ok(())
}

// ----------------------------- Job pod failure policy and pod disruptions

/// A ready node to pin pods to, by its kubernetes.io/hostname label.
async fn schedulable_node(c: &Ctx) -> Result<(String, String)> {
    let nodes = c.all::<Node>().list(&ListParams::default()).await?.items;
    let n = nodes
        .iter()
        .find(|n| crate::ctx::node_schedulable(n))
        .context("no ready schedulable node")?;
    let name = n.metadata.name.clone().unwrap_or_default();
    let host = n
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubernetes.io/hostname").cloned())
        .unwrap_or_else(|| name.clone());
    Ok((name, host))
}

/// Why the containers of the live pods of `selector` wait, if any does
/// with a reason other than ContainerCreating ("pod/container: reason:
/// message", joined).
async fn pods_waiting(c: &Ctx, selector: &str) -> Result<String> {
    let mut out = Vec::new();
    for p in live_pods(c, selector).await? {
        let statuses = p.status.as_ref().and_then(|s| s.container_statuses.clone());
        for cs in statuses.unwrap_or_default() {
            let Some(w) = cs.state.and_then(|s| s.waiting) else {
                continue;
            };
            let reason = w.reason.unwrap_or_default();
            if reason.is_empty() || reason == "ContainerCreating" {
                continue;
            }
            let msg = w.message.unwrap_or_default();
            out.push(format!("{}/{}: {reason}: {msg}", pod_name(&p), cs.name));
        }
    }
    Ok(out.join("; "))
}

async fn job_pfp_ignore_disruption(c: Ctx) -> Result<()> {
    let name = "evicted-pod-ignore-on-disruption-condition";
    let (_, host) = schedulable_node(&c).await?;
    // Each index marks itself on the node, then runs until evicted; its
    // replacement sees the mark and succeeds.
    let script = "if [ -r /data/foo-$JOB_COMPLETION_INDEX ]; then exit 0; \
                  else touch /data/foo-$JOB_COMPLETION_INDEX; sleep 1000000; fi";
    let mut j = job_json(
        &c,
        name,
        "Never",
        3,
        3,
        json!({"backoffLimit": 2, "completionMode": "Indexed", "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]}}),
        script,
    );
    let dir = format!(
        "/tmp/job-e2e/{}{}",
        crate::ctx::suffix(),
        crate::ctx::suffix()
    );
    let spec = &mut j["spec"]["template"]["spec"];
    spec["nodeSelector"] = json!({"kubernetes.io/hostname": host});
    spec["volumes"] =
        json!([{"name": "data", "hostPath": {"path": dir, "type": "DirectoryOrCreate"}}]);
    spec["containers"][0]["securityContext"] = json!({"privileged": true});
    spec["containers"][0]["readinessProbe"] = json!({"periodSeconds": 1, "exec": {
        "command": ["/bin/sh", "-c", "cat /data/foo-$JOB_COMPLETION_INDEX"]}});
    c.create::<Job>(j).await?;
    let api = c.api::<Job>();
    let seen = std::sync::Mutex::new(String::new());
    wait_for("the job's 3 pods to be ready", c.env.pod_start, || async {
        let j = api.get(name).await?;
        let waiting = pods_waiting(&c, &format!("job={name}")).await?;
        if let Ok(mut s) = seen.lock() {
            *s = waiting;
        }
        Ok((j.status.and_then(|s| s.ready) == Some(3)).then_some(()))
    })
    .await
    .map_err(|e| {
        let s = seen.lock().map(|s| s.clone()).unwrap_or_default();
        if s.is_empty() {
            e
        } else {
            e.context(format!("containers waiting: {s}"))
        }
    })?;
    let pods = wait_job_pods_running(&c, name, 3).await?;
    // Evict every pod at once; each must go away.
    let evictions = pods.iter().map(|p| {
        let c = &c;
        let pod = pod_name(p);
        async move {
            evicted(evict(c, &pod).await).with_context(|| format!("evict {pod}"))?;
            let pods = c.pods();
            wait_for(
                &format!("evicted pod {pod} to be gone"),
                c.env.pod_start,
                || async { Ok(pods.get_opt(&pod).await?.is_none().then_some(())) },
            )
            .await
        }
    });
    futures::future::try_join_all(evictions).await?;
    // The failures were disruptions: ignored, so the job completes.
    let j = wait_job_condition(&c, name, "Complete")
        .await
        .map_err(|e| {
            e.context("the job did not complete although its only failures were evictions")
        })?;
    let r = job_cond_reason(&j, "Complete");
    ensure!(
        r.as_deref() == Some("CompletionsReached"),
        "Complete reason {r:?}, want CompletionsReached"
    );
    let s = j.status.unwrap_or_default();
    ensure!(
        s.succeeded == Some(3),
        "{:?} pods succeeded, want 3",
        s.succeeded
    );
    Ok(())
}

// ----------------------------------------- StatefulSet: evicted pod

async fn sts_recreate_evicted(c: Ctx) -> Result<()> {
    let (node, _) = schedulable_node(&c).await?;
    let port = json!({"hostPort": 21017, "containerPort": 21017, "name": "conflict"});
    // A pod holding the host port on the node.
    let p = pod(
        "test-pod",
        json!({"nodeName": node, "containers": [
            {"name": "webserver", "image": c.env.images.httpd, "ports": [port]}]}),
    );
    c.create_pod(p).await?;
    c.wait_pod("test-pod", "Running", |p| phase(p) == "Running")
        .await?;
    // A StatefulSet whose pod wants the same host port on the same node.
    let labels = json!({"foo": "bar", "baz": "blah"});
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "test"},
        "spec": {"clusterIP": "None", "selector": labels, "ports": [{"port": 80, "name": "http"}]},
    }))
    .await?;
    let mut tpl = template(
        &labels,
        "webserver",
        &c.env.images.httpd,
        json!({"ports": [port]}),
    );
    tpl["spec"]["nodeName"] = json!(node);
    let pods = c.pods();
    let lp = ListParams::default().fields("metadata.name=ss-0");
    let rv = pods
        .list(&lp)
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    c.create::<Sts>(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "ss", "labels": labels},
        "spec": {"replicas": 1, "serviceName": "test",
                 "selector": {"matchLabels": labels}, "template": tpl},
    }))
    .await?;
    // The node rejects ss-0; the controller deletes it (and recreates it).
    let mut first_uid: Option<String> = None;
    let mut stuck: Option<String> = None;
    let wp = WatchParams::default().fields("metadata.name=ss-0");
    watch_until(
        &pods,
        &wp,
        &rv,
        Duration::from_secs(90),
        "ss-0 to be rejected by the node and deleted by the StatefulSet controller",
        |ev| match ev {
            WatchEvent::Deleted(_) => Ok(first_uid.is_some()),
            WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                first_uid = p.metadata.uid.clone();
                stuck = (phase(p) == "Running").then(|| {
                    "ss-0 runs on the node although test-pod holds its host port 21017 \
                     (the node admitted a host port conflict)"
                        .to_string()
                });
                Ok(false)
            }
            _ => Ok(false),
        },
    )
    .await
    .map_err(|e| match &stuck {
        Some(why) => e.context(why.clone()),
        None => e,
    })?;
    // Freed of the conflict, ss-0 is recreated and runs.
    pods.delete("test-pod", &DeleteParams::default().grace_period(0))
        .await
        .context("delete the pod holding the host port")?;
    wait_for("a recreated ss-0 to run", CTRL_WAIT, || async {
        let Some(p) = pods.get_opt("ss-0").await? else {
            return Ok(None);
        };
        if phase(&p) != "Running" {
            return Ok(None);
        }
        ensure!(
            p.metadata.uid != first_uid,
            "ss-0 runs but was never recreated (uid {:?})",
            p.metadata.uid
        );
        Ok(Some(()))
    })
    .await
}

// ------------------------- StatefulSet: canary and phased rolling updates

/// The live pods of StatefulSet `name`, by ordinal.
async fn sts_pods(c: &Ctx, name: &str, selector: &str) -> Result<Vec<Pod>> {
    let mut ps: Vec<(usize, Pod)> = live_pods(c, selector)
        .await?
        .into_iter()
        .filter_map(|p| {
            let ord = pod_name(&p)
                .strip_prefix(&format!("{name}-"))?
                .parse()
                .ok()?;
            Some((ord, p))
        })
        .collect();
    ps.sort_by_key(|(o, _)| *o);
    Ok(ps.into_iter().map(|(_, p)| p).collect())
}

fn revision_label(p: &Pod) -> String {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("controller-revision-hash").cloned())
        .unwrap_or_default()
}

fn pod_image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// (current, update) revisions of a StatefulSet's status.
fn sts_revisions(ss: &Sts) -> (String, String) {
    let s = ss.status.clone().unwrap_or_default();
    (
        s.current_revision.unwrap_or_default(),
        s.update_revision.unwrap_or_default(),
    )
}

/// Upstream's waitForStatus: the controller observed the latest spec.
async fn wait_sts_observed(c: &Ctx, name: &str) -> Result<Sts> {
    let api: kube::Api<Sts> = c.api();
    wait_for(
        &format!("statefulset {name} to observe its latest generation"),
        CTRL_WAIT,
        || async {
            let ss = api.get(name).await?;
            let og = ss.status.as_ref().and_then(|s| s.observed_generation);
            Ok((og >= ss.metadata.generation).then_some(ss))
        },
    )
    .await
}

/// Upstream's waitForPartitionedRollingUpdate: every pod from the
/// partition up is on the update revision (all of them, and the set's
/// current revision caught up, once the partition is 0).
async fn wait_partitioned(
    c: &Ctx,
    name: &str,
    selector: &str,
    partition: usize,
) -> Result<Vec<Pod>> {
    let api: kube::Api<Sts> = c.api();
    wait_for(
        &format!("statefulset {name} to roll out from ordinal {partition} up"),
        CTRL_WAIT,
        || async {
            let ss = api.get(name).await?;
            let replicas = ss.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) as usize;
            let (current, update) = sts_revisions(&ss);
            let pods = sts_pods(c, name, selector).await?;
            if pods.len() < replicas || (partition == 0 && current != update) {
                return Ok(None);
            }
            let rolled = pods[partition.min(pods.len())..]
                .iter()
                .all(|p| revision_label(p) == update);
            Ok(rolled.then_some(pods))
        },
    )
    .await
}

/// Pods below the partition run `old` on revision `current`, the others
/// `new` on revision `update`.
fn check_partition(
    pods: &[Pod],
    partition: usize,
    (old, new): (&str, &str),
    (current, update): (&str, &str),
) -> Result<()> {
    for (i, p) in pods.iter().enumerate() {
        let (image, rev) = if i < partition {
            (old, current)
        } else {
            (new, update)
        };
        ensure!(
            pod_image(p) == image,
            "pod {} has image {}, want {image} (partition {partition})",
            pod_name(p),
            pod_image(p)
        );
        ensure!(
            revision_label(p) == rev,
            "pod {} is on revision {}, want {rev} (partition {partition})",
            pod_name(p),
            revision_label(p)
        );
    }
    Ok(())
}

async fn set_partition(c: &Ctx, name: &str, partition: usize) -> Result<()> {
    let api: kube::Api<Sts> = c.api();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"partition": partition}}}})),
    )
    .await
    .with_context(|| format!("set the partition of {name} to {partition}"))?;
    Ok(())
}

async fn sts_canary(c: Ctx) -> Result<()> {
    let labels = json!({"foo": "bar", "baz": "blah"});
    let sel = "foo=bar,baz=blah";
    let name = "ss2";
    make_probed_sts_with(
        &c,
        name,
        3,
        &labels,
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 3}}}),
    )
    .await?;
    wait_pods_ready(&c, sel, 3).await?;
    let ss = wait_sts_observed(&c, name).await?;
    let (current, update) = sts_revisions(&ss);
    ensure!(
        !current.is_empty() && current == update,
        "current revision {current:?} differs from update revision {update:?} before any update"
    );
    for p in sts_pods(&c, name, sel).await? {
        ensure!(
            revision_label(&p) == current,
            "pod {} is on revision {}, want {current}",
            pod_name(&p),
            revision_label(&p)
        );
    }
    let old = c.env.images.httpd.clone();
    let new = c.env.images.httpd_new.clone();
    let api: kube::Api<Sts> = c.api();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "webserver", "image": new}]}}}})),
    )
    .await
    .context("update the template's image")?;
    let ss = wait_sts_observed(&c, name).await?;
    let (current, update) = sts_revisions(&ss);
    ensure!(
        current != update,
        "the template update made no new revision (current = update = {current:?})"
    );
    let images = (old.as_str(), new.as_str());
    let revs = (current.as_str(), update.as_str());
    // A partition above the replicas updates no pod.
    check_partition(&sts_pods(&c, name, sel).await?, 3, images, revs)
        .context("partition 3 of 3 replicas")?;
    // Canary: partition 2 updates only the last pod.
    set_partition(&c, name, 2).await?;
    let pods = wait_partitioned(&c, name, sel, 2).await?;
    check_partition(&pods, 2, images, revs).context("canary")?;
    // Deleted pods come back on the revision their ordinal is due.
    for i in [0, 2] {
        c.pods()
            .delete(
                &format!("{name}-{i}"),
                &DeleteParams::default().grace_period(0),
            )
            .await
            .with_context(|| format!("delete {name}-{i}"))?;
    }
    wait_pods_ready(&c, sel, 3).await?;
    check_partition(&sts_pods(&c, name, sel).await?, 2, images, revs)
        .context("pods recreated after deletion")?;
    // Phased roll out: lower the partition one ordinal at a time.
    for partition in (0..2).rev() {
        set_partition(&c, name, partition).await?;
        let pods = wait_partitioned(&c, name, sel, partition).await?;
        check_partition(&pods, partition, images, revs)
            .with_context(|| format!("phased update, partition {partition}"))?;
    }
    let (current, _) = sts_revisions(&api.get(name).await?);
    ensure!(
        current == update,
        "after the phased update the current revision is {current}, want {update}"
    );
    Ok(())
}
