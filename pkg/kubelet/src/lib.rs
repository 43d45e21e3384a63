//! The rkube node agent (kubelet): registers the Node and heartbeats its
//! Lease, runs the pods bound to the node through CRI v1 (one code path for
//! every runtime backend) and reports their status, with volumes,
//! environment, probes and hooks, and an HTTPS server for logs, exec,
//! attach and port-forward.
//!
//! Layout: [`agent`] wires everything and watches pods; `context` holds the
//! state they share; [`pod`] is the per-pod state machine; [`node`] and
//! [`lease`] keep the Node fresh; [`cri_config`], [`status`], [`pull`] and
//! [`backoff`] are pure logic; [`gc`] removes what vanished pods left in the
//! runtime.

pub mod agent;
pub mod backoff;
mod context;
pub mod cri_config;
pub mod env;
pub mod events;
pub mod gc;
pub mod hooks;
pub mod lease;
pub mod node;
pub mod pod;
pub mod probes;
pub mod pull;
pub mod server;
pub mod status;
pub mod volumes;

pub use agent::{run, Error, NodeAgentConfig};
