//! Unpacking a layer tar (plain or gzip) into a directory in overlayfs
//! format: OCI whiteouts `.wh.<name>` become overlay whiteouts (a 0:0
//! character device) and `.wh..wh..opq` marks its directory opaque with
//! the `trusted.overlay.opaque` xattr.

use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::{Error, Result};

const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT: &str = ".wh.";

/// A reader that transparently gunzips when the data starts with the gzip
/// magic.
pub(crate) fn maybe_gunzip(mut r: impl Read + 'static) -> std::io::Result<Box<dyn Read>> {
    let mut magic = [0u8; 2];
    let mut n = 0;
    while n < 2 {
        let k = r.read(&mut magic[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let chained = head.chain(r);
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::GzDecoder::new(chained)))
    } else {
        Ok(Box::new(chained))
    }
}

/// A relative path inside the layer with no `..` escaping it.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Unpacks the layer blob at `blob` into `dest` (which must exist).
pub(crate) fn unpack_layer(blob: &Path, dest: &Path) -> Result<()> {
    let file = std::fs::File::open(blob).map_err(Error::io("open", blob))?;
    let reader = maybe_gunzip(BufReader::new(file)).map_err(Error::io("read", blob))?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let entries = archive.entries().map_err(Error::io("read", blob))?;
    for entry in entries {
        let mut entry = entry.map_err(Error::io("read", blob))?;
        let raw = entry.path().map_err(Error::io("read", blob))?.into_owned();
        let Some(rel) = clean(&raw) else { continue };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
        if name == OPAQUE {
            std::fs::create_dir_all(&parent).map_err(Error::io("create directory", &parent))?;
            xattr::set(&parent, "trusted.overlay.opaque", b"y")
                .map_err(Error::io("mark opaque", &parent))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            std::fs::create_dir_all(&parent).map_err(Error::io("create directory", &parent))?;
            let target = parent.join(hidden);
            let _ = std::fs::remove_file(&target);
            let _ = std::fs::remove_dir_all(&target);
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| {
                Error::Io {
                    action: "create whiteout",
                    path: target.clone(),
                    source: e.into(),
                }
            })?;
            continue;
        }
        entry
            .unpack_in(dest)
            .map_err(Error::io("unpack into", dest))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn layer(entries: &[(&str, &[u8])], dirs: &[&str]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for d in dirs {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(0);
            b.append_data(&mut h, d, std::io::empty()).unwrap();
        }
        for (p, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, p, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_become_overlay_format() {
        let d = tempfile::tempdir().unwrap();
        let blob = d.path().join("l.tar.gz");
        let tar = layer(
            &[
                ("etc/a", b"x"),
                ("etc/.wh.gone", b""),
                ("var/.wh..wh..opq", b""),
            ],
            &["etc", "var"],
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        std::fs::write(&blob, gz.finish().unwrap()).unwrap();
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        unpack_layer(&blob, &out).unwrap();
        assert_eq!(std::fs::read(out.join("etc/a")).unwrap(), b"x");
        let wh = std::fs::symlink_metadata(out.join("etc/gone")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(
            xattr::get(out.join("var"), "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        assert!(!out.join("var/.wh..wh..opq").exists());
    }

    #[test]
    fn rejects_nothing_but_skips_escapes() {
        assert_eq!(clean(Path::new("./a/b")), Some(PathBuf::from("a/b")));
        assert_eq!(clean(Path::new("../x")), None);
        assert_eq!(clean(Path::new("/")), None);
    }
}
