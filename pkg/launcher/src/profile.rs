//! Profiles: one independent cluster each, kept under
//! `$RKUBE_HOME/profiles/<name>/` (default `~/.rkube`). A profile directory
//! holds `config.json` (the settings `start` was given), `pki/`, `data/`,
//! a standalone `kubeconfig`, `rkube.log` and one `*.pid` file per running
//! process.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result, DEFAULT_APISERVER_PORT};

/// Root of rkube's state: `$RKUBE_HOME`, else `$HOME/.rkube`.
pub fn home() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("RKUBE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".rkube"))
        .ok_or(Error::NoHome)
}

/// Checks that `name` is a DNS-1123 label (it names kubeconfig entries and
/// directories).
pub fn validate_name(name: &str) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidProfileName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("it is empty");
    }
    if name.len() > 63 {
        return fail("it is longer than 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return fail("it contains characters other than lowercase letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return fail("it starts or ends with '-'");
    }
    Ok(())
}

/// Container runtime recorded for the node agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRuntime {
    /// CRI-O style bundled runtime (the default: it passes the same
    /// end-to-end scenarios as containerd and starts pods faster).
    #[serde(rename = "cri-o")]
    #[default]
    CriO,
    /// containerd, started by rkube with its CRI plugin.
    Containerd,
    /// Docker Engine through the dockershim.
    Docker,
}

impl ContainerRuntime {
    /// The name used on the command line and in config.json.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerRuntime::CriO => "cri-o",
            ContainerRuntime::Containerd => "containerd",
            ContainerRuntime::Docker => "docker",
        }
    }
}

impl fmt::Display for ContainerRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContainerRuntime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cri-o" | "crio" => Ok(ContainerRuntime::CriO),
            "containerd" => Ok(ContainerRuntime::Containerd),
            "docker" => Ok(ContainerRuntime::Docker),
            other => Err(format!(
                "unknown container runtime {other:?}; use cri-o, containerd or docker"
            )),
        }
    }
}

/// Where cluster state is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Datastore {
    /// The embedded durable store under `data/`.
    #[default]
    Embedded,
    /// An etcd cluster (not available yet).
    Etcd,
}

impl Datastore {
    /// The name used on the command line and in config.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Datastore::Embedded => "embedded",
            Datastore::Etcd => "etcd",
        }
    }
}

impl fmt::Display for Datastore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Datastore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embedded" => Ok(Datastore::Embedded),
            "etcd" => Ok(Datastore::Etcd),
            other => Err(format!("unknown datastore {other:?}; use embedded or etcd")),
        }
    }
}

/// Settings of a profile, stored in `config.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileConfig {
    /// API server port on the host.
    pub apiserver_port: u16,
    /// Container runtime for the node agent.
    pub container_runtime: ContainerRuntime,
    /// Datastore backend.
    pub datastore: Datastore,
    /// Name of the node.
    pub node_name: String,
    /// `unix://` endpoint of an already running CRI runtime to use instead
    /// of starting one (`--cri-socket`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cri_socket: Option<String>,
    /// Run only the control plane, no node agent (`--disable-agent`, as k3s).
    #[serde(default)]
    pub disable_agent: bool,
    /// Pods the node accepts (`--max-pods`).
    #[serde(default = "default_max_pods")]
    pub max_pods: u32,
    /// OCI runtime of the bundled runtime (`--oci-runtime`: runc or crun).
    #[serde(default = "default_oci_runtime")]
    pub oci_runtime: String,
    /// Registry mirrors (`--registry-mirror HOST=URL[,URL...][,mirror-only]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registry_mirrors: Vec<String>,
    /// Registries pulled over plain HTTP (`--insecure-registry HOST[:PORT]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insecure_registries: Vec<String>,
    /// Controllers to run (`--controllers`, as kube-controller-manager:
    /// `*`, `name`, `-name`).
    #[serde(default = "default_controllers")]
    pub controllers: Vec<String>,
    /// An existing dockerd (`--docker-host unix:///...`) for the docker
    /// runtime instead of the profile's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
}

fn default_controllers() -> Vec<String> {
    vec!["*".to_string()]
}

fn default_oci_runtime() -> String {
    "runc".to_string()
}

fn default_max_pods() -> u32 {
    110
}

impl ProfileConfig {
    /// Defaults for a new profile on this host.
    pub fn new_default() -> Self {
        Self {
            apiserver_port: DEFAULT_APISERVER_PORT,
            container_runtime: ContainerRuntime::default(),
            datastore: Datastore::default(),
            node_name: default_node_name(),
            cri_socket: None,
            disable_agent: false,
            max_pods: default_max_pods(),
            oci_runtime: default_oci_runtime(),
            registry_mirrors: Vec::new(),
            insecure_registries: Vec::new(),
            controllers: default_controllers(),
            docker_host: None,
        }
    }

