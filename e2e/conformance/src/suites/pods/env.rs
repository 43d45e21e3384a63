//! What a container is started with: image entrypoint and arguments,
//! variable expansion in env, command, args and subpaths, downward API env.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};

use super::{expect_output_regex, uid, wait_logs};
use crate::conformance;
use crate::ctx::{phase, pod, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Containers, without command and arguments", image_defaults),
        conformance!("Containers, with arguments", override_args),
        conformance!("Containers, with command", override_command),
        conformance!("Containers, with command and arguments", override_all),
        conformance!("Environment variables, expansion", env_composition),
        conformance!(
            "Environment variables, command expansion",
            command_expansion
        ),
        conformance!(
            "Environment variables, command argument expansion",
            args_expansion
        ),
        conformance!(
            "DownwardAPI, environment for name, namespace and ip",
            dapi_name_ns_ip
        ),
        conformance!("DownwardAPI, environment for host ip", dapi_host_ip),
        conformance!(
            "DownwardAPI, environment for CPU and memory limits and requests",
            dapi_resources
        ),
        conformance!(
            "DownwardAPI, environment for default CPU and memory limits and requests",
            dapi_default_resources
        ),
        conformance!("DownwardAPI, environment for Pod UID", dapi_uid),
        conformance!("DownwardAPI, environment for hostIPs", dapi_host_ips),
        conformance!("ConfigMap, from environment field", configmap_env_field),
        conformance!("ConfigMap, from environment variables", configmap_env_from),
        conformance!("Secrets, pod environment field", secret_env_field),
        conformance!("Secrets, pod environment from source", secret_env_from),
        conformance!(
            "ConfigMap, from environment field with various prefixes",
            configmap_env_prefixes
        ),
        // Upstream gives the testname "Secrets, pod environment from
        // source" to two tests: this one is registered by its codename.
        conformance!(
            "[sig-node] Secrets should be consumable as environment variable names variable names with various prefixes [Conformance]",
            secret_env_prefixes
        ),
    ]
}

/// Upstream's entrypointTestPod: agnhost with `args`, never restarted.
fn entrypoint_pod(c: &Ctx, args: Option<&[&str]>, command: Option<&[&str]>) -> Value {
    let mut container = json!({"name": "agnhost-container", "image": c.env.images.agnhost});
    if let Some(a) = args {
        container["args"] = json!(a);
    }
    if let Some(cmd) = command {
        container["command"] = json!(cmd);
    }
    pod(
        &format!("client-containers-{}", uid()),
        json!({"restartPolicy": "Never", "containers": [container]}),
    )
}

async fn image_defaults(c: Ctx) -> Result<()> {
    let p = c.create_pod(entrypoint_pod(&c, None, None)).await?;
    let name = p.metadata.name.unwrap_or_default();
    c.wait_pod(&name, "Running", |p| phase(p) == "Running")
        .await?;
    // The image's default entrypoint and arguments are `/agnhost pause`.
    wait_logs(&c, &name, None, Duration::from_secs(3), |l| {
        l.contains("Paused")
    })
    .await?;
    Ok(())
}

async fn override_args(c: Ctx) -> Result<()> {
    let p = entrypoint_pod(
        &c,
        Some(&["entrypoint-tester", "override", "arguments"]),
        None,
    );
    c.expect_output(
        p,
        None,
        &["[/agnhost entrypoint-tester override arguments]"],
    )
    .await?;
    Ok(())
}

async fn override_command(c: Ctx) -> Result<()> {
    let p = entrypoint_pod(&c, Some(&["entrypoint-tester"]), Some(&["/agnhost-2"]));
    c.expect_output(p, None, &["[/agnhost-2 entrypoint-tester]"])
        .await?;
    Ok(())
}

async fn override_all(c: Ctx) -> Result<()> {
    let p = entrypoint_pod(
        &c,
        Some(&["entrypoint-tester", "override", "arguments"]),
        Some(&["/agnhost-2"]),
    );
    c.expect_output(
        p,
        None,
        &["[/agnhost-2 entrypoint-tester override arguments]"],
    )
    .await?;
    Ok(())
}

