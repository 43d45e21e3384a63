//! CRI streaming server: exec, attach and port-forward over SPDY and
//! WebSocket, as the kubelet's streaming package that CRI-O and containerd
//! embed. The CRI Exec/Attach/PortForward calls get a one-time URL
//! (`http://127.0.0.1:<port>/<verb>/<token>`, valid for a minute); the
//! client's upgrade request on that URL is answered with
//!
//! - WebSocket `v5.channel.k8s.io`/`v4.channel.k8s.io` for exec/attach
//!   (one byte of channel per message: 0 stdin, 1 stdout, 2 stderr,
//!   3 error/status, 4 resize, 255 close), or
//! - SPDY/3.1 with `X-Stream-Protocol-Version` `v4.channel.k8s.io` (down
//!   to `channel.k8s.io`) for exec/attach and `portforward.k8s.io` for
//!   port-forward (one SPDY stream per channel, named by `streamType`).
//!
//! What runs is the caller's [`Backend`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rkube_cri::api;

mod http;
mod session;
mod spdy;
mod ws;

/// A terminal size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// The client's streams as the backend sees them.
pub struct StreamIo {
    /// Client input; EOF when the client closes stdin.
    pub stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
    /// Output to the client's stdout.
    pub stdout: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    /// Output to the client's stderr (none with a tty).
    pub stderr: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    /// Whether the client asked for a terminal.
    pub tty: bool,
    /// Terminal size changes.
    pub resize: Option<tokio::sync::mpsc::Receiver<TermSize>>,
}

/// A boxed future.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// A byte stream in both directions.
pub trait AsyncReadWrite: tokio::io::AsyncRead + tokio::io::AsyncWrite {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite> AsyncReadWrite for T {}

/// A boxed connection.
pub type BoxConn = Box<dyn AsyncReadWrite + Send + Unpin>;

/// What the runtime does for the streams.
pub trait Backend: Send + Sync + 'static {
    /// Runs `cmd` in the container; the exit code, or an error message.
    fn exec(
        &self,
        container_id: String,
        cmd: Vec<String>,
        io: StreamIo,
    ) -> BoxFuture<Result<i32, String>>;
    /// Attaches to the container's main process until its output ends.
    fn attach(&self, container_id: String, io: StreamIo) -> BoxFuture<Result<(), String>>;
    /// Connects to `port` in the sandbox's network namespace.
    fn port_forward(&self, sandbox_id: String, port: u16) -> BoxFuture<Result<BoxConn, String>>;
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// How long a URL stays valid (upstream's request cache uses a minute).
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// A request waiting for its client.
#[derive(Clone, Debug)]
pub(crate) enum Pending {
    Exec(api::ExecRequest),
    Attach(api::AttachRequest),
    PortForward(api::PortForwardRequest),
}

pub(crate) struct Shared {
    pub backend: Arc<dyn Backend>,
    pub tokens: Mutex<HashMap<String, (Pending, Instant)>>,
}

impl Shared {
    /// Takes a token's request (single use); expired ones are dropped.
    pub fn take(&self, token: &str) -> Option<Pending> {
        let mut t = self.tokens.lock().expect("poisoned");
        t.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
        t.remove(token).map(|(p, _)| p)
    }
}

/// The streaming server.
#[derive(Clone)]
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn invalid(msg: &str) -> tonic::Status {
    tonic::Status::invalid_argument(msg.to_string())
}

fn check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<(), tonic::Status> {
    if !stdin && !stdout && !stderr {
        return Err(invalid("one of stdin, stdout, or stderr must be set"));
    }
    if tty && stderr {
        return Err(invalid("tty and stderr cannot both be true"));
    }
    Ok(())
}

impl Server {
    /// Binds `addr` and serves in a background task.
    pub async fn start(addr: SocketAddr, backend: Arc<dyn Backend>) -> Result<Server, Error> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            backend,
            tokens: Mutex::new(HashMap::new()),
        });
        tokio::spawn(http::serve(listener, shared.clone()));
        Ok(Server { addr, shared })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn url(&self, verb: &str, p: Pending) -> String {
        let token = hex::encode(rand::random::<[u8; 16]>());
        let mut tokens = self.shared.tokens.lock().expect("poisoned");
        tokens.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
        tokens.insert(token.clone(), (p, Instant::now()));
        drop(tokens);
        format!("http://{}/{verb}/{token}", self.addr)
    }

    /// A one-time URL for an exec.
    pub fn exec_url(&self, req: &api::ExecRequest) -> Result<String, tonic::Status> {
        if req.container_id.is_empty() {
            return Err(invalid("missing required container_id"));
        }
        if req.cmd.is_empty() {
            return Err(invalid("missing required cmd"));
        }
        check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
        Ok(self.url("exec", Pending::Exec(req.clone())))
    }

    /// A one-time URL for an attach.
    pub fn attach_url(&self, req: &api::AttachRequest) -> Result<String, tonic::Status> {
        if req.container_id.is_empty() {
            return Err(invalid("missing required container_id"));
        }
        check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
        Ok(self.url("attach", Pending::Attach(req.clone())))
    }

    /// A one-time URL for a port-forward.
    pub fn port_forward_url(&self, req: &api::PortForwardRequest) -> Result<String, tonic::Status> {
        if req.pod_sandbox_id.is_empty() {
            return Err(invalid("missing required pod_sandbox_id"));
        }
        Ok(self.url("portforward", Pending::PortForward(req.clone())))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_kubectl;
