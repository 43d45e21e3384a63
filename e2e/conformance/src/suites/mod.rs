//! Every test of the suite, by area (the inventory's buckets).

use crate::Test;

pub mod api;
pub mod api2;
pub mod ctrl;
pub mod kubectl;
pub mod net;
pub mod pods;
pub mod serial;
pub mod services;
pub mod storage;
pub mod svc;
pub mod webhook;

/// All tests, in no particular order (the runner orders by the inventory).
pub fn all() -> Vec<Test> {
    let mut v = Vec::new();
    v.extend(api::tests());
    v.extend(api2::tests());
    v.extend(ctrl::tests());
    v.extend(kubectl::tests());
    v.extend(net::tests());
    v.extend(pods::tests());
    v.extend(serial::tests());
    v.extend(services::tests());
    v.extend(storage::tests());
    v.extend(svc::tests());
    v.extend(webhook::tests());
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_test_is_named_after_an_upstream_test_once() {
        let mut seen = std::collections::HashSet::new();
        for t in super::all() {
            assert!(
                crate::inventory::find(t.name).is_some(),
                "{:?} is not an upstream testname in inventory.tsv",
                t.name
            );
            assert!(seen.insert(t.name), "{:?} registered twice", t.name);
        }
    }
}
