//! API-only tests, second part: watches, list chunking, Table 406, server
//! version, ResourceQuota objects and ValidatingAdmissionPolicy objects
//! (sig-api-machinery), and the API-only tests of other SIGs: Jobs,
//! CronJobs, PDBs, CSRs, ServiceAccounts and reviews, Events, Ingresses,
//! Services/Endpoints objects, ServiceCIDRs/IPAddresses, ConfigMaps,
//! Secrets, PodTemplates, Leases, Nodes, RuntimeClasses and LimitRanges.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, LimitRange, PodTemplate, ResourceQuota, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::events::v1::Event as EventV1;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::client::Body;
use serde_json::{json, Value};

use crate::conformance;
use crate::ctx::{from_json, wait_for, Ctx};
use crate::Test;

/// This module's tests.
pub fn tests() -> Vec<Test> {
    vec![
        conformance!("watch-configmaps-with-multiple-watchers", watch_multiple),
        conformance!("watch-configmaps-from-resource-version", watch_from_rv),
        conformance!("watch-configmaps-closed-and-restarted", watch_restarted),
        conformance!("watch-configmaps-label-changed", watch_label_changed),
        conformance!("watch-consistency", watch_consistency),
        conformance!("Confirm a server version", server_version),
        conformance!("API metadata HTTP return", table_406),
        conformance!(
            "API Chunking, server should return chunks of results for list calls",
            chunking
        ),
        conformance!(
            "API Chunking, server should support continue listing from the last key even if the original version has been compacted away",
            chunking_compacted
        ),
        conformance!("ResourceQuota, update and delete", rq_update_delete),
        conformance!(
            "ResourceQuota, manage lifecycle of a ResourceQuota",
            rq_lifecycle
        ),
        conformance!("ConfigMap, with empty-key", cm_empty_key),
        conformance!("ConfigMap lifecycle", cm_lifecycle),
        conformance!("Event, delete a collection", core_events_collection),
        conformance!("Event, manage lifecycle of an Event", core_event_lifecycle),
        conformance!(
            "New Event resource lifecycle, testing a list of events",
            events_v1_collection
        ),
        conformance!(
            "New Event resource lifecycle, testing a single event",
            events_v1_single
        ),
        conformance!("ServiceAccount lifecycle test", sa_lifecycle),
        conformance!("ServiceAccount, update a ServiceAccount", sa_update),
        conformance!(
            "Find Kubernetes Service in default Namespace",
            find_kubernetes_service
        ),
        conformance!("Kubernetes Service", secure_master_service),
        conformance!(
            "Service, deletes a collection of services",
            services_delete_collection
        ),
        conformance!("Endpoint resource lifecycle", endpoint_lifecycle),
        conformance!(
            "Service, complete ServiceStatus lifecycle",
            service_status_lifecycle
        ),
        conformance!("Secrets, with empty-key", secret_empty_key),
        conformance!("Secret patching", secret_patching),
        conformance!("PodTemplate lifecycle", podtemplate_lifecycle),
        conformance!("PodTemplate, delete a collection", podtemplate_collection),
        conformance!("PodTemplate, replace", podtemplate_replace),
        conformance!("lease API should be available", lease_api),
        conformance!(
            "LimitRange, list, patch and delete a LimitRange by collection",
            limitrange_collection
        ),
        conformance!("RuntimeClass API", runtimeclass_api),
        conformance!(
            "Pod with the non-existing RuntimeClass is rejected.",
            runtimeclass_nonexistent
        ),
        conformance!(
            "Pod with the deleted RuntimeClass is rejected.",
            runtimeclass_deleted
        ),
        conformance!("Node, resource lifecycle", node_lifecycle),
        conformance!("Service account tokens auto mount optionally", sa_automount),
        conformance!("SubjectReview, API Operations", subject_review),
        conformance!("Ingress API", ingress_api),
        conformance!("IngressClass API", ingressclass_api),
        conformance!("Jobs, manage lifecycle", job_lifecycle),
        conformance!("CronJob API Operations", cronjob_api),
        conformance!(
            "ResourceQuota, apply changes to a ResourceQuota status",
            rq_status
        ),
        conformance!("ValidatingAdmissionPolicy API", vap_api),
        conformance!("ValidatingadmissionPolicyBinding API", vap_binding_api),
        conformance!("CertificateSigningRequest API", csr_api),
        conformance!(
            "PodDisruptionBudget: list and delete collection",
            pdb_list_delete_collection
        ),
        conformance!(
            "PodDisruptionBudget: create, update, patch, and delete object",
            pdb_crud
        ),
        conformance!("LimitRange, resources", limitrange_defaults),
        conformance!("ServiceAccount, create and review token", sa_token_review),
        conformance!("ServiceCIDR API", servicecidr_api),
        conformance!("IPAddress API", ipaddress_api),
    ]
}

// ---------------------------------------------------------------- helpers

/// Sends `method path` with an optional JSON body and Accept header;
/// returns the status code and body whatever the status.
async fn raw(
    c: &Ctx,
    method: &str,
    path: &str,
    body: Option<&Value>,
    accept: Option<&str>,
) -> Result<(u16, String)> {
    let mut req = kube::core::Request::new("/")
        .list(&Default::default())
        .context("build request")?;
    *req.uri_mut() = path.parse().context("request path")?;
    *req.method_mut() = method.parse().context("request method")?;
    let mut bytes = Vec::new();
    if let Some(b) = body {
        req.headers_mut().insert(
            "content-type",
            "application/json".parse().context("content type")?,
        );
        bytes = serde_json::to_vec(b)?;
    }
    if let Some(a) = accept {
        req.headers_mut()
            .insert("accept", a.parse().context("accept header")?);
    }
    let req = req.map(|_| Body::from(bytes));
    let resp = c
        .client
        .send(req)
        .await
        .with_context(|| format!("{method} {path}"))?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect_bytes().await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn labels_of(m: &kube::api::ObjectMeta) -> BTreeMap<String, String> {
    m.labels.clone().unwrap_or_default()
}

fn rv_of(m: &kube::api::ObjectMeta) -> String {
    m.resource_version.clone().unwrap_or_default()
}

/// Whether `e` is a "not found" API error.
fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

// ---------------------------------------------------------------- watches

type CmWatch = Pin<Box<dyn Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Send>>;

/// A watch on the namespace's configmaps from `rv` matching `selector`.
async fn watch_cms(c: &Ctx, rv: &str, selector: &str) -> Result<CmWatch> {
    let mut wp = WatchParams::default();
    if !selector.is_empty() {
        wp = wp.labels(selector);
    }
    Ok(c.api::<ConfigMap>()
        .watch(&wp, rv)
        .await
        .context("watch configmaps")?
        .boxed())
}

/// The next added/modified/deleted event within `t` (None when none came).
async fn next_cm_event(w: &mut CmWatch, t: Duration) -> Result<Option<(&'static str, ConfigMap)>> {
    let deadline = tokio::time::Instant::now() + t;
    loop {
        let ev = match tokio::time::timeout_at(deadline, w.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => bail!("watch closed"),
            Ok(Some(ev)) => ev.context("watch stream")?,
        };
        match ev {
            WatchEvent::Added(o) => return Ok(Some(("ADDED", o))),
            WatchEvent::Modified(o) => return Ok(Some(("MODIFIED", o))),
            WatchEvent::Deleted(o) => return Ok(Some(("DELETED", o))),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => bail!("watch error: {e:?}"),
        }
    }
}

/// Waits for an event of `kind` on configmap `name` (with data `data`
/// when Some); fails on any other event first, or after 30 s.
async fn expect_cm_event(
    w: &mut CmWatch,
    kind: &str,
    name: &str,
    data: Option<&BTreeMap<String, String>>,
) -> Result<ConfigMap> {
    match next_cm_event(w, Duration::from_secs(30)).await? {
        None => bail!("no {kind} event for configmap {name} within 30s"),
        Some((k, o)) => {
            let n = o.metadata.name.clone().unwrap_or_default();
            ensure!(
                k == kind && n == name,
                "expected {kind} of {name}, got {k} of {n} ({:?})",
                o.data
            );
            if let Some(d) = data {
                ensure!(
                    o.data.as_ref() == Some(d),
                    "{kind} of {name}: data {:?}, want {d:?}",
                    o.data
                );
            }
            Ok(o)
        }
    }
}

/// Fails if the watch delivers any event within `t`.
async fn expect_no_cm_event(w: &mut CmWatch, t: Duration) -> Result<()> {
    if let Some((k, o)) = next_cm_event(w, t).await? {
        bail!("unexpected {k} event for configmap {:?}", o.metadata.name);
    }
    Ok(())
}

fn mutation(n: u32) -> BTreeMap<String, String> {
    BTreeMap::from([("mutation".to_string(), n.to_string())])
}

async fn create_labeled_cm(c: &Ctx, name: &str, key: &str, value: &str) -> Result<ConfigMap> {
    c.create::<ConfigMap>(json!({
        "metadata": {"name": name, "labels": {key: value}},
    }))
    .await
    .with_context(|| format!("create configmap {name}"))
}

/// Sets data `mutation: n` on configmap `name` (an update).
async fn set_mutation(c: &Ctx, name: &str, n: u32) -> Result<ConfigMap> {
    let api = c.api::<ConfigMap>();
    let mut cm = api.get(name).await?;
    cm.data = Some(mutation(n));
    api.replace(name, &PostParams::default(), &cm)
        .await
        .with_context(|| format!("update configmap {name}"))
}

async fn delete_cm(c: &Ctx, name: &str) -> Result<()> {
    c.api::<ConfigMap>()
        .delete(name, &DeleteParams::default())
        .await
        .with_context(|| format!("delete configmap {name}"))?;
    Ok(())
}

async fn watch_multiple(c: Ctx) -> Result<()> {
    let key = "watch-this-configmap";
    let (va, vb) = ("multiple-watchers-A", "multiple-watchers-B");
    let mut wa = watch_cms(&c, "", &format!("{key}={va}")).await?;
    let mut wb = watch_cms(&c, "", &format!("{key}={vb}")).await?;
    let mut wab = watch_cms(&c, "", &format!("{key} in ({va},{vb})")).await?;

    let a = "e2e-watch-test-configmap-a";
    let b = "e2e-watch-test-configmap-b";
    create_labeled_cm(&c, a, key, va).await?;
    expect_cm_event(&mut wa, "ADDED", a, None).await?;
    expect_cm_event(&mut wab, "ADDED", a, None).await?;

    set_mutation(&c, a, 1).await?;
    expect_cm_event(&mut wa, "MODIFIED", a, Some(&mutation(1))).await?;
    expect_cm_event(&mut wab, "MODIFIED", a, Some(&mutation(1))).await?;

    set_mutation(&c, a, 2).await?;
    expect_cm_event(&mut wa, "MODIFIED", a, Some(&mutation(2))).await?;
    expect_cm_event(&mut wab, "MODIFIED", a, Some(&mutation(2))).await?;

    delete_cm(&c, a).await?;
    expect_cm_event(&mut wa, "DELETED", a, None).await?;
    expect_cm_event(&mut wab, "DELETED", a, None).await?;
    // Watcher B saw none of A's changes.
    expect_no_cm_event(&mut wb, Duration::from_secs(2)).await?;

    create_labeled_cm(&c, b, key, vb).await?;
    expect_cm_event(&mut wb, "ADDED", b, None).await?;
    expect_cm_event(&mut wab, "ADDED", b, None).await?;
    expect_no_cm_event(&mut wa, Duration::from_secs(2)).await?;

    delete_cm(&c, b).await?;
    expect_cm_event(&mut wb, "DELETED", b, None).await?;
    expect_cm_event(&mut wab, "DELETED", b, None).await?;
    expect_no_cm_event(&mut wa, Duration::from_secs(2)).await?;
    Ok(())
}

async fn watch_from_rv(c: Ctx) -> Result<()> {
    let key = "watch-this-configmap";
    let name = "e2e-watch-test-resource-version";
    create_labeled_cm(&c, name, key, "from-resource-version").await?;
    let first = set_mutation(&c, name, 1).await?;
    set_mutation(&c, name, 2).await?;
    delete_cm(&c, name).await?;

    let mut w = watch_cms(
        &c,
        &rv_of(&first.metadata),
        &format!("{key}=from-resource-version"),
    )
    .await?;
    expect_cm_event(&mut w, "MODIFIED", name, Some(&mutation(2))).await?;
    expect_cm_event(&mut w, "DELETED", name, None).await?;
    Ok(())
}

async fn watch_restarted(c: Ctx) -> Result<()> {
    let key = "watch-this-configmap";
    let value = "watch-closed-and-restarted";
    let sel = format!("{key}={value}");
    let name = "e2e-watch-test-watch-closed";
    let mut w = watch_cms(&c, "", &sel).await?;
    create_labeled_cm(&c, name, key, value).await?;
    set_mutation(&c, name, 1).await?;
    set_mutation(&c, name, 2).await?;

    // Close the watch once it has seen two notifications.
    expect_cm_event(&mut w, "ADDED", name, None).await?;
    let last = expect_cm_event(&mut w, "MODIFIED", name, Some(&mutation(1))).await?;
    drop(w);

    set_mutation(&c, name, 3).await?;
    delete_cm(&c, name).await?;

    let mut w = watch_cms(&c, &rv_of(&last.metadata), &sel).await?;
    expect_cm_event(&mut w, "MODIFIED", name, Some(&mutation(2))).await?;
    expect_cm_event(&mut w, "MODIFIED", name, Some(&mutation(3))).await?;
    expect_cm_event(&mut w, "DELETED", name, None).await?;
    Ok(())
}

async fn watch_label_changed(c: Ctx) -> Result<()> {
    let key = "watch-this-configmap";
    let value = "label-changed-and-restored";
    let name = "e2e-watch-test-label-changed";
    let api = c.api::<ConfigMap>();
    let mut w = watch_cms(&c, "", &format!("{key}={value}")).await?;
    create_labeled_cm(&c, name, key, value).await?;
    set_mutation(&c, name, 1).await?;
    expect_cm_event(&mut w, "ADDED", name, None).await?;
    expect_cm_event(&mut w, "MODIFIED", name, Some(&mutation(1))).await?;

    // The object stops matching: the watch sees a deletion.
    let relabel = |v: &str| json!({"metadata": {"labels": {key: v}}});
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(relabel("wrong-value")),
    )
    .await
    .context("change the label")?;
    expect_cm_event(&mut w, "DELETED", name, None).await?;

    set_mutation(&c, name, 2).await?;
    expect_no_cm_event(&mut w, Duration::from_secs(3)).await?;

    api.patch(name, &PatchParams::default(), &Patch::Merge(relabel(value)))
        .await
        .context("restore the label")?;
    expect_cm_event(&mut w, "ADDED", name, Some(&mutation(2))).await?;

    set_mutation(&c, name, 3).await?;
    expect_cm_event(&mut w, "MODIFIED", name, Some(&mutation(3))).await?;
    delete_cm(&c, name).await?;
    expect_cm_event(&mut w, "DELETED", name, None).await?;
    Ok(())
}

