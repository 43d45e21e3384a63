//! On-disk OCI image store and registry puller of rkube's bundled runtime.
//!
//! Layout under the root: `blobs/sha256/<hex>` (content-addressed
//! manifests, configs and layer blobs), `layers/<chain id>/` (each layer
//! unpacked once, in overlayfs format, ready to be a lowerdir),
//! `images/<id>.json` (one record per image: names, digests, layer chain)
//! and `tmp/`. Every write goes to `tmp/` first and is renamed into place,
//! so an interrupted pull leaves nothing half-visible, and another process
//! (`rkube image load`) can import while the runtime reads: records are
//! read from disk on every lookup.

mod import;
mod pull;
mod reference;
mod store;
mod unpack;

pub use oci_spec::image::Config as ImageConfig;
pub use pull::{endpoints, Endpoint};
pub use pull::{Credentials, Puller, Registries};
pub use reference::{normalize, parse as parse_reference, Name};
pub use store::{Image, ImageStore, Usage};

/// Errors of the image store. Messages say what went wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference cannot be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// A pull failed; `message` is the registry's own answer.
    #[error("pulling {reference}: {message}")]
    Pull {
        /// The reference.
        reference: String,
        /// Why.
        message: String,
    },
    /// An archive or stored object is malformed.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path involved.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl AsRef<std::path::Path>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn invalid(path: impl AsRef<std::path::Path>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }
}
