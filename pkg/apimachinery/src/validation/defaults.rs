//! Defaulting of built-in objects as kube-apiserver applies it on create and
//! update: the `SetDefaults_*` functions of pkg/apis/*/v1/defaults.go, plus
//! the effects of the admission plugins a default cluster runs on pods
//! (ServiceAccount, Priority, DefaultTolerationSeconds) and the namespace and
//! job strategies. Only absent (or null, or empty-string) fields are set.

use serde_json::{json, Map, Value};

type Obj = Map<String, Value>;

/// Sets `key` to `default` when it is absent, null, or an empty string.
fn def(m: &mut Obj, key: &str, default: Value) {
    let unset = match m.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if unset {
        m.insert(key.to_string(), default);
    }
}

/// The object at `key`, created when absent.
fn ensure<'a>(m: &'a mut Obj, key: &str) -> &'a mut Obj {
    if !m.get(key).is_some_and(Value::is_object) {
        m.insert(key.to_string(), Value::Object(Obj::new()));
    }
    m.get_mut(key)
        .and_then(Value::as_object_mut)
        .expect("just inserted")
}

/// The existing object at a path of keys.
fn at<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Obj> {
    path.iter()
        .try_fold(v, |v, k| v.get_mut(*k))?
        .as_object_mut()
}

/// Each object element of the array at `key`.
fn each<'a>(m: &'a mut Obj, key: &str) -> impl Iterator<Item = &'a mut Obj> {
    m.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Applies defaults in place for the object's apiVersion/kind. Unknown kinds
