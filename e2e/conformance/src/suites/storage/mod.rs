//! Conformance tests of volumes: emptyDir (modes, media, sharing),
//! configMap, secret, downward API and projected volumes (contents, modes,
//! live updates), subPaths of atomic-writer volumes, subpaths named by
//! variable expansion.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use regex::Regex;
use serde_json::Value;

use crate::ctx::Ctx;
use crate::Test;

mod api;
mod downward;
mod emptydir;
mod expansion;
mod objects;
mod subpath;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    v.extend(api::tests());
    v.extend(emptydir::tests());
    v.extend(objects::tests());
    v.extend(downward::tests());
    v.extend(subpath::tests());
    v.extend(expansion::tests());
    v
}

/// A unique-looking suffix, where upstream appends a UUID.
fn uid() -> String {
    format!("{}{}", crate::ctx::suffix(), crate::ctx::suffix())
}

/// How long a kubelet may take to project an update of a configMap,
/// secret or pod metadata into a running pod's volume (upstream's
/// GetPodSecretUpdateTimeout with default kubelet settings).
const UPDATE_TIMEOUT: Duration = Duration::from_secs(150);

/// `ls -l` style permission string of `mode` for a regular file, as
/// mounttest prints it (Go's FileMode.String()).
fn mode_string(mode: u32) -> String {
    let mut s = String::from("-");
    for (i, ch) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { ch } else { '-' });
    }
    s
}

/// The mounttest line for the mode of file `path`.
fn mode_line(path: &str, mode: u32) -> String {
    format!("mode of file \"{path}\": {}", mode_string(mode))
}

/// Creates `pod`, waits until it succeeds, and checks that the logs of
/// its container `container` (None: the first) contain every one of
/// `expected` (upstream's TestContainerOutput).
async fn expect_output(
    c: &Ctx,
    pod: Value,
    container: Option<&str>,
    expected: &[String],
) -> Result<String> {
    let v: Vec<&str> = expected.iter().map(String::as_str).collect();
    c.expect_output(pod, container, &v).await
}

/// Like [`expect_output`] with regular expressions.
async fn expect_output_regex(
    c: &Ctx,
    pod: Value,
    container: Option<&str>,
    patterns: &[&str],
) -> Result<()> {
    let out = c.pod_output(pod, container).await?;
    for p in patterns {
        let re = Regex::new(p).with_context(|| format!("bad regex {p}"))?;
        if !re.is_match(&out) {
            bail!("output does not match {p:?}; output:\n{out}");
        }
    }
    Ok(())
}

/// Polls the logs of `container` of pod `name` until they contain `want`.
async fn wait_logs_contain(
    c: &Ctx,
    name: &str,
    container: &str,
    want: &str,
    timeout: Duration,
) -> Result<String> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last: Result<String> = Ok(String::new());
    loop {
        if let Ok(l) = &last {
            if l.contains(want) {
                return Ok(l.clone());
            }
        }
        if std::time::Instant::now() >= deadline {
            let shown = match &last {
                Ok(l) => l
                    .chars()
                    .rev()
                    .take(2000)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect(),
                Err(e) => format!("error: {e:#}"),
            };
            bail!(
                "timed out after {timeout:?} waiting for {want:?} in the logs of {name}/{container}; last logs:\n{shown}"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        last = c.logs(name, Some(container)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn modes_print_like_mounttest() {
        assert_eq!(super::mode_string(0o644), "-rw-r--r--");
        assert_eq!(super::mode_string(0o400), "-r--------");
        assert_eq!(super::mode_string(0o440), "-r--r-----");
        assert_eq!(super::mode_string(0o777), "-rwxrwxrwx");
    }
}
