//! Finding host programs. Debian puts runc and other daemons in /usr/sbin,
//! which a user's PATH may lack, so lookups (and the PATH given to the
//! daemons rkube starts) always include the standard system directories.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::*;

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
