//! Built-in printers, after upstream `pkg/printers/internalversion`: column
//! definitions and cells per resource, generated in wide mode as the API
//! server does (priority-1 columns are the `-o wide` extras).

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{column, human_duration, AGE_DESC, NAME_DESC};
use crate::selector::LabelSelector;
use crate::ResourceInfo;

/// Which printer serves a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Printer {
    Pod,
    PodTemplate,
    ReplicationController,
    ReplicaSet,
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    Service,
    Endpoints,
    EndpointSlice,
    Node,
    Namespace,
    ConfigMap,
    Secret,
    ServiceAccount,
    Event,
    PersistentVolume,
    PersistentVolumeClaim,
    ResourceQuota,
    Lease,
    Role,
    RoleBinding,
    PriorityClass,
    StorageClass,
    RuntimeClass,
    CsiDriver,
    CsiNode,
    VolumeAttachment,
    PodDisruptionBudget,
    HorizontalPodAutoscaler,
    ControllerRevision,
    /// Upstream's default table convertor: Name, Created At.
    Default,
}

fn printer(info: &ResourceInfo) -> Printer {
    use Printer::*;
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => Pod,
        ("", "podtemplates") => PodTemplate,
        ("", "replicationcontrollers") => ReplicationController,
        ("apps", "replicasets") => ReplicaSet,
        ("apps", "deployments") => Deployment,
        ("apps", "statefulsets") => StatefulSet,
        ("apps", "daemonsets") => DaemonSet,
        ("apps", "controllerrevisions") => ControllerRevision,
        ("batch", "jobs") => Job,
        ("batch", "cronjobs") => CronJob,
        ("", "services") => Service,
        ("", "endpoints") => Endpoints,
        ("discovery.k8s.io", "endpointslices") => EndpointSlice,
        ("", "nodes") => Node,
        ("", "namespaces") => Namespace,
        ("", "configmaps") => ConfigMap,
        ("", "secrets") => Secret,
        ("", "serviceaccounts") => ServiceAccount,
        ("", "events") | ("events.k8s.io", "events") => Event,
        ("", "persistentvolumes") => PersistentVolume,
        ("", "persistentvolumeclaims") => PersistentVolumeClaim,
        ("", "resourcequotas") => ResourceQuota,
        ("coordination.k8s.io", "leases") => Lease,
        ("rbac.authorization.k8s.io", "roles" | "clusterroles") => Role,
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => RoleBinding,
        ("scheduling.k8s.io", "priorityclasses") => PriorityClass,
        ("storage.k8s.io", "storageclasses") => StorageClass,
        ("storage.k8s.io", "csidrivers") => CsiDriver,
        ("storage.k8s.io", "csinodes") => CsiNode,
        ("storage.k8s.io", "volumeattachments") => VolumeAttachment,
        ("node.k8s.io", "runtimeclasses") => RuntimeClass,
        ("policy", "poddisruptionbudgets") => PodDisruptionBudget,
        ("autoscaling", "horizontalpodautoscalers") => HorizontalPodAutoscaler,
        _ => Default,
    }
}

