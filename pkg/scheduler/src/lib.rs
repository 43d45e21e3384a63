//! rkube's pod scheduler.
//!
//! Like kube-scheduler, it watches pods and nodes (kube-runtime reflectors),
//! picks pods with no `spec.nodeName` that name this scheduler, filters nodes
//! ([`filters`]), scores the feasible ones ([`score`]) and binds through
//! pods/binding. A pod that fits nowhere gets PodScheduled=False/Unschedulable
//! and a FailedScheduling event ([`report`]) and is retried when nodes or
//! bound pods change, with back-off, and on every resync ([`retry`]). It
//! reaches the cluster only through `kube::Client`.

pub mod algorithm;
pub mod client;
pub mod cycle;
pub mod filters;
pub mod fit_error;
pub mod report;
pub mod resources;
pub mod retry;
pub mod score;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::{watch, Notify};

pub use algorithm::DEFAULT_SCHEDULER;
pub use filters::{feasible, Reason};
pub use fit_error::FitError;

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` is this (or unset, for
    /// "default-scheduler") are ours; also the event source component.
    pub scheduler_name: String,
    /// Unschedulable pods are retried at least this often.
    pub resync: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            scheduler_name: DEFAULT_SCHEDULER.into(),
            resync: Duration::from_secs(30),
        }
    }
}

/// Scheduler failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A watch cache stopped before it was first filled.
    #[error("{0} watch ended before its initial list")]
    WatchEnded(&'static str),
}

/// Aborts the spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn spawn_reflector<K>(
    api: Api<K>,
    what: &'static str,
    notify: Arc<Notify>,
) -> (Store<K>, AbortOnDrop)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                tracing::warn!(error = %e, "{what} watch failed; retrying");
            }
            notify.notify_one();
        }
    });
    (store, AbortOnDrop(task))
}

async fn shut(shutdown: &mut watch::Receiver<bool>) {
    // A dropped sender also means shut down.
    let _ = shutdown.wait_for(|v| *v).await;
}

/// Runs the scheduler until `shutdown` becomes true.
pub async fn run(
    client: kube::Client,
    cfg: SchedulerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let notify = Arc::new(Notify::new());
    let (pods, _pod_task) = spawn_reflector(Api::<Pod>::all(client.clone()), "pod", notify.clone());
    let (nodes, _node_task) =
        spawn_reflector(Api::<Node>::all(client.clone()), "node", notify.clone());
    tokio::select! {
        r = async { tokio::try_join!(pods.wait_until_ready(), nodes.wait_until_ready()) } => {
            r.map_err(|_| Error::WatchEnded("pod or node"))?;
        }
        _ = shut(&mut shutdown) => return Ok(()),
    }
    tracing::info!(name = %cfg.scheduler_name, "scheduler started");
    let mut scheduler = cycle::Scheduler::new(
        client::KubeWriter::new(client),
        cfg.scheduler_name.clone(),
        cfg.resync,
    );
    loop {
        let now = std::time::Instant::now();
        let outcome = scheduler.cycle(&pods.state(), &nodes.state(), now).await;
        let wake = outcome.next_due.unwrap_or(now + cfg.resync);
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = shut(&mut shutdown) => break,
        }
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The launcher spawns `run` on a multi-threaded runtime.
    #[allow(dead_code, unreachable_code, clippy::diverging_sub_expression)]
    fn run_is_send(client: kube::Client) {
        let (_tx, rx) = watch::channel(false);
        let fut = run(client, SchedulerConfig::default(), rx);
        assert_send(&fut);
    }

    #[test]
    fn default_config() {
        let c = SchedulerConfig::default();
        assert_eq!(c.scheduler_name, "default-scheduler");
        assert_eq!(c.resync, Duration::from_secs(30));
    }
}
