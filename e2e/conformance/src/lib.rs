//! rkube's conformance-lite suite: our own tests of the behaviours of
//! Kubernetes' conformance tests, each named after the upstream testname,
//! runnable against any cluster (nothing here knows about rkube).
//!
//! - [`inventory`]: the upstream list (names, codenames, buckets).
//! - [`suites`]: the tests, one module per area, each registered by name.
//! - [`ctx`]: what a test gets (client, namespace, images, helpers).
//! - [`runner`]: selection, parallel runs in fresh namespaces, timeouts.
//! - [`report`]: progress, summary tables, JUnit XML, the per-runtime table.
//! - [`images`]: the test images, built without a registry.

pub mod ctx;
pub mod images;
pub mod inventory;
pub mod report;
pub mod runner;
pub mod suites;

use futures::future::BoxFuture;

pub use ctx::Ctx;

/// A test body.
pub type TestFn = fn(Ctx) -> BoxFuture<'static, anyhow::Result<()>>;

/// One test of the suite, named exactly as the upstream testname (or, for
/// the few testnames upstream gives to several tests, the codename).
#[derive(Clone, Copy)]
pub struct Test {
    /// Upstream testname or codename (looked up in the inventory).
    pub name: &'static str,
    /// The body.
    pub run: TestFn,
}

/// Registers `async fn f(c: Ctx) -> Result<()>` under upstream testname `name`.
#[macro_export]
macro_rules! conformance {
    ($name:expr, $f:path) => {
        $crate::Test {
            name: $name,
            run: |c| Box::pin($f(c)),
        }
    };
}
