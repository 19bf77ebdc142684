// SPDX-License-Identifier: GPL-2.0

//! Memory mappings of files: the page fault being served ([`VmFault`]),
//! the mapping entries a DAX file keeps in `mapping->i_pages`
//! ([`Entries`]), and the locks around them.

use core::{
    marker::PhantomData,
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use kernel::{prelude::*, types::Opaque};

use crate::{
    ffi,
    logic::dax::{Entry, Window, PUD_PAGES},
    sys::dax::{DeviceFrame, DeviceFrames},
};

/// `vm_fault_t` bits, as returned to core mm.
pub(crate) type FaultCode = ffi::vm_fault_t;
/// The fault was served: retry the access.
pub(crate) const FAULT_NOPAGE: FaultCode = ffi::vm_fault_reason_VM_FAULT_NOPAGE;
/// Bus error: past the end of file, or an I/O error.
pub(crate) const FAULT_SIGBUS: FaultCode = ffi::vm_fault_reason_VM_FAULT_SIGBUS;
/// Out of memory.
pub(crate) const FAULT_OOM: FaultCode = ffi::vm_fault_reason_VM_FAULT_OOM;
/// Map 4 KiB pages instead.
pub(crate) const FAULT_FALLBACK: FaultCode = ffi::vm_fault_reason_VM_FAULT_FALLBACK;
/// Poisoned memory.
pub(crate) const FAULT_HWPOISON: FaultCode = ffi::vm_fault_reason_VM_FAULT_HWPOISON;

/// `PAGECACHE_TAG_DIRTY` (`XA_MARK_0`; a cast in a macro, which bindgen
/// cannot evaluate).
const TAG_DIRTY: ffi::xa_mark_t = 0;
/// `PAGECACHE_TAG_TOWRITE` (`XA_MARK_2`).
const TAG_TOWRITE: ffi::xa_mark_t = 2;
/// `XA_PRESENT`: any entry.
const XA_PRESENT: ffi::xa_mark_t = 8;

/// The fault errno of an error.
pub(crate) fn fault_code(e: Error) -> FaultCode {
    if e == ENOMEM {
        FAULT_OOM
    } else if e == crate::sys::errno::ehwpoison() {
        FAULT_HWPOISON
    } else {
        FAULT_SIGBUS
    }
}

/// A page fault on a file mapping, handed out as a reference for the
/// fault callback.
///
/// # Invariants
///
/// The wrapped `vm_fault` is the live fault of a `vm_operations_struct`
/// callback for the lifetime of every reference to this wrapper, with the
/// mmap lock or the VMA lock held, so that its VMA, the VMA's file (a
/// reference of the VMA) and that file's inode are live and the VMA's
/// bounds and flags stable.
#[repr(transparent)]
pub(crate) struct VmFault(Opaque<ffi::vm_fault>);

impl VmFault {
    /// The wrapper of a raw fault.
    ///
    /// # Safety
    ///
    /// `raw` is the live `vm_fault` of a `vm_operations_struct` callback
    /// (mmap lock or VMA lock held) and `'a` ends before the callback
    /// returns.
    pub(crate) unsafe fn from_raw<'a>(raw: *mut ffi::vm_fault) -> &'a Self {
        // SAFETY: `VmFault` is a transparent wrapper of the fault, which is
        // live for `'a` (this function's `# Safety`).
        unsafe { &*raw.cast::<Self>() }
    }

    /// The raw fault, for the kernel's DAX fault path.
    pub(crate) fn as_ptr(&self) -> *mut ffi::vm_fault {
        self.0.get()
    }

    fn vma(&self) -> *mut ffi::vm_area_struct {
        // SAFETY: Live for the callback (type invariant).
        unsafe { (*self.as_ptr()).__bindgen_anon_1.vma }
    }

    fn vma_flags(&self) -> u64 {
        // SAFETY: The VMA of a fault is live and its flags stable while
        // the mmap (or VMA) lock is held.
        unsafe { ffi::oxdax_vma_flags(self.vma()) as u64 }
    }

    /// File page of the faulting address.
    pub(crate) fn index(&self) -> u64 {
        // SAFETY: Live for the callback.
        unsafe { (*self.as_ptr()).__bindgen_anon_1.pgoff as u64 }
    }

    /// The faulting address, page aligned.
    pub(crate) fn address(&self) -> u64 {
        // SAFETY: Live for the callback.
        unsafe { (*self.as_ptr()).__bindgen_anon_1.address as u64 }
    }

    /// The access writes.
    pub(crate) fn is_write(&self) -> bool {
        // SAFETY: Live for the callback.
        unsafe { (*self.as_ptr()).flags & ffi::fault_flag_FAULT_FLAG_WRITE != 0 }
    }

    /// A shared mapping.
    pub(crate) fn is_shared(&self) -> bool {
        self.vma_flags() & u64::from(ffi::VM_SHARED) != 0
    }

    /// A `MAP_SYNC` mapping.
    pub(crate) fn is_sync(&self) -> bool {
        self.vma_flags() & u64::from(ffi::VM_SYNC) != 0
    }

    /// The mapping as the PMD check needs it.
    pub(crate) fn window(&self) -> Window {
        let vma = self.vma();
        // SAFETY: Live for the callback; bounds are stable under its lock.
        let (start, end) = unsafe {
            let bounds = (*vma).__bindgen_anon_1.__bindgen_anon_1;
            (bounds.vm_start as u64, bounds.vm_end as u64)
        };
        Window {
            start,
            end,
            address: self.address(),
            index: self.index(),
            shared: self.is_shared(),
        }
    }

    /// Freeze protection for a write fault (`sb_start_pagefault`), until
    /// the guard is dropped.
    pub(crate) fn start_write(&self) -> PagefaultGuard {
        // SAFETY: The VMA's file is open, its inode and super block live.
        let sb = unsafe { (*(*(*self.vma()).vm_file).f_inode).i_sb };
        // SAFETY: A live super block; may sleep (process context).
        unsafe { ffi::oxdax_sb_start_pagefault(sb) };
        PagefaultGuard { sb }
    }

    /// Updates the file's modification times for a write fault, as
    /// `write(2)` would (`file_update_time`; failures only lose times).
    pub(crate) fn update_time(&self) {
        // SAFETY: The VMA's file is open for the fault's duration.
        let _ = unsafe { ffi::file_update_time((*self.vma()).vm_file) };
    }

    /// Maps `frame` (device memory) at the faulting address, read-only in
    /// a mapping that tracks writes (`pfn_mkwrite` makes it writable).
    pub(crate) fn insert_page(&self, frame: DeviceFrame) -> FaultCode {
        let pfn = ffi::pfn_t {
            // SAFETY: Pure computation of the devmap pfn_t of a frame.
            val: unsafe { ffi::oxdax_pfn_t_dev(frame.number() as _) },
        };
        // SAFETY: The VMA and address are the live fault's (type
        // invariant); `frame` is device memory (`DeviceFrame` invariant),
        // ZONE_DEVICE pages that may be mapped into user space, inserted as
        // a devmap pfn (what vmf_insert_mixed accepts without VM_MIXEDMAP).
        unsafe { ffi::vmf_insert_mixed(self.vma(), self.address() as _, pfn) }
    }

    /// Makes the PTE that maps `frame` at the faulting address writable
    /// (after `insert_page`, for a write fault whose entry is tagged
    /// dirty). `false` if it is not there any more: the store faults again.
    pub(crate) fn make_writable(&self, frame: DeviceFrame) -> bool {
        // SAFETY: The fault's mm and VMA are live and locked (mmap or VMA
        // lock, type invariant); the helper only upgrades a present PTE of
        // this frame.
        unsafe { ffi::oxdax_pte_mkwrite(self.as_ptr(), frame.number() as _) }
    }

    /// Maps the zero page at the faulting address.
    pub(crate) fn insert_zero_page(&self) -> FaultCode {
        // SAFETY: The zero page may be mapped anywhere, read-only.
        unsafe {
            let frame = ffi::oxdax_zero_pfn(self.address() as _);
            ffi::vmf_insert_mixed(
                self.vma(),
                self.address() as _,
                ffi::pfn_t { val: frame as _ },
            )
        }
    }

    /// The zero page's frame for this address (architectures may colour it).
    pub(crate) fn zero_frame(&self) -> u64 {
        // SAFETY: Pure computation.
        unsafe { ffi::oxdax_zero_pfn(self.address() as _) as u64 }
    }

    /// Maps 2 MiB of device memory from `frame` (made by
    /// [`DeviceFrames::pmd`](crate::sys::dax::DeviceFrames::pmd): aligned,
    /// all device memory) at the faulting PMD, writable if `write`;
    /// `FAULT_FALLBACK` if the PMD does not fit inside the VMA.
    pub(crate) fn insert_pmd(&self, frame: DeviceFrame, write: bool) -> FaultCode {
        let Some(pfn) = self.huge_pfn(frame, crate::logic::dax::PMD_PAGES) else {
            return FAULT_FALLBACK;
        };
        // SAFETY: The fault is live (type invariant); `frame` starts a
        // 2 MiB-aligned run of device memory (`DeviceFrame` made by
        // `DeviceFrames::pmd`), and the aligned PMD lies inside the VMA
        // (`huge_pfn`).
        unsafe { ffi::vmf_insert_pfn_pmd(self.as_ptr(), pfn, write) }
    }

    /// The devmap pfn of `frame` for a mapping of `pages` (a PMD's or a
    /// PUD's) at the faulting address, if the aligned range lies inside the
    /// VMA.
    fn huge_pfn(&self, frame: DeviceFrame, pages: u64) -> Option<ffi::pfn_t> {
        let bytes = pages * 4096;
        let window = self.window();
        let start = window.address & !(bytes - 1);
        if start < window.start || start.saturating_add(bytes) > window.end {
            return None;
        }
        Some(ffi::pfn_t {
            // SAFETY: Pure computation of the devmap pfn_t of a frame.
            val: unsafe { ffi::oxdax_pfn_t_dev(frame.number() as _) },
        })
    }

    /// Maps 1 GiB of device memory from `frame` (made by
    /// [`DeviceFrames::pud`](crate::sys::dax::DeviceFrames::pud): aligned,
    /// all device memory) at the faulting PUD, read-only (a write then
    /// calls [`Self::settle_pud`]); `FAULT_FALLBACK` if the GiB does
    /// not fit inside the VMA. Nothing is inserted where a PUD or a page
    /// table already is.
    pub(crate) fn insert_pud(&self, frame: DeviceFrame) -> FaultCode {
        let Some(pfn) = self.huge_pfn(frame, PUD_PAGES) else {
            return FAULT_FALLBACK;
        };
        // SAFETY: The fault is live (type invariant) and a PUD fault (only
        // the engine's PUD path calls this); `frame` starts a 1 GiB-aligned
        // run of device memory (`DeviceFrames::pud`), and the aligned GiB
        // lies inside the VMA (`huge_pfn`). Read-only: the kernel's write
        // path would WARN on a page table that a racing fault put there;
        // this one leaves it.
        unsafe { ffi::vmf_insert_pfn_pud(self.as_ptr(), pfn, false) }
    }

    /// Whether the PUD at the faulting address maps `frame` (after
    /// [`Self::insert_pud`]). For a `write` it is made writable and dirty
    /// too, if `entries` counted no removal of mappings since `removals`
    /// (read before the fault made the entries dirty for the last time);
    /// else `false`: the access faults again.
    pub(crate) fn settle_pud(
        &self,
        frame: DeviceFrame,
        write: Option<(&Entries<'_>, u64)>,
    ) -> bool {
        let (counter, seen) = match write {
            Some((entries, seen)) => (entries.pud.removals.as_ptr(), seen),
            None => (core::ptr::null_mut(), 0),
        };
        // SAFETY: A live PUD fault (its `pud` set by core mm) under the
        // mmap or VMA lock; the helper only reads the PUD, or upgrades a
        // huge PUD of `frame`, under the PUD lock; `counter` is null or an
        // atomic of the inode, live while `entries` is borrowed, only read.
        unsafe { ffi::oxdax_pud_settle(self.as_ptr(), frame.number() as _, counter, seen) }
    }
}

/// Freeze protection taken by [`VmFault::start_write`].
///
/// # Invariants
///
/// `sb` is a live super block on which this guard holds
/// `sb_start_pagefault` protection.
pub(crate) struct PagefaultGuard {
    sb: *mut ffi::super_block,
}

impl Drop for PagefaultGuard {
    fn drop(&mut self) {
        // SAFETY: Taken by `start_write` on this live super block.
        unsafe { ffi::oxdax_sb_end_pagefault(self.sb) };
    }
}

/// A file's mapping entries (`mapping->i_pages` of a DAX inode), borrowed
/// from the inode for `'a`.
///
/// # Invariants
///
/// `mapping` is the address space of a DAX inode that is live for `'a`.
pub(crate) struct Entries<'a> {
    mapping: NonNull<ffi::address_space>,
    /// The inode's PUD state ([`PudState`]).
    pud: &'a PudState,
    _inode: PhantomData<&'a ffi::address_space>,
}

/// What a file's removals of mappings and its PUD faults tell each other
/// (rust/dax/pud.rs), one per inode.
#[derive(Default)]
pub(crate) struct PudState {
    /// Set once a PUD (1 GiB) may map the file: from then on every removal
    /// of mappings covers whole GiBs ([`Entries::unmap`]).
    mapped: AtomicBool,
    /// Removals of mappings since then, counted before each one: a PUD
    /// fault makes its PUD writable only if none came since its entries
    /// were last made dirty (another fault's clean PUD may look the same).
    removals: AtomicU64,
}

/// Tags of an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tags {
    /// Written through a mapping since the last writeback.
    pub(crate) dirty: bool,
    /// Writeback must write-protect it (copy-on-write, writeback pass).
    pub(crate) towrite: bool,
}

