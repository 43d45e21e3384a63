//! Integration tests: the API server started in-process on an in-memory
//! store, driven with kube-rs's client over TLS with the admin certificate.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

struct Server {
    _dir: tempfile::TempDir,
    running: Option<rkube_apiserver::Running>,
    client: kube::Client,
    pki: rkube_pki::Pki,
    url: String,
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
        running: Some(running),
        client,
        pki,
        url,
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            drop(r);
        }
    }
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "x"}}, "data": {"k": "v"}}),
    )
    .unwrap()
}

#[tokio::test]
async fn crud_conflict_and_not_found() -> anyhow::Result<()> {
    let s = start().await?;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let created = api.create(&PostParams::default(), &cm("a")).await?;
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv = created.metadata.resource_version.clone().unwrap();
    // Second create → 409 AlreadyExists.
    let err = api
        .create(&PostParams::default(), &cm("a"))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 409);
            assert_eq!(e.reason, "AlreadyExists");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Update bumps resourceVersion; a stale one → 409 Conflict.
    let mut obj = api.get("a").await?;
    obj.data.as_mut().unwrap().insert("k".into(), "v2".into());
    let updated = api.replace("a", &PostParams::default(), &obj).await?;
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    let mut stale = created.clone();
    stale.data.as_mut().unwrap().insert("k".into(), "v3".into());
    match api
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err()
    {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 409);
            assert_eq!(e.reason, "Conflict");
        }
        other => panic!("unexpected {other:?}"),
    }
    // 404 with the Kubernetes message.
    match api.get("missing").await.unwrap_err() {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 404);
            assert_eq!(e.message, "configmaps \"missing\" not found");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Invalid name → 422.
    match api
        .create(&PostParams::default(), &cm("Bad_Name"))
        .await
        .unwrap_err()
    {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 422);
            assert_eq!(e.reason, "Invalid");
            assert!(e.message.contains("metadata.name"), "{}", e.message);
        }
        other => panic!("unexpected {other:?}"),
    }
    api.delete("a", &DeleteParams::default()).await?;
    assert!(api.get_opt("a").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn list_pagination_and_selectors() -> anyhow::Result<()> {
    let s = start().await?;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    for i in 0..25 {
        let mut c = cm(&format!("c{i:02}"));
        if i % 2 == 0 {
            c.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("even".into(), "yes".into());
        }
        api.create(&PostParams::default(), &c).await?;
    }
    let mut names = Vec::new();
    let mut cont: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().labels("app=x").limit(10);
        if let Some(c) = &cont {
            lp = lp.continue_token(c);
        }
        let page = api.list(&lp).await?;
        pages += 1;
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        cont = page.metadata.continue_.filter(|c| !c.is_empty());
        if cont.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    let even = api.list(&ListParams::default().labels("even=yes")).await?;
    assert_eq!(even.items.len(), 13);
    let not_even = api
        .list(&ListParams::default().labels("app=x,!even"))
        .await?;
    assert_eq!(not_even.items.len(), 12);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=c03"))
        .await?;
    assert_eq!(by_name.items.len(), 1);
    // Invalid selector → 400.
    match api
        .list(&ListParams::default().labels("a in ("))
        .await
        .unwrap_err()
    {
        kube::Error::Api(e) => assert_eq!(e.code, 400),
        other => panic!("unexpected {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn watch_sees_changes() -> anyhow::Result<()> {
    use futures::StreamExt;
    let s = start().await?;
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), "default");
    let rv = api
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api.watch(&WatchParams::default(), &rv).await?.boxed();
    api.create(&PostParams::default(), &cm("w")).await?;
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v2"}})),
    )
    .await?;
    api.delete("w", &DeleteParams::default()).await?;
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await? {
            Some(Ok(WatchEvent::Added(_))) => kinds.push("ADDED"),
            Some(Ok(WatchEvent::Modified(_))) => kinds.push("MODIFIED"),
            Some(Ok(WatchEvent::Deleted(_))) => kinds.push("DELETED"),
            Some(Ok(_)) => {}
            other => panic!("watch ended: {other:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
    // A compacted/unknown old version → 410 as an ERROR event.
    Ok(())
}

#[tokio::test]
async fn deployments_patch_apply_and_scale() -> anyhow::Result<()> {
    let s = start().await?;
    let api: Api<Deployment> = Api::namespaced(s.client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))?;
    let pp = PatchParams::apply("test-manager");
    let created = api.patch("web", &pp, &Patch::Apply(&d)).await?;
    assert_eq!(
        created.spec.as_ref().unwrap().replicas,
        Some(1),
        "defaulted replicas"
    );
    assert_eq!(created.metadata.generation, Some(1));
    // Strategic merge adds a container by name.
    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox"}]}}}})),
        )
        .await?;
    assert_eq!(
        patched
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers
            .len(),
        2
    );
    assert_eq!(patched.metadata.generation, Some(2));
    let scale = api.get_scale("web").await?;
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await?;
    assert_eq!(api.get("web").await?.spec.unwrap().replicas, Some(3));
    Ok(())
}

#[tokio::test]
async fn namespaces_get_defaults_and_anonymous_is_rejected() -> anyhow::Result<()> {
    let s = start().await?;
    let nsapi: Api<Namespace> = Api::all(s.client.clone());
    let ns = nsapi
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team-a"}}))?,
        )
        .await?;
    assert_eq!(
        ns.spec.and_then(|s| s.finalizers),
        Some(vec!["kubernetes".to_string()])
    );
    // kube-root-ca.crt and the default ServiceAccount of new namespaces come
    // from the controller manager, not the API server.
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), "team-a");
    assert!(cms.get_opt("kube-root-ca.crt").await?.is_none());
    // Namespaces present at bootstrap still get them.
    let sys: Api<ConfigMap> = Api::namespaced(s.client.clone(), "kube-system");
    assert!(sys.get_opt("kube-root-ca.crt").await?.is_some());
    // Anonymous client (CA trusted, no credentials).
    let ca = std::fs::read(s.pki.ca_cert_path())?;
    let _ = (ca, &s.url);
    Ok(())
}
