//! Persistent volumes: the PV/PVC binder (upstream's
//! persistentvolume-binder-controller) and a hostPath dynamic provisioner
//! named as minikube's storage-provisioner (`k8s.io/minikube-hostpath`).
//!
//! The binder binds each claim to the smallest available volume that fits
//! (capacity, access modes, volumeMode, storageClassName, selector), or to
//! the volume pre-bound to it, writes `claimRef`, the phases
//! (PV Available/Bound/Released/Failed, PVC Pending/Bound/Lost) and the
//! bind annotations, asks the class's provisioner for a volume when none
//! fits, and delays claims of WaitForFirstConsumer classes until a pod using
//! them is scheduled (then annotating `volume.kubernetes.io/selected-node`).
//!
//! The provisioner creates `pvc-<claim uid>` with a hostPath directory under
//! the manager's `volume_dir`, pre-bound to the claim, and deletes the
//! directory and the volume when a released volume's reclaim policy is
//! Delete. It creates the default StorageClass `standard` when missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimStatus, PersistentVolumeSpec, PersistentVolumeStatus, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Resource, ResourceExt};
use rkube_apimachinery::quantity::Quantity;
use serde_json::json;

use crate::disruption::REPEATS;
use crate::{pods, status, Context, Error, Result, Shutdown};

/// The provisioner name, as minikube's storage-provisioner.
pub const PROVISIONER: &str = "k8s.io/minikube-hostpath";
/// The default StorageClass.
pub const DEFAULT_CLASS: &str = "standard";

const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// How often pending claims are retried (upstream's binder resync).
const PENDING_RESYNC: Duration = Duration::from_secs(15);

fn q(v: Option<&KQuantity>) -> Option<Quantity> {
    v.and_then(|q| Quantity::parse(&q.0))
}