async fn watch_consistency(c: Ctx) -> Result<()> {
    const ITERATIONS: usize = 100;
    // Watches start from the resource version of a list made before any write.
    let start = c
        .api::<ConfigMap>()
        .list(&ListParams::default())
        .await
        .context("list configmaps")?;
    let start_rv = start.metadata.resource_version.clone().unwrap_or_default();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Writes on a background task: create, update or delete configmaps.
    let producer = {
        let c = c.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let api = c.api::<ConfigMap>();
            let mut existing: Vec<String> = Vec::new();
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let op = rand::random_range(0..3u32);
                let r: Result<()> = async {
                    if op == 0 || existing.is_empty() {
                        n += 1;
                        let name = format!("cm-{n}");
                        api.create(
                            &PostParams::default(),
                            &from_json(json!({"metadata": {"name": name}}))?,
                        )
                        .await?;
                        existing.push(name);
                    } else if op == 1 {
                        let name = &existing[rand::random_range(0..existing.len())];
                        api.patch(
                            name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"data": {"mutation": n.to_string()}})),
                        )
                        .await?;
                        n += 1;
                    } else {
                        let i = rand::random_range(0..existing.len());
                        let name = existing.swap_remove(i);
                        api.delete(&name, &DeleteParams::default()).await?;
                    }
                    Ok(())
                }
                .await;
                r?;
                tokio::time::sleep(Duration::from_millis(rand::random_range(10..100))).await;
            }
            Ok(())
        })
    };

    let res: Result<()> = async {
        let mut watches: Vec<CmWatch> = Vec::new();
        let mut rv = start_rv;
        for i in 0..ITERATIONS {
            watches.push(watch_cms(&c, &rv, "").await?);
            let (_, o) = next_cm_event(&mut watches[0], Duration::from_secs(30))
                .await?
                .context("no event on the first watch within 30s")?;
            rv = rv_of(&o.metadata);
            for (j, w) in watches.iter_mut().enumerate().skip(1) {
                let (_, o) = next_cm_event(w, Duration::from_secs(30))
                    .await?
                    .with_context(|| format!("no event on watch {j} within 30s"))?;
                let got = rv_of(&o.metadata);
                ensure!(
                    got == rv,
                    "iteration {i}: watch {j} saw resourceVersion {got}, the first watch saw {rv}"
                );
            }
        }
        Ok(())
    }
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let prod: Result<()> = producer.await.context("producer task")?;
    res?;
    prod.context("producer")
}

// ------------------------------------------------- server, table, chunking

async fn server_version(c: Ctx) -> Result<()> {
    let (status, body) = raw(&c, "GET", "/version", None, None).await?;
    ensure!(status == 200, "GET /version: {status}: {body}");
    let v: Value = serde_json::from_str(&body).context("version is not JSON")?;
    let major = v["major"].as_str().unwrap_or("");
    let minor = v["minor"].as_str().unwrap_or("");
    ensure!(
        !major.is_empty() && major.chars().all(|ch| ch.is_ascii_digit()),
        "major version {major:?} is not an integer"
    );
    let minor_digits = minor.trim_end_matches('+');
    ensure!(
        !minor_digits.is_empty() && minor_digits.chars().all(|ch| ch.is_ascii_digit()),
        "minor version {minor:?} is not an integer"
    );
    ensure!(
        v["gitVersion"].as_str().is_some_and(|g| !g.is_empty()),
        "no gitVersion in {v}"
    );
    Ok(())
}

async fn table_406(c: Ctx) -> Result<()> {
    let sar = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"nonResourceAttributes": {"path": "/", "verb": "get"}},
    });
    let (status, body) = raw(
        &c,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(&sar),
        Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
    )
    .await?;
    ensure!(
        status == 406,
        "a Table request to selfsubjectaccessreviews answered {status}, want 406: {body}"
    );
    Ok(())
}

async fn create_podtemplates(c: &Ctx, n: usize) -> Result<()> {
    let api = c.api::<PodTemplate>();
    let img = c.env.images.pause.clone();
    let names: Vec<String> = (0..n).map(|i| format!("template-{i:04}")).collect();
    let results: Vec<Result<()>> = futures::stream::iter(names)
        .map(|name| {
            let api = api.clone();
            let img = img.clone();
            async move {
                let pt: PodTemplate = from_json(json!({
                    "metadata": {"name": name},
                    "template": {"spec": {"containers": [{"name": "test", "image": img}]}},
                }))?;
                // Retry a few times: the cluster is shared and may be busy.
                let mut last = None;
                for _ in 0..5 {
                    match api.create(&PostParams::default(), &pt).await {
                        Ok(_) => return Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
                        Err(e) => last = Some(e),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(anyhow::Error::from(last.expect("an error"))
                    .context(format!("create podtemplate {name}")))
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

async fn chunking(c: Ctx) -> Result<()> {
    const TOTAL: usize = 400;
    create_podtemplates(&c, TOTAL).await?;
    let api = c.api::<PodTemplate>();
    let limit = (TOTAL / 10) as u32;
    let mut found = 0usize;
    let mut token: Option<String> = None;
    let mut first_rv: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(limit);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let list = api.list(&lp).await.context("list a chunk")?;
        let n = list.items.len();
        ensure!(
            n <= limit as usize,
            "chunk of {n} items exceeds the limit {limit}"
        );
        let rv = list.metadata.resource_version.clone().unwrap_or_default();
        match &first_rv {
            None => first_rv = Some(rv),
            Some(f) => ensure!(
                *f == rv,
                "chunk resourceVersion {rv} differs from the first {f}"
            ),
        }
        let cont = list.metadata.continue_.clone().filter(|s| !s.is_empty());
        let remaining = list.metadata.remaining_item_count;
        if cont.is_some() {
            let want = (TOTAL - found - n) as i64;
            ensure!(
                remaining == Some(want),
                "remainingItemCount {remaining:?} after {} items, want {want}",
                found + n
            );
            ensure!(want > 0, "a continue token with nothing remaining");
        } else {
            ensure!(
                remaining.is_none() || remaining == Some(0),
                "remainingItemCount {remaining:?} on the last chunk"
            );
        }
        found += n;
        match cont {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    ensure!(
        found == TOTAL,
        "the chunks held {found} items, want {TOTAL}"
    );
    let all = api.list(&ListParams::default()).await?;
    ensure!(
        all.items.len() == TOTAL,
        "a list without limit returned {} items, want {TOTAL}",
        all.items.len()
    );
    Ok(())
}

// ----------------------------------------------------------- resourcequota

fn rq_hard(rq: &ResourceQuota) -> BTreeMap<String, String> {
    rq.spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .map(|h| h.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

fn strmap(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn rq_update_delete(c: Ctx) -> Result<()> {
    let api = c.api::<ResourceQuota>();
    let name = "test-quota";
    let rq = c
        .create::<ResourceQuota>(json!({
            "metadata": {"name": name},
            "spec": {"hard": {"cpu": "1", "memory": "500Mi"}},
        }))
        .await
        .context("create resourcequota")?;
    ensure!(
        rq_hard(&rq) == strmap(&[("cpu", "1"), ("memory", "500Mi")]),
        "created quota has hard {:?}",
        rq_hard(&rq)
    );
    let got = api.get(name).await?;
    ensure!(
        rq_hard(&got) == rq_hard(&rq),
        "get returned hard {:?}",
        rq_hard(&got)
    );

    let mut upd = got;
    upd.spec = Some(from_json(json!({"hard": {"cpu": "2", "memory": "1Gi"}}))?);
    let upd = api
        .replace(name, &PostParams::default(), &upd)
        .await
        .context("update resourcequota")?;
    ensure!(
        rq_hard(&upd) == strmap(&[("cpu", "2"), ("memory", "1Gi")]),
        "updated quota has hard {:?}",
        rq_hard(&upd)
    );
    let got = api.get(name).await?;
    ensure!(
        rq_hard(&got) == rq_hard(&upd),
        "get after update returned hard {:?}",
        rq_hard(&got)
    );

    api.delete(name, &DeleteParams::default())
        .await
        .context("delete resourcequota")?;
    wait_for("resourcequota gone", Duration::from_secs(30), || {
        let api = api.clone();
        async move { Ok(api.get_opt(name).await?.is_none().then_some(())) }
    })
    .await
}

async fn rq_lifecycle(c: Ctx) -> Result<()> {
    let api = c.api::<ResourceQuota>();
    let name = c.name("e2e-quota");
    let label = format!("{name}=created");
    c.create::<ResourceQuota>(json!({
        "metadata": {"name": name, "labels": {name.clone(): "created"}},
        "spec": {"hard": {"cpu": "1", "memory": "500Mi"}},
    }))
    .await
    .context("create resourcequota")?;

    let all: Api<ResourceQuota> = c.all();
    let list = all.list(&ListParams::default().labels(&label)).await?;
    ensure!(
        list.items.len() == 1,
        "listing all namespaces found {} quotas",
        list.items.len()
    );

    let patched = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"labels": {"e2e-rq-label": name}},
                "spec": {"hard": {"cpu": "1", "memory": "750Mi"}},
            })),
        )
        .await
        .context("patch resourcequota")?;
    ensure!(
        labels_of(&patched.metadata).get("e2e-rq-label") == Some(&name),
        "patched label missing: {:?}",
        patched.metadata.labels
    );
    ensure!(
        rq_hard(&patched).get("memory").map(String::as_str) == Some("750Mi"),
        "patched hard {:?}",
        rq_hard(&patched)
    );

    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(&label),
    )
    .await
    .context("delete collection of resourcequotas")?;
    wait_for(
        "resourcequota collection gone",
        Duration::from_secs(30),
        || {
            let api = api.clone();
            let label = label.clone();
            async move {
                let l = api.list(&ListParams::default().labels(&label)).await?;
                Ok(l.items.is_empty().then_some(()))
            }
        },
    )
    .await
}

// ----------------------------------------------------------------- configmap

async fn cm_empty_key(c: Ctx) -> Result<()> {
    let r = c
        .create::<ConfigMap>(json!({
            "metadata": {"name": c.name("configmap-test-emptykey")},
            "data": {"": "value-1"},
        }))
        .await;
    ensure!(r.is_err(), "a configmap with an empty key was created");
    Ok(())
}

async fn cm_lifecycle(c: Ctx) -> Result<()> {
    let api = c.api::<ConfigMap>();
    let name = c.name("e2e-configmap");
    let label = "test-configmap-static=true";
    c.create::<ConfigMap>(json!({
        "metadata": {"name": name, "labels": {"test-configmap-static": "true"}},
        "data": {"valueName": "value"},
    }))
    .await
    .context("create configmap")?;

    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"labels": {"test-configmap": "patched"}},
            "data": {"valueName": "value1"},
        })),
    )
    .await
    .context("patch configmap")?;
    let got = api.get(&name).await?;
    ensure!(
        labels_of(&got.metadata)
            .get("test-configmap")
            .map(String::as_str)
            == Some("patched"),
        "patched label missing: {:?}",
        got.metadata.labels
    );
    ensure!(
        got.data
            .as_ref()
            .and_then(|d| d.get("valueName"))
            .map(String::as_str)
            == Some("value1"),
        "patched data: {:?}",
        got.data
    );

    let all: Api<ConfigMap> = c.all();
    let list = all.list(&ListParams::default().labels(label)).await?;
    let found = list.items.iter().any(|cm| {
        cm.metadata.name.as_deref() == Some(name.as_str())
            && cm.metadata.namespace.as_deref() == Some(c.ns.as_str())
            && labels_of(&cm.metadata)
                .get("test-configmap")
                .map(String::as_str)
                == Some("patched")
            && cm
                .data
                .as_ref()
                .and_then(|d| d.get("valueName"))
                .map(String::as_str)
                == Some("value1")
    });
    ensure!(
        found,
        "the patched configmap is not in the list across namespaces"
    );

    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(label),
    )
    .await
    .context("delete collection of configmaps")?;
    let left = api.list(&ListParams::default().labels(label)).await?;
    ensure!(
        left.items
            .iter()
            .all(|cm| cm.metadata.deletion_timestamp.is_some()),
        "configmaps left after deletecollection"
    );
    Ok(())
}

// ------------------------------------------------------------------ events

fn core_event(name: &str, ns: &str, message: &str, labels: Value) -> Value {
    json!({
        "metadata": {"name": name, "labels": labels},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": "e2e-pod"},
        "reason": "Testing",
        "message": message,
        "type": "Normal",
        "count": 1,
        "source": {"component": "e2e-test"},
        "firstTimestamp": "2024-01-01T00:00:00Z",
        "lastTimestamp": "2024-01-01T00:00:00Z",
    })
}

async fn core_events_collection(c: Ctx) -> Result<()> {
    let api = c.api::<Event>();
    let label = "testevent-set=true";
    for i in 1..=3 {
        c.create::<Event>(core_event(
            &format!("test-event-{i}"),
            &c.ns,
            "This is a test event",
            json!({"testevent-set": "true"}),
        ))
        .await
        .context("create event")?;
    }
    let list = api.list(&ListParams::default().labels(label)).await?;
    ensure!(
        list.items.len() == 3,
        "found {} events, want 3",
        list.items.len()
    );
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(label),
    )
    .await
    .context("delete collection of events")?;
    let list = api.list(&ListParams::default().labels(label)).await?;
    ensure!(
        list.items.is_empty(),
        "{} events left after deletecollection",
        list.items.len()
    );
    Ok(())
}

async fn core_event_lifecycle(c: Ctx) -> Result<()> {
    let api = c.api::<Event>();
    let name = "event-test";
    c.create::<Event>(core_event(
        name,
        &c.ns,
        "This is a test event",
        json!({"testevent-constant": "true"}),
    ))
    .await
    .context("create event")?;
    let all: Api<Event> = c.all();
    let list = all
        .list(&ListParams::default().labels("testevent-constant=true"))
        .await?;
    ensure!(
        list.items
            .iter()
            .any(|e| e.metadata.name.as_deref() == Some(name)
                && e.metadata.namespace.as_deref() == Some(c.ns.as_str())),
        "the event is not listed across namespaces"
    );

    let msg = "This is a test event - patched";
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"message": msg})),
    )
    .await
    .context("patch event")?;
    let got = api.get(name).await?;
    ensure!(
        got.message.as_deref() == Some(msg),
        "patched message: {:?}",
        got.message
    );

    let mut upd = got;
    upd.series = Some(from_json(
        json!({"count": 100, "lastObservedTime": "2024-01-01T00:00:01.000000Z"}),
    )?);
    api.replace(name, &PostParams::default(), &upd)
        .await
        .context("update event")?;
    let got = api.get(name).await?;
    ensure!(
        got.series.as_ref().and_then(|s| s.count) == Some(100),
        "updated series: {:?}",
        got.series
    );

    api.delete(name, &DeleteParams::default())
        .await
        .context("delete event")?;
    let list = api.list(&ListParams::default()).await?;
    ensure!(
        !list
            .items
            .iter()
            .any(|e| e.metadata.name.as_deref() == Some(name)),
        "the deleted event is still listed"
    );
    Ok(())
}

fn v1_event(name: &str, ns: &str, note: &str, label: &str) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "labels": {label: "true"}},
        "eventTime": "2024-01-01T00:00:00.000000Z",
        "reportingController": "test-controller",
        "reportingInstance": "test-node",
        "action": "Do",
        "reason": "Test",
        "type": "Normal",
        "note": note,
        "regarding": {"kind": "Pod", "namespace": ns, "name": "e2e-pod"},
    })
}

async fn events_v1_collection(c: Ctx) -> Result<()> {
    let api = c.api::<EventV1>();
    let label = "testevent-set=true";
    for i in 1..=3 {
        c.create::<EventV1>(v1_event(
            &format!("test-event-{i}"),
            &c.ns,
            "This is a test event",
            "testevent-set",
        ))
        .await
        .context("create events.k8s.io event")?;
    }
    let list = api.list(&ListParams::default().labels(label)).await?;
    ensure!(
        list.items.len() == 3,
        "found {} events, want 3",
        list.items.len()
    );
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(label),
    )
    .await
    .context("delete collection of events")?;
    let list = api.list(&ListParams::default().labels(label)).await?;
    ensure!(
        list.items.is_empty(),
        "{} events left after deletecollection",
        list.items.len()
    );
    Ok(())
}

