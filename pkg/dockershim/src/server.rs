//! Serving the dockershim: connect to dockerd, resume copying the output
//! of the shim's containers into their CRI logs, start the streaming
//! server, then serve RuntimeService and ImageService on the CRI socket.

use std::sync::Arc;

use rkube_cri::api::image_service_server::ImageServiceServer;
use rkube_cri::api::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::ShimConfig;
use crate::images::ImageApi;
use crate::service::RuntimeApi;
use crate::shim::Shim;
use crate::stream::StreamBackend;
use crate::{labels, Error, Result};

/// A serving shim; dropping it does not stop it, call [`Running::shutdown`].
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

    /// Stops serving (containers keep running in dockerd).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Resumes the log followers of every container the shim made (running
/// ones, and exited ones whose last output may not be in the log yet).
async fn resume_logs(shim: &Shim) -> Result<()> {
    for c in shim.list(labels::CONTAINER, None).await? {
        let l = c.labels.unwrap_or_default();
        if let (Some(id), Some(path)) = (c.id, l.get(labels::LOG_PATH)) {
            if !path.is_empty()
                && c.state != Some(bollard::models::ContainerSummaryStateEnum::CREATED)
            {
                shim.logs.follow(shim.docker.clone(), &id, path.into());
            }
        }
    }
    Ok(())
}

/// Serves CRI on `cfg.socket` for the dockerd on `cfg.docker_socket`.
pub async fn serve(cfg: ShimConfig) -> Result<Running> {
    let socket = cfg.socket.clone();
    let shim = Arc::new(Shim::new(cfg).await?);
    resume_logs(&shim).await?;
    let backend = Arc::new(StreamBackend(Arc::downgrade(&shim)));
    let streaming = rkube_streaming::Server::start(([127, 0, 0, 1], 0).into(), backend)
        .await
        .map_err(|e| Error::Runtime(format!("streaming server: {e}")))?;
    let _ = shim.streaming.set(streaming);
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
            RuntimeServiceServer::new(RuntimeApi(shim.clone())).max_decoding_message_size(16 << 20),
        )
        .add_service(
            ImageServiceServer::new(ImageApi(shim.clone())).max_decoding_message_size(16 << 20),
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
        drop(shim);
    });
    tracing::info!(socket = %socket.display(), "dockershim serving CRI");
    Ok(Running {
        shutdown: Some(tx),
        task,
        socket,
    })
}
