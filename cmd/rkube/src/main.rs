//! `rkube`: a single-node Kubernetes in one binary. This crate only parses
//! the command line and sets up logging; every verb lives in
//! `rkube_launcher`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// A single-node Kubernetes in one binary.
#[derive(Debug, Parser)]
#[command(name = "rkube", version = rkube_launcher::VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a cluster (creating the profile if needed)
    Start(commands::start::Args),
    /// Stop a running cluster
    Stop(commands::ProfileArg),
    /// Stop a cluster and delete its state and kubeconfig entries
    Delete(commands::delete::Args),
    /// Show whether the cluster runs; exit code 0 only when it does
    Status(commands::status::Args),
    /// Print the cluster's log
    Logs(commands::logs::Args),
    /// Print the rkube and Kubernetes versions
    Version,
    /// Print the environment that points the docker CLI at a docker profile's
    /// dockerd: eval $(rkube docker-env)
    DockerEnv(commands::docker_env::Args),
    /// Load, list and remove images in a cluster's container runtime
    #[command(subcommand)]
    Image(commands::image::Command),
    /// Manage profiles
    #[command(subcommand)]
    Profile(commands::profile::Command),
    /// Benchmarks that print figures
    #[command(subcommand)]
    Bench(commands::bench::Command),
    /// Run a profile in this process (used by `start`)
    #[command(hide = true)]
    Daemon(commands::ProfileArg),
}

/// Sets up tracing to stderr: `info` for the daemon, `warn` for the verbs
/// (their output is for people); `RUST_LOG` overrides both.
fn init_tracing(daemon: bool) {
    let default = if daemon { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!daemon)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Command::Daemon(_))
        || matches!(&cli.command, Command::Start(a) if a.foreground);
    init_tracing(daemon);
    let result = match cli.command {
        Command::Start(args) => commands::start::run(args).await,
        Command::Stop(args) => commands::stop::run(args),
        Command::Delete(args) => commands::delete::run(args),
        Command::Status(args) => commands::status::run(args).await,
        Command::Logs(args) => commands::logs::run(args).await,
        Command::Version => commands::version::run(),
        Command::Image(cmd) => commands::image::run(cmd).await,
        Command::DockerEnv(args) => commands::docker_env::run(args),
        Command::Profile(cmd) => commands::profile::run(cmd),
        Command::Daemon(args) => commands::daemon::run(args).await,
        Command::Bench(cmd) => commands::bench::run(cmd).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("❌  {e:#}");
            ExitCode::FAILURE
        }
    }
}
