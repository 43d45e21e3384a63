//! Container probes: one attempt ([`probe_once`]: exec over CRI `ExecSync`,
//! httpGet, tcpSocket, gRPC health) and the per-probe state machine
//! ([`ProbeWorker`]: initial delay, period, success/failure thresholds) that
//! turns attempts into liveness, readiness and startup results, with
//! [`ContainerProbes`] combining a container's three probes (startup gates
//! the other two).

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rkube_cri::api::ExecSyncRequest;

/// The user agent of upstream kubelet's HTTP probes.
pub const PROBE_USER_AGENT: &str = "kube-probe/1.33";

/// The outcome of one probe attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// The check passed.
    Success,
    /// The check failed; the message says why (shown in the probe event).
    Failure(String),
    /// The check could not be run (e.g. the runtime did not answer); the
    /// result is thrown away rather than counted.
    Unknown(String),
}

fn timeout_of(probe: &Probe) -> Duration {
    Duration::from_secs(probe.timeout_seconds.filter(|t| *t > 0).unwrap_or(1) as u64)
}

/// Runs one attempt of `probe` against a container.
pub async fn probe_once(
    cri: &rkube_cri::Clients,
    probe: &Probe,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
) -> ProbeResult {
    let timeout = timeout_of(probe);
    if let Some(exec) = &probe.exec {
        let cmd = crate::env::expand_static(exec.command.as_deref().unwrap_or(&[]), container);
        return match exec_sync(cri, container_id, cmd.clone(), timeout).await {
            Ok((0, _)) => ProbeResult::Success,
            Ok((_, out)) => ProbeResult::Failure(out),
            Err(ExecError::Timeout) => {
                ProbeResult::Failure(format!("command {:?} timed out", cmd.join(" ")))
            }
            Err(ExecError::Rpc(s)) => ProbeResult::Unknown(s),
        };
    }
    if let Some(h) = &probe.http_get {
        return match http_get(h, container, pod_ip, timeout, PROBE_USER_AGENT).await {
            Ok((code, _)) if (200..400).contains(&code) => ProbeResult::Success,
            Ok((code, body)) => {
                let mut m = format!("HTTP probe failed with statuscode: {code}");
                if !body.is_empty() {
                    tracing::debug!(%code, %body, "http probe failed");
                }
                m.truncate(10 * 1024);
                ProbeResult::Failure(m)
            }
            Err(e) => ProbeResult::Failure(e),
        };
    }
    if let Some(t) = &probe.tcp_socket {
        let port = match resolve_port(&t.port, container) {
            Ok(p) => p,
            Err(e) => return ProbeResult::Unknown(e),
        };
        let host = t
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(pod_ip);
        return tcp_check(host, port, timeout).await;
    }
    if let Some(g) = &probe.grpc {
        let Ok(port) = u16::try_from(g.port) else {
            return ProbeResult::Unknown(format!("invalid port number: {}", g.port));
        };
        return grpc_check(pod_ip, port, g.service.as_deref().unwrap_or(""), timeout).await;
    }
    ProbeResult::Unknown("missing probe handler".into())
}

/// Why an `ExecSync` did not give an exit code.
pub(crate) enum ExecError {
    /// The command ran past its timeout.
    Timeout,
    /// The runtime failed.
    Rpc(String),
}

/// `ExecSync` with a timeout: `(exit code, stdout+stderr)`.
pub(crate) async fn exec_sync(
    cri: &rkube_cri::Clients,
    container_id: &str,
    cmd: Vec<String>,
    timeout: Duration,
) -> Result<(i32, String), ExecError> {
    let mut rt = cri.runtime.clone();
    let req = ExecSyncRequest {
        container_id: container_id.to_string(),
        cmd,
        timeout: timeout.as_secs().max(1) as i64,
    };
    let call = rt.exec_sync(req);
    match tokio::time::timeout(timeout + Duration::from_secs(2), call).await {
        Err(_) => Err(ExecError::Timeout),
        Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded => Err(ExecError::Timeout),
        Ok(Err(s)) => Err(ExecError::Rpc(s.message().to_string())),
        Ok(Ok(r)) => {
            let r = r.into_inner();
            let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
            out.push_str(&String::from_utf8_lossy(&r.stderr));
            Ok((r.exit_code, out))
        }
    }
}

