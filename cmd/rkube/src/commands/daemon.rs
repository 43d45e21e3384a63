//! `rkube daemon` (hidden): the background process `start` spawns.

use std::process::ExitCode;

use rkube_launcher::console::LogReporter;
use rkube_launcher::profile::Profile;

pub async fn run(a: super::ProfileArg) -> anyhow::Result<ExitCode> {
    let profile = Profile::new(&a.profile)?;
    rkube_launcher::daemon::run(profile, &mut LogReporter).await?;
    Ok(ExitCode::SUCCESS)
}