/// are left alone.
pub fn default_object(api_version: &str, kind: &str, obj: &mut Value) {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("", "Pod") => default_pod(obj),
        ("", "PodTemplate") => template_at(obj, &["template", "spec"]),
        ("", "ReplicationController") => default_rc(obj),
        ("", "Service") => default_service(obj),
        ("", "Secret") => {
            if let Some(m) = obj.as_object_mut() {
                def(m, "type", json!("Opaque"));
            }
        }
        ("", "Namespace") => default_namespace(obj),
        ("", "PersistentVolumeClaim") => default_pvc(obj),
        ("", "PersistentVolume") => {
            if let Some(spec) = at(obj, &["spec"]) {
                def(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                def(spec, "volumeMode", json!("Filesystem"));
            }
            if let Some(m) = obj.as_object_mut() {
                def(ensure(m, "status"), "phase", json!("Pending"));
            }
        }
        ("", "Endpoints") => {
            for subset in obj
                .get_mut("subsets")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(s) = subset.as_object_mut() {
                    each(s, "ports").for_each(|p| def(p, "protocol", json!("TCP")));
                }
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            if let Some(m) = obj.as_object_mut() {
                each(m, "ports").for_each(|p| {
                    def(p, "protocol", json!("TCP"));
                    def(p, "name", json!(""));
                });
            }
        }
        ("apps", "Deployment") => default_deployment(obj),
        ("apps", "ReplicaSet") => {
            if let Some(spec) = at(obj, &["spec"]) {
                def(spec, "replicas", json!(1));
            }
            template_at(obj, &["spec", "template", "spec"]);
        }
        ("apps", "StatefulSet") => default_statefulset(obj),
        ("apps", "DaemonSet") => default_daemonset(obj),
        ("batch", "Job") => default_job(obj),
        ("batch", "CronJob") => {
            if let Some(spec) = at(obj, &["spec"]) {
                def(spec, "concurrencyPolicy", json!("Allow"));
                def(spec, "suspend", json!(false));
                def(spec, "successfulJobsHistoryLimit", json!(3));
                def(spec, "failedJobsHistoryLimit", json!(1));
            }
            template_at(obj, &["spec", "jobTemplate", "spec", "template", "spec"]);
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => default_binding(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => default_crd(obj),
        _ => {}
    }
}

/// Sets the job's generated selector and template labels from its uid and
/// name, as the Job strategy does on create (unless `spec.manualSelector`).
pub fn default_job_selector(obj: &mut Value, uid: &str) {
    if obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(spec) = at(obj, &["spec"]) else {
        return;
    };
    let labels = ensure(ensure(ensure(spec, "template"), "metadata"), "labels");
    for k in ["batch.kubernetes.io/controller-uid", "controller-uid"] {
        labels.entry(k).or_insert_with(|| json!(uid));
    }
    for k in ["batch.kubernetes.io/job-name", "job-name"] {
        labels.entry(k).or_insert_with(|| json!(name));
    }
    let match_labels = ensure(ensure(spec, "selector"), "matchLabels");
    match_labels
        .entry("batch.kubernetes.io/controller-uid")
        .or_insert_with(|| json!(uid));
}

/// Keeps a Service's allocated clusterIP(s) and node ports on an update that
/// omits them, as the Service REST layer does before validation.
pub fn preserve_service_allocations(obj: &mut Value, old: &Value) {
    let old_type = old
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let Some(spec) = at(obj, &["spec"]) else {
        return;
    };
    let new_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if old_type == "ExternalName" || new_type == "ExternalName" {
        return;
    }
    for k in ["clusterIP", "clusterIPs"] {
        if let Some(v) = old.pointer(&format!("/spec/{k}")).filter(|v| !v.is_null()) {
            def(spec, k, v.clone());
        }
    }
    if matches!(new_type.as_str(), "NodePort" | "LoadBalancer") {
        let old_ports = old
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for p in each(spec, "ports") {
            let same = old_ports
                .iter()
                .find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"));
            if let Some(np) = same
                .and_then(|o| o.get("nodePort"))
                .filter(|v| !v.is_null())
            {
                def(p, "nodePort", np.clone());
            }
        }
    }
}

fn template_at(obj: &mut Value, path: &[&str]) {
    if let Some(spec) = at(obj, path) {
        default_pod_spec(spec);
    }
}

fn default_pod(obj: &mut Value) {
    let Some(spec) = at(obj, &["spec"]) else {
        return;
    };
    default_pod_spec(spec);
    def(spec, "enableServiceLinks", json!(true));
    // ServiceAccount admission.
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let sa = sa.or(spec
        .get("serviceAccount")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty()));
    let sa = json!(sa.unwrap_or("default"));
    def(spec, "serviceAccountName", sa.clone());
    def(spec, "serviceAccount", sa);
    // Priority admission (no global default PriorityClass).
    if spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        def(spec, "priority", json!(0));
    }
    def(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    // DefaultTolerationSeconds admission.
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
        if let Some(list) = tolerations.as_array_mut() {
            if !list.iter().any(|t| tolerates_no_execute(t, key)) {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    // Requests default to limits for pods.
    for c in each(spec, "containers") {
        requests_from_limits(c);
    }
    for c in each(spec, "initContainers") {
        requests_from_limits(c);
    }
}

fn tolerates_no_execute(t: &Value, key: &str) -> bool {
    let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("");
    let effect_ok = matches!(s("effect"), "" | "NoExecute");
    let exists = s("operator") == "Exists";
    let key_ok = s("key") == key || (s("key").is_empty() && exists);
    effect_ok && key_ok && (exists || s("value").is_empty())
}

fn requests_from_limits(c: &mut Obj) {
    let Some(limits) = c
        .get("resources")
        .and_then(|r| r.get("limits"))
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let requests = ensure(ensure(c, "resources"), "requests");
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

/// SetDefaults_PodSpec and everything nested in it.
fn default_pod_spec(spec: &mut Obj) {
    def(spec, "dnsPolicy", json!("ClusterFirst"));
    def(spec, "restartPolicy", json!("Always"));
    def(spec, "schedulerName", json!("default-scheduler"));
    def(spec, "terminationGracePeriodSeconds", json!(30));
    def(spec, "securityContext", json!({}));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for c in each(spec, key) {
            default_container(c, host_network);
        }
    }
    for v in each(spec, "volumes") {
        default_volume(v);
    }
}

fn default_container(c: &mut Obj, host_network: bool) {
    def(c, "terminationMessagePath", json!("/dev/termination-log"));
    def(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    def(c, "imagePullPolicy", json!(default_pull_policy(image)));
    def(c, "resources", json!({}));
    for p in each(c, "ports") {
        def(p, "protocol", json!("TCP"));
        if host_network {
            if let Some(cp) = p.get("containerPort").cloned() {
                def(p, "hostPort", cp);
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            def(p, "timeoutSeconds", json!(1));
            def(p, "periodSeconds", json!(10));
            def(p, "successThreshold", json!(1));
            def(p, "failureThreshold", json!(3));
            default_http_get(p);
        }
    }
    if let Some(lc) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get_mut(hook).and_then(Value::as_object_mut) {
                default_http_get(h);
            }
        }
    }
    for env in each(c, "env") {
        if let Some(fr) = env
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            def(fr, "apiVersion", json!("v1"));
        }
    }
}

fn default_http_get(handler: &mut Obj) {
    if let Some(h) = handler.get_mut("httpGet").and_then(Value::as_object_mut) {
        def(h, "path", json!("/"));
        def(h, "scheme", json!("HTTP"));
    }
}

/// `Always` for `:latest` or an untagged, undigested image; else `IfNotPresent`.
pub(crate) fn default_pull_policy(image: &str) -> &'static str {
    if image.is_empty() {
        return "IfNotPresent";
    }
    if image.contains('@') {
        let name = image.split('@').next().unwrap_or("");
        return if tag_of(name) == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
    }
    match tag_of(image) {
        None | Some("latest") => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// The tag of an image reference: after the last ':' of the last path part.
fn tag_of(image: &str) -> Option<&str> {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.rsplit_once(':').map(|(_, t)| t)
}

fn default_volume(v: &mut Obj) {
    if v.keys().all(|k| k == "name") {
        v.insert("emptyDir".into(), json!({}));
    }
    for src in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(src).and_then(Value::as_object_mut) {
            def(s, "defaultMode", json!(420));
            default_downward_items(s);
            for p in each(s, "sources") {
                if let Some(d) = p.get_mut("downwardAPI").and_then(Value::as_object_mut) {
                    default_downward_items(d);
                }
                if let Some(t) = p
                    .get_mut("serviceAccountToken")
                    .and_then(Value::as_object_mut)
                {
                    def(t, "expirationSeconds", json!(3600));
                }
            }
        }
    }
    if let Some(h) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        h.entry("type").or_insert(json!(""));
    }
    let claim = v
        .get_mut("ephemeral")
        .and_then(|e| e.pointer_mut("/volumeClaimTemplate/spec"));
    if let Some(spec) = claim.and_then(Value::as_object_mut) {
        def(spec, "volumeMode", json!("Filesystem"));
    }
}

fn default_downward_items(src: &mut Obj) {
    for item in each(src, "items") {
        if let Some(fr) = item.get_mut("fieldRef").and_then(Value::as_object_mut) {
            def(fr, "apiVersion", json!("v1"));
        }
    }
}

fn default_rc(obj: &mut Value) {
    template_at(obj, &["spec", "template", "spec"]);
    let tpl_labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    if let Some(spec) = at(obj, &["spec"]) {
        def(spec, "replicas", json!(1));
        if let Some(l) = &tpl_labels {
            if spec
                .get("selector")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
            {
                spec.insert("selector".into(), l.clone());
            }
        }
    }
    if let (Some(l), Some(m)) = (tpl_labels, obj.as_object_mut()) {
        let meta = ensure(m, "metadata");
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), l);
        }
    }
}

