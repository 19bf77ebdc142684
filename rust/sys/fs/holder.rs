// SPDX-License-Identifier: GPL-2.0

//! A mounted filesystem as the holder of its DAX device: memory failures
//! the device reports reach the filesystem's [`HolderOperations`] with
//! the super block pinned by an active reference. The registry itself is
//! the DAX side's (rust/sys/dax/holder.rs).
//!
//! Locking: `dax_failure` runs with no VFS or registry lock held, inside
//! the DAX core's SRCU read section, with an active reference on the
//! super block (unmount waits for it).

use kernel::{build_error, error::VTABLE_DEFAULT_ERROR};
use kernel::{prelude::*, sync::Arc};

use super::{super_block::ActiveSuperBlock, FileSystem, Operations, Registration, SuperBlock};
use crate::{
    ffi,
    sys::dax::holder::{Holder, Holders},
};

/// What a filesystem does as the holder of its DAX device.
#[vtable]
pub(crate) trait HolderOperations: FileSystem {
    /// The DAX device reports failed memory at device bytes
    /// `offset..offset + len` (`mf_flags`: `MF_*`; `MF_MEM_PRE_REMOVE`: the
    /// whole device is going away). `sb` is mounted and stays so during the
    /// call. `EOPNOTSUPP` leaves the failure to the kernel, as leaving this
    /// method out does.
    fn dax_failure(
        _sb: &SuperBlock<Self>,
        _info: &Self::Info,
        _offset: u64,
        _len: u64,
        _mf_flags: i32,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// A mounted super block of `T` in the holder registry.
pub(super) struct SuperBlockHolder<T: FileSystem> {
    /// The super block (a `*mut super_block`, kept as an address so the
    /// entry is `Send`): valid while the entry is registered, which
    /// `put_super` (or `kill_sb` for a failed mount) ends before the super
    /// block is freed.
    sb: usize,
    info: Arc<T::Info>,
}

impl<T: FileSystem> SuperBlockHolder<T> {
    /// The entry of `sb`, a super block of `T` that registers it in
    /// `fill_super` and removes it before it is freed.
    pub(super) fn new(sb: &SuperBlock<T>, info: Arc<T::Info>) -> Self {
        Self {
            sb: sb.as_ptr() as usize,
            info,
        }
    }
}

impl<T: Operations> Holder for SuperBlockHolder<T> {
    type Active = (ActiveSuperBlock<T>, Arc<T::Info>);

    fn registry() -> Option<&'static Holders<Self>> {
        Registration::<T>::holders()
    }

    /// The super block with an active reference: `EBUSY` if its mount has
    /// not finished or its unmount began (nothing maps its files then, but
    /// pages may still be associated with them, which the kernel's generic
    /// handling must not see: it takes the shared-page marker for a
    /// mapping).
    fn activate(&self) -> Result<Self::Active> {
        let sb = self.sb as *mut ffi::super_block;
        // SAFETY: The entry is registered (the registry calls this under
        // its lock), so the super block is not freed: `release_info`
        // removes the entry, under that lock, before it is.
        let active = unsafe { ActiveSuperBlock::get(sb) }.ok_or(EBUSY)?;
        Ok((active, self.info.clone()))
    }

    fn notify_failure((sb, info): &Self::Active, offset: u64, len: u64, mf_flags: i32) -> Result {
        if !T::HAS_DAX_FAILURE {
            return Err(crate::sys::errno::eopnotsupp());
        }
        T::dax_failure(sb, info, offset, len, mf_flags)
    }
}
