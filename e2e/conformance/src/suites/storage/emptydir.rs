//! emptyDir volumes: new files' modes on the node's default medium and on
//! tmpfs, as root and as a non-root user; sharing between containers.

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};

use super::{expect_output, uid};
use crate::conformance;
use crate::ctx::{pod, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!(
            "EmptyDir, medium memory, volume mode default",
            tmpfs_volume_mode
        ),
        conformance!("EmptyDir, medium memory, volume mode 0644", tmpfs_0644_root),
        conformance!("EmptyDir, medium memory, volume mode 0666", tmpfs_0666_root),
        conformance!("EmptyDir, medium memory, volume mode 0777", tmpfs_0777_root),
        conformance!(
            "EmptyDir, medium memory, volume mode 0644, non-root user",
            tmpfs_0644_nonroot
        ),
        conformance!(
            "EmptyDir, medium memory, volume mode 0666,, non-root user",
            tmpfs_0666_nonroot
        ),
        conformance!(
            "EmptyDir, medium memory, volume mode 0777, non-root user",
            tmpfs_0777_nonroot
        ),
        conformance!(
            "EmptyDir, medium default, volume mode default",
            default_volume_mode
        ),
        // Upstream names both the root and the non-root test so.
        conformance!("EmptyDir, medium default, volume mode 0644", default_0644),
        // Upstream names both the root and the non-root test so.
        conformance!("EmptyDir, medium default, volume mode 0666", default_0666),
        // Upstream names both the root and the non-root test so.
        conformance!("EmptyDir, medium default, volume mode 0777", default_0777),
        conformance!(
            "EmptyDir, Shared volumes between containers",
            shared_volumes
        ),
    ]
}

/// Where the volume is mounted.
const VOLUME_PATH: &str = "/test-volume";

/// The non-root user upstream runs as.
const NON_ROOT_UID: i64 = 1001;

/// Upstream's testPodWithVolume: agnhost `args`, the emptyDir of
/// `medium` ("" = node default) at /test-volume, run as `uid` unless 0.
fn volume_pod(c: &Ctx, uid_: i64, medium: &str, args: Vec<String>) -> Value {
    let mut sc = json!({"seLinuxOptions": {"level": "s0"}});
    if uid_ != 0 {
        sc["runAsUser"] = json!(uid_);
    }
    let source = if medium.is_empty() {
        json!({})
    } else {
        json!({"medium": medium})
    };
    pod(
        &format!("pod-{}", uid()),
        json!({
            "restartPolicy": "Never",
            "securityContext": sc,
            "containers": [{
                "name": "test-container",
                "image": c.env.images.agnhost,
                "args": args,
                "volumeMounts": [{"name": "test-volume", "mountPath": VOLUME_PATH}],
            }],
            "volumes": [{"name": "test-volume", "emptyDir": source}],
        }),
    )
}

/// The mode of the volume itself: a world-writable directory (and tmpfs
/// for medium Memory).
async fn volume_mode(c: &Ctx, uid_: i64, medium: &str) -> Result<()> {
    let args = vec![
        "mounttest".to_string(),
        format!("--fs_type={VOLUME_PATH}"),
        format!("--file_perm={VOLUME_PATH}"),
    ];
    let mut out = vec![format!("perms of file \"{VOLUME_PATH}\": -rwxrwxrwx")];
    if medium == "Memory" {
        out.push(format!("mount type of \"{VOLUME_PATH}\": tmpfs"));
    }
    expect_output(c, volume_pod(c, uid_, medium, args), None, &out).await?;
    Ok(())
}

/// A new file created with `perm` in the volume has exactly that mode and
/// can be read back (upstream's doTest0644/0666/0777).
async fn new_file(c: &Ctx, uid_: i64, medium: &str, perm: u32) -> Result<()> {
    let file = format!("{VOLUME_PATH}/test-file");
    let args = vec![
        "mounttest".to_string(),
        format!("--fs_type={VOLUME_PATH}"),
        format!("--new_file_0{perm:o}={file}"),
        format!("--file_perm={file}"),
    ];
    let mut out = vec![
        format!("perms of file \"{file}\": {}", super::mode_string(perm)),
        format!("content of file \"{file}\": mount-tester new file"),
    ];
    if medium == "Memory" {
        out.push(format!("mount type of \"{VOLUME_PATH}\": tmpfs"));
    }
    expect_output(c, volume_pod(c, uid_, medium, args), None, &out).await?;
    Ok(())
}

