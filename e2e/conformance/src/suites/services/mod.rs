//! Services conformance: EndpointSlice API and controller behaviour, the
//! API server's pod and service proxy, Service types (ClusterIP, NodePort,
//! ExternalName) and their reachability from a client pod, session
//! affinity, same port over TCP and UDP, and endpoint latency.
//!
//! Reachability goes, as upstream's service jig does, from an agnhost "exec"
//! pod: busybox `nc` for TCP and `/agnhost connect` for UDP (busybox nc has
//! no UDP), busybox `wget` where upstream uses curl. Waits for traffic are
//! bounded ([`REACH_TIMEOUT`]) so that a cluster without a service proxy
//! fails fast with the address that did not answer. Service names are only
//! looked up when the client pod's resolver is the cluster DNS
//! ([`require_cluster_dns`]): no query ever goes to the host's resolver.

use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::core::v1::{Node, Pod, ReplicationController, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, PostParams};
use serde_json::{json, Value};

use crate::ctx::{phase, pod, ready, wait_for, Ctx};
use crate::Test;

mod endpointslice;
mod latency;
mod proxy;
mod types;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    v.extend(endpointslice::tests());
    v.extend(latency::tests());
    v.extend(proxy::tests());
    v.extend(types::tests());
    v
}

/// The cluster's DNS domain (upstream's default ClusterDNSDomain).
pub(crate) const DOMAIN: &str = "cluster.local";
/// How long traffic to a service address may take to get an answer
/// (upstream waits up to 2 minutes; a proxy-less cluster fails after this).
pub(crate) const REACH_TIMEOUT: Duration = Duration::from_secs(60);
/// upstream's defaultServeHostnameServicePort.
const SERVE_HOSTNAME_PORT: i32 = 80;
/// The port agnhost serve-hostname listens on.
const SERVE_HOSTNAME_TARGET: i32 = 9376;
/// The label naming a slice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

// ------------------------------------------------------------ pods, exec

/// An agnhost pod running `args`.
fn agnhost_pod(c: &Ctx, name: &str, args: Value) -> Value {
    pod(
        name,
        json!({"containers": [{
            "name": "agnhost-container",
            "image": c.env.images.agnhost,
            "args": args,
        }]}),
    )
}

/// Creates upstream's exec pod (agnhost pause) named `prefix-xxxxx` and
/// waits until it runs ready.
async fn exec_pod(c: &Ctx, prefix: &str) -> Result<String> {
    let name = c.name(prefix);
    c.create_pod(agnhost_pod(c, &name, json!(["pause"])))
        .await?;
    c.wait_running(&name).await?;
    Ok(name)
}

