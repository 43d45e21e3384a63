//! OpenAPI documents of the served API: `/openapi/v2` (Swagger 2.0) and
//! `/openapi/v3` (a root listing one OpenAPI 3.0 document per
//! group-version), built from k8s-openapi's schemars schemas and the CRDs'
//! `openAPIV3Schema`s, named and annotated as kube-apiserver does
//! (`io.k8s.api.apps.v1.Deployment`, `x-kubernetes-group-version-kind`,
//! strategic-merge extensions, operations with `fieldValidation`). The same
//! schemas drive unknown-field detection for `fieldValidation=Strict|Warn`.

mod patch_meta;
mod paths;
mod registry;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use crate::resource::ResourceInfo;

const DEFS: &str = "#/definitions/";
const SCHEMAS: &str = "#/components/schemas/";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

type Gvk = (String, String, String);

/// One serialized OpenAPI v3 document and its hash (the ETag and the
/// `hash=` of its URL in the root document).
#[derive(Clone, Debug)]
struct Doc {
    bytes: Arc<Vec<u8>>,
    hash: String,
}

/// A group-version document, serialized on first use.
#[derive(Debug)]
struct LazyDoc {
    group: String,
    version: String,
    custom: bool,
    resources: Vec<ResourceInfo>,
    /// CRD objects the document derives from (to keep it across updates
    /// that do not touch them).
    inputs: Vec<Value>,
    doc: OnceLock<Doc>,
}

/// The OpenAPI documents of the served API. Schemas are generated in
/// [`OpenApi::new`]; each document is serialized and hashed once, on first
/// request. CRD documents are rebuilt by [`OpenApi::set_custom_resources`]
/// (only group-versions whose CRDs changed), `/openapi/v2` on first request
/// after a change.
#[derive(Debug)]
pub struct OpenApi {
    builtin: Vec<ResourceInfo>,
    /// Built-in definitions with Swagger 2.0 refs (`#/definitions/...`).
    defs: Map<String, Value>,
    /// Built-in kind (and list kind) → definition name.
    kinds: HashMap<Gvk, String>,
    builtin_docs: BTreeMap<String, LazyDoc>,
    crds: Vec<Value>,
    crd_resources: Vec<ResourceInfo>,
    crd_defs: Map<String, Value>,
    /// Custom kind → (index into `crds`, definition name).
    crd_kinds: HashMap<Gvk, (usize, String)>,
    crd_docs: BTreeMap<String, LazyDoc>,
    v2: OnceLock<Arc<Vec<u8>>>,
}

impl OpenApi {
    /// Builds the documents of the built-in resources among `resources`
    /// (custom ones are added with [`OpenApi::set_custom_resources`]).
    pub fn new(resources: &[ResourceInfo]) -> Self {
        let builtin: Vec<ResourceInfo> = resources.iter().filter(|r| !r.custom).cloned().collect();
        let (defs, kinds) = builtin_definitions(&builtin);
        let mut api = OpenApi {
            builtin,
            defs,
            kinds,
            builtin_docs: BTreeMap::new(),
            crds: Vec::new(),
            crd_resources: Vec::new(),
            crd_defs: Map::new(),
            crd_kinds: HashMap::new(),
            crd_docs: BTreeMap::new(),
            v2: OnceLock::new(),
        };
        api.builtin_docs = lazy_docs(&api.builtin, false, &[]);
        api
    }

    /// Adds or replaces (by `metadata.name`) one CRD.
    pub fn add_crd(&mut self, crd: &Value) {
        let name = &crd["metadata"]["name"];
        let mut crds: Vec<Value> = self
            .crds
            .iter()
            .filter(|c| &c["metadata"]["name"] != name)
            .cloned()
            .collect();
        crds.push(crd.clone());
        self.set_custom_resources(&crds);
    }

    /// Removes the CRD named `name`.
    pub fn remove_crd(&mut self, name: &str) {
        let crds: Vec<Value> = self
            .crds
            .iter()
            .filter(|c| c["metadata"]["name"] != name)
            .cloned()
            .collect();
        self.set_custom_resources(&crds);
    }

