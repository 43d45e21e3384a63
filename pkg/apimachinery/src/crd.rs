//! Serving custom resources from CustomResourceDefinition objects: the
//! resource table entries of each served version, structural-schema
//! validation with kube-apiserver's error messages, pruning of unknown
//! fields, printer columns and scale subresource paths.
//!
//! Schemas are the `openAPIV3Schema` of a version, a structural schema:
//! every level declares `type`, objects list `properties` or
//! `additionalProperties`, and `x-kubernetes-preserve-unknown-fields`,
//! `x-kubernetes-int-or-string` and `x-kubernetes-embedded-resource` relax
//! pruning and typing as in apiextensions-apiserver.

use serde_json::{Map, Value};

use crate::resource::{ResourceInfo, ALL_VERBS};
use crate::Cause;

/// The `spec.versions[]` entry named `version`.
pub fn version_spec<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
}

/// The `openAPIV3Schema` of a version (falls back to a legacy top-level
/// `spec.validation.openAPIV3Schema`).
pub fn schema<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    version_spec(crd, version)
        .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
        .or_else(|| crd.pointer("/spec/validation/openAPIV3Schema"))
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// ResourceInfo entries for each served version of a CRD object.
pub fn crd_resources(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let (Some(group), Some(plural), Some(kind)) = (
        spec["group"].as_str(),
        names["plural"].as_str(),
        names["kind"].as_str(),
    ) else {
        return Vec::new();
    };
    let singular = names["singular"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .filter_map(|v| {
            let subs = v.get("subresources").or_else(|| spec.get("subresources"));
            let mut subresources = Vec::new();
            for s in ["status", "scale"] {
                if subs.and_then(|m| m.get(s)).is_some() {
                    subresources.push(s.to_string());
                }
            }
            Some(ResourceInfo {
                group: group.to_string(),
                version: v["name"].as_str()?.to_string(),
                plural: plural.to_string(),
                singular: singular.clone(),
                kind: kind.to_string(),
                namespaced,
                verbs: ALL_VERBS.iter().map(|s| s.to_string()).collect(),
                short_names: str_list(names.get("shortNames")),
                categories: str_list(names.get("categories")),
                subresources,
                custom: true,
            })
        })
        .collect()
}

/// Printer columns (`additionalPrinterColumns`) of a version; None when the
/// version is unknown or declares none (then NAME and AGE are the default).
pub fn printer_columns(crd: &Value, version: &str) -> Option<Vec<Value>> {
    let v = version_spec(crd, version)?;
    let cols = v
        .get("additionalPrinterColumns")
        .or_else(|| crd.pointer("/spec/additionalPrinterColumns"))?
        .as_array()?;
    (!cols.is_empty()).then(|| cols.clone())
}

/// Scale subresource paths of a version: (specReplicasPath,
/// statusReplicasPath, labelSelectorPath).
pub fn scale_paths(crd: &Value, version: &str) -> Option<(String, String, Option<String>)> {
    let scale = version_spec(crd, version)
        .and_then(|v| v.pointer("/subresources/scale"))
        .or_else(|| crd.pointer("/spec/subresources/scale"))?;
    Some((
        scale["specReplicasPath"].as_str()?.to_string(),
        scale["statusReplicasPath"].as_str()?.to_string(),
        scale["labelSelectorPath"].as_str().map(String::from),
    ))
}

/// Validates a custom resource against its version's schema, returning
/// kube-apiserver's causes (field paths relative to the object root).
/// `apiVersion`, `kind` and `metadata` are left to the generic checks.
pub fn validate_custom(crd: &Value, version: &str, obj: &Value) -> Vec<Cause> {
    let Some(schema) = schema(crd, version) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut v = Validator { out: &mut out };
    match obj {
        Value::Object(map) => {
            let mut rest = map.clone();
            rest.remove("apiVersion");
            rest.remove("kind");
            rest.remove("metadata");
            let mut s = schema.clone();
            if let Some(req) = s.get_mut("required").and_then(Value::as_array_mut) {
                req.retain(|r| !matches!(r.as_str(), Some("apiVersion" | "kind" | "metadata")));
            }
            v.check(&s, &Value::Object(rest), "");
        }
        other => v.check(schema, other, ""),
    }
    out
}

/// Removes fields the schema does not declare (kube-apiserver prunes custom
/// resources by default) and returns their paths, sorted, without a leading
/// dot (`spec.foo`, `spec.items[0].bar`), ready for `unknown field "<path>"`.
pub fn prune(crd: &Value, version: &str, obj: &mut Value) -> Vec<String> {
    let Some(schema) = schema(crd, version) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    prune_value(schema, obj, "", true, &mut out);
    out.sort();
    out
}

/// Applies the structural schema's `default`s of `version` to `obj`, as
/// kube-apiserver does on requests and when reading from storage: a
/// missing property with a default gets it, then defaults apply inside.
pub fn apply_defaults(crd: &Value, version: &str, obj: &mut Value) {
    if let Some(schema) = schema(crd, version) {
        default_value(schema, obj, true);
    }
}

fn default_value(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    if !map.contains_key(k) {
                        if let Some(d) = sub.get("default") {
                            map.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(v) = map.get_mut(k) {
                        default_value(sub, v, false);
                    }
                }
            }
            if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let props = schema.get("properties").and_then(Value::as_object);
                for (k, v) in map.iter_mut() {
                    if !props.is_some_and(|p| p.contains_key(k)) {
                        default_value(ap, v, false);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items").filter(|i| i.is_object()) {
                for v in items.iter_mut() {
                    default_value(item, v, false);
                }
            }
        }
        _ => {}
    }
}

