// SPDX-License-Identifier: GPL-2.0

//! I/O iterators (`struct iov_iter`): the user or kernel buffers of a read
//! or write. Copies to and from persistent memory are in `sys::memory`.

use core::ptr::NonNull;

use crate::ffi;

/// The buffers of one read or write call.
///
/// # Invariants
///
/// The iterator is the live one of the current read or write call, used
/// only during it.
pub(crate) struct IovIter(NonNull<ffi::iov_iter>);

impl IovIter {
    /// # Safety
    ///
    /// `iter` is the live iterator of a `read_iter`/`write_iter` call, used
    /// only during it.
    pub(crate) unsafe fn from_raw(iter: *mut ffi::iov_iter) -> Self {
        // SAFETY: The VFS passes a valid iterator.
        Self(unsafe { NonNull::new_unchecked(iter) })
    }

    /// The raw iterator, for copy functions.
    pub(crate) fn as_ptr(&mut self) -> *mut ffi::iov_iter {
        self.0.as_ptr()
    }

    /// Bytes left.
    pub(crate) fn count(&self) -> usize {
        // SAFETY: Live (type invariant).
        unsafe { ffi::oxdax_iov_iter_count(self.0.as_ptr()) }
    }

    /// Fills `len` bytes with zeros (a hole); returns the bytes done.
    pub(crate) fn zero(&mut self, len: usize) -> usize {
        // SAFETY: Live (type invariant).
        unsafe { ffi::iov_iter_zero(len, self.0.as_ptr()) }
    }
}
