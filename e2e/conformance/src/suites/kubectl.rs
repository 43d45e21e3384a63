//! kubectl conformance: the client driving the cluster (create/apply from
//! manifests, run, describe, logs, label, patch, replace, expose, diff,
//! server-side dry-run, scale, api-versions, cluster-info, version, proxy),
//! plus the Update Demo and Guestbook applications.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use regex::Regex;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::conformance;
use crate::ctx::{phase, ready, wait_for, Ctx};
use crate::Test;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    vec![
        conformance!("Kubectl, replication controller", update_demo_create),
        conformance!("Kubectl, scale replication controller", update_demo_scale),
        conformance!("Kubectl, guestbook application", guestbook),
        conformance!("Kubectl, check version v1", api_versions),
        conformance!("Kubectl, diff Deployment", diff_deployment),
        conformance!("Kubectl, server-side dry-run Pod", dry_run_pod),
        conformance!("Kubectl, cluster info", cluster_info),
        conformance!("Kubectl, describe pod or rc", describe),
        conformance!("Kubectl, create service, replication controller", expose),
        conformance!("Kubectl, label update", label_update),
        conformance!("Kubectl, patch to annotate", patch_annotate),
        conformance!("Kubectl, version", version),
        conformance!("Kubectl, run pod", run_pod),
        conformance!("Kubectl, replace", replace),
        conformance!("Kubectl, proxy port zero", proxy_port_zero),
        conformance!("Kubectl, proxy socket", proxy_socket),
        conformance!("Kubectl, logs", logs),
    ]
}

/// What upstream passes as `--pod-running-timeout` (PodStartShortTimeout).
const POD_RUNNING_TIMEOUT: &str = "--pod-running-timeout=2m0s";

/// kubectl in the test's namespace; stdout, failing with stderr.
async fn k(c: &Ctx, args: &[&str]) -> Result<String> {
    k_in(c, args, None).await
}

/// kubectl in the test's namespace with `stdin`.
async fn k_in(c: &Ctx, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut all = vec!["--namespace", c.ns.as_str()];
    all.extend_from_slice(args);
    c.kubectl_stdin(&all, stdin).await
}

/// kubectl in the test's namespace: (success, stdout, stderr).
async fn k_out(c: &Ctx, args: &[&str], stdin: Option<&str>) -> Result<(bool, String, String)> {
    let mut all = vec!["--namespace", c.ns.as_str()];
    all.extend_from_slice(args);
    c.kubectl_output(&all, stdin).await
}

/// Upstream's checkOutput: each requirement's first item must appear on a
/// line at or after the previous match, and the rest on that same line.
fn check_output(output: &str, required: &[&[&str]]) -> Result<()> {
    let lines: Vec<&str> = output.split('\n').collect();
    let mut cur = 0;
    for req in required {
        while cur < lines.len() && !lines[cur].contains(req[0]) {
            cur += 1;
        }
        if cur == lines.len() {
            bail!("failed to find {:?} in:\n{output}", req[0]);
        }
        for item in &req[1..] {
            if !lines[cur].contains(item) {
                bail!("failed to find {item:?} in line {:?}", lines[cur]);
            }
        }
    }
    Ok(())
}

/// Pods of the namespace matching `selector`.
async fn pods_with(c: &Ctx, selector: &str) -> Result<Vec<Pod>> {
    Ok(c.pods()
        .list(&ListParams::default().labels(selector))
        .await?
        .items)
}

/// Waits until at least `n` pods matching `selector` are Running (as
/// upstream's ClusterVerification.WaitFor), returning them.
async fn wait_running_with(c: &Ctx, selector: &str, n: usize) -> Result<Vec<Pod>> {
    wait_for(
        &format!("{n} running pods with {selector}"),
        c.env.pod_start,
        || async move {
            let running: Vec<Pod> = pods_with(c, selector)
                .await?
                .into_iter()
                .filter(|p| phase(p) == "Running")
                .collect();
            Ok((running.len() >= n).then_some(running))
        },
    )
    .await
}

/// Upstream's WaitForPodsWithLabelRunning: at least one pod matches and
/// every matching pod is Running.
async fn wait_all_running_with(c: &Ctx, selector: &str) -> Result<()> {
    wait_for(
        &format!("all pods with {selector} running"),
        c.env.pod_start,
        || async move {
            let pods = pods_with(c, selector).await?;
            if pods.is_empty() {
                return Ok(None);
            }
            if let Some(p) = pods.iter().find(|p| phase(p) != "Running") {
                bail!(
                    "pod {} is {}: {}",
                    p.metadata.name.as_deref().unwrap_or(""),
                    phase(p),
                    container_states(p)
                );
            }
            Ok(Some(()))
        },
    )
    .await
}

