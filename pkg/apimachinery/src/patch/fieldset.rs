//! Field sets in the `FieldsV1` encoding used by `metadata.managedFields`:
//! a tree whose keys are path elements — `f:<field>` for a map field,
//! `k:{"name":"x"}` for a list item identified by its merge key, `v:<json>`
//! for an item of a set, `i:<n>` for a positional item — and where `.` (or an
//! empty leaf) marks the node itself as a member of the set.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::schema::{self, Field, ListKind, Ty};
use super::PatchError;

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    /// Whether the path leading to this node is itself in the set.
    pub member: bool,
    /// Child path elements, never empty sets.
    pub children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    fn leaf() -> Self {
        Self {
            member: true,
            children: BTreeMap::new(),
        }
    }

    /// True when the set holds no path.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    fn put(&mut self, el: String, child: FieldSet) {
        if !child.is_empty() {
            self.children.insert(el, child);
        }
    }

    /// Decodes a `fieldsV1` value (the root is never a member itself).
    pub fn from_fields_v1(v: &Value) -> Self {
        let mut s = Self::decode(v);
        s.member = false;
        s
    }

    fn decode(v: &Value) -> Self {
        let mut s = Self::default();
        let Value::Object(m) = v else {
            return Self::leaf();
        };
        if m.is_empty() {
            return Self::leaf();
        }
        for (k, child) in m {
            if k == "." {
                s.member = true;
            } else {
                s.children.insert(k.clone(), Self::decode(child));
            }
        }
        s
    }

    /// Encodes as a `fieldsV1` value.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, c) in &self.children {
            m.insert(k.clone(), c.to_fields_v1());
        }
        Value::Object(m)
    }

    /// Adds every path of `other`.
    pub fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (k, c) in &other.children {
            self.children.entry(k.clone()).or_default().union(c);
        }
    }

    /// Paths of `self` not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            ..Default::default()
        };
        for (k, c) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            out.put(k.clone(), d);
        }
        out
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            ..Default::default()
        };
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                out.put(k.clone(), c.intersection(o));
            }
        }
        out
    }

    /// Removes one path (and nothing below it).
    pub fn remove_path(&mut self, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            self.member = false;
            return;
        };
        if let Some(c) = self.children.get_mut(first) {
            c.remove_path(rest);
            if c.is_empty() {
                self.children.remove(first);
            }
        }
    }

    /// The node at `path`, if any path goes through it.
    pub fn get(&self, path: &[String]) -> Option<&FieldSet> {
        match path.split_first() {
            None => Some(self),
            Some((first, rest)) => self.children.get(first)?.get(rest),
        }
    }

    /// Every member path, with whether the node has children in this set.
    pub fn members(&self) -> Vec<(Vec<String>, bool)> {
        fn walk(s: &FieldSet, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, bool)>) {
            if s.member && !prefix.is_empty() {
                out.push((prefix.clone(), s.children.is_empty()));
            }
            for (k, c) in &s.children {
                prefix.push(k.clone());
                walk(c, prefix, out);
                prefix.pop();
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }
}

/// Renders a path the way kube-apiserver does in conflict messages, e.g.
/// `.spec.template.spec.containers[name="nginx"].image`.
pub(crate) fn render_path(path: &[String]) -> String {
    let mut out = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let keys = match serde_json::from_str::<Value>(k) {
                Ok(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => k.to_string(),
            };
            out.push_str(&format!("[{keys}]"));
        } else if let Some(v) = el.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = el.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        } else {
            out.push_str(el);
        }
    }
    out
}

fn item_matches(item: &Value, el: &str) -> bool {
    if let Some(k) = el.strip_prefix("k:") {
        match serde_json::from_str::<Value>(k) {
            Ok(Value::Object(keys)) => keys.iter().all(|(k, v)| item.get(k) == Some(v)),
            _ => false,
        }
    } else if let Some(v) = el.strip_prefix("v:") {
        serde_json::from_str::<Value>(v).is_ok_and(|v| &v == item)
    } else {
        false
    }
}

