//! `webhook`: an HTTPS server of admission webhooks for the e2e tests of
//! MutatingAdmissionWebhook and ValidatingAdmissionWebhook, as agnhost's.
//!
//! Every path takes an AdmissionReview (admission.k8s.io/v1 or v1beta1,
//! `Content-Type: application/json`) and answers one of the same version
//! whose response carries the request's uid:
//!
//! - `/always-allow-delay-5s`: allows, after 5 s.
//! - `/always-deny`: denies ("this webhook denies all requests").
//! - `/add-label`: adds the label `added-label: yes`.
//! - `/pods`: denies pods labelled `webhook-e2e-test: webhook-disallow` or
//!   with a container named `*webhook-disallow*`; never answers for the
//!   label value `wait-forever`.
//! - `/pods/attach`: denies `attach -i -c container1` to `to-be-attached-pod`.
//! - `/mutating-pods`: adds an init container to `webhook-to-be-mutated`.
//! - `/mutating-pods-sidecar`: adds a `--sidecar-image` container.
//! - `/configmaps`, `/custom-resource`: deny data `webhook-e2e-test:
//!   webhook-disallow` on create/update and `webhook-nondeletable` on delete.
//! - `/mutating-configmaps`, `/mutating-custom-resource`: add data
//!   `mutation-stage-1` when `mutation-start` is yes, and
//!   `mutation-stage-2` when `mutation-stage-1` is.
//! - `/crd`: denies CRDs labelled `webhook-e2e-test: webhook-disallow`.
//! - `/readyz`: `ok`.

use std::sync::Arc;
use std::time::Duration;

use crate::flags::{self, Spec};
use crate::http::{Request, Response};
use crate::json::{self, Value};
use crate::review::{self, at, bool_at, lookup, str_at, string, string_map, Status};
use crate::util::{fatal, log_line};

const ABOUT: &str = "Starts a HTTP server, useful for testing MutatingAdmissionWebhook and ValidatingAdmissionWebhook";

const SPECS: &[Spec] = &[
    flags::value(
        "tls-cert-file",
        "",
        "File containing the default x509 Certificate for HTTPS. (CA cert, if any, concatenated after server cert).",
    ),
    flags::value(
        "tls-private-key-file",
        "",
        "File containing the default x509 private key matching --tls-cert-file.",
    ),
    flags::value("port", "443", "Secure port that the webhook listens on"),
    flags::value(
        "sidecar-image",
        "",
        "Image to be used as the injected sidecar",
    ),
];

/// Entry point of `webhook`.
pub fn run(args: &[String]) -> i32 {
    let p = flags::parse_or_exit("webhook", ABOUT, SPECS, args);
    if !p.args.is_empty() {
        eprintln!("Error: accepts at most 0 arg(s), received {}", p.args.len());
        return 1;
    }
    let port = flags::int_or_exit(&p, "port");
    let config = crate::https::tls_config(p.str("tls-cert-file"), p.str("tls-private-key-file"))
        .unwrap_or_else(|e| fatal(&e));
    let sidecar = p.str("sidecar-image").to_string();
    let handler = Arc::new(move |req: &Request| route(req, &sidecar));
    let e = crate::https::serve(port as u16, config, handler);
    fatal(&format!("listen tcp :{port}: {e}"))
}

/// An admission function: the AdmissionRequest in, the response out (None
/// where agnhost's handler would panic and drop the connection).
type Admit = fn(&Value, &str) -> Option<Admission>;

fn route(req: &Request, sidecar: &str) -> Response {
    let admit: Admit = match req.path.as_str() {
        "/always-allow-delay-5s" => always_allow_delay_5s,
        "/always-deny" => always_deny,
        "/add-label" => add_label,
        "/pods" => admit_pods,
        "/pods/attach" => deny_specific_attachment,
        "/mutating-pods" => mutate_pods,
        "/mutating-pods-sidecar" => mutate_pods_sidecar,
        "/configmaps" => admit_configmaps,
        "/mutating-configmaps" => mutate_configmaps,
        "/custom-resource" => admit_custom_resource,
        "/mutating-custom-resource" => mutate_custom_resource,
        "/crd" => admit_crd,
        "/readyz" => return Response::text(200, "ok"),
        _ => return Response::not_found(),
    };
    serve(req, |r| admit(r, sidecar))
}

