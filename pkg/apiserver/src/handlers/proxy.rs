//! The API server's side of streaming: pods/log, pods/exec, pods/attach,
//! pods/portforward and nodes/proxy are forwarded to the node agent's HTTPS
//! server (verified against the cluster CA, authenticated with the
//! apiserver-kubelet-client certificate); pods/proxy and services/proxy go
//! straight to the pod's address over plain HTTP (a service to one of its
//! ready endpoints), as kube-apiserver does. Plain requests stream their
//! response back; upgrade requests (SPDY or WebSocket) are spliced byte for
//! byte once the node agent answered 101, and a refusal is passed back
//! unchanged so that clients can fall back (kubectl retries over SPDY when a
//! WebSocket upgrade fails).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;

use crate::state::AppState;
use crate::status::{ApiError, ApiResult};

/// Which pod subresource is streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodStream {
    /// pods/log → /containerLogs/{ns}/{pod}/{container}
    Log,
    /// pods/exec → /exec/{ns}/{pod}/{container}
    Exec,
    /// pods/attach → /attach/{ns}/{pod}/{container}
    Attach,
    /// pods/portforward → /portForward/{ns}/{pod}
    PortForward,
}

/// TLS client configuration for node agents: trusts the cluster CA and
/// presents the apiserver-kubelet-client certificate (HTTP/1.1 only, which
/// upgrades need).
pub fn kubelet_client_tls(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> ApiResult<rustls::ClientConfig> {
    crate::server::kubelet_client_tls(ca_pem, cert_pem, key_pem).map_err(ApiError::internal)
}

fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn query_get(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| v.to_string())
    })
}

fn query_without(query: &str, key: &str) -> String {
    query
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split_once('=').map(|x| x.0).unwrap_or(kv) != key)
        .collect::<Vec<_>>()
        .join("&")
}

/// The node agent's path and query for a pod subresource request, or None
/// for the log of a pod not yet on a node (an empty answer).
pub fn node_location(
    kind: PodStream,
    ns: &str,
    name: &str,
    pod: &Value,
    query: &str,
) -> ApiResult<Option<String>> {
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let node = spec.get("nodeName").and_then(Value::as_str).unwrap_or("");
    if kind == PodStream::PortForward {
        if node.is_empty() {
            return Err(ApiError::bad_request(format!(
                "pod {name} does not have a host assigned"
            )));
        }
        return Ok(Some(with_query(format!("/portForward/{ns}/{name}"), query)));
    }
    let containers = names(spec.get("containers"));
    let inits = names(spec.get("initContainers"));
    let ephemeral = names(spec.get("ephemeralContainers"));
    let container = match query_get(query, "container").filter(|c| !c.is_empty()) {
        Some(c) => {
            if !containers.contains(&c) && !inits.contains(&c) && !ephemeral.contains(&c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c
        }
        None => match containers.len() {
            1 => containers[0].clone(),
            0 => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}"
                )))
            }
            _ => {
                let mut msg = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                );
                if !inits.is_empty() {
                    msg.push_str(&format!(
                        " or one of the init containers: [{}]",
                        inits.join(" ")
                    ));
                }
                return Err(ApiError::bad_request(msg));
            }
        },
    };
    if node.is_empty() {
        if kind == PodStream::Log {
            return Ok(None);
        }
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let base = match kind {
        PodStream::Log => "containerLogs",
        PodStream::Exec => "exec",
        PodStream::Attach => "attach",
        PodStream::PortForward => unreachable!("handled above"),
    };
    Ok(Some(with_query(
        format!("/{base}/{ns}/{name}/{container}"),
        &query_without(query, "container"),
    )))
}

fn with_query(path: String, query: &str) -> String {
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

/// Forwards a pod log/exec/attach/portforward request to the node agent at
/// `node_addr` (the Node's InternalIP and kubelet port). The container is
/// checked against `pod` first (defaulted when the pod has one container).
#[allow(clippy::too_many_arguments)]
pub async fn pod_stream(
    state: &AppState,
    node_addr: (&str, u16),
    kind: PodStream,
    ns: &str,
    name: &str,
    pod: &Value,
    query: &str,
    req: Request,
) -> ApiResult<Response> {
    let Some(path) = node_location(kind, ns, name, pod, query)? else {
        return Ok(text_response(StatusCode::OK, Body::empty()));
    };
    let tls = client_tls(state)?;
    let resp = forward(Some(tls), node_addr, &path, req).await?;
    if kind != PodStream::Log {
        return Ok(resp);
    }
    let code = resp.status();
    if code.is_success() {
        let mut resp = resp;
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Ok(resp);
    }
    // As kube-apiserver's response checker: the node agent's text in a Status.
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]).into_owned();
    Err(match code.as_u16() {
        400 => ApiError::bad_request(text),
        404 => ApiError::new(404, "NotFound", text),
        500 => ApiError::internal(text),
        401 => ApiError::new(401, "Unauthorized", text),
        403 => ApiError::new(403, "Forbidden", text),
        c => ApiError::new(c, "InternalError", text),
    })
}

