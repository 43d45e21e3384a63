//! REST paths and operations of served resources, shaped like
//! kube-apiserver's: operation ids (`patchAppsV1NamespacedDeployment`),
//! `x-kubernetes-action`, `x-kubernetes-group-version-kind` and the query
//! parameters of each verb, rendered as OpenAPI v3 or Swagger 2.0.

use serde_json::{json, Map, Value};

use crate::discovery::{subresource_kind, subresource_verbs};
use crate::resource::ResourceInfo;

/// What an operation returns.
#[derive(Clone)]
pub(crate) enum Body {
    /// A schema by definition name.
    Def(String),
    /// Plain text (logs, connect streams).
    Text,
}

pub(crate) struct Op {
    method: &'static str,
    id: String,
    action: &'static str,
    gvk: (String, String, String),
    query: &'static [&'static str],
    request: Option<Body>,
    patch: bool,
    response: Body,
    codes: &'static [&'static str],
    description: String,
}

pub(crate) struct PathItem {
    pub path: String,
    params: Vec<(&'static str, String)>,
    ops: Vec<Op>,
}

const WRITE: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "propagationPolicy",
];
const LIST: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const DELETE_COLLECTION: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];
const LOG: &[&str] = &[
    "container",
    "follow",
    "insecureSkipTLSVerifyBackend",
    "limitBytes",
    "previous",
    "sinceSeconds",
    "stream",
    "tailLines",
    "timestamps",
];
const EXEC: &[&str] = &["command", "container", "stderr", "stdin", "stdout", "tty"];
const ATTACH: &[&str] = &["container", "stderr", "stdin", "stdout", "tty"];
const PORTFORWARD: &[&str] = &["ports"];
const PROXY: &[&str] = &["path"];