/// What an admission function decides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Admission {
    pub allowed: bool,
    pub result: Option<Status>,
    /// A JSON patch to apply to the object (patchType JSONPatch).
    pub patch: Option<String>,
}

impl Admission {
    fn allow() -> Admission {
        Admission {
            allowed: true,
            ..Default::default()
        }
    }

    fn deny(result: Status) -> Admission {
        Admission {
            allowed: false,
            result: Some(result),
            patch: None,
        }
    }

    /// agnhost's toV1AdmissionResponse: not allowed, the error as message.
    fn error(msg: impl Into<String>) -> Admission {
        Admission::deny(Status::message(msg))
    }

    fn patched(patch: &str) -> Admission {
        Admission {
            allowed: true,
            result: None,
            patch: Some(patch.to_string()),
        }
    }
}

/// Handles the HTTP side: checks the content type, decodes the review,
/// runs `admit` on its request and encodes the answer.
fn serve(req: &Request, admit: impl Fn(&Value) -> Option<Admission>) -> Response {
    if !review::is_json(req.header("content-type")) {
        log_line(&format!(
            "contentType={}, expect application/json",
            req.header("content-type").unwrap_or("")
        ));
        return Response::new(200);
    }
    let body = String::from_utf8_lossy(&req.body);
    match handle_review(&body, admit) {
        Ok(Some(out)) => Response::text(200, out).with_header("Content-Type", "application/json"),
        Ok(None) => Response::hangup(),
        Err(msg) => {
            log_line(&msg);
            Response::error(400, &msg)
        }
    }
}

/// AdmissionReview JSON in, AdmissionReview JSON out; `Ok(None)` where
/// agnhost would panic; `Err` for a 400.
pub fn handle_review(
    body: &str,
    admit: impl Fn(&Value) -> Option<Admission>,
) -> Result<Option<String>, String> {
    let review = json::parse(body).map_err(|e| format!("Request could not be decoded: {e}"))?;
    let api_version = str_at(&review, &["apiVersion"]);
    let kind = str_at(&review, &["kind"]);
    if kind.is_empty() {
        return Err(format!(
            "Request could not be decoded: Object 'Kind' is missing in '{body}'"
        ));
    }
    if kind != "AdmissionReview"
        || !matches!(
            api_version,
            "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
        )
    {
        return Err(format!(
            "Unsupported group version kind: {api_version}, Kind={kind}"
        ));
    }
    let Some(request) = at(&review, &["request"]).filter(|r| **r != Value::Null) else {
        return Ok(None);
    };
    let Some(a) = admit(request) else {
        return Ok(None);
    };
    let mut response = vec![
        ("uid", string(str_at(request, &["uid"]))),
        ("allowed", Value::Bool(a.allowed)),
    ];
    if let Some(s) = &a.result {
        response.push(("status", s.to_value()));
    }
    if let Some(p) = &a.patch {
        response.push(("patch", string(&review::base64(p.as_bytes()))));
        response.push(("patchType", string("JSONPatch")));
    }
    let out = review::object(vec![
        ("kind", string("AdmissionReview")),
        ("apiVersion", string(api_version)),
        ("response", review::object(response)),
    ]);
    Ok(Some(review::encode(&out)))
}

/// The request's `resource` as Go prints a metav1.GroupVersionResource
/// with `%s`: `{group version resource}`.
fn gvr(request: &Value) -> String {
    format!(
        "{{{} {} {}}}",
        str_at(request, &["resource", "group"]),
        str_at(request, &["resource", "version"]),
        str_at(request, &["resource", "resource"])
    )
}

const PODS: &str = "{ v1 pods}";
const CONFIGMAPS: &str = "{ v1 configmaps}";

/// The object under review: `oldObject` for deletes, else `object`.
fn reviewed_object(request: &Value) -> Option<&Value> {
    let key = if str_at(request, &["operation"]) == "DELETE" {
        "oldObject"
    } else {
        "object"
    };
    at(request, &[key]).filter(|o| **o != Value::Null)
}

