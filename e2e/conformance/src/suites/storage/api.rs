//! The storage APIs without a storage driver: StorageClass, CSIDriver,
//! CSINode, CSIStorageCapacity, VolumeAttachment, PersistentVolume(Claim)
//! lifecycles, and pods with inline CSI volumes (API operations only).

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSINode, CSIStorageCapacity, StorageClass, VolumeAttachment,
};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::json;

use futures::StreamExt as _;

use crate::conformance;
use crate::ctx::{from_json, wait_for, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("StorageClass, lifecycle", storageclass_lifecycle),
        conformance!("VolumeAttachment, lifecycle", va_lifecycle),
        conformance!(
            "VolumeAttachment, apply changes to a volumeattachment status",
            va_status
        ),
        conformance!(
            "CSIInlineVolumes should support Pods with inline volumes",
            csi_inline_pod
        ),
        conformance!("CSIDriver, lifecycle", csidriver_lifecycle),
        conformance!("CSINode, lifecycle", csinode_lifecycle),
        conformance!("CSIStorageCapacity API", csc_api),
        conformance!("PersistentVolumes(Claims), lifecycle", pv_lifecycle),
        conformance!(
            "PersistentVolumes(Claims), apply changes to a pv/pvc status",
            pv_status
        ),
    ]
}

/// Whether resourceVersion `a` is older than `b` (both decimal, as the
/// API server's resource versions are compared by upstream).
fn rv_older(a: &Option<String>, b: &Option<String>) -> Result<bool> {
    let parse = |v: &Option<String>| -> Result<u128> {
        v.as_deref()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("resourceVersion {v:?} is not a number"))
    };
    Ok(parse(a)? < parse(b)?)
}

/// Waits (30 s at most) until listing `api` with `selector` finds nothing.
async fn confirm_gone<K>(api: &Api<K>, selector: &str, what: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    wait_for(
        &format!("{what} deleted ({selector})"),
        Duration::from_secs(30),
        || async {
            let l = api.list(&ListParams::default().labels(selector)).await?;
            Ok(l.items.is_empty().then_some(()))
        },
    )
    .await
}

/// Create (generateName), get, patch a label, delete and confirm; create
/// a replacement, update a label, list by it, deleteCollection and confirm.
async fn storageclass_lifecycle(c: Ctx) -> Result<()> {
    let api = c.all::<StorageClass>();
    let sc: StorageClass = from_json(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"generateName": "e2e-"},
        "provisioner": "e2e-fake-provisioner",
    }))?;
    let created = api
        .create(&PostParams::default(), &sc)
        .await
        .context("create")?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let result = async {
        let got = api.get(&name).await.context("get")?;
        let patched = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"metadata": {"labels": {&name: "patched"}}})),
            )
            .await
            .context("patch")?;
        ensure!(
            patched
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(&name))
                .map(String::as_str)
                == Some("patched"),
            "patched label missing: {:?}",
            patched.metadata.labels
        );
        ensure!(
            rv_older(
                &got.metadata.resource_version,
                &patched.metadata.resource_version
            )?,
            "patch did not raise the resourceVersion ({:?} -> {:?})",
            got.metadata.resource_version,
            patched.metadata.resource_version
        );
        api.delete(&name, &DeleteParams::default())
            .await
            .context("delete")?;
        confirm_gone(&api, &format!("{name}=patched"), "StorageClass").await?;
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
    result?;

    let sc2: StorageClass = from_json(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"generateName": "e2e-v2-"},
        "provisioner": "e2e-fake-provisioner",
    }))?;
    let replacement = api
        .create(&PostParams::default(), &sc2)
        .await
        .context("create replacement")?;
    let name2 = replacement.metadata.name.clone().unwrap_or_default();
    let result = async {
        let mut cur = api.get(&name2).await?;
        cur.metadata.labels = Some([(name2.clone(), "updated".to_string())].into());
        let updated = api
            .replace(&name2, &PostParams::default(), &cur)
            .await
            .context("update")?;
        ensure!(
            updated
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(&name2))
                .map(String::as_str)
                == Some("updated"),
            "updated label missing: {:?}",
            updated.metadata.labels
        );
        let selector = format!("{name2}=updated");
        let list = api.list(&ListParams::default().labels(&selector)).await?;
        ensure!(
            list.items.len() == 1,
            "listing by {selector} found {} items",
            list.items.len()
        );
        api.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&selector),
        )
        .await
        .context("deleteCollection")?;
        confirm_gone(&api, &selector, "StorageClass").await
    }
    .await;
    if result.is_err() {
        let _ = api.delete(&name2, &DeleteParams::default()).await;
    }
    result
}