/// An entry as an xarray slot holds it ([`Entry::to_xa`]).
fn to_xa(entry: Entry) -> *mut core::ffi::c_void {
    entry.to_xa() as usize as *mut core::ffi::c_void
}

/// The entry of an xarray slot: `None` if empty, `EIO` if it is not a
/// value (a folio: never in a DAX file).
fn from_xa(raw: *mut core::ffi::c_void) -> Result<Option<Entry>> {
    Entry::from_xa(raw as usize as u64).map_err(|_| EIO)
}

/// `XAS_RESTART`: a state that has not walked the array yet.
const XAS_RESTART: usize = 3;

/// An `xa_state` over `mapping->i_pages` at `index`, of `order`.
struct XaState(ffi::xa_state);

impl XaState {
    fn new(mapping: NonNull<ffi::address_space>, index: u64, order: u32) -> Self {
        // SAFETY: All-zero is a valid `xa_state` to initialise.
        let mut state = Self(unsafe { core::mem::zeroed() });
        // SAFETY: `mapping` is live (Entries invariant); XA_STATE_ORDER
        // only stores the pointer and position.
        unsafe { ffi::oxdax_xas_init(&mut state.0, mapping.as_ptr(), index as _, order) };
        state
    }
}

impl Drop for XaState {
    fn drop(&mut self) {
        // Frees a node preallocated by an earlier `xas_nomem` that the
        // store did not use: `xas_nomem` on a state not in error (reset
        // to XAS_RESTART) only frees (`xas_destroy` is not exported).
        self.0.xa_node = XAS_RESTART as *mut ffi::xa_node;
        // SAFETY: Our state, not used afterwards; no allocation happens.
        unsafe { ffi::xas_nomem(&mut self.0, 0) };
    }
}

