//! Container runtime and node agent behaviour: restart policies, exit
//! states, termination messages, logs, read-only root, hostAliases and the
//! managed /etc/hosts.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::core::v1::{ContainerState, Pod};
use serde_json::{json, Value};

use super::{container_status, uid, wait_logs, wait_pod_until};
use crate::conformance;
use crate::ctx::{phase, pod, ready, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Container Runtime, Restart Policy, Pod Phases", restart_policies),
        conformance!("Container Runtime, TerminationMessagePath, non-root user and non-default path", termination_message_path),
        conformance!("Container Runtime, TerminationMessage, from container's log output of failing container", termination_from_logs),
        conformance!("Container Runtime, TerminationMessage, from log output of succeeding container", termination_empty_on_success),
        conformance!("Container Runtime, TerminationMessage, from file of succeeding container", termination_from_file),
        conformance!("Kubelet, log output, default", log_output),
        conformance!("Kubelet, failed pod, terminated reason", failed_terminated_reason),
        conformance!("Kubelet, failed pod, delete", failed_delete),
        conformance!("Kubelet, pod with read only root file system", read_only_root),
        conformance!("Kubelet, hostAliases", host_aliases),
        conformance!("Kubelet, managed etc hosts", managed_etc_hosts),
    ]
}

/// Upstream's ContainerStatusRetryTimeout.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

fn state_name(s: Option<&ContainerState>) -> &'static str {
    match s {
        Some(s) if s.running.is_some() => "Running",
        Some(s) if s.terminated.is_some() => "Terminated",
        Some(s) if s.waiting.is_some() => "Waiting",
        _ => "Unknown",
    }
}

