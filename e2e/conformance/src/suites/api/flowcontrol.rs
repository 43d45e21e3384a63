//! API priority and fairness: the FlowSchema and PriorityLevelConfiguration
//! APIs (discovery, create, get, list, watch, patch, update, status,
//! delete, deletecollection).

use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use serde_json::{json, Value};

use super::{dyn_api, get_json, rand_string};
use crate::conformance;
use crate::ctx::Ctx;
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Priority and Fairness FlowSchema API", flowschema_api),
        conformance!(
            "Priority and Fairness PriorityLevelConfiguration API",
            priority_level_api
        ),
    ]
}

const GROUP: &str = "flowcontrol.apiserver.k8s.io";
const VERSION: &str = "v1";

/// One cluster-scoped flowcontrol kind and what the test changes in it.
struct Kind {
    kind: &'static str,
    plural: &'static str,
    label_key: &'static str,
    template: Value,
    /// Merge patch of the spec, and the check of its effect.
    spec_patch: Value,
    patched: fn(&Value) -> bool,
    /// Spec change of the update, and the check of its effect.
    update: fn(&mut Value),
    updated: fn(&Value) -> bool,
}

async fn flowschema_api(c: Ctx) -> Result<()> {
    api_operations(
        &c,
        Kind {
            kind: "FlowSchema",
            plural: "flowschemas",
            label_key: "example-e2e-fs-label",
            template: json!({
                "metadata": {"generateName": "e2e-example-fs-"},
                "spec": {
                    "matchingPrecedence": 10000,
                    "priorityLevelConfiguration": {"name": "global-default"},
                    "distinguisherMethod": {"type": "ByUser"},
                    "rules": [{
                        "subjects": [{"kind": "User", "user": {"name": "example-e2e-non-existent-user"}}],
                        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    }],
                },
            }),
            spec_patch: json!({"matchingPrecedence": 9999}),
            patched: |o| o["spec"]["matchingPrecedence"] == 9999,
            update: |o| o["spec"]["matchingPrecedence"] = json!(9000),
            updated: |o| o["spec"]["matchingPrecedence"] == 9000,
        },
    )
    .await
}

async fn priority_level_api(c: Ctx) -> Result<()> {
    api_operations(
        &c,
        Kind {
            kind: "PriorityLevelConfiguration",
            plural: "prioritylevelconfigurations",
            label_key: "example-e2e-pl-label",
            template: json!({
                "metadata": {"generateName": "e2e-example-pl-"},
                "spec": {
                    "type": "Limited",
                    "limited": {
                        "nominalConcurrencyShares": 2,
                        "limitResponse": {"type": "Reject"},
                    },
                },
            }),
            spec_patch: json!({"limited": {"nominalConcurrencyShares": 4}}),
            patched: |o| o["spec"]["limited"]["nominalConcurrencyShares"] == 4,
            update: |o| o["spec"]["limited"]["nominalConcurrencyShares"] = json!(5),
            updated: |o| o["spec"]["limited"]["nominalConcurrencyShares"] == 5,
        },
    )
    .await
}

/// The object as JSON (metadata and all other fields).
fn value(o: &DynamicObject) -> Result<Value> {
    Ok(serde_json::to_value(o)?)
}

fn has_condition(o: &Value, type_: &str) -> bool {
    o["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == type_))
}

fn annotation<'a>(o: &'a DynamicObject, key: &str) -> Option<&'a str> {
    o.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn rv_number(o: &DynamicObject) -> Result<u64> {
    let rv = o.metadata.resource_version.as_deref().unwrap_or("");
    rv.parse()
        .with_context(|| format!("resourceVersion {rv:?} is not a valid resource version"))
}

/// The discovery steps shared by both tests: the group, its version, and
/// the resource and its status subresource.
async fn check_discovery(c: &Ctx, plural: &str) -> Result<()> {
    let groups = c.client.list_api_groups().await.context("GET /apis")?;
    ensure!(
        groups
            .groups
            .iter()
            .any(|g| g.name == GROUP && g.versions.iter().any(|v| v.version == VERSION)),
        "expected {GROUP}/{VERSION} in /apis"
    );
    let group = get_json(c, &format!("/apis/{GROUP}"), None).await?;
    ensure!(
        group["versions"]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| v["version"] == VERSION)),
        "expected version {VERSION} in /apis/{GROUP}, got {}",
        group["versions"]
    );
    let resources = c
        .client
        .list_api_group_resources(&format!("{GROUP}/{VERSION}"))
        .await
        .with_context(|| format!("GET /apis/{GROUP}/{VERSION}"))?;
    let names: Vec<&str> = resources
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    for want in [plural.to_string(), format!("{plural}/status")] {
        ensure!(
            names.contains(&want.as_str()),
            "expected {want} in /apis/{GROUP}/{VERSION}, got {names:?}"
        );
    }
    Ok(())
}

async fn api_operations(c: &Ctx, k: Kind) -> Result<()> {
    check_discovery(c, k.plural).await?;
    let api = dyn_api(c, GROUP, VERSION, k.kind, k.plural, None);
    let label = format!("{}={}", k.label_key, rand_string(8));
    let res = operations(&api, &k, &label).await;
    // Upstream's cleanup: delete whatever is left with the label.
    let cleanup = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&label),
        )
        .await;
    res?;
    cleanup.context("cleanup deletecollection")?;
    Ok(())
}

