//! `grpc-health-checking`: a minimal h2c gRPC server answering grpc.health.v1.Health/Check.
//!
//! Only what a kubelet gRPC probe needs: HTTP/2 with prior knowledge, no TLS,
//! unary calls. Request headers are not decoded (HPACK), so every call is
//! treated as Health/Check; the service name comes from the request message.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::flags::{self, value};
use crate::http::{self, Request, Response};
use crate::log;
use crate::util::{self, block_forever, go_duration_string};

const ABOUT: &str = "Starts a simple grpc health checking endpoint";

const SPECS: &[flags::Spec] = &[
    value("port", "5000", "Port number."),
    value(
        "http-port",
        "8080",
        "Port number for the /make-serving and /make-not-serving.",
    ),
    value(
        "delay-unhealthy-sec",
        "-1",
        "Number of seconds to delay before start reporting NOT_SERVING, negative value indicates never.",
    ),
    value("service", "", "Service name to register the health check for."),
];

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;

/// grpc.health.v1 serving status.
pub const SERVING: u8 = 1;
pub const NOT_SERVING: u8 = 2;

/// Forced state from the HTTP endpoints: 0 unset, 1 serving, 2 not serving.
static FORCED: AtomicU8 = AtomicU8::new(0);

struct Config {
    service: String,
    delay_unhealthy: i64,
    started: Instant,
    /// The start time as Go prints a time.Time, for the log.
    started_wall: String,
}

/// The Check result for `service`: Ok(status) or Err(NOT_FOUND message).
fn check(cfg: &Config, service: &str) -> Result<u8, &'static str> {
    if service != cfg.service {
        return Err("unknown service");
    }
    let forced_unhealthy = FORCED.load(Ordering::SeqCst) == 2;
    let expired = cfg.delay_unhealthy >= 0
        && cfg.started.elapsed().as_secs_f64() >= cfg.delay_unhealthy as f64;
    // Like upstream, /make-serving does not override an expired delay.
    if forced_unhealthy || expired {
        Ok(NOT_SERVING)
    } else {
        Ok(SERVING)
    }
}

/// The `service` field (1) of a HealthCheckRequest protobuf.
pub fn request_service(msg: &[u8]) -> String {
    let mut i = 0;
    let varint = |i: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *msg.get(*i)?;
            *i += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    let mut service = String::new();
    while i < msg.len() {
        let Some(key) = varint(&mut i) else { break };
        match key & 7 {
            0 => {
                if varint(&mut i).is_none() {
                    break;
                }
            }
            1 => i += 8,
            2 => {
                let Some(len) = varint(&mut i) else { break };
                let end = i.saturating_add(len as usize).min(msg.len());
                if key >> 3 == 1 {
                    service = String::from_utf8_lossy(&msg[i..end]).into_owned();
                }
                i = end;
            }
            5 => i += 4,
            _ => break,
        }
    }
    service
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK "literal header field without indexing, new name" (no Huffman).
fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
    fn string(block: &mut Vec<u8>, s: &str) {
        let len = s.len();
        if len < 127 {
            block.push(len as u8);
        } else {
            block.push(127);
            let mut rest = len - 127;
            while rest >= 128 {
                block.push((rest % 128) as u8 | 0x80);
                rest /= 128;
            }
            block.push(rest as u8);
        }
        block.extend_from_slice(s.as_bytes());
    }
    block.push(0);
    string(block, name);
    string(block, value);
}

/// The frames answering one call on `stream`.
pub fn response_frames(stream: u32, result: Result<u8, &str>) -> Vec<u8> {
    let mut head = vec![0x88]; // :status 200 (static table index 8)
    literal(&mut head, "content-type", "application/grpc");
    let mut out = Vec::new();
    match result {
        Ok(status) => {
            out.extend(frame(HEADERS, END_HEADERS, stream, &head));
            let msg = [0x08, status];
            let mut data = vec![0u8];
            data.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            data.extend_from_slice(&msg);
            out.extend(frame(DATA, 0, stream, &data));
            let mut trailers = Vec::new();
            literal(&mut trailers, "grpc-status", "0");
            out.extend(frame(HEADERS, END_HEADERS | END_STREAM, stream, &trailers));
        }
        Err(message) => {
            literal(&mut head, "grpc-status", "5");
            literal(&mut head, "grpc-message", message);
            out.extend(frame(HEADERS, END_HEADERS | END_STREAM, stream, &head));
        }
    }
    out
}

fn read_frame(r: &mut impl Read) -> io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut h = [0u8; 9];
    r.read_exact(&mut h)?;
    let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
    if len > 1 << 24 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    Ok((h[3], h[4], stream, payload))
}

