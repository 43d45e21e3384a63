//! ServiceAccount tokens: ES256 JWTs signed with the cluster's ServiceAccount
//! key. Bound tokens (TokenRequest) carry a `kubernetes.io` claim naming the
//! ServiceAccount and optionally the Pod they are bound to, an audience list
//! and an expiry. Legacy Secret-based tokens (issuer
//! `kubernetes/serviceaccount`, flat `kubernetes.io/serviceaccount/*` claims,
//! no expiry) are accepted too; the caller must check that the Secret still
//! exists.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{
    service_account_username, AuthError, UserInfo, AUTHENTICATED_GROUP, SERVICE_ACCOUNTS_GROUP,
};

/// Audience of tokens requested without explicit audiences.
pub const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";
/// Issuer of legacy Secret-based tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";
const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";

/// What a bound token is bound to: a pod (name, uid) and the node (name,
/// uid) it runs on, which kube-apiserver also records for pod-bound tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct Binding<'a> {
    /// The pod.
    pub pod: Option<(&'a str, &'a str)>,
    /// The pod's node.
    pub node: Option<(&'a str, &'a str)>,
}

/// The ServiceAccount (and bound objects) a verified token names. The caller
/// checks they still exist with the same uids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountRef {
    /// Namespace of the ServiceAccount.
    pub namespace: String,
    /// Name of the ServiceAccount.
    pub name: String,
    /// Uid of the ServiceAccount.
    pub uid: String,
    /// Pod (name, uid) a bound token is tied to.
    pub pod: Option<(String, String)>,
    /// Secret name of a legacy token.
    pub secret: Option<String>,
}

/// Signs and verifies ServiceAccount tokens.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    audiences: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct ObjectRef {
    name: String,
    uid: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct KubernetesClaims {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<ObjectRef>,
}

/// `aud` may be a single string or an array.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Claims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(
        rename = "kubernetes.io",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    kubernetes: Option<KubernetesClaims>,
    #[serde(
        rename = "kubernetes.io/serviceaccount/namespace",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    legacy_namespace: Option<String>,
    #[serde(
        rename = "kubernetes.io/serviceaccount/secret.name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    legacy_secret_name: Option<String>,
    #[serde(
        rename = "kubernetes.io/serviceaccount/service-account.name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    legacy_sa_name: Option<String>,
    #[serde(
        rename = "kubernetes.io/serviceaccount/service-account.uid",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    legacy_sa_uid: Option<String>,
}

impl TokenIssuer {
    /// A token issuer from the PKCS#8 private key PEM and SPKI public key PEM
    /// (ECDSA P-256). Accepted audiences are [`DEFAULT_AUDIENCE`] and the issuer.
    pub fn new(private_pem: &[u8], public_pem: &[u8], issuer: &str) -> Result<Self, AuthError> {
        let encoding = EncodingKey::from_ec_pem(private_pem).map_err(AuthError::Key)?;
        let decoding = DecodingKey::from_ec_pem(public_pem).map_err(AuthError::Key)?;
        let mut audiences = vec![DEFAULT_AUDIENCE.to_string()];
        if issuer != DEFAULT_AUDIENCE {
            audiences.push(issuer.to_string());
        }
        Ok(TokenIssuer {
            encoding,
            decoding,
            issuer: issuer.to_string(),
            audiences,
        })
    }

    /// The `iss` of tokens this issuer signs.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Audiences a token must name (one of) to be accepted by [`TokenIssuer::verify`].
    pub fn api_audiences(&self) -> &[String] {
        &self.audiences
    }