/// The containers' states of a pod, for failure messages.
fn container_states(p: &Pod) -> String {
    let statuses = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    statuses
        .iter()
        .map(|s| format!("{}: {:?}", s.name, s.state))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Upstream's cleanupKubectlInputs: force-deletes what `manifest` created,
/// then checks nothing matching `selectors` is left.
async fn cleanup_inputs(c: &Ctx, manifest: &str, selectors: &[&str]) -> Result<()> {
    k_in(
        c,
        &["delete", "--grace-period=0", "--force", "-f", "-"],
        Some(manifest),
    )
    .await?;
    for sel in selectors {
        wait_for(
            &format!("nothing left with {sel}"),
            Duration::from_secs(60),
            || async move {
                let res = k(c, &["get", "rc,svc", "-l", sel, "--no-headers"]).await?;
                if !res.is_empty() {
                    bail!("resources left running after stop:\n{res}");
                }
                let pods = k(
                    c,
                    &[
                        "get",
                        "pods",
                        "-l",
                        sel,
                        "-o",
                        "go-template={{ range .items }}{{ if not .metadata.deletionTimestamp }}{{ .metadata.name }}{{ \"\\n\" }}{{ end }}{{ end }}",
                    ],
                )
                .await?;
                if !pods.is_empty() {
                    bail!("pods left unterminated after stop:\n{pods}");
                }
                Ok(Some(()))
            },
        )
        .await?;
    }
    Ok(())
}

/// GET `path` (absolute, with any query) from the API server, as text.
async fn raw_get(c: &Ctx, path: &str) -> Result<String> {
    let req = kube::core::Request::new("")
        .get(path.trim_start_matches('/'), &Default::default())
        .context("build request")?;
    Ok(c.client.request_text(req).await?)
}

/// The single container's image (None unless exactly one container),
/// as upstream's checkContainersImage looks at it.
fn only_image(p: &Pod) -> Option<String> {
    let cs = &p.spec.as_ref()?.containers;
    if cs.len() != 1 {
        return None;
    }
    cs[0].image.clone()
}

// ---------------------------------------------------------------- Update Demo

/// The Update Demo's replication controller. Upstream's nautilus image is
/// a web server whose /data.json names its picture; our stand-in is the
/// web-server image serving that same document.
fn nautilus_rc(c: &Ctx) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "update-demo-nautilus"},
        "spec": {
            "replicas": 2,
            "selector": {"name": "update-demo", "version": "nautilus"},
            "template": {
                "metadata": {"labels": {"name": "update-demo", "version": "nautilus"}},
                "spec": {"containers": [{
                    "name": "update-demo",
                    "image": c.env.images.httpd,
                    "command": ["/bin/sh", "-c",
                        "mkdir -p /tmp/www && echo '{\"image\": \"nautilus.jpg\"}' > /tmp/www/data.json && exec httpd -f -p 80 -h /tmp/www"],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                }]},
            },
        },
    })
    .to_string()
}

