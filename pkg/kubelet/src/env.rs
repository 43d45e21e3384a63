//! The container environment as kubelet builds it.
//!
//! Order of sources: `envFrom` (ConfigMaps and Secrets, with a prefix; keys
//! that are not valid variable names are skipped), then `env` (literal values
//! with `$(VAR)` expansion, `fieldRef`, `resourceFieldRef`, `configMapKeyRef`,
//! `secretKeyRef`), then the service variables (`KUBERNETES_SERVICE_HOST`
//! and friends, and Docker-style links for every service of the namespace
//! when `enableServiceLinks` is not false) for names not already set.
//!
//! Cluster objects are read through the small [`ClusterObjects`] trait so the
//! logic is testable without an API server; [`container_env`] uses the
//! `kube::Client` implementation.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use rkube_apimachinery::quantity::{Format, Quantity as ExactQuantity};
use rkube_cri::api::KeyValue;

/// Why a container's environment could not be built. The messages are
/// upstream kubelet's (shown in `CreateContainerConfigError`).
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A referenced ConfigMap does not exist and the reference is not optional.
    #[error("configmap {name:?} not found")]
    MissingConfigMap {
        /// Namespace.
        namespace: String,
        /// ConfigMap name.
        name: String,
    },
    /// A referenced Secret does not exist and the reference is not optional.
    #[error("secret {name:?} not found")]
    MissingSecret {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
    },
    /// A referenced key is missing from a ConfigMap.
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    MissingConfigMapKey {
        /// Namespace.
        namespace: String,
        /// ConfigMap name.
        name: String,
        /// Missing key.
        key: String,
    },
    /// A referenced key is missing from a Secret.
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    MissingSecretKey {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Missing key.
        key: String,
    },
    /// A `fieldRef` names a field kubelet does not provide.
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    /// A `resourceFieldRef` names an unsupported resource.
    #[error("unsupported container resource : {0}")]
    Resource(String),
    /// A `resourceFieldRef` names a container that is not in the pod.
    #[error("container {0:?} not found in pod")]
    Container(String),
    /// A quantity (limit, request or divisor) could not be parsed.
    #[error("invalid quantity {0:?}")]
    Quantity(String),
    /// The API server failed.
    #[error("reading from the API server: {0}")]
    Api(#[source] Box<kube::Error>),
}

impl From<kube::Error> for EnvError {
    fn from(e: kube::Error) -> Self {
        EnvError::Api(Box::new(e))
    }
}

/// Node-level facts that go into a container's environment.
#[derive(Clone, Debug, Default)]
pub struct EnvContext {
    /// Address in-pod clients use for the API server (KUBERNETES_SERVICE_HOST).
    pub api_host: String,
    /// Port of the API server (KUBERNETES_SERVICE_PORT).
    pub api_port: u16,
    /// Node allocatable, used for `resourceFieldRef` limits a container does not set.
    pub node_allocatable: BTreeMap<String, Quantity>,
    /// The pod's IP (status.podIP).
    pub pod_ip: String,
    /// The node's IP (status.hostIP).
    pub host_ip: String,
}

/// A boxed, sendable future (keeps [`ClusterObjects`] object-safe).
pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The cluster objects the node agent reads for env and volumes.
pub(crate) trait ClusterObjects: Send + Sync {
    /// A ConfigMap, `None` when it does not exist.
    fn config_map<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFut<'a, Result<Option<ConfigMap>, kube::Error>>;
    /// A Secret, `None` when it does not exist.
    fn secret<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFut<'a, Result<Option<Secret>, kube::Error>>;
    /// The services of a namespace.
    fn services<'a>(&'a self, ns: &'a str) -> BoxFut<'a, Result<Vec<Service>, kube::Error>>;
    /// A ServiceAccount, `None` when it does not exist.
    fn service_account<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFut<'a, Result<Option<ServiceAccount>, kube::Error>>;
    /// POST serviceaccounts/<name>/token.
    fn token<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        req: TokenRequest,
    ) -> BoxFut<'a, Result<TokenRequest, kube::Error>>;
}

