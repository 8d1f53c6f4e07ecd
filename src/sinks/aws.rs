//! The `sqs` and `sns` destinations: one publisher ([`AwsSink`]) over a small client trait
//! ([`BatchClient`]: send one batch, say which entries were refused), which the SQS and SNS
//! clients implement; everything else is written once. Tests script the client.
//!
//! Building a message from an event is pure ([`build_message`]): the body (Stream's JSON as
//! sent, or Stream's compressed format), the String message attributes consumers filter on,
//! and for FIFO targets the group and deduplication ids. Sending is the thin part: split into
//! batches of at most 10 entries and the target's byte limit, one `SendMessageBatch` /
//! `PublishBatch` each, and one [`Outcome`] per event from the per-entry results.
//!
//! Batching needs no timer: the route's worker hands over everything that is due, so a lone
//! event goes out alone at once, and under load events pile up in the spool while a batch is
//! in flight and leave together in the next.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use sha2::{Digest, Sha256};

use super::{Outcome, SinkError};
use crate::config::{AwsDestination, BodyFormat};
use crate::spool::StoredEvent;
use crate::telemetry::otel::{self, Propagation};
use crate::template::{MissingField, Template};

/// The most message attributes SQS takes on one message (SNS takes more).
pub const MAX_ATTRIBUTES: usize = 10;

/// Most entries in one SendMessageBatch / PublishBatch.
pub const MAX_BATCH: usize = 10;
/// SQS: largest message (body + attributes), and largest batch request.
pub const SQS_MAX_BYTES: usize = 1024 * 1024;
/// SNS: largest message, and largest batch request.
pub const SNS_MAX_BYTES: usize = 256 * 1024;
/// How long one AWS request may take before it counts as failed (and is retried).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A route's SQS or SNS destination: [`BatchClient`] `C` does the sending (the service's
/// client; a scripted one in tests).
pub struct AwsSink<C = Client> {
    client: C,
    /// Queue URL or topic ARN.
    target: String,
    body: BodyFormat,
    group: Option<Template>,
    fifo: bool,
    /// Per message and per batch request.
    max_bytes: usize,
}

/// One message, ready for either service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub body: String,
    /// (name, value), all of AWS type `String`.
    pub attributes: Vec<(&'static str, String)>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
}

impl Message {
    /// The size AWS counts against its limits: body plus each attribute's name, type and value.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + "String".len() + v.len())
                .sum::<usize>()
    }

    /// Adds the `traceparent` and `tracestate` attributes, for a consumer to continue the
    /// trace, if they fit: within [`MAX_ATTRIBUTES`] and `max_bytes`. A message never fails
    /// for its trace context; one that would not fit goes without it.
    pub fn with_trace(mut self, trace: &Propagation, max_bytes: usize) -> Message {
        let mut added = vec![("traceparent", trace.traceparent.clone())];
        if let Some(state) = &trace.tracestate {
            added.push(("tracestate", state.clone()));
        }
        let before = self.attributes.len();
        self.attributes.extend(added);
        if self.attributes.len() > MAX_ATTRIBUTES || self.size() > max_bytes {
            self.attributes.truncate(before);
        }
        self
    }
}

