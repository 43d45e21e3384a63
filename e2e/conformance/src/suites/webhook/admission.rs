//! Admission webhooks called by the API server (upstream's
//! test/e2e/apimachinery/webhook.go): the agnhost webhook server runs in
//! the test's namespace, every webhook is scoped to that namespace (or to
//! objects labelled with its name), and each configuration is proven in
//! effect by a denied marker configmap before the test relies on it.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::fixture::{
    self, api_status, cr_api, create_crd, create_namespace, err_text, open_version, random_crd,
    served_versions, Hooks,
};
use crate::conformance;
use crate::ctx::{from_json, pod, suffix, Ctx};
use crate::Test;

/// The tests of this module.
pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Admission webhook, list mutating webhooks", list_mutating),
        conformance!(
            "Admission webhook, list validating webhooks",
            list_validating
        ),
        conformance!(
            "Admission webhook, update mutating webhook",
            update_mutating
        ),
        conformance!(
            "Admission webhook, update validating webhook",
            update_validating
        ),
        conformance!("Admission webhook, deny attach", deny_attach),
        conformance!(
            "Admission webhook, deny custom resource create and delete",
            deny_custom_resource
        ),
        conformance!("Admission webhook, deny create", deny_create),
        conformance!(
            "Admission webhook, deny custom resource definition",
            deny_crd
        ),
        conformance!("Admission webhook, honor timeout", honor_timeout),
        conformance!("Admission webhook, ordered mutation", mutate_configmap),
        conformance!(
            "Admission webhook, mutate custom resource",
            mutate_custom_resource
        ),
        conformance!(
            "Admission webhook, mutate custom resource with different stored version",
            mutate_cr_stored_version
        ),
        conformance!(
            "Admission webhook, mutate custom resource with pruning",
            mutate_cr_pruning
        ),
        conformance!(
            "Mutating Admission webhook, mutating webhook excluding object with specific name",
            mutate_skip_me
        ),
        conformance!("Admission webhook, mutation with defaulting", mutate_pod),
        conformance!(
            "Admission webhook, admission control not allowed on webhook configuration objects",
            config_objects
        ),
        conformance!("Admission webhook, fail closed", fail_closed),
    ]
}

/// Runs `body` with the webhook server deployed (upstream's BeforeEach),
/// then deletes every configuration, CRD and namespace the test made.
async fn with_hooks<F, Fut>(c: Ctx, body: F) -> Result<()>
where
    F: FnOnce(Hooks) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    fixture::run(c, |c, cleanup| async move {
        let h = Hooks::setup(&c, cleanup).await?;
        body(h).await
    })
    .await
}

// ------------------------------------------------------------- helpers

/// A name as unique as upstream's uuids.
fn uuid() -> String {
    format!("{}{}-{}", suffix(), suffix(), suffix())
}

fn configmap(name: &str, data: Value) -> Result<ConfigMap> {
    from_json(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}),
    )
}

/// Upstream's namedNonCompliantConfigMap.
fn non_compliant(name: &str) -> Result<ConfigMap> {
    configmap(name, json!({"webhook-e2e-test": "webhook-disallow"}))
}

/// Upstream's namedToBeMutatedConfigMap.
fn to_be_mutated(name: &str) -> Result<ConfigMap> {
    configmap(name, json!({"mutation-start": "yes"}))
}

fn data_of(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

fn strmap(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The error of an operation the webhook must refuse.
fn must_fail<T>(res: kube::Result<T>, what: &str) -> Result<kube::Error> {
    match res {
        Ok(_) => bail!("{what} should have been denied by the webhook, but it succeeded"),
        Err(e) => Ok(e),
    }
}

fn ensure_contains(text: &str, want: &str) -> Result<()> {
    ensure!(
        text.contains(want),
        "expect error contains {want:?}, got {text:?}"
    );
    Ok(())
}

/// Polls `check` every 100 ms for up to 30 s until it yields true; an
/// error ends the wait at once (upstream's PollUntilContextTimeout).
async fn poll<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if check()
            .await
            .with_context(|| format!("waiting for {what}"))?
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after 30s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Get, change with `f` and replace `name`, retrying only on conflicts
/// (every 2 s for up to a minute, as upstream's updateConfigMap).
async fn update_retry<K>(api: &Api<K>, name: &str, f: impl Fn(&mut K)) -> kube::Result<K>
where
    K: Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut obj = api.get(name).await?;
        f(&mut obj);
        match api.replace(name, &PostParams::default(), &obj).await {
            Err(kube::Error::Api(s)) if s.code == 409 && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_secs(2)).await
            }
            other => return other,
        }
    }
}

