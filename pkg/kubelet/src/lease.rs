//! The node's heartbeat Lease in `kube-node-lease`: holderIdentity = node
//! name, leaseDurationSeconds 40, renewTime refreshed every 10 s, owned by
//! the Node so it goes away with it.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

/// Namespace of node leases.
pub const NAMESPACE: &str = "kube-node-lease";
/// leaseDurationSeconds.
pub const DURATION_SECONDS: i32 = 40;
/// How often renewTime moves.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// The Lease object of node `name` (owned by the Node with `uid`, if known).
pub fn lease_object(name: &str, node_uid: Option<&str>, now: &str) -> Value {
    let mut obj = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": DURATION_SECONDS, "renewTime": now},
    });
    if let Some(uid) = node_uid {
        obj["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]);
    }
    obj
}

/// Renews the Lease when due.
pub(crate) struct LeaseKeeper {
    api: Api<Lease>,
    name: String,
    owner: Option<String>,
    owner_set: bool,
    last: Option<Instant>,
}

impl LeaseKeeper {
    pub fn new(client: kube::Client, name: &str) -> Self {
        LeaseKeeper {
            api: Api::namespaced(client, NAMESPACE),
            name: name.to_string(),
            owner: None,
            owner_set: false,
            last: None,
        }
    }

    /// Records the Node's uid for the owner reference.
    pub fn set_owner(&mut self, uid: String) {
        if self.owner.as_deref() != Some(uid.as_str()) {
            self.owner = Some(uid);
            self.owner_set = false;
        }
    }

    /// Renews if 10 s have passed since the last renewal.
    pub async fn tick(&mut self) {
        if self.last.is_some_and(|t| t.elapsed() < RENEW_EVERY) {
            return;
        }
        match self.renew().await {
            Ok(()) => self.last = Some(Instant::now()),
            Err(e) => tracing::warn!("node lease: {e}"),
        }
    }

    async fn renew(&mut self) -> Result<(), kube::Error> {
        let now = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let obj = lease_object(&self.name, self.owner.as_deref(), &now);
        if self.api.get_opt(&self.name).await?.is_none() {
            let l: Lease = serde_json::from_value(obj).map_err(kube::Error::SerdeError)?;
            self.api.create(&PostParams::default(), &l).await?;
            self.owner_set = self.owner.is_some();
            return Ok(());
        }
        let mut patch = json!({"spec": obj["spec"].clone()});
        if !self.owner_set && self.owner.is_some() {
            patch["metadata"] =
                json!({"ownerReferences": obj["metadata"]["ownerReferences"].clone()});
        }
        self.api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.owner_set = self.owner.is_some();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object() {
        let l = lease_object("n1", Some("u"), "2024-01-01T00:00:00.000000Z");
        let lease: Lease = serde_json::from_value(l.clone()).unwrap();
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(l["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert!(lease_object("n1", None, "x")["metadata"]
            .get("ownerReferences")
            .is_none());
    }
}
