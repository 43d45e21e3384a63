//! The Endpoints controller, as upstream's pkg/controller/endpoint: every
//! Service with a selector (not ExternalName) gets an Endpoints object of the
//! same name whose subsets list the pods matching the selector — ready pods
//! in `addresses`, the others in `notReadyAddresses` (all in `addresses`
//! with publishNotReadyAddresses), terminating and terminal pods and pods
//! without an IP left out — with hostname (when the pod's subdomain names
//! the Service), nodeName and targetRef, and the ports each pod serves
//! (targetPort by number or by named container port; a pod lacking the named
//! port is skipped for that port). The Endpoints carries the Service's
//! labels, `endpoints.kubernetes.io/managed-by: endpoint-controller`, the
//! headless label and `endpoints.kubernetes.io/last-change-trigger-time`.
//! Services without a selector keep their user-made Endpoints untouched; a
//! deleted Service's Endpoints is deleted.
//!
//! The pod facts shared with the EndpointSlice controller (which pods are
//! included, named-port resolution, hostname) live here.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, ResourceExt};

use crate::pods;
use crate::{Context, Error, Result, Shutdown};

/// Label naming the controller that manages an Endpoints.
pub const LABEL_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
/// This controller's name in that label.
pub const CONTROLLER_NAME: &str = "endpoint-controller";
/// Label set on the Endpoints/EndpointSlices of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Annotation with the time of the last change that triggered an update.
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Annotation set when the Endpoints was truncated.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Addresses kept in one Endpoints (upstream's maxCapacity).
pub const MAX_CAPACITY: usize = 1000;
/// Leader-election record annotation (such Endpoints are never cleaned up).
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let services: Api<Service> = Api::all(ctx.client.clone());
    let controller = Controller::new(services, watcher::Config::default());
    let mapper = PodMapper::new(controller.store());
    let cleanup = cleanup_deleted_services(ctx.clone(), shutdown.clone());
    let main = controller
        .watches(
            Api::<Pod>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |pod| mapper.services_of(&pod),
        )
        .watches(
            Api::<Endpoints>::all(ctx.client.clone()),
            watcher::Config::default(),
            |ep| {
                ep.namespace()
                    .map(|ns| ObjectRef::<Service>::new(&ep.name_any()).within(&ns))
            },
        )
        .graceful_shutdown_on(shutdown.signal())
        .run(
            reconcile,
            |svc, err, ctx: Arc<Context>| ctx.error_action(&crate::key(&*svc), err),
            ctx,
        )
        .for_each(|_| futures::future::ready(()));
    futures::future::join(main, cleanup).await;
    Ok(())
}

// ------------------------------------------------------------ shared pieces

/// Maps a pod event to the Services that select it now or selected it at
/// its previous event (so a pod whose labels changed leaves its old
/// Services' endpoints).
#[derive(Clone)]
pub struct PodMapper {
    services: Store<Service>,
    previous: Arc<Mutex<HashMap<String, HashSet<ObjectRef<Service>>>>>,
}

