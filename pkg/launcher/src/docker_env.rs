//! `rkube docker-env`: the shell environment that points the docker CLI at
//! a profile's dockerd (`eval $(rkube docker-env)`), as `minikube
//! docker-env` does, so images built with `docker build` are in the
//! cluster's runtime as they are.

use crate::backend::docker;
use crate::profile::{ContainerRuntime, Profile, ProfileConfig};

/// Errors of `rkube docker-env`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The profile cannot be read.
    #[error(transparent)]
    Profile(#[from] crate::Error),
    /// The profile does not run docker.
    #[error("profile {profile} uses the {runtime} container runtime; docker-env needs a profile started with --container-runtime=docker")]
    NotDocker {
        /// The profile.
        profile: String,
        /// Its runtime.
        runtime: ContainerRuntime,
    },
}

/// The `export` lines (or `unset` lines with `unset`) for a profile.
pub fn render(profile: &Profile, config: &ProfileConfig, unset: bool) -> Result<String, Error> {
    if unset {
        return Ok("unset DOCKER_HOST\nunset RKUBE_ACTIVE_DOCKERD\n".to_string());
    }
    if config.container_runtime != ContainerRuntime::Docker || config.cri_socket.is_some() {
        return Err(Error::NotDocker {
            profile: profile.name().to_string(),
            runtime: config.container_runtime,
        });
    }
    let host = match &config.docker_host {
        Some(h) => h.clone(),
        None => format!("unix://{}", docker::own_socket(profile).display()),
    };
    Ok(format!(
        "export DOCKER_HOST=\"{host}\"\nexport RKUBE_ACTIVE_DOCKERD=\"{name}\"\n\
         # To point your shell to rkube's docker, run:\n# eval $(rkube docker-env --profile {name})\n",
        name = profile.name()
    ))
}

/// [`render`] for a profile by name.
pub fn run(profile_name: &str, unset: bool) -> Result<String, Error> {
    let profile = Profile::new(profile_name)?;
    let config = profile.require_config()?;
    render(&profile, &config, unset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_the_profile_socket() {
        let home = tempfile::tempdir().unwrap();
        let p = Profile::in_home(home.path(), "dev").unwrap();
        let mut cfg = ProfileConfig::new_default();
        let err = render(&p, &cfg, false).unwrap_err().to_string();
        assert!(err.contains("--container-runtime=docker"), "{err}");
        cfg.container_runtime = ContainerRuntime::Docker;
        let out = render(&p, &cfg, false).unwrap();
        let want = format!(
            "export DOCKER_HOST=\"unix://{}\"",
            home.path()
                .join("profiles/dev/docker/docker.sock")
                .display()
        );
        assert!(out.starts_with(&want), "{out}");
        assert!(render(&p, &cfg, true)
            .unwrap()
            .contains("unset DOCKER_HOST"));
    }
}
