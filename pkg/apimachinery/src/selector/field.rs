//! Field selectors (`metadata.name=x,spec.nodeName!=,status.phase==Running`):
//! parsing with upstream escaping rules, the per-resource set of selectable
//! fields (the scheme's field label conversions), and evaluation against JSON.

use serde_json::Value;

use super::SelectorError;

/// One `field=value` or `field!=value` term, with the field in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Term {
    field: String,
    value: String,
    negated: bool,
}

/// Which selectable-field table applies to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pod,
    Node,
    ReplicationController,
    CoreEvent,
    EventsV1Event,
    Namespace,
    Secret,
    Service,
    ReplicaSet,
    StatefulSet,
    Job,
    CertificateSigningRequest,
    /// No registered conversion: only `metadata.name` and `metadata.namespace`.
    Other,
}

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

impl Kind {
    fn of(group: &str, plural: &str) -> Self {
        match (group, plural) {
            ("", "pods") => Kind::Pod,
            ("", "nodes") => Kind::Node,
            ("", "replicationcontrollers") => Kind::ReplicationController,
            ("", "events") => Kind::CoreEvent,
            ("events.k8s.io", "events") => Kind::EventsV1Event,
            ("", "namespaces") => Kind::Namespace,
            ("", "secrets") => Kind::Secret,
            ("", "services") => Kind::Service,
            ("apps", "replicasets") => Kind::ReplicaSet,
            ("apps", "statefulsets") => Kind::StatefulSet,
            ("batch", "jobs") => Kind::Job,
            ("certificates.k8s.io", "certificatesigningrequests") => {
                Kind::CertificateSigningRequest
            }
            _ => Kind::Other,
        }
    }

    /// Maps a field label to its canonical name, as the scheme's
    /// `ConvertFieldLabel` does, or rejects it with the upstream message.
    fn convert(self, label: &str) -> Result<String, SelectorError> {
        let meta = ["metadata.name", "metadata.namespace"];
        let accepted: &[&str] = match self {
            Kind::Pod => {
                if label == "spec.host" {
                    return Ok("spec.nodeName".into());
                }
                &[
                    "metadata.name",
                    "metadata.namespace",
                    "spec.nodeName",
                    "spec.restartPolicy",
                    "spec.schedulerName",
                    "spec.serviceAccountName",
                    "spec.hostNetwork",
                    "status.phase",
                    "status.podIP",
                    "status.podIPs",
                    "status.nominatedNodeName",
                ]
            }
            Kind::Node => &["metadata.name", "spec.unschedulable"],
            Kind::ReplicationController | Kind::ReplicaSet => {
                &["metadata.name", "metadata.namespace", "status.replicas"]
            }
            Kind::CoreEvent => EVENT_FIELDS,
            Kind::EventsV1Event => {
                if let Some(rest) = label.strip_prefix("regarding.") {
                    if EVENT_FIELDS.contains(&format!("involvedObject.{rest}").as_str()) {
                        return Ok(format!("involvedObject.{rest}"));
                    }
                }
                if label == "reportingController" {
                    return Ok("reportingComponent".into());
                }
                &[
                    "reason",
                    "source",
                    "type",
                    "metadata.namespace",
                    "metadata.name",
                ]
            }
            Kind::Namespace => &["status.phase", "metadata.name"],
            Kind::Secret => &["type", "metadata.namespace", "metadata.name"],
            Kind::Service => &[
                "metadata.namespace",
                "metadata.name",
                "spec.clusterIP",
                "spec.type",
            ],
            Kind::StatefulSet | Kind::Job => {
                &["metadata.name", "metadata.namespace", "status.successful"]
            }
            Kind::CertificateSigningRequest => &["metadata.name", "spec.signerName"],
            Kind::Other => {
                return if meta.contains(&label) {
                    Ok(label.to_string())
                } else {
                    Err(SelectorError::UnknownField(label.to_string()))
                };
            }
        };
        if accepted.contains(&label) {
            Ok(label.to_string())
        } else {
            Err(SelectorError::FieldNotSupported(label.to_string()))
        }
    }

