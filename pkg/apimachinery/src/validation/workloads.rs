//! Workload validation (pkg/apis/apps and batch validation): selectors that
//! must match the template's labels, replica counts, update strategies, the
//! template's pod spec, and the fields that are immutable on update.

use serde_json::Value;

use super::field::{
    child, get, normalized, obj, selector_is_empty, selector_matches, str_at, Errs,
};
use super::meta::label_selector;
use super::pod::pod_template;

/// The kinds handled here.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
}

impl Workload {
    fn empty_selector_msg(self) -> &'static str {
        match self {
            Workload::Deployment | Workload::ReplicaSet => {
                "empty selector is invalid for deployment."
            }
            Workload::StatefulSet => "empty selector is invalid for statefulset",
            Workload::DaemonSet => "empty selector is invalid for daemonset",
        }
    }
}

/// The selector checks shared by apps workloads and Jobs.
fn selector_and_template(spec: &Value, empty_msg: &str, e: &mut Errs) {
    match get(spec, &["selector"]) {
        None => e.required("spec.selector", ""),
        Some(sel) => {
            label_selector(sel, "spec.selector", e);
            if selector_is_empty(sel) {
                e.invalid("spec.selector", sel.clone(), empty_msg);
            } else if !selector_matches(sel, obj(spec, &["template", "metadata", "labels"])) {
                let labels = get(spec, &["template", "metadata", "labels"])
                    .cloned()
                    .unwrap_or(Value::Null);
                e.invalid(
                    "spec.template.metadata.labels",
                    labels,
                    "`selector` does not match template `labels`",
                );
            }
        }
    }
    pod_template(get(spec, &["template"]), "spec.template", e);
}

/// A StatefulSet spec whose template also lists each volumeClaimTemplate
/// as a volume (the controller adds them as persistentVolumeClaim volumes).
fn with_claim_volumes(spec: &Value) -> Value {
    let mut spec = spec.clone();
    let claims: Vec<Value> = get(&spec, &["volumeClaimTemplates"])
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.pointer("/metadata/name").cloned())
                .map(|n| serde_json::json!({"name": n, "persistentVolumeClaim": {"claimName": n}}))
                .collect()
        })
        .unwrap_or_default();
    if claims.is_empty() {
        return spec;
    }
    if let Some(pod) = spec
        .pointer_mut("/template/spec")
        .and_then(Value::as_object_mut)
    {
        let vols = pod
            .entry("volumes")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(vols) = vols.as_array_mut() {
            for c in claims {
                if !vols.iter().any(|v| v.get("name") == c.get("name")) {
                    vols.push(c);
                }
            }
        }
    }
    spec
}

fn restart_always(spec: &Value, e: &mut Errs) {
    let rp = str_at(spec, &["template", "spec", "restartPolicy"]);
    if !rp.is_empty() && rp != "Always" {
        e.not_supported("spec.template.spec.restartPolicy", rp, &["Always"]);
    }
}

/// Validates an int-or-percent rolling-update bound.
fn int_or_percent(v: Option<&Value>, p: &str, e: &mut Errs) -> Option<f64> {
    match v? {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(0);
            if n < 0 {
                e.invalid(p, n, "must be greater than or equal to 0");
            }
            Some(n as f64)
        }
        Value::String(s) => match s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) {
            Some(n) if n < 0 => {
                e.invalid(p, s.as_str(), "must be greater than or equal to 0");
                None
            }
            Some(n) if n > 100 => {
                e.invalid(p, s.as_str(), "must not be greater than 100%");
                None
            }
            Some(n) => Some(n as f64),
            None => {
                e.invalid(p, s.as_str(), "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')");
                None
            }
        },
        other => {
            e.invalid(
                p,
                other.clone(),
                "must be an integer or percentage (e.g '5%')",
            );
            None
        }
    }
}

fn rolling_update(ru: Option<&Value>, p: &str, e: &mut Errs) {
    let Some(ru) = ru else { return };
    let unavailable = int_or_percent(get(ru, &["maxUnavailable"]), &child(p, "maxUnavailable"), e);
    let surge = int_or_percent(get(ru, &["maxSurge"]), &child(p, "maxSurge"), e);
    if unavailable == Some(0.0) && surge == Some(0.0) {
        e.invalid(
            &child(p, "maxUnavailable"),
            get(ru, &["maxUnavailable"]).cloned().unwrap_or(Value::Null),
            "may not be 0 when `maxSurge` is 0",
        );
    }
}

