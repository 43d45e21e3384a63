//! The CRI RuntimeService: maps each gRPC call onto the sandbox and
//! container operations of [`Crio`].

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use rkube_cri::api as cri;
use rkube_cri::api::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use crate::config::CrioConfig;
use crate::state::Registry;
use crate::{Error, Result};

/// The runtime's shared state.
pub struct Crio {
    pub(crate) cfg: CrioConfig,
    pub(crate) reg: Registry,
    pub(crate) images: rkube_imagestore::ImageStore,
    pub(crate) puller: rkube_imagestore::Puller,
    pub(crate) cni: rkube_network::cni::Cni,
    pub(crate) conmon: rkube_conmon::Conmon,
    pub(crate) runtimes: HashMap<String, rkube_conmon::OciRuntime>,
    pub(crate) streaming: OnceLock<rkube_streaming::Server>,
}

impl Crio {
    /// Builds the runtime's state (no I/O beyond creating directories).
    pub(crate) fn new(cfg: CrioConfig) -> crate::Result<Self> {
        for d in [
            cfg.root.clone(),
            cfg.sandboxes_dir(),
            cfg.containers_dir(),
            cfg.exits_dir(),
            cfg.attach_dir(),
            cfg.netns_dir(),
            cfg.cni_cache_dir(),
        ] {
            std::fs::create_dir_all(&d).map_err(crate::Error::io("create directory", &d))?;
        }
        let images = rkube_imagestore::ImageStore::open(&cfg.images_dir())?;
        let puller = rkube_imagestore::Puller::new(images.clone(), cfg.registries.clone());
        let cni =
            rkube_network::cni::Cni::new(&cfg.cni_conf_dir, &cfg.cni_bin_dir, &cfg.cni_cache_dir());
        let conmon = rkube_conmon::Conmon {
            path: cfg.conmon.clone(),
            exits_dir: cfg.exits_dir(),
            socket_dir: cfg.attach_dir(),
        };
        let runtimes = cfg
            .handlers
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    rkube_conmon::OciRuntime {
                        name: h.name.clone(),
                        path: h.path.clone(),
                        root: cfg.oci_root(&h.name),
                        global_args: Vec::new(),
                    },
                )
            })
            .collect();
        Ok(Self {
            cfg,
            reg: Registry::default(),
            images,
            puller,
            cni,
            conmon,
            runtimes,
            streaming: OnceLock::new(),
        })
    }

    /// The OCI runtime of a handler.
    pub(crate) fn runtime(&self, handler: &str) -> Result<rkube_conmon::OciRuntime> {
        let name = if handler.is_empty() {
            &self.cfg.default_handler
        } else {
            handler
        };
        self.runtimes.get(name).cloned().ok_or_else(|| {
            Error::InvalidArgument(format!("no runtime for {handler:?} is configured"))
        })
    }

    fn streaming(&self) -> Result<&rkube_streaming::Server> {
        self.streaming
            .get()
            .ok_or_else(|| Error::Unavailable("streaming server not started".into()))
    }

    fn running_container(&self, id: &str) -> Result<()> {
        let c = self.container_by_id(id)?;
        if self.refresh(&c).phase != crate::state::ContainerPhase::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        Ok(())
    }
}

/// The gRPC face of [`Crio`].
#[derive(Clone)]
pub struct RuntimeApi(pub(crate) Arc<Crio>);

