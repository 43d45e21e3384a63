//! SchedulerPreemption [Serial]: a higher-priority (or critical) pod that
//! does not fit preempts the lowest-priority pod, the victim gets the
//! DisruptionTarget condition, ReplicaSets of lower priority are preempted
//! exactly once, and PriorityClasses keep their value immutable.
//!
//! The node's capacity is an extended resource the test advertises on the
//! node status (and removes afterwards), as upstream does.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use super::{
    add_extended_resource, conflict, finish, node_label, node_name, node_name_affinity,
    node_that_can_run_pod, nodes, not_found, pause_pod, ready_schedulable_nodes,
    remove_extended_resource, wait_running_in, with_resources, SHORT_WAIT,
};
use crate::conformance;
use crate::ctx::{from_json, suffix, wait_for, Ctx};
use crate::Test;

pub(super) fn tests() -> Vec<Test> {
    vec![
        conformance!("Scheduler, Basic Preemption", basic_preemption),
        conformance!(
            "Scheduler, Preemption for critical pod",
            critical_pod_preemption
        ),
        conformance!(
            "Verify the DisruptionTarget condition is added to the preempted pod",
            disruption_condition
        ),
        conformance!("Pod preemption verification", preemption_execution_path),
        conformance!(
            "Scheduler, Verify PriorityClass endpoints",
            priority_class_endpoints
        ),
    ]
}

/// The extended resource upstream advertises for the preemption tests.
const TEST_RESOURCE: &str = "scheduling.k8s.io/foo";

fn priority_classes(c: &Ctx) -> Api<PriorityClass> {
    c.all()
}

/// Creates PriorityClass `name` with `value`; one that exists already is fine.
async fn create_priority_class(c: &Ctx, name: &str, value: i32) -> Result<Option<PriorityClass>> {
    let pc: PriorityClass = from_json(json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": name}, "value": value,
    }))?;
    match priority_classes(c)
        .create(&PostParams::default(), &pc)
        .await
    {
        Ok(pc) => Ok(Some(pc)),
        Err(e) if conflict(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("create PriorityClass {name}")),
    }
}

async fn delete_priority_classes(c: &Ctx, names: &[String]) -> Result<()> {
    for n in names {
        match priority_classes(c)
            .delete(n, &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e).with_context(|| format!("delete PriorityClass {n}")),
        }
    }
    Ok(())
}

/// The low, medium and high PriorityClasses of upstream's BeforeEach.
struct Priorities {
    low: String,
    medium: String,
    high: String,
}

impl Priorities {
    fn names(&self) -> Vec<String> {
        vec![self.low.clone(), self.medium.clone(), self.high.clone()]
    }
}

async fn create_priorities(c: &Ctx) -> Result<Priorities> {
    let p = Priorities {
        low: "sched-preemption-low-priority".into(),
        medium: "sched-preemption-medium-priority".into(),
        high: "sched-preemption-high-priority".into(),
    };
    create_priority_class(c, &p.low, 1).await?;
    create_priority_class(c, &p.medium, 100).await?;
    create_priority_class(c, &p.high, 1000).await?;
    Ok(p)
}

/// Runs `body` between upstream's BeforeEach (PriorityClasses) and
/// AfterEach (PriorityClasses deleted, the extended resource removed from
/// every node).
async fn with_preemption_suite<F, Fut>(c: Ctx, body: F) -> Result<()>
where
    F: FnOnce(Ctx, Priorities, Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let prio = match create_priorities(&c).await {
        Ok(p) => p,
        Err(e) => {
            let names = [
                "sched-preemption-low-priority",
                "sched-preemption-medium-priority",
                "sched-preemption-high-priority",
            ]
            .map(String::from);
            return finish(Err(e), delete_priority_classes(&c, &names).await);
        }
    };
    let names = prio.names();
    let node_names: Vec<String> = match ready_schedulable_nodes(&c).await {
        Ok(ns) => ns.iter().map(node_name).collect(),
        Err(e) => return finish(Err(e), delete_priority_classes(&c, &names).await),
    };
    let res = body(c.clone(), prio, node_names.clone()).await;
    let mut cleanup = delete_priority_classes(&c, &names).await;
    for n in &node_names {
        if let Err(e) = remove_extended_resource(&c, n, TEST_RESOURCE).await {
            cleanup = Err(e);
        }
    }
    finish(res, cleanup)
}

