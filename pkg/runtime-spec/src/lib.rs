//! OCI runtime specs (config.json) for CRI pod sandboxes and containers.
