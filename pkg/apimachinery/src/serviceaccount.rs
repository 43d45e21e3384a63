//! The service-account credentials every pod gets unless automounting is
//! off: where they are mounted, the volume's name and the token lifetime,
//! shared by the API server's ServiceAccount admission (which adds the
//! volume) and the node agent (which renders it).

/// Where the service-account volume is mounted in every container.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Name (prefix) of the service-account volume: admission adds
/// `kube-api-access-<suffix>`.
pub const VOLUME_NAME: &str = "kube-api-access";

/// Lifetime asked for the projected token (as upstream's admission).
pub const TOKEN_SECONDS: i64 = 3607;
