//! Server-side effects of writes that kube-apiserver (or its built-in
//! admission and bootstrap controllers) performs: Service IP allocation,
//! the per-namespace defaults of namespaces that exist at bootstrap, and
//! serving CRDs when they are written. Namespace content and finalization,
//! the `default` ServiceAccount and `kube-root-ca.crt` of new namespaces
//! belong to the controller manager, as upstream.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::handlers::Ctx;
use crate::objects;
use crate::state::{AppState, Registry};
use crate::status::{ApiError, ApiResult};

/// The service CIDR (ClusterIPs come from it; 10.96.0.1 is `kubernetes`).
pub const SERVICE_CIDR: &str = "10.96.0.0/12";

/// First address of [`SERVICE_CIDR`].
const SERVICE_BASE: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const SERVICE_SIZE: u32 = 1 << 20;

static ALLOC: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Creates `obj` at `key` unless something is there, stamping uid and time.
pub async fn put_if_missing(state: &AppState, key: &str, mut obj: Value) -> ApiResult<()> {
    if state.store.get(key).await?.is_some() {
        return Ok(());
    }
    {
        let m = objects::meta_mut(&mut obj);
        m.entry("uid")
            .or_insert_with(|| json!(uuid::Uuid::new_v4().to_string()));
        m.entry("creationTimestamp")
            .or_insert_with(|| json!(objects::now()));
    }
    match state
        .store
        .create(key, serde_json::to_vec(&obj).unwrap_or_default())
        .await
    {
        Ok(_) | Err(rkube_store::Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Allocates spec.clusterIP (and node ports) of a new Service.
pub async fn allocate_service(ctx: &Ctx, svc: &mut Value) -> ApiResult<()> {
    let ty = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty == "ExternalName" {
        return Ok(());
    }
    let _guard = ALLOC.lock().await;
    let list = ctx
        .state
        .store
        .list("/registry/core/services/", None, 0)
        .await?;
    let mut used_ips = BTreeSet::new();
    let mut used_ports = BTreeSet::new();
    for kv in &list.items {
        let Ok(v) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        if let Some(ip) = v.pointer("/spec/clusterIP").and_then(Value::as_str) {
            if let Ok(ip) = ip.parse::<Ipv4Addr>() {
                used_ips.insert(u32::from(ip));
            }
        }
        for p in v
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
                used_ports.insert(n);
            }
        }
    }
    match svc.pointer("/spec/clusterIP").and_then(Value::as_str) {
        Some("None") => {}
        Some(ip) if !ip.is_empty() => {
            let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                ApiError::invalid(
                    &ctx.res,
                    objects::name(svc),
                    &[cause(
                        "spec.clusterIP",
                        &format!("Invalid value: \"{ip}\": must be a valid IP address"),
                    )],
                )
            })?;
            let n = u32::from(parsed);
            if !(SERVICE_BASE..SERVICE_BASE + SERVICE_SIZE).contains(&n) {
                return Err(ApiError::invalid(&ctx.res, objects::name(svc), &[cause("spec.clusterIP", &format!("Invalid value: \"{ip}\": provided IP is not in the valid range. The range of valid IPs is {SERVICE_CIDR}"))]));
            }
            if used_ips.contains(&n) {
                return Err(ApiError::invalid(
                    &ctx.res,
                    objects::name(svc),
                    &[cause(
                        "spec.clusterIP",
                        &format!("Invalid value: \"{ip}\": provided IP is already allocated"),
                    )],
                ));
            }
            svc["spec"]["clusterIPs"] = json!([ip]);
        }
        _ => {
            // 10.96.0.10 is kept for cluster DNS, as kubeadm clusters do.
            let ip = (11..SERVICE_SIZE - 1)
                .map(|i| SERVICE_BASE + i)
                .find(|ip| !used_ips.contains(ip))
                .ok_or_else(|| ApiError::internal("service IP range is full"))?;
            let ip = Ipv4Addr::from(ip).to_string();
            svc["spec"]["clusterIP"] = json!(ip);
            svc["spec"]["clusterIPs"] = json!([ip]);
        }
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports {
                if p.get("nodePort").and_then(Value::as_i64).is_none() {
                    let port = (30000..=32767)
                        .find(|n| !used_ports.contains(n))
                        .ok_or_else(|| ApiError::internal("node port range is full"))?;
                    used_ports.insert(port);
                    p["nodePort"] = json!(port);
                }
            }
        }
    }
    Ok(())
}

fn cause(field: &str, message: &str) -> rkube_apimachinery::Cause {
    rkube_apimachinery::Cause {
        reason: "FieldValueInvalid".into(),
        message: message.into(),
        field: field.into(),
    }
}

