//! `porter`: serves each `SERVE_PORT_<n>`/`SERVE_TCP_PORT_<n>`/`SERVE_UDP_PORT_<n>` env value on port n.
//!
//! `SERVE_TLS_PORT_<n>` and `SERVE_SCTP_PORT_<n>` are logged and ignored:
//! TLS and SCTP are not supported by rkube-testhelper.

use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;

use crate::flags::{self, boolean};
use crate::http::{self, Request, Response};
use crate::json;
use crate::log;
use crate::util::block_forever;

const ABOUT: &str = "Serves requested data on ports specified in environment variables";

const SPECS: &[flags::Spec] = &[boolean(
    "json-response",
    false,
    "Responds to requests with a json response that includes the default value with the http.Request Method",
)];

/// What to serve for one environment variable.
#[derive(Debug, PartialEq, Eq)]
pub enum Serve {
    Tcp(String),
    Udp(String),
    Tls(String),
    Sctp(String),
}

/// Classifies `key` by its prefix, returning the port part.
pub fn classify(key: &str) -> Option<Serve> {
    type Make = fn(String) -> Serve;
    let table: [(&str, Make); 5] = [
        ("SERVE_PORT_", Serve::Tcp),
        ("SERVE_TCP_PORT_", Serve::Tcp),
        ("SERVE_UDP_PORT_", Serve::Udp),
        ("SERVE_SCTP_PORT_", Serve::Sctp),
        ("SERVE_TLS_PORT_", Serve::Tls),
    ];
    table
        .iter()
        .find_map(|(prefix, make)| key.strip_prefix(prefix).map(|p| make(p.to_string())))
}

/// The body for a request: the value, or `{"Method":…,"Body":…}` with --json-response.
pub fn body(method: &str, value: &str, as_json: bool) -> String {
    if as_json {
        format!(
            "{{\"Method\":{},\"Body\":{}}}",
            json::quote(method),
            json::quote(value)
        )
    } else {
        value.to_string()
    }
}

/// Runs the subcommand.
pub fn run(argv: &[String]) -> i32 {
    let p = flags::parse_or_exit("porter", ABOUT, SPECS, argv);
    let as_json = flags::bool_or_exit(&p, "json-response");
    for (key, value) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let value = value.to_string_lossy().into_owned();
        match classify(&key) {
            Some(Serve::Tcp(port)) => serve_tcp(port, value, as_json),
            Some(Serve::Udp(port)) => serve_udp(port, value),
            Some(Serve::Tls(port)) => {
                log!("tls server on port {port:?} failed: TLS is not supported by rkube-testhelper")
            }
            Some(Serve::Sctp(port)) => {
                log!("sctp server on port {port:?} failed: SCTP is not supported by rkube-testhelper")
            }
            None => {}
        }
    }
    block_forever()
}

fn serve_tcp(port: String, value: String, as_json: bool) {
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            log!("server on port {port:?} failed: listen tcp 0.0.0.0:{port}: {e}");
            return;
        }
    };
    http::spawn_server(
        listener,
        Arc::new(move |req: &Request| {
            let r = Response::text(200, body(&req.method, &value, as_json));
            if as_json {
                r.with_header("Content-Type", "application/json")
            } else {
                r
            }
        }),
    );
}

fn serve_udp(port: String, value: String) {
    let sock = match UdpSocket::bind(format!("0.0.0.0:{port}")) {
        Ok(s) => s,
        Err(e) => crate::util::fatal(&format!("UDP: failed to listen on port {port}: {e}")),
    };
    log!("Started UDP server on port {port}");
    std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        loop {
            match sock.recv_from(&mut buf) {
                Ok((_, peer)) => {
                    if let Err(e) = sock.send_to(value.as_bytes(), peer) {
                        log!("UDP: error from WriteTo(): {e}");
                    }
                }
                Err(e) => {
                    log!("UDP: error from ReadFrom(): {e}");
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_classify() {
        assert_eq!(classify("SERVE_PORT_9001"), Some(Serve::Tcp("9001".into())));
        assert_eq!(classify("SERVE_TCP_PORT_80"), Some(Serve::Tcp("80".into())));
        assert_eq!(classify("SERVE_UDP_PORT_53"), Some(Serve::Udp("53".into())));
        assert_eq!(
            classify("SERVE_TLS_PORT_443"),
            Some(Serve::Tls("443".into()))
        );
        assert_eq!(classify("HOME"), None);
    }

    #[test]
    fn bodies() {
        assert_eq!(body("GET", "foo", false), "foo");
        assert_eq!(
            body("POST", "a<b", true),
            r#"{"Method":"POST","Body":"a\u003cb"}"#
        );
    }
}