/// Upstream's expansion pod: busybox `dapi-container`, never restarted.
fn expansion_pod(c: &Ctx, name: &str, container: Value) -> Value {
    let mut ct = json!({"name": "dapi-container", "image": c.env.images.busybox});
    if let (Some(d), Some(s)) = (ct.as_object_mut(), container.as_object()) {
        for (k, v) in s {
            d.insert(k.clone(), v.clone());
        }
    }
    pod(name, json!({"restartPolicy": "Never", "containers": [ct]}))
}

async fn env_composition(c: Ctx) -> Result<()> {
    let p = expansion_pod(
        &c,
        &format!("var-expansion-{}", uid()),
        json!({
            "command": ["sh", "-c", "env"],
            "env": [
                {"name": "FOO", "value": "foo-value"},
                {"name": "BAR", "value": "bar-value"},
                {"name": "FOOBAR", "value": "$(FOO);;$(BAR)"},
            ],
        }),
    );
    c.expect_output(
        p,
        None,
        &[
            "FOO=foo-value",
            "BAR=bar-value",
            "FOOBAR=foo-value;;bar-value",
        ],
    )
    .await?;
    Ok(())
}

async fn command_expansion(c: Ctx) -> Result<()> {
    let p = expansion_pod(
        &c,
        &format!("var-expansion-{}", uid()),
        json!({
            "command": ["sh", "-c", "TEST_VAR=wrong echo \"$(TEST_VAR)\""],
            "env": [{"name": "TEST_VAR", "value": "test-value"}],
        }),
    );
    c.expect_output(p, None, &["test-value"]).await?;
    Ok(())
}

async fn args_expansion(c: Ctx) -> Result<()> {
    let p = expansion_pod(
        &c,
        &format!("var-expansion-{}", uid()),
        json!({
            "command": ["sh", "-c"],
            "args": ["TEST_VAR=wrong echo \"$(TEST_VAR)\""],
            "env": [{"name": "TEST_VAR", "value": "test-value"}],
        }),
    );
    c.expect_output(p, None, &["test-value"]).await?;
    Ok(())
}

/// Upstream's downward API env pod: busybox printing its environment.
fn dapi_pod(c: &Ctx, name: &str, env: Value, resources: Option<Value>) -> Value {
    let mut ct = json!({
        "name": "dapi-container",
        "image": c.env.images.busybox,
        "command": ["sh", "-c", "env"],
        "env": env,
    });
    if let Some(r) = resources {
        ct["resources"] = r;
    }
    pod(name, json!({"restartPolicy": "Never", "containers": [ct]}))
}

fn field(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}})
}

fn resource(name: &str, res: &str) -> Value {
    json!({"name": name, "valueFrom": {"resourceFieldRef": {"resource": res}}})
}

async fn dapi_name_ns_ip(c: Ctx) -> Result<()> {
    let name = format!("downward-api-{}", uid());
    let env = json!([
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        field("POD_IP", "status.podIP"),
    ]);
    let pn = format!("POD_NAME={name}");
    let pns = format!("POD_NAMESPACE={}", c.ns);
    expect_output_regex(
        &c,
        dapi_pod(&c, &name, env, None),
        None,
        &[&pn, &pns, r"POD_IP=(?:\d+\.\d+\.\d+\.\d+|[0-9a-f:]+)"],
    )
    .await
}

async fn dapi_host_ip(c: Ctx) -> Result<()> {
    let name = format!("downward-api-{}", uid());
    let env = json!([field("HOST_IP", "status.hostIP")]);
    expect_output_regex(
        &c,
        dapi_pod(&c, &name, env, None),
        None,
        &[r"HOST_IP=(?:\d+\.\d+\.\d+\.\d+|[0-9a-f:]+)"],
    )
    .await
}

