//! Admission webhook conformance, the parts observable through the API
//! alone: the admissionregistration.k8s.io discovery documents, and
//! webhook configurations' matchConditions (stored and updated as given;
//! invalid CEL rejected at create).

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};

use crate::conformance;
use crate::ctx::{from_json, Ctx};
use crate::Test;

/// The tests of this module.
pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Admission webhook, discovery document", discovery),
        conformance!(
            "Mutating Admission webhook, create and update mutating webhook configuration with matchConditions",
            mutating_match_conditions
        ),
        conformance!(
            "Validating Admission webhook, create and update validating webhook configuration with matchConditions",
            validating_match_conditions
        ),
        conformance!(
            "Mutating Admission webhook, reject mutating webhook configurations with invalid matchConditions",
            mutating_invalid_match_conditions
        ),
        conformance!(
            "Validing Admission webhook, reject validating webhook configurations with invalid matchConditions",
            validating_invalid_match_conditions
        ),
    ]
}

const GROUP: &str = "admissionregistration.k8s.io";
/// The webhook service upstream deploys (port 8443); these tests only
/// store configurations naming it, so it need not run.
const SERVICE: &str = "e2e-test-webhook";
const SERVICE_PORT: i32 = 8443;

/// GET `path` from the API server as JSON.
async fn raw_json(c: &Ctx, path: &str) -> Result<Value> {
    let req = kube::core::Request::new("")
        .get(path.trim_start_matches('/'), &Default::default())
        .context("build request")?;
    let text = c
        .client
        .request_text(req)
        .await
        .with_context(|| format!("fetching {path}"))?;
    serde_json::from_str(&text).with_context(|| format!("{path} is not JSON: {text}"))
}

fn has_v1(versions: &Value) -> bool {
    versions
        .as_array()
        .is_some_and(|vs| vs.iter().any(|v| v["version"] == "v1"))
}

async fn discovery(c: Ctx) -> Result<()> {
    let apis = raw_json(&c, "/apis").await?;
    let group = apis["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["name"] == GROUP))
        .with_context(|| format!("{GROUP} API group not found in the /apis discovery document"))?;
    ensure!(
        has_v1(&group["versions"]),
        "{GROUP}/v1 not found in the /apis discovery document"
    );

    let group = raw_json(&c, &format!("/apis/{GROUP}")).await?;
    ensure!(
        group["name"] == GROUP,
        "wrong group name in /apis/{GROUP}: {group}"
    );
    ensure!(
        has_v1(&group["versions"]),
        "{GROUP}/v1 not found in the /apis/{GROUP} discovery document"
    );

    let list = raw_json(&c, &format!("/apis/{GROUP}/v1")).await?;
    ensure!(
        list["groupVersion"] == format!("{GROUP}/v1"),
        "wrong groupVersion in /apis/{GROUP}/v1: {}",
        list["groupVersion"]
    );
    for r in [
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
    ] {
        let found = list["resources"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(|x| x["name"] == r));
        ensure!(
            found,
            "{r} not found in the /apis/{GROUP}/v1 discovery document"
        );
    }
    Ok(())
}

/// One webhook of upstream's matchConditions fixtures: configmap CREATE,
/// scoped to namespaces labelled `name`=true, with `conditions`.
fn webhook(c: &Ctx, name: &str, hook: &str, path: &str, conditions: &Value) -> Value {
    json!({
        "name": hook,
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "clientConfig": {"service": {"namespace": c.ns, "name": SERVICE, "path": path, "port": SERVICE_PORT}},
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {"matchLabels": {name: "true"}},
        "matchConditions": conditions,
    })
}

fn initial_conditions() -> Value {
    json!([{"name": "expression-1", "expression": "object.metadata.namespace == 'production'"}])
}

fn updated_conditions() -> Value {
    json!([
        {"name": "expression-1", "expression": "object.metadata.namespace == 'production'"},
        {"name": "expression-2", "expression": "object.metadata.namespace == 'staging'"},
    ])
}

fn invalid_conditions() -> Value {
    json!([{"name": "invalid-expression-1", "expression": "... [] bad expression"}])
}

fn mutating(c: &Ctx, name: &str, conditions: &Value) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook(c, name, "adding-configmap-data.k8s.io", "/mutating-configmaps", conditions)],
    })
}

