//! The Job controller (upstream pkg/controller/job, batch/v1 at 1.33).
//!
//! Runs a Job's pods to completion: keeps `min(parallelism, remaining)`
//! pods active (one per pending index for Indexed Jobs), counts finished
//! pods through the `batch.kubernetes.io/job-tracking` finalizer and
//! `status.uncountedTerminatedPods`, backs off 10 s doubling (capped at
//! 10 min) before replacing failed pods, and ends the Job with the interim
//! `SuccessCriteriaMet`/`FailureTarget` condition followed, once no pod is
//! left terminating, by `Complete`/`Failed` (reasons CompletionsReached,
//! SuccessPolicy, BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy,
//! FailedIndexes, MaxFailedIndexesExceeded). Suspend deletes the active
//! pods; podFailurePolicy, successPolicy and backoffLimitPerIndex are
//! honoured. A pod watch removes the tracking finalizer from pods whose Job
//! is gone or finished.
//!
//! The decisions are plain functions over the Job and its pods (tested
//! below); `reconcile` only reads the pods live and writes the results.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobStatus, PodFailurePolicy, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};

use crate::replicaset::slow_start;
use crate::{owner, pods, Context, Error, Result, Shutdown};

/// The finalizer that keeps a pod until the Job counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label with an Indexed Job pod's completion index.
pub const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// Annotation with the failures counted so far for the pod's index.
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// Annotation with the ignored failures so far for the pod's index.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// Label carrying the Job's uid on its pods.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// First pod-failure back-off.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// Largest pod-failure back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// Upper bound of pods created or deleted in one sync (upstream 500).
const MAX_PER_SYNC: usize = 500;
/// Upper bound of pod uids in uncountedTerminatedPods (upstream 500).
const MAX_UNCOUNTED: usize = 500;

// ---------------------------------------------------------------------------
// Entry point

struct State {
    ctx: Arc<Context>,
    /// First time a terminal pod was seen, for pods with no finish time.
    seen_finished: Mutex<HashMap<String, Timestamp>>,
}

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let jobs: Api<Job> = Api::all(ctx.client.clone());
    let pods_api: Api<Pod> = Api::all(ctx.client.clone());
    let state = Arc::new(State {
        ctx: ctx.clone(),
        seen_finished: Mutex::new(HashMap::new()),
    });
    let orphans = orphan_finalizers(ctx.clone(), shutdown.clone());
    let controller = Controller::new(jobs, watcher::Config::default())
        .owns(pods_api, watcher::Config::default())
        .graceful_shutdown_on(shutdown.signal())
        .run(reconcile, error_policy, state)
        .for_each(|_| futures::future::ready(()));
    tokio::join!(controller, orphans);
    Ok(())
}

fn error_policy(job: Arc<Job>, err: &Error, state: Arc<State>) -> Action {
    state.ctx.error_action(&crate::key(&*job), err)
}

/// Watches pods of Jobs and removes the tracking finalizer from those whose
/// Job no longer exists (or is finished), as upstream's orphan pod handling.
async fn orphan_finalizers(ctx: Arc<Context>, shutdown: Shutdown) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().labels(CONTROLLER_UID_LABEL);
    let stream = watcher(api, cfg).default_backoff().applied_objects();
    let mut stream = std::pin::pin!(stream.take_until(shutdown.signal()));
    while let Some(ev) = stream.next().await {
        let Ok(pod) = ev else { continue };
        // Running pods of live Jobs are the Job sync's business.
        let job_owned = owner::controller_ref(&pod.metadata).is_some_and(|r| r.kind == "Job");
        if !has_finalizer(&pod) || (job_owned && pods::is_active(&pod)) {
            continue;
        }
        if let Err(e) = release_if_orphan(&ctx, &pod).await {
            tracing::debug!("job orphan pod {}: {e}", crate::key(&pod));
        }
    }
}

async fn release_if_orphan(ctx: &Context, pod: &Pod) -> Result<()> {
    let ns = pod.namespace().unwrap_or_default();
    let orphan = match owner::controller_ref(&pod.metadata) {
        Some(r) if r.kind == "Job" => {
            let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
            match jobs
                .get_opt(&r.name)
                .await
                .map_err(Error::kube(format!("get job {ns}/{}", r.name)))?
            {
                Some(j) => {
                    j.metadata.uid.as_deref() != Some(r.uid.as_str())
                        || (is_finished(&j) && !pods::is_active(pod))
                }
                None => true,
            }
        }
        _ => true,
    };
    if orphan {
        remove_finalizer(ctx, pod).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Small facts

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

fn cond<'a>(conds: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    conds
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

fn conditions(job: &Job) -> &[JobCondition] {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

/// The Job has a Complete or Failed condition that is True.
pub fn is_finished(job: &Job) -> bool {
    let c = conditions(job);
    cond(c, "Complete").is_some() || cond(c, "Failed").is_some()
}

fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// podReplacementPolicy Failed: terminating pods are neither replaced nor
/// counted as failed until they reach phase Failed.
fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// The pod's completion index from its annotation.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(INDEX_ANNOTATION)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

fn annotation_i32(pod: &Pod, key: &str) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(0)
}

/// Upstream's isPodFailed: phase Failed, or (unless only failed pods are
/// replaced) being deleted without having succeeded.
pub fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    let phase = pods::phase(pod);
    if phase == "Failed" {
        return true;
    }
    if only_replace_failed(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && phase != "Succeeded"
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(pods::phase(pod), "Succeeded" | "Failed")
}

// ---------------------------------------------------------------------------
// Index sets ("1,3-5,7")

/// Parses a compressed index list, ignoring indexes `>= limit` and garbage.
pub fn parse_indexes(s: &str, limit: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<i32>(), b.trim().parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(a), Ok(b)) = (a, b) {
            if a < 0 || b < a {
                continue;
            }
            for i in a..=b.min(limit.saturating_sub(1)) {
                out.insert(i);
            }
        }
    }
    out
}

/// Formats indexes as upstream: ascending, runs of 3 or more... every run
/// of consecutive indexes `a-b`, single ones alone, comma separated.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        if start == end {
            parts.push(start.to_string());
        } else {
            parts.push(format!("{start}-{end}"));
        }
    }
    parts.join(",")
}

// ---------------------------------------------------------------------------
// Pod failure policy

/// What a pod failure policy says about one failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMatch {
    /// The action of the matching rule, if a rule matched.
    pub action: Option<String>,
    /// Whether the failure counts towards the backoff limit.
    pub count: bool,
    /// The Job failure message (action FailJob).
    pub fail_job: Option<String>,
}

