//! Container output into the CRI log files the node agent reads: one task
//! per container follows Docker's log stream (with timestamps) and writes
//! `<RFC 3339 time> <stdout|stderr> <F|P> <line>` lines. After a restart
//! of rkube the follower resumes after the last line already written, so
//! nothing is lost or doubled.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures::StreamExt;

/// The running followers, by container ID; each one's receiver turns
/// true when its container's output has all been written.
#[derive(Clone, Default)]
pub(crate) struct Followers(Arc<Mutex<HashMap<String, tokio::sync::watch::Receiver<bool>>>>);

impl Followers {
    /// Starts following `id` into `path` unless it is followed already.
    pub fn follow(&self, docker: bollard::Docker, id: &str, path: PathBuf) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        {
            let mut map = self.0.lock().expect("poisoned");
            if map.get(id).is_some_and(|r| !*r.borrow()) {
                return;
            }
            map.insert(id.to_string(), rx);
        }
        let id = id.to_string();
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = copy(&docker, &id, &path).await {
                tracing::warn!(container = %id, "copying the log to {}: {e}", path.display());
            }
            let _ = tx.send(true);
            me.0.lock().expect("poisoned").remove(&id);
        });
    }

    /// Waits (up to `within`) until the follower of an exited container
    /// has written all of its output.
    pub async fn flushed(&self, id: &str, within: Duration) {
        let rx = self.0.lock().expect("poisoned").get(id).cloned();
        if let Some(mut rx) = rx {
            let _ = tokio::time::timeout(within, rx.wait_for(|done| *done)).await;
        }
    }
}

/// The timestamp of the last line of a CRI log file.
fn last_timestamp(path: &Path) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text);
    let line = text.lines().rev().find(|l| !l.is_empty())?;
    line.split(' ').next().map(str::to_string)
}

/// A CRI log line from one Docker log entry (`<time> <message>`).
pub(crate) fn cri_lines(entry: &[u8], stream: &str, after: Option<&str>) -> Vec<u8> {
    let text = String::from_utf8_lossy(entry);
    let (ts, msg) = text.split_once(' ').unwrap_or((&text, ""));
    if after.is_some_and(|a| !newer(ts, a)) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut rest = msg;
    while !rest.is_empty() {
        let (line, tag, next) = match rest.find('\n') {
            Some(i) => (&rest[..i], "F", &rest[i + 1..]),
            None => (rest, "P", ""),
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        out.extend_from_slice(format!("{ts} {stream} {tag} {line}\n").as_bytes());
        rest = next;
    }
    out
}

/// Whether RFC 3339 time `a` is after `b` (by value, not by text: Go trims
/// trailing zeros of the fraction).
fn newer(a: &str, b: &str) -> bool {
    match (
        chrono::DateTime::parse_from_rfc3339(a),
        chrono::DateTime::parse_from_rfc3339(b),
    ) {
        (Ok(a), Ok(b)) => a > b,
        _ => true,
    }
}

/// Opens the log for appending, creating its directory.
fn open(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
}

async fn copy(docker: &bollard::Docker, id: &str, path: &Path) -> std::io::Result<()> {
    let after = last_timestamp(path);
    let since = after
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp() as i32)
        .unwrap_or(0);
    let mut stream = docker.logs(
        id,
        Some(LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            since,
            until: 0,
            tail: "all".into(),
        }),
    );
    let mut file = open(path)?;
    // A terminal's output arrives in arbitrary chunks: gather whole lines.
    let mut console = Vec::new();
    while let Some(item) = stream.next().await {
        let item = match item {
            Ok(item) => item,
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        };
        let bytes = match item {
            LogOutput::StdOut { message } => cri_lines(&message, "stdout", after.as_deref()),
            LogOutput::StdErr { message } => cri_lines(&message, "stderr", after.as_deref()),
            LogOutput::Console { message } => {
                console.extend_from_slice(&message);
                let mut out = Vec::new();
                while let Some(i) = console.iter().position(|b| *b == b'\n') {
                    let entry: Vec<u8> = console.drain(..=i).collect();
                    out.extend(cri_lines(&entry, "stdout", after.as_deref()));
                }
                out
            }
            LogOutput::StdIn { .. } => Vec::new(),
        };
        if bytes.is_empty() {
            continue;
        }
        // The node agent may have rotated the file: write to the path.
        if !path.exists() {
            file = open(path)?;
        }
        file.write_all(&bytes)?;
    }
    if !console.is_empty() {
        file.write_all(&cri_lines(&console, "stdout", after.as_deref()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_become_cri_lines() {
        let out = cri_lines(b"2026-12-04T20:33:42.1Z hello\n", "stdout", None);
        assert_eq!(out, b"2026-12-04T20:33:42.1Z stdout F hello\n");
        let out = cri_lines(b"2026-12-04T20:33:42.1Z no newline", "stderr", None);
        assert_eq!(out, b"2026-12-04T20:33:42.1Z stderr P no newline\n");
        let out = cri_lines(b"2026-12-04T20:33:42.1Z a\r\nb\n", "stdout", None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-12-04T20:33:42.1Z stdout F a\n2026-12-04T20:33:42.1Z stdout F b\n"
        );
    }

    #[test]
    fn resuming_skips_what_was_written() {
        let last = Some("2026-12-04T20:33:42.5Z");
        assert!(cri_lines(b"2026-12-04T20:33:42.1Z old\n", "stdout", last).is_empty());
        assert!(cri_lines(b"2026-12-04T20:33:42.5Z same\n", "stdout", last).is_empty());
        assert!(!cri_lines(b"2026-12-04T20:33:42.50001Z new\n", "stdout", last).is_empty());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(
            &p,
            "2026-12-04T20:33:42.1Z stdout F a\n2026-12-04T20:33:43Z stdout F b\n",
        )
        .unwrap();
        assert_eq!(last_timestamp(&p).as_deref(), Some("2026-12-04T20:33:43Z"));
    }
}
