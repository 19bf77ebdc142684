// SPDX-License-Identifier: GPL-2.0

//! Making an empty filesystem, and checking one: the code `mkfs.oxdax` and
//! `fsck.oxdax` run (and the module's mount checks reuse).
//!
//! An empty filesystem: both superblocks; a zeroed journal with its header;
//! the free-space maps; one inode chunk holding the root directory; the
//! root's (empty) entry tree; the inode-chunk, refcount and reverse-map
//! trees, the last recording every metadata block in the data area.

use core::ops::ControlFlow;

use super::{
    btree::{copy_from_node, Blocks, Nodes, Tree, TreeError},
    inode::{self, Inode, Timestamp, CHUNK_INODE_BLOCKS, INODE_BYTES},
    journal::JournalHeader,
    kinds::{
        self, Directory, InodeChunks, RefCounts, ReverseMap, RmapKey, OWNER_INODE_CHUNKS,
        OWNER_REFCOUNTS, OWNER_REVERSE_MAP, RMAP_METADATA,
    },
    layout::{Layout, LayoutError},
    space::{ChunkCounts, Space, SpaceError, SpaceStore},
    superblock::{
        Label, Superblock, INCOMPAT_SUPPORTED, RO_COMPAT_LAZY_COUNTERS, STATE_CLEAN, VERSION_MINOR,
    },
    BLOCK_SIZE, CHUNK_BLOCKS,
};

/// The device being formatted or checked, a block at a time.
pub trait Image {
    /// The device's own error.
    type Error;
    /// Block `n`.
    fn block(&self, n: u64) -> Result<&[u8; BLOCK_SIZE], Self::Error>;
    /// Block `n`, to write.
    fn block_mut(&mut self, n: u64) -> Result<&mut [u8; BLOCK_SIZE], Self::Error>;
}

/// What mkfs is told.
#[derive(Clone, Copy, Debug)]
pub struct MkfsOptions {
    /// Filesystem identity (random in mkfs.oxdax).
    pub uuid: [u8; 16],
    /// Label.
    pub label: Label,
    /// Journal size in blocks (default: by device size).
    pub journal_blocks: Option<u64>,
    /// Creation time, also the root directory's times.
    pub now: Timestamp,
}

/// Why mkfs or a check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError<E> {
    /// The device failed.
    Device(E),
    /// The device cannot hold a filesystem.
    Layout(LayoutError),
    /// A structure is damaged or inconsistent with another.
    Corrupt(&'static str),
}

type FResult<T, E> = Result<T, FsError<E>>;

fn tree_error<E>(error: TreeError<E>) -> FsError<E> {
    match error {
        TreeError::Store(e) => FsError::Device(e),
        TreeError::Corrupt { .. } | TreeError::BadArgument => FsError::Corrupt("tree node"),
    }
}

fn space_error<E>(error: SpaceError<E>) -> FsError<E> {
    match error {
        SpaceError::Store(e) => FsError::Device(e),
        SpaceError::NoSpace => FsError::Corrupt("no space for metadata"),
        SpaceError::OutOfRange | SpaceError::Inconsistent { .. } => {
            FsError::Corrupt("free-space maps")
        }
    }
}

/// The free-space maps of an image laid out as `layout`.
struct Maps<'a, I: Image> {
    image: &'a mut I,
    layout: Layout,
}

