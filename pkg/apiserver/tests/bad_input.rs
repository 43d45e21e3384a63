//! Bad-input suite: malformed bodies (JSON, YAML, protobuf), wrong field
//! types in many kinds, YAML alias bombs, deep nesting, huge names, invalid
//! selectors, continue tokens and resourceVersions, bad options bodies, on
//! every verb. Each must get a 4xx `Status` (never a 5xx, a dropped
//! connection or a panic) and leave the store exactly as it was. Also the
//! NamespaceLifecycle rules and the upstream namespace deletion protocol.
//!
//! The API server runs in-process on an in-memory store; requests go over
//! TLS with the admin certificate through kube-rs's raw `Client::send`.

use std::sync::Arc;

use http_body_util::BodyExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};

struct Server {
    _dir: tempfile::TempDir,
    _running: rkube_apiserver::Running,
    client: kube::Client,
    store: Arc<dyn rkube_store::Store>,
}

async fn start() -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let (pki, _) = rkube_pki::Pki::ensure(
        &dir.path().join("pki"),
        &rkube_pki::PkiOptions::new("node1"),
    )?;
    let store: Arc<dyn rkube_store::Store> = Arc::new(rkube_store::memory::MemoryStore::new());
    let cfg = rkube_apiserver::Config {
        bind: "127.0.0.1:0".parse()?,
        serving_cert_pem: rkube_pki::load_pem(&pki.apiserver_cert_path())?,
        serving_key_pem: rkube_pki::load_pem(&pki.apiserver_key_path())?,
        client_ca_pem: rkube_pki::load_pem(&pki.ca_cert_path())?,
        sa_signing_key_pem: rkube_pki::load_pem(&pki.sa_key_path())?,
        sa_public_key_pem: rkube_pki::load_pem(&pki.sa_pub_path())?,
        store: store.clone(),
        git_version: "v1.33.0-rkube.test".into(),
        sa_issuer: "https://kubernetes.default.svc.cluster.local".into(),
        kubelet_client_cert_pem: rkube_pki::load_pem(&pki.apiserver_kubelet_client_cert_path())?,
        kubelet_client_key_pem: rkube_pki::load_pem(&pki.apiserver_kubelet_client_key_path())?,
    };
    let mut bootstrap = Vec::new();
    for f in ["namespaces.yaml", "rbac.yaml", "priorityclasses.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../manifests")
            .join(f);
        let text = std::fs::read_to_string(&path)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc)?;
            if !v.is_null() {
                bootstrap.push(v);
            }
        }
    }
    let running = rkube_apiserver::start(cfg, bootstrap).await?;
    let url = format!("https://127.0.0.1:{}", running.local_addr.port());
    let kc = Kubeconfig::from_yaml(&pki.admin_kubeconfig("t", &url)?)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;
    Ok(Server {
        _dir: dir,
        _running: running,
        client,
        store,
    })
}

const JSON: &str = "application/json";
const YAML: &str = "application/yaml";
const MERGE: &str = "application/merge-patch+json";
const SMP: &str = "application/strategic-merge-patch+json";
const JSONPATCH: &str = "application/json-patch+json";
const APPLY: &str = "application/apply-patch+yaml";
const PROTO: &str = "application/vnd.kubernetes.protobuf";

impl Server {
    /// One raw request; returns the HTTP code and the body as JSON.
    async fn call(&self, method: &str, path: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("Content-Type", ct)
            .header("Accept", "application/json")
            .body(kube::client::Body::from(body))
            .expect("request");
        let resp = self
            .client
            .send(req)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: transport error {e}"));
        let code = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: body error {e}"))
            .to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (code, v)
    }

    async fn json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(method, path, JSON, serde_json::to_vec(&body).unwrap())
            .await
    }

    /// The whole store as (key, value) pairs.
    async fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let page = self.store.list("/", None, 0).await.expect("list store");
        page.items
            .into_iter()
            .map(|kv| (kv.key, kv.value.to_vec()))
            .collect()
    }

    /// Sends a bad request and checks: a 4xx Status (of `want` when given)
    /// and an unchanged store.
    async fn reject(
        &self,
        what: &str,
        method: &str,
        path: &str,
        ct: &str,
        body: Vec<u8>,
        want: Option<u16>,
    ) -> Value {
        let before = self.snapshot().await;
        let rev = self.store.current_revision();
        let (code, status) = self.call(method, path, ct, body).await;
        if std::env::var_os("BAD_INPUT_VERBOSE").is_some() {
            eprintln!("{what}: {code} {}", status["message"]);
        }
        assert!(
            (400..500).contains(&code),
            "{what}: {method} {path} answered {code}: {status}"
        );
        if let Some(w) = want {
            assert_eq!(code, w, "{what}: {method} {path}: {status}");
        }
        assert_eq!(status["kind"], "Status", "{what}: not a Status: {status}");
        assert_eq!(status["status"], "Failure", "{what}: {status}");
        assert_eq!(status["code"], code, "{what}: {status}");
        assert_eq!(
            self.store.current_revision(),
            rev,
            "{what}: {method} {path} wrote to the store"
        );
        assert!(before == self.snapshot().await, "{what}: store changed");
        status
    }

    async fn reject_json(
        &self,
        what: &str,
        method: &str,
        path: &str,
        ct: &str,
        body: Value,
        want: Option<u16>,
    ) -> Value {
        self.reject(
            what,
            method,
            path,
            ct,
            serde_json::to_vec(&body).unwrap(),
            want,
        )
        .await
    }

    async fn create_ok(&self, path: &str, body: Value) -> Value {
        let (code, v) = self.json("POST", path, body).await;
        assert_eq!(code, 201, "create {path}: {v}");
        v
    }
}

