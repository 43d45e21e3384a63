//! The garbage collector, as upstream's pkg/controller/garbagecollector.
//!
//! It keeps a graph of every object of every resource served by discovery
//! that supports list, watch and delete (built-in and custom resources,
//! rediscovered every 30 s), built from metadata-only watches: each node
//! knows its owners (ownerReferences) and the graph indexes dependents by
//! owner uid. A work queue of uids drives three behaviours:
//!
//! - background: a dependent whose owners are all absent (checked by uid,
//!   with a live GET for owners not in the graph, since a new owner of the
//!   same name has another uid) is deleted; one with some owners left only
//!   loses the references to the absent ones;
//! - foreground: an owner being deleted with the `foregroundDeletion`
//!   finalizer has its dependents deleted (in foreground when they have
//!   dependents of their own) and loses the finalizer once no dependent
//!   with `blockOwnerDeletion: true` remains;
//! - orphan: an owner being deleted with the `orphan` finalizer has its
//!   references removed from every dependent, then loses the finalizer.
//!
//! A namespaced dependent's namespaced owners live in its namespace; it may
//! also have cluster-scoped owners. A cluster-scoped dependent naming a
//! namespaced owner has an unresolvable (absent) owner.
//!
//! [`discover`] is shared with the namespace controller.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::core::{ApiResource, DynamicObject, GroupVersion, PartialObjectMeta};
use kube::discovery::{verbs, ApiGroup, Scope};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::{Context, Error, Result, Shutdown};

/// Finalizer of an owner whose dependents are orphaned before it goes.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// Finalizer of an owner deleted in foreground (dependents first).
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// How often discovery is run again to pick up new resource types.
const REDISCOVERY: Duration = Duration::from_secs(30);
/// Failed list/watch attempts after which a resource no longer holds back
/// the "graph synced" state.
const UNSYNCED_ERRORS: u32 = 5;
/// Concurrent workers.
const WORKERS: usize = 8;

// ---------------------------------------------------------------- discovery

/// A resource served by the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct Res {
    /// Group, version, kind and plural.
    pub ar: ApiResource,
    /// Namespaced (true) or cluster-scoped.
    pub namespaced: bool,
    /// Verbs it supports.
    pub verbs: Vec<String>,
}

impl Res {
    /// True when every verb in `want` is supported.
    pub fn supports(&self, want: &[&str]) -> bool {
        want.iter().all(|w| self.verbs.iter().any(|v| v == w))
    }

    /// `plural.group` (`pods.` for the core group), as upstream's messages
    /// name a resource.
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.ar.plural, self.ar.group)
    }
}

/// What discovery found, with the group-versions that failed.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Resources at each group's preferred version (no subresources).
    pub resources: Vec<Arc<Res>>,
    /// Group-versions whose discovery failed, with the error.
    pub failures: Vec<(String, String)>,
    /// Group-version strings that did not parse.
    pub parse_failures: Vec<String>,
}

/// Discovers every resource at its group's preferred version; a failing
/// group-version is reported, not fatal.
pub async fn discover(client: &kube::Client) -> Result<Discovered> {
    let mut out = Discovered::default();
    let mut gvs: Vec<GroupVersion> = vec![GroupVersion::gv("", "v1")];
    let groups = client
        .list_api_groups()
        .await
        .map_err(Error::kube("discover api groups"))?;
    for g in groups.groups {
        let pref = g
            .preferred_version
            .as_ref()
            .map(|v| v.group_version.clone())
            .or_else(|| g.versions.first().map(|v| v.group_version.clone()));
        let Some(gv) = pref else { continue };
        match gv.parse::<GroupVersion>() {
            Ok(gv) => gvs.push(gv),
            Err(_) => out.parse_failures.push(gv),
        }
    }
    for gv in gvs {
        match kube::discovery::pinned_group(client, &gv).await {
            Ok(group) => out.resources.extend(resources_of(&group, &gv.version)),
            Err(e) => out.failures.push((gv.api_version(), e.to_string())),
        }
    }
    Ok(out)
}

