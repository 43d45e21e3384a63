//! rkube's pause image. The program (`pause/pause.c`, built statically by
//! build.rs) holds a pod sandbox's namespaces: it exits 0 on SIGINT/SIGTERM,
//! reaps zombies on SIGCHLD and otherwise sleeps. The image is rkube's own
//! build but is named [`PAUSE_IMAGE`], the standard Kubernetes sandbox
//! image, so runtimes configured with the default sandbox image find it
//! without a registry.

use crate::{write_image_archive, ImageConfigSpec, ImageInfo, LayerEntry, Result};
use std::path::Path;

/// Name of the pause image (rkube's own build, under the upstream name).
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// What `/pause -v` prints after `pause.c `.
pub const PAUSE_VERSION: &str = "3.10-rkube";

static PAUSE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// The static pause executable for the target architecture.
pub fn pause_binary() -> &'static [u8] {
    PAUSE
}

/// Writes the pause image archive (`/pause`, entrypoint `["/pause"]`, user
/// 65535:65535) named [`PAUSE_IMAGE`] to `out`.
pub fn write_pause_archive(out: &Path) -> Result<ImageInfo> {
    let files = [LayerEntry::file("pause", 0o755, pause_binary())];
    let config = ImageConfigSpec {
        entrypoint: Some(vec!["/pause".into()]),
        user: Some("65535:65535".into()),
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        created_by: Some(format!(
            "rkube pause {PAUSE_VERSION} (static, built from pause.c)"
        )),
        ..Default::default()
    };
    write_image_archive(out, PAUSE_IMAGE, &files, &config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::{sys::signal, unistd::Pid};
    use std::{
        io::Read,
        os::unix::fs::PermissionsExt,
        process::{Command, Stdio},
        time::{Duration, Instant},
    };

    /// Program header types of a little-endian ELF64.
    fn program_headers(b: &[u8]) -> Vec<u32> {
        assert_eq!(&b[..4], b"\x7fELF");
        assert_eq!((b[4], b[5]), (2, 1), "ELF64 little-endian");
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
        let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
        let (size, num) = (u16_at(54), u16_at(56));
        (0..num)
            .map(|i| {
                let o = phoff + i * size;
                u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
            })
            .collect()
    }

    fn installed_pause() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause");
        std::fs::write(&path, pause_binary()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, path)
    }

    #[test]
    fn static_elf_without_interpreter() {
        let headers = program_headers(pause_binary());
        const PT_INTERP: u32 = 3;
        const PT_DYNAMIC: u32 = 2;
        assert!(!headers.is_empty());
        assert!(
            !headers.contains(&PT_INTERP),
            "pause has an ELF interpreter"
        );
        assert!(
            !headers.contains(&PT_DYNAMIC),
            "pause is dynamically linked"
        );
        assert!(
            pause_binary().len() < 2 << 20,
            "pause is {} bytes",
            pause_binary().len()
        );
    }

    #[test]
    fn prints_version() {
        let (_dir, path) = installed_pause();
        let out = Command::new(&path).arg("-v").output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("pause.c {PAUSE_VERSION}\n")
        );
    }

    #[test]
    fn exits_zero_on_sigterm_and_sigint() {
        let (_dir, path) = installed_pause();
        for sig in [signal::SIGTERM, signal::SIGINT] {
            let mut child = Command::new(&path).stderr(Stdio::piped()).spawn().unwrap();
            // The PID-1 warning is printed once the handlers are installed.
            let mut first = [0u8; 5];
            child
                .stderr
                .as_mut()
                .unwrap()
                .read_exact(&mut first)
                .unwrap();
            signal::kill(Pid::from_raw(child.id() as i32), sig).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break s;
                }
                assert!(Instant::now() < deadline, "pause ignored {sig}");
                std::thread::sleep(Duration::from_millis(10));
            };
            assert_eq!(status.code(), Some(0), "{sig}: {status}");
        }
    }

    #[test]
    fn pause_archive() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pause.tar");
        let info = write_pause_archive(&out).unwrap();
        assert_eq!(info.reference, PAUSE_IMAGE);
        assert_eq!(write_pause_archive(&out).unwrap(), info, "reproducible");
        assert_eq!(crate::read_archive_refs(&out).unwrap(), [PAUSE_IMAGE]);
        let entries = crate::archive::tests::read_entries(&out);
        let cfg: serde_json::Value =
            serde_json::from_slice(&entries[&format!("blobs/sha256/{}", &info.config_digest[7..])])
                .unwrap();
        assert_eq!(cfg["config"]["Entrypoint"], serde_json::json!(["/pause"]));
        assert_eq!(cfg["config"]["User"], "65535:65535");
    }
}
