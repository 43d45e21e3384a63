//! Downward API volumes, plain and projected: pod name, file modes,
//! labels and annotations updated live, container resources (and node
//! allocatable when unset); one projected volume of all three sources.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use serde_json::{json, Value};

use super::{
    expect_output, expect_output_regex, mode_line, uid, wait_logs_contain, UPDATE_TIMEOUT,
};
use crate::conformance;
use crate::ctx::{pod, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("DownwardAPI volume, pod name", dv_podname),
        conformance!("DownwardAPI volume, volume mode 0400", dv_default_mode),
        conformance!("DownwardAPI volume, file mode 0400", dv_item_mode),
        conformance!("DownwardAPI volume, update label", dv_labels),
        conformance!("DownwardAPI volume, update annotations", dv_annotations),
        conformance!("DownwardAPI volume, CPU limits", dv_cpu_limit),
        conformance!("DownwardAPI volume, memory limits", dv_memory_limit),
        conformance!("DownwardAPI volume, CPU request", dv_cpu_request),
        conformance!("DownwardAPI volume, memory request", dv_memory_request),
        conformance!(
            "DownwardAPI volume, CPU limit, default node allocatable",
            dv_default_cpu_limit
        ),
        conformance!(
            "DownwardAPI volume, memory limit, default node allocatable",
            dv_default_memory_limit
        ),
        conformance!("Projected Volume, DownwardAPI, pod name", pdv_podname),
        conformance!(
            "Projected Volume, DownwardAPI, volume mode 0400",
            pdv_default_mode
        ),
        conformance!("Projected Volume, DownwardAPI, update labels", pdv_labels),
        conformance!(
            "Projected Volume, DownwardAPI, update annotation",
            pdv_annotations
        ),
        conformance!("Projected Volume, DownwardAPI, CPU limits", pdv_cpu_limit),
        conformance!(
            "Projected Volume, DownwardAPI, memory limits",
            pdv_memory_limit
        ),
        conformance!(
            "Projected Volume, DownwardAPI, CPU request",
            pdv_cpu_request
        ),
        conformance!(
            "Projected Volume, DownwardAPI, memory request",
            pdv_memory_request
        ),
        conformance!(
            "Projected Volume, DownwardAPI, CPU limit, node allocatable",
            pdv_default_cpu_limit
        ),
        conformance!(
            "Projected Volume, DownwardAPI, memory limit, node allocatable",
            pdv_default_memory_limit
        ),
        conformance!("Projected Volume, multiple projections", projected_all),
    ]
}

/// The container every downward API pod runs.
const CONTAINER: &str = "client-container";

/// Upstream's items: the pod name and the client container's resources.
fn items() -> Vec<Value> {
    let resource = |path: &str, res: &str| json!({"path": path, "resourceFieldRef": {"containerName": CONTAINER, "resource": res}});
    vec![
        json!({"path": "podname", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}),
        resource("cpu_limit", "limits.cpu"),
        resource("cpu_request", "requests.cpu"),
        resource("memory_limit", "limits.memory"),
        resource("memory_request", "requests.memory"),
    ]
}

/// The "podinfo" volume with `items`, plain or projected, with an
/// optional default mode.
fn podinfo_volume(projected: bool, items: Vec<Value>, default_mode: Option<u32>) -> Value {
    let mut v = if projected {
        json!({"name": "podinfo", "projected": {"sources": [{"downwardAPI": {"items": items}}]}})
    } else {
        json!({"name": "podinfo", "downwardAPI": {"items": items}})
    };
    if let Some(m) = default_mode {
        if projected {
            v["projected"]["defaultMode"] = json!(m);
        } else {
            v["downwardAPI"]["defaultMode"] = json!(m);
        }
    }
    v
}

/// A pod named `name` whose client container runs mounttest `args` with
/// the podinfo `volume` at /etc/podinfo.
fn podinfo_pod(c: &Ctx, name: &str, volume: Value, args: &[String]) -> Value {
    let mut a = vec!["mounttest".to_string()];
    a.extend(args.iter().cloned());
    pod(
        name,
        json!({
            "restartPolicy": "Never",
            "containers": [{
                "name": CONTAINER,
                "image": c.env.images.agnhost,
                "args": a,
                "volumeMounts": [{"name": "podinfo", "mountPath": "/etc/podinfo"}],
            }],
            "volumes": [volume],
        }),
    )
}

