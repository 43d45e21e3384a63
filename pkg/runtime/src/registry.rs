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

use crate::{Error, Result};

/// Mirrors for one registry host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// Registry host as written in image names, e.g. `docker.io` or `localhost:5000`.
    pub host: String,
    /// Mirror URLs in order of preference, e.g. `http://127.0.0.1:5000`.
    pub endpoints: Vec<String>,
    /// Never fall back to the upstream registry.
    pub mirror_only: bool,
}

impl Mirror {
    /// Checks the host name and the endpoints' schemes.
    pub fn validate(&self) -> Result<()> {
        let bad = |endpoint: &str, reason| Error::InvalidMirror {
            host: self.host.clone(),
            endpoint: endpoint.to_string(),
            reason,
        };
        if self.host.is_empty()
            || self.host.contains(['/', '\\', '"', ' '])
            || self.host.starts_with('.')
        {
            return Err(bad(
                "",
                "the registry host must be a name like docker.io or localhost:5000",
            ));
        }
        if self.endpoints.is_empty() {
            return Err(bad("", "at least one endpoint is needed"));
        }
        for e in &self.endpoints {
            let rest = e
                .strip_prefix("https://")
                .or_else(|| e.strip_prefix("http://"))
                .ok_or_else(|| bad(e, "endpoints start with http:// or https://"))?;
            if rest.is_empty() || rest.contains(['"', ' ', '\\']) {
                return Err(bad(e, "not a URL"));
            }
        }
        Ok(())
    }

    /// Directory name under `certs.d` (containerd accepts `host:port` as is).
    pub fn dir_name(&self) -> &str {
        &self.host
    }

    /// Renders `hosts.toml`.
    pub fn hosts_toml(&self) -> Result<String> {
        self.validate()?;
        let mut out = format!("# Written by rkube: mirrors of {}.\n", self.host);
        if self.mirror_only {
            // Without `server` containerd would fall back to the upstream host.
            let last = self.endpoints.last().expect("validated");
            let _ = writeln!(out, "server = {}", quote(last));
        }
        for e in &self.endpoints {
            let _ = write!(
                out,
                "\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = false\n",
                quote(e)
            );
        }
        Ok(out)
    }
}

impl std::str::FromStr for Mirror {
    type Err = Error;

    /// Parses the `--registry-mirror` syntax `HOST=URL[,URL...][,mirror-only]`,
    /// e.g. `docker.io=http://127.0.0.1:5000,mirror-only`.
    fn from_str(s: &str) -> Result<Self> {
        let (host, rest) = s.split_once('=').ok_or_else(|| Error::InvalidMirror {
            host: s.to_string(),
            endpoint: String::new(),
            reason:
                "expected HOST=URL[,URL...][,mirror-only], e.g. docker.io=http://127.0.0.1:5000",
        })?;
        let mut m = Mirror {
            host: host.trim().to_string(),
            endpoints: Vec::new(),
            mirror_only: false,
        };
        for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "mirror-only" {
                m.mirror_only = true;
            } else {
                m.endpoints.push(part.trim_end_matches('/').to_string());
            }
        }
        m.validate()?;
        Ok(m)
    }
}

impl std::fmt::Display for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.host, self.endpoints.join(","))?;
        if self.mirror_only {
            f.write_str(",mirror-only")?;
        }
        Ok(())
    }
}

/// A plain-HTTP registry (`--insecure-registry HOST`) as containerd hosts:
/// every pull of `host` goes to `http://host`.
pub fn insecure_host(host: &str) -> Mirror {
    Mirror {
        host: host.to_string(),
        endpoints: vec![format!("http://{host}")],
        mirror_only: true,
    }
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
        let dir = certs_dir.join(m.dir_name());
        std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        let file = dir.join("hosts.toml");
        std::fs::write(&file, m.hosts_toml()?).map_err(Error::io("write", &file))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(host: &str, endpoints: &[&str], mirror_only: bool) -> Mirror {
        Mirror {
            host: host.into(),
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            mirror_only,
        }
    }

    #[test]
    fn mirror_with_upstream_fallback_has_no_server() {
        let m = mirror(
            "docker.io",
            &["https://m1.example", "http://127.0.0.1:5000"],
            false,
        );
        let text = m.hosts_toml().unwrap();
        assert!(!text.contains("server"), "{text}");
        let a = text.find("[host.\"https://m1.example\"]").unwrap();
        let b = text.find("[host.\"http://127.0.0.1:5000\"]").unwrap();
        assert!(a < b, "order is preference");
        assert!(text.contains("capabilities = [\"pull\", \"resolve\"]"));
        assert_eq!(text.matches("skip_verify = false").count(), 2);
    }

    #[test]
    fn mirror_only_points_server_at_a_mirror() {
        let m = mirror("localhost:5000", &["http://127.0.0.1:5000"], true);
        let text = m.hosts_toml().unwrap();
        assert!(
            text.contains("server = \"http://127.0.0.1:5000\""),
            "{text}"
        );
        assert!(text.contains("[host.\"http://127.0.0.1:5000\"]"), "{text}");
    }

    #[test]
    fn parses_the_command_line_syntax() {
        let m: Mirror = "docker.io=http://127.0.0.1:5000/,https://m.example,mirror-only"
            .parse()
            .unwrap();
        assert_eq!(
            m,
            mirror(
                "docker.io",
                &["http://127.0.0.1:5000", "https://m.example"],
                true
            )
        );
        assert_eq!(
            m.to_string(),
            "docker.io=http://127.0.0.1:5000,https://m.example,mirror-only"
        );
        let m: Mirror = "quay.io=https://q.example".parse().unwrap();
        assert!(!m.mirror_only);
        for bad in ["docker.io", "docker.io=", "docker.io=ftp://x", "=http://x"] {
            assert!(bad.parse::<Mirror>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_mirrors() {
        for m in [
            mirror("docker.io", &[], false),
            mirror("docker.io", &["m1.example"], false),
            mirror("docker.io", &["https://"], false),
            mirror("docker.io", &["https://a\"b"], false),
            mirror("", &["https://m"], false),
            mirror("a/b", &["https://m"], false),
        ] {
            let err = m.hosts_toml().unwrap_err();
            assert!(matches!(err, Error::InvalidMirror { .. }), "{m:?}");
        }
    }

    #[test]
    fn writes_one_dir_per_host_and_drops_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs.d");
        write_hosts_dir(&certs, &[mirror("old.example", &["https://m"], false)]).unwrap();
        write_hosts_dir(
            &certs,
            &[mirror("localhost:5000", &["http://127.0.0.1:5000"], true)],
        )
        .unwrap();
        assert!(!certs.join("old.example").exists());
        let text = std::fs::read_to_string(certs.join("localhost:5000/hosts.toml")).unwrap();
        assert!(text.contains("server"));
    }
}