/// `i_pages` locked (`xa_lock_irq`), released when dropped.
struct Locked(NonNull<ffi::address_space>);

impl Locked {
    fn new(mapping: NonNull<ffi::address_space>) -> Self {
        // SAFETY: Live mapping; process context (irqs enabled).
        unsafe { ffi::oxdax_i_pages_lock(mapping.as_ptr()) };
        Self(mapping)
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: Locked by `new`.
        unsafe { ffi::oxdax_i_pages_unlock(self.0.as_ptr()) };
    }
}

impl<'a> Entries<'a> {
    /// The entries of a mapping; `None` for a null mapping.
    ///
    /// # Safety
    ///
    /// `mapping` is null or the address space of a DAX inode that stays
    /// live for `'a`, and `pud` is that inode's one state (every `Entries`
    /// of the mapping shares it).
    pub(crate) unsafe fn from_raw(
        mapping: *mut ffi::address_space,
        pud: &'a PudState,
    ) -> Option<Self> {
        NonNull::new(mapping).map(|mapping| Self {
            mapping,
            pud,
            _inode: PhantomData,
        })
    }

    /// Records that a PUD may map the file from now on. Locking: called
    /// before the fault takes the region locks of its GiB, so that whoever
    /// removes mappings under one of them later sees it (and whoever did
    /// before finished before the PUD is inserted).
    pub(crate) fn mark_pud_mapped(&self) {
        self.pud.mapped.store(true, Ordering::Release);
    }

