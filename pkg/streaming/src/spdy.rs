//! SPDY/3.1 framing as Kubernetes uses it for exec, attach and
//! port-forward (the server side of moby/spdystream): control frames
//! (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS,
//! WINDOW_UPDATE) and data frames; name/value header blocks compressed
//! with zlib and the SPDY/3 dictionary, one compression context per
//! direction for the whole connection.

use std::collections::BTreeMap;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The SPDY/3 header-compression dictionary (draft 3, section 2.6.10.1):
/// length-prefixed header words followed by common value text.
pub(crate) fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
}

pub(crate) const SYN_STREAM: u16 = 1;
pub(crate) const SYN_REPLY: u16 = 2;
pub(crate) const RST_STREAM: u16 = 3;
pub(crate) const PING: u16 = 6;
pub(crate) const GOAWAY: u16 = 7;
pub(crate) const FLAG_FIN: u8 = 1;

/// Header names and values (names lowercase).
pub(crate) type Headers = BTreeMap<String, String>;

/// A decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A new stream from the peer.
    SynStream {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    /// Stream data.
    Data { id: u32, fin: bool, data: Vec<u8> },
    /// The peer reset a stream.
    Rst { id: u32 },
    /// Ping to echo.
    Ping { id: u32 },
    /// The peer is going away.
    GoAway,
    /// Anything else (SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY).
    Other,
}

/// Compresses header blocks (one context per connection direction).
pub(crate) struct HeaderEncoder {
    z: Compress,
}

impl HeaderEncoder {
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&dictionary())
            .expect("zlib accepts the dictionary");
        Self { z }
    }

    /// Encodes and compresses a name/value block (sync flush).
    pub fn encode(&mut self, headers: &Headers) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before_in = self.z.total_in();
            let _ = self.z.compress_vec(input, &mut out, FlushCompress::Sync);
            let used = (self.z.total_in() - before_in) as usize;
            input = &input[used..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        out
    }
}

/// Decompresses header blocks (one context per connection direction).
pub(crate) struct HeaderDecoder {
    z: Decompress,
    dict: Vec<u8>,
}

impl HeaderDecoder {
    pub fn new() -> Self {
        Self {
            z: Decompress::new(true),
            dict: dictionary(),
        }
    }

    fn inflate(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(data.len() * 4 + 256);
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(4096);
            }
            let before_in = self.z.total_in();
            let before_out = self.z.total_out();
            let res = self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.z.total_in() - before_in) as usize;
            let produced = self.z.total_out() - before_out;
            input = &input[used..];
            match res {
                Ok(flate2::Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z.set_dictionary(&self.dict).map_err(|e| {
                        std::io::Error::other(format!("SPDY header dictionary: {e}"))
                    })?;
                    continue;
                }
                Err(e) => return Err(std::io::Error::other(format!("SPDY header block: {e}"))),
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if used == 0 && produced == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Decompresses and parses a name/value block.
    pub fn decode(&mut self, data: &[u8]) -> std::io::Result<Headers> {
        let raw = self.inflate(data)?;
        let bad = || std::io::Error::other("malformed SPDY header block");
        let mut p = &raw[..];
        let take_u32 = |p: &mut &[u8]| -> std::io::Result<u32> {
            if p.len() < 4 {
                return Err(bad());
            }
            let v = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
            *p = &p[4..];
            Ok(v)
        };
        let n = take_u32(&mut p)?;
        let mut h = Headers::new();
        for _ in 0..n {
            let kl = take_u32(&mut p)? as usize;
            if p.len() < kl {
                return Err(bad());
            }
            let k = String::from_utf8_lossy(&p[..kl]).to_ascii_lowercase();
            p = &p[kl..];
            let vl = take_u32(&mut p)? as usize;
            if p.len() < vl {
                return Err(bad());
            }
            let v = String::from_utf8_lossy(&p[..vl]).into_owned();
            p = &p[vl..];
            // Several values of one name are NUL-separated; keep the first.
            h.insert(k, v.split('\0').next().unwrap_or("").to_string());
        }
        Ok(h)
    }
}

