//! The WebSocket transport for exec and attach (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`): every binary message starts with its channel
//! byte; v5 adds a close message (255, channel) for stdin EOF. Also
//! kubectl's WebSocket-tunneled SPDY (`SPDY/3.1+portforward.k8s.io`):
//! binary messages carry the SPDY byte stream.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::session::{parse_resizes, remote_command, Inbound, Outbound, Target};
use crate::Backend;

pub(crate) async fn run<S>(io: S, target: Target, v5: bool, backend: Arc<dyn Backend>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut stream) = ws.split();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let session = tokio::spawn(remote_command(target, backend, in_rx, out_tx, true));
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) if !b.is_empty() => match b[0] {
                    0 => {
                        let _ = in_tx.send(Inbound::Stdin(b[1..].to_vec()));
                    }
                    4 => {
                        for s in parse_resizes(&b[1..]) {
                            let _ = in_tx.send(Inbound::Resize(s));
                        }
                    }
                    255 if v5 && b.get(1) == Some(&0) => {
                        let _ = in_tx.send(Inbound::StdinEof);
                    }
                    _ => {}
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = in_tx.send(Inbound::Gone);
    });
    while let Some(m) = out_rx.recv().await {
        let (ch, data, last) = match m {
            Outbound::Stdout(d) => (1u8, d, false),
            Outbound::Stderr(d) => (2u8, d, false),
            Outbound::Status(s) => (3u8, s, true),
        };
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(ch);
        frame.extend_from_slice(&data);
        if sink.send(Message::Binary(frame.into())).await.is_err() {
            break;
        }
        if last {
            break;
        }
    }
    let _ = session.await;
    // A normal close is EOF for every channel on the client; anything
    // else (even a close without a code) is an error there.
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    let _ = sink.close().await;
    reader.abort();
}

/// Serves SPDY carried in WebSocket binary messages (port-forward).
pub(crate) async fn run_spdy_tunnel<S>(io: S, target: Target, backend: Arc<dyn Backend>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut stream) = ws.split();
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut pr, mut pw) = tokio::io::split(ours);
    // WebSocket → SPDY session.
    let inbound = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let ok = match msg {
                Message::Binary(b) => pw.write_all(&b).await.is_ok(),
                Message::Close(_) => false,
                _ => true,
            };
            if !ok {
                break;
            }
        }
        let _ = pw.shutdown().await;
    });
    // SPDY session → WebSocket.
    let outbound = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        let _ = sink.close().await;
    });
    crate::session::run_spdy(theirs, target, "portforward.k8s.io".into(), backend).await;
    let _ = outbound.await;
    inbound.abort();
}
