//! CRUD verbs on a resource collection or object: get, list, create, update,
//! patch (JSON, merge, strategic merge, apply), delete and deletecollection,
//! with Kubernetes' metadata, concurrency, dry-run and deletion semantics.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use rkube_apimachinery::{patch, selector, table, typed, validation};
use rkube_store::KeyValue;
use serde_json::{json, Value};

use super::context::Ctx;
use super::{json_response, read_body};
use crate::objects::{self, meta_mut, meta_str};
use crate::request::Representation;
use crate::status::{success_status, ApiError, ApiResult};

/// Decodes a stored value, stamping its resourceVersion.
pub fn decode(kv: &KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
    objects::set_rv(&mut v, kv.mod_revision);
    Ok(v)
}

fn encode(v: &Value) -> Vec<u8> {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Parses a request body as JSON or YAML according to its content type.
pub fn parse_body(ct: &str, body: &[u8]) -> ApiResult<Value> {
    let ct = ct.split(';').next().unwrap_or("").trim();
    if rkube_protobuf::is_protobuf(ct) {
        return rkube_protobuf::decode_object(body, None).map_err(|e| match e {
            rkube_protobuf::Error::UnknownKind { .. }
            | rkube_protobuf::Error::UnsupportedEncoding { .. } => {
                ApiError::new(415, "UnsupportedMediaType", e.to_string())
            }
            other => {
                ApiError::bad_request(format!("the request body is not valid protobuf: {other}"))
            }
        });
    }
    if ct.contains("protobuf")
        || !(ct.is_empty() || ct == "*/*" || ct.contains("json") || ct.contains("yaml"))
    {
        return Err(ApiError::unsupported_media(ct));
    }
    let v: Value = if ct.contains("yaml") {
        serde_yaml::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
        })?
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

fn content_type(req: &Request) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string()
}

fn user_agent(req: &Request) -> Option<String> {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// Rejects malformed query parameters with 400 before anything is read or
/// written, as kube-apiserver's parameter codec does.
pub fn validate_query(ctx: &Ctx) -> ApiResult<()> {
    if matches!(
        ctx.info.subresource.as_str(),
        "proxy" | "log" | "exec" | "attach" | "portforward"
    ) {
        // Connect subresources pass their query on (or parse their own).
        return Ok(());
    }
    let int = |k: &str| -> ApiResult<()> {
        if let Some(v) = ctx.q(k) {
            if v.parse::<i64>().is_err() {
                return Err(ApiError::bad_request(format!(
                    "invalid value {v:?} for query parameter {k}: must be an integer"
                )));
            }
        }
        Ok(())
    };
    int("gracePeriodSeconds")?;
    int("timeoutSeconds")?;
    if let Some(l) = ctx.q("limit") {
        if l.parse::<i64>().map_or(true, |n| n < 0) {
            return Err(ApiError::bad_request(format!(
                "invalid value {l:?} for query parameter limit: must be a non-negative integer"
            )));
        }
    }
    if let Some(t) = ctx.q("timeoutSeconds") {
        if t.parse::<i64>().is_ok_and(|n| n < 0) {
            return Err(ApiError::bad_request(format!(
                "invalid value {t:?} for query parameter timeoutSeconds: must be a non-negative integer"
            )));
        }
    }
    for k in [
        "watch",
        "allowWatchBookmarks",
        "sendInitialEvents",
        "orphanDependents",
        "force",
    ] {
        if let Some(v) = ctx.q(k) {
            if !matches!(v, "" | "true" | "false" | "1" | "0" | "True" | "False") {
                return Err(ApiError::bad_request(format!(
                    "invalid value {v:?} for query parameter {k}: must be a boolean"
                )));
            }
        }
    }
    if let Some(rv) = ctx.q("resourceVersion").filter(|r| !r.is_empty()) {
        if rv.parse::<u64>().is_err() {
            return Err(ApiError::bad_request(format!(
                "resourceVersion: Invalid value: {rv:?}: must be a non-negative integer"
            )));
        }
    }
    if let Some(m) = ctx.q("resourceVersionMatch").filter(|m| !m.is_empty()) {
        if !matches!(m, "NotOlderThan" | "Exact") {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""
            )));
        }
        if ctx.q("resourceVersion").unwrap_or("").is_empty() {
            return Err(ApiError::bad_request(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
    }
    if let Some(d) = ctx.q("dryRun").filter(|d| !d.is_empty()) {
        if d != "All" {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {d:?}: supported values: \"All\""
            )));
        }
    }
    if let Some(f) = ctx.q("fieldValidation").filter(|f| !f.is_empty()) {
        if !matches!(f, "Strict" | "Warn" | "Ignore") {
            return Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {f:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            )));
        }
    }
    if let Some(c) = ctx.q("continue").filter(|c| !c.is_empty()) {
        decode_continue(c)?;
        if ctx
            .q("resourceVersion")
            .is_some_and(|r| !r.is_empty() && r != "0")
        {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
    }
    if let Some(m) = ctx.q("fieldManager") {
        if m.chars().count() > 128 {
            return Err(ApiError::bad_request(
                "fieldManager: Too long: may not be more than 128 bytes",
            ));
        }
    }
    Ok(())
}

/// 400 for a built-in object that does not decode into its k8s-openapi type
/// (kube-apiserver's `<Kind> in version "<v>" cannot be handled as a <Kind>`).
fn typed_check(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    if ctx.crd.is_some() || ctx.res.custom {
        return Ok(());
    }
    // `null` members decode as zero values (Go semantics) and are not stored.
    typed::strip_nulls(obj);
    match typed::check_object(&ctx.res.group, &ctx.res.version, &ctx.res.kind, obj) {
        Some(Err(e)) => Err(ApiError::bad_request(typed::cannot_handle(
            &ctx.res.kind,
            &ctx.res.version,
            &e,
        ))),
        _ => Ok(()),
    }
}

/// 400 for an options or subresource body that does not decode into its type.
pub fn typed_body_check(group: &str, kind: &str, body: &Value) -> ApiResult<()> {
    match typed::check_body(group, kind, body) {
        Some(Err(e)) => {
            let version = body
                .get("apiVersion")
                .and_then(Value::as_str)
                .map(|av| av.rsplit('/').next().unwrap_or(av))
                .unwrap_or("v1");
            Err(ApiError::bad_request(typed::cannot_handle(
                kind, version, &e,
            )))
        }
        _ => Ok(()),
    }
}

