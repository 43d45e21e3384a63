//! Certificate generation and inspection: ECDSA P-256 keys, the self-signed
//! cluster CA, leaf certificates signed by it (rcgen), and the parsed facts
//! (expiry, subject, SANs, signer, public key) that drive the renewal decision
//! (x509-parser).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SigningKey, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::der;
use crate::error::{Error, Result};

/// Common name of the cluster CA.
pub const CA_COMMON_NAME: &str = "rkube-ca";
/// Validity of the cluster CA, in days (10 years).
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Validity of leaf certificates, in days (1 year).
pub const LEAF_VALIDITY_DAYS: u32 = 365;
/// Leaf certificates expiring within this many days are renewed.
pub const RENEW_BEFORE_DAYS: i64 = 90;

/// How far `not_before` is backdated, to tolerate small clock skew.
const BACKDATE: Duration = Duration::minutes(5);

/// A subject alternative name: a DNS name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    /// Parses `name` as an IP address, else as a (lowercased) DNS name.
    pub(crate) fn parse(name: &str) -> Result<San> {
        let name = name.trim();
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        let dns = name.to_ascii_lowercase();
        let valid = !dns.is_empty()
            && dns.len() <= 253
            && dns.split('.').enumerate().all(|(i, label)| {
                // A leading "*" label is allowed for wildcard names.
                (i == 0 && label == "*")
                    || (!label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            });
        if !valid {
            return Err(Error::InvalidSan {
                name: name.to_string(),
            });
        }
        Ok(San::Dns(dns))
    }

    fn to_rcgen(&self) -> Result<SanType> {
        Ok(match self {
            San::Ip(ip) => SanType::IpAddress(*ip),
            San::Dns(name) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(|e| Error::generate(format!("SAN {name:?}"), e))?,
            ),
        })
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Whether a leaf certificate authenticates a server or a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    Server,
    Client,
}

/// Everything needed to issue (or check) one leaf certificate.
#[derive(Debug, Clone)]
pub(crate) struct LeafSpec {
    /// File stem: the certificate is `<name>.crt`, the key `<name>.key`.
    pub name: &'static str,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub usage: Usage,
    pub sans: Vec<San>,
}

/// Generates a fresh ECDSA P-256 key pair.
pub(crate) fn generate_key(what: &str) -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Error::generate(format!("key for {what}"), e))
}

/// Parses a PEM private key from `path`.
pub(crate) fn parse_key(pem: &[u8], path: &Path) -> Result<KeyPair> {
    let text = std::str::from_utf8(pem).map_err(|_| Error::InvalidKey {
        path: path.to_path_buf(),
        source: rcgen::Error::CouldNotParseKeyPair,
    })?;
    KeyPair::from_pem(text).map_err(|source| Error::InvalidKey {
        path: path.to_path_buf(),
        source,
    })
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
}

