//! Pods running for real on every runtime (containerd, the bundled cri-o
//! on runc and on crun, docker through the dockershim; the acceptance of
//! issues 3, 4 and 15): logs,
//! exit codes, CrashLoopBackOff, exec, env and volumes from ConfigMaps and
//! Secrets, probes, init containers, port-forward, cp, pod networking,
//! graceful deletion, a burst of 20 pods and adoption after `kill -9`.
//!
//! Only one cluster with a node may run on a host at a time (they share the
//! rkube0 bridge and host ports), so this file has ONE test that starts ONE
//! cluster and runs the scenarios in order as named steps. A failing step
//! does not stop the others: every failure is collected, with `kubectl
//! describe pod`, the pod's events and the daemon's log, and the test fails
//! at the end with a summary naming each failed scenario.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use rkube_e2e::registry::Registry;
use rkube_e2e::scenario::{apply, is_root, kubectl, run_step};
use rkube_e2e::{
    container_status, describe, eventually, free_port, object_condition, pod_condition, pod_phase,
    wait_port_free, Cluster,
};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The test image, built from Debian's static busybox and loaded with
/// `rkube image load`.
const IMAGE: &str = "rkube.local/busybox:1";
/// How long a pod may take to start.
const START: Duration = Duration::from_secs(90);

/// State shared between the steps.
struct Ctx {
    c: Cluster,
    /// Host directory mounted by the preStop pod (hostPath).
    hostdir: TempDir,
    /// When the ConfigMap was updated (the volume must follow within ~90 s).
    cm_updated: Option<Instant>,
    /// When the scenario pods were created.
    created: Option<Instant>,
    /// Named network namespaces that existed before the cluster started.
    netns_before: Vec<String>,
    /// The runtime under test.
    rt: &'static Runtime,
    /// The loopback registries (or why they could not start).
    reg: Result<Rc<Registries>, String>,
}

/// One runtime the scenarios run on.
struct Runtime {
    /// Label in the output.
    label: &'static str,
    /// `rkube start` flags.
    args: &'static [&'static str],
    /// Prefix of the node's containerRuntimeVersion and of containerIDs.
    scheme: &'static str,
}

const RUNTIMES: &[Runtime] = &[
    Runtime {
        label: "containerd",
        args: &["--container-runtime=containerd"],
        scheme: "containerd://",
    },
    Runtime {
        label: "cri-o/runc",
        args: &["--container-runtime=cri-o", "--oci-runtime=runc"],
        scheme: "rkube-cri-o://",
    },
    Runtime {
        label: "cri-o/crun",
        args: &["--container-runtime=cri-o", "--oci-runtime=crun"],
        scheme: "rkube-cri-o://",
    },
    Runtime {
        label: "docker",
        args: &["--container-runtime=docker"],
        scheme: "docker://",
    },
];

/// A busybox container named `name` running `script` with `sh -c`.
fn container(name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
    })
}

/// A pod named `name`; `spec` is merged over a short grace period (busybox
/// shells as PID 1 ignore SIGTERM, so deletion waits out the grace period).
fn pod(name: &str, spec: Value) -> Value {
    let mut full = json!({"terminationGracePeriodSeconds": 2});
    merge(&mut full, spec);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"e2e": "pods"}},
        "spec": full,
    })
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

/// `kubectl exec <pod> -- <cmd>`, which must succeed; returns stdout.
fn exec(c: &Cluster, pod: &str, cmd: &[&str]) -> Result<String> {
    let mut args = vec!["exec", pod, "--"];
    args.extend_from_slice(cmd);
    kubectl(c, &args)
}

fn restart_count(pod: &Value, name: &str) -> i64 {
    container_status(pod, name, false)
        .and_then(|s| s["restartCount"].as_i64())
        .unwrap_or(0)
}

fn container_id(pod: &Value, name: &str) -> String {
    container_status(pod, name, false)
        .and_then(|s| s["containerID"].as_str())
        .unwrap_or("")
        .to_string()
}

/// Fails with the pod's diagnostics unless `ok`.
fn check_pod(c: &Cluster, pod: &str, ok: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if !ok {
        bail!("{}\n{}", msg(), c.pod_diagnostics(pod));
    }
    Ok(())
}

