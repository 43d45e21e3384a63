//! A profile's own containerd: Debian's daemon run with the configuration
//! of [`crate::config`], detached from rkube so pods outlive a crash or
//! restart of rkube. [`Containerd::start`] adopts a containerd that already
//! serves the profile (recorded in `containerd.pid`, or found by its
//! `--config` argument) and otherwise starts one and waits for its CRI
//! service. [`Containerd::stop`] stops the daemon but leaves the shims, so
//! containers keep running for the next start; [`Containerd::delete`]
//! removes every pod, kills what is left of them and unmounts and removes
//! the containerd directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rkube_host::procfs::has_flag;
use rkube_host::{mount, path, pidfile, process, PidFile, Procfs};

use crate::config::{CgroupDriver, ContainerdOptions, HostInfo};
use crate::images::ImageSummary;
use crate::{cri, images, Error, Result};

/// How long containerd gets to answer CRI after it is started.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long containerd gets to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How many lines of containerd.log an error shows.
const TAIL_LINES: usize = 20;

/// A profile's containerd.
#[derive(Clone, Debug)]
pub struct Containerd {
    opts: ContainerdOptions,
    host: HostInfo,
    procfs: Procfs,
}

impl Containerd {
    /// A containerd for `opts` on this host (nothing is started yet).
    pub fn new(opts: ContainerdOptions) -> Self {
        Self {
            opts,
            host: HostInfo::detect(),
            procfs: Procfs::default(),
        }
    }

    /// Checks that containerd, its shim, ctr and runc are installed.
    pub fn check_host() -> Result<()> {
        crate::programs::check_host()
    }

    /// The options.
    pub fn options(&self) -> &ContainerdOptions {
        &self.opts
    }

    /// The CRI socket (`dir/containerd.sock`).
    pub fn socket(&self) -> PathBuf {
        self.opts.socket()
    }

    /// The cgroup driver containerd uses; the node agent must use the same.
    pub fn cgroup_driver(&self) -> CgroupDriver {
        self.opts
            .cgroup_driver
            .unwrap_or_else(|| self.host.cgroup_driver())
    }

    fn config_arg(&self) -> String {
        self.opts.config_file().to_string_lossy().into_owned()
    }

    /// The pid of the containerd serving this profile, if one runs: the one
    /// in the pid file when it still is ours, else one found by its config.
    pub fn running_pid(&self) -> Result<Option<i32>> {
        let config = self.config_arg();
        let ours = |args: &[String]| has_flag(args, "containerd", "--config", &config);
        if let Some(pid) = PidFile::read(&self.opts.pid_file())?.map(|f| f.pid) {
            if self.procfs.is_alive(pid) && self.procfs.args(pid).is_some_and(|a| ours(&a)) {
                return Ok(Some(pid));
            }
        }
        Ok(self.procfs.find(ours).into_iter().next())
    }

