//! The atomic writer kubelet uses for configMap, secret, downwardAPI and
//! projected volumes: a payload (relative path → bytes and mode) is written
//! into a fresh timestamped directory `..<ts>`, a `..data` symlink is
//! pointed at it by renaming `..data_tmp` over it (one atomic step), and
//! each top-level entry is a symlink `name → ..data/name`. A running
//! container so sees either the old or the new contents, never a mix; the
//! previous `..<ts>` directory and entries no longer in the payload are
//! removed. Writing an unchanged payload does nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// One file of a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits (e.g. 0o644).
    pub mode: u32,
}

/// Relative path → file.
pub type Payload = BTreeMap<String, FileProjection>;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Checks a payload path as upstream does: relative, no `..` element, no
/// leading `..`, bounded lengths.
pub fn validate_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("must not be empty".into());
    }
    if p.len() > 4096 {
        return Err("must be less than or equal to 4096 characters".into());
    }
    if p.starts_with('/') {
        return Err("must be a relative path".into());
    }
    if p.starts_with("..") {
        return Err("must not start with '..'".into());
    }
    for seg in p.split('/') {
        if seg == ".." {
            return Err("must not contain '..'".into());
        }
        if seg.len() > 255 {
            return Err("each path element must be at most 255 characters".into());
        }
    }
    Ok(())
}

/// Writes payloads into one volume directory.
#[derive(Clone, Debug)]
pub struct AtomicWriter {
    dir: PathBuf,
    gid: Option<u32>,
}

