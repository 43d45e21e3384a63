//! Authentication (x509 client certificates, ServiceAccount tokens) and
//! authorization (RBAC).
//!
//! Authenticators turn a request's credentials into a [`UserInfo`]; the
//! authorizer ([`rbac::Rbac`]) turns a user plus request [`Attributes`] into a
//! [`Decision`]. Bootstrap policy lives in `manifests/rbac.yaml`.

use std::collections::BTreeMap;

pub mod rbac;
pub mod token;
pub mod x509;

#[cfg(test)]
mod manifests_tests;

pub use rbac::{forbidden_message, Rbac};
pub use token::{Binding, ServiceAccountRef, TokenIssuer};
pub use x509::user_from_cert;

/// Username of unauthenticated requests.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// Group of every unauthenticated request.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// Group of every authenticated request.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// Group whose members are always allowed (superusers).
pub const MASTERS_GROUP: &str = "system:masters";
/// Group of every ServiceAccount.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// Prefix of ServiceAccount usernames: `system:serviceaccount:<ns>:<name>`.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// Errors of authentication and of loading authorization policy.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The ServiceAccount signing or verification key is unusable.
    #[error("invalid service account key: {0}")]
    Key(#[source] jsonwebtoken::errors::Error),
    /// Signing a token failed.
    #[error("cannot sign token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// A token request is invalid (e.g. non-positive expiration).
    #[error("invalid token request: {0}")]
    InvalidRequest(String),
    /// The token is not a well-formed JWT or lacks required claims.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token signature does not verify (or uses another algorithm).
    #[error("invalid token signature")]
    InvalidSignature,
    /// The token was issued by another issuer.
    #[error("token issuer is not accepted")]
    InvalidIssuer,
    /// None of the token's audiences is accepted.
    #[error("token audiences are not accepted")]
    InvalidAudience,
    /// The token has expired.
    #[error("token has expired")]
    Expired,
    /// The token is not valid yet.
    #[error("token is not valid yet")]
    NotYetValid,
    /// Storage failed while loading RBAC objects.
    #[error("store: {0}")]
    Store(#[from] rkube_store::Error),
}

/// The authenticated identity of a request (Kubernetes `user.Info`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UserInfo {
    /// Unique name, e.g. `alice` or `system:serviceaccount:default:builder`.
    pub username: String,
    /// Unique id (ServiceAccount uid; empty for certificate users).
    pub uid: String,
    /// Groups, including `system:authenticated` for authenticated users.
    pub groups: Vec<String>,
    /// Extra attributes, e.g. `authentication.kubernetes.io/pod-name`.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The anonymous user: `system:anonymous` in group `system:unauthenticated`.
    pub fn anonymous() -> Self {
        UserInfo {
            username: ANONYMOUS_USER.to_string(),
            uid: String::new(),
            groups: vec![UNAUTHENTICATED_GROUP.to_string()],
            extra: BTreeMap::new(),
        }
    }

    /// Whether the user belongs to `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Namespace and name when this is a ServiceAccount user.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        split_service_account_username(&self.username)
    }
}

/// `system:serviceaccount:<ns>:<name>` for a ServiceAccount.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

/// Splits `system:serviceaccount:<ns>:<name>` into namespace and name.
pub fn split_service_account_username(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// Attributes of a request for authorization (Kubernetes `authorizer.Attributes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    /// Who is asking.
    pub user: UserInfo,
    /// Resource verbs: get list watch create update patch delete deletecollection
    /// (plus special verbs like impersonate, bind, escalate); for non-resource
    /// requests the lower-case HTTP method (get, post, put, ...).
    pub verb: String,
    /// True for requests on API resources, false for other paths (`/healthz`).
    pub resource_request: bool,
    /// API group, "" for core.
    pub api_group: String,
    /// Plural resource, e.g. "pods".
    pub resource: String,
    /// Subresource, e.g. "log"; empty when none.
    pub subresource: String,
    /// Namespace; empty for cluster-scoped requests and cross-namespace lists.
    pub namespace: String,
    /// Object name; empty for collection requests.
    pub name: String,
    /// The request path.
    pub path: String,
}

impl Attributes {
    /// Attributes of a resource request.
    pub fn resource(
        user: UserInfo,
        verb: &str,
        api_group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        Attributes {
            user,
            verb: verb.to_string(),
            resource_request: true,
            api_group: api_group.to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            path: String::new(),
        }
    }

    /// Attributes of a non-resource request (`verb` is the lower-case method).
    pub fn non_resource(user: UserInfo, verb: &str, path: &str) -> Self {
        Attributes {
            user,
            verb: verb.to_string(),
            resource_request: false,
            api_group: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
            path: path.to_string(),
        }
    }
}

/// Outcome of authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request is allowed.
    Allow,
    /// The request is denied; the reason (possibly empty) is appended to the
    /// 403 message after `": "` when non-empty.
    Deny(String),
    /// The authorizer has no opinion; a chain moves on to the next one and
    /// denies at its end. [`Rbac`] never returns it (it is the last authorizer).
    NoOpinion,
}

impl Decision {
    /// True only for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_user() {
        let u = UserInfo::anonymous();
        assert_eq!(u.username, "system:anonymous");
        assert!(u.in_group("system:unauthenticated"));
        assert!(!u.in_group("system:authenticated"));
    }

    #[test]
    fn service_account_names() {
        assert_eq!(
            service_account_username("ns", "sa"),
            "system:serviceaccount:ns:sa"
        );
        assert_eq!(
            split_service_account_username("system:serviceaccount:ns:sa"),
            Some(("ns", "sa"))
        );
        assert_eq!(
            split_service_account_username("system:serviceaccount:ns"),
            None
        );
        assert_eq!(split_service_account_username("alice"), None);
        assert_eq!(
            split_service_account_username("system:serviceaccount:a:b:c"),
            None
        );
    }
}
