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