/// Reads, parses and type-checks a request body, then hands the request on
/// with the same bytes. `empty_ok` lets an empty body through.
async fn precheck_body(
    req: Request,
    group: &str,
    kind: &str,
    empty_ok: bool,
) -> ApiResult<Request> {
    let ct = content_type(&req);
    let (parts, body) = req.into_parts();
    let bytes = read_body(body).await?;
    if !(empty_ok && bytes.is_empty()) {
        let v = parse_body(&ct, &bytes)?;
        typed_body_check(group, kind, &v)?;
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// Type-checks the body of a subresource write (Eviction, TokenRequest,
/// Binding, Scale, finalize, ephemeralcontainers).
async fn precheck_subresource_body(ctx: &Ctx, req: Request) -> ApiResult<Request> {
    let target = match (ctx.info.subresource.as_str(), ctx.info.verb.as_str()) {
        ("eviction", "create") => Some(("policy", "Eviction", false)),
        ("token", "create") => Some(("authentication.k8s.io", "TokenRequest", true)),
        ("binding", "create") => Some(("", "Binding", false)),
        ("scale", "update") => Some(("autoscaling", "Scale", false)),
        ("finalize", "update") => Some(("", "Namespace", false)),
        ("ephemeralcontainers", "update") => Some(("", "Pod", false)),
        _ => None,
    };
    match target {
        Some((g, k, empty_ok)) => precheck_body(req, g, k, empty_ok).await,
        None if ctx.info.subresource == "scale" && ctx.info.verb == "patch" => {
            let neutral = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {},
                                 "spec": {"replicas": 0}, "status": {"replicas": 0}});
            precheck_patch(req, neutral, "autoscaling", "Scale").await
        }
        None if ctx.info.subresource == "ephemeralcontainers" && ctx.info.verb == "patch" => {
            let neutral = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {},
                                 "spec": {"containers": [], "ephemeralContainers": []}});
            precheck_patch(req, neutral, "", "Pod").await
        }
        None => Ok(req),
    }
}

/// A patch of a subresource whose handler patches a view of the object
/// (`/scale`, `/ephemeralcontainers`) must leave something that decodes
/// (`replicas: "x"` is a 400, not a scale to zero): the patch is tried on a
/// neutral object of the kind first.
async fn precheck_patch(
    req: Request,
    neutral: Value,
    group: &str,
    kind: &str,
) -> ApiResult<Request> {
    let ct = content_type(&req);
    let (parts, body) = req.into_parts();
    let bytes = read_body(body).await?;
    let c = ct.split(';').next().unwrap_or("").trim();
    let p: Value = if c.contains("yaml") {
        serde_yaml::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
    };
    let tried = match c {
        "application/json-patch+json" => patch::json_patch(&neutral, &p).ok(),
        _ if p.is_object() => patch::merge_patch(&neutral, &p).ok(),
        _ => {
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"v1\" cannot be handled as a {kind}: the patch must be a JSON object"
            )))
        }
    };
    if let Some(v) = tried {
        if !v.is_object() {
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"v1\" cannot be handled as a {kind}: the patched object must be a JSON object"
            )));
        }
        typed_body_check(group, kind, &v)?;
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// Dispatches a resource request to its verb handler.
pub async fn route(ctx: Ctx, req: Request) -> ApiResult<Response> {
    let verb = ctx.info.verb.clone();
    validate_query(&ctx)?;
    if ctx.res.namespaced && ctx.info.namespace.is_none() && verb != "list" && verb != "watch" {
        return Err(ApiError::no_route(&ctx.info.path));
    }
    if !ctx.res.namespaced && ctx.info.namespace.is_some() {
        return Err(ApiError::no_route(&ctx.info.path));
    }
    if !ctx.info.subresource.is_empty() {
        let req = precheck_subresource_body(&ctx, req).await?;
        return super::subresources::route(ctx, req).await;
    }
    if matches!(
        ctx.res.group.as_str(),
        "authorization.k8s.io" | "authentication.k8s.io"
    ) {
        if verb != "create" {
            return Err(ApiError::method_not_allowed(&verb, &ctx.res.plural));
        }
        let (group, kind) = (ctx.res.group.clone(), ctx.res.kind.clone());
        let req = precheck_body(req, &group, &kind, false).await?;
        return super::subresources::review(ctx, req).await;
    }
    if ctx.res.group.is_empty() && ctx.res.kind == "Binding" && verb == "create" {
        let ct = content_type(&req);
        let body = read_body(req.into_body()).await?;
        let b = parse_body(&ct, &body)?;
        typed_body_check("", "Binding", &b)?;
        let pod = objects::name(&b).to_string();
        return super::subresources::bind(&ctx, &pod, &b).await;
    }
    if !ctx.res.verbs.contains(&verb) {
        return Err(ApiError::method_not_allowed(&verb, &ctx.res.plural));
    }
    match verb.as_str() {
        "get" => get(&ctx).await,
        "list" => list(&ctx).await,
        "watch" => super::watch::watch(ctx).await,
        "create" => {
            let ua = user_agent(&req);
            let ct = content_type(&req);
            let body = read_body(req.into_body()).await?;
            let obj = parse_body(&ct, &body)?;
            let manager = ctx.manager(ua.as_deref(), "unknown");
            create(&ctx, obj, &manager).await
        }
        "update" => {
            let ua = user_agent(&req);
            let ct = content_type(&req);
            let body = read_body(req.into_body()).await?;
            let obj = parse_body(&ct, &body)?;
            let manager = ctx.manager(ua.as_deref(), "unknown");
            update(&ctx, obj, &manager, "").await
        }
        "patch" => {
            let ua = user_agent(&req);
            let ct = content_type(&req);
            let body = read_body(req.into_body()).await?;
            patch_object(&ctx, &ct, &body, ua.as_deref(), "").await
        }
        "delete" => {
            let body = read_body(req.into_body()).await?;
            delete(&ctx, &body).await
        }
        "deletecollection" => {
            let body = read_body(req.into_body()).await?;
            delete_collection(&ctx, &body).await
        }
        _ => Err(ApiError::method_not_allowed(&verb, &ctx.res.plural)),
    }
}

