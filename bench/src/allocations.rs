//! Counts the process's heap allocations (`stats_alloc`: the system allocator with counters
//! beside it, so the bench itself stays free of `unsafe`). Allocations per event are exact
//! where CPU time on a shared VM is not: a change that allocates less shows even when the
//! machine's noise hides it in the rate.

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations and reallocations so far, all threads.
pub fn so_far() -> u64 {
    let stats = ALLOCATOR.stats();
    (stats.allocations + stats.reallocations) as u64
}
