//! What a batch's handlers read: their batch's earlier acked writes (the overlay), then
//! committed state, read under the key's lock inside the batch's consume transaction. The
//! transaction is opened at the batch's first read of committed state (a batch whose handlers
//! read none keeps the plain commit path) and commits with the batch's outcomes, so no other
//! host can change a key between a handler reading it and this batch writing it.

use crate::runtime::{StateReader, StateWrite};
use crate::store::{ConsumeTx, Store};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The batch's consume transaction.
pub(super) enum Tx {
    /// No committed state read yet.
    Closed,
    /// Open; `busy` while a read is running on it (a read cancelled midway, by a deadline,
    /// leaves the connection in an unknown state: the transaction is then broken).
    Open { tx: Box<dyn ConsumeTx>, busy: bool },
    /// A read failed (a deadlock between hosts, a lost connection): nothing of the batch may
    /// commit; it is handled again from the start.
    Broken(String),
}

pub(super) struct BatchState {
    store: Arc<dyn Store>,
    overlay: Mutex<HashMap<String, Option<Vec<u8>>>>,
    tx: tokio::sync::Mutex<Tx>,
}

impl BatchState {
    pub(super) fn new(store: Arc<dyn Store>) -> BatchState {
        BatchState {
            store,
            overlay: Mutex::new(HashMap::new()),
            tx: tokio::sync::Mutex::new(Tx::Closed),
        }
    }

    /// Makes an acked invocation's writes visible to the batch's later handlers.
    pub(super) fn remember(&self, writes: &[StateWrite]) {
        let mut overlay = self.overlay.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in writes {
            overlay.insert(k.clone(), v.clone());
        }
    }

    /// The transaction, for the commit; later reads open a new one.
    pub(super) async fn take_tx(&self) -> Tx {
        let mut slot = self.tx.lock().await;
        settle(&mut slot);
        std::mem::replace(&mut *slot, Tx::Closed)
    }
}

/// A read cancelled midway (its invocation's deadline dropped it) left `busy` set: the
/// connection is in an unknown state, so the transaction counts as broken.
fn settle(slot: &mut Tx) {
    if let Tx::Open { busy: true, .. } = slot {
        *slot = Tx::Broken("a state read was cancelled midway (deadline)".into());
    }
}

#[async_trait]
impl StateReader for BatchState {
    async fn get(&self, service: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(v) = self
            .overlay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(v.clone());
        }
        let mut slot = self.tx.lock().await;
        settle(&mut slot);
        if let Tx::Closed = &*slot {
            match self.store.begin_consume().await {
                Ok(tx) => *slot = Tx::Open { tx, busy: false },
                Err(e) => return Err(format!("state read failed: {e}")),
            }
        }
        let Tx::Open { tx, busy } = &mut *slot else {
            return Err(
                "state read failed: the batch's transaction failed; it will run again".into(),
            );
        };
        *busy = true;
        let read = tx.state_get_locked(service, key).await;
        *busy = false;
        match read {
            Ok(v) => Ok(v),
            Err(e) => {
                let reason = format!("state read failed: {e}");
                *slot = Tx::Broken(reason.clone());
                Err(reason)
            }
        }
    }
}
