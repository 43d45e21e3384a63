//! `rkube delete`: stop the profile, remove its directory and its entries
//! from the user's kubeconfig.

use rkube_host::Procfs;

use crate::backend;
use crate::profile::{Profile, ProfileConfig};
use crate::{stop, Error, Result};

/// Stops and deletes `profile`; returns whether its directory existed.
pub fn delete(profile: &Profile, kubeconfig: &std::path::Path) -> Result<bool> {
    let existed = profile.exists();
    if existed {
        stop::stop(profile, &Procfs::default(), stop::GRACE)?;
        remove_runtime_state(profile);
        // Pod volumes (tmpfs for secrets and tokens) live under the profile too.
        if let Err(e) = rkube_host::mount::unmount_under(profile.dir()) {
            tracing::warn!("unmounting pod volumes: {e}");
        }
        std::fs::remove_dir_all(profile.dir()).map_err(Error::io("remove", profile.dir()))?;
    }
    rkube_pki::kubeconfig::remove(kubeconfig, profile.name()).map_err(|source| {
        Error::Kubeconfig {
            path: kubeconfig.to_path_buf(),
            source,
        }
    })?;
    Ok(existed)
}

/// Runs `rkube delete` for one profile, or every profile with `all`.
pub fn run(profile_name: &str, all: bool) -> Result<()> {
    let kubeconfig = rkube_pki::kubeconfig::default_path();
    let profiles = if all {
        Profile::list()?
    } else {
        vec![Profile::new(profile_name)?]
    };
    if all && profiles.is_empty() {
        println!("🤷  No profiles to delete");
    }
    for profile in profiles {
        if delete(&profile, &kubeconfig)? {
            println!("🔥  Deleted profile \"{}\"", profile.name());
        } else {
            println!(
                "🤷  Profile \"{}\" does not exist; removed its kubeconfig entries if any",
                profile.name()
            );
        }
    }
    Ok(())
}

/// Removes the pods and state of every runtime backend that left some in
/// the profile (shims, sandboxes and mounts survive `stop` on purpose so
/// pods outlive restarts).
fn remove_runtime_state(profile: &Profile) {
    let config = match profile.load_config() {
        Ok(c) => c.unwrap_or_else(ProfileConfig::new_default),
        Err(e) => {
            tracing::warn!("{e}");
            ProfileConfig::new_default()
        }
    };
    let backends = backend::with_state(profile, &config);
    let run = async move {
        for mut backend in backends {
            if let Err(e) = backend.delete().await {
                tracing::warn!("cleaning up the container runtime: {e}");
            }
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => tokio::task::block_in_place(|| h.block_on(run)),
        Err(_) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(run),
            Err(e) => tracing::warn!("cannot clean up the container runtime: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_dir_and_kubeconfig_entries() {
        let home = tempfile::tempdir().unwrap();
        let kc = home.path().join("kubeconfig");
        let profile = Profile::in_home(home.path(), "dev").unwrap();
        profile.create_dirs().unwrap();
        rkube_pki::kubeconfig::merge(&kc, "dev", "https://127.0.0.1:1", "ca", "cert", "key")
            .unwrap();
        rkube_pki::kubeconfig::merge(&kc, "keep", "https://127.0.0.1:2", "ca", "cert", "key")
            .unwrap();
        assert!(delete(&profile, &kc).unwrap());
        assert!(!profile.dir().exists());
        let text = std::fs::read_to_string(&kc).unwrap();
        assert!(
            !text.contains("name: dev") && text.contains("name: keep"),
            "{text}"
        );
        assert!(!delete(&profile, &kc).unwrap());
    }
}
