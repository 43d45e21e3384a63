//! `rkube image load|ls|rm`: local images in a running profile's container
//! runtime, for clusters with no registry to pull from. The verbs go
//! through the profile's [`Backend`]: containerd imports archives with `ctr`
//! and lists and removes over CRI on the profile's socket; the bundled
//! cri-o runtime uses its on-disk image store, which the running daemon
//! reads. Their output is tested with a fake backend.

use std::io::Write;
use std::path::PathBuf;

use rkube_host::Procfs;
use rkube_runtime::ImageSummary;

use crate::backend::{self, Backend};
use crate::profile::Profile;

/// Errors of the image verbs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The profile cannot be read.
    #[error(transparent)]
    Profile(#[from] crate::Error),
    /// The profile's daemon is not running.
    #[error("profile {0} is not running; start it with `rkube start --profile {0}`")]
    NotRunning(String),
    /// The runtime failed.
    #[error(transparent)]
    Backend(#[from] backend::Error),
    /// Writing the output failed.
    #[error("cannot write output")]
    Output(#[source] std::io::Error),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The running profile's runtime, or an error saying what to do.
pub fn store(profile_name: &str) -> Result<Box<dyn Backend>> {
    store_in(&Profile::new(profile_name)?, &Procfs::default())
}

/// [`store`] for a given profile and `/proc`.
pub fn store_in(profile: &Profile, procfs: &Procfs) -> Result<Box<dyn Backend>> {
    let config = profile.require_config()?;
    if procfs
        .running(&profile.pid_file(), profile.dir())
        .map_err(crate::Error::from)?
        .is_none()
    {
        return Err(Error::NotRunning(profile.name().to_string()));
    }
    Ok(backend::for_profile(profile, &config)?)
}

/// Imports every path, printing `Loaded image: <name>` for each image.
pub async fn load_with(store: &dyn Backend, paths: &[PathBuf], out: &mut impl Write) -> Result<()> {
    for path in paths {
        for name in store.import_image(path).await? {
            writeln!(out, "Loaded image: {name}").map_err(Error::Output)?;
        }
    }
    Ok(())
}

/// Prints the images: a table, or only their names with `quiet`.
pub async fn list_with(store: &dyn Backend, quiet: bool, out: &mut impl Write) -> Result<()> {
    let images = store.list_images().await?;
    out.write_all(render_list(&images, quiet).as_bytes())
        .map_err(Error::Output)
}

/// Removes every reference, printing `Removed image: <ref>` for each.
pub async fn remove_with(
    store: &dyn Backend,
    references: &[String],
    out: &mut impl Write,
) -> Result<()> {
    for r in references {
        store.remove_image(r).await?;
        writeln!(out, "Removed image: {r}").map_err(Error::Output)?;
    }
    Ok(())
}

/// Splits `repo:tag` (the tag is after the last '/').
fn split_tag(name: &str) -> (&str, &str) {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], &name[slash + i + 1..]),
        None => (name, "<none>"),
    }
}

/// Sizes as crictl prints them (decimal units).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + UNITS[u]
    }
}

/// Renders `rkube image ls`.
pub fn render_list(images: &[ImageSummary], quiet: bool) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    for img in images {
        let id: String = img
            .id
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect();
        let names: Vec<&str> = if img.repo_tags.is_empty() {
            img.repo_digests
                .iter()
                .map(|d| d.split('@').next().unwrap_or(d))
                .take(1)
                .collect()
        } else {
            img.repo_tags.iter().map(String::as_str).collect()
        };
        for name in names {
            let (repo, tag) = if img.repo_tags.is_empty() {
                (name, "<none>")
            } else {
                split_tag(name)
            };
            rows.push([repo.into(), tag.into(), id.clone(), human_size(img.size)]);
        }
    }
    if quiet {
        return rows
            .iter()
            .map(|r| {
                if r[1] == "<none>" {
                    format!("{}\n", r[0])
                } else {
                    format!("{}:{}\n", r[0], r[1])
                }
            })
            .collect();
    }
    let header = ["IMAGE", "TAG", "IMAGE ID", "SIZE"].map(String::from);
    let mut widths = [0; 4];
    for r in std::iter::once(&header).chain(&rows) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|r| {
            format!(
                "{:<w0$}   {:<w1$}   {:<w2$}   {}\n",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )
        })
        .collect()
}

/// `rkube image load`.
pub async fn load(profile: &str, paths: &[PathBuf]) -> Result<()> {
    load_with(&*store(profile)?, paths, &mut std::io::stdout()).await
}

/// `rkube image ls`.
pub async fn list(profile: &str, quiet: bool) -> Result<()> {
    list_with(&*store(profile)?, quiet, &mut std::io::stdout()).await
}