async fn dapi_resources(c: Ctx) -> Result<()> {
    let name = format!("downward-api-{}", uid());
    let env = json!([
        resource("CPU_LIMIT", "limits.cpu"),
        resource("MEMORY_LIMIT", "limits.memory"),
        resource("CPU_REQUEST", "requests.cpu"),
        resource("MEMORY_REQUEST", "requests.memory"),
    ]);
    let res = json!({
        "requests": {"cpu": "250m", "memory": "32Mi"},
        "limits": {"cpu": "1250m", "memory": "64Mi"},
    });
    expect_output_regex(
        &c,
        dapi_pod(&c, &name, env, Some(res)),
        None,
        &[
            "CPU_LIMIT=2",
            "MEMORY_LIMIT=67108864",
            "CPU_REQUEST=1",
            "MEMORY_REQUEST=33554432",
        ],
    )
    .await
}

async fn dapi_default_resources(c: Ctx) -> Result<()> {
    let name = format!("downward-api-{}", uid());
    let env = json!([
        resource("CPU_LIMIT", "limits.cpu"),
        resource("MEMORY_LIMIT", "limits.memory"),
    ]);
    expect_output_regex(
        &c,
        dapi_pod(&c, &name, env, None),
        None,
        &["CPU_LIMIT=[1-9]", "MEMORY_LIMIT=[1-9]"],
    )
    .await
}

async fn dapi_uid(c: Ctx) -> Result<()> {
    let name = format!("downward-api-{}", uid());
    let env = json!([field("POD_UID", "metadata.uid")]);
    let p = dapi_pod(&c, &name, env, None);
    let out = c.pod_output(p, None).await?;
    let re =
        regex::Regex::new("POD_UID=[a-z0-9]{8}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{12}")?;
    ensure!(re.is_match(&out), "no POD_UID in output:\n{out}");
    // The value is the pod's own UID.
    let uid = c.pods().get(&name).await?.metadata.uid.unwrap_or_default();
    ensure!(
        out.contains(&format!("POD_UID={uid}")),
        "POD_UID is not {uid}:\n{out}"
    );
    Ok(())
}

async fn dapi_host_ips(c: Ctx) -> Result<()> {
    let name = format!("downward-api-{}", uid());
    let env = json!([field("HOST_IPS", "status.hostIPs")]);
    expect_output_regex(
        &c,
        dapi_pod(&c, &name, env, None),
        None,
        &[r"HOST_IPS=(?:\d+\.\d+\.\d+\.\d+|[0-9a-f:]+)"],
    )
    .await
}

/// The data upstream's configmaps and secrets hold.
fn test_data() -> Value {
    json!({"data-1": "value-1", "data-2": "value-2", "data-3": "value-3"})
}

/// A never-restarted busybox pod printing its environment. Upstream runs
/// `sh -c env`; `env` runs directly here because the stand-in image's
/// busybox ash (Debian's 1.35) drops variables whose names are no shell
/// names ("data-1", "1-data-1") from what it passes on, which upstream's
/// tests rely on their image keeping: the test is about what the
/// container is given, not about the shell.
fn env_pod(c: &Ctx, name: &str, container: &str, env: Value) -> Value {
    let mut ct = json!({"name": container, "image": c.env.images.busybox, "command": ["env"]});
    if let (Some(d), Some(s)) = (ct.as_object_mut(), env.as_object()) {
        for (k, v) in s {
            d.insert(k.clone(), v.clone());
        }
    }
    pod(name, json!({"restartPolicy": "Never", "containers": [ct]}))
}

async fn create_configmap(c: &Ctx) -> Result<String> {
    let name = format!("configmap-test-{}", uid());
    c.create::<k8s_openapi::api::core::v1::ConfigMap>(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": test_data(),
    }))
    .await
    .context("create configmap")?;
    Ok(name)
}

async fn create_secret(c: &Ctx) -> Result<String> {
    let name = format!("secret-test-{}", uid());
    c.create::<k8s_openapi::api::core::v1::Secret>(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "stringData": test_data(),
    }))
    .await
    .context("create secret")?;
    Ok(name)
}

