//! rkube bench.
