//! `rkube status`.

use std::process::ExitCode;

/// Output formats of `rkube status`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Output {
    /// Human-readable text
    Text,
    /// One JSON object
    Json,
}

/// Flags of `rkube status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    profile: super::ProfileArg,
    /// Output format
    #[arg(short, long, value_enum, default_value = "text")]
    output: Output,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let json = matches!(a.output, Output::Json);
    let code = rkube_launcher::status::run(&a.profile.profile, json).await?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
