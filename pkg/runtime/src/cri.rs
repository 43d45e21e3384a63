//! CRI calls shared by the backends (version, readiness, images, sandbox
//! clean-up), and [`External`]: a CRI runtime rkube did not start, given by
//! `--cri-socket unix:///path` (a system containerd or CRI-O).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rkube_cri::api;

use crate::config::check_socket_path;
use crate::images::ImageSummary;
use crate::{Error, Result};

/// Timeout of one CRI call made while waiting for a runtime.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `<runtime_name>://<runtime_version>` as the node reports it, e.g.
/// `containerd://1.6.20`.
pub async fn version(socket: &Path) -> Result<String> {
    let mut c = rkube_cri::connect(socket)?;
    let v = c
        .runtime
        .version(api::VersionRequest {
            version: "v1".into(),
        })
        .await
        .map_err(Error::rpc("Version"))?
        .into_inner();
    Ok(format!("{}://{}", v.runtime_name, v.runtime_version))
}

/// Whether a CRI runtime answers `Version` on `socket` within a short timeout.
pub async fn answers(socket: &Path) -> bool {
    socket.exists()
        && matches!(
            tokio::time::timeout(PROBE_TIMEOUT, version(socket)).await,
            Ok(Ok(_))
        )
}

/// Polls `answers` until it is true or `within` passed.
pub async fn wait_ready(socket: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if answers(socket).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every image the runtime has, via CRI `ListImages`.
pub async fn list_images(socket: &Path) -> Result<Vec<ImageSummary>> {
    let mut c = rkube_cri::connect(socket)?;
    let images = c
        .image
        .list_images(api::ListImagesRequest { filter: None })
        .await
        .map_err(Error::rpc("ListImages"))?
        .into_inner()
        .images;
    let mut out: Vec<ImageSummary> = images.into_iter().map(ImageSummary::from).collect();
    out.sort_by(|a, b| a.repo_tags.cmp(&b.repo_tags).then(a.id.cmp(&b.id)));
    Ok(out)
}

fn spec(reference: &str) -> Option<api::ImageSpec> {
    Some(api::ImageSpec {
        image: reference.to_string(),
        ..Default::default()
    })
}

/// Removes an image by name or id via CRI `RemoveImage`, which removes the
/// image with every name it has (like `crictl rmi`); an image the runtime
/// does not have is an [`Error::ImageNotFound`].
pub async fn remove_image(socket: &Path, reference: &str) -> Result<()> {
    let mut c = rkube_cri::connect(socket)?;
    let status = c
        .image
        .image_status(api::ImageStatusRequest {
            image: spec(reference),
            verbose: false,
        })
        .await
        .map_err(Error::rpc("ImageStatus"))?
        .into_inner();
    if status.image.is_none() {
        return Err(Error::ImageNotFound(reference.to_string()));
    }
    c.image
        .remove_image(api::RemoveImageRequest {
            image: spec(reference),
        })
        .await
        .map_err(Error::rpc("RemoveImage"))?;
    Ok(())
}

/// Stops and removes every pod sandbox (their containers go with them, and
/// the CNI plugins release their addresses). Returns how many there were.
pub async fn remove_all_sandboxes(socket: &Path) -> Result<usize> {
    let mut c = rkube_cri::connect(socket)?;
    let pods = c
        .runtime
        .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
        .await
        .map_err(Error::rpc("ListPodSandbox"))?
        .into_inner()
        .items;
    for p in &pods {
        c.runtime
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .map_err(Error::rpc("StopPodSandbox"))?;
        c.runtime
            .remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .map_err(Error::rpc("RemovePodSandbox"))?;
    }
    Ok(pods.len())
}

/// A CRI runtime that runs on its own; rkube neither starts nor stops it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct External {
    socket: PathBuf,
}

/// An already-running CRI runtime listening on `socket` (the path of
/// `--cri-socket unix:///path`; see `rkube_cri::socket_path`).
pub fn external(socket: &Path) -> Result<External> {
    check_socket_path(socket, 0)?;
    Ok(External {
        socket: socket.to_path_buf(),
    })
}

impl External {
    /// The CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.socket.clone()
    }

    /// Waits up to `within` for the runtime to answer.
    pub async fn wait_ready(&self, within: Duration) -> Result<()> {
        if wait_ready(&self.socket, within).await {
            Ok(())
        } else {
            Err(Error::Unavailable {
                socket: self.socket.clone(),
            })
        }
    }

    /// `<runtime>://<version>`.
    pub async fn version(&self) -> Result<String> {
        version(&self.socket).await
    }

    /// The runtime's images.
    pub async fn list_images(&self) -> Result<Vec<ImageSummary>> {
        list_images(&self.socket).await
    }

    /// Removes an image.
    pub async fn remove_image(&self, reference: &str) -> Result<()> {
        remove_image(&self.socket, reference).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_needs_an_absolute_short_path() {
        let e = external(Path::new("/run/containerd/containerd.sock")).unwrap();
        assert_eq!(e.socket(), PathBuf::from("/run/containerd/containerd.sock"));
        assert!(external(Path::new("containerd.sock")).is_err());
        assert!(external(Path::new(&format!("/{}", "s".repeat(120)))).is_err());
    }

    #[tokio::test]
    async fn nothing_answers_on_a_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let e = external(&dir.path().join("none.sock")).unwrap();
        assert!(!answers(&e.socket()).await);
        let err = e.wait_ready(Duration::from_millis(150)).await.unwrap_err();
        assert!(err.to_string().contains("is it running?"), "{err}");
    }
}