impl PodMapper {
    /// A mapper over the controller's Service store.
    pub fn new(services: Store<Service>) -> Self {
        Self {
            services,
            previous: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Services to reconcile for this pod event.
    pub fn services_of(&self, pod: &Pod) -> Vec<ObjectRef<Service>> {
        let ns = pod.namespace().unwrap_or_default();
        let key = format!("{ns}/{}", pod.name_any());
        let now: HashSet<ObjectRef<Service>> = self
            .services
            .state()
            .into_iter()
            .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
            .filter(|s| {
                s.spec
                    .as_ref()
                    .and_then(|sp| sp.selector.as_ref())
                    .is_some_and(|sel| selector_matches(sel, pod.metadata.labels.as_ref()))
            })
            .map(|s| ObjectRef::from_obj(&*s))
            .collect();
        let mut prev = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: HashSet<ObjectRef<Service>> = prev.remove(&key).unwrap_or_default();
        out.extend(now.iter().cloned());
        if !now.is_empty() {
            prev.insert(key, now);
        }
        out.into_iter().collect()
    }
}

/// True when the Service selector (a plain map) selects `labels`.
pub fn selector_matches(
    sel: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The Service's selector as a label selector for listing pods.
pub fn service_selector(sel: &BTreeMap<String, String>) -> Selector {
    Selector::from_iter(sel.clone())
}

/// Upstream's ShouldPodBeInEndpoints: not terminal, has an IP, and not
/// terminating unless `include_terminating`.
pub fn should_include(pod: &Pod, include_terminating: bool) -> bool {
    if matches!(pods::phase(pod), "Succeeded" | "Failed") {
        return false;
    }
    if pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The pod's IPs (status.podIPs, or status.podIP).
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(st) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<String> = st
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if ips.is_empty() {
        if let Some(ip) = st.pod_ip.as_ref().filter(|ip| !ip.is_empty()) {
            ips.push(ip.clone());
        }
    }
    ips
}

/// True for an IPv6 address.
pub fn is_ipv6(ip: &str) -> bool {
    ip.contains(':')
}

/// The Service's primary IP family (`IPv4` unless it asks for IPv6).
pub fn service_family(svc: &Service) -> &'static str {
    let spec = svc.spec.as_ref();
    let fam = spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .map(String::as_str);
    match fam {
        Some("IPv6") => "IPv6",
        Some(_) => "IPv4",
        None => match spec.and_then(|s| s.cluster_ip.as_deref()) {
            Some(ip) if is_ipv6(ip) => "IPv6",
            _ => "IPv4",
        },
    }
}

/// The pod IP of the given family, if any.
pub fn pod_ip_of_family(pod: &Pod, family: &str) -> Option<String> {
    pod_ips(pod)
        .into_iter()
        .find(|ip| is_ipv6(ip) == (family == "IPv6"))
}

/// Upstream's ShouldSetHostname.
pub fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.hostname.as_deref())
        .is_some_and(|h| !h.is_empty())
        && spec.and_then(|s| s.subdomain.as_deref()) == Some(svc.name_any().as_str())
        && pod.namespace() == svc.namespace()
}

/// Upstream's FindPort: the pod port a Service port sends to; None when the
/// pod lacks the named port.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(0)) => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// A targetRef to the pod.
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        ..Default::default()
    }
}

/// True when the Service has no cluster IP (headless).
pub fn is_headless(svc: &Service) -> bool {
    match svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) {
        None | Some("") | Some("None") => true,
        Some(_) => false,
    }
}

/// The latest change among the inputs (Service creation, pods' creation and
/// Ready transitions), as the last-change trigger time.
pub fn last_change(svc: &Service, pods: &[Pod]) -> Option<Timestamp> {
    let mut t = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
    for p in pods {
        let c = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let r = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0);
        let d = p.metadata.deletion_timestamp.as_ref().map(|t| t.0);
        for x in [c, r, d].into_iter().flatten() {
            t = Some(t.map_or(x, |y| y.max(x)));
        }
    }
    t
}

/// RFC 3339 with nanoseconds, UTC, as Go's time.RFC3339Nano.
pub fn format_time(t: Timestamp) -> String {
    t.to_string()
}

// ------------------------------------------------------------ endpoints

