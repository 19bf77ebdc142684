// SPDX-License-Identifier: GPL-2.0

//! The holder registry: who holds each DAX device, so that a memory
//! failure the device reports (`dax_holder_operations::notify_failure`)
//! reaches that holder, pinned for the call.
//!
//! The DAX core hands the callback the device, not its holder in a form
//! that is safe to use: a holder pointer stays set until `fs_put_dax`,
//! while the holder (a mounted filesystem) may already be unmounting. The
//! registry maps each held device to its holder under a mutex, and pins
//! the holder ([`Holder::activate`]) before the lock is dropped.
//!
//! Locking: the registry mutex is taken with no other lock held and held
//! only to look up, add or remove an entry; the report itself runs with no
//! registry lock held.

use core::marker::PhantomData;

use kernel::{new_mutex, prelude::*, sync::Mutex};

use crate::{ffi, sys::errno::eopnotsupp};

/// A holder of DAX devices: the registry keeps one per device held.
pub(crate) trait Holder: Send + Sync + Sized + 'static {
    /// The holder pinned for one failure report (a mounted super block with
    /// an active reference, say).
    type Active;

    /// The registry of this holder type, while it exists. The C callback
    /// finds it here rather than through the holder pointer, which may
    /// outlive what it points to.
    fn registry() -> Option<&'static Holders<Self>>;

    /// Pins the holder for a report (called under the registry mutex, so the
    /// holder is still registered). `EBUSY` if it is coming or going.
    fn activate(&self) -> Result<Self::Active>;

    /// Memory at device bytes `offset..offset + len` failed (`mf_flags`:
    /// `MF_*`). `EOPNOTSUPP` leaves the failure to the kernel.
    fn notify_failure(active: &Self::Active, offset: u64, len: u64, mf_flags: i32) -> Result;
}

/// One held device.
struct Entry<H> {
    /// The device, as an identity only (never dereferenced).
    dax: usize,
    holder: H,
}

/// The devices held by holders of type `H`.
#[pin_data]
pub(crate) struct Holders<H: Holder> {
    #[pin]
    entries: Mutex<KVec<Option<Entry<H>>>>,
}

impl<H: Holder> Holders<H> {
    /// An empty registry.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            entries <- new_mutex!(KVec::new(), "oxdax_dax_holders"),
        })
    }

    /// Records that `holder` holds device `dax`.
    pub(crate) fn add(&self, dax: &super::FsDax, holder: H) -> Result {
        let entry = Entry {
            dax: dax.as_ptr() as usize,
            holder,
        };
        let mut entries = self.entries.lock();
        match entries.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(entry),
            None => entries.push(Some(entry), GFP_KERNEL)?,
        }
        Ok(())
    }

    /// Forgets the holder of `dax`; returns it, to be dropped by the
    /// caller (outside the registry lock: it may hold the last reference
    /// to a mount's state).
    pub(crate) fn remove(&self, dax: &super::FsDax) -> Option<H> {
        let dax = dax.as_ptr() as usize;
        let mut entries = self.entries.lock();
        entries
            .iter_mut()
            .find(|slot| slot.as_ref().is_some_and(|e| e.dax == dax))
            .and_then(Option::take)
            .map(|entry| entry.holder)
    }

    /// The holder of `dax`, pinned. `EOPNOTSUPP` if nobody holds it.
    fn active(&self, dax: usize) -> Result<H::Active> {
        let entries = self.entries.lock();
        entries
            .iter()
            .flatten()
            .find(|e| e.dax == dax)
            .ok_or_else(eopnotsupp)?
            .holder
            .activate()
    }

    /// What to pass as holder and holder operations when taking a device
    /// (`fs_dax_get_by_bdev`). The callback does not use the holder
    /// pointer; the DAX core compares it at release.
    pub(crate) fn holder(&self) -> (*mut kernel::ffi::c_void, *const ffi::dax_holder_operations) {
        (
            core::ptr::from_ref(self).cast_mut().cast(),
            &HolderOps::<H>::OPS,
        )
    }
}

/// The DAX holder operations of holder type `H`.
struct HolderOps<H>(PhantomData<H>);

impl<H: Holder> HolderOps<H> {
    const OPS: ffi::dax_holder_operations = ffi::dax_holder_operations {
        notify_failure: Some(notify_failure_callback::<H>),
    };
}

/// # Safety
///
/// Called by the DAX core, within its SRCU read section, for a device a
/// holder of type `H` holds or held.
unsafe extern "C" fn notify_failure_callback<H: Holder>(
    dax: *mut ffi::dax_device,
    offset: u64,
    len: u64,
    mf_flags: kernel::ffi::c_int,
) -> kernel::ffi::c_int {
    let Some(registry) = H::registry() else {
        return eopnotsupp().to_errno();
    };
    let result = registry
        .active(dax as usize)
        .and_then(|active| H::notify_failure(&active, offset, len, mf_flags));
    match result {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}