/// Some node's name (upstream picks a random one).
async fn some_node(c: &Ctx) -> Result<String> {
    let nodes = c.all::<Node>().list(&ListParams::default()).await?;
    let n = nodes.items.first().context("the cluster has no node")?;
    Ok(n.metadata.name.clone().unwrap_or_default())
}

/// Creates VolumeAttachment va-e2e-xxxxx (attacher e2e-test.storage.k8s.io,
/// PV pv-e2e-xxxxx, not attached) on a node; returns its name.
async fn create_va(c: &Ctx, api: &Api<VolumeAttachment>) -> Result<String> {
    let rand = crate::ctx::suffix();
    let name = format!("va-e2e-{rand}");
    let node = some_node(c).await?;
    let va: VolumeAttachment = from_json(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
        "metadata": {"name": name},
        "spec": {
            "attacher": "e2e-test.storage.k8s.io",
            "nodeName": node,
            "source": {"persistentVolumeName": format!("pv-e2e-{rand}")},
        },
        "status": {"attached": false},
    }))?;
    let created = api
        .create(&PostParams::default(), &va)
        .await
        .with_context(|| format!("create VolumeAttachment {name}"))?;
    ensure!(
        created.metadata.name.as_deref() == Some(name.as_str()),
        "created VolumeAttachment is named {:?}",
        created.metadata.name
    );
    Ok(name)
}

/// Whether `labels` has `key`=`value`.
fn has_label(
    labels: &Option<std::collections::BTreeMap<String, String>>,
    key: &str,
    value: &str,
) -> bool {
    labels.as_ref().and_then(|l| l.get(key)).map(String::as_str) == Some(value)
}

/// Create, get, patch a label, list by it, delete and confirm; create two
/// more, label both by update, deleteCollection and confirm.
async fn va_lifecycle(c: Ctx) -> Result<()> {
    let api = c.all::<VolumeAttachment>();
    let mut made = Vec::new();
    let result = async {
        let first = create_va(&c, &api).await?;
        made.push(first.clone());
        let got = api.get(&first).await.context("get")?;
        ensure!(
            got.metadata.name.as_deref() == Some(first.as_str()),
            "got {:?}",
            got.metadata.name
        );
        let patched = api
            .patch(
                &first,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {&first: "patched"}}})),
            )
            .await
            .context("patch")?;
        ensure!(
            has_label(&patched.metadata.labels, &first, "patched"),
            "patched label missing"
        );
        let selector = format!("{first}=patched");
        let list = api.list(&ListParams::default().labels(&selector)).await?;
        ensure!(
            list.items.len() == 1,
            "listing by {selector} found {} items",
            list.items.len()
        );
        api.delete(&first, &DeleteParams::default())
            .await
            .context("delete")?;
        confirm_gone(&api, &selector, "VolumeAttachment").await?;

        for _ in 0..2 {
            let name = create_va(&c, &api).await?;
            made.push(name.clone());
            let mut cur = api.get(&name).await?;
            cur.metadata.labels = Some([("va-e2e".to_string(), "updated".to_string())].into());
            let updated = api
                .replace(&name, &PostParams::default(), &cur)
                .await
                .context("update")?;
            ensure!(
                has_label(&updated.metadata.labels, "va-e2e", "updated"),
                "updated label missing"
            );
        }
        api.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("va-e2e=updated"),
        )
        .await
        .context("deleteCollection")?;
        confirm_gone(&api, "va-e2e=updated", "VolumeAttachments").await
    }
    .await;
    if result.is_err() {
        for n in &made {
            let _ = api.delete(n, &DeleteParams::default()).await;
        }
    }
    result
}