/// [`ClusterObjects`] over a real `kube::Client`.
pub(crate) struct KubeObjects(pub Client);

impl ClusterObjects for KubeObjects {
    fn config_map<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFut<'a, Result<Option<ConfigMap>, kube::Error>> {
        Box::pin(async move {
            Api::<ConfigMap>::namespaced(self.0.clone(), ns)
                .get_opt(name)
                .await
        })
    }
    fn secret<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFut<'a, Result<Option<Secret>, kube::Error>> {
        Box::pin(async move {
            Api::<Secret>::namespaced(self.0.clone(), ns)
                .get_opt(name)
                .await
        })
    }
    fn services<'a>(&'a self, ns: &'a str) -> BoxFut<'a, Result<Vec<Service>, kube::Error>> {
        Box::pin(async move {
            Ok(Api::<Service>::namespaced(self.0.clone(), ns)
                .list(&ListParams::default())
                .await?
                .items)
        })
    }
    fn service_account<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFut<'a, Result<Option<ServiceAccount>, kube::Error>> {
        Box::pin(async move {
            Api::<ServiceAccount>::namespaced(self.0.clone(), ns)
                .get_opt(name)
                .await
        })
    }
    fn token<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        req: TokenRequest,
    ) -> BoxFut<'a, Result<TokenRequest, kube::Error>> {
        Box::pin(async move {
            Api::<ServiceAccount>::namespaced(self.0.clone(), ns)
                .create_token_request(name, &PostParams::default(), &req)
                .await
        })
    }
}

/// Builds the environment of `container` in `pod` (see the module doc).
pub async fn container_env(
    client: &Client,
    pod: &Pod,
    container: &Container,
    ctx: &EnvContext,
) -> Result<Vec<KeyValue>, EnvError> {
    let vars = build_env(&KubeObjects(client.clone()), pod, container, ctx).await?;
    Ok(vars
        .into_iter()
        .map(|(key, value)| KeyValue { key, value })
        .collect())
}

/// An insertion-ordered map of variables (a later set of a name keeps its place).
#[derive(Default)]
struct OrderedEnv {
    order: Vec<String>,
    values: HashMap<String, String>,
}

impl OrderedEnv {
    fn set(&mut self, k: String, v: String) {
        if self.values.insert(k.clone(), v).is_none() {
            self.order.push(k);
        }
    }
    fn into_vec(mut self) -> Vec<(String, String)> {
        self.order
            .into_iter()
            .map(|k| {
                let v = self.values.remove(&k).unwrap_or_default();
                (k, v)
            })
            .collect()
    }
}

