//! The EndpointSlice controller and the EndpointSlice mirroring controller,
//! as upstream's pkg/controller/endpointslice and endpointslicemirroring.
//!
//! EndpointSlice controller: every Service with a selector has
//! discovery.k8s.io/v1 EndpointSlices named `<service>-<random>`
//! (generateName), owned by the Service, labelled `kubernetes.io/service-name`
//! and `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`
//! (plus the Service's own labels and the headless label), with one endpoint
//! per pod matching the selector that has an IP of the Service's family and
//! is not terminal: conditions ready (serving and not terminating, or always
//! with publishNotReadyAddresses), serving (the pod is Ready) and terminating
//! (the pod is being deleted), hostname, nodeName, targetRef. Pods are grouped
//! by the ports they serve (named targetPorts resolve per pod), at most 100
//! endpoints per slice; existing slices are reused (endpoints keep their
//! slice), filled, created or deleted as needed; a Service without endpoints
//! keeps one empty placeholder slice.
//!
//! Mirroring controller: a Service without a selector whose user-made
//! Endpoints (not managed by the endpoint controller, not labelled
//! `endpointslice.kubernetes.io/skip-mirror: "true"`) exists gets that
//! Endpoints mirrored into EndpointSlices managed by
//! `endpointslicemirroring-controller.k8s.io`, owned by the Endpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, ResourceExt};

use crate::endpoints::{
    find_port, format_time, is_headless, is_ipv6, last_change, pod_ip_of_family, pod_ref,
    service_family, service_selector, should_include, should_set_hostname, PodMapper,
    CONTROLLER_NAME as EP_CONTROLLER, HEADLESS_LABEL, LABEL_MANAGED_BY as EP_MANAGED_BY,
    LAST_CHANGE_TRIGGER_TIME, LEADER_ANNOTATION,
};
use crate::pods;
use crate::{Context, Error, Result, Shutdown};

