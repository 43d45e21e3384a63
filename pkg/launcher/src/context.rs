//! The state the start [`crate::pipeline`] steps share: the profile and its
//! settings, then what each step brings up (certificates, datastore, API
//! server, container runtime, agent tasks). Defined apart from the pipeline
//! so that the step implementations ([`crate::node`]) depend on this module,
//! not on the pipeline that calls them.

use std::sync::Arc;

use rkube_apiserver::Running;
use rkube_pki::Pki;
use rkube_store::Store;

use crate::backend::Backend;
use crate::profile::{Profile, ProfileConfig};

/// State shared by the steps.
pub struct Context {
    /// The profile being started.
    pub profile: Profile,
    /// Its settings.
    pub config: ProfileConfig,
    /// Certificates, after [`Step::Certificates`](crate::pipeline::Step::Certificates).
    pub pki: Option<Pki>,
    /// Datastore, after [`Step::Store`](crate::pipeline::Step::Store).
    pub store: Option<Arc<dyn Store>>,
    /// The API server, after [`Step::ApiServer`](crate::pipeline::Step::ApiServer).
    pub apiserver: Option<Running>,
    /// The container runtime, after [`Step::Runtime`](crate::pipeline::Step::Runtime).
    pub backend: Option<Box<dyn Backend>>,
    /// Tells the scheduler and node agent to stop.
    pub agents_shutdown: tokio::sync::watch::Sender<bool>,
    /// The scheduler and node agent tasks.
    pub agents: Vec<tokio::task::JoinHandle<()>>,
}

impl Context {
    /// A context for `profile` with `config`.
    pub fn new(profile: Profile, config: ProfileConfig) -> Self {
        Self {
            profile,
            config,
            pki: None,
            store: None,
            apiserver: None,
            backend: None,
            agents_shutdown: tokio::sync::watch::channel(false).0,
            agents: Vec::new(),
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> String {
        server_url(self.config.apiserver_port)
    }
}

/// `https://127.0.0.1:<port>`.
pub fn server_url(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_is_loopback() {
        assert_eq!(server_url(18443), "https://127.0.0.1:18443");
    }
}