    /// Applies the settings given explicitly on the command line.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(p) = o.apiserver_port {
            self.apiserver_port = p;
        }
        if let Some(r) = o.container_runtime {
            self.container_runtime = r;
        }
        if let Some(d) = o.datastore {
            self.datastore = d;
        }
        if let Some(n) = &o.node_name {
            self.node_name = n.clone();
        }
        if let Some(s) = &o.cri_socket {
            self.cri_socket = (!s.is_empty()).then(|| s.clone());
        }
        if let Some(d) = o.disable_agent {
            self.disable_agent = d;
        }
        if let Some(m) = o.max_pods {
            self.max_pods = m;
        }
        if let Some(r) = &o.oci_runtime {
            self.oci_runtime = r.clone();
        }
        if let Some(m) = &o.registry_mirrors {
            self.registry_mirrors = m.clone();
        }
        if let Some(i) = &o.insecure_registries {
            self.insecure_registries = i.clone();
        }
        if let Some(c) = &o.controllers {
            self.controllers = c.clone();
        }
        if let Some(h) = &o.docker_host {
            self.docker_host = (!h.is_empty()).then(|| h.clone());
        }
    }

    /// The parsed registry mirrors.
    pub fn mirrors(&self) -> std::result::Result<Vec<rkube_host::Mirror>, String> {
        self.registry_mirrors
            .iter()
            .map(|m| {
                m.parse()
                    .map_err(|e: rkube_host::Error| format!("--registry-mirror {m:?}: {e}"))
            })
            .collect()
    }
}

/// Settings given explicitly to `start`; `None` keeps the stored value.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--apiserver-port`.
    pub apiserver_port: Option<u16>,
    /// `--container-runtime`.
    pub container_runtime: Option<ContainerRuntime>,
    /// `--datastore`.
    pub datastore: Option<Datastore>,
    /// `--node-name`.
    pub node_name: Option<String>,
    /// `--cri-socket` ("" clears it).
    pub cri_socket: Option<String>,
    /// `--disable-agent`.
    pub disable_agent: Option<bool>,
    /// `--max-pods`.
    pub max_pods: Option<u32>,
    /// `--oci-runtime`.
    pub oci_runtime: Option<String>,
    /// `--registry-mirror` (given at all: replaces the stored list).
    pub registry_mirrors: Option<Vec<String>>,
    /// `--insecure-registry` (given at all: replaces the stored list).
    pub insecure_registries: Option<Vec<String>>,
    /// `--controllers` (given at all: replaces the stored list).
    pub controllers: Option<Vec<String>>,
    /// `--docker-host` / `DOCKER_HOST` ("" clears it).
    pub docker_host: Option<String>,
}

/// The host name lowercased into a DNS-1123 label, or "rkube".
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    sanitize_label(host.trim()).unwrap_or_else(|| "rkube".to_string())
}