/// Forwards /api/v1/nodes/{node}/proxy/{rest} to `/{rest}` on the node agent.
pub async fn node_proxy(
    state: &AppState,
    node_addr: (&str, u16),
    rest_path: &str,
    query: &str,
    req: Request,
) -> ApiResult<Response> {
    let tls = client_tls(state)?;
    let path = with_query(format!("/{}", rest_path.trim_start_matches('/')), query);
    forward(Some(tls), node_addr, &path, req).await
}

fn client_tls(state: &AppState) -> ApiResult<Arc<rustls::ClientConfig>> {
    state.kubelet_client.clone().ok_or_else(|| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            "the API server has no client credentials for node agents",
        )
    })
}

fn text_response(code: StatusCode, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Whether the headers ask for a connection upgrade.
fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
                .unwrap_or(false)
        })
}

/// Request headers not passed to the node agent: hop-by-hop ones and the
/// client's own credentials.
fn dropped(name: &str, upgrade: bool) -> bool {
    matches!(
        name,
        "host"
            | "authorization"
            | "cookie"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
    ) || name.starts_with("impersonate-")
        || (!upgrade && (name == "connection" || name == "upgrade"))
}

/// Splits a proxy target `[scheme:]name[:port]` (kube-apiserver's
/// `SplitSchemeNamePort`); `None` when it has more than three parts or an
/// unknown scheme.
pub fn split_target(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    if name.is_empty() || !matches!(scheme, "" | "http" | "https") {
        return None;
    }
    Some((scheme, name, port))
}

/// Proxies `req` to `rest_path` on a pod or service backend at `addr` over
/// plain HTTP (pods/proxy, services/proxy).
pub async fn backend_proxy(
    scheme: &str,
    addr: (&str, u16),
    rest_path: &str,
    query: &str,
    req: Request,
) -> ApiResult<Response> {
    if scheme == "https" {
        return Err(ApiError::new(
            503,
            "ServiceUnavailable",
            "proxying to https backends is not supported by rkube yet",
        ));
    }
    let path = with_query(format!("/{}", rest_path.trim_start_matches('/')), query);
    forward(None, addr, &path, req).await
}

