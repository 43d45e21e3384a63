//! `port-forward-tester`: accepts one TCP connection, checks client data, sends chunks (env-configured).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::time::Duration;

use crate::flags;
use crate::util::{go_quote, join_host_port, resolve};

const ABOUT: &str = "Creates a TCP server that sends chunks of data (BIND_ADDRESS, BIND_PORT, EXPECTED_CLIENT_DATA, CHUNKS, CHUNK_SIZE, CHUNK_INTERVAL)";

fn env_int(name: &str) -> i64 {
    let s = std::env::var(name).unwrap_or_default();
    match s.parse() {
        Ok(v) => v,
        Err(_) => {
            println!(
                "Error parsing {name} {}: strconv.Atoi: parsing {}: invalid syntax",
                go_quote(&s),
                go_quote(&s)
            );
            std::process::exit(1)
        }
    }
}

/// Runs the subcommand.
pub fn run(argv: &[String]) -> i32 {
    flags::parse_or_exit("port-forward-tester", ABOUT, &[], argv);
    let mut bind_address = std::env::var("BIND_ADDRESS").unwrap_or_default();
    if bind_address.is_empty() {
        bind_address = "localhost".to_string();
    }
    let bind_port = std::env::var("BIND_PORT").unwrap_or_default();
    let addr = match resolve(&bind_address, &bind_port) {
        Ok(a) => a,
        Err(e) => {
            println!("Error resolving: {e}");
            return 1;
        }
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            println!(
                "Error listening: listen tcp {}: {e}",
                join_host_port(&bind_address, &bind_port)
            );
            return 1;
        }
    };
    let mut conn = match listener.accept() {
        Ok((c, _)) => c,
        Err(e) => {
            println!("Error accepting connection: {e}");
            return 1;
        }
    };
    println!("Accepted client connection");
    let expected = std::env::var("EXPECTED_CLIENT_DATA").unwrap_or_default();
    if !expected.is_empty() {
        let mut buf = vec![0u8; expected.len()];
        let (read, err) = match conn.read(&mut buf) {
            Ok(n) => (n, "<nil>".to_string()),
            Err(e) => (0, e.to_string()),
        };
        if read != expected.len() {
            println!(
                "Expected to read {} bytes from client, but got {read} instead. err={err}",
                expected.len()
            );
            return 2;
        }
        let got = String::from_utf8_lossy(&buf);
        if got != expected {
            println!(
                "Expect to read {}, but got {}. err={err}",
                go_quote(&expected),
                go_quote(&got)
            );
            return 3;
        }
        println!("Received expected client data");
    }
    let chunks = env_int("CHUNKS");
    let chunk_size = env_int("CHUNK_SIZE").max(0) as usize;
    let interval = env_int("CHUNK_INTERVAL").max(0) as u64;
    let data = vec![b'x'; chunk_size];
    for i in 0..chunks {
        if let Err(e) = conn.write_all(&data) {
            println!(
                "Expected to write {chunk_size} bytes from client, but wrote 0 instead. err={e}"
            );
            return 4;
        }
        if i + 1 < chunks {
            std::thread::sleep(Duration::from_millis(interval));
        }
    }
    println!("Shutting down connection");
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Write);
    std::thread::sleep(Duration::from_millis(500));
    drop(conn);
    println!("Done");
    0
}
