//! EndpointSlice conformance: the API (discovery, CRUD, watch, patch,
//! delete collection), the controllers' slices and Endpoints for services
//! with selectors, the API server's own `kubernetes` endpoints, and
//! selector-less services served through manually made slices.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{json, Value};

use super::{cluster_ip, exec_pod, join_host_port, sh, REACH_TIMEOUT, SERVICE_NAME_LABEL};
use crate::conformance;
use crate::ctx::{from_json, pod, wait_for, Ctx};
use crate::Test;

/// The tests of this module (upstream gives four of them the testname
/// "EndpointSlice API": those are registered by codename).
pub fn tests() -> Vec<Test> {
    vec![
        conformance!(
            "[sig-network] EndpointSlice should have Endpoints and EndpointSlices pointing to API Server [Conformance]",
            api_server
        ),
        conformance!(
            "[sig-network] EndpointSlice should create and delete Endpoints and EndpointSlices for a Service with a selector specified [Conformance]",
            selector_no_match
        ),
        conformance!(
            "[sig-network] EndpointSlice should create Endpoints and EndpointSlices for Pods matching a Service [Conformance]",
            pods_matching
        ),
        conformance!(
            "[sig-network] EndpointSlice should support creating EndpointSlice API operations [Conformance]",
            api_operations
        ),
        conformance!("EndpointSlice, single IP, multiple ports", single_ip_multi_port),
        conformance!("EndpointSlice, multiple IPs, multiple ports", multi_ip_multi_port),
    ]
}

/// upstream's wait.ForeverTestTimeout.
const FOREVER: Duration = Duration::from_secs(30);
/// How long the controllers may take to match upstream's expectations.
const SLICE_WAIT: Duration = Duration::from_secs(120);
/// The label naming the controller managing a slice.
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The EndpointSlice controller's managed-by value.
const CONTROLLER: &str = "endpointslice-controller.k8s.io";

