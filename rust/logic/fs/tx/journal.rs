// SPDX-License-Identifier: GPL-2.0

//! The log between transactions: where the next one goes, which sequence
//! number it gets, and the journal header's tail, where recovery starts.
//!
//! A transaction is built before it asks for its place
//! ([`TxWriter::finish`] takes the sequence number last), so that several
//! can be built at once and only their placing and commit records stay in
//! order (Documentation/oxdax/concurrency.rst, stage 3): the journal is
//! behind its own lock, and the commit chain (`chain.rs`) orders what
//! follows the placing.
//!
//! The tail moves only when the log wraps and at a clean unmount. Before
//! it moves to the log's start, everything the log held must be home and
//! durable: recovery replays only the last transaction
//! ([`replay_last`](crate::logic::format::journal::replay_last)).

use crate::logic::fs::{Damage, Error, Media};

use super::commit::write_backup;
use crate::logic::format::{
    journal::{Finished, JournalHeader, ReplayEnd, TxWriter},
    superblock::Superblock,
    BLOCK_SIZE,
};

/// Where the next transaction goes in the log. The default is no log at
/// all (every reservation fails), until mount finds the volume's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Journal {
    /// Device byte where the log starts (after the header block).
    log_start: u64,
    /// Bytes of log.
    log_len: usize,
    /// Sequence number of the next transaction.
    next_seq: u64,
    /// Log offset of the next transaction.
    next_offset: usize,
    /// Recovery found the header torn and restarted the log: the header
    /// is written whole before the next transaction.
    torn_header: bool,
    /// The superblock as the last transaction that wrote it home left it
    /// (the one mount found, until one does): what a wrap of the log
    /// backs up. Not a transaction's own base, which is older than the
    /// last complete transaction once several are built at once. `None`
    /// without a log.
    published: Option<Superblock>,
}

impl Journal {
    /// The log of `log_len` bytes at device byte `log_start`, which
    /// recovery found ending at `end`, its header torn or not
    /// (`JournalHeader::recover`), on a volume whose superblock after
    /// recovery is `published`.
    pub(in crate::logic::fs) fn new(
        log_start: u64,
        log_len: usize,
        end: &ReplayEnd,
        torn_header: bool,
        published: &Superblock,
    ) -> Self {
        Self {
            log_start,
            log_len,
            next_seq: end.next_seq,
            next_offset: end.next_offset,
            torn_header,
            published: Some(*published),
        }
    }

    /// Where the next transaction goes (tests watch the log wrap).
    #[cfg(test)]
    pub(in crate::logic::fs) fn next_offset(&self) -> usize {
        self.next_offset
    }

    /// The sequence number the next transaction gets.
    #[cfg(test)]
    pub(in crate::logic::fs) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The place of the next transaction, of `len` bytes of log. If it
    /// does not fit before the log's end, the log wraps first: every
    /// earlier transaction must be complete, its home writes fenced
    /// (`completed`, the last one that is, must be the one before; if not,
    /// `None`: ask again when it is). Then the superblock as the last
    /// transaction that wrote it left it ([`publish`](Self::publish)) goes
    /// to the backup block, fenced, and the tail moves to the log's start. Once this returns a ticket, its
    /// sequence number is taken: a transaction that fails before its
    /// commit record must [`give_back`](Self::give_back) its ticket, or
    /// recovery would stop at the gap it leaves.
    pub(in crate::logic::fs) fn reserve<M: Media>(
        &mut self,
        media: &M,
        len: usize,
        completed: u64,
        spare: &mut [u8; BLOCK_SIZE],
    ) -> Result<Option<Ticket>, Error> {
        if len > self.log_len {
            return Err(Error::NoSpace);
        }
        if self.torn_header {
            // Recovery restarted the log (everything in it is home).
            self.move_tail(media, self.next_offset, spare)?;
        }
        if self.next_offset + len > self.log_len {
            if completed.wrapping_add(1) != self.next_seq {
                return Ok(None);
            }
            // A log has a superblock (the default journal, which has
            // none, has no room either).
            let published = self.published.as_ref().ok_or(Error::Invalid)?;
            write_backup(media, published, spare)?;
            media.fence();
            self.move_tail(media, 0, spare)?;
        }
        let ticket = Ticket {
            seq: self.next_seq,
            at: self.log_start + self.next_offset as u64,
            len,
        };
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_offset += len;
        Ok(Some(ticket))
    }

    /// A committed transaction wrote `sb` home, in its turn: a later
    /// wrap backs it up.
    pub(in crate::logic::fs) fn publish(&mut self, sb: &Superblock) {
        self.published = Some(*sb);
    }

