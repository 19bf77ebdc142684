// SPDX-License-Identifier: GPL-2.0

//! Per-file consistency checks, for fsck: every inode, directory and extent
//! against the reverse map, refcounts and each other.
//!
//! Link counts need a table from inode to the names that refer to it, which
//! this allocation-free code cannot keep: it reports each name and each
//! inode to the caller, which counts (fsck.oxdax uses a hash map).

use core::ops::ControlFlow;

use super::{tx::Committed, Media};
use crate::logic::format::{
    btree::{Nodes, Tree},
    inode::{self, FileType, Inode, INODES_PER_CHUNK, INODE_BYTES, MAX_FILE_SIZE},
    kinds::{
        block_key, parse_block_key, Directory, Dirent, Extent, Extents, InodeChunks, ReverseMap,
        RmapKey, OWNER_INODE_CHUNKS, OWNER_REFCOUNTS, OWNER_REVERSE_MAP, RMAP_METADATA,
    },
    superblock::Superblock,
    BLOCK_SIZE,
};

/// Something the caller must tally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    /// Directory `dir` has an entry naming `ino`.
    Name {
        /// The directory.
        dir: u64,
        /// The inode named.
        ino: u64,
    },
    /// Inode `ino` is in use with `nlink` links.
    Inode {
        /// The inode.
        ino: u64,
        /// Its link count.
        nlink: u32,
        /// Whether it is a directory (whose links are counted here).
        is_dir: bool,
    },
}

/// An inconsistency: the inode it concerns and what is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The inode (or `0` for a filesystem-wide structure).
    pub ino: u64,
    /// What is wrong.
    pub what: &'static str,
}

/// What the checks counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileReport {
    /// Inodes in use.
    pub inodes: u64,
    /// Directories among them.
    pub directories: u64,
    /// Inodes with no links (freed at the next mount).
    pub orphans: u64,
    /// File extents.
    pub extents: u64,
}

fn problem<T>(ino: u64, what: &'static str) -> Result<T, Problem> {
    Err(Problem { ino, what })
}

/// Checks every inode of the filesystem on `media` (whose superblock is
/// `sb` and whose journal is already replayed), reporting names and
/// inodes to `tally`. Stops at the first problem.
pub fn check_files<M: Media>(
    media: &M,
    sb: &Superblock,
    tally: &mut dyn FnMut(Fact),
) -> Result<FileReport, Problem> {
    let nodes = Committed::checking_all(media).in_area(&sb.layout);
    let mut report = FileReport::default();
    let mut tree_nodes = 0u64;
    let chunks = Tree::<InodeChunks>::open(sb.inode_tree_root, OWNER_INODE_CHUNKS);
    let mut failure = None;
    let _ = chunks
        .scan(&nodes, &block_key(0), &mut |key, value| {
            let chunk = parse_block_key(key).unwrap_or(0);
            let bits = value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            let checked = check_chunk(media, sb, chunk, bits, &mut report, &mut tree_nodes, tally);
            match checked {
                Ok(()) => ControlFlow::Continue(()),
                Err(p) => {
                    failure = Some(p);
                    ControlFlow::Break(())
                }
            }
        })
        .map_err(|_| Problem {
            ino: 0,
            what: "inode-chunk tree",
        })?;
    if let Some(p) = failure {
        return Err(p);
    }
    if report.inodes != sb.inode_count && !sb.counters_may_be_stale() {
        return problem(0, "inode count in the superblock");
    }
    // Each extent and per-inode tree node was found in the reverse map;
    // the counts being equal means the map has nothing else for inodes.
    let (mut data_records, mut node_records) = (0u64, 0u64);
    let rmap = Tree::<ReverseMap>::open(sb.rmap_root, OWNER_REVERSE_MAP);
    let _ = rmap
        .scan(&nodes, &[0u8; 24], &mut |key, value| {
            let owner = RmapKey::decode(key).map_or(0, |k| k.owner);
            let flags = value
                .get(8..16)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            if owner < OWNER_REFCOUNTS {
                if flags & RMAP_METADATA != 0 {
                    node_records += 1;
                } else {
                    data_records += 1;
                }
            }
            ControlFlow::Continue(())
        })
        .map_err(|_| Problem {
            ino: 0,
            what: "reverse-map tree",
        })?;
    if data_records != report.extents {
        return problem(0, "reverse-map records of file data without an extent");
    }
    if node_records != tree_nodes {
        return problem(0, "reverse-map records of inode trees without a node");
    }
    Ok(report)
}

