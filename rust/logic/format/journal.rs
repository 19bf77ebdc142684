// SPDX-License-Identifier: GPL-2.0

//! The redo journal's on-media encoding and its recovery.
//!
//! The journal region is a header block followed by the log. A transaction
//! in the log is a header, byte-range records (`block, offset, bytes`), and
//! a commit record carrying the sequence number and a crc32c of everything
//! before it. The writer makes the header and records durable, then the
//! commit record: a transaction is applied at recovery iff its commit record
//! is valid, so a crash anywhere leaves each transaction all or nothing.
//!
//! Tearing: pmem guarantees that an aligned 8-byte store is persisted whole
//! or not at all, and everything in the log is 8-byte aligned. The commit
//! record is two such words, `magic | crc32c` and `sequence`; a crash can
//! persist either without the other, and both mixes are rejected (a stale
//! sequence word is from an older transaction, a stale first word does not
//! carry this transaction's checksum).
//!
//! Transactions follow each other in sequence; recovery starts at the
//! header's tail and stops at the first one that is not the next sequence
//! number with a valid commit, which also rejects transactions left over
//! from the log's previous lap. Records are absolute bytes, so replaying a
//! transaction that was already applied in place is harmless.

use core::ops::Range;

use super::{crc32c, get_u32, get_u64, put, BLOCK_SIZE};

/// `"OXJH"`: the journal header block.
pub const HEADER_MAGIC: u32 = u32::from_le_bytes(*b"OXJH");
/// `"OXTX"`: a transaction header.
pub const TX_MAGIC: u32 = u32::from_le_bytes(*b"OXTX");
/// `"OXTC"`: a commit record.
pub const COMMIT_MAGIC: u32 = u32::from_le_bytes(*b"OXTC");

/// Bytes of a transaction header: magic, record count, sequence, body length.
pub const TX_HEADER_BYTES: usize = 24;
/// Bytes of a record header: block, offset in block, length.
pub const RECORD_HEADER_BYTES: usize = 16;
/// Bytes of a commit record: magic, crc32c, sequence.
pub const COMMIT_BYTES: usize = 16;
/// Everything in the log is aligned to this.
pub const ALIGN: usize = 8;

fn aligned(n: usize) -> usize {
    n.next_multiple_of(ALIGN)
}

/// The journal header: where recovery starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalHeader {
    /// Sequence number of the first transaction to replay.
    pub tail_seq: u64,
    /// Byte offset in the log of that transaction.
    pub tail_offset: u64,
}

/// Why journal bytes are not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalError {
    /// The header block is damaged.
    BadHeader,
    /// The transaction does not fit in the log from its offset.
    NoSpace,
    /// A record does not lie inside one block.
    BadRecord,
}

impl JournalHeader {
    const OFF_MAGIC: usize = 0;
    const OFF_TAIL_SEQ: usize = 8;
    const OFF_TAIL_OFFSET: usize = 16;
    const OFF_CRC: usize = BLOCK_SIZE - 4;

    /// Serializes into the header block.
    pub fn encode(&self, block: &mut [u8; BLOCK_SIZE]) {
        block.fill(0);
        put(block, Self::OFF_MAGIC, &HEADER_MAGIC.to_le_bytes());
        put(block, Self::OFF_TAIL_SEQ, &self.tail_seq.to_le_bytes());
        put(
            block,
            Self::OFF_TAIL_OFFSET,
            &self.tail_offset.to_le_bytes(),
        );
        let crc = crc32c::checksum(&block[..Self::OFF_CRC]);
        put(block, Self::OFF_CRC, &crc.to_le_bytes());
    }

    /// Decodes and checks the header block against a log of `log_len` bytes.
    pub fn decode(block: &[u8], log_len: usize) -> Result<Self, JournalError> {
        let block = block.get(..BLOCK_SIZE).ok_or(JournalError::BadHeader)?;
        let crc = crc32c::checksum(block.get(..Self::OFF_CRC).ok_or(JournalError::BadHeader)?);
        if get_u32(block, Self::OFF_CRC) != Some(crc) {
            return Err(JournalError::BadHeader);
        }
        Self::fields(block, log_len)
    }