/// Upstream's matchPodFailurePolicy: the first rule matching the failed pod.
pub fn match_failure_policy(policy: Option<&PodFailurePolicy>, pod: &Pod) -> PolicyMatch {
    let none = PolicyMatch {
        action: None,
        count: true,
        fail_job: None,
    };
    let Some(policy) = policy else { return none };
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let status = pod.status.clone().unwrap_or_default();
    for (i, rule) in policy.rules.iter().enumerate() {
        let matched: Option<String> = if let Some(req) = &rule.on_exit_codes {
            let statuses = status
                .container_statuses
                .iter()
                .flatten()
                .chain(status.init_container_statuses.iter().flatten());
            statuses.into_iter().find_map(|cs| {
                let code = cs.state.as_ref()?.terminated.as_ref()?.exit_code;
                if code == 0 {
                    return None;
                }
                if req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                    return None;
                }
                let inside = req.values.contains(&code);
                let hit = match req.operator.as_str() {
                    "In" => inside,
                    "NotIn" => !inside,
                    _ => false,
                };
                hit.then(|| {
                    format!(
                        "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                        cs.name, rule.action
                    )
                })
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conds = status.conditions.iter().flatten();
            conds.into_iter().find_map(|c| {
                patterns
                    .iter()
                    .any(|p| {
                        p.type_ == c.type_
                            && (if p.status.is_empty() {
                                "True"
                            } else {
                                p.status.as_str()
                            }) == c.status
                    })
                    .then(|| {
                        format!(
                            "Pod {ns}/{name} has condition {} matching {} rule at index {i}",
                            c.type_, rule.action
                        )
                    })
            })
        } else {
            None
        };
        let Some(msg) = matched else { continue };
        match rule.action.as_str() {
            "Ignore" => {
                return PolicyMatch {
                    action: Some(rule.action.clone()),
                    count: false,
                    fail_job: None,
                }
            }
            "Count" | "FailIndex" => {
                return PolicyMatch {
                    action: Some(rule.action.clone()),
                    count: true,
                    fail_job: None,
                }
            }
            "FailJob" => {
                return PolicyMatch {
                    action: Some(rule.action.clone()),
                    count: true,
                    fail_job: Some(msg),
                }
            }
            _ => continue,
        }
    }
    none
}

// ---------------------------------------------------------------------------
// Success policy

/// Upstream's matchSuccessPolicy: the message of the first rule the
/// succeeded indexes satisfy.
pub fn match_success_policy(
    job: &Job,
    completions: i32,
    succeeded: &BTreeSet<i32>,
) -> Option<String> {
    let policy = job.spec.as_ref()?.success_policy.as_ref()?;
    if succeeded.is_empty() {
        return None;
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(ix), count) => {
                let wanted = parse_indexes(ix, completions);
                let got = wanted.intersection(succeeded).count();
                match count {
                    Some(c) => got >= usize::try_from(c).unwrap_or(0),
                    None => !wanted.is_empty() && got == wanted.len(),
                }
            }
            (None, Some(c)) => succeeded.len() >= usize::try_from(c).unwrap_or(0),
            (None, None) => false,
        };
        if met {
            return Some(format!("Matched rules at index {i}"));
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Back-off

/// When the pod finished: its last container finish time, else the Ready
/// condition turning False, else its deletion time.
pub fn finish_time(pod: &Pod) -> Option<Timestamp> {
    let st = pod.status.as_ref()?;
    let from_containers = st
        .container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max();
    if from_containers.is_some() {
        return from_containers;
    }
    let ready_false = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "False")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0));
    ready_false.or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
}

