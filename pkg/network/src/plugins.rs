//! The CNI plugin binaries rkube's network needs, and a check that they are
//! installed (Debian ships them in containernetworking-plugins under
//! `/usr/lib/cni`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{Error, Result};

/// Plugins the conflist uses, plus `loopback`, which runtimes add for `lo`.
pub const REQUIRED_PLUGINS: &[&str] = &["bridge", "host-local", "portmap", "firewall", "loopback"];

/// Whether `path` is an executable regular file.
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The plugins of [`REQUIRED_PLUGINS`] missing from `bin_dir`.
pub fn missing_plugins(bin_dir: &Path) -> Vec<&'static str> {
    REQUIRED_PLUGINS
        .iter()
        .copied()
        .filter(|p| !is_executable(&bin_dir.join(p)))
        .collect()
}

/// Fails, naming the Debian package, unless every required plugin is in `bin_dir`.
pub fn check_plugins(bin_dir: &Path) -> Result<()> {
    let missing = missing_plugins(bin_dir);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::MissingPlugins {
        dir: bin_dir.to_path_buf(),
        missing: missing.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_missing_plugins_and_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_plugins(dir.path()).unwrap_err().to_string();
        assert!(err.contains("containernetworking-plugins"), "{err}");
        assert!(err.contains("bridge, host-local"), "{err}");
        for p in REQUIRED_PLUGINS {
            let path = dir.path().join(p);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(
            dir.path().join("portmap"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert_eq!(missing_plugins(dir.path()), vec!["portmap"]);
        std::fs::set_permissions(
            dir.path().join("portmap"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        check_plugins(dir.path()).unwrap();
    }
}
