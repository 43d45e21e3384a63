//! `rkube bench pods`: pod startup latency (create → Running seen through a
//! watch) for single pods and a burst of 100, and the same sandbox +
//! container start done directly over CRI against the profile's runtime,
//! with the ratio. Figures, not assertions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use rkube_cri::api as cri;
use tokio::sync::Mutex;

use crate::{summarize, Error, Profile, Result};

pub(crate) const IMAGE: &str = "rkube.local/busybox:bench";

/// Options of `rkube bench pods`.
#[derive(Clone, Debug)]
pub struct PodBenchOptions {
    /// The rkube binary.
    pub binary: PathBuf,
    /// API server port of the throw-away profile.
    pub port: u16,
    /// Pods in the burst.
    pub burst: usize,
    /// Sequential single-pod runs.
    pub singles: usize,
    /// `--container-runtime` of the profile: containerd or cri-o.
    pub runtime: String,
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "c", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}
    }))
    .expect("static pod")
}

/// Creates `names` concurrently; returns create→Running latency of each.
pub(crate) async fn rkube_round(client: &kube::Client, names: &[String]) -> Result<Vec<Duration>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rv = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let done: Arc<Mutex<HashMap<String, Duration>>> = Arc::default();
    let mut stream = api
        .watch(&WatchParams::default().labels("bench=pods"), &rv)
        .await?
        .boxed();
    let want = names.len();
    let watcher = {
        let started = started.clone();
        let done = done.clone();
        tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                if let Ok(WatchEvent::Modified(p)) | Ok(WatchEvent::Added(p)) = ev {
                    let running =
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if running {
                        let at = Instant::now();
                        let t0 = started.lock().await.get(&name).copied();
                        if let Some(t0) = t0 {
                            let mut d = done.lock().await;
                            d.entry(name).or_insert(at - t0);
                            if d.len() >= want {
                                return;
                            }
                        }
                    }
                }
            }
        })
    };
    let mut creates = Vec::new();
    for n in names {
        let api = api.clone();
        let started = started.clone();
        let n = n.clone();
        creates.push(tokio::spawn(async move {
            started.lock().await.insert(n.clone(), Instant::now());
            api.create(&PostParams::default(), &pod(&n)).await
        }));
    }
    for c in creates {
        c.await.map_err(|e| Error::Config(e.to_string()))??;
    }
    let _ = tokio::time::timeout(Duration::from_secs(120), watcher).await;
    let d = done.lock().await;
    Ok(d.values().copied().collect())
}

pub(crate) async fn delete_all(client: &kube::Client) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels("bench=pods");
    api.delete_collection(&DeleteParams::default().grace_period(0), &lp)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if api.list(&lp).await?.items.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

fn host_dns() -> cri::DnsConfig {
    let mut d = cri::DnsConfig::default();
    if let Ok(text) = std::fs::read_to_string("/etc/resolv.conf") {
        for line in text.lines() {
            let mut it = line.split_whitespace();
            if it.next() == Some("nameserver") {
                d.servers.extend(it.map(String::from));
            }
        }
    }
    d
}

/// One sandbox + container started directly over CRI; returns the time.
async fn cri_one(c: rkube_cri::Clients, name: String, logs: PathBuf) -> Result<(Duration, String)> {
    let mut rt = c.runtime.clone();
    let t0 = Instant::now();
    let cfg = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.clone(),
            uid: format!("bench-{name}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory: logs.join(&name).to_string_lossy().into_owned(),
        dns_config: Some(host_dns()),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = |e: tonic::Status| Error::Config(format!("cri: {}", e.message()));
    let sid = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(err)?
        .into_inner()
        .pod_sandbox_id;
    let cid = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sid.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: IMAGE.into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "3600".into()],
                log_path: "c/0.log".into(),
                linux: Some(cri::LinuxContainerConfig::default()),
                ..Default::default()
            }),
            sandbox_config: Some(cfg),
        })
        .await
        .map_err(err)?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest { container_id: cid })
        .await
        .map_err(err)?;
    Ok((t0.elapsed(), sid))
}

pub(crate) async fn cri_round(
    c: &rkube_cri::Clients,
    names: &[String],
    logs: &Path,
) -> Result<(Vec<Duration>, Vec<String>)> {
    let tasks: Vec<_> = names
        .iter()
        .map(|n| tokio::spawn(cri_one(c.clone(), n.clone(), logs.to_path_buf())))
        .collect();
    let mut lat = Vec::new();
    let mut ids = Vec::new();
    for t in tasks {
        let (d, id) = t.await.map_err(|e| Error::Config(e.to_string()))??;
        lat.push(d);
        ids.push(id);
    }
    Ok((lat, ids))
}

pub(crate) async fn cri_cleanup(c: &rkube_cri::Clients, ids: &[String]) {
    let mut rt = c.runtime.clone();
    for id in ids {
        let _ = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        let _ = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
    }
}

