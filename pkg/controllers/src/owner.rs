//! Owner references: the controller reference of an object, building one
//! for a new child, the adopt/release decisions controllers make by
//! selector, and the ownerReferences patches that carry them out (upstream's
//! ControllerRefManager), for pods, ReplicaSets and ControllerRevisions
//! alike.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// True when `meta`'s controller reference points at the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_ref(meta).is_some_and(|r| r.uid == uid)
}

/// A controller reference (controller and blockOwnerDeletion true) to `owner`.
pub fn new_controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What to do with a candidate child found by selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already ours.
    Owned,
    /// An orphan that matches: adopt it (unless the owner is being deleted).
    Adopt,
    /// Ours but no longer matching: release it (remove our reference).
    Release,
    /// Someone else's, or not matching: leave it alone.
    Ignore,
}

/// Decides how an owner with `owner_uid` treats a child whose labels
/// `matches` its selector, as upstream's ClaimObject does.
pub fn claim(child: &ObjectMeta, owner_uid: &str, matches: bool) -> Claim {
    match controller_ref(child) {
        Some(r) if r.uid == owner_uid => {
            if matches {
                Claim::Owned
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matches && child.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// The merge patch that sets `obj`'s ownerReferences to `refs` (null when
/// empty), with uid and resourceVersion preconditions so that it neither
/// touches a recreated object nor overwrites a concurrent change.
fn owner_refs_patch(meta: &ObjectMeta, refs: Vec<OwnerReference>) -> Value {
    json!({"metadata": {
        "ownerReferences": if refs.is_empty() { Value::Null } else { json!(refs) },
        "uid": meta.uid,
        "resourceVersion": meta.resource_version,
    }})
}

/// Sets `obj`'s ownerReferences to `refs` (`verb` names the change in
/// errors); None when the object vanished meanwhile.
async fn patch_owner_refs<K>(
    api: &Api<K>,
    obj: &K,
    refs: Vec<OwnerReference>,
    verb: &str,
) -> Result<Option<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let patch = owner_refs_patch(obj.meta(), refs);
    let action = format!(
        "{verb} {} {}/{}",
        K::kind(&()).to_lowercase(),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    );
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(Error::kube(action))
    {
        Ok(o) => Ok(Some(o)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Adopts `obj` by adding the controller reference `owner_ref` to its
/// ownerReferences (upstream's AdoptPod/AdoptReplicaSet/...). Returns the
/// patched object, or None when it vanished meanwhile.
pub async fn adopt<K>(api: &Api<K>, obj: &K, owner_ref: &OwnerReference) -> Result<Option<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let mut refs = obj.meta().owner_references.clone().unwrap_or_default();
    refs.push(owner_ref.clone());
    patch_owner_refs(api, obj, refs, "adopt").await
}

/// Releases `obj` by removing the references to the owner with `owner_uid`
/// (upstream's ReleasePod/...); an object that vanished or is invalid
/// (422) is left as it is.
pub async fn release<K>(api: &Api<K>, obj: &K, owner_uid: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let refs = obj
        .meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect();
    match patch_owner_refs(api, obj, refs, "release").await {
        Err(e) if e.code() != Some(422) => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn owner_refs_patches() {
        let mut meta = child(Some("a"));
        meta.uid = Some("c".into());
        meta.resource_version = Some("7".into());
        assert_eq!(
            owner_refs_patch(&meta, Vec::new()),
            json!({"metadata": {"ownerReferences": null, "uid": "c", "resourceVersion": "7"}})
        );
        let refs = meta.owner_references.clone().unwrap();
        let p = owner_refs_patch(&meta, refs);
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "a");
    }

    #[test]
    fn claims() {
        assert_eq!(claim(&child(Some("a")), "a", true), Claim::Owned);
        assert_eq!(claim(&child(Some("a")), "a", false), Claim::Release);
        assert_eq!(claim(&child(Some("b")), "a", true), Claim::Ignore);
        assert_eq!(claim(&child(None), "a", true), Claim::Adopt);
        assert_eq!(claim(&child(None), "a", false), Claim::Ignore);
    }
}