/// A custom resource as read: its schema's defaults applied (objects
/// stored before a default was added get it too, as upstream does).
pub fn read_defaults(ctx: &Ctx, obj: &mut Value) {
    if let Some(crd) = &ctx.crd {
        rkube_apimachinery::crd::apply_defaults(crd, &ctx.res.version, obj);
    }
}

/// Renders one object per the requested representation.
pub fn render_one(ctx: &Ctx, obj: &Value, code: StatusCode) -> Response {
    let mut defaulted;
    let obj = if ctx.crd.is_some() {
        defaulted = obj.clone();
        read_defaults(ctx, &mut defaulted);
        &defaulted
    } else {
        obj
    };
    match ctx.repr {
        Representation::Table => {
            let rv = meta_str(obj, "resourceVersion").unwrap_or("").to_string();
            let t = table::to_table(
                &ctx.res,
                std::slice::from_ref(obj),
                include_object(ctx),
                &rv,
                None,
                ctx.printer_columns().as_deref(),
                chrono::Utc::now(),
            );
            json_response(code, &t)
        }
        Representation::PartialMetadata => json_response(code, &partial(obj)),
        Representation::Json => json_response(code, obj),
    }
}

fn include_object(ctx: &Ctx) -> table::IncludeObject {
    match ctx.q("includeObject") {
        Some("None") => table::IncludeObject::None,
        Some("Object") => table::IncludeObject::Object,
        _ => table::IncludeObject::Metadata,
    }
}

fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// Loads the addressed object or 404.
pub async fn load(ctx: &Ctx) -> ApiResult<(KeyValue, Value)> {
    let kv = ctx
        .state
        .store
        .get(&ctx.key())
        .await?
        .ok_or_else(|| ApiError::not_found(&ctx.res, ctx.name()))?;
    let v = decode(&kv)?;
    Ok((kv, v))
}

async fn get(ctx: &Ctx) -> ApiResult<Response> {
    let (_, obj) = load(ctx).await?;
    Ok(render_one(ctx, &obj, StatusCode::OK))
}

/// Parsed list options shared by list, watch and deletecollection.
pub struct ListFilter {
    labels: Option<selector::LabelSelector>,
    fields: Option<selector::FieldSelector>,
}

impl ListFilter {
    /// Parses labelSelector and fieldSelector.
    pub fn parse(ctx: &Ctx) -> ApiResult<Self> {
        let labels = match ctx.q("labelSelector").filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(selector::LabelSelector::parse(s).map_err(|e| {
                let msg = e.to_string();
                if msg.starts_with("unable to parse requirement") {
                    ApiError::bad_request(msg)
                } else {
                    ApiError::bad_request(format!("unable to parse requirement: {msg}"))
                }
            })?),
            None => None,
        };
        let fields = match ctx.q("fieldSelector").filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(
                selector::FieldSelector::parse(s, &ctx.res.group, &ctx.res.plural)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            ),
            None => None,
        };
        Ok(Self { labels, fields })
    }

    /// Whether an object passes both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.labels {
            if !l.matches(&objects::labels(obj)) {
                return false;
            }
        }
        if let Some(f) = &self.fields {
            if !f.matches(obj) {
                return false;
            }
        }
        true
    }
}

fn stamp_kind(ctx: &Ctx, obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| json!(ctx.res.api_version()));
        m.entry("kind").or_insert_with(|| json!(ctx.res.kind));
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    start: String,
}

fn decode_continue(c: &str) -> ApiResult<ContinueToken> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        })
}

/// Lists objects with selectors and pagination.
pub async fn list_objects(ctx: &Ctx) -> ApiResult<(Vec<Value>, u64, Option<String>, usize)> {
    use base64::Engine;
    let filter = ListFilter::parse(ctx)?;
    let prefix = ctx.res.key_prefix_ns(ctx.ns());
    let limit: usize = match ctx.q("limit") {
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let mut start: Option<String> = None;
    let mut token_rv = None;
    if let Some(c) = ctx.q("continue").filter(|c| !c.is_empty()) {
        let tok = decode_continue(c)?;
        if !tok.start.starts_with(&prefix) {
            return Err(ApiError::bad_request(
                "continue key is not valid: the continue token is for a different resource",
            ));
        }
        start = Some(tok.start);
        token_rv = Some(tok.rv);
    }
    let page = match token_rv {
        Some(rv) => match ctx.state.store.list_at(&prefix, start.as_deref(), 0, rv).await {
            Ok(p) => p,
            Err(rkube_store::Error::Compacted { .. }) => {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ))
            }
            Err(e) => return Err(e.into()),
        },
        None => ctx.state.store.list(&prefix, start.as_deref(), 0).await?,
    };
    let rv = token_rv.unwrap_or(page.revision);
    let mut items = Vec::new();
    let mut last_key = None;
    let mut remaining = 0usize;
    for kv in &page.items {
        if limit > 0 && items.len() >= limit {
            // Count what is left for remainingItemCount.
            let v = decode(kv)?;
            if filter.matches(&v) {
                remaining += 1;
            }
            continue;
        }
        let mut v = decode(kv)?;
        if !filter.matches(&v) {
            continue;
        }
        stamp_kind(ctx, &mut v);
        read_defaults(ctx, &mut v);
        items.push(v);
        last_key = Some(kv.key.clone());
    }
    let cont = if remaining > 0 {
        let tok = ContinueToken {
            rv,
            start: last_key.unwrap_or_default(),
        };
        Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&tok).unwrap_or_default()),
        )
    } else {
        None
    };
    Ok((items, rv, cont, remaining))
}

async fn list(ctx: &Ctx) -> ApiResult<Response> {
    let (items, rv, cont, remaining) = list_objects(ctx).await?;
    let rv_s = rv.to_string();
    let body = match ctx.repr {
        Representation::Table => table::to_table(
            &ctx.res,
            &items,
            include_object(ctx),
            &rv_s,
            cont.as_deref(),
            ctx.printer_columns().as_deref(),
            chrono::Utc::now(),
        ),
        Representation::PartialMetadata => {
            let mut meta = json!({"resourceVersion": rv_s});
            if let Some(c) = &cont {
                meta["continue"] = json!(c);
                meta["remainingItemCount"] = json!(remaining);
            }
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                   "items": items.iter().map(partial).collect::<Vec<_>>()})
        }
        Representation::Json => {
            let mut meta = json!({"resourceVersion": rv_s});
            if let Some(c) = &cont {
                meta["continue"] = json!(c);
                meta["remainingItemCount"] = json!(remaining);
            }
            json!({"kind": ctx.res.list_kind(), "apiVersion": ctx.res.api_version(), "metadata": meta, "items": items})
        }
    };
    Ok(json_response(StatusCode::OK, &body))
}

