//! End-to-end tests: objects encoded with `k8s-pb`'s prost types, wrapped in
//! the `runtime.Unknown` envelope the way client-go does, decoded to JSON.

use std::collections::BTreeMap;

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde_json::json;

use super::*;

fn envelope(api_version: &str, kind: &str, obj: &impl prost::Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(obj.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [MAGIC, &unknown.encode_to_vec()].concat()
}

fn s(v: &str) -> Option<String> {
    Some(v.into())
}

fn map<V: Clone>(pairs: &[(&str, V)]) -> BTreeMap<String, V> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// ObjectMeta as Go marshals it: non-pointer fields always present.
fn go_meta(name: &str, namespace: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

fn int_or_string_int(v: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(v),
        str_val: s(""),
    }
}

#[test]
fn content_types() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "Application/VND.kubernetes.protobuf ; stream=watch"
    ));
    assert!(!is_protobuf("application/json"));
    assert!(!is_protobuf("application/vnd.kubernetes.protobuf+json"));
}

#[test]
fn config_map_with_metadata() {
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            labels: map(&[("app", "web".to_string())]),
            annotations: map(&[("note", "x".to_string())]),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            owner_references: vec![meta::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("ReplicaSet"),
                name: s("web-1"),
                uid: s("1234"),
                controller: Some(true),
                block_owner_deletion: Some(false),
            }],
            ..go_meta("cfg", "default")
        }),
        data: map(&[("a", "1".to_string()), ("empty", String::new())]),
        binary_data: map(&[("bin", vec![0u8, 1, 2, 255])]),
        immutable: None,
    };
    let got = decode_object(&envelope("v1", "ConfigMap", &cm), None).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "cfg",
                "namespace": "default",
                "creationTimestamp": "2023-11-14T22:13:20Z",
                "labels": {"app": "web"},
                "annotations": {"note": "x"},
                "ownerReferences": [{
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-1",
                    "uid": "1234",
                    "controller": true,
                    "blockOwnerDeletion": false,
                }],
            },
            "data": {"a": "1", "empty": ""},
            "binaryData": {"bin": "AAEC/w=="},
        })
    );
}

#[test]
fn deployment() {
    let container = core::Container {
        name: s("nginx"),
        image: s("nginx:1.27"),
        ports: vec![core::ContainerPort {
            name: s(""),
            host_port: Some(0),
            container_port: Some(80),
            protocol: s("TCP"),
            host_ip: s(""),
        }],
        resources: Some(core::ResourceRequirements {
            limits: map(&[("cpu", quantity("500m")), ("memory", quantity("128Mi"))]),
            ..Default::default()
        }),
        stdin: Some(false),
        ..Default::default()
    };
    let deploy = k8s_pb::api::apps::v1::Deployment {
        metadata: Some(go_meta("web", "")),
        spec: Some(k8s_pb::api::apps::v1::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: map(&[("app", "web".to_string())]),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: map(&[("app", "web".to_string())]),
                    ..go_meta("", "")
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    restart_policy: s(""),
                    host_network: Some(false),
                    automount_service_account_token: Some(false),
                    ..Default::default()
                }),
            }),
            strategy: Some(Default::default()),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(Default::default()),
    };
    let got = decode_object(&envelope("apps/v1", "Deployment", &deploy), None).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": null},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                        }],
                        "automountServiceAccountToken": false,
                    },
                },
                "strategy": {},
            },
            "status": {},
        })
    );
}

#[test]
fn service_int_or_string() {
    let svc = core::Service {
        metadata: Some(go_meta("web", "default")),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: s("http"),
                    port: Some(80),
                    target_port: Some(int_or_string_int(8080)),
                    ..Default::default()
                },
                core::ServicePort {
                    name: s("named"),
                    port: Some(81),
                    target_port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("web"),
                    }),
                    ..Default::default()
                },
            ],
            selector: map(&[("app", "web".to_string())]),
            r#type: s("ClusterIP"),
            ..Default::default()
        }),
        status: None,
    };
    let got = decode_object(&envelope("v1", "Service", &svc), None).unwrap();
    assert_eq!(
        got["spec"],
        json!({
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "named", "port": 81, "targetPort": "web"},
            ],
            "selector": {"app": "web"},
            "type": "ClusterIP",
        })
    );
}

