//! `rkube logs`.

use std::process::ExitCode;

/// Flags of `rkube logs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    profile: super::ProfileArg,
    /// Keep printing new lines
    #[arg(short, long)]
    follow: bool,
    /// Print only the last N lines
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    rkube_launcher::logs::run(&a.profile.profile, a.tail, a.follow).await?;
    Ok(ExitCode::SUCCESS)
}
