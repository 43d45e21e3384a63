//! `rkube bench api`: starts a throw-away profile with the rkube binary and
//! prints figures (start time cold and warm, idle RSS, request latency and
//! throughput, watch fan-out). Figures, not pass/fail assertions.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;

pub mod pod_bench;
pub mod runtime_bench;
pub mod workload_bench;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Errors of the benchmark driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Running the rkube binary failed.
    #[error("running {cmd}: {msg}")]
    Command {
        /// The command line.
        cmd: String,
        /// What went wrong.
        msg: String,
    },
    /// A Kubernetes API call failed.
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    /// The kubeconfig could not be loaded.
    #[error("kubeconfig: {0}")]
    Config(String),
    /// Local I/O failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Options of `rkube bench api`.
#[derive(Clone, Debug)]
pub struct ApiBenchOptions {
    /// The rkube binary to benchmark.
    pub binary: PathBuf,
    /// API server port of the throw-away profile.
    pub port: u16,
    /// Requests per measurement.
    pub requests: usize,
}

pub(crate) struct Profile {
    pub(crate) binary: PathBuf,
    pub(crate) home: tempfile::TempDir,
    pub(crate) kubeconfig: PathBuf,
    pub(crate) port: u16,
    /// Extra `rkube start` flags.
    pub(crate) start_args: Vec<String>,
}

impl Profile {
    /// A throw-away profile named `bench` in a new temporary `RKUBE_HOME`,
    /// started later with `start_args`.
    pub(crate) fn throwaway(binary: &Path, port: u16, start_args: Vec<String>) -> Result<Self> {
        let home = tempfile::tempdir()?;
        Ok(Profile {
            binary: binary.to_path_buf(),
            kubeconfig: home.path().join("kubeconfig"),
            home,
            port,
            start_args,
        })
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Result<Duration> {
        let started = Instant::now();
        let out = Command::new(&self.binary)
            .args(args)
            .args(["--profile", "bench"])
            .env("RKUBE_HOME", self.home.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .output()?;
        if !out.status.success() {
            return Err(Error::Command {
                cmd: format!("rkube {}", args.join(" ")),
                msg: String::from_utf8_lossy(&out.stderr).into_owned()
                    + &String::from_utf8_lossy(&out.stdout),
            });
        }
        Ok(started.elapsed())
    }

    pub(crate) fn start(&self) -> Result<Duration> {
        let port = self.port.to_string();
        let mut args = vec!["start", "--apiserver-port", &port];
        args.extend(self.start_args.iter().map(String::as_str));
        self.cmd(&args)
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        let p = self.home.path().join("profiles/bench/rkube.pid");
        std::fs::read_to_string(p)
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    pub(crate) async fn client(&self) -> Result<kube::Client> {
        let kc =
            Kubeconfig::read_from(&self.kubeconfig).map_err(|e| Error::Config(e.to_string()))?;
        let opts = KubeConfigOptions {
            context: Some("bench".into()),
            ..Default::default()
        };
        let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(kube::Client::try_from(cfg)?)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = self.cmd(&["delete"]);
    }
}

/// Resident set size of a process in MiB (from /proc).
pub fn rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Latency summary of a measurement.
#[derive(Clone, Debug)]
pub struct Summary {
    /// What was measured.
    pub name: String,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Operations per second.
    pub throughput: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<34} p50 {:>8.2} ms   p99 {:>8.2} ms   {:>9.0} ops/s",
            self.name,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.throughput
        )
    }
}

fn summarize(name: &str, mut lat: Vec<Duration>, wall: Duration) -> Summary {
    lat.sort();
    let pick = |q: f64| {
        if lat.is_empty() {
            Duration::ZERO
        } else {
            lat[((lat.len() as f64 - 1.0) * q).round() as usize]
        }
    };
    Summary {
        name: name.to_string(),
        p50: pick(0.50),
        p99: pick(0.99),
        throughput: lat.len() as f64 / wall.as_secs_f64().max(1e-9),
    }
}

async fn run_concurrent<F, Fut>(name: &str, clients: usize, total: usize, f: F) -> Result<Summary>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let f = Arc::new(f);
    let started = Instant::now();
    let per = total.div_ceil(clients);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                f(c * per + i).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| Error::Command {
            cmd: name.into(),
            msg: e.to_string(),
        })??);
    }
    Ok(summarize(name, all, started.elapsed()))
}

fn cm(name: &str, i: usize) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "true"}},
        "data": {"i": i.to_string(), "payload": "x".repeat(256)},
    }))
    .expect("static configmap")
}

