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

/// A busybox root file system plus sandbox files in `d`.
fn busybox(d: &Path) -> (PathBuf, SandboxFiles) {
    let rootfs = d.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    for f in ["hosts", "resolv.conf", "hostname"] {
        std::fs::write(d.join(f), "x\n").unwrap();
    }
    std::fs::create_dir_all(d.join("shm")).unwrap();
    (rootfs, files(d))
}

/// Runs `spec` with `runc run` (foreground, output captured), then deletes
/// the container; returns stdout, panics with runc's output on failure.
fn runc_run(d: &Path, name: &str, spec: &Spec) -> String {
    let id = format!("rkube-spec-test-{name}-{}", std::process::id());
    let bundle = d.join(format!("bundle-{name}"));
    write_bundle(&bundle, spec).unwrap();
    let root = d.join("runc");
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = std::process::Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["delete", "-f", &id])
        .output();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "runc: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn cgroup(name: &str) -> String {
    format!("/rkube-test/{name}-{}", std::process::id())
}

/// Builds a busybox rootfs and runs a generated container spec with runc.
#[test]
fn runc_accepts_a_generated_spec() {
    let d = tempfile::tempdir().unwrap();
    let (rootfs, f) = busybox(d.path());
    let img = image(
        &[],
        &[
            "sh",
            "-c",
            "echo hello-from-runc; id -u; cat /etc/hostname; hostname",
        ],
        &[],
    );
    let sb = cri::PodSandboxConfig {
        hostname: "h".into(),
        ..Default::default()
    };
    let config = cri::ContainerConfig {
        working_dir: "/".into(),
        ..Default::default()
    };
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
        cgroups_path: cgroup("c"),
    })
    .unwrap();
    assert_eq!(runc_run(d.path(), "c", &spec), "hello-from-runc\n0\nx\nh\n");
}

