//! Custom resources converted between versions by a webhook (upstream's
//! crd_conversion_webhook.go), and field selectors on custom resources
//! across those versions (crd_selectable_fields.go). The agnhost
//! `crd-conversion-webhook` server converts `stable.example.com/v1`
//! (`hostPort: "host:port"`) to and from `v2` (`host`, `port`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

use super::fixture::{self, cr_api, create_crd, deploy_server, random_crd, server_cert, Server};
use crate::conformance;
use crate::ctx::{from_json, suffix, Ctx};
use crate::Test;

/// The tests of this module.
pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!(
            "Custom Resource Definition Conversion Webhook, convert mixed version list",
            convert_list
        ),
        conformance!(
            "Custom Resource Definition Conversion Webhook, conversion custom resource",
            convert_v1_to_v2
        ),
        conformance!(
            "custom-resource-definition-field-selectors-list-watch-register-informers",
            field_selectors
        ),
    ]
}

const SERVICE: &str = "e2e-test-crd-conversion-webhook";
const SERVICE_PORT: i32 = 9443;
const GROUP: &str = "stable.example.com";

/// Deploys the conversion webhook server (upstream's BeforeEach); returns
/// the CA bundle (base64) to trust it with.
async fn deploy(c: &Ctx) -> Result<String> {
    let certs = server_cert(&c.ns, SERVICE)?;
    deploy_server(
        c,
        &Server {
            secret: "sample-custom-resource-conversion-webhook-secret",
            deployment: "sample-crd-conversion-webhook-deployment",
            service: SERVICE,
            container: "sample-crd-conversion-webhook",
            volume: "crd-conversion-webhook-certs",
            command: "crd-conversion-webhook",
            labels: json!({"app": "sample-crd-conversion-webhook", "crd-webhook": "true"}),
            selector: json!({"crd-webhook": "true"}),
            service_labels: json!({"test": "crd-webhook"}),
            service_port: SERVICE_PORT,
            container_port: 9444,
        },
        &certs,
    )
    .await?;
    Ok(certs.ca_bundle())
}

/// The two versions: v1 with `hostPort`, v2 with `host` and `port`;
/// `storage` names the storage version; `selectable` adds the selectable
/// fields of the field selector test.
fn versions(storage: &str, selectable: bool) -> Value {
    let mut v1 = json!({
        "name": "v1", "served": true, "storage": storage == "v1",
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {"hostPort": {"type": "string"}}}},
    });
    let mut v2 = json!({
        "name": "v2", "served": true, "storage": storage == "v2",
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "host": {"type": "string"}, "port": {"type": "string"},
        }}},
    });
    if selectable {
        v1["selectableFields"] = json!([{"jsonPath": ".hostPort"}]);
        v2["selectableFields"] = json!([{"jsonPath": ".host"}, {"jsonPath": ".port"}]);
    }
    json!([v1, v2])
}

/// A CRD of `stable.example.com` converted by the webhook.
fn conversion_crd(c: &Ctx, ca_bundle: &str, selectable: bool) -> Value {
    let mut crd = random_crd("crd-webhook", GROUP, versions("v1", selectable));
    crd["spec"]["preserveUnknownFields"] = json!(false);
    crd["spec"]["conversion"] = json!({
        "strategy": "Webhook",
        "webhook": {
            "clientConfig": {
                "caBundle": ca_bundle,
                "service": {"namespace": c.ns, "name": SERVICE, "path": "/crdconvert", "port": SERVICE_PORT},
            },
            "conversionReviewVersions": ["v1", "v1beta1"],
        },
    });
    crd
}

/// A custom resource of `crd` at `version` with the extra `fields`.
fn custom_resource(
    c: &Ctx,
    crd: &CustomResourceDefinition,
    version: &str,
    name: &str,
    fields: Value,
) -> Result<DynamicObject> {
    let mut obj = json!({
        "apiVersion": format!("{}/{version}", crd.spec.group),
        "kind": crd.spec.names.kind,
        "metadata": {"name": name, "namespace": c.ns},
    });
    for (k, v) in fields.as_object().into_iter().flatten() {
        obj[k] = v.clone();
    }
    from_json(obj)
}