fn claim_request(pvc: &PersistentVolumeClaim) -> Option<Quantity> {
    q(pvc
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage"))
}

fn pv_capacity(pv: &PersistentVolume) -> Option<Quantity> {
    q(pv.spec.as_ref()?.capacity.as_ref()?.get("storage"))
}

/// The claim's class ("" when none).
pub fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn pv_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn claim_ref_is(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> Option<bool> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    let same_name = r.name.as_deref() == pvc.metadata.name.as_deref()
        && r.namespace.as_deref() == pvc.metadata.namespace.as_deref();
    let uid_ok = r
        .uid
        .as_deref()
        .is_none_or(|u| u.is_empty() || Some(u) == pvc.metadata.uid.as_deref());
    Some(same_name && uid_ok)
}

/// True when `pv` could serve `pvc` (ignoring whether it is free).
pub fn pv_matches(pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let Some(spec) = pvc.spec.as_ref() else {
        return false;
    };
    let Some(pvs) = pv.spec.as_ref() else {
        return false;
    };
    if pv.metadata.deletion_timestamp.is_some() {
        return false;
    }
    if claim_class(pvc) != pv_class(pv) {
        return false;
    }
    let mode = |m: Option<&String>| m.map(String::as_str).unwrap_or("Filesystem").to_string();
    if mode(spec.volume_mode.as_ref()) != mode(pvs.volume_mode.as_ref()) {
        return false;
    }
    let pv_modes = pvs.access_modes.clone().unwrap_or_default();
    if !spec
        .access_modes
        .iter()
        .flatten()
        .all(|m| pv_modes.contains(m))
    {
        return false;
    }
    match (claim_request(pvc), pv_capacity(pv)) {
        (Some(req), Some(cap)) if cap < req => return false,
        (Some(_), None) => return false,
        _ => {}
    }
    if let Some(sel) = &spec.selector {
        match pods::selector(sel) {
            Ok(s) => {
                if !pods::matches(&s, pv.metadata.labels.as_ref()) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// The volume to bind `pvc` to: one pre-bound to it, else the smallest
/// available matching volume not reserved for another claim.
pub fn find_match<'a>(
    pvc: &PersistentVolumeClaim,
    pvs: &'a [PersistentVolume],
) -> Option<&'a PersistentVolume> {
    if let Some(pre) = pvs
        .iter()
        .find(|pv| claim_ref_is(pv, pvc) == Some(true) && pv_matches(pvc, pv))
    {
        return Some(pre);
    }
    // A claim with a selector never matches a volume of another class, and
    // a claim must not take a volume reserved by claimRef for someone else.
    pvs.iter()
        .filter(|pv| pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_none()))
        .filter(|pv| {
            pv.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("Available")
                == "Available"
        })
        .filter(|pv| pv_matches(pvc, pv))
        .min_by_key(|pv| pv_capacity(pv).map(|c| c.nanos).unwrap_or(0))
}

/// The phase a volume should be in, and whether its claim is gone.
#[derive(Debug, PartialEq, Eq)]
pub enum PvState {
    /// No claimRef.
    Available,
    /// Bound to the (existing) claim.
    Bound,
    /// Pre-bound to a claim that has not bound yet: keep the phase.
    Pending,
    /// The claim was deleted (or replaced): Released, then reclaimed.
    Released,
}

/// Decides a volume's state given its claim as read now (None: missing).
pub fn pv_state(pv: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> PvState {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return PvState::Available;
    };
    let ref_uid = r.uid.as_deref().unwrap_or("");
    match claim {
        None if ref_uid.is_empty() => PvState::Pending,
        None => PvState::Released,
        Some(c) => {
            let cuid = c.metadata.uid.as_deref().unwrap_or("");
            if !ref_uid.is_empty() && ref_uid != cuid {
                return PvState::Released;
            }
            let bound_here = c.spec.as_ref().and_then(|s| s.volume_name.as_deref())
                == pv.metadata.name.as_deref();
            if bound_here {
                PvState::Bound
            } else {
                PvState::Pending
            }
        }
    }
}

/// The PersistentVolume the provisioner creates for `pvc` of `class`.
pub fn provisioned_pv(
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    dir: &Path,
) -> PersistentVolume {
    let name = format!("pvc-{}", pvc.metadata.uid.as_deref().unwrap_or(""));
    let spec = pvc.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .unwrap_or(KQuantity("1Gi".into()));
    let mut ann = BTreeMap::new();
    ann.insert(ANN_PROVISIONED_BY.to_string(), PROVISIONER.to_string());
    let path = dir.join(&name);
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(ann),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: Some(BTreeMap::from([("storage".to_string(), storage)])),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                name: pvc.metadata.name.clone(),
                namespace: pvc.metadata.namespace.clone(),
                uid: pvc.metadata.uid.clone(),
                resource_version: pvc.metadata.resource_version.clone(),
                ..Default::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path: path.to_string_lossy().into_owned(),
                type_: Some(String::new()),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some(spec.volume_mode.unwrap_or_else(|| "Filesystem".into())),
            mount_options: class.mount_options.clone(),
            ..Default::default()
        }),
        status: None,
    }
}

// ---------------------------------------------------------------------------
// Binder