/// Upstream's victim pods: on every node 5 units of the test resource and
/// two pods taking 2 each, the very first of low priority, the rest medium.
async fn create_victims(c: &Ctx, prio: &Priorities, node_names: &[String]) -> Result<Vec<String>> {
    let mut pods = Vec::new();
    for (i, node) in node_names.iter().enumerate() {
        add_extended_resource(c, node, TEST_RESOURCE, "5").await?;
        for j in 0..2 {
            let class = if pods.is_empty() {
                &prio.low
            } else {
                &prio.medium
            };
            let name = format!("pod{i}-{j}-{class}");
            let p = with_resources(
                pause_pod(
                    c,
                    &name,
                    json!({}),
                    json!({"priorityClassName": class, "affinity": node_name_affinity(node)}),
                ),
                json!({ TEST_RESOURCE: "2" }),
            );
            c.create_pod(p).await?;
            pods.push(name);
        }
    }
    ensure!(
        pods.len() >= 2,
        "we need at least two pods to be created but all nodes are already heavily utilized"
    );
    for p in &pods {
        wait_running_in(c, &c.ns, p).await?;
    }
    Ok(pods)
}

/// The first victim is gone or terminating; every other one is untouched.
async fn check_preempted(c: &Ctx, pods: &[String]) -> Result<()> {
    let first = pods.first().context("no victim pods")?;
    let preempted = match c.pods().get(first).await {
        Err(e) if not_found(&e) => true,
        Err(e) => return Err(e.into()),
        Ok(p) => p.metadata.deletion_timestamp.is_some(),
    };
    for p in pods.iter().skip(1) {
        let live = c
            .pods()
            .get(p)
            .await
            .with_context(|| format!("get pod {p}"))?;
        ensure!(
            live.metadata.deletion_timestamp.is_none(),
            "pod {p} of higher priority was preempted"
        );
    }
    ensure!(
        preempted,
        "expected pod {first} (the lowest priority) to be preempted"
    );
    Ok(())
}

async fn basic_preemption(c: Ctx) -> Result<()> {
    with_preemption_suite(c, |c, prio, node_names| async move {
        let pods = create_victims(&c, &prio, &node_names).await?;
        let p = with_resources(
            pause_pod(
                &c,
                "preemptor-pod",
                json!({}),
                json!({"priorityClassName": prio.high}),
            ),
            json!({ TEST_RESOURCE: "2" }),
        );
        c.create_pod(p).await?;
        wait_running_in(&c, &c.ns, "preemptor-pod").await?;
        check_preempted(&c, &pods).await
    })
    .await
}

async fn critical_pod_preemption(c: Ctx) -> Result<()> {
    with_preemption_suite(c, |c, prio, node_names| async move {
        let system: Api<Pod> = Api::namespaced(c.client.clone(), "kube-system");
        let res = async {
            let pods = create_victims(&c, &prio, &node_names).await?;
            let mut p = with_resources(
                pause_pod(
                    &c,
                    "critical-pod",
                    json!({}),
                    json!({"priorityClassName": "system-cluster-critical"}),
                ),
                json!({ TEST_RESOURCE: "2" }),
            );
            p["metadata"]["namespace"] = json!("kube-system");
            system
                .create(&PostParams::default(), &from_json(p)?)
                .await
                .context("create kube-system/critical-pod")?;
            wait_running_in(&c, "kube-system", "critical-pod").await?;
            check_preempted(&c, &pods).await
        }
        .await;
        let cleanup = match system
            .delete("critical-pod", &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(anyhow!(
                "error cleaning up pod kube-system/critical-pod: {e}"
            )),
        };
        finish(res, cleanup)
    })
    .await
}

const TEST_FINALIZER: &str = "example.com/test-finalizer";

async fn disruption_condition(c: Ctx) -> Result<()> {
    with_preemption_suite(c, |c, prio, node_names| async move {
        let node = node_names
            .first()
            .context("we need at least one node")?
            .clone();
        add_extended_resource(&c, &node, TEST_RESOURCE, "1").await?;
        let mut victim = with_resources(
            pause_pod(
                &c,
                "victim-pod",
                json!({}),
                json!({"priorityClassName": prio.low, "affinity": node_name_affinity(&node)}),
            ),
            json!({ TEST_RESOURCE: "1" }),
        );
        victim["metadata"]["finalizers"] = json!([TEST_FINALIZER]);
        c.create_pod(victim).await?;
        let res = async {
            wait_running_in(&c, &c.ns, "victim-pod").await?;
            let p = with_resources(
                pause_pod(
                    &c,
                    "preemptor-pod",
                    json!({}),
                    json!({"priorityClassName": prio.high, "affinity": node_name_affinity(&node)}),
                ),
                json!({ TEST_RESOURCE: "1" }),
            );
            c.create_pod(p).await?;
            let pods = c.pods();
            let victim = wait_for(
                "the victim pod to be terminating",
                c.env.pod_start,
                || async {
                    let p = pods.get("victim-pod").await?;
                    Ok(p.metadata.deletion_timestamp.is_some().then_some(p))
                },
            )
            .await?;
            let has = victim
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "DisruptionTarget"));
            ensure!(
                has,
                "the preempted pod has no DisruptionTarget condition: {:?}",
                victim.status.and_then(|s| s.conditions)
            );
            Ok(())
        }
        .await;
        // Take the finalizer off so the victim can go.
        finish(res, remove_finalizer(&c, "victim-pod").await)
    })
    .await
}

