//! Plumbing shared by the `webhook` and `crd-conversion-webhook`
//! subcommands: reading fields of parsed JSON ([`json::Value`]), writing
//! values back as JSON, base64 for `[]byte` fields, and the
//! `metav1.Status` objects both reviews carry.

use crate::json::{self, Value};

/// The value at `path` (object keys) under `v`, if every step exists.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| match v {
        Value::Object(fields) => fields.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v),
        _ => None,
    })
}

/// The string at `path`, or "" (a missing or non-string field reads as Go's
/// zero value).
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    match at(v, path) {
        Some(Value::String(s)) => s,
        _ => "",
    }
}

/// The boolean at `path`, or false.
pub fn bool_at(v: &Value, path: &[&str]) -> bool {
    matches!(at(v, path), Some(Value::Bool(true)))
}

/// Decodes the field at `path` as Go's `map[string]string`: absent or null
/// is empty; anything but an object of strings is an unmarshal error.
pub fn string_map(
    v: &Value,
    path: &[&str],
    go_field: &str,
) -> Result<Vec<(String, String)>, String> {
    match at(v, path) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(fields)) => fields
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Null => Ok((k.clone(), String::new())),
                other => Err(format!(
                    "json: cannot unmarshal {} into Go struct field {go_field} of type string",
                    other.kind()
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "json: cannot unmarshal {} into Go struct field {go_field} of type map[string]string",
            other.kind()
        )),
    }
}

/// The value of `key` in a decoded string map.
pub fn lookup<'a>(m: &'a [(String, String)], key: &str) -> Option<&'a str> {
    m.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Sets `key` of object `v` (replacing an existing key in place).
pub fn set(v: &mut Value, key: &str, value: Value) {
    if let Value::Object(fields) = v {
        if let Some(f) = fields.iter_mut().find(|(k, _)| k == key) {
            f.1 = value;
        } else {
            fields.push((key.to_string(), value));
        }
    }
}

/// Removes `key` from object `v`, returning its value.
pub fn remove(v: &mut Value, key: &str) -> Option<Value> {
    let Value::Object(fields) = v else {
        return None;
    };
    let i = fields.iter().position(|(k, _)| k == key)?;
    Some(fields.remove(i).1)
}

/// A JSON string value.
pub fn string(s: &str) -> Value {
    Value::String(s.to_string())
}

/// An object from `(key, value)` pairs, in order.
pub fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// `v` written as compact JSON (object keys in their order).
pub fn encode(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(*n)),
        Value::String(s) => out.push_str(&json::quote(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(fields) => {
            out.push('{');
            for (i, (k, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json::quote(k));
                out.push(':');
                write(item, out);
            }
            out.push('}');
        }
    }
}

/// A number as Go writes a float64 holding it (integers without a point).
fn number(n: f64) -> String {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e21 {
        format!("{n:.0}")
    } else if n.is_finite() {
        format!("{n}")
    } else {
        "null".to_string()
    }
}

/// Standard base64 with padding (how Go's encoding/json writes `[]byte`).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A `metav1.Status` as Go marshals it: `metadata` always, the other
/// fields when set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    /// `Success` or `Failure`.
    pub status: String,
    pub message: String,
    pub reason: String,
    pub code: i32,
}

impl Status {
    /// A status with only a message.
    pub fn message(msg: impl Into<String>) -> Status {
        Status {
            message: msg.into(),
            ..Default::default()
        }
    }

    /// A status with only a reason.
    pub fn reason(reason: impl Into<String>) -> Status {
        Status {
            reason: reason.into(),
            ..Default::default()
        }
    }

    /// The status as a JSON value.
    pub fn to_value(&self) -> Value {
        let mut fields = vec![("metadata", Value::Object(Vec::new()))];
        if !self.status.is_empty() {
            fields.push(("status", string(&self.status)));
        }
        if !self.message.is_empty() {
            fields.push(("message", string(&self.message)));
        }
        if !self.reason.is_empty() {
            fields.push(("reason", string(&self.reason)));
        }
        if self.code != 0 {
            fields.push(("code", Value::Number(f64::from(self.code))));
        }
        object(fields)
    }
}

/// Whether a request's Content-Type is exactly `application/json` (what
/// agnhost's servers accept; parameters are not).
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type == Some("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_json() {
        let text = r#"{"a":[1,2.5,-3,true,null,"x\"y"],"b":{"c":{}},"big":1234567890123}"#;
        let v = json::parse(text).unwrap();
        assert_eq!(encode(&v), text);
        assert_eq!(str_at(&v, &["b", "c"]), "");
        assert!(at(&v, &["b", "c"]).is_some());
        assert!(at(&v, &["a", "c"]).is_none());
    }

    #[test]
    fn string_maps_decode_like_go() {
        let v = json::parse(r#"{"data":{"k":"v","n":null},"bad":{"k":1},"arr":[]}"#).unwrap();
        let m = string_map(&v, &["data"], ".Data").unwrap();
        assert_eq!(lookup(&m, "k"), Some("v"));
        assert_eq!(lookup(&m, "n"), Some(""));
        assert!(string_map(&v, &["missing"], ".Data").unwrap().is_empty());
        assert_eq!(
            string_map(&v, &["bad"], ".Data").unwrap_err(),
            "json: cannot unmarshal number into Go struct field .Data of type string"
        );
        assert!(string_map(&v, &["arr"], ".Data").is_err());
    }

    #[test]
    fn set_and_remove_keep_order() {
        let mut v = json::parse(r#"{"a":1,"b":2}"#).unwrap();
        set(&mut v, "a", string("x"));
        set(&mut v, "c", Value::Bool(true));
        assert_eq!(remove(&mut v, "b"), Some(Value::Number(2.0)));
        assert_eq!(remove(&mut v, "b"), None);
        assert_eq!(encode(&v), r#"{"a":"x","c":true}"#);
    }

    #[test]
    fn base64_matches_the_standard_encoding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn statuses_marshal_like_metav1() {
        assert_eq!(
            encode(&Status::message("no").to_value()),
            r#"{"metadata":{},"message":"no"}"#
        );
        let s = Status {
            status: "Failure".into(),
            message: "m".into(),
            reason: String::new(),
            code: 500,
        };
        assert_eq!(
            encode(&s.to_value()),
            r#"{"metadata":{},"status":"Failure","message":"m","code":500}"#
        );
    }
}
