//! The cluster PKI directory, kubeadm style: [`Pki::ensure`] creates what is
//! missing, keeps the CA, and renews leaf certificates that are close to expiry
//! or no longer match what is requested (subject, SANs, signer, key), reporting
//! what it did so the launcher can print it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use crate::cert::{self, Ca, LeafSpec, San, Usage, LEAF_VALIDITY_DAYS, RENEW_BEFORE_DAYS};
use crate::error::{Error, Result};
use crate::fsutil::{read_optional, write_atomic, MODE_PUBLIC, MODE_SECRET};

/// The default ClusterIP of the `kubernetes` Service.
pub const DEFAULT_SERVICE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1));

/// What the PKI must cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiOptions {
    /// Name of the (single) node; used in the node certificates.
    pub node_name: String,
    /// Extra SANs for the API server certificate: hostnames or IP addresses.
    pub extra_sans: Vec<String>,
    /// ClusterIP of the `kubernetes` Service (usually 10.96.0.1).
    pub service_ip: IpAddr,
}

impl PkiOptions {
    /// Options for `node_name` with no extra SANs and [`DEFAULT_SERVICE_IP`].
    pub fn new(node_name: impl Into<String>) -> Self {
        PkiOptions {
            node_name: node_name.into(),
            extra_sans: Vec::new(),
            service_ip: DEFAULT_SERVICE_IP,
        }
    }
}

/// What [`Pki::ensure`] did with one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The item did not exist and was created.
    Generated,
    /// The item existed but was replaced, for the given reason.
    Renewed {
        /// Why it was replaced (e.g. "expires in 30 days").
        reason: String,
    },
    /// The item existed and was kept as is.
    Reused,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Generated => f.write_str("generated"),
            Action::Renewed { reason } => write!(f, "renewed ({reason})"),
            Action::Reused => f.write_str("reused"),
        }
    }
}

/// What [`Pki::ensure`] did, item by item, in order: `ca`, `apiserver`, `admin`,
/// `node`, `node-serving`, `apiserver-kubelet-client`, `sa`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnsureReport {
    /// `(item name, action)` pairs; the item name is the file stem.
    pub entries: Vec<(String, Action)>,
}

impl EnsureReport {
    /// The action taken for `name`, if it was handled.
    pub fn action(&self, name: &str) -> Option<&Action> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// True if anything was generated or renewed.
    pub fn changed(&self) -> bool {
        self.entries.iter().any(|(_, a)| *a != Action::Reused)
    }

    fn push(&mut self, name: &str, action: Action) {
        tracing::debug!(item = name, %action, "pki");
        self.entries.push((name.to_string(), action));
    }
}

impl fmt::Display for EnsureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, action)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{name}: {action}")?;
        }
        Ok(())
    }
}

/// Names and addresses of this host, used as SANs.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostInfo {
    pub hostname: Option<String>,
    pub ips: Vec<IpAddr>,
}

impl HostInfo {
    /// The host's hostname (if it is a valid DNS name) and its non-loopback,
    /// non-link-local interface addresses.
    pub(crate) fn detect() -> HostInfo {
        let hostname = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .and_then(|h| match San::parse(&h) {
                Ok(San::Dns(d)) => Some(d),
                _ => None,
            });
        let mut ips: Vec<IpAddr> = match local_ip_address::list_afinet_netifas() {
            Ok(list) => list
                .into_iter()
                .map(|(_, ip)| ip)
                .filter(|ip| !ip.is_loopback() && !ip.is_unspecified() && !is_link_local(ip))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list network interfaces; host IPs left out of certificates");
                Vec::new()
            }
        };
        ips.sort();
        ips.dedup();
        HostInfo { hostname, ips }
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn push_unique(sans: &mut Vec<San>, san: San) {
    if !sans.contains(&san) {
        sans.push(san);
    }
}

/// The leaf certificates of the cluster, in the order they are ensured.
pub(crate) fn leaf_specs(opts: &PkiOptions, host: &HostInfo) -> Result<Vec<LeafSpec>> {
    let node = opts.node_name.trim();
    let node_san = match San::parse(node) {
        Ok(san @ San::Dns(_)) => san,
        _ => {
            return Err(Error::InvalidOptions(format!(
                "node name {:?} is not a valid DNS name",
                opts.node_name
            )))
        }
    };
    let loopback = [
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        San::Dns("localhost".into()),
    ];
    let host_sans = host
        .hostname
        .iter()
        .map(|h| San::Dns(h.clone()))
        .chain(host.ips.iter().map(|ip| San::Ip(*ip)));

    let mut apiserver = Vec::new();
    for san in loopback.iter().cloned().chain(host_sans.clone()) {
        push_unique(&mut apiserver, san);
    }
    for name in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        push_unique(&mut apiserver, San::Dns(name.into()));
    }
    push_unique(&mut apiserver, San::Ip(opts.service_ip));
    for extra in &opts.extra_sans {
        push_unique(&mut apiserver, San::parse(extra)?);
    }

