//! The table of served resources: group, version, plural, kind, scope, verbs,
//! short names and subresources of every built-in type, plus the same shape
//! for custom resources defined by CRDs.

use std::any::TypeId;

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};

/// Verbs of a full read-write collection.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One served resource (a group/version/plural).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group, "" for core.
    pub group: String,
    /// Version, e.g. "v1".
    pub version: String,
    /// Plural lower-case name used in URLs, e.g. "deployments".
    pub plural: String,
    /// Singular lower-case name.
    pub singular: String,
    /// Kind, e.g. "Deployment".
    pub kind: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Verbs allowed on the collection/object.
    pub verbs: Vec<String>,
    /// kubectl short names, e.g. ["deploy"].
    pub short_names: Vec<String>,
    /// Categories, e.g. ["all"].
    pub categories: Vec<String>,
    /// Subresources served, e.g. ["status", "scale"].
    pub subresources: Vec<String>,
    /// True for resources served from a CustomResourceDefinition.
    pub custom: bool,
}

impl ResourceInfo {
    /// `apiVersion` string: "v1" or "apps/v1".
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `<kind>List`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Storage key prefix of the resource (all namespaces), ends with '/'.
    /// Versions of one group share storage, as in Kubernetes.
    pub fn key_prefix(&self) -> String {
        let g = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        format!("/registry/{g}/{}/", self.plural)
    }

