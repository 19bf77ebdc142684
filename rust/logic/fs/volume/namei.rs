// SPDX-License-Identifier: GPL-2.0

//! Names in directories: lookup, create, link, unlink, rmdir, rename and
//! readdir, and the directory records behind them.

use core::{ops::ControlFlow, sync::atomic::Ordering};

use super::inodes::{allocate_inode, is_dir};
use super::{TxNodes, Volume};
use crate::logic::format::{
    btree::{Nodes, Tree},
    inode::{self, FileType, Inode, Timestamp},
    kinds::{
        check_name, dirent_key, parse_block_key, Directory, Dirent, NameError, DIRENT_HASH_BYTES,
    },
    superblock::PRIMARY_BLOCK,
};
use crate::logic::fs::{
    tx::{scan, tree_error, TreeStore, Tx},
    Damage, DirEntry, Error, Media, NewInode, RenameFlags, Renamed, Scratch, Unlinked,
};

/// Readdir positions 0 and 1 are `.` and `..` (the VFS emits them); the
/// first entry's position is at least this.
pub const FIRST_POSITION: u64 = 2;

/// The position past the last entry.
pub const END_POSITION: u64 = i64::MAX as u64;

/// Most hard links an inode may have (as ext4).
const LINK_MAX: u32 = 65_000;

fn to_name_error(error: NameError) -> Error {
    match error {
        NameError::TooLong => Error::NameTooLong,
        _ => Error::Invalid,
    }
}

/// A directory entry found by name.
struct Found {
    key: [u8; 12],
    ino: u64,
}