/// Paths [`prune`] would remove, leaving `obj` untouched.
pub fn unknown_fields(crd: &Value, version: &str, obj: &Value) -> Vec<String> {
    let mut copy = obj.clone();
    prune(crd, version, &mut copy)
}

fn is_true(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The fields of ObjectMeta.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn prune_value(schema: &Value, value: &mut Value, path: &str, root: bool, out: &mut Vec<String>) {
    if is_true(schema, "x-kubernetes-int-or-string") {
        return;
    }
    let preserve = is_true(schema, "x-kubernetes-preserve-unknown-fields");
    let embedded = is_true(schema, "x-kubernetes-embedded-resource");
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let mut remove = Vec::new();
            for (k, v) in map.iter_mut() {
                if (root || embedded) && k == "metadata" {
                    // ObjectMeta is a known type: its unknown fields go too.
                    if let Value::Object(meta) = v {
                        let unknown: Vec<String> = meta
                            .keys()
                            .filter(|f| !OBJECT_META_FIELDS.contains(&f.as_str()))
                            .cloned()
                            .collect();
                        for f in unknown {
                            meta.remove(&f);
                            out.push(child(&child(path, "metadata"), &f));
                        }
                    }
                    continue;
                }
                if (root || embedded) && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                let p = child(path, k);
                if let Some(sub) = props.and_then(|m| m.get(k)) {
                    prune_value(sub, v, &p, false, out);
                } else if let Some(ap) = additional.filter(|a| a.is_object()) {
                    prune_value(ap, v, &p, false, out);
                } else if !preserve && additional.and_then(Value::as_bool) != Some(true) {
                    remove.push(k.clone());
                    out.push(p);
                }
            }
            for k in remove {
                map.remove(&k);
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items").filter(|i| i.is_object()) {
                for (i, v) in items.iter_mut().enumerate() {
                    prune_value(item, v, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

/// JSON type name of a value as go-openapi reports it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Formats a bad value like field.Error: strings quoted, scalars bare.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "\"null\"".into(),
        other => other.to_string(),
    }
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

struct Validator<'a> {
    out: &'a mut Vec<Cause>,
}

impl Validator<'_> {
    fn push(&mut self, reason: &str, field: &str, message: String) {
        self.out.push(Cause {
            reason: reason.into(),
            message,
            field: field.into(),
        });
    }

    fn invalid(&mut self, field: &str, value: &Value, detail: String) {
        self.push(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {}: {detail}", show(value)),
        );
    }

    fn check(&mut self, s: &Value, v: &Value, path: &str) {
        let name = if path.is_empty() { "." } else { path };
        let int_or_string = is_true(s, "x-kubernetes-int-or-string");
        let ty = s.get("type").and_then(Value::as_str);
        if v.is_null() {
            if is_true(s, "nullable") {
                return;
            }
            if let Some(ty) = ty {
                self.push(
                    "FieldValueTypeInvalid",
                    path,
                    format!(
                        "Invalid value: \"null\": {name} in body must be of type {ty}: \"null\""
                    ),
                );
                return;
            }
        }
        if int_or_string {
            if !matches!(type_name(v), "integer" | "string") {
                let t = type_name(v);
                self.push(
                    "FieldValueTypeInvalid",
                    path,
                    format!("Invalid value: \"{t}\": {name} in body must be of type integer,string: \"{t}\""),
                );
                return;
            }
        } else if let Some(ty) = ty {
            let actual = type_name(v);
            let ok = actual == ty || (ty == "number" && actual == "integer");
            if !ok {
                self.push(
                    "FieldValueTypeInvalid",
                    path,
                    format!("Invalid value: \"{actual}\": {name} in body must be of type {ty}: \"{actual}\""),
                );
                return;
            }
        }
        if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
            if !allowed.contains(v) {
                let list: Vec<String> = allowed
                    .iter()
                    .map(|a| match a {
                        Value::String(s) => format!("{s:?}"),
                        other => format!("{:?}", other.to_string()),
                    })
                    .collect();
                self.push(
                    "FieldValueNotSupported",
                    path,
                    format!(
                        "Unsupported value: {}: supported values: {}",
                        show(v),
                        list.join(", ")
                    ),
                );
            }
        }
        match v {
            Value::String(st) => self.check_string(s, v, st, path, name),
            Value::Number(_) => self.check_number(s, v, path, name),
            Value::Array(items) => {
                let n = items.len() as u64;
                if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
                    if n > max {
                        self.push(
                            "FieldValueTooMany",
                            path,
                            format!("Too many: {n}: must have at most {max} items"),
                        );
                    }
                }
                if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
                    if n < min {
                        self.invalid(
                            path,
                            v,
                            format!("{name} in body should have at least {min} items"),
                        );
                    }
                }
                if is_true(s, "uniqueItems")
                    || s.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set")
                {
                    let dup = items
                        .iter()
                        .enumerate()
                        .find(|(i, a)| items[..*i].contains(a));
                    if let Some((i, d)) = dup {
                        self.push(
                            "FieldValueDuplicate",
                            &format!("{path}[{i}]"),
                            format!("Duplicate value: {}", show(d)),
                        );
                    }
                }
                if let Some(item) = s.get("items").filter(|i| i.is_object()) {
                    for (i, x) in items.iter().enumerate() {
                        self.check(item, x, &format!("{path}[{i}]"));
                    }
                }
            }
            Value::Object(map) => {
                let n = map.len() as u64;
                if let Some(max) = s.get("maxProperties").and_then(Value::as_u64) {
                    if n > max {
                        self.push(
                            "FieldValueTooMany",
                            path,
                            format!("Too many: {n}: must have at most {max} items"),
                        );
                    }
                }
                if let Some(min) = s.get("minProperties").and_then(Value::as_u64) {
                    if n < min {
                        self.invalid(
                            path,
                            v,
                            format!("{name} in body should have at least {min} properties"),
                        );
                    }
                }
                for r in s
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(r) = r.as_str() {
                        if !map.contains_key(r) {
                            self.push(
                                "FieldValueRequired",
                                &child(path, r),
                                "Required value".into(),
                            );
                        }
                    }
                }
                let props = s.get("properties").and_then(Value::as_object);
                let additional = s.get("additionalProperties").filter(|a| a.is_object());
                let embedded = is_true(s, "x-kubernetes-embedded-resource");
                for (k, x) in map {
                    if embedded
                        && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                        && props.is_none_or(|p| !p.contains_key(k))
                    {
                        continue;
                    }
                    if let Some(sub) = props.and_then(|p| p.get(k)) {
                        self.check(sub, x, &child(path, k));
                    } else if let Some(ap) = additional {
                        self.check(ap, x, &child(path, k));
                    }
                }
            }
            _ => {}
        }
    }

    fn check_string(&mut self, s: &Value, v: &Value, st: &str, path: &str, name: &str) {
        let len = st.chars().count() as u64;
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                let unit = if max == 1 { "byte" } else { "bytes" };
                self.push(
                    "FieldValueTooLong",
                    path,
                    format!("Too long: may not be more than {max} {unit}"),
                );
            }
        }
        if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
            if len < min {
                self.invalid(
                    path,
                    v,
                    format!("{name} in body should be at least {min} chars long"),
                );
            }
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            match pattern::matches(p, st) {
                Some(true) | None => {}
                Some(false) => self.invalid(path, v, format!("{name} in body should match '{p}'")),
            }
        }
    }

    fn check_number(&mut self, s: &Value, v: &Value, path: &str, name: &str) {
        let Some(x) = v.as_f64() else { return };
        if let Some(fmt) = s.get("format").and_then(Value::as_str) {
            let out_of_range = match fmt {
                "int32" => !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&x),
                "int64" => v.as_i64().is_none() && type_name(v) == "integer",
                _ => false,
            };
            if out_of_range {
                self.push(
                    "FieldValueTypeInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {name} in body must be of type {fmt}: \"{}\"",
                        v, v
                    ),
                );
            }
        }
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            let excl = is_true(s, "exclusiveMinimum");
            if x < min || (excl && x == min) {
                let op = if excl {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                self.invalid(
                    path,
                    v,
                    format!("{name} in body should be {op} {}", num(&s["minimum"])),
                );
            }
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            let excl = is_true(s, "exclusiveMaximum");
            if x > max || (excl && x == max) {
                let op = if excl {
                    "less than"
                } else {
                    "less than or equal to"
                };
                self.invalid(
                    path,
                    v,
                    format!("{name} in body should be {op} {}", num(&s["maximum"])),
                );
            }
        }
        if let Some(m) = s.get("multipleOf").and_then(Value::as_f64) {
            if m > 0.0 && (x / m).fract() != 0.0 {
                self.invalid(
                    path,
                    v,
                    format!(
                        "{name} in body should be a multiple of {}",
                        num(&s["multipleOf"])
                    ),
                );
            }
        }
    }
}