    let mut node_serving = vec![node_san];
    for san in loopback.iter().cloned().chain(host_sans) {
        push_unique(&mut node_serving, san);
    }

    let node_cn = format!("system:node:{node}");
    let leaf = |name, cn: &str, orgs: &[&str], usage, sans| LeafSpec {
        name,
        common_name: cn.to_string(),
        organizations: orgs.iter().map(|o| o.to_string()).collect(),
        usage,
        sans,
    };
    Ok(vec![
        leaf("apiserver", "kube-apiserver", &[], Usage::Server, apiserver),
        leaf(
            "admin",
            "kubernetes-admin",
            &["system:masters"],
            Usage::Client,
            Vec::new(),
        ),
        leaf(
            "node",
            &node_cn,
            &["system:nodes"],
            Usage::Client,
            Vec::new(),
        ),
        leaf("node-serving", &node_cn, &[], Usage::Server, node_serving),
        leaf(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            &["system:masters"],
            Usage::Client,
            Vec::new(),
        ),
    ])
}

/// A PKI directory. Holds only the directory; every file lives at a fixed name
/// inside it (see the `*_path` methods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    /// The directory holding all material.
    pub dir: PathBuf,
}

impl Pki {
    /// Refers to the PKI in `dir` without touching the filesystem (for
    /// components that only read material created by [`Pki::ensure`]).
    pub fn new(dir: impl Into<PathBuf>) -> Pki {
        Pki { dir: dir.into() }
    }

    /// Creates missing material under `dir`, keeps an existing CA, renews leaf
    /// certificates within 90 days of expiry or that no longer match the
    /// requested subject/SANs/CA/key, and reports what was done.
    pub fn ensure(dir: &Path, opts: &PkiOptions) -> Result<(Pki, EnsureReport)> {
        Self::ensure_with(dir, opts, &HostInfo::detect(), LEAF_VALIDITY_DAYS)
    }

    pub(crate) fn ensure_with(
        dir: &Path,
        opts: &PkiOptions,
        host: &HostInfo,
        leaf_days: u32,
    ) -> Result<(Pki, EnsureReport)> {
        let specs = leaf_specs(opts, host)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        let pki = Pki::new(dir);
        let mut report = EnsureReport::default();

        let ca_action = pki.ensure_ca()?;
        let ca_regenerated = ca_action == Action::Generated;
        report.push("ca", ca_action);
        let ca = pki.load_ca()?;
        let now = OffsetDateTime::now_utc();
        for spec in &specs {
            let action = pki.ensure_leaf(&ca, spec, leaf_days, now, ca_regenerated)?;
            report.push(spec.name, action);
        }
        report.push("sa", pki.ensure_sa()?);
        Ok((pki, report))
    }

