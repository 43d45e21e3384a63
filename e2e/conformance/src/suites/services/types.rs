//! Service types and traffic: a functioning NodePort service, changes of
//! type between ClusterIP, NodePort and ExternalName, ClientIP session
//! affinity (and switching it off and on), and one port number served over
//! both TCP and UDP.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use super::{
    agnhost_pod, check_reachability, cluster_ip, exec_pod, join_host_port, node_ip_like, reach,
    serve_hostname_service, sh, start_serve_hostname, update_service, Jig, DOMAIN,
    SERVE_HOSTNAME_PORT, SERVICE_NAME_LABEL,
};
use crate::conformance;
use crate::ctx::{from_json, wait_for, Ctx};
use crate::Test;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    vec![
        conformance!("Service, NodePort Service", nodeport_service),
        conformance!(
            "Service, change type, ExternalName to ClusterIP",
            external_name_to_cluster_ip
        ),
        conformance!(
            "Service, change type, ExternalName to NodePort",
            external_name_to_node_port
        ),
        conformance!(
            "Service, change type, ClusterIP to ExternalName",
            cluster_ip_to_external_name
        ),
        conformance!(
            "Service, change type, NodePort to ExternalName",
            node_port_to_external_name
        ),
        conformance!(
            "Service, ClusterIP type, session affinity to ClientIP",
            affinity_cluster_ip
        ),
        conformance!(
            "Service, ClusterIP type, session affinity to None",
            affinity_cluster_ip_transition
        ),
        conformance!(
            "Service, NodePort type, session affinity to ClientIP",
            affinity_node_port
        ),
        conformance!(
            "Service, NodePort type, session affinity to None",
            affinity_node_port_transition
        ),
        conformance!(
            "Service, should serve endpoints on same port and different protocols.",
            same_port_different_protocols
        ),
    ]
}

/// upstream's AffinityConfirmCount: requests in a row that must reach the
/// same backend for affinity to hold.
const AFFINITY_CONFIRM_COUNT: usize = 15;
/// upstream's AffinityTimeout.
const AFFINITY_TIMEOUT: Duration = Duration::from_secs(120);

// ------------------------------------------------------------ NodePort

async fn nodeport_service(c: Ctx) -> Result<()> {
    let jig = Jig::new("nodeport-test");
    let svc = jig
        .create(
            &c,
            jig.tcp_service(json!({
                "type": "NodePort",
                "ports": [{"port": 80, "name": "http", "protocol": "TCP", "targetPort": 9376}],
            })),
        )
        .await?;
    jig.create_service_pods(&c, 2).await?;
    let client = exec_pod(&c, "execpod").await?;
    check_reachability(&c, &svc, &client).await
}

// --------------------------------------------------------- type changes

/// ExternalName -> `to` (ClusterIP or NodePort) with port 80 -> 9376,
/// then two backends, which the service must reach.
async fn from_external_name(c: &Ctx, to: &'static str) -> Result<()> {
    let jig = Jig::new("externalname-service");
    jig.create(c, jig.external_name_service()).await?;
    let port: ServicePort =
        from_json(json!({"port": 80, "name": "http", "protocol": "TCP", "targetPort": 9376}))?;
    let svc = update_service(c, &jig.name, |s| {
        let spec = s.spec.get_or_insert_with(Default::default);
        spec.type_ = Some(to.into());
        spec.external_name = None;
        spec.ports = Some(vec![port.clone()]);
    })
    .await?;
    jig.create_service_pods(c, 2).await?;
    let client = exec_pod(c, "execpod").await?;
    check_reachability(c, &svc, &client).await
}

async fn external_name_to_cluster_ip(c: Ctx) -> Result<()> {
    from_external_name(&c, "ClusterIP").await
}

async fn external_name_to_node_port(c: Ctx) -> Result<()> {
    from_external_name(&c, "NodePort").await
}

