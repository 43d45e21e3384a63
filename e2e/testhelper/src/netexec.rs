//! `netexec`: HTTP server with echo/dial/shell/exit endpoints plus a UDP command server.

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::flags::{self, value};
use crate::http::{self, Request, Response};
use crate::json;
use crate::log;
use crate::sys;
use crate::util::{self, go_duration_string, go_quote, hostname, parse_go_duration};

const ABOUT: &str =
    "Creates HTTP and UDP servers with various endpoints (SCTP and TLS are not supported)";

const SPECS: &[flags::Spec] = &[
    value("http-port", "8080", "HTTP Listen Port"),
    value(
        "udp-port",
        "8081",
        "UDP Listen Port (-1 disables the UDP server)",
    ),
    value(
        "sctp-port",
        "-1",
        "SCTP Listen Port (ignored: SCTP is not supported)",
    ),
    value("tls-cert-file", "", "Not supported by rkube-testhelper"),
    value(
        "tls-private-key-file",
        "",
        "Not supported by rkube-testhelper",
    ),
    value(
        "http-override",
        "",
        "Override the HTTP handler to always respond as if it were a GET with this path & params",
    ),
    value(
        "udp-listen-addresses",
        "",
        "A comma separated list of ip addresses the udp servers listen from",
    ),
    value(
        "delay-shutdown",
        "0",
        "Number of seconds to delay shutdown when receiving SIGTERM.",
    ),
];

/// Shared server state.
struct State {
    /// The UDP server is up (what /healthz reports).
    udp_ready: AtomicBool,
    /// SIGTERM arrived (what /readyz reports).
    terminating: AtomicBool,
    /// --http-override target, if any.
    http_override: String,
}

/// Runs the subcommand.
pub fn run(argv: &[String]) -> i32 {
    let p = flags::parse_or_exit("netexec", ABOUT, SPECS, argv);
    let http_port = flags::int_or_exit(&p, "http-port");
    let udp_port = flags::int_or_exit(&p, "udp-port");
    let sctp_port = flags::int_or_exit(&p, "sctp-port");
    let delay = flags::int_or_exit(&p, "delay-shutdown");
    if !p.str("tls-cert-file").is_empty() {
        eprintln!("netexec: --tls-cert-file (HTTPS) is not supported by rkube-testhelper");
        return 1;
    }
    if sctp_port != -1 {
        log!("SCTP is not supported by rkube-testhelper; ignoring --sctp-port={sctp_port}");
    }
    let state = Arc::new(State {
        udp_ready: AtomicBool::new(false),
        terminating: AtomicBool::new(false),
        http_override: p.str("http-override").to_string(),
    });

    let st = state.clone();
    sys::on_signal(move |sig| {
        if sig != sys::SIGTERM {
            std::process::exit(2);
        }
        st.terminating.store(true, Ordering::SeqCst);
        if delay > 0 {
            log!("Sleeping {delay} seconds before terminating...");
            std::thread::sleep(Duration::from_secs(delay as u64));
        }
        std::process::exit(0);
    });

    if udp_port != -1 {
        let Ok(port) = u16::try_from(udp_port) else {
            util::fatal(&format!("invalid --udp-port {udp_port}"));
        };
        let addrs = match parse_addresses(p.str("udp-listen-addresses")) {
            Ok(a) => a,
            Err(e) => util::fatal(&e),
        };
        for address in addrs {
            let st = state.clone();
            std::thread::spawn(move || udp_server(&address, port, &st));
        }
    }

    let Ok(port) = u16::try_from(http_port) else {
        util::fatal(&format!("invalid --http-port {http_port}"));
    };
    let listener = match http::listen_any(port) {
        Ok(l) => l,
        Err(e) => util::fatal(&format!("listen tcp :{port}: bind: {}", util::go_errno(&e))),
    };
    log!("Started HTTP server on port {port}");
    let st = state.clone();
    let e = http::serve(listener, Arc::new(move |req: &Request| handle(req, &st)));
    util::fatal(&format!("{e}"))
}

