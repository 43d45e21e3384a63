//! Streaming exec: `<runtime> exec` with pipes, or in the foreground on a
//! pseudo-terminal of ours (the runtime proxies it to the container's).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use tokio::process::Child;

use crate::{exit_code_of, Error, OciRuntime, Result};

/// A boxed writer.
pub type BoxWrite = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;
/// A boxed reader.
pub type BoxRead = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Resizes an exec's terminal.
#[derive(Clone)]
pub struct Resizer {
    pty: Arc<OwnedFd>,
    runtime_pid: Option<i32>,
}

impl Resizer {
    /// Sets the terminal size.
    pub fn resize(&self, width: u16, height: u16) -> Result<()> {
        rustix::termios::tcsetwinsize(
            self.pty.as_fd(),
            rustix::termios::Winsize {
                ws_row: height,
                ws_col: width,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .map_err(|e| Error::io("resize", "pty")(e.into()))?;
        // The runtime copies its terminal's size into the container's on SIGWINCH.
        if let Some(pid) = self.runtime_pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGWINCH,
            );
        }
        Ok(())
    }
}

/// A running exec.
pub struct ExecProcess {
    child: Child,
    stdin: Option<BoxWrite>,
    stdout: Option<BoxRead>,
    stderr: Option<BoxRead>,
    pty: Option<Arc<OwnedFd>>,
    pid: Option<i32>,
}

impl ExecProcess {
    /// The process's stdin (shutdown closes it).
    pub fn take_stdin(&mut self) -> Option<BoxWrite> {
        self.stdin.take()
    }
    /// Its stdout (the terminal with a tty).
    pub fn take_stdout(&mut self) -> Option<BoxRead> {
        self.stdout.take()
    }
    /// Its stderr (none with a tty).
    pub fn take_stderr(&mut self) -> Option<BoxRead> {
        self.stderr.take()
    }
    /// Terminal resizer, with a tty.
    pub fn resizer(&self) -> Option<Resizer> {
        self.pty.clone().map(|pty| Resizer {
            pty,
            runtime_pid: self.pid,
        })
    }
    /// Waits for the exit code.
    pub async fn wait(&mut self) -> Result<i32> {
        let st = self
            .child
            .wait()
            .await
            .map_err(Error::io("wait for", "exec"))?;
        Ok(exit_code_of(st))
    }
}

impl OciRuntime {
    /// Starts `cmd` in the container, with pipes or a terminal.
    pub async fn exec(&self, id: &str, cmd: &[String], tty: bool) -> Result<ExecProcess> {
        let mut c = self.command();
        c.arg("exec");
        if !tty {
            c.stdin(std::process::Stdio::piped());
            c.arg(id).args(cmd);
            let mut child = c.spawn().map_err(Error::io("run", &self.path))?;
            return Ok(ExecProcess {
                stdin: child.stdin.take().map(|s| Box::new(s) as BoxWrite),
                stdout: child.stdout.take().map(|s| Box::new(s) as BoxRead),
                stderr: child.stderr.take().map(|s| Box::new(s) as BoxRead),
                child,
                pty: None,
                pid: None,
            });
        }
        // runc and crun only hand a terminal over a console socket to
        // detached execs (whose exit code nobody could then wait for), so
        // the runtime runs in the foreground on a pty of ours: it puts its
        // own terminal in raw mode, proxies it to the container's, and
        // re-reads the size on SIGWINCH.
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let pty_err =
            |e: rustix::io::Errno| Error::io("open a pseudo-terminal", "/dev/ptmx")(e.into());
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(pty_err)?;
        grantpt(&master).map_err(pty_err)?;
        unlockpt(&master).map_err(pty_err)?;
        let name = ptsname(&master, Vec::new()).map_err(pty_err)?;
        let slave_path = std::path::PathBuf::from(name.to_string_lossy().into_owned());
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&slave_path)
            .map_err(Error::io("open", &slave_path))?;
        let dup = |f: &std::fs::File| f.try_clone().map_err(Error::io("open", &slave_path));
        c.arg("--tty").arg(id).args(cmd);
        c.stdin(dup(&slave)?).stdout(dup(&slave)?).stderr(slave);
        let child = c.spawn().map_err(Error::io("run", &self.path))?;
        let master = Arc::new(master);
        let reader = std::fs::File::from(master.try_clone().map_err(Error::io("clone", "pty"))?);
        let writer = std::fs::File::from(master.try_clone().map_err(Error::io("clone", "pty"))?);
        Ok(ExecProcess {
            stdin: Some(Box::new(tokio::fs::File::from_std(writer))),
            stdout: Some(Box::new(tokio::fs::File::from_std(reader))),
            stderr: None,
            pid: child.id().map(|p| p as i32),
            child,
            pty: Some(master),
        })
    }
}
