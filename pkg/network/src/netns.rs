//! Pinned network namespaces for pod sandboxes, as `ip netns` makes them:
//! a new namespace is created on a short-lived thread and kept alive by a
//! bind mount of its `/proc/thread-self/ns/net` onto a file, so it outlives
//! every process in it (and rkube). Also connects to a port inside one,
//! for port-forward.

use std::os::fd::AsFd;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::{Error, Result};

fn sys(action: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> Error {
    let path = path.to_path_buf();
    move |e| Error::Io {
        action,
        path,
        source: std::io::Error::from(e),
    }
}

/// Makes `dir` a private mount point (once), so namespace bind mounts in it
/// do not propagate to other mount namespaces and can be unmounted cleanly.
fn make_private(dir: &Path) -> Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let is_mount = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(m) == dir);
    if !is_mount {
        mount(
            Some(dir),
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys("bind-mount", dir))?;
    }
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("make private", dir))
}

/// Whether a namespace is pinned at `path` (a mount of an nsfs file).
pub fn exists(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo.lines().any(|l| {
        let mut f = l.split(' ');
        let point = f.nth(4);
        point.is_some_and(|m| Path::new(m) == path) && l.contains(" - nsfs ")
    })
}

/// Creates a new network namespace pinned at `path`.
pub fn create(path: &Path) -> Result<()> {
    let dir = path.parent().ok_or_else(|| Error::Io {
        action: "create a network namespace at",
        path: path.to_path_buf(),
        source: std::io::Error::other("no parent directory"),
    })?;
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    make_private(dir)?;
    std::fs::File::create(path).map_err(Error::io("create", path))?;
    let target = path.to_path_buf();
    let result = std::thread::spawn(move || -> Result<()> {
        // This thread's namespace changes; it ends right after.
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(sys("unshare the network namespace for", &target))?;
        let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
        mount(
            Some(own.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys("pin the network namespace at", &target))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::Io {
            action: "create a network namespace at",
            path: path.to_path_buf(),
            source: std::io::Error::other("thread panicked"),
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Unpins and removes the namespace file; missing or unmounted is fine.
pub fn remove(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(sys("unmount", path)(e)),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Connects to `localhost:port` inside the namespace pinned at `netns`
/// (127.0.0.1 first, then ::1). The socket stays in that namespace.
pub async fn connect_tcp(netns: &Path, port: u16) -> Result<tokio::net::TcpStream> {
    let ns = netns.to_path_buf();
    let std_stream = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || -> Result<std::net::TcpStream> {
            let f = std::fs::File::open(&ns).map_err(Error::io("open", &ns))?;
            setns(f.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(sys("enter the network namespace", &ns))?;
            let timeout = std::time::Duration::from_secs(5);
            let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            std::net::TcpStream::connect_timeout(&v4, timeout)
                .or_else(|_| std::net::TcpStream::connect_timeout(&v6, timeout))
                .map_err(|source| Error::Io {
                    action: "connect to a port in the network namespace",
                    path: ns.clone(),
                    source,
                })
        })
        .join()
    })
    .await
    .map_err(|e| Error::Io {
        action: "connect in",
        path: netns.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?
    .map_err(|_| Error::Io {
        action: "connect in",
        path: netns.to_path_buf(),
        source: std::io::Error::other("thread panicked"),
    })??;
    std_stream
        .set_nonblocking(true)
        .map_err(Error::io("configure a socket in", netns))?;
    tokio::net::TcpStream::from_std(std_stream).map_err(Error::io("register a socket from", netns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_connect_remove() {
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("netns").join("t1");
        create(&ns).unwrap();
        assert!(exists(&ns));
        // Nothing listens inside the new namespace, and lo is down there:
        // the connection must fail rather than reach the host's port.
        let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = host.local_addr().unwrap().port();
        assert!(connect_tcp(&ns, port).await.is_err());
        // Bring lo up inside and listen there: now it connects.
        let ns2 = ns.clone();
        let listener = std::thread::spawn(move || {
            let f = std::fs::File::open(&ns2).unwrap();
            setns(f.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
            let st = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .unwrap();
            assert!(st.success());
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap()
        })
        .join()
        .unwrap();
        let accept = std::thread::spawn(move || {
            use std::io::Write;
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"inside").unwrap();
        });
        let mut s = connect_tcp(&ns, port).await.unwrap();
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
            .await
            .unwrap();
        assert_eq!(buf, b"inside");
        accept.join().unwrap();
        remove(&ns).unwrap();
        assert!(!exists(&ns));
        remove(&ns).unwrap();
        let _ = umount2(&dir.path().join("netns"), MntFlags::MNT_DETACH);
    }
}
