//! Kubeconfig files: render a standalone one, or merge/remove a named
//! cluster+user+context in an existing file (like `minikube`/`kind`), keeping
//! every other entry and every field this crate does not know about.
//! Credentials are embedded as base64 `*-data` fields; files are written
//! atomically with mode 0600.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_yaml::{Mapping, Value};

use crate::error::{Error, Result};
use crate::fsutil::{read_optional, write_atomic, MODE_SECRET};

const LISTS: [(&str, &str); 3] = [
    ("clusters", "cluster"),
    ("users", "user"),
    ("contexts", "context"),
];

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn named(name: &str, kind: &str, body: Mapping) -> Value {
    let mut m = Mapping::new();
    m.insert(s("name"), s(name));
    m.insert(s(kind), Value::Mapping(body));
    Value::Mapping(m)
}

/// The `(list key, entry)` triples for `name`.
fn entries(
    name: &str,
    server: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> [(&'static str, Value); 3] {
    let mut cluster = Mapping::new();
    cluster.insert(s("server"), s(server));
    cluster.insert(s("certificate-authority-data"), s(&STANDARD.encode(ca_pem)));
    let mut user = Mapping::new();
    user.insert(s("client-certificate-data"), s(&STANDARD.encode(cert_pem)));
    user.insert(s("client-key-data"), s(&STANDARD.encode(key_pem)));
    let mut context = Mapping::new();
    context.insert(s("cluster"), s(name));
    context.insert(s("user"), s(name));
    [
        ("clusters", named(name, "cluster", cluster)),
        ("users", named(name, "user", user)),
        ("contexts", named(name, "context", context)),
    ]
}

/// Renders a standalone kubeconfig whose cluster, user and context are all
/// called `name`, with `name` as current context.
pub fn render(name: &str, server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let mut doc = Mapping::new();
    doc.insert(s("apiVersion"), s("v1"));
    doc.insert(s("kind"), s("Config"));
    for (list, entry) in entries(name, server, ca_pem, cert_pem, key_pem) {
        doc.insert(s(list), Value::Sequence(vec![entry]));
    }
    doc.insert(s("current-context"), s(name));
    doc.insert(s("preferences"), Value::Mapping(Mapping::new()));
    serde_yaml::to_string(&Value::Mapping(doc)).expect("a mapping of strings always serializes")
}

/// Merges cluster, user and context `name` into the kubeconfig at `path`
/// (created if missing), replacing entries of that name and leaving every
/// other entry and unknown field alone; sets `current-context` to `name`.
pub fn merge(
    path: &Path,
    name: &str,
    server: &str,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<()> {
    let mut doc = read(path)?.unwrap_or_default();
    if !doc.contains_key("apiVersion") {
        doc.insert(s("apiVersion"), s("v1"));
    }
    if !doc.contains_key("kind") {
        doc.insert(s("kind"), s("Config"));
    }
    for (list, entry) in entries(name, server, ca_pem, client_cert_pem, client_key_pem) {
        let seq = list_mut(&mut doc, list, path)?;
        match seq.iter_mut().find(|e| entry_name(e) == Some(name)) {
            Some(existing) => *existing = entry,
            None => seq.push(entry),
        }
    }
    doc.insert(s("current-context"), s(name));
    write(path, &doc)
}

/// Removes the cluster, user and context called `name` from the kubeconfig at
/// `path`, and unsets `current-context` if it was `name`. A missing file or
/// missing entries are not an error; the file is only rewritten if it changed.
pub fn remove(path: &Path, name: &str) -> Result<()> {
    let Some(mut doc) = read(path)? else {
        return Ok(());
    };
    let mut changed = false;
    for (list, _) in LISTS {
        if let Some(Value::Sequence(seq)) = doc.get_mut(list) {
            let before = seq.len();
            seq.retain(|e| entry_name(e) != Some(name));
            changed |= seq.len() != before;
        }
    }
    if doc.get("current-context").and_then(Value::as_str) == Some(name) {
        doc.remove("current-context");
        changed = true;
    }
    if changed {
        write(path, &doc)?;
    }
    Ok(())
}

/// The kubeconfig file to merge into: the first non-empty entry of
/// `$KUBECONFIG` (colon separated) if any, else `~/.kube/config`.
pub fn default_path() -> PathBuf {
    default_path_from(std::env::var_os("KUBECONFIG"), std::env::var_os("HOME"))
}

fn default_path_from(kubeconfig: Option<OsString>, home: Option<OsString>) -> PathBuf {
    if let Some(list) = kubeconfig {
        if let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty()) {
            return first;
        }
    }
    home.filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".kube")
        .join("config")
}

fn entry_name(entry: &Value) -> Option<&str> {
    entry.get("name").and_then(Value::as_str)
}

fn list_mut<'a>(doc: &'a mut Mapping, key: &str, path: &Path) -> Result<&'a mut Vec<Value>> {
    let slot = doc.entry(s(key)).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Sequence(Vec::new());
    }
    match slot {
        Value::Sequence(seq) => Ok(seq),
        _ => Err(Error::KubeconfigShape {
            path: path.to_path_buf(),
            reason: format!("{key} is not a list"),
        }),
    }
}