/// The comma-separated UDP listen addresses ("" = all), deduplicated and sorted.
fn parse_addresses(list: &str) -> Result<Vec<String>, String> {
    if list.is_empty() {
        return Ok(vec![String::new()]);
    }
    let mut out = Vec::new();
    for a in list.split(',') {
        if a.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("parseAddress: invalid address {a}"));
        }
        out.push(a.to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn bind_udp(address: &str, port: u16) -> std::io::Result<UdpSocket> {
    if address.is_empty() {
        UdpSocket::bind(("::", port)).or_else(|_| UdpSocket::bind(("0.0.0.0", port)))
    } else {
        UdpSocket::bind((address, port))
    }
}

fn udp_server(address: &str, port: u16, state: &State) {
    let sock = match bind_udp(address, port) {
        Ok(s) => s,
        Err(e) => util::fatal(&format!(
            "Error occurred: failed to create listener for UDP address {}:{}",
            util::join_host_port(address, &port.to_string()),
            util::go_errno(&e)
        )),
    };
    log!("Started UDP server on port {address} {port}");
    state.udp_ready.store(true, Ordering::SeqCst);
    let mut buf = [0u8; 2048];
    loop {
        let (n, client) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                state.udp_ready.store(false, Ordering::SeqCst);
                util::fatal(&format!(
                    "Error occurred: failed accepting UDP connections:{e}"
                ));
            }
        };
        let client = util::unmap(client);
        if let Some(reply) = udp_reply(&String::from_utf8_lossy(&buf[..n]), client) {
            let _ = sock.send_to(reply.as_bytes(), client);
        }
    }
}

/// The UDP/SCTP command protocol: `hostname`, `echo <msg>`, `clientip`.
fn udp_reply(received: &str, client: SocketAddr) -> Option<String> {
    let text = received.trim().to_lowercase();
    if text == "hostname" {
        Some(hostname())
    } else if let Some(rest) = text.strip_prefix("echo ") {
        log!("Echoing {rest} to UDP client {client}");
        Some(rest.to_string())
    } else if text == "clientip" {
        Some(client.to_string())
    } else {
        if !text.is_empty() {
            log!("Unknown UDP command received from {client}: {text}");
        }
        None
    }
}

fn handle(req: &Request, state: &State) -> Response {
    if !state.http_override.is_empty() {
        let over = Request::synthetic(&state.http_override, req);
        return route(&over, state);
    }
    route(req, state)
}

fn route(req: &Request, state: &State) -> Response {
    match req.path.as_str() {
        "/clientip" => {
            log!("GET /clientip");
            Response::text(200, req.remote.to_string())
        }
        "/header" => header(req),
        "/dial" => dial(req),
        "/echo" => echo(req),
        "/exit" => exit(req),
        "/healthz" => {
            log!("GET /healthz");
            if state.udp_ready.load(Ordering::SeqCst) {
                Response::new(200)
            } else {
                Response::new(412)
            }
        }
        "/readyz" => {
            log!("GET /readyz");
            if state.terminating.load(Ordering::SeqCst) {
                Response::text(503, "shutting down")
            } else if state.udp_ready.load(Ordering::SeqCst) {
                Response::text(200, "ok")
            } else {
                Response::new(412)
            }
        }
        "/hostname" | "/hostName" => {
            log!("GET {}", req.path);
            Response::text(200, hostname())
        }
        "/redirect" => redirect(req),
        "/shell" => shell(req),
        "/upload" => {
            log!("GET /upload");
            // Multipart uploads are not implemented; answer like upstream
            // does when the form has no file.
            Response::text(
                200,
                json::object(vec![(
                    "error".into(),
                    json::quote("Unable to upload file."),
                )]),
            )
        }
        "/shutdown" => {
            log!("GET /shutdown");
            std::process::exit(0)
        }
        _ => {
            log!("GET /");
            Response::text(200, format!("NOW: {}", util::go_now()))
        }
    }
}

fn atoi_error(s: &str) -> String {
    format!("strconv.Atoi: parsing {}: invalid syntax", go_quote(s))
}

fn with_status(code: i64, body: Response) -> Response {
    match u16::try_from(code) {
        Ok(c) if (100..=999).contains(&c) => Response { status: c, ..body },
        // Go's WriteHeader panics on such codes and the connection drops.
        _ => Response::hangup(),
    }
}

