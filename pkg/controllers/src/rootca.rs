//! The root-CA publisher, as upstream's pkg/controller/certificates/rootcacertpublisher:
//! every active (not terminating) namespace has a ConfigMap `kube-root-ca.crt`
//! whose `ca.crt` is the cluster CA, so pods can verify the API server; the
//! ConfigMap is created as soon as the namespace appears and restored when it
//! is edited or deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{PostParams, ResourceExt};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::Api;

use crate::serviceaccount::is_terminating;
use crate::{Context, Error, Result, Shutdown};

/// Name of the published ConfigMap.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// Key of the CA bundle in it.
pub const CA_KEY: &str = "ca.crt";
/// Annotation describing the ConfigMap.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Upstream's description of the ConfigMap.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Runs the publisher until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let maps: Api<ConfigMap> = Api::all(ctx.client.clone());
    let wc = watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIGMAP}"));
    Controller::new(namespaces, watcher::Config::default())
        .watches(maps, wc, |cm| {
            cm.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .graceful_shutdown_on(shutdown.signal())
        .run(
            reconcile,
            |ns, err, ctx: Arc<Context>| ctx.error_action(&crate::key(&*ns), err),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

/// The published data.
pub fn desired_data(ca_pem: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(CA_KEY.to_string(), ca_pem.to_string())])
}

/// The ConfigMap to write when `current` (if any) differs from what is
/// published, or None when it is up to date. Other metadata of an existing
/// ConfigMap (labels, other annotations) is kept; the data is replaced.
pub fn desired(ns: &str, ca_pem: &str, current: Option<&ConfigMap>) -> Option<ConfigMap> {
    let data = desired_data(ca_pem);
    match current {
        None => Some(ConfigMap {
            metadata: ObjectMeta {
                name: Some(ROOT_CA_CONFIGMAP.into()),
                namespace: Some(ns.into()),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_string(),
                    DESCRIPTION.to_string(),
                )])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        }),
        Some(cm) => {
            let ann_ok = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                == Some(&DESCRIPTION.to_string());
            let data_ok = cm.data.as_ref() == Some(&data)
                && cm.binary_data.as_ref().is_none_or(|b| b.is_empty());
            if ann_ok && data_ok {
                return None;
            }
            let mut cm = cm.clone();
            cm.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
            cm.data = Some(data);
            cm.binary_data = None;
            Some(cm)
        }
    }
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*ns);
    if is_terminating(&ns) || ctx.config.root_ca_pem.is_empty() {
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let current = api
        .get_opt(ROOT_CA_CONFIGMAP)
        .await
        .map_err(Error::kube(format!(
            "get configmap {name}/{ROOT_CA_CONFIGMAP}"
        )))?;
    if let Some(want) = desired(&name, &ctx.config.root_ca_pem, current.as_ref()) {
        let res = if current.is_some() {
            api.replace(ROOT_CA_CONFIGMAP, &PostParams::default(), &want)
                .await
        } else {
            api.create(&PostParams::default(), &want).await
        };
        match res {
            Ok(_) => {}
            // The namespace is going away, or someone raced us (the watch requeues).
            Err(kube::Error::Api(s)) if (s.code == 403 || s.code == 404) && current.is_none() => {}
            Err(e) => {
                return Err(Error::kube(format!(
                    "write configmap {name}/{ROOT_CA_CONFIGMAP}"
                ))(e))
            }
        }
    }
    ctx.succeeded(&key);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_restores() {
        let new = desired("a", "PEM", None).expect("created");
        assert_eq!(new.data, Some(desired_data("PEM")));
        assert_eq!(
            new.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                .map(String::as_str),
            Some(DESCRIPTION)
        );
        assert!(desired("a", "PEM", Some(&new)).is_none());
        let mut edited = new.clone();
        edited.data = Some(BTreeMap::from([
            ("ca.crt".into(), "x".into()),
            ("y".into(), "z".into()),
        ]));
        edited.metadata.labels = Some(BTreeMap::from([("keep".into(), "me".into())]));
        let fixed = desired("a", "PEM", Some(&edited)).expect("restored");
        assert_eq!(fixed.data, Some(desired_data("PEM")));
        assert_eq!(fixed.metadata.labels, edited.metadata.labels);
        let mut no_ann = new;
        no_ann.metadata.annotations = None;
        assert!(desired("a", "PEM", Some(&no_ann)).is_some());
    }
}
