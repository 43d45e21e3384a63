//! Protocol tests over real sockets with a fake backend (the protocol is
//! this crate's logic; real containers are exercised by the e2e tests).

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::*;
use crate::session::headers;
use crate::spdy::{self, Frame, HeaderDecoder, HeaderEncoder};

/// Echoes stdin to stdout in upper case; `exit N` exits with N.
pub(crate) struct Fake;

static ATTACH_ENDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Backend for Fake {
    fn exec(
        &self,
        _id: String,
        cmd: Vec<String>,
        mut io: StreamIo,
    ) -> BoxFuture<Result<i32, String>> {
        Box::pin(async move {
            if cmd[0] == "fail" {
                return Err("no such container".into());
            }
            let code = if cmd[0] == "exit" {
                cmd[1].parse().unwrap()
            } else {
                0
            };
            let mut input = Vec::new();
            if let Some(mut i) = io.stdin.take() {
                i.read_to_end(&mut input).await.unwrap();
            }
            if let Some(mut o) = io.stdout.take() {
                o.write_all(&input.to_ascii_uppercase()).await.unwrap();
                o.shutdown().await.unwrap();
            }
            Ok(code)
        })
    }
    /// `resize`: reports the first terminal size on stdout; `forever`:
    /// writes until the client is gone, then records that it ended.
    fn attach(&self, id: String, mut io: StreamIo) -> BoxFuture<Result<(), String>> {
        Box::pin(async move {
            let mut out = io.stdout.take().ok_or("no stdout")?;
            if id == "resize" {
                let sz = io
                    .resize
                    .as_mut()
                    .ok_or("no resize")?
                    .recv()
                    .await
                    .ok_or("no size")?;
                let _ = out
                    .write_all(format!("{}x{}", sz.width, sz.height).as_bytes())
                    .await;
                return Ok(());
            }
            while out.write_all(b"tick\n").await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            ATTACH_ENDED.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
    }
    fn port_forward(&self, _sandbox: String, port: u16) -> BoxFuture<Result<BoxConn, String>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| e.to_string())?;
            Ok(Box::new(s) as BoxConn)
        })
    }
}

pub(crate) async fn server() -> Server {
    Server::start("127.0.0.1:0".parse().unwrap(), Arc::new(Fake))
        .await
        .unwrap()
}

fn exec_req(cmd: &[&str]) -> api::ExecRequest {
    api::ExecRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdin: true,
        stdout: true,
        ..Default::default()
    }
}

async fn ws_exec(s: &Server, cmd: &[&str]) -> (Vec<u8>, serde_json::Value) {
    let url = s
        .exec_url(&exec_req(cmd))
        .unwrap()
        .replace("http://", "ws://");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    ws.send(Message::Binary(b"\x00hello".to_vec().into()))
        .await
        .unwrap();
    ws.send(Message::Binary(vec![255, 0].into())).await.unwrap();
    let mut out = Vec::new();
    let mut status = serde_json::Value::Null;
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Binary(b) = m {
            match b[0] {
                1 => out.extend_from_slice(&b[1..]),
                3 => status = serde_json::from_slice(&b[1..]).unwrap(),
                _ => {}
            }
        }
    }
    (out, status)
}

#[tokio::test]
async fn websocket_v5_exec_with_stdin_close_and_exit_codes() {
    let s = server().await;
    let (out, status) = ws_exec(&s, &["cat"]).await;
    assert_eq!(out, b"HELLO");
    assert_eq!(status["status"], "Success");
    let (_, status) = ws_exec(&s, &["exit", "3"]).await;
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
}