/// Why an event cannot be sent the way its route is configured. Permanent: no retry changes
/// the event, so it is dead-lettered with this text.
#[derive(Debug, thiserror::Error)]
pub enum Unsendable {
    #[error("event body is not UTF-8: {0}")]
    NotUtf8(#[from] std::string::FromUtf8Error),
    #[error("cannot compress the event body: {0}")]
    Compress(#[from] std::io::Error),
    #[error("event body is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error(transparent)]
    NoGroupId(#[from] MissingField),
    #[error("message is {size} bytes, over the destination's limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// Turns a stored event into the message a route sends.
pub fn build_message(
    event: &StoredEvent,
    format: BodyFormat,
    group: Option<&Template>,
    fifo: bool,
    max_bytes: usize,
) -> Result<Message, Unsendable> {
    let body = match format {
        BodyFormat::Raw => String::from_utf8(event.body.clone())?,
        BodyFormat::StreamCompressed => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&event.body).and_then(|()| gz.flush())?;
            let gz = gz.finish()?;
            base64::engine::general_purpose::STANDARD.encode(gz)
        }
    };
    let received = UNIX_EPOCH + Duration::from_millis(event.received_at_ms);
    let mut attributes = Vec::with_capacity(7);
    let mut add = |name: &'static str, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            attributes.push((name, v.to_string()));
        }
    };
    add("event_type", event.event_type.as_deref());
    add("webhook_id", event.webhook_id.as_deref());
    add("api_key", event.api_key.as_deref());
    add("signature", Some(&event.signature));
    add(
        "received_at",
        Some(&humantime::format_rfc3339_millis(received).to_string()),
    );
    // Only when the webhook was posted somewhere else than `/` (pending-message callbacks,
    // several Stream settings pointed at one hookfan).
    add("path", Some(event.request_path()).filter(|p| *p != "/"));
    add("query", event.request_query());
    let group_id = match group {
        Some(t) => {
            let json: serde_json::Value = serde_json::from_slice(&event.body)?;
            Some(aws_id(&t.render(&json)?))
        }
        None => None,
    };
    let dedup_id = fifo.then(|| match &event.webhook_id {
        Some(id) => aws_id(id),
        None => hex::encode(Sha256::digest(&event.body)),
    });
    let message = Message {
        body,
        attributes,
        group_id,
        dedup_id,
    };
    let size = message.size();
    if size > max_bytes {
        return Err(Unsendable::TooLarge {
            size,
            limit: max_bytes,
        });
    }
    Ok(message)
}

/// A FIFO group or deduplication id: kept as is when AWS accepts it (1 to 128 characters,
/// letters, digits and punctuation), otherwise the hex SHA-256 of it, so the same input
/// always gives the same id.
pub fn aws_id(value: &str) -> String {
    let ok = (1..=128).contains(&value.len()) && value.chars().all(|c| c.is_ascii_graphic());
    if ok {
        value.to_string()
    } else {
        hex::encode(Sha256::digest(value.as_bytes()))
    }
}

/// Groups consecutive messages into batches of at most [`MAX_BATCH`] entries and `max_bytes`.
pub fn batches(sizes: &[usize], max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, size) in sizes.iter().enumerate() {
        if i > start && (i - start == MAX_BATCH || bytes + size > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// The two services a route can publish to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Sqs,
    Sns,
}

/// An entry of a batch that AWS refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Its index in the batch.
    pub index: usize,
    /// AWS says the request was wrong (a permanent failure), not the service.
    pub sender_fault: bool,
    /// AWS's error code (`InvalidParameterValue`, ...).
    pub code: String,
    /// AWS's code and message.
    pub error: String,
}

/// Why a whole batch request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// AWS's error code, when the service answered with one (not for a timeout or a
    /// connection that failed).
    pub code: Option<String>,
    /// The code and message, or the transport failure.
    pub error: String,
}

/// The one thing SQS and SNS do differently here: send one batch of messages. Everything
/// around it (building messages, batching, FIFO holds, outcomes) is [`AwsSink`]'s, once.
pub trait BatchClient: Send + Sync {
    /// Sends `messages` to `target` (a queue URL or a topic ARN) as one batch request.
    /// `Ok` lists the entries AWS refused; `Err` says why the whole request failed.
    fn send_batch(
        &self,
        target: &str,
        messages: &[&Message],
    ) -> impl std::future::Future<Output = Result<Vec<Refused>, Failure>> + Send;
}

/// The SQS or SNS client a route was built with.
pub enum Client {
    Sqs(aws_sdk_sqs::Client),
    Sns(aws_sdk_sns::Client),
}

impl BatchClient for Client {
    async fn send_batch(
        &self,
        target: &str,
        messages: &[&Message],
    ) -> Result<Vec<Refused>, Failure> {
        match self {
            Client::Sqs(c) => c.send_batch(target, messages).await,
            Client::Sns(c) => c.send_batch(target, messages).await,
        }
    }
}

