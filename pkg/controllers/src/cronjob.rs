//! The CronJob controller (upstream pkg/controller/cronjob, the v2
//! controller).
//!
//! Parses the schedule as robfig/cron's standard parser does (five fields
//! with names, ranges, steps and `?`; `@yearly`, `@annually`, `@monthly`,
//! `@weekly`, `@daily`, `@midnight`, `@hourly`, `@every <duration>`; a
//! `TZ=`/`CRON_TZ=` prefix is honoured with the upstream warning), in
//! `spec.timeZone` (IANA, jiff's time-zone database) or the manager's local
//! zone. At each unmet schedule time it creates the Job
//! `<cronjob>-<minutes since epoch>` from the job template (honouring
//! suspend, startingDeadlineSeconds, concurrencyPolicy Allow/Forbid/Replace),
//! tracks `status.active`, `lastScheduleTime` and `lastSuccessfulTime`,
//! deletes finished Jobs beyond the history limits, and requeues itself
//! just after the next schedule time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use crate::{owner, Context, Error, Result, Shutdown};

/// Annotation with the Job's scheduled time (RFC 3339 in the CronJob's zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missed schedules beyond which the TooManyMissedTimes warning is given.
const MAX_MISSED: u64 = 100;
/// Requeue this long after the next schedule time (upstream nextScheduleDelta).
const NEXT_DELTA: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// Cron schedules

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Five cron fields.
    Cron(Box<CronSpec>),
    /// `@every <duration>`: a constant delay in seconds.
    Every(u64),
}

/// Bit sets of the matching minutes, hours, days, months and weekdays; the
/// star flags say whether the day fields started with `*` or `?`.
#[derive(Debug, Clone, PartialEq)]
pub struct CronSpec {
    minutes: u64,
    hours: u64,
    dom: u64,
    months: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

/// A schedule together with the zone it is read in.
#[derive(Debug, Clone)]
pub struct ZonedSchedule {
    /// The schedule.
    pub schedule: Schedule,
    /// The zone the fields are in.
    pub tz: TimeZone,
    /// True when the schedule carried a `TZ=`/`CRON_TZ=` prefix.
    pub tz_in_schedule: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn parse_value(s: &str, names: &[&str], offset: u32) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + offset);
    }
    s.parse::<u32>().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing \"{s}\": invalid syntax")
    })
}

/// One field (comma list of ranges with steps) as a bit set, and whether it
/// began with a star.
fn parse_field(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_offset: u32,
) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for expr in field.split(',') {
        let (range, step) = match expr.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (expr, None),
        };
        let (start, mut end);
        if range == "*" || range == "?" {
            start = min;
            end = max;
            star = true;
        } else {
            match range.split_once('-') {
                Some((a, b)) => {
                    start = parse_value(a, names, name_offset)?;
                    end = parse_value(b, names, name_offset)?;
                }
                None => {
                    start = parse_value(range, names, name_offset)?;
                    end = start;
                }
            }
        }
        let step = match step {
            Some(s) => {
                let v = s
                    .parse::<u32>()
                    .map_err(|_| format!("failed to parse int from {s}: strconv.Atoi: parsing \"{s}\": invalid syntax"))?;
                if range != "*" && range != "?" && !range.contains('-') {
                    end = max;
                }
                if v == 0 {
                    return Err(format!("step of range should be a positive number: {expr}"));
                }
                v
            }
            None => 1,
        };
        if start < min {
            return Err(format!(
                "beginning of range ({start}) below minimum ({min}): {expr}"
            ));
        }
        if end > max {
            return Err(format!(
                "end of range ({end}) above maximum ({max}): {expr}"
            ));
        }
        if start > end {
            return Err(format!(
                "beginning of range ({start}) beyond end of range ({end}): {expr}"
            ));
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

/// Parses a Go duration such as `1h30m`, `90s` or `1.5h` into seconds.
fn parse_go_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("time: invalid duration \"{s}\"");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * mult;
    }
    // robfig rounds the delay down to whole seconds, at least one second.
    Ok((total.floor() as u64).max(1))
}

