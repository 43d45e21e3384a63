//! RBAC authorization over an in-memory cache of Roles, ClusterRoles,
//! RoleBindings and ClusterRoleBindings that follows the store's watch.
//!
//! Semantics follow kube-apiserver's RBAC authorizer: ClusterRoleBindings
//! grant everywhere, RoleBindings grant in their namespace (referencing a Role
//! of that namespace or a ClusterRole), and a request is allowed when any rule
//! of any binding that applies to the user matches it. Aggregated ClusterRoles
//! (`aggregationRule`) get the union of the rules of the ClusterRoles their
//! selectors match, recomputed whenever a ClusterRole changes, as the
//! clusterrole-aggregation controller would write them. Members of
//! `system:masters` are always allowed (kube-apiserver's privileged-group
//! authorizer).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use rkube_store::{EventKind, Revision, Store};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{
    split_service_account_username, Attributes, AuthError, Decision, UserInfo, MASTERS_GROUP,
};

/// Storage prefix of every RBAC object.
pub const RBAC_PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// One PolicyRule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRule {
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LabelSelectorRequirement {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LabelSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    /// Whether `labels` satisfy the selector (an empty selector matches all).
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => value.is_some_and(|v| e.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !e.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AggregationRule {
    #[serde(default)]
    cluster_role_selectors: Vec<LabelSelector>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleObject {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    rules: Option<Vec<PolicyRule>>,
    #[serde(default)]
    aggregation_rule: Option<AggregationRule>,
}

#[derive(Clone, Debug, Deserialize)]
struct Subject {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Clone, Debug, Deserialize)]
struct RoleRef {
    kind: String,
    name: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingObject {
    #[serde(default)]
    subjects: Option<Vec<Subject>>,
    role_ref: RoleRef,
}

#[derive(Clone, Debug)]
struct Binding {
    subjects: Vec<Subject>,
    role_ref: RoleRef,
}

#[derive(Clone, Debug)]
struct ClusterRoleEntry {
    labels: BTreeMap<String, String>,
    rules: Vec<PolicyRule>,
    aggregation: Option<Vec<LabelSelector>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

impl Kind {
    fn from_kind(kind: &str) -> Option<Self> {
        Some(match kind {
            "Role" => Kind::Role,
            "ClusterRole" => Kind::ClusterRole,
            "RoleBinding" => Kind::RoleBinding,
            "ClusterRoleBinding" => Kind::ClusterRoleBinding,
            _ => return None,
        })
    }
}

/// Splits an RBAC storage key into kind, namespace ("" when cluster-scoped) and name.
fn parse_key(key: &str) -> Option<(Kind, &str, &str)> {
    let rest = key.strip_prefix(RBAC_PREFIX)?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["roles", ns, name] => Some((Kind::Role, ns, name)),
        ["rolebindings", ns, name] => Some((Kind::RoleBinding, ns, name)),
        ["clusterroles", name] => Some((Kind::ClusterRole, "", name)),
        ["clusterrolebindings", name] => Some((Kind::ClusterRoleBinding, "", name)),
        _ => None,
    }
}

/// The cached policy.
#[derive(Default)]
struct Cache {
    /// (namespace, name) → rules.
    roles: BTreeMap<(String, String), Arc<Vec<PolicyRule>>>,
    cluster_roles: BTreeMap<String, ClusterRoleEntry>,
    /// Effective rules of every ClusterRole (aggregation applied).
    effective: BTreeMap<String, Arc<Vec<PolicyRule>>>,
    /// namespace → name → binding.
    role_bindings: BTreeMap<String, BTreeMap<String, Binding>>,
    cluster_role_bindings: BTreeMap<String, Binding>,
}

impl Cache {
    /// Inserts (Some) or removes (None) one object; returns whether ClusterRoles changed.
    fn apply(&mut self, kind: Kind, ns: &str, name: &str, value: Option<&[u8]>) -> bool {
        let decode_err = |e: serde_json::Error| {
            tracing::warn!(?kind, ns, name, error = %e, "ignoring undecodable RBAC object");
        };
        match kind {
            Kind::Role => {
                let key = (ns.to_string(), name.to_string());
                match value.map(serde_json::from_slice::<RoleObject>) {
                    Some(Ok(r)) => {
                        self.roles
                            .insert(key, Arc::new(r.rules.unwrap_or_default()));
                    }
                    other => {
                        if let Some(Err(e)) = other {
                            decode_err(e);
                        }
                        self.roles.remove(&key);
                    }
                }
                false
            }
            Kind::ClusterRole => {
                match value.map(serde_json::from_slice::<RoleObject>) {
                    Some(Ok(r)) => {
                        let entry = ClusterRoleEntry {
                            labels: r.metadata.labels,
                            rules: r.rules.unwrap_or_default(),
                            aggregation: r.aggregation_rule.map(|a| a.cluster_role_selectors),
                        };
                        self.cluster_roles.insert(name.to_string(), entry);
                    }
                    other => {
                        if let Some(Err(e)) = other {
                            decode_err(e);
                        }
                        self.cluster_roles.remove(name);
                    }
                }
                true
            }
            Kind::RoleBinding | Kind::ClusterRoleBinding => {
                let binding = match value.map(serde_json::from_slice::<BindingObject>) {
                    Some(Ok(b)) => Some(Binding {
                        subjects: b.subjects.unwrap_or_default(),
                        role_ref: b.role_ref,
                    }),
                    Some(Err(e)) => {
                        decode_err(e);
                        None
                    }
                    None => None,
                };
                if kind == Kind::ClusterRoleBinding {
                    match binding {
                        Some(b) => self.cluster_role_bindings.insert(name.to_string(), b),
                        None => self.cluster_role_bindings.remove(name),
                    };
                } else {
                    match binding {
                        Some(b) => {
                            self.role_bindings
                                .entry(ns.to_string())
                                .or_default()
                                .insert(name.to_string(), b);
                        }
                        None => {
                            if let Some(m) = self.role_bindings.get_mut(ns) {
                                m.remove(name);
                                if m.is_empty() {
                                    self.role_bindings.remove(ns);
                                }
                            }
                        }
                    }
                }
                false
            }
        }
    }

    /// Recomputes the effective rules of every ClusterRole.
    fn recompute_effective(&mut self) {
        let mut memo = BTreeMap::new();
        for name in self.cluster_roles.keys() {
            self.effective_of(name, &mut memo, &mut HashSet::new());
        }
        self.effective = memo;
    }

    fn effective_of(
        &self,
        name: &str,
        memo: &mut BTreeMap<String, Arc<Vec<PolicyRule>>>,
        visiting: &mut HashSet<String>,
    ) -> Arc<Vec<PolicyRule>> {
        if let Some(rules) = memo.get(name) {
            return rules.clone();
        }
        let Some(role) = self.cluster_roles.get(name) else {
            return Arc::default();
        };
        let Some(selectors) = &role.aggregation else {
            let rules = Arc::new(role.rules.clone());
            memo.insert(name.to_string(), rules.clone());
            return rules;
        };
        if !visiting.insert(name.to_string()) {
            // Aggregation cycle: do not recurse further.
            return Arc::new(role.rules.clone());
        }
        let mut rules: Vec<PolicyRule> = Vec::new();
        for (other, entry) in &self.cluster_roles {
            if other == name || !selectors.iter().any(|s| s.matches(&entry.labels)) {
                continue;
            }
            for rule in self.effective_of(other, memo, visiting).iter() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
        visiting.remove(name);
        let rules = Arc::new(rules);
        memo.insert(name.to_string(), rules.clone());
        rules
    }

    /// Rules a binding's roleRef grants; `binding_ns` is "" for ClusterRoleBindings.
    fn rules_of(
        &self,
        binding_ns: &str,
        role_ref: &RoleRef,
    ) -> Result<Arc<Vec<PolicyRule>>, String> {
        match role_ref.kind.as_str() {
            "ClusterRole" => self.effective.get(&role_ref.name).cloned().ok_or_else(|| {
                format!(
                    "clusterrole.rbac.authorization.k8s.io {:?} not found",
                    role_ref.name
                )
            }),
            "Role" if !binding_ns.is_empty() => self
                .roles
                .get(&(binding_ns.to_string(), role_ref.name.clone()))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "role.rbac.authorization.k8s.io {:?} not found",
                        role_ref.name
                    )
                }),
            kind => Err(format!("unsupported role reference kind: {kind:?}")),
        }
    }

    /// Calls `visit` with the rules of every binding that applies to `user`
    /// (ClusterRoleBindings, then RoleBindings of `namespace`) until it returns true.
    fn visit(
        &self,
        user: &UserInfo,
        namespace: &str,
        mut visit: impl FnMut(Result<&[PolicyRule], String>) -> bool,
    ) {
        for b in self.cluster_role_bindings.values() {
            if applies_to(user, &b.subjects, "") {
                let rules = self.rules_of("", &b.role_ref);
                if visit(rules.as_deref().map(Vec::as_slice).map_err(Clone::clone)) {
                    return;
                }
            }
        }
        if namespace.is_empty() {
            return;
        }
        for b in self
            .role_bindings
            .get(namespace)
            .into_iter()
            .flat_map(BTreeMap::values)
        {
            if applies_to(user, &b.subjects, namespace) {
                let rules = self.rules_of(namespace, &b.role_ref);
                if visit(rules.as_deref().map(Vec::as_slice).map_err(Clone::clone)) {
                    return;
                }
            }
        }
    }
}

fn applies_to(user: &UserInfo, subjects: &[Subject], binding_ns: &str) -> bool {
    subjects.iter().any(|s| match s.kind.as_str() {
        "User" => user.username == s.name,
        "Group" => user.in_group(&s.name),
        "ServiceAccount" => {
            let ns = if s.namespace.is_empty() {
                binding_ns
            } else {
                s.namespace.as_str()
            };
            !ns.is_empty() && split_service_account_username(&user.username) == Some((ns, &s.name))
        }
        _ => false,
    })
}

fn matches_or_all(values: &[String], wanted: &str) -> bool {
    values.iter().any(|v| v == "*" || v == wanted)
}

fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    rule.resources.iter().any(|r| {
        r == "*"
            || r == combined
            || (!subresource.is_empty()
                && r.strip_prefix("*/").is_some_and(|sub| sub == subresource))
    })
}

fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().any(|u| {
        u == "*"
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// Whether `rule` allows the request (upstream `RuleAllows`).
fn rule_allows(attrs: &Attributes, rule: &PolicyRule) -> bool {
    if !matches_or_all(&rule.verbs, &attrs.verb) {
        return false;
    }
    if !attrs.resource_request {
        return non_resource_url_matches(rule, &attrs.path);
    }
    let combined = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    matches_or_all(&rule.api_groups, &attrs.api_group)
        && resource_matches(rule, &combined, &attrs.subresource)
        && (rule.resource_names.is_empty() || rule.resource_names.contains(&attrs.name))
}

/// The RBAC authorizer: an in-memory policy cache kept current by a store watch.
pub struct Rbac {
    cache: RwLock<Cache>,
    revision: tokio::sync::watch::Sender<Revision>,
    _stop: DropGuard,
}

impl Rbac {
    fn with_cache(cache: Cache, revision: Revision, stop: CancellationToken) -> Self {
        Rbac {
            cache: RwLock::new(cache),
            revision: tokio::sync::watch::Sender::new(revision),
            _stop: stop.drop_guard(),
        }
    }

    /// Loads all RBAC objects from the store and spawns a task that follows
    /// the store watch (resuming from the last revision when the watch ends,
    /// re-listing when that revision is compacted).
    /// The policy is loaded when this returns; the task stops when the
    /// returned `Rbac` is dropped or the store closes.
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<Self>, AuthError> {
        let (cache, revision) = load(store.as_ref()).await?;
        let stop = CancellationToken::new();
        let rbac = Arc::new(Rbac::with_cache(cache, revision, stop.clone()));
        let weak = Arc::downgrade(&rbac);
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = follow(store, weak, revision) => {}
            }
        });
        Ok(rbac)
    }

    /// A fixed policy from RBAC objects (JSON with `kind` and `metadata`);
    /// objects of other kinds are ignored. Nothing follows the store.
    pub fn from_objects(objects: &[Value]) -> Self {
        let mut cache = Cache::default();
        for obj in objects {
            let Some(kind) = obj
                .get("kind")
                .and_then(Value::as_str)
                .and_then(Kind::from_kind)
            else {
                continue;
            };
            let meta = &obj["metadata"];
            let name = meta["name"].as_str().unwrap_or_default();
            let ns = match kind {
                Kind::Role | Kind::RoleBinding => meta["namespace"].as_str().unwrap_or("default"),
                _ => "",
            };
            let bytes = serde_json::to_vec(obj).unwrap_or_default();
            cache.apply(kind, ns, name, Some(&bytes));
        }
        cache.recompute_effective();
        Rbac::with_cache(cache, 0, CancellationToken::new())
    }

    /// The store revision the cache reflects.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits until the cache reflects store revision `rev` (e.g. after the
    /// API server wrote an RBAC object). Wrap in a timeout.
    pub async fn wait_for_revision(&self, rev: Revision) {
        let mut rx = self.revision.subscribe();
        let _ = rx.wait_for(|r| *r >= rev).await;
    }

    /// Authorizes a request: `Allow`, or `Deny` with upstream's reason
    /// (empty, or `RBAC: ...` naming missing roles).
    pub fn authorize(&self, attrs: &Attributes) -> Decision {
        if attrs.user.in_group(MASTERS_GROUP) {
            return Decision::Allow;
        }
        self.authorize_rules(attrs)
    }

    /// RBAC rules only, without the `system:masters` short-circuit.
    pub(super) fn authorize_rules(&self, attrs: &Attributes) -> Decision {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let mut allowed = false;
        let mut errors = Vec::new();
        cache.visit(&attrs.user, &attrs.namespace, |rules| match rules {
            Ok(rules) => {
                allowed = rules.iter().any(|r| rule_allows(attrs, r));
                allowed
            }
            Err(e) => {
                errors.push(e);
                false
            }
        });
        if allowed {
            return Decision::Allow;
        }
        Decision::Deny(match errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", errors[0]),
            _ => format!("RBAC: [{}]", errors.join(", ")),
        })
    }

    /// For SelfSubjectRulesReview: the resource rules (`verbs`, `apiGroups`,
    /// `resources`, `resourceNames`) and non-resource rules (`verbs`,
    /// `nonResourceURLs`) that apply to `user` in `namespace`.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Value>, Vec<Value>) {
        let mut resource = Vec::new();
        let mut non_resource = Vec::new();
        if user.in_group(MASTERS_GROUP) {
            resource.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
            non_resource.push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
        }
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.visit(user, namespace, |rules| {
            for r in rules.unwrap_or_default() {
                if !r.non_resource_urls.is_empty() {
                    non_resource.push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
                }
                if !r.resources.is_empty() {
                    let mut v = json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
                    if !r.resource_names.is_empty() {
                        v["resourceNames"] = json!(r.resource_names);
                    }
                    resource.push(v);
                }
            }
            false
        });
        (resource, non_resource)
    }

    fn apply_event(&self, event: &rkube_store::Event) {
        if let Some((kind, ns, name)) = parse_key(&event.kv.key) {
            let value = (event.kind != EventKind::Deleted).then_some(&*event.kv.value);
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            if cache.apply(kind, ns, name, value) {
                cache.recompute_effective();
            }
        }
        self.revision.send_replace(event.kv.mod_revision);
    }

    fn replace(&self, cache: Cache, revision: Revision) {
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = cache;
        self.revision.send_replace(revision);
    }
}