/// The subsets upstream computes for `svc` from `pods` (already filtered by
/// selector), repacked: addresses sharing the same port set share a subset;
/// addresses sorted by IP, ports by name.
pub fn desired_subsets(svc: &Service, pods: &[Pod]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let tolerate = spec.publish_not_ready_addresses == Some(true);
    let family = service_family(svc);
    let ports = spec.ports.clone().unwrap_or_default();
    // (address, ready) -> ports
    let mut per_addr: BTreeMap<(String, String), (EndpointAddress, bool, BTreeSet<PortKey>)> =
        BTreeMap::new();
    for pod in pods {
        if !should_include(pod, tolerate) {
            continue;
        }
        let Some(ip) = pod_ip_of_family(pod, family) else {
            continue;
        };
        let mut addr = EndpointAddress {
            ip: ip.clone(),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            target_ref: Some(pod_ref(pod)),
            hostname: None,
        };
        if should_set_hostname(pod, svc) {
            addr.hostname = pod.spec.as_ref().and_then(|s| s.hostname.clone());
        }
        let ready = tolerate || pods::is_ready(pod);
        let mut set = BTreeSet::new();
        if ports.is_empty() {
            if !is_headless(svc) {
                continue;
            }
        } else {
            for sp in &ports {
                if let Some(n) = find_port(pod, sp) {
                    set.insert(PortKey {
                        name: sp.name.clone().unwrap_or_default(),
                        port: n,
                        protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        app_protocol: sp.app_protocol.clone(),
                    });
                }
            }
            if set.is_empty() {
                continue;
            }
        }
        let key = (ip, pod.uid().unwrap_or_else(|| pod.name_any()));
        per_addr.insert(key, (addr, ready, set));
    }
    // Group by port set.
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for (_, (addr, ready, set)) in per_addr {
        let g = groups.entry(set.into_iter().collect()).or_default();
        if ready {
            g.0.push(addr);
        } else {
            g.1.push(addr);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| ports.into_iter().map(PortKey::into_port).collect()),
        })
        .collect()
}

/// A resolved port, ordered for grouping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortKey {
    /// Service port name.
    pub name: String,
    /// Resolved pod port.
    pub port: i32,
    /// Protocol.
    pub protocol: String,
    /// appProtocol.
    pub app_protocol: Option<String>,
}

impl PortKey {
    fn into_port(self) -> EndpointPort {
        EndpointPort {
            name: (!self.name.is_empty()).then_some(self.name),
            port: self.port,
            protocol: Some(self.protocol),
            app_protocol: self.app_protocol,
        }
    }
}

/// Truncates the subsets to [`MAX_CAPACITY`] addresses (ready first);
/// returns true when something was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let ready: usize = subsets
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum();
    let not_ready: usize = subsets
        .iter()
        .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
        .sum();
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, not_ready)
    };
    let mut left = max;
    for s in subsets.iter_mut() {
        let n = if truncate_ready {
            s.addresses.as_ref().map_or(0, Vec::len)
        } else {
            s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        };
        let share = (n * max).div_ceil(total.max(1)).min(left);
        if truncate_ready {
            if let Some(a) = s.addresses.as_mut() {
                a.truncate(share);
            }
            s.not_ready_addresses = None;
        } else if let Some(a) = s.not_ready_addresses.as_mut() {
            a.truncate(share);
        }
        left -= share.min(left);
    }
    true
}

/// The labels of the Endpoints of `svc`.
pub fn desired_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l = svc.metadata.labels.clone().unwrap_or_default();
    l.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    if is_headless(svc) {
        l.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        l.remove(HEADLESS_LABEL);
    }
    l
}

fn strip_rv(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut s = subsets.to_vec();
    for sub in &mut s {
        for a in sub
            .addresses
            .iter_mut()
            .flatten()
            .chain(sub.not_ready_addresses.iter_mut().flatten())
        {
            if let Some(r) = a.target_ref.as_mut() {
                r.resource_version = None;
            }
        }
    }
    s
}

