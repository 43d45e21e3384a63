//! Variable expansion in volume subpaths (`subPathExpr`): a subpath named
//! from env vars and downward-API annotations, refused when it expands to
//! an absolute path or `..`, usable for writes, and retried by the node
//! agent once the pod is updated so that it expands validly.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};

use super::uid;
use crate::conformance;
use crate::ctx::{phase, pod, wait_for, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!(
            "VolumeSubpathEnvExpansion, subpath expansion",
            subpath_expansion
        ),
        conformance!(
            "VolumeSubpathEnvExpansion, subpath with absolute path",
            subpath_absolute
        ),
        conformance!(
            "VolumeSubpathEnvExpansion, subpath with backticks",
            subpath_dotdot
        ),
        conformance!(
            "VolumeSubpathEnvExpansion, subpath test writes",
            subpath_writes
        ),
        conformance!(
            "VolumeSubpathEnvExpansion, subpath ready from failed state",
            subpath_recovers
        ),
    ]
}

/// Upstream's PodStartShortTimeout.
const SHORT_START: Duration = Duration::from_secs(120);

/// How long a pod whose subpath cannot expand is watched for not running,
/// when its container does not report CreateContainerConfigError first.
const NOT_RUNNING_FOR: Duration = Duration::from_secs(30);

/// Upstream's newPod: a busybox container `dapi-container` with `env`,
/// `mounts` and `command`, an emptyDir `workdir1`, never restarted.
fn expansion_pod(
    c: &Ctx,
    command: Option<Vec<String>>,
    env: Value,
    mounts: Value,
) -> (String, Value) {
    let name = format!("var-expansion-{}", uid());
    let mut ctr = json!({
        "name": "dapi-container",
        "image": c.env.images.busybox,
        "env": env,
        "volumeMounts": mounts,
    });
    if let Some(cmd) = command {
        ctr["command"] = json!(cmd);
    }
    let mut p = pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "containers": [ctr],
            "volumes": [{"name": "workdir1", "emptyDir": {}}],
        }),
    );
    p["metadata"]["labels"] = json!({"name": name});
    (name, p)
}

/// The waiting reason of the pod's first container, if it is waiting.
fn waiting_reason(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

/// Upstream's WaitForPodContainerToFail with CreateContainerConfigError:
/// the pod stays Pending and its container waits with that reason.
async fn wait_config_error(c: &Ctx, name: &str) -> Result<()> {
    let pods = c.pods();
    wait_for(
        &format!("container of pod {name} to wait with CreateContainerConfigError"),
        SHORT_START,
        || async {
            let p = pods.get(name).await?;
            match phase(&p) {
                "Pending" | "" => {}
                other => bail!(
                    "pod {name} was expected to be Pending, but it is {other}: {:?}",
                    p.status
                ),
            }
            Ok((waiting_reason(&p).as_deref() == Some("CreateContainerConfigError")).then_some(()))
        },
    )
    .await
}

/// Upstream's testPodFailSubpath: the container cannot be created.
async fn fail_subpath(c: &Ctx, value: &str) -> Result<()> {
    let (name, p) = expansion_pod(
        c,
        None,
        json!([{"name": "POD_NAME", "value": value}]),
        json!([{"name": "workdir1", "mountPath": "/logscontainer", "subPathExpr": "$(POD_NAME)"}]),
    );
    c.create_pod(p).await?;
    let res = wait_config_error(c, &name).await;
    let del = c.delete_pod(&name).await;
    res?;
    del
}

async fn subpath_expansion(c: Ctx) -> Result<()> {
    let (name, mut p) = expansion_pod(
        &c,
        None,
        json!([]),
        json!([
            {"name": "workdir1", "mountPath": "/logscontainer", "subPathExpr": "$(POD_NAME)"},
            {"name": "workdir1", "mountPath": "/testcontainer"},
        ]),
    );
    let ctr = &mut p["spec"]["containers"][0];
    ctr["env"] = json!([{"name": "POD_NAME", "value": name}]);
    ctr["command"] = json!(["sh", "-c", format!("test -d /testcontainer/{name};echo $?")]);
    let out = c.pod_output(p, None).await?;
    ensure!(
        out.trim() == "0",
        "the subpath {name} is not a directory of the volume: `test -d` printed {:?}",
        out.trim()
    );
    Ok(())
}

async fn subpath_absolute(c: Ctx) -> Result<()> {
    fail_subpath(&c, "/tmp").await
}

async fn subpath_dotdot(c: Ctx) -> Result<()> {
    fail_subpath(&c, "..").await
}

/// The env of the two annotation tests: POD_NAME=foo and ANNOTATION from
/// the pod's annotation `mysubpath`.
fn annotation_env() -> Value {
    json!([
        {"name": "POD_NAME", "value": "foo"},
        {"name": "ANNOTATION", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.annotations['mysubpath']"}}},
    ])
}

/// The mounts of the two annotation tests: the expanded subpath and the
/// whole volume.
fn annotation_mounts() -> Value {
    json!([
        {"name": "workdir1", "mountPath": "/subpath_mount", "subPathExpr": "$(ANNOTATION)/$(POD_NAME)"},
        {"name": "workdir1", "mountPath": "/volume_mount"},
    ])
}

fn tail_forever() -> Option<Vec<String>> {
    Some(vec!["sh".into(), "-c".into(), "tail -f /dev/null".into()])
}

/// Sets annotation `mysubpath` of pod `name` to `value`.
async fn set_subpath_annotation(c: &Ctx, name: &str, value: &str) -> Result<()> {
    c.pods()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"mysubpath": value}}})),
        )
        .await?;
    Ok(())
}