/// Creates non-compliant configmaps until one is denied (`denied`) or
/// admitted (`!denied`); other errors fail.
async fn until_configmap(c: &Ctx, denied: bool) -> Result<()> {
    let cms = c.api::<ConfigMap>();
    let what = if denied {
        "a non-compliant configmap to be denied by the validating webhook"
    } else {
        "a non-compliant configmap to be admitted (the webhook no longer validates creates)"
    };
    poll(what, || {
        let cms = cms.clone();
        async move {
            let cm = non_compliant(&uuid())?;
            match cms.create(&PostParams::default(), &cm).await {
                Ok(created) => {
                    let name = created.metadata.name.unwrap_or_default();
                    cms.delete(&name, &DeleteParams::default())
                        .await
                        .context("deleting successfully created configMap")?;
                    Ok(!denied)
                }
                Err(e) if err_text(&e).contains("denied") => Ok(denied),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await
}

/// Creates to-be-mutated configmaps until one comes back mutated
/// (`mutated`) or not (`!mutated`).
async fn until_mutated(c: &Ctx, mutated: bool) -> Result<()> {
    let cms = c.api::<ConfigMap>();
    let what = if mutated {
        "a configmap to be mutated"
    } else {
        "a configmap that is not mutated"
    };
    poll(what, || {
        let cms = cms.clone();
        async move {
            let created = cms
                .create(&PostParams::default(), &to_be_mutated(&uuid())?)
                .await?;
            let name = created.metadata.name.clone().unwrap_or_default();
            cms.delete(&name, &DeleteParams::default())
                .await
                .context("deleting successfully created configMap")?;
            Ok(data_of(&created).contains_key("mutation-stage-1") == mutated)
        }
    })
    .await
}

const RETARGET_TO_CREATE: &str =
    r#"[{"op": "replace", "path": "/webhooks/0/rules/0/operations", "value": ["CREATE"]}]"#;

fn json_patch(text: &str) -> Result<Patch<()>> {
    Ok(Patch::Json::<()>(serde_json::from_str(text)?))
}

// ------------------------------------------------------------- tests

async fn list_mutating(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let test_uuid = uuid();
        let labels = json!({"e2e-list-test-uuid": test_uuid});
        for i in 0..10 {
            h.create_mutating(
                &format!("{}-{i}", h.unique),
                labels.clone(),
                vec![h.mutate_configmap(1), h.is_ready(true)],
            )
            .await?;
        }
        let selector = ListParams::default().labels(&format!("e2e-list-test-uuid={test_uuid}"));
        let api = h.c.all::<MutatingWebhookConfiguration>();
        let list = api
            .list(&selector)
            .await
            .context("listing mutating webhook configurations")?;
        ensure!(
            list.items.len() == 10,
            "listed {} mutating webhook configurations by label, want 10",
            list.items.len()
        );
        h.wait_ready().await?;
        until_mutated(&h.c, true).await?;
        api.delete_collection(&DeleteParams::default(), &selector)
            .await
            .context("deleting the collection of mutating webhook configurations")?;
        until_mutated(&h.c, false).await
    })
    .await
}

async fn list_validating(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let test_uuid = uuid();
        let labels = json!({"e2e-list-test-uuid": test_uuid});
        for i in 0..10 {
            h.create_validating(
                &format!("{}-{i}", h.unique),
                labels.clone(),
                vec![h.deny_configmap(), h.is_ready(false)],
            )
            .await?;
        }
        let selector = ListParams::default().labels(&format!("e2e-list-test-uuid={test_uuid}"));
        let api = h.c.all::<ValidatingWebhookConfiguration>();
        let list = api
            .list(&selector)
            .await
            .context("listing validating webhook configurations")?;
        ensure!(
            list.items.len() == 10,
            "listed {} validating webhook configurations by label, want 10",
            list.items.len()
        );
        h.wait_ready().await?;
        until_configmap(&h.c, true).await?;
        api.delete_collection(&DeleteParams::default(), &selector)
            .await
            .context("deleting the collection of validating webhook configurations")?;
        until_configmap(&h.c, false).await
    })
    .await
}

