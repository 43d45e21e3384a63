//! What the scheduler writes when a pod fits nowhere: the PodScheduled=False
//! condition (reason Unschedulable) and a core/v1 FailedScheduling event.
//!
//! Pure builders; repeated identical failures bump the event's count and
//! lastTimestamp instead of creating new events, as client-go's recorder does.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

/// Condition reason for pods that fit no node.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";
/// Event reason for a failed scheduling attempt.
pub const REASON_FAILED_SCHEDULING: &str = "FailedScheduling";

/// The strategic-merge patch for pods/status that records the failure, or
/// `None` when the pod already carries exactly this condition.
pub fn unschedulable_patch(pod: &Pod, message: &str, now: Timestamp) -> Option<Value> {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    if let Some(c) = current {
        if c.status == "False"
            && c.reason.as_deref() == Some(REASON_UNSCHEDULABLE)
            && c.message.as_deref() == Some(message)
        {
            return None;
        }
    }
    let transition = match current {
        Some(c) if c.status == "False" => c.last_transition_time.clone().unwrap_or(Time(now)),
        _ => Time(now),
    };
    Some(json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": REASON_UNSCHEDULABLE,
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    }]}}))
}

/// A reference to the pod for `involvedObject`.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// A new FailedScheduling event for `pod` (count 1).
pub fn failed_scheduling_event(pod: &Pod, message: &str, component: &str, now: Timestamp) -> Event {
    let name = format!(
        "{}.{:x}",
        pod.metadata.name.as_deref().unwrap_or("pod"),
        now.as_nanosecond()
    );
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: pod.metadata.namespace.clone(),
            ..Default::default()
        },
        involved_object: pod_reference(pod),
        reason: Some(REASON_FAILED_SCHEDULING.into()),
        message: Some(message.into()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        reporting_component: Some(component.into()),
        reporting_instance: Some(component.into()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        ..Default::default()
    }
}

/// The merge patch that records one more occurrence of an event.
pub fn event_repeat_patch(count: i32, now: Timestamp) -> Value {
    json!({"count": count, "lastTimestamp": Time(now)})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(conditions: Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": []}, "status": {"conditions": conditions}}),
        )
        .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn patch_sets_condition() {
        let now = ts("2025-01-01T00:00:00Z");
        let p = unschedulable_patch(&pod(json!([])), "0/1 nodes", now).unwrap();
        let c = &p["status"]["conditions"][0];
        assert_eq!(c["type"], "PodScheduled");
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "Unschedulable");
        assert_eq!(c["message"], "0/1 nodes");
        assert_eq!(c["lastTransitionTime"], "2025-01-01T00:00:00Z");
        assert!(c["lastProbeTime"].is_null());
    }

    #[test]
    fn same_condition_is_not_rewritten_and_transition_time_is_kept() {
        let now = ts("2025-01-01T00:05:00Z");
        let existing = pod(
            json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "old", "lastTransitionTime": "2025-01-01T00:00:00Z"}]),
        );
        assert!(unschedulable_patch(&existing, "old", now).is_none());
        let p = unschedulable_patch(&existing, "new", now).unwrap();
        assert_eq!(
            p["status"]["conditions"][0]["lastTransitionTime"],
            "2025-01-01T00:00:00Z"
        );
    }

    #[test]
    fn event_fields() {
        let now = ts("2025-01-01T00:00:00Z");
        let e = failed_scheduling_event(&pod(json!([])), "msg", "default-scheduler", now);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["metadata"]["namespace"], "default");
        assert!(v["metadata"]["name"].as_str().unwrap().starts_with("web."));
        assert_eq!(v["involvedObject"]["kind"], "Pod");
        assert_eq!(v["involvedObject"]["uid"], "u1");
        assert_eq!(v["reason"], "FailedScheduling");
        assert_eq!(v["type"], "Warning");
        assert_eq!(v["source"]["component"], "default-scheduler");
        assert_eq!(v["reportingComponent"], "default-scheduler");
        assert_eq!(v["count"], 1);
        assert_eq!(v["firstTimestamp"], "2025-01-01T00:00:00Z");
        assert_eq!(event_repeat_patch(3, now)["count"], 3);
    }
}
