//! rkube kubelet (in progress).
pub mod env;
pub mod hooks;
pub mod probes;
pub mod volumes;
pub mod server;
