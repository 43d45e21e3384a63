//! Walks a protobuf message with the schema table and builds its Kubernetes
//! JSON form: maps become objects, repeated fields arrays (packed or not),
//! bytes base64, absent fields are omitted, Go `omitempty` non-pointer
//! scalars with zero values are dropped, inline fields merge into the parent,
//! and the special types get their own renderings (see [`Special`]).

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::format;
use crate::schema::{Kind, Message, MessageId, Schema, Shape, Special};
use crate::wire::{self, Value as Wire};

/// Deepest message nesting accepted (Kubernetes objects stay far below).
pub(crate) const MAX_DEPTH: usize = 100;

/// Decodes one message as JSON.
pub(crate) fn message(schema: &Schema, id: MessageId, buf: &[u8], depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    let msg = &schema.messages[id];
    match msg.special {
        None => {
            let mut out = Map::new();
            object(schema, msg, buf, &mut out, depth, None)?;
            Ok(Value::Object(out))
        }
        Some(special) => self::special(schema, msg, special, buf, depth),
    }
}

/// Decodes a message's fields (or only field `only`) into `out`.
fn object(
    schema: &Schema,
    msg: &Message,
    buf: &[u8],
    out: &mut Map<String, Value>,
    depth: usize,
    only: Option<u32>,
) -> Result<()> {
    for item in wire::fields(buf) {
        let (tag, value) = item?;
        if only.is_some_and(|only| only != tag) {
            continue;
        }
        let Some(field) = msg.fields.get(&tag) else {
            continue; // unknown field: newer server version, skip like Go does
        };
        let mismatch = || Error::WireType {
            message: msg.path.clone(),
            field: field.name.clone(),
            got: value.wire_type(),
        };
        match field.shape {
            Shape::Single(Kind::Message(id)) if field.inline => {
                let Wire::Bytes(sub) = value else {
                    return Err(mismatch());
                };
                if depth >= MAX_DEPTH {
                    return Err(Error::TooDeep(MAX_DEPTH));
                }
                object(schema, &schema.messages[id], sub, out, depth + 1, None)?;
            }
            Shape::Single(kind) => {
                let v = scalar(schema, msg, &field.name, kind, value, depth)?;
                if field.omit_zero && is_zero(&v) {
                    out.remove(&field.name);
                } else {
                    out.insert(field.name.clone(), v);
                }
            }
            Shape::Repeated(kind) => {
                let slot = out
                    .entry(field.name.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(items) = slot else {
                    unreachable!("repeated field slot is always an array")
                };
                match (kind, value) {
                    (
                        Kind::Bool | Kind::Int32 | Kind::Int64 | Kind::Double,
                        Wire::Bytes(packed),
                    ) => {
                        let mut r = wire::Reader::new(packed);
                        while !r.is_empty() {
                            let v = if kind == Kind::Double {
                                Wire::Fixed64(r.fixed64()?)
                            } else {
                                Wire::Varint(r.varint()?)
                            };
                            items.push(scalar(schema, msg, &field.name, kind, v, depth)?);
                        }
                    }
                    _ => items.push(scalar(schema, msg, &field.name, kind, value, depth)?),
                }
            }
            Shape::Map(key_kind, value_kind) => {
                let Wire::Bytes(entry) = value else {
                    return Err(mismatch());
                };
                let (mut key, mut val) = (None, None);
                for item in wire::fields(entry) {
                    match item? {
                        (1, v) => key = Some(v),
                        (2, v) => val = Some(v),
                        _ => {}
                    }
                }
                let key = match key {
                    Some(k) => scalar(schema, msg, &field.name, key_kind, k, depth)?,
                    None => Value::String(String::new()),
                };
                let key = match key {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let val = match val {
                    Some(v) => scalar(schema, msg, &field.name, value_kind, v, depth)?,
                    None => default_value(schema, msg, &field.name, value_kind, depth)?,
                };
                let slot = out
                    .entry(field.name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = slot {
                    map.insert(key, val);
                }
            }
        }
    }
    Ok(())
}

/// The value a map entry has when its value field is absent.
fn default_value(
    schema: &Schema,
    msg: &Message,
    field: &str,
    kind: Kind,
    depth: usize,
) -> Result<Value> {
    Ok(match kind {
        Kind::String | Kind::Bytes => Value::String(String::new()),
        Kind::Bool => Value::Bool(false),
        Kind::Int32 | Kind::Int64 => Value::from(0),
        Kind::Double => Value::from(0.0),
        Kind::Message(_) => scalar(schema, msg, field, kind, Wire::Bytes(&[]), depth)?,
    })
}

/// Decodes one value of `kind`.
fn scalar(
    schema: &Schema,
    msg: &Message,
    field: &str,
    kind: Kind,
    value: Wire<'_>,
    depth: usize,
) -> Result<Value> {
    let mismatch = || Error::WireType {
        message: msg.path.clone(),
        field: field.to_owned(),
        got: value.wire_type(),
    };
    Ok(match (kind, value) {
        (Kind::String, Wire::Bytes(b)) => Value::String(
            std::str::from_utf8(b)
                .map_err(|_| Error::InvalidUtf8 {
                    message: msg.path.clone(),
                    field: field.to_owned(),
                })?
                .to_owned(),
        ),
        (Kind::Bytes, Wire::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Kind::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        // Negative int32s are sign-extended to 64 bits; truncation undoes that.
        (Kind::Int32, Wire::Varint(v)) => Value::from(v as i32),
        (Kind::Int64, Wire::Varint(v)) => Value::from(v as i64),
        (Kind::Double, Wire::Fixed64(v)) => serde_json::Number::from_f64(f64::from_bits(v))
            .map(Value::Number)
            .ok_or_else(|| Error::NonFinite(field.to_owned()))?,
        (Kind::Message(id), Wire::Bytes(b)) => message(schema, id, b, depth + 1)?,
        _ => return Err(mismatch()),
    })
}

/// Whether Go's `omitempty` would drop this scalar.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        _ => false,
    }
}

/// Raw fields of a special message, by tag (last occurrence wins; repeated
/// message fields are kept in order under their tag).
struct Raw<'a> {
    fields: Vec<(u32, Wire<'a>)>,
}

impl<'a> Raw<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self> {
        Ok(Raw {
            fields: wire::fields(buf).collect::<Result<_>>()?,
        })
    }

    fn last(&self, tag: u32) -> Option<Wire<'a>> {
        self.fields
            .iter()
            .rev()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| *v)
    }

    fn varint(&self, tag: u32) -> i64 {
        match self.last(tag) {
            Some(Wire::Varint(v)) => v as i64,
            _ => 0,
        }
    }

    fn bytes(&self, tag: u32) -> Option<&'a [u8]> {
        match self.last(tag) {
            Some(Wire::Bytes(b)) => Some(b),
            _ => None,
        }
    }
}

