//! Readiness probe: `GET https://127.0.0.1:<port>/readyz` trusting only the
//! profile's CA and presenting the admin client certificate.

use std::time::Duration;

use crate::profile::Profile;
use crate::{Error, Result};

/// An HTTPS client for one profile's API server.
#[derive(Clone, Debug)]
pub struct Prober {
    client: reqwest::Client,
    url: String,
}

impl Prober {
    /// A prober for `profile` on `port`; reads the certificates from the
    /// profile's standalone kubeconfig material in `pki/`.
    pub fn new(profile: &Profile, port: u16, timeout: Duration) -> Result<Self> {
        let pki = profile.pki_dir();
        let read = |name: &str| {
            let path = pki.join(name);
            std::fs::read(&path).map_err(Error::io("read", path))
        };
        let ca = read("ca.crt")?;
        let mut identity = read("admin.crt")?;
        identity.push(b'\n');
        identity.extend(read("admin.key")?);
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy();
        for cert in reqwest::Certificate::from_pem_bundle(&ca).map_err(Error::ProbeClient)? {
            builder = builder.add_root_certificate(cert);
        }
        if let Ok(id) = reqwest::Identity::from_pem(&identity) {
            builder = builder.identity(id);
        }
        Ok(Self {
            client: builder.build().map_err(Error::ProbeClient)?,
            url: format!("{}/readyz", crate::pipeline::server_url(port)),
        })
    }

    /// Whether `/readyz` answers 200.
    pub async fn ready(&self) -> bool {
        match self.client.get(&self.url).send().await {
            Ok(resp) => resp.status().is_success(),
            Err(e) => {
                tracing::debug!(error = %e, "readyz probe failed");
                false
            }
        }
    }
}
