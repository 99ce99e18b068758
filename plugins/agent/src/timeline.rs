//! The agent timeline: SmartFlow's timeline table, unique on (conversation, seq).
//!
//! State layout:
//! - `timeline/<conversation_id>/<seq, 10 digits>` → [`Entry`] (zero-padded: keys sort by seq).
//! - `timeline/<conversation_id>/max_seq` → the highest seq stored, for clash repair.
//! - `timeline/<conversation_id>/moved/<fnv1a-64 of the row without its seq, hex>` → the seq a
//!   repaired row was moved to, so the same row sent again finds itself instead of being stored
//!   a second time at a new `max + 1` (the stored row is compared, so a hash collision cannot
//!   drop a row).
//!
//! SmartFlow's rules: the same row again is a success (no second row); a seq already taken by a
//! different row is repaired by moving the new row to `max + 1`, at most 3 tries in all, after
//! which the event is retried. It never touches chat or snapshot keys.

use crate::bindings::switchyard::handler::types::Event;
use crate::kv;
use serde::{Deserialize, Serialize};
use smartflow_kit::{Failure, Step, dead, parse_payload, positive, required, seg};

/// Tries to place a row: at its own seq, then at `max + 1` (SmartFlow: 3 tries in all).
const MAX_TRIES: u32 = 3;

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    #[serde(default)]
    pub user_id: i64,
    #[serde(default)]
    pub conversation_id: String,
    #[serde(default)]
    pub seq: i64,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub payload_json: Option<String>,
    #[serde(default)]
    pub tokens_consumed: i64,
}

impl Entry {
    /// Two rows are "the same row" when everything but the seq matches.
    fn same_row(&self, other: &Entry) -> bool {
        Entry {
            seq: 0,
            ..self.clone()
        } == Entry {
            seq: 0,
            ..other.clone()
        }
    }

    /// FNV-1a 64 of the row without its seq: stable across builds, no dependency needed.
    fn fingerprint(&self) -> u64 {
        let bytes = serde_json::to_vec(&Entry {
            seq: 0,
            ..self.clone()
        })
        .unwrap_or_default();
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

pub fn persist(event: &Event) -> Step<()> {
    let mut entry: Entry = parse_payload(&event.event_type, &event.payload)?;
    positive("user_id", entry.user_id)?;
    let conversation_id = required("conversation_id", &entry.conversation_id)?.to_owned();
    entry.conversation_id.clone_from(&conversation_id);
    positive("seq", entry.seq)?;
    required("kind", &entry.kind)?;
    if entry.tokens_consumed < 0 {
        return dead(format!(
            "tokens_consumed must not be negative, got {}",
            entry.tokens_consumed
        ));
    }
    if let Some(p) = entry.payload_json.as_deref()
        && let Err(e) = serde_json::from_str::<serde_json::Value>(p)
    {
        return dead(format!("payload_json is not JSON text: {e}"));
    }
    let prefix = format!("timeline/{}", seg(&conversation_id));
    let max_key = format!("{prefix}/max_seq");
    let mut max: i64 = kv::get(&max_key)?.unwrap_or(0);
    let moved_key = format!("{prefix}/moved/{:016x}", entry.fingerprint());
    for _ in 0..MAX_TRIES {
        let key = format!("{prefix}/{:010}", entry.seq);
        match kv::get::<Entry>(&key)? {
            None => {
                kv::put(&key, &entry)?;
                if entry.seq > max {
                    kv::put(&max_key, &entry.seq)?;
                }
                return Ok(());
            }
            // The same row again (a redelivery, or one already moved here by a repair).
            Some(existing) if existing.same_row(&entry) => return Ok(()),
            Some(existing) => {
                if let Some(seq) = kv::get::<i64>(&moved_key)?
                    && let Some(moved) = kv::get::<Entry>(&format!("{prefix}/{seq:010}"))?
                    && moved.same_row(&entry)
                {
                    return Ok(());
                }
                // A different row holds this seq: SmartFlow moves the new one after the last.
                max = max.max(existing.seq);
                entry.seq = max + 1;
                kv::put(&moved_key, &entry.seq)?;
            }
        }
    }
    Err(Failure::Retry(format!(
        "timeline seq clash in conversation {conversation_id:?} not repaired after {MAX_TRIES} tries"
    )))
}