/// Parses a schedule as `cron.ParseStandard` does, with an optional
/// `TZ=`/`CRON_TZ=` prefix; `zone` is `spec.timeZone` (None: local time).
pub fn parse(schedule: &str, zone: Option<&str>) -> Result<ZonedSchedule, String> {
    let mut s = schedule.trim();
    let mut tz = match zone {
        Some(z) => TimeZone::get(z).map_err(|e| format!("provided bad location {z}: {e}"))?,
        None => TimeZone::try_system().unwrap_or(TimeZone::UTC),
    };
    let mut tz_in_schedule = false;
    if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") {
        let (prefix, rest) = s
            .split_once(' ')
            .ok_or_else(|| format!("provided bad location {s}"))?;
        let name = prefix.split_once('=').map(|(_, n)| n).unwrap_or("");
        tz = TimeZone::get(name).map_err(|e| format!("provided bad location {name}: {e}"))?;
        tz_in_schedule = true;
        s = rest.trim();
    }
    if s.is_empty() {
        return Err("empty spec string".into());
    }
    let expanded = match s {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ if s.starts_with("@every ") => {
            let secs = parse_go_duration(s["@every ".len()..].trim())
                .map_err(|e| format!("failed to parse duration {s}: {e}"))?;
            return Ok(ZonedSchedule {
                schedule: Schedule::Every(secs),
                tz,
                tz_in_schedule,
            });
        }
        _ if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
        _ => s,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {s}",
            fields.len()
        ));
    }
    let (minutes, _) = parse_field(fields[0], 0, 59, &[], 0)?;
    let (hours, _) = parse_field(fields[1], 0, 23, &[], 0)?;
    let (dom, dom_star) = parse_field(fields[2], 1, 31, &[], 0)?;
    let (months, _) = parse_field(fields[3], 1, 12, &MONTHS, 1)?;
    let (dow, dow_star) = parse_field(fields[4], 0, 6, &DAYS, 0)?;
    Ok(ZonedSchedule {
        schedule: Schedule::Cron(Box::new(CronSpec {
            minutes,
            hours,
            dom,
            months,
            dow,
            dom_star,
            dow_star,
        })),
        tz,
        tz_in_schedule,
    })
}