pub(crate) async fn build_env(
    objs: &dyn ClusterObjects,
    pod: &Pod,
    container: &Container,
    ctx: &EnvContext,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.as_ref();
    let links = spec.and_then(|s| s.enable_service_links).unwrap_or(true);
    let services = if links {
        objs.services(ns).await?
    } else {
        Vec::new()
    };
    let service_env = service_env(&services, ns, links, ctx);
    let service_map: HashMap<&str, &str> = service_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    let mut env = OrderedEnv::default();
    let mut cms: HashMap<String, Option<ConfigMap>> = HashMap::new();
    let mut secrets: HashMap<String, Option<Secret>> = HashMap::new();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let cm = get_cm(objs, &mut cms, ns, &r.name).await?;
            let Some(cm) = cm else {
                if r.optional == Some(true) {
                    continue;
                }
                return Err(EnvError::MissingConfigMap {
                    namespace: ns.into(),
                    name: r.name.clone(),
                });
            };
            for (k, v) in cm.data.iter().flatten() {
                let name = format!("{prefix}{k}");
                if is_env_var_name(&name) {
                    env.set(name, v.clone());
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            let s = get_secret(objs, &mut secrets, ns, &r.name).await?;
            let Some(s) = s else {
                if r.optional == Some(true) {
                    continue;
                }
                return Err(EnvError::MissingSecret {
                    namespace: ns.into(),
                    name: r.name.clone(),
                });
            };
            for (k, v) in s.data.iter().flatten() {
                let name = format!("{prefix}{k}");
                if is_env_var_name(&name) {
                    env.set(name, String::from_utf8_lossy(&v.0).into_owned());
                }
            }
        }
    }

    for var in container.env.iter().flatten() {
        let value = if let Some(src) = &var.value_from {
            if let Some(f) = &src.field_ref {
                field_ref_value(pod, f, ctx)?
            } else if let Some(r) = &src.resource_field_ref {
                let c = match r.container_name.as_deref() {
                    None | Some("") => container,
                    Some(n) => {
                        find_container(pod, n).ok_or_else(|| EnvError::Container(n.to_string()))?
                    }
                };
                resource_field_value(c, r, &ctx.node_allocatable)?
            } else if let Some(r) = &src.config_map_key_ref {
                let optional = r.optional == Some(true);
                match get_cm(objs, &mut cms, ns, &r.name).await? {
                    None if optional => continue,
                    None => {
                        return Err(EnvError::MissingConfigMap {
                            namespace: ns.into(),
                            name: r.name.clone(),
                        })
                    }
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::MissingConfigMapKey {
                                namespace: ns.into(),
                                name: r.name.clone(),
                                key: r.key.clone(),
                            })
                        }
                    },
                }
            } else if let Some(r) = &src.secret_key_ref {
                let optional = r.optional == Some(true);
                match get_secret(objs, &mut secrets, ns, &r.name).await? {
                    None if optional => continue,
                    None => {
                        return Err(EnvError::MissingSecret {
                            namespace: ns.into(),
                            name: r.name.clone(),
                        })
                    }
                    Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::MissingSecretKey {
                                namespace: ns.into(),
                                name: r.name.clone(),
                                key: r.key.clone(),
                            })
                        }
                    },
                }
            } else {
                String::new()
            }
        } else {
            let raw = var.value.as_deref().unwrap_or("");
            expand(raw, |name| {
                env.values
                    .get(name)
                    .map(String::as_str)
                    .or_else(|| service_map.get(name).copied())
                    .map(str::to_string)
            })
        };
        env.set(var.name.clone(), value);
    }

    for (k, v) in service_env {
        if !env.values.contains_key(&k) {
            env.set(k, v);
        }
    }
    Ok(env.into_vec())
}

async fn get_cm(
    objs: &dyn ClusterObjects,
    cache: &mut HashMap<String, Option<ConfigMap>>,
    ns: &str,
    name: &str,
) -> Result<Option<ConfigMap>, EnvError> {
    if let Some(v) = cache.get(name) {
        return Ok(v.clone());
    }
    let v = objs.config_map(ns, name).await?;
    cache.insert(name.to_string(), v.clone());
    Ok(v)
}

async fn get_secret(
    objs: &dyn ClusterObjects,
    cache: &mut HashMap<String, Option<Secret>>,
    ns: &str,
    name: &str,
) -> Result<Option<Secret>, EnvError> {
    if let Some(v) = cache.get(name) {
        return Ok(v.clone());
    }
    let v = objs.secret(ns, name).await?;
    cache.insert(name.to_string(), v.clone());
    Ok(v)
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// Whether `name` may be an environment variable name (the relaxed rule of
/// Kubernetes 1.32+: printable ASCII without `=`).
pub fn is_env_var_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

/// Expands `$(VAR)` references as Kubernetes does: `$$` is an escaped `$`,
/// a reference to an unknown variable (or an unterminated one) is left as
/// written, a `$` before anything else is kept.
pub fn expand(input: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if after.is_empty() {
            out.push('$');
            rest = after;
        } else if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            let ch = after.chars().next().unwrap_or_default();
            out.push('$');
            out.push(ch);
            rest = &after[ch.len_utf8()..];
        }
    }
    out.push_str(rest);
    out
}

