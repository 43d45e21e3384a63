//! Pod volumes on the node's disk, under
//! `<root>/pods/<pod-uid>/volumes/<plugin>/<name>` as kubelet lays them out:
//! emptyDir (a directory, or a tmpfs for medium Memory), hostPath (type
//! checked), and configMap, secret, downwardAPI and projected volumes whose
//! contents are rendered from the API and written with the
//! [`atomic_writer`] so updates reach running containers. Secret,
//! downwardAPI and projected volumes live on a tmpfs (they hold
//! credentials). Every pod also gets the `kube-api-access` projected volume
//! (a bound service-account token, `ca.crt`, `namespace`) unless
//! automounting is off. [`VolumeManager::mounts_for`] turns a container's
//! volumeMounts into CRI mounts, plus the service-account mount, the
//! kubelet-managed `/etc/hosts` and the termination-message file.

pub mod atomic_writer;
pub mod hostpath;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rkube_cri::api::{Mount, MountPropagation};

use crate::env::{ClusterObjects, EnvContext, EnvError, KubeObjects};
use atomic_writer::{AtomicWriter, FileProjection, Payload};

pub use rkube_apimachinery::serviceaccount::{
    MOUNT_PATH as SERVICE_ACCOUNT_MOUNT, TOKEN_SECONDS as API_ACCESS_TOKEN_SECONDS,
    VOLUME_NAME as API_ACCESS_VOLUME,
};

/// Why a pod's volumes could not be prepared or mounted.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The pod has no metadata.uid.
    #[error("pod has no uid")]
    NoUid,
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A non-optional ConfigMap does not exist.
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    /// A non-optional Secret does not exist.
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    /// An item names a key the ConfigMap lacks.
    #[error("configmap references non-existent config key: {0}")]
    MissingConfigMapKey(String),
    /// An item names a key the Secret lacks.
    #[error("secret references non-existent secret key: {0}")]
    MissingSecretKey(String),
    /// A hostPath is not of its declared type.
    #[error("hostPath type check failed: {} is not {what}", path.display())]
    HostPathType {
        /// The host path.
        path: PathBuf,
        /// The kind expected ("a directory", ...).
        what: String,
    },
    /// A subPath or item path is invalid or escapes its volume.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A volume type or option the node agent does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A persistentVolumeClaim volume whose claim is missing, unbound, or
    /// bound to a volume the node cannot mount (upstream's wording).
    #[error("error processing PVC {claim}: {reason}")]
    Claim {
        /// `namespace/name` of the claim.
        claim: String,
        /// Why it cannot be mounted yet.
        reason: String,
    },
    /// A volumeMount names a volume the pod does not have.
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    UnknownVolume {
        /// Volume name.
        volume: String,
        /// Container name.
        container: String,
    },
    /// A downward API value could not be computed.
    #[error(transparent)]
    Downward(#[from] EnvError),
    /// The API server failed (reading an object or issuing a token).
    #[error("{0}")]
    Api(#[source] Box<kube::Error>),
    /// Mounting or unmounting a tmpfs failed.
    #[error("{op} {path}: {source}")]
    Mount {
        /// "mounting tmpfs at" or "unmounting".
        op: &'static str,
        /// Mount point.
        path: PathBuf,
        /// Cause.
        #[source]
        source: nix::Error,
    },
    /// Setting up one volume failed (wraps the cause, upstream's wording).
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    SetUp {
        /// Volume name.
        volume: String,
        /// Cause.
        #[source]
        source: Box<VolumeError>,
    },
}

impl From<kube::Error> for VolumeError {
    fn from(e: kube::Error) -> Self {
        VolumeError::Api(Box::new(e))
    }
}

impl VolumeError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        VolumeError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
    fn setup(volume: &str, e: VolumeError) -> Self {
        VolumeError::SetUp {
            volume: volume.to_string(),
            source: Box::new(e),
        }
    }
}

/// Result alias.
pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// Where a pod volume lives on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSource {
    /// A host directory (or file, for hostPath) bind-mounted into containers.
    Dir {
        /// Host path.
        host_path: PathBuf,
        /// Whether every mount of it is read-only (configMap, secret, ...).
        read_only: bool,
    },
}

/// The prepared volumes of one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodVolumes {
    /// The pod's uid.
    pub pod_uid: String,
    /// Volume name → host location (includes [`API_ACCESS_VOLUME`] when automounted).
    pub dirs: BTreeMap<String, VolumeSource>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TokenKey {
    pod_uid: String,
    service_account: String,
    audience: String,
    expiration: i64,
}

#[derive(Clone, Debug)]
struct CachedToken {
    token: String,
    issued: SystemTime,
    expires: SystemTime,
}

impl CachedToken {
    /// Upstream rotates at 80% of the lifetime, or after 24 h.
    fn needs_refresh(&self, now: SystemTime) -> bool {
        let ttl = self.expires.duration_since(self.issued).unwrap_or_default();
        let age = now.duration_since(self.issued).unwrap_or_default();
        age >= ttl.mul_f64(0.8) || age >= Duration::from_secs(24 * 3600)
    }
}

/// Prepares, refreshes and removes pod volumes (see the module doc).
pub struct VolumeManager {
    root: PathBuf,
    objects: Arc<dyn ClusterObjects>,
    ca_pem: String,
    cluster_domain: String,
    memory_backed: bool,
    node_allocatable: Mutex<BTreeMap<String, Quantity>>,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    /// Reads PersistentVolumeClaims and PersistentVolumes (None in tests).
    client: Option<kube::Client>,
}

impl std::fmt::Debug for VolumeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeManager")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn plugin_dir(plugin: &str) -> String {
    format!("kubernetes.io~{plugin}")
}

impl VolumeManager {
    /// A manager keeping pod directories under `root/pods`, reading objects
    /// and issuing tokens through `client`; `cluster_ca_pem` becomes ca.crt.
    pub fn new(root: PathBuf, client: kube::Client, cluster_ca_pem: String) -> Self {
        let mut m = Self::with_objects(root, Arc::new(KubeObjects(client.clone())), cluster_ca_pem);
        m.client = Some(client);
        m
    }