fn resources_of(group: &ApiGroup, version: &str) -> Vec<Arc<Res>> {
    group
        .versioned_resources(version)
        .into_iter()
        .map(|(ar, caps)| {
            Arc::new(Res {
                ar,
                namespaced: caps.scope == Scope::Namespaced,
                verbs: caps.operations.clone(),
            })
        })
        .collect()
}

/// The resources the collector watches: list, watch and delete, except
/// events (as upstream ignores them).
pub fn collectable(res: &Res) -> bool {
    res.supports(&[verbs::LIST, verbs::WATCH, verbs::DELETE]) && res.ar.plural != "events"
}

/// The group of an apiVersion (`apps/v1` → `apps`, `v1` → ``).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

// -------------------------------------------------------------------- graph

/// One object in the graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its resource.
    pub res: Arc<Res>,
    /// Namespace, for namespaced objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
    /// Its ownerReferences.
    pub owners: Vec<OwnerReference>,
    /// deletionTimestamp is set.
    pub deleting: bool,
    /// metadata.finalizers.
    pub finalizers: Vec<String>,
}

impl Node {
    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted with the foregroundDeletion finalizer.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND_FINALIZER)
    }

    /// Being deleted with the orphan finalizer.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(ORPHAN_FINALIZER)
    }

    fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.res.ar.kind, self.name),
            None => format!("{} {}", self.res.ar.kind, self.name),
        }
    }
}

/// The owner → dependents graph.
#[derive(Debug, Default)]
pub struct Graph {
    /// Objects by uid.
    pub nodes: HashMap<String, Node>,
    /// Dependents' uids by owner uid (owners need not be in `nodes`).
    pub dependents: HashMap<String, HashSet<String>>,
    /// uids per watched resource (plural.group), to notice deletions missed
    /// across a relist.
    by_res: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// Inserts or updates a node; returns uids to look at: the node itself
    /// and its old and new owners.
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let uid = node.uid.clone();
        let mut touched = vec![uid.clone()];
        if let Some(old) = self.nodes.get(&uid) {
            for r in &old.owners {
                touched.push(r.uid.clone());
                if let Some(d) = self.dependents.get_mut(&r.uid) {
                    d.remove(&uid);
                    if d.is_empty() {
                        self.dependents.remove(&r.uid);
                    }
                }
            }
        }
        for r in &node.owners {
            touched.push(r.uid.clone());
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        self.by_res
            .entry(node.res.group_resource())
            .or_default()
            .insert(uid.clone());
        self.nodes.insert(uid, node);
        touched
    }