/// Column definitions (name, type, priority, description) per printer.
pub(super) fn columns(info: &ResourceInfo) -> Vec<Value> {
    use Printer::*;
    let p = printer(info);
    let name = column("Name", "string", "name", 0, NAME_DESC);
    let age = column("Age", "string", "", 0, AGE_DESC);
    let c = |n: &str, ty: &str, d: &str| column(n, ty, "", 0, d);
    let w = |n: &str, ty: &str, d: &str| column(n, ty, "", 1, d);
    let containers = || {
        w(
            "Containers",
            "string",
            "Names of each container in the template.",
        )
    };
    let images = || {
        w(
            "Images",
            "string",
            "Images referenced by each container in the template.",
        )
    };
    let selector = || {
        w(
            "Selector",
            "string",
            "A label query over pods that should match the replica count.",
        )
    };
    match p {
        Pod => vec![
            name,
            c("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            c("Status", "string", "The aggregate status of the containers in this pod."),
            c("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            age,
            w("IP", "string", "The IP address of the pod."),
            w("Node", "string", "The name of the node on which the pod is running."),
            w("Nominated Node", "string", "The name of the node where the pod is nominated to run, if any."),
            w("Readiness Gates", "string", "The number of true readiness gates out of the pod's readiness gates."),
        ],
        PodTemplate => vec![
            name,
            c("Containers", "string", "Names of each container in the template."),
            c("Images", "string", "Images referenced by each container in the template."),
            c("Pod Labels", "string", "The labels for the pod template."),
        ],
        ReplicationController | ReplicaSet => vec![
            name,
            c("Desired", "integer", "Number of desired pods."),
            c("Current", "integer", "The most recently observed number of replicas."),
            c("Ready", "integer", "The number of ready replicas."),
            age,
            containers(),
            images(),
            selector(),
        ],
        Deployment => vec![
            name,
            c("Ready", "string", "Number of the pod with ready state"),
            c("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            c("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            age,
            containers(),
            images(),
            selector(),
        ],
        StatefulSet => vec![name, c("Ready", "string", "Number of the pod with ready state"), age, containers(), images()],
        DaemonSet => vec![
            name,
            c("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
            c("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
            c("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
            c("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod."),
            c("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
            c("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
            age,
            containers(),
            images(),
            selector(),
        ],
        Job => vec![
            name,
            c("Status", "string", "Status of the job."),
            c("Completions", "string", "The number of pods which reached phase Succeeded."),
            c("Duration", "string", "Time required to complete the job."),
            age,
            containers(),
            images(),
            selector(),
        ],
        CronJob => vec![
            name,
            c("Schedule", "string", "The schedule in Cron format."),
            c("Timezone", "string", "The time zone name for the given schedule."),
            c("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions."),
            c("Active", "integer", "A list of pointers to currently running jobs."),
            c("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
            age,
            containers(),
            images(),
            selector(),
        ],
        Service => vec![
            name,
            c("Type", "string", "type determines how the Service is exposed."),
            c("Cluster-IP", "string", "clusterIP is the IP address of the service."),
            c("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            c("Port(s)", "string", "The list of ports that are exposed by this service."),
            age,
            w("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
        ],
        Endpoints => vec![name, c("Endpoints", "string", "The set of all endpoints is the union of all subsets."), age],
        EndpointSlice => vec![
            name,
            c("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice."),
            c("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
            c("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
            age,
        ],
        Node => vec![
            name,
            c("Status", "string", "The status of the node"),
            c("Roles", "string", "The roles of the node"),
            age,
            c("Version", "string", "Kubelet Version reported by the node."),
            w("Internal-IP", "string", "List of addresses reachable to the node."),
            w("External-IP", "string", "List of addresses reachable to the node."),
            w("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            w("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            w("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        Namespace => vec![name, c("Status", "string", "The status of the namespace"), age],
        ConfigMap => vec![name, c("Data", "string", "Data contains the configuration data."), age],
        Secret => vec![
            name,
            c("Type", "string", "Used to facilitate programmatic handling of secret data."),
            c("Data", "string", "Data contains the secret data."),
            age,
        ],
        ServiceAccount => vec![name, c("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), age],
        Event => vec![
            c("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
            c("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
            c("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            c("Object", "string", "The object that this event is about."),
            w("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
            w("Source", "string", "The component reporting this event."),
            c("Message", "string", "A human-readable description of the status of this operation."),
            w("First Seen", "string", "The time at which the event was first recorded."),
            w("Count", "string", "The number of times this event has occurred."),
            column("Name", "string", "name", 1, NAME_DESC),
        ],
        PersistentVolume => vec![
            name,
            c("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
            c("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
            c("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
            c("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
            c("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
            c("StorageClass", "string", "StorageClass of the pv"),
            c("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
            c("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
            age,
            w("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
        ],
        PersistentVolumeClaim => vec![
            name,
            c("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
            c("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
            c("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
            c("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has."),
            c("StorageClass", "string", "StorageClass of the pvc"),
            c("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
            age,
            w("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim."),
        ],
        ResourceQuota => vec![
            name,
            age,
            c("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
            c("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
        ],
        Lease => vec![name, c("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."), age],
        Role => vec![name, column("Created At", "date", "", 0, AGE_DESC)],
        RoleBinding => vec![
            name,
            c("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
            age,
            w("Users", "string", "Users in the roleBinding"),
            w("Groups", "string", "Groups in the roleBinding"),
            w("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
        ],
        PriorityClass => vec![
            name,
            c("Value", "integer", "value represents the integer value of this priority class."),
            c("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
            age,
        ],
        StorageClass => vec![
            name,
            c("Provisioner", "string", "provisioner indicates the type of the provisioner."),
            c("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
            c("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
            c("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
            age,
        ],
        RuntimeClass => vec![name, c("Handler", "string", "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."), age],
        CsiDriver => vec![
            name,
            c("AttachRequired", "boolean", "attachRequired indicates this CSI volume driver requires an attach operation."),
            c("PodInfoOnMount", "boolean", "podInfoOnMount indicates this CSI volume driver requires additional pod information during mount operations."),
            c("StorageCapacity", "boolean", "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity."),
            c("TokenRequests", "string", "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for."),
            c("RequiresRepublish", "boolean", "requiresRepublish indicates the CSI driver wants NodePublishVolume being periodically called."),
            c("Modes", "string", "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports."),
            age,
        ],
        CsiNode => vec![name, c("Drivers", "integer", "drivers is a list of information of all CSI Drivers existing on a node."), age],
        VolumeAttachment => vec![
            name,
            c("Attacher", "string", "attacher indicates the name of the volume driver that MUST handle this request."),
            c("PV", "string", "persistentVolumeName represents the name of the persistent volume to attach."),
            c("Node", "string", "nodeName represents the node that the volume should be attached to."),
            c("Attached", "boolean", "attached indicates the volume is successfully attached."),
            age,
        ],
        PodDisruptionBudget => vec![
            name,
            c("Min Available", "string", "The minimum number of pods that must be available simultaneously."),
            c("Max Unavailable", "string", "The maximum number of pods that may be unavailable simultaneously."),
            c("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
            age,
        ],
        HorizontalPodAutoscaler => vec![
            name,
            c("Reference", "string", "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource."),
            c("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used)."),
            c("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
            c("MaxPods", "integer", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
            c("Replicas", "integer", "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler."),
            age,
        ],
        ControllerRevision => vec![
            name,
            c("Controller", "string", "Controller of the object"),
            c("Revision", "integer", "Revision indicates the revision of the state represented by Data."),
            age,
        ],
        Default => vec![name, column("Created At", "date", "", 0, AGE_DESC)],
    }
}

// ---- small accessors ------------------------------------------------------

fn ptr<'a>(v: &'a Value, p: &str) -> Option<&'a Value> {
    v.pointer(p).filter(|v| !v.is_null())
}

fn st<'a>(v: &'a Value, p: &str) -> &'a str {
    ptr(v, p).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, p: &str) -> i64 {
    ptr(v, p).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(v: &'a Value, p: &str) -> &'a [Value] {
    ptr(v, p)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn len_of(v: &Value, p: &str) -> i64 {
    match ptr(v, p) {
        Some(Value::Object(m)) => m.len() as i64,
        Some(Value::Array(a)) => a.len() as i64,
        _ => 0,
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `translateTimestampSince`: "<unknown>" for an unset time.
fn since(ts: &str, now: DateTime<Utc>) -> String {
    match parse_time(ts) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

pub(super) fn name(obj: &Value) -> &str {
    st(obj, "/metadata/name")
}

fn age(obj: &Value, now: DateTime<Utc>) -> String {
    since(st(obj, "/metadata/creationTimestamp"), now)
}

fn created_at(obj: &Value) -> Value {
    parse_time(st(obj, "/metadata/creationTimestamp"))
        .map(|t| json!(t.to_rfc3339_opts(SecondsFormat::Secs, true)))
        .unwrap_or_else(|| json!("0001-01-01T00:00:00Z"))
}

/// `labels.FormatLabels`: sorted `k=v` pairs, "<none>" when empty.
fn format_labels(v: Option<&Value>) -> String {
    let mut pairs: Vec<String> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    or_none(&pairs.join(","))
}

/// `metav1.FormatLabelSelector`.
fn format_selector(v: Option<&Value>) -> String {
    match LabelSelector::from_json(v.unwrap_or(&Value::Null)) {
        Ok(sel) => or_none(&sel.to_string()),
        Err(_) => "<error>".into(),
    }
}

/// `layoutContainerCells`: comma-joined names and images.
fn containers(obj: &Value, pod_spec: &str) -> (String, String) {
    let cs = arr(obj, &format!("{pod_spec}/containers"));
    let names: Vec<&str> = cs.iter().map(|c| st(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| st(c, "/image")).collect();
    (names.join(","), images.join(","))
}

fn has_condition(obj: &Value, ty: &str) -> bool {
    arr(obj, "/status/conditions")
        .iter()
        .any(|c| st(c, "/type") == ty && st(c, "/status") == "True")
}

fn access_modes(v: &[Value]) -> String {
    let modes: Vec<&str> = v.iter().filter_map(Value::as_str).collect();
    let mut out = Vec::new();
    for (mode, short) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if modes.contains(&mode) {
            out.push(short);
        }
    }
    out.join(",")
}

/// Row cells per printer.
pub(super) fn cells(info: &ResourceInfo, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    use Printer::*;
    let n = json!(name(obj));
    let a = json!(age(obj, now));
    match printer(info) {
        Pod => pod_cells(obj, now),
        PodTemplate => {
            let (names, images) = containers(obj, "/template/spec");
            vec![
                n,
                json!(names),
                json!(images),
                json!(format_labels(ptr(obj, "/template/metadata/labels"))),
            ]
        }
        ReplicationController | ReplicaSet => {
            let (names, images) = containers(obj, "/spec/template/spec");
            let selector = if printer(info) == ReplicationController {
                format_labels(ptr(obj, "/spec/selector"))
            } else {
                format_selector(ptr(obj, "/spec/selector"))
            };
            let desired = ptr(obj, "/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            vec![
                n,
                json!(desired),
                json!(int(obj, "/status/replicas")),
                json!(int(obj, "/status/readyReplicas")),
                a,
                json!(names),
                json!(images),
                json!(selector),
            ]
        }
        Deployment => {
            let (names, images) = containers(obj, "/spec/template/spec");
            let desired = ptr(obj, "/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            vec![
                n,
                json!(format!("{}/{desired}", int(obj, "/status/readyReplicas"))),
                json!(int(obj, "/status/updatedReplicas")),
                json!(int(obj, "/status/availableReplicas")),
                a,
                json!(names),
                json!(images),
                json!(format_selector(ptr(obj, "/spec/selector"))),
            ]
        }
        StatefulSet => {
            let (names, images) = containers(obj, "/spec/template/spec");
            let desired = ptr(obj, "/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            vec![
                n,
                json!(format!("{}/{desired}", int(obj, "/status/readyReplicas"))),
                a,
                json!(names),
                json!(images),
            ]
        }
        DaemonSet => {
            let (names, images) = containers(obj, "/spec/template/spec");
            vec![
                n,
                json!(int(obj, "/status/desiredNumberScheduled")),
                json!(int(obj, "/status/currentNumberScheduled")),
                json!(int(obj, "/status/numberReady")),
                json!(int(obj, "/status/updatedNumberScheduled")),
                json!(int(obj, "/status/numberAvailable")),
                json!(format_labels(ptr(obj, "/spec/template/spec/nodeSelector"))),
                a,
                json!(names),
                json!(images),
                json!(format_selector(ptr(obj, "/spec/selector"))),
            ]
        }
        Job => job_cells(obj, now),
        CronJob => {
            let (names, images) = containers(obj, "/spec/jobTemplate/spec/template/spec");
            let last = match st(obj, "/status/lastScheduleTime") {
                "" => "<none>".to_string(),
                t => since(t, now),
            };
            let suspend = match ptr(obj, "/spec/suspend").and_then(Value::as_bool) {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            vec![
                n,
                json!(st(obj, "/spec/schedule")),
                json!(or_none(st(obj, "/spec/timeZone"))),
                json!(suspend),
                json!(len_of(obj, "/status/active")),
                json!(last),
                a,
                json!(names),
                json!(images),
                json!(format_selector(ptr(obj, "/spec/jobTemplate/spec/selector"))),
            ]
        }
        Service => service_cells(obj, n, a),
        Endpoints => vec![n, json!(format_endpoints(obj)), a],
        EndpointSlice => {
            let ports: Vec<String> = arr(obj, "/ports")
                .iter()
                .map(
                    |p| match (ptr(p, "/port").and_then(Value::as_i64), st(p, "/name")) {
                        (Some(port), _) => port.to_string(),
                        (None, name) if !name.is_empty() => name.to_string(),
                        _ => "*".to_string(),
                    },
                )
                .collect();
            let addrs: Vec<String> = arr(obj, "/endpoints")
                .iter()
                .flat_map(|e| {
                    arr(e, "/addresses")
                        .iter()
                        .map(|a| a.as_str().unwrap_or_default().to_string())
                })
                .collect();
            vec![
                n,
                json!(st(obj, "/addressType")),
                json!(list_with_more(&ports)),
                json!(list_with_more(&addrs)),
                a,
            ]
        }
        Node => node_cells(obj, n, a),
        Namespace => vec![n, json!(st(obj, "/status/phase")), a],
        ConfigMap => vec![
            n,
            json!(len_of(obj, "/data") + len_of(obj, "/binaryData")),
            a,
        ],
        Secret => vec![n, json!(st(obj, "/type")), json!(len_of(obj, "/data")), a],
        ServiceAccount => vec![n, json!(len_of(obj, "/secrets")), a],
        Event => event_cells(info, obj, now),
        PersistentVolume => {
            let claim = match ptr(obj, "/spec/claimRef") {
                Some(c) => format!("{}/{}", st(c, "/namespace"), st(c, "/name")),
                None => String::new(),
            };
            let phase = if ptr(obj, "/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else {
                st(obj, "/status/phase")
            };
            let class = match st(
                obj,
                "/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
            ) {
                "" => st(obj, "/spec/storageClassName"),
                c => c,
            };
            vec![
                n,
                json!(st(obj, "/spec/capacity/storage")),
                json!(access_modes(arr(obj, "/spec/accessModes"))),
                json!(st(obj, "/spec/persistentVolumeReclaimPolicy")),
                json!(phase),
                json!(claim),
                json!(class),
                json!(unset(st(obj, "/spec/volumeAttributesClassName"))),
                json!(st(obj, "/status/reason")),
                a,
                json!(unset(st(obj, "/spec/volumeMode"))),
            ]
        }
        PersistentVolumeClaim => {
            let phase = if ptr(obj, "/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else {
                st(obj, "/status/phase")
            };
            let bound = !st(obj, "/spec/volumeName").is_empty();
            let (capacity, modes) = if bound {
                (
                    st(obj, "/status/capacity/storage").to_string(),
                    access_modes(arr(obj, "/status/accessModes")),
                )
            } else {
                (String::new(), String::new())
            };
            let class = match st(
                obj,
                "/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
            ) {
                "" => st(obj, "/spec/storageClassName"),
                c => c,
            };
            vec![
                n,
                json!(phase),
                json!(st(obj, "/spec/volumeName")),
                json!(capacity),
                json!(modes),
                json!(class),
                json!(unset(st(obj, "/spec/volumeAttributesClassName"))),
                a,
                json!(unset(st(obj, "/spec/volumeMode"))),
            ]
        }
        ResourceQuota => {
            let mut request = Vec::new();
            let mut limit = Vec::new();
            if let Some(hard) = ptr(obj, "/status/hard").and_then(Value::as_object) {
                let mut keys: Vec<&String> = hard.keys().collect();
                keys.sort();
                for k in keys {
                    let used = obj
                        .pointer("/status/used")
                        .and_then(|u| u.get(k.as_str()))
                        .and_then(Value::as_str)
                        .unwrap_or("0");
                    let entry = format!(
                        "{k}: {used}/{}",
                        hard[k.as_str()].as_str().unwrap_or_default()
                    );
                    if k.split('.').next() == Some("limits") && k.contains('.') {
                        limit.push(entry);
                    } else {
                        request.push(entry);
                    }
                }
            }
            vec![n, a, json!(request.join(", ")), json!(limit.join(", "))]
        }
        Lease => vec![n, json!(st(obj, "/spec/holderIdentity")), a],
        Role | Default => vec![n, created_at(obj)],
        RoleBinding => {
            let role = format!("{}/{}", st(obj, "/roleRef/kind"), st(obj, "/roleRef/name"));
            let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
            for s in arr(obj, "/subjects") {
                match st(s, "/kind") {
                    "User" => users.push(st(s, "/name").to_string()),
                    "Group" => groups.push(st(s, "/name").to_string()),
                    "ServiceAccount" => {
                        sas.push(format!("{}/{}", st(s, "/namespace"), st(s, "/name")))
                    }
                    _ => {}
                }
            }
            vec![
                n,
                json!(role),
                a,
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        PriorityClass => vec![
            n,
            json!(int(obj, "/value")),
            json!(ptr(obj, "/globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            a,
        ],
        StorageClass => {
            let default = [
                "storageclass.kubernetes.io~1is-default-class",
                "storageclass.beta.kubernetes.io~1is-default-class",
            ]
            .iter()
            .any(|k| st(obj, &format!("/metadata/annotations/{k}")) == "true");
            let shown = if default {
                format!("{} (default)", name(obj))
            } else {
                name(obj).to_string()
            };
            let or = |p: &str, d: &str| match st(obj, p) {
                "" => d.to_string(),
                v => v.to_string(),
            };
            vec![
                json!(shown),
                json!(st(obj, "/provisioner")),
                json!(or("/reclaimPolicy", "Delete")),
                json!(or("/volumeBindingMode", "Immediate")),
                json!(ptr(obj, "/allowVolumeExpansion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)),
                a,
            ]
        }
        RuntimeClass => vec![n, json!(st(obj, "/handler")), a],
        CsiDriver => {
            let b = |p: &str, d: bool| json!(ptr(obj, p).and_then(Value::as_bool).unwrap_or(d));
            let audiences: Vec<&str> = arr(obj, "/spec/tokenRequests")
                .iter()
                .map(|t| st(t, "/audience"))
                .collect();
            let modes: Vec<&str> = arr(obj, "/spec/volumeLifecycleModes")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            vec![
                n,
                b("/spec/attachRequired", true),
                b("/spec/podInfoOnMount", false),
                b("/spec/storageCapacity", false),
                json!(if audiences.is_empty() {
                    "<unset>".to_string()
                } else {
                    audiences.join(",")
                }),
                b("/spec/requiresRepublish", false),
                json!(or_none(&modes.join(","))),
                a,
            ]
        }
        CsiNode => vec![n, json!(len_of(obj, "/spec/drivers")), a],
        VolumeAttachment => vec![
            n,
            json!(st(obj, "/spec/attacher")),
            json!(st(obj, "/spec/source/persistentVolumeName")),
            json!(st(obj, "/spec/nodeName")),
            json!(ptr(obj, "/status/attached")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            a,
        ],
        PodDisruptionBudget => {
            let intstr = |p: &str| match ptr(obj, p) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(x)) => x.to_string(),
                _ => "N/A".into(),
            };
            vec![
                n,
                json!(intstr("/spec/minAvailable")),
                json!(intstr("/spec/maxUnavailable")),
                json!(int(obj, "/status/disruptionsAllowed")),
                a,
            ]
        }
        HorizontalPodAutoscaler => vec![
            n,
            json!(format!(
                "{}/{}",
                st(obj, "/spec/scaleTargetRef/kind"),
                st(obj, "/spec/scaleTargetRef/name")
            )),
            json!(hpa_targets(obj)),
            json!(ptr(obj, "/spec/minReplicas")
                .and_then(Value::as_i64)
                .map(|m| m.to_string())
                .unwrap_or_else(|| "<unset>".into())),
            json!(int(obj, "/spec/maxReplicas")),
            json!(int(obj, "/status/currentReplicas")),
            a,
        ],
        ControllerRevision => {
            let controller = arr(obj, "/metadata/ownerReferences")
                .iter()
                .find(|r| ptr(r, "/controller").and_then(Value::as_bool) == Some(true))
                .map(|r| {
                    let group = st(r, "/apiVersion")
                        .rsplit_once('/')
                        .map(|(g, _)| g)
                        .unwrap_or("");
                    let kind = st(r, "/kind").to_lowercase();
                    let gk = if group.is_empty() {
                        kind
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{gk}/{}", st(r, "/name"))
                })
                .unwrap_or_else(|| "<none>".into());
            vec![n, json!(controller), json!(int(obj, "/revision")), a]
        }
    }
}

fn unset(s: &str) -> String {
    if s.is_empty() {
        "<unset>".into()
    } else {
        s.to_string()
    }
}

/// `listWithMoreString` for endpoint slices: at most 3, then "+ N more...".
fn list_with_more(items: &[String]) -> String {
    let shown = items.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if items.len() > 3 {
        format!("{shown} + {} more...", items.len() - 3)
    } else if shown.is_empty() {
        "<unset>".into()
    } else {
        shown
    }
}

/// `formatEndpoints` with no port filter.
fn format_endpoints(obj: &Value) -> String {
    let subsets = arr(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let max = 3;
    let (mut list, mut more, mut count) = (Vec::new(), false, 0);
    for ss in subsets {
        let addrs = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(st(a, "/ip").to_string());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                let ip = st(a, "/ip");
                let port = int(p, "/port");
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - max)
    } else {
        ret
    }
}

fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = st(pod, "/status/phase");
    let mut reason = match st(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    let conditions = arr(pod, "/status/conditions");
    if conditions
        .iter()
        .any(|c| st(c, "/type") == "PodScheduled" && st(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let init_specs = arr(pod, "/spec/initContainers");
    let sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| st(c, "/name") == name && st(c, "/restartPolicy") == "Always")
    };
    let total = arr(pod, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| st(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;
    let finished = |c: &Value| parse_time(st(c, "/lastState/terminated/finishedAt"));

    let mut initializing = false;
    let init_statuses = arr(pod, "/status/initContainerStatuses");
    for (i, c) in init_statuses.iter().enumerate() {
        restarts += int(c, "/restartCount");
        let fin = finished(c);
        last_restart = last_restart.max(fin);
        let is_sidecar = sidecar(st(c, "/name"));
        if is_sidecar {
            sidecar_restarts += int(c, "/restartCount");
            last_sidecar_restart = last_sidecar_restart.max(fin);
        }
        let terminated = ptr(c, "/state/terminated");
        let waiting_reason = st(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| int(t, "/exitCode") == 0) {
            continue;
        }
        if is_sidecar && ptr(c, "/started").and_then(Value::as_bool) == Some(true) {
            if ptr(c, "/ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = match (st(t, "/reason"), int(t, "/signal")) {
                ("", 0) => format!("Init:ExitCode:{}", int(t, "/exitCode")),
                ("", sig) => format!("Init:Signal:{sig}"),
                (r, _) => format!("Init:{r}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .any(|c| st(c, "/type") == "Initialized" && st(c, "/status") == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in arr(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(c, "/restartCount");
            last_restart = last_restart.max(finished(c));
            let waiting = st(c, "/state/waiting/reason");
            let terminated = ptr(c, "/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = match (st(t, "/reason"), int(t, "/signal")) {
                    ("", 0) => format!("ExitCode:{}", int(t, "/exitCode")),
                    ("", sig) => format!("Signal:{sig}"),
                    (r, _) => r.to_string(),
                };
            } else if ptr(c, "/ready").and_then(Value::as_bool) == Some(true)
                && ptr(c, "/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| st(c, "/type") == "Ready" && st(c, "/status") == "True");
            reason = if pod_ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if ptr(pod, "/metadata/deletionTimestamp").is_some() {
        if st(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    let pod_ip = match st(pod, "/status/podIPs/0/ip") {
        "" => st(pod, "/status/podIP"),
        ip => ip,
    };
    let gates = arr(pod, "/spec/readinessGates");
    let gates_str = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| st(c, "/type") == st(g, "/conditionType"))
                    .is_some_and(|c| st(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        json!(name(pod)),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        json!(age(pod, now)),
        json!(or_none(pod_ip)),
        json!(or_none(st(pod, "/spec/nodeName"))),
        json!(or_none(st(pod, "/status/nominatedNodeName"))),
        json!(gates_str),
    ]
}

/// Row conditions upstream attaches to pods in a terminal phase.
pub(super) fn row_conditions(info: &ResourceInfo, obj: &Value) -> Option<Value> {
    if printer(info) != Printer::Pod {
        return None;
    }
    match st(obj, "/status/phase") {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    }
}

fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int(job, "/status/succeeded");
    let completions = match ptr(job, "/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(job, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        parse_time(st(job, "/status/startTime")),
        parse_time(st(job, "/status/completionTime")),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let status = if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if ptr(job, "/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let (names, images) = containers(job, "/spec/template/spec");
    vec![
        json!(name(job)),
        json!(status),
        json!(completions),
        json!(duration),
        json!(age(job, now)),
        json!(names),
        json!(images),
        json!(format_selector(ptr(job, "/spec/selector"))),
    ]
}

fn service_cells(svc: &Value, n: Value, a: Value) -> Vec<Value> {
    let ty = match st(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = match st(svc, "/spec/clusterIPs/0") {
        "" => or_none(st(svc, "/spec/clusterIP")),
        ip => ip.to_string(),
    };
    let external: Vec<String> = arr(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let external_ip = match ty {
        "ClusterIP" | "NodePort" => or_none(&external.join(",")),
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(svc, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| match (st(i, "/ip"), st(i, "/hostname")) {
                    ("", "") => None,
                    ("", h) => Some(h.to_string()),
                    (ip, _) => Some(ip.to_string()),
                })
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => st(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = match st(p, "/protocol") {
                "" => "TCP",
                x => x,
            };
            match int(p, "/nodePort") {
                np if np > 0 => format!("{}:{np}/{proto}", int(p, "/port")),
                _ => format!("{}/{proto}", int(p, "/port")),
            }
        })
        .collect();
    vec![
        n,
        json!(ty),
        json!(cluster_ip),
        json!(external_ip),
        json!(or_none(&ports.join(","))),
        a,
        json!(format_labels(ptr(svc, "/spec/selector"))),
    ]
}

fn node_cells(node: &Value, n: Value, a: Value) -> Vec<Value> {
    let mut status: Vec<String> = arr(node, "/status/conditions")
        .iter()
        .filter(|c| st(c, "/type") == "Ready")
        .take(1)
        .map(|c| {
            if st(c, "/status") == "True" {
                "Ready".into()
            } else {
                "NotReady".into()
            }
        })
        .collect();
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if ptr(node, "/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = ptr(node, "/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.insert(v.to_string());
                }
            }
        }
    }
    let roles: Vec<String> = roles.into_iter().collect();
    let addr = |ty: &str| {
        arr(node, "/status/addresses")
            .iter()
            .find(|x| st(x, "/type") == ty)
            .map(|x| st(x, "/address").to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let unknown = |p: &str| match st(node, p) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        n,
        json!(status.join(",")),
        json!(or_none(&roles.join(","))),
        a,
        json!(st(node, "/status/nodeInfo/kubeletVersion")),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(unknown("/status/nodeInfo/osImage")),
        json!(unknown("/status/nodeInfo/kernelVersion")),
        json!(unknown("/status/nodeInfo/containerRuntimeVersion")),
    ]
}

/// Events of both `v1` and `events.k8s.io/v1` (the latter's fields renamed).
fn event_cells(info: &ResourceInfo, ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let v1 = info.group == "events.k8s.io";
    let f = |core: &'static str, new: &'static str| if v1 { new } else { core };
    let involved = ptr(ev, f("/involvedObject", "/regarding"))
        .cloned()
        .unwrap_or(Value::Null);
    let first_ts = st(ev, f("/firstTimestamp", "/deprecatedFirstTimestamp"));
    let first = if first_ts.is_empty() {
        since(st(ev, "/eventTime"), now)
    } else {
        since(first_ts, now)
    };
    let last_ts = st(ev, f("/lastTimestamp", "/deprecatedLastTimestamp"));
    let mut last = if last_ts.is_empty() {
        first.clone()
    } else {
        since(last_ts, now)
    };
    let mut count = int(ev, f("/count", "/deprecatedCount"));
    if let Some(series) = ptr(ev, "/series") {
        last = since(st(series, "/lastObservedTime"), now);
        count = int(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = st(&involved, "/kind").to_lowercase();
    let target = match st(&involved, "/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let src = f("/source", "/deprecatedSource");
    let component = match st(ev, &format!("{src}/component")) {
        "" => st(ev, f("/reportingComponent", "/reportingController")),
        c => c,
    };
    let host = match st(ev, &format!("{src}/host")) {
        "" => st(ev, "/reportingInstance"),
        h => h,
    };
    let source = match (component, host) {
        ("", "") => String::new(),
        (c, "") => c.to_string(),
        (c, h) => format!("{c}, {h}"),
    };
    vec![
        json!(last),
        json!(st(ev, "/type")),
        json!(st(ev, "/reason")),
        json!(target),
        json!(st(&involved, "/fieldPath")),
        json!(source),
        json!(st(ev, f("/message", "/note")).trim()),
        json!(first),
        json!(count),
        json!(name(ev)),
    ]
}

/// The TARGETS cell of an HPA: `cpu: 30%/50%` per resource metric (current
/// or `<unknown>` over target), as kubectl shows it; `<none>` without metrics.
fn hpa_targets(obj: &Value) -> String {
    let metrics = arr(obj, "/spec/metrics");
    if metrics.is_empty() {
        return "<none>".into();
    }
    let current = arr(obj, "/status/currentMetrics");
    metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let ty = st(m, "/type");
            let key = match ty {
                "Resource" => "resource",
                "ContainerResource" => "containerResource",
                "Pods" => "pods",
                "Object" => "object",
                _ => "external",
            };
            let name = match ty {
                "Resource" | "ContainerResource" => st(m, &format!("/{key}/name")).to_string(),
                _ => st(m, &format!("/{key}/metric/name")).to_string(),
            };
            let cur = current.get(i);
            let (now, want) = if let Some(u) = ptr(m, &format!("/{key}/target/averageUtilization"))
            {
                let now = cur
                    .and_then(|c| ptr(c, &format!("/{key}/current/averageUtilization")))
                    .map(|v| format!("{v}%"))
                    .unwrap_or_else(|| "<unknown>".into());
                (now, format!("{u}%"))
            } else {
                let field = ["averageValue", "value"]
                    .into_iter()
                    .find(|f| ptr(m, &format!("/{key}/target/{f}")).is_some())
                    .unwrap_or("averageValue");
                let show = |v: Option<&Value>| match v {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => "<unknown>".into(),
                };
                let now = show(cur.and_then(|c| ptr(c, &format!("/{key}/current/{field}"))));
                (now, show(ptr(m, &format!("/{key}/target/{field}"))))
            };
            format!("{name}: {now}/{want}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{builtin_resources, find};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn info(group: &str, plural: &str) -> ResourceInfo {
        let all = builtin_resources();
        let r = all
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .cloned();
        r.unwrap_or_else(|| panic!("no resource {group}/{plural}"))
    }

    fn names(cols: &[Value]) -> Vec<String> {
        cols.iter()
            .map(|c| c["name"].as_str().unwrap().to_uppercase())
            .collect()
    }

    fn check(group: &str, plural: &str, obj: Value, want_cols: &[&str], want_cells: Value) {
        let i = info(group, plural);
        let cols = columns(&i);
        assert_eq!(names(&cols), want_cols, "{plural} columns");
        let got = cells(&i, &obj, now());
        assert_eq!(got.len(), cols.len(), "{plural} cell count");
        assert_eq!(Value::Array(got), want_cells, "{plural} cells");
    }

    fn running_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-7d4b9c-x2x", "namespace": "default", "creationTimestamp": "2024-05-01T11:55:00Z"},
            "spec": {"nodeName": "rkube", "containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}],
                     "readinessGates": [{"conditionType": "example.com/ready"}]},
            "status": {
                "phase": "Running", "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}],
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "nginx", "ready": true, "restartCount": 2, "state": {"running": {"startedAt": "2024-05-01T11:57:00Z"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:57:00Z"}}},
                    {"name": "log", "ready": true, "restartCount": 0, "state": {"running": {}}}
                ]
            }
        })
    }

    #[test]
    fn pods() {
        check(
            "",
            "pods",
            running_pod(),
            &[
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES",
            ],
            json!([
                "web-7d4b9c-x2x",
                "2/2",
                "Running",
                "2 (3m ago)",
                "5m",
                "10.244.0.7",
                "rkube",
                "<none>",
                "1/1"
            ]),
        );
        let i = info("", "pods");
        let cols = columns(&i);
        assert_eq!(cols[0]["format"], "name");
        assert_eq!(cols[4]["priority"], 0);
        assert_eq!(cols[5]["priority"], 1);

        // Waiting reason wins; pending pods have no IP or node.
        let crash = json!({"metadata": {"name": "p", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let c = cells(&i, &crash, now());
        assert_eq!(
            c[..6],
            [
                json!("p"),
                json!("0/1"),
                json!("CrashLoopBackOff"),
                json!("5"),
                json!("60m"),
                json!("<none>")
            ]
        );

        // Terminating overrides a non-terminal phase.
        let mut term = running_pod();
        term["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
        assert_eq!(cells(&i, &term, now())[2], "Terminating");

        // Init container progress and failures.
        let init = json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0}}},
                {"name": "b", "state": {"running": {}}}]}});
        let c = cells(&i, &init, now());
        assert_eq!(
            (c[1].clone(), c[2].clone(), c[4].clone()),
            (json!("0/1"), json!("Init:1/2"), json!("<unknown>"))
        );
        let init_err = json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "a"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"name": "a", "restartCount": 3, "state": {"terminated": {"exitCode": 2}}}]}});
        assert_eq!(cells(&i, &init_err, now())[2], "Init:ExitCode:2");
        assert_eq!(cells(&i, &init_err, now())[3], "3");

        // Sidecar (restartable init container) counts toward READY.
        let sidecar = json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "state": {"running": {}}}],
                "containerStatuses": [{"name": "c", "ready": true, "state": {"running": {}}}]}});
        assert_eq!(
            cells(&i, &sidecar, now())[1..3],
            [json!("2/2"), json!("Running")]
        );

        // Completed pods: terminated reason, row condition.
        let done = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(cells(&i, &done, now())[2], "Completed");
        assert_eq!(row_conditions(&i, &done).unwrap()[0]["reason"], "Succeeded");
        assert!(row_conditions(&i, &running_pod()).is_none());
    }

    fn workload_template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "side", "image": "busybox"}]}})
    }

    #[test]
    fn workloads() {
        check(
            "apps",
            "deployments",
            json!({"metadata": {"name": "web", "creationTimestamp": "2024-04-29T09:00:00Z"},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": workload_template()},
                "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
            &[
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
            ],
            json!([
                "web",
                "2/3",
                3,
                2,
                "2d3h",
                "nginx,side",
                "nginx:1.25,busybox",
                "app=web"
            ]),
        );
        check(
            "apps",
            "replicasets",
            json!({"metadata": {"name": "web-7d4b9c", "creationTimestamp": "2024-05-01T11:58:30Z"},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c"}}, "template": workload_template()},
                "status": {"replicas": 3, "readyReplicas": 1}}),
            &[
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
            ],
            json!([
                "web-7d4b9c",
                3,
                3,
                1,
                "90s",
                "nginx,side",
                "nginx:1.25,busybox",
                "app=web,pod-template-hash=7d4b9c"
            ]),
        );
        check(
            "",
            "replicationcontrollers",
            json!({"metadata": {"name": "rc"}, "spec": {"replicas": 1, "selector": {"b": "2", "a": "1"}, "template": workload_template()}, "status": {}}),
            &[
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
            ],
            json!([
                "rc",
                1,
                0,
                0,
                "<unknown>",
                "nginx,side",
                "nginx:1.25,busybox",
                "a=1,b=2"
            ]),
        );
        check(
            "apps",
            "statefulsets",
            json!({"metadata": {"name": "db", "creationTimestamp": "2024-05-01T11:00:00Z"}, "spec": {"replicas": 2, "template": workload_template()},
                "status": {"readyReplicas": 2}}),
            &["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"],
            json!(["db", "2/2", "60m", "nginx,side", "nginx:1.25,busybox"]),
        );
        let mut tmpl = workload_template();
        tmpl["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
        check(
            "apps",
            "daemonsets",
            json!({"metadata": {"name": "kube-proxy", "creationTimestamp": "2024-04-01T12:00:00Z"},
                "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}}, "template": tmpl},
                "status": {"desiredNumberScheduled": 1, "currentNumberScheduled": 1, "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1}}),
            &[
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE SELECTOR",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
            ],
            json!([
                "kube-proxy",
                1,
                1,
                1,
                1,
                1,
                "kubernetes.io/os=linux",
                "30d",
                "nginx,side",
                "nginx:1.25,busybox",
                "k8s-app=kube-proxy"
            ]),
        );
    }

    #[test]
    fn jobs_and_cronjobs() {
        let job = json!({"metadata": {"name": "pi", "creationTimestamp": "2024-05-01T11:50:00Z"},
            "spec": {"completions": 1, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}}},
            "status": {"succeeded": 1, "startTime": "2024-05-01T11:50:00Z", "completionTime": "2024-05-01T11:50:42Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
        check(
            "batch",
            "jobs",
            job,
            &[
                "NAME",
                "STATUS",
                "COMPLETIONS",
                "DURATION",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
            ],
            json!([
                "pi",
                "Complete",
                "1/1",
                "42s",
                "10m",
                "pi",
                "perl:5.34",
                "batch.kubernetes.io/controller-uid=u1"
            ]),
        );
        let running = json!({"metadata": {"name": "w"}, "spec": {"parallelism": 3, "template": {"spec": {"containers": []}}},
            "status": {"startTime": "2024-05-01T11:59:00Z"}});
        let c = cells(&info("batch", "jobs"), &running, now());
        assert_eq!(c[1..4], [json!("Running"), json!("0/1 of 3"), json!("60s")]);

        check(
            "batch",
            "cronjobs",
            json!({"metadata": {"name": "hello", "creationTimestamp": "2024-05-01T10:00:00Z"},
                "spec": {"schedule": "*/1 * * * *", "suspend": false,
                         "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox:1.28"}]}}}}},
                "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2024-05-01T11:59:00Z"}}),
            &[
                "NAME",
                "SCHEDULE",
                "TIMEZONE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR",
            ],
            json!([
                "hello",
                "*/1 * * * *",
                "<none>",
                "False",
                1,
                "60s",
                "120m",
                "hello",
                "busybox:1.28",
                "<none>"
            ]),
        );
    }

    #[test]
    fn services_and_endpoints() {
        check(
            "",
            "services",
            json!({"metadata": {"name": "kubernetes", "creationTimestamp": "2024-05-01T00:00:00Z"},
                "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
            &[
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
                "SELECTOR",
            ],
            json!([
                "kubernetes",
                "ClusterIP",
                "10.96.0.1",
                "<none>",
                "443/TCP",
                "12h",
                "<none>"
            ]),
        );
        let i = info("", "services");
        let np = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.96.1.2",
            "selector": {"app": "web"}, "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}});
        let c = cells(&i, &np, now());
        assert_eq!(
            (c[4].clone(), c[6].clone()),
            (json!("80:30080/TCP,53/UDP"), json!("app=web"))
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.1.3", "ports": []}});
        assert_eq!(
            cells(&i, &lb, now())[3..5],
            [json!("<pending>"), json!("<none>")]
        );
        let lb2 = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "192.168.49.2"}]}}});
        assert_eq!(cells(&i, &lb2, now())[3], "192.168.49.2");
        let headless =
            json!({"metadata": {"name": "db"}, "spec": {"type": "ClusterIP", "clusterIP": "None"}});
        assert_eq!(cells(&i, &headless, now())[2], "None");
        let ext = json!({"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "example.com"}});
        assert_eq!(
            cells(&i, &ext, now())[2..4],
            [json!("<none>"), json!("example.com")]
        );

        check(
            "",
            "endpoints",
            json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}],
                "ports": [{"port": 8080}]}]}),
            &["NAME", "ENDPOINTS", "AGE"],
            json!([
                "web",
                "10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080 + 1 more...",
                "<unknown>"
            ]),
        );
        let c = cells(
            &info("", "endpoints"),
            &json!({"metadata": {"name": "x"}}),
            now(),
        );
        assert_eq!(c[1], "<none>");
        check(
            "discovery.k8s.io",
            "endpointslices",
            json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4", "ports": [{"port": 80}, {"name": "x"}],
                "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}),
            &["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
            json!(["web-abc", "IPv4", "80,x", "10.0.0.1,10.0.0.2", "<unknown>"]),
        );
    }

    #[test]
    fn nodes_and_namespaces() {
        check(
            "",
            "nodes",
            json!({"metadata": {"name": "rkube", "creationTimestamp": "2024-04-30T12:00:00Z",
                    "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "rkube"}},
                "spec": {"unschedulable": true},
                "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                    "addresses": [{"type": "InternalIP", "address": "192.168.49.2"}, {"type": "Hostname", "address": "rkube"}],
                    "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Ubuntu 24.04", "kernelVersion": "6.8.0", "containerRuntimeVersion": "rkube://0.1.0"}}}),
            &[
                "NAME",
                "STATUS",
                "ROLES",
                "AGE",
                "VERSION",
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
            ],
            json!([
                "rkube",
                "Ready,SchedulingDisabled",
                "control-plane",
                "24h",
                "v1.33.0",
                "192.168.49.2",
                "<none>",
                "Ubuntu 24.04",
                "6.8.0",
                "rkube://0.1.0"
            ]),
        );
        let c = cells(
            &info("", "nodes"),
            &json!({"metadata": {"name": "n"}}),
            now(),
        );
        assert_eq!(c[1..3], [json!("Unknown"), json!("<none>")]);
        check(
            "",
            "namespaces",
            json!({"metadata": {"name": "kube-system", "creationTimestamp": "2024-05-01T11:59:58Z"}, "status": {"phase": "Active"}}),
            &["NAME", "STATUS", "AGE"],
            json!(["kube-system", "Active", "2s"]),
        );
    }

    #[test]
    fn config_and_identity() {
        check(
            "",
            "configmaps",
            json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}),
            &["NAME", "DATA", "AGE"],
            json!(["cfg", 3, "<unknown>"]),
        );
        check(
            "",
            "secrets",
            json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
            &["NAME", "TYPE", "DATA", "AGE"],
            json!(["tls", "kubernetes.io/tls", 2, "<unknown>"]),
        );
        check(
            "",
            "serviceaccounts",
            json!({"metadata": {"name": "default"}}),
            &["NAME", "SECRETS", "AGE"],
            json!(["default", 0, "<unknown>"]),
        );
        check(
            "coordination.k8s.io",
            "leases",
            json!({"metadata": {"name": "rkube"}, "spec": {"holderIdentity": "rkube"}}),
            &["NAME", "HOLDER", "AGE"],
            json!(["rkube", "rkube", "<unknown>"]),
        );
        check(
            "rbac.authorization.k8s.io",
            "clusterroles",
            json!({"metadata": {"name": "admin", "creationTimestamp": "2024-05-01T10:00:00+02:00"}}),
            &["NAME", "CREATED AT"],
            json!(["admin", "2024-05-01T08:00:00Z"]),
        );
        check(
            "rbac.authorization.k8s.io",
            "rolebindings",
            json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                             {"kind": "ServiceAccount", "name": "default", "namespace": "ci"}, {"kind": "User", "name": "bob"}]}),
            &["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
            json!([
                "rb",
                "ClusterRole/view",
                "<unknown>",
                "alice, bob",
                "devs",
                "ci/default"
            ]),
        );
    }

    #[test]
    fn events() {
        let core = json!({"metadata": {"name": "web.17c", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{nginx}"},
            "reason": "Pulled", "type": "Normal", "message": "Successfully pulled image\n",
            "source": {"component": "kubelet", "host": "rkube"},
            "firstTimestamp": "2024-05-01T11:00:00Z", "lastTimestamp": "2024-05-01T11:58:00Z", "count": 4});
        check(
            "",
            "events",
            core,
            &[
                "LAST SEEN",
                "TYPE",
                "REASON",
                "OBJECT",
                "SUBOBJECT",
                "SOURCE",
                "MESSAGE",
                "FIRST SEEN",
                "COUNT",
                "NAME",
            ],
            json!([
                "2m",
                "Normal",
                "Pulled",
                "pod/web",
                "spec.containers{nginx}",
                "kubelet, rkube",
                "Successfully pulled image",
                "60m",
                4,
                "web.17c"
            ]),
        );
        let v1 = json!({"metadata": {"name": "n.1"}, "regarding": {"kind": "Node", "name": "rkube"},
            "reason": "Starting", "type": "Normal", "note": "Starting kubelet.", "reportingController": "kubelet",
            "reportingInstance": "rkube", "eventTime": "2024-05-01T11:59:30.000000Z"});
        assert_eq!(
            Value::Array(cells(&info("events.k8s.io", "events"), &v1, now())),
            json!([
                "30s",
                "Normal",
                "Starting",
                "node/rkube",
                "",
                "kubelet, rkube",
                "Starting kubelet.",
                "30s",
                1,
                "n.1"
            ])
        );
        let series = json!({"metadata": {"name": "s"}, "involvedObject": {"kind": "Pod"}, "eventTime": "2024-05-01T11:00:00Z",
            "series": {"count": 7, "lastObservedTime": "2024-05-01T11:59:00Z"}});
        let c = cells(&info("", "events"), &series, now());
        assert_eq!(
            (c[0].clone(), c[3].clone(), c[8].clone()),
            (json!("60s"), json!("pod"), json!(7))
        );
        assert_eq!(columns(&info("", "events"))[9]["format"], "name");
    }

    #[test]
    fn storage() {
        check(
            "",
            "persistentvolumeclaims",
            json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pvc-1", "storageClassName": "standard",
                "resources": {"requests": {"storage": "1Gi"}}},
                "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}}),
            &[
                "NAME",
                "STATUS",
                "VOLUME",
                "CAPACITY",
                "ACCESS MODES",
                "STORAGECLASS",
                "VOLUMEATTRIBUTESCLASS",
                "AGE",
                "VOLUMEMODE",
            ],
            json!([
                "data",
                "Bound",
                "pvc-1",
                "1Gi",
                "RWO",
                "standard",
                "<unset>",
                "<unknown>",
                "<unset>"
            ]),
        );
        check(
            "",
            "persistentvolumes",
            json!({"metadata": {"name": "pvc-1"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "standard", "volumeMode": "Filesystem",
                "claimRef": {"namespace": "default", "name": "data"}}, "status": {"phase": "Bound"}}),
            &[
                "NAME",
                "CAPACITY",
                "ACCESS MODES",
                "RECLAIM POLICY",
                "STATUS",
                "CLAIM",
                "STORAGECLASS",
                "VOLUMEATTRIBUTESCLASS",
                "REASON",
                "AGE",
                "VOLUMEMODE",
            ],
            json!([
                "pvc-1",
                "1Gi",
                "RWO,RWX",
                "Delete",
                "Bound",
                "default/data",
                "standard",
                "<unset>",
                "",
                "<unknown>",
                "Filesystem"
            ]),
        );
        check(
            "storage.k8s.io",
            "storageclasses",
            json!({"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "rkube.io/hostpath", "volumeBindingMode": "WaitForFirstConsumer"}),
            &[
                "NAME",
                "PROVISIONER",
                "RECLAIMPOLICY",
                "VOLUMEBINDINGMODE",
                "ALLOWVOLUMEEXPANSION",
                "AGE",
            ],
            json!([
                "standard (default)",
                "rkube.io/hostpath",
                "Delete",
                "WaitForFirstConsumer",
                false,
                "<unknown>"
            ]),
        );
    }

    #[test]
    fn cluster_misc() {
        check(
            "scheduling.k8s.io",
            "priorityclasses",
            json!({"metadata": {"name": "system-node-critical"}, "value": 2000001000}),
            &["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE"],
            json!(["system-node-critical", 2000001000, false, "<unknown>"]),
        );
        check(
            "node.k8s.io",
            "runtimeclasses",
            json!({"metadata": {"name": "gvisor"}, "handler": "runsc"}),
            &["NAME", "HANDLER", "AGE"],
            json!(["gvisor", "runsc", "<unknown>"]),
        );
        check(
            "policy",
            "poddisruptionbudgets",
            json!({"metadata": {"name": "pdb"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}}),
            &[
                "NAME",
                "MIN AVAILABLE",
                "MAX UNAVAILABLE",
                "ALLOWED DISRUPTIONS",
                "AGE",
            ],
            json!(["pdb", "50%", "N/A", 1, "<unknown>"]),
        );
        check(
            "autoscaling",
            "horizontalpodautoscalers",
            json!({"metadata": {"name": "web"}, "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 4,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 50}}}]},
                "status": {"currentReplicas": 2}}),
            &[
                "NAME",
                "REFERENCE",
                "TARGETS",
                "MINPODS",
                "MAXPODS",
                "REPLICAS",
                "AGE",
            ],
            json!([
                "web",
                "Deployment/web",
                "cpu: <unknown>/50%",
                "2",
                4,
                2,
                "<unknown>"
            ]),
        );
        check(
            "apps",
            "controllerrevisions",
            json!({"metadata": {"name": "web-5d4", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]}, "revision": 2}),
            &["NAME", "CONTROLLER", "REVISION", "AGE"],
            json!(["web-5d4", "statefulset.apps/web", 2, "<unknown>"]),
        );
        check(
            "",
            "resourcequotas",
            json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.cpu": "1"},
                "used": {"pods": "3", "requests.cpu": "500m"}}}),
            &["NAME", "AGE", "REQUEST", "LIMIT"],
            json!([
                "q",
                "<unknown>",
                "pods: 3/10, requests.cpu: 500m/1",
                "limits.cpu: 0/2"
            ]),
        );
        check(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            json!({"metadata": {"name": "widgets.example.com", "creationTimestamp": "2024-05-01T11:00:00Z"}}),
            &["NAME", "CREATED AT"],
            json!(["widgets.example.com", "2024-05-01T11:00:00Z"]),
        );
        let crd_info = find(
            &builtin_resources(),
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
        )
        .cloned()
        .unwrap();
        assert_eq!(columns(&crd_info)[1]["type"], "date");
    }
}
