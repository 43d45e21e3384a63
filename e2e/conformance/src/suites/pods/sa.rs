//! Service account credentials in pods: the automounted token, CA and
//! namespace, and projected service account tokens.

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ServiceAccount};
use kube::api::PostParams;
use serde_json::json;

use super::{expect_output_regex, uid};
use crate::conformance;
use crate::ctx::{from_json, pod, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Service Account Tokens Must AutoMount", automount),
        conformance!(
            "TokenRequestProjection should mount a projected volume with token using TokenRequest API.",
            projected_token
        ),
    ]
}

const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

async fn automount(c: Ctx) -> Result<()> {
    c.create::<ServiceAccount>(json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "mount-test"},
    }))
    .await
    .context("create service account")?;
    let name = format!("pod-service-account-{}", uid());
    let mut p = pod(
        &name,
        json!({
            "serviceAccountName": "mount-test",
            "restartPolicy": "Never",
            "containers": [{"name": "test", "image": c.env.images.busybox, "command": ["sleep", "100000"]}],
        }),
    );
    p["spec"]["terminationGracePeriodSeconds"] = json!(0);
    c.create_pod(p).await?;
    c.wait_pod(&name, "Running", |p| crate::ctx::phase(p) == "Running")
        .await?;
    let p = c.pods().get(&name).await?;
    let node_name = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .context("pod has no node")?;
    let node = c.all::<Node>().get(&node_name).await?;

    let read = |f: &'static str| {
        let c = &c;
        let name = &name;
        async move {
            c.exec(name, Some("test"), &["cat", &format!("{MOUNT}/{f}")])
                .await
        }
    };
    let token = read("token").await?;
    let ca = read("ca.crt").await?;
    let ns = read("namespace").await?;

    // CA and namespace are the cluster's and the pod's.
    let root_ca = c.api::<ConfigMap>().get("kube-root-ca.crt").await?;
    let want_ca = root_ca
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .cloned()
        .unwrap_or_default();
    ensure!(
        ca == want_ca,
        "mounted ca.crt differs from kube-root-ca.crt"
    );
    ensure!(ns == c.ns, "mounted namespace is {ns:?}, want {:?}", c.ns);

    // The token identifies the pod's service account.
    let tr: TokenReview = from_json(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token},
    }))?;
    let tr = c
        .all::<TokenReview>()
        .create(&PostParams::default(), &tr)
        .await
        .context("create TokenReview")?;
    let st = tr.status.unwrap_or_default();
    ensure!(
        st.authenticated == Some(true),
        "token review is not authenticated: {st:?}"
    );
    ensure!(
        st.error.as_deref().unwrap_or("").is_empty(),
        "token review error: {:?}",
        st.error
    );
    let user = st.user.unwrap_or_default();
    let want_user = format!("system:serviceaccount:{}:mount-test", c.ns);
    ensure!(
        user.username.as_deref() == Some(want_user.as_str()),
        "token user is {:?}, want {want_user}",
        user.username
    );
    let groups = user.groups.unwrap_or_default();
    for g in [
        "system:authenticated".to_string(),
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{}", c.ns),
    ] {
        ensure!(groups.contains(&g), "expected group {g}, had {groups:?}");
    }
    let extra = user.extra.unwrap_or_default();
    let one =
        |k: &str| -> Option<String> { extra.get(k).filter(|v| v.len() == 1).map(|v| v[0].clone()) };
    let cred = one("authentication.kubernetes.io/credential-id");
    ensure!(
        cred.as_deref().is_some_and(|v| v.starts_with("JTI=")),
        "credential-id extra is {:?}",
        extra.get("authentication.kubernetes.io/credential-id")
    );
    let checks = [
        (
            "authentication.kubernetes.io/pod-name",
            p.metadata.name.clone(),
        ),
        (
            "authentication.kubernetes.io/pod-uid",
            p.metadata.uid.clone(),
        ),
        (
            "authentication.kubernetes.io/node-name",
            node.metadata.name.clone(),
        ),
        (
            "authentication.kubernetes.io/node-uid",
            node.metadata.uid.clone(),
        ),
    ];
    for (k, want) in checks {
        ensure!(
            one(k) == want,
            "extra {k} is {:?}, want {want:?}",
            extra.get(k)
        );
    }
    Ok(())
}

async fn projected_token(c: Ctx) -> Result<()> {
    let name = format!("test-pod-{}", uid());
    let p = pod(
        &name,
        json!({
            "restartPolicy": "Never",
            "containers": [{
                "name": "agnhost-container",
                "image": c.env.images.agnhost,
                "args": ["mounttest", "--file_content=/test-volume/token"],
                "volumeMounts": [{"name": "test-volume", "mountPath": "/test-volume", "readOnly": true}],
            }],
            "volumes": [{"name": "test-volume", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
            ]}}],
        }),
    );
    expect_output_regex(
        &c,
        p,
        None,
        &[r#"content of file "/test-volume/token": [A-Za-z0-9-_=]+\.[A-Za-z0-9-_=]+\.?[A-Za-z0-9-_.+/=]*"#],
    )
    .await
}