    /// Removes a node; returns uids to look at: its owners and dependents.
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut touched = Vec::new();
        if let Some(old) = self.nodes.remove(uid) {
            if let Some(s) = self.by_res.get_mut(&old.res.group_resource()) {
                s.remove(uid);
            }
            for r in &old.owners {
                touched.push(r.uid.clone());
                if let Some(d) = self.dependents.get_mut(&r.uid) {
                    d.remove(uid);
                    if d.is_empty() {
                        self.dependents.remove(&r.uid);
                    }
                }
            }
        }
        if let Some(d) = self.dependents.get(uid) {
            touched.extend(d.iter().cloned());
        }
        touched
    }

    /// The dependents of `uid` present in the graph.
    pub fn dependents_of(&self, uid: &str) -> Vec<Node> {
        self.dependents
            .get(uid)
            .map(|d| {
                d.iter()
                    .filter_map(|u| self.nodes.get(u).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `uid` has dependents in the graph.
    pub fn has_dependents(&self, uid: &str) -> bool {
        self.dependents
            .get(uid)
            .is_some_and(|d| d.iter().any(|u| self.nodes.contains_key(u)))
    }

    fn uids_of(&self, gr: &str) -> Vec<String> {
        self.by_res
            .get(gr)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------- decisions

/// What an owner reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Does not exist (or exists with another uid).
    Dangling,
    /// Being deleted with the foregroundDeletion finalizer.
    WaitingForDependents,
}

/// What to do with a dependent, given the state of each of its owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do.
    Keep,
    /// Remove the references with these uids (some owners remain).
    RemoveRefs(Vec<String>),
    /// Delete it with this propagation policy.
    Delete(Propagation),
}

/// A propagation policy for [`Decision::Delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents collected in background.
    Background,
    /// Dependents deleted first.
    Foreground,
    /// Dependents orphaned.
    Orphan,
}

/// Upstream's attemptToDeleteItem: `owners` pairs each reference with its
/// owner's state; `has_dependents` tells whether the object owns others;
/// `finalizers` are its own.
pub fn decide(
    owners: &[(OwnerReference, OwnerState)],
    has_dependents: bool,
    finalizers: &[String],
) -> Decision {
    if owners.is_empty() {
        return Decision::Keep;
    }
    let solid = owners
        .iter()
        .filter(|(_, s)| *s == OwnerState::Solid)
        .count();
    let waiting = owners
        .iter()
        .any(|(_, s)| *s == OwnerState::WaitingForDependents);
    if solid > 0 {
        let gone: Vec<String> = owners
            .iter()
            .filter(|(_, s)| *s != OwnerState::Solid)
            .map(|(r, _)| r.uid.clone())
            .collect();
        return if gone.is_empty() {
            Decision::Keep
        } else {
            Decision::RemoveRefs(gone)
        };
    }
    if waiting && has_dependents {
        return Decision::Delete(Propagation::Foreground);
    }
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    if has(ORPHAN_FINALIZER) {
        Decision::Delete(Propagation::Orphan)
    } else if has(FOREGROUND_FINALIZER) {
        Decision::Delete(Propagation::Foreground)
    } else {
        Decision::Delete(Propagation::Background)
    }
}

/// The dependents of owner `uid` that still block its foreground deletion
/// (their reference to it has blockOwnerDeletion true).
pub fn blocking<'a>(uid: &str, dependents: &'a [Node]) -> Vec<&'a Node> {
    dependents
        .iter()
        .filter(|d| {
            d.owners
                .iter()
                .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
        })
        .collect()
}

/// `owners` without the references to the uids in `remove`.
pub fn without_refs(owners: &[OwnerReference], remove: &[String]) -> Vec<OwnerReference> {
    owners
        .iter()
        .filter(|r| !remove.contains(&r.uid))
        .cloned()
        .collect()
}

/// ownerReferences as written back: null (removed) when none are left, as
/// upstream's strategic-merge delete leaves no empty list behind.
pub fn refs_value(refs: &[OwnerReference]) -> serde_json::Value {
    if refs.is_empty() {
        serde_json::Value::Null
    } else {
        json!(refs)
    }
}

/// The namespace in which an owner reference of an object in `dependent_ns`
/// is looked up: `Some(None)` for a cluster-scoped owner, `Some(Some(ns))`
/// for a namespaced one, and None when the reference cannot be valid (a
/// cluster-scoped dependent naming a namespaced owner).
pub fn owner_namespace(
    owner_namespaced: bool,
    dependent_ns: Option<&str>,
) -> Option<Option<String>> {
    match (owner_namespaced, dependent_ns) {
        (false, _) => Some(None),
        (true, Some(ns)) => Some(Some(ns.to_string())),
        (true, None) => None,
    }
}

// -------------------------------------------------------------------- queue

#[derive(Default)]
struct QueueState {
    queue: VecDeque<String>,
    queued: HashSet<String>,
    active: HashSet<String>,
    dirty: HashSet<String>,
}

/// A de-duplicating work queue of uids.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    notify: Notify,
}

impl Queue {
    fn add(&self, uid: String) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.active.contains(&uid) {
            s.dirty.insert(uid);
            return;
        }
        if s.queued.insert(uid.clone()) {
            s.queue.push_back(uid);
            drop(s);
            self.notify.notify_one();
        }
    }

    async fn next(&self) -> String {
        loop {
            {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(uid) = s.queue.pop_front() {
                    s.queued.remove(&uid);
                    s.active.insert(uid.clone());
                    return uid;
                }
            }
            self.notify.notified().await;
        }
    }

    fn done(&self, uid: &str) {
        let again = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.active.remove(uid);
            s.dirty.remove(uid)
        };
        if again {
            self.add(uid.to_string());
        }
    }
}