/// The pod's name is in file podname.
async fn podname(c: &Ctx, projected: bool) -> Result<()> {
    let name = format!("downwardapi-volume-{}", uid());
    let p = podinfo_pod(
        c,
        &name,
        podinfo_volume(projected, items(), None),
        &["--file_content=/etc/podinfo/podname".to_string()],
    );
    expect_output(c, p, None, &[format!("{name}\n")]).await?;
    Ok(())
}

/// File podname has mode 0400, from the volume's default mode or the
/// item's own mode.
async fn file_mode(c: &Ctx, projected: bool, item: bool) -> Result<()> {
    let name = format!("downwardapi-volume-{}", uid());
    let mut its = items();
    if item {
        its[0]["mode"] = json!(0o400);
    }
    let volume = podinfo_volume(projected, its, (!item).then_some(0o400));
    let p = podinfo_pod(
        c,
        &name,
        volume,
        &["--file_mode=/etc/podinfo/podname".to_string()],
    );
    expect_output(c, p, None, &[mode_line("/etc/podinfo/podname", 0o400)]).await?;
    Ok(())
}

/// A label (or annotation) change of the running pod shows in its file.
async fn metadata_update(c: &Ctx, projected: bool, labels: bool) -> Result<()> {
    let (name, field, file) = if labels {
        (
            format!("labelsupdate{}", uid()),
            "metadata.labels",
            "labels",
        )
    } else {
        (
            format!("annotationupdate{}", uid()),
            "metadata.annotations",
            "annotations",
        )
    };
    let mut its = items();
    its.push(json!({"path": file, "fieldRef": {"apiVersion": "v1", "fieldPath": field}}));
    let retry = if projected { 1200 } else { 120 };
    let mut p = podinfo_pod(
        c,
        &name,
        podinfo_volume(projected, its, None),
        &[
            "--break_on_expected_content=false".to_string(),
            format!("--retry_time={retry}"),
            format!("--file_content_in_loop=/etc/podinfo/{file}"),
        ],
    );
    if labels {
        p["metadata"]["labels"] = json!({"key1": "value1", "key2": "value2"});
    } else {
        p["metadata"]["annotations"] = json!({"builder": "bar"});
    }
    c.create_pod(p).await?;
    c.wait_running(&name).await?;
    let first = if labels {
        "key1=\"value1\"\n"
    } else {
        "builder=\"bar\"\n"
    };
    wait_logs_contain(c, &name, CONTAINER, first, UPDATE_TIMEOUT).await?;

    let pods = c.pods();
    let mut current: Pod = pods.get(&name).await?;
    if labels {
        current
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("key3".into(), "value3".into());
    } else {
        current
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert("builder".into(), "foo".into());
    }
    pods.replace(&name, &PostParams::default(), &current)
        .await
        .context("update the pod's metadata")?;
    let second = if labels {
        "key3=\"value3\"\n"
    } else {
        "builder=\"foo\"\n"
    };
    wait_logs_contain(c, &name, CONTAINER, second, UPDATE_TIMEOUT).await?;
    Ok(())
}

/// File `file` shows the client container's resources: requests 250m
/// CPU / 32Mi, limits 1250m / 64Mi (or none, when `with_resources` is
/// false), matched against `pattern` (a regex when `regex`).
async fn resources(
    c: &Ctx,
    projected: bool,
    file: &str,
    with_resources: bool,
    expected: &str,
    regex: bool,
) -> Result<()> {
    let name = format!("downwardapi-volume-{}", uid());
    let mut p = podinfo_pod(
        c,
        &name,
        podinfo_volume(projected, items(), None),
        &[format!("--file_content=/etc/podinfo/{file}")],
    );
    if with_resources {
        p["spec"]["containers"][0]["resources"] = json!({
            "requests": {"cpu": "250m", "memory": "32Mi"},
            "limits": {"cpu": "1250m", "memory": "64Mi"},
        });
    }
    if regex {
        expect_output_regex(c, p, None, &[expected]).await
    } else {
        expect_output(c, p, None, &[expected.to_string()])
            .await
            .map(|_| ())
    }
}

