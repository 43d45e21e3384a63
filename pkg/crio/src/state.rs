//! Sandbox and container records, kept in memory and on disk. Each object
//! has a directory with its CRI config (protobuf, as received) and a JSON
//! state file written atomically on every change, so that a restarted
//! rkube can rebuild the same view ([`crate::recover`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prost::Message;
use rkube_cri::api as cri;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Life-cycle phase of a sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxPhase {
    /// Being set up; a record left in this phase after a crash is cleaned up.
    Creating,
    /// Running with its network.
    Ready,
    /// Stopped (pause killed, network torn down).
    NotReady,
}

/// Mutable state of a sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SandboxState {
    pub phase: SandboxPhase,
    pub created_at: i64,
    pub handler: String,
    pub ip: Option<String>,
    pub netns: Option<PathBuf>,
    pub pause_pid: i32,
    pub cgroup_parent: String,
    pub host_network: bool,
}

/// A pod sandbox.
#[derive(Debug)]
pub struct Sandbox {
    pub id: String,
    pub dir: PathBuf,
    pub config: cri::PodSandboxConfig,
    pub state: Mutex<SandboxState>,
    /// Serialises life-cycle operations on this sandbox.
    pub op: tokio::sync::Mutex<()>,
}

/// Life-cycle phase of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerPhase {
    Creating,
    Created,
    Running,
    Exited,
}

/// Mutable state of a container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerState {
    pub phase: ContainerPhase,
    pub sandbox_id: String,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image_id: String,
    pub image_ref: String,
    pub image_name: String,
    pub log_path: String,
    pub handler: String,
    pub pid: i32,
    pub cgroups_path: String,
    pub stop_signal: Option<String>,
}

/// A container.
#[derive(Debug)]
pub struct Container {
    pub id: String,
    pub dir: PathBuf,
    pub config: cri::ContainerConfig,
    pub state: Mutex<ContainerState>,
    pub op: tokio::sync::Mutex<()>,
}

const CONFIG_FILE: &str = "config.pb";
const STATE_FILE: &str = "state.json";

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(Error::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("rename", path))
}

fn read_config<M: Message + Default>(dir: &Path) -> Result<M> {
    let p = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&p).map_err(Error::io("read", &p))?;
    M::decode(bytes.as_slice()).map_err(|e| Error::Corrupt {
        path: p,
        message: e.to_string(),
    })
}

fn read_state<S: for<'de> Deserialize<'de>>(dir: &Path) -> Result<S> {
    let p = dir.join(STATE_FILE);
    let bytes = std::fs::read(&p).map_err(Error::io("read", &p))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: p,
        message: e.to_string(),
    })
}

fn write_state<S: Serialize>(dir: &Path, s: &S) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(s).expect("state serializes");
    write_atomic(&dir.join(STATE_FILE), &bytes)
}

