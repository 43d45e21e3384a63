//! What the webhook tests set up, as upstream's BeforeEach does: a CA and
//! a serving certificate for the webhook Service, the agnhost `webhook` or
//! `crd-conversion-webhook` server in a Deployment behind that Service,
//! namespaces labelled so that the webhooks only ever see this test's
//! objects, test CRDs, and a [`Cleanup`] that deletes every cluster-scoped
//! object a test made, also when it fails.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::Client;
use serde_json::{json, Value};

use crate::ctx::{from_json, suffix, wait_for, Ctx};

// ------------------------------------------------------------- cleanup

/// A cluster-scoped object (or extra namespace) a test made.
#[derive(Clone, Debug)]
pub(super) enum Undo {
    Validating(String),
    Mutating(String),
    Namespace(String),
    Crd(String),
    Policy(String),
    PolicyBinding(String),
}

/// Deletes what a test registered, newest first: explicitly at the end
/// of [`run`], or from `Drop` when the test's future is dropped early.
pub(super) struct Cleanup {
    client: Client,
    items: Mutex<Vec<Undo>>,
}

impl Cleanup {
    fn new(client: Client) -> Arc<Cleanup> {
        Arc::new(Cleanup {
            client,
            items: Mutex::new(Vec::new()),
        })
    }

    /// Registers `u` for deletion.
    pub(super) fn add(&self, u: Undo) {
        self.items.lock().expect("cleanup lock").push(u);
    }

    fn take(&self) -> Vec<Undo> {
        std::mem::take(&mut *self.items.lock().expect("cleanup lock"))
    }

    /// Deletes everything registered; the first failure is returned after
    /// trying them all.
    pub(super) async fn run(&self) -> Result<()> {
        undo_all(self.client.clone(), self.take()).await
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let items = self.take();
        if items.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            rt.spawn(async move {
                let _ = undo_all(client, items).await;
            });
        }
    }
}

/// Whether `e` is a failure to reach the API server (a client error that
/// is not an API status).
fn unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<kube::Error>()
            .is_some_and(|k| !matches!(k, kube::Error::Api(_)))
    })
}

/// Undoes `u`, retrying for up to a minute while the API server cannot be
/// reached (it may be restarting): nothing of a test should outlive it.
async fn undo_retrying(client: &Client, u: &Undo) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match undo(client, u).await {
            Err(e) if unreachable(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_secs(3)).await
            }
            other => return other,
        }
    }
}

async fn undo_all(client: Client, mut items: Vec<Undo>) -> Result<()> {
    let mut first = Ok(());
    while let Some(u) = items.pop() {
        let res = undo_retrying(&client, &u)
            .await
            .with_context(|| format!("cleaning up {u:?}"));
        if first.is_ok() {
            first = res;
        }
    }
    first
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Deletes `name`, ignoring 404.
async fn delete_ignore_missing<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a webhook configuration; if a (wrongly applied) webhook blocks
/// that, empties its webhooks first (an update, which none of the tests'
/// webhooks intercept) and deletes again.
async fn delete_webhook_config<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if delete_ignore_missing(api, name).await.is_ok() {
        return Ok(());
    }
    let _ = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"webhooks": []})),
        )
        .await;
    delete_ignore_missing(api, name).await
}