/// Resolves a probe/handler port: a number, or the name of a container port
/// (or a number written as a string).
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .or_else(|| name.parse().ok())
            .ok_or_else(|| format!("couldn't find port: {name:?} in {}", container.name))?,
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {n}"))
}

fn http_client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        build_http_client().unwrap_or_else(|e| {
            tracing::error!(error = %e, "building the probe HTTP client");
            reqwest::Client::new()
        })
    })
}

/// The probe HTTP client: no certificate checks, no proxy, no keep-alive;
/// same-host redirects are followed (up to 10), a redirect to another host
/// ends the chain and its 3xx counts, as upstream does.
fn build_http_client() -> reqwest::Result<reqwest::Client> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 10 {
            return attempt.error("stopped after 10 redirects");
        }
        let same = attempt
            .previous()
            .first()
            .is_some_and(|first| first.host_str() == attempt.url().host_str());
        if same {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(policy)
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
}

/// An HTTP GET as probes and hooks do it: `(status, first 10 KiB of body)`,
/// or the transport error.
pub(crate) async fn http_get(
    h: &HTTPGetAction,
    container: &Container,
    pod_ip: &str,
    timeout: Duration,
    user_agent: &str,
) -> Result<(u16, String), String> {
    let port = resolve_port(&h.port, container)?;
    let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    let host = h
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .unwrap_or(pod_ip);
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let path = h.path.as_deref().unwrap_or("");
    let sep = if path.starts_with('/') { "" } else { "/" };
    let url = format!("{scheme}://{host}:{port}{sep}{path}");
    let mut req = http_client().get(&url).timeout(timeout);
    let headers = h.http_headers.as_deref().unwrap_or(&[]);
    let has = |n: &str| headers.iter().any(|x| x.name.eq_ignore_ascii_case(n));
    if !has("user-agent") {
        req = req.header("User-Agent", user_agent);
    }
    if !has("accept") {
        req = req.header("Accept", "*/*");
    }
    for hd in headers {
        req = req.header(hd.name.as_str(), hd.value.as_str());
    }
    let mut resp = req.send().await.map_err(|e| error_chain(&e))?;
    let code = resp.status().as_u16();
    let mut body = Vec::new();
    while body.len() < 10 * 1024 {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    body.truncate(10 * 1024);
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

async fn tcp_check(host: &str, port: u16, timeout: Duration) -> ProbeResult {
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => ProbeResult::Success,
        Ok(Err(e)) => ProbeResult::Failure(format!("dial tcp {addr}: connect: {e}")),
        Err(_) => ProbeResult::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// grpc.health.v1.HealthCheckRequest.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// grpc.health.v1.HealthCheckResponse (status: 0 UNKNOWN, 1 SERVING,
/// 2 NOT_SERVING, 3 SERVICE_UNKNOWN).
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

async fn grpc_check(host: &str, port: u16, service: &str, timeout: Duration) -> ProbeResult {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let addr = format!("{host}:{port}");
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(e) => return ProbeResult::Unknown(e.to_string()),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            return ProbeResult::Failure(format!(
                "timeout: failed to connect service {addr:?} within {}s: {}",
                timeout.as_secs(),
                error_chain(&e)
            ))
        }
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        return ProbeResult::Failure(format!("failed to connect service {addr:?}: {e}"));
    }
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: service.to_string(),
    });
    if let Ok(v) = PROBE_USER_AGENT.parse() {
        req.metadata_mut().insert("user-agent", v);
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    match grpc.unary(req, path, codec).await {
        Ok(r) => match r.into_inner().status {
            1 => ProbeResult::Success,
            s => {
                let name = match s {
                    0 => "UNKNOWN",
                    2 => "NOT_SERVING",
                    3 => "SERVICE_UNKNOWN",
                    _ => "INVALID",
                };
                ProbeResult::Failure(format!("service unhealthy (responded with {name:?})"))
            }
        },
        Err(s) if s.code() == tonic::Code::Unimplemented => ProbeResult::Failure(format!(
            "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            s.message()
        )),
        Err(s) if s.code() == tonic::Code::DeadlineExceeded => ProbeResult::Failure(format!(
            "timeout: health rpc did not complete within {}s",
            timeout.as_secs()
        )),
        Err(s) => ProbeResult::Failure(format!(
            "rpc error: code = {:?} desc = {}",
            s.code(),
            s.message()
        )),
    }
}