    /// Storage key prefix for one namespace (or all, when `ns` is None).
    pub fn key_prefix_ns(&self, ns: Option<&str>) -> String {
        match (self.namespaced, ns) {
            (true, Some(ns)) => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// Storage key of one object.
    pub fn key(&self, ns: Option<&str>, name: &str) -> String {
        match (self.namespaced, ns) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    /// Whether the resource has the given subresource.
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.iter().any(|s| s == sub)
    }
}

fn info<K: Resource + 'static>(
    short: &[&str],
    categories: &[&str],
    subresources: &[&str],
    verbs: &[&str],
) -> ResourceInfo {
    let namespaced = TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>();
    debug_assert!(namespaced || TypeId::of::<K::Scope>() == TypeId::of::<ClusterResourceScope>());
    ResourceInfo {
        group: K::GROUP.to_string(),
        version: K::VERSION.to_string(),
        plural: K::URL_PATH_SEGMENT.to_string(),
        singular: K::KIND.to_lowercase(),
        kind: K::KIND.to_string(),
        namespaced,
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        subresources: subresources.iter().map(|s| s.to_string()).collect(),
        custom: false,
    }
}

/// Every built-in resource rkube serves.
pub fn builtin_resources() -> Vec<ResourceInfo> {
    use k8s_openapi::api::{
        admissionregistration::v1 as adm, certificates::v1 as certs, flowcontrol::v1 as flow,
        networking::v1 as net,
    };
    use k8s_openapi::api::{
        apps::v1 as apps, batch::v1 as batch, coordination::v1 as coord, core::v1 as core,
        discovery::v1 as disc, events::v1 as ev, node::v1 as node, policy::v1 as policy,
        rbac::v1 as rbac, scheduling::v1 as sched, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    let a = ALL_VERBS;
    let create_only: &[&str] = &["create"];
    let no_collection: &[&str] = &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    vec![
        info::<core::Namespace>(&["ns"], &[], &["status", "finalize"], no_collection),
        info::<core::Pod>(
            &["po"],
            &["all"],
            &[
                "status",
                "binding",
                "eviction",
                "ephemeralcontainers",
                "log",
                "exec",
                "attach",
                "portforward",
                "proxy",
            ],
            a,
        ),
        info::<core::Service>(&["svc"], &["all"], &["status", "proxy"], a),
        info::<core::Endpoints>(&["ep"], &[], &[], a),
        info::<core::ConfigMap>(&["cm"], &[], &[], a),
        info::<core::Secret>(&[], &[], &[], a),
        info::<core::ServiceAccount>(&["sa"], &[], &["token"], a),
        info::<core::Node>(&["no"], &[], &["status", "proxy"], a),
        info::<core::Event>(&["ev"], &[], &[], a),
        info::<core::PersistentVolume>(&["pv"], &[], &["status"], a),
        info::<core::PersistentVolumeClaim>(&["pvc"], &[], &["status"], a),
        info::<core::ResourceQuota>(&["quota"], &[], &["status"], a),
        info::<core::LimitRange>(&["limits"], &[], &[], a),
        info::<core::PodTemplate>(&[], &[], &[], a),
        info::<core::ReplicationController>(&["rc"], &["all"], &["status", "scale"], a),
        info::<core::Binding>(&[], &[], &[], create_only),
        info::<apps::Deployment>(&["deploy"], &["all"], &["status", "scale"], a),
        info::<apps::ReplicaSet>(&["rs"], &["all"], &["status", "scale"], a),
        info::<apps::StatefulSet>(&["sts"], &["all"], &["status", "scale"], a),
        info::<apps::DaemonSet>(&["ds"], &["all"], &["status"], a),
        info::<apps::ControllerRevision>(&[], &[], &[], a),
        info::<batch::Job>(&[], &["all"], &["status"], a),
        info::<batch::CronJob>(&["cj"], &["all"], &["status"], a),
        info::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(
            &["hpa"],
            &["all"],
            &["status"],
            a,
        ),
        info::<coord::Lease>(&[], &[], &[], a),
        info::<disc::EndpointSlice>(&[], &[], &[], a),
        info::<ev::Event>(&["ev"], &[], &[], a),
        info::<rbac::Role>(&[], &[], &[], a),
        info::<rbac::RoleBinding>(&[], &[], &[], a),
        info::<rbac::ClusterRole>(&[], &[], &[], a),
        info::<rbac::ClusterRoleBinding>(&[], &[], &[], a),
        info::<node::RuntimeClass>(&[], &[], &[], a),
        info::<storage::StorageClass>(&["sc"], &[], &[], a),
        info::<storage::CSIDriver>(&[], &[], &[], a),
        info::<storage::CSINode>(&[], &[], &[], a),
        info::<storage::VolumeAttachment>(&[], &[], &["status"], a),
        info::<sched::PriorityClass>(&["pc"], &[], &[], a),
        info::<policy::PodDisruptionBudget>(&["pdb"], &[], &["status"], a),
        info::<apiext::CustomResourceDefinition>(
            &["crd", "crds"],
            &["api-extensions"],
            &["status"],
            a,
        ),
        info::<adm::MutatingWebhookConfiguration>(&[], &["api-extensions"], &[], a),
        info::<adm::ValidatingWebhookConfiguration>(&[], &["api-extensions"], &[], a),
        info::<adm::ValidatingAdmissionPolicy>(&[], &["api-extensions"], &["status"], a),
        info::<adm::ValidatingAdmissionPolicyBinding>(&[], &["api-extensions"], &[], a),
        info::<flow::FlowSchema>(&[], &[], &["status"], a),
        info::<flow::PriorityLevelConfiguration>(&[], &[], &["status"], a),
        info::<certs::CertificateSigningRequest>(&["csr"], &[], &["status", "approval"], a),
        info::<net::Ingress>(&["ing"], &[], &["status"], a),
        info::<net::IngressClass>(&[], &[], &[], a),
        info::<net::ServiceCIDR>(&[], &[], &["status"], a),
        info::<net::IPAddress>(&["ip"], &[], &[], a),
        info::<k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService>(
            &[],
            &["api-extensions"],
            &["status"],
            a,
        ),
        // Virtual, create-only review resources.
        review::<k8s_openapi::api::authorization::v1::LocalSubjectAccessReview>(),
        review::<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview>(),
        review::<k8s_openapi::api::authorization::v1::SubjectAccessReview>(),
        review::<k8s_openapi::api::authorization::v1::SelfSubjectRulesReview>(),
        review::<k8s_openapi::api::authentication::v1::SelfSubjectReview>(),
        review::<k8s_openapi::api::authentication::v1::TokenReview>(),
    ]
}

fn review<K: Resource + 'static>() -> ResourceInfo {
    info::<K>(&[], &[], &[], &["create"])
}

/// Finds a resource by group, version and plural (or a "plural/subresource" path).
pub fn find<'a>(
    resources: &'a [ResourceInfo],
    group: &str,
    version: &str,
    plural: &str,
) -> Option<&'a ResourceInfo> {
    resources
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds a resource by group and kind (any version).
pub fn find_kind<'a>(
    resources: &'a [ResourceInfo],
    group: &str,
    kind: &str,
) -> Option<&'a ResourceInfo> {
    resources
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_have_expected_scope_and_keys() {
        let all = builtin_resources();
        let pods = find(&all, "", "v1", "pods").unwrap();
        assert!(pods.namespaced);
        assert_eq!(
            pods.key(Some("default"), "a"),
            "/registry/core/pods/default/a"
        );
        let nodes = find(&all, "", "v1", "nodes").unwrap();
        assert!(!nodes.namespaced);
        assert_eq!(nodes.key(None, "n1"), "/registry/core/nodes/n1");
        let deploy = find(&all, "apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.list_kind(), "DeploymentList");
    }
}
