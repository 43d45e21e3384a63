//! rkube's dockershim (`rkube start --container-runtime=docker`): a CRI v1
//! server that runs pods on a real dockerd through the Docker Engine API
//! (bollard), the way cri-dockerd does. The node agent keeps speaking only
//! CRI.
//!
//! - A sandbox is a pause container with no docker network; its network
//!   namespace is pinned under the shim's root and wired by the profile's
//!   CNI conflist (the code the other backends use). App containers join
//!   its network, IPC and (when shared) PID namespaces (`container:<id>`).
//! - CRI metadata lives in Docker labels ([`labels`]), so the shim keeps no
//!   state of its own: after rkube restarts it answers from dockerd alone
//!   and running containers keep their IDs.
//! - Container output is copied from Docker's log stream into the
//!   CRI-format log files the node agent reads ([`logs`]).
//! - Exec, attach and port-forward go through the shared streaming server.
//!
//! [`Dockerd`] runs the profile's own dockerd; [`serve`] serves CRI.

use std::path::{Path, PathBuf};

mod config;
mod container;
mod convert;
mod dockerd;
mod images;
pub mod labels;
mod logs;
mod sandbox;
mod server;
mod service;
mod shim;
mod stats;
mod stream;

pub use config::ShimConfig;
pub use dockerd::{connect, Dockerd, DockerdOptions};
pub use images::{list as list_images, load as load_images, remove as remove_image};
pub use server::{serve, Running};

/// The runtime name reported by Version (so containerIDs are
/// `docker://<id>` and the node shows `docker://<dockerd version>`).
pub const RUNTIME_NAME: &str = "docker";

/// Errors of the dockershim. Messages say what to fix. The CRI services
/// return them as gRPC statuses through `From<Error> for tonic::Status`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A required host program is missing.
    #[error("{0} not found; install it with `apt-get install {1}`")]
    Missing(String, &'static str),
    /// dockerd did not start or answer.
    #[error("dockerd {message}; see {log}:\n{tail}")]
    Daemon {
        /// What went wrong.
        message: String,
        /// dockerd's log file.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// A host operation (process, mount, pid file) failed.
    #[error(transparent)]
    Host(#[from] rkube_host::Error),
    /// The Docker Engine API refused a call.
    #[error("docker: {0}")]
    Docker(String),
    /// The CRI socket could not be served.
    #[error("cannot serve CRI on {path}: {message}")]
    Serve {
        /// Socket path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// A sandbox, container or image does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A sandbox with that name exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The call did not finish in time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The call is not supported by docker.
    #[error("{0}")]
    Unimplemented(String),
    /// CNI or a pod's set-up failed.
    #[error("{0}")]
    Runtime(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was attempted and on which path.
    pub(crate) fn io(
        action: &'static str,
        path: impl AsRef<Path>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

impl From<bollard::errors::Error> for Error {
    fn from(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError {
                status_code: 404,
                message,
            } => Error::NotFound(message),
            B::DockerResponseServerError {
                status_code: 409,
                message,
            } => Error::FailedPrecondition(message),
            B::DockerResponseServerError {
                status_code: 400,
                message,
            } => Error::InvalidArgument(message),
            other => Error::Docker(other.to_string()),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            Error::NotFound(_) => tonic::Status::not_found(message),
            Error::AlreadyExists(_) => tonic::Status::already_exists(message),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            Error::DeadlineExceeded(_) => tonic::Status::deadline_exceeded(message),
            Error::Unimplemented(_) => tonic::Status::unimplemented(message),
            Error::Runtime(_) | Error::Docker(_) => tonic::Status::unknown(message),
            Error::Io { .. }
            | Error::Missing(..)
            | Error::Host(_)
            | Error::Daemon { .. }
            | Error::Serve { .. } => tonic::Status::internal(message),
        }
    }
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Nanoseconds since the epoch of one of Docker's RFC 3339 times (0 for
/// Docker's zero time `0001-01-01T00:00:00Z` or anything unparsable).
pub(crate) fn docker_time(s: Option<&str>) -> i64 {
    s.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .and_then(|t| t.timestamp_nanos_opt())
        .filter(|n| *n > 0)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn errors_map_to_grpc_codes() {
        let code = |e: Error| tonic::Status::from(e).code();
        assert_eq!(code(Error::NotFound("x".into())), Code::NotFound);
        assert_eq!(code(Error::Docker("x".into())), Code::Unknown);
        let e: Error = bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "No such container: abc".into(),
        }
        .into();
        assert_eq!(code(e), Code::NotFound);
    }

    #[test]
    fn docker_times() {
        assert_eq!(docker_time(Some("0001-01-01T00:00:00Z")), 0);
        assert_eq!(
            docker_time(Some("2026-12-04T20:33:42.088408633Z")),
            1_796_416_422_088_408_633
        );
        assert_eq!(docker_time(None), 0);
    }
}
