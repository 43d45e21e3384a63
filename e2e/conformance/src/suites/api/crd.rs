//! CustomResourceDefinitions: create and delete, list and deletecollection,
//! the status subresource, discovery, defaulting, and watches of custom
//! resources.

use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use serde_json::{json, Value};

use super::{allow_all_schema, create_crd, delete_crd, dyn_api, get_json, poll, with_crd};
use crate::conformance;
use crate::ctx::{wait_for, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Custom Resource Definition, create", create_delete),
        conformance!("Custom Resource Definition, list", list),
        conformance!("Custom Resource Definition, status sub-resource", status),
        conformance!("Custom Resource Definition, discovery", discovery),
        conformance!("Custom Resource Definition, defaulting", defaulting),
        conformance!("Custom Resource Definition, watch", watch),
    ]
}

/// A CRD `foo<random>s.mygroup.example.com` of version v1beta1 that allows
/// anything (upstream's random-name fixture); returns its name and object.
pub(super) fn random_crd(scope: &str) -> (String, Value) {
    let g = format!("foo{}", crate::ctx::suffix());
    let name = format!("{g}s.mygroup.example.com");
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": "mygroup.example.com",
            "versions": [{"name": "v1beta1", "served": true, "storage": true, "schema": allow_all_schema()}],
            "names": {"plural": format!("{g}s"), "singular": g, "kind": g, "listKind": format!("{g}List")},
            "scope": scope,
        },
    });
    (name, crd)
}

/// CRDs as JSON objects (the typed form cannot hold arbitrary conditions).
fn crd_api(c: &Ctx) -> Api<DynamicObject> {
    dyn_api(
        c,
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        None,
    )
}

async fn create_delete(c: Ctx) -> Result<()> {
    let (name, crd) = random_crd("Cluster");
    create_crd(&c, crd)
        .await
        .context("creating CustomResourceDefinition")?;
    delete_crd(&c, &name)
        .await
        .context("deleting CustomResourceDefinition")
}

async fn list(c: Ctx) -> Result<()> {
    const N: usize = 10;
    let uuid = format!("{}-{}", crate::ctx::suffix(), crate::ctx::suffix());
    let selector = format!("e2e-list-test-uuid={uuid}");
    let mut names = Vec::new();
    let res = async {
        let mut created = Vec::new();
        for _ in 0..N {
            let (name, mut crd) = random_crd("Cluster");
            crd["metadata"]["labels"] = json!({"e2e-list-test-uuid": uuid});
            names.push(name);
            created.push(
                create_crd(&c, crd)
                    .await
                    .context("creating CustomResourceDefinition")?,
            );
        }
        // One without the label, to check that the selector selects.
        let (other, crd) = random_crd("Cluster");
        names.push(other.clone());
        create_crd(&c, crd)
            .await
            .context("creating CustomResourceDefinition")?;

        let crds: Api<CustomResourceDefinition> = c.all();
        let list = crds
            .list(&ListParams::default().labels(&selector))
            .await
            .context("listing CustomResourceDefinitions")?;
        ensure!(
            list.items.len() == N,
            "listed {} labelled CRDs, want {N}",
            list.items.len()
        );
        for actual in &list.items {
            let expected = created
                .iter()
                .find(|e| e.metadata.name == actual.metadata.name)
                .with_context(|| {
                    format!(
                        "listed CRD {:?} was not created by the test",
                        actual.metadata.name
                    )
                })?;
            ensure!(
                serde_json::to_value(&actual.spec)? == serde_json::to_value(&expected.spec)?,
                "CRD {:?} in the list has another spec than the one created",
                actual.metadata.name
            );
        }

        // deletecollection removes the labelled ones only.
        crds.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&selector),
        )
        .await
        .context("deleting CustomResourceDefinitions")?;
        wait_for("labelled CRDs gone", Duration::from_secs(60), || {
            let crds = crds.clone();
            let selector = selector.clone();
            async move {
                let l = crds
                    .list_metadata(&ListParams::default().labels(&selector))
                    .await?;
                Ok(l.items.is_empty().then_some(()))
            }
        })
        .await?;
        crds.get(&other)
            .await
            .context("getting remaining CustomResourceDefinition")?;
        Ok(())
    }
    .await;
    let mut cleanup = Ok(());
    for n in &names {
        if let Err(e) = delete_crd(&c, n).await {
            cleanup = Err(e);
        }
    }
    res.and(cleanup)
}

