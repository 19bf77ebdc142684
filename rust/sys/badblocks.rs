// SPDX-License-Identifier: GPL-2.0

//! `struct badblocks`: a device's list of known-bad sectors.

use kernel::{error::to_result, prelude::*, types::Opaque};

use crate::{ffi, sys::nd::Region};

/// A bad-block list. Pinned: the gendisk and libnvdimm keep pointers to it.
///
/// # Invariants
///
/// The list was initialized by `new` and is released (`badblocks_exit`)
/// only in `drop`.
#[pin_data(PinnedDrop)]
pub(crate) struct BadBlocks {
    #[pin]
    list: Opaque<ffi::badblocks>,
}

// SAFETY: `badblocks_*` functions take the list's own seqlock; the list may
// be used from any thread.
unsafe impl Send for BadBlocks {}
// SAFETY: Shared use only calls `badblocks_check`, `badblocks_clear` and
// `nvdimm_badblocks_populate`, which take the list's seqlock (`bb->lock`), or
// reads `count` racily on purpose (`is_empty`); init and exit are not shared.
unsafe impl Sync for BadBlocks {}

impl BadBlocks {
    /// An empty, enabled list.
    pub(crate) fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            // SAFETY: `slot` is valid for writes; on error nothing was
            // allocated and the memory may be reused.
            list <- unsafe {
                kernel::init::pin_init_from_closure(|slot: *mut Opaque<ffi::badblocks>| {
                    to_result(ffi::badblocks_init(Opaque::raw_get(slot), 1))
                })
            },
        })
    }

    /// The list, for the gendisk and libnvdimm.
    pub(crate) fn as_ptr(&self) -> *mut ffi::badblocks {
        self.list.get()
    }

    /// Whether any sector is listed (a cheap test before a range check).
    pub(crate) fn is_empty(&self) -> bool {
        // SAFETY: The list is initialized; `count` is read racily on purpose,
        // as the block layer and pmem do: a stale answer is as good as one
        // from a moment earlier.
        unsafe { core::ptr::read_volatile(&raw const (*self.as_ptr()).count) == 0 }
    }

    /// The first bad sector in `[sector, sector + sectors)` and how many bad
    /// sectors follow it, if any.
    pub(crate) fn first_bad(&self, sector: u64, sectors: u64) -> Option<(u64, u64)> {
        if self.is_empty() {
            return None;
        }
        let sectors = i32::try_from(sectors).unwrap_or(i32::MAX);
        let mut first_bad: u64 = 0;
        let mut bad_sectors: i32 = 0;
        // SAFETY: The list is initialized and the out pointers are valid.
        let ret = unsafe {
            ffi::badblocks_check(
                self.as_ptr(),
                sector,
                sectors,
                &mut first_bad,
                &mut bad_sectors,
            )
        };
        (ret != 0).then(|| (first_bad, u64::from(bad_sectors.unsigned_abs())))
    }

    /// Removes `[sector, sector + sectors)` from the list.
    pub(crate) fn clear(&self, sector: u64, sectors: u64) {
        let Ok(sectors) = i32::try_from(sectors) else {
            return;
        };
        if sectors == 0 {
            return;
        }
        // SAFETY: The list is initialized. A failure (no memory to split an
        // entry) leaves the range listed, the safe side.
        unsafe { ffi::badblocks_clear(self.as_ptr(), sector, sectors) };
    }

    /// Refills the list from the bus's record of media errors in the
    /// physical range `[start, end]` (inclusive, as `struct range`).
    pub(crate) fn populate(&self, region: &Region, start: u64, end: u64) {
        let range = ffi::range { start, end };
        // SAFETY: `region` is live and enabled (`Region` invariant: a
        // `&Region` lives no longer than its namespace's binding), the list
        // is initialized (type invariant), and `range` is a valid pointer
        // for the call.
        unsafe { ffi::nvdimm_badblocks_populate(region.as_ptr().cast(), self.as_ptr(), &range) };
    }
}

#[pinned_drop]
impl PinnedDrop for BadBlocks {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: The list was initialized by `new` and nobody uses it any
        // more: its users (gendisk, device) are gone before it is dropped.
        unsafe { ffi::badblocks_exit(self.as_ptr()) };
    }
}
