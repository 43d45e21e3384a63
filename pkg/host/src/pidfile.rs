//! Pid files: `<name>.pid` holds the pid of a process rkube started and
//! optionally, on a second line, its executable. A pid file is stale when
//! that process is gone (or a zombie), or when the pid was reused by a
//! process that is not ours ([`Procfs::live_process`](crate::Procfs::live_process)).

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
    /// A pid file recording `pid` started from `exe`.
    pub fn new(pid: i32, exe: impl Into<PathBuf>) -> Self {
        Self {
            pid,
            exe: Some(exe.into()),
        }
    }

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

/// Removes a file (a pid file, a stale socket); a missing file is fine.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pid_files() {
        assert_eq!(PidFile::parse("42\n"), Some(PidFile { pid: 42, exe: None }));
        assert_eq!(
            PidFile::parse("42\n/usr/bin/rkube\n"),
            Some(PidFile::new(42, "/usr/bin/rkube"))
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
        PidFile::new(42, "/usr/bin/containerd")
            .write(&path)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "42\n/usr/bin/containerd\n"
        );
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(!path.exists());
    }
}
