//! A profile's own dockerd: Debian's daemon with its data root, exec root,
//! pid file and API socket under `<profile>/docker`, no iptables rules, no
//! default bridge, the cgroupfs driver, `--live-restore` (containers keep
//! running while dockerd restarts) and crun as a second runtime when it is
//! installed. Started detached from rkube, so pods outlive a crash of
//! rkube; a running one is adopted at the next start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rkube_host::procfs::has_flag;
use rkube_host::{path, pidfile, process, Procfs};

use crate::{Error, Result};

/// How long dockerd gets to answer after it is started.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long dockerd gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// How many lines of dockerd.log an error shows.
const TAIL_LINES: usize = 20;

/// Settings of a profile's dockerd.
#[derive(Clone, Debug, Default)]
pub struct DockerdOptions {
    /// Its directory (`<profile>/docker`).
    pub dir: PathBuf,
    /// Mirrors of docker.io (dockerd's `registry-mirrors` apply to
    /// docker.io only).
    pub docker_io_mirrors: Vec<String>,
    /// Registries dockerd may reach over plain HTTP.
    pub insecure_registries: Vec<String>,
}

impl DockerdOptions {
    /// Options for the dockerd in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Default::default()
        }
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn exec_root(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("dockerd.pid")
    }

    /// dockerd's log.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("dockerd.log")
    }

    fn config_file(&self) -> PathBuf {
        self.dir.join("daemon.json")
    }

    /// dockerd's command line (without the program).
    pub fn args(&self, crun: Option<&Path>) -> Vec<String> {
        let p = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut args = vec![
            "--config-file".into(),
            p(self.config_file()),
            "--data-root".into(),
            p(self.data_root()),
            "--exec-root".into(),
            p(self.exec_root()),
            "--pidfile".into(),
            p(self.pid_file()),
            "--host".into(),
            format!("unix://{}", self.socket().display()),
            "--iptables=false".into(),
            "--ip-masq=false".into(),
            "--bridge=none".into(),
            "--userland-proxy=false".into(),
            "--live-restore".into(),
            "--exec-opt".into(),
            "native.cgroupdriver=cgroupfs".into(),
            // This host forbids a negative oom_score_adj (dockerd's default
            // for itself is -500).
            "--oom-score-adjust=0".into(),
            "--log-level=warn".into(),
        ];
        if let Some(crun) = crun {
            args.push("--add-runtime".into());
            args.push(format!("crun={}", crun.display()));
        }
        for m in &self.docker_io_mirrors {
            args.push("--registry-mirror".into());
            args.push(m.clone());
        }
        for r in &self.insecure_registries {
            args.push("--insecure-registry".into());
            args.push(r.clone());
        }
        args
    }
}

/// A profile's dockerd.
#[derive(Clone, Debug)]
pub struct Dockerd {
    opts: DockerdOptions,
    procfs: Procfs,
}

/// A Docker API client on `socket`, speaking the daemon's API version.
pub async fn connect(socket: &Path) -> Result<bollard::Docker> {
    let docker = bollard::Docker::connect_with_unix(
        &socket.to_string_lossy(),
        120,
        bollard::API_DEFAULT_VERSION,
    )?;
    Ok(docker.negotiate_version().await?)
}

impl Dockerd {
    /// The dockerd of `opts` (nothing is started yet).
    pub fn new(opts: DockerdOptions) -> Self {
        Self {
            opts,
            procfs: Procfs::default(),
        }
    }

    /// The options.
    pub fn options(&self) -> &DockerdOptions {
        &self.opts
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.opts.socket()
    }

    /// Checks that dockerd and the programs it runs are installed.
    pub fn check_host() -> Result<()> {
        for (program, package) in [
            ("dockerd", "docker.io"),
            ("containerd", "containerd"),
            ("runc", "runc"),
        ] {
            if rkube_host::which(program).is_none() {
                return Err(Error::Missing(program.into(), package));
            }
        }
        Ok(())
    }

    /// The pid of the dockerd serving this profile, if one runs.
    pub fn running_pid(&self) -> Option<i32> {
        let root = self.opts.data_root().to_string_lossy().into_owned();
        self.procfs
            .find(|a| has_flag(a, "dockerd", "--data-root", &root))
            .into_iter()
            .next()
    }