fn by_service(name: &str) -> ListParams {
    ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={name}"))
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

// ------------------------------------------------------------ API server

async fn api_server(c: Ctx) -> Result<()> {
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let svc = svcs.get("kubernetes").await.context(
        "error obtaining API server \"kubernetes\" Service resource on \"default\" namespace",
    )?;
    let eps: Api<Endpoints> = Api::namespaced(c.client.clone(), "default");
    let ep = eps.get("kubernetes").await.context(
        "error obtaining API server \"kubernetes\" Endpoint resource on \"default\" namespace",
    )?;
    let subsets = ep.subsets.clone().unwrap_or_default();
    ensure!(
        !subsets.is_empty(),
        "expected at least 1 subset in endpoints default/kubernetes, got 0"
    );
    let slices: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    let list = slices.list(&by_service("kubernetes")).await.context(
        "error obtaining API server \"kubernetes\" EndpointSlice resource on \"default\" namespace",
    )?;
    ensure!(
        !list.items.is_empty(),
        "expected at least 1 EndpointSlice labelled {SERVICE_NAME_LABEL}=kubernetes in namespace default (as the API server publishes with its Endpoints), got 0"
    );

    // Endpoints are single stack, of the kubernetes Service's family.
    let family = if cluster_ip(&svc).contains(':') {
        "IPv6"
    } else {
        "IPv4"
    };
    let mut ep_addrs = BTreeSet::new();
    let mut ep_ports = BTreeSet::new();
    for s in &subsets {
        for a in s
            .addresses
            .iter()
            .flatten()
            .chain(s.not_ready_addresses.iter().flatten())
        {
            ep_addrs.insert(a.ip.clone());
        }
        for p in s.ports.iter().flatten() {
            ep_ports.insert(p.port);
        }
    }
    let mut sl_addrs = BTreeSet::new();
    let mut sl_ports = BTreeSet::new();
    for s in list.items.iter().filter(|s| s.address_type == family) {
        for e in &s.endpoints {
            sl_addrs.extend(e.addresses.iter().cloned());
        }
        sl_ports.extend(s.ports.iter().flatten().filter_map(|p| p.port));
    }
    ensure!(
        ep_addrs == sl_addrs && ep_ports == sl_ports,
        "expected EndpointSlices to have the same addresses and ports as Endpoints: Endpoints {ep_addrs:?} {ep_ports:?}, {family} EndpointSlices {sl_addrs:?} {sl_ports:?}"
    );
    Ok(())
}

// ------------------------------------------------ selector matching none

async fn selector_no_match(c: Ctx) -> Result<()> {
    let name = "example-empty-selector";
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"does-not-match-anything": "endpoints-and-endpoint-slices-should-still-be-created"},
            "ports": [{"name": "example", "port": 80, "protocol": "TCP"}],
        },
    }))
    .await
    .context("error creating Service")?;

    let eps = c.api::<Endpoints>();
    wait_for(
        &format!("Endpoints for Service {}/{name}", c.ns),
        FOREVER,
        || async { Ok(eps.get_opt(name).await?.map(|_| ())) },
    )
    .await?;

    let slices = c.api::<EndpointSlice>();
    let slice = wait_for(
        &format!("an EndpointSlice for Service {}/{name}", c.ns),
        FOREVER,
        || async {
            Ok(slices
                .list(&by_service(name))
                .await?
                .items
                .into_iter()
                .next())
        },
    )
    .await?;
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    match labels.get(MANAGED_BY) {
        None => bail!("expected EndpointSlice to have {MANAGED_BY} label, got {labels:?}"),
        Some(v) if v != CONTROLLER => bail!(
            "expected EndpointSlice to have {MANAGED_BY} label with {CONTROLLER} value, got {v}"
        ),
        Some(_) => {}
    }
    ensure!(
        slice.endpoints.is_empty(),
        "expected EndpointSlice to have 0 endpoints, got {}: {:?}",
        slice.endpoints.len(),
        slice.endpoints
    );

    c.api::<Service>()
        .delete(name, &DeleteParams::default())
        .await
        .context("error deleting Service")?;
    wait_for(
        &format!("Endpoints of Service {}/{name} to be deleted", c.ns),
        FOREVER,
        || async { Ok(eps.get_opt(name).await?.is_none().then_some(())) },
    )
    .await?;
    // Up to 90 s as upstream: garbage collection may take a while.
    wait_for(
        &format!("EndpointSlices of Service {}/{name} to be deleted", c.ns),
        Duration::from_secs(90),
        || async {
            Ok(slices
                .list(&by_service(name))
                .await?
                .items
                .is_empty()
                .then_some(()))
        },
    )
    .await
}

// ---------------------------------------------------- pods matching

fn port_pod(c: &Ctx, name: &str, labels: Value, ports: Value) -> Value {
    let mut p = pod(
        name,
        json!({"containers": [{"name": "container1", "image": c.env.images.nginx, "ports": ports}]}),
    );
    p["metadata"]["labels"] = labels;
    p
}

fn port_service(name: &str, selector: Value, port_name: &str, target: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": selector,
            "publishNotReadyAddresses": true,
            "ports": [{"name": port_name, "port": 80, "targetPort": target, "protocol": "TCP"}],
        },
    })
}

