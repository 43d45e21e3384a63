//! Importing images from archives: an OCI image layout (directory or tar;
//! names from `io.containerd.image.name`, else a full
//! `org.opencontainers.image.ref.name`) or a `docker save` tar
//! (`manifest.json` with `RepoTags`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::reference;
use crate::store::{digest_of, ImageStore};
use crate::{Error, Image, Result};

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::invalid(path, e.to_string()))
}

/// The platform an index entry is for, if it says.
fn is_this_platform(desc: &Value) -> bool {
    let Some(p) = desc.get("platform") else {
        return true;
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    p.get("os")
        .and_then(Value::as_str)
        .is_none_or(|o| o == "linux")
        && p.get("architecture")
            .and_then(Value::as_str)
            .is_none_or(|a| a == arch)
}

impl ImageStore {
    /// Imports every image of an OCI layout or docker archive (tar file or
    /// directory).
    pub fn import_archive(&self, path: &Path) -> Result<Vec<Image>> {
        if path.is_dir() {
            return self.import_dir(path);
        }
        let tmp = self.tmp_path("import");
        std::fs::create_dir_all(&tmp).map_err(Error::io("create directory", &tmp))?;
        let result = (|| {
            let f = std::fs::File::open(path).map_err(Error::io("open", path))?;
            let reader = crate::unpack::maybe_gunzip(std::io::BufReader::new(f))
                .map_err(Error::io("read", path))?;
            tar::Archive::new(reader)
                .unpack(&tmp)
                .map_err(|e| Error::invalid(path, format!("not a readable tar archive: {e}")))?;
            self.import_dir(&tmp)
        })();
        let _ = std::fs::remove_dir_all(&tmp);
        result.map_err(|e| match e {
            Error::Invalid { reason, .. } => Error::invalid(path, reason),
            e => e,
        })
    }

    fn import_dir(&self, dir: &Path) -> Result<Vec<Image>> {
        if dir.join("index.json").is_file() {
            self.import_oci(dir)
        } else if dir.join("manifest.json").is_file() {
            self.import_docker(dir)
        } else {
            Err(Error::invalid(
                dir,
                "neither an OCI image layout (index.json) nor a docker archive (manifest.json)",
            ))
        }
    }

    /// Copies a blob of the layout into the store after checking its digest.
    fn take_blob(&self, dir: &Path, digest: &str) -> Result<()> {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| Error::invalid(dir, format!("unsupported digest {digest}")))?;
        if self.blob_path(digest).exists() {
            return Ok(());
        }
        let src = dir.join("blobs/sha256").join(hex);
        Self::verify_file(&src, digest)?;
        let tmp = self.tmp_path("blob");
        std::fs::copy(&src, &tmp).map_err(Error::io("copy", &src))?;
        self.adopt_blob(&tmp, digest)
    }

    fn import_oci(&self, dir: &Path) -> Result<Vec<Image>> {
        let index = read_json(&dir.join("index.json"))?;
        let mut out = Vec::new();
        let entries = index
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for desc in entries {
            let mut names = Vec::new();
            let ann = desc.get("annotations");
            let full = ann
                .and_then(|a| a.get("io.containerd.image.name"))
                .and_then(Value::as_str)
                .or_else(|| {
                    ann.and_then(|a| a.get("org.opencontainers.image.ref.name"))
                        .and_then(Value::as_str)
                        .filter(|n| n.contains('/') || n.contains(':'))
                });
            if let Some(n) = full {
                names.push(reference::normalize(n)?);
            }
            let Some(mut digest) = desc
                .get("digest")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue;
            };
            let mut media = desc
                .get("mediaType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            // An index inside: pick this platform's manifest.
            if media.contains("index") || media.contains("manifest.list") {
                self.take_blob(dir, &digest)?;
                let inner = read_json(&self.blob_path(&digest))?;
                let pick = inner
                    .get("manifests")
                    .and_then(Value::as_array)
                    .and_then(|m| m.iter().find(|d| is_this_platform(d)).cloned())
                    .ok_or_else(|| Error::invalid(dir, "no manifest for this platform"))?;
                digest = pick
                    .get("digest")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                media = String::new();
            }
            let _ = media;
            self.take_blob(dir, &digest)?;
            let manifest = read_json(&self.blob_path(&digest))?;
            let config = manifest
                .pointer("/config/digest")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::invalid(dir, "manifest without config"))?
                .to_string();
            self.take_blob(dir, &config)?;
            let mut layers = Vec::new();
            for l in manifest
                .get("layers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                let d = l
                    .get("digest")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                self.take_blob(dir, &d)?;
                layers.push(d);
            }
            let digest_names: Vec<String> = names
                .iter()
                .filter_map(|n| reference::parse(n).ok())
                .map(|n| format!("{}@{digest}", n.repo()))
                .collect();
            out.push(self.commit(&digest, &config, &layers, &names, &digest_names)?);
        }
        Ok(out)
    }

    fn import_docker(&self, dir: &Path) -> Result<Vec<Image>> {
        let manifest = read_json(&dir.join("manifest.json"))?;
        let mut out = Vec::new();
        for m in manifest.as_array().cloned().unwrap_or_default() {
            let cfg_file = m
                .get("Config")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::invalid(dir, "manifest.json entry without Config"))?;
            let cfg_bytes =
                std::fs::read(dir.join(cfg_file)).map_err(Error::io("read", dir.join(cfg_file)))?;
            let config = self.put_blob(&cfg_bytes)?;
            let mut layers = Vec::new();
            let mut descs = Vec::new();
            for l in m
                .get("Layers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                let rel = l.as_str().unwrap_or_default();
                let p: PathBuf = dir.join(rel);
                let data = std::fs::read(&p).map_err(Error::io("read", &p))?;
                let d = self.put_blob(&data)?;
                descs.push(serde_json::json!({
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                    "digest": d,
                    "size": data.len(),
                }));
                layers.push(d);
            }
            let synthetic = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": cfg_bytes.len()},
                "layers": descs,
            });
            let mbytes = serde_json::to_vec(&synthetic).expect("json");
            let mdigest = digest_of(&mbytes);
            self.put_blob(&mbytes)?;
            let names: Vec<String> = m
                .get("RepoTags")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .filter_map(|n| reference::normalize(n).ok())
                        .collect()
                })
                .unwrap_or_default();
            out.push(self.commit(&mdigest, &config, &layers, &names, &[])?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_the_busybox_archive_and_finds_it_every_way() {
        let d = tempfile::tempdir().unwrap();
        let archive = d.path().join("bb.tar");
        rkube_image::write_busybox_archive(
            &archive,
            "docker.io/library/busybox:1.36",
            Path::new("/bin/busybox"),
        )
        .unwrap();
        let store = ImageStore::open(&d.path().join("store")).unwrap();
        let images = store.import_archive(&archive).unwrap();
        assert_eq!(images.len(), 1);
        let img = &images[0];
        assert_eq!(
            img.repo_tags,
            vec!["docker.io/library/busybox:1.36".to_string()]
        );
        assert!(img.id.starts_with("sha256:"));
        for r in [
            "busybox:1.36",
            "docker.io/library/busybox:1.36",
            img.id.as_str(),
            &img.id[7..],
            &img.id[7..19],
        ] {
            assert_eq!(
                store.get(r).unwrap().map(|i| i.id),
                Some(img.id.clone()),
                "{r}"
            );
        }
        assert!(store.get("busybox").unwrap().is_none());
        let digest_name = img.repo_digests[0].clone();
        assert_eq!(store.get(&digest_name).unwrap().unwrap().id, img.id);
        let layers = store.layers(img).unwrap();
        assert!(
            layers.last().unwrap().join("bin/busybox").is_file()
                || layers.iter().any(|l| l.join("bin/busybox").is_file())
        );
        // Importing again is idempotent; a second name is added by another archive.
        store.import_archive(&archive).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(store.usage().unwrap().used_bytes > 0);
        assert!(store.remove("busybox:1.36").unwrap());
        assert!(!store.remove("busybox:1.36").unwrap());
        assert!(store.list().unwrap().is_empty());
        assert!(!layers[0].exists());
    }

    #[test]
    fn bad_archives_say_what_is_wrong() {
        let d = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&d.path().join("store")).unwrap();
        let junk = d.path().join("junk.tar");
        std::fs::write(&junk, b"not a tar").unwrap();
        let err = store.import_archive(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.tar"), "{err}");
    }
}
