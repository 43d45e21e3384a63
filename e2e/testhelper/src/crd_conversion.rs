//! `crd-conversion-webhook`: an HTTPS server of a CustomResourceDefinition
//! conversion webhook, as agnhost's, for the e2e tests of
//! CustomResourceConversionWebhook and CustomResourceFieldSelectors.
//!
//! `/crdconvert` takes a ConversionReview (apiextensions.k8s.io/v1 or
//! v1beta1) and converts its objects between `stable.example.com/v1`
//! (`hostPort: "host:port"`) and `stable.example.com/v2` (`host`, `port`);
//! `/readyz` answers `ok`.

use std::sync::Arc;

use crate::flags::{self, Spec};
use crate::http::{Request, Response};
use crate::json::{self, Value};
use crate::review::{self, at, remove, set, str_at, string, Status};
use crate::util::{fatal, log_line};

const ABOUT: &str = "Starts HTTP server on port 443 for testing CustomResourceConversionWebhook";

const SPECS: &[Spec] = &[
    flags::value(
        "tls-cert-file",
        "",
        "File containing the default x509 Certificate for HTTPS. (CA cert, if any, concatenated after server cert.",
    ),
    flags::value(
        "tls-private-key-file",
        "",
        "File containing the default x509 private key matching --tls-cert-file.",
    ),
    flags::value("port", "443", "Secure port that the webhook listens on"),
];

/// Entry point of `crd-conversion-webhook`.
pub fn run(args: &[String]) -> i32 {
    let p = flags::parse_or_exit("crd-conversion-webhook", ABOUT, SPECS, args);
    if !p.args.is_empty() {
        eprintln!("Error: accepts at most 0 arg(s), received {}", p.args.len());
        return 1;
    }
    let port = flags::int_or_exit(&p, "port");
    let config = crate::https::tls_config(p.str("tls-cert-file"), p.str("tls-private-key-file"))
        .unwrap_or_else(|e| fatal(&e));
    let e = crate::https::serve(port as u16, config, Arc::new(route));
    fatal(&format!("listen tcp :{port}: {e}"))
}

fn route(req: &Request) -> Response {
    match req.path.as_str() {
        "/crdconvert" => serve(req),
        "/readyz" => Response::text(200, "ok"),
        _ => Response::not_found(),
    }
}

fn serve(req: &Request) -> Response {
    let content_type = req.header("content-type").unwrap_or("");
    // agnhost also reads YAML; the API server always sends JSON.
    if !review::is_json(Some(content_type)) {
        let msg = format!("invalid Content-Type header `{content_type}`");
        log_line(&msg);
        return Response::error(400, &msg);
    }
    let accept = req.header("accept").unwrap_or("");
    if !accepts_json(accept) {
        let msg = format!("invalid accept header `{accept}`");
        log_line(&msg);
        return Response::error(400, &msg);
    }
    match handle_review(&String::from_utf8_lossy(&req.body)) {
        Ok(Some(out)) => {
            Response::text(200, format!("{out}\n")).with_header("Content-Type", "application/json")
        }
        Ok(None) => Response::hangup(),
        Err(msg) => {
            log_line(&msg);
            Response::error(400, &msg)
        }
    }
}

/// Whether an Accept header admits JSON (empty does).
fn accepts_json(accept: &str) -> bool {
    accept.trim().is_empty()
        || accept.split(',').any(|clause| {
            let media = clause.split(';').next().unwrap_or("").trim();
            matches!(media, "application/json" | "application/*" | "*/*")
        })
}

/// ConversionReview JSON in, ConversionReview JSON out; `Ok(None)` where
/// agnhost would panic (no request); `Err` for a 400.
pub fn handle_review(body: &str) -> Result<Option<String>, String> {
    let review = json::parse(body)
        .map_err(|e| format!("failed to deserialize body ({body}) with error {e}"))?;
    let api_version = str_at(&review, &["apiVersion"]);
    let kind = str_at(&review, &["kind"]);
    if kind != "ConversionReview"
        || !matches!(
            api_version,
            "apiextensions.k8s.io/v1" | "apiextensions.k8s.io/v1beta1"
        )
    {
        return Err(format!(
            "Unsupported group version kind: {api_version}, Kind={kind}"
        ));
    }
    let Some(request) = at(&review, &["request"]).filter(|r| **r != Value::Null) else {
        return Ok(None);
    };
    let (converted, result) = convert_all(request);
    let out = review::object(vec![
        ("kind", string("ConversionReview")),
        ("apiVersion", string(api_version)),
        (
            "request",
            review::object(vec![
                ("uid", string("")),
                ("desiredAPIVersion", string("")),
                ("objects", Value::Null),
            ]),
        ),
        (
            "response",
            review::object(vec![
                ("uid", string(str_at(request, &["uid"]))),
                (
                    "convertedObjects",
                    converted.map_or(Value::Null, Value::Array),
                ),
                ("result", result.to_value()),
            ]),
        ),
    ]);
    Ok(Some(review::encode(&out)))
}