    /// The 8-byte word holding the checksum. A rewrite of the header in
    /// place zeroes it first, fenced, then writes the rest, fenced, then
    /// it, fenced: pmem keeps only aligned 8-byte stores whole, and this
    /// way a crash during the rewrite leaves either a whole header or one
    /// whose check word is zero ([`Self::recover`]).
    pub const CHECK_WORD: usize = BLOCK_SIZE - 8;

    /// Decodes the header block for recovery: the tail to walk the log
    /// from, and whether a crash had torn the header.
    ///
    /// A header whose check word is zero, its magic right and its other
    /// bytes zero as [`Self::encode`] leaves them, is one torn during a
    /// rewrite ([`Self::CHECK_WORD`]): its tail's words may be any mix of
    /// the old and the new tail's. The header is only rewritten once every
    /// transaction in the log is home and durable, and no byte of the log
    /// is written until the rewrite is fenced, so there is nothing to
    /// replay; and a walk from a mixed tail could start in the middle of
    /// stale transactions. The tail returned restarts the log at its
    /// start, past every sequence number the log can hold (a lap holds at
    /// most one transaction per [`TX_HEADER_BYTES`] + [`COMMIT_BYTES`]
    /// bytes from the old tail on; the new tail's number is at most that
    /// far past the old one), so that no stale transaction is ever taken
    /// for a new one. The journal writes it whole before its next
    /// transaction. Any other damage is refused: a check word that is
    /// neither zero nor right is not a rewrite's.
    pub fn recover(block: &[u8], log_len: usize) -> Result<(Self, bool), JournalError> {
        let block = block.get(..BLOCK_SIZE).ok_or(JournalError::BadHeader)?;
        if let Ok(header) = Self::decode(block, log_len) {
            return Ok((header, false));
        }
        let magic = Self::OFF_MAGIC..Self::OFF_MAGIC + 4;
        let fields = Self::OFF_TAIL_SEQ..Self::OFF_TAIL_OFFSET + 8;
        let torn = block
            .iter()
            .enumerate()
            .all(|(i, &b)| b == 0 || magic.contains(&i) || fields.contains(&i));
        if !torn {
            return Err(JournalError::BadHeader);
        }
        let found = Self::fields(block, log_len)?;
        let per_lap = (log_len / (TX_HEADER_BYTES + COMMIT_BYTES)) as u64;
        let restart = Self {
            tail_seq: found.tail_seq + per_lap + 1,
            tail_offset: 0,
        };
        if restart.tail_seq > u64::MAX / 2 {
            return Err(JournalError::BadHeader);
        }
        Ok((restart, true))
    }

    /// The header's magic and fields, checked against a log of `log_len`
    /// bytes (not its checksum).
    fn fields(block: &[u8], log_len: usize) -> Result<Self, JournalError> {
        if get_u32(block, Self::OFF_MAGIC) != Some(HEADER_MAGIC) {
            return Err(JournalError::BadHeader);
        }
        let header = Self {
            tail_seq: get_u64(block, Self::OFF_TAIL_SEQ).ok_or(JournalError::BadHeader)?,
            tail_offset: get_u64(block, Self::OFF_TAIL_OFFSET).ok_or(JournalError::BadHeader)?,
        };
        // Sequence numbers count transactions: half the range is more
        // than a filesystem writes, and a crafted one near the end must not
        // wrap (sequences are compared for equality only, and add wrapping).
        if header.tail_offset % ALIGN as u64 != 0
            || header.tail_offset >= log_len as u64
            || header.tail_seq > u64::MAX / 2
        {
            return Err(JournalError::BadHeader);
        }
        Ok(header)
    }
}

/// Builds one transaction in the log. Use: `record` for each change, then
/// `finish(seq)` once the transaction has its place in the sequence; make
/// the returned body durable, then the commit record. Until then nothing is
/// visible to recovery. The sequence number comes last so that a
/// transaction can be built before it knows its turn.
pub struct TxWriter<'a> {
    log: &'a mut [u8],
    start: usize,
    position: usize,
    records: u32,
}