/// Expands `$(VAR)` in a command with the container's literal `env` values
/// only (what kubelet does for probe and hook commands).
pub fn expand_static(args: &[String], container: &Container) -> Vec<String> {
    let vars: HashMap<&str, &str> = container
        .env
        .iter()
        .flatten()
        .filter(|e| e.value_from.is_none())
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
        .collect();
    args.iter()
        .map(|a| expand(a, |n| vars.get(n).map(|v| v.to_string())))
        .collect()
}

/// Upstream's env variable name form of a service or port name.
pub fn env_var_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// The service variables: KUBERNETES_* for the API server (from `ctx`), and
/// Docker-style link variables for `services` when `links` is true.
pub fn service_env(
    services: &[Service],
    ns: &str,
    links: bool,
    ctx: &EnvContext,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut by_name: BTreeMap<&str, &Service> = BTreeMap::new();
    if links {
        for s in services {
            let name = s.metadata.name.as_deref().unwrap_or("");
            if ns == "default" && name == "kubernetes" {
                continue;
            }
            if s.metadata.namespace.as_deref().is_some_and(|n| n != ns) {
                continue;
            }
            by_name.insert(name, s);
        }
    }
    if !ctx.api_host.is_empty() {
        push_service_vars(
            &mut out,
            "kubernetes",
            &ctx.api_host,
            &[(Some("https"), i32::from(ctx.api_port), "TCP")],
        );
    }
    for (name, s) in by_name {
        let Some(spec) = &s.spec else { continue };
        let ip = spec.cluster_ip.as_deref().unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let ports: Vec<(Option<&str>, i32, &str)> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.as_deref().filter(|n| !n.is_empty()),
                    p.port,
                    p.protocol.as_deref().unwrap_or("TCP"),
                )
            })
            .collect();
        if ports.is_empty() {
            continue;
        }
        push_service_vars(&mut out, name, ip, &ports);
    }
    out
}

fn push_service_vars(
    out: &mut Vec<(String, String)>,
    name: &str,
    ip: &str,
    ports: &[(Option<&str>, i32, &str)],
) {
    let prefix = env_var_name(name);
    out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
    out.push((format!("{prefix}_SERVICE_PORT"), ports[0].1.to_string()));
    for (pname, port, _) in ports {
        if let Some(pn) = pname {
            out.push((
                format!("{prefix}_SERVICE_PORT_{}", env_var_name(pn)),
                port.to_string(),
            ));
        }
    }
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    for (i, (_, port, proto)) in ports.iter().enumerate() {
        let lower = proto.to_lowercase();
        let url = format!("{lower}://{host}:{port}");
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let pp = format!("{prefix}_PORT_{port}_{}", proto.to_uppercase());
        out.push((pp.clone(), url));
        out.push((format!("{pp}_PROTO"), lower));
        out.push((format!("{pp}_PORT"), port.to_string()));
        out.push((format!("{pp}_ADDR"), ip.to_string()));
    }
}

/// `metadata.labels['key']` → `("labels", "key")`.
fn subscript(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("metadata.")?;
    let (field, rest) = rest.split_once("['")?;
    let key = rest.strip_suffix("']")?;
    Some((field, key))
}

