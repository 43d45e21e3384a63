//! Authentication (x509 client certificates, ServiceAccount tokens) and
//! authorization (RBAC).