async fn undo(client: &Client, u: &Undo) -> Result<()> {
    match u {
        Undo::Validating(n) => {
            delete_webhook_config(
                &Api::<ValidatingWebhookConfiguration>::all(client.clone()),
                n,
            )
            .await
        }
        Undo::Mutating(n) => {
            delete_webhook_config(&Api::<MutatingWebhookConfiguration>::all(client.clone()), n)
                .await
        }
        Undo::Namespace(n) => {
            match Api::<Namespace>::all(client.clone())
                .delete(n, &DeleteParams::background())
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if not_found(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Undo::Crd(n) => {
            let crds = Api::<CustomResourceDefinition>::all(client.clone());
            delete_ignore_missing(&crds, n).await?;
            wait_for(&format!("CRD {n} gone"), Duration::from_secs(60), || {
                let crds = crds.clone();
                async move { Ok(crds.get_metadata_opt(n).await?.is_none().then_some(())) }
            })
            .await
        }
        Undo::Policy(n) => {
            delete_ignore_missing(&Api::<ValidatingAdmissionPolicy>::all(client.clone()), n).await
        }
        Undo::PolicyBinding(n) => {
            delete_ignore_missing(
                &Api::<ValidatingAdmissionPolicyBinding>::all(client.clone()),
                n,
            )
            .await
        }
    }
}

/// Runs `body` with a fresh [`Cleanup`], then cleans up whatever `body`
/// returned; `body`'s error comes first.
pub(super) async fn run<F, Fut>(c: Ctx, body: F) -> Result<()>
where
    F: FnOnce(Ctx, Arc<Cleanup>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let cleanup = Cleanup::new(c.client.clone());
    let res = body(c, cleanup.clone()).await;
    let undone = cleanup.run().await;
    res.and(undone)
}

// ------------------------------------------------------------- errors

/// The text upstream's `err.Error()` gives: the Status message for API
/// errors, else the error itself.
pub(super) fn err_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// The API error's HTTP code and reason, if it is one.
pub(super) fn api_status(e: &kube::Error) -> Option<(u16, &str)> {
    match e {
        kube::Error::Api(s) => Some((s.code, s.reason.as_str())),
        _ => None,
    }
}

// ------------------------------------------------------------- certs

/// The webhook server's certificate material (PEM).
pub(super) struct Certs {
    /// The signing CA, for the webhooks' caBundle.
    pub ca: String,
    /// The server certificate for `<service>.<namespace>.svc`.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl Certs {
    /// The CA as a caBundle field value (base64 of the PEM).
    pub(super) fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca.as_bytes())
    }
}

