//! Rebuilding the runtime's view after a restart (or kill -9) of rkube:
//! sandboxes and containers are read back from their directories and
//! checked against conmon's exit files and the OCI runtime; records left
//! half-created are torn down, and orphan mounts, network namespaces and
//! CNI leases (IP addresses) with no sandbox are released.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::service::Crio;
use crate::state::{Container, ContainerPhase, Sandbox, SandboxPhase};

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads everything back; never fails (problems are logged and the
/// affected objects cleaned up).
pub(crate) async fn recover(crio: &Arc<Crio>) {
    let mut stale_sandboxes = Vec::new();
    for dir in subdirs(&crio.cfg.sandboxes_dir()) {
        match Sandbox::load(&dir) {
            Ok(sb) => {
                let sb = Arc::new(sb);
                crio.reg.add_sandbox(sb.clone());
                if sb.get().phase == SandboxPhase::Creating {
                    stale_sandboxes.push(sb);
                }
            }
            Err(e) => {
                tracing::warn!("dropping unreadable sandbox {}: {e}", dir.display());
                let _ = rkube_runtime_spec::unmount(&dir.join("rootfs"));
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    for dir in subdirs(&crio.cfg.containers_dir()) {
        let c = match Container::load(&dir) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::warn!("dropping unreadable container {}: {e}", dir.display());
                let _ = rkube_runtime_spec::unmount(&dir.join("rootfs"));
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
        };
        crio.reg.add_container(c.clone());
        let st = c.get();
        if st.phase == ContainerPhase::Creating || crio.reg.sandbox(&st.sandbox_id).is_none() {
            tracing::info!(container = %c.id, "removing a container left half-created");
            let _ = crio.remove_container_inner(&c).await;
            continue;
        }
        let st = crio.refresh(&c);
        if st.phase == ContainerPhase::Running {
            // No exit file: the container runs unless conmon died with it.
            let alive = match crio.runtime(&st.handler) {
                Ok(rt) => {
                    matches!(rt.state(&c.id).await, Ok(Some(s)) if s.status == rkube_conmon::Status::Running)
                }
                Err(_) => false,
            };
            if !alive && crio.conmon.exit_code(&c.id).is_none() {
                tracing::warn!(container = %c.id, "container is gone and conmon left no exit code");
                let _ = c.update(|s| {
                    s.phase = ContainerPhase::Exited;
                    s.exit_code = 255;
                    s.finished_at = crate::now_nanos();
                    s.reason = "Unknown".into();
                    s.message = "the container exited while rkube was not running and no exit code was recorded".into();
                });
            }
        }
    }
    for sb in stale_sandboxes {
        tracing::info!(sandbox = %sb.id, "removing a sandbox left half-created");
        let _ = crio.remove_sandbox(&sb.id).await;
    }
    for sb in crio.reg.sandboxes() {
        if sb.get().phase != SandboxPhase::Ready {
            continue;
        }
        let st = sb.get();
        let alive = match crio.runtime(&st.handler) {
            Ok(rt) => {
                matches!(rt.state(&sb.id).await, Ok(Some(s)) if s.status == rkube_conmon::Status::Running)
            }
            Err(_) => false,
        };
        if !alive {
            tracing::warn!(sandbox = %sb.id, "pause container is gone; marking the sandbox NotReady");
            let _ = crio.stop_sandbox(&sb.id).await;
        }
    }
    release_orphans(crio).await;
}

/// Unmounts rootfs mounts and pinned netns without a record, and releases
/// CNI leases of sandboxes that no longer exist.
async fn release_orphans(crio: &Arc<Crio>) {
    let known: HashSet<String> = crio
        .reg
        .sandboxes()
        .iter()
        .map(|s| s.id.clone())
        .chain(crio.reg.containers().iter().map(|c| c.id.clone()))
        .collect();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for base in [
        crio.cfg.sandboxes_dir(),
        crio.cfg.containers_dir(),
        crio.cfg.netns_dir(),
    ] {
        for m in rkube_host::mount::mounts_under(&mountinfo, &base) {
            let Ok(rel) = m.strip_prefix(&base) else {
                continue;
            };
            let id = rel
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned());
            if id.as_ref().is_some_and(|id| !known.contains(id)) {
                tracing::info!("unmounting orphan {}", m.display());
                let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(crio.cfg.netns_dir()) {
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let live = crio
                .reg
                .sandbox(&id)
                .is_some_and(|s| s.get().phase == SandboxPhase::Ready);
            if !live && !known.contains(&id) {
                let _ = rkube_network::netns::remove(&e.path());
            }
        }
    }
    // CNI results we cached for sandboxes that are gone: DEL them, which
    // releases the IP lease and port mappings.
    if let Ok(rd) = std::fs::read_dir(crio.cfg.cni_cache_dir()) {
        let ids: HashSet<String> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.split('-')
                    .find(|part| part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(str::to_string)
            })
            .collect();
        for id in ids {
            if crio.reg.sandbox(&id).is_some() {
                continue;
            }
            tracing::info!(sandbox = %id, "releasing the pod network of a sandbox that no longer exists");
            let a = rkube_network::cni::Attachment {
                container_id: id.clone(),
                netns: PathBuf::new(),
                ifname: "eth0".into(),
                pod_namespace: String::new(),
                pod_name: String::new(),
                pod_uid: String::new(),
                port_mappings: Vec::new(),
            };
            if let Err(e) = crio.cni.del(&a).await {
                tracing::warn!(sandbox = %id, "CNI DEL: {e}");
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(crio.cfg.exits_dir()) {
        for e in rd.flatten() {
            if !known.contains(&*e.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
