//! The `outbound-http` import: a granted capability that leaves the process.
//!
//! Owns the allow-list check and the one HTTP call a guest may make through it. It is linked
//! only into the linker used for routes whose config grants it (`allowed_hosts`), and the
//! loader refuses a component that imports it on a route without the grant, so an ungranted
//! component never runs with it. Every call is checked again here against the route's list:
//! only `http`/`https`, only a listed `host:port`, a `Host` header (if the guest sets one) that
//! names that same authority, no redirects (a 3xx answer is an error: following it could leave
//! the list), no proxy from the environment, at most `limits.max_requests` per invocation, a
//! bounded response and a timeout. Every refusal is an error value the guest sees, never a
//! trap.
//!
//! It must never buffer anything into the consume transaction: a request sent is sent, whatever
//! the invocation's outcome (at-least-once, and the guest's docs say so).

use super::bindings::v0_2::notifying::switchyard::handler::outbound_http::{
    self, Request, Response,
};
use super::invocation::Invocation;
use std::time::Duration;
use ureq::http::Uri;

/// Largest response body a guest receives; a larger one is an error. 256 KiB: a webhook's
/// answer is a few bytes.
pub const MAX_RESPONSE_BYTES: u64 = 256 * 1024;

/// Longest a request may take (connect, send, receive), unless the invocation's deadline is
/// shorter: then half of it, so the guest still has time to record the failure.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Methods a guest may use.
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

impl outbound_http::Host for Invocation {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, String>> {
        let uri = match check(&self.policy.allowed_hosts, &request) {
            Ok(uri) => uri,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.budget.charge_request(&self.policy.limits) {
            return Ok(Err(e));
        }
        let timeout = SEND_TIMEOUT.min(Duration::from_millis(self.policy.limits.deadline_ms / 2));
        let result = tokio::task::spawn_blocking(move || call(request, uri, timeout)).await;
        Ok(result.unwrap_or_else(|e| Err(format!("outbound request task failed: {e}"))))
    }
}

/// Checks method, scheme and `host:port` against the route's allow-list.
///
/// # Errors
/// A message saying what is not allowed and how to allow it.
pub fn check(allowed_hosts: &[String], request: &Request) -> Result<Uri, String> {
    if !METHODS.contains(&request.method.as_str()) {
        return Err(format!(
            "method {:?} is not allowed: use one of {}",
            request.method,
            METHODS.join(", ")
        ));
    }
    let uri: Uri = request
        .url
        .parse()
        .map_err(|e| format!("url {:?} is not an absolute URL: {e}", request.url))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        Some(other) => {
            return Err(format!(
                "scheme {other:?} is not allowed: use http or https"
            ));
        }
        None => {
            return Err(format!(
                "url {:?} has no scheme: use http:// or https://",
                request.url
            ));
        }
    };
    let Some(host) = uri.host() else {
        return Err(format!("url {:?} has no host", request.url));
    };
    let target = format!(
        "{}:{}",
        host.to_ascii_lowercase(),
        uri.port_u16().unwrap_or(default_port)
    );
    if !allowed_hosts
        .iter()
        .any(|h| h.eq_ignore_ascii_case(&target))
    {
        return Err(format!(
            "host {target} is not in this route's allowed_hosts ({}): add it to the route's \
             allowed_hosts to grant it",
            allowed_hosts.join(", ")
        ));
    }
    // A server picks the site by the Host header: one naming another authority would reach a
    // host the grant does not name (through a shared address or a proxy in front of it).
    for (name, value) in &request.headers {
        if name.eq_ignore_ascii_case("host") {
            let value = value.trim().to_ascii_lowercase();
            // `target` is `host:port`, the port written out even when it is the default.
            if value != host.to_ascii_lowercase() && value != target {
                return Err(format!(
                    "Host header {value:?} differs from the request's authority {target}: \
                     omit it (the host sets it) or name the same host"
                ));
            }
        }
    }
    Ok(uri)
}

/// The blocking call, on a blocking thread.
fn call(request: Request, uri: Uri, timeout: Duration) -> Result<Response, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .proxy(None)
        .http_status_as_error(false)
        .build()
        .into();
    let mut builder = ureq::http::Request::builder()
        .method(request.method.as_str())
        .uri(uri);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let req = builder
        .body(request.body)
        .map_err(|e| format!("invalid request: {e}"))?;
    let mut response = agent
        .run(req)
        .map_err(|e| format!("request to {} failed: {e}", request.url))?;
    let status = response.status().as_u16();
    if response.status().is_redirection() {
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return Err(format!(
            "{} answered a redirect ({status}) to {location:?}: redirects are not followed \
             (the target may not be granted); call the final URL",
            request.url
        ));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| {
            format!(
                "reading the response of {} failed (limit {MAX_RESPONSE_BYTES} bytes): {e}",
                request.url
            )
        })?;
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, url: &str) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn only_listed_host_and_port_with_http_or_https_pass() {
        let allowed = vec!["127.0.0.1:8080".to_owned(), "open.feishu.cn:443".to_owned()];
        assert!(check(&allowed, &req("POST", "http://127.0.0.1:8080/hook")).is_ok());
        assert!(
            check(
                &allowed,
                &req("POST", "https://open.feishu.cn/open-apis/bot/v2/hook/x")
            )
            .is_ok()
        );
        let err = check(&allowed, &req("POST", "http://127.0.0.1:8081/hook")).unwrap_err();
        assert!(
            err.contains("127.0.0.1:8081 is not in this route's allowed_hosts"),
            "{err}"
        );
        assert!(
            check(&allowed, &req("POST", "http://open.feishu.cn/x")).is_err(),
            "port 80 not listed"
        );
        let err = check(&allowed, &req("POST", "ftp://127.0.0.1:8080/x")).unwrap_err();
        assert!(err.contains("scheme \"ftp\""), "{err}");
        assert!(check(&allowed, &req("CONNECT", "http://127.0.0.1:8080/")).is_err());
        assert!(check(&[], &req("GET", "http://127.0.0.1:8080/")).is_err());
    }

    /// A one-shot HTTP server on a free local port that answers every request with `reply`.
    fn serve_once(reply: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            stream.write_all(reply.as_bytes()).unwrap();
        });
        addr.to_string()
    }

    #[test]
    fn a_redirect_is_an_error_not_a_response() {
        let target = serve_once(
            "HTTP/1.1 302 Found\r\nLocation: http://10.0.0.1/admin\r\nContent-Length: 0\r\n\r\n",
        );
        let request = req("GET", &format!("http://{target}/hook"));
        let uri = check(std::slice::from_ref(&target), &request).unwrap();
        let err = call(request, uri, Duration::from_secs(5)).unwrap_err();
        assert!(
            err.contains("answered a redirect (302)") && err.contains("http://10.0.0.1/admin"),
            "{err}"
        );
    }

    #[test]
    fn a_host_header_naming_another_authority_is_refused() {
        let allowed = vec!["127.0.0.1:8080".to_owned()];
        let mut r = req("POST", "http://127.0.0.1:8080/hook");
        r.headers.push(("Host".into(), "internal.admin:80".into()));
        let err = check(&allowed, &r).unwrap_err();
        assert!(
            err.contains("Host header \"internal.admin:80\" differs"),
            "{err}"
        );
        r.headers[0].1 = "127.0.0.1:8080".into();
        assert!(check(&allowed, &r).is_ok());
        r.headers[0].1 = "127.0.0.1".into();
        assert!(check(&allowed, &r).is_ok());
    }
}