/// Label naming a slice's Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's name in that label.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The mirroring controller's name in that label.
pub const MIRRORING_CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
/// Label on Endpoints that must not be mirrored.
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Endpoints per slice (upstream's default max-endpoints-per-slice).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Addresses mirrored per Endpoints subset (upstream's default).
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;
/// kubectl's last-applied annotation (not mirrored).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Runs the EndpointSlice controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let services: Api<Service> = Api::all(ctx.client.clone());
    let controller = Controller::new(services, watcher::Config::default());
    let mapper = PodMapper::new(controller.store());
    let slices_cfg =
        watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={CONTROLLER_NAME}"));
    controller
        .watches(
            Api::<Pod>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |pod| mapper.services_of(&pod),
        )
        .owns(Api::<EndpointSlice>::all(ctx.client.clone()), slices_cfg)
        .graceful_shutdown_on(shutdown.signal())
        .run(
            reconcile,
            |svc, err, ctx: Arc<Context>| ctx.error_action(&crate::key(&*svc), err),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

/// Runs the EndpointSlice mirroring controller until shutdown.
pub async fn run_mirroring(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let endpoints: Api<Endpoints> = Api::all(ctx.client.clone());
    let slices_cfg = watcher::Config::default()
        .labels(&format!("{LABEL_MANAGED_BY}={MIRRORING_CONTROLLER_NAME}"));
    Controller::new(endpoints, watcher::Config::default())
        .watches(
            Api::<Service>::all(ctx.client.clone()),
            watcher::Config::default(),
            |svc| {
                svc.namespace()
                    .map(|ns| ObjectRef::<Endpoints>::new(&svc.name_any()).within(&ns))
            },
        )
        .owns(Api::<EndpointSlice>::all(ctx.client.clone()), slices_cfg)
        .graceful_shutdown_on(shutdown.signal())
        .run(
            reconcile_mirroring,
            |ep, err, ctx: Arc<Context>| ctx.error_action(&crate::key(&*ep), err),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

// ---------------------------------------------------------------- decisions

/// One group of endpoints sharing an address type and ports.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// IPv4 or IPv6.
    pub address_type: String,
    /// The ports.
    pub ports: Vec<EndpointPort>,
    /// The endpoints, in a stable order.
    pub endpoints: Vec<Endpoint>,
}

/// Upstream's podToEndpoint.
pub fn pod_endpoint(svc: &Service, pod: &Pod, ip: String) -> Endpoint {
    let serving = pods::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let ready = publish || (serving && !terminating);
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: if should_set_hostname(pod, svc) {
            pod.spec.as_ref().and_then(|s| s.hostname.clone())
        } else {
            None
        },
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(pod_ref(pod)),
        ..Default::default()
    }
}

/// The ports a pod serves for the Service (upstream's getEndpointPorts).
pub fn pod_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let mut out: Vec<EndpointPort> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|sp| {
            let n = find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(n),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
    out
}

fn ports_key(ports: &[EndpointPort]) -> String {
    ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.port.unwrap_or(0),
                p.protocol.as_deref().unwrap_or(""),
                p.app_protocol.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The endpoint groups of `svc` from the pods its selector matches.
pub fn desired_groups(svc: &Service, pods: &[Pod]) -> Vec<Group> {
    let family = service_family(svc);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by_key(|p| p.name_any());
    for pod in sorted {
        if !should_include(pod, true) {
            continue;
        }
        let Some(ip) = pod_ip_of_family(pod, family) else {
            continue;
        };
        let ports = pod_ports(svc, pod);
        let g = groups.entry(ports_key(&ports)).or_insert_with(|| Group {
            address_type: family.into(),
            ports,
            endpoints: Vec::new(),
        });
        g.endpoints.push(pod_endpoint(svc, pod, ip));
    }
    groups.into_values().collect()
}

/// The endpoint groups mirrored from a user-made Endpoints (upstream's
/// endpointslicemirroring reconciler): per subset, ready and not-ready
/// addresses (at most [`MAX_ENDPOINTS_PER_SUBSET`]), split by address type.
pub fn mirrored_groups(ep: &Endpoints) -> Vec<Group> {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for subset in ep.subsets.iter().flatten() {
        let mut ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        ports.sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
        let addrs = subset
            .addresses
            .iter()
            .flatten()
            .map(|a| (a, true))
            .chain(
                subset
                    .not_ready_addresses
                    .iter()
                    .flatten()
                    .map(|a| (a, false)),
            )
            .take(MAX_ENDPOINTS_PER_SUBSET);
        for (a, ready) in addrs {
            let family = if is_ipv6(&a.ip) { "IPv6" } else { "IPv4" };
            let g = groups
                .entry((family.to_string(), ports_key(&ports)))
                .or_insert_with(|| Group {
                    address_type: family.into(),
                    ports: ports.clone(),
                    endpoints: Vec::new(),
                });
            if g.endpoints
                .iter()
                .any(|e| e.addresses.first() == Some(&a.ip))
            {
                continue;
            }
            g.endpoints.push(Endpoint {
                addresses: vec![a.ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: None,
                    terminating: None,
                }),
                hostname: a.hostname.clone().filter(|h| !h.is_empty()),
                node_name: a.node_name.clone(),
                target_ref: a.target_ref.clone(),
                ..Default::default()
            });
        }
    }
    groups.into_values().collect()
}

/// What every slice of one owner carries.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceMeta {
    /// Namespace.
    pub namespace: String,
    /// generateName prefix (`<service>-`).
    pub generate_name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations (without the trigger time).
    pub annotations: BTreeMap<String, String>,
    /// The owner reference.
    pub owner: OwnerReference,
}

/// Writes to make.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Slices to create.
    pub create: Vec<EndpointSlice>,
    /// Slices to update (full objects).
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl Plan {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

fn endpoint_key(e: &Endpoint) -> String {
    let uid = e
        .target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .unwrap_or_default();
    format!(
        "{}|{uid}",
        e.addresses.first().map(String::as_str).unwrap_or("")
    )
}

fn meta_matches(s: &EndpointSlice, meta: &SliceMeta) -> bool {
    let mut ann = s.metadata.annotations.clone().unwrap_or_default();
    ann.remove(LAST_CHANGE_TRIGGER_TIME);
    s.metadata.labels.clone().unwrap_or_default() == meta.labels
        && ann == meta.annotations
        && s.metadata.owner_references.as_deref() == Some(std::slice::from_ref(&meta.owner))
}

fn new_slice(meta: &SliceMeta, g: &Group, endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(meta.generate_name.clone()),
            namespace: Some(meta.namespace.clone()),
            labels: Some(meta.labels.clone()),
            annotations: (!meta.annotations.is_empty()).then(|| meta.annotations.clone()),
            owner_references: Some(vec![meta.owner.clone()]),
            ..Default::default()
        },
        address_type: g.address_type.clone(),
        endpoints,
        ports: Some(g.ports.clone()),
    }
}

