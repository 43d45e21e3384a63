//! The rkube API server: Kubernetes REST semantics over HTTPS (HTTP/1.1 and
//! HTTP/2) on top of a [`rkube_store::Store`]. Authentication by client
//! certificate and ServiceAccount token, RBAC authorization, discovery,
//! OpenAPI, CRUD/watch/patch/apply and subresources.

use std::net::SocketAddr;
use std::sync::Arc;

pub mod auth;

/// Everything the API server needs to run.
#[derive(Clone)]
pub struct Config {
    /// Address to listen on (e.g. 0.0.0.0:8443).
    pub bind: SocketAddr,
    /// PEM of the serving certificate chain.
    pub serving_cert_pem: Vec<u8>,
    /// PEM of the serving private key.
    pub serving_key_pem: Vec<u8>,
    /// PEM of the CA that signs client certificates (and is handed to pods as ca.crt).
    pub client_ca_pem: Vec<u8>,
    /// PEM (PKCS#8) of the ServiceAccount token signing key (ECDSA P-256).
    pub sa_signing_key_pem: Vec<u8>,
    /// PEM (SPKI) of the ServiceAccount token public key.
    pub sa_public_key_pem: Vec<u8>,
    /// The object store.
    pub store: Arc<dyn rkube_store::Store>,
    /// Version string reported at /version, e.g. "v1.33.0-rkube.1".
    pub git_version: String,
    /// Issuer of ServiceAccount tokens.
    pub sa_issuer: String,
    /// Client certificate (PEM) the API server presents to node agents.
    pub kubelet_client_cert_pem: Vec<u8>,
    /// Its private key (PEM).
    pub kubelet_client_key_pem: Vec<u8>,
}

/// Errors that stop the API server from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS material is unusable.
    #[error("tls configuration: {0}")]
    Tls(String),
    /// Storage failed during bootstrap.
    #[error("store: {0}")]
    Store(#[from] rkube_store::Error),
    /// A bootstrap object is malformed.
    #[error("bootstrap object: {0}")]
    Bootstrap(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A running API server. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting connections and waits for the serve loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops on its own.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

pub mod admission;
pub mod handlers;
pub mod hooks;
pub mod objects;
pub mod request;
pub mod server;
pub mod state;
pub mod status;

use serde_json::{json, Value};

/// Binds, bootstraps and starts serving. Returns once the port is bound and
/// the bootstrap objects exist, so `/readyz` answers right away.
pub async fn start(cfg: Config, bootstrap: Vec<Value>) -> Result<Running> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = server::tls_config(
        &cfg.serving_cert_pem,
        &cfg.serving_key_pem,
        &cfg.client_ca_pem,
    )?;
    let listener = tokio::net::TcpListener::bind(cfg.bind)
        .await
        .map_err(|source| Error::Bind {
            addr: cfg.bind,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: cfg.bind,
        source,
    })?;
    let tokens = auth::token::TokenIssuer::new(
        &cfg.sa_signing_key_pem,
        &cfg.sa_public_key_pem,
        &cfg.sa_issuer,
    )
    .map_err(|e| Error::Tls(format!("service account key: {e}")))?;
    let store = cfg.store.clone();
    let registry = state::Registry::builtin();
    bootstrap_objects(&store, &registry, bootstrap).await?;
    let rbac = auth::rbac::Rbac::start(store.clone())
        .await
        .map_err(|e| Error::Bootstrap(format!("rbac: {e}")))?;
    let openapi = rkube_apimachinery::openapi::OpenApi::new(&registry.resources);
    let advertise_ip = if cfg.bind.ip().is_unspecified() {
        local_ip_address::local_ip().unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
    } else {
        cfg.bind.ip()
    };
    let kubelet_client = server::kubelet_client_tls(
        &cfg.client_ca_pem,
        &cfg.kubelet_client_cert_pem,
        &cfg.kubelet_client_key_pem,
    )
    .map(Arc::new)
    .map_err(|e| tracing::warn!("no node agent client certificate: {e}"))
    .ok();
    let state = Arc::new(state::AppState {
        kubelet_client,
        store: store.clone(),
        registry: std::sync::RwLock::new(registry),
        openapi: std::sync::RwLock::new(openapi),
        rbac,
        tokens,
        git_version: cfg.git_version.clone(),
        ca_pem: String::from_utf8_lossy(&cfg.client_ca_pem).into_owned(),
        advertise: SocketAddr::new(advertise_ip, local_addr.port()),
    });
    hooks::reload_crds(&state).await;
    // Per-namespace defaults and the `kubernetes` Service.
    let namespaces = store.list("/registry/core/namespaces/", None, 0).await?;
    for kv in namespaces.items {
        if let Ok(ns) = serde_json::from_slice::<Value>(&kv.value) {
            hooks::namespace_defaults(&state, objects::name(&ns))
                .await
                .map_err(|e| Error::Bootstrap(e.to_string()))?;
        }
    }
    kubernetes_service(&state).await?;
    // Render the OpenAPI documents off the request path.
    let warm = state.clone();
    tokio::task::spawn_blocking(move || {
        let _ = warm.openapi.read().map(|o| o.v3_root());
    });
    let app = handlers::router(state);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server::serve(listener, Arc::new(tls), app, rx));
    Ok(Running {
        local_addr,
        shutdown: tx,
        task,
    })
}

