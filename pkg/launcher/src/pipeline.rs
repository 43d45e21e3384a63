//! The start pipeline: an ordered list of small [`Step`]s (like kind's
//! actions) run against one [`Context`]. Each step is idempotent, so the
//! `start` client can run the quick preparation steps itself (to print their
//! durations) and the daemon can then run the whole list.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use rkube_host::PidFile;
use rkube_pki::{Pki, PkiOptions};

use crate::console::Reporter;
pub use crate::context::{server_url, Context};
use crate::profile::Datastore;
use crate::{manifests, Error, Result, KUBERNETES_VERSION};

/// Issuer of ServiceAccount tokens.
pub const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// One step of the start pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the profile directories.
    Dirs,
    /// Create or load the CA and certificates.
    Certificates,
    /// Point the user's kubeconfig (and the profile's own) at the cluster.
    Kubeconfig,
    /// Open the datastore.
    Store,
    /// Start the API server and apply the bootstrap manifests.
    ApiServer,
    /// Record the daemon's pid.
    PidFile,
    /// Start the controller manager.
    ControllerManager,
    /// Write the CNI network configuration.
    Network,
    /// Start (or reuse) the container runtime.
    Runtime,
    /// Import rkube's pause image.
    PauseImage,
    /// Start the scheduler.
    Scheduler,
    /// Start the node agent.
    NodeAgent,
}

impl Step {
    /// Every step, in order.
    pub const ALL: &'static [Step] = &[
        Step::Dirs,
        Step::Certificates,
        Step::Kubeconfig,
        Step::Store,
        Step::ApiServer,
        Step::PidFile,
        Step::ControllerManager,
        Step::Network,
        Step::Runtime,
        Step::PauseImage,
        Step::Scheduler,
        Step::NodeAgent,
    ];

    /// The quick steps `start` runs before spawning the daemon.
    pub const PREPARE: &'static [Step] = &[Step::Dirs, Step::Certificates, Step::Kubeconfig];

    /// Title shown in progress output.
    pub fn title(self) -> &'static str {
        match self {
            Step::Dirs => "Profile directories",
            Step::Certificates => "Certificates",
            Step::Kubeconfig => "Kubeconfig",
            Step::Store => "Datastore",
            Step::ApiServer => "API server",
            Step::PidFile => "Pid file",
            Step::ControllerManager => "Controller manager",
            Step::Network => "Pod network (CNI)",
            Step::Runtime => "Container runtime",
            Step::PauseImage => "Pause image",
            Step::Scheduler => "Scheduler",
            Step::NodeAgent => "Node agent",
        }
    }

    /// Icon shown in progress output.
    pub fn icon(self) -> &'static str {
        match self {
            Step::Dirs => "📁",
            Step::Certificates => "🔑",
            Step::Kubeconfig => "📝",
            Step::Store => "💾",
            Step::ApiServer => "🚀",
            Step::PidFile => "📌",
            Step::ControllerManager => "🎛️ ",
            Step::Network => "🔗",
            Step::Runtime => "📦",
            Step::PauseImage => "⏸️ ",
            Step::Scheduler => "🗓️ ",
            Step::NodeAgent => "🤖",
        }
    }

    /// Runs the step.
    pub async fn run(self, ctx: &mut Context) -> Result<()> {
        match self {
            Step::Dirs => ctx.profile.create_dirs(),
            Step::Certificates => certificates(ctx),
            Step::Kubeconfig => kubeconfig(ctx),
            Step::Store => open_store(ctx),
            Step::ApiServer => apiserver(ctx).await,
            Step::PidFile => Ok(PidFile::current().write(&ctx.profile.pid_file())?),
            Step::ControllerManager => crate::node::controller_manager(ctx).await,
            Step::Network => crate::node::network(ctx),
            Step::Runtime => crate::node::runtime(ctx).await,
            Step::PauseImage => crate::node::pause_image(ctx).await,
            Step::Scheduler => crate::node::scheduler(ctx).await,
            Step::NodeAgent => crate::node::node_agent(ctx).await,
        }
    }
}

