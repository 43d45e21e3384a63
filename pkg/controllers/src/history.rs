//! ControllerRevisions shared by the StatefulSet and DaemonSet controllers,
//! as upstream's pkg/controller/history: a revision stores the patch that
//! restores the owner's pod template (`{"spec":{"template":{...,
//! "$patch":"replace"}}}`), is named `<owner>-<hash>` with the label
//! `controller-revision-hash`, is controlled by its owner, and carries an
//! increasing revision number. An equal existing revision is reused (its
//! number bumped) rather than duplicated, and history is truncated to
//! `revisionHistoryLimit` keeping the revisions still in use.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::Api;
use serde_json::{json, Value};

use crate::owner::{self, Claim};
use crate::{hash, pods, Error, Result};

/// The label naming a revision's hash (and, on pods, the revision they
/// were created from).
pub const HASH_LABEL: &str = "controller-revision-hash";

/// Default `revisionHistoryLimit` of StatefulSets and DaemonSets.
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// The revision data of a pod template: a strategic-merge patch replacing
/// `spec.template`.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut t {
        m.insert("$patch".into(), Value::String("replace".into()));
    }
    json!({ "spec": { "template": t } })
}

/// The pod template a revision restores, if its data is a template patch.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let data = &rev.data.as_ref()?.0;
    let mut t = data.get("spec")?.get("template")?.clone();
    if let Value::Object(m) = &mut t {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Hash of revision data and a collision count (upstream's
/// HashControllerRevision: the data, then the count in decimal).
pub fn hash_data(data: &Value, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(data).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    hash::safe_encode(hash::fnv1a32(&bytes))
}

/// `<prefix>-<hash>`, the prefix cut so the name stays a valid name.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let cut: String = prefix.chars().take(223).collect();
    format!("{cut}-{hash}")
}

/// The hash label of a revision.
pub fn hash_of(rev: &ControllerRevision) -> Option<&str> {
    rev.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

/// The owner of revisions, as its revisions copy it.
#[derive(Debug, Clone, Copy)]
pub struct Parent<'a> {
    /// Controller reference to the owner.
    pub reference: &'a OwnerReference,
    /// The owner's namespace.
    pub namespace: &'a str,
    /// The labels of the owner's pod template (copied onto revisions).
    pub template_labels: Option<&'a BTreeMap<String, String>>,
    /// The owner's annotations (copied onto revisions, so that
    /// `kubernetes.io/change-cause` shows in `kubectl rollout history`).
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

/// A new revision of `parent` holding `data`, named after `hash`.
pub fn new_revision(parent: &Parent, data: Value, revision: i64, hash: &str) -> ControllerRevision {
    let mut labels = parent.template_labels.cloned().unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(&parent.reference.name, hash)),
            namespace: Some(parent.namespace.into()),
            labels: Some(labels),
            annotations: parent.annotations.filter(|a| !a.is_empty()).cloned(),
            owner_references: Some(vec![parent.reference.clone()]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// True when two revisions restore the same state (upstream compares the
/// data; the safe-encoded hash labels never parse as numbers there).
pub fn equal_data(rev: &ControllerRevision, data: &Value) -> bool {
    rev.data.as_ref().is_some_and(|d| &d.0 == data)
}

/// One more than the highest revision number.
pub fn next_revision(revs: &[ControllerRevision]) -> i64 {
    revs.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Sorts by revision number, then name (upstream's byRevision).
pub fn sort(revs: &mut [ControllerRevision]) {
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// What to do to get a revision equal to the wanted data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The latest revision already is it: use it as is.
    Use(String),
    /// An older equal revision exists: renumber it to `revision`.
    Bump(String, i64),
    /// None exists: create one numbered `revision`.
    Create(i64),
}

/// Decides how to get the wanted revision from `revs` (sorted by revision).
pub fn plan(revs: &[ControllerRevision], data: &Value) -> Plan {
    let name = |r: &ControllerRevision| r.metadata.name.clone().unwrap_or_default();
    let next = next_revision(revs);
    match revs.iter().rposition(|r| equal_data(r, data)) {
        Some(i) if i + 1 == revs.len() => Plan::Use(name(&revs[i])),
        Some(i) => Plan::Bump(name(&revs[i]), next),
        None => Plan::Create(next),
    }
}

/// Names of the revisions to delete so that at most `limit` revisions not
/// `live` remain, oldest first (revisions in use are always kept).
pub fn to_truncate(
    revs: &[ControllerRevision],
    live: impl Fn(&ControllerRevision) -> bool,
    limit: i32,
) -> Vec<String> {
    let mut history: Vec<&ControllerRevision> = revs.iter().filter(|r| !live(r)).collect();
    history.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    let excess = history.len().saturating_sub(limit);
    history
        .into_iter()
        .take(excess)
        .filter_map(|r| r.metadata.name.clone())
        .collect()
}

/// The revisions of the owner `parent` in `ns`: those it controls, plus
/// matching orphans it adopts (as upstream's ClaimControllerRevisions).
pub async fn list_owned(
    client: &kube::Client,
    ns: &str,
    sel: &Selector,
    parent: &OwnerReference,
    parent_deleting: bool,
) -> Result<Vec<ControllerRevision>> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default().labels_from(sel))
        .await
        .map_err(Error::kube(format!("list controllerrevisions in {ns}")))?;
    let mut out = Vec::new();
    for rev in list.items {
        let matches = pods::matches(sel, rev.metadata.labels.as_ref());
        match owner::claim(&rev.metadata, &parent.uid, matches) {
            Claim::Owned => out.push(rev),
            Claim::Adopt if !parent_deleting => {
                if let Some(r) = owner::adopt(&api, &rev, parent).await? {
                    out.push(r);
                }
            }
            _ => {}
        }
    }
    sort(&mut out);
    Ok(out)
}

/// Makes sure a revision holding `data` exists and is the latest: reuses
/// the newest equal one (bumping its number when it is not the latest) or
/// creates one named by `hash_fn(collision_count)`, counting collisions
/// with other data under the same name. `revs` (sorted) is kept up to date.
pub async fn ensure(
    client: &kube::Client,
    parent: &Parent<'_>,
    data: Value,
    hash_fn: impl Fn(Option<i32>) -> String,
    collision_count: &mut Option<i32>,
    revs: &mut Vec<ControllerRevision>,
) -> Result<ControllerRevision> {
    let ns = parent.namespace;
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    match plan(revs, &data) {
        Plan::Use(name) => revs
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(&name))
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("revision {name} vanished"))),
        Plan::Bump(name, revision) => {
            let patch = json!({ "revision": revision });
            let updated = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::kube(format!(
                    "update controllerrevision {ns}/{name}"
                )))?;
            revs.retain(|r| r.metadata.name.as_deref() != Some(&name));
            revs.push(updated.clone());
            sort(revs);
            Ok(updated)
        }
        Plan::Create(revision) => {
            // Bounded: each round either succeeds or counts a collision.
            for _ in 0..100 {
                let h = hash_fn(*collision_count);
                let rev = new_revision(parent, data.clone(), revision, &h);
                let name = rev.metadata.name.clone().unwrap_or_default();
                match api.create(&PostParams::default(), &rev).await {
                    Ok(created) => {
                        revs.push(created.clone());
                        sort(revs);
                        return Ok(created);
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        let existing = api
                            .get(&name)
                            .await
                            .map_err(Error::kube(format!("get controllerrevision {ns}/{name}")))?;
                        if owner::is_controlled_by(&existing.metadata, &parent.reference.uid)
                            && equal_data(&existing, &data)
                        {
                            revs.retain(|r| r.metadata.name.as_deref() != Some(&name));
                            revs.push(existing.clone());
                            sort(revs);
                            return Ok(existing);
                        }
                        *collision_count = Some(collision_count.unwrap_or(0).saturating_add(1));
                    }
                    Err(e) => {
                        return Err(Error::kube(format!(
                            "create controllerrevision {ns}/{name}"
                        ))(e))
                    }
                }
            }
            Err(Error::Invalid(format!(
                "too many hash collisions creating a revision of {}",
                parent.reference.name
            )))
        }
    }
}