/// The long-lived pods the scenarios use, created at once up front so their
/// start-up (and the crash loop's back-off) overlap.
fn scenario_pods() -> Vec<Value> {
    let sleeper = |name: &str| {
        pod(
            name,
            json!({"containers": [container("main", "exec sleep 3600")]}),
        )
    };
    vec![
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app-config"},
            "data": {"greeting": "hello", "mode": "fast"},
        }),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "app-secret"},
            "data": {"password": "czNjcmV0"},
        }),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "string-secret"},
            "stringData": {"password": "s3cret"},
        }),
        pod(
            "logs",
            json!({"restartPolicy": "Never", "containers": [{
                "name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "echo hello from rkube; echo second line"],
            }]}),
        ),
        pod(
            "fail",
            json!({"restartPolicy": "Never",
                   "containers": [container("main", "echo failing; exit 7")]}),
        ),
        pod(
            "crash",
            json!({"restartPolicy": "Always",
                   "containers": [container("main", "echo crashing; exit 1")]}),
        ),
        sleeper("shell"),
        pod(
            "envpod",
            json!({
                "containers": [{
                    "name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                    "env": [
                        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "greeting"}}},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}},
                    ],
                    "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "app-config"}}],
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/config"},
                        {"name": "secret", "mountPath": "/etc/secret", "readOnly": true},
                    ],
                }],
                "volumes": [
                    {"name": "config", "configMap": {"name": "app-config"}},
                    {"name": "secret", "secret": {"secretName": "app-secret"}},
                ],
            }),
        ),
        pod(
            "ready",
            json!({"containers": [{
                "name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
                "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]},
                                   "periodSeconds": 1, "failureThreshold": 1},
            }]}),
        ),
        pod(
            "live",
            json!({"containers": [{
                "name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                "command": ["sh", "-c", "touch /tmp/healthy; exec sleep 3600"],
                "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                                  "periodSeconds": 1, "failureThreshold": 2},
            }]}),
        ),
        pod(
            "init",
            json!({
                "restartPolicy": "Never",
                "initContainers": [
                    {"name": "init-1", "image": IMAGE, "imagePullPolicy": "Never",
                     "command": ["sh", "-c", "echo one >> /work/log"],
                     "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                    {"name": "init-2", "image": IMAGE, "imagePullPolicy": "Never",
                     "command": ["sh", "-c", "echo two >> /work/log"],
                     "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                ],
                "containers": [
                    {"name": "app", "image": IMAGE, "imagePullPolicy": "Never",
                     "command": ["cat", "/work/log"],
                     "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                ],
                "volumes": [{"name": "work", "emptyDir": {}}],
            }),
        ),
        pod(
            "web",
            json!({"containers": [container(
                "httpd",
                "mkdir -p /www && echo hello-web > /www/index.html && exec httpd -f -p 8080 -h /www",
            )]}),
        ),
    ]
}

// ---- scenarios ------------------------------------------------------------

fn node_ready_with_runtime(x: &mut Ctx) -> Result<()> {
    let node = x.c.wait_node_ready(Duration::from_secs(60))?;
    let runtime = node["status"]["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap_or("");
    ensure!(
        runtime.starts_with(x.rt.scheme),
        "containerRuntimeVersion {runtime:?} does not start with {}",
        x.rt.scheme
    );
    let wide = kubectl(&x.c, &["get", "nodes", "-o", "wide"])?;
    ensure!(wide.contains(" Ready"), "kubectl get nodes:\n{wide}");
    for cond in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        ensure!(
            object_condition(&node, cond) == Some("False"),
            "node condition {cond} is {:?}, want False",
            object_condition(&node, cond)
        );
    }
    Ok(())
}

fn load_busybox_image(x: &mut Ctx) -> Result<()> {
    let dir = TempDir::new()?;
    let archive = dir.path().join("busybox.tar");
    rkube_image::write_busybox_archive(&archive, IMAGE, Path::new("/usr/bin/busybox"))
        .context("write busybox archive (is busybox-static installed?)")?;
    x.c.load_image(&archive)?;
    let out = x.c.rkube(&["image", "ls", "--profile", x.c.name()]);
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("rkube.local/busybox"),
        "rkube image ls does not list the loaded image: {}",
        describe(&out)
    );
    Ok(())
}

fn create_scenario_pods(x: &mut Ctx) -> Result<()> {
    apply(&x.c, &scenario_pods())?;
    x.created = Some(Instant::now());
    Ok(())
}

fn logs_show_command_output(x: &mut Ctx) -> Result<()> {
    x.c.wait_pod_phase("logs", "Succeeded", START)?;
    let logs = kubectl(&x.c, &["logs", "logs"])?;
    check_pod(
        &x.c,
        "logs",
        logs == "hello from rkube\nsecond line\n",
        || format!("kubectl logs logs = {logs:?}"),
    )?;
    let tail = kubectl(&x.c, &["logs", "logs", "--tail=1"])?;
    check_pod(&x.c, "logs", tail == "second line\n", || {
        format!("kubectl logs --tail=1 = {tail:?}")
    })
}

fn failed_container_exit_code(x: &mut Ctx) -> Result<()> {
    let p = x.c.wait_pod_phase("fail", "Failed", START)?;
    let term = &container_status(&p, "main", false).context("no containerStatuses")?["state"]
        ["terminated"];
    check_pod(
        &x.c,
        "fail",
        term["exitCode"] == 7 && term["reason"] == "Error",
        || format!("state.terminated = {term}, want exitCode 7 and reason Error"),
    )?;
    let logs = kubectl(&x.c, &["logs", "fail"])?;
    ensure!(logs == "failing\n", "kubectl logs fail = {logs:?}");
    Ok(())
}

fn exec_output_and_exit_code(x: &mut Ctx) -> Result<()> {
    x.c.wait_pod_ready("shell", START)?;
    let out = exec(&x.c, "shell", &["echo", "hello", "exec"])?;
    ensure!(out == "hello exec\n", "exec echo printed {out:?}");
    let out = exec(
        &x.c,
        "shell",
        &["sh", "-c", "echo to-stderr >&2; echo to-stdout"],
    )?;
    ensure!(out == "to-stdout\n", "exec stdout {out:?}");
    let out = x.c.kubectl(&["exec", "shell", "--", "sh", "-c", "exit 3"]);
    ensure!(
        out.status.code() == Some(3),
        "kubectl exec shell -- sh -c 'exit 3': want exit status 3, got {}",
        describe(&out)
    );
    let out = x.c.kubectl(&["exec", "shell", "--", "/no/such/binary"]);
    ensure!(
        !out.status.success(),
        "exec of a missing binary succeeded: {}",
        describe(&out)
    );
    // stdin is passed through with -i.
    let out =
        x.c.kubectl_stdin(&["exec", "-i", "shell", "--", "cat"], Some("piped in\n"));
    ensure!(
        out.status.success() && out.stdout == b"piped in\n",
        "kubectl exec -i shell -- cat: {}",
        describe(&out)
    );
    Ok(())
}

fn service_account_token_mounted(x: &mut Ctx) -> Result<()> {
    x.c.wait_pod_ready("shell", START)?;
    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let token = exec(&x.c, "shell", &["cat", &format!("{dir}/token")])?;
    ensure!(
        token.starts_with("eyJ") && token.trim().split('.').count() == 3,
        "{dir}/token is not a JWT: {token:?}"
    );
    let ns = exec(&x.c, "shell", &["cat", &format!("{dir}/namespace")])?;
    ensure!(ns == "default", "{dir}/namespace = {ns:?}");
    let ca = exec(&x.c, "shell", &["cat", &format!("{dir}/ca.crt")])?;
    ensure!(
        ca.contains("BEGIN CERTIFICATE"),
        "{dir}/ca.crt is not a certificate: {ca:?}"
    );
    Ok(())
}

fn kubernetes_service_env(x: &mut Ctx) -> Result<()> {
    let env = exec(&x.c, "shell", &["env"])?;
    for var in ["KUBERNETES_SERVICE_HOST=", "KUBERNETES_SERVICE_PORT="] {
        ensure!(
            env.lines().any(|l| l.starts_with(var)),
            "{var} missing from the container environment:\n{env}"
        );
    }
    Ok(())
}

fn env_and_volumes_from_configmap_and_secret(x: &mut Ctx) -> Result<()> {
    x.c.wait_pod_ready("envpod", START)?;
    let env = exec(&x.c, "envpod", &["env"])?;
    for want in [
        "GREETING=hello",
        "PASSWORD=s3cret",
        "CFG_mode=fast",
        "CFG_greeting=hello",
    ] {
        check_pod(&x.c, "envpod", env.lines().any(|l| l == want), || {
            format!("{want} missing from the environment:\n{env}")
        })?;
    }
    let greeting = exec(&x.c, "envpod", &["cat", "/etc/config/greeting"])?;
    ensure!(greeting == "hello", "/etc/config/greeting = {greeting:?}");
    let mode = exec(&x.c, "envpod", &["cat", "/etc/config/mode"])?;
    ensure!(mode == "fast", "/etc/config/mode = {mode:?}");
    let password = exec(&x.c, "envpod", &["cat", "/etc/secret/password"])?;
    ensure!(password == "s3cret", "/etc/secret/password = {password:?}");
    // The update is checked by a later step, so the wait overlaps others.
    kubectl(
        &x.c,
        &[
            "patch",
            "configmap",
            "app-config",
            "--type=merge",
            "-p",
            r#"{"data":{"greeting":"updated"}}"#,
        ],
    )?;
    x.cm_updated = Some(Instant::now());
    Ok(())
}

fn secret_string_data_becomes_data(x: &mut Ctx) -> Result<()> {
    let secret = x.c.get_json(&["secret", "string-secret"])?;
    ensure!(
        secret["data"]["password"] == "czNjcmV0",
        "a Secret created with stringData must store it base64 in data (and not keep \
         stringData): {secret}"
    );
    ensure!(
        secret.get("stringData").is_none(),
        "stringData is write-only but was returned: {secret}"
    );
    Ok(())
}

fn configmap_update_reaches_volume(x: &mut Ctx) -> Result<()> {
    let since = x
        .cm_updated
        .context("the ConfigMap was not updated (an earlier step failed)")?;
    let limit = Duration::from_secs(100);
    let mut last = String::new();
    let ok = eventually(limit.saturating_sub(since.elapsed()), || {
        last = exec(&x.c, "envpod", &["cat", "/etc/config/greeting"])
            .unwrap_or_else(|e| format!("{e:#}"));
        if last == "updated" {
            return true;
        }
        std::thread::sleep(Duration::from_secs(1));
        false
    });
    check_pod(&x.c, "envpod", ok, || {
        format!("/etc/config/greeting still {last:?} {limit:?} after the ConfigMap update")
    })
}

fn init_containers_run_in_order(x: &mut Ctx) -> Result<()> {
    let p = x.c.wait_pod_phase("init", "Succeeded", START)?;
    for name in ["init-1", "init-2"] {
        let s = container_status(&p, name, true).context("no initContainerStatuses")?;
        let term = &s["state"]["terminated"];
        check_pod(
            &x.c,
            "init",
            term["exitCode"] == 0 && term["reason"] == "Completed",
            || format!("{name}: state {}, want terminated Completed 0", s["state"]),
        )?;
    }
    check_pod(
        &x.c,
        "init",
        pod_condition(&p, "Initialized") == Some("True"),
        || "condition Initialized is not True".into(),
    )?;
    let logs = kubectl(&x.c, &["logs", "init", "-c", "app"])?;
    check_pod(&x.c, "init", logs == "one\ntwo\n", || {
        format!("app saw {logs:?}, want \"one\\ntwo\\n\"")
    })
}

fn readiness_probe_gates_ready(x: &mut Ctx) -> Result<()> {
    x.c.wait_pod("ready", "Running", START, |p| pod_phase(p) == "Running")?;
    // Several probe periods without the file: still not ready.
    std::thread::sleep(Duration::from_secs(3));
    let p = x.c.pod_json("ready")?;
    let ready = container_status(&p, "main", false).map(|s| s["ready"].clone());
    check_pod(
        &x.c,
        "ready",
        pod_condition(&p, "Ready") == Some("False") && ready == Some(json!(false)),
        || format!("pod Ready before its probe passed (container ready = {ready:?})"),
    )?;
    exec(&x.c, "ready", &["touch", "/tmp/ready"])?;
    x.c.wait_pod(
        "ready",
        "Ready after the probe file appeared",
        Duration::from_secs(30),
        |p| {
            pod_condition(p, "Ready") == Some("True")
                && pod_condition(p, "ContainersReady") == Some("True")
        },
    )?;
    exec(&x.c, "ready", &["rm", "/tmp/ready"])?;
    x.c.wait_pod(
        "ready",
        "NotReady after the probe file went",
        Duration::from_secs(30),
        |p| pod_condition(p, "Ready") == Some("False") && pod_phase(p) == "Running",
    )?;
    Ok(())
}

fn liveness_probe_restarts(x: &mut Ctx) -> Result<()> {
    let p = x.c.wait_pod_ready("live", START)?;
    let before = restart_count(&p, "main");
    exec(&x.c, "live", &["rm", "/tmp/healthy"])?;
    let p = x.c.wait_pod(
        "live",
        "restarted by its liveness probe",
        Duration::from_secs(60),
        |p| restart_count(p, "main") > before,
    )?;
    // The new container recreates the file and stays up.
    let p2 = x.c.wait_pod_ready("live", Duration::from_secs(30))?;
    let last = &container_status(&p, "main", false).unwrap()["lastState"];
    check_pod(&x.c, "live", last.get("terminated").is_some(), || {
        format!("lastState after the restart = {last}, want terminated")
    })?;
    ensure!(
        restart_count(&p2, "main") == before + 1,
        "restartCount {} (want {}): restarts kept happening",
        restart_count(&p2, "main"),
        before + 1
    );
    Ok(())
}

fn crash_loop_backoff(x: &mut Ctx) -> Result<()> {
    let mut seen_backoff = false;
    let p = x.c.wait_pod(
        "crash",
        "restarting in CrashLoopBackOff",
        Duration::from_secs(90),
        |p| {
            let s = container_status(p, "main", false);
            if s.is_some_and(|s| s["state"]["waiting"]["reason"] == "CrashLoopBackOff") {
                seen_backoff = true;
            }
            seen_backoff && restart_count(p, "main") >= 2
        },
    )?;
    let last = &container_status(&p, "main", false).unwrap()["lastState"]["terminated"];
    check_pod(&x.c, "crash", last["exitCode"] == 1, || {
        format!("lastState.terminated = {last}, want exitCode 1")
    })?;
    ensure!(
        pod_phase(&p) == "Running",
        "phase {:?}: a crash-looping pod with restartPolicy Always stays Running",
        pod_phase(&p)
    );
    // The back-off doubles from 10 s (restarts at about 0, 10, 30, 70 s),
    // so a fourth restart within a minute means it does not grow.
    let age = x.created.map(|t| t.elapsed()).unwrap_or_default();
    let count = restart_count(&p, "main");
    check_pod(
        &x.c,
        "crash",
        !(count >= 4 && age < Duration::from_secs(60)),
        || format!("restartCount {count} only {age:?} after creation: the back-off does not grow"),
    )
}

fn logs_previous_of_crashed_container(x: &mut Ctx) -> Result<()> {
    let logs = kubectl(&x.c, &["logs", "crash", "--previous"])?;
    ensure!(
        logs == "crashing\n",
        "kubectl logs crash --previous = {logs:?}"
    );
    Ok(())
}

fn port_forward_to_httpd(x: &mut Ctx) -> Result<()> {
    x.c.wait_pod_ready("web", START)?;
    let port = free_port()?;
    let logs = TempDir::new()?;
    let mut cmd =
        x.c.kubectl_command(&["port-forward", "pod/web", &format!("{port}:8080")]);
    cmd.stdin(Stdio::null())
        .stdout(File::create(logs.path().join("out"))?)
        .stderr(File::create(logs.path().join("err"))?);
    let mut child = cmd.spawn().context("spawn kubectl port-forward")?;
    let url = format!("http://127.0.0.1:{port}/");
    let mut last = String::new();
    let ok = eventually(Duration::from_secs(30), || {
        last = curl(&url).unwrap_or_else(|e| format!("{e:#}"));
        last == "hello-web\n"
    });
    // Several connections through the same forward.
    let again: Vec<String> = (0..3)
        .map(|_| curl(&url).unwrap_or_else(|e| format!("{e:#}")))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let pf_log = format!(
        "--- port-forward stdout ---\n{}\n--- port-forward stderr ---\n{}",
        std::fs::read_to_string(logs.path().join("out")).unwrap_or_default(),
        std::fs::read_to_string(logs.path().join("err")).unwrap_or_default()
    );
    check_pod(&x.c, "web", ok, || {
        format!("curl {url} never answered hello-web; last: {last:?}\n{pf_log}")
    })?;
    ensure!(
        again.iter().all(|b| b == "hello-web\n"),
        "later requests through the forward: {again:?}\n{pf_log}"
    );
    Ok(())
}

fn curl(url: &str) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "5", url])
        .output()?;
    ensure!(out.status.success(), "curl {url}: {}", describe(&out));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pod_ip(c: &Cluster, name: &str) -> Result<String> {
    let p = c.wait_pod_ready(name, START)?;
    let ip = p["status"]["podIP"].as_str().unwrap_or("").to_string();
    check_pod(c, name, ip.starts_with("10.244."), || {
        format!("podIP {ip:?} is not in the pod CIDR 10.244.0.0/16")
    })?;
    let ips = &p["status"]["podIPs"];
    ensure!(
        ips[0]["ip"] == ip.as_str(),
        "podIPs {ips} does not start with podIP {ip}"
    );
    Ok(ip)
}

