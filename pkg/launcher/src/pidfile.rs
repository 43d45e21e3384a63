//! Pid files: `<name>.pid` in the profile directory holds the pid of a
//! process rkube started, and optionally, on a second line, its executable.
//! A pid file is stale when that process is gone (or a zombie), or when the
//! pid was reused by a process that is not ours. Processes are inspected
//! through a [`Procfs`] root so tests can use a fake `/proc`.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Contents of a pid file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PidFile {
    /// The process id.
    pub pid: i32,
    /// The executable that was started, if recorded.
    pub exe: Option<PathBuf>,
}

impl PidFile {
    /// Parses `"<pid>\n[<exe>\n]"`; `None` if malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let pid: i32 = lines.next()?.trim().parse().ok().filter(|p| *p > 0)?;
        let exe = lines
            .next()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(PathBuf::from);
        Some(Self { pid, exe })
    }

    /// Reads `path`; `None` if it does not exist or is malformed.
    pub fn read(path: &Path) -> Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path)(e)),
        }
    }

    /// Writes the pid file atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = format!("{}\n", self.pid);
        if let Some(exe) = &self.exe {
            text.push_str(&format!("{}\n", exe.display()));
        }
        let tmp = path.with_extension("pid.tmp");
        std::fs::write(&tmp, text).map_err(Error::io("write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(Error::io("write", path))
    }

    /// The pid file of the current process.
    pub fn current() -> Self {
        Self {
            pid: std::process::id() as i32,
            exe: std::env::current_exe().ok(),
        }
    }
}

/// Removes a pid file; a missing file is fine.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// A view of `/proc` (or a fake of it).
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
        // "<pid> (<comm>) <state> ..."; comm may contain spaces and parens.
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        !matches!(state, None | Some("Z") | Some("X"))
    }

    /// The command line of `pid`, arguments joined by spaces.
    pub fn cmdline(&self, pid: i32) -> Option<String> {
        let raw = std::fs::read(self.root.join(pid.to_string()).join("cmdline")).ok()?;
        let parts: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        Some(parts.join(" "))
    }

    /// The live process recorded in `file`, if it is still ours: its command
    /// line mentions "rkube", the recorded executable, or `profile_dir`.
    pub fn live_process(&self, file: &PidFile, profile_dir: &Path) -> Option<i32> {
        if !self.is_alive(file.pid) {
            return None;
        }
        let cmdline = self.cmdline(file.pid)?;
        let ours = cmdline.contains("rkube")
            || file
                .exe
                .as_ref()
                .is_some_and(|e| cmdline.contains(&*e.to_string_lossy()))
            || cmdline.contains(&*profile_dir.to_string_lossy());
        ours.then_some(file.pid)
    }

    /// Reads `path` and returns the pid if that process is alive and ours.
    pub fn running(&self, path: &Path, profile_dir: &Path) -> Result<Option<i32>> {
        Ok(PidFile::read(path)?.and_then(|f| self.live_process(&f, profile_dir)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_proc(root: &Path, pid: i32, state: &str, cmdline: &[&str]) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stat"),
            format!("{pid} (my (odd) comm) {state} 1 2 3"),
        )
        .unwrap();
        let mut raw = cmdline.join("\0").into_bytes();
        raw.push(0);
        std::fs::write(dir.join("cmdline"), raw).unwrap();
    }

    #[test]
    fn parses_pid_files() {
        assert_eq!(PidFile::parse("42\n"), Some(PidFile { pid: 42, exe: None }));
        assert_eq!(
            PidFile::parse("42\n/usr/bin/rkube\n"),
            Some(PidFile {
                pid: 42,
                exe: Some("/usr/bin/rkube".into())
            })
        );
        assert_eq!(PidFile::parse(""), None);
        assert_eq!(PidFile::parse("abc"), None);
        assert_eq!(PidFile::parse("0"), None);
        assert_eq!(PidFile::parse("-5"), None);
    }

    #[test]
    fn write_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rkube.pid");
        assert_eq!(PidFile::read(&path).unwrap(), None);
        let f = PidFile::current();
        f.write(&path).unwrap();
        assert_eq!(PidFile::read(&path).unwrap(), Some(f));
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn detects_stale_pids() {
        let root = tempfile::tempdir().unwrap();
        let proc = Procfs::new(root.path());
        let profile = Path::new("/home/u/.rkube/profiles/dev");
        fake_proc(
            root.path(),
            10,
            "S",
            &["/usr/bin/rkube", "daemon", "--profile", "dev"],
        );
        fake_proc(root.path(), 11, "Z", &["/usr/bin/rkube", "daemon"]);
        fake_proc(root.path(), 12, "R", &["/usr/bin/bash"]);
        fake_proc(
            root.path(),
            13,
            "S",
            &["/opt/crio", "--root", "/home/u/.rkube/profiles/dev/crio"],
        );
        fake_proc(root.path(), 14, "S", &["/opt/bin/renamed", "daemon"]);
        let pf = |pid, exe: Option<&str>| PidFile {
            pid,
            exe: exe.map(PathBuf::from),
        };
        assert_eq!(proc.live_process(&pf(10, None), profile), Some(10));
        assert_eq!(proc.live_process(&pf(11, None), profile), None, "zombie");
        assert_eq!(
            proc.live_process(&pf(12, None), profile),
            None,
            "pid reused by bash"
        );
        assert_eq!(
            proc.live_process(&pf(13, None), profile),
            Some(13),
            "runtime in profile dir"
        );
        assert_eq!(
            proc.live_process(&pf(14, Some("/opt/bin/renamed")), profile),
            Some(14)
        );
        assert_eq!(proc.live_process(&pf(99, None), profile), None, "gone");
    }

    #[test]
    fn real_procfs_sees_this_process() {
        let proc = Procfs::default();
        let me = std::process::id() as i32;
        assert!(proc.is_alive(me));
        assert!(proc.cmdline(me).is_some());
    }
}
