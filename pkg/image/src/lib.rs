//! Local container images for rkube, built without a registry.
//!
//! rkube ships its own pause program (compiled statically from
//! `pause/pause.c` at build time and embedded in the binary) and writes
//! images as single tar archives that are at the same time an OCI image
//! layout and a docker-archive, the way `docker save` of Docker 25+ does.
//! Such a file loads with `ctr images import`, `docker load`, `podman load`
//! and `skopeo copy oci-archive:`/`docker-archive:`.
//!
//! - [`pause_binary`], [`write_pause_archive`]: the sandbox image.
//! - [`write_busybox_archive`]: a test image from Debian's static busybox.
//! - [`busybox_entries`], [`busybox_config`]: its files and config, for images built on it.
//! - [`write_httpd_archive`]: the same image serving /var/www with httpd (an nginx stand-in).
//! - [`write_image_archive`]: any single-layer image from [`LayerEntry`]s.
//! - [`read_archive_refs`]: which references an archive (or layout dir) holds.

mod archive;
mod busybox;
mod layer;
mod pause;
mod reference;
mod spec;

pub use archive::{read_archive_refs, write_image_archive, ImageConfigSpec, ImageInfo};
pub use busybox::{
    busybox_config, busybox_entries, write_busybox_archive, write_httpd_archive, BUSYBOX_APPLETS,
};
pub use layer::{LayerEntry, FIXED_MTIME};
pub use pause::{pause_binary, write_pause_archive, PAUSE_IMAGE, PAUSE_VERSION};
pub use reference::{normalize_reference, reference_tag};

use std::path::PathBuf;

/// Errors from building or reading image archives.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Encoding or decoding an image JSON document failed.
    #[error("image json {what}")]
    Json {
        /// Which document.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// An image reference is not valid (or not tagged where a tag is needed).
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A layer entry path is empty, absolute after cleaning, or escapes the root.
    #[error("invalid layer path {0:?}")]
    InvalidPath(String),
    /// An archive has neither index.json nor manifest.json.
    #[error("{0} is not an OCI or docker image archive (no index.json or manifest.json)")]
    NotAnArchive(PathBuf),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn json(what: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| Self::Json { what, source }
    }
}