    /// Whether a PUD may map the file.
    pub(crate) fn may_be_pud_mapped(&self) -> bool {
        self.pud.mapped.load(Ordering::Acquire)
    }

    /// The count of removals of mappings, for [`VmFault::settle_pud`].
    pub(crate) fn pud_removals(&self) -> u64 {
        self.pud.removals.load(Ordering::SeqCst)
    }

    /// Pages `first..first + count`, widened to whole GiBs if a PUD may map
    /// the file: core mm removes a PUD only whole from the file side
    /// (`zap_pud_range` splits a partly covered one only under the mmap
    /// lock, which no file-side caller holds).
    fn unmap_range(&self, first: u64, count: u64) -> (u64, u64) {
        if !self.may_be_pud_mapped() || count == 0 {
            return (first, count);
        }
        let start = first & !(PUD_PAGES - 1);
        let end = first
            .saturating_add(count)
            .checked_next_multiple_of(PUD_PAGES)
            .unwrap_or(u64::MAX);
        (start, end - start)
    }

    /// Identifies the file (for hashing locks).
    pub(crate) fn key(&self) -> u64 {
        self.mapping.as_ptr() as usize as u64
    }

    fn xarray(&self) -> *mut ffi::xarray {
        // SAFETY: Live (type invariant); only the field's address is taken.
        unsafe { &raw mut (*self.mapping.as_ptr()).i_pages }
    }

