//! Deployment helpers without I/O, as upstream's deployment/util: the
//! maxSurge/maxUnavailable fenceposts, the pod-template-hash and
//! ReplicaSet naming, the revision and replicas annotations, template
//! equality ignoring the hash label, finding the new ReplicaSet, and a
//! compact snapshot of a ReplicaSet ([`RsState`]) the planners work on.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use rkube_apimachinery::semantic::normalized;
use serde_json::Value;

use crate::intstr::scaled_value;
use crate::{owner, Result};

/// Label added to a ReplicaSet's selector, template and labels.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Revision of a ReplicaSet, and of the Deployment (its newest).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Former revisions of a ReplicaSet that was rolled back to.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas + maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Deprecated rollback request annotation (never copied).
pub const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// kubectl's last-applied configuration (never copied).
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Upper bound of the revision-history annotation's length.
pub const MAX_REV_HISTORY_CHARS: usize = 2000;

/// Resolves maxSurge (rounded up) and maxUnavailable (rounded down)
/// against `desired`; when both come out zero maxUnavailable is 1.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32)> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// spec.replicas (default 1).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// True unless the strategy is Recreate.
pub fn is_rolling(d: &Deployment) -> bool {
    strategy_type(d) != "Recreate"
}

/// The strategy type (default RollingUpdate).
pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

fn rolling_params(d: &Deployment) -> (IntOrString, IntOrString) {
    let def = IntOrString::String("25%".into());
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    (
        ru.and_then(|r| r.max_surge.clone())
            .unwrap_or_else(|| def.clone()),
        ru.and_then(|r| r.max_unavailable.clone()).unwrap_or(def),
    )
}

/// The resolved maxSurge of a rolling Deployment (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    let (s, u) = rolling_params(d);
    resolve_fenceposts(Some(&s), Some(&u), replicas(d))
        .map(|(s, _)| s)
        .unwrap_or(0)
}

/// The resolved maxUnavailable of a rolling Deployment, at most replicas
/// (0 for Recreate or zero replicas).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let r = replicas(d);
    if !is_rolling(d) || r == 0 {
        return 0;
    }
    let (s, u) = rolling_params(d);
    let (_, mu) = resolve_fenceposts(Some(&s), Some(&u), r).unwrap_or((0, 1));
    mu.min(r)
}

/// maxSurge as written, rounded up, without the fencepost fix (what
/// NewRSNewReplicas uses).
pub fn raw_max_surge(d: &Deployment) -> i32 {
    let (s, _) = rolling_params(d);
    scaled_value(&s, replicas(d), true).unwrap_or(0)
}

/// spec.minReadySeconds (default 0).
pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// spec.paused.
pub fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

/// spec.progressDeadlineSeconds when it is a real deadline (set and not
/// MaxInt32).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// spec.revisionHistoryLimit (default 10).
pub fn revision_history_limit(d: &Deployment) -> Option<i32> {
    Some(
        d.spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10),
    )
    .filter(|l| *l != i32::MAX)
}

/// The Deployment's pod template.
pub fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

/// The pod-template-hash of a template and collision count.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    crate::hash::object_hash(template, collision_count)
}

fn without_hash(t: &PodTemplateSpec) -> Value {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(POD_TEMPLATE_HASH);
    }
    normalized(&serde_json::to_value(&t).unwrap_or(Value::Null))
}

/// True when two templates are equal once the pod-template-hash label is
/// dropped from both (upstream's EqualIgnoreHash).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// The ReplicaSet name for a Deployment and hash.
pub fn rs_name(deploy: &str, hash: &str) -> String {
    format!("{deploy}-{hash}")
}

/// The revision annotation of an object (0 when unset or invalid).
pub fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn annotation_i32(meta: &ObjectMeta, key: &str) -> Option<i32> {
    meta.annotations.as_ref()?.get(key)?.parse().ok()
}

/// What the planners need to know about a ReplicaSet.
#[derive(Debug, Clone, PartialEq)]
pub struct RsState {
    /// Name.
    pub name: String,
    /// spec.replicas.
    pub replicas: i32,
    /// status.replicas.
    pub status_replicas: i32,
    /// status.readyReplicas.
    pub ready: i32,
    /// status.availableReplicas.
    pub available: i32,
    /// creationTimestamp.
    pub created: Option<Timestamp>,
    /// The revision annotation.
    pub revision: i64,
    /// The desired-replicas annotation.
    pub desired_annotation: Option<i32>,
    /// The max-replicas annotation.
    pub max_annotation: Option<i32>,
    /// metadata.generation.
    pub generation: i64,
    /// status.observedGeneration.
    pub observed_generation: i64,
    /// Being deleted.
    pub deleting: bool,
}