    /// Replaces the custom resources with those of `crds`
    /// (CustomResourceDefinition objects) and rebuilds their documents.
    pub fn set_custom_resources(&mut self, crds: &[Value]) {
        self.crds = crds.to_vec();
        self.crd_defs = Map::new();
        self.crd_kinds = HashMap::new();
        self.crd_resources = Vec::new();
        for (i, crd) in crds.iter().enumerate() {
            for r in crate::crd::crd_resources(crd) {
                let name = crate::crd::definition_name(&r.group, &r.version, &r.kind);
                if let Some(schema) = crate::crd::kind_schema(crd, &r.version, DEFS) {
                    self.crd_defs.insert(name.clone(), schema);
                }
                self.crd_defs.insert(
                    format!("{name}List"),
                    list_schema(&r, &format!("{DEFS}{name}")),
                );
                self.crd_kinds.insert(
                    (r.group.clone(), r.version.clone(), r.kind.clone()),
                    (i, name.clone()),
                );
                self.crd_kinds.insert(
                    (r.group.clone(), r.version.clone(), r.list_kind()),
                    (i, format!("{name}List")),
                );
                self.crd_resources.push(r);
            }
        }
        let mut docs = lazy_docs(&self.crd_resources, true, crds);
        for (key, doc) in docs.iter_mut() {
            if let Some(old) = self.crd_docs.remove(key) {
                if old.inputs == doc.inputs {
                    *doc = old;
                }
            }
        }
        self.crd_docs = docs;
        self.v2 = OnceLock::new();
    }

    /// The `/openapi/v3` root: one entry per group-version document.
    pub fn v3_root(&self) -> Value {
        let mut paths = Map::new();
        for (gv, lazy) in self.crd_docs.iter().chain(&self.builtin_docs) {
            let hash = &self.doc(lazy).hash;
            paths.insert(
                gv.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash}")}),
            );
        }
        json!({"paths": paths})
    }

    /// The OpenAPI 3.0 document of `gv_path` (`api/v1`, `apis/apps/v1`) and
    /// its hash, or None when no such group-version is served.
    pub fn v3_doc(&self, gv_path: &str) -> Option<(Arc<Vec<u8>>, String)> {
        let key = gv_path.trim_matches('/');
        let doc = self.doc(
            self.builtin_docs
                .get(key)
                .or_else(|| self.crd_docs.get(key))?,
        );
        Some((doc.bytes.clone(), doc.hash.clone()))
    }

    /// The Swagger 2.0 document of everything served (JSON only).
    pub fn v2(&self) -> Arc<Vec<u8>> {
        self.v2.get_or_init(|| Arc::new(self.build_v2())).clone()
    }

    /// Paths of the fields of `obj` its schema does not declare, without a
    /// leading dot (`spec.replicaz`, `spec.template.spec.containers[0].x`),
    /// ready for kube-apiserver's `unknown field "<path>"`. Built-in kinds
    /// are checked in document order; custom kinds (pruning semantics,
    /// honouring `x-kubernetes-preserve-unknown-fields`) sorted. Unknown
    /// kinds yield nothing.
    pub fn unknown_fields(&self, api_version: &str, kind: &str, obj: &Value) -> Vec<String> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = (group.to_string(), version.to_string(), kind.to_string());
        let mut out = Vec::new();
        if let Some((i, _)) = self.crd_kinds.get(&gvk) {
            if let (Some(meta), Some(schema)) = (obj.get("metadata"), self.defs.get(OBJECT_META)) {
                walk(&self.defs, schema, meta, "metadata", &mut out);
            }
            // The CRD walk also reports unknown top-level ObjectMeta fields.
            out.extend(crate::crd::unknown_fields(&self.crds[*i], version, obj));
            out.sort();
            out.dedup();
        } else if let Some(schema) = self.kinds.get(&gvk).and_then(|n| self.defs.get(n)) {
            walk(&self.defs, schema, obj, "", &mut out);
        }
        out
    }

    fn lookup(&self, name: &str) -> Option<&Value> {
        self.crd_defs.get(name).or_else(|| self.defs.get(name))
    }

    fn def_name(&self, g: &str, v: &str, k: &str) -> String {
        let gvk = (g.to_string(), v.to_string(), k.to_string());
        if let Some((_, n)) = self.crd_kinds.get(&gvk) {
            return n.clone();
        }
        self.kinds
            .get(&gvk)
            .cloned()
            .unwrap_or_else(|| placeholder_name(g, v, k))
    }

    fn doc<'a>(&self, lazy: &'a LazyDoc) -> &'a Doc {
        lazy.doc.get_or_init(|| self.build_doc(lazy))
    }

    fn build_doc(&self, lazy: &LazyDoc) -> Doc {
        let def_name = |g: &str, v: &str, k: &str| self.def_name(g, v, k);
        let rs: Vec<&ResourceInfo> = lazy.resources.iter().collect();
        let items = paths::group_version_paths(&rs, &def_name);
        let mut p = Map::new();
        paths::render_v3(&items, &lazy.group, &lazy.version, lazy.custom, &mut p);
        let mut schemas = Map::new();
        for name in closure(paths::referenced_defs(&items), |n| self.lookup(n)) {
            let schema = self
                .lookup(&name)
                .cloned()
                .unwrap_or_else(|| placeholder(&name));
            schemas.insert(name.clone(), to_v3(&name, &schema));
        }
        let doc = json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "unversioned"},
            "paths": p,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
            },
        });
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let hash = hex_upper(&Sha512::digest(&bytes));
        Doc {
            bytes: Arc::new(bytes),
            hash,
        }
    }

    fn build_v2(&self) -> Vec<u8> {
        let def_name = |g: &str, v: &str, k: &str| self.def_name(g, v, k);
        let mut p = Map::new();
        let mut refs = Vec::new();
        for (resources, custom) in [(&self.builtin, false), (&self.crd_resources, true)] {
            let mut by_gv: BTreeMap<(String, String), Vec<&ResourceInfo>> = BTreeMap::new();
            for r in resources.iter() {
                by_gv
                    .entry((r.group.clone(), r.version.clone()))
                    .or_default()
                    .push(r);
            }
            for ((g, v), rs) in by_gv {
                let items = paths::group_version_paths(&rs, &def_name);
                paths::render_v2(&items, &g, &v, custom, &mut p);
                refs.extend(paths::referenced_defs(&items));
            }
        }
        let mut definitions = Map::new();
        for name in closure(refs, |n| self.lookup(n)) {
            let schema = self
                .lookup(&name)
                .cloned()
                .unwrap_or_else(|| placeholder(&name));
            definitions.insert(name, schema);
        }
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": p,
            "definitions": definitions,
            "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication", "type": "apiKey", "name": "authorization", "in": "header"}},
            "security": [{"BearerToken": []}],
        });
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

