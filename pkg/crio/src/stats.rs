//! Container and pod stats read from cgroups (v1 controllers or the v2
//! unified hierarchy): CPU time, memory working set, writable layer size.

use std::path::Path;

use rkube_cri::api as cri;

use crate::service::Crio;
use crate::state::{Container, Sandbox};

/// Raw figures of one cgroup.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CgroupStats {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_nanos: u64,
    /// Memory usage minus inactive file pages (the kubelet's working set).
    pub working_set: u64,
    /// Total memory usage.
    pub usage: u64,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn stat_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Reads the stats of `cgroups_path` under the cgroup mount `root`.
pub(crate) fn read_cgroup(root: &Path, cgroups_path: &str) -> CgroupStats {
    let rel = cgroups_path.trim_start_matches('/');
    let v1_mem = root.join("memory").join(rel);
    if v1_mem.is_dir() || root.join("cpuacct").join(rel).is_dir() {
        let cpu_nanos =
            read_u64(&root.join("cpuacct").join(rel).join("cpuacct.usage")).unwrap_or(0);
        let usage = read_u64(&v1_mem.join("memory.usage_in_bytes")).unwrap_or(0);
        let inactive = std::fs::read_to_string(v1_mem.join("memory.stat"))
            .ok()
            .and_then(|t| stat_key(&t, "total_inactive_file"))
            .unwrap_or(0);
        return CgroupStats {
            cpu_nanos,
            working_set: usage.saturating_sub(inactive),
            usage,
        };
    }
    let v2 = root.join(rel);
    let cpu_nanos = std::fs::read_to_string(v2.join("cpu.stat"))
        .ok()
        .and_then(|t| stat_key(&t, "usage_usec"))
        .map(|us| us * 1000)
        .unwrap_or(0);
    let usage = read_u64(&v2.join("memory.current")).unwrap_or(0);
    let inactive = std::fs::read_to_string(v2.join("memory.stat"))
        .ok()
        .and_then(|t| stat_key(&t, "inactive_file"))
        .unwrap_or(0);
    CgroupStats {
        cpu_nanos,
        working_set: usage.saturating_sub(inactive),
        usage,
    }
}

/// Bytes and inodes used under `dir` (not following symlinks).
fn disk_usage(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut inodes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            inodes += 1;
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    bytes += m.len();
                }
            }
        }
    }
    (bytes, inodes)
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl Crio {
    pub(crate) fn container_stats(&self, c: &Container) -> cri::ContainerStats {
        let st = c.get();
        let now = crate::now_nanos();
        let cg = read_cgroup(Path::new(CGROUP_ROOT), &st.cgroups_path);
        let (bytes, inodes) = disk_usage(&c.dir.join("upper"));
        cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: c.id.clone(),
                metadata: c.config.metadata.clone(),
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
            }),
            cpu: Some(cri::CpuUsage {
                timestamp: now,
                usage_core_nano_seconds: Some(cri::UInt64Value {
                    value: cg.cpu_nanos,
                }),
                usage_nano_cores: None,
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: now,
                working_set_bytes: Some(cri::UInt64Value {
                    value: cg.working_set,
                }),
                usage_bytes: Some(cri::UInt64Value { value: cg.usage }),
                ..Default::default()
            }),
            writable_layer: Some(cri::FilesystemUsage {
                timestamp: now,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: c.dir.join("upper").to_string_lossy().into_owned(),
                }),
                used_bytes: Some(cri::UInt64Value { value: bytes }),
                inodes_used: Some(cri::UInt64Value { value: inodes }),
            }),
            swap: None,
        }
    }

    pub(crate) fn sandbox_stats(&self, sb: &Sandbox) -> cri::PodSandboxStats {
        let st = sb.get();
        let now = crate::now_nanos();
        let containers: Vec<cri::ContainerStats> = self
            .reg
            .containers_of(&sb.id)
            .iter()
            .filter(|c| self.refresh(c).phase == crate::state::ContainerPhase::Running)
            .map(|c| self.container_stats(c))
            .collect();
        let pod = read_cgroup(Path::new(CGROUP_ROOT), &st.cgroup_parent);
        cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: sb.id.clone(),
                metadata: sb.config.metadata.clone(),
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cri::CpuUsage {
                    timestamp: now,
                    usage_core_nano_seconds: Some(cri::UInt64Value {
                        value: pod.cpu_nanos,
                    }),
                    usage_nano_cores: None,
                }),
                memory: Some(cri::MemoryUsage {
                    timestamp: now,
                    working_set_bytes: Some(cri::UInt64Value {
                        value: pod.working_set,
                    }),
                    usage_bytes: Some(cri::UInt64Value { value: pod.usage }),
                    ..Default::default()
                }),
                containers,
                ..Default::default()
            }),
            windows: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1_and_v2_layouts() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("memory/rkube/pod1/c")).unwrap();
        std::fs::create_dir_all(r.join("cpuacct/rkube/pod1/c")).unwrap();
        std::fs::write(r.join("cpuacct/rkube/pod1/c/cpuacct.usage"), "12345\n").unwrap();
        std::fs::write(
            r.join("memory/rkube/pod1/c/memory.usage_in_bytes"),
            "1000\n",
        )
        .unwrap();
        std::fs::write(
            r.join("memory/rkube/pod1/c/memory.stat"),
            "cache 5\ntotal_inactive_file 300\n",
        )
        .unwrap();
        assert_eq!(
            read_cgroup(r, "/rkube/pod1/c"),
            CgroupStats {
                cpu_nanos: 12345,
                working_set: 700,
                usage: 1000
            }
        );
        let d2 = tempfile::tempdir().unwrap();
        let r2 = d2.path();
        std::fs::create_dir_all(r2.join("k/c")).unwrap();
        std::fs::write(r2.join("k/c/cpu.stat"), "usage_usec 7\nuser_usec 5\n").unwrap();
        std::fs::write(r2.join("k/c/memory.current"), "900").unwrap();
        std::fs::write(r2.join("k/c/memory.stat"), "anon 1\ninactive_file 100\n").unwrap();
        assert_eq!(
            read_cgroup(r2, "k/c"),
            CgroupStats {
                cpu_nanos: 7000,
                working_set: 800,
                usage: 900
            }
        );
        assert_eq!(read_cgroup(r2, "missing"), CgroupStats::default());
    }
}
