//! `dns-suffix`, `dns-server-list`, `etc-hosts`: print the pod's resolver configuration.

const RESOLV_CONF: &str = "/etc/resolv.conf";
const ETC_HOSTS: &str = "/etc/hosts";

/// The words after the first line starting with `prefix`, split on single spaces.
pub fn first_line_words(data: &str, prefix: &str) -> Option<Vec<String>> {
    data.split('\n')
        .find(|l| l.starts_with(prefix))
        .map(|l| l.split(' ').skip(1).map(str::to_string).collect())
}

fn read(path: &str) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => panic_exit(&format!("open {path}: {}", crate::util::go_errno(&e))),
    }
}

/// Mimics a Go panic: message on stderr, exit 2.
fn panic_exit(msg: &str) -> ! {
    eprintln!("panic: {msg}");
    std::process::exit(2)
}

fn print_first(prefix: &str) -> i32 {
    match first_line_words(&read(RESOLV_CONF), prefix) {
        Some(words) => {
            println!("{}", words.join(","));
            0
        }
        None => panic_exit("Could not find DNS search list!"),
    }
}

/// `dns-suffix`: the search domains, comma-separated.
pub fn suffix() -> i32 {
    print_first("search")
}

/// `dns-server-list`: the first nameserver line's servers, comma-separated.
pub fn server_list() -> i32 {
    print_first("nameserver")
}

/// `etc-hosts`: the hosts file (plus a newline, as Go's Println adds).
pub fn etc_hosts() -> i32 {
    println!("{}", read(ETC_HOSTS));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resolv_conf_like_upstream() {
        let conf = "nameserver 10.96.0.10\nsearch ns.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";
        assert_eq!(
            first_line_words(conf, "search").unwrap().join(","),
            "ns.svc.cluster.local,svc.cluster.local,cluster.local"
        );
        assert_eq!(
            first_line_words(conf, "nameserver").unwrap().join(","),
            "10.96.0.10"
        );
        assert!(first_line_words("options x\n", "search").is_none());
    }
}
