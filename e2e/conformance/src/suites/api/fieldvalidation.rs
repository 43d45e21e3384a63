//! FieldValidation: server-side strict field validation of typed objects
//! (unknown, duplicate and unknown metadata fields) and of custom resources
//! sent as server-side apply YAML.

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::{json, Value};

use super::{create_crd, raw, with_crd, Raw};
use crate::conformance;
use crate::ctx::Ctx;
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!(
            "Server side field validation, typed object",
            typed_unknown_duplicate
        ),
        conformance!(
            "Server side field validation, typed unknown metadata",
            typed_unknown_metadata
        ),
        conformance!(
            "Server side field validation, valid CR with validation schema",
            valid_cr
        ),
        conformance!(
            "Server side field validation, unknown fields CR no validation schema",
            unknown_no_schema
        ),
        conformance!(
            "Server side field validation, unknown fields CR fails validation",
            unknown_with_schema
        ),
        conformance!(
            "Server side field validation, unknown metadata",
            unknown_metadata_cr
        ),
        conformance!("Server side field validation, CR duplicates", duplicates_cr),
    ]
}

const QUERY: &str = "fieldManager=field_validation_mgr&fieldValidation=Strict";

/// The error message of a failed request: the Status message when the body
/// is a Status, else the body.
fn message(r: &Raw) -> String {
    serde_json::from_str::<Value>(&r.body)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or_else(|| r.body.clone())
}

/// POSTs the raw JSON `body` as a Deployment with strict validation; it
/// must fail with an error containing `want`.
async fn post_deployment(c: &Ctx, body: &str, want: &str) -> Result<()> {
    let path = format!("/apis/apps/v1/namespaces/{}/deployments?{QUERY}", c.ns);
    let r = raw(
        c,
        "POST",
        &path,
        Some(("application/json", body.as_bytes().to_vec())),
        &[],
    )
    .await?;
    ensure!(
        !(200..300).contains(&r.status),
        "the deployment was created (status {}), want an error containing {want:?}",
        r.status
    );
    let msg = message(&r);
    ensure!(
        msg.contains(want),
        "error {msg:?} does not contain {want:?}"
    );
    Ok(())
}

async fn typed_unknown_duplicate(c: Ctx) -> Result<()> {
    let body = r#"{
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "my-dep",
        "labels": {"app": "nginx"}
    },
    "spec": {
        "unknownField": "foo",
        "replicas": 2,
        "replicas": 3,
        "selector": {
            "matchLabels": {
                "app": "nginx"
            }
        },
        "template": {
            "metadata": {
                "labels": {
                    "app": "nginx"
                }
            },
            "spec": {
                "containers": [{
                    "name":  "nginx",
                    "image": "nginx:latest"
                }]
            }
        }
    }
}"#;
    post_deployment(
        &c,
        body,
        r#"strict decoding error: unknown field "spec.unknownField", duplicate field "spec.replicas""#,
    )
    .await
}

async fn typed_unknown_metadata(c: Ctx) -> Result<()> {
    let body = r#"{
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "my-dep",
        "unknownMeta": "foo",
        "labels": {"app": "nginx"}
    },
    "spec": {
        "selector": {
            "matchLabels": {
                "app": "nginx"
            }
        },
        "template": {
            "metadata": {
                "labels": {
                    "app": "nginx"
                }
            },
            "spec": {
                "containers": [{
                    "name":  "nginx",
                    "image": "nginx:latest"
                }]
            }
        }
    }
}"#;
    post_deployment(
        &c,
        body,
        r#"strict decoding error: unknown field "metadata.unknownMeta""#,
    )
    .await
}

/// The `ports` property of the test schemas: a map-list keyed by
/// containerPort and protocol.
fn ports_schema() -> Value {
    json!({
        "type": "array",
        "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
        "x-kubernetes-list-type": "map",
        "items": {
            "properties": {
                "containerPort": {"format": "int32", "type": "integer"},
                "hostIP": {"type": "string"},
                "hostPort": {"format": "int32", "type": "integer"},
                "name": {"type": "string"},
                "protocol": {"type": "string"},
            },
            "required": ["containerPort", "protocol"],
            "type": "object",
        },
    })
}

fn cron_schema() -> Value {
    json!({"type": "string", "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"})
}

/// Schema with spec.foo, spec.cronSpec and spec.ports.
fn schema_plain() -> Value {
    json!({"openAPIV3Schema": {"type": "object", "properties": {"spec": {
        "type": "object",
        "properties": {"foo": {"type": "string"}, "cronSpec": cron_schema(), "ports": ports_schema()},
    }}}})
}

/// Upstream's random-name multi-version CRD (v1beta1 served, v1 served and
/// stored, both with status and scale subresources), cluster-scoped, with
/// `schema` (None: allow anything) in every version.
fn multi_version_crd(schema: Option<Value>) -> (String, String, Value) {
    let g = format!("foo{}", crate::ctx::suffix());
    let name = format!("{g}s.mygroup.example.com");
    let schema = schema.unwrap_or_else(super::allow_all_schema);
    let subresources = json!({
        "status": {},
        "scale": {"specReplicasPath": ".spec.num.num1", "statusReplicasPath": ".status.num.num2"},
    });
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": "mygroup.example.com",
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false, "schema": schema, "subresources": subresources},
                {"name": "v1", "served": true, "storage": true, "schema": schema, "subresources": subresources},
            ],
            "names": {"plural": format!("{g}s"), "singular": g, "kind": g, "listKind": format!("{g}List")},
            "scope": "Cluster",
        },
    });
    (name, g, crd)
}

