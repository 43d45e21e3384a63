//! The containerd backend: Debian's containerd run by rkube for the
//! profile under `<profile>/containerd` ([`rkube_runtime::Containerd`]),
//! with the profile's registry mirrors. containerd outlives the daemon so
//! pods survive a restart of rkube; only `rkube delete` stops it.

use std::path::{Path, PathBuf};

use rkube_host::Mirror;
use rkube_runtime::{ContainerdOptions, ImageSummary};

use super::{Backend, Error, Result};
use crate::profile::{Profile, ProfileConfig};

/// Directory of the profile's containerd.
pub fn dir(profile: &Profile) -> PathBuf {
    profile.dir().join("containerd")
}

/// A profile's containerd.
pub struct Containerd(rkube_runtime::Containerd);

impl Containerd {
    /// The profile's containerd without registry settings (enough to reach
    /// it, load images or delete it).
    pub fn new(profile: &Profile) -> Self {
        Self::with_mirrors(profile, &[], &[])
    }

    /// The profile's containerd with its registry mirrors and plain-HTTP
    /// registries.
    pub fn with_settings(profile: &Profile, config: &ProfileConfig) -> Result<Self> {
        let mirrors = config.mirrors().map_err(Error::Config)?;
        Ok(Self::with_mirrors(
            profile,
            &mirrors,
            &config.insecure_registries,
        ))
    }

    fn with_mirrors(profile: &Profile, mirrors: &[Mirror], insecure: &[String]) -> Self {
        let mut opts = ContainerdOptions::new(dir(profile), rkube_image::PAUSE_IMAGE);
        opts.cni_conf_dir = profile.cni_conf_dir();
        opts.registry_mirrors = mirrors.to_vec();
        for host in insecure {
            if !mirrors.iter().any(|m| &m.host == host) {
                opts.registry_mirrors
                    .push(rkube_host::registry::insecure_host(host));
            }
        }
        Self(rkube_runtime::Containerd::new(opts))
    }
}

#[async_trait::async_trait]
impl Backend for Containerd {
    async fn start(&mut self) -> Result<()> {
        rkube_runtime::Containerd::check_host()?;
        Ok(self.0.start().await?)
    }

    fn cri_socket(&self) -> PathBuf {
        self.0.socket()
    }

    async fn version(&self) -> Result<String> {
        Ok(self.0.version().await?)
    }

    async fn import_image(&self, path: &Path) -> Result<Vec<String>> {
        Ok(self.0.import_image(path).await?)
    }

    async fn list_images(&self) -> Result<Vec<ImageSummary>> {
        Ok(self.0.list_images().await?)
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        Ok(self.0.remove_image(reference).await?)
    }

    async fn stop(&mut self) -> Result<()> {
        // containerd and its shims hold the containers: they keep running.
        Ok(())
    }

    async fn delete(&mut self) -> Result<()> {
        // Sandboxes are torn down through CRI (CNI DEL releases IPs and
        // network namespaces), which needs containerd: start it again if
        // it is not running.
        if let Err(e) = self.0.start().await {
            tracing::warn!("cannot start containerd to remove pods: {e}");
        }
        Ok(self.0.delete().await?)
    }
}
