//! Service account credentials in pods: the automounted token, CA and
//! namespace, projected service account tokens, and the OIDC discovery
//! documents that let others verify those tokens.

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{DeleteParams, PostParams};
use serde_json::{json, Value};

use super::{expect_output_regex, uid};
use crate::conformance;
use crate::ctx::{from_json, pod, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Service Account Tokens Must AutoMount", automount),
        conformance!(
            "TokenRequestProjection should mount a projected volume with token using TokenRequest API.",
            projected_token
        ),
        conformance!(
            "OIDC Discovery (ServiceAccountIssuerDiscovery)",
            oidc_discovery
        ),
    ]
}

const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

async fn automount(c: Ctx) -> Result<()> {
    c.create::<ServiceAccount>(json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "mount-test"},
    }))
    .await
    .context("create service account")?;
    let name = format!("pod-service-account-{}", uid());
    let mut p = pod(
        &name,
        json!({
            "serviceAccountName": "mount-test",
            "restartPolicy": "Never",
            "containers": [{"name": "test", "image": c.env.images.busybox, "command": ["sleep", "100000"]}],
        }),
    );
    p["spec"]["terminationGracePeriodSeconds"] = json!(0);
    c.create_pod(p).await?;
    c.wait_pod(&name, "Running", |p| crate::ctx::phase(p) == "Running")
        .await?;
    let p = c.pods().get(&name).await?;
    let node_name = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .context("pod has no node")?;
    let node = c.all::<Node>().get(&node_name).await?;

    let read = |f: &'static str| {
        let c = &c;
        let name = &name;
        async move {
            c.exec(name, Some("test"), &["cat", &format!("{MOUNT}/{f}")])
                .await
        }
    };
    let token = read("token").await?;
    let ca = read("ca.crt").await?;
    let ns = read("namespace").await?;

    // CA and namespace are the cluster's and the pod's.
    let root_ca = c.api::<ConfigMap>().get("kube-root-ca.crt").await?;
    let want_ca = root_ca
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .cloned()
        .unwrap_or_default();
    ensure!(
        ca == want_ca,
        "mounted ca.crt differs from kube-root-ca.crt"
    );
    ensure!(ns == c.ns, "mounted namespace is {ns:?}, want {:?}", c.ns);

    // The token identifies the pod's service account.
    let tr: TokenReview = from_json(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token},
    }))?;
    let tr = c
        .all::<TokenReview>()
        .create(&PostParams::default(), &tr)
        .await
        .context("create TokenReview")?;
    let st = tr.status.unwrap_or_default();
    ensure!(
        st.authenticated == Some(true),
        "token review is not authenticated: {st:?}"
    );
    ensure!(
        st.error.as_deref().unwrap_or("").is_empty(),
        "token review error: {:?}",
        st.error
    );
    let user = st.user.unwrap_or_default();
    let want_user = format!("system:serviceaccount:{}:mount-test", c.ns);
    ensure!(
        user.username.as_deref() == Some(want_user.as_str()),
        "token user is {:?}, want {want_user}",
        user.username
    );
    let groups = user.groups.unwrap_or_default();
    for g in [
        "system:authenticated".to_string(),
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{}", c.ns),
    ] {
        ensure!(groups.contains(&g), "expected group {g}, had {groups:?}");
    }
    let extra = user.extra.unwrap_or_default();
    let one =
        |k: &str| -> Option<String> { extra.get(k).filter(|v| v.len() == 1).map(|v| v[0].clone()) };
    let cred = one("authentication.kubernetes.io/credential-id");
    ensure!(
        cred.as_deref().is_some_and(|v| v.starts_with("JTI=")),
        "credential-id extra is {:?}",
        extra.get("authentication.kubernetes.io/credential-id")
    );
    let checks = [
        (
            "authentication.kubernetes.io/pod-name",
            p.metadata.name.clone(),
        ),
        (
            "authentication.kubernetes.io/pod-uid",
            p.metadata.uid.clone(),
        ),
        (
            "authentication.kubernetes.io/node-name",
            node.metadata.name.clone(),
        ),
        (
            "authentication.kubernetes.io/node-uid",
            node.metadata.uid.clone(),
        ),
    ];
    for (k, want) in checks {
        ensure!(
            one(k) == want,
            "extra {k} is {:?}, want {want:?}",
            extra.get(k)
        );
    }
    Ok(())
}