/// Runs one attempt of a probe (the seam for [`ProbeWorker`]'s tests).
pub trait ProbeRunner: Send + Sync {
    /// One attempt.
    fn run(&self) -> impl Future<Output = ProbeResult> + Send;
}

/// [`ProbeRunner`] for a real container over CRI / the pod network.
#[derive(Clone, Debug)]
pub struct CriProbe {
    /// CRI clients.
    pub cri: rkube_cri::Clients,
    /// The probe.
    pub probe: Probe,
    /// The container spec (for named ports and static env).
    pub container: Container,
    /// CRI container id.
    pub container_id: String,
    /// The pod's IP.
    pub pod_ip: String,
}

impl ProbeRunner for CriProbe {
    fn run(&self) -> impl Future<Output = ProbeResult> + Send {
        probe_once(
            &self.cri,
            &self.probe,
            &self.container,
            &self.container_id,
            &self.pod_ip,
        )
    }
}

/// Which probe a worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// Failure restarts the container.
    Liveness,
    /// Gates the container's (and pod's) Ready condition.
    Readiness,
    /// Gates liveness and readiness; failure restarts the container.
    Startup,
}

impl ProbeKind {
    /// "Liveness", "Readiness", "Startup" (as in upstream's event messages).
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// A worker's current (thresholded) result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeState {
    /// No result yet (startup probes before their first verdict).
    Unknown,
    /// Passing.
    Success,
    /// Failing.
    Failure,
}

/// The probe state machine for one probe of one container: call
/// [`tick`](Self::tick) on a timer (e.g. every second); it runs the probe
/// when due and returns the new state when the thresholded result changes.
/// After a liveness or startup failure it holds until [`reset`](Self::reset)
/// (a new container).
#[derive(Debug)]
pub struct ProbeWorker<R = CriProbe> {
    kind: ProbeKind,
    runner: R,
    initial_delay: Duration,
    period: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    grace_seconds: Option<i64>,
    started_at: Instant,
    last_probe: Option<Instant>,
    state: ProbeState,
    last_ok: Option<bool>,
    run: u32,
    on_hold: bool,
    message: String,
}

