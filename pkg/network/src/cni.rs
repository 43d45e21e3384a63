//! Running the CNI plugins of a network configuration list, as a CNI
//! runtime does (spec 1.0): ADD runs `loopback` and then each plugin in
//! order, feeding each the previous one's result; DEL runs them in
//! reverse with the cached result; CHECK likewise. Plugins get their
//! parameters in `CNI_*` environment variables and their configuration on
//! stdin, and answer with a result or an error object on stdout.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::conf::NetworkConfigList;
use crate::{Error, Result};

const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A port published on the host (hostPort).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// Host port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// "tcp", "udp" or "sctp".
    pub protocol: String,
    /// Host address to bind ("" = all).
    pub host_ip: String,
}

/// One interface of one sandbox.
#[derive(Clone, Debug)]
pub struct Attachment {
    /// The sandbox ID.
    pub container_id: String,
    /// Its pinned network namespace (empty for a DEL whose namespace is gone).
    pub netns: PathBuf,
    /// Interface name inside, `eth0`.
    pub ifname: String,
    /// Pod namespace.
    pub pod_namespace: String,
    /// Pod name.
    pub pod_name: String,
    /// Pod UID.
    pub pod_uid: String,
    /// hostPorts for `portmap`.
    pub port_mappings: Vec<PortMapping>,
}

/// The outcome of ADD.
#[derive(Clone, Debug)]
pub struct AddResult {
    /// Addresses assigned to the interface.
    pub ips: Vec<IpAddr>,
    /// The final result object.
    pub raw: Value,
}

/// A CNI runtime over one conf directory.
#[derive(Clone, Debug)]
pub struct Cni {
    conf_dir: PathBuf,
    bin_dir: PathBuf,
    cache_dir: PathBuf,
}

fn plugin_error(plugin: &str, command: &str, detail: String) -> Error {
    Error::Plugin {
        plugin: plugin.to_string(),
        command: command.to_string(),
        detail,
    }
}

/// The stdin configuration of one plugin of a list.
pub(crate) fn plugin_conf(
    list: &NetworkConfigList,
    plugin: &Value,
    prev: Option<&Value>,
    mappings: &[PortMapping],
) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = json!(list.name);
    conf["cniVersion"] = json!(list.cni_version);
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    let wants_ports = plugin
        .get("capabilities")
        .and_then(|c| c.get("portMappings"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if wants_ports && !mappings.is_empty() {
        let ports: Vec<Value> = mappings
            .iter()
            .map(|m| {
                let mut p = json!({
                    "hostPort": m.host_port,
                    "containerPort": m.container_port,
                    "protocol": m.protocol,
                });
                if !m.host_ip.is_empty() {
                    p["hostIP"] = json!(m.host_ip);
                }
                p
            })
            .collect();
        conf["runtimeConfig"] = json!({ "portMappings": ports });
    }
    conf
}

/// `CNI_ARGS` for a pod.
pub(crate) fn cni_args(a: &Attachment) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        a.pod_namespace, a.pod_name, a.container_id, a.pod_uid
    )
}

