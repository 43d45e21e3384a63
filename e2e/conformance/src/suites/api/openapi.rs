//! CustomResourcePublishOpenAPI: CRD schemas published in /openapi/v2 (per
//! group, version and kind, following renames and unserved versions), and
//! kubectl validation and explain driven by them.

use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use regex::Regex;
use serde_json::{json, Value};

use super::{create_crd, delete_crd, raw};
use crate::conformance;
use crate::ctx::Ctx;
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Custom Resource OpenAPI Publish, with validation schema", with_schema),
        conformance!(
            "Custom Resource OpenAPI Publish, with x-kubernetes-preserve-unknown-fields in object",
            without_schema
        ),
        conformance!(
            "Custom Resource OpenAPI Publish, with x-kubernetes-preserve-unknown-fields at root",
            preserve_root
        ),
        conformance!(
            "Custom Resource OpenAPI Publish, with x-kubernetes-preserve-unknown-fields in embedded object",
            preserve_nested
        ),
        conformance!("Custom Resource OpenAPI Publish, varying groups", varying_groups),
        conformance!("Custom Resource OpenAPI Publish, varying versions", varying_versions),
        conformance!("Custom Resource OpenAPI Publish, varying kinds", varying_kinds),
        conformance!("Custom Resource OpenAPI Publish, version rename", version_rename),
        conformance!("Custom Resource OpenAPI Publish, stop serving version", stop_serving),
    ]
}

const SCHEMA_FOO: &str = r#"description: Foo CRD for Testing
type: object
properties:
  spec:
    type: object
    description: Specification of Foo
    properties:
      bars:
        description: List of Bars and their specs.
        type: array
        items:
          type: object
          required:
          - name
          properties:
            name:
              description: Name of Bar.
              type: string
            age:
              description: Age of Bar.
              type: string
            feeling:
              description: Whether Bar is feeling great.
              type: string
              enum:
              - Great
              - Down
            bazs:
              description: List of Bazs.
              items:
                type: string
              type: array
  status:
    description: Status of Foo
    type: object
    properties:
      bars:
        description: List of Bars and their statuses.
        type: array
        items:
          type: object
          properties:
            name:
              description: Name of Bar.
              type: string
            available:
              description: Whether the Bar is installed.
              type: boolean
            quxType:
              description: Indicates to external qux type.
              pattern: in-tree|out-of-tree
              type: string
"#;

const SCHEMA_WALDO: &str = r#"description: Waldo CRD for Testing
type: object
properties:
  spec:
    description: Specification of Waldo
    type: object
    properties:
      dummy:
        description: Dummy property.
        type: object
  status:
    description: Status of Waldo
    type: object
    properties:
      bars:
        description: List of Bars and their statuses.
        type: array
        items:
          type: object
"#;

const SCHEMA_PRESERVE_ROOT: &str = r#"description: preserve-unknown-properties at root for Testing
x-kubernetes-preserve-unknown-fields: true
type: object
properties:
  spec:
    description: Specification of Waldo
    type: object
    properties:
      dummy:
        description: Dummy property.
        type: object
  status:
    description: Status of Waldo
    type: object
    properties:
      bars:
        description: List of Bars and their statuses.
        type: array
        items:
          type: object
"#;

const SCHEMA_PRESERVE_NESTED: &str = r#"description: preserve-unknown-properties in nested field for Testing
type: object
properties:
  spec:
    description: Specification of Waldo
    type: object
    x-kubernetes-preserve-unknown-fields: true
    properties:
      dummy:
        description: Dummy property.
        type: object
  status:
    description: Status of Waldo
    type: object
    properties:
      bars:
        description: List of Bars and their statuses.
        type: array
        items:
          type: object
"#;

/// What a CRD without a schema is published as.
const SCHEMA_EMPTY: &str = "type: object\n";

fn yaml(s: &str) -> Result<Value> {
    serde_yaml::from_str(s).context("test schema does not parse")
}