/// Unbuilt documents of `resources`, keyed `api/v1` / `apis/<g>/<v>`.
fn lazy_docs(
    resources: &[ResourceInfo],
    custom: bool,
    crds: &[Value],
) -> BTreeMap<String, LazyDoc> {
    let mut out: BTreeMap<String, LazyDoc> = BTreeMap::new();
    for r in resources {
        let key = paths::base(&r.group, &r.version)
            .trim_start_matches('/')
            .to_string();
        let lazy = out.entry(key).or_insert_with(|| LazyDoc {
            group: r.group.clone(),
            version: r.version.clone(),
            custom,
            resources: Vec::new(),
            inputs: Vec::new(),
            doc: OnceLock::new(),
        });
        lazy.resources.push(r.clone());
    }
    for lazy in out.values_mut() {
        lazy.inputs = crds
            .iter()
            .filter(|c| c["spec"]["group"] == lazy.group.as_str())
            .cloned()
            .collect();
    }
    out
}

/// Generates the schemas of the built-in kinds (plus list kinds and the
/// meta types operations use), named like kube-apiserver's.
fn builtin_definitions(builtin: &[ResourceInfo]) -> (Map<String, Value>, HashMap<Gvk, String>) {
    let mut generator = SchemaSettings::draft07()
        .with(|s| {
            s.transforms.clear();
            s.meta_schema = None;
        })
        .into_generator();
    let entries = registry::entries();
    let mut kinds: HashMap<Gvk, String> = HashMap::new();
    let mut wanted: Vec<Gvk> = Vec::new();
    for r in builtin {
        wanted.push((r.group.clone(), r.version.clone(), r.kind.clone()));
        for sub in &r.subresources {
            wanted.push(crate::discovery::subresource_kind(r, sub));
        }
    }
    for gvk in &wanted {
        if kinds.contains_key(gvk) {
            continue;
        }
        let found = entries
            .iter()
            .find(|e| (e.group, e.version, e.kind) == (&gvk.0[..], &gvk.1[..], &gvk.2[..]));
        if let Some(e) = found {
            let schema = (e.add)(&mut generator);
            if let Some(name) = schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(DEFS))
            {
                kinds.insert(gvk.clone(), name.to_string());
            }
        }
    }
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::APIResourceList>();
    generator.subschema_for::<meta::ListMeta>();
    let mut defs = generator.take_definitions(false);
    for schema in defs.values_mut() {
        fix_definition(schema);
    }
    if let Some(s) = defs.get_mut("io.k8s.apimachinery.pkg.util.intstr.IntOrString") {
        s["type"] = "string".into();
        s["format"] = "int-or-string".into();
    }
    if let Some(s) = defs.get_mut("io.k8s.apimachinery.pkg.api.resource.Quantity") {
        s["type"] = "string".into();
    }
    patch_meta::apply(&mut defs);
    for (gvk, name) in &kinds {
        add_gvk(&mut defs, name, gvk);
    }
    for r in builtin {
        let gvk = (r.group.clone(), r.version.clone(), r.kind.clone());
        let name = match kinds.get(&gvk) {
            Some(n) => n.clone(),
            None => {
                let n = placeholder_name(&r.group, &r.version, &r.kind);
                let mut s = placeholder(&n);
                s["x-kubernetes-group-version-kind"] =
                    json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
                defs.insert(n.clone(), s);
                kinds.insert(gvk, n.clone());
                n
            }
        };
        if r.verbs.iter().any(|v| v == "list") {
            let list = format!("{name}List");
            defs.insert(list.clone(), list_schema(r, &format!("{DEFS}{name}")));
            kinds.insert((r.group.clone(), r.version.clone(), r.list_kind()), list);
        }
    }
    (defs, kinds)
}