/// A finished transaction ([`TxWriter::finish`]) in its log buffer.
#[derive(Clone, Debug)]
pub struct Finished<'a> {
    /// The buffer it was built in.
    pub log: &'a [u8],
    /// Header and records: durable before the commit record is written.
    pub body: Range<usize>,
    /// The commit record; the next transaction goes where it ends.
    pub commit: Range<usize>,
}

impl<'a> TxWriter<'a> {
    /// Starts a transaction at byte `offset` of `log`.
    pub fn begin(log: &'a mut [u8], offset: usize) -> Result<Self, JournalError> {
        if offset % ALIGN != 0 || offset.saturating_add(TX_HEADER_BYTES + COMMIT_BYTES) > log.len()
        {
            return Err(JournalError::NoSpace);
        }
        Ok(Self {
            log,
            start: offset,
            position: offset + TX_HEADER_BYTES,
            records: 0,
        })
    }

    /// Log bytes a transaction with records of these data lengths needs.
    pub fn size_for(data_lengths: impl Iterator<Item = usize>) -> usize {
        TX_HEADER_BYTES
            + data_lengths
                .map(|len| RECORD_HEADER_BYTES + aligned(len))
                .sum::<usize>()
            + COMMIT_BYTES
    }

    /// Logs that `data` goes to byte `offset` of `block`.
    pub fn record(&mut self, block: u64, offset: usize, data: &[u8]) -> Result<(), JournalError> {
        if data.is_empty()
            || offset
                .checked_add(data.len())
                .map_or(true, |end| end > BLOCK_SIZE)
        {
            return Err(JournalError::BadRecord);
        }
        let needed = RECORD_HEADER_BYTES + aligned(data.len());
        let end = self.position + needed;
        if end + COMMIT_BYTES > self.log.len() {
            return Err(JournalError::NoSpace);
        }
        let at = self.position;
        put(self.log, at, &block.to_le_bytes());
        put(self.log, at + 8, &(offset as u32).to_le_bytes());
        put(self.log, at + 12, &(data.len() as u32).to_le_bytes());
        put(self.log, at + RECORD_HEADER_BYTES, data);
        if let Some(pad) = self.log.get_mut(at + RECORD_HEADER_BYTES + data.len()..end) {
            pad.fill(0);
        }
        self.position = end;
        self.records += 1;
        Ok(())
    }

    /// Bytes the transaction takes in the log, commit record included.
    pub fn log_bytes(&self) -> usize {
        self.position - self.start + COMMIT_BYTES
    }

    /// Makes it transaction `seq`: writes the header and the commit
    /// record, whose checksum covers the header and the records.
    pub fn finish(self, seq: u64) -> Finished<'a> {
        let body = (self.position - self.start - TX_HEADER_BYTES) as u64;
        put(self.log, self.start, &TX_MAGIC.to_le_bytes());
        put(self.log, self.start + 4, &self.records.to_le_bytes());
        put(self.log, self.start + 8, &seq.to_le_bytes());
        put(self.log, self.start + 16, &body.to_le_bytes());
        let crc = crc32c::checksum(self.log.get(self.start..self.position).unwrap_or(&[]));
        let at = self.position;
        put(self.log, at, &COMMIT_MAGIC.to_le_bytes());
        put(self.log, at + 4, &crc.to_le_bytes());
        put(self.log, at + 8, &seq.to_le_bytes());
        Finished {
            log: self.log,
            body: self.start..at,
            commit: at..at + COMMIT_BYTES,
        }
    }
}

/// Where recovery stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayEnd {
    /// Sequence number the next transaction gets.
    pub next_seq: u64,
    /// Log offset the next transaction goes to.
    pub next_offset: usize,
    /// Transactions replayed.
    pub transactions: u64,
}

