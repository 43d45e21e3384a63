//! What rkube needs from the host, shared by the launcher and the runtime
//! backends: a view of `/proc` ([`procfs`]), pid files ([`pidfile`]),
//! processes started detached and stopped with SIGTERM then SIGKILL
//! ([`process`]), mount points from `mountinfo` ([`mount`]), program lookup
//! in an extended `PATH` ([`path`]) and registry mirror settings
//! ([`registry`]).

use std::path::PathBuf;

pub mod mount;
pub mod path;
pub mod pidfile;
pub mod process;
pub mod procfs;
pub mod registry;

pub use path::which;
pub use pidfile::PidFile;
pub use procfs::Procfs;
pub use registry::Mirror;

/// Errors of host operations. Messages say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Sending a signal failed.
    #[error("cannot signal pid {pid}")]
    Signal {
        /// The process.
        pid: i32,
        /// Cause.
        #[source]
        source: nix::errno::Errno,
    },
    /// A process survived SIGKILL.
    #[error("process {pid} did not exit after SIGKILL; kill it by hand")]
    Unkillable {
        /// The process.
        pid: i32,
    },
    /// A registry mirror is malformed.
    #[error("invalid registry mirror {endpoint:?} for {host:?}: {reason}")]
    InvalidMirror {
        /// Registry host being mirrored.
        host: String,
        /// The endpoint.
        endpoint: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was attempted and on which path.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
