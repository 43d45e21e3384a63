//! Containers: an overlay rootfs over the image's layers, an OCI spec that
//! joins the sandbox's namespaces, conmon + the sandbox's OCI runtime for
//! the process; status from conmon's exit file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use rkube_cri::api as cri;
use rkube_runtime_spec as spec;

use crate::sandbox::{ns_options, NS_CONTAINER, NS_NODE, NS_TARGET};
use crate::service::Crio;
use crate::state::{Container, ContainerPhase, ContainerState, SandboxPhase};
use crate::{Error, Result};

fn reserved_name(c: &cri::ContainerMetadata, s: &cri::PodSandboxMetadata) -> String {
    format!(
        "k8s_{}_{}_{}_{}_{}",
        c.name, s.name, s.namespace, s.uid, c.attempt
    )
}

/// Parses an image's StopSignal ("SIGQUIT", "QUIT", "3").
pub(crate) fn parse_signal(s: Option<&str>) -> Signal {
    let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) else {
        return Signal::SIGTERM;
    };
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).unwrap_or(Signal::SIGTERM);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().unwrap_or(Signal::SIGTERM)
}

/// Exit reason as the kubelet shows it.
fn exit_reason(code: i32, oom: bool) -> &'static str {
    if oom {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Whether the memory cgroup of `cgroups_path` saw an OOM kill (v1 and v2).
fn oom_killed(cgroups_path: &str) -> bool {
    let rel = cgroups_path.trim_start_matches('/');
    for (file, key) in [
        (
            format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"),
            "oom_kill ",
        ),
        (format!("/sys/fs/cgroup/{rel}/memory.events"), "oom_kill "),
    ] {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Some(n) = text.lines().find_map(|l| l.strip_prefix(key)) {
                return n.trim().parse::<u64>().unwrap_or(0) > 0;
            }
        }
    }
    false
}

