// SPDX-License-Identifier: GPL-2.0

//! oxdax directories ([`DirOperations`]): lookup, creation, links,
//! removal, rename and `readdir`, each one volume transaction, with the
//! changed records copied back into the VFS inodes.
//!
//! Locking: the VFS holds the directories' (and victims') i_rwsem; each
//! change is one [`Info::call_mut`](super::info::Info::call_mut). `readdir`
//! gathers entries under the volume lock and emits them without it
//! (emitting copies to user memory, which may fault).

use kernel::prelude::*;

use super::info::{attributes, in_directory, inode_info, refresh, refresh_checked, OxdaxFs};
use super::mutex_stats::Use;
use crate::{
    logic::fs::{Error as FsError, NewInode, RenameFlags, END_POSITION, FIRST_POSITION},
    sys::fs::{Attributes, DirContext, DirOperations, Inode, NewOwner},
};

/// Bytes of directory entries gathered per volume call in `readdir`.
const READDIR_BATCH: usize = 4096;

#[vtable]
impl DirOperations for OxdaxFs {
    fn lookup(dir: &Inode<Self>, name: &[u8]) -> Result<Option<u64>> {
        let info = inode_info(dir)?;
        info.call(Use::Namespace, |v| match v.lookup(dir.ino(), name) {
            Ok(ino) => Ok(Some(ino)),
            Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn create(dir: &Inode<Self>, name: &[u8], owner: &NewOwner) -> Result<(u64, Attributes)> {
        let info = inode_info(dir)?;
        let new = NewInode {
            mode: owner.mode,
            uid: owner.uid,
            gid: owner.gid,
            rdev: owner.rdev,
            now: dir.now(),
        };
        let (ino, record) = in_directory(info, dir, |v| v.create(dir.ino(), name, &new))?;
        Ok((ino, attributes(&record)))
    }

    fn link(inode: &Inode<Self>, dir: &Inode<Self>, name: &[u8]) -> Result {
        let info = inode_info(dir)?;
        let now = dir.now();
        in_directory(info, dir, |v| {
            let record = v.link(inode.ino(), dir.ino(), name, now)?;
            refresh(v, inode, &record);
            Ok(())
        })
    }

    fn unlink(dir: &Inode<Self>, name: &[u8], victim: &Inode<Self>) -> Result {
        let info = inode_info(dir)?;
        let now = dir.now();
        in_directory(info, dir, |v| {
            let unlinked = v.unlink(dir.ino(), name, now)?;
            refresh_checked(v, info, victim, unlinked.ino, &unlinked.inode);
            Ok(())
        })
    }

    fn rmdir(dir: &Inode<Self>, name: &[u8], victim: &Inode<Self>) -> Result {
        let info = inode_info(dir)?;
        let now = dir.now();
        in_directory(info, dir, |v| {
            let unlinked = v.rmdir(dir.ino(), name, now)?;
            refresh_checked(v, info, victim, unlinked.ino, &unlinked.inode);
            Ok(())
        })
    }

    fn rename(
        old_dir: &Inode<Self>,
        old_name: &[u8],
        moved: &Inode<Self>,
        new_dir: &Inode<Self>,
        new_name: &[u8],
        replaced: Option<&Inode<Self>>,
        no_replace: bool,
    ) -> Result {
        let info = inode_info(old_dir)?;
        let now = old_dir.now();
        let same_dir = old_dir.ino() == new_dir.ino();
        info.call_mut(Use::Namespace, |v| {
            let renamed = v.rename(
                old_dir.ino(),
                old_name,
                new_dir.ino(),
                new_name,
                RenameFlags { no_replace },
                now,
            )?;
            // Shown with the volume held (`refresh`).
            refresh_checked(v, info, moved, renamed.moved.0, &renamed.moved.1);
            match (replaced, renamed.replaced) {
                (Some(inode), Some((ino, record))) => refresh_checked(v, info, inode, ino, &record),
                (None, None) => {}
                _ => pr_err!(
                    "{}: rename target in directory {} disagrees with the dentry cache\n",
                    info.id(),
                    new_dir.ino()
                ),
            }
            if let Ok(record) = v.inode(old_dir.ino()) {
                refresh(v, old_dir, &record);
            }
            if !same_dir {
                if let Ok(record) = v.inode(new_dir.ino()) {
                    refresh(v, new_dir, &record);
                }
            }
            Ok(())
        })
    }

    fn readdir(dir: &Inode<Self>, ctx: &mut DirContext<'_>) -> Result {
        let info = inode_info(dir)?;
        let ino = dir.ino();
        let mut pos = ctx.pos().max(FIRST_POSITION);
        if pos >= END_POSITION {
            return Ok(());
        }
        // Entries are gathered under the volume lock, then emitted without
        // it: emitting copies to user memory, which may fault.
        loop {
            let mut batch = KVec::with_capacity(READDIR_BATCH, GFP_KERNEL)?;
            let mut complete = true;
            info.call(Use::Namespace, |v| {
                v.readdir(ino, pos, &mut |entry| {
                    let Ok(len) = u8::try_from(entry.name.len()) else {
                        return true;
                    };
                    let need = 18 + entry.name.len();
                    if READDIR_BATCH - batch.len() < need {
                        complete = false;
                        return false;
                    }
                    // Capacity was checked: these do not allocate.
                    let fits = batch
                        .extend_from_slice(&entry.ino.to_le_bytes(), GFP_NOWAIT)
                        .and_then(|()| {
                            batch.extend_from_slice(&entry.next_cookie.to_le_bytes(), GFP_NOWAIT)
                        })
                        .and_then(|()| batch.extend_from_slice(&[entry.dtype, len], GFP_NOWAIT))
                        .and_then(|()| batch.extend_from_slice(entry.name, GFP_NOWAIT));
                    if fits.is_err() {
                        complete = false;
                    }
                    fits.is_ok()
                })
            })?;
            let mut rest: &[u8] = &batch;
            let mut emitted = false;
            while let Some((entry, tail)) = decode_entry(rest) {
                if !ctx.emit(entry.name, entry.ino, entry.dtype) {
                    return Ok(());
                }
                ctx.set_pos(entry.next_cookie);
                pos = entry.next_cookie;
                rest = tail;
                emitted = true;
            }
            if complete {
                ctx.set_pos(END_POSITION);
                return Ok(());
            }
            if !emitted {
                return Err(EIO);
            }
        }
    }
}

/// A directory entry as a readdir batch holds it.
struct BatchEntry<'a> {
    ino: u64,
    next_cookie: u64,
    dtype: u8,
    name: &'a [u8],
}

/// The first entry of a readdir batch, and the rest of the batch.
fn decode_entry(bytes: &[u8]) -> Option<(BatchEntry<'_>, &[u8])> {
    let ino = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let next_cookie = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    let dtype = *bytes.get(16)?;
    let len = usize::from(*bytes.get(17)?);
    let name = bytes.get(18..18 + len)?;
    let entry = BatchEntry {
        ino,
        next_cookie,
        dtype,
        name,
    };
    Some((entry, bytes.get(18 + len..)?))
}