/// Upstream's validateController for the Update Demo: exactly `replicas`
/// pods with name=update-demo, each with its update-demo container running
/// `image` and serving a data.json naming nautilus.jpg (through the API
/// server's pod proxy).
async fn validate_update_demo(c: &Ctx, image: &str, replicas: usize) -> Result<()> {
    let deadline = Instant::now() + c.env.pod_start;
    let mut last = String::new();
    loop {
        match check_update_demo(c, image, replicas).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out waiting for {replicas} update-demo pods to reach a valid state (last: {last})"
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn check_update_demo(c: &Ctx, image: &str, replicas: usize) -> Result<bool> {
    let names = k(
        c,
        &[
            "get",
            "pods",
            "-o",
            "template",
            "--template={{range.items}}{{.metadata.name}} {{end}}",
            "-l",
            "name=update-demo",
        ],
    )
    .await?;
    let pods: Vec<&str> = names.split_whitespace().collect();
    if pods.len() != replicas {
        bail!("replicas: expected {replicas}, got {}", pods.len());
    }
    for pod in pods {
        let running = k(
            c,
            &[
                "get",
                "pods",
                pod,
                "-o",
                "template",
                "--template={{if (exists . \"status\" \"containerStatuses\")}}{{range .status.containerStatuses}}{{if (and (eq .name \"update-demo\") (exists . \"state\" \"running\"))}}true{{end}}{{end}}{{end}}",
            ],
        )
        .await?;
        if running != "true" {
            bail!("{pod} is created but not running");
        }
        let current = k(
            c,
            &[
                "get",
                "pods",
                pod,
                "-o",
                "template",
                "--template={{if (exists . \"spec\" \"containers\")}}{{range .spec.containers}}{{if eq .name \"update-demo\"}}{{.image}}{{end}}{{end}}{{end}}",
            ],
        )
        .await?;
        if current != image {
            bail!("{pod} runs image {current}, expected {image}");
        }
        let body = raw_get(
            c,
            &format!("/api/v1/namespaces/{}/pods/{pod}/proxy/data.json", c.ns),
        )
        .await
        .with_context(|| format!("data.json of {pod} through the pod proxy"))?;
        let data: Value = serde_json::from_str(&body)
            .with_context(|| format!("data.json of {pod} is not JSON: {body:?}"))?;
        let img = data["image"].as_str().unwrap_or_default();
        if !img.contains("nautilus.jpg") {
            bail!("data served by {pod} is inaccurate: {body}");
        }
    }
    Ok(true)
}

async fn update_demo_create(c: Ctx) -> Result<()> {
    let rc = nautilus_rc(&c);
    k_in(&c, &["create", "-f", "-"], Some(&rc)).await?;
    validate_update_demo(&c, &c.env.images.httpd, 2).await?;
    cleanup_inputs(&c, &rc, &["name=update-demo"]).await
}

async fn update_demo_scale(c: Ctx) -> Result<()> {
    let rc = nautilus_rc(&c);
    let image = c.env.images.httpd.clone();
    k_in(&c, &["create", "-f", "-"], Some(&rc)).await?;
    validate_update_demo(&c, &image, 2).await?;
    k(
        &c,
        &[
            "scale",
            "rc",
            "update-demo-nautilus",
            "--replicas=1",
            "--timeout=5m",
        ],
    )
    .await?;
    validate_update_demo(&c, &image, 1).await?;
    k(
        &c,
        &[
            "scale",
            "rc",
            "update-demo-nautilus",
            "--replicas=2",
            "--timeout=5m",
        ],
    )
    .await?;
    validate_update_demo(&c, &image, 2).await?;
    cleanup_inputs(&c, &rc, &["name=update-demo"]).await
}

// ------------------------------------------------------------------ Guestbook

/// The guestbook manifests, in upstream's order: three services, then the
/// frontend, primary and replica deployments, all running agnhost's
/// `guestbook` subcommand.
fn guestbook_manifests(c: &Ctx) -> Vec<String> {
    let img = &c.env.images.agnhost;
    let service = |name: &str, labels: Value, port: i32| {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {"ports": [{"port": port}], "selector": labels},
        })
    };
    let deployment =
        |name: &str, replicas: i32, labels: Value, container: &str, args: Value, port: i32| {
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{
                            "name": container,
                            "image": img,
                            "args": args,
                            "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
                            "ports": [{"containerPort": port}],
                        }]},
                    },
                },
            })
        };
    let replica = json!({"app": "agnhost", "role": "replica", "tier": "backend"});
    let primary = json!({"app": "agnhost", "role": "primary", "tier": "backend"});
    let frontend = json!({"app": "guestbook", "tier": "frontend"});
    [
        service("agnhost-replica", replica.clone(), 6379),
        service("agnhost-primary", primary.clone(), 6379),
        service("frontend", frontend.clone(), 80),
        deployment(
            "frontend",
            3,
            frontend,
            "guestbook-frontend",
            json!(["guestbook", "--backend-port", "6379"]),
            80,
        ),
        deployment(
            "agnhost-primary",
            1,
            primary,
            "primary",
            json!(["guestbook", "--http-port", "6379"]),
            6379,
        ),
        deployment(
            "agnhost-replica",
            2,
            replica,
            "replica",
            json!([
                "guestbook",
                "--replicaof",
                "agnhost-primary",
                "--http-port",
                "6379"
            ]),
            6379,
        ),
    ]
    .iter()
    .map(|v| v.to_string())
    .collect()
}

/// One request to the guestbook through the API server's service proxy.
async fn guestbook_request(c: &Ctx, cmd: &str, value: &str) -> Result<String> {
    raw_get(
        c,
        &format!(
            "/api/v1/namespaces/{}/services/frontend/proxy/guestbook?cmd={cmd}&key=messages&value={value}",
            c.ns
        ),
    )
    .await
}

/// Polls the guestbook until `cmd` answers `expected`.
async fn guestbook_expect(
    c: &Ctx,
    cmd: &str,
    value: &str,
    expected: &str,
    timeout: Duration,
) -> Result<()> {
    wait_for(
        &format!("guestbook {cmd} {value:?} answering {expected}"),
        timeout,
        || async move {
            let res = guestbook_request(c, cmd, value).await?;
            if res == expected {
                return Ok(Some(()));
            }
            bail!("guestbook answered {res:?}")
        },
    )
    .await
}