    /// Issues a bound token like TokenRequest: claims iss, sub
    /// `system:serviceaccount:<ns>:<name>`, aud (the requested audiences or
    /// [`DEFAULT_AUDIENCE`]), exp, iat, nbf, jti and `kubernetes.io` with the
    /// namespace, ServiceAccount and bound Pod and Node. Returns the token and its expiry.
    pub fn issue(
        &self,
        ns: &str,
        sa_name: &str,
        sa_uid: &str,
        audiences: &[String],
        expiration_seconds: i64,
        bound: Binding<'_>,
    ) -> Result<(String, DateTime<Utc>), AuthError> {
        self.issue_at(
            Utc::now(),
            ns,
            sa_name,
            sa_uid,
            audiences,
            expiration_seconds,
            bound,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn issue_at(
        &self,
        now: DateTime<Utc>,
        ns: &str,
        sa_name: &str,
        sa_uid: &str,
        audiences: &[String],
        expiration_seconds: i64,
        bound: Binding<'_>,
    ) -> Result<(String, DateTime<Utc>), AuthError> {
        if expiration_seconds <= 0 {
            return Err(AuthError::InvalidRequest(format!(
                "expirationSeconds must be positive, got {expiration_seconds}"
            )));
        }
        if ns.is_empty() || sa_name.is_empty() {
            return Err(AuthError::InvalidRequest(
                "service account namespace and name are required".into(),
            ));
        }
        let exp = now + chrono::Duration::seconds(expiration_seconds);
        let aud = if audiences.is_empty() {
            vec![DEFAULT_AUDIENCE.to_string()]
        } else {
            audiences.to_vec()
        };
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: service_account_username(ns, sa_name),
            aud: Some(Audience::Many(aud)),
            exp: Some(exp.timestamp()),
            iat: Some(now.timestamp()),
            nbf: Some(now.timestamp()),
            jti: Some(uuid::Uuid::new_v4().to_string()),
            kubernetes: Some(KubernetesClaims {
                namespace: ns.to_string(),
                serviceaccount: ObjectRef {
                    name: sa_name.to_string(),
                    uid: sa_uid.to_string(),
                },
                pod: bound.pod.map(|(name, uid)| ObjectRef {
                    name: name.to_string(),
                    uid: uid.to_string(),
                }),
                secret: None,
                node: bound.node.map(|(name, uid)| ObjectRef {
                    name: name.to_string(),
                    uid: uid.to_string(),
                }),
            }),
            ..Claims::default()
        };
        Ok((self.sign(&claims)?, exp))
    }

    /// Issues a legacy, non-expiring Secret-based token (the content of a
    /// `kubernetes.io/service-account-token` Secret).
    pub fn issue_legacy(
        &self,
        ns: &str,
        sa_name: &str,
        sa_uid: &str,
        secret_name: &str,
    ) -> Result<String, AuthError> {
        let claims = Claims {
            iss: LEGACY_ISSUER.to_string(),
            sub: service_account_username(ns, sa_name),
            legacy_namespace: Some(ns.to_string()),
            legacy_secret_name: Some(secret_name.to_string()),
            legacy_sa_name: Some(sa_name.to_string()),
            legacy_sa_uid: Some(sa_uid.to_string()),
            ..Claims::default()
        };
        self.sign(&claims)
    }

    fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &self.encoding)
            .map_err(AuthError::Sign)
    }

    /// Verifies signature, issuer, expiry and audience and returns the
    /// ServiceAccount user (groups `system:serviceaccounts`,
    /// `system:serviceaccounts:<ns>`, `system:authenticated`) and what the
    /// token names. The caller checks that the ServiceAccount (and bound Pod
    /// or legacy Secret) still exists with the same uid.
    pub fn verify(&self, token: &str) -> Result<(UserInfo, ServiceAccountRef), AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::ES256 {
            return Err(AuthError::InvalidSignature);
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_required_spec_claims(&["iss", "sub"]);
        validation.set_issuer(&[self.issuer.as_str(), LEGACY_ISSUER]);
        validation.set_audience(&self.audiences);
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(map_jwt_error)?
            .claims;

        let mut extra = BTreeMap::new();
        let sa = match &claims.kubernetes {
            Some(k) => {
                if claims.iss != self.issuer {
                    return Err(AuthError::InvalidIssuer);
                }
                if claims.exp.is_none() {
                    return Err(AuthError::Malformed("bound token without exp".into()));
                }
                // jsonwebtoken checks `aud` only when present; bound tokens must have one.
                if claims.aud.is_none() {
                    return Err(AuthError::InvalidAudience);
                }
                if let Some(jti) = &claims.jti {
                    extra.insert(EXTRA_CREDENTIAL_ID.to_string(), vec![format!("JTI={jti}")]);
                }
                if let Some(pod) = &k.pod {
                    extra.insert(EXTRA_POD_NAME.to_string(), vec![pod.name.clone()]);
                    extra.insert(EXTRA_POD_UID.to_string(), vec![pod.uid.clone()]);
                }
                if let Some(node) = &k.node {
                    extra.insert(EXTRA_NODE_NAME.to_string(), vec![node.name.clone()]);
                    extra.insert(EXTRA_NODE_UID.to_string(), vec![node.uid.clone()]);
                }
                ServiceAccountRef {
                    namespace: k.namespace.clone(),
                    name: k.serviceaccount.name.clone(),
                    uid: k.serviceaccount.uid.clone(),
                    pod: k.pod.as_ref().map(|p| (p.name.clone(), p.uid.clone())),
                    secret: k.secret.as_ref().map(|s| s.name.clone()),
                }
            }
            None => {
                if claims.iss != LEGACY_ISSUER {
                    return Err(AuthError::Malformed("missing kubernetes.io claim".into()));
                }
                let (Some(ns), Some(name), Some(uid), Some(secret)) = (
                    &claims.legacy_namespace,
                    &claims.legacy_sa_name,
                    &claims.legacy_sa_uid,
                    &claims.legacy_secret_name,
                ) else {
                    return Err(AuthError::Malformed(
                        "incomplete legacy token claims".into(),
                    ));
                };
                ServiceAccountRef {
                    namespace: ns.clone(),
                    name: name.clone(),
                    uid: uid.clone(),
                    pod: None,
                    secret: Some(secret.clone()),
                }
            }
        };
        if sa.namespace.is_empty() || sa.name.is_empty() {
            return Err(AuthError::Malformed(
                "empty service account reference".into(),
            ));
        }
        let username = service_account_username(&sa.namespace, &sa.name);
        if claims.sub != username {
            return Err(AuthError::Malformed(
                "sub does not match the service account".into(),
            ));
        }
        let user = UserInfo {
            username,
            uid: sa.uid.clone(),
            groups: vec![
                SERVICE_ACCOUNTS_GROUP.to_string(),
                format!("{SERVICE_ACCOUNTS_GROUP}:{}", sa.namespace),
                AUTHENTICATED_GROUP.to_string(),
            ],
            extra,
        };
        Ok((user, sa))
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm | ErrorKind::InvalidEcdsaKey => {
            AuthError::InvalidSignature
        }
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::InvalidAudience,
        ErrorKind::InvalidIssuer => AuthError::InvalidIssuer,
        _ => AuthError::Malformed(e.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine;

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

    pub(crate) fn issuer() -> TokenIssuer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        TokenIssuer::new(
            key.serialize_pem().as_bytes(),
            key.public_key_pem().as_bytes(),
            ISSUER,
        )
        .unwrap()
    }

    fn payload(token: &str) -> serde_json::Value {
        let part = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn issue_and_verify() {
        let iss = issuer();
        let (token, exp) = iss
            .issue(
                "default",
                "builder",
                "uid-1",
                &[],
                3600,
                Binding {
                    pod: Some(("p", "puid")),
                    node: Some(("n1", "nuid")),
                },
            )
            .unwrap();
        let secs = (exp - Utc::now()).num_seconds();
        assert!((3590..=3600).contains(&secs), "{secs}");
        let claims = payload(&token);
        assert_eq!(claims["sub"], "system:serviceaccount:default:builder");
        assert_eq!(claims["aud"], serde_json::json!([DEFAULT_AUDIENCE]));
        assert_eq!(claims["kubernetes.io"]["namespace"], "default");
        assert_eq!(claims["kubernetes.io"]["serviceaccount"]["uid"], "uid-1");
        assert_eq!(claims["kubernetes.io"]["pod"]["name"], "p");

        let (user, sa) = iss.verify(&token).unwrap();
        assert_eq!(user.username, "system:serviceaccount:default:builder");
        assert_eq!(user.uid, "uid-1");
        assert_eq!(
            user.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated"
            ]
        );
        assert_eq!(user.extra[EXTRA_POD_NAME], vec!["p"]);
        assert!(user.extra[EXTRA_CREDENTIAL_ID][0].starts_with("JTI="));
        assert_eq!(sa.namespace, "default");
        assert_eq!(sa.name, "builder");
        assert_eq!(sa.pod, Some(("p".to_string(), "puid".to_string())));
    }

    #[test]
    fn expired() {
        let iss = issuer();
        let past = Utc::now() - chrono::Duration::hours(2);
        let (token, _) = iss
            .issue_at(past, "default", "sa", "u", &[], 3600, Binding::default())
            .unwrap();
        assert!(matches!(iss.verify(&token), Err(AuthError::Expired)));
    }

    #[test]
    fn wrong_audience() {
        let iss = issuer();
        let (token, _) = iss
            .issue(
                "default",
                "sa",
                "u",
                &["vault".to_string()],
                600,
                Binding::default(),
            )
            .unwrap();
        assert!(matches!(
            iss.verify(&token),
            Err(AuthError::InvalidAudience)
        ));
        let both = [DEFAULT_AUDIENCE.to_string(), "vault".to_string()];
        let (token, _) = iss
            .issue("default", "sa", "u", &both, 600, Binding::default())
            .unwrap();
        assert!(iss.verify(&token).is_ok());
    }

    #[test]
    fn tampered_and_foreign() {
        let iss = issuer();
        let (token, _) = iss
            .issue("default", "sa", "u", &[], 600, Binding::default())
            .unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut claims = payload(&token);
        claims["sub"] = "system:serviceaccount:kube-system:admin".into();
        claims["kubernetes.io"]["namespace"] = "kube-system".into();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).unwrap());
        assert!(matches!(
            iss.verify(&parts.join(".")),
            Err(AuthError::InvalidSignature)
        ));
        // Signed by another key.
        assert!(matches!(
            issuer().verify(&token),
            Err(AuthError::InvalidSignature)
        ));
        assert!(matches!(
            iss.verify("garbage"),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn rejects_bad_requests() {
        let iss = issuer();
        assert!(matches!(
            iss.issue("default", "sa", "u", &[], 0, Binding::default()),
            Err(AuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            TokenIssuer::new(b"x", b"y", ISSUER),
            Err(AuthError::Key(_))
        ));
    }

    #[test]
    fn legacy_token() {
        let iss = issuer();
        let token = iss
            .issue_legacy("kube-system", "old", "u2", "old-token-abcde")
            .unwrap();
        let (user, sa) = iss.verify(&token).unwrap();
        assert_eq!(user.username, "system:serviceaccount:kube-system:old");
        assert_eq!(sa.secret.as_deref(), Some("old-token-abcde"));
        assert_eq!(sa.uid, "u2");
    }
}