/// Runs `steps` in order, reporting each one's duration.
pub async fn run(ctx: &mut Context, steps: &[Step], reporter: &mut dyn Reporter) -> Result<()> {
    for step in steps {
        let started = Instant::now();
        tracing::debug!(step = step.title(), "running step");
        step.run(ctx).await?;
        reporter.step_done(step.icon(), step.title(), started.elapsed());
    }
    Ok(())
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(Error::io("read", path))
}

fn certificates(ctx: &mut Context) -> Result<()> {
    let opts = PkiOptions::new(ctx.config.node_name.clone());
    let (pki, report) = Pki::ensure(&ctx.profile.pki_dir(), &opts).map_err(Error::Pki)?;
    if report.changed() {
        tracing::info!("certificates: {report}");
    }
    ctx.pki = Some(pki);
    Ok(())
}

fn pki(ctx: &mut Context) -> Result<&Pki> {
    if ctx.pki.is_none() {
        certificates(ctx)?;
    }
    Ok(ctx.pki.as_ref().expect("certificates step ran"))
}

fn kubeconfig(ctx: &mut Context) -> Result<()> {
    let name = ctx.profile.name().to_string();
    let server = ctx.server_url();
    let standalone = ctx.profile.kubeconfig_file();
    let pki = pki(ctx)?;
    for path in [rkube_pki::kubeconfig::default_path(), standalone] {
        pki.merge_admin_kubeconfig(&path, &name, &server)
            .map_err(|source| Error::Kubeconfig { path, source })?;
    }
    Ok(())
}

fn open_store(ctx: &mut Context) -> Result<()> {
    match ctx.config.datastore {
        Datastore::Embedded => {
            let path = ctx.profile.store_file();
            let store = rkube_store::embedded::EmbeddedStore::open(&path, Default::default())?;
            ctx.store = Some(Arc::new(store));
            Ok(())
        }
        Datastore::Etcd => Err(Error::EtcdUnavailable),
    }
}

async fn apiserver(ctx: &mut Context) -> Result<()> {
    let store = match &ctx.store {
        Some(s) => s.clone(),
        None => {
            open_store(ctx)?;
            ctx.store.clone().expect("store step ran")
        }
    };
    let port = ctx.config.apiserver_port;
    let pki = pki(ctx)?;
    let cfg = rkube_apiserver::Config {
        bind: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
        serving_cert_pem: read(&pki.apiserver_cert_path())?,
        serving_key_pem: read(&pki.apiserver_key_path())?,
        client_ca_pem: read(&pki.ca_cert_path())?,
        sa_signing_key_pem: read(&pki.sa_key_path())?,
        sa_public_key_pem: read(&pki.sa_pub_path())?,
        store,
        git_version: KUBERNETES_VERSION.to_string(),
        sa_issuer: SA_ISSUER.to_string(),
        kubelet_client_cert_pem: read(&pki.apiserver_kubelet_client_cert_path())?,
        kubelet_client_key_pem: read(&pki.apiserver_kubelet_client_key_path())?,
    };
    let bootstrap = manifests::bootstrap_objects()?;
    let running = rkube_apiserver::start(cfg, bootstrap)
        .await
        .map_err(|e| match e {
            rkube_apiserver::Error::Bind { source, .. }
                if source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                Error::PortInUse { port }
            }
            e => Error::ApiServer(e),
        })?;
    tracing::info!(addr = %running.local_addr, "api server listening");
    ctx.apiserver = Some(running);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Profile, ProfileConfig};

    #[test]
    fn steps_are_ordered_and_prepare_is_a_prefix() {
        assert_eq!(Step::ALL.first(), Some(&Step::Dirs));
        assert_eq!(Step::ALL.last(), Some(&Step::NodeAgent));
        assert!(Step::ALL.starts_with(Step::PREPARE));
        let api = Step::ALL
            .iter()
            .position(|s| *s == Step::ApiServer)
            .unwrap();
        let store = Step::ALL.iter().position(|s| *s == Step::Store).unwrap();
        assert!(store < api);
    }

    #[tokio::test]
    async fn etcd_datastore_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let profile = Profile::in_home(home.path(), "dev").unwrap();
        let mut cfg = ProfileConfig::new_default();
        cfg.datastore = Datastore::Etcd;
        let mut ctx = Context::new(profile, cfg);
        let err = Step::Store.run(&mut ctx).await.unwrap_err();
        assert!(err
            .to_string()
            .contains("etcd datastore is not available yet"));
    }
}
