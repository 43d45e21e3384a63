//! Container logs: parsing the CRI log format the runtime writes
//! (`<RFC3339Nano> <stdout|stderr> <F|P> <message>`, `P` marking a partial
//! line continued by the next entry), the kubelet's options (tail, since,
//! timestamps, limitBytes, stream) and following a file across rotation
//! until the container stops.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};
use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

use super::runtime::{container_labels, is_running, newest_first, LABEL_POD_UID};
use super::{query_pairs, Ctx, HttpError};

/// Which output stream a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One parsed line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry<'a> {
    /// When the runtime wrote it.
    pub time: DateTime<FixedOffset>,
    /// Its stream.
    pub stream: LogStream,
    /// `P`: the message continues in the next entry.
    pub partial: bool,
    /// The message, without the line's newline.
    pub msg: &'a [u8],
}

/// Parses one line (without its `\n`) of a CRI log file.
pub fn parse_cri_line(line: &[u8]) -> Option<LogEntry<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let time = DateTime::parse_from_rfc3339(ts).ok()?;
    let stream = match parts.next()? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    let tag = parts.next()?;
    // Tags are ':'-separated; the first says full or partial.
    let partial = tag.split(|b| *b == b':').next() == Some(b"P");
    let msg = parts.next().unwrap_or(b"");
    Some(LogEntry {
        time,
        stream,
        partial,
        msg,
    })
}

/// The kubelet's log options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Keep streaming new lines until the container stops.
    pub follow: bool,
    /// The previous instance of the container.
    pub previous: bool,
    /// Only the last N lines of the file.
    pub tail_lines: Option<u64>,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Prefix each line with its RFC3339 timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
    /// Only one stream (`stream=Stdout|Stderr`; default both).
    pub stream: Option<LogStream>,
}

fn parse_bool(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "" | "true" | "1" | "True" | "TRUE" => Ok(true),
        "false" | "0" | "False" | "FALSE" => Ok(false),
        _ => Err(format!("invalid value {v:?} for {k}: must be a boolean")),
    }
}

fn parse_int(k: &str, v: &str) -> Result<i64, String> {
    v.parse::<i64>()
        .map_err(|_| format!("invalid value {v:?} for {k}: must be an integer"))
}

