//! `rkube delete`: stop the profile, remove its directory and its entries
//! from the user's kubeconfig.

use crate::profile::Profile;
use crate::{stop, Error, Result};
use rkube_host::Procfs;

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

/// Stops the profile's containers and unmounts the runtime's state (shims,
/// sandboxes and mounts survive `stop` on purpose so pods outlive restarts).
fn remove_runtime_state(profile: &Profile) {
    let containerd_dir = crate::node::containerd_dir(profile);
    let crio_dir = crate::node::crio_dir(profile);
    let profile = profile.clone();
    let run = async move {
        if containerd_dir.exists() {
            let c = crate::node::containerd(&profile);
            // Sandboxes are torn down through CRI (CNI DEL releases IPs and
            // network namespaces), which needs containerd: start it again if
            // `stop` ended it.
            if let Err(e) = c.start().await {
                tracing::warn!("cannot start containerd to remove pods: {e}");
            }
            if let Err(e) = c.delete().await {
                tracing::warn!("cleaning up containerd: {e}");
            }
        }
        if crio_dir.exists() {
            if let Err(e) = crate::node::delete_crio(&profile).await {
                tracing::warn!("cleaning up the bundled runtime: {e}");
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
