//! Atomic file writes with explicit permissions: the content goes to a temporary
//! file in the same directory, is synced, given its mode and renamed into place,
//! so readers never observe a half-written key or kubeconfig.

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Mode for private keys and kubeconfigs.
pub(crate) const MODE_SECRET: u32 = 0o600;
/// Mode for certificates and public keys.
pub(crate) const MODE_PUBLIC: u32 = 0o644;

/// Writes `contents` to `path` atomically with exactly `mode` (not subject to umask).
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = write_tmp(&tmp, contents, mode)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| Error::io("rename into", path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_tmp(tmp: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(tmp)
        .map_err(|e| Error::io("create", tmp, e))?;
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| Error::io("set permissions of", tmp, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("write", tmp, e))
}

/// Reads a file, mapping "not found" to `None`.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file");
        write_atomic(&path, b"one", MODE_SECRET).unwrap();
        write_atomic(&path, b"two", MODE_SECRET).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let entries: Vec<_> = fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn read_optional_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_optional(&dir.path().join("nope")).unwrap().is_none());
    }
}
