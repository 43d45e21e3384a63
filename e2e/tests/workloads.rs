//! Workloads on a real node (the acceptance of issue 11): the controller
//! manager behind Deployments (rolling update, undo, scale, pause/resume),
//! the README quickstart, StatefulSets with PVCs, DaemonSets, Jobs and
//! CronJobs, cascading deletion (foreground, orphan, background), namespace
//! deletion with custom resources, ResourceQuota and LimitRange admission,
//! PodDisruptionBudgets with eviction and `kubectl drain`, and the API
//! server refusing objects a typed client could not read.
//!
//! Like pods.rs, ONE test starts ONE cluster per runtime (the default
//! cri-o, then containerd) and runs the scenarios in order as named steps;
//! every failure is collected and the test fails at the end naming each.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use rkube_e2e::registry::Registry;
use rkube_e2e::scenario::{apply, is_root, kubectl, kubectl_err, run_step, wait_for};
use rkube_e2e::{describe, object_condition, Cluster};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The test image, built from Debian's static busybox and loaded with
/// `rkube image load`.
const IMAGE: &str = "rkube.local/busybox:1";
/// How long a workload may take to come up.
const UP: Duration = Duration::from_secs(120);

struct Ctx {
    c: Cluster,
    node: String,
}

type Step = rkube_e2e::scenario::Step<Ctx>;

/// One runtime the scenarios run on: label and `rkube start` flags.
const RUNTIMES: &[(&str, &[&str])] = &[
    ("cri-o", &[]),
    ("containerd", &["--container-runtime=containerd"]),
];

// ---- helpers ----------------------------------------------------------------

/// Creates namespace `ns` and waits for its `default` ServiceAccount (made by
/// the ServiceAccount controller), as upstream's e2e framework does.
fn namespace(c: &Cluster, ns: &str) -> Result<()> {
    kubectl(c, &["create", "namespace", ns])?;
    wait_for(
        &format!("ServiceAccount default in {ns}"),
        Duration::from_secs(30),
        || c.get_json(&["serviceaccount", "default", "-n", ns]),
        |_| true,
    )?;
    Ok(())
}

/// A busybox container named `name` running `script` with `sh -c`.
fn container(name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
    })
}

/// A pod template labelled `app: <app>` with one container; `extra` is
/// merged into the container.
fn template(app: &str, script: &str, extra: Value) -> Value {
    let mut ctr = container("main", script);
    if let (Some(a), Value::Object(b)) = (ctr.as_object_mut(), extra) {
        a.extend(b);
    }
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [ctr]},
    })
}

/// An httpd on :8080 serving `$VERSION`, ready when it answers.
fn httpd_template(app: &str) -> Value {
    template(
        app,
        "mkdir -p /www && echo \"v=$VERSION\" > /www/index.html && exec httpd -f -p 8080 -h /www",
        json!({
            "readinessProbe": {"httpGet": {"path": "/", "port": 8080},
                               "periodSeconds": 1, "failureThreshold": 1},
        }),
    )
}

fn deployment(ns: &str, name: &str, replicas: i64, template: Value, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": template,
        },
    })
}