async fn pods_matching(c: Ctx) -> Result<()> {
    c.create_pod(port_pod(
        &c,
        "pod1",
        json!({"pod1": "on", "shared12": "on"}),
        json!([{"name": "example-name", "containerPort": 3000}]),
    ))
    .await?;
    c.create_pod(port_pod(
        &c,
        "pod2",
        json!({"pod2": "on", "shared12": "on"}),
        json!([
            {"name": "example-name", "containerPort": 3001},
            {"name": "other-port", "containerPort": 3002},
        ]),
    ))
    .await?;
    let svc1 = c
        .create::<Service>(port_service(
            "example-int-port",
            json!({"pod1": "on"}),
            "example",
            json!(3000),
        ))
        .await
        .context("error creating Service")?;
    let svc2 = c
        .create::<Service>(port_service(
            "example-named-port",
            json!({"shared12": "on"}),
            "http",
            json!("example-name"),
        ))
        .await
        .context("error creating Service")?;
    let svc3 = c
        .create::<Service>(port_service(
            "example-no-match",
            json!({"pod3": "on"}),
            "example-no-match",
            json!(8080),
        ))
        .await
        .context("error creating Service")?;

    let pods = c.pods();
    let (pod1, pod2) = wait_for("pods to have IPs assigned", c.env.pod_start, || async {
        let p1 = pods.get("pod1").await?;
        let p2 = pods.get("pod2").await?;
        Ok((!pod_ip(&p1).is_empty() && !pod_ip(&p2).is_empty()).then_some((p1, p2)))
    })
    .await?;

    expect_endpoints_and_slices(&c, &svc1, &[&pod1], 1, 1, false)
        .await
        .context("referencing a single matching pod")?;
    expect_endpoints_and_slices(&c, &svc2, &[&pod1, &pod2], 2, 2, true)
        .await
        .context("referencing matching pods with named port")?;
    expect_endpoints_and_slices(&c, &svc3, &[], 0, 1, false)
        .await
        .context("creating empty Endpoints and EndpointSlices for no matching Pods")?;

    let slices = c.api::<EndpointSlice>();
    for s in slices.list(&by_service("example-named-port")).await?.items {
        let n = s.metadata.name.clone().unwrap_or_default();
        slices
            .delete(&n, &DeleteParams::default())
            .await
            .with_context(|| format!("error deleting {}/{n} EndpointSlice", c.ns))?;
    }
    expect_endpoints_and_slices(&c, &svc2, &[&pod1, &pod2], 2, 2, true)
        .await
        .context("recreating EndpointSlices after they've been deleted")
}

