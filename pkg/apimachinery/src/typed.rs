//! Typed decoding of request bodies: every built-in object (and every options
//! body) must deserialize into its k8s-openapi type before the API server
//! stores or acts on it, so that typed clients (kube-rs, client-go) can always
//! read what was written. Errors carry kube-apiserver's wording, e.g.
//! `ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot
//! unmarshal number into Go struct field ConfigMap.data.a of type string`.
//!
//! Unknown fields are not rejected here (k8s-openapi ignores them); that is
//! the job of `fieldValidation`.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A body that does not deserialize into its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Go-style description, e.g. `json: cannot unmarshal number into Go
    /// struct field ConfigMap.data.a of type string`.
    pub detail: String,
    /// True when the only problem is a missing required field (Go decodes
    /// those as zero values; validation reports them).
    pub missing_field: bool,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Removes `null` members of every object in `v`, recursively. Go's decoder
/// treats `"field": null` as "leave the zero value" and never fails on it;
/// k8s-openapi rejects null for required fields, so objects are normalised
/// this way before they are checked and stored.
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// kube-apiserver's message for a body that does not decode into `kind`
/// of `version`.
pub fn cannot_handle(kind: &str, version: &str, err: &DecodeError) -> String {
    format!("{kind} in version \"{version}\" cannot be handled as a {kind}: {err}")
}

/// Decodes `v` as `T`, naming fields after `type_name` in errors.
pub fn decode<T: DeserializeOwned>(type_name: &str, v: &Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        go_error(type_name, &path, &inner)
    })
}

/// Checks that `v` decodes as `T`. A missing required field is not an
/// error: Go decodes it as the zero value and validation reports it when it
/// matters.
pub fn check_as<T: DeserializeOwned>(type_name: &str, v: &Value) -> Result<(), DecodeError> {
    match decode::<T>(type_name, v) {
        Ok(_) => Ok(()),
        Err(e) if e.missing_field => Ok(()),
        Err(e) => Err(e),
    }
}

/// Translates a serde error into encoding/json's wording where it can.
fn go_error(type_name: &str, path: &str, serde_msg: &str) -> DecodeError {
    let field = if path.is_empty() || path == "." {
        type_name.to_string()
    } else {
        format!("{type_name}.{path}")
    };
    if let Some(rest) = serde_msg.strip_prefix("invalid type: ") {
        if let Some((got, want)) = rest.rsplit_once(", expected ") {
            return DecodeError {
                detail: format!(
                    "json: cannot unmarshal {} into Go struct field {field} of type {}",
                    go_got(got),
                    go_want(want)
                ),
                missing_field: false,
            };
        }
    }
    if serde_msg.starts_with("missing field") {
        return DecodeError {
            detail: format!("{serde_msg} in {field}"),
            missing_field: true,
        };
    }
    DecodeError {
        detail: format!("json: {serde_msg} in Go struct field {field}"),
        missing_field: false,
    }
}

/// encoding/json's name of the JSON value that was found.
fn go_got(serde_unexpected: &str) -> &'static str {
    let s = serde_unexpected.trim();
    if s.starts_with("integer") || s.starts_with("floating point") {
        "number"
    } else if s.starts_with("string") || s.starts_with("character") {
        "string"
    } else if s.starts_with("boolean") {
        "bool"
    } else if s.starts_with("map") {
        "object"
    } else if s.starts_with("sequence") {
        "array"
    } else if s.starts_with("null") || s.starts_with("unit") {
        "null"
    } else {
        "value"
    }
}

/// Go's name of the type serde expected.
fn go_want(serde_expected: &str) -> String {
    let s = serde_expected.trim();
    match s {
        "a string" | "a borrowed string" | "string" => "string".into(),
        "a boolean" | "bool" => "bool".into(),
        "i8" | "i16" | "i32" | "i64" => format!("int{}", &s[1..]),
        "u8" | "u16" | "u32" | "u64" => format!("uint{}", &s[1..]),
        "f32" => "float32".into(),
        "f64" => "float64".into(),
        "a sequence" | "a vector" => "[]interface {}".into(),
        "a map" => "map[string]string".into(),
        other => other
            .trim_start_matches("struct ")
            .trim_start_matches("a ")
            .trim_start_matches("an ")
            .to_string(),
    }
}

macro_rules! kinds {
    ($group:expr, $version:expr, $kind:expr, $v:expr; $( ($g:literal, $ver:literal, $k:literal) => $t:ty ),* $(,)?) => {
        match ($group, $version, $kind) {
            $( ($g, $ver, $k) => Some(check_as::<$t>($k, $v)), )*
            _ => None,
        }
    };
}

