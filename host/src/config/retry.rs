//! `[services.<name>.retry]`: one service's overrides of `[retry]`, and the policy a service
//! ends up with. A field left out takes `[retry]`'s value, so a service names only what
//! differs (SmartFlow's notification service: 5 attempts, 5 min doubling to 30 min).

use super::{Config, ConfigError, RetryConfig};
use serde::Deserialize;

/// Overrides of `[retry]` for one service's rows: the `max_retry` written into rows inserted
/// into its table and the backoff of their failed attempts. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    /// Attempts before a row of this service goes `dead`, e.g. `5`.
    pub max_attempts: Option<u32>,
    /// First backoff of this service's rows in milliseconds, doubled per attempt, e.g.
    /// `300000` (5 min).
    pub backoff_base_ms: Option<u64>,
    /// Backoff ceiling of this service's rows in milliseconds, e.g. `1800000` (30 min); also
    /// the longest `delay-ms` a handler's retry may ask for.
    pub backoff_max_ms: Option<u64>,
}

impl Config {
    /// The retry policy of `service`'s rows: `[retry]` with the service's overrides applied.
    /// An unknown service gets `[retry]` as it is.
    pub fn retry_for(&self, service: &str) -> RetryConfig {
        let mut retry = self.retry.clone();
        if let Some(o) = self.services.get(service).and_then(|s| s.retry.as_ref()) {
            retry.max_attempts = o.max_attempts.unwrap_or(retry.max_attempts);
            retry.backoff_base_ms = o.backoff_base_ms.unwrap_or(retry.backoff_base_ms);
            retry.backoff_max_ms = o.backoff_max_ms.unwrap_or(retry.backoff_max_ms);
        }
        retry
    }

    /// Every retry policy in the file is usable: at least one attempt, and a ceiling no
    /// lower than the first backoff (else the ceiling silently wins every time).
    pub(super) fn validate_retry(&self) -> Result<(), ConfigError> {
        let policies = std::iter::once(("retry".to_owned(), self.retry.clone())).chain(
            self.services
                .iter()
                .filter(|(_, s)| s.retry.is_some())
                .map(|(name, _)| (format!("services.{name}.retry"), self.retry_for(name))),
        );
        for (key, r) in policies {
            if r.max_attempts == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{key}.max_attempts must be at least 1"
                )));
            }
            if r.backoff_max_ms < r.backoff_base_ms {
                return Err(ConfigError::Invalid(format!(
                    "{key}: backoff_max_ms ({}) is below backoff_base_ms ({}): raise the \
                     ceiling or lower the first backoff",
                    r.backoff_max_ms, r.backoff_base_ms
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, std::path::Path::new("t.toml"), Default::default())
    }

    #[test]
    fn a_service_override_replaces_only_the_fields_it_names() {
        let c = config(
            "database_url = 'sqlite://x'\n[retry]\nmax_attempts = 20\nbackoff_base_ms = 1000\n\
             backoff_max_ms = 32000\n[services.task]\n[services.notification.retry]\n\
             max_attempts = 5\nbackoff_base_ms = 300000\nbackoff_max_ms = 1800000\n\
             [services.memory.retry]\nmax_attempts = 6\n",
        )
        .unwrap();
        let n = c.retry_for("notification");
        assert_eq!(
            (n.max_attempts, n.backoff_base_ms, n.backoff_max_ms),
            (5, 300_000, 1_800_000)
        );
        let m = c.retry_for("memory");
        assert_eq!(
            (m.max_attempts, m.backoff_base_ms, m.backoff_max_ms),
            (6, 1000, 32000)
        );
        assert_eq!(c.retry_for("task"), c.retry);
    }

    #[test]
    fn an_unusable_override_is_refused_naming_its_key() {
        let err = config(
            "database_url = 'sqlite://x'\n[services.notification.retry]\nmax_attempts = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("services.notification.retry.max_attempts must be at least 1"),
            "{err}"
        );
        let err = config(
            "database_url = 'sqlite://x'\n[services.notification.retry]\nbackoff_base_ms = 60000\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("services.notification.retry: backoff_max_ms (32000) is below"),
            "{err}"
        );
        let err =
            config("database_url = 'sqlite://x'\n[services.notification.retry]\nattempts = 5\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
