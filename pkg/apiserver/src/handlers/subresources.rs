//! Subresources (status, scale, binding, eviction, token, ephemeralcontainers,
//! finalize; streaming ones answer 501 until a node agent exists) and the
//! virtual review resources (access reviews, SelfSubjectReview, TokenReview).

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::context::Ctx;
use super::crud::{self, load, parse_body, render_one, write_update};
use super::{json_response, read_body};
use crate::auth::{Attributes, Decision};
use crate::objects::{self, meta_str};
use crate::status::{success_status, ApiError, ApiResult};

fn ct(req: &Request) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string()
}

fn ua(req: &Request) -> Option<String> {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// Routes a subresource request.
pub async fn route(ctx: Ctx, req: Request) -> ApiResult<Response> {
    let sub = ctx.info.subresource.clone();
    if !ctx.res.has_subresource(&sub) {
        return Err(ApiError::no_route(&ctx.info.path));
    }
    let verb = ctx.info.verb.clone();
    match (sub.as_str(), verb.as_str()) {
        ("status", "get") | ("approval", "get") | ("ephemeralcontainers", "get") => {
            let (_, obj) = load(&ctx).await?;
            Ok(render_one(&ctx, &obj, StatusCode::OK))
        }
        ("status", "update") | ("approval", "update") => {
            let ua = ua(&req);
            let ct = ct(&req);
            let body = read_body(req.into_body()).await?;
            let obj = parse_body(&ct, &body)?;
            crud::update(&ctx, obj, &ctx.manager(ua.as_deref(), "unknown"), &sub).await
        }
        ("status", "patch") | ("approval", "patch") => {
            let ua = ua(&req);
            let ct = ct(&req);
            let body = read_body(req.into_body()).await?;
            crud::patch_object(&ctx, &ct, &body, ua.as_deref(), &sub).await
        }
        ("scale", _) => scale(ctx, req).await,
        ("binding", "create") => {
            let ct = ct(&req);
            let body = read_body(req.into_body()).await?;
            let b = parse_body(&ct, &body)?;
            bind(&ctx, ctx.name(), &b).await
        }
        ("eviction", "create") => {
            let ct = ct(&req);
            let body = read_body(req.into_body()).await?;
            let ev = parse_body(&ct, &body)?;
            let opts = ev.get("deleteOptions").cloned().unwrap_or(json!({}));
            let (kv, obj) = load(&ctx).await?;
            let dry = ctx.dry_run()
                || opts
                    .get("dryRun")
                    .is_some_and(|d| d.as_array().is_some_and(|a| !a.is_empty()));
            let opts_bytes = serde_json::to_vec(&opts).unwrap_or_default();
            let o = crud::delete_opts_from(&ctx, &opts_bytes)?;
            crate::admission::eviction::admit(&ctx, &obj, dry).await?;
            crud::delete_one(&ctx, kv, obj, &o).await?;
            Ok(json_response(StatusCode::CREATED, &success_status(None)))
        }
        ("token", "create") => {
            let ct = ct(&req);
            let body = read_body(req.into_body()).await?;
            let tr = if body.is_empty() {
                json!({})
            } else {
                parse_body(&ct, &body)?
            };
            token(&ctx, tr).await
        }
        ("ephemeralcontainers", "update") | ("ephemeralcontainers", "patch") => {
            let ua = ua(&req);
            let ctype = ct(&req);
            let body = read_body(req.into_body()).await?;
            let (kv, old) = load(&ctx).await?;
            let incoming = if verb == "update" {
                parse_body(&ctype, &body)?
            } else {
                let p: Value = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                let c = ctype.split(';').next().unwrap_or("");
                let av = ctx.res.api_version();
                match c {
                    "application/json-patch+json" => {
                        rkube_apimachinery::patch::json_patch(&old, &p)
                    }
                    "application/merge-patch+json" => {
                        rkube_apimachinery::patch::merge_patch(&old, &p)
                    }
                    _ => rkube_apimachinery::patch::strategic_merge_patch(
                        &old,
                        &p,
                        &av,
                        &ctx.res.kind,
                    ),
                }
                .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?
            };
            let mut new = old.clone();
            new["spec"]["ephemeralContainers"] = incoming
                .pointer("/spec/ephemeralContainers")
                .cloned()
                .unwrap_or(json!([]));
            objects::set_rv(&mut new, kv.mod_revision);
            let manager = ctx.manager(ua.as_deref(), "unknown");
            let (obj, _) = write_update_ephemeral(&ctx, &kv, &old, new, &manager).await?;
            Ok(render_one(&ctx, &obj, StatusCode::OK))
        }
        ("finalize", "update") => {
            let ct = ct(&req);
            let body = read_body(req.into_body()).await?;
            let incoming = parse_body(&ct, &body)?;
            let (kv, old) = load(&ctx).await?;
            let mut new = old.clone();
            new["spec"]["finalizers"] = incoming
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            objects::set_rv(&mut new, kv.mod_revision);
            let (obj, _) = write_update(&ctx, &kv, &old, new, "unknown", "", false).await?;
            Ok(render_one(&ctx, &obj, StatusCode::OK))
        }
        ("log" | "exec" | "attach" | "portforward", _) if ctx.res.kind == "Pod" => {
            let (_, pod) = load(&ctx).await?;
            let kind = match sub.as_str() {
                "log" => super::proxy::PodStream::Log,
                "exec" => super::proxy::PodStream::Exec,
                "attach" => super::proxy::PodStream::Attach,
                _ => super::proxy::PodStream::PortForward,
            };
            let node = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let addr = if node.is_empty() {
                (String::new(), 0)
            } else {
                node_address(&ctx, &node).await?
            };
            let query = req.uri().query().unwrap_or("").to_string();
            super::proxy::pod_stream(
                &ctx.state,
                (addr.0.as_str(), addr.1),
                kind,
                ctx.ns().unwrap_or(""),
                ctx.name(),
                &pod,
                &query,
                req,
            )
            .await
        }
        ("proxy", _) if ctx.res.kind == "Node" => {
            let addr = node_address(&ctx, ctx.name()).await?;
            let query = req.uri().query().unwrap_or("").to_string();
            let rest = ctx.info.rest.clone();
            super::proxy::node_proxy(&ctx.state, (addr.0.as_str(), addr.1), &rest, &query, req)
                .await
        }
        ("proxy", _) if ctx.res.kind == "Pod" || ctx.res.kind == "Service" => {
            let id = ctx.name().to_string();
            let (scheme, name, port) = super::proxy::split_target(&id).ok_or_else(|| {
                ApiError::bad_request(format!("invalid {} proxy target {id:?}", ctx.res.kind))
            })?;
            let (ip, port) = if ctx.res.kind == "Pod" {
                pod_backend(&ctx, name, port).await?
            } else {
                service_backend(&ctx, name, port).await?
            };
            let query = req.uri().query().unwrap_or("").to_string();
            let rest = ctx.info.rest.clone();
            super::proxy::backend_proxy(scheme, (ip.as_str(), port), &rest, &query, req).await
        }
        ("log" | "exec" | "attach" | "portforward" | "proxy", _) => Err(ApiError::not_implemented(
            format!("{}/{sub} is not served by rkube yet", ctx.res.plural),
        )),
        _ => Err(ApiError::method_not_allowed(
            &verb,
            &format!("{}/{sub}", ctx.res.plural),
        )),
    }
}

/// Loads `kind`'s object `name` in the request's namespace.
async fn load_named(ctx: &Ctx, group: &str, plural: &str, name: &str) -> ApiResult<Value> {
    let reg = ctx.state.registry();
    let res = reg
        .find(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} not registered")))?;
    let kv = ctx
        .state
        .store
        .get(&res.key(ctx.ns(), name))
        .await?
        .ok_or_else(|| ApiError::not_found(&res, name))?;
    crud::decode(&kv)
}

fn unavailable(msg: String) -> ApiError {
    ApiError::new(503, "ServiceUnavailable", msg)
}

/// pods/proxy: the pod's IP and the given port.
async fn pod_backend(ctx: &Ctx, name: &str, port: &str) -> ApiResult<(String, u16)> {
    let pod = load_named(ctx, "", "pods", name).await?;
    let ip = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unavailable(format!("pod {name} has no IP address yet")))?
        .to_string();
    // Without a port, the first declared container port (else 80), as
    // kube-apiserver's pod ResourceLocation picks.
    let first = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|c| c.pointer("/ports/0/containerPort").and_then(Value::as_u64));
    let port = if port.is_empty() {
        first.unwrap_or(80) as u16
    } else {
        port.parse()
            .map_err(|_| ApiError::bad_request(format!("invalid port {port:?} for pod {name}")))?
    };
    Ok((ip, port))
}

