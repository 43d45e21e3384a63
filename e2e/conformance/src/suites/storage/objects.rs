//! configMap and secret volumes, plain and projected: file contents and
//! modes (default, defaultMode, item mode, non-root, fsGroup), key-to-path
//! mappings, several volumes of one object, binary data, live updates and
//! optional objects that come and go.

use std::collections::BTreeMap;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use serde_json::{json, Value};

use super::{expect_output, mode_line, uid, wait_logs_contain, UPDATE_TIMEOUT};
use crate::conformance;
use crate::ctx::{pod, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        // Immutable objects (API only).
        conformance!("ConfigMap Volume, immutability", cm_immutable),
        conformance!("Secrets Volume, immutability", secret_immutable),
        // ConfigMap volumes.
        conformance!("ConfigMap Volume, without mapping", cm_default),
        conformance!(
            "ConfigMap Volume, without mapping, volume mode set",
            cm_default_mode
        ),
        conformance!(
            "ConfigMap Volume, without mapping, non-root user",
            cm_non_root
        ),
        conformance!("ConfigMap Volume, with mapping", cm_mapping),
        conformance!(
            "ConfigMap Volume, with mapping, volume mode set",
            cm_mapping_mode
        ),
        conformance!(
            "ConfigMap Volume, with mapping, non-root user",
            cm_mapping_non_root
        ),
        conformance!("ConfigMap Volume, update", cm_update),
        conformance!("ConfigMap Volume, text data, binary data", cm_binary),
        conformance!("ConfigMap Volume, create, update and delete", cm_optional),
        conformance!("ConfigMap Volume, multiple volume maps", cm_multiple),
        // Secret volumes.
        conformance!("Secrets Volume, default", secret_default),
        conformance!("Secrets Volume, volume mode 0400", secret_default_mode),
        conformance!(
            "Secrets Volume, volume mode 0440, fsGroup 1001 and uid 1000",
            secret_non_root_fs_group
        ),
        conformance!("Secrets Volume, mapping", secret_mapping),
        conformance!(
            "Secrets Volume, mapping, volume mode 0400",
            secret_mapping_mode
        ),
        conformance!(
            "Secrets Volume, volume mode default, secret with same name in different namespace",
            secret_other_namespace
        ),
        conformance!(
            "Secrets Volume, mapping multiple volume paths",
            secret_multiple
        ),
        conformance!("Secrets Volume, create, update and delete", secret_optional),
        // Projected configMaps.
        conformance!(
            "Projected Volume, ConfigMap, volume mode default",
            pcm_default
        ),
        conformance!(
            "Projected Volume, ConfigMap, volume mode 0400",
            pcm_default_mode
        ),
        conformance!("Projected Volume, ConfigMap, non-root user", pcm_non_root),
        conformance!("Projected Volume, ConfigMap, mapped", pcm_mapping),
        conformance!(
            "Projected Volume, ConfigMap, mapped, volume mode 0400",
            pcm_mapping_mode
        ),
        conformance!(
            "Projected Volume, ConfigMap, mapped, non-root user",
            pcm_mapping_non_root
        ),
        conformance!("Projected Volume, ConfigMap, update", pcm_update),
        conformance!(
            "Projected Volume, ConfigMap, create, update and delete",
            pcm_optional
        ),
        conformance!(
            "Projected Volume, ConfigMap, multiple volume paths",
            pcm_multiple
        ),
        // Projected secrets.
        conformance!(
            "Projected Volume, Secrets, volume mode default",
            psecret_default
        ),
        conformance!(
            "Projected Volume, Secrets, volume mode 0400",
            psecret_default_mode
        ),
        conformance!(
            "Project Volume, Secrets, non-root, custom fsGroup",
            psecret_non_root_fs_group
        ),
        conformance!("Projected Volume, Secrets, mapped", psecret_mapping),
        conformance!(
            "Projected Volume, Secrets, mapped, volume mode 0400",
            psecret_mapping_mode
        ),
        conformance!(
            "Projected Volume, Secrets, mapped, multiple paths",
            psecret_multiple
        ),
        conformance!(
            "Projected Volume, Secrets, create, update delete",
            psecret_optional
        ),
        conformance!(
            "EmptyDir Wrapper Volume, Secret and ConfigMap volumes, no conflict",
            wrapper_no_conflict
        ),
    ]
}