fn check_type(ctx: &Ctx, obj: &Value) -> ApiResult<()> {
    let want = ctx.res.api_version();
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        if av != want {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want})"
            )));
        }
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str) {
        if k != ctx.res.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                ctx.res.kind
            )));
        }
    }
    Ok(())
}

/// Unknown-field handling per `fieldValidation` (Strict: 400, Warn: warnings, Ignore).
fn field_validation(ctx: &Ctx, obj: &mut Value) -> ApiResult<Vec<String>> {
    let mode = ctx.q("fieldValidation").unwrap_or("Warn");
    let unknown: Vec<String> = if let Some(crd) = &ctx.crd {
        let mut tmp = obj.clone();
        rkube_apimachinery::crd::prune(crd, &ctx.res.version, &mut tmp)
    } else {
        ctx.state
            .openapi
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .unknown_fields(&ctx.res.api_version(), &ctx.res.kind, obj)
    };
    // Built-in types drop unknown fields, as decoding into Go structs does
    // (custom resources are pruned in admission).
    if ctx.crd.is_none() {
        for path in &unknown {
            remove_path(obj, path);
        }
    }
    if unknown.is_empty() || mode == "Ignore" {
        return Ok(vec![]);
    }
    match mode {
        "Strict" => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            unknown
                .iter()
                .map(|f| format!("unknown field \"{}\"", f.trim_start_matches('.')))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        _ => Ok(unknown
            .iter()
            .map(|f| format!("unknown field \"{}\"", f.trim_start_matches('.')))
            .collect()),
    }
}

/// With `fieldValidation=Strict`, an apply configuration of a custom
/// resource may only hold fields its schema declares; the error reads like
/// structured-merge-diff's typed-patch error.
fn check_apply_fields(ctx: &Ctx, patch_doc: &Value) -> ApiResult<()> {
    let (Some(crd), Some("Strict")) = (&ctx.crd, ctx.q("fieldValidation")) else {
        return Ok(());
    };
    let unknown = rkube_apimachinery::crd::unknown_fields(crd, &ctx.res.version, patch_doc);
    if unknown.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "failed to create typed patch object ({}, Kind={}): {}",
        ctx.res.api_version(),
        ctx.res.kind,
        unknown
            .iter()
            .map(|f| format!(".{f}: field not declared in schema"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Removes the field at a path like `spec.containers[0].foo`.
fn remove_path(obj: &mut Value, path: &str) {
    let mut segs: Vec<Result<String, usize>> = Vec::new();
    for part in path.trim_start_matches('.').split('.') {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            segs.push(Ok(name.to_string()));
        }
        for idx in rest.split('[').filter(|x| !x.is_empty()) {
            match idx.trim_end_matches(']').parse::<usize>() {
                Ok(i) => segs.push(Err(i)),
                Err(_) => return,
            }
        }
    }
    let Some(last) = segs.pop() else { return };
    let mut cur = obj;
    for seg in segs {
        let next = match seg {
            Ok(k) => cur.get_mut(k.as_str()),
            Err(i) => cur.get_mut(i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let (Ok(k), Some(m)) = (last, cur.as_object_mut()) {
        m.remove(&k);
    }
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let v = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(h) = axum::http::HeaderValue::from_str(&v) {
            resp.headers_mut().append("Warning", h);
        }
    }
    resp
}

/// Defaulting and validation of a create (`old` None) or update.
fn admit(ctx: &Ctx, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let name = objects::name(obj).to_string();
    if let Some(crd) = &ctx.crd {
        rkube_apimachinery::crd::prune(crd, &ctx.res.version, obj);
        rkube_apimachinery::crd::apply_defaults(crd, &ctx.res.version, obj);
        let mut causes = validation::validate_object_meta(
            obj,
            ctx.res.namespaced,
            validation::NameRule::Dns1123Subdomain,
        );
        causes.extend(rkube_apimachinery::crd::validate_custom(
            crd,
            &ctx.res.version,
            obj,
        ));
        if !causes.is_empty() {
            return Err(ApiError::invalid(&ctx.res, &name, &causes));
        }
        return Ok(());
    }
    let av = ctx.res.api_version();
    if ctx.res.group.is_empty() && ctx.res.kind == "Secret" {
        merge_string_data(obj);
    }
    validation::default_object(&av, &ctx.res.kind, obj);
    let causes = validation::validate(&av, &ctx.res.kind, obj, old);
    if !causes.is_empty() {
        return Err(ApiError::invalid(&ctx.res, &name, &causes));
    }
    Ok(())
}

/// Folds a Secret's write-only `stringData` into `data` (base64), as the
/// Kubernetes conversion does; `stringData` wins over `data` per key.
fn merge_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(sd) = obj
        .as_object_mut()
        .and_then(|m| m.remove("stringData"))
        .and_then(|v| v.as_object().cloned())
    else {
        return;
    };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    for (k, v) in sd {
        let text = v
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| v.to_string());
        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// NamespaceLifecycle on create: the namespace must exist (404
/// `namespaces "x" not found`) and not be terminating (403 with cause
/// NamespaceTerminating), as kube-apiserver's admission plugin answers.
async fn check_namespace(ctx: &Ctx, ns: &str, name: &str) -> ApiResult<()> {
    let key = format!("/registry/core/namespaces/{ns}");
    let Some(kv) = ctx.state.store.get(&key).await? else {
        let nsres = ctx
            .state
            .registry()
            .find("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces not registered"))?;
        return Err(ApiError::not_found(&nsres, ns));
    };
    let obj = decode(&kv)?;
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        let qualified = if ctx.res.group.is_empty() {
            ctx.res.plural.clone()
        } else {
            format!("{}.{}", ctx.res.plural, ctx.res.group)
        };
        let mut err = ApiError::forbidden(format!(
            "{qualified} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
        ));
        let mut details = json!({"name": name, "kind": ctx.res.plural,
            "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]});
        if !ctx.res.group.is_empty() {
            details["group"] = json!(ctx.res.group);
        }
        err.details = Some(details);
        return Err(err);
    }
    Ok(())
}

/// Creates an object.
pub async fn create(ctx: &Ctx, obj: Value, manager: &str) -> ApiResult<Response> {
    create_inner(ctx, obj, Some(manager)).await
}

async fn create_inner(ctx: &Ctx, mut obj: Value, manager: Option<&str>) -> ApiResult<Response> {
    check_type(ctx, &obj)?;
    let warnings = field_validation(ctx, &mut obj)?;
    stamp_kind(ctx, &mut obj);
    typed_check(ctx, &mut obj)?;
    let ns = ctx.ns().map(String::from);
    {
        let meta = meta_mut(&mut obj);
        if ctx.res.namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && Some(n) != ns.as_deref() => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            if let Some(g) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|g| !g.is_empty())
            {
                let n = format!("{g}{}", objects::random_suffix(5));
                meta.insert("name".into(), json!(n));
            }
        }
        for f in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(f);
        }
    }
    if let Some(n) = ctx.info.name.as_deref() {
        if objects::name(&obj) != n {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({n})",
                objects::name(&obj)
            )));
        }
    }
    if let Some(ns) = &ns {
        check_namespace(ctx, ns, objects::name(&obj)).await?;
    }
    let uid = uuid::Uuid::new_v4().to_string();
    {
        let meta = meta_mut(&mut obj);
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(objects::now()));
    }
    prepare_create(ctx, &mut obj, &uid).await?;
    admit(ctx, &mut obj, None)?;
    typed_check(ctx, &mut obj)?;
    // Held until the object is stored, so quota usage cannot overshoot.
    let _quota = crate::admission::admit_create(ctx, &mut obj).await?;
    if obj.get("spec").is_some() || ctx.res.custom {
        meta_mut(&mut obj).insert("generation".into(), json!(1));
    }
    if let Some(manager) = manager {
        let av = ctx.res.api_version();
        patch::track_update(
            None,
            &mut obj,
            manager,
            &av,
            &ctx.res.kind,
            "",
            &objects::now(),
        );
    }
    let name = objects::name(&obj).to_string();
    if ctx.dry_run() {
        return Ok(with_warnings(
            render_one(ctx, &obj, StatusCode::CREATED),
            &warnings,
        ));
    }
    let key = ctx.res.key(ns.as_deref(), &name);
    let kv = match ctx.state.store.create(&key, encode(&obj)).await {
        Ok(kv) => kv,
        Err(rkube_store::Error::AlreadyExists(_)) => {
            return Err(ApiError::already_exists(&ctx.res, &name))
        }
        Err(e) => return Err(e.into()),
    };
    objects::set_rv(&mut obj, kv.mod_revision);
    crate::hooks::after_create(ctx, &obj).await;
    Ok(with_warnings(
        render_one(ctx, &obj, StatusCode::CREATED),
        &warnings,
    ))
}

