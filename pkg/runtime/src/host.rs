//! Host programs the containerd backend runs, and the check that they are
//! installed. Debian puts runc in /usr/sbin, which a user's PATH may lack,
//! so lookups (and the PATH containerd and its shims get) always include the
//! standard system directories.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Programs the containerd backend needs, with the Debian package of each.
pub const CONTAINERD_PROGRAMS: &[(&str, &str)] = &[
    ("containerd", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
];

/// Directories appended to PATH when they are missing from it.
const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// `$PATH` plus the standard system directories it lacks.
pub fn search_path() -> OsString {
    extend_path(std::env::var_os("PATH").unwrap_or_default())
}

fn extend_path(path: OsString) -> OsString {
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for d in SYSTEM_DIRS {
        if !dirs.iter().any(|p| p == Path::new(d)) {
            dirs.push(PathBuf::from(d));
        }
    }
    std::env::join_paths(dirs).unwrap_or(path)
}

/// Finds an executable named `name` in `path`.
pub fn which_in(name: &str, path: &OsString) -> Option<PathBuf> {
    std::env::split_paths(path).map(|d| d.join(name)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Finds `name` in [`search_path`].
pub fn which(name: &str) -> Option<PathBuf> {
    which_in(name, &search_path())
}

/// Fails, naming the packages to install, unless `found` finds every program.
pub fn check_programs(programs: &[(&str, &str)], found: impl Fn(&str) -> bool) -> Result<()> {
    let missing: Vec<(&str, &str)> = programs
        .iter()
        .copied()
        .filter(|(p, _)| !found(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, pkg)| *pkg).collect();
    packages.dedup();
    Err(Error::MissingBinaries {
        missing: missing
            .iter()
            .map(|(p, _)| *p)
            .collect::<Vec<_>>()
            .join(", "),
        packages: packages.join(" "),
    })
}

/// Checks that containerd, its runc shim, ctr and runc are installed.
pub fn check_host() -> Result<()> {
    check_programs(CONTAINERD_PROGRAMS, |p| which(p).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_debian_packages() {
        let err = check_programs(CONTAINERD_PROGRAMS, |_| false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("containerd, containerd-shim-runc-v2, ctr, runc"),
            "{err}"
        );
        assert!(err.contains("apt-get install containerd runc"), "{err}");
        let err = check_programs(CONTAINERD_PROGRAMS, |p| p != "runc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("apt-get install runc`"), "{err}");
        check_programs(CONTAINERD_PROGRAMS, |_| true).unwrap();
    }

    #[test]
    fn path_gets_system_dirs_once() {
        let p = extend_path(OsString::from("/opt/bin:/usr/sbin"));
        let dirs: Vec<PathBuf> = std::env::split_paths(&p).collect();
        assert_eq!(dirs[0], Path::new("/opt/bin"));
        assert_eq!(
            dirs.iter().filter(|d| *d == Path::new("/usr/sbin")).count(),
            1
        );
        assert!(dirs.iter().any(|d| d == Path::new("/bin")));
    }

    #[test]
    fn finds_executables_only() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "").unwrap();
        let path = OsString::from(dir.path());
        assert_eq!(which_in("tool", &path), None);
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(which_in("tool", &path), Some(exe));
    }
}
