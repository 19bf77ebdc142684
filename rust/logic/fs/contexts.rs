// SPDX-License-Identifier: GPL-2.0

//! Which transaction contexts of a [`super::Scratch`]'s pool are in use.
//!
//! A context's own lock (a mutex in the module, a `std` one on the host) is
//! what makes its buffers one holder's. The claims only steer a checkout
//! to an idle context, so that a transaction waits for another only when
//! every context is taken. Stage 3 of Documentation/oxdax/concurrency.rst.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Contexts a pool may have: enough for the CPUs that can build
/// transactions side by side without the commit order becoming the limit,
/// at about 1.5 MiB each.
pub const MAX_TX_CONTEXTS: usize = 4;

/// The claim bits of a pool of contexts.
pub struct ContextClaims {
    /// Bit `i`: context `i` is claimed, its claimer holds or is about to
    /// take its lock.
    busy: AtomicU64,
    /// Where a checkout that finds every context claimed waits next.
    rotor: AtomicUsize,
    count: usize,
}

/// A context chosen by [`ContextClaims::claim`], to lock, use, then give
/// back with [`ContextClaims::release`].
#[derive(Debug)]
pub struct Claim {
    /// The context to lock.
    pub index: usize,
    /// Whether this checkout set the context's claim bit (which only it
    /// clears); `false` when every context was claimed and it waits
    /// for one anyway.
    claimed: bool,
}

impl ContextClaims {
    /// Claims for a pool of `count` contexts (1 to [`MAX_TX_CONTEXTS`]).
    pub fn new(count: usize) -> Self {
        Self {
            busy: AtomicU64::new(0),
            rotor: AtomicUsize::new(0),
            count: count.clamp(1, MAX_TX_CONTEXTS),
        }
    }

    /// How many contexts the pool has.
    pub fn count(&self) -> usize {
        self.count
    }

    /// An idle context, claimed; when every one is claimed, the next of
    /// them in turn, to wait for.
    pub fn claim(&self) -> Claim {
        // Wrapping forms, not to have a panic path: `count` is 1 to 4.
        let all = 1u64.wrapping_shl(self.count as u32).wrapping_sub(1);
        let mut busy = self.busy.load(Ordering::Relaxed);
        loop {
            let idle = !busy & all;
            if idle == 0 {
                let turn = self.rotor.fetch_add(1, Ordering::Relaxed);
                return Claim {
                    index: turn.checked_rem(self.count).unwrap_or(0),
                    claimed: false,
                };
            }
            let index = idle.trailing_zeros() as usize;
            match self.busy.compare_exchange_weak(
                busy,
                busy | 1u64.wrapping_shl(index as u32),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Claim {
                        index,
                        claimed: true,
                    }
                }
                Err(now) => busy = now,
            }
        }
    }

    /// Gives `claim` back, after its context's lock was released.
    pub fn release(&self, claim: &Claim) {
        if claim.claimed {
            self.busy
                .fetch_and(!1u64.wrapping_shl(claim.index as u32), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_take_idle_contexts_first_then_take_turns() {
        let claims = ContextClaims::new(3);
        let first: alloc::vec::Vec<Claim> = (0..3).map(|_| claims.claim()).collect();
        let indices: alloc::vec::Vec<usize> = first.iter().map(|c| c.index).collect();
        assert_eq!(indices, [0, 1, 2]);
        // Every context claimed: waiters spread over them.
        let waiting: alloc::vec::Vec<usize> = (0..4).map(|_| claims.claim().index).collect();
        assert_eq!(waiting, [0, 1, 2, 0]);
        // A waiter's claim gives nothing back; the claimer's does.
        claims.release(&Claim {
            index: 1,
            claimed: false,
        });
        assert!(!claims.claim().claimed);
        claims.release(&first[1]);
        let again = claims.claim();
        assert_eq!((again.index, again.claimed), (1, true));
    }

    #[test]
    fn pool_sizes_are_clamped() {
        assert_eq!(ContextClaims::new(0).count(), 1);
        assert_eq!(ContextClaims::new(64).count(), MAX_TX_CONTEXTS);
    }
}