fn pod_to_pod_http(x: &mut Ctx) -> Result<()> {
    let web = pod_ip(&x.c, "web")?;
    let shell = pod_ip(&x.c, "shell")?;
    ensure!(web != shell, "two pods share the IP {web}");
    let url = format!("http://{web}:8080/");
    // (No `wget -T`: it segfaults in Debian's static busybox 1.35.)
    let body = exec(&x.c, "shell", &["wget", "-q", "-O", "-", &url])?;
    ensure!(body == "hello-web\n", "wget {url} from pod shell: {body:?}");
    Ok(())
}

fn host_to_pod_http(x: &mut Ctx) -> Result<()> {
    let web = pod_ip(&x.c, "web")?;
    let body = curl_pod(x, &web)?;
    ensure!(body == "hello-web\n", "curl from the host: {body:?}");
    Ok(())
}

/// `curl http://<ip>:8080/` from the host. A failure says what the host
/// knows of the address: its neighbor entry and route, and the network
/// namespaces (named ones and the bundled runtime's) that hold it, since
/// leftovers of earlier clusters make the host talk to the wrong one.
fn curl_pod(x: &Ctx, ip: &str) -> Result<String> {
    curl(&format!("http://{ip}:8080/")).map_err(|e| {
        let holders = netns_with_ip(x, ip);
        let ip_cmd = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        anyhow::anyhow!(
            "{e:#}\nnetwork namespaces holding {ip}: {holders:?}{}\nip neigh: {:?}\nip route get: {:?}\nrkube0 ports: {:?}",
            if holders.len() > 1 {
                " (duplicate pod IPs: sandboxes of an earlier cluster were never torn down)"
            } else {
                ""
            },
            ip_cmd(&["neigh", "show", ip]),
            ip_cmd(&["route", "get", ip]),
            ip_cmd(&["-br", "link", "show", "master", "rkube0"]),
        )
    })
}

