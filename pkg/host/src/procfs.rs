//! A view of `/proc` (or of a fake one, for tests): whether a process is
//! alive, its arguments, processes found by their command line, and
//! whether the process a [`PidFile`] records is still ours.

use std::path::{Path, PathBuf};

use crate::pidfile::PidFile;
use crate::Result;

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
        // "<pid> (<comm>) <state> ..."; comm may contain spaces and parens.
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

    /// The command line of `pid`, arguments joined by spaces.
    pub fn cmdline(&self, pid: i32) -> Option<String> {
        self.args(pid).map(|a| a.join(" "))
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

/// Whether `args` run `program` (by base name) with `flag value` among them.
pub fn has_flag(args: &[String], program: &str, flag: &str, value: &str) -> bool {
    let runs = args
        .first()
        .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == program));
    runs && args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_proc(root: &Path, pid: i32, state: &str, args: &[&str]) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stat"),
            format!("{pid} (my (odd) comm) {state} 1 2 3"),
        )
        .unwrap();
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
