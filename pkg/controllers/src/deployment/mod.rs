//! The Deployment controller, as upstream's pkg/controller/deployment: it
//! manages ReplicaSets named `<deployment>-<pod-template-hash>` (adopting
//! and releasing them by selector), rolls out template changes with the
//! RollingUpdate or Recreate strategy, scales ReplicaSets proportionally
//! when the Deployment is resized mid-rollout, keeps revision annotations
//! (so `kubectl rollout history|undo` work), cleans up old ReplicaSets
//! beyond revisionHistoryLimit and reports status and the Available and
//! Progressing conditions.
//!
//! The decisions live in the submodules without I/O: [`util`] (hash,
//! naming, annotations, fenceposts), [`rolling`], [`sync`] (scaling and
//! cleanup) and [`progress`] (status and conditions); this file reads the
//! ReplicaSets live and applies the decisions.

pub mod progress;
pub mod rolling;
pub mod sync;
pub mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, Controller};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::owner::{self, Claim};
use crate::pods;
use crate::{status, Context, Error, Result, Shutdown};

use util::RsState;

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let api: Api<Deployment> = Api::all(ctx.client.clone());
    let rs_api: Api<ReplicaSet> = Api::all(ctx.client.clone());
    let pod_api: Api<Pod> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    let store2 = store.clone();
    controller
        .watches(rs_api, watcher::Config::default(), move |rs| {
            deployments_of_rs(&store, &rs)
        })
        .watches(pod_api, watcher::Config::default(), move |pod| {
            recreate_deployment_of_pod(&store2, &pod)
        })
        .graceful_shutdown_on(shutdown.signal())
        .run(
            reconcile,
            |obj: Arc<Deployment>, err: &Error, ctx: Arc<Context>| {
                ctx.error_action(&crate::key(&*obj), err)
            },
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    Ok(())
}

fn selector_of(d: &Deployment) -> Option<Selector> {
    d.spec
        .as_ref()
        .and_then(|s| pods::selector(&s.selector).ok())
}

/// The Deployments to sync when `rs` changes: its controller, or for an
/// orphan every Deployment whose selector matches it.
fn deployments_of_rs(store: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    match owner::controller_ref(&rs.metadata) {
        Some(r) if r.kind == "Deployment" => vec![ObjectRef::new(&r.name).within(&ns)],
        Some(_) => Vec::new(),
        None => store
            .state()
            .iter()
            .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
            .filter(|d| {
                selector_of(d).is_some_and(|s| pods::matches(&s, rs.metadata.labels.as_ref()))
            })
            .map(|d| ObjectRef::from_obj(&**d))
            .collect(),
    }
}

/// The Recreate Deployment to sync when one of its pods changes (it waits
/// for old pods to be gone): found through the owning ReplicaSet's name,
/// `<deployment>-<pod-template-hash>`.
fn recreate_deployment_of_pod(
    store: &Store<Deployment>,
    pod: &Pod,
) -> Option<ObjectRef<Deployment>> {
    let r = owner::controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
    let hash = pod.labels().get(util::POD_TEMPLATE_HASH)?;
    let name = r.name.strip_suffix(&format!("-{hash}"))?;
    let ns = pod.namespace().unwrap_or_default();
    let oref = ObjectRef::new(name).within(&ns);
    let d = store.get(&oref)?;
    (!util::is_rolling(&d)).then_some(oref)
}

async fn reconcile(obj: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*obj);
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(d) = api
        .get_opt(&obj.name_any())
        .await
        .map_err(Error::kube(format!("get deployment {key}")))?
    else {
        return Ok(Action::await_change());
    };
    let objref = d.object_ref(&());
    let mut s = Syncer {
        rs_api: Api::namespaced(ctx.client.clone(), &ns),
        ctx: ctx.clone(),
        api,
        ns,
        objref,
        d,
        rss: Vec::new(),
    };
    let requeue = s.sync().await?;
    ctx.succeeded(&key);
    Ok(Action::requeue(
        requeue.unwrap_or(ctx.config.resync).min(ctx.config.resync),
    ))
}