fn yaml_bomb() -> Vec<u8> {
    let mut s = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
    let mut prev = "a";
    for n in names {
        s.push_str(&format!(
            "{n}: &{n} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
        prev = n;
    }
    s.push_str(&format!("data: *{prev}\n"));
    s.into_bytes()
}

fn deep_json(depth: usize) -> Vec<u8> {
    let mut s =
        String::from(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"data":"#);
    for _ in 0..depth {
        s.push_str(r#"{"a":"#);
    }
    s.push('1');
    for _ in 0..depth {
        s.push('}');
    }
    s.push('}');
    s.into_bytes()
}

fn deep_array(depth: usize) -> Vec<u8> {
    let mut s = "[".repeat(depth);
    s.push_str(&"]".repeat(depth));
    s.into_bytes()
}

const NS: &str = "bad";

async fn fixtures(s: &Server) {
    s.create_ok(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .await;
    let base = format!("/api/v1/namespaces/{NS}");
    s.create_ok(
        &format!("{base}/configmaps"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1", "labels": {"app": "x"}}, "data": {"k": "v"}}),
    )
    .await;
    s.create_ok(
        &format!("{base}/configmaps"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm2", "labels": {"app": "x"}}, "data": {"k": "v"}}),
    )
    .await;
    s.create_ok(
        &format!("{base}/secrets"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec1"}, "data": {"k": "dg=="}}),
    )
    .await;
    s.create_ok(
        &format!("{base}/pods"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "labels": {"app": "x"}},
               "spec": {"containers": [{"name": "c", "image": "busybox",
                   "resources": {"limits": {"cpu": 1, "memory": "64Mi"}}, "ports": [{"containerPort": 80, "name": "http"}]}]}}),
    )
    .await;
    s.create_ok(
        &format!("{base}/services"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s1"},
               "spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": "http"}]}}),
    )
    .await;
    s.create_ok(
        &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
        deployment("d1", json!(2)),
    )
    .await;
    s.create_ok(
        &format!("/apis/batch/v1/namespaces/{NS}/jobs"),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j1"},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}),
    )
    .await;
    s.create_ok(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com"},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                        "versions": [{"name": "v1", "served": true, "storage": true,
                            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}}),
    )
    .await;
    for _ in 0..50 {
        let (code, _) = s
            .call(
                "GET",
                &format!("/apis/example.com/v1/namespaces/{NS}/widgets"),
                JSON,
                vec![],
            )
            .await;
        if code == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    s.create_ok(
        &format!("/apis/example.com/v1/namespaces/{NS}/widgets"),
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 1}}),
    )
    .await;
}

fn deployment(name: &str, replicas: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
}

