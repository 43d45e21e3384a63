//! rkube-testhelper: a std-only stand-in for upstream Kubernetes' e2e `agnhost` binary.
//!
//! Usage: `rkube-testhelper <subcommand> [--flag=value ...]`, installed as
//! `/agnhost` in the conformance-lite test image.

mod connect;
mod crd_conversion;
mod dns;
mod entrypoint;
mod flags;
mod grpc_health;
mod http;
mod https;
mod json;
mod liveness;
mod logs_generator;
mod mounttest;
mod netexec;
mod nettest;
mod pause;
mod port_forward;
mod porter;
mod review;
mod serve_hostname;
mod sys;
mod util;
mod webhook;
mod webserver;

/// Subcommands and their one-line descriptions, for the usage text.
const COMMANDS: &[(&str, &str)] = &[
    ("connect", "Attempts a TCP or UDP connection and returns useful errors"),
    ("crd-conversion-webhook", "Starts HTTP server on port 443 for testing CustomResourceConversionWebhook"),
    ("dns-server-list", "Prints the host's DNS Server list"),
    ("dns-suffix", "Prints the host's DNS suffix list"),
    ("entrypoint-tester", "Prints the args it's passed and exits"),
    ("etc-hosts", "Prints the host's /etc/hosts file"),
    ("grpc-health-checking", "Starts a simple grpc health checking endpoint"),
    ("liveness", "Starts a server that is alive for 10 seconds"),
    ("logs-generator", "Outputs lines of logs to stdout uniformly"),
    ("mounttest", "Creates files with given permissions and outputs FS type, owner, mode, permissions, contents of files"),
    ("netexec", "Creates HTTP and UDP servers with various endpoints"),
    ("nettest", "Starts a tiny web server for checking networking connectivity"),
    ("pause", "Pauses the execution"),
    ("port-forward-tester", "Creates a TCP server that sends chunks of data"),
    ("porter", "Serves requested data on ports specified in ENV variables"),
    ("serve-hostname", "Serves the hostname"),
    ("test-webserver", "Starts a simple HTTP fileserver"),
    ("webhook", "Starts a HTTP server, useful for testing MutatingAdmissionWebhook and ValidatingAdmissionWebhook"),
];

/// Upstream subcommands this helper deliberately does not implement.
const UNSUPPORTED: &[&str] = &[
    "audit-proxy",
    "fake-gitserver",
    "guestbook",
    "inclusterclient",
    "net",
    "no-snat-test",
    "no-snat-test-proxy",
    "resource-consumer-controller",
    "test-service-account-issuer-discovery",
];

fn usage() -> String {
    let mut s = String::from(
        "rkube-testhelper: a stand-in for the Kubernetes e2e agnhost image binary\n\nUsage:\n  rkube-testhelper [command]\n\nAvailable Commands:\n",
    );
    for (name, about) in COMMANDS {
        s.push_str(&format!("  {name:<22} {about}\n"));
    }
    s.push_str("\nFlags:\n  -h, --help   help for rkube-testhelper\n\nUse \"rkube-testhelper [command] --help\" for more information about a command.\n");
    s
}

fn run(all: &[String]) -> i32 {
    let Some(command) = all.get(1) else {
        print!("{}", usage());
        return 0;
    };
    let rest = &all[2..];
    match command.as_str() {
        "-h" | "--help" | "help" => {
            print!("{}", usage());
            0
        }
        "connect" => connect::run(rest),
        "crd-conversion-webhook" => crd_conversion::run(rest),
        "dns-server-list" => dns::server_list(),
        "dns-suffix" => dns::suffix(),
        "entrypoint-tester" => entrypoint::run(all),
        "etc-hosts" => dns::etc_hosts(),
        "grpc-health-checking" => grpc_health::run(rest),
        "liveness" => liveness::run(rest),
        "logs-generator" => logs_generator::run(rest),
        "mounttest" => mounttest::run(rest),
        "netexec" => netexec::run(rest),
        "nettest" => nettest::run(rest),
        "pause" => pause::run(rest),
        "port-forward-tester" => port_forward::run(rest),
        "porter" => porter::run(rest),
        "serve-hostname" => serve_hostname::run(rest),
        "test-webserver" => webserver::run(rest),
        "webhook" => webhook::run(rest),
        other if UNSUPPORTED.contains(&other) => {
            eprintln!("{other} not supported by rkube-testhelper");
            1
        }
        other => {
            eprintln!("Error: unknown command {other:?} for \"rkube-testhelper\"");
            eprintln!("Run 'rkube-testhelper --help' for usage.");
            1
        }
    }
}

fn main() {
    util::started();
    sys::init_signals();
    let all: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::process::exit(run(&all));
}
