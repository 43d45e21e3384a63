//! `pause`: prints "Paused" and sleeps until SIGINT (exit 1) or SIGTERM (exit 2).

use std::io::Write;
use std::time::Duration;

use crate::flags::{self, value};
use crate::sys;
use crate::util::block_forever;

const ABOUT: &str = "Pauses the execution";

const SPECS: &[flags::Spec] = &[value(
    "delay-shutdown",
    "0",
    "Number of seconds to delay shutdown when receiving SIGTERM/SIGINT.",
)];

/// The exit code upstream uses for a signal: 1 for SIGINT, 2 for SIGTERM.
pub fn exit_code(sig: i32) -> i32 {
    if sig == sys::SIGINT {
        1
    } else {
        2
    }
}

/// Runs the subcommand.
pub fn run(argv: &[String]) -> i32 {
    let p = flags::parse_or_exit("pause", ABOUT, SPECS, argv);
    let delay = flags::int_or_exit(&p, "delay-shutdown");
    println!("Paused");
    let _ = std::io::stdout().flush();
    sys::on_signal(move |sig| {
        let code = exit_code(sig);
        if delay > 0 {
            print!("Sleeping {delay} seconds before exit ...");
            let _ = std::io::stdout().flush();
            std::thread::sleep(Duration::from_secs(delay as u64));
        }
        println!("exiting {code}");
        let _ = std::io::stdout().flush();
        std::process::exit(code);
    });
    block_forever()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_exit_codes_match_upstream() {
        assert_eq!(exit_code(sys::SIGINT), 1);
        assert_eq!(exit_code(sys::SIGTERM), 2);
    }
}
