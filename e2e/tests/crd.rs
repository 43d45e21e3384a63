//! CustomResourceDefinitions: a new CRD becomes Established, its resource
//! is discoverable and servable through kubectl and kube-rs, printer columns
//! show in `kubectl get`, and the OpenAPI schema rejects invalid objects.

use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use rkube_e2e::{eventually, Cluster};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [cronSpec]
            properties:
              cronSpec:
                type: string
              image:
                type: string
              replicas:
                type: integer
                minimum: 1
                maximum: 10
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
"#;

fn crontab(name: &str, replicas: i64) -> String {
    format!(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: {name}\nspec:\n  cronSpec: \"*/5 * * * *\"\n  image: my-cron-image\n  replicas: {replicas}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resource_definition_end_to_end() {
    let c = Cluster::start("crd").unwrap();

    let out = c.kubectl_stdin_ok(&["apply", "-f", "-"], Some(CRD));
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created"
    );
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/crontabs.stable.example.com",
        "--timeout=30s",
    ]);

    let out = c.kubectl_stdin_ok(&["apply", "-f", "-"], Some(&crontab("my-cron", 2)));
    assert_eq!(out.trim(), "crontab.stable.example.com/my-cron created");

    // Printer columns, by plural, singular and short name.
    for resource in ["crontabs", "crontab", "ct"] {
        let table = c.kubectl_ok(&["get", resource]);
        let mut lines = table.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
        let row = lines.next().unwrap_or_default();
        assert!(
            row.starts_with("my-cron ") && row.contains("*/5 * * * *"),
            "{table}"
        );
        assert_eq!(
            row.split_whitespace().nth(6),
            Some("2"),
            "replicas column: {table}"
        );
    }
    let yaml = c.kubectl_ok(&["get", "ct", "my-cron", "-o", "yaml"]);
    let obj: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(obj["spec"]["image"], "my-cron-image", "{yaml}");
    assert!(obj["metadata"]["uid"].is_string(), "{yaml}");

    let resources = c.kubectl_ok(&["api-resources", "--api-group=stable.example.com"]);
    let row: Vec<&str> = resources
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["crontabs", "ct", "stable.example.com/v1", "true", "CronTab"],
        "{resources}"
    );
    let explain = c.kubectl_ok(&["explain", "crontab.spec.replicas"]);
    assert!(explain.contains("<integer>"), "{explain}");

    // Schema validation.
    let err = c.kubectl_fails(&["apply", "-f", "-"], Some(&crontab("too-many", 20)));
    assert!(
        err.contains(r#"The CronTab "too-many" is invalid"#),
        "{err}"
    );
    assert!(err.contains("spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10"), "{err}");
    let missing = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: no-spec\nspec:\n  image: x\n";
    let err = c.kubectl_fails(&["apply", "-f", "-"], Some(missing));
    assert!(err.contains("spec.cronSpec: Required value"), "{err}");
    let err = c.kubectl_fails(&["get", "ct", "too-many"], None);
    assert!(err.contains("NotFound"), "{err}");

    // Unknown fields are pruned.
    let extra = crontab("pruned", 1).replace("  image:", "  colour: red\n  image:");
    c.kubectl_stdin_ok(&["apply", "--validate=false", "-f", "-"], Some(&extra));
    let obj: serde_json::Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "ct", "pruned", "-o", "json"])).unwrap();
    assert!(
        obj["spec"].get("colour").is_none(),
        "field not pruned: {obj}"
    );

    // The same resource through kube-rs.
    let client = c.client().await.unwrap();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "stable.example.com",
        "v1",
        "CronTab",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    assert_eq!(names, ["my-cron", "pruned"]);
    let mut obj = api.get("my-cron").await.unwrap();
    obj.data["spec"]["replicas"] = 3.into();
    let updated = api
        .replace("my-cron", &PostParams::default(), &obj)
        .await
        .unwrap();
    assert_eq!(updated.data["spec"]["replicas"], 3);

    // Deleting the CRD removes its objects and its resource.
    c.kubectl_ok(&["delete", "crd", "crontabs.stable.example.com"]);
    assert!(
        eventually(Duration::from_secs(30), || !c
            .kubectl(&["get", "crontabs"])
            .status
            .success()),
        "crontabs still served after the CRD was deleted"
    );
}
