//! Processes rkube starts and stops: a daemon started detached from rkube
//! (its own session, output appended to a log file) so that it and its
//! containers outlive a crash or restart of rkube, stopped with SIGTERM
//! then SIGKILL; and the end of a log for error messages.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::procfs::Procfs;
use crate::{Error, Result};

/// Starts `cmd` in a new session with no stdin and stdout/stderr appended
/// to `log`, so it survives the exit of rkube and its terminal.
pub fn spawn_detached(mut cmd: Command, log: &Path) -> Result<Child> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::io("open", log))?;
    let err = out.try_clone().map_err(Error::io("open", log))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    new_session(&mut cmd);
    cmd.spawn()
        .map_err(|source| Error::Spawn { program, source })
}

/// Makes the child call setsid(2) before exec, so it leads its own session:
/// it outlives the terminal and does not get the terminal's Ctrl-C.
#[allow(unsafe_code)]
fn new_session(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setsid(2), which is async-signal-safe; it allocates nothing and
    // touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
}

/// Sends `sig` to `pid`; a process already gone is fine.
pub fn signal(pid: i32, sig: Signal) -> Result<()> {
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(Error::Signal { pid, source }),
    }
}

/// SIGTERMs `pids`, waits up to `grace`, SIGKILLs what is left.
pub fn terminate(procfs: &Procfs, pids: &[i32], grace: Duration) -> Result<()> {
    for pid in pids {
        signal(*pid, Signal::SIGTERM)?;
    }
    if wait_gone(procfs, pids, grace) {
        return Ok(());
    }
    for pid in pids.iter().filter(|p| procfs.is_alive(**p)) {
        tracing::warn!(pid, "process ignored SIGTERM, sending SIGKILL");
        signal(*pid, Signal::SIGKILL)?;
    }
    if wait_gone(procfs, pids, Duration::from_secs(5)) {
        return Ok(());
    }
    let pid = pids
        .iter()
        .copied()
        .find(|p| procfs.is_alive(*p))
        .unwrap_or_default();
    Err(Error::Unkillable { pid })
}

/// Polls until none of `pids` is alive; false after `within`.
pub fn wait_gone(procfs: &Procfs, pids: &[i32], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if !pids.iter().any(|p| procfs.is_alive(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The last `lines` lines of `path` from byte `from` on.
pub fn tail(path: &Path, from: u64, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = usize::try_from(from).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("log");
        std::fs::write(&f, "old\na\nb\nc\n").unwrap();
        assert_eq!(tail(&f, 4, 2), "b\nc");
        assert_eq!(tail(&f, 4, 10), "a\nb\nc");
        assert_eq!(tail(&f, 100, 10), "");
        assert_eq!(tail(&dir.path().join("none"), 0, 3), "");
    }

    #[test]
    fn spawns_in_a_new_session_and_terminates() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 30"]);
        let mut child = spawn_detached(cmd, &log).unwrap();
        let pid = child.id() as i32;
        let sid = nix::unistd::getsid(Some(Pid::from_raw(pid))).unwrap();
        assert_eq!(sid.as_raw(), pid, "child leads its own session");
        let reaper = std::thread::spawn(move || child.wait());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&log).unwrap().contains("started") {
            assert!(Instant::now() < deadline, "no output in the log");
            std::thread::sleep(Duration::from_millis(10));
        }
        terminate(&Procfs::default(), &[pid], Duration::from_secs(5)).unwrap();
        reaper.join().unwrap().unwrap();
    }
}