/// A connection to a backend, with or without TLS.
trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// Sends `req` to `path` on the node agent (over TLS) or on a pod (plain,
/// when `tls` is `None`) and returns its answer; upgrades are spliced in
/// the background.
pub(crate) async fn forward(
    tls: Option<Arc<rustls::ClientConfig>>,
    (host, port): (&str, u16),
    path: &str,
    mut req: Request,
) -> ApiResult<Response> {
    let dial_err =
        |e: &dyn std::fmt::Display| ApiError::internal(format!("error dialing backend: {e}"));
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| dial_err(&e))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Conn> = match tls {
        Some(tls) => {
            let server_name = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(host.to_string()).map_err(|e| dial_err(&e))?,
            };
            Box::new(
                tokio_rustls::TlsConnector::from(tls)
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| dial_err(&e))?,
            )
        }
        None => Box::new(tcp),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| dial_err(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("node agent connection: {e}");
        }
    });

    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut b = http::Request::builder().method(parts.method).uri(path);
    let headers = b.headers_mut().expect("fresh builder");
    for (k, v) in parts.headers.iter() {
        if !dropped(k.as_str(), upgrade) {
            headers.append(k.clone(), v.clone());
        }
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    if let Ok(h) = HeaderValue::from_str(&authority) {
        headers.insert(header::HOST, h);
    }
    let out = b.body(body).map_err(ApiError::internal)?;
    let mut resp = sender
        .send_request(out)
        .await
        .map_err(|e| ApiError::internal(format!("error proxying to the backend: {e}")))?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::internal(
                "the node agent upgraded a plain request",
            ));
        };
        let upstream = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::join!(client_upgrade, upstream) {
                (Ok(a), Ok(b)) => {
                    let mut a = TokioIo::new(a);
                    let mut b = TokioIo::new(b);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                        tracing::debug!("stream splice ended: {e}");
                    }
                }
                (a, b) => tracing::debug!(
                    "stream upgrade failed: client {:?}, node {:?}",
                    a.err(),
                    b.err()
                ),
            }
        });
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *r.headers_mut() = resp.headers().clone();
        return Ok(r);
    }
    let (parts, body) = resp.into_parts();
    let mut r = Response::new(Body::new(body));
    *r.status_mut() = parts.status;
    for (k, v) in parts.headers.iter() {
        if !matches!(
            k.as_str(),
            "transfer-encoding" | "connection" | "keep-alive" | "upgrade"
        ) {
            r.headers_mut().append(k.clone(), v.clone());
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use serde_json::json;
    use std::net::SocketAddr;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

    fn pod(node: &str) -> Value {
        json!({"spec": {
            "nodeName": node,
            "containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "init"}],
        }})
    }

    #[test]
    fn locates_pod_streams() {
        let p = pod("n1");
        let err = node_location(PodStream::Log, "ns", "web", &p, "follow=true").unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "a container name must be specified for pod web, choose one of: [a b] or one of the init containers: [init]"
        );
        let err = node_location(PodStream::Exec, "ns", "web", &p, "container=zz").unwrap_err();
        assert_eq!(err.message, "container zz is not valid for pod web");
        assert_eq!(
            node_location(
                PodStream::Log,
                "ns",
                "web",
                &p,
                "container=b&follow=true&tailLines=3"
            )
            .unwrap()
            .unwrap(),
            "/containerLogs/ns/web/b?follow=true&tailLines=3"
        );
        assert_eq!(
            node_location(
                PodStream::Exec,
                "ns",
                "web",
                &p,
                "command=ls&container=init&stdout=true"
            )
            .unwrap()
            .unwrap(),
            "/exec/ns/web/init?command=ls&stdout=true"
        );
        let one = json!({"spec": {"nodeName": "n1", "containers": [{"name": "only"}]}});
        assert_eq!(
            node_location(PodStream::Attach, "ns", "p", &one, "")
                .unwrap()
                .unwrap(),
            "/attach/ns/p/only"
        );
        assert_eq!(
            node_location(PodStream::PortForward, "ns", "p", &one, "ports=80")
                .unwrap()
                .unwrap(),
            "/portForward/ns/p?ports=80"
        );
        let unscheduled = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(
            node_location(PodStream::Log, "ns", "p", &unscheduled, "").unwrap(),
            None
        );
        let err = node_location(PodStream::Exec, "ns", "p", &unscheduled, "").unwrap_err();
        assert_eq!(err.message, "pod p does not have a host assigned");
    }

    struct Pems {
        _dir: tempfile::TempDir,
        ca: Vec<u8>,
        serving: (Vec<u8>, Vec<u8>),
        client: (Vec<u8>, Vec<u8>),
    }

    fn pems() -> Pems {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) =
            rkube_pki::Pki::ensure(dir.path(), &rkube_pki::PkiOptions::new("node1")).unwrap();
        let r = |p: std::path::PathBuf| std::fs::read(p).unwrap();
        Pems {
            ca: r(pki.ca_cert_path()),
            serving: (
                r(pki.node_serving_cert_path()),
                r(pki.node_serving_key_path()),
            ),
            client: (
                r(pki.apiserver_kubelet_client_cert_path()),
                r(pki.apiserver_kubelet_client_key_path()),
            ),
            _dir: dir,
        }
    }

    async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> String {
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

    /// A fake node agent: requires a client certificate, records the
    /// request head, answers 101 and echoes.
    async fn fake_node(p: &Pems) -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(&p.ca).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                CertificateDer::pem_slice_iter(&p.serving.0)
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(&p.serving.1).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut s = acceptor.accept(tcp).await.unwrap();
                    let head = read_head(&mut s).await;
                    let upgrade = head.to_ascii_lowercase().contains("upgrade: spdy/3.1");
                    tx.send(head).await.unwrap();
                    if upgrade {
                        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n").await.unwrap();
                        let (mut r, mut w) = tokio::io::split(s);
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    } else {
                        s.write_all(
                            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 9\r\n\r\nnot found",
                        )
                        .await
                        .unwrap();
                    }
                });
            }
        });
        (addr, rx)
    }

    /// Serves `forward` to the fake node on a plain local listener.
    async fn front(tls: Arc<rustls::ClientConfig>, node: SocketAddr) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let tls = tls.clone();
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tls = tls.clone();
                        async move {
                            let req = req.map(Body::new);
                            let path = req.uri().path_and_query().unwrap().as_str().to_string();
                            Ok::<_, std::convert::Infallible>(
                                match forward(Some(tls), ("127.0.0.1", node.port()), &path, req)
                                    .await
                                {
                                    Ok(r) => r,
                                    Err(e) => axum::response::IntoResponse::into_response(e),
                                },
                            )
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades(),
                );
            }
        });
        addr
    }

    #[tokio::test]
    async fn splices_upgrades_to_the_node_agent() {
        let p = pems();
        let (node, mut seen) = fake_node(&p).await;
        let tls = Arc::new(kubelet_client_tls(&p.ca, &p.client.0, &p.client.1).unwrap());
        let addr = front(tls, node).await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"POST /exec/ns/web/a?command=ls&stdout=1 HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer secret\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        let head = read_head(&mut c).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        c.write_all(b"ping\x00\xff").await.unwrap();
        let mut buf = [0u8; 6];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping\x00\xff");
        let node_head = seen.recv().await.unwrap();
        assert!(
            node_head.starts_with("POST /exec/ns/web/a?command=ls&stdout=1 HTTP/1.1"),
            "{node_head}"
        );
        let lower = node_head.to_ascii_lowercase();
        assert!(!lower.contains("authorization"), "{node_head}");
        assert!(
            lower.contains("x-stream-protocol-version: v4.channel.k8s.io"),
            "{node_head}"
        );

        // A plain request gets the node's answer as is.
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /stats/summary HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(
            out.starts_with("HTTP/1.1 400") && out.ends_with("not found"),
            "{out}"
        );
    }
}
