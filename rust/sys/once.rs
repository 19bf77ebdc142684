// SPDX-License-Identifier: GPL-2.0

//! A value set at most once through a shared reference.
//!
//! A driver's per-device data is published to the kernel (callbacks get a
//! shared reference to it) while some of its parts, which point back at it,
//! are still being created. Storing those parts through `&mut` would
//! invalidate the pointers already handed out; a `SetOnce` is written
//! through `&self` instead, and readers see it only once fully written.

use core::{
    cell::UnsafeCell,
    mem::MaybeUninit,
    sync::atomic::{AtomicU8, Ordering},
};

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const SET: u8 = 2;

/// A cell written at most once, read any number of times.
pub(crate) struct SetOnce<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: The value is written once, before `state` becomes SET (release),
// and only shared (`&T`) after readers observe SET (acquire): it is shared
// across threads exactly like a `&T`.
unsafe impl<T: Send + Sync> Sync for SetOnce<T> {}
// SAFETY: Sending the cell sends the value.
unsafe impl<T: Send> Send for SetOnce<T> {}

impl<T> SetOnce<T> {
    /// An empty cell.
    pub(crate) const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Stores `value`; gives it back if the cell was already set.
    pub(crate) fn set(&self, value: T) -> Result<(), T> {
        if self
            .state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(value);
        }
        // SAFETY: Winning the exchange makes this the only writer, and no
        // reader looks at the value before SET is stored below.
        unsafe { (*self.value.get()).write(value) };
        self.state.store(SET, Ordering::Release);
        Ok(())
    }

    /// The value, once set.
    pub(crate) fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) != SET {
            return None;
        }
        // SAFETY: SET means the value was fully written (release/acquire)
        // and is never written again.
        Some(unsafe { (*self.value.get()).assume_init_ref() })
    }
}

impl<T> Drop for SetOnce<T> {
    fn drop(&mut self) {
        if *self.state.get_mut() == SET {
            // SAFETY: Set, so initialized; `&mut self` means no reader.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

/// The life of a kernel object that is set up once and torn down once
/// (a disk added then deleted, a page map mapped then unmapped), through
/// shared references: a second set-up, one racing another, or one after
/// the tear-down is refused, and the tear-down runs only after a set-up
/// that succeeded.
pub(crate) struct Stages(AtomicU8);

const NEW: u8 = 0;
const SETTING_UP: u8 = 1;
const LIVE: u8 = 2;
const DONE: u8 = 3;

impl Stages {
    /// Not set up yet.
    pub(crate) const fn new() -> Self {
        Self(AtomicU8::new(NEW))
    }

    /// Runs `set_up` if nothing was set up, nor is being set up, nor was
    /// torn down; `EBUSY` otherwise. A failed `set_up` leaves it new.
    pub(crate) fn set_up<R>(
        &self,
        set_up: impl FnOnce() -> kernel::error::Result<R>,
    ) -> kernel::error::Result<R> {
        if self
            .0
            .compare_exchange(NEW, SETTING_UP, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(kernel::error::code::EBUSY);
        }
        let result = set_up();
        let next = if result.is_ok() { LIVE } else { NEW };
        self.0.store(next, Ordering::Release);
        result
    }

    /// Whether the set-up succeeded and nothing was torn down yet.
    pub(crate) fn is_live(&self) -> bool {
        self.0.load(Ordering::Acquire) == LIVE
    }

    /// Runs `tear_down` once, if the set-up succeeded; later calls (and
    /// calls before a set-up) do nothing.
    pub(crate) fn tear_down(&self, tear_down: impl FnOnce()) {
        if self
            .0
            .compare_exchange(LIVE, DONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tear_down();
        }
    }
}
