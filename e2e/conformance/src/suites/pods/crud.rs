//! Pods: create, watch, update, delete, status patches, service
//! environment, exec and logs, QoS class.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;

use super::{condition, uid, wait_for, wait_pod_until, watch_until};
use crate::conformance;
use crate::ctx::{phase, pod, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Pods, assigned hostip", host_ip),
        conformance!("Pods, lifecycle", submitted_and_removed),
        conformance!("Pods, update", updated),
        conformance!("Pods, ActiveDeadlineSeconds", active_deadline),
        conformance!("Pods, service environment variables", service_env),
        conformance!(
            "Pods, remote command execution over websocket",
            exec_websocket
        ),
        conformance!("Pods, logs from websockets", logs_websocket),
        conformance!("Pods, delete a collection", delete_collection),
        conformance!(
            "Pods, completes the lifecycle of a Pod and the PodStatus",
            pod_status_lifecycle
        ),
        conformance!("Pods, patching status", patch_status),
    ]
}

/// A label value that differs per call (upstream: the nanoseconds now).
fn time_value() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    n.to_string()
}

/// A pause pod labelled name=foo, time=`value`.
fn labelled_pause(c: &Ctx, name: &str, value: &str) -> serde_json::Value {
    let mut p = pod(
        name,
        json!({"containers": [{"name": "pause", "image": c.env.images.pause}]}),
    );
    p["metadata"]["labels"] = json!({"name": "foo", "time": value});
    p
}

async fn count_with(c: &Ctx, selector: &str) -> Result<usize> {
    Ok(c.pods()
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .len())
}

async fn host_ip(c: Ctx) -> Result<()> {
    let name = format!("pod-hostip-{}", uid());
    c.create_pod(pod(
        &name,
        json!({"containers": [{"name": "test", "image": c.env.images.pause}]}),
    ))
    .await?;
    c.wait_running(&name).await?;
    let p = wait_pod_until(&c, &name, "has a hostIP", Duration::from_secs(120), |p| {
        Ok(p.status
            .as_ref()
            .and_then(|s| s.host_ip.as_deref())
            .is_some_and(|ip| !ip.is_empty()))
    })
    .await?;
    let ip = p.status.and_then(|s| s.host_ip).unwrap_or_default();
    ensure!(
        ip.parse::<std::net::IpAddr>().is_ok(),
        "hostIP {ip:?} is not an IP"
    );
    Ok(())
}

async fn submitted_and_removed(c: Ctx) -> Result<()> {
    let name = format!("pod-submit-remove-{}", uid());
    let value = time_value();
    let selector = format!("time={value}");
    let pods = c.pods();

    // setting up watch
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    ensure!(list.items.is_empty(), "pods already match {selector}");
    let rv = list.metadata.resource_version.unwrap_or_default();
    let mut w = pods
        .watch(&WatchParams::default().labels(&selector), &rv)
        .await?
        .boxed();

    // submitting the pod
    let mut spec = labelled_pause(&c, &name, &value);
    spec["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("terminationGracePeriodSeconds");
    c.create_pod(spec).await?;
    ensure!(
        count_with(&c, &selector).await? == 1,
        "the pod is not listed"
    );

    // verifying pod creation was observed
    let ev = tokio::time::timeout(c.env.pod_start, w.try_next())
        .await
        .context("timed out waiting for the pod creation event")??;
    match ev {
        Some(WatchEvent::Added(_)) => {}
        other => bail!("failed to observe pod creation: {other:?}"),
    }

    c.wait_pod(&name, "Running", |p| phase(p) == "Running")
        .await?;

    // deleting the pod gracefully
    pods.delete(&name, &DeleteParams::default().grace_period(30))
        .await?;

    // verifying pod deletion was observed
    let deadline = Instant::now() + Duration::from_secs(300);
    let last: Pod = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, w.try_next())
            .await
            .context("timed out waiting for pod deletion")??;
        match ev {
            Some(WatchEvent::Deleted(p)) => break p,
            Some(WatchEvent::Error(e)) => bail!("watch closed with error: {e:?}"),
            Some(_) => {}
            None => bail!("watch ended before the pod was deleted"),
        }
    };
    ensure!(
        last.metadata.deletion_timestamp.is_some(),
        "deleted pod has no deletionTimestamp"
    );
    ensure!(
        last.spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(0)
            != 0,
        "deleted pod has a zero terminationGracePeriodSeconds"
    );
    ensure!(
        count_with(&c, &selector).await? == 0,
        "the pod is still listed"
    );
    Ok(())
}

