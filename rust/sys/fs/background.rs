// SPDX-License-Identifier: GPL-2.0

//! Work a filesystem does in the background for a mounted super block
//! ([`Background`]: compaction), on the system's unbound workqueue, as
//! xfs's inode garbage collection does.
//!
//! Lifetime: the work never runs once the super block's shutdown begins.
//! `kill_sb` stops it ([`Background::stop`]) before anything is torn down:
//! later [`Background::queue`] calls do nothing, and a run that started
//! before is waited for.

use core::{
    marker::PhantomData,
    sync::atomic::{AtomicBool, Ordering},
};

use kernel::{
    prelude::*,
    sync::Arc,
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
};

use super::{FileSystem, SuperBlock};
use crate::ffi;

/// One background job of a super block of `T`, run by
/// [`FileSystem::background`].
///
/// # Invariants
///
/// `sb` is the super block of `T` this was made for. It is live whenever
/// `stopped` is false, and whenever a run that found it false is still
/// going: `kill_sb` sets `stopped` and waits for such a run
/// ([`Self::stop`]) before the super block is shut down.
#[pin_data]
pub(crate) struct Background<T: FileSystem> {
    #[pin]
    work: Work<Background<T>>,
    sb: *mut ffi::super_block,
    stopped: AtomicBool,
    _type: PhantomData<T>,
}

// SAFETY: The super block may be used from any thread (`SuperBlock` is
// `Send`); the flag is atomic.
unsafe impl<T: FileSystem> Send for Background<T> {}
// SAFETY: Shared use only reads `sb` and the atomic flag.
unsafe impl<T: FileSystem> Sync for Background<T> {}

impl_has_work! {
    impl{T: FileSystem} HasWork<Self> for Background<T> { self.work }
}

impl<T: FileSystem> Background<T> {
    /// The background job of `sb`; `fill_super` keeps it in the
    /// filesystem's info, where [`FileSystem::background_of`] finds it.
    pub(crate) fn new(sb: &SuperBlock<T>) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                work <- new_work!("oxdax_background"),
                sb: sb.as_ptr(),
                stopped: AtomicBool::new(false),
                _type: PhantomData,
            }),
            GFP_KERNEL,
        )
    }

    /// Runs the job soon, unless it is queued already or stopped.
    pub(crate) fn queue(this: &Arc<Self>) {
        if this.stopped.load(Ordering::Acquire) {
            return;
        }
        // Already queued: that run will see whatever this call was for.
        let _ = workqueue::system_unbound().enqueue(this.clone());
    }

    /// Whether the super block is shutting down: a long run ends early.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Waits until a run queued or in progress has ended (`syncfs`: work
    /// pending when it was called is done when it returns).
    pub(crate) fn flush(&self) {
        // SAFETY: `work` is initialized and pinned inside this `Arc`'d
        // value, live during the call.
        let raw = unsafe { Work::raw_get(&self.work) };
        // SAFETY: `raw` is a live, initialized work item; the caller may
        // sleep and holds nothing the job takes.
        unsafe { kernel::bindings::flush_work(raw) };
    }

    /// Stops the job for good and waits for a run in progress (`kill_sb`,
    /// before the super block is shut down).
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // SAFETY: `work` is initialized and pinned inside this `Arc`'d
        // value, live during the call.
        let raw = unsafe { Work::raw_get(&self.work) };
        // SAFETY: `raw` is a live, initialized work item; waiting is
        // allowed (kill_sb runs in process context). Disabled, it is never
        // queued again, even by a `queue` that read `stopped` before it
        // was set.
        if unsafe { kernel::bindings::disable_work_sync(raw) } {
            // It was queued and will not run: the reference the queue
            // held (taken by `Arc::into_raw` in `queue`) is dropped here.
            // SAFETY: That reference was made from an `Arc<Self>` pointing
            // at `self`, and nothing else will give it back.
            drop(unsafe { Arc::from_raw(self as *const Self) });
        }
    }
}

impl<T: FileSystem> WorkItem for Background<T> {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        if this.stopped.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: Not stopped when checked: `kill_sb` waits for this run
        // before the super block goes (type invariant), so it is live and
        // of `T` for the whole run.
        let sb = unsafe { SuperBlock::<T>::from_raw(this.sb) };
        T::background(sb, &this);
    }
}
