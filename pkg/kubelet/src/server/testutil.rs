//! Test helpers: a cluster PKI in a temporary directory, a fake runtime, a
//! TLS client speaking raw HTTP/1.1, and a fake streaming server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use rkube_cri::api;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::runtime::{CriResult, Runtime};

/// PEM material of a test cluster.
pub struct TestPki {
    pub _dir: tempfile::TempDir,
    pub ca: Vec<u8>,
    pub serving: (Vec<u8>, Vec<u8>),
    pub kubelet_client: (Vec<u8>, Vec<u8>),
    pub admin: (Vec<u8>, Vec<u8>),
    pub node: (Vec<u8>, Vec<u8>),
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) =
            rkube_pki::Pki::ensure(dir.path(), &rkube_pki::PkiOptions::new("node1")).unwrap();
        let r = |p: std::path::PathBuf| std::fs::read(p).unwrap();
        TestPki {
            ca: r(pki.ca_cert_path()),
            serving: (
                r(pki.node_serving_cert_path()),
                r(pki.node_serving_key_path()),
            ),
            kubelet_client: (
                r(pki.apiserver_kubelet_client_cert_path()),
                r(pki.apiserver_kubelet_client_key_path()),
            ),
            admin: (r(pki.admin_cert_path()), r(pki.admin_key_path())),
            node: (r(pki.node_cert_path()), r(pki.node_key_path())),
            _dir: dir,
        }
    }

    /// A client configuration presenting `cert` (or none).
    pub fn client(&self, cert: Option<&(Vec<u8>, Vec<u8>)>) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&self.ca) {
            roots.add(c.unwrap()).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        match cert {
            Some((c, k)) => b
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(c)
                        .map(|c| c.unwrap())
                        .collect(),
                    PrivateKeyDer::from_pem_slice(k).unwrap(),
                )
                .unwrap(),
            None => b.with_no_client_auth(),
        }
    }
}

/// A runtime with fixed answers.
#[derive(Default)]
pub struct FakeRuntime {
    pub containers: Vec<api::Container>,
    pub statuses: HashMap<String, api::ContainerStatus>,
    pub sandboxes: Vec<api::PodSandbox>,
    pub url: String,
    pub execs: Mutex<Vec<api::ExecRequest>>,
}

impl Runtime for FakeRuntime {
    fn list_containers(
        &self,
        labels: HashMap<String, String>,
    ) -> BoxFuture<'_, CriResult<Vec<api::Container>>> {
        let cs = self
            .containers
            .iter()
            .filter(|c| labels.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
            .cloned()
            .collect();
        Box::pin(async move { Ok(cs) })
    }
    fn container_status(
        &self,
        id: String,
    ) -> BoxFuture<'_, CriResult<Option<api::ContainerStatus>>> {
        let s = self.statuses.get(&id).cloned();
        Box::pin(async move { Ok(s) })
    }
    fn list_sandboxes(
        &self,
        labels: HashMap<String, String>,
    ) -> BoxFuture<'_, CriResult<Vec<api::PodSandbox>>> {
        let s = self
            .sandboxes
            .iter()
            .filter(|c| labels.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
            .cloned()
            .collect();
        Box::pin(async move { Ok(s) })
    }
    fn exec(&self, req: api::ExecRequest) -> BoxFuture<'_, CriResult<String>> {
        self.execs.lock().unwrap().push(req);
        let u = self.url.clone();
        Box::pin(async move { Ok(u) })
    }
    fn attach(&self, _: api::AttachRequest) -> BoxFuture<'_, CriResult<String>> {
        let u = self.url.clone();
        Box::pin(async move { Ok(u) })
    }
    fn port_forward(&self, _: api::PortForwardRequest) -> BoxFuture<'_, CriResult<String>> {
        let u = self.url.clone();
        Box::pin(async move { Ok(u) })
    }
    fn container_stats(&self) -> BoxFuture<'_, CriResult<Vec<api::ContainerStats>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn sandbox_stats(&self) -> BoxFuture<'_, CriResult<Vec<api::PodSandboxStats>>> {
        Box::pin(async { Err("unimplemented".to_string()) })
    }
}

/// Reads an HTTP head (up to the blank line).
pub async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if r.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Opens a TLS connection to the server.
pub async fn connect(
    addr: SocketAddr,
    cfg: rustls::ClientConfig,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap()
}

/// How the fake streaming server answers.
#[derive(Clone, Copy)]
pub enum Upstream {
    /// 101, then echo every byte.
    Echo,
    /// A bare 403 with no framing, connection left open (like
    /// golang.org/x/net/websocket refusing a subprotocol).
    Refuse,
}

/// Starts a fake streaming server; returns its address and the request
/// heads it received.
pub async fn fake_streaming_server(mode: Upstream) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let head = read_head(&mut c).await;
                s.lock().unwrap().push(head);
                match mode {
                    Upstream::Echo => {
                        c.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n")
                            .await
                            .unwrap();
                        let (mut r, mut w) = c.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                    Upstream::Refuse => {
                        c.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\nprotocol not supported")
                            .await
                            .unwrap();
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    }
                }
            });
        }
    });
    (addr, seen)
}
