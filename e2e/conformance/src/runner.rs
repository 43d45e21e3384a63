//! Runs the selected tests: each in a fresh namespace (as upstream's
//! framework does), `parallel` at a time, each under a timeout; serial
//! tests run afterwards, one at a time. Tests in the inventory that have no
//! implementation are reported as not implemented, never as passed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use regex::Regex;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::ctx::{from_json, wait_for, Ctx, Env};
use crate::inventory::{self, Entry};
use crate::Test;

/// How one test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// It passed.
    Passed,
    /// It failed (see the reason).
    Failed,
    /// Not selected to run (serial without `--include-serial`, multi-node).
    Skipped,
    /// In the inventory, but the suite has no test for it yet.
    NotImplemented,
}

/// The result of one test.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// Upstream testname.
    pub testname: String,
    /// Upstream codename.
    pub codename: String,
    /// SIG.
    pub sig: String,
    /// Capability bucket.
    pub bucket: String,
    /// How it ended.
    pub status: Status,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Why it failed or was skipped (one line).
    pub reason: String,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only tests whose testname or codename matches.
    pub focus: Option<Regex>,
    /// Leave out tests whose testname or codename matches.
    pub skip: Option<Regex>,
    /// Tests at once.
    pub parallel: usize,
    /// Time limit of one test.
    pub timeout: Duration,
    /// Also run the [Serial]/[Disruptive] tests (one at a time, at the end).
    pub include_serial: bool,
    /// Print a line per finished test.
    pub progress: bool,
    /// Runs a failed test gets in all (ginkgo's `--flake-attempts`); a test
    /// that fails and then passes is reported as passed with a `flaky:`
    /// reason naming the first failure, so flakes stay visible.
    pub flake_attempts: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            focus: None,
            skip: None,
            parallel: 4,
            timeout: Duration::from_secs(300),
            include_serial: false,
            progress: true,
            flake_attempts: 1,
        }
    }
}

fn matches(re: &Regex, e: &Entry) -> bool {
    re.is_match(&e.testname) || re.is_match(&e.codename)
}

/// The inventory entries `opts` focuses on (tests `--skip` names stay in,
/// reported as skipped).
pub fn selected(opts: &Options) -> Vec<&'static Entry> {
    inventory::all()
        .iter()
        .filter(|e| opts.focus.as_ref().is_none_or(|re| matches(re, e)))
        .collect()
}

fn first_line(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > max {
        let cut: String = one.chars().take(max).collect();
        format!("{cut}...")
    } else {
        one
    }
}

fn outcome(e: &Entry, status: Status, seconds: f64, reason: String) -> Outcome {
    Outcome {
        testname: e.testname.clone(),
        codename: e.codename.clone(),
        sig: e.sig.clone(),
        bucket: e.bucket.clone(),
        status,
        seconds,
        reason,
    }
}

/// Makes the test's namespace and waits for its default ServiceAccount
/// (pods cannot be created before it exists).
async fn make_namespace(client: &Client, slug: &str) -> Result<String> {
    let name = format!("e2e-{slug}-{}", crate::ctx::suffix());
    let ns: Namespace = from_json(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"e2e-framework": "rkube-conformance"}},
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    wait_for(
        "the namespace's default ServiceAccount",
        Duration::from_secs(60),
        || {
            let sas = sas.clone();
            async move { Ok(sas.get_opt("default").await?.map(|_| ())) }
        },
    )
    .await?;
    Ok(name)
}

fn slug(e: &Entry) -> String {
    let s: String = e
        .testname
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let s: Vec<&str> = s.split('-').filter(|p| !p.is_empty()).collect();
    let mut out = s.join("-");
    out.truncate(30);
    out.trim_end_matches('-').to_string()
}

/// Runs one test up to `attempts` times, until it passes.
async fn run_attempts(
    client: Client,
    env: Arc<Env>,
    e: &'static Entry,
    t: Test,
    timeout: Duration,
    attempts: usize,
) -> Outcome {
    let start = Instant::now();
    let mut first_failure: Option<String> = None;
    let mut o = run_one(client.clone(), env.clone(), e, t, timeout).await;
    for _ in 1..attempts.max(1) {
        if o.status != Status::Failed {
            break;
        }
        first_failure.get_or_insert_with(|| o.reason.clone());
        o = run_one(client.clone(), env.clone(), e, t, timeout).await;
    }
    if let (Status::Passed, Some(why)) = (o.status, first_failure) {
        o.reason = first_line(&format!("flaky: an earlier attempt failed: {why}"), 300);
    }
    o.seconds = start.elapsed().as_secs_f64();
    o
}