/// Drops the `required: ["metadata"]` k8s-openapi adds (metadata is
/// optional on the wire).
fn fix_definition(schema: &mut Value) {
    let has_meta = schema.pointer("/properties/metadata").is_some();
    if let Some(req) = schema.get_mut("required").and_then(Value::as_array_mut) {
        if has_meta {
            req.retain(|r| r != "metadata");
        }
        if req.is_empty() {
            if let Some(o) = schema.as_object_mut() {
                o.remove("required");
            }
        }
    }
}

fn add_gvk(defs: &mut Map<String, Value>, name: &str, gvk: &Gvk) {
    let Some(def) = defs.get_mut(name).and_then(Value::as_object_mut) else {
        return;
    };
    let entry = json!({"group": gvk.0, "version": gvk.1, "kind": gvk.2});
    let list = def
        .entry("x-kubernetes-group-version-kind")
        .or_insert_with(|| json!([]));
    if let Some(a) = list.as_array_mut() {
        if !a.contains(&entry) {
            a.push(entry);
        }
    }
}

fn list_schema(r: &ResourceInfo, item_ref: &str) -> Value {
    json!({
        "description": format!("{} is a list of {}", r.list_kind(), r.kind),
        "type": "object",
        "properties": {
            "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"},
            "items": {"description": format!("List of {}.", r.plural), "type": "array", "items": {"$ref": item_ref}},
            "kind": {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"},
            "metadata": {"$ref": format!("{DEFS}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"), "description": "Standard list metadata."},
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": r.list_kind()}],
    })
}

fn placeholder_name(g: &str, v: &str, k: &str) -> String {
    let g = if g.is_empty() {
        "core"
    } else {
        g.split('.').next().unwrap_or(g)
    };
    format!("io.k8s.api.{g}.{v}.{k}")
}

fn placeholder(name: &str) -> Value {
    json!({"description": format!("{name} (schema not published)"), "type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// All definition names reachable from `start` through `$ref`s, sorted.
fn closure<'a>(start: Vec<String>, lookup: impl Fn(&str) -> Option<&'a Value>) -> BTreeSet<String> {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix(DEFS))
                {
                    out.push(r.to_string());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut seen = BTreeSet::new();
    let mut stack = start;
    while let Some(n) = stack.pop() {
        if seen.insert(n.clone()) {
            if let Some(s) = lookup(&n) {
                refs(s, &mut stack);
            }
        }
    }
    seen
}

/// Converts a Swagger-style schema to OpenAPI 3: refs move under
/// `components/schemas` and a `$ref` with siblings becomes `allOf: [$ref]`.
fn to_v3(name: &str, schema: &Value) -> Value {
    fn conv(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut out: Map<String, Value> =
                    m.iter().map(|(k, x)| (k.clone(), conv(x))).collect();
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    let r = r.replace(DEFS, SCHEMAS);
                    if m.len() == 1 {
                        out.insert("$ref".into(), r.into());
                    } else {
                        out.remove("$ref");
                        out.insert("allOf".into(), json!([{"$ref": r}]));
                    }
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(conv).collect()),
            other => other.clone(),
        }
    }
    let mut out = conv(schema);
    let one_of = match name {
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            Some(json!([{"type": "integer"}, {"type": "string"}]))
        }
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            Some(json!([{"type": "string"}, {"type": "number"}]))
        }
        _ => None,
    };
    if let (Some(one_of), Some(o)) = (one_of, out.as_object_mut()) {
        o.remove("type");
        o.insert("oneOf".into(), one_of);
    }
    out
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn is_true(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Collects paths of undeclared fields of `v` under `schema`.
fn walk(defs: &Map<String, Value>, schema: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    let mut schema = schema;
    for _ in 0..16 {
        match schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(DEFS))
        {
            Some(name) => match defs.get(name) {
                Some(s) => schema = s,
                None => return,
            },
            None => break,
        }
    }
    if is_true(schema, "x-kubernetes-preserve-unknown-fields")
        || is_true(schema, "x-kubernetes-int-or-string")
    {
        return;
    }
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let additional_schema = additional.filter(|a| a.is_object());
            if props.is_none() && additional_schema.is_none() {
                return; // free-form object (RawExtension, FieldsV1, JSON)
            }
            for (k, x) in map {
                let p = crate::crd::child(path, k);
                if let Some(s) = props.and_then(|m| m.get(k)) {
                    walk(defs, s, x, &p, out);
                } else if let Some(a) = additional_schema {
                    walk(defs, a, x, &p, out);
                } else if additional.and_then(Value::as_bool) != Some(true) {
                    out.push(p);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items").filter(|i| i.is_object()) {
                for (i, x) in items.iter().enumerate() {
                    walk(defs, item, x, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::builtin_resources;
    use std::sync::LazyLock;

    static API: LazyLock<OpenApi> = LazyLock::new(|| {
        let start = std::time::Instant::now();
        let api = OpenApi::new(&builtin_resources());
        println!("OpenApi::new took {:?}", start.elapsed());
        api
    });

    fn doc(gv: &str) -> Value {
        serde_json::from_slice(&API.v3_doc(gv).unwrap().0).unwrap()
    }

    #[test]
    fn build_time() {
        let start = std::time::Instant::now();
        let api = OpenApi::new(&builtin_resources());
        let built = start.elapsed();
        let start = std::time::Instant::now();
        let root = api.v3_root();
        let docs = start.elapsed();
        let start = std::time::Instant::now();
        let v2 = api.v2();
        println!(
            "OpenApi::new {built:?}; all {} v3 docs serialized+hashed {docs:?}; v2 {:?} ({} bytes)",
            root["paths"].as_object().unwrap().len(),
            start.elapsed(),
            v2.len()
        );
    }

    #[test]
    fn v3_root_lists_group_versions() {
        let root = API.v3_root();
        let url = root["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/api/v1?hash="));
        assert!(root["paths"]["apis/apps/v1"].is_object());
        let (_, hash) = API.v3_doc("apis/apps/v1").unwrap();
        assert!(root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .ends_with(&hash));
        assert!(API.v3_doc("apis/nope/v1").is_none());
    }

    /// Mirrors kubectl's QueryParamVerifierV3: the first PATCH operation
    /// whose x-kubernetes-group-version-kind matches must list the query
    /// parameter inline.
    fn supports_field_validation(doc: &Value, gvk: (&str, &str, &str)) -> bool {
        let want = json!({"group": gvk.0, "version": gvk.1, "kind": gvk.2});
        let mut found = false;
        for item in doc["paths"].as_object().unwrap().values() {
            let Some(op) = item.get("patch") else {
                continue;
            };
            if op["x-kubernetes-group-version-kind"] != want {
                continue;
            }
            found = true;
            let params = op["parameters"].as_array().unwrap();
            if !params
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
            {
                return false;
            }
        }
        found
    }

    #[test]
    fn apps_doc_has_deployment_and_patch_ops() {
        let d = doc("apis/apps/v1");
        assert_eq!(d["openapi"], "3.0.0");
        let dep = &d["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            dep["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        assert_eq!(
            dep["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        let containers =
            &d["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        let ios = &d["components"]["schemas"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(ios["format"], "int-or-string");
        let patch = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        assert_eq!(patch["x-kubernetes-action"], "patch");
        assert!(supports_field_validation(&d, ("apps", "v1", "Deployment")));
        assert!(d["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
        // Every $ref resolves inside the document.
        let text = String::from_utf8(API.v3_doc("apis/apps/v1").unwrap().0.to_vec()).unwrap();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(
                d["components"]["schemas"][name].is_object(),
                "dangling {name}"
            );
        }
    }

    #[test]
    fn every_patchable_kind_supports_field_validation() {
        for r in builtin_resources()
            .iter()
            .filter(|r| r.verbs.iter().any(|v| v == "patch"))
        {
            let path = paths::base(&r.group, &r.version);
            let d = doc(path.trim_start_matches('/'));
            assert!(
                supports_field_validation(&d, (&r.group, &r.version, &r.kind)),
                "{}",
                r.kind
            );
            let name = &API.kinds[&(r.group.clone(), r.version.clone(), r.kind.clone())];
            assert!(
                d["components"]["schemas"][name]["x-kubernetes-group-version-kind"].is_array(),
                "{name}"
            );
        }
    }

    #[test]
    fn core_doc_and_v2() {
        let d = doc("api/v1");
        assert!(
            d["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"]["operationId"]
                .as_str()
                .unwrap()
                .starts_with("connectCoreV1Post")
        );
        assert!(d["paths"]["/api/v1/namespaces/{namespace}/bindings"]["post"].is_object());
        let v2: Value = serde_json::from_slice(&API.v2()).unwrap();
        assert_eq!(v2["swagger"], "2.0");
        assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
        assert_eq!(
            v2["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
    }

    #[test]
    fn unknown_fields_builtin() {
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "labels": {"x": "y"}, "bogus": 1},
            "spec": {
                "replicaz": 3,
                "selector": {"matchLabels": {"a": "b"}},
                "strategy": {"rollingUpdate": {"maxSurge": "25%"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                    {"name": "c", "image": "i", "imagePullPolicyy": "Always", "resources": {"limits": {"cpu": "1"}}}
                ]}}
            }
        });
        assert_eq!(
            API.unknown_fields("apps/v1", "Deployment", &obj),
            [
                "metadata.bogus",
                "spec.replicaz",
                "spec.template.spec.containers[0].imagePullPolicyy"
            ]
        );
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "managedFields": [{"fieldsV1": {"f:data": {}}}]}, "data": {"k": "v"}});
        assert!(API.unknown_fields("v1", "ConfigMap", &ok).is_empty());
        assert!(API.unknown_fields("v9", "Nope", &ok).is_empty());
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"a": "b"}}});
        assert!(API.unknown_fields("v1", "Service", &svc).is_empty());
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "a.b.c"},
            "spec": {"group": "b.c", "scope": "Namespaced", "names": {"plural": "as", "kind": "A"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "additionalPrinterColumns": [{"name": "X", "type": "string", "jsonPath": ".spec.x"}],
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {"spec": {"type": "object", "default": {}, "additionalProperties": {"type": "string"},
                            "x-kubernetes-validations": [{"rule": "true"}]}}}}}]}});
        assert_eq!(
            API.unknown_fields("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd),
            Vec::<String>::new()
        );
    }

    #[test]
    fn custom_resources() {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"cronSpec": {"type": "string"}, "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}}]}
        });
        let mut api = OpenApi::new(&builtin_resources());
        api.set_custom_resources(&[crd]);
        assert!(api.v3_root()["paths"]["apis/stable.example.com/v1"].is_object());
        let d: Value =
            serde_json::from_slice(&api.v3_doc("apis/stable.example.com/v1").unwrap().0).unwrap();
        let s = &d["components"]["schemas"]["com.example.stable.v1.CronTab"];
        assert_eq!(s["x-kubernetes-group-version-kind"][0]["kind"], "CronTab");
        assert_eq!(
            s["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(d["components"]["schemas"][OBJECT_META].is_object());
        assert!(supports_field_validation(
            &d,
            ("stable.example.com", "v1", "CronTab")
        ));
        let obj = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "x", "nam": 1},
            "spec": {"cronSpec": "x", "cronSpek": "y", "free": {"a": 1}}});
        assert_eq!(
            api.unknown_fields("stable.example.com/v1", "CronTab", &obj),
            ["metadata.nam", "spec.cronSpek"]
        );
        let v2: Value = serde_json::from_slice(&api.v2()).unwrap();
        assert!(v2["definitions"]["com.example.stable.v1.CronTab"].is_object());
        api.set_custom_resources(&[]);
        assert!(api.v3_doc("apis/stable.example.com/v1").is_none());
    }
}