/// 10 s · 2^(failures-1), capped at 10 min; zero without failures.
pub fn backoff_for(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let exp = (failures - 1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

/// Time still to wait before a replacement pod may be created, from
/// `(finish time, failed)` of the finished pods: failures after the last
/// success count, the wait runs from the last failure.
pub fn remaining_backoff(finished: &[(Timestamp, bool)], now: Timestamp) -> Duration {
    let mut sorted: Vec<_> = finished.to_vec();
    sorted.sort_by_key(|(t, _)| *t);
    let mut failures = 0u32;
    let mut last = None;
    for (t, failed) in sorted {
        if failed {
            failures += 1;
            last = Some(t);
        } else {
            failures = 0;
            last = None;
        }
    }
    let Some(last) = last else {
        return Duration::ZERO;
    };
    let wait = backoff_for(failures);
    let elapsed = Duration::from_millis(
        u64::try_from((now.as_millisecond() - last.as_millisecond()).max(0)).unwrap_or(0),
    );
    wait.saturating_sub(elapsed)
}

// ---------------------------------------------------------------------------
// The sync decision

/// What one sync decided; applied by `reconcile`.
#[derive(Debug, Default)]
pub struct Plan {
    /// Pods (names) to delete.
    pub delete: Vec<String>,
    /// Number of non-indexed pods to create.
    pub create: usize,
    /// Indexes (with their failure counts) to create pods for.
    pub create_indexes: Vec<(i32, i32, i32)>,
    /// Pods (names) whose tracking finalizer to remove after the first
    /// status write.
    pub remove_finalizers: Vec<String>,
    /// The status to write before the finalizers are removed.
    pub status: JobStatus,
    /// The interim condition (FailureTarget/SuccessCriteriaMet) or None.
    pub interim: Option<JobCondition>,
    /// The final condition once nothing is uncounted or terminating.
    pub finished: Option<JobCondition>,
    /// Requeue after this long (back-off, active deadline).
    pub requeue: Option<Duration>,
    /// Events (warning?, reason, message).
    pub events: Vec<(bool, String, String)>,
}

fn new_condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets condition `type_` to `status` (adding it when missing); returns
/// whether anything changed. Keeps the transition time when the status holds.
fn ensure_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
        {
            return false;
        }
        if c.status != status {
            c.last_transition_time = Some(Time(now));
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(Time(now));
        return true;
    }
    // A False condition that was never there is not added (upstream).
    if status == "False" {
        return false;
    }
    conds.push(JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
    true
}

/// Failure counts per index of a Job with backoffLimitPerIndex:
/// `(counted, ignored)` including the pod's own failure.
fn index_failures(job: &Job, owned: &[&Pod]) -> BTreeMap<i32, (i32, i32)> {
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref());
    let mut out: BTreeMap<i32, (i32, i32)> = BTreeMap::new();
    for p in owned {
        let Some(ix) = completion_index(p) else {
            continue;
        };
        let mut counted = annotation_i32(p, INDEX_FAILURE_COUNT);
        let mut ignored = annotation_i32(p, INDEX_IGNORED_FAILURE_COUNT);
        if is_pod_failed(p, job) {
            if match_failure_policy(policy, p).count {
                counted += 1;
            } else {
                ignored += 1;
            }
        }
        let e = out.entry(ix).or_default();
        e.0 = e.0.max(counted);
        e.1 = e.1.max(ignored);
    }
    out
}

/// Computes one sync of `job` over its pods (`owned`: the pods it
/// controls) at `now`. `finish_times` gives a finish time for terminal pods
/// that carry none.
pub fn plan(
    job: &Job,
    owned: &[Pod],
    now: Timestamp,
    finish_fallback: &dyn Fn(&Pod) -> Timestamp,
) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let mut status = job.status.clone().unwrap_or_default();
    let mut p = Plan::default();
    let indexed = is_indexed(job);
    let suspended = is_suspended(job);
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let per_index_limit = spec.backoff_limit_per_index.filter(|_| indexed);
    let policy = spec.pod_failure_policy.as_ref();
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_succ: Vec<String> = uncounted.succeeded.unwrap_or_default();
    let mut unc_fail: Vec<String> = uncounted.failed.unwrap_or_default();
    let mut conds = status.conditions.clone().unwrap_or_default();
    let uid = |pod: &Pod| pod.metadata.uid.clone().unwrap_or_default();
    let pods_ref: Vec<&Pod> = owned.iter().collect();
    let valid_index = |pod: &Pod| -> bool {
        !indexed || completion_index(pod).is_some_and(|i| i < completions.unwrap_or(0))
    };

    let active: Vec<&Pod> = owned.iter().filter(|x| pods::is_active(x)).collect();
    let mut terminating = owned.iter().filter(|x| is_terminating(x)).count() as i32;
    let mut ready = active.iter().filter(|x| pods::is_ready(x)).count() as i32;

    // Newly finished pods still carrying our finalizer.
    let with_fin: Vec<&Pod> = owned.iter().filter(|x| has_finalizer(x)).collect();
    let new_succeeded: Vec<&Pod> = with_fin
        .iter()
        .copied()
        .filter(|x| pods::phase(x) == "Succeeded" && !unc_succ.contains(&uid(x)) && valid_index(x))
        .collect();
    let new_failed: Vec<&Pod> = with_fin
        .iter()
        .copied()
        .filter(|x| is_pod_failed(x, job) && !unc_fail.contains(&uid(x)) && valid_index(x))
        .filter(|x| {
            !(suspended && x.metadata.deletion_timestamp.is_some() && pods::phase(x) != "Failed")
        })
        .collect();
    let counted_new_failed = new_failed
        .iter()
        .filter(|x| match_failure_policy(policy, x).count)
        .count() as i32;
    let mut succeeded =
        status.succeeded.unwrap_or(0) + new_succeeded.len() as i32 + unc_succ.len() as i32;
    let failed = status.failed.unwrap_or(0) + counted_new_failed + unc_fail.len() as i32;

    if status.start_time.is_none() && !suspended {
        status.start_time = Some(Time(now));
    }

    // Interim conditions already recorded.
    let mut finished: Option<JobCondition> = cond(&conds, "SuccessCriteriaMet").cloned();
    if finished.is_none() {
        if let Some(ft) = cond(&conds, "FailureTarget") {
            finished = Some(ft.clone());
        } else if let Some(msg) = owned
            .iter()
            .filter(|x| is_pod_failed(x, job))
            .find_map(|x| match_failure_policy(policy, x).fail_job)
        {
            finished = Some(new_condition(
                "FailureTarget",
                "PodFailurePolicy",
                &msg,
                now,
            ));
        }
    }
    let past_deadline = match (spec.active_deadline_seconds, &status.start_time) {
        (Some(d), Some(st)) if !suspended => {
            let elapsed = now.as_second() - st.0.as_second();
            if elapsed >= d {
                true
            } else {
                p.requeue = Some(Duration::from_secs(u64::try_from(d - elapsed).unwrap_or(1)));
                false
            }
        }
        _ => false,
    };
    if finished.is_none() {
        if failed > backoff_limit || past_backoff_on_failure(job, owned, backoff_limit) {
            finished = Some(new_condition(
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now,
            ));
        } else if past_deadline {
            finished = Some(new_condition(
                "FailureTarget",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
                now,
            ));
        }
    }

    // Indexed bookkeeping.
    let comp = completions.unwrap_or(0);
    let mut succeeded_ix = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""), comp);
    let mut failed_ix: BTreeSet<i32> = BTreeSet::new();
    let ix_failures = if per_index_limit.is_some() {
        index_failures(job, &pods_ref)
    } else {
        BTreeMap::new()
    };
    if indexed {
        for x in owned {
            if pods::phase(x) == "Succeeded" && has_finalizer(x) {
                if let Some(i) = completion_index(x).filter(|i| *i < comp) {
                    succeeded_ix.insert(i);
                }
            }
        }
        succeeded = succeeded_ix.len() as i32;
        if let Some(limit) = per_index_limit {
            failed_ix = parse_indexes(status.failed_indexes.as_deref().unwrap_or(""), comp);
            for (ix, (counted, _)) in &ix_failures {
                if *ix < comp && *counted > limit && !succeeded_ix.contains(ix) {
                    failed_ix.insert(*ix);
                }
            }
            // FailIndex actions fail the index at once.
            for x in owned.iter().filter(|x| is_pod_failed(x, job)) {
                if match_failure_policy(policy, x).action.as_deref() == Some("FailIndex") {
                    if let Some(i) =
                        completion_index(x).filter(|i| *i < comp && !succeeded_ix.contains(i))
                    {
                        failed_ix.insert(i);
                    }
                }
            }
            if finished.is_none() {
                let nfailed = failed_ix.len() as i32;
                if spec.max_failed_indexes.is_some_and(|m| nfailed > m) {
                    finished = Some(new_condition(
                        "FailureTarget",
                        "MaxFailedIndexesExceeded",
                        "Job has exceeded the specified maximal number of failed indexes",
                        now,
                    ));
                } else if nfailed > 0 && nfailed + succeeded >= comp {
                    finished = Some(new_condition(
                        "FailureTarget",
                        "FailedIndexes",
                        "Job has failed indexes",
                        now,
                    ));
                }
            }
        }
        if finished.is_none() {
            if let Some(msg) = match_success_policy(job, comp, &succeeded_ix) {
                finished = Some(new_condition(
                    "SuccessCriteriaMet",
                    "SuccessPolicy",
                    &msg,
                    now,
                ));
            }
        }
    }

    let mut active_n = active.len() as i32;
    let alive = job.metadata.deletion_timestamp.is_none();
    let was_finished = finished.is_some();
    if was_finished || (alive && suspended) {
        // Delete every active pod (finished or suspended); the finalizers
        // go below.
        for x in &active {
            p.delete.push(x.name_any());
            if pods::is_ready(x) {
                ready -= 1;
            }
        }
        terminating += active_n;
        active_n = 0;
    } else if alive {
        let want = match completions {
            None if succeeded > 0 => active_n,
            None => parallelism,
            Some(c) => (c - succeeded).clamp(0, parallelism),
        };
        // Pods to remove: duplicated/out-of-range indexes first.
        let mut rm: Vec<&Pod> = Vec::new();
        let mut keep: Vec<&Pod> = Vec::new();
        if indexed {
            let mut seen = BTreeSet::new();
            let mut sorted = active.clone();
            sorted.sort_by_key(|x| {
                (
                    completion_index(x),
                    x.metadata.creation_timestamp.as_ref().map(|t| t.0),
                )
            });
            for x in sorted {
                match completion_index(x) {
                    Some(i)
                        if i < comp
                            && !succeeded_ix.contains(&i)
                            && !failed_ix.contains(&i)
                            && seen.insert(i) =>
                    {
                        keep.push(x)
                    }
                    _ => rm.push(x),
                }
            }
        } else {
            keep = active.clone();
        }
        let rm_at_least = (active_n - want).max(0) as usize;
        if rm.len() < rm_at_least {
            // Not ready before ready, unscheduled before scheduled, newer first.
            keep.sort_by_key(|x| {
                (
                    x.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some(),
                    pods::phase(x) == "Running",
                    pods::is_ready(x),
                    std::cmp::Reverse(x.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                )
            });
            let extra = rm_at_least - rm.len();
            rm.extend(keep.iter().take(extra).copied());
        }
        rm.truncate(MAX_PER_SYNC);
        if !rm.is_empty() {
            for x in &rm {
                p.delete.push(x.name_any());
                if pods::is_ready(x) {
                    ready -= 1;
                }
            }
            active_n -= rm.len() as i32;
            terminating += rm.len() as i32;
        } else {
            let term_block = if only_replace_failed(job) {
                terminating
            } else {
                0
            };
            let diff = (want - term_block - active_n).max(0) as usize;
            if diff > 0 {
                let wait = if per_index_limit.is_none() {
                    let finished_pods: Vec<(Timestamp, bool)> = owned
                        .iter()
                        .filter_map(|x| {
                            let succ = pods::phase(x) == "Succeeded";
                            let fail =
                                is_pod_failed(x, job) && match_failure_policy(policy, x).count;
                            (succ || fail).then(|| {
                                (finish_time(x).unwrap_or_else(|| finish_fallback(x)), fail)
                            })
                        })
                        .collect();
                    remaining_backoff(&finished_pods, now)
                } else {
                    Duration::ZERO
                };
                if !wait.is_zero() {
                    p.requeue = Some(p.requeue.map_or(wait, |r| r.min(wait)));
                } else if indexed {
                    let busy: BTreeSet<i32> =
                        active.iter().filter_map(|x| completion_index(x)).collect();
                    let mut min_wait: Option<Duration> = None;
                    for i in 0..comp {
                        if p.create_indexes.len() >= diff.min(MAX_PER_SYNC) {
                            break;
                        }
                        if succeeded_ix.contains(&i) || failed_ix.contains(&i) || busy.contains(&i)
                        {
                            continue;
                        }
                        let (counted, ignored) = ix_failures.get(&i).copied().unwrap_or((0, 0));
                        if per_index_limit.is_some() && counted > 0 {
                            // Per-index back-off from the index's last failure.
                            let last = owned
                                .iter()
                                .filter(|x| completion_index(x) == Some(i) && is_pod_failed(x, job))
                                .map(|x| finish_time(x).unwrap_or_else(|| finish_fallback(x)))
                                .max();
                            if let Some(last) = last {
                                let elapsed = Duration::from_millis(
                                    u64::try_from(
                                        (now.as_millisecond() - last.as_millisecond()).max(0),
                                    )
                                    .unwrap_or(0),
                                );
                                let w = backoff_for(u32::try_from(counted).unwrap_or(1))
                                    .saturating_sub(elapsed);
                                if !w.is_zero() {
                                    min_wait = Some(min_wait.map_or(w, |m| m.min(w)));
                                    continue;
                                }
                            }
                        }
                        p.create_indexes.push((i, counted, ignored));
                    }
                    if p.create_indexes.is_empty() {
                        if let Some(w) = min_wait {
                            p.requeue = Some(p.requeue.map_or(w, |r| r.min(w)));
                        }
                    }
                    active_n += p.create_indexes.len() as i32;
                } else {
                    p.create = diff.min(MAX_PER_SYNC);
                    active_n += p.create as i32;
                }
            }
        }
        // Success without a failure.
        let complete = match completions {
            None => succeeded > 0 && active_n == 0,
            Some(c) => succeeded >= c && active_n == 0,
        };
        if complete {
            finished = Some(new_condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ));
        }
    }
    if alive && !was_finished && (finished.is_none() || suspended) {
        if suspended {
            if ensure_condition(
                &mut conds,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            ) {
                p.events
                    .push((false, "Suspended".into(), "Job suspended".into()));
            }
        } else if ensure_condition(
            &mut conds,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        ) {
            p.events
                .push((false, "Resumed".into(), "Job resumed".into()));
            status.start_time = Some(Time(now));
        }
    }

    // Finished pods: add to uncounted, remove their finalizers.
    let failing = finished
        .as_ref()
        .is_some_and(|c| c.type_ != "SuccessCriteriaMet");
    let deleting = job.metadata.deletion_timestamp.is_some();
    let mut sorted_fin = with_fin.clone();
    if indexed {
        sorted_fin.sort_by_key(|x| completion_index(x));
    }
    for x in sorted_fin {
        let u = uid(x);
        let considered_failed = is_pod_failed(x, job);
        let succ = pods::phase(x) == "Succeeded";
        // Keep the finalizer of pods still running.
        let can_remove = deleting || finished.is_some() || succ || considered_failed;
        if !can_remove {
            continue;
        }
        // Pods deleted because the Job is suspended are not failures.
        let suspended_delete = suspended && !succ && pods::phase(x) != "Failed";
        if succ && !unc_fail.contains(&u) {
            if !indexed && !unc_succ.contains(&u) {
                unc_succ.push(u.clone());
            }
        } else if !suspended_delete
            && (considered_failed || failing)
            && !unc_fail.contains(&u)
            && valid_index(x)
            && match_failure_policy(policy, x).count
        {
            unc_fail.push(u.clone());
        }
        p.remove_finalizers.push(x.name_any());
        if unc_succ.len() + unc_fail.len() >= MAX_UNCOUNTED {
            break;
        }
    }

    if indexed {
        status.completed_indexes = Some(format_indexes(&succeeded_ix)).filter(|s| !s.is_empty());
        status.succeeded = Some(succeeded_ix.len() as i32);
        status.failed_indexes = per_index_limit.map(|_| format_indexes(&failed_ix));
    }
    if let Some(c) = &finished {
        if cond(&conds, &c.type_).is_none() {
            conds.push(c.clone());
            p.interim = Some(c.clone());
        }
    }
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(unc_succ),
        failed: Some(unc_fail),
    });
    status.active = Some(active_n);
    status.ready = Some(ready.max(0));
    status.terminating = Some(terminating);
    status.conditions = if conds.is_empty() { None } else { Some(conds) };
    // Final condition (applied after the finalizers are gone).
    p.finished = finished.map(|c| {
        let (type_, reason) = if c.type_ == "SuccessCriteriaMet" {
            ("Complete", c.reason.clone().unwrap_or_default())
        } else {
            ("Failed", c.reason.clone().unwrap_or_default())
        };
        new_condition(type_, &reason, c.message.as_deref().unwrap_or(""), now)
    });
    tidy(&mut status);
    p.status = status;
    p
}

