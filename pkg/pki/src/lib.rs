//! rkube pki.