async fn update_mutating(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let name = h.unique.clone();
        h.create_mutating(
            &name,
            json!({}),
            vec![h.mutate_configmap(1), h.is_ready(true)],
        )
        .await?;
        h.wait_ready().await?;
        let api = h.c.all::<MutatingWebhookConfiguration>();
        let mut hook = api
            .get(&name)
            .await
            .context("getting mutating webhook configuration")?;
        if let Some(r) = hook
            .webhooks
            .as_mut()
            .and_then(|w| w.first_mut())
            .and_then(|w| w.rules.as_mut())
            .and_then(|r| r.first_mut())
        {
            r.operations = Some(vec!["UPDATE".into()]);
        }
        api.replace(&name, &PostParams::default(), &hook)
            .await
            .context("updating mutating webhook configuration")?;
        until_mutated(&h.c, false).await?;
        api.patch(
            &name,
            &PatchParams::default(),
            &json_patch(RETARGET_TO_CREATE)?,
        )
        .await
        .context("patching mutating webhook configuration")?;
        until_mutated(&h.c, true).await
    })
    .await
}

async fn update_validating(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let name = h.unique.clone();
        h.create_validating(
            &name,
            json!({}),
            vec![h.deny_configmap(), h.is_ready(false)],
        )
        .await?;
        h.wait_ready().await?;
        until_configmap(&h.c, true).await?;
        let api = h.c.all::<ValidatingWebhookConfiguration>();
        update_retry(&api, &name, |cfg| {
            if let Some(r) = cfg
                .webhooks
                .as_mut()
                .and_then(|w| w.first_mut())
                .and_then(|w| w.rules.as_mut())
                .and_then(|r| r.first_mut())
            {
                r.operations = Some(vec!["UPDATE".into()]);
            }
        })
        .await
        .context("updating validating webhook configuration")?;
        until_configmap(&h.c, false).await?;
        api.patch(
            &name,
            &PatchParams::default(),
            &json_patch(RETARGET_TO_CREATE)?,
        )
        .await
        .context("patching validating webhook configuration")?;
        until_configmap(&h.c, true).await
    })
    .await
}

async fn deny_attach(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        h.create_validating(
            &h.unique,
            json!({}),
            vec![
                h.hook(
                    "deny-attaching-pod.k8s.io",
                    "/pods/attach",
                    &["CONNECT"],
                    "",
                    &["v1"],
                    &["pods/attach"],
                ),
                h.is_ready(false),
            ],
        )
        .await?;
        h.wait_ready().await?;

        let name = "to-be-attached-pod";
        h.c.create_pod(pod(
            name,
            json!({"containers": [{"name": "container1", "image": h.c.env.images.pause}]}),
        ))
        .await?;
        h.c.wait_running(name).await?;

        let ns_flag = format!("--namespace={}", h.c.ns);
        let mut cmd = tokio::process::Command::from(h.c.kubectl_command(&[
            "attach",
            &ns_flag,
            name,
            "-i",
            "-c=container1",
        ]));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().context("run kubectl (is it on PATH?)")?;
        let out = match tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
        {
            Ok(out) => out?,
            Err(_) => bail!("'kubectl attach' the pod was not denied by the webhook within 30s"),
        };
        ensure!(
            !out.status.success(),
            "'kubectl attach' the pod should be denied by the webhook, but it succeeded"
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let want = "attaching to pod 'to-be-attached-pod' is not allowed";
        ensure!(
            text.contains(want),
            "unexpected 'kubectl attach' error message. expected to contain {want:?}, got {:?}",
            text.trim()
        );
        Ok(())
    })
    .await
}

/// A custom resource of `crd` at `version` named `name` with `data`.
fn custom_resource(
    c: &Ctx,
    crd: &CustomResourceDefinition,
    version: &str,
    name: &str,
    data: Value,
) -> Result<DynamicObject> {
    from_json(json!({
        "apiVersion": format!("{}/{version}", crd.spec.group),
        "kind": crd.spec.names.kind,
        "metadata": {"name": name, "namespace": c.ns},
        "data": data,
    }))
}

/// Upstream's CreateTestCRD: group `webhook.example.com`, v1 allowing
/// anything.
async fn test_crd(h: &Hooks, versions: Value) -> Result<CustomResourceDefinition> {
    create_crd(
        &h.c,
        &h.cleanup,
        random_crd("webhook", "webhook.example.com", versions),
    )
    .await
}

