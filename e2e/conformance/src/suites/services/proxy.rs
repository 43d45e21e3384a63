//! The API server's proxy subresources of pods and services: every HTTP
//! method reaches an agnhost porter (with and without a path), GET and HEAD
//! of the bare proxy URL redirect, and a table of pod and service proxy
//! URLs (named and numbered ports, http and https) answer the porter's
//! values.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::client::Body;
use serde_json::{json, Value};

use super::{agnhost_pod, selector_of, wait_ready_pods};
use crate::conformance;
use crate::ctx::{phase, wait_for, Ctx};
use crate::Test;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    vec![
        conformance!("Proxy, validate Proxy responses", proxy_responses),
        conformance!("Proxy, validate ProxyWithPath responses", proxy_with_path),
        conformance!(
            "Proxy through apiserver to a Service",
            proxy_service_and_pod
        ),
    ]
}

/// upstream's proxyAttempts.
const PROXY_ATTEMPTS: usize = 20;
/// upstream's proxyHTTPCallTimeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// upstream's requestRetryTimeout (per method).
const REQUEST_RETRY: Duration = Duration::from_secs(60);

/// Sends `method path` (absolute, with any query) to the API server;
/// returns status and body whatever the status; redirects are not followed.
async fn request(c: &Ctx, method: &str, path: &str) -> Result<(u16, String)> {
    let mut req = kube::core::Request::new("/")
        .list(&Default::default())
        .context("build request")?;
    *req.uri_mut() = path.parse().context("request path")?;
    *req.method_mut() = method.parse().context("request method")?;
    let req = req.map(|_| Body::from(Vec::new()));
    let call = async {
        let resp = c.client.send(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect_bytes().await?;
        anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(5), call)
        .await
        .with_context(|| {
            format!(
                "no answer within {:?} (the client retries 429/503/504 answers)",
                CALL_TIMEOUT + Duration::from_secs(5)
            )
        })?
        .with_context(|| format!("{method} failed"))
}

fn truncate(s: &str) -> String {
    if s.len() <= 200 {
        return s.to_string();
    }
    let mut end = 197;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Creates pod "agnhost" running `porter --json-response` with
/// SERVE_PORT_80=`msg`, labelled `labels`, and waits until it runs.
async fn json_porter(c: &Ctx, labels: Value, msg: &str) -> Result<()> {
    let mut p = agnhost_pod(c, "agnhost", json!([]));
    p["metadata"]["labels"] = labels;
    p["spec"]["restartPolicy"] = json!("Never");
    let ctr = &mut p["spec"]["containers"][0];
    ctr["name"] = json!("agnhost");
    ctr["command"] = json!(["/agnhost", "porter", "--json-response"]);
    ctr["env"] = json!([{"name": "SERVE_PORT_80", "value": msg}]);
    c.create_pod(p).await.context("failed to create pod")?;
    c.wait_pod("agnhost", "Running", |p| phase(p) == "Running")
        .await
        .context("Pod didn't start within time out period")?;
    Ok(())
}

/// A service `name` labelled and selecting `labels`, port 80 to 80.
async fn port80_service(c: &Ctx, name: &str, labels: Value) -> Result<()> {
    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}], "selector": labels},
    }))
    .await
    .context("Failed to create the service")?;
    Ok(())
}

/// upstream's validateProxyVerbRequest, retried for up to a minute: `verb
/// url` answers 200 and (but for HEAD) the porter's JSON echo of the
/// method with body `msg`.
async fn expect_verb(c: &Ctx, url: &str, verb: &str, msg: &str) -> Result<()> {
    wait_for(
        &format!("{verb} {url} to answer 200 with {msg:?}"),
        REQUEST_RETRY,
        || async {
            let (status, body) = request(c, verb, url).await?;
            if verb == "HEAD" {
                ensure!(status == 200, "status {status}");
                return Ok(Some(()));
            }
            let v: Value = serde_json::from_str(&body).with_context(|| {
                format!(
                    "status {status}, the body is not the porter's JSON: {}",
                    truncate(&body)
                )
            })?;
            ensure!(status == 200, "status {status}, body {}", truncate(&body));
            ensure!(
                v["Body"] == msg && v["Method"] == verb,
                "answer {v}, expected Method {verb} and Body {msg}"
            );
            Ok(Some(()))
        },
    )
    .await
}