/// Runs the binder until shutdown: one controller for claims, one for volumes.
pub async fn run_binder(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    let claims = {
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        async move {
            let api: Api<PersistentVolumeClaim> = Api::all(ctx.client.clone());
            Controller::new(api, watcher::Config::default())
                .watches(
                    Api::<PersistentVolume>::all(ctx.client.clone()),
                    watcher::Config::default(),
                    |pv| {
                        pv.spec.and_then(|s| s.claim_ref).and_then(|r| {
                            Some(ObjectRef::new(r.name.as_deref()?).within(r.namespace.as_deref()?))
                        })
                    },
                )
                .watches(
                    Api::<Pod>::all(ctx.client.clone()),
                    watcher::Config::default(),
                    |pod| claims_of_pod(&pod),
                )
                .graceful_shutdown_on(shutdown.signal())
                .run(
                    reconcile_claim,
                    |obj: Arc<PersistentVolumeClaim>, err: &Error, ctx: Arc<Context>| {
                        ctx.error_action(&crate::key(&*obj), err)
                    },
                    ctx,
                )
                .for_each(|_| futures::future::ready(()))
                .await;
        }
    };
    let volumes = {
        let ctx = ctx.clone();
        async move {
            let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
            Controller::new(api, watcher::Config::default())
                .watches(
                    Api::<PersistentVolumeClaim>::all(ctx.client.clone()),
                    watcher::Config::default(),
                    |pvc| {
                        pvc.spec
                            .and_then(|s| s.volume_name)
                            .filter(|v| !v.is_empty())
                            .map(|v| ObjectRef::new(&v))
                    },
                )
                .graceful_shutdown_on(shutdown.signal())
                .run(
                    reconcile_volume,
                    |obj: Arc<PersistentVolume>, err: &Error, ctx: Arc<Context>| {
                        ctx.error_action(&crate::key(&*obj), err)
                    },
                    ctx,
                )
                .for_each(|_| futures::future::ready(()))
                .await;
        }
    };
    tokio::join!(claims, volumes);
    Ok(())
}

fn claims_of_pod(pod: &Pod) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let ns = pod.namespace().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| ObjectRef::new(&c.claim_name).within(&ns))
        .collect()
}

async fn get_class(ctx: &Context, name: &str) -> Result<Option<StorageClass>> {
    if name.is_empty() {
        return Ok(None);
    }
    Api::<StorageClass>::all(ctx.client.clone())
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("get storageclass {name}")))
}

/// The node of a scheduled, active pod in `ns` using claim `name`.
async fn consumer_node(ctx: &Context, ns: &str, name: &str) -> Result<Option<String>> {
    let pods = pods::list(&ctx.client, ns, &kube::core::Selector::default()).await?;
    Ok(pods
        .iter()
        .filter(|p| pods::is_active(p))
        .filter(|p| claims_of_pod(p).iter().any(|r| r.name == name))
        .find_map(|p| p.spec.as_ref()?.node_name.clone()))
}

fn ann<'a>(meta: &'a ObjectMeta, k: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(k).map(String::as_str)
}

async fn set_claim_phase(
    api: &Api<PersistentVolumeClaim>,
    pvc: &PersistentVolumeClaim,
    status: PersistentVolumeClaimStatus,
) -> Result<()> {
    if pvc.status.as_ref() == Some(&status) {
        return Ok(());
    }
    status::write(api, &pvc.name_any(), &crate::key(pvc), &status).await?;
    Ok(())
}

fn pending_status(pvc: &PersistentVolumeClaim) -> PersistentVolumeClaimStatus {
    let mut st = pvc.status.clone().unwrap_or_default();
    st.phase = Some("Pending".into());
    st
}