impl<I: Image> SpaceStore for Maps<'_, I> {
    type Error = I::Error;
    fn word(&self, index: u64) -> Result<u64, I::Error> {
        let block = self.image.block(self.layout.bitmap_start + index / 512)?;
        Ok(super::get_u64(block, (index % 512) as usize * 8).unwrap_or(u64::MAX))
    }
    fn set_word(&mut self, index: u64, value: u64) -> Result<(), I::Error> {
        let block = self
            .image
            .block_mut(self.layout.bitmap_start + index / 512)?;
        super::put(block, (index % 512) as usize * 8, &value.to_le_bytes());
        Ok(())
    }
    fn chunk_free(&self, chunk: u64) -> Result<u32, I::Error> {
        let block = self.image.block(self.layout.summary_start + chunk / 1024)?;
        Ok(super::get_u32(block, (chunk % 1024) as usize * 4).unwrap_or(0))
    }
    fn set_chunk_free(&mut self, chunk: u64, free: u32) -> Result<(), I::Error> {
        let block = self
            .image
            .block_mut(self.layout.summary_start + chunk / 1024)?;
        super::put(block, (chunk % 1024) as usize * 4, &free.to_le_bytes());
        Ok(())
    }
}

/// Most metadata blocks mkfs allocates (trees are one or two nodes each).
const MAX_MKFS_NODES: usize = 16;

/// B+tree storage for mkfs: nodes come from the free-space maps and are
/// remembered with their owners, for the reverse map.
struct MkfsNodes<'a, I: Image> {
    maps: Maps<'a, I>,
    allocated: [(u64, u64); MAX_MKFS_NODES],
    count: usize,
    owner: u64,
}

/// Why mkfs's node store failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeError<E> {
    /// The device failed.
    Device(E),
    /// No free block for a node.
    NoSpace,
    /// More nodes than an empty filesystem has, or a free (mkfs removes
    /// nothing): a bug.
    Unexpected,
}

impl<I: Image> Nodes for MkfsNodes<'_, I> {
    type Error = NodeError<I::Error>;
    fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), Self::Error> {
        let node = self.maps.image.block(block).map_err(NodeError::Device)?;
        copy_from_node(node, offset, buf);
        Ok(())
    }
}

impl<I: Image> Blocks for MkfsNodes<'_, I> {
    fn node_mut(&mut self, block: u64) -> Result<&mut [u8; BLOCK_SIZE], Self::Error> {
        self.maps.image.block_mut(block).map_err(NodeError::Device)
    }
    fn allocate(&mut self) -> Result<u64, Self::Error> {
        let slot = self
            .allocated
            .get_mut(self.count)
            .ok_or(NodeError::Unexpected)?;
        let layout = self.maps.layout;
        let extent = Space::new(&mut self.maps, &layout)
            .allocate(1, layout.data_start)
            .map_err(|e| match e {
                SpaceError::Store(e) => NodeError::Device(e),
                SpaceError::NoSpace => NodeError::NoSpace,
                _ => NodeError::Unexpected,
            })?;
        *slot = (extent.start, self.owner);
        self.count += 1;
        Ok(extent.start)
    }
    fn free(&mut self, _block: u64) -> Result<(), Self::Error> {
        Err(NodeError::Unexpected)
    }
}

fn node_error<E>(error: TreeError<NodeError<E>>) -> FsError<E> {
    match error {
        TreeError::Store(NodeError::Device(e)) => FsError::Device(e),
        TreeError::Store(NodeError::NoSpace) => FsError::Corrupt("no space for metadata"),
        _ => FsError::Corrupt("mkfs metadata"),
    }
}

/// The reverse-map value of `len` metadata blocks.
fn metadata_record(len: u64) -> [u8; 16] {
    let mut value = [0u8; 16];
    super::put(&mut value, 0, &len.to_le_bytes());
    super::put(&mut value, 8, &RMAP_METADATA.to_le_bytes());
    value
}