/// Polls until `get(pod)` equals `want`, for up to the status timeout.
async fn eventually_eq<T, F>(c: &Ctx, name: &str, what: &str, want: T, get: F) -> Result<Pod>
where
    T: PartialEq + std::fmt::Debug,
    F: Fn(&Pod) -> T,
{
    let deadline = Instant::now() + STATUS_TIMEOUT;
    loop {
        let p = c.pods().get(name).await?;
        let v = get(&p);
        if v == want {
            return Ok(p);
        }
        if Instant::now() >= deadline {
            bail!("pod {name}: {what} is {v:?}, want {want:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn restart_policies(c: Ctx) -> Result<()> {
    // Fails on its 1st run, succeeds on its 2nd, then runs forever.
    let script = "\nf=/restart-count/restartCount\ncount=$(echo 'hello' >> $f ; wc -l $f | awk {'print $1'})\nif [ $count -eq 1 ]; then\n\texit 1\nfi\nif [ $count -eq 2 ]; then\n\texit 0\nfi\nwhile true; do sleep 1; done\n";
    let cases = [
        ("terminate-cmd-rpa", "Always", "Running", "Running", 2, true),
        (
            "terminate-cmd-rpof",
            "OnFailure",
            "Succeeded",
            "Terminated",
            1,
            false,
        ),
        (
            "terminate-cmd-rpn",
            "Never",
            "Failed",
            "Terminated",
            0,
            false,
        ),
    ];
    for (cname, policy, want_phase, want_state, want_restarts, want_ready) in cases {
        let name = format!("{cname}-{}", uid());
        c.create_pod(pod(
            &name,
            json!({
                "restartPolicy": policy,
                "containers": [{
                    "name": cname,
                    "image": c.env.images.busybox,
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "restart-count", "mountPath": "/restart-count"}],
                }],
                "volumes": [{"name": "restart-count", "emptyDir": {"medium": "Memory"}}],
            }),
        ))
        .await?;
        let cn = cname.to_string();
        eventually_eq(
            &c,
            &name,
            &format!("{cname} restartCount"),
            want_restarts,
            |p| container_status(p, &cn).map_or(-1, |s| s.restart_count),
        )
        .await?;
        eventually_eq(
            &c,
            &name,
            &format!("{cname} phase"),
            want_phase.to_string(),
            |p| phase(p).to_string(),
        )
        .await?;
        let p = c.pods().get(&name).await?;
        ensure!(
            ready(&p) == want_ready,
            "{cname}: Ready is {}, want {want_ready}",
            ready(&p)
        );
        let st = container_status(&p, cname).context("no container status")?;
        ensure!(
            state_name(st.state.as_ref()) == want_state,
            "{cname}: state is {}, want {want_state}",
            state_name(st.state.as_ref())
        );
        c.delete_pod(&name).await?;
    }
    Ok(())
}

/// Upstream's matchTerminationMessage: run `container` (never restarted)
/// until `want_phase`, then compare the terminated state's message.
async fn match_termination_message(
    c: &Ctx,
    mut container: Value,
    want_phase: &str,
    want: &str,
) -> Result<()> {
    container["name"] = json!("termination-message-container");
    container["image"] = json!(c.env.images.busybox);
    let name = format!("termination-message-{}", uid());
    c.create_pod(pod(
        &name,
        json!({"restartPolicy": "Never", "containers": [container]}),
    ))
    .await?;
    eventually_eq(c, &name, "phase", want_phase.to_string(), |p| {
        phase(p).to_string()
    })
    .await?;
    let p = c.pods().get(&name).await?;
    let st =
        container_status(&p, "termination-message-container").context("no container status")?;
    let t = st
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .context("container is not terminated")?;
    let msg = t.message.clone().unwrap_or_default();
    ensure!(msg == want, "termination message is {msg:?}, want {want:?}");
    c.delete_pod(&name).await
}

async fn termination_message_path(c: Ctx) -> Result<()> {
    let ct = json!({
        "command": ["/bin/sh", "-c"],
        "args": ["/bin/echo -n DONE > /dev/termination-custom-log"],
        "terminationMessagePath": "/dev/termination-custom-log",
        "securityContext": {"runAsUser": 1000},
    });
    match_termination_message(&c, ct, "Succeeded", "DONE").await
}

async fn termination_from_logs(c: Ctx) -> Result<()> {
    let ct = json!({
        "command": ["/bin/sh", "-c"],
        "args": ["/bin/echo -n DONE; /bin/false"],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    match_termination_message(&c, ct, "Failed", "DONE").await
}

async fn termination_empty_on_success(c: Ctx) -> Result<()> {
    let ct = json!({
        "command": ["/bin/sh", "-c"],
        "args": ["/bin/echo -n DONE; /bin/true"],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    match_termination_message(&c, ct, "Succeeded", "").await
}

async fn termination_from_file(c: Ctx) -> Result<()> {
    let ct = json!({
        "command": ["/bin/sh", "-c"],
        "args": ["/bin/echo -n OK > /dev/termination-log"],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    match_termination_message(&c, ct, "Succeeded", "OK").await
}

async fn log_output(c: Ctx) -> Result<()> {
    let name = format!("busybox-scheduling-{}", uid());
    c.create_pod(pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "containers": [{
                "name": name,
                "image": c.env.images.busybox,
                "command": ["sh", "-c", "echo 'Hello World' ; sleep 240"],
            }],
        }),
    ))
    .await?;
    wait_logs(
        &c,
        &name,
        None,
        Duration::from_secs(60) + c.env.pod_start,
        |l| l == "Hello World\n",
    )
    .await?;
    Ok(())
}

async fn create_bin_false(c: &Ctx) -> Result<String> {
    let name = format!("bin-false{}", uid());
    c.create_pod(pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "containers": [{"name": name, "image": c.env.images.busybox, "command": ["/bin/false"]}],
        }),
    ))
    .await?;
    Ok(name)
}

async fn failed_terminated_reason(c: Ctx) -> Result<()> {
    let name = create_bin_false(&c).await?;
    wait_pod_until(&c, &name, "has a terminated reason", c.env.pod_start, |p| {
        let sts = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        let Some(sts) = sts.filter(|v| v.len() == 1) else {
            return Ok(false);
        };
        let t = sts[0].state.as_ref().and_then(|s| s.terminated.as_ref());
        Ok(t.is_some_and(|t| t.reason.as_deref().is_some_and(|r| !r.is_empty())))
    })
    .await?;
    Ok(())
}

async fn failed_delete(c: Ctx) -> Result<()> {
    let name = create_bin_false(&c).await?;
    c.pods()
        .delete(&name, &Default::default())
        .await
        .context("delete the failed pod")?;
    Ok(())
}

async fn read_only_root(c: Ctx) -> Result<()> {
    let name = format!("busybox-readonly-fs{}", uid());
    c.create_pod(pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "containers": [{
                "name": name,
                "image": c.env.images.busybox,
                "command": ["/bin/sh", "-c", "echo test > /file; sleep 240"],
                "securityContext": {"readOnlyRootFilesystem": true},
            }],
        }),
    ))
    .await?;
    wait_logs(
        &c,
        &name,
        None,
        Duration::from_secs(60) + c.env.pod_start,
        |l| l == "/bin/sh: can't create /file: Read-only file system\n",
    )
    .await?;
    Ok(())
}