fn pod_ip(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

/// upstream's ensurePodTargetRef.
fn ensure_target_ref(p: &Pod, r: Option<&ObjectReference>) -> Result<()> {
    let r = r.context("expected TargetRef to not be nil")?;
    let got = |v: &Option<String>| v.clone().unwrap_or_default();
    let kind = got(&r.kind);
    ensure!(
        kind == "Pod",
        "expected TargetRef.Kind to be Pod, got {kind}"
    );
    for (field, want, have) in [
        ("Namespace", &p.metadata.namespace, &r.namespace),
        ("Name", &p.metadata.name, &r.name),
        ("UID", &p.metadata.uid, &r.uid),
    ] {
        ensure!(
            got(want) == got(have),
            "expected TargetRef.{field} to be {}, got {}",
            got(want),
            got(have)
        );
    }
    Ok(())
}

/// The port of `p`'s first container named `name`.
fn named_container_port(p: &Pod, name: &str) -> Option<i32> {
    p.spec
        .as_ref()?
        .containers
        .first()?
        .ports
        .iter()
        .flatten()
        .find(|cp| cp.name.as_deref() == Some(name))
        .map(|cp| cp.container_port)
}

/// upstream's expectEndpointsAndSlices: the controllers publish Endpoints
/// with `num_subsets` subsets and at least `num_slices` EndpointSlices for
/// `svc`, both listing exactly `pods` (by IP, with pod target refs) on the
/// service's ports (the pod's own port for a named target port).
async fn expect_endpoints_and_slices(
    c: &Ctx,
    svc: &Service,
    pods: &[&Pod],
    num_subsets: usize,
    num_slices: usize,
    named_port: bool,
) -> Result<()> {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let slices_api = c.api::<EndpointSlice>();
    let slices = wait_for(
        &format!(
            "at least {num_slices} EndpointSlices with {} endpoints for Service {}/{name}",
            pods.len(),
            c.ns
        ),
        SLICE_WAIT,
        || async {
            let l = slices_api.list(&by_service(&name)).await?.items;
            let endpoints: usize = l.iter().map(|s| s.endpoints.len()).sum();
            if l.is_empty() || l.len() < num_slices || endpoints < pods.len() {
                bail!("EndpointSlices now: {}", slices_summary(&l));
            }
            Ok(Some(l))
        },
    )
    .await?;
    let eps_api = c.api::<Endpoints>();
    let ep = wait_for(
        &format!(
            "Endpoints {}/{name} with {num_subsets} subsets and {} addresses",
            c.ns,
            pods.len()
        ),
        SLICE_WAIT,
        || async {
            let Some(ep) = eps_api.get_opt(&name).await? else {
                bail!("Endpoints {name} not found");
            };
            let subsets = ep.subsets.clone().unwrap_or_default();
            let ips: usize = subsets
                .iter()
                .map(|s| {
                    s.addresses.as_ref().map_or(0, Vec::len)
                        + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
                })
                .sum();
            if subsets.len() != num_subsets || ips != pods.len() {
                bail!(
                    "Endpoints now have {} subsets and {ips} addresses: {subsets:?}",
                    subsets.len()
                );
            }
            Ok(Some(ep))
        },
    )
    .await?;

    let by_ip: BTreeMap<String, &Pod> = pods.iter().map(|p| (pod_ip(p), *p)).collect();
    for p in pods {
        let n = p.spec.as_ref().map_or(0, |s| s.containers.len());
        ensure!(n == 1, "expected pod to have 1 container, got {n}");
    }
    let svc_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let target_name = match svc_ports.first().and_then(|p| p.target_port.clone()) {
        Some(IntOrString::String(s)) => s,
        Some(IntOrString::Int(i)) => i.to_string(),
        None => String::new(),
    };
    let target_int = |i: usize| match svc_ports.get(i).and_then(|p| p.target_port.clone()) {
        Some(IntOrString::Int(n)) => n,
        _ => 0,
    };
    let want_name = |i: usize| {
        svc_ports
            .get(i)
            .and_then(|p| p.name.clone())
            .unwrap_or_default()
    };
    let want_proto = |i: usize| {
        svc_ports
            .get(i)
            .and_then(|p| p.protocol.clone())
            .unwrap_or_else(|| "TCP".into())
    };

    let ep_name = ep.metadata.name.clone().unwrap_or_default();
    ensure!(
        ep_name == name,
        "expected Endpoints name to be {name}, got {ep_name}"
    );
    let mut total = 0;
    for subset in ep.subsets.iter().flatten() {
        let addrs: Vec<_> = subset
            .addresses
            .iter()
            .flatten()
            .chain(subset.not_ready_addresses.iter().flatten())
            .collect();
        total += addrs.len();
        let ports = subset.ports.clone().unwrap_or_default();
        ensure!(
            ports.len() == svc_ports.len(),
            "expected subset to have {} ports, got {}",
            svc_ports.len(),
            ports.len()
        );
        if !named_port {
            for (i, sp) in ports.iter().enumerate() {
                let gn = sp.name.clone().unwrap_or_default();
                ensure!(
                    gn == want_name(i),
                    "expected port name to be {}, got {gn}",
                    want_name(i)
                );
                let gp = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
                ensure!(
                    gp == want_proto(i),
                    "expected protocol to be {}, got {gp}",
                    want_proto(i)
                );
                ensure!(
                    sp.port == target_int(i),
                    "expected port to be {}, got {}",
                    target_int(i),
                    sp.port
                );
            }
        }
        for a in addrs {
            let p = by_ip
                .get(&a.ip)
                .with_context(|| format!("unexpected address with IP: {}", a.ip))?;
            ensure_target_ref(p, a.target_ref.as_ref())?;
            if named_port {
                if let Some(cp) = named_container_port(p, &target_name) {
                    let sp = &ports[0];
                    ensure!(
                        sp.port == cp,
                        "expected subset port to be {cp}, got {}",
                        sp.port
                    );
                    let gn = sp.name.clone().unwrap_or_default();
                    ensure!(
                        gn == want_name(0),
                        "expected subset port name to be {}, got {gn}",
                        want_name(0)
                    );
                }
            }
        }
    }
    ensure!(
        total == pods.len(),
        "expected {} addresses, got {total}",
        pods.len()
    );

    if pods.is_empty() {
        ensure!(
            slices.len() == 1,
            "expected 1 EndpointSlice, got {}: {}",
            slices.len(),
            slices_summary(&slices)
        );
    }
    let mut addresses = BTreeSet::new();
    for s in &slices {
        for e in &s.endpoints {
            if let Some(a) = e.addresses.first() {
                addresses.insert(a.clone());
            }
        }
        let ports = s.ports.clone().unwrap_or_default();
        if pods.is_empty() {
            ensure!(
                ports.is_empty(),
                "expected EndpointSlice to have 0 ports, got {}",
                ports.len()
            );
        } else {
            ensure!(
                ports.len() == svc_ports.len(),
                "expected EndpointSlice to have {} ports, got {}",
                svc_ports.len(),
                ports.len()
            );
        }
        if !named_port {
            for (i, ep) in ports.iter().enumerate() {
                let gn = ep.name.clone().unwrap_or_default();
                ensure!(
                    gn == want_name(i),
                    "expected port name to be {}, got {gn}",
                    want_name(i)
                );
                let gp = ep.protocol.clone().unwrap_or_default();
                ensure!(
                    gp == want_proto(i),
                    "expected protocol to be {}, got {gp}",
                    want_proto(i)
                );
                let gport = ep.port.unwrap_or(0);
                ensure!(
                    gport == target_int(i),
                    "expected port to be {}, got {gport}",
                    target_int(i)
                );
            }
        }
        for e in &s.endpoints {
            let a = e
                .addresses
                .first()
                .context("expected EndpointSlice endpoint to have at least 1 address")?;
            let p = by_ip
                .get(a)
                .with_context(|| format!("unexpected address with IP: {a}"))?;
            ensure_target_ref(p, e.target_ref.as_ref())?;
            if named_port {
                if let Some(cp) = named_container_port(p, &target_name) {
                    let ep = ports.first().context("EndpointSlice without ports")?;
                    let gport = ep.port.unwrap_or(0);
                    ensure!(
                        gport == cp,
                        "expected EndpointSlice port to be {cp}, got {gport}"
                    );
                    let gn = ep.name.clone().unwrap_or_default();
                    ensure!(
                        gn == want_name(0),
                        "expected EndpointSlice port name to be {}, got {gn}",
                        want_name(0)
                    );
                }
            }
        }
    }
    ensure!(
        addresses.len() == pods.len(),
        "expected {} addresses, got {}",
        pods.len(),
        addresses.len()
    );
    Ok(())
}

/// A short description of slices for error messages.
fn slices_summary(l: &[EndpointSlice]) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|s| {
            let addrs: Vec<String> = s
                .endpoints
                .iter()
                .flat_map(|e| e.addresses.clone())
                .collect();
            let ports: Vec<String> = s
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}:{}",
                        p.name.clone().unwrap_or_default(),
                        p.port.unwrap_or(0)
                    )
                })
                .collect();
            format!(
                "{} {addrs:?} ports {ports:?}",
                s.metadata.name.clone().unwrap_or_default()
            )
        })
        .collect();
    format!("[{}]", parts.join("; "))
}