async fn guestbook(c: Ctx) -> Result<()> {
    let manifests = guestbook_manifests(&c);
    for m in &manifests {
        k_in(&c, &["create", "-f", "-"], Some(m)).await?;
    }
    wait_all_running_with(&c, "tier=frontend,app=guestbook").await?;
    guestbook_expect(&c, "get", "", r#"{"data":""}"#, c.env.pod_start).await?;
    guestbook_expect(
        &c,
        "set",
        "TestEntry",
        r#"{"message":"Updated"}"#,
        Duration::from_secs(60),
    )
    .await?;
    guestbook_expect(
        &c,
        "get",
        "",
        r#"{"data":"TestEntry"}"#,
        Duration::from_secs(60),
    )
    .await?;
    for m in &manifests {
        cleanup_inputs(&c, m, &[]).await?;
    }
    Ok(())
}

// ------------------------------------------------------- simple kubectl calls

async fn api_versions(c: Ctx) -> Result<()> {
    let out = k(&c, &["api-versions"]).await?;
    ensure!(out.contains("v1"), "no v1 in kubectl api-versions:\n{out}");
    Ok(())
}

async fn cluster_info(c: Ctx) -> Result<()> {
    let out = k(&c, &["cluster-info"]).await?;
    for item in ["Kubernetes control plane", "is running at"] {
        ensure!(
            out.contains(item),
            "missing {item:?} in kubectl cluster-info:\n{out}"
        );
    }
    Ok(())
}

async fn version(c: Ctx) -> Result<()> {
    let out = k(&c, &["version"]).await?;
    for item in ["Client Version: ", "Server Version: "] {
        let old = Regex::new(&format!(
            r#"{item}version.Info\{{Major:"\d", Minor:"\d+\+?", GitVersion:"v\d\.\d+\.[\d\w\-\.\+]+", GitCommit:"[0-9a-f]+""#
        ))?;
        let new = Regex::new(&format!(r"{item}v\d\.\d+\.[\d\w\-\.\+]+"))?;
        ensure!(
            old.is_match(&out) || new.is_match(&out),
            "item {item:?} is not valid in:\n{out}"
        );
    }
    Ok(())
}

// ------------------------------------------------------------- run / replace

const RUN_POD: &str = "e2e-test-httpd-pod";

async fn run_pod(c: Ctx) -> Result<()> {
    let httpd = c.env.images.httpd.clone();
    k(
        &c,
        &[
            "run",
            RUN_POD,
            "--restart=Never",
            POD_RUNNING_TIMEOUT,
            &format!("--image={httpd}"),
        ],
    )
    .await?;
    let p = c
        .pods()
        .get(RUN_POD)
        .await
        .context("get the pod kubectl run made")?;
    ensure!(
        only_image(&p).as_deref() == Some(httpd.as_str()),
        "pod {RUN_POD} does not run exactly one container with image {httpd}: {:?}",
        p.spec.map(|s| s.containers)
    );
    let policy = p.spec.as_ref().and_then(|s| s.restart_policy.clone());
    ensure!(
        policy.as_deref() == Some("Never"),
        "restart policy is {policy:?}, expected Never for --restart=Never"
    );
    k(&c, &["delete", "pods", RUN_POD]).await?;
    Ok(())
}

async fn replace(c: Ctx) -> Result<()> {
    let httpd = c.env.images.httpd.clone();
    let busybox = c.env.images.busybox.clone();
    k(
        &c,
        &[
            "run",
            RUN_POD,
            &format!("--image={httpd}"),
            POD_RUNNING_TIMEOUT,
            &format!("--labels=run={RUN_POD}"),
        ],
    )
    .await?;
    wait_all_running_with(&c, &format!("run={RUN_POD}")).await?;
    let pod_json = k(&c, &["get", "pod", RUN_POD, "-o", "json"]).await?;
    ensure!(
        pod_json.contains(RUN_POD),
        "pod {RUN_POD} not in {pod_json}"
    );
    let replaced = pod_json.replacen(&httpd, &busybox, 1);
    k_in(&c, &["replace", "-f", "-"], Some(&replaced)).await?;
    let p = c.pods().get(RUN_POD).await?;
    ensure!(
        only_image(&p).as_deref() == Some(busybox.as_str()),
        "pod {RUN_POD} does not have the image {busybox} after replace: {:?}",
        p.spec.map(|s| s.containers)
    );
    k(&c, &["delete", "pods", RUN_POD]).await?;
    Ok(())
}

async fn dry_run_pod(c: Ctx) -> Result<()> {
    let httpd = c.env.images.httpd.clone();
    k(
        &c,
        &[
            "run",
            RUN_POD,
            &format!("--image={httpd}"),
            POD_RUNNING_TIMEOUT,
            &format!("--labels=run={RUN_POD}"),
        ],
    )
    .await?;
    let patch = json!({"spec": {"containers": [{"name": RUN_POD, "image": c.env.images.busybox}]}})
        .to_string();
    k(
        &c,
        &["patch", "pod", RUN_POD, "-p", &patch, "--dry-run=server"],
    )
    .await?;
    let p = c.pods().get(RUN_POD).await?;
    ensure!(
        only_image(&p).as_deref() == Some(httpd.as_str()),
        "a server-side dry-run patch changed the pod: {:?}",
        p.spec.map(|s| s.containers)
    );
    k(&c, &["delete", "pods", RUN_POD]).await?;
    Ok(())
}

// ------------------------------------------------------------------- diff

fn httpd_deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: httpd-deployment
spec:
  selector:
    matchLabels:
      app: httpd
  template:
    metadata:
      labels:
        app: httpd
    spec:
      containers:
      - name: httpd
        image: {image}
        ports:
        - containerPort: 80
"
    )
}

