//! Real runs of conmon with runc and crun over a busybox rootfs.

use std::path::Path;
use std::time::Duration;

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    conmon: Conmon,
    runtime: OciRuntime,
}

fn fixture(runtime: &str) -> Option<Fixture> {
    let path = ["/usr/bin", "/usr/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(runtime))
        .find(|p| p.exists())?;
    let dir = tempfile::tempdir().unwrap();
    let conmon = Conmon {
        path: "/usr/bin/conmon".into(),
        exits_dir: dir.path().join("exits"),
        socket_dir: dir.path().join("attach"),
    };
    let runtime = OciRuntime {
        name: runtime.into(),
        path,
        root: dir.path().join("root"),
        global_args: Vec::new(),
    };
    Some(Fixture {
        dir,
        conmon,
        runtime,
    })
}

fn bundle(dir: &Path, id: &str, args: &[&str], terminal: bool) -> std::path::PathBuf {
    let b = dir.join(id);
    let rootfs = b.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for l in ["sh", "echo", "cat", "sleep", "true", "false"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(l)).unwrap();
    }
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": args,
            "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}},
        "root": {"path": rootfs},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}],
            "cgroupsPath": format!("/rkube-test/{id}")}
    });
    std::fs::write(b.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    b
}

async fn create(
    f: &Fixture,
    id: &str,
    args: &[&str],
    terminal: bool,
    stdin: bool,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let b = bundle(f.dir.path(), id, args, terminal);
    let log = f.dir.path().join(format!("{id}.log"));
    f.conmon
        .create(&CreateOptions {
            id,
            bundle: &b,
            log_path: &log,
            terminal,
            stdin,
            stdin_once: false,
            runtime: &f.runtime,
            conmon_pidfile: &b.join("conmon.pid"),
            container_pidfile: &b.join("pid"),
            cgroup_parent: None,
        })
        .await
        .unwrap();
    (b, log)
}

async fn wait_exit(f: &Fixture, id: &str) -> i32 {
    for _ in 0..200 {
        if let Some(c) = f.conmon.exit_code(id) {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} did not exit");
}

async fn lifecycle(runtime: &str) {
    if runtime == "crun" {
        prepare_hybrid_cgroups().unwrap();
    }
    let Some(f) = fixture(runtime) else {
        panic!("{runtime} is not installed (apt-get install {runtime})");
    };
    let pid = std::process::id();
    // A short one: output lands in the CRI log, exit code in the exit dir.
    let id = format!("{runtime}-short-{pid}");
    let (_, log) = create(
        &f,
        &id,
        &["sh", "-c", "echo hello; echo oops >&2; exit 3"],
        false,
        false,
    )
    .await;
    f.runtime.start(&id).await.unwrap();
    assert_eq!(wait_exit(&f, &id).await, 3);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().any(|l| l.ends_with(" stdout F hello")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.ends_with(" stderr F oops")),
        "{text}"
    );
    f.runtime.delete(&id, true).await.unwrap();
    assert!(f.runtime.state(&id).await.unwrap().is_none());

    // A long one: exec, attach, kill.
    let id = format!("{runtime}-long-{pid}");
    let (b, log) = create(
        &f,
        &id,
        &[
            "sh",
            "-c",
            "while true; do read line && echo got:$line; done",
        ],
        false,
        true,
    )
    .await;
    assert_eq!(
        f.runtime.state(&id).await.unwrap().unwrap().status,
        Status::Created
    );
    f.runtime.start(&id).await.unwrap();
    assert_eq!(
        f.runtime.state(&id).await.unwrap().unwrap().status,
        Status::Running
    );
    let out = f
        .runtime
        .exec_sync(
            &id,
            &["sh".into(), "-c".into(), "echo in; exit 7".into()],
            None,
        )
        .await
        .unwrap();
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"in\n"[..], 7));
    let err = f
        .runtime
        .exec_sync(
            &id,
            &["sleep".into(), "10".into()],
            Some(Duration::from_millis(500)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let missing = f
        .runtime
        .exec_sync(&id, &["/nonexistent".into()], Some(Duration::from_secs(10)))
        .await;
    assert!(missing.map(|o| o.exit_code != 0).unwrap_or(true));
    // Streaming exec with stdin.
    let mut p = f.runtime.exec(&id, &["cat".into()], false).await.unwrap();
    let mut stdin = p.take_stdin().unwrap();
    let mut stdout = p.take_stdout().unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stdin.write_all(b"ping\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    drop(stdin);
    let mut got = String::new();
    stdout.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "ping\n");
    assert_eq!(p.wait().await.unwrap(), 0);
    // TTY exec.
    let mut p = f
        .runtime
        .exec(&id, &["sh".into(), "-c".into(), "echo tty-ok".into()], true)
        .await
        .unwrap();
    p.resizer().unwrap().resize(100, 40).unwrap();
    let mut out = p.take_stdout().unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), out.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("tty-ok"));
    assert_eq!(p.wait().await.unwrap(), 0);
    // Attach: stdin goes in, output comes back.
    let a = f.conmon.attach(&id, &b).await.unwrap();
    a.send(b"one\n").await.unwrap();
    let (pipe, data) = tokio::time::timeout(Duration::from_secs(10), a.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((pipe, data.as_slice()), (Pipe::Stdout, &b"got:one\n"[..]));
    assert!(std::fs::read_to_string(&log).unwrap().contains("got:one"));
    // After a rotation conmon writes to a new file at the same path.
    std::fs::rename(&log, log.with_extension("1")).unwrap();
    f.conmon.reopen_log(&b).unwrap();
    a.send(b"two\n").await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), a.recv())
        .await
        .unwrap();
    f.runtime.kill(&id, Signal::SIGKILL, true).await.unwrap();
    assert_eq!(wait_exit(&f, &id).await, 137);
    assert!(std::fs::read_to_string(&log).unwrap().contains("got:two"));
    f.runtime.kill(&id, Signal::SIGKILL, true).await.unwrap();
    f.runtime.delete(&id, true).await.unwrap();
    for c in [
        "cpu", "memory", "pids", "devices", "freezer", "blkio", "cpuacct", "cpuset", "systemd",
        "unified",
    ] {
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{c}/rkube-test"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runc_lifecycle() {
    lifecycle("runc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crun_lifecycle() {
    lifecycle("crun").await;
}

#[tokio::test]
async fn create_failure_carries_the_runtime_message() {
    let f = fixture("runc").unwrap();
    let id = format!("runc-bad-{}", std::process::id());
    let b = bundle(f.dir.path(), &id, &["/no/such/binary"], false);
    let err = f
        .conmon
        .create(&CreateOptions {
            id: &id,
            bundle: &b,
            log_path: &f.dir.path().join("bad.log"),
            terminal: false,
            stdin: false,
            stdin_once: false,
            runtime: &f.runtime,
            conmon_pidfile: &b.join("conmon.pid"),
            container_pidfile: &b.join("pid"),
            cgroup_parent: None,
        })
        .await;
    let _ = f.runtime.delete(&id, true).await;
    let msg = match err {
        Err(e) => e.to_string(),
        Ok(_) => {
            // runc 1.1 may only notice at start.
            f.runtime.start(&id).await.unwrap_err().to_string()
        }
    };
    assert!(
        msg.contains("no such file")
            || msg.contains("not found")
            || msg.contains("/no/such/binary"),
        "{msg}"
    );
}
