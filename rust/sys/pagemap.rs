// SPDX-License-Identifier: GPL-2.0

//! ZONE_DEVICE page maps (`struct dev_pagemap`): `struct page`s for device
//! memory, so that it can be mapped into page tables for DAX.

use core::{marker::PhantomData, ptr::NonNull};

use kernel::{error::from_err_ptr, prelude::*, types::Opaque};

use crate::{ffi, sys::once::Stages};

/// Who hears about memory failures in the mapped pages.
pub(crate) trait MemoryFailure: Sync {
    /// `nr_pages` pages from `pfn` failed; `mf_flags` are `MF_*`. Returns 0
    /// when handled, or an errno (`EOPNOTSUPP` lets the kernel fall back to
    /// its generic handling).
    fn memory_failure(&self, pfn: u64, nr_pages: u64, mf_flags: i32) -> Result;
}

/// An owner that embeds the [`PageMap`] whose pages call back into it: the
/// pages then point at the allocation that holds them, which
/// [`PageMap::map`] finds from the owner itself.
///
/// # Safety
///
/// `page_map` always returns the same field of `self` (so pinning `self`
/// pins it), and `Self` unmaps it ([`PageMap::unmap`], in its `Drop` or
/// `PinnedDrop`) before any other part of it is dropped: callbacks stop
/// before anything they reach goes.
pub(crate) unsafe trait HasPageMap: MemoryFailure + Sized {
    /// The embedded page map.
    fn page_map(&self) -> &PageMap<Self>;
}

/// A page map of type `MEMORY_DEVICE_FS_DAX` over one physical range, its
/// memmap in RAM. Pinned: the kernel points at it from every `struct page`.
///
/// # Invariants
///
/// `pgmap` is pinned; `stages` says whether it was mapped and unmapped.
/// Once mapped, its `owner` is the pinned `T` that embeds it
/// ([`HasPageMap`]), which unmaps it before anything of the `T` goes.
#[pin_data(PinnedDrop)]
pub(crate) struct PageMap<T: HasPageMap> {
    #[pin]
    pgmap: Opaque<ffi::dev_pagemap>,
    /// The page frames of the range.
    first_pfn: u64,
    pages: u64,
    /// Mapped once, unmapped once.
    stages: Stages,
    _owner: PhantomData<T>,
}

// SAFETY: The page map is set up once and torn down once (`map` and
// `unmap`, which `stages` lets run once each) and otherwise only read by
// the kernel.
unsafe impl<T: HasPageMap> Send for PageMap<T> {}
// SAFETY: `&PageMap` writes the `dev_pagemap` only in `map`, before any of
// its pages exist, and in `unmap`, each once (`stages`); otherwise the
// kernel only reads it. The callback's `&T` may be used on any CPU:
// `T: Sync`.
unsafe impl<T: HasPageMap> Sync for PageMap<T> {}

impl<T: HasPageMap> PageMap<T> {
    const OPS: ffi::dev_pagemap_ops = ffi::dev_pagemap_ops {
        page_free: None,
        migrate_to_ram: None,
        memory_failure: Some(memory_failure_callback::<T>),
    };

    /// An unmapped page map for `[phys, phys + len)`.
    pub(crate) fn new(phys: u64, len: u64) -> impl PinInit<Self> {
        pin_init!(Self {
            pgmap <- Opaque::ffi_init(move |slot: *mut ffi::dev_pagemap| {
                // SAFETY: `slot` is valid for writes; all-zero is a valid
                // `dev_pagemap` (no altmap, no flags).
                unsafe {
                    slot.write(core::mem::zeroed());
                    (*slot).type_ = ffi::memory_type_MEMORY_DEVICE_FS_DAX;
                    (*slot).ops = &Self::OPS;
                    (*slot).nr_range = 1;
                    // `range` shares a union with the `ranges` flexible array.
                    *(*slot).__bindgen_anon_1.range.as_mut() = ffi::range {
                        start: phys,
                        end: phys + len - 1,
                    };
                }
            }),
            first_pfn: phys >> kernel::page::PAGE_SHIFT,
            pages: len >> kernel::page::PAGE_SHIFT,
            stages: Stages::new(),
            _owner: PhantomData,
        })
    }