async fn diff_deployment(c: Ctx) -> Result<()> {
    let (httpd, busybox) = (&c.env.images.httpd, &c.env.images.busybox);
    let deployment = httpd_deployment(httpd);
    k_in(&c, &["create", "-f", "-"], Some(&deployment)).await?;
    let declared = deployment.replacen(httpd.as_str(), busybox, 1);
    ensure!(
        declared.contains(busybox.as_str()),
        "image not replaced in {declared}"
    );
    // kubectl diff exits 1 when it finds differences.
    let (_, out, err) = k_out(&c, &["diff", "-f", "-"], Some(&declared)).await?;
    for item in [httpd, busybox] {
        ensure!(
            out.contains(item.as_str()),
            "missing {item} in kubectl diff output:\n{out}\n{err}"
        );
    }
    k_in(&c, &["delete", "-f", "-"], Some(&declared)).await?;
    Ok(())
}

// --------------------------------------------------- agnhost primary RC tests

/// Upstream's agnhost-primary replication controller.
fn agnhost_rc(c: &Ctx) -> String {
    json!({
        "kind": "ReplicationController",
        "apiVersion": "v1",
        "metadata": {"name": "agnhost-primary", "labels": {"app": "agnhost", "role": "primary"}},
        "spec": {
            "replicas": 1,
            "selector": {"app": "agnhost", "role": "primary"},
            "template": {
                "metadata": {"labels": {"app": "agnhost", "role": "primary"}},
                "spec": {"containers": [{
                    "name": "agnhost-primary",
                    "image": c.env.images.agnhost,
                    "ports": [{"name": "agnhost-server", "containerPort": 6379}],
                }]},
            },
        },
    })
    .to_string()
}

/// Upstream's agnhost-primary service.
fn agnhost_service() -> String {
    json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"name": "agnhost-primary", "labels": {"app": "agnhost", "role": "primary"}},
        "spec": {
            "ports": [{"port": 6379, "targetPort": "agnhost-server"}],
            "selector": {"app": "agnhost", "role": "primary"},
        },
    })
    .to_string()
}

/// Running pods with app=agnhost (upstream's forEachPod).
async fn running_agnhost(c: &Ctx) -> Result<Vec<Pod>> {
    Ok(pods_with(c, "app=agnhost")
        .await?
        .into_iter()
        .filter(|p| phase(p) == "Running")
        .collect())
}