    /// The entry covering `index`, and its first index.
    pub(crate) fn load(&self, index: u64) -> Result<Option<(Entry, u64)>> {
        // SAFETY: `xa_load` takes the RCU read lock itself.
        let raw = unsafe { ffi::xa_load(self.xarray(), index as _) };
        Ok(from_xa(raw)?.map(|entry| (entry, index & !(entry.pages() - 1))))
    }

    /// The first entry in `first..=last`, and its index.
    pub(crate) fn first_in(&self, first: u64, last: u64) -> Result<Option<(Entry, u64)>> {
        let mut index = first as kernel::ffi::c_ulong;
        // SAFETY: `xa_find` takes the RCU read lock itself; `index` is ours.
        let raw = unsafe { ffi::xa_find(self.xarray(), &mut index, last as _, XA_PRESENT) };
        Ok(from_xa(raw)?.map(|entry| (entry, index as u64 & !(entry.pages() - 1))))
    }

    /// Calls `visit` with every entry of the file and its first index, in
    /// index order, rescheduling between entries (a large file has many;
    /// others may want the CPU), so only where sleeping is allowed. Each
    /// entry is a snapshot: entries may change during the walk (callers
    /// that must see a stable set hold the invalidate lock). Stops at an
    /// entry that cannot be decoded.
    pub(crate) fn for_each(&self, mut visit: impl FnMut(Entry, u64)) {
        // The last page index of a file (MAX_LFS_FILESIZE in pages).
        const LAST_INDEX: u64 = u64::MAX >> kernel::page::PAGE_SHIFT;
        let mut index = 0;
        while let Ok(Some((entry, at))) = self.first_in(index, LAST_INDEX) {
            visit(entry, at);
            index = at.saturating_add(entry.pages());
            crate::sys::cond_resched();
        }
    }

    /// The first entry tagged for writeback (`TOWRITE`) from `*index` to
    /// `last`; moves `index` to it.
    pub(crate) fn next_towrite(&self, index: &mut u64, last: u64) -> Result<Option<Entry>> {
        let mut at = *index as kernel::ffi::c_ulong;
        // SAFETY: `xa_find` takes the RCU read lock itself; the xarray is the
        // `i_pages` of a mapping live while `self` is (`Entries` invariant),
        // and `at` is a local.
        let raw = unsafe { ffi::xa_find(self.xarray(), &mut at, last as _, TAG_TOWRITE) };
        *index = at as u64;
        from_xa(raw)
    }

    /// Tags every dirty entry of `first..=last` for writeback
    /// (`tag_pages_for_writeback`): the pass writes back what was dirty
    /// when it started, and ends.
    pub(crate) fn tag_for_writeback(&self, first: u64, last: u64) {
        // SAFETY: Live mapping; the function takes the i_pages lock.
        unsafe { ffi::tag_pages_for_writeback(self.mapping.as_ptr(), first as _, last as _) };
    }