/// One sync of one Deployment: the live Deployment and its ReplicaSets,
/// updated in place as they are written.
struct Syncer {
    ctx: Arc<Context>,
    api: Api<Deployment>,
    rs_api: Api<ReplicaSet>,
    ns: String,
    objref: ObjectReference,
    d: Deployment,
    rss: Vec<ReplicaSet>,
}

impl Syncer {
    fn name(&self) -> String {
        self.d.name_any()
    }

    fn states(&self) -> Vec<RsState> {
        self.rss.iter().map(RsState::of).collect()
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.rss
            .iter()
            .position(|r| r.metadata.name.as_deref() == Some(name))
    }

    async fn sync(&mut self) -> Result<Option<Duration>> {
        let spec_sel = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let empty = spec_sel
            .match_labels
            .as_ref()
            .is_none_or(BTreeMap::is_empty)
            && spec_sel
                .match_expressions
                .as_ref()
                .is_none_or(Vec::is_empty);
        if empty {
            self.ctx
                .warning(
                    &self.objref,
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required."
                        .into(),
                )
                .await;
            let cur = self.d.status.clone().unwrap_or_default();
            let generation = self.d.metadata.generation.unwrap_or(0);
            if cur.observed_generation.unwrap_or(0) < generation {
                let mut st = cur;
                st.observed_generation = Some(generation);
                self.write_status(st).await?;
            }
            return Ok(None);
        }
        let sel = pods::selector(&spec_sel)?;
        self.claim_replica_sets(&sel).await?;

        if self.d.metadata.deletion_timestamp.is_some() {
            let new = self.new_rs(false).await?;
            self.sync_deployment_status(new).await?;
            return Ok(None);
        }

        if let Some(st) = progress::paused_condition(&self.d, Timestamp::now()) {
            self.write_status(st).await?;
        }
        if util::paused(&self.d) {
            return self.sync_scale().await;
        }
        self.new_rs(false).await?;
        let states = self.states();
        if sync::is_scaling_event(&states, util::replicas(&self.d)) {
            return self.sync_scale().await;
        }
        if util::is_rolling(&self.d) {
            self.rollout_rolling().await
        } else {
            self.rollout_recreate(&sel).await
        }
    }

    /// Lists the namespace's ReplicaSets and keeps the ones this Deployment
    /// controls, adopting matching orphans and releasing non-matching ones.
    async fn claim_replica_sets(&mut self, sel: &Selector) -> Result<()> {
        let list = self
            .rs_api
            .list(&ListParams::default())
            .await
            .map_err(Error::kube(format!("list replicasets in {}", self.ns)))?;
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let owner_ref = owner::new_controller_ref(&self.d);
        let mut out = Vec::new();
        for rs in list.items {
            let matching = pods::matches(sel, rs.metadata.labels.as_ref());
            match owner::claim(&rs.metadata, &uid, matching) {
                Claim::Owned => out.push(rs),
                Claim::Adopt if !deleting => {
                    if let Some(rs) = owner::adopt(&self.rs_api, &rs, &owner_ref).await? {
                        out.push(rs);
                    }
                }
                Claim::Release => owner::release(&self.rs_api, &rs, &uid).await?,
                Claim::Adopt | Claim::Ignore => {}
            }
        }
        self.rss = out;
        Ok(())
    }

    /// Writes the Deployment's status (a merge patch of the whole status).
    async fn write_status(&mut self, st: DeploymentStatus) -> Result<()> {
        let mut st = serde_json::to_value(&st).unwrap_or_else(|_| json!({}));
        if let Some(m) = st.as_object_mut() {
            // An absent list would keep the old conditions in a merge patch.
            m.entry("conditions").or_insert(serde_json::Value::Null);
        }
        let name = self.name();
        self.d = status::write(&self.api, &name, &format!("{}/{name}", self.ns), &st).await?;
        Ok(())
    }