fn has_condition(o: &Value, want: &Value) -> bool {
    o["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c == want))
}

async fn status(c: Ctx) -> Result<()> {
    let (name, crd) = random_crd("Cluster");
    let created = create_crd(&c, crd)
        .await
        .context("creating CustomResourceDefinition")?;
    with_crd(&c, &name, || async {
        let api = crd_api(&c);
        let want_spec = serde_json::to_value(&created.spec)?;
        let update_cond = json!({"message": "updated"});
        let mut updated = None;
        for _ in 0..5 {
            let st = api
                .get_status(&name)
                .await
                .context("getting CustomResourceDefinition status")?;
            let mut v = serde_json::to_value(&st)?;
            // The status read carries the whole object, spec included.
            let spec: CustomResourceDefinition = serde_json::from_value(json!({
                "metadata": {}, "spec": v["spec"].clone(),
            }))?;
            ensure!(
                serde_json::to_value(&spec.spec)? == want_spec,
                "the status subresource's spec differs from the CRD's spec: {}",
                v["spec"]
            );
            match v["status"]["conditions"].as_array_mut() {
                Some(cs) => cs.push(update_cond.clone()),
                None => v["status"]["conditions"] = json!([update_cond]),
            }
            let obj: DynamicObject = serde_json::from_value(v)?;
            match api
                .replace_status(&name, &PostParams::default(), &obj)
                .await
            {
                Ok(o) => {
                    updated = Some(o);
                    break;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e).context("updating CustomResourceDefinition status"),
            }
        }
        let updated = updated.context("status update kept conflicting")?;
        ensure!(
            has_condition(&serde_json::to_value(&updated)?, &update_cond),
            "condition {update_cond} not found in {}",
            updated.data["status"]["conditions"]
        );

        let patch =
            json!([{"op": "add", "path": "/status/conditions", "value": [{"message": "patched"}]}]);
        let patched = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Json::<()>(serde_json::from_value(patch)?),
            )
            .await
            .context("patching CustomResourceDefinition status")?;
        let patch_cond = json!({"message": "patched"});
        ensure!(
            has_condition(&serde_json::to_value(&patched)?, &patch_cond),
            "condition {patch_cond} not found in {}",
            patched.data["status"]["conditions"]
        );
        Ok(())
    })
    .await
}

async fn discovery(c: Ctx) -> Result<()> {
    let apis = get_json(&c, "/apis", None)
        .await
        .context("fetching /apis")?;
    let group = apis["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["name"] == "apiextensions.k8s.io"))
        .context("apiextensions.k8s.io API group not found in /apis discovery document")?;
    ensure!(
        group["versions"]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| v["version"] == "v1")),
        "apiextensions.k8s.io/v1 API group version not found in /apis discovery document"
    );

    let group = get_json(&c, "/apis/apiextensions.k8s.io", None)
        .await
        .context("fetching /apis/apiextensions.k8s.io")?;
    ensure!(
        group["name"] == "apiextensions.k8s.io",
        "group name in /apis/apiextensions.k8s.io is {}",
        group["name"]
    );
    ensure!(
        group["versions"]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| v["version"] == "v1")),
        "apiextensions.k8s.io/v1 API group version not found in /apis/apiextensions.k8s.io discovery document"
    );

    let list = get_json(&c, "/apis/apiextensions.k8s.io/v1", None)
        .await
        .context("fetching /apis/apiextensions.k8s.io/v1")?;
    ensure!(
        list["groupVersion"] == "apiextensions.k8s.io/v1",
        "groupVersion in /apis/apiextensions.k8s.io/v1 is {}",
        list["groupVersion"]
    );
    ensure!(
        list["resources"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(|r| r["name"] == "customresourcedefinitions")),
        "customresourcedefinitions resource not found in /apis/apiextensions.k8s.io/v1 discovery document"
    );
    Ok(())
}

