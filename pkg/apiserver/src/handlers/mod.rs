//! Request dispatch: authentication, authorization, then the handler for a
//! non-resource path (health, version, discovery, OpenAPI) or a resource verb.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::auth::{Attributes, Decision, UserInfo};
use crate::request::{classify, negotiate, Representation, RequestInfo};
use crate::server::PeerCert;
use crate::state::AppState;
use crate::status::{ApiError, ApiResult};

mod context;
mod crud;
pub mod proxy;
mod subresources;
mod watch;

pub use context::Ctx;

/// Maximum request body size (3 MiB), as kube-apiserver.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// JSON response with a status code.
pub fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Builds the router.
pub fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(state)
}

async fn authenticate(
    state: &AppState,
    peer: Option<PeerCert>,
    auth: Option<String>,
) -> Option<UserInfo> {
    if let Some(PeerCert(Some(der))) = peer {
        if let Some(u) = crate::auth::x509::user_from_cert(&der) {
            return Some(u);
        }
    }
    let auth = auth?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))?;
    let (user, sa) = state.tokens.verify(token.trim()).ok()?;
    // The ServiceAccount must still exist with the same uid.
    let key = format!(
        "/registry/core/serviceaccounts/{}/{}",
        sa.namespace, sa.name
    );
    let kv = state.store.get(&key).await.ok()??;
    let obj: Value = serde_json::from_slice(&kv.value).ok()?;
    if !sa.uid.is_empty() && crate::objects::meta_str(&obj, "uid") != Some(sa.uid.as_str()) {
        return None;
    }
    Some(user)
}

fn unauthenticated_ok(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/healthz/" | "/livez/" | "/readyz/"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // A panic in a handler must not drop the connection: answer 500 with a
    // Status instead (and log it).
    let resp =
        match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(handle(state, req)))
            .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => e.into_response(),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!("{method} {path}: handler panicked: {what}");
                ApiError::internal("the server could not handle the request").into_response()
            }
        };
    tracing::debug!(
        "{method} {path} {} {:?}",
        resp.status().as_u16(),
        started.elapsed()
    );
    resp
}

async fn handle(state: Arc<AppState>, req: Request) -> ApiResult<Response> {
    let peer = req.extensions().get::<PeerCert>().cloned();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let user = authenticate(&state, peer, auth).await;
    let path = req.uri().path().to_string();
    let info = classify(req.method().as_str(), &path, req.uri().query());
    let user = match user {
        Some(u) => u,
        None if unauthenticated_ok(&path) => UserInfo::anonymous(),
        None => return Err(ApiError::unauthorized()),
    };
    let user = impersonate(&state, user, req.headers())?;
    if !unauthenticated_ok(&path) || user.username != "system:anonymous" {
        authorize(&state, &user, &info)?;
    }
    if !info.is_resource_request {
        return non_resource(&state, req, &info).await;
    }
    let registry = state.registry();
    let Some(res) = registry.find(&info.group, &info.version, &info.resource) else {
        return Err(ApiError::no_route(&path));
    };
    let repr = negotiate(
        req.headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    )
    .ok_or_else(|| {
        ApiError::not_acceptable(
            req.headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        )
    })?;
    let ctx = Ctx {
        state: state.clone(),
        info,
        res,
        user,
        repr,
        crd: None,
    }
    .with_crd(&registry);
    crud::route(ctx, req).await
}

fn authorize(state: &AppState, user: &UserInfo, info: &RequestInfo) -> ApiResult<()> {
    let attrs = Attributes {
        user: user.clone(),
        verb: info.verb.clone(),
        resource_request: info.is_resource_request,
        api_group: info.group.clone(),
        resource: info.resource.clone(),
        subresource: info.subresource.clone(),
        namespace: info.namespace.clone().unwrap_or_default(),
        name: info.name.clone().unwrap_or_default(),
        path: info.path.clone(),
    };
    match state.rbac.authorize(&attrs) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(ApiError::forbidden(crate::auth::rbac::forbidden_message(
            &attrs, &reason,
        ))),
        Decision::NoOpinion => Err(ApiError::forbidden(crate::auth::rbac::forbidden_message(
            &attrs, "",
        ))),
    }
}