async fn proxy_with_path(c: Ctx) -> Result<()> {
    let msg = "foo";
    let labels = json!({"test": "response"});
    json_porter(&c, labels.clone(), msg).await?;
    port80_service(&c, "test-service", labels).await?;
    let verbs = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"];
    for kind in ["pods/agnhost", "services/test-service"] {
        for verb in verbs {
            let url = format!(
                "/api/v1/namespaces/{}/{kind}/proxy/some/path/with/{verb}",
                c.ns
            );
            expect_verb(&c, &url, verb, msg).await?;
        }
    }
    Ok(())
}

async fn proxy_responses(c: Ctx) -> Result<()> {
    let msg = "foo";
    let svc = "e2e-proxy-test-service";
    let labels = json!({"e2e-test": "proxy-endpoints"});
    json_porter(&c, labels.clone(), msg).await?;
    port80_service(&c, svc, labels).await?;
    let pod_url = format!("/api/v1/namespaces/{}/pods/agnhost/proxy", c.ns);
    let svc_url = format!("/api/v1/namespaces/{}/services/{svc}/proxy", c.ns);
    for base in [&pod_url, &svc_url] {
        for verb in ["DELETE", "OPTIONS", "PATCH", "POST", "PUT"] {
            expect_verb(&c, &format!("{base}?method={verb}"), verb, msg).await?;
        }
    }
    // GET and HEAD of the bare proxy URL redirect (to the trailing slash).
    for verb in ["GET", "HEAD"] {
        for base in [&pod_url, &svc_url] {
            let url = format!("{base}?method={verb}");
            let (status, body) = request(&c, verb, &url).await?;
            ensure!(
                status == 301,
                "{verb} {url}: the resp.StatusCode returned: {status}, expected 301 ({})",
                truncate(&body)
            );
        }
    }
    Ok(())
}

/// upstream's net.JoinSchemeNamePort.
fn scheme_name_port(scheme: &str, name: &str, port: &str) -> String {
    match (scheme.is_empty(), port.is_empty()) {
        (true, true) => name.to_string(),
        (true, false) => format!("{name}:{port}"),
        (false, _) => format!("{scheme}:{name}:{port}"),
    }
}

