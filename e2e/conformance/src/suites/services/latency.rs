//! Service endpoint latency: the time from creating a Service over a
//! running pod to its Endpoints listing an address, measured with one
//! watch over many services created in parallel, must stay under
//! upstream's (generous) percentile limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::watcher;
use serde_json::json;

use super::run_rc;
use crate::conformance;
use crate::ctx::Ctx;
use crate::Test;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    vec![conformance!(
        "Service endpoint latency, thresholds",
        endpoint_latency
    )]
}

/// upstream's limits and sample sizes.
const LIMIT_MEDIAN: Duration = Duration::from_secs(20);
const LIMIT_TAIL: Duration = Duration::from_secs(50);
const TOTAL_TRIALS: usize = 200;
const PARALLEL_TRIALS: usize = 15;
const MIN_SAMPLE_SIZE: usize = 100;
const ACCEPTABLE_FAILURE_RATIO: f64 = 0.05;
/// How long one trial waits for its endpoints (upstream waits without
/// bound; a missing Endpoints counts as a failed trial here).
const TRIAL_TIMEOUT: Duration = Duration::from_secs(60);

/// When the watch first saw each Endpoints with an address.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// Aborts the watcher task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One watch over the namespace's Endpoints (as kube-proxy consumes them);
/// returns once its initial list is done.
async fn start_endpoint_watcher(c: &Ctx, seen: Seen) -> Result<AbortOnDrop> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let stream = watcher(c.api::<Endpoints>(), watcher::Config::default());
    let task = tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        let mut stream = stream.boxed();
        while let Ok(Some(ev)) = stream.try_next().await {
            let ep = match ev {
                watcher::Event::Apply(ep) | watcher::Event::InitApply(ep) => ep,
                watcher::Event::InitDone => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                _ => continue,
            };
            let has_address = ep
                .subsets
                .as_ref()
                .and_then(|s| s.first())
                .and_then(|s| s.addresses.as_ref())
                .is_some_and(|a| !a.is_empty());
            if has_address {
                let name = ep.metadata.name.clone().unwrap_or_default();
                if let Ok(mut m) = seen.lock() {
                    m.entry(name).or_insert_with(Instant::now);
                }
            }
        }
    });
    let guard = AbortOnDrop(task);
    tokio::time::timeout(Duration::from_secs(60), ready_rx)
        .await
        .context("the Endpoints watch did not sync within 60s")?
        .context("the Endpoints watch ended before it synced")?;
    Ok(guard)
}

/// upstream's singleServiceLatency: creates a service selecting the pod
/// and measures until the watch sees its Endpoints with an address.
async fn single_service_latency(c: &Ctx, rc: &str, seen: &Seen) -> Result<Duration> {
    let start = Instant::now();
    let svc = c
        .create::<Service>(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"generateName": "latency-svc-"},
            "spec": {
                "ports": [{"protocol": "TCP", "port": 80}],
                "selector": {"name": rc},
                "type": "ClusterIP",
                "sessionAffinity": "None",
            },
        }))
        .await?;
    let name = svc.metadata.name.clone().unwrap_or_default();
    loop {
        let at = seen.lock().ok().and_then(|m| m.get(&name).copied());
        if let Some(at) = at {
            return Ok(at.saturating_duration_since(start));
        }
        if start.elapsed() > TRIAL_TIMEOUT {
            bail!("never got a result for endpoint {name} within {TRIAL_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn endpoint_latency(c: Ctx) -> Result<()> {
    let rc = "svc-latency-rc";
    run_rc(
        &c,
        rc,
        &json!({ "name": rc }),
        1,
        &c.env.images.pause,
        json!([]),
    )
    .await?;
    let seen: Seen = Arc::default();
    let _watch = start_endpoint_watcher(&c, seen.clone()).await?;

    // One trial thrown away: the pod's readiness has propagated after it.
    single_service_latency(&c, rc, &seen).await?;

    let results: Vec<Result<Duration>> = futures::stream::iter(0..TOTAL_TRIALS)
        .map(|_| single_service_latency(&c, rc, &seen))
        .buffer_unordered(PARALLEL_TRIALS)
        .collect()
        .await;
    let mut errors = Vec::new();
    let mut d: Vec<Duration> = Vec::new();
    for r in results {
        match r {
            Ok(x) => d.push(x),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    let mut failing = Vec::new();
    let ratio = errors.len() as f64 / TOTAL_TRIALS as f64;
    if ratio > ACCEPTABLE_FAILURE_RATIO {
        failing.push(format!(
            "Not all RC/pod/service trials succeeded: error ratio {ratio} is higher than the acceptable ratio {ACCEPTABLE_FAILURE_RATIO} (first: {})",
            errors.first().cloned().unwrap_or_default()
        ));
    }
    d.sort();
    let n = d.len();
    if n < MIN_SAMPLE_SIZE {
        failing.push(format!("Did not get a good sample size: {n} latencies"));
    }
    if n < 2 {
        failing.push("Less than two runs succeeded; aborting.".into());
        bail!("{}", failing.join("; "));
    }
    let percentile = |p: usize| d[(n * p / 100).min(n - 1)];
    let (p50, p90, p99) = (percentile(50), percentile(90), percentile(99));
    if p50 > LIMIT_MEDIAN {
        failing.push(format!(
            "Median latency should be less than {LIMIT_MEDIAN:?}"
        ));
    }
    if p99 > LIMIT_TAIL {
        failing.push(format!(
            "Tail (99 percentile) latency should be less than {LIMIT_TAIL:?}"
        ));
    }
    if !failing.is_empty() {
        bail!(
            "{}; 50, 90, 99 percentiles: {p50:?} {p90:?} {p99:?}",
            failing.join("; ")
        );
    }
    Ok(())
}
