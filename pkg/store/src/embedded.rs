//! Embedded durable store (in progress).