/// A test CRD (upstream's multi-version test CRD): namespaced, kind and
/// singular `e2e-test-crd-publish-openapi-<n>-crd`, plural with an `s`.
struct TestCrd {
    name: String,
    group: String,
    kind: String,
    plural: String,
    versions: Vec<String>,
}

impl TestCrd {
    /// The OpenAPI v2 definition name of `version`: the group reversed,
    /// then version and kind.
    fn definition(&self, version: &str) -> String {
        let group: Vec<&str> = self.group.split('.').rev().collect();
        format!("{}.{version}.{}", group.join("."), self.kind)
    }

    /// The first part of a custom resource of the first version, as JSON.
    fn meta(&self, name: &str) -> String {
        format!(
            r#""kind":"{}","apiVersion":"{}/{}","metadata":{{"name":"{name}"}}"#,
            self.kind, self.group, self.versions[0]
        )
    }
}

/// Creates the CRD in group `crd-publish-openapi-test-<suffix>.example.com`
/// with `versions` (the first one stored), each with `schema` (None: any
/// object), and waits until every version's definition is published as
/// `expect` (None: only its presence).
async fn setup_crd(
    c: &Ctx,
    schema: Option<&str>,
    expect: Option<&str>,
    group_suffix: &str,
    versions: &[&str],
) -> Result<TestCrd> {
    let group = format!("crd-publish-openapi-test-{group_suffix}.example.com");
    let n: u32 = rand::random_range(1000..10000);
    let kind = format!("e2e-test-crd-publish-openapi-{n}-crd");
    let plural = format!("{kind}s");
    let name = format!("{plural}.{group}");
    let props = match schema {
        Some(s) => yaml(s)?,
        None => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    };
    let vs: Vec<Value> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": v, "served": true, "storage": i == 0, "schema": {"openAPIV3Schema": props}}))
        .collect();
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind, "kind": kind, "listKind": format!("{kind}List")},
            "versions": vs,
        },
    });
    create_crd(c, crd).await.context("failed to create CRD")?;
    let t = TestCrd {
        name,
        group,
        kind,
        plural,
        versions: versions.iter().map(|v| v.to_string()).collect(),
    };
    for v in &t.versions {
        if let Err(e) = wait_for_definition(c, &t.definition(v), expect).await {
            let _ = delete_crd(c, &t.name).await;
            return Err(e);
        }
    }
    Ok(t)
}

/// Deletes the CRD and waits until none of its versions is published.
async fn cleanup_crd(c: &Ctx, t: &TestCrd) -> Result<()> {
    let _ = delete_crd(c, &t.name).await;
    for v in &t.versions {
        wait_for_definition_cleanup(c, &t.definition(v)).await?;
    }
    Ok(())
}

/// Ends a test with CRDs `crds` whose checks returned `res`: deletes them
/// (waiting for their definitions to go when the checks passed).
async fn finish(c: &Ctx, crds: &[TestCrd], res: Result<()>) -> Result<()> {
    let mut cleanup = Ok(());
    for t in crds {
        if res.is_ok() {
            if let Err(e) = cleanup_crd(c, t).await {
                cleanup = Err(e);
            }
        } else {
            let _ = delete_crd(c, &t.name).await;
        }
    }
    res.and(cleanup)
}

/// Removes what the server adds to a published CRD definition (the
/// metadata, apiVersion and kind properties, the group-version-kind and
/// selectable-fields extensions).
fn drop_defaults(d: &mut Value) {
    if let Some(o) = d.as_object_mut() {
        if let Some(p) = o.get_mut("properties").and_then(Value::as_object_mut) {
            p.remove("metadata");
            p.remove("apiVersion");
            p.remove("kind");
        }
        if o.get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| p.is_empty())
        {
            o.remove("properties");
        }
        o.remove("x-kubernetes-group-version-kind");
        o.remove("x-kubernetes-selectable-fields");
    }
}

