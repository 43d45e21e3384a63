//! Interoperability with the real kubectl (client-go's SPDY and WebSocket
//! clients): a minimal fake API server answers discovery and the pod GET
//! and forwards the exec/port-forward upgrade byte for byte to the
//! streaming server, as the API server and node agent do.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::tests::server;

/// Where the fake API server sends the next upgrade request (a path
/// on the streaming server, i.e. `/exec/<token>`).
type Next = Arc<Mutex<Vec<String>>>;

async fn read_head(c: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut b).await.ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    String::from_utf8(head).ok()
}

fn json_response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default","uid":"u1"},"spec":{"containers":[{"name":"c","image":"busybox"}]},"status":{"phase":"Running"}}"#;
const RESOURCES: &str = r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]}]}"#;

/// Upgrade protocols seen by the fake API server, in order.
type Seen = Arc<Mutex<Vec<String>>>;

async fn fake_apiserver(streaming: SocketAddr, next: Next) -> (SocketAddr, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            let next = next.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut c).await else {
                    return;
                };
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                let path_only = path.split('?').next().unwrap_or("");
                if path_only.ends_with("/exec")
                    || path_only.ends_with("/attach")
                    || path_only.ends_with("/portforward")
                {
                    let upgrade = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("upgrade:")
                                .map(|v| v.trim().to_string())
                        })
                        .unwrap_or_default();
                    seen.lock().unwrap().push(upgrade);
                    let target = next.lock().unwrap().remove(0);
                    let head = head.replacen(&path, &target, 1);
                    let mut up = TcpStream::connect(streaming).await.unwrap();
                    up.write_all(head.as_bytes()).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
                    return;
                }
                let body = match path_only {
                    "/api" => {
                        r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}"#
                    }
                    "/apis" => r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#,
                    "/api/v1" => RESOURCES,
                    "/api/v1/namespaces/default/pods/p" => POD,
                    _ => {
                        let msg = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
                        let _ = c
                            .write_all(
                                format!(
                                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                                    msg.len()
                                )
                                .as_bytes(),
                            )
                            .await;
                        return;
                    }
                };
                let _ = c.write_all(json_response(body).as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

fn path_of(url: &str) -> String {
    format!(
        "/{}",
        url.trim_start_matches("http://").split_once('/').unwrap().1
    )
}

fn kubectl(api: SocketAddr, home: &std::path::Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("kubectl");
    c.env("HOME", home)
        .env("KUBECONFIG", home.join("none"))
        .arg(format!("--server=http://{api}"))
        .arg(format!("--cache-dir={}", home.join("cache").display()))
        .arg("--request-timeout=20s");
    c
}

async fn kubectl_exec(websocket: bool, cmd: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let s = server().await;
    let next: Next = Arc::default();
    let (api, seen) = fake_apiserver(s.addr(), next.clone()).await;
    let req = api::ExecRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdin: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    // WebSocket first (kubectl's default), SPDY when that is refused
    // or disabled; each attempt needs its own URL as the kubelet does.
    next.lock()
        .unwrap()
        .push(path_of(&s.exec_url(&req).unwrap()));
    next.lock()
        .unwrap()
        .push(path_of(&s.exec_url(&req).unwrap()));
    let home = tempfile::tempdir().unwrap();
    let mut k = kubectl(api, home.path());
    k.env(
        "KUBECTL_REMOTE_COMMAND_WEBSOCKETS",
        if websocket { "true" } else { "false" },
    )
    .args(["exec", "-i", "p", "-c", "c", "--"])
    .args(cmd)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = k.spawn().unwrap();
    let mut i = child.stdin.take().unwrap();
    i.write_all(stdin).await.unwrap();
    drop(i);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl exec finished")
        .unwrap();
    let want = if websocket { "websocket" } else { "spdy/3.1" };
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[want.to_string()],
        "one upgrade, no fallback"
    );
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn kubectl_exec_over_websocket() {
    let (code, out, err) = kubectl_exec(true, &["cat"], b"hello ws").await;
    assert_eq!((code, out.as_slice()), (0, &b"HELLO WS"[..]), "{err}");
    let (code, _, err) = kubectl_exec(true, &["exit", "3"], b"").await;
    assert_eq!(code, 3, "{err}");
}

#[tokio::test]
async fn kubectl_exec_over_spdy() {
    let (code, out, err) = kubectl_exec(false, &["cat"], b"hello spdy").await;
    assert_eq!((code, out.as_slice()), (0, &b"HELLO SPDY"[..]), "{err}");
    let (code, _, err) = kubectl_exec(false, &["exit", "3"], b"").await;
    assert_eq!(code, 3, "{err}");
}

async fn kubectl_port_forward(websocket: bool) {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = echo.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let s = server().await;
    let next: Next = Arc::default();
    let (api, seen) = fake_apiserver(s.addr(), next.clone()).await;
    let req = api::PortForwardRequest {
        pod_sandbox_id: "sb".into(),
        port: vec![port as i32],
    };
    next.lock()
        .unwrap()
        .push(path_of(&s.port_forward_url(&req).unwrap()));
    next.lock()
        .unwrap()
        .push(path_of(&s.port_forward_url(&req).unwrap()));
    let home = tempfile::tempdir().unwrap();
    let mut k = kubectl(api, home.path());
    k.env(
        "KUBECTL_PORT_FORWARD_WEBSOCKETS",
        if websocket { "true" } else { "false" },
    )
    .args([
        "port-forward",
        "--address=127.0.0.1",
        "pod/p",
        &format!(":{port}"),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .kill_on_drop(true);
    let mut child = k.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("kubectl port-forward started")
        .unwrap()
        .unwrap();
    // "Forwarding from 127.0.0.1:NNNN -> PORT"
    let local: u16 = line
        .split(':')
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for msg in [&b"first connection"[..], b"second"] {
        let mut c = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
        c.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(std::time::Duration::from_secs(20), c.read_exact(&mut got))
            .await
            .expect("echo through kubectl")
            .unwrap();
        assert_eq!(got, msg);
    }
    child.kill().await.unwrap();
    let want = if websocket { "websocket" } else { "spdy/3.1" };
    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|s| s == want),
        "{seen:?}"
    );
}

#[tokio::test]
async fn kubectl_port_forward_over_spdy() {
    kubectl_port_forward(false).await;
}

#[tokio::test]
async fn kubectl_port_forward_over_websocket_tunnel() {
    kubectl_port_forward(true).await;
}