    /// Replaces the entry of `order` at `base` by `new` (or removes it),
    /// if it still is `old`. Pages of block entries change hands as
    /// fs/dax.c's `dax_(dis)associate_entry` do (`shared`: the new blocks
    /// are shared with other files); `nrpages` follows; the new entry gets
    /// `tags`. Returns whether it was replaced. A new block entry must lie
    /// in `frames` (`EIO` otherwise): its pages' owner fields are written.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exchange(
        &self,
        frames: &DeviceFrames,
        base: u64,
        order: u32,
        old: Option<Entry>,
        new: Option<Entry>,
        shared: bool,
        tags: Tags,
    ) -> Result<bool> {
        if let Some(new) = new.filter(|e| e.maps_blocks()) {
            if !frames.contains(new.frame(), new.pages()) {
                return Err(EIO);
            }
        }
        let mut xas = XaState::new(self.mapping, base, order);
        loop {
            let locked = Locked::new(self.mapping);
            // SAFETY: i_pages locked; `xas` is over it.
            let current = from_xa(unsafe { ffi::xas_load(&mut xas.0) })?;
            if current != old {
                return Ok(false);
            }
            let raw_new = new.map_or(core::ptr::null_mut(), to_xa);
            // SAFETY: Locked; stores our value entry (or erases).
            unsafe { ffi::xas_store(&mut xas.0, raw_new) };
            // SAFETY: Reads the state's error (xas_error is inline: the
            // node pointer holds an errno when the store failed).
            let failed = unsafe { is_xa_error(xas.0.xa_node) };
            if failed {
                drop(locked);
                // SAFETY: Unlocked; allocates the missing node and tells
                // whether to retry.
                if unsafe { ffi::xas_nomem(&mut xas.0, ffi::GFP_KERNEL) } {
                    continue;
                }
                return Err(ENOMEM);
            }
            let mapping = self.mapping.as_ptr();
            // SAFETY: Locked: the pages' owner fields and `nrpages` are
            // changed under the i_pages lock, as fs/dax.c does. The pages
            // are device memory (ZONE_DEVICE pages with a `struct page`): a
            // new block entry was checked against `frames` above, and `old`
            // is what the array held, which only this function stores.
            unsafe {
                if let Some(old) = old.filter(|e| e.maps_blocks()) {
                    ffi::oxdax_dax_disassociate(old.frame() as _, old.pages() as _, mapping);
                }
                if let Some(new) = new.filter(|e| e.maps_blocks()) {
                    ffi::oxdax_dax_associate(
                        new.frame() as _,
                        new.pages() as _,
                        mapping,
                        base as _,
                        shared,
                    );
                }
                let removed = old.map_or(0, |e| e.pages());
                let added = new.map_or(0, |e| e.pages());
                (*mapping).nrpages = ((*mapping).nrpages as u64 + added - removed) as _;
                if new.is_some() {
                    set_tags(&xas.0, tags);
                }
            }
            return Ok(true);
        }
    }

    /// Sets (`set`) or clears the tags of the entry at `base`, if it is
    /// still `expected`. Returns whether it was.
    pub(crate) fn retag(&self, base: u64, expected: Entry, tags: Tags, set: bool) -> Result<bool> {
        let mut xas = XaState::new(self.mapping, base, expected.order());
        let _locked = Locked::new(self.mapping);
        // SAFETY: Locked; `xas` is over i_pages.
        let current = from_xa(unsafe { ffi::xas_load(&mut xas.0) })?;
        if current != Some(expected) {
            return Ok(false);
        }
        // SAFETY: Locked, positioned on the entry by the load.
        unsafe {
            if set {
                set_tags(&xas.0, tags);
            } else {
                if tags.dirty {
                    ffi::xas_clear_mark(&xas.0, TAG_DIRTY);
                }
                if tags.towrite {
                    ffi::xas_clear_mark(&xas.0, TAG_TOWRITE);
                }
            }
        }
        Ok(true)
    }

    /// Removes page-table entries of pages `first..first + count` in every
    /// process (`even_cows`: private copies too, as truncation needs).
    /// While a PUD may map the file, the mappings of whole GiBs around
    /// the pages go (they refault), but private copies only of the pages
    /// asked for (they are their processes' data). Those callers
    /// (truncation) hold the invalidate lock exclusively: no PUD comes back
    /// in between.
    pub(crate) fn unmap(&self, first: u64, count: u64, even_cows: bool) {
        let (from, pages) = self.unmap_range(first, count);
        let widened = (from, pages) != (first, count);
        if self.may_be_pud_mapped() {
            // Counted before: a PUD fault that reads the count later under
            // the PUD lock sees it, and one that read it earlier made its
            // PUD writable before this removal (a locked RMW, a full
            // barrier) looks at the PUD, so the removal takes it.
            self.pud.removals.fetch_add(1, Ordering::SeqCst);
        }
        self.unmap_exactly(from, pages, even_cows && !widened);
        if even_cows && widened {
            self.unmap_exactly(first, count, true);
        }
    }

    fn unmap_exactly(&self, first: u64, count: u64, even_cows: bool) {
        // SAFETY: Live mapping; takes i_mmap_rwsem (sleeps: no spinlock
        // held by the callers).
        unsafe {
            ffi::unmap_mapping_pages(self.mapping.as_ptr(), first as _, count as _, even_cows)
        };
    }

    /// Marks the inode as having dirty pages (so `sync` writes it back,
    /// and it is not evicted before).
    pub(crate) fn mark_inode_dirty(&self) {
        // SAFETY: A DAX file's mapping has its host inode, live while the
        // mapping is.
        unsafe { ffi::__mark_inode_dirty((*self.mapping.as_ptr()).host, ffi::I_DIRTY_PAGES as _) };
    }

    /// Unmaps pages `first..=last` in every process and returns one of
    /// them that is still pinned (direct I/O, GUP, a pipe), if any
    /// (`dax_layout_busy_page_range`). With the invalidate lock held
    /// exclusively no new pin can appear in the range: pins are taken
    /// through page tables, which faults would have to fill.
    pub(crate) fn pinned_page(&self, first: u64, last: u64) -> Option<PinnedPage> {
        if self.may_be_pud_mapped() {
            // Whole GiBs first: fs/dax.c's own removal of the range would
            // split a PUD from the file side. None comes back before it
            // runs: the callers hold the invalidate lock exclusively, or
            // the region lock a PUD fault needs before it inserts.
            self.unmap(first, last.saturating_sub(first).saturating_add(1), false);
        }
        let start = first.saturating_mul(4096).min(i64::MAX as u64);
        // `LLONG_MAX`: to the end of the file.
        let end = last
            .saturating_add(1)
            .saturating_mul(4096)
            .saturating_sub(1)
            .min(i64::MAX as u64);
        let mapping = self.mapping.as_ptr();
        // SAFETY: Live mapping; fs/dax.c walks entries it can read
        // (ours use its encoding and are never left locked).
        let page = unsafe { ffi::dax_layout_busy_page_range(mapping, start as _, end as _) };
        NonNull::new(page).map(|page| PinnedPage { page })
    }

    /// Waits until no page of `first..=last` is pinned and unmaps the
    /// range, as filesystems do before they free blocks
    /// (`xfs_break_dax_layouts`). The caller holds the invalidate lock
    /// exclusively; it is dropped while waiting.
    pub(crate) fn wait_unpinned(&self, first: u64, last: u64) -> Result {
        while let Some(pinned) = self.pinned_page(first, last) {
            let (page, mapping) = (pinned.page.as_ptr(), self.mapping.as_ptr());
            // SAFETY: `pinned` is a ZONE_DEVICE page of the device, whose
            // memmap lives as long as the device we hold; the invalidate
            // lock is held exclusively by the caller.
            let ret = unsafe { ffi::oxdax_wait_page_idle(page, mapping) };
            if ret != 0 {
                return Err(Error::from_errno(ret));
            }
        }
        Ok(())
    }
}