/// One kind's case: name, collection path, object name, good object and
/// wrong-typed variants.
type TypedCase = (
    &'static str,
    String,
    &'static str,
    Value,
    Vec<(&'static str, Value)>,
);

fn typed_cases() -> Vec<TypedCase> {
    let base = format!("/api/v1/namespaces/{NS}");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1", "labels": {"app": "x"}}, "data": {"k": "v"}});
    let sec = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec1"}, "data": {"k": "dg=="}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80, "name": "http"}]}]}});
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s1"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": "http"}]}});
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j1"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
    let with = |base: &Value, ptr: &str, v: Value| -> Value {
        let mut o = base.clone();
        let (parent, last) = ptr.rsplit_once('/').unwrap();
        let p = if parent.is_empty() {
            &mut o
        } else {
            o.pointer_mut(parent).unwrap()
        };
        p[last] = v;
        o
    };
    vec![
        (
            "ConfigMap",
            format!("{base}/configmaps"),
            "cm1",
            cm.clone(),
            vec![
                ("number in data", with(&cm, "/data", json!({"a": 1}))),
                ("string data", with(&cm, "/data", json!("x"))),
                ("array data", with(&cm, "/data", json!(["a"]))),
                (
                    "object in data",
                    with(&cm, "/data", json!({"a": {"b": "c"}})),
                ),
                ("string metadata", with(&cm, "/metadata", json!("x"))),
                (
                    "number label",
                    with(&cm, "/metadata/labels", json!({"a": 1})),
                ),
                (
                    "array annotations",
                    with(&cm, "/metadata/annotations", json!(["a"])),
                ),
                (
                    "bool immutable string",
                    with(&cm, "/immutable", json!("yes")),
                ),
            ],
        ),
        (
            "Secret",
            format!("{base}/secrets"),
            "sec1",
            sec.clone(),
            vec![
                ("number in data", with(&sec, "/data", json!({"k": 5}))),
                ("not base64", with(&sec, "/data", json!({"k": "%%%"}))),
                ("object type", with(&sec, "/type", json!({"a": "b"}))),
            ],
        ),
        (
            "Pod",
            format!("{base}/pods"),
            "p1",
            pod.clone(),
            vec![
                (
                    "string containerPort",
                    with(
                        &pod,
                        "/spec/containers/0/ports/0/containerPort",
                        json!("80x"),
                    ),
                ),
                (
                    "object containers",
                    with(&pod, "/spec/containers", json!({"name": "c"})),
                ),
                (
                    "number restartPolicy",
                    with(&pod, "/spec/restartPolicy", json!(5)),
                ),
                (
                    "object cpu limit",
                    with(
                        &pod,
                        "/spec/containers/0/resources",
                        json!({"limits": {"cpu": {"a": 1}}}),
                    ),
                ),
                (
                    "string args",
                    with(&pod, "/spec/containers/0/args", json!("x")),
                ),
                (
                    "bool as string",
                    with(&pod, "/spec/hostNetwork", json!("true")),
                ),
            ],
        ),
        (
            "Service",
            format!("{base}/services"),
            "s1",
            svc.clone(),
            vec![
                (
                    "string port",
                    with(&svc, "/spec/ports/0/port", json!("http")),
                ),
                ("number type", with(&svc, "/spec/type", json!(5))),
                (
                    "object targetPort",
                    with(&svc, "/spec/ports/0/targetPort", json!({"a": 1})),
                ),
            ],
        ),
        (
            "Deployment",
            format!("/apis/apps/v1/namespaces/{NS}/deployments"),
            "d1",
            deployment("d1", json!(2)),
            vec![
                ("string replicas", deployment("d1", json!("three"))),
                ("float replicas", deployment("d1", json!(1.5))),
                (
                    "object containers",
                    with(
                        &deployment("d1", json!(1)),
                        "/spec/template/spec/containers",
                        json!({}),
                    ),
                ),
                (
                    "string selector",
                    with(
                        &deployment("d1", json!(1)),
                        "/spec/selector",
                        json!("app=d1"),
                    ),
                ),
                (
                    "object maxSurge",
                    with(
                        &deployment("d1", json!(1)),
                        "/spec/strategy/rollingUpdate/maxSurge",
                        json!({"a": 1}),
                    ),
                ),
                (
                    "array spec",
                    with(&deployment("d1", json!(1)), "/spec", json!([1])),
                ),
            ],
        ),
        (
            "Job",
            format!("/apis/batch/v1/namespaces/{NS}/jobs"),
            "j1",
            job.clone(),
            vec![
                (
                    "string completions",
                    with(&job, "/spec/completions", json!("x")),
                ),
                (
                    "float backoffLimit",
                    with(&job, "/spec/backoffLimit", json!(1.5)),
                ),
                ("string suspend", with(&job, "/spec/suspend", json!("no"))),
            ],
        ),
    ]
}

#[tokio::test]
async fn wrong_types_on_create_update_and_every_patch() -> anyhow::Result<()> {
    let s = start().await?;
    fixtures(&s).await;
    for (kind, coll, name, good, bad) in typed_cases() {
        let item = format!("{coll}/{name}");
        for (what, obj) in bad {
            let label = format!("{kind} {what}");
            // create under a fresh name
            let mut fresh = obj.clone();
            if fresh.get("metadata").is_some_and(Value::is_object) {
                fresh["metadata"]["name"] = json!(format!("{name}-new"));
            }
            let st = s
                .reject_json(
                    &format!("{label} create"),
                    "POST",
                    &coll,
                    JSON,
                    fresh.clone(),
                    Some(400),
                )
                .await;
            assert_eq!(st["reason"], "BadRequest", "{label}: {st}");
            if fresh.get("metadata").is_some_and(Value::is_object) {
                let msg = st["message"].as_str().unwrap_or("");
                assert!(
                    msg.starts_with(&format!("{kind} in version \""))
                        && msg.contains(&format!("cannot be handled as a {kind}")),
                    "{label}: {msg}"
                );
            }
            // create as YAML
            s.reject(
                &format!("{label} create yaml"),
                "POST",
                &coll,
                YAML,
                serde_yaml::to_string(&fresh)?.into_bytes(),
                Some(400),
            )
            .await;
            // dry-run create is refused the same way
            s.reject_json(
                &format!("{label} dry-run"),
                "POST",
                &format!("{coll}?dryRun=All"),
                JSON,
                fresh.clone(),
                Some(400),
            )
            .await;
            // update
            let (_, cur) = s.call("GET", &item, JSON, vec![]).await;
            let mut upd = obj.clone();
            if upd.get("metadata").is_some_and(Value::is_object) {
                upd["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
            }
            s.reject_json(&format!("{label} update"), "PUT", &item, JSON, upd, None)
                .await;
            // patches: the difference against the good object
            let mut patch = obj.clone();
            if let Some(m) = patch.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
                if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("name");
                    meta.remove("resourceVersion");
                }
            }
            s.reject_json(
                &format!("{label} merge patch"),
                "PATCH",
                &item,
                MERGE,
                patch.clone(),
                None,
            )
            .await;
            s.reject_json(
                &format!("{label} strategic patch"),
                "PATCH",
                &item,
                SMP,
                patch.clone(),
                None,
            )
            .await;
            let ops: Vec<Value> = patch
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| json!({"op": "replace", "path": format!("/{k}"), "value": v}))
                .collect();
            if !ops.is_empty() {
                s.reject_json(
                    &format!("{label} json patch"),
                    "PATCH",
                    &item,
                    JSONPATCH,
                    json!(ops),
                    None,
                )
                .await;
            }
            let mut applied = obj.clone();
            if applied.get("metadata").is_some_and(Value::is_object) {
                applied["metadata"]["name"] = json!(name);
            }
            s.reject(
                &format!("{label} apply"),
                "PATCH",
                &format!("{item}?fieldManager=t&force=true"),
                APPLY,
                serde_yaml::to_string(&applied)?.into_bytes(),
                None,
            )
            .await;
        }
        // The good object still round-trips.
        let (code, v) = s.call("GET", &item, JSON, vec![]).await;
        assert_eq!(code, 200, "{kind}: {v}");
        let _ = good;
    }
    // A custom resource with a wrong type is refused by its schema.
    let widgets = format!("/apis/example.com/v1/namespaces/{NS}/widgets");
    s.reject_json(
        "Widget string size",
        "POST",
        &widgets,
        JSON,
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w2"}, "spec": {"size": "big"}}),
        None,
    )
    .await;
    s.reject_json(
        "Widget merge patch",
        "PATCH",
        &format!("{widgets}/w1"),
        MERGE,
        json!({"spec": {"size": "big"}}),
        None,
    )
    .await;
    // A CRD with a wrong type.
    s.reject_json(
        "CRD string names",
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        JSON,
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "gadgets.example.com"},
               "spec": {"group": "example.com", "scope": "Namespaced", "names": "gadgets", "versions": []}}),
        Some(400),
    )
    .await;
    // Upstream wording for the issue's examples.
    let (code, st) = s
        .json(
            "POST",
            &format!("/api/v1/namespaces/{NS}/configmaps"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": 1}}),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        st["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data.a of type string"
    );
    Ok(())
}

