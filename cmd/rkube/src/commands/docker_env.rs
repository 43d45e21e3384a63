//! `rkube docker-env`.

use std::process::ExitCode;

/// Flags of `rkube docker-env`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    profile: super::ProfileArg,
    /// Print the lines that undo it
    #[arg(short, long)]
    unset: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    print!(
        "{}",
        rkube_launcher::docker_env::run(&a.profile.profile, a.unset)?
    );
    Ok(ExitCode::SUCCESS)
}
