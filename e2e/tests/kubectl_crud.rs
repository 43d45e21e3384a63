//! Everyday kubectl verbs against a real profile: create, get (yaml, wide),
//! describe, label, annotate, patch (json, merge, strategic), replace,
//! delete, client- and server-side apply, diff, and the validation errors
//! users see for bad names and unknown fields.

use rkube_e2e::{describe, Cluster};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn get_json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    json(&c.kubectl_ok(&all))
}

#[test]
fn configmap_lifecycle() {
    let c = Cluster::start("crud").unwrap();

    let out = c.kubectl_ok(&["create", "configmap", "cm1", "--from-literal=a=1"]);
    assert_eq!(out.trim(), "configmap/cm1 created");

    // -o yaml round-trips the object with server-set metadata.
    let yaml = c.kubectl_ok(&["get", "configmap", "cm1", "-o", "yaml"]);
    let obj: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(obj["apiVersion"], "v1", "{yaml}");
    assert_eq!(obj["kind"], "ConfigMap", "{yaml}");
    assert_eq!(obj["data"]["a"], "1", "{yaml}");
    assert_eq!(obj["metadata"]["namespace"], "default", "{yaml}");
    for field in ["uid", "resourceVersion", "creationTimestamp"] {
        assert!(
            obj["metadata"][field]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "no metadata.{field}: {yaml}"
        );
    }

    // -o wide is a server-side table.
    let wide = c.kubectl_ok(&["get", "configmaps", "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"], "{wide}");
    let row = wide
        .lines()
        .find(|l| l.starts_with("cm1 "))
        .unwrap_or_else(|| panic!("no cm1 row: {wide}"));
    assert_eq!(row.split_whitespace().nth(1), Some("1"), "{wide}");

    let desc = c.kubectl_ok(&["describe", "configmap", "cm1"]);
    for want in [
        "Name:",
        "cm1",
        "Namespace:",
        "default",
        "Data\n====",
        "a:\n----\n1",
    ] {
        assert!(desc.contains(want), "describe lacks {want:?}:\n{desc}");
    }

    assert_eq!(
        c.kubectl_ok(&["label", "configmap", "cm1", "env=prod"])
            .trim(),
        "configmap/cm1 labeled"
    );
    assert_eq!(
        c.kubectl_ok(&["annotate", "configmap", "cm1", "note=hello"])
            .trim(),
        "configmap/cm1 annotated"
    );
    let obj = get_json(&c, &["configmap", "cm1"]);
    assert_eq!(obj["metadata"]["labels"]["env"], "prod");
    assert_eq!(obj["metadata"]["annotations"]["note"], "hello");
    // Changing a label needs --overwrite, like upstream.
    let err = c.kubectl_fails(&["label", "configmap", "cm1", "env=dev"], None);
    assert!(err.contains("already has a value"), "{err}");
    c.kubectl_ok(&["label", "configmap", "cm1", "env=dev", "--overwrite"]);
    let listed = c.kubectl_ok(&["get", "configmaps", "-l", "env=dev", "-o", "name"]);
    assert_eq!(listed.trim(), "configmap/cm1");
    c.kubectl_ok(&["label", "configmap", "cm1", "env-"]);
    let obj = get_json(&c, &["configmap", "cm1"]);
    assert!(obj["metadata"]["labels"].get("env").is_none(), "{obj}");

    let out = c.kubectl_ok(&[
        "patch",
        "configmap",
        "cm1",
        "--type=merge",
        "-p",
        r#"{"data":{"b":"2"}}"#,
    ]);
    assert_eq!(out.trim(), "configmap/cm1 patched");
    let out = c.kubectl_ok(&[
        "patch",
        "configmap",
        "cm1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/data/a","value":"10"},{"op":"add","path":"/data/c","value":"3"}]"#,
    ]);
    assert_eq!(out.trim(), "configmap/cm1 patched");
    let obj = get_json(&c, &["configmap", "cm1"]);
    assert_eq!(
        obj["data"],
        serde_json::json!({"a": "10", "b": "2", "c": "3"})
    );
    // A JSON patch whose test op fails is rejected (422) and changes nothing.
    let err = c.kubectl_fails(
        &[
            "patch",
            "configmap",
            "cm1",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/data/a","value":"nope"}]"#,
        ],
        None,
    );
    assert!(err.contains("The request is invalid"), "{err}");
    assert_eq!(get_json(&c, &["configmap", "cm1"])["data"]["a"], "10");

    // replace with an edited copy of the live object.
    let mut live = get_json(&c, &["configmap", "cm1"]);
    live["data"] = serde_json::json!({"only": "this"});
    let out = c.kubectl_stdin_ok(&["replace", "-f", "-"], Some(&live.to_string()));
    assert_eq!(out.trim(), "configmap/cm1 replaced");
    assert_eq!(
        get_json(&c, &["configmap", "cm1"])["data"],
        serde_json::json!({"only": "this"})
    );

    let out = c.kubectl_ok(&["delete", "configmap", "cm1"]);
    assert_eq!(out.trim(), r#"configmap "cm1" deleted"#);
    let err = c.kubectl_fails(&["get", "configmap", "cm1"], None);
    assert!(
        err.contains(r#"Error from server (NotFound): configmaps "cm1" not found"#),
        "{err}"
    );
    let err = c.kubectl_fails(&["create", "namespace", "default"], None);
    assert!(
        err.contains(r#"(AlreadyExists): namespaces "default" already exists"#),
        "{err}"
    );
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: REPLICAS
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.27
      - name: sidecar
        image: busybox:1.36
        command: ["sleep", "infinity"]
"#;

fn deployment(replicas: u32) -> String {
    DEPLOYMENT.replace("REPLICAS", &replicas.to_string())
}

#[test]
fn apply_diff_and_strategic_patch() {
    let c = Cluster::start("apply").unwrap();

    let out = c.kubectl_stdin_ok(&["apply", "-f", "-"], Some(&deployment(1)));
    assert_eq!(out.trim(), "deployment.apps/web created");
    let obj = get_json(&c, &["deployment", "web"]);
    assert!(
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string(),
        "no last-applied annotation: {obj}"
    );
    // Defaults the API server fills in.
    assert_eq!(obj["spec"]["strategy"]["type"], "RollingUpdate", "{obj}");
    assert_eq!(obj["spec"]["revisionHistoryLimit"], 10, "{obj}");
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent",
        "{obj}"
    );
    assert_eq!(
        obj["spec"]["template"]["spec"]["restartPolicy"], "Always",
        "{obj}"
    );

    let out = c.kubectl_stdin_ok(&["apply", "-f", "-"], Some(&deployment(1)));
    assert_eq!(out.trim(), "deployment.apps/web unchanged");

    // diff: exit 0 when equal, 1 with a unified diff when not.
    let same = c.kubectl_stdin(&["diff", "-f", "-"], Some(&deployment(1)));
    assert_eq!(same.status.code(), Some(0), "{}", describe(&same));
    let changed = c.kubectl_stdin(&["diff", "-f", "-"], Some(&deployment(3)));
    assert_eq!(changed.status.code(), Some(1), "{}", describe(&changed));
    let text = String::from_utf8_lossy(&changed.stdout);
    assert!(
        text.contains("-  replicas: 1") && text.contains("+  replicas: 3"),
        "{text}"
    );
    // diff is a dry run: nothing changed.
    assert_eq!(get_json(&c, &["deployment", "web"])["spec"]["replicas"], 1);

    let out = c.kubectl_stdin_ok(&["apply", "-f", "-"], Some(&deployment(3)));
    assert_eq!(out.trim(), "deployment.apps/web configured");
    assert_eq!(get_json(&c, &["deployment", "web"])["spec"]["replicas"], 3);

    // Strategic merge patch merges containers by name ...
    c.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1.28"}]}}}}"#,
    ]);
    let containers =
        &get_json(&c, &["deployment", "web"])["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(2), "{containers}");
    assert_eq!(containers[0]["image"], "nginx:1.28", "{containers}");
    assert_eq!(containers[1]["name"], "sidecar", "{containers}");
    // ... while a merge patch replaces the list.
    c.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"only","image":"nginx:1.28"}]}}}}"#,
    ]);
    let containers =
        &get_json(&c, &["deployment", "web"])["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(1), "{containers}");
    assert_eq!(containers[0]["name"], "only", "{containers}");

    // kubectl scale goes through the scale subresource.
    assert_eq!(
        c.kubectl_ok(&["scale", "deployment", "web", "--replicas=5"])
            .trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(get_json(&c, &["deployment", "web"])["spec"]["replicas"], 5);

    assert_eq!(
        c.kubectl_ok(&["delete", "deployment", "web"]).trim(),
        r#"deployment.apps "web" deleted"#
    );
}

#[test]
fn server_side_apply_owns_fields() {
    let c = Cluster::start("ssa").unwrap();
    let cm = |value: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  key: {value:?}\n"
        )
    };

    let out = c.kubectl_stdin_ok(&["apply", "--server-side", "-f", "-"], Some(&cm("one")));
    assert_eq!(out.trim(), "configmap/ssa serverside-applied");
    let obj = get_json(&c, &["configmap", "ssa", "--show-managed-fields"]);
    let managers = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        managers
            .iter()
            .any(|m| m["manager"] == "kubectl" && m["operation"] == "Apply"),
        "no Apply entry for kubectl in managedFields: {obj}"
    );

    // Another manager changing an owned field conflicts ...
    let err = c.kubectl_fails(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        Some(&cm("two")),
    );
    assert!(err.contains("conflict"), "{err}");
    assert!(err.contains(r#"conflict with "kubectl""#), "{err}");
    assert_eq!(get_json(&c, &["configmap", "ssa"])["data"]["key"], "one");
    // ... unless it forces.
    c.kubectl_stdin_ok(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(&cm("two")),
    );
    assert_eq!(get_json(&c, &["configmap", "ssa"])["data"]["key"], "two");

    // Re-applying the same config is a no-op that keeps the resourceVersion.
    let before = get_json(&c, &["configmap", "ssa"])["metadata"]["resourceVersion"].clone();
    c.kubectl_stdin_ok(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        Some(&cm("two")),
    );
    assert_eq!(
        get_json(&c, &["configmap", "ssa"])["metadata"]["resourceVersion"],
        before
    );
}

#[test]
fn validation_errors_read_like_upstream() {
    let c = Cluster::start("validate").unwrap();

    let err = c.kubectl_fails(&["create", "configmap", "Bad_Name"], None);
    assert!(err.contains(r#"ConfigMap "Bad_Name" is invalid"#), "{err}");
    assert!(
        err.contains(r#"metadata.name: Invalid value: "Bad_Name""#),
        "{err}"
    );
    assert!(
        err.contains("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        "{err}"
    );

    let with_unknown = deployment(1).replace("spec:\n  replicas", "spec:\n  foo: bar\n  replicas");
    let err = c.kubectl_fails(
        &["apply", "--validate=strict", "-f", "-"],
        Some(&with_unknown),
    );
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.foo""#),
        "{err}"
    );
    let err = c.kubectl_fails(&["get", "deployment", "web"], None);
    assert!(
        err.contains("NotFound"),
        "strict apply must not create anything: {err}"
    );

    let out = c.kubectl_stdin_ok(
        &["apply", "--validate=false", "-f", "-"],
        Some(&with_unknown),
    );
    assert_eq!(out.trim(), "deployment.apps/web created");
    let obj = get_json(&c, &["deployment", "web"]);
    assert!(
        obj["spec"].get("foo").is_none(),
        "unknown field must be dropped: {obj}"
    );

    // --validate=warn creates but prints the warning.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: warned\nbogus: 1\n";
    let out = c.kubectl_stdin(&["apply", "--validate=warn", "-f", "-"], Some(cm));
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r#"unknown field "bogus""#), "{stderr}");

    // A missing required field is a 422 with the field path.
    let no_selector = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: broken\nspec:\n  template:\n    spec:\n      containers: [{name: a, image: nginx}]\n";
    let err = c.kubectl_fails(&["create", "-f", "-"], Some(no_selector));
    assert!(
        err.contains(r#"The Deployment "broken" is invalid"#),
        "{err}"
    );
    assert!(err.contains("spec.selector: Required value"), "{err}");
}