fn default_service(obj: &mut Value) {
    let Some(spec) = at(obj, &["spec"]) else {
        return;
    };
    def(spec, "type", json!("ClusterIP"));
    def(spec, "sessionAffinity", json!("None"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
        def(
            ensure(ensure(spec, "sessionAffinityConfig"), "clientIP"),
            "timeoutSeconds",
            json!(10800),
        );
    }
    for p in each(spec, "ports") {
        def(p, "protocol", json!("TCP"));
        let unset = matches!(p.get("targetPort"), None | Some(Value::Null))
            || p.get("targetPort") == Some(&json!(0));
        if let Some(port) = p.get("port").cloned().filter(|_| unset) {
            p.insert("targetPort".into(), port);
        } else if let Some(port) = p.get("port").cloned() {
            def(p, "targetPort", port);
        }
    }
    if ty == "ExternalName" {
        return;
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        def(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        def(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    def(spec, "internalTrafficPolicy", json!("Cluster"));
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let no_selector = spec
        .get("selector")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let policy = if headless && no_selector {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    def(spec, "ipFamilyPolicy", json!(policy));
    if spec
        .get("ipFamilies")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert("ipFamilies".into(), json!(["IPv4"]));
    }
    if let Some(ip) = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let ip = json!([ip]);
        if spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            spec.insert("clusterIPs".into(), ip);
        }
    }
}

fn default_namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(m) = obj.as_object_mut() else { return };
    if !name.is_empty() {
        let labels = ensure(ensure(m, "metadata"), "labels");
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    def(ensure(m, "spec"), "finalizers", json!(["kubernetes"]));
    def(ensure(m, "status"), "phase", json!("Active"));
}

fn default_pvc_obj(m: &mut Obj) {
    def(ensure(m, "spec"), "volumeMode", json!("Filesystem"));
    def(ensure(m, "status"), "phase", json!("Pending"));
}

fn default_pvc(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        default_pvc_obj(m);
    }
}

fn default_deployment(obj: &mut Value) {
    if let Some(spec) = at(obj, &["spec"]) {
        def(spec, "replicas", json!(1));
        def(spec, "revisionHistoryLimit", json!(10));
        def(spec, "progressDeadlineSeconds", json!(600));
        let strategy = ensure(spec, "strategy");
        def(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            let ru = ensure(strategy, "rollingUpdate");
            def(ru, "maxUnavailable", json!("25%"));
            def(ru, "maxSurge", json!("25%"));
        }
    }
    template_at(obj, &["spec", "template", "spec"]);
}

fn default_statefulset(obj: &mut Value) {
    if let Some(spec) = at(obj, &["spec"]) {
        def(spec, "replicas", json!(1));
        def(spec, "podManagementPolicy", json!("OrderedReady"));
        def(spec, "revisionHistoryLimit", json!(10));
        let strategy = ensure(spec, "updateStrategy");
        def(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            def(ensure(strategy, "rollingUpdate"), "partition", json!(0));
        }
        let retention = ensure(spec, "persistentVolumeClaimRetentionPolicy");
        def(retention, "whenDeleted", json!("Retain"));
        def(retention, "whenScaled", json!("Retain"));
        for pvc in each(spec, "volumeClaimTemplates") {
            def(pvc, "apiVersion", json!("v1"));
            def(pvc, "kind", json!("PersistentVolumeClaim"));
            default_pvc_obj(pvc);
        }
    }
    template_at(obj, &["spec", "template", "spec"]);
}

fn default_daemonset(obj: &mut Value) {
    if let Some(spec) = at(obj, &["spec"]) {
        def(spec, "revisionHistoryLimit", json!(10));
        let strategy = ensure(spec, "updateStrategy");
        def(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            let ru = ensure(strategy, "rollingUpdate");
            def(ru, "maxUnavailable", json!(1));
            def(ru, "maxSurge", json!(0));
        }
    }
    template_at(obj, &["spec", "template", "spec"]);
}

fn default_job(obj: &mut Value) {
    let tpl_labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.is_object())
        .cloned();
    if let Some(spec) = at(obj, &["spec"]) {
        let unset = |s: &Obj, k: &str| matches!(s.get(k), None | Some(Value::Null));
        if unset(spec, "completions") && unset(spec, "parallelism") {
            spec.insert("completions".into(), json!(1));
        }
        def(spec, "parallelism", json!(1));
        let indexed = spec.get("completionMode").and_then(Value::as_str) == Some("Indexed");
        let per_index = !unset(spec, "backoffLimitPerIndex");
        def(
            spec,
            "backoffLimit",
            json!(if indexed && per_index {
                i64::from(i32::MAX)
            } else {
                6
            }),
        );
        def(spec, "completionMode", json!("NonIndexed"));
        def(spec, "suspend", json!(false));
        let policy = if unset(spec, "podFailurePolicy") {
            "TerminatingOrFailed"
        } else {
            "Failed"
        };
        def(spec, "podReplacementPolicy", json!(policy));
    }
    if let (Some(l), Some(m)) = (tpl_labels, obj.as_object_mut()) {
        let meta = ensure(m, "metadata");
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), l);
        }
    }
    template_at(obj, &["spec", "template", "spec"]);
}

