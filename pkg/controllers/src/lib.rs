//! rkube's controller manager.
//!
//! Like kube-controller-manager, it runs one controller per concern, each in
//! the style of kube-runtime: watches (reflectors) feed a work queue with
//! per-key de-duplication, an idempotent `reconcile(obj, ctx) -> Action`
//! brings the world towards the object's spec, errors requeue with
//! per-key exponential back-off ([`context::Context::error_action`]), and
//! status is written only when it changed. Every controller reaches the
//! cluster only through `kube::Client`, as the `system:kube-controller-manager`
//! identity.

pub mod context;
pub mod error;
pub mod hash;
pub mod intstr;
pub mod owner;
pub mod pods;
pub mod status;

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod garbagecollector;
pub mod history;
pub mod hpa;
pub mod job;
pub mod namespace;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod rootca;
pub mod serviceaccount;
pub mod statefulset;
pub mod ttlafterfinished;
pub mod volume;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;

pub use context::{Config, Context};
pub use error::{Error, Result};

/// A controller's entry point: runs until shutdown.
pub type RunFn = fn(Arc<Context>, Shutdown) -> Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// Every controller, by its upstream name.
pub const CONTROLLERS: &[(&str, RunFn)] = &[
    ("replicaset-controller", |c, s| {
        Box::pin(replicaset::run(c, s))
    }),
    ("replicationcontroller-controller", |c, s| {
        Box::pin(replicaset::run_rc(c, s))
    }),
    ("deployment-controller", |c, s| {
        Box::pin(deployment::run(c, s))
    }),
    ("statefulset-controller", |c, s| {
        Box::pin(statefulset::run(c, s))
    }),
    ("daemon-set-controller", |c, s| {
        Box::pin(daemonset::run(c, s))
    }),
    ("job-controller", |c, s| Box::pin(job::run(c, s))),
    ("cronjob-controller", |c, s| Box::pin(cronjob::run(c, s))),
    ("ttl-after-finished-controller", |c, s| {
        Box::pin(ttlafterfinished::run(c, s))
    }),
    ("pod-garbage-collector", |c, s| Box::pin(podgc::run(c, s))),
    ("generic-garbage-collector", |c, s| {
        Box::pin(garbagecollector::run(c, s))
    }),
    ("namespace-controller", |c, s| {
        Box::pin(namespace::run(c, s))
    }),
    ("service-account-controller", |c, s| {
        Box::pin(serviceaccount::run(c, s))
    }),
    ("root-ca-cert-publisher", |c, s| Box::pin(rootca::run(c, s))),
    ("endpoint-controller", |c, s| Box::pin(endpoints::run(c, s))),
    ("endpointslice-controller", |c, s| {
        Box::pin(endpointslice::run(c, s))
    }),
    ("endpointslice-mirroring-controller", |c, s| {
        Box::pin(endpointslice::run_mirroring(c, s))
    }),
    ("resourcequota-controller", |c, s| {
        Box::pin(resourcequota::run(c, s))
    }),
    ("disruption-controller", |c, s| {
        Box::pin(disruption::run(c, s))
    }),
    ("persistentvolume-binder-controller", |c, s| {
        Box::pin(volume::run_binder(c, s))
    }),
    ("persistentvolume-provisioner", |c, s| {
        Box::pin(volume::run_provisioner(c, s))
    }),
    ("node-lifecycle-controller", |c, s| {
        Box::pin(nodelifecycle::run(c, s))
    }),
    ("horizontal-pod-autoscaler-controller", |c, s| {
        Box::pin(hpa::run(c, s))
    }),
];

/// Tells controllers to stop; cheap to clone.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Wraps a receiver that becomes true (or is dropped) at shutdown.
    pub fn new(rx: watch::Receiver<bool>) -> Self {
        Self(rx)
    }

    /// Completes at shutdown; for `Controller::graceful_shutdown_on`.
    pub fn signal(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    }

    /// True once shutdown was asked.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}

/// The controllers selected by a `--controllers` list, as
/// kube-controller-manager reads it: `*` is every controller, `name`
/// enables one, `-name` disables one (the last word about a name wins over
/// `*`). Names are those of [`CONTROLLERS`], with or without the
/// `-controller` suffix.
pub fn select(spec: &[String]) -> std::result::Result<Vec<&'static str>, String> {
    let canonical = |n: &str| -> std::result::Result<&'static str, String> {
        CONTROLLERS
            .iter()
            .map(|(name, _)| *name)
            .find(|name| *name == n || name.strip_suffix("-controller") == Some(n))
            .ok_or_else(|| {
                format!(
                    "unknown controller {n:?}; known: {}",
                    CONTROLLERS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    };
    let all = spec.iter().any(|s| s == "*");
    let mut on: Vec<&'static str> = Vec::new();
    let mut off: Vec<&'static str> = Vec::new();
    for s in spec
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty() && *s != "*")
    {
        match s.strip_prefix('-') {
            Some(n) => off.push(canonical(n)?),
            None => on.push(canonical(s)?),
        }
    }
    Ok(CONTROLLERS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| (all || on.contains(n)) && !off.contains(n))
        .collect())
}

/// Starts the controllers named in `enabled` (see [`select`]) and returns
/// their tasks once the API server answered the manager's first request.
pub async fn start(
    client: kube::Client,
    config: Config,
    shutdown: watch::Receiver<bool>,
    enabled: &[&str],
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    // Readiness gate: our identity can read the cluster.
    let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    ns.list_metadata(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(Error::kube("list namespaces"))?;
    let config = Arc::new(config);
    let shutdown = Shutdown::new(shutdown);
    let mut tasks = Vec::new();
    for (name, run) in CONTROLLERS {
        if !enabled.contains(name) {
            continue;
        }
        let ctx = Context::new(client.clone(), config.clone(), name);
        let fut = run(ctx, shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = fut.await {
                tracing::error!(controller = name, "controller stopped: {e}");
            }
        }));
    }
    tracing::info!(count = tasks.len(), "controller manager started");
    Ok(tasks)
}

/// The work-queue key of an object: `namespace/name` or `name`.
pub fn key<K: kube::Resource>(obj: &K) -> String {
    let m = obj.meta();
    match &m.namespace {
        Some(ns) => format!("{ns}/{}", m.name.as_deref().unwrap_or("")),
        None => m.name.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(spec: &[&str]) -> std::result::Result<Vec<&'static str>, String> {
        select(&spec.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn controllers_flag_follows_kube_controller_manager() {
        assert_eq!(sel(&["*"]).unwrap().len(), CONTROLLERS.len());
        let some = sel(&["*", "-job", "-cronjob-controller"]).unwrap();
        assert!(!some.contains(&"job-controller") && !some.contains(&"cronjob-controller"));
        assert_eq!(some.len(), CONTROLLERS.len() - 2);
        assert_eq!(sel(&["namespace"]).unwrap(), vec!["namespace-controller"]);
        assert!(sel(&[]).unwrap().is_empty());
        assert!(sel(&["*", "-nope"])
            .unwrap_err()
            .contains("unknown controller \"nope\""));
    }
}