/// Items of `kubectl get <kind> -n ns -l <selector> -o json`.
fn items(c: &Cluster, kind: &str, ns: &str, selector: &str) -> Result<Vec<Value>> {
    let mut args = vec![kind, "-n", ns];
    if !selector.is_empty() {
        args.extend(["-l", selector]);
    }
    let list = c.get_json(&args)?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

fn is_ready(pod: &Value) -> bool {
    object_condition(pod, "Ready") == Some("True")
}

fn terminating(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

/// Ready pods of `selector` that are not being deleted.
fn ready_pods(c: &Cluster, ns: &str, selector: &str) -> Result<Vec<Value>> {
    Ok(items(c, "pods", ns, selector)?
        .into_iter()
        .filter(|p| is_ready(p) && !terminating(p))
        .collect())
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

/// `kubectl rollout status` of a workload, which must succeed within two
/// minutes (in two calls: the harness stops any kubectl call after 60 s).
fn rollout_status(c: &Cluster, ns: &str, kind_name: &str) -> Result<()> {
    let args = ["rollout", "status", kind_name, "-n", ns, "--timeout=50s"];
    if kubectl(c, &args).is_ok() {
        return Ok(());
    }
    kubectl(c, &args)?;
    Ok(())
}

fn not_found(c: &Cluster, args: &[&str]) -> bool {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    let out = c.kubectl(&full);
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
}

/// Waits until `kubectl get <args>` answers NotFound.
fn wait_gone(c: &Cluster, args: &[&str], timeout: Duration) -> Result<()> {
    if !rkube_e2e::eventually(timeout, || not_found(c, args)) {
        bail!("{} still exists after {timeout:?}", args.join(" "));
    }
    Ok(())
}

// ---- setup --------------------------------------------------------------------

fn node_ready_and_image_loaded(x: &mut Ctx) -> Result<()> {
    let node = x.c.wait_node_ready(Duration::from_secs(60))?;
    x.node = name(&node).to_string();
    let dir = TempDir::new()?;
    let archive = dir.path().join("busybox.tar");
    rkube_image::write_busybox_archive(&archive, IMAGE, Path::new("/usr/bin/busybox"))
        .context("write busybox archive (is busybox-static installed?)")?;
    x.c.load_image(&archive)
}

// ---- scenarios ------------------------------------------------------------------

/// The API server refuses what a typed client could not read, and keeps the
/// system namespaces.
fn api_refuses_wrong_types(x: &mut Ctx) -> Result<()> {
    let c = &x.c;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "wrong-types"}, "data": {"a": 1}});
    let err = kubectl_err(
        c,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            "-",
        ],
        Some(&cm.to_string()),
    )?;
    ensure!(err.contains("BadRequest"), "ConfigMap data a: 1: {err}");
    ensure!(
        not_found(c, &["configmap", "wrong-types"]),
        "the refused ConfigMap was stored"
    );
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                     "metadata": {"name": "wrong-types"},
                     "spec": {"replicas": "three", "selector": {"matchLabels": {"a": "b"}},
                              "template": {"metadata": {"labels": {"a": "b"}},
                                           "spec": {"containers": [{"name": "c", "image": IMAGE}]}}}});
    let err = kubectl_err(
        c,
        &[
            "create",
            "--raw",
            "/apis/apps/v1/namespaces/default/deployments",
            "-f",
            "-",
        ],
        Some(&dep.to_string()),
    )?;
    ensure!(
        err.contains("BadRequest"),
        "Deployment replicas \"three\": {err}"
    );
    ensure!(not_found(c, &["deployment", "wrong-types"]));
    let err = kubectl_err(c, &["delete", "namespace", "kube-system"], None)?;
    ensure!(
        err.contains("this namespace may not be deleted"),
        "kubectl delete ns kube-system: {err}"
    );
    let ns = c.get_json(&["namespace", "kube-system"])?;
    ensure!(
        ns["status"]["phase"] == "Active" && !terminating(&ns),
        "kube-system after a refused delete: {ns}"
    );
    Ok(())
}

/// Rolling update with maxUnavailable 0, undo, scale, pause and resume.
fn deployment_rollout(x: &mut Ctx) -> Result<()> {
    let c = &x.c;
    let ns = "rollout";
    namespace(c, ns)?;
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    apply(
        c,
        &[deployment(ns, "web", 3, httpd_template("web"), strategy)],
    )?;
    rollout_status(c, ns, "deployment/web")?;
    let first: Vec<String> = items(c, "rs", ns, "app=web")?
        .iter()
        .map(|r| name(r).to_string())
        .collect();
    ensure!(
        first.len() == 1,
        "ReplicaSets after the first rollout: {first:?}"
    );

    // Sample the ready pods while the update rolls: never below 3.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let kubeconfig = c.kubeconfig_path();
        let context = c.name().to_string();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("kubectl")
                    .env("KUBECONFIG", &kubeconfig)
                    .args(["--context", &context, "get", "pods", "-n", "rollout"])
                    .args(["-l", "app=web", "-o", "json"])
                    .output();
                if let Ok(out) = out {
                    if let Ok(list) = serde_json::from_slice::<Value>(&out.stdout) {
                        let ready = list["items"]
                            .as_array()
                            .map(|ps| ps.iter().filter(|p| is_ready(p) && !terminating(p)).count())
                            .unwrap_or(0);
                        samples.push(ready);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        })
    };
    let rolled = kubectl(c, &["set", "env", "deployment/web", "-n", ns, "VERSION=2"])
        .and_then(|_| rollout_status(c, ns, "deployment/web"));
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap_or_default();
    rolled?;
    ensure!(!samples.is_empty(), "no sample of ready pods was taken");
    let min = samples.iter().copied().min().unwrap_or(0);
    ensure!(
        min >= 3,
        "ready pods dropped to {min} during the rolling update (maxUnavailable 0); samples {samples:?}"
    );
    let rs = items(c, "rs", ns, "app=web")?;
    ensure!(
        rs.len() == 2,
        "want 2 ReplicaSets after the update, got {}",
        rs.len()
    );
    let dep = c.get_json(&["deployment", "web", "-n", ns])?;
    ensure!(
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2",
        "revision after the update: {}",
        dep["metadata"]["annotations"]
    );
    let history = kubectl(c, &["rollout", "history", "deployment/web", "-n", ns])?;
    ensure!(
        history.contains('1') && history.contains('2'),
        "history:\n{history}"
    );

    // Undo: the first ReplicaSet takes all replicas again.
    kubectl(c, &["rollout", "undo", "deployment/web", "-n", ns])?;
    rollout_status(c, ns, "deployment/web")?;
    let active: Vec<String> = items(c, "rs", ns, "app=web")?
        .iter()
        .filter(|r| r["spec"]["replicas"].as_i64().unwrap_or(0) > 0)
        .map(|r| name(r).to_string())
        .collect();
    ensure!(
        active == first,
        "after undo the active ReplicaSets are {active:?}, want {first:?}"
    );
    let pod = &ready_pods(c, ns, "app=web")?[0];
    ensure!(
        !pod["spec"]["containers"][0]["env"]
            .to_string()
            .contains("VERSION"),
        "an undone pod still has VERSION=2: {}",
        pod["spec"]["containers"][0]
    );

    // Scale up and down.
    for n in [5usize, 2] {
        kubectl(
            c,
            &[
                "scale",
                "deployment/web",
                "-n",
                ns,
                &format!("--replicas={n}"),
            ],
        )?;
        wait_for(
            &format!("{n} ready replicas"),
            UP,
            || c.get_json(&["deployment", "web", "-n", ns]),
            |d| {
                d["status"]["readyReplicas"].as_i64() == Some(n as i64)
                    && d["status"]["replicas"].as_i64() == Some(n as i64)
            },
        )?;
        wait_for(
            &format!("{n} pods"),
            UP,
            || Ok(json!(items(c, "pods", ns, "app=web")?.len())),
            |v| v.as_u64() == Some(n as u64),
        )?;
    }

    // Pause: a template change makes no new ReplicaSet until resume.
    kubectl(c, &["rollout", "pause", "deployment/web", "-n", ns])?;
    kubectl(c, &["set", "env", "deployment/web", "-n", ns, "VERSION=3"])?;
    std::thread::sleep(Duration::from_secs(3));
    let paused = items(c, "rs", ns, "app=web")?.len();
    ensure!(
        paused == 2,
        "a paused Deployment rolled: {paused} ReplicaSets"
    );
    let dep = c.get_json(&["deployment", "web", "-n", ns])?;
    let progressing = dep["status"]["conditions"].to_string();
    ensure!(
        progressing.contains("DeploymentPaused"),
        "Progressing condition while paused: {progressing}"
    );
    kubectl(c, &["rollout", "resume", "deployment/web", "-n", ns])?;
    rollout_status(c, ns, "deployment/web")?;
    let rs = items(c, "rs", ns, "app=web")?;
    ensure!(
        rs.len() == 3,
        "want 3 ReplicaSets after resume, got {}",
        rs.len()
    );
    for p in ready_pods(c, ns, "app=web")? {
        ensure!(
            p["spec"]["containers"][0]["env"]
                .to_string()
                .contains("\"3\""),
            "pod {} does not run VERSION=3 after resume",
            name(&p)
        );
    }
    kubectl(c, &["delete", "namespace", ns, "--wait=false"])?;
    Ok(())
}