async fn events_v1_single(c: Ctx) -> Result<()> {
    let api = c.api::<EventV1>();
    let name = "event-test";
    c.create::<EventV1>(v1_event(
        name,
        &c.ns,
        "This is a test event",
        "testevent-constant",
    ))
    .await
    .context("create events.k8s.io event")?;
    let in_list = |l: &kube::core::ObjectList<EventV1>| {
        l.items.iter().any(|e| {
            e.metadata.name.as_deref() == Some(name)
                && e.metadata.namespace.as_deref() == Some(c.ns.as_str())
        })
    };
    let all: Api<EventV1> = c.all();
    ensure!(
        in_list(&all.list(&ListParams::default()).await?),
        "the event is not listed across namespaces"
    );
    ensure!(
        in_list(&api.list(&ListParams::default()).await?),
        "the event is not listed in the namespace"
    );
    // Field selection: core/v1 on source, events.k8s.io on reportingController.
    let core = c
        .api::<Event>()
        .list(&ListParams::default().fields("source=test-controller"))
        .await
        .context("list core/v1 events by source")?;
    ensure!(
        core.items.len() == 1 && core.items[0].metadata.name.as_deref() == Some(name),
        "core/v1 events with source=test-controller: {:?}",
        core.items
            .iter()
            .map(|e| e.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    let filtered = api
        .list(&ListParams::default().fields("reportingController=test-controller"))
        .await
        .context("list events by reportingController")?;
    ensure!(
        filtered.items.len() == 1 && filtered.items[0].metadata.name.as_deref() == Some(name),
        "events with reportingController=test-controller: {:?}",
        filtered
            .items
            .iter()
            .map(|e| e.metadata.name.clone())
            .collect::<Vec<_>>()
    );

    let original = api.get(name).await.context("get event")?;
    let series2 = json!({"count": 2, "lastObservedTime": "2017-09-19T13:49:11.000000Z"});
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Strategic(json!({"series": series2})),
    )
    .await
    .context("patch event")?;
    // The patched event equals the original with the new series.
    let normalized = |e: &EventV1| -> Result<Value> {
        let mut v = serde_json::to_value(e)?;
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        Ok(v)
    };
    let mut want = original.clone();
    want.series = Some(from_json(series2)?);
    let got = api.get(name).await?;
    ensure!(
        normalized(&got)? == normalized(&want)?,
        "the event was not properly patched: got {:?}, want {:?}",
        got,
        want
    );

    let mut upd = original.clone();
    upd.series = Some(from_json(
        json!({"count": 100, "lastObservedTime": "2017-09-19T13:49:16.000000Z"}),
    )?);
    upd.metadata.resource_version = None;
    api.replace(name, &PostParams::default(), &upd)
        .await
        .context("update event")?;
    let got = api.get(name).await?;
    ensure!(
        normalized(&got)? == normalized(&upd)?,
        "the event was not properly updated: got {:?}, want {:?}",
        got,
        upd
    );

    api.delete(name, &DeleteParams::default())
        .await
        .context("delete event")?;
    ensure!(
        !in_list(&all.list(&ListParams::default()).await?),
        "the deleted event is listed across namespaces"
    );
    ensure!(
        !in_list(&api.list(&ListParams::default()).await?),
        "the deleted event is listed in the namespace"
    );
    Ok(())
}

// ------------------------------------------------------------ serviceaccounts

async fn sa_lifecycle(c: Ctx) -> Result<()> {
    let api = c.api::<ServiceAccount>();
    let name = "testserviceaccount";
    let label = "test-serviceaccount-static=true";
    let mut w = api
        .watch(&WatchParams::default().labels(label), "0")
        .await
        .context("watch serviceaccounts")?
        .boxed();
    c.create::<ServiceAccount>(json!({
        "metadata": {"name": name, "labels": {"test-serviceaccount-static": "true"}},
    }))
    .await
    .context("create serviceaccount")?;
    wait_sa_event(&mut w, "ADDED", name).await?;

    let patched = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"labels": {"test-serviceaccount": "patched"}},
                "automountServiceAccountToken": false,
            })),
        )
        .await
        .context("patch serviceaccount")?;
    ensure!(
        labels_of(&patched.metadata)
            .get("test-serviceaccount")
            .map(String::as_str)
            == Some("patched"),
        "patched labels {:?}",
        patched.metadata.labels
    );
    ensure!(
        patched.automount_service_account_token == Some(false),
        "automountServiceAccountToken not patched"
    );
    wait_sa_event(&mut w, "MODIFIED", name).await?;

    let all: Api<ServiceAccount> = c.all();
    let list = all.list(&ListParams::default().labels(label)).await?;
    ensure!(
        list.items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(name)
                && labels_of(&s.metadata)
                    .get("test-serviceaccount")
                    .map(String::as_str)
                    == Some("patched")
                && s.automount_service_account_token == Some(false)),
        "the patched serviceaccount is not listed"
    );

    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(label),
    )
    .await
    .context("delete collection of serviceaccounts")?;
    wait_sa_event(&mut w, "DELETED", name).await?;
    Ok(())
}

type SaWatch = Pin<Box<dyn Stream<Item = kube::Result<WatchEvent<ServiceAccount>>> + Send>>;

async fn wait_sa_event(w: &mut SaWatch, kind: &str, name: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = match tokio::time::timeout_at(deadline, w.next()).await {
            Err(_) => bail!("no {kind} event of serviceaccount {name} within 30s"),
            Ok(None) => bail!("watch closed"),
            Ok(Some(ev)) => ev?,
        };
        let (k, o) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => bail!("watch error: {e:?}"),
        };
        if k == kind && o.metadata.name.as_deref() == Some(name) {
            return Ok(());
        }
    }
}

async fn sa_update(c: Ctx) -> Result<()> {
    let api = c.api::<ServiceAccount>();
    let name = c.name("e2e-sa");
    c.create::<ServiceAccount>(json!({"metadata": {"name": name}}))
        .await
        .context("create serviceaccount")?;
    let mut last = None;
    for _ in 0..5 {
        let mut sa = api.get(&name).await?;
        sa.automount_service_account_token = Some(true);
        match api.replace(&name, &PostParams::default(), &sa).await {
            Ok(u) => {
                last = Some(u);
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e).context("update serviceaccount"),
        }
    }
    let upd = last.context("update kept conflicting")?;
    ensure!(
        upd.automount_service_account_token == Some(true),
        "automountServiceAccountToken not updated"
    );
    Ok(())
}

// ------------------------------------------------------- services, endpoints

async fn find_kubernetes_service(c: Ctx) -> Result<()> {
    let all: Api<Service> = c.all();
    let list = all
        .list(&ListParams::default())
        .await
        .context("list services")?;
    ensure!(
        list.items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some("kubernetes")
                && s.metadata.namespace.as_deref() == Some("default")),
        "no service default/kubernetes among {} services",
        list.items.len()
    );
    Ok(())
}

async fn secure_master_service(c: Ctx) -> Result<()> {
    let api: Api<Service> = Api::namespaced(c.client.clone(), "default");
    api.get("kubernetes")
        .await
        .context("get service default/kubernetes")?;
    Ok(())
}

async fn services_delete_collection(c: Ctx) -> Result<()> {
    let api = c.api::<Service>();
    let label = "e2e-test-service=delete";
    for i in 1..=3 {
        let mut labels = json!({"e2e-test-service": "delete"});
        if i == 3 {
            labels = json!({"e2e-test-service": "keep"});
        }
        c.create::<Service>(json!({
            "metadata": {"name": format!("e2e-svc-{i}"), "labels": labels},
            "spec": {"type": "ClusterIP", "ports": [{"name": "http", "protocol": "TCP", "port": 8080 + i, "targetPort": 8080 + i}]},
        }))
        .await
        .context("create service")?;
    }
    let list = api.list(&ListParams::default()).await?;
    ensure!(
        list.items.len() == 3,
        "found {} services, want 3",
        list.items.len()
    );
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(label),
    )
    .await
    .context("delete collection of services")?;
    wait_for("one service left", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let l = api.list(&ListParams::default()).await?;
            Ok((l.items.len() == 1).then_some(()))
        }
    })
    .await
}

async fn endpoint_lifecycle(c: Ctx) -> Result<()> {
    let api = c.api::<Endpoints>();
    let name = "example-custom-endpoints";
    let label = "test-endpoint-static=true";
    let mut w = api
        .watch(&WatchParams::default().labels(label), "0")
        .await
        .context("watch endpoints")?
        .boxed();
    c.create::<Endpoints>(json!({
        "metadata": {"name": name, "labels": {"test-endpoint-static": "true"}},
        "subsets": [{"addresses": [{"ip": "10.0.0.24"}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}],
    }))
    .await
    .context("create endpoints")?;
    wait_ep_event(&mut w, "ADDED", name, |_| true).await?;

    let all: Api<Endpoints> = c.all();
    let list = all.list(&ListParams::default().labels(label)).await?;
    ensure!(
        list.items
            .iter()
            .any(|e| e.metadata.name.as_deref() == Some(name)),
        "the endpoints are not listed across namespaces"
    );

    let mut ep = api.get(name).await?;
    ep.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("test-service".into(), "updated".into());
    api.replace(name, &PostParams::default(), &ep)
        .await
        .context("update endpoints")?;
    wait_ep_event(&mut w, "MODIFIED", name, |e| {
        labels_of(&e.metadata)
            .get("test-service")
            .map(String::as_str)
            == Some("updated")
    })
    .await?;
    let got = api.get(name).await?;
    ensure!(
        labels_of(&got.metadata)
            .get("test-service")
            .map(String::as_str)
            == Some("updated"),
        "updated label missing"
    );

    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"labels": {"test-service": "patched"}},
            "subsets": [{"addresses": [{"ip": "10.0.0.25"}], "ports": [{"name": "http-test", "port": 8080, "protocol": "TCP"}]}],
        })),
    )
    .await
    .context("patch endpoints")?;
    wait_ep_event(&mut w, "MODIFIED", name, |e| {
        labels_of(&e.metadata)
            .get("test-service")
            .map(String::as_str)
            == Some("patched")
    })
    .await?;
    let got = api.get(name).await?;
    let subset = got
        .subsets
        .as_ref()
        .and_then(|s| s.first())
        .context("no subsets after the patch")?;
    let ip = subset
        .addresses
        .as_ref()
        .and_then(|a| a.first())
        .map(|a| a.ip.as_str());
    let port = subset
        .ports
        .as_ref()
        .and_then(|p| p.first())
        .map(|p| p.port);
    ensure!(ip == Some("10.0.0.25"), "patched address {ip:?}");
    ensure!(port == Some(8080), "patched port {port:?}");

    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(label),
    )
    .await
    .context("delete collection of endpoints")?;
    wait_ep_event(&mut w, "DELETED", name, |_| true).await?;
    let left = api.list(&ListParams::default().labels(label)).await?;
    ensure!(
        left.items.is_empty(),
        "endpoints left after deletecollection"
    );
    Ok(())
}

type EpWatch = Pin<Box<dyn Stream<Item = kube::Result<WatchEvent<Endpoints>>> + Send>>;

async fn wait_ep_event(
    w: &mut EpWatch,
    kind: &str,
    name: &str,
    ok: impl Fn(&Endpoints) -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = match tokio::time::timeout_at(deadline, w.next()).await {
            Err(_) => bail!("no matching {kind} event of endpoints {name} within 30s"),
            Ok(None) => bail!("watch closed"),
            Ok(Some(ev)) => ev?,
        };
        let (k, o) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => bail!("watch error: {e:?}"),
        };
        if k == kind && o.metadata.name.as_deref() == Some(name) && ok(&o) {
            return Ok(());
        }
    }
}

async fn service_status_lifecycle(c: Ctx) -> Result<()> {
    let api = c.api::<Service>();
    let name = c.name("test-service");
    let label = "test-service-static=true";
    c.create::<Service>(json!({
        "metadata": {"name": name, "labels": {"test-service-static": "true"}},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80}],
                 "selector": {"test-service-static": "true"}},
    }))
    .await
    .context("create service")?;
    let all: Api<Service> = c.all();
    let list = all.list(&ListParams::default().labels(label)).await?;
    ensure!(
        list.items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(name.as_str())),
        "the service is not listed across namespaces"
    );
    let st = api.get_status(&name).await.context("get service status")?;
    ensure!(
        st.metadata.name.as_deref() == Some(name.as_str()),
        "status read returned another object"
    );

    let patched = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"patchedstatus": "true"}},
                "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}},
            })),
        )
        .await
        .context("patch service status")?;
    let lb_ip = |s: &Service| {
        s.status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|i| i.first())
            .and_then(|i| i.ip.clone())
    };
    ensure!(
        lb_ip(&patched).as_deref() == Some("203.0.113.1"),
        "patched status: {:?}",
        patched.status
    );

    let mut cur = api.get_status(&name).await?;
    let status = cur.status.get_or_insert_with(Default::default);
    status.conditions = Some(vec![from_json(json!({
        "type": "StatusUpdate",
        "status": "True",
        "reason": "E2E",
        "message": "Set from e2e test",
        "lastTransitionTime": "2024-01-01T00:00:00Z",
    }))?]);
    let updated = api
        .replace_status(&name, &PostParams::default(), &cur)
        .await
        .context("update service status")?;
    let has_cond = updated
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "StatusUpdate" && c.reason == "E2E")
        });
    ensure!(has_cond, "updated status conditions: {:?}", updated.status);

    let p = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"test-service": "patched"}}})),
        )
        .await
        .context("patch service")?;
    ensure!(
        labels_of(&p.metadata)
            .get("test-service")
            .map(String::as_str)
            == Some("patched"),
        "patched labels {:?}",
        p.metadata.labels
    );
    api.delete(&name, &DeleteParams::default())
        .await
        .context("delete service")?;
    wait_for("service gone", Duration::from_secs(30), || {
        let api = api.clone();
        let name = name.clone();
        async move { Ok(api.get_opt(&name).await?.is_none().then_some(())) }
    })
    .await
}

// ------------------------------------------------------------------- secrets

async fn secret_empty_key(c: Ctx) -> Result<()> {
    let r = c
        .create::<Secret>(json!({
            "metadata": {"name": c.name("secret-emptykey-test")},
            "data": {"": "dmFsdWUtMQ=="},
        }))
        .await;
    ensure!(r.is_err(), "a secret with an empty key was created");
    Ok(())
}

async fn secret_patching(c: Ctx) -> Result<()> {
    let api = c.api::<Secret>();
    let name = c.name("e2e-secret");
    let label = "testsecret-constant=true";
    c.create::<Secret>(json!({
        "metadata": {"name": name, "labels": {"testsecret-constant": "true"}},
        "type": "Opaque",
        "data": {"key": "dmFsdWU="},
    }))
    .await
    .context("create secret")?;
    let all: Api<Secret> = c.all();
    let list = all.list(&ListParams::default().labels(label)).await?;
    ensure!(
        list.items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(name.as_str())),
        "the secret is not listed across namespaces"
    );
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"labels": {"testsecret": "true"}},
            "data": {"key": "dmFsdWUx"},
        })),
    )
    .await
    .context("patch secret")?;
    let got = api.get(&name).await?;
    let val = got
        .data
        .as_ref()
        .and_then(|d| d.get("key"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    ensure!(val.as_deref() == Some("value1"), "patched data: {val:?}");
    ensure!(
        labels_of(&got.metadata)
            .get("testsecret")
            .map(String::as_str)
            == Some("true"),
        "patched labels {:?}",
        got.metadata.labels
    );
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(label),
    )
    .await
    .context("delete collection of secrets")?;
    let list = all.list(&ListParams::default().labels(label)).await?;
    ensure!(
        !list
            .items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(name.as_str())),
        "the secret is still listed after deletecollection"
    );
    Ok(())
}