/// Lists every RBAC object into a fresh cache.
async fn load(store: &dyn Store) -> Result<(Cache, Revision), AuthError> {
    let list = store.list(RBAC_PREFIX, None, 0).await?;
    let mut cache = Cache::default();
    for kv in &list.items {
        if let Some((kind, ns, name)) = parse_key(&kv.key) {
            cache.apply(kind, ns, name, Some(&kv.value));
        }
    }
    cache.recompute_effective();
    Ok((cache, list.revision))
}

/// Follows the store watch from `revision`, re-listing when the watch cannot
/// continue. Returns when the `Rbac` is gone or the store is closed.
async fn follow(store: Arc<dyn Store>, rbac: Weak<Rbac>, mut revision: Revision) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.watch(RBAC_PREFIX, revision) {
            Ok(mut rx) => {
                let mut progressed = false;
                while let Some(event) = rx.recv().await {
                    let Some(rbac) = rbac.upgrade() else { return };
                    rbac.apply_event(&event);
                    revision = event.kv.mod_revision;
                    progressed = true;
                }
                // The watch ended (e.g. dropped as too slow): resume from the
                // last revision; a compacted revision leads to a re-list.
                if progressed {
                    backoff = Duration::from_millis(100);
                } else {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                continue;
            }
            Err(rkube_store::Error::Closed) => return,
            Err(rkube_store::Error::Compacted { .. }) => {
                tracing::debug!(revision, "rbac watch compacted; re-listing");
            }
            Err(e) => {
                tracing::warn!(error = %e, "rbac watch failed; re-listing");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        loop {
            match load(store.as_ref()).await {
                Ok((cache, rev)) => {
                    let Some(rbac) = rbac.upgrade() else { return };
                    rbac.replace(cache, rev);
                    revision = rev;
                    break;
                }
                Err(AuthError::Store(rkube_store::Error::Closed)) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "rbac re-list failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// The 403 message of kube-apiserver for a denied request, e.g.
/// `pods "x" is forbidden: User "u" cannot get resource "pods/log" in API
/// group "" in the namespace "default"`, with `: <reason>` appended when the
/// reason is non-empty.
pub fn forbidden_message(attrs: &Attributes, reason: &str) -> String {
    let user = &attrs.user.username;
    let detail = if !attrs.resource_request {
        format!("User {user:?} cannot {} path {:?}", attrs.verb, attrs.path)
    } else {
        let resource = if attrs.subresource.is_empty() {
            attrs.resource.clone()
        } else {
            format!("{}/{}", attrs.resource, attrs.subresource)
        };
        let scope = if attrs.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", attrs.namespace)
        };
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            attrs.verb, attrs.api_group
        )
    };
    let detail = if reason.is_empty() {
        detail
    } else {
        format!("{detail}: {reason}")
    };
    // apierrors.NewForbidden(GroupResource, name, err).
    let group_resource = match (attrs.resource.as_str(), attrs.api_group.as_str()) {
        ("", "") => String::new(),
        (r, "") => r.to_string(),
        (r, g) => format!("{r}.{g}"),
    };
    match (group_resource.is_empty(), attrs.name.is_empty()) {
        (true, _) => format!("forbidden: {detail}"),
        (false, true) => format!("{group_resource} is forbidden: {detail}"),
        (false, false) => format!("{group_resource} {:?} is forbidden: {detail}", attrs.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        groups.push("system:authenticated".into());
        UserInfo {
            username: name.into(),
            uid: String::new(),
            groups,
            extra: Map::new(),
        }
    }

    fn sa(ns: &str, name: &str) -> UserInfo {
        user(
            &format!("system:serviceaccount:{ns}:{name}"),
            &["system:serviceaccounts"],
        )
    }

    fn res(
        u: &UserInfo,
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> Attributes {
        Attributes::resource(u.clone(), verb, group, resource, sub, ns, name)
    }

    fn cluster_role(name: &str, rules: Value) -> Value {
        json!({"kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
    }

    fn crb(name: &str, role: &str, subjects: Value) -> Value {
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
               "subjects": subjects})
    }

    fn rb(ns: &str, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
        json!({"kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
               "subjects": subjects})
    }

    fn policy() -> Rbac {
        Rbac::from_objects(&[
            cluster_role(
                "cluster-admin",
                json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
            ),
            crb(
                "cluster-admin",
                "cluster-admin",
                json!([{"kind": "Group", "name": "system:masters"}]),
            ),
            cluster_role(
                "pod-reader",
                json!([
                {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]),
            ),
            rb(
                "dev",
                "read-pods",
                "ClusterRole",
                "pod-reader",
                json!([
                {"kind": "User", "name": "alice"},
                {"kind": "ServiceAccount", "name": "builder"},
                {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]),
            ),
            json!({"kind": "Role", "metadata": {"name": "cm", "namespace": "dev"}, "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["app-config"],
                 "verbs": ["get", "update"]},
                {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]}]}),
            rb(
                "dev",
                "cm",
                "Role",
                "cm",
                json!([{"kind": "Group", "name": "devs"}]),
            ),
            rb(
                "dev",
                "broken",
                "Role",
                "missing",
                json!([{"kind": "Group", "name": "devs"}]),
            ),
            cluster_role(
                "health",
                json!([
                {"nonResourceURLs": ["/healthz", "/healthz/*", "/version"], "verbs": ["get"]}]),
            ),
            crb(
                "health",
                "health",
                json!([{"kind": "Group", "name": "system:unauthenticated"}]),
            ),
        ])
    }

    #[test]
    fn masters_allowed_by_binding_and_short_circuit() {
        let rbac = policy();
        let root = user("root", &["system:masters"]);
        let a = res(&root, "delete", "apps", "deployments", "", "prod", "web");
        assert_eq!(rbac.authorize_rules(&a), Decision::Allow);
        assert_eq!(rbac.authorize(&a), Decision::Allow);
        // The short-circuit holds without any binding.
        assert_eq!(Rbac::from_objects(&[]).authorize(&a), Decision::Allow);
        let a = Attributes::non_resource(root, "get", "/metrics");
        assert!(rbac.authorize(&a).is_allowed());
    }

    #[test]
    fn rolebinding_to_clusterrole_only_in_its_namespace() {
        let rbac = policy();
        let alice = user("alice", &[]);
        assert!(rbac
            .authorize(&res(&alice, "list", "", "pods", "", "dev", ""))
            .is_allowed());
        assert!(!rbac
            .authorize(&res(&alice, "list", "", "pods", "", "prod", ""))
            .is_allowed());
        assert!(!rbac
            .authorize(&res(&alice, "list", "", "pods", "", "", ""))
            .is_allowed());
        assert!(!rbac
            .authorize(&res(&alice, "delete", "", "pods", "", "dev", "x"))
            .is_allowed());
    }

    #[test]
    fn service_account_subjects() {
        let rbac = policy();
        // Subject namespace defaults to the binding's.
        assert!(rbac
            .authorize(&res(
                &sa("dev", "builder"),
                "get",
                "",
                "pods",
                "",
                "dev",
                "p"
            ))
            .is_allowed());
        assert!(!rbac
            .authorize(&res(
                &sa("other", "builder"),
                "get",
                "",
                "pods",
                "",
                "dev",
                "p"
            ))
            .is_allowed());
        assert!(rbac
            .authorize(&res(&sa("tools", "ci"), "get", "", "pods", "", "dev", "p"))
            .is_allowed());
        assert!(!rbac
            .authorize(&res(&sa("dev", "ci"), "get", "", "pods", "", "dev", "p"))
            .is_allowed());
        // A user merely named like the subject is not a service account.
        assert!(!rbac
            .authorize(&res(
                &user("builder", &[]),
                "get",
                "",
                "pods",
                "",
                "dev",
                "p"
            ))
            .is_allowed());
    }

    #[test]
    fn resource_names() {
        let rbac = policy();
        let dev = user("bob", &["devs"]);
        assert!(rbac
            .authorize(&res(&dev, "get", "", "configmaps", "", "dev", "app-config"))
            .is_allowed());
        assert!(!rbac
            .authorize(&res(&dev, "get", "", "configmaps", "", "dev", "other"))
            .is_allowed());
        // Collection requests have no name: resourceNames rules do not apply.
        assert!(!rbac
            .authorize(&res(&dev, "list", "", "configmaps", "", "dev", ""))
            .is_allowed());
    }

    #[test]
    fn subresources() {
        let rbac = policy();
        let alice = user("alice", &[]);
        assert!(rbac
            .authorize(&res(&alice, "get", "", "pods", "log", "dev", "p"))
            .is_allowed());
        assert!(!rbac
            .authorize(&res(&alice, "create", "", "pods", "exec", "dev", "p"))
            .is_allowed());
        assert!(!rbac
            .authorize(&res(&alice, "get", "", "pods", "exec", "dev", "p"))
            .is_allowed());
        let dev = user("bob", &["devs"]);
        assert!(rbac
            .authorize(&res(
                &dev,
                "update",
                "apps",
                "deployments",
                "scale",
                "dev",
                "d"
            ))
            .is_allowed());
        assert!(!rbac
            .authorize(&res(&dev, "update", "apps", "deployments", "", "dev", "d"))
            .is_allowed());
        assert!(!rbac
            .authorize(&res(
                &dev,
                "update",
                "apps",
                "deployments",
                "status",
                "dev",
                "d"
            ))
            .is_allowed());
    }

    #[test]
    fn non_resource_urls() {
        let rbac = policy();
        let anon = UserInfo::anonymous();
        let get = |p: &str| {
            rbac.authorize(&Attributes::non_resource(anon.clone(), "get", p))
                .is_allowed()
        };
        assert!(get("/healthz"));
        assert!(get("/healthz/etcd"));
        assert!(get("/version"));
        assert!(!get("/version/x"));
        assert!(!get("/api"));
        assert!(!rbac
            .authorize(&Attributes::non_resource(anon, "post", "/healthz"))
            .is_allowed());
    }

    #[test]
    fn missing_role_reason() {
        let rbac = policy();
        let dev = user("bob", &["devs"]);
        let d = rbac.authorize(&res(&dev, "delete", "", "secrets", "", "dev", "s"));
        assert_eq!(
            d,
            Decision::Deny(r#"RBAC: role.rbac.authorization.k8s.io "missing" not found"#.into())
        );
        let d = rbac.authorize(&res(&user("carol", &[]), "get", "", "pods", "", "dev", "p"));
        assert_eq!(d, Decision::Deny(String::new()));
    }

    #[test]
    fn aggregation() {
        let labelled = |name: &str, label: &str, rules: Value| json!({"kind": "ClusterRole", "metadata": {"name": name, "labels": {label: "true"}}, "rules": rules});
        let aggregated = |name: &str, label: &str, own_label: Option<&str>| {
            let labels = own_label.map(|l| json!({l: "true"})).unwrap_or(json!({}));
            json!({"kind": "ClusterRole", "metadata": {"name": name, "labels": labels},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]}})
        };
        let rbac = Rbac::from_objects(&[
            aggregated("view", "agg-view", Some("agg-edit")),
            aggregated("edit", "agg-edit", None),
            labelled(
                "view-pods",
                "agg-view",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
            ),
            labelled(
                "edit-pods",
                "agg-edit",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]),
            ),
            json!({"kind": "ClusterRole", "metadata": {"name": "expr"},
                   "aggregationRule": {"clusterRoleSelectors": [
                       {"matchExpressions": [{"key": "agg-edit", "operator": "Exists"}]}]}}),
            rb(
                "ns",
                "v",
                "ClusterRole",
                "view",
                json!([{"kind": "User", "name": "viewer"}]),
            ),
            rb(
                "ns",
                "e",
                "ClusterRole",
                "edit",
                json!([{"kind": "User", "name": "editor"}]),
            ),
            rb(
                "ns",
                "x",
                "ClusterRole",
                "expr",
                json!([{"kind": "User", "name": "expr"}]),
            ),
        ]);
        let ok = |u: &str, verb: &str| {
            rbac.authorize(&res(&user(u, &[]), verb, "", "pods", "", "ns", "p"))
                .is_allowed()
        };
        assert!(ok("viewer", "get"));
        assert!(!ok("viewer", "delete"));
        assert!(ok("editor", "get"), "edit aggregates view transitively");
        assert!(ok("editor", "delete"));
        assert!(ok("expr", "delete"));
        assert!(ok("expr", "get"), "view carries the agg-edit label");
    }

    #[test]
    fn rules_for_review() {
        let rbac = policy();
        let (res_rules, non_res) = rbac.rules_for(&user("bob", &["devs"]), "dev");
        assert_eq!(res_rules.len(), 2);
        assert_eq!(res_rules[0]["resourceNames"], json!(["app-config"]));
        assert!(non_res.is_empty());
        let (_, non_res) = rbac.rules_for(&UserInfo::anonymous(), "dev");
        assert_eq!(non_res[0]["nonResourceURLs"][0], "/healthz");
        let (res_rules, _) = rbac.rules_for(&user("root", &["system:masters"]), "");
        assert_eq!(res_rules[0]["verbs"], json!(["*"]));
    }

    #[test]
    fn forbidden_messages() {
        let u = sa("default", "x");
        assert_eq!(
            forbidden_message(&res(&u, "list", "", "pods", "", "default", ""), ""),
            r#"pods is forbidden: User "system:serviceaccount:default:x" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        assert_eq!(
            forbidden_message(&res(&u, "get", "", "pods", "log", "default", "web"), ""),
            r#"pods "web" is forbidden: User "system:serviceaccount:default:x" cannot get resource "pods/log" in API group "" in the namespace "default""#
        );
        assert_eq!(
            forbidden_message(
                &res(&u, "list", "apps", "deployments", "", "", ""),
                "RBAC: boom"
            ),
            r#"deployments.apps is forbidden: User "system:serviceaccount:default:x" cannot list resource "deployments" in API group "apps" at the cluster scope: RBAC: boom"#
        );
        assert_eq!(
            forbidden_message(
                &Attributes::non_resource(UserInfo::anonymous(), "get", "/metrics"),
                ""
            ),
            r#"forbidden: User "system:anonymous" cannot get path "/metrics""#
        );
    }

    #[test]
    fn keys() {
        assert_eq!(
            parse_key("/registry/rbac.authorization.k8s.io/rolebindings/ns/b"),
            Some((Kind::RoleBinding, "ns", "b"))
        );
        assert_eq!(
            parse_key("/registry/rbac.authorization.k8s.io/clusterroles/system:node"),
            Some((Kind::ClusterRole, "", "system:node"))
        );
        assert_eq!(parse_key("/registry/core/pods/ns/p"), None);
    }

    #[tokio::test]
    async fn follows_the_store() {
        use rkube_store::memory::MemoryStore;
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let put = |key: &str, v: Value| {
            let store = store.clone();
            let key = key.to_string();
            async move {
                store
                    .create(&key, serde_json::to_vec(&v).unwrap())
                    .await
                    .unwrap()
            }
        };
        put(
            "/registry/rbac.authorization.k8s.io/clusterroles/pod-reader",
            cluster_role(
                "pod-reader",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
            ),
        )
        .await;
        let rbac = Rbac::start(store.clone()).await.unwrap();
        let alice = user("alice", &[]);
        let get = res(&alice, "get", "", "pods", "", "dev", "p");
        assert!(!rbac.authorize(&get).is_allowed());

        let kv = put(
            "/registry/rbac.authorization.k8s.io/rolebindings/dev/r",
            rb(
                "dev",
                "r",
                "ClusterRole",
                "pod-reader",
                json!([{"kind": "User", "name": "alice"}]),
            ),
        )
        .await;
        tokio::time::timeout(
            Duration::from_secs(5),
            rbac.wait_for_revision(kv.mod_revision),
        )
        .await
        .unwrap();
        assert!(rbac.authorize(&get).is_allowed());

        let del = store
            .delete(
                "/registry/rbac.authorization.k8s.io/clusterroles/pod-reader",
                None,
            )
            .await
            .unwrap();
        tokio::time::timeout(
            Duration::from_secs(5),
            rbac.wait_for_revision(del.mod_revision),
        )
        .await
        .unwrap();
        assert_eq!(
            rbac.authorize(&get),
            Decision::Deny(
                r#"RBAC: clusterrole.rbac.authorization.k8s.io "pod-reader" not found"#.into()
            )
        );
    }
}