impl CronSpec {
    fn day_matches(&self, d: Date) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

/// The timestamps of civil time `dt` in `tz`: none in a gap, two in a fold.
fn instants(tz: &TimeZone, dt: DateTime) -> Vec<Timestamp> {
    let amb = tz.to_ambiguous_timestamp(dt);
    let offs = match amb.offset() {
        AmbiguousOffset::Unambiguous { offset } => vec![offset],
        AmbiguousOffset::Gap { .. } => vec![],
        AmbiguousOffset::Fold { before, after } => vec![before, after],
    };
    offs.into_iter()
        .filter_map(|o| o.to_timestamp(dt).ok())
        .collect()
}

impl ZonedSchedule {
    /// The first schedule time strictly after `t` (None when there is none
    /// within five years). Times in a DST gap are skipped; times in a fold
    /// happen at both occurrences, as robfig/cron does.
    pub fn next(&self, t: Timestamp) -> Option<Timestamp> {
        let spec = match &self.schedule {
            Schedule::Every(secs) => {
                let s = t.as_second().checked_add(i64::try_from(*secs).ok()?)?;
                return Timestamp::from_second(s).ok();
            }
            Schedule::Cron(c) => c,
        };
        // Start two hours back in civil time so both sides of a fold are seen.
        let start = t.to_zoned(self.tz.clone()).datetime();
        let start_date = start.date();
        let scan_from = start
            .checked_sub(jiff::SignedDuration::from_hours(3))
            .ok()?;
        let mut best: Option<Timestamp> = None;
        let mut cutoff: Option<DateTime> = None;
        let mut date = scan_from.date();
        let limit = start_date.checked_add(jiff::Span::new().years(5)).ok()?;
        while date <= limit {
            if spec.months & (1 << date.month()) != 0 && spec.day_matches(date) {
                for h in 0..24i8 {
                    if spec.hours & (1 << h) == 0 {
                        continue;
                    }
                    for m in 0..60i8 {
                        if spec.minutes & (1 << m) == 0 {
                            continue;
                        }
                        let dt = date.at(h, m, 0, 0);
                        if dt < scan_from {
                            continue;
                        }
                        // Civil times this far past the best found cannot
                        // be earlier instants (offset changes are < 3 h).
                        if cutoff.is_some_and(|c| dt > c) {
                            return best;
                        }
                        for i in instants(&self.tz, dt) {
                            if i > t && best.is_none_or(|b| i < b) {
                                best = Some(i);
                                let civil = i.to_zoned(self.tz.clone()).datetime();
                                cutoff =
                                    civil.checked_add(jiff::SignedDuration::from_hours(3)).ok();
                            }
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        best
    }
}

// ---------------------------------------------------------------------------
// Missed schedules

/// Upstream's mostRecentScheduleTime: the latest schedule time in
/// `(earliest, now]` and how many there were (exact up to 101).
pub fn most_recent(
    s: &ZonedSchedule,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, u64) {
    let Some(t1) = s.next(earliest) else {
        return (None, 0);
    };
    if now < t1 {
        return (None, 0);
    }
    let mut last = t1;
    let mut count = 1u64;
    while count <= MAX_MISSED {
        match s.next(last) {
            Some(n) if n <= now => {
                last = n;
                count += 1;
            }
            _ => return (Some(last), count),
        }
    }
    // Many missed: find the latest one by searching back from now.
    let interval = s
        .next(t1)
        .map(|t2| t2.as_second() - t1.as_second())
        .unwrap_or(60)
        .max(1);
    let mut back = interval;
    let from = loop {
        let cand = Timestamp::from_second(now.as_second() - back).unwrap_or(last);
        if cand <= last {
            break last;
        }
        if s.next(cand).is_some_and(|n| n <= now) {
            break cand;
        }
        back = back.saturating_mul(2);
    };
    let mut cur = s.next(from).filter(|n| *n <= now).unwrap_or(last);
    while let Some(n) = s.next(cur).filter(|n| *n <= now) {
        cur = n;
    }
    let elapsed = now.as_second() - t1.as_second();
    (Some(cur), (elapsed / interval) as u64 + 1)
}

/// The earliest time from which schedules count: the last schedule time or
/// creation, moved up to `now - startingDeadlineSeconds` when later.
pub fn earliest_time(cj: &CronJob, now: Timestamp) -> Timestamp {
    let created = cj
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0)
        .unwrap_or(created);
    if let Some(sds) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
        if let Ok(deadline) = Timestamp::from_second(now.as_second() - sds) {
            if deadline > earliest {
                earliest = deadline;
            }
        }
    }
    earliest
}

/// How long until just after the next schedule time.
pub fn requeue_after(s: &ZonedSchedule, cj: &CronJob, now: Timestamp) -> Option<Duration> {
    let earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0)
        .or_else(|| cj.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    let base = match most_recent(s, earliest, now).0 {
        Some(t) => t,
        None => earliest,
    };
    let next = s.next(
        base.max(
            now.checked_sub(jiff::SignedDuration::from_secs(1))
                .unwrap_or(now),
        ),
    )?;
    let ms = next.as_millisecond() - now.as_millisecond();
    Some(Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0)) + NEXT_DELTA)
}

// ---------------------------------------------------------------------------
// Jobs

/// The Job's name for `scheduled`: `<cronjob>-<minutes since epoch>`.
pub fn job_name(cj_name: &str, scheduled: Timestamp) -> String {
    format!("{cj_name}-{}", scheduled.as_second().div_euclid(60))
}

/// Go's RFC 3339 (`Z` for a zero offset).
pub fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The Job the CronJob starts for `scheduled`.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let tmeta = spec.job_template.metadata.clone().unwrap_or_default();
    let tz = spec
        .time_zone
        .as_deref()
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or(TimeZone::UTC);
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339_in(scheduled, &tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner::new_controller_ref(cj)]),
            ..Default::default()
        },
        spec: spec.job_template.spec,
        status: None,
    }
}

fn job_finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    for c in conds {
        if c.status == "True" {
            if c.type_ == "Complete" {
                return Some("Complete");
            }
            if c.type_ == "Failed" {
                return Some("Failed");
            }
        }
    }
    None
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Finished jobs to delete beyond `limit`, oldest (by start time) first.
pub fn over_limit(mut finished: Vec<&Job>, limit: Option<i32>) -> Vec<String> {
    let Some(limit) = limit else {
        return Vec::new();
    };
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    if finished.len() <= limit {
        return Vec::new();
    }
    finished.sort_by_key(|j| {
        (
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0),
            j.metadata.creation_timestamp.as_ref().map(|t| t.0),
            j.name_any(),
        )
    });
    let n = finished.len() - limit;
    finished.iter().take(n).map(|j| j.name_any()).collect()
}