#[test]
fn pod_acronyms_inline_and_probes() {
    let pod = core::Pod {
        metadata: Some(go_meta("p", "default")),
        spec: Some(core::PodSpec {
            host_ipc: Some(true),
            host_pid: Some(true),
            volumes: vec![core::Volume {
                name: s("cfg"),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference { name: s("cfg") }),
                        default_mode: Some(0o644),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }],
            containers: vec![core::Container {
                name: s("c"),
                liveness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            path: s("/healthz"),
                            port: Some(int_or_string_int(8080)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    period_seconds: Some(10),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            security_context: Some(core::PodSecurityContext {
                supplemental_groups: vec![1000, -1],
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            pod_ip: s("10.0.0.5"),
            pod_ips: vec![core::PodIp { ip: s("10.0.0.5") }],
            host_ips: vec![core::HostIp {
                ip: s("192.168.1.2"),
            }],
            ..Default::default()
        }),
    };
    let got = decode_object(&envelope("v1", "Pod", &pod), None).unwrap();
    assert_eq!(
        got["spec"],
        json!({
            "hostIPC": true,
            "hostPID": true,
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}}],
            "containers": [{
                "name": "c",
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": 8080},
                    "periodSeconds": 10,
                },
            }],
            "securityContext": {"supplementalGroups": [1000, -1]},
        })
    );
    assert_eq!(
        got["status"],
        json!({"podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}], "hostIPs": [{"ip": "192.168.1.2"}]})
    );
}

#[test]
fn self_subject_access_review() {
    use k8s_pb::api::authorization::v1 as authz;
    let review = authz::SelfSubjectAccessReview {
        metadata: Some(go_meta("", "")),
        spec: Some(authz::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authz::ResourceAttributes {
                namespace: s("default"),
                verb: s("create"),
                group: s(""),
                resource: s("pods"),
                ..Default::default()
            }),
            non_resource_attributes: None,
        }),
        status: Some(authz::SubjectAccessReviewStatus {
            allowed: Some(false),
            ..Default::default()
        }),
    };
    let got = decode_object(
        &envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &review,
        ),
        None,
    )
    .unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}},
            "status": {"allowed": false},
        })
    );
}

#[test]
fn subject_access_review_extra() {
    use k8s_pb::api::authorization::v1 as authz;
    let review = authz::SubjectAccessReview {
        metadata: None,
        spec: Some(authz::SubjectAccessReviewSpec {
            user: s("alice"),
            groups: vec!["dev".into()],
            extra: map(&[(
                "scopes",
                authz::ExtraValue {
                    items: vec!["a".into(), "b".into()],
                },
            )]),
            ..Default::default()
        }),
        status: None,
    };
    let got = decode_object(
        &envelope("authorization.k8s.io/v1", "SubjectAccessReview", &review),
        None,
    )
    .unwrap();
    assert_eq!(
        got["spec"],
        json!({"user": "alice", "groups": ["dev"], "extra": {"scopes": ["a", "b"]}})
    );
}