async fn defaulting(c: Ctx) -> Result<()> {
    let (name, mut crd) = random_crd("Cluster");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"] =
        json!({"a": {"type": "string"}, "b": {"type": "string"}});
    let created = create_crd(&c, crd)
        .await
        .context("creating CustomResourceDefinition")?;
    with_crd(&c, &name, || async {
        let kind = created.spec.names.kind.clone();
        let api = dyn_api(&c, "mygroup.example.com", "v1beta1", &kind, &created.spec.names.plural, None);
        let cr = |n: &str| -> Result<DynamicObject> {
            Ok(serde_json::from_value(json!({
                "apiVersion": "mygroup.example.com/v1beta1",
                "kind": kind,
                "metadata": {"name": n},
            }))?)
        };
        let crds = crd_api(&c);

        // A CR stored without the default.
        let name1 = format!("cr-1{}", crate::ctx::suffix());
        api.create(&PostParams::default(), &cr(&name1)?).await.context("creating CR")?;

        // Default a to "A": reads default it.
        let p = json!([{"op": "add", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/a/default", "value": "A"}]);
        crds.patch(&name, &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(p)?))
            .await
            .context("setting default for a to \"A\" in schema")?;
        poll("CR to be defaulted on read", Duration::from_millis(100), Duration::from_secs(30), || {
            let api = api.clone();
            let name1 = name1.clone();
            async move {
                let o = api.get(&name1).await?;
                match &o.data["a"] {
                    Value::Null => Ok(None),
                    a if a == "A" => Ok(Some(())),
                    a => bail!("expected a:\"A\", but got a:{a}"),
                }
            }
        })
        .await?;

        // A CR created now is stored with the default.
        let name2 = format!("cr-2{}", crate::ctx::suffix());
        let u2 = api.create(&PostParams::default(), &cr(&name2)?).await.context("creating CR")?;
        ensure!(u2.data["a"] == "A", "field a should have been defaulted to \"A\" in {}", u2.data);

        // Drop a's default, default b to "B": b is defaulted, a stays.
        let p = json!([
            {"op": "remove", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/a/default"},
            {"op": "add", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/b/default", "value": "B"},
        ]);
        crds.patch(&name, &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(p)?))
            .await
            .context("setting default for b to \"B\" and remove default for a")?;
        poll(
            "CR to be defaulted on read for b and a staying the same",
            Duration::from_millis(100),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                let name2 = name2.clone();
                async move {
                    let o = api.get(&name2).await?;
                    match &o.data["b"] {
                        Value::Null => return Ok(None),
                        b if b == "B" => {}
                        b => bail!("expected b:\"B\", but got b:{b}"),
                    }
                    match &o.data["a"] {
                        Value::Null => bail!("expected a:\"A\" to be unchanged, but it was removed"),
                        a if a == "A" => Ok(Some(())),
                        a => bail!("expected a:\"A\" to be unchanged, but it changed to {a}"),
                    }
                }
            },
        )
        .await
    })
    .await
}

/// The next event of `w` of type `want` (and, when given, equal to
/// `object`), skipping others, within `timeout`; None when none came.
async fn next_event<S>(
    w: &mut S,
    want: &str,
    object: Option<&Value>,
    timeout: Duration,
) -> Result<Option<Value>>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<DynamicObject>>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ev = match tokio::time::timeout_at(deadline, w.try_next()).await {
            Err(_) => return Ok(None),
            Ok(r) => r.context("watch")?.context("watch closed unexpectedly")?,
        };
        let (ty, o) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => bail!("watch error: {e:?}"),
        };
        let v = serde_json::to_value(&o)?;
        if ty == want && object.is_none_or(|e| *e == v) {
            return Ok(Some(v));
        }
    }
}

