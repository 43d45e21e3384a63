//! Image archives: one tar that is both an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) and a docker-archive (`manifest.json`),
//! like `docker save` of Docker 25+. The index's manifest descriptor carries
//! `io.containerd.image.name` (the full reference, used by `ctr images
//! import`) and `org.opencontainers.image.ref.name` (the tag).

use crate::{
    layer::{build_layer, sha256_digest, LayerEntry},
    reference::{normalize_reference, reference_tag},
    spec::*,
    Error, Result,
};
use flate2::read::GzDecoder;
use std::{
    collections::BTreeMap,
    fs,
    io::{BufReader, Read, Seek, SeekFrom, Write},
    path::Path,
};

/// Timestamp recorded in configs and history (fixed for reproducibility).
const CREATED: &str = "1970-01-01T00:00:00Z";

/// The runtime defaults of an image (the `config` object of an OCI image config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfigSpec {
    /// `KEY=value` environment entries.
    pub env: Vec<String>,
    /// Entrypoint, if any.
    pub entrypoint: Option<Vec<String>>,
    /// Default command (arguments to the entrypoint), if any.
    pub cmd: Option<Vec<String>>,
    /// Working directory, if any.
    pub working_dir: Option<String>,
    /// `uid[:gid]` or user name, if any.
    pub user: Option<String>,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
    /// Text recorded in the image history's `created_by`.
    pub created_by: Option<String>,
}

/// What [`write_image_archive`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The fully qualified reference the archive names (see
    /// [`normalize_reference`]).
    pub reference: String,
    /// `sha256:` digest of the image manifest (what `ctr images ls` shows).
    pub manifest_digest: String,
    /// `sha256:` digest of the config: the image ID runtimes report.
    pub config_digest: String,
    /// Total size in bytes of the image's blobs (manifest, config, layers).
    pub size: u64,
}