    /// Adopts the profile's running dockerd or starts one detached, and
    /// waits until it answers.
    pub async fn start(&self) -> Result<()> {
        let log = self.opts.log_file();
        let socket = self.socket();
        if let Some(pid) = self.running_pid() {
            tracing::info!(pid, "reusing running dockerd");
            return self.wait_ready(None, 0).await;
        }
        Self::check_host()?;
        std::fs::create_dir_all(&self.opts.dir).map_err(Error::io("create", &self.opts.dir))?;
        let config = self.opts.config_file();
        std::fs::write(&config, "{}\n").map_err(Error::io("write", &config))?;
        pidfile::remove(&socket)?;
        pidfile::remove(&self.opts.pid_file())?;
        let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let exe = rkube_host::which("dockerd").unwrap_or_else(|| "dockerd".into());
        let crun = rkube_host::which("crun");
        let mut cmd = Command::new(&exe);
        cmd.args(self.opts.args(crun.as_deref()))
            .env("PATH", path::search_path())
            .current_dir(&self.opts.dir);
        let child = process::spawn_detached(cmd, &log)?;
        tracing::info!(pid = child.id(), socket = %socket.display(), "started dockerd");
        self.wait_ready(Some(child), offset).await
    }

    async fn wait_ready(&self, mut child: Option<std::process::Child>, offset: u64) -> Result<()> {
        let log = self.opts.log_file();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(Error::Daemon {
                    message: format!("exited ({status})"),
                    tail: process::tail(&log, offset, TAIL_LINES),
                    log,
                });
            }
            if self.answers().await {
                if let Some(mut c) = child {
                    // Reap it whenever it exits, so no zombie is left behind.
                    std::thread::spawn(move || c.wait());
                }
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                if let Some(mut c) = child {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(Error::Daemon {
                    message: format!("did not answer within {}s", START_TIMEOUT.as_secs()),
                    tail: process::tail(&log, offset, TAIL_LINES),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether dockerd answers a ping.
    pub async fn answers(&self) -> bool {
        let socket = self.socket();
        if !socket.exists() {
            return false;
        }
        match connect(&socket).await {
            Ok(d) => d.ping().await.is_ok(),
            Err(_) => false,
        }
    }

    /// `docker://<version>` of the running daemon.
    pub async fn version(&self) -> Result<String> {
        let v = connect(&self.socket()).await?.version().await?;
        Ok(format!(
            "{}://{}",
            crate::RUNTIME_NAME,
            v.version.unwrap_or_default()
        ))
    }

    /// Stops dockerd (containers keep running: `--live-restore`).
    pub fn stop(&self) -> Result<()> {
        if let Some(pid) = self.running_pid() {
            process::terminate(&self.procfs, &[pid], STOP_GRACE)?;
        }
        Ok(())
    }

    /// Stops dockerd and what is left of its containers, unmounts and
    /// removes its directory. Pods must have been removed through CRI
    /// before (so CNI released their addresses).
    pub fn delete(&self) -> Result<()> {
        self.stop()?;
        let exec_root = self.opts.exec_root().to_string_lossy().into_owned();
        // dockerd's containerd and its shims run with paths under the exec root.
        let left = self
            .procfs
            .find(|a| a.iter().any(|x| x.contains(exec_root.as_str())));
        if !left.is_empty() {
            tracing::info!(?left, "killing dockerd's leftover containerd and shims");
            process::terminate(&self.procfs, &left, Duration::from_secs(2))?;
        }
        rkube_host::mount::unmount_under(&self.opts.dir)?;
        match std::fs::remove_dir_all(&self.opts.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove", &self.opts.dir)(e))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_keeps_everything_under_the_profile() {
        let mut o = DockerdOptions::new("/p/docker");
        o.docker_io_mirrors = vec!["http://127.0.0.1:5000".into()];
        o.insecure_registries = vec!["reg.local:5000".into()];
        let args = o.args(Some(Path::new("/usr/bin/crun"))).join(" ");
        for want in [
            "--data-root /p/docker/data",
            "--exec-root /p/docker/run",
            "--host unix:///p/docker/docker.sock",
            "--iptables=false",
            "--bridge=none",
            "--live-restore",
            "--oom-score-adjust=0",
            "--add-runtime crun=/usr/bin/crun",
            "--registry-mirror http://127.0.0.1:5000",
            "--insecure-registry reg.local:5000",
        ] {
            assert!(args.contains(want), "{want} missing from {args}");
        }
    }
}