/// Formats `image` (`device_bytes` long) as an empty filesystem.
pub fn make_filesystem<I: Image>(
    image: &mut I,
    device_bytes: u64,
    options: &MkfsOptions,
) -> FResult<Superblock, I::Error> {
    let layout =
        Layout::for_device(device_bytes, options.journal_blocks).map_err(FsError::Layout)?;

    // Fixed regions: zeroed (a stale journal must not replay), then the
    // bitmap marks them and the blocks past the end in use.
    for block in 0..layout.data_start {
        image.block_mut(block).map_err(FsError::Device)?.fill(0);
    }
    let header = JournalHeader {
        tail_seq: 1,
        tail_offset: 0,
    };
    header.encode(
        image
            .block_mut(layout.journal_start)
            .map_err(FsError::Device)?,
    );
    let mut maps = Maps { image, layout };
    let words = layout.block_count.div_ceil(64);
    for word in 0..layout.bitmap_blocks * 512 {
        let first = word * 64;
        let mut value = 0u64;
        for bit in 0..64 {
            let block = first + bit;
            if block < layout.data_start || block >= layout.block_count || word >= words {
                value |= 1 << bit;
            }
        }
        maps.set_word(word, value).map_err(FsError::Device)?;
    }
    for chunk in 0..layout.block_count.div_ceil(CHUNK_BLOCKS) {
        let start = (chunk * CHUNK_BLOCKS).max(layout.data_start);
        let end = ((chunk + 1) * CHUNK_BLOCKS).min(layout.block_count);
        let free = end.saturating_sub(start) as u32;
        maps.set_chunk_free(chunk, free).map_err(FsError::Device)?;
    }

    // The first inode chunk; the root directory is its slot 0.
    let chunk = Space::new(&mut maps, &layout)
        .allocate(CHUNK_INODE_BLOCKS, layout.data_start)
        .map_err(space_error)?;
    if chunk.len != CHUNK_INODE_BLOCKS {
        return Err(FsError::Corrupt("no room for the inode chunk"));
    }
    for block in chunk.start..chunk.start + chunk.len {
        maps.image
            .block_mut(block)
            .map_err(FsError::Device)?
            .fill(0);
    }
    let root_ino = inode::ino(chunk.start, 0).ok_or(FsError::Corrupt("inode number"))?;

    let mut nodes = MkfsNodes {
        maps,
        allocated: [(0, 0); MAX_MKFS_NODES],
        count: 0,
        owner: root_ino,
    };
    let root_dir = Tree::<Directory>::create(&mut nodes, root_ino).map_err(node_error)?;
    nodes.owner = OWNER_INODE_CHUNKS;
    let mut chunks =
        Tree::<InodeChunks>::create(&mut nodes, OWNER_INODE_CHUNKS).map_err(node_error)?;
    let mut chunk_value = [0u8; 16];
    chunk_value[..8].copy_from_slice(&1u64.to_le_bytes());
    chunks
        .insert(&mut nodes, &kinds::block_key(chunk.start), &chunk_value)
        .map_err(node_error)?;
    nodes.owner = OWNER_REFCOUNTS;
    let refcounts = Tree::<RefCounts>::create(&mut nodes, OWNER_REFCOUNTS).map_err(node_error)?;
    nodes.owner = OWNER_REVERSE_MAP;
    let mut rmap = Tree::<ReverseMap>::create(&mut nodes, OWNER_REVERSE_MAP).map_err(node_error)?;

    // Record every metadata block; recording may itself add rmap nodes,
    // which are recorded in turn.
    let chunk_key = RmapKey {
        start: chunk.start,
        owner: OWNER_INODE_CHUNKS,
        offset: 0,
    }
    .encode();
    rmap.insert(&mut nodes, &chunk_key, &metadata_record(chunk.len))
        .map_err(node_error)?;
    let mut recorded = 0;
    while recorded < nodes.count {
        let (block, owner) = nodes.allocated.get(recorded).copied().unwrap_or((0, 0));
        let key = RmapKey {
            start: block,
            owner,
            offset: 0,
        }
        .encode();
        rmap.insert(&mut nodes, &key, &metadata_record(1))
            .map_err(node_error)?;
        recorded += 1;
    }

    let used = CHUNK_INODE_BLOCKS + nodes.count as u64;
    let MkfsNodes { maps, .. } = nodes;
    let image = maps.image;

    let root = Inode {
        mode: 0o040755,
        uid: 0,
        gid: 0,
        nlink: 2,
        size: 0,
        blocks: 1,
        atime: options.now,
        mtime: options.now,
        ctime: options.now,
        btime: options.now,
        generation: 0,
        rdev: 0,
        map_root: root_dir.root,
        parent: root_ino,
    };
    let location = inode::location(root_ino).ok_or(FsError::Corrupt("inode number"))?;
    let mut record = [0u8; INODE_BYTES];
    root.encode(root_ino, &mut record);
    super::put(
        image.block_mut(location.block).map_err(FsError::Device)?,
        location.offset,
        &record,
    );

    let superblock = Superblock {
        version_minor: VERSION_MINOR,
        feature_compat: 0,
        feature_ro_compat: RO_COMPAT_LAZY_COUNTERS,
        feature_incompat: INCOMPAT_SUPPORTED,
        uuid: options.uuid,
        label: options.label,
        layout,
        root_ino,
        inode_tree_root: chunks.root,
        rmap_root: rmap.root,
        refcount_root: refcounts.root,
        free_blocks: layout.data_blocks() - used,
        inode_count: 1,
        mkfs_time: (options.now.sec.max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(options.now.nsec)),
        state: STATE_CLEAN,
    };
    for block in [
        super::superblock::PRIMARY_BLOCK,
        super::superblock::BACKUP_BLOCK,
    ] {
        superblock.encode(image.block_mut(block).map_err(FsError::Device)?);
    }
    Ok(superblock)
}