/// services/proxy: a ready endpoint of the service port named (by name or
/// number) in `port`, or of its only port.
async fn service_backend(ctx: &Ctx, name: &str, port: &str) -> ApiResult<(String, u16)> {
    let svc = load_named(ctx, "", "services", name).await?;
    let none = Vec::new();
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .unwrap_or(&none);
    let sp = ports
        .iter()
        .find(|p| {
            port.is_empty()
                || p["name"].as_str() == Some(port)
                || p["port"].as_i64().map(|n| n.to_string()).as_deref() == Some(port)
        })
        .filter(|_| !port.is_empty() || ports.len() == 1)
        .ok_or_else(|| {
            unavailable(format!(
                "no service port {port:?} found for service {name:?}"
            ))
        })?;
    let port_name = sp["name"].as_str().unwrap_or("");
    let eps = load_named(ctx, "", "endpoints", name)
        .await
        .map_err(|_| unavailable(format!("no endpoints available for service {name:?}")))?;
    for subset in eps["subsets"].as_array().unwrap_or(&none) {
        let Some(target) = subset["ports"]
            .as_array()
            .unwrap_or(&none)
            .iter()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .and_then(|p| p["port"].as_u64())
        else {
            continue;
        };
        let addrs = subset["addresses"].as_array().unwrap_or(&none);
        if addrs.is_empty() {
            continue;
        }
        // Spread requests over the ready addresses, as the upstream
        // proxy picks one at random.
        let pick = rand_index(addrs.len());
        if let Some(ip) = addrs[pick]["ip"].as_str() {
            return Ok((ip.to_string(), target as u16));
        }
    }
    Err(unavailable(format!(
        "no endpoints available for service {name:?}"
    )))
}