/// Reads a kubeconfig; `None` if the file does not exist, an empty mapping if it is empty.
fn read(path: &Path) -> Result<Option<Mapping>> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    let value: Value = serde_yaml::from_slice(&bytes).map_err(|source| Error::KubeconfigParse {
        path: path.to_path_buf(),
        source,
    })?;
    match value {
        Value::Null => Ok(Some(Mapping::new())),
        Value::Mapping(m) => Ok(Some(m)),
        _ => Err(Error::KubeconfigShape {
            path: path.to_path_buf(),
            reason: "top level is not a mapping".into(),
        }),
    }
}

fn write(path: &Path, doc: &Mapping) -> Result<()> {
    let text = serde_yaml::to_string(doc).map_err(|source| Error::KubeconfigParse {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, text.as_bytes(), MODE_SECRET)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const EXISTING: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://other:6443
    insecure-skip-tls-verify: true
- name: rkube
  cluster:
    server: https://stale:1
users:
- name: other
  user:
    token: abc
contexts:
- name: other
  context:
    cluster: other
    user: other
    namespace: dev
current-context: other
preferences:
  colors: true
x-custom-field:
  keep: me
"#;

    fn load(path: &Path) -> Value {
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn names(doc: &Value, list: &str) -> Vec<String> {
        doc[list]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| entry_name(e).unwrap().to_string())
            .collect()
    }

    #[test]
    fn render_embeds_base64_data() {
        let text = render("rkube", "https://127.0.0.1:6443", "CA", "CERT", "KEY");
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(doc["current-context"], s("rkube"));
        let cluster = &doc["clusters"][0]["cluster"];
        assert_eq!(cluster["server"], s("https://127.0.0.1:6443"));
        assert_eq!(
            cluster["certificate-authority-data"],
            s(&STANDARD.encode("CA"))
        );
        let user = &doc["users"][0]["user"];
        assert_eq!(user["client-certificate-data"], s(&STANDARD.encode("CERT")));
        assert_eq!(user["client-key-data"], s(&STANDARD.encode("KEY")));
        assert_eq!(doc["contexts"][0]["context"]["cluster"], s("rkube"));
    }

    #[test]
    fn merge_creates_missing_file_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".kube/config");
        merge(&path, "rkube", "https://h:6443", "CA", "C", "K").unwrap();
        let doc = load(&path);
        assert_eq!(doc["kind"], s("Config"));
        assert_eq!(names(&doc, "clusters"), ["rkube"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn merge_keeps_others_and_unknown_fields_then_remove_only_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, EXISTING).unwrap();

        merge(&path, "rkube", "https://h:6443", "CA", "C", "K").unwrap();
        let doc = load(&path);
        assert_eq!(doc["current-context"], s("rkube"));
        assert_eq!(names(&doc, "clusters"), ["other", "rkube"]);
        assert_eq!(names(&doc, "users"), ["other", "rkube"]);
        assert_eq!(names(&doc, "contexts"), ["other", "rkube"]);
        assert_eq!(doc["clusters"][1]["cluster"]["server"], s("https://h:6443"));
        assert_eq!(
            doc["clusters"][0]["cluster"]["insecure-skip-tls-verify"],
            Value::Bool(true)
        );
        assert_eq!(doc["contexts"][0]["context"]["namespace"], s("dev"));
        assert_eq!(doc["x-custom-field"]["keep"], s("me"));
        assert_eq!(doc["preferences"]["colors"], Value::Bool(true));

        // Merging again is idempotent.
        merge(&path, "rkube", "https://h:6443", "CA", "C", "K").unwrap();
        assert_eq!(load(&path), doc);

        remove(&path, "rkube").unwrap();
        let doc = load(&path);
        assert_eq!(names(&doc, "clusters"), ["other"]);
        assert_eq!(names(&doc, "users"), ["other"]);
        assert_eq!(names(&doc, "contexts"), ["other"]);
        assert!(doc.get("current-context").is_none());
        assert_eq!(doc["x-custom-field"]["keep"], s("me"));
    }

    #[test]
    fn remove_keeps_foreign_current_context_and_tolerates_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        remove(&path, "rkube").unwrap();
        assert!(!path.exists());
        std::fs::write(&path, EXISTING).unwrap();
        remove(&path, "rkube").unwrap();
        let doc = load(&path);
        assert_eq!(doc["current-context"], s("other"));
        assert_eq!(names(&doc, "clusters"), ["other"]);
    }

    #[test]
    fn merge_rejects_non_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "- a\n- b\n").unwrap();
        let err = merge(&path, "rkube", "https://h", "CA", "C", "K").unwrap_err();
        assert!(matches!(err, Error::KubeconfigShape { .. }));
    }

    #[test]
    fn default_path_rules() {
        let home = Some(OsString::from("/home/u"));
        assert_eq!(
            default_path_from(None, home.clone()),
            PathBuf::from("/home/u/.kube/config")
        );
        assert_eq!(
            default_path_from(Some("".into()), home.clone()),
            PathBuf::from("/home/u/.kube/config")
        );
        assert_eq!(
            default_path_from(Some("/a/one:/b/two".into()), home.clone()),
            PathBuf::from("/a/one")
        );
        assert_eq!(
            default_path_from(Some(":/b/two".into()), home),
            PathBuf::from("/b/two")
        );
    }
}
