//! The service's private key-value store (`state` import), holding JSON values.
//!
//! A host error (a spent write budget, a store failure) is a [`Failure::Retry`]; a stored
//! value that no longer decodes as the type asked for is [`Failure::Dead`], since every
//! attempt would read the same bytes.

use crate::bindings::switchyard::handler::state as host;
use crate::{Failure, HandlerResult};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The value under `key`, or `None`.
///
/// # Errors
/// Retry when the host refuses the read; dead when the value is not a `T`.
pub fn get<T: DeserializeOwned>(key: &str) -> HandlerResult<Option<T>> {
    match get_raw(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Failure::Dead(format!("state {key:?} does not decode: {e}"))),
    }
}

/// Stores `value` as JSON under `key`.
///
/// # Errors
/// Retry when the host refuses the write (e.g. `limits.max_state_writes`).
pub fn set<T: Serialize + ?Sized>(key: &str, value: &T) -> HandlerResult {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Failure::Dead(format!("state {key:?} does not encode: {e}")))?;
    set_raw(key, &bytes)
}

/// Removes `key` (nothing happens if it is absent).
///
/// # Errors
/// Retry when the host refuses.
pub fn delete(key: &str) -> HandlerResult {
    host::delete(key).map_err(|e| Failure::Retry(format!("state delete {key:?}: {e}")))
}

/// The bytes under `key`, as stored.
///
/// # Errors
/// Retry when the host refuses the read.
pub fn get_raw(key: &str) -> HandlerResult<Option<Vec<u8>>> {
    host::get(key).map_err(|e| Failure::Retry(format!("state get {key:?}: {e}")))
}

/// Stores bytes under `key` as they are.
///
/// # Errors
/// Retry when the host refuses the write.
pub fn set_raw(key: &str, value: &[u8]) -> HandlerResult {
    host::set(key, value).map_err(|e| Failure::Retry(format!("state set {key:?}: {e}")))
}