async fn projected_token(c: Ctx) -> Result<()> {
    let name = format!("test-pod-{}", uid());
    let p = pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "containers": [{
                "name": "agnhost-container",
                "image": c.env.images.agnhost,
                "args": ["mounttest", "--file_content=/test-volume/token"],
                "volumeMounts": [{"name": "test-volume", "mountPath": "/test-volume", "readOnly": true}],
            }],
            "volumes": [{"name": "test-volume", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
            ]}}],
        }),
    );
    expect_output_regex(
        &c,
        p,
        None,
        &[r#"content of file "/test-volume/token": [A-Za-z0-9-_=]+\.[A-Za-z0-9-_=]+\.?[A-Za-z0-9-_.+/=]*"#],
    )
    .await
}

// ------------------------------------------------------------ OIDC discovery

/// The ClusterRole that grants the discovery documents (RBAC bootstrap).
const DISCOVERY_ROLE: &str = "system:service-account-issuer-discovery";
/// Audience of the pod's projected token.
const OIDC_AUDIENCE: &str = "oidc-discovery-test";

/// Upstream's agnhost test-service-account-issuer-discovery, done from the
/// test: a pod of the default service account gets a projected token; as
/// that service account (bound to the discovery role, as upstream binds
/// it) we read the discovery document of the token's issuer and its JWKS,
/// and verify the token against them as an OIDC relying party does.
async fn oidc_discovery(c: Ctx) -> Result<()> {
    let crbs = c.all::<ClusterRoleBinding>();
    let crb_name = format!("{}-{DISCOVERY_ROLE}", c.ns);
    let crb: ClusterRoleBinding = from_json(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": crb_name},
        "subjects": [{"kind": "ServiceAccount", "apiGroup": "", "name": "default", "namespace": c.ns}],
        "roleRef": {"kind": "ClusterRole", "apiGroup": "rbac.authorization.k8s.io", "name": DISCOVERY_ROLE},
    }))?;
    crbs.create(&PostParams::default(), &crb)
        .await
        .context("grant the default service account the discovery role")?;
    let res = oidc_checks(&c).await;
    let del = crbs.delete(&crb_name, &DeleteParams::default()).await;
    res?;
    del.context("delete the ClusterRoleBinding")?;
    Ok(())
}

