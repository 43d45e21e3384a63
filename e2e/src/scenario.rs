//! Running a list of named scenarios against one cluster: each step's error
//! or panic is collected (with its diagnostics) instead of stopping the
//! run, plus the small kubectl wrappers the scenario files share.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use serde_json::Value;

use crate::{describe, Cluster};

/// `kubectl apply -f -` of the given objects, as a multi-document stream
/// (a `kind: List` would make kubectl validate against OpenAPI v2).
pub fn apply(c: &Cluster, objects: &[Value]) -> Result<()> {
    let docs: Vec<String> = objects.iter().map(Value::to_string).collect();
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(&docs.join("\n---\n")));
    ensure!(
        out.status.success(),
        "kubectl apply failed: {}",
        describe(&out)
    );
    Ok(())
}

/// `kubectl <args>`, which must succeed; returns stdout.
pub fn kubectl(c: &Cluster, args: &[&str]) -> Result<String> {
    let out = c.kubectl(args);
    ensure!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        describe(&out)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `kubectl <args>`, which must fail; returns stdout and stderr together.
pub fn kubectl_err(c: &Cluster, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let out = c.kubectl_stdin(args, stdin);
    ensure!(
        !out.status.success(),
        "kubectl {} succeeded but should have failed: {}",
        args.join(" "),
        describe(&out)
    );
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Polls `get` every 500 ms until `check` accepts its value, at most
/// `timeout`; the error names `what` and shows the last value seen.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut get: impl FnMut() -> Result<Value>,
    mut check: impl FnMut(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match get() {
            Ok(v) if check(&v) => return Ok(v),
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("not {what} after {timeout:?}; last seen:\n{last}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A scenario step over a context `X`.
pub type Step<X> = fn(&mut X) -> Result<()>;

/// Runs `step`, turning an error or a panic into a message.
pub fn run_step<X>(x: &mut X, step: Step<X>) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| step(x))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into())),
    }
}

/// True when this process runs as root (a node needs it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
