//! hostPath type checks: `DirectoryOrCreate` and `FileOrCreate` create what
//! is missing (0755 directories, an empty 0644 file); `Directory`, `File`,
//! `Socket`, `CharDevice` and `BlockDevice` require an existing object of
//! that kind; `""` checks nothing. Symlinks are followed.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::VolumeError;

fn fail(path: &Path, what: &str) -> VolumeError {
    VolumeError::HostPathType {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

/// Checks (and for the *OrCreate types, creates) a hostPath.
pub fn check_host_path(path: &Path, ty: &str) -> Result<(), VolumeError> {
    let meta = fs::metadata(path).ok();
    let ft = meta.as_ref().map(|m| m.file_type());
    match ty {
        "" => Ok(()),
        "DirectoryOrCreate" => match ft {
            None => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(path)
                    .map_err(|e| VolumeError::io("creating", path, e))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| VolumeError::io("chmod", path, e))
            }
            Some(f) if f.is_dir() => Ok(()),
            Some(_) => Err(fail(path, "a directory")),
        },
        "Directory" => match ft {
            Some(f) if f.is_dir() => Ok(()),
            _ => Err(fail(path, "a directory")),
        },
        "FileOrCreate" => match ft {
            None => fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map(|_| ())
                .map_err(|e| VolumeError::io("creating", path, e)),
            Some(f) if f.is_file() => Ok(()),
            Some(_) => Err(fail(path, "a file")),
        },
        "File" => match ft {
            Some(f) if f.is_file() => Ok(()),
            _ => Err(fail(path, "a file")),
        },
        "Socket" => match ft {
            Some(f) if f.is_socket() => Ok(()),
            _ => Err(fail(path, "a socket file")),
        },
        "CharDevice" => match ft {
            Some(f) if f.is_char_device() => Ok(()),
            _ => Err(fail(path, "a character device")),
        },
        "BlockDevice" => match ft {
            Some(f) if f.is_block_device() => Ok(()),
            _ => Err(fail(path, "a block device")),
        },
        other => Err(VolumeError::Unsupported(format!("hostPath type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::tests::TempDir;

    #[test]
    fn type_checks() {
        let tmp = TempDir::new();
        let d = tmp.path().join("a/b");
        assert!(check_host_path(&d, "Directory").is_err());
        check_host_path(&d, "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        check_host_path(&d, "Directory").unwrap();
        check_host_path(&d, "").unwrap();
        let e = check_host_path(&d, "File").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("hostPath type check failed: {} is not a file", d.display())
        );
        assert!(check_host_path(&d, "FileOrCreate").is_err());
        assert!(check_host_path(&d, "Socket").is_err());

        let f = tmp.path().join("f");
        assert!(check_host_path(&f, "File").is_err());
        check_host_path(&f, "FileOrCreate").unwrap();
        assert!(f.is_file());
        check_host_path(&f, "File").unwrap();
        assert!(check_host_path(&f, "DirectoryOrCreate").is_err());
        assert!(check_host_path(&f, "Directory").is_err());
        assert!(check_host_path(&f, "CharDevice").is_err());
        check_host_path(Path::new("/dev/null"), "CharDevice").unwrap();

        let s = tmp.path().join("sock");
        let _l = std::os::unix::net::UnixListener::bind(&s).unwrap();
        check_host_path(&s, "Socket").unwrap();
        assert!(check_host_path(&s, "File").is_err());
        assert!(check_host_path(&s, "Bogus").is_err());
    }
}