type Res<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl RuntimeService for RuntimeApi {
    async fn version(&self, _r: Request<cri::VersionRequest>) -> Res<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: crate::RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> Res<cri::RunPodSandboxResponse> {
        let r = r.into_inner();
        let config = r
            .config
            .ok_or_else(|| Error::InvalidArgument("PodSandboxConfig is required".into()))?;
        let pod_sandbox_id = self.0.run_sandbox(config, &r.runtime_handler).await?;
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<cri::StopPodSandboxRequest>,
    ) -> Res<cri::StopPodSandboxResponse> {
        self.0.stop_sandbox(&r.into_inner().pod_sandbox_id).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<cri::RemovePodSandboxRequest>,
    ) -> Res<cri::RemovePodSandboxResponse> {
        self.0
            .remove_sandbox(&r.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> Res<cri::PodSandboxStatusResponse> {
        let status = self.0.sandbox_status(&r.into_inner().pod_sandbox_id)?;
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(status),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<cri::ListPodSandboxRequest>,
    ) -> Res<cri::ListPodSandboxResponse> {
        Ok(Response::new(cri::ListPodSandboxResponse {
            items: self.0.list_sandboxes(r.into_inner().filter),
        }))
    }

    async fn create_container(
        &self,
        r: Request<cri::CreateContainerRequest>,
    ) -> Res<cri::CreateContainerResponse> {
        let r = r.into_inner();
        let config = r
            .config
            .ok_or_else(|| Error::InvalidArgument("ContainerConfig is required".into()))?;
        let container_id = self.0.create_container(&r.pod_sandbox_id, config).await?;
        Ok(Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        r: Request<cri::StartContainerRequest>,
    ) -> Res<cri::StartContainerResponse> {
        self.0.start_container(&r.into_inner().container_id).await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        r: Request<cri::StopContainerRequest>,
    ) -> Res<cri::StopContainerResponse> {
        let r = r.into_inner();
        self.0.stop_container(&r.container_id, r.timeout).await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<cri::RemoveContainerRequest>,
    ) -> Res<cri::RemoveContainerResponse> {
        self.0
            .remove_container(&r.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        r: Request<cri::ListContainersRequest>,
    ) -> Res<cri::ListContainersResponse> {
        Ok(Response::new(cri::ListContainersResponse {
            containers: self.0.list_containers(r.into_inner().filter),
        }))
    }

    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> Res<cri::ContainerStatusResponse> {
        let c = self.0.container_by_id(&r.into_inner().container_id)?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(self.0.container_status(&c)),
            info: HashMap::new(),
        }))
    }

    async fn update_container_resources(
        &self,
        r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Res<cri::UpdateContainerResourcesResponse> {
        let r = r.into_inner();
        let c = self.0.container_by_id(&r.container_id)?;
        if let Some(l) = r.linux {
            let res = rkube_runtime_spec::linux_resources(&l);
            let runtime = self.0.runtime(&c.get().handler)?;
            runtime
                .update(&c.id, &res)
                .await
                .map_err(|e| Error::Runtime(format!("updating resources: {e}")))?;
        }
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        r: Request<cri::ReopenContainerLogRequest>,
    ) -> Res<cri::ReopenContainerLogResponse> {
        let id = r.into_inner().container_id;
        self.0.running_container(&id)?;
        let c = self.0.container_by_id(&id)?;
        self.0
            .conmon
            .reopen_log(&c.bundle())
            .map_err(|e| Error::Runtime(format!("reopening the log: {e}")))?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, r: Request<cri::ExecSyncRequest>) -> Res<cri::ExecSyncResponse> {
        let r = r.into_inner();
        Ok(Response::new(
            self.0.exec_sync(&r.container_id, r.cmd, r.timeout).await?,
        ))
    }

    async fn exec(&self, r: Request<cri::ExecRequest>) -> Res<cri::ExecResponse> {
        let r = r.into_inner();
        self.0.running_container(&r.container_id)?;
        let url = self.0.streaming()?.exec_url(&r)?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, r: Request<cri::AttachRequest>) -> Res<cri::AttachResponse> {
        let r = r.into_inner();
        self.0.running_container(&r.container_id)?;
        let url = self.0.streaming()?.attach_url(&r)?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        r: Request<cri::PortForwardRequest>,
    ) -> Res<cri::PortForwardResponse> {
        let r = r.into_inner();
        let sb =
            self.0.reg.sandbox(&r.pod_sandbox_id).ok_or_else(|| {
                Error::NotFound(format!("could not find pod {:?}", r.pod_sandbox_id))
            })?;
        if sb.get().phase != crate::state::SandboxPhase::Ready {
            return Err(
                Error::FailedPrecondition(format!("pod sandbox {} is not ready", sb.id)).into(),
            );
        }
        let url = self.0.streaming()?.port_forward_url(&r)?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        r: Request<cri::ContainerStatsRequest>,
    ) -> Res<cri::ContainerStatsResponse> {
        let c = self.0.container_by_id(&r.into_inner().container_id)?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(self.0.container_stats(&c)),
        }))
    }

    async fn list_container_stats(
        &self,
        r: Request<cri::ListContainerStatsRequest>,
    ) -> Res<cri::ListContainerStatsResponse> {
        let f = r.into_inner().filter.unwrap_or_default();
        let stats = self
            .0
            .reg
            .containers()
            .into_iter()
            .filter(|c| f.id.is_empty() || c.id.starts_with(&f.id))
            .filter(|c| {
                f.pod_sandbox_id.is_empty() || c.get().sandbox_id.starts_with(&f.pod_sandbox_id)
            })
            .filter(|c| {
                f.label_selector
                    .iter()
                    .all(|(k, v)| c.config.labels.get(k) == Some(v))
            })
            .filter(|c| self.0.refresh(c).phase == crate::state::ContainerPhase::Running)
            .map(|c| self.0.container_stats(&c))
            .collect();
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        r: Request<cri::PodSandboxStatsRequest>,
    ) -> Res<cri::PodSandboxStatsResponse> {
        let id = r.into_inner().pod_sandbox_id;
        let sb = self
            .0
            .reg
            .sandbox(&id)
            .ok_or_else(|| Error::NotFound(format!("could not find pod {id:?}")))?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(self.0.sandbox_stats(&sb)),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Res<cri::ListPodSandboxStatsResponse> {
        let f = r.into_inner().filter.unwrap_or_default();
        let stats = self
            .0
            .reg
            .sandboxes()
            .into_iter()
            .filter(|s| f.id.is_empty() || s.id.starts_with(&f.id))
            .filter(|s| {
                f.label_selector
                    .iter()
                    .all(|(k, v)| s.config.labels.get(k) == Some(v))
            })
            .filter(|s| s.get().phase == crate::state::SandboxPhase::Ready)
            .map(|s| self.0.sandbox_stats(&s))
            .collect();
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        _r: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Res<cri::UpdateRuntimeConfigResponse> {
        // The pod CIDR comes from rkube's conflist; nothing to change.
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, _r: Request<cri::StatusRequest>) -> Res<cri::StatusResponse> {
        let net = self.0.cni.ready().await;
        let cond = |type_: &str, err: Option<String>| cri::RuntimeCondition {
            r#type: type_.into(),
            status: err.is_none(),
            reason: if err.is_some() {
                "NetworkPluginNotReady".into()
            } else {
                String::new()
            },
            message: err.unwrap_or_default(),
        };
        let handlers = self
            .0
            .cfg
            .handlers
            .iter()
            .map(|h| cri::RuntimeHandler {
                name: h.name.clone(),
                features: Some(cri::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            })
            .collect();
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![
                    cond("RuntimeReady", None),
                    cond(
                        "NetworkReady",
                        net.err()
                            .map(|e| format!("Network plugin returns error: {e}")),
                    ),
                ],
            }),
            info: HashMap::new(),
            runtime_handlers: handlers,
            features: None,
        }))
    }

    async fn checkpoint_container(
        &self,
        _r: Request<cri::CheckpointContainerRequest>,
    ) -> Res<cri::CheckpointContainerResponse> {
        Err(
            Error::Unimplemented("checkpointing containers is not supported by rkube-cri-o".into())
                .into(),
        )
    }

    type GetContainerEventsStream =
        futures::stream::Empty<std::result::Result<cri::ContainerEventResponse, Status>>;

    async fn get_container_events(
        &self,
        _r: Request<cri::GetEventsRequest>,
    ) -> Res<Self::GetContainerEventsStream> {
        Err(Error::Unimplemented(
            "container events are not supported by rkube-cri-o; the node agent polls".into(),
        )
        .into())
    }

    async fn list_metric_descriptors(
        &self,
        _r: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Res<cri::ListMetricDescriptorsResponse> {
        Ok(Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: Vec::new(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Res<cri::ListPodSandboxMetricsResponse> {
        Ok(Response::new(cri::ListPodSandboxMetricsResponse {
            pod_metrics: Vec::new(),
        }))
    }

    async fn runtime_config(
        &self,
        _r: Request<cri::RuntimeConfigRequest>,
    ) -> Res<cri::RuntimeConfigResponse> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}
