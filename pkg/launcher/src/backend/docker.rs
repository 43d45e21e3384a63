//! The docker runtime (`--container-runtime=docker`): not available yet;
//! every operation says so.

use std::path::{Path, PathBuf};

use super::{Backend, Error, Result};
use crate::profile::ContainerRuntime;

/// The docker runtime.
pub struct Docker;

fn unavailable<T>() -> Result<T> {
    Err(Error::Unavailable(ContainerRuntime::Docker))
}

#[async_trait::async_trait]
impl Backend for Docker {
    async fn start(&mut self) -> Result<()> {
        unavailable()
    }

    fn cri_socket(&self) -> PathBuf {
        PathBuf::new()
    }

    async fn version(&self) -> Result<String> {
        unavailable()
    }

    async fn import_image(&self, _path: &Path) -> Result<Vec<String>> {
        unavailable()
    }

    async fn list_images(&self) -> Result<Vec<rkube_runtime::ImageSummary>> {
        unavailable()
    }

    async fn remove_image(&self, _reference: &str) -> Result<()> {
        unavailable()
    }

    async fn ensure_pause_image(&self, _scratch: &Path) -> Result<()> {
        unavailable()
    }

    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }

    async fn delete(&mut self) -> Result<()> {
        Ok(())
    }
}
