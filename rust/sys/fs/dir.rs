// SPDX-License-Identifier: GPL-2.0

//! Directory iteration (`struct dir_context`).

use core::{marker::PhantomData, ptr::NonNull};

use crate::ffi;

/// Where a `getdents` call is and where its entries go.
pub(crate) struct DirContext<'a> {
    ctx: NonNull<ffi::dir_context>,
    _call: PhantomData<&'a mut ffi::dir_context>,
}

impl DirContext<'_> {
    /// # Safety
    ///
    /// `ctx` is the live context of an `iterate_shared` call.
    pub(super) unsafe fn from_raw(ctx: *mut ffi::dir_context) -> Self {
        Self {
            // SAFETY: The VFS passes a valid context.
            ctx: unsafe { NonNull::new_unchecked(ctx) },
            _call: PhantomData,
        }
    }

    /// The position to continue from.
    pub(crate) fn pos(&self) -> u64 {
        // SAFETY: Live (type invariant).
        unsafe { (*self.ctx.as_ptr()).pos as u64 }
    }

    /// Sets the position (the file's offset after the call).
    pub(crate) fn set_pos(&mut self, pos: u64) {
        // SAFETY: Live, and ours to update during the call.
        unsafe { (*self.ctx.as_ptr()).pos = pos as i64 };
    }

    /// Hands one entry to the caller; `false` when its buffer is full (the
    /// entry was not taken). Copies to user memory: never call this with a
    /// filesystem lock held.
    pub(crate) fn emit(&mut self, name: &[u8], ino: u64, dtype: u8) -> bool {
        let Ok(len) = i32::try_from(name.len()) else {
            return false;
        };
        // SAFETY: The context is live; `name` is valid for `len` bytes.
        unsafe {
            ffi::oxdax_dir_emit(
                self.ctx.as_ptr(),
                name.as_ptr().cast(),
                len,
                ino,
                dtype.into(),
            )
        }
    }
}
