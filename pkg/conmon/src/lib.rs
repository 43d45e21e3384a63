//! Runs containers the way CRI-O does: each container under its own conmon
//! process, which calls the OCI runtime (runc or crun), holds the exit
//! code (`<exit dir>/<id>`), writes the CRI log file and serves the attach
//! socket. conmon daemonizes, so containers outlive rkube. The OCI
//! runtime's other verbs (start, state, kill, delete, update, exec) are
//! run directly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

mod attach;
mod create;
mod exec;

pub use attach::{AttachIo, Pipe};
pub use exec::{BoxRead, BoxWrite, ExecProcess, Resizer};

/// Errors of running containers. Messages carry what the runtime said.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OCI runtime or conmon failed.
    #[error("{program} {verb} failed: {message}")]
    Runtime {
        /// runc, crun or conmon.
        program: String,
        /// The verb.
        verb: String,
        /// Its error output.
        message: String,
    },
    /// A command ran longer than allowed.
    #[error("command timed out after {secs}s")]
    Timeout {
        /// The limit.
        secs: u64,
    },
    /// A file system or process operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl AsRef<Path>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

/// An OCI runtime binary with its state root.
#[derive(Clone, Debug)]
pub struct OciRuntime {
    /// `runc` or `crun`.
    pub name: String,
    /// The binary.
    pub path: PathBuf,
    /// Its `--root` state directory.
    pub root: PathBuf,
    /// More global options (e.g. crun's `--cgroup-manager=disabled`).
    pub global_args: Vec<String>,
}

/// Prepares a "hybrid" cgroup host (v1 controllers plus a cgroup2 mount)
/// for crun: crun 1.x refuses to run while the cgroup2 mount owns
/// controllers of its own (e.g. hugetlb left unmounted in v1). Such
/// controllers, unused in v2, are mounted as v1 hierarchies under
/// /sys/fs/cgroup/<name>, as a systemd hybrid host normally has them.
/// Returns the controllers moved.
pub fn prepare_hybrid_cgroups() -> Result<Vec<String>> {
    let unified = Path::new("/sys/fs/cgroup/unified");
    let Ok(controllers) = std::fs::read_to_string(unified.join("cgroup.controllers")) else {
        return Ok(Vec::new());
    };
    let subtree =
        std::fs::read_to_string(unified.join("cgroup.subtree_control")).unwrap_or_default();
    let mut moved = Vec::new();
    for c in controllers.split_whitespace() {
        if subtree.split_whitespace().any(|s| s == c) {
            continue; // in use in v2: leave it
        }
        let dir = Path::new("/sys/fs/cgroup").join(c);
        std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        nix::mount::mount(
            Some("cgroup"),
            &dir,
            Some("cgroup"),
            nix::mount::MsFlags::empty(),
            Some(c),
        )
        .map_err(|e| Error::io("mount the v1 cgroup hierarchy at", &dir)(e.into()))?;
        moved.push(c.to_string());
    }
    Ok(moved)
}

/// conmon and the directories it shares with the runtime.
#[derive(Clone, Debug)]
pub struct Conmon {
    /// The conmon binary.
    pub path: PathBuf,
    /// Where conmon writes exit codes.
    pub exits_dir: PathBuf,
    /// Where conmon makes attach sockets.
    pub socket_dir: PathBuf,
}

/// What [`Conmon::create`] needs.
pub struct CreateOptions<'a> {
    /// Container ID.
    pub id: &'a str,
    /// Bundle directory holding config.json.
    pub bundle: &'a Path,
    /// CRI log file.
    pub log_path: &'a Path,
    /// Allocate a terminal.
    pub terminal: bool,
    /// Keep a stdin pipe.
    pub stdin: bool,
    /// Close stdin after the first attach ends.
    pub stdin_once: bool,
    /// The OCI runtime.
    pub runtime: &'a OciRuntime,
    /// conmon's pid file.
    pub conmon_pidfile: &'a Path,
    /// The container's pid file.
    pub container_pidfile: &'a Path,
    /// Cgroup for conmon itself (unused with cgroupfs: conmon stays in rkube's).
    pub cgroup_parent: Option<&'a str>,
}

