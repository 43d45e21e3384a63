//! The streaming server's backend on docker: exec and attach through the
//! Docker API's hijacked streams (with terminal resizes), port-forward to
//! the port inside the sandbox's pinned network namespace.

use std::pin::Pin;
use std::sync::{Arc, Weak};

use bollard::container::{AttachContainerResults, LogOutput};
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{
    AttachContainerOptions, ResizeContainerTTYOptions, ResizeExecOptions,
};
use futures::{Stream, StreamExt};
use rkube_streaming::{Backend, BoxConn, BoxFuture, StreamIo, TermSize};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::shim::Shim;

/// Streams for the streaming server; holds the shim weakly so the server
/// task does not keep it alive.
pub(crate) struct StreamBackend(pub(crate) Weak<Shim>);

impl StreamBackend {
    fn shim(&self) -> Result<Arc<Shim>, String> {
        self.0
            .upgrade()
            .ok_or_else(|| "the runtime is shutting down".to_string())
    }
}

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;
type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// Copies the client's stdin into the process, the process's output to
/// the client, until the output ends.
async fn pump(mut output: Output, input: Input, io: StreamIo) {
    let StreamIo {
        stdin,
        mut stdout,
        mut stderr,
        ..
    } = io;
    let feeder = stdin.map(|mut from| {
        let mut to = input;
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            let _ = to.shutdown().await;
        })
    });
    while let Some(Ok(chunk)) = output.next().await {
        let (dst, bytes) = match chunk {
            LogOutput::StdErr { message } => (stderr.as_mut(), message),
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                (stdout.as_mut(), message)
            }
            LogOutput::StdIn { .. } => continue,
        };
        if let Some(w) = dst {
            if w.write_all(&bytes).await.is_err() {
                break;
            }
            let _ = w.flush().await;
        }
    }
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
    if let Some(f) = feeder {
        f.abort();
    }
}

/// Forwards terminal sizes to `resize` until the client stops sending.
fn resizes<F, Fut>(rx: Option<tokio::sync::mpsc::Receiver<TermSize>>, resize: F)
where
    F: Fn(TermSize) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    if let Some(mut rx) = rx {
        tokio::spawn(async move {
            while let Some(size) = rx.recv().await {
                resize(size).await;
            }
        });
    }
}

impl Backend for StreamBackend {
    fn exec(
        &self,
        container_id: String,
        cmd: Vec<String>,
        mut io: StreamIo,
    ) -> BoxFuture<Result<i32, String>> {
        let shim = self.shim();
        Box::pin(async move {
            let shim = shim?;
            let docker = shim.docker.clone();
            let exec = docker
                .create_exec(
                    &container_id,
                    CreateExecOptions {
                        attach_stdin: Some(io.stdin.is_some()),
                        attach_stdout: Some(io.stdout.is_some()),
                        attach_stderr: Some(io.stderr.is_some()),
                        tty: Some(io.tty),
                        cmd: Some(cmd),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            let started = docker
                .start_exec(
                    &exec.id,
                    Some(StartExecOptions {
                        detach: false,
                        tty: io.tty,
                        output_capacity: None,
                    }),
                )
                .await
                .map_err(|e| e.to_string())?;
            let StartExecResults::Attached { output, input } = started else {
                return Err("docker detached the exec".into());
            };
            let (d, id) = (docker.clone(), exec.id.clone());
            resizes(io.resize.take(), move |s| {
                let (d, id) = (d.clone(), id.clone());
                async move {
                    let _ = d
                        .resize_exec(
                            &id,
                            ResizeExecOptions {
                                h: s.height as i32,
                                w: s.width as i32,
                            },
                        )
                        .await;
                }
            });
            pump(output, input, io).await;
            let code = docker
                .inspect_exec(&exec.id)
                .await
                .map_err(|e| e.to_string())?
                .exit_code
                .unwrap_or(0);
            Ok(code as i32)
        })
    }

    fn attach(&self, container_id: String, mut io: StreamIo) -> BoxFuture<Result<(), String>> {
        let shim = self.shim();
        Box::pin(async move {
            let shim = shim?;
            let docker = shim.docker.clone();
            let AttachContainerResults { output, input } = docker
                .attach_container(
                    &container_id,
                    Some(AttachContainerOptions {
                        stream: true,
                        logs: false,
                        stdin: io.stdin.is_some(),
                        stdout: io.stdout.is_some(),
                        stderr: io.stderr.is_some(),
                        detach_keys: None,
                    }),
                )
                .await
                .map_err(|e| e.to_string())?;
            let (d, id) = (docker.clone(), container_id.clone());
            resizes(io.resize.take(), move |s| {
                let (d, id) = (d.clone(), id.clone());
                async move {
                    let _ = d
                        .resize_container_tty(
                            &id,
                            ResizeContainerTTYOptions {
                                h: s.height as i32,
                                w: s.width as i32,
                            },
                        )
                        .await;
                }
            });
            pump(output, input, io).await;
            Ok(())
        })
    }

    fn port_forward(&self, sandbox_id: String, port: u16) -> BoxFuture<Result<BoxConn, String>> {
        let shim = self.shim();
        Box::pin(async move {
            let shim = shim?;
            let sb = shim.sandbox(&sandbox_id).await.map_err(|e| e.to_string())?;
            let ns = shim.cfg.netns_dir().join(&sb.id);
            let stream = if rkube_network::netns::exists(&ns) {
                rkube_network::netns::connect_tcp(&ns, port)
                    .await
                    .map_err(|e| format!("connecting to port {port} in the pod: {e}"))?
            } else {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map_err(|e| format!("connecting to port {port}: {e}"))?
            };
            Ok(Box::new(stream) as BoxConn)
        })
    }
}