/// How long the mounttest loops of the update tests keep reading.
const LOOP_SECS: u64 = 240;

/// The uid upstream's setPodNonRootUser runs as.
const NON_ROOT_UID: i64 = 1000;

/// Which object a volume shows, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Src {
    ConfigMap,
    Secret,
    ProjectedConfigMap,
    ProjectedSecret,
}

impl Src {
    fn is_secret(self) -> bool {
        matches!(self, Src::Secret | Src::ProjectedSecret)
    }

    fn is_projected(self) -> bool {
        matches!(self, Src::ProjectedConfigMap | Src::ProjectedSecret)
    }

    /// Upstream's naming stem: volume `<stem>-volume` at `/etc/<stem>-volume`.
    fn stem(self) -> &'static str {
        match self {
            Src::ConfigMap => "configmap",
            Src::Secret => "secret",
            Src::ProjectedConfigMap => "projected-configmap",
            Src::ProjectedSecret => "projected-secret",
        }
    }

    /// Prefix of the pods' names.
    fn pod_prefix(self) -> &'static str {
        match self {
            Src::ConfigMap => "pod-configmaps",
            Src::Secret => "pod-secrets",
            Src::ProjectedConfigMap => "pod-projected-configmaps",
            Src::ProjectedSecret => "pod-projected-secrets",
        }
    }

    /// Name of the test container.
    fn container(self) -> &'static str {
        match self {
            Src::ConfigMap | Src::ProjectedConfigMap => "agnhost-container",
            Src::Secret => "secret-volume-test",
            Src::ProjectedSecret => "projected-secret-volume-test",
        }
    }

    /// Prefix of the objects' names.
    fn object_prefix(self) -> &'static str {
        match self {
            Src::ConfigMap => "configmap-test-volume",
            Src::Secret => "secret-test",
            Src::ProjectedConfigMap => "projected-configmap-test-volume",
            Src::ProjectedSecret => "projected-secret-test",
        }
    }

    /// A volume `vol` showing object `reference`, with `extra` fields
    /// (items, optional) in its configMap/secret part.
    fn volume(self, vol: &str, reference: &str, extra: Value) -> Value {
        let mut inner = if self.is_secret() && !self.is_projected() {
            json!({"secretName": reference})
        } else {
            json!({"name": reference})
        };
        if let (Some(i), Some(e)) = (inner.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                i.insert(k.clone(), v.clone());
            }
        }
        match self {
            Src::ConfigMap => json!({"name": vol, "configMap": inner}),
            Src::Secret => json!({"name": vol, "secret": inner}),
            Src::ProjectedConfigMap => {
                json!({"name": vol, "projected": {"sources": [{"configMap": inner}]}})
            }
            Src::ProjectedSecret => {
                json!({"name": vol, "projected": {"sources": [{"secret": inner}]}})
            }
        }
    }

    /// Sets the volume's default mode.
    fn set_default_mode(self, vol: &mut Value, mode: u32) {
        match self {
            Src::ConfigMap => vol["configMap"]["defaultMode"] = json!(mode),
            Src::Secret => vol["secret"]["defaultMode"] = json!(mode),
            _ => vol["projected"]["defaultMode"] = json!(mode),
        }
    }

    /// Sets the mode of the mapped item (upstream sets the projected
    /// volume's defaultMode instead).
    fn set_item_mode(self, vol: &mut Value, mode: u32) {
        match self {
            Src::ConfigMap => vol["configMap"]["items"][0]["mode"] = json!(mode),
            Src::Secret => vol["secret"]["items"][0]["mode"] = json!(mode),
            _ => vol["projected"]["defaultMode"] = json!(mode),
        }
    }

    /// Creates the object `name` in `ns` with `data`.
    async fn create(self, c: &Ctx, ns: &str, name: &str, data: &[(&str, &str)]) -> Result<()> {
        let meta = ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        };
        if self.is_secret() {
            let s = Secret {
                metadata: meta,
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                        .collect(),
                ),
                ..Default::default()
            };
            Api::<Secret>::namespaced(c.client.clone(), ns)
                .create(&PostParams::default(), &s)
                .await
                .with_context(|| format!("create secret {name}"))?;
        } else {
            let m = ConfigMap {
                metadata: meta,
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            };
            Api::<ConfigMap>::namespaced(c.client.clone(), ns)
                .create(&PostParams::default(), &m)
                .await
                .with_context(|| format!("create configmap {name}"))?;
        }
        Ok(())
    }

    /// Replaces the data of object `name` with `data`.
    async fn replace_data(self, c: &Ctx, name: &str, data: &[(&str, &str)]) -> Result<()> {
        if self.is_secret() {
            let api = c.api::<Secret>();
            let mut s = api.get(name).await?;
            s.data = Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            );
            s.metadata.resource_version = None;
            api.replace(name, &PostParams::default(), &s)
                .await
                .with_context(|| format!("update secret {name}"))?;
        } else {
            let api = c.api::<ConfigMap>();
            let mut m = api.get(name).await?;
            m.data = Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            m.metadata.resource_version = None;
            api.replace(name, &PostParams::default(), &m)
                .await
                .with_context(|| format!("update configmap {name}"))?;
        }
        Ok(())
    }

    /// Deletes object `name`.
    async fn delete(self, c: &Ctx, name: &str) -> Result<()> {
        if self.is_secret() {
            c.api::<Secret>()
                .delete(name, &DeleteParams::default())
                .await?;
        } else {
            c.api::<ConfigMap>()
                .delete(name, &DeleteParams::default())
                .await?;
        }
        Ok(())
    }

    /// Upstream's test data: data-1..3 = value-1..3 (secrets end with a newline).
    fn test_data(self) -> Vec<(&'static str, &'static str)> {
        if self.is_secret() {
            vec![
                ("data-1", "value-1\n"),
                ("data-2", "value-2\n"),
                ("data-3", "value-3\n"),
            ]
        } else {
            vec![
                ("data-1", "value-1"),
                ("data-2", "value-2"),
                ("data-3", "value-3"),
            ]
        }
    }
}

