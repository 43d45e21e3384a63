//! Server-side apply and managed-fields tracking (`metadata.managedFields`),
//! modelled on sigs.k8s.io/structured-merge-diff as used by kube-apiserver.
//! Every manager (name + operation + subresource) owns a set of fields. An
//! Update moves the fields it changed to its manager; an Apply takes the
//! fields of the applied configuration, conflicting with other owners whose
//! value it would change, and deletes fields it applied before but no longer
//! applies when nobody else owns them.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldset::{changed_set, remove_at, render_path, value_at, value_set, FieldSet};
use super::schema::{self, Field, ListKind, Ty};
use super::{ApplyConflict, PatchError};

/// Metadata fields never tracked in managed fields.
const IGNORED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "selfLink",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Metadata fields of an applied configuration that are not applied.
const UNAPPLIED_META: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "selfLink",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Manager of the fields of an object that existed before its first apply.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// One decoded `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: String,
    fields: FieldSet,
}

impl Entry {
    fn decode(v: &Value) -> Option<Entry> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Entry {
            manager: s("manager").unwrap_or_default(),
            operation: s("operation")?,
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource").unwrap_or_default(),
            fields: v
                .get("fieldsV1")
                .map(FieldSet::from_fields_v1)
                .unwrap_or_default(),
        })
    }

    fn encode(&self) -> Value {
        let mut m = Map::new();
        m.insert("apiVersion".into(), self.api_version.clone().into());
        m.insert("fieldsType".into(), "FieldsV1".into());
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        m.insert("manager".into(), self.manager.clone().into());
        m.insert("operation".into(), self.operation.clone().into());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), self.subresource.clone().into());
        }
        if let Some(t) = &self.time {
            m.insert("time".into(), t.clone().into());
        }
        Value::Object(m)
    }

    fn is(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }
}

fn decode_entries(obj: &Value) -> Option<Vec<Entry>> {
    let list = obj.pointer("/metadata/managedFields")?.as_array()?;
    Some(list.iter().filter_map(Entry::decode).collect())
}

/// Writes entries back (sorted like kube-apiserver: Apply before Update,
/// then oldest first, then by manager), dropping empty ones.
fn store_entries(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| match (&a.time, &b.time) {
                (Some(x), Some(y)) => x.cmp(y),
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            })
            .then_with(|| a.manager.cmp(&b.manager))
    });
    let Some(obj) = obj.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            entries.iter().map(Entry::encode).collect(),
        );
    }
}

/// The object without the fields managed fields never track.
fn strip(obj: &Value, subresource: &str) -> Value {
    let mut obj = obj.clone();
    if let Value::Object(m) = &mut obj {
        m.shift_remove("apiVersion");
        m.shift_remove("kind");
        if subresource.is_empty() {
            m.shift_remove("status");
        }
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            meta.retain(|k, _| !IGNORED_META.contains(&k.as_str()));
            if meta.is_empty() {
                m.shift_remove("metadata");
            }
        }
    }
    obj
}

fn root_field(ty: Ty) -> Field {
    Field {
        ty,
        list: ListKind::Atomic,
    }
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, c| !c.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Merges an applied configuration into the live object: maps recursively,
/// keyed lists by key, sets by union, atomic values replaced.
fn merge_applied(live: Option<&Value>, applied: &Value, fl: Field) -> Value {
    match (live, applied) {
        (Some(Value::Object(l)), Value::Object(a)) if fl.ty != Ty::Atomic => {
            let mut out = l.clone();
            for (k, v) in a {
                let merged = merge_applied(l.get(k), v, schema::field(fl.ty, k));
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(l)), Value::Array(a)) => match fl.list {
            ListKind::Atomic => applied.clone(),
            ListKind::Set => {
                let mut out = l.clone();
                out.extend(a.iter().filter(|i| !l.contains(i)).cloned());
                Value::Array(out)
            }
            ListKind::Keyed(key) => {
                let mut out = l.clone();
                let item_fl = root_field(fl.ty);
                for item in a {
                    match out.iter().position(|o| o.get(key) == item.get(key)) {
                        Some(i) => out[i] = merge_applied(Some(&out[i]), item, item_fl),
                        None => out.push(item.clone()),
                    }
                }
                Value::Array(out)
            }
        },
        _ => applied.clone(),
    }
}

/// Deletes from `obj` the paths of `remove` unless `keep` holds them or
/// anything below them.
fn remove_unowned(obj: &mut Value, remove: &FieldSet, keep: &FieldSet, prefix: &mut Vec<String>) {
    for (el, node) in &remove.children {
        prefix.push(el.clone());
        let kept = keep.get(prefix).is_some_and(|o| !o.is_empty());
        if node.member && !kept {
            remove_at(obj, prefix);
        } else {
            remove_unowned(obj, node, keep, prefix);
        }
        prefix.pop();
    }
}

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(Value::Object(meta)) = v.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    v
}

