//! Pod networking conformance: pod-to-pod and node-to-pod HTTP and UDP
//! through netexec servers (upstream's Granular Checks), and host ports
//! that share a port number but differ in host IP or protocol.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use serde_json::{json, Value};

use crate::conformance;
use crate::ctx::{phase, pod, ready, Ctx};
use crate::Test;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    vec![
        conformance!("Networking, intra pod http", intra_pod_http),
        conformance!("Networking, intra pod udp", intra_pod_udp),
        conformance!("Networking, intra pod http, from node", node_pod_http),
        conformance!(
            "Scheduling, HostPort matching and HostIP and Protocol not-matching",
            host_port
        ),
    ]
}

/// netexec HTTP port of the endpoint pods.
const ENDPOINT_HTTP_PORT: u16 = 8083;
/// netexec UDP port of the endpoint pods.
const ENDPOINT_UDP_PORT: u16 = 8081;
/// netexec HTTP port of the test container pod.
const TEST_CONTAINER_HTTP_PORT: u16 = 9080;
/// Pause between tries, as upstream's hitEndpointRetryDelay.
const RETRY_DELAY: Duration = Duration::from_secs(2);
/// Upstream's testTries.
const TEST_TRIES: usize = 30;

/// A port for a host-network helper server, unlikely to be in use.
fn host_helper_port() -> u16 {
    use rand::Rng;
    rand::rng().random_range(20000..30000)
}

/// Ready, schedulable nodes (at most 10, as upstream's maxNetProxyPodsCount).
async fn schedulable_nodes(c: &Ctx) -> Result<Vec<Node>> {
    let nodes = c.all::<Node>().list(&ListParams::default()).await?;
    let ok: Vec<Node> = nodes
        .items
        .into_iter()
        .filter(crate::ctx::node_schedulable)
        .take(10)
        .collect();
    if ok.is_empty() {
        bail!("no ready schedulable nodes");
    }
    Ok(ok)
}

/// Runs `cmd` with /bin/sh in pod `name`; (stdout, error if it failed).
async fn shell(c: &Ctx, name: &str, cmd: &str) -> Result<String> {
    c.exec(name, None, &["/bin/sh", "-c", cmd]).await
}

/// Upstream's NetworkingTestConfig after setupCore: netserver pods (one per
/// node), the test container pod, and (for node tests) a host-network pod.
struct NetConfig {
    endpoints: Vec<Pod>,
    test_pod_ip: String,
    /// Host-network helper pod and the port of its netexec server.
    host_pod: Option<(String, u16)>,
    max_tries: usize,
}

/// The netexec endpoint pod pinned to the node with hostname label `host`.
fn netserver_pod(c: &Ctx, name: &str, host: &str, selector: &str) -> Value {
    let probe = json!({
        "initialDelaySeconds": 10, "timeoutSeconds": 30, "periodSeconds": 10,
        "successThreshold": 1, "failureThreshold": 3,
        "httpGet": {"path": "/healthz", "port": ENDPOINT_HTTP_PORT},
    });
    let mut p = pod(
        name,
        json!({
            "containers": [{
                "name": "webserver",
                "image": c.env.images.agnhost,
                "imagePullPolicy": "IfNotPresent",
                "args": ["netexec",
                    format!("--http-port={ENDPOINT_HTTP_PORT}"),
                    format!("--udp-port={ENDPOINT_UDP_PORT}")],
                "ports": [
                    {"name": "http", "containerPort": ENDPOINT_HTTP_PORT},
                    {"name": "udp", "containerPort": ENDPOINT_UDP_PORT, "protocol": "UDP"},
                ],
                "livenessProbe": probe,
                "readinessProbe": probe,
            }],
            "nodeSelector": {"kubernetes.io/hostname": host},
        }),
    );
    p["metadata"]["labels"] = json!({ selector: "true" });
    p
}

