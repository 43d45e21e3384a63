//! Pulling images with the OCI distribution API (oci-client): registry
//! mirrors tried in order (then the registry itself unless mirror-only),
//! plain HTTP for loopback and `--insecure-registry` hosts, credentials
//! from pull secrets, and one download per image however many pods ask.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use oci_client::client::{linux_amd64_resolver, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::reference::{self, is_loopback, Name};
use crate::{Error, Image, ImageStore, Result};

/// Mirrors and plain-HTTP registries.
#[derive(Clone, Debug, Default)]
pub struct Registries {
    /// Mirrors per registry host.
    pub mirrors: Vec<rkube_host::Mirror>,
    /// Registry hosts (`host[:port]`) reached over plain HTTP.
    pub insecure: Vec<String>,
}

/// Registry credentials (from an imagePullSecret).
#[derive(Clone, Debug)]
pub enum Credentials {
    /// User name and password.
    Basic {
        /// User.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer (identity or registry) token.
    Bearer(String),
}

type Shared_ = Shared<BoxFuture<'static, Result<Image, String>>>;

/// Pulls images into a store.
#[derive(Clone)]
pub struct Puller {
    store: ImageStore,
    registries: Arc<Registries>,
    inflight: Arc<Mutex<HashMap<String, Shared_>>>,
}

/// One place to try: host and whether it speaks plain HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Registry host (and port).
    pub host: String,
    /// Whether it speaks plain HTTP.
    pub http: bool,
}

/// Where to pull `name` from, in order.
pub fn endpoints(name: &Name, reg: &Registries) -> Vec<Endpoint> {
    let mut out = Vec::new();
    let mut mirror_only = false;
    for m in reg.mirrors.iter().filter(|m| m.host == name.registry) {
        mirror_only |= m.mirror_only;
        for e in &m.endpoints {
            let (http, rest) = match e.strip_prefix("http://") {
                Some(r) => (true, r),
                None => (false, e.strip_prefix("https://").unwrap_or(e)),
            };
            let host = rest.split('/').next().unwrap_or(rest).to_string();
            out.push(Endpoint { host, http });
        }
    }
    if !mirror_only {
        out.push(Endpoint {
            host: name.registry.clone(),
            http: is_loopback(&name.registry) || reg.insecure.iter().any(|h| h == &name.registry),
        });
    }
    out
}