/// A service of `from` type becomes ExternalName for the FQDN of a live
/// serve-hostname service; its cluster IP (and node ports) are released
/// and its name resolves.
async fn to_external_name(c: &Ctx, name: &str, from: &str) -> Result<()> {
    let jig = Jig::new(name);
    let spec = if from == "NodePort" {
        json!({"type": "NodePort"})
    } else {
        json!({})
    };
    jig.create(c, jig.tcp_service(spec)).await?;

    // An active service whose FQDN becomes the externalName.
    let external = "externalsvc";
    start_serve_hostname(c, serve_hostname_service(external, "ClusterIP", "None"), 2).await?;
    let fqdn = format!("{external}.{}.svc.{DOMAIN}", c.ns);

    let svc = update_service(c, &jig.name, |s| {
        let spec = s.spec.get_or_insert_with(Default::default);
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some(fqdn.clone());
    })
    .await?;
    ensure!(
        cluster_ip(&svc).is_empty(),
        "Spec.ClusterIP was not cleared: {}",
        cluster_ip(&svc)
    );
    let client = exec_pod(c, "execpod").await?;
    check_reachability(c, &svc, &client).await
}

async fn cluster_ip_to_external_name(c: Ctx) -> Result<()> {
    to_external_name(&c, "clusterip-service", "ClusterIP").await
}

async fn node_port_to_external_name(c: Ctx) -> Result<()> {
    to_external_name(&c, "nodeport-service", "NodePort").await
}

// ------------------------------------------------------ session affinity

/// upstream's affinityTracker.checkHostTrace: (enough answers, the last
/// `count` all came from one host).
fn check_host_trace(trace: &[String], count: usize) -> (bool, bool) {
    let fulfilled = trace.len() >= count;
    let Some(last) = trace.last() else {
        return (fulfilled, true);
    };
    let tail = &trace[trace.len().saturating_sub(count)..];
    (fulfilled, tail.iter().all(|h| h == last))
}