/// Deployment, ReplicaSet, StatefulSet and DaemonSet specs (create and update).
pub(crate) fn workload(kind: Workload, o: &Value, old: Option<&Value>, e: &mut Errs) {
    let spec = get(o, &["spec"]).unwrap_or(&Value::Null);
    if kind != Workload::DaemonSet {
        e.nonnegative("spec.replicas", get(spec, &["replicas"]));
    }
    e.nonnegative("spec.minReadySeconds", get(spec, &["minReadySeconds"]));
    e.nonnegative(
        "spec.revisionHistoryLimit",
        get(spec, &["revisionHistoryLimit"]),
    );
    if kind == Workload::StatefulSet {
        // Containers may mount the claims of volumeClaimTemplates by name.
        selector_and_template(&with_claim_volumes(spec), kind.empty_selector_msg(), e);
    } else {
        selector_and_template(spec, kind.empty_selector_msg(), e);
    }
    restart_always(spec, e);
    if let Some(ads) = get(spec, &["template", "spec", "activeDeadlineSeconds"]) {
        let p = "spec.template.spec.activeDeadlineSeconds";
        match kind {
            Workload::DaemonSet => e.invalid(
                p,
                ads.clone(),
                "activeDeadlineSeconds must be nil for DaemonSet",
            ),
            Workload::StatefulSet => {
                e.forbidden(p, "activeDeadlineSeconds in StatefulSet is not Supported")
            }
            _ => e.forbidden(p, "activeDeadlineSeconds in ReplicaSet is not Supported"),
        }
    }
    match kind {
        Workload::Deployment => {
            let ty = str_at(spec, &["strategy", "type"]);
            match ty {
                "Recreate" if get(spec, &["strategy", "rollingUpdate"]).is_some() => e.forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ),
                "Recreate" | "" => {}
                "RollingUpdate" => rolling_update(
                    get(spec, &["strategy", "rollingUpdate"]),
                    "spec.strategy.rollingUpdate",
                    e,
                ),
                other => {
                    e.not_supported("spec.strategy.type", other, &["Recreate", "RollingUpdate"])
                }
            }
            e.nonnegative(
                "spec.progressDeadlineSeconds",
                get(spec, &["progressDeadlineSeconds"]),
            );
        }
        Workload::StatefulSet => {
            let pmp = str_at(spec, &["podManagementPolicy"]);
            if !matches!(pmp, "" | "OrderedReady" | "Parallel") {
                e.not_supported(
                    "spec.podManagementPolicy",
                    pmp,
                    &["OrderedReady", "Parallel"],
                );
            }
            let ty = str_at(spec, &["updateStrategy", "type"]);
            if !matches!(ty, "" | "RollingUpdate" | "OnDelete") {
                e.not_supported(
                    "spec.updateStrategy.type",
                    ty,
                    &["OnDelete", "RollingUpdate"],
                );
            }
            e.nonnegative(
                "spec.updateStrategy.rollingUpdate.partition",
                get(spec, &["updateStrategy", "rollingUpdate", "partition"]),
            );
            for f in ["whenDeleted", "whenScaled"] {
                let v = str_at(spec, &["persistentVolumeClaimRetentionPolicy", f]);
                if !matches!(v, "" | "Retain" | "Delete") {
                    e.not_supported(
                        &format!("spec.persistentVolumeClaimRetentionPolicy.{f}"),
                        v,
                        &["Retain", "Delete"],
                    );
                }
            }
        }
        Workload::DaemonSet => {
            let ty = str_at(spec, &["updateStrategy", "type"]);
            match ty {
                "" | "OnDelete" => {}
                "RollingUpdate" => rolling_update(
                    get(spec, &["updateStrategy", "rollingUpdate"]),
                    "spec.updateStrategy.rollingUpdate",
                    e,
                ),
                other => e.not_supported(
                    "spec.updateStrategy.type",
                    other,
                    &["OnDelete", "RollingUpdate"],
                ),
            }
        }
        Workload::ReplicaSet => {}
    }
    let Some(old) = old else { return };
    e.immutable(
        "spec.selector",
        get(o, &["spec", "selector"]),
        get(old, &["spec", "selector"]),
    );
    if kind == Workload::StatefulSet {
        let strip = |v: &Value| {
            let mut s = normalized(get(v, &["spec"]).unwrap_or(&Value::Null));
            if let Some(m) = s.as_object_mut() {
                for f in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "revisionHistoryLimit",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    m.remove(f);
                }
            }
            s
        };
        if strip(o) != strip(old) {
            e.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden");
        }
    }
}

