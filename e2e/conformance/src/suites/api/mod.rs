//! API machinery, first half (sig-api-machinery up to "R"): discovery
//! (plain and aggregated), API priority and fairness objects,
//! CustomResourceDefinitions and their custom resources, published OpenAPI
//! of CRDs, and server-side field validation.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::client::Body;
use serde_json::Value;

use crate::ctx::{from_json, wait_for, Ctx};
use crate::Test;

mod crd;
mod discovery;
mod fieldvalidation;
mod flowcontrol;
mod openapi;
mod ordered_ns;
mod qos;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    v.extend(discovery::tests());
    v.extend(flowcontrol::tests());
    v.extend(crd::tests());
    v.extend(openapi::tests());
    v.extend(fieldvalidation::tests());
    v.extend(ordered_ns::tests());
    v.extend(qos::tests());
    v
}

/// A raw response: status code, ETag, body.
struct Raw {
    status: u16,
    etag: Option<String>,
    body: String,
}

/// Sends `method path` with an optional body and content type, and extra
/// headers; returns the response whatever its status.
async fn raw(
    c: &Ctx,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
    headers: &[(&'static str, &str)],
) -> Result<Raw> {
    // kube builds the request; only the method, path and headers change.
    let mut req = kube::core::Request::new("/")
        .list(&Default::default())
        .context("build request")?;
    *req.uri_mut() = path.parse().context("request path")?;
    *req.method_mut() = method.parse().context("request method")?;
    let mut bytes = Vec::new();
    if let Some((content_type, b)) = body {
        req.headers_mut().insert(
            "content-type",
            content_type.parse().context("content type")?,
        );
        bytes = b;
    }
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, v.parse().with_context(|| format!("header {k}"))?);
    }
    let req = req.map(|_| Body::from(bytes));
    let resp = c
        .client
        .send(req)
        .await
        .with_context(|| format!("{method} {path}"))?;
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = resp.into_body().collect_bytes().await?;
    Ok(Raw {
        status,
        etag,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// GETs `path` (with an optional Accept header) and decodes the JSON body;
/// fails on a non-2xx status.
async fn get_json(c: &Ctx, path: &str, accept: Option<&str>) -> Result<Value> {
    let headers: Vec<(&'static str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
    let r = raw(c, "GET", path, None, &headers).await?;
    if !(200..300).contains(&r.status) {
        bail!("GET {path}: status {}: {}", r.status, r.body);
    }
    serde_json::from_str(&r.body).with_context(|| format!("GET {path}: body is not JSON"))
}

/// Polls `check` every `every` until it yields `Some`; unlike
/// [`wait_for`], an error ends the wait at once (as upstream's poll
/// conditions returning an error do).
async fn poll<T, F, Fut>(what: &str, every: Duration, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check()
            .await
            .with_context(|| format!("waiting for {what}"))?
        {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// A dynamic API for `group/version` `kind` (`plural`), namespaced in the
/// test's namespace when `ns` is Some, else cluster-wide.
fn dyn_api(
    c: &Ctx,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(c.client.clone(), ns, &ar),
        None => Api::all_with(c.client.clone(), &ar),
    }
}

/// A random lowercase string of `n` letters and digits.
fn rand_string(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str(&crate::ctx::suffix());
    }
    s.truncate(n);
    s
}

/// Whether the CRD has condition `type_` = True.
fn crd_condition(crd: &CustomResourceDefinition, type_: &str) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Creates the CRD `obj` and waits until it is Established and its
/// resources can be listed (as upstream's fixtures do).
async fn create_crd(c: &Ctx, obj: Value) -> Result<CustomResourceDefinition> {
    let crds: Api<CustomResourceDefinition> = c.all();
    let crd: CustomResourceDefinition = from_json(obj)?;
    let created = crds
        .create(&PostParams::default(), &crd)
        .await
        .context("create CustomResourceDefinition")?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let est = wait_for(
        &format!("CRD {name} established"),
        Duration::from_secs(30),
        || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let crd = crds.get(&name).await?;
                Ok(crd_condition(&crd, "Established").then_some(crd))
            }
        },
    )
    .await?;
    // Every served version must answer a list.
    let group = est.spec.group.clone();
    let plural = est.spec.names.plural.clone();
    let kind = est.spec.names.kind.clone();
    let namespaced = est.spec.scope == "Namespaced";
    for v in est.spec.versions.iter().filter(|v| v.served) {
        let api = dyn_api(
            c,
            &group,
            &v.name,
            &kind,
            &plural,
            namespaced.then_some(c.ns.as_str()),
        );
        wait_for(
            &format!("{plural}.{group}/{} to be served", v.name),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                async move { Ok(api.list(&Default::default()).await.ok().map(|_| ())) }
            },
        )
        .await?;
    }
    Ok(est)
}

/// Deletes CRD `name` and waits until it is gone.
async fn delete_crd(c: &Ctx, name: &str) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = c.all();
    match crds.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e).context("delete CustomResourceDefinition"),
    }
    wait_for(&format!("CRD {name} gone"), Duration::from_secs(60), || {
        let crds = crds.clone();
        async move { Ok(crds.get_metadata_opt(name).await?.is_none().then_some(())) }
    })
    .await
}

/// Runs `body`, then deletes CRD `name` whatever `body` returned.
async fn with_crd<F, Fut>(c: &Ctx, name: &str, body: F) -> Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let res = body().await;
    let cleanup = delete_crd(c, name).await;
    res.and(cleanup)
}

/// A schema that allows anything (upstream's fixtures.AllowAllSchema).
fn allow_all_schema() -> Value {
    serde_json::json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}})
}