fn special(
    schema: &Schema,
    msg: &Message,
    special: Special,
    buf: &[u8],
    depth: usize,
) -> Result<Value> {
    // One field of the message decoded through the table; `null` if absent.
    let field_value = |tag: u32| -> Result<Value> {
        let mut out = Map::new();
        object(schema, msg, buf, &mut out, depth, Some(tag))?;
        Ok(out.into_iter().next().map_or(Value::Null, |(_, v)| v))
    };
    let raw = Raw::parse(buf)?;
    Ok(match special {
        Special::Time | Special::MicroTime => {
            if buf.is_empty() {
                return Ok(Value::Null);
            }
            format::timestamp(
                raw.varint(1),
                i64::from(raw.varint(2) as i32),
                special == Special::MicroTime,
            )?
        }
        Special::Duration => Value::String(format::go_duration(raw.varint(1))),
        Special::Quantity => match raw.bytes(1) {
            Some(s) => Value::String(
                std::str::from_utf8(s)
                    .map_err(|_| Error::InvalidUtf8 {
                        message: msg.path.clone(),
                        field: "string".into(),
                    })?
                    .to_owned(),
            ),
            None => Value::String("0".into()),
        },
        Special::IntOrString => {
            if raw.varint(1) == 1 {
                field_value(3)?
            } else {
                Value::from(raw.varint(2) as i32)
            }
        }
        Special::RawJson => match raw.bytes(1) {
            None | Some([]) => Value::Null,
            Some(b) if b.starts_with(crate::MAGIC) => crate::envelope(b, None, depth + 1)?,
            Some(b) => serde_json::from_slice(b).map_err(|source| Error::EmbeddedJson {
                message: msg.path.clone(),
                source,
            })?,
        },
        Special::Items => match field_value(1)? {
            Value::Null => Value::Array(Vec::new()),
            v => v,
        },
        Special::SchemaOrArray => match field_value(2)? {
            Value::Array(a) if !a.is_empty() => Value::Array(a),
            _ => field_value(1)?,
        },
        Special::SchemaOrBool => match field_value(2)? {
            Value::Null => Value::Bool(raw.varint(1) != 0),
            schema => schema,
        },
        Special::SchemaOrStringArray => match field_value(2)? {
            Value::Array(a) if !a.is_empty() => Value::Array(a),
            _ => field_value(1)?,
        },
    })
}