#[test]
fn token_request() {
    use k8s_pb::api::authentication::v1 as authn;
    let req = authn::TokenRequest {
        metadata: Some(go_meta("default", "default")),
        spec: Some(authn::TokenRequestSpec {
            audiences: vec!["https://kubernetes.default.svc".into()],
            expiration_seconds: Some(3600),
            bound_object_ref: Some(authn::BoundObjectReference {
                kind: s("Pod"),
                api_version: s("v1"),
                name: s("p"),
                u_id: s("u1"),
            }),
        }),
        status: Some(authn::TokenRequestStatus {
            token: s(""),
            expiration_timestamp: Some(meta::Time::default()),
        }),
    };
    let got = decode_object(
        &envelope("authentication.k8s.io/v1", "TokenRequest", &req),
        None,
    )
    .unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": "default", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "audiences": ["https://kubernetes.default.svc"],
                "expirationSeconds": 3600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u1"},
            },
            "status": {"token": "", "expirationTimestamp": null},
        })
    );
}

#[test]
fn namespace_and_role_binding() {
    let ns = core::Namespace {
        metadata: Some(go_meta("demo", "")),
        spec: Some(Default::default()),
        status: Some(core::NamespaceStatus {
            phase: s(""),
            conditions: vec![],
        }),
    };
    let got = decode_object(&envelope("v1", "Namespace", &ns), None).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "demo", "creationTimestamp": null},
            "spec": {},
            "status": {},
        })
    );

    use k8s_pb::api::rbac::v1 as rbac;
    let rb = rbac::RoleBinding {
        metadata: Some(go_meta("rb", "default")),
        subjects: vec![rbac::Subject {
            kind: s("ServiceAccount"),
            api_group: s(""),
            name: s("default"),
            namespace: s("default"),
        }],
        role_ref: Some(rbac::RoleRef {
            api_group: s("rbac.authorization.k8s.io"),
            kind: s("ClusterRole"),
            name: s("view"),
        }),
    };
    let got = decode_object(
        &envelope("rbac.authorization.k8s.io/v1", "RoleBinding", &rb),
        None,
    )
    .unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "rb", "namespace": "default", "creationTimestamp": null},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        })
    );
}

#[test]
fn secret_bytes_are_base64() {
    let secret = core::Secret {
        metadata: Some(go_meta("s", "default")),
        data: map(&[("password", b"hunter2".to_vec()), ("empty", vec![])]),
        string_data: map(&[("plain", "text".to_string())]),
        r#type: s("Opaque"),
        immutable: None,
    };
    let got = decode_object(&envelope("v1", "Secret", &secret), None).unwrap();
    assert_eq!(
        got["data"],
        json!({"password": "aHVudGVyMg==", "empty": ""})
    );
    assert_eq!(got["stringData"], json!({"plain": "text"}));
    assert_eq!(got["type"], "Opaque");
}

#[test]
fn delete_options_and_eviction() {
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(meta::Preconditions {
            uid: s("u1"),
            resource_version: None,
        }),
        orphan_dependents: None,
        propagation_policy: s("Foreground"),
        dry_run: vec!["All".into()],
        ignore_store_read_error_with_cluster_breaking_potential: None,
    };
    let want = json!({
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "u1"},
        "propagationPolicy": "Foreground",
        "dryRun": ["All"],
    });
    for api_version in ["apps/v1", "v1", "meta.k8s.io/v1"] {
        let got = decode_object(&envelope(api_version, "DeleteOptions", &opts), None).unwrap();
        let mut expect = json!({"apiVersion": api_version, "kind": "DeleteOptions"});
        expect
            .as_object_mut()
            .unwrap()
            .extend(want.as_object().unwrap().clone());
        assert_eq!(got, expect, "{api_version}");
    }

    let eviction = k8s_pb::api::policy::v1::Eviction {
        metadata: Some(go_meta("p", "default")),
        delete_options: Some(opts),
    };
    let got = decode_object(&envelope("policy/v1", "Eviction", &eviction), None).unwrap();
    assert_eq!(got["deleteOptions"], want);
}

