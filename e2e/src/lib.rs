//! End-to-end harness: starts a real rkube profile with the prebuilt `rkube`
//! binary and drives it the way users do, through `kubectl`, `curl` and
//! `kube::Client`.
//!
//! Every [`Cluster`] gets its own `RKUBE_HOME`, its own kubeconfig file, its
//! own kubectl cache directory and a free port, so tests run in parallel
//! without sharing state. Dropping a cluster runs `rkube delete` and kills
//! whatever is left. The harness builds nothing: it uses `$RKUBE_BIN`, else
//! `<target>/debug/rkube` (run `cargo build -p rkube` first).

pub mod registry;
pub mod scenario;

use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use tempfile::TempDir;

/// How long `rkube start` may take.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long any other rkube verb may take.
const VERB_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one kubectl call may take.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// The `rkube` binary under test: `$RKUBE_BIN`, else
/// `$CARGO_TARGET_DIR/debug/rkube`, else `<workspace>/target/debug/rkube`.
pub fn rkube_bin() -> Result<PathBuf> {
    let bin = match std::env::var_os("RKUBE_BIN").filter(|v| !v.is_empty()) {
        Some(bin) => PathBuf::from(bin),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            target.join("debug").join("rkube")
        }
    };
    if !bin.is_file() {
        bail!(
            "rkube binary not found at {}: run `cargo build -p rkube` first (or set RKUBE_BIN)",
            bin.display()
        );
    }
    Ok(bin)
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e crate lives inside the workspace")
        .to_path_buf()
}

