//! WASI's wall clock and environment answered from the invocation itself, without building
//! its `WasiCtx`.
//!
//! A handler that reads the time (SmartFlow's do, once per event) would otherwise build a
//! whole WASI context on that first call: two random generators (one seeded by a `getrandom`
//! syscall), two clocks and boxed stdio, all dropped unused with the store. These two
//! interfaces need none of it. They shadow wasmtime-wasi's definitions in each linker and
//! answer exactly as those would for the context `invocation` builds: the same wall clock
//! (wasmtime-wasi's own), the route's `env` and nothing else, no arguments, no working
//! directory. Everything else of WASI still goes through the `WasiCtx`.

use super::invocation::Invocation;
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::HostWallClock;
use wasmtime_wasi::clocks::WallClock;
use wasmtime_wasi::p2::bindings::cli::environment;
use wasmtime_wasi::p2::bindings::clocks::wall_clock::{self, Datetime};

/// Defines the two interfaces over wasmtime-wasi's, which must already be in `linker`.
pub(super) fn shadow_in(linker: &mut Linker<Invocation>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    wall_clock::add_to_linker::<Invocation, HasSelf<Invocation>>(linker, |s| s)?;
    environment::add_to_linker::<Invocation, HasSelf<Invocation>>(linker, |s| s)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn datetime(since_epoch: std::time::Duration) -> Datetime {
    Datetime {
        seconds: since_epoch.as_secs(),
        nanoseconds: since_epoch.subsec_nanos(),
    }
}

impl wall_clock::Host for Invocation {
    fn now(&mut self) -> wasmtime::Result<Datetime> {
        Ok(datetime(WallClock.now()))
    }

    fn resolution(&mut self) -> wasmtime::Result<Datetime> {
        Ok(datetime(WallClock.resolution()))
    }
}

impl environment::Host for Invocation {
    fn get_environment(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.policy.env.clone())
    }

    fn get_arguments(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn initial_cwd(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(None)
    }
}