fn validating(c: &Ctx, name: &str, conditions: &Value) -> Value {
    let mut v = json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook(c, name, "validation-webhook-with-match-conditions.k8s.io", "/always-deny", conditions)],
    });
    v["webhooks"][0]["matchPolicy"] = json!("Equivalent");
    v
}

/// The first webhook's matchConditions of a stored configuration.
fn stored_conditions<K: serde::Serialize>(obj: &K) -> Result<Value> {
    let v = serde_json::to_value(obj)?;
    Ok(v["webhooks"][0]["matchConditions"].clone())
}

async fn mutating_match_conditions(c: Ctx) -> Result<()> {
    let api: Api<MutatingWebhookConfiguration> = c.all();
    let name = c.name("webhook-match");
    let obj: MutatingWebhookConfiguration = from_json(mutating(&c, &name, &initial_conditions()))?;
    api.create(&PostParams::default(), &obj)
        .await
        .context("create the mutating webhook configuration")?;
    let res = async {
        let mut got = api.get(&name).await?;
        ensure!(
            stored_conditions(&got)? == initial_conditions(),
            "match conditions not stored as created: {}",
            stored_conditions(&got)?
        );
        if let Some(h) = got.webhooks.as_mut().and_then(|w| w.first_mut()) {
            h.match_conditions = Some(from_json(updated_conditions())?);
        }
        api.replace(&name, &PostParams::default(), &got).await?;
        let got = api.get(&name).await?;
        ensure!(
            stored_conditions(&got)? == updated_conditions(),
            "match conditions not updated: {}",
            stored_conditions(&got)?
        );
        Ok(())
    }
    .await;
    let del = api.delete(&name, &DeleteParams::default()).await;
    res?;
    del.context("deleting the mutating webhook configuration")?;
    Ok(())
}

async fn validating_match_conditions(c: Ctx) -> Result<()> {
    let api: Api<ValidatingWebhookConfiguration> = c.all();
    let name = c.name("webhook-match");
    let obj: ValidatingWebhookConfiguration =
        from_json(validating(&c, &name, &initial_conditions()))?;
    api.create(&PostParams::default(), &obj)
        .await
        .context("create the validating webhook configuration")?;
    let res = async {
        let mut got = api.get(&name).await?;
        ensure!(
            stored_conditions(&got)? == initial_conditions(),
            "match conditions not stored as created: {}",
            stored_conditions(&got)?
        );
        if let Some(h) = got.webhooks.as_mut().and_then(|w| w.first_mut()) {
            h.match_conditions = Some(from_json(updated_conditions())?);
        }
        api.replace(&name, &PostParams::default(), &got).await?;
        let got = api.get(&name).await?;
        ensure!(
            stored_conditions(&got)? == updated_conditions(),
            "match conditions not updated: {}",
            stored_conditions(&got)?
        );
        Ok(())
    }
    .await;
    let del = api.delete(&name, &DeleteParams::default()).await;
    res?;
    del.context("deleting the validating webhook configuration")?;
    Ok(())
}

/// Checks that creating failed with a CEL "compilation failed" error;
/// deletes the object if it was wrongly created.
async fn expect_compilation_failed<K>(
    api: &Api<K>,
    name: &str,
    created: kube::Result<K>,
) -> Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match created {
        Ok(_) => {
            let _ = api.delete(name, &DeleteParams::default()).await;
            bail!("a webhook configuration with an invalid CEL match condition was accepted")
        }
        Err(e) => {
            let msg = e.to_string();
            ensure!(
                msg.contains("compilation failed"),
                "create failed without \"compilation failed\": {msg}"
            );
            Ok(())
        }
    }
}

async fn mutating_invalid_match_conditions(c: Ctx) -> Result<()> {
    let api: Api<MutatingWebhookConfiguration> = c.all();
    let name = c.name("webhook-invalid");
    let obj: MutatingWebhookConfiguration = from_json(mutating(&c, &name, &invalid_conditions()))?;
    let created = api.create(&PostParams::default(), &obj).await;
    expect_compilation_failed(&api, &name, created).await
}

async fn validating_invalid_match_conditions(c: Ctx) -> Result<()> {
    let api: Api<ValidatingWebhookConfiguration> = c.all();
    let name = c.name("webhook-invalid");
    let obj: ValidatingWebhookConfiguration =
        from_json(validating(&c, &name, &invalid_conditions()))?;
    let created = api.create(&PostParams::default(), &obj).await;
    expect_compilation_failed(&api, &name, created).await
}
