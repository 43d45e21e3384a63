//! A CRI runtime that already runs (`--cri-socket unix:///path`, e.g. a
//! system containerd or CRI-O): rkube neither starts nor stops it, nor
//! removes its pods, and it brings its own sandbox image.

use std::path::{Path, PathBuf};

use super::{Backend, Error, Result};

/// A runtime behind `--cri-socket`.
pub struct External(rkube_runtime::External);

impl External {
    /// The runtime listening on `endpoint` (`unix:///path` or a path).
    pub fn new(endpoint: &str) -> Result<Self> {
        let path = rkube_cri::socket_path(endpoint).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self(rkube_runtime::external(&path)?))
    }
}

#[async_trait::async_trait]
impl Backend for External {
    async fn start(&mut self) -> Result<()> {
        // It runs on its own; the node agent waits for it.
        Ok(())
    }

    fn cri_socket(&self) -> PathBuf {
        self.0.socket()
    }

    async fn import_image(&self, _path: &Path) -> Result<Vec<String>> {
        Err(Error::Unsupported(
            "rkube image load cannot load into a --cri-socket runtime; use that runtime's own tools (ctr, podman)",
        ))
    }

    async fn ensure_pause_image(&self, _scratch: &Path) -> Result<()> {
        // It brings its own sandbox image configuration.
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }

    async fn delete(&mut self) -> Result<()> {
        Ok(())
    }
}
