//! CRI v1 (Container Runtime Interface) over a unix socket: the generated
//! RuntimeService/ImageService types, clients and servers (from the
//! `k8s-cri` crate, which compiles the upstream `api.proto`), and a
//! `connect` helper. The node agent talks to every backend through this.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use api::image_service_client::ImageServiceClient;
pub use api::runtime_service_client::RuntimeServiceClient;
pub use k8s_cri::v1 as api;

/// Errors connecting to a CRI endpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint is not a `unix://` path.
    #[error("unsupported CRI endpoint {0:?}: expected unix:///path/to/socket")]
    Endpoint(String),
    /// The gRPC channel could not be set up.
    #[error("connecting to CRI socket {path}: {source}")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Both CRI clients on one channel.
#[derive(Clone, Debug)]
pub struct Clients {
    /// RuntimeService.
    pub runtime: RuntimeServiceClient<tonic::transport::Channel>,
    /// ImageService.
    pub image: ImageServiceClient<tonic::transport::Channel>,
}

/// Parses `unix:///path` (or a bare path) into a socket path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    if let Some(p) = endpoint.strip_prefix("unix://") {
        return Ok(PathBuf::from(p));
    }
    if endpoint.starts_with('/') {
        return Ok(PathBuf::from(endpoint));
    }
    Err(Error::Endpoint(endpoint.to_string()))
}

/// Connects lazily to a CRI socket: calls fail (Unavailable) while the
/// runtime is down and succeed again once it is back.
pub fn connect(path: &Path) -> Result<Clients> {
    let p = path.to_path_buf();
    let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
        .map_err(|source| Error::Connect {
            path: p.clone(),
            source,
        })?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
            let p = p.clone();
            async move {
                let s = tokio::net::UnixStream::connect(p).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }));
    Ok(Clients {
        runtime: RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(64 * 1024 * 1024),
        image: ImageServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert!(socket_path("tcp://1.2.3.4:5").is_err());
    }
}
