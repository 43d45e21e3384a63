//! Admission plugins that need the store, run on create after defaulting
//! and validation: ServiceAccount (the pod's account defaults to
//! `default`; unless automounting is off, a `kube-api-access-*` projected
//! volume with a bound token, the root CA and the namespace is added and
//! mounted in every container), RuntimeClass (a pod's class must exist; its overhead
//! and scheduling are set on the pod), DefaultStorageClass (PVCs without a
//! class get the default StorageClass), LimitRanger (defaults and bounds for pods and
//! PVCs) and ResourceQuota (rejects a create that would exceed a quota,
//! with usage computed live from the store so a burst cannot overshoot).
//!
//! DefaultTolerationSeconds already lives in pod defaulting
//! (rkube_apimachinery::validation).

pub mod eviction;
pub mod limitrange;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use tokio::sync::{Mutex, MutexGuard};

use rkube_apimachinery::quota;
use rkube_apimachinery::serviceaccount::{
    MOUNT_PATH as SERVICE_ACCOUNT_MOUNT, TOKEN_SECONDS, VOLUME_NAME,
};

use crate::handlers::Ctx;
use crate::status::{ApiError, ApiResult};

/// Serializes quota-checked creates so that two concurrent creates cannot
/// both see the same usage; held until the object is stored.
static QUOTA_LOCK: Mutex<()> = Mutex::const_new(());

/// Held by the caller until the created object is in the store.
pub type QuotaGuard = Option<MutexGuard<'static, ()>>;

fn qualified(ctx: &Ctx) -> String {
    if ctx.res.group.is_empty() {
        ctx.res.plural.clone()
    } else {
        format!("{}.{}", ctx.res.plural, ctx.res.group)
    }
}

fn forbidden(ctx: &Ctx, obj: &Value, msg: &str) -> ApiError {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut e = ApiError::forbidden(format!("{} \"{name}\" is forbidden: {msg}", qualified(ctx)));
    let mut d = json!({"name": name, "kind": ctx.res.plural});
    if !ctx.res.group.is_empty() {
        d["group"] = json!(ctx.res.group);
    }
    e.details = Some(d);
    e
}

