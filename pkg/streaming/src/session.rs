//! Sessions: the remote-command core shared by both transports (client
//! input and output as messages, the backend's streams as pipes, the
//! final status), and the SPDY transports for remote commands and
//! port-forwarding.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::spdy::{self, Frame, HeaderDecoder, HeaderEncoder};
use crate::{Backend, StreamIo, TermSize};

/// Which streams the client asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Opts {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// What a session does.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Exec {
        id: String,
        cmd: Vec<String>,
        opts: Opts,
    },
    Attach {
        id: String,
        opts: Opts,
    },
    PortForward {
        sandbox: String,
    },
}

/// From the client.
pub(crate) enum Inbound {
    Stdin(Vec<u8>),
    StdinEof,
    Resize(TermSize),
    /// The client went away: stdin ends and the backend's output
    /// writes fail from now on, so that an attach or exec ends.
    Gone,
}

/// To the client.
pub(crate) enum Outbound {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The final status (JSON for v4+, plain text before).
    Status(Vec<u8>),
}

/// The v4 status object for an outcome.
pub(crate) fn status_json(result: &Result<i32, String>) -> Vec<u8> {
    let v = match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(msg) => {
            json!({"metadata": {}, "status": "Failure", "message": msg, "reason": "InternalError", "code": 500})
        }
    };
    serde_json::to_vec(&v).expect("json")
}

/// Parses resize messages (`{"Width":..,"Height":..}`, possibly several).
pub(crate) fn parse_resizes(data: &[u8]) -> Vec<TermSize> {
    serde_json::Deserializer::from_slice(data)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .filter_map(|v| {
            Some(TermSize {
                width: v.get("Width")?.as_u64()? as u16,
                height: v.get("Height")?.as_u64()? as u16,
            })
        })
        .collect()
}

async fn forward_output(
    mut r: impl AsyncRead + Unpin,
    out: mpsc::UnboundedSender<Outbound>,
    err: bool,
    mut gone: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let read = tokio::select! {
            r = r.read(&mut buf) => r,
            Ok(_) = gone.wait_for(|g| *g) => break,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = buf[..n].to_vec();
                let msg = if err {
                    Outbound::Stderr(chunk)
                } else {
                    Outbound::Stdout(chunk)
                };
                if out.send(msg).is_err() {
                    break;
                }
            }
        }
    }
}

/// Runs an exec or attach: wires the client's messages to the backend
/// and sends the outcome as the final status.
pub(crate) async fn remote_command(
    target: Target,
    backend: Arc<dyn Backend>,
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
    outbound: mpsc::UnboundedSender<Outbound>,
    json_status: bool,
) {
    let opts = match &target {
        Target::Exec { opts, .. } | Target::Attach { opts, .. } => *opts,
        Target::PortForward { .. } => return,
    };
    let (stdin_tx, stdin_rx) = tokio::io::duplex(64 * 1024);
    let (resize_tx, resize_rx) = mpsc::channel(8);
    let (gone_tx, gone_rx) = tokio::sync::watch::channel(false);
    let input = tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        while let Some(m) = inbound.recv().await {
            match m {
                Inbound::Stdin(d) => {
                    if let Some(w) = stdin_tx.as_mut() {
                        if w.write_all(&d).await.is_err() {
                            stdin_tx = None;
                        }
                    }
                }
                Inbound::StdinEof => {
                    if let Some(mut w) = stdin_tx.take() {
                        let _ = w.shutdown().await;
                    }
                }
                Inbound::Resize(s) => {
                    let _ = resize_tx.try_send(s);
                }
                Inbound::Gone => {
                    if let Some(mut w) = stdin_tx.take() {
                        let _ = w.shutdown().await;
                    }
                    let _ = gone_tx.send(true);
                }
            }
        }
        if let Some(mut w) = stdin_tx.take() {
            let _ = w.shutdown().await;
        }
    });
    let mut outputs = Vec::new();
    let mut io = StreamIo {
        stdin: opts
            .stdin
            .then(|| Box::new(stdin_rx) as Box<dyn AsyncRead + Send + Unpin>),
        stdout: None,
        stderr: None,
        tty: opts.tty,
        resize: opts.tty.then_some(resize_rx),
    };
    if opts.stdout {
        let (w, r) = tokio::io::duplex(64 * 1024);
        io.stdout = Some(Box::new(w));
        outputs.push(tokio::spawn(forward_output(
            r,
            outbound.clone(),
            false,
            gone_rx.clone(),
        )));
    }
    if opts.stderr && !opts.tty {
        let (w, r) = tokio::io::duplex(64 * 1024);
        io.stderr = Some(Box::new(w));
        outputs.push(tokio::spawn(forward_output(
            r,
            outbound.clone(),
            true,
            gone_rx.clone(),
        )));
    }
    let result = match target {
        Target::Exec { id, cmd, .. } => backend.exec(id, cmd, io).await,
        Target::Attach { id, .. } => backend.attach(id, io).await.map(|()| 0),
        Target::PortForward { .. } => unreachable!("handled above"),
    };
    for o in outputs {
        let _ = tokio::time::timeout(Duration::from_secs(5), o).await;
    }
    input.abort();
    let status = if json_status {
        status_json(&result)
    } else {
        match &result {
            Ok(0) => Vec::new(),
            Ok(c) => {
                format!("command terminated with non-zero exit code: exit code {c}").into_bytes()
            }
            Err(e) => e.clone().into_bytes(),
        }
    };
    let _ = outbound.send(Outbound::Status(status));
}