/// Reconciles `existing` slices towards `desired` groups: endpoints stay in
/// the slice they are in (updated in place), slices are filled up to
/// [`MAX_ENDPOINTS_PER_SLICE`], new ones made for the rest, emptied ones
/// deleted; with no endpoints at all one empty placeholder slice is kept.
pub fn plan(
    existing: &[EndpointSlice],
    desired: &[Group],
    meta: &SliceMeta,
    placeholder_type: &str,
) -> Plan {
    let mut out = Plan::default();
    let mut used = vec![false; existing.len()];
    let total: usize = desired.iter().map(|g| g.endpoints.len()).sum();
    for g in desired.iter().filter(|g| !g.endpoints.is_empty()) {
        let gkey = ports_key(&g.ports);
        let mut want: HashMap<String, Endpoint> = g
            .endpoints
            .iter()
            .map(|e| (endpoint_key(e), e.clone()))
            .collect();
        let order: Vec<String> = g.endpoints.iter().map(endpoint_key).collect();
        // Existing slices of this group, keeping their endpoints that remain.
        let mut slots: Vec<(usize, Vec<Endpoint>)> = Vec::new();
        for (i, s) in existing.iter().enumerate() {
            if used[i]
                || s.address_type != g.address_type
                || ports_key(s.ports.as_deref().unwrap_or_default()) != gkey
            {
                continue;
            }
            used[i] = true;
            let kept: Vec<Endpoint> = s
                .endpoints
                .iter()
                .filter_map(|e| want.remove(&endpoint_key(e)))
                .collect();
            slots.push((i, kept));
        }
        let mut rest: Vec<Endpoint> = order.iter().filter_map(|k| want.remove(k)).collect();
        rest.reverse();
        for (_, eps) in slots.iter_mut() {
            while eps.len() < MAX_ENDPOINTS_PER_SLICE {
                match rest.pop() {
                    Some(e) => eps.push(e),
                    None => break,
                }
            }
        }
        for (i, eps) in slots {
            let s = &existing[i];
            let name = s.metadata.name.clone().unwrap_or_default();
            if eps.is_empty() {
                out.delete.push(name);
            } else if eps != s.endpoints || !meta_matches(s, meta) {
                let mut u = s.clone();
                u.endpoints = eps;
                u.metadata.labels = Some(meta.labels.clone());
                let mut ann = meta.annotations.clone();
                if let Some(t) = s
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(LAST_CHANGE_TRIGGER_TIME))
                {
                    ann.insert(LAST_CHANGE_TRIGGER_TIME.into(), t.clone());
                }
                u.metadata.annotations = (!ann.is_empty()).then_some(ann);
                u.metadata.owner_references = Some(vec![meta.owner.clone()]);
                out.update.push(u);
            }
        }
        rest.reverse();
        for chunk in rest.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.create.push(new_slice(meta, g, chunk.to_vec()));
        }
    }
    // Slices of groups no longer wanted.
    let mut leftovers: Vec<usize> = (0..existing.len()).filter(|i| !used[*i]).collect();
    if total == 0 {
        // Keep (or make) one empty placeholder.
        let keep = leftovers.iter().position(|i| {
            let s = &existing[*i];
            s.endpoints.is_empty()
                && s.ports.as_deref().unwrap_or_default().is_empty()
                && s.address_type == placeholder_type
        });
        match keep {
            Some(pos) => {
                let i = leftovers.remove(pos);
                let s = &existing[i];
                if !meta_matches(s, meta) {
                    let mut u = s.clone();
                    u.metadata.labels = Some(meta.labels.clone());
                    u.metadata.annotations =
                        (!meta.annotations.is_empty()).then(|| meta.annotations.clone());
                    u.metadata.owner_references = Some(vec![meta.owner.clone()]);
                    out.update.push(u);
                }
            }
            None => out.create.push(new_slice(
                meta,
                &Group {
                    address_type: placeholder_type.into(),
                    ports: Vec::new(),
                    endpoints: Vec::new(),
                },
                Vec::new(),
            )),
        }
    }
    for i in leftovers {
        out.delete
            .push(existing[i].metadata.name.clone().unwrap_or_default());
    }
    reuse_placeholder(existing, &mut out);
    out
}

