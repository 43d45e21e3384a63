//! `rkube profile`.

use std::process::ExitCode;

/// Subcommands of `rkube profile`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List profiles and their state
    List,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::List => rkube_launcher::list::run()?,
    }
    Ok(ExitCode::SUCCESS)
}