#[tokio::test]
async fn tokens_are_single_use_and_requests_validated() {
    let s = server().await;
    let mut no_stdin = exec_req(&["cat"]);
    no_stdin.stdin = false;
    let url = s.exec_url(&no_stdin).unwrap();
    let token_path = url
        .trim_start_matches(&format!("http://{}", s.addr()))
        .to_string();
    let _ = ws_exec_url(&url).await;
    let mut c = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    c.write_all(format!("POST {token_path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = c.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 404"));
    // An unused URL older than a minute is gone too.
    let url = s.exec_url(&exec_req(&["cat"])).unwrap();
    let token = url.rsplit('/').next().unwrap().to_string();
    if let Some((_, at)) = s.shared.tokens.lock().unwrap().get_mut(&token) {
        *at -= std::time::Duration::from_secs(61);
    }
    assert!(s.shared.take(&token).is_none(), "expired token");
    let mut bad = exec_req(&["cat"]);
    bad.tty = true;
    bad.stderr = true;
    assert_eq!(
        s.exec_url(&bad).unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    bad = exec_req(&[]);
    assert!(s.exec_url(&bad).is_err());
}

async fn ws_exec_url(url: &str) {
    let mut req = url
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "v4.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
}

/// Upgrades a TCP connection to SPDY for `url`.
async fn spdy_connect(url: &str, protocol: &str) -> tokio::net::TcpStream {
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_once('/').unwrap();
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(format!("POST /{path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains(&format!("x-stream-protocol-version: {protocol}")),
        "{head}"
    );
    c
}

/// Runs `cmd` over SPDY v4 with stdin "abc"; stdout and the status.
async fn spdy_exec(s: &Server, cmd: &[&str]) -> (Vec<u8>, serde_json::Value) {
    let mut c = spdy_connect(&s.exec_url(&exec_req(cmd)).unwrap(), "v4.channel.k8s.io").await;
    let mut enc = HeaderEncoder::new();
    let mut dec = HeaderDecoder::new();
    for (id, t) in [(1, "error"), (3, "stdin"), (5, "stdout")] {
        c.write_all(&spdy::syn_stream(
            &mut enc,
            id,
            &headers(&[("streamtype", t)]),
        ))
        .await
        .unwrap();
    }
    c.write_all(&spdy::data(3, false, b"abc")).await.unwrap();
    c.write_all(&spdy::data(3, true, b"")).await.unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut replies = 0;
    loop {
        match spdy::read_frame(&mut c, &mut dec).await {
            Ok(Frame::Data { id: 5, data, .. }) => out.extend(data),
            Ok(Frame::Data { id: 1, data, fin }) => {
                err.extend(data);
                if fin {
                    break;
                }
            }
            Ok(Frame::Other) => replies += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(replies, 3, "every stream got a SYN_REPLY");
    (out, serde_json::from_slice(&err).unwrap())
}

#[tokio::test]
async fn spdy_exec_v4_exit_codes() {
    let s = server().await;
    let (out, status) = spdy_exec(&s, &["cat"]).await;
    assert_eq!(out, b"ABC");
    assert_eq!(status["status"], "Success");
    let (out, status) = spdy_exec(&s, &["exit", "3"]).await;
    assert_eq!(out, b"ABC");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    let (_, status) = spdy_exec(&s, &["fail"]).await;
    assert_eq!(status["message"], "no such container");
}

fn attach_req(id: &str, tty: bool) -> api::AttachRequest {
    api::AttachRequest {
        container_id: id.into(),
        stdout: true,
        tty,
        ..Default::default()
    }
}

#[tokio::test]
async fn spdy_attach_with_tty_resize() {
    let s = server().await;
    let mut c = spdy_connect(
        &s.attach_url(&attach_req("resize", true)).unwrap(),
        "v4.channel.k8s.io",
    )
    .await;
    let mut enc = HeaderEncoder::new();
    let mut dec = HeaderDecoder::new();
    for (id, t) in [(1, "error"), (3, "stdout"), (5, "resize")] {
        c.write_all(&spdy::syn_stream(
            &mut enc,
            id,
            &headers(&[("streamtype", t)]),
        ))
        .await
        .unwrap();
    }
    c.write_all(&spdy::data(5, false, br#"{"Width":120,"Height":40}"#))
        .await
        .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match spdy::read_frame(&mut c, &mut dec).await {
            Ok(Frame::Data { id: 3, data, .. }) => out.extend(data),
            Ok(Frame::Data { id: 1, data, fin }) => {
                err.extend(data);
                if fin {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(out, b"120x40");
    let status: serde_json::Value = serde_json::from_slice(&err).unwrap();
    assert_eq!(status["status"], "Success");
}

#[tokio::test]
async fn websocket_attach_ends_when_the_client_goes_away() {
    let s = server().await;
    let url = s
        .attach_url(&attach_req("forever", false))
        .unwrap()
        .replace("http://", "ws://");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], b"\x01tick\n"),
        other => panic!("{other:?}"),
    }
    drop(ws);
    for _ in 0..200 {
        if ATTACH_ENDED.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the backend's attach still runs after the client left");
}

#[tokio::test]
async fn spdy_port_forward_to_an_echo_server() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(&buf[..n]).await.unwrap();
    });
    let s = server().await;
    let url = s
        .port_forward_url(&api::PortForwardRequest {
            pod_sandbox_id: "sb".into(),
            port: vec![port as i32],
        })
        .unwrap();
    let mut c = spdy_connect(&url, "portforward.k8s.io").await;
    let mut enc = HeaderEncoder::new();
    let mut dec = HeaderDecoder::new();
    let p = port.to_string();
    c.write_all(&spdy::syn_stream(
        &mut enc,
        1,
        &headers(&[("streamtype", "error"), ("port", &p), ("requestid", "0")]),
    ))
    .await
    .unwrap();
    c.write_all(&spdy::syn_stream(
        &mut enc,
        3,
        &headers(&[("streamtype", "data"), ("port", &p), ("requestid", "0")]),
    ))
    .await
    .unwrap();
    c.write_all(&spdy::data(3, false, b"ping")).await.unwrap();
    let mut got = Vec::new();
    let mut replies = 0;
    while got.len() < 4 {
        match spdy::read_frame(&mut c, &mut dec).await.unwrap() {
            Frame::Data { id: 3, data, .. } => got.extend(data),
            Frame::Other => replies += 1,
            _ => {}
        }
    }
    assert_eq!(got, b"ping");
    assert_eq!(replies, 2, "both streams got a SYN_REPLY");
}
