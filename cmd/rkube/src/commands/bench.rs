//! `rkube bench api|pods|runtimes|workloads`: prints figures from throw-away profiles.

use std::process::ExitCode;

/// Benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start time, idle memory, request latency/throughput and watch fan-out
    Api(ApiArgs),
    /// Pod startup latency through rkube and directly over CRI (same runtime)
    Pods(PodsArgs),
    /// cri-o/runc, cri-o/crun and containerd side by side: pod startup, idle
    /// memory, and raw `runc run`/`crun run` as the floor
    Runtimes(RuntimesArgs),
    /// Deployments of 10 and 100 replicas to Available next to bare pods, a
    /// rolling update, and the controller manager's memory
    Workloads(WorkloadsArgs),
}

/// Flags of `rkube bench workloads`.
#[derive(Debug, clap::Args)]
pub struct WorkloadsArgs {
    /// API server port of the throw-away profiles
    #[arg(long, default_value_t = 18646)]
    pub port: u16,
    /// Deployment sizes (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    pub sizes: Vec<usize>,
    /// Objects created for the loaded memory figure
    #[arg(long, default_value_t = 1000)]
    pub objects: usize,
}

/// Flags of `rkube bench runtimes`.
#[derive(Debug, clap::Args)]
pub struct RuntimesArgs {
    /// API server port of the throw-away profiles
    #[arg(long, default_value_t = 18645)]
    pub port: u16,
    /// Pods in the burst
    #[arg(long, default_value_t = 100)]
    pub burst: usize,
    /// Sequential single-pod runs
    #[arg(long, default_value_t = 10)]
    pub singles: usize,
    /// Pods running while idle memory is measured
    #[arg(long, default_value_t = 20)]
    pub idle_pods: usize,
    /// Backends to compare (comma-separated)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cri-o/runc,cri-o/crun,containerd,docker"
    )]
    pub runtimes: Vec<String>,
}

/// Flags of `rkube bench pods`.
#[derive(Debug, clap::Args)]
pub struct PodsArgs {
    /// API server port of the throw-away profile
    #[arg(long, default_value_t = 18644)]
    pub port: u16,
    /// Pods in the burst
    #[arg(long, default_value_t = 100)]
    pub burst: usize,
    /// Sequential single-pod runs
    #[arg(long, default_value_t = 10)]
    pub singles: usize,
    /// Runtime to measure: cri-o or containerd
    #[arg(long, default_value = "cri-o", value_parser = ["cri-o", "containerd"])]
    pub container_runtime: String,
}

/// Flags of `rkube bench api`.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// API server port of the throw-away profile
    #[arg(long, default_value_t = 18643)]
    pub port: u16,
    /// Requests per measurement
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
}

pub async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Api(a) => {
            let opts = rkube_bench::ApiBenchOptions {
                binary: rkube_bench::current_binary()?,
                port: a.port,
                requests: a.requests,
            };
            rkube_bench::run_api(opts).await?;
        }
        Command::Pods(a) => {
            let opts = rkube_bench::pod_bench::PodBenchOptions {
                binary: rkube_bench::current_binary()?,
                port: a.port,
                burst: a.burst,
                singles: a.singles,
                runtime: a.container_runtime,
            };
            rkube_bench::pod_bench::run_pods(opts).await?;
        }
        Command::Runtimes(a) => {
            let opts = rkube_bench::runtime_bench::RuntimeBenchOptions {
                binary: rkube_bench::current_binary()?,
                port: a.port,
                burst: a.burst,
                singles: a.singles,
                idle_pods: a.idle_pods,
                runtimes: a.runtimes,
            };
            rkube_bench::runtime_bench::run_runtimes(opts).await?;
        }
        Command::Workloads(a) => {
            let opts = rkube_bench::workload_bench::WorkloadBenchOptions {
                binary: rkube_bench::current_binary()?,
                port: a.port,
                sizes: a.sizes,
                objects: a.objects,
            };
            rkube_bench::workload_bench::run_workloads(opts).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