fn echo(req: &Request) -> Response {
    let msg = req.form_value("msg");
    let code = req.form_value("code");
    log!("GET /echo?msg={msg}&code={code}");
    if code.is_empty() {
        return Response::text(200, msg);
    }
    match code.parse::<i64>() {
        Ok(c) => with_status(c, Response::text(200, msg)),
        Err(_) => Response::text(
            200,
            format!(
                "argument 'code' must be an integer or empty, got {}\n",
                go_quote(&code)
            ),
        ),
    }
}

fn header(req: &Request) -> Response {
    let key = req.form_value("key");
    let visible = |k: &str| !k.eq_ignore_ascii_case("host");
    if !key.is_empty() {
        log!("GET /header?key={key}");
        let v = req
            .headers
            .iter()
            .find(|(k, _)| visible(k) && k.eq_ignore_ascii_case(&key))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        return Response::text(200, v);
    }
    log!("GET /header");
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in req.headers.iter().filter(|(k, _)| visible(k)) {
        let ck = http::canonical_header_key(k);
        match grouped.iter_mut().find(|(g, _)| *g == ck) {
            Some((_, vals)) => vals.push(v.clone()),
            None => grouped.push((ck, vec![v.clone()])),
        }
    }
    let fields = grouped
        .into_iter()
        .map(|(k, v)| (k, json::string_array(&v)))
        .collect();
    Response::text(200, json::object(fields))
}

fn exit(req: &Request) -> Response {
    let wait_s = req.form_value("wait");
    let timeout_s = req.form_value("timeout");
    let code_s = req.form_value("code");
    log!("GET /exit?code={code_s}&timeout={timeout_s}&wait={wait_s}");
    let timeout = match parse_go_duration(&timeout_s) {
        Ok(t) => t,
        Err(_) if timeout_s.is_empty() => 0,
        Err(_) => {
            return Response::text(
                200,
                format!(
                    "argument 'timeout' must be a valid golang duration or empty, got {}\n",
                    go_quote(&timeout_s)
                ),
            )
        }
    };
    let wait = match parse_go_duration(&wait_s) {
        Ok(t) => t,
        Err(_) if wait_s.is_empty() => 0,
        Err(_) => {
            return Response::text(
                200,
                format!(
                    "argument 'wait' must be a valid golang duration or empty, got {}\n",
                    go_quote(&wait_s)
                ),
            )
        }
    };
    let code: i32 = match code_s.parse() {
        Ok(c) => c,
        Err(_) if code_s.is_empty() => 0,
        Err(_) => {
            return Response::text(
                200,
                format!(
                    "argument 'code' must be an integer [0-127] or empty, got {}\n",
                    go_quote(&code_s)
                ),
            )
        }
    };
    log!(
        "Will begin shutdown in {}, allowing {} for connections to close, then will exit with {code}",
        go_duration_string(wait),
        go_duration_string(timeout)
    );
    if wait > 0 {
        std::thread::sleep(Duration::from_nanos(wait as u64));
    }
    if timeout == 0 {
        std::process::exit(code);
    }
    // Graceful: stop serving new requests, answer this one, wait (up to
    // the timeout) for the others in flight, then exit.
    http::SHUTTING_DOWN.store(true, Ordering::SeqCst);
    Response::new(200).then(move || {
        let limit = Duration::from_nanos(timeout.max(0) as u64);
        let start = Instant::now();
        let mut outcome = "<nil>";
        while http::IN_FLIGHT.load(Ordering::SeqCst) > 0 {
            if start.elapsed() >= limit {
                outcome = "context deadline exceeded";
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        log!("Graceful shutdown completed with: {outcome}");
        std::process::exit(code);
    })
}

fn redirect(req: &Request) -> Response {
    let location = req.form_value("location");
    let code_s = req.form_value("code");
    log!("{} /redirect?msg={location}&code={code_s}", req.method);
    let code = if code_s.is_empty() {
        302
    } else {
        match code_s.parse::<i64>() {
            Ok(c) => c,
            Err(_) => {
                return Response::text(
                    200,
                    format!(
                        "argument 'code' must be an integer or empty, got {}\n",
                        go_quote(&code_s)
                    ),
                )
            }
        }
    };
    match u16::try_from(code) {
        Ok(c) if (100..=999).contains(&c) => Response::redirect(req, &location, c),
        _ => Response::hangup(),
    }
}

/// Runs `/bin/sh -c cmd`, returning combined stdout+stderr and Go's error text.
fn run_shell(cmd: &str) -> (String, Option<String>) {
    let spawn_error = |e: &std::io::Error| format!("fork/exec /bin/sh: {}", util::go_errno(e));
    let (mut reader, writer) = match UnixStream::pair() {
        Ok(p) => p,
        Err(e) => return (String::new(), Some(spawn_error(&e))),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return (String::new(), Some(spawn_error(&e))),
    };
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(writer)))
        .stderr(Stdio::from(std::os::fd::OwnedFd::from(writer2)))
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (String::new(), Some(spawn_error(&e))),
    };
    let mut out = Vec::new();
    let _ = reader.read_to_end(&mut out);
    let output = String::from_utf8_lossy(&out).into_owned();
    let err = match child.wait() {
        Ok(st) => exit_error(st),
        Err(e) => Some(format!("wait: {}", util::go_errno(&e))),
    };
    (output, err)
}