// -------------------------------------------------------------- podtemplates

fn podtemplate(c: &Ctx, name: &str, labels: Value) -> Value {
    json!({
        "metadata": {"name": name, "labels": labels},
        "template": {"spec": {"containers": [{"name": "nginx", "image": c.env.images.nginx}]}},
    })
}

async fn podtemplate_lifecycle(c: Ctx) -> Result<()> {
    let api = c.api::<PodTemplate>();
    let name = c.name("nginx-pod-template");
    let label = "podtemplate-static=true";
    c.create::<PodTemplate>(podtemplate(
        &c,
        &name,
        json!({"podtemplate-static": "true"}),
    ))
    .await
    .context("create podtemplate")?;
    api.get(&name).await.context("get podtemplate")?;
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"podtemplate": "patched"}}})),
    )
    .await
    .context("patch podtemplate")?;
    let got = api.get(&name).await?;
    ensure!(
        labels_of(&got.metadata)
            .get("podtemplate")
            .map(String::as_str)
            == Some("patched"),
        "patched labels {:?}",
        got.metadata.labels
    );
    let list = api.list(&ListParams::default().labels(label)).await?;
    ensure!(
        list.items
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(name.as_str())
                && labels_of(&p.metadata)
                    .get("podtemplate")
                    .map(String::as_str)
                    == Some("patched")),
        "the patched podtemplate is not listed by its static label"
    );
    api.delete(&name, &DeleteParams::default())
        .await
        .context("delete podtemplate")?;
    let list = api.list(&ListParams::default().labels(label)).await?;
    ensure!(
        list.items.is_empty(),
        "{} podtemplates left after delete",
        list.items.len()
    );
    Ok(())
}

async fn podtemplate_collection(c: Ctx) -> Result<()> {
    let api = c.api::<PodTemplate>();
    let label = "podtemplate-set=true";
    for i in 1..=3 {
        c.create::<PodTemplate>(podtemplate(
            &c,
            &format!("podtemplate-{i}"),
            json!({"podtemplate-set": "true"}),
        ))
        .await
        .context("create podtemplate")?;
    }
    let list = api.list(&ListParams::default().labels(label)).await?;
    ensure!(
        list.items.len() == 3,
        "found {} podtemplates, want 3",
        list.items.len()
    );
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(label),
    )
    .await
    .context("delete collection of podtemplates")?;
    wait_for("podtemplates gone", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let l = api.list(&ListParams::default().labels(label)).await?;
            Ok(l.items.is_empty().then_some(()))
        }
    })
    .await
}

async fn podtemplate_replace(c: Ctx) -> Result<()> {
    let api = c.api::<PodTemplate>();
    let name = c.name("podtemplate");
    c.create::<PodTemplate>(podtemplate(&c, &name, json!({})))
        .await
        .context("create podtemplate")?;
    let mut done = None;
    for _ in 0..5 {
        let mut pt = api.get(&name).await?;
        pt.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("updated".into(), "true".into());
        match api.replace(&name, &PostParams::default(), &pt).await {
            Ok(u) => {
                done = Some(u);
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e).context("replace podtemplate"),
        }
    }
    let u = done.context("replace kept conflicting")?;
    ensure!(
        u.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("updated"))
            .map(String::as_str)
            == Some("true"),
        "annotation missing after replace: {:?}",
        u.metadata.annotations
    );
    Ok(())
}

// -------------------------------------------------------------------- lease

async fn lease_api(c: Ctx) -> Result<()> {
    let api = c.api::<Lease>();
    let name = "lease";
    let spec1 = json!({
        "holderIdentity": "holder",
        "leaseDurationSeconds": 30,
        "acquireTime": "2024-01-01T00:00:00.000000Z",
        "renewTime": "2024-01-01T00:00:05.000000Z",
        "leaseTransitions": 0,
    });
    let created = c
        .create::<Lease>(json!({"metadata": {"name": name}, "spec": spec1}))
        .await
        .context("create lease")?;
    let want: k8s_openapi::api::coordination::v1::LeaseSpec = from_json(spec1)?;
    let got = api.get(name).await?;
    ensure!(
        got.spec.as_ref() == Some(&want),
        "read spec {:?}, want {want:?}",
        got.spec
    );
    let _ = created;

    let spec2 = json!({
        "holderIdentity": "holder2",
        "leaseDurationSeconds": 30,
        "acquireTime": "2024-01-01T00:01:00.000000Z",
        "renewTime": "2024-01-01T00:01:05.000000Z",
        "leaseTransitions": 1,
    });
    let mut upd = got;
    upd.spec = Some(from_json(spec2.clone())?);
    api.replace(name, &PostParams::default(), &upd)
        .await
        .context("update lease")?;
    let want: k8s_openapi::api::coordination::v1::LeaseSpec = from_json(spec2)?;
    let got = api.get(name).await?;
    ensure!(
        got.spec.as_ref() == Some(&want),
        "spec after update {:?}, want {want:?}",
        got.spec
    );

    let patch = json!({
        "holderIdentity": "holder3",
        "leaseDurationSeconds": 60,
        "acquireTime": "2024-01-01T00:02:00.000000Z",
        "renewTime": "2024-01-01T00:02:05.000000Z",
        "leaseTransitions": 2,
    });
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": patch.clone()})),
    )
    .await
    .context("patch lease")?;
    let want: k8s_openapi::api::coordination::v1::LeaseSpec = from_json(patch)?;
    let got = api.get(name).await?;
    ensure!(
        got.spec.as_ref() == Some(&want),
        "spec after patch {:?}, want {want:?}",
        got.spec
    );

    let name2 = "lease2";
    c.create::<Lease>(json!({
        "metadata": {"name": name2, "labels": {"deletecollection": "true"}},
        "spec": {"holderIdentity": "holder", "leaseDurationSeconds": 30},
    }))
    .await
    .context("create the second lease")?;
    let list = api.list(&ListParams::default()).await?;
    ensure!(
        list.items.len() == 2,
        "listed {} leases, want 2",
        list.items.len()
    );

    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("deletecollection=true"),
    )
    .await
    .context("delete collection of leases")?;
    let list = api.list(&ListParams::default()).await?;
    ensure!(
        list.items.len() == 1 && list.items[0].metadata.name.as_deref() == Some(name),
        "after deletecollection: {:?}",
        list.items
            .iter()
            .map(|l| l.metadata.name.clone())
            .collect::<Vec<_>>()
    );

    api.delete(name, &DeleteParams::default())
        .await
        .context("delete lease")?;
    match api.get(name).await {
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(_) => bail!("the deleted lease still exists"),
    }
}

// --------------------------------------------------------------- limitrange

fn limitrange(name: &str, label_value: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"e2e-limitrange": label_value}},
        "spec": {"limits": [{
            "type": "Container",
            "min": {"cpu": "100m", "memory": "100Mi"},
            "max": {"cpu": "500m", "memory": "500Mi"},
            "default": {"cpu": "500m", "memory": "500Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "200Mi"},
            "maxLimitRequestRatio": {"cpu": "5"},
        }]},
    })
}

async fn limitrange_collection(c: Ctx) -> Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let value = c.name("lr");
    let label = format!("e2e-limitrange={value}");
    let ns2 = c.name("e2e-limitrange-2");
    let nss: Api<Namespace> = c.all();
    nss.create(
        &PostParams::default(),
        &from_json(json!({"metadata": {"name": ns2}}))?,
    )
    .await
    .context("create the second namespace")?;
    let res: Result<()> = async {
        let api = c.api::<LimitRange>();
        let api2: Api<LimitRange> = Api::namespaced(c.client.clone(), &ns2);
        let name = "e2e-limitrange";
        c.create::<LimitRange>(limitrange(name, &value))
            .await
            .context("create limitrange")?;
        api2.create(
            &PostParams::default(),
            &from_json(limitrange(name, &value))?,
        )
        .await
        .context("create limitrange in the second namespace")?;

        let all: Api<LimitRange> = c.all();
        let list = all.list(&ListParams::default().labels(&label)).await?;
        ensure!(
            list.items.len() == 2,
            "listed {} limitranges, want 2",
            list.items.len()
        );

        let patched = api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"labels": {"e2e-limitrange-patched": "true"}},
                    "spec": {"limits": [{
                        "type": "Container",
                        "min": {"cpu": "100m", "memory": "100Mi"},
                        "max": {"cpu": "500m", "memory": "500Mi"},
                        "default": {"cpu": "500m", "memory": "500Mi"},
                        "defaultRequest": {"cpu": "100m", "memory": "300Mi"},
                        "maxLimitRequestRatio": {"cpu": "5"},
                    }]},
                })),
            )
            .await
            .context("patch limitrange")?;
        ensure!(
            labels_of(&patched.metadata)
                .get("e2e-limitrange-patched")
                .map(String::as_str)
                == Some("true"),
            "patched labels {:?}",
            patched.metadata.labels
        );
        let dr = patched
            .spec
            .as_ref()
            .and_then(|s| s.limits.first())
            .and_then(|l| l.default_request.as_ref());
        ensure!(
            dr.and_then(|d| d.get("memory")).map(|q| q.0.as_str()) == Some("300Mi"),
            "patched defaultRequest {dr:?}"
        );

        api.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&label),
        )
        .await
        .context("delete collection of limitranges")?;
        wait_for("one limitrange left", Duration::from_secs(30), || {
            let all = all.clone();
            let label = label.clone();
            async move {
                let l = all.list(&ListParams::default().labels(&label)).await?;
                Ok((l.items.len() == 1).then_some(l))
            }
        })
        .await
        .map(|_| ())
    }
    .await;
    let cleanup = nss.delete(&ns2, &DeleteParams::default()).await;
    res?;
    cleanup.context("delete the second namespace")?;
    Ok(())
}

// ------------------------------------------------------------- runtimeclass

async fn discovery_has(c: &Ctx, group: &str, version: &str, resources: &[&str]) -> Result<()> {
    let (st, body) = raw(c, "GET", "/apis", None, Some("application/json")).await?;
    ensure!(st == 200, "GET /apis: {st}");
    let apis: Value = serde_json::from_str(&body)?;
    let gv = format!("{group}/{version}");
    let found = apis["groups"].as_array().is_some_and(|gs| {
        gs.iter().any(|g| {
            g["name"] == group
                && g["versions"]
                    .as_array()
                    .is_some_and(|vs| vs.iter().any(|v| v["groupVersion"] == gv.as_str()))
        })
    });
    ensure!(found, "{gv} is not in the /apis discovery document");
    let (st, body) = raw(
        c,
        "GET",
        &format!("/apis/{gv}"),
        None,
        Some("application/json"),
    )
    .await?;
    ensure!(st == 200, "GET /apis/{gv}: {st}");
    let rl: Value = serde_json::from_str(&body)?;
    for r in resources {
        ensure!(
            rl["resources"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|x| x["name"] == *r)),
            "{r} is not in the /apis/{gv} discovery document"
        );
    }
    Ok(())
}

async fn runtimeclass_api(c: Ctx) -> Result<()> {
    use k8s_openapi::api::node::v1::RuntimeClass;
    discovery_has(&c, "node.k8s.io", "v1", &["runtimeclasses"]).await?;
    let api: Api<RuntimeClass> = c.all();
    let value = c.name("rc");
    let label = format!("test={value}");
    let names: Vec<String> = (1..=3).map(|i| format!("{value}-{i}")).collect();
    let res: Result<()> = async {
        for n in &names {
            api.create(
                &PostParams::default(),
                &from_json(json!({"metadata": {"name": n, "labels": {"test": value}}, "handler": format!("{value}-handler")}))?,
            )
            .await
            .context("create runtimeclass")?;
        }
        let got = api.get(&names[0]).await.context("get runtimeclass")?;
        ensure!(got.handler == format!("{value}-handler"), "handler {}", got.handler);
        let list = api.list(&ListParams::default().labels(&label)).await?;
        ensure!(list.items.len() == 3, "listed {} runtimeclasses, want 3", list.items.len());
        let rv = list.metadata.resource_version.clone().unwrap_or_default();
        let mut w = api
            .watch(&WatchParams::default().labels(&label), &rv)
            .await
            .context("watch runtimeclasses")?
            .boxed();

        let p = api
            .patch(
                &names[0],
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})),
            )
            .await
            .context("patch runtimeclass")?;
        ensure!(
            p.metadata.annotations.as_ref().and_then(|a| a.get("patched")).map(String::as_str) == Some("true"),
            "patched annotations {:?}",
            p.metadata.annotations
        );
        let mut u = p;
        u.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("updated".into(), "true".into());
        let u = api
            .replace(&names[0], &PostParams::default(), &u)
            .await
            .context("update runtimeclass")?;
        ensure!(
            u.metadata.annotations.as_ref().and_then(|a| a.get("updated")).map(String::as_str) == Some("true"),
            "updated annotations {:?}",
            u.metadata.annotations
        );
        // The watch saw both changes.
        let mut saw_patch = false;
        let mut saw_update = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !(saw_patch && saw_update) {
            let ev = tokio::time::timeout_at(deadline, w.next())
                .await
                .context("watch events of the patch and the update within 30s")?
                .context("watch closed")??;
            if let WatchEvent::Modified(o) = ev {
                let a = o.metadata.annotations.unwrap_or_default();
                saw_patch |= a.contains_key("patched") && !a.contains_key("updated");
                saw_update |= a.contains_key("updated");
            }
        }

        api.delete(&names[1], &DeleteParams::default()).await.context("delete runtimeclass")?;
        match api.get(&names[1]).await {
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
            Ok(_) => bail!("the deleted runtimeclass still exists"),
        }
        let list = api.list(&ListParams::default().labels(&label)).await?;
        ensure!(list.items.len() == 2, "listed {} runtimeclasses after delete, want 2", list.items.len());
        api.delete_collection(&DeleteParams::default(), &ListParams::default().labels(&label))
            .await
            .context("delete collection of runtimeclasses")?;
        let list = api.list(&ListParams::default().labels(&label)).await?;
        ensure!(list.items.is_empty(), "{} runtimeclasses left", list.items.len());
        Ok(())
    }
    .await;
    for n in &names {
        let _ = api.delete(n, &DeleteParams::default()).await;
    }
    res
}

fn pause_pod(c: &Ctx, name: &str, runtime_class: &str) -> Value {
    crate::ctx::pod(
        name,
        json!({
            "runtimeClassName": runtime_class,
            "containers": [{"name": "test", "image": c.env.images.pause}],
        }),
    )
}

async fn expect_pod_forbidden(c: &Ctx, pod: Value) -> Result<()> {
    match c.create::<k8s_openapi::api::core::v1::Pod>(pod).await {
        Ok(p) => bail!("the pod {:?} was created", p.metadata.name),
        Err(e) => {
            let forbidden = e
                .downcast_ref::<kube::Error>()
                .is_some_and(|k| matches!(k, kube::Error::Api(s) if s.code == 403));
            ensure!(
                forbidden,
                "pod creation failed, but not as Forbidden: {e:#}"
            );
            Ok(())
        }
    }
}