/// Polls /openapi/v2 (every 500 ms, for up to 60 s) until `pred` holds
/// for the document 10 times in a row; `pred` returns why not.
async fn wait_for_openapi(c: &Ctx, pred: impl Fn(&Value) -> Option<String>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut etag: Option<String> = None;
    let mut cached = Value::Null;
    let mut last = String::new();
    loop {
        let mut ok = true;
        for _ in 0..10 {
            let inm = etag.clone();
            let headers: Vec<(&'static str, &str)> = inm
                .as_deref()
                .map(|e| ("if-none-match", e))
                .into_iter()
                .collect();
            let r = raw(c, "GET", "/openapi/v2", None, &headers).await?;
            if r.status == 304 {
                // The cached document is still current.
            } else if r.status != 200 {
                bail!("GET /openapi/v2: unexpected response {}", r.status);
            } else {
                cached = serde_json::from_str(&r.body).context("/openapi/v2 is not JSON")?;
                etag = r.etag.clone();
            }
            if let Some(why) = pred(&cached) {
                last = why;
                ok = false;
                break;
            }
        }
        if ok {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting for the OpenAPI spec condition; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until definition `name` is published, equal to `schema` when
/// given.
async fn wait_for_definition(c: &Ctx, name: &str, schema: Option<&str>) -> Result<()> {
    let expect = schema.map(yaml).transpose()?;
    wait_for_openapi(c, |doc| {
        let Some(d) = doc["definitions"].get(name) else {
            return Some(format!("definitions[{name:?}] not found"));
        };
        if let Some(e) = &expect {
            let mut d = d.clone();
            drop_defaults(&mut d);
            if &d != e {
                return Some(format!(
                    "definitions[{name:?}] does not match; expect: {e}, actual: {d}"
                ));
            }
        }
        None
    })
    .await
    .with_context(|| {
        format!("failed to wait for definition {name:?} to be served with the right OpenAPI schema")
    })
}

/// Waits until definition `name` is no longer published.
async fn wait_for_definition_cleanup(c: &Ctx, name: &str) -> Result<()> {
    wait_for_openapi(c, |doc| {
        doc["definitions"]
            .get(name)
            .map(|_| format!("definitions[{name:?}] still exists"))
    })
    .await
    .with_context(|| format!("failed to wait for definition {name:?} not to be served anymore"))
}

/// kubectl with `input` on stdin, in the test's namespace: Ok(stdout) or
/// Err(stderr).
async fn kubectl_in(
    c: &Ctx,
    input: &str,
    args: &[&str],
) -> Result<std::result::Result<String, String>> {
    let ns = format!("--namespace={}", c.ns);
    let mut all = vec![ns.as_str()];
    all.extend_from_slice(args);
    let (ok, out, err) = c.kubectl_output(&all, Some(input)).await?;
    Ok(if ok {
        Ok(out)
    } else {
        Err(format!("{err}{out}"))
    })
}

async fn kubectl_ok(c: &Ctx, input: Option<&str>, args: &[&str]) -> Result<String> {
    match kubectl_in(c, input.unwrap_or(""), args).await? {
        Ok(out) => Ok(out),
        Err(e) => bail!("kubectl {}: {}", args.join(" "), e.trim()),
    }
}

/// Creates, deletes, applies and deletes `cr` with kubectl: all must pass.
async fn create_apply_delete(c: &Ctx, t: &TestCrd, cr: &str, name: &str) -> Result<()> {
    kubectl_ok(c, Some(cr), &["create", "-f", "-"])
        .await
        .with_context(|| format!("failed to create CR {cr}"))?;
    kubectl_ok(c, None, &["delete", &t.plural, name])
        .await
        .context("failed to delete CR")?;
    kubectl_ok(c, Some(cr), &["apply", "-f", "-"])
        .await
        .with_context(|| format!("failed to apply CR {cr}"))?;
    kubectl_ok(c, None, &["delete", &t.plural, name])
        .await
        .context("failed to delete CR")?;
    Ok(())
}

/// `kubectl <verb> -f -` of `cr` must fail with an error containing one of
/// `wants`.
async fn expect_rejected(c: &Ctx, verb: &str, cr: &str, wants: &[&str]) -> Result<()> {
    match kubectl_in(c, cr, &[verb, "-f", "-"]).await? {
        Ok(_) => bail!("kubectl {verb} of {cr} unexpectedly succeeded"),
        Err(e) if wants.iter().any(|w| e.contains(w)) => Ok(()),
        Err(e) => bail!("kubectl {verb} of {cr}: error {e:?} does not contain any of {wants:?}"),
    }
}

/// `kubectl explain <what>` must match `pattern`.
async fn verify_explain(c: &Ctx, what: &str, pattern: &str) -> Result<()> {
    let out = kubectl_ok(c, None, &["explain", what])
        .await
        .with_context(|| format!("failed to explain {what}"))?;
    let re = Regex::new(pattern)?;
    ensure!(
        re.is_match(&out),
        "kubectl explain {what} result {{{out}}} doesn't match pattern {{{pattern}}}"
    );
    Ok(())
}

async fn with_schema(c: Ctx) -> Result<()> {
    let t = setup_crd(&c, Some(SCHEMA_FOO), Some(SCHEMA_FOO), "foo", &["v1"]).await?;
    let plural = t.plural.clone();
    let meta = t.meta("test-foo");
    let crds = vec![t];
    let body = async {
        let t = &crds[0];
        let valid = format!(r#"{{{meta},"spec":{{"bars":[{{"name":"test-bar"}}]}}}}"#);
        create_apply_delete(&c, t, &valid, "test-foo").await?;

        let bad_enum = format!(
            r#"{{{meta},"spec":{{"bars":[{{"name":"test-bar", "feeling":"NonExistentValue"}}]}}}}"#
        );
        expect_rejected(
            &c,
            "create",
            &bad_enum,
            &[r#"Unsupported value: "NonExistentValue""#],
        )
        .await?;

        let unknown = format!(r#"{{{meta},"spec":{{"foo":true}}}}"#);
        let unknown_errs = [r#"unknown field "foo""#, r#"unknown field "spec.foo""#];
        expect_rejected(&c, "create", &unknown, &unknown_errs).await?;
        expect_rejected(&c, "apply", &unknown, &unknown_errs).await?;

        let no_required = format!(r#"{{{meta},"spec":{{"bars":[{{"age":"10"}}]}}}}"#);
        let required_errs = [
            r#"missing required field "name""#,
            "spec.bars[0].name: Required value",
        ];
        expect_rejected(&c, "create", &no_required, &required_errs).await?;
        expect_rejected(&c, "apply", &no_required, &required_errs).await?;

        verify_explain(
            &c,
            &plural,
            r"(?s)DESCRIPTION:.*Foo CRD for Testing.*FIELDS:.*apiVersion.*<string>.*APIVersion defines.*spec.*<Object>.*Specification of Foo",
        )
        .await?;
        verify_explain(
            &c,
            &format!("{plural}.metadata"),
            r"(?s)DESCRIPTION:.*Standard object's metadata.*FIELDS:.*creationTimestamp.*<string>.*CreationTimestamp is a timestamp",
        )
        .await?;
        verify_explain(
            &c,
            &format!("{plural}.spec"),
            r"(?s)DESCRIPTION:.*Specification of Foo.*FIELDS:.*bars.*<\[\]Object>.*List of Bars and their specs",
        )
        .await?;
        verify_explain(
            &c,
            &format!("{plural}.spec.bars"),
            r"(?s)(FIELD|RESOURCE):.*bars.*<\[\]Object>.*DESCRIPTION:.*List of Bars and their specs.*FIELDS:.*bazs.*<\[\]string>.*List of Bazs.*name.*<string>.*Name of Bar",
        )
        .await?;

        match kubectl_in(&c, "", &["explain", &format!("{plural}.spec.bars2")]).await? {
            Err(e) if e.contains(r#"field "bars2" does not exist"#) => {}
            other => {
                bail!("unexpected result when explaining a property that doesn't exist: {other:?}")
            }
        }
        Ok(())
    };
    let res = body.await;
    finish(&c, &crds, res).await
}

/// The shared part of the three tests of CRDs that accept unknown fields:
/// create/apply of `cr_tail` pass, and explain matches `pattern` (with
/// `{kind}` replaced by the kind).
async fn unknown_fields(
    c: &Ctx,
    schema: Option<&str>,
    expect: Option<&str>,
    suffix: &str,
    cr_tail: &str,
    pattern: &str,
) -> Result<()> {
    let t = setup_crd(c, schema, expect, suffix, &["v1"]).await?;
    let crds = vec![t];
    let body = async {
        let t = &crds[0];
        let cr = format!("{{{},{cr_tail}}}", t.meta("test-cr"));
        create_apply_delete(c, t, &cr, "test-cr").await?;
        verify_explain(
            c,
            &t.plural,
            &pattern.replace("{kind}", &regex::escape(&t.kind)),
        )
        .await
    };
    let res = body.await;
    finish(c, &crds, res).await
}

async fn without_schema(c: Ctx) -> Result<()> {
    unknown_fields(
        &c,
        None,
        Some(SCHEMA_EMPTY),
        "empty",
        r#""a":{"b":[{"c":"d"}]}"#,
        r"(?s)DESCRIPTION:.*<empty>",
    )
    .await
}

async fn preserve_root(c: Ctx) -> Result<()> {
    unknown_fields(
        &c,
        Some(SCHEMA_PRESERVE_ROOT),
        None,
        "unknown-at-root",
        r#""a":{"b":[{"c":"d"}]}"#,
        r"(?s)KIND:.*{kind}",
    )
    .await
}

async fn preserve_nested(c: Ctx) -> Result<()> {
    unknown_fields(
        &c,
        Some(SCHEMA_PRESERVE_NESTED),
        None,
        "unknown-in-nested",
        r#""spec":{"a":null,"b":[{"c":"d"}]}"#,
        r"(?s)DESCRIPTION:.*preserve-unknown-properties in nested field for Testing",
    )
    .await
}

async fn varying_groups(c: Ctx) -> Result<()> {
    let mut crds = vec![setup_crd(&c, Some(SCHEMA_FOO), Some(SCHEMA_FOO), "foo", &["v1"]).await?];
    let res = async {
        crds.push(
            setup_crd(
                &c,
                Some(SCHEMA_WALDO),
                Some(SCHEMA_WALDO),
                "waldo",
                &["v1beta1"],
            )
            .await?,
        );
        let (foo_crd, waldo_crd) = (&crds[0], &crds[1]);
        ensure!(
            foo_crd.group != waldo_crd.group,
            "CRDs should be of different groups"
        );
        wait_for_definition(&c, &waldo_crd.definition("v1beta1"), Some(SCHEMA_WALDO)).await?;
        wait_for_definition(&c, &foo_crd.definition("v1"), Some(SCHEMA_FOO)).await
    }
    .await;
    finish(&c, &crds, res).await
}

/// Two CRDs in the common group, foo at `v_foo` and waldo at `v_waldo`:
/// both definitions are published.
async fn two_in_common_group(c: &Ctx, v_foo: &str, v_waldo: &str) -> Result<()> {
    let mut crds = vec![
        setup_crd(
            c,
            Some(SCHEMA_FOO),
            Some(SCHEMA_FOO),
            "common-group",
            &[v_foo],
        )
        .await?,
    ];
    let res = async {
        crds.push(
            setup_crd(
                c,
                Some(SCHEMA_WALDO),
                Some(SCHEMA_WALDO),
                "common-group",
                &[v_waldo],
            )
            .await?,
        );
        let (foo_crd, waldo_crd) = (&crds[0], &crds[1]);
        ensure!(
            foo_crd.group == waldo_crd.group,
            "CRDs should be of the same group"
        );
        wait_for_definition(c, &waldo_crd.definition(v_waldo), Some(SCHEMA_WALDO)).await?;
        wait_for_definition(c, &foo_crd.definition(v_foo), Some(SCHEMA_FOO)).await
    }
    .await;
    finish(c, &crds, res).await
}

async fn varying_versions(c: Ctx) -> Result<()> {
    // One CRD with two versions.
    let crds = vec![
        setup_crd(
            &c,
            Some(SCHEMA_FOO),
            Some(SCHEMA_FOO),
            "multi-ver",
            &["v2", "v3"],
        )
        .await?,
    ];
    let res = async {
        let t = &crds[0];
        wait_for_definition(&c, &t.definition("v3"), Some(SCHEMA_FOO)).await?;
        wait_for_definition(&c, &t.definition("v2"), Some(SCHEMA_FOO)).await
    }
    .await;
    finish(&c, &crds, res).await?;
    // Two CRDs of one group in different versions.
    two_in_common_group(&c, "v4", "v5").await
}

async fn varying_kinds(c: Ctx) -> Result<()> {
    two_in_common_group(&c, "v6", "v6").await
}

async fn version_rename(c: Ctx) -> Result<()> {
    let mut crds = vec![
        setup_crd(
            &c,
            Some(SCHEMA_FOO),
            Some(SCHEMA_FOO),
            "multi-ver",
            &["v2", "v3"],
        )
        .await?,
    ];
    let res = async {
        let t = &crds[0];
        wait_for_definition(&c, &t.definition("v3"), Some(SCHEMA_FOO)).await?;
        wait_for_definition(&c, &t.definition("v2"), Some(SCHEMA_FOO)).await?;

        // rename v3 to v4
        let patch = json!([
            {"op": "test", "path": "/spec/versions/1/name", "value": "v3"},
            {"op": "replace", "path": "/spec/versions/1/name", "value": "v4"},
        ]);
        let api: Api<CustomResourceDefinition> = c.all();
        api.patch(
            &t.name,
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(patch)?),
        )
        .await
        .context("rename a version")?;

        wait_for_definition(&c, &t.definition("v4"), Some(SCHEMA_FOO)).await?;
        wait_for_definition_cleanup(&c, &t.definition("v3")).await?;
        wait_for_definition(&c, &t.definition("v2"), Some(SCHEMA_FOO)).await
    }
    .await;
    if res.is_ok() {
        crds[0].versions[1] = "v4".into();
    }
    finish(&c, &crds, res).await
}

async fn stop_serving(c: Ctx) -> Result<()> {
    let crds = vec![
        setup_crd(
            &c,
            Some(SCHEMA_FOO),
            Some(SCHEMA_FOO),
            "multi-to-single-ver",
            &["v5", "v6alpha1"],
        )
        .await?,
    ];
    let res = async {
        let t = &crds[0];
        wait_for_definition(&c, &t.definition("v6alpha1"), Some(SCHEMA_FOO)).await?;
        wait_for_definition(&c, &t.definition("v5"), Some(SCHEMA_FOO)).await?;

        // mark v6alpha1 not served
        let api: Api<CustomResourceDefinition> = c.all();
        let mut crd = api.get(&t.name).await?;
        crd.spec.versions[1].served = false;
        api.replace(&t.name, &PostParams::default(), &crd)
            .await
            .context("mark a version not served")?;

        wait_for_definition_cleanup(&c, &t.definition("v6alpha1")).await?;
        wait_for_definition(&c, &t.definition("v5"), Some(SCHEMA_FOO)).await
    }
    .await;
    finish(&c, &crds, res).await
}