#[tokio::test]
async fn malformed_bodies_bombs_and_deep_nesting() -> anyhow::Result<()> {
    let s = start().await?;
    fixtures(&s).await;
    let cms = format!("/api/v1/namespaces/{NS}/configmaps");
    let cm1 = format!("{cms}/cm1");
    let deploys = format!("/apis/apps/v1/namespaces/{NS}/deployments");
    let d1 = format!("{deploys}/d1");
    let bad_bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "truncated json",
            JSON,
            b"{\"apiVersion\": \"v1\", ".to_vec(),
        ),
        ("empty", JSON, vec![]),
        ("array", JSON, b"[]".to_vec()),
        ("string", JSON, b"\"x\"".to_vec()),
        ("null", JSON, b"null".to_vec()),
        ("number", JSON, b"12".to_vec()),
        ("binary", JSON, vec![0xff, 0xfe, 0x00, 0x01]),
        ("bad yaml", YAML, b"a: [b\nc: }".to_vec()),
        ("yaml list", YAML, b"- a\n- b\n".to_vec()),
        ("yaml bomb", YAML, yaml_bomb()),
        ("deep json", JSON, deep_json(10_000)),
        ("deep array", JSON, deep_array(10_000)),
        (
            "garbage protobuf",
            PROTO,
            b"k8s\x00\x0a\xff\xff\xff".to_vec(),
        ),
        ("protobuf without magic", PROTO, b"hello".to_vec()),
        ("unknown content type", "text/plain", b"{}".to_vec()),
    ];
    for (what, ct, body) in &bad_bodies {
        for (coll, item) in [(&cms, &cm1), (&deploys, &d1)] {
            s.reject(
                &format!("create {what}"),
                "POST",
                coll,
                ct,
                body.clone(),
                None,
            )
            .await;
            s.reject(
                &format!("update {what}"),
                "PUT",
                item,
                ct,
                body.clone(),
                None,
            )
            .await;
        }
    }
    let bad_patches: Vec<(&str, &str, Vec<u8>)> = vec![
        ("merge truncated", MERGE, b"{\"data\": ".to_vec()),
        ("merge deep", MERGE, deep_json(10_000)),
        ("merge array", MERGE, b"[1]".to_vec()),
        ("smp truncated", SMP, b"{".to_vec()),
        ("smp deep", SMP, deep_json(10_000)),
        (
            "smp bad directive",
            SMP,
            br#"{"metadata": {"$patch": "explode"}}"#.to_vec(),
        ),
        ("smp string", SMP, b"\"x\"".to_vec()),
        ("json patch object", JSONPATCH, b"{}".to_vec()),
        (
            "json patch bad op",
            JSONPATCH,
            br#"[{"op": "explode", "path": "/data"}]"#.to_vec(),
        ),
        (
            "json patch bad path",
            JSONPATCH,
            br#"[{"op": "replace", "path": "/no/such/path", "value": 1}]"#.to_vec(),
        ),
        (
            "json patch test fails",
            JSONPATCH,
            br#"[{"op": "test", "path": "/metadata/name", "value": "other"}]"#.to_vec(),
        ),
        ("json patch deep", JSONPATCH, deep_array(10_000)),
        (
            "json patch remove name",
            JSONPATCH,
            br#"[{"op": "remove", "path": "/metadata"}]"#.to_vec(),
        ),
        (
            "json patch root number",
            JSONPATCH,
            br#"[{"op": "replace", "path": "", "value": 5}]"#.to_vec(),
        ),
        (
            "json patch root array",
            JSONPATCH,
            br#"[{"op": "replace", "path": "", "value": []}]"#.to_vec(),
        ),
        (
            "json patch root null",
            JSONPATCH,
            br#"[{"op": "replace", "path": "", "value": null}]"#.to_vec(),
        ),
        (
            "json patch metadata string",
            JSONPATCH,
            br#"[{"op": "replace", "path": "/metadata", "value": "x"}]"#.to_vec(),
        ),
        (
            "json patch name number",
            JSONPATCH,
            br#"[{"op": "replace", "path": "/metadata/name", "value": 5}]"#.to_vec(),
        ),
        (
            "json patch uid object",
            JSONPATCH,
            br#"[{"op": "replace", "path": "/metadata/uid", "value": {}}]"#.to_vec(),
        ),
        (
            "json patch rv number",
            JSONPATCH,
            br#"[{"op": "replace", "path": "/metadata/resourceVersion", "value": 5}]"#.to_vec(),
        ),
        (
            "json patch finalizers string",
            JSONPATCH,
            br#"[{"op": "add", "path": "/metadata/finalizers", "value": "x"}]"#.to_vec(),
        ),
        (
            "merge patch metadata null",
            MERGE,
            br#"{"metadata": null}"#.to_vec(),
        ),
        (
            "merge patch name null",
            MERGE,
            br#"{"metadata": {"name": null}}"#.to_vec(),
        ),
        ("smp metadata string", SMP, br#"{"metadata": "x"}"#.to_vec()),
        (
            "smp labels array",
            SMP,
            br#"{"metadata": {"labels": ["a"]}}"#.to_vec(),
        ),
        ("apply bomb", APPLY, yaml_bomb()),
        ("apply bad yaml", APPLY, b"a: [".to_vec()),
        ("apply list", APPLY, b"- 1\n".to_vec()),
        (
            "apply wrong kind",
            APPLY,
            b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: cm1\n".to_vec(),
        ),
        ("protobuf patch", PROTO, b"k8s\x00".to_vec()),
        (
            "unknown patch type",
            "application/x-whatever",
            b"{}".to_vec(),
        ),
    ];
    for (what, ct, body) in &bad_patches {
        for item in [&cm1, &d1] {
            let path = if *ct == APPLY {
                format!("{item}?fieldManager=t")
            } else {
                item.to_string()
            };
            s.reject(
                &format!("patch {what}"),
                "PATCH",
                &path,
                ct,
                body.clone(),
                None,
            )
            .await;
        }
    }
    // Apply without a fieldManager.
    s.reject(
        "apply no manager",
        "PATCH",
        &cm1,
        APPLY,
        b"data: {k: v}".to_vec(),
        Some(400),
    )
    .await;
    // Apply of a wrong type creating an object.
    s.reject(
        "apply create wrong type",
        "PATCH",
        &format!("{cms}/newcm?fieldManager=t"),
        APPLY,
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: newcm\ndata:\n  a: 1\n".to_vec(),
        Some(400),
    )
    .await;
    // Subresources and review bodies.
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    s.reject_json(
        "eviction bad deleteOptions",
        "POST",
        &format!("{pods}/p1/eviction"),
        JSON,
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p1"}, "deleteOptions": {"gracePeriodSeconds": "x"}}),
        Some(400),
    )
    .await;
    s.reject(
        "eviction garbage",
        "POST",
        &format!("{pods}/p1/eviction"),
        JSON,
        b"{".to_vec(),
        Some(400),
    )
    .await;
    s.reject_json(
        "binding wrong target",
        "POST",
        &format!("{pods}/p1/binding"),
        JSON,
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p1"}, "target": "node1"}),
        Some(400),
    )
    .await;
    s.reject_json(
        "pod status wrong type",
        "PATCH",
        &format!("{pods}/p1/status"),
        MERGE,
        json!({"status": {"phase": 5}}),
        Some(400),
    )
    .await;
    s.reject_json(
        "scale wrong type",
        "PUT",
        &format!("{d1}/scale"),
        JSON,
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "d1", "namespace": NS}, "spec": {"replicas": "x"}}),
        Some(400),
    )
    .await;
    s.reject_json(
        "token wrong type",
        "POST",
        &format!("/api/v1/namespaces/{NS}/serviceaccounts/default/token"),
        JSON,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": "x"}}),
        Some(400),
    )
    .await;
    s.reject_json(
        "finalize wrong type",
        "PUT",
        &format!("/api/v1/namespaces/{NS}/finalize"),
        JSON,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}, "spec": {"finalizers": "kubernetes"}}),
        Some(400),
    )
    .await;
    s.reject_json(
        "SubjectAccessReview wrong type",
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        JSON,
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": 5, "groups": "x"}}),
        Some(400),
    )
    .await;
    s.reject_json(
        "SelfSubjectAccessReview wrong type",
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        JSON,
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": "pods"}}),
        Some(400),
    )
    .await;
    s.reject_json(
        "TokenReview wrong type",
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        JSON,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": ["a"]}}),
        Some(400),
    )
    .await;
    s.reject(
        "review garbage",
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        JSON,
        b"{{".to_vec(),
        Some(400),
    )
    .await;
    // Patches of subresources.
    let sub_patches: Vec<(String, &str, &[u8])> = vec![
        (
            format!("{d1}/scale"),
            MERGE,
            br#"{"spec":{"replicas":"x"}}"#,
        ),
        (
            format!("{d1}/scale"),
            JSONPATCH,
            br#"[{"op":"replace","path":"","value":5}]"#,
        ),
        (format!("{d1}/scale"), MERGE, b"{"),
        (
            format!("{d1}/status"),
            MERGE,
            br#"{"status":{"replicas":"x"}}"#,
        ),
        (
            format!("{d1}/status"),
            JSONPATCH,
            br#"[{"op":"replace","path":"","value":5}]"#,
        ),
        (
            format!("{pods}/p1/status"),
            JSONPATCH,
            br#"[{"op":"replace","path":"","value":[]}]"#,
        ),
        (
            format!("{pods}/p1/status"),
            SMP,
            br#"{"status":{"conditions":"x"}}"#,
        ),
        (
            format!("{pods}/p1/ephemeralcontainers"),
            SMP,
            br#"{"spec":{"ephemeralContainers":"x"}}"#,
        ),
        (
            format!("{pods}/p1/ephemeralcontainers"),
            JSONPATCH,
            br#"[{"op":"replace","path":"","value":5}]"#,
        ),
        (format!("{pods}/p1/ephemeralcontainers"), MERGE, b"[1]"),
    ];
    for (path, ct, body) in sub_patches {
        s.reject(
            &format!("subresource patch {ct}"),
            "PATCH",
            &path,
            ct,
            body.to_vec(),
            None,
        )
        .await;
    }
    // Nothing unreadable got in: every stored object of a built-in kind
    // decodes into its type.
    let (code, list) = s.call("GET", &cms, JSON, vec![]).await;
    assert_eq!(code, 200);
    let _: k8s_openapi::List<k8s_openapi::api::core::v1::ConfigMap> = serde_json::from_value(list)?;
    Ok(())
}

