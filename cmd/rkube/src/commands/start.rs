//! `rkube start`.

use std::process::ExitCode;

use rkube_launcher::profile::{ContainerRuntime, Datastore, Overrides};
use rkube_launcher::start::{self, StartOptions};

/// Flags of `rkube start`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    profile: super::ProfileArg,
    /// Host port of the API server [default: 8443, or the profile's]
    #[arg(long)]
    apiserver_port: Option<u16>,
    /// Container runtime: containerd, cri-o or docker [default: containerd, or the profile's]
    #[arg(long)]
    container_runtime: Option<ContainerRuntime>,
    /// Datastore: embedded or etcd [default: embedded, or the profile's]
    #[arg(long)]
    datastore: Option<Datastore>,
    /// Node name [default: the host name, or the profile's]
    #[arg(long)]
    node_name: Option<String>,
    /// Use an already running CRI runtime, e.g. unix:///run/containerd/containerd.sock ("" to clear)
    #[arg(long)]
    cri_socket: Option<String>,
    /// Run only the control plane (API server), no node agent or runtime
    #[arg(long)]
    disable_agent: bool,
    /// Run the node agent again on a profile started with --disable-agent
    #[arg(long, conflicts_with = "disable_agent")]
    enable_agent: bool,
    /// Maximum number of pods on the node [default: 110, or the profile's]
    #[arg(long)]
    max_pods: Option<u32>,
    /// Run in this process instead of in the background
    #[arg(long)]
    pub foreground: bool,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    start::run(StartOptions {
        profile: a.profile.profile,
        overrides: Overrides {
            apiserver_port: a.apiserver_port,
            container_runtime: a.container_runtime,
            datastore: a.datastore,
            node_name: a.node_name,
            cri_socket: a.cri_socket,
            disable_agent: if a.disable_agent {
                Some(true)
            } else if a.enable_agent {
                Some(false)
            } else {
                None
            },
            max_pods: a.max_pods,
        },
        foreground: a.foreground,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