/// An agnhost pod running mounttest `args` with `volumes` mounted by `mounts`.
fn mounttest_pod(c: &Ctx, src: Src, volumes: Value, mounts: Value, args: &[String]) -> Value {
    let mut a = vec!["mounttest".to_string()];
    a.extend(args.iter().cloned());
    pod(
        &format!("{}-{}", src.pod_prefix(), uid()),
        json!({
            "restartPolicy": "Never",
            "securityContext": {},
            "containers": [{
                "name": src.container(),
                "image": c.env.images.agnhost,
                "args": a,
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        }),
    )
}

/// Sets the pod-level runAsUser / fsGroup.
fn set_security(p: &mut Value, run_as: Option<i64>, fs_group: Option<i64>) {
    if let Some(u) = run_as {
        p["spec"]["securityContext"]["runAsUser"] = json!(u);
    }
    if let Some(g) = fs_group {
        p["spec"]["securityContext"]["fsGroup"] = json!(g);
    }
}

/// The whole object in a volume: data-1 is readable and has the expected
/// mode (upstream's do*E2EWithoutMapping(s)).
async fn without_mapping(
    c: &Ctx,
    src: Src,
    run_as: Option<i64>,
    fs_group: Option<i64>,
    default_mode: Option<u32>,
    name: Option<String>,
) -> Result<()> {
    let name = name.unwrap_or_else(|| format!("{}-{}", src.object_prefix(), uid()));
    src.create(c, &c.ns, &name, &src.test_data()).await?;
    let vol_name = format!("{}-volume", src.stem());
    let dir = format!("/etc/{}-volume", src.stem());
    let file = format!("{dir}/data-1");
    let mut vol = src.volume(&vol_name, &name, json!({}));
    if let Some(m) = default_mode {
        src.set_default_mode(&mut vol, m);
    }
    // Upstream mounts configMaps read-only and secrets read-write.
    let mount = json!([{"name": vol_name, "mountPath": dir, "readOnly": !src.is_secret()}]);
    let mut p = mounttest_pod(
        c,
        src,
        json!([vol]),
        mount,
        &[
            format!("--file_content={file}"),
            format!("--file_mode={file}"),
        ],
    );
    if matches!(src, Src::ConfigMap) {
        p["spec"]["terminationGracePeriodSeconds"] = json!(1);
    }
    set_security(&mut p, run_as, fs_group);
    let expected = [
        format!("content of file \"{file}\": value-1"),
        mode_line(&file, default_mode.unwrap_or(0o644)),
    ];
    expect_output(c, p, None, &expected).await?;
    Ok(())
}

/// One key mapped to a path of its own: readable there with the expected
/// mode (upstream's do*E2EWithMapping(s)).
async fn with_mapping(
    c: &Ctx,
    src: Src,
    run_as: Option<i64>,
    item_mode: Option<u32>,
) -> Result<()> {
    let name = format!("{}-map-{}", src.object_prefix(), uid());
    src.create(c, &c.ns, &name, &src.test_data()).await?;
    let vol_name = format!("{}-volume", src.stem());
    let dir = format!("/etc/{}-volume", src.stem());
    // configMaps map data-2 to path/to/data-2, secrets data-1 to new-path-data-1.
    let (key, path, value) = if src.is_secret() {
        ("data-1", "new-path-data-1", "value-1")
    } else {
        ("data-2", "path/to/data-2", "value-2")
    };
    let file = format!("{dir}/{path}");
    let mut vol = src.volume(
        &vol_name,
        &name,
        json!({"items": [{"key": key, "path": path}]}),
    );
    if let Some(m) = item_mode {
        src.set_item_mode(&mut vol, m);
    }
    let mount = json!([{"name": vol_name, "mountPath": dir, "readOnly": !src.is_secret()}]);
    let mut p = mounttest_pod(
        c,
        src,
        json!([vol]),
        mount,
        &[
            format!("--file_content={file}"),
            format!("--file_mode={file}"),
        ],
    );
    if matches!(src, Src::ConfigMap) {
        p["spec"]["terminationGracePeriodSeconds"] = json!(1);
    }
    set_security(&mut p, run_as, None);
    let expected = [
        format!("content of file \"{file}\": {value}"),
        mode_line(&file, item_mode.unwrap_or(0o644)),
    ];
    expect_output(c, p, None, &expected).await?;
    Ok(())
}

/// The same object in two volumes of one container.
async fn multiple_volumes(c: &Ctx, src: Src) -> Result<()> {
    let name = format!("{}-{}", src.object_prefix(), uid());
    src.create(c, &c.ns, &name, &src.test_data()).await?;
    let stem = src.stem();
    let (v1, v2) = (format!("{stem}-volume"), format!("{stem}-volume-2"));
    let (d1, d2) = (
        format!("/etc/{stem}-volume"),
        format!("/etc/{stem}-volume-2"),
    );
    let file = format!("{d1}/data-1");
    let volumes = json!([
        src.volume(&v1, &name, json!({})),
        src.volume(&v2, &name, json!({}))
    ]);
    let mounts = json!([
        {"name": v1, "mountPath": d1, "readOnly": true},
        {"name": v2, "mountPath": d2, "readOnly": true},
    ]);
    // Upstream checks the mode of the file too for secrets only.
    let mut args = vec![format!("--file_content={file}")];
    let mut expected = vec![format!("content of file \"{file}\": value-1")];
    if src.is_secret() {
        args.push(format!("--file_mode={file}"));
        expected.push(mode_line(&file, 0o644));
    }
    let mut p = mounttest_pod(c, src, volumes, mounts, &args);
    if src.is_secret() {
        p["spec"]["containers"][0]["name"] = json!("secret-volume-test");
    } else {
        p["spec"]["containers"][0]["name"] = json!(format!("{stem}-volume-test"));
    }
    expect_output(c, p, None, &expected).await?;
    Ok(())
}

/// A change of the object shows in the running pod's volume.
async fn update(c: &Ctx, src: Src) -> Result<()> {
    let name = format!("{}-test-upd-{}", src.stem(), uid());
    src.create(c, &c.ns, &name, &[("data-1", "value-1")])
        .await?;
    let stem = src.stem();
    let vol_name = format!("{stem}-volume");
    let dir = format!("/etc/{stem}-volume");
    let p = mounttest_pod(
        c,
        src,
        json!([src.volume(&vol_name, &name, json!({}))]),
        json!([{"name": vol_name, "mountPath": dir, "readOnly": true}]),
        &[
            "--break_on_expected_content=false".to_string(),
            format!("--retry_time={LOOP_SECS}"),
            format!("--file_content_in_loop={dir}/data-1"),
        ],
    );
    let pod_name = p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    c.create_pod(p).await?;
    c.wait_running(&pod_name).await?;
    let ctr = src.container();
    wait_logs_contain(c, &pod_name, ctr, "value-1", UPDATE_TIMEOUT).await?;
    src.replace_data(c, &name, &[("data-1", "value-2")]).await?;
    wait_logs_contain(c, &pod_name, ctr, "value-2", UPDATE_TIMEOUT).await?;
    Ok(())
}

/// Three optional volumes: one whose object is deleted, one whose object
/// loses data-1 and gains data-3, one whose object is created late. Each
/// change shows in the running pod.
async fn optional_updates(c: &Ctx, src: Src) -> Result<()> {
    // Upstream's names: cm-test-opt-del-…, delcm-volume-test, deletecm-volume
    // for configMaps; s-test-opt-del-…, dels-volume-test, deletes-volume for secrets.
    let t = if src.is_secret() { "s" } else { "cm" };
    let root = format!("/etc/{}-volumes", src.stem());
    let del_name = format!("{t}-test-opt-del-{}", uid());
    let upd_name = format!("{t}-test-opt-upd-{}", uid());
    let create_name = format!("{t}-test-opt-create-{}", uid());
    let (del_ctr, del_vol) = (format!("del{t}-volume-test"), format!("delete{t}-volume"));
    let (upd_ctr, upd_vol) = (format!("upd{t}-volume-test"), format!("update{t}-volume"));
    let (create_ctr, create_vol) = (
        format!("create{t}-volume-test"),
        format!("create{t}-volume"),
    );
    let one = [("data-1", "value-1")];
    src.create(c, &c.ns, &del_name, &one).await?;
    src.create(c, &c.ns, &upd_name, &one).await?;

    let optional = json!({"optional": true});
    let container = |name: &str, vol: &str, sub: &str, file: &str| {
        json!({
            "name": name,
            "image": c.env.images.agnhost,
            "args": [
                "mounttest",
                "--break_on_expected_content=false",
                format!("--retry_time={LOOP_SECS}"),
                format!("--file_content_in_loop={root}/{sub}/{file}"),
            ],
            "volumeMounts": [{"name": vol, "mountPath": format!("{root}/{sub}"), "readOnly": true}],
        })
    };
    let pod_name = format!("{}-{}", src.pod_prefix(), uid());
    let p = pod(
        &pod_name,
        json!({
            "restartPolicy": "Never",
            "volumes": [
                src.volume(&del_vol, &del_name, optional.clone()),
                src.volume(&upd_vol, &upd_name, optional.clone()),
                src.volume(&create_vol, &create_name, optional.clone()),
            ],
            "containers": [
                container(&del_ctr, &del_vol, "delete", "data-1"),
                container(&upd_ctr, &upd_vol, "update", "data-3"),
                container(&create_ctr, &create_vol, "create", "data-1"),
            ],
        }),
    );
    c.create_pod(p).await?;
    c.wait_running(&pod_name).await?;

    let err = |sub: &str, file: &str| format!("Error reading file {root}/{sub}/{file}");
    wait_logs_contain(
        c,
        &pod_name,
        &create_ctr,
        &err("create", "data-1"),
        UPDATE_TIMEOUT,
    )
    .await?;
    wait_logs_contain(
        c,
        &pod_name,
        &upd_ctr,
        &err("update", "data-3"),
        UPDATE_TIMEOUT,
    )
    .await?;
    wait_logs_contain(c, &pod_name, &del_ctr, "value-1", UPDATE_TIMEOUT).await?;

    src.delete(c, &del_name)
        .await
        .context("delete the first object")?;
    src.replace_data(c, &upd_name, &[("data-3", "value-3")])
        .await?;
    src.create(c, &c.ns, &create_name, &one).await?;

    wait_logs_contain(c, &pod_name, &create_ctr, "value-1", UPDATE_TIMEOUT).await?;
    wait_logs_contain(c, &pod_name, &upd_ctr, "value-3", UPDATE_TIMEOUT).await?;
    wait_logs_contain(
        c,
        &pod_name,
        &del_ctr,
        &err("delete", "data-1"),
        UPDATE_TIMEOUT,
    )
    .await?;
    Ok(())
}

async fn cm_default(c: Ctx) -> Result<()> {
    without_mapping(&c, Src::ConfigMap, None, None, None, None).await
}
async fn cm_default_mode(c: Ctx) -> Result<()> {
    without_mapping(&c, Src::ConfigMap, None, None, Some(0o400), None).await
}
async fn cm_non_root(c: Ctx) -> Result<()> {
    without_mapping(&c, Src::ConfigMap, Some(NON_ROOT_UID), None, None, None).await
}
async fn cm_mapping(c: Ctx) -> Result<()> {
    with_mapping(&c, Src::ConfigMap, None, None).await
}
async fn cm_mapping_mode(c: Ctx) -> Result<()> {
    with_mapping(&c, Src::ConfigMap, None, Some(0o400)).await
}
async fn cm_mapping_non_root(c: Ctx) -> Result<()> {
    with_mapping(&c, Src::ConfigMap, Some(NON_ROOT_UID), None).await
}
async fn cm_update(c: Ctx) -> Result<()> {
    update(&c, Src::ConfigMap).await
}
async fn cm_optional(c: Ctx) -> Result<()> {
    optional_updates(&c, Src::ConfigMap).await
}
async fn cm_multiple(c: Ctx) -> Result<()> {
    multiple_volumes(&c, Src::ConfigMap).await
}

/// Text and binary data of one configMap: the text file is read by
/// mounttest, the binary one hex-dumped by busybox.
async fn cm_binary(c: Ctx) -> Result<()> {
    let name = format!("configmap-test-upd-{}", uid());
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "data-1".to_string(),
            "value-1".to_string(),
        )])),
        binary_data: Some(BTreeMap::from([(
            "dump.bin".to_string(),
            ByteString(vec![0xde, 0xca, 0xfe, 0xba, 0xd0, 0xfe, 0xff]),
        )])),
        ..Default::default()
    };
    c.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .context("create configmap")?;
    let vol = "configmap-volume";
    let dir = "/etc/configmap-volume";
    let pod_name = format!("pod-configmaps-{}", uid());
    let p = pod(
        &pod_name,
        json!({
            "restartPolicy": "Never",
            "volumes": [Src::ConfigMap.volume(vol, &name, json!({}))],
            "containers": [
                {
                    "name": "agnhost-container",
                    "image": c.env.images.agnhost,
                    "args": [
                        "mounttest",
                        "--break_on_expected_content=false",
                        format!("--retry_time={LOOP_SECS}"),
                        format!("--file_content_in_loop={dir}/data-1"),
                    ],
                    "volumeMounts": [{"name": vol, "mountPath": dir, "readOnly": true}],
                },
                {
                    "name": "configmap-volume-binary-test",
                    "image": c.env.images.busybox,
                    "command": ["hexdump", "-C", format!("{dir}/dump.bin")],
                    "volumeMounts": [{"name": vol, "mountPath": dir, "readOnly": true}],
                },
            ],
        }),
    );
    c.create_pod(p).await?;
    c.wait_pod(&pod_name, "Running", |p| crate::ctx::phase(p) == "Running")
        .await?;
    wait_logs_contain(
        &c,
        &pod_name,
        "agnhost-container",
        "value-1",
        UPDATE_TIMEOUT,
    )
    .await?;
    wait_logs_contain(
        &c,
        &pod_name,
        "configmap-volume-binary-test",
        "de ca fe ba d0 fe ff",
        UPDATE_TIMEOUT,
    )
    .await?;
    Ok(())
}