// -------------------------------------------------------- API operations

/// GET `path` from the API server as JSON.
async fn get_json(c: &Ctx, path: &str) -> Result<Value> {
    let req = kube::core::Request::new("")
        .get(path.trim_start_matches('/'), &Default::default())
        .context("build request")?;
    let text = c
        .client
        .request_text(req)
        .await
        .with_context(|| format!("GET {path}"))?;
    serde_json::from_str(&text).with_context(|| format!("GET {path}: not JSON"))
}

fn has_version(versions: &Value, v: &str) -> bool {
    versions
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x["version"] == v))
}

fn rv_number(rv: &Option<String>) -> Result<u128> {
    let s = rv.clone().unwrap_or_default();
    s.parse()
        .with_context(|| format!("resource version {s:?} is not a number"))
}

fn event_kind<K>(e: &WatchEvent<K>) -> &'static str {
    match e {
        WatchEvent::Added(_) => "ADDED",
        WatchEvent::Modified(_) => "MODIFIED",
        WatchEvent::Deleted(_) => "DELETED",
        WatchEvent::Bookmark(_) => "BOOKMARK",
        WatchEvent::Error(_) => "ERROR",
    }
}

async fn api_operations(c: Ctx) -> Result<()> {
    let groups = get_json(&c, "/apis").await?;
    let found = groups["groups"].as_array().is_some_and(|gs| {
        gs.iter()
            .any(|g| g["name"] == "discovery.k8s.io" && has_version(&g["versions"], "v1"))
    });
    ensure!(
        found,
        "expected discovery API group/version, got {}",
        groups["groups"]
    );
    let group = get_json(&c, "/apis/discovery.k8s.io").await?;
    ensure!(
        has_version(&group["versions"], "v1"),
        "expected discovery API version, got {}",
        group["versions"]
    );
    let resources = get_json(&c, "/apis/discovery.k8s.io/v1").await?;
    let found = resources["resources"]
        .as_array()
        .is_some_and(|rs| rs.iter().any(|r| r["name"] == "endpointslices"));
    ensure!(
        found,
        "expected endpointslices, got {}",
        resources["resources"]
    );

    let unique = c.ns.clone();
    let sel = format!("special-label={unique}");
    let api = c.api::<EndpointSlice>();
    let template: EndpointSlice = from_json(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"generateName": "e2e-example-ing", "labels": {"special-label": unique}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["1.2.3.4", "5.6.7.8"]},
            {"addresses": ["2.2.3.4", "6.6.7.8"]},
        ],
    }))?;
    let pp = PostParams::default();
    api.create(&pp, &template).await.context("creating")?;
    api.create(&pp, &template).await.context("creating")?;
    let created = api.create(&pp, &template).await.context("creating")?;
    let name = created.metadata.name.clone().unwrap_or_default();

    let got = api.get(&name).await.context("getting")?;
    ensure!(
        got.metadata.uid == created.metadata.uid,
        "got uid {:?}, created {:?}",
        got.metadata.uid,
        created.metadata.uid
    );
    rv_number(&got.metadata.resource_version).context("getting")?;

    let lp = ListParams::default().labels(&sel);
    let list = api.list(&lp).await.context("listing")?;
    ensure!(
        list.items.len() == 3,
        "filtered list should have 3 items, got {}",
        list.items.len()
    );
    let list_rv = list.metadata.resource_version.clone().unwrap_or_default();
    let wp = WatchParams::default().labels(&sel);
    let mut watch = api.watch(&wp, &list_rv).await.context("watching")?.boxed();

    let all: Api<EndpointSlice> = c.all();
    let cluster = all.list(&lp).await.context("cluster-wide listing")?;
    ensure!(
        cluster.items.len() == 3,
        "cluster-wide filtered list should have 3 items, got {}",
        cluster.items.len()
    );
    let cluster_watch = all
        .watch(&wp, &list_rv)
        .await
        .context("cluster-wide watching")?;
    drop(cluster_watch);

    let patched = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"patched": "true"}}})),
        )
        .await
        .context("patching")?;
    let ann = patched.metadata.annotations.clone().unwrap_or_default();
    ensure!(
        ann.get("patched").map(String::as_str) == Some("true"),
        "patched object should have the applied annotation, got {ann:?}"
    );
    let (before, after) = (
        rv_number(&created.metadata.resource_version)?,
        rv_number(&patched.metadata.resource_version)?,
    );
    ensure!(
        after > before,
        "patched object should have a larger resource version: created {before}, patched {after}"
    );

    let mut updated = None;
    for _ in 0..5 {
        let mut s = api.get(&name).await?;
        s.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("updated".into(), "true".into());
        match api.replace(&name, &pp, &s).await {
            Ok(u) => {
                updated = Some(u);
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(anyhow::Error::from(e).context("updating")),
        }
    }
    let updated = updated.context("updating: a conflict on every try")?;
    let ann = updated.metadata.annotations.clone().unwrap_or_default();
    ensure!(
        ann.get("updated").map(String::as_str) == Some("true"),
        "updated object should have the applied annotation, got {ann:?}"
    );

    // The watch sees MODIFIED events until one carries the patch.
    let deadline = tokio::time::Instant::now() + FOREVER;
    loop {
        let ev = tokio::time::timeout_at(deadline, watch.try_next())
            .await
            .context("timed out waiting for watch event")?
            .context("watch failed")?
            .context("watch channel should not close")?;
        match ev {
            WatchEvent::Modified(s) => {
                let ann = s.metadata.annotations.clone().unwrap_or_default();
                if ann.get("patched").map(String::as_str) == Some("true") {
                    break;
                }
            }
            WatchEvent::Bookmark(_) => {}
            other => bail!(
                "expected a MODIFIED watch event, got {}",
                event_kind(&other)
            ),
        }
    }
    drop(watch);

    api.delete(&name, &DeleteParams::default())
        .await
        .context("deleting")?;
    match api.get(&name).await {
        Err(e) if is_not_found(&e) => {}
        Err(e) => bail!("expected 404, got {e}"),
        Ok(_) => bail!("expected 404, got the EndpointSlice {name}"),
    }
    let list = api.list(&lp).await?;
    ensure!(
        list.items.len() == 2,
        "filtered list should have 2 items, got {}",
        list.items.len()
    );
    ensure!(
        !list
            .items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(name.as_str())),
        "listing after deleting {name} still shows it"
    );

    api.delete_collection(&DeleteParams::default(), &lp)
        .await
        .context("deleting a collection")?;
    let list = api.list(&lp).await?;
    ensure!(
        list.items.is_empty(),
        "filtered list should have 0 items, got {}",
        list.items.len()
    );
    Ok(())
}

