//! Cluster PKI and kubeconfig handling for rkube, in the manner of kubeadm.
//!
//! [`Pki::ensure`] keeps a directory of ECDSA P-256 material up to date:
//!
//! | file | what |
//! |------|------|
//! | `ca.crt` / `ca.key` | cluster CA, CN `rkube-ca`, 10 years, never renewed automatically |
//! | `apiserver.crt` / `.key` | API server serving cert (loopback, hostname, host IPs, `kubernetes.default.svc…`, service IP, extra SANs) |
//! | `admin.crt` / `.key` | client cert `kubernetes-admin` / `system:masters` |
//! | `node.crt` / `.key` | node agent client cert `system:node:<node>` / `system:nodes` |
//! | `node-serving.crt` / `.key` | node agent serving cert (node name, localhost, host IPs) |
//! | `apiserver-kubelet-client.crt` / `.key` | API server → node agent client cert, `system:masters` |
//! | `sa.key` / `sa.pub` | ServiceAccount token keys: PKCS#8 and SPKI PEM (ES256) |
//!
//! Leaf certificates last a year and are renewed when within 90 days of expiry
//! or when their subject, SANs, signer or key no longer match. Keys are written
//! 0600, certificates 0644, always atomically.
//!
//! [`issue_client_cert`] signs extra client certificates; [`kubeconfig`] renders
//! kubeconfigs and merges them into the user's file.
//!
//! ```no_run
//! # fn main() -> rkube_pki::Result<()> {
//! use rkube_pki::{kubeconfig, Pki, PkiOptions};
//! let (pki, report) = Pki::ensure("/var/lib/rkube/pki".as_ref(), &PkiOptions::new("node1"))?;
//! println!("{report}");
//! pki.merge_admin_kubeconfig(&kubeconfig::default_path(), "rkube", "https://127.0.0.1:6443")?;
//! # Ok(())
//! # }
//! ```

mod cert;
mod der;
mod error;
mod fsutil;
pub mod kubeconfig;
mod pki;

pub use cert::{CA_COMMON_NAME, CA_VALIDITY_DAYS, LEAF_VALIDITY_DAYS, RENEW_BEFORE_DAYS};
pub use error::{Error, Result};
pub use pki::{
    issue_client_cert, load_pem, load_pem_string, Action, EnsureReport, Pki, PkiOptions,
    DEFAULT_SERVICE_IP,
};