/// Reads the log: `read(offset, buf)` copies the `buf.len()` bytes at log
/// byte `offset` into `buf`, `false` if it cannot (outside the log, or
/// memory that failed). Recovery reads one transaction at a time into a
/// buffer of [`TX_LOG_BYTES`](crate::logic::fs::TX_LOG_BYTES) or more
/// instead of holding a reference into the whole log.
pub type LogReader<'a> = dyn Fn(usize, &mut [u8]) -> bool + 'a;

/// Called with each committed transaction a walk finds: its bytes, record
/// count, the records' range in the bytes, and its offset in the log.
type TxVisitor<'a> = dyn FnMut(&[u8], u32, Range<usize>, usize) + 'a;

/// The log being recovered: how to read it, how long it is, and a buffer
/// for one transaction (a transaction larger than the buffer was never
/// written).
pub struct Log<'r, 'b> {
    /// Reads log bytes.
    pub read: &'r LogReader<'r>,
    /// Bytes of log.
    pub len: usize,
    /// Room for the largest transaction.
    pub buffer: &'b mut [u8],
}

impl Log<'_, '_> {
    /// Reads the committed transaction at `offset` with sequence `seq` into
    /// the buffer: its record count, its records' range in the buffer and
    /// its end in the log; `None` if there is none (torn, stale, damaged).
    fn committed(&mut self, offset: usize, seq: u64) -> Option<(u32, Range<usize>, usize)> {
        let mut header = [0u8; TX_HEADER_BYTES];
        if offset.checked_add(TX_HEADER_BYTES)? > self.len || !(self.read)(offset, &mut header) {
            return None;
        }
        if get_u32(&header, 0)? != TX_MAGIC || get_u64(&header, 8)? != seq {
            return None;
        }
        let records = get_u32(&header, 4)?;
        let body = usize::try_from(get_u64(&header, 16)?).ok()?;
        let body_end = TX_HEADER_BYTES.checked_add(body)?;
        let total = body_end.checked_add(COMMIT_BYTES)?;
        if body % ALIGN != 0 || offset.checked_add(total)? > self.len || total > self.buffer.len() {
            return None;
        }
        let tx = self.buffer.get_mut(..total)?;
        if !(self.read)(offset, tx) {
            return None;
        }
        let crc = crc32c::checksum(tx.get(..body_end)?);
        if get_u32(tx, body_end)? != COMMIT_MAGIC
            || get_u32(tx, body_end + 4)? != crc
            || get_u64(tx, body_end + 8)? != seq
        {
            return None;
        }
        Some((records, TX_HEADER_BYTES..body_end, offset + total))
    }

    /// Walks the committed transactions from the header's tail, in order,
    /// calling `visit(transaction, records, body)` for each whose records
    /// are well formed (the transaction's bytes, its record count, and the
    /// records' range in them). A transaction whose records are malformed
    /// despite a valid commit (a bug, not a crash) ends the walk.
    fn walk(&mut self, header: &JournalHeader, visit: &mut TxVisitor<'_>) -> ReplayEnd {
        let mut end = ReplayEnd {
            next_seq: header.tail_seq,
            next_offset: usize::try_from(header.tail_offset).unwrap_or(usize::MAX),
            transactions: 0,
        };
        while let Some((records, body, next)) = self.committed(end.next_offset, end.next_seq) {
            let tx = &*self.buffer;
            if !for_each_record(tx, records, body.clone(), &mut |_, _, _| {}) {
                break;
            }
            visit(tx, records, body, end.next_offset);
            end.next_seq = end.next_seq.wrapping_add(1);
            end.next_offset = next;
            end.transactions += 1;
        }
        end
    }
}

