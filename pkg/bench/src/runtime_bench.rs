//! `rkube bench runtimes`: the backends side by side in one run. For each of
//! cri-o with runc, cri-o with crun, containerd and docker it starts a throw-away
//! profile and measures pod startup (create → Running through rkube, and
//! sandbox + container directly over CRI; 1 pod and a burst) and the idle
//! memory of the runtime side with N pods running. `runc run` and `crun run`
//! of one busybox bundle give the floor. Figures, not assertions.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::pod_bench::{cri_rounds, delete_all, load_image, rkube_round, rkube_singles};
use crate::{summarize, Error, Profile, Result, Summary};

/// Options of `rkube bench runtimes`.
#[derive(Clone, Debug)]
pub struct RuntimeBenchOptions {
    /// The rkube binary.
    pub binary: PathBuf,
    /// API server port of the throw-away profiles.
    pub port: u16,
    /// Pods in the burst.
    pub burst: usize,
    /// Sequential single-pod runs.
    pub singles: usize,
    /// Pods kept running while idle memory is measured.
    pub idle_pods: usize,
    /// Backends to measure, as `cri-o/runc`, `cri-o/crun`, `containerd`,
    /// `docker`.
    pub runtimes: Vec<String>,
}

/// What one backend measured.
#[derive(Clone, Debug)]
struct Figures {
    label: String,
    rkube_one: Summary,
    rkube_burst: Summary,
    burst_wall: Duration,
    cri_one: Summary,
    cri_burst: Summary,
    /// PSS/RSS (MiB) of the rkube daemon with the idle pods running.
    daemon: Mem,
    /// PSS/RSS (MiB) of the runtime's own processes (conmons; containerd
    /// and its shims; dockerd, its containerd and shims) and how many there
    /// are.
    runtime_procs: Mem,
    runtime_count: usize,
}

/// Proportional and resident set sizes in MiB.
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    pss: f64,
    rss: f64,
}

impl std::ops::Add for Mem {
    type Output = Mem;
    fn add(self, o: Mem) -> Mem {
        Mem {
            pss: self.pss + o.pss,
            rss: self.rss + o.rss,
        }
    }
}

impl std::ops::Sub for Mem {
    type Output = Mem;
    fn sub(self, o: Mem) -> Mem {
        Mem {
            pss: self.pss - o.pss,
            rss: self.rss - o.rss,
        }
    }
}

/// PSS and RSS of a process from `/proc/PID/smaps_rollup`.
fn mem_of(pid: u32) -> Option<Mem> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let l = s.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = l.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some(Mem {
        pss: field("Pss:")?,
        rss: field("Rss:")?,
    })
}

/// Processes whose executable name is one of `names` and whose command line
/// mentions `marker` (the profile's directory): the runtime side of one
/// profile, not other clusters on the host.
fn procs_named(names: &[&str], marker: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        if !names.iter().any(|n| comm.trim_end() == *n) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            pids.push(pid);
        }
    }
    pids
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What the runtime's own processes are called in the memory table.
fn procs_label(label: &str) -> &'static str {
    match label {
        "containerd" => "containerd + shims",
        "docker" => "dockerd + containerd + shims",
        _ => "conmons",
    }
}

/// `(container-runtime, oci-runtime)` of a label such as `cri-o/crun`.
fn parse_label(label: &str) -> Result<(&str, Option<&str>)> {
    match label.split_once('/') {
        Some(("cri-o", oci @ ("runc" | "crun"))) => Ok(("cri-o", Some(oci))),
        None if label == "cri-o" => Ok(("cri-o", Some("runc"))),
        None if label == "containerd" => Ok(("containerd", None)),
        None if label == "docker" => Ok(("docker", None)),
        _ => Err(Error::Config(format!(
            "unknown runtime {label:?}; use cri-o/runc, cri-o/crun, containerd or docker"
        ))),
    }
}

/// Waits until `n` pods labelled `bench=pods` are Running.
async fn idle_pods(client: &kube::Client, n: usize) -> Result<()> {
    let names: Vec<String> = (0..n).map(|i| format!("idle-{i}")).collect();
    let ran = rkube_round(client, &names).await?;
    if ran.len() < n {
        return Err(Error::Config(format!(
            "only {} of {n} idle pods reached Running",
            ran.len()
        )));
    }
    Ok(())
}

