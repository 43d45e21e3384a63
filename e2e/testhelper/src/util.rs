//! Shared helpers: hostname, Go-style log lines, time/duration formatting, quoting, randomness.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Writes one Go `log.Printf`-style line (`2006/01/02 15:04:05 msg`) to stderr.
#[macro_export]
macro_rules! log {
    ($($t:tt)*) => {
        $crate::util::log_line(&format!($($t)*))
    };
}

/// The process start, for Go's monotonic `m=+…` suffix.
pub fn started() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// The kernel hostname (what Go's os.Hostname returns on Linux).
pub fn hostname() -> String {
    for p in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(s) = std::fs::read_to_string(p) {
            let t = s.trim();
            if !t.is_empty() {
                return t.to_string();
            }
        }
    }
    "localhost".to_string()
}

/// Writes `msg` as a Go log line on stderr.
pub fn log_line(msg: &str) {
    let t = Civil::now();
    let mut line = format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02} {msg}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    if !line.ends_with('\n') {
        line.push('\n');
    }
    eprint!("{line}");
}

/// Logs `msg` and exits 1, like Go's log.Fatal.
pub fn fatal(msg: &str) -> ! {
    log_line(msg);
    std::process::exit(1)
}

/// A UTC calendar time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

impl Civil {
    /// The current UTC time.
    pub fn now() -> Civil {
        Civil::from_system(SystemTime::now())
    }

    /// `t` in UTC.
    pub fn from_system(t: SystemTime) -> Civil {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => (-(e.duration().as_secs() as i64) - 1, 0),
        };
        Civil::from_unix(secs, nanos)
    }

    /// Seconds since the epoch (plus nanoseconds) in UTC.
    pub fn from_unix(secs: i64, nanos: u32) -> Civil {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        // Days to civil date (proleptic Gregorian), after H. Hinnant.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            nanos,
            weekday: (days + 4).rem_euclid(7) as u32,
        }
    }

    /// RFC 7231 date (`Mon, 02 Jan 2006 15:04:05 GMT`).
    pub fn http_date(&self) -> String {
        const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            DAYS[self.weekday as usize],
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }

    /// Go's default time.Time formatting, without the monotonic part:
    /// `2006-01-02 15:04:05.999999999 +0000 UTC`.
    pub fn go_string(&self) -> String {
        let mut frac = String::new();
        if self.nanos != 0 {
            frac = format!(".{:09}", self.nanos)
                .trim_end_matches('0')
                .to_string();
        }
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{frac} +0000 UTC",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Go's `fmt.Sprint(time.Now())`, including the monotonic clock reading.
pub fn go_now() -> String {
    let mono = started().elapsed();
    format!(
        "{} m=+{}.{:09}",
        Civil::now().go_string(),
        mono.as_secs(),
        mono.subsec_nanos()
    )
}

/// Parses a Go duration (`300ms`, `1.5h`, `2h45m`, `0`) into signed nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(s));
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit: i128 = match &rest[..unit_end] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {}", go_quote(s))),
            u => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(u),
                    go_quote(s)
                ))
            }
        };
        rest = &rest[unit_end..];
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: i128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| invalid())?
        };
        let mut value = int.checked_mul(unit).ok_or_else(invalid)?;
        let mut scale = unit;
        for d in frac.bytes() {
            scale /= 10;
            value += i128::from(d - b'0') * scale;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
    }
    if total > i128::from(i64::MAX) {
        return Err(invalid());
    }
    Ok(if neg { -total } else { total })
}

/// Go's time.Duration.String for signed nanoseconds.
pub fn go_duration_string(nanos: i128) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    let frac = |v: u128, digits: u32| -> String {
        let p = 10u128.pow(digits);
        let f = v % p;
        if f == 0 {
            format!("{}", v / p)
        } else {
            let s = format!("{:0width$}", f, width = digits as usize);
            format!("{}.{}", v / p, s.trim_end_matches('0'))
        }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 6));
    }
    let secs = u / 1_000_000_000;
    let sub = u % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&frac(s * 1_000_000_000 + sub, 9));
    out.push('s');
    out
}

