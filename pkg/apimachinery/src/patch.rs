//! Patching of objects as `serde_json::Value`, as kube-apiserver does it:
//! RFC 6902 JSON patch, RFC 7386 merge patch, Kubernetes strategic merge
//! patch for built-in kinds, and server-side apply with `managedFields`
//! tracking (also recorded for plain updates by [`track_update`]).
//!
//! Merge keys and list strategies of the built-in types come from a
//! hand-written table (see `schema`), because k8s-openapi's schemas lack the
//! `x-kubernetes-patch-*` extensions. Custom resources get
//! [`PatchError::Unsupported`] for strategic merge patch (HTTP 415) and the
//! schema-less defaults (maps granular, lists atomic) for server-side apply.

mod fieldset;
mod managed;
mod schema;
mod strategic;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

pub use managed::BEFORE_FIRST_APPLY;

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch cannot be applied to the document (HTTP 422).
    #[error("{0}")]
    Invalid(String),
    /// The patch body is not a valid patch document (HTTP 400).
    #[error("invalid patch document: {0}")]
    Decode(#[source] serde_json::Error),
    /// One JSON patch operation failed (HTTP 422).
    #[error("json patch {op} operation {index} failed: {source}")]
    JsonPatchOp {
        /// Index of the failing operation in the patch.
        index: usize,
        /// Name of the failing operation, e.g. "test".
        op: &'static str,
        /// The underlying failure.
        #[source]
        source: json_patch::PatchError,
    },
    /// Server-side apply conflicts with other field managers (HTTP 409).
    #[error(transparent)]
    Conflict(ApplyConflict),
    /// Strategic merge patch of a kind without known patch strategies, such
    /// as a custom resource (HTTP 415 Unsupported Media Type).
    #[error(
        "strategic merge patch is not supported for {api_version}, Kind={kind}; the body of the \
         request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )]
    Unsupported {
        /// apiVersion of the object.
        api_version: String,
        /// Kind of the object.
        kind: String,
    },
}

impl PatchError {
    /// The HTTP status kube-apiserver answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            PatchError::Invalid(_) | PatchError::JsonPatchOp { .. } => 422,
            PatchError::Decode(_) => 400,
            PatchError::Conflict(_) => 409,
            PatchError::Unsupported { .. } => 415,
        }
    }
}

/// The conflicts of a server-side apply with other field managers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyConflict {
    /// (manager, field path like `.spec.replicas`) of every conflict.
    pub conflicts: Vec<(String, String)>,
    /// apiVersion and subresource ("" for the main resource) of each
    /// conflicting manager's entry, by manager.
    pub versions: BTreeMap<String, (String, String)>,
}

impl ApplyConflict {
    fn manager(&self, name: &str) -> String {
        let mut s = format!("{name:?}");
        if let Some((version, sub)) = self.versions.get(name) {
            if !sub.is_empty() {
                s.push_str(&format!(" with subresource {sub:?}"));
            }
            s.push_str(&format!(" using {version}"));
        }
        s
    }
}

impl std::error::Error for ApplyConflict {}

impl fmt::Display for ApplyConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.conflicts.len();
        write!(
            f,
            "Apply failed with {n} conflict{}: ",
            if n == 1 { "" } else { "s" }
        )?;
        if let [(manager, path)] = self.conflicts.as_slice() {
            return write!(f, "conflict with {}: {path}", self.manager(manager));
        }
        let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (m, p) in &self.conflicts {
            by_manager.entry(m).or_default().push(p);
        }
        let mut lines = Vec::new();
        for (m, paths) in by_manager {
            lines.push(format!("conflicts with {}:", self.manager(m)));
            lines.extend(paths.into_iter().map(|p| format!("- {p}")));
        }
        f.write_str(&lines.join("\n"))
    }
}

/// RFC 6902 JSON patch. Errors name the failing operation.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(PatchError::Decode)?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops.0).map_err(|e| {
        let op = match ops.0.get(e.operation) {
            Some(json_patch::PatchOperation::Add(_)) => "add",
            Some(json_patch::PatchOperation::Remove(_)) => "remove",
            Some(json_patch::PatchOperation::Replace(_)) => "replace",
            Some(json_patch::PatchOperation::Move(_)) => "move",
            Some(json_patch::PatchOperation::Copy(_)) => "copy",
            Some(json_patch::PatchOperation::Test(_)) => "test",
            None => "unknown",
        };
        PatchError::JsonPatchOp {
            index: e.operation,
            op,
            source: e,
        }
    })?;
    Ok(out)
}

