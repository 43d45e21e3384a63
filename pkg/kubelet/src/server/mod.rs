//! The node agent's HTTPS server, the counterpart of the kubelet's port
//! 10250: container logs read from CRI-format log files, exec/attach/
//! port-forward proxied to the container runtime's streaming server, node and
//! pod statistics, the node's /var/log, and the pods it runs.
//!
//! Clients authenticate with a certificate signed by the cluster CA; only the
//! API server's kubelet-client identity (or any member of `system:masters`)
//! is allowed. Anonymous requests get 401 except `/healthz`.

mod files;
mod logs;
mod runtime;
mod stats;
mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

pub use logs::{parse_cri_line, LogOptions, LogStream};
pub use runtime::Runtime;

/// Common name of the API server's client certificate for node agents.
pub const APISERVER_KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";

/// Configuration of the node agent's server.
#[derive(Clone)]
pub struct ServerConfig {
    /// This node's name (reported by /stats/summary).
    pub node_name: String,
    /// CRI clients of the container runtime.
    pub cri: rkube_cri::Clients,
    /// Root of the pod log directories (`<ns>_<pod>_<uid>/<container>/<restart>.log`).
    pub log_root: PathBuf,
    /// Serving certificate chain (PEM).
    pub serving_cert_pem: Vec<u8>,
    /// Serving private key (PEM).
    pub serving_key_pem: Vec<u8>,
    /// CA that signs client certificates (PEM).
    pub client_ca_pem: Vec<u8>,
    /// Address to listen on (port 0 picks a free port).
    pub bind: SocketAddr,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad certificate or key material.
    #[error("tls: {0}")]
    Tls(String),
    /// The listening socket could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// What handlers share.
pub(crate) struct Ctx {
    pub node_name: String,
    pub runtime: Arc<dyn Runtime>,
    pub log_root: PathBuf,
    /// Directory served under /logs/ (the node's /var/log).
    pub node_log_dir: PathBuf,
    pub cpu_sample: std::sync::Mutex<Option<stats::CpuSample>>,
}

/// DER of the verified client certificate of a connection, if any.
#[derive(Clone, Debug)]
struct PeerCert(Option<Arc<Vec<u8>>>);

/// A plain-text error answer, as the kubelet writes them.
#[derive(Debug)]
pub(crate) struct HttpError(pub StatusCode, pub String);

impl HttpError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, msg.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (
            self.0,
            [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.1,
        )
            .into_response()
    }
}

/// Decodes an `application/x-www-form-urlencoded` query into pairs.
pub(crate) fn query_pairs(q: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("bad certificate PEM: {e}")))
}

fn tls_config(cfg: &ServerConfig) -> Result<rustls::ServerConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&cfg.client_ca_pem)? {
        roots
            .add(c)
            .map_err(|e| Error::Tls(format!("bad CA certificate: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&cfg.serving_key_pem)
        .map_err(|e| Error::Tls(format!("bad private key PEM: {e}")))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&cfg.serving_cert_pem)?, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Starts serving; returns the bound address. Stops accepting when
/// `shutdown` flips to true.
pub async fn start(
    cfg: ServerConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<SocketAddr, Error> {
    let runtime: Arc<dyn Runtime> = Arc::new(cfg.cri.clone());
    start_with(cfg, runtime, PathBuf::from("/var/log"), shutdown).await
}

/// [`start`] with the runtime and the /logs/ directory given (for tests).
pub(crate) async fn start_with(
    cfg: ServerConfig,
    runtime: Arc<dyn Runtime>,
    node_log_dir: PathBuf,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<SocketAddr, Error> {
    let tls = Arc::new(tls_config(&cfg)?);
    let listener = TcpListener::bind(cfg.bind)
        .await
        .map_err(|source| Error::Bind {
            addr: cfg.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: cfg.bind,
        source,
    })?;
    let ctx = Arc::new(Ctx {
        node_name: cfg.node_name.clone(),
        runtime,
        log_root: cfg.log_root.clone(),
        node_log_dir,
        cpu_sample: std::sync::Mutex::new(None),
    });
    tokio::spawn(serve(listener, tls, router(ctx), shutdown));
    Ok(addr)
}

fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{ns}/{pod}/{container}",
            get(logs::container_logs),
        )
        .route("/exec/{ns}/{pod}/{container}", any(stream::exec))
        .route("/attach/{ns}/{pod}/{container}", any(stream::attach))
        .route("/portForward/{ns}/{pod}", any(stream::port_forward))
        .route("/stats/summary", get(stats::summary))
        .route("/pods", get(stats::pods))
        .route("/pods/", get(stats::pods))
        .route("/logs", get(files::redirect))
        .route("/logs/", get(files::serve_root))
        .route("/logs/{*path}", get(files::serve))
        .layer(axum::middleware::from_fn(authorize))
        .with_state(ctx)
}

/// Whether a client certificate may use the node agent.
fn allowed(der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let subject = cert.subject();
    let cn_ok = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .any(|cn| cn == APISERVER_KUBELET_CLIENT_CN || cn == "apiserver-kubelet-client");
    let masters = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .any(|o| o == "system:masters");
    cn_ok || masters
}

async fn authorize(req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    match req.extensions().get::<PeerCert>() {
        Some(PeerCert(Some(der))) if allowed(der) => next.run(req).await,
        Some(PeerCert(Some(_))) => HttpError(
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden (user is not allowed to access the node agent, path {})",
                req.uri().path()
            ),
        )
        .into_response(),
        _ => HttpError(StatusCode::UNAUTHORIZED, "Unauthorized".into()).into_response(),
    }
}

async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("node server accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    break;
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("node server tls handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let peer = PeerCert(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| Arc::new(c.to_vec())),
            );
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    app.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("node server connection error: {e}");
                    }
                }
                _ = conn_shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cri_tests;