/// The OCI architecture name of the machine rkube was built for.
pub(crate) fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Writes a single-layer image made of `layer_files` with runtime defaults
/// `config`, named `reference` (must be tagged; normalised), to the tar `out`
/// (written to a temporary file and renamed into place). The same inputs
/// always give the same bytes.
pub fn write_image_archive(
    out: &Path,
    reference: &str,
    layer_files: &[LayerEntry],
    config: &ImageConfigSpec,
) -> Result<ImageInfo> {
    let reference = normalize_reference(reference)?;
    let tag = reference_tag(&reference)
        .ok_or(Error::InvalidReference {
            reference: reference.clone(),
            reason: "an archive needs a tag",
        })?
        .to_string();

    let layer = build_layer(layer_files)?;
    let layer_digest = sha256_digest(&layer.gzip);

    let image_config = ImageConfig {
        created: CREATED.into(),
        architecture: oci_arch().into(),
        os: "linux".into(),
        config: ContainerConfig {
            user: config.user.clone(),
            env: config.env.clone(),
            entrypoint: config.entrypoint.clone(),
            cmd: config.cmd.clone(),
            working_dir: config.working_dir.clone(),
            labels: config.labels.clone(),
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer.diff_id.clone()],
        },
        history: vec![History {
            created: CREATED.into(),
            created_by: config
                .created_by
                .clone()
                .unwrap_or_else(|| "rkube image builder".into()),
            comment: Some("built by rkube".into()),
        }],
    };
    let config_json = serde_json::to_vec(&image_config).map_err(Error::json("config"))?;
    let config_digest = sha256_digest(&config_json);

    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST,
        config: Descriptor {
            media_type: MEDIA_CONFIG.into(),
            digest: config_digest.clone(),
            size: config_json.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers: vec![Descriptor {
            media_type: MEDIA_LAYER_GZIP.into(),
            digest: layer_digest.clone(),
            size: layer.gzip.len() as u64,
            annotations: BTreeMap::new(),
        }],
    };
    let manifest_json = serde_json::to_vec(&manifest).map_err(Error::json("manifest"))?;
    let manifest_digest = sha256_digest(&manifest_json);

    let index = Index {
        schema_version: 2,
        media_type: MEDIA_INDEX.into(),
        manifests: vec![Descriptor {
            media_type: MEDIA_MANIFEST.into(),
            digest: manifest_digest.clone(),
            size: manifest_json.len() as u64,
            annotations: BTreeMap::from([
                (ANNOTATION_CONTAINERD_NAME.to_string(), reference.clone()),
                (ANNOTATION_REF_NAME.to_string(), tag),
            ]),
        }],
    };
    let index_json = serde_json::to_vec(&index).map_err(Error::json("index"))?;
    let blob_path = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let docker_manifest = vec![DockerManifestEntry {
        config: blob_path(&config_digest),
        repo_tags: Some(vec![reference.clone()]),
        layers: vec![blob_path(&layer_digest)],
    }];
    let docker_json = serde_json::to_vec(&docker_manifest).map_err(Error::json("manifest.json"))?;

    let files: [(String, &[u8]); 7] = [
        ("blobs/".into(), &[]),
        ("blobs/sha256/".into(), &[]),
        (blob_path(&config_digest), &config_json),
        (blob_path(&layer_digest), &layer.gzip),
        (blob_path(&manifest_digest), &manifest_json),
        ("index.json".into(), &index_json),
        ("manifest.json".into(), &docker_json),
    ];
    let layout: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    }
    let tmp = out.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut builder = tar::Builder::new(std::io::BufWriter::new(fs::File::create(&tmp)?));
        for (name, data) in files
            .iter()
            .map(|(n, d)| (n.as_str(), *d))
            .chain([("oci-layout", layout)])
        {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(crate::FIXED_MTIME);
            if name.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
            } else {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
            }
            h.set_size(data.len() as u64);
            builder.append_data(&mut h, name, data)?;
        }
        let mut w = builder.into_inner()?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    write().map_err(Error::io("write image archive", &tmp))?;
    fs::rename(&tmp, out).map_err(Error::io("rename image archive into", out))?;

    let size = (config_json.len() + layer.gzip.len() + manifest_json.len()) as u64;
    tracing::debug!(%reference, %manifest_digest, %config_digest, size, path = %out.display(), "wrote image archive");
    Ok(ImageInfo {
        reference,
        manifest_digest,
        config_digest,
        size,
    })
}

/// Lists the image references in an archive: a tar (optionally gzip
/// compressed) in OCI or docker-archive format, or an OCI layout directory.
/// References come from index.json annotations (`io.containerd.image.name`,
/// else a full `org.opencontainers.image.ref.name`) and manifest.json
/// `RepoTags`, normalised and de-duplicated in order. An archive without
/// names gives an empty list.
pub fn read_archive_refs(path: &Path) -> Result<Vec<String>> {
    let (index, manifest) = if path.is_dir() {
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            let p = path.join(name);
            match fs::read(&p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io("read", p)(e)),
            }
        };
        (read("index.json")?, read("manifest.json")?)
    } else {
        read_tar_docs(path).map_err(Error::io("read image archive", path))?
    };
    if index.is_none() && manifest.is_none() {
        return Err(Error::NotAnArchive(path.to_path_buf()));
    }

    let mut refs: Vec<String> = Vec::new();
    let mut push = |r: &str| {
        if let Ok(n) = normalize_reference(r) {
            if !refs.contains(&n) {
                refs.push(n);
            }
        }
    };
    if let Some(index) = index {
        let index: Index = serde_json::from_slice(&index).map_err(Error::json("index.json"))?;
        for m in &index.manifests {
            if let Some(name) = m.annotations.get(ANNOTATION_CONTAINERD_NAME) {
                push(name);
            } else if let Some(name) = m.annotations.get(ANNOTATION_REF_NAME) {
                // A bare tag ("latest") names nothing by itself.
                if name.contains(['/', ':', '@']) {
                    push(name);
                }
            }
        }
    }
    if let Some(manifest) = manifest {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(&manifest).map_err(Error::json("manifest.json"))?;
        for tag in entries.iter().flat_map(|e| e.repo_tags.iter().flatten()) {
            push(tag);
        }
    }
    Ok(refs)
}