    pub(crate) fn with_objects(
        root: PathBuf,
        objects: Arc<dyn ClusterObjects>,
        cluster_ca_pem: String,
    ) -> Self {
        VolumeManager {
            root,
            objects,
            ca_pem: cluster_ca_pem,
            cluster_domain: "cluster.local".into(),
            memory_backed: nix::unistd::geteuid().is_root(),
            node_allocatable: Mutex::new(BTreeMap::new()),
            tokens: Mutex::new(HashMap::new()),
            client: None,
        }
    }

    /// Sets the cluster domain used in /etc/hosts (default cluster.local).
    pub fn with_cluster_domain(mut self, domain: impl Into<String>) -> Self {
        self.cluster_domain = domain.into();
        self
    }

    /// Whether secret, downwardAPI and projected volumes go on a tmpfs
    /// (default: when running as root).
    pub fn with_memory_backed_secrets(mut self, on: bool) -> Self {
        self.memory_backed = on;
        self
    }

    /// The node allocatable used for downward API limits a container does
    /// not set (default: the machine's cpus and memory).
    pub fn set_node_allocatable(&self, alloc: BTreeMap<String, Quantity>) {
        *self
            .node_allocatable
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = alloc;
    }

    /// `<root>/pods/<uid>`.
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.root.join("pods").join(pod_uid)
    }

    fn volume_dir(&self, pod_uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir(pod_uid)
            .join("volumes")
            .join(plugin_dir(plugin))
            .join(name)
    }

    /// Prepares every volume of the pod (see the module doc).
    pub async fn setup(&self, pod: &Pod) -> Result<PodVolumes> {
        let uid = pod_uid(pod)?;
        let pod_dir = self.pod_dir(&uid);
        mkdir(&pod_dir.join("volumes"), 0o750)?;
        let mut out = PodVolumes {
            pod_uid: uid.clone(),
            dirs: BTreeMap::new(),
        };
        let fs_group = fs_group(pod);
        for vol in pod_volumes(pod) {
            let src = self
                .setup_volume(pod, &uid, vol, fs_group)
                .await
                .map_err(|e| VolumeError::setup(&vol.name, e))?;
            out.dirs.insert(vol.name.clone(), src);
        }
        if !has_user_api_access_volume(pod) && self.automount(pod).await? {
            let dir = self.volume_dir(&uid, "projected", API_ACCESS_VOLUME);
            self.write_rendered(&dir, self.api_access_payload(pod).await, fs_group, true)
                .map_err(|e| VolumeError::setup(API_ACCESS_VOLUME, e))?;
            out.dirs.insert(
                API_ACCESS_VOLUME.into(),
                VolumeSource::Dir {
                    host_path: dir,
                    read_only: true,
                },
            );
        }
        Ok(out)
    }

    async fn setup_volume(
        &self,
        pod: &Pod,
        uid: &str,
        vol: &Volume,
        fs_group: Option<u32>,
    ) -> Result<VolumeSource> {
        if let Some(ed) = &vol.empty_dir {
            let dir = self.volume_dir(uid, "empty-dir", &vol.name);
            mkdir(&dir, 0o777)?;
            if ed.medium.as_deref() == Some("Memory") {
                let size = match &ed.size_limit {
                    Some(q) => Some(crate::env::quantity(q)?.value()),
                    None => None,
                };
                mount_tmpfs(&dir, size)?;
                set_mode(&dir, 0o777)?;
            }
            if let Some(gid) = fs_group {
                chgrp(&dir, gid)?;
                set_mode(&dir, 0o2777)?;
            }
            return Ok(VolumeSource::Dir {
                host_path: dir,
                read_only: false,
            });
        }
        if let Some(hp) = &vol.host_path {
            let path = PathBuf::from(&hp.path);
            hostpath::check_host_path(&path, hp.type_.as_deref().unwrap_or(""))?;
            return Ok(VolumeSource::Dir {
                host_path: path,
                read_only: false,
            });
        }
        if let Some(pvc) = &vol.persistent_volume_claim {
            let path = self.claim_path(namespace(pod), &pvc.claim_name).await?;
            return Ok(VolumeSource::Dir {
                host_path: path,
                read_only: pvc.read_only.unwrap_or(false),
            });
        }
        let Some((plugin, memory)) = rendered_plugin(vol) else {
            return Err(VolumeError::Unsupported(format!(
                "volume {:?}: only emptyDir, hostPath, persistentVolumeClaim, configMap, secret, downwardAPI and projected volumes are supported",
                vol.name
            )));
        };
        let dir = self.volume_dir(uid, plugin, &vol.name);
        self.write_rendered(&dir, self.render(pod, vol).await, fs_group, memory)?;
        Ok(VolumeSource::Dir {
            host_path: dir,
            read_only: true,
        })
    }

    /// The host directory of the hostPath or local PersistentVolume bound
    /// to claim `ns/name`; an error (retried by the pod worker) while the
    /// claim is missing or unbound.
    async fn claim_path(&self, ns: &str, name: &str) -> Result<PathBuf> {
        use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
        let claim = format!("{ns}/{name}");
        let err = |reason: String| VolumeError::Claim {
            claim: claim.clone(),
            reason,
        };
        let Some(client) = &self.client else {
            return Err(err("no API client".into()));
        };
        let pvc = kube::Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?
            .ok_or_else(|| {
                err(format!(
                    "failed to fetch PVC from API server: persistentvolumeclaims \"{name}\" not found"
                ))
            })?;
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(err("PVC is being deleted".into()));
        }
        let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
        let pv_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .filter(|v| !v.is_empty());
        let (Some("Bound"), Some(pv_name)) = (phase, pv_name) else {
            return Err(err("PVC is not bound".into()));
        };
        let pv = kube::Api::<PersistentVolume>::all(client.clone())
            .get_opt(pv_name)
            .await?
            .ok_or_else(|| {
                err(format!(
                    "failed to fetch PV {pv_name} from API server: persistentvolumes \"{pv_name}\" not found"
                ))
            })?;
        let spec = pv.spec.unwrap_or_default();
        if let Some(hp) = spec.host_path {
            let path = PathBuf::from(&hp.path);
            let ty = hp.type_.as_deref().unwrap_or("");
            // Provisioned and static hostPath volumes are directories;
            // create a missing one as DirectoryOrCreate would.
            let ty = if ty.is_empty() && !path.exists() {
                "DirectoryOrCreate"
            } else {
                ty
            };
            hostpath::check_host_path(&path, ty)?;
            return Ok(path);
        }
        if let Some(local) = spec.local {
            let path = PathBuf::from(&local.path);
            hostpath::check_host_path(&path, "Directory")?;
            return Ok(path);
        }
        Err(VolumeError::Unsupported(format!(
            "persistent volume {pv_name:?}: only hostPath and local volumes are supported"
        )))
    }

    fn write_rendered(
        &self,
        dir: &Path,
        payload: Result<Payload>,
        fs_group: Option<u32>,
        memory: bool,
    ) -> Result<()> {
        let payload = payload?;
        mkdir(dir, 0o755)?;
        if memory && self.memory_backed {
            mount_tmpfs(dir, None)?;
            set_mode(dir, 0o755)?;
        }
        AtomicWriter::new(dir, fs_group)
            .write(&payload)
            .map_err(|e| VolumeError::io("writing volume", dir, e))?;
        Ok(())
    }

    /// Whether the service-account token is mounted: the pod's
    /// automountServiceAccountToken, else the ServiceAccount's, else yes.
    async fn automount(&self, pod: &Pod) -> Result<bool> {
        let spec = pod.spec.as_ref();
        if let Some(v) = spec.and_then(|s| s.automount_service_account_token) {
            return Ok(v);
        }
        let ns = namespace(pod);
        let sa = service_account(pod);
        let sa = self.objects.service_account(ns, sa).await?;
        Ok(sa
            .and_then(|s| s.automount_service_account_token)
            .unwrap_or(true))
    }

    fn downward_ctx(&self, pod: &Pod) -> EnvContext {
        let status = pod.status.as_ref();
        EnvContext {
            node_allocatable: self
                .node_allocatable
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            pod_ip: status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
            host_ip: status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
            ..Default::default()
        }
    }

    /// The contents of a configMap, secret, downwardAPI or projected volume.
    async fn render(&self, pod: &Pod, vol: &Volume) -> Result<Payload> {
        let ns = namespace(pod);
        let mut out = Payload::new();
        if let Some(c) = &vol.config_map {
            let cm = self.objects.config_map(ns, &c.name).await?;
            config_map_payload(
                &mut out,
                cm.as_ref(),
                &c.name,
                c.items.as_deref(),
                c.optional == Some(true),
                mode(c.default_mode),
            )?;
        } else if let Some(s) = &vol.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let sec = self.objects.secret(ns, &name).await?;
            secret_payload(
                &mut out,
                sec.as_ref(),
                &name,
                s.items.as_deref(),
                s.optional == Some(true),
                mode(s.default_mode),
            )?;
        } else if let Some(d) = &vol.downward_api {
            downward_payload(
                &mut out,
                pod,
                d.items.as_deref().unwrap_or(&[]),
                mode(d.default_mode),
                &self.downward_ctx(pod),
            )?;
        } else if let Some(p) = &vol.projected {
            let def = mode(p.default_mode);
            for src in p.sources.iter().flatten() {
                if let Some(c) = &src.config_map {
                    let cm = self.objects.config_map(ns, &c.name).await?;
                    config_map_payload(
                        &mut out,
                        cm.as_ref(),
                        &c.name,
                        c.items.as_deref(),
                        c.optional == Some(true),
                        def,
                    )?;
                }
                if let Some(s) = &src.secret {
                    let sec = self.objects.secret(ns, &s.name).await?;
                    secret_payload(
                        &mut out,
                        sec.as_ref(),
                        &s.name,
                        s.items.as_deref(),
                        s.optional == Some(true),
                        def,
                    )?;
                }
                if let Some(d) = &src.downward_api {
                    downward_payload(
                        &mut out,
                        pod,
                        d.items.as_deref().unwrap_or(&[]),
                        def,
                        &self.downward_ctx(pod),
                    )?;
                }
                if let Some(t) = &src.service_account_token {
                    let token = self
                        .token(
                            pod,
                            t.audience.as_deref().unwrap_or(""),
                            t.expiration_seconds.unwrap_or(3600),
                        )
                        .await?;
                    out.insert(
                        t.path.clone(),
                        FileProjection {
                            data: token.into_bytes(),
                            mode: def,
                        },
                    );
                }
                if src.cluster_trust_bundle.is_some() {
                    return Err(VolumeError::Unsupported(
                        "clusterTrustBundle projections".into(),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// token, ca.crt and namespace of the kube-api-access volume.
    async fn api_access_payload(&self, pod: &Pod) -> Result<Payload> {
        let token = self.token(pod, "", API_ACCESS_TOKEN_SECONDS).await?;
        let f = |s: &str| FileProjection {
            data: s.as_bytes().to_vec(),
            mode: 0o644,
        };
        Ok([
            ("token".to_string(), f(&token)),
            ("ca.crt".to_string(), f(&self.ca_pem)),
            ("namespace".to_string(), f(namespace(pod))),
        ]
        .into())
    }

    /// A bound token for the pod's service account, from the cache while fresh.
    async fn token(&self, pod: &Pod, audience: &str, expiration: i64) -> Result<String> {
        let key = TokenKey {
            pod_uid: pod_uid(pod)?,
            service_account: service_account(pod).to_string(),
            audience: audience.to_string(),
            expiration,
        };
        let now = SystemTime::now();
        if let Some(t) = self.lock_tokens().get(&key) {
            if !t.needs_refresh(now) {
                return Ok(t.token.clone());
            }
        }
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: if audience.is_empty() {
                    Vec::new()
                } else {
                    vec![audience.to_string()]
                },
                expiration_seconds: Some(expiration),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let resp = self
            .objects
            .token(namespace(pod), &key.service_account, req)
            .await?;
        let Some(status) = resp.status else {
            return Err(VolumeError::Unsupported(
                "token request returned no status".into(),
            ));
        };
        let expires = SystemTime::from(status.expiration_timestamp.0);
        let expires = if expires > now {
            expires
        } else {
            now + Duration::from_secs(expiration.max(0) as u64)
        };
        self.lock_tokens().insert(
            key,
            CachedToken {
                token: status.token.clone(),
                issued: now,
                expires,
            },
        );
        Ok(status.token)
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, CachedToken>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-renders configMap, secret, downwardAPI and projected volumes (and
    /// kube-api-access), rotating tokens at 80% of their lifetime. Every
    /// volume is tried; the first error is returned.
    pub async fn refresh(&self, pod: &Pod, vols: &PodVolumes) -> Result<()> {
        let uid = &vols.pod_uid;
        let fs_group = fs_group(pod);
        let mut first_err = None;
        for vol in pod_volumes(pod) {
            let Some((plugin, memory)) = rendered_plugin(vol) else {
                continue;
            };
            if !vols.dirs.contains_key(&vol.name) {
                continue;
            }
            let dir = self.volume_dir(uid, plugin, &vol.name);
            if let Err(e) = self.write_rendered(&dir, self.render(pod, vol).await, fs_group, memory)
            {
                first_err.get_or_insert(VolumeError::setup(&vol.name, e));
            }
        }
        if vols.dirs.contains_key(API_ACCESS_VOLUME) && !has_user_api_access_volume(pod) {
            let dir = self.volume_dir(uid, "projected", API_ACCESS_VOLUME);
            if let Err(e) =
                self.write_rendered(&dir, self.api_access_payload(pod).await, fs_group, true)
            {
                first_err.get_or_insert(VolumeError::setup(API_ACCESS_VOLUME, e));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Unmounts the pod's tmpfs volumes and removes `<root>/pods/<uid>`.
    pub async fn teardown(&self, pod_uid: &str) -> Result<()> {
        if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid.starts_with('.') {
            return Err(VolumeError::InvalidPath {
                path: pod_uid.into(),
                reason: "not a pod uid".into(),
            });
        }
        self.lock_tokens().retain(|k, _| k.pod_uid != pod_uid);
        let dir = self.pod_dir(pod_uid);
        if !dir.exists() {
            return Ok(());
        }
        let mut mounts: Vec<PathBuf> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for m in mounts {
            nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH).map_err(|source| {
                VolumeError::Mount {
                    op: "unmounting",
                    path: m.clone(),
                    source,
                }
            })?;
        }
        fs::remove_dir_all(&dir).map_err(|e| VolumeError::io("removing", &dir, e))
    }

    /// Writes the kubelet-managed hosts file `<pod dir>/etc-hosts` (localhost
    /// entries, the pod's IP with its hostname and FQDN, hostAliases); for
    /// hostNetwork pods the node's /etc/hosts plus hostAliases.
    pub fn etc_hosts(&self, pod: &Pod, pod_ip: &str) -> Result<PathBuf> {
        let uid = pod_uid(pod)?;
        let dir = self.pod_dir(&uid);
        mkdir(&dir, 0o750)?;
        let path = dir.join("etc-hosts");
        let content = hosts_file(pod, pod_ip, &self.cluster_domain);
        fs::write(&path, content).map_err(|e| VolumeError::io("writing", &path, e))?;
        set_mode(&path, 0o644)?;
        Ok(path)
    }

    /// Creates (empty) the termination-message file of one container run:
    /// `<pod dir>/containers/<name>/<restart count>`, world-writable so
    /// non-root containers can write it.
    pub fn termination_log(
        &self,
        pod_uid: &str,
        container: &str,
        restart_count: i32,
    ) -> Result<PathBuf> {
        let dir = self.pod_dir(pod_uid).join("containers").join(container);
        fs::create_dir_all(&dir).map_err(|e| VolumeError::io("creating", &dir, e))?;
        let path = dir.join(restart_count.to_string());
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(&path)
            .map_err(|e| VolumeError::io("creating", &path, e))?;
        set_mode(&path, 0o666)?;
        Ok(path)
    }

    /// The CRI mounts of one container: its volumeMounts (subPath,
    /// subPathExpr, readOnly, mountPropagation, recursiveReadOnly), the
    /// service-account volume, `/etc/hosts` (not for hostNetwork pods) and
    /// the termination-message file (skipped when `termination_log` is empty).
    pub fn mounts_for(
        &self,
        pod: &Pod,
        vols: &PodVolumes,
        container: &Container,
        termination_log: &Path,
    ) -> Result<Vec<Mount>> {
        let spec = pod.spec.as_ref();
        let privileged = container
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false);
        let mut out = Vec::new();
        let mounted = |path: &str| {
            let p = Path::new(path);
            container
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| Path::new(&m.mount_path) == p)
        };
        for vm in container.volume_mounts.iter().flatten() {
            let Some(VolumeSource::Dir {
                host_path,
                read_only,
            }) = vols.dirs.get(&vm.name)
            else {
                return Err(VolumeError::UnknownVolume {
                    volume: vm.name.clone(),
                    container: container.name.clone(),
                });
            };
            let sub = match (&vm.sub_path, &vm.sub_path_expr) {
                (Some(s), _) if !s.is_empty() => Some(s.clone()),
                (_, Some(e)) if !e.is_empty() => {
                    Some(crate::env::expand_static(std::slice::from_ref(e), container).remove(0))
                }
                _ => None,
            };
            let host = match sub {
                Some(s) => subpath(host_path, &s, *read_only)?,
                None => host_path.clone(),
            };
            let propagation = match vm.mount_propagation.as_deref() {
                None | Some("None") | Some("") => MountPropagation::PropagationPrivate,
                Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") if privileged => MountPropagation::PropagationBidirectional,
                Some("Bidirectional") => return Err(VolumeError::Unsupported(
                    "Bidirectional mount propagation is available only to privileged containers"
                        .into(),
                )),
                Some(o) => {
                    return Err(VolumeError::Unsupported(format!(
                        "invalid mount propagation mode {o:?}"
                    )))
                }
            };
            let readonly = vm.read_only.unwrap_or(false) || *read_only;
            let rro = readonly
                && vm.recursive_read_only.as_deref() == Some("Enabled")
                && propagation == MountPropagation::PropagationPrivate;
            out.push(Mount {
                container_path: vm.mount_path.clone(),
                host_path: host.to_string_lossy().into_owned(),
                readonly,
                propagation: propagation as i32,
                recursive_read_only: rro,
                ..Default::default()
            });
        }
        if let Some(VolumeSource::Dir { host_path, .. }) = vols.dirs.get(API_ACCESS_VOLUME) {
            if !has_user_api_access_volume(pod) && !mounted(SERVICE_ACCOUNT_MOUNT) {
                out.push(Mount {
                    container_path: SERVICE_ACCOUNT_MOUNT.into(),
                    host_path: host_path.to_string_lossy().into_owned(),
                    readonly: true,
                    ..Default::default()
                });
            }
        }
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        let hosts = self.pod_dir(&vols.pod_uid).join("etc-hosts");
        if !host_network && !mounted("/etc/hosts") && hosts.is_file() {
            out.push(Mount {
                container_path: "/etc/hosts".into(),
                host_path: hosts.to_string_lossy().into_owned(),
                ..Default::default()
            });
        }
        if !termination_log.as_os_str().is_empty() {
            let target = container
                .termination_message_path
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or("/dev/termination-log");
            if !mounted(target) {
                if !termination_log.exists() {
                    if let Some(parent) = termination_log.parent() {
                        fs::create_dir_all(parent)
                            .map_err(|e| VolumeError::io("creating", parent, e))?;
                    }
                    fs::write(termination_log, b"")
                        .map_err(|e| VolumeError::io("creating", termination_log, e))?;
                    set_mode(termination_log, 0o666)?;
                }
                out.push(Mount {
                    container_path: target.into(),
                    host_path: termination_log.to_string_lossy().into_owned(),
                    ..Default::default()
                });
            }
        }
        Ok(out)
    }
}

fn pod_uid(pod: &Pod) -> Result<String> {
    pod.metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty() && !u.contains('/') && !u.starts_with('.'))
        .ok_or(VolumeError::NoUid)
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn service_account(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .fs_group
        .and_then(|g| u32::try_from(g).ok())
}

fn pod_volumes(pod: &Pod) -> impl Iterator<Item = &Volume> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
}

fn has_user_api_access_volume(pod: &Pod) -> bool {
    // The API server's ServiceAccount admission adds `kube-api-access-*`.
    pod_volumes(pod).any(|v| {
        v.name == API_ACCESS_VOLUME || v.name.starts_with(&format!("{API_ACCESS_VOLUME}-"))
    })
}

/// The plugin directory and memory backing of the rendered volume types.
fn rendered_plugin(vol: &Volume) -> Option<(&'static str, bool)> {
    if vol.config_map.is_some() {
        Some(("configmap", false))
    } else if vol.secret.is_some() {
        Some(("secret", true))
    } else if vol.downward_api.is_some() {
        Some(("downward-api", true))
    } else if vol.projected.is_some() {
        Some(("projected", true))
    } else {
        None
    }
}

fn mode(m: Option<i32>) -> u32 {
    m.map(|m| (m as u32) & 0o7777).unwrap_or(0o644)
}

fn mkdir(dir: &Path, mode: u32) -> Result<()> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| VolumeError::io("creating", dir, e))?;
        set_mode(dir, mode)?;
    }
    Ok(())
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| VolumeError::io("chmod", p, e))
}

fn chgrp(p: &Path, gid: u32) -> Result<()> {
    nix::unistd::chown(p, None, Some(nix::unistd::Gid::from_raw(gid)))
        .map_err(|e| VolumeError::io("chown", p, io::Error::from(e)))
}

/// The mount points of this mount namespace.
fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or(""), 8)
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mount_tmpfs(dir: &Path, size: Option<i128>) -> Result<()> {
    let canon = fs::canonicalize(dir).map_err(|e| VolumeError::io("resolving", dir, e))?;
    if mount_points().contains(&canon) {
        return Ok(());
    }
    let opts = size.filter(|s| *s > 0).map(|s| format!("size={s}"));
    nix::mount::mount(
        Some("tmpfs"),
        &canon,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        opts.as_deref(),
    )
    .map_err(|source| VolumeError::Mount {
        op: "mounting tmpfs at",
        path: canon,
        source,
    })
}

