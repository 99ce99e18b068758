//! The OTLP exporter's HTTP client: a blocking ureq call. The SDK's batch processor exports
//! from its own thread (it blocks on the export future there), so a blocking client needs no
//! async runtime, and the host already has ureq (outbound HTTP of granted routes).

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use std::time::Duration;

/// A collector's answer is a small protobuf status; anything larger is not read.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

#[derive(Debug)]
pub(super) struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    pub(super) fn new(timeout: Duration) -> UreqClient {
        UreqClient {
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                // The exporter reads the status itself (and logs a refused export).
                .http_status_as_error(false)
                .build()
                .into(),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, body.to_vec());
        let mut response = self.agent.run(request)?;
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()?;
        let (parts, _) = response.into_parts();
        Ok(Response::from_parts(parts, Bytes::from(body)))
    }
}