/// The pause (sandbox) spec runs with runc too.
#[test]
fn runc_accepts_a_sandbox_spec() {
    let d = tempfile::tempdir().unwrap();
    let (rootfs, f) = busybox(d.path());
    let img: ImageConfig = serde_json::from_value(
        json!({"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["hostname; touch /x 2>/dev/null || echo ro"]}),
    )
    .unwrap();
    let cfg = cri::PodSandboxConfig {
        hostname: "pod-h".into(),
        ..Default::default()
    };
    let spec = sandbox_spec(&SandboxInput {
        config: &cfg,
        rootfs: &rootfs,
        image: &img,
        netns: NsMode::New,
        cgroups_path: cgroup("s"),
        files: &f,
    })
    .unwrap();
    assert_eq!(runc_run(d.path(), "s", &spec), "pod-h\nro\n");
}

#[test]
fn default_path_and_cwd() {
    let d = tempfile::tempdir().unwrap();
    let img: ImageConfig = serde_json::from_value(json!({"Cmd": ["/x"]})).unwrap();
    let c = cri::ContainerConfig {
        tty: true,
        ..Default::default()
    };
    let v = spec_json(&c, &img, d.path());
    assert_eq!(v["process"]["env"][0], json!(DEFAULT_PATH));
    assert_eq!(v["process"]["cwd"], "/");
    assert_eq!(v["process"]["terminal"], true);
    let c = cri::ContainerConfig {
        working_dir: "/srv".into(),
        ..Default::default()
    };
    assert_eq!(spec_json(&c, &img, d.path())["process"]["cwd"], "/srv");
}

#[test]
fn mount_order_and_propagation() {
    let d = tempfile::tempdir().unwrap();
    let img = image(&["/ep"], &[], &[]);
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let c = cri::ContainerConfig {
        mounts: vec![
            cri::Mount {
                container_path: "/z".into(),
                host_path: a.to_string_lossy().into(),
                propagation: 2,
                ..Default::default()
            },
            cri::Mount {
                container_path: "/a".into(),
                host_path: b.to_string_lossy().into(),
                propagation: 1,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let v = spec_json(&c, &img, d.path());
    let dests: Vec<&str> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/shm",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/etc/hostname",
            "/z",
            "/a"
        ]
    );
    let m = &v["mounts"][10];
    assert_eq!(m["options"], json!(["rbind", "rshared", "rw"]));
    assert_eq!(v["mounts"][11]["options"], json!(["rbind", "rslave", "rw"]));
    assert_eq!(v["mounts"][6]["source"], json!(d.path().join("shm")));
    assert_eq!(v["linux"]["rootfsPropagation"], "rshared");
    assert_eq!(v["linux"]["maskedPaths"], json!(MASKED));
    assert_eq!(v["linux"]["readonlyPaths"], json!(READONLY));
    assert_eq!(v["root"]["readonly"], false);
    assert!(a.is_dir() && b.is_dir());
}

#[test]
fn privileged_and_host_namespaces() {
    let d = tempfile::tempdir().unwrap();
    let img = image(&["/ep"], &[], &[]);
    let sb = cri::PodSandboxConfig::default();
    let f = files(d.path());
    let c = cri::ContainerConfig {
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                privileged: true,
                no_new_privs: true,
                readonly_rootfs: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        annotations: [("k".to_string(), "v".to_string())].into(),
        ..Default::default()
    };
    let s = container_spec(&ContainerInput {
        config: &c,
        sandbox: &sb,
        image: &img,
        rootfs: d.path(),
        namespaces: Namespaces {
            net: NsMode::Host,
            ipc: NsMode::Host,
            uts: NsMode::Host,
            pid: NsMode::Host,
        },
        files: &f,
        cgroups_path: String::new(),
    })
    .unwrap();
    let v = serde_json::to_value(s).unwrap();
    assert_eq!(v["linux"]["namespaces"], json!([{"type": "mount"}]));
    assert!(v["linux"].get("maskedPaths").is_none());
    assert!(v["linux"].get("readonlyPaths").is_none());
    assert_eq!(
        v["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .len(),
        ALL_CAPS.len()
    );
    assert!(v["linux"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["path"] == "/dev/null"));
    assert_eq!(v["process"]["noNewPrivileges"], true);
    assert_eq!(v["root"]["readonly"], true);
    assert_eq!(v["annotations"]["k"], "v");
    let mounts = v["mounts"].as_array().unwrap();
    let sys = mounts.iter().find(|m| m["destination"] == "/sys").unwrap();
    assert!(sys["options"].as_array().unwrap().contains(&json!("rw")));
    let shm = mounts
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .unwrap();
    assert_eq!(shm["source"], "/dev/shm", "host IPC uses the host's shm");
}

#[test]
fn capability_names() {
    let caps = capabilities(
        false,
        Some(&cri::Capability {
            add_capabilities: vec!["sys_admin".into(), "CAP_NET_ADMIN".into()],
            drop_capabilities: vec!["MKNOD".into()],
            ..Default::default()
        }),
    )
    .unwrap();
    assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
    assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
    assert!(!caps.contains(&"CAP_MKNOD".to_string()));
    assert_eq!(caps.len(), DEFAULT_CAPS.len() + 1);
    let caps = capabilities(
        false,
        Some(&cri::Capability {
            add_capabilities: vec!["ALL".into()],
            drop_capabilities: vec!["CAP_SYS_ADMIN".into()],
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!(caps.len(), ALL_CAPS.len() - 1);
    let caps = capabilities(
        false,
        Some(&cri::Capability {
            add_capabilities: vec!["NET_BIND_SERVICE".into()],
            drop_capabilities: vec!["all".into()],
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!(caps, ["CAP_NET_BIND_SERVICE"]);
    let err = capabilities(
        false,
        Some(&cri::Capability {
            drop_capabilities: vec!["NOPE".into()],
            ..Default::default()
        }),
    )
    .unwrap_err();
    assert!(err.to_string().contains("CAP_NOPE"), "{err}");
}

#[test]
fn resources_convert() {
    let r = linux_resources(&cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        cpuset_cpus: "0-1".into(),
        memory_limit_in_bytes: 64 << 20,
        memory_swap_limit_in_bytes: 128 << 20,
        hugepage_limits: vec![cri::HugepageLimit {
            page_size: "2MB".into(),
            limit: 4 << 20,
        }],
        unified: [("memory.high".to_string(), "1000000".to_string())].into(),
        ..Default::default()
    });
    let cpu = r.cpu().as_ref().unwrap();
    assert_eq!(cpu.shares(), Some(512));
    assert_eq!(cpu.quota(), Some(50_000));
    assert_eq!(cpu.period(), Some(100_000));
    assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
    let mem = r.memory().as_ref().unwrap();
    assert_eq!(mem.limit(), Some(64 << 20));
    assert_eq!(mem.swap(), Some(128 << 20));
    let hp = r.hugepage_limits().as_ref().unwrap();
    assert_eq!(
        (hp[0].page_size().as_str(), hp[0].limit()),
        ("2MB", 4 << 20)
    );
    assert_eq!(
        r.unified().as_ref().unwrap().get("memory.high").unwrap(),
        "1000000"
    );
    let empty = linux_resources(&cri::LinuxContainerResources::default());
    assert!(empty.cpu().is_none() && empty.memory().is_none());
    assert_eq!(clamp_oom(-998), 0);
    assert_eq!(clamp_oom(1000), 1000);
    assert_eq!(clamp_oom(500), 500);
}

fn sandbox(config: &cri::PodSandboxConfig, netns: NsMode, d: &Path) -> Value {
    let img: ImageConfig =
        serde_json::from_value(json!({"Entrypoint": ["/pause"], "Env": ["PATH=/p"]})).unwrap();
    let f = files(d);
    let s = sandbox_spec(&SandboxInput {
        config,
        rootfs: d,
        image: &img,
        netns,
        cgroups_path: "/rkube/pod1/pause".into(),
        files: &f,
    })
    .unwrap();
    serde_json::to_value(s).unwrap()
}

#[test]
fn sandbox_specs() {
    let d = tempfile::tempdir().unwrap();
    let cfg = cri::PodSandboxConfig {
        hostname: "pod-a".into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = sandbox(&cfg, NsMode::Path("/run/netns/p".into()), d.path());
    assert_eq!(v["process"]["args"], json!(["/pause"]));
    assert_eq!(v["process"]["env"], json!(["PATH=/p"]));
    assert_eq!(v["process"]["oomScoreAdj"], 0);
    assert_eq!(v["root"]["readonly"], true);
    assert_eq!(v["hostname"], "pod-a");
    assert_eq!(v["linux"]["cgroupsPath"], "/rkube/pod1/pause");
    assert_eq!(v["linux"]["sysctl"]["net.ipv4.ip_forward"], "1");
    let nss = v["linux"]["namespaces"].as_array().unwrap();
    for t in ["pid", "ipc", "uts", "mount"] {
        assert!(nss.contains(&json!({"type": t})), "{t}");
    }
    assert!(nss.contains(&json!({"type": "network", "path": "/run/netns/p"})));
    let mounts = v["mounts"].as_array().unwrap();
    let shm = mounts
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .unwrap();
    assert_eq!(shm["source"], json!(d.path().join("shm")));
    let sys = mounts.iter().find(|m| m["destination"] == "/sys").unwrap();
    assert!(sys["options"].as_array().unwrap().contains(&json!("ro")));

    // Host network, IPC and PID.
    let cfg = cri::PodSandboxConfig {
        hostname: "node".into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: 2,
                    pid: 2,
                    ipc: 2,
                    ..Default::default()
                }),
                run_as_user: Some(cri::Int64Value { value: 65535 }),
                run_as_group: Some(cri::Int64Value { value: 65535 }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = sandbox(&cfg, NsMode::Host, d.path());
    assert_eq!(v["linux"]["namespaces"], json!([{"type": "mount"}]));
    assert!(v.get("hostname").is_none());
    assert_eq!(v["process"]["user"]["uid"], 65535);
    assert_eq!(v["process"]["user"]["gid"], 65535);
}
