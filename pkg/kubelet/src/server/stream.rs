//! exec, attach and port-forward: the container (or sandbox) is resolved
//! through CRI, the runtime's Exec/Attach/PortForward call returns a
//! one-time URL of its streaming server, and the client's upgrade request
//! (SPDY/3.1 or WebSocket) is proxied there; after both sides answered
//! 101 the two connections are spliced byte for byte.
//!
//! Protocol negotiation is left to the runtime, with one adjustment:
//! runtimes built on the kubelet streaming library (containerd 1.6/1.7,
//! CRI-O) speak WebSocket only up to `v4.channel.k8s.io`, which cannot
//! half-close stdin. client-go's WebSocket executor (kubectl) offers
//! `v5,v4,v3,v2` and falls back to SPDY when the upgrade fails, so for that
//! offer only `v5.channel.k8s.io` is passed on: a runtime that speaks v5
//! accepts it, an older one refuses, and kubectl retries over SPDY, where
//! stdin EOF works. Other clients' offers are passed on unchanged.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rkube_cri::api;

use super::runtime::{container_labels, find_sandbox, newest_first};
use super::{query_pairs, Ctx, HttpError};

/// Stream options of an exec/attach request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StreamOpts {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "true" | "True" | "TRUE" | "")
}

impl StreamOpts {
    /// Parses kubelet's query (`stdin`/`input`, `stdout`/`output`,
    /// `stderr`/`error`, `tty`, repeated `command`).
    pub fn from_query(q: &str) -> Result<Self, String> {
        let mut o = StreamOpts::default();
        for (k, v) in query_pairs(q) {
            match k.as_str() {
                "command" => o.command.push(v),
                "stdin" | "input" => o.stdin = truthy(&v),
                "stdout" | "output" => o.stdout = truthy(&v),
                "stderr" | "error" => o.stderr = truthy(&v),
                "tty" => o.tty = truthy(&v),
                _ => {}
            }
        }
        if o.tty {
            // A terminal merges stderr into stdout.
            o.stderr = false;
        }
        if !o.stdin && !o.stdout && !o.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(o)
    }
}

