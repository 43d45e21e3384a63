//! [`Writer`] over `kube::Client`: pods/binding, pods/status and core/v1 events.

use k8s_openapi::api::core::v1::{Binding, Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::Value;

use crate::cycle::Writer;

/// Writes through the Kubernetes API.
#[derive(Clone)]
pub struct KubeWriter {
    client: kube::Client,
}

impl KubeWriter {
    /// A writer using `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    fn pods(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }
}

impl Writer for KubeWriter {
    async fn bind(&self, pod: &Pod, node: &str) -> Result<(), kube::Error> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.into()),
                ..Default::default()
            },
        };
        self.pods(pod)
            .create_subresource::<_, Value>("binding", &name, &PostParams::default(), &binding)
            .await
            .map(drop)
    }

    async fn patch_pod_status(&self, pod: &Pod, patch: &Value) -> Result<(), kube::Error> {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.pods(pod)
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map(drop)
    }

    async fn create_event(&self, event: &Event) -> Result<(), kube::Error> {
        let ns = event.metadata.namespace.as_deref().unwrap_or("default");
        Api::<Event>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), event)
            .await
            .map(drop)
    }

    async fn patch_event(&self, ns: &str, name: &str, patch: &Value) -> Result<(), kube::Error> {
        Api::<Event>::namespaced(self.client.clone(), ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(drop)
    }
}