impl RsState {
    /// The snapshot of `rs`.
    pub fn of(rs: &ReplicaSet) -> Self {
        let st = rs.status.as_ref();
        Self {
            name: rs.metadata.name.clone().unwrap_or_default(),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            status_replicas: st.map(|s| s.replicas).unwrap_or(0),
            ready: st.and_then(|s| s.ready_replicas).unwrap_or(0),
            available: st.and_then(|s| s.available_replicas).unwrap_or(0),
            created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            revision: revision(&rs.metadata),
            desired_annotation: annotation_i32(&rs.metadata, DESIRED_REPLICAS),
            max_annotation: annotation_i32(&rs.metadata, MAX_REPLICAS),
            generation: rs.metadata.generation.unwrap_or(0),
            observed_generation: st.and_then(|s| s.observed_generation).unwrap_or(0),
            deleting: rs.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// Orders by creation time, then name (ReplicaSetsByCreationTimestamp).
pub fn by_creation(a: &RsState, b: &RsState) -> std::cmp::Ordering {
    a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
}

/// The index of the new ReplicaSet in `rss`: the oldest whose template
/// equals the Deployment's ignoring the hash label.
pub fn find_new_rs(template: &PodTemplateSpec, rss: &[ReplicaSet]) -> Option<usize> {
    let mut idx: Vec<usize> = (0..rss.len()).collect();
    let states: Vec<RsState> = rss.iter().map(RsState::of).collect();
    idx.sort_by(|a, b| by_creation(&states[*a], &states[*b]));
    idx.into_iter().find(|i| {
        rss[*i]
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, template))
    })
}

/// Copies the Deployment's annotations onto a ReplicaSet's, except the
/// ones the controller manages. True when something changed.
pub fn copy_annotations(d: &Deployment, rs: &mut BTreeMap<String, String>) -> bool {
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        let skip = matches!(
            k.as_str(),
            LAST_APPLIED
                | REVISION
                | REVISION_HISTORY
                | DESIRED_REPLICAS
                | MAX_REPLICAS
                | ROLLBACK_TO
        );
        if skip || rs.get(k) == Some(v) {
            continue;
        }
        rs.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Sets the desired/max replicas annotations; true when they changed.
pub fn set_replicas_annotations(a: &mut BTreeMap<String, String>, desired: i32, max: i32) -> bool {
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

/// True when the desired/max replicas annotations differ from these.
pub fn replicas_annotations_need_update(
    a: Option<&BTreeMap<String, String>>,
    desired: i32,
    max: i32,
) -> bool {
    let mut copy = a.cloned().unwrap_or_default();
    set_replicas_annotations(&mut copy, desired, max)
}

/// Upstream's SetNewReplicaSetAnnotations: copies the Deployment's
/// annotations, raises the revision to `new_revision` (keeping former ones
/// in revision-history when rolling back to this ReplicaSet) and, for a
/// ReplicaSet about to be created, sets the replicas annotations. True
/// when something changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    a: &mut BTreeMap<String, String>,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = copy_annotations(d, a);
    let old = a.get(REVISION).cloned();
    let old_int = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(v) => v,
            Err(_) => return false,
        },
    };
    if old_int < new_revision {
        a.insert(REVISION.to_string(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let hist = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
            if hist.is_empty() {
                a.insert(REVISION_HISTORY.to_string(), old);
            } else {
                let mut parts: Vec<&str> = hist.split(',').collect();
                let mut total = hist.len() + old.len() + 1;
                while total > MAX_REV_HISTORY_CHARS && !parts.is_empty() {
                    total -= parts[0].len() + 1;
                    parts.remove(0);
                }
                parts.push(&old);
                let joined = parts.join(",");
                a.insert(REVISION_HISTORY.to_string(), joined);
            }
        }
    }
    if !exists {
        let r = replicas(d);
        if set_replicas_annotations(a, r, r + max_surge(d)) {
            changed = true;
        }
    }
    changed
}

/// The ReplicaSet a Deployment creates for its current template: named
/// `<deploy>-<hash>`, hash label on selector, template and labels, owned by
/// the Deployment, with `replicas` and no annotations yet.
pub fn new_replica_set(d: &Deployment, hash: &str, replicas: i32) -> ReplicaSet {
    let mut template = template(d);
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.insert(POD_TEMPLATE_HASH.to_string(), hash.to_string());
    let labels = labels.clone();
    let mut selector: LabelSelector = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.to_string(), hash.to_string());
    let name = d.metadata.name.clone().unwrap_or_default();
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(rs_name(&name, hash)),
            namespace: d.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner::new_controller_ref(d)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: Some(min_ready_seconds(d)),
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    /// A ReplicaSet state for tests: `available` of `replicas` ready and
    /// available, created `created` seconds after a fixed epoch, with
    /// revision `created`.
    pub(crate) fn rs(name: &str, replicas: i32, available: i32, created: i64) -> RsState {
        RsState {
            name: name.into(),
            replicas,
            status_replicas: replicas,
            ready: available,
            available,
            created: Timestamp::from_second(1_700_000_000 + created).ok(),
            revision: created,
            desired_annotation: None,
            max_annotation: None,
            generation: 1,
            observed_generation: 1,
            deleting: false,
        }
    }