/// A page of a DAX file's device memory that something other than page
/// tables holds a reference to (a pin).
///
/// # Invariants
///
/// `page` is a ZONE_DEVICE page of the filesystem's device: its `struct
/// page` lives as long as the device's memory map, which the mounted
/// filesystem keeps (as fs/dax.c's and xfs's waits assume).
pub(crate) struct PinnedPage {
    page: NonNull<ffi::page>,
}

impl PinnedPage {
    /// Waits (interruptibly: `ERESTARTSYS` on a signal) until the pin is
    /// gone. The caller holds no lock the pin's holder may need.
    pub(crate) fn wait_unpinned(self) -> Result {
        // SAFETY: The page's memmap is live (type invariant); the wait
        // only reads its reference count.
        let ret = unsafe { ffi::oxdax_wait_page_unpinned(self.page.as_ptr()) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }
}

/// # Safety
///
/// `xas` is positioned on an entry and the i_pages lock is held.
unsafe fn set_tags(xas: &ffi::xa_state, tags: Tags) {
    // SAFETY: `xas` is positioned on an entry and the i_pages lock is held
    // (this function's `# Safety`), as `xas_set_mark` requires.
    unsafe {
        if tags.dirty {
            ffi::xas_set_mark(xas, TAG_DIRTY);
        }
        if tags.towrite {
            ffi::xas_set_mark(xas, TAG_TOWRITE);
        }
    }
}

/// `xas_error()`: an xa_state's node holds an internal errno entry
/// (`xa_is_err`: internal and above -MAX_ERRNO) after a failed store.
///
/// # Safety
///
/// `node` is an `xa_state`'s node field.
unsafe fn is_xa_error(node: *mut ffi::xa_node) -> bool {
    let bits = node as usize;
    // xa_is_internal: low bits 10; xa_is_err: greater than
    // xa_mk_internal(-MAX_ERRNO) = (-4095 << 2) | 2.
    bits & 3 == 2 && bits >= ((-4095isize << 2) | 2) as usize
}

/// The invalidate lock of a mapping (`mapping->invalidate_lock`): faults
/// take it shared; truncation, hole punching and reflink exclusively, so
/// that no fault maps blocks while they are freed or shared.
///
/// # Invariants
///
/// `mapping` is live for `'a` and its invalidate lock is held by this
/// guard, exclusively if `exclusive`.
pub(crate) struct InvalidateGuard<'a> {
    mapping: NonNull<ffi::address_space>,
    exclusive: bool,
    _inode: PhantomData<&'a ffi::address_space>,
}