/// An empty placeholder about to be deleted while a slice is created takes
/// that slice's content instead (addressType is immutable, so only one of
/// the same type).
fn reuse_placeholder(existing: &[EndpointSlice], out: &mut Plan) {
    for c in 0..out.create.len() {
        let ty = out.create[c].address_type.clone();
        let found = out.delete.iter().position(|n| {
            existing.iter().any(|s| {
                s.metadata.name.as_deref() == Some(n.as_str())
                    && s.endpoints.is_empty()
                    && s.ports.as_deref().unwrap_or_default().is_empty()
                    && s.address_type == ty
            })
        });
        let Some(pos) = found else { continue };
        let name = out.delete.remove(pos);
        let Some(old) = existing
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
        else {
            continue;
        };
        let new = out.create.remove(c);
        let mut u = old.clone();
        u.metadata.labels = new.metadata.labels;
        u.metadata.annotations = new.metadata.annotations;
        u.metadata.owner_references = new.metadata.owner_references;
        u.endpoints = new.endpoints;
        u.ports = new.ports;
        out.update.push(u);
        return;
    }
}

/// The labels of a Service's slices (upstream's setEndpointSliceLabels).
pub fn service_slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = svc
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != LABEL_SERVICE_NAME && k != LABEL_MANAGED_BY && k != HEADLESS_LABEL)
        .collect();
    if is_headless(svc) {
        l.insert(HEADLESS_LABEL.into(), String::new());
    }
    l.insert(LABEL_SERVICE_NAME.into(), svc.name_any());
    l.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    l
}

/// The labels and annotations of mirrored slices.
pub fn mirrored_meta(ep: &Endpoints) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut labels: BTreeMap<String, String> = ep
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != LABEL_SERVICE_NAME && k != LABEL_MANAGED_BY)
        .collect();
    labels.insert(LABEL_SERVICE_NAME.into(), ep.name_any());
    labels.insert(LABEL_MANAGED_BY.into(), MIRRORING_CONTROLLER_NAME.into());
    let ann: BTreeMap<String, String> = ep
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != LAST_CHANGE_TRIGGER_TIME && k != LAST_APPLIED)
        .collect();
    (labels, ann)
}

/// Upstream's shouldMirror, plus Endpoints the endpoint controller manages.
pub fn should_mirror(ep: &Endpoints) -> bool {
    let labels = ep.metadata.labels.clone().unwrap_or_default();
    labels.get(LABEL_SKIP_MIRROR).map(String::as_str) != Some("true")
        && labels.get(EP_MANAGED_BY).map(String::as_str) != Some(EP_CONTROLLER)
        && !ep.annotations().contains_key(LEADER_ANNOTATION)
}

// ------------------------------------------------------------------ writing

async fn apply_plan(
    ctx: &Context,
    ns: &str,
    plan: Plan,
    trigger: Option<Timestamp>,
    what: &str,
) -> Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let stamp = |s: &mut EndpointSlice| {
        if let Some(t) = trigger {
            s.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(LAST_CHANGE_TRIGGER_TIME.into(), format_time(t));
        }
    };
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube(format!("delete endpointslice {ns}/{name}"))(e)),
        }
    }
    for mut s in plan.update {
        stamp(&mut s);
        let name = s.metadata.name.clone().unwrap_or_default();
        api.replace(&name, &PostParams::default(), &s)
            .await
            .map_err(Error::kube(format!(
                "update endpointslice {ns}/{name} for {what}"
            )))?;
    }
    for mut s in plan.create {
        stamp(&mut s);
        match api.create(&PostParams::default(), &s).await {
            Ok(_) => {}
            // A terminating namespace refuses creates.
            Err(kube::Error::Api(st)) if st.code == 403 => return Ok(()),
            Err(e) => {
                return Err(Error::kube(format!(
                    "create endpointslice in {ns} for {what}"
                ))(e))
            }
        }
    }
    Ok(())
}

