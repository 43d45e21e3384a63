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
    /// OCI runtime of the bundled cri-o runtime: runc or crun [default: runc, or the profile's]
    #[arg(long, value_parser = ["runc", "crun"])]
    oci_runtime: Option<String>,
    /// Registry mirror HOST=URL[,URL...][,mirror-only], repeatable, e.g.
    /// docker.io=http://127.0.0.1:5000,mirror-only (mirror-only: never fall back to HOST itself)
    #[arg(long = "registry-mirror", value_name = "HOST=URL", value_parser = parse_mirror)]
    registry_mirrors: Vec<String>,
    /// Registry (HOST[:PORT]) to pull from over plain HTTP, repeatable
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Controllers to run, as kube-controller-manager's --controllers:
    /// `*` for all, `-name` to disable one, e.g. `*,-cronjob` [default: *, or the profile's]
    #[arg(long, value_delimiter = ',', value_parser = parse_controller)]
    controllers: Vec<String>,
    /// With --container-runtime=docker: use this dockerd (unix:///path) instead of
    /// starting the profile's own ("" to clear) [default: DOCKER_HOST, unless set by rkube docker-env]
    #[arg(long)]
    docker_host: Option<String>,
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
            oci_runtime: a.oci_runtime,
            registry_mirrors: (!a.registry_mirrors.is_empty()).then_some(a.registry_mirrors),
            insecure_registries: (!a.insecure_registries.is_empty())
                .then_some(a.insecure_registries),
            controllers: (!a.controllers.is_empty()).then_some(a.controllers),
            docker_host: a.docker_host,
        },
        foreground: a.foreground,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Checks a `--registry-mirror` value early, so a typo fails before start.
fn parse_mirror(s: &str) -> Result<String, String> {
    s.parse::<rkube_host::Mirror>()
        .map(|m| m.to_string())
        .map_err(|e| e.to_string())
}

/// Checks one `--controllers` entry early, so a typo fails before start.
fn parse_controller(s: &str) -> Result<String, String> {
    rkube_launcher::select_controllers(&[s.to_string()]).map(|_| s.to_string())
}
