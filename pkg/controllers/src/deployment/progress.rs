//! Deployment status and conditions without I/O, as upstream's
//! deployment/progress.go and sync.go: the counts, the Available condition
//! (MinimumReplicasAvailable / MinimumReplicasUnavailable), the Progressing
//! condition (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated,
//! NewReplicaSetAvailable, ProgressDeadlineExceeded, DeploymentPaused,
//! DeploymentResumed), and when to look again for a stuck rollout.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::util::{self, RsState};

/// Progressing reason: a new ReplicaSet was created.
pub const NEW_RS_REASON: &str = "NewReplicaSetCreated";
/// Progressing reason: the new ReplicaSet already existed.
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
/// Progressing reason: the rollout moved.
pub const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
/// Progressing reason: the rollout finished.
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
/// Progressing reason: no progress within progressDeadlineSeconds.
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
/// Progressing reason: paused.
pub const PAUSED_REASON: &str = "DeploymentPaused";
/// Progressing reason: resumed.
pub const RESUMED_REASON: &str = "DeploymentResumed";
/// Progressing reason: creating the new ReplicaSet failed.
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
/// Available reason when enough replicas are available.
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
/// Available reason when not.
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// `now` truncated to seconds (what the API server keeps).
pub fn now_seconds(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// A condition with both times at `now`.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now_seconds(now)),
        last_transition_time: Some(now_seconds(now)),
    }
}

/// The condition of `type_`.
pub fn get_condition<'a>(st: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    st.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Removes the condition of `type_`.
pub fn remove_condition(st: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = st.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
}

