//! The CNI network configuration list rkube writes for its pods.
//!
//! A conflist chains plugins: `bridge` creates the `rkube0` bridge (the
//! node's gateway for the pod subnet, with IP masquerade for traffic leaving
//! the subnet and hairpin mode so a pod can reach itself through a Service),
//! `host-local` hands out addresses from the pod subnet and remembers them
//! in a per-profile data directory (so two profiles never share leases),
//! `portmap` implements hostPort, and `firewall` accepts forwarded pod
//! traffic on hosts whose iptables FORWARD policy is DROP (Docker sets it).
//! The loopback interface is not in the list: runtimes set `lo` up
//! themselves (containerd's CRI plugin adds the `loopback` plugin on its own,
//! and [`loopback_conf`] gives the same network to a runtime that does not).
//!
//! CNI spec 1.0.0 is used: containerd 1.6 (libcni 1.1) and Debian 12's
//! containernetworking-plugins 1.1 both speak it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{Error, Result};

/// CNI spec version of the configuration written.
pub const CNI_VERSION: &str = "1.0.0";

/// Name of the network (also the conflist's `name`).
pub const NETWORK_NAME: &str = "rkube";

/// File name of the conflist in the conf directory.
pub const CONFLIST_FILE: &str = "10-rkube.conflist";

/// Default bridge device.
pub const DEFAULT_BRIDGE: &str = "rkube0";

/// Default pod subnet of the single node.
pub const DEFAULT_SUBNET: &str = "10.244.0.0/24";

/// Where Debian installs the plugins.
pub const DEFAULT_CNI_BIN_DIR: &str = "/usr/lib/cni";

/// Settings of the pod network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniOptions {
    /// Linux bridge the pods attach to.
    pub bridge: String,
    /// IPv4 CIDR the pods' addresses come from; its first address is the gateway.
    pub subnet: String,
    /// host-local's lease directory (keep it under the profile).
    pub ipam_data_dir: PathBuf,
    /// Directory of the plugin binaries.
    pub cni_bin_dir: PathBuf,
    /// MTU of the bridge and pod interfaces; `None` lets the plugin choose.
    pub mtu: Option<u32>,
    /// Whether to chain the `firewall` plugin (needed when FORWARD is DROP).
    pub firewall: bool,
}

impl Default for CniOptions {
    fn default() -> Self {
        Self {
            bridge: DEFAULT_BRIDGE.to_string(),
            subnet: DEFAULT_SUBNET.to_string(),
            ipam_data_dir: PathBuf::from("/var/lib/cni/networks"),
            cni_bin_dir: PathBuf::from(DEFAULT_CNI_BIN_DIR),
            mtu: None,
            firewall: true,
        }
    }
}

impl CniOptions {
    /// Defaults with the lease directory under `profile_dir/cni/networks`.
    pub fn for_profile(profile_dir: &Path) -> Self {
        Self {
            ipam_data_dir: profile_dir.join("cni").join("networks"),
            ..Self::default()
        }
    }
}

/// A CNI network configuration list (the `.conflist` format). Plugins are
/// kept as JSON objects: each plugin defines its own keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfigList {
    /// CNI spec version.
    pub cni_version: String,
    /// Network name.
    pub name: String,
    /// Plugin configurations in chain order.
    pub plugins: Vec<Value>,
}

/// Parses an IPv4 CIDR into (network address, prefix length).
pub fn parse_cidr(subnet: &str) -> Result<(Ipv4Addr, u8)> {
    let bad = |reason| Error::InvalidSubnet {
        subnet: subnet.to_string(),
        reason,
    };
    let (addr, len) = subnet
        .split_once('/')
        .ok_or_else(|| bad("no prefix length"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
    let len: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
    if !(8..=28).contains(&len) {
        return Err(bad("prefix length must be between 8 and 28"));
    }
    let mask = u32::MAX << (32 - len);
    if u32::from(addr) & !mask != 0 {
        return Err(bad("host bits are set"));
    }
    Ok((addr, len))
}

/// Checks a Linux interface name (IFNAMSIZ is 16 with the NUL).
fn validate_bridge(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidBridge(name.to_string()))
    }
}

/// The gateway (first host address) of `subnet`, which the bridge carries.
pub fn gateway(subnet: &str) -> Result<Ipv4Addr> {
    let (net, _) = parse_cidr(subnet)?;
    Ok(Ipv4Addr::from(u32::from(net) + 1))
}