async fn container_id(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<String, HttpError> {
    let cs = ctx
        .runtime
        .list_containers(container_labels(ns, pod, container))
        .await
        .map_err(HttpError::internal)?;
    newest_first(cs)
        .into_iter()
        .next()
        .map(|c| c.id)
        .ok_or_else(|| {
            HttpError(
                StatusCode::NOT_FOUND,
                format!("container not found (\"{container}\")"),
            )
        })
}

/// /exec/{ns}/{pod}/{container}
pub(crate) async fn exec(
    State(ctx): State<Arc<Ctx>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    req: Request,
) -> Result<Response, HttpError> {
    let o = StreamOpts::from_query(q.as_deref().unwrap_or("")).map_err(HttpError::bad_request)?;
    if o.command.is_empty() {
        return Err(HttpError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let id = container_id(&ctx, &ns, &pod, &container).await?;
    let url = ctx
        .runtime
        .exec(api::ExecRequest {
            container_id: id,
            cmd: o.command,
            tty: o.tty,
            stdin: o.stdin,
            stdout: o.stdout,
            stderr: o.stderr,
        })
        .await
        .map_err(HttpError::internal)?;
    proxy(&url, req, true).await
}

/// /attach/{ns}/{pod}/{container}
pub(crate) async fn attach(
    State(ctx): State<Arc<Ctx>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    req: Request,
) -> Result<Response, HttpError> {
    let o = StreamOpts::from_query(q.as_deref().unwrap_or("")).map_err(HttpError::bad_request)?;
    let id = container_id(&ctx, &ns, &pod, &container).await?;
    let url = ctx
        .runtime
        .attach(api::AttachRequest {
            container_id: id,
            stdin: o.stdin,
            tty: o.tty,
            stdout: o.stdout,
            stderr: o.stderr,
        })
        .await
        .map_err(HttpError::internal)?;
    proxy(&url, req, true).await
}

/// /portForward/{ns}/{pod}
pub(crate) async fn port_forward(
    State(ctx): State<Arc<Ctx>>,
    Path((ns, pod)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    req: Request,
) -> Result<Response, HttpError> {
    let mut ports = Vec::new();
    for (k, v) in query_pairs(q.as_deref().unwrap_or("")) {
        if k == "port" || k == "ports" {
            for p in v.split(',').filter(|p| !p.is_empty()) {
                let p: i32 = p
                    .trim()
                    .parse()
                    .map_err(|_| HttpError::bad_request(format!("invalid port {p:?}")))?;
                ports.push(p);
            }
        }
    }
    let sb = find_sandbox(ctx.runtime.as_ref(), &ns, &pod)
        .await
        .map_err(HttpError::internal)?
        .ok_or_else(|| HttpError(StatusCode::NOT_FOUND, "pod does not exist".into()))?;
    let url = ctx
        .runtime
        .port_forward(api::PortForwardRequest {
            pod_sandbox_id: sb.id,
            port: ports,
        })
        .await
        .map_err(HttpError::internal)?;
    proxy(&url, req, false).await
}

/// Whether the headers ask for a connection upgrade.
pub(crate) fn is_upgrade(h: &HeaderMap) -> bool {
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

/// The WebSocket subprotocol offer to pass to the runtime (see the module doc).
pub(crate) fn narrow_offer(offer: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offer.split(',').map(str::trim).collect();
    let v5 = offered.contains(&"v5.channel.k8s.io");
    let client_go =
        offered.contains(&"v3.channel.k8s.io") || offered.contains(&"v2.channel.k8s.io");
    (v5 && client_go).then_some("v5.channel.k8s.io")
}

const HOP_BY_HOP: [&str; 7] = [
    "host",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Longest non-101 answer body passed back to the client.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Forwards `req` to the runtime's streaming `url` and splices the upgraded
/// connections; a refusal (non-101) is passed back as it came.
pub(crate) async fn proxy(
    url: &str,
    mut req: Request,
    channel: bool,
) -> Result<Response, HttpError> {
    let uri: http::Uri = url.parse().map_err(|e| {
        HttpError::internal(format!("runtime returned a bad streaming URL {url:?}: {e}"))
    })?;
    if uri.scheme_str() != Some("http") {
        return Err(HttpError::internal(format!(
            "unsupported streaming URL {url:?}: only http:// is supported"
        )));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| HttpError::internal(format!("streaming URL {url:?} has no host")))?
        .clone();
    let addr = if authority.port().is_some() {
        authority.to_string()
    } else {
        format!("{}:80", authority.host())
    };
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| HttpError::internal(format!("error dialing streaming server {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(HttpError::internal)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("streaming server connection: {e}");
        }
    });

    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut up = http::Request::builder()
        .method(parts.method.clone())
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let headers = up.headers_mut().expect("fresh builder");
    for (k, v) in parts.headers.iter() {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name) || (!upgrade && (name == "connection" || name == "upgrade")) {
            continue;
        }
        headers.append(k.clone(), v.clone());
    }
    if let Ok(h) = HeaderValue::from_str(authority.as_str()) {
        headers.insert(header::HOST, h);
    }
    if channel {
        let offer = headers
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .and_then(narrow_offer);
        if let Some(p) = offer {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
    }
    let up = up.body(body).map_err(HttpError::internal)?;
    let mut resp = sender
        .send_request(up)
        .await
        .map_err(|e| HttpError::internal(format!("error proxying to streaming server: {e}")))?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(HttpError::internal(
                "streaming server upgraded a plain request",
            ));
        };
        let upstream = hyper::upgrade::on(&mut resp);
        tokio::spawn(splice(client_upgrade, upstream));
        let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        return out.body(Body::empty()).map_err(HttpError::internal);
    }
    let (parts, body) = resp.into_parts();
    let bytes = if upgrade {
        read_bounded(body).await
    } else {
        body.collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default()
    };
    let mut out = Response::builder().status(parts.status);
    for (k, v) in parts.headers.iter() {
        if matches!(
            k.as_str(),
            "transfer-encoding" | "content-length" | "connection" | "upgrade"
        ) {
            continue;
        }
        out = out.header(k, v);
    }
    out.body(Body::from(bytes)).map_err(HttpError::internal)
}

/// Reads a refusal's body: at most [`MAX_ERROR_BODY`], and only as long as
/// data keeps coming (some servers answer a failed handshake without framing
/// and leave the connection open).
async fn read_bounded(mut body: hyper::body::Incoming) -> Bytes {
    let mut buf = Vec::new();
    while let Ok(Some(Ok(f))) = tokio::time::timeout(Duration::from_millis(500), body.frame()).await
    {
        if let Ok(d) = f.into_data() {
            buf.extend_from_slice(&d);
            if buf.len() >= MAX_ERROR_BODY {
                buf.truncate(MAX_ERROR_BODY);
                break;
            }
        }
    }
    buf.into()
}

/// Waits for both upgrades and copies bytes both ways until both close.
pub(crate) async fn splice(a: hyper::upgrade::OnUpgrade, b: hyper::upgrade::OnUpgrade) {
    match tokio::join!(a, b) {
        (Ok(a), Ok(b)) => {
            let mut a = TokioIo::new(a);
            let mut b = TokioIo::new(b);
            if let Err(e) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                tracing::debug!("stream splice ended: {e}");
            }
        }
        (a, b) => tracing::debug!(
            "stream upgrade failed: client {:?}, runtime {:?}",
            a.err(),
            b.err()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stream_options() {
        let o = StreamOpts::from_query(
            "command=sh&command=-c&command=echo%20hi&stdin=true&stdout=1&stderr=true&tty=true",
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert!(o.stdin && o.stdout && o.tty && !o.stderr);
        let o = StreamOpts::from_query("command=ls&input=1&output=1&error=1").unwrap();
        assert!(o.stdin && o.stdout && o.stderr);
        assert!(StreamOpts::from_query("command=ls").is_err());
    }

    #[test]
    fn narrows_client_go_offer_only() {
        assert_eq!(
            narrow_offer(
                "v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io"
            ),
            Some("v5.channel.k8s.io")
        );
        // kube-rs offers v5 and v4 and cannot fall back to SPDY.
        assert_eq!(narrow_offer("v5.channel.k8s.io, v4.channel.k8s.io"), None);
        assert_eq!(narrow_offer("v4.channel.k8s.io"), None);
    }

    #[test]
    fn detects_upgrades() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(!is_upgrade(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
    }
}