    /// The value of a canonical field, as the registry's `GetAttrs` renders it.
    fn value(self, obj: &Value, field: &str) -> String {
        let s = |path: &str| render(lookup(obj, path));
        let or = |a: String, b: &str| if a.is_empty() { s(b) } else { a };
        match (self, field) {
            (Kind::Pod, "spec.hostNetwork") | (Kind::Node, "spec.unschedulable") => {
                lookup(obj, field)
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string()
            }
            (Kind::Pod, "status.podIP") => or(s("status.podIPs.0.ip"), "status.podIP"),
            (Kind::Pod, "status.podIPs") | (Kind::StatefulSet, "status.successful") => {
                String::new()
            }
            (Kind::ReplicationController | Kind::ReplicaSet, "status.replicas") => {
                lookup(obj, field)
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    .to_string()
            }
            (Kind::Job, "status.successful") => lookup(obj, "status.succeeded")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string(),
            (Kind::CoreEvent, "source") => or(s("source.component"), "reportingComponent"),
            (Kind::EventsV1Event, "source") => {
                or(s("deprecatedSource.component"), "reportingController")
            }
            (Kind::EventsV1Event, "reportingComponent") => s("reportingController"),
            (Kind::EventsV1Event, f) if f.starts_with("involvedObject.") => {
                s(&f.replacen("involvedObject.", "regarding.", 1))
            }
            _ => s(field),
        }
    }
}

/// Follows a dotted path; numeric segments index arrays.
fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Strings as-is, booleans "true"/"false", numbers in decimal, missing as "".
fn render(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A conjunction of field equality/inequality terms for one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<Term>,
    kind: Kind,
}

/// Splits on commas not preceded by a backslash escape.
fn split_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == ',' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Splits at the first `!=`, `==` or `=`: (field, negated, raw value).
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, neg) in [("!=", true), ("==", false), ("=", false)] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], neg, value));
            }
        }
    }
    None
}

fn unescape(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut slash = false;
    for c in s.chars() {
        if slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => return Err(SelectorError::Escape(format!("\\{c}"))),
            }
            slash = false;
            continue;
        }
        match c {
            '\\' => slash = true,
            ',' | '=' => return Err(SelectorError::Unescaped(c)),
            _ => out.push(c),
        }
    }
    if slash {
        return Err(SelectorError::Escape("\\".into()));
    }
    Ok(out)
}

impl FieldSelector {
    /// Parses a field selector for the resource `plural` in `group`,
    /// rejecting fields the resource does not support.
    pub fn parse(s: &str, group: &str, plural: &str) -> Result<Self, SelectorError> {
        let kind = Kind::of(group, plural);
        let mut parts = split_terms(s);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts.iter().filter(|p| !p.is_empty()) {
            let (field, negated, raw) =
                split_term(part).ok_or_else(|| SelectorError::FieldTerm {
                    selector: s.to_string(),
                    term: part.clone(),
                })?;
            let value = unescape(raw)?;
            let field = kind.convert(field.trim())?;
            terms.push(Term {
                field,
                value,
                negated,
            });
        }
        Ok(Self { terms, kind })
    }

