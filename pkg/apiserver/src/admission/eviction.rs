//! The eviction subresource's PodDisruptionBudget check, as upstream's
//! pod eviction REST: a pod covered by a budget is evicted only when the
//! budget allows a disruption; the budget's status is then decremented and
//! the pod recorded in `disruptedPods` (compare-and-swap on the stored
//! budget), otherwise 429 TooManyRequests.

use rkube_apimachinery::selector::LabelSelector;
use serde_json::{json, Map, Value};

use crate::handlers::Ctx;
use crate::status::{ApiError, ApiResult};

/// Upstream's message for an eviction the budget refuses.
pub const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// Upstream limit on `disruptedPods` entries.
const MAX_DISRUPTED: usize = 2000;

fn too_many(retry_after: i64, cause: String) -> ApiError {
    let mut e = ApiError::new(429, "TooManyRequests", REFUSED);
    let mut d = json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]});
    if retry_after > 0 {
        d["retryAfterSeconds"] = json!(retry_after);
    }
    e.details = Some(d);
    e
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// Pods in these states are evicted without consulting budgets.
pub fn can_ignore_pdb(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed" | "Pending") | None
    ) || pod.pointer("/metadata/deletionTimestamp").is_some()
}

/// What the eviction does to a budget's status.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Refuse with 429 and this cause message and Retry-After.
    Refuse(i64, String),
    /// Refuse with 403 Forbidden and this message.
    Forbid(String),
    /// Allow without touching the budget (unhealthy pod).
    AllowUnchanged,
    /// Allow and write this status.
    Decrement(Value),
}

/// Upstream's checkAndDecrement on a budget `pdb` for `pod`.
pub fn decide(pdb: &Value, pod: &Value, now: &str) -> Decision {
    let name = pdb
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status = pdb.get("status").cloned().unwrap_or(json!({}));
    let int = |f: &str| status.get(f).and_then(Value::as_i64).unwrap_or(0);
    if int("observedGeneration") < generation {
        return Decision::Refuse(
            10,
            format!("The disruption budget {name} is still being processed by the server."),
        );
    }
    let (current, desired) = (int("currentHealthy"), int("desiredHealthy"));
    // An unready pod does not count as healthy: evicting it costs nothing.
    if !is_ready(pod) {
        let policy = pdb
            .pointer("/spec/unhealthyPodEvictionPolicy")
            .and_then(Value::as_str);
        if policy == Some("AlwaysAllow") || (current >= desired && desired > 0) {
            return Decision::AllowUnchanged;
        }
    }
    let allowed = int("disruptionsAllowed");
    if allowed < 0 {
        return Decision::Forbid("pdb disruptions allowed is negative".into());
    }
    let disrupted = status
        .get("disruptedPods")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if disrupted.len() > MAX_DISRUPTED {
        return Decision::Forbid(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller".into(),
        );
    }
    if allowed == 0 {
        return Decision::Refuse(
            0,
            format!("The disruption budget {name} needs {desired} healthy pods and has {current} currently"),
        );
    }
    let mut new = status;
    new["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        set_insufficient(&mut new, now);
    }
    let mut dp: Map<String, Value> = disrupted;
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    dp.insert(pod_name.to_string(), json!(now));
    new["disruptedPods"] = Value::Object(dp);
    Decision::Decrement(new)
}

fn set_insufficient(status: &mut Value, now: &str) {
    let conds = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut since = json!(now);
    let mut out = Vec::new();
    for c in conds {
        if c.get("type").and_then(Value::as_str) != Some("DisruptionAllowed") {
            out.push(c);
        } else if c.get("status").and_then(Value::as_str) == Some("False") {
            since = c.get("lastTransitionTime").cloned().unwrap_or(since);
        }
    }
    out.push(
        json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
        "message": "", "lastTransitionTime": since}),
    );
    status["conditions"] = Value::Array(out);
}

/// Checks the budgets covering `pod` before it is evicted; on success the
/// matching budget (if any) has been decremented (not on a dry run).
pub async fn admit(ctx: &Ctx, pod: &Value, dry_run: bool) -> ApiResult<()> {
    if can_ignore_pdb(pod) {
        return Ok(());
    }
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let labels = pod
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let prefix = format!("/registry/policy/poddisruptionbudgets/{ns}/");
    for _attempt in 0..5 {
        let list = ctx.state.store.list(&prefix, None, 0).await?;
        let mut matching = Vec::new();
        for kv in list.items {
            let Ok(pdb) = serde_json::from_slice::<Value>(&kv.value) else {
                continue;
            };
            let sel = pdb
                .pointer("/spec/selector")
                .cloned()
                .unwrap_or(Value::Null);
            let Ok(sel) = LabelSelector::from_json(&sel) else {
                continue;
            };
            if sel.matches(&labels) {
                matching.push((kv, pdb));
            }
        }
        let (kv, pdb) = match matching.len() {
            0 => return Ok(()),
            1 => matching.remove(0),
            _ => {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ))
            }
        };
        let now = crate::objects::now();
        match decide(&pdb, pod, &now) {
            Decision::AllowUnchanged => return Ok(()),
            Decision::Refuse(retry, cause) => return Err(too_many(retry, cause)),
            Decision::Forbid(msg) => {
                let name = pdb
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let mut e = ApiError::forbidden(format!(
                    "poddisruptionbudgets.policy \"{name}\" is forbidden: {msg}"
                ));
                e.details =
                    Some(json!({"name": name, "group": "policy", "kind": "poddisruptionbudgets"}));
                return Err(e);
            }
            Decision::Decrement(status) => {
                if dry_run {
                    return Ok(());
                }
                let mut new = pdb.clone();
                new["status"] = status;
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                let bytes = serde_json::to_vec(&new).map_err(ApiError::internal)?;
                match ctx
                    .state
                    .store
                    .update(&kv.key, bytes, Some(kv.mod_revision))
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(rkube_store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Err(ApiError::new(
        409,
        "Conflict",
        "Operation cannot be fulfilled on poddisruptionbudgets.policy: the object has been modified; please apply your changes to the latest version and try again",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(gen: i64, observed: i64, allowed: i64, cur: i64, des: i64) -> Value {
        json!({"metadata": {"name": "b", "generation": gen},
            "status": {"observedGeneration": observed, "disruptionsAllowed": allowed,
                "currentHealthy": cur, "desiredHealthy": des}})
    }

    fn pod(ready: bool) -> Value {
        json!({"metadata": {"name": "p"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[test]
    fn decisions() {
        assert_eq!(
            decide(&pdb(2, 1, 1, 2, 1), &pod(true), "t"),
            Decision::Refuse(
                10,
                "The disruption budget b is still being processed by the server.".into()
            )
        );
        assert_eq!(
            decide(&pdb(1, 1, 0, 1, 1), &pod(true), "t"),
            Decision::Refuse(
                0,
                "The disruption budget b needs 1 healthy pods and has 1 currently".into()
            )
        );
        let Decision::Decrement(s) = decide(&pdb(1, 1, 1, 2, 1), &pod(true), "t") else {
            panic!("expected decrement");
        };
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["disruptedPods"]["p"], "t");
        assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
        assert_eq!(
            decide(&pdb(1, 1, 0, 2, 2), &pod(false), "t"),
            Decision::AllowUnchanged
        );
        assert!(can_ignore_pdb(&json!({"status": {"phase": "Pending"}})));
        assert!(!can_ignore_pdb(&pod(true)));
    }
}