/// A fresh CA and a server certificate it signed for
/// `<service>.<namespace>.svc` (upstream's setupServerCert).
pub(super) fn server_cert(namespace: &str, service: &str) -> Result<Certs> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "e2e-server-cert-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().context("generate the CA key")?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("self-sign the CA certificate")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let dns = format!("{service}.{namespace}.svc");
    let mut params = CertificateParams::new(vec![dns.clone()])?;
    params.distinguished_name.push(DnType::CommonName, dns);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().context("generate the server key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("sign the server certificate")?;
    Ok(Certs {
        ca: ca_cert.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

// ------------------------------------------------------------- server

/// One webhook server deployment (upstream's deployWebhookAndService and
/// deployCustomResourceWebhookAndService).
pub(super) struct Server {
    pub secret: &'static str,
    pub deployment: &'static str,
    pub service: &'static str,
    pub container: &'static str,
    pub volume: &'static str,
    /// agnhost subcommand.
    pub command: &'static str,
    /// Pod labels; the Service selects `selector`.
    pub labels: Value,
    pub selector: Value,
    pub service_labels: Value,
    pub service_port: i32,
    pub container_port: i32,
}

/// Fails on pods of `selector` whose container exited or is crash-looping
/// (so a webhook server that cannot start fails the test at once, with its
/// logs).
async fn crashed_server(c: &Ctx, selector: &str) -> Result<()> {
    let pods = c
        .pods()
        .list(&ListParams::default().labels(selector))
        .await?;
    for p in &pods.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        for cs in p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
        {
            let terminated = cs
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
            if let Some(t) = terminated {
                let logs = c.logs(&name, Some(&cs.name)).await.unwrap_or_default();
                bail!(
                    "webhook server pod {name} exited with code {} ({}); its output: {}",
                    t.exit_code,
                    t.reason.clone().unwrap_or_default(),
                    logs.trim()
                );
            }
        }
    }
    Ok(())
}

/// Creates the Secret, the Deployment (agnhost `command` on
/// `container_port`, ready by its HTTPS /readyz) and the Service, and
/// waits until the Service has the pod as its one endpoint.
pub(super) async fn deploy_server(c: &Ctx, s: &Server, certs: &Certs) -> Result<()> {
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v.as_bytes());
    c.create::<Secret>(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": s.secret},
        "type": "Opaque",
        "data": {"tls.crt": b64(&certs.cert), "tls.key": b64(&certs.key)},
    }))
    .await
    .with_context(|| format!("creating secret {}", s.secret))?;

    let port = s.container_port;
    c.create::<Deployment>(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": s.deployment, "labels": s.labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": s.labels},
            "strategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": s.labels},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": s.container,
                        "image": c.env.images.agnhost,
                        "args": [
                            s.command,
                            "--tls-cert-file=/webhook.local.config/certificates/tls.crt",
                            "--tls-private-key-file=/webhook.local.config/certificates/tls.key",
                            "--alsologtostderr",
                            "-v=4",
                            format!("--port={port}"),
                        ],
                        "ports": [{"containerPort": port}],
                        "readinessProbe": {
                            "httpGet": {"scheme": "HTTPS", "port": port, "path": "/readyz"},
                            "periodSeconds": 1, "successThreshold": 1, "failureThreshold": 30,
                        },
                        "volumeMounts": [{
                            "name": s.volume, "readOnly": true,
                            "mountPath": "/webhook.local.config/certificates",
                        }],
                    }],
                    "volumes": [{"name": s.volume, "secret": {"secretName": s.secret}}],
                },
            },
        },
    }))
    .await
    .with_context(|| format!("creating deployment {}", s.deployment))?;

    let selector = s
        .selector
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    // Polled by hand: a crashed server ends the wait at once.
    let deployments = c.api::<Deployment>();
    let deadline = tokio::time::Instant::now() + c.env.pod_start;
    loop {
        let d = deployments.get(s.deployment).await?;
        let st = d.status.clone().unwrap_or_default();
        if st.observed_generation >= d.metadata.generation
            && st.updated_replicas == Some(1)
            && st.available_replicas == Some(1)
        {
            break;
        }
        crashed_server(c, &selector).await?;
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "timed out after {:?} waiting for deployment {} to be ready: {:?}",
                c.env.pod_start,
                s.deployment,
                st
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": s.service, "labels": s.service_labels},
        "spec": {
            "selector": s.selector,
            "ports": [{"protocol": "TCP", "port": s.service_port, "targetPort": port}],
        },
    }))
    .await
    .with_context(|| format!("creating service {}", s.service))?;

    let endpoints = c.api::<Endpoints>();
    wait_for(
        &format!("service {} to have 1 endpoint", s.service),
        Duration::from_secs(30),
        || {
            let endpoints = endpoints.clone();
            async move {
                let n = endpoints
                    .get_opt(s.service)
                    .await?
                    .and_then(|e| e.subsets)
                    .unwrap_or_default()
                    .iter()
                    .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
                    .sum::<usize>();
                Ok((n == 1).then_some(()))
            }
        },
    )
    .await
}

// ------------------------------------------------------------- namespaces

/// Adds label `key: "true"` to namespace `ns` (upstream's labelNamespace).
pub(super) async fn label_namespace(c: &Ctx, ns: &str, key: &str) -> Result<()> {
    c.all::<Namespace>()
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {key: "true"}}})),
        )
        .await
        .with_context(|| format!("labelling namespace {ns}"))?;
    Ok(())
}

/// Creates namespace `<base>-xxxxx` with `labels` (deleted at cleanup);
/// returns its name.
pub(super) async fn create_namespace(
    c: &Ctx,
    cleanup: &Cleanup,
    base: &str,
    labels: Value,
) -> Result<String> {
    let name = c.name(base);
    let ns: Namespace = from_json(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    }))?;
    c.all::<Namespace>()
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    cleanup.add(Undo::Namespace(name.clone()));
    Ok(name)
}

// ------------------------------------------------------------- CRDs

