//! Creating a container through conmon: conmon runs `<runtime> create`,
//! reports the container's pid (or the runtime's error) on the sync pipe
//! and stays behind as the container's monitor; exit codes and the
//! control fifo (resize, reopen log).

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};

use command_fds::{CommandFdExt, FdMapping};

use crate::{Conmon, CreateOptions, Error, Result};

/// Short name conmon uses for the attach socket directory (socket paths
/// must fit in 108 bytes).
pub(crate) fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Reads the pid (or error) conmon writes on the sync pipe: JSON objects
/// `{"data": pid}` / `{"pid": pid}`, negative with a `message` on failure.
pub(crate) fn parse_sync(text: &str) -> std::result::Result<i32, String> {
    let mut last_err = None;
    for chunk in text.split('\n').filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(chunk) else {
            continue;
        };
        let pid = v
            .get("data")
            .or_else(|| v.get("pid"))
            .and_then(|p| p.as_i64())
            .unwrap_or(-1);
        if pid > 0 {
            return Ok(pid as i32);
        }
        last_err = Some(
            v.get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("container creation failed")
                .to_string(),
        );
    }
    Err(last_err.unwrap_or_else(|| format!("conmon reported nothing usable: {text:?}")))
}

impl Conmon {
    /// Creates the container under a new conmon; returns its init pid.
    pub async fn create(&self, opts: &CreateOptions<'_>) -> Result<i32> {
        for d in [&self.exits_dir, &self.socket_dir] {
            std::fs::create_dir_all(d).map_err(Error::io("create directory", d))?;
        }
        let _ = std::fs::remove_file(self.exits_dir.join(opts.id));
        let (sync_r, sync_w) =
            nix::unistd::pipe().map_err(|e| Error::io("create pipe for", &self.path)(e.into()))?;
        let mut cmd = Command::new(&self.path);
        cmd.args([
            "--api-version",
            "1",
            "-c",
            opts.id,
            "-u",
            short_id(opts.id),
            "-n",
            opts.id,
        ])
        .arg("-r")
        .arg(&opts.runtime.path)
        .arg("-b")
        .arg(opts.bundle)
        .arg("-p")
        .arg(opts.container_pidfile)
        .arg("-P")
        .arg(opts.conmon_pidfile)
        .arg("-l")
        .arg(format!("k8s-file:{}", opts.log_path.display()))
        .arg("--exit-dir")
        .arg(&self.exits_dir)
        .arg("--socket-dir-path")
        .arg(&self.socket_dir)
        .args(["--log-level", "error", "--syslog"])
        .arg("--runtime-arg")
        .arg(format!("--root={}", opts.runtime.root.display()));
        for a in &opts.runtime.global_args {
            cmd.arg("--runtime-arg").arg(a);
        }
        if opts.terminal {
            cmd.arg("-t");
        }
        if opts.stdin {
            cmd.arg("-i");
            if !opts.stdin_once {
                cmd.arg("--leave-stdin-open");
            }
        }
        cmd.env("_OCI_SYNCPIPE", "3")
            .current_dir(opts.bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .fd_mappings(vec![FdMapping {
                parent_fd: sync_w,
                child_fd: 3,
            }])
            .map_err(|e| Error::Runtime {
                program: "conmon".into(),
                verb: "create".into(),
                message: e.to_string(),
            })?;
        let conmon = self.path.clone();
        let id = opts.id.to_string();
        tokio::task::spawn_blocking(move || -> Result<i32> {
            let mut child = cmd.spawn().map_err(Error::io("run", &conmon))?;
            // The Command still holds the write end until it is dropped.
            drop(cmd);
            // conmon's first process exits once the monitor runs on its own.
            let status = child.wait();
            // One JSON line: the pid, or the runtime's error. conmon may keep
            // the pipe open afterwards, so read a line, not to EOF.
            let mut text = String::new();
            let f = std::fs::File::from(sync_r);
            let _ = std::io::BufReader::new(f).read_line(&mut text);
            parse_sync(&text).map_err(|message| Error::Runtime {
                program: "conmon".into(),
                verb: format!("create {id}"),
                message: match status {
                    Ok(s) if !s.success() && text.is_empty() => {
                        format!("{message} (conmon exited with {s})")
                    }
                    _ => message,
                },
            })
        })
        .await
        .map_err(|e| Error::io("run", &self.path)(std::io::Error::other(e.to_string())))?
    }

    /// The exit code conmon recorded for `id`.
    pub fn exit_code(&self, id: &str) -> Option<i32> {
        std::fs::read_to_string(self.exits_dir.join(id))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// When conmon recorded the exit.
    pub fn exit_time(&self, id: &str) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.exits_dir.join(id))
            .ok()?
            .modified()
            .ok()
    }

    fn ctl(&self, bundle: &std::path::Path, msg: &str) -> Result<()> {
        let path = bundle.join("ctl");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        f.write_all(msg.as_bytes())
            .map_err(Error::io("write", &path))
    }

    /// Resizes the container's terminal.
    pub fn resize(&self, bundle: &std::path::Path, width: u16, height: u16) -> Result<()> {
        self.ctl(bundle, &format!("1 {height} {width}\n"))
    }

    /// Makes conmon reopen the log file (after rotation).
    pub fn reopen_log(&self, bundle: &std::path::Path) -> Result<()> {
        self.ctl(bundle, "2 0 0\n")
    }
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_pipe_messages() {
        assert_eq!(parse_sync("{\"data\": 42}\n"), Ok(42));
        assert_eq!(parse_sync("{\"pid\": 7}"), Ok(7));
        assert_eq!(
            parse_sync("{\"data\": -1, \"message\": \"exec: \\\"nope\\\": executable file not found in $PATH\"}\n"),
            Err("exec: \"nope\": executable file not found in $PATH".into())
        );
        assert!(parse_sync("").is_err());
    }
}