/// The README quickstart's Deployment, verbatim, with `image: nginx` from
/// the loopback docker.io mirror, becomes 2/2 Ready.
fn readme_quickstart(x: &mut Ctx) -> Result<()> {
    let c = &x.c;
    let readme = std::fs::read_to_string(rkube_e2e::workspace_root().join("README.md"))?;
    let section = readme
        .split("## Quickstart")
        .nth(1)
        .context("README has no Quickstart section")?;
    let manifest = section
        .split("kubectl apply -f - <<'EOF'\n")
        .nth(1)
        .and_then(|s| s.split("\nEOF").next())
        .context("the Quickstart has no `kubectl apply -f - <<'EOF'` manifest")?;
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(manifest));
    ensure!(
        out.status.success(),
        "apply the quickstart: {}",
        describe(&out)
    );
    rollout_status(c, "default", "deployment/web")?;
    wait_for(
        "2/2 ready",
        UP,
        || c.get_json(&["deployment", "web"]),
        |d| d["status"]["readyReplicas"].as_i64() == Some(2),
    )?;
    let wide = kubectl(c, &["get", "deployment", "web", "-o", "wide"])?;
    ensure!(
        wide.contains("2/2"),
        "kubectl get deployment web -o wide:\n{wide}"
    );
    kubectl(c, &["delete", "deployment", "web"])?;
    Ok(())
}

