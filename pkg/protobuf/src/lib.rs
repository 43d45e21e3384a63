//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! to the JSON objects kube-apiserver would see.
//!
//! client-go sends built-in types as protobuf and never falls back to JSON.
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` envelope
//! `{typeMeta{apiVersion = 1, kind = 2} = 1, raw = 2, contentEncoding = 3,
//! contentType = 4}` whose `raw` is the object's message. [`decode_object`]
//! looks the kind up in a schema table generated from `k8s-pb` and the Go API
//! types (`scripts/gen-proto-table.py`) and renders JSON with Kubernetes'
//! encodings (Time, Quantity, IntOrString, RawExtension, base64 bytes, Go
//! `omitempty`, inline structs).
//!
//! ```
//! let body = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12\x08\x0a\x06\x0a\x04demo";
//! let obj = rkube_protobuf::decode_object(body, None).unwrap();
//! assert_eq!(obj["metadata"]["name"], "demo");
//! assert!(rkube_protobuf::is_protobuf("application/vnd.kubernetes.protobuf; charset=x"));
//! ```

mod decode;
mod error;
mod format;
mod schema;
mod wire;

use serde_json::{Map, Value};

pub use error::{Error, Result};

/// The prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8] = b"k8s\0";

/// The Kubernetes protobuf media type.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Whether a `Content-Type` header value is Kubernetes protobuf (parameters
/// such as `;stream=watch` are ignored).
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .eq_ignore_ascii_case(CONTENT_TYPE)
}

/// Decodes a Kubernetes protobuf body (`k8s\0` + `runtime.Unknown` envelope)
/// into the object's JSON form with `apiVersion` and `kind` from the envelope.
///
/// `expected` `(apiVersion, kind)` fills in an envelope without type
/// information (client-go always sets it).
pub fn decode_object(body: &[u8], expected: Option<(&str, &str)>) -> Result<Value> {
    envelope(body, expected, 0)
}

/// Decodes an object's protobuf message (the envelope's `raw`) as `kind` of
/// `api_version`.
pub fn decode_raw(api_version: &str, kind: &str, raw: &[u8]) -> Result<Value> {
    typed(api_version, kind, raw, 0)
}

fn envelope(body: &[u8], expected: Option<(&str, &str)>, depth: usize) -> Result<Value> {
    let envelope = body.strip_prefix(MAGIC).ok_or(Error::BadMagic)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut content_encoding = String::new();
    let mut content_type = String::new();
    for item in wire::fields(envelope) {
        match item? {
            (1, wire::Value::Bytes(type_meta)) => {
                for item in wire::fields(type_meta) {
                    match item? {
                        (1, v) => api_version = envelope_string(v, "apiVersion")?,
                        (2, v) => kind = envelope_string(v, "kind")?,
                        _ => {}
                    }
                }
            }
            (2, wire::Value::Bytes(b)) => raw = b,
            (3, v) => content_encoding = envelope_string(v, "contentEncoding")?,
            (4, v) => content_type = envelope_string(v, "contentType")?,
            (tag @ 1..=2, v) => {
                return Err(Error::WireType {
                    message: "runtime.Unknown".into(),
                    field: if tag == 1 { "typeMeta" } else { "raw" }.into(),
                    got: v.wire_type(),
                })
            }
            _ => {}
        }
    }
    if !content_encoding.is_empty() {
        return Err(Error::UnsupportedEncoding {
            what: "contentEncoding",
            value: content_encoding,
        });
    }
    if let Some((want_version, want_kind)) = expected {
        if api_version.is_empty() {
            api_version = want_version.to_owned();
        }
        if kind.is_empty() {
            kind = want_kind.to_owned();
        }
    }
    if api_version.is_empty() || kind.is_empty() {
        return Err(Error::MissingTypeMeta);
    }
    if !content_type.is_empty() && !is_protobuf(&content_type) {
        return Err(Error::UnsupportedEncoding {
            what: "contentType",
            value: content_type,
        });
    }
    typed(&api_version, &kind, raw, depth)
}

fn envelope_string(v: wire::Value<'_>, field: &str) -> Result<String> {
    let bad = || Error::WireType {
        message: "runtime.Unknown".into(),
        field: field.into(),
        got: v.wire_type(),
    };
    let wire::Value::Bytes(b) = v else {
        return Err(bad());
    };
    String::from_utf8(b.to_vec()).map_err(|_| Error::InvalidUtf8 {
        message: "runtime.Unknown".into(),
        field: field.into(),
    })
}

fn typed(api_version: &str, kind: &str, raw: &[u8], depth: usize) -> Result<Value> {
    let schema = schema::schema();
    let id = schema
        .for_kind(api_version, kind)
        .ok_or_else(|| Error::UnknownKind {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        })?;
    let Value::Object(fields) = decode::message(schema, id, raw, depth)? else {
        return Err(Error::UnknownKind {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        });
    };
    let mut out = Map::with_capacity(fields.len() + 2);
    out.insert("apiVersion".into(), api_version.into());
    out.insert("kind".into(), kind.into());
    out.extend(fields);
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests;
