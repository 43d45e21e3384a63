//! Container and pod stats from dockerd's one-shot stats: CPU time and the
//! memory working set (usage less inactive file pages, as the kubelet
//! counts it).

use bollard::query_parameters::StatsOptions;
use futures::StreamExt;
use rkube_cri::api as cri;

use crate::shim::Shim;
use crate::Result;

/// The working set of Docker memory stats (cgroup v1 and v2 keys).
pub(crate) fn working_set(m: &bollard::models::ContainerMemoryStats) -> u64 {
    let usage = m.usage.unwrap_or(0);
    let inactive = m
        .stats
        .as_ref()
        .and_then(|s| {
            s.get("total_inactive_file")
                .or_else(|| s.get("inactive_file"))
                .copied()
        })
        .unwrap_or(0);
    usage.saturating_sub(inactive)
}

fn value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

impl Shim {
    /// Stats of one container (zeros when dockerd has none, e.g. it exited).
    pub(crate) async fn container_stats(&self, c: &cri::Container) -> cri::ContainerStats {
        let now = crate::now_nanos();
        let mut stats = self.docker.stats(
            &c.id,
            Some(StatsOptions {
                stream: false,
                one_shot: true,
            }),
        );
        let s = match stats.next().await {
            Some(Ok(s)) => s,
            _ => Default::default(),
        };
        let cpu = s
            .cpu_stats
            .and_then(|c| c.cpu_usage)
            .and_then(|u| u.total_usage)
            .unwrap_or(0);
        let mem = s.memory_stats.unwrap_or_default();
        cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: c.id.clone(),
                metadata: c.metadata.clone(),
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
            }),
            cpu: Some(cri::CpuUsage {
                timestamp: now,
                usage_core_nano_seconds: value(cpu),
                usage_nano_cores: None,
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: now,
                working_set_bytes: value(working_set(&mem)),
                usage_bytes: value(mem.usage.unwrap_or(0)),
                ..Default::default()
            }),
            writable_layer: None,
            swap: None,
        }
    }

    /// Stats of the running containers that `filter` selects.
    pub(crate) async fn list_container_stats(
        &self,
        filter: Option<cri::ContainerStatsFilter>,
    ) -> Result<Vec<cri::ContainerStats>> {
        let f = filter.unwrap_or_default();
        let cs = self
            .list_containers(Some(cri::ContainerFilter {
                id: f.id,
                pod_sandbox_id: f.pod_sandbox_id,
                label_selector: f.label_selector,
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
            }))
            .await?;
        Ok(futures::future::join_all(cs.iter().map(|c| self.container_stats(c))).await)
    }

    /// Stats of a sandbox: the sum of its containers.
    pub(crate) async fn sandbox_stats(&self, id: &str) -> Result<cri::PodSandboxStats> {
        let sb = self.sandbox(id).await?;
        let containers = self
            .list_container_stats(Some(cri::ContainerStatsFilter {
                pod_sandbox_id: sb.id.clone(),
                ..Default::default()
            }))
            .await?;
        let sum = |f: &dyn Fn(&cri::ContainerStats) -> Option<u64>| -> u64 {
            containers.iter().filter_map(f).sum()
        };
        let cpu = sum(&|c| {
            c.cpu
                .as_ref()?
                .usage_core_nano_seconds
                .as_ref()
                .map(|v| v.value)
        });
        let ws = sum(&|c| {
            c.memory
                .as_ref()?
                .working_set_bytes
                .as_ref()
                .map(|v| v.value)
        });
        let now = crate::now_nanos();
        let meta = sb.config.metadata.clone();
        Ok(cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: sb.id.clone(),
                metadata: meta,
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cri::CpuUsage {
                    timestamp: now,
                    usage_core_nano_seconds: value(cpu),
                    usage_nano_cores: None,
                }),
                memory: Some(cri::MemoryUsage {
                    timestamp: now,
                    working_set_bytes: value(ws),
                    ..Default::default()
                }),
                network: None,
                process: None,
                containers,
            }),
            windows: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_set_drops_inactive_file() {
        let m = bollard::models::ContainerMemoryStats {
            usage: Some(10_000),
            stats: Some([("total_inactive_file".to_string(), 4_000)].into()),
            ..Default::default()
        };
        assert_eq!(working_set(&m), 6_000);
        assert_eq!(working_set(&Default::default()), 0);
    }
}
