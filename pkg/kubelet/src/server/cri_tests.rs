//! Against a real CRI runtime (ignored unless asked for): set
//! `RKUBE_TEST_CRI_SOCK` to a containerd socket and `RKUBE_TEST_IMAGE` to a
//! loaded busybox image whose default command keeps running, then
//! `cargo test -p rkube-kubelet cri_tests -- --ignored`. Runs a host-network
//! sandbox, reads its logs through the server and execs over WebSocket.

use std::collections::HashMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rkube_cri::api;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::runtime::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};
use super::testutil::*;
use super::*;

fn labels(container: Option<&str>) -> HashMap<String, String> {
    let mut l = HashMap::from([
        (LABEL_POD_NAMESPACE.to_string(), "default".to_string()),
        (LABEL_POD_NAME.to_string(), "streamtest".to_string()),
        (LABEL_POD_UID.to_string(), "uid-streamtest".to_string()),
    ]);
    if let Some(c) = container {
        l.insert(LABEL_CONTAINER_NAME.to_string(), c.to_string());
    }
    l
}

async fn ws(
    addr: SocketAddr,
    pki: &TestPki,
    path: &str,
    protocols: &str,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        String,
    ),
    String,
> {
    let tls = connect(addr, pki.client(Some(&pki.kubelet_client))).await;
    let mut req = format!("wss://127.0.0.1:{}{path}", addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(req, tls),
    )
    .await
    {
        Err(_) => Err("handshake timed out".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok((s, resp))) => {
            let p = resp
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            Ok((s, p))
        }
    }
}

/// Runs the test pod (host network) and returns its sandbox ID.
async fn run_pod(cri: &mut rkube_cri::Clients, logs: &std::path::Path) -> String {
    let image = std::env::var("RKUBE_TEST_IMAGE").unwrap_or("docker.io/library/bb:1".into());
    let pod_logs = logs.join("default_streamtest_uid-streamtest");
    let sb_cfg = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "streamtest".into(),
            uid: "uid-streamtest".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: pod_logs.display().to_string(),
        labels: labels(None),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: api::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Leftovers of an earlier failed run.
    let old = cri
        .runtime
        .list_pod_sandbox(api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                label_selector: labels(None),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    for o in old {
        let _ = cri
            .runtime
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: o.id.clone(),
            })
            .await;
        let _ = cri
            .runtime
            .remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: o.id,
            })
            .await;
    }
    let sb = cri
        .runtime
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(sb_cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let c = cri
        .runtime
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                command: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo hello; echo oops >&2; exec sleep 100000".into(),
                ],
                log_path: "app/0.log".into(),
                labels: labels(Some("app")),
                ..Default::default()
            }),
            sandbox_config: Some(sb_cfg.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    cri.runtime
        .start_container(api::StartContainerRequest { container_id: c })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sb
}

async fn remove_pod(cri: &mut rkube_cri::Clients, sb: String) {
    let _ = cri
        .runtime
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: sb.clone(),
        })
        .await;
    let _ = cri
        .runtime
        .remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: sb })
        .await;
}

/// The tests share one pod name, so they take turns.
static POD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cri_socket() -> Option<rkube_cri::Clients> {
    let sock = std::env::var("RKUBE_TEST_CRI_SOCK").ok()?;
    Some(rkube_cri::connect(std::path::Path::new(&sock)).unwrap())
}