async fn describe(c: Ctx) -> Result<()> {
    let agnhost = c.env.images.agnhost.clone();
    k_in(&c, &["create", "-f", "-"], Some(&agnhost_rc(&c))).await?;
    k_in(&c, &["create", "-f", "-"], Some(&agnhost_service())).await?;
    wait_running_with(&c, "app=agnhost", 1).await?;

    for p in running_agnhost(&c).await? {
        let name = p.metadata.name.clone().unwrap_or_default();
        let out = k(&c, &["describe", "pod", &name]).await?;
        check_output(
            &out,
            &[
                &["Name:", "agnhost-primary-"],
                &["Namespace:", &c.ns],
                &["Node:"],
                &["Labels:", "app=agnhost"],
                &["role=primary"],
                &["Annotations:"],
                &["Status:", "Running"],
                &["IP:"],
                &["Controlled By:", "ReplicationController/agnhost-primary"],
                &["Image:", &agnhost],
                &["State:", "Running"],
                &["QoS Class:", "BestEffort"],
            ],
        )
        .with_context(|| format!("kubectl describe pod {name}"))?;
    }

    // The RC's status may lag: retry for a minute, as upstream does.
    let rc_required: &[&[&str]] = &[
        &["Name:", "agnhost-primary"],
        &["Namespace:", &c.ns],
        &["Selector:", "app=agnhost,role=primary"],
        &["Labels:", "app=agnhost"],
        &["role=primary"],
        &["Annotations:"],
        &["Replicas:", "1 current", "1 desired"],
        &[
            "Pods Status:",
            "1 Running",
            "0 Waiting",
            "0 Succeeded",
            "0 Failed",
        ],
        &["Pod Template:"],
        &["Image:", &agnhost],
        &["Events:"],
    ];
    wait_for(
        "kubectl describe rc to show the expected fields",
        Duration::from_secs(60),
        || {
            let c = &c;
            async move {
                let out = k(c, &["describe", "rc", "agnhost-primary"]).await?;
                check_output(&out, rc_required).map(Some)
            }
        },
    )
    .await?;

    let out = k(&c, &["describe", "service", "agnhost-primary"]).await?;
    check_output(
        &out,
        &[
            &["Name:", "agnhost-primary"],
            &["Namespace:", &c.ns],
            &["Labels:", "app=agnhost"],
            &["role=primary"],
            &["Annotations:"],
            &["Selector:", "app=agnhost", "role=primary"],
            &["Type:", "ClusterIP"],
            &["IP:"],
            &["Port:", "<unset>", "6379/TCP"],
            &["Endpoints:"],
            &["Session Affinity:", "None"],
        ],
    )
    .context("kubectl describe service")?;

    let nodes = c.all::<Node>().list(&ListParams::default()).await?;
    let node = nodes.items.first().context("no nodes")?;
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let out = k(&c, &["describe", "node", &node_name]).await?;
    check_output(
        &out,
        &[
            &["Name:", &node_name],
            &["Labels:"],
            &["Annotations:"],
            &["CreationTimestamp:"],
            &["Conditions:"],
            &[
                "Type",
                "Status",
                "LastHeartbeatTime",
                "LastTransitionTime",
                "Reason",
                "Message",
            ],
            &["Addresses:"],
            &["Capacity:"],
            &["Version:"],
            &["Kernel Version:"],
            &["OS Image:"],
            &["Container Runtime Version:"],
            &["Kubelet Version:"],
            &["Kube-Proxy Version:"],
            &["Pods:"],
        ],
    )
    .context("kubectl describe node")?;

    let out = k(&c, &["describe", "namespace", &c.ns]).await?;
    check_output(
        &out,
        &[
            &["Name:", &c.ns],
            &["Labels:"],
            &["Annotations:"],
            &["Status:", "Active"],
        ],
    )
    .context("kubectl describe namespace")?;
    Ok(())
}

/// Upstream's validateService for `kubectl expose`: the service's
/// EndpointSlices list exactly one pod, on port 6379, and the service has
/// one port `port` targeting 6379.
async fn validate_exposed(c: &Ctx, name: &str, port: i32) -> Result<()> {
    const AGNHOST_PORT: i32 = 6379;
    let slices: Api<EndpointSlice> = c.api();
    let sel = format!("kubernetes.io/service-name={name}");
    wait_for(
        &format!("endpoints of service {name}"),
        c.env.pod_start,
        || {
            let (slices, sel) = (slices.clone(), sel.clone());
            async move {
                let list = slices.list(&ListParams::default().labels(&sel)).await?;
                // pod UID -> its ports, as GetContainerPortsByPodUID.
                let mut by_uid: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
                for s in &list.items {
                    let ports: Vec<i32> = s
                        .ports
                        .as_ref()
                        .map(|ps| ps.iter().filter_map(|p| p.port).collect())
                        .unwrap_or_default();
                    for ep in &s.endpoints {
                        let Some(uid) = ep.target_ref.as_ref().and_then(|r| r.uid.clone()) else {
                            continue;
                        };
                        by_uid.entry(uid).or_default().extend(ports.iter().copied());
                    }
                }
                if by_uid.is_empty() {
                    return Ok(None);
                }
                ensure!(by_uid.len() == 1, "too many endpoints found: {by_uid:?}");
                for ports in by_uid.values() {
                    ensure!(
                        ports.first() == Some(&AGNHOST_PORT),
                        "wrong endpoint port: {ports:?}"
                    );
                }
                Ok(Some(()))
            }
        },
    )
    .await?;
    let svc = c.api::<Service>().get(name).await?;
    let ports = svc.spec.and_then(|s| s.ports).unwrap_or_default();
    ensure!(ports.len() == 1, "1 port is expected, got {ports:?}");
    ensure!(
        ports[0].port == port,
        "wrong service port: {}",
        ports[0].port
    );
    let target = match &ports[0].target_port {
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i)) => *i,
        other => bail!("wrong target port: {other:?}"),
    };
    ensure!(target == AGNHOST_PORT, "wrong target port: {target}");
    Ok(())
}

