//! Container lifecycle hooks (postStart, preStop): exec over CRI
//! `ExecSync`, httpGet (only transport errors fail, as upstream), and sleep.
//! A failed postStart makes the pod worker kill the container
//! (FailedPostStartHook); a preStop runs before the stop signal, within the
//! grace period.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};

use crate::probes::{exec_sync, http_get, ExecError};

/// The user agent upstream kubelet sends for httpGet hooks.
pub const HOOK_USER_AGENT: &str = "kube-lifecycle/1.33";

/// Runs one lifecycle handler within `timeout`; `Err` carries the message
/// for the FailedPostStartHook / FailedPreStopHook event.
pub async fn run_handler(
    cri: &rkube_cri::Clients,
    handler: &LifecycleHandler,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &handler.exec {
        let cmd = crate::env::expand_static(exec.command.as_deref().unwrap_or(&[]), container);
        if cmd.is_empty() {
            return Err("exec handler has no command".into());
        }
        return match exec_sync(cri, container_id, cmd.clone(), timeout).await {
            Ok((0, _)) => Ok(()),
            Ok((code, out)) => Err(format!(
                "command '{}' exited with {code}: {out}",
                cmd.join(" ")
            )),
            Err(ExecError::Timeout) => Err(format!(
                "command '{}' timed out after {}s",
                cmd.join(" "),
                timeout.as_secs()
            )),
            Err(ExecError::Rpc(m)) => Err(m),
        };
    }
    if let Some(h) = &handler.http_get {
        return http_get(h, container, pod_ip, timeout, HOOK_USER_AGENT)
            .await
            .map(|_| ());
    }
    if let Some(s) = &handler.sleep {
        let d = Duration::from_secs(s.seconds.max(0) as u64);
        tokio::time::sleep(d.min(timeout)).await;
        return Ok(());
    }
    if handler.tcp_socket.is_some() {
        return Err("tcpSocket is not supported as a lifecycle handler".into());
    }
    Err("invalid handler: none of exec, httpGet or sleep is set".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HTTPGetAction, SleepAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn cri() -> rkube_cri::Clients {
        rkube_cri::connect(std::path::Path::new("/nonexistent.sock")).unwrap()
    }

    #[tokio::test]
    async fn sleep_and_http_handlers() {
        let c = Container::default();
        let h = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 30 }),
            ..Default::default()
        };
        let t = std::time::Instant::now();
        run_handler(&cri(), &h, &c, "id", "127.0.0.1", Duration::from_millis(50))
            .await
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));

        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 500 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        });
        let h = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(port as i32),
                path: Some("/stop".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        // A 500 is not a failure for hooks; only transport errors are.
        run_handler(&cri(), &h, &c, "id", "127.0.0.1", Duration::from_secs(2))
            .await
            .unwrap();
        let err = run_handler(&cri(), &h, &c, "id", "127.0.0.1", Duration::from_secs(2)).await;
        assert!(err.is_err());
        assert!(run_handler(
            &cri(),
            &LifecycleHandler::default(),
            &c,
            "id",
            "",
            Duration::from_secs(1)
        )
        .await
        .is_err());
    }
}
