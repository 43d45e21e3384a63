//! Local images: importing archives into containerd with `ctr`, and the
//! image listing shown by `rkube image ls`.
//!
//! The CRI plugin sees images of containerd's `k8s.io` namespace, and runs
//! containers from snapshots unpacked for its snapshotter, so archives are
//! imported there with `ctr images import` (which unpacks by default) for
//! the host platform. Docker archives carry full names; an OCI archive's
//! `org.opencontainers.image.ref.name` may be short (`busybox:1`), which
//! ctr keeps verbatim, so imported names are re-tagged in the normalized
//! form CRI resolves pod images to (`docker.io/library/busybox:1`); a bare
//! ref name (`busybox`) is taken as the image name. An OCI layout directory
//! is streamed to ctr as a tar.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use rkube_cri::api;
use tokio::process::Command;

use crate::{Error, Result};

/// containerd namespace the CRI plugin uses.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// One image as `rkube image ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// Image id (config digest).
    pub id: String,
    /// Names, e.g. `docker.io/library/busybox:latest`.
    pub repo_tags: Vec<String>,
    /// Digested names.
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: u64,
}

impl From<api::Image> for ImageSummary {
    fn from(i: api::Image) -> Self {
        Self {
            id: i.id,
            repo_tags: i.repo_tags,
            repo_digests: i.repo_digests,
            size: i.size,
        }
    }
}

/// Normalizes an image name as Docker and CRI do: `busybox` →
/// `docker.io/library/busybox:latest`, `me/app:1` → `docker.io/me/app:1`,
/// `localhost:5000/app` → `localhost:5000/app:latest`. Digests are kept.
pub fn normalize_reference(name: &str) -> String {
    let (first, rest) = match name.split_once('/') {
        Some((f, r)) if f.contains(['.', ':']) || f == "localhost" => (f.to_string(), r),
        _ => ("docker.io".to_string(), name),
    };
    let rest = if first == "docker.io" && !rest.contains('/') {
        format!("library/{rest}")
    } else {
        rest.to_string()
    };
    let (path, digest) = match rest.split_once('@') {
        Some((p, d)) => (p.to_string(), Some(d)),
        None => (rest, None),
    };
    let last = path.rsplit('/').next().unwrap_or_default();
    let path = if last.contains(':') || digest.is_some() {
        path
    } else {
        format!("{path}:latest")
    };
    match digest {
        Some(d) => format!("{first}/{path}@{d}"),
        None => format!("{first}/{path}"),
    }
}

/// What ctr is given to read: a file, or `-` with a tar on stdin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportSource {
    /// A docker-archive or OCI archive file.
    Archive(PathBuf),
    /// An OCI layout directory, tarred on the fly.
    LayoutDir(PathBuf),
}

impl ImportSource {
    /// Classifies `path`.
    pub fn of(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(Error::io("read", path))?;
        if meta.is_dir() {
            if path.join("oci-layout").is_file() && path.join("index.json").is_file() {
                Ok(ImportSource::LayoutDir(path.to_path_buf()))
            } else {
                Err(Error::NotAnImage(path.to_path_buf()))
            }
        } else {
            Ok(ImportSource::Archive(path.to_path_buf()))
        }
    }
}

/// `ctr` arguments after the global flags to import `source`.
pub fn import_args(source: &ImportSource) -> Vec<String> {
    let input = match source {
        ImportSource::Archive(p) => p.to_string_lossy().into_owned(),
        ImportSource::LayoutDir(_) => "-".to_string(),
    };
    ["images", "import", "--snapshotter", "overlayfs", &input]
        .map(String::from)
        .to_vec()
}

/// Image names from `ctr images import` output (`unpacking NAME (DIGEST)...done`).
pub fn parse_imported(stdout: &str) -> Vec<String> {
    let mut names: Vec<String> = stdout
        .split("unpacking ")
        .skip(1)
        .filter_map(|s| s.split_once(" (").map(|(n, _)| n.trim().to_string()))
        .filter(|n| !n.is_empty())
        .collect();
    names.dedup();
    names
}

/// The OCI ref name behind a name ctr made up for a bare tag: ctr names an
/// image whose `org.opencontainers.image.ref.name` is a bare word `w`
/// (e.g. `oci:dir:busybox` from skopeo) `import-YYYY-MM-DD:w`; rkube takes
/// `w` as the image name instead, as other tools loading such a layout do.
pub fn untranslated(name: &str) -> &str {
    let Some(rest) = name.strip_prefix("import-") else {
        return name;
    };
    let date_ok = rest.len() > 11
        && rest.as_bytes()[10] == b':'
        && rest[..10].bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if date_ok {
        &rest[11..]
    } else {
        name
    }
}