    /// Creates the `struct page`s of `owner`'s page map and maps its range;
    /// memory failures in it go to `owner` from now on. Returns the range's
    /// kernel address. Once only: `EBUSY` for a second call, or one after
    /// `unmap`.
    pub(crate) fn map(owner: Pin<&T>) -> Result<NonNull<u8>> {
        let owner = owner.get_ref();
        let this = owner.page_map();
        // Mapped once: never again, nor after `unmap`.
        this.stages.set_up(|| {
            let pgmap = this.pgmap.get();
            // SAFETY: `pgmap` is initialized and pinned (a field of the
            // pinned `owner`: `HasPageMap`), and `stages` says no other call
            // maps or mapped it, so nothing reads `owner` while it is
            // written. `owner` stays where it is and whole until the map is
            // unmapped, which `unmap` does only after running callbacks
            // returned: it is pinned and unmaps its page map before any of
            // it is dropped (`HasPageMap`'s `# Safety`).
            // NUMA_NO_NODE lets the kernel choose.
            let addr = unsafe {
                (*pgmap).owner = core::ptr::from_ref(owner).cast_mut().cast();
                from_err_ptr(ffi::memremap_pages(pgmap, -1))?
            };
            let Some(addr) = NonNull::new(addr.cast::<u8>()) else {
                // SAFETY: Mapped just above, and not published: undone once.
                unsafe { ffi::memunmap_pages(pgmap) };
                return Err(ENOMEM);
            };
            Ok(addr)
        })
    }

    /// Whether `nr_pages` frames from `pfn` are pages of this map while it
    /// is mapped (their `struct page`s exist).
    fn has_pages(&self, pfn: u64, nr_pages: u64) -> bool {
        self.stages.is_live()
            && pfn
                .checked_sub(self.first_pfn)
                .and_then(|page| page.checked_add(nr_pages))
                .is_some_and(|end| end <= self.pages)
    }

    /// Whether any of `nr_pages` pages from `pfn` is marked HWPoison (the
    /// kernel saw it fail: a machine check or an injected failure). Frames
    /// that are not this map's count as failed.
    pub(crate) fn any_hwpoisoned(&self, pfn: u64, nr_pages: u64) -> bool {
        if !self.has_pages(pfn, nr_pages) {
            return true;
        }
        // SAFETY: The frames are this map's and it is mapped, so their
        // `struct page`s exist; the helper only reads their flags.
        unsafe { ffi::oxdax_any_page_hwpoisoned(pfn as _, nr_pages as _) }
    }

    /// Makes this map's pages whose poison was cleared usable again: clears
    /// their HWPoison flag and restores their direct mapping. Frames that
    /// are not this map's are left alone.
    pub(crate) fn mark_present(&self, pfn: u64, nr_pages: u64) {
        if self.has_pages(pfn, nr_pages) {
            // SAFETY: The frames are this map's and it is mapped, so their
            // `struct page`s exist for the helper to update.
            unsafe { ffi::oxdax_pmem_mkpage_present(pfn as _, nr_pages as _) };
        }
    }

    /// Bytes of the range.
    pub(crate) fn len(&self) -> u64 {
        self.pages << kernel::page::PAGE_SHIFT
    }
}

/// # Safety
///
/// Called by the memory-failure code with a page map created by `PageMap`
/// and mapped with an owner of type `T`.
unsafe extern "C" fn memory_failure_callback<T: HasPageMap>(
    pgmap: *mut ffi::dev_pagemap,
    pfn: kernel::ffi::c_ulong,
    nr_pages: kernel::ffi::c_ulong,
    mf_flags: kernel::ffi::c_int,
) -> kernel::ffi::c_int {
    // SAFETY: Only `PageMap::<T>::map` installs `PageMap::<T>::OPS`, whose
    // callback this is, and it set `owner` to the pinned `T` embedding the
    // page map before any page existed; that `T` stays whole until it
    // unmaps the page map (`HasPageMap`), which waits for running callbacks
    // such as this one.
    let owner = unsafe { &*(*pgmap).owner.cast::<T>() };
    match owner.memory_failure(pfn as u64, nr_pages as u64, mf_flags) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

impl<T: HasPageMap> PageMap<T> {
    /// Removes the pages (idempotent). Waits for every page reference and
    /// every running `memory_failure` callback to finish, so the owner may
    /// go once this returns. The owner's users of the pages (the DAX
    /// device's holder) must be gone first.
    pub(crate) fn unmap(&self) {
        self.stages.tear_down(|| {
            // SAFETY: `map` succeeded (`stages`), and this runs once.
            unsafe { ffi::memunmap_pages(self.pgmap.get()) };
        });
    }
}

#[pinned_drop]
impl<T: HasPageMap> PinnedDrop for PageMap<T> {
    fn drop(self: Pin<&mut Self>) {
        self.unmap();
    }
}
