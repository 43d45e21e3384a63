//! A small test image from a static busybox (Debian's `busybox-static`,
//! /usr/bin/busybox): `/bin/busybox`, applet symlinks in /bin, a minimal
//! /etc/passwd and /etc/group, /tmp, /root and /var/www (for `httpd`).

use crate::{write_image_archive, Error, ImageConfigSpec, ImageInfo, LayerEntry, Result};
use std::path::Path;

/// The applets linked in /bin (each a symlink to `busybox`).
pub const BUSYBOX_APPLETS: &[&str] = &[
    "[",
    "ash",
    "awk",
    "base64",
    "basename",
    "cat",
    "chmod",
    "chown",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "diff",
    "dirname",
    "du",
    "echo",
    "env",
    "expr",
    "false",
    "find",
    "free",
    "grep",
    "gunzip",
    "gzip",
    "head",
    "hostname",
    "httpd",
    "id",
    "ifconfig",
    "ip",
    "kill",
    "less",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mktemp",
    "mount",
    "mv",
    "nc",
    "netstat",
    "nohup",
    "nslookup",
    "ping",
    "printf",
    "ps",
    "pwd",
    "readlink",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sh",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "sync",
    "tail",
    "tar",
    "tee",
    "test",
    "timeout",
    "top",
    "touch",
    "tr",
    "true",
    "umount",
    "uname",
    "uniq",
    "vi",
    "wc",
    "wget",
    "which",
    "whoami",
    "xargs",
    "yes",
    "zcat",
];

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// Writes a busybox image named `reference` to `out`, from the static
/// busybox executable at `busybox`. Default command `sh`.
pub fn write_busybox_archive(out: &Path, reference: &str, busybox: &Path) -> Result<ImageInfo> {
    write_busybox_with(out, reference, busybox, &[], vec!["sh".into()])
}

/// Writes a web-server image (an nginx stand-in) named `reference`: the
/// busybox image whose default command is `httpd -f -p 80 -h /var/www`,
/// serving an index.html that says `rkube httpd`.
pub fn write_httpd_archive(out: &Path, reference: &str, busybox: &Path) -> Result<ImageInfo> {
    let index = LayerEntry::file("var/www/index.html", 0o644, "rkube httpd\n");
    let cmd = ["httpd", "-f", "-p", "80", "-h", "/var/www"];
    write_busybox_with(
        out,
        reference,
        busybox,
        &[index],
        cmd.iter().map(|s| s.to_string()).collect(),
    )
}

/// The files of the busybox image: `/bin/busybox` from `busybox`, its
/// applet symlinks, /etc/passwd and /etc/group, /tmp, /root, /var/www.
/// Other images (test helpers) start from these.
pub fn busybox_entries(busybox: &Path) -> Result<Vec<LayerEntry>> {
    let binary = std::fs::read(busybox).map_err(Error::io("read busybox", busybox))?;
    let mut files = vec![
        LayerEntry::file("bin/busybox", 0o755, binary),
        LayerEntry::file("etc/passwd", 0o644, PASSWD),
        LayerEntry::file("etc/group", 0o644, GROUP),
        LayerEntry::dir("tmp", 0o1777),
        LayerEntry::dir("root", 0o700),
        LayerEntry::dir("var/www", 0o755),
        LayerEntry::dir("usr/bin", 0o755),
        LayerEntry::dir("sbin", 0o755),
    ];
    files.extend(
        BUSYBOX_APPLETS
            .iter()
            .map(|a| LayerEntry::symlink(format!("bin/{a}"), "busybox")),
    );
    Ok(files)
}

/// The image config of busybox-based images: the usual PATH and `cmd`.
pub fn busybox_config(cmd: Vec<String>) -> ImageConfigSpec {
    ImageConfigSpec {
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        cmd: Some(cmd),
        created_by: Some("rkube busybox test image".into()),
        ..Default::default()
    }
}

fn write_busybox_with(
    out: &Path,
    reference: &str,
    busybox: &Path,
    extra: &[LayerEntry],
    cmd: Vec<String>,
) -> Result<ImageInfo> {
    let mut files = busybox_entries(busybox)?;
    files.extend(extra.iter().cloned());
    write_image_archive(out, reference, &files, &busybox_config(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn busybox_image_layout() {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in binary keeps the test independent of busybox-static.
        let fake = dir.path().join("busybox");
        std::fs::write(&fake, b"\x7fELF fake busybox").unwrap();
        let out = dir.path().join("bb.tar");
        let info = write_busybox_archive(&out, "rkube.local/busybox:test", &fake).unwrap();
        assert_eq!(
            write_busybox_archive(&out, "rkube.local/busybox:test", &fake).unwrap(),
            info
        );

        let entries = crate::archive::tests::read_entries(&out);
        let manifest: serde_json::Value = serde_json::from_slice(
            &entries[&format!("blobs/sha256/{}", &info.manifest_digest[7..])],
        )
        .unwrap();
        let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
        let layer = &entries[&format!("blobs/sha256/{}", &layer_digest[7..])];
        let mut ar = tar::Archive::new(GzDecoder::new(layer.as_slice()));
        let mut seen = std::collections::BTreeMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            let mode = e.header().mode().unwrap();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            let mut data = String::new();
            let _ = e.read_to_string(&mut data);
            seen.insert(path, (mode, link, data));
        }
        assert_eq!(seen["tmp"].0, 0o1777);
        assert_eq!(seen["bin/busybox"].0, 0o755);
        assert_eq!(seen["bin/sh"].1.as_deref(), Some("busybox"));
        assert_eq!(seen["bin/["].1.as_deref(), Some("busybox"));
        assert!(seen["etc/passwd"].2.contains("nobody:x:65534:65534"));
        assert!(seen.contains_key("var/www") && seen.contains_key("root"));

        let cfg: serde_json::Value =
            serde_json::from_slice(&entries[&format!("blobs/sha256/{}", &info.config_digest[7..])])
                .unwrap();
        assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(
            cfg["config"]["Env"][0],
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        );
    }

    #[test]
    fn real_busybox_is_reproducible() {
        let real = Path::new("/usr/bin/busybox");
        if !real.exists() {
            eprintln!("skipped: /usr/bin/busybox (busybox-static) is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let a = write_busybox_archive(&dir.path().join("a.tar"), "busybox:t", real).unwrap();
        let b = write_busybox_archive(&dir.path().join("b.tar"), "busybox:t", real).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.reference, "docker.io/library/busybox:t");
    }

    #[test]
    fn missing_busybox_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_busybox_archive(&dir.path().join("x.tar"), "b:1", &dir.path().join("nope"))
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