async fn reconcile_claim(obj: Arc<PersistentVolumeClaim>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*obj);
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(pvc) = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get persistentvolumeclaim {key}")))?
    else {
        return Ok(Action::await_change());
    };
    if pvc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let pv_api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let objref = pvc.object_ref(&());
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());

    if let Some(vn) = volume_name {
        let pv = pv_api
            .get_opt(&vn)
            .await
            .map_err(Error::kube(format!("get persistentvolume {vn}")))?;
        let bound_before = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        match pv {
            None => {
                if bound_before {
                    ctx.warning(
                        &objref,
                        "ClaimLost",
                        "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
                            .into(),
                    )
                    .await;
                    let mut st = pvc.status.clone().unwrap_or_default();
                    st.phase = Some("Lost".into());
                    set_claim_phase(&api, &pvc, st).await?;
                } else {
                    set_claim_phase(&api, &pvc, pending_status(&pvc)).await?;
                }
                ctx.succeeded(&key);
                return Ok(Action::requeue(PENDING_RESYNC));
            }
            Some(pv) => match claim_ref_is(&pv, &pvc) {
                Some(true) => {
                    bind(&api, &pv_api, &pvc, &pv, false).await?;
                }
                None => {
                    // Pre-bound claim: reserve the volume for it.
                    if pv_matches(&pvc, &pv) {
                        bind(&api, &pv_api, &pvc, &pv, false).await?;
                    } else {
                        ctx.warning(&objref, "FailedBinding",
                            format!("Cannot bind to requested volume \"{vn}\": requested PV is too small")).await;
                        set_claim_phase(&api, &pvc, pending_status(&pvc)).await?;
                    }
                }
                Some(false) => {
                    if bound_before {
                        let mut st = pvc.status.clone().unwrap_or_default();
                        st.phase = Some("Lost".into());
                        ctx.warning(&objref, "ClaimMisbound",
                            "Two claims are bound to the same volume, this one is bound incorrectly".into()).await;
                        set_claim_phase(&api, &pvc, st).await?;
                    } else {
                        ctx.warning(
                            &objref,
                            "FailedBinding",
                            format!("volume \"{vn}\" already bound to a different claim."),
                        )
                        .await;
                        set_claim_phase(&api, &pvc, pending_status(&pvc)).await?;
                    }
                }
            },
        }
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    }

    // Unbound claim.
    let class_name = claim_class(&pvc).to_string();
    let class = get_class(&ctx, &class_name).await?;
    let wffc = class
        .as_ref()
        .and_then(|c| c.volume_binding_mode.as_deref())
        == Some("WaitForFirstConsumer");
    let selected = ann(&pvc.metadata, ANN_SELECTED_NODE).map(String::from);
    if wffc && selected.is_none() {
        match consumer_node(&ctx, &ns, &name).await? {
            None => {
                let note = "waiting for first consumer to be created before binding";
                if REPEATS.first(&key, "WaitForFirstConsumer", note) {
                    ctx.normal(&objref, "WaitForFirstConsumer", note.into())
                        .await;
                }
                set_claim_phase(&api, &pvc, pending_status(&pvc)).await?;
                ctx.succeeded(&key);
                return Ok(Action::await_change());
            }
            Some(node) => {
                // The scheduler does not pick volumes: record the consumer's
                // node so the provisioner may act, as the scheduler would.
                let patch = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(Error::kube(format!("annotate persistentvolumeclaim {key}")))?;
            }
        }
    }
    let pvs = pv_api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list persistentvolumes"))?
        .items;
    if let Some(pv) = find_match(&pvc, &pvs) {
        bind(&api, &pv_api, &pvc, pv, true).await?;
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    }
    match class.as_ref().and_then(|c| {
        Some(c.provisioner.clone()).filter(|p| !p.is_empty() && p != "kubernetes.io/no-provisioner")
    }) {
        Some(prov) => {
            if ann(&pvc.metadata, ANN_STORAGE_PROVISIONER) != Some(prov.as_str()) {
                let patch = json!({"metadata": {"annotations": {
                    ANN_STORAGE_PROVISIONER: prov, ANN_BETA_STORAGE_PROVISIONER: prov}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(Error::kube(format!("annotate persistentvolumeclaim {key}")))?;
                ctx.normal(&objref, "ExternalProvisioning", format!(
                    "Waiting for a volume to be created either by the external provisioner '{prov}' or manually by the system administrator. If volume creation is delayed, please verify that your external provisioner is running and correctly registered."
                )).await;
            }
        }
        None => {
            let msg = if class_name.is_empty() {
                "no persistent volumes available for this claim and no storage class is set"
                    .to_string()
            } else if class.is_none() {
                format!("storageclass.storage.k8s.io \"{class_name}\" not found")
            } else {
                "no persistent volumes available for this claim".to_string()
            };
            if !class_name.is_empty() && class.is_none() {
                if REPEATS.first(&key, "ProvisioningFailed", &msg) {
                    ctx.warning(&objref, "ProvisioningFailed", msg).await;
                }
            } else if REPEATS.first(&key, "FailedBinding", &msg) {
                ctx.normal(&objref, "FailedBinding", msg).await;
            }
        }
    }
    set_claim_phase(&api, &pvc, pending_status(&pvc)).await?;
    ctx.succeeded(&key);
    Ok(Action::requeue(PENDING_RESYNC))
}

/// Binds `pvc` and `pv` both ways: the volume's claimRef and phase, then
/// the claim's volumeName, annotations and status.
async fn bind(
    api: &Api<PersistentVolumeClaim>,
    pv_api: &Api<PersistentVolume>,
    pvc: &PersistentVolumeClaim,
    pv: &PersistentVolume,
    by_controller: bool,
) -> Result<()> {
    let pv_name = pv.name_any();
    let key = crate::key(pvc);
    let pv_spec = pv.spec.clone().unwrap_or_default();
    let has_uid = pv_spec
        .claim_ref
        .as_ref()
        .and_then(|r| r.uid.as_deref())
        .is_some_and(|u| !u.is_empty());
    if !has_uid {
        let mut patch = json!({"spec": {"claimRef": {
            "kind": "PersistentVolumeClaim", "apiVersion": "v1",
            "namespace": pvc.metadata.namespace, "name": pvc.metadata.name,
            "uid": pvc.metadata.uid, "resourceVersion": pvc.metadata.resource_version}}});
        if pv_spec.claim_ref.is_none() {
            patch["metadata"] = json!({"annotations": {ANN_BOUND_BY_CONTROLLER: "yes"}});
        }
        pv_api
            .patch(&pv_name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(Error::kube(format!("bind persistentvolume {pv_name}")))?;
    }
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        pv_api
            .patch_status(
                &pv_name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"phase": "Bound", "message": null, "reason": null}}),
                ),
            )
            .await
            .map_err(Error::kube(format!(
                "update status of persistentvolume {pv_name}"
            )))?;
    }
    let spec_volume = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    let completed = ann(&pvc.metadata, ANN_BIND_COMPLETED) == Some("yes");
    if spec_volume != Some(pv_name.as_str()) || !completed {
        let mut anns = json!({ANN_BIND_COMPLETED: "yes"});
        if by_controller || spec_volume.is_none() {
            anns[ANN_BOUND_BY_CONTROLLER] = json!("yes");
        }
        let patch = json!({"metadata": {"annotations": anns}, "spec": {"volumeName": pv_name}});
        api.patch(
            &pvc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map_err(Error::kube(format!("bind persistentvolumeclaim {key}")))?;
    }
    let mut st = pvc.status.clone().unwrap_or_default();
    st.phase = Some("Bound".into());
    st.access_modes = pv_spec.access_modes.clone();
    st.capacity = pv_spec.capacity.clone();
    set_claim_phase(api, pvc, st).await
}

