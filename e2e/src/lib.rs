//! End-to-end harness: starts a real rkube profile with the prebuilt `rkube`
//! binary and drives it the way users do, through `kubectl`, `curl` and
//! `kube::Client`.
//!
//! Every [`Cluster`] gets its own `RKUBE_HOME`, its own kubeconfig file, its
//! own kubectl cache directory and a free port, so tests run in parallel
//! without sharing state. Dropping a cluster runs `rkube delete` and kills
//! whatever is left. The harness builds nothing: it uses `$RKUBE_BIN`, else
//! `<target>/debug/rkube` (run `cargo build -p rkube` first).

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
    /// Starts profile `name` on a free port with a private `RKUBE_HOME` and
    /// `KUBECONFIG`, and waits until `rkube start` has returned success.
    pub fn start(name: &str) -> Result<Cluster> {
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
        let out = cluster.run_rkube(
            &["start", "--profile", name, "--apiserver-port", &port],
            START_TIMEOUT,
        )?;
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
}