/// Creates a CRD with `schema`, then server-side applies `yaml` (with
/// `{apiVersion}`, `{kind}`, `{ns}` filled in) as CR `mytest` with strict
/// validation; `check` judges the response.
async fn apply_cr(
    c: &Ctx,
    schema: Option<Value>,
    yaml: &str,
    check: impl FnOnce(&Raw) -> Result<()>,
) -> Result<()> {
    let (name, kind, crd) = multi_version_crd(schema);
    create_crd(c, crd).await.context("cannot create crd")?;
    with_crd(c, &name, || async {
        let body = yaml
            .replace("{apiVersion}", "mygroup.example.com/v1beta1")
            .replace("{kind}", &kind)
            .replace("{ns}", &c.ns);
        let path = format!("/apis/mygroup.example.com/v1beta1/{kind}s/mytest?{QUERY}");
        let r = raw(
            c,
            "PATCH",
            &path,
            Some(("application/apply-patch+yaml", body.into_bytes())),
            &[],
        )
        .await?;
        check(&r)
    })
    .await
}

fn succeeded(r: &Raw) -> Result<()> {
    if !(200..300).contains(&r.status) {
        bail!("apply failed with status {}: {}", r.status, r.body);
    }
    Ok(())
}

/// The response body must contain one of `wants`.
fn body_contains(r: &Raw, wants: &[&str]) -> Result<()> {
    ensure!(
        wants.iter().any(|w| r.body.contains(w)),
        "response (status {}) does not contain any of {wants:?}:\n{}",
        r.status,
        r.body
    );
    Ok(())
}

async fn valid_cr(c: Ctx) -> Result<()> {
    let yaml = r#"
apiVersion: {apiVersion}
kind: {kind}
metadata:
  name: mytest
spec:
  foo: foo1
  cronSpec: "* * * * */5"
  ports:
  - name: x
    containerPort: 80
    protocol: TCP"#;
    apply_cr(&c, Some(schema_plain()), yaml, succeeded).await
}

async fn unknown_no_schema(c: Ctx) -> Result<()> {
    let yaml = r#"
apiVersion: {apiVersion}
kind: {kind}
metadata:
  name: mytest
spec:
  unknown: uk1
  cronSpec: "* * * * */5"
  ports:
  - name: x
    containerPort: 80
    protocol: TCP"#;
    apply_cr(&c, None, yaml, succeeded).await
}

async fn unknown_with_schema(c: Ctx) -> Result<()> {
    let yaml = r#"
apiVersion: {apiVersion}
kind: {kind}
metadata:
  name: mytest
unknownField: unknown
spec:
  foo: foo1
  cronSpec: "* * * * */5"
  ports:
  - name: x
    containerPort: 80
    protocol: TCP"#;
    apply_cr(&c, Some(schema_plain()), yaml, |r| {
        body_contains(r, &[".unknownField: field not declared in schema"])
    })
    .await
}

async fn unknown_metadata_cr(c: Ctx) -> Result<()> {
    let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": true,
                "properties": {
                    "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
                    "spec": {"type": "object"},
                },
            },
            "foo": {"type": "string"},
            "cronSpec": cron_schema(),
            "ports": ports_schema(),
        },
    }}}});
    let yaml = r#"
apiVersion: {apiVersion}
kind: {kind}
metadata:
  name: mytest
  unknownMeta: unknown
spec:
  template:
    apiversion: foo/v1
    kind: Sub
    metadata:
        unknownSubMeta: unknown
        name: subobject
        namespace: {ns}
  foo: foo1
  cronSpec: "* * * * */5"
  ports:
  - name: x
    containerPort: 80
    protocol: TCP"#;
    apply_cr(&c, Some(schema), yaml, |r| {
        body_contains(
            r,
            &[
                ".spec.template.metadata.unknownSubMeta: field not declared in schema",
                ".metadata.unknownMeta: field not declared in schema",
            ],
        )
    })
    .await
}

async fn duplicates_cr(c: Ctx) -> Result<()> {
    let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"foo": {"type": "string"}, "cronSpec": cron_schema(), "ports": ports_schema()},
    }}}});
    let yaml = r#"
apiVersion: {apiVersion}
kind: {kind}
metadata:
  name: mytest
spec:
  unknown: uk1
  foo: foo1
  foo: foo2
  cronSpec: "* * * * */5"
  ports:
  - name: x
    containerPort: 80
    protocol: TCP"#;
    // The body is a JSON Status, so the quotes of the message are escaped.
    apply_cr(&c, Some(schema), yaml, |r| {
        body_contains(r, &[r#"line 9: key \"foo\" already set in map"#])
    })
    .await
}