/// The named network namespaces (/var/run/netns) now present.
fn netns_names() -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|dir| {
            dir.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Network namespaces whose eth0 has address `ip`: the named ones and
/// those the bundled runtime pins under its state directory.
fn netns_with_ip(x: &Ctx, ip: &str) -> Vec<String> {
    let crio = x.c.profile_dir().join("crio").join("netns");
    let pinned = std::fs::read_dir(&crio)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.path().to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    netns_names()
        .into_iter()
        .map(|n| format!("/var/run/netns/{n}"))
        .chain(pinned)
        .filter(|ns| {
            Command::new("nsenter")
                .arg(format!("--net={ns}"))
                .args(["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {ip}/")))
        })
        .collect()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        e.file_name().to_str()?.parse::<u32>().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        cmd.contains(needle)
            .then(|| format!("{} {}", e.file_name().to_string_lossy(), cmd.trim()))
    })
    .collect()
}

fn kubectl_cp_both_ways(x: &mut Ctx) -> Result<()> {
    x.c.wait_pod_ready("shell", START)?;
    let dir = TempDir::new()?;
    let local_in = dir.path().join("in.txt");
    std::fs::write(&local_in, "from the host\n")?;
    kubectl(
        &x.c,
        &["cp", local_in.to_str().unwrap(), "shell:/tmp/in.txt"],
    )?;
    let got = exec(&x.c, "shell", &["cat", "/tmp/in.txt"])?;
    ensure!(got == "from the host\n", "after cp to the pod: {got:?}");

    exec(
        &x.c,
        "shell",
        &["sh", "-c", "echo from the pod > /tmp/out.txt"],
    )?;
    let local_out = dir.path().join("out.txt");
    kubectl(
        &x.c,
        &["cp", "shell:/tmp/out.txt", local_out.to_str().unwrap()],
    )?;
    let got = std::fs::read_to_string(&local_out).context("read the copied file")?;
    ensure!(got == "from the pod\n", "after cp from the pod: {got:?}");
    Ok(())
}

