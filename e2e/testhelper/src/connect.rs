//! `connect host:port`: tries a TCP or UDP connection and prints a classified error (TIMEOUT, REFUSED, DNS, OTHER, UNKNOWN).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use crate::flags::{self, value};
use crate::util::{go_errno, parse_go_duration, resolve, split_host_port};

const ABOUT: &str =
    "Attempts a TCP or UDP connection and returns useful errors (SCTP is not supported)";

const SPECS: &[flags::Spec] = &[
    value("timeout", "0s", "Maximum time before returning an error"),
    value(
        "protocol",
        "tcp",
        "The protocol to use to perform the connection, can be tcp or udp",
    ),
    value("udp-data", "hostname", "The UDP payload send to the server"),
    value(
        "sctp-data",
        "hostname",
        "The SCTP payload send to the server (unsupported)",
    ),
];

fn fail(msg: &str) -> i32 {
    eprintln!("{msg}");
    1
}

/// Runs the subcommand.
pub fn run(argv: &[String]) -> i32 {
    let p = flags::parse_or_exit("connect", ABOUT, SPECS, argv);
    if p.args.len() != 1 {
        eprintln!("Error: accepts 1 arg(s), received {}", p.args.len());
        return 1;
    }
    let dest = &p.args[0];
    let timeout = match parse_go_duration(p.str("timeout")) {
        Ok(n) if n > 0 => Some(Duration::from_nanos(n as u64)),
        Ok(_) => None,
        Err(e) => {
            eprintln!("Error: invalid argument for \"--timeout\" flag: {e}");
            return 2;
        }
    };
    match p.str("protocol") {
        "" | "tcp" => connect_tcp(dest, timeout),
        "udp" => connect_udp(dest, timeout, p.str("udp-data")),
        other => fail(&format!("Unsupported protocol\n{other}")),
    }
}

fn connect_tcp(dest: &str, timeout: Option<Duration>) -> i32 {
    let (host, port) = match split_host_port(dest) {
        Ok(hp) => hp,
        Err(e) => return fail(&format!("UNKNOWN: {e}")),
    };
    let addr = match resolve(&host, &port) {
        Ok(a) => a,
        Err(e) => return fail(&format!("DNS: {e}")),
    };
    let result = match timeout {
        Some(t) => TcpStream::connect_timeout(&addr, t),
        None => TcpStream::connect(addr),
    };
    match result {
        Ok(_) => 0,
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            fail("TIMEOUT")
        }
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => fail("REFUSED"),
        Err(e) => fail(&format!(
            "OTHER: dial tcp {addr}: connect: {}",
            go_errno(&e)
        )),
    }
}

fn connect_udp(dest: &str, timeout: Option<Duration>, data: &str) -> i32 {
    let addr = match split_host_port(dest).and_then(|(h, p)| resolve(&h, &p)) {
        Ok(a) => a,
        Err(e) => return fail(&format!("DNS: {e}")),
    };
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = match UdpSocket::bind(bind).and_then(|s| s.connect(addr).map(|_| s)) {
        Ok(s) => s,
        Err(e) => return fail(&format!("OTHER: dial udp {addr}: {}", go_errno(&e))),
    };
    let _ = sock.set_read_timeout(timeout);
    let classify = |e: std::io::Error, op: &str| -> i32 {
        let local = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let text = format!("{op} udp {local}->{addr}: {}", go_errno(&e));
        if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) {
            fail(&format!("TIMEOUT: {op} udp {local}->{addr}: i/o timeout"))
        } else if e.kind() == ErrorKind::ConnectionRefused {
            fail(&format!("REFUSED: {text}"))
        } else {
            fail(&format!("UNKNOWN: {text}"))
        }
    };
    let mut conn = UdpConn(&sock);
    if let Err(e) = conn.write_all(format!("{data}\n").as_bytes()) {
        return classify(e, "write");
    }
    let mut buf = [0u8; 1024];
    match conn.read(&mut buf) {
        Ok(0) => fail("OTHER: No data received from the server. Cannot guarantee the server received the request."),
        Ok(_) => 0,
        Err(e) => classify(e, "read"),
    }
}

/// A connected UDP socket as Read/Write.
struct UdpConn<'a>(&'a UdpSocket);

impl Read for UdpConn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.recv(buf)
    }
}

impl Write for UdpConn<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