/// The host path of a subPath: relative, no `..`, created as a directory
/// when missing (writable volumes only), and not escaping the volume
/// through symlinks.
fn subpath(volume: &Path, sub: &str, read_only_volume: bool) -> Result<PathBuf> {
    let bad = |reason: &str| VolumeError::InvalidPath {
        path: sub.to_string(),
        reason: reason.to_string(),
    };
    let p = Path::new(sub);
    if p.is_absolute() {
        return Err(bad("must be a relative path"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(bad("must not contain '..'"));
    }
    let full = volume.join(p);
    if fs::symlink_metadata(&full).is_err() {
        if read_only_volume {
            return Err(bad("does not exist in the volume"));
        }
        fs::create_dir_all(&full).map_err(|e| VolumeError::io("creating", &full, e))?;
        set_mode(&full, 0o755)?;
    }
    let base = fs::canonicalize(volume).map_err(|e| VolumeError::io("resolving", volume, e))?;
    let real = fs::canonicalize(&full).map_err(|e| VolumeError::io("resolving", &full, e))?;
    if !real.starts_with(&base) {
        return Err(bad("escapes the volume"));
    }
    Ok(real)
}

/// Adds configMap contents (all keys, or `items`) to a payload.
fn config_map_payload(
    out: &mut Payload,
    cm: Option<&ConfigMap>,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    default_mode: u32,
) -> Result<()> {
    let Some(cm) = cm else {
        return if optional {
            Ok(())
        } else {
            Err(VolumeError::ConfigMapNotFound(name.into()))
        };
    };
    let mut data: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        data.insert(k, v.as_bytes().to_vec());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k, v.0.clone());
    }
    keys_payload(out, &data, items, optional, default_mode, |k| {
        VolumeError::MissingConfigMapKey(k.into())
    })
}