/// Writes frames in order; owns the header compressor.
enum Write {
    Reply(u32),
    Raw(Vec<u8>),
}

fn spawn_writer<W: AsyncWrite + Unpin + Send + 'static>(
    mut w: W,
) -> (mpsc::UnboundedSender<Write>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Write>();
    let task = tokio::spawn(async move {
        let mut enc = HeaderEncoder::new();
        while let Some(m) = rx.recv().await {
            let bytes = match m {
                Write::Reply(id) => spdy::syn_reply(&mut enc, id, false),
                Write::Raw(b) => b,
            };
            if w.write_all(&bytes).await.is_err() {
                break;
            }
            let _ = w.flush().await;
        }
        let _ = w.shutdown().await;
    });
    (tx, task)
}

/// Serves one SPDY connection.
pub(crate) async fn run_spdy<S>(io: S, target: Target, version: String, backend: Arc<dyn Backend>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (r, w) = tokio::io::split(io);
    match target {
        Target::PortForward { sandbox } => port_forward(r, w, sandbox, backend).await,
        t => spdy_remote_command(r, w, t, version, backend).await,
    }
}

async fn spdy_remote_command<R, W>(
    mut r: R,
    w: W,
    target: Target,
    version: String,
    backend: Arc<dyn Backend>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let opts = match &target {
        Target::Exec { opts, .. } | Target::Attach { opts, .. } => *opts,
        Target::PortForward { .. } => return,
    };
    let (wtx, writer) = spawn_writer(w);
    let mut dec = HeaderDecoder::new();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let ready = |ids: &HashMap<String, u32>| {
        ids.contains_key("error")
            && (!opts.stdin || ids.contains_key("stdin"))
            && (!opts.stdout || ids.contains_key("stdout"))
            && (!opts.stderr || opts.tty || ids.contains_key("stderr"))
    };
    // Wait for the client's streams (upstream allows 30 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut early: Vec<Frame> = Vec::new();
    while !ready(&ids) {
        let f = match tokio::time::timeout_at(deadline, spdy::read_frame(&mut r, &mut dec)).await {
            Ok(Ok(f)) => f,
            _ => {
                drop(wtx);
                let _ = writer.await;
                return;
            }
        };
        match f {
            Frame::SynStream { id, headers, .. } => {
                let _ = wtx.send(Write::Reply(id));
                if let Some(t) = headers.get("streamtype") {
                    ids.insert(t.clone(), id);
                }
            }
            Frame::Ping { id } => {
                let _ = wtx.send(Write::Raw(spdy::control(spdy::PING, 0, &id.to_be_bytes())));
            }
            Frame::GoAway => return,
            other => early.push(other),
        }
    }
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let json_status = version == "v4.channel.k8s.io";
    let session = tokio::spawn(remote_command(target, backend, in_rx, out_tx, json_status));
    // Client → session.
    let ids_in = ids.clone();
    let wtx_in = wtx.clone();
    let reader = tokio::spawn(async move {
        let mut ids = ids_in;
        let handle = |f: Frame, ids: &mut HashMap<String, u32>| -> bool {
            match f {
                Frame::Data { id, fin, data } => {
                    if Some(&id) == ids.get("stdin") {
                        if !data.is_empty() {
                            let _ = in_tx.send(Inbound::Stdin(data));
                        }
                        if fin {
                            let _ = in_tx.send(Inbound::StdinEof);
                        }
                    } else if Some(&id) == ids.get("resize") {
                        for s in parse_resizes(&data) {
                            let _ = in_tx.send(Inbound::Resize(s));
                        }
                    }
                }
                Frame::SynStream { id, headers, .. } => {
                    let _ = wtx_in.send(Write::Reply(id));
                    if let Some(t) = headers.get("streamtype") {
                        ids.insert(t.clone(), id);
                    }
                }
                Frame::Ping { id } => {
                    let _ =
                        wtx_in.send(Write::Raw(spdy::control(spdy::PING, 0, &id.to_be_bytes())));
                }
                Frame::Rst { id } if Some(&id) == ids.get("stdin") => {
                    let _ = in_tx.send(Inbound::StdinEof);
                }
                Frame::GoAway => return false,
                _ => {}
            }
            true
        };
        for f in early {
            handle(f, &mut ids);
        }
        while let Ok(f) = spdy::read_frame(&mut r, &mut dec).await {
            if !handle(f, &mut ids) {
                break;
            }
        }
        let _ = in_tx.send(Inbound::Gone);
    });
    // Session → client.
    while let Some(m) = out_rx.recv().await {
        match m {
            Outbound::Stdout(d) => {
                if let Some(id) = ids.get("stdout") {
                    let _ = wtx.send(Write::Raw(spdy::data(*id, false, &d)));
                }
            }
            Outbound::Stderr(d) => {
                if let Some(id) = ids.get("stderr") {
                    let _ = wtx.send(Write::Raw(spdy::data(*id, false, &d)));
                }
            }
            Outbound::Status(s) => {
                if let Some(id) = ids.get("error") {
                    if !s.is_empty() {
                        let _ = wtx.send(Write::Raw(spdy::data(*id, false, &s)));
                    }
                }
                break;
            }
        }
    }
    let _ = session.await;
    for name in ["stdout", "stderr", "error"] {
        if let Some(id) = ids.get(name) {
            let _ = wtx.send(Write::Raw(spdy::data(*id, true, &[])));
        }
    }
    // Give the client a moment to read everything, then close.
    drop(wtx);
    let _ = writer.await;
    reader.abort();
}