async fn run_one(
    client: Client,
    env: Arc<Env>,
    e: &'static Entry,
    t: Test,
    timeout: Duration,
) -> Outcome {
    let start = Instant::now();
    let ns = match make_namespace(&client, &slug(e)).await {
        Ok(ns) => ns,
        Err(err) => {
            return outcome(
                e,
                Status::Failed,
                start.elapsed().as_secs_f64(),
                first_line(&format!("creating the test namespace: {err:#}"), 300),
            )
        }
    };
    let ctx = Ctx {
        client: client.clone(),
        ns: ns.clone(),
        env,
    };
    // Each test runs in its own task, so a panic fails only that test.
    let res = tokio::time::timeout(timeout, tokio::spawn((t.run)(ctx))).await;
    let (status, reason) = match res {
        Ok(Ok(Ok(()))) => (Status::Passed, String::new()),
        Ok(Ok(Err(err))) => (Status::Failed, first_line(&format!("{err:#}"), 300)),
        Ok(Err(join)) => (
            Status::Failed,
            first_line(&format!("panicked: {join}"), 300),
        ),
        Err(_) => (Status::Failed, format!("timed out after {timeout:?}")),
    };
    let _ = Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::background())
        .await;
    outcome(e, status, start.elapsed().as_secs_f64(), reason)
}

/// Runs the tests `opts` selects against `client`; returns one outcome per
/// selected inventory entry, in inventory order.
pub async fn run(client: Client, env: Env, opts: &Options) -> Vec<Outcome> {
    let tests: HashMap<&str, Test> = crate::suites::all()
        .into_iter()
        .map(|t| (t.name, t))
        .collect();
    let env = Arc::new(env);
    let entries = selected(opts);
    let total = entries.len();
    let mut results: Vec<Option<Outcome>> = vec![None; total];
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let report = |o: &Outcome| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if opts.progress {
            crate::report::progress(n, total, o);
        }
    };

    let mut parallel = Vec::new();
    let mut serial = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        // A test registered under the codename wins over one registered
        // under a testname that upstream shares between several tests.
        let t = tests
            .get(e.codename.as_str())
            .or_else(|| tests.get(e.testname.as_str()))
            .copied();
        match t {
            _ if opts.skip.as_ref().is_some_and(|re| matches(re, e)) => {
                results[i] = Some(outcome(e, Status::Skipped, 0.0, "--skip".into()))
            }
            _ if !e.one_node => {
                results[i] = Some(outcome(
                    e,
                    Status::Skipped,
                    0.0,
                    "needs 2 or more nodes".into(),
                ))
            }
            None => {
                results[i] = Some(outcome(
                    e,
                    Status::NotImplemented,
                    0.0,
                    "not implemented".into(),
                ))
            }
            Some(_) if e.serial() && !opts.include_serial => {
                results[i] = Some(outcome(
                    e,
                    Status::Skipped,
                    0.0,
                    "[Serial]/[Disruptive]: run with --include-serial".into(),
                ))
            }
            Some(t) if e.serial() => serial.push((i, *e, t)),
            Some(t) => parallel.push((i, *e, t)),
        }
    }
    for o in results.iter().flatten() {
        report(o);
    }

    let sem = Arc::new(Semaphore::new(opts.parallel.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, e, t) in parallel {
        let permit = sem.clone().acquire_owned().await.expect("semaphore open");
        let (client, env, timeout) = (client.clone(), env.clone(), opts.timeout);
        let attempts = opts.flake_attempts;
        set.spawn(async move {
            let o = run_attempts(client, env, e, t, timeout, attempts).await;
            drop(permit);
            (i, o)
        });
        while let Some(Ok((i, o))) = set.try_join_next() {
            report(&o);
            results[i] = Some(o);
        }
    }
    while let Some(r) = set.join_next().await {
        if let Ok((i, o)) = r {
            report(&o);
            results[i] = Some(o);
        }
    }
    for (i, e, t) in serial {
        let o = run_attempts(
            client.clone(),
            env.clone(),
            e,
            t,
            opts.timeout,
            opts.flake_attempts,
        )
        .await;
        report(&o);
        results[i] = Some(o);
    }
    results
        .into_iter()
        .zip(entries)
        .map(|(o, e)| o.unwrap_or_else(|| outcome(e, Status::Failed, 0.0, "lost".into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focus_and_skip_match_names_and_codenames() {
        let opts = Options {
            focus: Some(Regex::new(r"\[sig-apps\]").unwrap()),
            skip: Some(Regex::new("Deployment").unwrap()),
            ..Default::default()
        };
        let sel = selected(&opts);
        assert!(!sel.is_empty());
        // Focus narrows the selection; skipped tests stay in it and are
        // reported as skipped.
        assert!(sel.iter().all(|e| e.sig == "apps"));
        assert!(sel.iter().any(|e| e.codename.contains("Deployment")));
    }

    #[test]
    fn reasons_are_one_short_line() {
        assert_eq!(first_line("a\n  b", 10), "a b");
        assert_eq!(first_line("abcdefghijkl", 3), "abc...");
    }
}