async fn measure(opts: &RuntimeBenchOptions, label: &str) -> Result<Figures> {
    let (runtime, oci) = parse_label(label)?;
    let home = tempfile::Builder::new().prefix("rkube-bench-").tempdir()?;
    let marker = home.path().to_string_lossy().into_owned();
    let mut start_args = vec![format!("--container-runtime={runtime}")];
    if let Some(oci) = oci {
        start_args.push(format!("--oci-runtime={oci}"));
    }
    let profile = Profile {
        binary: opts.binary.clone(),
        kubeconfig: home.path().join("kubeconfig"),
        home,
        port: opts.port,
        start_args,
    };
    profile.start()?;
    load_image(&profile)?;
    let client = profile.client().await?;

    let singles = rkube_singles(&client, opts.singles).await?;
    let rkube_one = summarize("1 pod", singles, Duration::from_secs(1));
    let names: Vec<String> = (0..opts.burst).map(|i| format!("burst-{i}")).collect();
    let wall = Instant::now();
    let burst = rkube_round(&client, &names).await?;
    let burst_wall = wall.elapsed();
    if burst.len() < opts.burst {
        return Err(Error::Config(format!(
            "{label}: only {} of {} burst pods reached Running",
            burst.len(),
            opts.burst
        )));
    }
    let rkube_burst = summarize("burst", burst, burst_wall);
    delete_all(&client).await?;

    let (cri_one, cri_burst, _) = cri_rounds(&profile, runtime, opts.singles, opts.burst).await?;

    idle_pods(&client, opts.idle_pods).await?;
    // Let start-up allocations settle before reading memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let daemon = profile.pid().and_then(mem_of).unwrap_or_default();
    let names: &[&str] = match runtime {
        "cri-o" => &["conmon"],
        "docker" => &[
            "dockerd",
            "containerd",
            "containerd-shim",
            "containerd-shim-runc-v2",
        ],
        _ => &["containerd", "containerd-shim", "containerd-shim-runc-v2"],
    };
    let pids = procs_named(names, &marker);
    let runtime_procs = pids
        .iter()
        .filter_map(|p| mem_of(*p))
        .fold(Mem::default(), |a, b| a + b);
    delete_all(&client).await?;
    Ok(Figures {
        label: label.to_string(),
        rkube_one,
        rkube_burst,
        burst_wall,
        cri_one,
        cri_burst,
        daemon,
        runtime_procs,
        runtime_count: pids.len(),
    })
}

/// A busybox bundle (`runc spec`, then `sleep 3600`, no terminal) for the
/// raw OCI-runtime floor.
fn raw_bundle(dir: &Path) -> Result<()> {
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/usr/bin/busybox", bin.join("busybox"))?;
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    let out = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: "runc spec".into(),
            msg: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let path = dir.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)
        .map_err(|e| Error::Config(format!("runc spec: {e}")))?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["sleep", "3600"]);
    std::fs::write(
        &path,
        serde_json::to_vec(&spec).map_err(|e| Error::Config(e.to_string()))?,
    )?;
    Ok(())
}

/// Runs the OCI runtime CLI. Its stderr goes to an anonymous file, not a
/// pipe: a container started with `run -d` inherits it and would hold a pipe
/// open for as long as it runs.
fn oci(runtime: &str, args: &[&str]) -> Result<()> {
    use std::io::{Read, Seek};
    let mut err = tempfile::tempfile()?;
    let status = Command::new(runtime)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err.try_clone()?))
        .status()?;
    if !status.success() {
        let mut msg = String::new();
        err.rewind()?;
        err.read_to_string(&mut msg)?;
        return Err(Error::Command {
            cmd: format!("{runtime} {}", args.join(" ")),
            msg,
        });
    }
    Ok(())
}

/// `RUNTIME run -d` of the bundle: each call's time until the container runs.
async fn raw_round(runtime: &str, bundle: &Path, ids: &[String]) -> Result<Vec<Duration>> {
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (runtime, bundle, id) = (runtime.to_string(), bundle.to_path_buf(), id.clone());
            tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                oci(
                    &runtime,
                    &["run", "-d", "--bundle", &bundle.to_string_lossy(), &id],
                )
                .map(|_| t.elapsed())
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.push(t.await.map_err(|e| Error::Config(e.to_string()))??);
    }
    for id in ids {
        let _ = oci(runtime, &["delete", "-f", id]);
    }
    Ok(lat)
}

async fn raw_floor(runtime: &str, opts: &RuntimeBenchOptions) -> Result<(Summary, Summary)> {
    let dir = tempfile::Builder::new()
        .prefix("rkube-bench-bundle-")
        .tempdir()?;
    raw_bundle(dir.path())?;
    let mut singles = Vec::new();
    for i in 0..opts.singles {
        singles.extend(raw_round(runtime, dir.path(), &[format!("rkube-bench-{i}")]).await?);
    }
    let ids: Vec<String> = (0..opts.burst)
        .map(|i| format!("rkube-bench-b{i}"))
        .collect();
    let wall = Instant::now();
    let burst = raw_round(runtime, dir.path(), &ids).await?;
    Ok((
        summarize("raw 1", singles, Duration::from_secs(1)),
        summarize("raw burst", burst, wall.elapsed()),
    ))
}

