//! Placeholder: tests being written.

use crate::Test;

/// The tests of this module.
pub fn tests() -> Vec<Test> {
    Vec::new()
}