/// Create, patch a label, read status (not attached), patch status to
/// attached, update status to detached, delete and confirm.
async fn va_status(c: Ctx) -> Result<()> {
    let api = c.all::<VolumeAttachment>();
    let name = create_va(&c, &api).await?;
    let result = async {
        let patched = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {&name: "patched"}}})),
            )
            .await
            .context("patch")?;
        ensure!(
            has_label(&patched.metadata.labels, &name, "patched"),
            "patched label missing"
        );
        let attached = |va: &VolumeAttachment| va.status.as_ref().is_some_and(|s| s.attached);
        let read = api.get_status(&name).await.context("get status")?;
        ensure!(!attached(&read), "a new VolumeAttachment reads as attached");
        let p = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"attached": true}})),
            )
            .await
            .context("patch status")?;
        ensure!(attached(&p), "status patch did not set attached");
        let mut cur = api.get(&name).await?;
        if let Some(s) = cur.status.as_mut() {
            s.attached = false;
        }
        let u = api
            .replace_status(&name, &PostParams::default(), &cur)
            .await
            .context("update status")?;
        ensure!(!attached(&u), "status update did not clear attached");
        api.delete(&name, &DeleteParams::default())
            .await
            .context("delete")?;
        confirm_gone(&api, &format!("{name}=patched"), "VolumeAttachment").await
    }
    .await;
    if result.is_err() {
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
    result
}

/// Whether `r` is the API's AlreadyExists (409).
fn is_conflict<T>(r: &Result<T, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(e)) if e.code == 409)
}

/// After a delete, a get finds nothing (404) or an object being deleted.
async fn confirm_deleted<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.get(name).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(anyhow::Error::from(e).context(format!("get {name} after delete: want 404"))),
        Ok(o) if o.meta().deletion_timestamp.is_some() => Ok(()),
        Ok(_) => anyhow::bail!("{name} is neither gone nor being deleted"),
    }
}

/// A pod with two inline CSI volumes of a fake driver: create (a second
/// create conflicts), get, list, patch, delete. It never runs.
async fn csi_inline_pod(c: Ctx) -> Result<()> {
    let api = c.pods();
    let name = "pod-csi-inline-volumes";
    let p: Pod = from_json(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "volumes": [
                {"name": "csi-inline-vol1", "csi": {"driver": "e2e.example.com"}},
                {"name": "csi-inline-vol2", "csi": {"driver": "e2e.example.com", "fsType": "ext4", "readOnly": true}},
            ],
            "containers": [{
                "name": name,
                "image": c.env.images.busybox,
                "command": ["sh", "-c", "ls /mnt/*"],
                "volumeMounts": [
                    {"name": "csi-inline-vol1", "mountPath": "/mnt/vol1"},
                    {"name": "csi-inline-vol2", "mountPath": "/mnt/vol2"},
                ],
            }],
        },
    }))?;
    let created = api
        .create(&PostParams::default(), &p)
        .await
        .context("create")?;
    let again = api.create(&PostParams::default(), &p).await;
    ensure!(
        is_conflict(&again),
        "a second create: want 409, got {again:?}"
    );
    let got = api.get(name).await.context("get")?;
    ensure!(
        got.metadata.uid == created.metadata.uid,
        "get returned another pod"
    );
    let list = api.list(&ListParams::default()).await.context("list")?;
    ensure!(
        list.items.len() == 1,
        "list has {} items, want 1",
        list.items.len()
    );
    let patched = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})),
        )
        .await
        .context("patch")?;
    ensure!(
        has_label(&patched.metadata.annotations, "patched", "true"),
        "patched annotation missing"
    );
    api.delete(name, &DeleteParams::default())
        .await
        .context("delete")?;
    confirm_deleted(&api, name).await
}

