//! The TTL-after-finished controller (upstream pkg/controller/ttlafterfinished).
//!
//! Deletes a finished Job (condition Complete or Failed True)
//! `spec.ttlSecondsAfterFinished` seconds after that condition's transition
//! time. As upstream, the expiry is re-checked on a fresh read first, and
//! the Job is deleted with foreground propagation and a uid precondition;
//! the garbage collector then removes its pods.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::{Context, Error, Result, Shutdown};

/// When the Job finished: the transition time of its Complete or Failed
/// condition.
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// What to do with a Job at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ttl {
    /// Nothing: no TTL, not finished, or already being deleted.
    Ignore,
    /// The TTL expires in this long.
    Wait(Duration),
    /// The TTL has expired: delete the Job.
    Expired,
}

/// Upstream's processTTL.
pub fn check(job: &Job, now: Timestamp) -> Ttl {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ttl::Ignore;
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ttl::Ignore;
    }
    let Some(finished) = finish_time(job) else {
        return Ttl::Ignore;
    };
    let expire_ms = finished.as_millisecond() + i64::from(ttl) * 1000;
    let left = expire_ms - now.as_millisecond();
    if left <= 0 {
        Ttl::Expired
    } else {
        Ttl::Wait(Duration::from_millis(u64::try_from(left).unwrap_or(0)))
    }
}

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let jobs: Api<Job> = Api::all(ctx.client.clone());
    Controller::new(jobs, watcher::Config::default())
        .graceful_shutdown_on(shutdown.signal())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

fn error_policy(job: Arc<Job>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.error_action(&crate::key(&*job), err)
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*job);
    match check(&job, Timestamp::now()) {
        Ttl::Ignore => {
            ctx.succeeded(&key);
            return Ok(Action::await_change());
        }
        Ttl::Wait(d) => {
            ctx.succeeded(&key);
            return Ok(Action::requeue(d + Duration::from_millis(100)));
        }
        Ttl::Expired => {}
    }
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    // The cached TTL may be stale: decide again on a fresh read.
    let Some(fresh) = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get job {key}")))?
    else {
        return Ok(Action::await_change());
    };
    match check(&fresh, Timestamp::now()) {
        Ttl::Ignore => return Ok(Action::await_change()),
        Ttl::Wait(d) => return Ok(Action::requeue(d + Duration::from_millis(100))),
        Ttl::Expired => {}
    }
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    tracing::debug!(job = %key, "cleaning up finished job");
    match api.delete(&name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(Error::kube(format!("delete job {key}"))(e)),
    }
    ctx.succeeded(&key);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job(ttl: Option<i32>, cond: Option<(&str, &str, i64)>) -> Job {
        Job {
            spec: Some(JobSpec {
                ttl_seconds_after_finished: ttl,
                ..Default::default()
            }),
            status: Some(JobStatus {
                conditions: cond.map(|(t, s, at)| {
                    vec![JobCondition {
                        type_: t.into(),
                        status: s.into(),
                        last_transition_time: Some(Time(Timestamp::from_second(at).unwrap())),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn expiry() {
        let now = Timestamp::from_second(1000).unwrap();
        assert_eq!(
            check(&job(None, Some(("Complete", "True", 0))), now),
            Ttl::Ignore
        );
        assert_eq!(check(&job(Some(10), None), now), Ttl::Ignore);
        assert_eq!(
            check(&job(Some(10), Some(("Complete", "False", 0))), now),
            Ttl::Ignore
        );
        assert_eq!(
            check(&job(Some(10), Some(("Complete", "True", 995))), now),
            Ttl::Wait(Duration::from_secs(5))
        );
        assert_eq!(
            check(&job(Some(10), Some(("Failed", "True", 990))), now),
            Ttl::Expired
        );
        assert_eq!(
            check(&job(Some(0), Some(("Complete", "True", 1000))), now),
            Ttl::Expired
        );
        let mut deleting = job(Some(0), Some(("Complete", "True", 0)));
        deleting.metadata.deletion_timestamp = Some(Time(now));
        assert_eq!(check(&deleting, now), Ttl::Ignore);
    }
}