async fn oidc_checks(c: &Ctx) -> Result<()> {
    // The pod prints its projected token and its automounted credential.
    let name = "oidc-discovery-validator";
    let p = pod(
        name,
        json!({
            "restartPolicy": "Never",
            "serviceAccountName": "default",
            "containers": [{
                "name": name,
                "image": c.env.images.busybox,
                "command": ["sh", "-c", format!("cat /var/run/secrets/tokens/sa-token; echo; cat {MOUNT}/token; echo")],
                "volumeMounts": [{"name": "sa-token", "mountPath": "/var/run/secrets/tokens", "readOnly": true}],
            }],
            "volumes": [{"name": "sa-token", "projected": {"sources": [
                {"serviceAccountToken": {"path": "sa-token", "expirationSeconds": 600, "audience": OIDC_AUDIENCE}},
            ]}}],
        }),
    );
    let out = c.pod_output(p, None).await?;
    let mut lines = out.lines().map(str::trim).filter(|l| !l.is_empty());
    let (Some(token), Some(credential)) = (lines.next(), lines.next()) else {
        bail!("the pod did not print its two tokens; output:\n{out}");
    };
    let jwt = Jwt::parse(token).context("the projected token is no JWT")?;
    let iss = jwt.claims["iss"].as_str().unwrap_or_default().to_string();
    ensure!(
        !iss.is_empty(),
        "the projected token has no issuer: {}",
        jwt.claims
    );

    // The discovery document, read with the pod's own credential.
    let sa = service_account_client(c).await?;
    let doc_text = bearer_get(&sa, credential, "/.well-known/openid-configuration")
        .await
        .context("read the OIDC discovery document as the pod's service account")?;
    let doc: Value = serde_json::from_str(&doc_text)
        .with_context(|| format!("discovery document is no JSON: {doc_text}"))?;
    ensure!(
        doc["issuer"].as_str() == Some(iss.as_str()),
        "discovery issuer {:?} differs from the token's issuer {iss:?}",
        doc["issuer"]
    );
    let strings = |k: &str| -> Vec<String> {
        doc[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    ensure!(
        strings("response_types_supported")
            .iter()
            .any(|t| t == "id_token"),
        "response_types_supported lacks id_token: {doc}"
    );
    ensure!(
        strings("subject_types_supported")
            .iter()
            .any(|t| t == "public"),
        "subject_types_supported lacks public: {doc}"
    );
    let mut algs = strings("id_token_signing_alg_values_supported");
    if algs.is_empty() {
        algs.push("RS256".into());
    }
    let jwks_uri = doc["jwks_uri"].as_str().unwrap_or_default();
    let jwks_path = uri_path(jwks_uri)
        .with_context(|| format!("discovery document has no https jwks_uri: {doc}"))?;
    let jwks_text = bearer_get(&sa, credential, jwks_path)
        .await
        .with_context(|| format!("read the JWKS at {jwks_uri} as the pod's service account"))?;
    let jwks: Value = serde_json::from_str(&jwks_text)
        .with_context(|| format!("JWKS is no JSON: {jwks_text}"))?;

    // The token verifies against a key of the set (go-oidc's checks).
    let alg = jwt.header["alg"].as_str().unwrap_or_default();
    ensure!(
        algs.iter().any(|a| a == alg),
        "the token is signed with {alg:?}, not one of the advertised {algs:?}"
    );
    let keys: Vec<&Value> = jwks["keys"].as_array().into_iter().flatten().collect();
    let candidates: Vec<&Value> = match jwt.header["kid"].as_str() {
        Some(kid) => keys
            .iter()
            .copied()
            .filter(|k| k["kid"].as_str() == Some(kid))
            .collect(),
        None => keys.clone(),
    };
    ensure!(
        !candidates.is_empty(),
        "no key of the JWKS matches the token's key id {:?}; JWKS: {jwks_text}",
        jwt.header.get("kid")
    );
    let mut why = Vec::new();
    let mut verified = false;
    for k in candidates {
        match verify_signature(&jwt, alg, k).await {
            Ok(()) => {
                verified = true;
                break;
            }
            Err(e) => why.push(format!("{e:#}")),
        }
    }
    ensure!(
        verified,
        "the token's signature verifies against no key of the JWKS: {why:?}"
    );
    let aud_ok = match &jwt.claims["aud"] {
        Value::String(a) => a == OIDC_AUDIENCE,
        Value::Array(v) => v.iter().any(|a| a.as_str() == Some(OIDC_AUDIENCE)),
        _ => false,
    };
    ensure!(
        aud_ok,
        "the token's audience is not {OIDC_AUDIENCE}: {}",
        jwt.claims
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let exp = jwt.claims["exp"].as_i64().unwrap_or(0);
    ensure!(exp > now, "the token expired at {exp} (now {now})");
    let sub = format!("system:serviceaccount:{}:default", c.ns);
    ensure!(
        jwt.claims["sub"].as_str() == Some(sub.as_str()),
        "the token's subject is {:?}, want {sub}",
        jwt.claims["sub"]
    );
    Ok(())
}

/// A client of the cluster's API server with no credential of its own
/// (requests carry the bearer token they are given).
async fn service_account_client(c: &Ctx) -> Result<kube::Client> {
    let mut cfg = match &c.env.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).context("read kubeconfig")?;
            let opts = kube::config::KubeConfigOptions {
                context: c.env.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .context("load kubeconfig")?
        }
        None => kube::Config::infer().await.context("infer kube config")?,
    };
    cfg.auth_info = Default::default();
    kube::Client::try_from(cfg).context("client without credentials")
}

/// GET `path` from the API server with `Authorization: Bearer token`.
async fn bearer_get(client: &kube::Client, token: &str, path: &str) -> Result<String> {
    let mut req = kube::core::Request::new("")
        .get(path.trim_start_matches('/'), &Default::default())
        .context("build request")?;
    *req.uri_mut() = path.parse().context("request path")?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .context("authorization header")?,
    );
    Ok(client.request_text(req).await?)
}

/// The path (and query) of an https URL.
fn uri_path(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("https://")?;
    let slash = rest.find('/')?;
    Some(&rest[slash..])
}

/// A compact JWS: decoded header and claims, the signed input, the signature.
struct Jwt {
    header: Value,
    claims: Value,
    signed: Vec<u8>,
    signature: Vec<u8>,
}

impl Jwt {
    fn parse(token: &str) -> Result<Jwt> {
        let parts: Vec<&str> = token.split('.').collect();
        ensure!(parts.len() == 3, "{} parts, want 3", parts.len());
        let header = serde_json::from_slice(&b64url(parts[0])?).context("header")?;
        let claims = serde_json::from_slice(&b64url(parts[1])?).context("claims")?;
        Ok(Jwt {
            header,
            claims,
            signed: format!("{}.{}", parts[0], parts[1]).into_bytes(),
            signature: b64url(parts[2])?,
        })
    }
}

