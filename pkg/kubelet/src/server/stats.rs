//! /stats/summary in the shape of the kubelet's Summary API (node cpu,
//! memory and filesystem from /proc and statvfs; pods and containers from
//! CRI ListContainerStats/ListPodSandboxStats), and /pods, the pods the node
//! runs as a PodList rebuilt from CRI sandbox labels.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use rkube_cri::api;
use serde_json::{json, Map, Value};

use super::runtime::{
    is_running, LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID,
};
use super::{Ctx, HttpError};

/// A reading of the node's cumulative CPU time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSample {
    at: Instant,
    core_nanos: u64,
}

/// Cumulative busy CPU time of the node in nanoseconds, from /proc/stat.
pub(crate) fn parse_proc_stat(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| v.get(*i))
        .sum::<u64>();
    // USER_HZ is 100 on Linux.
    Some(busy * 10_000_000)
}

/// MemTotal, MemAvailable and MemFree in bytes, from /proc/meminfo.
pub(crate) fn parse_meminfo(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((k.to_string(), kb * 1024))
        })
        .collect()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn ns_time(nanos: i64) -> String {
    rfc3339(DateTime::from_timestamp_nanos(nanos))
}

fn u(v: &Option<api::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

fn cpu_json(c: &api::CpuUsage) -> Value {
    let mut m = Map::new();
    m.insert("time".into(), json!(ns_time(c.timestamp)));
    if let Some(v) = u(&c.usage_nano_cores) {
        m.insert("usageNanoCores".into(), json!(v));
    }
    if let Some(v) = u(&c.usage_core_nano_seconds) {
        m.insert("usageCoreNanoSeconds".into(), json!(v));
    }
    Value::Object(m)
}

fn mem_json(c: &api::MemoryUsage) -> Value {
    let mut m = Map::new();
    m.insert("time".into(), json!(ns_time(c.timestamp)));
    for (k, v) in [
        ("availableBytes", &c.available_bytes),
        ("usageBytes", &c.usage_bytes),
        ("workingSetBytes", &c.working_set_bytes),
        ("rssBytes", &c.rss_bytes),
        ("pageFaults", &c.page_faults),
        ("majorPageFaults", &c.major_page_faults),
    ] {
        if let Some(v) = u(v) {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}

/// Widens statvfs counters, whose width differs between platforms.
fn n<T: Into<u64>>(v: T) -> u64 {
    v.into()
}

fn fs_json(path: &std::path::Path, now: &str) -> Value {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let frsize = n(s.fragment_size());
            let cap = n(s.blocks()) * frsize;
            let avail = n(s.blocks_available()) * frsize;
            let free = n(s.blocks_free()) * frsize;
            json!({
                "time": now,
                "availableBytes": avail,
                "capacityBytes": cap,
                "usedBytes": cap.saturating_sub(free),
                "inodesFree": n(s.files_free()),
                "inodes": n(s.files()),
                "inodesUsed": n(s.files()).saturating_sub(n(s.files_free())),
            })
        }
        Err(_) => json!({ "time": now }),
    }
}

async fn node_cpu(ctx: &Ctx, now: &str) -> Value {
    let read = || {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t))
    };
    let Some(total) = read() else {
        return json!({ "time": now });
    };
    let prev = *ctx.cpu_sample.lock().unwrap_or_else(|e| e.into_inner());
    let (prev, total, at) = match prev {
        Some(p) if p.at.elapsed().as_millis() >= 500 => (p, total, Instant::now()),
        _ => {
            let first = CpuSample {
                at: Instant::now(),
                core_nanos: total,
            };
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            (first, read().unwrap_or(total), Instant::now())
        }
    };
    *ctx.cpu_sample.lock().unwrap_or_else(|e| e.into_inner()) = Some(CpuSample {
        at,
        core_nanos: total,
    });
    let dt = at.duration_since(prev.at).as_nanos().max(1) as f64;
    let cores = total.saturating_sub(prev.core_nanos) as f64 / dt * 1e9;
    json!({ "time": now, "usageNanoCores": cores as u64, "usageCoreNanoSeconds": total })
}

