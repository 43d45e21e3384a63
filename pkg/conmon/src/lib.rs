//! Runs containers under conmon with an OCI runtime (runc or crun).