/// Two CSIDrivers (ephemeral; persistent+ephemeral) with a common label:
/// create (again conflicts), get, patch and update labels, list by label,
/// delete one, deleteCollection the other.
async fn csidriver_lifecycle(c: Ctx) -> Result<()> {
    let api = c.all::<CSIDriver>();
    let unique = c.ns.clone();
    let driver = |name: &str, modes: &[&str]| -> Result<CSIDriver> {
        from_json(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
            "metadata": {"name": name, "labels": {"e2e-test": unique}},
            "spec": {"volumeLifecycleModes": modes, "fsGroupPolicy": "ReadWriteOnceWithFSType"},
        }))
    };
    let n1 = format!("inline-driver-{}", super::uid());
    let n2 = format!("inline-driver-{}", super::uid());
    let d1 = driver(&n1, &["Ephemeral"])?;
    let d2 = driver(&n2, &["Persistent", "Ephemeral"])?;
    let result = async {
        let c1 = api
            .create(&PostParams::default(), &d1)
            .await
            .context("create the first")?;
        let c2 = api
            .create(&PostParams::default(), &d2)
            .await
            .context("create the second")?;
        let again = api.create(&PostParams::default(), &d1).await;
        ensure!(
            is_conflict(&again),
            "a second create: want 409, got {again:?}"
        );
        let g1 = api.get(&n1).await?;
        ensure!(
            g1.metadata.uid == c1.metadata.uid,
            "get {n1} returned another object"
        );
        let g2 = api.get(&n2).await?;
        ensure!(
            g2.metadata.uid == c2.metadata.uid,
            "get {n2} returned another object"
        );
        let patched = api
            .patch(
                &n2,
                &PatchParams::default(),
                &Patch::Strategic(json!({"metadata": {"labels": {&n2: "patched"}}})),
            )
            .await
            .context("patch")?;
        ensure!(
            has_label(&patched.metadata.labels, &n2, "patched"),
            "patched label missing"
        );
        let mut cur = api.get(&n2).await?;
        cur.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(n2.clone(), "updated".into());
        let updated = api
            .replace(&n2, &PostParams::default(), &cur)
            .await
            .context("update")?;
        ensure!(
            has_label(&updated.metadata.labels, &n2, "updated"),
            "updated label missing"
        );
        let selector = format!("e2e-test={unique}");
        let list = api.list(&ListParams::default().labels(&selector)).await?;
        ensure!(
            list.items.len() == 2,
            "listing by {selector} found {} items, want 2",
            list.items.len()
        );
        api.delete(&n1, &DeleteParams::default())
            .await
            .context("delete the first")?;
        confirm_deleted(&api, &n1).await?;
        api.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&format!("{n2}=updated")),
        )
        .await
        .context("deleteCollection")?;
        confirm_deleted(&api, &n2).await
    }
    .await;
    if result.is_err() {
        let _ = api.delete(&n1, &DeleteParams::default()).await;
        let _ = api.delete(&n2, &DeleteParams::default()).await;
    }
    result
}

/// Create, get, patch a label, list by it, delete and confirm; create a
/// replacement, get, update a label, deleteCollection and confirm.
async fn csinode_lifecycle(c: Ctx) -> Result<()> {
    let api = c.all::<CSINode>();
    let new = |name: &str| -> Result<CSINode> {
        from_json(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
            "metadata": {"name": name},
            "spec": {"drivers": []},
        }))
    };
    let first = format!("e2e-csinode-{}", crate::ctx::suffix());
    let second = format!("e2e-csinode-{}", crate::ctx::suffix());
    let result = async {
        let created = api
            .create(&PostParams::default(), &new(&first)?)
            .await
            .context("create")?;
        let got = api.get(&first).await.context("get")?;
        ensure!(
            got.metadata.name == created.metadata.name,
            "get returned {:?}",
            got.metadata.name
        );
        let patched = api
            .patch(
                &first,
                &PatchParams::default(),
                &Patch::Strategic(json!({"metadata": {"labels": {&first: "patched"}}})),
            )
            .await
            .context("patch")?;
        ensure!(
            has_label(&patched.metadata.labels, &first, "patched"),
            "patched label missing"
        );
        let selector = format!("{first}=patched");
        let list = api.list(&ListParams::default().labels(&selector)).await?;
        ensure!(
            list.items.len() == 1,
            "listing by {selector} found {} items",
            list.items.len()
        );
        api.delete(&first, &DeleteParams::default())
            .await
            .context("delete")?;
        confirm_gone(&api, &selector, "CSINode").await?;

        api.create(&PostParams::default(), &new(&second)?)
            .await
            .context("create the replacement")?;
        let mut cur = api.get(&second).await.context("get the replacement")?;
        ensure!(
            cur.metadata.name.as_deref() == Some(second.as_str()),
            "get returned {:?}",
            cur.metadata.name
        );
        cur.metadata.labels = Some([(second.clone(), "updated".to_string())].into());
        let updated = api
            .replace(&second, &PostParams::default(), &cur)
            .await
            .context("update")?;
        ensure!(
            has_label(&updated.metadata.labels, &second, "updated"),
            "updated label missing"
        );
        let selector = format!("{second}=updated");
        api.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&selector),
        )
        .await
        .context("deleteCollection")?;
        confirm_gone(&api, &selector, "CSINode").await
    }
    .await;
    if result.is_err() {
        let _ = api.delete(&first, &DeleteParams::default()).await;
        let _ = api.delete(&second, &DeleteParams::default()).await;
    }
    result
}

