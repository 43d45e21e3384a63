//! The `rkube` verbs around a profile: start, status, logs, stop, start
//! again (same certificates, same data), durability across `kill -9`,
//! delete (kubeconfig entries removed) and a clear error for a busy port.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use rkube_e2e::{alive, describe, eventually, rkube_bin, Cluster};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn contexts(c: &Cluster) -> Vec<String> {
    let out = Command::new("kubectl")
        .args(["config", "get-contexts", "-o", "name"])
        .env("KUBECONFIG", c.kubeconfig_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill9() {
    let c = Cluster::start("durable").unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(c.client().await.unwrap());
    for i in 0..50 {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("d-{i:02}")),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("i".to_string(), i.to_string())])),
            ..Default::default()
        };
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let pid = c.daemon_pid().expect("pid file");

    c.kill9().unwrap();
    let out = c.restart().unwrap();
    assert!(
        out.status.success(),
        "start after kill -9: {}\n{}",
        describe(&out),
        c.log_tail(40)
    );
    assert_ne!(c.daemon_pid(), Some(pid), "a new daemon runs");

    let api: Api<ConfigMap> = Api::default_namespaced(c.client().await.unwrap());
    let list = api.list(&ListParams::default()).await.unwrap();
    let found: BTreeMap<String, String> = list
        .items
        .into_iter()
        .filter_map(|cm| Some((cm.metadata.name?, cm.data?.get("i")?.clone())))
        .filter(|(name, _)| name.starts_with("d-"))
        .collect();
    let want: BTreeMap<String, String> = (0..50)
        .map(|i| (format!("d-{i:02}"), i.to_string()))
        .collect();
    assert_eq!(found, want);

    // The store keeps working after recovery.
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("after".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(
        c.kubectl_ok(&["get", "configmap", "after", "-o", "name"])
            .trim(),
        "configmap/after"
    );
}

#[test]
fn status_stop_start_keeps_certificates_and_data() {
    let c = Cluster::start("restart").unwrap();
    let name = c.name().to_string();
    let profile = ["--profile", name.as_str()];

    let version = c.rkube(&["version"]);
    assert!(version.status.success(), "{}", describe(&version));
    assert!(
        text(&version).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        describe(&version)
    );

    let status = c.rkube(&["status", profile[0], profile[1]]);
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));
    for want in [
        "host: Running",
        "apiserver: Running",
        "kubeconfig: Configured",
    ] {
        assert!(
            text(&status).contains(want),
            "status lacks {want:?}: {}",
            describe(&status)
        );
    }
    let logs = c.rkube(&["logs", profile[0], profile[1]]);
    assert!(
        logs.status.success() && !logs.stdout.is_empty(),
        "{}",
        describe(&logs)
    );

    // start on a running profile changes nothing.
    let pid = c.daemon_pid().expect("pid file");
    let again = c.restart().unwrap();
    assert!(again.status.success(), "second start: {}", describe(&again));
    assert_eq!(
        c.daemon_pid(),
        Some(pid),
        "second start replaced the daemon"
    );

    c.kubectl_stdin_ok(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\ndata:\n  k: v\n"),
    );
    let ca = std::fs::read(c.ca_path()).unwrap();
    let admin = std::fs::read(c.profile_dir().join("pki").join("admin.crt")).unwrap();

    let stop = c.rkube(&["stop", profile[0], profile[1]]);
    assert!(stop.status.success(), "{}", describe(&stop));
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)),
        "daemon {pid} still alive after stop"
    );
    let status = c.rkube(&["status", profile[0], profile[1]]);
    assert_ne!(status.status.code(), Some(0), "{}", describe(&status));
    assert!(
        text(&status).contains("host: Stopped"),
        "{}",
        describe(&status)
    );
    assert!(
        !c.kubectl(&["get", "--raw", "/readyz"]).status.success(),
        "API server still answers after stop"
    );
    // stop twice is fine.
    let stop = c.rkube(&["stop", profile[0], profile[1]]);
    assert!(stop.status.success(), "second stop: {}", describe(&stop));

    let start = c.restart().unwrap();
    assert!(
        start.status.success(),
        "start after stop: {}",
        describe(&start)
    );
    assert_eq!(
        std::fs::read(c.ca_path()).unwrap(),
        ca,
        "ca.crt changed across stop/start"
    );
    assert_eq!(
        std::fs::read(c.profile_dir().join("pki").join("admin.crt")).unwrap(),
        admin,
        "admin.crt changed"
    );
    assert_eq!(
        c.kubectl_ok(&["get", "configmap", "keep", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    let status = c.rkube(&["status", profile[0], profile[1]]);
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));
}

#[test]
fn delete_removes_profile_and_kubeconfig_context() {
    let c = Cluster::start("gone").unwrap();
    // An unrelated entry that delete must keep.
    let out = Command::new("kubectl")
        .args([
            "config",
            "set-context",
            "other",
            "--cluster=other",
            "--user=other",
        ])
        .env("KUBECONFIG", c.kubeconfig_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let before = contexts(&c);
    assert!(
        before.contains(&"gone".to_string()) && before.contains(&"other".to_string()),
        "{before:?}"
    );
    let pid = c.daemon_pid().expect("pid file");

    let out = c.rkube(&["delete", "--profile", "gone"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(contexts(&c), ["other"]);
    let kubeconfig = std::fs::read_to_string(c.kubeconfig_path()).unwrap();
    assert!(
        !kubeconfig.contains("name: gone"),
        "cluster/user entries left behind:\n{kubeconfig}"
    );
    assert!(!c.profile_dir().exists(), "profile directory left behind");
    assert!(
        eventually(Duration::from_secs(10), || TcpListener::bind((
            "127.0.0.1",
            c.port()
        ))
        .is_ok()),
        "port {} still in use after delete (daemon pid {pid})",
        c.port()
    );
    let status = c.rkube(&["status", "--profile", "gone"]);
    assert_ne!(status.status.code(), Some(0), "{}", describe(&status));
}

#[test]
fn busy_port_is_reported_clearly() {
    let bin = rkube_bin().unwrap();
    let home = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    // Output goes to files: a daemon keeping inherited pipes open cannot hang us.
    let run = |args: &[&str]| {
        let out = home.path().join("out");
        let err = home.path().join("err");
        let status = Command::new(&bin)
            .args(args)
            .env("RKUBE_HOME", home.path())
            .env("KUBECONFIG", home.path().join("kubeconfig"))
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        std::process::Output {
            status,
            stdout: std::fs::read(&out).unwrap(),
            stderr: std::fs::read(&err).unwrap(),
        }
    };
    let out = run(&["start", "--profile", "busy", "--apiserver-port", &port]);
    let all = text(&out);
    let _ = run(&["delete", "--profile", "busy"]);
    assert!(
        !out.status.success(),
        "start on a busy port succeeded: {}",
        describe(&out)
    );
    assert!(
        all.contains(&port) && all.contains("already in use") && all.contains("--apiserver-port"),
        "{}",
        describe(&out)
    );
}