/// Calls `visit(block, offset, data)` for each record of `body`; `false` if
/// the records do not exactly fill it or one does not lie inside a block.
fn for_each_record(
    log: &[u8],
    records: u32,
    body: Range<usize>,
    visit: &mut dyn FnMut(u64, usize, &[u8]),
) -> bool {
    let mut at = body.start;
    for _ in 0..records {
        let (Some(block), Some(offset), Some(len)) = (
            get_u64(log, at),
            get_u32(log, at + 8),
            get_u32(log, at + 12),
        ) else {
            return false;
        };
        let (offset, len) = (offset as usize, len as usize);
        let data_start = at + RECORD_HEADER_BYTES;
        let next = data_start + aligned(len);
        if len == 0 || offset + len > BLOCK_SIZE || next > body.end {
            return false;
        }
        match log.get(data_start..data_start + len) {
            Some(data) => visit(block, offset, data),
            None => return false,
        }
        at = next;
    }
    at == body.end
}

/// Calls `visit(block, offset, data)` for each record of the transaction
/// [`TxWriter::finish`] wrote at `body` of `log` (the writer's own copy,
/// before or after its commit): how a commit writes home exactly what it
/// logged. `false` if the bytes there are not a well-formed transaction
/// (records before the malformed one were visited).
pub fn for_each_logged(
    log: &[u8],
    body: Range<usize>,
    visit: &mut dyn FnMut(u64, usize, &[u8]),
) -> bool {
    let Some(records) = get_u32(log, body.start + 4) else {
        return false;
    };
    if get_u32(log, body.start) != Some(TX_MAGIC) || body.end > log.len() {
        return false;
    }
    for_each_record(log, records, body.start + TX_HEADER_BYTES..body.end, visit)
}

/// Replays every committed transaction from the header's tail, in order,
/// calling `apply(block, offset, data)` for each record.
pub fn replay(
    log: &mut Log<'_, '_>,
    header: &JournalHeader,
    apply: &mut dyn FnMut(u64, usize, &[u8]),
) -> ReplayEnd {
    log.walk(header, &mut |tx, records, body, _| {
        for_each_record(tx, records, body, apply);
    })
}

