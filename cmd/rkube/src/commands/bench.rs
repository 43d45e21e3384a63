//! `rkube bench api`: prints API server figures from a throw-away profile.

use std::process::ExitCode;

/// Benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start time, idle memory, request latency/throughput and watch fan-out
    Api(ApiArgs),
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
    }
    Ok(ExitCode::SUCCESS)
}