/// The per-namespace objects of the namespaces that exist when the API
/// server starts (before the controller manager runs); later namespaces get
/// them from the ServiceAccount controller and the root-CA publisher.
pub async fn namespace_defaults(state: &AppState, ns: &str) -> ApiResult<()> {
    put_if_missing(
        state,
        &format!("/registry/core/serviceaccounts/{ns}/default"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}),
    )
    .await?;
    put_if_missing(
        state,
        &format!("/registry/core/configmaps/{ns}/kube-root-ca.crt"),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "kube-root-ca.crt", "namespace": ns, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
               "data": {"ca.crt": state.ca_pem}}),
    )
    .await
}

/// Makes the next request see an RBAC change (the authorizer follows the
/// store through a watch).
async fn sync_rbac(ctx: &Ctx, obj: &Value) {
    if ctx.res.group != "rbac.authorization.k8s.io" {
        return;
    }
    if let Some(rv) = objects::meta_str(obj, "resourceVersion").and_then(|r| r.parse().ok()) {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            ctx.state.rbac.wait_for_revision(rv),
        )
        .await;
    }
}

/// Runs after a successful create.
pub async fn after_create(ctx: &Ctx, obj: &Value) {
    sync_rbac(ctx, obj).await;
    if ctx.res.group == "apiextensions.k8s.io" && ctx.res.kind == "CustomResourceDefinition" {
        establish_crd(&ctx.state, objects::name(obj)).await;
    }
}

/// Runs after a successful update.
pub async fn after_update(ctx: &Ctx, obj: &Value) {
    sync_rbac(ctx, obj).await;
    if ctx.res.group == "apiextensions.k8s.io" && ctx.res.kind == "CustomResourceDefinition" {
        if ctx.info.subresource.is_empty() {
            establish_crd(&ctx.state, objects::name(obj)).await;
        } else {
            reload_crds(&ctx.state).await;
        }
    }
}

/// Runs after an object is removed from the store.
pub async fn after_delete(ctx: &Ctx, obj: &Value) {
    sync_rbac(ctx, obj).await;
    if ctx.res.group == "apiextensions.k8s.io" && ctx.res.kind == "CustomResourceDefinition" {
        let group = obj
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        let plural = obj
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !group.is_empty() && !plural.is_empty() {
            let prefix = format!("/registry/{group}/{plural}/");
            if let Ok(list) = ctx.state.store.list(&prefix, None, 0).await {
                for kv in list.items {
                    let _ = ctx.state.store.delete(&kv.key, None).await;
                }
            }
        }
        reload_crds(&ctx.state).await;
    }
}

/// Marks a CRD Established/NamesAccepted and starts serving it.
pub async fn establish_crd(state: &AppState, name: &str) {
    let key = format!("/registry/apiextensions.k8s.io/customresourcedefinitions/{name}");
    for _ in 0..8 {
        let Ok(Some(kv)) = state.store.get(&key).await else {
            return;
        };
        let Ok(mut crd) = serde_json::from_slice::<Value>(&kv.value) else {
            return;
        };
        let now = objects::now();
        let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
        let versions: Vec<Value> = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter(|v| v["storage"] == true)
                    .filter_map(|v| v.get("name").cloned())
                    .collect()
            })
            .unwrap_or_default();
        let status = json!({
            "acceptedNames": names,
            "storedVersions": versions,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
        });
        if crd
            .get("status")
            .map(|s| s.get("acceptedNames") == status.get("acceptedNames"))
            .unwrap_or(false)
            && crd.pointer("/status/conditions").is_some()
        {
            break;
        }
        crd["status"] = status;
        match state
            .store
            .update(
                &key,
                serde_json::to_vec(&crd).unwrap_or_default(),
                Some(kv.mod_revision),
            )
            .await
        {
            Ok(_) => break,
            Err(rkube_store::Error::Conflict { .. }) => continue,
            Err(e) => {
                tracing::warn!("establishing CRD {name}: {e}");
                return;
            }
        }
    }
    reload_crds(state).await;
}

/// Re-reads every CRD and rebuilds the served resources and OpenAPI.
pub async fn reload_crds(state: &AppState) {
    let Ok(list) = state
        .store
        .list(
            "/registry/apiextensions.k8s.io/customresourcedefinitions/",
            None,
            0,
        )
        .await
    else {
        return;
    };
    let mut crds = std::collections::BTreeMap::new();
    for kv in list.items {
        if let Ok(v) = serde_json::from_slice::<Value>(&kv.value) {
            crds.insert(objects::name(&v).to_string(), v);
        }
    }
    let all: Vec<Value> = crds.values().cloned().collect();
    let reg = Registry::with_crds(crds);
    *state.registry.write().unwrap_or_else(|e| e.into_inner()) = reg;
    state
        .openapi
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .set_custom_resources(&all);
}