    /// Writes the configuration, then reuses the profile's running
    /// containerd or starts one detached, and waits until CRI answers.
    pub async fn start(&self) -> Result<()> {
        self.opts.write(&self.host)?;
        let pid_file = self.opts.pid_file();
        let log = self.opts.log_file();
        let socket = self.socket();
        if let Some(pid) = self.running_pid()? {
            tracing::info!(pid, "reusing running containerd");
            let exe = rkube_host::which("containerd").unwrap_or_else(|| "containerd".into());
            PidFile::new(pid, &exe).write(&pid_file)?;
            if cri::wait_ready(&socket, START_TIMEOUT).await {
                return Ok(());
            }
            return Err(Error::NotReady {
                secs: START_TIMEOUT.as_secs(),
                log: log.clone(),
                tail: process::tail(&log, 0, TAIL_LINES),
            });
        }
        Self::check_host()?;
        let exe = rkube_host::which("containerd").unwrap_or_else(|| "containerd".into());
        for s in [
            socket.clone(),
            PathBuf::from(format!("{}.ttrpc", socket.display())),
        ] {
            pidfile::remove(&s)?;
        }
        let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(&exe);
        cmd.arg("--config")
            .arg(self.opts.config_file())
            .env("PATH", path::search_path())
            .current_dir(&self.opts.dir);
        let mut child = process::spawn_detached(cmd, &log)?;
        let pid = child.id() as i32;
        PidFile::new(pid, &exe).write(&pid_file)?;
        tracing::info!(pid, socket = %socket.display(), "started containerd");
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let failure = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Error::Exited {
                    status: status.to_string(),
                    log: log.clone(),
                    tail: process::tail(&log, offset, TAIL_LINES),
                };
            }
            if cri::answers(&socket).await {
                // Reap it whenever it exits, so no zombie is left behind.
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break Error::NotReady {
                    secs: START_TIMEOUT.as_secs(),
                    log: log.clone(),
                    tail: process::tail(&log, offset, TAIL_LINES),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        pidfile::remove(&pid_file)?;
        Err(failure)
    }

    /// `containerd://<version>` from CRI `Version`.
    pub async fn version(&self) -> Result<String> {
        cri::version(&self.socket()).await
    }

    /// Imports a docker-archive, OCI archive or OCI layout directory;
    /// returns the names imported.
    pub async fn import_image(&self, path: &Path) -> Result<Vec<String>> {
        images::import(&self.socket(), path).await
    }

    /// Images, via CRI `ListImages`.
    pub async fn list_images(&self) -> Result<Vec<ImageSummary>> {
        cri::list_images(&self.socket()).await
    }

    /// Removes an image, via CRI `RemoveImage`.
    pub async fn remove_image(&self, reference: &str) -> Result<()> {
        cri::remove_image(&self.socket(), reference).await
    }

    /// Stops the daemon (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and
    /// removes its pid file. Shims and containers keep running.
    pub fn stop(&self) -> Result<()> {
        if let Some(pid) = self.running_pid()? {
            tracing::info!(pid, "stopping containerd");
            process::terminate(&self.procfs, &[pid], STOP_GRACE)?;
        }
        Ok(pidfile::remove(&self.opts.pid_file())?)
    }

    /// Removes everything: every pod (through CRI when containerd answers),
    /// the daemon, leftover runc containers and shims of this profile, the
    /// mounts under the containerd directory, and the directory itself.
    /// Nothing outside the directory is touched except those processes.
    pub async fn delete(&self) -> Result<()> {
        let socket = self.socket();
        if self.running_pid()?.is_some() && cri::answers(&socket).await {
            match tokio::time::timeout(Duration::from_secs(60), cri::remove_all_sandboxes(&socket))
                .await
            {
                Ok(Ok(n)) => tracing::info!(pods = n, "removed pod sandboxes"),
                Ok(Err(e)) => tracing::warn!(error = %e, "removing pod sandboxes"),
                Err(_) => tracing::warn!("removing pod sandboxes timed out"),
            }
        }
        self.stop()?;
        self.kill_runc_containers();
        let sock = socket.to_string_lossy().into_owned();
        let shims = self
            .procfs
            .find(|a| has_flag(a, "containerd-shim-runc-v2", "-address", &sock));
        if !shims.is_empty() {
            tracing::info!(?shims, "killing leftover shims");
            process::terminate(&self.procfs, &shims, Duration::from_secs(2))?;
        }
        mount::unmount_under(&self.opts.dir)?;
        match std::fs::remove_dir_all(&self.opts.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove", &self.opts.dir)(e))
            }
            _ => Ok(()),
        }
    }

    /// `runc delete --force` of every container in this profile's runc root.
    fn kill_runc_containers(&self) {
        let root = self.opts.runc_root();
        let Ok(namespaces) = std::fs::read_dir(&root) else {
            return;
        };
        let runc = rkube_host::which("runc").unwrap_or_else(|| "runc".into());
        for ns in namespaces.filter_map(|e| e.ok()).map(|e| e.path()) {
            let Ok(ids) = std::fs::read_dir(&ns) else {
                continue;
            };
            for id in ids.filter_map(|e| e.ok()).map(|e| e.file_name()) {
                let status = Command::new(&runc)
                    .arg("--root")
                    .arg(&ns)
                    .args(["delete", "--force"])
                    .arg(&id)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
                tracing::debug!(id = ?id, ?status, "runc delete --force");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_running_containerd_for_a_fresh_profile() {
        let dir = tempfile::tempdir().unwrap();
        let c = Containerd::new(ContainerdOptions::new(dir.path().join("containerd"), "p"));
        assert_eq!(c.running_pid().unwrap(), None);
        c.stop().unwrap();
        assert_eq!(c.socket(), dir.path().join("containerd/containerd.sock"));
    }
}
