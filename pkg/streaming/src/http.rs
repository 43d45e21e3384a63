//! The HTTP side: one-time URLs, protocol negotiation and the upgrade to
//! WebSocket or SPDY.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::session::{Opts, Target};
use crate::{Pending, Shared};

type Resp = Response<Full<Bytes>>;

fn plain(code: StatusCode, msg: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(msg.to_string())));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Values of a (possibly repeated, comma-separated) header.
fn values(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

pub(crate) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, shared)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

const REMOTECOMMAND: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
const WS_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// kubectl's port-forward: SPDY/3.1 carried in WebSocket binary messages.
const WS_SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

fn handle(mut req: Request<Incoming>, shared: Arc<Shared>) -> Resp {
    let path = req.uri().path().trim_matches('/').to_string();
    let Some((verb, token)) = path.split_once('/') else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let is_ws = upgrade == "websocket";
    let is_spdy = upgrade.starts_with("spdy/3.1");
    if !is_ws && !is_spdy {
        return plain(
            StatusCode::BAD_REQUEST,
            "expected an upgrade to SPDY/3.1 or websocket",
        );
    }
    // Check the protocol before using up the token, so that a client
    // whose first offer is refused can retry (kubectl falls back from
    // WebSocket to SPDY with a new CRI call anyway).
    let wanted: &[&str] = if verb == "portforward" {
        &[WS_SPDY_TUNNEL]
    } else {
        WS_PROTOCOLS
    };
    let ws_proto = values(req.headers(), "sec-websocket-protocol")
        .into_iter()
        .find(|p| wanted.contains(&p.as_str()));
    if is_ws && ws_proto.is_none() {
        return plain(
            StatusCode::BAD_REQUEST,
            "unsupported WebSocket protocol; use v5.channel.k8s.io or v4.channel.k8s.io for exec/attach, SPDY/3.1+portforward.k8s.io for port-forward",
        );
    }
    let Some(pending) = shared.take(token) else {
        return plain(StatusCode::NOT_FOUND, "unknown or expired streaming token");
    };
    let target = match (verb, pending) {
        ("exec", Pending::Exec(r)) => Target::Exec {
            id: r.container_id,
            cmd: r.cmd,
            opts: Opts {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            },
        },
        ("attach", Pending::Attach(r)) => Target::Attach {
            id: r.container_id,
            opts: Opts {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            },
        },
        ("portforward", Pending::PortForward(r)) => Target::PortForward {
            sandbox: r.pod_sandbox_id,
        },
        _ => return plain(StatusCode::NOT_FOUND, "token does not match the request"),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if is_ws {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| k.as_bytes().to_vec())
            .unwrap_or_default();
        let proto = ws_proto.unwrap_or_default();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(
            &tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key),
        ) {
            h.insert("sec-websocket-accept", v);
        }
        if let Ok(v) = HeaderValue::from_str(&proto) {
            h.insert("sec-websocket-protocol", v);
        }
        let v5 = proto == "v5.channel.k8s.io";
        let tunnel = proto == WS_SPDY_TUNNEL;
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                if tunnel {
                    crate::ws::run_spdy_tunnel(TokioIo::new(up), target, shared.backend.clone())
                        .await;
                } else {
                    crate::ws::run(TokioIo::new(up), target, v5, shared.backend.clone()).await;
                }
            }
        });
        return resp;
    }
    let offered = values(req.headers(), "x-stream-protocol-version");
    let version = if matches!(target, Target::PortForward { .. }) {
        if !offered.is_empty() && !offered.iter().any(|p| p == "portforward.k8s.io") {
            return plain(
                StatusCode::FORBIDDEN,
                "unsupported port-forward protocol; expected portforward.k8s.io",
            );
        }
        "portforward.k8s.io".to_string()
    } else {
        match REMOTECOMMAND
            .iter()
            .find(|p| offered.iter().any(|o| o == *p))
        {
            Some(p) => p.to_string(),
            None if offered.is_empty() => "channel.k8s.io".to_string(),
            None => {
                return plain(
                    StatusCode::FORBIDDEN,
                    &format!(
                    "unable to upgrade: none of the offered protocols {offered:?} are supported"
                ),
                )
            }
        }
    };
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if let Ok(v) = HeaderValue::from_str(&version) {
        h.insert("x-stream-protocol-version", v);
    }
    tokio::spawn(async move {
        if let Ok(up) = on_upgrade.await {
            crate::session::run_spdy(TokioIo::new(up), target, version, shared.backend.clone())
                .await;
        }
    });
    resp
}