/// Creates stub objects at `version` (stored at the other version) until
/// one goes through the webhook (upstream's waitWebhookConversionReady).
async fn wait_conversion_ready(
    c: &Ctx,
    crd: &CustomResourceDefinition,
    version: &str,
) -> Result<()> {
    let api = cr_api(c, crd, version);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stub = custom_resource(c, crd, version, &c.ns, json!({}))?;
        let last = match api.create(&PostParams::default(), &stub).await {
            Ok(_) => {
                api.delete(&c.ns, &DeleteParams::default())
                    .await
                    .context("cleaning up stub object")?;
                return Ok(());
            }
            Err(e) => fixture::err_text(&e),
        };
        ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out after 30s waiting for the conversion webhook to convert a {version} object: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn api_version(o: &DynamicObject) -> &str {
    o.types.as_ref().map_or("", |t| t.api_version.as_str())
}

/// upstream's verifyV1Object.
fn verify_v1(o: &DynamicObject) -> Result<()> {
    let name = format!("{} read at v1", o.metadata.name.clone().unwrap_or_default());
    ensure!(
        api_version(o) == format!("{GROUP}/v1"),
        "{name}: apiVersion {:?}, want {GROUP}/v1 (not converted)",
        api_version(o)
    );
    ensure!(
        o.data["hostPort"] == "localhost:8080",
        "{name}: hostPort {}, want \"localhost:8080\"",
        o.data["hostPort"]
    );
    ensure!(
        o.data.get("host").is_none() && o.data.get("port").is_none(),
        "{name}: a v1 object has host/port: {}",
        o.data
    );
    Ok(())
}

/// upstream's verifyV2Object.
fn verify_v2(o: &DynamicObject) -> Result<()> {
    let name = format!("{} read at v2", o.metadata.name.clone().unwrap_or_default());
    ensure!(
        api_version(o) == format!("{GROUP}/v2"),
        "{name}: apiVersion {:?}, want {GROUP}/v2 (not converted)",
        api_version(o)
    );
    ensure!(
        o.data.get("hostPort").is_none(),
        "{name}: a v2 object has hostPort: {}",
        o.data
    );
    ensure!(
        o.data["host"] == "localhost" && o.data["port"] == "8080",
        "{name}: host {} port {}, want \"localhost\" \"8080\"",
        o.data["host"],
        o.data["port"]
    );
    Ok(())
}

async fn convert_v1_to_v2(c: Ctx) -> Result<()> {
    fixture::run(c, |c, cleanup| async move {
        let ca = deploy(&c).await?;
        let crd = create_crd(&c, &cleanup, conversion_crd(&c, &ca, false)).await?;
        wait_conversion_ready(&c, &crd, "v2").await?;
        let name = "cr-instance-1";
        cr_api(&c, &crd, "v1")
            .create(
                &PostParams::default(),
                &custom_resource(&c, &crd, "v1", name, json!({"hostPort": "localhost:8080"}))?,
            )
            .await
            .context("creating a v1 custom resource")?;
        let v2 = cr_api(&c, &crd, "v2")
            .get(name)
            .await
            .with_context(|| format!("getting v2 of custom resource {name}"))?;
        verify_v2(&v2)
    })
    .await
}

/// Names of a list's items.
fn names(items: &[DynamicObject]) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect()
}

async fn convert_list(c: Ctx) -> Result<()> {
    fixture::run(c, |c, cleanup| async move {
        let ca = deploy(&c).await?;
        let crd = create_crd(&c, &cleanup, conversion_crd(&c, &ca, false)).await?;
        wait_conversion_ready(&c, &crd, "v2").await?;
        let (name1, name2) = ("cr-instance-1", "cr-instance-2");
        let v1 = cr_api(&c, &crd, "v1");
        let host_port = json!({"hostPort": "localhost:8080"});
        v1.create(
            &PostParams::default(),
            &custom_resource(&c, &crd, "v1", name1, host_port.clone())?,
        )
        .await
        .context("creating a v1 custom resource")?;

        // cr-instance-1 is stored as v1; now v2 becomes the storage version.
        let crds = c.all::<CustomResourceDefinition>();
        let crd_name = crd.metadata.name.clone().unwrap_or_default();
        let mut updated = None;
        for _ in 0..5 {
            let mut cur = crds.get(&crd_name).await?;
            cur.spec.versions = from_json(versions("v2", false))?;
            match crds.replace(&crd_name, &PostParams::default(), &cur).await {
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                other => {
                    updated = Some(other.context("updating the storage version to v2")?);
                    break;
                }
            }
        }
        ensure!(updated.is_some(), "updating the CRD kept conflicting");

        // Stored as v2; retried as upstream does while the versions'
        // resources are re-created.
        let second = custom_resource(&c, &crd, "v1", name2, host_port)?;
        let mut created = v1.create(&PostParams::default(), &second).await;
        for _ in 0..4 {
            if created.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            created = v1.create(&PostParams::default(), &second).await;
        }
        created.context("creating the second custom resource")?;

        let want: BTreeSet<String> = [name1, name2].iter().map(|s| s.to_string()).collect();
        let list = v1
            .list(&ListParams::default())
            .await
            .context("listing CRs in v1")?;
        ensure!(
            names(&list.items) == want && list.items.len() == 2,
            "v1 list has {:?}, want {want:?}",
            names(&list.items)
        );
        list.items.iter().try_for_each(verify_v1)?;
        let list = cr_api(&c, &crd, "v2")
            .list(&ListParams::default())
            .await
            .context("listing CRs in v2")?;
        ensure!(
            names(&list.items) == want && list.items.len() == 2,
            "v2 list has {:?}, want {want:?}",
            names(&list.items)
        );
        list.items.iter().try_for_each(verify_v2)
    })
    .await
}