/// Adds Secret contents (all keys, or `items`) to a payload.
fn secret_payload(
    out: &mut Payload,
    s: Option<&Secret>,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    default_mode: u32,
) -> Result<()> {
    let Some(s) = s else {
        return if optional {
            Ok(())
        } else {
            Err(VolumeError::SecretNotFound(name.into()))
        };
    };
    let mut data: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (k, v) in s.data.iter().flatten() {
        data.insert(k, v.0.clone());
    }
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k, v.as_bytes().to_vec());
    }
    keys_payload(out, &data, items, optional, default_mode, |k| {
        VolumeError::MissingSecretKey(k.into())
    })
}

fn keys_payload(
    out: &mut Payload,
    data: &BTreeMap<&str, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    default_mode: u32,
    missing: impl Fn(&str) -> VolumeError,
) -> Result<()> {
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(
                    k.to_string(),
                    FileProjection {
                        data: v.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for it in items {
                let Some(v) = data.get(it.key.as_str()) else {
                    if optional {
                        continue;
                    }
                    return Err(missing(&it.key));
                };
                check_item_path(&it.path)?;
                out.insert(
                    it.path.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: it.mode.map(|m| (m as u32) & 0o7777).unwrap_or(default_mode),
                    },
                );
            }
        }
    }
    Ok(())
}