async fn secret_default(c: Ctx) -> Result<()> {
    without_mapping(&c, Src::Secret, None, None, None, None).await
}
async fn secret_default_mode(c: Ctx) -> Result<()> {
    without_mapping(&c, Src::Secret, None, None, Some(0o400), None).await
}
async fn secret_non_root_fs_group(c: Ctx) -> Result<()> {
    without_mapping(
        &c,
        Src::Secret,
        Some(NON_ROOT_UID),
        Some(1001),
        Some(0o440),
        None,
    )
    .await
}
async fn secret_mapping(c: Ctx) -> Result<()> {
    with_mapping(&c, Src::Secret, None, None).await
}
async fn secret_mapping_mode(c: Ctx) -> Result<()> {
    with_mapping(&c, Src::Secret, None, Some(0o400)).await
}
async fn secret_multiple(c: Ctx) -> Result<()> {
    multiple_volumes(&c, Src::Secret).await
}
async fn secret_optional(c: Ctx) -> Result<()> {
    optional_updates(&c, Src::Secret).await
}

/// A secret of the same name in another namespace holds other data; the
/// pod sees its own namespace's secret.
async fn secret_other_namespace(c: Ctx) -> Result<()> {
    let name = format!("secret-test-{}", uid());
    let ns2 = c.name("secret-namespace");
    let namespaces = c.all::<Namespace>();
    let n = Namespace {
        metadata: ObjectMeta {
            name: Some(ns2.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &n)
        .await
        .context("create the second namespace")?;
    let result = async {
        let s = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "this_should_not_match_content_of_other_secret".to_string(),
                ByteString(b"similarly_this_should_not_match_content_of_other_secret\n".to_vec()),
            )])),
            ..Default::default()
        };
        Api::<Secret>::namespaced(c.client.clone(), &ns2)
            .create(&PostParams::default(), &s)
            .await
            .context("create the secret in the second namespace")?;
        without_mapping(&c, Src::Secret, None, None, None, Some(name.clone())).await
    }
    .await;
    let _ = namespaces.delete(&ns2, &DeleteParams::default()).await;
    result
}

