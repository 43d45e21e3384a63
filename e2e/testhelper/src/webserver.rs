//! `test-webserver`: a static file server rooted at `/` (directory listings, index.html).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::flags::{self, value};
use crate::http::{self, Request, Response};
use crate::util::{self, block_forever, Civil};

const ABOUT: &str = "Starts a simple HTTP fileserver";

const SPECS: &[flags::Spec] = &[value("port", "80", "Port number.")];

/// Runs the subcommand.
pub fn run(argv: &[String]) -> i32 {
    let p = flags::parse_or_exit("test-webserver", ABOUT, SPECS, argv);
    let port = flags::int_or_exit(&p, "port");
    let Ok(port) = u16::try_from(port) else {
        util::fatal(&format!("invalid port {port}"));
    };
    let listener =
        http::listen_any(port).unwrap_or_else(|e| util::fatal(&format!("listen tcp :{port}: {e}")));
    http::spawn_server(
        listener,
        Arc::new(|req: &Request| with_cors(serve_file(Path::new("/"), req))),
    );
    block_forever()
}

fn with_cors(r: Response) -> Response {
    r.with_header("Cache-Control", "private")
        .with_header("Access-Control-Allow-Origin", "*")
        .with_header("Access-Control-Allow-Credentials", "true")
        .with_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        .with_header(
            "Access-Control-Allow-Headers",
            "DNT,X-Mx-ReqToken,Keep-Alive,User-Agent,X-Requested-With,Cache-Control,Content-Type",
        )
}

/// The content type for a file name (Go's mime.TypeByExtension subset), else sniffed.
fn content_type(path: &Path, body: &[u8]) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("xml") => "text/xml; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        _ => http::sniff(body),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

fn url_escape_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A directory listing like Go's http.FileServer writes.
pub fn listing(mut names: Vec<(String, bool)>) -> String {
    names.sort();
    let mut s = String::from(
        "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n",
    );
    for (name, is_dir) in names {
        let shown = if is_dir { format!("{name}/") } else { name };
        s.push_str(&format!(
            "<a href=\"{}\">{}</a>\n",
            url_escape_path(&shown),
            html_escape(&shown)
        ));
    }
    s.push_str("</pre>\n");
    s
}

fn io_error_response(e: &std::io::Error) -> Response {
    match e.kind() {
        std::io::ErrorKind::NotFound => Response::not_found(),
        std::io::ErrorKind::PermissionDenied => Response::error(403, "403 Forbidden"),
        _ => Response::error(500, "500 Internal Server Error"),
    }
}

/// Serves `req.path` below `root`.
pub fn serve_file(root: &Path, req: &Request) -> Response {
    let url_path = if req.path.starts_with('/') {
        req.path.clone()
    } else {
        format!("/{}", req.path)
    };
    if url_path.ends_with("/index.html") {
        return Response::new(301).with_header("Location", "./");
    }
    let clean = http::clean_path(&url_path);
    let fs_path: PathBuf = root.join(clean.trim_start_matches('/'));
    let meta = match std::fs::metadata(&fs_path) {
        Ok(m) => m,
        Err(e) => return io_error_response(&e),
    };
    if meta.is_dir() {
        if !url_path.ends_with('/') {
            let base = url_path.rsplit('/').next().unwrap_or("");
            return Response::new(301).with_header("Location", &format!("{base}/"));
        }
        let index = fs_path.join("index.html");
        if index.is_file() {
            return file_response(&index, req);
        }
        let entries = match std::fs::read_dir(&fs_path) {
            Ok(rd) => rd,
            Err(e) => return io_error_response(&e),
        };
        let names = entries
            .filter_map(Result::ok)
            .map(|e| {
                let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                (e.file_name().to_string_lossy().into_owned(), is_dir)
            })
            .collect();
        return Response::text(200, listing(names))
            .with_header("Content-Type", "text/html; charset=utf-8");
    }
    if url_path.ends_with('/') {
        let base = clean.rsplit('/').next().unwrap_or("");
        return Response::new(301).with_header("Location", &format!("../{base}"));
    }
    file_response(&fs_path, req)
}

fn file_response(path: &Path, _req: &Request) -> Response {
    match std::fs::read(path) {
        Ok(body) => {
            let ct = content_type(path, &body);
            let mut r = Response::new(200)
                .with_header("Content-Type", ct)
                .with_header("Accept-Ranges", "bytes");
            if let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified()) {
                r = r.with_header("Last-Modified", &Civil::from_system(modified).http_date());
            }
            r.body = body;
            r
        }
        Err(e) => io_error_response(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str) -> Request {
        let template = Request {
            method: "GET".into(),
            path: "/".into(),
            raw_query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            remote: "127.0.0.1:1".parse().unwrap(),
        };
        Request::synthetic(path, &template)
    }

    #[test]
    fn serves_files_dirs_and_misses() {
        let dir = std::env::temp_dir().join(format!("rkube-testhelper-web-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), "hello").unwrap();
        let r = serve_file(&dir, &req("/a.txt"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = serve_file(&dir, &req("/"));
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body).unwrap();
        assert!(text.contains("<a href=\"a.txt\">a.txt</a>"));
        assert!(text.contains("<a href=\"sub/\">sub/</a>"));
        let r = serve_file(&dir, &req("/sub"));
        assert_eq!(r.status, 301);
        assert_eq!(serve_file(&dir, &req("/missing")).status, 404);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