/// A namespaced custom resource API of the test's namespace.
pub(super) fn cr_api(c: &Ctx, crd: &CustomResourceDefinition, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(&crd.spec.group, version, &crd.spec.names.kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
    Api::namespaced_with(c.client.clone(), &c.ns, &ar)
}

/// A CRD named `<plural>.<group>` for a random `e2e-test-<base>-xxxxx-crd`
/// kind, namespaced, with `versions` (upstream's genRandomCRD).
pub(super) fn random_crd(base: &str, group: &str, versions: Value) -> Value {
    let name = format!("e2e-test-{base}-{}-crd", suffix());
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{name}s.{group}")},
        "spec": {
            "group": group,
            "names": {"plural": format!("{name}s"), "singular": name, "kind": name, "listKind": format!("{name}List")},
            "scope": "Namespaced",
            "versions": versions,
        },
    })
}

/// A version allowing anything.
pub(super) fn open_version(name: &str, storage: bool) -> Value {
    json!({
        "name": name, "served": true, "storage": storage,
        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
    })
}

/// Creates CRD `obj` (deleted at cleanup) and waits until it is
/// Established and every served version answers a list.
pub(super) async fn create_crd(
    c: &Ctx,
    cleanup: &Cleanup,
    obj: Value,
) -> Result<CustomResourceDefinition> {
    let crds = c.all::<CustomResourceDefinition>();
    let crd: CustomResourceDefinition = from_json(obj)?;
    let name = crd.metadata.name.clone().unwrap_or_default();
    crds.create(&PostParams::default(), &crd)
        .await
        .with_context(|| format!("creating CustomResourceDefinition {name}"))?;
    cleanup.add(Undo::Crd(name.clone()));
    let crd = wait_for(
        &format!("CRD {name} established"),
        Duration::from_secs(30),
        || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let crd = crds.get(&name).await?;
                let established = crd
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    });
                Ok(established.then_some(crd))
            }
        },
    )
    .await?;
    for v in crd.spec.versions.iter().filter(|v| v.served) {
        let api = cr_api(c, &crd, &v.name);
        wait_for(
            &format!("{name}/{} to be served", v.name),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                async move { Ok(api.list(&ListParams::default()).await.ok().map(|_| ())) }
            },
        )
        .await?;
    }
    Ok(crd)
}

/// The served versions of a CRD (upstream's servedAPIVersions).
pub(super) fn served_versions(crd: &CustomResourceDefinition) -> Vec<String> {
    crd.spec
        .versions
        .iter()
        .filter(|v| v.served)
        .map(|v| v.name.clone())
        .collect()
}

// ------------------------------------------------------------- admission

/// The admission webhook server of the AdmissionWebhook tests.
pub(super) const SERVICE: &str = "e2e-test-webhook";
pub(super) const SERVICE_PORT: i32 = 8443;
const CONTAINER_PORT: i32 = 8444;

/// Fails at once when the API server does not serve webhook
/// configurations (nothing else in these tests can work then).
pub(super) async fn require_webhook_api(c: &Ctx) -> Result<()> {
    match c
        .all::<ValidatingWebhookConfiguration>()
        .list(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => bail!(
            "the API server does not serve admissionregistration.k8s.io/v1 validatingwebhookconfigurations (404): no admission webhooks"
        ),
        Err(e) => Err(e).context("listing validatingwebhookconfigurations"),
    }
}

/// A test's admission webhook setup: the server deployed in the test's
/// namespace, the test namespace labelled `<ns>: "true"`, and a markers
/// namespace labelled `<ns>-markers: "true"` for readiness probes.
pub(super) struct Hooks {
    pub c: Ctx,
    pub cleanup: Arc<Cleanup>,
    /// The label key (= the test's namespace) every webhook selects on.
    pub unique: String,
    pub markers: String,
    ca_bundle: String,
}