/// A webhook for `operations` on `crd`'s resources in all served versions.
fn cr_hook(
    h: &Hooks,
    crd: &CustomResourceDefinition,
    name: &str,
    path: &str,
    operations: &[&str],
) -> Value {
    let versions = served_versions(crd);
    let versions: Vec<&str> = versions.iter().map(String::as_str).collect();
    h.hook(
        name,
        path,
        operations,
        &crd.spec.group,
        &versions,
        &[crd.spec.names.plural.as_str()],
    )
}

async fn deny_custom_resource(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let crd = test_crd(&h, json!([open_version("v1", true)])).await?;
        h.create_validating(
            &h.unique,
            json!({}),
            vec![
                cr_hook(
                    &h,
                    &crd,
                    "deny-unwanted-custom-resource-data.k8s.io",
                    "/custom-resource",
                    &["CREATE", "UPDATE", "DELETE"],
                ),
                h.is_ready(false),
            ],
        )
        .await?;
        h.wait_ready().await?;
        let api = cr_api(&h.c, &crd, "v1");
        let pp = PostParams::default();

        let denied = custom_resource(
            &h.c,
            &crd,
            "v1",
            "cr-instance-1",
            json!({"webhook-e2e-test": "webhook-disallow"}),
        )?;
        let e = must_fail(
            api.create(&pp, &denied).await,
            "create custom resource cr-instance-1",
        )?;
        ensure_contains(&err_text(&e), "the custom resource contains unwanted data")?;

        let name = "cr-instance-2";
        let kept = custom_resource(
            &h.c,
            &crd,
            "v1",
            name,
            json!({"webhook-e2e-test": "webhook-nondeletable"}),
        )?;
        api.create(&pp, &kept)
            .await
            .with_context(|| format!("failed to create custom resource {name}"))?;
        let set = |value: &'static str| {
            move |cr: &mut DynamicObject| {
                if !cr.data["data"].is_object() {
                    cr.data["data"] = json!({});
                }
                cr.data["data"]["webhook-e2e-test"] = json!(value);
            }
        };
        let e = must_fail(
            update_retry(&api, name, set("webhook-disallow")).await,
            "updating custom resource cr-instance-2 with disallowed data",
        )?;
        ensure_contains(&err_text(&e), "the custom resource contains unwanted data")?;
        let e = must_fail(
            api.delete(name, &DeleteParams::default()).await,
            "deleting custom resource cr-instance-2",
        )?;
        ensure_contains(
            &err_text(&e),
            "the custom resource cannot be deleted because it contains unwanted key and value",
        )?;
        update_retry(&api, name, set("webhook-allow"))
            .await
            .with_context(|| format!("failed to update custom resource {name}"))?;
        api.delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("failed to delete custom resource {name}"))?;
        Ok(())
    })
    .await
}