async fn bootstrap_objects(
    store: &Arc<dyn rkube_store::Store>,
    registry: &state::Registry,
    objects_in: Vec<Value>,
) -> Result<()> {
    // Namespaces first, so namespaced objects land in existing namespaces.
    let mut objs = objects_in;
    objs.sort_by_key(|o| o.get("kind").and_then(Value::as_str) != Some("Namespace"));
    for mut obj in objs {
        let av = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (group, _version) = av.rsplit_once('/').unwrap_or(("", av.as_str()));
        let info = rkube_apimachinery::resource::find_kind(&registry.resources, group, &kind)
            .ok_or_else(|| Error::Bootstrap(format!("unknown kind {av}/{kind}")))?
            .clone();
        let name = objects::name(&obj).to_string();
        if name.is_empty() {
            return Err(Error::Bootstrap(format!("{kind} without a name")));
        }
        let ns = objects::namespace(&obj).map(String::from);
        let key = info.key(ns.as_deref(), &name);
        if store.get(&key).await?.is_some() {
            continue;
        }
        rkube_apimachinery::validation::default_object(&av, &kind, &mut obj);
        {
            let m = objects::meta_mut(&mut obj);
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(objects::now()));
        }
        match store
            .create(&key, serde_json::to_vec(&obj).unwrap_or_default())
            .await
        {
            Ok(_) | Err(rkube_store::Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn kubernetes_service(state: &state::AppState) -> Result<()> {
    let port = state.advertise.port();
    let ip = state.advertise.ip().to_string();
    hooks::put_if_missing(
        state,
        "/registry/core/services/default/kubernetes",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "sessionAffinity": "None",
                        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
               "status": {"loadBalancer": {}}}),
    )
    .await
    .map_err(|e| Error::Bootstrap(e.to_string()))?;
    // The default ServiceCIDR, as kube-apiserver keeps one named
    // "kubernetes" for its --service-cluster-ip-range.
    hooks::put_if_missing(
        state,
        "/registry/networking.k8s.io/servicecidrs/kubernetes",
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
               "metadata": {"name": "kubernetes"},
               "spec": {"cidrs": [hooks::SERVICE_CIDR]},
               "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "",
                   "message": "Kubernetes Service CIDR is ready",
                   "lastTransitionTime": objects::now()}]}}),
    )
    .await
    .map_err(|e| Error::Bootstrap(e.to_string()))?;
    // Endpoints always follow the current address and port.
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
                     "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": objects::now()},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
    let key = "/registry/core/endpoints/default/kubernetes";
    match state.store.get(key).await? {
        None => {
            let _ = state
                .store
                .create(key, serde_json::to_vec(&ep).unwrap_or_default())
                .await;
        }
        Some(kv) => {
            let old: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            if old.get("subsets") != ep.get("subsets") {
                let mut new = old.clone();
                new["subsets"] = ep["subsets"].clone();
                let _ = state
                    .store
                    .update(
                        key,
                        serde_json::to_vec(&new).unwrap_or_default(),
                        Some(kv.mod_revision),
                    )
                    .await;
            }
        }
    }
    Ok(())
}