async fn dv_podname(c: Ctx) -> Result<()> {
    podname(&c, false).await
}
async fn dv_default_mode(c: Ctx) -> Result<()> {
    file_mode(&c, false, false).await
}
async fn dv_item_mode(c: Ctx) -> Result<()> {
    file_mode(&c, false, true).await
}
async fn dv_labels(c: Ctx) -> Result<()> {
    metadata_update(&c, false, true).await
}
async fn dv_annotations(c: Ctx) -> Result<()> {
    metadata_update(&c, false, false).await
}
async fn dv_cpu_limit(c: Ctx) -> Result<()> {
    resources(&c, false, "cpu_limit", true, "2\n", false).await
}
async fn dv_memory_limit(c: Ctx) -> Result<()> {
    resources(&c, false, "memory_limit", true, "67108864\n", false).await
}
async fn dv_cpu_request(c: Ctx) -> Result<()> {
    resources(&c, false, "cpu_request", true, "1\n", false).await
}
async fn dv_memory_request(c: Ctx) -> Result<()> {
    resources(&c, false, "memory_request", true, "33554432\n", false).await
}
async fn dv_default_cpu_limit(c: Ctx) -> Result<()> {
    resources(&c, false, "cpu_limit", false, "[1-9]", true).await
}
async fn dv_default_memory_limit(c: Ctx) -> Result<()> {
    resources(&c, false, "memory_limit", false, "[1-9]", true).await
}

async fn pdv_podname(c: Ctx) -> Result<()> {
    podname(&c, true).await
}
/// Upstream names both the defaultMode and the item mode test so.
async fn pdv_default_mode(c: Ctx) -> Result<()> {
    file_mode(&c, true, false)
        .await
        .context("defaultMode 0400")?;
    file_mode(&c, true, true).await.context("item mode 0400")
}
async fn pdv_labels(c: Ctx) -> Result<()> {
    metadata_update(&c, true, true).await
}
async fn pdv_annotations(c: Ctx) -> Result<()> {
    metadata_update(&c, true, false).await
}
async fn pdv_cpu_limit(c: Ctx) -> Result<()> {
    resources(&c, true, "cpu_limit", true, "2\n", false).await
}
async fn pdv_memory_limit(c: Ctx) -> Result<()> {
    resources(&c, true, "memory_limit", true, "67108864\n", false).await
}
async fn pdv_cpu_request(c: Ctx) -> Result<()> {
    resources(&c, true, "cpu_request", true, "1\n", false).await
}
async fn pdv_memory_request(c: Ctx) -> Result<()> {
    resources(&c, true, "memory_request", true, "33554432\n", false).await
}
async fn pdv_default_cpu_limit(c: Ctx) -> Result<()> {
    resources(&c, true, "cpu_limit", false, "[1-9]", true).await
}
async fn pdv_default_memory_limit(c: Ctx) -> Result<()> {
    resources(&c, true, "memory_limit", false, "[1-9]", true).await
}

/// One projected volume of the pod name, a secret and a configMap, all
/// read by busybox.
async fn projected_all(c: Ctx) -> Result<()> {
    let name = format!("projected-volume-{}", uid());
    let secret_name = format!("secret-projected-all-test-volume-{}", uid());
    let cm_name = format!("configmap-projected-all-test-volume-{}", uid());
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(cm_name.clone()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "configmap-data".to_string(),
            "configmap-value-1".to_string(),
        )])),
        ..Default::default()
    };
    c.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .context("create configmap")?;
    let s = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.clone()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "secret-data".to_string(),
            ByteString(b"secret-value-1".to_vec()),
        )])),
        ..Default::default()
    };
    c.api::<Secret>()
        .create(&PostParams::default(), &s)
        .await
        .context("create secret")?;
    let p = pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "volumes": [{"name": "podinfo", "projected": {"sources": [
                {"downwardAPI": {"items": [
                    {"path": "podname", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
                ]}},
                {"secret": {"name": secret_name}},
                {"configMap": {"name": cm_name}},
            ]}}],
            "containers": [{
                "name": "projected-all-volume-test",
                "image": c.env.images.busybox,
                "command": ["sh", "-c", "cat /all/podname && cat /all/secret-data && cat /all/configmap-data"],
                "volumeMounts": [{"name": "podinfo", "mountPath": "/all", "readOnly": false}],
            }],
        }),
    );
    let expected = [
        name.clone(),
        "secret-value-1".into(),
        "configmap-value-1".into(),
    ];
    expect_output(&c, p, None, &expected).await?;
    Ok(())
}