/// restartPolicy OnFailure: the container restarts of running pods reach
/// the backoff limit.
fn past_backoff_on_failure(job: &Job, owned: &[Pod], limit: i32) -> bool {
    let restart = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref());
    if restart != Some("OnFailure") {
        return false;
    }
    let mut restarts = 0;
    for x in owned {
        if matches!(pods::phase(x), "Running" | "Pending") {
            if let Some(st) = &x.status {
                for c in st
                    .container_statuses
                    .iter()
                    .flatten()
                    .chain(st.init_container_statuses.iter().flatten())
                {
                    restarts += c.restart_count;
                }
            }
        }
    }
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// Drops zero counters and empty uid lists, as upstream's `omitempty`
/// serialization does, so that written and read statuses compare equal.
pub fn tidy(status: &mut JobStatus) {
    for v in [
        &mut status.active,
        &mut status.succeeded,
        &mut status.failed,
    ] {
        if *v == Some(0) {
            *v = None;
        }
    }
    let unc = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    for v in [&mut unc.succeeded, &mut unc.failed] {
        if v.as_ref().is_some_and(|l| l.is_empty()) {
            *v = None;
        }
    }
}

/// Moves uncounted pods whose finalizer is gone into the counters and, when
/// nothing is left uncounted or terminating, sets the final condition.
/// Returns true when the job just finished.
pub fn settle(
    status: &mut JobStatus,
    still_with_finalizer: &BTreeSet<String>,
    finished: Option<&JobCondition>,
    indexed: bool,
) -> bool {
    let mut unc = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let succ = unc.succeeded.take().unwrap_or_default();
    let fail = unc.failed.take().unwrap_or_default();
    let (keep_s, done_s): (Vec<_>, Vec<_>) = succ
        .into_iter()
        .partition(|u| still_with_finalizer.contains(u));
    let (keep_f, done_f): (Vec<_>, Vec<_>) = fail
        .into_iter()
        .partition(|u| still_with_finalizer.contains(u));
    if !indexed {
        status.succeeded = Some(status.succeeded.unwrap_or(0) + done_s.len() as i32);
    }
    status.failed = Some(status.failed.unwrap_or(0) + done_f.len() as i32);
    let empty = keep_s.is_empty() && keep_f.is_empty();
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(keep_s),
        failed: Some(keep_f),
    });
    tidy(status);
    let Some(fc) = finished else { return false };
    if !empty || status.terminating.unwrap_or(0) > 0 {
        return false;
    }
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if cond(conds, &fc.type_).is_some() {
        return false;
    }
    conds.push(fc.clone());
    if fc.type_ == "Complete" {
        status.completion_time = fc.last_transition_time.clone();
    }
    true
}

