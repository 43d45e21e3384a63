//! `rkube status`: whether the profile's daemon runs, whether its API server
//! answers `/readyz`, and whether the user's kubeconfig points at it. Like
//! minikube, the exit code is 0 only when everything is up; otherwise bit 1
//! is set for the host process, 2 for the API server, 4 for the kubeconfig.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::pipeline::server_url;
use crate::probe::Prober;
use crate::profile::Profile;
use crate::Result;
use rkube_host::Procfs;

/// State of one profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Status {
    /// Profile name.
    pub name: String,
    /// "Running", "Stopped" or "Nonexistent".
    pub host: &'static str,
    /// Pid of the daemon, when running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// "Running" or "Stopped".
    #[serde(rename = "APIServer")]
    pub apiserver: &'static str,
    /// "Configured", "Misconfigured" or "Unconfigured".
    pub kubeconfig: &'static str,
    /// The API server URL, when the profile exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl Status {
    /// 0 when everything runs; otherwise bits 1 (host), 2 (API server), 4 (kubeconfig).
    pub fn exit_code(&self) -> i32 {
        let mut code = 0;
        if self.host != "Running" {
            code |= 1;
        }
        if self.apiserver != "Running" {
            code |= 2;
        }
        if self.kubeconfig != "Configured" {
            code |= 4;
        }
        code
    }

    /// minikube-style text.
    pub fn render(&self) -> String {
        let mut out = format!("{}\n", self.name);
        match self.pid {
            Some(pid) => out.push_str(&format!("host: {} (pid {pid})\n", self.host)),
            None => out.push_str(&format!("host: {}\n", self.host)),
        }
        match &self.server {
            Some(url) if self.apiserver == "Running" => {
                out.push_str(&format!("apiserver: {} ({url})\n", self.apiserver))
            }
            _ => out.push_str(&format!("apiserver: {}\n", self.apiserver)),
        }
        out.push_str(&format!("kubeconfig: {}\n", self.kubeconfig));
        out
    }
}

/// Probes `profile`.
pub async fn probe(profile: &Profile, procfs: &Procfs, kubeconfig: &Path) -> Result<Status> {
    let mut status = Status {
        name: profile.name().to_string(),
        host: "Nonexistent",
        pid: None,
        apiserver: "Stopped",
        kubeconfig: "Unconfigured",
        server: None,
    };
    let Some(config) = profile.load_config()? else {
        return Ok(status);
    };
    let url = server_url(config.apiserver_port);
    status.pid = procfs.running(&profile.pid_file(), profile.dir())?;
    status.host = if status.pid.is_some() {
        "Running"
    } else {
        "Stopped"
    };
    if status.pid.is_some() {
        if let Ok(prober) = Prober::new(profile, config.apiserver_port, Duration::from_secs(2)) {
            if prober.ready().await {
                status.apiserver = "Running";
            }
        }
    }
    status.kubeconfig = kubeconfig_state(kubeconfig, profile.name(), &url);
    status.server = Some(url);
    Ok(status)
}

/// Whether the kubeconfig at `path` has a cluster and context `name`
/// pointing at `url`.
pub fn kubeconfig_state(path: &Path, name: &str, url: &str) -> &'static str {
    let Ok(text) = std::fs::read_to_string(path) else {
        return "Unconfigured";
    };
    let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
        return "Misconfigured";
    };
    let find = |list: &str| {
        doc.get(list)
            .and_then(|l| l.as_sequence())
            .and_then(|seq| {
                seq.iter()
                    .find(|e| e.get("name").and_then(|n| n.as_str()) == Some(name))
            })
            .cloned()
    };
    let (Some(cluster), Some(_context)) = (find("clusters"), find("contexts")) else {
        return "Unconfigured";
    };
    let server = cluster
        .get("cluster")
        .and_then(|c| c.get("server"))
        .and_then(|s| s.as_str());
    if server == Some(url) {
        "Configured"
    } else {
        "Misconfigured"
    }
}

/// Runs `rkube status`; returns the exit code.
pub async fn run(profile_name: &str, json: bool) -> Result<i32> {
    let profile = Profile::new(profile_name)?;
    let status = probe(
        &profile,
        &Procfs::default(),
        &rkube_pki::kubeconfig::default_path(),
    )
    .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&status).expect("status serializes")
        );
    } else {
        print!("{}", status.render());
        if status.host == "Nonexistent" {
            println!(
                "\n🤷  Profile \"{0}\" does not exist; create it with `rkube start --profile {0}`",
                status.name
            );
        }
    }
    Ok(status.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_states() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let url = "https://127.0.0.1:8443";
        assert_eq!(kubeconfig_state(&path, "dev", url), "Unconfigured");
        let cfg = format!(
            "clusters:\n- name: dev\n  cluster:\n    server: {url}\ncontexts:\n- name: dev\n  context: {{cluster: dev, user: dev}}\n"
        );
        std::fs::write(&path, &cfg).unwrap();
        assert_eq!(kubeconfig_state(&path, "dev", url), "Configured");
        assert_eq!(kubeconfig_state(&path, "other", url), "Unconfigured");
        assert_eq!(
            kubeconfig_state(&path, "dev", "https://127.0.0.1:9"),
            "Misconfigured"
        );
        std::fs::write(&path, "a: [").unwrap();
        assert_eq!(kubeconfig_state(&path, "dev", url), "Misconfigured");
    }

    #[tokio::test]
    async fn stopped_and_missing_profiles() {
        let home = tempfile::tempdir().unwrap();
        let profile = Profile::in_home(home.path(), "dev").unwrap();
        let kc = home.path().join("kubeconfig");
        let st = probe(&profile, &Procfs::default(), &kc).await.unwrap();
        assert_eq!(st.host, "Nonexistent");
        assert_eq!(st.exit_code(), 7);
        profile
            .save_config(&crate::profile::ProfileConfig::new_default())
            .unwrap();
        let st = probe(&profile, &Procfs::default(), &kc).await.unwrap();
        assert_eq!(
            (st.host, st.apiserver, st.pid),
            ("Stopped", "Stopped", None)
        );
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["Host"], "Stopped");
        assert_eq!(json["APIServer"], "Stopped");
        assert!(st.render().contains("host: Stopped"));
    }

    #[test]
    fn exit_code_is_zero_only_when_all_up() {
        let st = Status {
            name: "dev".into(),
            host: "Running",
            pid: Some(1),
            apiserver: "Running",
            kubeconfig: "Configured",
            server: None,
        };
        assert_eq!(st.exit_code(), 0);
        let st = Status {
            apiserver: "Stopped",
            ..st
        };
        assert_eq!(st.exit_code(), 2);
    }
}