/// ReplicationController (a map selector, defaulted from the template labels).
pub(crate) fn replication_controller(o: &Value, e: &mut Errs) {
    let spec = get(o, &["spec"]).unwrap_or(&Value::Null);
    e.nonnegative("spec.replicas", get(spec, &["replicas"]));
    let selector = obj(spec, &["selector"]).filter(|m| !m.is_empty());
    match selector {
        None => e.required("spec.selector", ""),
        Some(sel) => {
            let labels = obj(spec, &["template", "metadata", "labels"]);
            let matches = sel
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
            if get(spec, &["template"]).is_some() && !matches {
                let l = get(spec, &["template", "metadata", "labels"])
                    .cloned()
                    .unwrap_or(Value::Null);
                e.invalid(
                    "spec.template.metadata.labels",
                    l,
                    "selector does not match labels in spec.template",
                );
            }
        }
    }
    pod_template(get(spec, &["template"]), "spec.template", e);
    restart_always(spec, e);
}

/// Job spec, and on update the immutable selector and template.
pub(crate) fn job(o: &Value, old: Option<&Value>, e: &mut Errs) {
    let spec = get(o, &["spec"]).unwrap_or(&Value::Null);
    job_spec(spec, "spec", e);
    if let Some(old) = old {
        let os = get(old, &["spec"]).unwrap_or(&Value::Null);
        e.immutable(
            "spec.selector",
            get(spec, &["selector"]),
            get(os, &["selector"]),
        );
        e.immutable(
            "spec.completionMode",
            get(spec, &["completionMode"]),
            get(os, &["completionMode"]),
        );
        let suspended = get(os, &["suspend"]).and_then(Value::as_bool) == Some(true);
        if !suspended {
            e.immutable(
                "spec.template",
                get(spec, &["template"]),
                get(os, &["template"]),
            );
        }
        if str_at(spec, &["completionMode"]) != "Indexed" {
            e.immutable(
                "spec.completions",
                get(spec, &["completions"]),
                get(os, &["completions"]),
            );
        }
    }
}

fn job_spec(spec: &Value, p: &str, e: &mut Errs) {
    for f in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        e.nonnegative(&child(p, f), get(spec, &[f]));
    }
    let mode = str_at(spec, &["completionMode"]);
    if !matches!(mode, "" | "NonIndexed" | "Indexed") {
        e.not_supported(
            &child(p, "completionMode"),
            mode,
            &["NonIndexed", "Indexed"],
        );
    }
    if mode == "Indexed" && get(spec, &["completions"]).is_none() {
        e.required(&child(p, "completions"), "when completion mode is Indexed");
    }
    let rp = str_at(spec, &["template", "spec", "restartPolicy"]);
    if !matches!(rp, "" | "OnFailure" | "Never") {
        e.not_supported(
            &format!("{p}.template.spec.restartPolicy"),
            rp,
            &["OnFailure", "Never"],
        );
    }
    let tpl = get(spec, &["template"]);
    if p == "spec" {
        match get(spec, &["selector"]) {
            None => e.required("spec.selector", ""),
            Some(sel) => {
                label_selector(sel, "spec.selector", e);
                if !selector_matches(sel, obj(spec, &["template", "metadata", "labels"])) {
                    let l = get(spec, &["template", "metadata", "labels"])
                        .cloned()
                        .unwrap_or(Value::Null);
                    e.invalid(
                        "spec.template.metadata.labels",
                        l,
                        "`selector` does not match template `labels`",
                    );
                }
            }
        }
    }
    pod_template(tpl, &child(p, "template"), e);
}

