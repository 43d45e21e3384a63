//! Progress output. `start` reports each pipeline step to a [`Reporter`]:
//! on a terminal that is [`Console`] (minikube-style lines with emojis and
//! durations); inside the daemon it is [`LogReporter`] (tracing to rkube.log).

use std::time::Duration;

use crate::timing::format_duration;

/// Receives progress of the start pipeline.
pub trait Reporter: Send {
    /// A step finished successfully after `took`.
    fn step_done(&mut self, icon: &str, title: &str, took: Duration);
    /// A plain message.
    fn info(&mut self, icon: &str, message: &str);
}

/// Prints progress to stdout.
#[derive(Debug, Default)]
pub struct Console;

impl Reporter for Console {
    fn step_done(&mut self, icon: &str, title: &str, took: Duration) {
        println!("{}", step_line(icon, title, took));
    }
    fn info(&mut self, icon: &str, message: &str) {
        println!("{icon}  {message}");
    }
}

/// Logs progress with tracing.
#[derive(Debug, Default)]
pub struct LogReporter;

impl Reporter for LogReporter {
    fn step_done(&mut self, _icon: &str, title: &str, took: Duration) {
        tracing::info!(took = %format_duration(took), "{title}");
    }
    fn info(&mut self, _icon: &str, message: &str) {
        tracing::info!("{message}");
    }
}

/// `"🔑  Certificates ... done (12ms)"`.
pub fn step_line(icon: &str, title: &str, took: Duration) -> String {
    format!("{icon}  {title} ... done ({})", format_duration(took))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_step_lines() {
        assert_eq!(
            step_line("🔑", "Certificates", Duration::from_millis(12)),
            "🔑  Certificates ... done (12ms)"
        );
    }
}
