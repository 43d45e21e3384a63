//! The per-request context of the resource handlers: the server state, the
//! classified request, the addressed resource, the user and the requested
//! representation, built by the dispatcher and read by every handler.

use std::sync::Arc;

use rkube_apimachinery::ResourceInfo;
use serde_json::Value;

use crate::auth::UserInfo;
use crate::request::{Representation, RequestInfo};
use crate::state::{AppState, Registry};

/// Everything a resource handler needs about its request.
pub struct Ctx {
    /// Shared server state.
    pub state: Arc<AppState>,
    /// The classified request.
    pub info: RequestInfo,
    /// The addressed resource.
    pub res: ResourceInfo,
    /// The authenticated user.
    pub user: UserInfo,
    /// Requested response representation.
    pub repr: Representation,
    /// The CRD when the resource is custom.
    pub crd: Option<Value>,
}

impl Ctx {
    /// Attaches the CRD object of a custom resource.
    pub fn with_crd(mut self, reg: &Registry) -> Self {
        self.crd = reg.crd_for(&self.res).cloned();
        self
    }

    /// Query parameter.
    pub fn q(&self, k: &str) -> Option<&str> {
        self.info.query.get(k).map(String::as_str)
    }

    /// dryRun=All requested.
    pub fn dry_run(&self) -> bool {
        self.q("dryRun").is_some_and(|v| v == "All")
    }

    /// The namespace of the request (None for cluster-scoped).
    pub fn ns(&self) -> Option<&str> {
        if self.res.namespaced {
            self.info.namespace.as_deref()
        } else {
            None
        }
    }

    /// The object name from the URL.
    pub fn name(&self) -> &str {
        self.info.name.as_deref().unwrap_or("")
    }

    /// Storage key of the addressed object.
    pub fn key(&self) -> String {
        self.res.key(self.ns(), self.name())
    }

    /// Field manager: `fieldManager` or the User-Agent's program name.
    pub fn manager(&self, req_ua: Option<&str>, default: &str) -> String {
        if let Some(m) = self.q("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        req_ua
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
            .unwrap_or_else(|| default.to_string())
    }

    /// The additionalPrinterColumns of a custom resource's version.
    pub(super) fn printer_columns(&self) -> Option<Vec<Value>> {
        self.crd
            .as_ref()
            .and_then(|crd| rkube_apimachinery::crd::printer_columns(crd, &self.res.version))
    }
}
