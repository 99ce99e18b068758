//! JSON values in the service's state store: the only module that calls the `state` import.
//! A host refusal is a retry (transient); a stored value that no longer parses is dead, since
//! retrying cannot repair it.

use crate::bindings::switchyard::handler::state;
use serde::Serialize;
use serde::de::DeserializeOwned;
use smartflow_kit::{Failure, Step};

pub fn get<T: DeserializeOwned>(key: &str) -> Step<Option<T>> {
    match state::get(key).map_err(Failure::Retry)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Failure::Dead(format!("stored value {key} is corrupt: {e}"))),
    }
}

pub fn put<T: Serialize>(key: &str, value: &T) -> Step<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Failure::Dead(e.to_string()))?;
    state::set(key, &bytes).map_err(Failure::Retry)
}
