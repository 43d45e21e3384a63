//! Client-certificate authentication: the TLS layer has already verified the
//! chain against the client CA; the leaf's subject CommonName is the username
//! and each Organization is a group, as in kube-apiserver.

use std::collections::BTreeMap;

use x509_parser::prelude::{FromDer, X509Certificate};

use super::{UserInfo, AUTHENTICATED_GROUP};

/// The user named by a verified client certificate (DER), or `None` when it
/// cannot be parsed or has no CommonName. Groups are the Organizations plus
/// `system:authenticated`.
pub fn user_from_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let username = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if username.is_empty() {
        return None;
    }
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect();
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_string());
    }
    Some(UserInfo {
        username,
        uid: String::new(),
        groups,
        extra: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn cert(cn: Option<&str>, org: Option<&str>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(cn) = cn {
            dn.push(DnType::CommonName, cn);
        }
        if let Some(org) = org {
            dn.push(DnType::OrganizationName, org);
        }
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn cn_and_organization() {
        let user = user_from_cert(&cert(Some("alice"), Some("system:masters"))).unwrap();
        assert_eq!(user.username, "alice");
        assert_eq!(user.groups, vec!["system:masters", "system:authenticated"]);
        assert!(user.uid.is_empty());
    }

    #[test]
    fn no_organization() {
        let user = user_from_cert(&cert(Some("system:node:n1"), None)).unwrap();
        assert_eq!(user.groups, vec!["system:authenticated"]);
    }

    #[test]
    fn no_common_name_or_garbage() {
        assert_eq!(user_from_cert(&cert(None, Some("dev"))), None);
        assert_eq!(user_from_cert(b"not a certificate"), None);
    }
}