/// Like the universal deserializer decoding `raw`: it must be an object
/// naming its kind.
fn decode_object(raw: Option<&Value>) -> Result<&Value, String> {
    match raw {
        None => {
            Err("couldn't get version/kind; json parse error: unexpected end of JSON input".into())
        }
        Some(o) if str_at(o, &["kind"]).is_empty() => Err(format!(
            "Object 'Kind' is missing in '{}'",
            review::encode(o)
        )),
        Some(o) => Ok(o),
    }
}

fn always_allow_delay_5s(_: &Value, _: &str) -> Option<Admission> {
    std::thread::sleep(Duration::from_secs(5));
    Some(Admission {
        allowed: true,
        result: Some(Status::message("this webhook allows all requests")),
        patch: None,
    })
}

fn always_deny(_: &Value, _: &str) -> Option<Admission> {
    Some(Admission::deny(Status::message(
        "this webhook denies all requests",
    )))
}

const ADD_FIRST_LABEL: &str =
    r#"[{"op":"add","path":"/metadata/labels","value":{"added-label":"yes"}}]"#;
const ADD_ADDITIONAL_LABEL: &str =
    r#"[{"op":"add","path":"/metadata/labels/added-label","value":"yes"}]"#;
const UPDATE_LABEL: &str =
    r#"[{"op":"replace","path":"/metadata/labels/added-label","value":"yes"}]"#;

fn add_label(request: &Value, _: &str) -> Option<Admission> {
    let labels = match string_map(
        request,
        &["object", "metadata", "labels"],
        ".metadata.labels",
    ) {
        Ok(l) => l,
        Err(e) => return Some(Admission::error(e)),
    };
    Some(match lookup(&labels, "added-label") {
        _ if labels.is_empty() => Admission::patched(ADD_FIRST_LABEL),
        None => Admission::patched(ADD_ADDITIONAL_LABEL),
        Some(v) if v != "yes" => Admission::patched(UPDATE_LABEL),
        Some(_) => Admission::allow(),
    })
}

fn admit_pods(request: &Value, _: &str) -> Option<Admission> {
    if gvr(request) != PODS {
        return Some(Admission::error(format!("expect resource to be {PODS}")));
    }
    let pod = match decode_object(at(request, &["object"])) {
        Ok(p) => p,
        Err(e) => return Some(Admission::error(e)),
    };
    let labels = match string_map(pod, &["metadata", "labels"], ".metadata.labels") {
        Ok(l) => l,
        Err(e) => return Some(Admission::error(e)),
    };
    let mut allowed = true;
    let mut msg = String::new();
    match lookup(&labels, "webhook-e2e-test") {
        Some("webhook-disallow") => {
            allowed = false;
            msg.push_str("the pod contains unwanted label; ");
        }
        Some("wait-forever") => loop {
            // Never answers: the API server must time the call out.
            std::thread::park();
        },
        _ => {}
    }
    if let Some(Value::Array(containers)) = at(pod, &["spec", "containers"]) {
        for c in containers {
            if str_at(c, &["name"]).contains("webhook-disallow") {
                allowed = false;
                msg.push_str("the pod contains unwanted container name; ");
            }
        }
    }
    Some(if allowed {
        Admission::allow()
    } else {
        Admission::deny(Status::message(msg.trim()))
    })
}

/// Whether the pod (object) has a container named `name` in `field`.
fn has_container(pod: &Value, field: &str, name: &str) -> bool {
    matches!(at(pod, &["spec", field]), Some(Value::Array(cs)) if cs.iter().any(|c| str_at(c, &["name"]) == name))
}

const INIT_CONTAINER_PATCH: &str = r#"[{"op":"add","path":"/spec/initContainers","value":[{"image":"webhook-added-image","name":"webhook-added-init-container","resources":{}}]}]"#;

