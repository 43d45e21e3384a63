//! rkube's bundled CRI runtime: a CRI-O-style CRI v1 server on conmon + runc/crun.