/// RFC 7386 merge patch. The patch must be a JSON object (the document of a
/// Kubernetes object always is).
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Invalid(format!(
            "merge patch must be a JSON object, got {patch}"
        )));
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

/// Kubernetes strategic merge patch for a built-in kind (`api_version` like
/// "apps/v1", `kind` like "Deployment"). Other kinds get
/// [`PatchError::Unsupported`].
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    api_version: &str,
    kind: &str,
) -> Result<Value, PatchError> {
    let root = schema::root(api_version, kind).ok_or_else(|| PatchError::Unsupported {
        api_version: api_version.into(),
        kind: kind.into(),
    })?;
    strategic::patch(doc, patch, root)
}

/// Whether strategic merge patch is supported for this kind (built-in types only).
pub fn supports_strategic_merge(api_version: &str, kind: &str) -> bool {
    schema::root(api_version, kind).is_some()
}

/// Server-side apply. `live` is the current object (None when creating),
/// `applied` the user's applied configuration. Returns the new object with
/// `metadata.managedFields` updated; conflicts with other managers fail with
/// [`PatchError::Conflict`] unless `force`. `now` is an RFC 3339 time.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    kind: &str,
    now: &str,
) -> Result<Value, PatchError> {
    managed::apply(live, applied, manager, force, api_version, kind, now)
}

/// Records an Update (PUT/PATCH/POST) by `manager` in
/// `metadata.managedFields` of `new` given `old` (None on create): the fields
/// whose values changed move to this manager (operation "Update"), removed
/// from other managers' sets. `subresource` is e.g. "status", or "". When
/// `new` carries no managedFields those of `old` are kept; `[{}]` clears them.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    kind: &str,
    subresource: &str,
    now: &str,
) {
    managed::track_update(old, new, manager, api_version, kind, subresource, now)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_patch_test_add_remove() {
        let doc = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1}});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "test", "path": "/spec/replicas", "value": 1},
                {"op": "add", "path": "/metadata/labels/y", "value": "2"},
                {"op": "remove", "path": "/metadata/labels/x"},
                {"op": "replace", "path": "/spec/replicas", "value": 3}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"name": "a", "labels": {"y": "2"}}, "spec": {"replicas": 3}})
        );
    }

    #[test]
    fn json_patch_errors_name_the_op() {
        let doc = json!({"spec": {"replicas": 1}});
        let err = json_patch(
            &doc,
            &json!([{"op": "test", "path": "/spec/replicas", "value": 2}]),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            PatchError::JsonPatchOp {
                index: 0,
                op: "test",
                ..
            }
        ));
        assert_eq!(err.http_status(), 422);
        let err =
            json_patch(&doc, &json!([{"op": "remove", "path": "/spec/missing"}])).unwrap_err();
        assert!(err.to_string().contains("remove operation 0"), "{err}");
        let err = json_patch(&doc, &json!([{"op": "frobnicate", "path": "/"}])).unwrap_err();
        assert_eq!(err.http_status(), 400);
    }

    #[test]
    fn merge_patch_rfc7386() {
        let doc =
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"args": ["x", "y"]}});
        let out = merge_patch(
            &doc,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"args": ["z"]}}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"args": ["z"]}})
        );
        assert!(matches!(
            merge_patch(&doc, &json!([1])),
            Err(PatchError::Invalid(_))
        ));
    }

    #[test]
    fn conflict_messages_match_kube() {
        let one = ApplyConflict {
            conflicts: vec![("kubectl-client-side-apply".into(), ".spec.replicas".into())],
            versions: [(
                "kubectl-client-side-apply".to_string(),
                ("apps/v1".to_string(), String::new()),
            )]
            .into(),
        };
        assert_eq!(
            one.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        let two = ApplyConflict {
            conflicts: vec![("m".into(), ".a".into()), ("m".into(), ".b".into())],
            versions: [("m".to_string(), ("v1".to_string(), "status".to_string()))].into(),
        };
        assert_eq!(
            two.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"m\" with subresource \"status\" using v1:\n- .a\n- .b"
        );
    }
}
