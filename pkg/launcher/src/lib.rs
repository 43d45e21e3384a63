//! The rkube launcher: everything between the `rkube` command line and the
//! components. It owns the on-disk profile layout, runs the ordered start
//! [`pipeline`] (profile dirs → certificates → kubeconfig → store → API
//! server → pid file → network → container runtime → pause image →
//! scheduler → node agent) inside the detached daemon, and implements the
//! `start`, `stop`, `delete`, `status`, `logs` and `image` verbs on top of
//! it. The container runtime is reached only through one [`backend::Backend`].
//! Only this crate knows every component; only `cmd/rkube` knows this crate.

use std::path::PathBuf;

pub mod backend;
pub mod console;
pub mod context;
pub mod daemon;
pub mod delete;
pub mod docker_env;
pub mod image;
pub mod list;
pub mod logs;
pub mod manifests;
pub mod node;
pub mod pipeline;
pub mod probe;
pub mod profile;
pub mod start;
pub mod status;
pub mod stop;
pub mod timing;

/// Checks a `--controllers` list (see [`rkube_controllers::select`]).
pub use rkube_controllers::select as select_controllers;

/// Version of rkube itself.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Kubernetes version reported by the API server at `/version`.
pub const KUBERNETES_VERSION: &str = "v1.33.0-rkube.1";

/// Default API server port.
pub const DEFAULT_APISERVER_PORT: u16 = 8443;

/// Default profile name.
pub const DEFAULT_PROFILE: &str = "rkube";

/// Errors of the launcher. Every message tells the user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The profile name is not a DNS-1123 label.
    #[error("invalid profile name {name:?}: {reason}; use at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit")]
    InvalidProfileName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Neither `RKUBE_HOME` nor `HOME` is set.
    #[error("cannot find the rkube state directory: set RKUBE_HOME or HOME")]
    NoHome,
    /// A file system operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was attempted, e.g. "create directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The profile config file cannot be parsed.
    #[error("profile config {path} is invalid; fix it or run `rkube delete --profile {profile}`")]
    Config {
        /// Profile name.
        profile: String,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The profile does not exist.
    #[error("profile {0:?} does not exist; create it with `rkube start --profile {0}`")]
    NoSuchProfile(String),
    /// The node side (runtime, network, node agent, scheduler) failed to start.
    #[error("{0}")]
    Node(String),
    /// The requested datastore is not implemented yet.
    #[error("the etcd datastore is not available yet; use --datastore embedded")]
    EtcdUnavailable,
    /// The API server port is taken.
    #[error("port {port} is already in use; stop whatever listens there or choose another port with --apiserver-port")]
    PortInUse {
        /// The port.
        port: u16,
    },
    /// The API server port cannot be bound for another reason.
    #[error("cannot listen on port {port}; choose another port with --apiserver-port")]
    PortUnavailable {
        /// The port.
        port: u16,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The node name is not a DNS-1123 label.
    #[error("invalid node name {0:?}; pass --node-name with lowercase letters, digits and '-'")]
    InvalidNodeName(String),
    /// An embedded manifest does not parse.
    #[error("embedded manifest {file} document {index}: {reason}")]
    Manifest {
        /// File name under manifests/.
        file: String,
        /// Zero-based document index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// Certificates could not be created or loaded.
    #[error("cannot prepare certificates (deleting the profile's pki directory regenerates them)")]
    Pki(#[source] rkube_pki::Error),
    /// The kubeconfig could not be updated.
    #[error(
        "cannot update kubeconfig {path}; fix or remove that file, or point KUBECONFIG elsewhere"
    )]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rkube_pki::Error,
    },
    /// The datastore could not be opened.
    #[error("cannot open the datastore (is another rkube using this profile? if its data is corrupt, `rkube delete` the profile)")]
    Store(#[from] rkube_store::Error),
    /// The API server failed to start.
    #[error("the API server failed to start")]
    ApiServer(#[source] rkube_apiserver::Error),
    /// Spawning the background daemon failed.
    #[error("cannot start the rkube daemon {exe}")]
    Spawn {
        /// The executable.
        exe: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The daemon exited before the API server became ready.
    #[error("rkube daemon exited ({status}) before the API server was ready; last lines of {log}:\n{tail}")]
    DaemonExited {
        /// Exit status.
        status: String,
        /// The log file.
        log: PathBuf,
        /// Last lines of the log of this run.
        tail: String,
    },
    /// The API server did not become ready in time.
    #[error("the API server was not ready after {secs}s; see `rkube logs --profile {profile}`")]
    NotReady {
        /// Profile.
        profile: String,
        /// Seconds waited.
        secs: u64,
    },
    /// Building the HTTPS client for readiness probes failed.
    #[error("cannot build the readiness probe client (is the profile's pki/ca.crt valid?)")]
    ProbeClient(#[source] reqwest::Error),
    /// A host operation (pid file, process) failed.
    #[error(transparent)]
    Host(#[from] rkube_host::Error),
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