/// CronJob: schedule, policies, name length, and the job template.
pub(crate) fn cron_job(o: &Value, e: &mut Errs) {
    let name = str_at(o, &["metadata", "name"]);
    if name.len() > 52 {
        e.invalid("metadata.name", name, "must be no more than 52 characters");
    }
    let spec = get(o, &["spec"]).unwrap_or(&Value::Null);
    let schedule = str_at(spec, &["schedule"]);
    if schedule.is_empty() {
        e.required("spec.schedule", "");
    } else if !valid_cron(schedule) {
        e.invalid("spec.schedule", schedule, "unparseable cron expression");
    }
    let cp = str_at(spec, &["concurrencyPolicy"]);
    if !matches!(cp, "" | "Allow" | "Forbid" | "Replace") {
        e.not_supported(
            "spec.concurrencyPolicy",
            cp,
            &["Allow", "Forbid", "Replace"],
        );
    }
    for f in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        e.nonnegative(&format!("spec.{f}"), get(spec, &[f]));
    }
    match get(spec, &["jobTemplate", "spec"]) {
        Some(js) => job_spec(js, "spec.jobTemplate.spec", e),
        None => e.required("spec.jobTemplate.spec", ""),
    }
}

/// Five whitespace-separated fields of `[0-9*/,-]` or names, or a `@macro`.
fn valid_cron(s: &str) -> bool {
    let s = s.trim();
    let s = match s.strip_prefix("TZ=").or_else(|| s.strip_prefix("CRON_TZ=")) {
        Some(rest) => return rest.split_once(' ').is_some_and(|(_, r)| valid_cron(r)),
        None => s,
    };
    if let Some(m) = s.strip_prefix('@') {
        return matches!(
            m,
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly"
        ) || m.starts_with("every ");
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    fields.len() == 5
        && fields.iter().all(|f| {
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '/' | ',' | '-' | '?'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(sel: &str, label: &str) -> Value {
        json!({"spec": {"replicas": 2, "selector": {"matchLabels": {"app": sel}},
            "template": {"metadata": {"labels": {"app": label}},
                "spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "nginx"}]}}}})
    }

    #[test]
    fn selector_must_match_template() {
        let mut e = Errs::default();
        workload(Workload::Deployment, &deploy("web", "web"), None, &mut e);
        assert!(e.0.is_empty());
        workload(Workload::Deployment, &deploy("web", "api"), None, &mut e);
        assert_eq!(e.0[0].field, "spec.template.metadata.labels");
        assert_eq!(
            e.0[0].message,
            "Invalid value: {\"app\":\"api\"}: `selector` does not match template `labels`"
        );
    }

    #[test]
    fn selector_is_immutable() {
        let mut e = Errs::default();
        workload(
            Workload::ReplicaSet,
            &deploy("web", "web"),
            Some(&deploy("web", "web")),
            &mut e,
        );
        assert!(e.0.is_empty());
        workload(
            Workload::ReplicaSet,
            &deploy("v2", "v2"),
            Some(&deploy("web", "web")),
            &mut e,
        );
        assert_eq!(e.0[0].field, "spec.selector");
        assert_eq!(
            e.0[0].message,
            "Invalid value: {\"matchLabels\":{\"app\":\"v2\"}}: field is immutable"
        );
    }

    #[test]
    fn statefulset_forbidden_update() {
        let mut old = deploy("db", "db");
        old["spec"]["serviceName"] = json!("db");
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(5);
        let mut e = Errs::default();
        workload(Workload::StatefulSet, &new, Some(&old), &mut e);
        assert!(e.0.is_empty());
        new["spec"]["serviceName"] = json!("other");
        workload(Workload::StatefulSet, &new, Some(&old), &mut e);
        assert_eq!(e.0[0].field, "spec");
    }

    #[test]
    fn statefulset_containers_may_mount_claim_templates() {
        let mut s = deploy("db", "db");
        s["spec"]["serviceName"] = json!("db");
        s["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/data"}]);
        let mut e = Errs::default();
        workload(Workload::StatefulSet, &s, None, &mut e);
        assert_eq!(
            e.0.len(),
            1,
            "without a claim template the mount is unknown"
        );
        s["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]);
        let mut e = Errs::default();
        workload(Workload::StatefulSet, &s, None, &mut e);
        assert!(e.0.is_empty(), "{:?}", e.0);
    }

    #[test]
    fn job_restart_policy_and_cron() {
        let mut j = deploy("x", "x");
        let mut e = Errs::default();
        job(&j, None, &mut e);
        assert_eq!(
            e.0[0].message,
            "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        );
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": j["spec"].clone()}}});
        let mut e = Errs::default();
        cron_job(&cj, &mut e);
        assert!(e.0.is_empty(), "{:?}", e.0);
        assert!(!valid_cron("* * *"));
        assert!(valid_cron("@hourly"));
    }
}