/// Reads the next frame.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    dec: &mut HeaderDecoder,
) -> std::io::Result<Frame> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head).await?;
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > 16 << 20 {
        return Err(std::io::Error::other("SPDY frame too large"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let fin = flags & FLAG_FIN != 0;
    if head[0] & 0x80 == 0 {
        let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
        return Ok(Frame::Data {
            id,
            fin,
            data: body,
        });
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let word = |b: &[u8], i: usize| -> u32 {
        b.get(i..i + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .unwrap_or(0)
            & 0x7fff_ffff
    };
    Ok(match kind {
        SYN_STREAM => {
            let id = word(&body, 0);
            let headers = dec.decode(body.get(10..).unwrap_or(&[]))?;
            Frame::SynStream { id, fin, headers }
        }
        RST_STREAM => Frame::Rst { id: word(&body, 0) },
        PING => Frame::Ping {
            id: body
                .get(0..4)
                .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
                .unwrap_or(0),
        },
        GOAWAY => Frame::GoAway,
        SYN_REPLY | 8 => {
            // Keep the decompression context in step even if unused.
            let _ = dec.decode(body.get(4..).unwrap_or(&[]));
            Frame::Other
        }
        _ => Frame::Other,
    })
}

/// A control frame's bytes.
pub(crate) fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(0x8003u16).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    let len = payload.len() as u32;
    f.push(flags);
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// A data frame's bytes.
pub(crate) fn data(id: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    f.push(if fin { FLAG_FIN } else { 0 });
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// SYN_REPLY for a stream.
pub(crate) fn syn_reply(enc: &mut HeaderEncoder, id: u32, fin: bool) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend(enc.encode(&Headers::new()));
    control(SYN_REPLY, if fin { FLAG_FIN } else { 0 }, &p)
}

/// SYN_STREAM (used by tests acting as the client).
#[cfg(test)]
pub(crate) fn syn_stream(enc: &mut HeaderEncoder, id: u32, headers: &Headers) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend(enc.encode(headers));
    control(SYN_STREAM, 0, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_has_the_spec_length() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b"enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_across_frames() {
        let mut enc = HeaderEncoder::new();
        let mut dec = HeaderDecoder::new();
        for i in 0..5 {
            let mut h = Headers::new();
            h.insert("streamtype".into(), "stdout".into());
            h.insert("port".into(), format!("80{i}"));
            let block = enc.encode(&h);
            assert_eq!(dec.decode(&block).unwrap(), h);
        }
    }

    #[tokio::test]
    async fn frames_parse() {
        let mut enc = HeaderEncoder::new();
        let mut h = Headers::new();
        h.insert("streamtype".into(), "error".into());
        let mut bytes = syn_stream(&mut enc, 1, &h);
        bytes.extend(data(1, true, b"hi"));
        bytes.extend(control(PING, 0, &7u32.to_be_bytes()));
        let mut dec = HeaderDecoder::new();
        let mut r = &bytes[..];
        assert_eq!(
            read_frame(&mut r, &mut dec).await.unwrap(),
            Frame::SynStream {
                id: 1,
                fin: false,
                headers: h
            }
        );
        assert_eq!(
            read_frame(&mut r, &mut dec).await.unwrap(),
            Frame::Data {
                id: 1,
                fin: true,
                data: b"hi".to_vec()
            }
        );
        assert_eq!(
            read_frame(&mut r, &mut dec).await.unwrap(),
            Frame::Ping { id: 7 }
        );
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Two consecutive header blocks of one connection as the reference
    /// zlib (CPython's, level 9, preset dictionary, sync flush) writes
    /// them; the second only makes sense with the first's context.
    #[test]
    fn golden_header_blocks_from_reference_zlib() {
        let a = unhex("78f9e3c6a7c202253a48f95b044eea16061606409ab308125f99a074cc68004e892545a989b9d0c2863515141500000000ffff");
        let b = unhex("225333a8a44a04000000ffff");
        let mut dec = HeaderDecoder::new();
        let want = |t: &str| -> Headers {
            [("port", "8080"), ("requestid", "0"), ("streamtype", t)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(dec.decode(&a).unwrap(), want("error"));
        assert_eq!(dec.decode(&b).unwrap(), want("data"));
    }

    /// The zlib header of our first block names the SPDY/3 dictionary by
    /// its Adler-32 (0xe3c6a7c2, the id every SPDY/3 peer checks).
    #[test]
    fn encoder_announces_the_spdy3_dictionary() {
        assert_eq!(adler32(&dictionary()), 0xe3c6_a7c2);
        let block = HeaderEncoder::new().encode(&Headers::new());
        assert_eq!(block[0] & 0x0f, 8, "deflate");
        assert_ne!(block[1] & 0x20, 0, "FDICT set");
        assert_eq!(&block[2..6], &0xe3c6_a7c2u32.to_be_bytes());
        assert_eq!(u16::from_be_bytes([block[0], block[1]]) % 31, 0);
    }

    fn adler32(d: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in d {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }
}
