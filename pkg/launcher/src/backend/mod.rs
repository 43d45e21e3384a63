//! The container runtime behind a profile's node, as one interface (the
//! way kind has one `Provider` for docker, podman and nerdctl): a
//! [`Backend`] starts its runtime and waits for CRI, names the CRI socket
//! the node agent uses, loads and lists images for `rkube image`, stops
//! with the daemon and cleans up for `rkube delete`. The launcher picks
//! one with [`for_profile`] and otherwise never asks which runtime it is.
//!
//! Implementations: the bundled cri-o runtime ([`crio`]), a profile's own
//! containerd ([`containerd`]), a runtime already running behind
//! `--cri-socket` ([`external`]) and the docker runtime through rkube's
//! dockershim ([`docker`]).

use std::path::{Path, PathBuf};

use rkube_runtime::ImageSummary;

use crate::profile::{ContainerRuntime, Profile, ProfileConfig};

pub mod containerd;
pub mod crio;
pub mod docker;
pub mod external;

/// Errors of a runtime backend. Messages say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The containerd backend (or a CRI call) failed.
    #[error(transparent)]
    Runtime(#[from] rkube_runtime::Error),
    /// The bundled runtime failed.
    #[error(transparent)]
    Crio(#[from] rkube_crio::Error),
    /// The dockershim or dockerd failed.
    #[error(transparent)]
    Docker(rkube_dockershim::Error),
    /// The bundled runtime's image store failed.
    #[error("cannot {action} {path}")]
    Images {
        /// What was attempted.
        action: &'static str,
        /// The archive or store involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rkube_imagestore::Error,
    },
    /// rkube's pause image could not be written.
    #[error("cannot write the pause image")]
    PauseImage(#[source] rkube_image::Error),
    /// A host operation failed.
    #[error(transparent)]
    Host(#[from] rkube_host::Error),
    /// The profile's settings cannot be used (e.g. a bad registry mirror).
    #[error("{0}")]
    Config(String),
    /// The runtime does not support this operation.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A container runtime serving CRI for a profile's node.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Starts the runtime, or adopts the one already serving the profile,
    /// and waits until its CRI service answers.
    async fn start(&mut self) -> Result<()>;

    /// The CRI socket the node agent talks to.
    fn cri_socket(&self) -> PathBuf;

    /// `<runtime>://<version>`, from CRI `Version`.
    async fn version(&self) -> Result<String> {
        Ok(rkube_runtime::cri::version(&self.cri_socket()).await?)
    }

    /// Imports a docker-archive, OCI archive or OCI layout directory;
    /// returns the names imported.
    async fn import_image(&self, path: &Path) -> Result<Vec<String>>;

    /// The runtime's images.
    async fn list_images(&self) -> Result<Vec<ImageSummary>> {
        Ok(rkube_runtime::cri::list_images(&self.cri_socket()).await?)
    }

    /// Removes an image by name or id (with every name it has).
    async fn remove_image(&self, reference: &str) -> Result<()> {
        Ok(rkube_runtime::cri::remove_image(&self.cri_socket(), reference).await?)
    }

    /// Imports rkube's pause image unless the runtime has it; `scratch` is
    /// a directory for the archive.
    async fn ensure_pause_image(&self, scratch: &Path) -> Result<()> {
        if has_image(&self.cri_socket(), rkube_image::PAUSE_IMAGE).await {
            return Ok(());
        }
        let archive = scratch.join("pause.tar");
        rkube_image::write_pause_archive(&archive).map_err(Error::PauseImage)?;
        self.import_image(&archive).await?;
        let _ = std::fs::remove_file(&archive);
        Ok(())
    }

    /// The daemon is shutting down: stops what the backend runs inside it.
    /// Containers keep running, so pods outlive a restart of rkube.
    async fn stop(&mut self) -> Result<()>;

    /// Removes every pod and the runtime's state under the profile
    /// (`rkube delete`); the daemon is already stopped.
    async fn delete(&mut self) -> Result<()>;
}

/// Whether the runtime on `socket` has `image` (false when it cannot say).
async fn has_image(socket: &Path, image: &str) -> bool {
    let Ok(clients) = rkube_cri::connect(socket) else {
        return false;
    };
    let mut client = clients.image.clone();
    client
        .image_status(rkube_cri::api::ImageStatusRequest {
            image: Some(rkube_cri::api::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .map(|r| r.into_inner().image.is_some())
        .unwrap_or(false)
}

/// The backend a profile's settings choose: the runtime behind
/// `--cri-socket` if given, else the `--container-runtime`.
pub fn for_profile(profile: &Profile, config: &ProfileConfig) -> Result<Box<dyn Backend>> {
    if let Some(endpoint) = &config.cri_socket {
        return Ok(Box::new(external::External::new(endpoint)?));
    }
    Ok(match config.container_runtime {
        ContainerRuntime::CriO => Box::new(crio::Crio::new(profile, config)),
        ContainerRuntime::Containerd => {
            Box::new(containerd::Containerd::with_settings(profile, config)?)
        }
        ContainerRuntime::Docker => Box::new(docker::Docker::new(profile, config)),
    })
}

/// The backends that left state in the profile (containers, mounts, a
/// runtime daemon), whichever runtime the profile uses now.
pub fn with_state(profile: &Profile, config: &ProfileConfig) -> Vec<Box<dyn Backend>> {
    let mut found: Vec<Box<dyn Backend>> = Vec::new();
    if containerd::dir(profile).exists() {
        found.push(Box::new(containerd::Containerd::new(profile)));
    }
    if crio::dir(profile).exists() {
        found.push(Box::new(crio::Crio::new(profile, config)));
    }
    if docker::dir(profile).exists() {
        found.push(Box::new(docker::Docker::new(profile, config)));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settings_choose_the_backend() {
        let home = tempfile::tempdir().unwrap();
        let p = Profile::in_home(home.path(), "dev").unwrap();
        let mut cfg = ProfileConfig::new_default();
        cfg.container_runtime = ContainerRuntime::Containerd;
        cfg.cri_socket = Some("unix:///run/containerd/containerd.sock".into());
        let external = for_profile(&p, &cfg).unwrap();
        assert_eq!(
            external.cri_socket(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        let err = external.import_image(Path::new("a.tar")).await.unwrap_err();
        assert!(err.to_string().contains("--cri-socket"), "{err}");

        cfg.cri_socket = None;
        cfg.container_runtime = ContainerRuntime::Docker;
        assert_eq!(
            for_profile(&p, &cfg).unwrap().cri_socket(),
            p.dir().join("docker/dockershim.sock")
        );
        cfg.docker_host = Some("tcp://127.0.0.1:2375".into());
        let err = for_profile(&p, &cfg)
            .unwrap()
            .start()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("unix:///path/to/docker.sock"), "{err}");
    }

    #[test]
    fn only_runtimes_with_state_are_cleaned_up() {
        let home = tempfile::tempdir().unwrap();
        let p = Profile::in_home(home.path(), "dev").unwrap();
        let cfg = ProfileConfig::new_default();
        assert!(with_state(&p, &cfg).is_empty());
        std::fs::create_dir_all(crio::dir(&p)).unwrap();
        let found = with_state(&p, &cfg);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].cri_socket(), p.dir().join("crio.sock"));
        std::fs::create_dir_all(containerd::dir(&p)).unwrap();
        assert_eq!(with_state(&p, &cfg).len(), 2);
        std::fs::create_dir_all(docker::dir(&p)).unwrap();
        assert_eq!(with_state(&p, &cfg).len(), 3);
    }
}
