//! The store itself: content-addressed blobs, unpacked layers keyed by
//! chain ID, and one JSON record per image. Changes to records take a file
//! lock, so the daemon and `rkube image load` can work at the same time.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::reference;
use crate::{Error, ImageConfig, Result};

/// An image in the store.
#[derive(Clone, Debug)]
pub struct Image {
    /// `sha256:<hex>` of the config blob.
    pub id: String,
    /// Normalized names with tags.
    pub repo_tags: Vec<String>,
    /// `repo@sha256:<manifest digest>` names.
    pub repo_digests: Vec<String>,
    /// Compressed size of the layers plus config.
    pub size: u64,
    /// The image's run configuration.
    pub config: ImageConfig,
}

impl Image {
    /// The `repo@digest` name of this image that belongs to `reference`'s
    /// repository (what a container started from `reference` reports as
    /// its imageRef), else the first one, else the image ID.
    pub fn digest_ref_for(&self, reference: &str) -> String {
        let mine = reference::parse(reference).ok().and_then(|n| {
            let prefix = format!("{}@", n.repo());
            self.repo_digests
                .iter()
                .filter(|d| d.starts_with(&prefix))
                .find(|d| {
                    n.digest
                        .as_ref()
                        .is_none_or(|want| d.ends_with(want.as_str()))
                })
                .or_else(|| self.repo_digests.iter().find(|d| d.starts_with(&prefix)))
        });
        mine.or_else(|| self.repo_digests.first())
            .cloned()
            .unwrap_or_else(|| self.id.clone())
    }
}

/// Disk use of the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes in files.
    pub used_bytes: u64,
    /// Files and directories.
    pub inodes_used: u64,
}

/// The on-disk record of an image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
    pub manifest_digest: String,
    /// Chain IDs (hex), base layer first.
    pub layers: Vec<String>,
    /// Layer blob digests (`sha256:<hex>`), base layer first.
    pub blobs: Vec<String>,
}

/// The image store (cheap to clone).
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: Arc<PathBuf>,
}

/// `sha256:<hex>` of bytes.
pub(crate) fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Chain IDs from diff IDs (OCI image spec).
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => digest_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