async fn runtimeclass_nonexistent(c: Ctx) -> Result<()> {
    let rc = c.name("nonexistent-runtimeclass");
    expect_pod_forbidden(&c, pause_pod(&c, &c.name("test-runtimeclass"), &rc)).await
}

async fn runtimeclass_deleted(c: Ctx) -> Result<()> {
    use k8s_openapi::api::node::v1::RuntimeClass;
    let api: Api<RuntimeClass> = c.all();
    let rc = c.name("runtimeclass");
    api.create(
        &PostParams::default(),
        &from_json(json!({"metadata": {"name": rc}, "handler": "runc"}))?,
    )
    .await
    .context("create runtimeclass")?;
    api.delete(&rc, &DeleteParams::default())
        .await
        .context("delete runtimeclass")?;
    wait_for("runtimeclass gone", Duration::from_secs(30), || {
        let api = api.clone();
        let rc = rc.clone();
        async move { Ok(api.get_opt(&rc).await?.is_none().then_some(())) }
    })
    .await?;
    expect_pod_forbidden(&c, pause_pod(&c, &c.name("test-runtimeclass"), &rc)).await
}

// --------------------------------------------------------------------- node

async fn node_lifecycle(c: Ctx) -> Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let api: Api<Node> = c.all();
    let name = c.name("e2e-fake-node");
    api.create(
        &PostParams::default(),
        &from_json(json!({
            "metadata": {"name": name},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "False", "reason": "E2E", "message": "fake node"}],
            },
        }))?,
    )
    .await
    .context("create node")?;
    let res: Result<()> = async {
        let got = api.get(&name).await.context("get node")?;
        ensure!(
            got.metadata.name.as_deref() == Some(name.as_str()),
            "read another node"
        );
        let p = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {name.clone(): "patched"}}})),
            )
            .await
            .context("patch node")?;
        ensure!(
            labels_of(&p.metadata).get(&name).map(String::as_str) == Some("patched"),
            "patched labels {:?}",
            p.metadata.labels
        );
        let list = api
            .list(&ListParams::default().labels(&format!("{name}=patched")))
            .await?;
        ensure!(
            list.items.len() == 1,
            "listed {} nodes, want 1",
            list.items.len()
        );

        let mut done = None;
        for _ in 0..5 {
            let mut n = api.get(&name).await?;
            n.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(name.clone(), "updated".into());
            match api.replace(&name, &PostParams::default(), &n).await {
                Ok(u) => {
                    done = Some(u);
                    break;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e).context("update node"),
            }
        }
        let u = done.context("update kept conflicting")?;
        ensure!(
            labels_of(&u.metadata).get(&name).map(String::as_str) == Some("updated"),
            "updated labels {:?}",
            u.metadata.labels
        );
        api.delete(&name, &DeleteParams::default())
            .await
            .context("delete node")?;
        wait_for("node gone", Duration::from_secs(60), || {
            let api = api.clone();
            let name = name.clone();
            async move { Ok(api.get_opt(&name).await?.is_none().then_some(())) }
        })
        .await
    }
    .await;
    if res.is_err() {
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
    res
}

// ---------------------------------------------------------------- immutable

// ------------------------------------------------- cluster-scoped lifecycles

/// Updates `name` with `f` applied to a fresh copy, retrying conflicts.
async fn update_retry<K>(api: &Api<K>, name: &str, f: impl Fn(&mut K)) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    for _ in 0..5 {
        let mut o = api.get(name).await?;
        f(&mut o);
        match api.replace(name, &PostParams::default(), &o).await {
            Ok(u) => return Ok(u),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e).with_context(|| format!("update {name}")),
        }
    }
    bail!("update of {name} kept conflicting")
}

fn label<K: kube::Resource>(o: &K, k: &str) -> Option<String> {
    o.meta().labels.as_ref().and_then(|l| l.get(k)).cloned()
}

/// Deletes every cluster-scoped object of `api` named in `names` (cleanup).
async fn delete_all<K>(api: &Api<K>, names: &[String])
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for n in names {
        let _ = api.delete(n, &DeleteParams::default()).await;
    }
}

// ---------------------------------------------------------- auth: automount

async fn sa_automount(c: Ctx) -> Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
    let sas = c.api::<ServiceAccount>();
    c.create::<ServiceAccount>(
        json!({"metadata": {"name": "mount"}, "automountServiceAccountToken": true}),
    )
    .await
    .context("create serviceaccount mount")?;
    c.create::<ServiceAccount>(
        json!({"metadata": {"name": "nomount"}, "automountServiceAccountToken": false}),
    )
    .await
    .context("create serviceaccount nomount")?;
    // The namespace's default serviceaccount appears shortly after the namespace.
    wait_for("serviceaccount default", Duration::from_secs(60), || {
        let sas = sas.clone();
        async move { Ok(sas.get_opt("default").await?.map(|_| ())) }
    })
    .await?;

    let mut i = 0;
    for (sa, sa_automount) in [
        ("default", None),
        ("mount", Some(true)),
        ("nomount", Some(false)),
    ] {
        for pod_automount in [None, Some(true), Some(false)] {
            i += 1;
            let name = format!("pod-service-account-{sa}-{i}");
            let mut spec = json!({
                "serviceAccountName": sa,
                "containers": [{"name": "token-test", "image": c.env.images.agnhost, "args": ["pause"]}],
            });
            if let Some(a) = pod_automount {
                spec["automountServiceAccountToken"] = json!(a);
            }
            let p: Pod = c.create_pod(crate::ctx::pod(&name, spec)).await?;
            let mounted = p
                .spec
                .as_ref()
                .map(|s| {
                    s.containers.iter().any(|ct| {
                        ct.volume_mounts
                            .as_ref()
                            .is_some_and(|vms| vms.iter().any(|vm| vm.mount_path == TOKEN_PATH))
                    })
                })
                .unwrap_or(false);
            let want = match pod_automount {
                Some(a) => a,
                None => sa_automount.unwrap_or(true),
            };
            ensure!(
                mounted == want,
                "serviceaccount {sa} (automount {sa_automount:?}), pod automount {pod_automount:?}: token mounted {mounted}, want {want}"
            );
        }
    }
    Ok(())
}

// ------------------------------------------------------ auth: subjectreview

/// A client of the cluster that impersonates `user`.
async fn impersonating_client(c: &Ctx, user: &str) -> Result<kube::Client> {
    let mut cfg = match &c.env.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).context("read kubeconfig")?;
            let opts = kube::config::KubeConfigOptions {
                context: c.env.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .context("load kubeconfig")?
        }
        None => kube::Config::infer().await.context("infer kube config")?,
    };
    cfg.auth_info.impersonate = Some(user.to_string());
    kube::Client::try_from(cfg).context("impersonating client")
}

async fn subject_review(c: Ctx) -> Result<()> {
    use k8s_openapi::api::authorization::v1::{LocalSubjectAccessReview, SubjectAccessReview};
    use k8s_openapi::api::core::v1::Pod;
    let sa = c.name("e2e-sa");
    c.create::<ServiceAccount>(json!({"metadata": {"name": sa}}))
        .await
        .context("create serviceaccount")?;
    let user = format!("system:serviceaccount:{}:{sa}", c.ns);
    let imp = impersonating_client(&c, &user).await?;
    let pods: Api<Pod> = Api::namespaced(imp, &c.ns);
    let actual = match pods.list(&ListParams::default()).await {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 403 => false,
        Err(e) => return Err(e).context("list pods as the serviceaccount"),
    };

    let attrs = json!({"namespace": c.ns, "verb": "list", "version": "v1", "resource": "pods"});
    let sars: Api<SubjectAccessReview> = c.all();
    let sar = sars
        .create(
            &PostParams::default(),
            &from_json(json!({"spec": {"resourceAttributes": attrs, "user": user}}))?,
        )
        .await
        .context("create subjectaccessreview")?;
    let allowed = sar.status.as_ref().map(|s| s.allowed).unwrap_or(false);
    ensure!(
        allowed == actual,
        "SubjectAccessReview allowed={allowed}, but listing pods as {user} was allowed={actual}"
    );

    let lsars = c.api::<LocalSubjectAccessReview>();
    let lsar = lsars
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"namespace": c.ns}, "spec": {"resourceAttributes": attrs, "user": user}}))?,
        )
        .await
        .context("create localsubjectaccessreview")?;
    let allowed = lsar.status.as_ref().map(|s| s.allowed).unwrap_or(false);
    ensure!(
        allowed == actual,
        "LocalSubjectAccessReview allowed={allowed}, but listing pods as {user} was allowed={actual}"
    );
    Ok(())
}

// ------------------------------------------------------ networking objects

/// Checks the watch `w` shows a MODIFIED event with annotation `patched`
/// (and not `updated`) and one with annotation `updated`.
async fn expect_patch_and_update<K>(
    w: &mut Pin<Box<dyn Stream<Item = kube::Result<WatchEvent<K>>> + Send>>,
) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (mut saw_patch, mut saw_update) = (false, false);
    while !(saw_patch && saw_update) {
        let ev = tokio::time::timeout_at(deadline, w.next())
            .await
            .context("watch events of the patch and the update within 30s")?
            .context("watch closed")??;
        if let WatchEvent::Modified(o) = ev {
            let a = o.meta().annotations.clone().unwrap_or_default();
            saw_patch |= a.contains_key("patched") && !a.contains_key("updated");
            saw_update |= a.contains_key("updated");
        }
    }
    Ok(())
}

fn annotation<K: kube::Resource>(o: &K, k: &str) -> Option<String> {
    o.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(k))
        .cloned()
}

async fn ingress_api(c: Ctx) -> Result<()> {
    use k8s_openapi::api::networking::v1::Ingress;
    discovery_has(
        &c,
        "networking.k8s.io",
        "v1",
        &["ingresses", "ingresses/status"],
    )
    .await?;
    let api = c.api::<Ingress>();
    let value = c.name("ing");
    let sel = format!("test={value}");
    let names: Vec<String> = (1..=3).map(|i| format!("{value}-{i}")).collect();
    for n in &names {
        c.create::<Ingress>(json!({
            "metadata": {"name": n, "labels": {"test": value}},
            "spec": {
                "defaultBackend": {"service": {"name": "default-backend", "port": {"number": 8080}}},
                "rules": [{"host": "foo.bar.com", "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "test-backend", "port": {"number": 8080}}},
                }]}}],
            },
        }))
        .await
        .context("create ingress")?;
    }
    api.get(&names[0]).await.context("get ingress")?;
    let l = api.list(&ListParams::default().labels(&sel)).await?;
    ensure!(
        l.items.len() == 3,
        "listed {} ingresses, want 3",
        l.items.len()
    );
    let all: Api<Ingress> = c.all();
    let la = all.list(&ListParams::default().labels(&sel)).await?;
    ensure!(
        la.items.len() == 3,
        "listed {} ingresses across namespaces, want 3",
        la.items.len()
    );
    let rv = l.metadata.resource_version.clone().unwrap_or_default();
    let mut w = api
        .watch(&WatchParams::default().labels(&sel), &rv)
        .await
        .context("watch ingresses")?
        .boxed();

    let p = api
        .patch(
            &names[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})),
        )
        .await
        .context("patch ingress")?;
    ensure!(
        annotation(&p, "patched").as_deref() == Some("true"),
        "patched annotations {:?}",
        p.metadata.annotations
    );
    let u = update_retry(&api, &names[0], |o| {
        o.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("updated".into(), "true".into());
    })
    .await?;
    ensure!(
        annotation(&u, "updated").as_deref() == Some("true"),
        "updated annotations {:?}",
        u.metadata.annotations
    );
    expect_patch_and_update(&mut w).await?;

    let st = api
        .get_status(&names[0])
        .await
        .context("get ingress status")?;
    ensure!(
        st.metadata.name.as_deref() == Some(names[0].as_str()),
        "status read another ingress"
    );
    let p = api
        .patch_status(
            &names[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "169.1.1.1"}]}}})),
        )
        .await
        .context("patch ingress status")?;
    let lb = |i: &Ingress| {
        i.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .and_then(|v| v.first())
            .and_then(|x| x.ip.clone())
    };
    ensure!(
        lb(&p).as_deref() == Some("169.1.1.1"),
        "patched status {:?}",
        p.status
    );
    let mut cur = api.get_status(&names[0]).await?;
    cur.status = Some(from_json(
        json!({"loadBalancer": {"ingress": [{"ip": "169.1.1.2"}]}}),
    )?);
    let u = api
        .replace_status(&names[0], &PostParams::default(), &cur)
        .await
        .context("update ingress status")?;
    ensure!(
        lb(&u).as_deref() == Some("169.1.1.2"),
        "updated status {:?}",
        u.status
    );

    api.delete(&names[2], &DeleteParams::default())
        .await
        .context("delete ingress")?;
    match api.get(&names[2]).await {
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e.into()),
        Ok(i) if i.metadata.deletion_timestamp.is_some() => {}
        Ok(_) => bail!("the deleted ingress still exists"),
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(&sel),
    )
    .await
    .context("delete collection of ingresses")?;
    wait_for("ingresses gone", Duration::from_secs(30), || {
        let api = api.clone();
        let sel = sel.clone();
        async move {
            Ok(api
                .list(&ListParams::default().labels(&sel))
                .await?
                .items
                .is_empty()
                .then_some(()))
        }
    })
    .await
}

async fn ingressclass_api(c: Ctx) -> Result<()> {
    use k8s_openapi::api::networking::v1::IngressClass;
    discovery_has(&c, "networking.k8s.io", "v1", &["ingressclasses"]).await?;
    let api: Api<IngressClass> = c.all();
    let value = c.name("ingclass");
    let sel = format!("ingressclass={value}");
    let names: Vec<String> = (1..=3).map(|i| format!("{value}-{i}")).collect();
    let res: Result<()> = async {
        for n in &names {
            api.create(
                &PostParams::default(),
                &from_json(json!({
                    "metadata": {"name": n, "labels": {"ingressclass": value, "special-label": "generic"}},
                    "spec": {"controller": "example.com/e2e-controller"},
                }))?,
            )
            .await
            .context("create ingressclass")?;
        }
        api.get(&names[0]).await.context("get ingressclass")?;
        let l = api.list(&ListParams::default().labels(&sel)).await?;
        ensure!(l.items.len() == 3, "listed {} ingressclasses, want 3", l.items.len());
        let rv = l.metadata.resource_version.clone().unwrap_or_default();
        let mut w = api.watch(&WatchParams::default().labels(&sel), &rv).await.context("watch")?.boxed();
        let p = api
            .patch(&names[0], &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})))
            .await
            .context("patch ingressclass")?;
        ensure!(annotation(&p, "patched").as_deref() == Some("true"), "patched annotations {:?}", p.metadata.annotations);
        let u = update_retry(&api, &names[0], |o| {
            o.metadata.annotations.get_or_insert_with(Default::default).insert("updated".into(), "true".into());
        })
        .await?;
        ensure!(annotation(&u, "updated").as_deref() == Some("true"), "updated annotations {:?}", u.metadata.annotations);
        expect_patch_and_update(&mut w).await?;
        api.delete(&names[2], &DeleteParams::default()).await.context("delete ingressclass")?;
        match api.get(&names[2]).await {
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
            Ok(_) => bail!("the deleted ingressclass still exists"),
        }
        api.delete_collection(&DeleteParams::default(), &ListParams::default().labels(&sel))
            .await
            .context("delete collection of ingressclasses")?;
        let l = api.list(&ListParams::default().labels(&sel)).await?;
        ensure!(l.items.is_empty(), "{} ingressclasses left", l.items.len());
        Ok(())
    }
    .await;
    delete_all(&api, &names).await;
    res
}