fn check_chunk<M: Media>(
    media: &M,
    sb: &Superblock,
    chunk: u64,
    bits: u64,
    report: &mut FileReport,
    tree_nodes: &mut u64,
    tally: &mut dyn FnMut(Fact),
) -> Result<(), Problem> {
    let nodes = Committed::checking_all(media).in_area(&sb.layout);
    if !has_rmap(&nodes, sb, chunk, OWNER_INODE_CHUNKS, 0, 4, true) {
        return problem(0, "inode chunk without its reverse-map record");
    }
    for slot in 0..INODES_PER_CHUNK {
        let Some(ino) = inode::ino(chunk, slot) else {
            return problem(0, "inode chunk address");
        };
        let location = inode::location(ino).ok_or(Problem {
            ino,
            what: "inode number",
        })?;
        let mut record = [0u8; INODE_BYTES];
        let at = location
            .block
            .checked_mul(BLOCK_SIZE as u64)
            .and_then(|b| b.checked_add(location.offset as u64));
        at.and_then(|at| media.read(at, &mut record).ok())
            .ok_or(Problem {
                ino,
                what: "inode outside the device, or unreadable",
            })?;
        let decoded = Inode::decode(ino, &record).map_err(|_| Problem {
            ino,
            what: "damaged inode record",
        })?;
        let in_use = bits & 1 << slot != 0;
        let inode = match (decoded, in_use) {
            (None, false) => continue,
            (Some(_), false) => return problem(ino, "inode record in a free slot"),
            (None, true) => return problem(ino, "slot in use without an inode"),
            (Some(inode), true) => inode,
        };
        report.inodes += 1;
        if inode.nlink == 0 {
            report.orphans += 1;
        }
        let is_dir = inode.file_type() == Some(FileType::Directory);
        tally(Fact::Inode {
            ino,
            nlink: inode.nlink,
            is_dir,
        });
        if is_dir {
            report.directories += 1;
            check_directory(media, sb, ino, &inode, tree_nodes, tally)?;
        } else if inode.map_root != 0 {
            if inode.file_type() != Some(FileType::Regular) {
                return problem(ino, "special file with blocks");
            }
            check_extents(media, sb, ino, &inode, report, tree_nodes)?;
        }
    }
    Ok(())
}

fn has_rmap<S: Nodes>(
    nodes: &S,
    sb: &Superblock,
    start: u64,
    owner: u64,
    offset: u64,
    len: u64,
    metadata: bool,
) -> bool {
    let rmap = Tree::<ReverseMap>::open(sb.rmap_root, OWNER_REVERSE_MAP);
    let mut value = [0u8; 16];
    let key = RmapKey {
        start,
        owner,
        offset,
    }
    .encode();
    let found = matches!(rmap.get(nodes, &key, &mut value), Ok(true));
    let record_len = u64::from_le_bytes(value[..8].try_into().unwrap_or([0; 8]));
    let flags = u64::from_le_bytes(value[8..].try_into().unwrap_or([0; 8]));
    found && record_len == len && (flags & RMAP_METADATA != 0) == metadata
}

/// Checks a tree's nodes have reverse-map records; returns how many.
fn check_nodes<M: Media, K: crate::logic::format::btree::TreeKind>(
    media: &M,
    sb: &Superblock,
    ino: u64,
    tree: &Tree<K>,
) -> Result<u64, Problem> {
    let nodes = Committed::checking_all(media).in_area(&sb.layout);
    let mut count = 0u64;
    let mut missing = false;
    tree.check(&nodes, &mut |block| {
        count += 1;
        missing |= !has_rmap(&nodes, sb, block, ino, 0, 1, true);
    })
    .map_err(|_| Problem {
        ino,
        what: "damaged tree",
    })?;
    if missing {
        return problem(ino, "tree node without its reverse-map record");
    }
    Ok(count)
}