impl Hooks {
    /// Upstream's BeforeEach: label the namespace, make the markers
    /// namespace, the certificate and the webhook server.
    pub(super) async fn setup(c: &Ctx, cleanup: Arc<Cleanup>) -> Result<Hooks> {
        require_webhook_api(c).await?;
        let unique = c.ns.clone();
        label_namespace(c, &c.ns, &unique).await?;
        let markers = create_namespace(
            c,
            &cleanup,
            "webhook-markers",
            json!({format!("{unique}-markers"): "true"}),
        )
        .await?;
        let certs = server_cert(&c.ns, SERVICE)?;
        deploy_server(
            c,
            &Server {
                secret: "sample-webhook-secret",
                deployment: "sample-webhook-deployment",
                service: SERVICE,
                container: "sample-webhook",
                volume: "webhook-certs",
                command: "webhook",
                labels: json!({"app": "sample-webhook", "webhook": "true"}),
                selector: json!({"webhook": "true"}),
                service_labels: json!({"test": "webhook"}),
                service_port: SERVICE_PORT,
                container_port: CONTAINER_PORT,
            },
            &certs,
        )
        .await?;
        Ok(Hooks {
            c: c.clone(),
            cleanup,
            unique,
            markers,
            ca_bundle: certs.ca_bundle(),
        })
    }

    /// A clientConfig calling `path` on the webhook service, trusting the
    /// test's CA (or no CA at all, so every call fails).
    pub(super) fn client_config(&self, path: &str, with_ca: bool) -> Value {
        let mut cc = json!({"service": {
            "namespace": self.c.ns, "name": SERVICE, "path": path, "port": SERVICE_PORT,
        }});
        if with_ca {
            cc["caBundle"] = json!(self.ca_bundle);
        }
        cc
    }

    /// `{<ns>: "true"}` as a label selector.
    pub(super) fn this_namespace(&self) -> Value {
        json!({"matchLabels": {self.unique.clone(): "true"}})
    }

    /// A webhook of `name` calling `path` for `operations` on `resources`
    /// of group `group`/`versions`, scoped to this test's namespace.
    pub(super) fn hook(
        &self,
        name: &str,
        path: &str,
        operations: &[&str],
        group: &str,
        versions: &[&str],
        resources: &[&str],
    ) -> Value {
        json!({
            "name": name,
            "rules": [{"operations": operations, "apiGroups": [group], "apiVersions": versions, "resources": resources}],
            "clientConfig": self.client_config(path, true),
            "sideEffects": "None",
            "admissionReviewVersions": ["v1", "v1beta1"],
            "namespaceSelector": self.this_namespace(),
        })
    }

    /// Upstream's newDenyPodWebhookFixture.
    pub(super) fn deny_pod(&self) -> Value {
        self.hook(
            "deny-unwanted-pod-container-name-and-label.k8s.io",
            "/pods",
            &["CREATE"],
            "",
            &["v1"],
            &["pods"],
        )
    }

    /// Upstream's newDenyConfigMapWebhookFixture: skips namespaces labelled
    /// `skip-webhook-admission: yes`.
    pub(super) fn deny_configmap(&self) -> Value {
        let mut h = self.hook(
            "deny-unwanted-configmap-data.k8s.io",
            "/configmaps",
            &["CREATE", "UPDATE", "DELETE"],
            "",
            &["v1"],
            &["configmaps"],
        );
        h["namespaceSelector"]["matchExpressions"] = json!([
            {"key": "skip-webhook-admission", "operator": "NotIn", "values": ["yes"]},
        ]);
        h
    }

    /// Upstream's newMutateConfigMapWebhookFixture.
    pub(super) fn mutate_configmap(&self, stage: u32) -> Value {
        self.hook(
            &format!("adding-configmap-data-stage-{stage}.k8s.io"),
            "/mutating-configmaps",
            &["CREATE"],
            "",
            &["v1"],
            &["configmaps"],
        )
    }

    /// A configmap-create webhook the API server cannot call (no CA
    /// bundle): upstream's failingWebhook.
    pub(super) fn failing(&self, name: &str) -> Value {
        let mut h = self.hook(
            name,
            "/configmaps",
            &["CREATE"],
            "",
            &["v1"],
            &["configmaps"],
        );
        h["clientConfig"] = self.client_config("/configmaps", false);
        h
    }