    /// Makes `ticket`, whose commit record was not written, the place of
    /// the next transaction again, if it is the last one reserved (then
    /// `true`; otherwise a later one is placed after it, and recovery
    /// would stop at the gap: the caller must fail every later one).
    pub(in crate::logic::fs) fn give_back(&mut self, ticket: &Ticket) -> bool {
        if ticket.seq.wrapping_add(1) != self.next_seq {
            return false;
        }
        self.next_seq = ticket.seq;
        self.next_offset = ticket.at.saturating_sub(self.log_start) as usize;
        true
    }

    /// At a clean unmount, after the last transaction's home writes and
    /// the backup superblock were fenced: recovery has nothing to replay
    /// and starts where the next transaction goes. Fenced.
    pub(in crate::logic::fs) fn empty<M: Media>(
        &mut self,
        media: &M,
        spare: &mut [u8; BLOCK_SIZE],
    ) -> Result<(), Error> {
        // A log filled exactly to its end continues at its start.
        let offset = if self.next_offset < self.log_len {
            self.next_offset
        } else {
            0
        };
        self.move_tail(media, offset, spare)
    }

    /// Writes the header, fenced: recovery starts with the next
    /// transaction at log offset `offset`, where it goes from now on.
    ///
    /// In three fenced steps (`JournalHeader::CHECK_WORD`): a crash
    /// leaves the old header, the new one, or one recovery knows for torn.
    /// The last fence comes before anything is written at `offset`: there
    /// the log still holds the transactions the old tail leads to, and a
    /// crash that kept the old header and some of a new body over them
    /// would stop recovery's walk early (replaying one that a later one
    /// undid, or none, and numbering new transactions again from there,
    /// where stale ones with the same numbers lie).
    fn move_tail<M: Media>(
        &mut self,
        media: &M,
        offset: usize,
        spare: &mut [u8; BLOCK_SIZE],
    ) -> Result<(), Error> {
        JournalHeader {
            tail_seq: self.next_seq,
            tail_offset: offset as u64,
        }
        .encode(spare);
        // No log before a mount set this journal: nothing to write.
        let header_byte = self
            .log_start
            .checked_sub(BLOCK_SIZE as u64)
            .ok_or(Error::Invalid)?;
        let check = JournalHeader::CHECK_WORD;
        let (rest, check_word) = spare.split_at(check);
        let steps = [(check, &[0u8; 8][..]), (0, rest), (check, check_word)];
        for (offset, bytes) in steps {
            if !media.write(header_byte + offset as u64, bytes) {
                return Err(Error::Corrupt(header_byte >> 12, Damage::Address));
            }
            media.fence();
        }
        self.torn_header = false;
        // From here the header names this place: a transaction that fails
        // after it must not leave the next one behind it.
        self.next_offset = offset;
        Ok(())
    }
}

/// A transaction's place in the log: its sequence number and where its
/// bytes go.
#[derive(Debug)]
pub(in crate::logic::fs) struct Ticket {
    seq: u64,
    /// Device byte of its first byte.
    at: u64,
    /// Bytes reserved.
    len: usize,
}

impl Ticket {
    /// Its sequence number.
    pub(in crate::logic::fs) fn seq(&self) -> u64 {
        self.seq
    }

    /// Finishes `tx` as this ticket's transaction and makes its body
    /// durable (fenced: on this CPU, which is the one that wrote it).
    /// Bodies of different tickets go to different bytes: they may be
    /// written in any order, and at once.
    pub(in crate::logic::fs) fn write_body<'b, M: Media>(
        &self,
        media: &M,
        tx: TxWriter<'b>,
    ) -> Result<Finished<'b>, Error> {
        if tx.log_bytes() != self.len {
            return Err(Error::Invalid);
        }
        let finished = tx.finish(self.seq);
        let body = finished
            .log
            .get(finished.body.clone())
            .ok_or(Error::Invalid)?;
        if !media.write(self.at, body) {
            return Err(Error::Corrupt(self.at >> 12, Damage::Address));
        }
        media.fence();
        Ok(finished)
    }

    /// Writes the commit record of `finished` (its body durable), fenced:
    /// from here recovery applies the transaction. Commit records must be
    /// written in sequence order, each after every earlier transaction's
    /// home writes were fenced: recovery replays only the last one.
    pub(in crate::logic::fs) fn write_commit<M: Media>(
        &self,
        media: &M,
        finished: &Finished<'_>,
    ) -> Result<(), Error> {
        let commit = finished
            .log
            .get(finished.commit.clone())
            .ok_or(Error::Invalid)?;
        let at = self.at + (finished.commit.start - finished.body.start) as u64;
        if !media.write(at, commit) {
            return Err(Error::Corrupt(at >> 12, Damage::Address));
        }
        media.fence();
        Ok(())
    }
}