// ------------------------------------------------------------- field selectors

/// Names seen added and deleted by a watch or an informer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Seen {
    added: BTreeSet<String>,
    deleted: BTreeSet<String>,
}

type Shared = Arc<Mutex<Seen>>;

fn set_of(names: &[&String]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn seen(added: &[&String], deleted: &[&String]) -> Seen {
    Seen {
        added: set_of(added),
        deleted: set_of(deleted),
    }
}

/// A plain watch with field selector `fields`, from the current state;
/// its ADDED and DELETED events are accumulated.
async fn watch_acc(
    api: &Api<DynamicObject>,
    fields: &str,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Shared> {
    let rv = api
        .list(&ListParams::default().fields(fields))
        .await
        .with_context(|| format!("listing custom resources with field selector {fields}"))?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = api
        .watch(&WatchParams::default().fields(fields), &rv)
        .await
        .with_context(|| format!("watching custom resources with field selector {fields}"))?
        .boxed();
    let acc = Shared::default();
    let out = acc.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            let mut s = out.lock().expect("watch accumulator");
            match ev {
                Ok(WatchEvent::Added(o)) => {
                    s.added.insert(o.metadata.name.unwrap_or_default());
                }
                Ok(WatchEvent::Deleted(o)) => {
                    s.deleted.insert(o.metadata.name.unwrap_or_default());
                }
                _ => {}
            }
        }
    }));
    Ok(acc)
}

/// An informer (list, then watch, relisting as needed) with field
/// selector `fields`: its add and delete notifications are accumulated.
fn informer_acc(
    api: &Api<DynamicObject>,
    fields: &str,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Shared {
    let stream = watcher(api.clone(), watcher::Config::default().fields(fields)).default_backoff();
    let acc = Shared::default();
    let out = acc.clone();
    tasks.push(tokio::spawn(async move {
        let mut stream = stream.boxed();
        let mut store: BTreeSet<String> = BTreeSet::new();
        let mut relist: Option<BTreeSet<String>> = None;
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else { continue };
            let mut s = out.lock().expect("informer accumulator");
            let name = |o: &DynamicObject| o.metadata.name.clone().unwrap_or_default();
            match ev {
                watcher::Event::Apply(o) => {
                    if store.insert(name(&o)) {
                        s.added.insert(name(&o));
                    }
                }
                watcher::Event::Delete(o) => {
                    store.remove(&name(&o));
                    s.deleted.insert(name(&o));
                }
                watcher::Event::Init => relist = Some(BTreeSet::new()),
                watcher::Event::InitApply(o) => {
                    if let Some(r) = relist.as_mut() {
                        r.insert(name(&o));
                    }
                    if store.insert(name(&o)) {
                        s.added.insert(name(&o));
                    }
                }
                watcher::Event::InitDone => {
                    if let Some(r) = relist.take() {
                        for gone in store.difference(&r).cloned().collect::<Vec<_>>() {
                            store.remove(&gone);
                            s.deleted.insert(gone);
                        }
                    }
                }
            }
        }
    }));
    acc
}