async fn wait_running_short(c: &Ctx, name: &str) -> Result<()> {
    let pods = c.pods();
    wait_for(&format!("pod {name} Running"), SHORT_START, || async {
        let p = pods.get(name).await?;
        match phase(&p) {
            "Running" => Ok(Some(())),
            "Failed" | "Succeeded" => bail!("pod {name} finished: {:?}", p.status),
            _ => Ok(None),
        }
    })
    .await
}

async fn subpath_writes(c: Ctx) -> Result<()> {
    let (name, mut p) = expansion_pod(&c, tail_forever(), annotation_env(), annotation_mounts());
    p["metadata"]["annotations"] = json!({"mysubpath": "mypath"});
    c.create_pod(p).await?;
    wait_running_short(&c, &name).await?;
    c.exec(
        &name,
        None,
        &["/bin/sh", "-c", "touch /volume_mount/mypath/foo/test.log"],
    )
    .await
    .map_err(|e| e.context("expected to be able to write to the subpath"))?;
    c.exec(
        &name,
        None,
        &["/bin/sh", "-c", "test -f /subpath_mount/test.log"],
    )
    .await
    .map_err(|e| e.context("expected the file written in the volume to be in the subpath mount"))?;
    set_subpath_annotation(&c, &name, "mynewpath").await?;
    wait_running_short(&c, &name).await?;
    c.delete_pod(&name).await
}

async fn subpath_recovers(c: Ctx) -> Result<()> {
    let (name, mut p) = expansion_pod(&c, tail_forever(), annotation_env(), annotation_mounts());
    p["metadata"]["annotations"] = json!({"notmysubpath": "mypath"});
    c.create_pod(p).await?;
    // Without the annotation the subpath expands to the absolute "/foo":
    // the pod must not run (upstream waits for Running to time out).
    let pods = c.pods();
    let ran = wait_for(
        &format!("pod {name} to run or to fail to create its container"),
        NOT_RUNNING_FOR,
        || async {
            let p = pods.get(&name).await?;
            if phase(&p) == "Running" {
                return Ok(Some(true));
            }
            Ok(
                (waiting_reason(&p).as_deref() == Some("CreateContainerConfigError"))
                    .then_some(false),
            )
        },
    )
    .await;
    if let Ok(true) = ran {
        bail!("pod {name} runs although its subpath expands to the absolute path /foo");
    }
    set_subpath_annotation(&c, &name, "mypath").await?;
    wait_running_short(&c, &name)
        .await
        .map_err(|e| e.context("after the annotation made the subpath valid"))?;
    c.delete_pod(&name).await
}