/// Removes TEST_FINALIZER from pod `name` (a missing pod is fine).
async fn remove_finalizer(c: &Ctx, name: &str) -> Result<()> {
    let pods = c.pods();
    for _ in 0..5 {
        let p = match pods.get(name).await {
            Ok(p) => p,
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let rest: Vec<String> = p
            .metadata
            .finalizers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != TEST_FINALIZER)
            .collect();
        let patch = json!({"metadata": {
            "resourceVersion": p.metadata.resource_version,
            "finalizers": rest,
        }});
        match pods
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) if conflict(&e) => continue,
            Err(e) => return Err(e).with_context(|| format!("remove the finalizer of pod {name}")),
        }
    }
    bail!("remove the finalizer of pod {name}: every attempt conflicted")
}

/// The fake CPU of upstream's PreemptionExecutionPath.
const FAKE_CPU: &str = "example.com/fakecpu";

/// Upstream's runPauseRS: a ReplicaSet `rs-{name}` of one pause pod with
/// `priority`, pinned by hostname, asking for `cpu` of the fake CPU; waits
/// until it has one available replica.
async fn run_pause_rs(
    c: &Ctx,
    name: &str,
    priority: &str,
    hostname: &str,
    cpu: &str,
) -> Result<()> {
    let labels = json!({"name": name});
    let tpl = with_resources(
        pause_pod(
            c,
            name,
            labels.clone(),
            json!({"priorityClassName": priority,
                   "nodeSelector": {"kubernetes.io/hostname": hostname}}),
        ),
        json!({ FAKE_CPU: cpu }),
    );
    let rs_name = format!("rs-{name}");
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": rs_name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": tpl["spec"]},
        },
    });
    c.create::<ReplicaSet>(rs)
        .await
        .with_context(|| format!("create ReplicaSet {rs_name}"))?;
    let api = c.api::<ReplicaSet>();
    wait_for(
        &format!("ReplicaSet {rs_name} to have 1 available replica"),
        c.env.pod_start,
        || async {
            let rs = api.get(&rs_name).await?;
            let generation = rs.metadata.generation.unwrap_or(0);
            let s = rs.status.unwrap_or_default();
            Ok((s.observed_generation.unwrap_or(0) >= generation
                && s.available_replicas == Some(1))
            .then_some(()))
        },
    )
    .await
}

async fn preemption_execution_path(c: Ctx) -> Result<()> {
    let node = node_that_can_run_pod(&c, "without-label").await?;
    let n = nodes(&c).get(&node).await?;
    let hostname = node_label(&n, "kubernetes.io/hostname")
        .with_context(|| format!("error getting kubernetes.io/hostname label on node {node}"))?;
    let s = suffix();
    let classes: Vec<String> = (1..=4).map(|i| format!("p{i}-{s}")).collect();
    let res = async {
        add_extended_resource(&c, &node, FAKE_CPU, "1000").await?;
        for (i, name) in classes.iter().enumerate() {
            create_priority_class(&c, name, i as i32 + 1).await?;
        }
        execution_path(&c, &hostname, &classes).await
    }
    .await;
    let mut cleanup = remove_extended_resource(&c, &node, FAKE_CPU).await;
    if let Err(e) = delete_priority_classes(&c, &classes).await {
        cleanup = Err(e);
    }
    finish(res, cleanup)
}

