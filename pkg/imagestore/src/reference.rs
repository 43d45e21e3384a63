//! Docker-style image names: `busybox` means
//! `docker.io/library/busybox:latest`.

use crate::{Error, Result};

/// Parsed name: registry host, repository path, tag and/or digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    /// Registry host, e.g. `docker.io`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest (`sha256:…`), if any.
    pub digest: Option<String>,
}

impl Name {
    /// `registry/repository`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The full normalized name (tag, digest or both).
    pub fn full(&self) -> String {
        let mut s = self.repo();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

fn bad(reference: &str, reason: &str) -> Error {
    Error::InvalidReference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    }
}

/// Parses and normalizes a reference; a missing tag (without digest)
/// becomes `latest`.
pub fn parse(reference: &str) -> Result<Name> {
    let r = reference.trim();
    if r.is_empty() {
        return Err(bad(reference, "empty"));
    }
    let (rest, digest) = match r.split_once('@') {
        Some((n, d)) => {
            let hex = d
                .strip_prefix("sha256:")
                .ok_or_else(|| bad(reference, "only sha256 digests are supported"))?;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(reference, "a sha256 digest has 64 hex digits"));
            }
            (n, Some(d.to_string()))
        }
        None => (r, None),
    };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
        None => (rest, None),
    };
    if let Some(t) = &tag {
        if t.is_empty()
            || t.len() > 128
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(bad(reference, "invalid tag"));
        }
    }
    let (registry, repository) = match path.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), path.to_string()),
    };
    let registry = if registry == "index.docker.io" {
        "docker.io".to_string()
    } else {
        registry
    };
    let repository = if registry == "docker.io" && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    if repository.is_empty()
        || repository.split('/').any(|c| {
            c.is_empty()
                || !c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
                })
        })
    {
        return Err(bad(
            reference,
            "repository names use lowercase letters, digits, '.', '_', '-' and '/'",
        ));
    }
    let tag = match (&tag, &digest) {
        (None, None) => Some("latest".to_string()),
        _ => tag,
    };
    Ok(Name {
        registry,
        repository,
        tag,
        digest,
    })
}

/// Normalizes `busybox` to `docker.io/library/busybox:latest`.
pub fn normalize(reference: &str) -> Result<String> {
    parse(reference).map(|n| n.full())
}

/// Whether a registry host is on loopback (pulled over plain HTTP, as
/// Docker treats 127.0.0.0/8).
pub(crate) fn is_loopback(host: &str) -> bool {
    let h = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_docker_style_names() {
        for (i, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/x/y:t", "docker.io/x/y:t"),
            ("quay.io/a/b", "quay.io/a/b:latest"),
            ("localhost/app:v1", "localhost/app:v1"),
            (
                "127.0.0.1:5000/rkube/busybox:1",
                "127.0.0.1:5000/rkube/busybox:1",
            ),
            ("localhost:5000/app", "localhost:5000/app:latest"),
        ] {
            assert_eq!(normalize(i).unwrap(), want, "{i}");
        }
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize(&format!("busybox@{d}")).unwrap(),
            format!("docker.io/library/busybox@{d}")
        );
        for bad in [
            "",
            "Busybox",
            "a//b",
            "x:",
            "busybox@sha256:12",
            "busybox@md5:aa",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(is_loopback("127.1.2.3"));
        assert!(!is_loopback("docker.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