/// Applies `Impersonate-User`/`Impersonate-Group` headers after checking
/// the caller may impersonate (RBAC verb `impersonate`), as kube-apiserver.
fn impersonate(state: &AppState, user: UserInfo, headers: &HeaderMap) -> ApiResult<UserInfo> {
    let Some(target) = headers
        .get("Impersonate-User")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
    else {
        if headers.contains_key("Impersonate-Group") {
            return Err(ApiError::bad_request(
                "requested impersonation of groups without impersonating a user",
            ));
        }
        return Ok(user);
    };
    let groups: Vec<String> = headers
        .get_all("Impersonate-Group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(String::from))
        .collect();
    let check = |resource: &str, namespace: &str, name: &str| -> ApiResult<()> {
        let attrs = Attributes {
            user: user.clone(),
            verb: "impersonate".into(),
            resource_request: true,
            api_group: String::new(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: namespace.into(),
            name: name.into(),
            path: String::new(),
        };
        match state.rbac.authorize(&attrs) {
            Decision::Allow => Ok(()),
            Decision::Deny(r) => Err(ApiError::forbidden(crate::auth::rbac::forbidden_message(
                &attrs, &r,
            ))),
            Decision::NoOpinion => Err(ApiError::forbidden(crate::auth::rbac::forbidden_message(
                &attrs, "",
            ))),
        }
    };
    let mut out_groups = groups.clone();
    if let Some((ns, name)) = crate::auth::split_service_account_username(&target) {
        check("serviceaccounts", ns, name)?;
        if groups.is_empty() {
            out_groups = vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ];
        }
    } else {
        check("users", "", &target)?;
    }
    for g in &groups {
        check("groups", "", g)?;
    }
    if target != "system:anonymous" && !out_groups.iter().any(|g| g == "system:authenticated") {
        out_groups.push("system:authenticated".into());
    }
    Ok(UserInfo {
        username: target,
        uid: String::new(),
        groups: out_groups,
        extra: Default::default(),
    })
}

fn accepts_aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for range in accept.split(',') {
        if range.contains("as=APIGroupDiscoveryList") && range.contains("g=apidiscovery.k8s.io") {
            if range.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if range.contains("v=v2") {
                return Some("v2");
            }
        }
        if range.trim().starts_with("application/json") && !range.contains("as=") {
            return None;
        }
    }
    None
}

async fn non_resource(state: &AppState, req: Request, info: &RequestInfo) -> ApiResult<Response> {
    use rkube_apimachinery::discovery;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::method_not_allowed(
            req.method().as_str(),
            &info.path,
        ));
    }
    let path = info.path.trim_end_matches('/');
    let registry = state.registry();
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
    match path {
        "/healthz" | "/livez" | "/readyz" => {
            return Ok(
                (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response(),
            )
        }
        "/version" => {
            return ok(json!({
                "major": "1",
                "minor": "33",
                "gitVersion": state.git_version,
                "gitCommit": "",
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "rust",
                "compiler": "rustc",
                "platform": format!("linux/{}", std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")),
            }))
        }
        "/api" => {
            if let Some(v) = accepts_aggregated(req.headers()) {
                return Ok(aggregated_response(
                    discovery::aggregated(&registry.resources, true, v),
                    v,
                ));
            }
            return ok(discovery::api_versions(&state.advertise.to_string()));
        }
        "/apis" => {
            if let Some(v) = accepts_aggregated(req.headers()) {
                return Ok(aggregated_response(
                    discovery::aggregated(&registry.resources, false, v),
                    v,
                ));
            }
            return ok(discovery::api_group_list(&registry.resources));
        }
        "/openapi/v2" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if accept.contains("protobuf") && !accept.contains("json") && !accept.contains("*/*") {
                return Err(ApiError::not_acceptable(accept));
            }
            let doc = state.openapi.read().unwrap_or_else(|e| e.into_inner()).v2();
            let mut r = (StatusCode::OK, doc.as_ref().clone()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(r);
        }
        "/openapi/v3" => {
            return ok(state
                .openapi
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .v3_root());
        }
        _ => {}
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        let doc = state
            .openapi
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .v3_doc(gv);
        return match doc {
            Some((bytes, hash)) => {
                let mut r = (StatusCode::OK, bytes.as_ref().clone()).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("\"{hash}\"")) {
                    r.headers_mut().insert(header::ETAG, v);
                }
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, immutable"),
                );
                Ok(r)
            }
            None => Err(ApiError::no_route(&info.path)),
        };
    }
    if info.api_prefix == "api" && !info.version.is_empty() {
        return match discovery::api_resource_list(&registry.resources, "", &info.version) {
            Some(v) => ok(v),
            None => Err(ApiError::no_route(&info.path)),
        };
    }
    if info.api_prefix == "apis" && !info.group.is_empty() {
        let doc = if info.version.is_empty() {
            discovery::api_group(&registry.resources, &info.group)
        } else {
            discovery::api_resource_list(&registry.resources, &info.group, &info.version)
        };
        return match doc {
            Some(v) => ok(v),
            None => Err(ApiError::no_route(&info.path)),
        };
    }
    Err(ApiError::no_route(&info.path))
}

fn aggregated_response(v: Value, version: &str) -> Response {
    let mut r = json_response(StatusCode::OK, &v);
    let ct = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    if let Ok(h) = HeaderValue::from_str(&ct) {
        r.headers_mut().insert(header::CONTENT_TYPE, h);
    }
    r
}

/// Reads a request body up to [`MAX_BODY`], answering 413 beyond it.
pub async fn read_body(body: Body) -> ApiResult<bytes::Bytes> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large(MAX_BODY))
}

/// Converts a representation choice into the unused-variable-free form.
pub fn is_table(r: Representation) -> bool {
    r == Representation::Table
}
