//! Checks that the bootstrap manifests parse and that the bootstrap RBAC
//! policy grants what the built-in identities need.

use serde::Deserialize;
use serde_json::Value;

use super::{Attributes, Rbac, UserInfo};

const MANIFESTS: &[(&str, &str)] = &[
    (
        "namespaces.yaml",
        include_str!("../../../../manifests/namespaces.yaml"),
    ),
    ("rbac.yaml", include_str!("../../../../manifests/rbac.yaml")),
    (
        "priorityclasses.yaml",
        include_str!("../../../../manifests/priorityclasses.yaml"),
    ),
];

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn bootstrap_policy() -> Rbac {
    Rbac::from_objects(&documents(MANIFESTS[1].1))
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        username: name.to_string(),
        uid: String::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    }
}

fn can(rbac: &Rbac, u: &UserInfo, verb: &str, group: &str, resource: &str, ns: &str) -> bool {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    let attrs = Attributes::resource(u.clone(), verb, group, resource, sub, ns, "x");
    rbac.authorize_rules(&attrs).is_allowed()
}

#[test]
fn every_manifest_parses() {
    for (file, text) in MANIFESTS {
        let docs = documents(text);
        assert!(!docs.is_empty(), "{file}");
        for doc in docs {
            assert!(doc["apiVersion"].is_string(), "{file}: {doc}");
            assert!(doc["kind"].is_string(), "{file}: {doc}");
            assert!(doc["metadata"]["name"].is_string(), "{file}: {doc}");
        }
    }
    let names: Vec<Value> = documents(MANIFESTS[0].1)
        .iter()
        .map(|d| d["metadata"]["name"].clone())
        .collect();
    assert_eq!(
        names,
        ["default", "kube-system", "kube-public", "kube-node-lease"]
    );
    let pcs = documents(MANIFESTS[2].1);
    assert_eq!(pcs[0]["value"], 2_000_000_000);
    assert_eq!(pcs[1]["value"], 2_000_001_000);
}

#[test]
fn rbac_objects_deserialize_as_k8s_types() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    for doc in documents(MANIFESTS[1].1) {
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        let ok = match doc["kind"].as_str().unwrap() {
            "ClusterRole" => serde_json::from_value::<ClusterRole>(doc).is_ok(),
            "ClusterRoleBinding" => serde_json::from_value::<ClusterRoleBinding>(doc).is_ok(),
            "Role" => serde_json::from_value::<Role>(doc).is_ok(),
            "RoleBinding" => serde_json::from_value::<RoleBinding>(doc).is_ok(),
            other => panic!("unexpected kind {other}"),
        };
        assert!(ok, "{name}");
    }
}

#[test]
fn bootstrap_bindings_resolve() {
    let rbac = bootstrap_policy();
    let non_resource = |u: &UserInfo, path: &str| {
        rbac.authorize_rules(&Attributes::non_resource(u.clone(), "get", path))
            .is_allowed()
    };

    // cluster-admin through the system:masters binding (no short-circuit here).
    let root = user("root", &["system:masters", "system:authenticated"]);
    assert!(can(
        &rbac,
        &root,
        "deletecollection",
        "apps",
        "deployments",
        "prod"
    ));
    assert!(non_resource(&root, "/metrics"));

    // Discovery and basic-user for everyone authenticated; public info for anonymous.
    let alice = user("alice", &["system:authenticated"]);
    assert!(non_resource(&alice, "/apis/apps/v1"));
    assert!(non_resource(&alice, "/version"));
    assert!(can(
        &rbac,
        &alice,
        "create",
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        ""
    ));
    assert!(!can(&rbac, &alice, "get", "", "pods", "default"));
    let anon = UserInfo::anonymous();
    assert!(non_resource(&anon, "/healthz"));
    assert!(non_resource(&anon, "/version"));
    assert!(!non_resource(&anon, "/api"));

    // Node agent.
    let node = user("system:node:n1", &["system:nodes", "system:authenticated"]);
    assert!(can(&rbac, &node, "patch", "", "nodes/status", ""));
    assert!(can(
        &rbac,
        &node,
        "update",
        "coordination.k8s.io",
        "leases",
        "kube-node-lease"
    ));
    assert!(can(
        &rbac,
        &node,
        "create",
        "",
        "serviceaccounts/token",
        "default"
    ));
    assert!(can(&rbac, &node, "watch", "", "secrets", "default"));
    assert!(!can(&rbac, &node, "delete", "", "nodes", ""));

    // Scheduler and controller manager.
    let sched = user("system:kube-scheduler", &["system:authenticated"]);
    assert!(can(&rbac, &sched, "create", "", "pods/binding", "default"));
    assert!(can(&rbac, &sched, "update", "", "persistentvolumes", ""));
    assert!(!can(&rbac, &sched, "create", "", "pods", "default"));
    let kcm = user("system:kube-controller-manager", &["system:authenticated"]);
    assert!(can(&rbac, &kcm, "list", "apps", "deployments", ""));
    assert!(can(&rbac, &kcm, "get", "", "configmaps", "kube-system"));
}

#[test]
fn aggregated_user_roles() {
    let objects: Vec<Value> = documents(MANIFESTS[1].1)
        .into_iter()
        .chain(["view", "edit", "admin"].map(|role| {
            serde_json::json!({"kind": "RoleBinding",
                "metadata": {"name": role, "namespace": "team"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": role, "namespace": "team"}]})
        }))
        .collect();
    let rbac = Rbac::from_objects(&objects);
    let sa = |n: &str| {
        user(
            &format!("system:serviceaccount:team:{n}"),
            &["system:serviceaccounts", "system:authenticated"],
        )
    };
    let (view, edit, admin) = (sa("view"), sa("edit"), sa("admin"));

    assert!(can(&rbac, &view, "get", "", "pods", "team"));
    assert!(can(&rbac, &view, "list", "apps", "deployments", "team"));
    assert!(can(&rbac, &view, "get", "", "pods/log", "team"));
    assert!(!can(&rbac, &view, "get", "", "secrets", "team"));
    assert!(!can(&rbac, &view, "get", "", "pods", "other"));

    assert!(
        can(&rbac, &edit, "get", "", "pods", "team"),
        "edit includes view"
    );
    assert!(can(&rbac, &edit, "create", "apps", "deployments", "team"));
    assert!(can(&rbac, &edit, "create", "", "pods/exec", "team"));
    assert!(!can(
        &rbac,
        &edit,
        "create",
        "rbac.authorization.k8s.io",
        "rolebindings",
        "team"
    ));

    assert!(can(
        &rbac,
        &admin,
        "create",
        "rbac.authorization.k8s.io",
        "rolebindings",
        "team"
    ));
    assert!(can(&rbac, &admin, "delete", "", "secrets", "team"));
    assert!(can(&rbac, &admin, "list", "", "pods", "team"));
}