fn rand_index(n: usize) -> usize {
    use rand::Rng;
    rand::rng().random_range(0..n.max(1))
}

/// Where a node agent listens: the Node's InternalIP and kubelet port.
async fn node_address(ctx: &Ctx, node: &str) -> ApiResult<(String, u16)> {
    let reg = ctx.state.registry();
    let nodes = reg
        .find("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes not registered"))?;
    let kv = ctx
        .state
        .store
        .get(&nodes.key(None, node))
        .await?
        .ok_or_else(|| ApiError::not_found(&nodes, node))?;
    let obj = crud::decode(&kv)?;
    let port = obj
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .unwrap_or(10250) as u16;
    let ip = obj
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .and_then(|x| x["address"].as_str())
        .unwrap_or("127.0.0.1")
        .to_string();
    Ok((ip, port))
}

async fn write_update_ephemeral(
    ctx: &Ctx,
    kv: &rkube_store::KeyValue,
    old: &Value,
    new: Value,
    manager: &str,
) -> ApiResult<(Value, Vec<String>)> {
    write_update(ctx, kv, old, new, manager, "ephemeralcontainers", true).await
}

/// Binds a pod to a node (pods/binding and the bindings resource).
pub async fn bind(ctx: &Ctx, pod_name: &str, binding: &Value) -> ApiResult<Response> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("binding target.name is required"))?
        .to_string();
    let reg = ctx.state.registry();
    let pods = reg
        .find("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods not registered"))?;
    let key = pods.key(ctx.ns(), pod_name);
    for _ in 0..8 {
        let kv = ctx
            .state
            .store
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(&pods, pod_name))?;
        let mut pod = crud::decode(&kv)?;
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                &pods,
                pod_name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(n) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                &pods,
                pod_name,
                &format!("pod {pod_name} is already assigned to node \"{n}\""),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        let now = objects::now();
        let conds = pod["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conds: Vec<Value> = conds
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        pod["status"]["conditions"] = json!(conds);
        let mut bytes_obj = pod.clone();
        if let Some(m) = bytes_obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        match ctx
            .state
            .store
            .update(
                &key,
                serde_json::to_vec(&bytes_obj).unwrap_or_default(),
                Some(kv.mod_revision),
            )
            .await
        {
            Ok(_) => return Ok(json_response(StatusCode::CREATED, &success_status(None))),
            Err(rkube_store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::modified(&pods, pod_name))
}

async fn scale(ctx: Ctx, req: Request) -> ApiResult<Response> {
    let (spec_path, status_path, selector_path) = match &ctx.crd {
        Some(crd) => rkube_apimachinery::crd::scale_paths(crd, &ctx.res.version)
            .ok_or_else(|| ApiError::no_route(&ctx.info.path))?,
        None => (
            ".spec.replicas".to_string(),
            ".status.replicas".to_string(),
            Some(".status.selector".to_string()),
        ),
    };
    let ptr = |p: &str| p.replace('.', "/");
    let to_scale = |obj: &Value| -> Value {
        let replicas = obj
            .pointer(&ptr(&spec_path))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let status_replicas = obj
            .pointer(&ptr(&status_path))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let selector = if ctx.crd.is_none() {
            obj.pointer("/spec/selector")
                .map(label_selector_string)
                .unwrap_or_default()
        } else {
            selector_path
                .as_ref()
                .and_then(|p| obj.pointer(&ptr(p)))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        json!({
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": objects::name(obj), "namespace": objects::namespace(obj), "uid": meta_str(obj, "uid"),
                         "resourceVersion": meta_str(obj, "resourceVersion"), "creationTimestamp": meta_str(obj, "creationTimestamp")},
            "spec": {"replicas": replicas},
            "status": {"replicas": status_replicas, "selector": selector},
        })
    };
    let verb = ctx.info.verb.clone();
    let ctype = ct(&req);
    let ua = ua(&req);
    let body = read_body(req.into_body()).await?;
    for _ in 0..8 {
        let (kv, obj) = load(&ctx).await?;
        let current = to_scale(&obj);
        if verb == "get" {
            return Ok(json_response(StatusCode::OK, &current));
        }
        let wanted = match verb.as_str() {
            "update" => parse_body(&ctype, &body)?,
            "patch" => {
                let p: Value = if ctype.contains("yaml") {
                    serde_yaml::from_slice(&body)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?
                } else {
                    serde_json::from_slice(&body)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?
                };
                let c = ctype.split(';').next().unwrap_or("");
                match c {
                    "application/json-patch+json" => {
                        rkube_apimachinery::patch::json_patch(&current, &p)
                    }
                    _ => rkube_apimachinery::patch::merge_patch(&current, &p),
                }
                .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?
            }
            _ => return Err(ApiError::method_not_allowed(&verb, "scale")),
        };
        if let Some(rv) = wanted
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            if !rv.is_empty() && rv != kv.mod_revision.to_string() {
                return Err(ApiError::modified(&ctx.res, ctx.name()));
            }
        }
        let replicas = wanted
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                &ctx.res,
                ctx.name(),
                &[rkube_apimachinery::Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                    field: "spec.replicas".into(),
                }],
            ));
        }
        let mut new = obj.clone();
        let p = ptr(&spec_path);
        let (parent, leaf) = p.rsplit_once('/').unwrap_or(("", "replicas"));
        if new.pointer(parent).is_none() {
            return Err(ApiError::bad_request(format!(
                "object has no {spec_path} parent"
            )));
        }
        if let Some(m) = new.pointer_mut(parent).and_then(Value::as_object_mut) {
            m.insert(leaf.to_string(), json!(replicas));
        }
        objects::set_rv(&mut new, kv.mod_revision);
        let manager = ctx.manager(ua.as_deref(), "unknown");
        match write_update(&ctx, &kv, &obj, new, &manager, "", true).await {
            Ok((o, _)) => return Ok(json_response(StatusCode::OK, &to_scale(&o))),
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::modified(&ctx.res, ctx.name()))
}

