//! On-disk OCI image store and registry puller of rkube's bundled runtime.
