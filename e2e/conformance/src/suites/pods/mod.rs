//! Conformance tests of pods and the node agent: pod CRUD and status,
//! probes, lifecycle hooks, container runtime behaviour, entrypoints,
//! environment (variable expansion, downward API), security contexts,
//! sysctls, init and ephemeral containers, /etc/hosts management.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, WatchEvent, WatchParams};
use regex::Regex;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ctx::{phase, wait_for, Ctx};
use crate::Test;

mod crud;
mod env;
mod hooks;
mod init;
mod probe;
mod runtime;
mod runtimeclass;
mod sa;
mod security;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    v.extend(crud::tests());
    v.extend(env::tests());
    v.extend(hooks::tests());
    v.extend(init::tests());
    v.extend(probe::tests());
    v.extend(runtime::tests());
    v.extend(runtimeclass::tests());
    v.extend(sa::tests());
    v.extend(security::tests());
    v
}

/// A unique-looking suffix, where upstream appends a UUID.
fn uid() -> String {
    format!("{}{}", crate::ctx::suffix(), crate::ctx::suffix())
}

/// Polls pod `name` until `ok` holds (or fails with its error), giving up
/// after `timeout`. Unlike `Ctx::wait_pod`, a Failed pod is no error.
async fn wait_pod_until<F>(c: &Ctx, name: &str, what: &str, timeout: Duration, ok: F) -> Result<Pod>
where
    F: Fn(&Pod) -> Result<bool>,
{
    let pods = c.pods();
    wait_for(&format!("pod {name} {what}"), timeout, || {
        let pods = pods.clone();
        let ok = &ok;
        async move {
            let p = pods.get(name).await?;
            Ok(ok(&p)?.then_some(p))
        }
    })
    .await
}

/// Waits until the pod has finished (Succeeded or Failed).
async fn wait_finished(c: &Ctx, name: &str) -> Result<Pod> {
    wait_pod_until(c, name, "finished", c.env.pod_start, |p| {
        Ok(matches!(phase(p), "Succeeded" | "Failed"))
    })
    .await
}

/// Status of container `container` (regular containers).
fn container_status<'a>(p: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == container)
}

/// Restart count of the first container.
fn restart_count(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|v| v.first())
        .map_or(0, |s| s.restart_count)
}

/// The pod's condition `type_` as (status, reason).
fn condition(p: &Pod, type_: &str) -> Option<(String, String)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

/// Creates `pod`, waits until it succeeds and checks that the logs of
/// `container` match every regex in `patterns` (upstream's
/// TestContainerOutputRegexp).
async fn expect_output_regex(
    c: &Ctx,
    pod: Value,
    container: Option<&str>,
    patterns: &[&str],
) -> Result<()> {
    let out = c.pod_output(pod, container).await?;
    for p in patterns {
        let re = Regex::new(p).with_context(|| format!("bad regex {p}"))?;
        if !re.is_match(&out) {
            bail!("output does not match {p:?}; output:\n{out}");
        }
    }
    Ok(())
}

/// Polls the logs of `container` of pod `name` until `ok` holds.
async fn wait_logs<F>(
    c: &Ctx,
    name: &str,
    container: Option<&str>,
    timeout: Duration,
    ok: F,
) -> Result<String>
where
    F: Fn(&str) -> bool,
{
    let deadline = std::time::Instant::now() + timeout;
    let mut last: Result<String> = Ok(String::new());
    loop {
        if let Ok(l) = &last {
            if ok(l) {
                return Ok(l.clone());
            }
        }
        if std::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for the logs of pod {name}; last: {last:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = c.logs(name, container).await;
    }
}

/// How one watch connection of [`watch_until`] ended.
enum WatchEnd<K> {
    /// `done` accepted this event.
    Done(WatchEvent<K>),
    /// The server ended the stream: watch again from the last version.
    Closed,
    /// An ERROR event (e.g. 410 Gone), or `done` failed: give up.
    Failed(anyhow::Error),
}

/// Watches `api` from resourceVersion `rv` until `done` accepts an event,
/// re-establishing the watch from the last version seen when the server
/// ends it or the connection breaks (as client-go's watchtools.Until with
/// a RetryWatcher does); fails after `timeout`, or at once on an ERROR
/// event (e.g. 410 Gone).
pub(crate) async fn watch_until<K, F>(
    api: &Api<K>,
    wp: &WatchParams,
    rv: &str,
    timeout: Duration,
    what: &str,
    mut done: F,
) -> Result<WatchEvent<K>>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: FnMut(&WatchEvent<K>) -> Result<bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rv = rv.to_string();
    let mut last_err = String::new();
    loop {
        let attempt = async {
            let mut w = api.watch(wp, &rv).await?.boxed();
            while let Some(ev) = w.try_next().await? {
                match &ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                        if let Some(v) = o.meta().resource_version.clone() {
                            rv = v;
                        }
                    }
                    WatchEvent::Bookmark(b) => rv = b.metadata.resource_version.clone(),
                    WatchEvent::Error(e) => {
                        let e = anyhow::anyhow!("watch error {}: {}", e.code, e.message);
                        return Ok(WatchEnd::Failed(e));
                    }
                }
                match done(&ev) {
                    Ok(true) => return Ok(WatchEnd::Done(ev)),
                    Ok(false) => {}
                    Err(e) => return Ok(WatchEnd::Failed(e)),
                }
            }
            Ok::<_, anyhow::Error>(WatchEnd::Closed)
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Err(_) => break,
            Ok(Ok(WatchEnd::Done(ev))) => return Ok(ev),
            Ok(Ok(WatchEnd::Failed(e))) => return Err(e.context(format!("waiting for {what}"))),
            Ok(Ok(WatchEnd::Closed)) => {}
            Ok(Err(e)) => last_err = format!(" (last watch error: {e:#})"),
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}{last_err}")
}
