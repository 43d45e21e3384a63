//! Server tests over real TLS on 127.0.0.1: authentication, logs, and
//! splicing an upgraded connection to a fake streaming server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rkube_cri::api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::runtime::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};
use super::testutil::*;
use super::*;

struct Running {
    addr: SocketAddr,
    pki: TestPki,
    _stop: tokio::sync::watch::Sender<bool>,
    _logs: tempfile::TempDir,
}

fn container(id: &str, attempt: u32, created: i64) -> api::Container {
    api::Container {
        id: id.into(),
        created_at: created,
        state: api::ContainerState::ContainerExited as i32,
        metadata: Some(api::ContainerMetadata {
            name: "app".into(),
            attempt,
        }),
        labels: HashMap::from([
            (LABEL_POD_NAMESPACE.to_string(), "default".to_string()),
            (LABEL_POD_NAME.to_string(), "web".to_string()),
            (LABEL_POD_UID.to_string(), "u1".to_string()),
            (LABEL_CONTAINER_NAME.to_string(), "app".to_string()),
        ]),
        ..Default::default()
    }
}

async fn start_server(mut rt: FakeRuntime) -> Running {
    let pki = TestPki::new();
    let logs = tempfile::tempdir().unwrap();
    // One container, its log in the standard place (no log_path from CRI).
    let dir = logs.path().join("default_web_u1").join("app");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("0.log"),
        "2024-01-01T00:00:01Z stdout F hello\n2024-01-01T00:00:02Z stderr F world\n",
    )
    .unwrap();
    std::fs::write(logs.path().join("syslog"), "node log\n").unwrap();
    if rt.containers.is_empty() {
        rt.containers.push(container("c0", 0, 1));
    }
    let cri = rkube_cri::connect(std::path::Path::new("/nonexistent.sock")).unwrap();
    let cfg = ServerConfig {
        node_name: "node1".into(),
        cri,
        log_root: logs.path().to_path_buf(),
        serving_cert_pem: pki.serving.0.clone(),
        serving_key_pem: pki.serving.1.clone(),
        client_ca_pem: pki.ca.clone(),
        bind: "127.0.0.1:0".parse().unwrap(),
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let addr = start_with(cfg, Arc::new(rt), logs.path().to_path_buf(), rx)
        .await
        .unwrap();
    Running {
        addr,
        pki,
        _stop: stop,
        _logs: logs,
    }
}

/// GET with a client identity; returns (status, body).
async fn get(srv: &Running, cert: Option<&(Vec<u8>, Vec<u8>)>, path: &str) -> (u16, String) {
    let mut c = connect(srv.addr, srv.pki.client(cert)).await;
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.ok();
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (code, body)
}

#[tokio::test]
async fn authenticates_and_authorizes() {
    let srv = start_server(FakeRuntime::default()).await;
    assert_eq!(get(&srv, None, "/healthz").await, (200, "ok".into()));
    assert_eq!(get(&srv, None, "/pods").await.0, 401);
    // A node's own client certificate (system:nodes) is not enough.
    assert_eq!(get(&srv, Some(&srv.pki.node), "/pods").await.0, 403);
    assert_eq!(get(&srv, Some(&srv.pki.admin), "/pods").await.0, 200);
    let (code, body) = get(&srv, Some(&srv.pki.kubelet_client), "/logs/").await;
    assert_eq!(code, 200);
    assert!(body.contains("<a href=\"syslog\">syslog</a>"), "{body}");
    let (_, body) = get(&srv, Some(&srv.pki.kubelet_client), "/logs/syslog").await;
    assert_eq!(body, "node log\n");
}

#[tokio::test]
async fn serves_container_logs() {
    let srv = start_server(FakeRuntime::default()).await;
    let k = Some(&srv.pki.kubelet_client);
    let (code, body) = get(&srv, k, "/containerLogs/default/web/app").await;
    assert_eq!(code, 200);
    assert!(
        body.ends_with("hello\r\n6\r\nworld\n\r\n0\r\n\r\n") || body.contains("world"),
        "{body}"
    );
    let (code, body) = get(
        &srv,
        k,
        "/containerLogs/default/web/app?tailLines=1&timestamps=true",
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        body.contains("2024-01-01T00:00:02.000000000Z world\n") && !body.contains("hello"),
        "{body}"
    );
    let (code, body) = get(&srv, k, "/containerLogs/default/web/app?previous=true").await;
    assert_eq!(code, 400);
    assert_eq!(
        body,
        "previous terminated container \"app\" in pod \"web\" not found"
    );
    let (code, body) = get(&srv, k, "/containerLogs/default/web/nope").await;
    assert_eq!(code, 400, "{body}");
}

#[tokio::test]
async fn previous_logs_pick_the_earlier_attempt() {
    let rt = FakeRuntime {
        containers: vec![container("c0", 0, 1), container("c1", 1, 2)],
        ..Default::default()
    };
    let srv = start_server(rt).await;
    let dir = srv._logs.path().join("default_web_u1").join("app");
    std::fs::write(dir.join("1.log"), "2024-01-01T00:00:03Z stdout F again\n").unwrap();
    let k = Some(&srv.pki.kubelet_client);
    let (_, body) = get(&srv, k, "/containerLogs/default/web/app").await;
    assert!(body.contains("again") && !body.contains("hello"), "{body}");
    let (_, body) = get(&srv, k, "/containerLogs/default/web/app?previous=1").await;
    assert!(body.contains("hello") && !body.contains("again"), "{body}");
}

const EXEC: &str =
    "/exec/default/web/app?command=sh&command=-c&command=true&stdin=1&stdout=1&stderr=1";

#[tokio::test]
async fn splices_an_upgraded_exec_stream() {
    let (up, seen) = fake_streaming_server(Upstream::Echo).await;
    let rt = FakeRuntime {
        url: format!("http://{up}/exec/token123"),
        ..Default::default()
    };
    let srv = start_server(rt).await;
    let mut c = connect(srv.addr, srv.pki.client(Some(&srv.pki.kubelet_client))).await;
    c.write_all(
        format!(
            "POST {EXEC} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
X-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );
    for msg in [&b"\x80\x03\x00\x01binary"[..], b"second chunk"] {
        c.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, msg);
    }
    let upstream_head = seen.lock().unwrap()[0].clone();
    assert!(
        upstream_head.starts_with("POST /exec/token123 HTTP/1.1"),
        "{upstream_head}"
    );
    let lower = upstream_head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: spdy/3.1"), "{upstream_head}");
    assert!(
        lower.contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{upstream_head}"
    );
    assert!(
        lower.contains("x-stream-protocol-version: channel.k8s.io"),
        "{upstream_head}"
    );
}

#[tokio::test]
async fn passes_a_refused_websocket_upgrade_back() {
    let (up, seen) = fake_streaming_server(Upstream::Refuse).await;
    let rt = FakeRuntime {
        url: format!("http://{up}/exec/t"),
        ..Default::default()
    };
    let srv = start_server(rt).await;
    let mut c = connect(srv.addr, srv.pki.client(Some(&srv.pki.admin))).await;
    c.write_all(
        format!(
            "GET {EXEC} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Protocol: v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut c))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let upstream_head = seen.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        upstream_head.contains("sec-websocket-protocol: v5.channel.k8s.io\r\n"),
        "{upstream_head}"
    );
    assert!(
        upstream_head.contains("sec-websocket-key: dghlihnhbxbszsbub25jzq=="),
        "{upstream_head}"
    );
}