impl BatchClient for aws_sdk_sqs::Client {
    async fn send_batch(
        &self,
        target: &str,
        messages: &[&Message],
    ) -> Result<Vec<Refused>, Failure> {
        use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut e = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .set_message_group_id(m.group_id.clone())
                    .set_message_deduplication_id(m.dedup_id.clone());
                for (k, v) in &m.attributes {
                    let value = MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(v)
                        .build()
                        .expect("data_type is set");
                    e = e.message_attributes(*k, value);
                }
                e.build().expect("id and body are set")
            })
            .collect();
        let out = self
            .send_message_batch()
            .queue_url(target)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(out
            .failed()
            .iter()
            .filter_map(|f| refused(f.id(), f.sender_fault(), f.code(), f.message()))
            .collect())
    }
}

impl BatchClient for aws_sdk_sns::Client {
    async fn send_batch(
        &self,
        target: &str,
        messages: &[&Message],
    ) -> Result<Vec<Refused>, Failure> {
        use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut e = PublishBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message(&m.body)
                    .set_message_group_id(m.group_id.clone())
                    .set_message_deduplication_id(m.dedup_id.clone());
                for (k, v) in &m.attributes {
                    let value = MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(v)
                        .build()
                        .expect("data_type is set");
                    e = e.message_attributes(*k, value);
                }
                e.build().expect("id and message are set")
            })
            .collect();
        let out = self
            .publish_batch()
            .topic_arn(target)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(out
            .failed()
            .iter()
            .filter_map(|f| refused(f.id(), f.sender_fault(), f.code(), f.message()))
            .collect())
    }
}

/// A failed entry as both services report it (ids are the entries' indexes, as sent).
fn refused(id: &str, sender_fault: bool, code: &str, message: Option<&str>) -> Option<Refused> {
    Some(Refused {
        index: id.parse().ok()?,
        sender_fault,
        code: code.to_string(),
        error: format!("{code}: {}", message.unwrap_or_default()),
    })
}

impl AwsSink {
    pub async fn new(service: Service, d: &AwsDestination) -> Result<AwsSink, SinkError> {
        let config = crate::aws::sdk_config(crate::aws::Endpoint {
            region: d.region.as_deref(),
            endpoint_url: d.endpoint_url.as_deref(),
            role_arn: d.role_arn.as_deref(),
            attempt_timeout: ATTEMPT_TIMEOUT,
        })
        .await;
        let (client, max_bytes) = match service {
            Service::Sqs => (
                Client::Sqs(aws_sdk_sqs::Client::new(&config)),
                SQS_MAX_BYTES,
            ),
            Service::Sns => (
                Client::Sns(aws_sdk_sns::Client::new(&config)),
                SNS_MAX_BYTES,
            ),
        };
        Ok(AwsSink {
            client,
            target: d.target.clone(),
            body: d.body,
            group: d.message_group_id.clone(),
            fifo: d.fifo,
            max_bytes,
        })
    }
}

