//! Cluster DNS conformance: names of the cluster, of headless and regular
//! services (A, SRV, PTR, partially qualified) and of pods with a hostname
//! and subdomain, looked up from a prober pod with busybox nslookup (our
//! stand-in for upstream's dig in jessie-dnsutils).

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use crate::conformance;
use crate::ctx::{pod, Ctx};
use crate::Test;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    vec![
        conformance!("DNS, cluster", dns_cluster),
        conformance!("DNS, services", dns_services),
        conformance!("DNS, PQDN for services", dns_pqdn),
        conformance!("DNS, resolve the hostname", dns_hostname),
        conformance!("DNS, resolve the subdomain", dns_subdomain),
    ]
}

/// The cluster's DNS domain (upstream's default ClusterDNSDomain).
const DOMAIN: &str = "cluster.local";

// ------------------------------------------------------------------- DNS

/// Starts the DNS prober pod (busybox, labelled dns-test=true).
async fn prober(c: &Ctx) -> Result<String> {
    let name = c.name("dns-test");
    let mut p = pod(
        &name,
        json!({"containers": [{
            "name": "querier",
            "image": c.env.images.busybox,
            "command": ["sleep", "3600"],
        }]}),
    );
    p["metadata"]["labels"] = json!({"dns-test": "true"});
    c.create_pod(p).await?;
    c.wait_running(&name).await?;
    Ok(name)
}

/// Upstream's probe loop: every lookup (`-type=` query and name) must
/// get an answer from the prober pod; all are retried together until they
/// have all answered once, or the pod start timeout passes.
async fn expect_lookups(c: &Ctx, prober: &str, lookups: &[(&str, String)]) -> Result<()> {
    let mut pending: Vec<(&str, String)> = lookups.to_vec();
    let deadline = std::time::Instant::now() + c.env.pod_start;
    loop {
        let mut still = Vec::new();
        let mut errors = Vec::new();
        for (qtype, name) in pending {
            let cmd = format!("nslookup -type={qtype} {name}");
            let answered = match c.exec(prober, None, &["/bin/sh", "-c", &cmd]).await {
                Ok(out) => out.lines().any(|l| {
                    l.starts_with("Address:") && !l.contains(":53")
                        || l.contains("service =")
                        || l.contains("name =")
                }),
                Err(e) => {
                    errors.push(format!("{qtype} {name}: {e:#}"));
                    false
                }
            };
            if !answered {
                still.push((qtype, name));
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            let names: Vec<String> = still.iter().map(|(q, n)| format!("{q} {n}")).collect();
            bail!(
                "DNS lookups without an answer after {:?}: {} (errors: {})",
                c.env.pod_start,
                names.join(", "),
                errors.join("; ")
            );
        }
        pending = still;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The prober pod's own A record name (a-b-c-d.ns.pod.domain).
async fn pod_a_record(c: &Ctx, prober: &str) -> Result<String> {
    let p = c.pods().get(prober).await?;
    let ip = p
        .status
        .and_then(|s| s.pod_ip)
        .context("prober has no IP")?;
    Ok(format!("{}.{}.pod.{DOMAIN}", ip.replace('.', "-"), c.ns))
}

/// Upstream names both cluster tests ("/etc/hosts entries for the
/// cluster" and "DNS for the cluster") "DNS, cluster"; one registration
/// serves both, so it checks both: first the kubelet-managed /etc/hosts
/// entries of a pod with hostname and subdomain, then cluster DNS names.
async fn dns_cluster(c: Ctx) -> Result<()> {
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "dns-test-service"},
        "spec": {"clusterIP": "None", "selector": {"dns-test": "true"},
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }))
    .await?;
    let name = c.name("dns-test");
    let mut p = pod(
        &name,
        json!({
            "hostname": "dns-querier-1",
            "subdomain": "dns-test-service",
            "containers": [{"name": "querier", "image": c.env.images.busybox, "command": ["sleep", "3600"]}],
        }),
    );
    p["metadata"]["labels"] = json!({"dns-test": "true"});
    c.create_pod(p).await?;
    c.wait_running(&name).await?;
    // busybox has no getent: look the names up in /etc/hosts directly.
    let hosts = c.exec(&name, None, &["cat", "/etc/hosts"]).await?;
    let fqdn = format!("dns-querier-1.dns-test-service.{}.svc.{DOMAIN}", c.ns);
    for wanted in [fqdn.as_str(), "dns-querier-1"] {
        let found = hosts.lines().any(|l| {
            !l.trim_start().starts_with('#') && l.split_whitespace().skip(1).any(|w| w == wanted)
        });
        if !found {
            bail!("/etc/hosts has no entry for {wanted}:\n{hosts}");
        }
    }

    let mut lookups: Vec<(&str, String)> = [
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        format!("kubernetes.default.svc.{DOMAIN}"),
    ]
    .into_iter()
    .map(|n| ("a", n))
    .collect();
    lookups.push(("a", pod_a_record(&c, &name).await?));
    expect_lookups(&c, &name, &lookups).await
}