    /// Upstream's new{Validating,Mutating}IsReadyWebhookFixture: denies
    /// marker configmaps in the markers namespace, fail-open.
    pub(super) fn is_ready(&self, mutating: bool) -> Value {
        let kind = if mutating { "mutating" } else { "validating" };
        let mut h = self.hook(
            &format!("{kind}-is-webhook-configuration-ready.k8s.io"),
            "/always-deny",
            &["CREATE"],
            "",
            &["v1"],
            &["configmaps"],
        );
        h["failurePolicy"] = json!("Ignore");
        h["namespaceSelector"] =
            json!({"matchLabels": {format!("{}-markers", self.unique): "true"}});
        h["objectSelector"] = self.this_namespace();
        h
    }

    /// Checks that every webhook selects on this test's namespace or
    /// objects (upstream refuses configurations that could touch other
    /// tests).
    fn check_isolated(&self, config: &Value) -> Result<()> {
        let name = config["metadata"]["name"].as_str().unwrap_or("");
        for h in config["webhooks"].as_array().into_iter().flatten() {
            let scoped = ["namespaceSelector", "objectSelector"]
                .iter()
                .any(|s| h[*s]["matchLabels"][&self.unique] == "true");
            ensure!(
                scoped,
                "webhook {} in config {name} has no namespace or object selector with {}=\"true\", and can interfere with other tests",
                h["name"],
                self.unique
            );
        }
        Ok(())
    }

    /// Creates a ValidatingWebhookConfiguration (deleted at cleanup).
    pub(super) async fn create_validating(
        &self,
        name: &str,
        labels: Value,
        webhooks: Vec<Value>,
    ) -> Result<ValidatingWebhookConfiguration> {
        let obj = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name, "labels": labels},
            "webhooks": webhooks,
        });
        self.check_isolated(&obj)?;
        let cfg: ValidatingWebhookConfiguration = from_json(obj)?;
        let created = self
            .c
            .all::<ValidatingWebhookConfiguration>()
            .create(&PostParams::default(), &cfg)
            .await
            .with_context(|| format!("registering validating webhook config {name}"))?;
        self.cleanup.add(Undo::Validating(name.to_string()));
        Ok(created)
    }

    /// Creates a MutatingWebhookConfiguration (deleted at cleanup).
    pub(super) async fn create_mutating(
        &self,
        name: &str,
        labels: Value,
        webhooks: Vec<Value>,
    ) -> Result<MutatingWebhookConfiguration> {
        let obj = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name, "labels": labels},
            "webhooks": webhooks,
        });
        self.check_isolated(&obj)?;
        let cfg: MutatingWebhookConfiguration = from_json(obj)?;
        let created = self
            .c
            .all::<MutatingWebhookConfiguration>()
            .create(&PostParams::default(), &cfg)
            .await
            .with_context(|| format!("registering mutating webhook config {name}"))?;
        self.cleanup.add(Undo::Mutating(name.to_string()));
        Ok(created)
    }

    /// Sends marker configmaps to the markers namespace until the
    /// is-ready webhook denies one (upstream's
    /// waitWebhookConfigurationReady): the configuration is in effect.
    pub(super) async fn wait_ready(&self) -> Result<()> {
        let cms: Api<ConfigMap> = Api::namespaced(self.c.client.clone(), &self.markers);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let marker: ConfigMap = from_json(json!({
                "metadata": {"name": format!("marker-{}-{}", suffix(), suffix()), "labels": {self.unique.clone(): "true"}},
            }))?;
            match cms.create(&PostParams::default(), &marker).await {
                Err(e) if err_text(&e).contains("denied") => return Ok(()),
                Err(e) => return Err(e).context("creating a marker configmap"),
                Ok(m) => {
                    let name = m.metadata.name.unwrap_or_default();
                    let _ = cms.delete(&name, &DeleteParams::default()).await;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("timed out after 30s waiting for the webhook configuration to be ready: marker configmaps are still admitted (webhooks not called?)");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