async fn pcm_default(c: Ctx) -> Result<()> {
    without_mapping(&c, Src::ProjectedConfigMap, None, None, None, None).await
}
async fn pcm_default_mode(c: Ctx) -> Result<()> {
    without_mapping(&c, Src::ProjectedConfigMap, None, None, Some(0o400), None).await
}
async fn pcm_non_root(c: Ctx) -> Result<()> {
    without_mapping(
        &c,
        Src::ProjectedConfigMap,
        Some(NON_ROOT_UID),
        None,
        None,
        None,
    )
    .await
}
async fn pcm_mapping(c: Ctx) -> Result<()> {
    with_mapping(&c, Src::ProjectedConfigMap, None, None).await
}
async fn pcm_mapping_mode(c: Ctx) -> Result<()> {
    with_mapping(&c, Src::ProjectedConfigMap, None, Some(0o400)).await
}
async fn pcm_mapping_non_root(c: Ctx) -> Result<()> {
    with_mapping(&c, Src::ProjectedConfigMap, Some(NON_ROOT_UID), None).await
}
async fn pcm_update(c: Ctx) -> Result<()> {
    update(&c, Src::ProjectedConfigMap).await
}
async fn pcm_optional(c: Ctx) -> Result<()> {
    optional_updates(&c, Src::ProjectedConfigMap).await
}
async fn pcm_multiple(c: Ctx) -> Result<()> {
    multiple_volumes(&c, Src::ProjectedConfigMap).await
}

