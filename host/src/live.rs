//! A value a reload swaps whole while readers keep working: each reader takes an `Arc`
//! snapshot for the unit of work at hand (a relay round, a consumed batch, an enqueue), so one
//! unit never sees half of an old value and half of a new one. The config and the catalog are
//! held this way (`ConfigCell`, `CatalogCell`).

use std::sync::{Arc, RwLock};

pub struct Live<T>(Arc<RwLock<Arc<T>>>);

// Not derived: `derive(Clone)` would ask for `T: Clone`, but only the handle is cloned.
impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the value; snapshots already taken keep the old one.
    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}