async fn setup(c: &Ctx, host_network: bool) -> Result<NetConfig> {
    let selector = format!("selector-{}", crate::ctx::suffix());
    let nodes = schedulable_nodes(c).await?;
    let mut names = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let name = format!("netserver-{i}");
        let host = n
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/hostname").cloned())
            .unwrap_or_default();
        c.create_pod(netserver_pod(c, &name, &host, &selector))
            .await?;
        names.push(name);
    }
    let mut endpoints = Vec::new();
    for name in &names {
        endpoints.push(c.wait_pod(name, "Ready", ready).await?);
    }

    c.create_pod(pod(
        "test-container-pod",
        json!({"containers": [{
            "name": "webserver",
            "image": c.env.images.agnhost,
            "imagePullPolicy": "IfNotPresent",
            "args": ["netexec", format!("--http-port={TEST_CONTAINER_HTTP_PORT}")],
            "ports": [{"name": "http", "containerPort": TEST_CONTAINER_HTTP_PORT}],
        }]}),
    ))
    .await?;
    // The host-network pod runs a netexec server too (on a random port, UDP
    // off): busybox nc cannot send UDP, so UDP probes from the node go
    // through its /dial endpoint.
    let mut host_pod = None;
    if host_network {
        let port = host_helper_port();
        c.create_pod(pod(
            "host-test-container-pod",
            json!({
                "hostNetwork": true,
                "containers": [{
                    "name": "agnhost-container",
                    "image": c.env.images.agnhost,
                    "imagePullPolicy": "IfNotPresent",
                    "args": ["netexec", format!("--http-port={port}"), "--udp-port=-1"],
                }],
            }),
        ))
        .await?;
        host_pod = Some(("host-test-container-pod".to_string(), port));
    }
    let test_pod = c
        .wait_pod("test-container-pod", "Running", |p| phase(p) == "Running")
        .await?;
    if let Some((name, _)) = &host_pod {
        c.wait_pod(name, "Running", |p| phase(p) == "Running")
            .await?;
    }
    let test_pod_ip = pod_ip(&test_pod)?;
    let n = endpoints.len();
    Ok(NetConfig {
        endpoints,
        test_pod_ip,
        host_pod,
        max_tries: n * n + TEST_TRIES,
    })
}

fn pod_ip(p: &Pod) -> Result<String> {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .with_context(|| format!("pod {:?} has no IP", p.metadata.name))
}