/// The Endpoints to write, or None when `current` is up to date.
pub fn desired_endpoints(
    svc: &Service,
    pods: &[Pod],
    current: Option<&Endpoints>,
    trigger: Option<Timestamp>,
) -> Option<Endpoints> {
    let mut subsets = desired_subsets(svc, pods);
    let over = truncate(&mut subsets);
    let labels = desired_labels(svc);
    if let Some(cur) = current {
        let cur_subsets = strip_rv(cur.subsets.as_deref().unwrap_or_default());
        let ann = cur.metadata.annotations.clone().unwrap_or_default();
        if cur_subsets == subsets
            && cur.metadata.labels.clone().unwrap_or_default() == labels
            && ann.contains_key(OVER_CAPACITY) == over
        {
            return None;
        }
    }
    let mut ep = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: Some(svc.name_any()),
            namespace: svc.namespace(),
            ..Default::default()
        },
        subsets: None,
    });
    ep.subsets = (!subsets.is_empty()).then_some(subsets);
    ep.metadata.labels = Some(labels);
    let ann = ep.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match trigger {
        Some(t) => {
            ann.insert(LAST_CHANGE_TRIGGER_TIME.into(), format_time(t));
        }
        None => {
            ann.remove(LAST_CHANGE_TRIGGER_TIME);
        }
    }
    if over {
        ann.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        ann.remove(OVER_CAPACITY);
    }
    Some(ep)
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*svc);
    let spec = svc.spec.clone().unwrap_or_default();
    let Some(selector) = spec.selector.as_ref() else {
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    };
    if spec.type_.as_deref() == Some("ExternalName") || svc.metadata.deletion_timestamp.is_some() {
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods = pods::list(&ctx.client, &ns, &service_selector(selector)).await?;
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let current = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get endpoints {key}")))?;
    let trigger = last_change(&svc, &pods);
    if let Some(ep) = desired_endpoints(&svc, &pods, current.as_ref(), trigger) {
        let res = if current.is_some() {
            api.replace(&name, &PostParams::default(), &ep).await
        } else {
            api.create(&PostParams::default(), &ep).await
        };
        if let Err(e) = res {
            // A terminating namespace refuses creates: drop the item.
            if let kube::Error::Api(s) = &e {
                if current.is_none() && s.code == 403 {
                    ctx.succeeded(&key);
                    return Ok(Action::await_change());
                }
            }
            let (reason, msg) = if current.is_none() {
                (
                    "FailedToCreateEndpoint",
                    format!("Failed to create endpoint for service {key}: {e}"),
                )
            } else {
                (
                    "FailedToUpdateEndpoint",
                    format!("Failed to update endpoint {key}: {e}"),
                )
            };
            if !matches!(&e, kube::Error::Api(s) if s.code == 409) {
                let r = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Endpoints".into()),
                    namespace: Some(ns.clone()),
                    name: Some(name.clone()),
                    ..Default::default()
                };
                ctx.warning(&r, reason, msg).await;
            }
            return Err(Error::kube(format!("write endpoints {key}"))(e));
        }
    }
    ctx.succeeded(&key);
    Ok(Action::await_change())
}

/// Deletes the Endpoints of deleted Services, and at start those left from
/// Services deleted while the controller was not running.
async fn cleanup_deleted_services(ctx: Arc<Context>, shutdown: Shutdown) {
    let services: Api<Service> = Api::all(ctx.client.clone());
    let mut stream = watcher(services, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known: HashSet<(String, String)> = HashSet::new();
    let mut init: HashSet<(String, String)> = HashSet::new();
    let mut first = true;
    let stop = shutdown.signal();
    tokio::pin!(stop);
    loop {
        let ev = tokio::select! {
            _ = &mut stop => return,
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return };
        let Ok(ev) = ev else { continue };
        match ev {
            watcher::Event::Init => init.clear(),
            watcher::Event::InitApply(s) => {
                init.insert((s.namespace().unwrap_or_default(), s.name_any()));
            }
            watcher::Event::InitDone => {
                known = std::mem::take(&mut init);
                if first {
                    first = false;
                    if let Err(e) = delete_leftovers(&ctx, &known).await {
                        tracing::debug!("endpoints leftover cleanup: {e}");
                    }
                }
            }
            watcher::Event::Apply(s) => {
                known.insert((s.namespace().unwrap_or_default(), s.name_any()));
            }
            watcher::Event::Delete(s) => {
                let ns = s.namespace().unwrap_or_default();
                let name = s.name_any();
                known.remove(&(ns.clone(), name.clone()));
                let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => tracing::debug!("delete endpoints {ns}/{name}: {e}"),
                }
            }
        }
    }
}

