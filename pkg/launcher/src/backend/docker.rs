//! The docker runtime (`--container-runtime=docker`): rkube's dockershim
//! ([`rkube_dockershim`]) served inside the rkube daemon on
//! `<profile>/docker/dockershim.sock`, in front of the profile's own
//! dockerd (state under `<profile>/docker`, started detached so pods
//! outlive rkube, `--live-restore` so they outlive dockerd's restarts too)
//! or of an existing dockerd given by `--docker-host`/`DOCKER_HOST`.
//! `rkube stop` stops the profile's dockerd; its containers keep running.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rkube_dockershim::{Dockerd, DockerdOptions, ShimConfig};
use rkube_runtime::ImageSummary;

use super::{Backend, Error, Result};
use crate::profile::{Profile, ProfileConfig};

/// `DOCKER_HOST` as the dockerd a docker profile should use, unless it was
/// set by `rkube docker-env` (which also sets `RKUBE_ACTIVE_DOCKERD`): then
/// it names a profile's own dockerd, not one the user runs.
pub fn docker_host_from_env() -> Option<String> {
    if std::env::var_os("RKUBE_ACTIVE_DOCKERD").is_some() {
        return None;
    }
    std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty())
}

/// How long serving gets to wind down when the daemon stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Directory of the profile's dockerd and shim.
pub fn dir(profile: &Profile) -> PathBuf {
    profile.dir().join("docker")
}

/// The socket of the profile's own dockerd (what `rkube docker-env` prints).
pub fn own_socket(profile: &Profile) -> PathBuf {
    DockerdOptions::new(dir(profile)).socket()
}

/// The docker runtime of a profile.
pub struct Docker {
    profile: Profile,
    config: ProfileConfig,
    running: Option<rkube_dockershim::Running>,
}

fn shim_error(e: rkube_dockershim::Error) -> Error {
    Error::Docker(e)
}

impl Docker {
    /// The docker runtime of `profile` with its settings (nothing runs yet).
    pub fn new(profile: &Profile, config: &ProfileConfig) -> Self {
        Self {
            profile: profile.clone(),
            config: config.clone(),
            running: None,
        }
    }

    /// The dockerd socket recorded in the profile (`--docker-host`, or
    /// `DOCKER_HOST` at the `rkube start` that chose docker), unless it is
    /// the profile's own.
    fn external_socket(&self) -> Result<Option<PathBuf>> {
        let given = self.config.docker_host.clone().filter(|h| !h.is_empty());
        let Some(host) = given else {
            return Ok(None);
        };
        let path = rkube_cri::socket_path(&host).map_err(|_| {
            Error::Config(format!(
                "--docker-host {host:?}: rkube talks to dockerd over a unix socket; give unix:///path/to/docker.sock"
            ))
        })?;
        Ok((path != own_socket(&self.profile)).then_some(path))
    }

    /// The profile's own dockerd with its registry settings.
    fn dockerd(&self) -> Result<Dockerd> {
        let mut opts = DockerdOptions::new(dir(&self.profile));
        let mirrors = self.config.mirrors().map_err(Error::Config)?;
        for m in &mirrors {
            if m.host == "docker.io" {
                opts.docker_io_mirrors.extend(m.endpoints.iter().cloned());
            }
            for e in &m.endpoints {
                if let Some(rest) = e.strip_prefix("http://") {
                    opts.insecure_registries
                        .push(rest.split('/').next().unwrap_or(rest).to_string());
                }
            }
        }
        opts.insecure_registries
            .extend(self.config.insecure_registries.iter().cloned());
        Ok(Dockerd::new(opts))
    }

    /// The dockerd socket in use.
    fn docker_socket(&self) -> Result<PathBuf> {
        Ok(match self.external_socket()? {
            Some(s) => s,
            None => own_socket(&self.profile),
        })
    }

    fn settings(&self) -> Result<ShimConfig> {
        let mut c = ShimConfig::new(&dir(&self.profile), &self.docker_socket()?);
        c.cni_conf_dir = self.profile.cni_conf_dir();
        c.pause_image = rkube_image::PAUSE_IMAGE.to_string();
        c.registries = rkube_imagestore::Registries {
            mirrors: self.config.mirrors().map_err(Error::Config)?,
            insecure: self.config.insecure_registries.clone(),
        };
        if rkube_host::which("crun").is_some() && self.external_socket()?.is_none() {
            c.handlers.push("crun".into());
        }
        Ok(c)
    }