fn check_item_path(p: &str) -> Result<()> {
    atomic_writer::validate_path(p).map_err(|reason| VolumeError::InvalidPath {
        path: p.into(),
        reason,
    })
}

/// Adds downward API items to a payload.
fn downward_payload(
    out: &mut Payload,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    ctx: &EnvContext,
) -> Result<()> {
    for it in items {
        check_item_path(&it.path)?;
        let value = if let Some(f) = &it.field_ref {
            crate::env::volume_field_value(pod, f, ctx)?
        } else if let Some(r) = &it.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or("");
            let spec = pod.spec.as_ref();
            let c = spec
                .into_iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| c.name == name)
                .ok_or_else(|| EnvError::Container(name.to_string()))?;
            crate::env::resource_field_value(c, r, &ctx.node_allocatable)?
        } else {
            String::new()
        };
        out.insert(
            it.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: it.mode.map(|m| (m as u32) & 0o7777).unwrap_or(default_mode),
            },
        );
    }
    Ok(())
}

/// The managed /etc/hosts content.
fn hosts_file(pod: &Pod, pod_ip: &str, cluster_domain: &str) -> String {
    let spec = pod.spec.as_ref();
    let mut s = String::new();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        s.push_str("# Kubernetes-managed hosts file (host network).\n");
        s.push_str(&fs::read_to_string("/etc/hosts").unwrap_or_default());
        if !s.ends_with('\n') {
            s.push('\n');
        }
    } else {
        s.push_str("# Kubernetes-managed hosts file.\n");
        s.push_str("127.0.0.1\tlocalhost\n");
        s.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
        s.push_str("fe00::0\tip6-localnet\n");
        s.push_str("fe00::0\tip6-mcastprefix\n");
        s.push_str("fe00::1\tip6-allnodes\n");
        s.push_str("fe00::2\tip6-allrouters\n");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let mut hostname = spec
            .and_then(|s| s.hostname.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| name.to_string());
        if hostname.len() > 63 {
            hostname.truncate(63);
            while hostname.ends_with(['-', '.']) {
                hostname.pop();
            }
        }
        let sub = spec.and_then(|s| s.subdomain.as_deref()).unwrap_or("");
        if !pod_ip.is_empty() {
            if sub.is_empty() {
                s.push_str(&format!("{pod_ip}\t{hostname}\n"));
            } else {
                let ns = namespace(pod);
                s.push_str(&format!(
                    "{pod_ip}\t{hostname}.{sub}.{ns}.svc.{cluster_domain}\t{hostname}\n"
                ));
            }
        }
    }
    let aliases = spec.and_then(|s| s.host_aliases.as_ref());
    if let Some(aliases) = aliases.filter(|a| !a.is_empty()) {
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.clone().unwrap_or_default().join("\t");
            s.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::env::tests::FakeObjects;
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, DownwardAPIVolumeSource, EmptyDirVolumeSource, HostAlias,
        HostPathVolumeSource, ObjectFieldSelector, PodSecurityContext, PodSpec,
        ProjectedVolumeSource, SecretVolumeSource, ServiceAccount, ServiceAccountTokenProjection,
        VolumeMount, VolumeProjection,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A temporary directory removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "rkube-kubelet-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn pod(volumes: Vec<Volume>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("ns1".into()),
                uid: Some("uid-1".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                volumes: Some(volumes),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn manager(tmp: &TempDir, objs: FakeObjects) -> VolumeManager {
        manager_arc(tmp, Arc::new(objs))
    }

    fn manager_arc(tmp: &TempDir, objs: Arc<FakeObjects>) -> VolumeManager {
        VolumeManager::with_objects(tmp.path().to_path_buf(), objs, "CA PEM".into())
            .with_memory_backed_secrets(false)
    }

    fn vol(name: &str) -> Volume {
        Volume {
            name: name.into(),
            ..Default::default()
        }
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn config_map_secret_items_and_modes() {
        let tmp = TempDir::new();
        let objs = Arc::new(
            FakeObjects::default()
                .cm("cfg", &[("a", "1"), ("b", "2")])
                .secret("sec", &[("user", "admin"), ("pw", "hunter2")]),
        );
        let mut cm = vol("cfg");
        cm.config_map = Some(ConfigMapVolumeSource {
            name: "cfg".into(),
            default_mode: Some(0o600),
            ..Default::default()
        });
        let mut sec = vol("sec");
        sec.secret = Some(SecretVolumeSource {
            secret_name: Some("sec".into()),
            items: Some(vec![KeyToPath {
                key: "pw".into(),
                path: "creds/password".into(),
                mode: Some(0o400),
            }]),
            ..Default::default()
        });
        let mut missing = vol("opt");
        missing.config_map = Some(ConfigMapVolumeSource {
            name: "nope".into(),
            optional: Some(true),
            ..Default::default()
        });
        let p = pod(vec![cm, sec, missing]);
        let vm = manager_arc(&tmp, objs.clone());
        let vols = vm.setup(&p).await.unwrap();
        let uid_dir = tmp.path().join("pods/uid-1/volumes");
        let cm_dir = uid_dir.join("kubernetes.io~configmap/cfg");
        assert_eq!(
            vols.dirs["cfg"],
            VolumeSource::Dir {
                host_path: cm_dir.clone(),
                read_only: true
            }
        );
        assert_eq!(read(&cm_dir.join("a")), "1");
        assert_eq!(mode_of(&cm_dir.join("a")), 0o600);
        let sec_dir = uid_dir.join("kubernetes.io~secret/sec");
        assert_eq!(read(&sec_dir.join("creds/password")), "hunter2");
        assert_eq!(mode_of(&sec_dir.join("creds/password")), 0o400);
        assert!(!sec_dir.join("user").exists());
        assert!(uid_dir.join("kubernetes.io~configmap/opt").is_dir());
        // Service account: token, ca.crt, namespace.
        let sa = uid_dir.join("kubernetes.io~projected/kube-api-access");
        assert_eq!(read(&sa.join("token")), "token-1");
        assert_eq!(read(&sa.join("ca.crt")), "CA PEM");
        assert_eq!(read(&sa.join("namespace")), "ns1");

        // An update is visible through the same path; the token is cached.
        objs.cms
            .lock()
            .unwrap()
            .get_mut("cfg")
            .unwrap()
            .data
            .as_mut()
            .unwrap()
            .insert("a".into(), "changed".into());
        vm.refresh(&p, &vols).await.unwrap();
        assert_eq!(read(&cm_dir.join("a")), "changed");
        assert_eq!(read(&sa.join("token")), "token-1");

        vm.teardown("uid-1").await.unwrap();
        assert!(!tmp.path().join("pods/uid-1").exists());
    }

    #[tokio::test]
    async fn missing_objects_and_keys() {
        let tmp = TempDir::new();
        let objs = FakeObjects::default().cm("cfg", &[("a", "1")]);
        let vm = manager(&tmp, objs);
        let mut cm = vol("v");
        cm.config_map = Some(ConfigMapVolumeSource {
            name: "gone".into(),
            ..Default::default()
        });
        let e = vm.setup(&pod(vec![cm])).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "MountVolume.SetUp failed for volume \"v\" : configmap \"gone\" not found"
        );
        let mut cm = vol("v");
        cm.config_map = Some(ConfigMapVolumeSource {
            name: "cfg".into(),
            items: Some(vec![KeyToPath {
                key: "zz".into(),
                path: "zz".into(),
                mode: None,
            }]),
            ..Default::default()
        });
        let e = vm.setup(&pod(vec![cm])).await.unwrap_err();
        assert!(e
            .to_string()
            .ends_with("configmap references non-existent config key: zz"));
        let mut s = vol("s");
        s.secret = Some(SecretVolumeSource {
            secret_name: Some("nope".into()),
            ..Default::default()
        });
        let e = vm.setup(&pod(vec![s])).await.unwrap_err();
        assert!(e.to_string().ends_with("secret \"nope\" not found"));
    }

    #[tokio::test]
    async fn downward_projected_and_automount_off() {
        let tmp = TempDir::new();
        let mut objs = FakeObjects::default().cm("cfg", &[("k", "v")]);
        objs.sas.insert(
            "default".into(),
            ServiceAccount {
                automount_service_account_token: Some(false),
                ..Default::default()
            },
        );
        let mut d = vol("info");
        d.downward_api = Some(DownwardAPIVolumeSource {
            items: Some(vec![
                DownwardAPIVolumeFile {
                    path: "labels".into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.labels".into(),
                        api_version: None,
                    }),
                    ..Default::default()
                },
                DownwardAPIVolumeFile {
                    path: "name".into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".into(),
                        api_version: None,
                    }),
                    mode: Some(0o600),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        });
        let mut pr = vol("all");
        pr.projected = Some(ProjectedVolumeSource {
            default_mode: Some(0o640),
            sources: Some(vec![
                VolumeProjection {
                    config_map: Some(k8s_openapi::api::core::v1::ConfigMapProjection {
                        name: "cfg".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some("vault".into()),
                        expiration_seconds: Some(7200),
                        path: "vault-token".into(),
                    }),
                    ..Default::default()
                },
            ]),
        });
        let p = pod(vec![d, pr]);
        let vm = manager(&tmp, objs);
        let vols = vm.setup(&p).await.unwrap();
        assert!(!vols.dirs.contains_key(API_ACCESS_VOLUME));
        let base = tmp.path().join("pods/uid-1/volumes");
        let info = base.join("kubernetes.io~downward-api/info");
        assert_eq!(read(&info.join("labels")), "app=\"web\"");
        assert_eq!(read(&info.join("name")), "web-0");
        assert_eq!(mode_of(&info.join("name")), 0o600);
        let all = base.join("kubernetes.io~projected/all");
        assert_eq!(read(&all.join("k")), "v");
        assert_eq!(mode_of(&all.join("k")), 0o640);
        assert_eq!(read(&all.join("vault-token")), "token-1");
    }

    #[tokio::test]
    async fn empty_dir_host_path_and_mounts() {
        let tmp = TempDir::new();
        let host = tmp.path().join("host-data");
        let mut ed = vol("scratch");
        ed.empty_dir = Some(EmptyDirVolumeSource::default());
        let mut hp = vol("data");
        hp.host_path = Some(HostPathVolumeSource {
            path: host.to_string_lossy().into_owned(),
            type_: Some("DirectoryOrCreate".into()),
        });
        let mut bad = vol("bad");
        bad.host_path = Some(HostPathVolumeSource {
            path: tmp.path().join("missing").to_string_lossy().into_owned(),
            type_: Some("File".into()),
        });
        let vm = manager(&tmp, FakeObjects::default());
        assert!(vm.setup(&pod(vec![bad])).await.is_err());

        let mut p = pod(vec![ed, hp]);
        p.spec.as_mut().unwrap().host_aliases = Some(vec![HostAlias {
            ip: "192.0.2.9".into(),
            hostnames: Some(vec!["foo".into(), "bar".into()]),
        }]);
        p.spec.as_mut().unwrap().subdomain = Some("sub".into());
        p.spec.as_mut().unwrap().security_context = Some(PodSecurityContext::default());
        let vols = vm.setup(&p).await.unwrap();
        assert!(host.is_dir());
        let scratch = tmp
            .path()
            .join("pods/uid-1/volumes/kubernetes.io~empty-dir/scratch");
        assert_eq!(mode_of(&scratch), 0o777);

        let hosts = vm.etc_hosts(&p, "10.244.0.7").unwrap();
        let h = read(&hosts);
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.244.0.7\tweb-0.sub.ns1.svc.cluster.local\tweb-0\n"));
        assert!(h.ends_with("# Entries added by HostAliases.\n192.0.2.9\tfoo\tbar\n"));

        let c = Container {
            name: "app".into(),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "scratch".into(),
                    mount_path: "/scratch".into(),
                    ..Default::default()
                },
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/data".into(),
                    sub_path: Some("sub/dir".into()),
                    read_only: Some(true),
                    mount_propagation: Some("HostToContainer".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let tlog = vm.termination_log("uid-1", "app", 0).unwrap();
        assert_eq!(mode_of(&tlog), 0o666);
        let mounts = vm.mounts_for(&p, &vols, &c, &tlog).unwrap();
        let paths: Vec<(&str, &str, bool)> = mounts
            .iter()
            .map(|m| (m.container_path.as_str(), m.host_path.as_str(), m.readonly))
            .collect();
        let sa = tmp
            .path()
            .join("pods/uid-1/volumes/kubernetes.io~projected/kube-api-access");
        let canon_sub = fs::canonicalize(host.join("sub/dir")).unwrap();
        assert_eq!(
            paths,
            vec![
                ("/scratch", scratch.to_str().unwrap(), false),
                ("/data", canon_sub.to_str().unwrap(), true),
                (SERVICE_ACCOUNT_MOUNT, sa.to_str().unwrap(), true),
                ("/etc/hosts", hosts.to_str().unwrap(), false),
                ("/dev/termination-log", tlog.to_str().unwrap(), false),
            ]
        );
        assert_eq!(
            mounts[1].propagation,
            MountPropagation::PropagationHostToContainer as i32
        );

        // subPath escapes are refused; unknown volumes too.
        let esc = |sub: &str| {
            let mut c = c.clone();
            c.volume_mounts = Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/x".into(),
                sub_path: Some(sub.into()),
                ..Default::default()
            }]);
            vm.mounts_for(&p, &vols, &c, Path::new(""))
        };
        assert!(esc("../etc").is_err());
        assert!(esc("/etc").is_err());
        std::os::unix::fs::symlink("/etc", host.join("link")).unwrap();
        assert!(esc("link").is_err());
        let mut c2 = c.clone();
        c2.volume_mounts = Some(vec![VolumeMount {
            name: "nope".into(),
            mount_path: "/x".into(),
            ..Default::default()
        }]);
        assert!(vm.mounts_for(&p, &vols, &c2, Path::new("")).is_err());

        // hostNetwork: no /etc/hosts mount; an explicit SA mount wins.
        let mut hn = p.clone();
        hn.spec.as_mut().unwrap().host_network = Some(true);
        let mut c3 = c.clone();
        c3.volume_mounts = Some(vec![VolumeMount {
            name: "scratch".into(),
            mount_path: SERVICE_ACCOUNT_MOUNT.into(),
            ..Default::default()
        }]);
        let m = vm.mounts_for(&hn, &vols, &c3, Path::new("")).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].host_path, scratch.to_str().unwrap());

        vm.teardown("uid-1").await.unwrap();
        assert!(!tmp.path().join("pods/uid-1").exists());
        assert!(host.is_dir());
    }

    #[tokio::test]
    async fn memory_empty_dir_is_tmpfs() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let tmp = TempDir::new();
        let mut ed = vol("mem");
        ed.empty_dir = Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(Quantity("1Mi".into())),
        });
        let vm = manager(&tmp, FakeObjects::default());
        let p = pod(vec![ed]);
        vm.setup(&p).await.unwrap();
        let dir = fs::canonicalize(
            tmp.path()
                .join("pods/uid-1/volumes/kubernetes.io~empty-dir/mem"),
        )
        .unwrap();
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap()))
            .expect("tmpfs mounted");
        assert!(line.contains("tmpfs"));
        // Idempotent.
        vm.setup(&p).await.unwrap();
        vm.teardown("uid-1").await.unwrap();
        assert!(!mount_points().contains(&dir));
        assert!(!tmp.path().join("pods/uid-1").exists());
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/x\\"), "/x\\");
    }

    #[test]
    fn token_refresh_at_80_percent() {
        let t0 = SystemTime::now();
        let t = CachedToken {
            token: String::new(),
            issued: t0,
            expires: t0 + Duration::from_secs(1000),
        };
        assert!(!t.needs_refresh(t0 + Duration::from_secs(799)));
        assert!(t.needs_refresh(t0 + Duration::from_secs(800)));
    }
}
