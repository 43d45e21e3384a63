//! App containers on docker: created from the CRI config joined to their
//! sandbox's namespaces, started with their output followed into the CRI
//! log, stopped, removed, updated; status read back from `docker inspect`;
//! ExecSync through docker exec.

use std::path::Path;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerStateStatusEnum, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use futures::StreamExt;
use rkube_cri::api as cri;

use crate::convert::{self, ContainerInput};
use crate::shim::{id_matches, selected, Shim};
use crate::{labels, Error, Result};

/// Docker name of an app container (cri-dockerd's naming).
fn container_name(c: &cri::ContainerMetadata, s: &cri::PodSandboxMetadata) -> String {
    format!(
        "k8s_{}_{}_{}_{}_{}",
        c.name, s.name, s.namespace, s.uid, c.attempt
    )
}

/// Exit reason as the kubelet shows it.
fn exit_reason(code: i64, oom: bool, error: &str) -> &'static str {
    if oom {
        "OOMKilled"
    } else if !error.is_empty() {
        "ContainerCannotRun"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// How long ContainerStatus waits for an exited container's output to
/// reach its log.
const LOG_FLUSH: Duration = Duration::from_secs(2);

impl Shim {
    pub(crate) async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
    ) -> Result<String> {
        let sb = self.sandbox(sandbox_id).await?;
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| Error::InvalidArgument("ContainerConfig.Metadata is required".into()))?;
        let image = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Error::InvalidArgument("ContainerConfig.Image is required".into()))?;
        let log_path = if config.log_path.is_empty() || sb.config.log_directory.is_empty() {
            String::new()
        } else {
            Path::new(&sb.config.log_directory)
                .join(&config.log_path)
                .to_string_lossy()
                .into_owned()
        };
        let seccomp_localhost = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.seccomp.as_ref())
            .filter(|p| p.profile_type == 2)
            .map(|p| {
                std::fs::read_to_string(&p.localhost_ref).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "cannot read seccomp profile {}: {e}",
                        p.localhost_ref
                    ))
                })
            })
            .transpose()?;
        let files = self.sandbox_files(&sb.id);
        let cgroup = rkube_runtime_spec::sandbox_cgroup(&sb.config, &sb.id);
        let body = convert::container_body(&ContainerInput {
            sandbox_id: &sb.id,
            sandbox: &sb.config,
            config: &config,
            image: &image,
            runtime: &sb.handler,
            cgroup_parent: &cgroup,
            files: &files,
            labels: labels::for_container(&sb.id, &config, &log_path),
            seccomp_localhost,
            apparmor: self.apparmor,
        });
        let name = container_name(&meta, &sb.config.metadata.clone().unwrap_or_default());
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
                Error::FailedPrecondition(m) => {
                    Error::AlreadyExists(format!("container {name:?} already exists: {m}"))
                }
                other => other,
            })?;
        Ok(created.id)
    }

    pub(crate) async fn start_container(&self, id: &str) -> Result<()> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        let log_path = info
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(labels::LOG_PATH).cloned())
            .unwrap_or_default();
        if !log_path.is_empty() {
            // Create it first: the node agent may read it right away.
            if let Some(dir) = Path::new(&log_path).parent() {
                std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
            }
        }
        let started = self
            .docker
            .start_container(id, None::<StartContainerOptions>)
            .await;
        if !log_path.is_empty() {
            self.logs
                .follow(self.docker.clone(), id, log_path.clone().into());
        }
        started.map_err(|e| Error::Runtime(format!("starting container {id}: {}", Error::from(e))))
    }

    pub(crate) async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    signal: None,
                    t: Some(timeout.max(0) as i32),
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match Error::from(e) {
                // 404: gone already; stopping is idempotent.
                Error::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    pub(crate) async fn remove_container(&self, id: &str) -> Result<()> {
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match Error::from(e) {
                Error::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    pub(crate) async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let not_found = || Error::NotFound(format!("could not find container {id:?}"));
        let info = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(i) => i,
            Err(e) => {
                return Err(match Error::from(e) {
                    Error::NotFound(_) => not_found(),
                    other => other,
                })
            }
        };
        let l = info
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let config = labels::container_config(&l).ok_or_else(not_found)?;
        let st = info.state.clone().unwrap_or_default();
        let state = match st.status {
            Some(ContainerStateStatusEnum::CREATED) => cri::ContainerState::ContainerCreated,
            Some(ContainerStateStatusEnum::RUNNING)
            | Some(ContainerStateStatusEnum::PAUSED)
            | Some(ContainerStateStatusEnum::RESTARTING) => cri::ContainerState::ContainerRunning,
            Some(_) => cri::ContainerState::ContainerExited,
            None => cri::ContainerState::ContainerUnknown,
        };
        let id = info.id.clone().unwrap_or_default();
        let (mut reason, mut message) = (String::new(), String::new());
        let exit_code = st.exit_code.unwrap_or(0);
        if state == cri::ContainerState::ContainerExited {
            self.logs.flushed(&id, LOG_FLUSH).await;
            let error = st.error.clone().unwrap_or_default();
            reason = exit_reason(exit_code, st.oom_killed.unwrap_or(false), &error).into();
            message = error;
        }
        let image_id = info.image.clone().unwrap_or_default();
        Ok(cri::ContainerStatus {
            id,
            metadata: config.metadata.clone(),
            state: state as i32,
            created_at: crate::docker_time(info.created.as_deref()),
            started_at: crate::docker_time(st.started_at.as_deref()),
            finished_at: if state == cri::ContainerState::ContainerExited {
                crate::docker_time(st.finished_at.as_deref())
            } else {
                0
            },
            exit_code: exit_code as i32,
            image: config.image.clone(),
            image_ref: crate::images::status_ref(&self.docker, &image_id).await,
            reason,
            message,
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            mounts: config.mounts.clone(),
            log_path: l.get(labels::LOG_PATH).cloned().unwrap_or_default(),
            resources: None,
            image_id,
            user: None,
        })
    }

    pub(crate) async fn list_containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>> {
        let f = filter.unwrap_or_default();
        let sandbox = (!f.pod_sandbox_id.is_empty() && f.pod_sandbox_id.len() == 64)
            .then_some(f.pod_sandbox_id.as_str());
        Ok(self
            .list(labels::CONTAINER, sandbox)
            .await?
            .into_iter()
            .filter_map(|c| {
                let l = c.labels.clone().unwrap_or_default();
                let config = labels::container_config(&l)?;
                let state = match c.state {
                    Some(ContainerSummaryStateEnum::CREATED) => {
                        cri::ContainerState::ContainerCreated
                    }
                    Some(ContainerSummaryStateEnum::RUNNING)
                    | Some(ContainerSummaryStateEnum::PAUSED)
                    | Some(ContainerSummaryStateEnum::RESTARTING) => {
                        cri::ContainerState::ContainerRunning
                    }
                    _ => cri::ContainerState::ContainerExited,
                } as i32;
                Some(cri::Container {
                    id: c.id.clone()?,
                    pod_sandbox_id: l.get(labels::SANDBOX_ID).cloned().unwrap_or_default(),
                    metadata: config.metadata,
                    image: config.image,
                    image_ref: c.image_id.clone().unwrap_or_default(),
                    state,
                    created_at: c.created.unwrap_or(0) * 1_000_000_000,
                    labels: config.labels,
                    annotations: config.annotations,
                    image_id: c.image_id.unwrap_or_default(),
                })
            })
            .filter(|c| id_matches(&f.id, &c.id))
            .filter(|c| id_matches(&f.pod_sandbox_id, &c.pod_sandbox_id))
            .filter(|c| f.state.as_ref().is_none_or(|want| want.state == c.state))
            .filter(|c| selected(&f.label_selector, &c.labels))
            .collect())
    }

    pub(crate) async fn update_resources(
        &self,
        id: &str,
        res: Option<cri::LinuxContainerResources>,
    ) -> Result<()> {
        if let Some(res) = res {
            self.docker
                .update_container(id, convert::update_body(&res))
                .await?;
        }
        Ok(())
    }

    /// Fails unless container `id` is running.
    pub(crate) async fn running_container(&self, id: &str) -> Result<()> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        if !info.state.and_then(|s| s.running).unwrap_or(false) {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(())
    }

    pub(crate) async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse> {
        if cmd.is_empty() {
            return Err(Error::InvalidArgument("ExecSync needs a command".into()));
        }
        self.running_container(id).await?;
        let exec = self
            .docker
            .create_exec(
                id,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.clone()),
                    ..Default::default()
                },
            )
            .await?;
        let run = async {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            if let StartExecResults::Attached { mut output, .. } = self
                .docker
                .start_exec(&exec.id, Some(StartExecOptions::default()))
                .await?
            {
                while let Some(chunk) = output.next().await {
                    match chunk? {
                        bollard::container::LogOutput::StdErr { message } => {
                            stderr.extend_from_slice(&message)
                        }
                        other => stdout.extend_from_slice(&other.into_bytes()),
                    }
                }
            }
            let code = self
                .docker
                .inspect_exec(&exec.id)
                .await?
                .exit_code
                .unwrap_or(0);
            Ok::<_, Error>(cri::ExecSyncResponse {
                stdout,
                stderr,
                exit_code: code as i32,
            })
        };
        if timeout > 0 {
            tokio::time::timeout(Duration::from_secs(timeout as u64), run)
                .await
                .map_err(|_| {
                    Error::DeadlineExceeded(format!("command {cmd:?} timed out after {timeout}s"))
                })?
        } else {
            run.await
        }
    }
}