// ---------------------------------------------------------------------------
// Reconcile (I/O)

fn index_env(c: &mut k8s_openapi::api::core::v1::Container) {
    let env = c.env.get_or_insert_with(Vec::new);
    if env.iter().any(|e| e.name == INDEX_ENV) {
        return;
    }
    env.push(EnvVar {
        name: INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.labels['{INDEX_ANNOTATION}']"),
            }),
            ..Default::default()
        }),
    });
}

/// The pod a Job creates, for `index` (Indexed) or not.
pub fn new_pod(job: &Job, index: Option<(i32, i32, i32)>) -> Pod {
    let spec = job.spec.clone().unwrap_or_default();
    let mut template = spec.template;
    let name = job.name_any();
    let mut gen = format!("{name}-");
    let fins = template
        .metadata
        .get_or_insert_with(Default::default)
        .finalizers
        .get_or_insert_with(Vec::new);
    if !fins.iter().any(|f| f == TRACKING_FINALIZER) {
        fins.push(TRACKING_FINALIZER.into());
    }
    if let Some((ix, counted, ignored)) = index {
        if let Some(ps) = template.spec.as_mut() {
            for c in ps.init_containers.iter_mut().flatten() {
                index_env(c);
            }
            for c in ps.containers.iter_mut() {
                index_env(c);
            }
            ps.hostname = Some(format!("{name}-{ix}"));
        }
        let meta = template.metadata.get_or_insert_with(Default::default);
        let ann = meta.annotations.get_or_insert_with(BTreeMap::new);
        ann.insert(INDEX_ANNOTATION.into(), ix.to_string());
        if spec.backoff_limit_per_index.is_some() {
            ann.insert(INDEX_FAILURE_COUNT.into(), counted.to_string());
            if ignored > 0 {
                ann.insert(INDEX_IGNORED_FAILURE_COUNT.into(), ignored.to_string());
            }
        }
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(INDEX_ANNOTATION.into(), ix.to_string());
        // Upstream trims the prefix so the generated name fits.
        let mut prefix = format!("{name}-{ix}-");
        if prefix.len() > 58 {
            prefix.truncate(58);
        }
        gen = prefix;
    } else if gen.len() > 58 {
        gen.truncate(58);
    }
    let ns = job.namespace().unwrap_or_default();
    pods::from_template(
        &template,
        &ns,
        owner::new_controller_ref(job),
        None,
        Some(gen),
    )
}

async fn remove_finalizer(ctx: &Context, pod: &Pod) -> Result<()> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut current = pod.clone();
    for attempt in 0..3 {
        let Some(fins) = current.metadata.finalizers.as_ref() else {
            return Ok(());
        };
        if !fins.iter().any(|f| f == TRACKING_FINALIZER) {
            return Ok(());
        }
        let rest: Vec<&String> = fins.iter().filter(|f| *f != TRACKING_FINALIZER).collect();
        // The resourceVersion makes the list replacement safe against
        // concurrent finalizer changes.
        let body = serde_json::json!({"metadata": {"finalizers": rest, "resourceVersion": current.metadata.resource_version}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 2 => {
                match api
                    .get_opt(&name)
                    .await
                    .map_err(Error::kube(format!("get pod {ns}/{name}")))?
                {
                    Some(p) if p.metadata.uid == pod.metadata.uid => current = p,
                    _ => return Ok(()),
                }
            }
            Err(e) => {
                return Err(Error::kube(format!("remove finalizer of pod {ns}/{name}"))(
                    e,
                ))
            }
        }
    }
    Ok(())
}