async fn deny_create(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let mut fail_open = h.failing("fail-open.k8s.io");
        fail_open["failurePolicy"] = json!("Ignore");
        h.create_validating(
            &h.unique,
            json!({}),
            vec![
                h.deny_pod(),
                h.deny_configmap(),
                fail_open,
                h.is_ready(false),
            ],
        )
        .await?;
        h.wait_ready().await?;
        let pods = h.c.pods();
        let pp = PostParams::default();

        // A pod with the unwanted label and container name.
        let mut bad = pod(
            "disallowed-pod",
            json!({"containers": [{"name": "webhook-disallow", "image": h.c.env.images.pause}]}),
        );
        bad["metadata"]["labels"] = json!({"webhook-e2e-test": "webhook-disallow"});
        let e = must_fail(
            pods.create(&pp, &from_json::<Pod>(bad)?).await,
            "create pod disallowed-pod",
        )?;
        let text = err_text(&e);
        ensure_contains(&text, "the pod contains unwanted container name")?;
        ensure_contains(&text, "the pod contains unwanted label")?;

        // A pod the webhook never answers for: the call must time out.
        let mut hanging = pod(
            "hanging-pod",
            json!({"containers": [{"name": "wait-forever", "image": h.c.env.images.pause}]}),
        );
        hanging["metadata"]["labels"] = json!({"webhook-e2e-test": "wait-forever"});
        let e = match pods.create(&pp, &from_json::<Pod>(hanging)?).await {
            Ok(_) => bail!("create pod hanging-pod should have caused the webhook to hang"),
            Err(e) => e,
        };
        let text = err_text(&e);
        ensure!(
            text.contains("webhook"),
            "expect error \"webhook\", got {text:?}"
        );
        ensure!(
            text.contains("deadline"),
            "expect error \"deadline\", got {text:?}"
        );
        ensure!(
            pods.get_opt("hanging-pod").await?.is_none(),
            "the pod rejected by the hanging webhook exists"
        );

        // Configmaps: denied on create, update and patch; allowed when
        // compliant or in a namespace the webhook skips.
        let cms = h.c.api::<ConfigMap>();
        let want = "the configmap contains unwanted key and value";
        let e = must_fail(
            cms.create(&pp, &non_compliant("disallowed-configmap")?)
                .await,
            "create configmap disallowed-configmap",
        )?;
        ensure_contains(&err_text(&e), want)?;
        let allowed = "allowed-configmap";
        cms.create(&pp, &configmap(allowed, json!({"admit": "this"}))?)
            .await
            .with_context(|| format!("failed to create configmap {allowed}"))?;
        let e = must_fail(
            update_retry(&cms, allowed, |cm| {
                cm.data
                    .get_or_insert_with(Default::default)
                    .insert("webhook-e2e-test".into(), "webhook-disallow".into());
            })
            .await,
            "update (PUT) of the admitted configmap to a non-compliant one",
        )?;
        ensure_contains(&err_text(&e), want)?;
        let e = must_fail(
            cms.patch(
                allowed,
                &PatchParams::default(),
                &Patch::Strategic(json!({"data": {"webhook-e2e-test": "webhook-disallow"}})),
            )
            .await,
            "update (PATCH) of the admitted configmap to a non-compliant one",
        )?;
        ensure_contains(&err_text(&e), want)?;

        let skipped = create_namespace(
            &h.c,
            &h.cleanup,
            "exempted-namespace",
            json!({"skip-webhook-admission": "yes", h.unique.clone(): "true"}),
        )
        .await?;
        Api::<ConfigMap>::namespaced(h.c.client.clone(), &skipped)
            .create(&pp, &non_compliant("disallowed-configmap")?)
            .await
            .with_context(|| {
                format!(
                    "failed to create a non-compliant configmap in the skipped namespace {skipped}"
                )
            })?;
        Ok(())
    })
    .await
}

async fn deny_crd(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let mut hook = h.hook(
            "deny-crd-with-unwanted-label.k8s.io",
            "/crd",
            &["CREATE"],
            "apiextensions.k8s.io",
            &["*"],
            &["customresourcedefinitions"],
        );
        // CRDs have no namespace: scoped to this test's objects instead.
        if let Some(o) = hook.as_object_mut() {
            o.remove("namespaceSelector");
        }
        hook["objectSelector"] = h.this_namespace();
        h.create_validating(&h.unique, json!({}), vec![hook, h.is_ready(false)])
            .await?;
        h.wait_ready().await?;

        let (group, name) = ("webhook.example.com", "e2e-test-webhook-deny-crd");
        let crd_name = format!("{name}s.{group}");
        let crd: CustomResourceDefinition = from_json(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": crd_name, "labels": {
                h.unique.clone(): "true",
                "webhook-e2e-test": "webhook-disallow",
            }},
            "spec": {
                "group": group,
                "versions": [open_version("v1", true)],
                "names": {"singular": name, "kind": "E2e-test-webhook-deny-crd", "listKind": "E2e-test-webhook-deny-crdList", "plural": format!("{name}s")},
                "scope": "Namespaced",
            },
        }))?;
        let res = h
            .c
            .all::<CustomResourceDefinition>()
            .create(&PostParams::default(), &crd)
            .await;
        if res.is_ok() {
            h.cleanup.add(fixture::Undo::Crd(crd_name.clone()));
        }
        let e = must_fail(res, &format!("create custom resource definition {crd_name}"))?;
        ensure_contains(&err_text(&e), "the crd contains unwanted label")
    })
    .await
}