/// The status a new pod starts with: Pending, with its QoS class.
fn pending_pod_status(pod: &Value) -> Value {
    json!({"phase": "Pending", "qosClass": rkube_apimachinery::quota::qos_class(pod)})
}

/// Type-specific preparation on create (status reset, allocations).
async fn prepare_create(ctx: &Ctx, obj: &mut Value, uid: &str) -> ApiResult<()> {
    let has_status_sub = ctx.res.has_subresource("status");
    match (ctx.res.group.as_str(), ctx.res.kind.as_str()) {
        ("", "Pod") => obj["status"] = pending_pod_status(obj),
        ("", "Namespace") => {}
        ("", "Node") => {}
        ("", "Service") => crate::hooks::allocate_service(ctx, obj).await?,
        ("batch", "Job") => {
            validation::default_job_selector(obj, uid);
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {}
        _ if has_status_sub => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        _ => {}
    }
    Ok(())
}

/// Carries server-owned fields from `old` into `new` and bumps generation.
fn merge_update(ctx: &Ctx, new: &mut Value, old: &Value, sub: &str) -> ApiResult<()> {
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    if sub == "status" || sub == "approval" {
        // Only status changes through the status subresource, with the
        // object's annotations (and labels, except on the apps workloads,
        // whose status strategies keep them), as kube-apiserver's status
        // strategies do. certificatesigningrequests/approval changes only
        // status.conditions.
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        if sub == "approval" {
            if !merged.get("status").is_some_and(Value::is_object) {
                merged["status"] = json!({});
            }
            match new.pointer("/status/conditions").cloned() {
                Some(c) => merged["status"]["conditions"] = c,
                None => {
                    merged["status"]
                        .as_object_mut()
                        .map(|m| m.remove("conditions"));
                }
            }
        } else {
            match status {
                Some(s) => merged["status"] = s,
                None => {
                    merged.as_object_mut().map(|m| m.remove("status"));
                }
            }
        }
        let mut fields = vec!["annotations"];
        if ctx.res.group != "apps" {
            fields.push("labels");
        }
        for f in fields {
            match new.pointer(&format!("/metadata/{f}")).cloned() {
                Some(v) => {
                    meta_mut(&mut merged).insert(f.into(), v);
                }
                None => {
                    meta_mut(&mut merged).remove(f);
                }
            }
        }
        // Keep the caller's resourceVersion for the precondition.
        if let Some(rv) = new.pointer("/metadata/resourceVersion").cloned() {
            meta_mut(&mut merged).insert("resourceVersion".into(), rv);
        }
        *new = merged;
        return Ok(());
    }
    stamp_kind(ctx, new);
    {
        let meta = meta_mut(new);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "generation",
        ] {
            match old_meta.get(f) {
                Some(v) => {
                    meta.insert(f.into(), v.clone());
                }
                None => {
                    meta.remove(f);
                }
            }
        }
    }
    if is_namespace(ctx) && ctx.info.subresource != "finalize" {
        // Only namespaces/finalize changes spec.finalizers.
        match old.pointer("/spec/finalizers") {
            Some(f) => {
                if !new.get("spec").is_some_and(Value::is_object) {
                    new["spec"] = json!({});
                }
                new["spec"]["finalizers"] = f.clone();
            }
            None => {
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            }
        }
    }
    if ctx.res.has_subresource("status") {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                new.as_object_mut().map(|m| m.remove("status"));
            }
        }
    }
    if let Some(g) = old_meta.get("generation").and_then(Value::as_i64) {
        let bump = objects::spec_part(new) != objects::spec_part(old);
        meta_mut(new).insert("generation".into(), json!(if bump { g + 1 } else { g }));
    }
    Ok(())
}