async fn host_aliases(c: Ctx) -> Result<()> {
    let name = format!("agnhost-host-aliases{}", uid());
    c.create_pod(pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "hostAliases": [{"ip": "123.45.67.89", "hostnames": ["foo", "bar"]}],
            "containers": [{
                "name": name,
                "image": c.env.images.agnhost,
                "command": ["/bin/sh", "-c", "cat /etc/hosts; sleep 6000"],
            }],
        }),
    ))
    .await?;
    wait_logs(
        &c,
        &name,
        None,
        Duration::from_secs(60) + c.env.pod_start,
        |l| l.contains("123.45.67.89\tfoo\tbar"),
    )
    .await?;
    Ok(())
}

const MANAGED_HEADER: &str = "# Kubernetes-managed hosts file.";

async fn assert_managed(c: &Ctx, pod_name: &str, container: &str, managed: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        let hosts = c
            .exec(pod_name, Some(container), &["cat", "/etc/hosts"])
            .await?;
        let original = c
            .exec(pod_name, Some(container), &["cat", "/etc/hosts-original"])
            .await?;
        if !hosts.is_empty() && !original.is_empty() {
            let is = hosts.starts_with(MANAGED_HEADER) && hosts != original;
            if is == managed {
                return Ok(());
            }
        }
        last = hosts;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if managed {
        bail!("/etc/hosts of {pod_name}/{container} should be managed by the node agent; it contains {last:?}");
    }
    bail!("/etc/hosts of {pod_name}/{container} should not be managed by the node agent; it contains {last:?}")
}

async fn managed_etc_hosts(c: Ctx) -> Result<()> {
    let vol = json!([{"name": "host-etc-hosts", "hostPath": {"path": "/etc/hosts", "type": "FileOrCreate"}}]);
    let orig = json!({"name": "host-etc-hosts", "mountPath": "/etc/hosts-original"});
    let over = json!({"name": "host-etc-hosts", "mountPath": "/etc/hosts"});
    let agn = |name: &str, mounts: Value| json!({"name": name, "image": c.env.images.agnhost, "volumeMounts": mounts});
    let mut p = pod(
        "test-pod",
        json!({
            "containers": [
                agn("busybox-1", json!([orig])),
                agn("busybox-2", json!([orig])),
                agn("busybox-3", json!([orig, over])),
            ],
            "volumes": vol,
        }),
    );
    p["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("terminationGracePeriodSeconds");
    c.create_pod(p).await?;
    c.wait_running("test-pod").await?;
    let mut hp = pod(
        "test-host-network-pod",
        json!({
            "hostNetwork": true,
            "securityContext": {},
            "containers": [agn("busybox-1", json!([orig])), agn("busybox-2", json!([orig]))],
            "volumes": vol,
        }),
    );
    hp["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("terminationGracePeriodSeconds");
    c.create_pod(hp).await?;
    c.wait_running("test-host-network-pod").await?;

    assert_managed(&c, "test-pod", "busybox-1", true).await?;
    assert_managed(&c, "test-pod", "busybox-2", true).await?;
    assert_managed(&c, "test-pod", "busybox-3", false).await?;
    assert_managed(&c, "test-host-network-pod", "busybox-1", false).await?;
    assert_managed(&c, "test-host-network-pod", "busybox-2", false).await?;
    Ok(())
}
