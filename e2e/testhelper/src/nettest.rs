//! `nettest`: the /read, /write, /status, /quit state server the PreStop conformance test uses.
//!
//! Peer discovery through the API server (upstream's `contactOthers`) is not
//! implemented: `Sent` stays empty and `StillContactingPeers` is false.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::flags::{self, value};
use crate::http::{self, Request, Response};
use crate::json::{self, Value};
use crate::log;
use crate::sys;
use crate::util::{self, hostname};

const ABOUT: &str = "Starts a tiny web server for checking networking connectivity";

const SPECS: &[flags::Spec] = &[
    value("port", "8080", "Port number to serve at."),
    value(
        "peers",
        "8",
        "Must find at least this many peers for the test to pass.",
    ),
    value(
        "service",
        "nettest",
        "Service to find other network test pods in.",
    ),
    value("namespace", "default", "Namespace of this pod."),
    value(
        "delay-shutdown",
        "0",
        "Number of seconds to delay shutdown when receiving SIGTERM.",
    ),
];

/// The server state, serialized verbatim by /read.
#[derive(Debug, Default)]
pub struct State {
    pub hostname: String,
    pub sent: Option<BTreeMap<String, i64>>,
    pub received: Option<BTreeMap<String, i64>>,
    pub errors: Option<Vec<String>>,
    pub log: Option<Vec<String>>,
    pub still_contacting_peers: bool,
}

fn indent_map(m: &Option<BTreeMap<String, i64>>) -> String {
    match m {
        None => "null".to_string(),
        Some(m) if m.is_empty() => "{}".to_string(),
        Some(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("\t\t{}: {v}", json::quote(k)))
                .collect();
            format!("{{\n{}\n\t}}", items.join(",\n"))
        }
    }
}

fn indent_list(l: &Option<Vec<String>>) -> String {
    match l {
        None => "null".to_string(),
        Some(l) if l.is_empty() => "[]".to_string(),
        Some(l) => {
            let items: Vec<String> = l
                .iter()
                .map(|s| format!("\t\t{}", json::quote(s)))
                .collect();
            format!("[\n{}\n\t]", items.join(",\n"))
        }
    }
}

impl State {
    /// Go's `json.MarshalIndent(state, "", "\t")`.
    pub fn to_json(&self) -> String {
        format!(
            "{{\n\t\"Hostname\": {},\n\t\"Sent\": {},\n\t\"Received\": {},\n\t\"Errors\": {},\n\t\"Log\": {},\n\t\"StillContactingPeers\": {}\n}}",
            json::quote(&self.hostname),
            indent_map(&self.sent),
            indent_map(&self.received),
            indent_list(&self.errors),
            indent_list(&self.log),
            self.still_contacting_peers
        )
    }

    fn append_err(&mut self, e: String) {
        self.errors.get_or_insert_with(Vec::new).push(e);
    }

    /// Records a /write body (`{"Source": "..."}`); returns the reply.
    pub fn write(&mut self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let mut source = String::new();
        match json::parse(&text) {
            Ok(v @ Value::Object(_)) => match v.field("Source") {
                Some(Value::String(s)) => source = s.clone(),
                Some(Value::Null) | None => {}
                Some(other) => self.append_err(format!(
                    "json: cannot unmarshal {} into Go struct field WritePost.Source of type string",
                    other.kind()
                )),
            },
            Ok(Value::Null) => {}
            Ok(other) => self.append_err(format!(
                "json: cannot unmarshal {} into Go value of type nettest.WritePost",
                other.kind()
            )),
            Err(e) => self.append_err(e),
        }
        if source.is_empty() {
            let e = format!("{}: Got request with no source", self.hostname);
            self.append_err(e);
        } else {
            *self
                .received
                .get_or_insert_with(BTreeMap::new)
                .entry(source)
                .or_insert(0) += 1;
        }
        format!("{{\"Hostname\":{}}}\n", json::quote(&self.hostname))
    }

    /// "pass", "running" or "fail".
    pub fn status(&self, peers: usize) -> &'static str {
        let sent = self.sent.as_ref().map_or(0, BTreeMap::len);
        let received = self.received.as_ref().map_or(0, BTreeMap::len);
        if sent >= peers && received >= peers {
            "pass"
        } else if self.still_contacting_peers {
            "running"
        } else {
            "fail"
        }
    }
}

/// Runs the subcommand.
pub fn run(argv: &[String]) -> i32 {
    let p = flags::parse_or_exit("nettest", ABOUT, SPECS, argv);
    let port = flags::int_or_exit(&p, "port");
    let peers = flags::int_or_exit(&p, "peers").max(0) as usize;
    let delay = flags::int_or_exit(&p, "delay-shutdown");
    if p.str("service").is_empty() {
        util::fatal("Must provide -service flag.");
    }
    if delay > 0 {
        sys::on_signal(move |sig| {
            if sig != sys::SIGTERM {
                std::process::exit(2);
            }
            log!("Sleeping {delay} seconds before exit ...");
            std::thread::sleep(Duration::from_secs(delay as u64));
            std::process::exit(0);
        });
    }
    let state = Arc::new(Mutex::new(State {
        hostname: hostname(),
        ..State::default()
    }));
    let Ok(port) = u16::try_from(port) else {
        util::fatal(&format!("invalid port {port}"));
    };
    let listener =
        http::listen_any(port).unwrap_or_else(|e| util::fatal(&format!("listen tcp :{port}: {e}")));
    let e = http::serve(
        listener,
        Arc::new(move |req: &Request| {
            let mut s = match state.lock() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            match req.path.as_str() {
                "/quit" => std::process::exit(0),
                "/read" => Response::text(200, s.to_json()),
                "/write" => Response::text(200, s.write(&req.body)),
                "/status" => Response::text(200, s.status(peers)),
                _ => Response::not_found(),
            }
        }),
    );
    util::fatal(&format!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prestop_write_is_counted_and_read_back() {
        let mut s = State {
            hostname: "server".into(),
            ..State::default()
        };
        assert_eq!(
            s.to_json(),
            "{\n\t\"Hostname\": \"server\",\n\t\"Sent\": null,\n\t\"Received\": null,\n\t\"Errors\": null,\n\t\"Log\": null,\n\t\"StillContactingPeers\": false\n}"
        );
        assert_eq!(
            s.write(br#"{"Source": "prestop"}"#),
            "{\"Hostname\":\"server\"}\n"
        );
        s.write(br#"{"source": "prestop"}"#);
        let v = json::parse(&s.to_json()).unwrap();
        assert_eq!(
            v.field("Received").and_then(|r| r.field("prestop")),
            Some(&Value::Number(2.0))
        );
        assert_eq!(v.field("Errors"), Some(&Value::Null));
    }

    #[test]
    fn bad_writes_record_errors() {
        let mut s = State {
            hostname: "h".into(),
            ..State::default()
        };
        s.write(b"");
        assert_eq!(
            s.errors.clone().unwrap(),
            vec![
                "EOF".to_string(),
                "h: Got request with no source".to_string()
            ]
        );
        assert!(s.to_json().contains("\t\"Errors\": [\n\t\t\"EOF\",\n"));
        assert_eq!(s.status(1), "fail");
    }
}
