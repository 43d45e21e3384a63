//! Merge metadata of the built-in types: which lists merge by key, which are
//! sets, which are atomic. k8s-openapi's generated schemas do not carry the
//! `x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy` extensions,
//! so this is a hand-written table taken from the `patchStrategy` and
//! `patchMergeKey` struct tags of the upstream Go types (k8s.io/api). Fields not
//! in the table are maps merged recursively and atomic (replaced) lists, which
//! is also what server-side apply does for custom resources without schema hints.

use std::sync::OnceLock;

/// A node type in the merge schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// Unknown object: fields merge recursively, lists are atomic.
    Unknown,
    /// Replaced as a whole by server-side apply (e.g. LabelSelector).
    Atomic,
    /// A string map (labels, annotations, nodeSelector): owned granularly and as a whole.
    Map,
    /// Any built-in kind with nothing special beyond metadata.
    GenericRoot,
    /// Built-in kinds whose `status.conditions` merge by type.
    CondRoot,
    PodRoot,
    WorkloadRoot,
    PodTemplateRoot,
    ServiceRoot,
    NodeRoot,
    ServiceAccountRoot,
    Meta,
    OwnerRef,
    PodTemplateSpec,
    JobTemplateSpec,
    WorkloadSpec,
    PodSpec,
    Container,
    PodStatus,
    CondStatus,
    ServiceSpec,
    NodeSpec,
    NodeStatus,
}

/// How a list field merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// List of primitives merged as a set (`patchStrategy:"merge"` on a primitive list).
    Set,
    /// List of maps merged by the given key (`patchMergeKey`).
    Keyed(&'static str),
}

/// What the schema knows about a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    /// Type of the value (or of each item, for lists).
    pub ty: Ty,
    /// Merge behaviour when the value is a list.
    pub list: ListKind,
}

const fn f(ty: Ty) -> Field {
    Field {
        ty,
        list: ListKind::Atomic,
    }
}

const fn keyed(key: &'static str, ty: Ty) -> Field {
    Field {
        ty,
        list: ListKind::Keyed(key),
    }
}

const SET: Field = Field {
    ty: Ty::Unknown,
    list: ListKind::Set,
};

/// Schema of field `name` inside a value of type `parent`.
pub(crate) fn field(parent: Ty, name: &str) -> Field {
    use Ty::*;
    match (parent, name) {
        (Unknown | Map | Atomic, _) => f(parent),
        (
            GenericRoot | CondRoot | PodRoot | WorkloadRoot | PodTemplateRoot | ServiceRoot
            | NodeRoot | ServiceAccountRoot | PodTemplateSpec | JobTemplateSpec,
            "metadata",
        ) => f(Meta),
        (Meta, "labels" | "annotations") => f(Map),
        (Meta, "finalizers") => SET,
        (Meta, "ownerReferences") => keyed("uid", OwnerRef),
        (CondRoot | WorkloadRoot | ServiceRoot, "status") => f(CondStatus),
        (PodRoot, "spec") => f(PodSpec),
        (PodRoot, "status") => f(PodStatus),
        (WorkloadRoot, "spec") => f(WorkloadSpec),
        (PodTemplateRoot, "template") => f(PodTemplateSpec),
        (ServiceRoot, "spec") => f(ServiceSpec),
        (NodeRoot, "spec") => f(NodeSpec),
        (NodeRoot, "status") => f(NodeStatus),
        (ServiceAccountRoot, "secrets" | "imagePullSecrets") => keyed("name", Unknown),
        (WorkloadSpec, "template") => f(PodTemplateSpec),
        (WorkloadSpec, "jobTemplate") => f(JobTemplateSpec),
        (WorkloadSpec, "selector") => f(Atomic),
        (PodTemplateSpec | JobTemplateSpec, "spec") => f(if parent == PodTemplateSpec {
            PodSpec
        } else {
            WorkloadSpec
        }),
        (PodSpec, "containers" | "initContainers" | "ephemeralContainers") => {
            keyed("name", Container)
        }
        (PodSpec, "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates") => {
            keyed("name", Unknown)
        }
        (PodSpec, "hostAliases") => keyed("ip", Unknown),
        (PodSpec, "topologySpreadConstraints") => keyed("topologyKey", Unknown),
        (PodSpec, "nodeSelector" | "overhead") => f(Map),
        (Container, "env") => keyed("name", Unknown),
        (Container, "ports") => keyed("containerPort", Unknown),
        (Container, "volumeMounts") => keyed("mountPath", Unknown),
        (Container, "volumeDevices") => keyed("devicePath", Unknown),
        (PodStatus | CondStatus | NodeStatus, "conditions") => keyed("type", Unknown),
        (PodStatus, "podIPs" | "hostIPs") => keyed("ip", Unknown),
        (PodStatus, "resourceClaimStatuses") => keyed("name", Unknown),
        (ServiceSpec, "ports") => keyed("port", Unknown),
        (ServiceSpec, "selector") => f(Map),
        (NodeSpec, "podCIDRs") => SET,
        (NodeStatus, "addresses") => keyed("type", Unknown),
        (NodeStatus, "capacity" | "allocatable") => f(Map),
        _ => f(Unknown),
    }
}