// ------------------------------------- selector-less, manual slices

/// The selector-less service of the two manual-slice tests.
async fn custom_endpoints_service(c: &Ctx) -> Result<Service> {
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "example-custom-endpoints"},
        "spec": {"ports": [
            {"name": "port80", "port": 80, "protocol": "TCP"},
            {"name": "port81", "port": 81, "protocol": "TCP"},
        ]},
    }))
    .await
    .context("error creating Service")
}

/// A netexec container serving HTTP on `port` (UDP off).
fn netexec_container(c: &Ctx, name: &str, port: i32) -> Value {
    json!({
        "name": name,
        "image": c.env.images.agnhost,
        "args": ["netexec", "--http-port", port.to_string(), "--udp-port", "-1"],
        "ports": [{"containerPort": port, "protocol": "TCP"}],
    })
}

/// Creates pod `name` with `containers`, waits until it runs ready; its IP.
async fn server_pod(c: &Ctx, name: &str, containers: Value) -> Result<String> {
    c.create_pod(pod(name, json!({ "containers": containers })))
        .await?;
    let p = c.wait_running(name).await?;
    let ip = pod_ip(&p);
    ensure!(!ip.is_empty(), "PodIP not assigned for pod {name}");
    Ok(ip)
}

/// A manual slice of service example-custom-endpoints: endpoint `ip`
/// (ready), port `port_name` -> `port`.
fn custom_slice(c: &Ctx, ip: &str, port_name: &str, port: i32) -> Value {
    let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
    // Label values are at most 63 characters.
    let mut managed = format!("e2e-test{}", c.ns);
    managed.truncate(63);
    let managed = managed.trim_end_matches('-').to_string();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"generateName": "e2e-custom-slice", "labels": {
            SERVICE_NAME_LABEL: "example-custom-endpoints",
            MANAGED_BY: managed,
        }},
        "addressType": family,
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
    })
}

