//! A small blocking HTTP/1.1 server (thread per connection) and client, with Go net/http quirks.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::{unmap, Civil};

/// Requests currently being handled (for graceful shutdown).
pub static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Set when the process is shutting down: no new requests are served.
pub static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

const MAX_HEADER_BYTES: usize = 1 << 20;
const MAX_BODY_BYTES: usize = 64 << 20;
/// How long a kept-alive connection may stay idle (shared with `https`).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A parsed HTTP request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The percent-decoded path.
    pub path: String,
    /// The query string, still encoded.
    pub raw_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client address (IPv4-mapped addresses shown as IPv4).
    pub remote: SocketAddr,
}

impl Request {
    /// A GET request for `target` (used for tests and --http-override).
    pub fn synthetic(target: &str, template: &Request) -> Request {
        let (path, raw_query) = split_target(target);
        Request {
            method: "GET".to_string(),
            path: path_unescape(&path).unwrap_or(path),
            raw_query,
            headers: template.headers.clone(),
            body: Vec::new(),
            remote: template.remote,
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter `key`, or "" (Go's URL.Query().Get).
    pub fn query_get(&self, key: &str) -> String {
        first(&parse_query(&self.raw_query), key)
    }

    /// Go's Request.FormValue: urlencoded POST/PUT/PATCH body first, then the query.
    pub fn form_value(&self, key: &str) -> String {
        let mut pairs = Vec::new();
        let is_form = self
            .header("content-type")
            .map(|c| c.trim().starts_with("application/x-www-form-urlencoded"))
            .unwrap_or(false);
        if is_form && matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            pairs.extend(parse_query(&String::from_utf8_lossy(&self.body)));
        }
        pairs.extend(parse_query(&self.raw_query));
        first(&pairs, key)
    }
}

fn first(pairs: &[(String, String)], key: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Work to run after the response has been written and flushed.
pub type After = Box<dyn FnOnce() + Send>;

/// A response to write.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection without writing anything (like a Go handler
    /// that panics or exits the process mid-request).
    pub hangup: bool,
    pub after: Option<After>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            hangup: false,
            after: None,
        }
    }

    /// A response with a text body.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        let mut r = Response::new(status);
        r.body = body.into().into_bytes();
        r
    }

    /// Sets (replaces) header `name`.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Go's http.Error: plain text `msg` plus a newline.
    pub fn error(status: u16, msg: &str) -> Response {
        Response::text(status, format!("{msg}\n"))
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_header("X-Content-Type-Options", "nosniff")
    }

    /// Go's http.NotFound.
    pub fn not_found() -> Response {
        Response::error(404, "404 page not found")
    }

    /// Go's http.Redirect to `location` with `code`.
    pub fn redirect(req: &Request, location: &str, code: u16) -> Response {
        let loc = resolve_location(&req.path, location);
        let mut r = Response::new(code).with_header("Location", &loc);
        if req.method == "GET" || req.method == "HEAD" {
            r = r.with_header("Content-Type", "text/html; charset=utf-8");
            r.body = format!(
                "<a href=\"{}\">{}</a>.\n\n",
                html_escape(&loc),
                status_text(code)
            )
            .into_bytes();
        }
        r
    }

    /// Closes the connection without a response.
    pub fn hangup() -> Response {
        let mut r = Response::new(0);
        r.hangup = true;
        r
    }

    /// Runs `f` after the response is sent.
    pub fn then(mut self, f: impl FnOnce() + Send + 'static) -> Response {
        self.after = Some(Box::new(f));
        self
    }
}

/// Makes a redirect target absolute-path like Go's http.Redirect does.
fn resolve_location(req_path: &str, location: &str) -> String {
    let has_scheme = location
        .split_once(':')
        .map(|(s, _)| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !s.contains('/')
        })
        .unwrap_or(false);
    if has_scheme || location.starts_with("//") {
        return location.to_string();
    }
    let (path, rest) = match location.find(['?', '#']) {
        Some(i) => (&location[..i], &location[i..]),
        None => (location, ""),
    };
    let mut full = if path.starts_with('/') {
        path.to_string()
    } else {
        let dir = match req_path.rfind('/') {
            Some(i) => &req_path[..=i],
            None => "/",
        };
        format!("{dir}{path}")
    };
    let trailing = full.ends_with('/');
    full = clean_path(&full);
    if trailing && !full.ends_with('/') {
        full.push('/');
    }
    format!("{full}{rest}")
}

