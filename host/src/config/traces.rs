//! `[traces]`: where the host's OpenTelemetry spans go. Off unless `otlp_endpoint` is set; a
//! producer's `traceparent` is carried through rows, Kafka headers and emits either way.

use super::ConfigError;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[traces]`: exporting spans over OTLP/HTTP (protobuf), e.g.
///
/// ```toml
/// [traces]
/// otlp_endpoint = "http://127.0.0.1:4318"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// The collector's OTLP/HTTP base URL (spans are POSTed to `<endpoint>/v1/traces`), or the
    /// full URL ending in `/v1/traces`. Default: none, no span is recorded or exported.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute of every span. Default `switchyard`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of the traces this host starts itself (an event enqueued without a
    /// `traceparent`) that are recorded, 0.0 to 1.0. An event that comes with a traceparent
    /// follows its producer's sampling decision. Default 1.0.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Longest a finished span waits before it is sent, milliseconds. Default 5000 (the
    /// OpenTelemetry default); spans are sent sooner when 512 are waiting.
    #[serde(default = "default_export_interval_ms")]
    pub export_interval_ms: u64,
    /// Extra HTTP headers on every export (e.g. a vendor's API key).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_service_name() -> String {
    "switchyard".into()
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_export_interval_ms() -> u64 {
    5_000
}

impl Default for TracesConfig {
    fn default() -> Self {
        TracesConfig {
            otlp_endpoint: None,
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
            export_interval_ms: default_export_interval_ms(),
            headers: BTreeMap::new(),
        }
    }
}

impl TracesConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::Invalid(format!(
                "traces.sample_ratio is {}: give a share from 0.0 (none) to 1.0 (every trace)",
                self.sample_ratio
            )));
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "traces.otlp_endpoint {endpoint:?} is not an http(s) URL: give the collector's \
                 OTLP/HTTP address, e.g. \"http://127.0.0.1:4318\" (gRPC on 4317 is not spoken)"
            )));
        }
        if self.export_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "traces.export_interval_ms must be at least 1".into(),
            ));
        }
        if self.service_name.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "traces.service_name is empty: name the host as traces should show it".into(),
            ));
        }
        Ok(())
    }
}
