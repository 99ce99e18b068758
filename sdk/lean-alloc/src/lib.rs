//! The global allocator of a lean handler: a component built for `wasm32-unknown-unknown`
//! (docs/writing-handlers.md, "Building"). Link it with `extern crate switchyard_lean_alloc;`
//! (`switchyard-sdk` does).
//!
//! std's allocator on that target is dlmalloc too, but it takes every byte of heap with
//! `memory.grow`. The host gives each event a fresh instance, and an instance that grew its
//! memory makes the next one in its pool slot pay an `mprotect` (with a TLB shootdown across
//! the host's threads) to shrink the slot back: 14.3 µs per trivial invocation against 9.0 for
//! the same probe built for `wasm32-wasip2` (docs/BENCHMARKS.md, pass 8). This one hands
//! dlmalloc a 1 MiB static first, zero-initialised data and so part of the initial memory
//! (without adding a byte to the module), so an event that fits there never grows memory; past
//! it, it grows like std's. The route's memory cap counts the initial memory too.
//!
//! Elsewhere (wasm32-wasip2, whose libc `malloc` already starts in the initial memory, and
//! native unit tests) this crate is empty.

#![no_std]

#[cfg(all(target_family = "wasm", target_os = "unknown"))]
mod lean {
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::{Cell, UnsafeCell};
    use core::ptr::null_mut;

    /// WebAssembly's page, the unit of `memory.grow`.
    const PAGE: usize = 65536;

    /// The heap an event uses before memory grows. A handler's event typically needs a few KiB
    /// to a few hundred (payload, rows, JSON); the pages it does not touch cost nothing.
    const INITIAL_HEAP: usize = 1 << 20;

    /// The first segment: zero-initialised static data, which the linker places in the
    /// initial memory without a data segment, so the module does not grow by it.
    #[repr(C, align(16))]
    struct InitialHeap(UnsafeCell<[u8; INITIAL_HEAP]>);

    // SAFETY: only dlmalloc touches it, through `InitialHeapThenGrow`, single-threaded.
    unsafe impl Sync for InitialHeap {}

    static HEAP: InitialHeap = InitialHeap(UnsafeCell::new([0; INITIAL_HEAP]));

    /// The memory dlmalloc draws its segments from: first [`HEAP`], once, then new pages.
    struct InitialHeapThenGrow {
        initial_taken: Cell<bool>,
    }

    // SAFETY: a lean build has no threads (wasm32-unknown-unknown without the atomics
    // feature), so nothing is ever shared across one.
    unsafe impl Send for InitialHeapThenGrow {}

    // SAFETY: every region handed out is memory this instance owns and nothing else uses:
    // [`HEAP`] (once) or pages `memory.grow` just added; none is ever returned.
    unsafe impl dlmalloc::Allocator for InitialHeapThenGrow {
        fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
            if size <= INITIAL_HEAP && !self.initial_taken.replace(true) {
                return (HEAP.0.get().cast::<u8>(), INITIAL_HEAP, 0);
            }
            let pages = size.div_ceil(PAGE);
            match core::arch::wasm32::memory_grow(0, pages) {
                usize::MAX => (null_mut(), 0, 0),
                previous => ((previous * PAGE) as *mut u8, pages * PAGE, 0),
            }
        }

        fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
            null_mut()
        }

        fn free_part(&self, _ptr: *mut u8, _old: usize, _new: usize) -> bool {
            false
        }

        fn free(&self, _ptr: *mut u8, _size: usize) -> bool {
            false
        }

        fn can_release_part(&self, _flags: u32) -> bool {
            false
        }

        fn allocates_zeros(&self) -> bool {
            // Fresh pages are zero, and so is [`HEAP`]: a fresh instance's statics are as the
            // module initialises them.
            true
        }

        fn page_size(&self) -> usize {
            PAGE
        }
    }

    struct Global(UnsafeCell<dlmalloc::Dlmalloc<InitialHeapThenGrow>>);

    // SAFETY: single-threaded, as above.
    unsafe impl Sync for Global {}

    // SAFETY: dlmalloc's contract is GlobalAlloc's; each call has the only access to it.
    unsafe impl GlobalAlloc for Global {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            unsafe { (*self.0.get()).malloc(layout.size(), layout.align()) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            unsafe { (*self.0.get()).calloc(layout.size(), layout.align()) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { (*self.0.get()).free(ptr, layout.size(), layout.align()) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            unsafe { (*self.0.get()).realloc(ptr, layout.size(), layout.align(), new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Global = Global(UnsafeCell::new(dlmalloc::Dlmalloc::new_with_allocator(
        InitialHeapThenGrow {
            initial_taken: Cell::new(false),
        },
    )));
}