// ---------------------------------------------------------------------------
// Reconcile

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let cjs: Api<CronJob> = Api::all(ctx.client.clone());
    let jobs: Api<Job> = Api::all(ctx.client.clone());
    Controller::new(cjs, watcher::Config::default())
        .owns(jobs, watcher::Config::default())
        .graceful_shutdown_on(shutdown.signal())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

fn error_policy(cj: Arc<CronJob>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.error_action(&crate::key(&*cj), err)
}

async fn delete_job(
    ctx: &Context,
    api: &Api<Job>,
    cj_ref: &ObjectReference,
    name: &str,
) -> Result<bool> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {
            ctx.normal(cj_ref, "SuccessfulDelete", format!("Deleted job {name}"))
                .await;
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(true),
        Err(e) => {
            ctx.warning(cj_ref, "FailedDelete", format!("Deleted job: {e}"))
                .await;
            Err(Error::kube(format!("delete job {name}"))(e))
        }
    }
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*cj);
    let ns = cj.namespace().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let cjs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    // Decide on a fresh read: the cache may not have our last status write
    // yet (its active list), which would report our own Job as unexpected.
    let cj = match cjs
        .get_opt(&cj.name_any())
        .await
        .map_err(Error::kube(format!("get cronjob {key}")))?
    {
        Some(c) if c.metadata.uid.as_deref() == Some(uid.as_str()) => Arc::new(c),
        _ => return Ok(Action::await_change()),
    };
    let cj_ref = cj.object_ref(&());
    let now = Timestamp::now();
    let spec = cj.spec.clone().unwrap_or_default();

    let jobs: Vec<Job> = api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube(format!("list jobs in {ns}")))?
        .items
        .into_iter()
        .filter(|j| owner::is_controlled_by(&j.metadata, &uid))
        .collect();
    let old_status = cj.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let mut active = status.active.clone().unwrap_or_default();
    let in_active =
        |active: &[ObjectReference], u: &Option<String>| active.iter().any(|r| r.uid == *u);

    let children: BTreeSet<String> = jobs.iter().filter_map(|j| j.metadata.uid.clone()).collect();
    for j in &jobs {
        let found = in_active(&active, &j.metadata.uid);
        let fin = job_finished(j);
        if !found && fin.is_none() {
            ctx.warning(
                &cj_ref,
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    j.name_any()
                ),
            )
            .await;
        } else if found && fin.is_some() {
            active.retain(|r| r.uid != j.metadata.uid);
            ctx.normal(
                &cj_ref,
                "SawCompletedJob",
                format!(
                    "Saw completed job: {}, condition: {}",
                    j.name_any(),
                    fin.unwrap_or("")
                ),
            )
            .await;
        }
        if fin == Some("Complete") {
            if let Some(ct) = j.status.as_ref().and_then(|s| s.completion_time.as_ref()) {
                if status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|l| ct.0 > l.0)
                {
                    status.last_successful_time = Some(ct.clone());
                }
            }
        }
    }
    // Active references whose Job is gone.
    let mut missing = Vec::new();
    for r in &active {
        if r.uid.as_ref().is_some_and(|u| children.contains(u)) {
            continue;
        }
        let name = r.name.clone().unwrap_or_default();
        let exists = api
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("get job {ns}/{name}")))?
            .is_some_and(|j| j.metadata.uid == r.uid);
        if !exists {
            ctx.normal(
                &cj_ref,
                "MissingJob",
                format!("Active job went missing: {name}"),
            )
            .await;
            missing.push(r.uid.clone());
        }
    }
    active.retain(|r| !missing.contains(&r.uid));

    let mut requeue: Option<Duration> = None;
    let mut created: Option<Job> = None;
    let mut scheduled_at: Option<Timestamp> = None;
    'sync: {
        if cj.metadata.deletion_timestamp.is_some() || spec.suspend == Some(true) {
            break 'sync;
        }
        let sched = match parse(&spec.schedule, spec.time_zone.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                if let Some(tz) = spec
                    .time_zone
                    .as_deref()
                    .filter(|z| TimeZone::get(z).is_err())
                {
                    ctx.warning(
                        &cj_ref,
                        "UnknownTimeZone",
                        format!("invalid timeZone: {tz:?}: {e}"),
                    )
                    .await;
                } else {
                    ctx.warning(
                        &cj_ref,
                        "UnparseableSchedule",
                        format!("unparseable schedule: {:?} : {e}", spec.schedule),
                    )
                    .await;
                }
                break 'sync;
            }
        };
        if sched.tz_in_schedule {
            ctx.warning(
                &cj_ref,
                "UnsupportedSchedule",
                format!(
                    "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                    spec.schedule
                ),
            )
            .await;
        }
        requeue = requeue_after(&sched, &cj, now);
        let (most_recent, missed) = most_recent(&sched, earliest_time(&cj, now), now);
        let Some(scheduled) = most_recent else {
            break 'sync;
        };
        if missed > MAX_MISSED {
            ctx.warning(
                &cj_ref,
                "TooManyMissedTimes",
                format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
            )
            .await;
        }
        if let Some(sds) = spec.starting_deadline_seconds {
            if scheduled.as_second() + sds < now.as_second() {
                let when = scheduled
                    .to_zoned(TimeZone::UTC)
                    .strftime("%a, %d %b %Y %H:%M:%S %z")
                    .to_string();
                ctx.warning(
                    &cj_ref,
                    "MissSchedule",
                    format!("Missed scheduled time to start a job: {when}"),
                )
                .await;
                break 'sync;
            }
        }
        let name = job_name(&cj.name_any(), scheduled);
        let already = active
            .iter()
            .any(|r| r.name.as_deref() == Some(name.as_str()))
            || status
                .last_schedule_time
                .as_ref()
                .is_some_and(|t| t.0 == scheduled);
        if already {
            break 'sync;
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active.is_empty() {
            ctx.normal(
                &cj_ref,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            )
            .await;
            break 'sync;
        }
        if policy == "Replace" {
            for r in active.clone() {
                let n = r.name.clone().unwrap_or_default();
                delete_job(&ctx, &api, &cj_ref, &n).await?;
                active.retain(|a| a.uid != r.uid);
            }
        }
        let job = job_from_template(&cj, scheduled);
        match api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                ctx.normal(
                    &cj_ref,
                    "SuccessfulCreate",
                    format!("Created job {}", j.name_any()),
                )
                .await;
                created = Some(j);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api
                    .get_opt(&name)
                    .await
                    .map_err(Error::kube(format!("get job {ns}/{name}")))?;
                match existing {
                    Some(j) if owner::is_controlled_by(&j.metadata, &uid) => {
                        if in_active(&active, &j.metadata.uid) {
                            break 'sync;
                        }
                        created = Some(j);
                    }
                    _ => break 'sync,
                }
            }
            Err(e) => {
                ctx.warning(&cj_ref, "FailedCreate", format!("Error creating job: {e}"))
                    .await;
                return Err(Error::kube(format!("create job {ns}/{name}"))(e));
            }
        }
        scheduled_at = Some(scheduled);
    }
    if let Some(j) = &created {
        active.push(job_ref(j));
    }
    if let Some(t) = scheduled_at {
        status.last_schedule_time = Some(Time(t));
    }

    // History limits.
    let mut deleted = Vec::new();
    let succeeded: Vec<&Job> = jobs
        .iter()
        .filter(|j| job_finished(j) == Some("Complete"))
        .collect();
    let failed: Vec<&Job> = jobs
        .iter()
        .filter(|j| job_finished(j) == Some("Failed"))
        .collect();
    for name in over_limit(succeeded, spec.successful_jobs_history_limit)
        .into_iter()
        .chain(over_limit(failed, spec.failed_jobs_history_limit))
    {
        delete_job(&ctx, &api, &cj_ref, &name).await?;
        deleted.push(name);
    }
    active.retain(|r| !r.name.as_ref().is_some_and(|n| deleted.contains(n)));

    status.active = if active.is_empty() {
        None
    } else {
        Some(active)
    };
    if normalize(&status) != normalize(&old_status) {
        let mut obj = (*cj).clone();
        obj.status = Some(status);
        cjs.replace_status(&cj.name_any(), &PostParams::default(), &obj)
            .await
            .map_err(Error::kube(format!("update status of cronjob {key}")))?;
    }
    ctx.succeeded(&key);
    Ok(match requeue {
        Some(d) => Action::requeue(d.min(ctx.config.resync)),
        None => Action::requeue(ctx.config.resync),
    })
}