fn graceful_delete_runs_prestop(x: &mut Ctx) -> Result<()> {
    let host = x.hostdir.path().to_str().unwrap().to_string();
    let marker = x.hostdir.path().join("prestop");
    apply(
        &x.c,
        &[pod(
            "graceful",
            json!({
                "terminationGracePeriodSeconds": 30,
                "containers": [{
                    "name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                    "command": ["sh", "-c",
                        "trap 'echo TERM received' TERM; while true; do sleep 1; done"],
                    "lifecycle": {"preStop": {"exec": {"command":
                        ["sh", "-c", "echo prestop-ran > /host/prestop"]}}},
                    "volumeMounts": [{"name": "host", "mountPath": "/host"}],
                }],
                "volumes": [{"name": "host",
                             "hostPath": {"path": host, "type": "DirectoryOrCreate"}}],
            }),
        )],
    )?;
    x.c.wait_pod_ready("graceful", START)?;
    let started = Instant::now();
    let out =
        x.c.kubectl(&["delete", "pod", "graceful", "--grace-period=5"]);
    let took = started.elapsed();
    ensure!(
        out.status.success(),
        "kubectl delete pod graceful --grace-period=5: {}\n{}",
        describe(&out),
        x.c.pod_diagnostics("graceful")
    );
    x.c.wait_pod_gone("graceful", Duration::from_secs(30))?;
    let prestop = std::fs::read_to_string(&marker).unwrap_or_default();
    ensure!(
        prestop == "prestop-ran\n",
        "preStop did not write {} (content {prestop:?})\n{}",
        marker.display(),
        x.c.log_tail(30)
    );
    ensure!(
        took >= Duration::from_secs(4),
        "deletion took {took:?}: a container that ignores SIGTERM must get its 5 s grace period"
    );
    ensure!(
        took <= Duration::from_secs(25),
        "deletion took {took:?} with --grace-period=5 (the spec said 30)"
    );
    Ok(())
}

fn twenty_pods_at_once(x: &mut Ctx) -> Result<()> {
    let pods: Vec<Value> = (0..20)
        .map(|i| {
            let mut p = pod(
                &format!("burst-{i:02}"),
                json!({"terminationGracePeriodSeconds": 1,
                       "containers": [container("main", "exec sleep 3600")]}),
            );
            p["metadata"]["labels"]["burst"] = json!("yes");
            p
        })
        .collect();
    let started = Instant::now();
    apply(&x.c, &pods)?;
    let mut pending = Vec::new();
    let ok = eventually(Duration::from_secs(120), || {
        let Ok(list) = x.c.get_json(&["pods", "-l", "burst=yes"]) else {
            return false;
        };
        let items = list["items"].as_array().cloned().unwrap_or_default();
        pending = items
            .iter()
            .filter(|p| pod_phase(p) != "Running")
            .map(|p| {
                let waiting = container_status(p, "main", false)
                    .map(|s| s["state"].to_string())
                    .unwrap_or_default();
                format!("{} {} {waiting}", p["metadata"]["name"], pod_phase(p))
            })
            .collect();
        let done = items.len() == 20 && pending.is_empty();
        if !done {
            std::thread::sleep(Duration::from_millis(500));
        }
        done
    });
    if !ok {
        let first = pending
            .first()
            .and_then(|l| l.split('"').nth(1))
            .unwrap_or("burst-00")
            .to_string();
        bail!(
            "not all 20 pods Running after 120 s; not running:\n{}\n{}",
            pending.join("\n"),
            x.c.pod_diagnostics(&first)
        );
    }
    eprintln!("[pods] 20 pods Running {:?} after apply", started.elapsed());
    let out =
        x.c.kubectl(&["delete", "pods", "-l", "burst=yes", "--timeout=90s"]);
    ensure!(
        out.status.success(),
        "deleting the 20 pods: {}\n{}",
        describe(&out),
        x.c.pod_diagnostics("burst-00")
    );
    Ok(())
}

fn kill9_keeps_running_containers(x: &mut Ctx) -> Result<()> {
    let shell = x.c.wait_pod_ready("shell", START)?;
    let web = x.c.wait_pod_ready("web", START)?;
    let before = [
        (
            "shell",
            "main",
            container_id(&shell, "main"),
            restart_count(&shell, "main"),
        ),
        (
            "web",
            "httpd",
            container_id(&web, "httpd"),
            restart_count(&web, "httpd"),
        ),
    ];
    for (pod, _, id, _) in &before {
        ensure!(
            id.starts_with(x.rt.scheme),
            "pod {pod}: containerID {id:?} should be {}<id>",
            x.rt.scheme
        );
    }
    // A file in the container's writable layer survives only if the
    // container is the same one.
    exec(
        &x.c,
        "shell",
        &["sh", "-c", "echo before-kill > /tmp/marker"],
    )?;

    x.c.kill9()?;
    let waited = wait_port_free(x.c.port(), Duration::from_secs(15))
        .context("the API server port is still bound 15 s after kill -9 of rkube")?;
    if waited > Duration::from_millis(200) {
        eprintln!("[pods] the API port was busy for {waited:?} after kill -9");
    }
    let out = x.c.restart()?;
    ensure!(
        out.status.success(),
        "rkube start after kill -9: {}\n{}",
        describe(&out),
        x.c.log_tail(40)
    );
    x.c.wait_node_ready(Duration::from_secs(60))?;
    for (pod, ctr, id, restarts) in &before {
        let p = x.c.wait_pod_ready(pod, Duration::from_secs(60))?;
        check_pod(&x.c, pod, container_id(&p, ctr) == *id, || {
            format!(
                "containerID changed across kill -9: {id} -> {}",
                container_id(&p, ctr)
            )
        })?;
        check_pod(&x.c, pod, restart_count(&p, ctr) == *restarts, || {
            format!("restartCount {} -> {}", restarts, restart_count(&p, ctr))
        })?;
    }
    let marker = exec(&x.c, "shell", &["cat", "/tmp/marker"])?;
    ensure!(
        marker == "before-kill\n",
        "marker after restart: {marker:?}"
    );
    // The adopted containers stay (no late restarts by the new agent).
    std::thread::sleep(Duration::from_secs(10));
    for (pod, ctr, id, _) in &before {
        let p = x.c.pod_json(pod)?;
        check_pod(&x.c, pod, container_id(&p, ctr) == *id, || {
            format!(
                "containerID changed 10 s after the restart: {id} -> {}",
                container_id(&p, ctr)
            )
        })?;
    }
    let out = exec(&x.c, "shell", &["echo", "still here"])?;
    ensure!(out == "still here\n", "exec after restart: {out:?}");
    let ip = pod_ip(&x.c, "web")?;
    let body = curl_pod(x, &ip)?;
    ensure!(body == "hello-web\n", "web after restart: {body:?}");
    Ok(())
}