/// Addresses of a CNI result (`ips[].address` = "10.244.0.5/24").
pub(crate) fn result_ips(result: &Value) -> Vec<IpAddr> {
    result
        .get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|i| i.get("address").and_then(Value::as_str))
                .filter_map(|a| a.split('/').next()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl Cni {
    /// A runtime reading `conf_dir`, running plugins from `bin_dir`, caching
    /// results in `cache_dir`.
    pub fn new(conf_dir: &Path, bin_dir: &Path, cache_dir: &Path) -> Cni {
        Cni {
            conf_dir: conf_dir.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            cache_dir: cache_dir.to_path_buf(),
        }
    }

    /// The first `*.conflist` in the conf directory (by name).
    pub fn load(&self) -> Result<NetworkConfigList> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.conf_dir)
            .map_err(Error::io("read", &self.conf_dir))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conflist"))
            .collect();
        files.sort();
        let path = files
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoNetwork(self.conf_dir.clone()))?;
        let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::BadConf {
            path,
            reason: e.to_string(),
        })
    }

    /// Ready when the conflist is there and all its plugins are installed.
    pub async fn ready(&self) -> Result<()> {
        let list = self.load()?;
        let missing: Vec<String> = list
            .plugins
            .iter()
            .filter_map(|p| p.get("type").and_then(Value::as_str))
            .chain(["loopback"])
            .filter(|t| !self.bin_dir.join(t).is_file())
            .map(str::to_string)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::MissingPlugins {
                dir: self.bin_dir.clone(),
                missing: missing.join(", "),
            })
        }
    }

    fn cache_file(&self, network: &str, a: &Attachment) -> PathBuf {
        self.cache_dir
            .join(format!("{network}-{}-{}.json", a.container_id, a.ifname))
    }

    async fn invoke(
        &self,
        command: &str,
        conf: &Value,
        a: &Attachment,
        ifname: &str,
    ) -> Result<Value> {
        let kind = conf
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let bin = self.bin_dir.join(&kind);
        let mut child = tokio::process::Command::new(&bin)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &a.container_id)
            .env("CNI_NETNS", &a.netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_ARGS", cni_args(a))
            .env("CNI_PATH", &self.bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                plugin_error(&kind, command, format!("cannot run {}: {e}", bin.display()))
            })?;
        let input = serde_json::to_vec(conf).expect("json");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&input).await;
        }
        let out = tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                plugin_error(
                    &kind,
                    command,
                    format!("timed out after {PLUGIN_TIMEOUT:?}"),
                )
            })?
            .map_err(|e| plugin_error(&kind, command, e.to_string()))?;
        if !out.status.success() {
            let detail = serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .map(|v| {
                    let msg = v.get("msg").and_then(Value::as_str).unwrap_or_default();
                    let details = v.get("details").and_then(Value::as_str).unwrap_or_default();
                    if details.is_empty() {
                        msg.to_string()
                    } else {
                        format!("{msg}: {details}")
                    }
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| {
                    format!(
                        "{} {}",
                        String::from_utf8_lossy(&out.stdout).trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                });
            return Err(plugin_error(&kind, command, detail));
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| plugin_error(&kind, command, format!("bad result: {e}")))
    }

    /// Attaches the sandbox: `lo` up, then the list's plugins in order.
    pub async fn add(&self, a: &Attachment) -> Result<AddResult> {
        let list = self.load()?;
        let lo = crate::conf::loopback_conf();
        self.invoke("ADD", &lo, a, "lo").await?;
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let conf = plugin_conf(&list, plugin, prev.as_ref(), &a.port_mappings);
            let res = self.invoke("ADD", &conf, a, &a.ifname).await?;
            if !res.is_null() {
                prev = Some(res);
            }
        }
        let raw = prev.unwrap_or(Value::Null);
        std::fs::create_dir_all(&self.cache_dir)
            .map_err(Error::io("create directory", &self.cache_dir))?;
        let cache = self.cache_file(&list.name, a);
        let tmp = cache.with_extension("tmp");
        let record = json!({ "result": raw, "portMappings": a.port_mappings.iter().map(|m| json!([m.host_port, m.container_port, m.protocol, m.host_ip])).collect::<Vec<_>>() });
        std::fs::write(&tmp, serde_json::to_vec(&record).expect("json"))
            .map_err(Error::io("write", &tmp))?;
        std::fs::rename(&tmp, &cache).map_err(Error::io("write", &cache))?;
        Ok(AddResult {
            ips: result_ips(&raw),
            raw,
        })
    }

    fn cached(&self, network: &str, a: &Attachment) -> (Option<Value>, Vec<PortMapping>) {
        let Ok(bytes) = std::fs::read(self.cache_file(network, a)) else {
            return (None, a.port_mappings.clone());
        };
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            return (None, a.port_mappings.clone());
        };
        let mappings = v
            .get("portMappings")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        Some(PortMapping {
                            host_port: m.get(0)?.as_u64()? as u16,
                            container_port: m.get(1)?.as_u64()? as u16,
                            protocol: m.get(2)?.as_str()?.to_string(),
                            host_ip: m.get(3)?.as_str()?.to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_else(|| a.port_mappings.clone());
        (v.get("result").filter(|r| !r.is_null()).cloned(), mappings)
    }

    /// Detaches the sandbox; tolerant of a missing namespace or cache.
    pub async fn del(&self, a: &Attachment) -> Result<()> {
        let list = self.load()?;
        let (prev, mappings) = self.cached(&list.name, a);
        let mut a = a.clone();
        if !a.netns.as_os_str().is_empty() && !crate::netns::exists(&a.netns) {
            a.netns = PathBuf::new();
        }
        let mut first_err = None;
        for plugin in list.plugins.iter().rev() {
            let conf = plugin_conf(&list, plugin, prev.as_ref(), &mappings);
            if let Err(e) = self.invoke("DEL", &conf, &a, &a.ifname).await {
                tracing::warn!(sandbox = %a.container_id, "CNI DEL: {e}");
                first_err.get_or_insert(e);
            }
        }
        let _ = std::fs::remove_file(self.cache_file(&list.name, &a));
        match first_err {
            // The plugins of Debian's package release IPs even when the
            // namespace is gone; report other failures.
            Some(e) if !a.netns.as_os_str().is_empty() => Err(e),
            _ => Ok(()),
        }
    }

    /// Checks the attachment against the cached result.
    pub async fn check(&self, a: &Attachment) -> Result<()> {
        let list = self.load()?;
        let (prev, mappings) = self.cached(&list.name, a);
        for plugin in &list.plugins {
            let conf = plugin_conf(&list, plugin, prev.as_ref(), &mappings);
            self.invoke("CHECK", &conf, a, &a.ifname).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::{conflist, CniOptions};

    fn attachment(id: &str, netns: PathBuf) -> Attachment {
        Attachment {
            container_id: id.into(),
            netns,
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            pod_uid: "u-1".into(),
            port_mappings: vec![],
        }
    }

    #[test]
    fn renders_plugin_confs() {
        let list = conflist(&CniOptions::default()).unwrap();
        let m = PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: String::new(),
        };
        let bridge = plugin_conf(&list, &list.plugins[0], None, std::slice::from_ref(&m));
        assert_eq!(bridge["name"], "rkube");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(bridge.get("runtimeConfig").is_none());
        assert!(bridge.get("prevResult").is_none());
        let prev = json!({"ips": [{"address": "10.244.0.7/24"}]});
        let portmap = plugin_conf(&list, &list.plugins[1], Some(&prev), &[m]);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            result_ips(&prev),
            vec!["10.244.0.7".parse::<IpAddr>().unwrap()]
        );
        let a = attachment("abc", PathBuf::from("/x"));
        assert_eq!(
            cni_args(&a),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
    }

    /// Real plugins on a bridge of the test's own (not rkube0).
    #[tokio::test]
    async fn add_and_del_with_debian_plugins() {
        let dir = tempfile::tempdir().unwrap();
        let opts = CniOptions {
            bridge: "rkntest0".into(),
            subnet: "10.250.0.0/24".into(),
            ipam_data_dir: dir.path().join("ipam"),
            firewall: false,
            ..CniOptions::default()
        };
        crate::conf::write_conflist(&dir.path().join("net.d"), &opts).unwrap();
        let cni = Cni::new(
            &dir.path().join("net.d"),
            Path::new("/usr/lib/cni"),
            &dir.path().join("cache"),
        );
        cni.ready().await.unwrap();
        let ns = dir.path().join("ns").join("a");
        crate::netns::create(&ns).unwrap();
        let a = attachment("testsandbox1", ns.clone());
        let res = cni.add(&a).await.unwrap();
        let ip = res.ips[0];
        assert!(ip.to_string().starts_with("10.250.0."), "{ip}");
        let lease = dir.path().join("ipam").join("rkube").join(ip.to_string());
        assert!(lease.exists());
        // The host reaches a listener inside the namespace over the bridge.
        let ns2 = ns.clone();
        let listener = std::thread::spawn(move || {
            use std::os::fd::AsFd;
            let f = std::fs::File::open(&ns2).unwrap();
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            std::net::TcpListener::bind((ip, 7777)).unwrap()
        })
        .join()
        .unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            drop(s);
        });
        std::net::TcpStream::connect_timeout(&(ip, 7777).into(), Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        cni.check(&a).await.unwrap();
        cni.del(&a).await.unwrap();
        assert!(!lease.exists());
        cni.del(&a).await.unwrap();
        crate::netns::remove(&ns).unwrap();
        cni.del(&a).await.unwrap();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", "rkntest0"])
            .status();
        let _ = nix::mount::umount2(&dir.path().join("ns"), nix::mount::MntFlags::MNT_DETACH);
    }
}