impl<R: ProbeRunner> ProbeWorker<R> {
    /// A worker for `probe` of a container that started at `started_at`
    /// (defaults: initialDelay 0 s, period 10 s, success 1, failure 3).
    pub fn new(kind: ProbeKind, probe: &Probe, runner: R, started_at: Instant) -> Self {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        let count = |v: Option<i32>, d: i32| v.filter(|n| *n > 0).unwrap_or(d) as u32;
        let mut w = ProbeWorker {
            kind,
            runner,
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds.filter(|p| *p > 0), 10),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
            grace_seconds: probe.termination_grace_period_seconds,
            started_at,
            last_probe: None,
            state: ProbeState::Unknown,
            last_ok: None,
            run: 0,
            on_hold: false,
            message: String::new(),
        };
        w.reset(started_at);
        w
    }

    /// Starts over for a new container (initial state, delay from `started_at`).
    pub fn reset(&mut self, started_at: Instant) {
        self.started_at = started_at;
        self.last_probe = None;
        self.state = match self.kind {
            ProbeKind::Liveness => ProbeState::Success,
            ProbeKind::Readiness => ProbeState::Failure,
            ProbeKind::Startup => ProbeState::Unknown,
        };
        self.last_ok = None;
        self.run = 0;
        self.on_hold = false;
        self.message.clear();
    }

    /// Which probe this is.
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// The current thresholded result.
    pub fn state(&self) -> ProbeState {
        self.state
    }

    /// The output of the last failed (or unknown) attempt.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The probe's period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The probe-level terminationGracePeriodSeconds, if set.
    pub fn grace_seconds(&self) -> Option<i64> {
        self.grace_seconds
    }

    /// Whether the worker stopped probing (startup succeeded, or a
    /// liveness/startup failure waits for a new container).
    pub fn idle(&self) -> bool {
        self.on_hold || (self.kind == ProbeKind::Startup && self.state == ProbeState::Success)
    }

    /// Runs the probe if it is due at `now`; returns the new state when the
    /// thresholded result changed.
    pub async fn tick(&mut self, now: Instant) -> Option<ProbeState> {
        if self.idle() || now < self.started_at + self.initial_delay {
            return None;
        }
        if self.last_probe.is_some_and(|l| now < l + self.period) {
            return None;
        }
        self.last_probe = Some(now);
        let ok = match self.runner.run().await {
            ProbeResult::Success => true,
            ProbeResult::Failure(m) => {
                self.message = m;
                false
            }
            ProbeResult::Unknown(m) => {
                self.message = m;
                return None;
            }
        };
        if self.last_ok == Some(ok) {
            self.run += 1;
        } else {
            self.last_ok = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold {
            return None;
        }
        let new = if ok {
            ProbeState::Success
        } else {
            ProbeState::Failure
        };
        if !ok && matches!(self.kind, ProbeKind::Liveness | ProbeKind::Startup) {
            self.on_hold = true;
            self.run = 0;
        }
        let changed = new != self.state;
        self.state = new;
        changed.then_some(new)
    }
}

/// What a container's probes ask of the pod worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeEvent {
    /// The startup probe succeeded (or there is none): `started` = true.
    Started,
    /// Readiness changed.
    Ready(bool),
    /// A liveness or startup probe failed past its threshold: kill and
    /// restart the container (per the restart policy).
    Restart {
        /// Which probe failed.
        kind: ProbeKind,
        /// The last attempt's output.
        message: String,
        /// Probe-level terminationGracePeriodSeconds, if set.
        grace_seconds: Option<i64>,
    },
}

/// The startup, liveness and readiness workers of one container; startup
/// gates the other two, and without a readiness probe a started container
/// is ready.
#[derive(Debug)]
pub struct ContainerProbes<R = CriProbe> {
    /// Startup probe worker.
    pub startup: Option<ProbeWorker<R>>,
    /// Liveness probe worker.
    pub liveness: Option<ProbeWorker<R>>,
    /// Readiness probe worker.
    pub readiness: Option<ProbeWorker<R>>,
}

impl ContainerProbes<CriProbe> {
    /// Workers for the probes `container` declares, probing over `cri`.
    pub fn for_container(
        cri: &rkube_cri::Clients,
        container: &Container,
        container_id: &str,
        pod_ip: &str,
        started_at: Instant,
    ) -> Self {
        let mk = |kind, p: &Option<Probe>| {
            p.as_ref().map(|p| {
                let runner = CriProbe {
                    cri: cri.clone(),
                    probe: p.clone(),
                    container: container.clone(),
                    container_id: container_id.to_string(),
                    pod_ip: pod_ip.to_string(),
                };
                ProbeWorker::new(kind, p, runner, started_at)
            })
        };
        ContainerProbes {
            startup: mk(ProbeKind::Startup, &container.startup_probe),
            liveness: mk(ProbeKind::Liveness, &container.liveness_probe),
            readiness: mk(ProbeKind::Readiness, &container.readiness_probe),
        }
    }
}

impl<R: ProbeRunner> ContainerProbes<R> {
    /// Whether the container counts as started (status.started).
    pub fn started(&self) -> bool {
        self.startup
            .as_ref()
            .is_none_or(|s| s.state() == ProbeState::Success)
    }