/// Waits until `container` of pod `pod` has logged `text`.
async fn wait_log(c: &Ctx, pod: &str, container: &str, text: &str) -> Result<String> {
    wait_for(
        &format!("{text:?} in the log of {pod}/{container}"),
        c.env.pod_start,
        || async move {
            let out = c.logs(pod, Some(container)).await?;
            Ok(out.contains(text).then_some(out))
        },
    )
    .await
}

async fn expose(c: Ctx) -> Result<()> {
    k_in(&c, &["create", "-f", "-"], Some(&agnhost_rc(&c))).await?;
    wait_running_with(&c, "app=agnhost", 1).await?;
    for p in running_agnhost(&c).await? {
        let name = p.metadata.name.clone().unwrap_or_default();
        wait_log(&c, &name, "agnhost-primary", "Paused").await?;
    }
    let services: Api<Service> = c.api();
    k(
        &c,
        &[
            "expose",
            "rc",
            "agnhost-primary",
            "--name=rm2",
            "--port=1234",
            "--target-port=6379",
        ],
    )
    .await?;
    services.get("rm2").await.context("service rm2")?;
    validate_exposed(&c, "rm2", 1234).await?;
    k(
        &c,
        &[
            "expose",
            "service",
            "rm2",
            "--name=rm3",
            "--port=2345",
            "--target-port=6379",
        ],
    )
    .await?;
    services.get("rm3").await.context("service rm3")?;
    validate_exposed(&c, "rm3", 2345).await
}

async fn patch_annotate(c: Ctx) -> Result<()> {
    k_in(&c, &["create", "-f", "-"], Some(&agnhost_rc(&c))).await?;
    wait_running_with(&c, "app=agnhost", 1).await?;
    for p in running_agnhost(&c).await? {
        let name = p.metadata.name.clone().unwrap_or_default();
        k(
            &c,
            &[
                "patch",
                "pod",
                &name,
                "-p",
                r#"{"metadata":{"annotations":{"x":"y"}}}"#,
            ],
        )
        .await?;
    }
    let pods = running_agnhost(&c).await?;
    ensure!(!pods.is_empty(), "no running agnhost pods left");
    for p in pods {
        let found = p
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.get("x").map(String::as_str) == Some("y"));
        ensure!(found, "added annotation not found on {:?}", p.metadata.name);
    }
    Ok(())
}

// ------------------------------------------------------------------- label

async fn label_update(c: Ctx) -> Result<()> {
    let pod_yaml = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: pause
  labels:
    name: pause
spec:
  containers:
  - name: pause
    image: {}
    ports:
    - containerPort: 80
",
        c.env.images.pause
    );
    k_in(&c, &["create", "-f", "-"], Some(&pod_yaml)).await?;
    c.wait_pod("pause", "Ready", ready).await?;

    let (label, value) = ("testing-label", "testing-label-value");
    k(&c, &["label", "pods", "pause", &format!("{label}={value}")]).await?;
    let out = k(&c, &["get", "pod", "pause", "-L", label]).await?;
    ensure!(
        out.contains(value),
        "failed updating label {label} on pod pause:\n{out}"
    );

    k(&c, &["label", "pods", "pause", &format!("{label}-")]).await?;
    let out = k(&c, &["get", "pod", "pause", "-L", label]).await?;
    ensure!(
        !out.contains(value),
        "failed removing label {label} of pod pause:\n{out}"
    );

    cleanup_inputs(&c, &pod_yaml, &["name=pause"]).await
}

// ------------------------------------------------------------------- proxy

/// Reads a plain HTTP/1.0 response from `stream`: (status code, body).
async fn http_get<S>(mut stream: S, path: &str) -> Result<(u16, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf))
        .await
        .context("timed out reading the HTTP response")??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("malformed HTTP response: {text:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {head:?}"))?;
    Ok((code, body.to_string()))
}

/// Starts `kubectl proxy` with `args`; returns it and its first stdout line.
async fn start_proxy(c: &Ctx, args: &[&str]) -> Result<(tokio::process::Child, String)> {
    let mut all = vec!["--namespace", c.ns.as_str(), "proxy"];
    all.extend_from_slice(args);
    let mut cmd = tokio::process::Command::from(c.kubectl_command(&all));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("start kubectl proxy")?;
    let stdout = child.stdout.take().context("kubectl proxy stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    let line = match first {
        Ok(Ok(Some(l))) => l,
        other => {
            let _ = child.kill().await;
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err).await;
            }
            bail!("expected output from kubectl proxy, got {other:?}; stderr: {err}");
        }
    };
    // Keep draining stdout so the proxy never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, line))
}

