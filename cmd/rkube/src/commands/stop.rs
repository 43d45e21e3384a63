//! `rkube stop`.

use std::process::ExitCode;

pub fn run(a: super::ProfileArg) -> anyhow::Result<ExitCode> {
    rkube_launcher::stop::run(&a.profile)?;
    Ok(ExitCode::SUCCESS)
}
