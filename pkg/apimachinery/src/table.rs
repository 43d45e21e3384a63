//! Server-side printing: the `meta.k8s.io/v1` `Table` kube-apiserver returns
//! for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`. Built-in
//! resources get the columns of upstream's `pkg/printers/internalversion`
//! (always the wide set; priority 1 marks wide-only columns), custom
//! resources their CRD's `additionalPrinterColumns`, anything else
//! `Name`/`Created At` like upstream's default table convertor.

mod jsonpath;
mod printers;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::ResourceInfo;

pub use jsonpath::jsonpath;

/// Why table options were rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// `includeObject` is not one of `None`, `Metadata`, `Object`.
    #[error("includeObject: Unsupported value: {0:?}: supported values: \"Metadata\", \"None\", \"Object\"")]
    IncludeObject(String),
}

/// What each row carries in `object` (query parameter `includeObject`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (the default).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter; absent or empty means `Metadata`.
    pub fn from_query(v: Option<&str>) -> Result<Self, TableError> {
        match v.unwrap_or("") {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(TableError::IncludeObject(other.to_string())),
        }
    }
}

impl std::str::FromStr for IncludeObject {
    type Err = TableError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_query(Some(s))
    }
}

pub(crate) const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One `TableColumnDefinition`.
pub(crate) fn column(
    name: &str,
    ty: &str,
    format: &str,
    priority: i64,
    description: &str,
) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

/// The CRD columns actually served: upstream adds a lone `Age` date column
/// when a version declares none.
fn crd_columns(crd_printer_columns: Option<&[Value]>) -> Vec<Value> {
    match crd_printer_columns {
        Some(cols) if !cols.is_empty() => cols.to_vec(),
        _ => vec![
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": AGE_DESC}),
        ],
    }
}

fn use_crd(info: &ResourceInfo, crd_printer_columns: Option<&[Value]>) -> bool {
    info.custom || crd_printer_columns.is_some()
}

/// Column definitions for the resource.
pub fn columns(info: &ResourceInfo, crd_printer_columns: Option<&[Value]>) -> Vec<Value> {
    if !use_crd(info, crd_printer_columns) {
        return printers::columns(info);
    }
    let mut out = vec![column("Name", "string", "name", 0, NAME_DESC)];
    for c in crd_columns(crd_printer_columns) {
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default();
        let desc = match s("description") {
            "" => format!(
                "Custom resource definition column (in JSONPath format): {}",
                s("jsonPath")
            ),
            d => d.to_string(),
        };
        let priority = c.get("priority").and_then(Value::as_i64).unwrap_or(0);
        out.push(column(s("name"), s("type"), s("format"), priority, &desc));
    }
    out
}

/// One row's cells for an object (`now` for AGE computation).
pub fn cells(
    info: &ResourceInfo,
    obj: &Value,
    crd_printer_columns: Option<&[Value]>,
    now: DateTime<Utc>,
) -> Vec<Value> {
    if !use_crd(info, crd_printer_columns) {
        return printers::cells(info, obj, now);
    }
    let mut out = vec![json!(printers::name(obj))];
    for c in crd_columns(crd_printer_columns) {
        let ty = c.get("type").and_then(Value::as_str).unwrap_or_default();
        let path = c
            .get("jsonPath")
            .and_then(Value::as_str)
            .unwrap_or_default();
        out.push(match jsonpath(obj, path) {
            None | Some(Value::Null) => Value::Null,
            Some(v) => crd_cell(ty, v, now),
        });
    }
    out
}

/// Upstream's `cellForJSONValue`, with `string` columns printing any value.
fn crd_cell(ty: &str, v: Value, now: DateTime<Utc>) -> Value {
    match (ty, v) {
        ("string", Value::String(s)) => Value::String(s),
        ("string", v) => Value::String(v.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(b)) => Value::Bool(b),
        ("date", Value::String(s)) => match DateTime::parse_from_rfc3339(&s) {
            Ok(t) => Value::String(human_duration(now - t.with_timezone(&Utc))),
            Err(_) => Value::String("<invalid>".into()),
        },
        _ => Value::Null,
    }
}

/// Full Table for a list of objects (or a single object).
pub fn to_table(
    info: &ResourceInfo,
    objs: &[Value],
    include: IncludeObject,
    resource_version: &str,
    continue_token: Option<&str>,
    crd_printer_columns: Option<&[Value]>,
    now: DateTime<Utc>,
) -> Value {
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), json!(resource_version));
    if let Some(c) = continue_token.filter(|c| !c.is_empty()) {
        metadata.insert("continue".into(), json!(c));
    }
    let rows: Vec<Value> = objs
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert(
                "cells".into(),
                Value::Array(cells(info, obj, crd_printer_columns, now)),
            );
            if !use_crd(info, crd_printer_columns) {
                if let Some(conds) = printers::row_conditions(info, obj) {
                    row.insert("conditions".into(), conds);
                }
            }
            match include {
                IncludeObject::None => {}
                IncludeObject::Object => {
                    row.insert("object".into(), obj.clone());
                }
                IncludeObject::Metadata => {
                    row.insert(
                        "object".into(),
                        json!({
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                        }),
                    );
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns(info, crd_printer_columns),
        "rows": rows,
    })
}