/// GET `path` from the API server as JSON.
async fn get_json(c: &Ctx, path: &str) -> Result<serde_json::Value> {
    let req = kube::core::Request::new("")
        .get(path.trim_start_matches('/'), &Default::default())
        .context("build request")?;
    let text = c
        .client
        .request_text(req)
        .await
        .with_context(|| format!("GET {path}"))?;
    serde_json::from_str(&text).with_context(|| format!("GET {path} is not JSON"))
}

/// Waits (30 s at most) for an ADDED event, or a MODIFIED one whose
/// object carries annotation patched or updated = "true" (upstream stops
/// at the first of these).
async fn expect_watch_event<S>(what: &str, mut events: S) -> Result<()>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<CSIStorageCapacity>>> + Unpin,
{
    use futures::StreamExt;
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = events.next().await {
            match ev? {
                WatchEvent::Added(_) => return Ok(true),
                WatchEvent::Modified(o) => {
                    let a = &o.metadata.annotations;
                    if has_label(a, "patched", "true") || has_label(a, "updated", "true") {
                        return Ok(true);
                    }
                }
                _ => {}
            }
        }
        Ok::<bool, anyhow::Error>(false)
    })
    .await
    .with_context(|| format!("{what}: timed out waiting for a watch event"))??;
    ensure!(seen, "{what}: the watch closed early");
    Ok(())
}

/// Discovery of storage.k8s.io/v1 csistoragecapacities; create (again
/// conflicts), watch (in the namespace and across), get, list, patch,
/// update, delete, deleteCollection.
async fn csc_api(c: Ctx) -> Result<()> {
    let groups = get_json(&c, "/apis").await?;
    let has_v1 = |versions: &serde_json::Value| {
        versions
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["version"] == "v1"))
    };
    ensure!(
        groups["groups"].as_array().is_some_and(|g| g
            .iter()
            .any(|g| g["name"] == "storage.k8s.io" && has_v1(&g["versions"]))),
        "/apis lacks storage.k8s.io/v1"
    );
    let group = get_json(&c, "/apis/storage.k8s.io").await?;
    ensure!(
        has_v1(&group["versions"]),
        "/apis/storage.k8s.io lacks v1: {group}"
    );
    let resources = get_json(&c, "/apis/storage.k8s.io/v1").await?;
    ensure!(
        resources["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["name"] == "csistoragecapacities")),
        "/apis/storage.k8s.io/v1 lacks csistoragecapacities"
    );

    let api = c.api::<CSIStorageCapacity>();
    let all = c.all::<CSIStorageCapacity>();
    let unique = c.ns.clone();
    let selector = format!("test={unique}");
    let new = |sfx: &str| -> Result<CSIStorageCapacity> {
        from_json(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity",
            "metadata": {"name": format!("{unique}{sfx}"), "labels": {"test": unique}},
            "storageClassName": "e2e.example.com",
        }))
    };
    let csc1 = new("-csc1")?;
    let created = api
        .create(&PostParams::default(), &csc1)
        .await
        .context("create")?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let again = api.create(&PostParams::default(), &csc1).await;
    ensure!(
        is_conflict(&again),
        "a second create: want 409, got {again:?}"
    );
    api.create(&PostParams::default(), &new("-csc2")?)
        .await
        .context("create csc2")?;

    let wp = WatchParams::default().labels(&selector);
    let w_ns = api
        .watch(&wp, "0")
        .await
        .context("watch in the namespace")?
        .boxed();
    let w_all = all
        .watch(&wp, "0")
        .await
        .context("watch across namespaces")?
        .boxed();
    api.create(&PostParams::default(), &new("-csc3")?)
        .await
        .context("create csc3")?;

    let got = api.get(&name).await.context("get")?;
    ensure!(
        got.metadata.uid == created.metadata.uid,
        "get returned another object"
    );
    let lp = ListParams::default().labels(&selector);
    let n = api.list(&lp).await.context("list")?.items.len();
    ensure!(n == 3, "list in the namespace: {n} items, want 3");
    let n = all
        .list(&lp)
        .await
        .context("list across namespaces")?
        .items
        .len();
    ensure!(n == 3, "list across namespaces: {n} items, want 3");
    let patched = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})),
        )
        .await
        .context("patch")?;
    ensure!(
        has_label(&patched.metadata.annotations, "patched", "true"),
        "patched annotation missing"
    );
    let mut to_update = patched.clone();
    to_update
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("updated".into(), "true".into());
    let updated = api
        .replace(&name, &PostParams::default(), &to_update)
        .await
        .context("update")?;
    ensure!(
        has_label(&updated.metadata.annotations, "updated", "true"),
        "updated annotation missing"
    );
    expect_watch_event("in namespace", w_ns).await?;
    expect_watch_event("across namespace", w_all).await?;

    api.delete(&name, &DeleteParams::default())
        .await
        .context("delete")?;
    let (min, mut max) = (2, 2);
    match api.get(&name).await {
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(anyhow::Error::from(e).context("get after delete: want 404")),
        Ok(o)
            if o.metadata.deletion_timestamp.is_some()
                && o.metadata
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| !f.is_empty()) =>
        {
            max += 1
        }
        Ok(_) => anyhow::bail!("{name} is neither deleted nor held by a finalizer"),
    }
    let n = api.list(&lp).await?.items.len();
    ensure!(
        (min..=max).contains(&n),
        "after delete: {n} objects remain, want {min}..={max}"
    );
    api.delete_collection(&DeleteParams::default(), &lp)
        .await
        .context("deleteCollection")?;
    for o in api.list(&lp).await?.items {
        ensure!(
            o.metadata.deletion_timestamp.is_some()
                && o.metadata
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| !f.is_empty()),
            "{:?} survived deleteCollection without a finalizer",
            o.metadata.name
        );
    }
    Ok(())
}