/// A small regular-expression matcher for schema `pattern`s (RE2 subset:
/// literals, `.`, classes, anchors, groups with `|`, `* + ? {m,n}`).
/// Returns None for patterns it cannot parse; callers then skip the check.
mod pattern {
    #[derive(Debug, Clone)]
    enum Node {
        Char(char),
        Any,
        Class(Vec<(char, char)>, bool),
        Start,
        End,
        Group(Vec<Vec<Node>>),
        Repeat(Box<Node>, usize, Option<usize>),
    }

    struct Parser<'a> {
        chars: std::iter::Peekable<std::str::Chars<'a>>,
    }

    impl Parser<'_> {
        fn alternation(&mut self) -> Option<Vec<Vec<Node>>> {
            let mut alts = vec![self.sequence()?];
            while self.chars.peek() == Some(&'|') {
                self.chars.next();
                alts.push(self.sequence()?);
            }
            Some(alts)
        }

        fn sequence(&mut self) -> Option<Vec<Node>> {
            let mut seq = Vec::new();
            while let Some(&c) = self.chars.peek() {
                if c == '|' || c == ')' {
                    break;
                }
                self.chars.next();
                let atom = match c {
                    '.' => Node::Any,
                    '^' => Node::Start,
                    '$' => Node::End,
                    '(' => {
                        if self.chars.peek() == Some(&'?') {
                            self.chars.next();
                            if self.chars.next()? != ':' {
                                return None;
                            }
                        }
                        let g = self.alternation()?;
                        if self.chars.next()? != ')' {
                            return None;
                        }
                        Node::Group(g)
                    }
                    '[' => self.class()?,
                    '\\' => self.escape()?,
                    '*' | '+' | '?' | '{' => return None,
                    c => Node::Char(c),
                };
                let atom = self.repeat(atom)?;
                seq.push(atom);
            }
            Some(seq)
        }

        fn repeat(&mut self, atom: Node) -> Option<Node> {
            let (min, max) = match self.chars.peek() {
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some('?') => (0, Some(1)),
                Some('{') => {
                    self.chars.next();
                    let mut body = String::new();
                    loop {
                        match self.chars.next()? {
                            '}' => break,
                            c => body.push(c),
                        }
                    }
                    let (a, b) = match body.split_once(',') {
                        Some((a, "")) => (a.parse().ok()?, None),
                        Some((a, b)) => (a.parse().ok()?, Some(b.parse().ok()?)),
                        None => {
                            let n = body.parse().ok()?;
                            (n, Some(n))
                        }
                    };
                    return self.repeat(Node::Repeat(Box::new(atom), a, b));
                }
                _ => return Some(atom),
            };
            self.chars.next();
            if self.chars.peek() == Some(&'?') {
                self.chars.next();
            }
            Some(Node::Repeat(Box::new(atom), min, max))
        }

        fn escape(&mut self) -> Option<Node> {
            let c = self.chars.next()?;
            Some(match c {
                'd' => Node::Class(vec![('0', '9')], false),
                'D' => Node::Class(vec![('0', '9')], true),
                'w' => Node::Class(word(), false),
                'W' => Node::Class(word(), true),
                's' => Node::Class(space(), false),
                'S' => Node::Class(space(), true),
                c if c.is_ascii_alphanumeric() => return None,
                c => Node::Char(c),
            })
        }

        fn class(&mut self) -> Option<Node> {
            let mut negate = false;
            if self.chars.peek() == Some(&'^') {
                self.chars.next();
                negate = true;
            }
            let mut ranges = Vec::new();
            let mut first = true;
            loop {
                let c = self.chars.next()?;
                if c == ']' && !first {
                    break;
                }
                first = false;
                let lo = if c == '\\' {
                    match self.chars.next()? {
                        'd' => {
                            ranges.push(('0', '9'));
                            continue;
                        }
                        'w' => {
                            ranges.extend(word());
                            continue;
                        }
                        's' => {
                            ranges.extend(space());
                            continue;
                        }
                        e if e.is_ascii_alphanumeric() => return None,
                        e => e,
                    }
                } else {
                    c
                };
                let mut look = self.chars.clone();
                if look.next() == Some('-') && look.peek().is_some_and(|&n| n != ']') {
                    self.chars.next();
                    let hi = self.chars.next()?;
                    ranges.push((lo, hi));
                } else {
                    ranges.push((lo, lo));
                }
            }
            Some(Node::Class(ranges, negate))
        }
    }

    fn word() -> Vec<(char, char)> {
        vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')]
    }

    fn space() -> Vec<(char, char)> {
        vec![
            (' ', ' '),
            ('\t', '\t'),
            ('\n', '\n'),
            ('\r', '\r'),
            ('\x0c', '\x0c'),
            ('\x0b', '\x0b'),
        ]
    }

    /// Ends positions reachable after matching `seq` from `pos`.
    fn run(seq: &[Node], text: &[char], pos: usize, out: &mut Vec<usize>) {
        let Some((first, rest)) = seq.split_first() else {
            if !out.contains(&pos) {
                out.push(pos);
            }
            return;
        };
        for p in step(first, text, pos) {
            run(rest, text, p, out);
        }
    }

    fn step(node: &Node, text: &[char], pos: usize) -> Vec<usize> {
        match node {
            Node::Char(c) => (text.get(pos) == Some(c))
                .then_some(pos + 1)
                .into_iter()
                .collect(),
            Node::Any => (pos < text.len() && text[pos] != '\n')
                .then_some(pos + 1)
                .into_iter()
                .collect(),
            Node::Class(ranges, neg) => text
                .get(pos)
                .filter(|c| ranges.iter().any(|(lo, hi)| (lo..=hi).contains(c)) != *neg)
                .map(|_| pos + 1)
                .into_iter()
                .collect(),
            Node::Start => (pos == 0).then_some(pos).into_iter().collect(),
            Node::End => (pos == text.len()).then_some(pos).into_iter().collect(),
            Node::Group(alts) => {
                let mut out = Vec::new();
                for a in alts {
                    run(a, text, pos, &mut out);
                }
                out
            }
            Node::Repeat(inner, min, max) => {
                let mut out = Vec::new();
                if *min == 0 {
                    out.push(pos);
                }
                let mut frontier = vec![pos];
                let mut count = 0;
                while !frontier.is_empty() && max.is_none_or(|m| count < m) {
                    count += 1;
                    let mut next = Vec::new();
                    for p in &frontier {
                        for q in step(inner, text, *p) {
                            if !next.contains(&q) {
                                next.push(q);
                            }
                        }
                    }
                    if count >= *min {
                        // Only unseen end positions continue, so this terminates.
                        next.retain(|q| !out.contains(q));
                        out.extend(next.iter().copied());
                    }
                    frontier = next;
                }
                out
            }
        }
    }

    /// Whether `pattern` matches anywhere in `text` (unanchored, like RE2's
    /// MatchString); None when the pattern is outside the supported subset.
    pub fn matches(pattern: &str, text: &str) -> Option<bool> {
        let mut p = Parser {
            chars: pattern.chars().peekable(),
        };
        let alts = p.alternation()?;
        if p.chars.next().is_some() {
            return None;
        }
        let node = Node::Group(alts);
        let chars: Vec<char> = text.chars().collect();
        Some((0..=chars.len()).any(|start| !step(&node, &chars, start).is_empty()))
    }

    #[cfg(test)]
    mod tests {
        use super::matches;

        #[test]
        fn subset() {
            assert_eq!(
                matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "my-name"),
                Some(true)
            );
            assert_eq!(
                matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "-bad"),
                Some(false)
            );
            assert_eq!(matches("^\\d{1,3}$", "123"), Some(true));
            assert_eq!(matches("^\\d{1,3}$", "1234"), Some(false));
            assert_eq!(matches("ab", "xxabyy"), Some(true));
            assert_eq!(matches("^(foo|bar)+$", "foobarfoo"), Some(true));
            assert_eq!(matches("^(a*)*$", "aaaab"), Some(false));
            assert_eq!(matches("\\p{L}", "x"), None);
        }
    }
}

