//! The suite's test images, built locally with no registry: busybox and
//! web-server stand-ins from Debian's static busybox, the pause program, and
//! `agnhost` = busybox plus rkube-testhelper (our stand-in for upstream's
//! agnhost) with the shared libraries it links.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use rkube_image::{
    busybox_config, busybox_entries, pause_binary, write_busybox_archive, write_httpd_archive,
    write_image_archive, ImageConfigSpec, LayerEntry,
};

/// Where the images are named by default: loaded into the cluster, never pulled.
pub const DEFAULT_PREFIX: &str = "rkube.local/e2e";

/// References of the test images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// agnhost stand-in (entrypoint `/agnhost`, default `pause`).
    pub agnhost: String,
    /// busybox with a shell and the usual applets.
    pub busybox: String,
    /// Web server on :80 (httpd stand-in).
    pub httpd: String,
    /// The same web server under the tag upstream updates to.
    pub httpd_new: String,
    /// Web server on :80 (nginx stand-in).
    pub nginx: String,
    /// The pause program.
    pub pause: String,
}

impl Images {
    /// The images under registry/prefix `prefix` (e.g. `127.0.0.1:5000/e2e`).
    pub fn with_prefix(prefix: &str) -> Images {
        let p = prefix.trim_end_matches('/');
        Images {
            agnhost: format!("{p}/agnhost:2.53"),
            busybox: format!("{p}/busybox:1.36.1-1"),
            httpd: format!("{p}/httpd:2.4.38-4"),
            httpd_new: format!("{p}/httpd:2.4.39-4"),
            nginx: format!("{p}/nginx:1.14-4"),
            pause: format!("{p}/pause:3.10"),
        }
    }
}

impl Default for Images {
    fn default() -> Self {
        Images::with_prefix(DEFAULT_PREFIX)
    }
}

/// Shared libraries `binary` needs, from `ldd`.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("statically linked") || text.contains("not a dynamic") {
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// Directory entries for every parent of `path` (relative, no leading /).
fn parents(path: &str, seen: &mut BTreeSet<String>) -> Vec<LayerEntry> {
    let mut out = Vec::new();
    let mut acc = String::new();
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(part);
        if seen.insert(acc.clone()) {
            out.push(LayerEntry::dir(acc.clone(), 0o755));
        }
    }
    out
}

/// Writes the agnhost stand-in image: busybox, `/agnhost` and its libraries.
fn write_agnhost(out: &Path, reference: &str, busybox: &Path, helper: &Path) -> Result<()> {
    let mut files = busybox_entries(busybox)?;
    let mut seen: BTreeSet<String> = [
        "tmp", "root", "var", "var/www", "usr", "usr/bin", "sbin", "bin", "etc",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let bytes = std::fs::read(helper)
        .with_context(|| format!("read the test helper {}", helper.display()))?;
    files.push(LayerEntry::file("agnhost", 0o755, bytes));
    // Upstream's image has this second name; the entrypoint tests run it.
    files.push(LayerEntry::symlink("agnhost-2", "agnhost"));
    files.push(LayerEntry::dir("uploads", 0o755));
    for lib in shared_libraries(helper)? {
        let real = std::fs::canonicalize(&lib).unwrap_or(lib.clone());
        let content =
            std::fs::read(&real).with_context(|| format!("read library {}", real.display()))?;
        let rel = lib.to_string_lossy().trim_start_matches('/').to_string();
        files.extend(parents(&rel, &mut seen));
        files.push(LayerEntry::file(rel, 0o755, content));
    }
    let config = ImageConfigSpec {
        entrypoint: Some(vec!["/agnhost".into()]),
        ..busybox_config(vec!["pause".into()])
    };
    write_image_archive(out, reference, &files, &config)?;
    Ok(())
}

/// Writes the pause image.
fn write_pause(out: &Path, reference: &str) -> Result<()> {
    let files = [LayerEntry::file("pause", 0o755, pause_binary())];
    let config = ImageConfigSpec {
        entrypoint: Some(vec!["/pause".into()]),
        ..Default::default()
    };
    write_image_archive(out, reference, &files, &config)?;
    Ok(())
}

/// Writes every test image as an archive into `dir` (one `.tar` each,
/// loadable with `rkube image load`, `docker load`, `ctr images import` or
/// `skopeo copy docker-archive:`); returns the files.
pub fn write_archives(
    images: &Images,
    dir: &Path,
    busybox: &Path,
    helper: &Path,
) -> Result<Vec<PathBuf>> {
    if !busybox.exists() {
        bail!(
            "{} not found: install Debian's busybox-static",
            busybox.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut path = |name: &str| {
        let p = dir.join(format!("{name}.tar"));
        written.push(p.clone());
        p
    };
    write_agnhost(&path("agnhost"), &images.agnhost, busybox, helper)?;
    write_busybox_archive(&path("busybox"), &images.busybox, busybox)?;
    write_httpd_archive(&path("httpd"), &images.httpd, busybox)?;
    write_httpd_archive(&path("httpd-new"), &images.httpd_new, busybox)?;
    write_httpd_archive(&path("nginx"), &images.nginx, busybox)?;
    write_pause(&path("pause"), &images.pause)?;
    Ok(written)
}

/// The test helper binary: `explicit`, else `rkube-testhelper` next to the
/// running program (or one directory up, for test binaries in `deps/`).
pub fn find_helper(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let p = dir.join("rkube-testhelper");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "rkube-testhelper not found next to {}: run `cargo build -p rkube-testhelper` (or pass --testhelper)",
        exe.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_name_every_image() {
        let i = Images::with_prefix("127.0.0.1:5000/e2e/");
        assert_eq!(i.agnhost, "127.0.0.1:5000/e2e/agnhost:2.53");
        assert_eq!(Images::default().pause, "rkube.local/e2e/pause:3.10");
    }

    #[test]
    fn parents_are_listed_once() {
        let mut seen = BTreeSet::new();
        let a = parents("lib/x86_64-linux-gnu/libc.so.6", &mut seen);
        assert_eq!(a.len(), 2);
        assert!(parents("lib/x86_64-linux-gnu/libm.so.6", &mut seen).is_empty());
    }
}
