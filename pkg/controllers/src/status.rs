//! Writing a controller's status: one merge patch of the whole `.status`
//! subresource, named in errors as `update status of <kind> <key>`.

use std::fmt::Debug;

use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::{Error, Result};

/// Merge-patches `status` as the whole `.status` of the object `name`
/// (`key`, `ns/name` or the name, names it in errors) and returns the
/// updated object. Fields `status` leaves out keep their old values, so a
/// caller writes an explicit null for what must be removed. Callers skip
/// the write when nothing changed.
pub async fn write<K, S>(api: &Api<K>, name: &str, key: &str, status: &S) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize + ?Sized,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(Error::kube(format!(
        "update status of {} {key}",
        K::kind(&()).to_lowercase()
    )))
}