async fn psecret_default(c: Ctx) -> Result<()> {
    without_mapping(&c, Src::ProjectedSecret, None, None, None, None).await
}
async fn psecret_default_mode(c: Ctx) -> Result<()> {
    without_mapping(&c, Src::ProjectedSecret, None, None, Some(0o400), None).await
}
async fn psecret_non_root_fs_group(c: Ctx) -> Result<()> {
    without_mapping(
        &c,
        Src::ProjectedSecret,
        Some(NON_ROOT_UID),
        Some(1001),
        Some(0o440),
        None,
    )
    .await
}
async fn psecret_mapping(c: Ctx) -> Result<()> {
    with_mapping(&c, Src::ProjectedSecret, None, None).await
}
async fn psecret_mapping_mode(c: Ctx) -> Result<()> {
    with_mapping(&c, Src::ProjectedSecret, None, Some(0o400)).await
}
async fn psecret_multiple(c: Ctx) -> Result<()> {
    multiple_volumes(&c, Src::ProjectedSecret).await
}
async fn psecret_optional(c: Ctx) -> Result<()> {
    optional_updates(&c, Src::ProjectedSecret).await
}

/// A secret volume and a configMap volume (both wrapping an emptyDir in
/// the kubelet) in one pod do not conflict: the pod runs.
async fn wrapper_no_conflict(c: Ctx) -> Result<()> {
    let name = format!("emptydir-wrapper-test-{}", uid());
    Src::Secret
        .create(&c, &c.ns, &name, &[("data-1", "value-1\n")])
        .await?;
    Src::ConfigMap
        .create(&c, &c.ns, &name, &[("data-1", "value-1")])
        .await?;
    let pod_name = format!("pod-secrets-{}", uid());
    let p = pod(
        &pod_name,
        json!({
            "volumes": [
                Src::Secret.volume("secret-volume", &name, json!({})),
                Src::ConfigMap.volume("configmap-volume", &name, json!({})),
            ],
            "containers": [{
                "name": "secret-test",
                "image": c.env.images.agnhost,
                "args": ["test-webserver"],
                "volumeMounts": [
                    {"name": "secret-volume", "mountPath": "/etc/secret-volume", "readOnly": true},
                    {"name": "configmap-volume", "mountPath": "/etc/configmap-volume"},
                ],
            }],
        }),
    );
    c.create_pod(p).await?;
    c.wait_running(&pod_name).await?;
    Src::Secret
        .delete(&c, &name)
        .await
        .context("delete the secret")?;
    Src::ConfigMap
        .delete(&c, &name)
        .await
        .context("delete the configmap")?;
    c.pods()
        .delete(&pod_name, &DeleteParams::default().grace_period(0))
        .await
        .context("delete the pod")?;
    Ok(())
}
/// Whether `r` failed as Invalid (422).
fn is_invalid<T>(r: &Result<T, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(e)) if e.code == 422)
}