#[tokio::test]
#[ignore]
async fn exec_and_logs_against_a_real_runtime() {
    let Some(mut cri) = cri_socket() else {
        return;
    };
    let _turn = POD_LOCK.lock().await;
    let logs = tempfile::tempdir().unwrap();
    let sb = run_pod(&mut cri, logs.path()).await;
    let result = async {
        let pki = TestPki::new();
        let (_stop, rx) = tokio::sync::watch::channel(false);
        let addr = start(
            ServerConfig {
                node_name: "node1".into(),
                cri: cri.clone(),
                log_root: logs.path().to_path_buf(),
                serving_cert_pem: pki.serving.0.clone(),
                serving_key_pem: pki.serving.1.clone(),
                client_ca_pem: pki.ca.clone(),
                bind: "127.0.0.1:0".parse().unwrap(),
            },
            rx,
        )
        .await
        .unwrap();

        // Logs.
        let mut t = connect(addr, pki.client(Some(&pki.kubelet_client))).await;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        t.write_all(b"GET /containerLogs/default/streamtest/app?timestamps=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        t.read_to_string(&mut out).await.ok();
        eprintln!("logs: {out}");
        assert!(
            out.contains("Z hello\n") && out.contains("Z oops\n"),
            "{out}"
        );

        // WebSocket exec, v4 (what containerd 1.6 speaks).
        let cmd = "/exec/default/streamtest/app?command=sh&command=-c&command=echo%20out%3B%20echo%20err%20%3E%262%3B%20exit%203&stdout=1&stderr=1";
        let (mut s, proto) = ws(addr, &pki, cmd, "v4.channel.k8s.io").await.unwrap();
        assert_eq!(proto, "v4.channel.k8s.io");
        let mut got: HashMap<u8, Vec<u8>> = HashMap::new();
        while let Some(Ok(m)) = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .unwrap()
        {
            if let Message::Binary(b) = m {
                if let Some((ch, rest)) = b.split_first() {
                    got.entry(*ch).or_default().extend_from_slice(rest);
                }
            }
        }
        let text = |ch: u8| {
            String::from_utf8_lossy(got.get(&ch).map(|v| v.as_slice()).unwrap_or(b"")).into_owned()
        };
        eprintln!(
            "stdout {:?} stderr {:?} status {:?}",
            text(1),
            text(2),
            text(3)
        );
        assert_eq!(text(1), "out\n");
        assert_eq!(text(2), "err\n");
        assert!(
            text(3).contains("NonZeroExitCode") && text(3).contains("\"3\""),
            "{}",
            text(3)
        );

        // stdin over v4, closed by the command itself.
        let cmd = "/exec/default/streamtest/app?command=busybox&command=head&command=-c&command=3&stdin=1&stdout=1";
        let (mut s, _) = ws(addr, &pki, cmd, "v4.channel.k8s.io").await.unwrap();
        s.send(Message::Binary(b"\x00abcdef".to_vec().into()))
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Some(Ok(m)) = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .unwrap()
        {
            if let Message::Binary(b) = m {
                if b.first() == Some(&1) {
                    out.extend_from_slice(&b[1..]);
                }
            }
        }
        assert_eq!(out, b"abc");

        // kubectl's offer: refused quickly, so that kubectl falls back to SPDY.
        let err = ws(
            addr,
            &pki,
            cmd,
            "v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io",
        )
        .await
        .expect_err("v5-only offer must be refused by containerd 1.6");
        eprintln!("v5 offer: {err}");
        assert!(!err.contains("timed out"), "{err}");
        // kube-rs' offer gets v4.
        let (_, proto) = ws(addr, &pki, cmd, "v5.channel.k8s.io, v4.channel.k8s.io")
            .await
            .unwrap();
        assert_eq!(proto, "v4.channel.k8s.io");
        // kubectl's port-forward tunnel: refused quickly too.
        let err = ws(
            addr,
            &pki,
            "/portForward/default/streamtest",
            "SPDY/3.1+portforward.k8s.io",
        )
        .await
        .expect_err("tunnel refused");
        eprintln!("tunnel offer: {err}");
        assert!(!err.contains("timed out"), "{err}");
    };
    let r = tokio::time::timeout(Duration::from_secs(60), result).await;
    remove_pod(&mut cri, sb).await;
    r.expect("timed out");
}

/// A stand-in API server for kubectl: discovery, one pod, and its exec and
/// portforward subresources served by this module's handlers straight
/// against the runtime.
async fn fake_apiserver(cri: rkube_cri::Clients, pki: &TestPki) -> SocketAddr {
    use axum::extract::{Path, RawQuery, Request, State};
    use axum::routing::{any, get};
    use serde_json::json;
    let ctx = Arc::new(Ctx {
        node_name: "node1".into(),
        runtime: Arc::new(cri),
        log_root: "/nonexistent".into(),
        node_log_dir: "/nonexistent".into(),
        cpu_sample: std::sync::Mutex::new(None),
    });
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "streamtest", "namespace": "default", "uid": "uid-streamtest"},
        "spec": {"containers": [{"name": "app", "image": "bb"}]},
        "status": {"phase": "Running"}});
    let resources = json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": ["get", "list"], "shortNames": ["po"]},
        {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]},
        {"name": "pods/portforward", "singularName": "", "namespaced": true, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}]});
    let exec = |State(ctx): State<Arc<Ctx>>,
                Path((ns, pod)): Path<(String, String)>,
                RawQuery(q): RawQuery,
                req: Request| async move {
        let q = q.unwrap_or_default();
        let container = query_pairs(&q)
            .into_iter()
            .find(|(k, _)| k == "container")
            .map(|x| x.1)
            .unwrap_or("app".into());
        stream::exec(
            State(ctx),
            Path((ns, pod, container)),
            RawQuery(Some(q)),
            req,
        )
        .await
    };
    let router = Router::new()
        .route(
            "/api",
            get(|| async { axum::Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})) }),
        )
        .route(
            "/apis",
            get(|| async { axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})) }),
        )
        .route("/api/v1", get(move || async move { axum::Json(resources) }))
        .route(
            "/api/v1/namespaces/default/pods/streamtest",
            get(move || async move { axum::Json(pod) }),
        )
        .route("/api/v1/namespaces/{ns}/pods/{pod}/exec", any(exec))
        .route(
            "/api/v1/namespaces/{ns}/pods/{pod}/portforward",
            any(stream::port_forward),
        )
        .with_state(ctx);
    let cfg = ServerConfig {
        node_name: String::new(),
        cri: rkube_cri::connect(std::path::Path::new("/nonexistent")).unwrap(),
        log_root: "/".into(),
        serving_cert_pem: pki.serving.0.clone(),
        serving_key_pem: pki.serving.1.clone(),
        client_ca_pem: pki.ca.clone(),
        bind: "127.0.0.1:0".parse().unwrap(),
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    tokio::spawn(serve(l, Arc::new(tls_config(&cfg).unwrap()), router, rx));
    addr
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn kubectl_exec_cp_and_port_forward_against_a_real_runtime() {
    let Some(mut cri) = cri_socket() else {
        return;
    };
    let _turn = POD_LOCK.lock().await;
    let logs = tempfile::tempdir().unwrap();
    let sb = run_pod(&mut cri, logs.path()).await;
    let pki = TestPki::new();
    let api = fake_apiserver(cri.clone(), &pki).await;
    let kc = logs.path().join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: x\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: default\ncurrent-context: c\n",
            api.port()
        ),
    )
    .unwrap();
    let kc2 = kc.clone();
    let run = move |args: Vec<&'static str>, stdin: &'static [u8]| {
        let kc = kc2.clone();
        tokio::task::spawn_blocking(move || kubectl(&kc, &args, stdin))
    };
    let result = async {
        let (code, out, err) = run(
            vec![
                "exec",
                "streamtest",
                "-c",
                "app",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            b"",
        )
        .await
        .unwrap();
        eprintln!("exec: {code} {out:?} {err:?}");
        assert_eq!((code, out.as_str()), (3, "out\n"), "{err}");
        assert!(err.contains("err\n"), "{err}");

        let (code, out, err) = run(
            vec!["exec", "-i", "streamtest", "--", "cat"],
            b"via stdin\n",
        )
        .await
        .unwrap();
        eprintln!("exec -i: {code} {out:?} {err:?}");
        assert_eq!((code, out.as_str()), (0, "via stdin\n"), "{err}");

        let src = logs.path().join("payload.txt");
        std::fs::write(&src, "copied both ways\n").unwrap();
        let src_s: &'static str = Box::leak(src.display().to_string().into_boxed_str());
        let (code, _, err) = run(vec!["cp", src_s, "streamtest:/tmp/payload.txt"], b"")
            .await
            .unwrap();
        eprintln!("cp to: {code} {err:?}");
        assert_eq!(code, 0, "{err}");
        let back: &'static str = Box::leak(
            logs.path()
                .join("back.txt")
                .display()
                .to_string()
                .into_boxed_str(),
        );
        let (code, _, err) = run(vec!["cp", "streamtest:/tmp/payload.txt", back], b"")
            .await
            .unwrap();
        eprintln!("cp from: {code} {err:?}");
        assert_eq!(code, 0, "{err}");
        assert_eq!(std::fs::read_to_string(back).unwrap(), "copied both ways\n");

        // Port-forward to a listener on the host (the pod shares its network).
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut c, _)) = l.accept().await {
                let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\npf-ok").await;
            }
        });
        let local = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut child = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["port-forward", "streamtest", &format!("{local}:{target}")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut body = String::new();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(mut c) = tokio::net::TcpStream::connect(("127.0.0.1", local)).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut body)).await;
                break;
            }
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "port-forward: {body:?} {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(body.ends_with("pf-ok"), "{body}");
    };
    let r = tokio::time::timeout(Duration::from_secs(120), result).await;
    remove_pod(&mut cri, sb).await;
    r.expect("timed out");
}
