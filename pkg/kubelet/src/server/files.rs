//! /logs/: the node's /var/log served like Go's http.FileServer (which the
//! kubelet uses): a `<pre>` listing of links for a directory, the bytes of a
//! file; paths never leave the directory.

use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::{Ctx, HttpError};

/// GET /logs
pub(crate) async fn redirect() -> Redirect {
    Redirect::permanent("/logs/")
}

/// GET /logs/
pub(crate) async fn serve_root(State(ctx): State<Arc<Ctx>>) -> Result<Response, HttpError> {
    serve_path(&ctx.node_log_dir, "").await
}

/// GET /logs/{*path}
pub(crate) async fn serve(
    State(ctx): State<Arc<Ctx>>,
    Path(path): Path<String>,
) -> Result<Response, HttpError> {
    serve_path(&ctx.node_log_dir, &path).await
}

/// Joins a request path under `root`, refusing `..` and absolute parts.
pub(crate) fn resolve(root: &FsPath, rel: &str) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for c in FsPath::new(rel.trim_start_matches('/')).components() {
        match c {
            Component::Normal(s) => p.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(p)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// The directory listing page.
pub(crate) fn listing(dir: &FsPath) -> std::io::Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| {
            let mut n = e.file_name().to_string_lossy().into_owned();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                n.push('/');
            }
            n
        })
        .collect();
    names.sort();
    let mut out = String::from(
        "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n",
    );
    for n in names {
        out.push_str(&format!("<a href=\"{}\">{}</a>\n", escape(&n), escape(&n)));
    }
    out.push_str("</pre>\n");
    Ok(out)
}

async fn serve_path(root: &FsPath, rel: &str) -> Result<Response, HttpError> {
    let not_found = || HttpError(StatusCode::NOT_FOUND, "404 page not found".into());
    let p = resolve(root, rel).ok_or_else(not_found)?;
    let meta = tokio::fs::metadata(&p).await.map_err(|_| not_found())?;
    if meta.is_dir() {
        if !rel.is_empty() && !rel.ends_with('/') {
            return Ok(Redirect::permanent(&format!("/logs/{rel}/")).into_response());
        }
        let page = listing(&p).map_err(HttpError::internal)?;
        return Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response());
    }
    let f = tokio::fs::File::open(&p).await.map_err(|_| not_found())?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(f));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_LENGTH, meta.len())
        .body(body)
        .map_err(HttpError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_root_only() {
        let root = FsPath::new("/var/log");
        assert_eq!(
            resolve(root, "apt/history.log").unwrap(),
            PathBuf::from("/var/log/apt/history.log")
        );
        assert!(resolve(root, "../etc/shadow").is_none());
        assert!(resolve(root, "a/../../x").is_none());
    }

    #[test]
    fn lists_directories() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b<.log"), "x").unwrap();
        std::fs::create_dir(d.path().join("apt")).unwrap();
        let page = listing(d.path()).unwrap();
        assert!(page.contains("<a href=\"apt/\">apt/</a>\n<a href=\"b&lt;.log\">b&lt;.log</a>\n"));
    }
}