impl Sandbox {
    /// Creates the directory and writes the first records.
    pub fn create(
        dir: PathBuf,
        id: String,
        config: cri::PodSandboxConfig,
        state: SandboxState,
    ) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        write_atomic(&dir.join(CONFIG_FILE), &config.encode_to_vec())?;
        write_state(&dir, &state)?;
        Ok(Self {
            id,
            dir,
            config,
            state: Mutex::new(state),
            op: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads a sandbox directory back.
    pub fn load(dir: &Path) -> Result<Self> {
        let id = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        Ok(Self {
            id,
            dir: dir.to_path_buf(),
            config: read_config(dir)?,
            state: Mutex::new(read_state(dir)?),
            op: tokio::sync::Mutex::new(()),
        })
    }

    /// A copy of the state.
    pub fn get(&self) -> SandboxState {
        self.state.lock().expect("poisoned").clone()
    }

    /// Changes the state and persists it.
    pub fn update(&self, f: impl FnOnce(&mut SandboxState)) -> Result<()> {
        let mut s = self.state.lock().expect("poisoned");
        f(&mut s);
        write_state(&self.dir, &*s)
    }

    /// Pod metadata, always present after validation.
    pub fn metadata(&self) -> cri::PodSandboxMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }
}

impl Container {
    /// Creates the directory and writes the first records.
    pub fn create(
        dir: PathBuf,
        id: String,
        config: cri::ContainerConfig,
        state: ContainerState,
    ) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        write_atomic(&dir.join(CONFIG_FILE), &config.encode_to_vec())?;
        write_state(&dir, &state)?;
        Ok(Self {
            id,
            dir,
            config,
            state: Mutex::new(state),
            op: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads a container directory back.
    pub fn load(dir: &Path) -> Result<Self> {
        let id = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        Ok(Self {
            id,
            dir: dir.to_path_buf(),
            config: read_config(dir)?,
            state: Mutex::new(read_state(dir)?),
            op: tokio::sync::Mutex::new(()),
        })
    }

    /// A copy of the state.
    pub fn get(&self) -> ContainerState {
        self.state.lock().expect("poisoned").clone()
    }

    /// Changes the state and persists it.
    pub fn update(&self, f: impl FnOnce(&mut ContainerState)) -> Result<()> {
        let mut s = self.state.lock().expect("poisoned");
        f(&mut s);
        write_state(&self.dir, &*s)
    }

    /// The OCI bundle directory.
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    /// Container metadata.
    pub fn metadata(&self) -> cri::ContainerMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }
}

/// All sandboxes and containers.
#[derive(Default)]
pub struct Registry {
    sandboxes: Mutex<HashMap<String, Arc<Sandbox>>>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
}

/// Finds the unique entry whose ID starts with `prefix`.
fn by_prefix<T>(map: &HashMap<String, Arc<T>>, prefix: &str) -> Option<Arc<T>> {
    if prefix.is_empty() {
        return None;
    }
    if let Some(v) = map.get(prefix) {
        return Some(v.clone());
    }
    let mut found = map.iter().filter(|(k, _)| k.starts_with(prefix));
    let first = found.next()?;
    if found.next().is_some() {
        return None;
    }
    Some(first.1.clone())
}

impl Registry {
    pub fn add_sandbox(&self, s: Arc<Sandbox>) {
        self.sandboxes
            .lock()
            .expect("poisoned")
            .insert(s.id.clone(), s);
    }
    pub fn add_container(&self, c: Arc<Container>) {
        self.containers
            .lock()
            .expect("poisoned")
            .insert(c.id.clone(), c);
    }
    pub fn remove_sandbox(&self, id: &str) {
        self.sandboxes.lock().expect("poisoned").remove(id);
    }
    pub fn remove_container(&self, id: &str) {
        self.containers.lock().expect("poisoned").remove(id);
    }
    pub fn sandbox(&self, id: &str) -> Option<Arc<Sandbox>> {
        by_prefix(&self.sandboxes.lock().expect("poisoned"), id)
    }
    pub fn container(&self, id: &str) -> Option<Arc<Container>> {
        by_prefix(&self.containers.lock().expect("poisoned"), id)
    }
    pub fn sandboxes(&self) -> Vec<Arc<Sandbox>> {
        self.sandboxes
            .lock()
            .expect("poisoned")
            .values()
            .cloned()
            .collect()
    }
    pub fn containers(&self) -> Vec<Arc<Container>> {
        self.containers
            .lock()
            .expect("poisoned")
            .values()
            .cloned()
            .collect()
    }
    pub fn containers_of(&self, sandbox_id: &str) -> Vec<Arc<Container>> {
        self.containers()
            .into_iter()
            .filter(|c| c.state.lock().expect("poisoned").sandbox_id == sandbox_id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox_state() -> SandboxState {
        SandboxState {
            phase: SandboxPhase::Ready,
            created_at: 5,
            handler: "runc".into(),
            ip: Some("10.244.0.9".into()),
            netns: Some("/x/netns/a".into()),
            pause_pid: 42,
            cgroup_parent: "/rkube".into(),
            host_network: false,
        }
    }

    #[test]
    fn sandbox_round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 1,
            }),
            hostname: "web".into(),
            ..Default::default()
        };
        let d = dir.path().join("abc");
        let s = Sandbox::create(d.clone(), "abc".into(), config.clone(), sandbox_state()).unwrap();
        s.update(|st| st.phase = SandboxPhase::NotReady).unwrap();
        let back = Sandbox::load(&d).unwrap();
        assert_eq!(back.id, "abc");
        assert_eq!(back.config, config);
        assert_eq!(back.get().phase, SandboxPhase::NotReady);
        assert_eq!(back.get().pause_pid, 42);
    }

    #[test]
    fn prefix_lookup_needs_a_unique_match() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::default();
        for id in ["aaa1", "aaa2", "bbb"] {
            let s = Sandbox::create(
                dir.path().join(id),
                id.into(),
                Default::default(),
                sandbox_state(),
            )
            .unwrap();
            r.add_sandbox(Arc::new(s));
        }
        assert_eq!(r.sandbox("bb").unwrap().id, "bbb");
        assert_eq!(r.sandbox("aaa2").unwrap().id, "aaa2");
        assert!(r.sandbox("aaa").is_none());
        assert!(r.sandbox("").is_none());
        assert!(r.sandbox("zzz").is_none());
    }
}