fn node_memory(now: &str) -> Value {
    let m = std::fs::read_to_string("/proc/meminfo")
        .map(|t| parse_meminfo(&t))
        .unwrap_or_default();
    let total = m.get("MemTotal").copied().unwrap_or(0);
    let avail = m.get("MemAvailable").copied().unwrap_or(0);
    let free = m.get("MemFree").copied().unwrap_or(0);
    json!({
        "time": now,
        "availableBytes": avail,
        "usageBytes": total.saturating_sub(free),
        "workingSetBytes": total.saturating_sub(avail),
        "rssBytes": total.saturating_sub(avail),
        "pageFaults": 0,
        "majorPageFaults": 0,
    })
}

/// Pod entries from container (and, when available, sandbox) stats.
pub(crate) fn pods_json(
    containers: &[api::ContainerStats],
    sandboxes: &[api::PodSandboxStats],
    now: &str,
) -> Vec<Value> {
    // (ns, name, uid) -> container name -> (attempt, stats)
    type Key = (String, String, String);
    let mut pods: BTreeMap<Key, BTreeMap<String, (u32, &api::ContainerStats)>> = BTreeMap::new();
    for c in containers {
        let Some(a) = &c.attributes else { continue };
        let l = |k: &str| a.labels.get(k).cloned().unwrap_or_default();
        let key = (l(LABEL_POD_NAMESPACE), l(LABEL_POD_NAME), l(LABEL_POD_UID));
        if key.1.is_empty() {
            continue;
        }
        let name = a
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_else(|| l(LABEL_CONTAINER_NAME));
        let attempt = a.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
        let slot = pods.entry(key).or_default();
        if slot.get(&name).is_none_or(|(n, _)| *n <= attempt) {
            slot.insert(name, (attempt, c));
        }
    }
    let by_uid: HashMap<String, &api::PodSandboxStats> = sandboxes
        .iter()
        .filter_map(|s| {
            let uid = s.attributes.as_ref()?.metadata.as_ref()?.uid.clone();
            Some((uid, s))
        })
        .collect();
    let mut out = Vec::new();
    for ((ns, name, uid), cs) in pods {
        let mut cpu_total = 0u64;
        let mut cpu_rate = 0u64;
        let mut mem_ws = 0u64;
        let mut mem_usage = 0u64;
        let mut containers = Vec::new();
        for (cname, (_, c)) in &cs {
            let mut e = Map::new();
            e.insert("name".into(), json!(cname));
            e.insert("startTime".into(), json!(now));
            if let Some(cpu) = &c.cpu {
                cpu_total += u(&cpu.usage_core_nano_seconds).unwrap_or(0);
                cpu_rate += u(&cpu.usage_nano_cores).unwrap_or(0);
                e.insert("cpu".into(), cpu_json(cpu));
            }
            if let Some(m) = &c.memory {
                mem_ws += u(&m.working_set_bytes).unwrap_or(0);
                mem_usage += u(&m.usage_bytes).unwrap_or(0);
                e.insert("memory".into(), mem_json(m));
            }
            if let Some(w) = &c.writable_layer {
                e.insert(
                    "rootfs".into(),
                    json!({"time": ns_time(w.timestamp), "usedBytes": u(&w.used_bytes).unwrap_or(0), "inodesUsed": u(&w.inodes_used).unwrap_or(0)}),
                );
            }
            containers.push(Value::Object(e));
        }
        let linux = by_uid.get(&uid).and_then(|s| s.linux.as_ref());
        let cpu = linux
            .and_then(|l| l.cpu.as_ref())
            .map(cpu_json)
            .unwrap_or_else(|| json!({"time": now, "usageNanoCores": cpu_rate, "usageCoreNanoSeconds": cpu_total}));
        let memory = linux
            .and_then(|l| l.memory.as_ref())
            .map(mem_json)
            .unwrap_or_else(
                || json!({"time": now, "usageBytes": mem_usage, "workingSetBytes": mem_ws}),
            );
        out.push(json!({
            "podRef": {"name": name, "namespace": ns, "uid": uid},
            "startTime": now,
            "containers": containers,
            "cpu": cpu,
            "memory": memory,
        }));
    }
    out
}