/// Upstream's PV pool label: e2e-pv-pool=<namespace>.
fn pool_selector(c: &Ctx) -> String {
    format!("e2e-pv-pool={}", c.ns)
}

/// Creates one CSI PV (driver `driver`, handle `handle`, 2Gi, class = the
/// namespace, pool label) and one claim of that class; returns their names.
async fn create_pv_pvc(c: &Ctx, driver: &str, handle: &str) -> Result<(String, String)> {
    let pv: PersistentVolume = from_json(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"generateName": format!("{}-", c.ns), "labels": {"e2e-pv-pool": c.ns}},
        "spec": {
            "capacity": {"storage": "2Gi"},
            "accessModes": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": c.ns,
            "csi": {"driver": driver, "volumeHandle": handle},
        },
    }))?;
    let pv = c
        .all::<PersistentVolume>()
        .create(&PostParams::default(), &pv)
        .await
        .context("create PV")?;
    let pvc: PersistentVolumeClaim = from_json(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"generateName": "pvc-"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "2Gi"}},
            "storageClassName": c.ns,
        },
    }))?;
    let pvc = c
        .api::<PersistentVolumeClaim>()
        .create(&PostParams::default(), &pvc)
        .await
        .context("create PVC")?;
    Ok((
        pv.metadata.name.unwrap_or_default(),
        pvc.metadata.name.unwrap_or_default(),
    ))
}

/// Deletes the test's PVs (the claims go with the namespace).
async fn cleanup_pvs(c: &Ctx) {
    let _ = c
        .all::<PersistentVolume>()
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&pool_selector(c)),
        )
        .await;
}

/// PV and claim: list, patch labels, get, delete and confirm; again:
/// update labels, list claims across namespaces, deleteCollection both.
async fn pv_lifecycle(c: Ctx) -> Result<()> {
    let result = pv_lifecycle_steps(&c).await;
    cleanup_pvs(&c).await;
    result
}