// ------------------------------------------------------------ apps objects

async fn job_lifecycle(c: Ctx) -> Result<()> {
    use k8s_openapi::api::batch::v1::Job;
    let api = c.api::<Job>();
    let name = c.name("e2e-job");
    let sel = format!("e2e-job-label={name}");
    c.create::<Job>(json!({
        "metadata": {"name": name, "labels": {"e2e-job-label": name}},
        "spec": {
            "suspend": true,
            "parallelism": 2,
            "completions": 2,
            "backoffLimit": 6,
            "template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "c", "image": c.env.images.busybox, "command": ["sh", "-c", "exit 0"]}],
            }},
        },
    }))
    .await
    .context("create suspended job")?;

    let p = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {name.clone(): "patched"}}})),
        )
        .await
        .context("patch job")?;
    ensure!(
        label(&p, &name).as_deref() == Some("patched"),
        "patched labels {:?}",
        p.metadata.labels
    );
    let u = update_retry(&api, &name, |o| {
        o.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(name.clone(), "updated".into());
    })
    .await?;
    ensure!(
        annotation(&u, &name).as_deref() == Some("updated"),
        "updated annotations {:?}",
        u.metadata.annotations
    );

    let all: Api<Job> = c.all();
    let l = all.list(&ListParams::default().labels(&sel)).await?;
    ensure!(
        l.items.len() == 1,
        "listed {} jobs across namespaces, want 1",
        l.items.len()
    );

    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(&sel),
    )
    .await
    .context("delete collection of jobs")?;
    // Watch from the list's resource version until the job is deleted.
    let rv = l.metadata.resource_version.clone().unwrap_or_default();
    let mut w = api
        .watch(&WatchParams::default().labels(&sel), &rv)
        .await
        .context("watch jobs")?
        .boxed();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ev = tokio::time::timeout_at(deadline, w.next())
            .await
            .context("no DELETED event of the job within 60s")?
            .context("watch closed")??;
        if let WatchEvent::Deleted(_) = ev {
            break;
        }
    }
    let l = api.list(&ListParams::default().labels(&sel)).await?;
    ensure!(l.items.is_empty(), "{} jobs left", l.items.len());
    Ok(())
}

async fn cronjob_api(c: Ctx) -> Result<()> {
    use k8s_openapi::api::batch::v1::CronJob;
    discovery_has(&c, "batch", "v1", &["cronjobs", "cronjobs/status"]).await?;
    let api = c.api::<CronJob>();
    let value = c.name("cj");
    let sel = format!("special-label={value}");
    let names: Vec<String> = (1..=3).map(|i| format!("{value}-{i}")).collect();
    for n in &names {
        c.create::<CronJob>(json!({
            "metadata": {"name": n, "labels": {"special-label": value}},
            "spec": {
                "schedule": "* */1 * * ?",
                "concurrencyPolicy": "Allow",
                "suspend": true,
                "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": "c", "image": c.env.images.busybox, "command": ["sleep", "300"]}],
                }}}},
            },
        }))
        .await
        .context("create cronjob")?;
    }
    api.get(&names[0]).await.context("get cronjob")?;
    let l = api.list(&ListParams::default().labels(&sel)).await?;
    ensure!(
        l.items.len() == 3,
        "listed {} cronjobs, want 3",
        l.items.len()
    );
    let all: Api<CronJob> = c.all();
    let la = all.list(&ListParams::default().labels(&sel)).await?;
    ensure!(
        la.items.len() == 3,
        "listed {} cronjobs across namespaces, want 3",
        la.items.len()
    );
    let rv = l.metadata.resource_version.clone().unwrap_or_default();
    let mut w = api
        .watch(&WatchParams::default().labels(&sel), &rv)
        .await
        .context("watch cronjobs")?
        .boxed();

    let p = api
        .patch(
            &names[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})),
        )
        .await
        .context("patch cronjob")?;
    ensure!(
        annotation(&p, "patched").as_deref() == Some("true"),
        "patched annotations {:?}",
        p.metadata.annotations
    );
    let u = update_retry(&api, &names[0], |o| {
        o.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("updated".into(), "true".into());
    })
    .await?;
    ensure!(
        annotation(&u, "updated").as_deref() == Some("true"),
        "updated annotations {:?}",
        u.metadata.annotations
    );
    expect_patch_and_update(&mut w).await?;

    // Status: get, patch, update.
    let st = api
        .get_status(&names[0])
        .await
        .context("get cronjob status")?;
    ensure!(
        st.metadata.name.as_deref() == Some(names[0].as_str()),
        "status read another cronjob"
    );
    let t1 = "2024-01-01T00:00:00Z";
    let p = api
        .patch_status(
            &names[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"lastScheduleTime": t1}})),
        )
        .await
        .context("patch cronjob status")?;
    let last = |cj: &CronJob| {
        cj.status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .map(|t| serde_json::to_value(t).unwrap_or_default())
    };
    ensure!(
        last(&p) == Some(json!(t1)),
        "patched lastScheduleTime {:?}",
        last(&p)
    );
    let t2 = "2024-01-01T00:01:00Z";
    let mut cur = api.get_status(&names[0]).await?;
    cur.status
        .get_or_insert_with(Default::default)
        .last_schedule_time = Some(from_json(json!(t2))?);
    let u = api
        .replace_status(&names[0], &PostParams::default(), &cur)
        .await
        .context("update cronjob status")?;
    ensure!(
        last(&u) == Some(json!(t2)),
        "updated lastScheduleTime {:?}",
        last(&u)
    );

    api.delete(&names[2], &DeleteParams::default())
        .await
        .context("delete cronjob")?;
    wait_for("cronjob gone", Duration::from_secs(30), || {
        let api = api.clone();
        let n = names[2].clone();
        async move { Ok(api.get_opt(&n).await?.is_none().then_some(())) }
    })
    .await?;
    let l = api.list(&ListParams::default().labels(&sel)).await?;
    ensure!(
        l.items.len() == 2,
        "listed {} cronjobs after delete, want 2",
        l.items.len()
    );
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(&sel),
    )
    .await
    .context("delete collection of cronjobs")?;
    wait_for("cronjobs gone", Duration::from_secs(30), || {
        let api = api.clone();
        let sel = sel.clone();
        async move {
            Ok(api
                .list(&ListParams::default().labels(&sel))
                .await?
                .items
                .is_empty()
                .then_some(()))
        }
    })
    .await
}

// ------------------------------------------------------ resourcequota status

/// A quantity's value as a number (cores or bytes), for semantic equality.
fn quantity_value(q: &str) -> Option<f64> {
    let q = q.trim();
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0f64.powi(4)),
        ("Pi", 1024.0f64.powi(5)),
        ("Ei", 1024.0f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (s, f) in suffixes {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<f64>().ok().map(|v| v * f);
        }
    }
    q.parse::<f64>().ok()
}

/// Whether two resource lists are semantically equal.
fn same_resources(
    a: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    b: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> bool {
    let empty = BTreeMap::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k).is_some_and(|w| {
                quantity_value(&v.0).is_some() && quantity_value(&v.0) == quantity_value(&w.0)
            })
        })
}

fn status_hard(
    rq: &ResourceQuota,
) -> Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>> {
    rq.status.as_ref().and_then(|s| s.hard.as_ref())
}

fn spec_hard(
    rq: &ResourceQuota,
) -> Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>> {
    rq.spec.as_ref().and_then(|s| s.hard.as_ref())
}

fn hard_is(
    h: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    cpu: &str,
    mem: &str,
) -> bool {
    let get = |k: &str| h.and_then(|h| h.get(k)).and_then(|q| quantity_value(&q.0));
    get("cpu") == quantity_value(cpu) && get("memory") == quantity_value(mem)
}

type RqWatch = Pin<Box<dyn Stream<Item = kube::Result<WatchEvent<ResourceQuota>>> + Send>>;

/// Waits until the watch shows quota `name` satisfying `ok`.
async fn wait_rq_event(
    w: &mut RqWatch,
    name: &str,
    what: &str,
    ok: impl Fn(&ResourceQuota) -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ev = tokio::time::timeout_at(deadline, w.next())
            .await
            .with_context(|| format!("no watch event of quota {name} with {what} within 60s"))?
            .context("watch closed")??;
        match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o)
                if o.metadata.name.as_deref() == Some(name) && ok(&o) =>
            {
                return Ok(());
            }
            WatchEvent::Error(e) => bail!("watch error: {e:?}"),
            _ => {}
        }
    }
}

async fn rq_status(c: Ctx) -> Result<()> {
    let api = c.api::<ResourceQuota>();
    let name = c.name("e2e-rq-status");
    let sel = format!("e2e-rq-label={name}");
    let all: Api<ResourceQuota> = c.all();
    let watch_from = |rv: String| {
        let api = api.clone();
        let sel = sel.clone();
        async move {
            Ok::<RqWatch, anyhow::Error>(
                api.watch(&WatchParams::default().labels(&sel), &rv)
                    .await
                    .context("watch resourcequotas")?
                    .boxed(),
            )
        }
    };
    let l = all.list(&ListParams::default().labels(&sel)).await?;
    let mut w = watch_from(l.metadata.resource_version.clone().unwrap_or_default()).await?;
    c.create::<ResourceQuota>(json!({
        "metadata": {"name": name, "labels": {"e2e-rq-label": name}},
        "spec": {"hard": {"cpu": "500m", "memory": "500Mi"}},
    }))
    .await
    .context("create resourcequota")?;
    let initial = api.get(&name).await?;
    ensure!(
        hard_is(spec_hard(&initial), "500m", "500Mi"),
        "spec hard {:?}",
        spec_hard(&initial)
    );

    // Update /status with the spec's hard values.
    let hard = spec_hard(&initial).cloned();
    let mut updated = None;
    for _ in 0..5 {
        let mut cur = api.get(&name).await?;
        cur.status = Some(k8s_openapi::api::core::v1::ResourceQuotaStatus {
            hard: hard.clone(),
            used: None,
        });
        match api
            .replace_status(&name, &PostParams::default(), &cur)
            .await
        {
            Ok(u) => {
                updated = Some(u);
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e).context("update resourcequota status"),
        }
    }
    let updated = updated.context("status update kept conflicting")?;
    let want = spec_hard(&updated).cloned();
    wait_rq_event(&mut w, &name, "status hard = spec hard", |rq| {
        same_resources(status_hard(rq), want.as_ref())
    })
    .await?;

    let l = all.list(&ListParams::default().labels(&sel)).await?;
    let mut w = watch_from(l.metadata.resource_version.clone().unwrap_or_default()).await?;
    let x = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"hard": {"cpu": "1", "memory": "1Gi"}}})),
        )
        .await
        .context("patch resourcequota spec")?;
    ensure!(
        hard_is(spec_hard(&x), "1", "1Gi"),
        "patched spec hard {:?}",
        spec_hard(&x)
    );
    let hard = spec_hard(&x).cloned();
    let patched = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"hard": hard}})),
        )
        .await
        .context("patch resourcequota status")?;
    let want = spec_hard(&patched).cloned();
    wait_rq_event(&mut w, &name, "status hard = patched spec hard", |rq| {
        same_resources(status_hard(rq), want.as_ref())
    })
    .await?;

    let st = api
        .get_status(&name)
        .await
        .context("get resourcequota status")?;
    ensure!(
        hard_is(status_hard(&st), "1", "1Gi"),
        "status hard {:?}, want cpu 1, memory 1Gi",
        status_hard(&st)
    );

    let l = all.list(&ListParams::default().labels(&sel)).await?;
    let mut w = watch_from(l.metadata.resource_version.clone().unwrap_or_default()).await?;
    let re = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"hard": {"cpu": "2", "memory": "2Gi"}}})),
        )
        .await
        .context("repatch resourcequota status")?;
    ensure!(
        hard_is(status_hard(&re), "2", "2Gi"),
        "repatched status hard {:?}",
        status_hard(&re)
    );
    wait_rq_event(&mut w, &name, "status hard cpu 2, memory 2Gi", |rq| {
        hard_is(status_hard(rq), "2", "2Gi")
    })
    .await?;

    // The quota controller resets the status to the unchanged spec on its
    // next full resync (every 5 minutes by default).
    wait_for(
        "quota status reset to the spec",
        Duration::from_secs(360),
        || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let rq = api.get(&name).await?;
                Ok(
                    (hard_is(spec_hard(&rq), "1", "1Gi") && hard_is(status_hard(&rq), "1", "1Gi"))
                        .then_some(()),
                )
            }
        },
    )
    .await
}

// ------------------------------------------------ validating admission policy

/// Create/get/list/watch/patch/update/delete/deletecollection of a
/// cluster-scoped admissionregistration.k8s.io/v1 kind.
async fn admission_kind_api(
    c: &Ctx,
    kind: &str,
    plural: &str,
    extra_resources: &[&str],
    body: impl Fn(&str, &str) -> Value,
) -> Result<()> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let mut resources = vec![plural];
    resources.extend_from_slice(extra_resources);
    discovery_has(c, "admissionregistration.k8s.io", "v1", &resources).await?;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind),
        plural,
    );
    let api: Api<DynamicObject> = Api::all_with(c.client.clone(), &ar);
    let value = c.name("e2e");
    let sel = format!("e2e-test={value}");
    let names: Vec<String> = (1..=3).map(|i| format!("{value}-{i}")).collect();
    let res: Result<()> = async {
        for n in &names {
            let mut o: DynamicObject = from_json(body(n, &value))?;
            o.types = Some(kube::api::TypeMeta {
                api_version: "admissionregistration.k8s.io/v1".into(),
                kind: kind.into(),
            });
            api.create(&PostParams::default(), &o)
                .await
                .with_context(|| format!("create {kind}"))?;
        }
        api.get(&names[0])
            .await
            .with_context(|| format!("get {kind}"))?;
        let l = api.list(&ListParams::default().labels(&sel)).await?;
        ensure!(
            l.items.len() == 3,
            "listed {} {plural}, want 3",
            l.items.len()
        );
        let rv = l.metadata.resource_version.clone().unwrap_or_default();
        let mut w = api
            .watch(&WatchParams::default().labels(&sel), &rv)
            .await
            .context("watch")?
            .boxed();
        let p = api
            .patch(
                &names[0],
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})),
            )
            .await
            .with_context(|| format!("patch {kind}"))?;
        ensure!(
            annotation(&p, "patched").as_deref() == Some("true"),
            "patched annotations {:?}",
            p.metadata.annotations
        );
        let u = update_retry(&api, &names[0], |o| {
            o.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert("updated".into(), "true".into());
        })
        .await?;
        ensure!(
            annotation(&u, "updated").as_deref() == Some("true"),
            "updated annotations {:?}",
            u.metadata.annotations
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let (mut saw_patch, mut saw_update) = (false, false);
        while !(saw_patch && saw_update) {
            let ev = tokio::time::timeout_at(deadline, w.next())
                .await
                .context("watch events of the patch and the update within 30s")?
                .context("watch closed")??;
            if let WatchEvent::Modified(o) = ev {
                let a = o.metadata.annotations.unwrap_or_default();
                saw_patch |= a.contains_key("patched") && !a.contains_key("updated");
                saw_update |= a.contains_key("updated");
            }
        }
        if extra_resources.iter().any(|r| r.ends_with("/status")) {
            let st: DynamicObject = api
                .get_status(&names[0])
                .await
                .with_context(|| format!("get {kind} status"))?;
            ensure!(
                st.metadata.name.as_deref() == Some(names[0].as_str()),
                "status read another object"
            );
        }
        api.delete(&names[2], &DeleteParams::default())
            .await
            .with_context(|| format!("delete {kind}"))?;
        match api.get(&names[2]).await {
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
            Ok(_) => bail!("the deleted {kind} still exists"),
        }
        api.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&sel),
        )
        .await
        .with_context(|| format!("delete collection of {plural}"))?;
        let l = api.list(&ListParams::default().labels(&sel)).await?;
        ensure!(l.items.is_empty(), "{} {plural} left", l.items.len());
        Ok(())
    }
    .await;
    for n in &names {
        let _ = api.delete(n, &DeleteParams::default()).await;
    }
    res
}