/// The request handler type.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// Binds TCP `port` on all addresses (dual-stack `[::]`, else `0.0.0.0`).
pub fn listen_any(port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(("::", port)).or_else(|_| TcpListener::bind(("0.0.0.0", port)))
}

/// Accepts connections forever, one thread each.
pub fn serve(listener: TcpListener, handler: Handler) -> io::Error {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if SHUTTING_DOWN.load(Ordering::SeqCst) {
                    continue;
                }
                let h = handler.clone();
                std::thread::spawn(move || handle_connection(stream, h));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return e,
        }
    }
}

/// Serves on `listener` in a background thread.
pub fn spawn_server(listener: TcpListener, handler: Handler) {
    std::thread::spawn(move || {
        let e = serve(listener, handler);
        crate::util::fatal(&format!("accept failed: {e}"));
    });
}

fn handle_connection(stream: TcpStream, handler: Handler) {
    let Ok(peer) = stream.peer_addr() else {
        return;
    };
    let remote = unmap(peer);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let req = match read_request(&mut reader, remote) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let msg = format!("400 Bad Request: {e}");
                let _ = write_response(&mut writer, "GET", Response::error(400, &msg), false);
                return;
            }
        };
        if SHUTTING_DOWN.load(Ordering::SeqCst) {
            return;
        }
        let keep_alive = wants_keep_alive(&req);
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        let clean = clean_path(&req.path);
        let mut resp = if req.method != "CONNECT" && clean != req.path && !req.path.is_empty() {
            let mut target = clean;
            if !req.raw_query.is_empty() {
                target = format!("{target}?{}", req.raw_query);
            }
            Response::new(301).with_header("Location", &target)
        } else {
            handler(&req)
        };
        let after = resp.after.take();
        let close = !keep_alive
            || resp.headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close")
            });
        let ok = if resp.hangup {
            let _ = writer.shutdown(Shutdown::Both);
            false
        } else {
            write_response(&mut writer, &req.method, resp, !close).is_ok()
        };
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        if let Some(f) = after {
            f();
        }
        if !ok || close {
            let _ = writer.shutdown(Shutdown::Write);
            return;
        }
    }
}

fn wants_keep_alive(req: &Request) -> bool {
    let conn = req.header("connection").unwrap_or("").to_ascii_lowercase();
    !conn.split(',').any(|t| t.trim() == "close")
}