/// Go's *exec.ExitError text for a non-successful status.
fn exit_error(st: std::process::ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    if st.success() {
        return None;
    }
    if let Some(code) = st.code() {
        return Some(format!("exit status {code}"));
    }
    let sig = st.signal().unwrap_or(0);
    let name = match sig {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        6 => "aborted",
        9 => "killed",
        11 => "segmentation fault",
        13 => "broken pipe",
        15 => "terminated",
        _ => "",
    };
    Some(if name.is_empty() {
        format!("signal: signal {sig}")
    } else {
        format!("signal: {name}")
    })
}

/// The /shell JSON: `output` if there was any, `error` if the command failed.
fn shell_json(output: &str, error: Option<&str>) -> String {
    let mut fields = Vec::new();
    if !output.is_empty() {
        fields.push(("output".to_string(), json::quote(output)));
    }
    if let Some(e) = error {
        fields.push(("error".to_string(), json::quote(e)));
    }
    json::object(fields)
}

fn shell(req: &Request) -> Response {
    let mut cmd = req.form_value("shellCommand");
    if cmd.is_empty() {
        cmd = req.form_value("cmd");
    }
    log!("GET /shell?cmd={cmd}");
    let (output, err) = run_shell(&cmd);
    let body = shell_json(&output, err.as_deref());
    log!("Output: {body}");
    Response::text(200, body)
}

/// The /dial JSON. Like upstream, `responses` is only included when the
/// *last* attempt returned a non-empty response.
pub fn dial_json(responses: &[String], errors: &[String], last_response: &str) -> String {
    let mut fields = Vec::new();
    if !last_response.is_empty() {
        fields.push(("responses".to_string(), json::string_array(responses)));
    }
    if !errors.is_empty() {
        fields.push(("errors".to_string(), json::string_array(errors)));
    }
    json::object(fields)
}

fn dial(req: &Request) -> Response {
    let host = req.query_get("host");
    let port = req.query_get("port");
    let request = req.query_get("request");
    let protocol = req.query_get("protocol");
    let tries_s = req.query_get("tries");
    log!("GET /dial?host={host}&protocol={protocol}&port={port}&request={request}&tries={tries_s}");
    let tries: i64 = if tries_s.is_empty() {
        1
    } else {
        match tries_s.parse() {
            Ok(t) => t,
            Err(_) => {
                return Response::error(
                    400,
                    &format!("tries parameter is invalid. {}", atoi_error(&tries_s)),
                )
            }
        }
    };
    if request.is_empty() {
        return Response::error(400, "request parameter not specified. <nil>");
    }
    let udp = match protocol.to_lowercase().as_str() {
        "" | "http" => false,
        "udp" => true,
        other => return Response::error(400, &format!("unsupported protocol. {other}")),
    };
    let addr = match util::resolve(&host, &port) {
        Ok(a) => a,
        Err(e) => return Response::error(400, &format!("host and/or port param are invalid. {e}")),
    };
    let mut responses = Vec::new();
    let mut errors = Vec::new();
    let mut last = String::new();
    for _ in 0..tries.max(0) {
        let result = if udp {
            dial_udp(&request, addr)
        } else {
            dial_http(&request, addr)
        };
        match result {
            Ok(r) => {
                last = r.clone();
                responses.push(r);
            }
            Err(e) => {
                last.clear();
                errors.push(e);
            }
        }
    }
    Response::text(200, dial_json(&responses, &errors, &last))
}

