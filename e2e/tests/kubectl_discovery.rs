//! What kubectl learns from the server: bootstrap objects, version,
//! discovery (`api-resources`), OpenAPI (`explain`), authorization
//! (`auth can-i`, `auth whoami`) and `get --watch`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rkube_e2e::Cluster;
use serde_json::Value;

#[test]
fn bootstrap_discovery_and_explain() {
    let c = Cluster::start("discovery").unwrap();

    // `rkube start` returns only once the API server is ready.
    assert_eq!(c.kubectl_ok(&["get", "--raw", "/readyz"]).trim(), "ok");
    assert_eq!(c.kubectl_ok(&["get", "--raw", "/livez"]).trim(), "ok");

    let info = c.kubectl_ok(&["cluster-info"]);
    let url = c.server_url().unwrap();
    assert!(
        info.contains("Kubernetes control plane") && info.contains(&url),
        "{info}"
    );

    let version: Value = serde_json::from_str(&c.kubectl_ok(&["version", "-o", "json"])).unwrap();
    let server = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(server.starts_with("v1."), "serverVersion: {version}");

    let namespaces = c.kubectl_ok(&["get", "namespaces", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            namespaces.lines().any(|l| l == format!("namespace/{ns}")),
            "no {ns}: {namespaces}"
        );
    }
    let svc: Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "service",
        "kubernetes",
        "-n",
        "default",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(svc["spec"]["type"], "ClusterIP", "{svc}");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443, "{svc}");

    let resources = c.kubectl_ok(&["api-resources"]);
    let rows: Vec<Vec<&str>> = resources
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let has = |want: &[&str]| rows.iter().any(|r| r == want);
    for want in [
        &["pods", "po", "v1", "true", "Pod"][..],
        &["configmaps", "cm", "v1", "true", "ConfigMap"],
        &["namespaces", "ns", "v1", "false", "Namespace"],
        &["services", "svc", "v1", "true", "Service"],
        &["deployments", "deploy", "apps/v1", "true", "Deployment"],
        &["jobs", "batch/v1", "true", "Job"],
        &[
            "clusterroles",
            "rbac.authorization.k8s.io/v1",
            "false",
            "ClusterRole",
        ],
        &[
            "customresourcedefinitions",
            "crd,crds",
            "apiextensions.k8s.io/v1",
            "false",
            "CustomResourceDefinition",
        ],
    ] {
        assert!(has(want), "api-resources lacks {want:?}:\n{resources}");
    }
    let verbs = c.kubectl_ok(&["api-resources", "--api-group=apps", "-o", "wide"]);
    let row = verbs
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap_or_else(|| panic!("{verbs}"));
    for verb in [
        "create", "delete", "get", "list", "patch", "update", "watch",
    ] {
        assert!(row.contains(verb), "deployments verbs lack {verb}: {row}");
    }

    let explain = c.kubectl_ok(&["explain", "deployment.spec.replicas"]);
    for want in [
        "KIND:",
        "Deployment",
        "VERSION:",
        "v1",
        "FIELD: replicas <integer>",
        "DESCRIPTION:",
        "Number of desired pods",
    ] {
        assert!(explain.contains(want), "explain lacks {want:?}:\n{explain}");
    }
    let explain = c.kubectl_ok(&["explain", "pods.spec.containers"]);
    assert!(
        explain.contains("FIELD: containers <[]Container>"),
        "{explain}"
    );
}

#[test]
fn auth_can_i_and_whoami() {
    let c = Cluster::start("whoami").unwrap();

    assert_eq!(
        c.kubectl_ok(&["auth", "can-i", "create", "pods"]).trim(),
        "yes"
    );
    assert_eq!(
        c.kubectl_ok(&["auth", "can-i", "*", "*", "--all-namespaces"])
            .trim(),
        "yes"
    );

    let who = c.kubectl_ok(&["auth", "whoami", "-o", "json"]);
    let who: Value = serde_json::from_str(&who).unwrap();
    assert_eq!(who["kind"], "SelfSubjectReview", "{who}");
    let user = &who["status"]["userInfo"];
    assert_eq!(user["username"], "kubernetes-admin", "{who}");
    let groups: Vec<&str> = user["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        groups.contains(&"system:masters") && groups.contains(&"system:authenticated"),
        "{who}"
    );
    let table = c.kubectl_ok(&["auth", "whoami"]);
    assert!(
        table.contains("Username") && table.contains("kubernetes-admin"),
        "{table}"
    );

    // A ServiceAccount without bindings may do nothing; impersonated by admin.
    c.kubectl_ok(&["create", "serviceaccount", "nobody"]);
    let sa = "--as=system:serviceaccount:default:nobody";
    let out = c.kubectl(&["auth", "can-i", "create", "pods", sa]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no",
        "{}",
        rkube_e2e::describe(&out)
    );
    assert_eq!(out.status.code(), Some(1));
    c.kubectl_ok(&[
        "create",
        "rolebinding",
        "nobody-edit",
        "--clusterrole=edit",
        "--serviceaccount=default:nobody",
    ]);
    assert!(
        rkube_e2e::eventually(Duration::from_secs(10), || {
            c.kubectl(&["auth", "can-i", "create", "pods", sa])
                .status
                .success()
        }),
        "edit binding did not allow creating pods"
    );
    assert_eq!(
        c.kubectl_ok(&["auth", "can-i", "create", "pods", sa])
            .trim(),
        "yes"
    );
    let out = c.kubectl(&["auth", "can-i", "create", "pods", sa, "-n", "kube-system"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no",
        "rolebinding leaked to another namespace"
    );
}

#[test]
fn get_watch_sees_updates() {
    let c = Cluster::start("kwatch").unwrap();
    c.kubectl_ok(&["create", "configmap", "w1", "--from-literal=a=1"]);

    let child = c
        .kubectl_command(&[
            "get",
            "configmap",
            "w1",
            "--watch",
            "-o",
            r#"jsonpath={.metadata.name}={.data.a}{"\n"}"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(15));

    assert_eq!(next().as_deref(), Ok("w1=1"), "initial line of the watch");
    c.kubectl_ok(&[
        "patch",
        "configmap",
        "w1",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    assert_eq!(next().as_deref(), Ok("w1=2"), "watch line after the update");
    c.kubectl_ok(&["label", "configmap", "w1", "x=y"]);
    assert_eq!(next().as_deref(), Ok("w1=2"), "watch line after the label");
}

/// Kills the spawned kubectl when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