/// Deletes the named revisions (already gone is fine).
pub async fn delete(client: &kube::Client, ns: &str, names: &[String]) -> Result<()> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    for name in names {
        if let Err(e) = api.delete(name, &DeleteParams::default()).await {
            let e = Error::kube(format!("delete controllerrevision {ns}/{name}"))(e);
            if !e.is_not_found() {
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(name: &str, revision: i64, data: Value) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(RawExtension(data)),
            revision,
        }
    }

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap()
    }

    #[test]
    fn patch_round_trips_and_replaces() {
        let t = template("nginx");
        let p = template_patch(&t);
        assert_eq!(p["spec"]["template"]["$patch"], "replace");
        let r = rev("web-1", 1, p);
        assert_eq!(template_of(&r), Some(t));
    }

    #[test]
    fn hashing_is_stable_and_probe_changes_it() {
        let d = template_patch(&template("nginx"));
        assert_eq!(hash_data(&d, Some(0)), hash_data(&d, Some(0)));
        assert_ne!(hash_data(&d, Some(0)), hash_data(&d, Some(1)));
        assert_ne!(
            hash_data(&d, Some(0)),
            hash_data(&template_patch(&template("httpd")), Some(0))
        );
        assert_eq!(revision_name("web", "abc"), "web-abc");
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn new_revision_is_labelled_and_owned() {
        let owner = OwnerReference {
            name: "web".into(),
            uid: "u1".into(),
            controller: Some(true),
            ..Default::default()
        };
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let notes = BTreeMap::from([("kubernetes.io/change-cause".to_string(), "v2".to_string())]);
        let parent = Parent {
            reference: &owner,
            namespace: "ns",
            template_labels: Some(&labels),
            annotations: Some(&notes),
        };
        let r = new_revision(&parent, json!({}), 3, "h1");
        assert_eq!(
            r.metadata.annotations.as_ref().unwrap()["kubernetes.io/change-cause"],
            "v2"
        );
        assert_eq!(r.metadata.name.as_deref(), Some("web-h1"));
        assert_eq!(hash_of(&r), Some("h1"));
        assert_eq!(r.metadata.labels.as_ref().unwrap()["app"], "web");
        assert!(owner::is_controlled_by(&r.metadata, "u1"));
        assert_eq!(r.revision, 3);
    }

    #[test]
    fn plan_reuses_bumps_or_creates() {
        let a = json!({"a": 1});
        let b = json!({"b": 1});
        let revs = vec![rev("x-a", 1, a.clone()), rev("x-b", 2, b.clone())];
        assert_eq!(plan(&revs, &b), Plan::Use("x-b".into()));
        assert_eq!(plan(&revs, &a), Plan::Bump("x-a".into(), 3));
        assert_eq!(plan(&revs, &json!({"c": 1})), Plan::Create(3));
        assert_eq!(plan(&[], &a), Plan::Create(1));
    }

    #[test]
    fn truncation_keeps_live_and_newest() {
        let revs: Vec<_> = (1..=6)
            .map(|i| rev(&format!("r{i}"), i, json!(i)))
            .collect();
        // r1 is live (a pod still runs it), r6 is current: keep 2 of r2..r5.
        let live = |r: &ControllerRevision| matches!(r.metadata.name.as_deref(), Some("r1" | "r6"));
        assert_eq!(to_truncate(&revs, live, 2), vec!["r2", "r3"]);
        assert!(to_truncate(&revs, live, 10).is_empty());
        assert_eq!(to_truncate(&revs, live, 0).len(), 4);
    }
}