async fn updated(c: Ctx) -> Result<()> {
    let name = format!("pod-update-{}", uid());
    let value = time_value();
    c.create_pod(labelled_pause(&c, &name, &value)).await?;
    c.wait_running(&name).await?;
    ensure!(
        count_with(&c, &format!("time={value}")).await? == 1,
        "pod not listed"
    );

    // updating the pod's label
    let new_value = format!("{}1", time_value());
    let pods = c.pods();
    let mut p = pods.get(&name).await?;
    p.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("time".into(), new_value.clone());
    pods.replace(&name, &PostParams::default(), &p).await?;

    c.wait_pod(&name, "Running", |p| phase(p) == "Running")
        .await?;
    ensure!(
        count_with(&c, &format!("time={new_value}")).await? == 1,
        "the updated pod is not listed by its new label"
    );
    Ok(())
}

async fn active_deadline(c: Ctx) -> Result<()> {
    let name = format!("pod-update-activedeadlineseconds-{}", uid());
    let value = time_value();
    c.create_pod(labelled_pause(&c, &name, &value)).await?;
    c.wait_running(&name).await?;
    ensure!(
        count_with(&c, &format!("time={value}")).await? == 1,
        "pod not listed"
    );

    let pods = c.pods();
    let mut p = pods.get(&name).await?;
    p.spec.as_mut().context("spec")?.active_deadline_seconds = Some(5);
    pods.replace(&name, &PostParams::default(), &p).await?;

    wait_pod_until(
        &c,
        &name,
        "terminated with DeadlineExceeded",
        c.env.pod_start,
        |p| {
            let reason = p.status.as_ref().and_then(|s| s.reason.as_deref());
            if phase(p) == "Failed" && reason == Some("DeadlineExceeded") {
                return Ok(true);
            }
            if phase(p) == "Succeeded" || (phase(p) == "Failed" && reason.is_some()) {
                bail!("pod ended with {:?} {reason:?}", phase(p));
            }
            Ok(false)
        },
    )
    .await?;
    Ok(())
}

async fn service_env(c: Ctx) -> Result<()> {
    let server = format!("server-envvars-{}", uid());
    let mut sp = pod(
        &server,
        json!({"containers": [{
            "name": "srv",
            "image": c.env.images.agnhost,
            "args": ["serve-hostname"],
            "ports": [{"containerPort": 9376}],
        }]}),
    );
    sp["metadata"]["labels"] = json!({"name": server});
    c.create_pod(sp).await?;
    c.wait_running(&server).await?;

    c.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "fooservice", "labels": {"name": "fooservice"}},
        "spec": {"ports": [{"port": 8765, "targetPort": 8080}], "selector": {"name": server}},
    }))
    .await
    .context("create service")?;

    let expected = [
        "FOOSERVICE_SERVICE_HOST=",
        "FOOSERVICE_SERVICE_PORT=",
        "FOOSERVICE_PORT=",
        "FOOSERVICE_PORT_8765_TCP_PORT=",
        "FOOSERVICE_PORT_8765_TCP_PROTO=",
        "FOOSERVICE_PORT_8765_TCP=",
        "FOOSERVICE_PORT_8765_TCP_ADDR=",
    ];
    // The pod may start before the node agent sees the service: retry.
    let mut last = None;
    for _ in 0..3 {
        let client = format!("client-envvars-{}", uid());
        let mut cp = pod(
            &client,
            json!({
                "restartPolicy": "Never",
                "containers": [{
                    "name": "env3cont",
                    "image": c.env.images.busybox,
                    "command": ["sh", "-c", "env"],
                }],
            }),
        );
        cp["metadata"]["labels"] = json!({"name": client});
        match c.expect_output(cp, Some("env3cont"), &expected).await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .expect("tried")
        .context("container should have service environment variables set"))
}