fn io_at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl AtomicWriter {
    /// A writer for `dir`; with `gid` (the pod's fsGroup) files get that
    /// group and group read permission.
    pub fn new(dir: impl Into<PathBuf>, gid: Option<u32>) -> Self {
        AtomicWriter {
            dir: dir.into(),
            gid,
        }
    }

    fn effective_mode(&self, mode: u32) -> u32 {
        let m = mode & 0o7777;
        if self.gid.is_some() {
            m | 0o440
        } else {
            m
        }
    }

    /// Writes `payload`; returns whether anything changed.
    pub fn write(&self, payload: &Payload) -> io::Result<bool> {
        for p in payload.keys() {
            validate_path(p).map_err(|m| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid path {p:?}: {m}"),
                )
            })?;
        }
        fs::create_dir_all(&self.dir).map_err(|e| io_at(&self.dir, e))?;
        let tops: BTreeSet<String> = payload
            .keys()
            .filter_map(|p| p.split('/').find(|s| !s.is_empty() && *s != "."))
            .map(str::to_string)
            .collect();
        let old_target = fs::read_link(self.dir.join(DATA)).ok();
        if old_target.is_some() && self.unchanged(payload, &tops)? {
            return Ok(false);
        }

        // 1. The new timestamped directory.
        let ts = chrono::Utc::now()
            .format("..%Y_%m_%d_%H_%M_%S.%f")
            .to_string();
        let mut name = ts.clone();
        let mut n = 0;
        while self.dir.join(&name).exists() {
            n += 1;
            name = format!("{ts}{n}");
        }
        let new_dir = self.dir.join(&name);
        fs::create_dir(&new_dir).map_err(|e| io_at(&new_dir, e))?;
        fs::set_permissions(&new_dir, fs::Permissions::from_mode(0o755))?;
        self.chgrp(&new_dir)?;
        for (p, f) in payload {
            let path = new_dir.join(p);
            if let Some(parent) = path.parent() {
                if !parent.exists() {
                    fs::create_dir_all(parent).map_err(|e| io_at(parent, e))?;
                    let mut d = parent;
                    while d != new_dir {
                        fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
                        self.chgrp(d)?;
                        d = match d.parent() {
                            Some(x) => x,
                            None => break,
                        };
                    }
                }
            }
            fs::write(&path, &f.data).map_err(|e| io_at(&path, e))?;
            fs::set_permissions(
                &path,
                fs::Permissions::from_mode(self.effective_mode(f.mode)),
            )?;
            self.chgrp(&path)?;
        }

        // 2. Swap ..data atomically.
        let tmp = self.dir.join(DATA_TMP);
        let _ = fs::remove_file(&tmp);
        symlink(&name, &tmp).map_err(|e| io_at(&tmp, e))?;
        fs::rename(&tmp, self.dir.join(DATA)).map_err(|e| io_at(&tmp, e))?;

        // 3. User-visible symlinks for the top-level entries.
        for t in &tops {
            let link = self.dir.join(t);
            let want = Path::new(DATA).join(t);
            match fs::symlink_metadata(&link) {
                Ok(m) if m.file_type().is_symlink() => {
                    if fs::read_link(&link).ok().as_deref() == Some(want.as_path()) {
                        continue;
                    }
                    fs::remove_file(&link).map_err(|e| io_at(&link, e))?;
                }
                Ok(m) if m.is_dir() => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is a directory", link.display()),
                    ))
                }
                Ok(_) => fs::remove_file(&link).map_err(|e| io_at(&link, e))?,
                Err(_) => {}
            }
            symlink(&want, &link).map_err(|e| io_at(&link, e))?;
        }

        // 4. Remove what is no longer in the payload, and old data dirs.
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let fname = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if fname.starts_with("..") {
                if fname != DATA && fname != name && entry.file_type()?.is_dir() {
                    fs::remove_dir_all(&path).map_err(|e| io_at(&path, e))?;
                }
                continue;
            }
            if !tops.contains(&fname) && entry.file_type()?.is_symlink() {
                let target = fs::read_link(&path).unwrap_or_default();
                if target.starts_with(DATA) {
                    fs::remove_file(&path).map_err(|e| io_at(&path, e))?;
                }
            }
        }
        Ok(true)
    }

    fn chgrp(&self, p: &Path) -> io::Result<()> {
        if let Some(gid) = self.gid {
            nix::unistd::chown(p, None, Some(nix::unistd::Gid::from_raw(gid)))
                .map_err(|e| io_at(p, io::Error::from(e)))?;
        }
        Ok(())
    }

    /// Whether the current `..data` holds exactly `payload` and every
    /// top-level symlink is in place.
    fn unchanged(&self, payload: &Payload, tops: &BTreeSet<String>) -> io::Result<bool> {
        let data = self.dir.join(DATA);
        let mut current = BTreeMap::new();
        if walk(&data, &data, &mut current).is_err() {
            return Ok(false);
        }
        if current.len() != payload.len() {
            return Ok(false);
        }
        for (p, f) in payload {
            let Some((data, mode)) = current.get(&normalize(p)) else {
                return Ok(false);
            };
            if *data != f.data || *mode != self.effective_mode(f.mode) {
                return Ok(false);
            }
        }
        for t in tops {
            let want = Path::new(DATA).join(t);
            if fs::read_link(self.dir.join(t)).ok().as_deref() != Some(want.as_path()) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn normalize(p: &str) -> String {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(base, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(base)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let mode = entry.metadata()?.permissions().mode() & 0o7777;
            out.insert(rel.to_string_lossy().into_owned(), (fs::read(&path)?, mode));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::tests::TempDir;

    fn file(s: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: s.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn swaps_data_and_removes_old_files() {
        let tmp = TempDir::new();
        let w = AtomicWriter::new(tmp.path().join("vol"), None);
        let p1: Payload = [
            ("a".to_string(), file("1", 0o644)),
            ("dir/b".to_string(), file("2", 0o400)),
        ]
        .into();
        assert!(w.write(&p1).unwrap());
        let vol = tmp.path().join("vol");
        assert_eq!(fs::read_to_string(vol.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(vol.join("dir/b")).unwrap(), "2");
        assert_eq!(fs::read_link(vol.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(
            fs::read_link(vol.join("dir")).unwrap(),
            Path::new("..data/dir")
        );
        let mode = fs::metadata(vol.join("dir/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o400);
        let first = fs::read_link(vol.join(DATA)).unwrap();
        assert!(first.to_string_lossy().starts_with(".."));

        // Same payload: nothing happens.
        assert!(!w.write(&p1).unwrap());
        assert_eq!(fs::read_link(vol.join(DATA)).unwrap(), first);

        // New payload: ..data moves, the old dir and "dir" go away.
        let p2: Payload = [
            ("a".to_string(), file("new", 0o644)),
            ("c".to_string(), file("3", 0o644)),
        ]
        .into();
        assert!(w.write(&p2).unwrap());
        let second = fs::read_link(vol.join(DATA)).unwrap();
        assert_ne!(first, second);
        assert!(!vol.join(&first).exists());
        assert_eq!(fs::read_to_string(vol.join("a")).unwrap(), "new");
        assert_eq!(fs::read_to_string(vol.join("c")).unwrap(), "3");
        assert!(fs::symlink_metadata(vol.join("dir")).is_err());
        let names: BTreeSet<String> = fs::read_dir(&vol)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let expected: BTreeSet<String> = [
            DATA.to_string(),
            second.to_string_lossy().into_owned(),
            "a".into(),
            "c".into(),
        ]
        .into();
        assert_eq!(names, expected);

        // Mode change alone is a change.
        let mut p3 = p2.clone();
        p3.get_mut("c").unwrap().mode = 0o600;
        assert!(w.write(&p3).unwrap());

        // Empty payload empties the volume.
        assert!(w.write(&Payload::new()).unwrap());
        assert!(fs::symlink_metadata(vol.join("a")).is_err());
    }

    #[test]
    fn rejects_bad_paths() {
        assert!(validate_path("../x").is_err());
        assert!(validate_path("a/../x").is_err());
        assert!(validate_path("/abs").is_err());
        assert!(validate_path("..data").is_err());
        assert!(validate_path("").is_err());
        assert!(validate_path("a/b.txt").is_ok());
        let tmp = TempDir::new();
        let w = AtomicWriter::new(tmp.path().join("vol"), None);
        let p: Payload = [("../evil".to_string(), file("x", 0o644))].into();
        assert!(w.write(&p).is_err());
    }
}