/// upstream's checkAffinity from pod `client`: rounds of 16 requests to
/// `ip:port` until the last 15 answers came from one backend
/// (`should_hold`) or not (`!should_hold`).
async fn check_affinity(
    c: &Ctx,
    client: &str,
    ip: &str,
    port: i32,
    should_hold: bool,
) -> Result<()> {
    let target = join_host_port(ip, port);
    let cmd = format!(
        "for i in $(seq 0 {AFFINITY_CONFIRM_COUNT}); do echo; timeout 2 wget -q -O - http://{target}/ 2>/dev/null; done"
    );
    let mut trace: Vec<String> = Vec::new();
    let deadline = Instant::now() + AFFINITY_TIMEOUT;
    loop {
        if let Ok(out) = sh(c, client, &cmd).await {
            trace.extend(
                out.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
        }
        let (fulfilled, holds) = check_host_trace(&trace, AFFINITY_CONFIRM_COUNT);
        if fulfilled && holds == should_hold {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let recent = &trace[trace.len().saturating_sub(20)..];
            if !fulfilled {
                bail!(
                    "affinity check of {target}: connection timed out or not enough responses ({} in {AFFINITY_TIMEOUT:?}): {recent:?}",
                    trace.len()
                );
            }
            if should_hold {
                bail!("affinity should hold but didn't: {target} answered {recent:?}");
            }
            bail!("affinity shouldn't hold but did: {target} answered {recent:?}");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// upstream's execAffinityTestForNonLBServiceWithOptionalTransition: three
/// serve-hostname backends behind a ClientIP-affinity service of
/// `svc_type`; requests from one pod stick to one backend, and with
/// `transition` stop sticking when affinity is None and stick again when
/// it is back to ClientIP.
async fn affinity(c: &Ctx, name: &str, svc_type: &str, transition: bool) -> Result<()> {
    let svc =
        start_serve_hostname(c, serve_hostname_service(name, svc_type, "ClientIP"), 3).await?;
    let (ip, port) = if svc_type == "NodePort" {
        let np = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .and_then(|p| p.node_port)
            .context("NodePort service without a node port")?;
        (node_ip_like(c, &cluster_ip(&svc)).await?, np)
    } else {
        (cluster_ip(&svc), SERVE_HOSTNAME_PORT)
    };
    let client = exec_pod(c, "execpod-affinity").await?;
    check_reachability(c, &svc, &client).await?;

    if !transition {
        return check_affinity(c, &client, &ip, port, true)
            .await
            .with_context(|| format!("failed to check affinity for service {}/{name}", c.ns));
    }
    update_service(c, name, |s| {
        s.spec.get_or_insert_with(Default::default).session_affinity = Some("None".into());
    })
    .await?;
    check_affinity(c, &client, &ip, port, false)
        .await
        .with_context(|| {
            format!(
                "failed to check affinity for service {}/{name} without session affinity",
                c.ns
            )
        })?;
    update_service(c, name, |s| {
        s.spec.get_or_insert_with(Default::default).session_affinity = Some("ClientIP".into());
    })
    .await?;
    check_affinity(c, &client, &ip, port, true)
        .await
        .with_context(|| {
            format!(
                "failed to check affinity for service {}/{name} with session affinity",
                c.ns
            )
        })
}

async fn affinity_cluster_ip(c: Ctx) -> Result<()> {
    affinity(&c, "affinity-clusterip", "ClusterIP", false).await
}

async fn affinity_cluster_ip_transition(c: Ctx) -> Result<()> {
    affinity(&c, "affinity-clusterip-transition", "ClusterIP", true).await
}

async fn affinity_node_port(c: Ctx) -> Result<()> {
    affinity(&c, "affinity-nodeport", "NodePort", false).await
}

async fn affinity_node_port_transition(c: Ctx) -> Result<()> {
    affinity(&c, "affinity-nodeport-transition", "NodePort", true).await
}

// ------------------------------------- same port, different protocols

/// (port, protocol) pairs per pod UID, as upstream's fullPortsByPodUID.
type PortsByUid = BTreeMap<String, Vec<(i32, String)>>;

fn endpoints_ports(ep: &Endpoints) -> PortsByUid {
    let mut m = PortsByUid::new();
    for s in ep.subsets.iter().flatten() {
        for a in s.addresses.iter().flatten() {
            let Some(uid) = a.target_ref.as_ref().and_then(|r| r.uid.clone()) else {
                continue;
            };
            for p in s.ports.iter().flatten() {
                m.entry(uid.clone())
                    .or_default()
                    .push((p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())));
            }
        }
    }
    m
}

fn slices_ports(slices: &[EndpointSlice]) -> PortsByUid {
    let mut m = PortsByUid::new();
    for s in slices {
        for e in &s.endpoints {
            let Some(uid) = e.target_ref.as_ref().and_then(|r| r.uid.clone()) else {
                continue;
            };
            for p in s.ports.iter().flatten() {
                m.entry(uid.clone()).or_default().push((
                    p.port.unwrap_or(0),
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ));
            }
        }
    }
    m
}

/// upstream's validatePortsAndProtocols.
fn ports_match(got: &PortsByUid, want: &PortsByUid) -> bool {
    got.len() == want.len()
        && want.iter().all(|(uid, w)| {
            got.get(uid)
                .is_some_and(|g| g.len() == w.len() && g.iter().all(|p| w.contains(p)))
        })
}

/// upstream's validateEndpointsPortsWithProtocolsOrFail: the Endpoints and
/// EndpointSlices of `svc` list exactly `want`.
async fn validate_endpoint_ports(c: &Ctx, svc: &str, want: &PortsByUid) -> Result<()> {
    let eps = c.api::<Endpoints>();
    let slices = c.api::<EndpointSlice>();
    let lp = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={svc}"));
    wait_for(
        &format!("service {svc} to expose endpoints {want:?}"),
        c.env.pod_start,
        || async {
            let Some(ep) = eps.get_opt(svc).await? else {
                bail!("no Endpoints {svc}");
            };
            let got = endpoints_ports(&ep);
            if !ports_match(&got, want) {
                bail!("unexpected endpoints: found {got:?}");
            }
            let got = slices_ports(&slices.list(&lp).await?.items);
            if !ports_match(&got, want) {
                bail!("unexpected endpoint slices: found {got:?}");
            }
            Ok(Some(()))
        },
    )
    .await
}

/// Tries of up to `window` each, every 5 s for 30 s, until one fails
/// (upstream's Eventually(testEndpointReachability).ShouldNot(BeNil())).
async fn eventually_unreachable(c: &Ctx, client: &str, ip: &str, protocol: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = reach(
            c,
            client,
            "ClusterIP",
            ip,
            80,
            protocol,
            Duration::from_secs(6),
        )
        .await;
        if r.is_err() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "ClusterIP {} still answers over {protocol} 30s after the port was removed",
                join_host_port(ip, 80)
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn same_port_different_protocols(c: Ctx) -> Result<()> {
    let name = "multiprotocol-test";
    let labels = json!({"app": "multiport"});
    let tcp = json!({"name": "tcp-port", "port": 80, "targetPort": 80, "protocol": "TCP"});
    let udp = json!({"name": "udp-port", "port": 80, "targetPort": 80, "protocol": "UDP"});
    let service = c
        .create::<Service>(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {"type": "ClusterIP", "selector": labels, "ports": [tcp, udp]},
        }))
        .await
        .context("failed to create Service")?;

    let mut p = agnhost_pod(
        &c,
        "pod1",
        json!(["netexec", "--http-port", "80", "--udp-port", "80"]),
    );
    p["metadata"]["labels"] = labels;
    p["spec"]["containers"][0]["ports"] = json!([
        {"name": "tcp-port", "containerPort": 80, "protocol": "TCP"},
        {"name": "udp-port", "containerPort": 80, "protocol": "UDP"},
    ]);
    p["spec"]["containers"][0]["env"] = json!([{"name": "FOO", "value": " "}]);
    c.create_pod(p).await?;
    let pod1: Pod = c.wait_running("pod1").await?;
    let uid = pod1.metadata.uid.clone().unwrap_or_default();
    let want = PortsByUid::from([(uid, vec![(80, "TCP".into()), (80, "UDP".into())])]);
    validate_endpoint_ports(&c, name, &want).await?;

    let client = exec_pod(&c, "execpod").await?;
    let ip = cluster_ip(&service);
    let window = Duration::from_secs(30);
    reach(&c, &client, "ClusterIP", &ip, 80, "TCP", window)
        .await
        .context("failed to connect to Service TCP port")?;
    reach(&c, &client, "ClusterIP", &ip, 80, "UDP", window)
        .await
        .context("failed to connect to Service UDP port")?;

    // TCP only: TCP still answers, UDP stops.
    set_ports(&c, name, vec![tcp]).await?;
    reach(&c, &client, "ClusterIP", &ip, 80, "TCP", window)
        .await
        .context("failed to connect to Service TCP port")?;
    eventually_unreachable(&c, &client, &ip, "UDP").await?;

    // UDP only: UDP answers, TCP stops.
    set_ports(&c, name, vec![udp]).await?;
    reach(&c, &client, "ClusterIP", &ip, 80, "UDP", window)
        .await
        .context("failed to connect to Service UDP port")?;
    eventually_unreachable(&c, &client, &ip, "TCP").await
}

/// Replaces the ports of service `name`.
async fn set_ports(c: &Ctx, name: &str, ports: Vec<serde_json::Value>) -> Result<()> {
    let api = c.api::<Service>();
    let mut s = api
        .get(name)
        .await
        .with_context(|| format!("failed to get Service {name:?}"))?;
    let ports = serde_json::from_value(serde_json::Value::Array(ports))?;
    s.spec.get_or_insert_with(Default::default).ports = Some(ports);
    api.replace(name, &PostParams::default(), &s)
        .await
        .with_context(|| format!("failed to update Service {name:?}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_trace_like_upstream() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(check_host_trace(&[], 15), (false, true));
        assert_eq!(check_host_trace(&t(&["a"; 15]), 15), (true, true));
        let mut v = t(&["b"]);
        v.extend(t(&["a"; 15]));
        assert_eq!(check_host_trace(&v, 15), (true, true));
        v.push("b".into());
        assert_eq!(check_host_trace(&v, 15), (true, false));
    }

    #[test]
    fn ports_compare_by_uid_and_protocol() {
        let want = PortsByUid::from([("u".into(), vec![(80, "TCP".into()), (80, "UDP".into())])]);
        let got = PortsByUid::from([("u".into(), vec![(80, "UDP".into()), (80, "TCP".into())])]);
        assert!(ports_match(&got, &want));
        let tcp_only = PortsByUid::from([("u".into(), vec![(80, "TCP".into())])]);
        assert!(!ports_match(&tcp_only, &want));
    }
}