/// The string form of a metav1.LabelSelector (as Scale.status.selector).
pub fn label_selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e["key"].as_str().unwrap_or("");
            let vals: Vec<&str> = e["values"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e["operator"].as_str().unwrap_or("") {
                "In" => parts.push(format!("{key} in ({})", vals.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", vals.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

async fn token(ctx: &Ctx, tr: Value) -> ApiResult<Response> {
    let (_, sa) = load(ctx).await?;
    let ns = ctx.ns().unwrap_or("default");
    let audiences: Vec<String> = tr
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let exp = tr
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if exp < 600 {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!("TokenRequest.authentication.k8s.io \"{}\" is invalid: spec.expirationSeconds: Invalid value: {exp}: may not specify a duration less than 10 minutes", ctx.name()),
        ));
    }
    let bound_pod = tr
        .pointer("/spec/boundObjectRef")
        .filter(|r| r["kind"] == "Pod")
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_string(),
                r["uid"].as_str().unwrap_or("").to_string(),
            )
        });
    // A pod-bound token also names the pod's node (name and uid).
    let mut bound_node: Option<(String, String)> = None;
    if let Some((pod_name, _)) = &bound_pod {
        let node = load_named(ctx, "", "pods", pod_name)
            .await
            .ok()
            .and_then(|p| {
                p.pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .filter(|n| !n.is_empty());
        if let Some(node) = node {
            let reg = ctx.state.registry();
            if let Some(nodes) = reg.find("", "v1", "nodes") {
                if let Some(kv) = ctx.state.store.get(&nodes.key(None, &node)).await? {
                    let n = crud::decode(&kv)?;
                    let uid = meta_str(&n, "uid").unwrap_or("").to_string();
                    bound_node = Some((node, uid));
                }
            }
        }
    }
    let sa_uid = meta_str(&sa, "uid").unwrap_or("").to_string();
    let bound = crate::auth::Binding {
        pod: bound_pod.as_ref().map(|(n, u)| (n.as_str(), u.as_str())),
        node: bound_node.as_ref().map(|(n, u)| (n.as_str(), u.as_str())),
    };
    let (token, expiry) = ctx
        .state
        .tokens
        .issue(ns, ctx.name(), &sa_uid, &audiences, exp, bound)
        .map_err(ApiError::internal)?;
    let mut out = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": ctx.name(), "namespace": ns, "creationTimestamp": null},
        "spec": tr.get("spec").cloned().unwrap_or(json!({})),
        "status": {"token": token, "expirationTimestamp": expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string()},
    });
    if out["spec"].get("audiences").is_none() {
        out["spec"]["audiences"] = json!(["https://kubernetes.default.svc.cluster.local"]);
    }
    out["spec"]["expirationSeconds"] = json!(exp);
    Ok(json_response(StatusCode::CREATED, &out))
}