async fn tmpfs_volume_mode(c: Ctx) -> Result<()> {
    volume_mode(&c, 0, "Memory").await
}
async fn tmpfs_0644_root(c: Ctx) -> Result<()> {
    new_file(&c, 0, "Memory", 0o644).await
}
async fn tmpfs_0666_root(c: Ctx) -> Result<()> {
    new_file(&c, 0, "Memory", 0o666).await
}
async fn tmpfs_0777_root(c: Ctx) -> Result<()> {
    new_file(&c, 0, "Memory", 0o777).await
}
async fn tmpfs_0644_nonroot(c: Ctx) -> Result<()> {
    new_file(&c, NON_ROOT_UID, "Memory", 0o644).await
}
async fn tmpfs_0666_nonroot(c: Ctx) -> Result<()> {
    new_file(&c, NON_ROOT_UID, "Memory", 0o666).await
}
async fn tmpfs_0777_nonroot(c: Ctx) -> Result<()> {
    new_file(&c, NON_ROOT_UID, "Memory", 0o777).await
}
/// Both (root,0644,default) and (non-root,0644,default).
async fn default_0644(c: Ctx) -> Result<()> {
    new_file(&c, 0, "", 0o644).await.context("as root")?;
    new_file(&c, NON_ROOT_UID, "", 0o644)
        .await
        .context("as non-root")
}
/// Both (root,0666,default) and (non-root,0666,default).
async fn default_0666(c: Ctx) -> Result<()> {
    new_file(&c, 0, "", 0o666).await.context("as root")?;
    new_file(&c, NON_ROOT_UID, "", 0o666)
        .await
        .context("as non-root")
}
/// Both (root,0777,default) and (non-root,0777,default).
async fn default_0777(c: Ctx) -> Result<()> {
    new_file(&c, 0, "", 0o777).await.context("as root")?;
    new_file(&c, NON_ROOT_UID, "", 0o777)
        .await
        .context("as non-root")
}
async fn default_volume_mode(c: Ctx) -> Result<()> {
    volume_mode(&c, 0, "").await
}

/// Two busybox containers share an emptyDir: the sub container writes a
/// file, the main one (still running) reads it.
async fn shared_volumes(c: Ctx) -> Result<()> {
    let name = format!("pod-sharedvolume-{}", uid());
    let message = "Hello from the busy-box sub-container";
    let mut p = pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "volumes": [{"name": "shared-data", "emptyDir": {}}],
            "containers": [
                {
                    "name": "busybox-main-container",
                    "image": c.env.images.busybox,
                    "command": ["/bin/sh"],
                    "args": ["-c", "trap exit TERM; while true; do sleep 1; done"],
                    "volumeMounts": [{"name": "shared-data", "mountPath": "/usr/share/volumeshare"}],
                },
                {
                    "name": "busybox-sub-container",
                    "image": c.env.images.busybox,
                    "command": ["/bin/sh"],
                    "args": ["-c", format!("echo {message} > /pod-data/shareddata.txt")],
                    "volumeMounts": [{"name": "shared-data", "mountPath": "/pod-data"}],
                },
            ],
        }),
    );
    p["spec"]["terminationGracePeriodSeconds"] = json!(0);
    c.create_pod(p).await?;
    // The sub container exits at once, so the pod is Running but not Ready.
    c.wait_pod(&name, "Running", |p| crate::ctx::phase(p) == "Running")
        .await?;
    // Read once the sub container has written (it may lag the phase).
    let out = crate::ctx::wait_for(
        "the shared file in the main container",
        std::time::Duration::from_secs(30),
        || async {
            let out = c
                .exec(
                    &name,
                    Some("busybox-main-container"),
                    &["/bin/sh", "-c", "cat /usr/share/volumeshare/shareddata.txt"],
                )
                .await?;
            Ok((!out.is_empty()).then_some(out))
        },
    )
    .await?;
    ensure!(
        out.trim_end_matches('\n') == message,
        "shared file holds {out:?}, want {message:?}"
    );
    Ok(())
}
