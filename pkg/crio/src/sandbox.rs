//! Pod sandboxes: a pinned network namespace wired by CNI, the sandbox's
//! /etc files and /dev/shm, and the pause container (under conmon) that
//! holds the pod's IPC and UTS namespaces. Stop tears the network down and
//! kills everything; remove deletes what is left.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use rkube_cri::api as cri;
use rkube_network::cni::Attachment;
use rkube_runtime_spec as spec;

use crate::service::Crio;
use crate::state::{Sandbox, SandboxPhase, SandboxState};
use crate::{Error, Result};

/// CRI NamespaceMode values (POD = 0 is the default and needs no name).
pub(crate) const NS_CONTAINER: i32 = 1;
pub(crate) const NS_NODE: i32 = 2;
pub(crate) const NS_TARGET: i32 = 3;

/// The namespace options of a sandbox config.
pub(crate) fn ns_options(config: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

fn validate(config: &cri::PodSandboxConfig) -> Result<()> {
    let m = config
        .metadata
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("PodSandboxConfig.Metadata is required".into()))?;
    if m.name.is_empty() || m.namespace.is_empty() || m.uid.is_empty() {
        return Err(Error::InvalidArgument(
            "PodSandboxMetadata.Name, Namespace and Uid are required".into(),
        ));
    }
    Ok(())
}