impl Puller {
    /// A puller into `store`.
    pub fn new(store: ImageStore, registries: Registries) -> Puller {
        // reqwest is built without a bundled crypto provider: use ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Puller {
            store,
            registries: Arc::new(registries),
            inflight: Arc::default(),
        }
    }

    /// Pulls `reference` (one download for concurrent callers).
    pub async fn pull(&self, reference: &str, auth: Option<Credentials>) -> Result<Image> {
        let name = reference::parse(reference)?;
        let key = name.full();
        let fut = {
            let mut map = self.inflight.lock().expect("poisoned");
            map.entry(key.clone())
                .or_insert_with(|| {
                    let this = self.clone();
                    let name = name.clone();
                    async move { this.pull_now(&name, auth).await.map_err(|e| e.to_string()) }
                        .boxed()
                        .shared()
                })
                .clone()
        };
        let res = fut.await;
        self.inflight.lock().expect("poisoned").remove(&key);
        res.map_err(|message| Error::Pull {
            reference: reference.to_string(),
            message: message
                .strip_prefix(&format!("pulling {key}: "))
                .map(str::to_string)
                .unwrap_or(message),
        })
    }

    async fn pull_now(&self, name: &Name, auth: Option<Credentials>) -> Result<Image> {
        let auth = match auth {
            None => RegistryAuth::Anonymous,
            Some(Credentials::Basic { username, password }) => {
                RegistryAuth::Basic(username, password)
            }
            Some(Credentials::Bearer(t)) => RegistryAuth::Bearer(t),
        };
        let mut errors = Vec::new();
        for ep in endpoints(name, &self.registries) {
            match self.pull_from(name, &ep, &auth).await {
                Ok(img) => return Ok(img),
                Err(e) => {
                    tracing::info!(image = %name.full(), endpoint = %ep.host, "pull failed: {e}");
                    errors.push(if ep.host == name.registry {
                        e
                    } else {
                        format!("{} (mirror {})", e, ep.host)
                    });
                }
            }
        }
        Err(Error::Pull {
            reference: name.full(),
            message: if errors.is_empty() {
                "no registry endpoint to pull from".into()
            } else {
                errors.join("; ")
            },
        })
    }

    async fn pull_from(
        &self,
        name: &Name,
        ep: &Endpoint,
        auth: &RegistryAuth,
    ) -> Result<Image, String> {
        let client = Client::new(ClientConfig {
            protocol: if ep.http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            platform_resolver: Some(Box::new(linux_amd64_resolver)),
            ..Default::default()
        });
        let oref = match (&name.digest, &name.tag) {
            (Some(d), _) => {
                Reference::with_digest(ep.host.clone(), name.repository.clone(), d.clone())
            }
            (None, Some(t)) => {
                Reference::with_tag(ep.host.clone(), name.repository.clone(), t.clone())
            }
            (None, None) => {
                Reference::with_tag(ep.host.clone(), name.repository.clone(), "latest".into())
            }
        };
        let (manifest, digest, config) = client
            .pull_manifest_and_config(&oref, auth)
            .await
            .map_err(|e| e.to_string())?;
        let config_digest = self
            .store
            .put_blob(config.as_bytes())
            .map_err(|e| e.to_string())?;
        if config_digest != manifest.config.digest {
            return Err(format!(
                "config digest mismatch: manifest says {}, got {config_digest}",
                manifest.config.digest
            ));
        }
        let mut layers = Vec::new();
        for l in &manifest.layers {
            if !self.store.blob_path(&l.digest).exists() {
                let tmp = self.store.tmp_path("pull");
                let file = tokio::fs::File::create(&tmp)
                    .await
                    .map_err(|e| e.to_string())?;
                let res = client.pull_blob(&oref, l, file).await;
                if let Err(e) = res {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e.to_string());
                }
                ImageStore::verify_file(&tmp, &l.digest).map_err(|e| e.to_string())?;
                self.store
                    .adopt_blob(&tmp, &l.digest)
                    .map_err(|e| e.to_string())?;
            }
            layers.push(l.digest.clone());
        }
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
        let _ = self.store.put_blob(&manifest_bytes);
        let names: Vec<String> = if name.digest.is_none() {
            vec![name.full()]
        } else {
            Vec::new()
        };
        let digest_names = vec![format!("{}@{digest}", name.repo())];
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.commit(&digest, &config_digest, &layers, &names, &digest_names)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(host: &str, eps: &[&str], only: bool) -> rkube_host::Mirror {
        rkube_host::Mirror {
            host: host.into(),
            endpoints: eps.iter().map(|s| s.to_string()).collect(),
            mirror_only: only,
        }
    }

    #[test]
    fn endpoints_in_order() {
        let n = reference::parse("busybox").unwrap();
        let reg = Registries {
            mirrors: vec![mirror(
                "docker.io",
                &["http://127.0.0.1:5000", "https://m.example/v2"],
                false,
            )],
            insecure: vec![],
        };
        assert_eq!(
            endpoints(&n, &reg),
            vec![
                Endpoint {
                    host: "127.0.0.1:5000".into(),
                    http: true
                },
                Endpoint {
                    host: "m.example".into(),
                    http: false
                },
                Endpoint {
                    host: "docker.io".into(),
                    http: false
                },
            ]
        );
        let only = Registries {
            mirrors: vec![mirror("docker.io", &["http://127.0.0.1:5000"], true)],
            insecure: vec![],
        };
        assert_eq!(
            endpoints(&n, &only),
            vec![Endpoint {
                host: "127.0.0.1:5000".into(),
                http: true
            }]
        );
        let q = reference::parse("reg.lan:5000/app:1").unwrap();
        let ins = Registries {
            mirrors: vec![],
            insecure: vec!["reg.lan:5000".into()],
        };
        assert_eq!(
            endpoints(&q, &ins),
            vec![Endpoint {
                host: "reg.lan:5000".into(),
                http: true
            }]
        );
        let l = reference::parse("127.0.0.1:5000/app:1").unwrap();
        assert!(endpoints(&l, &Registries::default())[0].http);
    }
}