/// Serves the create-only review resources.
pub async fn review(ctx: Ctx, req: Request) -> ApiResult<Response> {
    if super::is_table(ctx.repr) {
        // Reviews have no object metadata to print (kube-apiserver's
        // "backend which does not implement metadata").
        return Err(ApiError::new(
            406,
            "NotAcceptable",
            format!(
                "the resource {} does not support being converted to a Table",
                ctx.res.plural
            ),
        ));
    }
    let ct = ct(&req);
    let body = read_body(req.into_body()).await?;
    let mut obj = parse_body(&ct, &body)?;
    let kind = ctx.res.kind.clone();
    let user_json = |u: &crate::auth::UserInfo| {
        let mut v = json!({"username": u.username, "groups": u.groups});
        if !u.uid.is_empty() {
            v["uid"] = json!(u.uid);
        }
        if !u.extra.is_empty() {
            v["extra"] = json!(u.extra);
        }
        v
    };
    match kind.as_str() {
        "SelfSubjectReview" => {
            obj["status"] = json!({"userInfo": user_json(&ctx.user)});
        }
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            if kind == "LocalSubjectAccessReview" {
                let ns = ctx.ns().unwrap_or("");
                let in_spec = obj
                    .pointer("/spec/resourceAttributes/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if obj.pointer("/spec/resourceAttributes").is_none() || in_spec != ns {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {ns}"
                    )));
                }
                if obj.get("metadata").is_some_and(Value::is_object) {
                    obj["metadata"]["namespace"] = json!(ns);
                }
            }
            let user = if kind == "SelfSubjectAccessReview" {
                ctx.user.clone()
            } else {
                crate::auth::UserInfo {
                    username: obj
                        .pointer("/spec/user")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    uid: obj
                        .pointer("/spec/uid")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    groups: obj
                        .pointer("/spec/groups")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| s.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default(),
                    extra: Default::default(),
                }
            };
            let ra = obj.pointer("/spec/resourceAttributes");
            let nra = obj.pointer("/spec/nonResourceAttributes");
            let s = |v: Option<&Value>, f: &str| {
                v.and_then(|v| v.get(f))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let attrs = if let Some(ra) = ra {
                Attributes {
                    user,
                    verb: s(Some(ra), "verb"),
                    resource_request: true,
                    api_group: s(Some(ra), "group"),
                    resource: s(Some(ra), "resource"),
                    subresource: s(Some(ra), "subresource"),
                    namespace: s(Some(ra), "namespace"),
                    name: s(Some(ra), "name"),
                    path: String::new(),
                }
            } else if let Some(nra) = nra {
                Attributes {
                    user,
                    verb: s(Some(nra), "verb"),
                    resource_request: false,
                    api_group: String::new(),
                    resource: String::new(),
                    subresource: String::new(),
                    namespace: String::new(),
                    name: String::new(),
                    path: s(Some(nra), "path"),
                }
            } else {
                return Err(ApiError::invalid(
                    &ctx.res,
                    "",
                    &[rkube_apimachinery::Cause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
                        field: "spec.resourceAttributes".into(),
                    }],
                ));
            };
            let status = match ctx.state.rbac.authorize(&attrs) {
                Decision::Allow => json!({"allowed": true, "reason": "allowed by RBAC"}),
                Decision::Deny(r) => json!({"allowed": false, "denied": true, "reason": r}),
                Decision::NoOpinion => json!({"allowed": false}),
            };
            obj["status"] = status;
        }
        "SelfSubjectRulesReview" => {
            let ns = obj
                .pointer("/spec/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let (res_rules, nonres_rules) = ctx.state.rbac.rules_for(&ctx.user, &ns);
            obj["status"] = json!({"resourceRules": res_rules, "nonResourceRules": nonres_rules, "incomplete": false});
        }
        "TokenReview" => {
            let token = obj
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or("");
            obj["status"] = match ctx.state.tokens.verify(token) {
                Ok((u, _)) => {
                    json!({"authenticated": true, "user": user_json(&u), "audiences": ["https://kubernetes.default.svc.cluster.local"]})
                }
                Err(e) => json!({"authenticated": false, "error": e.to_string()}),
            };
        }
        _ => return Err(ApiError::method_not_allowed("create", &ctx.res.plural)),
    }
    obj["apiVersion"] = json!(ctx.res.api_version());
    obj["kind"] = json!(kind);
    if obj.get("metadata").is_none() {
        obj["metadata"] = json!({"creationTimestamp": null});
    }
    Ok(json_response(StatusCode::CREATED, &obj))
}