/// Patches pods for which `should` holds; None for non-pods (agnhost
/// returns a nil response there).
fn apply_pod_patch(
    request: &Value,
    should: impl Fn(&Value) -> bool,
    patch: &str,
) -> Option<Admission> {
    if gvr(request) != PODS {
        log_line(&format!("expect resource to be {PODS}"));
        return None;
    }
    let pod = match decode_object(at(request, &["object"])) {
        Ok(p) => p,
        Err(e) => return Some(Admission::error(e)),
    };
    Some(if should(pod) {
        Admission::patched(patch)
    } else {
        Admission::allow()
    })
}

fn mutate_pods(request: &Value, _: &str) -> Option<Admission> {
    apply_pod_patch(
        request,
        |pod| {
            str_at(pod, &["metadata", "name"]) == "webhook-to-be-mutated"
                && !has_container(pod, "initContainers", "webhook-added-init-container")
        },
        INIT_CONTAINER_PATCH,
    )
}

fn mutate_pods_sidecar(request: &Value, sidecar: &str) -> Option<Admission> {
    if sidecar.is_empty() {
        return Some(Admission::deny(Status {
            status: "Failure".into(),
            message: "No image specified by the sidecar-image parameter".into(),
            reason: String::new(),
            code: 500,
        }));
    }
    let patch = format!(
        r#"[{{"op":"add","path":"/spec/containers/-","value":{{"image":{},"name":"webhook-added-sidecar","resources":{{}}}}}}]"#,
        json::quote(sidecar)
    );
    apply_pod_patch(
        request,
        |pod| !has_container(pod, "containers", "webhook-added-sidecar"),
        &patch,
    )
}

fn deny_specific_attachment(request: &Value, _: &str) -> Option<Admission> {
    if str_at(request, &["name"]) != "to-be-attached-pod" {
        return Some(Admission::allow());
    }
    if gvr(request) != PODS {
        return Some(Admission::error(format!(
            "expect resource to be {PODS}, got {}",
            gvr(request)
        )));
    }
    let sub = str_at(request, &["subResource"]);
    if sub != "attach" {
        return Some(Admission::error(format!(
            "expect subresource to be attach, got {sub}"
        )));
    }
    let opts = match decode_object(at(request, &["object"])) {
        Ok(o) => o,
        Err(e) => return Some(Admission::error(e)),
    };
    if !bool_at(opts, &["stdin"]) || str_at(opts, &["container"]) != "container1" {
        return Some(Admission::allow());
    }
    Some(Admission::deny(Status::message(
        "attaching to pod 'to-be-attached-pod' is not allowed",
    )))
}

/// The shared rule of `/configmaps` and `/custom-resource`: deny the
/// `webhook-disallow` value on create and update, and the
/// `webhook-nondeletable` value on delete, with the given reasons.
fn deny_data(
    data: &[(String, String)],
    operation: &str,
    disallowed: &str,
    nondeletable: &str,
) -> Admission {
    let mut a = Admission::allow();
    for (k, v) in data {
        if k != "webhook-e2e-test" {
            continue;
        }
        if v == "webhook-disallow" && matches!(operation, "CREATE" | "UPDATE") {
            a = Admission::deny(Status::reason(disallowed));
        }
        if v == "webhook-nondeletable" && operation == "DELETE" {
            a = Admission::deny(Status::reason(nondeletable));
        }
    }
    a
}

fn admit_configmaps(request: &Value, _: &str) -> Option<Admission> {
    if gvr(request) != CONFIGMAPS {
        log_line(&format!("expect resource to be {CONFIGMAPS}"));
        return None;
    }
    let cm = match decode_object(reviewed_object(request)) {
        Ok(o) => o,
        Err(e) => return Some(Admission::error(e)),
    };
    let data = match string_map(cm, &["data"], "ConfigMap.data") {
        Ok(d) => d,
        Err(e) => return Some(Admission::error(e)),
    };
    Some(deny_data(
        &data,
        str_at(request, &["operation"]),
        "the configmap contains unwanted key and value",
        "the configmap cannot be deleted because it contains unwanted key and value",
    ))
}

const STAGE_1_PATCH: &str = r#"[{"op":"add","path":"/data/mutation-stage-1","value":"yes"}]"#;
const STAGE_2_PATCH: &str = r#"[{"op":"add","path":"/data/mutation-stage-2","value":"yes"}]"#;

