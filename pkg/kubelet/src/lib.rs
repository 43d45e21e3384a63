//! The rkube node agent (kubelet): node registration and lease, pod
//! lifecycle over CRI v1, volumes, environment, probes and hooks, and the
//! HTTPS server for logs, exec, attach and port-forward.

pub mod agent;
pub mod env;
pub mod hooks;
pub mod probes;
pub mod server;
pub mod volumes;

pub use agent::{run, Error, NodeAgentConfig};
