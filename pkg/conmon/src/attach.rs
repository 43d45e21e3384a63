//! conmon's attach socket: a SOCK_SEQPACKET unix socket at
//! `<socket dir>/<short id>/attach`. Each packet conmon sends starts with
//! a byte naming the pipe (2 stdout, 3 stderr) followed by the data;
//! what the client sends is the container's stdin, and shutting down the
//! write side closes it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{
    connect, recv, send, shutdown, socket, AddressFamily, MsgFlags, Shutdown, SockFlag, SockType,
    UnixAddr,
};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Conmon, Error, Result};

/// Which output a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipe {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A connection to a container's attach socket.
pub struct AttachIo {
    fd: AsyncFd<OwnedFd>,
}

fn io_err(e: nix::Error) -> std::io::Error {
    std::io::Error::from(e)
}

impl Conmon {
    /// Connects to the attach socket of container `id`.
    pub async fn attach(&self, id: &str, _bundle: &Path) -> Result<AttachIo> {
        let path = self
            .socket_dir
            .join(crate::create::short_id(id))
            .join("attach");
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| Error::io("create a socket for", &path)(io_err(e)))?;
        let addr = UnixAddr::new(&path).map_err(|e| Error::io("address", &path)(io_err(e)))?;
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) | Err(nix::Error::EINPROGRESS) => {}
            Err(e) => return Err(Error::io("connect to", &path)(io_err(e))),
        }
        // `AsyncFd::new` is deprecated for fds whose owner may close them
        // while registered; this OwnedFd lives exactly as long as the AsyncFd.
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd).map_err(Error::io("register", &path))?;
        Ok(AttachIo { fd })
    }
}

impl AttachIo {
    /// Receives one chunk of output; `None` when conmon closed the socket.
    pub async fn recv(&self) -> std::io::Result<Option<(Pipe, Vec<u8>)>> {
        let mut buf = vec![0u8; 8193];
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| {
                recv(inner.get_ref().as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(io_err)
            }) {
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(n)) => {
                    let pipe = if buf[0] == 3 {
                        Pipe::Stderr
                    } else {
                        Pipe::Stdout
                    };
                    return Ok(Some((pipe, buf[1..n].to_vec())));
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends stdin data.
    pub async fn send(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| {
                send(inner.get_ref().as_raw_fd(), data, MsgFlags::empty()).map_err(io_err)
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Closes the container's stdin (write side of the socket).
    pub fn close_stdin(&self) {
        let _ = shutdown(self.fd.get_ref().as_raw_fd(), Shutdown::Write);
    }

    /// Pumps until the container's output ends: stdin → container, output
    /// chunks → the writers (stderr to stdout when there is no stderr).
    pub async fn run(
        self,
        stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
        mut stdout: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
        mut stderr: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    ) -> Result<()> {
        let this = std::sync::Arc::new(self);
        let input = stdin.map(|mut r| {
            let this = this.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if this.send(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                this.close_stdin();
            })
        });
        while let Ok(Some((pipe, data))) = this.recv().await {
            let w = match (pipe, &mut stderr) {
                (Pipe::Stderr, Some(e)) => Some(e),
                _ => stdout.as_mut(),
            };
            if let Some(w) = w {
                if w.write_all(&data).await.is_err() || w.flush().await.is_err() {
                    break;
                }
            }
        }
        if let Some(t) = input {
            t.abort();
        }
        for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
            let _ = w.shutdown().await;
        }
        Ok(())
    }
}