    pub(crate) fn deploy(replicas: i32, surge: IntOrString, unavail: IntOrString) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("d-uid".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                    match_expressions: None,
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavail),
                    }),
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            image: Some("nginx".into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                progress_deadline_seconds: Some(600),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn fenceposts_round_surge_up_unavailable_down() {
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10).ok(),
            Some((3, 2))
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 3).ok(),
            Some((1, 0))
        );
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&pct("10%")), 5).ok(),
            Some((0, 1))
        );
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(0)), 5).ok(),
            Some((2, 0))
        );
        assert!(resolve_fenceposts(Some(&pct("x%")), None, 5).is_err());
    }

    #[test]
    fn max_unavailable_is_capped_and_zero_for_recreate() {
        let d = deploy(2, IntOrString::Int(0), IntOrString::Int(5));
        assert_eq!(max_unavailable(&d), 2);
        let mut r = deploy(2, IntOrString::Int(1), IntOrString::Int(1));
        if let Some(s) = r.spec.as_mut() {
            s.strategy = Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            });
        }
        assert_eq!((max_surge(&r), max_unavailable(&r)), (0, 0));
    }

    #[test]
    fn new_rs_carries_hash_everywhere() {
        let d = deploy(3, pct("25%"), pct("25%"));
        let hash = template_hash(&template(&d), None);
        assert_ne!(hash, template_hash(&template(&d), Some(1)));
        let rs = new_replica_set(&d, &hash, 1);
        assert_eq!(
            rs.metadata.name.as_deref(),
            Some(format!("web-{hash}").as_str())
        );
        let spec = rs.spec.as_ref().expect("spec");
        assert_eq!(
            spec.selector
                .match_labels
                .as_ref()
                .and_then(|l| l.get(POD_TEMPLATE_HASH)),
            Some(&hash)
        );
        assert_eq!(
            rs.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(POD_TEMPLATE_HASH)),
            Some(&hash)
        );
        let t = spec.template.as_ref().expect("template");
        assert!(equal_ignore_hash(t, &template(&d)));
        assert_eq!(
            owner::controller_ref(&rs.metadata).map(|r| r.uid.as_str()),
            Some("d-uid")
        );
        assert_eq!(find_new_rs(&template(&d), &[rs]), Some(0));
    }

    #[test]
    fn annotations_revision_and_history() {
        let mut d = deploy(3, pct("25%"), pct("25%"));
        d.metadata.annotations = Some(BTreeMap::from([
            (
                "kubernetes.io/change-cause".to_string(),
                "set env".to_string(),
            ),
            (REVISION.to_string(), "7".to_string()),
        ]));
        let mut a = BTreeMap::new();
        assert!(set_new_rs_annotations(&d, &mut a, 1, false));
        assert_eq!(a.get(REVISION).map(String::as_str), Some("1"));
        assert_eq!(
            a.get("kubernetes.io/change-cause").map(String::as_str),
            Some("set env")
        );
        assert_eq!(a.get(DESIRED_REPLICAS).map(String::as_str), Some("3"));
        assert_eq!(a.get(MAX_REPLICAS).map(String::as_str), Some("4"));
        // Nothing new: no change.
        assert!(!set_new_rs_annotations(&d, &mut a, 1, true));
        // Rolled back to: revision bumps, the old one goes to history.
        assert!(set_new_rs_annotations(&d, &mut a, 3, true));
        assert_eq!(a.get(REVISION).map(String::as_str), Some("3"));
        assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("1"));
        assert!(set_new_rs_annotations(&d, &mut a, 5, true));
        assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("1,3"));
        // Never lowered.
        assert!(!set_new_rs_annotations(&d, &mut a, 2, true));
        assert_eq!(a.get(REVISION).map(String::as_str), Some("5"));
    }

    #[test]
    fn equality_ignores_hash_and_empty_fields() {
        let d = deploy(1, pct("25%"), pct("25%"));
        let mut t = template(&d);
        if let Some(m) = t.metadata.as_mut() {
            m.annotations = Some(BTreeMap::new());
            m.labels
                .get_or_insert_with(Default::default)
                .insert(POD_TEMPLATE_HASH.into(), "abc".into());
        }
        assert!(equal_ignore_hash(&t, &template(&d)));
        if let Some(m) = t.metadata.as_mut() {
            m.annotations = Some(BTreeMap::from([(
                "restartedAt".to_string(),
                "now".to_string(),
            )]));
        }
        assert!(!equal_ignore_hash(&t, &template(&d)));
    }
}