fn read_line_limited(r: &mut impl BufRead, budget: &mut usize) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.take(*budget as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "header too large",
        ));
    }
    *budget -= n;
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one request from a plain or TLS connection; `Ok(None)` on a
/// clean end of stream or an idle timeout. Malformed requests are
/// `InvalidData` errors (answered 400 by the caller).
pub(crate) fn read_request<S: Read + Write>(
    reader: &mut BufReader<S>,
    remote: SocketAddr,
) -> io::Result<Option<Request>> {
    let mut budget = MAX_HEADER_BYTES;
    let line = loop {
        match read_line_limited(reader, &mut budget) {
            Ok(None) => return Ok(None),
            Ok(Some(l)) if l.is_empty() => continue,
            Ok(Some(l)) => break l,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(proto)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed HTTP request"));
    };
    if !proto.starts_with("HTTP/") || method.is_empty() {
        return Err(bad("malformed HTTP version"));
    }
    let http10 = proto == "HTTP/1.0";
    let mut headers = Vec::new();
    loop {
        let Some(l) = read_line_limited(reader, &mut budget)? else {
            return Err(bad("unexpected EOF in headers"));
        };
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| bad("malformed header line"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    if http10
        && !headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("keep-alive")
        })
    {
        headers.push(("Connection".to_string(), "close".to_string()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if get("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        reader.get_mut().flush()?;
    }
    let chunked =
        get("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else if let Some(len) = get("content-length") {
        let len: usize = len.trim().parse().map_err(|_| bad("bad Content-Length"))?;
        if len > MAX_BODY_BYTES {
            return Err(bad("body too large"));
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        body
    } else {
        Vec::new()
    };
    let origin = strip_authority(target);
    let (raw_path, raw_query) = split_target(origin);
    let path = path_unescape(&raw_path).map_err(|e| bad(&e))?;
    Ok(Some(Request {
        method: method.to_string(),
        path,
        raw_query,
        headers,
        body,
        remote,
    }))
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut budget = 4096;
        let line = read_line_limited(reader, &mut budget)?.ok_or_else(|| bad("unexpected EOF"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // Trailers until the empty line.
            loop {
                let mut budget = 65536;
                match read_line_limited(reader, &mut budget)? {
                    Some(l) if !l.is_empty() => continue,
                    _ => return Ok(body),
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(bad("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// `http://host/p?q` → `/p?q`; origin-form targets are returned as is.
fn strip_authority(target: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return match rest.find('/') {
                Some(i) => &rest[i..],
                None => "/",
            };
        }
    }
    target
}

fn split_target(target: &str) -> (String, String) {
    let target = target.split('#').next().unwrap_or("");
    match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    }
}

pub(crate) fn write_response(
    w: &mut impl Write,
    method: &str,
    resp: Response,
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, status_text(resp.status));
    let has = |name: &str| {
        resp.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    let no_body = resp.status == 204 || resp.status == 304 || (100..200).contains(&resp.status);
    if !resp.body.is_empty() && !has("content-type") {
        head.push_str(&format!("Content-Type: {}\r\n", sniff(&resp.body)));
    }
    if !has("date") {
        head.push_str(&format!("Date: {}\r\n", Civil::now().http_date()));
    }
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !no_body {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    if !keep_alive && !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if method != "HEAD" && !no_body {
        out.extend_from_slice(&resp.body);
    }
    w.write_all(&out)?;
    w.flush()
}

/// A subset of Go's http.DetectContentType.
pub fn sniff(body: &[u8]) -> &'static str {
    let start = body
        .iter()
        .position(|b| !matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' '))
        .unwrap_or(body.len());
    let lead = &body[start..];
    let lower: Vec<u8> = lead.iter().take(16).map(u8::to_ascii_lowercase).collect();
    for tag in [
        &b"<!doctype html"[..],
        b"<html",
        b"<head",
        b"<script",
        b"<iframe",
        b"<h1",
        b"<div",
        b"<font",
        b"<table",
        b"<a",
        b"<style",
        b"<title",
        b"<b",
        b"<body",
        b"<br",
        b"<p",
        b"<!--",
    ] {
        if lower.starts_with(tag)
            && lower
                .get(tag.len())
                .is_some_and(|c| *c == b' ' || *c == b'>')
        {
            return "text/html; charset=utf-8";
        }
    }
    if lead.starts_with(b"<?xml") {
        return "text/xml; charset=utf-8";
    }
    if lead.starts_with(b"%PDF-") {
        return "application/pdf";
    }
    if lead.starts_with(b"\x89PNG\r\n\x1a\n") {
        return "image/png";
    }
    if lead.starts_with(b"GIF87a") || lead.starts_with(b"GIF89a") {
        return "image/gif";
    }
    if lead.starts_with(b"\xff\xd8\xff") {
        return "image/jpeg";
    }
    if lead.starts_with(b"\x1f\x8b\x08") {
        return "application/x-gzip";
    }
    let binary = body
        .iter()
        .take(512)
        .any(|b| matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1a | 0x1c..=0x1f));
    if binary {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// The reason phrase for `code` (Go's http.StatusText).
pub fn status_text(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Go's path.Clean for an absolute path, keeping a trailing slash
/// (net/http's cleanPath).
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return "/".to_string();
    }
    let mut stack: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let mut out = format!("/{}", stack.join("/"));
    let ends_dir = p.ends_with('/') || p.ends_with("/.") || p.ends_with("/..");
    if ends_dir && out != "/" {
        out.push('/');
    }
    out
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn unescape(s: &str, plus_is_space: bool) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(unhex);
                let lo = b.get(i + 2).copied().and_then(unhex);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    let bad: String = s[i..].chars().take(3).collect();
                    return Err(format!(
                        "invalid URL escape {}",
                        crate::util::go_quote(&bad)
                    ));
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's url.QueryUnescape (`+` is a space).
pub fn query_unescape(s: &str) -> Result<String, String> {
    unescape(s, true)
}

/// Go's url.PathUnescape (`+` stays).
pub fn path_unescape(s: &str) -> Result<String, String> {
    unescape(s, false)
}

/// Go's url.ParseQuery, keeping order and skipping malformed pairs.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in q.split('&') {
        if part.is_empty() || part.contains(';') {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        if let (Ok(k), Ok(v)) = (query_unescape(k), query_unescape(v)) {
            out.push((k, v));
        }
    }
    out
}

/// Go's textproto.CanonicalMIMEHeaderKey.
pub fn canonical_header_key(k: &str) -> String {
    if k.is_empty()
        || !k
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
    {
        return k.to_string();
    }
    let mut upper = true;
    k.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// Escapes what an HTTP client must not send raw in a request path or query.
fn escape_target(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b <= b' ' || b >= 0x7f || b"\"<>\\^`{|}".contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// A response read by the client.
#[derive(Debug)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Client errors, worded like Go's net/http client errors.
fn client_error(e: &io::Error, op: &str, local: Option<SocketAddr>, remote: SocketAddr) -> String {
    use io::ErrorKind::*;
    match e.kind() {
        WouldBlock | TimedOut => {
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".to_string()
        }
        UnexpectedEof => "EOF".to_string(),
        ConnectionReset => match local {
            Some(l) => format!("{op} tcp {l}->{remote}: {op}: connection reset by peer"),
            None => format!("{op}: connection reset by peer"),
        },
        _ => match local {
            Some(l) => format!("{op} tcp {l}->{remote}: {op}: {}", crate::util::go_errno(e)),
            None => crate::util::go_errno(e),
        },
    }
}

/// GETs `target` (path and query) from `addr`, following up to 10 redirects,
/// within `timeout`; errors read like Go's (without the `Get "url": ` prefix).
pub fn get(addr: SocketAddr, target: &str, timeout: Duration) -> Result<ClientResponse, String> {
    let deadline = Instant::now() + timeout;
    let mut addr = addr;
    let mut host = addr.to_string();
    let mut target = target.to_string();
    for _ in 0..=10 {
        let resp = get_once(addr, &host, &target, deadline)?;
        if !matches!(resp.status, 301 | 302 | 303 | 307 | 308) {
            return Ok(resp);
        }
        let Some(loc) = resp
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("location"))
            .map(|(_, v)| v.clone())
        else {
            return Ok(resp);
        };
        if let Some(rest) = loc.strip_prefix("http://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let (h, p) = crate::util::split_host_port(authority)
                .unwrap_or_else(|_| (authority.to_string(), "80".to_string()));
            addr = crate::util::resolve(&h, &p)?;
            host = authority.to_string();
            target = path.to_string();
        } else if loc.contains("://") {
            return Err(format!(
                "unsupported protocol scheme in redirect to {loc:?}"
            ));
        } else {
            let (cur_path, _) = split_target(&target);
            target = resolve_location(&cur_path, &loc);
        }
    }
    Err("stopped after 10 redirects".to_string())
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

fn get_once(
    addr: SocketAddr,
    host: &str,
    target: &str,
    deadline: Instant,
) -> Result<ClientResponse, String> {
    let timeout_msg =
        || "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".to_string();
    let left = remaining(deadline).ok_or_else(timeout_msg)?;
    let mut stream = TcpStream::connect_timeout(&addr, left).map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused => format!("dial tcp {addr}: connect: connection refused"),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("dial tcp {addr}: i/o timeout (Client.Timeout exceeded while awaiting headers)")
        }
        _ => format!("dial tcp {addr}: connect: {}", crate::util::go_errno(&e)),
    })?;
    let local = stream.local_addr().ok().map(unmap);
    let path = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("/{target}")
    };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\n\r\n",
        escape_target(&path)
    );
    let _ = stream.set_write_timeout(remaining(deadline));
    stream
        .write_all(req.as_bytes())
        .map_err(|e| client_error(&e, "write", local, addr))?;
    let mut reader = BufReader::new(stream);
    let io_err = |e: io::Error| client_error(&e, "read", local, addr);
    let set_timeout = |r: &BufReader<TcpStream>| -> Result<(), String> {
        let left = remaining(deadline).ok_or_else(timeout_msg)?;
        r.get_ref()
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())
    };
    loop {
        set_timeout(&reader)?;
        let mut budget = MAX_HEADER_BYTES;
        let line = read_line_limited(&mut reader, &mut budget)
            .map_err(io_err)?
            .ok_or_else(|| "EOF".to_string())?;
        let mut parts = line.splitn(3, ' ');
        let _proto = parts.next();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("malformed HTTP response {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            set_timeout(&reader)?;
            let l = read_line_limited(&mut reader, &mut budget)
                .map_err(io_err)?
                .ok_or_else(|| "unexpected EOF".to_string())?;
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if (100..200).contains(&status) {
            continue;
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        set_timeout(&reader)?;
        let body = if status == 204 || status == 304 {
            Vec::new()
        } else if get("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
        {
            read_chunked(&mut reader).map_err(io_err)?
        } else if let Some(len) = get("content-length").and_then(|l| l.parse::<usize>().ok()) {
            let mut body = vec![0; len.min(MAX_BODY_BYTES)];
            reader.read_exact(&mut body).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    "unexpected EOF".to_string()
                } else {
                    io_err(e)
                }
            })?;
            body
        } else {
            let mut body = Vec::new();
            reader
                .by_ref()
                .take(MAX_BODY_BYTES as u64)
                .read_to_end(&mut body)
                .map_err(io_err)?;
            body
        };
        return Ok(ClientResponse {
            status,
            headers,
            body,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_and_percent_decoding() {
        let q = parse_query("msg=hello+world%21&code=&x&bad=%zz&semi=a;b&msg=second");
        assert_eq!(
            q,
            vec![
                ("msg".to_string(), "hello world!".to_string()),
                ("code".to_string(), String::new()),
                ("x".to_string(), String::new()),
                ("msg".to_string(), "second".to_string()),
            ]
        );
        assert_eq!(query_unescape("a%2Fb+c").unwrap(), "a/b c");
        assert_eq!(path_unescape("a%2Fb+c").unwrap(), "a/b+c");
        assert!(query_unescape("%4").is_err());
        assert_eq!(query_unescape("%C3%A9").unwrap(), "é");
    }

    #[test]
    fn form_values_prefer_the_body() {
        let remote: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut r = Request {
            method: "POST".into(),
            path: "/echo".into(),
            raw_query: "msg=query&code=201".into(),
            headers: vec![(
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: b"msg=body".to_vec(),
            remote,
        };
        assert_eq!(r.form_value("msg"), "body");
        assert_eq!(r.form_value("code"), "201");
        assert_eq!(r.query_get("msg"), "query");
        r.method = "GET".into();
        assert_eq!(r.form_value("msg"), "query");
    }

    #[test]
    fn paths_clean_like_net_http() {
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("//hostname"), "/hostname");
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c/");
        assert_eq!(clean_path("/.."), "/");
        assert_eq!(clean_path("/a/.."), "/");
    }

    #[test]
    fn redirect_locations_resolve_relative_paths() {
        assert_eq!(resolve_location("/redirect", "/echo?msg=x"), "/echo?msg=x");
        assert_eq!(resolve_location("/a/b", "c"), "/a/c");
        assert_eq!(resolve_location("/a/b", "../x/"), "/x/");
        assert_eq!(
            resolve_location("/a", "http://example.com/x"),
            "http://example.com/x"
        );
    }

    #[test]
    fn header_keys_canonicalize() {
        assert_eq!(canonical_header_key("user-agent"), "User-Agent");
        assert_eq!(canonical_header_key("X-FORWARDED-FOR"), "X-Forwarded-For");
        assert_eq!(canonical_header_key("bad key"), "bad key");
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"hello"), "text/plain; charset=utf-8");
        assert_eq!(sniff(b"  <html><body>"), "text/html; charset=utf-8");
        assert_eq!(sniff(b"\x00\x01"), "application/octet-stream");
    }

    #[test]
    fn server_and_client_round_trip() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handler: Handler = Arc::new(|req: &Request| match req.path.as_str() {
            "/go" => Response::redirect(req, "/echo?msg=moved", 302),
            "/echo" => Response::text(200, req.query_get("msg")),
            _ => Response::not_found(),
        });
        spawn_server(listener, handler);
        let r = get(addr, "echo?msg=a+b", Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"a b"[..]));
        let r = get(addr, "go", Duration::from_secs(5)).unwrap();
        assert_eq!(r.body, b"moved");
        let r = get(addr, "//echo?msg=clean", Duration::from_secs(5)).unwrap();
        assert_eq!(r.body, b"clean");
        let r = get(addr, "nothing", Duration::from_secs(5)).unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (404, &b"404 page not found\n"[..])
        );
    }

    #[test]
    fn client_reports_refused_connections_like_go() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = get(addr, "x", Duration::from_secs(2)).unwrap_err();
        assert_eq!(e, format!("dial tcp {addr}: connect: connection refused"));
    }
}