/// How long one exec into a pod may take (the commands bound themselves;
/// this guards against a stuck exec stream).
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` with /bin/sh in pod `name`; stdout, or the failure.
async fn sh(c: &Ctx, name: &str, cmd: &str) -> Result<String> {
    exec(c, name, &["/bin/sh", "-c", cmd]).await
}

/// `c.exec` of `cmd` in pod `name`, bounded by [`EXEC_TIMEOUT`].
async fn exec(c: &Ctx, name: &str, cmd: &[&str]) -> Result<String> {
    tokio::time::timeout(EXEC_TIMEOUT, c.exec(name, None, cmd))
        .await
        .with_context(|| format!("exec {cmd:?} in {name}: no result after {EXEC_TIMEOUT:?}"))?
}

/// `host:port` with IPv6 brackets.
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Fails unless pod `name` resolves names through the cluster DNS (its
/// resolv.conf searches `<ns>.svc.<domain>`, as kubelet writes for
/// dnsPolicy ClusterFirst with a cluster DNS). Without it a lookup of a
/// service name would go to the host's resolver, which tests never query.
pub(crate) async fn require_cluster_dns(c: &Ctx, name: &str) -> Result<()> {
    let conf = exec(c, name, &["cat", "/etc/resolv.conf"]).await?;
    let want = format!("{}.svc.{DOMAIN}", c.ns);
    let searched = conf.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("search") && w.any(|d| d.trim_end_matches('.') == want)
    });
    if !searched {
        let servers: Vec<&str> = conf
            .lines()
            .filter_map(|l| l.strip_prefix("nameserver"))
            .map(str::trim)
            .collect();
        bail!(
            "pod {name} has no cluster DNS: its /etc/resolv.conf does not search {want} (nameservers {servers:?}), so service names cannot be resolved (the host's resolver is not queried)"
        );
    }
    Ok(())
}

/// upstream's testEndpointReachability: from pod `client`, `host:port`
/// must answer over `protocol` within `timeout` (TCP: `echo hostName | nc`
/// prints something; UDP: `/agnhost connect` gets a reply). `what` names
/// the address kind in the error ("ClusterIP", "NodePort", ...).
async fn reach(
    c: &Ctx,
    client: &str,
    what: &str,
    host: &str,
    port: i32,
    protocol: &str,
    timeout: Duration,
) -> Result<()> {
    let hp = join_host_port(host, port);
    let cmd = match protocol {
        "TCP" => format!("echo hostName | timeout 5 nc -w 2 {host} {port}"),
        "UDP" => {
            format!("/agnhost connect --timeout=2s --protocol=udp --udp-data=hostName {hp}")
        }
        p => bail!("service reachability check is not supported for {p}"),
    };
    wait_for(
        &format!("{what} {hp} to answer over {protocol}"),
        timeout,
        || {
            let cmd = cmd.clone();
            let hp = hp.clone();
            async move {
                let out = sh(c, client, &cmd).await?;
                if protocol == "TCP" && out.trim().is_empty() {
                    bail!("empty answer from {hp}");
                }
                Ok(Some(()))
            }
        },
    )
    .await
    .with_context(|| format!("no answer over {protocol} from {what} {hp} after {timeout:?}"))
}

// ------------------------------------------------------------- nodes

/// InternalIPs of up to two ready, schedulable nodes (upstream's
/// GetBoundedReadySchedulableNodes(2) then CollectAddresses).
async fn node_internal_ips(c: &Ctx) -> Result<Vec<String>> {
    let nodes = c.all::<Node>().list(&ListParams::default()).await?;
    let ips: Vec<String> = nodes
        .items
        .iter()
        .filter(|n| crate::ctx::node_schedulable(n))
        .take(2)
        .flat_map(|n| {
            n.status
                .iter()
                .flat_map(|s| s.addresses.iter().flatten())
                .filter(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    ensure!(
        !ips.is_empty(),
        "no ready schedulable node has an InternalIP"
    );
    Ok(ips)
}

/// The first InternalIP of a ready node in the family of `cluster_ip`.
async fn node_ip_like(c: &Ctx, cluster_ip: &str) -> Result<String> {
    let v6 = cluster_ip.contains(':');
    node_internal_ips(c)
        .await?
        .into_iter()
        .find(|ip| ip.contains(':') == v6)
        .with_context(|| {
            format!(
                "failed to get Node internal IP for family {}",
                if v6 { "IPv6" } else { "IPv4" }
            )
        })
}

// ------------------------------------------------------ services, jig

/// Upstream's service TestJig: a name and the `testid` labels that select
/// the pods it creates.
struct Jig {
    name: String,
    labels: Value,
}

impl Jig {
    fn new(name: &str) -> Jig {
        let id = format!("{name}-{}{}", crate::ctx::suffix(), crate::ctx::suffix());
        Jig {
            name: name.to_string(),
            labels: json!({ "testid": id }),
        }
    }

    /// The jig's TCP service on port 80 with `spec` fields laid over.
    fn tcp_service(&self, spec: Value) -> Value {
        let mut s = json!({
            "selector": self.labels,
            "ports": [{"protocol": "TCP", "port": 80}],
        });
        if let (Some(b), Value::Object(o)) = (s.as_object_mut(), spec) {
            for (k, v) in o {
                b.insert(k, v);
            }
        }
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": self.name, "labels": self.labels},
            "spec": s,
        })
    }

    /// The jig's ExternalName service pointing to foo.example.com.
    fn external_name_service(&self) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": self.name, "labels": self.labels},
            "spec": {"selector": self.labels, "externalName": "foo.example.com", "type": "ExternalName"},
        })
    }

    /// Creates `svc` and sanity-checks it as its requested type.
    async fn create(&self, c: &Ctx, svc: Value) -> Result<Service> {
        let want = svc["spec"]["type"]
            .as_str()
            .unwrap_or("ClusterIP")
            .to_string();
        let s = c
            .create::<Service>(svc)
            .await
            .with_context(|| format!("create service {}", self.name))?;
        sanity_check(&s, &want)?;
        Ok(s)
    }

    /// upstream's CreateServicePods: an RC of `n` agnhost serve-hostname
    /// pods (raw TCP and UDP on 9376) with the jig's labels, all ready.
    async fn create_service_pods(&self, c: &Ctx, n: i32) -> Result<Vec<Pod>> {
        run_rc(
            c,
            &self.name,
            &self.labels,
            n,
            &c.env.images.agnhost,
            json!(["serve-hostname", "--http=false", "--tcp", "--udp"]),
        )
        .await
    }
}

fn spec_type(s: &Service) -> &str {
    s.spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("ClusterIP")
}

fn cluster_ip(s: &Service) -> String {
    s.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .unwrap_or_default()
}

/// upstream's sanityCheckService: the type is `want`; non-ExternalName
/// services have a cluster IP and no externalName, ExternalName ones no
/// cluster IP; NodePort services have a node port (in 30000-32767) on
/// every port and others none.
fn sanity_check(s: &Service, want: &str) -> Result<()> {
    let name = s.metadata.name.clone().unwrap_or_default();
    let got = spec_type(s);
    ensure!(
        got == want,
        "service {name}: unexpected Spec.Type ({got}), expected {want}"
    );
    let spec = s.spec.clone().unwrap_or_default();
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    if want != "ExternalName" {
        let ext = spec.external_name.clone().unwrap_or_default();
        ensure!(
            ext.is_empty(),
            "service {name}: unexpected Spec.ExternalName ({ext}), expected empty"
        );
        ensure!(
            !ip.is_empty(),
            "service {name}: didn't get ClusterIP for non-ExternalName service"
        );
    } else {
        ensure!(
            ip.is_empty(),
            "service {name}: unexpected Spec.ClusterIP ({ip}) for ExternalName service, expected empty"
        );
    }
    let expect_node_ports = want == "NodePort" || want == "LoadBalancer";
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let np = p.node_port.unwrap_or(0);
        ensure!(
            (np != 0) == expect_node_ports,
            "service {name}: unexpected Spec.Ports[{i}].NodePort ({np}) for a {want} service"
        );
        if np != 0 {
            ensure!(
                (30000..30000 + 2768).contains(&np),
                "service {name}: out-of-range nodePort ({np})"
            );
        }
    }
    Ok(())
}

/// upstream's jig.UpdateService: get, change, update (3 tries on
/// conflicts), then sanity-check as the type the change set.
async fn update_service(c: &Ctx, name: &str, change: impl Fn(&mut Service)) -> Result<Service> {
    let api = c.api::<Service>();
    for _ in 0..3 {
        let mut s = api.get(name).await.context("get service")?;
        change(&mut s);
        let want = spec_type(&s).to_string();
        match api.replace(name, &PostParams::default(), &s).await {
            Ok(r) => {
                sanity_check(&r, &want)?;
                return Ok(r);
            }
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 504 => continue,
            Err(e) => return Err(anyhow::Error::from(e).context(format!("update service {name}"))),
        }
    }
    bail!("too many retries updating Service {name}")
}

/// Pods matching `selector` (not being deleted).
async fn live_pods(c: &Ctx, selector: &str) -> Result<Vec<Pod>> {
    Ok(c.pods()
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// `k=v,...` of a JSON label map.
fn selector_of(labels: &Value) -> String {
    labels
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Waits until `n` live pods match `selector` and all run ready.
async fn wait_ready_pods(c: &Ctx, selector: &str, n: usize) -> Result<Vec<Pod>> {
    wait_for(
        &format!("{n} running and ready pods matching {selector}"),
        c.env.pod_start,
        || async {
            let ps = live_pods(c, selector).await?;
            Ok(
                (ps.len() == n && ps.iter().all(|p| phase(p) == "Running" && ready(p)))
                    .then_some(ps),
            )
        },
    )
    .await
}

/// An RC `name` of `n` pods of `image` running `args`, labelled `labels`;
/// waits until all run ready (upstream's RunRC).
async fn run_rc(
    c: &Ctx,
    name: &str,
    labels: &Value,
    n: i32,
    image: &str,
    args: Value,
) -> Result<Vec<Pod>> {
    c.create::<ReplicationController>(json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": n, "selector": labels, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": name, "image": image, "args": args,
            }]},
        }},
    }))
    .await
    .with_context(|| format!("create replication controller {name}"))?;
    wait_ready_pods(c, &selector_of(labels), n as usize).await
}

/// upstream's getServeHostnameService: port 80 to 9376, selecting
/// `name=<name>`, of type `svc_type` with session affinity `affinity`.
fn serve_hostname_service(name: &str, svc_type: &str, affinity: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": svc_type,
            "sessionAffinity": affinity,
            "selector": {"name": name},
            "ports": [{"port": SERVE_HOSTNAME_PORT, "targetPort": SERVE_HOSTNAME_TARGET, "protocol": "TCP"}],
        },
    })
}

/// upstream's StartServeHostnameService: creates `svc` and an RC of
/// `replicas` agnhost serve-hostname (HTTP) pods behind it; returns the
/// service as stored.
async fn start_serve_hostname(c: &Ctx, svc: Value, replicas: i32) -> Result<Service> {
    let name = svc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    c.create::<Service>(svc)
        .await
        .with_context(|| format!("create service {name}"))?;
    run_rc(
        c,
        &name,
        &json!({ "name": name }),
        replicas,
        &c.env.images.agnhost,
        json!(["serve-hostname"]),
    )
    .await?;
    let s = c.api::<Service>().get(&name).await?;
    ensure!(!cluster_ip(&s).is_empty(), "service IP is blank for {name}");
    Ok(s)
}

/// upstream's waitForAvailableEndpoint: some EndpointSlice of service
/// `name` has an endpoint with an address.
async fn wait_available_endpoint(c: &Ctx, name: &str) -> Result<()> {
    let lp = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={name}"));
    wait_for(
        &format!("an available endpoint of service {name}"),
        c.env.pod_start,
        || {
            let lp = lp.clone();
            async move {
                let slices = c.api::<EndpointSlice>().list(&lp).await?;
                Ok(slices
                    .items
                    .iter()
                    .any(|s| s.endpoints.first().is_some_and(|e| !e.addresses.is_empty()))
                    .then_some(()))
            }
        },
    )
    .await
}

/// upstream's jig.CheckServiceReachability from pod `client`: ClusterIP
/// services answer on their cluster IP and name on every port, NodePort
/// ones also on every node's InternalIP at the node port, ExternalName
/// ones resolve to an address. (Addresses are tried before names so that
/// a missing service proxy and a missing cluster DNS are told apart.)
async fn check_reachability(c: &Ctx, svc: &Service, client: &str) -> Result<()> {
    let t = spec_type(svc).to_string();
    sanity_check(svc, &t)?;
    let name = svc.metadata.name.clone().unwrap_or_default();
    if t == "ExternalName" {
        return check_external_name(c, &name, client).await;
    }
    ensure!(
        t == "ClusterIP" || t == "NodePort",
        "unsupported service type {t:?} to verify service reachability for {name:?} service"
    );
    let nodes = if t == "NodePort" {
        node_internal_ips(c).await?
    } else {
        Vec::new()
    };
    wait_available_endpoint(c, &name).await?;
    let ip = cluster_ip(svc);
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    for p in &ports {
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        reach(c, client, "ClusterIP", &ip, p.port, proto, REACH_TIMEOUT).await?;
        if t == "NodePort" {
            let np = p.node_port.unwrap_or(0);
            for n in &nodes {
                if n.starts_with("127.") || n == "::1" || n.contains(':') != ip.contains(':') {
                    continue;
                }
                reach(c, client, "NodePort on node", n, np, proto, REACH_TIMEOUT).await?;
            }
        }
        require_cluster_dns(c, client).await?;
        reach(
            c,
            client,
            "service name",
            &name,
            p.port,
            proto,
            REACH_TIMEOUT,
        )
        .await?;
    }
    Ok(())
}

/// upstream's checkExternalServiceReachability: the service's FQDN
/// resolves (nslookup gives an address) from pod `client`.
async fn check_external_name(c: &Ctx, name: &str, client: &str) -> Result<()> {
    require_cluster_dns(c, client).await?;
    // The trailing dot keeps the lookup off the search list.
    let fqdn = format!("{name}.{}.svc.{DOMAIN}.", c.ns);
    wait_for(
        &format!("ExternalName service {fqdn} to resolve to an IP"),
        REACH_TIMEOUT,
        || async {
            let out = sh(c, client, &format!("nslookup {fqdn}")).await?;
            Ok(answered_addresses(&out).first().map(|_| ()))
        },
    )
    .await
}

/// The answer addresses in busybox nslookup output (not the server's).
pub(crate) fn answered_addresses(out: &str) -> Vec<String> {
    let mut seen_name = false;
    let mut v = Vec::new();
    for l in out.lines() {
        if l.starts_with("Name:") {
            seen_name = true;
        }
        if let Some(a) = l.strip_prefix("Address:") {
            let a = a.trim();
            // busybox prints the server as "Address: ip:53" before any answer.
            if seen_name || !(a.ends_with(":53") || a.ends_with("#53")) {
                if let Some(w) = a.split_whitespace().next() {
                    v.push(w.to_string());
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nslookup_answers_skip_the_server() {
        let out = "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\nName:\ta.b.svc.cluster.local\nAddress: 10.96.0.7\n";
        assert_eq!(answered_addresses(out), vec!["10.96.0.7".to_string()]);
        let nx =
            "Server:\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n** server can't find x: NXDOMAIN\n";
        assert!(answered_addresses(nx).is_empty());
    }

    #[test]
    fn node_port_sanity() {
        let s: Service = serde_json::from_value(json!({
            "metadata": {"name": "x"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "ports": [{"port": 80, "nodePort": 30080}]},
        }))
        .unwrap();
        assert!(sanity_check(&s, "NodePort").is_ok());
        assert!(sanity_check(&s, "ClusterIP").is_err());
    }
}
