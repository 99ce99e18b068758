//! `[retention]` and `[services.<name>.retention]`: how long `consumed` rows stay in a
//! service's outbox table before the host deletes them (or moves them to `<table>_archive`).
//! Off unless `consumed_max_age` is set: nothing is ever deleted that the file did not ask
//! for. A service's override names only what differs, like `[services.<name>.retry]`.

use super::{Config, ConfigError};
use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Rows one retention round may delete at most (the largest `batch_size` accepted).
pub const MAX_RETENTION_BATCH: u32 = 10_000;

/// `[retention]`: deleting consumed rows. `dead` rows are never deleted by it (only
/// `switchyard dead purge` does); `pending` and `published` rows never.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long a row stays after it was consumed (its `consumed_at`), a humantime duration:
    /// `"7d"`, `"12h"`, `"1h 30m"`; `"off"` (the default) keeps consumed rows forever.
    #[serde(default, deserialize_with = "max_age")]
    pub consumed_max_age: Option<Duration>,
    /// Rows one round deletes at most, in one short transaction. Default 500; 1 to 10,000.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Pause after a round that found fewer than `batch_size` old rows (a full round runs the
    /// next at once), a humantime duration. Default `"1m"`.
    #[serde(default = "default_interval", with = "humantime_serde_like")]
    pub interval: Duration,
    /// `true`: each deleted row is first copied to `<table>_archive` in the same transaction.
    /// `switchyard migrate` creates that table; a host with `archive = true` whose archive
    /// table is missing refuses to start. Default `false`.
    #[serde(default)]
    pub archive: bool,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            consumed_max_age: None,
            batch_size: default_batch_size(),
            interval: default_interval(),
            archive: false,
        }
    }
}

/// 500 rows: a delete of that many rows by primary key takes milliseconds on every backend.
fn default_batch_size() -> u32 {
    500
}

/// One minute: consumed rows are kept for days, so minutes of slack cost nothing.
fn default_interval() -> Duration {
    Duration::from_secs(60)
}

/// Overrides of `[retention]` for one service (`[services.<name>.retention]`). Every field is
/// optional; `consumed_max_age = "off"` turns retention off for this service alone.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionOverride {
    /// See [`RetentionConfig::consumed_max_age`]; `"off"` turns it off for this service.
    #[serde(default, deserialize_with = "max_age_override")]
    pub consumed_max_age: Option<Option<Duration>>,
    /// See [`RetentionConfig::batch_size`].
    pub batch_size: Option<u32>,
    /// See [`RetentionConfig::interval`].
    #[serde(default, deserialize_with = "interval_override")]
    pub interval: Option<Duration>,
    /// See [`RetentionConfig::archive`].
    pub archive: Option<bool>,
}

fn parse_age(text: &str) -> Result<Option<Duration>, String> {
    if text.trim() == "off" {
        return Ok(None);
    }
    humantime::parse_duration(text)
        .map(Some)
        .map_err(|e| format!("`{text}` is not a duration like \"7d\" or \"12h\", or \"off\": {e}"))
}

fn max_age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_age(&text).map_err(serde::de::Error::custom)
}

fn max_age_override<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Duration>>, D::Error> {
    max_age(d).map(Some)
}

fn interval_override<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    humantime_serde_like::deserialize(d).map(Some)
}

/// A humantime duration string (`"30s"`, `"1m"`).
mod humantime_serde_like {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration like \"30s\" or \"1m\": {e}"
            ))
        })
    }
}

impl Config {
    /// The retention of `service`'s table: `[retention]` with the service's overrides applied.
    pub fn retention_for(&self, service: &str) -> RetentionConfig {
        let mut r = self.retention.clone();
        if let Some(o) = self
            .services
            .get(service)
            .and_then(|s| s.retention.as_ref())
        {
            if let Some(age) = o.consumed_max_age {
                r.consumed_max_age = age;
            }
            r.batch_size = o.batch_size.unwrap_or(r.batch_size);
            r.interval = o.interval.unwrap_or(r.interval);
            r.archive = o.archive.unwrap_or(r.archive);
        }
        r
    }

    /// Every retention in the file is usable: a positive age, a batch of 1 to 10,000 rows and
    /// a positive interval.
    pub(super) fn validate_retention(&self) -> Result<(), ConfigError> {
        let policies = std::iter::once(("retention".to_owned(), self.retention.clone())).chain(
            self.services
                .iter()
                .filter(|(_, s)| s.retention.is_some())
                .map(|(name, _)| {
                    (
                        format!("services.{name}.retention"),
                        self.retention_for(name),
                    )
                }),
        );
        for (key, r) in policies {
            if r.consumed_max_age == Some(Duration::ZERO) {
                return Err(ConfigError::Invalid(format!(
                    "{key}.consumed_max_age must be more than 0 (\"off\" keeps consumed rows)"
                )));
            }
            if r.batch_size == 0 || r.batch_size > MAX_RETENTION_BATCH {
                return Err(ConfigError::Invalid(format!(
                    "{key}.batch_size must be between 1 and {MAX_RETENTION_BATCH}, not {}",
                    r.batch_size
                )));
            }
            if r.interval.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "{key}.interval must be more than 0"
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
    fn retention_is_off_by_default() {
        let c = config("database_url = 'sqlite://x'\n[services.task]\n").unwrap();
        assert_eq!(c.retention_for("task"), RetentionConfig::default());
        assert_eq!(c.retention_for("task").consumed_max_age, None);
    }

    #[test]
    fn a_service_override_replaces_only_the_fields_it_names() {
        let c = config(
            "database_url = 'sqlite://x'\n[retention]\nconsumed_max_age = '7d'\nbatch_size = 200\n\
             interval = '30s'\n[services.task]\n[services.memory.retention]\narchive = true\n\
             [services.audit.retention]\nconsumed_max_age = 'off'\n",
        )
        .unwrap();
        let t = c.retention_for("task");
        assert_eq!(t.consumed_max_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(
            (t.batch_size, t.interval, t.archive),
            (200, Duration::from_secs(30), false)
        );
        let m = c.retention_for("memory");
        assert_eq!((m.consumed_max_age, m.archive), (t.consumed_max_age, true));
        assert_eq!(c.retention_for("audit").consumed_max_age, None);
    }

    #[test]
    fn unusable_retention_is_refused_naming_its_key() {
        for (text, expected) in [
            (
                "[retention]\nbatch_size = 0\n",
                "retention.batch_size must be between 1",
            ),
            (
                "[services.task.retention]\nbatch_size = 20000\n",
                "services.task.retention.batch_size must be between 1 and 10000, not 20000",
            ),
            (
                "[retention]\nconsumed_max_age = '0s'\n",
                "consumed_max_age must be more than 0",
            ),
            (
                "[retention]\nconsumed_max_age = 'a week'\n",
                "is not a duration",
            ),
            (
                "[retention]\ninterval = '0s'\n",
                "retention.interval must be more than 0",
            ),
            ("[retention]\nmax_age = '7d'\n", "unknown field"),
            ("[services.task.retention]\nkeep = true\n", "unknown field"),
        ] {
            let err = config(&format!("database_url = 'sqlite://x'\n{text}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