async fn exec_websocket(c: Ctx) -> Result<()> {
    let name = format!("pod-exec-websocket-{}", uid());
    c.create_pod(pod(
        &name,
        json!({"containers": [{
            "name": "main",
            "image": c.env.images.busybox,
            "command": ["/bin/sh", "-c", "echo container is alive; sleep 600"],
        }]}),
    ))
    .await?;
    c.wait_running(&name).await?;
    // kube's exec is the websocket exec of the API (channel protocol).
    let out = wait_for("exec output", Duration::from_secs(60), || {
        let c = &c;
        let name = &name;
        async move {
            let out = c
                .exec(name, Some("main"), &["echo", "remote execution test"])
                .await?;
            if out.contains("remote execution test") {
                Ok(Some(out))
            } else {
                bail!("expected to find 'remote execution test' in {out:?}")
            }
        }
    })
    .await?;
    ensure!(!out.is_empty());
    Ok(())
}

async fn logs_websocket(c: Ctx) -> Result<()> {
    let name = format!("pod-logs-websocket-{}", uid());
    c.create_pod(pod(
        &name,
        json!({"containers": [{
            "name": "main",
            "image": c.env.images.busybox,
            "command": ["/bin/sh", "-c", "echo container is alive; sleep 10000"],
        }]}),
    ))
    .await?;
    c.wait_running(&name).await?;
    let logs = c.logs(&name, Some("main")).await?;
    ensure!(logs == "container is alive\n", "unexpected logs:\n{logs}");
    Ok(())
}

async fn delete_collection(c: Ctx) -> Result<()> {
    for n in ["test-pod-1", "test-pod-2", "test-pod-3"] {
        let mut p = pod(
            n,
            json!({
                "restartPolicy": "Never",
                "containers": [{"name": "token-test", "image": c.env.images.agnhost}],
            }),
        );
        p["metadata"]["labels"] = json!({"type": "Testing"});
        c.create_pod(p).await?;
    }
    for n in ["test-pod-1", "test-pod-2", "test-pod-3"] {
        c.wait_running(n).await?;
    }
    c.pods()
        .delete_collection(
            &DeleteParams::default().grace_period(1),
            &ListParams::default().labels("type=Testing"),
        )
        .await
        .context("delete collection of pods")?;
    wait_for("all pods deleted", c.env.pod_start, || {
        let c = &c;
        async move { Ok((count_with(c, "type=Testing").await? == 0).then_some(())) }
    })
    .await
}