#[test]
fn event_micro_time() {
    let event = k8s_pb::api::events::v1::Event {
        metadata: Some(go_meta("e", "default")),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_700_000_000),
            nanos: Some(123_456_789),
        }),
        reason: s("Started"),
        deprecated_count: Some(0),
        ..Default::default()
    };
    let got = decode_object(&envelope("events.k8s.io/v1", "Event", &event), None).unwrap();
    assert_eq!(got["eventTime"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(got["reason"], "Started");
    assert!(got.get("deprecatedCount").is_none(), "{got}");
}

#[test]
fn crd_schema() {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let string_prop = ext::JsonSchemaProps {
        r#type: s("string"),
        default: Some(ext::Json {
            raw: Some(br#""hello""#.to_vec()),
        }),
        ..Default::default()
    };
    let schema = ext::JsonSchemaProps {
        r#type: s("object"),
        properties: map(&[
            ("greeting", string_prop.clone()),
            (
                "list",
                ext::JsonSchemaProps {
                    r#type: s("array"),
                    items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                        schema: Some(Box::new(string_prop.clone())),
                        j_son_schemas: vec![],
                    })),
                    x_kubernetes_list_type: s("set"),
                    ..Default::default()
                },
            ),
            (
                "free",
                ext::JsonSchemaProps {
                    r#type: s("object"),
                    x_kubernetes_preserve_unknown_fields: Some(true),
                    additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
                        allows: Some(false),
                        schema: None,
                    })),
                    ..Default::default()
                },
            ),
        ]),
        r#enum: vec![],
        ..Default::default()
    };
    let crd = ext::CustomResourceDefinition {
        metadata: Some(go_meta("widgets.example.com", "")),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: s("example.com"),
            names: Some(ext::CustomResourceDefinitionNames {
                plural: s("widgets"),
                kind: s("Widget"),
                ..Default::default()
            }),
            scope: s("Namespaced"),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: s("v1"),
                served: Some(true),
                storage: Some(true),
                schema: Some(ext::CustomResourceValidation {
                    open_apiv3_schema: Some(schema),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let got = decode_object(
        &envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd),
        None,
    )
    .unwrap();
    let version = &got["spec"]["versions"][0];
    assert_eq!(version["served"], true);
    assert_eq!(
        version["schema"]["openAPIV3Schema"],
        json!({
            "type": "object",
            "properties": {
                "greeting": {"type": "string", "default": "hello"},
                "list": {
                    "type": "array",
                    "items": {"type": "string", "default": "hello"},
                    "x-kubernetes-list-type": "set",
                },
                "free": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "additionalProperties": false,
                },
            },
        })
    );
    assert_eq!(
        got["spec"]["names"],
        json!({"plural": "widgets", "kind": "Widget"})
    );
}

#[test]
fn raw_extension_json_and_nested_protobuf() {
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::apimachinery::pkg::runtime::RawExtension;
    let json_rev = apps::ControllerRevision {
        metadata: None,
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"x":1}}"#.to_vec()),
        }),
        revision: Some(2),
    };
    let got = decode_object(&envelope("apps/v1", "ControllerRevision", &json_rev), None).unwrap();
    assert_eq!(got["data"], json!({"spec": {"x": 1}}));
    assert_eq!(got["revision"], 2);

    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: s("inner"),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pb_rev = apps::ControllerRevision {
        data: Some(RawExtension {
            raw: Some(envelope("v1", "Namespace", &ns)),
        }),
        ..Default::default()
    };
    let got = decode_object(&envelope("apps/v1", "ControllerRevision", &pb_rev), None).unwrap();
    assert_eq!(
        got["data"],
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "inner"}})
    );

    let bad = apps::ControllerRevision {
        data: Some(RawExtension {
            raw: Some(b"{not json".to_vec()),
        }),
        ..Default::default()
    };
    let err = decode_object(&envelope("apps/v1", "ControllerRevision", &bad), None).unwrap_err();
    assert!(matches!(err, Error::EmbeddedJson { .. }), "{err}");
}