/// Formats a map as the downward API does: sorted `key="value"` lines.
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a `fieldRef` (env form; volumes also allow whole label and
/// annotation maps, see [`volume_field_value`]).
pub fn field_ref_value(
    pod: &Pod,
    f: &ObjectFieldSelector,
    ctx: &EnvContext,
) -> Result<String, EnvError> {
    let md = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let path = f.field_path.as_str();
    if let Some((field, key)) = subscript(path) {
        let map = match field {
            "labels" => &md.labels,
            "annotations" => &md.annotations,
            _ => return Err(EnvError::FieldPath(path.into())),
        };
        return Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let s = |o: Option<&String>| o.cloned().unwrap_or_default();
    let pod_ips = || -> Vec<String> {
        let from_status: Vec<String> = status
            .and_then(|st| st.pod_ips.as_ref())
            .map(|ips| ips.iter().map(|i| i.ip.clone()).collect())
            .unwrap_or_default();
        if !ctx.pod_ip.is_empty() && from_status.first() != Some(&ctx.pod_ip) {
            vec![ctx.pod_ip.clone()]
        } else {
            from_status
        }
    };
    let host_ips = || -> Vec<String> {
        if !ctx.host_ip.is_empty() {
            return vec![ctx.host_ip.clone()];
        }
        status
            .and_then(|st| st.host_ips.as_ref())
            .map(|ips| ips.iter().map(|i| i.ip.clone()).collect())
            .unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => s(md.name.as_ref()),
        "metadata.namespace" => s(md.namespace.as_ref()),
        "metadata.uid" => s(md.uid.as_ref()),
        "spec.nodeName" => s(spec.and_then(|x| x.node_name.as_ref())),
        "spec.serviceAccountName" => s(spec.and_then(|x| x.service_account_name.as_ref())),
        "status.hostIP" => host_ips().into_iter().next().unwrap_or_default(),
        "status.hostIPs" => host_ips().join(","),
        "status.podIP" => pod_ips().into_iter().next().unwrap_or_default(),
        "status.podIPs" => pod_ips().join(","),
        _ => return Err(EnvError::FieldPath(path.into())),
    })
}

/// The value of a downward API volume `fieldRef` (also whole
/// `metadata.labels` / `metadata.annotations`).
pub fn volume_field_value(
    pod: &Pod,
    f: &ObjectFieldSelector,
    ctx: &EnvContext,
) -> Result<String, EnvError> {
    let md = &pod.metadata;
    match f.field_path.as_str() {
        "metadata.labels" => Ok(format_map(&md.labels.clone().unwrap_or_default())),
        "metadata.annotations" => Ok(format_map(&md.annotations.clone().unwrap_or_default())),
        _ => field_ref_value(pod, f, ctx),
    }
}

/// A quantity of the pod spec (limit, request, divisor, size limit), parsed.
pub fn quantity(q: &Quantity) -> Result<ExactQuantity, EnvError> {
    ExactQuantity::parse(&q.0).ok_or_else(|| EnvError::Quantity(q.0.clone()))
}

/// The value of a `resourceFieldRef` for `container`: the limit (node
/// allocatable when the container sets none) or request, divided by the
/// divisor and rounded up, as upstream does.
pub fn resource_field_value(
    container: &Container,
    r: &ResourceFieldSelector,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, EnvError> {
    let (kind, res) = r
        .resource
        .split_once('.')
        .ok_or_else(|| EnvError::Resource(r.resource.clone()))?;
    let supported =
        matches!(res, "cpu" | "memory" | "ephemeral-storage") || res.starts_with("hugepages-");
    if !supported || !matches!(kind, "limits" | "requests") {
        return Err(EnvError::Resource(r.resource.clone()));
    }
    let resources = container.resources.as_ref();
    let get = |m: Option<&BTreeMap<String, Quantity>>| {
        m.and_then(|m| m.get(res)).map(quantity).transpose()
    };
    let mut amount = if kind == "limits" {
        get(resources.and_then(|r| r.limits.as_ref()))?
    } else {
        get(resources.and_then(|r| r.requests.as_ref()))?
    };
    if kind == "limits"
        && amount.is_none_or(|a| a.is_zero())
        && matches!(res, "cpu" | "memory" | "ephemeral-storage")
    {
        let alloc = match allocatable.get(res) {
            Some(q) => Some(quantity(q)?),
            None => host_allocatable(res),
        };
        amount = alloc.or(amount);
    }
    let amount = amount.unwrap_or(ExactQuantity::ZERO);
    let divisor = match &r.divisor {
        Some(d) if !d.0.is_empty() => quantity(d)?,
        _ => ExactQuantity::count(1),
    };
    let v = if res == "cpu" {
        amount.milli_ratio(&divisor)
    } else {
        amount.value_ratio(&divisor)
    };
    Ok(v.to_string())
}

/// The machine's cpu (cores) or memory (bytes), the fallback when no node
/// allocatable is known.
pub fn host_allocatable(res: &str) -> Option<ExactQuantity> {
    match res {
        "cpu" => std::thread::available_parallelism()
            .ok()
            .map(|n| ExactQuantity::count(n.get() as i64)),
        "memory" => {
            let info = std::fs::read_to_string("/proc/meminfo").ok()?;
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: i128 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(ExactQuantity {
                nanos: kb * 1024 * 1_000_000_000,
                format: Format::BinarySi,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource, PodSpec,
        PodStatus, ResourceRequirements, SecretKeySelector, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::ByteString;
    use std::sync::Mutex;

    /// An in-memory [`ClusterObjects`].
    #[derive(Default)]
    pub(crate) struct FakeObjects {
        pub cms: Mutex<HashMap<String, ConfigMap>>,
        pub secrets: Mutex<HashMap<String, Secret>>,
        pub services: Vec<Service>,
        pub sas: HashMap<String, ServiceAccount>,
        pub tokens: Mutex<Vec<TokenRequest>>,
    }

    impl FakeObjects {
        pub fn cm(self, name: &str, data: &[(&str, &str)]) -> Self {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            };
            self.cms.lock().unwrap().insert(name.into(), cm);
            self
        }
        pub fn secret(self, name: &str, data: &[(&str, &str)]) -> Self {
            let s = Secret {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                        .collect(),
                ),
                ..Default::default()
            };
            self.secrets.lock().unwrap().insert(name.into(), s);
            self
        }
    }

    impl ClusterObjects for FakeObjects {
        fn config_map<'a>(
            &'a self,
            _ns: &'a str,
            name: &'a str,
        ) -> BoxFut<'a, Result<Option<ConfigMap>, kube::Error>> {
            let v = self.cms.lock().unwrap().get(name).cloned();
            Box::pin(async move { Ok(v) })
        }
        fn secret<'a>(
            &'a self,
            _ns: &'a str,
            name: &'a str,
        ) -> BoxFut<'a, Result<Option<Secret>, kube::Error>> {
            let v = self.secrets.lock().unwrap().get(name).cloned();
            Box::pin(async move { Ok(v) })
        }
        fn services<'a>(&'a self, _ns: &'a str) -> BoxFut<'a, Result<Vec<Service>, kube::Error>> {
            Box::pin(async move { Ok(self.services.clone()) })
        }
        fn service_account<'a>(
            &'a self,
            _ns: &'a str,
            name: &'a str,
        ) -> BoxFut<'a, Result<Option<ServiceAccount>, kube::Error>> {
            Box::pin(async move { Ok(self.sas.get(name).cloned()) })
        }
        fn token<'a>(
            &'a self,
            _ns: &'a str,
            _name: &'a str,
            mut req: TokenRequest,
        ) -> BoxFut<'a, Result<TokenRequest, kube::Error>> {
            Box::pin(async move {
                let mut all = self.tokens.lock().unwrap();
                all.push(req.clone());
                let exp = req.spec.expiration_seconds.unwrap_or(3600);
                req.status = Some(k8s_openapi::api::authentication::v1::TokenRequestStatus {
                    token: format!("token-{}", all.len()),
                    expiration_timestamp: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::try_from(
                            std::time::SystemTime::now()
                                + std::time::Duration::from_secs(exp as u64),
                        )
                        .unwrap(),
                    ),
                });
                Ok(req)
            })
        }
    }

    fn map<'a>(vars: &'a [(&'a str, &'a str)]) -> impl FnMut(&str) -> Option<String> + 'a {
        |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn expansion() {
        let vars = [("A", "a"), ("B", "b")];
        assert_eq!(expand("$(A)-$(B)", map(&vars)), "a-b");
        assert_eq!(expand("$$(A)", map(&vars)), "$(A)");
        assert_eq!(expand("$$$(A)", map(&vars)), "$a");
        assert_eq!(expand("$(C)", map(&vars)), "$(C)");
        assert_eq!(expand("x$(A", map(&vars)), "x$(A");
        assert_eq!(expand("$A $", map(&vars)), "$A $");
        assert_eq!(expand("$(A)$(A)", map(&vars)), "aa");
        assert_eq!(expand("100$", map(&vars)), "100$");
        assert_eq!(expand("é$(A)é", map(&vars)), "éaé");
        assert_eq!(expand("$é", map(&vars)), "$é");
    }

    fn container_with(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
        let q = |v: &[(&str, &str)]| {
            Some(
                v.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect(),
            )
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: q(limits),
                requests: q(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rf(res: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            resource: res.into(),
            divisor: divisor.map(|d| Quantity(d.into())),
            container_name: None,
        }
    }

    #[test]
    fn resource_divisors() {
        let c = container_with(
            &[("cpu", "500m"), ("memory", "128Mi")],
            &[("cpu", "250m"), ("memory", "64Mi")],
        );
        let alloc = BTreeMap::new();
        let v = |r, d| resource_field_value(&c, &rf(r, d), &alloc).unwrap();
        assert_eq!(v("limits.cpu", None), "1");
        assert_eq!(v("limits.cpu", Some("1m")), "500");
        assert_eq!(v("requests.cpu", Some("1m")), "250");
        assert_eq!(v("requests.cpu", Some("100m")), "3");
        assert_eq!(v("limits.memory", None), "134217728");
        assert_eq!(v("limits.memory", Some("1Mi")), "128");
        assert_eq!(v("requests.memory", Some("1Mi")), "64");
        assert_eq!(v("requests.memory", Some("1M")), "68");
        assert!(resource_field_value(&c, &rf("limits.foo", None), &alloc).is_err());

        // No limit: node allocatable.
        let c = container_with(&[], &[]);
        let alloc: BTreeMap<String, Quantity> = [
            ("cpu".to_string(), Quantity("2".into())),
            ("memory".to_string(), Quantity("4Gi".into())),
        ]
        .into();
        let v = |r, d| resource_field_value(&c, &rf(r, d), &alloc).unwrap();
        assert_eq!(v("limits.cpu", None), "2");
        assert_eq!(v("limits.cpu", Some("1m")), "2000");
        assert_eq!(v("limits.memory", Some("1Gi")), "4");
        assert_eq!(v("requests.cpu", None), "0");
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns1".into()),
                uid: Some("u-1".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                annotations: Some([("a/b".to_string(), "x\"y".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node1".into()),
                service_account_name: Some("sa1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus::default()),
        }
    }

    fn ctx() -> EnvContext {
        EnvContext {
            api_host: "10.0.0.1".into(),
            api_port: 6443,
            node_allocatable: BTreeMap::new(),
            pod_ip: "10.244.0.5".into(),
            host_ip: "192.0.2.1".into(),
        }
    }

    #[test]
    fn field_refs() {
        let p = pod();
        let f = |path: &str| {
            field_ref_value(
                &p,
                &ObjectFieldSelector {
                    field_path: path.into(),
                    api_version: None,
                },
                &ctx(),
            )
        };
        assert_eq!(f("metadata.name").unwrap(), "p");
        assert_eq!(f("metadata.namespace").unwrap(), "ns1");
        assert_eq!(f("metadata.uid").unwrap(), "u-1");
        assert_eq!(f("metadata.labels['app']").unwrap(), "web");
        assert_eq!(f("metadata.labels['nope']").unwrap(), "");
        assert_eq!(f("metadata.annotations['a/b']").unwrap(), "x\"y");
        assert_eq!(f("spec.nodeName").unwrap(), "node1");
        assert_eq!(f("spec.serviceAccountName").unwrap(), "sa1");
        assert_eq!(f("status.podIP").unwrap(), "10.244.0.5");
        assert_eq!(f("status.podIPs").unwrap(), "10.244.0.5");
        assert_eq!(f("status.hostIP").unwrap(), "192.0.2.1");
        assert_eq!(f("status.hostIPs").unwrap(), "192.0.2.1");
        assert!(f("spec.bogus").is_err());
        let all = volume_field_value(
            &p,
            &ObjectFieldSelector {
                field_path: "metadata.annotations".into(),
                api_version: None,
            },
            &ctx(),
        )
        .unwrap();
        assert_eq!(all, "a/b=\"x\\\"y\"");
    }

    fn svc(name: &str, ip: &str, ports: &[(Option<&str>, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns1".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: n.map(String::from),
                            port: *p,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_links() {
        let services = vec![
            svc(
                "my-svc",
                "10.96.0.10",
                &[(Some("http-web"), 80), (Some("dns"), 53)],
            ),
            svc("headless", "None", &[(None, 80)]),
        ];
        let env: HashMap<String, String> = service_env(&services, "ns1", true, &ctx())
            .into_iter()
            .collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.0.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "6443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "6443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.0.0.1:6443");
        assert_eq!(env["KUBERNETES_PORT_6443_TCP_ADDR"], "10.0.0.1");
        assert_eq!(env["MY_SVC_SERVICE_HOST"], "10.96.0.10");
        assert_eq!(env["MY_SVC_SERVICE_PORT"], "80");
        assert_eq!(env["MY_SVC_SERVICE_PORT_HTTP_WEB"], "80");
        assert_eq!(env["MY_SVC_SERVICE_PORT_DNS"], "53");
        assert_eq!(env["MY_SVC_PORT"], "tcp://10.96.0.10:80");
        assert_eq!(env["MY_SVC_PORT_53_TCP"], "tcp://10.96.0.10:53");
        assert_eq!(env["MY_SVC_PORT_53_TCP_PROTO"], "tcp");
        assert_eq!(env["MY_SVC_PORT_53_TCP_PORT"], "53");
        assert!(!env.keys().any(|k| k.starts_with("HEADLESS")));
        let no_links = service_env(&services, "ns1", false, &ctx());
        assert!(no_links.iter().all(|(k, _)| k.starts_with("KUBERNETES_")));
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    #[tokio::test]
    async fn full_env() {
        let objs = FakeObjects::default()
            .cm("cfg", &[("A", "from-cm"), ("1-bad=", "x"), ("K", "v")])
            .secret("sec", &[("pw", "hunter2")]);
        let mut c = Container {
            name: "c".into(),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                prefix: Some("P_".into()),
                secret_ref: None,
            }]),
            env: Some(vec![
                var("X", "$(P_A)/$(KUBERNETES_SERVICE_HOST)/$(NOPE)/$$(P_A)"),
                EnvVar {
                    name: "PW".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "sec".into(),
                            key: "pw".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                },
                EnvVar {
                    name: "POD".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                },
                var("P_A", "override"),
            ]),
            ..Default::default()
        };
        let env = build_env(&objs, &pod(), &c, &ctx()).await.unwrap();
        let m: HashMap<_, _> = env.iter().cloned().collect();
        assert_eq!(m["X"], "from-cm/10.0.0.1/$(NOPE)/$(P_A)");
        assert_eq!(m["PW"], "hunter2");
        assert_eq!(m["POD"], "p");
        assert_eq!(m["P_A"], "override");
        assert_eq!(m["P_K"], "v");
        assert!(!m.contains_key("P_1-bad="));
        assert_eq!(env[0].0, "P_A");

        // Missing references.
        let key_ref = |name: &str, key: &str, optional| EnvVar {
            name: "Y".into(),
            value: None,
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: name.into(),
                    key: key.into(),
                    optional,
                }),
                ..Default::default()
            }),
        };
        c.env_from = None;
        c.env = Some(vec![key_ref("cfg", "k", None)]);
        let e = build_env(&objs, &pod(), &c, &ctx()).await.unwrap_err();
        assert_eq!(e.to_string(), "couldn't find key k in ConfigMap ns1/cfg");
        c.env = Some(vec![key_ref("x", "k", None)]);
        let e = build_env(&objs, &pod(), &c, &ctx()).await.unwrap_err();
        assert_eq!(e.to_string(), "configmap \"x\" not found");
        c.env = Some(vec![key_ref("x", "k", Some(true))]);
        let env = build_env(&objs, &pod(), &c, &ctx()).await.unwrap();
        assert!(!env.iter().any(|(k, _)| k == "Y"));
    }
}
