//! The conformance-lite suite (issue 14) on the default runtime: one rkube
//! cluster with a node, the test images loaded, every lite test run with
//! `--parallel 8`. Fails if a test listed in `e2e/conformance/passing.txt`
//! does not pass; prints the passing tests the list does not name yet (add
//! them once they have passed three runs in a row).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rkube_conformance::{ctx::Env, images, report, runner};
use rkube_e2e::scenario::is_root;
use rkube_e2e::{workspace_root, Cluster};

fn setup() -> Result<(Cluster, tempfile::TempDir)> {
    // Pulls of images the cluster lacks go to a mirror nobody listens on:
    // the deliberately missing images fail, nothing leaves the machine.
    let c = Cluster::start_with(
        "conformance",
        &[
            "--registry-mirror=docker.io=http://127.0.0.1:1,mirror-only",
            "--registry-mirror=rkube.local=http://127.0.0.1:1,mirror-only",
        ],
    )?;
    let dir = tempfile::tempdir()?;
    let helper = images::find_helper(None)?;
    let archives = images::write_archives(
        &images::Images::default(),
        dir.path(),
        std::path::Path::new("/usr/bin/busybox"),
        &helper,
    )?;
    for a in &archives {
        c.load_image(a)?;
    }
    Ok((c, dir))
}

#[test]
fn conformance_lite_on_the_default_runtime() {
    assert!(
        is_root(),
        "the conformance suite runs pods: run the e2e tests as root"
    );
    let begin = Instant::now();
    let (c, _images) = setup().expect("start the cluster and load the test images");
    eprintln!("[conformance] cluster ready in {:?}", begin.elapsed());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let results = rt.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(c.kubeconfig_path())?,
            &Default::default(),
        )
        .await?;
        let client = kube::Client::try_from(config)?;
        let env = Env {
            images: images::Images::default(),
            kubeconfig: Some(c.kubeconfig_path()),
            context: None,
            pod_start: Duration::from_secs(120),
        };
        // Until cluster DNS exists (issue 12), pods with dnsPolicy
        // ClusterFirst fall back to the host's resolver: tests that look up
        // cluster names would send them off this machine, so they are left
        // out here (they are not on the passing list either).
        let opts = runner::Options {
            skip: Some(regex::Regex::new(r"\[sig-network\] DNS |Guestbook application").unwrap()),
            parallel: 8,
            timeout: Duration::from_secs(360),
            // Two cores running eight tests at once: a test that loses a
            // race once gets a second run, and is printed as flaky.
            flake_attempts: 2,
            ..Default::default()
        };
        anyhow::Ok(runner::run(client, env, &opts).await)
    });
    let results = results.expect("run the suite");
    eprintln!("{}", report::summary(&results));
    eprintln!("[conformance] suite ran in {:?}", begin.elapsed());
    let list_file = workspace_root().join("e2e/conformance/passing.txt");
    let listed = report::parse_list(
        &std::fs::read_to_string(&list_file)
            .with_context(|| format!("read {}", list_file.display()))
            .unwrap(),
    );
    let (regressed, new) = report::check_list(&results, &listed);
    if !new.is_empty() {
        eprintln!(
            "passing but not listed in e2e/conformance/passing.txt (add after three green runs):\n  {}",
            new.join("\n  ")
        );
    }
    assert!(
        regressed.is_empty(),
        "tests listed in e2e/conformance/passing.txt did not pass:\n- {}",
        regressed.join("\n- ")
    );
}
