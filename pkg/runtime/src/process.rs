//! Processes of a runtime daemon: starting one detached from rkube (its own
//! session, output to a log file) so that it and its containers outlive a
//! crash or restart of rkube; finding it again through its pid file or by
//! scanning `/proc` for its command line; stopping it with SIGTERM then
//! SIGKILL. Pid files use the launcher's format: the pid, then the
//! executable, one per line. `/proc` is read through [`Procfs`] so the
//! lookups are tested against a fake one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{Error, Result};

/// A view of `/proc` (or of a fake one).
#[derive(Clone, Debug)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl Procfs {
    /// A procfs rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Whether `pid` exists and is not a zombie.
    pub fn is_alive(&self, pid: i32) -> bool {
        let Ok(stat) = std::fs::read_to_string(self.root.join(pid.to_string()).join("stat")) else {
            return false;
        };
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        !matches!(state, None | Some("Z") | Some("X"))
    }

    /// The arguments of `pid`.
    pub fn args(&self, pid: i32) -> Option<Vec<String>> {
        let raw = std::fs::read(self.root.join(pid.to_string()).join("cmdline")).ok()?;
        Some(
            raw.split(|b| *b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
        )
    }

    /// Live processes whose arguments satisfy `pred`, in pid order.
    pub fn find(&self, pred: impl Fn(&[String]) -> bool) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut pids: Vec<i32> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|pid| self.args(*pid).is_some_and(|a| pred(&a)) && self.is_alive(*pid))
            .collect();
        pids.sort_unstable();
        pids
    }
}

/// Whether `args` run `program` (by base name) with `flag value` among them.
pub fn has_flag(args: &[String], program: &str, flag: &str, value: &str) -> bool {
    let runs = args
        .first()
        .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == program));
    runs && args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

/// Reads the pid recorded in `path`.
pub fn read_pid(path: &Path) -> Result<Option<i32>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .filter(|p| *p > 0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

/// Writes a pid file atomically.
pub fn write_pid(path: &Path, pid: i32, exe: &Path) -> Result<()> {
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{pid}\n{}\n", exe.display()))
        .map_err(Error::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("write", path))
}

/// Removes a file; a missing one is fine.
pub fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path)(e)),
        _ => Ok(()),
    }
}

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

/// Makes the child call setsid(2) before exec.
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

    fn fake_proc(root: &Path, pid: i32, state: &str, args: &[&str]) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stat"), format!("{pid} (x) {state} 1")).unwrap();
        let mut raw = args.join("\0").into_bytes();
        raw.push(0);
        std::fs::write(dir.join("cmdline"), raw).unwrap();
    }

    #[test]
    fn finds_processes_by_flag() {
        let root = tempfile::tempdir().unwrap();
        let cfg = "/p/containerd/config.toml";
        fake_proc(
            root.path(),
            7,
            "S",
            &["/usr/bin/containerd", "--config", cfg],
        );
        fake_proc(
            root.path(),
            8,
            "Z",
            &["/usr/bin/containerd", "--config", cfg],
        );
        fake_proc(
            root.path(),
            9,
            "S",
            &["/usr/bin/containerd", "--config", "/other"],
        );
        fake_proc(root.path(), 10, "S", &["/usr/bin/vim", "--config", cfg]);
        std::fs::create_dir_all(root.path().join("self")).unwrap();
        let procfs = Procfs::new(root.path());
        let found = procfs.find(|a| has_flag(a, "containerd", "--config", cfg));
        assert_eq!(found, vec![7]);
        assert!(!procfs.is_alive(8) && procfs.is_alive(9) && !procfs.is_alive(99));
    }

    #[test]
    fn pid_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("containerd.pid");
        assert_eq!(read_pid(&f).unwrap(), None);
        write_pid(&f, 42, Path::new("/usr/bin/containerd")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "42\n/usr/bin/containerd\n"
        );
        assert_eq!(read_pid(&f).unwrap(), Some(42));
        std::fs::write(&f, "junk").unwrap();
        assert_eq!(read_pid(&f).unwrap(), None);
        remove_file(&f).unwrap();
        remove_file(&f).unwrap();
    }

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