fn serve_conn(mut conn: TcpStream, cfg: &Config) -> io::Result<()> {
    let mut preface = [0u8; 24];
    conn.read_exact(&mut preface)?;
    if preface != PREFACE {
        return Ok(());
    }
    conn.write_all(&frame(SETTINGS, 0, 0, &[]))?;
    let mut bodies: HashMap<u32, Vec<u8>> = HashMap::new();
    loop {
        let (kind, flags, stream, payload) = read_frame(&mut conn)?;
        match kind {
            SETTINGS if flags & ACK == 0 => conn.write_all(&frame(SETTINGS, ACK, 0, &[]))?,
            PING if flags & ACK == 0 => conn.write_all(&frame(PING, ACK, 0, &payload))?,
            GOAWAY => return Ok(()),
            RST_STREAM => {
                bodies.remove(&stream);
            }
            HEADERS | CONTINUATION => {
                bodies.entry(stream).or_default();
                if flags & END_STREAM != 0 {
                    let body = bodies.remove(&stream).unwrap_or_default();
                    answer(&mut conn, cfg, stream, &body)?;
                }
            }
            DATA => {
                let mut data = payload.as_slice();
                if flags & PADDED != 0 && !data.is_empty() {
                    let pad = usize::from(data[0]);
                    data = &data[1..data.len().saturating_sub(pad).max(1)];
                }
                bodies.entry(stream).or_default().extend_from_slice(data);
                if !payload.is_empty() {
                    // Give the flow-control window back (connection and stream).
                    let inc = (payload.len() as u32).to_be_bytes();
                    conn.write_all(&frame(8, 0, 0, &inc))?;
                }
                if flags & END_STREAM != 0 {
                    let body = bodies.remove(&stream).unwrap_or_default();
                    answer(&mut conn, cfg, stream, &body)?;
                }
            }
            _ => {}
        }
    }
}

fn answer(conn: &mut TcpStream, cfg: &Config, stream: u32, body: &[u8]) -> io::Result<()> {
    // gRPC message framing: flag byte, 4-byte length, protobuf.
    let msg = body.get(5..).unwrap_or(&[]);
    let service = request_service(msg);
    log!(
        "Serving the Check request for health check, started at {}",
        cfg.started_wall
    );
    conn.write_all(&response_frames(stream, check(cfg, &service)))
}

/// Runs the subcommand.
pub fn run(argv: &[String]) -> i32 {
    let p = flags::parse_or_exit("grpc-health-checking", ABOUT, SPECS, argv);
    let port = flags::int_or_exit(&p, "port");
    let http_port = flags::int_or_exit(&p, "http-port");
    let cfg = Arc::new(Config {
        service: p.str("service").to_string(),
        delay_unhealthy: flags::int_or_exit(&p, "delay-unhealthy-sec"),
        started: Instant::now(),
        started_wall: util::Civil::now().go_string(),
    });
    let (Ok(port), Ok(http_port)) = (u16::try_from(port), u16::try_from(http_port)) else {
        util::fatal("invalid port");
    };
    let started = cfg.started;
    let hl = http::listen_any(http_port)
        .unwrap_or_else(|e| util::fatal(&format!("listen tcp :{http_port}: {e}")));
    log!("Http server starting to listen on :{http_port}");
    http::spawn_server(
        hl,
        Arc::new(move |req: &Request| {
            let forced = match req.path.as_str() {
                "/make-not-serving" => 2,
                "/make-serving" => 1,
                _ => return Response::not_found(),
            };
            log!(
                "Mark as {}",
                if forced == 2 { "unhealthy" } else { "healthy" }
            );
            FORCED.store(forced, Ordering::SeqCst);
            Response::text(
                200,
                go_duration_string(started.elapsed().as_nanos() as i128),
            )
        }),
    );
    let listener = http::listen_any(port).unwrap_or_else(|e| {
        util::fatal(&format!("Error while starting the listening service {e}"))
    });
    log!("gRPC server starting to listen on :{port}");
    std::thread::spawn(move || loop {
        if let Ok((conn, _)) = listener.accept() {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let _ = serve_conn(conn, &cfg);
            });
        }
    });
    block_forever()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_health_check_requests() {
        assert_eq!(request_service(&[]), "");
        assert_eq!(request_service(&[0x0a, 3, b'f', b'o', b'o']), "foo");
    }

    #[test]
    fn encodes_responses() {
        let f = response_frames(1, Ok(SERVING));
        // HEADERS on stream 1 with END_HEADERS, then DATA with the message.
        assert_eq!(&f[3..9], &[HEADERS, END_HEADERS, 0, 0, 0, 1]);
        let data = b"\x00\x00\x00\x00\x02\x08\x01";
        assert!(f.windows(data.len()).any(|w| w == data));
        let nf = response_frames(3, Err("unknown service"));
        assert_eq!(nf[4], END_HEADERS | END_STREAM);
        assert!(nf.windows(15).any(|w| w == b"unknown service"));
    }

    #[test]
    fn delay_makes_it_unhealthy() {
        let cfg = Config {
            service: String::new(),
            delay_unhealthy: 0,
            started: Instant::now(),
            started_wall: String::new(),
        };
        assert_eq!(check(&cfg, ""), Ok(NOT_SERVING));
        assert_eq!(check(&cfg, "other"), Err("unknown service"));
        let cfg = Config {
            delay_unhealthy: -1,
            ..cfg
        };
        assert_eq!(check(&cfg, ""), Ok(SERVING));
    }
}