/// A read-only view of an image's nodes, for checking trees.
struct ReadNodes<'a, I: Image>(&'a I);

impl<I: Image> Nodes for ReadNodes<'_, I> {
    type Error = I::Error;
    fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), I::Error> {
        copy_from_node(self.0.block(block)?, offset, buf);
        Ok(())
    }
}

/// What a check found in a consistent filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// The superblock.
    pub superblock: Superblock,
    /// Data-area blocks in use (metadata and file data).
    pub used_blocks: u64,
    /// Reverse-map records.
    pub rmap_records: u64,
    /// The data area's 2 MiB chunks: free whole, partly used, full.
    pub chunks: ChunkCounts,
}

/// Checks the structures an empty or populated filesystem shares: both
/// superblocks agree, the journal header is valid, every tree is valid,
/// each used data-area block has exactly the reverse-map record(s) that
/// explain it and vice versa, the summary matches the bitmap, and the free
/// count matches. (Per-file checks come with the file operations.)
pub fn check_filesystem<I: Image>(image: &I) -> FResult<CheckReport, I::Error> {
    let primary = Superblock::decode(image.block(0).map_err(FsError::Device)?)
        .map_err(|_| FsError::Corrupt("primary superblock"))?;
    let backup = Superblock::decode(image.block(1).map_err(FsError::Device)?)
        .map_err(|_| FsError::Corrupt("backup superblock"))?;
    if primary.layout != backup.layout || primary.uuid != backup.uuid {
        return Err(FsError::Corrupt("superblocks disagree"));
    }
    let layout = primary.layout;
    let log_len = ((layout.journal_blocks - 1) * BLOCK_SIZE as u64) as usize;
    JournalHeader::decode(
        image.block(layout.journal_start).map_err(FsError::Device)?,
        log_len,
    )
    .map_err(|_| FsError::Corrupt("journal header"))?;

    let nodes = ReadNodes(image);
    let chunks = Tree::<InodeChunks>::open(primary.inode_tree_root, OWNER_INODE_CHUNKS);
    let refcounts = Tree::<RefCounts>::open(primary.refcount_root, OWNER_REFCOUNTS);
    let rmap = Tree::<ReverseMap>::open(primary.rmap_root, OWNER_REVERSE_MAP);
    chunks.check(&nodes, &mut |_| {}).map_err(tree_error)?;

    // The root directory: a directory that is its own parent, in a slot
    // the inode-chunk tree records as in use, with a valid entry tree.
    let location =
        inode::location(primary.root_ino).ok_or(FsError::Corrupt("root inode number"))?;
    let mut slots = [0u8; 16];
    let recorded = chunks
        .get(&nodes, &kinds::block_key(location.chunk), &mut slots)
        .map_err(tree_error)?;
    let in_use = super::get_u64(&slots, 0).unwrap_or(0) & (1 << location.slot) != 0;
    if !recorded || !in_use {
        return Err(FsError::Corrupt("root inode slot not in use"));
    }
    let block = image.block(location.block).map_err(FsError::Device)?;
    let record = block
        .get(location.offset..location.offset + INODE_BYTES)
        .ok_or(FsError::Corrupt("root inode"))?;
    let root = match Inode::decode(primary.root_ino, record) {
        Ok(Some(root)) => root,
        _ => return Err(FsError::Corrupt("root inode")),
    };
    if root.file_type() != Some(inode::FileType::Directory) || root.parent != primary.root_ino {
        return Err(FsError::Corrupt("root inode is not the root directory"));
    }
    Tree::<Directory>::open(root.map_root, primary.root_ino)
        .check(&nodes, &mut |_| {})
        .map_err(tree_error)?;
    refcounts.check(&nodes, &mut |_| {}).map_err(tree_error)?;
    rmap.check(&nodes, &mut |_| {}).map_err(tree_error)?;

    // Shared blocks: every refcount record covers used blocks with a
    // count of two or more, and records do not overlap. Each extra
    // reference is one more reverse-map record over the same blocks.
    let mut problem = None;
    let mut extra_references = 0u64;
    let mut refcount_end = 0u64;
    let _ = refcounts
        .scan(&nodes, &kinds::block_key(0), &mut |key, value| {
            let start = kinds::parse_block_key(key).unwrap_or(0);
            let len = super::get_u64(value, 0).unwrap_or(0);
            let count = super::get_u64(value, 8).unwrap_or(0);
            let end = start.saturating_add(len);
            if len == 0
                || count < 2
                || start < refcount_end.max(layout.data_start)
                || end > layout.block_count
            {
                problem = Some("refcount record");
                return ControlFlow::Break(());
            }
            refcount_end = end;
            extra_references = extra_references.saturating_add(len.saturating_mul(count - 1));
            ControlFlow::Continue(())
        })
        .map_err(tree_error)?;
    if let Some(what) = problem {
        return Err(FsError::Corrupt(what));
    }
    let shared = |block: u64| -> bool {
        let mut key = [0u8; 8];
        let mut value = [0u8; 16];
        matches!(
            refcounts.last_at_or_before(&nodes, &kinds::block_key(block), &mut key, &mut value),
            Ok(true)
        ) && block
            < kinds::parse_block_key(&key)
                .unwrap_or(0)
                .saturating_add(super::get_u64(&value, 0).unwrap_or(0))
    };

    // Walk the reverse map in block order: records overlap only over
    // shared blocks, and every block they cover must be in use.
    let maps = ReadMaps { image, layout };
    let mut covered_end = layout.data_start;
    let mut records = 0u64;
    let mut referenced = 0u64;
    let _ = rmap
        .scan(
            &nodes,
            &RmapKey {
                start: 0,
                owner: 0,
                offset: 0,
            }
            .encode(),
            &mut |key, value| {
                let Some(key) = RmapKey::decode(key) else {
                    problem = Some("rmap key");
                    return ControlFlow::Break(());
                };
                let len = super::get_u64(value, 0).unwrap_or(0);
                let end = key.start.saturating_add(len);
                if len == 0 || key.start < layout.data_start || end > layout.block_count {
                    problem = Some("rmap record leaves the data area");
                    return ControlFlow::Break(());
                }
                if (key.start..end.min(covered_end)).any(|block| !shared(block)) {
                    problem = Some("rmap records overlap over unshared blocks");
                    return ControlFlow::Break(());
                }
                for block in key.start..end {
                    if !maps.is_used(block) {
                        problem = Some("rmap record over a free block");
                        return ControlFlow::Break(());
                    }
                }
                covered_end = covered_end.max(end);
                records += 1;
                referenced += len;
                ControlFlow::Continue(())
            },
        )
        .map_err(tree_error)?;
    if let Some(what) = problem {
        return Err(FsError::Corrupt(what));
    }
    // Fixed regions and the bitmap's tail past the end are always in use,
    // and summary entries past the last chunk are zero, so the allocator
    // can never hand them out.
    let bitmap_bits = layout.bitmap_blocks * BLOCK_SIZE as u64 * 8;
    if (0..layout.data_start)
        .chain(layout.block_count..bitmap_bits)
        .any(|block| !maps.is_used(block))
    {
        return Err(FsError::Corrupt("fixed region or bitmap tail marked free"));
    }
    let chunks = layout.block_count.div_ceil(CHUNK_BLOCKS);
    if (chunks..layout.summary_blocks * (BLOCK_SIZE as u64 / 4))
        .any(|chunk| maps.chunk_free(chunk) != 0)
    {
        return Err(FsError::Corrupt("summary entry past the last chunk"));
    }
    let mut bitmap_used = 0u64;
    let mut counts = ChunkCounts::default();
    for chunk in layout.data_start / CHUNK_BLOCKS..chunks {
        counts.add(maps.chunk_free(chunk));
    }
    for chunk in 0..chunks {
        // Chunks of the fixed regions have no free blocks (start == end).
        let end = ((chunk + 1) * CHUNK_BLOCKS).min(layout.block_count);
        let start = (chunk * CHUNK_BLOCKS).max(layout.data_start).min(end);
        let used = (start..end).filter(|&b| maps.is_used(b)).count() as u64;
        bitmap_used += used;
        if u64::from(maps.chunk_free(chunk)) != (end - start) - used {
            return Err(FsError::Corrupt("summary disagrees with bitmap"));
        }
    }
    let used_blocks = referenced.saturating_sub(extra_references);
    if bitmap_used != used_blocks || referenced < extra_references {
        return Err(FsError::Corrupt(
            "used blocks without an owner, or refcounts that disagree with the owners",
        ));
    }
    if primary.free_blocks != layout.data_blocks() - used_blocks && !primary.counters_may_be_stale()
    {
        return Err(FsError::Corrupt("free block count"));
    }
    Ok(CheckReport {
        superblock: primary,
        used_blocks,
        rmap_records: records,
        chunks: counts,
    })
}