// ------------------------------------------------------------------ runtime

struct Gc {
    ctx: Arc<Context>,
    graph: Mutex<Graph>,
    queue: Queue,
    /// Resources by (group, kind), to resolve owner references.
    kinds: Mutex<HashMap<(String, String), Arc<Res>>>,
    /// Watches not yet through their first list.
    unsynced: Mutex<HashSet<String>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Gc {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn synced(&self) -> bool {
        self.unsynced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    fn resolve(&self, api_version: &str, kind: &str) -> Option<Arc<Res>> {
        let kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        kinds
            .get(&(group_of(api_version).to_string(), kind.to_string()))
            .cloned()
    }

    fn enqueue_all(&self, uids: Vec<String>) {
        for u in uids {
            self.queue.add(u);
        }
    }

    fn requeue_later(self: &Arc<Self>, uid: String, delay: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.queue.add(uid);
        });
    }

    fn dynamic(&self, res: &Res, ns: Option<&str>) -> Api<DynamicObject> {
        match ns {
            Some(ns) if res.namespaced => {
                Api::namespaced_with(self.ctx.client.clone(), ns, &res.ar)
            }
            _ => Api::all_with(self.ctx.client.clone(), &res.ar),
        }
    }

    /// Live metadata of `node` if it still exists with the same uid.
    async fn live(&self, node: &Node) -> Result<Option<ObjectMeta>> {
        let api = self.dynamic(&node.res, node.namespace.as_deref());
        let got = api
            .get_metadata_opt(&node.name)
            .await
            .map_err(Error::kube(format!("get {}", node.key())))?;
        Ok(got
            .map(|m: PartialObjectMeta<DynamicObject>| m.metadata)
            .filter(|m| m.uid.as_deref() == Some(node.uid.as_str())))
    }