/// Renders the conflist for `opts`.
pub fn conflist(opts: &CniOptions) -> Result<NetworkConfigList> {
    parse_cidr(&opts.subnet)?;
    validate_bridge(&opts.bridge)?;
    let mut bridge = json!({
        "type": "bridge",
        "bridge": opts.bridge,
        "isGateway": true,
        "ipMasq": true,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{ "subnet": opts.subnet }]],
            "routes": [{ "dst": "0.0.0.0/0" }],
            "dataDir": opts.ipam_data_dir,
        },
    });
    if let Some(mtu) = opts.mtu {
        bridge["mtu"] = json!(mtu);
    }
    let mut plugins = vec![
        bridge,
        json!({
            "type": "portmap",
            "capabilities": { "portMappings": true },
            "snat": true,
        }),
    ];
    if opts.firewall {
        plugins.push(json!({ "type": "firewall", "backend": "iptables" }));
    }
    Ok(NetworkConfigList {
        cni_version: CNI_VERSION.to_string(),
        name: NETWORK_NAME.to_string(),
        plugins,
    })
}

/// The loopback network, for runtimes that do not bring `lo` up themselves.
pub fn loopback_conf() -> Value {
    json!({ "cniVersion": CNI_VERSION, "name": "cni-loopback", "type": "loopback" })
}

/// Writes [`CONFLIST_FILE`] into `conf_dir` (created if needed) atomically
/// and returns its path. Only this file is touched.
pub fn write_conflist(conf_dir: &Path, opts: &CniOptions) -> Result<PathBuf> {
    let list = conflist(opts)?;
    std::fs::create_dir_all(conf_dir).map_err(Error::io("create directory", conf_dir))?;
    std::fs::create_dir_all(&opts.ipam_data_dir)
        .map_err(Error::io("create directory", &opts.ipam_data_dir))?;
    let path = conf_dir.join(CONFLIST_FILE);
    let tmp = conf_dir.join(format!(".{CONFLIST_FILE}.tmp"));
    let mut bytes = serde_json::to_vec_pretty(&list).expect("conflist serializes");
    bytes.push(b'\n');
    std::fs::write(&tmp, bytes).map_err(Error::io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(Error::io("write", &path))?;
    tracing::debug!(path = %path.display(), "wrote CNI conflist");
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bridge_portmap_firewall() {
        let opts = CniOptions {
            ipam_data_dir: "/p/cni/networks".into(),
            mtu: Some(1400),
            ..CniOptions::default()
        };
        let list = conflist(&opts).unwrap();
        let v = serde_json::to_value(&list).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["name"], "rkube");
        let p = &v["plugins"];
        assert_eq!(p[0]["type"], "bridge");
        assert_eq!(p[0]["bridge"], "rkube0");
        assert_eq!(p[0]["isGateway"], true);
        assert_eq!(p[0]["ipMasq"], true);
        assert_eq!(p[0]["hairpinMode"], true);
        assert_eq!(p[0]["mtu"], 1400);
        assert_eq!(p[0]["ipam"]["type"], "host-local");
        assert_eq!(p[0]["ipam"]["ranges"][0][0]["subnet"], "10.244.0.0/24");
        assert_eq!(p[0]["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(p[0]["ipam"]["dataDir"], "/p/cni/networks");
        assert_eq!(p[1]["type"], "portmap");
        assert_eq!(p[1]["capabilities"]["portMappings"], true);
        assert_eq!(p[1]["snat"], true);
        assert_eq!(p[2]["type"], "firewall");
        let no_fw = conflist(&CniOptions {
            firewall: false,
            ..opts
        })
        .unwrap();
        assert_eq!(no_fw.plugins.len(), 2);
        assert!(no_fw.plugins[0].get("mtu").is_some());
    }

    #[test]
    fn rejects_bad_subnets_and_bridges() {
        for bad in [
            "10.244.0.0",
            "10.244.0.1/24",
            "x/24",
            "10.0.0.0/30",
            "::/64",
        ] {
            let opts = CniOptions {
                subnet: bad.into(),
                ..CniOptions::default()
            };
            let err = conflist(&opts).unwrap_err().to_string();
            assert!(err.contains("IPv4 CIDR"), "{bad}: {err}");
        }
        for bad in ["", "a-very-long-bridge-name", "br 0"] {
            let opts = CniOptions {
                bridge: bad.into(),
                ..CniOptions::default()
            };
            assert!(matches!(conflist(&opts), Err(Error::InvalidBridge(_))));
        }
        assert_eq!(
            gateway("10.244.0.0/16").unwrap(),
            Ipv4Addr::new(10, 244, 0, 1)
        );
    }

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let opts = CniOptions::for_profile(&dir.path().join("profile"));
        let conf_dir = dir.path().join("net.d");
        let path = write_conflist(&conf_dir, &opts).unwrap();
        assert_eq!(path, conf_dir.join("10-rkube.conflist"));
        assert!(opts.ipam_data_dir.is_dir());
        let back: NetworkConfigList =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, conflist(&opts).unwrap());
        // Rewriting is idempotent and leaves no temp file behind.
        write_conflist(&conf_dir, &opts).unwrap();
        let names: Vec<_> = std::fs::read_dir(&conf_dir).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn loopback_is_a_single_plugin_conf() {
        let lo = loopback_conf();
        assert_eq!(lo["type"], "loopback");
        assert_eq!(lo["cniVersion"], CNI_VERSION);
    }
}