fn list_index(items: &[Value], el: &str) -> Option<usize> {
    if let Some(i) = el.strip_prefix("i:") {
        return i.parse().ok().filter(|&i| i < items.len());
    }
    items.iter().position(|i| item_matches(i, el))
}

/// The value at one path element below `v`.
pub(crate) fn child<'a>(v: &'a Value, el: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(el.strip_prefix("f:")?),
        Value::Array(items) => items.get(list_index(items, el)?),
        _ => None,
    }
}

/// The value at `path` below `v`.
pub(crate) fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, el| child(v, el))
}

/// Removes the value at `path` below `v`; returns whether something was removed.
pub(crate) fn remove_at(v: &mut Value, path: &[String]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let mut cur = v;
    for el in parent {
        cur = match cur {
            Value::Object(m) => match el.strip_prefix("f:").and_then(|f| m.get_mut(f)) {
                Some(c) => c,
                None => return false,
            },
            Value::Array(items) => match list_index(items, el) {
                Some(i) => &mut items[i],
                None => return false,
            },
            _ => return false,
        };
    }
    match cur {
        Value::Object(m) => last
            .strip_prefix("f:")
            .is_some_and(|f| m.shift_remove(f).is_some()),
        Value::Array(items) => match list_index(items, last) {
            Some(i) => {
                items.remove(i);
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// The path element of a keyed list item: `k:{"name":"x"}`.
pub(crate) fn key_element(key: &str, value: &Value) -> String {
    let mut m = Map::new();
    m.insert(key.to_string(), value.clone());
    format!("k:{}", Value::Object(m))
}

/// Path element of item `idx` of a list, per the list's merge kind. In lenient
/// mode an item lacking its key falls back to its index.
fn item_element(
    item: &Value,
    idx: usize,
    list: ListKind,
    strict: bool,
) -> Result<String, PatchError> {
    match list {
        ListKind::Keyed(key) => match item.get(key) {
            Some(kv) => Ok(key_element(key, kv)),
            None if strict => Err(PatchError::Invalid(format!(
                "associative list with keys has an element that omits key field {key:?}: {item}"
            ))),
            None => Ok(format!("i:{idx}")),
        },
        ListKind::Set => Ok(format!("v:{item}")),
        ListKind::Atomic => Ok(format!("i:{idx}")),
    }
}

/// The set of every field set in `v` (the value of a field described by `fl`).
pub(crate) fn value_set(v: &Value, fl: Field, strict: bool) -> Result<FieldSet, PatchError> {
    match v {
        Value::Object(m) if !m.is_empty() && fl.ty != Ty::Atomic => {
            let mut s = FieldSet {
                member: fl.ty == Ty::Map,
                ..Default::default()
            };
            for (k, c) in m {
                if !c.is_null() {
                    s.put(
                        format!("f:{k}"),
                        value_set(c, schema::field(fl.ty, k), strict)?,
                    );
                }
            }
            Ok(s)
        }
        Value::Array(items) if !items.is_empty() && fl.list != ListKind::Atomic => {
            let mut s = FieldSet::default();
            for (i, item) in items.iter().enumerate() {
                let el = item_element(item, i, fl.list, strict)?;
                let mut node = match fl.list {
                    ListKind::Keyed(_) => value_set(
                        item,
                        Field {
                            ty: fl.ty,
                            list: ListKind::Atomic,
                        },
                        strict,
                    )?,
                    _ => FieldSet::default(),
                };
                node.member = true;
                s.put(el, node);
            }
            Ok(s)
        }
        _ => Ok(FieldSet::leaf()),
    }
}

/// The fields of `new` that were added or changed relative to `old`.
pub(crate) fn changed_set(old: Option<&Value>, new: &Value, fl: Field) -> FieldSet {
    let full = || value_set(new, fl, false).unwrap_or_default();
    let Some(old) = old else { return full() };
    if old == new {
        return FieldSet::default();
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) if !n.is_empty() && fl.ty != Ty::Atomic => {
            let mut s = FieldSet::default();
            for (k, c) in n {
                if !c.is_null() {
                    s.put(
                        format!("f:{k}"),
                        changed_set(o.get(k), c, schema::field(fl.ty, k)),
                    );
                }
            }
            s
        }
        (Value::Array(o), Value::Array(n)) if !n.is_empty() && fl.list != ListKind::Atomic => {
            let mut s = FieldSet::default();
            let item_fl = Field {
                ty: fl.ty,
                list: ListKind::Atomic,
            };
            for (i, item) in n.iter().enumerate() {
                let Ok(el) = item_element(item, i, fl.list, false) else {
                    continue;
                };
                let prev = o.iter().find(|p| item_matches(p, &el));
                let node = match (fl.list, prev) {
                    (ListKind::Keyed(_), Some(p)) => changed_set(Some(p), item, item_fl),
                    (ListKind::Keyed(_), None) => {
                        let mut n = value_set(item, item_fl, false).unwrap_or_default();
                        n.member = true;
                        n
                    }
                    (_, Some(_)) => FieldSet::default(),
                    (_, None) => FieldSet::leaf(),
                };
                s.put(el, node);
            }
            s
        }
        _ => full(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deploy_fields() -> FieldSet {
        let root = schema::root("apps/v1", "Deployment").unwrap();
        let obj = json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}
        });
        value_set(
            &obj,
            Field {
                ty: root,
                list: ListKind::Atomic,
            },
            true,
        )
        .unwrap()
    }

    #[test]
    fn encodes_like_kube() {
        let fs = deploy_fields().to_fields_v1();
        assert_eq!(
            fs,
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}
            })
        );
        assert_eq!(FieldSet::from_fields_v1(&fs), deploy_fields());
    }

    #[test]
    fn set_algebra_and_paths() {
        let a = deploy_fields();
        let replicas = FieldSet::from_fields_v1(&json!({"f:spec": {"f:replicas": {}}}));
        let d = a.difference(&replicas);
        assert!(d.get(&["f:spec".into(), "f:replicas".into()]).is_none());
        let i = a.intersection(&replicas);
        assert_eq!(i, replicas);
        let paths: Vec<_> = a
            .members()
            .into_iter()
            .map(|(p, _)| render_path(&p))
            .collect();
        assert!(paths.contains(&".spec.template.spec.containers[name=\"nginx\"].image".to_string()));
        assert!(paths.contains(&".metadata.labels".to_string()));
    }

    #[test]
    fn navigates_and_removes_by_key() {
        let mut v = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}],
            "finalizers": ["f1", "f2"]}});
        let path = [
            "f:spec".to_string(),
            "f:containers".into(),
            key_element("name", &json!("a")),
            "f:image".into(),
        ];
        assert_eq!(value_at(&v, &path), Some(&json!("x")));
        assert!(remove_at(&mut v, &path[..3]));
        assert!(remove_at(
            &mut v,
            &["f:spec".into(), "f:finalizers".into(), "v:\"f1\"".into()]
        ));
        assert_eq!(
            v,
            json!({"spec": {"containers": [{"name": "b"}], "finalizers": ["f2"]}})
        );
    }

    #[test]
    fn changed_set_reports_only_changes() {
        let root = schema::root("apps/v1", "Deployment").unwrap();
        let fl = Field {
            ty: root,
            list: ListKind::Atomic,
        };
        let old = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let new = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}});
        let c = changed_set(Some(&old), &new, fl);
        let paths: Vec<_> = c
            .members()
            .into_iter()
            .map(|(p, _)| render_path(&p))
            .collect();
        assert_eq!(
            paths,
            vec![
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"b\"]",
                ".spec.template.spec.containers[name=\"b\"].image",
                ".spec.template.spec.containers[name=\"b\"].name",
            ]
        );
    }
}