/// Name under which the sandbox is reserved (CRI-O's naming).
fn reserved_name(m: &cri::PodSandboxMetadata) -> String {
    format!("k8s_POD_{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

impl Crio {
    pub(crate) fn attachment(&self, sb: &Sandbox, netns: PathBuf) -> Attachment {
        spec::cni_attachment(&sb.id, netns, &sb.config)
    }

    pub(crate) async fn run_sandbox(
        &self,
        config: cri::PodSandboxConfig,
        handler_name: &str,
    ) -> Result<String> {
        validate(&config)?;
        let handler = self.cfg.handler(handler_name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "no runtime for {handler_name:?} is configured; available handlers: {}",
                self.cfg
                    .handlers
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let meta = config.metadata.clone().unwrap_or_default();
        let name = reserved_name(&meta);
        if let Some(other) = self
            .reg
            .sandboxes()
            .into_iter()
            .find(|s| reserved_name(&s.metadata()) == name)
        {
            return Err(Error::AlreadyExists(format!(
                "pod sandbox with name {name:?} already exists: {}",
                other.id
            )));
        }
        let pause = self.images.get(&self.cfg.pause_image)?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "pause image {} is not in the image store",
                self.cfg.pause_image
            ))
        })?;
        let id = crate::new_id();
        let host_network = ns_options(&config).network == NS_NODE;
        let state = SandboxState {
            phase: SandboxPhase::Creating,
            created_at: crate::now_nanos(),
            handler: handler.name.clone(),
            ip: None,
            netns: None,
            pause_pid: 0,
            cgroup_parent: spec::sandbox_cgroup(&config, &id),
            host_network,
        };
        let sb = Arc::new(Sandbox::create(
            self.cfg.sandboxes_dir().join(&id),
            id.clone(),
            config,
            state,
        )?);
        self.reg.add_sandbox(sb.clone());
        let _op = sb.op.lock().await;
        match self.setup_sandbox(&sb, &pause).await {
            Ok(()) => {
                sb.update(|s| s.phase = SandboxPhase::Ready)?;
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(sandbox = %id, "sandbox set-up failed: {}", e);
                self.teardown_sandbox(&sb).await;
                self.destroy_sandbox_files(&sb).await;
                self.reg.remove_sandbox(&id);
                Err(e)
            }
        }
    }

    async fn setup_sandbox(&self, sb: &Sandbox, pause: &rkube_imagestore::Image) -> Result<()> {
        let st = sb.get();
        // Network first, as CRI-O: the pause container joins a namespace
        // that already has its interface.
        let mut ip = None;
        let netns = if st.host_network {
            None
        } else {
            let path = self.cfg.netns_dir().join(&sb.id);
            rkube_network::netns::create(&path).map_err(Error::internal)?;
            sb.update(|s| s.netns = Some(path.clone()))?;
            let res = self
                .cni
                .add(&self.attachment(sb, path.clone()))
                .await
                .map_err(|e| Error::Runtime(format!("setting up the pod network: {e}")))?;
            ip = res
                .ips
                .iter()
                .find(|a| a.is_ipv4())
                .or(res.ips.first())
                .copied();
            sb.update(|s| s.ip = ip.map(|i| i.to_string()))?;
            Some(path)
        };
        let files = spec::write_sandbox_files(&sb.dir, &sb.config, ip).map_err(Error::internal)?;
        let rootfs = sb.dir.join("rootfs");
        let layers = self.images.layers(pause)?;
        spec::mount_rootfs(
            &layers,
            &sb.dir.join("upper"),
            &sb.dir.join("work"),
            &rootfs,
        )
        .map_err(Error::internal)?;
        let input = spec::SandboxInput {
            config: &sb.config,
            rootfs: &rootfs,
            image: &pause.config,
            netns: match &netns {
                Some(p) => spec::NsMode::Path(p.clone()),
                None => spec::NsMode::Host,
            },
            cgroups_path: format!("{}/{}", st.cgroup_parent, sb.id),
            files: &files,
        };
        let oci = spec::sandbox_spec(&input).map_err(Error::internal)?;
        let bundle = sb.dir.join("bundle");
        spec::write_bundle(&bundle, &oci).map_err(Error::internal)?;
        let runtime = self.runtime(&st.handler)?;
        let pid = self
            .conmon
            .create(&rkube_conmon::CreateOptions {
                id: &sb.id,
                bundle: &bundle,
                log_path: &sb.dir.join("pause.log"),
                terminal: false,
                stdin: false,
                stdin_once: false,
                runtime: &runtime,
                conmon_pidfile: &sb.dir.join("conmon.pid"),
                container_pidfile: &sb.dir.join("pause.pid"),
                cgroup_parent: None,
            })
            .await
            .map_err(|e| Error::Runtime(format!("creating the pause container: {e}")))?;
        runtime
            .start(&sb.id)
            .await
            .map_err(|e| Error::Runtime(format!("starting the pause container: {e}")))?;
        sb.update(|s| s.pause_pid = pid)?;
        Ok(())
    }

    /// Kills the sandbox's containers and pause, tears the network down.
    /// Best effort: every step runs even if an earlier one failed.
    async fn teardown_sandbox(&self, sb: &Sandbox) {
        for c in self.reg.containers_of(&sb.id) {
            if let Err(e) = self.stop_container_inner(&c, 0).await {
                tracing::warn!(container = %c.id, "stopping: {}", e);
            }
        }
        let st = sb.get();
        if let Ok(runtime) = self.runtime(&st.handler) {
            let _ = runtime.kill(&sb.id, Signal::SIGKILL, true).await;
            for _ in 0..50 {
                match runtime.state(&sb.id).await {
                    Ok(Some(s)) if s.status != rkube_conmon::Status::Stopped => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    _ => break,
                }
            }
        }
        if let Some(ns) = &st.netns {
            if let Err(e) = self.cni.del(&self.attachment(sb, ns.clone())).await {
                tracing::warn!(sandbox = %sb.id, "CNI DEL: {e}");
            }
            if let Err(e) = rkube_network::netns::remove(ns) {
                tracing::warn!(sandbox = %sb.id, "removing netns: {e}");
            }
        }
        let _ = spec::release_sandbox_files(&sandbox_files(&sb.dir));
    }

    /// Deletes the pause container, unmounts and removes the directory.
    async fn destroy_sandbox_files(&self, sb: &Sandbox) {
        let st = sb.get();
        if let Ok(runtime) = self.runtime(&st.handler) {
            let _ = runtime.delete(&sb.id, true).await;
        }
        let _ = spec::unmount(&sb.dir.join("rootfs"));
        remove_cgroup(&st.cgroup_parent);
        let _ = std::fs::remove_file(self.cfg.exits_dir().join(&sb.id));
        if let Err(e) = std::fs::remove_dir_all(&sb.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(sandbox = %sb.id, "removing {}: {e}", sb.dir.display());
            }
        }
    }

    pub(crate) async fn stop_sandbox(&self, id: &str) -> Result<()> {
        let Some(sb) = self.reg.sandbox(id) else {
            // Stopping an unknown sandbox succeeds (CRI: idempotent).
            return Ok(());
        };
        let _op = sb.op.lock().await;
        self.teardown_sandbox(&sb).await;
        sb.update(|s| s.phase = SandboxPhase::NotReady)?;
        Ok(())
    }

    pub(crate) async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let Some(sb) = self.reg.sandbox(id) else {
            return Ok(());
        };
        let _op = sb.op.lock().await;
        if sb.get().phase != SandboxPhase::NotReady {
            self.teardown_sandbox(&sb).await;
        }
        for c in self.reg.containers_of(&sb.id) {
            self.remove_container_inner(&c).await?;
        }
        self.destroy_sandbox_files(&sb).await;
        self.reg.remove_sandbox(&sb.id);
        Ok(())
    }

    pub(crate) fn sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        let sb = self
            .reg
            .sandbox(id)
            .ok_or_else(|| Error::NotFound(format!("could not find pod {id:?}")))?;
        Ok(self.status_of(&sb))
    }

    pub(crate) fn status_of(&self, sb: &Sandbox) -> cri::PodSandboxStatus {
        let st = sb.get();
        let opts = ns_options(&sb.config);
        cri::PodSandboxStatus {
            id: sb.id.clone(),
            metadata: sb.config.metadata.clone(),
            state: match st.phase {
                SandboxPhase::Ready => cri::PodSandboxState::SandboxReady as i32,
                _ => cri::PodSandboxState::SandboxNotready as i32,
            },
            created_at: st.created_at,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: st.ip.clone().unwrap_or_default(),
                additional_ips: Vec::new(),
            }),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace {
                    options: Some(opts),
                }),
            }),
            labels: sb.config.labels.clone(),
            annotations: sb.config.annotations.clone(),
            runtime_handler: st.handler,
        }
    }

    pub(crate) fn list_sandboxes(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Vec<cri::PodSandbox> {
        let f = filter.unwrap_or_default();
        self.reg
            .sandboxes()
            .into_iter()
            .filter(|sb| sb.get().phase != SandboxPhase::Creating)
            .filter(|sb| f.id.is_empty() || sb.id.starts_with(&f.id))
            .filter(|sb| {
                f.state.as_ref().is_none_or(|want| {
                    let ready = sb.get().phase == SandboxPhase::Ready;
                    (want.state == cri::PodSandboxState::SandboxReady as i32) == ready
                })
            })
            .filter(|sb| {
                f.label_selector
                    .iter()
                    .all(|(k, v)| sb.config.labels.get(k) == Some(v))
            })
            .map(|sb| {
                let s = self.status_of(&sb);
                cri::PodSandbox {
                    id: s.id,
                    metadata: s.metadata,
                    state: s.state,
                    created_at: s.created_at,
                    labels: s.labels,
                    annotations: s.annotations,
                    runtime_handler: s.runtime_handler,
                }
            })
            .collect()
    }
}

/// Paths of the files `write_sandbox_files` made in a sandbox directory.
pub(crate) fn sandbox_files(dir: &std::path::Path) -> spec::SandboxFiles {
    spec::SandboxFiles {
        hosts: dir.join("hosts"),
        resolv_conf: dir.join("resolv.conf"),
        hostname: dir.join("hostname"),
        shm: dir.join("shm"),
    }
}

/// Removes a cgroup directory from every v1 hierarchy (and v2's), ignoring
/// ones that are missing or still busy.
pub(crate) fn remove_cgroup(path: &str) {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path().join(rel)).collect();
    dirs.push(PathBuf::from("/sys/fs/cgroup").join(rel));
    for d in dirs {
        let _ = std::fs::remove_dir(&d);
    }
}
