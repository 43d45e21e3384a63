//! Registry mirrors as containerd `hosts.toml` files.
//!
//! containerd (1.5+, with the CRI plugin's `registry.config_path`) looks up
//! `<config_path>/<host>/hosts.toml` when it pulls from `<host>`. Each
//! `[host."<url>"]` table is tried in file order, then `server`; when
//! `server` is absent containerd falls back to the upstream registry itself
//! (`https://<host>`, `registry-1.docker.io` for docker.io, plain http for
//! localhost). A mirror-only host therefore sets `server` to a mirror too,
//! so nothing is ever sent upstream. A plain `http://` endpoint (e.g. a
//! registry on 127.0.0.1) is used as http.

use std::fmt::Write as _;
use std::path::Path;

use rkube_host::Mirror;

use crate::{Error, Result};

/// Renders the `hosts.toml` of `mirror`.
pub fn hosts_toml(mirror: &Mirror) -> Result<String> {
    mirror.validate()?;
    let mut out = format!("# Written by rkube: mirrors of {}.\n", mirror.host);
    if mirror.mirror_only {
        // Without `server` containerd would fall back to the upstream host.
        let last = mirror.endpoints.last().expect("validated");
        let _ = writeln!(out, "server = {}", quote(last));
    }
    for e in &mirror.endpoints {
        let _ = write!(
            out,
            "\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = false\n",
            quote(e)
        );
    }
    Ok(out)
}

/// A TOML basic string (JSON string escapes are valid TOML).
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// Replaces `certs_dir` with one `<host>/hosts.toml` per mirror.
pub fn write_hosts_dir(certs_dir: &Path, mirrors: &[Mirror]) -> Result<()> {
    for m in mirrors {
        m.validate()?;
    }
    match std::fs::remove_dir_all(certs_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io("remove", certs_dir)(e))
        }
        _ => {}
    }
    std::fs::create_dir_all(certs_dir).map_err(Error::io("create directory", certs_dir))?;
    for m in mirrors {
        let dir = certs_dir.join(&m.host);
        std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        let file = dir.join("hosts.toml");
        std::fs::write(&file, hosts_toml(m)?).map_err(Error::io("write", &file))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mirror in the `--registry-mirror` syntax.
    fn mirror(flag: &str) -> Mirror {
        flag.parse().unwrap()
    }

    #[test]
    fn mirror_with_upstream_fallback_has_no_server() {
        let m = mirror("docker.io=https://m1.example,http://127.0.0.1:5000");
        let text = hosts_toml(&m).unwrap();
        assert!(!text.contains("server"), "{text}");
        let a = text.find("[host.\"https://m1.example\"]").unwrap();
        let b = text.find("[host.\"http://127.0.0.1:5000\"]").unwrap();
        assert!(a < b, "order is preference");
        assert!(text.contains("capabilities = [\"pull\", \"resolve\"]"));
        assert_eq!(text.matches("skip_verify = false").count(), 2);
    }

    #[test]
    fn mirror_only_points_server_at_a_mirror() {
        let m = mirror("localhost:5000=http://127.0.0.1:5000,mirror-only");
        let text = hosts_toml(&m).unwrap();
        assert!(
            text.contains("server = \"http://127.0.0.1:5000\""),
            "{text}"
        );
        assert!(text.contains("[host.\"http://127.0.0.1:5000\"]"), "{text}");
    }

    #[test]
    fn writes_one_dir_per_host_and_drops_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs.d");
        write_hosts_dir(&certs, &[mirror("old.example=https://m")]).unwrap();
        write_hosts_dir(
            &certs,
            &[mirror("localhost:5000=http://127.0.0.1:5000,mirror-only")],
        )
        .unwrap();
        assert!(!certs.join("old.example").exists());
        let text = std::fs::read_to_string(certs.join("localhost:5000/hosts.toml")).unwrap();
        assert!(text.contains("server"));
    }
}