async fn vap_api(c: Ctx) -> Result<()> {
    admission_kind_api(
        &c,
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        &["validatingadmissionpolicies/status"],
        |name, value| {
            json!({
                "metadata": {"name": name, "labels": {"e2e-test": value}},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {"resourceRules": [{
                        "apiGroups": ["apps"], "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"], "resources": ["deployments"],
                    }]},
                    "validations": [{"expression": "object.spec.replicas <= 100"}],
                },
            })
        },
    )
    .await
}

async fn vap_binding_api(c: Ctx) -> Result<()> {
    admission_kind_api(
        &c,
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        &[],
        |name, value| {
            json!({
                "metadata": {"name": name, "labels": {"e2e-test": value}},
                "spec": {
                    "policyName": format!("{value}-policy"),
                    "validationActions": ["Deny"],
                    "matchResources": {"namespaceSelector": {"matchLabels": {"e2e-test": value}}},
                },
            })
        },
    )
    .await
}

// ------------------------------------------------------------- certificates

/// A PEM certificate request for CN e2e.example.com (EC P-256), base64.
const CSR_PEM_B64: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIaU1JR0tBZ0VBTUNneEdEQVdCZ05WQkFNTUQyVXlaUzVsZUdGdGNHeGxMbU52YlRFTU1Bb0dBMVVFQ2d3RApaVEpsTUZrd0V3WUhLb1pJemowQ0FRWUlLb1pJemowREFRY0RRZ0FFemdFZGFiYSthdmhtck5FTVlVS3N5dDUxClI0SS9Mc251NWtoa0VBREVscE1QaEJydDZySjB0RXNEMEhzejB2TnVsazU3U1kwTWtRTHY3bGhFR0Q5eTI2QUEKTUFvR0NDcUdTTTQ5QkFNQ0EwY0FNRVFDSUhSdTM2d1NmVkV5T0xqbXNPQjU1RndiSHRMbUg4eml1b1hTd3dHVQpoY2taQWlBMTlPWnluRmRLRFhzR05QSHpzcHZ3NWR3MjVQMVY4K1Y5eWdQRjZFeU85Zz09Ci0tLS0tRU5EIENFUlRJRklDQVRFIFJFUVVFU1QtLS0tLQo=";

/// A self-signed PEM certificate for e2e.example.com, base64.
const CERT_PEM_B64: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJwekNDQVUyZ0F3SUJBZ0lVUHZzNVNmNHVrcSs4YTNtRHR0T0JsUFErUk0wd0NnWUlLb1pJemowRUF3SXcKR2pFWU1CWUdBMVVFQXd3UFpUSmxMbVY0WVcxd2JHVXVZMjl0TUNBWERUSTJNVEl3TlRBMk1qY3lOVm9ZRHpJeApNall4TVRFeE1EWXlOekkxV2pBYU1SZ3dGZ1lEVlFRRERBOWxNbVV1WlhoaGJYQnNaUzVqYjIwd1dUQVRCZ2NxCmhrak9QUUlCQmdncWhrak9QUU1CQndOQ0FBU2NtMjdvRzNaa3UvbGF6L1NUZ3VGT0UrWnVyaTlYbE56RmJYMmoKeHFac1BBbERqTU5ic2M4SEVkT1o3REhtNFBEYmhBVlVmTC9LUVVneXM1NjVLeUE1bzI4d2JUQWRCZ05WSFE0RQpGZ1FVTzB1TTlwMVlVZ1BKUjhsSDBzRXhaZlVMUVpFd0h3WURWUjBqQkJnd0ZvQVVPMHVNOXAxWVVnUEpSOGxICjBzRXhaZlVMUVpFd0R3WURWUjBUQVFIL0JBVXdBd0VCL3pBYUJnTlZIUkVFRXpBUmdnOWxNbVV1WlhoaGJYQnMKWlM1amIyMHdDZ1lJS29aSXpqMEVBd0lEU0FBd1JRSWdGSUgyaTdzeS9nWnlBRlV3Mkdacy9mVHRTQUJyeHRxawpGNUI5SXUyL0Z4a0NJUURmT3RxWmhRSWx0emJFRGFHdkp1NjBvZGlxUlBOdjVoRE5WakNNNU9pUXhBPT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";

async fn csr_api(c: Ctx) -> Result<()> {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest as Csr;
    discovery_has(
        &c,
        "certificates.k8s.io",
        "v1",
        &[
            "certificatesigningrequests",
            "certificatesigningrequests/approval",
            "certificatesigningrequests/status",
        ],
    )
    .await?;
    let api: Api<Csr> = c.all();
    let signer = format!("example.com/e2e-{}", c.ns);
    let by_signer = ListParams::default().fields(&format!("spec.signerName={signer}"));
    let template = json!({
        "metadata": {"generateName": "e2e-example-csr-"},
        "spec": {
            "request": CSR_PEM_B64,
            "signerName": signer,
            "expirationSeconds": 3600,
            "usages": ["digital signature", "key encipherment", "server auth"],
        },
    });
    let mut created_names = Vec::new();
    let res: Result<()> = async {
        let mut created = None;
        for _ in 0..3 {
            let o = api
                .create(&PostParams::default(), &from_json(template.clone())?)
                .await
                .context("create csr")?;
            created_names.push(o.metadata.name.clone().unwrap_or_default());
            created = Some(o);
        }
        let created = created.context("no csr")?;
        let name = created.metadata.name.clone().unwrap_or_default();
        let got = api.get(&name).await.context("get csr")?;
        ensure!(got.metadata.uid == created.metadata.uid, "get returned another csr");
        ensure!(got.spec.expiration_seconds == Some(3600), "expirationSeconds {:?}", got.spec.expiration_seconds);
        let l = api.list(&by_signer).await.context("list csrs by signer")?;
        ensure!(l.items.len() == 3, "listed {} csrs by signer, want 3", l.items.len());

        let rv = l.metadata.resource_version.clone().unwrap_or_default();
        let mut w = api
            .watch(&WatchParams::default().fields(&format!("metadata.name={name}")), &rv)
            .await
            .context("watch csr")?
            .boxed();
        let p = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})))
            .await
            .context("patch csr")?;
        ensure!(annotation(&p, "patched").as_deref() == Some("true"), "patched annotations {:?}", p.metadata.annotations);
        let mut u = p.clone();
        u.metadata.annotations.get_or_insert_with(Default::default).insert("updated".into(), "true".into());
        let u = api.replace(&name, &PostParams::default(), &u).await.context("update csr")?;
        ensure!(annotation(&u, "updated").as_deref() == Some("true"), "updated annotations {:?}", u.metadata.annotations);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ev = tokio::time::timeout_at(deadline, w.next())
                .await
                .context("no watch event with the patched annotation within 30s")?
                .context("watch closed")??;
            match ev {
                WatchEvent::Modified(o) if annotation(&o, "patched").as_deref() == Some("true") => break,
                WatchEvent::Modified(_) | WatchEvent::Bookmark(_) => {}
                other => bail!("unexpected watch event {other:?}"),
            }
        }

        // /approval
        let path = format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}");
        let (st, body) = raw(&c, "GET", &format!("{path}/approval"), None, Some("application/json")).await?;
        ensure!(st == 200, "GET approval: {st}: {body}");
        let v: Value = serde_json::from_str(&body)?;
        ensure!(
            v["kind"] == "CertificateSigningRequest" && v["apiVersion"] == "certificates.k8s.io/v1",
            "approval read kind {} {}",
            v["apiVersion"],
            v["kind"]
        );
        ensure!(v["metadata"]["uid"].as_str() == created.metadata.uid.as_deref(), "approval read another csr");
        let pa = api
            .patch_subresource(
                "approval",
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"annotations": {"patchedapproval": "true"}},
                    "status": {"conditions": [{"type": "ApprovalPatch", "status": "True", "reason": "e2e"}]},
                })),
            )
            .await
            .context("patch approval")?;
        let conds = pa.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        ensure!(
            conds.len() == 1 && conds[0].type_ == "ApprovalPatch",
            "patched approval conditions {conds:?}"
        );
        ensure!(
            annotation(&pa, "patchedapproval").as_deref() == Some("true"),
            "patched approval annotations {:?}",
            pa.metadata.annotations
        );
        let mut ua = pa.clone();
        ua.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new).push(from_json(
            json!({"type": "Approved", "status": "True", "reason": "E2E", "message": "Set from an e2e test"}),
        )?);
        let ua = api
            .replace_subresource("approval", &name, &PostParams::default(), &ua)
            .await
            .context("update approval")?;
        let conds = ua.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        ensure!(conds.len() == 2 && conds[1].type_ == "Approved", "updated approval conditions {conds:?}");

        // /status
        let (st, body) = raw(&c, "GET", &format!("{path}/status"), None, Some("application/json")).await?;
        ensure!(st == 200, "GET status: {st}: {body}");
        let v: Value = serde_json::from_str(&body)?;
        ensure!(v["kind"] == "CertificateSigningRequest", "status read kind {}", v["kind"]);
        ensure!(v["metadata"]["uid"].as_str() == created.metadata.uid.as_deref(), "status read another csr");
        let ps = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"annotations": {"patchedstatus": "true"}},
                    "status": {"certificate": CERT_PEM_B64},
                })),
            )
            .await
            .context("patch status")?;
        let cert = ps.status.as_ref().and_then(|s| s.certificate.clone());
        let want = serde_json::from_value::<k8s_openapi::ByteString>(json!(CERT_PEM_B64))?;
        ensure!(cert.as_ref() == Some(&want), "patched status certificate differs");
        ensure!(
            annotation(&ps, "patchedstatus").as_deref() == Some("true"),
            "patched status annotations {:?}",
            ps.metadata.annotations
        );
        let mut us = ps.clone();
        us.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new).push(from_json(
            json!({"type": "StatusUpdate", "status": "True", "reason": "E2E", "message": "Set from an e2e test"}),
        )?);
        let n = us.status.as_ref().and_then(|s| s.conditions.as_ref()).map(Vec::len).unwrap_or(0);
        let us = api.replace_status(&name, &PostParams::default(), &us).await.context("update status")?;
        let conds = us.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        ensure!(
            conds.len() == n && conds.last().map(|c| c.type_.as_str()) == Some("StatusUpdate"),
            "updated status conditions {conds:?}"
        );

        api.delete(&name, &DeleteParams::default()).await.context("delete csr")?;
        match api.get(&name).await {
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
            Ok(_) => bail!("the deleted csr still exists"),
        }
        let l = api.list(&by_signer).await?;
        ensure!(l.items.len() == 2, "listed {} csrs after delete, want 2", l.items.len());
        api.delete_collection(&DeleteParams::default(), &by_signer)
            .await
            .context("delete collection of csrs")?;
        let l = api.list(&by_signer).await?;
        ensure!(l.items.is_empty(), "{} csrs left", l.items.len());
        Ok(())
    }
    .await;
    delete_all(&api, &created_names).await;
    res
}

// ----------------------------------------------------------------------- pdb

type Pdb = k8s_openapi::api::policy::v1::PodDisruptionBudget;

/// Creates PDB `name` in `ns` with minAvailable `min` and waits until the
/// disruption controller has processed it.
async fn create_pdb(c: &Ctx, ns: &str, name: &str, min: Value, labels: Value) -> Result<Pdb> {
    let api: Api<Pdb> = Api::namespaced(c.client.clone(), ns);
    api.create(
        &PostParams::default(),
        &from_json(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"minAvailable": min, "selector": {"matchLabels": {"foo": "bar"}}},
        }))?,
    )
    .await
    .with_context(|| format!("create pdb {name}"))?;
    wait_pdb_processed(&api, name).await
}

async fn wait_pdb_processed(api: &Api<Pdb>, name: &str) -> Result<Pdb> {
    wait_for(
        &format!("pdb {name} processed"),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let p = api.get(name).await?;
                let observed = p.status.as_ref().and_then(|s| s.observed_generation);
                Ok((observed.is_some() && observed >= p.metadata.generation).then_some(p))
            }
        },
    )
    .await
}

async fn pdb_list_delete_collection(c: Ctx) -> Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let nss: Api<Namespace> = c.all();
    let ns2 = c.name("disruption-2");
    nss.create(
        &PostParams::default(),
        &from_json(json!({"metadata": {"name": ns2}}))?,
    )
    .await
    .context("create the second namespace")?;
    let res: Result<()> = async {
        let special = json!({"foo_pdb": "bar_pdb"});
        let sel = "foo_pdb=bar_pdb";
        create_pdb(&c, &c.ns, "foo", json!(2), special.clone()).await?;
        create_pdb(&c, &c.ns, "foo2", json!("1%"), special.clone()).await?;
        create_pdb(&c, &ns2, "foo3", json!(2), special.clone()).await?;

        let names = |l: &kube::core::ObjectList<Pdb>| {
            let mut v: Vec<String> = l
                .items
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            v.sort();
            v
        };
        let all: Api<Pdb> = c.all();
        let l = all.list(&ListParams::default().labels(sel)).await?;
        ensure!(
            names(&l) == ["foo", "foo2", "foo3"],
            "pdbs across namespaces: {:?}",
            names(&l)
        );
        let api = c.api::<Pdb>();
        let l = api.list(&ListParams::default().labels(sel)).await?;
        ensure!(
            names(&l) == ["foo", "foo2"],
            "pdbs in the namespace: {:?}",
            names(&l)
        );

        api.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .context("delete collection of pdbs")?;
        wait_for(
            "pdbs of the namespace gone",
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    Ok(api
                        .list(&ListParams::default())
                        .await?
                        .items
                        .is_empty()
                        .then_some(()))
                }
            },
        )
        .await
    }
    .await;
    let cleanup = nss.delete(&ns2, &DeleteParams::default()).await;
    res?;
    cleanup.context("delete the second namespace")?;
    Ok(())
}

async fn pdb_crud(c: Ctx) -> Result<()> {
    let api = c.api::<Pdb>();
    let name = "foo";
    create_pdb(&c, &c.ns, name, json!("1%"), json!({"foo": "bar"})).await?;
    let min = |p: &Pdb| {
        p.spec
            .as_ref()
            .and_then(|s| s.min_available.as_ref())
            .map(|m| serde_json::to_value(m).unwrap_or_default())
    };

    update_retry(&api, name, |p| {
        if let Some(s) = p.spec.as_mut() {
            s.min_available = serde_json::from_value(json!("2%")).ok();
        }
    })
    .await?;
    let p = wait_pdb_processed(&api, name).await?;
    ensure!(
        min(&p) == Some(json!("2%")),
        "minAvailable after update {:?}",
        min(&p)
    );

    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": "3%"}})),
    )
    .await
    .context("patch pdb")?;
    let p = wait_pdb_processed(&api, name).await?;
    ensure!(
        min(&p) == Some(json!("3%")),
        "minAvailable after patch {:?}",
        min(&p)
    );

    api.delete(name, &DeleteParams::default())
        .await
        .context("delete pdb")?;
    wait_for("pdb gone", Duration::from_secs(60), || {
        let api = api.clone();
        async move { Ok(api.get_opt(name).await?.is_none().then_some(())) }
    })
    .await
}