async fn pv_lifecycle_steps(c: &Ctx) -> Result<()> {
    let pvs = c.all::<PersistentVolume>();
    let pvcs = c.api::<PersistentVolumeClaim>();
    let driver = format!("inline-driver-{}", super::uid());
    create_pv_pvc(c, &driver, "e2e-conformance").await?;
    let pool = ListParams::default().labels(&pool_selector(c));
    let list = pvs.list(&pool).await.context("list PVs")?;
    ensure!(
        list.items.len() == 1,
        "{} PVs in the pool, want 1",
        list.items.len()
    );
    let pv = list.items[0].clone();
    let list = pvcs
        .list(&ListParams::default())
        .await
        .context("list PVCs")?;
    ensure!(
        list.items.len() == 1,
        "{} PVCs in the namespace, want 1",
        list.items.len()
    );
    let pvc = list.items[0].clone();
    let pv_name = pv.metadata.name.clone().unwrap_or_default();
    let pvc_name = pvc.metadata.name.clone().unwrap_or_default();
    ensure!(
        pv.metadata.resource_version.is_some() && pvc.metadata.resource_version.is_some(),
        "no resourceVersion"
    );

    let patched_pv = pvs
        .patch(
            &pv_name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {&pv_name: "patched"}}})),
        )
        .await
        .context("patch PV")?;
    ensure!(
        has_label(&patched_pv.metadata.labels, &pv_name, "patched"),
        "PV patched label missing"
    );
    ensure!(
        rv_older(
            &pv.metadata.resource_version,
            &patched_pv.metadata.resource_version
        )?,
        "PV patch kept the resourceVersion"
    );
    let patched_pvc = pvcs
        .patch(
            &pvc_name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {&pvc_name: "patched"}}})),
        )
        .await
        .context("patch PVC")?;
    ensure!(
        has_label(&patched_pvc.metadata.labels, &pvc_name, "patched"),
        "PVC patched label missing"
    );
    ensure!(
        rv_older(
            &pvc.metadata.resource_version,
            &patched_pvc.metadata.resource_version
        )?,
        "PVC patch kept the resourceVersion"
    );
    let got = pvs.get(&pv_name).await.context("get PV")?;
    ensure!(
        got.metadata.uid == patched_pv.metadata.uid,
        "get PV returned another object"
    );
    let got = pvcs.get(&pvc_name).await.context("get PVC")?;
    ensure!(
        got.metadata.uid == patched_pvc.metadata.uid,
        "get PVC returned another object"
    );

    pvcs.delete(&pvc_name, &DeleteParams::default())
        .await
        .context("delete PVC")?;
    wait_for("the PVC deleted", Duration::from_secs(30), || async {
        Ok(pvcs
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await?;
    pvs.delete(&pv_name, &DeleteParams::default())
        .await
        .context("delete PV")?;
    confirm_gone(&pvs, &pool_selector(c), "PV").await?;

    let (pv_name, pvc_name) = create_pv_pvc(c, &driver, "e2e-conformance").await?;
    let mut cur = pvs.get(&pv_name).await?;
    cur.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(pv_name.clone(), "updated".into());
    let updated = pvs
        .replace(&pv_name, &PostParams::default(), &cur)
        .await
        .context("update PV")?;
    ensure!(
        has_label(&updated.metadata.labels, &pv_name, "updated"),
        "PV updated label missing"
    );
    let mut cur = pvcs.get(&pvc_name).await?;
    cur.metadata.labels = Some([(pvc_name.clone(), "updated".to_string())].into());
    let updated = pvcs
        .replace(&pvc_name, &PostParams::default(), &cur)
        .await
        .context("update PVC")?;
    ensure!(
        has_label(&updated.metadata.labels, &pvc_name, "updated"),
        "PVC updated label missing"
    );
    let pvc_sel = format!("{pvc_name}=updated");
    let n = c
        .all::<PersistentVolumeClaim>()
        .list(&ListParams::default().labels(&pvc_sel))
        .await
        .context("list PVCs in all namespaces")?
        .items
        .len();
    ensure!(n == 1, "{n} PVCs labelled {pvc_sel}, want 1");
    pvcs.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(&pvc_sel),
    )
    .await
    .context("deleteCollection PVCs")?;
    confirm_gone(&pvcs, &pvc_sel, "PVC").await?;
    let pv_sel = format!("{pv_name}=updated");
    pvs.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(&pv_sel),
    )
    .await
    .context("deleteCollection PVs")?;
    confirm_gone(&pvs, &pv_sel, "PV").await
}