/// Root type of a built-in kind, or None when `api_version`/`kind` is not a
/// built-in type (a custom resource).
pub(crate) fn root(api_version: &str, kind: &str) -> Option<Ty> {
    static BUILTIN: OnceLock<Vec<(String, String, String)>> = OnceLock::new();
    let builtin = BUILTIN.get_or_init(|| {
        crate::resource::builtin_resources()
            .into_iter()
            .map(|r| (r.group, r.version, r.kind))
            .collect()
    });
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    if !builtin
        .iter()
        .any(|(g, v, k)| g == group && v == version && k == kind)
    {
        return None;
    }
    Some(match kind {
        "Pod" => Ty::PodRoot,
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicationController"
        | "Job"
        | "CronJob" => Ty::WorkloadRoot,
        "PodTemplate" => Ty::PodTemplateRoot,
        "Service" => Ty::ServiceRoot,
        "Node" => Ty::NodeRoot,
        "ServiceAccount" => Ty::ServiceAccountRoot,
        "Namespace"
        | "PersistentVolume"
        | "PersistentVolumeClaim"
        | "PodDisruptionBudget"
        | "CustomResourceDefinition" => Ty::CondRoot,
        _ => Ty::GenericRoot,
    })
}

/// Root type for server-side apply and managed fields: the built-in table
/// when known, otherwise the schema-less default.
pub(crate) fn root_or_unknown(api_version: &str, kind: &str) -> Ty {
    root(api_version, kind).unwrap_or(Ty::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(root: Ty, names: &[&str]) -> Field {
        let mut fl = f(root);
        for n in names {
            fl = field(fl.ty, n);
        }
        fl
    }

    #[test]
    fn deployment_containers_merge_by_name() {
        let r = root("apps/v1", "Deployment").unwrap();
        let c = path(r, &["spec", "template", "spec", "containers"]);
        assert_eq!(c, keyed("name", Ty::Container));
        assert_eq!(field(c.ty, "ports").list, ListKind::Keyed("containerPort"));
        assert_eq!(field(c.ty, "args").list, ListKind::Atomic);
    }

    #[test]
    fn cronjob_reaches_pod_spec() {
        let r = root("batch/v1", "CronJob").unwrap();
        let c = path(
            r,
            &["spec", "jobTemplate", "spec", "template", "spec", "volumes"],
        );
        assert_eq!(c.list, ListKind::Keyed("name"));
    }

    #[test]
    fn tolerations_are_atomic_and_finalizers_a_set() {
        let r = root("v1", "Pod").unwrap();
        assert_eq!(path(r, &["spec", "tolerations"]).list, ListKind::Atomic);
        assert_eq!(path(r, &["metadata", "finalizers"]).list, ListKind::Set);
    }

    #[test]
    fn custom_kinds_are_not_builtin() {
        assert_eq!(root("example.com/v1", "Widget"), None);
        assert_eq!(root("v1", "Deployment"), None);
        assert_eq!(root("v1", "ConfigMap"), Some(Ty::GenericRoot));
    }
}
