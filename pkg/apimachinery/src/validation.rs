//! Defaulting and validation of built-in objects held as `serde_json::Value`,
//! following kube-apiserver for the common cases: [`default_object`] fills
//! the fields Kubernetes defaults, [`validate`] returns the field causes of
//! a 422 Invalid (empty when valid), with upstream's reasons, field paths and
//! messages. Custom resources get [`validate_object_meta`] only.

mod corev1;
mod crd;
mod defaults;
mod field;
mod meta;
mod names;
mod pod;
mod rbac;
mod workloads;

use std::sync::OnceLock;

use serde_json::Value;

pub use corev1::MAX_DATA_SIZE;
pub use defaults::{default_job_selector, default_object, preserve_service_allocations};
pub use meta::{validate_object_meta, NameRule, TOTAL_ANNOTATION_SIZE_LIMIT};
pub use names::{
    is_config_map_key, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_env_var_name,
    is_qualified_name, is_valid_label_value, is_valid_path_segment_name, is_valid_port_name,
};

use field::{get, str_at, Errs};
use workloads::Workload;

use crate::resource::{builtin_resources, ResourceInfo};
use crate::Cause;

const RBAC: &str = "rbac.authorization.k8s.io";

/// Kinds with no stored metadata to validate (create-only reviews).
const REVIEWS: &[&str] = &[
    "TokenReview",
    "SubjectAccessReview",
    "SelfSubjectAccessReview",
    "LocalSubjectAccessReview",
    "SelfSubjectRulesReview",
    "SelfSubjectReview",
];

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The rule an object's `metadata.name` must follow.
pub fn name_rule_for(api_version: &str, kind: &str) -> NameRule {
    match (group_of(api_version), kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        (RBAC, "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding") => {
            NameRule::PathSegment
        }
        ("networking.k8s.io", "IPAddress") => NameRule::CanonicalIp,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Whether a built-in kind is namespaced; None for kinds not built in.
fn builtin_namespaced(group: &str, kind: &str) -> Option<bool> {
    static TABLE: OnceLock<Vec<ResourceInfo>> = OnceLock::new();
    TABLE
        .get_or_init(builtin_resources)
        .iter()
        .find(|r| r.group == group && r.kind == kind)
        .map(|r| r.namespaced)
}

/// Validates an object for create (`old` None) or update (`old` Some).
/// Kinds that are not built in get metadata checks only, with the scope
/// taken from whether a namespace is set; the API server should rather call
/// [`validate_object_meta`] with the CRD's scope for custom resources.
pub fn validate(api_version: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let group = group_of(api_version);
    let mut e = Errs::default();
    if REVIEWS.contains(&kind) {
        return e.0;
    }
    let namespaced = builtin_namespaced(group, kind)
        .unwrap_or_else(|| !str_at(obj, &["metadata", "namespace"]).is_empty());
    let meta = get(obj, &["metadata"]).unwrap_or(&Value::Null);
    meta::object_meta(
        meta,
        "metadata",
        namespaced,
        name_rule_for(api_version, kind),
        &mut e,
    );
    if let Some(old) = old {
        meta::object_meta_update(obj, old, &mut e);
    }
    let spec = || get(obj, &["spec"]).unwrap_or(&Value::Null);
    match (group, kind) {
        ("", "Pod") => {
            pod::pod_spec(spec(), "spec", pod::SpecOf::Pod, &mut e);
            if let Some(old) = old {
                pod::pod_update(obj, old, &mut e);
            }
        }
        ("", "PodTemplate") => pod::pod_template(get(obj, &["template"]), "template", &mut e),
        ("", "ReplicationController") => workloads::replication_controller(obj, &mut e),
        ("", "Service") => corev1::service(obj, old, &mut e),
        ("", "ConfigMap") => corev1::config_map(obj, old, &mut e),
        ("", "Secret") => corev1::secret(obj, old, &mut e),
        ("", "PersistentVolumeClaim") => corev1::pvc(obj, old, &mut e),
        ("", "Event") => corev1::event(obj, &mut e),
        ("", "Binding") => {
            let kind = str_at(obj, &["target", "kind"]);
            if !matches!(kind, "" | "Node") {
                e.not_supported("target.kind", kind, &["Node", "<empty>"]);
            }
            if str_at(obj, &["target", "name"]).is_empty() {
                e.required("target.name", "");
            }
        }
        ("apps", "Deployment") => workloads::workload(Workload::Deployment, obj, old, &mut e),
        ("apps", "ReplicaSet") => workloads::workload(Workload::ReplicaSet, obj, old, &mut e),
        ("apps", "StatefulSet") => workloads::workload(Workload::StatefulSet, obj, old, &mut e),
        ("apps", "DaemonSet") => workloads::workload(Workload::DaemonSet, obj, old, &mut e),
        ("batch", "Job") => workloads::job(obj, old, &mut e),
        ("batch", "CronJob") => workloads::cron_job(obj, &mut e),
        ("coordination.k8s.io", "Lease") => corev1::lease(obj, &mut e),
        (RBAC, "Role") => rbac::role(obj, true, &mut e),
        (RBAC, "ClusterRole") => rbac::role(obj, false, &mut e),
        (RBAC, "RoleBinding") => rbac::binding(obj, old, true, &mut e),
        (RBAC, "ClusterRoleBinding") => rbac::binding(obj, old, false, &mut e),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd::crd(obj, old, &mut e),
        ("scheduling.k8s.io", "PriorityClass") => {
            if let Some(old) = old {
                if obj.get("value") != old.get("value") {
                    e.forbidden("value", "may not be changed in an update.");
                }
                e.immutable(
                    "preemptionPolicy",
                    obj.get("preemptionPolicy"),
                    old.get("preemptionPolicy"),
                );
            }
        }
        _ => {}
    }
    e.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(c: &[Cause]) -> Vec<&str> {
        c.iter().map(|c| c.field.as_str()).collect()
    }

    fn pod(name: &str) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}});
        default_object("v1", "Pod", &mut p);
        p
    }

    fn deployment(selector: &str, label: &str) -> Value {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": selector}},
                "template": {"metadata": {"labels": {"app": label}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        default_object("apps/v1", "Deployment", &mut d);
        d
    }

    #[test]
    fn bad_name_gets_upstream_message() {
        let c = validate("v1", "Pod", &pod("Bad_Name"), None);
        assert_eq!(fields(&c), ["metadata.name"]);
        assert_eq!(c[0].reason, "FieldValueInvalid");
        assert_eq!(
            c[0].message,
            "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
    }

    #[test]
    fn name_rules() {
        assert_eq!(name_rule_for("v1", "Namespace"), NameRule::Dns1123Label);
        assert_eq!(name_rule_for("v1", "Service"), NameRule::Dns1035Label);
        assert_eq!(
            name_rule_for("rbac.authorization.k8s.io/v1", "ClusterRole"),
            NameRule::PathSegment
        );
        assert_eq!(
            name_rule_for("apps/v1", "Deployment"),
            NameRule::Dns1123Subdomain
        );
        let svc = json!({"metadata": {"name": "1svc", "namespace": "default"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}});
        let c = validate("v1", "Service", &svc, None);
        assert!(c[0].message.contains("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"));
        let ns = json!({"metadata": {"name": "a.b"}});
        assert_eq!(
            fields(&validate("v1", "Namespace", &ns, None)),
            ["metadata.name"]
        );
        let cr = json!({"metadata": {"name": "system:controller:x"}, "rules": []});
        assert!(validate("rbac.authorization.k8s.io/v1", "ClusterRole", &cr, None).is_empty());
    }

    #[test]
    fn pod_create_checks() {
        assert!(validate("v1", "Pod", &pod("web"), None).is_empty());
        let mut p = pod("web");
        p["spec"]["containers"] = json!([]);
        let c = validate("v1", "Pod", &p, None);
        assert_eq!(
            (c[0].field.as_str(), c[0].message.as_str()),
            ("spec.containers", "Required value")
        );
        let mut p = pod("web");
        let c0 = p["spec"]["containers"][0].clone();
        p["spec"]["containers"].as_array_mut().unwrap().push(c0);
        let c = validate("v1", "Pod", &p, None);
        assert_eq!(fields(&c), ["spec.containers[1].name"]);
        assert_eq!(c[0].reason, "FieldValueDuplicate");
    }

    #[test]
    fn pod_update_image_only() {
        let old = pod("web");
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:1.28");
        new["metadata"]["labels"] = json!({"tier": "fe"});
        assert!(validate("v1", "Pod", &new, Some(&old)).is_empty());
        new["spec"]["restartPolicy"] = json!("Never");
        let c = validate("v1", "Pod", &new, Some(&old));
        assert_eq!(fields(&c), ["spec"]);
        assert_eq!(c[0].reason, "FieldValueForbidden");
        assert!(c[0]
            .message
            .starts_with("Forbidden: pod updates may not change fields other than "));
        let mut renamed = old.clone();
        renamed["metadata"]["name"] = json!("other");
        assert_eq!(
            validate("v1", "Pod", &renamed, Some(&old))[0].message,
            "Invalid value: \"other\": field is immutable"
        );
    }

    #[test]
    fn deployment_selector_rules() {
        assert!(validate("apps/v1", "Deployment", &deployment("web", "web"), None).is_empty());
        let c = validate("apps/v1", "Deployment", &deployment("web", "api"), None);
        assert_eq!(fields(&c), ["spec.template.metadata.labels"]);
        assert_eq!(
            c[0].message,
            "Invalid value: {\"app\":\"api\"}: `selector` does not match template `labels`"
        );
        let c = validate(
            "apps/v1",
            "Deployment",
            &deployment("v2", "v2"),
            Some(&deployment("web", "web")),
        );
        assert_eq!(fields(&c), ["spec.selector"]);
        assert!(c[0].message.ends_with(": field is immutable"));
        let mut d = deployment("web", "web");
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["spec"]["containers"][0]["name"] = json!("Web");
        let c = validate("apps/v1", "Deployment", &d, None);
        assert_eq!(
            fields(&c),
            ["spec.replicas", "spec.template.spec.containers[0].name"]
        );
    }

    #[test]
    fn defaulted_job_is_valid_and_cluster_scope_is_enforced() {
        let mut j = json!({"metadata": {"name": "pi", "namespace": "default"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}});
        default_object("batch/v1", "Job", &mut j);
        default_job_selector(&mut j, "6a1c3e0e-0000-4000-8000-000000000001");
        assert!(validate("batch/v1", "Job", &j, None).is_empty());
        let node = json!({"metadata": {"name": "n1", "namespace": "default"}});
        assert_eq!(
            validate("v1", "Node", &node, None)[0].message,
            "Forbidden: not allowed on this type"
        );
        let review = json!({"spec": {"token": "x"}});
        assert!(validate("authentication.k8s.io/v1", "TokenReview", &review, None).is_empty());
    }
}