/// Waits up to 30 s until accumulator `acc` holds exactly `want`.
async fn eventually(what: &str, acc: &Shared, want: &Seen) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = acc.lock().expect("accumulator").clone();
        if got == *want {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out after 30s waiting for {what}: saw {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn list_names(api: &Api<DynamicObject>, fields: &str) -> Result<BTreeSet<String>> {
    let list = api
        .list(&ListParams::default().fields(fields))
        .await
        .with_context(|| format!("listing custom resources with field selector {fields}"))?;
    Ok(names(&list.items))
}

async fn field_selectors(c: Ctx) -> Result<()> {
    fixture::run(c, |c, cleanup| async move {
        let ca = deploy(&c).await?;
        let crd = create_crd(&c, &cleanup, conversion_crd(&c, &ca, true)).await?;
        wait_conversion_ready(&c, &crd, "v2").await?;
        let (v1, v2) = (cr_api(&c, &crd, "v1"), cr_api(&c, &crd, "v2"));

        let mut tasks = Vec::new();
        let res = async {
            let host_watch = watch_acc(&v2, "host=host1", &mut tasks).await?;
            let host_port_watch = watch_acc(&v2, "host=host1,port=80", &mut tasks).await?;
            let v1_watch = watch_acc(&v1, "hostPort=host1:80", &mut tasks).await?;
            let host_informer = informer_acc(&v2, "host=host1", &mut tasks);
            let host_port_informer = informer_acc(&v2, "host=host1,port=80", &mut tasks);

            let specs = [
                json!({"host": "host1", "port": "80"}),
                json!({"host": "host1", "port": "8080"}),
                json!({"host": "host2"}),
            ];
            let mut crs = Vec::new();
            for spec in specs {
                let name = format!("selectable-field-cr{}", suffix());
                v2.create(
                    &PostParams::default(),
                    &custom_resource(&c, &crd, "v2", &name, spec)?,
                )
                .await
                .context("creating custom resource")?;
                crs.push(name);
            }
            let (cr0, cr1) = (&crs[0], &crs[1]);

            for (api, fields, want) in [
                (&v2, "host=host1", set_of(&[cr0, cr1])),
                (&v2, "host=host1,port=80", set_of(&[cr0])),
                (&v1, "hostPort=host1:80", set_of(&[cr0])),
                (&v1, "hostPort=host1:8080", set_of(&[cr1])),
            ] {
                let got = list_names(api, fields).await?;
                ensure!(got == want, "list with field selector {fields}: got {got:?}, want {want:?}");
            }
            eventually("v2 watch events for host=host1", &host_watch, &seen(&[cr0, cr1], &[])).await?;
            eventually("v2 watch events for host=host1,port=80", &host_port_watch, &seen(&[cr0], &[])).await?;
            eventually("v1 watch events for hostPort=host1:80", &v1_watch, &seen(&[cr0], &[])).await?;
            eventually("v2 informer events for host=host1", &host_informer, &seen(&[cr0, cr1], &[])).await?;
            eventually("v2 informer events for host=host1,port=80", &host_port_informer, &seen(&[cr0], &[])).await?;

            // One deleted by a field-selected collection delete, one moved
            // out of host=host1 by an update.
            v2.delete_collection(
                &DeleteParams::default().grace_period(0),
                &ListParams::default().fields("host=host1,port=80"),
            )
            .await
            .context("deleting custom resource")?;
            let mut u = v2.get(cr1).await.context("getting custom resource")?;
            u.data["host"] = json!("host2");
            v2.replace(cr1, &PostParams::default(), &u)
                .await
                .context("updating custom resource")?;

            for (fields, want) in [("host=host1", BTreeSet::new()), ("host=host1,port=80", BTreeSet::new())] {
                let got = list_names(&v2, fields).await?;
                ensure!(got == want, "list after the updates and deletes with field selector {fields}: got {got:?}, want none");
            }
            eventually("v2 watch events after updates and deletes for host=host1", &host_watch, &seen(&[cr0, cr1], &[cr0, cr1])).await?;
            eventually("v2 watch events after updates and deletes for host=host1,port=80", &host_port_watch, &seen(&[cr0], &[cr0])).await?;
            eventually("v1 watch events after updates and deletes for hostPort=host1:80", &v1_watch, &seen(&[cr0], &[cr0])).await?;
            eventually("v2 informer events after updates and deletes for host=host1", &host_informer, &seen(&[cr0, cr1], &[cr0, cr1])).await?;
            eventually("v2 informer events after updates and deletes for host=host1,port=80", &host_port_informer, &seen(&[cr0], &[cr0])).await
        }
        .await;
        for t in tasks {
            t.abort();
        }
        res
    })
    .await
}
