//! The bundled runtime ([`rkube_crio`], `--container-runtime=cri-o`):
//! served inside the rkube daemon on `<profile>/crio.sock`, state under
//! `<profile>/crio`. Containers run under conmon and outlive the daemon;
//! images live in an on-disk store that `rkube image` reads and writes
//! directly while the daemon runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rkube_crio::CrioConfig;
use rkube_imagestore::ImageStore;
use rkube_runtime::ImageSummary;

use super::{Backend, Error, Result};
use crate::profile::{Profile, ProfileConfig};

/// How long serving gets to wind down when the daemon stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Directory of the profile's bundled runtime.
pub fn dir(profile: &Profile) -> PathBuf {
    CrioConfig::root_in(profile.dir())
}

/// The bundled runtime of a profile.
pub struct Crio {
    profile: Profile,
    config: ProfileConfig,
    running: Option<rkube_crio::Running>,
}

impl Crio {
    /// The bundled runtime of `profile` with its settings (nothing is
    /// served yet).
    pub fn new(profile: &Profile, config: &ProfileConfig) -> Self {
        Self {
            profile: profile.clone(),
            config: config.clone(),
            running: None,
        }
    }

    /// The runtime's settings.
    fn settings(&self) -> Result<CrioConfig> {
        let mut c = CrioConfig::for_profile(self.profile.dir(), &self.config.oci_runtime)?;
        c.cni_conf_dir = self.profile.cni_conf_dir();
        c.pause_image = rkube_image::PAUSE_IMAGE.to_string();
        c.registries = rkube_imagestore::Registries {
            mirrors: self.config.mirrors().map_err(Error::Config)?,
            insecure: self.config.insecure_registries.clone(),
        };
        Ok(c)
    }

    /// The image store, shared on disk with the serving runtime.
    fn images(&self) -> Result<ImageStore> {
        let root = dir(&self.profile).join("images");
        ImageStore::open(&root).map_err(|source| Error::Images {
            action: "open the image store",
            path: root,
            source,
        })
    }

    /// Removes every pod through CRI (containers are killed, CNI releases
    /// the addresses), served on a side socket as the daemon is stopped.
    async fn remove_pods(&self) {
        let mut cfg = match self.settings() {
            Ok(cfg) => cfg,
            Err(e) => return tracing::warn!("{e}"),
        };
        cfg.socket = self.profile.dir().join("crio-delete.sock");
        let running = match rkube_crio::serve(cfg).await {
            Ok(running) => running,
            Err(e) => {
                return tracing::warn!("cannot serve the bundled runtime to remove pods: {e}")
            }
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
impl Backend for Crio {
    async fn start(&mut self) -> Result<()> {
        let running = rkube_crio::serve(self.settings()?).await?;
        self.running = Some(running);
        Ok(())
    }

    fn cri_socket(&self) -> PathBuf {
        match &self.running {
            Some(r) => r.socket().to_path_buf(),
            None => CrioConfig::socket_in(self.profile.dir()),
        }
    }

    async fn import_image(&self, path: &Path) -> Result<Vec<String>> {
        let images = self
            .images()?
            .import_archive(path)
            .map_err(|source| Error::Images {
                action: "import",
                path: path.to_path_buf(),
                source,
            })?;
        if images.is_empty() {
            return Err(rkube_runtime::Error::NoImages(path.into()).into());
        }
        Ok(images
            .into_iter()
            .flat_map(|i| {
                if i.repo_tags.is_empty() {
                    vec![i.id]
                } else {
                    i.repo_tags
                }
            })
            .collect())
    }

    async fn list_images(&self) -> Result<Vec<ImageSummary>> {
        let store = self.images()?;
        let images = store.list().map_err(|source| Error::Images {
            action: "list images in",
            path: store.root().to_path_buf(),
            source,
        })?;
        Ok(images
            .into_iter()
            .map(|i| ImageSummary {
                id: i.id,
                repo_tags: i.repo_tags,
                repo_digests: i.repo_digests,
                size: i.size,
            })
            .collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        let store = self.images()?;
        match store.remove(reference) {
            Ok(true) => Ok(()),
            Ok(false) => Err(rkube_runtime::Error::ImageNotFound(reference.into()).into()),
            Err(source) => Err(Error::Images {
                action: "remove an image from",
                path: store.root().to_path_buf(),
                source,
            }),
        }
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(running) = self.running.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, running.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("the bundled runtime did not stop serving in time");
            }
        }
        Ok(())
    }

    async fn delete(&mut self) -> Result<()> {
        self.remove_pods().await;
        let dir = dir(&self.profile);
        rkube_host::mount::unmount_under(&dir)?;
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(rkube_host::Error::io("remove", &dir)(e).into())
            }
            _ => Ok(()),
        }
    }
}