/// Whether OCI runtime `handler` (runc or crun) holds the state of
/// container `id`. The bundled cri-o keeps each handler's state under
/// `<profile>/crio/oci/<handler>/<id>`; dockerd runs every runtime through
/// containerd's runc shim with one state root, where only the runtime
/// that made a container can read its state (`<handler> state <id>`).
fn oci_state_exists(x: &Ctx, handler: &str, id: &str) -> bool {
    let id = id.trim_start_matches(x.rt.scheme);
    if x.rt.scheme == "docker://" {
        let root = x.c.profile_dir().join("docker/run/runtime-runc/moby");
        Command::new(handler)
            .arg("--root")
            .arg(&root)
            .args(["state", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    } else {
        x.c.profile_dir()
            .join("crio/oci")
            .join(handler)
            .join(id)
            .exists()
    }
}

/// A RuntimeClass `crun` (handler crun) runs its pod on crun while pods
/// without one run on the default runc.
fn runtime_class_picks_crun(x: &mut Ctx) -> Result<()> {
    let mut p = pod(
        "on-crun",
        json!({"containers": [container("main", "exec sleep 3600")]}),
    );
    p["spec"]["runtimeClassName"] = json!("crun");
    apply(
        &x.c,
        &[
            json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                   "metadata": {"name": "crun"}, "handler": "crun"}),
            p,
        ],
    )?;
    let on_crun = x.c.wait_pod_ready("on-crun", START)?;
    let shell = x.c.wait_pod_ready("shell", START)?;
    for (pod, p, handler, other) in [
        ("on-crun", &on_crun, "crun", "runc"),
        ("shell", &shell, "runc", "crun"),
    ] {
        let id = container_id(p, "main");
        check_pod(&x.c, pod, oci_state_exists(x, handler, &id), || {
            format!("container {id} has no {handler} state")
        })?;
        check_pod(&x.c, pod, !oci_state_exists(x, other, &id), || {
            format!("container {id} also runs under {other}")
        })?;
    }
    let out = exec(&x.c, "on-crun", &["echo", "hi from crun"])?;
    ensure!(out == "hi from crun\n", "exec on crun: {out:?}");
    kubectl(&x.c, &["delete", "pod", "on-crun", "--grace-period=1"])?;
    Ok(())
}

/// `eval $(rkube docker-env)`, then `docker build` of an image FROM the
/// loaded busybox against the profile's dockerd: a pod with
/// imagePullPolicy Never runs it as built.
fn docker_build_runs_in_pod(x: &mut Ctx) -> Result<()> {
    let dir = TempDir::new()?;
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {IMAGE}\nRUN echo built-by-docker > /built.txt\n\
             CMD [\"sh\", \"-c\", \"cat /built.txt; exec sleep 3600\"]\n"
        ),
    )?;
    let bin = rkube_e2e::rkube_bin()?;
    let script = format!(
        "eval \"$('{}' docker-env --profile '{}')\" && \
         DOCKER_BUILDKIT=0 docker build -q -t e2e.local/built:1 '{}'",
        bin.display(),
        x.c.name(),
        dir.path().display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("RKUBE_HOME", x.c.home())
        .env_remove("DOCKER_HOST")
        .output()?;
    ensure!(out.status.success(), "docker build: {}", describe(&out));
    let mut c = json!({"name": "main", "image": "e2e.local/built:1",
                       "imagePullPolicy": "Never"});
    c["resources"] = json!({});
    apply(&x.c, &[pod("built", json!({"containers": [c]}))])?;
    x.c.wait_pod_ready("built", START)?;
    let logs = kubectl(&x.c, &["logs", "built"])?;
    check_pod(&x.c, "built", logs == "built-by-docker\n", || {
        format!("kubectl logs built = {logs:?}")
    })?;
    kubectl(&x.c, &["delete", "pod", "built", "--grace-period=1"])?;
    Ok(())
}

fn delete_tears_pods_down(x: &mut Ctx) -> Result<()> {
    let out = x.c.rkube(&["delete", "--profile", x.c.name()]);
    ensure!(out.status.success(), "rkube delete: {}", describe(&out));
    let profile = x.c.profile_dir().to_string_lossy().into_owned();
    let mut left = (Vec::new(), Vec::new());
    let clean = eventually(Duration::from_secs(15), || {
        // Namespaces made during the test with nothing left inside.
        let netns: Vec<String> = netns_names()
            .into_iter()
            .filter(|ns| !x.netns_before.contains(ns))
            .filter(|ns| {
                Command::new("ip")
                    .args(["netns", "pids", ns])
                    .output()
                    .is_ok_and(|o| o.stdout.is_empty())
            })
            .collect();
        left = (netns, processes_mentioning(&profile));
        left.0.is_empty() && left.1.is_empty()
    });
    ensure!(
        clean,
        "after rkube delete, the pods' sandboxes were not torn down (their IPs will be \
         handed out again and collide):\n  network namespaces: {:?}\n  processes: {:#?}",
        left.0,
        left.1
    );
    Ok(())
}

// ---- registry pulls -------------------------------------------------------

/// The loopback registries of the run and what was pushed to them.
struct Registries {
    /// Anonymous registry: `e2e/busybox:1` and `library/busybox:latest`
    /// (the docker.io mirror).
    open: Registry,
    /// Registry behind basic auth: `private/busybox:1`.
    auth: Registry,
    /// Manifest digest of `e2e/busybox:1`.
    digest: String,
}

const REG_USER: &str = "e2e";
const REG_PASSWORD: &str = "s3cret-pull";

/// Starts both registries and pushes the busybox test image with skopeo.
fn start_registries() -> Result<Registries> {
    let dir = TempDir::new()?;
    let archive = dir.path().join("busybox.tar");
    rkube_image::write_busybox_archive(&archive, IMAGE, Path::new("/usr/bin/busybox"))
        .context("write busybox archive (is busybox-static installed?)")?;
    let open = Registry::start(None).context("start the anonymous registry")?;
    let digest = open.push(&archive, "e2e/busybox:1")?;
    open.push(&archive, "library/busybox:latest")?;
    let auth =
        Registry::start(Some((REG_USER, REG_PASSWORD))).context("start the basic-auth registry")?;
    auth.push(&archive, "private/busybox:1")?;
    Ok(Registries { open, auth, digest })
}

