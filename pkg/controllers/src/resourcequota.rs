//! The ResourceQuota controller: `status.hard` mirrors `spec.hard` and
//! `status.used` is recomputed from the objects in the namespace whenever
//! a counted object changes and at every resync. Usage rules (what a pod,
//! claim, service... counts, scopes) are shared with the API server's
//! quota admission (`rkube_apimachinery::quota`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret, Service,
};
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, Controller};
use kube::{Api, ResourceExt};
use rkube_apimachinery::quantity::Quantity;
use rkube_apimachinery::quota::{self, ResourceList};
use serde_json::{json, Value};

use crate::{Context, Error, Result, Shutdown};

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let api: Api<ResourceQuota> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    let c = ctx.client.clone();
    let wc = || watcher::Config::default();
    let (s1, s2, s3, s4, s5, s6) = (
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store,
    );
    controller
        .watches(Api::<Pod>::all(c.clone()), wc(), move |o| {
            in_ns(&s1, o.namespace())
        })
        .watches(Api::<Service>::all(c.clone()), wc(), move |o| {
            in_ns(&s2, o.namespace())
        })
        .watches(Api::<ConfigMap>::all(c.clone()), wc(), move |o| {
            in_ns(&s3, o.namespace())
        })
        .watches(Api::<Secret>::all(c.clone()), wc(), move |o| {
            in_ns(&s4, o.namespace())
        })
        .watches(
            Api::<PersistentVolumeClaim>::all(c.clone()),
            wc(),
            move |o| in_ns(&s5, o.namespace()),
        )
        .watches(Api::<ReplicationController>::all(c), wc(), move |o| {
            in_ns(&s6, o.namespace())
        })
        .graceful_shutdown_on(shutdown.signal())
        .run(
            reconcile,
            |obj: Arc<ResourceQuota>, err: &Error, ctx: Arc<Context>| {
                ctx.error_action(&crate::key(&*obj), err)
            },
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

fn in_ns(store: &Store<ResourceQuota>, ns: Option<String>) -> Vec<ObjectRef<ResourceQuota>> {
    let Some(ns) = ns else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|q| q.namespace().as_deref() == Some(ns.as_str()))
        .map(|q| ObjectRef::from_obj(&**q))
        .collect()
}

/// The (group, plural) whose objects a quota resource name counts.
pub fn resource_of(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    let core = |p: &str| Some((String::new(), p.to_string()));
    match name {
        "pods" | "cpu" | "memory" | "ephemeral-storage" => core("pods"),
        "requests.storage" | "persistentvolumeclaims" => core("persistentvolumeclaims"),
        n if n.contains(".storageclass.storage.k8s.io/") => core("persistentvolumeclaims"),
        n if n.starts_with("requests.")
            || n.starts_with("limits.")
            || n.starts_with("hugepages-") =>
        {
            core("pods")
        }
        n if n.starts_with("services") => core("services"),
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => core(name),
        _ => None,
    }
}

/// status.used for `hard`: every hard resource, zero when nothing counts.
pub fn used_for(hard: &ResourceList, usage: &ResourceList) -> ResourceList {
    hard.keys()
        .map(|k| (k.clone(), usage.get(k).copied().unwrap_or(Quantity::ZERO)))
        .collect()
}

async fn api_resource(ctx: &Context, group: &str, plural: &str) -> Result<Option<ApiResource>> {
    if group.is_empty() {
        return Ok(Some(ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: String::new(),
            plural: plural.to_string(),
        }));
    }
    let g = match kube::discovery::group(&ctx.client, group).await {
        Ok(g) => g,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(Error::kube(format!("discover group {group}"))(e)),
    };
    Ok(g.recommended_resources()
        .into_iter()
        .map(|(ar, _)| ar)
        .find(|ar| ar.plural == plural))
}

async fn list_values(ctx: &Context, ns: &str, group: &str, plural: &str) -> Result<Vec<Value>> {
    let Some(ar) = api_resource(ctx, group, plural).await? else {
        return Ok(Vec::new());
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube(format!("list {plural} in {ns}")))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

async fn reconcile(obj: Arc<ResourceQuota>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*obj);
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(rq) = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get resourcequota {key}")))?
    else {
        return Ok(Action::await_change());
    };
    let rqv = serde_json::to_value(&rq).map_err(|e| Error::Invalid(e.to_string()))?;
    let hard = quota::parse_list(rqv.pointer("/spec/hard"));
    let mut by_type: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for k in hard.keys() {
        if let Some(t) = resource_of(k) {
            by_type.entry(t).or_default().insert(k.clone());
        }
    }
    let mut usage = ResourceList::new();
    for ((group, plural), names) in &by_type {
        let objects = list_values(&ctx, &ns, group, plural).await?;
        let u = quota::usage_of(&rqv, group, plural, &objects, Some(names));
        quota::add_into(&mut usage, &u);
    }
    let used = used_for(&hard, &usage);
    let desired = json!({"hard": quota::to_json(&hard), "used": quota::to_json(&used)});
    let current = json!({
        "hard": quota::to_json(&quota::parse_list(rqv.pointer("/status/hard"))),
        "used": quota::to_json(&quota::parse_list(rqv.pointer("/status/used"))),
    });
    let stale_keys = rqv
        .pointer("/status/hard")
        .and_then(Value::as_object)
        .is_some_and(|m| m.len() != hard.len())
        || rqv
            .pointer("/status/used")
            .and_then(Value::as_object)
            .is_some_and(|m| m.len() != used.len());
    if desired != current || stale_keys {
        // Replace the maps wholesale so removed resources disappear.
        let patch = json!({"status": {"hard": null, "used": null}});
        let full = json!({ "status": desired });
        if stale_keys {
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(Error::kube(format!("update status of resourcequota {key}")))?;
        }
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(full))
            .await
            .map_err(Error::kube(format!("update status of resourcequota {key}")))?;
    }
    ctx.succeeded(&key);
    Ok(Action::requeue(ctx.config.resync))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_map_to_types() {
        let core = |p: &str| Some((String::new(), p.to_string()));
        assert_eq!(resource_of("pods"), core("pods"));
        assert_eq!(resource_of("requests.cpu"), core("pods"));
        assert_eq!(resource_of("limits.memory"), core("pods"));
        assert_eq!(
            resource_of("requests.storage"),
            core("persistentvolumeclaims")
        );
        assert_eq!(
            resource_of("standard.storageclass.storage.k8s.io/requests.storage"),
            core("persistentvolumeclaims")
        );
        assert_eq!(resource_of("services.nodeports"), core("services"));
        assert_eq!(resource_of("count/configmaps"), core("configmaps"));
        assert_eq!(
            resource_of("count/deployments.apps"),
            Some(("apps".to_string(), "deployments".to_string()))
        );
        assert_eq!(resource_of("bogus"), None);
    }

    #[test]
    fn used_lists_every_hard_resource() {
        let hard = quota::parse_list(Some(&json!({"pods": "2", "requests.cpu": "1"})));
        let usage = quota::parse_list(Some(&json!({"pods": "1", "count/pods": "1"})));
        let used = used_for(&hard, &usage);
        assert_eq!(
            quota::to_json(&used),
            json!({"pods": "1", "requests.cpu": "0"})
        );
    }
}
