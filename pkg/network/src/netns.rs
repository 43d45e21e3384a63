//! Pinned network namespaces for pod sandboxes, as `ip netns` makes them:
//! a new namespace is created on a short-lived thread and kept alive by a
//! bind mount of its `/proc/thread-self/ns/net` onto a file, so it outlives
//! every process in it (and rkube). Also connects to a port inside one,
//! for port-forward.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

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

/// Serializes [`make_private`], so concurrent creates do not stack bind mounts.
static PRIVATE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The mount points of this mount namespace (octal escapes of mountinfo
/// decoded), each with its file system type.
fn mounts() -> Vec<(PathBuf, String)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|l| {
            let point = l.split(' ').nth(4)?;
            let fstype = l.split(" - ").nth(1)?.split(' ').next()?;
            Some((PathBuf::from(unescape(point)), fstype.to_string()))
        })
        .collect()
}

/// Decodes mountinfo's `\ooo` escapes (space, tab, newline, backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` with its parent resolved (the file itself may be a mount point).
fn resolved(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .map(|d| d.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

/// Makes `dir` a private mount point (once), so namespace bind mounts in it
/// do not propagate to other mount namespaces and can be unmounted cleanly.
fn make_private(dir: &Path) -> Result<()> {
    let _guard = PRIVATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = dir.canonicalize().map_err(Error::io("resolve", dir))?;
    let is_mount = mounts().iter().any(|(m, _)| *m == dir);
    if !is_mount {
        mount(
            Some(&dir),
            &dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys("bind-mount", &dir))?;
    }
    mount(
        None::<&str>,
        &dir,
        None::<&str>,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("make private", &dir))
}

/// Whether a namespace is pinned at `path` (a mount of an nsfs file).
pub fn exists(path: &Path) -> bool {
    let path = resolved(path);
    mounts()
        .iter()
        .any(|(m, fstype)| *m == path && (fstype == "nsfs" || fstype == "proc"))
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
    if exists(path) {
        return Err(Error::Io {
            action: "create a network namespace at",
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
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

/// Pins the network namespace at `source` (e.g. `/proc/<pid>/ns/net` of
/// a container another runtime created) at `path`, so it outlives the
/// process; idempotent.
pub fn pin(source: &Path, path: &Path) -> Result<()> {
    if exists(path) {
        return Ok(());
    }
    let dir = path.parent().ok_or_else(|| Error::Io {
        action: "pin a network namespace at",
        path: path.to_path_buf(),
        source: std::io::Error::other("no parent directory"),
    })?;
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    make_private(dir)?;
    std::fs::File::create(path).map_err(Error::io("create", path))?;
    let result = mount(
        Some(source),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys("pin the network namespace at", path));
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

/// Runs `f` on a new thread that has entered the network namespace pinned
/// at `netns` (the calling thread keeps its own), and returns its result.
/// Sockets `f` opens stay in that namespace. Blocking: call it from
/// `spawn_blocking` in async code.
pub fn run_in<T, F>(netns: &Path, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = netns.to_path_buf();
    std::thread::spawn(move || -> Result<T> {
        let file = std::fs::File::open(&ns).map_err(Error::io("open", &ns))?;
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(sys("enter the network namespace", &ns))?;
        Ok(f())
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::Io {
            action: "run a thread in the network namespace",
            path: netns.to_path_buf(),
            source: std::io::Error::other("thread panicked"),
        })
    })
}

/// Connects to `localhost:port` inside the namespace pinned at `netns`
/// (127.0.0.1 first, then ::1). The socket stays in that namespace.
pub async fn connect_tcp(netns: &Path, port: u16) -> Result<tokio::net::TcpStream> {
    let ns = netns.to_path_buf();
    let connected = tokio::task::spawn_blocking(move || {
        run_in(&ns, move || {
            let timeout = std::time::Duration::from_secs(5);
            let v4 = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
            let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            std::net::TcpStream::connect_timeout(&v4, timeout)
                .or_else(|e4| std::net::TcpStream::connect_timeout(&v6, timeout).map_err(|_| e4))
        })
    })
    .await
    .map_err(|e| Error::Io {
        action: "connect in",
        path: netns.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })??;
    let stream = connected.map_err(|source| Error::Io {
        action: "connect to localhost port in the network namespace",
        path: netns.to_path_buf(),
        source,
    })?;
    stream
        .set_nonblocking(true)
        .map_err(Error::io("configure a socket in", netns))?;
    tokio::net::TcpStream::from_std(stream).map_err(Error::io("register a socket from", netns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape(r"/a\040b\011c\134d"), "/a b\tc\\d");
        assert_eq!(unescape(r"/x\04"), r"/x\04");
        assert_eq!(unescape("/plain"), "/plain");
    }

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
        // A second create at the same place is refused, the first stays.
        assert!(create(&ns).is_err());
        assert!(exists(&ns));
        remove(&ns).unwrap();
        assert!(!exists(&ns));
        assert!(!ns.exists());
        remove(&ns).unwrap();
        // A plain file is not a namespace; a missing one neither.
        std::fs::write(&ns, b"").unwrap();
        assert!(!exists(&ns));
        remove(&ns).unwrap();
        assert!(!exists(&dir.path().join("nowhere").join("x")));
        let _ = umount2(&dir.path().join("netns"), MntFlags::MNT_DETACH);
    }
}