fn registries(x: &Ctx) -> Result<&Registries> {
    x.reg
        .as_ref()
        .map(|r| &**r)
        .map_err(|e| anyhow::anyhow!("no loopback registry: {e}"))
}

/// A pod running `image` that prints a line and sleeps.
fn pulling_pod(name: &str, image: &str, policy: &str) -> Value {
    let mut c = container("main", "echo pulled; exec sleep 3600");
    c["image"] = json!(image);
    c["imagePullPolicy"] = json!(policy);
    pod(name, json!({"containers": [c]}))
}

/// Waits until the pod runs and `kubectl logs` shows its line.
fn wait_pulled(c: &Cluster, name: &str) -> Result<Value> {
    let p = c.wait_pod_ready(name, START)?;
    let logs = kubectl(c, &["logs", name])?;
    check_pod(c, name, logs == "pulled\n", || {
        format!("kubectl logs {name} = {logs:?}")
    })?;
    Ok(p)
}

/// Waits until the container waits for its image with one of `reasons`;
/// returns that reason and its message.
fn wait_pull_failure(c: &Cluster, name: &str, reasons: &[&str]) -> Result<(String, String)> {
    let p = c.wait_pod(name, &format!("waiting with {reasons:?}"), START, |p| {
        container_status(p, "main", false)
            .and_then(|s| s["state"]["waiting"]["reason"].as_str())
            .is_some_and(|r| reasons.contains(&r))
    })?;
    let w = &container_status(&p, "main", false).expect("checked")["state"]["waiting"];
    Ok((
        w["reason"].as_str().unwrap_or("").to_string(),
        w["message"].as_str().unwrap_or("").to_string(),
    ))
}

fn pull_by_tag(x: &mut Ctx) -> Result<()> {
    let image = format!("{}/e2e/busybox:1", registries(x)?.open.host());
    apply(&x.c, &[pulling_pod("by-tag", &image, "Always")])?;
    let p = wait_pulled(&x.c, "by-tag")?;
    let st = container_status(&p, "main", false).expect("ready pod has a status");
    let digest = &registries(x)?.digest;
    ensure!(
        st["imageID"]
            .as_str()
            .unwrap_or("")
            .contains(digest.as_str()),
        "imageID {} does not name the pushed manifest {digest}",
        st["imageID"]
    );
    Ok(())
}

fn pull_by_digest(x: &mut Ctx) -> Result<()> {
    let r = registries(x)?;
    let image = format!("{}/e2e/busybox@{}", r.open.host(), r.digest);
    apply(&x.c, &[pulling_pod("by-digest", &image, "IfNotPresent")])?;
    wait_pulled(&x.c, "by-digest")?;
    Ok(())
}

