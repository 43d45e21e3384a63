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

/// What [`Cni::add`] cached for an attachment.
struct Cached {
    /// The cache file, if there is one.
    file: Option<PathBuf>,
    /// The final ADD result.
    result: Option<Value>,
    /// The port mappings of the ADD (or the caller's when none is cached).
    mappings: Vec<PortMapping>,
}

/// Whether a plugin conf is `bridge` with `ipMasq`.
fn masquerades(plugin: &Value) -> bool {
    plugin.get("type").and_then(Value::as_str) == Some("bridge")
        && plugin.get("ipMasq").and_then(Value::as_bool) == Some(true)
}

/// Removes the masquerade rule and chain `bridge` made for a sandbox (found
/// by the comment `name: "<network>" id: "<id>"` it puts on them) in the
/// nat tables of iptables and ip6tables. Best effort.
async fn teardown_masquerade(network: &str, id: &str) {
    let comment = format!("name: {network:?} id: {id:?}");
    let quoted = format!("{comment:?}");
    for tool in ["iptables", "ip6tables"] {
        let Ok(out) = tokio::process::Command::new(tool)
            .args(["-w", "-t", "nat", "-S", "POSTROUTING"])
            .output()
            .await
        else {
            continue;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if !line.contains(&quoted) {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |flag: &str| {
                words
                    .iter()
                    .position(|w| *w == flag)
                    .and_then(|i| words.get(i + 1))
                    .map(|w| w.to_string())
            };
            let (Some(source), Some(chain)) = (after("-s"), after("-j")) else {
                continue;
            };
            if !chain.starts_with("CNI-") {
                continue;
            }
            tracing::debug!(sandbox = id, %chain, "removing a leftover CNI masquerade rule");
            for args in [
                vec![
                    "-D",
                    "POSTROUTING",
                    "-s",
                    &source,
                    "-m",
                    "comment",
                    "--comment",
                    &comment,
                    "-j",
                    &chain,
                ],
                vec!["-F", &chain],
                vec!["-X", &chain],
            ] {
                let _ = tokio::process::Command::new(tool)
                    .args(["-w", "-t", "nat"])
                    .args(&args)
                    .output()
                    .await;
            }
        }
    }
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
            match self.invoke("ADD", &conf, a, &a.ifname).await {
                Ok(res) if res.is_null() => {}
                Ok(res) => prev = Some(res),
                Err(e) => {
                    // Undo what the earlier plugins did (the IP lease above
                    // all), as a runtime does when set-up fails half-way.
                    for plugin in list.plugins.iter().rev() {
                        let conf = plugin_conf(&list, plugin, prev.as_ref(), &a.port_mappings);
                        if let Err(e) = self.invoke("DEL", &conf, a, &a.ifname).await {
                            tracing::debug!(sandbox = %a.container_id, "CNI DEL after failed ADD: {e}");
                        }
                    }
                    return Err(e);
                }
            }
        }
        let raw = prev.unwrap_or(Value::Null);
        std::fs::create_dir_all(&self.cache_dir)
            .map_err(Error::io("create directory", &self.cache_dir))?;
        let cache = self.cache_file(&list.name, a);
        let tmp = cache.with_extension("tmp");
        let record = json!({
            "kind": "rkubeCniCacheV1",
            "containerId": a.container_id,
            "ifName": a.ifname,
            "config": list,
            "result": raw,
            "portMappings": a.port_mappings.iter().map(|m| json!([m.host_port, m.container_port, m.protocol, m.host_ip])).collect::<Vec<_>>(),
        });
        std::fs::write(&tmp, serde_json::to_vec(&record).expect("json"))
            .map_err(Error::io("write", &tmp))?;
        std::fs::rename(&tmp, &cache).map_err(Error::io("write", &cache))?;
        Ok(AddResult {
            ips: result_ips(&raw),
            raw,
        })
    }

    /// The cached ADD of `a`: the cache file of the current network, or
    /// else any of `a`'s (the conflist may be gone or renamed since).
    fn cached(&self, a: &Attachment) -> (Result<NetworkConfigList>, Cached) {
        let loaded = self.load();
        let mut file = loaded.as_ref().ok().map(|l| self.cache_file(&l.name, a));
        if !file.as_ref().is_some_and(|f| f.is_file()) {
            let suffix = format!("-{}-{}.json", a.container_id, a.ifname);
            if let Ok(dir) = std::fs::read_dir(&self.cache_dir) {
                if let Some(found) = dir.flatten().map(|e| e.path()).find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(&suffix))
                }) {
                    file = Some(found);
                }
            }
        }
        let record = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or(Value::Null);
        let mappings = record
            .get("portMappings")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        Some(PortMapping {
                            host_port: u16::try_from(m.get(0)?.as_u64()?).ok()?,
                            container_port: u16::try_from(m.get(1)?.as_u64()?).ok()?,
                            protocol: m.get(2)?.as_str()?.to_string(),
                            host_ip: m.get(3)?.as_str()?.to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_else(|| a.port_mappings.clone());
        let config = record
            .get("config")
            .and_then(|c| serde_json::from_value::<NetworkConfigList>(c.clone()).ok());
        // The configuration the sandbox was attached with wins, as in libcni.
        let list = match config {
            Some(c) => Ok(c),
            None => loaded,
        };
        let cached = Cached {
            file,
            result: record.get("result").filter(|r| !r.is_null()).cloned(),
            mappings,
        };
        (list, cached)
    }

    /// Detaches the sandbox; tolerant of a missing namespace or cache.
    pub async fn del(&self, a: &Attachment) -> Result<()> {
        let (list, cached) = self.cached(a);
        let list = list?;
        let Cached {
            file,
            result: prev,
            mappings,
        } = cached;
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
        let gone = a.netns.as_os_str().is_empty();
        if gone && list.plugins.iter().any(masquerades) {
            // Without the namespace, `bridge` cannot learn the pod's address
            // and leaves its ipMasq rule behind: remove it here.
            teardown_masquerade(&list.name, &a.container_id).await;
        }
        match first_err {
            // Debian's plugins release IPs and port mappings even when the
            // namespace is gone; report failures only while it exists (the
            // cache stays for a retry then).
            Some(e) if !gone => Err(e),
            _ => {
                let Some(cache) = file else { return Ok(()) };
                match std::fs::remove_file(&cache) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(Error::io("remove", cache)(e))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Checks the attachment against the cached result.
    pub async fn check(&self, a: &Attachment) -> Result<()> {
        let (list, cached) = self.cached(a);
        let list = list?;
        let Cached {
            result: prev,
            mappings,
            ..
        } = cached;
        if prev.is_none() {
            return Err(Error::NotAttached {
                container_id: a.container_id.clone(),
                cache: self.cache_file(&list.name, a),
            });
        }
        if !crate::netns::exists(&a.netns) {
            return Err(Error::Io {
                action: "check the network of",
                path: a.netns.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no network namespace is pinned there",
                ),
            });
        }
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

    /// A fake plugin that records its environment and stdin and answers
    /// with a result that names itself (or fails when told to).
    fn fake_bin(dir: &Path) -> PathBuf {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = r#"#!/bin/sh
log="$(dirname "$0")/../log"
input="$(cat)"
{ echo "== $(basename "$0") $CNI_COMMAND"; env | grep '^CNI_' | sort; echo "$input"; } >> "$log"
case "$input" in
  *'"fail":true'*) echo '{"cniVersion":"1.0.0","code":7,"msg":"no luck","details":"because"}'; exit 1;;
esac
if [ "$CNI_COMMAND" = ADD ]; then
  echo "{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.9.0.$(basename "$0" | wc -c)/24\"}],\"by\":\"$(basename "$0")\"}"
fi
"#;
        for name in ["loopback", "one", "two"] {
            let p = bin.join(name);
            std::fs::write(&p, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        bin
    }

    fn write_list(dir: &Path, file: &str, plugins: Value) -> PathBuf {
        let conf = dir.join("net.d");
        std::fs::create_dir_all(&conf).unwrap();
        let list = json!({ "cniVersion": "1.0.0", "name": "fakenet", "plugins": plugins });
        std::fs::write(conf.join(file), list.to_string()).unwrap();
        conf
    }

    /// Invocations recorded by the fake plugins: (header, env lines, stdin).
    fn calls(dir: &Path) -> Vec<(String, Vec<String>, Value)> {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        log.split("== ")
            .filter(|c| !c.is_empty())
            .map(|c| {
                let mut lines: Vec<&str> = c.lines().collect();
                let head = lines.remove(0).to_string();
                let input = lines.pop().unwrap();
                (
                    head,
                    lines.iter().map(|l| l.to_string()).collect(),
                    serde_json::from_str(input).unwrap(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn invokes_plugins_as_the_spec_says() {
        let dir = tempfile::tempdir().unwrap();
        let bin = fake_bin(dir.path());
        let conf = write_list(
            dir.path(),
            "20-b.conflist",
            json!([{ "type": "one", "x": 1 }, { "type": "two", "capabilities": { "portMappings": true } }]),
        );
        // The first conflist by name wins; other files are ignored.
        std::fs::write(conf.join("99-z.conflist"), "not json").unwrap();
        std::fs::write(conf.join("05-a.conf"), "not json").unwrap();
        let cni = Cni::new(&conf, &bin, &dir.path().join("cache"));
        assert_eq!(cni.load().unwrap().name, "fakenet");
        cni.ready().await.unwrap();
        let mut a = attachment("sb1", dir.path().join("ns"));
        a.port_mappings = vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: "127.0.0.1".into(),
        }];
        let res = cni.add(&a).await.unwrap();
        assert_eq!(res.raw["by"], "two");
        assert_eq!(res.ips, vec!["10.9.0.4".parse::<IpAddr>().unwrap()]);
        let cache = dir.path().join("cache").join("fakenet-sb1-eth0.json");
        assert!(cache.is_file());

        let c = calls(dir.path());
        assert_eq!(
            c.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["loopback ADD", "one ADD", "two ADD"]
        );
        assert!(c[0].1.contains(&"CNI_IFNAME=lo".to_string()));
        let env = &c[1].1;
        for want in [
            "CNI_COMMAND=ADD".to_string(),
            "CNI_CONTAINERID=sb1".into(),
            format!("CNI_NETNS={}", dir.path().join("ns").display()),
            "CNI_IFNAME=eth0".into(),
            format!("CNI_PATH={}", bin.display()),
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=u-1".into(),
        ] {
            assert!(env.contains(&want), "{want} not in {env:?}");
        }
        let one = &c[1].2;
        assert_eq!(one["name"], "fakenet");
        assert_eq!(one["cniVersion"], "1.0.0");
        assert_eq!(one["x"], 1);
        assert!(one.get("prevResult").is_none());
        assert!(one.get("runtimeConfig").is_none());
        let two = &c[2].2;
        assert_eq!(two["prevResult"]["by"], "one");
        assert_eq!(
            two["runtimeConfig"]["portMappings"],
            json!([{ "hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1" }])
        );

        // CHECK: in order, with the cached result, and the namespace must exist.
        assert!(cni.check(&a).await.is_err());

        // DEL: reverse order, cached result and mappings (even when the caller
        // no longer has them), empty CNI_NETNS since the namespace is gone.
        // The configuration of the ADD is used even if the conflist is gone.
        std::fs::remove_file(dir.path().join("log")).unwrap();
        std::fs::rename(conf.join("20-b.conflist"), dir.path().join("away")).unwrap();
        std::fs::remove_file(conf.join("99-z.conflist")).unwrap();
        let mut bare = a.clone();
        bare.port_mappings.clear();
        cni.del(&bare).await.unwrap();
        std::fs::rename(dir.path().join("away"), conf.join("20-b.conflist")).unwrap();
        let c = calls(dir.path());
        assert_eq!(
            c.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["two DEL", "one DEL"]
        );
        assert!(c[0].1.contains(&"CNI_NETNS=".to_string()));
        assert_eq!(c[0].2["prevResult"]["by"], "two");
        assert_eq!(c[0].2["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert_eq!(c[1].2["prevResult"]["by"], "two");
        assert!(!cache.exists());
        // DEL again: no cache, no prevResult, still fine.
        std::fs::remove_file(dir.path().join("log")).unwrap();
        cni.del(&bare).await.unwrap();
        assert!(calls(dir.path())
            .iter()
            .all(|c| c.2.get("prevResult").is_none()));
        // CHECK without ADD says so.
        let err = cni.check(&a).await.unwrap_err().to_string();
        assert!(err.contains("not attached"), "{err}");
    }

    #[tokio::test]
    async fn reports_plugin_errors_and_undoes_a_failed_add() {
        let dir = tempfile::tempdir().unwrap();
        let bin = fake_bin(dir.path());
        let conf = write_list(
            dir.path(),
            "10-x.conflist",
            json!([{ "type": "one" }, { "type": "two", "fail": true }]),
        );
        let cni = Cni::new(&conf, &bin, &dir.path().join("cache"));
        let a = attachment("sb2", dir.path().join("ns"));
        let err = cni.add(&a).await.unwrap_err();
        assert!(
            matches!(&err, Error::Plugin { plugin, command, detail }
                if plugin == "two" && command == "ADD" && detail == "no luck: because"),
            "{err}"
        );
        let c = calls(dir.path());
        assert_eq!(
            c.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["loopback ADD", "one ADD", "two ADD", "two DEL", "one DEL"]
        );
        assert_eq!(c[4].2["prevResult"]["by"], "one");
        assert!(!dir
            .path()
            .join("cache")
            .join("fakenet-sb2-eth0.json")
            .exists());

        // Missing plugin binaries and missing conflists are named.
        write_list(dir.path(), "00-y.conflist", json!([{ "type": "nosuch" }]));
        let err = cni.ready().await.unwrap_err().to_string();
        assert!(err.contains("nosuch"), "{err}");
        let empty = Cni::new(&dir.path().join("bin"), &bin, dir.path());
        assert!(matches!(empty.load(), Err(Error::NoNetwork(_))));
    }

    /// A network of the test's own (not rkube0, which a running rkube may use).
    fn real_network(dir: &Path, bridge: &str, subnet: &str) -> Cni {
        let opts = CniOptions {
            bridge: bridge.into(),
            subnet: subnet.into(),
            ipam_data_dir: dir.join("ipam"),
            firewall: true,
            ..CniOptions::default()
        };
        crate::conf::write_conflist(&dir.join("net.d"), &opts).unwrap();
        Cni::new(
            &dir.join("net.d"),
            Path::new("/usr/lib/cni"),
            &dir.join("cache"),
        )
    }

    /// Deletes the test bridge and the namespace directory's mount on drop.
    struct Cleanup(&'static str, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", self.0])
                .status();
            let _ = nix::mount::umount2(&self.1, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    fn listen_in(ns: &Path, addr: (IpAddr, u16)) -> std::net::TcpListener {
        crate::netns::run_in(ns, move || std::net::TcpListener::bind(addr).unwrap()).unwrap()
    }

    /// Accepts one connection and writes `msg` to it.
    fn serve_once(l: std::net::TcpListener, msg: &'static [u8]) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            use std::io::Write;
            let (mut s, _) = l.accept().unwrap();
            s.write_all(msg).unwrap();
        })
    }

    fn read_all(mut s: std::net::TcpStream) -> Vec<u8> {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        buf
    }

    #[tokio::test]
    async fn add_and_del_with_debian_plugins() {
        let dir = tempfile::tempdir().unwrap();
        let _cleanup = Cleanup("rkntest0", dir.path().join("ns"));
        let cni = real_network(dir.path(), "rkntest0", "10.250.0.0/24");
        cni.ready().await.unwrap();
        let ns = dir.path().join("ns").join("a");
        crate::netns::create(&ns).unwrap();
        assert!(crate::netns::exists(&ns));
        let a = attachment("testsandbox1", ns.clone());
        let res = cni.add(&a).await.unwrap();
        let ip = res.ips[0];
        assert!(ip.to_string().starts_with("10.250.0."), "{ip}");
        assert_eq!(
            res.raw["interfaces"].as_array().map(|i| i.is_empty()),
            Some(false)
        );
        let lease = dir.path().join("ipam").join("rkube").join(ip.to_string());
        assert!(lease.exists());
        // The address is on eth0 inside, and lo is up.
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(["ip", "-o", "addr", "show"])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains(&format!("eth0    inet {ip}/24")), "{out}");
        assert!(out.contains("lo    inet 127.0.0.1/8"), "{out}");
        // The host reaches a listener inside the namespace over the bridge.
        let t = serve_once(listen_in(&ns, (ip, 7777)), b"over the bridge");
        let s = std::net::TcpStream::connect_timeout(&(ip, 7777).into(), Duration::from_secs(5))
            .unwrap();
        assert_eq!(read_all(s), b"over the bridge");
        t.join().unwrap();
        // connect_tcp reaches a localhost listener inside.
        let t = serve_once(
            listen_in(&ns, (IpAddr::from([127, 0, 0, 1]), 7778)),
            b"localhost inside",
        );
        let mut s = crate::netns::connect_tcp(&ns, 7778).await.unwrap();
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
            .await
            .unwrap();
        assert_eq!(buf, b"localhost inside");
        t.join().unwrap();

        cni.check(&a).await.unwrap();
        cni.del(&a).await.unwrap();
        assert!(!lease.exists());
        cni.del(&a).await.unwrap();
        // ADD again, then DEL after the namespace is gone: the IP is released.
        let res = cni.add(&a).await.unwrap();
        let lease = dir
            .path()
            .join("ipam")
            .join("rkube")
            .join(res.ips[0].to_string());
        assert!(lease.exists());
        crate::netns::remove(&ns).unwrap();
        assert!(!crate::netns::exists(&ns));
        crate::netns::remove(&ns).unwrap();
        cni.del(&a).await.unwrap();
        assert!(!lease.exists());
        cni.del(&a).await.unwrap();
        // No masquerade rule of this sandbox is left behind.
        let nat = std::process::Command::new("iptables")
            .args(["-w", "-t", "nat", "-S"])
            .output()
            .unwrap();
        let nat = String::from_utf8_lossy(&nat.stdout);
        assert!(!nat.contains("testsandbox1"), "{nat}");
    }

    #[tokio::test]
    async fn host_port_reaches_the_pod() {
        let dir = tempfile::tempdir().unwrap();
        let _cleanup = Cleanup("rkntest1", dir.path().join("ns"));
        let cni = real_network(dir.path(), "rkntest1", "10.250.1.0/24");
        let host_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server_ns = dir.path().join("ns").join("server");
        let client_ns = dir.path().join("ns").join("client");
        crate::netns::create(&server_ns).unwrap();
        crate::netns::create(&client_ns).unwrap();
        let mut server = attachment("hostportserver", server_ns.clone());
        server.port_mappings = vec![PortMapping {
            host_port,
            container_port: 8080,
            protocol: "tcp".into(),
            host_ip: String::new(),
        }];
        cni.add(&server).await.unwrap();
        let client = attachment("hostportclient", client_ns.clone());
        cni.add(&client).await.unwrap();
        let listener = listen_in(&server_ns, (IpAddr::from([0, 0, 0, 0]), 8080));
        // Another pod on the bridge reaches the hostPort on the node's address.
        let gw = crate::conf::gateway("10.250.1.0/24").unwrap();
        let t = serve_once(listener.try_clone().unwrap(), b"via hostPort");
        let s = crate::netns::run_in(&client_ns, move || {
            std::net::TcpStream::connect_timeout(&(gw, host_port).into(), Duration::from_secs(5))
        })
        .unwrap()
        .unwrap();
        assert_eq!(read_all(s), b"via hostPort");
        t.join().unwrap();
        // And so does the node itself on localhost (portmap's SNAT mode).
        let t = serve_once(listener.try_clone().unwrap(), b"via localhost");
        let s = std::net::TcpStream::connect_timeout(
            &(std::net::Ipv4Addr::LOCALHOST, host_port).into(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(read_all(s), b"via localhost");
        t.join().unwrap();
        // DEL removes the mapping: the port no longer answers.
        cni.del(&server).await.unwrap();
        let refused = crate::netns::run_in(&client_ns, move || {
            std::net::TcpStream::connect_timeout(&(gw, host_port).into(), Duration::from_secs(2))
        })
        .unwrap();
        assert!(refused.is_err());
        cni.del(&client).await.unwrap();
        crate::netns::remove(&server_ns).unwrap();
        crate::netns::remove(&client_ns).unwrap();
    }
}