#[test]
fn envelope_type_meta() {
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: s("n"),
            ..Default::default()
        }),
        ..Default::default()
    };
    let unknown = Unknown {
        type_meta: None,
        raw: Some(ns.encode_to_vec()),
        ..Default::default()
    };
    let body = [MAGIC, &unknown.encode_to_vec()].concat();
    let got = decode_object(&body, Some(("v1", "Namespace"))).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
    );
    let err = decode_object(&body, None).unwrap_err();
    assert!(matches!(err, Error::MissingTypeMeta), "{err}");

    // The envelope wins over `expected`.
    let body = envelope("v1", "Namespace", &ns);
    let got = decode_object(&body, Some(("v1", "Pod"))).unwrap();
    assert_eq!(got["kind"], "Namespace");

    // An empty raw object is fine.
    let got = decode_object(
        &envelope("v1", "Namespace", &core::Namespace::default()),
        None,
    );
    assert_eq!(
        got.unwrap(),
        json!({"apiVersion": "v1", "kind": "Namespace"})
    );
}

#[test]
fn errors() {
    let err = decode_object(b"{\"kind\":\"Pod\"}", None).unwrap_err();
    assert!(matches!(err, Error::BadMagic), "{err}");

    let cm = core::ConfigMap {
        metadata: Some(go_meta("cfg", "default")),
        ..Default::default()
    };
    let body = envelope("v1", "ConfigMap", &cm);
    for cut in 5..body.len() {
        if let Err(err) = decode_object(&body[..cut], None) {
            let msg = err.to_string();
            assert!(
                msg.contains("truncated") || msg.contains("no apiVersion/kind"),
                "{cut}: {msg}"
            );
        }
    }
    let err = decode_object(&body[..body.len() - 3], None).unwrap_err();
    assert!(matches!(err, Error::Truncated(_)), "{err}");

    let err = decode_object(&envelope("example.com/v1", "Widget", &cm), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown kind for protobuf: example.com/v1, Kind=Widget"
    );

    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("ConfigMap"),
        }),
        raw: Some(cm.encode_to_vec()),
        content_encoding: s("gzip"),
        content_type: None,
    };
    let err = decode_object(&[MAGIC, &unknown.encode_to_vec()].concat(), None).unwrap_err();
    assert!(matches!(err, Error::UnsupportedEncoding { .. }), "{err}");

    // A string field sent as a varint.
    let raw = [0x0a, 0x02, 0x08, 0x01]; // metadata { name: varint 1 }
    let err = decode_raw("v1", "ConfigMap", &raw).unwrap_err();
    assert!(
        err.to_string()
            .contains("field name of apimachinery.pkg.apis.meta.v1.ObjectMeta"),
        "{err}"
    );
}

#[test]
fn packed_and_unknown_fields() {
    // PodSecurityContext.supplementalGroups (tag 4) packed, plus unknown field 999.
    let raw = [
        0x22, 0x03, 0x01, 0x02, 0x03, // 4: packed [1, 2, 3]
        0x20, 0x04, // 4: unpacked 4
        0xb8, 0x3e, 0x01, // 999: varint 1
    ];
    let got = decode_raw("v1", "PodSecurityContext", &raw).unwrap();
    assert_eq!(got["supplementalGroups"], json!([1, 2, 3, 4]));
}

#[test]
fn too_deep() {
    // JSONSchemaProps.not (tag 28) nested beyond the limit.
    let mut raw = Vec::new();
    for _ in 0..200 {
        let mut outer = vec![0xe2, 0x01]; // field 28, wire type 2
        let mut len = raw.len();
        while len >= 0x80 {
            outer.push((len as u8) | 0x80);
            len >>= 7;
        }
        outer.push(len as u8);
        outer.extend_from_slice(&raw);
        raw = outer;
    }
    let err = decode_raw("apiextensions.k8s.io/v1", "JSONSchemaProps", &raw).unwrap_err();
    assert!(matches!(err, Error::TooDeep(_)), "{err}");
}