fn pull_with_pull_secret(x: &mut Ctx) -> Result<()> {
    let host = registries(x)?.auth.host();
    let image = format!("{host}/private/busybox:1");
    // Without credentials the registry says no.
    apply(&x.c, &[pulling_pod("no-secret", &image, "Always")])?;
    let (reason, msg) =
        wait_pull_failure(&x.c, "no-secret", &["ErrImagePull", "ImagePullBackOff"])?;
    ensure!(
        {
            // Registries answer 401 Unauthorized; dockerd words it as
            // "no basic auth credentials".
            let m = msg.to_lowercase();
            m.contains("authorized") || m.contains("401") || m.contains("auth credentials")
        },
        "{reason} without a pull secret does not carry the registry's refusal: {msg:?}"
    );
    kubectl(
        &x.c,
        &[
            "create",
            "secret",
            "docker-registry",
            "regcred",
            &format!("--docker-server={host}"),
            &format!("--docker-username={REG_USER}"),
            &format!("--docker-password={REG_PASSWORD}"),
        ],
    )?;
    let mut p = pulling_pod("with-secret", &image, "Always");
    p["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    apply(&x.c, &[p])?;
    wait_pulled(&x.c, "with-secret")?;
    kubectl(&x.c, &["delete", "pod", "no-secret", "--wait=false"])?;
    Ok(())
}

fn missing_image_backs_off(x: &mut Ctx) -> Result<()> {
    let image = format!("{}/e2e/missing:1", registries(x)?.open.host());
    apply(&x.c, &[pulling_pod("missing", &image, "IfNotPresent")])?;
    // ErrImagePull lasts only until the first back-off starts, so either
    // reason may be the first one seen; the back-off message names the
    // ErrImagePull it follows.
    let (_, first) = wait_pull_failure(&x.c, "missing", &["ErrImagePull", "ImagePullBackOff"])?;
    let (_, later) = wait_pull_failure(&x.c, "missing", &["ImagePullBackOff"])?;
    ensure!(
        later.contains("ErrImagePull"),
        "ImagePullBackOff message does not name the ErrImagePull it follows: {later:?}"
    );
    for msg in [&first, &later] {
        ensure!(
            msg.contains("e2e/missing") && msg.to_lowercase().contains("unknown"),
            "the pull failure does not carry the registry's message (manifest unknown): {msg:?}"
        );
    }
    kubectl(&x.c, &["delete", "pod", "missing", "--wait=false"])?;
    Ok(())
}

fn mirror_serves_docker_hub_image(x: &mut Ctx) -> Result<()> {
    registries(x)?;
    apply(&x.c, &[pulling_pod("mirrored", "busybox", "Always")])?;
    wait_pulled(&x.c, "mirrored")?;
    Ok(())
}

// ---- the test -------------------------------------------------------------

type Step = rkube_e2e::scenario::Step<Ctx>;

#[test]
fn pods_on_every_runtime() {
    // A node runs containers, mounts and network namespaces: it needs root.
    // Not a skip: without root this test fails and says so.
    assert!(
        is_root(),
        "pods_on_every_runtime needs root (containers, mounts, network namespaces); run the suite as root"
    );
    // One cluster with a node at a time: the runtimes run one after another.
    // RKUBE_E2E_RUNTIMES=cri-o/runc,... narrows a developer's run; CI runs all.
    let only = std::env::var("RKUBE_E2E_RUNTIMES").unwrap_or_default();
    // The registries serve every cluster: the bundled runtime pulls from
    // them directly, and every runtime has the anonymous one as its
    // mirror-only docker.io mirror (so nothing is pulled off this machine).
    let reg = start_registries()
        .map(Rc::new)
        .map_err(|e| format!("{e:#}"));
    let mut failed = Vec::new();
    for rt in RUNTIMES
        .iter()
        .filter(|rt| only.is_empty() || only.split(',').any(|o| o == rt.label))
    {
        failed.extend(
            run_scenarios(rt, reg.clone())
                .into_iter()
                .map(|f| format!("[{}] {f}", rt.label)),
        );
    }
    assert!(
        failed.is_empty(),
        "failed scenarios (details above):\n- {}",
        failed.join("\n- ")
    );
}

/// Starts a cluster on `rt`, runs every scenario, and returns the names of
/// those that failed (a failed setup step counts as one failure).
fn run_scenarios(rt: &'static Runtime, reg: Result<Rc<Registries>, String>) -> Vec<String> {
    let begin = Instant::now();
    let netns_before = netns_names();
    let mirror = match &reg {
        Ok(r) => format!(
            "--registry-mirror=docker.io=http://{},mirror-only",
            r.open.host()
        ),
        // A mirror no one listens on: still nothing leaves the machine.
        Err(_) => "--registry-mirror=docker.io=http://127.0.0.1:1,mirror-only".to_string(),
    };
    let mut args = rt.args.to_vec();
    args.push(&mirror);
    let c = match Cluster::start_with("pods", &args) {
        Ok(c) => c,
        Err(e) => return vec![format!("rkube start {}: {e:#}", rt.args.join(" "))],
    };
    let mut x = Ctx {
        c,
        hostdir: tempfile::Builder::new()
            .prefix("rkube-e2e-hostpath-")
            .tempdir()
            .unwrap(),
        cm_updated: None,
        created: None,
        netns_before,
        rt,
        reg,
    };
    eprintln!("[pods] cluster started in {:?}", begin.elapsed());

    // Without these nothing else can work: stop at the first failure.
    let setup: &[(&str, Step)] = &[
        ("node Ready with the runtime", node_ready_with_runtime),
        ("rkube image load busybox", load_busybox_image),
        ("create the scenario pods", create_scenario_pods),
    ];
    for (name, step) in setup {
        let t = Instant::now();
        if let Err(e) = run_step(&mut x, *step) {
            eprintln!("[pods {}] FAIL setup {name}:\n{e}\n", rt.label);
            let _ = x.c.rkube(&["delete", "--profile", x.c.name()]);
            return vec![format!("setup step {name:?}")];
        }
        eprintln!("[pods {}] ok   {name} ({:?})", rt.label, t.elapsed());
    }

    let mut steps: Vec<(&str, Step)> = vec![
        (
            "kubectl logs shows command output",
            logs_show_command_output,
        ),
        (
            "failed container exit code in status",
            failed_container_exit_code,
        ),
        (
            "kubectl exec output and exit code",
            exec_output_and_exit_code,
        ),
        (
            "service account token mounted",
            service_account_token_mounted,
        ),
        (
            "KUBERNETES_SERVICE_HOST/PORT in env",
            kubernetes_service_env,
        ),
        (
            "env and volumes from ConfigMap and Secret",
            env_and_volumes_from_configmap_and_secret,
        ),
        (
            "Secret stringData is stored as data",
            secret_string_data_becomes_data,
        ),
        ("init containers run in order", init_containers_run_in_order),
        ("readiness probe gates Ready", readiness_probe_gates_ready),
        (
            "liveness probe restarts the container",
            liveness_probe_restarts,
        ),
        (
            "crash loop: restartCount grows, CrashLoopBackOff",
            crash_loop_backoff,
        ),
        (
            "kubectl logs --previous",
            logs_previous_of_crashed_container,
        ),
        ("kubectl port-forward to httpd", port_forward_to_httpd),
        ("pod-to-pod HTTP by pod IP", pod_to_pod_http),
        ("host-to-pod HTTP by pod IP", host_to_pod_http),
        ("kubectl cp both ways", kubectl_cp_both_ways),
        (
            "ConfigMap update reaches the volume",
            configmap_update_reaches_volume,
        ),
        (
            "graceful delete: preStop and grace period",
            graceful_delete_runs_prestop,
        ),
        ("20 pods applied at once reach Running", twenty_pods_at_once),
        (
            "kill -9 and start: same containers",
            kill9_keeps_running_containers,
        ),
        ("rkube delete tears the pods down", delete_tears_pods_down),
    ];
    let at = steps.len() - 2; // before kill -9 and delete
    steps.insert(
        at,
        (
            "docker.io mirror serves image: busybox (pull Always)",
            mirror_serves_docker_hub_image,
        ),
    );
    // The loopback-registry pulls run where rkube picks the endpoint (the
    // bundled cri-o, and the dockershim in front of dockerd); containerd's
    // own pulls are not exercised by these steps.
    if rt.scheme == "rkube-cri-o://" || rt.scheme == "docker://" {
        let at = steps.len() - 2;
        for step in [
            ("loopback registry: pull by tag", pull_by_tag as Step),
            ("loopback registry: pull by digest", pull_by_digest),
            (
                "basic-auth registry with an imagePullSecret",
                pull_with_pull_secret,
            ),
            (
                "missing image: ErrImagePull, ImagePullBackOff",
                missing_image_backs_off,
            ),
        ]
        .into_iter()
        .rev()
        {
            steps.insert(at, step);
        }
    }
    if rt.label == "cri-o/runc" || rt.label == "docker" {
        let at = steps.len() - 2; // before kill -9 and delete
        steps.insert(
            at,
            (
                "RuntimeClass crun runs a pod on crun",
                runtime_class_picks_crun,
            ),
        );
    }
    if rt.label == "docker" {
        let at = steps.len() - 2;
        steps.insert(
            at,
            (
                "docker-env + docker build: the image runs in a pod",
                docker_build_runs_in_pod,
            ),
        );
    }
    let mut failed = Vec::new();
    for (name, step) in &steps {
        let t = Instant::now();
        match run_step(&mut x, *step) {
            Ok(()) => eprintln!("[pods {}] ok   {name} ({:?})", rt.label, t.elapsed()),
            Err(e) => {
                eprintln!(
                    "[pods {}] FAIL {name} ({:?}):\n{e}\n",
                    rt.label,
                    t.elapsed()
                );
                failed.push(name.to_string());
            }
        }
    }
    eprintln!(
        "[pods {}] {} of {} scenarios passed in {:?}",
        rt.label,
        steps.len() - failed.len(),
        steps.len(),
        begin.elapsed()
    );
    failed
}