/// web-0 before web-1, each with a Bound PVC; a deleted web-0 comes back
/// with its name, hostname and data.
fn statefulset_in_order(x: &mut Ctx) -> Result<()> {
    let c = &x.c;
    let ns = "stateful";
    namespace(c, ns)?;
    let mut tpl = template(
        "web",
        "hostname > /data/host-$(date +%s); exec sleep 3600",
        json!({
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "readinessProbe": {"exec": {"command": ["sh", "-c", "ls /data/host-*"]},
                               "periodSeconds": 1},
        }),
    );
    tpl["metadata"]["labels"]["app"] = json!("web");
    apply(
        c,
        &[
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web", "namespace": ns},
                   "spec": {"clusterIP": "None", "selector": {"app": "web"},
                            "ports": [{"port": 80, "name": "web"}]}}),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "serviceName": "web", "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": tpl,
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "16Mi"}}},
                }],
            }}),
        ],
    )?;
    rollout_status(c, ns, "statefulset/web")?;
    let web0 = c.get_json(&["pod", "web-0", "-n", ns])?;
    let web1 = c.get_json(&["pod", "web-1", "-n", ns])?;
    let ready0 = web0["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or("")
        .to_string();
    let created1 = web1["metadata"]["creationTimestamp"].as_str().unwrap_or("");
    ensure!(
        !ready0.is_empty() && created1 >= ready0.as_str(),
        "web-1 was created at {created1}, before web-0 became Ready at {ready0}"
    );
    for claim in ["data-web-0", "data-web-1"] {
        wait_for(
            &format!("PVC {claim} Bound"),
            Duration::from_secs(30),
            || c.get_json(&["pvc", claim, "-n", ns]),
            |p| p["status"]["phase"] == "Bound",
        )?;
    }
    let host = kubectl(c, &["exec", "web-0", "-n", ns, "--", "hostname"])?;
    ensure!(host.trim() == "web-0", "hostname of web-0: {host:?}");
    kubectl(
        c,
        &[
            "exec",
            "web-0",
            "-n",
            ns,
            "--",
            "sh",
            "-c",
            "echo kept > /data/marker",
        ],
    )?;
    let uid = web0["metadata"]["uid"].clone();
    kubectl(c, &["delete", "pod", "web-0", "-n", ns])?;
    wait_for(
        "web-0 recreated and Ready",
        UP,
        || c.get_json(&["pod", "web-0", "-n", ns]),
        |p| p["metadata"]["uid"] != uid && is_ready(p) && !terminating(p),
    )?;
    let host = kubectl(c, &["exec", "web-0", "-n", ns, "--", "hostname"])?;
    ensure!(
        host.trim() == "web-0",
        "hostname of the new web-0: {host:?}"
    );
    let marker = kubectl(c, &["exec", "web-0", "-n", ns, "--", "cat", "/data/marker"])?;
    ensure!(
        marker.trim() == "kept",
        "the new web-0 lost its volume: {marker:?}"
    );
    kubectl(c, &["delete", "namespace", ns, "--wait=false"])?;
    Ok(())
}

/// Exactly one pod on the node; a template change rolls it.
fn daemonset_one_per_node(x: &mut Ctx) -> Result<()> {
    let c = &x.c;
    let ns = "daemons";
    namespace(c, ns)?;
    apply(
        c,
        &[json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                 "metadata": {"name": "agent", "namespace": ns},
                 "spec": {"selector": {"matchLabels": {"app": "agent"}},
                          "template": template("agent", "exec sleep 3600", json!({}))}})],
    )?;
    rollout_status(c, ns, "daemonset/agent")?;
    let pods = items(c, "pods", ns, "app=agent")?;
    ensure!(pods.len() == 1, "want 1 daemon pod, got {}", pods.len());
    ensure!(
        pods[0]["spec"]["nodeName"] == x.node.as_str(),
        "daemon pod on {}, want {}",
        pods[0]["spec"]["nodeName"],
        x.node
    );
    let first = name(&pods[0]).to_string();
    let ds = c.get_json(&["daemonset", "agent", "-n", ns])?;
    ensure!(
        ds["status"]["desiredNumberScheduled"] == 1 && ds["status"]["numberReady"] == 1,
        "DaemonSet status: {}",
        ds["status"]
    );
    kubectl(c, &["set", "env", "daemonset/agent", "-n", ns, "ROLL=1"])?;
    rollout_status(c, ns, "daemonset/agent")?;
    let pods = wait_for(
        "the daemon pod replaced",
        UP,
        || Ok(json!(items(c, "pods", ns, "app=agent")?)),
        |v| {
            let ps = v.as_array().cloned().unwrap_or_default();
            ps.len() == 1 && name(&ps[0]) != first && is_ready(&ps[0])
        },
    )?;
    ensure!(
        pods[0]["spec"]["containers"][0]["env"]
            .to_string()
            .contains("ROLL"),
        "the new daemon pod lacks the new env"
    );
    kubectl(c, &["delete", "namespace", ns, "--wait=false"])?;
    Ok(())
}