    /// The state of the owner named by `r`, for a dependent in `ns`.
    async fn owner_state(&self, r: &OwnerReference, ns: Option<&str>) -> Result<OwnerState> {
        if let Some(owner) = self.graph().nodes.get(&r.uid) {
            return Ok(if owner.deleting_dependents() {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            });
        }
        let Some(res) = self.resolve(&r.api_version, &r.kind) else {
            return Err(Error::Invalid(format!(
                "cannot resolve owner kind {} {}",
                r.api_version, r.kind
            )));
        };
        let Some(owner_ns) = owner_namespace(res.namespaced, ns) else {
            return Ok(OwnerState::Dangling);
        };
        let api = self.dynamic(&res, owner_ns.as_deref());
        let got = api
            .get_metadata_opt(&r.name)
            .await
            .map_err(Error::kube(format!("get owner {} {}", r.kind, r.name)))?;
        Ok(match got {
            Some(m) if m.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                let deleting = m.metadata.deletion_timestamp.is_some()
                    && m.metadata
                        .finalizers
                        .as_ref()
                        .is_some_and(|f| f.iter().any(|x| x == FOREGROUND_FINALIZER));
                if deleting {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Solid
                }
            }
            _ => OwnerState::Dangling,
        })
    }

    async fn patch_meta(
        &self,
        node: &Node,
        rv: Option<String>,
        meta: serde_json::Value,
    ) -> Result<()> {
        let api = self.dynamic(&node.res, node.namespace.as_deref());
        let mut meta = meta;
        if let Some(rv) = rv {
            meta["resourceVersion"] = json!(rv);
        }
        let body = json!({ "metadata": meta });
        match api
            .patch_metadata(&node.name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(Error::kube(format!("patch {}", node.key()))(e)),
        }
    }

    async fn delete(&self, node: &Node, policy: Propagation) -> Result<()> {
        let api = self.dynamic(&node.res, node.namespace.as_deref());
        let dp = DeleteParams {
            propagation_policy: Some(match policy {
                Propagation::Background => PropagationPolicy::Background,
                Propagation::Foreground => PropagationPolicy::Foreground,
                Propagation::Orphan => PropagationPolicy::Orphan,
            }),
            preconditions: Some(kube::api::Preconditions {
                uid: Some(node.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::info!(object = %node.key(), ?policy, "garbage collector deleting");
        match api.delete(&node.name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(Error::kube(format!("delete {}", node.key()))(e)),
        }
    }

    async fn remove_finalizer(&self, node: &Node, meta: &ObjectMeta, fin: &str) -> Result<()> {
        let left: Vec<String> = meta
            .finalizers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != fin)
            .collect();
        self.patch_meta(
            node,
            meta.resource_version.clone(),
            json!({ "finalizers": left }),
        )
        .await
    }

    async fn process(self: &Arc<Self>, uid: &str) -> Result<()> {
        let Some(node) = self.graph().nodes.get(uid).cloned() else {
            return Ok(());
        };
        if node.orphaning() {
            return self.orphan_dependents(&node).await;
        }
        if node.deleting_dependents() {
            return self.delete_dependents(&node).await;
        }
        if node.owners.is_empty() || node.deleting {
            return Ok(());
        }
        // Fast path without API calls: every owner is in the graph and not
        // waiting for its dependents.
        let all_solid = {
            let g = self.graph();
            node.owners.iter().all(|r| {
                g.nodes
                    .get(&r.uid)
                    .is_some_and(|o| !o.deleting_dependents())
            })
        };
        if all_solid {
            return Ok(());
        }
        self.attempt_to_delete(&node).await
    }

    async fn attempt_to_delete(&self, node: &Node) -> Result<()> {
        let Some(meta) = self.live(node).await? else {
            return Ok(());
        };
        if meta.deletion_timestamp.is_some() {
            return Ok(());
        }
        let refs = meta.owner_references.clone().unwrap_or_default();
        let mut states = Vec::with_capacity(refs.len());
        for r in &refs {
            let st = self.owner_state(r, node.namespace.as_deref()).await?;
            states.push((r.clone(), st));
        }
        let has_dependents = self.graph().has_dependents(&node.uid);
        let fins = meta.finalizers.clone().unwrap_or_default();
        match decide(&states, has_dependents, &fins) {
            Decision::Keep => Ok(()),
            Decision::RemoveRefs(gone) => {
                tracing::info!(object = %node.key(), ?gone, "garbage collector removing dangling owner references");
                let left = without_refs(&refs, &gone);
                self.patch_meta(
                    node,
                    meta.resource_version.clone(),
                    json!({ "ownerReferences": refs_value(&left) }),
                )
                .await
            }
            Decision::Delete(p) => self.delete(node, p).await,
        }
    }

    async fn orphan_dependents(&self, owner: &Node) -> Result<()> {
        if !self.synced() {
            return Err(Error::Invalid("graph not synced yet".into()));
        }
        let deps = self.graph().dependents_of(&owner.uid);
        for d in &deps {
            let Some(meta) = self.live(d).await? else {
                continue;
            };
            let refs = meta.owner_references.clone().unwrap_or_default();
            if !refs.iter().any(|r| r.uid == owner.uid) {
                continue;
            }
            let left = without_refs(&refs, std::slice::from_ref(&owner.uid));
            self.patch_meta(
                d,
                meta.resource_version.clone(),
                json!({ "ownerReferences": refs_value(&left) }),
            )
            .await?;
        }
        let Some(meta) = self.live(owner).await? else {
            return Ok(());
        };
        tracing::info!(object = %owner.key(), dependents = deps.len(), "orphaned dependents");
        self.remove_finalizer(owner, &meta, ORPHAN_FINALIZER).await
    }

    async fn delete_dependents(self: &Arc<Self>, owner: &Node) -> Result<()> {
        if !self.synced() {
            return Err(Error::Invalid("graph not synced yet".into()));
        }
        let deps = self.graph().dependents_of(&owner.uid);
        // Dependents not yet deleting: decide for each (they see this owner
        // waiting and go, in foreground when they own others).
        for d in deps.iter().filter(|d| !d.deleting) {
            self.queue.add(d.uid.clone());
        }
        let block = blocking(&owner.uid, &deps);
        if !block.is_empty() {
            self.requeue_later(owner.uid.clone(), Duration::from_secs(5));
            return Ok(());
        }
        let Some(meta) = self.live(owner).await? else {
            return Ok(());
        };
        tracing::info!(object = %owner.key(), "dependents gone, removing foregroundDeletion");
        self.remove_finalizer(owner, &meta, FOREGROUND_FINALIZER)
            .await
    }

    fn node_from(res: &Arc<Res>, meta: &ObjectMeta) -> Option<Node> {
        Some(Node {
            res: res.clone(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        })
    }

    /// Watches one resource into the graph.
    async fn watch(self: Arc<Self>, res: Arc<Res>) {
        let gr = res.group_resource();
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.ctx.client.clone(), &res.ar);
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut seen: HashSet<String> = HashSet::new();
        let mut errors = 0u32;
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!(resource = %gr, "gc watch: {e}");
                    errors += 1;
                    if errors == UNSYNCED_ERRORS {
                        // Do not hold orphan/foreground processing forever
                        // on a resource that cannot be listed.
                        tracing::warn!(resource = %gr, "garbage collector cannot list: {e}");
                        self.unsynced
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&gr);
                    }
                    continue;
                }
            };
            match ev {
                watcher::Event::Init => seen.clear(),
                watcher::Event::InitApply(o) | watcher::Event::Apply(o) => {
                    if let Some(node) = Self::node_from(&res, &o.metadata) {
                        seen.insert(node.uid.clone());
                        let touched = self.graph().upsert(node);
                        self.enqueue_all(touched);
                    }
                }
                watcher::Event::Delete(o) => {
                    if let Some(uid) = o.metadata.uid.as_deref() {
                        let touched = self.graph().remove(uid);
                        self.enqueue_all(touched);
                    }
                }
                watcher::Event::InitDone => {
                    // Objects that went while we were not watching.
                    let stale: Vec<String> = self
                        .graph()
                        .uids_of(&gr)
                        .into_iter()
                        .filter(|u| !seen.contains(u))
                        .collect();
                    for u in stale {
                        let touched = self.graph().remove(&u);
                        self.enqueue_all(touched);
                    }
                    seen.clear();
                    self.unsynced
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&gr);
                }
            }
        }
    }

    async fn worker(self: Arc<Self>) {
        loop {
            let uid = self.queue.next().await;
            match self.process(&uid).await {
                Ok(()) => {
                    self.failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&uid);
                }
                Err(e) => {
                    let n = {
                        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                        let n = f.entry(uid.clone()).or_insert(0);
                        *n = n.saturating_add(1);
                        *n
                    };
                    let delay = crate::context::backoff_delay(n).max(Duration::from_millis(100));
                    if !e.is_conflict() {
                        tracing::debug!(%uid, ?delay, "garbage collector: {e}");
                    }
                    self.requeue_later(uid.clone(), delay);
                }
            }
            self.queue.done(&uid);
        }
    }

    /// Runs discovery and starts/stops watches to match it.
    async fn sync_watches(
        self: &Arc<Self>,
        watches: &mut HashMap<String, (Arc<Res>, JoinHandle<()>)>,
    ) {
        let found = match discover(&self.ctx.client).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("garbage collector discovery: {e}");
                return;
            }
        };
        for (gv, err) in &found.failures {
            tracing::debug!(%gv, "garbage collector discovery failed: {err}");
        }
        let mut kinds = HashMap::new();
        let mut want: BTreeMap<String, Arc<Res>> = BTreeMap::new();
        for r in found.resources {
            kinds.insert((r.ar.group.clone(), r.ar.kind.clone()), r.clone());
            if collectable(&r) {
                want.insert(r.group_resource(), r);
            }
        }
        // Keep kinds of groups whose discovery failed this time.
        {
            let mut k = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
            let failed: HashSet<String> = found
                .failures
                .iter()
                .map(|(gv, _)| group_of(gv).to_string())
                .collect();
            for (key, v) in k.iter() {
                if failed.contains(&key.0) {
                    kinds.entry(key.clone()).or_insert_with(|| v.clone());
                }
            }
            *k = kinds;
        }
        let failed_groups: HashSet<String> = found
            .failures
            .iter()
            .map(|(gv, _)| group_of(gv).to_string())
            .collect();
        let gone: Vec<String> = watches
            .keys()
            .filter(|k| !want.contains_key(*k))
            .filter(|k| {
                !watches
                    .get(*k)
                    .is_some_and(|(r, _)| failed_groups.contains(&r.ar.group))
            })
            .cloned()
            .collect();
        for k in gone {
            if let Some((_, h)) = watches.remove(&k) {
                h.abort();
                tracing::info!(resource = %k, "garbage collector stopped watching");
                let uids = self.graph().uids_of(&k);
                for u in uids {
                    let touched = self.graph().remove(&u);
                    self.enqueue_all(touched);
                }
                self.unsynced
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&k);
            }
        }
        for (k, r) in want {
            let changed = watches
                .get(&k)
                .is_some_and(|(old, _)| old.ar.version != r.ar.version);
            if changed {
                if let Some((_, h)) = watches.remove(&k) {
                    h.abort();
                }
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = watches.entry(k.clone()) {
                self.unsynced
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(k);
                let h = tokio::spawn(self.clone().watch(r.clone()));
                slot.insert((r, h));
            }
        }
    }
}