async fn operations(api: &Api<DynamicObject>, k: &Kind, label: &str) -> Result<()> {
    let (lk, lv) = label.split_once('=').expect("label has =");
    let mut template = k.template.clone();
    template["apiVersion"] = json!(format!("{GROUP}/{VERSION}"));
    template["kind"] = json!(k.kind);
    template["metadata"]["labels"] = json!({ lk: lv });
    let template: DynamicObject = serde_json::from_value(template)?;
    let pp = PostParams::default();

    // creating
    api.create(&pp, &template).await.context("create 1")?;
    api.create(&pp, &template).await.context("create 2")?;
    let created = api.create(&pp, &template).await.context("create 3")?;
    let name = created
        .metadata
        .name
        .clone()
        .context("created object has a name")?;

    // getting
    let read = api.get(&name).await.context("get")?;
    ensure!(
        read.metadata.uid == created.metadata.uid,
        "get returned another uid"
    );
    rv_number(&read)?;

    // listing
    let lp = ListParams::default().labels(label);
    let list = api.list(&lp).await.context("list")?;
    ensure!(
        list.items.len() == 3,
        "filtered list should have 3 items, has {}",
        list.items.len()
    );

    // watching
    let list_rv = list.metadata.resource_version.clone().unwrap_or_default();
    let mut watch = api
        .watch(&WatchParams::default().labels(label), &list_rv)
        .await
        .context("watch")?
        .boxed();

    // patching
    let patch = json!({"metadata": {"annotations": {"patched": "true"}}, "spec": k.spec_patch});
    let patched = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("patch")?;
    ensure!(
        annotation(&patched, "patched") == Some("true"),
        "patched object should have the applied annotation"
    );
    ensure!(
        (k.patched)(&value(&patched)?),
        "patched object should have the applied spec: {}",
        patched.data["spec"]
    );
    ensure!(
        rv_number(&created)? < rv_number(&patched)?,
        "patched object should have a larger resource version"
    );

    // updating (retrying on conflict)
    let mut updated = None;
    for _ in 0..5 {
        let cur = api.get(&name).await.context("get for update")?;
        let mut v = value(&cur)?;
        v["metadata"]["annotations"]["updated"] = json!("true");
        (k.update)(&mut v);
        let obj: DynamicObject = serde_json::from_value(v)?;
        match api.replace(&name, &pp, &obj).await {
            Ok(o) => {
                updated = Some(o);
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e).context("update"),
        }
    }
    let updated = updated.context("update kept conflicting")?;
    ensure!(
        annotation(&updated, "updated") == Some("true"),
        "updated object should have the applied annotation"
    );
    ensure!(
        (k.updated)(&value(&updated)?),
        "updated object should have the applied spec: {}",
        updated.data["spec"]
    );

    // the watch sees the modifications
    let saw = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = watch.try_next().await? {
            match ev {
                WatchEvent::Modified(o) => {
                    if annotation(&o, "patched") == Some("true") {
                        return Ok(());
                    }
                }
                WatchEvent::Bookmark(_) => {}
                other => bail!("expected a MODIFIED watch event, got {other:?}"),
            }
        }
        bail!("watch closed")
    })
    .await;
    match saw {
        Ok(r) => r?,
        Err(_) => bail!("timed out waiting for the watch event"),
    }
    drop(watch);

    // getting /status
    let st = api.get_status(&name).await.context("get /status")?;
    let types = st.types.clone().unwrap_or_default();
    ensure!(
        types.api_version == format!("{GROUP}/{VERSION}") && types.kind == k.kind,
        "/status returned {}/{}",
        types.api_version,
        types.kind
    );
    ensure!(
        st.metadata.uid == created.metadata.uid,
        "/status returned another uid"
    );

    // patching /status
    let sp = json!({"status": {"conditions": [{"type": "PatchStatusFailed", "status": "False", "reason": "e2e"}]}});
    let st = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&sp))
        .await
        .context("patch /status")?;
    ensure!(
        has_condition(&value(&st)?, "PatchStatusFailed"),
        "patched status lacks the condition"
    );

    // updating /status
    let mut st_updated = None;
    for _ in 0..5 {
        let cur = api.get(&name).await.context("get for status update")?;
        let mut v = value(&cur)?;
        let cond = json!({"type": "StatusUpdateFailed", "status": "False", "reason": "E2E", "message": "Set from an e2e test"});
        match v["status"]["conditions"].as_array_mut() {
            Some(cs) => cs.push(cond),
            None => v["status"]["conditions"] = json!([cond]),
        }
        let obj: DynamicObject = serde_json::from_value(v)?;
        match api.replace_status(&name, &pp, &obj).await {
            Ok(o) => {
                st_updated = Some(o);
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e).context("update /status"),
        }
    }
    let st_updated = st_updated.context("status update kept conflicting")?;
    ensure!(
        has_condition(&value(&st_updated)?, "StatusUpdateFailed"),
        "updated status lacks the condition"
    );

    // deleting
    api.delete(&name, &DeleteParams::default())
        .await
        .context("delete")?;
    match api.get(&name).await {
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        other => bail!(
            "expected 404 after delete, got {:?}",
            other.map(|o| o.metadata.name)
        ),
    }
    let list = api.list(&lp).await.context("list")?;
    ensure!(
        list.items.len() == 2,
        "filtered list should have 2 items, has {}",
        list.items.len()
    );

    // deleting a collection
    api.delete_collection(&DeleteParams::default(), &lp)
        .await
        .context("deletecollection")?;
    let list = api.list(&lp).await.context("list")?;
    ensure!(
        list.items.is_empty(),
        "filtered list should have 0 items, has {}",
        list.items.len()
    );
    Ok(())
}
