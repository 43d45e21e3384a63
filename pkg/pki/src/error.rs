//! The crate's error type: one variant per failure, each carrying the path or
//! item involved and wrapping its cause.

use std::path::PathBuf;

/// Errors from creating, loading or checking PKI material and kubeconfig files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation on `path` failed.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done ("read", "write", "rename", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// rcgen could not generate a key or sign a certificate.
    #[error("failed to generate {what}")]
    Generate {
        /// The key or certificate being generated.
        what: String,
        /// The underlying rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// A PEM certificate on disk could not be parsed.
    #[error("invalid certificate {path}: {reason}")]
    InvalidCert {
        /// The certificate file.
        path: PathBuf,
        /// Why parsing failed.
        reason: String,
    },
    /// A PEM private key on disk could not be parsed.
    #[error("invalid private key {path}")]
    InvalidKey {
        /// The key file.
        path: PathBuf,
        /// The underlying rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// Only one half of the CA (certificate or key) exists; regenerating it would
    /// silently invalidate every issued credential, so this is left to the user.
    #[error("incomplete certificate authority: {present} exists but {missing} does not")]
    IncompleteCa {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// A requested subject alternative name is neither an IP address nor a valid DNS name.
    #[error("invalid subject alternative name {name:?}")]
    InvalidSan {
        /// The rejected name.
        name: String,
    },
    /// The options passed to [`crate::Pki::ensure`] are unusable.
    #[error("invalid pki options: {0}")]
    InvalidOptions(String),
    /// A kubeconfig file is not valid YAML.
    #[error("invalid kubeconfig {path}")]
    KubeconfigParse {
        /// The kubeconfig file.
        path: PathBuf,
        /// The underlying YAML error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A kubeconfig file is valid YAML but does not have the kubeconfig shape.
    #[error("invalid kubeconfig {path}: {reason}")]
    KubeconfigShape {
        /// The kubeconfig file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn generate(what: impl Into<String>, source: rcgen::Error) -> Self {
        Error::Generate {
            what: what.into(),
            source,
        }
    }
}
