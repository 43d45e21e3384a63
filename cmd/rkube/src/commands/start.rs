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
    /// Container runtime: cri-o, containerd or docker [default: cri-o, or the profile's]
    #[arg(long)]
    container_runtime: Option<ContainerRuntime>,
    /// Datastore: embedded or etcd [default: embedded, or the profile's]
    #[arg(long)]
    datastore: Option<Datastore>,
    /// Node name [default: the host name, or the profile's]
    #[arg(long)]
    node_name: Option<String>,
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
        },
        foreground: a.foreground,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