async fn reconcile_volume(obj: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action> {
    let name = obj.name_any();
    let pv_api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let Some(pv) = pv_api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get persistentvolume {name}")))?
    else {
        return Ok(Action::await_change());
    };
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let claim = match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        Some(r) => {
            let (Some(ns), Some(cn)) = (r.namespace.as_deref(), r.name.as_deref()) else {
                return Ok(Action::await_change());
            };
            Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns)
                .get_opt(cn)
                .await
                .map_err(Error::kube(format!("get persistentvolumeclaim {ns}/{cn}")))?
        }
        None => None,
    };
    let phase = pv.status.as_ref().and_then(|s| s.phase.clone());
    let state = pv_state(&pv, claim.as_ref());
    let (want, message): (Option<&str>, Option<String>) = match state {
        PvState::Available => (Some("Available"), None),
        PvState::Bound => (Some("Bound"), None),
        PvState::Pending => (phase.as_deref().or(Some("Available")), None),
        PvState::Released => {
            let policy = pv
                .spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                .unwrap_or("Retain");
            let ours = ann(&pv.metadata, ANN_PROVISIONED_BY) == Some(PROVISIONER);
            match policy {
                "Delete" if !ours && phase.as_deref() != Some("Failed") => {
                    let msg = format!("error getting deleter volume plugin for volume \"{name}\": no deletable volume plugin matched");
                    ctx.warning(&pv.object_ref(&()), "VolumeFailedDelete", msg.clone())
                        .await;
                    (Some("Failed"), Some(msg))
                }
                "Recycle" if phase.as_deref() != Some("Failed") => {
                    let msg = "Recycle policy is not supported".to_string();
                    ctx.warning(&pv.object_ref(&()), "VolumeFailedRecycle", msg.clone())
                        .await;
                    (Some("Failed"), Some(msg))
                }
                _ if phase.as_deref() == Some("Failed") => (Some("Failed"), None),
                _ => (Some("Released"), None),
            }
        }
    };
    if let Some(want) = want {
        if phase.as_deref() != Some(want)
            || (message.is_some()
                && pv.status.as_ref().and_then(|s| s.message.as_ref()) != message.as_ref())
        {
            let mut st = PersistentVolumeStatus {
                phase: Some(want.to_string()),
                ..Default::default()
            };
            st.message = message.or_else(|| {
                (want == "Failed")
                    .then(|| pv.status.as_ref().and_then(|s| s.message.clone()))
                    .flatten()
            });
            st.last_phase_transition_time = Some(pods::now());
            status::write(&pv_api, &name, &name, &st).await?;
        }
    }
    ctx.succeeded(&name);
    Ok(Action::requeue(ctx.config.resync))
}