async fn list_prefix(ctx: &Ctx, prefix: &str) -> ApiResult<Vec<Value>> {
    let res = ctx.state.store.list(prefix, None, 0).await?;
    Ok(res
        .items
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}

fn sorted_by_name(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by(|a, b| {
        let n = |o: &Value| {
            o.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        n(a).cmp(&n(b))
    });
    v
}

/// Admission of a create of `obj` (already defaulted and validated). The
/// returned guard must be held until the object is stored.
pub async fn admit_create(ctx: &Ctx, obj: &mut Value) -> ApiResult<QuotaGuard> {
    if ctx.res.custom || !ctx.res.namespaced {
        return Ok(None);
    }
    let Some(ns) = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(String::from)
    else {
        return Ok(None);
    };
    let core = ctx.res.group.is_empty();
    if core && ctx.res.plural == "pods" {
        service_account(ctx, &ns, obj).await?;
        runtime_class(ctx, obj).await?;
    }
    if core && ctx.res.plural == "persistentvolumeclaims" {
        default_storage_class(ctx, obj).await?;
    }
    if core && matches!(ctx.res.plural.as_str(), "pods" | "persistentvolumeclaims") {
        let ranges =
            sorted_by_name(list_prefix(ctx, &format!("/registry/core/limitranges/{ns}/")).await?);
        if !ranges.is_empty() {
            let errs = if ctx.res.plural == "pods" {
                limitrange::default_pod(obj, &ranges);
                if obj.get("status").is_some() {
                    obj["status"]["qosClass"] = json!(quota::qos_class(obj));
                }
                limitrange::validate_pod(obj, &ranges)
            } else {
                limitrange::validate_pvc(obj, &ranges)
            };
            if !errs.is_empty() {
                return Err(forbidden(ctx, obj, &limitrange::aggregate(&errs)));
            }
        }
    }
    check_quota(ctx, &ns, obj).await
}

/// The ServiceAccount plugin's defaulting and token volume.
async fn service_account(ctx: &Ctx, ns: &str, pod: &mut Value) -> ApiResult<()> {
    if pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
    {
        return Ok(());
    }
    let sa_name = pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
        .to_string();
    pod["spec"]["serviceAccountName"] = json!(sa_name);
    pod["spec"]["serviceAccount"] = json!(sa_name);
    let automount = match pod
        .pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
    {
        Some(a) => a,
        None => {
            let key = format!("/registry/core/serviceaccounts/{ns}/{sa_name}");
            match ctx.state.store.get(&key).await? {
                Some(kv) => serde_json::from_slice::<Value>(&kv.value)
                    .ok()
                    .and_then(|sa| sa["automountServiceAccountToken"].as_bool())
                    .unwrap_or(true),
                None => true,
            }
        }
    };
    if !automount {
        return Ok(());
    }
    let mounts_sa = |c: &Value| {
        c["volumeMounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["mountPath"] == SERVICE_ACCOUNT_MOUNT))
    };
    let containers = ["containers", "initContainers"];
    let needs = containers.iter().any(|k| {
        pod["spec"][k]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| !mounts_sa(c)))
    });
    if !needs {
        return Ok(());
    }
    let volume = format!("{VOLUME_NAME}-{}", crate::objects::random_suffix(5));
    if !pod["spec"].get("volumes").is_some_and(Value::is_array) {
        pod["spec"]["volumes"] = json!([]);
    }
    if let Some(v) = pod["spec"]["volumes"].as_array_mut() {
        v.push(json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}}));
    }
    for k in containers {
        for c in pod["spec"][k].as_array_mut().into_iter().flatten() {
            if mounts_sa(c) {
                continue;
            }
            if !c.get("volumeMounts").is_some_and(Value::is_array) {
                c["volumeMounts"] = json!([]);
            }
            if let Some(m) = c["volumeMounts"].as_array_mut() {
                m.push(
                    json!({"name": volume, "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT}),
                );
            }
        }
    }
    Ok(())
}

/// The RuntimeClass plugin: rejects a pod naming a class that does not
/// exist, sets `spec.overhead` from the class (rejecting a pod that asks
/// for another), and merges the class's nodeSelector and tolerations.
async fn runtime_class(ctx: &Ctx, pod: &mut Value) -> ApiResult<()> {
    let Some(name) = pod
        .pointer("/spec/runtimeClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(String::from)
    else {
        return Ok(());
    };
    let key = format!("/registry/node.k8s.io/runtimeclasses/{name}");
    let Some(kv) = ctx.state.store.get(&key).await? else {
        return Err(forbidden(
            ctx,
            pod,
            &format!("pod rejected: RuntimeClass \"{name}\" not found"),
        ));
    };
    let rc: Value = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
    if let Some(fixed) = rc.pointer("/overhead/podFixed").filter(|o| o.is_object()) {
        match pod.pointer("/spec/overhead") {
            Some(have) if !quota_equal(have, fixed) => {
                return Err(forbidden(
                    ctx,
                    pod,
                    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead",
                ));
            }
            _ => pod["spec"]["overhead"] = fixed.clone(),
        }
    } else if pod.pointer("/spec/overhead").is_some() {
        return Err(forbidden(
            ctx,
            pod,
            "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead",
        ));
    }
    if let Some(sel) = rc
        .pointer("/scheduling/nodeSelector")
        .and_then(Value::as_object)
    {
        if !pod["spec"]
            .get("nodeSelector")
            .is_some_and(Value::is_object)
        {
            pod["spec"]["nodeSelector"] = json!({});
        }
        for (k, v) in sel {
            match pod["spec"]["nodeSelector"].get(k) {
                Some(have) if have != v => {
                    return Err(forbidden(
                        ctx,
                        pod,
                        &format!("pod rejected: conflict: RuntimeClass nodeSelector {k}={v} conflicts with the pod's {k}={have}"),
                    ));
                }
                _ => pod["spec"]["nodeSelector"][k] = v.clone(),
            }
        }
    }
    if let Some(tols) = rc
        .pointer("/scheduling/tolerations")
        .and_then(Value::as_array)
    {
        if !pod["spec"].get("tolerations").is_some_and(Value::is_array) {
            pod["spec"]["tolerations"] = json!([]);
        }
        let list = pod["spec"]["tolerations"].as_array_mut().expect("array");
        for t in tols {
            if !list.contains(t) {
                list.push(t.clone());
            }
        }
    }
    Ok(())
}

/// Whether two resource lists hold the same quantities.
fn quota_equal(a: &Value, b: &Value) -> bool {
    let (a, b) = (quota::parse_list(Some(a)), quota::parse_list(Some(b)));
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k) == Some(v))
}