/// The bytes of an archive's JSON document, if present.
type Doc = Option<Vec<u8>>;

/// Reads index.json and manifest.json from a (possibly gzipped) tar.
fn read_tar_docs(path: &Path) -> std::io::Result<(Doc, Doc)> {
    let mut file = fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let gz = file.read(&mut magic)? == 2 && magic == [0x1f, 0x8b];
    file.seek(SeekFrom::Start(0))?;
    let reader: Box<dyn Read> = if gz {
        Box::new(GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let (mut index, mut manifest) = (None, None);
    for entry in tar::Archive::new(reader).entries()? {
        let mut entry = entry?;
        let name = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let slot = match name.as_str() {
            "index.json" => &mut index,
            "manifest.json" => &mut manifest,
            _ => continue,
        };
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf)?;
        *slot = Some(buf);
    }
    Ok((index, manifest))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

    fn sample() -> (Vec<LayerEntry>, ImageConfigSpec) {
        let files = vec![
            LayerEntry::file("app/run", 0o755, b"#!/bin/sh\necho hi\n".to_vec()),
            LayerEntry::symlink("bin/run", "/app/run"),
        ];
        let config = ImageConfigSpec {
            env: vec!["PATH=/bin".into(), "A=b".into()],
            entrypoint: Some(vec!["/app/run".into()]),
            cmd: Some(vec!["x".into()]),
            working_dir: Some("/app".into()),
            user: Some("1000:1000".into()),
            ..Default::default()
        };
        (files, config)
    }

    /// Every regular file of the outer tar by name.
    pub(crate) fn read_entries(path: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut ar = tar::Archive::new(fs::File::open(path).unwrap());
        ar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), data)
            })
            .collect()
    }

    #[test]
    fn reproducible_digests() {
        let dir = tempfile::tempdir().unwrap();
        let (files, config) = sample();
        let a = write_image_archive(
            &dir.path().join("a.tar"),
            "example.com/app:v1",
            &files,
            &config,
        )
        .unwrap();
        let b = write_image_archive(
            &dir.path().join("b.tar"),
            "example.com/app:v1",
            &files,
            &config,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            fs::read(dir.path().join("a.tar")).unwrap(),
            fs::read(dir.path().join("b.tar")).unwrap()
        );
        let mut other = config.clone();
        other.cmd = Some(vec!["y".into()]);
        let c = write_image_archive(
            &dir.path().join("c.tar"),
            "example.com/app:v1",
            &files,
            &other,
        )
        .unwrap();
        assert_ne!(a.config_digest, c.config_digest);
    }

    #[test]
    fn archive_is_oci_layout_and_docker_archive() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub/app.tar");
        let (files, config) = sample();
        let info = write_image_archive(&out, "app:v1", &files, &config).unwrap();
        assert_eq!(info.reference, "docker.io/library/app:v1");
        let entries = read_entries(&out);
        let blob =
            |d: &str| entries[&format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))].clone();

        let layout: Value = serde_json::from_slice(&entries["oci-layout"]).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");

        let index: Value = serde_json::from_slice(&entries["index.json"]).unwrap();
        let desc = &index["manifests"][0];
        assert_eq!(desc["digest"], info.manifest_digest.as_str());
        assert_eq!(desc["mediaType"], MEDIA_MANIFEST);
        assert_eq!(
            desc["annotations"][ANNOTATION_CONTAINERD_NAME],
            "docker.io/library/app:v1"
        );
        assert_eq!(desc["annotations"][ANNOTATION_REF_NAME], "v1");

        let manifest_bytes = blob(&info.manifest_digest);
        assert_eq!(sha256_digest(&manifest_bytes), info.manifest_digest);
        assert_eq!(desc["size"], manifest_bytes.len());
        let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["config"]["digest"], info.config_digest.as_str());
        let layer_digest = manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let layer = blob(&layer_digest);
        assert_eq!(sha256_digest(&layer), layer_digest);
        assert_eq!(manifest["layers"][0]["mediaType"], MEDIA_LAYER_GZIP);

        let docker: Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
        assert_eq!(docker[0]["RepoTags"][0], "docker.io/library/app:v1");
        assert_eq!(
            docker[0]["Config"],
            format!("blobs/sha256/{}", &info.config_digest[7..])
        );
        assert_eq!(
            docker[0]["Layers"][0],
            format!("blobs/sha256/{}", &layer_digest[7..])
        );

        let config_bytes = blob(&info.config_digest);
        let cfg: Value = serde_json::from_slice(&config_bytes).unwrap();
        assert_eq!(cfg["os"], "linux");
        assert_eq!(cfg["architecture"], oci_arch());
        assert_eq!(
            cfg["config"]["Env"],
            serde_json::json!(["PATH=/bin", "A=b"])
        );
        assert_eq!(cfg["config"]["Entrypoint"], serde_json::json!(["/app/run"]));
        assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["x"]));
        assert_eq!(cfg["config"]["WorkingDir"], "/app");
        assert_eq!(cfg["config"]["User"], "1000:1000");
        assert_eq!(cfg["rootfs"]["type"], "layers");
        let mut raw = Vec::new();
        GzDecoder::new(layer.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(cfg["rootfs"]["diff_ids"][0], sha256_digest(&raw).as_str());
        assert_eq!(cfg["history"].as_array().unwrap().len(), 1);
        assert_eq!(
            info.size,
            (manifest_bytes.len() + config_bytes.len() + layer.len()) as u64
        );

        assert_eq!(
            read_archive_refs(&out).unwrap(),
            ["docker.io/library/app:v1"]
        );
    }

    #[test]
    fn rejects_untagged_reference() {
        let dir = tempfile::tempdir().unwrap();
        let d = format!("app@sha256:{}", "0".repeat(64));
        let err = write_image_archive(&dir.path().join("x.tar"), &d, &[], &Default::default())
            .unwrap_err();
        assert!(matches!(err, Error::InvalidReference { .. }), "{err}");
    }

    #[test]
    fn refs_from_docker_archive_layout_dir_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        // docker save of an older Docker: manifest.json only, familiar names.
        let docker = dir.path().join("docker");
        fs::create_dir(&docker).unwrap();
        fs::write(
            docker.join("manifest.json"),
            r#"[{"Config":"c.json","RepoTags":["busybox:latest","quay.io/x/y:1"],"Layers":[]},{"Config":"d.json","RepoTags":null,"Layers":[]}]"#,
        )
        .unwrap();
        assert_eq!(
            read_archive_refs(&docker).unwrap(),
            ["docker.io/library/busybox:latest", "quay.io/x/y:1"]
        );

        // An OCI layout with only a bare tag names nothing; a full ref.name counts.
        let oci = dir.path().join("oci");
        fs::create_dir(&oci).unwrap();
        fs::write(
            oci.join("index.json"),
            r#"{"schemaVersion":2,"manifests":[
                {"mediaType":"m","digest":"sha256:1","size":1,"annotations":{"org.opencontainers.image.ref.name":"latest"}},
                {"mediaType":"m","digest":"sha256:2","size":1,"annotations":{"org.opencontainers.image.ref.name":"example.com/a:b"}}]}"#,
        )
        .unwrap();
        assert_eq!(read_archive_refs(&oci).unwrap(), ["example.com/a:b"]);

        // A gzip-compressed archive.
        let tar_path = dir.path().join("x.tar");
        let info =
            write_image_archive(&tar_path, "example.com/z:1", &sample().0, &sample().1).unwrap();
        let gz_path = dir.path().join("x.tar.gz");
        let mut gz =
            flate2::write::GzEncoder::new(fs::File::create(&gz_path).unwrap(), Default::default());
        gz.write_all(&fs::read(&tar_path).unwrap()).unwrap();
        gz.finish().unwrap();
        assert_eq!(read_archive_refs(&gz_path).unwrap(), [info.reference]);

        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert!(matches!(
            read_archive_refs(&empty),
            Err(Error::NotAnArchive(_))
        ));
    }
}