fn dial_http(request: &str, addr: SocketAddr) -> Result<String, String> {
    let url = format!("http://{addr}/{request}");
    http::get(addr, request, Duration::from_secs(5))
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .map_err(|e| format!("Get {}: {e}", go_quote(&url)))
}

fn dial_udp(request: &str, addr: SocketAddr) -> Result<String, String> {
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind)
        .and_then(|s| s.connect(addr).map(|_| s))
        .map_err(|e| {
            format!(
                "udp dial failed. err:dial udp {addr}: {}",
                util::go_errno(&e)
            )
        })?;
    let local = sock
        .local_addr()
        .map(|a| util::unmap(a).to_string())
        .unwrap_or_default();
    sock.send(request.as_bytes()).map_err(|e| {
        format!(
            "udp connection write failed. err:write udp {local}->{addr}: write: {}",
            util::go_errno(&e)
        )
    })?;
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 2048];
    match sock.recv(&mut buf) {
        Ok(0) => Err("reading from udp connection failed. err:'<nil>'".to_string()),
        Ok(n) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) => {
            let detail = match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    "i/o timeout".to_string()
                }
                _ => format!("read: {}", util::go_errno(&e)),
            };
            Err(format!(
                "reading from udp connection failed. err:'read udp {local}->{addr}: {detail}'"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_json_matches_upstream_shapes() {
        let ok = vec!["host-a".to_string(), "host-b".to_string()];
        assert_eq!(
            dial_json(&ok, &[], "host-b"),
            r#"{"responses":["host-a","host-b"]}"#
        );
        let errs = vec!["boom".to_string()];
        assert_eq!(dial_json(&[], &errs, ""), r#"{"errors":["boom"]}"#);
        // Last attempt failed: upstream drops the earlier responses.
        assert_eq!(dial_json(&ok, &errs, ""), r#"{"errors":["boom"]}"#);
        assert_eq!(
            dial_json(&ok, &errs, "host-b"),
            r#"{"errors":["boom"],"responses":["host-a","host-b"]}"#
        );
        assert_eq!(dial_json(&[], &[], ""), "{}");
    }

    #[test]
    fn shell_json_shapes() {
        assert_eq!(shell_json("hi\n", None), r#"{"output":"hi\n"}"#);
        assert_eq!(
            shell_json("oops\n", Some("exit status 1")),
            r#"{"error":"exit status 1","output":"oops\n"}"#
        );
        assert_eq!(
            shell_json("", Some("exit status 2")),
            r#"{"error":"exit status 2"}"#
        );
    }

    #[test]
    fn shell_runs_commands_with_combined_output() {
        let (out, err) = run_shell("echo out; echo err >&2; exit 3");
        assert_eq!(out, "out\nerr\n");
        assert_eq!(err.as_deref(), Some("exit status 3"));
        let (out, err) = run_shell("printf ok");
        assert_eq!((out.as_str(), err), ("ok", None));
    }

    #[test]
    fn udp_commands() {
        let c: SocketAddr = "10.0.0.9:4242".parse().unwrap();
        assert_eq!(
            udp_reply("echo Hello There\n", c).as_deref(),
            Some("hello there")
        );
        assert_eq!(udp_reply("clientip", c).as_deref(), Some("10.0.0.9:4242"));
        assert_eq!(udp_reply("HOSTNAME", c), Some(hostname()));
        assert_eq!(udp_reply("what", c), None);
    }

    #[test]
    fn udp_listen_addresses() {
        assert_eq!(parse_addresses("").unwrap(), vec![String::new()]);
        assert_eq!(
            parse_addresses("10.0.0.2,10.0.0.1,10.0.0.2").unwrap(),
            vec!["10.0.0.1".to_string(), "10.0.0.2".to_string()]
        );
        assert!(parse_addresses("nope").is_err());
    }
}
