//! Mount points from `/proc/self/mountinfo`: the ones under a directory,
//! deepest first, and unmounting them all before the directory is removed.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Mount points at or under `dir`, deepest first, from `mountinfo` text.
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

/// Decodes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts every mount under `dir`.
pub fn unmount_under(dir: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(Error::io("read", "/proc/self/mountinfo"))?;
    let Ok(dir) = dir.canonicalize() else {
        return Ok(());
    };
    for m in mounts_under(&info, &dir) {
        match nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => tracing::debug!(mount = %m.display(), "unmounted"),
            Err(e) => tracing::warn!(mount = %m.display(), error = %e, "cannot unmount"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_under_a_dir_deepest_first() {
        let info = "\
22 1 0:20 / / rw - ext4 /dev/vda rw
30 22 0:50 / /p/containerd/root/snap/1/fs rw - overlay overlay rw
31 22 0:51 / /p/containerd/state/shm rw - tmpfs shm rw
32 22 0:52 / /p/containerd2/x rw - tmpfs t rw
33 22 0:53 / /p/containerd/with\\040space rw - tmpfs t rw
";
        let m = mounts_under(info, Path::new("/p/containerd"));
        assert_eq!(
            m,
            vec![
                PathBuf::from("/p/containerd/root/snap/1/fs"),
                PathBuf::from("/p/containerd/state/shm"),
                PathBuf::from("/p/containerd/with space"),
            ]
        );
    }
}