impl Crio {
    pub(crate) async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
    ) -> Result<String> {
        let sb = self
            .reg
            .sandbox(sandbox_id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {sandbox_id:?} not found")))?;
        let sst = sb.get();
        if sst.phase != SandboxPhase::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sb.id
            )));
        }
        let meta = config
            .metadata
            .clone()
            .filter(|m| !m.name.is_empty())
            .ok_or_else(|| {
                Error::InvalidArgument("ContainerConfig.Metadata.Name is required".into())
            })?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(Error::InvalidArgument(
                "ContainerConfig.Image is required".into(),
            ));
        }
        let name = reserved_name(&meta, &sb.metadata());
        if let Some(other) = self
            .reg
            .containers_of(&sb.id)
            .into_iter()
            .find(|c| reserved_name(&c.metadata(), &sb.metadata()) == name)
        {
            return Err(Error::AlreadyExists(format!(
                "container name {name:?} is already in use by {}",
                other.id
            )));
        }
        let image = self.images.get(&image_name)?.ok_or_else(|| {
            Error::NotFound(format!("image {image_name:?} not known; pull it first"))
        })?;
        let log_path = if config.log_path.is_empty() || sb.config.log_directory.is_empty() {
            String::new()
        } else {
            Path::new(&sb.config.log_directory)
                .join(&config.log_path)
                .to_string_lossy()
                .into_owned()
        };
        let id = crate::new_id();
        let state = ContainerState {
            phase: ContainerPhase::Creating,
            sandbox_id: sb.id.clone(),
            created_at: crate::now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image_id: image.id.clone(),
            image_ref: image.digest_ref_for(&image_name),
            image_name: image_name.clone(),
            log_path: log_path.clone(),
            handler: sst.handler.clone(),
            pid: 0,
            cgroups_path: format!("{}/{}", sst.cgroup_parent, id),
            stop_signal: image.config.stop_signal().clone(),
        };
        let c = Arc::new(Container::create(
            self.cfg.containers_dir().join(&id),
            id.clone(),
            config,
            state,
        )?);
        self.reg.add_container(c.clone());
        let _op = c.op.lock().await;
        match self.setup_container(&c, &sb, &image).await {
            Ok(pid) => {
                c.update(|s| {
                    s.phase = ContainerPhase::Created;
                    s.pid = pid;
                })?;
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(container = %id, "create failed: {}", e);
                self.destroy_container(&c).await;
                self.reg.remove_container(&id);
                Err(e)
            }
        }
    }

    async fn setup_container(
        &self,
        c: &Container,
        sb: &crate::state::Sandbox,
        image: &rkube_imagestore::Image,
    ) -> Result<i32> {
        let st = c.get();
        let sst = sb.get();
        let rootfs = c.dir.join("rootfs");
        let layers = self.images.layers(image)?;
        spec::mount_rootfs(&layers, &c.dir.join("upper"), &c.dir.join("work"), &rootfs)
            .map_err(Error::internal)?;
        let pause_ns = |kind: &str| PathBuf::from(format!("/proc/{}/ns/{kind}", sst.pause_pid));
        let opts = c
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_else(|| ns_options(&sb.config));
        let sandbox_opts = ns_options(&sb.config);
        let pid = match opts.pid {
            NS_NODE => spec::NsMode::Host,
            NS_CONTAINER => spec::NsMode::New,
            NS_TARGET => {
                let target = self.reg.container(&opts.target_id).ok_or_else(|| {
                    Error::NotFound(format!("target container {:?} not found", opts.target_id))
                })?;
                spec::NsMode::Path(PathBuf::from(format!("/proc/{}/ns/pid", target.get().pid)))
            }
            _ => spec::NsMode::Path(pause_ns("pid")),
        };
        let namespaces = spec::Namespaces {
            net: match &sst.netns {
                Some(p) => spec::NsMode::Path(p.clone()),
                None => spec::NsMode::Host,
            },
            ipc: if sandbox_opts.ipc == NS_NODE {
                spec::NsMode::Host
            } else {
                spec::NsMode::Path(pause_ns("ipc"))
            },
            uts: if sst.host_network {
                spec::NsMode::Host
            } else {
                spec::NsMode::Path(pause_ns("uts"))
            },
            pid,
        };
        let files = crate::sandbox::sandbox_files(&sb.dir);
        let input = spec::ContainerInput {
            config: &c.config,
            sandbox: &sb.config,
            image: &image.config,
            rootfs: &rootfs,
            namespaces,
            files: &files,
            cgroups_path: st.cgroups_path.clone(),
        };
        let oci =
            spec::container_spec(&input).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let bundle = c.bundle();
        spec::write_bundle(&bundle, &oci).map_err(Error::internal)?;
        let log_path = if st.log_path.is_empty() {
            c.dir.join("container.log")
        } else {
            PathBuf::from(&st.log_path)
        };
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::internal)?;
        }
        let runtime = self.runtime(&st.handler)?;
        self.conmon
            .create(&rkube_conmon::CreateOptions {
                id: &c.id,
                bundle: &bundle,
                log_path: &log_path,
                terminal: c.config.tty,
                stdin: c.config.stdin,
                stdin_once: c.config.stdin_once,
                runtime: &runtime,
                conmon_pidfile: &c.dir.join("conmon.pid"),
                container_pidfile: &c.dir.join("pidfile"),
                cgroup_parent: None,
            })
            .await
            .map_err(|e| Error::Runtime(format!("creating container: {e}")))
    }

    /// Deletes the runtime's container, unmounts and removes the directory.
    async fn destroy_container(&self, c: &Container) {
        let st = c.get();
        if let Ok(runtime) = self.runtime(&st.handler) {
            let _ = runtime.kill(&c.id, Signal::SIGKILL, true).await;
            let _ = runtime.delete(&c.id, true).await;
        }
        let _ = spec::unmount(&c.dir.join("rootfs"));
        crate::sandbox::remove_cgroup(&st.cgroups_path);
        let _ = std::fs::remove_file(self.cfg.exits_dir().join(&c.id));
        if let Err(e) = std::fs::remove_dir_all(&c.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(container = %c.id, "removing {}: {e}", c.dir.display());
            }
        }
    }

    pub(crate) fn container_by_id(&self, id: &str) -> Result<Arc<Container>> {
        self.reg
            .container(id)
            .ok_or_else(|| Error::NotFound(format!("could not find container {id:?}")))
    }

    pub(crate) async fn start_container(&self, id: &str) -> Result<()> {
        let c = self.container_by_id(id)?;
        let _op = c.op.lock().await;
        let st = c.get();
        if st.phase != ContainerPhase::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not in created state: {:?}",
                c.id, st.phase
            )));
        }
        let runtime = self.runtime(&st.handler)?;
        match runtime.start(&c.id).await {
            Ok(()) => {
                c.update(|s| {
                    s.phase = ContainerPhase::Running;
                    s.started_at = crate::now_nanos();
                })?;
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                c.update(|s| {
                    s.phase = ContainerPhase::Exited;
                    s.exit_code = 128;
                    s.finished_at = crate::now_nanos();
                    s.reason = "StartError".into();
                    s.message = msg.clone();
                })?;
                Err(Error::Runtime(format!("starting container: {msg}")))
            }
        }
    }

    /// Brings the state up to date with conmon's exit file.
    pub(crate) fn refresh(&self, c: &Container) -> ContainerState {
        let st = c.get();
        if !matches!(st.phase, ContainerPhase::Running | ContainerPhase::Created) {
            return st;
        }
        let Some(code) = self.conmon.exit_code(&c.id) else {
            return st;
        };
        let finished = self
            .conmon
            .exit_time(&c.id)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_else(crate::now_nanos);
        let oom = oom_killed(&st.cgroups_path);
        let _ = c.update(|s| {
            if !matches!(s.phase, ContainerPhase::Running | ContainerPhase::Created) {
                return;
            }
            if s.phase == ContainerPhase::Created {
                s.started_at = s.started_at.max(s.created_at);
            }
            s.phase = ContainerPhase::Exited;
            s.exit_code = code;
            s.finished_at = finished;
            s.reason = exit_reason(code, oom).to_string();
        });
        c.get()
    }

    /// Sends the stop signal, waits up to `timeout` seconds, then SIGKILLs.
    pub(crate) async fn stop_container_inner(&self, c: &Container, timeout: i64) -> Result<()> {
        let st = self.refresh(c);
        if st.phase != ContainerPhase::Running && st.phase != ContainerPhase::Created {
            return Ok(());
        }
        let runtime = self.runtime(&st.handler)?;
        if st.phase == ContainerPhase::Created {
            // Never started: nothing to signal gracefully.
            let _ = runtime.kill(&c.id, Signal::SIGKILL, true).await;
        } else if timeout > 0 {
            let sig = parse_signal(st.stop_signal.as_deref());
            if let Err(e) = runtime.kill(&c.id, sig, false).await {
                tracing::debug!(container = %c.id, "stop signal: {e}");
            }
            if self.wait_exit(c, Duration::from_secs(timeout as u64)).await {
                return Ok(());
            }
        }
        runtime
            .kill(&c.id, Signal::SIGKILL, true)
            .await
            .map_err(|e| Error::Runtime(format!("killing container: {e}")))?;
        if !self.wait_exit(c, Duration::from_secs(10)).await {
            // conmon is gone or the process is stuck: record what the runtime says.
            let alive = matches!(runtime.state(&c.id).await, Ok(Some(s)) if s.status == rkube_conmon::Status::Running);
            if alive {
                return Err(Error::DeadlineExceeded(format!(
                    "container {} did not exit after SIGKILL",
                    c.id
                )));
            }
            let _ = c.update(|s| {
                s.phase = ContainerPhase::Exited;
                s.exit_code = 137;
                s.finished_at = crate::now_nanos();
                s.reason = "Error".into();
            });
        }
        Ok(())
    }

    async fn wait_exit(&self, c: &Container, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.refresh(c).phase == ContainerPhase::Exited {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let Some(c) = self.reg.container(id) else {
            return Ok(());
        };
        let _op = c.op.lock().await;
        self.stop_container_inner(&c, timeout).await
    }

    pub(crate) async fn remove_container_inner(&self, c: &Container) -> Result<()> {
        self.destroy_container(c).await;
        self.reg.remove_container(&c.id);
        Ok(())
    }

    pub(crate) async fn remove_container(&self, id: &str) -> Result<()> {
        let Some(c) = self.reg.container(id) else {
            return Ok(());
        };
        let _op = c.op.lock().await;
        self.remove_container_inner(&c).await
    }

    pub(crate) fn container_status(&self, c: &Container) -> cri::ContainerStatus {
        let st = self.refresh(c);
        let state = match st.phase {
            ContainerPhase::Creating | ContainerPhase::Created => {
                cri::ContainerState::ContainerCreated
            }
            ContainerPhase::Running => cri::ContainerState::ContainerRunning,
            ContainerPhase::Exited => cri::ContainerState::ContainerExited,
        };
        cri::ContainerStatus {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            state: state as i32,
            created_at: st.created_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            exit_code: st.exit_code,
            image: Some(cri::ImageSpec {
                image: st.image_name.clone(),
                ..Default::default()
            }),
            image_ref: st.image_ref.clone(),
            reason: st.reason.clone(),
            message: st.message.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            mounts: c.config.mounts.clone(),
            log_path: st.log_path.clone(),
            resources: None,
            image_id: st.image_id.clone(),
            user: None,
        }
    }

    pub(crate) fn list_containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> Vec<cri::Container> {
        let f = filter.unwrap_or_default();
        self.reg
            .containers()
            .into_iter()
            .filter(|c| c.get().phase != ContainerPhase::Creating)
            .filter(|c| f.id.is_empty() || c.id.starts_with(&f.id))
            .filter(|c| {
                f.pod_sandbox_id.is_empty() || c.get().sandbox_id.starts_with(&f.pod_sandbox_id)
            })
            .filter(|c| {
                f.label_selector
                    .iter()
                    .all(|(k, v)| c.config.labels.get(k) == Some(v))
            })
            .map(|c| (c.get().sandbox_id, self.container_status(&c)))
            .filter(|(_, s)| f.state.as_ref().is_none_or(|want| want.state == s.state))
            .map(|(pod_sandbox_id, s)| cri::Container {
                id: s.id,
                pod_sandbox_id,
                metadata: s.metadata,
                image: s.image,
                image_ref: s.image_ref,
                state: s.state,
                created_at: s.created_at,
                labels: s.labels,
                annotations: s.annotations,
                image_id: s.image_id,
            })
            .collect()
    }

    pub(crate) async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse> {
        let c = self.container_by_id(id)?;
        let st = self.refresh(&c);
        if st.phase != ContainerPhase::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        if cmd.is_empty() {
            return Err(Error::InvalidArgument("ExecSync needs a command".into()));
        }
        let runtime = self.runtime(&st.handler)?;
        let timeout = (timeout > 0).then(|| Duration::from_secs(timeout as u64));
        match runtime.exec_sync(&c.id, &cmd, timeout).await {
            Ok(out) => Ok(cri::ExecSyncResponse {
                stdout: out.stdout,
                stderr: out.stderr,
                exit_code: out.exit_code,
            }),
            Err(rkube_conmon::Error::Timeout { .. }) => Err(Error::DeadlineExceeded(format!(
                "command {cmd:?} timed out after {}s",
                timeout.map(|t| t.as_secs()).unwrap_or(0)
            ))),
            Err(e) => Err(Error::Runtime(format!("exec in container {}: {e}", c.id))),
        }
    }
}