async fn configmap_env_field(c: Ctx) -> Result<()> {
    let cm = create_configmap(&c).await?;
    let p = env_pod(
        &c,
        &format!("pod-configmaps-{}", uid()),
        "env-test",
        json!({"env": [{"name": "CONFIG_DATA_1", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "data-1"}}}]}),
    );
    c.expect_output(p, None, &["CONFIG_DATA_1=value-1"]).await?;
    Ok(())
}

async fn configmap_env_from(c: Ctx) -> Result<()> {
    let cm = create_configmap(&c).await?;
    let p = env_pod(
        &c,
        &format!("pod-configmaps-{}", uid()),
        "env-test",
        json!({"envFrom": [
            {"configMapRef": {"name": cm}},
            {"prefix": "p-", "configMapRef": {"name": cm}},
        ]}),
    );
    c.expect_output(
        p,
        None,
        &[
            "data-1=value-1",
            "data-2=value-2",
            "data-3=value-3",
            "p-data-1=value-1",
            "p-data-2=value-2",
            "p-data-3=value-3",
        ],
    )
    .await?;
    Ok(())
}

async fn secret_env_field(c: Ctx) -> Result<()> {
    let s = create_secret(&c).await?;
    let p = env_pod(
        &c,
        &format!("pod-secrets-{}", uid()),
        "secret-env-test",
        json!({"env": [{"name": "SECRET_DATA", "valueFrom": {"secretKeyRef": {"name": s, "key": "data-1"}}}]}),
    );
    c.expect_output(p, None, &["SECRET_DATA=value-1"]).await?;
    Ok(())
}

async fn secret_env_from(c: Ctx) -> Result<()> {
    let s = create_secret(&c).await?;
    let p = env_pod(
        &c,
        &format!("pod-configmaps-{}", uid()),
        "env-test",
        json!({"envFrom": [
            {"secretRef": {"name": s}},
            {"prefix": "p-", "secretRef": {"name": s}},
        ]}),
    );
    c.expect_output(
        p,
        None,
        &[
            "data-1=value-1",
            "data-2=value-2",
            "data-3=value-3",
            "p-data-1=value-1",
            "p-data-2=value-2",
            "p-data-3=value-3",
        ],
    )
    .await?;
    Ok(())
}

/// The prefixes upstream puts before the keys of one source in `envFrom`:
/// none, a leading digit, special characters, uppercase, symbols.
const ENV_PREFIXES: [&str; 5] = ["", "1-", "$_-", "ABC_", "#@!"];

/// `envFrom` with `source` (`{"configMapRef": ...}` or `{"secretRef": ...}`)
/// once per prefix, and the `env` lines that must then be printed.
fn prefixed_env_from(source: Value) -> (Value, Vec<String>) {
    let mut from = Vec::new();
    let mut want = Vec::new();
    for prefix in ENV_PREFIXES {
        let mut s = source.clone();
        if !prefix.is_empty() {
            s["prefix"] = json!(prefix);
        }
        from.push(s);
        for i in 1..=3 {
            want.push(format!("{prefix}data-{i}=value-{i}"));
        }
    }
    (json!({ "envFrom": from }), want)
}

/// Runs `env` with `source` under every prefix and checks every variable.
async fn env_prefixes(c: &Ctx, pod_prefix: &str, source: Value) -> Result<()> {
    let (env, want) = prefixed_env_from(source);
    let p = env_pod(c, &format!("{pod_prefix}-{}", uid()), "env-test", env);
    let out = c.pod_output(p, None).await?;
    // Whole lines: "data-1=value-1" is also the tail of "1-data-1=value-1".
    let lines: Vec<&str> = out.lines().collect();
    for w in &want {
        ensure!(
            lines.contains(&w.as_str()),
            "env does not print the line {w:?}; output:\n{out}"
        );
    }
    Ok(())
}

async fn configmap_env_prefixes(c: Ctx) -> Result<()> {
    let cm = create_configmap(&c).await?;
    env_prefixes(&c, "pod-configmaps", json!({"configMapRef": {"name": cm}})).await
}

async fn secret_env_prefixes(c: Ctx) -> Result<()> {
    let s = create_secret(&c).await?;
    env_prefixes(&c, "pod-secret", json!({"secretRef": {"name": s}})).await
}
