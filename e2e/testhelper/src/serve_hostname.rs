//! `serve-hostname`: serves the hostname over HTTP, or raw over TCP and/or UDP.

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use crate::flags::{self, boolean, value};
use crate::http::{self, Request, Response};
use crate::log;
use crate::sys;
use crate::util::{self, block_forever, hostname};

const ABOUT: &str = "Serves the hostname through HTTP / TCP / UDP on the given port";

const SPECS: &[flags::Spec] = &[
    boolean("tcp", false, "Serve raw over TCP."),
    boolean("udp", false, "Serve raw over UDP."),
    boolean("http", true, "Serve HTTP."),
    boolean("close", false, "Close connection per each HTTP request."),
    value("port", "9376", "Port number."),
];

/// Runs the subcommand.
pub fn run(argv: &[String]) -> i32 {
    let p = flags::parse_or_exit("serve-hostname", ABOUT, SPECS, argv);
    let tcp = flags::bool_or_exit(&p, "tcp");
    let udp = flags::bool_or_exit(&p, "udp");
    let do_http = flags::bool_or_exit(&p, "http");
    let close = flags::bool_or_exit(&p, "close");
    let port = flags::int_or_exit(&p, "port");
    if do_http && (tcp || udp) {
        util::fatal("Can't server TCP/UDP mode and HTTP mode at the same time");
    }
    let Ok(port) = u16::try_from(port) else {
        util::fatal(&format!("invalid port {port}"));
    };
    let name = hostname();

    if tcp {
        let listener = TcpListener::bind(("::", port))
            .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
            .unwrap_or_else(|e| util::fatal(&format!("Error from net.Listen(): {e}")));
        let name = name.clone();
        std::thread::spawn(move || loop {
            match listener.accept() {
                Ok((mut conn, peer)) => {
                    log!("TCP request from {}", util::unmap(peer));
                    let _ = conn.write_all(name.as_bytes());
                }
                Err(e) => util::fatal(&format!("Error from Accept(): {e}")),
            }
        });
    }
    if udp {
        let sock = UdpSocket::bind(("::", port))
            .or_else(|_| UdpSocket::bind(("0.0.0.0", port)))
            .unwrap_or_else(|e| util::fatal(&format!("Error from ListenUDP(): {e}")));
        let name = name.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((_, peer)) => {
                        log!("UDP request from {}", util::unmap(peer));
                        let _ = sock.send_to(name.as_bytes(), peer);
                    }
                    Err(e) => util::fatal(&format!("Error from ReadFrom(): {e}")),
                }
            }
        });
    }
    if do_http {
        let listener = http::listen_any(port)
            .unwrap_or_else(|e| util::fatal(&format!("listen tcp :{port}: {e}")));
        let name = name.clone();
        http::spawn_server(
            listener,
            Arc::new(move |req: &Request| {
                log!("HTTP request from {}", req.remote);
                let r = Response::text(200, name.clone());
                if close {
                    r.with_header("Connection", "close")
                } else {
                    r
                }
            }),
        );
    }
    log!("Serving on port {port}.");
    sys::on_signal(|sig| {
        if sig != sys::SIGTERM {
            std::process::exit(2);
        }
        log!(
            "Shutting down after receiving signal: {}.",
            sys::signal_name(sig)
        );
        log!("Awaiting pod deletion.");
        std::thread::sleep(Duration::from_secs(60));
        std::process::exit(0);
    });
    block_forever()
}