async fn delete_leftovers(ctx: &Context, services: &HashSet<(String, String)>) -> Result<()> {
    let api: Api<Endpoints> = Api::all(ctx.client.clone());
    let list = api
        .list(&ListParams::default().labels(&format!("{LABEL_MANAGED_BY}={CONTROLLER_NAME}")))
        .await
        .map_err(Error::kube("list endpoints"))?;
    for ep in list.items {
        if ep.annotations().contains_key(LEADER_ANNOTATION) {
            continue;
        }
        let ns = ep.namespace().unwrap_or_default();
        if services.contains(&(ns.clone(), ep.name_any())) {
            continue;
        }
        let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
        let _ = api.delete(&ep.name_any(), &DeleteParams::default()).await;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub(crate) fn pod(name: &str, ip: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(Timestamp::UNIX_EPOCH)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    pub(crate) fn service(ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("svc-uid".into()),
                labels: Some(BTreeMap::from([("team".into(), "a".into())])),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".into(), "web".into())])),
                cluster_ip: Some("10.96.0.10".into()),
                ports: Some(ports),
                ..Default::default()
            }),
            status: None,
        }
    }

    pub(crate) fn sport(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            protocol: Some("TCP".into()),
            target_port: Some(target),
            ..Default::default()
        }
    }

    fn ips(a: &Option<Vec<EndpointAddress>>) -> Vec<String> {
        a.iter().flatten().map(|a| a.ip.clone()).collect()
    }

    #[test]
    fn ready_and_not_ready_addresses() {
        let svc = service(vec![sport("http", 80, IntOrString::Int(8080))]);
        let pods = vec![pod("a", "10.0.0.2", true), pod("b", "10.0.0.3", false)];
        let s = desired_subsets(&svc, &pods);
        assert_eq!(s.len(), 1);
        assert_eq!(ips(&s[0].addresses), vec!["10.0.0.2"]);
        assert_eq!(ips(&s[0].not_ready_addresses), vec!["10.0.0.3"]);
        let p = &s[0].ports.as_ref().expect("ports")[0];
        assert_eq!(
            (p.name.as_deref(), p.port, p.protocol.as_deref()),
            (Some("http"), 8080, Some("TCP"))
        );
        let a = &s[0].addresses.as_ref().expect("addresses")[0];
        assert_eq!(a.node_name.as_deref(), Some("node1"));
        let r = a.target_ref.as_ref().expect("targetRef");
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("Pod"), Some("a"), Some("uid-a"))
        );
    }

    #[test]
    fn publish_not_ready_and_terminating() {
        let mut svc = service(vec![sport("http", 80, IntOrString::Int(8080))]);
        let mut gone = pod("c", "10.0.0.4", true);
        gone.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let no_ip = {
            let mut p = pod("d", "", true);
            if let Some(st) = p.status.as_mut() {
                st.pod_ips = None;
            }
            p
        };
        let pods = vec![
            pod("a", "10.0.0.2", true),
            pod("b", "10.0.0.3", false),
            gone,
            no_ip,
        ];
        let s = desired_subsets(&svc, &pods);
        assert_eq!(ips(&s[0].addresses), vec!["10.0.0.2"]);
        assert_eq!(ips(&s[0].not_ready_addresses), vec!["10.0.0.3"]);
        if let Some(sp) = svc.spec.as_mut() {
            sp.publish_not_ready_addresses = Some(true);
        }
        let s = desired_subsets(&svc, &pods);
        assert_eq!(
            ips(&s[0].addresses),
            vec!["10.0.0.2", "10.0.0.3", "10.0.0.4"]
        );
        assert!(s[0].not_ready_addresses.is_none());
    }

    #[test]
    fn named_ports_split_subsets() {
        let svc = service(vec![sport("web", 80, IntOrString::String("http".into()))]);
        let mut other = pod("b", "10.0.0.3", true);
        if let Some(spec) = other.spec.as_mut() {
            spec.containers[0].ports = Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 9090,
                ..Default::default()
            }]);
        }
        let mut lacking = pod("c", "10.0.0.4", true);
        if let Some(spec) = lacking.spec.as_mut() {
            spec.containers[0].ports = None;
        }
        let s = desired_subsets(&svc, &[pod("a", "10.0.0.2", true), other, lacking]);
        assert_eq!(s.len(), 2);
        let by_port: BTreeMap<i32, Vec<String>> = s
            .iter()
            .map(|x| (x.ports.as_ref().map_or(0, |p| p[0].port), ips(&x.addresses)))
            .collect();
        assert_eq!(by_port[&8080], vec!["10.0.0.2"]);
        assert_eq!(by_port[&9090], vec!["10.0.0.3"]);
    }

    #[test]
    fn hostname_when_subdomain_names_service() {
        let svc = service(vec![sport("http", 80, IntOrString::Int(8080))]);
        let mut p = pod("a", "10.0.0.2", true);
        if let Some(spec) = p.spec.as_mut() {
            spec.hostname = Some("web-0".into());
            spec.subdomain = Some("web".into());
        }
        let mut q = pod("b", "10.0.0.3", true);
        if let Some(spec) = q.spec.as_mut() {
            spec.hostname = Some("other".into());
            spec.subdomain = Some("elsewhere".into());
        }
        let s = desired_subsets(&svc, &[p, q]);
        let addrs = s[0].addresses.clone().unwrap_or_default();
        assert_eq!(addrs[0].hostname.as_deref(), Some("web-0"));
        assert_eq!(addrs[1].hostname, None);
    }

    #[test]
    fn endpoints_object_and_no_op() {
        let svc = service(vec![sport("http", 80, IntOrString::Int(8080))]);
        let pods = vec![pod("a", "10.0.0.2", true)];
        let ep = desired_endpoints(&svc, &pods, None, Some(Timestamp::UNIX_EPOCH)).expect("create");
        let labels = ep.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(LABEL_MANAGED_BY).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert!(!labels.contains_key(HEADLESS_LABEL));
        assert_eq!(
            ep.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LAST_CHANGE_TRIGGER_TIME))
                .map(String::as_str),
            Some("1970-01-01T00:00:00Z")
        );
        assert!(desired_endpoints(&svc, &pods, Some(&ep), None).is_none());
        // Headless Service without ports.
        let mut headless = service(vec![]);
        if let Some(sp) = headless.spec.as_mut() {
            sp.cluster_ip = Some("None".into());
        }
        let s = desired_subsets(&headless, &pods);
        assert_eq!(ips(&s[0].addresses), vec!["10.0.0.2"]);
        assert!(s[0].ports.is_none());
        assert!(desired_labels(&headless).contains_key(HEADLESS_LABEL));
    }

    #[test]
    fn truncation_keeps_ready_first() {
        let addr = |i: usize| EndpointAddress {
            ip: format!("10.1.{}.{}", i / 256, i % 256),
            ..Default::default()
        };
        let mut s = vec![EndpointSubset {
            addresses: Some((0..900).map(addr).collect()),
            not_ready_addresses: Some((900..1200).map(addr).collect()),
            ports: None,
        }];
        assert!(truncate(&mut s));
        assert_eq!(s[0].addresses.as_ref().map(Vec::len), Some(900));
        assert_eq!(s[0].not_ready_addresses.as_ref().map(Vec::len), Some(100));
    }

    #[test]
    fn pod_mapper_remembers_previous_services() {
        let svc = service(vec![]);
        let (reader, mut writer) = kube::runtime::reflector::store::<Service>();
        writer.apply_watcher_event(&watcher::Event::Apply(svc));
        let m = PodMapper::new(reader);
        let mut p = pod("a", "10.0.0.2", true);
        assert_eq!(m.services_of(&p).len(), 1);
        p.metadata.labels = None;
        // Still maps to the old Service once, so it leaves its endpoints.
        assert_eq!(m.services_of(&p).len(), 1);
        assert_eq!(m.services_of(&p).len(), 0);
    }
}