    /// Path of the cluster CA certificate (`ca.crt`).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// Path of the cluster CA key (`ca.key`).
    pub fn ca_key_path(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// Path of the API server serving certificate (`apiserver.crt`).
    pub fn apiserver_cert_path(&self) -> PathBuf {
        self.cert_path("apiserver")
    }
    /// Path of the API server serving key (`apiserver.key`).
    pub fn apiserver_key_path(&self) -> PathBuf {
        self.key_path("apiserver")
    }
    /// Path of the cluster-admin client certificate (`admin.crt`).
    pub fn admin_cert_path(&self) -> PathBuf {
        self.cert_path("admin")
    }
    /// Path of the cluster-admin client key (`admin.key`).
    pub fn admin_key_path(&self) -> PathBuf {
        self.key_path("admin")
    }
    /// Path of the node agent's client certificate (`node.crt`).
    pub fn node_cert_path(&self) -> PathBuf {
        self.cert_path("node")
    }
    /// Path of the node agent's client key (`node.key`).
    pub fn node_key_path(&self) -> PathBuf {
        self.key_path("node")
    }
    /// Path of the node agent's serving certificate (`node-serving.crt`).
    pub fn node_serving_cert_path(&self) -> PathBuf {
        self.cert_path("node-serving")
    }
    /// Path of the node agent's serving key (`node-serving.key`).
    pub fn node_serving_key_path(&self) -> PathBuf {
        self.key_path("node-serving")
    }
    /// Path of the API server's client certificate for the node agent
    /// (`apiserver-kubelet-client.crt`).
    pub fn apiserver_kubelet_client_cert_path(&self) -> PathBuf {
        self.cert_path("apiserver-kubelet-client")
    }
    /// Path of the API server's client key for the node agent
    /// (`apiserver-kubelet-client.key`).
    pub fn apiserver_kubelet_client_key_path(&self) -> PathBuf {
        self.key_path("apiserver-kubelet-client")
    }
    /// Path of the ServiceAccount token signing key, PKCS#8 PEM (`sa.key`).
    pub fn sa_key_path(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    /// Path of the ServiceAccount token verification key, SPKI PEM (`sa.pub`).
    pub fn sa_pub_path(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }

    /// Renders a standalone admin kubeconfig for the API server at `server`.
    pub fn admin_kubeconfig(&self, name: &str, server: &str) -> Result<String> {
        let (ca, cert, key) = self.admin_pems()?;
        Ok(crate::kubeconfig::render(name, server, &ca, &cert, &key))
    }

    /// Merges the admin credentials as `name` into the kubeconfig at `path`
    /// (see [`crate::kubeconfig::merge`]).
    pub fn merge_admin_kubeconfig(&self, path: &Path, name: &str, server: &str) -> Result<()> {
        let (ca, cert, key) = self.admin_pems()?;
        crate::kubeconfig::merge(path, name, server, &ca, &cert, &key)
    }

    fn admin_pems(&self) -> Result<(String, String, String)> {
        Ok((
            load_pem_string(&self.ca_cert_path())?,
            load_pem_string(&self.admin_cert_path())?,
            load_pem_string(&self.admin_key_path())?,
        ))
    }

    fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    fn ensure_ca(&self) -> Result<Action> {
        let (cert_path, key_path) = (self.ca_cert_path(), self.ca_key_path());
        match (cert_path.exists(), key_path.exists()) {
            (false, false) => {
                let (cert, key) = cert::generate_ca()?;
                write_atomic(&key_path, key.as_bytes(), MODE_SECRET)?;
                write_atomic(&cert_path, cert.as_bytes(), MODE_PUBLIC)?;
                Ok(Action::Generated)
            }
            (true, false) => Err(Error::IncompleteCa {
                present: cert_path,
                missing: key_path,
            }),
            (false, true) => Err(Error::IncompleteCa {
                present: key_path,
                missing: cert_path,
            }),
            (true, true) => Ok(Action::Reused),
        }
    }

    pub(crate) fn load_ca(&self) -> Result<Ca> {
        let (cert_path, key_path) = (self.ca_cert_path(), self.ca_key_path());
        let cert = load_pem(&cert_path)?;
        let key = load_pem(&key_path)?;
        let ca = Ca::from_pem(&cert, &cert_path, &key, &key_path)?;
        if let Ok(facts) = cert::inspect(&cert, &cert_path, &ca.der) {
            let left = facts.not_after - OffsetDateTime::now_utc();
            if left < Duration::days(RENEW_BEFORE_DAYS) {
                tracing::warn!(
                    path = %cert_path.display(),
                    days_left = left.whole_days(),
                    "cluster CA expires soon; it is not renewed automatically"
                );
            }
        }
        Ok(ca)
    }

    fn ensure_leaf(
        &self,
        ca: &Ca,
        spec: &LeafSpec,
        days: u32,
        now: OffsetDateTime,
        ca_regenerated: bool,
    ) -> Result<Action> {
        let (cert_path, key_path) = (self.cert_path(spec.name), self.key_path(spec.name));
        let cert = read_optional(&cert_path)?;
        let key = read_optional(&key_path)?;
        let action = match (cert, key) {
            (Some(cert), Some(key)) => {
                let reason = if ca_regenerated {
                    Some("the CA was regenerated".to_string())
                } else {
                    match (
                        cert::inspect(&cert, &cert_path, &ca.der),
                        cert::parse_key(&key, &key_path),
                    ) {
                        (Ok(facts), Ok(key)) => facts.renewal_reason(spec, &key, now),
                        (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
                    }
                };
                match reason {
                    None => return Ok(Action::Reused),
                    Some(reason) => Action::Renewed { reason },
                }
            }
            _ => Action::Generated,
        };
        self.write_leaf(ca, spec, days)?;
        Ok(action)
    }

    /// Issues `spec` with the CA and writes it (key first, then certificate).
    pub(crate) fn write_leaf(&self, ca: &Ca, spec: &LeafSpec, days: u32) -> Result<()> {
        let (cert, key) = ca.issue(spec, days)?;
        write_atomic(&self.key_path(spec.name), key.as_bytes(), MODE_SECRET)?;
        write_atomic(&self.cert_path(spec.name), cert.as_bytes(), MODE_PUBLIC)
    }

    fn ensure_sa(&self) -> Result<Action> {
        let (key_path, pub_path) = (self.sa_key_path(), self.sa_pub_path());
        let stored = read_optional(&key_path)?;
        let had_key = stored.is_some();
        let existing = match stored {
            Some(pem) => match cert::parse_key(&pem, &key_path) {
                Ok(key) => Some(key),
                Err(e) => {
                    tracing::warn!(error = %e, "regenerating unreadable ServiceAccount key");
                    None
                }
            },
            None => None,
        };
        let (key, mut action) = match existing {
            Some(key) => (key, Action::Reused),
            None => {
                let key = cert::generate_key("ServiceAccount tokens")?;
                write_atomic(&key_path, key.serialize_pem().as_bytes(), MODE_SECRET)?;
                let action = if had_key {
                    Action::Renewed {
                        reason: "unreadable key".into(),
                    }
                } else {
                    Action::Generated
                };
                (key, action)
            }
        };
        let public = key.public_key_pem();
        if read_optional(&pub_path)?.as_deref() != Some(public.as_bytes()) {
            write_atomic(&pub_path, public.as_bytes(), MODE_PUBLIC)?;
            if action == Action::Reused {
                action = Action::Renewed {
                    reason: "public key did not match sa.key".into(),
                };
            }
        }
        Ok(action)
    }
}

/// Reads a PEM file (certificate or key) from disk.
pub fn load_pem(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("read", path, e))
}

/// Reads a PEM file as a string.
pub fn load_pem_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

/// Issues an extra client certificate signed by the cluster CA, with common name
/// `cn` and organizations `orgs` (Kubernetes user and groups), valid for `days`.
/// Returns `(cert_pem, key_pem)`; nothing is written to disk.
pub fn issue_client_cert(
    pki: &Pki,
    cn: &str,
    orgs: &[&str],
    days: u32,
) -> Result<(String, String)> {
    if cn.is_empty() {
        return Err(Error::InvalidOptions("client common name is empty".into()));
    }
    let ca = pki.load_ca()?;
    ca.issue(
        &LeafSpec {
            name: "client",
            common_name: cn.to_string(),
            organizations: orgs.iter().map(|o| o.to_string()).collect(),
            usage: Usage::Client,
            sans: Vec::new(),
        },
        days,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::extensions::GeneralName;
    use x509_parser::pem::parse_x509_pem;

    const ITEMS: [&str; 7] = [
        "ca",
        "apiserver",
        "admin",
        "node",
        "node-serving",
        "apiserver-kubelet-client",
        "sa",
    ];

    fn host() -> HostInfo {
        HostInfo {
            hostname: Some("myhost".into()),
            ips: vec!["192.168.1.10".parse().unwrap()],
        }
    }

    fn opts() -> PkiOptions {
        PkiOptions {
            extra_sans: vec!["api.example.com".into(), "203.0.113.7".into()],
            ..PkiOptions::new("node1")
        }
    }

    fn ensure(dir: &Path, opts: &PkiOptions) -> (Pki, EnsureReport) {
        Pki::ensure_with(dir, opts, &host(), LEAF_VALIDITY_DAYS).unwrap()
    }

    fn all_files(pki: &Pki) -> Vec<(PathBuf, u32)> {
        let mut files = vec![
            (pki.ca_cert_path(), 0o644),
            (pki.ca_key_path(), 0o600),
            (pki.sa_key_path(), 0o600),
            (pki.sa_pub_path(), 0o644),
        ];
        for name in &ITEMS[1..6] {
            files.push((pki.cert_path(name), 0o644));
            files.push((pki.key_path(name), 0o600));
        }
        files
    }

    fn snapshot(pki: &Pki) -> Vec<Vec<u8>> {
        all_files(pki)
            .iter()
            .map(|(p, _)| fs::read(p).unwrap())
            .collect()
    }

    /// Asserts `cert_path` is signed by the CA in `pki` and returns its subject
    /// string, SAN strings, and whether it has serverAuth / clientAuth.
    fn check_signed(pki: &Pki, cert_path: &Path) -> (String, Vec<String>, bool, bool) {
        check_pem_signed(pki, &fs::read(cert_path).unwrap())
    }

    fn check_pem_signed(pki: &Pki, pem: &[u8]) -> (String, Vec<String>, bool, bool) {
        let ca_bytes = fs::read(pki.ca_cert_path()).unwrap();
        let (_, ca_pem) = parse_x509_pem(&ca_bytes).unwrap();
        let ca = ca_pem.parse_x509().unwrap();
        let (_, leaf_pem) = parse_x509_pem(pem).unwrap();
        let leaf = leaf_pem.parse_x509().unwrap();
        assert_eq!(leaf.issuer(), ca.subject());
        leaf.verify_signature(Some(ca.public_key()))
            .expect("leaf signed by CA");
        assert!(!leaf.is_ca());
        let sans = leaf
            .subject_alternative_name()
            .unwrap()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .map(|n| match n {
                        GeneralName::DNSName(d) => d.to_string(),
                        GeneralName::IPAddress(b) if b.len() == 4 => {
                            IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
                        }
                        GeneralName::IPAddress(b) => {
                            IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()
                        }
                        other => format!("{other:?}"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let eku = leaf.extended_key_usage().unwrap().unwrap().value.clone();
        (
            leaf.subject().to_string(),
            sans,
            eku.server_auth,
            eku.client_auth,
        )
    }

    #[test]
    fn ensure_creates_everything_with_modes_and_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, report) = ensure(&dir.path().join("pki"), &opts());
        let names: Vec<&str> = report.entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ITEMS);
        assert!(report.entries.iter().all(|(_, a)| *a == Action::Generated));
        for (path, mode) in all_files(&pki) {
            let meta = fs::metadata(&path).unwrap_or_else(|_| panic!("{path:?} missing"));
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{path:?}");
        }
        let ca_bytes = fs::read(pki.ca_cert_path()).unwrap();
        let (_, ca_pem) = parse_x509_pem(&ca_bytes).unwrap();
        let ca = ca_pem.parse_x509().unwrap();
        assert!(ca.is_ca());
        assert_eq!(ca.subject().to_string(), "CN=rkube-ca");
        let years = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp())
            / (365 * 86400);
        assert_eq!(years, 10);
        let ku = ca.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
        assert!(fs::read_to_string(pki.sa_key_path())
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(fs::read_to_string(pki.sa_pub_path())
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
    }

    #[test]
    fn leafs_are_signed_by_ca_with_expected_subjects_and_sans() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = ensure(dir.path(), &opts());

        let (subject, sans, server, client) = check_signed(&pki, &pki.apiserver_cert_path());
        assert_eq!(subject, "CN=kube-apiserver");
        assert!(server && !client);
        for want in [
            "127.0.0.1",
            "::1",
            "localhost",
            "myhost",
            "192.168.1.10",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.96.0.1",
            "api.example.com",
            "203.0.113.7",
        ] {
            assert!(
                sans.iter().any(|s| s == want),
                "{want} missing from {sans:?}"
            );
        }

        let (subject, _, server, client) = check_signed(&pki, &pki.admin_cert_path());
        assert_eq!(subject, "O=system:masters, CN=kubernetes-admin");
        assert!(client && !server);

        let (subject, _, _, client) = check_signed(&pki, &pki.node_cert_path());
        assert_eq!(subject, "O=system:nodes, CN=system:node:node1");
        assert!(client);

        let (subject, sans, server, _) = check_signed(&pki, &pki.node_serving_cert_path());
        assert_eq!(subject, "CN=system:node:node1");
        assert!(server);
        for want in ["node1", "localhost", "127.0.0.1", "192.168.1.10"] {
            assert!(
                sans.iter().any(|s| s == want),
                "{want} missing from {sans:?}"
            );
        }

        let (subject, _, _, client) = check_signed(&pki, &pki.apiserver_kubelet_client_cert_path());
        assert_eq!(
            subject,
            "O=system:masters, CN=kube-apiserver-kubelet-client"
        );
        assert!(client);
    }

    #[test]
    fn second_ensure_reuses_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = ensure(dir.path(), &opts());
        let before = snapshot(&pki);
        let (_, report) = ensure(dir.path(), &opts());
        assert!(!report.changed(), "{report}");
        assert!(report.entries.iter().all(|(_, a)| *a == Action::Reused));
        assert_eq!(snapshot(&pki), before);
    }

    #[test]
    fn expiring_apiserver_cert_is_renewed_and_ca_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = ensure(dir.path(), &opts());
        let ca_before = fs::read(pki.ca_cert_path()).unwrap();
        let admin_before = fs::read(pki.admin_cert_path()).unwrap();
        let specs = leaf_specs(&opts(), &host()).unwrap();
        let ca = pki.load_ca().unwrap();
        pki.write_leaf(&ca, &specs[0], 30).unwrap();
        let short = fs::read(pki.apiserver_cert_path()).unwrap();

        let (_, report) = ensure(dir.path(), &opts());
        match report.action("apiserver") {
            Some(Action::Renewed { reason }) => assert!(reason.contains("expires"), "{reason}"),
            other => panic!("apiserver not renewed: {other:?}"),
        }
        assert_eq!(report.action("ca"), Some(&Action::Reused));
        assert_eq!(report.action("admin"), Some(&Action::Reused));
        assert_eq!(fs::read(pki.ca_cert_path()).unwrap(), ca_before);
        assert_eq!(fs::read(pki.admin_cert_path()).unwrap(), admin_before);
        let renewed = fs::read(pki.apiserver_cert_path()).unwrap();
        assert_ne!(renewed, short);
        check_signed(&pki, &pki.apiserver_cert_path());
        let facts = cert::inspect(&renewed, Path::new("a"), &ca.der).unwrap();
        assert!(facts.not_after - OffsetDateTime::now_utc() > Duration::days(360));
    }

    #[test]
    fn new_sans_or_node_name_renew_only_affected_certs() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), &opts());
        let mut more = opts();
        more.extra_sans.push("new.example.com".into());
        let (_, report) = ensure(dir.path(), &more);
        assert!(matches!(
            report.action("apiserver"),
            Some(Action::Renewed { .. })
        ));
        assert_eq!(report.action("node"), Some(&Action::Reused));

        let (_, report) = ensure(dir.path(), &PkiOptions::new("node2"));
        assert_eq!(
            report.action("apiserver"),
            Some(&Action::Reused),
            "{report}"
        );
        assert!(matches!(
            report.action("node"),
            Some(Action::Renewed { .. })
        ));
        assert!(matches!(
            report.action("node-serving"),
            Some(Action::Renewed { .. })
        ));
        assert_eq!(report.action("admin"), Some(&Action::Reused));
    }

    #[test]
    fn missing_or_corrupt_leaf_files_are_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = ensure(dir.path(), &opts());
        fs::remove_file(pki.admin_key_path()).unwrap();
        fs::write(pki.node_cert_path(), "garbage").unwrap();
        fs::remove_file(pki.sa_pub_path()).unwrap();
        let sa_key = fs::read(pki.sa_key_path()).unwrap();
        let (_, report) = ensure(dir.path(), &opts());
        assert_eq!(report.action("admin"), Some(&Action::Generated));
        assert!(matches!(
            report.action("node"),
            Some(Action::Renewed { .. })
        ));
        assert!(matches!(report.action("sa"), Some(Action::Renewed { .. })));
        assert_eq!(fs::read(pki.sa_key_path()).unwrap(), sa_key);
        check_signed(&pki, &pki.node_cert_path());
    }

    #[test]
    fn incomplete_ca_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = ensure(dir.path(), &opts());
        fs::remove_file(pki.ca_key_path()).unwrap();
        let err = Pki::ensure_with(dir.path(), &opts(), &host(), 365).unwrap_err();
        assert!(matches!(err, Error::IncompleteCa { .. }), "{err}");
    }

    #[test]
    fn invalid_options_are_rejected_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("pki");
        let err = Pki::ensure_with(&target, &PkiOptions::new(""), &host(), 365).unwrap_err();
        assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
        let mut bad = opts();
        bad.extra_sans.push("not a name".into());
        let err = Pki::ensure_with(&target, &bad, &host(), 365).unwrap_err();
        assert!(matches!(err, Error::InvalidSan { .. }), "{err}");
        assert!(!target.exists());
    }

    #[test]
    fn ensure_with_detected_host_works() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, report) = Pki::ensure(dir.path(), &PkiOptions::new("node1")).unwrap();
        assert!(report.changed());
        check_signed(&pki, &pki.apiserver_cert_path());
        let (_, report) = Pki::ensure(dir.path(), &PkiOptions::new("node1")).unwrap();
        assert!(!report.changed(), "{report}");
    }

    #[test]
    fn issue_client_cert_is_signed_by_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = ensure(dir.path(), &opts());
        let (cert, key) = issue_client_cert(&pki, "alice", &["dev", "ops"], 1).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        let (subject, sans, server, client) = check_pem_signed(&pki, cert.as_bytes());
        assert_eq!(subject, "O=dev, O=ops, CN=alice");
        assert!(sans.is_empty());
        assert!(client && !server);
        assert!(issue_client_cert(&pki, "", &[], 1).is_err());
    }

    #[test]
    fn admin_kubeconfig_embeds_admin_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = ensure(dir.path(), &opts());
        let text = pki
            .admin_kubeconfig("rkube", "https://127.0.0.1:6443")
            .unwrap();
        use base64::Engine as _;
        let ca =
            base64::engine::general_purpose::STANDARD.encode(fs::read(pki.ca_cert_path()).unwrap());
        assert!(text.contains(&ca));
        let path = dir.path().join("kubeconfig");
        pki.merge_admin_kubeconfig(&path, "rkube", "https://127.0.0.1:6443")
            .unwrap();
        assert!(fs::read_to_string(&path).unwrap().contains(&ca));
    }

    #[test]
    fn sa_keys_sign_and_verify_es256_tokens() {
        use jsonwebtoken::{
            decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
        };

        #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
        struct Claims {
            sub: String,
            exp: u64,
        }

        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = ensure(dir.path(), &opts());
        let enc = EncodingKey::from_ec_pem(&load_pem(&pki.sa_key_path()).unwrap()).unwrap();
        let dec = DecodingKey::from_ec_pem(&load_pem(&pki.sa_pub_path()).unwrap()).unwrap();
        let claims = Claims {
            sub: "system:serviceaccount:default:default".into(),
            exp: (OffsetDateTime::now_utc() + Duration::hours(1)).unix_timestamp() as u64,
        };
        let token = encode(&Header::new(Algorithm::ES256), &claims, &enc).unwrap();
        let data = decode::<Claims>(&token, &dec, &Validation::new(Algorithm::ES256)).unwrap();
        assert_eq!(data.claims, claims);

        // A key from another PKI does not verify it.
        let other = tempfile::tempdir().unwrap();
        let (other, _) = ensure(other.path(), &opts());
        let wrong = DecodingKey::from_ec_pem(&load_pem(&other.sa_pub_path()).unwrap()).unwrap();
        assert!(decode::<Claims>(&token, &wrong, &Validation::new(Algorithm::ES256)).is_err());
    }

    #[test]
    fn report_display() {
        let report = EnsureReport {
            entries: vec![
                ("ca".into(), Action::Reused),
                (
                    "apiserver".into(),
                    Action::Renewed {
                        reason: "expires in 3 days".into(),
                    },
                ),
            ],
        };
        assert_eq!(
            report.to_string(),
            "ca: reused\napiserver: renewed (expires in 3 days)"
        );
    }
}
