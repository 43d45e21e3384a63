//! The ServiceAccount controller and the legacy token cleaner, as upstream's
//! pkg/controller/serviceaccount: every active (not terminating) namespace
//! has a ServiceAccount `default`, created as soon as the namespace appears
//! and recreated when deleted; and legacy `kubernetes.io/service-account-token`
//! Secrets whose ServiceAccount (name and uid in their annotations) no
//! longer exists are deleted, as upstream's tokens controller does.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, ResourceExt};

use crate::{Context, Error, Result, Shutdown};

/// The ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Type of the legacy token Secrets.
pub const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
/// Annotation naming a token Secret's ServiceAccount.
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// Annotation holding a token Secret's ServiceAccount uid.
pub const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

/// Runs the ServiceAccount controller and the token cleaner until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let sa = run_service_accounts(ctx.clone(), shutdown.clone());
    let tokens = run_token_cleaner(ctx, shutdown);
    futures::future::join(sa, tokens).await;
    Ok(())
}

/// True when the namespace is being deleted (no new content is made there).
pub fn is_terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

async fn run_service_accounts(ctx: Arc<Context>, shutdown: Shutdown) {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let accounts: Api<ServiceAccount> = Api::all(ctx.client.clone());
    let wc = watcher::Config::default().fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}"));
    Controller::new(namespaces, watcher::Config::default())
        .watches(accounts, wc, |sa| {
            sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .graceful_shutdown_on(shutdown.signal())
        .run(
            reconcile_namespace,
            |ns, err, ctx: Arc<Context>| ctx.error_action(&crate::key(&*ns), err),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile_namespace(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*ns);
    if is_terminating(&ns) {
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    let present = api
        .get_metadata_opt(DEFAULT_SERVICE_ACCOUNT)
        .await
        .map_err(Error::kube(format!("get serviceaccount {name}/default")))?;
    if present.is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
                namespace: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::debug!(namespace = %name, "created serviceaccount default"),
            // Raced with another creator, or the namespace is going away.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 || s.code == 404 => {}
            Err(e) => return Err(Error::kube(format!("create serviceaccount {name}/default"))(e)),
        }
    }
    ctx.succeeded(&key);
    Ok(Action::await_change())
}

/// What the token cleaner does with a token Secret, given the live
/// ServiceAccount uid (None when the account does not exist).
pub fn token_is_orphaned(secret: &Secret, live_sa_uid: Option<&str>) -> bool {
    let ann = secret.metadata.annotations.as_ref();
    let want_uid = ann
        .and_then(|a| a.get(SA_UID_ANNOTATION))
        .filter(|u| !u.is_empty());
    match (live_sa_uid, want_uid) {
        (None, _) => true,
        (Some(live), Some(want)) => live != want,
        (Some(_), None) => false,
    }
}

async fn run_token_cleaner(ctx: Arc<Context>, shutdown: Shutdown) {
    let secrets: Api<Secret> = Api::all(ctx.client.clone());
    let accounts: Api<ServiceAccount> = Api::all(ctx.client.clone());
    let wc = watcher::Config::default().fields(&format!("type={SERVICE_ACCOUNT_TOKEN_TYPE}"));
    let controller = Controller::new(secrets, wc);
    let store = controller.store();
    controller
        .watches(accounts, watcher::Config::default(), move |sa| {
            // The token secrets naming this account (by annotation), and
            // those a legacy account lists.
            let ns = sa.namespace().unwrap_or_default();
            let name = sa.name_any();
            let mut refs: Vec<ObjectRef<Secret>> = store
                .state()
                .iter()
                .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
                .filter(|s| s.annotations().get(SA_NAME_ANNOTATION) == Some(&name))
                .map(|s| ObjectRef::from_obj(&**s))
                .collect();
            refs.extend(
                sa.secrets
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|r| r.name)
                    .map(|n| ObjectRef::<Secret>::new(&n).within(&ns)),
            );
            refs
        })
        .graceful_shutdown_on(shutdown.signal())
        .run(
            reconcile_token,
            |s, err, ctx: Arc<Context>| ctx.error_action(&crate::key(&*s), err),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile_token(secret: Arc<Secret>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*secret);
    if secret.type_.as_deref() != Some(SERVICE_ACCOUNT_TOKEN_TYPE)
        || secret.metadata.deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let ns = secret.namespace().unwrap_or_default();
    let Some(sa_name) = secret.annotations().get(SA_NAME_ANNOTATION).cloned() else {
        return Ok(Action::await_change());
    };
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    let live = api
        .get_metadata_opt(&sa_name)
        .await
        .map_err(Error::kube(format!("get serviceaccount {ns}/{sa_name}")))?;
    let live_uid = live.as_ref().and_then(|m| m.metadata.uid.clone());
    if token_is_orphaned(&secret, live_uid.as_deref()) {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: secret.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match secrets.delete(&secret.name_any(), &dp).await {
            Ok(_) => {
                tracing::info!(%key, "deleted token secret of missing serviceaccount {sa_name}")
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(Error::kube(format!("delete secret {key}"))(e)),
        }
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    }
    ctx.succeeded(&key);
    // The account may go later without listing this secret: look again.
    Ok(Action::requeue(Duration::from_secs(60)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn token(uid: Option<&str>) -> Secret {
        let mut ann = BTreeMap::new();
        ann.insert(SA_NAME_ANNOTATION.to_string(), "builder".to_string());
        if let Some(u) = uid {
            ann.insert(SA_UID_ANNOTATION.to_string(), u.to_string());
        }
        Secret {
            metadata: ObjectMeta {
                annotations: Some(ann),
                ..Default::default()
            },
            type_: Some(SERVICE_ACCOUNT_TOKEN_TYPE.into()),
            ..Default::default()
        }
    }

    #[test]
    fn orphaned_tokens() {
        assert!(token_is_orphaned(&token(Some("u1")), None));
        assert!(token_is_orphaned(&token(Some("u1")), Some("u2")));
        assert!(!token_is_orphaned(&token(Some("u1")), Some("u1")));
        assert!(!token_is_orphaned(&token(None), Some("u1")));
        assert!(token_is_orphaned(&token(None), None));
    }

    #[test]
    fn terminating_namespaces() {
        let mut ns = Namespace::default();
        assert!(!is_terminating(&ns));
        ns.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
            phase: Some("Terminating".into()),
            ..Default::default()
        });
        assert!(is_terminating(&ns));
    }
}
