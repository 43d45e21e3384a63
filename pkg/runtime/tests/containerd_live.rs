//! Live check of the containerd backend against the host's containerd:
//! start it in a scratch directory, import images built from the host's
//! static busybox, run a pod with a container that logs, check the pod got
//! an address on a test bridge, reuse the running daemon, then delete
//! everything. Needs root, containerd, runc, CNI plugins, umoci and skopeo:
//! `cargo test -p rkube-runtime --test containerd_live -- --ignored`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rkube_cri::api;
use rkube_runtime::{Containerd, ContainerdOptions, Error};

const BRIDGE: &str = "rkubetest0";
const SUBNET: &str = "10.244.250.0/24";

fn run(cmd: &str) {
    let out = Command::new("sh").args(["-ec", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds `busybox:test` / `pause:test` as archives and an OCI layout.
fn build_images(dir: &Path) {
    let d = dir.display();
    run(&format!(
        "cd {d}; umoci init --layout oci; umoci new --image oci:base
         umoci unpack --image oci:base bundle >/dev/null
         mkdir -p bundle/rootfs/bin; cp /usr/bin/busybox bundle/rootfs/bin/
         for c in sh echo sleep cat ip; do ln -s busybox bundle/rootfs/bin/$c; done
         umoci repack --image oci:base bundle
         umoci config --image oci:base --tag busybox --config.cmd /bin/sh --config.env PATH=/bin
         umoci config --image oci:base --tag pause --config.cmd /bin/sleep --config.cmd 2147483647
         skopeo copy -q oci:oci:busybox docker-archive:busybox.tar:docker.io/library/busybox:test
         skopeo copy -q oci:oci:pause docker-archive:pause.tar:rkube.local/pause:test
         skopeo copy -q oci:oci:busybox oci-archive:oci.tar:busybox:ocitest
         mkdir layout; skopeo copy -q oci:oci:busybox oci:layout:example.com/bb:layout"
    ));
}

#[tokio::test]
#[ignore = "needs root and the host's containerd"]
async fn runs_a_pod_on_a_profile_containerd() {
    rkube_runtime::check_host().unwrap();
    let scratch = tempfile::Builder::new()
        .prefix("rkc")
        .tempdir_in("/tmp")
        .unwrap();
    let base = scratch.path().to_path_buf();
    build_images(&base);
    let opts = ContainerdOptions::new(base.join("containerd"), "rkube.local/pause:test");
    // Run the checks in a task so that a failure still cleans up.
    let result = tokio::spawn(checks(base.clone())).await;
    let c = Containerd::new(opts.clone());
    let log = std::fs::read_to_string(opts.log_file()).unwrap_or_default();
    for l in log
        .lines()
        .filter(|l| l.contains("level=error") || l.contains("level=warn"))
    {
        eprintln!("containerd.log: {l}");
    }
    c.delete().await.unwrap();
    assert!(!opts.dir.exists());
    assert_eq!(c.running_pid().unwrap(), None);
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn checks(base: std::path::PathBuf) {
    let base = base.as_path();
    let mut opts = ContainerdOptions::new(base.join("containerd"), "rkube.local/pause:test");
    let net = rkube_network::CniOptions {
        bridge: BRIDGE.into(),
        subnet: SUBNET.into(),
        ..rkube_network::CniOptions::for_profile(base)
    };
    rkube_network::check_plugins(&net.cni_bin_dir).unwrap();
    rkube_network::write_conflist(&opts.cni_conf_dir, &net).unwrap();
    opts.cni_bin_dir = net.cni_bin_dir.clone();
    let c = Containerd::new(opts.clone());
    c.start().await.unwrap();
    let pid = c.running_pid().unwrap().expect("running");
    assert!(c.version().await.unwrap().starts_with("containerd://1."));

    let loaded = c.import_image(&base.join("pause.tar")).await.unwrap();
    assert_eq!(loaded, vec!["rkube.local/pause:test"]);
    let loaded = c.import_image(&base.join("busybox.tar")).await.unwrap();
    assert_eq!(loaded, vec!["docker.io/library/busybox:test"]);
    let loaded = c.import_image(&base.join("oci.tar")).await.unwrap();
    assert_eq!(loaded, vec!["docker.io/library/busybox:ocitest"]);
    let loaded = c.import_image(&base.join("layout")).await.unwrap();
    assert_eq!(loaded, vec!["example.com/bb:layout"]);
    let tags: Vec<String> = c
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .collect();
    for t in ["docker.io/library/busybox:ocitest", "example.com/bb:layout"] {
        assert!(tags.iter().any(|x| x == t), "{t} in {tags:?}");
    }

    let mut cri = rkube_cri::connect(&c.socket()).unwrap();
    let logs = base.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let sandbox_config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "p".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "p".into(),
        log_directory: logs.to_string_lossy().into_owned(),
        linux: Some(api::LinuxPodSandboxConfig::default()),
        ..Default::default()
    };
    let pod = cri
        .runtime
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let status = cri
        .runtime
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let ip = status.network.unwrap().ip;
    assert!(ip.starts_with("10.244.250."), "pod ip {ip}");
    let ctr = cri
        .runtime
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: "busybox:test".into(),
                    ..Default::default()
                }),
                command: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo hello from rkube; ip -4 addr show eth0".into(),
                ],
                log_path: "c.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    cri.runtime
        .start_container(api::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();
    let log = logs.join("c.log");
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(&ip) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains("stdout F hello from rkube"), "{text}");
    assert!(text.contains(&ip), "{text}");

    // A second start (as after a restart of rkube) reuses the daemon.
    Containerd::new(opts.clone()).start().await.unwrap();
    assert_eq!(c.running_pid().unwrap(), Some(pid));
    // Stop leaves the pod; the next start adopts it.
    c.stop().unwrap();
    c.start().await.unwrap();
    let pods = cri
        .runtime
        .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].id, pod);
    assert_eq!(pods[0].state, api::PodSandboxState::SandboxReady as i32);

    // CRI RemoveImage removes the image with every name it has.
    c.remove_image("busybox:ocitest").await.unwrap();
    let tags: Vec<String> = c
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .collect();
    assert_eq!(tags, vec!["rkube.local/pause:test"]);
    assert!(matches!(
        c.remove_image("busybox:ocitest").await,
        Err(Error::ImageNotFound(_))
    ));
}