/// Lowercases `s`, replaces invalid characters with '-', trims dashes.
fn sanitize_label(s: &str) -> Option<String> {
    let mapped: String = s
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .take(63)
        .collect();
    let trimmed = mapped.trim_matches('-');
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// A profile and the paths of its files.
#[derive(Clone, Debug)]
pub struct Profile {
    name: String,
    dir: PathBuf,
}

impl Profile {
    /// The profile `name` under the rkube home directory.
    pub fn new(name: &str) -> Result<Self> {
        Self::in_home(&home()?, name)
    }

    /// The profile `name` under `home` (for tests and `--all` listings).
    pub fn in_home(home: &Path, name: &str) -> Result<Self> {
        validate_name(name)?;
        Ok(Self {
            name: name.to_string(),
            dir: home.join("profiles").join(name),
        })
    }

    /// Every profile under the rkube home directory, sorted by name.
    pub fn list() -> Result<Vec<Profile>> {
        let home = home()?;
        let dir = home.join("profiles");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read directory", &dir)(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| validate_name(n).is_ok())
            .collect();
        names.sort();
        names.iter().map(|n| Profile::in_home(&home, n)).collect()
    }

    /// Profile name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `profiles/<name>/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the profile directory exists.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// `pki/`: certificates and keys.
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// `cni/net.d/`: the CNI network configuration of the node.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni").join("net.d")
    }

    /// `data/`: the embedded datastore.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The embedded datastore file.
    pub fn store_file(&self) -> PathBuf {
        self.data_dir().join("state.redb")
    }

    /// `config.json`.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The standalone kubeconfig of this profile.
    pub fn kubeconfig_file(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// `rkube.log`: output of the daemon.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("rkube.log")
    }

    /// `rkube.pid`: the daemon's pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("rkube.pid")
    }

    /// Creates the profile directories.
    pub fn create_dirs(&self) -> Result<()> {
        for d in [self.dir.clone(), self.pki_dir(), self.data_dir()] {
            std::fs::create_dir_all(&d).map_err(Error::io("create directory", &d))?;
        }
        Ok(())
    }

    /// The stored config, or `None` for a new profile.
    pub fn load_config(&self) -> Result<Option<ProfileConfig>> {
        let path = self.config_file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Config {
                profile: self.name.clone(),
                path,
                source,
            })
    }

    /// The stored config, or an error naming how to create the profile.
    pub fn require_config(&self) -> Result<ProfileConfig> {
        self.load_config()?
            .ok_or_else(|| Error::NoSuchProfile(self.name.clone()))
    }

    /// Writes `config.json` atomically (temp file + rename).
    pub fn save_config(&self, cfg: &ProfileConfig) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(Error::io("create directory", &self.dir))?;
        let path = self.config_file();
        let tmp = self.dir.join(".config.json.tmp");
        let mut bytes = serde_json::to_vec_pretty(cfg).expect("config serializes");
        bytes.push(b'\n');
        std::fs::write(&tmp, bytes).map_err(Error::io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(Error::io("write", &path))
    }

    /// Every `*.pid` file of the profile (the daemon's and, later, runtime daemons').
    pub fn pid_files(&self) -> Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read directory", &self.dir)(e)),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pid"))
            .collect();
        files.sort();
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["rkube", "a", "dev-1", "0abc", &"a".repeat(63)] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "-a",
            "a-",
            "Dev",
            "a_b",
            "a.b",
            "a/b",
            "..",
            &"a".repeat(64),
        ] {
            let err = validate_name(bad).expect_err(bad);
            assert!(err.to_string().contains("lowercase letters"), "{err}");
        }
    }

    #[test]
    fn sanitizes_host_names() {
        assert_eq!(
            sanitize_label("My_Host.local").as_deref(),
            Some("my-host-local")
        );
        assert_eq!(sanitize_label("--"), None);
    }

    #[test]
    fn config_round_trip_and_overrides() {
        let home = tempfile::tempdir().unwrap();
        let p = Profile::in_home(home.path(), "dev").unwrap();
        assert_eq!(p.load_config().unwrap(), None);
        assert!(matches!(p.require_config(), Err(Error::NoSuchProfile(_))));
        let mut cfg = ProfileConfig::new_default();
        cfg.apply(&Overrides {
            apiserver_port: Some(18443),
            container_runtime: Some(ContainerRuntime::Docker),
            datastore: None,
            node_name: Some("n1".into()),
            cri_socket: Some("unix:///run/x.sock".into()),
            disable_agent: Some(true),
            max_pods: None,
            oci_runtime: Some("crun".into()),
            registry_mirrors: Some(vec!["docker.io=http://127.0.0.1:5000,mirror-only".into()]),
            insecure_registries: None,
            controllers: Some(vec!["*".into(), "-cronjob".into()]),
            docker_host: Some("unix:///run/other-docker.sock".into()),
        });
        assert_eq!(
            cfg.docker_host.as_deref(),
            Some("unix:///run/other-docker.sock")
        );
        assert_eq!(cfg.oci_runtime, "crun");
        assert_eq!(cfg.controllers, ["*", "-cronjob"]);
        assert!(cfg.mirrors().unwrap()[0].mirror_only);
        assert_eq!(cfg.cri_socket.as_deref(), Some("unix:///run/x.sock"));
        assert!(cfg.disable_agent);
        assert_eq!(cfg.max_pods, 110);
        p.save_config(&cfg).unwrap();
        let loaded = p.load_config().unwrap().unwrap();
        assert_eq!(loaded, cfg);
        assert_eq!(loaded.apiserver_port, 18443);
        assert_eq!(loaded.datastore, Datastore::Embedded);
        let text = std::fs::read_to_string(p.config_file()).unwrap();
        assert!(text.contains("\"containerRuntime\": \"docker\""), "{text}");
    }

    #[test]
    fn corrupt_config_names_the_fix() {
        let home = tempfile::tempdir().unwrap();
        let p = Profile::in_home(home.path(), "dev").unwrap();
        p.create_dirs().unwrap();
        std::fs::write(p.config_file(), "{").unwrap();
        let err = p.load_config().unwrap_err().to_string();
        assert!(err.contains("rkube delete --profile dev"), "{err}");
    }

    #[test]
    fn parses_runtime_and_datastore_names() {
        assert_eq!(
            "cri-o".parse::<ContainerRuntime>().unwrap(),
            ContainerRuntime::CriO
        );
        assert_eq!(
            "containerd".parse::<ContainerRuntime>().unwrap().as_str(),
            "containerd"
        );
        assert!("rkt".parse::<ContainerRuntime>().is_err());
        assert_eq!("etcd".parse::<Datastore>().unwrap(), Datastore::Etcd);
        assert!("sqlite".parse::<Datastore>().is_err());
    }

    #[test]
    fn new_profiles_run_the_bundled_runtime_on_runc() {
        let cfg = ProfileConfig::new_default();
        assert_eq!(cfg.container_runtime, ContainerRuntime::CriO);
        assert_eq!(cfg.oci_runtime, "runc");
    }

    #[test]
    fn lists_pid_files() {
        let home = tempfile::tempdir().unwrap();
        let p = Profile::in_home(home.path(), "dev").unwrap();
        assert!(p.pid_files().unwrap().is_empty());
        p.create_dirs().unwrap();
        std::fs::write(p.pid_file(), "1\n").unwrap();
        std::fs::write(p.dir().join("crio.pid"), "2\n").unwrap();
        std::fs::write(p.log_file(), "").unwrap();
        let files = p.pid_files().unwrap();
        assert_eq!(files, vec![p.dir().join("crio.pid"), p.pid_file()]);
    }
}