// ------------------------------------------------------ limitrange defaults

fn resources(cpu: &str, mem: &str, eph: &str) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in [("cpu", cpu), ("memory", mem), ("ephemeral-storage", eph)] {
        if !v.is_empty() {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}

/// Whether the pod's every container has requests and limits equal to
/// `req` and `lim` (semantic quantity equality).
fn pod_resources_are(p: &k8s_openapi::api::core::v1::Pod, req: &Value, lim: &Value) -> Result<()> {
    let want =
        |v: &Value| -> BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
            serde_json::from_value(v.clone()).unwrap_or_default()
        };
    let (wreq, wlim) = (want(req), want(lim));
    for ct in &p.spec.as_ref().context("pod has no spec")?.containers {
        let r = ct.resources.as_ref();
        let got_req = r.and_then(|r| r.requests.as_ref());
        let got_lim = r.and_then(|r| r.limits.as_ref());
        ensure!(
            same_resources(got_req, Some(&wreq)),
            "container {} requests {got_req:?}, want {wreq:?}",
            ct.name
        );
        ensure!(
            same_resources(got_lim, Some(&wlim)),
            "container {} limits {got_lim:?}, want {wlim:?}",
            ct.name
        );
    }
    Ok(())
}

fn lr_pod(c: &Ctx, name: &str, req: Value, lim: Value) -> Value {
    crate::ctx::pod(
        name,
        json!({"containers": [{
            "name": "pause",
            "image": c.env.images.pause,
            "resources": {"requests": req, "limits": lim},
        }]}),
    )
}

async fn limitrange_defaults(c: Ctx) -> Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    let api = c.api::<LimitRange>();
    let name = c.name("limit-range");
    let sel = format!("time={name}");
    let min = resources("50m", "100Mi", "100Gi");
    let max = resources("500m", "500Mi", "500Gi");
    let default_limit = resources("500m", "500Mi", "500Gi");
    let default_request = resources("100m", "200Mi", "200Gi");

    let mut w = api
        .watch(&WatchParams::default().labels(&sel), "0")
        .await
        .context("watch limitranges")?
        .boxed();
    c.create::<LimitRange>(json!({
        "metadata": {"name": name, "labels": {"time": name}},
        "spec": {"limits": [{
            "type": "Container",
            "min": min, "max": max,
            "default": default_limit, "defaultRequest": default_request,
        }]},
    }))
    .await
    .context("create limitrange")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = tokio::time::timeout_at(deadline, w.next())
            .await
            .context("no ADDED event of the limitrange within 30s")?
            .context("watch closed")??;
        if matches!(ev, WatchEvent::Added(_)) {
            break;
        }
    }
    let lr = api.get(&name).await.context("get limitrange")?;
    let item = lr
        .spec
        .as_ref()
        .and_then(|s| s.limits.first())
        .context("limitrange has no limits")?;
    let as_map =
        |v: &Value| -> BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
            serde_json::from_value(v.clone()).unwrap_or_default()
        };
    ensure!(
        same_resources(
            item.default_request.as_ref(),
            Some(&as_map(&default_request))
        ),
        "defaultRequest {:?}",
        item.default_request
    );
    ensure!(
        same_resources(item.default.as_ref(), Some(&as_map(&default_limit))),
        "default {:?}",
        item.default
    );

    // A pod with no resources gets the defaults.
    let p: Pod = c
        .create_pod(lr_pod(&c, "pod-no-resources", json!({}), json!({})))
        .await?;
    pod_resources_are(&p, &default_request, &default_limit)?;

    // A pod with partial resources keeps them and gets default limits.
    let req = resources("300m", "150Mi", "150Gi");
    let p: Pod = c
        .create_pod(lr_pod(&c, "pod-partial-resources", req.clone(), json!({})))
        .await?;
    pod_resources_are(&p, &req, &default_limit)?;

    // Pods outside min/max are rejected.
    let r = c
        .create_pod(lr_pod(
            &c,
            "pod-below-min",
            resources("10m", "50Mi", "50Gi"),
            json!({}),
        ))
        .await;
    ensure!(r.is_err(), "a pod below the limitrange minimum was created");
    let r = c
        .create_pod(lr_pod(
            &c,
            "pod-above-max",
            resources("600m", "600Mi", "600Gi"),
            resources("600m", "600Mi", "600Gi"),
        ))
        .await;
    ensure!(r.is_err(), "a pod above the limitrange maximum was created");

    // Lower the minimum: the pod below the former minimum is admitted.
    update_retry(&api, &name, |o| {
        if let Some(l) = o.spec.as_mut().and_then(|s| s.limits.first_mut()) {
            l.min = serde_json::from_value(resources("5m", "50Mi", "50Gi")).ok();
        }
    })
    .await?;
    wait_for(
        "a pod below the former minimum admitted",
        Duration::from_secs(30),
        || {
            let c = c.clone();
            async move {
                let r = c
                    .create_pod(lr_pod(
                        &c,
                        "pod-below-former-min",
                        resources("10m", "50Mi", "50Gi"),
                        json!({}),
                    ))
                    .await;
                Ok(r.ok().map(|_| ()))
            }
        },
    )
    .await?;

    // Delete the limitrange: the pod above the maximum is admitted.
    api.delete(&name, &DeleteParams::default())
        .await
        .context("delete limitrange")?;
    wait_for("limitrange gone", Duration::from_secs(30), || {
        let api = api.clone();
        let name = name.clone();
        async move { Ok(api.get_opt(&name).await?.is_none().then_some(())) }
    })
    .await?;
    wait_for(
        "a pod above the former maximum admitted",
        Duration::from_secs(30),
        || {
            let c = c.clone();
            async move {
                let r = c
                    .create_pod(lr_pod(
                        &c,
                        "pod-above-former-max",
                        resources("600m", "600Mi", "600Gi"),
                        resources("600m", "600Mi", "600Gi"),
                    ))
                    .await;
                Ok(r.ok().map(|_| ()))
            }
        },
    )
    .await
}

// ------------------------------------------------------------ token review

async fn sa_token_review(c: Ctx) -> Result<()> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
    let sa = c.name("e2e-sa");
    c.create::<ServiceAccount>(json!({"metadata": {"name": sa}}))
        .await
        .context("create serviceaccount")?;
    let tr: TokenRequest = from_json(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": []}}),
    )?;
    let (st, body) = raw(
        &c,
        "POST",
        &format!("/api/v1/namespaces/{}/serviceaccounts/{sa}/token", c.ns),
        Some(&serde_json::to_value(&tr)?),
        Some("application/json"),
    )
    .await?;
    ensure!((200..300).contains(&st), "create token: {st}: {body}");
    let tr: TokenRequest = serde_json::from_str(&body).context("token request response")?;
    let token = tr.status.map(|s| s.token).unwrap_or_default();
    ensure!(!token.is_empty(), "the token is empty");

    let reviews: Api<TokenReview> = c.all();
    let review = reviews
        .create(
            &PostParams::default(),
            &from_json(json!({"spec": {"token": token}}))?,
        )
        .await
        .context("create tokenreview")?;
    let status = review.status.context("tokenreview has no status")?;
    ensure!(
        status.error.as_deref().unwrap_or("").is_empty(),
        "tokenreview error: {:?}",
        status.error
    );
    ensure!(
        status.authenticated == Some(true),
        "the token is not authenticated"
    );
    Ok(())
}

// ------------------------------------------------- servicecidr and ipaddress

async fn servicecidr_api(c: Ctx) -> Result<()> {
    use k8s_openapi::api::networking::v1::ServiceCIDR;
    let api: Api<ServiceCIDR> = c.all();
    let name = "kubernetes";
    api.get(name).await.context("get the default servicecidr")?;
    let res: Result<()> = async {
        let p = api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})),
            )
            .await
            .context("patch servicecidr")?;
        ensure!(
            annotation(&p, "patched").as_deref() == Some("true"),
            "patched annotations {:?}",
            p.metadata.annotations
        );
        let u = update_retry(&api, name, |o| {
            o.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert("updated".into(), "true".into());
        })
        .await?;
        ensure!(
            annotation(&u, "updated").as_deref() == Some("true"),
            "updated annotations {:?}",
            u.metadata.annotations
        );
        let l = api
            .list(&ListParams::default())
            .await
            .context("list servicecidrs")?;
        ensure!(
            !l.items.is_empty(),
            "no servicecidr listed, not even the default"
        );
        let _watch = api
            .watch(&WatchParams::default(), "0")
            .await
            .context("watch servicecidrs")?;
        Ok(())
    }
    .await;
    // Leave the default ServiceCIDR as it was.
    let _ = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"patched": null, "updated": null}}})),
        )
        .await;
    res
}

async fn ipaddress_api(c: Ctx) -> Result<()> {
    use k8s_openapi::api::networking::v1::IPAddress;
    let api: Api<IPAddress> = c.all();
    let v4 = "255.255.255.255".to_string();
    let v6 = "fe80::42:1dff:fe84:f9e2".to_string();
    let parent =
        json!({"group": "mygroup", "resource": "myresources", "namespace": "foo", "name": "bar"});
    let res: Result<()> = async {
        for (n, t) in [(&v4, "broadcast"), (&v6, "link-local")] {
            api.create(
                &PostParams::default(),
                &from_json(json!({"metadata": {"name": n, "labels": {"type": t}}, "spec": {"parentRef": parent}}))?,
            )
            .await
            .with_context(|| format!("create ipaddress {n}"))?;
        }
        let p = api
            .patch(&v4, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})))
            .await
            .context("patch ipaddress")?;
        ensure!(annotation(&p, "patched").as_deref() == Some("true"), "patched annotations {:?}", p.metadata.annotations);
        let u = update_retry(&api, &v4, |o| {
            o.metadata.annotations.get_or_insert_with(Default::default).insert("updated".into(), "true".into());
        })
        .await?;
        ensure!(annotation(&u, "updated").as_deref() == Some("true"), "updated annotations {:?}", u.metadata.annotations);
        api.get(&v4).await.context("get ipaddress")?;
        let l = api.list(&ListParams::default().labels("type=broadcast")).await?;
        ensure!(l.items.len() == 1, "listed {} broadcast ipaddresses, want 1", l.items.len());
        let _watch = api
            .watch(&WatchParams::default().labels("type=broadcast"), "0")
            .await
            .context("watch ipaddresses")?;
        api.delete(&v4, &DeleteParams::default()).await.context("delete ipaddress")?;
        api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("type=link-local"))
            .await
            .context("delete collection of ipaddresses")?;
        let l = api.list(&ListParams::default().labels("type=link-local")).await?;
        ensure!(l.items.is_empty(), "{} link-local ipaddresses left", l.items.len());
        Ok(())
    }
    .await;
    delete_all(&api, &[v4, v6]).await;
    res
}

// ------------------------------------------------- chunking after compaction

/// Lists the namespace's podtemplates raw (limit, continue token); returns
/// the status code and the JSON body.
async fn list_podtemplates_raw(c: &Ctx, limit: u32, token: &str) -> Result<(u16, Value)> {
    let mut path = format!("/api/v1/namespaces/{}/podtemplates?limit={limit}", c.ns);
    if !token.is_empty() {
        let enc: String = token
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        path.push_str(&format!("&continue={enc}"));
    }
    let (st, body) = raw(c, "GET", &path, None, Some("application/json")).await?;
    let v: Value =
        serde_json::from_str(&body).with_context(|| format!("list podtemplates: {st}: {body}"))?;
    Ok((st, v))
}

async fn chunking_compacted(c: Ctx) -> Result<()> {
    const TOTAL: usize = 400;
    create_podtemplates(&c, TOTAL).await?;
    let limit = (TOTAL / 10) as u32;
    let (st, first) = list_podtemplates_raw(&c, limit, "").await?;
    ensure!(st == 200, "first chunk: {st}: {first}");
    let n = first["items"].as_array().map(Vec::len).unwrap_or(0);
    ensure!(
        n <= limit as usize,
        "first chunk of {n} items exceeds {limit}"
    );
    ensure!(
        first["metadata"]["remainingItemCount"].as_i64() == Some((TOTAL - n) as i64),
        "first chunk remainingItemCount {}",
        first["metadata"]["remainingItemCount"]
    );
    let token = first["metadata"]["continue"]
        .as_str()
        .unwrap_or("")
        .to_string();
    ensure!(!token.is_empty(), "no continue token after the first chunk");
    let first_rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();

    // Wait until the token's resource version has been compacted away: the
    // server answers 410 Gone with a token for an inconsistent continuation.
    let inconsistent = wait_for(
        "the continue token to expire (410)",
        Duration::from_secs(270),
        || {
            let c = c.clone();
            let token = token.clone();
            async move {
                let (st, v) = list_podtemplates_raw(&c, limit, &token).await?;
                if st == 410 {
                    let t = v["metadata"]["continue"].as_str().unwrap_or("").to_string();
                    ensure!(
                        !t.is_empty(),
                        "410 without an inconsistent continue token: {v}"
                    );
                    return Ok(Some(t));
                }
                ensure!(st == 200, "list with the continue token: {st}: {v}");
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(None)
            }
        },
    )
    .await?;

    let (st, second) = list_podtemplates_raw(&c, limit, &inconsistent).await?;
    ensure!(
        st == 200,
        "list with the inconsistent token: {st}: {second}"
    );
    let n2 = second["items"].as_array().map(Vec::len).unwrap_or(0);
    ensure!(n2 <= limit as usize, "chunk of {n2} items exceeds {limit}");
    let rv = second["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    ensure!(
        rv != first_rv,
        "the inconsistent list has the first list's resourceVersion"
    );
    let mut found = n + n2;
    let mut token = second["metadata"]["continue"]
        .as_str()
        .unwrap_or("")
        .to_string();
    ensure!(
        !token.is_empty(),
        "no continue token after the inconsistent chunk"
    );
    ensure!(
        second["metadata"]["remainingItemCount"].as_i64() == Some((TOTAL - found) as i64),
        "inconsistent chunk remainingItemCount {}, want {}",
        second["metadata"]["remainingItemCount"],
        TOTAL - found
    );
    while !token.is_empty() {
        let (st, page) = list_podtemplates_raw(&c, limit, &token).await?;
        ensure!(st == 200, "list a later chunk: {st}: {page}");
        let k = page["items"].as_array().map(Vec::len).unwrap_or(0);
        ensure!(k <= limit as usize, "chunk of {k} items exceeds {limit}");
        let prv = page["metadata"]["resourceVersion"].as_str().unwrap_or("");
        ensure!(
            prv == rv,
            "chunk resourceVersion {prv}, the inconsistent list's is {rv}"
        );
        found += k;
        token = page["metadata"]["continue"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if !token.is_empty() {
            ensure!(
                page["metadata"]["remainingItemCount"].as_i64() == Some((TOTAL - found) as i64),
                "remainingItemCount {}, want {}",
                page["metadata"]["remainingItemCount"],
                TOTAL - found
            );
        }
    }
    ensure!(
        found == TOTAL,
        "the chunks held {found} items, want {TOTAL}"
    );
    Ok(())
}