async fn proxy_port_zero(c: Ctx) -> Result<()> {
    let (mut child, line) = start_proxy(&c, &["-p", "0", "--disable-filter"]).await?;
    let res = async {
        let re = Regex::new(r"Starting to serve on 127.0.0.1:([0-9]+)")?;
        let port: u16 = re
            .captures(&line)
            .and_then(|m| m[1].parse().ok())
            .with_context(|| format!("failed to parse port from proxy stdout: {line}"))?;
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let (code, body) = http_get(stream, "/api/").await?;
        ensure!(
            code == 200,
            "GET /api/ through the proxy: HTTP {code}: {body}"
        );
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("failed to parse /api output {body}"))?;
        let n = v["versions"].as_array().map_or(0, Vec::len);
        ensure!(
            n >= 1,
            "expected at least one supported apiversion, got {body}"
        );
        Ok(())
    }
    .await;
    let _ = child.kill().await;
    res
}

async fn proxy_socket(c: Ctx) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("test");
    let (mut child, _line) =
        start_proxy(&c, &[&format!("--unix-socket={}", path.display())]).await?;
    let res = async {
        let stream = tokio::net::UnixStream::connect(&path)
            .await
            .with_context(|| format!("connect to {}", path.display()))?;
        let (code, body) = http_get(stream, "/api").await?;
        ensure!(
            code == 200,
            "GET /api at {}: HTTP {code}: {body}",
            path.display()
        );
        Ok(())
    }
    .await;
    let _ = child.kill().await;
    res
}

// -------------------------------------------------------------------- logs

async fn logs(c: Ctx) -> Result<()> {
    let pod = "logs-generator";
    let container = "logs-generator";
    k(
        &c,
        &[
            "run",
            pod,
            &format!("--image={}", c.env.images.agnhost),
            "--restart=Never",
            POD_RUNNING_TIMEOUT,
            "--",
            "logs-generator",
            "--log-lines-total",
            "100",
            "--run-duration",
            "20s",
        ],
    )
    .await?;
    c.wait_pod(pod, "Running and Ready, or Succeeded", |p| {
        (phase(p) == "Running" && ready(p)) || phase(p) == "Succeeded"
    })
    .await?;
    wait_log(&c, pod, container, "/api/v1/namespaces/kube-system").await?;

    let lines = |out: &str| -> usize { out.trim_end_matches('\n').split('\n').count() };

    let out = k(&c, &["logs", pod, container, "--tail=1"]).await?;
    ensure!(!out.is_empty(), "--tail=1 gave nothing");
    ensure!(lines(&out) == 1, "--tail=1 gave {out:?}");

    let out = k(&c, &["logs", pod, container, "--limit-bytes=1"]).await?;
    ensure!(
        lines(&out) == 1 && out.len() == 1,
        "--limit-bytes=1 gave {out:?}"
    );

    let out = k(&c, &["logs", pod, container, "--tail=1", "--timestamps"]).await?;
    let l: Vec<&str> = out.trim_end_matches('\n').split('\n').collect();
    ensure!(l.len() == 1, "--tail=1 --timestamps gave {out:?}");
    let words: Vec<&str> = l[0].split(' ').collect();
    ensure!(words.len() > 1, "no timestamp in {out:?}");
    let rfc3339 = Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")?;
    ensure!(
        rfc3339.is_match(words[0]),
        "expected {:?} to be RFC3339 or RFC3339Nano",
        words[0]
    );

    // The granularity is a second: wait so startup lines are older than 1s.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let recent_out = k(&c, &["logs", pod, container, "--since=1s"]).await?;
    let recent = recent_out.split('\n').count();
    let older_out = k(&c, &["logs", pod, container, "--since=24h"]).await?;
    let older = older_out.split('\n').count();
    ensure!(
        recent < older,
        "expected recent({recent}) to be less than older({older})\nrecent lines:\n{recent_out}\nolder lines:\n{older_out}"
    );
    k(&c, &["delete", "pod", pod]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_output;

    #[test]
    fn check_output_follows_line_order() {
        let out = "Name: a\nLabels: x=y\n  z=w\nStatus: Running\n";
        assert!(check_output(out, &[&["Name:", "a"], &["z=w"], &["Status:", "Running"]]).is_ok());
        assert!(check_output(out, &[&["Status:"], &["Name:"]]).is_err());
        assert!(check_output(out, &[&["Labels:", "nope"]]).is_err());
    }
}