fn failure(message: String) -> Status {
    Status {
        status: "Failure".into(),
        message,
        ..Default::default()
    }
}

/// Converts every object of a ConversionRequest to its
/// `desiredAPIVersion`; the first failure fails them all.
fn convert_all(request: &Value) -> (Option<Vec<Value>>, Status) {
    let desired = str_at(request, &["desiredAPIVersion"]);
    let objects = match at(request, &["objects"]) {
        Some(Value::Array(objs)) => objs.as_slice(),
        _ => &[],
    };
    let mut out = Vec::new();
    for obj in objects {
        if !matches!(obj, Value::Object(_)) || str_at(obj, &["kind"]).is_empty() {
            let raw = review::encode(obj);
            return (
                None,
                failure(format!(
                    "failed to unmarshall object ({raw}) with error: Object 'Kind' is missing in '{raw}'"
                )),
            );
        }
        match convert(obj, desired) {
            Ok(mut converted) => {
                set(&mut converted, "apiVersion", string(desired));
                out.push(converted);
            }
            Err(msg) => {
                log_line(&msg);
                return (None, failure(msg));
            }
        }
    }
    let converted = (!out.is_empty()).then_some(out);
    (
        converted,
        Status {
            status: "Success".into(),
            ..Default::default()
        },
    )
}

/// agnhost's example conversion of one custom resource to `to`.
pub fn convert(obj: &Value, to: &str) -> Result<Value, String> {
    let from = str_at(obj, &["apiVersion"]);
    if to == from {
        return Err(format!(
            "conversion from a version to itself should not call the webhook: {to}"
        ));
    }
    let mut out = obj.clone();
    match (from, to) {
        ("stable.example.com/v1", "stable.example.com/v2") => {
            if let Some(hp) = remove(&mut out, "hostPort") {
                let text = match &hp {
                    Value::String(s) => s.clone(),
                    other => review::encode(other),
                };
                let parts: Vec<&str> = text.split(':').collect();
                let [host, port] = parts[..] else {
                    return Err(format!("invalid hostPort value `{text}`"));
                };
                set(&mut out, "host", string(host));
                set(&mut out, "port", string(port));
            }
        }
        ("stable.example.com/v2", "stable.example.com/v1") => {
            let host = remove(&mut out, "host");
            let port = remove(&mut out, "port");
            if host.is_some() || port.is_some() {
                let text = |v: Option<Value>| match v {
                    Some(Value::String(s)) => s,
                    Some(other) => review::encode(&other),
                    None => String::new(),
                };
                let hp = format!("{}:{}", text(host), text(port));
                set(&mut out, "hostPort", string(&hp));
            }
        }
        ("stable.example.com/v1" | "stable.example.com/v2", _) => {
            return Err(format!("unexpected conversion version {}", go_quote(to)))
        }
        _ => return Err(format!("unexpected conversion version {}", go_quote(from))),
    }
    Ok(out)
}

