//! Integration test: the scheduler against the real API server, started
//! in-process on an in-memory store and reached with kube-rs over TLS.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

struct Server {
    _dir: tempfile::TempDir,
    _running: rkube_apiserver::Running,
    client: kube::Client,
}

async fn start() -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let (pki, _) = rkube_pki::Pki::ensure(
        &dir.path().join("pki"),
        &rkube_pki::PkiOptions::new("node1"),
    )?;
    let store: Arc<dyn rkube_store::Store> = Arc::new(rkube_store::memory::MemoryStore::new());
    let cfg = rkube_apiserver::Config {
        bind: "127.0.0.1:0".parse()?,
        serving_cert_pem: rkube_pki::load_pem(&pki.apiserver_cert_path())?,
        serving_key_pem: rkube_pki::load_pem(&pki.apiserver_key_path())?,
        client_ca_pem: rkube_pki::load_pem(&pki.ca_cert_path())?,
        sa_signing_key_pem: rkube_pki::load_pem(&pki.sa_key_path())?,
        sa_public_key_pem: rkube_pki::load_pem(&pki.sa_pub_path())?,
        store,
        git_version: "v1.33.0-rkube.test".into(),
        sa_issuer: "https://kubernetes.default.svc.cluster.local".into(),
        kubelet_client_cert_pem: rkube_pki::load_pem(&pki.apiserver_kubelet_client_cert_path())?,
        kubelet_client_key_pem: rkube_pki::load_pem(&pki.apiserver_kubelet_client_key_path())?,
    };
    let mut bootstrap = Vec::new();
    for f in ["namespaces.yaml", "rbac.yaml", "priorityclasses.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../manifests")
            .join(f);
        let text = std::fs::read_to_string(&path)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc)?;
            if !v.is_null() {
                bootstrap.push(v);
            }
        }
    }
    let running = rkube_apiserver::start(cfg, bootstrap).await?;
    let url = format!("https://127.0.0.1:{}", running.local_addr.port());
    let kc = Kubeconfig::from_yaml(&pki.admin_kubeconfig("t", &url)?)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;
    Ok(Server {
        _dir: dir,
        _running: running,
        client,
    })
}

async fn ready_node(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let status = json!({"status": {
        "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "20Gi"},
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "20Gi"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok",
            "lastHeartbeatTime": "2025-01-01T00:00:00Z", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

fn pod(name: &str, extra: serde_json::Value) -> Pod {
    let mut v = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}});
    for (k, val) in extra.as_object().cloned().unwrap_or_default() {
        v["spec"][k] = val;
    }
    serde_json::from_value(v).unwrap()
}

/// Polls `f` every 50 ms until it yields `Some`, for at most `secs` seconds.
async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

#[tokio::test]
async fn binds_reports_unschedulable_and_retries_on_node_change() -> anyhow::Result<()> {
    let s = start().await?;
    ready_node(&s.client, "node1").await?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let cfg = rkube_scheduler::SchedulerConfig {
        scheduler_name: "default-scheduler".into(),
        resync: Duration::from_secs(30),
    };
    let sched = tokio::spawn(rkube_scheduler::run(s.client.clone(), cfg, rx));

    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("fits", json!({})))
        .await?;
    pods.create(
        &PostParams::default(),
        &pod("picky", json!({"nodeSelector": {"disk": "ssd"}})),
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod("other", json!({"schedulerName": "someone-else"})),
    )
    .await?;

    // The pod that fits is bound, and the API server marks it scheduled.
    let bound = eventually(10, || async {
        Ok(pods.get("fits").await.ok().filter(|p| node_of(p).is_some()))
    })
    .await?;
    assert_eq!(node_of(&bound).as_deref(), Some("node1"));
    let cond = bound
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .unwrap();
    assert!(cond
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.status == "True"));

    // The picky pod is marked unschedulable with upstream's message.
    let expected = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. \
                    preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
    let picky = eventually(10, || async {
        let p = pods.get("picky").await?;
        let c = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .cloned();
        Ok(c.filter(|c| c.status == "False").map(|c| (p, c)))
    })
    .await?;
    assert_eq!(picky.1.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(picky.1.message.as_deref(), Some(expected));
    assert!(node_of(&picky.0).is_none());

    // And a FailedScheduling event says the same.
    let events: Api<Event> = Api::namespaced(s.client.clone(), "default");
    let ev = eventually(10, || async {
        let list = events.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .find(|e| e.involved_object.name.as_deref() == Some("picky")))
    })
    .await?;
    assert_eq!(ev.reason.as_deref(), Some("FailedScheduling"));
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(ev.message.as_deref(), Some(expected));
    assert_eq!(ev.involved_object.kind.as_deref(), Some("Pod"));
    assert_eq!(ev.involved_object.uid, picky.0.metadata.uid);
    assert_eq!(
        ev.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("default-scheduler")
    );
    assert_eq!(ev.reporting_component.as_deref(), Some("default-scheduler"));
    assert_eq!(ev.count, Some(1));
    assert!(ev.first_timestamp.is_some() && ev.last_timestamp.is_some());

    // Labelling the node makes the picky pod fit: it is bound without waiting
    // for the 30 s resync.
    let nodes: Api<Node> = Api::all(s.client.clone());
    nodes
        .patch(
            "node1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"disk": "ssd"}}})),
        )
        .await?;
    let bound = eventually(10, || async {
        Ok(pods
            .get("picky")
            .await
            .ok()
            .filter(|p| node_of(p).is_some()))
    })
    .await?;
    let cond = bound
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .unwrap();
    assert!(cond
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.status == "True"));

    // A pod for another scheduler is left alone.
    assert!(node_of(&pods.get("other").await?).is_none());

    tx.send(true)?;
    tokio::time::timeout(Duration::from_secs(5), sched).await???;
    Ok(())
}

#[tokio::test]
async fn insufficient_cpu_then_freed_by_deletion() -> anyhow::Result<()> {
    let s = start().await?;
    ready_node(&s.client, "node1").await?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let sched = tokio::spawn(rkube_scheduler::run(
        s.client.clone(),
        rkube_scheduler::SchedulerConfig::default(),
        rx,
    ));
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let big = |name: &str| {
        let mut p = pod(name, json!({}));
        let c = &mut p.spec.as_mut().unwrap().containers[0];
        c.resources = Some(serde_json::from_value(json!({"requests": {"cpu": "1500m"}})).unwrap());
        p
    };
    pods.create(&PostParams::default(), &big("a")).await?;
    eventually(10, || async {
        Ok(pods.get("a").await.ok().filter(|p| node_of(p).is_some()))
    })
    .await?;
    pods.create(&PostParams::default(), &big("b")).await?;
    let msg = eventually(10, || async {
        let p = pods.get("b").await?;
        Ok(p.status
            .and_then(|s| s.conditions)
            .and_then(|cs| {
                cs.into_iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            })
            .and_then(|c| c.message))
    })
    .await?;
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: \
         1 No preemption victims found for incoming pod."
    );
    // Deleting the first pod frees the CPU: b gets bound.
    pods.delete("a", &Default::default()).await?;
    // Without a node agent the pod may linger with a deletionTimestamp; force it.
    let _ = pods
        .delete(
            "a",
            &kube::api::DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await;
    let b = eventually(15, || async {
        Ok(pods.get("b").await.ok().filter(|p| node_of(p).is_some()))
    })
    .await?;
    assert_eq!(node_of(&b).as_deref(), Some("node1"));
    tx.send(true)?;
    tokio::time::timeout(Duration::from_secs(5), sched).await???;
    Ok(())
}