pub(crate) fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    kind: &str,
    now: &str,
) -> Result<Value, PatchError> {
    let Value::Object(_) = applied else {
        return Err(PatchError::Invalid(
            "applied configuration must be a JSON object".into(),
        ));
    };
    let ty = schema::root_or_unknown(api_version, kind);
    let mut config = applied.clone();
    drop_nulls(&mut config);
    if let Value::Object(m) = &mut config {
        m.shift_remove("status");
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            meta.retain(|k, _| !UNAPPLIED_META.contains(&k.as_str()));
        }
    }
    let applied_set = value_set(&strip(&config, ""), root_field(ty), true)?;

    let mut entries = live.and_then(decode_entries).unwrap_or_default();
    if let (Some(live), true) = (live, entries.is_empty()) {
        let fields = value_set(&strip(live, ""), root_field(ty), false)?;
        entries.push(Entry {
            manager: BEFORE_FIRST_APPLY.into(),
            operation: "Update".into(),
            api_version: api_version.into(),
            time: Some(now.into()),
            subresource: String::new(),
            fields,
        });
    }
    let mut merged = merge_applied(live, &config, root_field(ty));

    // Conflicts: fields of the applied set owned by another manager whose
    // value the apply would change.
    let empty = Value::Object(Map::new());
    let live_v = live.unwrap_or(&empty);
    let mut conflicts = Vec::new();
    let mut versions = BTreeMap::new();
    let mut taken: Vec<(usize, Vec<String>)> = Vec::new();
    for (idx, e) in entries.iter().enumerate() {
        if e.manager == manager {
            continue;
        }
        for (path, _) in applied_set.intersection(&e.fields).members() {
            let leaf = applied_set
                .get(&path)
                .is_some_and(|n| n.children.is_empty());
            let before = value_at(live_v, &path);
            let after = value_at(&merged, &path);
            let differs = if leaf {
                before != after
            } else {
                before.is_some() != after.is_some()
            };
            if differs {
                conflicts.push((e.manager.clone(), render_path(&path)));
                versions.insert(
                    e.manager.clone(),
                    (e.api_version.clone(), e.subresource.clone()),
                );
                taken.push((idx, path));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(PatchError::Conflict(ApplyConflict {
            conflicts,
            versions,
        }));
    }
    for (idx, path) in &taken {
        entries[*idx].fields.remove_path(path);
    }

    // Fields this manager applied before but no longer applies.
    let prev = entries.iter().position(|e| e.is(manager, "Apply", ""));
    let prev_entry = prev.map(|i| entries.remove(i));
    if let Some(prev_entry) = &prev_entry {
        let dropped = prev_entry.fields.difference(&applied_set);
        // Kept: anything another manager owns or this apply still sets.
        let mut others = applied_set.clone();
        for e in &entries {
            others.union(&e.fields);
        }
        remove_unowned(&mut merged, &dropped, &others, &mut Vec::new());
    }

    let unchanged = prev_entry.as_ref().is_some_and(|p| p.fields == applied_set)
        && live.is_some_and(|l| without_managed_fields(l) == without_managed_fields(&merged));
    let time = match (&prev_entry, unchanged) {
        (Some(p), true) => p.time.clone(),
        _ => Some(now.to_string()),
    };
    entries.push(Entry {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version: api_version.into(),
        time,
        subresource: String::new(),
        fields: applied_set,
    });
    store_entries(&mut merged, entries);
    Ok(merged)
}

pub(crate) fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    kind: &str,
    subresource: &str,
    now: &str,
) {
    let ty = schema::root_or_unknown(api_version, kind);
    let requested = new
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned();
    let mut entries = match requested {
        // `[{}]` resets managed fields entirely.
        Some(list) if list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty) => {
            store_entries(new, Vec::new());
            return;
        }
        Some(list) if !list.is_empty() => list.iter().filter_map(Entry::decode).collect(),
        _ => old.and_then(decode_entries).unwrap_or_default(),
    };
    let new_s = strip(new, subresource);
    let old_s = old.map(|o| strip(o, subresource));
    let changed = changed_set(old_s.as_ref(), &new_s, root_field(ty));
    let removed = match &old_s {
        Some(o) => value_set(o, root_field(ty), false)
            .unwrap_or_default()
            .difference(&value_set(&new_s, root_field(ty), false).unwrap_or_default()),
        None => FieldSet::default(),
    };
    let mut mine = None;
    for (i, e) in entries.iter_mut().enumerate() {
        if e.is(manager, "Update", subresource) {
            mine = Some(i);
        } else {
            e.fields = e.fields.difference(&changed).difference(&removed);
        }
    }
    match mine {
        Some(i) => {
            let e = &mut entries[i];
            e.fields.union(&changed);
            e.fields = e.fields.difference(&removed);
            e.api_version = api_version.into();
            if !changed.is_empty() {
                e.time = Some(now.into());
            }
        }
        None if !changed.is_empty() => entries.push(Entry {
            manager: manager.into(),
            operation: "Update".into(),
            api_version: api_version.into(),
            time: Some(now.into()),
            subresource: subresource.into(),
            fields: changed,
        }),
        None => {}
    }
    store_entries(new, entries);
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::patch::{apply, track_update, PatchError};

    const T1: &str = "2024-01-01T00:00:00Z";
    const T2: &str = "2024-01-02T00:00:00Z";

    fn config(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": image}]}
                }
            }
        })
    }

    fn ssa(
        live: Option<&Value>,
        cfg: &Value,
        manager: &str,
        force: bool,
        now: &str,
    ) -> Result<Value, PatchError> {
        apply(live, cfg, manager, force, "apps/v1", "Deployment", now)
    }

    fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
        obj["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager)
    }

    /// Simulates the server storing the object (adds server-set metadata).
    fn stored(mut obj: Value) -> Value {
        obj["metadata"]["uid"] = json!("u1");
        obj["metadata"]["resourceVersion"] = json!("7");
        obj
    }

    #[test]
    fn create_records_apply_entry() {
        let out = ssa(None, &config(2, "nginx:1"), "kubectl", false, T1).unwrap();
        assert_eq!(out["spec"]["replicas"], 2);
        let e = entry(&out, "kubectl").unwrap();
        assert_eq!(e["operation"], "Apply");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["time"], T1);
        assert_eq!(e["fieldsType"], "FieldsV1");
        assert_eq!(
            e["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}
            })
        );
    }

    #[test]
    fn apply_twice_is_idempotent() {
        let first = stored(ssa(None, &config(2, "nginx:1"), "kubectl", false, T1).unwrap());
        let second = ssa(Some(&first), &config(2, "nginx:1"), "kubectl", false, T2).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn update_then_apply_conflicts_and_force_takes_over() {
        let live = stored(ssa(None, &config(2, "nginx:1"), "kubectl", false, T1).unwrap());
        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(5);
        track_update(
            Some(&live),
            &mut edited,
            "kubectl-edit",
            "apps/v1",
            "Deployment",
            "",
            T2,
        );
        let edit = entry(&edited, "kubectl-edit").unwrap();
        assert_eq!(edit["operation"], "Update");
        assert_eq!(edit["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        assert!(entry(&edited, "kubectl").unwrap()["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none());

        let err = ssa(Some(&edited), &config(3, "nginx:1"), "kubectl", false, T2).unwrap_err();
        let PatchError::Conflict(c) = &err else {
            panic!("{err}")
        };
        assert_eq!(
            c.conflicts,
            vec![("kubectl-edit".to_string(), ".spec.replicas".to_string())]
        );
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"
        );
        assert_eq!(err.http_status(), 409);

        // Same value: shared ownership, no conflict.
        let shared = ssa(Some(&edited), &config(5, "nginx:1"), "kubectl", false, T2).unwrap();
        assert!(entry(&shared, "kubectl-edit").is_some());
        assert!(entry(&shared, "kubectl").unwrap()["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_some());

        let forced = ssa(Some(&edited), &config(3, "nginx:1"), "kubectl", true, T2).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        assert!(
            entry(&forced, "kubectl-edit").is_none(),
            "its only field was taken"
        );
        assert!(entry(&forced, "kubectl").unwrap()["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_some());
    }

    #[test]
    fn dropped_fields_are_removed_unless_owned_elsewhere() {
        let mut cfg = config(2, "nginx:1");
        cfg["metadata"]["labels"]["extra"] = json!("x");
        cfg["metadata"]["annotations"] = json!({"note": "n"});
        cfg["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "image": "busybox"}));
        let live = stored(ssa(None, &cfg, "kubectl", false, T1).unwrap());
        // Another applier co-owns the annotation.
        let other = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"note": "n"}}});
        let live = ssa(Some(&live), &other, "helm", false, T1).unwrap();

        let out = ssa(Some(&live), &config(2, "nginx:1"), "kubectl", false, T2).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(out["metadata"]["annotations"], json!({"note": "n"}));
        let names: Vec<_> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("nginx")]);
    }

    #[test]
    fn keyed_lists_merge_between_managers() {
        let live = stored(ssa(None, &config(2, "nginx:1"), "kubectl", false, T1).unwrap());
        let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}});
        let live = ssa(Some(&live), &sidecar, "injector", false, T1).unwrap();
        let live = ssa(Some(&live), &config(2, "nginx:2"), "kubectl", false, T2).unwrap();
        let c = live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], json!({"name": "nginx", "image": "nginx:2"}));
        assert_eq!(c[1]["name"], "proxy");
    }

    #[test]
    fn objects_without_managed_fields_belong_to_before_first_apply() {
        let live = stored(config(2, "nginx:1"));
        let err = ssa(Some(&live), &config(4, "nginx:1"), "kubectl", false, T1).unwrap_err();
        assert!(
            err.to_string()
                .contains("conflict with \"before-first-apply\""),
            "{err}"
        );
        let ok = ssa(Some(&live), &config(2, "nginx:1"), "kubectl", false, T1).unwrap();
        assert!(entry(&ok, "before-first-apply").is_some());
    }

    #[test]
    fn status_and_server_metadata_are_not_applied() {
        let mut cfg = config(1, "nginx:1");
        cfg["status"] = json!({"replicas": 9});
        cfg["metadata"]["uid"] = json!("evil");
        let live = stored(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "managedFields": [{"manager": "m", "operation": "Update",
                "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:replicas": {}}}}]},
            "status": {"replicas": 1}}));
        let out = ssa(Some(&live), &cfg, "kubectl", false, T1).unwrap();
        assert_eq!(out["status"]["replicas"], 1);
        assert_eq!(out["metadata"]["uid"], "u1");
        assert!(entry(&out, "kubectl").unwrap()["fieldsV1"]
            .get("f:status")
            .is_none());
    }

    #[test]
    fn keyed_item_without_key_is_invalid() {
        let mut cfg = config(1, "nginx:1");
        cfg["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
        assert!(matches!(
            ssa(None, &cfg, "kubectl", false, T1),
            Err(PatchError::Invalid(_))
        ));
    }

    #[test]
    fn track_update_create_and_ownership_moves() {
        let mut created = config(2, "nginx:1");
        track_update(
            None,
            &mut created,
            "kubectl-create",
            "apps/v1",
            "Deployment",
            "",
            T1,
        );
        let e = entry(&created, "kubectl-create").unwrap();
        assert_eq!(e["operation"], "Update");
        assert!(e["fieldsV1"]["f:spec"].get("f:replicas").is_some());
        assert!(e["fieldsV1"].get("f:apiVersion").is_none());

        let live = stored(created);
        let mut scaled = live.clone();
        scaled["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        scaled["spec"]["replicas"] = json!(3);
        scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        track_update(
            Some(&live),
            &mut scaled,
            "controller",
            "apps/v1",
            "Deployment",
            "",
            T2,
        );
        let c = entry(&scaled, "controller").unwrap();
        assert_eq!(c["time"], T2);
        assert_eq!(
            c["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"nginx\"}": {"f:image": {}}}}}}})
        );
        let k = &entry(&scaled, "kubectl-create").unwrap()["fieldsV1"]["f:spec"];
        assert!(k.get("f:replicas").is_none());
        assert!(
            k["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]
                .get("f:image")
                .is_none()
        );

        // A status update by the same manager is a separate entry.
        let mut st = scaled.clone();
        st["status"] = json!({"readyReplicas": 3});
        track_update(
            Some(&scaled),
            &mut st,
            "controller",
            "apps/v1",
            "Deployment",
            "status",
            T2,
        );
        let entries = st["metadata"]["managedFields"].as_array().unwrap();
        let status = entries
            .iter()
            .find(|e| e["subresource"] == "status")
            .unwrap();
        assert_eq!(status["manager"], "controller");
        assert_eq!(
            status["fieldsV1"],
            json!({"f:status": {"f:readyReplicas": {}}})
        );
        assert!(entries
            .iter()
            .any(|e| e["manager"] == "controller" && e.get("subresource").is_none()));
    }

    #[test]
    fn managed_fields_reset_with_empty_entry() {
        let live = stored(ssa(None, &config(2, "nginx:1"), "kubectl", false, T1).unwrap());
        let mut new = live.clone();
        new["metadata"]["managedFields"] = json!([{}]);
        track_update(
            Some(&live),
            &mut new,
            "kubectl-edit",
            "apps/v1",
            "Deployment",
            "",
            T2,
        );
        assert!(new["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn removed_fields_leave_every_manager() {
        let live = stored(ssa(None, &config(2, "nginx:1"), "kubectl", false, T1).unwrap());
        let mut new = live.clone();
        new["metadata"].as_object_mut().unwrap().remove("labels");
        track_update(
            Some(&live),
            &mut new,
            "kubectl-edit",
            "apps/v1",
            "Deployment",
            "",
            T2,
        );
        assert!(entry(&new, "kubectl").unwrap()["fieldsV1"]["f:metadata"].is_null());
        assert!(
            entry(&new, "kubectl-edit").is_none(),
            "deletions alone grant no ownership"
        );
    }
}