fn same_ignoring_rv(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

/// Writes `new` over the object read as `kv`/`old`, enforcing the
/// precondition, running admission, and deleting when the last finalizer of a
/// deleted object goes.
pub async fn write_update(
    ctx: &Ctx,
    kv: &KeyValue,
    old: &Value,
    mut new: Value,
    manager: &str,
    sub: &str,
    track: bool,
) -> ApiResult<(Value, Vec<String>)> {
    let name = ctx.name().to_string();
    let expected = match new
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        Some(rv) if !rv.is_empty() => {
            let rv: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            if rv != kv.mod_revision {
                return Err(ApiError::modified(&ctx.res, &name));
            }
            rv
        }
        _ => kv.mod_revision,
    };
    let warnings = if sub.is_empty() {
        field_validation(ctx, &mut new)?
    } else {
        vec![]
    };
    // Decode first, as kube-apiserver does: a wrong type is a 400 before
    // anything of the old object is merged in.
    typed_check(ctx, &mut new)?;
    merge_update(ctx, &mut new, old, sub)?;
    if !new
        .get("metadata")
        .and_then(|m| m.get("name"))
        .is_some_and(|n| n == name.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            objects::name(&new)
        )));
    }
    if ctx.res.group.is_empty() && ctx.res.kind == "Service" {
        validation::preserve_service_allocations(&mut new, old);
    }
    if sub == "ephemeralcontainers" {
        // Only spec.ephemeralContainers changes here; compare the rest of the
        // pod against an old object that already has the new list, so the
        // pod-update immutability check does not reject it.
        let av = ctx.res.api_version();
        validation::default_object(&av, &ctx.res.kind, &mut new);
        let mut base = old.clone();
        base["spec"]["ephemeralContainers"] = new
            .pointer("/spec/ephemeralContainers")
            .cloned()
            .unwrap_or(Value::Null);
        admit(ctx, &mut new, Some(&base))?;
    } else {
        admit(ctx, &mut new, Some(old))?;
    }
    typed_check(ctx, &mut new)?;
    if track {
        let av = ctx.res.api_version();
        patch::track_update(
            Some(old),
            &mut new,
            manager,
            &av,
            &ctx.res.kind,
            sub,
            &objects::now(),
        );
    }
    if same_ignoring_rv(&new, old) {
        return Ok((old.clone(), warnings));
    }
    if ctx.dry_run() {
        return Ok((new, warnings));
    }
    let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
    if deleting
        && objects::finalizers(&new).is_empty()
        && !is_graceful_pod(ctx, &new)
        && !(is_namespace(ctx) && has_spec_finalizers(&new))
    {
        let kv = match ctx.state.store.delete(&ctx.key(), Some(expected)).await {
            Ok(kv) => kv,
            Err(rkube_store::Error::Conflict { .. }) => {
                return Err(ApiError::modified(&ctx.res, &name))
            }
            Err(rkube_store::Error::NotFound(_)) => {
                return Err(ApiError::not_found(&ctx.res, &name))
            }
            Err(e) => return Err(e.into()),
        };
        objects::set_rv(&mut new, kv.mod_revision);
        return Ok((new, warnings));
    }
    let kv = match ctx
        .state
        .store
        .update(&ctx.key(), encode(&new), Some(expected))
        .await
    {
        Ok(kv) => kv,
        Err(rkube_store::Error::Conflict { .. }) => {
            return Err(ApiError::modified(&ctx.res, &name))
        }
        Err(rkube_store::Error::NotFound(_)) => return Err(ApiError::not_found(&ctx.res, &name)),
        Err(e) => return Err(e.into()),
    };
    objects::set_rv(&mut new, kv.mod_revision);
    crate::hooks::after_update(ctx, &new).await;
    Ok((new, warnings))
}

fn is_namespace(ctx: &Ctx) -> bool {
    ctx.res.group.is_empty() && ctx.res.kind == "Namespace"
}

/// A namespace whose `spec.finalizers` still lists something (the namespace
/// controller removes `kubernetes` through `namespaces/finalize`).
fn has_spec_finalizers(ns: &Value) -> bool {
    ns.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// Namespaces the NamespaceLifecycle admission plugin never lets go.
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// A pod bound to a node whose graceful deletion the node agent completes.
fn is_graceful_pod(ctx: &Ctx, obj: &Value) -> bool {
    ctx.res.group.is_empty()
        && ctx.res.kind == "Pod"
        && obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
        && obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0)
}

/// PUT of an object (or of its status when `sub` is "status").
pub async fn update(ctx: &Ctx, new: Value, manager: &str, sub: &str) -> ApiResult<Response> {
    check_type(ctx, &new)?;
    let (kv, old) = load(ctx).await?;
    let (obj, warnings) = write_update(ctx, &kv, &old, new, manager, sub, true).await?;
    Ok(with_warnings(
        render_one(ctx, &obj, StatusCode::OK),
        &warnings,
    ))
}

