//! rkube launcher.
