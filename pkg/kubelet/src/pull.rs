//! Image pulls: what imagePullPolicy asks for (Always / IfNotPresent /
//! Never, defaulted from the tag as upstream does), and the registry
//! credentials from a pod's imagePullSecrets (`kubernetes.io/dockerconfigjson`
//! and `kubernetes.io/dockercfg`), matched by registry host. Pure.

use base64::Engine as _;
use rkube_cri::api as cri;
use serde_json::Value;

/// What to do about a container's image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullDecision {
    /// Use the image present in the runtime.
    UsePresent,
    /// Pull it.
    Pull,
    /// Missing with policy Never: ErrImageNeverPull.
    NeverPullMissing,
}

/// The effective pull policy: the spec's, else Always for `:latest` or no
/// tag, else IfNotPresent.
pub fn effective_policy(policy: Option<&str>, image: &str) -> &'static str {
    match policy {
        Some("Always") => "Always",
        Some("Never") => "Never",
        Some("IfNotPresent") => "IfNotPresent",
        _ => {
            let name = image.split('@').next().unwrap_or(image);
            let last = name.rsplit('/').next().unwrap_or(name);
            let digest = image.contains('@');
            match last.split_once(':') {
                _ if digest => "IfNotPresent",
                Some((_, "latest")) | None => "Always",
                Some(_) => "IfNotPresent",
            }
        }
    }
}

/// Decides from the policy and whether the image is present.
pub fn decide(policy: &str, present: bool) -> PullDecision {
    match (policy, present) {
        ("Always", _) => PullDecision::Pull,
        (_, true) => PullDecision::UsePresent,
        ("Never", false) => PullDecision::NeverPullMissing,
        _ => PullDecision::Pull,
    }
}

/// The ErrImageNeverPull message.
pub fn never_pull_message(image: &str) -> String {
    format!("Container image \"{image}\" is not present with pull policy of Never")
}

/// The registry host of an image reference (docker.io when none).
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".into(),
    }
}

fn normalize_registry(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or("");
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        h => h.to_string(),
    }
}

/// The credentials for `image` from pull-secret payloads: each item is the
/// secret's `.dockerconfigjson` (`{"auths": {...}}`) or `.dockercfg` (the
/// map itself). The first matching entry wins.
pub fn auth_for(image: &str, secrets: &[Vec<u8>]) -> Option<cri::AuthConfig> {
    let host = registry_host(image);
    for raw in secrets {
        let Ok(v) = serde_json::from_slice::<Value>(raw) else {
            continue;
        };
        let auths = v.get("auths").unwrap_or(&v);
        let Some(map) = auths.as_object() else {
            continue;
        };
        for (reg, a) in map {
            if normalize_registry(reg) != host {
                continue;
            }
            let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let mut ac = cri::AuthConfig {
                username: s("username"),
                password: s("password"),
                auth: s("auth"),
                server_address: host.clone(),
                identity_token: s("identitytoken"),
                registry_token: s("registrytoken"),
            };
            if ac.username.is_empty() && !ac.auth.is_empty() {
                if let Ok(dec) = base64::engine::general_purpose::STANDARD.decode(&ac.auth) {
                    if let Some((u, p)) = String::from_utf8_lossy(&dec).split_once(':') {
                        ac.username = u.into();
                        ac.password = p.into();
                    }
                }
            }
            return Some(ac);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert_eq!(effective_policy(None, "busybox"), "Always");
        assert_eq!(effective_policy(None, "busybox:latest"), "Always");
        assert_eq!(effective_policy(None, "localhost:5000/busybox"), "Always");
        assert_eq!(
            effective_policy(None, "localhost:5000/busybox:1"),
            "IfNotPresent"
        );
        assert_eq!(effective_policy(None, "busybox@sha256:abc"), "IfNotPresent");
        assert_eq!(effective_policy(Some("Never"), "busybox"), "Never");
        assert_eq!(decide("Always", true), PullDecision::Pull);
        assert_eq!(decide("IfNotPresent", true), PullDecision::UsePresent);
        assert_eq!(decide("IfNotPresent", false), PullDecision::Pull);
        assert_eq!(decide("Never", false), PullDecision::NeverPullMissing);
        assert_eq!(decide("Never", true), PullDecision::UsePresent);
        assert_eq!(
            never_pull_message("x"),
            "Container image \"x\" is not present with pull policy of Never"
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(registry_host("busybox"), "docker.io");
        assert_eq!(registry_host("library/busybox"), "docker.io");
        assert_eq!(registry_host("quay.io/a/b:1"), "quay.io");
        assert_eq!(registry_host("localhost:5000/b"), "localhost:5000");
    }

    #[test]
    fn auth_matching() {
        let cfgjson = br#"{"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"},
                                      "reg.local:5000": {"username": "a", "password": "b"}}}"#
            .to_vec();
        let cfg = br#"{"quay.io": {"username": "q", "password": "w"}}"#.to_vec();
        let all = [b"not json".to_vec(), cfgjson, cfg];
        let a = auth_for("busybox", &all).unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str(), a.auth.as_str()),
            ("u", "p", "dTpw")
        );
        assert_eq!(a.server_address, "docker.io");
        let a = auth_for("reg.local:5000/x/y:1", &all).unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("a", "b"));
        let a = auth_for("quay.io/x", &all).unwrap();
        assert_eq!(a.username, "q");
        assert!(auth_for("ghcr.io/x", &all).is_none());
    }
}
