//! The few CRI calls the server makes, behind a small trait so handlers can
//! be tested with a fake runtime; implemented for the real CRI clients.

use std::collections::HashMap;

use futures::future::BoxFuture;
use rkube_cri::api;

/// Label keys the node agent puts on every sandbox and container.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Pod name label.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// Pod UID label.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// Container name label.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// A CRI call's failure, as text.
pub type CriResult<T> = Result<T, String>;

/// The runtime operations the server uses.
pub trait Runtime: Send + Sync {
    /// ListContainers filtered by labels.
    fn list_containers(
        &self,
        labels: HashMap<String, String>,
    ) -> BoxFuture<'_, CriResult<Vec<api::Container>>>;
    /// ContainerStatus (None when the container is gone).
    fn container_status(
        &self,
        id: String,
    ) -> BoxFuture<'_, CriResult<Option<api::ContainerStatus>>>;
    /// ListPodSandbox filtered by labels.
    fn list_sandboxes(
        &self,
        labels: HashMap<String, String>,
    ) -> BoxFuture<'_, CriResult<Vec<api::PodSandbox>>>;
    /// Exec: the streaming URL.
    fn exec(&self, req: api::ExecRequest) -> BoxFuture<'_, CriResult<String>>;
    /// Attach: the streaming URL.
    fn attach(&self, req: api::AttachRequest) -> BoxFuture<'_, CriResult<String>>;
    /// PortForward: the streaming URL.
    fn port_forward(&self, req: api::PortForwardRequest) -> BoxFuture<'_, CriResult<String>>;
    /// ListContainerStats of every container.
    fn container_stats(&self) -> BoxFuture<'_, CriResult<Vec<api::ContainerStats>>>;
    /// ListPodSandboxStats of every sandbox (runtimes may not implement it).
    fn sandbox_stats(&self) -> BoxFuture<'_, CriResult<Vec<api::PodSandboxStats>>>;
}

fn status_text(s: tonic::Status) -> String {
    format!("rpc error: code = {:?} desc = {}", s.code(), s.message())
}

impl Runtime for rkube_cri::Clients {
    fn list_containers(
        &self,
        labels: HashMap<String, String>,
    ) -> BoxFuture<'_, CriResult<Vec<api::Container>>> {
        let mut c = self.runtime.clone();
        Box::pin(async move {
            let req = api::ListContainersRequest {
                filter: Some(api::ContainerFilter {
                    label_selector: labels,
                    ..Default::default()
                }),
            };
            c.list_containers(req)
                .await
                .map(|r| r.into_inner().containers)
                .map_err(status_text)
        })
    }

    fn container_status(
        &self,
        id: String,
    ) -> BoxFuture<'_, CriResult<Option<api::ContainerStatus>>> {
        let mut c = self.runtime.clone();
        Box::pin(async move {
            let req = api::ContainerStatusRequest {
                container_id: id,
                verbose: false,
            };
            match c.container_status(req).await {
                Ok(r) => Ok(r.into_inner().status),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
                Err(s) => Err(status_text(s)),
            }
        })
    }

    fn list_sandboxes(
        &self,
        labels: HashMap<String, String>,
    ) -> BoxFuture<'_, CriResult<Vec<api::PodSandbox>>> {
        let mut c = self.runtime.clone();
        Box::pin(async move {
            let req = api::ListPodSandboxRequest {
                filter: Some(api::PodSandboxFilter {
                    label_selector: labels,
                    ..Default::default()
                }),
            };
            c.list_pod_sandbox(req)
                .await
                .map(|r| r.into_inner().items)
                .map_err(status_text)
        })
    }

    fn exec(&self, req: api::ExecRequest) -> BoxFuture<'_, CriResult<String>> {
        let mut c = self.runtime.clone();
        Box::pin(async move {
            c.exec(req)
                .await
                .map(|r| r.into_inner().url)
                .map_err(status_text)
        })
    }

    fn attach(&self, req: api::AttachRequest) -> BoxFuture<'_, CriResult<String>> {
        let mut c = self.runtime.clone();
        Box::pin(async move {
            c.attach(req)
                .await
                .map(|r| r.into_inner().url)
                .map_err(status_text)
        })
    }

    fn port_forward(&self, req: api::PortForwardRequest) -> BoxFuture<'_, CriResult<String>> {
        let mut c = self.runtime.clone();
        Box::pin(async move {
            c.port_forward(req)
                .await
                .map(|r| r.into_inner().url)
                .map_err(status_text)
        })
    }

    fn container_stats(&self) -> BoxFuture<'_, CriResult<Vec<api::ContainerStats>>> {
        let mut c = self.runtime.clone();
        Box::pin(async move {
            c.list_container_stats(api::ListContainerStatsRequest { filter: None })
                .await
                .map(|r| r.into_inner().stats)
                .map_err(status_text)
        })
    }

    fn sandbox_stats(&self) -> BoxFuture<'_, CriResult<Vec<api::PodSandboxStats>>> {
        let mut c = self.runtime.clone();
        Box::pin(async move {
            c.list_pod_sandbox_stats(api::ListPodSandboxStatsRequest { filter: None })
                .await
                .map(|r| r.into_inner().stats)
                .map_err(status_text)
        })
    }
}

/// Labels selecting one container of one pod.
pub fn container_labels(ns: &str, pod: &str, container: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
        (LABEL_POD_NAME.to_string(), pod.to_string()),
        (LABEL_CONTAINER_NAME.to_string(), container.to_string()),
    ])
}

/// The containers of one pod's container name, newest first: the first is
/// the current instance, the next of the same pod UID the previous one.
pub fn newest_first(mut cs: Vec<api::Container>) -> Vec<api::Container> {
    cs.sort_by(|a, b| {
        let attempt = |c: &api::Container| c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
        (b.created_at, attempt(b)).cmp(&(a.created_at, attempt(a)))
    });
    if let Some(uid) = cs
        .first()
        .and_then(|c| c.labels.get(LABEL_POD_UID))
        .cloned()
    {
        cs.retain(|c| c.labels.get(LABEL_POD_UID).is_none_or(|u| *u == uid));
    }
    cs
}

/// Whether a CRI container state is running.
pub fn is_running(state: i32) -> bool {
    state == api::ContainerState::ContainerRunning as i32
}

/// The newest ready sandbox of a pod.
pub async fn find_sandbox(
    rt: &dyn Runtime,
    ns: &str,
    pod: &str,
) -> CriResult<Option<api::PodSandbox>> {
    let labels = HashMap::from([
        (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
        (LABEL_POD_NAME.to_string(), pod.to_string()),
    ]);
    let mut sbs = rt.list_sandboxes(labels).await?;
    sbs.retain(|s| s.state == api::PodSandboxState::SandboxReady as i32);
    sbs.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    Ok(sbs.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, uid: &str, attempt: u32, created: i64) -> api::Container {
        api::Container {
            id: id.into(),
            created_at: created,
            metadata: Some(api::ContainerMetadata {
                name: "app".into(),
                attempt,
            }),
            labels: HashMap::from([(LABEL_POD_UID.to_string(), uid.to_string())]),
            ..Default::default()
        }
    }

    #[test]
    fn newest_first_keeps_current_pod() {
        let cs = newest_first(vec![
            c("a0", "u1", 0, 10),
            c("old", "u0", 3, 5),
            c("a1", "u1", 1, 20),
        ]);
        let ids: Vec<_> = cs.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a1", "a0"]);
    }
}
