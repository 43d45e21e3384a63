//! Admission control by the API server's extension points: webhook
//! configurations through the API ([`api`]), admission webhooks the API
//! server calls ([`admission`]), CRD conversion webhooks and field
//! selectors across converted versions ([`conversion`]), and
//! ValidatingAdmissionPolicies ([`vap`]). [`fixture`] deploys the agnhost
//! webhook servers and cleans up what the tests register cluster-wide.

use crate::Test;

mod admission;
mod api;
mod conversion;
mod fixture;
mod vap;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    let mut v = api::tests();
    v.extend(admission::tests());
    v.extend(conversion::tests());
    v.extend(vap::tests());
    v
}