/// PATCH of an object or its status, retrying on write races.
pub async fn patch_object(
    ctx: &Ctx,
    ct: &str,
    body: &[u8],
    ua: Option<&str>,
    sub: &str,
) -> ApiResult<Response> {
    let ct = ct.split(';').next().unwrap_or("").trim().to_string();
    let apply = ct == "application/apply-patch+yaml";
    let manager = if apply {
        match ctx.q("fieldManager").filter(|m| !m.is_empty()) {
            Some(m) => m.to_string(),
            None => {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requires fieldManager to be set",
                ))
            }
        }
    } else {
        ctx.manager(ua, "unknown")
    };
    let patch_doc: Value = if apply || ct.contains("yaml") {
        serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
    };
    let force = ctx.q("force").is_some_and(|f| f == "true");
    let av = ctx.res.api_version();
    for _attempt in 0..16 {
        let loaded = match load(ctx).await {
            Ok(x) => Some(x),
            Err(e) if e.code == 404 && apply && sub.is_empty() => None,
            Err(e) => return Err(e),
        };
        let Some((kv, old)) = loaded else {
            // Apply creates.
            check_type(ctx, &patch_doc)?;
            check_apply_fields(ctx, &patch_doc)?;
            let obj = patch::apply(
                None,
                &patch_doc,
                &manager,
                force,
                &av,
                &ctx.res.kind,
                &objects::now(),
            )
            .map_err(|e| patch_error(ctx, e))?;
            return create_applied(ctx, obj).await;
        };
        let new = match ct.as_str() {
            "application/json-patch+json" => patch::json_patch(&old, &patch_doc),
            "application/merge-patch+json" => patch::merge_patch(&old, &patch_doc),
            "application/strategic-merge-patch+json" => {
                if ctx.crd.is_some() {
                    return Err(ApiError::unsupported_media(&ct));
                }
                patch::strategic_merge_patch(&old, &patch_doc, &av, &ctx.res.kind)
            }
            "application/apply-patch+yaml" => {
                check_type(ctx, &patch_doc)?;
                check_apply_fields(ctx, &patch_doc)?;
                patch::apply(
                    Some(&old),
                    &patch_doc,
                    &manager,
                    force,
                    &av,
                    &ctx.res.kind,
                    &objects::now(),
                )
            }
            other => return Err(ApiError::unsupported_media(other)),
        }
        .map_err(|e| patch_error(ctx, e))?;
        if !new.is_object() || !new.get("metadata").is_none_or(Value::is_object) {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: the patched object must be a JSON object with an object metadata",
                ctx.res.kind, ctx.res.version, ctx.res.kind
            )));
        }
        // The patched object is decoded as it stands (a JSON patch may set
        // server fields to wrong types too).
        let mut new = new;
        typed_check(ctx, &mut new)?;
        // A patch that carries a resourceVersion is a precondition; otherwise
        // the current version is used and races are retried.
        let explicit_rv = patch_doc.pointer("/metadata/resourceVersion").is_some();
        if !explicit_rv {
            objects::set_rv(&mut new, kv.mod_revision);
        }
        match write_update(ctx, &kv, &old, new, &manager, sub, !apply).await {
            Ok((obj, warnings)) => {
                return Ok(with_warnings(
                    render_one(ctx, &obj, StatusCode::OK),
                    &warnings,
                ))
            }
            Err(e) if e.code == 409 && e.reason == "Conflict" && !explicit_rv => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::modified(&ctx.res, ctx.name()))
}

async fn create_applied(ctx: &Ctx, obj: Value) -> ApiResult<Response> {
    // The Apply entry computed by `patch::apply` is kept as is.
    create_inner(ctx, obj, None).await
}

fn patch_error(ctx: &Ctx, e: patch::PatchError) -> ApiError {
    match e {
        patch::PatchError::Conflict(c) => {
            let mut err = ApiError::new(409, "Conflict", c.to_string());
            err.details =
                Some(json!({"name": ctx.name(), "kind": ctx.res.plural, "group": ctx.res.group}));
            err
        }
        e @ patch::PatchError::Unsupported { .. } => {
            ApiError::new(415, "UnsupportedMediaType", e.to_string())
        }
        other => ApiError::new(422, "Invalid", other.to_string()),
    }
}

/// Parsed DeleteOptions (body, then query parameters).
#[derive(Default)]
pub struct DeleteOpts {
    grace: Option<i64>,
    propagation: Option<String>,
    precondition_uid: Option<String>,
    precondition_rv: Option<String>,
    /// dryRun: ["All"] in the body.
    dry_run: bool,
}

/// Parses DeleteOptions from a body and the query.
pub fn delete_opts_from(ctx: &Ctx, body: &[u8]) -> ApiResult<DeleteOpts> {
    let mut o = DeleteOpts::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = if body.starts_with(rkube_protobuf::MAGIC) {
            rkube_protobuf::decode_object(body, Some(("meta.k8s.io/v1", "DeleteOptions")))
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        } else {
            serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the body of the request was not valid DeleteOptions: {e}"
                ))
            })?
        };
        let version = v
            .get("apiVersion")
            .and_then(Value::as_str)
            .map(|av| av.rsplit('/').next().unwrap_or(av).to_string())
            .unwrap_or_else(|| "v1".into());
        let d = typed::delete_options(&v).map_err(|e| {
            ApiError::bad_request(typed::cannot_handle("DeleteOptions", &version, &e))
        })?;
        if let Some(k) = d.kind.as_deref().filter(|k| !k.is_empty()) {
            if k != "DeleteOptions" {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind (DeleteOptions)"
                )));
            }
        }
        for dr in d.dry_run.iter().flatten() {
            if dr != "All" {
                return Err(ApiError::bad_request(format!(
                    "dryRun: Unsupported value: {dr:?}: supported values: \"All\""
                )));
            }
        }
        o.grace = d.grace_period_seconds;
        o.propagation = d.propagation_policy;
        if d.orphan_dependents == Some(true) {
            if o.propagation.is_some() {
                return Err(ApiError::bad_request(
                    "propagationPolicy: Invalid value: \"\": orphanDependents and deletionPropagation cannot be both set",
                ));
            }
            o.propagation = Some("Orphan".into());
        }
        if let Some(p) = d.preconditions {
            o.precondition_uid = p.uid;
            o.precondition_rv = p.resource_version;
        }
        o.dry_run = d.dry_run.is_some_and(|d| d.iter().any(|x| x == "All"));
    }
    if let Some(g) = ctx.q("gracePeriodSeconds") {
        o.grace = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request("invalid gracePeriodSeconds"))?,
        );
    }
    if let Some(p) = ctx.q("propagationPolicy") {
        o.propagation = Some(p.to_string());
    }
    if let Some(p) = &o.propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    }
    Ok(o)
}

async fn delete(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_opts_from(ctx, body)?;
    let (kv, obj) = load(ctx).await?;
    let (code, out) = delete_one(ctx, kv, obj, &opts).await?;
    Ok(match out {
        Some(obj) => render_one(ctx, &obj, code),
        None => json_response(code, &success_status(None)),
    })
}