    /// Sets the Deployment's revision annotation.
    async fn write_revision(&mut self, revision: &str) -> Result<()> {
        if self.d.annotations().get(util::REVISION).map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {util::REVISION: revision}}});
        let d = self
            .api
            .patch(&self.name(), &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(Error::kube(format!(
                "update revision of deployment {}/{}",
                self.ns,
                self.name()
            )))?;
        // Keep the status we may have changed in memory.
        let st = self.d.status.take();
        self.d = d;
        if st.is_some() {
            self.d.status = st;
        }
        Ok(())
    }

    /// The new ReplicaSet (matching the template), with its annotations
    /// synced; created when `create` and missing (getNewReplicaSet).
    async fn new_rs(&mut self, create: bool) -> Result<Option<usize>> {
        let template = util::template(&self.d);
        let existing = util::find_new_rs(&template, &self.rss);
        let max_old = self
            .rss
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != existing)
            .map(|(_, r)| util::revision(&r.metadata))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        let has_deadline = util::progress_deadline(&self.d).is_some();
        let now = Timestamp::now();

        if let Some(i) = existing {
            let mut rs = self.rss[i].clone();
            let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
            let changed =
                util::set_new_rs_annotations(&self.d, &mut annotations, new_revision, true);
            let min_ready = util::min_ready_seconds(&self.d);
            let spec = rs.spec.get_or_insert_with(Default::default);
            let mrs_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready;
            if changed || mrs_changed {
                spec.min_ready_seconds = Some(min_ready);
                rs.metadata.annotations = Some(annotations);
                let rs = self
                    .rs_api
                    .replace(&rs.name_any(), &PostParams::default(), &rs)
                    .await
                    .map_err(Error::kube(format!(
                        "update replicaset {}/{}",
                        self.ns,
                        rs.name_any()
                    )))?;
                self.rss[i] = rs;
                return Ok(Some(i));
            }
            let rev = annotations.get(util::REVISION).cloned().unwrap_or_default();
            self.write_revision(&rev).await?;
            let st = self.d.status.clone().unwrap_or_default();
            if has_deadline && progress::get_condition(&st, "Progressing").is_none() {
                let mut st = st;
                progress::set_condition(
                    &mut st,
                    progress::condition(
                        "Progressing",
                        "True",
                        progress::FOUND_NEW_RS_REASON,
                        format!("Found new replica set \"{}\"", rs.name_any()),
                        now,
                    ),
                );
                self.write_status(st).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }

        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = util::template_hash(&template, collision);
        let mut rs = util::new_replica_set(&self.d, &hash, 0);
        let mut states = self.states();
        let current_total: i32 = states.iter().map(|r| r.replicas).sum();
        let replicas = rolling::new_rs_new_replicas(
            util::is_rolling(&self.d),
            util::replicas(&self.d),
            util::raw_max_surge(&self.d),
            current_total,
            0,
        );
        if let Some(spec) = rs.spec.as_mut() {
            spec.replicas = Some(replicas);
        }
        let mut annotations = BTreeMap::new();
        util::set_new_rs_annotations(&self.d, &mut annotations, new_revision, false);
        rs.metadata.annotations = Some(annotations);
        let rs_name = rs.name_any();
        let mut already_exists = false;
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(c) => c,
            Err(e) => {
                let e = Error::kube(format!("create replicaset {}/{rs_name}", self.ns))(e);
                if e.is_conflict() {
                    // AlreadyExists: ours (a lagging view) or a hash collision.
                    let found = self
                        .rs_api
                        .get_opt(&rs_name)
                        .await
                        .map_err(Error::kube(format!("get replicaset {}/{rs_name}", self.ns)))?;
                    let uid = self.d.metadata.uid.clone().unwrap_or_default();
                    match found {
                        Some(f)
                            if owner::is_controlled_by(&f.metadata, &uid)
                                && f.spec
                                    .as_ref()
                                    .and_then(|s| s.template.as_ref())
                                    .is_some_and(|t| util::equal_ignore_hash(t, &template)) =>
                        {
                            already_exists = true;
                            f
                        }
                        _ => {
                            let mut st = self.d.status.clone().unwrap_or_default();
                            st.collision_count = Some(st.collision_count.unwrap_or(0) + 1);
                            self.write_status(st).await?;
                            return Err(e);
                        }
                    }
                } else {
                    let msg = format!(
                        "Failed to create new replica set \"{rs_name}\": {}",
                        e.api_message()
                    );
                    if has_deadline {
                        let mut st = self.d.status.clone().unwrap_or_default();
                        progress::set_condition(
                            &mut st,
                            progress::condition(
                                "Progressing",
                                "False",
                                progress::FAILED_RS_CREATE_REASON,
                                msg.clone(),
                                now,
                            ),
                        );
                        let _ = self.write_status(st).await;
                    }
                    self.ctx
                        .warning(&self.objref, progress::FAILED_RS_CREATE_REASON, msg)
                        .await;
                    return Err(e);
                }
            }
        };
        if !already_exists && replicas > 0 {
            self.ctx
                .normal(
                    &self.objref,
                    "ScalingReplicaSet",
                    format!(
                        "Scaled up replica set {} from 0 to {replicas}",
                        created.name_any()
                    ),
                )
                .await;
        }
        let rev = util::revision(&created.metadata)
            .max(new_revision)
            .to_string();
        let created_name = created.name_any();
        self.rss.push(created);
        states.clear();
        self.write_revision(&rev).await?;
        if !already_exists && has_deadline {
            let mut st = self.d.status.clone().unwrap_or_default();
            progress::set_condition(
                &mut st,
                progress::condition(
                    "Progressing",
                    "True",
                    progress::NEW_RS_REASON,
                    format!("Created new replica set \"{created_name}\""),
                    now,
                ),
            );
            self.write_status(st).await?;
        }
        Ok(self.index_of(&created_name))
    }

    /// Resizes the ReplicaSet `name` to `size`, refreshing its replicas
    /// annotations; records ScalingReplicaSet when the size changed.
    async fn scale_rs(&mut self, name: &str, size: i32, op: &str, annotate: bool) -> Result<bool> {
        let Some(i) = self.index_of(name) else {
            return Ok(false);
        };
        let mut rs = self.rss[i].clone();
        let old = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if !annotate && old == size {
            return Ok(false);
        }
        let r = util::replicas(&self.d);
        let max = r + util::max_surge(&self.d);
        let size_changed = old != size;
        if !size_changed
            && !util::replicas_annotations_need_update(rs.metadata.annotations.as_ref(), r, max)
        {
            return Ok(false);
        }
        rs.spec.get_or_insert_with(Default::default).replicas = Some(size);
        util::set_replicas_annotations(
            rs.metadata.annotations.get_or_insert_with(Default::default),
            r,
            max,
        );
        let rs = self
            .rs_api
            .replace(name, &PostParams::default(), &rs)
            .await
            .map_err(Error::kube(format!("scale replicaset {}/{name}", self.ns)))?;
        self.rss[i] = rs;
        if size_changed {
            let op = if op.is_empty() {
                if old < size {
                    "up"
                } else {
                    "down"
                }
            } else {
                op
            };
            self.ctx
                .normal(
                    &self.objref,
                    "ScalingReplicaSet",
                    format!("Scaled {op} replica set {name} from {old} to {size}"),
                )
                .await;
        }
        Ok(size_changed)
    }

    fn split(&self, new: Option<usize>) -> (Option<RsState>, Vec<RsState>) {
        let states = self.states();
        let new_state = new.and_then(|i| states.get(i).cloned());
        let olds = states
            .into_iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new)
            .map(|(_, s)| s)
            .collect();
        (new_state, olds)
    }

    /// Scaling only (paused, or the Deployment was resized): upstream's sync.
    async fn sync_scale(&mut self) -> Result<Option<Duration>> {
        let new = self.new_rs(false).await?;
        let (new_state, olds) = self.split(new);
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let ops = sync::plan_scale(
            new_state.as_ref(),
            &olds,
            util::replicas(&self.d),
            util::max_surge(&self.d),
            util::is_rolling(&self.d),
            status_replicas,
        );
        for op in ops {
            self.scale_rs(&op.name, op.size, op.op, op.annotate).await?;
        }
        if util::paused(&self.d) {
            self.cleanup(new).await?;
        }
        self.sync_deployment_status(new).await?;
        Ok(None)
    }

    async fn sync_deployment_status(&mut self, new: Option<usize>) -> Result<()> {
        let states = self.states();
        let new_state = new.and_then(|i| states.get(i));
        let st = progress::calculate_status(&self.d, &states, new_state, Timestamp::now());
        if st != progress::normalize(&self.d.status.clone().unwrap_or_default()) {
            self.write_status(st).await?;
        }
        Ok(())
    }

    /// Deletes old ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&mut self, new: Option<usize>) -> Result<()> {
        let Some(limit) = util::revision_history_limit(&self.d) else {
            return Ok(());
        };
        let (_, olds) = self.split(new);
        for name in sync::plan_cleanup(&olds, limit) {
            match self.rs_api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    return Err(Error::kube(format!("delete replicaset {}/{name}", self.ns))(e))
                }
            }
        }
        Ok(())
    }

    fn replica_failure(&self, new: Option<usize>) -> Option<DeploymentCondition> {
        let failure = |rs: &ReplicaSet| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "ReplicaFailure")
                .map(|c| DeploymentCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
        };
        new.and_then(|i| self.rss.get(i))
            .and_then(failure)
            .or_else(|| self.rss.iter().find_map(failure))
    }

    async fn sync_rollout_status(&mut self, new: Option<usize>) -> Result<Option<Duration>> {
        let states = self.states();
        let new_state = new.and_then(|i| states.get(i));
        let now = Timestamp::now();
        let st =
            progress::rollout_status(&self.d, &states, new_state, self.replica_failure(new), now);
        let requeue = progress::requeue_after(&self.d, &st, now);
        if st != progress::normalize(&self.d.status.clone().unwrap_or_default()) {
            self.write_status(st).await?;
        }
        Ok(requeue)
    }

    async fn rollout_rolling(&mut self) -> Result<Option<Duration>> {
        let Some(new) = self.new_rs(true).await? else {
            return Err(Error::Invalid(
                "new replica set missing after creation".into(),
            ));
        };
        let new_name = self.rss[new].name_any();
        // Scale up, if we can.
        let states = self.states();
        let new_state = states[new].clone();
        let r = util::replicas(&self.d);
        let scaled_up = if new_state.replicas > r {
            self.scale_rs(&new_name, r, "down", false).await?
        } else if new_state.replicas < r {
            let total: i32 = states.iter().map(|s| s.replicas).sum();
            let size = rolling::new_rs_new_replicas(
                true,
                r,
                util::raw_max_surge(&self.d),
                total,
                new_state.replicas,
            );
            self.scale_rs(&new_name, size, "up", false).await?
        } else {
            false
        };
        if scaled_up {
            return self.sync_rollout_status(Some(new)).await;
        }
        // Scale down, if we can.
        let states = self.states();
        let plan =
            rolling::plan_old_scale_down(&states, &states[new], r, util::max_unavailable(&self.d));
        let mut scaled_down = false;
        for (name, size) in plan {
            scaled_down |= self.scale_rs(&name, size, "down", false).await?;
        }
        if scaled_down {
            return self.sync_rollout_status(Some(new)).await;
        }
        let cur = self.d.status.clone().unwrap_or_default();
        if progress::deployment_complete(&self.d, &cur) {
            self.cleanup(Some(new)).await?;
        }
        self.sync_rollout_status(self.index_of(&new_name)).await
    }

    async fn rollout_recreate(&mut self, sel: &Selector) -> Result<Option<Duration>> {
        let mut new = self.new_rs(false).await?;
        let (_, olds) = self.split(new);
        let mut scaled_down = false;
        for old in olds.iter().filter(|o| o.replicas > 0) {
            scaled_down |= self.scale_rs(&old.name, 0, "down", false).await?;
        }
        if scaled_down {
            return self.sync_rollout_status(new).await;
        }
        if self.old_pods_running(new, sel).await? {
            return self.sync_rollout_status(new).await;
        }
        if new.is_none() {
            new = self.new_rs(true).await?;
        }
        if let Some(i) = new {
            let name = self.rss[i].name_any();
            self.scale_rs(&name, util::replicas(&self.d), "up", false)
                .await?;
            let cur = self.d.status.clone().unwrap_or_default();
            if progress::deployment_complete(&self.d, &cur) {
                self.cleanup(Some(i)).await?;
            }
            new = self.index_of(&name);
        }
        self.sync_rollout_status(new).await
    }

    /// Old ReplicaSets still report replicas, or pods of theirs that have
    /// not terminated still exist (even while being deleted).
    async fn old_pods_running(&self, new: Option<usize>, sel: &Selector) -> Result<bool> {
        let (_, olds) = self.split(new);
        if olds.iter().any(|o| o.status_replicas > 0) {
            return Ok(true);
        }
        let new_uid = new.and_then(|i| self.rss[i].metadata.uid.clone());
        let old_uids: Vec<String> = self
            .rss
            .iter()
            .filter_map(|r| r.metadata.uid.clone())
            .filter(|u| Some(u) != new_uid.as_ref())
            .collect();
        let pods = pods::list(&self.ctx.client, &self.ns, sel).await?;
        Ok(pods.iter().any(|p| {
            owner::controller_ref(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid))
                && !matches!(pods::phase(p), "Succeeded" | "Failed")
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn pod_of(rs: &str, hash: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("{rs}-abcde")),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([(
                    util::POD_TEMPLATE_HASH.to_string(),
                    hash.to_string(),
                )])),
                owner_references: Some(vec![OwnerReference {
                    kind: "ReplicaSet".into(),
                    name: rs.into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn pods_wake_only_recreate_deployments() {
        let (store, mut writer) = kube::runtime::reflector::store::<Deployment>();
        let rolling = util::tests::deploy(1, IntOrString::Int(1), IntOrString::Int(0));
        let mut recreate = rolling.clone();
        recreate.metadata.name = Some("rec".into());
        if let Some(s) = recreate.spec.as_mut() {
            s.strategy = Some(k8s_openapi::api::apps::v1::DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            });
        }
        writer.apply_watcher_event(&watcher::Event::Apply(rolling));
        writer.apply_watcher_event(&watcher::Event::Apply(recreate));
        assert_eq!(
            recreate_deployment_of_pod(&store, &pod_of("rec-5d4f8", "5d4f8")).map(|r| r.name),
            Some("rec".to_string())
        );
        assert!(recreate_deployment_of_pod(&store, &pod_of("web-5d4f8", "5d4f8")).is_none());
        assert!(recreate_deployment_of_pod(&store, &pod_of("rec-5d4f8", "other")).is_none());
    }

    #[test]
    fn replica_sets_map_to_owner_or_matching_deployments() {
        let (store, mut writer) = kube::runtime::reflector::store::<Deployment>();
        writer.apply_watcher_event(&watcher::Event::Apply(util::tests::deploy(
            1,
            IntOrString::Int(1),
            IntOrString::Int(0),
        )));
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("orphan".into()),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            },
            ..Default::default()
        };
        let names =
            |v: Vec<ObjectRef<Deployment>>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(
            names(deployments_of_rs(&store, &rs)),
            vec!["web".to_string()]
        );
        rs.metadata.labels = None;
        assert!(deployments_of_rs(&store, &rs).is_empty());
        rs.metadata.owner_references = Some(vec![OwnerReference {
            kind: "Deployment".into(),
            name: "other".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        assert_eq!(
            names(deployments_of_rs(&store, &rs)),
            vec!["other".to_string()]
        );
    }
}
