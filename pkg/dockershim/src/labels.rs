//! CRI metadata kept in Docker labels, so that the shim needs no state of
//! its own: a sandbox's whole `PodSandboxConfig` and a container's
//! metadata, sandbox, image, log path, labels and annotations are written
//! at creation and read back from `docker inspect`/`docker ps`.

use std::collections::HashMap;

use base64::Engine as _;
use rkube_cri::api as cri;

/// Marks every container the shim made; value `sandbox` or `container`.
pub const TYPE: &str = "io.rkube.cri.type";
/// Value of [`TYPE`] for a pause container.
pub const SANDBOX: &str = "sandbox";
/// Value of [`TYPE`] for an app container.
pub const CONTAINER: &str = "container";
/// The sandbox an app container belongs to.
pub const SANDBOX_ID: &str = "io.rkube.cri.sandbox-id";
/// A sandbox's `PodSandboxConfig` (protobuf, base64).
pub const SANDBOX_CONFIG: &str = "io.rkube.cri.sandbox-config";
/// The runtime handler a sandbox was created with.
pub const HANDLER: &str = "io.rkube.cri.runtime-handler";
/// A container's `ContainerConfig` without its env, mounts' contents or
/// devices (protobuf, base64): metadata, image, labels, annotations,
/// mounts and log path.
pub const CONTAINER_CONFIG: &str = "io.rkube.cri.container-config";
/// The full path of a container's CRI log file.
pub const LOG_PATH: &str = "io.rkube.cri.log-path";
/// Set on a sandbox once StopPodSandbox ran (it stays NotReady).
pub const STOPPED: &str = "io.rkube.cri.stopped";

fn encode<M: prost::Message>(m: &M) -> String {
    base64::engine::general_purpose::STANDARD.encode(m.encode_to_vec())
}

fn decode<M: prost::Message + Default>(s: Option<&String>) -> Option<M> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s?.as_bytes())
        .ok()?;
    M::decode(bytes.as_slice()).ok()
}

/// Labels of a pause container.
pub fn for_sandbox(config: &cri::PodSandboxConfig, handler: &str) -> HashMap<String, String> {
    HashMap::from([
        (TYPE.to_string(), SANDBOX.to_string()),
        (SANDBOX_CONFIG.to_string(), encode(config)),
        (HANDLER.to_string(), handler.to_string()),
    ])
}

/// Labels of an app container; env and devices are left out (secrets
/// must not show in `docker inspect` labels twice, and nothing reads them
/// back).
pub fn for_container(
    sandbox_id: &str,
    config: &cri::ContainerConfig,
    log_path: &str,
) -> HashMap<String, String> {
    let kept = cri::ContainerConfig {
        metadata: config.metadata.clone(),
        image: config.image.clone(),
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        mounts: config.mounts.clone(),
        log_path: config.log_path.clone(),
        ..Default::default()
    };
    HashMap::from([
        (TYPE.to_string(), CONTAINER.to_string()),
        (SANDBOX_ID.to_string(), sandbox_id.to_string()),
        (CONTAINER_CONFIG.to_string(), encode(&kept)),
        (LOG_PATH.to_string(), log_path.to_string()),
    ])
}

/// The sandbox config stored on a pause container.
pub fn sandbox_config(labels: &HashMap<String, String>) -> Option<cri::PodSandboxConfig> {
    decode(labels.get(SANDBOX_CONFIG))
}

/// The container config stored on an app container.
pub fn container_config(labels: &HashMap<String, String>) -> Option<cri::ContainerConfig> {
    decode(labels.get(CONTAINER_CONFIG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_and_container_round_trip() {
        let sb = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u-1".into(),
                attempt: 2,
            }),
            hostname: "web".into(),
            labels: HashMap::from([("app".into(), "web".into())]),
            ..Default::default()
        };
        let l = for_sandbox(&sb, "crun");
        assert_eq!(l[TYPE], SANDBOX);
        assert_eq!(l[HANDLER], "crun");
        assert_eq!(sandbox_config(&l), Some(sb));

        let c = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "main".into(),
                attempt: 1,
            }),
            envs: vec![cri::KeyValue {
                key: "PASSWORD".into(),
                value: "secret".into(),
            }],
            log_path: "main/1.log".into(),
            ..Default::default()
        };
        let l = for_container("sb1", &c, "/var/log/pods/x/main/1.log");
        assert_eq!(l[SANDBOX_ID], "sb1");
        let back = container_config(&l).unwrap();
        assert_eq!(back.metadata, c.metadata);
        assert!(back.envs.is_empty(), "env must not be kept in labels");
        assert_eq!(sandbox_config(&HashMap::new()), None);
    }
}