/// Deletes one loaded object per the options. Returns the HTTP code (200
/// deleted, 202 accepted and pending) and the object. A write that races
/// another writer (a controller updating status) is retried on the fresh
/// object, as kube-apiserver's guaranteed update does; the caller's own
/// preconditions are checked again each time.
pub async fn delete_one(
    ctx: &Ctx,
    mut kv: KeyValue,
    mut obj: Value,
    opts: &DeleteOpts,
) -> ApiResult<(StatusCode, Option<Value>)> {
    const ATTEMPTS: usize = 8;
    for _ in 1..ATTEMPTS {
        if let Some(done) = delete_attempt(ctx, kv.clone(), obj.clone(), opts).await? {
            return Ok(done);
        }
        let name = objects::name(&obj).to_string();
        kv = ctx
            .state
            .store
            .get(&kv.key)
            .await?
            .ok_or_else(|| ApiError::not_found(&ctx.res, &name))?;
        obj = decode(&kv)?;
    }
    let name = objects::name(&obj).to_string();
    delete_attempt(ctx, kv, obj, opts)
        .await?
        .ok_or_else(|| ApiError::modified(&ctx.res, &name))
}

/// One try of [`delete_one`]; `None` when the store saw a newer revision.
async fn delete_attempt(
    ctx: &Ctx,
    kv: KeyValue,
    mut obj: Value,
    opts: &DeleteOpts,
) -> ApiResult<Option<(StatusCode, Option<Value>)>> {
    let name = objects::name(&obj).to_string();
    if is_namespace(ctx) && IMMORTAL_NAMESPACES.contains(&name.as_str()) {
        let mut err = ApiError::forbidden(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        ));
        err.details = Some(json!({"name": name, "kind": "namespaces"}));
        return Err(err);
    }
    if let Some(uid) = &opts.precondition_uid {
        let have = meta_str(&obj, "uid").unwrap_or("");
        if have != uid {
            return Err(ApiError::conflict(
                &ctx.res,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                ),
            ));
        }
    }
    if let Some(rv) = &opts.precondition_rv {
        if *rv != kv.mod_revision.to_string() {
            return Err(ApiError::conflict(
                &ctx.res,
                &name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    kv.mod_revision
                ),
            ));
        }
    }
    let mut finalizers = objects::finalizers(&obj);
    let already = obj.pointer("/metadata/deletionTimestamp").is_some();
    match opts.propagation.as_deref() {
        Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") && !already => {
            finalizers.push("orphan".into())
        }
        Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") && !already => {
            finalizers.push("foregroundDeletion".into())
        }
        _ => {}
    }
    let is_ns = ctx.res.group.is_empty() && ctx.res.kind == "Namespace";
    let is_pod = ctx.res.group.is_empty() && ctx.res.kind == "Pod";
    let bound = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let grace = if is_pod {
        let g = opts.grace.unwrap_or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        // Unbound or finished pods go at once, as in kube-apiserver.
        let phase = obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !bound || phase == "Succeeded" || phase == "Failed" {
            0
        } else {
            g.max(0)
        }
    } else {
        0
    };
    if ctx.dry_run() || opts.dry_run {
        return Ok(Some((StatusCode::OK, Some(obj))));
    }
    if is_ns && already && has_spec_finalizers(&obj) {
        return Err(ApiError::conflict(
            &ctx.res,
            &name,
            "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.",
        ));
    }
    // A namespace without spec.finalizers goes like any other object.
    let is_ns = is_ns && has_spec_finalizers(&obj);
    if finalizers.is_empty() && grace == 0 && !is_ns {
        let kv = match ctx.state.store.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(kv) => kv,
            Err(rkube_store::Error::Conflict { .. }) => return Ok(None),
            Err(rkube_store::Error::NotFound(_)) => {
                return Err(ApiError::not_found(&ctx.res, &name))
            }
            Err(e) => return Err(e.into()),
        };
        objects::set_rv(&mut obj, kv.mod_revision);
        crate::hooks::after_delete(ctx, &obj).await;
        return Ok(Some((StatusCode::OK, Some(obj))));
    }
    // Pending deletion: mark it and let finalizers / the node agent finish.
    {
        let meta = meta_mut(&mut obj);
        if !already {
            let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
            meta.insert(
                "deletionTimestamp".into(),
                json!(when.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            );
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
        } else if is_pod {
            let cur = meta
                .get("deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(grace);
            if grace < cur {
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
        }
        if !finalizers.is_empty() {
            meta.insert("finalizers".into(), json!(finalizers));
        }
    }
    if is_ns {
        if !obj.get("status").is_some_and(Value::is_object) {
            obj["status"] = json!({});
        }
        obj["status"]["phase"] = json!("Terminating");
    }
    if is_pod && grace == 0 && finalizers.is_empty() {
        let kv = match ctx.state.store.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(kv) => kv,
            Err(rkube_store::Error::Conflict { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        objects::set_rv(&mut obj, kv.mod_revision);
        return Ok(Some((StatusCode::OK, Some(obj))));
    }
    let new_kv = match ctx
        .state
        .store
        .update(&kv.key, encode(&obj), Some(kv.mod_revision))
        .await
    {
        Ok(kv) => kv,
        Err(rkube_store::Error::Conflict { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    objects::set_rv(&mut obj, new_kv.mod_revision);
    if is_ns {
        // The namespace controller empties it and calls namespaces/finalize;
        // kube-apiserver answers 200 with the terminating namespace.
        return Ok(Some((StatusCode::OK, Some(obj))));
    }
    Ok(Some((StatusCode::ACCEPTED, Some(obj))))
}

async fn delete_collection(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_opts_from(ctx, body)?;
    let filter = ListFilter::parse(ctx)?;
    let prefix = ctx.res.key_prefix_ns(ctx.ns());
    let page = ctx.state.store.list(&prefix, None, 0).await?;
    let mut deleted = Vec::new();
    for kv in page.items {
        let obj = decode(&kv)?;
        if !filter.matches(&obj) {
            continue;
        }
        match delete_one(ctx, kv, obj, &opts).await {
            Ok((_, Some(o))) => deleted.push(o),
            Ok(_) => {}
            Err(e) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = ctx.state.store.current_revision().to_string();
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": ctx.res.list_kind(), "apiVersion": ctx.res.api_version(), "metadata": {"resourceVersion": rv}, "items": deleted}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_pod_qos_compares_quantities() {
        let pod = json!({"spec": {"containers": [{"name": "a", "resources": {
            "requests": {"cpu": "1000m", "memory": "1Gi"},
            "limits": {"cpu": "1", "memory": "1024Mi"}}}]}});
        assert_eq!(
            pending_pod_status(&pod),
            json!({"phase": "Pending", "qosClass": "Guaranteed"})
        );
    }
}