/// Kubernetes human duration (`duration.HumanDuration`): "45s", "3m2s",
/// "15m", "5h4m", "30h", "3d4h", "45d", "2y30d", "9y".
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{builtin_resources, find};
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn human_durations() {
        let h = |s: i64| human_duration(Duration::seconds(s));
        assert_eq!(h(-5), "<invalid>");
        assert_eq!(h(-1), "0s");
        assert_eq!(h(0), "0s");
        assert_eq!(h(5), "5s");
        assert_eq!(h(119), "119s");
        assert_eq!(h(120), "2m");
        assert_eq!(h(182), "3m2s");
        assert_eq!(h(600), "10m");
        assert_eq!(h(179 * 60), "179m");
        assert_eq!(h(3 * 3600), "3h");
        assert_eq!(h(5 * 3600 + 4 * 60), "5h4m");
        assert_eq!(h(30 * 3600), "30h");
        assert_eq!(h(2 * 86400 + 3 * 3600), "2d3h");
        assert_eq!(h(3 * 86400), "3d");
        assert_eq!(h(45 * 86400), "45d");
        assert_eq!(h(800 * 86400), "2y70d");
        assert_eq!(h(730 * 86400), "2y");
        assert_eq!(h(9 * 365 * 86400), "9y");
    }

    #[test]
    fn include_object_query() {
        assert_eq!(
            IncludeObject::from_query(None).unwrap(),
            IncludeObject::Metadata
        );
        assert_eq!(
            "Object".parse::<IncludeObject>().unwrap(),
            IncludeObject::Object
        );
        assert_eq!(
            IncludeObject::from_query(Some("None")).unwrap(),
            IncludeObject::None
        );
        assert_eq!(
            IncludeObject::from_query(Some("x")).unwrap_err().to_string(),
            "includeObject: Unsupported value: \"x\": supported values: \"Metadata\", \"None\", \"Object\""
        );
    }

    #[test]
    fn table_shape_and_include_modes() {
        let all = builtin_resources();
        let cm = find(&all, "", "v1", "configmaps").unwrap();
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": "default", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "data": {"ca.crt": "x"}});
        let t = to_table(
            cm,
            std::slice::from_ref(&obj),
            IncludeObject::Metadata,
            "42",
            Some("tok"),
            None,
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            t["metadata"],
            json!({"resourceVersion": "42", "continue": "tok"})
        );
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Data", "Age"]);
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["rows"][0]["cells"], json!(["kube-root-ca.crt", 1, "60m"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            t["rows"][0]["object"]["metadata"]["name"],
            "kube-root-ca.crt"
        );

        let t = to_table(
            cm,
            std::slice::from_ref(&obj),
            IncludeObject::Object,
            "1",
            None,
            None,
            now(),
        );
        assert_eq!(t["rows"][0]["object"], obj);
        assert!(t["metadata"].get("continue").is_none());
        let t = to_table(cm, &[obj], IncludeObject::None, "1", None, None, now());
        assert!(t["rows"][0].get("object").is_none());
    }

    fn widget_info() -> ResourceInfo {
        ResourceInfo {
            group: "example.com".into(),
            version: "v1".into(),
            plural: "widgets".into(),
            singular: "widget".into(),
            kind: "Widget".into(),
            namespaced: true,
            verbs: vec![],
            short_names: vec![],
            categories: vec![],
            subresources: vec![],
            custom: true,
        }
    }

    #[test]
    fn custom_resource_columns() {
        let info = widget_info();
        let cols = vec![
            json!({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}),
            json!({"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status", "description": "Readiness"}),
            json!({"name": "Size", "type": "string", "jsonPath": ".spec.size", "priority": 1}),
            json!({"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"}),
            json!({"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"}),
            json!({"name": "Started", "type": "date", "jsonPath": ".status.startTime"}),
        ];
        let defs = columns(&info, Some(&cols));
        let names: Vec<&str> = defs.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["Name", "Replicas", "Ready", "Size", "Paused", "Ratio", "Started"]
        );
        assert_eq!(
            defs[1]["description"],
            "Custom resource definition column (in JSONPath format): .spec.replicas"
        );
        assert_eq!(defs[2]["description"], "Readiness");
        assert_eq!(defs[3]["priority"], 1);
        let obj = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1", "creationTimestamp": "2024-05-01T11:59:00Z"},
            "spec": {"replicas": 2, "size": 10, "paused": false, "ratio": 1.5},
            "status": {"startTime": "2024-04-30T12:00:00Z", "conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(
            cells(&info, &obj, Some(&cols), now()),
            vec![
                json!("w1"),
                json!(2),
                json!("True"),
                json!("10"),
                json!(false),
                json!(1.5),
                json!("24h")
            ]
        );
        let bare = json!({"metadata": {"name": "w2"}});
        assert_eq!(
            cells(&info, &bare, Some(&cols), now())[1..],
            [
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null
            ]
        );

        // No declared columns: Name and a date-typed Age, printed as a duration.
        let defs = columns(&info, None);
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[1]["name"], "Age");
        assert_eq!(defs[1]["type"], "date");
        assert_eq!(
            cells(&info, &obj, None, now()),
            vec![json!("w1"), json!("60s")]
        );
    }
}