fn job(ns: &str, name: &str, spec: Value, script: &str) -> Value {
    let mut spec = spec;
    spec["template"] = json!({
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "containers": [container("main", script)]},
    });
    json!({"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// completions 3 / parallelism 2; an Indexed Job; backoffLimit reached.
fn jobs_complete_and_fail(x: &mut Ctx) -> Result<()> {
    let c = &x.c;
    let ns = "jobs";
    namespace(c, ns)?;
    apply(
        c,
        &[
            job(
                ns,
                "three",
                json!({"completions": 3, "parallelism": 2}),
                "sleep 1",
            ),
            job(
                ns,
                "indexed",
                json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
                "echo index=$JOB_COMPLETION_INDEX",
            ),
            job(
                ns,
                "fails",
                json!({"backoffLimit": 1}),
                "echo failing; exit 1",
            ),
        ],
    )?;
    let done = wait_for(
        "Job three Complete",
        UP,
        || c.get_json(&["job", "three", "-n", ns]),
        |j| object_condition(j, "Complete") == Some("True"),
    )?;
    ensure!(
        done["status"]["succeeded"] == 3,
        "Job three status: {}",
        done["status"]
    );
    let pods = items(c, "pods", ns, "job-name=three")?;
    ensure!(
        pods.len() == 3,
        "Job three made {} pods, want 3",
        pods.len()
    );

    let done = wait_for(
        "Job indexed Complete",
        UP,
        || c.get_json(&["job", "indexed", "-n", ns]),
        |j| object_condition(j, "Complete") == Some("True"),
    )?;
    ensure!(
        done["status"]["completedIndexes"] == "0-2",
        "completedIndexes: {}",
        done["status"]
    );
    let mut seen = Vec::new();
    for p in items(c, "pods", ns, "job-name=indexed")? {
        seen.push(
            kubectl(c, &["logs", name(&p), "-n", ns])?
                .trim()
                .to_string(),
        );
    }
    seen.sort();
    ensure!(
        seen == ["index=0", "index=1", "index=2"],
        "indexed pods printed {seen:?}"
    );

    let failed = wait_for(
        "Job fails Failed",
        Duration::from_secs(150),
        || c.get_json(&["job", "fails", "-n", ns]),
        |j| object_condition(j, "Failed") == Some("True"),
    )?;
    let reason = failed["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Failed"))
        .map(|c| c["reason"].clone())
        .unwrap_or_default();
    ensure!(reason == "BackoffLimitExceeded", "Failed reason {reason}");
    ensure!(
        failed["status"]["failed"] == 2,
        "Job fails status: {}",
        failed["status"]
    );
    kubectl(c, &["delete", "namespace", ns, "--wait=false"])?;
    Ok(())
}

/// `*/1 * * * *` makes a Job within 70 s; finished Jobs beyond
/// successfulJobsHistoryLimit are removed.
fn cronjob_schedules(x: &mut Ctx) -> Result<()> {
    let c = &x.c;
    let ns = "cron";
    namespace(c, ns)?;
    let tpl = json!({"spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [container("main", "echo tick")]}}}});
    apply(
        c,
        &[json!({"apiVersion": "batch/v1", "kind": "CronJob",
                 "metadata": {"name": "tick", "namespace": ns},
                 "spec": {"schedule": "*/1 * * * *", "successfulJobsHistoryLimit": 1,
                          "failedJobsHistoryLimit": 1, "jobTemplate": tpl}})],
    )?;
    let cj = c.get_json(&["cronjob", "tick", "-n", ns])?;
    let uid = cj["metadata"]["uid"].as_str().unwrap_or("").to_string();
    // Two finished Jobs of this CronJob from "earlier runs".
    for n in ["tick-1", "tick-2"] {
        let mut j = job(ns, n, json!({}), "echo earlier");
        j["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "tick", "uid": uid,
            "controller": true, "blockOwnerDeletion": true}]);
        apply(c, &[j])?;
    }
    let started = Instant::now();
    wait_for(
        "a Job made by the CronJob",
        Duration::from_secs(75),
        || Ok(json!(items(c, "jobs", ns, "")?)),
        |v| {
            v.as_array()
                .is_some_and(|js| js.iter().any(|j| !["tick-1", "tick-2"].contains(&name(j))))
        },
    )?;
    eprintln!(
        "[workloads] CronJob made its first Job after {:?}",
        started.elapsed()
    );
    wait_for(
        "one successful Job kept (successfulJobsHistoryLimit 1)",
        Duration::from_secs(90),
        || Ok(json!(items(c, "jobs", ns, "")?)),
        |v| {
            let js = v.as_array().cloned().unwrap_or_default();
            let done: Vec<_> = js
                .iter()
                .filter(|j| object_condition(j, "Complete") == Some("True"))
                .collect();
            done.len() == 1 && js.len() <= 2
        },
    )?;
    let cj = c.get_json(&["cronjob", "tick", "-n", ns])?;
    ensure!(
        cj["status"]["lastScheduleTime"].is_string(),
        "CronJob status: {}",
        cj["status"]
    );
    kubectl(c, &["delete", "namespace", ns, "--wait=false"])?;
    Ok(())
}

/// Foreground deletes children first; orphan leaves them; background
/// removes a ReplicaSet's pods.
fn cascading_deletion(x: &mut Ctx) -> Result<()> {
    let c = &x.c;
    let ns = "cascade";
    namespace(c, ns)?;
    let recreate = json!({"type": "Recreate"});
    apply(
        c,
        &[
            deployment(
                ns,
                "fg",
                2,
                template("fg", "exec sleep 3600", json!({})),
                recreate.clone(),
            ),
            deployment(
                ns,
                "orphan",
                1,
                template("orphan", "exec sleep 3600", json!({})),
                recreate,
            ),
        ],
    )?;
    rollout_status(c, ns, "deployment/fg")?;
    rollout_status(c, ns, "deployment/orphan")?;

    kubectl(
        c,
        &[
            "delete",
            "deployment",
            "fg",
            "-n",
            ns,
            "--cascade=foreground",
            "--wait=false",
        ],
    )?;
    let deadline = Instant::now() + UP;
    loop {
        let rs = items(c, "rs", ns, "app=fg")?;
        let pods = items(c, "pods", ns, "app=fg")?;
        if not_found(c, &["deployment", "fg", "-n", ns]) {
            // The Deployment went last: nothing of it may remain.
            let rs = items(c, "rs", ns, "app=fg")?;
            let pods = items(c, "pods", ns, "app=fg")?;
            ensure!(
                rs.is_empty() && pods.is_empty(),
                "the Deployment disappeared before its children: {} ReplicaSets, {} pods left",
                rs.len(),
                pods.len()
            );
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "foreground deletion did not finish: {} ReplicaSets, {} pods left",
            rs.len(),
            pods.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let rs = items(c, "rs", ns, "app=orphan")?;
    ensure!(rs.len() == 1, "orphan: {} ReplicaSets", rs.len());
    let rs_name = name(&rs[0]).to_string();
    kubectl(
        c,
        &[
            "delete",
            "deployment",
            "orphan",
            "-n",
            ns,
            "--cascade=orphan",
        ],
    )?;
    wait_gone(
        c,
        &["deployment", "orphan", "-n", ns],
        Duration::from_secs(30),
    )?;
    let rs = wait_for(
        "the orphaned ReplicaSet without ownerReferences",
        Duration::from_secs(30),
        || c.get_json(&["rs", &rs_name, "-n", ns]),
        |r| {
            r["metadata"]["ownerReferences"]
                .as_array()
                .is_none_or(|o| o.is_empty())
        },
    )?;
    ensure!(
        rs["status"]["readyReplicas"] == 1,
        "orphaned RS status: {}",
        rs["status"]
    );
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        ready_pods(c, ns, "app=orphan")?.len() == 1,
        "the orphaned ReplicaSet's pod is not running"
    );
    kubectl(
        c,
        &["delete", "rs", &rs_name, "-n", ns, "--cascade=background"],
    )?;
    wait_for(
        "the pods of the deleted ReplicaSet gone",
        UP,
        || Ok(json!(items(c, "pods", ns, "app=orphan")?.len())),
        |v| v == 0,
    )?;
    kubectl(c, &["delete", "namespace", ns, "--wait=false"])?;
    Ok(())
}

/// `kubectl delete namespace` with a Deployment, a Service, a ConfigMap and
/// a custom resource in it finishes and removes them all.
fn namespace_deletion_removes_content(x: &mut Ctx) -> Result<()> {
    let c = &x.c;
    let ns = "doomed";
    apply(
        c,
        &[json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.e2e.rkube.io"},
            "spec": {"group": "e2e.rkube.io", "scope": "Namespaced",
                     "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                       "x-kubernetes-preserve-unknown-fields": true}}}]},
        })],
    )?;
    kubectl(
        c,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.e2e.rkube.io",
            "--timeout=30s",
        ],
    )?;
    namespace(c, ns)?;
    apply(
        c,
        &[
            deployment(
                ns,
                "app",
                1,
                template("app", "exec sleep 3600", json!({})),
                json!({"type": "RollingUpdate"}),
            ),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": ns},
                   "spec": {"selector": {"app": "app"}, "ports": [{"port": 80}]}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": ns},
                   "data": {"k": "v"}}),
            json!({"apiVersion": "e2e.rkube.io/v1", "kind": "Widget",
                   "metadata": {"name": "w", "namespace": ns}, "spec": {"size": 1}}),
        ],
    )?;
    rollout_status(c, ns, "deployment/app")?;
    kubectl(c, &["delete", "namespace", ns, "--wait=false"])?;
    wait_gone(c, &["namespace", ns], UP)?;
    let left = kubectl(c, &["get", "widgets", "-A", "-o", "name"])?;
    ensure!(left.trim().is_empty(), "widgets left: {left}");
    let pods = kubectl(c, &["get", "pods", "-n", ns, "-o", "name"])?;
    ensure!(pods.trim().is_empty(), "pods left in {ns}: {pods}");
    kubectl(c, &["delete", "crd", "widgets.e2e.rkube.io"])?;
    Ok(())
}

