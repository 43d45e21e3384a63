//! Owner references: the controller reference of an object, building one
//! for a new child, and the adopt/release decisions controllers make by
//! selector (upstream's ControllerRefManager).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

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
    fn claims() {
        assert_eq!(claim(&child(Some("a")), "a", true), Claim::Owned);
        assert_eq!(claim(&child(Some("a")), "a", false), Claim::Release);
        assert_eq!(claim(&child(Some("b")), "a", true), Claim::Ignore);
        assert_eq!(claim(&child(None), "a", true), Claim::Adopt);
        assert_eq!(claim(&child(None), "a", false), Claim::Ignore);
    }
}
