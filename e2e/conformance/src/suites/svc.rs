//! Cluster DNS conformance: names of the cluster, of headless and regular
//! services (A, SRV, PTR, partially qualified), of ExternalName services
//! (CNAME) and of pods with a hostname and subdomain, looked up from a
//! prober pod with busybox nslookup (our stand-in for upstream's dig in
//! jessie-dnsutils); and a pod's own dnsConfig (nameservers, searches).

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
        conformance!("DNS, for ExternalName Services", dns_external_name),
        conformance!("DNS, custom dnsConfig", dns_custom_config),
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

// ------------------------------------------------------- ExternalName

/// From `prober`, `qtype` lookups of `fqdn` (absolute: no search list)
/// answer `want` (a CNAME target or an address) within the pod start
/// timeout, as upstream's validateTargetedProbeOutput.
async fn expect_targeted(c: &Ctx, prober: &str, fqdn: &str, qtype: &str, want: &str) -> Result<()> {
    let cmd = format!("nslookup -type={qtype} {fqdn}.");
    crate::ctx::wait_for(
        &format!("{qtype} lookup of {fqdn} to answer {want}"),
        c.env.pod_start,
        || {
            let cmd = cmd.clone();
            async move {
                let out = c.exec(prober, None, &["/bin/sh", "-c", &cmd]).await?;
                let answers: Vec<String> = if qtype == "cname" {
                    out.lines()
                        .filter_map(|l| {
                            l.split_once("canonical name =")
                                .map(|(_, t)| t.trim().to_string())
                        })
                        .collect()
                } else {
                    super::services::answered_addresses(&out)
                };
                if answers
                    .iter()
                    .any(|a| a.trim_end_matches('.') == want.trim_end_matches('.'))
                {
                    return Ok(Some(()));
                }
                bail!("answered {answers:?}")
            }
        },
    )
    .await
}

async fn dns_external_name(c: Ctx) -> Result<()> {
    let name = "dns-test-service-3";
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "ExternalName", "externalName": "foo.example.com"},
    }))
    .await
    .context("failed to create ExternalName service")?;
    let fqdn = format!("{name}.{}.svc.{DOMAIN}", c.ns);
    let p = prober(&c).await?;
    // Only cluster names are looked up, and only from the cluster DNS.
    super::services::require_cluster_dns(&c, &p).await?;
    expect_targeted(&c, &p, &fqdn, "cname", "foo.example.com.").await?;

    let svcs = c.api::<Service>();
    let mut s = svcs.get(name).await?;
    s.spec.get_or_insert_with(Default::default).external_name = Some("bar.example.com".into());
    svcs.replace(name, &Default::default(), &s)
        .await
        .context("failed to change externalName of service")?;
    expect_targeted(&c, &p, &fqdn, "cname", "bar.example.com.").await?;

    let mut s = svcs.get(name).await?;
    let spec = s.spec.get_or_insert_with(Default::default);
    spec.type_ = Some("ClusterIP".into());
    spec.external_name = None;
    spec.ports = Some(vec![crate::ctx::from_json(
        json!({"port": 80, "name": "http", "protocol": "TCP"}),
    )?]);
    let s = svcs
        .replace(name, &Default::default(), &s)
        .await
        .context("failed to change service type to ClusterIP")?;
    let ip = s
        .spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| !ip.is_empty())
        .context("the service has no cluster IP after the change to ClusterIP")?;
    let qtype = if ip.contains(':') { "aaaa" } else { "a" };
    expect_targeted(&c, &p, &fqdn, qtype, &ip).await
}

// ---------------------------------------------------------- dnsConfig

/// Upstream's custom dnsConfig test: a pod with dnsPolicy None gets the
/// given nameserver and search path in its resolv.conf, as read by agnhost
/// `dns-suffix` and `dns-server-list` (the nameserver is never queried).
async fn dns_custom_config(c: Ctx) -> Result<()> {
    let server = "1.1.1.1";
    let search = "resolv.conf.local";
    let name = "test-dns-nameservers";
    c.create_pod(pod(
        name,
        json!({
            "dnsPolicy": "None",
            "dnsConfig": {"nameservers": [server], "searches": [search]},
            "containers": [{"name": "agnhost-container", "image": c.env.images.agnhost, "args": ["pause"]}],
        }),
    ))
    .await?;
    c.wait_running(name).await?;
    let run = |arg: &'static str| {
        let c = &c;
        async move {
            c.exec(name, Some("agnhost-container"), &["/agnhost", arg])
                .await
                .with_context(|| format!("failed to run command '/agnhost {arg}' on pod"))
        }
    };
    let out = run("dns-suffix").await?;
    if !out.contains(search) {
        bail!("customized DNS suffix list not found configured in pod, expected to contain: {search}, got: {out}");
    }
    let out = run("dns-server-list").await?;
    if !out.contains(server) {
        bail!("customized DNS server not found in configured in pod, expected to contain: {server}, got: {out}");
    }
    Ok(())
}
