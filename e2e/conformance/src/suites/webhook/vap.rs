//! ValidatingAdmissionPolicy enforcement (upstream's
//! validatingadmissionpolicy.go): CEL validations, with and without
//! variables, bound to the test's namespace, deny Deployments with too few
//! replicas and leave other kinds alone.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{json, Value};

use super::fixture::{self, api_status, err_text, label_namespace, Cleanup, Undo};
use crate::conformance;
use crate::ctx::{from_json, Ctx};
use crate::Test;

/// The tests of this module (upstream names both "ValidatingAdmissionPolicy").
pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!(
            "[sig-api-machinery] ValidatingAdmissionPolicy [Privileged:ClusterAdmin] should validate against a Deployment [Conformance]",
            validate_deployment
        ),
        conformance!(
            "[sig-api-machinery] ValidatingAdmissionPolicy [Privileged:ClusterAdmin] should allow expressions to refer variables. [Conformance]",
            variables
        ),
    ]
}

/// Creates policy `<ns>.policy.example.com` matching Deployment creates
/// and updates in namespaces labelled `<ns>: "true"`, with `validations`
/// and `variables`, and its Deny binding `<ns>.binding.example.com`.
async fn create_policy(
    c: &Ctx,
    cleanup: &Cleanup,
    validations: Value,
    variables: Value,
) -> Result<()> {
    let unique = c.ns.clone();
    let policies = c.all::<ValidatingAdmissionPolicy>();
    match policies.list(&ListParams::default().limit(1)).await {
        Err(kube::Error::Api(s)) if s.code == 404 => bail!(
            "the API server does not serve admissionregistration.k8s.io/v1 validatingadmissionpolicies (404)"
        ),
        other => {
            other.context("listing validatingadmissionpolicies")?;
        }
    }
    label_namespace(c, &c.ns, &unique).await?;
    let name = format!("{unique}.policy.example.com");
    let mut spec = json!({
        "matchConstraints": {
            "namespaceSelector": {"matchLabels": {unique.clone(): "true"}},
            "resourceRules": [{
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"],
            }],
        },
        "validations": validations,
    });
    if !variables.is_null() {
        spec["variables"] = variables;
    }
    let policy: ValidatingAdmissionPolicy = from_json(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }))?;
    policies
        .create(&PostParams::default(), &policy)
        .await
        .context("create policy")?;
    cleanup.add(Undo::Policy(name.clone()));
    let binding_name = format!("{unique}.binding.example.com");
    let binding: ValidatingAdmissionPolicyBinding = from_json(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": binding_name},
        "spec": {
            "policyName": name,
            "matchResources": {"namespaceSelector": {"matchLabels": {unique: "true"}}},
            "validationActions": ["Deny"],
        },
    }))?;
    c.all::<ValidatingAdmissionPolicyBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .context("create policy binding")?;
    cleanup.add(Undo::PolicyBinding(binding_name));
    Ok(())
}

/// Upstream's basicDeployment/basicReplicaSet (with the suite's local
/// nginx image, never pulled from a registry).
fn workload(c: &Ctx, kind: &str, name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "labels": {"app": "nginx"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": c.env.images.nginx}]},
            },
        },
    })
}

/// Creates single-replica marker Deployments until the policy denies one
/// as Invalid: the policy is in effect.
async fn wait_marker_denied(c: &Ctx) -> Result<()> {
    let deployments = c.api::<Deployment>();
    let marker: Deployment = from_json(workload(c, "Deployment", "marker-deployment", 1))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let res = deployments.create(&PostParams::default(), &marker).await;
        let _ = deployments
            .delete("marker-deployment", &DeleteParams::background())
            .await;
        match res {
            Err(e) if api_status(&e).is_some_and(|(code, _)| code == 422) => return Ok(()),
            Err(e) => return Err(e).context("wait for marker: creating the marker deployment"),
            Ok(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("wait for marker: the single-replica marker deployment was still admitted after 60s (policy not enforced)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After the marker: a Deployment with `replicas` is allowed, and a
/// single-replica ReplicaSet (not matched) is too.
async fn expect_allowed(c: &Ctx, replicas: i32) -> Result<()> {
    let deployments = c.api::<Deployment>();
    let d: Deployment = from_json(workload(c, "Deployment", "replicated", replicas))?;
    let res = deployments.create(&PostParams::default(), &d).await;
    let _ = deployments
        .delete("replicated", &DeleteParams::background())
        .await;
    res.map_err(|e| anyhow::anyhow!("create replicated Deployment: {}", err_text(&e)))?;
    let replicasets = c.api::<ReplicaSet>();
    let rs: ReplicaSet = from_json(workload(c, "ReplicaSet", "non-replicated", 1))?;
    let res = replicasets.create(&PostParams::default(), &rs).await;
    let _ = replicasets
        .delete("non-replicated", &DeleteParams::background())
        .await;
    res.map_err(|e| anyhow::anyhow!("create non-replicated ReplicaSet: {}", err_text(&e)))?;
    Ok(())
}

async fn validate_deployment(c: Ctx) -> Result<()> {
    fixture::run(c, |c, cleanup| async move {
        let validations = json!([
            {
                "expression": "object.spec.replicas > 1",
                "messageExpression": "'wants replicas > 1, got ' + object.spec.replicas",
            },
            {
                "expression": format!("namespaceObject.metadata.name == '{}'", c.ns),
                "message": "Internal error! Other namespace should not be allowed.",
            },
        ]);
        create_policy(&c, &cleanup, validations, Value::Null).await?;
        wait_marker_denied(&c).await?;
        expect_allowed(&c, 2).await
    })
    .await
}

async fn variables(c: Ctx) -> Result<()> {
    fixture::run(c, |c, cleanup| async move {
        let variables = json!([
            {"name": "replicas", "expression": "object.spec.replicas"},
            {"name": "oddReplicas", "expression": "variables.replicas % 2 == 1"},
        ]);
        let validations = json!([
            {"expression": "variables.replicas > 1"},
            {"expression": "variables.oddReplicas"},
        ]);
        create_policy(&c, &cleanup, validations, variables).await?;
        wait_marker_denied(&c).await?;
        expect_allowed(&c, 3).await
    })
    .await
}