fn go_quote(s: &str) -> String {
    crate::util::go_quote(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(text: &str) -> Value {
        json::parse(text).unwrap()
    }

    #[test]
    fn v1_host_port_splits_into_v2_host_and_port() {
        let v1 = obj(
            r#"{"apiVersion":"stable.example.com/v1","kind":"K","metadata":{"name":"a"},"hostPort":"localhost:8080"}"#,
        );
        let v2 = convert(&v1, "stable.example.com/v2").unwrap();
        assert_eq!(
            review::encode(&v2),
            r#"{"apiVersion":"stable.example.com/v1","kind":"K","metadata":{"name":"a"},"host":"localhost","port":"8080"}"#
        );
        let bad = obj(r#"{"apiVersion":"stable.example.com/v1","kind":"K","hostPort":"a:b:c"}"#);
        assert_eq!(
            convert(&bad, "stable.example.com/v2").unwrap_err(),
            "invalid hostPort value `a:b:c`"
        );
    }

    #[test]
    fn v2_host_and_port_join_into_v1_host_port() {
        let v2 = obj(r#"{"apiVersion":"stable.example.com/v2","kind":"K","host":"h","port":"80"}"#);
        let v1 = convert(&v2, "stable.example.com/v1").unwrap();
        assert_eq!(
            review::encode(&v1),
            r#"{"apiVersion":"stable.example.com/v2","kind":"K","hostPort":"h:80"}"#
        );
        let host_only = obj(r#"{"apiVersion":"stable.example.com/v2","kind":"K","host":"h"}"#);
        assert_eq!(
            str_at(
                &convert(&host_only, "stable.example.com/v1").unwrap(),
                &["hostPort"]
            ),
            "h:"
        );
        let neither = obj(r#"{"apiVersion":"stable.example.com/v2","kind":"K"}"#);
        assert!(at(
            &convert(&neither, "stable.example.com/v1").unwrap(),
            &["hostPort"]
        )
        .is_none());
    }

    #[test]
    fn unexpected_versions_fail() {
        let v1 = obj(r#"{"apiVersion":"stable.example.com/v1","kind":"K"}"#);
        assert_eq!(
            convert(&v1, "stable.example.com/v1").unwrap_err(),
            "conversion from a version to itself should not call the webhook: stable.example.com/v1"
        );
        assert_eq!(
            convert(&v1, "stable.example.com/v3").unwrap_err(),
            r#"unexpected conversion version "stable.example.com/v3""#
        );
        let other = obj(r#"{"apiVersion":"other/v1","kind":"K"}"#);
        assert_eq!(
            convert(&other, "stable.example.com/v2").unwrap_err(),
            r#"unexpected conversion version "other/v1""#
        );
    }

    #[test]
    fn reviews_convert_every_object_and_echo_the_uid() {
        let body = r#"{"kind":"ConversionReview","apiVersion":"apiextensions.k8s.io/v1","request":{"uid":"u-9","desiredAPIVersion":"stable.example.com/v2","objects":[{"apiVersion":"stable.example.com/v1","kind":"K","metadata":{"name":"a"},"hostPort":"localhost:8080"},{"apiVersion":"stable.example.com/v1","kind":"K","metadata":{"name":"b"}}]}}"#;
        let out = handle_review(body).unwrap().unwrap();
        assert_eq!(
            out,
            r#"{"kind":"ConversionReview","apiVersion":"apiextensions.k8s.io/v1","request":{"uid":"","desiredAPIVersion":"","objects":null},"response":{"uid":"u-9","convertedObjects":[{"apiVersion":"stable.example.com/v2","kind":"K","metadata":{"name":"a"},"host":"localhost","port":"8080"},{"apiVersion":"stable.example.com/v2","kind":"K","metadata":{"name":"b"}}],"result":{"metadata":{},"status":"Success"}}}"#
        );
    }

    #[test]
    fn a_failed_object_fails_the_review() {
        let body = r#"{"kind":"ConversionReview","apiVersion":"apiextensions.k8s.io/v1beta1","request":{"uid":"u","desiredAPIVersion":"stable.example.com/v2","objects":[{"apiVersion":"stable.example.com/v1","kind":"K","hostPort":"nope"}]}}"#;
        let out = obj(&handle_review(body).unwrap().unwrap());
        assert_eq!(
            str_at(&out, &["apiVersion"]),
            "apiextensions.k8s.io/v1beta1"
        );
        assert_eq!(
            at(&out, &["response", "convertedObjects"]),
            Some(&Value::Null)
        );
        assert_eq!(str_at(&out, &["response", "result", "status"]), "Failure");
        assert_eq!(
            str_at(&out, &["response", "result", "message"]),
            "invalid hostPort value `nope`"
        );
        let kindless = body.replace(r#""kind":"K","#, "");
        let out = obj(&handle_review(&kindless).unwrap().unwrap());
        assert!(
            str_at(&out, &["response", "result", "message"]).contains("Object 'Kind' is missing")
        );
    }

    #[test]
    fn http_checks_types_and_paths() {
        let mk = |path: &str, ct: &str, accept: &str, body: &str| Request {
            method: "POST".into(),
            path: path.into(),
            raw_query: String::new(),
            headers: vec![
                ("Content-Type".into(), ct.into()),
                ("Accept".into(), accept.into()),
            ],
            body: body.as_bytes().to_vec(),
            remote: "127.0.0.1:1".parse().unwrap(),
        };
        let good = r#"{"kind":"ConversionReview","apiVersion":"apiextensions.k8s.io/v1","request":{"uid":"u","desiredAPIVersion":"stable.example.com/v2","objects":[]}}"#;
        let r = route(&mk(
            "/crdconvert",
            "application/json",
            "application/json, */*",
            good,
        ));
        assert_eq!(r.status, 200);
        assert!(String::from_utf8_lossy(&r.body).ends_with("}\n"));
        assert_eq!(
            route(&mk("/crdconvert", "text/plain", "", good)).status,
            400
        );
        assert_eq!(
            route(&mk("/crdconvert", "application/json", "text/html", good)).status,
            400
        );
        assert_eq!(
            route(&mk("/crdconvert", "application/json", "", "{}")).status,
            400
        );
        assert_eq!(route(&mk("/x", "application/json", "", good)).status, 404);
        assert_eq!(route(&mk("/readyz", "", "", "")).body, b"ok");
    }

    #[test]
    fn served_over_https() {
        let port = crate::https::tests::start(Arc::new(route));
        let body = r#"{"kind":"ConversionReview","apiVersion":"apiextensions.k8s.io/v1","request":{"uid":"u","desiredAPIVersion":"stable.example.com/v1","objects":[{"apiVersion":"stable.example.com/v2","kind":"K","host":"h","port":"1"}]}}"#;
        let out = crate::https::tests::post_json(port, "/crdconvert", body);
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains(r#""hostPort":"h:1""#), "{out}");
    }
}
