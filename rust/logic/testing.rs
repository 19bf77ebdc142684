// SPDX-License-Identifier: GPL-2.0

//! Helpers for the host tests of the pure logic (not built into the module).

/// A small deterministic generator: tests must not depend on std's
/// randomness, and every run must see the same sequence.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    /// The next 31-bit value.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}