async fn execution_path(c: &Ctx, hostname: &str, classes: &[String]) -> Result<()> {
    // Every pod name created in the namespace, as upstream's informer counts them.
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let watch = {
        let seen = seen.clone();
        let stream = watcher(c.pods(), watcher::Config::default());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let pod = match ev {
                    Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                    _ => continue,
                };
                if let (Some(n), Ok(mut s)) = (pod.metadata.name, seen.lock()) {
                    s.insert(n);
                }
            }
        })
    };
    let res = async {
        let [p1, p2, p3, p4] = classes else {
            bail!("expected four PriorityClasses");
        };
        // Three ReplicaSets take 950 of the 1000 fake CPU.
        run_pause_rs(c, "pod1", p1, hostname, "200").await?;
        run_pause_rs(c, "pod2", p2, hostname, "300").await?;
        run_pause_rs(c, "pod3", p3, hostname, "450").await?;

        let preemptor = with_resources(
            pause_pod(
                c,
                "pod4",
                json!({"name": "pod4"}),
                json!({"priorityClassName": p4,
                       "nodeSelector": {"kubernetes.io/hostname": hostname}}),
            ),
            json!({ FAKE_CPU: "500" }),
        );
        c.create_pod(preemptor).await?;
        let pods = c.pods();
        wait_for(
            "pod4 to preempt other pods",
            Duration::from_secs(120),
            || async {
                let p = pods.get("pod4").await?;
                Ok(p.spec
                    .and_then(|s| s.node_name)
                    .filter(|n| !n.is_empty())
                    .map(|_| ()))
            },
        )
        .await
        .context("pod4 failed to preempt other pods")?;

        // rs-pod1 and rs-pod2 are preempted exactly once (two pods each),
        // rs-pod3 never (one pod).
        let expected = [("rs-pod1", 2usize), ("rs-pod2", 2), ("rs-pod3", 1)];
        let counts = || -> Vec<(&str, usize, usize)> {
            let s = seen.lock().map(|s| s.clone()).unwrap_or_default();
            expected
                .iter()
                .map(|(prefix, want)| {
                    (
                        *prefix,
                        *want,
                        s.iter().filter(|n| n.starts_with(prefix)).count(),
                    )
                })
                .collect()
        };
        let observed = wait_for("the ReplicaSets' pod creations", SHORT_WAIT, || async {
            let cs = counts();
            if let Some((p, want, got)) = cs.iter().find(|(_, want, got)| got > want) {
                // Over-preempted: a failure, not a reason to wait.
                return Ok(Some(Err(anyhow!(
                    "{p} had more than {want} pods created: {got}"
                ))));
            }
            if cs.iter().all(|(_, want, got)| got == want) {
                Ok(Some(Ok(())))
            } else {
                bail!("pods created so far: {cs:?}")
            }
        })
        .await?;
        observed?;
        // The state must stay put.
        tokio::time::sleep(Duration::from_secs(5)).await;
        for (p, want, got) in counts() {
            ensure!(
                got == want,
                "pods of {p} have been {}-preempted: expect {want} pod names, but got {got}",
                if got < want { "under" } else { "over" }
            );
        }
        Ok(())
    }
    .await;
    watch.abort();
    res
}

async fn priority_class_endpoints(c: Ctx) -> Result<()> {
    let s = suffix();
    let names = [format!("p1-{s}"), format!("p2-{s}")];
    let res = priority_class_endpoints_with(&c, &names).await;
    finish(res, delete_priority_classes(&c, &names).await)
}

async fn priority_class_endpoints_with(c: &Ctx, names: &[String; 2]) -> Result<()> {
    let api = priority_classes(c);
    let mut pcs = Vec::new();
    for (i, n) in names.iter().enumerate() {
        create_priority_class(c, n, i as i32 + 1).await?;
        pcs.push(api.get(n).await?);
    }
    let (pc1, pc2) = (&pcs[0], &pcs[1]);

    // 1. Patch/Update on immutable fields will fail.
    let r = api
        .patch(
            &names[0],
            &PatchParams::default(),
            &Patch::Strategic(json!({"value": pc1.value * 10})),
        )
        .await;
    ensure!(
        r.is_err(),
        "expect a patch error on an immutable field (value)"
    );
    let mut copy = pc2.clone();
    copy.value *= 10;
    let r = api.replace(&names[1], &PostParams::default(), &copy).await;
    ensure!(
        r.is_err(),
        "expect an update error on an immutable field (value)"
    );

    // 2. Patch/Update on mutable fields will succeed.
    let desc = "updated description";
    api.patch(
        &names[0],
        &PatchParams::default(),
        &Patch::Strategic(json!({"description": desc})),
    )
    .await
    .context("patch the description")?;
    let mut copy = pc2.clone();
    copy.description = Some(desc.into());
    api.replace(&names[1], &PostParams::default(), &copy)
        .await
        .context("update the description")?;

    // 3. List existing PriorityClasses.
    api.list(&ListParams::default())
        .await
        .context("list PriorityClasses")?;

    // 4. Verify fields of updated PriorityClasses.
    for pc in &pcs {
        let name = pc.metadata.name.clone().unwrap_or_default();
        let live = api.get(&name).await?;
        ensure!(
            live.value == pc.value,
            "PriorityClass {name} has value {}, want {}",
            live.value,
            pc.value
        );
        ensure!(
            live.description.as_deref() == Some(desc),
            "PriorityClass {name} has description {:?}, want {desc:?}",
            live.description
        );
    }
    Ok(())
}