/// Finds the end of the log like [`replay`] but applies only the last
/// committed transaction.
///
/// That is all recovery needs, and replaying more would be wrong: a
/// transaction's home writes are made durable by the next transaction's
/// first fence, so only the last one can be incomplete; and an older
/// transaction may have written a metadata block that a later one freed
/// and that now holds file data, written directly and never journaled —
/// replaying the old record would overwrite that data (what jbd2's revoke
/// records prevent; oxdax avoids the case instead).
pub fn replay_last(
    log: &mut Log<'_, '_>,
    header: &JournalHeader,
    apply: &mut dyn FnMut(u64, usize, &[u8]),
) -> ReplayEnd {
    let mut last = None;
    let end = log.walk(header, &mut |_, _, _, offset| last = Some(offset));
    if let Some(offset) = last {
        // The walk read it and checked it; the buffer has held others since.
        if let Some((records, body, _)) = log.committed(offset, end.next_seq.wrapping_sub(1)) {
            for_each_record(log.buffer, records, body, apply);
        }
    }
    end
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;
    use crate::logic::testing::Lcg;
    use alloc::{vec, vec::Vec};

    const LOG: usize = 64 * 1024;
    const DEVICE_BLOCKS: u64 = 16;

    type Change = (u64, usize, Vec<u8>);

    fn random_tx(rng: &mut Lcg) -> Vec<Change> {
        (0..1 + rng.next() % 5)
            .map(|_| {
                let len = 1 + (rng.next() % 300) as usize;
                let offset = (rng.next() as usize) % (BLOCK_SIZE - len + 1);
                let data = (0..len).map(|_| rng.next() as u8).collect();
                (rng.next() % DEVICE_BLOCKS, offset, data)
            })
            .collect()
    }

    fn write_tx(
        log: &mut [u8],
        offset: usize,
        seq: u64,
        changes: &[Change],
    ) -> (Range<usize>, Range<usize>, usize) {
        let mut tx = TxWriter::begin(log, offset).unwrap();
        for (block, at, data) in changes {
            tx.record(*block, *at, data).unwrap();
        }
        let len = tx.log_bytes();
        let Finished { body, commit, .. } = tx.finish(seq);
        let next = commit.end;
        assert_eq!(next - offset, len);
        assert_eq!(
            next - offset,
            TxWriter::size_for(changes.iter().map(|c| c.2.len()))
        );
        (body, commit, next)
    }

    fn apply(device: &mut [u8], changes: &[Change]) {
        for (block, at, data) in changes {
            let start = *block as usize * BLOCK_SIZE + at;
            device[start..start + data.len()].copy_from_slice(data);
        }
    }

    fn replayed(log: &[u8], header: &JournalHeader) -> (Vec<u8>, ReplayEnd) {
        let mut device = vec![0u8; DEVICE_BLOCKS as usize * BLOCK_SIZE];
        let read = |offset: usize, buf: &mut [u8]| match log.get(offset..offset + buf.len()) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                true
            }
            None => false,
        };
        let mut buffer = vec![0u8; LOG];
        let mut log = Log {
            read: &read,
            len: log.len(),
            buffer: &mut buffer,
        };
        let end = replay(&mut log, header, &mut |block, at, data| {
            let start = block as usize * BLOCK_SIZE + at;
            device[start..start + data.len()].copy_from_slice(data);
        });
        (device, end)
    }

    #[test]
    fn a_writer_reads_back_what_it_logged() {
        let mut rng = Lcg(11);
        let mut log = vec![0u8; LOG];
        let mut offset = 0;
        for seq in 1..50 {
            let changes = random_tx(&mut rng);
            let (body, _, next) = write_tx(&mut log, offset, seq, &changes);
            let mut seen: Vec<Change> = Vec::new();
            assert!(for_each_logged(
                &log,
                body.clone(),
                &mut |block, at, data| { seen.push((block, at, data.to_vec())) }
            ));
            assert_eq!(seen, changes, "transaction {seq}");
            // Not a transaction there: refused, nothing visited.
            let mut visited = false;
            assert!(!for_each_logged(
                &log,
                body.start + ALIGN..body.end,
                &mut |_, _, _| { visited = true }
            ));
            assert!(!visited);
            offset = next;
        }
    }

    #[test]
    fn header_round_trip_and_damage() {
        let header = JournalHeader {
            tail_seq: 77,
            tail_offset: 4096,
        };
        let mut block = [0u8; BLOCK_SIZE];
        header.encode(&mut block);
        assert_eq!(JournalHeader::decode(&block, LOG), Ok(header));
        assert_eq!(
            JournalHeader::decode(&block, 4096),
            Err(JournalError::BadHeader)
        );
        for bit in (0..BLOCK_SIZE * 8).step_by(13) {
            let mut bad = block;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                JournalHeader::decode(&bad, LOG),
                Err(JournalError::BadHeader)
            );
        }
    }

    #[test]
    fn replays_committed_transactions_in_order() {
        let mut rng = Lcg(3);
        let mut log = vec![0u8; LOG];
        let mut model = vec![0u8; DEVICE_BLOCKS as usize * BLOCK_SIZE];
        let mut offset = 0;
        for seq in 10..40 {
            let changes = random_tx(&mut rng);
            offset = write_tx(&mut log, offset, seq, &changes).2;
            apply(&mut model, &changes);
        }
        let (device, end) = replayed(
            &log,
            &JournalHeader {
                tail_seq: 10,
                tail_offset: 0,
            },
        );
        assert_eq!(
            end,
            ReplayEnd {
                next_seq: 40,
                next_offset: offset,
                transactions: 30
            }
        );
        assert!(device == model);
    }

    #[test]
    fn a_crash_anywhere_applies_a_prefix_of_whole_transactions() {
        let mut rng = Lcg(11);
        let header = JournalHeader {
            tail_seq: 1,
            tail_offset: 0,
        };
        for round in 0..4 {
            let mut log = vec![0u8; LOG];
            // A previous lap's leftovers must not be replayed either.
            for (i, byte) in log.iter_mut().enumerate() {
                *byte = if round % 2 == 0 {
                    0
                } else {
                    (i * 7 + round) as u8
                };
            }
            let first: Vec<Change> = random_tx(&mut rng);
            let last: Vec<Change> = random_tx(&mut rng);
            let (_, _, offset) = write_tx(&mut log, 0, 1, &first);
            let before = log.clone();
            let (body, commit, _) = write_tx(&mut log, offset, 2, &last);
            let mut with_first = vec![0u8; DEVICE_BLOCKS as usize * BLOCK_SIZE];
            apply(&mut with_first, &first);
            let mut with_both = with_first.clone();
            apply(&mut with_both, &last);
            // Crash after the first `cut` bytes of the second transaction
            // reached the media, body first (the writer fences before the
            // commit), in 8-byte words (pmem's power-fail atomicity).
            for cut in (body.start..=commit.end).step_by(ALIGN) {
                let mut crashed = before.clone();
                crashed[body.start..cut].copy_from_slice(&log[body.start..cut]);
                let (device, end) = replayed(&crashed, &header);
                if cut == commit.end {
                    assert!(device == with_both);
                    assert_eq!(end.transactions, 2);
                } else {
                    assert!(
                        device == with_first,
                        "cut at {} applied a torn transaction",
                        cut
                    );
                    assert_eq!(end.transactions, 1);
                }
            }
            // The commit's two words may also persist in the other order.
            let mut crashed = log.clone();
            crashed[commit.start..commit.start + 8]
                .copy_from_slice(&before[commit.start..commit.start + 8]);
            assert!(replayed(&crashed, &header).0 == with_first);
        }
    }

    #[test]
    fn damage_stops_replay_before_the_damaged_transaction() {
        let mut rng = Lcg(5);
        let mut log = vec![0u8; LOG];
        let (_, _, second) = write_tx(&mut log, 0, 1, &random_tx(&mut rng));
        let (body, commit, _) = write_tx(&mut log, second, 2, &random_tx(&mut rng));
        let header = JournalHeader {
            tail_seq: 1,
            tail_offset: 0,
        };
        for byte in body.start..commit.end {
            for bit in 0..8 {
                let mut bad = log.clone();
                bad[byte] ^= 1 << bit;
                assert_eq!(
                    replayed(&bad, &header).1.transactions,
                    1,
                    "byte {} bit {}",
                    byte,
                    bit
                );
            }
        }
        // Starting at a transaction with another sequence number finds none.
        assert_eq!(
            replayed(
                &log,
                &JournalHeader {
                    tail_seq: 5,
                    tail_offset: 0
                }
            )
            .1
            .transactions,
            0
        );
    }

    /// The bytes a transaction takes in the log, as format.rst describes
    /// them, built by hand: the writer, which learns the sequence number
    /// last, must write exactly these.
    #[test]
    fn a_finished_transaction_has_the_documented_bytes() {
        let changes: [Change; 3] = [
            (3, 100, vec![0xaa; 13]),
            (9, 0, vec![0x55; 8]),
            (1, 4090, vec![1, 2, 3, 4, 5, 6]),
        ];
        let seq: u64 = 0x0123_4567_89ab_cdef;
        let mut expected = Vec::new();
        let records: Vec<u8> = changes
            .iter()
            .flat_map(|(block, offset, data)| {
                let mut record = Vec::new();
                record.extend_from_slice(&block.to_le_bytes());
                record.extend_from_slice(&(*offset as u32).to_le_bytes());
                record.extend_from_slice(&(data.len() as u32).to_le_bytes());
                record.extend_from_slice(data);
                record.resize(record.len().next_multiple_of(8), 0);
                record
            })
            .collect();
        expected.extend_from_slice(b"OXTX");
        expected.extend_from_slice(&3u32.to_le_bytes());
        expected.extend_from_slice(&seq.to_le_bytes());
        expected.extend_from_slice(&(records.len() as u64).to_le_bytes());
        expected.extend_from_slice(&records);
        let crc = crc32c::checksum(&expected);
        expected.extend_from_slice(b"OXTC");
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&seq.to_le_bytes());

        let offset = 64;
        let mut log = vec![0xeeu8; 1024];
        let (body, commit, next) = write_tx(&mut log, offset, seq, &changes);
        assert_eq!(body, offset..offset + expected.len() - COMMIT_BYTES);
        assert_eq!(commit, body.end..next);
        assert_eq!(log[offset..next], expected[..]);
        assert!(log[..offset].iter().chain(&log[next..]).all(|&b| b == 0xee));
    }

    /// Every state a rewrite in three fenced steps (check word zeroed,
    /// the rest, the check word) can leave at a crash is a whole header
    /// or a torn one, which restarts the log past every sequence number a
    /// lap from the tail found can hold. A mix with a check word that is
    /// neither zero nor right, or damage elsewhere, is refused.
    #[test]
    fn a_torn_header_restarts_the_log() {
        let log_len = 8192;
        let per_lap = (log_len / (TX_HEADER_BYTES + COMMIT_BYTES)) as u64;
        let check = JournalHeader::CHECK_WORD;
        let (mut old, mut new) = ([0u8; BLOCK_SIZE], [0u8; BLOCK_SIZE]);
        let (old_tail, new_tail) = (
            JournalHeader {
                tail_seq: 40,
                tail_offset: 4096,
            },
            JournalHeader {
                tail_seq: 77,
                tail_offset: 0,
            },
        );
        old_tail.encode(&mut old);
        new_tail.encode(&mut new);
        assert_eq!(JournalHeader::recover(&old, log_len), Ok((old_tail, false)));
        assert_eq!(JournalHeader::recover(&new, log_len), Ok((new_tail, false)));
        for mix in 0..4u32 {
            let mut block = old;
            for (bit, at) in [8, 16].into_iter().enumerate() {
                if mix & 1 << bit != 0 {
                    block[at..at + 8].copy_from_slice(&new[at..at + 8]);
                }
            }
            let found_seq = if mix & 1 != 0 { 77 } else { 40 };
            let restart = JournalHeader {
                tail_seq: found_seq + per_lap + 1,
                tail_offset: 0,
            };
            let mut zeroed = block;
            zeroed[check..].fill(0);
            assert_eq!(
                JournalHeader::recover(&zeroed, log_len),
                Ok((restart, true)),
                "mix {mix}"
            );
            if mix != 0 && mix != 3 {
                // A mix under a check word of either header: not a
                // rewrite's, refused as any damage.
                assert!(JournalHeader::recover(&block, log_len).is_err());
                let mut new_check = block;
                new_check[check..].copy_from_slice(&new[check..]);
                assert!(JournalHeader::recover(&new_check, log_len).is_err());
            }
        }
        let mut torn = old;
        torn[check..].fill(0);
        for damage in [0, 5, 100, 4000, check + 5] {
            let mut block = torn;
            block[damage] ^= 0x10;
            assert_eq!(
                JournalHeader::recover(&block, log_len),
                Err(JournalError::BadHeader),
                "byte {damage} damaged"
            );
        }
        let mut out_of_log = torn;
        out_of_log[16..24].copy_from_slice(&(log_len as u64).to_le_bytes());
        assert!(JournalHeader::recover(&out_of_log, log_len).is_err());
        let mut at_the_end = torn;
        at_the_end[8..16].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(JournalHeader::recover(&at_the_end, log_len).is_err());
    }

    #[test]
    fn writer_refuses_what_does_not_fit() {
        let mut log = vec![0u8; 256];
        let mut tx = TxWriter::begin(&mut log, 0).unwrap();
        assert_eq!(tx.record(0, 4000, &[1; 97]), Err(JournalError::BadRecord));
        assert_eq!(tx.record(0, 0, &[]), Err(JournalError::BadRecord));
        assert_eq!(tx.record(0, 0, &[1; 300]), Err(JournalError::NoSpace));
        tx.record(0, 0, &[1; 100]).unwrap();
        assert!(TxWriter::begin(&mut log, 250).is_err());
        assert!(TxWriter::begin(&mut log, 3).is_err());
    }
}
