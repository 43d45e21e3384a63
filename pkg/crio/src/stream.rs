//! The streaming server's backend: exec runs `<runtime> exec` in the
//! container, attach joins conmon's attach socket, port-forward connects
//! to the port inside the sandbox's network namespace.

use std::sync::Weak;

use rkube_streaming::{Backend, BoxConn, BoxFuture, StreamIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::service::Crio;

/// Streams for the streaming server; holds the runtime weakly so the
/// server task does not keep it alive.
pub(crate) struct StreamBackend(pub(crate) Weak<Crio>);

impl StreamBackend {
    fn crio(&self) -> Result<std::sync::Arc<Crio>, String> {
        self.0
            .upgrade()
            .ok_or_else(|| "the runtime is shutting down".to_string())
    }
}

/// Copies `from` into `to` until EOF, then shuts `to` down (closing the
/// process's stdin, for example).
async fn pump<R, W>(mut from: R, mut to: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
}

impl Backend for StreamBackend {
    fn exec(
        &self,
        container_id: String,
        cmd: Vec<String>,
        io: StreamIo,
    ) -> BoxFuture<Result<i32, String>> {
        let crio = self.crio();
        Box::pin(async move {
            let crio = crio?;
            let c = crio
                .container_by_id(&container_id)
                .map_err(|e| e.to_string())?;
            let runtime = crio.runtime(&c.get().handler).map_err(|e| e.to_string())?;
            if cmd.is_empty() {
                return Err("exec needs a command".into());
            }
            let mut proc = runtime
                .exec(&c.id, &cmd, io.tty)
                .await
                .map_err(|e| e.to_string())?;
            let StreamIo {
                stdin,
                stdout,
                stderr,
                resize,
                ..
            } = io;
            let mut tasks = Vec::new();
            match (stdin, proc.take_stdin()) {
                (Some(from), Some(to)) => tasks.push(tokio::spawn(pump(from, to))),
                (None, Some(to)) => drop(to),
                _ => {}
            }
            let mut outputs = Vec::new();
            if let (Some(from), Some(to)) = (proc.take_stdout(), stdout) {
                outputs.push(tokio::spawn(pump(from, to)));
            }
            if let (Some(from), Some(to)) = (proc.take_stderr(), stderr) {
                outputs.push(tokio::spawn(pump(from, to)));
            }
            if let (Some(mut rx), Some(resizer)) = (resize, proc.resizer()) {
                tasks.push(tokio::spawn(async move {
                    while let Some(size) = rx.recv().await {
                        let _ = resizer.resize(size.width, size.height);
                    }
                }));
            }
            let code = proc.wait().await.map_err(|e| e.to_string())?;
            for o in outputs {
                let _ = o.await;
            }
            for t in tasks {
                t.abort();
            }
            Ok(code)
        })
    }

    fn attach(&self, container_id: String, io: StreamIo) -> BoxFuture<Result<(), String>> {
        let crio = self.crio();
        Box::pin(async move {
            let crio = crio?;
            let c = crio
                .container_by_id(&container_id)
                .map_err(|e| e.to_string())?;
            let bundle = c.bundle();
            let attach = crio
                .conmon
                .attach(&c.id, &bundle)
                .await
                .map_err(|e| e.to_string())?;
            let StreamIo {
                stdin,
                stdout,
                stderr,
                resize,
                ..
            } = io;
            if let Some(mut rx) = resize {
                let conmon = crio.conmon.clone();
                let bundle = bundle.clone();
                tokio::spawn(async move {
                    while let Some(size) = rx.recv().await {
                        let _ = conmon.resize(&bundle, size.width, size.height);
                    }
                });
            }
            attach
                .run(stdin, stdout, stderr)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn port_forward(&self, sandbox_id: String, port: u16) -> BoxFuture<Result<BoxConn, String>> {
        let crio = self.crio();
        Box::pin(async move {
            let crio = crio?;
            let sb = crio
                .reg
                .sandbox(&sandbox_id)
                .ok_or_else(|| format!("could not find pod {sandbox_id:?}"))?;
            let stream = match sb.get().netns {
                Some(ns) => rkube_network::netns::connect_tcp(&ns, port)
                    .await
                    .map_err(|e| format!("connecting to port {port} in the pod: {e}"))?,
                None => tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map_err(|e| format!("connecting to port {port}: {e}"))?,
            };
            Ok(Box::new(stream) as BoxConn)
        })
    }
}
