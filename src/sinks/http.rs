//! The `http` destination: POSTs the original body to a downstream handler so that a handler
//! written for Stream, verifying with Stream's SDK, works unchanged behind hookfan.

use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::{error_chain, Delivery, Outcome};
use crate::config::{HttpDestination, Secret};
use crate::spool::StoredEvent;
use crate::stream::{sign, HEADER_API_KEY, HEADER_ATTEMPT, HEADER_SIGNATURE, HEADER_WEBHOOK_ID};
use crate::telemetry::otel;

/// How much of a failing response's body is quoted in the error.
const ERROR_BODY_QUOTE: usize = 200;

pub struct HttpSink {
    /// One client per route: its own keep-alive pool, sized to the route's concurrency.
    client: reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
    /// Re-sign with this secret instead of forwarding Stream's signature.
    resign: Option<Secret>,
    /// Append each event's request path and query to `url`.
    forward_path: bool,
}

impl HttpSink {
    pub fn new(d: &HttpDestination) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(d.concurrency)
            .connect_timeout(d.timeout)
            .user_agent(concat!("hookfan/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpSink {
            client,
            url: d.url.clone(),
            timeout: d.timeout,
            resign: d.api_secret.clone(),
            forward_path: d.forward_path,
        })
    }

    pub async fn deliver(&self, delivery: &Delivery<'_>) -> Outcome {
        let (event, attempt) = (delivery.event, delivery.number);
        let signature = match &self.resign {
            Some(secret) => sign(secret.expose(), &event.body),
            None => event.signature.clone(),
        };
        let mut request = self
            .client
            .post(self.target(event))
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(HEADER_ATTEMPT, attempt.to_string())
            .header(HEADER_SIGNATURE, signature)
            .body(event.body.clone());
        if let Some(id) = &event.webhook_id {
            request = request.header(HEADER_WEBHOOK_ID, id);
        }
        if let Some(key) = &event.api_key {
            request = request.header(HEADER_API_KEY, key);
        }
        if let Some(trace) = otel::propagation(&delivery.span) {
            request = request.header("traceparent", trace.traceparent);
            if let Some(state) = trace.tracestate {
                request = request.header("tracestate", state);
            }
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                if !delivery.span.is_disabled() {
                    delivery
                        .span
                        .record("http.response.status_code", status.as_u16());
                }
                let retry_after = retry_after(response.headers());
                // Read the body so the connection goes back to the pool, and to quote it.
                let body = response.bytes().await.unwrap_or_default();
                classify(status, retry_after, &body)
            }
            Err(e) if e.is_timeout() => Outcome::Retry {
                after: None,
                error: format!(
                    "timed out after {}",
                    humantime::format_duration(self.timeout)
                ),
            },
            // Without the URL: the route names it, and its query (the sender's too, with
            // forward_path) must not reach logs and exported trace spans.
            Err(e) => Outcome::Retry {
                after: None,
                error: error_chain(&e.without_url()),
            },
        }
    }
}

impl HttpSink {
    /// The route's URL, or with `forward_path` the URL with the event's request path appended
    /// to its path and the event's query added to its own.
    fn target(&self, event: &StoredEvent) -> reqwest::Url {
        if !self.forward_path {
            return self.url.clone();
        }
        forwarded_url(&self.url, event.request_path(), event.request_query())
    }
}

/// `base` with `path` appended to its path (`/hooks` + `/pending/commit` =
/// `/hooks/pending/commit`) and `query` appended to its query.
pub fn forwarded_url(base: &reqwest::Url, path: &str, query: Option<&str>) -> reqwest::Url {
    let mut url = base.clone();
    if path != "/" {
        let joined = format!("{}{path}", base.path().trim_end_matches('/'));
        url.set_path(&joined);
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        let joined = match base.query() {
            Some(own) if !own.is_empty() => format!("{own}&{query}"),
            _ => query.to_string(),
        };
        url.set_query(Some(&joined));
    }
    url
}

/// What a handler's answer means: 2xx delivered; 408, 429 and 5xx worth retrying; anything
/// else (other 4xx, 3xx, 1xx) permanent.
pub fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered;
    }
    let quoted = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_QUOTE)]);
    let error = if quoted.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", quoted.trim())
    };
    if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Outcome::Retry {
            after: retry_after,
            error,
        }
    } else {
        Outcome::Permanent { error }
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_path_appends_the_request_path_and_query_to_the_url() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        // (route url, request path, request query, delivered to)
        let table = [
            ("http://h/hooks", "/", None, "http://h/hooks"),
            (
                "http://h/hooks",
                "/pending/commit",
                None,
                "http://h/hooks/pending/commit",
            ),
            (
                "http://h/hooks/",
                "/pending/commit",
                None,
                "http://h/hooks/pending/commit",
            ),
            (
                "http://h",
                "/pending/commit",
                None,
                "http://h/pending/commit",
            ),
            ("http://h/", "/", Some("a=1"), "http://h/?a=1"),
            (
                "http://h/hooks?app=x",
                "/p",
                Some("a=1&b=%2F"),
                "http://h/hooks/p?app=x&a=1&b=%2F",
            ),
        ];
        for (base, path, query, want) in table {
            assert_eq!(
                forwarded_url(&url(base), path, query).as_str(),
                want,
                "{base} + {path} {query:?}"
            );
        }
    }

    #[test]
    fn status_codes_are_classified_as_the_contract_says() {
        let table = [
            (200, "delivered"),
            (204, "delivered"),
            (408, "retry"),
            (429, "retry"),
            (500, "retry"),
            (503, "retry"),
            (400, "permanent"),
            (401, "permanent"),
            (404, "permanent"),
            (301, "permanent"),
        ];
        for (code, want) in table {
            let got = match classify(StatusCode::from_u16(code).unwrap(), None, b"") {
                Outcome::Delivered => "delivered",
                Outcome::Retry { .. } => "retry",
                Outcome::Permanent { .. } => "permanent",
            };
            assert_eq!(got, want, "HTTP {code}");
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn errors_quote_the_start_of_the_response_body() {
        let body = "x".repeat(1000);
        let Outcome::Permanent { error } = classify(StatusCode::BAD_REQUEST, None, body.as_bytes())
        else {
            panic!("400 is permanent")
        };
        assert!(error.starts_with("HTTP 400 Bad Request: xxx"));
        assert!(error.len() < 250);
    }
}