impl<'a> InvalidateGuard<'a> {
    /// Takes the lock; `None` for a null mapping.
    ///
    /// # Safety
    ///
    /// `mapping` is null or an address space that stays live for `'a`.
    pub(crate) unsafe fn lock(mapping: *mut ffi::address_space, exclusive: bool) -> Option<Self> {
        let mapping = NonNull::new(mapping)?;
        // SAFETY: Live for `'a` (this function's `# Safety`); may sleep
        // (process context).
        unsafe {
            if exclusive {
                ffi::oxdax_invalidate_lock(mapping.as_ptr());
            } else {
                ffi::oxdax_invalidate_lock_shared(mapping.as_ptr());
            }
        }
        Some(Self {
            mapping,
            exclusive,
            _inode: PhantomData,
        })
    }
}

impl Drop for InvalidateGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: The mapping is live and its lock held in this mode (type
        // invariant); released once.
        unsafe {
            if self.exclusive {
                ffi::oxdax_invalidate_unlock(self.mapping.as_ptr());
            } else {
                ffi::oxdax_invalidate_unlock_shared(self.mapping.as_ptr());
            }
        }
    }
}

/// Two files' invalidate locks, exclusive, for reflink
/// (`filemap_invalidate_lock_two`: address order, lockdep nesting; one
/// lock if both are the same file).
///
/// # Invariants
///
/// Both mappings are live for `'a` and this guard holds both invalidate
/// locks exclusively.
pub(crate) struct InvalidateTwo<'a> {
    first: *mut ffi::address_space,
    second: *mut ffi::address_space,
    _inodes: PhantomData<&'a ffi::address_space>,
}

impl<'a> InvalidateTwo<'a> {
    /// Takes both locks.
    ///
    /// # Safety
    ///
    /// Both mappings are live for `'a`.
    pub(crate) unsafe fn lock(a: *mut ffi::address_space, b: *mut ffi::address_space) -> Self {
        // SAFETY: Both live for `'a` (this function's `# Safety`); the
        // function orders and nests them.
        unsafe { ffi::filemap_invalidate_lock_two(a, b) };
        Self {
            first: a,
            second: b,
            _inodes: PhantomData,
        }
    }
}

impl Drop for InvalidateTwo<'_> {
    fn drop(&mut self) {
        // SAFETY: Both mappings are live and locked by this guard (type
        // invariant); released once.
        unsafe { ffi::filemap_invalidate_unlock_two(self.first, self.second) };
    }
}

/// Sleeps a little (waiting out an entry fs/dax.c holds locked: a module
/// cannot sleep on fs/dax.c's wait queues).
pub(crate) fn nap() {
    // SAFETY: Process context.
    unsafe { ffi::msleep(1) };
}