async fn honor_timeout(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let cms = h.c.api::<ConfigMap>();
        let cm_name = "e2e-test-slow-webhook-configmap";
        let configs = h.c.all::<ValidatingWebhookConfiguration>();
        let phases: [(&str, Option<i32>, bool); 4] = [
            // Timeout (1s) shorter than the webhook's latency (5s): fails.
            ("Fail", Some(1), false),
            // ... unless the failure policy ignores failures.
            ("Ignore", Some(1), true),
            // Timeout longer than the latency.
            ("Fail", Some(10), true),
            // No timeout: 10s by default in v1.
            ("Fail", None, true),
        ];
        for (policy, timeout, admitted) in phases {
            let mut slow = h.hook(
                "allow-configmap-with-delay-webhook.k8s.io",
                "/always-allow-delay-5s",
                &["CREATE"],
                "",
                &["v1"],
                &["configmaps"],
            );
            slow["failurePolicy"] = json!(policy);
            if let Some(t) = timeout {
                slow["timeoutSeconds"] = json!(t);
            }
            h.create_validating(&h.unique, json!({}), vec![slow, h.is_ready(false)])
                .await?;
            h.wait_ready().await?;
            let what = format!("failurePolicy {policy}, timeoutSeconds {timeout:?}");
            let res = cms
                .create(&PostParams::default(), &configmap(cm_name, json!({}))?)
                .await;
            if admitted {
                res.with_context(|| {
                    format!("creating a configmap with the slow webhook ({what})")
                })?;
                cms.delete(cm_name, &DeleteParams::default()).await?;
            } else {
                let e = match res {
                    Ok(_) => bail!(
                        "create configmap should have timed out reaching the slow webhook ({what})"
                    ),
                    Err(e) => e,
                };
                let text = err_text(&e);
                let timed_out =
                    text.contains("context deadline exceeded") || text.contains("timeout");
                ensure!(
                    timed_out && text.contains("/always-allow-delay-5s?timeout=1s"),
                    "expect an HTTP/dial timeout error querying the slow webhook, got: {text:?}"
                );
            }
            configs
                .delete(&h.unique, &DeleteParams::default())
                .await
                .context("deleting the slow webhook configuration")?;
        }
        Ok(())
    })
    .await
}

async fn mutate_configmap(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        h.create_mutating(
            &h.unique,
            json!({}),
            vec![
                h.mutate_configmap(1),
                h.mutate_configmap(2),
                h.is_ready(true),
            ],
        )
        .await?;
        h.wait_ready().await?;
        let got =
            h.c.api::<ConfigMap>()
                .create(&PostParams::default(), &to_be_mutated("to-be-mutated")?)
                .await
                .context("creating the configmap to be mutated")?;
        let want = strmap(&[
            ("mutation-start", "yes"),
            ("mutation-stage-1", "yes"),
            ("mutation-stage-2", "yes"),
        ]);
        ensure!(
            data_of(&got) == want,
            "expected data {want:?}, got {:?}",
            data_of(&got)
        );
        Ok(())
    })
    .await
}

/// Registers upstream's two-stage custom resource mutating webhooks.
async fn register_cr_mutation(h: &Hooks, crd: &CustomResourceDefinition) -> Result<()> {
    h.create_mutating(
        &h.unique,
        json!({}),
        vec![
            cr_hook(
                h,
                crd,
                "mutate-custom-resource-data-stage-1.k8s.io",
                "/mutating-custom-resource",
                &["CREATE", "UPDATE"],
            ),
            cr_hook(
                h,
                crd,
                "mutate-custom-resource-data-stage-2.k8s.io",
                "/mutating-custom-resource",
                &["CREATE"],
            ),
            h.is_ready(true),
        ],
    )
    .await?;
    h.wait_ready().await
}

/// Creates cr-instance-1 with `mutation-start` and checks the data it
/// comes back with.
async fn expect_mutated_cr(h: &Hooks, crd: &CustomResourceDefinition, prune: bool) -> Result<()> {
    let cr = custom_resource(
        &h.c,
        crd,
        &crd.spec.versions[0].name,
        "cr-instance-1",
        json!({"mutation-start": "yes"}),
    )?;
    let got = cr_api(&h.c, crd, &crd.spec.versions[0].name)
        .create(&PostParams::default(), &cr)
        .await
        .context("failed to create custom resource cr-instance-1")?;
    let mut want = json!({"mutation-start": "yes", "mutation-stage-1": "yes"});
    if !prune {
        want["mutation-stage-2"] = json!("yes");
    }
    ensure!(
        got.data["data"] == want,
        "expected data {want}, got {}",
        got.data["data"]
    );
    Ok(())
}

async fn mutate_custom_resource(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let crd = test_crd(&h, json!([open_version("v1", true)])).await?;
        register_cr_mutation(&h, &crd).await?;
        expect_mutated_cr(&h, &crd, false).await
    })
    .await
}