// ---------------------------------------------------------------------------
// Provisioner

/// The default StorageClass minikube ships.
pub fn default_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(DEFAULT_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                ANN_DEFAULT_CLASS.to_string(),
                "true".to_string(),
            )])),
            labels: Some(BTreeMap::from([(
                "addonmanager.kubernetes.io/mode".to_string(),
                "EnsureExists".to_string(),
            )])),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    }
}

/// Runs the hostPath provisioner until shutdown.
pub async fn run_provisioner(ctx: Arc<Context>, shutdown: Shutdown) -> Result<()> {
    ensure_default_class(&ctx).await;
    let claims = {
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        async move {
            let api: Api<PersistentVolumeClaim> = Api::all(ctx.client.clone());
            Controller::new(api, watcher::Config::default())
                .graceful_shutdown_on(shutdown.signal())
                .run(
                    provision,
                    |obj: Arc<PersistentVolumeClaim>, err: &Error, ctx: Arc<Context>| {
                        ctx.error_action(&crate::key(&*obj), err)
                    },
                    ctx,
                )
                .for_each(|_| futures::future::ready(()))
                .await;
        }
    };
    let volumes = {
        let ctx = ctx.clone();
        async move {
            let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
            Controller::new(api, watcher::Config::default())
                .graceful_shutdown_on(shutdown.signal())
                .run(
                    reclaim,
                    |obj: Arc<PersistentVolume>, err: &Error, ctx: Arc<Context>| {
                        ctx.error_action(&crate::key(&*obj), err)
                    },
                    ctx,
                )
                .for_each(|_| futures::future::ready(()))
                .await;
        }
    };
    tokio::join!(claims, volumes);
    Ok(())
}

