//! Strategic-merge and list-type metadata of built-in types. k8s-openapi's
//! schemas omit the `x-kubernetes-patch-*` and `x-kubernetes-list-*`
//! extensions that kube-apiserver publishes (they come from Go struct tags
//! and `+listType` markers in k8s.io/api); kubectl's client-side apply reads
//! them from OpenAPI, so the entries that matter are restated here.

use serde_json::{json, Map, Value};

/// (definition, property, patch merge key, patch strategy, list type, list map keys)
type Row = (&'static str, &'static str, &'static str, &'static str, &'static str, &'static [&'static str]);

const CONDITIONS: &[&str] = &["type"];

const ROWS: &[Row] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "uid", "merge", "", &[]),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "", "merge", "", &[]),
    ("io.k8s.api.core.v1.PodSpec", "containers", "name", "merge", "", &[]),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "name", "merge", "", &[]),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "name", "merge", "", &[]),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "name", "merge,retainKeys", "", &[]),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "name", "merge", "", &[]),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "ip", "merge", "", &[]),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "topologyKey", "merge", "map", &["topologyKey", "whenUnsatisfiable"]),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "name", "merge", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "name", "merge,retainKeys", "map", &["name"]),
    ("io.k8s.api.core.v1.Container", "ports", "containerPort", "merge", "map", &["containerPort", "protocol"]),
    ("io.k8s.api.core.v1.Container", "env", "name", "merge", "", &[]),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "mountPath", "merge", "", &[]),
    ("io.k8s.api.core.v1.Container", "volumeDevices", "devicePath", "merge", "", &[]),
    ("io.k8s.api.core.v1.Container", "resizePolicy", "", "", "atomic", &[]),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", "containerPort", "merge", "map", &["containerPort", "protocol"]),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", "name", "merge", "", &[]),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "mountPath", "merge", "", &[]),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "devicePath", "merge", "", &[]),
    ("io.k8s.api.core.v1.ResourceRequirements", "claims", "", "", "map", &["name"]),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "type", "merge", "", &[]),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "ip", "merge", "", &[]),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "ip", "merge", "", &[]),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "", "merge", "", &[]),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "type", "merge", "", &[]),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "type", "merge", "", &[]),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", "type", "merge", "", &[]),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", "type", "merge", "", &[]),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", "type", "merge", "", &[]),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "port", "merge", "map", &["port", "protocol"]),
    ("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", "", "", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", "", "", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "type", "merge", "map", CONDITIONS),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", "name", "merge", "", &[]),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "", "retainKeys", "", &[]),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "type", "merge", "", &[]),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "type", "merge", "", &[]),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "type", "merge", "", &[]),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "type", "merge", "", &[]),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "type", "merge", "atomic", &[]),
    ("io.k8s.api.batch.v1.CronJobStatus", "active", "", "", "atomic", &[]),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "type", "merge", "map", CONDITIONS),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", "type", "merge", "map", CONDITIONS),
    ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", "", "", "atomic", &[]),
    ("io.k8s.api.discovery.v1.EndpointSlice", "ports", "", "", "atomic", &[]),
];

/// Adds the extensions to `defs` (a name → schema map).
pub(crate) fn apply(defs: &mut Map<String, Value>) {
    for (def, prop, key, strategy, list_type, map_keys) in ROWS {
        let Some(p) = defs
            .get_mut(*def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(*prop))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        if !key.is_empty() {
            p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
        if !strategy.is_empty() {
            p.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        }
        if !list_type.is_empty() {
            p.insert("x-kubernetes-list-type".into(), json!(list_type));
        }
        if !map_keys.is_empty() {
            p.insert("x-kubernetes-list-map-keys".into(), json!(map_keys));
        }
    }
}