/// Generates the self-signed cluster CA; returns `(cert_pem, key_pem)`.
pub(crate) fn generate_ca() -> Result<(String, String)> {
    let key = generate_key("the cluster CA")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_VALIDITY_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::generate("the cluster CA certificate", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The cluster CA loaded from disk, able to sign leaf certificates.
pub(crate) struct Ca {
    /// DER of the CA certificate, used to check that leafs were signed by it.
    pub der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Loads the CA from its PEM certificate and key.
    pub(crate) fn from_pem(
        cert_pem: &[u8],
        cert_path: &Path,
        key_pem: &[u8],
        key_path: &Path,
    ) -> Result<Ca> {
        let key = parse_key(key_pem, key_path)?;
        let pem = parse_pem(cert_pem, cert_path)?;
        let cert = parse_cert(&pem, cert_path)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(Error::InvalidCert {
                path: cert_path.to_path_buf(),
                reason: format!("public key does not match {}", key_path.display()),
            });
        }
        let issuer =
            Issuer::from_ca_cert_der(&pem.contents.as_slice().into(), key).map_err(|e| {
                Error::InvalidCert {
                    path: cert_path.to_path_buf(),
                    reason: e.to_string(),
                }
            })?;
        Ok(Ca {
            der: pem.contents,
            issuer,
        })
    }

    /// Issues a leaf certificate for `spec` valid for `days`; returns `(cert_pem, key_pem)`.
    pub(crate) fn issue(&self, spec: &LeafSpec, days: u32) -> Result<(String, String)> {
        let key = generate_key(spec.name)?;
        let mut params = CertificateParams::default();
        // Organizations first, like kubeadm. rcgen keeps only one O; several are
        // written by `der::replace_subject` below.
        let mut dn = DistinguishedName::new();
        if let Some(org) = spec.organizations.first() {
            dn.push(DnType::OrganizationName, org.as_str());
        }
        dn.push(DnType::CommonName, spec.common_name.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match spec.usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.subject_alt_names = spec.sans.iter().map(San::to_rcgen).collect::<Result<_>>()?;
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        let what = || format!("certificate {}", spec.name);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| Error::generate(what(), e))?;
        if spec.organizations.len() < 2 {
            return Ok((cert.pem(), key.serialize_pem()));
        }
        let subject = der::subject(&spec.common_name, &spec.organizations);
        let der = der::replace_subject(cert.der(), &subject, |tbs| self.issuer.key().sign(tbs))
            .ok_or_else(|| Error::generate(what(), rcgen::Error::CouldNotParseCertificate))?
            .map_err(|e| Error::generate(what(), e))?;
        Ok((der::pem("CERTIFICATE", &der), key.serialize_pem()))
    }
}

fn parse_pem(bytes: &[u8], path: &Path) -> Result<Pem> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(bytes).map_err(|e| Error::InvalidCert {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(pem)
}

fn parse_cert<'a>(pem: &'a Pem, path: &Path) -> Result<X509Certificate<'a>> {
    pem.parse_x509().map_err(|e| Error::InvalidCert {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Facts about an existing certificate that decide whether it must be renewed.
#[derive(Debug, Clone)]
pub(crate) struct CertFacts {
    pub not_after: OffsetDateTime,
    pub common_names: Vec<String>,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// Raw subject public key (the EC point).
    pub public_key: Vec<u8>,
    pub signed_by_ca: bool,
}

/// Parses a PEM certificate and checks it against the CA certificate `ca_der`.
pub(crate) fn inspect(pem_bytes: &[u8], path: &Path, ca_der: &[u8]) -> Result<CertFacts> {
    let pem = parse_pem(pem_bytes, path)?;
    let cert = parse_cert(&pem, path)?;
    let invalid = |reason: String| Error::InvalidCert {
        path: path.to_path_buf(),
        reason,
    };
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der)
        .map_err(|e| invalid(format!("CA certificate: {e}")))?;
    let signed_by_ca =
        cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok();
    let attr_strings = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let common_names = attr_strings(&mut cert.subject().iter_common_name());
    let organizations = attr_strings(&mut cert.subject().iter_organization());
    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| invalid(e.to_string()))?
    {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        ips.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        ips.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertFacts {
        not_after: cert.validity().not_after.to_datetime(),
        common_names,
        organizations,
        dns_names,
        ips,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        signed_by_ca,
    })
}

impl CertFacts {
    /// Why a certificate with these facts no longer satisfies `spec` with the
    /// key `key`, or `None` if it can be kept.
    pub(crate) fn renewal_reason(
        &self,
        spec: &LeafSpec,
        key: &KeyPair,
        now: OffsetDateTime,
    ) -> Option<String> {
        if !self.signed_by_ca {
            return Some("not signed by the current CA".to_string());
        }
        if self.public_key != key.public_key_raw() {
            return Some("certificate does not match its key".to_string());
        }
        let left = self.not_after - now;
        if left < Duration::days(RENEW_BEFORE_DAYS) {
            return Some(format!(
                "expires in {} days (renewing within {RENEW_BEFORE_DAYS})",
                left.whole_days()
            ));
        }
        if self.common_names != [spec.common_name.as_str()] {
            return Some(format!("common name is not {:?}", spec.common_name));
        }
        let mut want_orgs = spec.organizations.clone();
        let mut have_orgs = self.organizations.clone();
        want_orgs.sort();
        have_orgs.sort();
        if want_orgs != have_orgs {
            return Some(format!("organizations are not {:?}", spec.organizations));
        }
        let missing: Vec<String> = spec
            .sans
            .iter()
            .filter(|san| match san {
                San::Dns(d) => !self.dns_names.contains(d),
                San::Ip(ip) => !self.ips.contains(ip),
            })
            .map(San::to_string)
            .collect();
        if !missing.is_empty() {
            return Some(format!("missing SANs {}", missing.join(", ")));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> Ca {
        let (cert, key) = generate_ca().unwrap();
        Ca::from_pem(
            cert.as_bytes(),
            Path::new("ca.crt"),
            key.as_bytes(),
            Path::new("ca.key"),
        )
        .unwrap()
    }

    fn spec() -> LeafSpec {
        LeafSpec {
            name: "test",
            common_name: "test".into(),
            organizations: vec!["b".into(), "a".into()],
            usage: Usage::Server,
            sans: vec![
                San::parse("Example.COM").unwrap(),
                San::parse("10.0.0.1").unwrap(),
            ],
        }
    }

    #[test]
    fn san_parse() {
        assert_eq!(San::parse("::1").unwrap(), San::Ip("::1".parse().unwrap()));
        assert_eq!(San::parse("Foo.bar").unwrap(), San::Dns("foo.bar".into()));
        assert_eq!(San::parse("*.foo").unwrap(), San::Dns("*.foo".into()));
        assert!(San::parse("bad name").is_err());
        assert!(San::parse("a..b").is_err());
        assert!(San::parse("").is_err());
    }

    #[test]
    fn issued_leaf_is_kept_until_something_changes() {
        let ca = ca();
        let spec = spec();
        let (cert, key) = ca.issue(&spec, LEAF_VALIDITY_DAYS).unwrap();
        let key = parse_key(key.as_bytes(), Path::new("k")).unwrap();
        let facts = inspect(cert.as_bytes(), Path::new("c"), &ca.der).unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(facts.renewal_reason(&spec, &key, now), None);

        let mut more = spec.clone();
        more.sans.push(San::parse("other").unwrap());
        assert!(facts
            .renewal_reason(&more, &key, now)
            .unwrap()
            .contains("other"));

        let mut renamed = spec.clone();
        renamed.common_name = "else".into();
        assert!(facts.renewal_reason(&renamed, &key, now).is_some());

        let later = now + Duration::days(300);
        assert!(facts
            .renewal_reason(&spec, &key, later)
            .unwrap()
            .contains("expires"));

        let other_key = generate_key("x").unwrap();
        assert!(facts.renewal_reason(&spec, &other_key, now).is_some());

        let other_ca = self::ca();
        let facts = inspect(cert.as_bytes(), Path::new("c"), &other_ca.der).unwrap();
        assert!(!facts.signed_by_ca);
    }

    #[test]
    fn ca_rejects_mismatched_key() {
        let (cert, _) = generate_ca().unwrap();
        let (_, key) = generate_ca().unwrap();
        let err = Ca::from_pem(
            cert.as_bytes(),
            Path::new("ca.crt"),
            key.as_bytes(),
            Path::new("ca.key"),
        )
        .err()
        .unwrap();
        assert!(matches!(err, Error::InvalidCert { .. }));
    }
}