/// upstream's execHostnameTest: `/hostname` at `target` (host:port) from
/// pod `client` answers `want` within the bound.
async fn exec_hostname_test(c: &Ctx, client: &str, target: &str, want: &str) -> Result<()> {
    let cmd = format!("timeout 30 wget -q -O - http://{target}/hostname");
    let got = wait_for(
        &format!("an answer from {target}/hostname"),
        REACH_TIMEOUT,
        || async {
            let out = sh(c, client, &cmd).await?;
            let out = out.trim().to_string();
            if out.is_empty() {
                bail!("empty answer");
            }
            Ok(Some(out))
        },
    )
    .await
    .with_context(|| format!("no answer from ClusterIP {target} after {REACH_TIMEOUT:?}"))?;
    let host = got.split('.').next().unwrap_or_default();
    let want = want.split('.').next().unwrap_or_default();
    ensure!(
        host == want,
        "{target}/hostname answered {got:?}, expected {want:?}"
    );
    Ok(())
}

/// Creates the two manual slices of `(ip, port name, port)`.
async fn create_custom_slices(c: &Ctx, slices: [(&str, &str, i32); 2]) -> Result<()> {
    let api = c.api::<EndpointSlice>();
    for (ip, name, port) in slices {
        api.create(
            &PostParams::default(),
            &from_json(custom_slice(c, ip, name, port))?,
        )
        .await
        .context("creating")?;
    }
    Ok(())
}

