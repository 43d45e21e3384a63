//! rkube image (in progress).
