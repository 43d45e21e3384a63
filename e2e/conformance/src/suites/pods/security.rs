//! Security contexts (user, group, read-only root, privileged, privilege
//! escalation) and sysctls.

use anyhow::{bail, ensure, Result};
use serde_json::{json, Value};

use super::{uid, wait_finished};
use crate::conformance;
use crate::ctx::{phase, pod, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Security Context, runAsUser=65534", run_as_user),
        conformance!(
            "Security Context, readOnlyRootFilesystem=false.",
            writable_root
        ),
        conformance!("Security Context, privileged=false.", unprivileged),
        conformance!(
            "Security Context, allowPrivilegeEscalation=false.",
            no_privilege_escalation
        ),
        conformance!(
            "Security Context, test RunAsGroup at pod level",
            run_as_group_pod
        ),
        conformance!(
            "Security Context, test RunAsGroup at container level",
            run_as_group_container
        ),
        conformance!("Sysctl, test sysctls", sysctls),
        conformance!("Sysctls, reject invalid sysctls", invalid_sysctls),
    ]
}

/// A never-restarted busybox pod running `cmd` with container security
/// context `sc`; waits until it succeeds and returns its logs.
async fn run_sc_pod(c: &Ctx, name: &str, cmd: &str, sc: Value) -> Result<String> {
    let p = pod(
        name,
        json!({
            "restartPolicy": "Never",
            "containers": [{
                "name": name,
                "image": c.env.images.busybox,
                "command": ["sh", "-c", cmd],
                "securityContext": sc,
            }],
        }),
    );
    c.pod_output(p, None).await
}

async fn run_as_user(c: Ctx) -> Result<()> {
    let name = format!("busybox-user-65534-{}", uid());
    let out = run_sc_pod(&c, &name, "id -u", json!({"runAsUser": 65534})).await?;
    ensure!(out.trim() == "65534", "id -u printed {out:?}, want 65534");
    Ok(())
}

async fn writable_root(c: Ctx) -> Result<()> {
    let name = format!("busybox-readonly-false-{}", uid());
    run_sc_pod(
        &c,
        &name,
        "touch checkfile",
        json!({"readOnlyRootFilesystem": false}),
    )
    .await?;
    Ok(())
}

async fn unprivileged(c: Ctx) -> Result<()> {
    let name = format!("busybox-privileged-false-{}", uid());
    let out = run_sc_pod(
        &c,
        &name,
        "ip link add dummy0 type dummy || true",
        json!({"privileged": false}),
    )
    .await?;
    ensure!(
        out.contains("Operation not permitted"),
        "an unprivileged container could add a link: {out:?}"
    );
    Ok(())
}

async fn no_privilege_escalation(c: Ctx) -> Result<()> {
    // Upstream runs a setuid-root program that prints its effective uid;
    // here the same guarantee is read from the kernel: no_new_privs is set
    // and the effective uid stays the one asked for.
    let name = format!("alpine-nnp-false-{}", uid());
    let out = run_sc_pod(
        &c,
        &name,
        "echo \"Effective uid: $(id -u)\"; grep NoNewPrivs /proc/self/status",
        json!({"runAsUser": 1000, "allowPrivilegeEscalation": false}),
    )
    .await?;
    ensure!(
        out.contains("Effective uid: 1000"),
        "unexpected output {out:?}"
    );
    ensure!(
        out.lines()
            .any(|l| l.starts_with("NoNewPrivs:") && l.trim_end().ends_with('1')),
        "no_new_privs is not set: {out:?}"
    );
    Ok(())
}

async fn run_as_group_pod(c: Ctx) -> Result<()> {
    let name = format!("security-context-{}", uid());
    let p = pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1001, "runAsGroup": 2002},
            "containers": [{"name": "test-container", "image": c.env.images.busybox, "command": ["sh", "-c", "id"]}],
        }),
    );
    c.expect_output(p, None, &["uid=1001 gid=2002"]).await?;
    Ok(())
}

async fn run_as_group_container(c: Ctx) -> Result<()> {
    let name = format!("security-context-{}", uid());
    let p = pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "containers": [{
                "name": "test-container",
                "image": c.env.images.busybox,
                "command": ["sh", "-c", "id"],
                "securityContext": {"runAsUser": 1001, "runAsGroup": 2002},
            }],
        }),
    );
    c.expect_output(p, None, &["uid=1001 gid=2002"]).await?;
    Ok(())
}

fn sysctl_pod(c: &Ctx, sysctls: Value) -> (String, Value) {
    let name = format!("sysctl-{}", uid());
    let p = pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "securityContext": {"sysctls": sysctls},
            "containers": [{
                "name": "test-container",
                "image": c.env.images.busybox,
                // Upstream runs /bin/sysctl; the busybox image has the
                // applet without that link.
                "command": ["/bin/busybox", "sysctl", "kernel.shm_rmid_forced"],
            }],
        }),
    );
    (name, p)
}

async fn sysctls(c: Ctx) -> Result<()> {
    let (name, p) = sysctl_pod(
        &c,
        json!([{"name": "kernel.shm_rmid_forced", "value": "1"}]),
    );
    c.create_pod(p).await?;
    let p = wait_finished(&c, &name).await?;
    ensure!(
        phase(&p) == "Succeeded",
        "pod ended {}: {:?}",
        phase(&p),
        p.status
    );
    let logs = c.logs(&name, None).await?;
    ensure!(
        logs.contains("kernel.shm_rmid_forced = 1"),
        "sysctl not applied: {logs:?}"
    );
    Ok(())
}

async fn invalid_sysctls(c: Ctx) -> Result<()> {
    let (_, p) = sysctl_pod(
        &c,
        json!([
            {"name": "foo-", "value": "bar"},
            {"name": "kernel.shmmax", "value": "100000000"},
            {"name": "safe-and-unsafe", "value": "100000000"},
            {"name": "bar..", "value": "42"},
        ]),
    );
    let err = match c.create_pod(p).await {
        Ok(_) => bail!("a pod with invalid sysctls was created"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains(r#"Invalid value: "foo-""#),
        "error lacks foo-: {err}"
    );
    ensure!(
        err.contains(r#"Invalid value: "bar..""#),
        "error lacks bar..: {err}"
    );
    ensure!(
        !err.contains("safe-and-unsafe"),
        "error names safe-and-unsafe: {err}"
    );
    ensure!(
        !err.contains("kernel.shmmax"),
        "error names kernel.shmmax: {err}"
    );
    Ok(())
}