async fn watch(c: Ctx) -> Result<()> {
    // Upstream's "noxu" definition, in a group of its own so that parallel
    // tests do not collide.
    let group = format!("{}.example.com", c.name("mygroup"));
    let name = format!("noxus.{group}");
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "versions": [{"name": "v1beta1", "served": true, "storage": true, "schema": allow_all_schema()}],
            "names": {
                "plural": "noxus", "singular": "nonenglishnoxu", "kind": "WishIHadChosenNoxu",
                "shortNames": ["foo", "bar", "abc", "def"], "listKind": "NoxuItemList", "categories": ["all"],
            },
            "scope": "Cluster",
        },
    });
    create_crd(&c, crd)
        .await
        .context("failed to create CustomResourceDefinition")?;
    with_crd(&c, &name, || async {
        let api = dyn_api(&c, &group, "v1beta1", "WishIHadChosenNoxu", "noxus", None);
        let watch_named = |n: &'static str| {
            let api = api.clone();
            async move {
                let wp = WatchParams::default()
                    .fields(&format!("metadata.name={n}"))
                    .timeout(290);
                Ok::<_, anyhow::Error>(
                    api.watch(&wp, "0")
                        .await
                        .with_context(|| format!("failed to watch {n}"))?
                        .boxed(),
                )
            }
        };
        let mut wa = watch_named("name1").await?;
        let mut wb = watch_named("name2").await?;
        let instance = |n: &str| -> Result<DynamicObject> {
            Ok(serde_json::from_value(json!({
                "apiVersion": format!("{group}/v1beta1"),
                "kind": "WishIHadChosenNoxu",
                "metadata": {"name": n},
                "content": {"key": "value"},
                "num": {"num1": 9223372036854775807_i64, "num2": 1000000},
            }))?)
        };
        let create = |n: &'static str| {
            let api = api.clone();
            let group = group.clone();
            let obj = instance(n);
            async move {
                let o = api
                    .create(&PostParams::default(), &obj?)
                    .await
                    .with_context(|| format!("failed to create {n}"))?;
                ensure!(
                    o.metadata.uid.as_deref().is_some_and(|u| !u.is_empty()),
                    "missing uid: {o:?}"
                );
                let t = o.types.clone().unwrap_or_default();
                ensure!(
                    t.api_version == format!("{group}/v1beta1"),
                    "apiVersion {}",
                    t.api_version
                );
                ensure!(t.kind == "WishIHadChosenNoxu", "kind {}", t.kind);
                Ok::<_, anyhow::Error>(serde_json::to_value(&o)?)
            }
        };
        let patch = |n: &'static str| {
            let api = api.clone();
            async move {
                let p = json!([{"op": "add", "path": "/dummy", "value": "test"}]);
                api.patch(
                    n,
                    &PatchParams::default(),
                    &Patch::Json::<()>(serde_json::from_value(p)?),
                )
                .await
                .with_context(|| format!("failed to patch {n}"))?;
                Ok::<_, anyhow::Error>(())
            }
        };
        let delete = |n: &'static str| {
            let api = api.clone();
            async move {
                api.delete(n, &DeleteParams::default())
                    .await
                    .with_context(|| format!("failed to delete {n}"))?;
                Ok::<_, anyhow::Error>(())
            }
        };
        let expect = |got: Option<Value>, what: &str| -> Result<()> {
            ensure!(got.is_some(), "timed out waiting for {what}");
            Ok(())
        };
        let expect_none = |got: Option<Value>, what: &str| -> Result<()> {
            if let Some(v) = got {
                bail!("unexpected watch event {what}: {v}");
            }
            Ok(())
        };
        const WAIT: Duration = Duration::from_secs(60);
        const NONE: Duration = Duration::from_secs(10);

        let a = create("name1").await?;
        expect(
            next_event(&mut wa, "ADDED", Some(&a), WAIT).await?,
            "ADDED name1 on watch of name1",
        )?;
        expect_none(
            next_event(&mut wb, "ADDED", Some(&a), NONE).await?,
            "ADDED name1 on watch of name2",
        )?;

        let b = create("name2").await?;
        expect(
            next_event(&mut wb, "ADDED", Some(&b), WAIT).await?,
            "ADDED name2 on watch of name2",
        )?;
        expect_none(
            next_event(&mut wa, "ADDED", Some(&b), NONE).await?,
            "ADDED name2 on watch of name1",
        )?;

        patch("name1").await?;
        expect(
            next_event(&mut wa, "MODIFIED", None, WAIT).await?,
            "MODIFIED on watch of name1",
        )?;
        expect_none(
            next_event(&mut wb, "MODIFIED", None, NONE).await?,
            "MODIFIED on watch of name2",
        )?;

        patch("name2").await?;
        expect(
            next_event(&mut wb, "MODIFIED", None, WAIT).await?,
            "MODIFIED on watch of name2",
        )?;
        expect_none(
            next_event(&mut wa, "MODIFIED", None, NONE).await?,
            "MODIFIED on watch of name1",
        )?;

        delete("name1").await?;
        expect(
            next_event(&mut wa, "DELETED", None, WAIT).await?,
            "DELETED on watch of name1",
        )?;
        expect_none(
            next_event(&mut wb, "DELETED", None, NONE).await?,
            "DELETED on watch of name2",
        )?;

        delete("name2").await?;
        expect(
            next_event(&mut wb, "DELETED", None, WAIT).await?,
            "DELETED on watch of name2",
        )?;
        expect_none(
            next_event(&mut wa, "DELETED", None, NONE).await?,
            "DELETED on watch of name1",
        )?;
        Ok(())
    })
    .await
}