/// Runs the garbage collector until shutdown.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let gc = Arc::new(Gc {
        ctx,
        graph: Mutex::new(Graph::default()),
        queue: Queue::default(),
        kinds: Mutex::new(HashMap::new()),
        unsynced: Mutex::new(HashSet::new()),
        failures: Mutex::new(HashMap::new()),
    });
    let mut watches: HashMap<String, (Arc<Res>, JoinHandle<()>)> = HashMap::new();
    let workers: Vec<JoinHandle<()>> = (0..WORKERS)
        .map(|_| tokio::spawn(gc.clone().worker()))
        .collect();
    let stop = shutdown.signal();
    tokio::pin!(stop);
    loop {
        gc.sync_watches(&mut watches).await;
        // Safety net: owners waiting on their dependents are looked at again.
        let pending: Vec<String> = gc
            .graph()
            .nodes
            .values()
            .filter(|n| n.orphaning() || n.deleting_dependents())
            .map(|n| n.uid.clone())
            .collect();
        gc.enqueue_all(pending);
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(REDISCOVERY) => {}
        }
    }
    for (_, (_, h)) in watches {
        h.abort();
    }
    for h in workers {
        h.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn res(kind: &str, plural: &str, namespaced: bool) -> Arc<Res> {
        Arc::new(Res {
            ar: ApiResource {
                group: "apps".into(),
                version: "v1".into(),
                api_version: "apps/v1".into(),
                kind: kind.into(),
                plural: plural.into(),
            },
            namespaced,
            verbs: vec!["list".into(), "watch".into(), "delete".into()],
        })
    }

    fn node(uid: &str, owners: Vec<OwnerReference>) -> Node {
        Node {
            res: res("ReplicaSet", "replicasets", true),
            namespace: Some("default".into()),
            name: format!("n-{uid}"),
            uid: uid.into(),
            owners,
            deleting: false,
            finalizers: vec![],
        }
    }

    #[test]
    fn background_deletes_when_all_owners_gone() {
        let d = decide(&[(oref("a", false), OwnerState::Dangling)], false, &[]);
        assert_eq!(d, Decision::Delete(Propagation::Background));
        let d = decide(
            &[
                (oref("a", false), OwnerState::Dangling),
                (oref("b", false), OwnerState::Dangling),
            ],
            true,
            &[],
        );
        assert_eq!(d, Decision::Delete(Propagation::Background));
    }

    #[test]
    fn surviving_owner_only_loses_dangling_reference() {
        let d = decide(
            &[
                (oref("a", false), OwnerState::Dangling),
                (oref("b", false), OwnerState::Solid),
            ],
            false,
            &[],
        );
        assert_eq!(d, Decision::RemoveRefs(vec!["a".into()]));
        let d = decide(&[(oref("b", false), OwnerState::Solid)], false, &[]);
        assert_eq!(d, Decision::Keep);
        assert_eq!(decide(&[], false, &[]), Decision::Keep);
    }

    #[test]
    fn foreground_owner_deletes_dependents_in_foreground_when_they_own_others() {
        let refs = [(oref("a", true), OwnerState::WaitingForDependents)];
        assert_eq!(
            decide(&refs, true, &[]),
            Decision::Delete(Propagation::Foreground)
        );
        assert_eq!(
            decide(&refs, false, &[]),
            Decision::Delete(Propagation::Background)
        );
        // The dependent's own orphan finalizer is honoured.
        assert_eq!(
            decide(&refs, false, &[ORPHAN_FINALIZER.to_string()]),
            Decision::Delete(Propagation::Orphan)
        );
        // A solid owner keeps it; the waiting owner's reference goes.
        let refs = [
            (oref("a", true), OwnerState::WaitingForDependents),
            (oref("b", false), OwnerState::Solid),
        ];
        assert_eq!(
            decide(&refs, true, &[]),
            Decision::RemoveRefs(vec!["a".into()])
        );
    }

    #[test]
    fn only_blocking_dependents_hold_a_foreground_owner() {
        let deps = vec![
            node("d1", vec![oref("o", true)]),
            node("d2", vec![oref("o", false)]),
        ];
        let b = blocking("o", &deps);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].uid, "d1");
        let deps = vec![node("d2", vec![oref("o", false)])];
        assert!(blocking("o", &deps).is_empty());
    }

    #[test]
    fn orphaning_removes_only_that_owner() {
        let owners = vec![oref("a", true), oref("b", false)];
        let left = without_refs(&owners, &["a".to_string()]);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].uid, "b");
    }

    #[test]
    fn owner_scope() {
        assert_eq!(owner_namespace(true, Some("ns")), Some(Some("ns".into())));
        assert_eq!(owner_namespace(false, Some("ns")), Some(None));
        assert_eq!(owner_namespace(false, None), Some(None));
        assert_eq!(owner_namespace(true, None), None);
    }

    #[test]
    fn graph_tracks_dependents() {
        let mut g = Graph::default();
        let touched = g.upsert(node("p1", vec![oref("rs", true)]));
        assert!(touched.contains(&"rs".to_string()));
        g.upsert(node("p2", vec![oref("rs", true)]));
        assert_eq!(g.dependents_of("rs").len(), 2);
        // Orphaned: p1 loses its reference.
        g.upsert(node("p1", vec![]));
        assert_eq!(g.dependents_of("rs").len(), 1);
        // The owner goes: its dependents are looked at.
        g.upsert(node("rs", vec![]));
        let touched = g.remove("rs");
        assert_eq!(touched, vec!["p2".to_string()]);
        let touched = g.remove("p2");
        assert!(touched.contains(&"rs".to_string()));
        assert!(!g.has_dependents("rs"));
    }

    #[test]
    fn groups_and_collectable() {
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("v1"), "");
        assert_eq!(group_of("example.com/v1alpha1"), "example.com");
        assert!(collectable(&res("ReplicaSet", "replicasets", true)));
        assert!(!collectable(&res("Event", "events", true)));
        let mut r = (*res("X", "xs", true)).clone();
        r.verbs = vec!["list".into(), "delete".into()];
        assert!(!collectable(&r));
        assert_eq!(
            res("ReplicaSet", "replicasets", true).group_resource(),
            "replicasets.apps"
        );
    }
}
