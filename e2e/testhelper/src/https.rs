//! A small blocking HTTPS/1.1 server for the webhook subcommands: rustls
//! over std TcpStreams, a thread per connection, keep-alive, serving the
//! helper's [`http::Request`]/[`http::Response`] types. HTTP/1.1 only (no
//! ALPN), server certificate only (no client certificates asked), as
//! agnhost's webhook servers do.

use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::http::{self, Handler, Response};
use crate::util::{log_line, unmap};

/// The TLS settings of Go's `tls.LoadX509KeyPair(cert, key)`: the chain in
/// `cert_file` (server certificate first) and the private key in
/// `key_file` (PKCS#1, PKCS#8 or SEC1 PEM).
pub fn tls_config(cert_file: &str, key_file: &str) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("open {cert_file}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls: failed to parse certificate PEM data: {e}"))?;
    if certs.is_empty() {
        return Err("tls: failed to find any PEM data in certificate input".to_string());
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("tls: failed to find any PEM data in key input: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls: private key does not match public key: {e}"))?;
    Ok(Arc::new(config))
}

/// Accepts HTTPS connections on `port` forever (all addresses), one thread
/// each; returns only when accepting fails.
pub fn serve(port: u16, config: Arc<ServerConfig>, handler: Handler) -> io::Error {
    let listener = match http::listen_any(port) {
        Ok(l) => l,
        Err(e) => return e,
    };
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let (c, h) = (config.clone(), handler.clone());
                std::thread::spawn(move || handle_connection(stream, c, h));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return e,
        }
    }
}

type Tls = StreamOwned<ServerConnection, TcpStream>;

fn handle_connection(tcp: TcpStream, config: Arc<ServerConfig>, handler: Handler) {
    let Ok(peer) = tcp.peer_addr() else {
        return;
    };
    let remote = unmap(peer);
    let _ = tcp.set_read_timeout(Some(http::IDLE_TIMEOUT));
    let _ = tcp.set_nodelay(true);
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut stream = BufReader::new(StreamOwned::new(conn, tcp));
    loop {
        let handshaking = |s: &BufReader<Tls>| s.get_ref().conn.is_handshaking();
        let req = match http::read_request(&mut stream, remote) {
            Ok(Some(r)) => r,
            Ok(None) if handshaking(&stream) => {
                log_line(&format!("http: TLS handshake error from {remote}: EOF"));
                return;
            }
            Ok(None) => break,
            Err(e) if handshaking(&stream) => {
                log_line(&format!("http: TLS handshake error from {remote}: {e}"));
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let resp = Response::error(400, &format!("400 Bad Request: {e}"));
                let _ = http::write_response(stream.get_mut(), "GET", resp, false);
                break;
            }
            Err(_) => return,
        };
        let keep_alive = !req
            .header("connection")
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("close"));
        let resp = handler(&req);
        if resp.hangup {
            // Like a Go handler that panics: the connection just closes.
            let _ = stream.get_ref().sock.shutdown(std::net::Shutdown::Both);
            return;
        }
        if http::write_response(stream.get_mut(), &req.method, resp, keep_alive).is_err()
            || !keep_alive
        {
            break;
        }
    }
    let tls = stream.get_mut();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

#[cfg(test)]
pub(crate) mod tests {
    //! A server on a fixed self-signed test certificate (`testdata/`) and
    //! a TLS client that trusts anything, shared by the webhook tests.

    use super::*;
    use crate::http::Request;
    use std::io::Read;
    use std::time::Duration;

    /// Starts a server with `handler` on an ephemeral port using the test
    /// certificate; returns the port.
    pub(crate) fn start(handler: Handler) -> u16 {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("rkube-testhelper-https-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, TEST_CERT).unwrap();
        std::fs::write(&key, TEST_KEY).unwrap();
        let config = tls_config(cert.to_str().unwrap(), key.to_str().unwrap()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || loop {
            let Ok((s, _)) = listener.accept() else {
                return;
            };
            let (c, h) = (config.clone(), handler.clone());
            std::thread::spawn(move || handle_connection(s, c, h));
        });
        port
    }

    /// A TLS client that accepts any server certificate.
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// Sends `raw` (a whole HTTP request) over TLS to 127.0.0.1:`port` and
    /// returns everything the server answers until it closes.
    pub(crate) fn roundtrip(port: u16, raw: &str) -> String {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut tls = StreamOwned::new(conn, tcp);
        tls.write_all(raw.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A POST of `body` as JSON to `path`, closing the connection after.
    pub(crate) fn post_json(port: u16, path: &str, body: &str) -> String {
        roundtrip(
            port,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    #[test]
    fn serves_over_tls_with_keep_alive() {
        let port = start(Arc::new(|r: &Request| {
            Response::text(200, format!("{} {} {}", r.method, r.path, r.body.len()))
        }));
        let out = roundtrip(
            port,
            "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        );
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("GET /a 0"), "{out}");
        assert!(out.ends_with("POST /b 3"), "{out}");
    }

    #[test]
    fn chunked_bodies_are_read() {
        let port = start(Arc::new(|r: &Request| {
            Response::text(200, String::from_utf8_lossy(&r.body).into_owned())
        }));
        let out = roundtrip(
            port,
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        assert!(out.ends_with("\r\n\r\nabcde"), "{out}");
    }

    #[test]
    fn bad_files_are_reported() {
        let e = tls_config("/nonexistent/tls.crt", "/nonexistent/tls.key").unwrap_err();
        assert!(e.contains("/nonexistent/tls.crt"), "{e}");
    }

    /// A self-signed ECDSA P-256 certificate for `localhost` (test only).
    const TEST_CERT: &str = include_str!("testdata/tls.crt");
    /// Its PKCS#8 private key (test only).
    const TEST_KEY: &str = include_str!("testdata/tls.key");
}