/// The staged mutation of `/mutating-configmaps` and
/// `/mutating-custom-resource`.
fn mutate_stages(data: &[(String, String)]) -> Admission {
    let mut a = Admission::allow();
    if lookup(data, "mutation-start") == Some("yes") {
        a.patch = Some(STAGE_1_PATCH.to_string());
    }
    if lookup(data, "mutation-stage-1") == Some("yes") {
        a.patch = Some(STAGE_2_PATCH.to_string());
    }
    a
}

fn mutate_configmaps(request: &Value, _: &str) -> Option<Admission> {
    if gvr(request) != CONFIGMAPS {
        log_line(&format!("expect resource to be {CONFIGMAPS}"));
        return None;
    }
    let cm = match decode_object(at(request, &["object"])) {
        Ok(o) => o,
        Err(e) => return Some(Admission::error(e)),
    };
    Some(match string_map(cm, &["data"], "ConfigMap.data") {
        Ok(d) => mutate_stages(&d),
        Err(e) => Admission::error(e),
    })
}

/// A custom resource's `data` as agnhost decodes it (a struct with a
/// `Data map[string]string` field, matched case-insensitively).
fn cr_data(obj: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    let Some(obj) = obj else {
        return Err("unexpected end of JSON input".into());
    };
    let Value::Object(fields) = obj else {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type struct {{ v1.ObjectMeta; Data map[string]string }}",
            obj.kind()
        ));
    };
    let data = fields
        .iter()
        .rev()
        .find(|(k, _)| k == "Data")
        .or_else(|| {
            fields
                .iter()
                .rev()
                .find(|(k, _)| k.eq_ignore_ascii_case("data"))
        })
        .map(|(_, v)| v.clone());
    match data {
        None => Ok(Vec::new()),
        Some(d) => string_map(&review::object(vec![("d", d)]), &["d"], ".Data"),
    }
}

fn admit_custom_resource(request: &Value, _: &str) -> Option<Admission> {
    let data = match cr_data(reviewed_object(request)) {
        Ok(d) => d,
        Err(e) => return Some(Admission::error(e)),
    };
    Some(deny_data(
        &data,
        str_at(request, &["operation"]),
        "the custom resource contains unwanted data",
        "the custom resource cannot be deleted because it contains unwanted key and value",
    ))
}

fn mutate_custom_resource(request: &Value, _: &str) -> Option<Admission> {
    Some(match cr_data(at(request, &["object"])) {
        Ok(d) => mutate_stages(&d),
        Err(e) => Admission::error(e),
    })
}

