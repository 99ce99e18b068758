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
    state_writes: u32,
    state_bytes: usize,
    emits: u32,
    emit_bytes: usize,
    requests: u32,
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
        if self.state_writes >= limits.max_state_writes {
            return Err(exceeded(
                "max_state_writes",
                format!("{} state writes per invocation", limits.max_state_writes),
            ));
        }
        if self.state_bytes.saturating_add(bytes) > limits.max_state_bytes {
            return Err(exceeded(
                "max_state_bytes",
                format!(
                    "{} bytes of state writes per invocation ({} used, this write is {bytes})",
                    limits.max_state_bytes, self.state_bytes
                ),
            ));
        }
        self.state_writes += 1;
        self.state_bytes += bytes;
        Ok(())
    }

    /// Charges one emit of `bytes` (every field).
    ///
    /// # Errors
    /// The budget it would exceed, named by its config key.
    pub fn charge_emit(&mut self, limits: &LimitsConfig, bytes: usize) -> Result<(), String> {
        if self.emits >= limits.max_emits {
            return Err(exceeded(
                "max_emits",
                format!("{} emits per invocation", limits.max_emits),
            ));
        }
        if self.emit_bytes.saturating_add(bytes) > limits.max_emit_bytes {
            return Err(exceeded(
                "max_emit_bytes",
                format!(
                    "{} bytes of emits per invocation ({} used, this emit is {bytes})",
                    limits.max_emit_bytes, self.emit_bytes
                ),
            ));
        }
        self.emits += 1;
        self.emit_bytes += bytes;
        Ok(())
    }

    /// Charges one outbound request.
    ///
    /// # Errors
    /// The budget it would exceed, named by its config key.
    pub fn charge_request(&mut self, limits: &LimitsConfig) -> Result<(), String> {
        if self.requests >= limits.max_requests {
            return Err(exceeded(
                "max_requests",
                format!("{} outbound requests per invocation", limits.max_requests),
            ));
        }
        self.requests += 1;
        Ok(())
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
}