async fn list_slices(
    ctx: &Context,
    ns: &str,
    service: &str,
    manager: &str,
) -> Result<Vec<EndpointSlice>> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().labels(&format!(
        "{LABEL_SERVICE_NAME}={service},{LABEL_MANAGED_BY}={manager}"
    ));
    let mut items = api
        .list(&lp)
        .await
        .map_err(Error::kube(format!(
            "list endpointslices of {ns}/{service}"
        )))?
        .items;
    items.retain(|s| s.metadata.deletion_timestamp.is_none());
    items.sort_by_key(|s| s.metadata.name.clone());
    Ok(items)
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*svc);
    let spec = svc.spec.clone().unwrap_or_default();
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let Some(selector) = spec
        .selector
        .as_ref()
        .filter(|_| spec.type_.as_deref() != Some("ExternalName"))
    else {
        // Not ours to fill (selector-less Services get mirrored slices);
        // slices we made earlier go.
        let existing = list_slices(&ctx, &ns, &name, CONTROLLER_NAME).await?;
        let plan = Plan {
            delete: existing
                .iter()
                .filter_map(|s| s.metadata.name.clone())
                .collect(),
            ..Default::default()
        };
        apply_plan(&ctx, &ns, plan, None, &key).await?;
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    };
    let pods = pods::list(&ctx.client, &ns, &service_selector(selector)).await?;
    let existing = list_slices(&ctx, &ns, &name, CONTROLLER_NAME).await?;
    let meta = SliceMeta {
        namespace: ns.clone(),
        generate_name: format!("{name}-"),
        labels: service_slice_labels(&svc),
        annotations: BTreeMap::new(),
        owner: crate::owner::new_controller_ref(&*svc),
    };
    let desired = desired_groups(&svc, &pods);
    let p = plan(&existing, &desired, &meta, service_family(&svc));
    if !p.is_empty() {
        apply_plan(&ctx, &ns, p, last_change(&svc, &pods), &key).await?;
    }
    ctx.succeeded(&key);
    Ok(Action::await_change())
}