    /// Whether the object satisfies every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms
            .iter()
            .all(|t| (self.kind.value(obj, &t.field) == t.value) != t.negated)
    }

    /// The name pinned by a `metadata.name=<v>` term, if any.
    pub fn pinned_name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == "metadata.name" && !t.negated)
            .map(|t| t.value.as_str())
    }

    /// The namespace pinned by a `metadata.namespace=<v>` term, if any.
    pub fn pinned_namespace(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == "metadata.namespace" && !t.negated)
            .map(|t| t.value.as_str())
    }

    /// True when there are no terms (selects everything).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node-a", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                     "serviceAccountName": "default", "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}
        })
    }

    #[test]
    fn pod_fields() {
        let p = pod();
        let m = |s: &str| FieldSelector::parse(s, "", "pods").unwrap().matches(&p);
        assert!(m("metadata.name=web-1"));
        assert!(m("metadata.namespace==default,status.phase=Running"));
        assert!(!m("status.phase!=Running"));
        assert!(m("spec.nodeName=node-a"));
        assert!(m("spec.host=node-a"));
        assert!(m("spec.hostNetwork=false"));
        assert!(m("status.podIP=10.0.0.5"));
        assert!(m("status.nominatedNodeName="));
        assert!(!m("spec.nodeName="));
        assert!(m("spec.nodeName!="));
        assert!(m(""));
        let unscheduled = json!({"metadata": {"name": "x"}, "spec": {"hostNetwork": true}});
        let s = FieldSelector::parse("spec.nodeName=,spec.hostNetwork=true", "", "pods").unwrap();
        assert!(s.matches(&unscheduled));
    }

    #[test]
    fn unsupported_fields() {
        let e = FieldSelector::parse("status.hostIP=1.2.3.4", "", "pods").unwrap_err();
        assert_eq!(e.to_string(), "field label not supported: status.hostIP");
        let e = FieldSelector::parse("foo.bar=baz", "networking.k8s.io", "ingresses").unwrap_err();
        assert_eq!(e.to_string(), "\"foo.bar\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"");
        assert!(FieldSelector::parse("metadata.namespace=x", "", "nodes").is_err());
        assert!(FieldSelector::parse("metadata.namespace=x", "apps", "deployments").is_ok());
        assert!(FieldSelector::parse(
            "spec.signerName=x",
            "certificates.k8s.io",
            "certificatesigningrequests"
        )
        .is_ok());
    }

    #[test]
    fn syntax_and_escapes() {
        let e = FieldSelector::parse("metadata.name", "", "pods").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        let e = FieldSelector::parse("metadata.name=a\\x", "", "pods").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid field selector: invalid escape sequence: \\x"
        );
        let e = FieldSelector::parse("metadata.name=a=b", "", "pods").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid field selector: unescaped character in value: ="
        );
        let s = FieldSelector::parse("metadata.name=a\\,b\\=c", "", "configmaps").unwrap();
        assert_eq!(s.pinned_name(), Some("a,b=c"));
        assert!(s.matches(&json!({"metadata": {"name": "a,b=c"}})));
        assert!(FieldSelector::parse(",,", "", "pods").unwrap().is_empty());
    }

    #[test]
    fn pinned_name_and_namespace() {
        let s = FieldSelector::parse(
            "metadata.namespace=kube-system,metadata.name=coredns",
            "",
            "pods",
        )
        .unwrap();
        assert_eq!(s.pinned_name(), Some("coredns"));
        assert_eq!(s.pinned_namespace(), Some("kube-system"));
        assert_eq!(
            FieldSelector::parse("metadata.name!=x", "", "pods")
                .unwrap()
                .pinned_name(),
            None
        );
    }

    #[test]
    fn events_core_and_v1() {
        let core = json!({
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u1"},
            "reason": "Scheduled", "type": "Normal", "reportingComponent": "default-scheduler", "source": {}
        });
        let m = |s: &str| {
            FieldSelector::parse(s, "", "events")
                .unwrap()
                .matches(&core)
        };
        assert!(m(
            "involvedObject.kind=Pod,involvedObject.name=web-1,involvedObject.uid=u1"
        ));
        assert!(m("reason=Scheduled,type=Normal"));
        assert!(m("source=default-scheduler"));
        assert!(m("reportingComponent=default-scheduler"));
        assert!(FieldSelector::parse("regarding.kind=Pod", "", "events").is_err());

        let v1 = json!({
            "metadata": {"name": "e1", "namespace": "default"},
            "regarding": {"kind": "Node", "name": "n1"},
            "reason": "Starting", "type": "Normal", "reportingController": "kubelet",
            "deprecatedSource": {"component": "kubelet", "host": "n1"}
        });
        let m = |s: &str| {
            FieldSelector::parse(s, "events.k8s.io", "events")
                .unwrap()
                .matches(&v1)
        };
        assert!(m("regarding.kind=Node,regarding.name=n1"));
        assert!(m("reportingController=kubelet,source=kubelet"));
        assert!(m("type=Normal,reason=Starting"));
        let e = FieldSelector::parse("involvedObject.kind=Node", "events.k8s.io", "events")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "field label not supported: involvedObject.kind"
        );
    }

    #[test]
    fn other_resource_fields() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {}});
        assert!(
            FieldSelector::parse("spec.unschedulable=false", "", "nodes")
                .unwrap()
                .matches(&node)
        );
        let rs = json!({"metadata": {"name": "r"}, "status": {"replicas": 3}});
        assert!(
            FieldSelector::parse("status.replicas=3", "apps", "replicasets")
                .unwrap()
                .matches(&rs)
        );
        let job = json!({"metadata": {"name": "j"}, "status": {}});
        assert!(FieldSelector::parse("status.successful=0", "batch", "jobs")
            .unwrap()
            .matches(&job));
        let secret =
            json!({"metadata": {"name": "s"}, "type": "kubernetes.io/service-account-token"});
        let s = FieldSelector::parse("type=kubernetes.io/service-account-token", "", "secrets")
            .unwrap();
        assert!(s.matches(&secret));
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert!(
            FieldSelector::parse("status.phase=Active", "", "namespaces")
                .unwrap()
                .matches(&ns)
        );
        let svc = json!({"metadata": {"name": "k"}, "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1"}});
        assert!(
            FieldSelector::parse("spec.clusterIP=10.96.0.1", "", "services")
                .unwrap()
                .matches(&svc)
        );
    }
}