/// `rkube image rm`.
pub async fn remove(profile: &str, references: &[String]) -> Result<()> {
    remove_with(&*store(profile)?, references, &mut std::io::stdout()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Fake {
        images: Mutex<Vec<ImageSummary>>,
    }

    #[async_trait::async_trait]
    impl Backend for Fake {
        async fn start(&mut self) -> backend::Result<()> {
            Ok(())
        }
        fn cri_socket(&self) -> PathBuf {
            PathBuf::new()
        }
        async fn stop(&mut self) -> backend::Result<()> {
            Ok(())
        }
        async fn delete(&mut self) -> backend::Result<()> {
            Ok(())
        }
        async fn import_image(&self, path: &Path) -> backend::Result<Vec<String>> {
            if path.ends_with("bad.tar") {
                return Err(rkube_runtime::Error::NoImages(path.into()).into());
            }
            let name = format!(
                "docker.io/library/{}:latest",
                path.file_stem().unwrap().to_string_lossy()
            );
            let mut images = self.images.lock().unwrap();
            let id = format!("sha256:{:0>64}", images.len());
            images.push(ImageSummary {
                id,
                repo_tags: vec![name.clone()],
                repo_digests: vec![],
                size: 1_990_000,
            });
            Ok(vec![name])
        }
        async fn list_images(&self) -> backend::Result<Vec<ImageSummary>> {
            Ok(self.images.lock().unwrap().clone())
        }
        async fn remove_image(&self, reference: &str) -> backend::Result<()> {
            let mut imgs = self.images.lock().unwrap();
            let before = imgs.len();
            imgs.retain(|i| !i.repo_tags.iter().any(|t| t.contains(reference)));
            if imgs.len() == before {
                return Err(rkube_runtime::Error::ImageNotFound(reference.into()).into());
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn load_ls_rm() {
        let fake = Fake::default();
        let mut out = Vec::new();
        load_with(&fake, &["a/busybox.tar".into(), "app.tar".into()], &mut out)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Loaded image: docker.io/library/busybox:latest\nLoaded image: docker.io/library/app:latest\n"
        );
        let err = load_with(&fake, &["bad.tar".into()], &mut Vec::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("holds no named image"), "{err}");

        let mut out = Vec::new();
        list_with(&fake, false, &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
        );
        assert!(
            lines[1].starts_with("docker.io/library/busybox   latest   000000000000   1.99MB"),
            "{text}"
        );
        let mut out = Vec::new();
        list_with(&fake, true, &mut out).await.unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "docker.io/library/busybox:latest\ndocker.io/library/app:latest\n"
        );

        let mut out = Vec::new();
        remove_with(&fake, &["busybox".into()], &mut out)
            .await
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "Removed image: busybox\n");
        let err = remove_with(&fake, &["busybox".into()], &mut Vec::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[test]
    fn splits_tags_and_sizes() {
        assert_eq!(
            split_tag("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app", "<none>")
        );
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1_990_000), "1.99MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
        let untagged = ImageSummary {
            id: "sha256:abcdef0123456789".into(),
            repo_tags: vec![],
            repo_digests: vec!["docker.io/x/y@sha256:aa".into()],
            size: 10,
        };
        assert_eq!(render_list(&[untagged], true), "docker.io/x/y\n");
    }

    #[tokio::test]
    async fn requires_a_running_profile() {
        use crate::profile::{ContainerRuntime, ProfileConfig};
        use rkube_host::PidFile;
        let home = tempfile::tempdir().unwrap();
        let proc_root = home.path().join("proc");
        let procfs = Procfs::new(&proc_root);
        let p = Profile::in_home(home.path(), "dev").unwrap();
        let err = store_in(&p, &procfs).err().expect("an error").to_string();
        assert!(err.contains("does not exist"), "{err}");
        let mut cfg = ProfileConfig::new_default();
        cfg.container_runtime = ContainerRuntime::CriO;
        p.save_config(&cfg).unwrap();
        let err = store_in(&p, &procfs).err().expect("an error").to_string();
        assert_eq!(
            err,
            "profile dev is not running; start it with `rkube start --profile dev`"
        );
        // A live daemon in a fake /proc.
        std::fs::create_dir_all(proc_root.join("77")).unwrap();
        std::fs::write(proc_root.join("77/stat"), "77 (rkube) S 1").unwrap();
        std::fs::write(proc_root.join("77/cmdline"), "/usr/bin/rkube\0daemon\0").unwrap();
        PidFile { pid: 77, exe: None }.write(&p.pid_file()).unwrap();
        assert_eq!(
            store_in(&p, &procfs).unwrap().cri_socket(),
            home.path().join("profiles/dev/crio.sock")
        );
        cfg.container_runtime = ContainerRuntime::Docker;
        p.save_config(&cfg).unwrap();
        assert_eq!(
            store_in(&p, &procfs).unwrap().cri_socket(),
            home.path().join("profiles/dev/docker/dockershim.sock")
        );
        cfg.container_runtime = ContainerRuntime::Containerd;
        p.save_config(&cfg).unwrap();
        assert_eq!(
            store_in(&p, &procfs).unwrap().cri_socket(),
            home.path().join("profiles/dev/containerd/containerd.sock")
        );
    }
}