/// Runs the API benchmark and prints the figures as it goes.
pub async fn run_api(opts: ApiBenchOptions) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut out = |s: String| {
        println!("{s}");
        lines.push(s);
    };
    // The API figures are for the control plane alone.
    let profile = Profile::throwaway(&opts.binary, opts.port, vec!["--disable-agent".into()])?;
    let cold = profile.start()?;
    out(format!(
        "start to ready (cold, with PKI): {:>8.1} ms",
        cold.as_secs_f64() * 1e3
    ));
    profile.cmd(&["stop"])?;
    let mut warm = Vec::new();
    for _ in 0..5 {
        warm.push(profile.start()?);
        profile.cmd(&["stop"])?;
    }
    warm.sort();
    out(format!(
        "start to ready (warm, median of 5): {:>5.1} ms (min {:.1} ms)",
        warm[2].as_secs_f64() * 1e3,
        warm[0].as_secs_f64() * 1e3
    ));
    profile.start()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Some(pid) = profile.pid() {
        if let Some(rss) = rss_mib(pid) {
            out(format!("idle RSS of the daemon: {rss:.1} MiB"));
        }
    }
    let client = profile.client().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let n = opts.requests;

    for clients in [1usize, 64] {
        let a = api.clone();
        let tag = format!("c{clients}");
        let s = run_concurrent(
            &format!("CREATE ({clients} clients)"),
            clients,
            n,
            move |i| {
                let a = a.clone();
                let name = format!("bench-{tag}-{i}");
                async move {
                    a.create(&PostParams::default(), &cm(&name, i)).await?;
                    Ok(())
                }
            },
        )
        .await?;
        out(s.to_string());
        let a = api.clone();
        let tag = format!("c{clients}");
        let s = run_concurrent(&format!("GET ({clients} clients)"), clients, n, move |i| {
            let a = a.clone();
            let name = format!("bench-{tag}-{i}");
            async move {
                a.get(&name).await?;
                Ok(())
            }
        })
        .await?;
        out(s.to_string());
        let a = api.clone();
        let tag = format!("c{clients}");
        let s = run_concurrent(
            &format!("UPDATE ({clients} clients)"),
            clients,
            n,
            move |i| {
                let a = a.clone();
                let name = format!("bench-{tag}-{i}");
                async move {
                    let mut obj = a.get(&name).await?;
                    obj.data
                        .get_or_insert_with(Default::default)
                        .insert("u".into(), "1".into());
                    a.replace(&name, &PostParams::default(), &obj).await?;
                    Ok(())
                }
            },
        )
        .await?;
        out(format!("{s}   (GET+PUT pairs)"));
    }

    // LIST of 100 and 1,000 objects, in their own namespaces.
    for count in [100usize, 1000] {
        let ns = format!("list{count}");
        let nsapi: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        nsapi
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("ns"),
            )
            .await?;
        let a: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let a2 = a.clone();
        run_concurrent("fill", 16, count, move |i| {
            let a = a2.clone();
            async move {
                a.create(&PostParams::default(), &cm(&format!("c{i}"), i))
                    .await?;
                Ok(())
            }
        })
        .await?;
        for clients in [1usize, 64] {
            let a = a.clone();
            let total = if count >= 1000 { 200 } else { 1000 };
            let s = run_concurrent(
                &format!("LIST {count} ({clients} clients)"),
                clients,
                total,
                move |_| {
                    let a = a.clone();
                    async move {
                        a.list(&ListParams::default().labels("bench=true")).await?;
                        Ok(())
                    }
                },
            )
            .await?;
            out(s.to_string());
        }
    }

    // Watch fan-out: 100 watchers, time from write acknowledged to event seen.
    let watchers = 100usize;
    let wapi: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = wapi
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut handles = Vec::new();
    for w in 0..watchers {
        let a = wapi.clone();
        let tx = tx.clone();
        let rv = rv.clone();
        handles.push(tokio::spawn(async move {
            let wp = WatchParams::default().fields("metadata.name=fanout");
            let Ok(stream) = a.watch(&wp, &rv).await else {
                return;
            };
            let mut stream = stream.boxed();
            while let Some(ev) = stream.next().await {
                if let Ok(WatchEvent::Modified(_)) | Ok(WatchEvent::Added(_)) = ev {
                    let _ = tx.send((w, Instant::now()));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lat = Vec::new();
    let rounds = 20;
    let started_all = Instant::now();
    for r in 0..rounds {
        let t0 = Instant::now();
        if r == 0 {
            wapi.create(&PostParams::default(), &cm("fanout", 0))
                .await?;
        } else {
            let mut o = wapi.get("fanout").await?;
            o.data
                .get_or_insert_with(Default::default)
                .insert("r".into(), r.to_string());
            wapi.replace("fanout", &PostParams::default(), &o).await?;
        }
        let mut got = 0;
        while got < watchers {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some((_, at))) => {
                    lat.push(at.duration_since(t0));
                    got += 1;
                }
                _ => break,
            }
        }
    }
    for h in handles {
        h.abort();
    }
    out(summarize(
        &format!("watch fan-out ({watchers} watchers)"),
        lat,
        started_all.elapsed(),
    )
    .to_string());
    if let Some(pid) = profile.pid() {
        if let Some(rss) = rss_mib(pid) {
            out(format!("RSS after the load: {rss:.1} MiB"));
        }
    }
    Ok(lines)
}

/// Path of the running executable (the rkube binary under test).
pub fn current_binary() -> Result<PathBuf> {
    Ok(std::env::current_exe()?)
}

/// Whether a path is an executable file.
pub fn is_executable(p: &Path) -> bool {
    p.is_file()
}