/// Go's strconv.Quote (what `%q` prints) for a string.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || c == '\u{fffd}' => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An OS error as Go prints a syscall.Errno (`no such file or directory`).
pub fn go_errno(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.rfind(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => s[..i].to_string(),
        _ => s,
    };
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => s,
    }
}

/// Go's net.JoinHostPort.
pub fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A remote address as Go prints it (IPv4-mapped IPv6 shown as IPv4).
pub fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// Resolves `host:port` like Go's net.Resolve{TCP,UDP}Addr (IPv4 preferred).
pub fn resolve(host: &str, port: &str) -> Result<SocketAddr, String> {
    let port_num: u16 = if port.is_empty() {
        0
    } else {
        port.parse()
            .map_err(|_| format!("lookup port {port}: unknown port"))?
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port_num));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port_num));
    }
    let addrs: Vec<SocketAddr> = (host, port_num)
        .to_socket_addrs()
        .map_err(|_| format!("lookup {host}: no such host"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("lookup {host}: no such host"))
}

/// Splits `host:port` (Go's net.SplitHostPort).
pub fn split_host_port(s: &str) -> Result<(String, String), String> {
    let missing = || format!("address {s}: missing port in address");
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("address {s}: missing ']' in address"))?;
        let port = after.strip_prefix(':').ok_or_else(missing)?;
        return Ok((host.to_string(), port.to_string()));
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(missing)?;
    if host.contains(':') {
        return Err(format!("address {s}: too many colons in address"));
    }
    Ok((host.to_string(), port.to_string()))
}

/// A small non-cryptographic random generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock and the process id.
    pub fn new() -> Rng {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng((t ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Parks the calling thread forever.
pub fn block_forever() -> ! {
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let c = Civil::from_unix(0, 0);
        assert_eq!((c.year, c.month, c.day, c.weekday), (1970, 1, 1, 4));
        let c = Civil::from_unix(1_709_164_800 + 3661, 5_000);
        assert_eq!((c.year, c.month, c.day), (2024, 2, 29));
        assert_eq!((c.hour, c.minute, c.second), (1, 1, 1));
        assert_eq!(c.http_date(), "Thu, 29 Feb 2024 01:01:01 GMT");
        assert_eq!(c.go_string(), "2024-02-29 01:01:01.000005 +0000 UTC");
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_go_duration("0").unwrap(), 0);
        assert_eq!(parse_go_duration("5s").unwrap(), 5_000_000_000);
        assert_eq!(parse_go_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_go_duration("100ms").unwrap(), 100_000_000);
        assert_eq!(parse_go_duration("-2us").unwrap(), -2_000);
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("3x").is_err());
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration_string(0), "0s");
        assert_eq!(go_duration_string(1_500), "1.5µs");
        assert_eq!(go_duration_string(2_000_000), "2ms");
        assert_eq!(go_duration_string(1_234_567_891), "1.234567891s");
        assert_eq!(go_duration_string(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration_string(123_500_000_000), "2m3.5s");
        assert_eq!(go_duration_string(-5_000_000_000), "-5s");
    }

    #[test]
    fn quoting_matches_strconv_quote() {
        assert_eq!(go_quote("/test-volume"), "\"/test-volume\"");
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(go_quote("\u{1}é"), "\"\\x01é\"");
    }

    #[test]
    fn errno_text_is_lowercase_without_suffix() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(go_errno(&e), "no such file or directory");
    }

    #[test]
    fn host_port_helpers() {
        assert_eq!(join_host_port("::1", "80"), "[::1]:80");
        assert_eq!(join_host_port("10.0.0.1", "80"), "10.0.0.1:80");
        assert_eq!(
            split_host_port("[::1]:80").unwrap(),
            ("::1".to_string(), "80".to_string())
        );
        assert!(split_host_port("nohost").is_err());
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:99".parse().unwrap();
        assert_eq!(unmap(mapped).to_string(), "10.1.2.3:99");
        assert_eq!(
            resolve("127.0.0.1", "8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert!(resolve("127.0.0.1", "http-ish").is_err());
    }
}