/// An object named "immutable": its data can change until it is marked
/// immutable; then data changes and unmarking are Invalid, label changes
/// and deletion succeed.
async fn cm_immutable(c: Ctx) -> Result<()> {
    let api = c.api::<ConfigMap>();
    let name = "immutable";
    Src::ConfigMap
        .create(&c, &c.ns, name, &Src::ConfigMap.test_data())
        .await?;
    let mut cur = api.get(name).await?;
    cur.data
        .get_or_insert_with(BTreeMap::new)
        .insert("data-4".into(), "value-4".into());
    let mut cur = api
        .replace(name, &PostParams::default(), &cur)
        .await
        .context("update data")?;
    cur.immutable = Some(true);
    let mut cur = api
        .replace(name, &PostParams::default(), &cur)
        .await
        .context("mark immutable")?;
    cur.data
        .get_or_insert_with(BTreeMap::new)
        .insert("data-5".into(), "value-5".into());
    let r = api.replace(name, &PostParams::default(), &cur).await;
    ensure!(
        is_invalid(&r),
        "changing an immutable configMap's data: want Invalid, got {r:?}"
    );
    let mut cur = api.get(name).await?;
    ensure!(
        cur.immutable == Some(true),
        "immutable is {:?}",
        cur.immutable
    );
    cur.immutable = Some(false);
    let r = api.replace(name, &PostParams::default(), &cur).await;
    ensure!(
        is_invalid(&r),
        "unmarking immutable: want Invalid, got {r:?}"
    );
    let mut cur = api.get(name).await?;
    cur.metadata.labels = Some([("label1".to_string(), "value1".to_string())].into());
    api.replace(name, &PostParams::default(), &cur)
        .await
        .context("update labels")?;
    api.delete(name, &DeleteParams::default())
        .await
        .context("delete")?;
    Ok(())
}