fn check_directory<M: Media>(
    media: &M,
    sb: &Superblock,
    ino: u64,
    inode: &Inode,
    tree_nodes: &mut u64,
    tally: &mut dyn FnMut(Fact),
) -> Result<(), Problem> {
    if inode.map_root == 0 {
        return problem(ino, "directory without an entry tree");
    }
    let tree = Tree::<Directory>::open(inode.map_root, ino);
    let count = check_nodes(media, sb, ino, &tree)?;
    *tree_nodes += count;
    if inode.blocks != count {
        return problem(ino, "directory block count");
    }
    let nodes = Committed::checking_all(media).in_area(&sb.layout);
    let (mut entries, mut subdirs) = (0u64, 0u32);
    let mut failure = None;
    let _ = tree
        .scan(&nodes, &[0u8; 12], &mut |key, value| {
            let Some(entry) = Dirent::decode(value) else {
                failure = Some("damaged directory entry");
                return ControlFlow::Break(());
            };
            let expected = crate::logic::format::kinds::dirent_key(
                &sb.uuid,
                entry.name,
                key.get(8..12)
                    .and_then(|b| b.try_into().ok())
                    .map_or(u32::MAX, u32::from_be_bytes),
            );
            if expected != key {
                failure = Some("directory entry under the wrong hash");
                return ControlFlow::Break(());
            }
            let target = nodes.inode(entry.ino);
            match target {
                Ok(target) => {
                    let dtype = target.file_type().map_or(0, FileType::dtype);
                    if dtype != entry.dtype {
                        failure = Some("directory entry type");
                        return ControlFlow::Break(());
                    }
                    if target.file_type() == Some(FileType::Directory) {
                        if target.parent != ino {
                            failure = Some("subdirectory's parent");
                            return ControlFlow::Break(());
                        }
                        subdirs += 1;
                    }
                    if target.nlink == 0 {
                        failure = Some("entry names an unlinked inode");
                        return ControlFlow::Break(());
                    }
                }
                Err(_) => {
                    failure = Some("entry names a free or damaged inode");
                    return ControlFlow::Break(());
                }
            }
            entries += 1;
            tally(Fact::Name {
                dir: ino,
                ino: entry.ino,
            });
            ControlFlow::Continue(())
        })
        .map_err(|_| Problem {
            ino,
            what: "damaged directory tree",
        })?;
    if let Some(what) = failure {
        return problem(ino, what);
    }
    if inode.size != entries {
        return problem(ino, "directory size is not its entry count");
    }
    if inode.nlink != 0 && inode.nlink != 2 + subdirs {
        return problem(ino, "directory link count");
    }
    Ok(())
}

fn check_extents<M: Media>(
    media: &M,
    sb: &Superblock,
    ino: u64,
    inode: &Inode,
    report: &mut FileReport,
    tree_nodes: &mut u64,
) -> Result<(), Problem> {
    let tree = Tree::<Extents>::open(inode.map_root, ino);
    let count = check_nodes(media, sb, ino, &tree)?;
    *tree_nodes += count;
    let nodes = Committed::checking_all(media).in_area(&sb.layout);
    let mut blocks = count;
    let mut next_free = 0u64;
    let mut failure = None;
    let _ = tree
        .scan(&nodes, &block_key(0), &mut |key, value| {
            let start = parse_block_key(key).unwrap_or(0);
            let Some(extent) = Extent::decode(value) else {
                failure = Some("damaged extent");
                return ControlFlow::Break(());
            };
            let len = u64::from(extent.len);
            let end = extent.physical.saturating_add(len);
            let past_largest = start
                .checked_add(len)
                .and_then(|end| end.checked_mul(BLOCK_SIZE as u64))
                .map_or(true, |end| {
                    end > MAX_FILE_SIZE.next_multiple_of(BLOCK_SIZE as u64)
                });
            if start < next_free || past_largest {
                failure = Some("extents overlap or pass the largest file");
                return ControlFlow::Break(());
            }
            if extent.physical < sb.layout.data_start || end > sb.layout.block_count {
                failure = Some("extent outside the data area");
                return ControlFlow::Break(());
            }
            if !has_rmap(&nodes, sb, extent.physical, ino, start, len, false) {
                failure = Some("extent without its reverse-map record");
                return ControlFlow::Break(());
            }
            next_free = start + len;
            blocks += len;
            report.extents += 1;
            ControlFlow::Continue(())
        })
        .map_err(|_| Problem {
            ino,
            what: "damaged extent tree",
        })?;
    if let Some(what) = failure {
        return problem(ino, what);
    }
    if inode.blocks != blocks {
        return problem(ino, "block count");
    }
    Ok(())
}