impl LogOptions {
    /// Parses the query of a /containerLogs request.
    pub fn from_query(query: &str, now: DateTime<Utc>) -> Result<Self, String> {
        let mut o = LogOptions::default();
        let mut since_seconds = None;
        for (k, v) in query_pairs(query) {
            match k.as_str() {
                "follow" => o.follow = parse_bool(&k, &v)?,
                "previous" => o.previous = parse_bool(&k, &v)?,
                "timestamps" => o.timestamps = parse_bool(&k, &v)?,
                "tailLines" => {
                    let n = parse_int(&k, &v)?;
                    if n < 0 {
                        return Err(
                            "tailLines: Invalid value: must be greater than or equal to 0".into(),
                        );
                    }
                    o.tail_lines = Some(n as u64);
                }
                "limitBytes" => {
                    let n = parse_int(&k, &v)?;
                    if n < 1 {
                        return Err("limitBytes: Invalid value: must be greater than 0".into());
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n = parse_int(&k, &v)?;
                    if n < 1 {
                        return Err("sinceSeconds: Invalid value: must be greater than 0".into());
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => {
                    let t = DateTime::parse_from_rfc3339(&v)
                        .map_err(|e| format!("invalid value {v:?} for sinceTime: {e}"))?;
                    o.since = Some(t.with_timezone(&Utc));
                }
                "stream" => {
                    o.stream = match v.as_str() {
                        "Stdout" => Some(LogStream::Stdout),
                        "Stderr" => Some(LogStream::Stderr),
                        "All" | "" => None,
                        _ => return Err(format!("stream: Unsupported value: {v:?}")),
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = since_seconds {
            o.since = Some(now - chrono::Duration::seconds(s));
        }
        Ok(o)
    }
}

/// Formats a timestamp like Go's fixed-width RFC3339Nano
/// (`2006-01-02T15:04:05.000000000Z07:00`).
pub fn format_time(t: &DateTime<FixedOffset>) -> String {
    if t.offset().local_minus_utc() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string()
    }
}

/// Turns CRI log lines into what the client sees, applying since,
/// timestamps, stream and limitBytes.
#[derive(Debug)]
pub struct Formatter {
    opts: LogOptions,
    /// Per stream: whether the next entry starts a new line.
    new_line: [bool; 2],
    written: u64,
}

impl Formatter {
    /// A formatter for the options.
    pub fn new(opts: LogOptions) -> Self {
        Self {
            opts,
            new_line: [true, true],
            written: 0,
        }
    }

    /// Appends the output of one file line to `out`; false once limitBytes
    /// is reached (stop reading).
    pub fn push(&mut self, line: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(e) = parse_cri_line(line) else {
            tracing::debug!("skipping malformed log line");
            return true;
        };
        let idx = (e.stream == LogStream::Stderr) as usize;
        let starts_line = self.new_line[idx];
        self.new_line[idx] = !e.partial;
        if self.opts.stream.is_some_and(|s| s != e.stream) {
            return true;
        }
        if self
            .opts
            .since
            .is_some_and(|since| e.time.with_timezone(&Utc) < since)
        {
            return true;
        }
        let start = out.len();
        if self.opts.timestamps && starts_line {
            out.extend_from_slice(format_time(&e.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(e.msg);
        if !e.partial {
            out.push(b'\n');
        }
        if let Some(limit) = self.opts.limit_bytes {
            let n = (out.len() - start) as u64;
            if self.written + n >= limit {
                out.truncate(start + (limit - self.written) as usize);
                self.written = limit;
                return false;
            }
        }
        self.written += (out.len() - start) as u64;
        true
    }
}

/// Offset of the start of the last `n` lines of a file.
pub fn tail_start<R: Read + Seek>(f: &mut R, n: u64) -> std::io::Result<u64> {
    let size = f.seek(SeekFrom::End(0))?;
    if n == 0 {
        return Ok(size);
    }
    const BLOCK: u64 = 4096;
    let mut pos = size;
    let mut seen = 0u64;
    let mut buf = vec![0u8; BLOCK as usize];
    while pos > 0 {
        let len = BLOCK.min(pos);
        pos -= len;
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut buf[..len as usize])?;
        for i in (0..len as usize).rev() {
            let at = pos + i as u64;
            // The newline ending the file terminates the last line.
            if buf[i] == b'\n' && at != size - 1 {
                seen += 1;
                if seen == n {
                    return Ok(at + 1);
                }
            }
        }
    }
    Ok(0)
}

/// Tells whether the container still runs (for follow).
pub(crate) type RunningFn = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// How often a follower looks for new data, rotation and container exit.
const POLL: Duration = Duration::from_millis(200);
const RUNNING_CHECK: Duration = Duration::from_secs(1);

/// Streams a log file into `tx` per the options; with follow, keeps reading
/// new lines (switching to the new file when the runtime reopens the log
/// after rotation) until the container stops or the receiver goes away.
pub(crate) async fn stream_file(
    path: PathBuf,
    opts: LogOptions,
    running: RunningFn,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> std::io::Result<()> {
    let follow = opts.follow;
    let tail = opts.tail_lines;
    let mut fmt = Formatter::new(opts);
    let (mut reader, mut ino) = open_at(&path, tail).await?;
    let mut line = Vec::new();
    let mut last_check = Instant::now();
    let mut exited = false;
    loop {
        let n = reader.read_until(b'\n', &mut line).await?;
        if n > 0 && line.last() == Some(&b'\n') {
            line.pop();
            let mut out = Vec::new();
            let more = fmt.push(&line, &mut out);
            line.clear();
            if !out.is_empty() && tx.send(Ok(out.into())).await.is_err() {
                return Ok(());
            }
            if !more {
                return Ok(());
            }
            continue;
        }
        if n > 0 {
            continue;
        }
        // At the end of the file.
        if !follow || exited {
            if !line.is_empty() {
                let mut out = Vec::new();
                fmt.push(&line, &mut out);
                let _ = tx.send(Ok(out.into())).await;
            }
            return Ok(());
        }
        if let Ok(m) = tokio::fs::metadata(&path).await {
            if m.ino() != ino {
                // Rotated: the old file is read to its end; go on with the new one.
                if !line.is_empty() {
                    let mut out = Vec::new();
                    fmt.push(&line, &mut out);
                    line.clear();
                    if tx.send(Ok(out.into())).await.is_err() {
                        return Ok(());
                    }
                }
                (reader, ino) = open_at(&path, None).await?;
                continue;
            }
        }
        if last_check.elapsed() >= RUNNING_CHECK {
            last_check = Instant::now();
            if !running().await {
                // Drain what was written before the exit, then stop.
                exited = true;
                continue;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return Ok(()),
        }
    }
}

async fn open_at(
    path: &FsPath,
    tail: Option<u64>,
) -> std::io::Result<(BufReader<tokio::fs::File>, u64)> {
    let mut f = std::fs::File::open(path)?;
    let ino = f.metadata()?.ino();
    let start = match tail {
        Some(n) => tail_start(&mut f, n)?,
        None => 0,
    };
    let mut f = tokio::fs::File::from_std(f);
    f.seek(SeekFrom::Start(start)).await?;
    Ok((BufReader::new(f), ino))
}

/// GET /containerLogs/{ns}/{pod}/{container}
pub(crate) async fn container_logs(
    State(ctx): State<Arc<Ctx>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let opts = LogOptions::from_query(query.as_deref().unwrap_or(""), Utc::now())
        .map_err(HttpError::bad_request)?;
    let cs = ctx
        .runtime
        .list_containers(container_labels(&ns, &pod, &container))
        .await
        .map_err(HttpError::internal)?;
    let cs = newest_first(cs);
    let chosen = if opts.previous {
        cs.get(1).ok_or_else(|| {
            HttpError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{pod}\" not found"
            ))
        })?
    } else {
        cs.first().ok_or_else(|| {
            HttpError::bad_request(format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ))
        })?
    };
    let status = ctx
        .runtime
        .container_status(chosen.id.clone())
        .await
        .map_err(HttpError::internal)?;
    let path = match status.as_ref().map(|s| s.log_path.as_str()) {
        Some(p) if p.starts_with('/') => PathBuf::from(p),
        _ => {
            let uid = chosen
                .labels
                .get(LABEL_POD_UID)
                .cloned()
                .unwrap_or_default();
            let attempt = chosen.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
            ctx.log_root
                .join(format!("{ns}_{pod}_{uid}"))
                .join(&container)
                .join(format!("{attempt}.log"))
        }
    };
    if let Err(e) = std::fs::metadata(&path) {
        return Err(HttpError::bad_request(format!(
            "failed to open log file {:?}: {e}",
            path.display().to_string()
        )));
    }
    let id = chosen.id.clone();
    let rt = ctx.runtime.clone();
    let running: RunningFn = Arc::new(move || {
        let rt = rt.clone();
        let id = id.clone();
        Box::pin(async move {
            match rt.container_status(id).await {
                Ok(Some(s)) => is_running(s.state),
                Ok(None) => false,
                // The runtime being away does not end a follow.
                Err(_) => true,
            }
        })
    });
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        if let Err(e) = stream_file(path, opts, running, tx.clone()).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder()
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(body)
        .map_err(HttpError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};
    use std::sync::atomic::{AtomicBool, Ordering};

    const LOG: &str = "2024-01-01T00:00:01.5Z stdout F one\n\
2024-01-01T00:00:02.000000001Z stderr F two\n\
2024-01-01T00:00:03Z stdout P thr\n\
2024-01-01T00:00:04Z stdout F ee\n\
2024-01-01T00:00:05Z stdout F \n";

    fn render(opts: LogOptions, text: &str) -> String {
        let mut f = Formatter::new(opts);
        let mut out = Vec::new();
        for l in text.lines() {
            if !f.push(l.as_bytes(), &mut out) {
                break;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_lines() {
        let e = parse_cri_line(b"2016-10-06T00:17:09.669794202Z stdout P log content 1").unwrap();
        assert_eq!(e.stream, LogStream::Stdout);
        assert!(e.partial);
        assert_eq!(e.msg, b"log content 1");
        let e = parse_cri_line(b"2016-10-06T00:17:09.669794202+02:00 stderr F").unwrap();
        assert_eq!(e.msg, b"");
        assert!(!e.partial);
        assert!(parse_cri_line(b"garbage").is_none());
        assert!(parse_cri_line(b"2016-10-06T00:17:09Z stdin F x").is_none());
    }

    #[test]
    fn joins_partial_lines() {
        assert_eq!(render(LogOptions::default(), LOG), "one\ntwo\nthree\n\n");
    }

    #[test]
    fn timestamps_once_per_line() {
        let o = LogOptions {
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            render(o, LOG),
            "2024-01-01T00:00:01.500000000Z one\n\
2024-01-01T00:00:02.000000001Z two\n\
2024-01-01T00:00:03.000000000Z three\n\
2024-01-01T00:00:05.000000000Z \n"
        );
    }

    #[test]
    fn since_stream_and_limit() {
        let since = DateTime::parse_from_rfc3339("2024-01-01T00:00:02Z").unwrap();
        let o = LogOptions {
            since: Some(since.with_timezone(&Utc)),
            ..Default::default()
        };
        assert_eq!(render(o, LOG), "two\nthree\n\n");
        let o = LogOptions {
            stream: Some(LogStream::Stderr),
            ..Default::default()
        };
        assert_eq!(render(o, LOG), "two\n");
        let o = LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(render(o, LOG), "one\ntw");
    }

    #[test]
    fn tail_offsets() {
        let text = "a\nbb\nccc\n";
        let mut c = Cursor::new(text.as_bytes());
        assert_eq!(tail_start(&mut c, 1).unwrap(), 5);
        assert_eq!(tail_start(&mut c, 2).unwrap(), 2);
        assert_eq!(tail_start(&mut c, 3).unwrap(), 0);
        assert_eq!(tail_start(&mut c, 10).unwrap(), 0);
        assert_eq!(tail_start(&mut c, 0).unwrap(), 9);
        let mut c = Cursor::new(b"a\nbb".as_slice());
        assert_eq!(tail_start(&mut c, 1).unwrap(), 2);
        // Across block boundaries.
        let big: String = (0..3000).map(|i| format!("line{i}\n")).collect();
        let mut c = Cursor::new(big.as_bytes());
        let off = tail_start(&mut c, 2).unwrap() as usize;
        assert_eq!(&big[off..], "line2998\nline2999\n");
    }

    #[test]
    fn parses_query() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:01:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let o = LogOptions::from_query(
            "follow=true&tailLines=5&sinceSeconds=60&timestamps=1&limitBytes=10&previous=false",
            now,
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.limit_bytes, Some(10));
        assert_eq!(o.since.unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00");
        let o = LogOptions::from_query("sinceTime=2024-01-01T00%3A00%3A30Z", now).unwrap();
        assert_eq!(o.since.unwrap().to_rfc3339(), "2024-01-01T00:00:30+00:00");
        assert!(LogOptions::from_query("tailLines=x", now).is_err());
        assert!(LogOptions::from_query("follow=maybe", now).is_err());
    }

    async fn collect(mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> String {
        let mut s = Vec::new();
        while let Some(b) = rx.recv().await {
            s.extend_from_slice(&b.unwrap());
        }
        String::from_utf8(s).unwrap()
    }

    #[tokio::test]
    async fn tails_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, LOG).unwrap();
        let (tx, rx) = mpsc::channel(4);
        let o = LogOptions {
            tail_lines: Some(3),
            ..Default::default()
        };
        let running: RunningFn = Arc::new(|| Box::pin(async { false }));
        let h = tokio::spawn(stream_file(p, o, running, tx));
        assert_eq!(collect(rx).await, "three\n\n");
        h.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn follows_across_rotation_until_exit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, "2024-01-01T00:00:01Z stdout F first\n").unwrap();
        let alive = Arc::new(AtomicBool::new(true));
        let a = alive.clone();
        let running: RunningFn = Arc::new(move || {
            let a = a.clone();
            Box::pin(async move { a.load(Ordering::SeqCst) })
        });
        let (tx, rx) = mpsc::channel(4);
        let o = LogOptions {
            follow: true,
            ..Default::default()
        };
        let h = tokio::spawn(stream_file(p.clone(), o, running, tx));
        tokio::time::sleep(Duration::from_millis(300)).await;
        {
            let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(b"2024-01-01T00:00:02Z stdout P sec").unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        {
            let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(b"ond\n2024-01-01T00:00:02Z stdout F ond\n")
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Rotate as the log manager does: rename, then the runtime reopens.
        std::fs::rename(&p, dir.path().join("0.log.20240101")).unwrap();
        std::fs::write(&p, "2024-01-01T00:00:03Z stdout F third\n").unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        alive.store(false, Ordering::SeqCst);
        let out = tokio::time::timeout(Duration::from_secs(5), collect(rx))
            .await
            .unwrap();
        // "P second" then "F ond" join into one line.
        assert_eq!(out, "first\nsecondond\nthird\n");
        h.await.unwrap().unwrap();
    }
}