/// Looks `name` up in directory tree `tree`; also returns the first free
/// collision index for the name's hash.
fn dir_find<S: Nodes<Error = Error>>(
    tree: &Tree<Directory>,
    store: &S,
    uuid: &[u8; 16],
    name: &[u8],
) -> Result<(Option<Found>, u32), Error> {
    let first = dirent_key(uuid, name, 0);
    let mut found = None;
    let mut free_index = 0u32;
    let mut damaged = false;
    scan(tree, store, &first, &mut |key, value| {
        if key.get(..DIRENT_HASH_BYTES) != first.get(..DIRENT_HASH_BYTES) {
            return ControlFlow::Break(());
        }
        let Some(entry) = Dirent::decode(value) else {
            damaged = true;
            return ControlFlow::Break(());
        };
        let index = key
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map_or(u32::MAX, u32::from_be_bytes);
        if index == free_index {
            free_index = free_index.saturating_add(1);
        }
        if entry.name == name {
            // A directory key is 12 bytes; `copy_from_slice` would panic
            // on any other length (and leaves objtool a call it does not
            // know to be noreturn).
            let Ok(key) = <[u8; 12]>::try_from(key) else {
                damaged = true;
                return ControlFlow::Break(());
            };
            found = Some(Found {
                key,
                ino: entry.ino,
            });
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if damaged {
        return Err(Error::Corrupt(tree.root, Damage::Record));
    }
    Ok((found, free_index))
}

/// Directory `dir`, which must still be linked.
fn live_directory<M: Media>(tx: &Tx<'_, M>, dir: u64) -> Result<Inode, Error> {
    let parent = tx.inode(dir)?;
    if !is_dir(&parent) {
        return Err(Error::NotDir);
    }
    if parent.nlink == 0 {
        return Err(Error::NotFound);
    }
    Ok(parent)
}

/// Removes the entry `key`, which a lookup found, from the directory
/// `tree`: not there is damage.
fn remove_found<M: Media>(
    tree: &mut Tree<Directory>,
    store: &mut TreeStore<'_, '_, M>,
    key: &[u8; 12],
) -> Result<(), Error> {
    let root = tree.root;
    if !tree.remove(store, key).map_err(tree_error)? {
        return Err(Error::Corrupt(root, Damage::Record));
    }
    Ok(())
}

/// Removes the entry `key` from directory `dir` (tree and block count).
fn remove_entry<M: Media>(tx: &mut Tx<'_, M>, dir: u64, key: &[u8; 12]) -> Result<(), Error> {
    let mut parent = tx.inode(dir)?;
    let mut tree = Tree::<Directory>::open(parent.map_root, dir);
    let mut store = TreeStore::new(tx, dir);
    remove_found(&mut tree, &mut store, key)?;
    let delta = store.node_delta;
    parent.map_root = tree.root;
    parent.blocks = parent.blocks.saturating_add_signed(delta);
    tx.put_inode(dir, &parent)
}

/// Removes `name` from the directory `tree` (opened in `store`); the inode
/// it named. A name sits at collision index 0 of its hash unless another
/// name with the same 64-bit hash came first: it is then found and removed
/// in one descent, and only otherwise scanned for.
fn remove_named<M: Media>(
    tree: &mut Tree<Directory>,
    store: &mut TreeStore<'_, '_, M>,
    uuid: &[u8; 16],
    name: &[u8],
) -> Result<u64, Error> {
    let mut at_first = None;
    let removed = tree
        .remove_if(
            store,
            &dirent_key(uuid, name, 0),
            &mut |value| match Dirent::decode(value) {
                Some(entry) if entry.name == name => {
                    at_first = Some(entry.ino);
                    true
                }
                _ => false,
            },
        )
        .map_err(tree_error)?;
    if let (true, Some(ino)) = (removed, at_first) {
        return Ok(ino);
    }
    let (found, _) = dir_find(tree, &*store, uuid, name)?;
    let found = found.ok_or(Error::NotFound)?;
    remove_found(tree, store, &found.key)?;
    Ok(found.ino)
}

impl<M: Media, S: Scratch> Volume<M, S> {
    pub(super) fn directory(&self, ino: u64) -> Result<(Inode, Tree<Directory>), Error> {
        let dir = self.inode(ino)?;
        if !is_dir(&dir) {
            return Err(Error::NotDir);
        }
        Ok((dir, Tree::open(dir.map_root, ino)))
    }

    /// The inode `name` refers to in directory `dir`.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> Result<u64, Error> {
        check_name(name).map_err(to_name_error)?;
        let (_, tree) = self.directory(dir)?;
        let (found, _) = dir_find(&tree, &self.committed(), &self.sb.uuid, name)?;
        found.map(|f| f.ino).ok_or(Error::NotFound)
    }

    /// Creates `name` in `dir`: a regular file, directory or special file,
    /// by `new.mode`'s type. Returns the new inode and its record.
    pub fn create(&mut self, dir: u64, name: &[u8], new: &NewInode) -> Result<(u64, Inode), Error> {
        check_name(name).map_err(to_name_error)?;
        let file_type = FileType::of_mode(new.mode).ok_or(Error::Invalid)?;
        if new.mode & !(inode::S_IFMT | 0o7777) != 0 || file_type == FileType::Symlink {
            return Err(Error::Invalid);
        }
        self.transact(|tx| {
            let mut parent = live_directory(tx, dir)?;
            let uuid = tx.sb().uuid;
            let mut tree = Tree::<Directory>::open(parent.map_root, dir);
            let new_dir = file_type == FileType::Directory;
            if new_dir && parent.nlink >= LINK_MAX {
                return Err(Error::TooManyLinks);
            }
            let ino = allocate_inode(tx)?;
            let mut record = Inode {
                mode: new.mode,
                uid: new.uid,
                gid: new.gid,
                nlink: if new_dir { 2 } else { 1 },
                size: 0,
                blocks: 0,
                atime: new.now,
                mtime: new.now,
                ctime: new.now,
                btime: new.now,
                generation: new.now.nsec ^ (ino as u32),
                rdev: new.rdev,
                map_root: 0,
                parent: if new_dir { dir } else { 0 },
            };
            if new_dir {
                let mut store = TreeStore::new(tx, ino);
                let entries = Tree::<Directory>::create(&mut store, ino).map_err(tree_error)?;
                record.blocks = store.node_delta.unsigned_abs();
                record.map_root = entries.root;
            }
            tx.put_inode(ino, &record)?;

            let entry = Dirent {
                ino,
                dtype: file_type.dtype(),
                name,
            }
            .encode()
            .ok_or(Error::Invalid)?;
            let mut store = TreeStore::new(tx, dir);
            // A new name's hash is nearly always new to the directory: the
            // entry takes collision index 0 in the descent that finds that
            // out. Otherwise a scan finds the name or the first free index.
            // (An error drops the transaction, the new inode with it.)
            let first = dirent_key(&uuid, name, 0);
            if !tree
                .insert_first(&mut store, &first, &entry, DIRENT_HASH_BYTES)
                .map_err(tree_error)?
            {
                let (found, index) = dir_find(&tree, &store, &uuid, name)?;
                if found.is_some() {
                    return Err(Error::Exists);
                }
                tree.insert(&mut store, &dirent_key(&uuid, name, index), &entry)
                    .map_err(tree_error)?;
            }
            let delta = store.node_delta;
            parent.map_root = tree.root;
            parent.blocks = parent.blocks.saturating_add_signed(delta);
            parent.size = parent.size.saturating_add(1);
            if new_dir {
                parent.nlink += 1;
            }
            parent.mtime = new.now;
            parent.ctime = new.now;
            tx.put_inode(dir, &parent)?;
            let count = &mut tx.sb_mut().inode_count;
            *count = count
                .checked_add(1)
                .ok_or(Error::Corrupt(PRIMARY_BLOCK, Damage::Record))?;
            Ok((ino, record))
        })
    }

    /// A new name `name` in `dir` for `ino` (not a directory).
    pub fn link(
        &mut self,
        ino: u64,
        dir: u64,
        name: &[u8],
        now: Timestamp,
    ) -> Result<Inode, Error> {
        check_name(name).map_err(to_name_error)?;
        self.transact(|tx| {
            let mut target = tx.inode(ino)?;
            if is_dir(&target) {
                return Err(Error::Invalid);
            }
            if target.nlink == 0 {
                return Err(Error::NotFound);
            }
            if target.nlink >= LINK_MAX {
                return Err(Error::TooManyLinks);
            }
            let mut parent = live_directory(tx, dir)?;
            let uuid = tx.sb().uuid;
            let mut tree = Tree::<Directory>::open(parent.map_root, dir);
            let (found, index) = dir_find(&tree, &TxNodes(tx), &uuid, name)?;
            if found.is_some() {
                return Err(Error::Exists);
            }
            let entry = Dirent {
                ino,
                dtype: target.file_type().map_or(0, FileType::dtype),
                name,
            }
            .encode()
            .ok_or(Error::Invalid)?;
            let mut store = TreeStore::new(tx, dir);
            tree.insert(&mut store, &dirent_key(&uuid, name, index), &entry)
                .map_err(tree_error)?;
            let delta = store.node_delta;
            parent.map_root = tree.root;
            parent.blocks = parent.blocks.saturating_add_signed(delta);
            parent.size = parent.size.saturating_add(1);
            parent.mtime = now;
            parent.ctime = now;
            tx.put_inode(dir, &parent)?;
            target.nlink += 1;
            target.ctime = now;
            tx.put_inode(ino, &target)?;
            Ok(target)
        })
    }

    /// Host tests: moves `name`'s entry in `dir` to key `key` as it is,
    /// for a crafted hash collision.
    #[cfg(test)]
    pub(crate) fn rekey_dirent(&mut self, dir: u64, name: &[u8], key: &[u8; 12]) {
        let moved = self.transact(|tx| {
            let parent = tx.inode(dir)?;
            let uuid = tx.sb().uuid;
            let mut tree = Tree::<Directory>::open(parent.map_root, dir);
            let (found, _) = dir_find(&tree, &TxNodes(tx), &uuid, name)?;
            let found = found.ok_or(Error::NotFound)?;
            let mut value = [0u8; crate::logic::format::kinds::DIRENT_BYTES];
            tree.get(&TxNodes(tx), &found.key, &mut value)
                .map_err(tree_error)?;
            let mut store = TreeStore::new(tx, dir);
            tree.remove(&mut store, &found.key).map_err(tree_error)?;
            tree.insert(&mut store, key, &value).map_err(tree_error)?;
            let mut parent = parent;
            parent.map_root = tree.root;
            parent.blocks = parent.blocks.saturating_add_signed(store.node_delta);
            tx.put_inode(dir, &parent)
        });
        assert_eq!(moved, Ok(()));
    }

    /// Removes `name` (not a directory: `IsDir`) from `dir`.
    pub fn unlink(&mut self, dir: u64, name: &[u8], now: Timestamp) -> Result<Unlinked, Error> {
        self.remove_name(dir, name, now, false)
    }

    /// Removes the empty directory `name` from `dir`.
    pub fn rmdir(&mut self, dir: u64, name: &[u8], now: Timestamp) -> Result<Unlinked, Error> {
        self.remove_name(dir, name, now, true)
    }

    fn remove_name(
        &mut self,
        dir: u64,
        name: &[u8],
        now: Timestamp,
        want_dir: bool,
    ) -> Result<Unlinked, Error> {
        check_name(name).map_err(to_name_error)?;
        let unlinked = self.transact(|tx| {
            let mut parent = live_directory(tx, dir)?;
            let uuid = tx.sb().uuid;
            let mut tree = Tree::<Directory>::open(parent.map_root, dir);
            let check = |target: &Inode| match (want_dir, is_dir(target)) {
                (false, true) => Err(Error::IsDir),
                (true, false) => Err(Error::NotDir),
                (true, true) if target.size != 0 => Err(Error::NotEmpty),
                _ => Ok(()),
            };
            let (ino, delta) = if want_dir {
                // A directory that is not empty is a refusal only the
                // filesystem can make (the VFS checks the types): made
                // before anything changes.
                let (found, _) = dir_find(&tree, &TxNodes(tx), &uuid, name)?;
                let found = found.ok_or(Error::NotFound)?;
                check(&tx.inode(found.ino)?)?;
                let mut store = TreeStore::new(tx, dir);
                remove_found(&mut tree, &mut store, &found.key)?;
                (found.ino, store.node_delta)
            } else {
                let mut store = TreeStore::new(tx, dir);
                let ino = remove_named(&mut tree, &mut store, &uuid, name)?;
                (ino, store.node_delta)
            };
            // After the removal for unlink: an error drops the transaction,
            // the removal with it.
            let mut target = tx.inode(ino)?;
            check(&target)?;
            parent.map_root = tree.root;
            parent.blocks = parent.blocks.saturating_add_signed(delta);
            parent.size = parent.size.saturating_sub(1);
            parent.mtime = now;
            parent.ctime = now;
            if want_dir {
                parent.nlink = parent.nlink.saturating_sub(1);
                target.nlink = 0;
            } else {
                target.nlink = target.nlink.saturating_sub(1);
            }
            target.ctime = now;
            tx.put_inode(dir, &parent)?;
            tx.put_inode(ino, &target)?;
            Ok(Unlinked { ino, inode: target })
        })?;
        if unlinked.inode.nlink == 0 {
            self.orphans.fetch_add(1, Ordering::AcqRel);
        }
        Ok(unlinked)
    }

    /// `renameat2` without `RENAME_EXCHANGE`/`RENAME_WHITEOUT`.
    pub fn rename(
        &mut self,
        old_dir: u64,
        old_name: &[u8],
        new_dir: u64,
        new_name: &[u8],
        flags: RenameFlags,
        now: Timestamp,
    ) -> Result<Renamed, Error> {
        check_name(old_name).map_err(to_name_error)?;
        check_name(new_name).map_err(to_name_error)?;
        let renamed = self.transact(|tx| {
            let uuid = tx.sb().uuid;
            let old_parent = live_directory(tx, old_dir)?;
            let old_tree = Tree::<Directory>::open(old_parent.map_root, old_dir);
            let (source, _) = dir_find(&old_tree, &TxNodes(tx), &uuid, old_name)?;
            let source = source.ok_or(Error::NotFound)?;
            let mut moved = tx.inode(source.ino)?;
            let new_parent = if new_dir == old_dir {
                old_parent
            } else {
                live_directory(tx, new_dir)?
            };
            let new_tree = Tree::<Directory>::open(new_parent.map_root, new_dir);
            let (target, _) = dir_find(&new_tree, &TxNodes(tx), &uuid, new_name)?;
            let moving_dir = is_dir(&moved);
            let mut replaced = None;
            if let Some(target) = &target {
                if flags.no_replace {
                    return Err(Error::Exists);
                }
                if target.ino == source.ino {
                    // Two names of one inode: POSIX says do nothing.
                    return Ok(Renamed {
                        moved: (source.ino, moved),
                        replaced: None,
                    });
                }
                let victim = tx.inode(target.ino)?;
                match (moving_dir, is_dir(&victim)) {
                    (true, false) => return Err(Error::NotDir),
                    (false, true) => return Err(Error::IsDir),
                    (true, true) if victim.size != 0 => return Err(Error::NotEmpty),
                    _ => {}
                }
                replaced = Some((target.ino, victim));
            }
            if moving_dir && new_dir != old_dir {
                // The VFS refuses moving a directory under itself; a
                // damaged tree must not make a loop either.
                let mut at = new_dir;
                for _ in 0..4096 {
                    if at == source.ino {
                        return Err(Error::Invalid);
                    }
                    if at == tx.sb().root_ino {
                        break;
                    }
                    at = tx.inode(at)?.parent;
                }
                if new_parent.nlink >= LINK_MAX && replaced.is_none() {
                    return Err(Error::TooManyLinks);
                }
            }

            // Remove the old name, then the replaced target's name, then
            // add the new one; reread the parents in between since they
            // may be the same inode.
            let mut parents = [(old_dir, 0i64, 0i64), (new_dir, 0, 0)];
            remove_entry(tx, old_dir, &source.key)?;
            if let Some((victim_ino, mut victim)) = replaced {
                let key = target.as_ref().map(|t| t.key).ok_or(Error::Invalid)?;
                remove_entry(tx, new_dir, &key)?;
                if is_dir(&victim) {
                    victim.nlink = 0;
                    parents[1].2 -= 1;
                } else {
                    victim.nlink = victim.nlink.saturating_sub(1);
                }
                victim.ctime = now;
                tx.put_inode(victim_ino, &victim)?;
                replaced = Some((victim_ino, victim));
                parents[1].1 -= 1;
            }
            let mut parent = tx.inode(new_dir)?;
            let mut tree = Tree::<Directory>::open(parent.map_root, new_dir);
            let (_, index) = dir_find(&tree, &TxNodes(tx), &uuid, new_name)?;
            let entry = Dirent {
                ino: source.ino,
                dtype: moved.file_type().map_or(0, FileType::dtype),
                name: new_name,
            }
            .encode()
            .ok_or(Error::Invalid)?;
            let mut store = TreeStore::new(tx, new_dir);
            tree.insert(&mut store, &dirent_key(&uuid, new_name, index), &entry)
                .map_err(tree_error)?;
            let delta = store.node_delta;
            parent.map_root = tree.root;
            parent.blocks = parent.blocks.saturating_add_signed(delta);
            tx.put_inode(new_dir, &parent)?;
            parents[0].1 -= 1;
            parents[1].1 += 1;
            if moving_dir && new_dir != old_dir {
                parents[0].2 -= 1;
                parents[1].2 += 1;
                moved.parent = new_dir;
            }
            for (ino, size_delta, link_delta) in parents {
                let mut parent = tx.inode(ino)?;
                parent.size = parent.size.saturating_add_signed(size_delta);
                parent.nlink = parent.nlink.saturating_add_signed(link_delta as i32);
                parent.mtime = now;
                parent.ctime = now;
                // With one parent both entries apply to it in turn.
                tx.put_inode(ino, &parent)?;
            }
            moved.ctime = now;
            tx.put_inode(source.ino, &moved)?;
            Ok(Renamed {
                moved: (source.ino, moved),
                replaced,
            })
        })?;
        if renamed.replaced.is_some_and(|(_, inode)| inode.nlink == 0) {
            self.orphans.fetch_add(1, Ordering::AcqRel);
        }
        Ok(renamed)
    }

    /// Calls `emit` for each entry of `dir` at or after `position`, in
    /// position order, until it returns `false`.
    ///
    /// Positions are the top 62 bits of the name hash, offset past `.` and
    /// `..`: stable across inserts and removals. Names whose hashes agree
    /// in those bits share a position and are emitted together; if `emit`
    /// stops in the middle of such a group, the next call repeats it.
    pub fn readdir(
        &self,
        dir: u64,
        position: u64,
        emit: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<(), Error> {
        let (directory, tree) = self.directory(dir)?;
        if position >= END_POSITION {
            return Ok(());
        }
        let hash_from = position.saturating_sub(FIRST_POSITION) << 2;
        let mut from = [0u8; 12];
        from[..8].copy_from_slice(&hash_from.to_be_bytes());
        let mut damaged = false;
        scan(&tree, &self.committed(), &from, &mut |key, value| {
            let Some(entry) = Dirent::decode(value) else {
                damaged = true;
                return ControlFlow::Break(());
            };
            let hash = parse_block_key(key).unwrap_or(u64::MAX);
            let at = (hash >> 2) + FIRST_POSITION;
            let reported = DirEntry {
                name: entry.name,
                ino: entry.ino,
                dtype: entry.dtype,
                position: at,
                next_cookie: at + 1,
            };
            if emit(&reported) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })?;
        if damaged {
            return Err(Error::Corrupt(directory.map_root, Damage::Record));
        }
        Ok(())
    }
}