fn sleeper_pod(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
           "spec": {"terminationGracePeriodSeconds": 1,
                    "containers": [container("main", "exec sleep 3600")]}})
}

/// `pods: 2` refuses the third pod with 403 and "exceeded quota"; a
/// LimitRange default lands in a new pod's resources.
fn quota_and_limit_range(x: &mut Ctx) -> Result<()> {
    let c = &x.c;
    let ns = "quota";
    namespace(c, ns)?;
    apply(
        c,
        &[json!({"apiVersion": "v1", "kind": "ResourceQuota",
                 "metadata": {"name": "two-pods", "namespace": ns},
                 "spec": {"hard": {"pods": "2"}}})],
    )?;
    wait_for(
        "quota status.hard",
        Duration::from_secs(30),
        || c.get_json(&["resourcequota", "two-pods", "-n", ns]),
        |q| q["status"]["hard"]["pods"] == "2",
    )?;
    apply(c, &[sleeper_pod(ns, "one"), sleeper_pod(ns, "two")])?;
    let err = kubectl_err(
        c,
        &["apply", "-f", "-"],
        Some(&sleeper_pod(ns, "three").to_string()),
    )?;
    ensure!(
        err.contains("Forbidden") && err.contains("exceeded quota: two-pods"),
        "third pod: {err}"
    );
    wait_for(
        "quota status.used pods=2",
        Duration::from_secs(30),
        || c.get_json(&["resourcequota", "two-pods", "-n", ns]),
        |q| q["status"]["used"]["pods"] == "2",
    )?;

    let ns2 = "limits";
    namespace(c, ns2)?;
    apply(
        c,
        &[json!({"apiVersion": "v1", "kind": "LimitRange",
                 "metadata": {"name": "defaults", "namespace": ns2},
                 "spec": {"limits": [{"type": "Container",
                                      "default": {"cpu": "200m", "memory": "64Mi"},
                                      "defaultRequest": {"cpu": "100m", "memory": "32Mi"}}]}})],
    )?;
    apply(c, &[sleeper_pod(ns2, "defaulted")])?;
    let pod = c.get_json(&["pod", "defaulted", "-n", ns2])?;
    let res = &pod["spec"]["containers"][0]["resources"];
    ensure!(
        res["requests"]["cpu"] == "100m"
            && res["limits"]["cpu"] == "200m"
            && res["limits"]["memory"] == "64Mi",
        "resources of a pod in a LimitRange namespace: {res}"
    );
    kubectl(c, &["delete", "namespace", ns, ns2, "--wait=false"])?;
    Ok(())
}

