//! The CRI RuntimeService of the dockershim: maps each gRPC call onto the
//! sandbox, container, stats and streaming operations of [`Shim`].

use std::collections::HashMap;
use std::sync::Arc;

use rkube_cri::api as cri;
use rkube_cri::api::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use crate::shim::{id_matches, selected, Shim};
use crate::Error;

/// The gRPC face of [`Shim`].
#[derive(Clone)]
pub(crate) struct RuntimeApi(pub(crate) Arc<Shim>);

type Res<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl RuntimeService for RuntimeApi {
    async fn version(&self, _r: Request<cri::VersionRequest>) -> Res<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: crate::RUNTIME_NAME.into(),
            runtime_version: self.0.version.clone(),
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
        let status = self
            .0
            .sandbox_status(&r.into_inner().pod_sandbox_id)
            .await?;
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
            items: self.0.list_sandboxes(r.into_inner().filter).await?,
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
            containers: self.0.list_containers(r.into_inner().filter).await?,
        }))
    }

    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> Res<cri::ContainerStatusResponse> {
        let status = self
            .0
            .container_status(&r.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(status),
            info: HashMap::new(),
        }))
    }

    async fn update_container_resources(
        &self,
        r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Res<cri::UpdateContainerResourcesResponse> {
        let r = r.into_inner();
        self.0.update_resources(&r.container_id, r.linux).await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        _r: Request<cri::ReopenContainerLogRequest>,
    ) -> Res<cri::ReopenContainerLogResponse> {
        // The follower writes to the path: a rotated file is reopened on
        // the next line.
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
        self.0.running_container(&r.container_id).await?;
        let url = self.0.streaming()?.exec_url(&r)?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, r: Request<cri::AttachRequest>) -> Res<cri::AttachResponse> {
        let r = r.into_inner();
        self.0.running_container(&r.container_id).await?;
        let url = self.0.streaming()?.attach_url(&r)?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        r: Request<cri::PortForwardRequest>,
    ) -> Res<cri::PortForwardResponse> {
        let r = r.into_inner();
        let sb = self.0.sandbox(&r.pod_sandbox_id).await?;
        if !sb.running {
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
        let id = r.into_inner().container_id;
        let c = self
            .0
            .list_containers(Some(cri::ContainerFilter {
                id: id.clone(),
                ..Default::default()
            }))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound(format!("could not find container {id:?}")))?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(self.0.container_stats(&c).await),
        }))
    }

    async fn list_container_stats(
        &self,
        r: Request<cri::ListContainerStatsRequest>,
    ) -> Res<cri::ListContainerStatsResponse> {
        Ok(Response::new(cri::ListContainerStatsResponse {
            stats: self.0.list_container_stats(r.into_inner().filter).await?,
        }))
    }

    async fn pod_sandbox_stats(
        &self,
        r: Request<cri::PodSandboxStatsRequest>,
    ) -> Res<cri::PodSandboxStatsResponse> {
        let id = r.into_inner().pod_sandbox_id;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(self.0.sandbox_stats(&id).await?),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Res<cri::ListPodSandboxStatsResponse> {
        let f = r.into_inner().filter.unwrap_or_default();
        let mut stats = Vec::new();
        for sb in self.0.sandboxes().await? {
            if sb.running
                && id_matches(&f.id, &sb.id)
                && selected(&f.label_selector, &sb.config.labels)
            {
                stats.push(self.0.sandbox_stats(&sb.id).await?);
            }
        }
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
        let runtime = self
            .0
            .docker
            .ping()
            .await
            .err()
            .map(|e| format!("dockerd does not answer: {e}"));
        let net = self
            .0
            .cni
            .ready()
            .await
            .err()
            .map(|e| format!("Network plugin returns error: {e}"));
        let cond = |type_: &str, reason: &str, err: Option<String>| cri::RuntimeCondition {
            r#type: type_.into(),
            status: err.is_none(),
            reason: if err.is_some() {
                reason.into()
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
                name: h.clone(),
                features: Some(cri::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            })
            .collect();
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![
                    cond("RuntimeReady", "DockerDaemonNotReady", runtime),
                    cond("NetworkReady", "NetworkPluginNotReady", net),
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
            Error::Unimplemented("checkpointing containers is not supported on docker".into())
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
            "container events are not supported by the dockershim; the node agent polls".into(),
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