/// The kubectl to use: `$KUBECTL`, else `kubectl` from `PATH`.
fn kubectl_bin() -> PathBuf {
    std::env::var_os("KUBECTL")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `check` every 100ms until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Renders an [`Output`] for error messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// One running rkube profile with private state.
pub struct Cluster {
    name: String,
    port: u16,
    bin: PathBuf,
    /// `RKUBE_HOME`.
    home: TempDir,
    /// Holds the kubeconfig file, the kubectl cache and captured output.
    work: TempDir,
    seq: AtomicU64,
}

impl Cluster {
    /// Starts the control plane only (`--disable-agent`) of profile `name`
    /// on a free port with a private `RKUBE_HOME` and `KUBECONFIG`, and
    /// waits until `rkube start` has returned success. API tests use this,
    /// so many can run in parallel without sharing a pod network.
    pub fn start(name: &str) -> Result<Cluster> {
        Self::start_with(name, &["--disable-agent"])
    }

    /// Starts profile `name` with extra `rkube start` flags (e.g.
    /// `--container-runtime=containerd` for a cluster that runs pods).
    pub fn start_with(name: &str, extra: &[&str]) -> Result<Cluster> {
        let bin = rkube_bin()?;
        let cluster = Cluster {
            name: name.to_string(),
            port: free_port()?,
            bin,
            home: tempfile::Builder::new()
                .prefix("rkube-e2e-home-")
                .tempdir()?,
            work: tempfile::Builder::new()
                .prefix("rkube-e2e-work-")
                .tempdir()?,
            seq: AtomicU64::new(0),
        };
        std::fs::create_dir_all(cluster.work.path().join("out"))?;
        let port = cluster.port.to_string();
        let mut args = vec!["start", "--profile", name, "--apiserver-port", &port];
        args.extend_from_slice(extra);
        let out = cluster.run_rkube(&args, START_TIMEOUT)?;
        if !out.status.success() {
            bail!(
                "rkube start --profile {name} failed: {}\n--- rkube.log (tail) ---\n{}",
                describe(&out),
                cluster.log_tail(40)
            );
        }
        Ok(cluster)
    }

    /// Runs `rkube start --profile <name>` again (after `stop` or
    /// [`Cluster::kill9`]); the stored settings keep the port.
    pub fn restart(&self) -> Result<Output> {
        self.run_rkube(&["start", "--profile", &self.name], START_TIMEOUT)
    }

    /// The profile name (also the kubeconfig context name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The API server port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `RKUBE_HOME` of this cluster.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `profiles/<name>/` under `RKUBE_HOME`.
    pub fn profile_dir(&self) -> PathBuf {
        self.home.path().join("profiles").join(&self.name)
    }

    /// The kubeconfig file rkube merges its context into (`$KUBECONFIG`).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.work.path().join("kubeconfig")
    }

    /// The cluster CA certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.profile_dir().join("pki").join("ca.crt")
    }

    /// The API server URL recorded for this profile's cluster in `$KUBECONFIG`.
    pub fn server_url(&self) -> Result<String> {
        let text = std::fs::read_to_string(self.kubeconfig_path())
            .with_context(|| format!("read {}", self.kubeconfig_path().display()))?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text)?;
        doc.get("clusters")
            .and_then(|c| c.as_sequence())
            .into_iter()
            .flatten()
            .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(self.name.as_str()))
            .and_then(|c| c.get("cluster")?.get("server")?.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!(
                    "no cluster {:?} in {}",
                    self.name,
                    self.kubeconfig_path().display()
                )
            })
    }

    /// The pid recorded in `profiles/<name>/rkube.pid`, if any.
    pub fn daemon_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.profile_dir().join("rkube.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// The last `n` lines of the daemon log.
    pub fn log_tail(&self, n: usize) -> String {
        let text =
            std::fs::read_to_string(self.profile_dir().join("rkube.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGKILLs the daemon and waits until it is gone.
    pub fn kill9(&self) -> Result<()> {
        let pid = self.daemon_pid().ok_or_else(|| {
            anyhow!(
                "no pid in {}",
                self.profile_dir().join("rkube.pid").display()
            )
        })?;
        kill9_and_wait(pid)
    }

    /// Runs `rkube <args>` with this cluster's `RKUBE_HOME` and `KUBECONFIG`.
    /// Pass `--profile` yourself where the verb takes one.
    pub fn rkube(&self, args: &[&str]) -> Output {
        self.run_rkube(args, VERB_TIMEOUT)
            .unwrap_or_else(|e| panic!("rkube {}: {e:#}", args.join(" ")))
    }

    /// Runs `kubectl --context <profile> <args>`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    /// Runs kubectl with `stdin` (e.g. a manifest for `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.kubectl_command(args);
        self.run(&mut cmd, stdin.map(str::as_bytes), KUBECTL_TIMEOUT)
            .unwrap_or_else(|e| panic!("kubectl {}: {e:#}", args.join(" ")))
    }

    /// Runs kubectl, panics (with its stderr) unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl_stdin_ok(args, None)
    }

    /// [`Cluster::kubectl_ok`] with `stdin`.
    pub fn kubectl_stdin_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl, panics unless it fails; returns stderr.
    pub fn kubectl_fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {} succeeded but should have failed: {}",
            args.join(" "),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A kubectl command with this cluster's kubeconfig, context and cache,
    /// for callers that need to spawn it themselves (e.g. `--watch`).
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl_bin());
        cmd.env("KUBECONFIG", self.kubeconfig_path())
            .arg("--context")
            .arg(&self.name)
            .arg("--cache-dir")
            .arg(self.work.path().join("kube-cache"))
            .args(args);
        cmd
    }

    /// `curl`s `path` on the API server (verifying it against the cluster CA),
    /// with `token` as bearer token if given; returns (HTTP status, body).
    pub fn curl(&self, path: &str, token: Option<&str>) -> Result<(u16, String)> {
        let url = format!("{}{path}", self.server_url()?);
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "30",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(self.ca_path())
        .arg(&url);
        if let Some(token) = token {
            cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
        }
        let out = self.run(&mut cmd, None, KUBECTL_TIMEOUT)?;
        if !out.status.success() {
            bail!("curl {url} failed: {}", describe(&out));
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code = code
            .trim()
            .parse()
            .with_context(|| format!("curl status in {text:?}"))?;
        Ok((code, body.to_string()))
    }

    /// A `kube::Client` from `$KUBECONFIG` with this profile's context.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig_path())?;
        let options = kube::config::KubeConfigOptions {
            context: Some(self.name.clone()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
        Ok(kube::Client::try_from(config)?)
    }

    fn run_rkube(&self, args: &[&str], timeout: Duration) -> Result<Output> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("RKUBE_HOME", self.home.path())
            .env("KUBECONFIG", self.kubeconfig_path());
        self.run(&mut cmd, None, timeout)
    }

    /// Runs `cmd` with stdout/stderr captured in files (a daemon that keeps
    /// inherited descriptors open cannot hang us), killing it after `timeout`.
    fn run(&self, cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let out_path = self.work.path().join("out").join(format!("{n}.out"));
        let err_path = self.work.path().join("out").join(format!("{n}.err"));
        cmd.stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {:?}", cmd.get_program()))?;
        if let Some(data) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(data)?;
        }
        let status = wait_timeout(&mut child, timeout)?;
        Ok(Output {
            status,
            stdout: std::fs::read(&out_path)?,
            stderr: std::fs::read(&err_path)?,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- rkube.log of profile {} (tail) ---\n{}",
                self.name,
                self.log_tail(60)
            );
        }
        let pid = self.daemon_pid();
        if let Err(e) = self.run_rkube(&["delete", "--profile", &self.name], VERB_TIMEOUT) {
            eprintln!("rkube delete --profile {}: {e:#}", self.name);
        }
        if let Some(pid) = pid.filter(|p| alive(*p)) {
            let _ = kill9_and_wait(pid);
        }
    }
}

