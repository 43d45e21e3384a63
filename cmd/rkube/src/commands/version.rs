//! `rkube version`.

use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    println!("rkube v{}", rkube_launcher::VERSION);
    println!("Kubernetes {}", rkube_launcher::KUBERNETES_VERSION);
    Ok(ExitCode::SUCCESS)
}
