//! `liveness`: HTTP on :8080 whose /healthz is healthy for 10 seconds, then fails.

use std::sync::Arc;
use std::time::Instant;

use crate::flags;
use crate::http::{self, query_unescape, Request, Response};
use crate::util::{self, block_forever, go_duration_string, go_quote};

const ABOUT: &str = "Starts a server that is alive for 10 seconds";

/// The /healthz answer `elapsed` seconds after start.
pub fn healthz(elapsed: f64) -> Response {
    if elapsed > 10.0 {
        Response::text(500, format!("error: {elapsed}"))
    } else {
        Response::text(200, "ok")
    }
}

fn handle(req: &Request, started: Instant) -> Response {
    match req.path.as_str() {
        "/started" => Response::text(
            200,
            go_duration_string(started.elapsed().as_nanos() as i128),
        ),
        "/healthz" => healthz(started.elapsed().as_secs_f64()),
        "/redirect" => {
            let raw = req.query_get("loc");
            match query_unescape(&raw) {
                Ok(loc) => Response::redirect(req, &loc, 302),
                Err(_) => Response::error(400, &format!("invalid redirect: {}", go_quote(&raw))),
            }
        }
        _ => Response::not_found(),
    }
}

/// Runs the subcommand.
pub fn run(argv: &[String]) -> i32 {
    flags::parse_or_exit("liveness", ABOUT, &[], argv);
    let started = Instant::now();
    let listener =
        http::listen_any(8080).unwrap_or_else(|e| util::fatal(&format!("listen tcp :8080: {e}")));
    http::spawn_server(
        listener,
        Arc::new(move |req: &Request| handle(req, started)),
    );
    block_forever()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_then_failing() {
        let r = healthz(3.0);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let r = healthz(10.5);
        assert_eq!((r.status, r.body.as_slice()), (500, &b"error: 10.5"[..]));
    }
}
