// SPDX-License-Identifier: GPL-2.0

//! The commit chain: transactions reserve their place in the log in any
//! order, but write their commit records and go home in sequence order,
//! each after every earlier one's home writes were fenced (invariants I1
//! to I4 of Documentation/oxdax/concurrency.rst, §3). Recovery replays
//! only the last committed transaction, which is sound only so.
//!
//! One transaction's steps ([`Commits::commit`]):
//!
//! 1. reserve a sequence number and a place, under the journal's lock
//!    (a wrap of the log waits for every earlier transaction, with the
//!    lock released);
//! 2. write the body and fence it, alongside other transactions' bodies;
//! 3. wait for its turn: the transaction before it completed;
//! 4. write the commit record and fence it; write home (and publish to
//!    the caches), fence the home writes, on this CPU (I4);
//! 5. complete: the next one's turn.
//!
//! A failure after a reservation that another transaction reserved past,
//! or after the commit record, fails the chain: every later transaction
//! fails with [`Error::Shutdown`] rather than wait for a turn that never
//! comes (a transaction waits inside the device's read section, which
//! device removal waits for), and the volume shuts down. One that fails
//! before its commit record while it is the last reserved gives its place
//! back instead, and the chain goes on.
//!
//! Lock order: the journal's lock, then the wait's own. Nothing waits
//! with the journal's lock held; nothing is held while waiting but the
//! wait's own.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::journal::Journal;
use crate::logic::{
    format::{
        journal::{Finished, TxWriter},
        superblock::Superblock,
        BLOCK_SIZE,
    },
    fs::{Error, Locked, Media, Waits},
};

/// The last transaction whose home writes are fenced, whether one failed
/// after its reservation, and how many gave their places back.
pub(in crate::logic::fs) struct Chain {
    completed: AtomicU64,
    failed: AtomicBool,
    given_back: AtomicU64,
}

impl Chain {
    /// A chain whose last complete transaction is `completed`.
    pub(in crate::logic::fs) fn new(completed: u64) -> Self {
        Self {
            completed: AtomicU64::new(completed),
            failed: AtomicBool::new(false),
            given_back: AtomicU64::new(0),
        }
    }

    fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// Whether a transaction failed where it could not give its place
    /// back: nothing commits any more, and the volume must shut down.
    pub(in crate::logic::fs) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn given_back(&self) -> u64 {
        self.given_back.load(Ordering::Acquire)
    }

    /// A transaction gave its place back: a wrap that waited for it may
    /// go on.
    fn gave_back(&self, waits: &dyn Waits) {
        self.given_back.fetch_add(1, Ordering::AcqRel);
        waits.wake_all();
    }

    /// Waits until `ready` or a failure of the chain (then
    /// [`Error::Shutdown`]).
    fn wait(&self, waits: &dyn Waits, ready: &dyn Fn() -> bool) -> Result<(), Error> {
        waits.wait_until(&|| self.failed() || ready());
        if self.failed() {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Transaction `seq` is complete; the next one's turn.
    fn complete(&self, seq: u64, waits: &dyn Waits) {
        self.completed.store(seq, Ordering::Release);
        waits.wake_all();
    }

    fn fail(&self, waits: &dyn Waits) {
        self.failed.store(true, Ordering::Release);
        waits.wake_all();
    }
}

/// The log and its commit order, as every transaction shares them.
#[derive(Clone, Copy)]
pub(in crate::logic::fs) struct Commits<'c> {
    pub(in crate::logic::fs) journal: &'c dyn Locked<Journal>,
    pub(in crate::logic::fs) chain: &'c Chain,
    pub(in crate::logic::fs) waits: &'c dyn Waits,
    /// Host tests' negative control: `false` leaves the home writes
    /// unfenced.
    #[cfg(test)]
    pub(in crate::logic::fs) fence_home: bool,
}

impl Commits<'_> {
    /// Makes `tx` durable in its turn (see the module's steps), then
    /// `home` writes its records home and publishes them; they are fenced
    /// before the next transaction's turn. `written` is the superblock the
    /// transaction writes home, if it writes it: the journal backs it up
    /// at a later wrap of the log. The transaction's sequence number.
    pub(in crate::logic::fs) fn commit<M: Media>(
        &self,
        media: &M,
        tx: TxWriter<'_>,
        written: Option<&Superblock>,
        spare: &mut [u8; BLOCK_SIZE],
        home: &mut dyn FnMut(&Finished<'_>) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let len = tx.log_bytes();
        let ticket = loop {
            if self.chain.failed() {
                return Err(Error::Shutdown);
            }
            let completed = self.chain.completed();
            let given_back = self.chain.given_back();
            let mut reserved = Ok(None);
            self.journal.with_locked(&mut |journal| {
                reserved = journal.reserve(media, len, completed, spare);
            });
            if let Some(ticket) = reserved? {
                break ticket;
            }
            // The log wraps: every earlier transaction first. Not under
            // the journal's lock, which one that fails needs to give its
            // place back (then the wrap may go on at once).
            let moved =
                || self.chain.completed() != completed || self.chain.given_back() != given_back;
            self.chain.wait(self.waits, &moved)?;
        };
        let seq = ticket.seq();
        let logged = ticket.write_body(media, tx).and_then(|finished| {
            let turn = || self.chain.completed().wrapping_add(1) == seq;
            self.chain.wait(self.waits, &turn)?;
            ticket.write_commit(media, &finished)?;
            Ok(finished)
        });
        let finished = match logged {
            Ok(finished) => finished,
            Err(e) => {
                let mut given_back = false;
                self.journal
                    .with_locked(&mut |journal| given_back = journal.give_back(&ticket));
                if given_back {
                    self.chain.gave_back(self.waits);
                } else {
                    self.chain.fail(self.waits);
                }
                return Err(e);
            }
        };
        // Committed: a failure from here leaves it to recovery, and no
        // later transaction may commit before its home writes are.
        if let Err(e) = home(&finished) {
            self.chain.fail(self.waits);
            return Err(e);
        }
        if let Some(sb) = written {
            // In turn, so the last one published is the last one written.
            self.journal.with_locked(&mut |journal| journal.publish(sb));
        }
        #[cfg(test)]
        let fence = self.fence_home;
        #[cfg(not(test))]
        let fence = true;
        if fence {
            media.fence();
        }
        self.chain.complete(seq, self.waits);
        Ok(seq)
    }
}
