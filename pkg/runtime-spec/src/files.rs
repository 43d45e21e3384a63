//! What a sandbox provides its containers on the host side: /etc/hosts,
//! /etc/resolv.conf, /etc/hostname and a tmpfs for /dev/shm; and the
//! overlayfs root file systems of containers.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use rkube_cri::api as cri;

use crate::{Error, Result};

/// Host-side files a sandbox's containers bind-mount.
#[derive(Clone, Debug)]
pub struct SandboxFiles {
    /// /etc/hosts.
    pub hosts: PathBuf,
    /// /etc/resolv.conf.
    pub resolv_conf: PathBuf,
    /// /etc/hostname.
    pub hostname: PathBuf,
    /// /dev/shm (a tmpfs unless the pod uses the host's IPC).
    pub shm: PathBuf,
}

/// The hosts file: localhost entries and the pod's own name.
pub fn render_hosts(hostname: &str, ip: Option<IpAddr>) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(ip) = ip {
        if !hostname.is_empty() {
            s.push_str(&format!("{ip}\t{hostname}\n"));
        }
    }
    s
}

/// resolv.conf from the CRI DNS config, or a copy of the host's when the
/// config has neither servers nor searches.
pub fn render_resolv(dns: Option<&cri::DnsConfig>) -> String {
    match dns.filter(|d| !d.servers.is_empty() || !d.searches.is_empty()) {
        Some(d) => {
            let mut s = String::new();
            for ns in &d.servers {
                s.push_str(&format!("nameserver {ns}\n"));
            }
            if !d.searches.is_empty() {
                s.push_str(&format!("search {}\n", d.searches.join(" ")));
            }
            if !d.options.is_empty() {
                s.push_str(&format!("options {}\n", d.options.join(" ")));
            }
            s
        }
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    }
}

fn write(path: &Path, data: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(Error::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("write", path))
}

/// Whether `path` is a mount point (compared canonically; mountinfo
/// escapes space, tab, newline and backslash as octal).
pub(crate) fn is_mounted(path: &Path) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(&unescape_mountinfo(m)) == path)
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn sys(action: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> Error {
    let path = path.to_path_buf();
    move |e| Error::Io {
        action,
        path,
        source: e.into(),
    }
}

/// Writes the sandbox files into `dir` (hosts, resolv.conf, hostname) and
/// mounts the shm tmpfs; idempotent.
pub fn write_sandbox_files(
    dir: &Path,
    config: &cri::PodSandboxConfig,
    pod_ip: Option<IpAddr>,
) -> Result<SandboxFiles> {
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    let files = SandboxFiles {
        hosts: dir.join("hosts"),
        resolv_conf: dir.join("resolv.conf"),
        hostname: dir.join("hostname"),
        shm: dir.join("shm"),
    };
    write(&files.hosts, &render_hosts(&config.hostname, pod_ip))?;
    write(
        &files.resolv_conf,
        &render_resolv(config.dns_config.as_ref()),
    )?;
    let hostname = if config.hostname.is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string()
    } else {
        config.hostname.clone()
    };
    write(&files.hostname, &format!("{hostname}\n"))?;
    std::fs::create_dir_all(&files.shm).map_err(Error::io("create directory", &files.shm))?;
    let host_ipc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.ipc == 2);
    if !host_ipc && !is_mounted(&files.shm) {
        mount(
            Some("shm"),
            &files.shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777,size=65536k"),
        )
        .map_err(sys("mount shm on", &files.shm))?;
    }
    Ok(files)
}

/// Unmounts the shm tmpfs.
pub fn release_sandbox_files(files: &SandboxFiles) -> Result<()> {
    unmount(&files.shm)
}

/// Mounts an overlayfs of `lowers` (base first) with `upper`/`work` at `target`.
pub fn mount_rootfs(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    for d in [upper, work, target] {
        std::fs::create_dir_all(d).map_err(Error::io("create directory", d))?;
    }
    if is_mounted(target) {
        return Ok(());
    }
    if lowers.is_empty() {
        return Err(Error::User("an image needs at least one layer".into()));
    }
    let lower: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    // The kernel takes at most one page of mount options.
    if data.len() >= 4096 {
        return Err(Error::Config(format!(
            "overlay mount options for {} are {} bytes, over the kernel's 4095: \
             the image has too many layers or the layer paths are too long",
            target.display(),
            data.len()
        )));
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(sys("mount the overlay root file system on", target))
}

/// Unmounts `target` (detached); not mounted or missing is fine.
pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(sys("unmount", target)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn renders_hosts_and_resolv() {
        let h = render_hosts("web", Some("10.244.0.5".parse().unwrap()));
        assert!(h.contains("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.244.0.5\tweb\n"));
        assert_eq!(
            h,
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.244.0.5\tweb\n"
        );
        assert!(!render_hosts("web", None).contains("web"));
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        assert_eq!(render_resolv(None), host);
        let only_opts = cri::DnsConfig {
            options: vec!["ndots:2".into()],
            ..Default::default()
        };
        assert_eq!(render_resolv(Some(&only_opts)), host);
        let d = cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            render_resolv(Some(&d)),
            "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
        );
    }

    #[test]
    fn overlay_and_shm_mounts() {
        let d = tempfile::tempdir().unwrap();
        let (l1, l2) = (d.path().join("l1"), d.path().join("l2"));
        std::fs::create_dir_all(&l1).unwrap();
        std::fs::create_dir_all(&l2).unwrap();
        std::fs::write(l1.join("a"), "base").unwrap();
        std::fs::write(l2.join("a"), "top").unwrap();
        std::fs::write(l1.join("b"), "b").unwrap();
        let target = d.path().join("rootfs");
        mount_rootfs(
            &[l1.clone(), l2.clone()],
            &d.path().join("up"),
            &d.path().join("work"),
            &target,
        )
        .unwrap();
        mount_rootfs(
            &[l1, l2],
            &d.path().join("up"),
            &d.path().join("work"),
            &target,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(target.join("a")).unwrap(), "top");
        assert_eq!(std::fs::read_to_string(target.join("b")).unwrap(), "b");
        std::fs::write(target.join("c"), "new").unwrap();
        assert!(d.path().join("up/c").exists());
        unmount(&target).unwrap();
        unmount(&target).unwrap();
        assert!(!target.join("a").exists());

        let cfg = cri::PodSandboxConfig {
            hostname: "p1".into(),
            ..Default::default()
        };
        let sb = d.path().join("sb");
        let files = write_sandbox_files(&sb, &cfg, Some("10.0.0.9".parse().unwrap())).unwrap();
        assert!(is_mounted(&files.shm));
        write_sandbox_files(&sb, &cfg, None).unwrap();
        assert_eq!(std::fs::read_to_string(&files.hostname).unwrap(), "p1\n");
        release_sandbox_files(&files).unwrap();
        assert!(!is_mounted(&files.shm));
        release_sandbox_files(&files).unwrap();
    }
}