fn pod_name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// `host:port` with IPv6 brackets.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The responses of one netexec /dial answer.
fn dial_responses(out: &str) -> Result<Vec<String>> {
    let v: Value = serde_json::from_str(out)
        .with_context(|| format!("failed to unmarshal the dial response {out:?}"))?;
    Ok(v["responses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default())
}

/// Upstream's DialFromContainer with the "hostname" command: asks the
/// test container's netexec to dial `target` over `protocol` until every
/// expected hostname has answered (and no other), or `max_tries` pass.
async fn dial_from_test_container(
    c: &Ctx,
    cfg: &NetConfig,
    protocol: &str,
    target: &str,
    port: u16,
    max_tries: usize,
    expected: &BTreeSet<String>,
) -> Result<()> {
    // busybox wget stands in for curl.
    let cmd = format!(
        "wget -q -O - 'http://{}/dial?request=hostname&protocol={protocol}&host={target}&port={port}&tries=1'",
        join_host_port(&cfg.test_pod_ip, TEST_CONTAINER_HTTP_PORT)
    );
    let mut seen = BTreeSet::new();
    let mut last_err = String::new();
    for i in 0..max_tries {
        match shell(c, "test-container-pod", &cmd)
            .await
            .and_then(|o| dial_responses(&o))
        {
            Ok(rs) => {
                seen.extend(rs);
                let unexpected: Vec<&String> = seen.difference(expected).collect();
                if !unexpected.is_empty() {
                    bail!(
                        "received unexpected responses at attempt {i}: command {cmd}, retrieved {seen:?}, expected {expected:?}"
                    );
                }
                if &seen == expected {
                    return Ok(());
                }
            }
            Err(e) => last_err = format!("{e:#}"),
        }
        tokio::time::sleep(RETRY_DELAY).await;
    }
    bail!(
        "did not find expected responses: tries {max_tries}, command {cmd}, retrieved {seen:?}, expected {expected:?} (last error: {last_err})"
    )
}

/// Upstream's checkPodToPodConnectivity: one quick try per endpoint, then
/// up to max_tries for those that failed.
async fn pod_to_pod(c: &Ctx, protocol: &str, port: u16) -> Result<()> {
    let cfg = setup(c, false).await?;
    let mut failed = Vec::new();
    for ep in &cfg.endpoints {
        let expected = BTreeSet::from([pod_name(ep)]);
        let ip = pod_ip(ep)?;
        if dial_from_test_container(c, &cfg, protocol, &ip, port, 1, &expected)
            .await
            .is_err()
        {
            failed.push(ep);
        }
    }
    let mut errors = Vec::new();
    for ep in failed {
        let expected = BTreeSet::from([pod_name(ep)]);
        let ip = pod_ip(ep)?;
        if let Err(e) =
            dial_from_test_container(c, &cfg, protocol, &ip, port, cfg.max_tries, &expected).await
        {
            errors.push(format!("{e:#}"));
        }
    }
    if !errors.is_empty() {
        bail!(
            "{} out of {} connections failed: {}",
            errors.len(),
            cfg.endpoints.len(),
            errors.join("; ")
        );
    }
    Ok(())
}

async fn intra_pod_http(c: Ctx) -> Result<()> {
    pod_to_pod(&c, "http", ENDPOINT_HTTP_PORT).await
}

async fn intra_pod_udp(c: Ctx) -> Result<()> {
    pod_to_pod(&c, "udp", ENDPOINT_UDP_PORT).await
}

/// Upstream's DialFromNode: from the host-network pod, asks `target` for
/// its hostname over `protocol` until the expected one answers.
async fn dial_from_node(
    c: &Ctx,
    cfg: &NetConfig,
    protocol: &str,
    target: &str,
    port: u16,
    expected: &BTreeSet<String>,
) -> Result<()> {
    let (host_pod, helper_port) = cfg.host_pod.clone().context("no host-network pod")?;
    let cmd = if protocol == "udp" {
        format!(
            "wget -q -O - 'http://127.0.0.1:{helper_port}/dial?request=hostName&protocol=udp&host={target}&port={port}&tries=1'"
        )
    } else {
        format!(
            "timeout 15 wget -q -O - http://{}/hostName",
            join_host_port(target, port)
        )
    };
    let mut seen = BTreeSet::new();
    let mut last_err = String::new();
    for _ in 0..cfg.max_tries {
        match shell(c, &host_pod, &cmd).await {
            Ok(out) => {
                let got = if protocol == "udp" {
                    dial_responses(&out)?
                } else {
                    vec![out.trim().to_string()]
                };
                seen.extend(got.into_iter().filter(|s| !s.is_empty()));
                if &seen == expected {
                    return Ok(());
                }
            }
            Err(e) => last_err = format!("{e:#}"),
        }
        tokio::time::sleep(RETRY_DELAY).await;
    }
    bail!(
        "failed to find expected endpoints: tries {}, command {cmd}, retrieved {seen:?}, expected {expected:?} (last error: {last_err})",
        cfg.max_tries
    )
}

async fn node_to_pod(c: &Ctx, protocol: &str, port: u16) -> Result<()> {
    let cfg = setup(c, true).await?;
    check_node_to_pod(c, &cfg, protocol, port).await
}

/// The same check over the pods `node_to_pod` set up already.
async fn node_to_pod_again(c: &Ctx, protocol: &str, port: u16) -> Result<()> {
    let mut endpoints = Vec::new();
    for p in c.pods().list(&ListParams::default()).await?.items {
        if pod_name(&p).starts_with("netserver-") {
            endpoints.push(p);
        }
    }
    let host = c.pods().get("host-test-container-pod").await?;
    let port_arg = host
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].args.clone())
        .unwrap_or_default()
        .iter()
        .find_map(|a| a.strip_prefix("--http-port=").and_then(|p| p.parse().ok()))
        .context("the host pod's netexec port")?;
    let n = endpoints.len();
    let cfg = NetConfig {
        endpoints,
        test_pod_ip: String::new(),
        host_pod: Some(("host-test-container-pod".to_string(), port_arg)),
        max_tries: n * n + TEST_TRIES,
    };
    check_node_to_pod(c, &cfg, protocol, port).await
}

async fn check_node_to_pod(c: &Ctx, cfg: &NetConfig, protocol: &str, port: u16) -> Result<()> {
    for ep in &cfg.endpoints {
        let expected = BTreeSet::from([pod_name(ep)]);
        dial_from_node(c, cfg, protocol, &pod_ip(ep)?, port, &expected)
            .await
            .with_context(|| format!("dialing {protocol} from the node to pod {}", pod_name(ep)))?;
    }
    Ok(())
}

/// Upstream names both node-pod tests (http and udp) "Networking, intra
/// pod http, from node"; one registration serves both, so it checks both.
async fn node_pod_http(c: Ctx) -> Result<()> {
    node_to_pod(&c, "http", ENDPOINT_HTTP_PORT).await?;
    node_to_pod_again(&c, "udp", ENDPOINT_UDP_PORT).await
}

