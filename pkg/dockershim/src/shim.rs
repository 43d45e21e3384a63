//! The shim's shared state: the Docker client, CNI, the streaming server
//! and the log followers. Everything else is asked of dockerd.

use std::collections::HashMap;
use std::sync::OnceLock;

use bollard::models::ContainerSummary;
use bollard::query_parameters::ListContainersOptions;
use rkube_cri::api as cri;

use crate::config::ShimConfig;
use crate::{labels, logs, Error, Result};

/// The dockershim.
pub(crate) struct Shim {
    pub cfg: ShimConfig,
    pub docker: bollard::Docker,
    pub cni: rkube_network::cni::Cni,
    pub streaming: OnceLock<rkube_streaming::Server>,
    pub logs: logs::Followers,
    /// dockerd's version, for CRI Version.
    pub version: String,
    /// Whether the kernel enforces AppArmor (dockerd refuses profiles
    /// otherwise).
    pub apparmor: bool,
}

impl Shim {
    /// Connects to dockerd and prepares the shim's directories.
    pub async fn new(cfg: ShimConfig) -> Result<Self> {
        for d in [cfg.root.clone(), cfg.netns_dir(), cfg.cni_cache_dir()] {
            std::fs::create_dir_all(&d).map_err(Error::io("create directory", &d))?;
        }
        let docker = crate::dockerd::connect(&cfg.docker_socket).await?;
        let version = docker.version().await?.version.unwrap_or_default();
        let cni =
            rkube_network::cni::Cni::new(&cfg.cni_conf_dir, &cfg.cni_bin_dir, &cfg.cni_cache_dir());
        let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim() == "Y");
        Ok(Self {
            cfg,
            docker,
            cni,
            streaming: OnceLock::new(),
            logs: logs::Followers::default(),
            version,
            apparmor,
        })
    }

    /// The streaming server.
    pub fn streaming(&self) -> Result<&rkube_streaming::Server> {
        self.streaming
            .get()
            .ok_or_else(|| Error::Runtime("streaming server not started".into()))
    }

    /// The shim's containers of one type (`labels::SANDBOX` or
    /// `labels::CONTAINER`), optionally only those of one sandbox.
    pub async fn list(&self, kind: &str, sandbox: Option<&str>) -> Result<Vec<ContainerSummary>> {
        let mut label = vec![format!("{}={kind}", labels::TYPE)];
        if let Some(sb) = sandbox {
            label.push(format!("{}={sb}", labels::SANDBOX_ID));
        }
        let opts = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_string(), label)])),
            ..Default::default()
        };
        Ok(self.docker.list_containers(Some(opts)).await?)
    }
}

/// Whether a CRI label selector matches `labels`.
pub(crate) fn selected(
    selector: &HashMap<String, String>,
    labels: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The CRI ID a (possibly truncated) filter ID matches.
pub(crate) fn id_matches(filter: &str, id: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

/// A sandbox's metadata for error messages.
pub(crate) fn describe(m: Option<&cri::PodSandboxMetadata>) -> String {
    m.map(|m| format!("{}/{}", m.namespace, m.name))
        .unwrap_or_default()
}