async fn pod_status_lifecycle(c: Ctx) -> Result<()> {
    let name = "pod-test";
    let labels = "test-pod-static=true";
    let pods = c.pods();
    let list = pods.list(&ListParams::default().labels(labels)).await?;
    let rv = list.metadata.resource_version.unwrap_or_default();

    let mut p = pod(
        name,
        json!({"containers": [{"name": name, "image": c.env.images.agnhost}]}),
    );
    p["metadata"]["labels"] = json!({"test-pod-static": "true"});
    c.create_pod(p).await?;

    // watching for the pod to be running (upstream only logs a miss)
    let wp = WatchParams::default().labels(labels);
    let _ = watch_until(&pods, &wp, &rv, c.env.pod_start, "pod running", |ev| {
        Ok(matches!(ev, WatchEvent::Added(p) | WatchEvent::Modified(p) if phase(p) == "Running"))
    })
    .await;
    let p = pods.get(name).await?;
    ensure!(
        phase(&p) == "Running",
        "pod is not running: {:?}",
        phase(&p)
    );

    // patching the pod with a new label and updated data
    let patch = json!({
        "metadata": {"labels": {"test-pod": "patched"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": name, "image": c.env.images.httpd}],
        },
    });
    pods.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .context("patch pod")?;
    let p = pods.get(name).await?;
    ensure!(
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("test-pod"))
            .map(String::as_str)
            == Some("patched"),
        "failed to patch pod - missing label"
    );
    let image = p
        .spec
        .as_ref()
        .map(|s| s.containers[0].image.clone().unwrap_or_default());
    ensure!(
        image.as_deref() == Some(c.env.images.httpd.as_str()),
        "failed to patch pod - wrong image {image:?}"
    );

    // replacing the pod's status Ready condition to False
    let mut updated = None;
    for _ in 0..5 {
        let mut st: Pod = pods.get_status(name).await?;
        let mut n = 0;
        if let Some(conds) = st.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            for cond in conds.iter_mut() {
                if (cond.type_ == "Ready" || cond.type_ == "ContainersReady")
                    && cond.status == "True"
                {
                    cond.status = "False".into();
                    n += 1;
                }
            }
        }
        ensure!(
            n == 2,
            "failed to patch all relevant pod conditions ({n} of 2)"
        );
        match pods.replace_status(name, &PostParams::default(), &st).await {
            Ok(p) => {
                updated = Some(p);
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e).context("update pod status"),
        }
    }
    let updated = updated.context("status update kept conflicting")?;
    let n = ["Ready", "ContainersReady"]
        .iter()
        .filter(|t| condition(&updated, t).is_some_and(|(s, _)| s == "False"))
        .count();
    ensure!(
        n == 2,
        "failed to update PodStatus - {n} of 2 conditions False"
    );

    // deleting the pod via a collection with a label selector
    let rv = updated
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    pods.delete_collection(
        &DeleteParams::default().grace_period(1),
        &ListParams::default().labels(labels),
    )
    .await
    .context("delete pod by collection")?;
    // watching for the pod to be deleted: from the version before the
    // delete, so the DELETED event cannot be missed (upstream only logs a
    // miss, then requires NotFound)
    let seen = watch_until(
        &pods,
        &wp,
        &rv,
        c.env.pod_start,
        "the pod's DELETED event",
        |ev| Ok(matches!(ev, WatchEvent::Deleted(p) if p.metadata.name.as_deref() == Some(name))),
    )
    .await;
    match pods.get(name).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => bail!("expected NotFound, got {e}"),
        Ok(p) => bail!(
            "pod {name} should be deleted ({}): deletionTimestamp {:?}, phase {:?}, finalizers {:?}",
            seen.err().map_or("its DELETED event was seen".into(), |e| format!("{e:#}")),
            p.metadata.deletion_timestamp,
            phase(&p),
            p.metadata.finalizers
        ),
    }
}

async fn patch_status(c: Ctx) -> Result<()> {
    let name = format!("pod-{}", crate::ctx::suffix());
    let mut p = pod(
        &name,
        json!({"containers": [{"name": "agnhost", "image": c.env.images.agnhost}]}),
    );
    p["metadata"]["labels"] = json!({"e2e": name});
    c.create_pod(p).await?;
    c.wait_pod(&name, "Running", |p| phase(p) == "Running")
        .await?;

    let patch = json!({
        "metadata": {"annotations": {"patchedstatus": "true"}},
        "status": {"message": "Patched by e2e test", "reason": "E2E"},
    });
    let p = c
        .pods()
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("patch pod status")?;
    let st = p.status.unwrap_or_default();
    ensure!(
        st.message.as_deref() == Some("Patched by e2e test"),
        "status.message is {:?}",
        st.message
    );
    ensure!(
        st.reason.as_deref() == Some("E2E"),
        "status.reason is {:?}",
        st.reason
    );
    Ok(())
}