/// PV and claim: read both statuses (valid phases), patch and update the
/// claim's conditions and the PV's reason/message through /status.
async fn pv_status(c: Ctx) -> Result<()> {
    let result = pv_status_steps(&c).await;
    cleanup_pvs(&c).await;
    result
}

async fn pv_status_steps(c: &Ctx) -> Result<()> {
    let pvs = c.all::<PersistentVolume>();
    let pvcs = c.api::<PersistentVolumeClaim>();
    create_pv_pvc(
        c,
        &format!("e2e-driver-{}", super::uid()),
        "e2e-status-conformance",
    )
    .await?;
    let list = pvs
        .list(&ListParams::default().labels(&pool_selector(c)))
        .await
        .context("list PVs")?;
    ensure!(
        list.items.len() == 1,
        "{} PVs in the pool, want 1",
        list.items.len()
    );
    let pv_name = list.items[0].metadata.name.clone().unwrap_or_default();
    let list = pvcs
        .list(&ListParams::default())
        .await
        .context("list PVCs")?;
    ensure!(
        list.items.len() == 1,
        "{} PVCs in the namespace, want 1",
        list.items.len()
    );
    let pvc_name = list.items[0].metadata.name.clone().unwrap_or_default();

    let pvc = pvcs
        .get_status(&pvc_name)
        .await
        .context("read PVC status")?;
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    ensure!(
        matches!(phase.as_str(), "Pending" | "Bound"),
        "PVC phase {phase:?}"
    );
    let pv = pvs.get_status(&pv_name).await.context("read PV status")?;
    let phase = pv
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    ensure!(
        matches!(phase.as_str(), "Available" | "Bound" | "Pending"),
        "PV phase {phase:?}"
    );

    let has_cond = |p: &PersistentVolumeClaim, t: &str, reason: &str| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == t
                        && c.reason.as_deref().unwrap_or_default().contains(reason)
                        && c.message
                            .as_deref()
                            .unwrap_or_default()
                            .contains("Set from e2e test")
                })
            })
    };
    let patched = pvcs
        .patch_status(
            &pvc_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "StatusPatched", "status": "True", "reason": "E2E patchedStatus", "message": "Set from e2e test"}]}})),
        )
        .await
        .context("patch PVC status")?;
    ensure!(
        has_cond(&patched, "StatusPatched", "E2E patchedStatus"),
        "patched PVC condition missing: {:?}",
        patched.status
    );
    let patched = pvs
        .patch_status(
            &pv_name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"message": "StatusPatched", "reason": "E2E patchStatus"}}),
            ),
        )
        .await
        .context("patch PV status")?;
    let st = patched.status.clone().unwrap_or_default();
    ensure!(
        st.reason.as_deref() == Some("E2E patchStatus")
            && st.message.as_deref() == Some("StatusPatched"),
        "patched PV status: {st:?}"
    );

    let mut cur = pvcs.get(&pvc_name).await?;
    let status = cur.status.get_or_insert_with(Default::default);
    status.conditions.get_or_insert_with(Vec::new).push(from_json(json!({
        "type": "StatusUpdated", "status": "True", "reason": "E2E updateStatus", "message": "Set from e2e test",
    }))?);
    let updated = pvcs
        .replace_status(&pvc_name, &PostParams::default(), &cur)
        .await
        .context("update PVC status")?;
    ensure!(
        has_cond(&updated, "StatusUpdated", "E2E updateStatus"),
        "updated PVC condition missing: {:?}",
        updated.status
    );
    let mut cur = pvs.get(&pv_name).await?;
    let status = cur.status.get_or_insert_with(Default::default);
    status.reason = Some("E2E updateStatus".into());
    status.message = Some("StatusUpdated".into());
    let updated = pvs
        .replace_status(&pv_name, &PostParams::default(), &cur)
        .await
        .context("update PV status")?;
    let st = updated.status.unwrap_or_default();
    ensure!(
        st.reason.as_deref() == Some("E2E updateStatus")
            && st.message.as_deref() == Some("StatusUpdated"),
        "updated PV status: {st:?}"
    );
    Ok(())
}