async fn check_quota(ctx: &Ctx, ns: &str, obj: &Value) -> ApiResult<QuotaGuard> {
    let quotas_prefix = format!("/registry/core/resourcequotas/{ns}/");
    if ctx
        .state
        .store
        .list(&quotas_prefix, None, 1)
        .await?
        .items
        .is_empty()
    {
        return Ok(None);
    }
    let guard = QUOTA_LOCK.lock().await;
    let quotas = sorted_by_name(list_prefix(ctx, &quotas_prefix).await?);
    let (group, plural) = (ctx.res.group.as_str(), ctx.res.plural.as_str());
    let delta = quota::object_usage(group, plural, obj);
    let mut existing: Option<Vec<Value>> = None;
    for q in &quotas {
        let qname = q
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let hard = quota::parse_list(q.pointer("/spec/hard"));
        if !hard
            .keys()
            .any(|k| quota::matches_resource(group, plural, k))
        {
            continue;
        }
        if !quota::quota_selects(q, group, plural, obj) {
            continue;
        }
        if group.is_empty() && plural == "pods" {
            if let Some(msg) = quota::pod_constraints(&hard, obj) {
                return Err(forbidden(
                    ctx,
                    obj,
                    &format!("failed quota: {qname}: {msg}"),
                ));
            }
        }
        let names: BTreeSet<String> = delta
            .keys()
            .filter(|k| hard.contains_key(*k))
            .cloned()
            .collect();
        if names.is_empty() {
            continue;
        }
        if existing.is_none() {
            let prefix = ctx.res.key_prefix_ns(Some(ns));
            existing = Some(list_prefix(ctx, &prefix).await?);
        }
        let objects = existing.as_deref().unwrap_or_default();
        let used = quota::usage_of(q, group, plural, objects, Some(&names));
        if let Some(msg) = quota::check(qname, &hard, &used, &delta) {
            return Err(forbidden(ctx, obj, &msg));
        }
    }
    Ok(Some(guard))
}

/// DefaultStorageClass: a claim without `storageClassName` gets the default
/// class (the newest one when several are marked default).
async fn default_storage_class(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    if obj
        .pointer("/spec/storageClassName")
        .is_some_and(|v| !v.is_null())
    {
        return Ok(());
    }
    let classes = list_prefix(ctx, "/registry/storage.k8s.io/storageclasses/").await?;
    let default = classes
        .iter()
        .filter(|c| is_default_class(c))
        .max_by(|a, b| {
            let t = |o: &Value| {
                o.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            t(a).cmp(&t(b))
        });
    if let Some(name) = default.and_then(|c| c.pointer("/metadata/name")).cloned() {
        if obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"]["storageClassName"] = name;
        }
    }
    Ok(())
}

/// True when the StorageClass is annotated as the default.
pub fn is_default_class(c: &Value) -> bool {
    let ann = |k: &str| {
        c.pointer("/metadata/annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            == Some("true")
    };
    ann("storageclass.kubernetes.io/is-default-class")
        || ann("storageclass.beta.kubernetes.io/is-default-class")
}