    async fn client(&self) -> Result<bollard::Docker> {
        rkube_dockershim::connect(&self.docker_socket()?)
            .await
            .map_err(shim_error)
    }

    /// Removes every pod through CRI (CNI releases the addresses), served
    /// on a side socket as the daemon is stopped.
    async fn remove_pods(&self) {
        let mut cfg = match self.settings() {
            Ok(cfg) => cfg,
            Err(e) => return tracing::warn!("{e}"),
        };
        cfg.socket = dir(&self.profile).join("dockershim-delete.sock");
        let running = match rkube_dockershim::serve(cfg).await {
            Ok(running) => running,
            Err(e) => return tracing::warn!("cannot serve the dockershim to remove pods: {e}"),
        };
        let socket = running.socket().to_path_buf();
        match tokio::time::timeout(
            Duration::from_secs(60),
            rkube_runtime::cri::remove_all_sandboxes(&socket),
        )
        .await
        {
            Ok(Ok(n)) => tracing::info!(pods = n, "removed pod sandboxes"),
            Ok(Err(e)) => tracing::warn!("removing pod sandboxes: {e}"),
            Err(_) => tracing::warn!("removing pod sandboxes timed out"),
        }
        running.shutdown().await;
        let _ = std::fs::remove_file(&socket);
    }
}

#[async_trait::async_trait]
impl Backend for Docker {
    async fn start(&mut self) -> Result<()> {
        if self.external_socket()?.is_none() {
            self.dockerd()?.start().await.map_err(shim_error)?;
        }
        let running = rkube_dockershim::serve(self.settings()?)
            .await
            .map_err(shim_error)?;
        self.running = Some(running);
        Ok(())
    }

    fn cri_socket(&self) -> PathBuf {
        match &self.running {
            Some(r) => r.socket().to_path_buf(),
            None => dir(&self.profile).join("dockershim.sock"),
        }
    }

    async fn version(&self) -> Result<String> {
        let v = self
            .client()
            .await?
            .version()
            .await
            .map_err(|e| shim_error(e.into()))?;
        Ok(format!(
            "{}://{}",
            rkube_dockershim::RUNTIME_NAME,
            v.version.unwrap_or_default()
        ))
    }

    async fn import_image(&self, path: &Path) -> Result<Vec<String>> {
        let names = rkube_dockershim::load_images(&self.client().await?, path)
            .await
            .map_err(shim_error)?;
        if names.is_empty() {
            return Err(rkube_runtime::Error::NoImages(path.into()).into());
        }
        Ok(names)
    }

    async fn list_images(&self) -> Result<Vec<ImageSummary>> {
        let images = rkube_dockershim::list_images(&self.client().await?)
            .await
            .map_err(shim_error)?;
        Ok(images
            .into_iter()
            .map(|i| ImageSummary {
                id: i.id,
                repo_tags: i.repo_tags,
                repo_digests: i.repo_digests,
                size: i.size.max(0) as u64,
            })
            .collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        match rkube_dockershim::remove_image(&self.client().await?, reference).await {
            Err(rkube_dockershim::Error::NotFound(_)) => {
                Err(rkube_runtime::Error::ImageNotFound(reference.into()).into())
            }
            other => other.map_err(shim_error),
        }
    }

    async fn ensure_pause_image(&self, scratch: &Path) -> Result<()> {
        let docker = self.client().await?;
        if docker.inspect_image(rkube_image::PAUSE_IMAGE).await.is_ok() {
            return Ok(());
        }
        let archive = scratch.join("pause.tar");
        rkube_image::write_pause_archive(&archive).map_err(Error::PauseImage)?;
        self.import_image(&archive).await?;
        let _ = std::fs::remove_file(&archive);
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(running) = self.running.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, running.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("the dockershim did not stop serving in time");
            }
        }
        // `rkube stop` stops the profile's dockerd; with --live-restore its
        // containers keep running and the next start adopts them.
        if self.external_socket()?.is_none() {
            self.dockerd()?.stop().map_err(shim_error)?;
        }
        Ok(())
    }

    async fn delete(&mut self) -> Result<()> {
        let external = self.external_socket()?.is_some();
        let dockerd = self.dockerd()?;
        if !external {
            if let Err(e) = dockerd.start().await {
                tracing::warn!("cannot start dockerd to remove pods: {e}");
            }
        }
        self.remove_pods().await;
        if external {
            let shim = dir(&self.profile);
            rkube_host::mount::unmount_under(&shim)?;
            let _ = std::fs::remove_dir_all(&shim);
            return Ok(());
        }
        dockerd.delete().map_err(shim_error)
    }
}
