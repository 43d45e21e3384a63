//! The API through kube-rs and kubectl's chunked lists: pagination with
//! limit/continue, optimistic concurrency (409 Conflict on a stale
//! resourceVersion), status codes of common errors, and watch events.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::ObjectMeta;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use rkube_e2e::Cluster;

fn configmap(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

fn api_error(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_over_120_configmaps() {
    let c = Cluster::start("paging").unwrap();
    let client = c.client().await.unwrap();
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("paging".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "paging");

    let expected: BTreeSet<String> = (0..120).map(|i| format!("page-{i:03}")).collect();
    futures::stream::iter(expected.iter().cloned())
        .map(|name| {
            let api = api.clone();
            async move {
                let cm = configmap(&name, &[("app", "page")], &[("n", &name)]);
                api.create(&PostParams::default(), &cm).await
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();

    // kubectl fetches in chunks and shows everything.
    let out = c.kubectl(&[
        "get",
        "configmaps",
        "-n",
        "paging",
        "--chunk-size=50",
        "-o",
        "name",
        "-v=6",
    ]);
    assert!(out.status.success(), "{}", rkube_e2e::describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let names: BTreeSet<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("configmap/"))
        .filter(|n| n.starts_with("page-"))
        .map(str::to_string)
        .collect();
    assert_eq!(names, expected);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("limit=50") && stderr.contains("continue="),
        "kubectl did not page:\n{stderr}"
    );
    let table = c.kubectl_ok(&[
        "get",
        "configmaps",
        "-n",
        "paging",
        "--chunk-size=50",
        "-l",
        "app=page",
        "--no-headers",
    ]);
    assert_eq!(table.lines().count(), 120, "{table}");

    // kube-rs pages through with limit/continue: 50 + 50 + 20.
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut lp = ListParams::default().labels("app=page").limit(50);
    loop {
        let page = api.list(&lp).await.unwrap();
        sizes.push(page.items.len());
        seen.extend(page.items.into_iter().filter_map(|cm| cm.metadata.name));
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
        assert!(sizes.len() <= 3, "too many pages: {sizes:?}");
    }
    assert_eq!(sizes, [50, 50, 20]);
    assert_eq!(seen.len(), 120, "duplicates across pages");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);

    // Pages are consistent snapshots: objects created after the first page
    // do not show up in later pages of the same list.
    let first = api
        .list(&ListParams::default().labels("app=page").limit(100))
        .await
        .unwrap();
    let token = first
        .metadata
        .continue_
        .clone()
        .expect("continue token for 120 items at limit 100");
    api.create(
        &PostParams::default(),
        &configmap("page-999", &[("app", "page")], &[]),
    )
    .await
    .unwrap();
    let rest = api
        .list(
            &ListParams::default()
                .labels("app=page")
                .limit(100)
                .continue_token(&token),
        )
        .await
        .unwrap();
    let rest_names: Vec<_> = rest
        .items
        .iter()
        .filter_map(|cm| cm.metadata.name.as_deref())
        .collect();
    assert_eq!(rest_names.len(), 20, "{rest_names:?}");
    assert!(!rest_names.contains(&"page-999"), "{rest_names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_resource_version_conflicts() {
    let c = Cluster::start("conflict").unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(c.client().await.unwrap());

    let created = api
        .create(
            &PostParams::default(),
            &configmap("cas", &[], &[("v", "1")]),
        )
        .await
        .unwrap();
    let stale = created.clone();
    let rv1 = created.metadata.resource_version.clone().unwrap();

    let mut fresh = created;
    fresh.data = Some(BTreeMap::from([("v".to_string(), "2".to_string())]));
    let updated = api
        .replace("cas", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv1.as_str())
    );

    let mut stale = stale;
    stale.data = Some(BTreeMap::from([("v".to_string(), "stale".to_string())]));
    let status = api_error(
        api.replace("cas", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 409, "{status:?}");
    assert_eq!(status.reason, "Conflict", "{status:?}");
    assert!(
        status.message.contains(r#"Operation cannot be fulfilled on configmaps "cas": the object has been modified; please apply your changes to the latest version and try again"#),
        "{status:?}"
    );
    assert_eq!(api.get("cas").await.unwrap().data.unwrap()["v"], "2");

    // Other statuses kube-rs callers match on.
    let status = api_error(
        api.create(&PostParams::default(), &configmap("cas", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists"),
        "{status:?}"
    );
    let status = api_error(api.get("missing").await.unwrap_err());
    assert_eq!(
        (status.code, status.reason.as_str()),
        (404, "NotFound"),
        "{status:?}"
    );
    assert!(api.get_opt("missing").await.unwrap().is_none());
    let status = api_error(
        api.create(&PostParams::default(), &configmap("Bad_Name", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "{status:?}"
    );
    // A delete with a stale uid precondition conflicts too.
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("00000000-0000-0000-0000-000000000000".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let status = api_error(api.delete("cas", &dp).await.unwrap_err());
    assert_eq!(status.code, 409, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_added_modified_deleted() {
    let c = Cluster::start("watch").unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(c.client().await.unwrap());

    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let wp = WatchParams::default().labels("watched=yes").timeout(60);
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();

    api.create(
        &PostParams::default(),
        &configmap("w", &[("watched", "yes")], &[("a", "1")]),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &configmap("ignored", &[("watched", "no")], &[]),
    )
    .await
    .unwrap();
    let patch = serde_json::json!({"data": {"a": "2"}});
    api.patch("w", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();

    let mut events = Vec::new();
    while events.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(15), stream.next()).await;
        let event = match next {
            Ok(Some(event)) => event.unwrap(),
            Ok(None) => panic!("watch ended early after {events:?}"),
            Err(_) => panic!("no watch event within 15s after {events:?}"),
        };
        let summary = match event {
            WatchEvent::Added(cm) => ("ADDED", cm),
            WatchEvent::Modified(cm) => ("MODIFIED", cm),
            WatchEvent::Deleted(cm) => ("DELETED", cm),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(status) => panic!("watch error: {status:?}"),
        };
        events.push((
            summary.0,
            summary.1.metadata.name.unwrap_or_default(),
            summary
                .1
                .data
                .unwrap_or_default()
                .get("a")
                .cloned()
                .unwrap_or_default(),
        ));
    }
    let want = [
        ("ADDED", "w", "1"),
        ("MODIFIED", "w", "2"),
        ("DELETED", "w", "2"),
    ];
    let got: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|(t, n, a)| (*t, n.as_str(), a.as_str()))
        .collect();
    assert_eq!(got, want);
}