async fn reconcile(job: Arc<Job>, state: Arc<State>) -> Result<Action> {
    let ctx = &state.ctx;
    let key = crate::key(&*job);
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let resync = Action::requeue(ctx.config.resync);
    // Decide on a fresh read: a stale cached status would miscount pods
    // whose finalizer a previous sync already removed.
    let job = match jobs
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get job {key}")))?
    {
        Some(j) if j.metadata.uid.as_deref() == Some(uid.as_str()) => Arc::new(j),
        _ => return Ok(Action::await_change()),
    };

    if job
        .spec
        .as_ref()
        .and_then(|s| s.managed_by.as_deref())
        .is_some_and(|m| m != "kubernetes.io/job-controller")
    {
        return Ok(Action::await_change());
    }
    let owned: Vec<Pod> = match job.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(sel) => {
            let sel = pods::selector(sel)?;
            pods::list(&ctx.client, &ns, &sel)
                .await?
                .into_iter()
                .filter(|x| owner::is_controlled_by(&x.metadata, &uid))
                .collect()
        }
        None => Vec::new(),
    };
    if is_finished(&job) {
        // Release pods a previous sync could not.
        for x in owned
            .iter()
            .filter(|x| has_finalizer(x) && !pods::is_active(x))
        {
            remove_finalizer(ctx, x).await?;
        }
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    }

    let now = Timestamp::now();
    // Remember when terminal pods without a finish time were first seen.
    let fallback = {
        let mut seen = state
            .seen_finished
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for x in owned.iter().filter(|x| !pods::is_active(x)) {
            seen.entry(x.metadata.uid.clone().unwrap_or_default())
                .or_insert(now);
        }
        let live: BTreeSet<String> = owned
            .iter()
            .filter_map(|x| x.metadata.uid.clone())
            .collect();
        let snapshot: HashMap<String, Timestamp> = seen
            .iter()
            .filter(|(u, _)| live.contains(*u))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        snapshot
    };
    let fb = |x: &Pod| -> Timestamp {
        x.metadata
            .uid
            .as_ref()
            .and_then(|u| fallback.get(u).copied())
            .unwrap_or(now)
    };
    let plan = plan(&job, &owned, now, &fb);
    let jref = job.object_ref(&());

    // Deletions (finalizers kept: they are removed once counted).
    let mut first_err: Option<Error> = None;
    for pname in &plan.delete {
        if let Err(e) = pods::delete(ctx, &jref, &pods_api, pname).await {
            first_err.get_or_insert(e);
        }
    }
    // Creations: slow start (1, 2, 4...) stopping after the first failing
    // batch; what was not created is not active.
    let mut to_create: Vec<Option<(i32, i32, i32)>> = vec![None; plan.create];
    to_create.extend(plan.create_indexes.iter().copied().map(Some));
    let mut next = to_create.iter();
    let jref_ = &jref;
    let (created, err) = slow_start(to_create.len(), || {
        let pod = new_pod(&job, next.next().copied().flatten());
        let api = pods_api.clone();
        let action = format!("create pod for job {key}");
        async move { pods::create(ctx, jref_, &api, &pod, action).await.map(drop) }
    })
    .await;
    let created_fail = i32::try_from(to_create.len() - created).unwrap_or(i32::MAX);
    if let Some(e) = err {
        first_err.get_or_insert(e);
    }

    // First status write: new uncounted pods and interim condition.
    let mut status = plan.status.clone();
    status.active = Some(status.active.unwrap_or(0) - created_fail);
    tidy(&mut status);
    let mut current = (*job).clone();
    let old_status = job.status.clone().unwrap_or_default();
    if status != old_status {
        current.status = Some(status.clone());
        current = jobs
            .replace_status(&name, &PostParams::default(), &current)
            .await
            .map_err(Error::kube(format!("update status of job {key}")))?;
    }
    for ev in &plan.events {
        if ev.0 {
            ctx.warning(&jref, &ev.1, ev.2.clone()).await;
        } else {
            ctx.normal(&jref, &ev.1, ev.2.clone()).await;
        }
    }
    // Remove finalizers of the counted pods.
    let mut with_fin: BTreeSet<String> = owned
        .iter()
        .filter(|x| has_finalizer(x))
        .filter_map(|x| x.metadata.uid.clone())
        .collect();
    for pname in &plan.remove_finalizers {
        if let Some(x) = owned.iter().find(|x| x.name_any() == *pname) {
            match remove_finalizer(ctx, x).await {
                Ok(()) => {
                    if let Some(u) = &x.metadata.uid {
                        with_fin.remove(u);
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    let mut status = current.status.clone().unwrap_or_default();
    let before = status.clone();
    let just_finished = settle(
        &mut status,
        &with_fin,
        plan.finished.as_ref(),
        is_indexed(&job),
    );
    if status != before {
        current.status = Some(status.clone());
        jobs.replace_status(&name, &PostParams::default(), &current)
            .await
            .map_err(Error::kube(format!("update status of job {key}")))?;
    }
    if just_finished {
        if let Some(fc) = &plan.finished {
            if fc.type_ == "Complete" {
                let comp = job.spec.as_ref().and_then(|s| s.completions);
                if comp.is_some_and(|c| status.succeeded.unwrap_or(0) > c) {
                    ctx.warning(
                        &jref,
                        "TooManySucceededPods",
                        "Too many succeeded pods running after completion count reached".into(),
                    )
                    .await;
                }
                ctx.normal(&jref, "Completed", "Job completed".into()).await;
            } else {
                ctx.warning(
                    &jref,
                    fc.reason.as_deref().unwrap_or("Failed"),
                    fc.message.clone().unwrap_or_default(),
                )
                .await;
            }
        }
        state
            .seen_finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|u, _| {
                !owned
                    .iter()
                    .any(|x| x.metadata.uid.as_deref() == Some(u.as_str()))
            });
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    ctx.succeeded(&key);
    // Pods still terminating or waiting for a finalizer: look again soon.
    if plan.finished.is_some() && !just_finished {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d.max(Duration::from_millis(100))),
        None => resync,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{
        JobSpec, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
        PodFailurePolicyRule, SuccessPolicy, SuccessPolicyRule,
    };
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodSpec,
        PodStatus, PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn job(completions: Option<i32>, parallelism: i32) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("default".into()),
                uid: Some("juid".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(6),
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![k8s_openapi::api::core::v1::Container {
                            name: "main".into(),
                            ..Default::default()
                        }],
                        restart_policy: Some("Never".into()),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, phase: &str, index: Option<i32>) -> Pod {
        let mut ann = BTreeMap::new();
        if let Some(i) = index {
            ann.insert(INDEX_ANNOTATION.to_string(), i.to_string());
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("u-{name}")),
                finalizers: Some(vec![TRACKING_FINALIZER.into()]),
                annotations: Some(ann),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    fn exited(mut p: Pod, code: i32) -> Pod {
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "main".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    finished_at: Some(Time(ts(1000))),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        p
    }

    fn fb(_: &Pod) -> Timestamp {
        ts(0)
    }

    #[test]
    fn index_ranges() {
        let s: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format_indexes(&s), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7", 10), s);
        assert_eq!(
            parse_indexes("0-2,4,6-7", 5),
            [0, 1, 2, 4].into_iter().collect()
        );
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert_eq!(parse_indexes("x,3-1,5", 10), [5].into_iter().collect());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_for(0), Duration::ZERO);
        assert_eq!(backoff_for(1), Duration::from_secs(10));
        assert_eq!(backoff_for(3), Duration::from_secs(40));
        assert_eq!(backoff_for(20), Duration::from_secs(600));
        // Two failures at 100 and 105: 20 s from 105.
        let f = [(ts(100), true), (ts(105), true)];
        assert_eq!(remaining_backoff(&f, ts(110)), Duration::from_secs(15));
        // A success after the failures resets.
        let f = [(ts(100), true), (ts(105), false)];
        assert_eq!(remaining_backoff(&f, ts(106)), Duration::ZERO);
    }

    #[test]
    fn creates_min_of_parallelism_and_remaining() {
        let j = job(Some(3), 2);
        let p = plan(&j, &[], ts(10), &fb);
        assert_eq!(p.create, 2);
        assert_eq!(p.status.active, Some(2));
        assert!(p.status.start_time.is_some());
        // One succeeded, one running: one more to create (remaining 2).
        let pods = vec![pod("a", "Succeeded", None), pod("b", "Running", None)];
        let p = plan(&j, &pods, ts(10), &fb);
        assert_eq!(p.create, 1);
        assert_eq!(p.remove_finalizers, vec!["a".to_string()]);
        assert_eq!(
            p.status
                .uncounted_terminated_pods
                .as_ref()
                .unwrap()
                .succeeded,
            Some(vec!["u-a".to_string()])
        );
    }

    #[test]
    fn completes_after_counting() {
        let mut j = job(Some(1), 1);
        let pods = vec![pod("a", "Succeeded", None)];
        let p = plan(&j, &pods, ts(10), &fb);
        assert_eq!(p.create, 0);
        let interim = p.interim.clone().unwrap();
        assert_eq!(interim.type_, "SuccessCriteriaMet");
        assert_eq!(interim.reason.as_deref(), Some("CompletionsReached"));
        let mut st = p.status.clone();
        assert!(settle(
            &mut st,
            &BTreeSet::new(),
            p.finished.as_ref(),
            false
        ));
        assert_eq!(st.succeeded, Some(1));
        let c = st.conditions.as_ref().unwrap();
        assert_eq!(c[0].type_, "SuccessCriteriaMet");
        assert_eq!(c[1].type_, "Complete");
        assert_eq!(
            c[1].message.as_deref(),
            Some("Reached expected number of succeeded pods")
        );
        assert!(st.completion_time.is_some());
        j.status = Some(st);
        assert!(is_finished(&j));
    }

    #[test]
    fn backoff_limit_exceeded() {
        let mut j = job(Some(1), 1);
        j.spec.as_mut().unwrap().backoff_limit = Some(1);
        let pods = vec![
            pod("a", "Failed", None),
            pod("b", "Failed", None),
            pod("c", "Running", None),
        ];
        let p = plan(&j, &pods, ts(10), &fb);
        let interim = p.interim.clone().unwrap();
        assert_eq!(interim.type_, "FailureTarget");
        assert_eq!(interim.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(p.delete, vec!["c".to_string()]);
        assert_eq!(p.status.terminating, Some(1));
        // Still a terminating pod: not Failed yet.
        let mut st = p.status.clone();
        assert!(!settle(
            &mut st,
            &BTreeSet::new(),
            p.finished.as_ref(),
            false
        ));
        st.terminating = Some(0);
        assert!(settle(
            &mut st,
            &BTreeSet::new(),
            p.finished.as_ref(),
            false
        ));
        let last = st.conditions.as_ref().unwrap().last().unwrap().clone();
        assert_eq!(last.type_, "Failed");
        assert_eq!(
            last.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
        // The running pod deleted because the Job failed counts as failed.
        assert_eq!(st.failed, Some(3));
    }

    #[test]
    fn failure_backoff_delays_replacement() {
        let j = job(Some(1), 1);
        let pods = vec![exited(pod("a", "Failed", None), 1)];
        let p = plan(&j, &pods, ts(1003), &fb);
        assert_eq!(p.create, 0);
        assert_eq!(p.requeue, Some(Duration::from_secs(7)));
        let p = plan(&j, &pods, ts(1011), &fb);
        assert_eq!(p.create, 1);
    }

    #[test]
    fn deadline_exceeded() {
        let mut j = job(Some(1), 1);
        j.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
        j.status = Some(JobStatus {
            start_time: Some(Time(ts(0))),
            ..Default::default()
        });
        let p = plan(&j, &[pod("a", "Running", None)], ts(10), &fb);
        assert!(p.interim.is_none());
        assert_eq!(p.requeue, Some(Duration::from_secs(20)));
        let p = plan(&j, &[pod("a", "Running", None)], ts(31), &fb);
        assert_eq!(
            p.interim.unwrap().reason.as_deref(),
            Some("DeadlineExceeded")
        );
        assert_eq!(p.delete, vec!["a".to_string()]);
    }

    #[test]
    fn indexed_creates_pending_indexes() {
        let mut j = job(Some(5), 3);
        j.spec.as_mut().unwrap().completion_mode = Some("Indexed".into());
        j.status = Some(JobStatus {
            completed_indexes: Some("0".into()),
            succeeded: Some(1),
            ..Default::default()
        });
        let pods = vec![pod("b", "Succeeded", Some(1)), pod("c", "Running", Some(2))];
        let p = plan(&j, &pods, ts(10), &fb);
        let ix: Vec<i32> = p.create_indexes.iter().map(|x| x.0).collect();
        assert_eq!(ix, vec![3, 4]);
        assert_eq!(p.status.completed_indexes.as_deref(), Some("0-1"));
        assert_eq!(p.status.succeeded, Some(2));
        let pod = new_pod(&j, Some((3, 0, 0)));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-3-"));
        assert_eq!(pod.metadata.labels.as_ref().unwrap()[INDEX_ANNOTATION], "3");
        assert_eq!(
            pod.metadata.annotations.as_ref().unwrap()[INDEX_ANNOTATION],
            "3"
        );
        let ps = pod.spec.unwrap();
        assert_eq!(ps.hostname.as_deref(), Some("pi-3"));
        assert_eq!(
            ps.containers[0].env.as_ref().unwrap()[0].name,
            "JOB_COMPLETION_INDEX"
        );
        assert!(pod
            .metadata
            .finalizers
            .unwrap()
            .contains(&TRACKING_FINALIZER.to_string()));
    }

    #[test]
    fn indexed_duplicates_are_removed() {
        let mut j = job(Some(2), 2);
        j.spec.as_mut().unwrap().completion_mode = Some("Indexed".into());
        let pods = vec![
            pod("a", "Running", Some(0)),
            pod("b", "Running", Some(0)),
            pod("c", "Running", Some(7)),
        ];
        let p = plan(&j, &pods, ts(10), &fb);
        assert_eq!(p.delete.len(), 2);
        assert!(p.delete.contains(&"c".to_string()));
        assert!(p.create_indexes.is_empty());
    }

    #[test]
    fn failure_policy_matching() {
        let policy = PodFailurePolicy {
            rules: vec![
                PodFailurePolicyRule {
                    action: "Ignore".into(),
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".into(),
                        status: "True".into(),
                    }]),
                    on_exit_codes: None,
                },
                PodFailurePolicyRule {
                    action: "FailJob".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: None,
                        operator: "In".into(),
                        values: vec![42],
                    }),
                    on_pod_conditions: None,
                },
                PodFailurePolicyRule {
                    action: "Count".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: Some("main".into()),
                        operator: "NotIn".into(),
                        values: vec![42],
                    }),
                    on_pod_conditions: None,
                },
            ],
        };
        let p42 = exited(pod("a", "Failed", None), 42);
        let m = match_failure_policy(Some(&policy), &p42);
        assert_eq!(
            m.fail_job.as_deref(),
            Some("Container main for pod default/a failed with exit code 42 matching FailJob rule at index 1")
        );
        let p1 = exited(pod("b", "Failed", None), 1);
        assert_eq!(
            match_failure_policy(Some(&policy), &p1).action.as_deref(),
            Some("Count")
        );
        let mut disrupted = exited(pod("c", "Failed", None), 42);
        disrupted.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            ..Default::default()
        }]);
        let m = match_failure_policy(Some(&policy), &disrupted);
        assert!(!m.count);
        // No rule matches an exit code 0 container.
        let p0 = exited(pod("d", "Failed", None), 0);
        assert_eq!(match_failure_policy(Some(&policy), &p0).action, None);

        let mut j = job(Some(1), 1);
        j.spec.as_mut().unwrap().pod_failure_policy = Some(policy);
        let p = plan(&j, &[p42], ts(2000), &fb);
        let interim = p.interim.unwrap();
        assert_eq!(interim.type_, "FailureTarget");
        assert_eq!(interim.reason.as_deref(), Some("PodFailurePolicy"));
        // Ignored failures are neither counted nor block replacement.
        let p = plan(&j, &[disrupted], ts(2000), &fb);
        assert!(p.interim.is_none());
        assert_eq!(p.status.uncounted_terminated_pods.unwrap().failed, None);
        assert_eq!(p.create, 1);
    }

    #[test]
    fn success_policy() {
        let mut j = job(Some(5), 5);
        j.spec.as_mut().unwrap().completion_mode = Some("Indexed".into());
        j.spec.as_mut().unwrap().success_policy = Some(SuccessPolicy {
            rules: vec![
                SuccessPolicyRule {
                    succeeded_indexes: Some("0-1".into()),
                    succeeded_count: None,
                },
                SuccessPolicyRule {
                    succeeded_indexes: None,
                    succeeded_count: Some(3),
                },
            ],
        });
        let s: BTreeSet<i32> = [0].into_iter().collect();
        assert_eq!(match_success_policy(&j, 5, &s), None);
        let s: BTreeSet<i32> = [2, 3, 4].into_iter().collect();
        assert_eq!(
            match_success_policy(&j, 5, &s).as_deref(),
            Some("Matched rules at index 1")
        );
        let pods = vec![
            pod("a", "Succeeded", Some(0)),
            pod("b", "Succeeded", Some(1)),
            pod("c", "Running", Some(2)),
        ];
        let p = plan(&j, &pods, ts(10), &fb);
        let interim = p.interim.unwrap();
        assert_eq!(interim.type_, "SuccessCriteriaMet");
        assert_eq!(interim.reason.as_deref(), Some("SuccessPolicy"));
        assert_eq!(p.delete, vec!["c".to_string()]);
        // The deleted running pod is not a failure.
        assert_eq!(p.status.uncounted_terminated_pods.unwrap().failed, None);
        assert_eq!(p.finished.unwrap().type_, "Complete");
    }

    #[test]
    fn backoff_limit_per_index() {
        let mut j = job(Some(3), 3);
        let spec = j.spec.as_mut().unwrap();
        spec.completion_mode = Some("Indexed".into());
        spec.backoff_limit_per_index = Some(1);
        spec.backoff_limit = Some(i32::MAX);
        let mut second = exited(pod("b", "Failed", Some(1)), 1);
        second
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(INDEX_FAILURE_COUNT.into(), "1".into());
        let pods = vec![
            pod("a", "Succeeded", Some(0)),
            exited(pod("a1", "Failed", Some(1)), 1),
            second,
            exited(pod("c", "Failed", Some(2)), 1),
        ];
        let p = plan(&j, &pods, ts(1005), &fb);
        assert_eq!(p.status.failed_indexes.as_deref(), Some("1"));
        // Index 2 failed once (back-off 10 s from 1000 → 5 s left).
        assert!(p.create_indexes.is_empty());
        assert_eq!(p.requeue, Some(Duration::from_secs(5)));
        let p = plan(&j, &pods, ts(1011), &fb);
        assert_eq!(p.create_indexes, vec![(2, 1, 0)]);
    }

    #[test]
    fn suspend_deletes_without_counting() {
        let mut j = job(Some(2), 2);
        j.spec.as_mut().unwrap().suspend = Some(true);
        let pods = vec![pod("a", "Running", None)];
        let p = plan(&j, &pods, ts(10), &fb);
        assert_eq!(p.delete, vec!["a".to_string()]);
        assert!(p.status.start_time.is_none());
        let c = p.status.conditions.clone().unwrap();
        assert_eq!(c[0].type_, "Suspended");
        assert_eq!(c[0].reason.as_deref(), Some("JobSuspended"));
        // The deleted pod, once terminating, is released but not failed.
        let mut gone = pod("a", "Running", None);
        gone.metadata.deletion_timestamp = Some(Time(ts(11)));
        j.status = Some(p.status);
        let p = plan(&j, &[gone], ts(12), &fb);
        assert_eq!(p.remove_finalizers, vec!["a".to_string()]);
        assert_eq!(p.status.uncounted_terminated_pods.unwrap().failed, None);
        // Resume: condition False JobResumed, start time reset.
        j.spec.as_mut().unwrap().suspend = Some(false);
        let p = plan(&j, &[], ts(20), &fb);
        let c = p.status.conditions.clone().unwrap();
        assert_eq!(c[0].status, "False");
        assert_eq!(c[0].reason.as_deref(), Some("JobResumed"));
        assert_eq!(p.status.start_time, Some(Time(ts(20))));
        assert_eq!(p.create, 2);
    }
}
