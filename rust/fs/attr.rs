// SPDX-License-Identifier: GPL-2.0

//! oxdax inode attributes ([`AttrOperations`]): `setattr` (chmod, chown,
//! utimes, truncate and extension) and `update_time`.
//!
//! Locking: `setattr` runs under i_rwsem; a size change also holds faults
//! off the affected pages (the invalidate lock, [`super::mmap::quiesce`])
//! while the volume changes the blocks. `update_time` runs without i_rwsem
//! and changes only the times.

use kernel::prelude::*;

use super::mutex_stats::Use;
use super::{
    info::{inode_info, refresh, refresh_times, OxdaxFs},
    mmap::{self, Quiet},
};
use crate::{
    logic::fs::AttrChange,
    sys::fs::{AttrOperations, Inode},
};

#[vtable]
impl AttrOperations for OxdaxFs {
    fn setattr(inode: &Inode<Self>, change: &AttrChange) -> Result {
        let info = inode_info(inode)?;
        let ino = inode.ino();
        // Shrinking: nothing may map the pages past the new end when
        // their blocks are freed (private copies there go too: SIGBUS), nor
        // the page of the new end, whose tail is zeroed (in a copy if it is
        // shared). Growing: the old end's page, whose tail is zeroed.
        let shrinking = change.size.is_some_and(|size| size < inode.size());
        let quiet = match change.size {
            Some(size) if size < inode.size() => Some(Quiet::truncation(size)),
            Some(size) if size > inode.size() => Quiet::growth(inode.size()),
            _ => None,
        };
        let _faults_off = quiet.map(|range| mmap::quiesce(inode, range)).transpose()?;
        // Shown with the volume held (`refresh`); after a failure too, as
        // the VFS inode may already show the change.
        info.call_mut(Use::Write, |v| {
            let result = v.set_attr(ino, change);
            if let Ok(record) = result.or_else(|_| v.inode(ino)) {
                refresh(v, inode, &record);
            }
            result.map(|_| ())
        })?;
        if shrinking {
            info.compact_soon();
        }
        Ok(())
    }

    fn update_time(inode: &Inode<Self>, change: &AttrChange) -> Result {
        // Called without i_rwsem (page faults, reads): only the times
        // change, and only they are copied back; the record's size may
        // already be older than a concurrent write's.
        let info = inode_info(inode)?;
        let ino = inode.ino();
        info.call_mut(Use::Times, |v| {
            // Read again with the volume lock held: no record committed
            // before this one carries a later time. Then the VFS inode's
            // times, even copied back late by an i_rwsem holder, are never
            // later than the record's, which `write(2)` relies on to skip
            // the volume when they are already now.
            let now = inode.now();
            let change = AttrChange {
                atime: change.atime.map(|_| now),
                mtime: change.mtime.map(|_| now),
                ctime: change.ctime.map(|_| now),
                ..*change
            };
            let record = v.set_attr(ino, &change)?;
            refresh_times(v, inode, &record);
            Ok(())
        })
    }
}