fn admit_crd(request: &Value, _: &str) -> Option<Admission> {
    const V1BETA1: &str = "{apiextensions.k8s.io v1beta1 customresourcedefinitions}";
    const V1: &str = "{apiextensions.k8s.io v1 customresourcedefinitions}";
    let got = gvr(request);
    if got != V1 && got != V1BETA1 {
        return Some(Admission::error(format!(
            "expect resource to be one of [{V1BETA1}, {V1}] but got {got}"
        )));
    }
    let crd = match decode_object(at(request, &["object"])) {
        Ok(o) => o,
        Err(e) => return Some(Admission::error(e)),
    };
    let labels = match string_map(crd, &["metadata", "labels"], ".metadata.labels") {
        Ok(l) => l,
        Err(e) => return Some(Admission::error(e)),
    };
    Some(
        if lookup(&labels, "webhook-e2e-test") == Some("webhook-disallow") {
            Admission::deny(Status::message("the crd contains unwanted label"))
        } else {
            Admission::allow()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v1 AdmissionReview of `op` on `resource` (group/version/resource)
    /// with `object` (and `old` as oldObject).
    fn review(op: &str, gvr: (&str, &str, &str), object: &str, old: &str) -> String {
        format!(
            r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"u-1","name":"n","operation":"{op}","resource":{{"group":"{}","version":"{}","resource":"{}"}},"object":{object},"oldObject":{old}}}}}"#,
            gvr.0, gvr.1, gvr.2
        )
    }

    /// Runs handler `path` on `body`; returns the decoded response.
    fn call(path: &str, body: &str) -> Value {
        call_with(path, body, "")
    }

    fn call_with(path: &str, body: &str, sidecar: &str) -> Value {
        let req = Request {
            method: "POST".into(),
            path: path.into(),
            raw_query: String::new(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            remote: "127.0.0.1:1".parse().unwrap(),
        };
        let resp = route(&req, sidecar);
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        json::parse(&String::from_utf8_lossy(&resp.body)).unwrap()
    }

    fn patch_of(out: &Value) -> String {
        let b64 = str_at(out, &["response", "patch"]);
        assert_eq!(str_at(out, &["response", "patchType"]), "JSONPatch");
        b64.to_string()
    }

    const CM: (&str, &str, &str) = ("", "v1", "configmaps");
    const POD: (&str, &str, &str) = ("", "v1", "pods");

    #[test]
    fn always_deny_echoes_uid_and_version() {
        let body = review("CREATE", CM, "{}", "null")
            .replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
        let out = call("/always-deny", &body);
        assert_eq!(
            review::encode(&out),
            r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","response":{"uid":"u-1","allowed":false,"status":{"metadata":{},"message":"this webhook denies all requests"}}}"#
        );
    }

    #[test]
    fn configmaps_are_denied_by_data_and_operation() {
        let bad = r#"{"kind":"ConfigMap","data":{"webhook-e2e-test":"webhook-disallow"}}"#;
        let out = call("/configmaps", &review("CREATE", CM, bad, "null"));
        assert!(!bool_at(&out, &["response", "allowed"]));
        assert_eq!(
            str_at(&out, &["response", "status", "reason"]),
            "the configmap contains unwanted key and value"
        );
        let out = call("/configmaps", &review("UPDATE", CM, bad, "null"));
        assert!(!bool_at(&out, &["response", "allowed"]));
        let ok = r#"{"kind":"ConfigMap","data":{"admit":"this"}}"#;
        assert!(bool_at(
            &call("/configmaps", &review("CREATE", CM, ok, "null")),
            &["response", "allowed"]
        ));

        let keep = r#"{"kind":"ConfigMap","data":{"webhook-e2e-test":"webhook-nondeletable"}}"#;
        let out = call("/configmaps", &review("DELETE", CM, "null", keep));
        assert_eq!(
            str_at(&out, &["response", "status", "reason"]),
            "the configmap cannot be deleted because it contains unwanted key and value"
        );
        assert!(bool_at(
            &call("/configmaps", &review("CREATE", CM, keep, "null")),
            &["response", "allowed"]
        ));
    }

    #[test]
    fn configmaps_are_mutated_in_stages() {
        let start = r#"{"kind":"ConfigMap","data":{"mutation-start":"yes"}}"#;
        let out = call("/mutating-configmaps", &review("CREATE", CM, start, "null"));
        assert!(bool_at(&out, &["response", "allowed"]));
        assert_eq!(patch_of(&out), review::base64(STAGE_1_PATCH.as_bytes()));
        let stage1 =
            r#"{"kind":"ConfigMap","data":{"mutation-start":"yes","mutation-stage-1":"yes"}}"#;
        let out = call(
            "/mutating-configmaps",
            &review("CREATE", CM, stage1, "null"),
        );
        assert_eq!(patch_of(&out), review::base64(STAGE_2_PATCH.as_bytes()));
        let none = r#"{"kind":"ConfigMap","data":{"x":"y"}}"#;
        let out = call("/mutating-configmaps", &review("CREATE", CM, none, "null"));
        assert!(at(&out, &["response", "patch"]).is_none());
    }

    #[test]
    fn pods_are_denied_by_label_and_container_name() {
        let pod = r#"{"kind":"Pod","metadata":{"name":"disallowed-pod","labels":{"webhook-e2e-test":"webhook-disallow"}},"spec":{"containers":[{"name":"webhook-disallow"}]}}"#;
        let out = call("/pods", &review("CREATE", POD, pod, "null"));
        assert!(!bool_at(&out, &["response", "allowed"]));
        assert_eq!(
            str_at(&out, &["response", "status", "message"]),
            "the pod contains unwanted label; the pod contains unwanted container name;"
        );
        let ok = r#"{"kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}}"#;
        assert!(bool_at(
            &call("/pods", &review("CREATE", POD, ok, "null")),
            &["response", "allowed"]
        ));
        let out = call("/pods", &review("CREATE", CM, ok, "null"));
        assert_eq!(
            str_at(&out, &["response", "status", "message"]),
            "expect resource to be { v1 pods}"
        );
    }

    #[test]
    fn the_named_pod_gets_an_init_container() {
        let pod = r#"{"kind":"Pod","metadata":{"name":"webhook-to-be-mutated"},"spec":{"containers":[{"name":"example"}]}}"#;
        let out = call("/mutating-pods", &review("CREATE", POD, pod, "null"));
        assert_eq!(
            patch_of(&out),
            review::base64(INIT_CONTAINER_PATCH.as_bytes())
        );
        let other = pod.replace("webhook-to-be-mutated", "other");
        let out = call("/mutating-pods", &review("CREATE", POD, &other, "null"));
        assert!(at(&out, &["response", "patch"]).is_none());
        let done = r#"{"kind":"Pod","metadata":{"name":"webhook-to-be-mutated"},"spec":{"initContainers":[{"name":"webhook-added-init-container"}]}}"#;
        let out = call("/mutating-pods", &review("CREATE", POD, done, "null"));
        assert!(at(&out, &["response", "patch"]).is_none());
    }

    #[test]
    fn sidecars_need_an_image() {
        let pod = r#"{"kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}}"#;
        let out = call(
            "/mutating-pods-sidecar",
            &review("CREATE", POD, pod, "null"),
        );
        assert_eq!(
            at(&out, &["response", "status", "code"]),
            Some(&Value::Number(500.0))
        );
        let out = call_with(
            "/mutating-pods-sidecar",
            &review("CREATE", POD, pod, "null"),
            "img:1",
        );
        let p = patch_of(&out);
        assert_eq!(
            p,
            review::base64(br#"[{"op":"add","path":"/spec/containers/-","value":{"image":"img:1","name":"webhook-added-sidecar","resources":{}}}]"#)
        );
    }

    #[test]
    fn attaching_with_stdin_to_container1_is_denied() {
        let body = |name: &str, stdin: bool, container: &str| {
            format!(
                r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"u","name":"{name}","operation":"CONNECT","subResource":"attach","resource":{{"group":"","version":"v1","resource":"pods"}},"object":{{"kind":"PodAttachOptions","apiVersion":"v1","stdin":{stdin},"container":"{container}"}}}}}}"#
            )
        };
        let out = call(
            "/pods/attach",
            &body("to-be-attached-pod", true, "container1"),
        );
        assert!(!bool_at(&out, &["response", "allowed"]));
        assert_eq!(
            str_at(&out, &["response", "status", "message"]),
            "attaching to pod 'to-be-attached-pod' is not allowed"
        );
        for b in [
            body("to-be-attached-pod", false, "container1"),
            body("to-be-attached-pod", true, "other"),
            body("another-pod", true, "container1"),
        ] {
            assert!(
                bool_at(&call("/pods/attach", &b), &["response", "allowed"]),
                "{b}"
            );
        }
    }

    #[test]
    fn custom_resources_are_denied_and_mutated_by_data() {
        let cr = ("webhook.example.com", "v1", "e2e-test-webhook-crds");
        let bad = r#"{"kind":"X","metadata":{"name":"cr"},"data":{"webhook-e2e-test":"webhook-disallow"}}"#;
        let out = call("/custom-resource", &review("UPDATE", cr, bad, "null"));
        assert_eq!(
            str_at(&out, &["response", "status", "reason"]),
            "the custom resource contains unwanted data"
        );
        let keep = r#"{"kind":"X","data":{"webhook-e2e-test":"webhook-nondeletable"}}"#;
        let out = call("/custom-resource", &review("DELETE", cr, "null", keep));
        assert_eq!(
            str_at(&out, &["response", "status", "reason"]),
            "the custom resource cannot be deleted because it contains unwanted key and value"
        );
        let start = r#"{"kind":"X","data":{"mutation-start":"yes"}}"#;
        let out = call(
            "/mutating-custom-resource",
            &review("CREATE", cr, start, "null"),
        );
        assert_eq!(patch_of(&out), review::base64(STAGE_1_PATCH.as_bytes()));
        let wrong = r#"{"kind":"X","data":{"mutation-start":1}}"#;
        let out = call(
            "/mutating-custom-resource",
            &review("CREATE", cr, wrong, "null"),
        );
        assert!(!bool_at(&out, &["response", "allowed"]));
    }

    #[test]
    fn crds_with_the_label_are_denied() {
        let crd = ("apiextensions.k8s.io", "v1", "customresourcedefinitions");
        let bad = r#"{"kind":"CustomResourceDefinition","metadata":{"labels":{"webhook-e2e-test":"webhook-disallow"}}}"#;
        let out = call("/crd", &review("CREATE", crd, bad, "null"));
        assert_eq!(
            str_at(&out, &["response", "status", "message"]),
            "the crd contains unwanted label"
        );
        let ok = r#"{"kind":"CustomResourceDefinition","metadata":{"labels":{"a":"b"}}}"#;
        assert!(bool_at(
            &call("/crd", &review("CREATE", crd, ok, "null")),
            &["response", "allowed"]
        ));
    }

    #[test]
    fn labels_are_added_once() {
        let obj = |labels: &str| format!(r#"{{"kind":"X","metadata":{{"name":"a"{labels}}}}}"#);
        let hook = (
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
        );
        let out = call("/add-label", &review("CREATE", hook, &obj(""), "null"));
        assert_eq!(patch_of(&out), review::base64(ADD_FIRST_LABEL.as_bytes()));
        let out = call(
            "/add-label",
            &review("CREATE", hook, &obj(r#","labels":{"a":"b"}"#), "null"),
        );
        assert_eq!(
            patch_of(&out),
            review::base64(ADD_ADDITIONAL_LABEL.as_bytes())
        );
        let out = call(
            "/add-label",
            &review(
                "CREATE",
                hook,
                &obj(r#","labels":{"added-label":"no"}"#),
                "null",
            ),
        );
        assert_eq!(patch_of(&out), review::base64(UPDATE_LABEL.as_bytes()));
        let out = call(
            "/add-label",
            &review(
                "CREATE",
                hook,
                &obj(r#","labels":{"added-label":"yes"}"#),
                "null",
            ),
        );
        assert!(at(&out, &["response", "patch"]).is_none());
    }

    #[test]
    fn bad_requests_are_400_and_wrong_content_types_empty() {
        let mk = |ct: &str, body: &str| Request {
            method: "POST".into(),
            path: "/always-deny".into(),
            raw_query: String::new(),
            headers: vec![("Content-Type".into(), ct.into())],
            body: body.as_bytes().to_vec(),
            remote: "127.0.0.1:1".parse().unwrap(),
        };
        let r = route(&mk("text/plain", "{}"), "");
        assert_eq!((r.status, r.body.len()), (200, 0));
        let r = route(&mk("application/json", "{"), "");
        assert_eq!(r.status, 400);
        let r = route(
            &mk("application/json", r#"{"kind":"Pod","apiVersion":"v1"}"#),
            "",
        );
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).starts_with("Unsupported group version kind"));
        let mut nf = mk("application/json", "{}");
        nf.path = "/nope".into();
        assert_eq!(route(&nf, "").status, 404);
        nf.path = "/readyz".into();
        assert_eq!(route(&nf, "").body, b"ok");
    }

    #[test]
    fn served_over_https() {
        let port = crate::https::tests::start(Arc::new(|r: &Request| route(r, "")));
        let out = crate::https::tests::post_json(
            port,
            "/always-deny",
            &review("CREATE", CM, "{}", "null"),
        );
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Type: application/json\r\n"), "{out}");
        assert!(
            out.ends_with(r#""message":"this webhook denies all requests"}}}"#),
            "{out}"
        );
    }
}
