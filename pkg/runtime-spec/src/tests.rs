//! Spec generation tests, and one real run of a generated spec with runc.

use super::*;

fn image(entry: &[&str], cmd: &[&str], env: &[&str]) -> ImageConfig {
    serde_json::from_value(json!({
        "Entrypoint": entry, "Cmd": cmd, "Env": env, "WorkingDir": "/work",
    }))
    .unwrap()
}

fn files(d: &Path) -> SandboxFiles {
    SandboxFiles {
        hosts: d.join("hosts"),
        resolv_conf: d.join("resolv.conf"),
        hostname: d.join("hostname"),
        shm: d.join("shm"),
    }
}

fn ns() -> Namespaces {
    Namespaces {
        net: NsMode::Path("/run/netns/x".into()),
        ipc: NsMode::Path("/proc/5/ns/ipc".into()),
        uts: NsMode::Path("/proc/5/ns/uts".into()),
        pid: NsMode::New,
    }
}

fn spec_json(config: &cri::ContainerConfig, img: &ImageConfig, rootfs: &Path) -> Value {
    let sb = cri::PodSandboxConfig {
        hostname: "web".into(),
        ..Default::default()
    };
    let f = files(rootfs);
    let s = container_spec(&ContainerInput {
        config,
        sandbox: &sb,
        image: img,
        rootfs,
        namespaces: ns(),
        files: &f,
        cgroups_path: "/rkube/pod1/c1".into(),
    })
    .unwrap();
    serde_json::to_value(s).unwrap()
}

#[test]
fn args_follow_kubernetes_rules() {
    let d = tempfile::tempdir().unwrap();
    let img = image(&["/ep"], &["a", "b"], &["PATH=/bin", "A=1"]);
    let c = cri::ContainerConfig::default();
    assert_eq!(
        spec_json(&c, &img, d.path())["process"]["args"],
        json!(["/ep", "a", "b"])
    );
    let c = cri::ContainerConfig {
        args: vec!["x".into()],
        ..Default::default()
    };
    assert_eq!(
        spec_json(&c, &img, d.path())["process"]["args"],
        json!(["/ep", "x"])
    );
    let c = cri::ContainerConfig {
        command: vec!["sh".into()],
        args: vec!["-c".into(), "true".into()],
        envs: vec![cri::KeyValue {
            key: "A".into(),
            value: "2".into(),
        }],
        ..Default::default()
    };
    let v = spec_json(&c, &img, d.path());
    assert_eq!(v["process"]["args"], json!(["sh", "-c", "true"]));
    assert_eq!(
        v["process"]["env"],
        json!(["PATH=/bin", "A=2", "HOSTNAME=web"])
    );
    assert_eq!(v["process"]["cwd"], "/work");
    let empty = image(&[], &[], &[]);
    let sb = cri::PodSandboxConfig::default();
    let f = files(d.path());
    let err = container_spec(&ContainerInput {
        config: &cri::ContainerConfig::default(),
        sandbox: &sb,
        image: &empty,
        rootfs: d.path(),
        namespaces: ns(),
        files: &f,
        cgroups_path: String::new(),
    })
    .unwrap_err();
    assert!(err.to_string().contains("no command"), "{err}");
}

#[test]
fn namespaces_mounts_resources_and_caps() {
    let d = tempfile::tempdir().unwrap();
    let img = image(&["/ep"], &[], &[]);
    let vol = d.path().join("vol");
    let c = cri::ContainerConfig {
        mounts: vec![
            cri::Mount {
                container_path: "/data".into(),
                host_path: vol.to_string_lossy().into(),
                readonly: true,
                ..Default::default()
            },
            cri::Mount {
                container_path: "/etc/hosts".into(),
                host_path: d.path().join("myhosts").to_string_lossy().into(),
                ..Default::default()
            },
        ],
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 1 << 20,
                cpu_shares: 256,
                oom_score_adj: -997,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                capabilities: Some(cri::Capability {
                    add_capabilities: vec!["NET_ADMIN".into()],
                    drop_capabilities: vec!["CAP_KILL".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let v = spec_json(&c, &img, d.path());
    assert!(vol.is_dir(), "missing host dirs are created");
    let nss = v["linux"]["namespaces"].as_array().unwrap();
    assert!(nss.contains(&json!({"type": "network", "path": "/run/netns/x"})));
    assert!(nss.contains(&json!({"type": "pid"})));
    let mounts = v["mounts"].as_array().unwrap();
    let dests: Vec<&str> = mounts
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert_eq!(dests.iter().filter(|d| **d == "/etc/hosts").count(), 1);
    let data = mounts.iter().find(|m| m["destination"] == "/data").unwrap();
    assert!(data["options"].as_array().unwrap().contains(&json!("ro")));
    assert_eq!(v["linux"]["resources"]["memory"]["limit"], 1 << 20);
    assert_eq!(v["linux"]["resources"]["cpu"]["shares"], 256);
    assert_eq!(
        v["process"]["oomScoreAdj"], 0,
        "negative scores are clamped"
    );
    let caps = v["process"]["capabilities"]["effective"]
        .as_array()
        .unwrap();
    assert!(caps.contains(&json!("CAP_NET_ADMIN")) && !caps.contains(&json!("CAP_KILL")));
    assert!(capabilities(
        false,
        Some(&cri::Capability {
            add_capabilities: vec!["BOGUS".into()],
            ..Default::default()
        })
    )
    .is_err());
    assert_eq!(capabilities(true, None).unwrap().len(), ALL_CAPS.len());
    assert!(capabilities(
        false,
        Some(&cri::Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        })
    )
    .unwrap()
    .is_empty());
}

/// Builds a busybox rootfs and runs a generated spec with runc for real.
#[test]
fn runc_accepts_a_generated_spec() {
    let d = tempfile::tempdir().unwrap();
    let rootfs = d.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    for f in ["hosts", "resolv.conf", "hostname"] {
        std::fs::write(d.path().join(f), "x\n").unwrap();
    }
    std::fs::create_dir_all(d.path().join("shm")).unwrap();
    let img = image(
        &[],
        &["sh", "-c", "echo hello-from-runc; id -u; cat /etc/hostname"],
        &[],
    );
    let sb = cri::PodSandboxConfig {
        hostname: "h".into(),
        ..Default::default()
    };
    let f = files(d.path());
    let id = format!("rkube-spec-test-{}", std::process::id());
    let config = cri::ContainerConfig::default();
    let spec = container_spec(&ContainerInput {
        config: &config,
        sandbox: &sb,
        image: &img,
        rootfs: &rootfs,
        namespaces: Namespaces {
            net: NsMode::New,
            ipc: NsMode::New,
            uts: NsMode::New,
            pid: NsMode::New,
        },
        files: &f,
        cgroups_path: format!("/rkube-test/{id}"),
    })
    .unwrap();
    let bundle = d.path().join("bundle");
    write_bundle(&bundle, &spec).unwrap();
    let out = std::process::Command::new("runc")
        .args(["--root"])
        .arg(d.path().join("runc"))
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = std::process::Command::new("runc")
        .arg("--root")
        .arg(d.path().join("runc"))
        .args(["delete", "-f", &id])
        .output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "runc: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "hello-from-runc\n0\nx\n");
}
