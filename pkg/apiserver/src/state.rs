//! Shared server state: the store, the table of served resources (built-in
//! plus those of established CRDs), OpenAPI documents, RBAC and tokens.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use rkube_apimachinery::openapi::OpenApi;
use rkube_apimachinery::resource::{builtin_resources, ResourceInfo};
use rkube_store::Store;
use serde_json::Value;

use crate::auth::rbac::Rbac;
use crate::auth::token::TokenIssuer;

/// Served resources: built-ins and custom resources.
#[derive(Clone)]
pub struct Registry {
    /// Every served resource.
    pub resources: Arc<Vec<ResourceInfo>>,
    /// CRD objects by "<plural>.<group>".
    pub crds: BTreeMap<String, Value>,
}

impl Registry {
    /// Registry of built-in resources only.
    pub fn builtin() -> Self {
        Self {
            resources: Arc::new(builtin_resources()),
            crds: BTreeMap::new(),
        }
    }

    /// Rebuilds the resource list from built-ins and the given CRDs.
    pub fn with_crds(crds: BTreeMap<String, Value>) -> Self {
        let mut resources = builtin_resources();
        for crd in crds.values() {
            resources.extend(rkube_apimachinery::crd::crd_resources(crd));
        }
        Self {
            resources: Arc::new(resources),
            crds,
        }
    }

    /// Looks a resource up.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<ResourceInfo> {
        rkube_apimachinery::resource::find(&self.resources, group, version, plural).cloned()
    }

    /// The CRD serving a custom resource.
    pub fn crd_for(&self, info: &ResourceInfo) -> Option<&Value> {
        if !info.custom {
            return None;
        }
        self.crds.get(&format!("{}.{}", info.plural, info.group))
    }
}

/// State shared by every request.
pub struct AppState {
    /// The object store.
    pub store: Arc<dyn Store>,
    /// Served resources.
    pub registry: RwLock<Registry>,
    /// OpenAPI documents.
    pub openapi: RwLock<OpenApi>,
    /// RBAC authorizer.
    pub rbac: Arc<Rbac>,
    /// ServiceAccount token issuer/verifier.
    pub tokens: TokenIssuer,
    /// /version gitVersion.
    pub git_version: String,
    /// Cluster CA PEM (published in kube-root-ca.crt).
    pub ca_pem: String,
    /// Address clients reach the server at (for discovery and the kubernetes Service).
    pub advertise: std::net::SocketAddr,
    /// TLS client configuration for reaching node agents (cluster CA + apiserver-kubelet-client cert).
    pub kubelet_client: Option<Arc<rustls::ClientConfig>>,
}

impl AppState {
    /// Snapshot of the registry.
    pub fn registry(&self) -> Registry {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