/// Name of a CRD kind's schema in OpenAPI documents, as kube-apiserver
/// names it: the group reversed, then version and kind
/// (`stable.example.com`, `v1`, `CronTab` → `com.example.stable.v1.CronTab`).
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let rev: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", rev.join("."))
}

/// The schema of a CRD version wrapped as a top-level kind: `apiVersion`,
/// `kind` and `metadata` (referencing ObjectMeta under `ref_prefix`) added,
/// plus `x-kubernetes-group-version-kind`.
pub fn kind_schema(crd: &Value, version: &str, ref_prefix: &str) -> Option<Value> {
    let group = crd.pointer("/spec/group")?.as_str()?;
    let kind = crd.pointer("/spec/names/kind")?.as_str()?;
    let mut s = schema(crd, version).cloned().unwrap_or_else(
        || serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    );
    let obj = s.as_object_mut()?;
    obj.entry("type").or_insert("object".into());
    let props = obj
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(props) = props.as_object_mut() {
        props.insert(
            "apiVersion".into(),
            serde_json::json!({"description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources", "type": "string"}),
        );
        props.insert(
            "kind".into(),
            serde_json::json!({"description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds", "type": "string"}),
        );
        props.insert(
            "metadata".into(),
            serde_json::json!({"$ref": format!("{ref_prefix}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
        );
    }
    obj.insert(
        "x-kubernetes-group-version-kind".into(),
        serde_json::json!([{"group": group, "version": version, "kind": kind}]),
    );
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_properties() {
        let crd = serde_json::json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "a": {"type": "string", "default": "A"},
                "b": {"type": "object", "default": {}, "properties": {"c": {"type": "integer", "default": 3}}},
                "items": {"type": "array", "items": {"type": "object", "properties": {"d": {"type": "boolean", "default": true}}}},
            }}},
        }}}]}});
        let mut obj = serde_json::json!({"spec": {"a": "given", "items": [{}, {"d": false}]}});
        apply_defaults(&crd, "v1", &mut obj);
        assert_eq!(
            obj,
            serde_json::json!({"spec": {"a": "given", "b": {"c": 3}, "items": [{"d": true}, {"d": false}]}})
        );
    }
    use serde_json::json;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"], "categories": ["all"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
                     "additionalPrinterColumns": [{"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}],
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "required": ["cronSpec"], "properties": {
                            "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                            "image": {"type": "string", "maxLength": 5},
                            "replicas": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 10},
                            "mode": {"type": "string", "enum": ["A", "B"]},
                            "port": {"x-kubernetes-int-or-string": true},
                            "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            "opt": {"type": "string", "nullable": true}
                        }},
                        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"}}}
                     }}}},
                    {"name": "v1beta1", "served": false, "storage": false}
                ]
            }
        })
    }

    #[test]
    fn resources_from_crd() {
        let r = crd_resources(&crd());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].group, "stable.example.com");
        assert_eq!(r[0].plural, "crontabs");
        assert_eq!(r[0].short_names, ["ct"]);
        assert_eq!(r[0].subresources, ["status", "scale"]);
        assert!(r[0].namespaced && r[0].custom);
        assert_eq!(printer_columns(&crd(), "v1").unwrap()[0]["name"], "Spec");
        assert_eq!(
            scale_paths(&crd(), "v1").unwrap(),
            (
                ".spec.replicas".into(),
                ".status.replicas".into(),
                Some(".status.selector".into())
            )
        );
        assert_eq!(
            definition_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
    }

    #[test]
    fn validation_messages() {
        let obj = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "a"},
            "spec": {"replicas": "string", "image": "toolong", "mode": "C", "port": 80, "tags": [{"k": 1}], "labels": {"a": 1}, "opt": null}});
        let causes = validate_custom(&crd(), "v1", &obj);
        let msg = |f: &str| {
            causes
                .iter()
                .find(|c| c.field == f)
                .map(|c| c.message.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            msg("spec.replicas"),
            "Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
        );
        assert_eq!(msg("spec.cronSpec"), "Required value");
        assert_eq!(msg("spec.image"), "Too long: may not be more than 5 bytes");
        assert_eq!(
            msg("spec.mode"),
            "Unsupported value: \"C\": supported values: \"A\", \"B\""
        );
        assert_eq!(msg("spec.tags[0].k"), "Invalid value: \"integer\": spec.tags[0].k in body must be of type string: \"integer\"");
        assert_eq!(
            msg("spec.labels.a"),
            "Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\""
        );
        assert_eq!(causes.len(), 6, "{causes:?}");
        let ok = json!({"spec": {"cronSpec": "*/5 * * * *", "replicas": 3, "port": "http"}});
        assert!(validate_custom(&crd(), "v1", &ok).is_empty());
        let bad = json!({"spec": {"cronSpec": "nope", "replicas": 11}});
        let causes = validate_custom(&crd(), "v1", &bad);
        assert_eq!(causes[0].message, "Invalid value: \"nope\": spec.cronSpec in body should match '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'");
        assert_eq!(
            causes[1].message,
            "Invalid value: 11: spec.replicas in body should be less than or equal to 10"
        );
    }

    #[test]
    fn pruning() {
        let mut obj = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "a"},
            "extra": 1,
            "spec": {"cronSpec": "* * * * *", "bogus": true, "tags": [{"k": "x", "z": 1}], "free": {"any": {"thing": 1}}, "port": {"odd": 1}},
            "status": {"replicas": 1, "junk": "x"}});
        let pruned = prune(&crd(), "v1", &mut obj);
        assert_eq!(
            pruned,
            ["extra", "spec.bogus", "spec.tags[0].z", "status.junk"]
        );
        assert!(obj.get("extra").is_none());
        assert_eq!(obj["spec"]["free"]["any"]["thing"], 1);
        assert_eq!(obj["metadata"]["name"], "a");
        assert_eq!(unknown_fields(&crd(), "v1", &obj), Vec::<String>::new());
    }
}