/// Status of a container as the runtime reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Exited.
    Stopped,
}

/// `runtime state` output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// Status.
    pub status: Status,
    /// Init process ID (0 once stopped).
    pub pid: i32,
}

/// Output of a finished exec.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Exit code (128+n when killed by signal n).
    pub exit_code: i32,
}

/// Exit code of a process status: the code, or 128 + the signal number.
pub(crate) fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn not_found(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("does not exist") || s.contains("not found") || s.contains("no such file")
}

impl OciRuntime {
    pub(crate) fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.path);
        c.arg("--root").arg(&self.root);
        c.args(&self.global_args);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.kill_on_drop(true);
        c
    }

    async fn run(
        &self,
        verb: &str,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<std::process::Output> {
        let mut c = self.command();
        c.arg(verb).args(args);
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().map_err(Error::io("run", &self.path))?;
        if let (Some(data), Some(mut s)) = (stdin, child.stdin.take()) {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(&data).await;
        }
        child
            .wait_with_output()
            .await
            .map_err(Error::io("run", &self.path))
    }

    fn fail(&self, verb: &str, out: &std::process::Output) -> Error {
        Error::Runtime {
            program: self.name.clone(),
            verb: verb.to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }
    }

    /// Starts a created container.
    pub async fn start(&self, id: &str) -> Result<()> {
        let out = self.run("start", &[id], None).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.fail("start", &out))
        }
    }

    /// The runtime's view of a container; `None` if it does not know it.
    pub async fn state(&self, id: &str) -> Result<Option<State>> {
        let out = self.run("state", &[id], None).await?;
        if !out.status.success() {
            if not_found(&String::from_utf8_lossy(&out.stderr)) {
                return Ok(None);
            }
            return Err(self.fail("state", &out));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| Error::Runtime {
                program: self.name.clone(),
                verb: "state".into(),
                message: format!("unreadable output: {e}"),
            })?;
        let status = match v.get("status").and_then(|s| s.as_str()).unwrap_or("") {
            "created" | "creating" => Status::Created,
            "running" => Status::Running,
            "paused" | "pausing" => Status::Paused,
            _ => Status::Stopped,
        };
        let pid = v.get("pid").and_then(|p| p.as_i64()).unwrap_or(0) as i32;
        Ok(Some(State { status, pid }))
    }

    /// Sends `signal` to the container's init (or all its processes).
    pub async fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<()> {
        let sig = (signal as i32).to_string();
        let mut args = Vec::new();
        if all {
            args.push("--all");
        }
        args.push(id);
        args.push(&sig);
        let out = self.run("kill", &args, None).await?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
        if not_found(&err)
            || err.contains("not running")
            || err.contains("process already finished")
            || err.contains("no such process")
            || err.contains("container not running")
        {
            return Ok(());
        }
        Err(self.fail("kill", &out))
    }

    /// Deletes the runtime's state of a container.
    pub async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut args = Vec::new();
        if force {
            args.push("--force");
        }
        args.push(id);
        let out = self.run("delete", &args, None).await?;
        if out.status.success() || not_found(&String::from_utf8_lossy(&out.stderr)) {
            Ok(())
        } else {
            Err(self.fail("delete", &out))
        }
    }

    /// Changes the resources of a running container.
    pub async fn update(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let json = serde_json::to_vec(resources).unwrap_or_default();
        let out = self
            .run("update", &["--resources", "-", id], Some(json))
            .await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.fail("update", &out))
        }
    }

    /// Runs a command in the container and collects its output.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput> {
        let mut c = self.command();
        c.arg("exec").arg(id).args(cmd);
        let child = c.spawn().map_err(Error::io("run", &self.path))?;
        let fut = child.wait_with_output();
        let out = match timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                // Dropping the future kills the runtime's exec (kill_on_drop);
                // the process inside is killed with it as runc exec forwards.
                Err(_) => return Err(Error::Timeout { secs: t.as_secs() }),
            },
            None => fut.await,
        }
        .map_err(Error::io("run", &self.path))?;
        Ok(ExecOutput {
            exit_code: exit_code_of(out.status),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

#[cfg(test)]
mod tests;