async fn mutate_cr_stored_version(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let crd = test_crd(
            &h,
            json!([open_version("v1", true), open_version("v2", false)]),
        )
        .await?;
        register_cr_mutation(&h, &crd).await?;
        let name = "cr-instance-1";
        cr_api(&h.c, &crd, "v1")
            .create(
                &PostParams::default(),
                &custom_resource(&h.c, &crd, "v1", name, json!({"mutation-start": "yes"}))?,
            )
            .await
            .context("failed to create custom resource cr-instance-1")?;

        // v2 becomes the storage version.
        let crd_name = crd.metadata.name.clone().unwrap_or_default();
        h.c.all::<CustomResourceDefinition>()
            .patch(
                &crd_name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"versions": [
                    open_version("v1", false),
                    open_version("v2", true),
                ]}})),
            )
            .await
            .with_context(|| format!("failed to patch custom resource definition {crd_name}"))?;

        let got = cr_api(&h.c, &crd, "v2")
            .patch(
                name,
                &PatchParams::default(),
                &json_patch(r#"[{ "op": "add", "path": "/dummy", "value": "test" }]"#)?,
            )
            .await
            .context("failed to patch custom resource cr-instance-1")?;
        let want =
            json!({"mutation-start": "yes", "mutation-stage-1": "yes", "mutation-stage-2": "yes"});
        ensure!(
            got.data["data"] == want,
            "expected data {want}, got {}",
            got.data["data"]
        );
        ensure!(
            got.data["dummy"] == "test",
            "expected dummy \"test\", got {}",
            got.data["dummy"]
        );
        Ok(())
    })
    .await
}

async fn mutate_cr_pruning(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        // The schema knows mutation-start and mutation-stage-1 only: what
        // the stage-2 webhook adds is pruned.
        let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {"data": {
            "type": "object",
            "properties": {"mutation-start": {"type": "string"}, "mutation-stage-1": {"type": "string"}},
        }}}});
        let version = |name: &str, storage: bool| {
            json!({"name": name, "served": true, "storage": storage, "schema": schema})
        };
        let mut obj = random_crd(
            "webhook",
            "webhook.example.com",
            json!([version("v1", true), version("v2", false)]),
        );
        obj["spec"]["preserveUnknownFields"] = json!(false);
        let crd = create_crd(&h.c, &h.cleanup, obj).await?;
        register_cr_mutation(&h, &crd).await?;
        expect_mutated_cr(&h, &crd, true).await
    })
    .await
}

async fn mutate_skip_me(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let mut hook = h.mutate_configmap(1);
        hook["matchConditions"] =
            json!([{"name": "skip-me", "expression": "object.metadata.name != 'skip-me'"}]);
        h.create_mutating(&h.unique, json!({}), vec![hook, h.is_ready(true)])
            .await?;
        h.wait_ready().await?;
        let cms = h.c.api::<ConfigMap>();
        let got = cms
            .create(&PostParams::default(), &to_be_mutated(&uuid())?)
            .await
            .context("creating configMap object")?;
        let want = strmap(&[("mutation-start", "yes"), ("mutation-stage-1", "yes")]);
        ensure!(
            data_of(&got) == want,
            "the configmap with a random name: expected data {want:?}, got {:?}",
            data_of(&got)
        );
        let got = cms
            .create(&PostParams::default(), &to_be_mutated("skip-me")?)
            .await
            .context("creating configMap object")?;
        let want = strmap(&[("mutation-start", "yes")]);
        ensure!(
            data_of(&got) == want,
            "the 'skip-me' configmap: expected data {want:?}, got {:?}",
            data_of(&got)
        );
        Ok(())
    })
    .await
}

async fn mutate_pod(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        h.create_mutating(
            &h.unique,
            json!({}),
            vec![
                h.hook(
                    "adding-init-container.k8s.io",
                    "/mutating-pods",
                    &["CREATE"],
                    "",
                    &["v1"],
                    &["pods"],
                ),
                h.is_ready(true),
            ],
        )
        .await?;
        h.wait_ready().await?;
        let name = "webhook-to-be-mutated";
        // Bound to a node that does not exist: the added init container's
        // image ("webhook-added-image") is never pulled from anywhere.
        let p = pod(
            name,
            json!({
                "nodeName": "e2e-webhook-no-such-node",
                "containers": [{"name": "example", "image": h.c.env.images.pause}],
            }),
        );
        let got = h.c.create_pod(p).await?;
        let _ = h.c.pods().delete(name, &DeleteParams::default()).await;
        let inits = got
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.clone())
            .unwrap_or_default();
        ensure!(
            inits.len() == 1,
            "expect pod to have 1 init container, got {inits:?}"
        );
        ensure!(
            inits[0].name == "webhook-added-init-container",
            "expect the init container name to be \"webhook-added-init-container\", got {:?}",
            inits[0].name
        );
        ensure!(
            inits[0].termination_message_policy.as_deref() == Some("File"),
            "expect the init terminationMessagePolicy to be default to \"File\", got {:?}",
            inits[0].termination_message_policy
        );
        Ok(())
    })
    .await
}