/// Decodes unpadded (or padded) base64url.
fn b64url(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for ch in s.trim_end_matches('=').bytes() {
        let v = match ch {
            b'A'..=b'Z' => ch - b'A',
            b'a'..=b'z' => ch - b'a' + 26,
            b'0'..=b'9' => ch - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => bail!("invalid base64url character {:?}", ch as char),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// A DER element: tag, length, content.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    if n < 0x80 {
        v.push(n as u8);
    } else {
        let len: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        v.push(0x80 | len.len() as u8);
        v.extend(len);
    }
    v.extend_from_slice(content);
    v
}

/// A DER INTEGER of the unsigned big-endian `bytes`.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::new();
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

/// The DER SubjectPublicKeyInfo of a JWK (RSA or EC P-256/P-384), and
/// the digest its signatures use with `alg`.
fn jwk_public_key(jwk: &Value, alg: &str) -> Result<(Vec<u8>, &'static str)> {
    let field = |k: &str| -> Result<Vec<u8>> {
        b64url(
            jwk[k]
                .as_str()
                .with_context(|| format!("JWK has no {k}: {jwk}"))?,
        )
    };
    let digest = match &alg[2..] {
        "256" => "-sha256",
        "384" => "-sha384",
        "512" => "-sha512",
        _ => bail!("unsupported alg {alg}"),
    };
    let spki = match (jwk["kty"].as_str(), &alg[..2]) {
        (Some("RSA"), "RS") => {
            let rsa_oid = [
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
            ];
            let key = der(
                0x30,
                &[der_uint(&field("n")?), der_uint(&field("e")?)].concat(),
            );
            let mut bits = vec![0];
            bits.extend(key);
            der(0x30, &[der(0x30, &rsa_oid), der(0x03, &bits)].concat())
        }
        (Some("EC"), "ES") => {
            let curve: &[u8] = match jwk["crv"].as_str() {
                Some("P-256") => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
                Some("P-384") => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
                other => bail!("unsupported curve {other:?}"),
            };
            let ec_oid = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
            let mut point = vec![0, 4];
            point.extend(field("x")?);
            point.extend(field("y")?);
            der(
                0x30,
                &[der(0x30, &[&ec_oid[..], curve].concat()), der(0x03, &point)].concat(),
            )
        }
        (kty, _) => bail!("key type {kty:?} does not sign {alg}"),
    };
    Ok((spki, digest))
}

/// Verifies the JWS signature with `jwk` through the openssl command.
async fn verify_signature(jwt: &Jwt, alg: &str, jwk: &Value) -> Result<()> {
    ensure!(alg.len() == 5, "unsupported alg {alg:?}");
    let (spki, digest) = jwk_public_key(jwk, alg)?;
    let signature = if alg.starts_with("ES") {
        // JWS carries r||s; openssl wants an ASN.1 ECDSA-Sig-Value.
        let half = jwt.signature.len() / 2;
        let (r, s) = jwt.signature.split_at(half);
        der(0x30, &[der_uint(r), der_uint(s)].concat())
    } else {
        jwt.signature.clone()
    };
    let dir = tempfile::tempdir()?;
    let (key, sig, data) = (
        dir.path().join("key.der"),
        dir.path().join("sig"),
        dir.path().join("data"),
    );
    std::fs::write(&key, spki)?;
    std::fs::write(&sig, signature)?;
    std::fs::write(&data, &jwt.signed)?;
    let out = tokio::process::Command::new("openssl")
        .args(["dgst", digest, "-keyform", "DER", "-verify"])
        .arg(&key)
        .arg("-signature")
        .arg(&sig)
        .arg(&data)
        .output()
        .await
        .context("run openssl (needed to verify the token's signature)")?;
    ensure!(
        out.status.success(),
        "key {:?}: {} {}",
        jwk.get("kid"),
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_decodes_with_and_without_padding() {
        assert_eq!(b64url("aGk").unwrap(), b"hi");
        assert_eq!(b64url("aGk=").unwrap(), b"hi");
        assert_eq!(b64url("-_8").unwrap(), [0xfb, 0xff]);
        assert!(b64url("a*").is_err());
    }

    #[test]
    fn der_integers_and_long_lengths() {
        assert_eq!(der_uint(&[0x00, 0x7f]), [0x02, 0x01, 0x7f]);
        assert_eq!(der_uint(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_uint(&[0, 0]), [0x02, 0x01, 0x00]);
        let long = der(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn https_uri_paths() {
        assert_eq!(
            uri_path("https://h:6443/openid/v1/jwks"),
            Some("/openid/v1/jwks")
        );
        assert_eq!(uri_path("http://h/x"), None);
    }
}