impl<C: BatchClient> AwsSink<C> {
    /// Sends `events` (at most [`MAX_BATCH`]), each with its attempt's trace span (its
    /// `traceparent` is sent on; AWS's error code is recorded on it as `error.type`), and
    /// returns one outcome per event, in order. On a FIFO target, once one event must be
    /// retried, every event after it is retried too rather than sent ahead of it.
    pub async fn deliver_batch(&self, events: &[(&StoredEvent, &tracing::Span)]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        let mut ready = Vec::new();
        for (i, (event, span)) in events.iter().enumerate() {
            let trace = otel::propagation(span);
            match build_message(
                event,
                self.body,
                self.group.as_ref(),
                self.fifo,
                self.max_bytes,
            ) {
                Ok(m) => ready.push((
                    i,
                    match &trace {
                        Some(trace) => m.with_trace(trace, self.max_bytes),
                        None => m,
                    },
                )),
                Err(why) => {
                    outcomes[i] = Some(Outcome::Permanent {
                        error: why.to_string(),
                    })
                }
            }
        }
        let sizes: Vec<usize> = ready.iter().map(|(_, m)| m.size()).collect();
        let mut held: Option<String> = None;
        for range in batches(&sizes, self.max_bytes) {
            let batch = &ready[range];
            if let Some(why) = &held {
                for (i, _) in batch {
                    outcomes[*i] = Some(Outcome::Retry {
                        after: None,
                        error: why.clone(),
                    });
                }
                continue;
            }
            let results = self.send(batch.iter().map(|(_, m)| m)).await;
            for ((i, _), (result, code)) in batch.iter().zip(results) {
                if let Some(code) = code {
                    otel::record_error_type(events[*i].1, &code);
                }
                let result = match (&held, result) {
                    (Some(why), Outcome::Delivered) if self.fifo => Outcome::Retry {
                        after: None,
                        error: why.clone(),
                    },
                    (_, r) => r,
                };
                if self.fifo && held.is_none() {
                    if let Outcome::Retry { error, .. } = &result {
                        held = Some(format!(
                            "held back behind an earlier event of this FIFO route ({error})"
                        ));
                    }
                }
                outcomes[*i] = Some(result);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every event has an outcome"))
            .collect()
    }

    /// One batch request; one outcome per message, with AWS's error code when it gave one.
    /// A failed request fails every entry retryably; a failed entry is permanent only when
    /// AWS says the sender is at fault.
    async fn send<'m>(
        &self,
        messages: impl Iterator<Item = &'m Message>,
    ) -> Vec<(Outcome, Option<String>)> {
        let messages: Vec<&Message> = messages.collect();
        match self.client.send_batch(&self.target, &messages).await {
            Err(failure) => messages
                .iter()
                .map(|_| {
                    let outcome = Outcome::Retry {
                        after: None,
                        error: failure.error.clone(),
                    };
                    (outcome, failure.code.clone())
                })
                .collect(),
            Ok(refused) => (0..messages.len())
                .map(|i| match refused.iter().find(|r| r.index == i) {
                    None => (Outcome::Delivered, None),
                    Some(r) if r.sender_fault => {
                        let error = r.error.clone();
                        (Outcome::Permanent { error }, Some(r.code.clone()))
                    }
                    Some(r) => {
                        let error = r.error.clone();
                        (Outcome::Retry { after: None, error }, Some(r.code.clone()))
                    }
                })
                .collect(),
        }
    }
}

/// A failed AWS request: the service's error code and message in one line, or the
/// transport failure and its causes (never the raw response).
fn describe<E, R>(e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> Failure
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let code = err.code().unwrap_or("ServiceError");
            Failure {
                code: Some(code.to_string()),
                error: format!("{code}: {}", err.message().unwrap_or("no message")),
            }
        }
        SdkError::TimeoutError(_) => Failure {
            code: None,
            error: format!(
                "no answer within {}",
                humantime::format_duration(ATTEMPT_TIMEOUT)
            ),
        },
        other => Failure {
            code: None,
            error: super::error_chain(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &str) -> StoredEvent {
        StoredEvent {
            webhook_id: Some("wh-1".into()),
            received_at_ms: 1_778_198_400_000,
            api_key: Some("key".into()),
            signature: "ab".repeat(32),
            event_type: Some("message.new".into()),
            body: body.as_bytes().to_vec(),
            path: None,
            trace: None,
        }
    }

    #[test]
    fn the_trace_context_goes_as_two_attributes_only_where_it_fits() {
        let trace = Propagation {
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            tracestate: Some("congo=t61rcWkgMzE".into()),
        };
        let body = r#"{"type":"message.new"}"#;
        let plain =
            build_message(&event(body), BodyFormat::Raw, None, false, SQS_MAX_BYTES).unwrap();
        let traced = plain.clone().with_trace(&trace, SQS_MAX_BYTES);
        assert_eq!(
            &traced.attributes[plain.attributes.len()..],
            [
                ("traceparent", trace.traceparent.clone()),
                ("tracestate", "congo=t61rcWkgMzE".to_string())
            ]
        );
        // A message at its size limit is sent without them, never refused for them.
        let exact = plain.size();
        assert_eq!(plain.clone().with_trace(&trace, exact), plain);
        // Nor beyond SQS's ten attributes.
        let mut full = plain.clone();
        while full.attributes.len() < MAX_ATTRIBUTES - 1 {
            full.attributes.push(("x", "y".into()));
        }
        assert_eq!(full.clone().with_trace(&trace, SQS_MAX_BYTES), full);
        let no_state = Propagation {
            tracestate: None,
            ..trace
        };
        let with_one = full.clone().with_trace(&no_state, SQS_MAX_BYTES);
        assert_eq!(with_one.attributes.len(), MAX_ATTRIBUTES);
    }

    #[test]
    fn a_message_carries_the_body_as_sent_and_five_string_attributes() {
        let body = r#"{"type":"message.new","cid":"messaging:general"}"#;
        let m = build_message(&event(body), BodyFormat::Raw, None, false, SQS_MAX_BYTES).unwrap();
        assert_eq!(m.body, body);
        let names: Vec<&str> = m.attributes.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "event_type",
                "webhook_id",
                "api_key",
                "signature",
                "received_at"
            ]
        );
        assert_eq!(m.attributes[4].1, "2026-05-08T00:00:00.000Z");
        assert_eq!((m.group_id, m.dedup_id), (None, None));
    }

    #[test]
    fn the_request_path_and_query_are_attributes_only_when_not_the_root() {
        let body = r#"{"type":"message.new"}"#;
        let attribute = |path: Option<&str>, name: &str| {
            let mut e = event(body);
            e.path = path.map(str::to_string);
            let m = build_message(&e, BodyFormat::Raw, None, false, SQS_MAX_BYTES).unwrap();
            m.attributes
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(attribute(None, "path"), None);
        assert_eq!(attribute(Some("/?a=1"), "path"), None);
        assert_eq!(attribute(Some("/?a=1"), "query").as_deref(), Some("a=1"));
        assert_eq!(
            attribute(Some("/pending/commit"), "path").as_deref(),
            Some("/pending/commit")
        );
        assert_eq!(attribute(Some("/pending/commit"), "query"), None);
        assert_eq!(
            attribute(Some("/pending/commit?x=1&y=2"), "query").as_deref(),
            Some("x=1&y=2")
        );
    }

    #[test]
    fn an_event_without_a_type_has_no_event_type_attribute() {
        let mut e = event(r#"{"created_at":1}"#);
        e.event_type = None;
        let m = build_message(&e, BodyFormat::Raw, None, false, SQS_MAX_BYTES).unwrap();
        assert!(m.attributes.iter().all(|(k, _)| *k != "event_type"));
    }

    #[test]
    fn the_compressed_body_is_base64_of_gzip_of_the_original() {
        use std::io::Read;
        let body = r#"{"type":"message.new"}"#;
        let m = build_message(
            &event(body),
            BodyFormat::StreamCompressed,
            None,
            false,
            SQS_MAX_BYTES,
        )
        .unwrap();
        let gz = base64::engine::general_purpose::STANDARD
            .decode(&m.body)
            .unwrap();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }

    #[test]
    fn fifo_messages_get_a_group_from_the_template_and_the_webhook_id_for_dedup() {
        let t = Template::parse("{cid}").unwrap();
        let m = build_message(
            &event(r#"{"cid":"messaging:general"}"#),
            BodyFormat::Raw,
            Some(&t),
            true,
            SQS_MAX_BYTES,
        )
        .unwrap();
        assert_eq!(m.group_id.as_deref(), Some("messaging:general"));
        assert_eq!(m.dedup_id.as_deref(), Some("wh-1"));
        let err = build_message(&event("{}"), BodyFormat::Raw, Some(&t), true, SQS_MAX_BYTES)
            .unwrap_err();
        assert!(matches!(&err, Unsendable::NoGroupId(m) if m.fields == ["cid"]));
        assert!(err.to_string().contains("no field cid"), "{err}");
    }

    #[test]
    fn ids_aws_would_refuse_are_hashed_stably() {
        assert_eq!(aws_id("abc-123"), "abc-123");
        let long = "x".repeat(129);
        assert_eq!(aws_id(&long).len(), 64);
        assert_eq!(aws_id(&long), aws_id(&long));
        assert_ne!(aws_id("with space"), "with space");
        assert_ne!(aws_id(""), "");
    }

    #[test]
    fn an_oversize_event_is_refused_with_its_size() {
        let big = format!("{{\"t\":\"{}\"}}", "x".repeat(SNS_MAX_BYTES));
        let err =
            build_message(&event(&big), BodyFormat::Raw, None, false, SNS_MAX_BYTES).unwrap_err();
        assert!(
            matches!(err, Unsendable::TooLarge { size, limit: 262_144 } if size > 262_144),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("over the destination's limit of 262144 bytes"),
            "{err}"
        );
    }

    #[test]
    fn batches_keep_order_and_respect_count_and_bytes() {
        assert_eq!(batches(&[1; 25], 1000), vec![0..10, 10..20, 20..25]);
        assert_eq!(batches(&[400, 400, 400, 100], 1000), vec![0..2, 2..4]);
        assert_eq!(batches(&[], 1000), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(batches(&[2000], 1000), vec![0..1]);
    }

    /// A client that answers each batch request from a script, and records what it was sent.
    struct Scripted {
        answers: std::sync::Mutex<std::collections::VecDeque<Result<Vec<Refused>, Failure>>>,
        sent: std::sync::Mutex<Vec<Vec<String>>>,
    }

    impl BatchClient for Scripted {
        async fn send_batch(
            &self,
            _: &str,
            messages: &[&Message],
        ) -> Result<Vec<Refused>, Failure> {
            let bodies = messages.iter().map(|m| m.body.clone()).collect();
            self.sent.lock().unwrap().push(bodies);
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(vec![]))
        }
    }

    /// A sink over `answers` whose batches hold two of [`events`]' messages each.
    fn scripted(fifo: bool, answers: Vec<Result<Vec<Refused>, Failure>>) -> AwsSink<Scripted> {
        let one = build_message(
            &event(r#"{"n":0}"#),
            BodyFormat::Raw,
            None,
            fifo,
            SQS_MAX_BYTES,
        )
        .unwrap()
        .size();
        AwsSink {
            client: Scripted {
                answers: std::sync::Mutex::new(answers.into()),
                sent: std::sync::Mutex::new(vec![]),
            },
            target: "queue".into(),
            body: BodyFormat::Raw,
            group: None,
            fifo,
            max_bytes: 2 * one,
        }
    }

    fn events(n: usize) -> Vec<StoredEvent> {
        (0..n).map(|i| event(&format!(r#"{{"n":{i}}}"#))).collect()
    }

    fn kinds(outcomes: &[Outcome]) -> Vec<&'static str> {
        outcomes
            .iter()
            .map(|o| match o {
                Outcome::Delivered => "delivered",
                Outcome::Retry { .. } => "retry",
                Outcome::Permanent { .. } => "permanent",
            })
            .collect()
    }

    fn refused(index: usize, sender_fault: bool) -> Refused {
        Refused {
            index,
            sender_fault,
            code: "Code".into(),
            error: "Code: message".into(),
        }
    }

    #[tokio::test]
    async fn each_entry_gets_its_own_outcome_and_a_failed_request_is_retried_whole() {
        let sink = scripted(
            false,
            vec![
                Ok(vec![refused(1, true)]),
                Err(Failure {
                    code: None,
                    error: "no answer within 10s".into(),
                }),
                Ok(vec![refused(0, false)]),
            ],
        );
        let events = events(6);
        let none = tracing::Span::none();
        let refs: Vec<_> = events.iter().map(|e| (e, &none)).collect();
        let outcomes = sink.deliver_batch(&refs).await;
        assert_eq!(
            kinds(&outcomes),
            [
                "delivered",
                "permanent",
                "retry",
                "retry",
                "retry",
                "delivered"
            ]
        );
        assert_eq!(
            sink.client.sent.lock().unwrap().len(),
            3,
            "three batches of two"
        );
        match &outcomes[1] {
            Outcome::Permanent { error } => assert_eq!(error, "Code: message"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn on_a_fifo_route_nothing_is_sent_ahead_of_an_event_to_retry() {
        let sink = scripted(true, vec![Ok(vec![]), Ok(vec![refused(0, false)])]);
        let events = events(6);
        let none = tracing::Span::none();
        let refs: Vec<_> = events.iter().map(|e| (e, &none)).collect();
        let outcomes = sink.deliver_batch(&refs).await;
        // The second batch's first entry failed: its second is held back although AWS took
        // it, and the third batch is never sent.
        assert_eq!(
            kinds(&outcomes),
            ["delivered", "delivered", "retry", "retry", "retry", "retry"]
        );
        assert_eq!(sink.client.sent.lock().unwrap().len(), 2);
        match &outcomes[5] {
            Outcome::Retry { error, .. } => {
                assert!(
                    error.starts_with("held back behind an earlier event"),
                    "{error}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
