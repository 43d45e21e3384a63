//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines with the
//! resourceVersion rules of Kubernetes (unset/"0" start with synthetic ADDED
//! events, an explicit version replays history after it, 410 Gone when it was
//! compacted), bookmarks, sendInitialEvents and timeoutSeconds.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rkube_apimachinery::table;
use rkube_store::EventKind;
use serde_json::{json, Value};

use super::context::Ctx;
use super::crud::{decode, ListFilter};
use crate::request::Representation;
use crate::status::{ApiError, ApiResult};

fn line(kind: &str, obj: &Value) -> bytes::Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
    v.push(b'\n');
    bytes::Bytes::from(v)
}

/// Serves a watch request.
pub async fn watch(ctx: Ctx) -> ApiResult<Response> {
    let filter = ListFilter::parse(&ctx)?;
    let name = ctx.info.name.clone();
    let rv = ctx.q("resourceVersion").unwrap_or("").to_string();
    let send_initial = ctx.q("sendInitialEvents") == Some("true");
    let bookmarks = ctx.q("allowWatchBookmarks") == Some("true");
    let timeout = ctx
        .q("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let prefix = ctx.res.key_prefix_ns(ctx.ns());
    let store = ctx.state.store.clone();
    let matches = move |obj: &Value| -> bool {
        if let Some(n) = &name {
            if crate::objects::name(obj) != n {
                return false;
            }
        }
        filter.matches(obj)
    };

    let mut initial: Vec<Value> = Vec::new();
    let from = if rv.is_empty() || rv == "0" || send_initial {
        let page = store.list(&prefix, None, 0).await?;
        for kv in &page.items {
            let mut v = decode(kv)?;
            stamp(&ctx, &mut v);
            if matches(&v) {
                initial.push(v);
            }
        }
        if !rv.is_empty() && rv != "0" && send_initial {
            // sendInitialEvents with an explicit version: not older than it.
            page.revision
        } else {
            page.revision
        }
    } else {
        rv.parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(256);
    let mut events = match store.watch(&prefix, from) {
        Ok(w) => w,
        Err(rkube_store::Error::Compacted { requested, oldest }) => {
            let status =
                ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
                    .to_status();
            let _ = tx.send(line("ERROR", &status)).await;
            drop(tx);
            return Ok(stream_response(rx));
        }
        Err(e) => return Err(e.into()),
    };
    let repr = ctx.repr;
    let res = ctx.res.clone();
    let api_version = res.api_version();
    let kind = res.kind.clone();
    let printer = ctx
        .crd
        .as_ref()
        .and_then(|crd| rkube_apimachinery::crd::printer_columns(crd, &res.version));
    let crd = ctx.crd.clone();
    tokio::spawn(async move {
        let mut first = true;
        let mut render = |obj: &Value| -> Value {
            let mut defaulted;
            let obj = match &crd {
                Some(crd) => {
                    defaulted = obj.clone();
                    rkube_apimachinery::crd::apply_defaults(crd, &res.version, &mut defaulted);
                    &defaulted
                }
                None => obj,
            };
            match repr {
                Representation::Json => obj.clone(),
                Representation::PartialMetadata => {
                    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
                }
                Representation::Table => {
                    let rv = obj
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let mut t = table::to_table(
                        &res,
                        std::slice::from_ref(obj),
                        table::IncludeObject::Metadata,
                        &rv,
                        None,
                        printer.as_deref(),
                        chrono::Utc::now(),
                    );
                    if !first {
                        if let Some(m) = t.as_object_mut() {
                            m.insert("columnDefinitions".into(), json!([]));
                        }
                    }
                    first = false;
                    t
                }
            }
        };
        for obj in &initial {
            if tx.send(line("ADDED", &render(obj))).await.is_err() {
                return;
            }
        }
        let mut last_rv = from;
        if send_initial {
            let bm = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": from.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(line("BOOKMARK", &bm)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rv.to_string()}});
                    if tx.send(line("BOOKMARK", &bm)).await.is_err() { return; }
                }
                ev = events.recv() => {
                    let Some(ev) = ev else { return };
                    last_rv = ev.kv.mod_revision;
                    let Ok(mut obj) = decode(&ev.kv) else { continue };
                    if let Some(m) = obj.as_object_mut() {
                        m.entry("apiVersion").or_insert(json!(api_version));
                        m.entry("kind").or_insert(json!(kind));
                    }
                    let now_match = matches(&obj);
                    let prev_match = ev.prev.as_ref().and_then(|p| decode(p).ok()).is_some_and(|p| matches(&p));
                    let kind_s = match ev.kind {
                        EventKind::Added if now_match => "ADDED",
                        EventKind::Modified if now_match && prev_match => "MODIFIED",
                        EventKind::Modified if now_match => "ADDED",
                        EventKind::Modified if prev_match => "DELETED",
                        EventKind::Deleted if now_match => "DELETED",
                        _ => continue,
                    };
                    if tx.send(line(kind_s, &render(&obj))).await.is_err() { return; }
                }
            }
        }
    });
    Ok(stream_response(rx))
}

fn stamp(ctx: &Ctx, obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| json!(ctx.res.api_version()));
        m.entry("kind").or_insert_with(|| json!(ctx.res.kind));
    }
}

fn stream_response(rx: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> Response {
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    let mut r = (StatusCode::OK, Body::from_stream(stream)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
