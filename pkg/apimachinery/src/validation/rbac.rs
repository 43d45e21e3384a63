//! RBAC validation (pkg/apis/rbac/validation): policy rules of Roles and
//! ClusterRoles, role references and subjects of bindings.

use serde_json::Value;

use super::field::{arr, child, get, index, str_at, Errs};
use super::names::is_valid_path_segment_name;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Role (namespaced) or ClusterRole rules.
pub(crate) fn role(o: &Value, namespaced: bool, e: &mut Errs) {
    for (i, rule) in arr(o, &["rules"]).iter().enumerate() {
        let p = index("rules", i);
        if arr(rule, &["verbs"]).is_empty() {
            e.required(&child(&p, "verbs"), "verbs must contain at least one value");
        }
        let urls = arr(rule, &["nonResourceURLs"]);
        if !urls.is_empty() {
            if namespaced {
                e.invalid(
                    &child(&p, "nonResourceURLs"),
                    urls.to_vec(),
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            let resourceful = ["apiGroups", "resources", "resourceNames"]
                .iter()
                .any(|f| !arr(rule, &[f]).is_empty());
            if resourceful {
                e.invalid(
                    &child(&p, "nonResourceURLs"),
                    urls.to_vec(),
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if arr(rule, &["apiGroups"]).is_empty() {
            e.required(
                &child(&p, "apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if arr(rule, &["resources"]).is_empty() {
            e.required(
                &child(&p, "resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

/// RoleBinding or ClusterRoleBinding; `roleRef` is immutable on update.
pub(crate) fn binding(o: &Value, old: Option<&Value>, namespaced: bool, e: &mut Errs) {
    let group = str_at(o, &["roleRef", "apiGroup"]);
    if group != RBAC_GROUP {
        e.not_supported("roleRef.apiGroup", group, &[RBAC_GROUP]);
    }
    let kind = str_at(o, &["roleRef", "kind"]);
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        e.not_supported("roleRef.kind", kind, kinds);
    }
    let name = str_at(o, &["roleRef", "name"]);
    if name.is_empty() {
        e.required("roleRef.name", "");
    } else {
        e.each(
            "roleRef.name",
            name,
            is_valid_path_segment_name(name, false),
        );
    }
    for (i, s) in arr(o, &["subjects"]).iter().enumerate() {
        let p = index("subjects", i);
        let name = str_at(s, &["name"]);
        if name.is_empty() {
            e.required(&child(&p, "name"), "");
        }
        let (kind, group) = (str_at(s, &["kind"]), str_at(s, &["apiGroup"]));
        match kind {
            "ServiceAccount" => {
                if !group.is_empty() {
                    e.not_supported(&child(&p, "apiGroup"), group, &[""]);
                }
                if !namespaced && str_at(s, &["namespace"]).is_empty() {
                    e.required(&child(&p, "namespace"), "");
                }
            }
            "User" | "Group" => {
                if group != RBAC_GROUP {
                    e.not_supported(&child(&p, "apiGroup"), group, &[RBAC_GROUP]);
                }
            }
            other => e.not_supported(
                &child(&p, "kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            ),
        }
    }
    if let Some(old) = old {
        let (n, o) = (get(o, &["roleRef"]), get(old, &["roleRef"]));
        if n != o {
            e.invalid(
                "roleRef",
                n.cloned().unwrap_or(Value::Null),
                "cannot change roleRef",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_and_bindings() {
        let mut e = Errs::default();
        role(
            &json!({"rules": [{"apiGroups": [""], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]}),
            true,
            &mut e,
        );
        let got: Vec<(&str, &str)> =
            e.0.iter()
                .map(|c| (c.field.as_str(), c.message.as_str()))
                .collect();
        assert_eq!(
            got[0],
            (
                "rules[0].verbs",
                "Required value: verbs must contain at least one value"
            )
        );
        assert_eq!(got[1].0, "rules[1].nonResourceURLs");
        let b = json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}]});
        let mut e = Errs::default();
        binding(&b, None, false, &mut e);
        assert_eq!(e.0[0].field, "subjects[0].namespace");
        let mut b2 = b.clone();
        b2["roleRef"]["name"] = json!("edit");
        let mut e = Errs::default();
        binding(&b2, Some(&b), true, &mut e);
        assert_eq!(e.0[0].field, "roleRef");
    }
}
