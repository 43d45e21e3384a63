//! `rkube delete`.

use std::process::ExitCode;

/// Flags of `rkube delete`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    profile: super::ProfileArg,
    /// Delete every profile
    #[arg(long)]
    all: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    rkube_launcher::delete::run(&a.profile.profile, a.all)?;
    Ok(ExitCode::SUCCESS)
}
