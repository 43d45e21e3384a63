//! What a test gets: a client, its own namespace, the test images, and
//! helpers for the steps upstream's e2e framework offers (create and wait
//! for pods, read logs, exec, run kubectl, poll until a condition holds).

use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, AttachParams, DeleteParams, LogParams, PostParams};
use kube::Client;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::images::Images;

/// Settings shared by every test of a run.
#[derive(Clone, Debug)]
pub struct Env {
    /// The test images' references.
    pub images: Images,
    /// kubeconfig for kubectl (None: kubectl's default).
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context for kubectl (None: the current one).
    pub context: Option<String>,
    /// How long a pod may take to start or finish.
    pub pod_start: Duration,
}

/// One test's view of the cluster.
#[derive(Clone)]
pub struct Ctx {
    /// Client of the cluster under test.
    pub client: Client,
    /// The namespace made for this test (deleted after it).
    pub ns: String,
    /// Settings of the run.
    pub env: Arc<Env>,
}

/// A short random suffix for names (lowercase letters and digits).
pub fn suffix() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut r = rand::rng();
    (0..5)
        .map(|_| CHARS[r.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Decodes a JSON value into a typed object, naming what it was for.
pub fn from_json<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).context("test object does not decode")
}

/// Polls `check` every 250 ms until it yields `Some`, or fails after
/// `timeout` naming `what` and the last error seen.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_err {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Phase of a pod ("" when unknown).
pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod's Ready condition is True.
pub fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether the node's Ready condition is True.
pub fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready and not cordoned (upstream's IsNodeSchedulable).
pub fn node_schedulable(n: &Node) -> bool {
    let cordoned = n
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    node_ready(n) && !cordoned
}

impl Ctx {
    /// Namespaced API of the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Cluster-wide API (cluster-scoped kinds, or all namespaces).
    pub fn all<K>(&self) -> Api<K>
    where
        K: kube::Resource,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::all(self.client.clone())
    }

    /// Pods of the test's namespace.
    pub fn pods(&self) -> Api<Pod> {
        self.api()
    }

    /// A name unique in this run: `prefix-xxxxx`.
    pub fn name(&self, prefix: &str) -> String {
        format!("{prefix}-{}", suffix())
    }

    /// Creates a namespaced object from JSON in the test's namespace.
    pub async fn create<K>(&self, obj: Value) -> Result<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let o: K = from_json(obj)?;
        Ok(self.api::<K>().create(&PostParams::default(), &o).await?)
    }

    /// Creates a pod from JSON.
    pub async fn create_pod(&self, pod: Value) -> Result<Pod> {
        self.create::<Pod>(pod).await.context("create pod")
    }

    /// Waits until pod `name` satisfies `ok` (described by `what`); fails
    /// early when the pod fails while `ok` does not hold.
    pub async fn wait_pod(&self, name: &str, what: &str, ok: impl Fn(&Pod) -> bool) -> Result<Pod> {
        let pods = self.pods();
        wait_for(&format!("pod {name} {what}"), self.env.pod_start, || {
            let pods = pods.clone();
            let ok = &ok;
            async move {
                let p = pods.get(name).await?;
                if ok(&p) {
                    return Ok(Some(p));
                }
                if phase(&p) == "Failed" {
                    bail!("pod {name} failed: {:?}", p.status);
                }
                Ok(None)
            }
        })
        .await
    }

    /// Waits until the pod is Running and Ready.
    pub async fn wait_running(&self, name: &str) -> Result<Pod> {
        self.wait_pod(name, "Running and Ready", |p| {
            phase(p) == "Running" && ready(p)
        })
        .await
    }

    /// Waits until the pod has Succeeded.
    pub async fn wait_succeeded(&self, name: &str) -> Result<Pod> {
        self.wait_pod(name, "Succeeded", |p| phase(p) == "Succeeded")
            .await
    }

    /// Creates `pod`, waits until it succeeds, and returns the logs of
    /// `container` (the first container when None), as upstream's
    /// TestContainerOutput does.
    pub async fn pod_output(&self, pod: Value, container: Option<&str>) -> Result<String> {
        let p = self.create_pod(pod).await?;
        let name = p.metadata.name.clone().unwrap_or_default();
        self.wait_succeeded(&name).await?;
        self.logs(&name, container).await
    }

    /// Like [`Ctx::pod_output`], then checks that the output contains
    /// every one of `expected`.
    pub async fn expect_output(
        &self,
        pod: Value,
        container: Option<&str>,
        expected: &[&str],
    ) -> Result<String> {
        let out = self.pod_output(pod, container).await?;
        for e in expected {
            if !out.contains(e) {
                bail!("output does not contain {e:?}; output:\n{out}");
            }
        }
        Ok(out)
    }

    /// Logs of `container` (the only/first one when None) of pod `name`.
    pub async fn logs(&self, name: &str, container: Option<&str>) -> Result<String> {
        let lp = LogParams {
            container: container.map(String::from),
            ..Default::default()
        };
        Ok(self.pods().logs(name, &lp).await?)
    }

    /// Runs `cmd` in `container` (None: the first) of pod `name`; returns
    /// stdout, failing with stderr when the command exits non-zero.
    pub async fn exec(&self, name: &str, container: Option<&str>, cmd: &[&str]) -> Result<String> {
        let mut ap = AttachParams::default().stdout(true).stderr(true);
        if let Some(c) = container {
            ap = ap.container(c);
        }
        let mut proc = self
            .pods()
            .exec(name, cmd.iter().map(|s| s.to_string()), &ap)
            .await
            .with_context(|| format!("exec {cmd:?} in {name}"))?;
        let mut out = String::new();
        let mut err = String::new();
        let status = proc.take_status();
        let (mut so, mut se) = (proc.stdout(), proc.stderr());
        let read_out = async {
            if let Some(s) = so.as_mut() {
                let _ = s.read_to_string(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(s) = se.as_mut() {
                let _ = s.read_to_string(&mut err).await;
            }
        };
        tokio::join!(read_out, read_err);
        let st = match status {
            Some(s) => s.await,
            None => None,
        };
        let _ = proc.join().await;
        if let Some(st) = st {
            if st.status.as_deref() == Some("Failure") {
                bail!(
                    "exec {cmd:?} in {name}: {} (stderr: {err})",
                    st.message.unwrap_or_default()
                );
            }
        }
        Ok(out)
    }

    /// Deletes pod `name` and waits until it is gone.
    pub async fn delete_pod(&self, name: &str) -> Result<()> {
        let pods = self.pods();
        match pods.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        wait_for(&format!("pod {name} gone"), self.env.pod_start, || {
            let pods = pods.clone();
            async move { Ok(pods.get_opt(name).await?.is_none().then_some(())) }
        })
        .await
    }

    /// A kubectl command aimed at the cluster under test.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        if let Some(k) = &self.env.kubeconfig {
            c.arg("--kubeconfig").arg(k);
        }
        if let Some(ctx) = &self.env.context {
            c.arg("--context").arg(ctx);
        }
        c.args(args);
        c
    }

    /// Runs kubectl with `stdin`; returns (success, stdout, stderr).
    pub async fn kubectl_output(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<(bool, String, String)> {
        let mut c = self.kubectl_command(args);
        let stdin = stdin.map(String::from);
        tokio::task::spawn_blocking(move || {
            c.stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            let mut child = c.spawn().context("run kubectl (is it on PATH?)")?;
            if let Some(s) = stdin {
                use std::io::Write;
                child.stdin.take().expect("piped").write_all(s.as_bytes())?;
            }
            let o = child.wait_with_output()?;
            Ok((
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ))
        })
        .await?
    }

    /// Runs kubectl; returns stdout, failing with stderr.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_stdin(args, None).await
    }

    /// Runs kubectl with `stdin`; returns stdout, failing with stderr.
    pub async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let (ok, out, err) = self.kubectl_output(args, stdin).await?;
        if !ok {
            bail!("kubectl {}: {}", args.join(" "), err.trim());
        }
        Ok(out)
    }
}

/// A pod object: `containers` in the test's style, with a short grace period.
pub fn pod(name: &str, spec: Value) -> Value {
    let mut full = serde_json::json!({"terminationGracePeriodSeconds": 1});
    if let (Some(f), Some(s)) = (full.as_object_mut(), spec.as_object()) {
        for (k, v) in s {
            f.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": full,
    })
}
