//! Discovery: aggregated discovery documents (raw and through a client that
//! prefers them) and the plain discovery endpoints of groups and resources.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};

use super::{allow_all_schema, create_crd, get_json, with_crd};
use crate::conformance;
use crate::ctx::{wait_for, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Aggregated Discovery Interface", aggregated_interface),
        conformance!(
            "Aggregated Discovery Interface CRDs",
            aggregated_interface_crd
        ),
        conformance!(
            "Aggregated Discovery Endpoint Accept Headers",
            aggregated_raw
        ),
        conformance!(
            "Aggregated Discovery Endpoint Accept Headers CRDs",
            aggregated_raw_crd
        ),
        conformance!(
            "Discovery, confirm the PreferredVersion for each api group",
            preferred_version
        ),
        conformance!(
            "Discovery, confirm the groupVerion and a resourcefrom each apiGroup",
            group_version_resources
        ),
    ]
}

/// The Accept header asking for exactly the aggregated discovery document.
const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// What a discovery client that prefers aggregated discovery asks for
/// (falling back to the plain documents).
const AGGREGATED_OR_PLAIN: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
     application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

/// Group, version, resource that every cluster serves.
const EXPECTED: &[(&str, &str, &str)] = &[
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
    ),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
    ("apiregistration.k8s.io", "v1", "apiservices"),
    ("apps", "v1", "deployments"),
    ("authentication.k8s.io", "v1", "tokenreviews"),
    ("authorization.k8s.io", "v1", "selfsubjectaccessreviews"),
    ("autoscaling", "v1", "horizontalpodautoscalers"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("batch", "v1", "jobs"),
    ("certificates.k8s.io", "v1", "certificatesigningrequests"),
    ("coordination.k8s.io", "v1", "leases"),
    ("discovery.k8s.io", "v1", "endpointslices"),
    ("events.k8s.io", "v1", "events"),
    ("networking.k8s.io", "v1", "ingresses"),
    ("node.k8s.io", "v1", "runtimeclasses"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("scheduling.k8s.io", "v1", "priorityclasses"),
    ("storage.k8s.io", "v1", "csinodes"),
];

/// The legacy (core) group's expected resource.
const EXPECTED_LEGACY: (&str, &str, &str) = ("", "v1", "namespaces");

/// Whether an APIGroupDiscoveryList has `resource` in `group`/`version`.
fn in_aggregated(doc: &Value, (group, version, resource): (&str, &str, &str)) -> bool {
    let empty = Vec::new();
    doc["items"].as_array().unwrap_or(&empty).iter().any(|g| {
        g["metadata"]["name"].as_str().unwrap_or("") == group
            && g["versions"].as_array().unwrap_or(&empty).iter().any(|v| {
                v["version"] == version
                    && v["resources"]
                        .as_array()
                        .unwrap_or(&empty)
                        .iter()
                        .any(|r| r["resource"] == resource)
            })
    })
}

/// Groups (with versions) and resources per group/version, as a discovery
/// client preferring aggregated discovery sees them.
struct Discovered {
    /// (group, version) pairs the server lists.
    versions: Vec<(String, String)>,
    /// (group, version, resource) triples.
    resources: Vec<(String, String, String)>,
}

impl Discovered {
    fn has_resource(&self, (g, v, r): (&str, &str, &str)) -> bool {
        self.resources
            .iter()
            .any(|(a, b, c)| a == g && b == v && c == r)
    }

    fn has_version(&self, g: &str, v: &str) -> bool {
        self.versions.iter().any(|(a, b)| a == g && b == v)
    }
}

/// Discovers as client-go's `GroupsAndMaybeResources` does: asks /api and
/// /apis for the aggregated document; a server answering with the plain
/// document yields its groups and versions but no resources.
async fn discover(c: &Ctx) -> Result<Discovered> {
    let mut d = Discovered {
        versions: Vec::new(),
        resources: Vec::new(),
    };
    for base in ["/api", "/apis"] {
        let doc = get_json(c, base, Some(AGGREGATED_OR_PLAIN)).await?;
        if doc["kind"] == "APIGroupDiscoveryList" {
            for g in doc["items"].as_array().into_iter().flatten() {
                let group = g["metadata"]["name"].as_str().unwrap_or("").to_string();
                for v in g["versions"].as_array().into_iter().flatten() {
                    let version = v["version"].as_str().unwrap_or("").to_string();
                    d.versions.push((group.clone(), version.clone()));
                    for r in v["resources"].as_array().into_iter().flatten() {
                        let res = r["resource"].as_str().unwrap_or("").to_string();
                        d.resources.push((group.clone(), version.clone(), res));
                    }
                }
            }
            continue;
        }
        // Plain discovery: APIVersions at /api, APIGroupList at /apis.
        let gvs: Vec<(String, String)> = if base == "/api" {
            doc["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(|v| (String::new(), v.to_string())))
                .collect()
        } else {
            doc["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| {
                    let name = g["name"].as_str().unwrap_or("").to_string();
                    g["versions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(move |v| {
                            v["version"].as_str().map(|v| (name.clone(), v.to_string()))
                        })
                })
                .collect()
        };
        d.versions.extend(gvs);
    }
    Ok(d)
}

