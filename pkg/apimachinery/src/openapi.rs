//! openapi (in progress).