/// As [`cm_immutable`] for a secret.
async fn secret_immutable(c: Ctx) -> Result<()> {
    let api = c.api::<Secret>();
    let name = "immutable";
    Src::Secret
        .create(&c, &c.ns, name, &Src::Secret.test_data())
        .await?;
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let mut cur = api.get(name).await?;
    cur.data
        .get_or_insert_with(BTreeMap::new)
        .insert("data-4".into(), bytes("value-4\n"));
    let mut cur = api
        .replace(name, &PostParams::default(), &cur)
        .await
        .context("update data")?;
    cur.immutable = Some(true);
    let mut cur = api
        .replace(name, &PostParams::default(), &cur)
        .await
        .context("mark immutable")?;
    cur.data
        .get_or_insert_with(BTreeMap::new)
        .insert("data-5".into(), bytes("value-5\n"));
    let r = api.replace(name, &PostParams::default(), &cur).await;
    ensure!(
        is_invalid(&r),
        "changing an immutable secret's data: want Invalid, got {r:?}"
    );
    let mut cur = api.get(name).await?;
    ensure!(
        cur.immutable == Some(true),
        "immutable is {:?}",
        cur.immutable
    );
    cur.immutable = Some(false);
    let r = api.replace(name, &PostParams::default(), &cur).await;
    ensure!(
        is_invalid(&r),
        "unmarking immutable: want Invalid, got {r:?}"
    );
    let mut cur = api.get(name).await?;
    cur.metadata.labels = Some([("label1".to_string(), "value1".to_string())].into());
    api.replace(name, &PostParams::default(), &cur)
        .await
        .context("update labels")?;
    api.delete(name, &DeleteParams::default())
        .await
        .context("delete")?;
    Ok(())
}