async fn aggregated_interface(c: Ctx) -> Result<()> {
    let d = discover(&c).await?;
    let all: Vec<(&str, &str, &str)> = EXPECTED.iter().copied().chain([EXPECTED_LEGACY]).collect();
    for gvr in &all {
        ensure!(d.has_resource(*gvr), "expected {gvr:?} to be present");
    }
    ensure!(!d.versions.is_empty(), "expected server groups");
    for (g, v, _) in &all {
        ensure!(
            d.has_version(g, v),
            "expected group version {g}/{v} to be present"
        );
    }
    Ok(())
}

async fn aggregated_raw(c: Ctx) -> Result<()> {
    let apis = get_json(&c, "/apis", Some(AGGREGATED)).await?;
    for gvr in EXPECTED {
        ensure!(
            in_aggregated(&apis, *gvr),
            "expected gvr {} {} {} to exist in discovery",
            gvr.0,
            gvr.1,
            gvr.2
        );
    }
    let api = get_json(&c, "/api", Some(AGGREGATED)).await?;
    ensure!(
        in_aggregated(&api, EXPECTED_LEGACY),
        "expected legacy gvr api v1 namespaces to exist in discovery"
    );
    Ok(())
}

/// A namespaced CRD `testcrds.<group>` with a random group, as upstream's.
fn test_crd() -> (String, String, Value) {
    let group = format!("group{}.example.com", crate::ctx::suffix());
    let name = format!("testcrds.{group}");
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": allow_all_schema()}],
            "names": {"plural": "testcrds", "singular": "testcrd", "kind": "testcrd", "listKind": "testcrdList"},
            "scope": "Namespaced",
        },
    });
    (group, name, crd)
}

async fn aggregated_raw_crd(c: Ctx) -> Result<()> {
    let (group, name, crd) = test_crd();
    create_crd(&c, crd).await?;
    with_crd(&c, &name, || async {
        wait_for(
            "the CustomResourceDefinition's resource in aggregated discovery",
            Duration::from_secs(30),
            || {
                let c = c.clone();
                let group = group.clone();
                async move {
                    let apis = get_json(&c, "/apis", Some(AGGREGATED)).await?;
                    Ok(in_aggregated(&apis, (&group, "v1", "testcrds")).then_some(()))
                }
            },
        )
        .await
    })
    .await
}

async fn aggregated_interface_crd(c: Ctx) -> Result<()> {
    let (group, name, crd) = test_crd();
    create_crd(&c, crd).await?;
    with_crd(&c, &name, || async {
        wait_for(
            "the CustomResourceDefinition's resource in discovery",
            Duration::from_secs(30),
            || {
                let c = c.clone();
                let group = group.clone();
                async move {
                    let d = discover(&c).await?;
                    Ok(d.has_resource((&group, "v1", "testcrds")).then_some(()))
                }
            },
        )
        .await
    })
    .await
}

async fn preferred_version(c: Ctx) -> Result<()> {
    let list = get_json(&c, "/apis/", None)
        .await
        .context("Failed to find /apis/")?;
    let groups = list["groups"].as_array().cloned().unwrap_or_default();
    ensure!(!groups.is_empty(), "missing APIGroups");
    for g in groups {
        let name = g["name"].as_str().unwrap_or("");
        if name.ends_with(".example.com") {
            // Groups that other tests add and remove while this one runs.
            continue;
        }
        let path = format!("/apis/{name}/");
        let group = get_json(&c, &path, None)
            .await
            .with_context(|| format!("fail to access {path}"))?;
        let versions = group["versions"].as_array().cloned().unwrap_or_default();
        ensure!(!versions.is_empty(), "no version found for {name}");
        let preferred = &group["preferredVersion"]["groupVersion"];
        ensure!(
            versions.iter().any(|v| &v["groupVersion"] == preferred),
            "failed to find a valid version for PreferredVersion {preferred} of {name} in versions {versions:?}"
        );
    }
    Ok(())
}

async fn group_version_resources(c: Ctx) -> Result<()> {
    let all = [EXPECTED_LEGACY]
        .into_iter()
        .chain(EXPECTED.iter().copied());
    for (group, version, resource) in all {
        let (path, gv) = if group.is_empty() {
            (format!("/api/{version}"), version.to_string())
        } else {
            (
                format!("/apis/{group}/{version}"),
                format!("{group}/{version}"),
            )
        };
        let list = get_json(&c, &path, None)
            .await
            .with_context(|| format!("fail to access {path}"))?;
        ensure!(
            list["groupVersion"] == gv.as_str(),
            "{path}: groupVersion {} is not {gv}",
            list["groupVersion"]
        );
        ensure!(
            list["resources"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r["name"] == resource)),
            "resource {resource:?} was not found in {path}"
        );
    }
    Ok(())
}