/// Read-only bitmap and summary access.
struct ReadMaps<'a, I: Image> {
    image: &'a I,
    layout: Layout,
}

impl<I: Image> ReadMaps<'_, I> {
    fn is_used(&self, block: u64) -> bool {
        let word = block / 64;
        self.image
            .block(self.layout.bitmap_start + word / 512)
            .ok()
            .and_then(|b| super::get_u64(b, (word % 512) as usize * 8))
            .map_or(true, |w| w & (1 << (block % 64)) != 0)
    }

    fn chunk_free(&self, chunk: u64) -> u32 {
        self.image
            .block(self.layout.summary_start + chunk / 1024)
            .ok()
            .and_then(|b| super::get_u32(b, (chunk % 1024) as usize * 4))
            .unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;
    use alloc::{boxed::Box, vec::Vec};

    struct Memory(Vec<Box<[u8; BLOCK_SIZE]>>);

    impl Memory {
        fn new(bytes: u64) -> Self {
            Self(
                (0..bytes / BLOCK_SIZE as u64)
                    .map(|_| Box::new([0x6bu8; BLOCK_SIZE]))
                    .collect(),
            )
        }
    }

    impl Image for Memory {
        type Error = ();
        fn block(&self, n: u64) -> Result<&[u8; BLOCK_SIZE], ()> {
            self.0.get(n as usize).map(|b| &**b).ok_or(())
        }
        fn block_mut(&mut self, n: u64) -> Result<&mut [u8; BLOCK_SIZE], ()> {
            self.0.get_mut(n as usize).map(|b| &mut **b).ok_or(())
        }
    }

    fn options() -> MkfsOptions {
        MkfsOptions {
            uuid: *b"oxdax-test-uuid!",
            label: Label::new("test").unwrap(),
            journal_blocks: None,
            now: Timestamp {
                sec: 1_790_000_000,
                nsec: 5,
            },
        }
    }

    #[test]
    fn formats_and_checks_clean_at_many_sizes() {
        for mib in [16u64, 17, 64, 100, 256] {
            let mut image = Memory::new(mib << 20);
            let sb = make_filesystem(&mut image, mib << 20, &options()).unwrap();
            let report = check_filesystem(&image).unwrap();
            assert_eq!(report.superblock, sb);
            // The inode chunk plus one node each for four trees.
            assert_eq!(report.used_blocks, CHUNK_INODE_BLOCKS + 4, "{} MiB", mib);
            assert_eq!(report.rmap_records, 5);
            let root = inode::location(sb.root_ino).unwrap();
            let record = &image.block(root.block).unwrap()[root.offset..root.offset + INODE_BYTES];
            let inode = Inode::decode(sb.root_ino, record).unwrap().unwrap();
            assert_eq!(inode.parent, sb.root_ino);
            assert_eq!(inode.file_type(), Some(inode::FileType::Directory));
            let dir = Tree::<Directory>::open(inode.map_root, sb.root_ino);
            assert_eq!(dir.check(&ReadNodes(&image), &mut |_| {}), Ok(0));
        }
    }

    #[test]
    fn too_small_devices_are_refused() {
        let mut image = Memory::new(8 << 20);
        assert!(matches!(
            make_filesystem(&mut image, 8 << 20, &options()),
            Err(FsError::Layout(LayoutError::TooSmall { .. }))
        ));
    }

    #[test]
    fn the_check_catches_damage() {
        let mut image = Memory::new(64 << 20);
        let sb = make_filesystem(&mut image, 64 << 20, &options()).unwrap();
        let pristine: Vec<[u8; BLOCK_SIZE]> = image.0.iter().map(|b| **b).collect();
        let restore = |image: &mut Memory| {
            for (block, data) in image.0.iter_mut().zip(&pristine) {
                **block = *data;
            }
        };
        let data_start = sb.layout.data_start;
        // A flipped bit in any metadata block of the empty filesystem, or a
        // leaked or lost block, is found.
        let metadata_blocks: Vec<u64> = [
            0,
            1,
            sb.layout.journal_start,
            sb.layout.bitmap_start,
            sb.layout.summary_start,
        ]
        .into_iter()
        .chain(data_start + CHUNK_INODE_BLOCKS..data_start + CHUNK_INODE_BLOCKS + 4)
        .collect();
        for &block in &metadata_blocks {
            for bit in (0..BLOCK_SIZE * 8).step_by(4099) {
                restore(&mut image);
                image.0[block as usize][bit / 8] ^= 1 << (bit % 8);
                assert!(
                    check_filesystem(&image).is_err(),
                    "block {} bit {} not caught",
                    block,
                    bit
                );
            }
        }
        restore(&mut image);
        let leaked = data_start + 100;
        image.0[(sb.layout.bitmap_start + leaked / 32768) as usize]
            [((leaked / 8) % 4096) as usize] |= 1 << (leaked % 8);
        assert_eq!(
            check_filesystem(&image).map(|_| ()),
            Err(FsError::Corrupt("summary disagrees with bitmap"))
        );
    }
}
