//! Authentication and RBAC as seen by a plain HTTP client: anonymous
//! requests are refused, `kubectl create token` mints a ServiceAccount token
//! the API server accepts, and a RoleBinding is what grants access.

use std::time::Duration;

use rkube_e2e::{eventually, Cluster};
use serde_json::Value;

#[test]
fn service_account_token_with_curl() {
    let c = Cluster::start("tokens").unwrap();
    let pods = "/api/v1/namespaces/team/pods";

    let (code, body) = c.curl(pods, None).unwrap();
    assert_eq!(code, 401, "anonymous request: {body}");
    let status: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("401 body is not a Status ({e}): {body}"));
    assert_eq!(status["kind"], "Status", "{body}");
    assert_eq!(status["reason"], "Unauthorized", "{body}");

    let (code, body) = c.curl(pods, Some("not-a-token")).unwrap();
    assert_eq!(code, 401, "garbage token: {body}");

    c.kubectl_ok(&["create", "namespace", "team"]);
    c.kubectl_ok(&["create", "serviceaccount", "reader", "-n", "team"]);
    let token = c.kubectl_ok(&["create", "token", "reader", "-n", "team"]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");

    let (code, body) = c.curl(pods, Some(token)).unwrap();
    assert_eq!(code, 403, "token without bindings: {body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reason"], "Forbidden", "{body}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(r#"pods is forbidden: User "system:serviceaccount:team:reader" cannot list resource "pods" in API group "" in the namespace "team""#),
        "{body}"
    );

    // Every authenticated identity may discover the API and review itself.
    let (code, body) = c.curl("/api", Some(token)).unwrap();
    assert_eq!(code, 200, "discovery with token: {body}");

    c.kubectl_ok(&[
        "create",
        "rolebinding",
        "reader-view",
        "--clusterrole=view",
        "--serviceaccount=team:reader",
        "-n",
        "team",
    ]);
    let mut last = (0, String::new());
    let allowed = eventually(Duration::from_secs(10), || {
        last = c.curl(pods, Some(token)).unwrap();
        last.0 == 200
    });
    assert!(allowed, "after the view rolebinding: {} {}", last.0, last.1);
    let list: Value = serde_json::from_str(&last.1).unwrap();
    assert_eq!(list["kind"], "PodList", "{}", last.1);

    // view is read-only and the binding is namespaced.
    let (code, body) = c
        .curl("/api/v1/namespaces/default/pods", Some(token))
        .unwrap();
    assert_eq!(code, 403, "other namespace: {body}");
    let (code, body) = c
        .curl("/api/v1/namespaces/team/secrets", Some(token))
        .unwrap();
    assert_eq!(code, 403, "view must not read secrets: {body}");

    // Deleting the ServiceAccount invalidates its tokens.
    c.kubectl_ok(&["delete", "serviceaccount", "reader", "-n", "team"]);
    let mut last = (0, String::new());
    let rejected = eventually(Duration::from_secs(10), || {
        last = c.curl(pods, Some(token)).unwrap();
        last.0 == 401
    });
    assert!(
        rejected,
        "token of a deleted ServiceAccount: {} {}",
        last.0, last.1
    );
}

#[test]
fn token_audience_and_expiry_flags() {
    let c = Cluster::start("tokenflags").unwrap();
    c.kubectl_ok(&["create", "serviceaccount", "bot"]);
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "bot-view",
        "--clusterrole=view",
        "--serviceaccount=default:bot",
    ]);

    let token = c.kubectl_ok(&["create", "token", "bot", "--duration=10m"]);
    let token = token.trim();
    let mut last = (0, String::new());
    assert!(
        eventually(Duration::from_secs(10), || {
            last = c
                .curl("/api/v1/namespaces/default/configmaps", Some(token))
                .unwrap();
            last.0 == 200
        }),
        "clusterrolebinding to view: {} {}",
        last.0,
        last.1
    );

    // A token for some other audience is not accepted by the API server.
    let foreign = c.kubectl_ok(&["create", "token", "bot", "--audience=https://example.com"]);
    let (code, body) = c
        .curl(
            "/api/v1/namespaces/default/configmaps",
            Some(foreign.trim()),
        )
        .unwrap();
    assert_eq!(code, 401, "token for a foreign audience: {body}");
}