async fn reconcile_mirroring(ep: Arc<Endpoints>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*ep);
    let ns = ep.namespace().unwrap_or_default();
    let name = ep.name_any();
    let svc = Api::<Service>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get service {key}")))?;
    let existing = list_slices(&ctx, &ns, &name, MIRRORING_CONTROLLER_NAME).await?;
    let mirror = svc.as_ref().is_some_and(|s| {
        s.spec
            .as_ref()
            .and_then(|sp| sp.selector.as_ref())
            .is_none()
    }) && should_mirror(&ep)
        && ep.metadata.deletion_timestamp.is_none();
    let p = if mirror {
        let (labels, annotations) = mirrored_meta(&ep);
        let meta = SliceMeta {
            namespace: ns.clone(),
            generate_name: format!("{name}-"),
            labels,
            annotations,
            owner: crate::owner::new_controller_ref(&*ep),
        };
        let desired = mirrored_groups(&ep);
        if desired.iter().all(|g| g.endpoints.is_empty()) {
            // Upstream mirrors nothing for an empty Endpoints.
            Plan {
                delete: existing
                    .iter()
                    .filter_map(|s| s.metadata.name.clone())
                    .collect(),
                ..Default::default()
            }
        } else {
            plan(&existing, &desired, &meta, "IPv4")
        }
    } else {
        Plan {
            delete: existing
                .iter()
                .filter_map(|s| s.metadata.name.clone())
                .collect(),
            ..Default::default()
        }
    };
    if !p.is_empty() {
        let trigger = ep
            .annotations()
            .get(LAST_CHANGE_TRIGGER_TIME)
            .and_then(|t| t.parse::<Timestamp>().ok());
        apply_plan(&ctx, &ns, p, trigger, &key).await?;
    }
    ctx.succeeded(&key);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::tests::{pod, service, sport};
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort as CorePort, EndpointSubset};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn meta(svc: &Service) -> SliceMeta {
        SliceMeta {
            namespace: "default".into(),
            generate_name: "web-".into(),
            labels: service_slice_labels(svc),
            annotations: BTreeMap::new(),
            owner: crate::owner::new_controller_ref(svc),
        }
    }

    #[test]
    fn conditions_for_ready_unready_terminating() {
        let svc = service(vec![sport("http", 80, IntOrString::String("http".into()))]);
        let mut term = pod("c", "10.0.0.4", true);
        term.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let g = desired_groups(
            &svc,
            &[
                pod("a", "10.0.0.2", true),
                pod("b", "10.0.0.3", false),
                term,
            ],
        );
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].address_type, "IPv4");
        assert_eq!(g[0].ports[0].port, Some(8080));
        assert_eq!(g[0].ports[0].name.as_deref(), Some("http"));
        let conds: Vec<(bool, bool, bool)> = g[0]
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                (
                    c.ready == Some(true),
                    c.serving == Some(true),
                    c.terminating == Some(true),
                )
            })
            .collect();
        assert_eq!(
            conds,
            vec![
                (true, true, false),
                (false, false, false),
                (false, true, true)
            ]
        );
        let e = &g[0].endpoints[0];
        assert_eq!(e.node_name.as_deref(), Some("node1"));
        assert_eq!(
            e.target_ref.as_ref().and_then(|r| r.name.as_deref()),
            Some("a")
        );
    }

    #[test]
    fn pods_lacking_named_port_go_to_another_group() {
        let svc = service(vec![sport("http", 80, IntOrString::String("http".into()))]);
        let mut lacking = pod("b", "10.0.0.3", true);
        if let Some(s) = lacking.spec.as_mut() {
            s.containers[0].ports = None;
        }
        let g = desired_groups(&svc, &[pod("a", "10.0.0.2", true), lacking]);
        assert_eq!(g.len(), 2);
        assert!(g
            .iter()
            .any(|g| g.ports.is_empty() && g.endpoints.len() == 1));
    }

    #[test]
    fn labels_and_owner() {
        let svc = service(vec![]);
        let l = service_slice_labels(&svc);
        assert_eq!(l.get(LABEL_SERVICE_NAME).map(String::as_str), Some("web"));
        assert_eq!(
            l.get(LABEL_MANAGED_BY).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
        assert_eq!(l.get("team").map(String::as_str), Some("a"));
        let o = crate::owner::new_controller_ref(&svc);
        assert_eq!(
            (o.kind.as_str(), o.uid.as_str(), o.controller),
            ("Service", "svc-uid", Some(true))
        );
    }

    #[test]
    fn plan_chunks_reuses_and_deletes() {
        let svc = service(vec![sport("http", 80, IntOrString::Int(8080))]);
        let m = meta(&svc);
        let pods: Vec<Pod> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.0.{}.{}", i / 200, i % 200 + 1),
                    true,
                )
            })
            .collect();
        let desired = desired_groups(&svc, &pods);
        let p = plan(&[], &desired, &m, "IPv4");
        assert_eq!(p.create.len(), 3);
        assert_eq!(
            p.create
                .iter()
                .map(|s| s.endpoints.len())
                .collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
        assert!(p
            .create
            .iter()
            .all(|s| s.metadata.generate_name.as_deref() == Some("web-")));
        // Pretend they were created; an identical pass does nothing.
        let existing: Vec<EndpointSlice> = p
            .create
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut s = s.clone();
                s.metadata.name = Some(format!("web-{i}"));
                s
            })
            .collect();
        assert!(plan(&existing, &desired, &m, "IPv4").is_empty());
        // Pods go: slices shrink in place, an emptied slice is deleted.
        let fewer = desired_groups(&svc, &pods[..120]);
        let p = plan(&existing, &fewer, &m, "IPv4");
        assert_eq!(p.delete, vec!["web-2".to_string()]);
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].endpoints.len(), 20);
        assert!(p.create.is_empty());
        // No pods: one placeholder remains.
        let p = plan(&existing, &[], &m, "IPv4");
        assert_eq!(p.delete.len(), 3);
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty());
        // Pods come back: the placeholder is filled, not replaced.
        let mut ph = p.create[0].clone();
        ph.metadata.name = Some("web-ph".into());
        let p = plan(std::slice::from_ref(&ph), &fewer, &m, "IPv4");
        assert!(p.delete.is_empty());
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].metadata.name.as_deref(), Some("web-ph"));
        assert_eq!(p.update[0].endpoints.len(), 100);
        assert_eq!(p.create.len(), 1);
    }

    #[test]
    fn readiness_change_updates_in_place() {
        let svc = service(vec![sport("http", 80, IntOrString::Int(8080))]);
        let m = meta(&svc);
        let mut s = plan(
            &[],
            &desired_groups(&svc, &[pod("a", "10.0.0.2", false)]),
            &m,
            "IPv4",
        )
        .create;
        s[0].metadata.name = Some("web-x".into());
        let p = plan(
            &s,
            &desired_groups(&svc, &[pod("a", "10.0.0.2", true)]),
            &m,
            "IPv4",
        );
        assert_eq!(p.update.len(), 1);
        assert_eq!(
            p.update[0].endpoints[0]
                .conditions
                .as_ref()
                .and_then(|c| c.ready),
            Some(true)
        );
    }

    fn user_endpoints() -> Endpoints {
        Endpoints {
            metadata: ObjectMeta {
                name: Some("ext".into()),
                namespace: Some("default".into()),
                uid: Some("ep-uid".into()),
                labels: Some(BTreeMap::from([("x".into(), "y".into())])),
                annotations: Some(BTreeMap::from([
                    (LAST_APPLIED.into(), "{}".into()),
                    ("keep".into(), "me".into()),
                ])),
                ..Default::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![
                    EndpointAddress {
                        ip: "192.168.1.10".into(),
                        hostname: Some("db".into()),
                        ..Default::default()
                    },
                    EndpointAddress {
                        ip: "fd00::1".into(),
                        ..Default::default()
                    },
                ]),
                not_ready_addresses: Some(vec![EndpointAddress {
                    ip: "192.168.1.11".into(),
                    ..Default::default()
                }]),
                ports: Some(vec![CorePort {
                    name: Some("pg".into()),
                    port: 5432,
                    protocol: Some("TCP".into()),
                    app_protocol: None,
                }]),
            }]),
        }
    }

    #[test]
    fn mirroring() {
        let ep = user_endpoints();
        assert!(should_mirror(&ep));
        let g = mirrored_groups(&ep);
        assert_eq!(g.len(), 2);
        let v4 = g
            .iter()
            .find(|g| g.address_type == "IPv4")
            .cloned()
            .unwrap_or_else(|| g[0].clone());
        assert_eq!(v4.endpoints.len(), 2);
        assert_eq!(v4.endpoints[0].hostname.as_deref(), Some("db"));
        assert_eq!(
            v4.endpoints[0].conditions.as_ref().and_then(|c| c.ready),
            Some(true)
        );
        assert_eq!(
            v4.endpoints[1].conditions.as_ref().and_then(|c| c.ready),
            Some(false)
        );
        assert_eq!(v4.ports[0].port, Some(5432));
        let (labels, ann) = mirrored_meta(&ep);
        assert_eq!(
            labels.get(LABEL_MANAGED_BY).map(String::as_str),
            Some(MIRRORING_CONTROLLER_NAME)
        );
        assert_eq!(
            labels.get(LABEL_SERVICE_NAME).map(String::as_str),
            Some("ext")
        );
        assert_eq!(labels.get("x").map(String::as_str), Some("y"));
        assert!(!ann.contains_key(LAST_APPLIED));
        assert!(ann.contains_key("keep"));
        let mut managed = ep.clone();
        managed
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(EP_MANAGED_BY.into(), EP_CONTROLLER.into());
        assert!(!should_mirror(&managed));
        let mut skip = ep;
        skip.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(LABEL_SKIP_MIRROR.into(), "true".into());
        assert!(!should_mirror(&skip));
    }
}