    /// Whether the container is ready (status.ready).
    pub fn ready(&self) -> bool {
        self.started()
            && self
                .readiness
                .as_ref()
                .is_none_or(|r| r.state() == ProbeState::Success)
    }

    /// The earliest moment a tick is worth making (at most one second away).
    pub fn poll_interval(&self) -> Duration {
        [&self.startup, &self.liveness, &self.readiness]
            .into_iter()
            .flatten()
            .map(|w| w.period())
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1))
    }

    /// Starts all workers over for a new container.
    pub fn reset(&mut self, started_at: Instant) {
        for w in [&mut self.startup, &mut self.liveness, &mut self.readiness]
            .into_iter()
            .flatten()
        {
            w.reset(started_at);
        }
    }

    /// Runs the due probes; returns what changed.
    pub async fn tick(&mut self, now: Instant) -> Vec<ProbeEvent> {
        let mut events = Vec::new();
        let was_ready = self.ready();
        if let Some(s) = &mut self.startup {
            match s.tick(now).await {
                Some(ProbeState::Success) => events.push(ProbeEvent::Started),
                Some(ProbeState::Failure) => {
                    events.push(ProbeEvent::Restart {
                        kind: ProbeKind::Startup,
                        message: s.message().to_string(),
                        grace_seconds: s.grace_seconds(),
                    });
                    return events;
                }
                _ => {}
            }
        }
        if !self.started() {
            return events;
        }
        if let Some(l) = &mut self.liveness {
            if l.tick(now).await == Some(ProbeState::Failure) {
                events.push(ProbeEvent::Restart {
                    kind: ProbeKind::Liveness,
                    message: l.message().to_string(),
                    grace_seconds: l.grace_seconds(),
                });
            }
        }
        if let Some(r) = &mut self.readiness {
            r.tick(now).await;
        }
        let ready = self.ready();
        if ready != was_ready {
            events.push(ProbeEvent::Ready(ready));
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, TCPSocketAction};
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Returns queued results, then Success forever.
    #[derive(Clone, Default)]
    struct Scripted(Arc<Mutex<VecDeque<ProbeResult>>>);

    impl Scripted {
        fn new(rs: &[ProbeResult]) -> Self {
            Scripted(Arc::new(Mutex::new(rs.iter().cloned().collect())))
        }
        fn remaining(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    impl ProbeRunner for Scripted {
        fn run(&self) -> impl Future<Output = ProbeResult> + Send {
            let r = self
                .0
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(ProbeResult::Success);
            async move { r }
        }
    }

    fn fail() -> ProbeResult {
        ProbeResult::Failure("boom".into())
    }

    fn probe(delay: i32, period: i32, success: i32, failure: i32) -> Probe {
        Probe {
            initial_delay_seconds: Some(delay),
            period_seconds: Some(period),
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn liveness_fails_after_threshold_and_holds() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let runner = Scripted::new(&[fail(), fail(), fail(), fail()]);
        let mut w = ProbeWorker::new(ProbeKind::Liveness, &probe(5, 10, 1, 3), runner.clone(), t0);
        assert_eq!(w.state(), ProbeState::Success);
        // Initial delay: nothing runs.
        assert_eq!(w.tick(s(1)).await, None);
        assert_eq!(runner.remaining(), 4);
        assert_eq!(w.tick(s(5)).await, None);
        // Not due yet.
        assert_eq!(w.tick(s(6)).await, None);
        assert_eq!(runner.remaining(), 3);
        assert_eq!(w.tick(s(15)).await, None);
        assert_eq!(w.tick(s(25)).await, Some(ProbeState::Failure));
        assert_eq!(w.message(), "boom");
        assert!(w.idle());
        assert_eq!(w.tick(s(35)).await, None);
        assert_eq!(runner.remaining(), 1);
        w.reset(s(40));
        assert_eq!(w.state(), ProbeState::Success);
        assert_eq!(w.tick(s(45)).await, None);
        assert_eq!(runner.remaining(), 0);
    }

    #[tokio::test]
    async fn failures_interrupted_by_success_start_over() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let runner = Scripted::new(&[fail(), fail(), ProbeResult::Success, fail(), fail(), fail()]);
        let mut w = ProbeWorker::new(ProbeKind::Liveness, &probe(0, 1, 1, 3), runner, t0);
        for i in 0..5 {
            assert_eq!(w.tick(s(i)).await, None, "tick {i}");
        }
        assert_eq!(w.tick(s(5)).await, Some(ProbeState::Failure));
    }

    #[tokio::test]
    async fn readiness_success_threshold_and_unknown_ignored() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let runner = Scripted::new(&[
            ProbeResult::Success,
            ProbeResult::Unknown("rpc".into()),
            ProbeResult::Success,
            fail(),
        ]);
        let mut w = ProbeWorker::new(ProbeKind::Readiness, &probe(0, 1, 2, 1), runner, t0);
        assert_eq!(w.state(), ProbeState::Failure);
        assert_eq!(w.tick(s(0)).await, None);
        assert_eq!(w.tick(s(1)).await, None); // unknown: not counted
        assert_eq!(w.tick(s(2)).await, Some(ProbeState::Success));
        assert_eq!(w.tick(s(3)).await, Some(ProbeState::Failure));
        assert!(!w.idle());
        assert_eq!(w.tick(s(4)).await, None);
        assert_eq!(w.tick(s(5)).await, Some(ProbeState::Success));
    }

    #[tokio::test]
    async fn startup_gates_liveness_and_readiness() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let startup = Scripted::new(&[fail(), fail()]);
        let live = Scripted::new(&[]);
        let ready = Scripted::new(&[]);
        let mut cp = ContainerProbes {
            startup: Some(ProbeWorker::new(
                ProbeKind::Startup,
                &probe(0, 1, 1, 5),
                startup,
                t0,
            )),
            liveness: Some(ProbeWorker::new(
                ProbeKind::Liveness,
                &probe(0, 1, 1, 1),
                live,
                t0,
            )),
            readiness: Some(ProbeWorker::new(
                ProbeKind::Readiness,
                &probe(0, 1, 1, 1),
                ready,
                t0,
            )),
        };
        assert!(!cp.started() && !cp.ready());
        assert!(cp.tick(s(0)).await.is_empty());
        assert!(cp.tick(s(1)).await.is_empty());
        assert_eq!(
            cp.tick(s(2)).await,
            vec![ProbeEvent::Started, ProbeEvent::Ready(true)]
        );
        assert!(cp.started() && cp.ready());

        // Startup failure restarts.
        let mut cp = ContainerProbes {
            startup: Some(ProbeWorker::new(
                ProbeKind::Startup,
                &probe(0, 1, 1, 2),
                Scripted::new(&[fail(), fail()]),
                t0,
            )),
            liveness: None,
            readiness: None,
        };
        assert!(cp.tick(s(0)).await.is_empty());
        assert!(matches!(
            cp.tick(s(1)).await.as_slice(),
            [ProbeEvent::Restart {
                kind: ProbeKind::Startup,
                ..
            }]
        ));

        // No probes: started and ready.
        let cp: ContainerProbes<Scripted> = ContainerProbes {
            startup: None,
            liveness: None,
            readiness: None,
        };
        assert!(cp.ready());
    }

    /// A tiny HTTP server on 127.0.0.1 answering `GET /status/<code>`.
    async fn http_server() -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let code: u16 = path
                        .strip_prefix("/status/")
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(200);
                    let ua_ok = req.contains("User-Agent: kube-probe/1.33")
                        || req.contains("user-agent: kube-probe/1.33");
                    let hdr_ok = !path.contains("hdr") || req.contains("x-test: yes");
                    let code = if ua_ok && hdr_ok { code } else { 418 };
                    let body = "hello";
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        port
    }

    fn http_action(port: IntOrString, path: &str) -> HTTPGetAction {
        HTTPGetAction {
            port,
            path: Some(path.into()),
            ..Default::default()
        }
    }

    fn container() -> Container {
        Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                name: Some("web".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn http_get_probe_against_local_server() {
        let port = http_server().await;
        let c = container();
        let to = Duration::from_secs(2);
        let get = |a: HTTPGetAction| {
            let c = c.clone();
            async move { http_get(&a, &c, "127.0.0.1", to, PROBE_USER_AGENT).await }
        };
        let (code, body) = get(http_action(IntOrString::Int(port as i32), "/"))
            .await
            .unwrap();
        assert_eq!((code, body.as_str()), (200, "hello"));
        let (code, _) = get(http_action(IntOrString::Int(port as i32), "status/500"))
            .await
            .unwrap();
        assert_eq!(code, 500);
        let mut a = http_action(IntOrString::String(port.to_string()), "/hdr");
        a.http_headers = Some(vec![k8s_openapi::api::core::v1::HTTPHeader {
            name: "X-Test".into(),
            value: "yes".into(),
        }]);
        assert_eq!(get(a).await.unwrap().0, 200);
        // Nothing listens on port 1.
        assert!(get(http_action(IntOrString::Int(1), "/")).await.is_err());

        // Through probe_once with a fake CRI (never used by httpGet).
        let cri = rkube_cri::connect(std::path::Path::new("/nonexistent.sock")).unwrap();
        let p = Probe {
            http_get: Some(http_action(IntOrString::Int(port as i32), "/status/302")),
            ..Default::default()
        };
        assert_eq!(
            probe_once(&cri, &p, &c, "id", "127.0.0.1").await,
            ProbeResult::Success
        );
        let p = Probe {
            http_get: Some(http_action(IntOrString::Int(port as i32), "/status/404")),
            ..Default::default()
        };
        assert_eq!(
            probe_once(&cri, &p, &c, "id", "127.0.0.1").await,
            ProbeResult::Failure("HTTP probe failed with statuscode: 404".into())
        );
        // Exec against a runtime that is not there: unknown, not failure.
        let p = Probe {
            exec: Some(k8s_openapi::api::core::v1::ExecAction {
                command: Some(vec!["true".into()]),
            }),
            ..Default::default()
        };
        assert!(matches!(
            probe_once(&cri, &p, &c, "id", "127.0.0.1").await,
            ProbeResult::Unknown(_)
        ));
    }

    #[tokio::test]
    async fn tcp_socket_probe_against_local_listener() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let cri = rkube_cri::connect(std::path::Path::new("/nonexistent.sock")).unwrap();
        let mut c = container();
        c.ports.as_mut().unwrap()[0].container_port = port as i32;
        let p = Probe {
            tcp_socket: Some(TCPSocketAction {
                host: None,
                port: IntOrString::String("web".into()),
            }),
            ..Default::default()
        };
        assert_eq!(
            probe_once(&cri, &p, &c, "id", "127.0.0.1").await,
            ProbeResult::Success
        );
        drop(l);
        assert!(matches!(
            probe_once(&cri, &p, &c, "id", "127.0.0.1").await,
            ProbeResult::Failure(_)
        ));
        let p = Probe {
            tcp_socket: Some(TCPSocketAction {
                host: None,
                port: IntOrString::String("nope".into()),
            }),
            ..Default::default()
        };
        assert!(matches!(
            probe_once(&cri, &p, &c, "id", "127.0.0.1").await,
            ProbeResult::Unknown(_)
        ));
    }

    #[tokio::test]
    async fn grpc_probe_without_server_fails() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let r = grpc_check("127.0.0.1", port, "", Duration::from_secs(1)).await;
        assert!(matches!(r, ProbeResult::Failure(m) if m.contains("failed to connect")));
    }

    #[test]
    fn http_client_builds() {
        build_http_client().unwrap();
    }

    #[test]
    fn ports() {
        let c = container();
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("web".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &c), Ok(81));
        assert!(resolve_port(&IntOrString::String("x".into()), &c).is_err());
        assert!(resolve_port(&IntOrString::Int(70000), &c).is_err());
    }
}