#[tokio::test]
async fn names_selectors_tokens_and_versions() -> anyhow::Result<()> {
    let s = start().await?;
    fixtures(&s).await;
    let cms = format!("/api/v1/namespaces/{NS}/configmaps");
    let long = "a".repeat(300);
    let st = s
        .reject_json(
            "huge name",
            "POST",
            &cms,
            JSON,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": long}}),
            Some(422),
        )
        .await;
    assert!(
        st["message"]
            .as_str()
            .unwrap_or("")
            .contains("metadata.name"),
        "{st}"
    );
    s.reject_json(
        "huge generateName",
        "POST",
        &cms,
        JSON,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": long}}),
        Some(422),
    )
    .await;
    let very_long = "b".repeat(5000);
    s.reject(
        "get huge name",
        "GET",
        &format!("{cms}/{very_long}"),
        JSON,
        vec![],
        Some(404),
    )
    .await;
    s.reject(
        "delete huge name",
        "DELETE",
        &format!("{cms}/{very_long}"),
        JSON,
        vec![],
        Some(404),
    )
    .await;
    s.reject_json(
        "huge label value",
        "POST",
        &cms,
        JSON,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "l", "labels": {"a": long}}}),
        Some(422),
    )
    .await;
    s.reject_json(
        "name mismatch on update",
        "PUT",
        &format!("{cms}/cm1"),
        JSON,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}}),
        Some(400),
    )
    .await;
    let bad_queries = [
        "labelSelector=a%20in%20(",
        "labelSelector=!!",
        "labelSelector=a%3D%3D%3Db",
        "labelSelector=%3Db",
        "fieldSelector=spec.nodeName%3Dx",
        "fieldSelector=metadata.name",
        "fieldSelector=%3D%3D%3D",
        "continue=garbage!!",
        "continue=eyJ4IjoxfQ",
        "resourceVersion=abc",
        "resourceVersion=-1",
        "resourceVersion=1.5",
        "resourceVersionMatch=Sometimes&resourceVersion=1",
        "resourceVersionMatch=Exact",
        "limit=x",
        "limit=-1",
        "timeoutSeconds=x",
        "timeoutSeconds=-5",
        "watch=maybe",
        "dryRun=Some",
        "fieldValidation=Loose",
    ];
    for q in bad_queries {
        s.reject(
            &format!("list {q}"),
            "GET",
            &format!("{cms}?{q}"),
            JSON,
            vec![],
            Some(400),
        )
        .await;
        if !q.starts_with("watch") {
            s.reject(
                &format!("watch {q}"),
                "GET",
                &format!("{cms}?watch=true&{q}"),
                JSON,
                vec![],
                Some(400),
            )
            .await;
        }
        s.reject(
            &format!("deletecollection {q}"),
            "DELETE",
            &format!("{cms}?{q}"),
            JSON,
            vec![],
            Some(400),
        )
        .await;
    }
    for q in [
        "resourceVersion=abc",
        "dryRun=Some",
        "fieldValidation=Loose",
    ] {
        s.reject(
            &format!("get {q}"),
            "GET",
            &format!("{cms}/cm1?{q}"),
            JSON,
            vec![],
            Some(400),
        )
        .await;
        s.reject_json(
            &format!("create {q}"),
            "POST",
            &format!("{cms}?{q}"),
            JSON,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "q"}}),
            Some(400),
        )
        .await;
        s.reject_json(
            &format!("patch {q}"),
            "PATCH",
            &format!("{cms}/cm1?{q}"),
            MERGE,
            json!({"data": {"x": "y"}}),
            Some(400),
        )
        .await;
    }
    // A stale or malformed resourceVersion in the body of an update.
    s.reject_json(
        "update with bad rv",
        "PUT",
        &format!("{cms}/cm1"),
        JSON,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1", "resourceVersion": "abc"}, "data": {"k": "w"}}),
        Some(400),
    )
    .await;
    s.reject_json(
        "update with wrong-typed rv",
        "PUT",
        &format!("{cms}/cm1"),
        JSON,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1", "resourceVersion": 5}, "data": {"k": "w"}}),
        Some(400),
    )
    .await;
    s.reject_json(
        "update with stale rv",
        "PUT",
        &format!("{cms}/cm1"),
        JSON,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1", "resourceVersion": "1"}, "data": {"k": "w"}}),
        Some(409),
    )
    .await;
    // A valid continue token for another resource.
    let (code, page) = s
        .call("GET", "/api/v1/namespaces/bad/pods?limit=1", JSON, vec![])
        .await;
    assert_eq!(code, 200, "{page}");
    let (code, page) = s.call("GET", &format!("{cms}?limit=1"), JSON, vec![]).await;
    assert_eq!(code, 200, "{page}");
    let tok = page["metadata"]["continue"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!tok.is_empty(), "{page}");
    s.reject(
        "continue of configmaps on secrets",
        "GET",
        &format!("/api/v1/namespaces/{NS}/secrets?continue={tok}"),
        JSON,
        vec![],
        Some(400),
    )
    .await;
    s.reject(
        "continue with resourceVersion",
        "GET",
        &format!("{cms}?continue={tok}&resourceVersion=5"),
        JSON,
        vec![],
        Some(400),
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn bad_delete_options_delete_nothing() -> anyhow::Result<()> {
    let s = start().await?;
    fixtures(&s).await;
    let cms = format!("/api/v1/namespaces/{NS}/configmaps");
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("string grace", br#"{"gracePeriodSeconds":"x"}"#.to_vec()),
        ("float grace", br#"{"gracePeriodSeconds":1.5}"#.to_vec()),
        ("truncated", b"{\"gracePeriodSeconds\":".to_vec()),
        ("array", b"[]".to_vec()),
        ("string", b"\"x\"".to_vec()),
        (
            "bad propagation",
            br#"{"propagationPolicy":"Bogus"}"#.to_vec(),
        ),
        ("number propagation", br#"{"propagationPolicy":1}"#.to_vec()),
        ("string preconditions", br#"{"preconditions":"x"}"#.to_vec()),
        ("string dryRun", br#"{"dryRun":"All"}"#.to_vec()),
        ("bad dryRun", br#"{"dryRun":["Some"]}"#.to_vec()),
        ("string orphan", br#"{"orphanDependents":"yes"}"#.to_vec()),
        (
            "wrong kind",
            br#"{"kind":"Pod","apiVersion":"v1"}"#.to_vec(),
        ),
        ("deep", deep_json(10_000)),
        ("garbage protobuf", b"k8s\x00\xff\xff".to_vec()),
    ];
    for (what, body) in &bodies {
        s.reject(
            &format!("deletecollection {what}"),
            "DELETE",
            &cms,
            JSON,
            body.clone(),
            Some(400),
        )
        .await;
        s.reject(
            &format!("delete {what}"),
            "DELETE",
            &format!("{cms}/cm1"),
            JSON,
            body.clone(),
            Some(400),
        )
        .await;
        s.reject(
            &format!("delete deployment {what}"),
            "DELETE",
            &format!("/apis/apps/v1/namespaces/{NS}/deployments/d1"),
            JSON,
            body.clone(),
            Some(400),
        )
        .await;
    }
    for q in [
        "gracePeriodSeconds=x",
        "propagationPolicy=Bogus",
        "orphanDependents=maybe",
    ] {
        s.reject(
            &format!("deletecollection ?{q}"),
            "DELETE",
            &format!("{cms}?{q}"),
            JSON,
            vec![],
            Some(400),
        )
        .await;
        s.reject(
            &format!("delete ?{q}"),
            "DELETE",
            &format!("{cms}/cm1?{q}"),
            JSON,
            vec![],
            Some(400),
        )
        .await;
    }
    // Both configmaps are still there; a good deletecollection works.
    let (code, list) = s.call("GET", &cms, JSON, vec![]).await;
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
    let (code, out) = s
        .call(
            "DELETE",
            &cms,
            JSON,
            br#"{"gracePeriodSeconds":0,"propagationPolicy":"Background"}"#.to_vec(),
        )
        .await;
    assert_eq!(code, 200, "{out}");
    let (_, list) = s.call("GET", &cms, JSON, vec![]).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    Ok(())
}

#[tokio::test]
async fn namespace_lifecycle() -> anyhow::Result<()> {
    let s = start().await?;
    for ns in ["default", "kube-system", "kube-public"] {
        let st = s
            .reject(
                &format!("delete {ns}"),
                "DELETE",
                &format!("/api/v1/namespaces/{ns}"),
                JSON,
                vec![],
                Some(403),
            )
            .await;
        assert_eq!(st["reason"], "Forbidden");
        assert_eq!(
            st["message"],
            format!("namespaces \"{ns}\" is forbidden: this namespace may not be deleted")
        );
    }
    // Creating in a missing namespace → 404 namespaces "x" not found.
    let st = s
        .reject_json(
            "create in missing namespace",
            "POST",
            "/api/v1/namespaces/nope/configmaps",
            JSON,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
            Some(404),
        )
        .await;
    assert_eq!(st["message"], "namespaces \"nope\" not found");
    // A new namespace gets the kubernetes finalizer and phase Active.
    let ns = s
        .create_ok(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}}),
        )
        .await;
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    s.create_ok(
        "/api/v1/namespaces/gone/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
    )
    .await;
    // A plain update cannot drop spec.finalizers.
    let mut upd = ns.clone();
    upd["spec"]["finalizers"] = json!([]);
    let (code, v) = s.json("PUT", "/api/v1/namespaces/gone", upd).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["spec"]["finalizers"], json!(["kubernetes"]));
    // DELETE marks it Terminating and keeps it (and its content).
    let (code, v) = s
        .call("DELETE", "/api/v1/namespaces/gone", JSON, vec![])
        .await;
    assert!(code == 200 || code == 202, "{code} {v}");
    assert_eq!(v["status"]["phase"], "Terminating", "{v}");
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
    let (code, v) = s.call("GET", "/api/v1/namespaces/gone", JSON, vec![]).await;
    assert_eq!(code, 200);
    assert_eq!(v["status"]["phase"], "Terminating");
    let (code, _) = s
        .call("GET", "/api/v1/namespaces/gone/configmaps/a", JSON, vec![])
        .await;
    assert_eq!(code, 200, "content is the namespace controller's to delete");
    // Deleting again: 409 while spec.finalizers remain.
    let (code, v) = s
        .call("DELETE", "/api/v1/namespaces/gone", JSON, vec![])
        .await;
    assert_eq!(code, 409, "{v}");
    // Creating in it → 403 with cause NamespaceTerminating.
    let st = s
        .reject_json(
            "create in terminating namespace",
            "POST",
            "/api/v1/namespaces/gone/configmaps",
            JSON,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}),
            Some(403),
        )
        .await;
    assert_eq!(st["reason"], "Forbidden");
    assert_eq!(
        st["message"],
        "configmaps \"b\" is forbidden: unable to create new content in namespace gone because it is being terminated"
    );
    assert_eq!(
        st["details"]["causes"][0]["reason"], "NamespaceTerminating",
        "{st}"
    );
    // Updates of existing content still work (controllers finish their work).
    let (code, v) = s
        .call(
            "PATCH",
            "/api/v1/namespaces/gone/configmaps/a",
            MERGE,
            br#"{"data":{"x":"y"}}"#.to_vec(),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    // namespaces/finalize with an empty list removes it.
    let (_, cur) = s.call("GET", "/api/v1/namespaces/gone", JSON, vec![]).await;
    let mut fin = cur.clone();
    fin["spec"]["finalizers"] = json!([]);
    let (code, v) = s.json("PUT", "/api/v1/namespaces/gone/finalize", fin).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = s.call("GET", "/api/v1/namespaces/gone", JSON, vec![]).await;
    assert_eq!(code, 404, "{v}");
    // A namespace with a metadata finalizer waits for it too.
    s.create_ok(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    let (code, _) = s
        .call("DELETE", "/api/v1/namespaces/held", JSON, vec![])
        .await;
    assert_eq!(code, 200);
    let (_, cur) = s.call("GET", "/api/v1/namespaces/held", JSON, vec![]).await;
    let mut fin = cur.clone();
    fin["spec"]["finalizers"] = json!([]);
    let (code, v) = s.json("PUT", "/api/v1/namespaces/held/finalize", fin).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = s.call("GET", "/api/v1/namespaces/held", JSON, vec![]).await;
    assert_eq!(code, 200, "metadata finalizer still holds it: {v}");
    let (code, v) = s
        .call(
            "PATCH",
            "/api/v1/namespaces/held",
            MERGE,
            br#"{"metadata":{"finalizers":null}}"#.to_vec(),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = s.call("GET", "/api/v1/namespaces/held", JSON, vec![]).await;
    assert_eq!(code, 404);
    // Discovery lists namespaces/finalize.
    let (_, disc) = s.call("GET", "/api/v1", JSON, vec![]).await;
    let names: Vec<&str> = disc["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(names.contains(&"namespaces/finalize"), "{names:?}");
    Ok(())
}

#[tokio::test]
async fn everything_stored_decodes_typed() -> anyhow::Result<()> {
    let s = start().await?;
    fixtures(&s).await;
    let mut checked = 0;
    for (key, value) in s.snapshot().await {
        let v: Value = serde_json::from_slice(&value)?;
        let av = v["apiVersion"].as_str().unwrap_or("");
        let kind = v["kind"].as_str().unwrap_or("");
        let (group, version) = av.rsplit_once('/').unwrap_or(("", av));
        if let Some(res) = rkube_apimachinery::typed::check_object(group, version, kind, &v) {
            assert!(res.is_ok(), "{key}: {}", res.unwrap_err());
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} objects checked");
    Ok(())
}