async fn ensure_default_class(ctx: &Context) {
    let api: Api<StorageClass> = Api::all(ctx.client.clone());
    for _ in 0..10 {
        match api.get_opt(DEFAULT_CLASS).await {
            Ok(Some(_)) => return,
            Ok(None) => match api.create(&PostParams::default(), &default_class()).await {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.code == 409 => return,
                Err(e) => tracing::warn!("create storageclass {DEFAULT_CLASS}: {e}"),
            },
            Err(e) => tracing::warn!("get storageclass {DEFAULT_CLASS}: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn provision(obj: Arc<PersistentVolumeClaim>, ctx: Arc<Context>) -> Result<Action> {
    let key = crate::key(&*obj);
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(pvc) = api
        .get_opt(&obj.name_any())
        .await
        .map_err(Error::kube(format!("get persistentvolumeclaim {key}")))?
    else {
        return Ok(Action::await_change());
    };
    let unbound = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_none_or(str::is_empty);
    let asked = ann(&pvc.metadata, ANN_STORAGE_PROVISIONER) == Some(PROVISIONER)
        || ann(&pvc.metadata, ANN_BETA_STORAGE_PROVISIONER) == Some(PROVISIONER);
    if !unbound || !asked || pvc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(class) = get_class(&ctx, claim_class(&pvc)).await? else {
        return Ok(Action::await_change());
    };
    if class.provisioner != PROVISIONER {
        return Ok(Action::await_change());
    }
    let wffc = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
    if wffc && ann(&pvc.metadata, ANN_SELECTED_NODE).is_none() {
        return Ok(Action::await_change());
    }
    let objref = pvc.object_ref(&());
    let pv = provisioned_pv(&pvc, &class, &ctx.config.volume_dir);
    let pv_name = pv.name_any();
    let pv_api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    if pv_api
        .get_opt(&pv_name)
        .await
        .map_err(Error::kube(format!("get persistentvolume {pv_name}")))?
        .is_some()
    {
        return Ok(Action::await_change());
    }
    ctx.normal(
        &objref,
        "Provisioning",
        format!("External provisioner is provisioning volume for claim \"{key}\""),
    )
    .await;
    let dir = ctx.config.volume_dir.join(&pv_name);
    if let Err(e) = make_dir(&dir) {
        let msg = format!(
            "failed to provision volume with StorageClass \"{}\": {e}",
            class.name_any()
        );
        ctx.warning(&objref, "ProvisioningFailed", msg.clone())
            .await;
        return Err(Error::Invalid(msg));
    }
    match pv_api.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => {
            ctx.warning(
                &objref,
                "ProvisioningFailed",
                format!(
                    "failed to provision volume with StorageClass \"{}\": {e}",
                    class.name_any()
                ),
            )
            .await;
            return Err(Error::kube(format!("create persistentvolume {pv_name}"))(e));
        }
    }
    ctx.normal(
        &objref,
        "ProvisioningSucceeded",
        format!("Successfully provisioned volume {pv_name}"),
    )
    .await;
    ctx.succeeded(&key);
    Ok(Action::await_change())
}

fn make_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    // Containers of any user may write, as minikube's provisioner allows.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
}

/// Deletes released volumes this provisioner created whose policy is Delete.
async fn reclaim(obj: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action> {
    let name = obj.name_any();
    let pv_api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let Some(pv) = pv_api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get persistentvolume {name}")))?
    else {
        return Ok(Action::await_change());
    };
    let ours = ann(&pv.metadata, ANN_PROVISIONED_BY) == Some(PROVISIONER);
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    if !ours || policy != Some("Delete") || !released || pv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Re-check the claim is really gone before deleting data.
    if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        if let (Some(ns), Some(cn)) = (r.namespace.as_deref(), r.name.as_deref()) {
            let claim = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns)
                .get_opt(cn)
                .await
                .map_err(Error::kube(format!("get persistentvolumeclaim {ns}/{cn}")))?;
            if pv_state(&pv, claim.as_ref()) != PvState::Released {
                return Ok(Action::await_change());
            }
        }
    }
    if let Some(hp) = pv.spec.as_ref().and_then(|s| s.host_path.as_ref()) {
        let path = PathBuf::from(&hp.path);
        // Only ever remove directories under our volume directory.
        if path.starts_with(&ctx.config.volume_dir) && path != ctx.config.volume_dir {
            if let Err(e) = std::fs::remove_dir_all(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    let msg = format!("failed to delete volume {name}: {e}");
                    ctx.warning(&pv.object_ref(&()), "VolumeFailedDelete", msg.clone())
                        .await;
                    return Err(Error::Invalid(msg));
                }
            }
        }
    }
    match pv_api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(Error::kube(format!("delete persistentvolume {name}"))(e)),
    }
    ctx.succeeded(&name);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, VolumeResourceRequirements};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn pvc(class: &str, size: &str, modes: &[&str]) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some(class.into()),
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), KQuantity(size.into()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pv(name: &str, class: &str, size: &str, modes: &[&str]) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([("tier".into(), name.into())])),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                storage_class_name: Some(class.into()),
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                capacity: Some(BTreeMap::from([("storage".into(), KQuantity(size.into()))])),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Available".into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn binder_matching() {
        let c = pvc("manual", "1Gi", &["ReadWriteOnce"]);
        let pvs = vec![
            pv("big", "manual", "10Gi", &["ReadWriteOnce"]),
            pv("small", "manual", "500Mi", &["ReadWriteOnce"]),
            pv("fit", "manual", "2Gi", &["ReadWriteOnce", "ReadOnlyMany"]),
            pv("other", "fast", "1Gi", &["ReadWriteOnce"]),
            pv("rox", "manual", "1Gi", &["ReadOnlyMany"]),
        ];
        assert_eq!(find_match(&c, &pvs).unwrap().name_any(), "fit");
        // Selector restricts.
        let mut sel = c.clone();
        sel.spec.as_mut().unwrap().selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("tier".into(), "big".into())])),
            ..Default::default()
        });
        assert_eq!(find_match(&sel, &pvs).unwrap().name_any(), "big");
        // A volume reserved for another claim is skipped; one pre-bound to us wins.
        let mut reserved = pvs.clone();
        reserved[2].spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("else".into()),
            namespace: Some("default".into()),
            ..Default::default()
        });
        assert_eq!(find_match(&c, &reserved).unwrap().name_any(), "big");
        reserved[0].spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("data".into()),
            namespace: Some("default".into()),
            ..Default::default()
        });
        assert_eq!(find_match(&c, &reserved).unwrap().name_any(), "big");
        assert!(find_match(&pvc("none", "1Gi", &["ReadWriteOnce"]), &pvs).is_none());
    }

    #[test]
    fn volume_states() {
        let c = pvc("manual", "1Gi", &["ReadWriteOnce"]);
        let mut v = pv("v", "manual", "1Gi", &["ReadWriteOnce"]);
        assert_eq!(pv_state(&v, None), PvState::Available);
        v.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("data".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..Default::default()
        });
        assert_eq!(pv_state(&v, Some(&c)), PvState::Pending);
        let mut bound = c.clone();
        bound.spec.as_mut().unwrap().volume_name = Some("v".into());
        assert_eq!(pv_state(&v, Some(&bound)), PvState::Bound);
        assert_eq!(pv_state(&v, None), PvState::Released);
        let mut newer = bound.clone();
        newer.metadata.uid = Some("u2".into());
        assert_eq!(pv_state(&v, Some(&newer)), PvState::Released);
    }

    #[test]
    fn provisioned_volume() {
        let c = pvc("standard", "2Gi", &["ReadWriteOnce"]);
        let pv = provisioned_pv(&c, &default_class(), Path::new("/var/lib/rkube/volumes"));
        assert_eq!(pv.name_any(), "pvc-u1");
        let s = pv.spec.as_ref().unwrap();
        assert_eq!(
            s.host_path.as_ref().unwrap().path,
            "/var/lib/rkube/volumes/pvc-u1"
        );
        assert_eq!(
            s.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(s.storage_class_name.as_deref(), Some("standard"));
        assert_eq!(s.claim_ref.as_ref().unwrap().uid.as_deref(), Some("u1"));
        assert!(pv_matches(&c, &pv));
        assert_eq!(claim_ref_is(&pv, &c), Some(true));
    }
}