/// Loads the bench image (static busybox) into the profile's runtime.
pub(crate) fn load_image(profile: &Profile) -> Result<()> {
    let archive = profile.home.path().join("busybox.tar");
    rkube_image::write_busybox_archive(&archive, IMAGE, Path::new("/usr/bin/busybox"))
        .map_err(|e| Error::Config(e.to_string()))?;
    profile.cmd(&["image", "load", &archive.to_string_lossy()])?;
    Ok(())
}

/// `n` sequential one-pod rounds through rkube, each pod deleted after it.
pub(crate) async fn rkube_singles(client: &kube::Client, n: usize) -> Result<Vec<Duration>> {
    let mut lat = Vec::new();
    for i in 0..n {
        lat.extend(rkube_round(client, &[format!("single-{i}")]).await?);
        delete_all(client).await?;
    }
    Ok(lat)
}

/// Pod start directly over the profile's CRI socket: `singles` sequential
/// one-pod rounds, then one burst; returns their summaries and the burst's
/// wall time.
pub(crate) async fn cri_rounds(
    profile: &Profile,
    runtime: &str,
    singles: usize,
    burst: usize,
) -> Result<(crate::Summary, crate::Summary, Duration)> {
    let sock = profile.home.path().join(match runtime {
        "cri-o" => "profiles/bench/crio.sock",
        "docker" => "profiles/bench/docker/dockershim.sock",
        _ => "profiles/bench/containerd/containerd.sock",
    });
    let c = rkube_cri::connect(&sock).map_err(|e| Error::Config(e.to_string()))?;
    let logs = profile.home.path().join("bench-logs");
    std::fs::create_dir_all(&logs)?;
    let mut lat = Vec::new();
    for i in 0..singles {
        let (l, ids) = cri_round(&c, &[format!("csingle-{i}")], &logs).await?;
        lat.extend(l);
        cri_cleanup(&c, &ids).await;
    }
    let one = summarize("cri 1 pod", lat, Duration::from_secs(1));
    let names: Vec<String> = (0..burst).map(|i| format!("cburst-{i}")).collect();
    let wall = Instant::now();
    let (l, ids) = cri_round(&c, &names, &logs).await?;
    let wall = wall.elapsed();
    let many = summarize("cri burst", l, wall);
    cri_cleanup(&c, &ids).await;
    Ok((one, many, wall))
}

/// Runs the pod benchmark and prints the figures.
pub async fn run_pods(opts: PodBenchOptions) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut out = |s: String| {
        println!("{s}");
        lines.push(s);
    };
    let profile = Profile::throwaway(
        &opts.binary,
        opts.port,
        vec![format!("--container-runtime={}", opts.runtime)],
    )?;
    let t = profile.start()?;
    out(format!(
        "start to node Ready (cold, {}): {:.0} ms",
        opts.runtime,
        t.as_secs_f64() * 1e3
    ));
    load_image(&profile)?;
    let client = profile.client().await?;

    // Through rkube.
    let singles = rkube_singles(&client, opts.singles).await?;
    let s1 = summarize(
        "pod start via rkube (1 pod)",
        singles,
        Duration::from_secs(1),
    );
    out(format!(
        "pod start via rkube (1 pod, {} runs)       p50 {:>7.1} ms   p99 {:>7.1} ms",
        opts.singles,
        ms(s1.p50),
        ms(s1.p99)
    ));
    let names: Vec<String> = (0..opts.burst).map(|i| format!("burst-{i}")).collect();
    let wall = Instant::now();
    let burst = rkube_round(&client, &names).await?;
    let wall = wall.elapsed();
    let ran = burst.len();
    let sb = summarize("burst", burst, wall);
    out(format!(
        "pod start via rkube (burst of {}) p50 {:>7.1} ms   p99 {:>7.1} ms   wall {:.2} s   ({ran} reached Running)",
        opts.burst,
        ms(sb.p50),
        ms(sb.p99),
        wall.as_secs_f64()
    ));
    delete_all(&client).await?;

    // Directly over CRI, same runtime.
    let (c1, cb, cwall) = cri_rounds(&profile, &opts.runtime, opts.singles, opts.burst).await?;
    out(format!(
        "pod start via CRI (1 pod, {} runs)         p50 {:>7.1} ms   p99 {:>7.1} ms",
        opts.singles,
        ms(c1.p50),
        ms(c1.p99)
    ));
    out(format!(
        "pod start via CRI (burst of {})   p50 {:>7.1} ms   p99 {:>7.1} ms   wall {:.2} s",
        opts.burst,
        ms(cb.p50),
        ms(cb.p99),
        cwall.as_secs_f64()
    ));
    out(format!(
        "ratio rkube/CRI: 1 pod p50 {:.2}x, burst p99 {:.2}x",
        ratio(s1.p50, c1.p50),
        ratio(sb.p99, cb.p99)
    ));
    Ok(lines)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}