/// An eviction that would break a PodDisruptionBudget is refused with 429
/// until another pod is ready; `kubectl drain` honours the budget.
fn disruption_budget_and_drain(x: &mut Ctx) -> Result<()> {
    let c = &x.c;
    let ns = "guarded";
    namespace(c, ns)?;
    let tpl = template(
        "guarded",
        "exec sleep 3600",
        json!({"readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}),
    );
    apply(
        c,
        &[
            deployment(ns, "guarded", 1, tpl, json!({"type": "RollingUpdate"})),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": {"name": "keep-one", "namespace": ns},
                   "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}}),
        ],
    )?;
    rollout_status(c, ns, "deployment/guarded")?;
    wait_for(
        "PDB currentHealthy 1, disruptionsAllowed 0",
        Duration::from_secs(30),
        || c.get_json(&["pdb", "keep-one", "-n", ns]),
        |p| p["status"]["currentHealthy"] == 1 && p["status"]["disruptionsAllowed"] == 0,
    )?;
    let pod = name(&ready_pods(c, ns, "app=guarded")?[0]).to_string();
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                          "metadata": {"name": pod, "namespace": ns}});
    let path = format!("/api/v1/namespaces/{ns}/pods/{pod}/eviction");
    let err = kubectl_err(
        c,
        &["create", "--raw", &path, "-f", "-"],
        Some(&eviction.to_string()),
    )?;
    ensure!(
        err.contains("disruption budget") && err.contains("TooManyRequests"),
        "eviction of the last healthy pod: {err}"
    );
    ensure!(
        !not_found(c, &["pod", &pod, "-n", ns]),
        "the refused eviction deleted the pod"
    );

    kubectl(
        c,
        &["scale", "deployment/guarded", "-n", ns, "--replicas=2"],
    )?;
    wait_for(
        "PDB disruptionsAllowed 1",
        UP,
        || c.get_json(&["pdb", "keep-one", "-n", ns]),
        |p| p["status"]["currentHealthy"] == 2 && p["status"]["disruptionsAllowed"] == 1,
    )?;
    // Drain: one pod may go; the other is refused until a replacement is
    // ready, which cannot happen on the cordoned single node.
    let before: Vec<String> = items(c, "pods", ns, "app=guarded")?
        .iter()
        .map(|p| name(p).to_string())
        .collect();
    let out = c.kubectl(&[
        "drain",
        &x.node,
        "--pod-selector=app=guarded",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=20s",
    ]);
    let text = describe(&out);
    let uncordon = kubectl(c, &["uncordon", &x.node]);
    ensure!(
        !out.status.success(),
        "drain succeeded against the budget: {text}"
    );
    ensure!(text.contains("disruption budget"), "drain output: {text}");
    uncordon?;
    let after: Vec<String> = items(c, "pods", ns, "app=guarded")?
        .iter()
        .filter(|p| !terminating(p))
        .map(|p| name(p).to_string())
        .collect();
    let kept = before.iter().filter(|p| after.contains(p)).count();
    ensure!(
        kept == 1,
        "drain evicted {} of 2 pods, want 1 (before {before:?}, after {after:?})",
        2 - kept
    );
    wait_for(
        "2 ready pods again after uncordon",
        UP,
        || Ok(json!(ready_pods(c, ns, "app=guarded")?.len())),
        |v| v == 2,
    )?;
    kubectl(c, &["delete", "namespace", ns, "--wait=false"])?;
    Ok(())
}