async fn single_ip_multi_port(c: Ctx) -> Result<()> {
    let svc = custom_endpoints_service(&c).await?;
    let server = "pod-handle-http-request";
    let ip = server_pod(
        &c,
        server,
        json!([
            netexec_container(&c, "container-handle-8090-request", 8090),
            netexec_container(&c, "container-handle-9090-request", 9090),
        ]),
    )
    .await?;
    create_custom_slices(&c, [(&ip, "port80", 8090), (&ip, "port81", 9090)]).await?;

    let client = exec_pod(&c, "pause-pod-0").await?;
    let vip = cluster_ip(&svc);
    exec_hostname_test(&c, &client, &join_host_port(&vip, 80), server).await?;
    exec_hostname_test(&c, &client, &join_host_port(&vip, 81), server).await
}

async fn multi_ip_multi_port(c: Ctx) -> Result<()> {
    let svc = custom_endpoints_service(&c).await?;
    let (s1, s2) = ("pod1-handle-http-request", "pod2-handle-http-request");
    let ip1 = server_pod(
        &c,
        s1,
        json!([netexec_container(&c, "container-handle-8090-request", 8090)]),
    )
    .await?;
    let ip2 = server_pod(
        &c,
        s2,
        json!([netexec_container(&c, "container-handle-8090-request", 8090)]),
    )
    .await?;
    create_custom_slices(&c, [(&ip1, "port80", 8090), (&ip2, "port81", 8090)]).await?;

    let client = exec_pod(&c, "pause-pod-0").await?;
    let vip = cluster_ip(&svc);
    exec_hostname_test(&c, &client, &join_host_port(&vip, 80), s1).await?;
    exec_hostname_test(&c, &client, &join_host_port(&vip, 81), s2).await
}
