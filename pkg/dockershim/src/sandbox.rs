//! Pod sandboxes on docker: a pause container with no docker network,
//! whose network namespace is pinned under the shim's root and wired by
//! CNI; the sandbox's /etc files beside it. Stop kills the pod's
//! containers and tears the network down; remove deletes what is left.

use std::net::IpAddr;
use std::path::PathBuf;

use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use rkube_cri::api as cri;
use rkube_runtime_spec as spec;

use crate::convert::{self, NS_NODE};
use crate::shim::{describe, id_matches, selected, Shim};
use crate::{labels, Error, Result};

/// Docker name of a sandbox's pause container (cri-dockerd's naming), so
/// one pod attempt cannot get two sandboxes.
fn sandbox_name(m: &cri::PodSandboxMetadata) -> String {
    format!("k8s_POD_{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

/// A sandbox as read back from its pause container.
pub(crate) struct SandboxInfo {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    pub handler: String,
    pub running: bool,
    pub created_at: i64,
}

impl Shim {
    fn netns_path(&self, id: &str) -> PathBuf {
        self.cfg.netns_dir().join(id)
    }

    fn ip_file(&self, id: &str) -> PathBuf {
        self.cfg.sandbox_dir(id).join("ip")
    }

    /// The sandbox's /etc files.
    pub(crate) fn sandbox_files(&self, id: &str) -> spec::SandboxFiles {
        let dir = self.cfg.sandbox_dir(id);
        spec::SandboxFiles {
            hosts: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
            hostname: dir.join("hostname"),
            shm: dir.join("shm"),
        }
    }

    /// Reads a sandbox back from dockerd.
    pub(crate) async fn sandbox(&self, id: &str) -> Result<SandboxInfo> {
        let not_found = || Error::NotFound(format!("could not find pod {id:?}"));
        if id.is_empty() {
            return Err(not_found());
        }
        let c = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                return Err(match Error::from(e) {
                    Error::NotFound(_) => not_found(),
                    other => other,
                })
            }
        };
        let l = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        if l.get(labels::TYPE).map(String::as_str) != Some(labels::SANDBOX) {
            return Err(not_found());
        }
        let config = labels::sandbox_config(&l).ok_or_else(not_found)?;
        Ok(SandboxInfo {
            id: c.id.unwrap_or_default(),
            config,
            handler: l.get(labels::HANDLER).cloned().unwrap_or_default(),
            running: c.state.and_then(|s| s.running).unwrap_or(false),
            created_at: crate::docker_time(c.created.as_deref()),
        })
    }

    pub(crate) async fn run_sandbox(
        &self,
        config: cri::PodSandboxConfig,
        handler: &str,
    ) -> Result<String> {
        let meta = config.metadata.clone().ok_or_else(|| {
            Error::InvalidArgument("PodSandboxConfig.Metadata is required".into())
        })?;
        if meta.name.is_empty() || meta.namespace.is_empty() || meta.uid.is_empty() {
            return Err(Error::InvalidArgument(
                "PodSandboxMetadata.Name, Namespace and Uid are required".into(),
            ));
        }
        if !handler.is_empty() && !self.cfg.handlers.iter().any(|h| h == handler) {
            return Err(Error::InvalidArgument(format!(
                "no runtime for {handler:?} is configured; dockerd has: {}",
                self.cfg.handlers.join(", ")
            )));
        }
        if self
            .docker
            .inspect_image(&self.cfg.pause_image)
            .await
            .is_err()
        {
            return Err(Error::FailedPrecondition(format!(
                "pause image {} is not loaded into dockerd",
                self.cfg.pause_image
            )));
        }
        let name = sandbox_name(&meta);
        let cgroup = spec::sandbox_cgroup(&config, &meta.uid);
        let body = convert::sandbox_body(
            &config,
            &self.cfg.pause_image,
            handler,
            &cgroup,
            labels::for_sandbox(&config, handler),
        );
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    platform: String::new(),
                }),
                body,
            )
            .await
            .map_err(|e| match Error::from(e) {
                Error::FailedPrecondition(m) => Error::AlreadyExists(format!(
                    "pod sandbox with name {name:?} already exists: {m}"
                )),
                other => other,
            })?;
        let id = created.id;
        if let Err(e) = self.setup_sandbox(&id, &config).await {
            tracing::warn!(sandbox = %id, pod = %describe(Some(&meta)), "sandbox set-up failed: {e}");
            self.teardown(&id, &config).await;
            self.remove_pause(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    async fn setup_sandbox(&self, id: &str, config: &cri::PodSandboxConfig) -> Result<()> {
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await?;
        let mut ip: Option<IpAddr> = None;
        if convert::ns_options(config).network != NS_NODE {
            let pid = self
                .docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await?
                .state
                .and_then(|s| s.pid)
                .filter(|p| *p > 0)
                .ok_or_else(|| Error::Runtime("the pause container has no process".into()))?;
            let ns = self.netns_path(id);
            rkube_network::netns::pin(&PathBuf::from(format!("/proc/{pid}/ns/net")), &ns)
                .map_err(|e| Error::Runtime(format!("pinning the pod's network namespace: {e}")))?;
            let res = self
                .cni
                .add(&spec::cni_attachment(id, ns, config))
                .await
                .map_err(|e| Error::Runtime(format!("setting up the pod network: {e}")))?;
            ip = res
                .ips
                .iter()
                .find(|a| a.is_ipv4())
                .or(res.ips.first())
                .copied();
        }
        let dir = self.cfg.sandbox_dir(id);
        spec::write_sandbox_files(&dir, config, ip)
            .map_err(|e| Error::Runtime(format!("writing the sandbox's files: {e}")))?;
        if let Some(ip) = ip {
            let f = self.ip_file(id);
            std::fs::write(&f, ip.to_string()).map_err(Error::io("write", &f))?;
        }
        Ok(())
    }

    /// Kills the sandbox's containers and the pause container, tears the
    /// network down. Best effort: every step runs.
    async fn teardown(&self, id: &str, config: &cri::PodSandboxConfig) {
        let stop = || StopContainerOptions {
            signal: None,
            t: Some(0),
        };
        if let Ok(cs) = self.list(labels::CONTAINER, Some(id)).await {
            for c in cs {
                if let Some(cid) = c.id {
                    let _ = self.docker.stop_container(&cid, Some(stop())).await;
                }
            }
        }
        let ns = self.netns_path(id);
        if ns.exists() {
            if let Err(e) = self
                .cni
                .del(&spec::cni_attachment(id, ns.clone(), config))
                .await
            {
                tracing::warn!(sandbox = %id, "CNI DEL: {e}");
            }
            if let Err(e) = rkube_network::netns::remove(&ns) {
                tracing::warn!(sandbox = %id, "removing netns: {e}");
            }
        }
        let _ = self.docker.stop_container(id, Some(stop())).await;
        let _ = spec::release_sandbox_files(&self.sandbox_files(id));
    }

    async fn remove_pause(&self, id: &str) {
        let _ = self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        let dir = self.cfg.sandbox_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(sandbox = %id, "removing {}: {e}", dir.display());
            }
        }
    }

    pub(crate) async fn stop_sandbox(&self, id: &str) -> Result<()> {
        match self.sandbox(id).await {
            Ok(sb) => {
                self.teardown(&sb.id, &sb.config).await;
                Ok(())
            }
            // Stopping an unknown sandbox succeeds (CRI: idempotent).
            Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let sb = match self.sandbox(id).await {
            Ok(sb) => sb,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.teardown(&sb.id, &sb.config).await;
        for c in self.list(labels::CONTAINER, Some(&sb.id)).await? {
            if let Some(cid) = c.id {
                self.remove_container(&cid).await?;
            }
        }
        self.remove_pause(&sb.id).await;
        Ok(())
    }

    pub(crate) fn sandbox_status_of(&self, sb: &SandboxInfo) -> cri::PodSandboxStatus {
        let ip = std::fs::read_to_string(self.ip_file(&sb.id)).unwrap_or_default();
        cri::PodSandboxStatus {
            id: sb.id.clone(),
            metadata: sb.config.metadata.clone(),
            state: if sb.running {
                cri::PodSandboxState::SandboxReady
            } else {
                cri::PodSandboxState::SandboxNotready
            } as i32,
            created_at: sb.created_at,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: ip.trim().to_string(),
                additional_ips: Vec::new(),
            }),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace {
                    options: Some(convert::ns_options(&sb.config)),
                }),
            }),
            labels: sb.config.labels.clone(),
            annotations: sb.config.annotations.clone(),
            runtime_handler: sb.handler.clone(),
        }
    }

    pub(crate) async fn sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        Ok(self.sandbox_status_of(&self.sandbox(id).await?))
    }

    /// Every sandbox, read from the pause containers' labels.
    pub(crate) async fn sandboxes(&self) -> Result<Vec<SandboxInfo>> {
        Ok(self
            .list(labels::SANDBOX, None)
            .await?
            .into_iter()
            .filter_map(|c| {
                let l = c.labels.unwrap_or_default();
                Some(SandboxInfo {
                    id: c.id?,
                    config: labels::sandbox_config(&l)?,
                    handler: l.get(labels::HANDLER).cloned().unwrap_or_default(),
                    running: matches!(
                        c.state,
                        Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                    ),
                    created_at: c.created.unwrap_or(0) * 1_000_000_000,
                })
            })
            .collect())
    }

    pub(crate) async fn list_sandboxes(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>> {
        let f = filter.unwrap_or_default();
        Ok(self
            .sandboxes()
            .await?
            .into_iter()
            .filter(|sb| id_matches(&f.id, &sb.id))
            .filter(|sb| {
                f.state
                    .as_ref()
                    .is_none_or(|want| (want.state == 0) == sb.running)
            })
            .filter(|sb| selected(&f.label_selector, &sb.config.labels))
            .map(|sb| {
                let s = self.sandbox_status_of(&sb);
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
            .collect())
    }
}