impl ImageStore {
    /// Opens (creating) a store at `root` and clears leftovers of
    /// interrupted work.
    pub fn open(root: &Path) -> Result<ImageStore> {
        for d in ["blobs/sha256", "layers", "images", "tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(Error::io("create directory", &p))?;
        }
        let s = ImageStore {
            root: Arc::new(root.to_path_buf()),
        };
        // Only clear tmp/ when nobody else is writing (non-blocking lock).
        if let Ok(lock) = s.try_lock() {
            if let Ok(rd) = std::fs::read_dir(s.tmp_dir()) {
                for e in rd.flatten() {
                    let p = e.path();
                    let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
                }
            }
            drop(lock);
        }
        Ok(s)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_of(digest))
    }

    fn layer_dir(&self, chain: &str) -> PathBuf {
        self.root.join("layers").join(hex_of(chain))
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.root
            .join("images")
            .join(format!("{}.json", hex_of(id)))
    }

    fn lock_file(&self) -> Result<std::fs::File> {
        let p = self.root.join("lock");
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(Error::io("open", &p))
    }

    pub(crate) fn lock(&self) -> Result<Flock<std::fs::File>> {
        let f = self.lock_file()?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::Io {
            action: "lock",
            path: self.root.join("lock"),
            source: e.into(),
        })
    }

    fn try_lock(&self) -> Result<Flock<std::fs::File>> {
        let f = self.lock_file()?;
        Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| Error::Io {
            action: "lock",
            path: self.root.join("lock"),
            source: e.into(),
        })
    }

    /// A fresh temporary path under `tmp/`.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let n: u64 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        self.tmp_dir()
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Stores `data` as a blob (atomically) and returns its digest.
    pub(crate) fn put_blob(&self, data: &[u8]) -> Result<String> {
        let digest = digest_of(data);
        let path = self.blob_path(&digest);
        if !path.exists() {
            let tmp = self.tmp_path("blob");
            std::fs::write(&tmp, data).map_err(Error::io("write", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(Error::io("write", &path))?;
        }
        Ok(digest)
    }

    /// Moves a verified file into the blob store under `digest`.
    pub(crate) fn adopt_blob(&self, file: &Path, digest: &str) -> Result<()> {
        let path = self.blob_path(digest);
        if path.exists() {
            let _ = std::fs::remove_file(file);
            return Ok(());
        }
        std::fs::rename(file, &path).map_err(Error::io("write", &path))
    }

    /// Checks that a blob file has the expected digest.
    pub(crate) fn verify_file(path: &Path, digest: &str) -> Result<()> {
        let mut f = std::fs::File::open(path).map_err(Error::io("open", path))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(Error::io("read", path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let got = format!("sha256:{}", hex::encode(h.finalize()));
        if got != digest {
            return Err(Error::invalid(
                path,
                format!("digest mismatch: expected {digest}, got {got}"),
            ));
        }
        Ok(())
    }

    fn read_config(&self, id: &str) -> ImageConfig {
        let path = self.blob_path(id);
        std::fs::File::open(&path)
            .ok()
            .and_then(|f| ImageConfiguration::from_reader(f).ok())
            .and_then(|c| c.config().clone())
            .unwrap_or_default()
    }

    fn records(&self) -> Result<Vec<Record>> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir)
            .map_err(Error::io("read", &dir))?
            .flatten()
        {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read(&p).map(|b| serde_json::from_slice::<Record>(&b)) {
                Ok(Ok(r)) => out.push(r),
                Ok(Err(e)) => tracing::warn!("skipping corrupt image record {}: {e}", p.display()),
                Err(_) => {} // removed meanwhile
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn write_record(&self, r: &Record) -> Result<()> {
        let path = self.record_path(&r.id);
        let tmp = self.tmp_path("record");
        std::fs::write(&tmp, serde_json::to_vec_pretty(r).expect("json"))
            .map_err(Error::io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(Error::io("write", &path))
    }

    fn to_image(&self, r: Record) -> Image {
        Image {
            config: self.read_config(&r.id),
            id: r.id,
            repo_tags: r.repo_tags,
            repo_digests: r.repo_digests,
            size: r.size,
        }
    }

    /// All images.
    pub fn list(&self) -> Result<Vec<Image>> {
        Ok(self
            .records()?
            .into_iter()
            .map(|r| self.to_image(r))
            .collect())
    }

    fn find(&self, reference: &str) -> Result<Option<Record>> {
        let r = reference.trim();
        let records = self.records()?;
        let hexpart = r.strip_prefix("sha256:").unwrap_or(r);
        let looks_like_id = hexpart.len() >= 12
            && hexpart
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if looks_like_id && (r.starts_with("sha256:") || !r.contains(['/', ':'])) {
            let mut m = records
                .iter()
                .filter(|x| hex_of(&x.id).starts_with(hexpart));
            if let (Some(one), None) = (m.next(), m.next()) {
                return Ok(Some(one.clone()));
            }
            if r.starts_with("sha256:") {
                return Ok(None);
            }
        }
        let Ok(name) = reference::parse(r) else {
            return Ok(None);
        };
        if let Some(d) = &name.digest {
            let want = format!("{}@{d}", name.repo());
            return Ok(records.into_iter().find(|x| x.repo_digests.contains(&want)));
        }
        let want = name.full();
        Ok(records.into_iter().find(|x| x.repo_tags.contains(&want)))
    }

    /// Finds an image by name, digest name, ID or unique ID prefix.
    pub fn get(&self, reference: &str) -> Result<Option<Image>> {
        Ok(self.find(reference)?.map(|r| self.to_image(r)))
    }

    /// Unpacked layer directories of an image, base layer first.
    pub fn layers(&self, image: &Image) -> Result<Vec<PathBuf>> {
        let r = self.find(&image.id)?.ok_or_else(|| {
            Error::invalid(
                self.record_path(&image.id),
                "image is no longer in the store",
            )
        })?;
        let dirs: Vec<PathBuf> = r.layers.iter().map(|c| self.layer_dir(c)).collect();
        if let Some(missing) = dirs.iter().find(|d| !d.is_dir()) {
            return Err(Error::invalid(
                missing,
                "layer is missing; remove and pull the image again",
            ));
        }
        Ok(dirs)
    }

    /// Records an image whose config and layer blobs are in the store:
    /// unpacks missing layers and gives it `names` (moved from other images
    /// that had them) and `digest_names`.
    pub(crate) fn commit(
        &self,
        manifest_digest: &str,
        config_digest: &str,
        layer_blobs: &[String],
        names: &[String],
        digest_names: &[String],
    ) -> Result<Image> {
        let config_path = self.blob_path(config_digest);
        let config = ImageConfiguration::from_reader(
            std::fs::File::open(&config_path).map_err(Error::io("open", &config_path))?,
        )
        .map_err(|e| Error::invalid(&config_path, format!("bad image config: {e}")))?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != layer_blobs.len() {
            return Err(Error::invalid(
                &config_path,
                format!(
                    "{} layers but {} diff IDs",
                    layer_blobs.len(),
                    diff_ids.len()
                ),
            ));
        }
        let chains = chain_ids(&diff_ids);
        for (chain, blob) in chains.iter().zip(layer_blobs) {
            let dir = self.layer_dir(chain);
            if dir.is_dir() {
                continue;
            }
            let tmp = self.tmp_path("layer");
            std::fs::create_dir_all(&tmp).map_err(Error::io("create directory", &tmp))?;
            crate::unpack::unpack_layer(&self.blob_path(blob), &tmp)?;
            if let Err(e) = std::fs::rename(&tmp, &dir) {
                let _ = std::fs::remove_dir_all(&tmp);
                if !dir.is_dir() {
                    return Err(Error::io("write", &dir)(e));
                }
            }
        }
        let mut size = std::fs::metadata(&config_path)
            .map(|m| m.len())
            .unwrap_or(0);
        for b in layer_blobs {
            size += std::fs::metadata(self.blob_path(b))
                .map(|m| m.len())
                .unwrap_or(0);
        }
        let _lock = self.lock()?;
        let id = config_digest.to_string();
        for mut other in self.records()? {
            if other.id == id {
                continue;
            }
            let before = other.repo_tags.len();
            other.repo_tags.retain(|t| !names.contains(t));
            if other.repo_tags.len() != before {
                self.write_record(&other)?;
            }
        }
        let mut rec = self.find(&id)?.unwrap_or(Record {
            id: id.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size,
            manifest_digest: manifest_digest.to_string(),
            layers: Vec::new(),
            blobs: Vec::new(),
        });
        rec.layers = chains.iter().map(|c| hex_of(c).to_string()).collect();
        rec.blobs = layer_blobs.to_vec();
        rec.size = size;
        for n in names {
            if !rec.repo_tags.contains(n) {
                rec.repo_tags.push(n.clone());
            }
        }
        for d in digest_names {
            if !rec.repo_digests.contains(d) {
                rec.repo_digests.push(d.clone());
            }
        }
        self.write_record(&rec)?;
        Ok(self.to_image(rec))
    }

    /// Removes an image and the blobs and layers no other image uses.
    pub fn remove(&self, reference: &str) -> Result<bool> {
        let Some(rec) = self.find(reference)? else {
            return Ok(false);
        };
        let _lock = self.lock()?;
        let path = self.record_path(&rec.id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove", &path)(e))
            }
            _ => {}
        }
        let rest = self.records()?;
        let used_layers: HashSet<&String> = rest.iter().flat_map(|r| &r.layers).collect();
        let used_blobs: HashSet<String> = rest
            .iter()
            .flat_map(|r| r.blobs.iter().cloned().chain([r.id.clone()]))
            .collect();
        for l in &rec.layers {
            if !used_layers.contains(l) {
                let _ = std::fs::remove_dir_all(self.layer_dir(l));
            }
        }
        for b in rec.blobs.iter().chain([&rec.id]) {
            if !used_blobs.contains(b) {
                let _ = std::fs::remove_file(self.blob_path(b));
            }
        }
        if !rest
            .iter()
            .any(|r| r.manifest_digest == rec.manifest_digest)
        {
            let _ = std::fs::remove_file(self.blob_path(&rec.manifest_digest));
        }
        Ok(true)
    }

    /// Bytes and inodes under the root.
    pub fn usage(&self) -> Result<Usage> {
        let mut u = Usage::default();
        let mut stack = vec![self.root.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                u.inodes_used += 1;
                if let Ok(m) = e.metadata() {
                    if m.is_dir() {
                        stack.push(e.path());
                    } else {
                        u.used_bytes += m.len();
                    }
                }
            }
        }
        Ok(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], digest_of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn digest_ref_follows_the_requested_repository() {
        let d1 = format!("sha256:{}", "1".repeat(64));
        let d2 = format!("sha256:{}", "2".repeat(64));
        let img = Image {
            id: format!("sha256:{}", "c".repeat(64)),
            repo_tags: vec![],
            repo_digests: vec![
                format!("rkube.local/busybox@{d1}"),
                format!("127.0.0.1:5000/e2e/busybox@{d2}"),
            ],
            size: 0,
            config: ImageConfig::default(),
        };
        assert_eq!(
            img.digest_ref_for("127.0.0.1:5000/e2e/busybox:1"),
            format!("127.0.0.1:5000/e2e/busybox@{d2}")
        );
        assert_eq!(
            img.digest_ref_for("rkube.local/busybox:1"),
            format!("rkube.local/busybox@{d1}")
        );
        assert_eq!(
            img.digest_ref_for("other/x:1"),
            format!("rkube.local/busybox@{d1}")
        );
        let bare = Image {
            repo_digests: vec![],
            ..img
        };
        assert_eq!(bare.digest_ref_for("busybox"), bare.id);
    }
}
