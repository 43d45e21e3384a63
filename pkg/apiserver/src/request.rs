//! Request classification, as kube-apiserver's RequestInfoFactory does: the
//! verb, API group/version, namespace, resource, name and subresource of a
//! path, and content negotiation of the response format.

use std::collections::HashMap;

/// What a request path and method address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// True for /api and /apis resource paths.
    pub is_resource_request: bool,
    /// The raw path.
    pub path: String,
    /// Kubernetes verb: get list watch create update patch delete deletecollection
    /// (or the lower-case HTTP method for non-resource requests).
    pub verb: String,
    /// "api" or "apis".
    pub api_prefix: String,
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace, when the path names one.
    pub namespace: Option<String>,
    /// Resource plural.
    pub resource: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource, e.g. "status".
    pub subresource: String,
    /// Remaining path after the subresource (proxy).
    pub rest: String,
    /// Query parameters (last value wins).
    pub query: HashMap<String, String>,
}

/// Parses a query string into a map (percent-decoded).
pub fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some(q) = q {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.insert(decode(k), decode(v));
        }
    }
    out
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Classifies a request. `method` is the upper-case HTTP method.
pub fn classify(method: &str, path: &str, query: Option<&str>) -> RequestInfo {
    let query = parse_query(query);
    let mut info = RequestInfo {
        path: path.to_string(),
        verb: method.to_lowercase(),
        query,
        ..Default::default()
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match parts.first() {
        Some(&"api") => ("api", &parts[1..]),
        Some(&"apis") => ("apis", &parts[1..]),
        _ => return info,
    };
    info.api_prefix = prefix.to_string();
    let mut rest: Vec<&str> = rest.to_vec();
    if prefix == "api" {
        if rest.is_empty() {
            return info;
        }
        info.version = rest.remove(0).to_string();
    } else {
        if rest.len() < 2 {
            if let Some(g) = rest.first() {
                info.group = g.to_string();
            }
            return info;
        }
        info.group = rest.remove(0).to_string();
        info.version = rest.remove(0).to_string();
    }
    if rest.is_empty() || rest[0].is_empty() {
        return info;
    }
    info.is_resource_request = true;
    let mut watch_prefix = false;
    if rest[0] == "watch" {
        watch_prefix = true;
        rest.remove(0);
    }
    if rest.len() >= 2 && rest[0] == "namespaces" {
        // /namespaces/{name}/status and /finalize address the namespace itself.
        if rest.len() >= 3 && rest[2] != "status" && rest[2] != "finalize" {
            info.namespace = Some(rest[1].to_string());
            rest.drain(0..2);
        } else {
            // /namespaces/<name>
            info.namespace = Some(rest[1].to_string());
        }
    }
    if rest.is_empty() {
        info.is_resource_request = false;
        return info;
    }
    info.resource = rest[0].to_string();
    if rest.len() >= 2 {
        info.name = Some(rest[1].to_string());
    }
    if rest.len() >= 3 {
        info.subresource = rest[2].to_string();
    }
    if rest.len() >= 4 {
        info.rest = rest[3..].join("/");
    }
    // /api/v1/namespaces/<name>: namespace resource itself.
    if info.resource == "namespaces" && info.name.is_none() {
        if let Some(ns) = info.namespace.take() {
            info.name = Some(ns);
        }
    }
    if info.resource == "namespaces" {
        info.namespace = None;
    }
    let is_watch = watch_prefix
        || matches!(
            info.query.get("watch").map(String::as_str),
            Some("true") | Some("1")
        );
    info.verb = match method {
        "GET" | "HEAD" => {
            if is_watch {
                "watch"
            } else if info.name.is_some() {
                "get"
            } else {
                "list"
            }
        }
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => {
            if info.name.is_some() {
                "delete"
            } else {
                "deletecollection"
            }
        }
        _ => "unknown",
    }
    .to_string();
    info
}

/// Response representation requested by the Accept header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// The object(s) as JSON.
    Json,
    /// meta.k8s.io Table.
    Table,
    /// meta.k8s.io PartialObjectMetadata(List).
    PartialMetadata,
}

/// Picks the response representation from an Accept header, in the client's
/// order of preference. `None` when nothing acceptable is offered (406).
pub fn negotiate(accept: Option<&str>) -> Option<Representation> {
    let accept = match accept {
        None => return Some(Representation::Json),
        Some(a) if a.trim().is_empty() => return Some(Representation::Json),
        Some(a) => a,
    };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let mime = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: HashMap<String, String> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        if !matches!(
            mime.as_str(),
            "application/json"
                | "*/*"
                | "application/*"
                | "application/yaml"
                | "application/json-seq"
        ) {
            continue;
        }
        match params.get("as").map(String::as_str) {
            None => return Some(Representation::Json),
            Some("Table") if params.get("g").map(String::as_str) == Some("meta.k8s.io") => {
                return Some(Representation::Table)
            }
            Some("PartialObjectMetadata") | Some("PartialObjectMetadataList")
                if params.get("g").map(String::as_str) == Some("meta.k8s.io") =>
            {
                return Some(Representation::PartialMetadata)
            }
            _ => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        let i = classify("GET", "/api/v1/namespaces/default/pods/p1/log", None);
        assert_eq!(i.verb, "get");
        assert_eq!(i.namespace.as_deref(), Some("default"));
        assert_eq!(i.resource, "pods");
        assert_eq!(i.name.as_deref(), Some("p1"));
        assert_eq!(i.subresource, "log");

        let i = classify(
            "GET",
            "/apis/apps/v1/deployments",
            Some("watch=true&labelSelector=a%3Db"),
        );
        assert_eq!(i.verb, "watch");
        assert_eq!(i.group, "apps");
        assert_eq!(i.query["labelSelector"], "a=b");

        let i = classify("DELETE", "/api/v1/namespaces/kube-system", None);
        assert_eq!(i.resource, "namespaces");
        assert_eq!(i.name.as_deref(), Some("kube-system"));
        assert_eq!(i.namespace, None);
        assert_eq!(i.verb, "delete");

        let i = classify("PUT", "/api/v1/namespaces/foo/finalize", None);
        assert_eq!(i.resource, "namespaces");
        assert_eq!(i.name.as_deref(), Some("foo"));
        assert_eq!(i.subresource, "finalize");

        let i = classify("GET", "/api/v1/watch/namespaces/default/pods", None);
        assert_eq!(i.verb, "watch");
        assert_eq!(i.namespace.as_deref(), Some("default"));

        let i = classify("DELETE", "/api/v1/namespaces/default/pods", None);
        assert_eq!(i.verb, "deletecollection");

        let i = classify("GET", "/apis/apps/v1", None);
        assert!(!i.is_resource_request);
        let i = classify("GET", "/healthz", None);
        assert!(!i.is_resource_request);
    }

    #[test]
    fn negotiates() {
        assert_eq!(negotiate(None), Some(Representation::Json));
        assert_eq!(
            negotiate(Some(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
            )),
            Some(Representation::Table)
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf,application/json")),
            Some(Representation::Json)
        );
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf")), None);
    }
}
