// SPDX-License-Identifier: GPL-2.0

//! debugfs directories of counters.

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use kernel::{alloc::KVec, prelude::*, str::CStr, sync::Arc};

use crate::ffi;

/// A debugfs directory, removed with everything in it when dropped.
///
/// # Invariants
///
/// `dentry` is null, an error pointer, or a debugfs directory this removes
/// when dropped.
pub(crate) struct Dir {
    dentry: *mut ffi::dentry,
}

// SAFETY: debugfs calls may come from any thread.
unsafe impl Send for Dir {}
// SAFETY: `&Dir` only passes the dentry as parent to debugfs_create_*(),
// which lock the parent inode themselves; removing it takes the owned `Dir`.
unsafe impl Sync for Dir {}

/// `debugfs_create_dir` returns `ERR_PTR` on failure (or when debugfs is
/// off); such a value is a valid argument to every debugfs function.
fn is_usable(dentry: *mut ffi::dentry) -> bool {
    let bits = dentry as usize;
    !dentry.is_null() && bits < (-4095isize) as usize
}

impl Dir {
    /// `name` under `parent` (the debugfs root if `None`). Counters are
    /// a debugging aid: a directory that cannot be made is not an error,
    /// files then go nowhere.
    pub(crate) fn new(name: &CStr, parent: Option<&Dir>) -> Self {
        let parent = parent.map_or(core::ptr::null_mut(), |p| p.dentry);
        // SAFETY: `name` is NUL-terminated; `parent` is null or a live
        // directory (borrowed).
        let dentry = unsafe { ffi::debugfs_create_dir(name.as_char_ptr(), parent) };
        Self { dentry }
    }

    /// A read-only file showing `value`.
    ///
    /// # Safety
    ///
    /// `value` outlives this directory (drop the directory first).
    unsafe fn add_u64(&self, name: &CStr, value: &AtomicU64) {
        if !is_usable(self.dentry) {
            return;
        }
        // SAFETY: `value` outlives the file (the directory's owner keeps the
        // counters alive until the directory is removed); debugfs reads it
        // as a u64, which `AtomicU64` is in memory.
        unsafe { ffi::debugfs_create_u64(name.as_char_ptr(), 0o444, self.dentry, value.as_ptr()) };
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if is_usable(self.dentry) {
            // SAFETY: Created by `new`; removal waits for open files.
            unsafe { ffi::debugfs_remove(self.dentry) };
        }
    }
}

/// A directory in the module's debugfs directory of read-only files, each
/// showing one counter of an allocation the directory keeps alive.
///
/// # Invariants
///
/// The files point into the allocations in `_owners`, which do not move
/// and live until `_dir` (declared first, so dropped first) has removed
/// them.
pub(crate) struct CounterDir {
    _dir: Dir,
    _owners: KVec<Arc<dyn Send + Sync>>,
}

/// One file of a [`CounterDir`]: its name and the counter of a `T` it shows.
pub(crate) type CounterFile<'a, T> = (&'a CStr, fn(&T) -> &AtomicU64);

impl CounterDir {
    /// `name` in the module's directory, empty.
    pub(crate) fn new(name: &CStr) -> Self {
        Self {
            _dir: Root::subdir(name),
            _owners: KVec::new(),
        }
    }

    /// Adds one file per `(file name, counter)` of `files`, showing
    /// counters of `counters`, which the directory keeps.
    pub(crate) fn add<T: Send + Sync + 'static>(
        &mut self,
        counters: Arc<T>,
        files: &[CounterFile<'_, T>],
    ) -> Result {
        self._owners.push(counters.clone(), GFP_KERNEL)?;
        for (file, counter) in files {
            // SAFETY: The counter is inside `counters`, which this
            // directory holds (pushed above) until the files are removed
            // (invariants).
            unsafe { self._dir.add_u64(file, counter(&counters)) };
        }
        Ok(())
    }
}

/// The module's directory (`oxdax/` at the debugfs root), for mounts to
/// put theirs in; set while the module is loaded.
static ROOT: AtomicPtr<ffi::dentry> = AtomicPtr::new(core::ptr::null_mut());

/// Owns the module's debugfs directory.
pub(crate) struct Root {
    _dir: Dir,
}

impl Root {
    /// Creates `name` at the debugfs root for the module's lifetime.
    pub(crate) fn create(name: &CStr) -> Self {
        let dir = Dir::new(name, None);
        ROOT.store(dir.dentry, Ordering::Release);
        Self { _dir: dir }
    }

    /// `name` in the module's directory.
    pub(crate) fn subdir(name: &CStr) -> Dir {
        let parent = ROOT.load(Ordering::Acquire);
        if !is_usable(parent) {
            return Dir {
                dentry: core::ptr::null_mut(),
            };
        }
        // SAFETY: `parent` stays until the module unloads, and no mount
        // (which holds a module reference) outlives it.
        let dentry = unsafe { ffi::debugfs_create_dir(name.as_char_ptr(), parent) };
        Dir { dentry }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        ROOT.store(core::ptr::null_mut(), Ordering::Release);
    }
}