/// Waits for `child`, killing it after `timeout`.
fn wait_timeout(child: &mut std::process::Child, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start())
            .is_some_and(|s| !s.starts_with('Z')),
        Err(_) => false,
    }
}

fn kill9_and_wait(pid: i32) -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => bail!("kill -9 {pid}: {e}"),
    }
    if !eventually(Duration::from_secs(10), || !alive(pid)) {
        bail!("process {pid} still alive 10s after SIGKILL");
    }
    Ok(())
}

/// How often pod and node waits poll (each poll is one kubectl call).
const POLL: Duration = Duration::from_millis(500);

/// Helpers for clusters that run pods (started with a node agent through
/// [`Cluster::start_with`]): JSON reads through kubectl, bounded waits whose
/// errors carry the diagnostics a human would look at.
impl Cluster {
    /// `kubectl get <args> -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&full);
        if !out.status.success() {
            bail!("kubectl {} failed: {}", full.join(" "), describe(&out));
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("parse output of kubectl {}", full.join(" ")))
    }

    /// The pod `name` in the context's namespace, as JSON.
    pub fn pod_json(&self, name: &str) -> Result<serde_json::Value> {
        self.get_json(&["pod", name])
    }

    /// Polls pod `name` until `check` holds, at most `timeout`; returns the
    /// pod. The error names `what` was awaited and carries
    /// [`Cluster::pod_diagnostics`].
    pub fn wait_pod(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.pod_json(name) {
                Ok(pod) if check(&pod) => return Ok(pod),
                Ok(pod) => pod,
                Err(e) => serde_json::Value::String(format!("{e:#}")),
            };
            if Instant::now() >= deadline {
                let status = serde_json::to_string_pretty(last.get("status").unwrap_or(&last))?;
                bail!(
                    "pod {name}: not {what} after {timeout:?}\n--- last status ---\n{status}\n{}",
                    self.pod_diagnostics(name)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until pod `name` is Running with every container ready.
    pub fn wait_pod_ready(&self, name: &str, timeout: Duration) -> Result<serde_json::Value> {
        self.wait_pod(name, "Running and Ready", timeout, |p| {
            pod_phase(p) == "Running" && pod_condition(p, "Ready") == Some("True")
        })
    }

    /// Waits until pod `name` reached phase `phase` (e.g. `Succeeded`).
    pub fn wait_pod_phase(
        &self,
        name: &str,
        phase: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        self.wait_pod(name, &format!("in phase {phase}"), timeout, |p| {
            pod_phase(p) == phase
        })
    }

    /// Waits until `kubectl get pod name` answers NotFound.
    pub fn wait_pod_gone(&self, name: &str, timeout: Duration) -> Result<()> {
        let gone = eventually(timeout, || {
            let out = self.kubectl(&["get", "pod", name, "-o", "name"]);
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
        });
        if !gone {
            bail!(
                "pod {name} still exists {timeout:?} after deletion\n{}",
                self.pod_diagnostics(name)
            );
        }
        Ok(())
    }

    /// The single node, once its Ready condition is True (at most `timeout`).
    pub fn wait_node_ready(&self, timeout: Duration) -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let nodes = self.get_json(&["nodes"])?;
            let ready = nodes["items"].as_array().and_then(|items| {
                items
                    .iter()
                    .find(|n| object_condition(n, "Ready") == Some("True"))
                    .cloned()
            });
            if let Some(node) = ready {
                return Ok(node);
            }
            if Instant::now() >= deadline {
                bail!(
                    "no Ready node after {timeout:?}\n--- nodes ---\n{}\n--- rkube.log (tail) ---\n{}",
                    serde_json::to_string_pretty(&nodes)?,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// `rkube image load --profile <name> <path>`; fails with its output.
    pub fn load_image(&self, path: &Path) -> Result<()> {
        let path = path.to_str().context("image path is not UTF-8")?;
        let out = self.rkube(&["image", "load", "--profile", &self.name, path]);
        if !out.status.success() {
            bail!("rkube image load {path} failed: {}", describe(&out));
        }
        Ok(())
    }

    /// The last `n` lines of `profiles/<name>/containerd.log`.
    pub fn containerd_log_tail(&self, n: usize) -> String {
        let text =
            std::fs::read_to_string(self.profile_dir().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// What to print when a pod misbehaves: `kubectl describe pod`, the
    /// pod's events, and the tails of rkube.log and containerd.log.
    pub fn pod_diagnostics(&self, name: &str) -> String {
        let text = |out: Output| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let field = format!("involvedObject.name={name}");
        format!(
            "--- kubectl describe pod {name} ---\n{}\n--- events of {name} ---\n{}\n\
             --- rkube.log (tail) ---\n{}\n--- containerd.log (tail) ---\n{}",
            text(self.kubectl(&["describe", "pod", name])).trim_end(),
            text(self.kubectl(&["get", "events", "--field-selector", &field])).trim_end(),
            self.log_tail(30),
            self.containerd_log_tail(10)
        )
    }
}

/// `status.phase` of a pod ("" when absent).
pub fn pod_phase(pod: &serde_json::Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

/// The status of condition `kind` of a pod ("True", "False", ...).
pub fn pod_condition<'a>(pod: &'a serde_json::Value, kind: &str) -> Option<&'a str> {
    object_condition(pod, kind)
}

/// The status of condition `kind` in `status.conditions` of any object.
pub fn object_condition<'a>(obj: &'a serde_json::Value, kind: &str) -> Option<&'a str> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["status"]
        .as_str()
}

/// The entry for container `name` in `status.containerStatuses` (or in
/// `status.initContainerStatuses` when `init`).
pub fn container_status<'a>(
    pod: &'a serde_json::Value,
    name: &str,
    init: bool,
) -> Option<&'a serde_json::Value> {
    let list = if init {
        "initContainerStatuses"
    } else {
        "containerStatuses"
    };
    pod["status"][list]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

/// Waits until `port` can be bound on 0.0.0.0 again (after its owner was
/// killed: a multi-threaded process may still hold its sockets for a moment
/// after /proc shows it as a zombie). Returns how long that took, or `None`
/// if the port stayed busy for `timeout`.
pub fn wait_port_free(port: u16, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    eventually(timeout, || TcpListener::bind(("0.0.0.0", port)).is_ok()).then(|| started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().unwrap();
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn current_process_is_alive_and_bogus_pid_is_not() {
        assert!(alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
    }

    #[test]
    fn eventually_times_out() {
        assert!(!eventually(Duration::from_millis(150), || false));
        assert!(eventually(Duration::from_millis(150), || true));
    }

    #[test]
    fn pod_json_helpers() {
        let pod = serde_json::json!({"status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "a", "restartCount": 2}],
            "initContainerStatuses": [{"name": "i", "restartCount": 0}],
        }});
        assert_eq!(pod_phase(&pod), "Running");
        assert_eq!(pod_condition(&pod, "Ready"), Some("False"));
        assert_eq!(pod_condition(&pod, "Initialized"), None);
        assert_eq!(
            container_status(&pod, "a", false).unwrap()["restartCount"],
            2
        );
        assert!(container_status(&pod, "a", true).is_none());
        assert!(container_status(&pod, "i", true).is_some());
        assert_eq!(pod_phase(&serde_json::json!({})), "");
    }
}
