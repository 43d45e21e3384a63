//! Reproducible filesystem layers: a tar of files, directories and symlinks
//! owned by root with a fixed mtime, sorted by path (missing parent
//! directories added), then gzip-compressed with a zero header timestamp.
//! The same entries always give the same bytes, hence the same digests.

use crate::{Error, Result};
use flate2::{write::GzEncoder, Compression};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Modification time of every layer entry (the Unix epoch).
pub const FIXED_MTIME: u64 = 0;

/// One entry of a layer. Paths are relative to the image root (a leading `/`
/// is accepted and dropped); parents are created as 0755 directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntry {
    /// A regular file.
    File {
        /// Path in the image.
        path: String,
        /// Permission bits (e.g. `0o755`).
        mode: u32,
        /// File content.
        content: Vec<u8>,
    },
    /// A directory.
    Dir {
        /// Path in the image.
        path: String,
        /// Permission bits (e.g. `0o1777` for /tmp).
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Path in the image.
        path: String,
        /// Link target, stored as given.
        target: String,
    },
}

impl LayerEntry {
    /// A regular file.
    pub fn file(path: impl Into<String>, mode: u32, content: impl Into<Vec<u8>>) -> Self {
        Self::File {
            path: path.into(),
            mode,
            content: content.into(),
        }
    }

    /// A directory.
    pub fn dir(path: impl Into<String>, mode: u32) -> Self {
        Self::Dir {
            path: path.into(),
            mode,
        }
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }

    fn path(&self) -> &str {
        match self {
            Self::File { path, .. } | Self::Dir { path, .. } | Self::Symlink { path, .. } => path,
        }
    }
}

/// A built layer: compressed bytes and the digests an image needs.
#[derive(Debug)]
pub(crate) struct Layer {
    /// The gzip-compressed tar (the blob).
    pub gzip: Vec<u8>,
    /// `sha256:` of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn clean_path(raw: &str) -> Result<String> {
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(Error::InvalidPath(raw.to_string())),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(Error::InvalidPath(raw.to_string()));
    }
    Ok(parts.join("/"))
}

/// Builds the layer for `entries`. A later entry for the same path replaces
/// an earlier one.
pub(crate) fn build_layer(entries: &[LayerEntry]) -> Result<Layer> {
    // BTreeMap over path components: a parent sorts before its children.
    let mut by_path: BTreeMap<Vec<String>, LayerEntry> = BTreeMap::new();
    for e in entries {
        let path = clean_path(e.path())?;
        let comps: Vec<String> = path.split('/').map(str::to_string).collect();
        for n in 1..comps.len() {
            by_path
                .entry(comps[..n].to_vec())
                .or_insert_with(|| LayerEntry::dir(comps[..n].join("/"), 0o755));
        }
        let mut e = e.clone();
        match &mut e {
            LayerEntry::File { path: p, .. }
            | LayerEntry::Dir { path: p, .. }
            | LayerEntry::Symlink { path: p, .. } => *p = path,
        }
        by_path.insert(comps, e);
    }

    let tar_err = Error::io("write layer tar", "<memory>");
    let mut builder = tar::Builder::new(Vec::new());
    let res: std::io::Result<()> = (|| {
        for entry in by_path.values() {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(FIXED_MTIME);
            match entry {
                LayerEntry::File {
                    path,
                    mode,
                    content,
                } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(mode & 0o7777);
                    h.set_size(content.len() as u64);
                    builder.append_data(&mut h, path, content.as_slice())?;
                }
                LayerEntry::Dir { path, mode } => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(mode & 0o7777);
                    h.set_size(0);
                    builder.append_data(&mut h, format!("{path}/"), std::io::empty())?;
                }
                LayerEntry::Symlink { path, target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    builder.append_link(&mut h, path, target)?;
                }
            }
        }
        Ok(())
    })();
    res.map_err(tar_err)?;
    let tar = builder
        .into_inner()
        .map_err(Error::io("finish layer tar", "<memory>"))?;
    let diff_id = sha256_digest(&tar);

    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    std::io::Write::write_all(&mut gz, &tar).map_err(Error::io("compress layer", "<memory>"))?;
    let gzip = gz
        .finish()
        .map_err(Error::io("compress layer", "<memory>"))?;
    Ok(Layer { gzip, diff_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    /// (path, type, mode, size, link target, data) of each entry.
    type Listed = (String, tar::EntryType, u32, u64, Option<String>, Vec<u8>);

    fn list(layer: &Layer) -> Vec<Listed> {
        let mut ar = tar::Archive::new(GzDecoder::new(layer.gzip.as_slice()));
        ar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned());
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let p = e.path().unwrap().to_string_lossy().into_owned();
                assert_eq!(
                    (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                    (0, 0, FIXED_MTIME)
                );
                (
                    p,
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.size().unwrap(),
                    link,
                    data,
                )
            })
            .collect()
    }

    #[test]
    fn entries_sorted_with_parents_and_metadata() {
        let layer = build_layer(&[
            LayerEntry::symlink("/bin/sh", "busybox"),
            LayerEntry::file("bin/busybox", 0o755, b"ELF".to_vec()),
            LayerEntry::dir("tmp", 0o1777),
            LayerEntry::file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n".to_vec()),
        ])
        .unwrap();
        let got = list(&layer);
        let names: Vec<_> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin/",
                "bin/busybox",
                "bin/sh",
                "etc/",
                "etc/passwd",
                "tmp/"
            ]
        );
        assert_eq!(got[1].1, tar::EntryType::Regular);
        assert_eq!((got[1].2, got[1].5.as_slice()), (0o755, b"ELF".as_slice()));
        assert_eq!(got[2].1, tar::EntryType::Symlink);
        assert_eq!(got[2].4.as_deref(), Some("busybox"));
        assert_eq!((got[5].1, got[5].2), (tar::EntryType::Directory, 0o1777));
    }

    #[test]
    fn reproducible_and_diff_id_is_uncompressed_sha() {
        let entries = [
            LayerEntry::file("a/b/c", 0o600, vec![7u8; 5000]),
            LayerEntry::symlink("l", "a/b/c"),
        ];
        let a = build_layer(&entries).unwrap();
        let b = build_layer(&entries).unwrap();
        assert_eq!(a.gzip, b.gzip);
        assert_eq!(a.diff_id, b.diff_id);
        let mut raw = Vec::new();
        GzDecoder::new(a.gzip.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(a.diff_id, sha256_digest(&raw));
    }

    #[test]
    fn long_names_and_bad_paths() {
        let long = format!("d/{}", "x".repeat(150));
        let layer = build_layer(&[LayerEntry::symlink(long.clone(), "y".repeat(120))]).unwrap();
        assert_eq!(list(&layer)[1].0, long);
        assert!(build_layer(&[LayerEntry::dir("../x", 0o755)]).is_err());
        assert!(build_layer(&[LayerEntry::dir("/", 0o755)]).is_err());
    }
}
