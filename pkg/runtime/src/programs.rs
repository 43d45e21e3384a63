//! Host programs the containerd backend runs, and the check that they are
//! installed (looked up with [`rkube_host::which`]).

use rkube_host::which;

use crate::{Error, Result};

/// Programs the containerd backend needs, with the Debian package of each.
pub const CONTAINERD_PROGRAMS: &[(&str, &str)] = &[
    ("containerd", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
];

/// Fails, naming the packages to install, unless `found` finds every program.
pub fn check_programs(programs: &[(&str, &str)], found: impl Fn(&str) -> bool) -> Result<()> {
    let missing: Vec<(&str, &str)> = programs
        .iter()
        .copied()
        .filter(|(p, _)| !found(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, pkg)| *pkg).collect();
    packages.dedup();
    Err(Error::MissingBinaries {
        missing: missing
            .iter()
            .map(|(p, _)| *p)
            .collect::<Vec<_>>()
            .join(", "),
        packages: packages.join(" "),
    })
}

/// Checks that containerd, its runc shim, ctr and runc are installed.
pub fn check_host() -> Result<()> {
    check_programs(CONTAINERD_PROGRAMS, |p| which(p).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_debian_packages() {
        let err = check_programs(CONTAINERD_PROGRAMS, |_| false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("containerd, containerd-shim-runc-v2, ctr, runc"),
            "{err}"
        );
        assert!(err.contains("apt-get install containerd runc"), "{err}");
        let err = check_programs(CONTAINERD_PROGRAMS, |p| p != "runc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("apt-get install runc`"), "{err}");
        check_programs(CONTAINERD_PROGRAMS, |_| true).unwrap();
    }
}