/// Checks a built-in object against its k8s-openapi type. `None` when the
/// kind has no typed form here (custom resources, unknown kinds).
pub fn check_object(
    group: &str,
    version: &str,
    kind: &str,
    v: &Value,
) -> Option<Result<(), DecodeError>> {
    use k8s_openapi::api::{
        admissionregistration::v1 as adm, certificates::v1 as certs, flowcontrol::v1 as flow,
        networking::v1 as net,
    };
    use k8s_openapi::api::{
        apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
        autoscaling::v1 as autoscaling, batch::v1 as batch, coordination::v1 as coord,
        core::v1 as core, discovery::v1 as disc, events::v1 as ev, node::v1 as node,
        policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as sched, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    kinds!(group, version, kind, v;
        ("", "v1", "Namespace") => core::Namespace,
        ("", "v1", "Pod") => core::Pod,
        ("", "v1", "Service") => core::Service,
        ("", "v1", "Endpoints") => core::Endpoints,
        ("", "v1", "ConfigMap") => core::ConfigMap,
        ("", "v1", "Secret") => core::Secret,
        ("", "v1", "ServiceAccount") => core::ServiceAccount,
        ("", "v1", "Node") => core::Node,
        ("", "v1", "Event") => core::Event,
        ("", "v1", "PersistentVolume") => core::PersistentVolume,
        ("", "v1", "PersistentVolumeClaim") => core::PersistentVolumeClaim,
        ("", "v1", "ResourceQuota") => core::ResourceQuota,
        ("", "v1", "LimitRange") => core::LimitRange,
        ("", "v1", "PodTemplate") => core::PodTemplate,
        ("", "v1", "ReplicationController") => core::ReplicationController,
        ("", "v1", "Binding") => core::Binding,
        ("apps", "v1", "Deployment") => apps::Deployment,
        ("apps", "v1", "ReplicaSet") => apps::ReplicaSet,
        ("apps", "v1", "StatefulSet") => apps::StatefulSet,
        ("apps", "v1", "DaemonSet") => apps::DaemonSet,
        ("apps", "v1", "ControllerRevision") => apps::ControllerRevision,
        ("batch", "v1", "Job") => batch::Job,
        ("batch", "v1", "CronJob") => batch::CronJob,
        ("coordination.k8s.io", "v1", "Lease") => coord::Lease,
        ("discovery.k8s.io", "v1", "EndpointSlice") => disc::EndpointSlice,
        ("events.k8s.io", "v1", "Event") => ev::Event,
        ("rbac.authorization.k8s.io", "v1", "Role") => rbac::Role,
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => rbac::RoleBinding,
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => rbac::ClusterRole,
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => rbac::ClusterRoleBinding,
        ("node.k8s.io", "v1", "RuntimeClass") => node::RuntimeClass,
        ("storage.k8s.io", "v1", "StorageClass") => storage::StorageClass,
        ("storage.k8s.io", "v1", "CSIDriver") => storage::CSIDriver,
        ("storage.k8s.io", "v1", "CSINode") => storage::CSINode,
        ("storage.k8s.io", "v1", "VolumeAttachment") => storage::VolumeAttachment,
        ("scheduling.k8s.io", "v1", "PriorityClass") => sched::PriorityClass,
        ("policy", "v1", "PodDisruptionBudget") => policy::PodDisruptionBudget,
        ("policy", "v1", "Eviction") => policy::Eviction,
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => apiext::CustomResourceDefinition,
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => authz::SelfSubjectAccessReview,
        ("authorization.k8s.io", "v1", "SubjectAccessReview") => authz::SubjectAccessReview,
        ("authorization.k8s.io", "v1", "LocalSubjectAccessReview") => authz::LocalSubjectAccessReview,
        ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => authz::SelfSubjectRulesReview,
        ("authentication.k8s.io", "v1", "SelfSubjectReview") => authn::SelfSubjectReview,
        ("authentication.k8s.io", "v1", "TokenReview") => authn::TokenReview,
        ("authentication.k8s.io", "v1", "TokenRequest") => authn::TokenRequest,
        ("autoscaling", "v1", "Scale") => autoscaling::Scale,
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
        ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration") => adm::MutatingWebhookConfiguration,
        ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration") => adm::ValidatingWebhookConfiguration,
        ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy") => adm::ValidatingAdmissionPolicy,
        ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding") => adm::ValidatingAdmissionPolicyBinding,
        ("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema") => flow::FlowSchema,
        ("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration") => flow::PriorityLevelConfiguration,
        ("certificates.k8s.io", "v1", "CertificateSigningRequest") => certs::CertificateSigningRequest,
        ("networking.k8s.io", "v1", "Ingress") => net::Ingress,
        ("networking.k8s.io", "v1", "IngressClass") => net::IngressClass,
        ("networking.k8s.io", "v1", "ServiceCIDR") => net::ServiceCIDR,
        ("networking.k8s.io", "v1", "IPAddress") => net::IPAddress,
        ("apiregistration.k8s.io", "v1", "APIService") => k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
    )
}

/// Checks an options or subresource body whose apiVersion may be any
/// version of its group (e.g. `policy/v1beta1` Eviction, `meta.k8s.io/v1`
/// DeleteOptions): apiVersion and kind are not part of the check.
pub fn check_body(group: &str, kind: &str, v: &Value) -> Option<Result<(), DecodeError>> {
    let mut v = v.clone();
    strip_nulls(&mut v);
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    check_object(group, "v1", kind, &v)
}

/// Decodes a DeleteOptions body (apiVersion/kind not checked).
pub fn delete_options(
    v: &Value,
) -> Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions, DecodeError> {
    let mut v = v.clone();
    strip_nulls(&mut v);
    decode("DeleteOptions", &v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configmap_with_number_value_is_rejected_in_go_words() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"a": 1}});
        let err = check_object("", "v1", "ConfigMap", &cm)
            .unwrap()
            .unwrap_err();
        assert_eq!(
            cannot_handle("ConfigMap", "v1", &err),
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data.a of type string"
        );
        assert!(!err.missing_field);
    }

    #[test]
    fn deployment_with_string_replicas_is_rejected() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
            "spec": {"replicas": "three", "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let err = check_object("apps", "v1", "Deployment", &d)
            .unwrap()
            .unwrap_err();
        assert!(
            err.detail
                .contains("cannot unmarshal string into Go struct field Deployment.spec.replicas of type int32"),
            "{err}"
        );
    }

    #[test]
    fn accepts_what_upstream_accepts() {
        // int-or-string, numeric quantities, nulls, unknown fields.
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "labels": null},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                     "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i",
                        "resources": {"limits": {"cpu": 1, "memory": "1Gi"}, "requests": {"cpu": 0.5}},
                        "ports": [{"containerPort": 80}], "readinessProbe": {"httpGet": {"port": "http"}},
                        "unknownThing": {"x": 1}}]}}},
            "status": null});
        assert_eq!(check_object("apps", "v1", "Deployment", &d), Some(Ok(())));
    }

    #[test]
    fn missing_required_fields_are_flagged() {
        let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {}});
        // k8s-openapi defaults required fields, as Go does.
        assert_eq!(check_object("", "v1", "Pod", &p), Some(Ok(())));
    }

    #[test]
    fn options_bodies() {
        let err = delete_options(&json!({"gracePeriodSeconds": "x"})).unwrap_err();
        assert!(
            err.detail
                .contains("DeleteOptions.gracePeriodSeconds of type int64"),
            "{err}"
        );
        let o = delete_options(
            &json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 5,
            "preconditions": {"uid": "u"}}),
        )
        .unwrap();
        assert_eq!(o.grace_period_seconds, Some(5));
        let ev = json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "p"},
            "deleteOptions": {"gracePeriodSeconds": "x"}});
        assert!(check_body("policy", "Eviction", &ev).unwrap().is_err());
        let ev =
            json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "p"}});
        assert_eq!(check_body("policy", "Eviction", &ev), Some(Ok(())));
    }

    #[test]
    fn nulls_are_zero_values_as_in_go() {
        let mut tr = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "metadata": {"creationTimestamp": null},
            "spec": {"audiences": null, "boundObjectRef": null, "expirationSeconds": 600},
            "status": {"token": "", "expirationTimestamp": null}});
        assert!(check_body("authentication.k8s.io", "TokenRequest", &tr)
            .unwrap()
            .is_ok());
        strip_nulls(&mut tr);
        assert_eq!(tr["status"], json!({"token": ""}));
        assert_eq!(tr["metadata"], json!({}));
    }

    #[test]
    fn every_builtin_kind_has_a_type() {
        for r in crate::resource::builtin_resources() {
            let obj = serde_json::json!({"metadata": {"name": "x"}});
            assert!(
                check_object(&r.group, &r.version, &r.kind, &obj).is_some(),
                "no typed check for {}/{} {}",
                r.group,
                r.version,
                r.kind
            );
        }
    }
}