/// The headless and regular services of the DNS tests, selecting dns-test=true.
async fn dns_test_services(c: &Ctx, regular: &str) -> Result<Service> {
    let selector = json!({"dns-test": "true"});
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "dns-test-service"},
        "spec": {"clusterIP": "None", "selector": selector, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }))
    .await?;
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": regular},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }))
    .await
}

async fn dns_services(c: Ctx) -> Result<()> {
    let regular = dns_test_services(&c, "test-service-2").await?;
    let p = prober(&c).await?;
    let ns = c.ns.clone();
    let mut lookups: Vec<(&str, String)> = vec![
        ("a", "dns-test-service".into()),
        ("a", format!("dns-test-service.{ns}")),
        ("a", format!("dns-test-service.{ns}.svc")),
        ("srv", format!("_http._tcp.dns-test-service.{ns}.svc")),
        ("srv", format!("_http._tcp.test-service-2.{ns}.svc")),
    ];
    let ip = regular
        .spec
        .and_then(|s| s.cluster_ip)
        .context("test-service-2 has no cluster IP")?;
    lookups.push(("ptr", ip));
    expect_lookups(&c, &p, &lookups).await
}

async fn dns_pqdn(c: Ctx) -> Result<()> {
    dns_test_services(&c, "test-service-2").await?;
    let p = prober(&c).await?;
    let ns = c.ns.clone();
    let mut lookups: Vec<(&str, String)> = Vec::new();
    for svc in ["dns-test-service", "test-service-2"] {
        lookups.push(("a", svc.to_string()));
        lookups.push(("a", format!("{svc}.{ns}")));
        lookups.push(("a", format!("{svc}.{ns}.svc")));
        lookups.push(("srv", format!("_http._tcp.{svc}.{ns}")));
        lookups.push(("srv", format!("_http._tcp.{svc}.{ns}.svc")));
    }
    expect_lookups(&c, &p, &lookups).await
}

/// Upstream's pod hostname/subdomain tests: a headless service
/// "dns-test-service-2" and a prober pod with hostname "dns-querier-2" and
/// that subdomain; `names` (given the namespace) must resolve from it.
async fn dns_pod_names(c: &Ctx, names: impl Fn(&str) -> Vec<String>) -> Result<()> {
    let labels = json!({"dns-test-hostname-attribute": "true"});
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "dns-test-service-2"},
        "spec": {"clusterIP": "None", "selector": labels, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }))
    .await?;
    let name = c.name("dns-test");
    let mut p = pod(
        &name,
        json!({
            "hostname": "dns-querier-2",
            "subdomain": "dns-test-service-2",
            "containers": [{"name": "querier", "image": c.env.images.busybox, "command": ["sleep", "3600"]}],
        }),
    );
    p["metadata"]["labels"] = labels;
    c.create_pod(p).await?;
    c.wait_running(&name).await?;
    let lookups: Vec<(&str, String)> = names(&c.ns).into_iter().map(|n| ("a", n)).collect();
    expect_lookups(c, &name, &lookups).await
}

async fn dns_hostname(c: Ctx) -> Result<()> {
    dns_pod_names(&c, |ns| {
        vec![format!(
            "dns-querier-2.dns-test-service-2.{ns}.svc.{DOMAIN}"
        )]
    })
    .await
}

async fn dns_subdomain(c: Ctx) -> Result<()> {
    dns_pod_names(&c, |ns| {
        vec![
            format!("dns-querier-2.dns-test-service-2.{ns}.svc.{DOMAIN}"),
            format!("dns-test-service-2.{ns}.svc.{DOMAIN}"),
        ]
    })
    .await
}
