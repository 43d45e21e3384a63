//! subPaths of atomic-writer volumes (secret, configMap, downward API,
//! projected): a container reads one file of the volume mounted by subPath.

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use serde_json::{json, Value};

use crate::conformance;
use crate::ctx::{pod, suffix, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!(
            "SubPath: Reading content from a secret volume.",
            secret_subpath
        ),
        conformance!(
            "SubPath: Reading content from a configmap volume.",
            configmap_subpath
        ),
        conformance!(
            "SubPath: Reading content from a downwardAPI volume.",
            downward_subpath
        ),
        conformance!(
            "SubPath: Reading content from a projected volume.",
            projected_subpath
        ),
    ]
}

/// Where the volume (or its subPath) is mounted.
const VOLUME_PATH: &str = "/test-volume";

/// How long mounttest keeps reading (upstream's retryDuration).
const RETRY_SECS: u32 = 20;

/// Upstream's BeforeEach: secret my-secret and configMap my-configmap.
async fn setup(c: &Ctx) -> Result<()> {
    let s = Secret {
        metadata: ObjectMeta {
            name: Some("my-secret".into()),
            ..Default::default()
        },
        data: Some(
            [(
                "secret-key".to_string(),
                ByteString(b"secret-value".to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    c.api::<Secret>()
        .create(&PostParams::default(), &s)
        .await
        .context("create secret my-secret")?;
    let m = ConfigMap {
        metadata: ObjectMeta {
            name: Some("my-configmap".into()),
            ..Default::default()
        },
        data: Some([("configmap-key".to_string(), "configmap-value".to_string())].into()),
        ..Default::default()
    };
    c.api::<ConfigMap>()
        .create(&PostParams::default(), &m)
        .await
        .context("create configmap my-configmap")?;
    Ok(())
}

/// Upstream's SubpathTestPod once unused containers are dropped: one
/// agnhost container mounting `subpath` of `source` at `mount_path`
/// (plus an emptyDir probe volume), reading `mount_path` in a loop.
fn subpath_pod(
    c: &Ctx,
    subpath: &str,
    volume_type: &str,
    source: Value,
    mount_path: &str,
) -> (String, Value) {
    let sfx = format!(
        "{}-{}",
        volume_type
            .to_lowercase()
            .replace(|ch: char| !ch.is_ascii_alphanumeric(), "-"),
        &suffix()[..4]
    );
    let name = format!("pod-subpath-test-{sfx}");
    let mut volume = json!({"name": "test-volume"});
    if let (Some(v), Some(s)) = (volume.as_object_mut(), source.as_object()) {
        for (k, val) in s {
            v.insert(k.clone(), val.clone());
        }
    }
    let p = pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"seLinuxOptions": {"level": "s0:c0,c1"}},
            "containers": [{
                "name": format!("test-container-subpath-{sfx}"),
                "image": c.env.images.agnhost,
                "args": [
                    "mounttest",
                    format!("--file_content_in_loop={mount_path}"),
                    format!("--retry_time={RETRY_SECS}"),
                ],
                "volumeMounts": [
                    {"name": "test-volume", "mountPath": mount_path, "subPath": subpath},
                    {"name": "liveness-probe-volume", "mountPath": "/probe-volume"},
                ],
            }],
            "volumes": [volume, {"name": "liveness-probe-volume", "emptyDir": {}}],
        }),
    );
    (name, p)
}

/// Runs the pod to completion, checks its output holds `contents`, then
/// deletes it.
async fn basic_subpath(c: &Ctx, name: &str, p: Value, contents: &str) -> Result<()> {
    c.expect_output(p, None, &[contents]).await?;
    c.delete_pod(name).await
}

async fn secret_subpath(c: Ctx) -> Result<()> {
    setup(&c).await?;
    let (name, p) = subpath_pod(
        &c,
        "secret-key",
        "secret",
        json!({"secret": {"secretName": "my-secret"}}),
        VOLUME_PATH,
    );
    basic_subpath(&c, &name, p, "secret-value").await
}

async fn configmap_subpath(c: Ctx) -> Result<()> {
    setup(&c).await?;
    let (name, p) = subpath_pod(
        &c,
        "configmap-key",
        "configmap",
        json!({"configMap": {"name": "my-configmap"}}),
        VOLUME_PATH,
    );
    basic_subpath(&c, &name, p, "configmap-value")
        .await
        .context("mounted at a directory")?;
    configmap_subpath_existing_file(&c)
        .await
        .context("mounted over an existing file")
}

/// Upstream's second configMap subPath test (same testname): the key
/// mounted over an existing file of the image, /etc/resolv.conf.
async fn configmap_subpath_existing_file(c: &Ctx) -> Result<()> {
    let (name, p) = subpath_pod(
        c,
        "configmap-key",
        "configmap",
        json!({"configMap": {"name": "my-configmap"}}),
        "/etc/resolv.conf",
    );
    basic_subpath(c, &name, p, "configmap-value").await
}

async fn downward_subpath(c: Ctx) -> Result<()> {
    setup(&c).await?;
    let (name, p) = subpath_pod(
        &c,
        "downward/podname",
        "downwardAPI",
        json!({"downwardAPI": {"items": [
            {"path": "downward/podname", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        ]}}),
        VOLUME_PATH,
    );
    let pod_name = name.clone();
    basic_subpath(&c, &name, p, &pod_name).await
}

async fn projected_subpath(c: Ctx) -> Result<()> {
    setup(&c).await?;
    let (name, p) = subpath_pod(
        &c,
        "projected/configmap-key",
        "projected",
        json!({"projected": {"sources": [{"configMap": {
            "name": "my-configmap",
            "items": [{"path": "projected/configmap-key", "key": "configmap-key"}],
        }}]}}),
        VOLUME_PATH,
    );
    basic_subpath(&c, &name, p, "configmap-value").await
}
