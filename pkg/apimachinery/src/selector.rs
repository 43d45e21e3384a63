//! selector (in progress).