/// One forwarded connection's streams.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: u16,
    to_conn: Option<mpsc::UnboundedSender<Option<Vec<u8>>>>,
}

async fn port_forward<R, W>(mut r: R, w: W, sandbox: String, backend: Arc<dyn Backend>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (wtx, writer) = spawn_writer(w);
    let mut dec = HeaderDecoder::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut by_stream: HashMap<u32, String> = HashMap::new();
    loop {
        let f = match spdy::read_frame(&mut r, &mut dec).await {
            Ok(f) => f,
            Err(_) => break,
        };
        match f {
            Frame::SynStream { id, headers, .. } => {
                let _ = wtx.send(Write::Reply(id));
                let port: u16 = headers
                    .get("port")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let key = headers
                    .get("requestid")
                    .cloned()
                    .unwrap_or_else(|| port.to_string());
                by_stream.insert(id, key.clone());
                let pair = pairs.entry(key).or_default();
                pair.port = port;
                match headers.get("streamtype").map(String::as_str) {
                    Some("error") => pair.error = Some(id),
                    Some("data") => pair.data = Some(id),
                    _ => {}
                }
                if let (Some(eid), Some(did), None) = (pair.error, pair.data, &pair.to_conn) {
                    let (tx, rx) = mpsc::unbounded_channel();
                    pair.to_conn = Some(tx);
                    tokio::spawn(forward_one(
                        backend.clone(),
                        sandbox.clone(),
                        pair.port,
                        eid,
                        did,
                        rx,
                        wtx.clone(),
                    ));
                }
            }
            Frame::Data { id, fin, data } => {
                if let Some(pair) = by_stream.get(&id).and_then(|k| pairs.get(k)) {
                    if pair.data == Some(id) {
                        if let Some(tx) = &pair.to_conn {
                            if !data.is_empty() {
                                let _ = tx.send(Some(data));
                            }
                            if fin {
                                let _ = tx.send(None);
                            }
                        }
                    }
                }
            }
            Frame::Rst { id } => {
                if let Some(pair) = by_stream.get(&id).and_then(|k| pairs.get(k)) {
                    if let Some(tx) = &pair.to_conn {
                        let _ = tx.send(None);
                    }
                }
            }
            Frame::Ping { id } => {
                let _ = wtx.send(Write::Raw(spdy::control(spdy::PING, 0, &id.to_be_bytes())));
            }
            Frame::GoAway => break,
            Frame::Other => {}
        }
    }
    for p in pairs.values() {
        if let Some(tx) = &p.to_conn {
            let _ = tx.send(None);
        }
    }
    drop(wtx);
    let _ = writer.await;
}

async fn forward_one(
    backend: Arc<dyn Backend>,
    sandbox: String,
    port: u16,
    error_id: u32,
    data_id: u32,
    mut from_client: mpsc::UnboundedReceiver<Option<Vec<u8>>>,
    wtx: mpsc::UnboundedSender<Write>,
) {
    let conn = match backend.port_forward(sandbox.clone(), port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {sandbox}: {e}");
            let _ = wtx.send(Write::Raw(spdy::data(error_id, false, msg.as_bytes())));
            let _ = wtx.send(Write::Raw(spdy::data(error_id, true, &[])));
            let _ = wtx.send(Write::Raw(spdy::data(data_id, true, &[])));
            return;
        }
    };
    let (mut cr, mut cw) = tokio::io::split(conn);
    let up = tokio::spawn(async move {
        while let Some(m) = from_client.recv().await {
            match m {
                Some(d) => {
                    if cw.write_all(&d).await.is_err() {
                        break;
                    }
                }
                None => break,
            }
        }
        let _ = cw.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match cr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if wtx
                    .send(Write::Raw(spdy::data(data_id, false, &buf[..n])))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    let _ = wtx.send(Write::Raw(spdy::data(data_id, true, &[])));
    let _ = wtx.send(Write::Raw(spdy::data(error_id, true, &[])));
    let _ = up.await;
}

/// Header map helper for tests.
#[cfg(test)]
pub(crate) fn headers(pairs: &[(&str, &str)]) -> spdy::Headers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