/// Sets `c` unless a condition with the same status and reason exists;
/// keeps the transition time when only the reason changes.
pub fn set_condition(st: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(st, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(st, &c.type_);
    st.conditions.get_or_insert_with(Vec::new).push(c);
}

/// Every count set (zero when unset) and empty conditions as unset, so that
/// a status read back from the API server compares equal to a computed one.
pub fn normalize(st: &DeploymentStatus) -> DeploymentStatus {
    let mut s = st.clone();
    s.replicas = Some(s.replicas.unwrap_or(0));
    s.updated_replicas = Some(s.updated_replicas.unwrap_or(0));
    s.ready_replicas = Some(s.ready_replicas.unwrap_or(0));
    s.available_replicas = Some(s.available_replicas.unwrap_or(0));
    s.unavailable_replicas = Some(s.unavailable_replicas.unwrap_or(0));
    s.observed_generation = Some(s.observed_generation.unwrap_or(0));
    if s.conditions.as_ref().is_some_and(Vec::is_empty) {
        s.conditions = None;
    }
    s
}

/// Counts and the Available condition (calculateStatus); other conditions
/// are carried over from the current status.
pub fn calculate_status(
    d: &Deployment,
    all: &[RsState],
    new: Option<&RsState>,
    now: Timestamp,
) -> DeploymentStatus {
    let cur = d.status.clone().unwrap_or_default();
    let available: i32 = all.iter().map(|r| r.available).sum();
    let total: i32 = all.iter().map(|r| r.replicas).sum();
    let mut st = DeploymentStatus {
        observed_generation: Some(d.metadata.generation.unwrap_or(0)),
        replicas: Some(all.iter().map(|r| r.status_replicas).sum()),
        updated_replicas: Some(new.map(|n| n.status_replicas).unwrap_or(0)),
        ready_replicas: Some(all.iter().map(|r| r.ready).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: cur.collision_count,
        conditions: cur.conditions.clone(),
        terminating_replicas: cur.terminating_replicas,
    };
    if available >= util::replicas(d) - util::max_unavailable(d) {
        set_condition(
            &mut st,
            condition(
                "Available",
                "True",
                MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut st,
            condition(
                "Available",
                "False",
                MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    normalize(&st)
}

/// All replicas updated, present, available, and the generation observed.
pub fn deployment_complete(d: &Deployment, st: &DeploymentStatus) -> bool {
    let r = util::replicas(d);
    st.updated_replicas.unwrap_or(0) == r
        && st.replicas.unwrap_or(0) == r
        && st.available_replicas.unwrap_or(0) == r
        && st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// The new status shows progress over the Deployment's current one.
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let o = |v: Option<i32>| v.unwrap_or(0);
    let old_old = o(old.replicas) - o(old.updated_replicas);
    let new_old = o(new.replicas) - o(new.updated_replicas);
    o(new.updated_replicas) > o(old.updated_replicas)
        || new_old < old_old
        || o(new.ready_replicas) > o(old.ready_replicas)
        || o(new.available_replicas) > o(old.available_replicas)
}

/// The Progressing condition was last updated longer than the progress
/// deadline ago.
pub fn deployment_timed_out(d: &Deployment, st: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = util::progress_deadline(d) else {
        return false;
    };
    let Some(c) = get_condition(st, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => return false,
        Some(TIMED_OUT_REASON) => return true,
        _ => {}
    }
    let from = c
        .last_update_time
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    from + i64::from(deadline) < now.as_second()
}

/// The status syncRolloutStatus writes: counts, Available, Progressing
/// (when a deadline is set) and the ReplicaFailure of the ReplicaSets.
pub fn rollout_status(
    d: &Deployment,
    all: &[RsState],
    new: Option<&RsState>,
    replica_failure: Option<DeploymentCondition>,
    now: Timestamp,
) -> DeploymentStatus {
    let mut st = calculate_status(d, all, new, now);
    let name = d.metadata.name.clone().unwrap_or_default();
    if util::progress_deadline(d).is_none() {
        remove_condition(&mut st, "Progressing");
    }
    let cur_status = d.status.clone().unwrap_or_default();
    let current = get_condition(&cur_status, "Progressing");
    let complete_already = st.replicas == st.updated_replicas
        && current.is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE_REASON));
    if util::progress_deadline(d).is_some() && !complete_already {
        if deployment_complete(d, &st) {
            let msg = match new {
                Some(n) => format!("ReplicaSet \"{}\" has successfully progressed.", n.name),
                None => format!("Deployment \"{name}\" has successfully progressed."),
            };
            set_condition(
                &mut st,
                condition("Progressing", "True", NEW_RS_AVAILABLE_REASON, msg, now),
            );
        } else if deployment_progressing(d, &st) {
            let msg = match new {
                Some(n) => format!("ReplicaSet \"{}\" is progressing.", n.name),
                None => format!("Deployment \"{name}\" is progressing."),
            };
            let mut c = condition("Progressing", "True", RS_UPDATED_REASON, msg, now);
            if let Some(cur) = current {
                if cur.status == "True" {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut st, "Progressing");
            }
            set_condition(&mut st, c);
        } else if deployment_timed_out(d, &st, now) {
            let msg = match new {
                Some(n) => format!("ReplicaSet \"{}\" has timed out progressing.", n.name),
                None => format!("Deployment \"{name}\" has timed out progressing."),
            };
            set_condition(
                &mut st,
                condition("Progressing", "False", TIMED_OUT_REASON, msg, now),
            );
        }
    }
    match replica_failure {
        Some(c) => set_condition(&mut st, c),
        None => remove_condition(&mut st, "ReplicaFailure"),
    }
    normalize(&st)
}

/// When to sync again to notice a missed progress deadline
/// (requeueStuckDeployment).
pub fn requeue_after(d: &Deployment, st: &DeploymentStatus, now: Timestamp) -> Option<Duration> {
    let deadline = util::progress_deadline(d)?;
    let c = get_condition(st, "Progressing")?;
    if deployment_complete(d, st) || c.reason.as_deref() == Some(TIMED_OUT_REASON) {
        return None;
    }
    let from = c.last_update_time.as_ref()?.0.as_second();
    let after = from + i64::from(deadline) - now.as_second();
    if after < 1 {
        Some(Duration::from_millis(100))
    } else {
        Some(Duration::from_secs(u64::try_from(after).unwrap_or(0) + 1))
    }
}

/// The status with the paused/resumed Progressing condition, when it must
/// change (checkPausedConditions); a timed-out condition is kept.
pub fn paused_condition(d: &Deployment, now: Timestamp) -> Option<DeploymentStatus> {
    let mut st = d.status.clone().unwrap_or_default();
    let cur = get_condition(&st, "Progressing");
    if cur.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT_REASON)) {
        return None;
    }
    let paused_cond = cur.is_some_and(|c| c.reason.as_deref() == Some(PAUSED_REASON));
    let paused = util::paused(d);
    if paused && !paused_cond {
        set_condition(
            &mut st,
            condition(
                "Progressing",
                "Unknown",
                PAUSED_REASON,
                "Deployment is paused".into(),
                now,
            ),
        );
    } else if !paused && paused_cond {
        set_condition(
            &mut st,
            condition(
                "Progressing",
                "Unknown",
                RESUMED_REASON,
                "Deployment is resumed".into(),
                now,
            ),
        );
    } else {
        return None;
    }
    Some(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::util::{self, tests::deploy};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn rs(name: &str, replicas: i32, available: i32) -> RsState {
        RsState {
            created: None,
            ..util::tests::rs(name, replicas, available, 1)
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn reason(st: &DeploymentStatus, type_: &str) -> Option<String> {
        get_condition(st, type_).and_then(|c| c.reason.clone())
    }

    #[test]
    fn available_condition_follows_max_unavailable() {
        let d = deploy(4, IntOrString::Int(1), IntOrString::Int(1));
        let st = calculate_status(&d, &[rs("a", 4, 3)], Some(&rs("a", 4, 3)), t(0));
        assert_eq!(reason(&st, "Available").as_deref(), Some(MIN_AVAILABLE));
        assert_eq!(st.unavailable_replicas, Some(1));
        let st = calculate_status(&d, &[rs("a", 4, 2)], Some(&rs("a", 4, 2)), t(0));
        assert_eq!(reason(&st, "Available").as_deref(), Some(MIN_UNAVAILABLE));
    }

    #[test]
    fn progressing_transitions() {
        let mut d = deploy(2, IntOrString::Int(1), IntOrString::Int(0));
        let mut cur = DeploymentStatus::default();
        set_condition(
            &mut cur,
            condition(
                "Progressing",
                "True",
                NEW_RS_REASON,
                "Created new replica set \"web-x\"".into(),
                t(0),
            ),
        );
        d.status = Some(cur);
        // A new pod became available: ReplicaSetUpdated, transition time kept.
        let new = rs("web-x", 2, 1);
        let st = rollout_status(&d, std::slice::from_ref(&new), Some(&new), None, t(10));
        let c = get_condition(&st, "Progressing").cloned().expect("cond");
        assert_eq!(c.reason.as_deref(), Some(RS_UPDATED_REASON));
        assert_eq!(c.last_transition_time, Some(now_seconds(t(0))));
        assert_eq!(c.last_update_time, Some(now_seconds(t(10))));
        // Done: NewReplicaSetAvailable.
        d.status = Some(st);
        let new = rs("web-x", 2, 2);
        let st = rollout_status(&d, std::slice::from_ref(&new), Some(&new), None, t(20));
        assert_eq!(
            reason(&st, "Progressing").as_deref(),
            Some(NEW_RS_AVAILABLE_REASON)
        );
        assert_eq!(
            get_condition(&st, "Progressing")
                .and_then(|c| c.message.clone())
                .as_deref(),
            Some("ReplicaSet \"web-x\" has successfully progressed.")
        );
        assert_eq!(requeue_after(&d, &st, t(20)), None);
    }

    #[test]
    fn deadline_exceeded_and_requeue() {
        let mut d = deploy(2, IntOrString::Int(1), IntOrString::Int(0));
        if let Some(s) = d.spec.as_mut() {
            s.progress_deadline_seconds = Some(30);
        }
        let mut cur = DeploymentStatus::default();
        set_condition(
            &mut cur,
            condition("Progressing", "True", RS_UPDATED_REASON, "x".into(), t(0)),
        );
        cur.replicas = Some(3);
        cur.updated_replicas = Some(1);
        cur.ready_replicas = Some(2);
        cur.available_replicas = Some(2);
        d.status = Some(cur.clone());
        let stuck = [rs("old", 2, 2), rs("new", 1, 0)];
        // No progress yet, before the deadline: requeue at the deadline.
        let st = rollout_status(&d, &stuck, Some(&stuck[1]), None, t(10));
        assert_eq!(
            reason(&st, "Progressing").as_deref(),
            Some(RS_UPDATED_REASON)
        );
        assert_eq!(requeue_after(&d, &st, t(10)), Some(Duration::from_secs(21)));
        // After the deadline.
        let st = rollout_status(&d, &stuck, Some(&stuck[1]), None, t(31));
        let c = get_condition(&st, "Progressing").cloned().expect("cond");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some(TIMED_OUT_REASON))
        );
        assert_eq!(
            c.message.as_deref(),
            Some("ReplicaSet \"new\" has timed out progressing.")
        );
    }

    #[test]
    fn no_deadline_removes_progressing() {
        let mut d = deploy(1, IntOrString::Int(1), IntOrString::Int(0));
        if let Some(s) = d.spec.as_mut() {
            s.progress_deadline_seconds = None;
        }
        let mut cur = DeploymentStatus::default();
        set_condition(
            &mut cur,
            condition("Progressing", "True", NEW_RS_REASON, "x".into(), t(0)),
        );
        d.status = Some(cur);
        let st = rollout_status(&d, &[rs("a", 1, 1)], None, None, t(5));
        assert!(get_condition(&st, "Progressing").is_none());
    }

    #[test]
    fn pause_and_resume_conditions() {
        let mut d = deploy(1, IntOrString::Int(1), IntOrString::Int(0));
        assert!(paused_condition(&d, t(0)).is_none());
        if let Some(s) = d.spec.as_mut() {
            s.paused = Some(true);
        }
        let st = paused_condition(&d, t(0)).expect("paused");
        let c = get_condition(&st, "Progressing").cloned().expect("cond");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("Unknown", Some(PAUSED_REASON))
        );
        d.status = Some(st);
        assert!(paused_condition(&d, t(1)).is_none());
        if let Some(s) = d.spec.as_mut() {
            s.paused = Some(false);
        }
        let st = paused_condition(&d, t(2)).expect("resumed");
        assert_eq!(reason(&st, "Progressing").as_deref(), Some(RESUMED_REASON));
    }

    #[test]
    fn replica_failure_copied_and_cleared() {
        let d = deploy(1, IntOrString::Int(1), IntOrString::Int(0));
        let f = condition(
            "ReplicaFailure",
            "True",
            "FailedCreate",
            "quota".into(),
            t(0),
        );
        let st = rollout_status(&d, &[rs("a", 1, 0)], None, Some(f), t(0));
        assert_eq!(
            reason(&st, "ReplicaFailure").as_deref(),
            Some("FailedCreate")
        );
        let mut d2 = d.clone();
        d2.status = Some(st);
        let st = rollout_status(&d2, &[rs("a", 1, 0)], None, None, t(1));
        assert!(get_condition(&st, "ReplicaFailure").is_none());
    }
}