/// Runs `ctr --address <socket> -n k8s.io <args>`, feeding it `stdin_dir`
/// as a tar when given; returns stdout.
pub(crate) async fn ctr(
    socket: &Path,
    args: &[String],
    stdin_dir: Option<&Path>,
) -> Result<String> {
    let mut cmd = Command::new("ctr");
    cmd.env("PATH", rkube_host::path::search_path())
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut tar = None;
    if let Some(dir) = stdin_dir {
        let mut t = std::process::Command::new("tar");
        t.arg("-C")
            .arg(dir)
            .args(["-cf", "-", "."])
            .stdout(Stdio::piped());
        let mut child = t.spawn().map_err(|source| rkube_host::Error::Spawn {
            program: "tar".into(),
            source,
        })?;
        let out = child.stdout.take().expect("piped");
        cmd.stdin(Stdio::from(out));
        tar = Some(child);
    } else {
        cmd.stdin(Stdio::null());
    }
    let out = cmd
        .output()
        .await
        .map_err(|source| rkube_host::Error::Spawn {
            program: "ctr".into(),
            source,
        });
    if let Some(mut t) = tar {
        let _ = t.wait();
    }
    let out = out?;
    if !out.status.success() {
        return Err(Error::Ctr {
            args: args.join(" "),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Imports the archive or OCI layout at `path` into the containerd serving
/// `socket`; returns the normalized names of the images imported.
pub async fn import(socket: &Path, path: &Path) -> Result<Vec<String>> {
    let source = ImportSource::of(path)?;
    let dir = match &source {
        ImportSource::LayoutDir(d) => Some(d.as_path()),
        ImportSource::Archive(_) => None,
    };
    let stdout = ctr(socket, &import_args(&source), dir).await?;
    let names = parse_imported(&stdout);
    if names.is_empty() {
        return Err(Error::NoImages(path.to_path_buf()));
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let full = normalize_reference(untranslated(&name));
        if full != name {
            let tag = ["images", "tag", "--force", &name, &full].map(String::from);
            ctr(socket, &tag, None).await?;
            ctr(socket, &["images", "rm", &name].map(String::from), None).await?;
        }
        out.push(full);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        for (short, full) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("me/app", "docker.io/me/app:latest"),
            ("docker.io/busybox:1", "docker.io/library/busybox:1"),
            ("docker.io/library/busybox:1", "docker.io/library/busybox:1"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("localhost/app:v2", "localhost/app:v2"),
            ("rkube.local/pause:1", "rkube.local/pause:1"),
            ("quay.io/a/b/c", "quay.io/a/b/c:latest"),
            ("busybox@sha256:abc", "docker.io/library/busybox@sha256:abc"),
            ("reg:5000/x:1@sha256:abc", "reg:5000/x:1@sha256:abc"),
        ] {
            assert_eq!(normalize_reference(short), full, "{short}");
        }
    }

    #[test]
    fn bare_oci_ref_names_become_image_names() {
        assert_eq!(untranslated("import-2026-11-23:busybox"), "busybox");
        assert_eq!(
            normalize_reference(untranslated("import-2026-11-23:busybox")),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(untranslated("import-x:busybox"), "import-x:busybox");
        assert_eq!(
            untranslated("docker.io/library/busybox:1"),
            "docker.io/library/busybox:1"
        );
    }

    #[test]
    fn parses_ctr_import_output() {
        let out = "unpacking docker.io/library/busybox:latest (sha256:aa)...done\n\
                   unpacking rkube.local/pause:1 (sha256:bb)...done\n";
        assert_eq!(
            parse_imported(out),
            vec!["docker.io/library/busybox:latest", "rkube.local/pause:1"]
        );
        assert!(parse_imported("").is_empty());
    }

    #[test]
    fn classifies_sources() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("img.tar");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            ImportSource::of(&file).unwrap(),
            ImportSource::Archive(file.clone())
        );
        assert!(matches!(
            ImportSource::of(dir.path()),
            Err(Error::NotAnImage(_))
        ));
        std::fs::write(dir.path().join("oci-layout"), "{}").unwrap();
        std::fs::write(dir.path().join("index.json"), "{}").unwrap();
        let layout = ImportSource::of(dir.path()).unwrap();
        assert_eq!(import_args(&layout).last().unwrap(), "-");
        assert_eq!(
            import_args(&ImportSource::Archive(file.clone())),
            vec![
                "images",
                "import",
                "--snapshotter",
                "overlayfs",
                &*file.to_string_lossy()
            ]
        );
        assert!(ImportSource::of(&dir.path().join("missing")).is_err());
    }
}
