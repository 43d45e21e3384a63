//! Bootstrap manifests: every `manifests/*.yaml` of the source tree is
//! embedded in the binary at build time (see `build.rs`) and each YAML
//! document becomes one object the API server creates if missing at start.

use serde_json::Value;

use crate::{Error, Result};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/manifests.rs"));
}

/// The embedded manifest files: (file name, contents), sorted by name.
pub fn files() -> &'static [(&'static str, &'static str)] {
    embedded::EMBEDDED
}

/// Splits one multi-document YAML file into objects. Empty documents are
/// skipped; every other document must be a mapping with `apiVersion` and `kind`.
pub fn split(file: &str, text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let fail = |reason: String| Error::Manifest {
            file: file.to_string(),
            index,
            reason,
        };
        let value: Value = serde::Deserialize::deserialize(doc).map_err(|e| fail(e.to_string()))?;
        match &value {
            Value::Null => continue,
            Value::Object(map) => {
                for field in ["apiVersion", "kind"] {
                    if !map.get(field).is_some_and(Value::is_string) {
                        return Err(fail(format!("missing {field}")));
                    }
                }
            }
            _ => return Err(fail("not a mapping".to_string())),
        }
        out.push(value);
    }
    Ok(out)
}

/// Every object of every embedded manifest, in file order.
pub fn bootstrap_objects() -> Result<Vec<Value>> {
    let mut all = Vec::new();
    for (name, text) in files() {
        all.extend(split(name, text)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents() {
        let text = "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n# only a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n";
        let objs = split("ns.yaml", text).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1]["metadata"]["name"], "b");
    }

    #[test]
    fn rejects_bad_documents() {
        let err = split("x.yaml", "apiVersion: v1\nkind: A\n---\nkind: B\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("x.yaml document 1: missing apiVersion"),
            "{err}"
        );
        assert!(split("x.yaml", "- a\n").is_err());
        assert!(split("x.yaml", "a: [\n").is_err());
    }

    #[test]
    fn embedded_manifests_all_parse() {
        let objs = bootstrap_objects().unwrap();
        let docs: usize = files()
            .iter()
            .map(|(_, t)| t.matches("kind:").count().min(1))
            .sum();
        assert!(objs.len() >= docs);
        for (name, _) in files() {
            assert!(name.ends_with(".yaml"));
        }
    }
}