// ---- the test ---------------------------------------------------------------------

#[test]
fn workloads_on_default_runtime_and_containerd() {
    assert!(
        is_root(),
        "workloads e2e needs root (it runs a node); run the suite as root"
    );
    let only = std::env::var("RKUBE_E2E_RUNTIMES").unwrap_or_default();
    // The quickstart's `image: nginx` comes from a loopback docker.io mirror.
    let dir = TempDir::new().expect("temp dir");
    let archive = dir.path().join("nginx.tar");
    let registry = rkube_image::write_httpd_archive(
        &archive,
        "docker.io/library/nginx:latest",
        Path::new("/usr/bin/busybox"),
    )
    .map_err(anyhow::Error::from)
    .and_then(|_| Registry::start(None))
    .and_then(|r| r.push(&archive, "library/nginx:latest").map(|_| r));
    let mut failed = Vec::new();
    for (label, args) in RUNTIMES
        .iter()
        .filter(|(l, _)| only.is_empty() || only.split(',').any(|o| o == *l))
    {
        let mirror = match &registry {
            Ok(r) => format!(
                "--registry-mirror=docker.io=http://{},mirror-only",
                r.host()
            ),
            Err(e) => {
                failed.push(format!("[{label}] loopback registry: {e:#}"));
                "--registry-mirror=docker.io=http://127.0.0.1:1,mirror-only".into()
            }
        };
        let mut args = args.to_vec();
        args.push(&mirror);
        failed.extend(
            run_scenarios(label, &args)
                .into_iter()
                .map(|f| format!("[{label}] {f}")),
        );
    }
    assert!(
        failed.is_empty(),
        "failed scenarios (details above):\n- {}",
        failed.join("\n- ")
    );
}

fn run_scenarios(label: &str, args: &[&str]) -> Vec<String> {
    let begin = Instant::now();
    let c = match Cluster::start_with("workloads", args) {
        Ok(c) => c,
        Err(e) => return vec![format!("rkube start {}: {e:#}", args.join(" "))],
    };
    let mut x = Ctx {
        c,
        node: String::new(),
    };
    if let Err(e) = run_step(&mut x, node_ready_and_image_loaded) {
        eprintln!("[workloads {label}] FAIL setup:\n{e}\n");
        return vec!["setup: node Ready and busybox loaded".into()];
    }
    let steps: &[(&str, Step)] = &[
        (
            "API refuses wrong-typed objects and keeps kube-system",
            api_refuses_wrong_types,
        ),
        (
            "Deployment rolling update, undo, scale, pause/resume",
            deployment_rollout,
        ),
        (
            "README quickstart Deployment becomes 2/2 Ready",
            readme_quickstart,
        ),
        (
            "StatefulSet in order with PVCs, web-0 recreated",
            statefulset_in_order,
        ),
        (
            "DaemonSet one pod per node, rolls on change",
            daemonset_one_per_node,
        ),
        (
            "Jobs complete, Indexed, BackoffLimitExceeded",
            jobs_complete_and_fail,
        ),
        (
            "CronJob creates a Job and keeps history limits",
            cronjob_schedules,
        ),
        (
            "cascading deletion: foreground, orphan, background",
            cascading_deletion,
        ),
        (
            "namespace deletion removes all content",
            namespace_deletion_removes_content,
        ),
        (
            "ResourceQuota and LimitRange admission",
            quota_and_limit_range,
        ),
        (
            "PodDisruptionBudget: eviction 429, drain honours it",
            disruption_budget_and_drain,
        ),
    ];
    let mut failed = Vec::new();
    for (name, step) in steps {
        let t = Instant::now();
        match run_step(&mut x, *step) {
            Ok(()) => eprintln!("[workloads {label}] ok   {name} ({:?})", t.elapsed()),
            Err(e) => {
                eprintln!(
                    "[workloads {label}] FAIL {name} ({:?}):\n{e}\n--- rkube.log (tail) ---\n{}\n",
                    t.elapsed(),
                    x.c.log_tail(30)
                );
                failed.push(name.to_string());
            }
        }
    }
    eprintln!(
        "[workloads {label}] {} of {} scenarios passed in {:?}",
        steps.len() - failed.len(),
        steps.len(),
        begin.elapsed()
    );
    failed
}