// ------------------------------------------------------------------ HostPort

/// A netexec pod exposing `port` on the node at `host_ip` over `protocol`.
fn host_port_pod(
    c: &Ctx,
    name: &str,
    host_ip: &str,
    port: u16,
    protocol: &str,
    node: &str,
) -> Value {
    let (args, probe_port) = if protocol == "TCP" {
        (
            json!(["netexec", "--http-port=8080", "--udp-port=-1"]),
            8080,
        )
    } else {
        (
            json!(["netexec", "--http-port=8008", "--udp-port=8080"]),
            8008,
        )
    };
    pod(
        name,
        json!({
            "containers": [{
                "name": "agnhost",
                "image": c.env.images.agnhost,
                "args": args,
                "ports": [{"hostPort": port, "containerPort": 8080, "protocol": protocol, "hostIP": host_ip}],
                "readinessProbe": {"httpGet": {"path": "/hostname", "port": probe_port, "scheme": "HTTP"}},
            }],
            "nodeName": node,
        }),
    )
}

async fn host_port(c: Ctx) -> Result<()> {
    let nodes = schedulable_nodes(&c).await?;
    let node = &nodes[0];
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let host_ip = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| {
            a.iter()
                .find(|a| a.type_ == "InternalIP" && !a.address.contains(':'))
                .map(|a| a.address.clone())
        })
        .context("failed to get the node's InternalIP")?;
    let localhost = "127.0.0.1";
    let port: u16 = 54323;

    for (name, ip, proto) in [
        ("pod1", localhost, "TCP"),
        ("pod2", host_ip.as_str(), "TCP"),
        ("pod3", host_ip.as_str(), "UDP"),
    ] {
        c.create_pod(host_port_pod(&c, name, ip, port, proto, &node_name))
            .await?;
        c.wait_pod(name, "Ready", ready).await?;
    }

    // A host-network pod on the same node; it runs netexec (UDP off) so
    // the UDP probe can go through its /dial (busybox nc has no UDP).
    let helper = host_helper_port();
    c.create_pod(pod(
        "e2e-host-exec",
        json!({
            "hostNetwork": true,
            "nodeName": node_name,
            "containers": [{
                "name": "e2e-host-exec",
                "image": c.env.images.agnhost,
                "args": ["netexec", format!("--http-port={helper}"), "--udp-port=-1"],
            }],
        }),
    ))
    .await?;
    c.wait_running("e2e-host-exec").await?;

    let timeout = 5;
    // busybox wget stands in for curl (it cannot pick the source address).
    let cmd1 = format!(
        "timeout {timeout} wget -q -O - http://{}/hostname",
        join_host_port(localhost, port)
    );
    let cmd2 = format!(
        "timeout {timeout} wget -q -O - http://{}/hostname",
        join_host_port(&host_ip, port)
    );
    let cmd3 = format!(
        "wget -q -O - 'http://127.0.0.1:{helper}/dial?request=hostname&protocol=udp&host={host_ip}&port={port}&tries=1'"
    );
    let mut last = String::new();
    for _ in 0..5 {
        let h1 = match shell(&c, "e2e-host-exec", &cmd1).await {
            Ok(h) => h,
            Err(e) => {
                last = format!("cannot connect to pod1 at {localhost}:{port}: {e:#}");
                continue;
            }
        };
        let h2 = match shell(&c, "e2e-host-exec", &cmd2).await {
            Ok(h) => h,
            Err(e) => {
                last = format!("cannot connect to pod2 at {host_ip}:{port}: {e:#}");
                continue;
            }
        };
        if h1 == h2 {
            last = format!("pod1 and pod2 both answered {h1:?}");
            continue;
        }
        let h3 = match shell(&c, "e2e-host-exec", &cmd3)
            .await
            .and_then(|o| dial_responses(&o))
        {
            Ok(rs) if !rs.is_empty() => rs.join(","),
            Ok(_) => {
                last = format!("no UDP answer from pod3 at {host_ip}:{port}");
                continue;
            }
            Err(e) => {
                last = format!("cannot connect to pod3 at {host_ip}:{port}/UDP: {e:#}");
                continue;
            }
        };
        if h1 == h3 || h2 == h3 {
            last = format!("pods must have different hostnames: {h1:?} {h2:?} {h3:?}");
            continue;
        }
        return Ok(());
    }
    bail!("failed to connect to exposed host ports: {last}")
}