/// (type, description) of a query parameter.
fn param_info(name: &str) -> (&'static str, &'static str) {
    match name {
        "allowWatchBookmarks" => ("boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
        "continue" => ("string", "The continue option should be set when retrieving more results from the server."),
        "fieldSelector" => ("string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        "labelSelector" => ("string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        "limit" => ("integer", "limit is a maximum number of responses to return for a list call."),
        "resourceVersion" => ("string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        "resourceVersionMatch" => ("string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
        "sendInitialEvents" => ("boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
        "timeoutSeconds" => ("integer", "Timeout for the list/watch call."),
        "watch" => ("boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
        "dryRun" => ("string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
        "fieldManager" => ("string", "fieldManager is a name associated with the actor or entity that is making these changes."),
        "fieldValidation" => ("string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn (the default) - Strict"),
        "force" => ("boolean", "Force is going to \"force\" Apply requests. Force flag must be unset for non-apply patch requests."),
        "gracePeriodSeconds" => ("integer", "The duration in seconds before the object should be deleted."),
        "ignoreStoreReadErrorWithClusterBreakingPotential" => ("boolean", "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error."),
        "orphanDependents" => ("boolean", "Deprecated: please use the PropagationPolicy."),
        "propagationPolicy" => ("string", "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
        "follow" | "insecureSkipTLSVerifyBackend" | "previous" | "timestamps" | "stderr" | "stdin" | "stdout" | "tty" => ("boolean", ""),
        "limitBytes" | "sinceSeconds" | "tailLines" | "ports" => ("integer", ""),
        _ => ("string", ""),
    }
}

fn camel(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`, `StableExampleComV1`.
fn group_ident(group: &str, version: &str) -> String {
    let g = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    let parts: String = g.split(['.', '-']).map(camel).collect();
    format!("{parts}{}", camel(version))
}

/// `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
fn tag(group: &str, version: &str) -> String {
    let ident = group_ident(group, version);
    let g = &ident[..ident.len() - version.len()];
    let mut c = g.chars();
    let lower: String = c
        .next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default();
    format!("{lower}_{version}")
}

/// Path prefix of a group-version: `/api/v1` or `/apis/<g>/<v>`.
pub(crate) fn base(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// Definition name of a (group, version, kind): built-ins by their Go
/// package, custom resources by reversed group.
pub(crate) type DefName<'a> = &'a dyn Fn(&str, &str, &str) -> String;

/// Path items of one group-version's resources.
pub(crate) fn group_version_paths(resources: &[&ResourceInfo], def: DefName) -> Vec<PathItem> {
    let Some(first) = resources.first() else {
        return Vec::new();
    };
    let (group, version) = (first.group.as_str(), first.version.as_str());
    let gv = group_ident(group, version);
    let mut items = vec![PathItem {
        path: format!("{}/", base(group, version)),
        params: Vec::new(),
        ops: vec![Op {
            method: "get",
            id: format!("get{gv}APIResources"),
            action: "",
            gvk: Default::default(),
            query: &[],
            request: None,
            patch: false,
            response: Body::Def("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList".into()),
            codes: &["200"],
            description: "get available resources".into(),
        }],
    }];
    for r in resources {
        items.extend(resource_paths(r, def));
    }
    items
}

fn has(r: &ResourceInfo, verb: &str) -> bool {
    r.verbs.iter().any(|v| v == verb)
}

fn resource_paths(r: &ResourceInfo, def: DefName) -> Vec<PathItem> {
    let gv = group_ident(&r.group, &r.version);
    let ns = if r.namespaced { "Namespaced" } else { "" };
    let kind = &r.kind;
    let gvk = (r.group.clone(), r.version.clone(), r.kind.clone());
    let own = Body::Def(def(&r.group, &r.version, kind));
    let list = Body::Def(def(&r.group, &r.version, &r.list_kind()));
    let status = Body::Def("io.k8s.apimachinery.pkg.apis.meta.v1.Status".into());
    let delete_opts = Body::Def("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions".into());
    let patch_body = Body::Def("io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into());
    let base = base(&r.group, &r.version);
    let coll = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let ns_param = || -> Vec<(&'static str, String)> {
        if r.namespaced {
            vec![(
                "namespace",
                "object name and auth scope, such as for teams and projects".into(),
            )]
        } else {
            Vec::new()
        }
    };
    let op = |method,
              id: String,
              action,
              query,
              request: Option<Body>,
              response: &Body,
              codes,
              what: &str| Op {
        method,
        id,
        action,
        gvk: gvk.clone(),
        query,
        request,
        patch: false,
        response: response.clone(),
        codes,
        description: format!("{what} {kind}"),
    };
    let mut out = Vec::new();

    let mut ops = Vec::new();
    if has(r, "list") {
        ops.push(op(
            "get",
            format!("list{gv}{ns}{kind}"),
            "list",
            LIST,
            None,
            &list,
            &["200"],
            "list or watch objects of kind",
        ));
    }
    if has(r, "create") {
        ops.push(op(
            "post",
            format!("create{gv}{ns}{kind}"),
            "post",
            WRITE,
            Some(own.clone()),
            &own,
            &["200", "201", "202"],
            "create a",
        ));
    }
    if has(r, "deletecollection") {
        ops.push(op(
            "delete",
            format!("delete{gv}Collection{ns}{kind}"),
            "deletecollection",
            DELETE_COLLECTION,
            Some(delete_opts.clone()),
            &status,
            &["200"],
            "delete collection of",
        ));
    }
    if !ops.is_empty() {
        out.push(PathItem {
            path: coll.clone(),
            params: ns_param(),
            ops,
        });
    }
    if r.namespaced && has(r, "list") {
        out.push(PathItem {
            path: format!("{base}/{}", r.plural),
            params: Vec::new(),
            ops: vec![op(
                "get",
                format!("list{gv}{kind}ForAllNamespaces"),
                "list",
                LIST,
                None,
                &list,
                &["200"],
                "list or watch objects of kind",
            )],
        });
    }

    let item = format!("{coll}/{{name}}");
    let item_params = || {
        let mut p = vec![("name", format!("name of the {kind}"))];
        p.extend(ns_param());
        p
    };
    let mut ops = Vec::new();
    if has(r, "get") {
        ops.push(op(
            "get",
            format!("read{gv}{ns}{kind}"),
            "get",
            &[],
            None,
            &own,
            &["200"],
            "read the specified",
        ));
    }
    if has(r, "update") {
        ops.push(op(
            "put",
            format!("replace{gv}{ns}{kind}"),
            "put",
            WRITE,
            Some(own.clone()),
            &own,
            &["200", "201"],
            "replace the specified",
        ));
    }
    if has(r, "patch") {
        let mut p = op(
            "patch",
            format!("patch{gv}{ns}{kind}"),
            "patch",
            PATCH,
            Some(patch_body.clone()),
            &own,
            &["200", "201"],
            "partially update the specified",
        );
        p.patch = true;
        ops.push(p);
    }
    if has(r, "delete") {
        ops.push(op(
            "delete",
            format!("delete{gv}{ns}{kind}"),
            "delete",
            DELETE,
            Some(delete_opts.clone()),
            &status,
            &["200", "202"],
            "delete a",
        ));
    }
    if !ops.is_empty() {
        out.push(PathItem {
            path: item.clone(),
            params: item_params(),
            ops,
        });
    }

    for sub in &r.subresources {
        let sub_ident = camel(sub);
        let (sg, sv, sk) = subresource_kind(r, sub);
        let sub_def = Body::Def(def(&sg, &sv, &sk));
        let verbs = subresource_verbs(sub);
        let path = format!("{item}/{sub}");
        let mut ops = Vec::new();
        let sub_gvk = (sg.clone(), sv.clone(), sk.clone());
        let with_gvk = |mut o: Op| {
            o.gvk = sub_gvk.clone();
            o
        };
        let what = format!("{sub} of the specified");
        match sub.as_str() {
            "log" => ops.push(op(
                "get",
                format!("read{gv}{ns}{kind}Log"),
                "get",
                LOG,
                None,
                &Body::Text,
                &["200"],
                &what,
            )),
            "exec" | "attach" | "portforward" | "proxy" => {
                let query = match sub.as_str() {
                    "exec" => EXEC,
                    "attach" => ATTACH,
                    "portforward" => PORTFORWARD,
                    _ => PROXY,
                };
                let methods: &[&'static str] = if sub == "proxy" {
                    &["get", "put", "post", "patch", "delete", "head", "options"]
                } else {
                    &["get", "post"]
                };
                for m in methods {
                    let id = format!("connect{gv}{}{ns}{kind}{sub_ident}", camel(m));
                    ops.push(with_gvk(op(
                        m,
                        id,
                        "connect",
                        query,
                        None,
                        &Body::Text,
                        &["200"],
                        &format!("connect {} requests to {sub} of", m.to_uppercase()),
                    )));
                }
            }
            _ if verbs == ["create"] => ops.push(with_gvk(op(
                "post",
                format!("create{gv}{ns}{kind}{sub_ident}"),
                "post",
                WRITE,
                Some(sub_def.clone()),
                &sub_def,
                &["200", "201", "202"],
                &format!("create {sub} of a"),
            ))),
            _ => {
                let o = |o: Op| if sub == "scale" { with_gvk(o) } else { o };
                if verbs.contains(&"get") {
                    ops.push(o(op(
                        "get",
                        format!("read{gv}{ns}{kind}{sub_ident}"),
                        "get",
                        &[],
                        None,
                        &sub_def,
                        &["200"],
                        &format!("read {what}"),
                    )));
                }
                if verbs.contains(&"update") {
                    ops.push(o(op(
                        "put",
                        format!("replace{gv}{ns}{kind}{sub_ident}"),
                        "put",
                        WRITE,
                        Some(sub_def.clone()),
                        &sub_def,
                        &["200", "201"],
                        &format!("replace {what}"),
                    )));
                }
                if verbs.contains(&"patch") {
                    let mut p = o(op(
                        "patch",
                        format!("patch{gv}{ns}{kind}{sub_ident}"),
                        "patch",
                        PATCH,
                        Some(patch_body.clone()),
                        &sub_def,
                        &["200", "201"],
                        &format!("partially update {what}"),
                    ));
                    p.patch = true;
                    ops.push(p);
                }
            }
        }
        if !ops.is_empty() {
            out.push(PathItem {
                path: path.clone(),
                params: item_params(),
                ops,
            });
        }
        if sub == "proxy" {
            let mut params = item_params();
            params.insert(1, ("path", "path to the resource".into()));
            let methods = ["get", "put", "post", "patch", "delete", "head", "options"];
            let ops = methods
                .iter()
                .map(|m| {
                    let id = format!("connect{gv}{}{ns}{kind}ProxyWithPath", camel(m));
                    with_gvk(op(
                        m,
                        id,
                        "connect",
                        PROXY,
                        None,
                        &Body::Text,
                        &["200"],
                        &format!("connect {} requests to proxy of", m.to_uppercase()),
                    ))
                })
                .collect();
            out.push(PathItem {
                path: format!("{path}/{{path}}"),
                params,
                ops,
            });
        }
    }
    out
}

fn gvk_ext(gvk: &(String, String, String)) -> Value {
    json!({"group": gvk.0, "version": gvk.1, "kind": gvk.2})
}

fn patch_types(custom: bool) -> Vec<&'static str> {
    let mut t = vec![
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    ];
    if !custom {
        t.push("application/strategic-merge-patch+json");
    }
    t
}

fn code_text(code: &str) -> &'static str {
    match code {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        _ => "",
    }
}

/// Renders path items as an OpenAPI v3 `paths` object (refs under
/// `#/components/schemas/`).
pub(crate) fn render_v3(
    items: &[PathItem],
    group: &str,
    version: &str,
    custom: bool,
    out: &mut Map<String, Value>,
) {
    let tag = tag(group, version);
    for item in items {
        let mut pi = Map::new();
        for o in &item.ops {
            let mut op = Map::new();
            op.insert("description".into(), o.description.clone().into());
            op.insert("operationId".into(), o.id.clone().into());
            let params: Vec<Value> = o
                .query
                .iter()
                .map(|q| {
                    let (ty, desc) = param_info(q);
                    json!({"description": desc, "in": "query", "name": q, "schema": {"type": ty, "uniqueItems": true}})
                })
                .collect();
            if !params.is_empty() {
                op.insert("parameters".into(), Value::Array(params));
            }
            if let Some(Body::Def(d)) = &o.request {
                let schema = json!({"$ref": format!("#/components/schemas/{d}")});
                let content: Map<String, Value> = if o.patch {
                    patch_types(custom)
                        .into_iter()
                        .map(|t| (t.to_string(), json!({"schema": schema})))
                        .collect()
                } else {
                    [("*/*".to_string(), json!({"schema": schema}))]
                        .into_iter()
                        .collect()
                };
                let mut rb = json!({"content": content});
                if o.method != "delete" {
                    rb["required"] = true.into();
                }
                op.insert("requestBody".into(), rb);
            }
            let mut responses = Map::new();
            for code in o.codes {
                let content = match &o.response {
                    Body::Def(d) => {
                        let s = json!({"schema": {"$ref": format!("#/components/schemas/{d}")}});
                        json!({"application/json": s, "application/yaml": s})
                    }
                    Body::Text => json!({"*/*": {"schema": {"type": "string"}}}),
                };
                responses.insert(
                    (*code).into(),
                    json!({"description": code_text(code), "content": content}),
                );
            }
            responses.insert("401".into(), json!({"description": "Unauthorized"}));
            op.insert("responses".into(), Value::Object(responses));
            op.insert("tags".into(), json!([tag]));
            if !o.action.is_empty() {
                op.insert("x-kubernetes-action".into(), o.action.into());
                op.insert("x-kubernetes-group-version-kind".into(), gvk_ext(&o.gvk));
            }
            pi.insert(o.method.into(), Value::Object(op));
        }
        let mut params: Vec<Value> = item
            .params
            .iter()
            .map(|(n, d)| json!({"description": d, "in": "path", "name": n, "required": true, "schema": {"type": "string", "uniqueItems": true}}))
            .collect();
        if !item.params.is_empty() {
            params.push(json!({"description": "If 'true', then the output is pretty printed.", "in": "query", "name": "pretty", "schema": {"type": "string", "uniqueItems": true}}));
            pi.insert("parameters".into(), Value::Array(params));
        }
        out.insert(item.path.clone(), Value::Object(pi));
    }
}

/// Renders path items as a Swagger 2.0 `paths` object (refs under `#/definitions/`).
pub(crate) fn render_v2(
    items: &[PathItem],
    group: &str,
    version: &str,
    custom: bool,
    out: &mut Map<String, Value>,
) {
    let tag = tag(group, version);
    for item in items {
        let mut pi = Map::new();
        for o in &item.ops {
            let mut op = Map::new();
            op.insert("description".into(), o.description.clone().into());
            let consumes = if o.patch {
                json!(patch_types(custom))
            } else {
                json!(["*/*"])
            };
            op.insert("consumes".into(), consumes);
            let produces = match o.response {
                Body::Def(_) => json!(["application/json", "application/yaml"]),
                Body::Text => json!(["*/*"]),
            };
            op.insert("produces".into(), produces);
            op.insert("schemes".into(), json!(["https"]));
            op.insert("tags".into(), json!([tag]));
            op.insert("operationId".into(), o.id.clone().into());
            let mut params: Vec<Value> = Vec::new();
            if let Some(Body::Def(d)) = &o.request {
                params.push(json!({"in": "body", "name": "body", "required": o.method != "delete", "schema": {"$ref": format!("#/definitions/{d}")}}));
            }
            for q in o.query {
                let (ty, desc) = param_info(q);
                params.push(json!({"uniqueItems": true, "type": ty, "description": desc, "name": q, "in": "query"}));
            }
            if !params.is_empty() {
                op.insert("parameters".into(), Value::Array(params));
            }
            let mut responses = Map::new();
            for code in o.codes {
                let schema = match &o.response {
                    Body::Def(d) => json!({"$ref": format!("#/definitions/{d}")}),
                    Body::Text => json!({"type": "string"}),
                };
                responses.insert(
                    (*code).into(),
                    json!({"description": code_text(code), "schema": schema}),
                );
            }
            responses.insert("401".into(), json!({"description": "Unauthorized"}));
            op.insert("responses".into(), Value::Object(responses));
            if !o.action.is_empty() {
                op.insert("x-kubernetes-action".into(), o.action.into());
                op.insert("x-kubernetes-group-version-kind".into(), gvk_ext(&o.gvk));
            }
            pi.insert(o.method.into(), Value::Object(op));
        }
        let mut params: Vec<Value> = item
            .params
            .iter()
            .map(|(n, d)| json!({"uniqueItems": true, "type": "string", "description": d, "name": n, "in": "path", "required": true}))
            .collect();
        if !item.params.is_empty() {
            params.push(json!({"uniqueItems": true, "type": "string", "description": "If 'true', then the output is pretty printed.", "name": "pretty", "in": "query"}));
            pi.insert("parameters".into(), Value::Array(params));
        }
        out.insert(item.path.clone(), Value::Object(pi));
    }
}

/// Definition names an item list references.
pub(crate) fn referenced_defs(items: &[PathItem]) -> Vec<String> {
    let mut out = Vec::new();
    for o in items.iter().flat_map(|i| &i.ops) {
        for b in [o.request.as_ref(), Some(&o.response)]
            .into_iter()
            .flatten()
        {
            if let Body::Def(d) = b {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(group_ident("", "v1"), "CoreV1");
        assert_eq!(
            group_ident("rbac.authorization.k8s.io", "v1"),
            "RbacAuthorizationV1"
        );
        assert_eq!(
            group_ident("stable.example.com", "v1beta1"),
            "StableExampleComV1beta1"
        );
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
        assert_eq!(tag("", "v1"), "core_v1");
    }
}
