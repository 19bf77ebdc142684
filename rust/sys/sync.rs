// SPDX-License-Identifier: GPL-2.0

//! A reader-writer semaphore owning its data ([`RwSem`]): the kernel's
//! `struct rw_semaphore`, which the 6.12 Rust tree does not wrap. Shared
//! holders get `&T`, the exclusive holder `&mut T`; both may sleep.

use core::{cell::UnsafeCell, marker::PhantomData, marker::PhantomPinned};

use kernel::{bindings, prelude::*, str::CStr, types::Opaque};

/// A lockdep class for [`RwSem`]s: one per place that creates them
/// ([`new_rwsem`]).
#[repr(transparent)]
pub(crate) struct RwSemClass(Opaque<bindings::lock_class_key>);

// SAFETY: lockdep keys are only ever used through lockdep, which
// synchronises its own accesses; Rust code never reads or writes one.
unsafe impl Sync for RwSemClass {}

impl RwSemClass {
    /// A key for a `static`: lockdep expects such keys uninitialised.
    pub(crate) const fn new() -> Self {
        Self(Opaque::uninit())
    }
}

/// Creates an [`RwSem`] initialiser with a lockdep class of its own (one
/// per call site, like `init_rwsem`).
macro_rules! new_rwsem {
    ($inner:expr, $name:literal $(,)?) => {{
        static CLASS: $crate::sys::sync::RwSemClass = $crate::sys::sync::RwSemClass::new();
        $crate::sys::sync::RwSem::new($inner, kernel::c_str!($name), &CLASS)
    }};
}
pub(crate) use new_rwsem;

/// A `T` behind a kernel `rw_semaphore`.
///
/// # Invariants
///
/// `sem` is initialised; `data` is read only with `sem` held, shared or
/// exclusive, and written only with it held exclusive.
#[pin_data]
pub(crate) struct RwSem<T> {
    #[pin]
    sem: Opaque<bindings::rw_semaphore>,
    // The semaphore's wait list points into it: never moved.
    #[pin]
    _pin: PhantomPinned,
    data: UnsafeCell<T>,
}

// SAFETY: Moving the semaphore to another thread moves `T` with it.
unsafe impl<T: Send> Send for RwSem<T> {}
// SAFETY: Shared holders on several threads get `&T` at once (so `T:
// Sync`); the exclusive holder may be any thread (so `T: Send`).
unsafe impl<T: Send + Sync> Sync for RwSem<T> {}

impl<T> RwSem<T> {
    /// An initialiser of a semaphore guarding `data`, named `name` for
    /// lockdep in class `class` (use [`new_rwsem`]).
    pub(crate) fn new(
        data: T,
        name: &'static CStr,
        class: &'static RwSemClass,
    ) -> impl PinInit<Self> {
        pin_init!(Self {
            data: UnsafeCell::new(data),
            _pin: PhantomPinned,
            // SAFETY: `slot` is valid for writes and pinned (the
            // semaphore never moves); `name` and `class` are static, as
            // lockdep keeps them.
            sem <- Opaque::ffi_init(|slot| unsafe {
                bindings::__init_rwsem(slot, name.as_char_ptr(), class.0.get())
            }),
        })
    }

    /// Takes the semaphore shared (sleeping while a writer holds it or
    /// waits for it).
    pub(crate) fn read(&self) -> RwSemReadGuard<'_, T> {
        // SAFETY: `sem` is initialised (type invariant); the guard releases
        // it on this task.
        unsafe { bindings::down_read(self.sem.get()) };
        RwSemReadGuard {
            sem: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the semaphore exclusive (sleeping while anyone holds it).
    pub(crate) fn write(&self) -> RwSemWriteGuard<'_, T> {
        // SAFETY: As in `read`.
        unsafe { bindings::down_write(self.sem.get()) };
        RwSemWriteGuard {
            sem: self,
            _not_send: PhantomData,
        }
    }
}

/// The semaphore held shared; released on drop.
///
/// # Invariants
///
/// This task holds `sem` shared.
pub(crate) struct RwSemReadGuard<'a, T> {
    sem: &'a RwSem<T>,
    // Released by the task that took it.
    _not_send: PhantomData<*mut ()>,
}

impl<T> core::ops::Deref for RwSemReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: Held shared (type invariant): nobody writes `data`.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T> Drop for RwSemReadGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: Held shared by this task (type invariant).
        unsafe { bindings::up_read(self.sem.sem.get()) };
    }
}

/// The semaphore held exclusive; released on drop.
///
/// # Invariants
///
/// This task holds `sem` exclusive.
pub(crate) struct RwSemWriteGuard<'a, T> {
    sem: &'a RwSem<T>,
    // Released by the task that took it.
    _not_send: PhantomData<*mut ()>,
}

impl<T> core::ops::Deref for RwSemWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: Held exclusive (type invariant).
        unsafe { &*self.sem.data.get() }
    }
}

impl<T> core::ops::DerefMut for RwSemWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: Held exclusive (type invariant), and `&mut self` makes
        // this the only reference through the guard.
        unsafe { &mut *self.sem.data.get() }
    }
}

impl<T> Drop for RwSemWriteGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: Held exclusive by this task (type invariant).
        unsafe { bindings::up_write(self.sem.sem.get()) };
    }
}
