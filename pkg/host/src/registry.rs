//! Registry mirror settings (`--registry-mirror HOST=URL[,URL...][,mirror-only]`
//! and `--insecure-registry HOST`), shared by every runtime backend; each
//! backend renders them in its own configuration format.

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

/// A plain-HTTP registry (`--insecure-registry HOST`) as a mirror-only
/// mirror: every pull of `host` goes to `http://host`.
pub fn insecure_host(host: &str) -> Mirror {
    Mirror {
        host: host.to_string(),
        endpoints: vec![format!("http://{host}")],
        mirror_only: true,
    }
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
            let err = m.validate().unwrap_err();
            assert!(matches!(err, Error::InvalidMirror { .. }), "{m:?}");
        }
    }
}