fn normalize(s: &CronJobStatus) -> CronJobStatus {
    let mut s = s.clone();
    if s.active.as_ref().is_some_and(|a| a.is_empty()) {
        s.active = None;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn utc(s: &str) -> ZonedSchedule {
        parse(s, Some("UTC")).unwrap()
    }

    #[test]
    fn parses_standard_and_descriptors() {
        for ok in [
            "*/5 * * * *",
            "0 0 1 1 *",
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "@every 1h30m",
            "0 9 * JAN-MAR mon-fri",
            "? * * * ?",
            "5/15 * * * *",
            "TZ=Europe/Berlin 0 3 * * *",
            "CRON_TZ=UTC 0 3 * * *",
        ] {
            assert!(parse(ok, Some("UTC")).is_ok(), "{ok}");
        }
        for bad in [
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * * 7",
            "@often",
            "*/0 * * * *",
            "TZ=Nowhere/City * * * * *",
            "",
        ] {
            assert!(parse(bad, Some("UTC")).is_err(), "{bad}");
        }
        assert!(parse("* * * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn next_times() {
        let s = utc("*/15 * * * *");
        assert_eq!(
            s.next(at("2024-01-01T10:07:30Z")),
            Some(at("2024-01-01T10:15:00Z"))
        );
        assert_eq!(
            s.next(at("2024-01-01T10:15:00Z")),
            Some(at("2024-01-01T10:30:00Z"))
        );
        let s = utc("5/20 * * * *");
        assert_eq!(
            s.next(at("2024-01-01T10:26:00Z")),
            Some(at("2024-01-01T10:45:00Z"))
        );
        let s = utc("@monthly");
        assert_eq!(
            s.next(at("2024-01-31T10:00:00Z")),
            Some(at("2024-02-01T00:00:00Z"))
        );
        let s = utc("0 0 29 2 *");
        assert_eq!(
            s.next(at("2024-03-01T00:00:00Z")),
            Some(at("2028-02-29T00:00:00Z"))
        );
        let s = utc("0 0 30 2 *");
        assert_eq!(s.next(at("2024-03-01T00:00:00Z")), None);
        // Day of month OR day of week when both are restricted...
        let s = utc("0 0 13 * 5");
        assert_eq!(
            s.next(at("2024-09-01T00:00:00Z")),
            Some(at("2024-09-06T00:00:00Z"))
        );
        // ...AND when one starts with a star.
        let s = utc("0 0 */1 * 5");
        assert_eq!(
            s.next(at("2024-09-01T00:00:00Z")),
            Some(at("2024-09-06T00:00:00Z"))
        );
        let s = utc("0 0 13 * *");
        assert_eq!(
            s.next(at("2024-09-01T00:00:00Z")),
            Some(at("2024-09-13T00:00:00Z"))
        );
        let s = utc("@every 90s");
        assert_eq!(
            s.next(at("2024-01-01T00:00:00Z")),
            Some(at("2024-01-01T00:01:30Z"))
        );
    }

    #[test]
    fn time_zones_and_dst() {
        let s = parse("0 9 * * *", Some("America/New_York")).unwrap();
        // 09:00 EST = 14:00 UTC in winter, 13:00 UTC in summer.
        assert_eq!(
            s.next(at("2024-01-10T15:00:00Z")),
            Some(at("2024-01-11T14:00:00Z"))
        );
        assert_eq!(
            s.next(at("2024-07-10T15:00:00Z")),
            Some(at("2024-07-11T13:00:00Z"))
        );
        // Spring forward (10 March 2024): 02:30 does not exist that day.
        let s = parse("30 2 * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            s.next(at("2024-03-09T12:00:00Z")),
            Some(at("2024-03-11T06:30:00Z"))
        );
        // Fall back (3 November 2024): 01:30 happens twice.
        let s = parse("30 1 * * *", Some("America/New_York")).unwrap();
        let first = s.next(at("2024-11-03T04:00:00Z")).unwrap();
        assert_eq!(first, at("2024-11-03T05:30:00Z"));
        assert_eq!(s.next(first), Some(at("2024-11-03T06:30:00Z")));
        // The TZ= prefix overrides the zone.
        let s = parse("TZ=Asia/Tokyo 0 0 * * *", None).unwrap();
        assert!(s.tz_in_schedule);
        assert_eq!(
            s.next(at("2024-01-01T00:00:00Z")),
            Some(at("2024-01-01T15:00:00Z"))
        );
    }

    fn cj(schedule: &str, created: &str, last: Option<&str>, sds: Option<i64>) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("hello".into()),
                namespace: Some("default".into()),
                uid: Some("cuid".into()),
                creation_timestamp: Some(Time(at(created))),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::batch::v1::CronJobSpec {
                schedule: schedule.into(),
                starting_deadline_seconds: sds,
                time_zone: Some("UTC".into()),
                ..Default::default()
            }),
            status: Some(CronJobStatus {
                last_schedule_time: last.map(|l| Time(at(l))),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn missed_schedules() {
        let s = utc("*/1 * * * *");
        let c = cj("*/1 * * * *", "2024-01-01T10:00:30Z", None, None);
        let now = at("2024-01-01T10:00:50Z");
        assert_eq!(most_recent(&s, earliest_time(&c, now), now), (None, 0));
        let now = at("2024-01-01T10:03:10Z");
        assert_eq!(
            most_recent(&s, earliest_time(&c, now), now),
            (Some(at("2024-01-01T10:03:00Z")), 3)
        );
        // Long outage: many missed, the most recent still found.
        let now = at("2024-01-02T10:00:10Z");
        let (t, n) = most_recent(&s, earliest_time(&c, now), now);
        assert_eq!(t, Some(at("2024-01-02T10:00:00Z")));
        assert!(n > 100);
        // startingDeadlineSeconds narrows the window.
        let c = cj("*/1 * * * *", "2024-01-01T10:00:30Z", None, Some(200));
        let (t, n) = most_recent(&s, earliest_time(&c, now), now);
        assert_eq!(t, Some(at("2024-01-02T10:00:00Z")));
        assert!(n <= 4);
        // Already scheduled: requeue just after the next minute.
        let c = cj(
            "*/1 * * * *",
            "2024-01-01T10:00:30Z",
            Some("2024-01-01T10:03:00Z"),
            None,
        );
        let now = at("2024-01-01T10:03:10Z");
        assert_eq!(most_recent(&s, earliest_time(&c, now), now), (None, 0));
        assert_eq!(
            requeue_after(&s, &c, now),
            Some(Duration::from_millis(50_100))
        );
    }

    #[test]
    fn job_naming_and_annotation() {
        let mut c = cj("*/1 * * * *", "2024-01-01T10:00:30Z", None, None);
        c.spec.as_mut().unwrap().time_zone = Some("Europe/Paris".into());
        let j = job_from_template(&c, at("2024-01-01T10:03:00Z"));
        assert_eq!(j.metadata.name.as_deref(), Some("hello-28401723"));
        assert_eq!(
            j.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP],
            "2024-01-01T11:03:00+01:00"
        );
        assert_eq!(
            j.metadata.owner_references.as_ref().unwrap()[0].kind,
            "CronJob"
        );
        assert_eq!(
            rfc3339_in(at("2024-01-01T10:03:00Z"), &TimeZone::UTC),
            "2024-01-01T10:03:00Z"
        );
    }

    #[test]
    fn history_limits() {
        let mk = |name: &str, start: i64| Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: None,
            status: Some(k8s_openapi::api::batch::v1::JobStatus {
                start_time: Some(Time(Timestamp::from_second(start).unwrap())),
                ..Default::default()
            }),
        };
        let jobs = [mk("c", 30), mk("a", 10), mk("d", 40), mk("b", 20)];
        let refs: Vec<&Job> = jobs.iter().collect();
        assert_eq!(over_limit(refs.clone(), Some(3)), vec!["a".to_string()]);
        assert_eq!(over_limit(refs.clone(), Some(1)), vec!["a", "b", "c"]);
        assert!(over_limit(refs.clone(), None).is_empty());
        assert_eq!(over_limit(refs, Some(0)).len(), 4);
    }
}