async fn proxy_service_and_pod(c: Ctx) -> Result<()> {
    let labels = json!({"proxy-service-target": "true"});
    let service = c
        .create::<Service>(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"generateName": "proxy-service-"},
            "spec": {"selector": labels, "ports": [
                {"name": "portname1", "port": 80, "targetPort": "dest1"},
                {"name": "portname2", "port": 81, "targetPort": 162},
                {"name": "tlsportname1", "port": 443, "targetPort": "tlsdest1"},
                {"name": "tlsportname2", "port": 444, "targetPort": 462},
            ]},
        }))
        .await?;
    let svc_name = service.metadata.name.clone().unwrap_or_default();

    // A one-pod deployment of porter serving the values below.
    let env = json!([
        {"name": "SERVE_PORT_80", "value": "<a href=\"/rewriteme\">test</a>"},
        {"name": "SERVE_PORT_1080", "value": "<a href=\"/rewriteme\">test</a>"},
        {"name": "SERVE_PORT_160", "value": "foo"},
        {"name": "SERVE_PORT_162", "value": "bar"},
        {"name": "SERVE_TLS_PORT_443", "value": "<a href=\"/tlsrewriteme\">test</a>"},
        {"name": "SERVE_TLS_PORT_460", "value": "tls baz"},
        {"name": "SERVE_TLS_PORT_462", "value": "tls qux"},
    ]);
    c.create::<Deployment>(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": svc_name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": svc_name,
                    "image": c.env.images.agnhost,
                    "command": ["/agnhost", "porter"],
                    "env": env,
                    "ports": [
                        {"containerPort": 80},
                        {"name": "dest1", "containerPort": 160},
                        {"name": "dest2", "containerPort": 162},
                        {"name": "tlsdest1", "containerPort": 460},
                        {"name": "tlsdest2", "containerPort": 462},
                    ],
                    "readinessProbe": {
                        "httpGet": {"port": 80},
                        "initialDelaySeconds": 1, "timeoutSeconds": 5, "periodSeconds": 10,
                    },
                }]},
            },
        },
    }))
    .await?;
    let pods = wait_ready_pods(&c, &selector_of(&labels), 1).await?;
    let pod_name = pods[0].metadata.name.clone().unwrap_or_default();

    // upstream's waitForEndpoint: the Endpoints list an address.
    let eps = c.api::<Endpoints>();
    wait_for(
        &format!("endpoints for {}/{svc_name}", c.ns),
        Duration::from_secs(60),
        || async {
            let Some(e) = eps.get_opt(&svc_name).await? else {
                return Ok(None);
            };
            let has = e
                .subsets
                .as_ref()
                .and_then(|s| s.first())
                .and_then(|s| s.addresses.as_ref())
                .is_some_and(|a| !a.is_empty());
            Ok(has.then_some(()))
        },
    )
    .await?;

    let prefix = format!("/api/v1/namespaces/{}", c.ns);
    let svc_url = |scheme: &str, port: &str| {
        format!(
            "{prefix}/services/{}/proxy",
            scheme_name_port(scheme, &svc_name, port)
        )
    };
    let pod_url = |scheme: &str, port: &str| {
        format!(
            "{prefix}/pods/{}/proxy",
            scheme_name_port(scheme, &pod_name, port)
        )
    };
    let link = |base: String, path: &str| format!("<a href=\"{base}{path}\">test</a>");
    let expectations: Vec<(String, String)> = vec![
        (svc_url("", "portname1") + "/", "foo".into()),
        (svc_url("http", "portname1") + "/", "foo".into()),
        (svc_url("", "portname2") + "/", "bar".into()),
        (svc_url("http", "portname2") + "/", "bar".into()),
        (svc_url("https", "tlsportname1") + "/", "tls baz".into()),
        (svc_url("https", "tlsportname2") + "/", "tls qux".into()),
        (pod_url("", "") + "/", link(pod_url("", ""), "/rewriteme")),
        (
            pod_url("", "1080") + "/",
            link(pod_url("", "1080"), "/rewriteme"),
        ),
        (
            pod_url("http", "1080") + "/",
            link(pod_url("http", "1080"), "/rewriteme"),
        ),
        (pod_url("", "160") + "/", "foo".into()),
        (pod_url("http", "160") + "/", "foo".into()),
        (pod_url("", "162") + "/", "bar".into()),
        (pod_url("http", "162") + "/", "bar".into()),
        (
            pod_url("https", "443") + "/",
            link(pod_url("https", "443"), "/tlsrewriteme"),
        ),
        (pod_url("https", "460") + "/", "tls baz".into()),
        (pod_url("https", "462") + "/", "tls qux".into()),
    ];

    // Each attempt runs every case at once, as upstream's goroutines.
    let mut errs: Vec<String> = Vec::new();
    for i in 0..PROXY_ATTEMPTS {
        let tries = expectations.iter().map(|(path, want)| {
            let c = &c;
            let short = path.trim_start_matches(&format!("{prefix}/")).to_string();
            async move {
                let start = Instant::now();
                let r = request(c, "GET", path).await;
                let d = start.elapsed();
                let mut e = Vec::new();
                match r {
                    Err(err) => e.push(format!("{i}: path {short} gave error: {err}")),
                    Ok((status, body)) if status != 200 => e.push(format!(
                        "{i}: path {short} gave status {status}: {}",
                        truncate(&body)
                    )),
                    Ok((_, body)) if &body != want => e.push(format!(
                        "{i}: path {short}: wanted {want}, got {}",
                        truncate(&body)
                    )),
                    Ok(_) => {}
                }
                if e.is_empty() && d > CALL_TIMEOUT {
                    e.push(format!("{i}: path {short} took {d:?} > {CALL_TIMEOUT:?}"));
                }
                e
            }
        });
        for e in futures::future::join_all(tries).await {
            errs.extend(e);
        }
        // Any failure fails the test: stop rather than retry 20 times.
        if !errs.is_empty() {
            break;
        }
    }
    if !errs.is_empty() {
        bail!(
            "{} of {} proxy requests failed: {}",
            errs.len(),
            expectations.len(),
            errs.join("; ")
        );
    }
    Ok(())
}
