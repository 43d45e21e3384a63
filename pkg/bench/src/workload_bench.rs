//! `rkube bench workloads`: what the controller manager adds. Time from
//! creating a Deployment of 10 and of 100 replicas to all replicas
//! Available, next to the same number of bare pods created directly until
//! all are Ready; a rolling update of 10 replicas; and the controller
//! manager's memory (daemon RSS with all controllers minus a control plane
//! started with `--controllers=` none), idle and with 1,000 objects.
//! Figures, not assertions.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

use crate::pod_bench::{delete_all, load_image, IMAGE};
use crate::{rss_mib, Error, Profile, Result};

/// Options of `rkube bench workloads`.
#[derive(Clone, Debug)]
pub struct WorkloadBenchOptions {
    /// The rkube binary.
    pub binary: PathBuf,
    /// API server port of the throw-away profiles.
    pub port: u16,
    /// Deployment sizes to measure.
    pub sizes: Vec<usize>,
    /// Objects created for the loaded memory figure.
    pub objects: usize,
}

fn deployment(name: &str, replicas: usize) -> Result<Deployment> {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"bench": name}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"bench": name}},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                    "name": "c", "image": IMAGE, "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"]}]},
            },
        },
    }))
    .map_err(|e| Error::Config(e.to_string()))
}

fn bare_pod(name: &str) -> Result<Pod> {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "c", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}
    }))
    .map_err(|e| Error::Config(e.to_string()))
}

/// Polls every 50 ms until `done` holds (at most 5 minutes).
async fn until<F, Fut>(mut done: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(300) {
        if done().await? {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::Config("timed out after 5 minutes".into()))
}

fn rollout_done(d: &Deployment, replicas: usize) -> bool {
    let want = replicas as i32;
    let gen = d.metadata.generation.unwrap_or(0);
    d.status.as_ref().is_some_and(|s| {
        s.observed_generation.unwrap_or(0) >= gen
            && s.updated_replicas == Some(want)
            && s.available_replicas == Some(want)
            && s.replicas == Some(want)
    })
}

async fn wait_rolled(api: &Api<Deployment>, name: &str, replicas: usize) -> Result<Duration> {
    until(|| async {
        let d = api.get(name).await?;
        Ok(rollout_done(&d, replicas))
    })
    .await
}

async fn delete_deployment(client: &kube::Client, api: &Api<Deployment>, name: &str) -> Result<()> {
    api.delete(name, &DeleteParams::foreground()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels(&format!("bench={name}"));
    until(|| async {
        Ok(api.get_opt(name).await?.is_none() && pods.list(&lp).await?.items.is_empty())
    })
    .await?;
    Ok(())
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Creates `n` bare pods at once; time until all are Ready.
async fn bare_pods(client: &kube::Client, n: usize) -> Result<Duration> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    let mut creates = Vec::new();
    for i in 0..n {
        let api = api.clone();
        let pod = bare_pod(&format!("bare-{i}"))?;
        creates.push(tokio::spawn(async move {
            api.create(&PostParams::default(), &pod).await
        }));
    }
    for c in creates {
        c.await.map_err(|e| Error::Config(e.to_string()))??;
    }
    let lp = ListParams::default().labels("bench=pods");
    until(|| async {
        let pods = api.list(&lp).await?.items;
        Ok(pods.len() == n && pods.iter().all(is_ready))
    })
    .await?;
    Ok(started.elapsed())
}

/// Daemon RSS in MiB after a settle time.
async fn settled_rss(profile: &Profile) -> f64 {
    tokio::time::sleep(Duration::from_secs(5)).await;
    profile.pid().and_then(rss_mib).unwrap_or(f64::NAN)
}

/// Control-plane-only profile (`--disable-agent`) with `controllers`:
/// daemon RSS idle and after creating `objects` ConfigMaps.
async fn memory(opts: &WorkloadBenchOptions, controllers: &str) -> Result<(f64, f64)> {
    let profile = Profile::throwaway(
        &opts.binary,
        opts.port,
        vec![
            "--disable-agent".into(),
            format!("--controllers={controllers}"),
        ],
    )?;
    profile.start()?;
    let client = profile.client().await?;
    let idle = settled_rss(&profile).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..opts.objects {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("obj-{i}")},
            "data": {"k": "v".repeat(64)},
        }))
        .map_err(|e| Error::Config(e.to_string()))?;
        api.create(&PostParams::default(), &cm).await?;
    }
    let loaded = settled_rss(&profile).await;
    Ok((idle, loaded))
}

/// Runs the workload benchmark and prints the figures.
pub async fn run_workloads(opts: WorkloadBenchOptions) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut out = |s: String| {
        println!("{s}");
        lines.push(s);
    };
    {
        let profile = Profile::throwaway(&opts.binary, opts.port, Vec::new())?;
        profile.start()?;
        load_image(&profile)?;
        let client = profile.client().await?;
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
        for &n in &opts.sizes {
            let name = format!("d{n}");
            let started = Instant::now();
            deploys
                .create(&PostParams::default(), &deployment(&name, n)?)
                .await?;
            wait_rolled(&deploys, &name, n).await?;
            let via_deploy = started.elapsed();
            delete_deployment(&client, &deploys, &name).await?;
            let bare = bare_pods(&client, n).await?;
            delete_all(&client).await?;
            out(format!(
                "{n:>4} replicas: Deployment apply → all Available {:>8.0} ms   bare pods → all Ready {:>8.0} ms   ratio {:.2}x",
                via_deploy.as_secs_f64() * 1e3,
                bare.as_secs_f64() * 1e3,
                via_deploy.as_secs_f64() / bare.as_secs_f64().max(1e-9)
            ));
        }
        // Rolling update of 10 replicas (25% surge / 25% unavailable).
        let name = "roll";
        deploys
            .create(&PostParams::default(), &deployment(name, 10)?)
            .await?;
        wait_rolled(&deploys, name, 10).await?;
        let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"bench/rev": "2"}}}}});
        let started = Instant::now();
        deploys
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        // Let the controller see the new generation before polling status.
        wait_rolled(&deploys, name, 10).await?;
        out(format!(
            "rolling update of 10 replicas: {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        ));
        delete_deployment(&client, &deploys, name).await?;
    }
    let (with_idle, with_loaded) = memory(&opts, "*").await?;
    let (without_idle, without_loaded) = memory(&opts, "").await?;
    out(format!(
        "controller manager memory (daemon RSS with all controllers − without): idle {:.1} MiB ({with_idle:.1} − {without_idle:.1}), with {} ConfigMaps {:.1} MiB ({with_loaded:.1} − {without_loaded:.1})",
        with_idle - without_idle,
        opts.objects,
        with_loaded - without_loaded,
    ));
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_objects_are_valid() {
        let d = deployment("d10", 10).unwrap();
        assert_eq!(d.spec.unwrap().replicas, Some(10));
        assert!(bare_pod("bare-0").is_ok());
    }

    #[test]
    fn rollout_done_needs_every_count_and_generation() {
        let mut d = deployment("x", 2).unwrap();
        d.metadata.generation = Some(2);
        assert!(!rollout_done(&d, 2));
        d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
            observed_generation: Some(2),
            updated_replicas: Some(2),
            available_replicas: Some(2),
            replicas: Some(2),
            ..Default::default()
        });
        assert!(rollout_done(&d, 2));
        d.metadata.generation = Some(3);
        assert!(!rollout_done(&d, 2));
    }
}