/// Runs the comparison and prints the figures.
pub async fn run_runtimes(opts: RuntimeBenchOptions) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut out = |s: String| {
        println!("{s}");
        lines.push(s);
    };
    let mut all = Vec::new();
    for label in &opts.runtimes {
        eprintln!("measuring {label} ...");
        all.push(measure(&opts, label).await?);
    }
    out(format!(
        "pod startup, ms (singles: {} sequential runs; burst: {} pods created at once)",
        opts.singles, opts.burst
    ));
    out(format!(
        "{:<12} {:>14} {:>14} {:>14} {:>9} {:>14} {:>14}",
        "runtime",
        "rkube 1 p50/p99",
        "burst p50",
        "burst p99",
        "wall s",
        "CRI 1 p50",
        "CRI burst p99"
    ));
    for f in &all {
        out(format!(
            "{:<12} {:>6.0} /{:>6.0} {:>14.0} {:>14.0} {:>9.2} {:>14.0} {:>14.0}",
            f.label,
            ms(f.rkube_one.p50),
            ms(f.rkube_one.p99),
            ms(f.rkube_burst.p50),
            ms(f.rkube_burst.p99),
            f.burst_wall.as_secs_f64(),
            ms(f.cri_one.p50),
            ms(f.cri_burst.p99),
        ));
    }
    for rt in ["runc", "crun"] {
        match raw_floor(rt, &opts).await {
            Ok((one, burst)) => out(format!(
                "{:<12} {:>6.0} /{:>6.0} {:>14.0} {:>14.0}   (`{rt} run -d` of one busybox bundle: the floor)",
                format!("raw {rt}"),
                ms(one.p50),
                ms(one.p99),
                ms(burst.p50),
                ms(burst.p99),
            )),
            Err(e) => out(format!("raw {rt}: not measured: {e}")),
        }
    }
    let containerd = all.iter().find(|f| f.label == "containerd");
    if let Some(base) = containerd {
        for f in all.iter().filter(|f| f.label != "containerd") {
            out(format!(
                "{} / containerd: 1 pod p50 {:.2}x, burst p50 {:.2}x, burst p99 {:.2}x, burst wall {:.2}x",
                f.label,
                ms(f.rkube_one.p50) / ms(base.rkube_one.p50).max(1e-9),
                ms(f.rkube_burst.p50) / ms(base.rkube_burst.p50).max(1e-9),
                ms(f.rkube_burst.p99) / ms(base.rkube_burst.p99).max(1e-9),
                f.burst_wall.as_secs_f64() / base.burst_wall.as_secs_f64().max(1e-9),
            ));
        }
    }
    out(format!(
        "idle memory with {} pods running, MiB (PSS / RSS)",
        opts.idle_pods
    ));
    for f in &all {
        let procs = procs_label(&f.label);
        out(format!(
            "{:<12} rkube daemon {:>6.1} / {:>6.1}   {procs} ({}) {:>6.1} / {:>6.1}   total {:>6.1} / {:>6.1}",
            f.label,
            f.daemon.pss,
            f.daemon.rss,
            f.runtime_count,
            f.runtime_procs.pss,
            f.runtime_procs.rss,
            (f.daemon + f.runtime_procs).pss,
            (f.daemon + f.runtime_procs).rss,
        ));
    }
    if let Some(base) = containerd {
        for f in all.iter().filter(|f| f.label != "containerd") {
            // The bundled CRI server and the dockershim live in the rkube
            // daemon: their share is what the daemon holds beyond the same
            // daemon on containerd.
            let server = f.daemon - base.daemon;
            let side = server + f.runtime_procs;
            out(format!(
                "runtime side, PSS: {} = CRI server in the daemon {:.1} + {} {:.1} = {:.1} MiB; containerd + shims = {:.1} MiB ({:.2}x)",
                f.label,
                server.pss,
                procs_label(&f.label),
                f.runtime_procs.pss,
                side.pss,
                base.runtime_procs.pss,
                side.pss / base.runtime_procs.pss.max(1e-9),
            ));
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_a_runtime_and_an_oci_runtime() {
        assert_eq!(parse_label("cri-o/crun").unwrap(), ("cri-o", Some("crun")));
        assert_eq!(parse_label("cri-o").unwrap(), ("cri-o", Some("runc")));
        assert_eq!(parse_label("containerd").unwrap(), ("containerd", None));
        assert_eq!(parse_label("docker").unwrap(), ("docker", None));
        assert!(parse_label("docker/runc").is_err());
    }

    #[test]
    fn own_memory_is_read_from_proc() {
        let m = mem_of(std::process::id()).expect("smaps_rollup of self");
        assert!(m.rss > 0.0 && m.pss > 0.0 && m.pss <= m.rss + 0.01);
    }
}
