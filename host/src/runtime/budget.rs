//! Per-invocation budgets, counted by the host at every import, outside guest memory.
//!
//! A guest's linear memory is capped by the `ResourceLimiter`; what the host buffers on its
//! behalf (state writes, emits, outbound requests, log output) is capped here. Past a budget
//! the import returns an error value naming the budget's config key, never a trap: the handler
//! decides what to do, and the host's memory stays bounded whatever it decides.

use crate::config::LimitsConfig;

/// What one invocation has spent so far.
#[derive(Debug, Default)]
pub struct Budget {
    state_writes: Spent,
    emits: Spent,
    requests: Spent,
    /// `sql` statements, and the bytes of their text, parameters and results.
    sql: Spent,
    /// Rows `sql` queries returned.
    sql_rows: u64,
}

/// Calls of one import and the bytes they carried.
#[derive(Debug, Default)]
struct Spent {
    calls: u32,
    bytes: usize,
}

/// One budget's limits and the names its error gives them.
struct Allowance<'a> {
    /// The config key and value of the call budget, and what a call is ("state writes").
    calls: (&'a str, u32, &'a str),
    /// The config key and value of the byte budget, if the import has one.
    bytes: Option<(&'a str, usize)>,
}

impl Spent {
    /// Charges one call of `bytes`, or names the budget it would exceed.
    fn charge(&mut self, allowance: Allowance<'_>, bytes: usize) -> Result<(), String> {
        let (calls_key, max_calls, what) = allowance.calls;
        if self.calls >= max_calls {
            return Err(exceeded(
                calls_key,
                format!("{max_calls} {what} per invocation"),
            ));
        }
        if let Some((bytes_key, max_bytes)) = allowance.bytes
            && self.bytes.saturating_add(bytes) > max_bytes
        {
            return Err(exceeded(
                bytes_key,
                format!(
                    "{max_bytes} bytes of {what} per invocation ({} used, this call adds {bytes})",
                    self.bytes
                ),
            ));
        }
        self.calls += 1;
        self.bytes += bytes;
        Ok(())
    }
}

impl Budget {
    /// Charges one state write (`set` or `delete`) of `bytes` (key + value).
    ///
    /// # Errors
    /// The budget it would exceed, named by its config key.
    pub fn charge_state_write(
        &mut self,
        limits: &LimitsConfig,
        bytes: usize,
    ) -> Result<(), String> {
        let allowance = Allowance {
            calls: ("max_state_writes", limits.max_state_writes, "state writes"),
            bytes: Some(("max_state_bytes", limits.max_state_bytes)),
        };
        self.state_writes.charge(allowance, bytes)
    }

    /// Charges one emit of `bytes` (every field).
    ///
    /// # Errors
    /// The budget it would exceed, named by its config key.
    pub fn charge_emit(&mut self, limits: &LimitsConfig, bytes: usize) -> Result<(), String> {
        let allowance = Allowance {
            calls: ("max_emits", limits.max_emits, "emits"),
            bytes: Some(("max_emit_bytes", limits.max_emit_bytes)),
        };
        self.emits.charge(allowance, bytes)
    }

    /// Charges one outbound request.
    ///
    /// # Errors
    /// The budget it would exceed, named by its config key.
    pub fn charge_request(&mut self, limits: &LimitsConfig) -> Result<(), String> {
        let allowance = Allowance {
            calls: ("max_requests", limits.max_requests, "outbound requests"),
            bytes: None,
        };
        self.requests.charge(allowance, 0)
    }

    /// Charges one `sql` statement of `bytes` (its text and parameters).
    ///
    /// # Errors
    /// The budget it would exceed, named by its config key.
    pub fn charge_sql_statement(
        &mut self,
        limits: &LimitsConfig,
        bytes: usize,
    ) -> Result<(), String> {
        let allowance = Allowance {
            calls: (
                "max_sql_statements",
                limits.max_sql_statements,
                "sql statements",
            ),
            bytes: Some(("max_sql_bytes", limits.max_sql_bytes)),
        };
        self.sql.charge(allowance, bytes)
    }

    /// What the next query may still return: (rows, bytes).
    pub fn sql_allowance(&self, limits: &LimitsConfig) -> (u64, usize) {
        (
            limits.max_sql_rows.saturating_sub(self.sql_rows),
            limits.max_sql_bytes.saturating_sub(self.sql.bytes),
        )
    }

    /// Records what a query returned (already held within [`Budget::sql_allowance`]).
    pub fn spend_sql_rows(&mut self, rows: u64, bytes: usize) {
        self.sql_rows = self.sql_rows.saturating_add(rows);
        self.sql.bytes = self.sql.bytes.saturating_add(bytes);
    }
}

fn exceeded(key: &str, what: String) -> String {
    format!("budget exceeded: limits.{key} allows {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_writes_of_one_key_count_each_time_and_the_error_names_the_budget() {
        let limits = LimitsConfig {
            max_state_writes: 3,
            ..LimitsConfig::default()
        };
        let mut b = Budget::default();
        for _ in 0..3 {
            b.charge_state_write(&limits, 10).unwrap();
        }
        let err = b.charge_state_write(&limits, 10).unwrap_err();
        assert!(err.contains("limits.max_state_writes"), "{err}");
    }

    #[test]
    fn bytes_are_summed_across_calls() {
        let limits = LimitsConfig {
            max_emit_bytes: 100,
            ..LimitsConfig::default()
        };
        let mut b = Budget::default();
        b.charge_emit(&limits, 60).unwrap();
        let err = b.charge_emit(&limits, 60).unwrap_err();
        assert!(err.contains("limits.max_emit_bytes"), "{err}");
        b.charge_emit(&limits, 40).unwrap();
    }

    #[test]
    fn outbound_requests_are_counted_per_invocation() {
        let limits = LimitsConfig {
            max_requests: 2,
            ..LimitsConfig::default()
        };
        let mut b = Budget::default();
        b.charge_request(&limits).unwrap();
        b.charge_request(&limits).unwrap();
        let err = b.charge_request(&limits).unwrap_err();
        assert_eq!(
            err,
            "budget exceeded: limits.max_requests allows 2 outbound requests per invocation"
        );
    }
}