/// GET /stats/summary
pub(crate) async fn summary(State(ctx): State<Arc<Ctx>>) -> Result<Json<Value>, HttpError> {
    let now = rfc3339(Utc::now());
    let containers = ctx
        .runtime
        .container_stats()
        .await
        .map_err(|e| HttpError::internal(format!("failed to list container stats: {e}")))?;
    let sandboxes = ctx.runtime.sandbox_stats().await.unwrap_or_default();
    let root = if ctx.log_root.exists() {
        ctx.log_root.clone()
    } else {
        "/".into()
    };
    Ok(Json(json!({
        "node": {
            "nodeName": ctx.node_name,
            "startTime": now,
            "cpu": node_cpu(&ctx, &now).await,
            "memory": node_memory(&now),
            "fs": fs_json(&root, &now),
            "runtime": { "imageFs": fs_json(std::path::Path::new("/"), &now) },
        },
        "pods": pods_json(&containers, &sandboxes, &now),
    })))
}

/// GET /pods: the node's pods as a PodList rebuilt from CRI labels.
pub(crate) async fn pods(State(ctx): State<Arc<Ctx>>) -> Result<Json<Value>, HttpError> {
    let sandboxes = ctx
        .runtime
        .list_sandboxes(HashMap::new())
        .await
        .map_err(HttpError::internal)?;
    let containers = ctx
        .runtime
        .list_containers(HashMap::new())
        .await
        .map_err(HttpError::internal)?;
    let mut items = Vec::new();
    for sb in sandboxes {
        let Some(m) = &sb.metadata else { continue };
        let mut statuses = Vec::new();
        for c in containers.iter().filter(|c| c.pod_sandbox_id == sb.id) {
            let name = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let state = if is_running(c.state) {
                json!({"running": {"startedAt": ns_time(c.created_at)}})
            } else {
                json!({"terminated": {"reason": "Completed"}})
            };
            statuses.push(json!({
                "name": name,
                "containerID": format!("containerd://{}", c.id),
                "image": c.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
                "imageID": c.image_ref,
                "ready": is_running(c.state),
                "restartCount": c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
                "state": state,
            }));
        }
        let ready = sb.state == api::PodSandboxState::SandboxReady as i32;
        items.push(json!({
            "metadata": {
                "name": m.name,
                "namespace": m.namespace,
                "uid": m.uid,
                "creationTimestamp": ns_time(sb.created_at),
            },
            "spec": {"nodeName": ctx.node_name},
            "status": {
                "phase": if ready { "Running" } else { "Succeeded" },
                "containerStatuses": statuses,
            },
        }));
    }
    Ok(Json(json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "cpu  100 5 50 1000 7 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(
            parse_proc_stat(stat),
            Some((100 + 5 + 50 + 1 + 2 + 3) * 10_000_000)
        );
        let m = parse_meminfo("MemTotal:       1000 kB\nMemFree: 10 kB\nMemAvailable:   500 kB\n");
        assert_eq!(m["MemTotal"], 1_024_000);
        assert_eq!(m["MemAvailable"], 512_000);
    }

    #[test]
    fn groups_containers_by_pod_latest_attempt() {
        let cs = |name: &str, attempt: u32, cpu: u64| api::ContainerStats {
            attributes: Some(api::ContainerAttributes {
                id: format!("{name}{attempt}"),
                metadata: Some(api::ContainerMetadata {
                    name: name.into(),
                    attempt,
                }),
                labels: HashMap::from([
                    (LABEL_POD_NAMESPACE.to_string(), "default".to_string()),
                    (LABEL_POD_NAME.to_string(), "web".to_string()),
                    (LABEL_POD_UID.to_string(), "u1".to_string()),
                ]),
                annotations: HashMap::new(),
            }),
            cpu: Some(api::CpuUsage {
                timestamp: 1,
                usage_core_nano_seconds: Some(api::UInt64Value { value: cpu }),
                usage_nano_cores: None,
            }),
            ..Default::default()
        };
        let pods = pods_json(
            &[cs("app", 0, 5), cs("app", 1, 7), cs("side", 0, 1)],
            &[],
            "t",
        );
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0]["podRef"]["name"], "web");
        assert_eq!(pods[0]["containers"].as_array().unwrap().len(), 2);
        assert_eq!(pods[0]["cpu"]["usageCoreNanoSeconds"], 8);
    }
}
