//! The WebSocket transport for exec and attach (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`): every binary message starts with its channel
//! byte; v5 adds a close message (255, channel) for stdin EOF.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::Role;
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
        let _ = in_tx.send(Inbound::StdinEof);
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
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.close().await;
    reader.abort();
}