fn default_binding(obj: &mut Value) {
    const RBAC: &str = "rbac.authorization.k8s.io";
    let Some(m) = obj.as_object_mut() else { return };
    if let Some(r) = m.get_mut("roleRef").and_then(Value::as_object_mut) {
        def(r, "apiGroup", json!(RBAC));
    }
    for s in each(m, "subjects") {
        match s.get("kind").and_then(Value::as_str) {
            Some("User" | "Group") => def(s, "apiGroup", json!(RBAC)),
            Some("ServiceAccount") => def(s, "apiGroup", json!("")),
            _ => {}
        }
    }
}

fn default_crd(obj: &mut Value) {
    let Some(spec) = at(obj, &["spec"]) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        if let Some(kind) = names
            .get("kind")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
        {
            def(names, "singular", json!(kind.to_lowercase()));
            def(names, "listKind", json!(format!("{kind}List")));
        }
    }
    def(ensure(spec, "conversion"), "strategy", json!("None"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_pod_matches_kubectl_get() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}],
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "readinessProbe": {"httpGet": {"port": 80}}}],
              "volumes": [{"name": "cache"}, {"name": "cfg", "configMap": {"name": "c"}}]}});
        default_object("v1", "Pod", &mut pod);
        let expected = json!({
            "containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName", "apiVersion": "v1"}}}],
                "readinessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                    "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "imagePullPolicy": "Always", "resources": {}}],
            "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}}],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "terminationGracePeriodSeconds": 30, "securityContext": {}, "enableServiceLinks": true,
            "serviceAccountName": "default", "serviceAccount": "default", "priority": 0,
            "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
        });
        assert_eq!(pod["spec"], expected);
    }

    #[test]
    fn pull_policy() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/app"), "Always");
        assert_eq!(default_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn deployment_defaults() {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}});
        default_object("apps/v1", "Deployment", &mut d);
        let s = &d["spec"];
        assert_eq!(s["replicas"], 1);
        assert_eq!(s["revisionHistoryLimit"], 10);
        assert_eq!(s["progressDeadlineSeconds"], 600);
        assert_eq!(
            s["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let ps = &s["template"]["spec"];
        assert_eq!(ps["restartPolicy"], "Always");
        assert_eq!(ps["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert!(ps.get("serviceAccountName").is_none() && ps.get("tolerations").is_none());
    }

    #[test]
    fn job_service_namespace_and_others() {
        let mut j = json!({"metadata": {"name": "pi"}, "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl"}], "restartPolicy": "Never"}}}});
        default_object("batch/v1", "Job", &mut j);
        default_job_selector(&mut j, "u1");
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(j["spec"]["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            j["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}})
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );

        let mut svc = json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        default_object("v1", "Service", &mut svc);
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(svc["spec"]["ipFamilyPolicy"], "SingleStack");
        assert_eq!(svc["spec"]["type"], "ClusterIP");

        let mut old = svc.clone();
        old["spec"]["clusterIP"] = json!("10.96.0.10");
        preserve_service_allocations(&mut svc, &old);
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.10");

        let mut ns = json!({"metadata": {"name": "dev"}});
        default_object("v1", "Namespace", &mut ns);
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "dev"
        );
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");

        let mut sts =
            json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}});
        default_object("apps/v1", "StatefulSet", &mut sts);
        assert_eq!(
            sts["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );

        let mut crb = json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "a"}]});
        default_object(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            &mut crb,
        );
        assert_eq!(crb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    }
}
