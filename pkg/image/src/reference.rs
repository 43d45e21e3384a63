//! Image reference normalisation, as containerd's CRI and `docker` do it:
//! `busybox` means `docker.io/library/busybox:latest`. Archives store the
//! fully qualified name so the runtime finds the image under the name a pod
//! spec resolves to.

use crate::{Error, Result};

fn invalid(reference: &str, reason: &'static str) -> Error {
    Error::InvalidReference {
        reference: reference.to_string(),
        reason,
    }
}

/// Returns the fully qualified form of `reference`: a registry domain
/// (`docker.io` by default, with `library/` for single-component names) and a
/// tag (`latest` by default) unless it carries a digest.
pub fn normalize_reference(reference: &str) -> Result<String> {
    let r = reference.trim();
    if r.is_empty() {
        return Err(invalid(reference, "empty"));
    }
    let (name, suffix) = match r.find('@') {
        Some(at) => (&r[..at], r[at..].to_string()),
        None => {
            let slash = r.rfind('/').map_or(0, |i| i + 1);
            match r[slash..].rfind(':') {
                Some(c) => (&r[..slash + c], r[slash + c..].to_string()),
                None => (r, ":latest".to_string()),
            }
        }
    };
    if let Some(tag) = suffix.strip_prefix(':') {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && !tag.starts_with(['.', '-']);
        if !ok {
            return Err(invalid(reference, "bad tag"));
        }
    } else if !suffix.starts_with("@sha256:") || suffix.len() != 8 + 64 {
        return Err(invalid(reference, "bad digest"));
    }
    let (domain, path) = match name.split_once('/') {
        Some((d, rest)) if d.contains(['.', ':']) || d == "localhost" => {
            (d.to_string(), rest.to_string())
        }
        _ if !name.contains('/') => ("docker.io".to_string(), format!("library/{name}")),
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let path_ok = !path.is_empty()
        && path.split('/').all(|c| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        });
    if !path_ok {
        return Err(invalid(
            reference,
            "repository must be lowercase [a-z0-9._-] components",
        ));
    }
    if domain.is_empty()
        || !domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
    {
        return Err(invalid(reference, "bad registry domain"));
    }
    Ok(format!("{domain}/{path}{suffix}"))
}

/// The tag of a reference (`3.10` for `registry.k8s.io/pause:3.10`), if any.
pub fn reference_tag(reference: &str) -> Option<&str> {
    if reference.contains('@') {
        return None;
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    reference[slash..]
        .rfind(':')
        .map(|c| &reference[slash + c + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        let n = |r| normalize_reference(r).unwrap();
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(n("rkube/busybox:t"), "docker.io/rkube/busybox:t");
        assert_eq!(
            n("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(n("localhost:5000/a/b"), "localhost:5000/a/b:latest");
        assert_eq!(n("localhost/x:y"), "localhost/x:y");
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(n(&d), format!("docker.io/library/{d}"));
    }

    #[test]
    fn rejects_bad_references() {
        for r in ["", "Busybox", "a:b:c", "a:", "x@sha256:12", "a//b", "a:-x"] {
            assert!(normalize_reference(r).is_err(), "{r}");
        }
    }

    #[test]
    fn tags() {
        assert_eq!(reference_tag("registry.k8s.io/pause:3.10"), Some("3.10"));
        assert_eq!(reference_tag("localhost:5000/a"), None);
        assert_eq!(reference_tag("a@sha256:00"), None);
    }
}