/// A webhook that would deny or mutate webhook configurations, if the API
/// server called webhooks for them (it must not).
fn config_hook(h: &Hooks, name: &str, path: &str, operation: &str) -> Value {
    let mut hook = h.hook(
        name,
        path,
        &[operation],
        "admissionregistration.k8s.io",
        &["*"],
        &[
            "validatingwebhookconfigurations",
            "mutatingwebhookconfigurations",
        ],
    );
    hook["failurePolicy"] = json!("Fail");
    hook
}

/// A webhook that matches nothing real and calls an unknown path without
/// a CA: never called, harmless if it were.
fn dummy_hook(h: &Hooks, name: &str) -> Value {
    let mut hook = h.hook(name, "", &["CREATE"], "", &["v1"], &["invalid"]);
    hook["clientConfig"] = h.client_config("", false);
    hook["failurePolicy"] = json!("Ignore");
    hook
}

fn was_labelled<K: kube::Resource>(o: &K) -> bool {
    o.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get("added-label"))
        .is_some_and(|v| v == "yes")
}

async fn config_objects(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let blocking = format!("{}blocking", h.unique);
        h.create_validating(
            &blocking,
            json!({}),
            vec![
                config_hook(
                    &h,
                    "deny-webhook-configuration-deletions.k8s.io",
                    "/always-deny",
                    "DELETE",
                ),
                h.is_ready(false),
            ],
        )
        .await?;
        h.wait_ready().await?;
        h.create_mutating(
            &blocking,
            json!({}),
            vec![
                config_hook(
                    &h,
                    "add-label-to-webhook-configurations.k8s.io",
                    "/add-label",
                    "CREATE",
                ),
                h.is_ready(true),
            ],
        )
        .await?;
        h.wait_ready().await?;

        let name = h.unique.clone();
        let created = h
            .create_validating(
                &name,
                json!({}),
                vec![
                    dummy_hook(&h, "dummy-validating-webhook.k8s.io"),
                    h.is_ready(false),
                ],
            )
            .await?;
        ensure!(
            !was_labelled(&created),
            "expected {name} not to be mutated by mutating webhooks but it was"
        );
        h.wait_ready().await?;
        h.c.all::<ValidatingWebhookConfiguration>()
            .delete(&name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting webhook config {name}"))?;

        let created = h
            .create_mutating(
                &name,
                json!({}),
                vec![
                    dummy_hook(&h, "dummy-mutating-webhook.k8s.io"),
                    h.is_ready(true),
                ],
            )
            .await?;
        ensure!(
            !was_labelled(&created),
            "expected {name} not to be mutated by mutating webhooks but it was"
        );
        h.wait_ready().await?;
        h.c.all::<MutatingWebhookConfiguration>()
            .delete(&name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting webhook config {name}"))?;
        Ok(())
    })
    .await
}

async fn fail_closed(c: Ctx) -> Result<()> {
    with_hooks(c, |h| async move {
        let mut hook = h.failing("fail-closed.k8s.io");
        hook["failurePolicy"] = json!("Fail");
        hook["namespaceSelector"]["matchExpressions"] =
            json!([{"key": "fail-closed-webhook", "operator": "In", "values": ["yes"]}]);
        h.create_validating(&h.unique, json!({}), vec![hook, h.is_ready(false)])
            .await?;
        h.wait_ready().await?;
        let ns = create_namespace(
            &h.c,
            &h.cleanup,
            "fail-closed-namespace",
            json!({"fail-closed-webhook": "yes", h.unique.clone(): "true"}),
        )
        .await?;
        let res = Api::<ConfigMap>::namespaced(h.c.client.clone(), &ns)
            .create(&PostParams::default(), &configmap("foo", json!({}))?)
            .await;
        let e = match res {
            Ok(_) => bail!(
                "create configmap in namespace {ns} should be unconditionally rejected by the webhook"
            ),
            Err(e) => e,
        };
        ensure!(
            api_status(&e).is_some_and(|(_, reason)| reason == "InternalError"),
            "expect an internal error, got {e}"
        );
        Ok(())
    })
    .await
}
