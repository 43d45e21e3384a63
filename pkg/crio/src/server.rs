//! Serving the bundled runtime: recover state from disk, start the
//! streaming server, then serve RuntimeService and ImageService on the
//! CRI unix socket until shut down.

use std::sync::Arc;

use rkube_cri::api::image_service_server::ImageServiceServer;
use rkube_cri::api::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::CrioConfig;
use crate::images::ImageApi;
use crate::service::{Crio, RuntimeApi};
use crate::stream::StreamBackend;
use crate::{Error, Result};

/// A serving runtime; dropping it does not stop it, call [`Running::shutdown`].
pub struct Running {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    socket: std::path::PathBuf,
}

impl Running {
    /// The CRI socket.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Stops serving (containers keep running under conmon).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Recovers the state under `cfg.root` and serves CRI on `cfg.socket`.
pub async fn serve(cfg: CrioConfig) -> Result<Running> {
    let socket = cfg.socket.clone();
    if cfg.handlers.iter().any(|h| h.name == "crun") {
        // crun refuses hybrid hosts whose cgroup2 mount owns controllers.
        match rkube_conmon::prepare_hybrid_cgroups() {
            Ok(moved) if !moved.is_empty() => {
                tracing::info!(
                    ?moved,
                    "mounted unused cgroup2 controllers as v1 hierarchies for crun"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("crun may refuse this hybrid cgroup host: {e}"),
        }
    }
    let crio = Arc::new(Crio::new(cfg)?);
    crate::recover::recover(&crio).await;
    let backend = Arc::new(StreamBackend(Arc::downgrade(&crio)));
    let streaming = rkube_streaming::Server::start(([127, 0, 0, 1], 0).into(), backend)
        .await
        .map_err(|e| Error::Streaming(e.to_string()))?;
    let _ = crio.streaming.set(streaming);
    match std::fs::remove_file(&socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io("remove", &socket)(e))
        }
        _ => {}
    }
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
    }
    let listener = UnixListener::bind(&socket).map_err(|e| Error::Serve {
        path: socket.clone(),
        message: e.to_string(),
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .add_service(
            RuntimeServiceServer::new(RuntimeApi(crio.clone())).max_decoding_message_size(16 << 20),
        )
        .add_service(
            ImageServiceServer::new(ImageApi(crio.clone())).max_decoding_message_size(16 << 20),
        );
    let path = socket.clone();
    let task = tokio::spawn(async move {
        let incoming = UnixListenerStream::new(listener);
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await
        {
            tracing::error!(socket = %path.display(), "CRI server stopped: {e}");
        }
        drop(crio);
    });
    tracing::info!(socket = %socket.display(), "rkube-cri-o serving CRI");
    Ok(Running {
        shutdown: Some(tx),
        task,
        socket,
    })
}
